//! The rendered stream given on stdin, held whole and never changed.
//!
//! Nothing may reach stdout before the gate has passed, so the input is read to its
//! end before anything else, into one buffer sized once when the length is known (a
//! regular file), touched only as far as it is filled. A populated anonymous mapping (`MAP_POPULATE`) was used here before
//! to spare the page faults of a fresh buffer; measured again (bench/README.md,
//! "The stdin buffer"), it took the same CPU time on 50 MB and held 16 MB more at the
//! peak when stdin is a pipe, so it went.
//!
//! This module owns that buffer. It must not look at the bytes beyond checking they
//! are UTF-8.

use std::io::Read;

/// The most read into the buffer at once (and zeroed before it).
const STEP: usize = 1 << 20;

/// An immutable UTF-8 text: read from a stream, or given.
pub struct Text(String);

/// Why a stream could not be taken as text.
#[derive(Debug)]
pub enum ReadError {
    Io(std::io::Error),
    /// Not UTF-8: the offset of the first byte that is not.
    NotUtf8(usize),
}

impl Text {
    /// Reads `from` to its end. `size` is the expected length, when known (a regular
    /// file): the buffer is then sized once.
    pub fn read(mut from: impl Read, size: Option<usize>) -> Result<Text, ReadError> {
        // One byte more than a known size, so the read that finds the end has room.
        let mut bytes = Vec::with_capacity(size.map_or(STEP, |n| n.saturating_add(1)));
        // `bytes[..filled]` is what was read; the rest of `bytes` is zeroed room, added a
        // step at a time, so capacity not yet needed (a pipe's buffer doubles) is never
        // touched and no byte is zeroed twice.
        let mut filled = 0;
        loop {
            if filled == bytes.len() {
                if bytes.len() == bytes.capacity() {
                    bytes.reserve(STEP);
                }
                let more = (bytes.capacity() - bytes.len()).min(STEP);
                bytes.resize(bytes.len() + more, 0);
            }
            let room = bytes.len() - filled;
            match from.read(&mut bytes[filled..]) {
                Ok(0) => break,
                // `Read` is a safe trait: a reader may claim more than it was given.
                Ok(n) if n > room => {
                    return Err(ReadError::Io(std::io::Error::other(format!(
                        "the reader reported {n} bytes read into a buffer of {room}"
                    ))))
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
        bytes.truncate(filled);
        String::from_utf8(bytes)
            .map(Text)
            .map_err(|e| ReadError::NotUtf8(e.utf8_error().valid_up_to()))
    }

    /// The process's stdin, read to its end (sized once when it is a regular file),
    /// with errors that say what to do.
    pub fn from_stdin() -> anyhow::Result<Text> {
        let size = std::fs::metadata("/dev/stdin")
            .ok()
            .filter(|m| m.is_file())
            .and_then(|m| usize::try_from(m.len()).ok());
        Text::read(std::io::stdin().lock(), size).map_err(|e| match e {
            ReadError::Io(e) => anyhow::anyhow!(e).context(
                "cannot read the stream from stdin: pipe the rendered manifests into `lockstep inject` (e.g. `helm template ... | lockstep inject`), or use `lockstep render CHART`",
            ),
            ReadError::NotUtf8(at) => anyhow::anyhow!(
                "the input is not UTF-8 (invalid byte at offset {at}): Kubernetes manifests are UTF-8 text. Convert the file to UTF-8 (e.g. `iconv -t UTF-8`) or fix the template that writes that byte"
            ),
        })
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text(s)
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text(s.to_owned())
    }
}

impl Clone for Text {
    fn clone(&self) -> Text {
        Text::from(self.as_str())
    }
}

/// The length only: the text may hold secrets, and debug output reaches logs.
impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Text({} bytes)", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most `step` bytes a call, like a pipe.
    struct Trickle<'a> {
        rest: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.rest.len().min(self.step).min(buf.len());
            buf[..n].copy_from_slice(&self.rest[..n]);
            self.rest = &self.rest[n..];
            Ok(n)
        }
    }

    fn sample(len: usize) -> String {
        (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect()
    }

    #[test]
    fn reads_every_byte_whatever_the_size_and_the_pieces() {
        for len in [
            0,
            1,
            4095,
            4096,
            4097,
            65535,
            65536,
            65537,
            300_000,
            1 << 21,
        ] {
            let s = sample(len);
            for step in [1 << 16, 7919, len.max(1)] {
                for size in [None, Some(len), Some(len / 2), Some(len * 3)] {
                    let t = Text::read(
                        Trickle {
                            rest: s.as_bytes(),
                            step,
                        },
                        size,
                    )
                    .unwrap();
                    assert_eq!(t.as_str(), s, "len {len}, step {step}, size {size:?}");
                }
            }
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_are_named_by_offset() {
        let mut bytes = sample(70_000).into_bytes();
        bytes[66_000] = 0xff;
        match Text::read(&bytes[..], None) {
            Err(ReadError::NotUtf8(at)) => assert_eq!(at, 66_000),
            other => panic!("{:?}", other.map(|t| t.len())),
        }
    }

    #[test]
    fn a_read_error_is_returned() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk on fire"))
            }
        }
        assert!(
            matches!(Text::read(Broken, None), Err(ReadError::Io(e)) if e.to_string() == "disk on fire")
        );
    }

    #[test]
    fn debug_shows_the_length_not_the_text() {
        let t = Text::from("password: hunter2");
        assert_eq!(format!("{t:?}"), "Text(17 bytes)");
        assert_eq!(t.clone().as_str(), "password: hunter2");
    }
}
