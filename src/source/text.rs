//! The rendered stream given on stdin, held whole and never changed.
//!
//! Nothing may reach stdout before the gate has passed, so the input is read to its
//! end before anything else. On Linux it is read into an anonymous mapping whose
//! pages the kernel populates up front (`MAP_POPULATE`, and `MADV_POPULATE_WRITE` for
//! what is added as it grows) instead of a heap buffer whose every 4 KiB page faults
//! on first touch. On the 2-core VMs this was measured on, reading 50 MB into fresh
//! heap memory took 87-103 ms; into a populated mapping, 26-29 ms (bench/README.md).
//! Where the kernel has no `MADV_POPULATE_WRITE` (before 5.14), the pages added while
//! growing fault as usual: slower, the same bytes. Elsewhere it is a `String`.
//!
//! This module owns that buffer and the `unsafe` it takes (the mapping's lifetime and
//! the slices over it). It must not look at the bytes beyond checking they are UTF-8.

use std::io::Read;

/// An immutable UTF-8 text: read from a stream, or given.
pub struct Text(Repr);

enum Repr {
    Heap(String),
    #[cfg(target_os = "linux")]
    Mapped(mapped::Mapped),
}

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
    pub fn read(from: impl Read, size: Option<usize>) -> Result<Text, ReadError> {
        #[cfg(target_os = "linux")]
        {
            let m = mapped::Mapped::read(from, size).map_err(ReadError::Io)?;
            std::str::from_utf8(m.bytes()).map_err(|e| ReadError::NotUtf8(e.valid_up_to()))?;
            Ok(Text(Repr::Mapped(m)))
        }
        #[cfg(not(target_os = "linux"))]
        {
            let mut from = from;
            let mut bytes = Vec::with_capacity(size.map_or(1 << 20, |n| n + 1));
            from.read_to_end(&mut bytes).map_err(ReadError::Io)?;
            String::from_utf8(bytes)
                .map(|s| Text(Repr::Heap(s)))
                .map_err(|e| ReadError::NotUtf8(e.utf8_error().valid_up_to()))
        }
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

    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Heap(s) => s,
            // SAFETY: a mapped Text is built only from bytes `read` checked are UTF-8,
            // and nothing changes them afterwards (`Mapped` has no mutable access once
            // read).
            #[cfg(target_os = "linux")]
            Repr::Mapped(m) => unsafe { std::str::from_utf8_unchecked(m.bytes()) },
        }
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
        Text(Repr::Heap(s))
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text(Repr::Heap(s.to_owned()))
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

#[cfg(target_os = "linux")]
mod mapped {
    use std::io::{ErrorKind, Read};
    use std::ptr::NonNull;

    /// A private anonymous mapping holding `len` bytes read so far, of `cap`.
    pub struct Mapped {
        ptr: NonNull<u8>,
        len: usize,
        cap: usize,
    }

    // SAFETY: `Mapped` owns its mapping exclusively, like a `Vec<u8>` owns its heap
    // block; shared access only reads.
    unsafe impl Send for Mapped {}
    unsafe impl Sync for Mapped {}

    /// The first mapping for a stream of unknown length (a pipe); it doubles as needed.
    const FIRST: usize = 64 << 10;

    impl Mapped {
        pub fn read(mut from: impl Read, size: Option<usize>) -> std::io::Result<Mapped> {
            // One byte more than a known size, so the read that finds the end does not
            // grow the mapping.
            let mut m = Mapped::new(size.map_or(FIRST, |n| n.saturating_add(1)))?;
            loop {
                if m.len == m.cap {
                    m.grow()?;
                }
                let spare = m.spare();
                let room = spare.len();
                match from.read(spare) {
                    Ok(0) => return Ok(m),
                    // `Read` is a safe trait: a reader may claim more than it was given.
                    // `len` bounds the slices `bytes` makes, so that claim is refused
                    // here, not trusted (it would expose memory past the mapping).
                    Ok(n) if n > room => {
                        return Err(std::io::Error::other(format!(
                            "the reader reported {n} bytes read into a buffer of {room}"
                        )))
                    }
                    Ok(n) => m.len += n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }

        fn new(cap: usize) -> std::io::Result<Mapped> {
            let cap = page_align(cap.max(1))?;
            // SAFETY: asks for a fresh private anonymous mapping; touches no existing
            // memory.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    cap,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return Err(std::io::Error::last_os_error());
            }
            let ptr = NonNull::new(p.cast())
                .ok_or_else(|| std::io::Error::other("mmap gave a null mapping"))?;
            Ok(Mapped { ptr, len: 0, cap })
        }

        /// Doubles the mapping (the kernel moves its pages, it copies no bytes) and
        /// populates the new half.
        fn grow(&mut self) -> std::io::Result<()> {
            let cap = self
                .cap
                .checked_mul(2)
                .ok_or_else(|| std::io::Error::from(ErrorKind::OutOfMemory))?;
            // SAFETY: `ptr`/`cap` describe this mapping; MREMAP_MAYMOVE may move it, and
            // nothing points into it while `&mut self` is held.
            let p = unsafe {
                libc::mremap(
                    self.ptr.as_ptr().cast(),
                    self.cap,
                    cap,
                    libc::MREMAP_MAYMOVE,
                )
            };
            if p == libc::MAP_FAILED {
                return Err(std::io::Error::last_os_error());
            }
            self.ptr = NonNull::new(p.cast())
                .ok_or_else(|| std::io::Error::other("mremap gave a null mapping"))?;
            // SAFETY: [old cap, cap) lies inside the mapping just made. Advice only: on
            // kernels without MADV_POPULATE_WRITE it fails and the pages fault as used.
            unsafe {
                libc::madvise(
                    self.ptr.as_ptr().add(self.cap).cast(),
                    cap - self.cap,
                    libc::MADV_POPULATE_WRITE,
                );
            }
            self.cap = cap;
            Ok(())
        }

        /// The part not read into yet.
        fn spare(&mut self) -> &mut [u8] {
            // SAFETY: [len, cap) lies inside the mapping, which is readable and
            // writable; anonymous memory starts zeroed, so it is initialized; `&mut
            // self` makes the slice exclusive.
            unsafe {
                std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(self.len), self.cap - self.len)
            }
        }

        pub fn bytes(&self) -> &[u8] {
            // SAFETY: [0, len) lies inside the mapping and holds the bytes read.
            unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
        }
    }

    impl Drop for Mapped {
        fn drop(&mut self) {
            // SAFETY: unmaps exactly this mapping, once; no slice of it outlives `self`.
            unsafe {
                libc::munmap(self.ptr.as_ptr().cast(), self.cap);
            }
        }
    }

    fn page_align(n: usize) -> std::io::Result<usize> {
        const PAGE: usize = 4096;
        n.checked_next_multiple_of(PAGE)
            .ok_or_else(|| std::io::Error::from(ErrorKind::OutOfMemory))
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
