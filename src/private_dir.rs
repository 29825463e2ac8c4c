//! A private temporary directory: mode 0700 in the system's temporary directory, files
//! in it mode 0600, removed with everything in it when dropped. Used for what must not
//! be seen by other users of the machine: the values given to helm, a pulled chart and
//! its credentials' configuration, the chart `helm lockstep` installs.
//!
//! It must not decide what goes into the directory, nor outlive its owner.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// A directory only this user can enter, removed with everything in it when dropped.
#[derive(Debug)]
pub(crate) struct PrivateDir(PathBuf);

impl PrivateDir {
    /// Creates `PREFIX-PID-N-NANOS` in the temporary directory; `purpose` names what it
    /// is for in the error.
    pub(crate) fn new(prefix: &str, purpose: &str) -> Result<PrivateDir> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let base = std::env::temp_dir();
        for _ in 0..16 {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let dir = base.join(format!(
                "{prefix}-{}-{}-{nanos:x}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let mut b = std::fs::DirBuilder::new();
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
            match b.create(&dir) {
                Ok(()) => return Ok(PrivateDir(dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "cannot create a private directory in {} for {purpose}",
                            base.display()
                        )
                    })
                }
            }
        }
        bail!(
            "cannot create a private directory in {} for {purpose}",
            base.display()
        )
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `text` to a new file `name` in it, readable by this user only; `what` names
    /// the text in the error.
    pub(crate) fn write(&self, name: &str, text: &str, what: &str) -> Result<PathBuf> {
        use std::io::Write;
        let path = self.0.join(name);
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        let mut f = o
            .open(&path)
            .with_context(|| format!("cannot write {what} into {}", path.display()))?;
        f.write_all(text.as_bytes())
            .with_context(|| format!("cannot write {what} into {}", path.display()))?;
        Ok(path)
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_removed_on_drop() {
        let d = PrivateDir::new("lockstep-test", "a test").unwrap();
        let f = d.write("x", "secret", "a test file").unwrap();
        let dir = d.path().to_owned();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!((mode(&dir), mode(&f)), (0o700, 0o600));
        }
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "secret");
        let e = d.write("x", "again", "a test file").unwrap_err();
        assert!(
            format!("{e:#}").starts_with("cannot write a test file into "),
            "{e:#}"
        );
        drop(d);
        assert!(!dir.exists());
    }
}
