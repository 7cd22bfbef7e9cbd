//! `download?contentOnly=zip|tgz` of a universal package, made locally from
//! the cached package as ProGet makes it: the files under `package/`, that
//! prefix removed, without `upack.json`. A zip copies the compressed entries
//! as they are (no inflating); a tar.gz inflates each one, bounded by the
//! size it declares. Built on a blocking thread, under the extraction limits
//! and a cap on the archive, into any `Write + Seek` sink: the cache's temp
//! file (`cache::EntryWriter`), or memory while the disk takes no writes.

use std::io::{BufWriter, Read, Seek, Write};

use flate2::write::GzEncoder;

use super::directory::{DirKey, Directories};
use super::{check_limits, ExtractError, Limits, Package};

/// What `contentOnly` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentFormat {
    Zip,
    Tgz,
}

impl ContentFormat {
    /// `contentOnly=zip|tgz`; anything else is not a format.
    pub fn parse(s: &str) -> Option<ContentFormat> {
        match s {
            "zip" => Some(ContentFormat::Zip),
            "tgz" => Some(ContentFormat::Tgz),
            _ => None,
        }
    }

    /// The extension, which also names the derived cache entry.
    pub fn ext(self) -> &'static str {
        match self {
            ContentFormat::Zip => "zip",
            ContentFormat::Tgz => "tgz",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ContentFormat::Zip => "application/zip",
            ContentFormat::Tgz => "application/gzip",
        }
    }
}

/// Largest archive built in memory (while the disk takes no writes).
pub const MAX_IN_MEMORY: u64 = 256 * 1024 * 1024;

/// Writes go to the sink in blocks this large (an archive writer makes many
/// small writes; the sink may be a file written with one call per write).
const OUT_BUFFER: usize = 256 * 1024;

/// The prefix of content files in a universal package.
const CONTENT: &str = "package/";

/// Makes the content archive of `pkg` (its directory from `dirs`) into
/// `out`, refusing content of over `cap` bytes before writing any.
pub async fn content_archive<W: Write + Seek + Send + 'static>(
    pkg: Package,
    format: ContentFormat,
    limits: Limits,
    cap: u64,
    (dirs, key): (Directories, DirKey),
    out: W,
) -> Result<W, ExtractError> {
    tokio::task::spawn_blocking(move || {
        let dir = dirs.get(key, &pkg, limits.max_entries)?;
        let mut lease = dir.lend(pkg);
        let entries = content_entries(&mut lease.archive, &limits, cap)?;
        let out = BufWriter::with_capacity(OUT_BUFFER, out);
        let out = match format {
            ContentFormat::Zip => zip_content(&mut lease.archive, entries, out),
            ContentFormat::Tgz => tgz_content(&mut lease.archive, entries, out),
        }?;
        out.into_inner().map_err(|e| corrupt(e.error()))
    })
    .await
    .map_err(|e| ExtractError::Corrupt(format!("archive task: {e}")))?
}

/// The content files' indexes and names (prefix removed), checked against
/// the limits and the archive cap before anything is built.
fn content_entries<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    limits: &Limits,
    cap: u64,
) -> Result<Vec<(usize, String)>, ExtractError> {
    let mut out = Vec::new();
    let mut total = 0u64;
    for i in 0..zip.len() {
        let e = zip.by_index_raw(i).map_err(corrupt)?;
        let Some(name) = e.name().strip_prefix(CONTENT).filter(|n| !n.is_empty()) else {
            continue;
        };
        if e.is_dir() {
            continue;
        }
        check_limits(e.size(), e.compressed_size(), limits)?;
        total = total.saturating_add(e.size().max(e.compressed_size()));
        if total > cap {
            return Err(ExtractError::Limit(format!(
                "content over {} MiB",
                cap >> 20
            )));
        }
        out.push((i, name.to_owned()));
    }
    Ok(out)
}

fn zip_content<R: Read + Seek, W: Write + Seek>(
    zip: &mut zip::ZipArchive<R>,
    entries: Vec<(usize, String)>,
    out: W,
) -> Result<W, ExtractError> {
    let mut out = zip::ZipWriter::new(out);
    for (i, name) in entries {
        let e = zip.by_index_raw(i).map_err(corrupt)?;
        out.raw_copy_file_rename(e, name).map_err(corrupt)?;
    }
    out.finish().map_err(corrupt)
}

fn tgz_content<R: Read + Seek, W: Write>(
    zip: &mut zip::ZipArchive<R>,
    entries: Vec<(usize, String)>,
    out: W,
) -> Result<W, ExtractError> {
    let gz = GzEncoder::new(out, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (i, name) in entries {
        let e = zip.by_index(i).map_err(corrupt)?;
        let size = e.size();
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        // The declared size bounds the read; a shorter entry is an error
        // from the tar builder, a longer one is cut off.
        let mut body = e.take(size);
        tar.append_data(&mut header, &name, &mut body)
            .map_err(corrupt)?;
    }
    let gz = tar.into_inner().map_err(corrupt)?;
    gz.finish().map_err(corrupt)
}

fn corrupt(e: impl std::fmt::Display) -> ExtractError {
    ExtractError::Corrupt(e.to_string())
}
