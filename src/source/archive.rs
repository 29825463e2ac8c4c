//! A packaged chart (`.tgz`) read in-process: its Chart.yaml and values.yaml, with
//! the limits helm's own loader applies, so lockstep never reads what helm would refuse
//! and no second helm process is needed just to read Chart.yaml.
//!
//! The rules follow helm's `LoadArchiveFiles` (helm v3: pkg/chart/loader/archive.go;
//! v4: pkg/chart/loader/archive/archive.go):
//! * gzip, then tar; directory entries and pax headers are skipped;
//! * an entry's first path component is the chart's directory and is dropped; the rest
//!   (`\` taken as the separator when the name has one) must not be absolute, must not
//!   clean to `.` or start with `..`, and must not look like a drive path (`c:/`);
//! * a `Chart.yaml` that is not inside the chart's directory is refused;
//! * at most [`MAX_CHART_SIZE`] (100 MiB) decompressed in all, and (helm 3's
//!   `MaxDecompressedFileSize`) at most [`MAX_FILE_SIZE`] (5 MiB) per file, counted
//!   as read, not as the header claims;
//! * a UTF-8 byte order mark at the start of a file is dropped.
//!
//! This module owns reading archives; it must not render or interpret values.

use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::Path;

/// helm's `MaxDecompressedChartSize`: all files of a chart, decompressed.
pub(crate) const MAX_CHART_SIZE: u64 = 100 * 1024 * 1024;
/// helm 3's `MaxDecompressedFileSize`: one file, decompressed.
pub(crate) const MAX_FILE_SIZE: u64 = 5 * 1024 * 1024;

/// The top-level files lockstep needs from a packaged chart.
#[derive(Debug, Default)]
pub(crate) struct Packaged {
    pub chart_yaml: Option<String>,
    pub values_yaml: Option<String>,
}

/// Reads `path` as helm would load it, keeping the chart's own Chart.yaml and values.yaml.
pub(crate) fn read(path: &Path) -> Result<Packaged> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read the packaged chart {}", path.display()))?;
    let mut raw = std::io::BufReader::new(file);
    // helm's ensureArchive: say plainly when the file is not gzip at all.
    let mut magic = [0u8; 2];
    let n = raw.read(&mut magic).unwrap_or(0);
    if n < 2 || magic != [0x1f, 0x8b] {
        bail!(
            "{} is not a packaged chart: a chart is a directory with a Chart.yaml, or a .tgz made by `helm package`",
            path.display()
        );
    }
    let gz = flate2::read::MultiGzDecoder::new(std::io::Cursor::new(magic).chain(raw));
    read_from(gz).with_context(|| {
        format!(
            "{} is not a chart helm can load (checked as helm's loader checks an archive)",
            path.display()
        )
    })
}

/// [`read`] on a decompressed-on-the-fly stream.
pub(crate) fn read_from(gz: impl Read) -> Result<Packaged> {
    read_limited(gz, MAX_CHART_SIZE, MAX_FILE_SIZE)
}

fn read_limited(gz: impl Read, max_chart: u64, max_file: u64) -> Result<Packaged> {
    let mut archive = tar::Archive::new(gz);
    let mut out = Packaged::default();
    let mut remaining = max_chart;
    let mut files = 0usize;
    for entry in archive.entries().context("not a tar archive")? {
        let mut entry = entry.context("a damaged tar entry")?;
        let kind = entry.header().entry_type();
        if kind.is_dir() || kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            continue;
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let inner = inner_path(&name)?;
        let want = match inner.as_str() {
            "Chart.yaml" => Some(&mut out.chart_yaml),
            "values.yaml" => Some(&mut out.values_yaml),
            _ => None,
        };
        let limit = remaining.min(max_file);
        let mut data = Vec::new();
        let read = (&mut entry)
            .take(limit + 1)
            .read_to_end(&mut data)
            .with_context(|| format!("cannot read {name} from the archive"))?
            as u64;
        if read > remaining {
            bail!("the chart is larger than {max_chart} bytes decompressed, helm's limit");
        }
        if read > max_file {
            bail!("{name} is larger than {max_file} bytes decompressed, helm's limit for one file of a chart");
        }
        remaining -= read;
        files += 1;
        if let Some(slot) = want {
            let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&data);
            *slot = Some(
                String::from_utf8(data.to_vec())
                    .with_context(|| format!("{name} in the archive is not UTF-8"))?,
            );
        }
    }
    if files == 0 {
        bail!("no files in the chart archive");
    }
    Ok(out)
}

