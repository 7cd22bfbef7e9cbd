//! Writing an entry's header and body in one system call, without first
//! copying them into one buffer.

use std::io::{self, IoSlice, Write};

/// Writes all of `head` then all of `body` with vectored writes: one
/// `writev` for a regular file in practice, looping only on a short write.
/// (`Write::write_all_vectored` is not stable yet.)
pub fn write_all_parts(out: &mut impl Write, head: &[u8], body: &[u8]) -> io::Result<()> {
    let mut parts = [IoSlice::new(head), IoSlice::new(body)];
    let mut left: &mut [IoSlice<'_>] = &mut parts;
    // Drops empty parts up front: nothing to write then means no call
    // (whose `Ok(0)` would read as a writer that takes nothing).
    IoSlice::advance_slices(&mut left, 0);
    while !left.is_empty() {
        match out.write_vectored(left) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut left, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::write_all_parts;
    use std::io::{self, IoSlice, Write};

    /// Takes at most `step` bytes per call, as a short write would.
    struct Short {
        got: Vec<u8>,
        step: usize,
    }

    impl Write for Short {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.step);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let mut room = self.step;
            for b in bufs {
                let n = b.len().min(room);
                self.got.extend_from_slice(&b[..n]);
                room -= n;
                if room == 0 {
                    break;
                }
            }
            Ok(self.step - room)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_byte_lands_in_order_whatever_the_write_sizes() {
        let cases: &[(&[u8], &[u8], usize)] = &[
            (b"head", b"body", 100),
            (b"head", b"body", 1),
            (b"head", b"body", 3),
            (b"head", b"body", 4),
            (b"", b"body", 2),
            (b"head", b"", 2),
            (b"", b"", 1),
        ];
        for &(head, body, step) in cases {
            let mut out = Short {
                got: Vec::new(),
                step,
            };
            write_all_parts(&mut out, head, body).unwrap();
            assert_eq!(out.got, [head, body].concat(), "step {step}");
        }
    }

    #[test]
    fn a_writer_that_takes_nothing_is_an_error() {
        let mut out = Short {
            got: Vec::new(),
            step: 0,
        };
        let e = write_all_parts(&mut out, b"h", b"b").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WriteZero);
    }
}
