//! `download?contentOnly=zip|tgz` of a universal package, made locally from
//! the cached package as ProGet makes it: the files under `package/`, that
//! prefix removed, without `upack.json`. A zip copies the compressed entries
//! as they are (no inflating); a tar.gz inflates each one, bounded by the
//! size it declares. Built on a blocking thread, under the extraction limits
//! and `MAX_ARCHIVE` in all.

use std::io::{self, Read, Seek};

use bytes::Bytes;
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

/// Largest archive made (it is built in memory, then cached).
pub const MAX_ARCHIVE: u64 = 256 * 1024 * 1024;

/// The prefix of content files in a universal package.
const CONTENT: &str = "package/";

/// Makes the content archive of `pkg` (its directory from `dirs`).
pub async fn content_archive(
    pkg: Package,
    format: ContentFormat,
    limits: Limits,
    dirs: Directories,
    key: DirKey,
) -> Result<Bytes, ExtractError> {
    tokio::task::spawn_blocking(move || {
        let dir = dirs.get(key, &pkg, limits.max_entries)?;
        let mut lease = dir.lend(pkg);
        match format {
            ContentFormat::Zip => zip_content(&mut lease.archive, &limits),
            ContentFormat::Tgz => tgz_content(&mut lease.archive, &limits),
        }
    })
    .await
    .map_err(|e| ExtractError::Corrupt(format!("archive task: {e}")))?
}

/// The content files' indexes and names (prefix removed), checked against
/// the limits and the archive cap before anything is built.
fn content_entries<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    limits: &Limits,
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
        if total > MAX_ARCHIVE {
            return Err(ExtractError::Limit(format!(
                "content over {} MiB",
                MAX_ARCHIVE >> 20
            )));
        }
        out.push((i, name.to_owned()));
    }
    Ok(out)
}

fn zip_content<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    limits: &Limits,
) -> Result<Bytes, ExtractError> {
    let entries = content_entries(zip, limits)?;
    let mut out = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
    for (i, name) in entries {
        let e = zip.by_index_raw(i).map_err(corrupt)?;
        out.raw_copy_file_rename(e, name).map_err(corrupt)?;
    }
    let buf = out.finish().map_err(corrupt)?.into_inner();
    Ok(Bytes::from(buf))
}

fn tgz_content<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    limits: &Limits,
) -> Result<Bytes, ExtractError> {
    let entries = content_entries(zip, limits)?;
    let gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
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
    Ok(Bytes::from(gz.finish().map_err(corrupt)?))
}

fn corrupt(e: impl std::fmt::Display) -> ExtractError {
    ExtractError::Corrupt(e.to_string())
}
