//! The zip's End Of Central Directory record (and its ZIP64 extension), read
//! by hand to learn how many entries a package declares and how large its
//! central directory is.
//!
//! Why by hand: `zip::ZipArchive::new` builds every entry of the central
//! directory in memory before it can tell how many there are (a package of
//! 1,000,000 entries costs 0.8-0.9 GB to open), and the crate has no cheaper
//! call. These records sit in the last 64 KiB of the file, so one read
//! answers the question before anything is allocated per entry.

use std::io;

/// The EOCD record without its comment.
const EOCD_LEN: usize = 22;
/// The longest comment the EOCD's 16-bit length can describe.
const MAX_COMMENT: usize = u16::MAX as usize;
/// The ZIP64 locator, which sits right before the EOCD.
const LOCATOR_LEN: u64 = 20;
/// The ZIP64 EOCD record without its extensible data.
const EOCD64_LEN: u64 = 56;

const EOCD_SIG: &[u8; 4] = b"PK\x05\x06";
const LOCATOR_SIG: &[u8; 4] = b"PK\x06\x07";
const EOCD64_SIG: &[u8; 4] = b"PK\x06\x06";

/// What a package's end records declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct End {
    /// Entries in the central directory (the larger of the record's two
    /// counts, "on this disk" and "total", so neither can hide entries).
    pub entries: u64,
    /// Bytes of the central directory.
    pub dir_size: u64,
    /// Where the EOCD record starts: from here to the end of the file are
    /// the record and its comment.
    pub eocd_at: u64,
}

/// Reads the end records of a zip of `len` bytes; `read_at(pos, buf)` fills
/// `buf` from position `pos` exactly. Errors are messages for a log line.
pub fn read(
    len: u64,
    mut read_at: impl FnMut(u64, &mut [u8]) -> io::Result<()>,
) -> Result<End, String> {
    if len < EOCD_LEN as u64 {
        return Err("too short for a zip".into());
    }
    let start = len.saturating_sub((EOCD_LEN + MAX_COMMENT) as u64);
    let mut tail = vec![0; usize::try_from(len - start).map_err(|e| e.to_string())?];
    read_at(start, &mut tail).map_err(|e| format!("reading the end of the zip: {e}"))?;
    // The last signature whose comment fits in the file: the record the zip
    // crate tries first. Like the crate, bytes after the comment are allowed.
    let at = (0..=tail.len() - EOCD_LEN)
        .rev()
        .find(|&i| {
            tail[i..].starts_with(EOCD_SIG)
                && i + EOCD_LEN + usize::from(u16_at(&tail, i + 20)) <= tail.len()
        })
        .ok_or("no end of central directory record")?;
    let rec = &tail[at..at + EOCD_LEN];
    let eocd_at = start + at as u64;
    let (this_disk, total) = (u16_at(rec, 8), u16_at(rec, 10));
    let zip32 = End {
        entries: u64::from(this_disk.max(total)),
        dir_size: u64::from(u32_at(rec, 12)),
        eocd_at,
    };
    // Saturated fields mean the real values are in the ZIP64 record.
    let saturated = this_disk == u16::MAX
        || total == u16::MAX
        || u32_at(rec, 12) == u32::MAX
        || u32_at(rec, 16) == u32::MAX;
    let Some(loc_at) = eocd_at.checked_sub(LOCATOR_LEN).filter(|_| saturated) else {
        return Ok(zip32);
    };
    let mut loc = [0; LOCATOR_LEN as usize];
    read_at(loc_at, &mut loc).map_err(|e| format!("reading the ZIP64 locator: {e}"))?;
    if !loc.starts_with(LOCATOR_SIG) {
        // No locator: the saturated values are the real ones (a zip of
        // exactly 65,535 entries). The zip crate reads it the same way.
        return Ok(zip32);
    }
    // The locator's offset is relative to the start of the archive; the
    // record normally sits right before the locator, which also holds when
    // data was prepended to the archive.
    let stated = u64_at(&loc, 8);
    for pos in [Some(stated), loc_at.checked_sub(EOCD64_LEN)]
        .into_iter()
        .flatten()
        .filter(|p| p.saturating_add(EOCD64_LEN) <= loc_at)
    {
        let mut r = [0; EOCD64_LEN as usize];
        read_at(pos, &mut r).map_err(|e| format!("reading the ZIP64 record: {e}"))?;
        if r.starts_with(EOCD64_SIG) {
            return Ok(End {
                entries: u64_at(&r, 24).max(u64_at(&r, 32)),
                dir_size: u64_at(&r, 40),
                eocd_at,
            });
        }
    }
    Err("ZIP64 locator without a ZIP64 end record".into())
}