/// The path of an entry inside the chart's directory, checked as helm checks it.
fn inner_path(name: &str) -> Result<String> {
    let delimiter = if name.contains('\\') { '\\' } else { '/' };
    let mut parts = name.split(delimiter);
    let first = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    let joined = rest.join("/");
    if joined.starts_with('/') {
        bail!("the archive has an absolute path ({name:?}): helm refuses such a chart");
    }
    let clean = clean(&joined);
    if clean == "." {
        bail!("the archive has content outside the chart's directory ({name:?}): helm refuses such a chart");
    }
    if clean.starts_with("..") {
        bail!(
            "the archive has a path into a parent directory ({name:?}): helm refuses such a chart"
        );
    }
    let b = clean.as_bytes();
    if b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'/' {
        bail!("the archive has a drive path ({name:?}): helm refuses such a chart");
    }
    if first == "Chart.yaml" {
        bail!(
            "the archive's Chart.yaml is not in the chart's directory: helm refuses such a chart"
        );
    }
    Ok(clean)
}

/// Go's `path.Clean` for a relative path: `.` and empty elements dropped, `..` applied
/// where it can be, kept at the front where it cannot.
fn clean(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if matches!(out.last(), Some(l) if *l != "..") {
                    out.pop();
                } else {
                    out.push("..");
                }
            }
            _ => out.push(part),
        }
    }
    if out.is_empty() {
        ".".to_owned()
    } else {
        out.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar.gz of (name, bytes) entries, built with the same crates.
    fn tgz(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            // Written raw: set_path would refuse the hostile names these tests need.
            let field = &mut h.as_old_mut().name;
            field[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap()
    }

    fn load(entries: &[(&str, &[u8])]) -> Result<Packaged> {
        read_from(flate2::read::MultiGzDecoder::new(&tgz(entries)[..]))
    }

    #[test]
    fn reads_the_charts_own_files() {
        let p = load(&[
            ("c/Chart.yaml", b"\xEF\xBB\xBFname: c\nversion: 1.0.0\n"),
            ("c/values.yaml", b"a: 1\n"),
            ("c/charts/sub/Chart.yaml", b"name: sub\n"),
            ("c/charts/sub/values.yaml", b"b: 2\n"),
        ])
        .unwrap();
        assert_eq!(p.chart_yaml.as_deref(), Some("name: c\nversion: 1.0.0\n"));
        assert_eq!(p.values_yaml.as_deref(), Some("a: 1\n"));
    }

    #[test]
    fn refuses_what_helm_refuses() {
        for (name, why) in [
            ("c/../../etc/passwd", "parent directory"),
            ("c/x/../../../y", "parent directory"),
            ("c//etc/passwd", "absolute path"),
            ("Chart.yaml", "outside the chart's directory"),
            ("c/", "outside the chart's directory"),
            ("c\\..\\..\\x", "parent directory"),
            ("c/c:/x", "drive path"),
        ] {
            let e = format!("{:#}", load(&[(name, b"x: 1\n")]).unwrap_err());
            assert!(e.contains(why), "{name}: {e}");
        }
        let e = format!("{:#}", load(&[]).unwrap_err());
        assert!(e.contains("no files"), "{e}");
    }

    #[test]
    fn caps_decompressed_sizes() {
        // helm's numbers.
        assert_eq!((MAX_CHART_SIZE, MAX_FILE_SIZE), (100 << 20, 5 << 20));
        let small = |entries: &[(&str, &[u8])]| {
            read_limited(
                flate2::read::MultiGzDecoder::new(&tgz(entries)[..]),
                1000,
                300,
            )
        };
        let e = format!("{:#}", small(&[("c/big.yaml", &[b'a'; 301])]).unwrap_err());
        assert!(e.contains("limit for one file"), "{e}");
        assert!(small(&[("c/big.yaml", &[b'a'; 300])]).is_ok());
        // Four files of 300: over the 1000 of the whole chart.
        let files = [
            ("c/a", &[b'a'; 300][..]),
            ("c/b", &[b'a'; 300]),
            ("c/c", &[b'a'; 300]),
            ("c/d", &[b'a'; 300]),
        ];
        let e = format!("{:#}", small(&files).unwrap_err());
        assert!(e.contains("larger than 1000 bytes"), "{e}");
        assert!(small(&files[..3]).is_ok());
        // helm's own per-file cap.
        let big = vec![b'a'; MAX_FILE_SIZE as usize + 1];
        let e = format!("{:#}", load(&[("c/templates/big.yaml", &big)]).unwrap_err());
        assert!(e.contains("limit for one file"), "{e}");
    }

    #[test]
    fn go_path_clean() {
        assert_eq!(clean("a/./b//c/"), "a/b/c");
        assert_eq!(clean("a/../.."), "..");
        assert_eq!(clean(""), ".");
        assert_eq!(clean("../a"), "../a");
    }
}