// Field readers; callers pass slices long enough for every offset they use
// (the record lengths above), so the fallbacks never apply.
fn u16_at(b: &[u8], i: usize) -> u16 {
    b.get(i..i + 2)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u16::from_le_bytes)
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    b.get(i..i + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    b.get(i..i + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_vec(z: &[u8]) -> Result<End, String> {
        read(z.len() as u64, |pos, buf| {
            let from = usize::try_from(pos).unwrap();
            let src = z
                .get(from..from + buf.len())
                .ok_or(io::ErrorKind::UnexpectedEof)?;
            buf.copy_from_slice(src);
            Ok(())
        })
    }

    fn zip_of(n: usize, comment: &str) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for i in 0..n {
            w.start_file(format!("f{i}"), opts).unwrap();
            w.write_all(b"x").unwrap();
        }
        w.set_comment(comment);
        w.finish().unwrap().into_inner()
    }

    /// The central directory's size as the zip crate sees it.
    fn dir_size(z: &[u8], eocd_at: u64) -> u64 {
        let a = zip::ZipArchive::new(io::Cursor::new(z)).unwrap();
        eocd_at - a.central_directory_start()
    }

    /// ZIP64 end records by hand: EOCD64, locator, then an EOCD whose
    /// fields are saturated. `fill` bytes stand for what comes before them,
    /// of which `prefix` bytes were prepended to the archive (the locator's
    /// offset counts from the archive's start).
    fn zip64_end(fill: u64, prefix: u64, entries: u64, with_record: bool) -> Vec<u8> {
        let mut z = vec![0u8; fill as usize];
        let record_at = fill - prefix;
        let dir = entries * 46;
        if with_record {
            z.extend_from_slice(EOCD64_SIG);
            z.extend_from_slice(&44u64.to_le_bytes());
            z.extend_from_slice(&[45, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            z.extend_from_slice(&entries.to_le_bytes());
            z.extend_from_slice(&entries.to_le_bytes());
            z.extend_from_slice(&dir.to_le_bytes());
            z.extend_from_slice(&u64::MAX.to_le_bytes());
        }
        z.extend_from_slice(LOCATOR_SIG);
        z.extend_from_slice(&0u32.to_le_bytes());
        z.extend_from_slice(&record_at.to_le_bytes());
        z.extend_from_slice(&1u32.to_le_bytes());
        z.extend_from_slice(EOCD_SIG);
        z.extend_from_slice(&[0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
        z.extend_from_slice(&[0xFF; 8]);
        z.extend_from_slice(&[0, 0]);
        z
    }

    #[test]
    fn reads_counts_and_sizes() {
        let plain = zip_of(3, "");
        let commented = zip_of(2, &"c".repeat(1000));
        let mut trailing = zip_of(4, "note");
        trailing.extend_from_slice(b"junk after the comment");
        let empty = zip_of(0, "");
        // Fields saturated but no locator: a zip of exactly 65,535 entries
        // written without ZIP64 is taken at its word.
        let mut no_locator = vec![0u8; 40];
        no_locator.extend_from_slice(EOCD_SIG);
        no_locator.extend_from_slice(&[0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
        no_locator.extend_from_slice(&[10, 0, 0, 0, 30, 0, 0, 0, 0, 0]);
        // (case, zip, entries, directory size when the zip crate cannot
        // tell, bytes from the EOCD record to the end)
        type Case<'a> = (&'a str, &'a [u8], u64, Option<u64>, u64);
        let table: [Case; 5] = [
            ("plain", &plain, 3, None, 22),
            ("with a comment", &commented, 2, None, 1022),
            ("junk after the comment", &trailing, 4, None, 48),
            ("empty", &empty, 0, Some(0), 22),
            ("saturated, no locator", &no_locator, 65_535, Some(10), 22),
        ];
        for (what, z, entries, dir, tail) in table {
            let end = read_vec(z).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(end.entries, entries, "{what}");
            assert_eq!(z.len() as u64 - end.eocd_at, tail, "{what}");
            let dir = dir.unwrap_or_else(|| dir_size(z, end.eocd_at));
            assert_eq!(end.dir_size, dir, "{what}");
        }
    }

    #[test]
    fn reads_zip64_counts() {
        let table = [
            (
                "right after the archive",
                zip64_end(0, 0, 1_000_000, true),
                1_000_000,
            ),
            (
                "after the directory",
                zip64_end(300, 0, 70_000, true),
                70_000,
            ),
            (
                "after prepended data",
                zip64_end(300, 300, 70_000, true),
                70_000,
            ),
        ];
        for (what, z, entries) in table {
            let end = read_vec(&z).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(end.eocd_at, z.len() as u64 - 22, "{what}");
            assert_eq!(end.entries, entries, "{what}");
            assert_eq!(end.dir_size, entries * 46, "{what}");
        }
    }

    #[test]
    fn a_real_zip64_archive() {
        // Over 65,535 entries the zip crate writes ZIP64 end records: the
        // one real archive of that kind the tests build (about 6 MB).
        let z = zip_of(65_536, "");
        let end = read_vec(&z).unwrap();
        assert_eq!(end.entries, 65_536);
        assert_eq!(end.dir_size, dir_size(&z, end.eocd_at - 76));
    }

    #[test]
    fn refuses_what_is_not_a_zip() {
        let plain = zip_of(3, "");
        let table: [(&str, Vec<u8>); 6] = [
            ("empty input", Vec::new()),
            ("garbage", b"this is not a zip, only some text".repeat(10)),
            ("cut before the end", plain[..plain.len() - 5].to_vec()),
            ("only the local headers", plain[..40].to_vec()),
            ("comment longer than the file", {
                let mut z = plain.clone();
                let n = z.len();
                z[n - 2..].copy_from_slice(&500u16.to_le_bytes());
                z
            }),
            ("locator without a record", zip64_end(100, 0, 5, false)),
        ];
        for (what, z) in table {
            assert!(read_vec(&z).is_err(), "{what}");
        }
    }
}
