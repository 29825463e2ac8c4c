//! Versions as the gate reads them: lenient parsing (`v1.2`, `3.8.3-python3.11`), the
//! release line of a version, the sort key that puts pre-releases and package
//! revisions in order, and ranges of keys (as people read them and as the gate script
//! compares them).
//!
//! It must not know profiles or upgrade rules.

use super::*;

/// Reads a version leniently: `v1.2.3`, `1.2`, `3.8.3-python3.11` (→ 3.8.3),
/// `2.1.0-1` (a package revision: → 2.1.0). Only a suffix whose first identifier is
/// a pre-release word (`alpha`, `beta`, `rc`, `pre`, `dev`, `a`, `b`, then digits
/// only) stays a pre-release; the gate script classifies suffixes the same way.
pub fn parse_version(text: &str) -> Option<Version> {
    parse_release(text).map(|(v, _)| v)
}

/// A version, and whether it floats: `3.9` (or a tag `3.9-alpine`) names whichever
/// 3.9.x the registry serves, so it is never a downgrade of a 3.9.1.
pub fn parse_release(text: &str) -> Option<(Version, bool)> {
    let t = text.trim().trim_start_matches('v');
    if let Ok(v) = Version::parse(t) {
        if !v.pre.is_empty() && !is_prerelease(v.pre.as_str()) {
            return Some((Version::new(v.major, v.minor, v.patch), false));
        }
        return Some((v, false));
    }
    let nums: Vec<u64> = t
        .split(|c: char| !c.is_ascii_digit() && c != '.')
        .next()?
        .split('.')
        .take(3)
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    match nums.as_slice() {
        [a, b] => Some((Version::new(*a, *b, 0), true)),
        [a, b, c] => Some((Version::new(*a, *b, *c), false)),
        _ => None,
    }
}

/// Whether a semver pre-release text names a pre-release (and not a variant such
/// as `python3.11` or a package revision such as `1`). `templates/gate.sh` has the
/// same rule in `split_version`.
pub(super) fn is_prerelease(pre: &str) -> bool {
    let id = pre.split('.').next().unwrap_or("");
    let word_len = id.bytes().take_while(u8::is_ascii_lowercase).count();
    let (word, tail) = id.split_at(word_len);
    tail.bytes().all(|b| b.is_ascii_digit())
        && matches!(word, "alpha" | "beta" | "rc" | "pre" | "dev" | "a" | "b")
}

pub fn line_of(v: &Version) -> String {
    format!("{}.{}", v.major, v.minor)
}

/// The largest number the gate script compares (18 digits fit its arithmetic).
pub const MAX: u64 = 999_999_999_999_999_999;

/// A release's place in the order both halves of the gate use: major, minor,
/// patch, then a pre-release (0) before its release (1). Pre-releases of one
/// version are not ordered among themselves, and build metadata and variant
/// suffixes do not count: exactly what the gate script compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key(pub u64, pub u64, pub u64, pub u64);

pub fn key(v: &Version) -> Key {
    Key(
        v.major.min(MAX),
        v.minor.min(MAX),
        v.patch.min(MAX),
        u64::from(v.pre.is_empty()),
    )
}

impl Key {
    pub(super) fn line_start(major: u64, minor: u64) -> Key {
        Key(major, minor, 0, 0)
    }
    pub(super) fn line_end(major: u64, minor: u64) -> Key {
        Key(major, minor, MAX, 1)
    }
    pub(super) fn show(self) -> String {
        match self {
            Key(a, b, _, _) if b == MAX => format!("{a}.x"),
            Key(a, b, c, _) if c == MAX => format!("{a}.{b}.x"),
            Key(a, b, c, _) => format!("{a}.{b}.{c}"),
        }
    }
}

impl fmt::Display for Key {
    /// `M.m.p.f`, as the gate script reads it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}.{}", self.0, self.1, self.2, self.3)
    }
}

/// Live releases from `lo` to `hi`, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub lo: Key,
    pub hi: Key,
}

impl Range {
    pub(crate) fn contains(&self, k: Key) -> bool {
        self.lo <= k && k <= self.hi
    }
    pub(super) fn line(major: u64, minor: u64) -> Range {
        Range {
            lo: Key::line_start(major, minor),
            hi: Key::line_end(major, minor),
        }
    }
    /// For people: `0.8.x`, `1.2.0`, `24.8.0 to 24.8.3`.
    pub(crate) fn describe(&self) -> String {
        let Range { lo, hi } = *self;
        if lo == Key::line_start(lo.0, lo.1) && hi == Key::line_end(lo.0, lo.1) {
            return format!("{}.{}.x", lo.0, lo.1);
        }
        if lo == Key(lo.0, 0, 0, 0) && hi == Key(lo.0, MAX, MAX, 1) {
            return format!("{}.x", lo.0);
        }
        let (l, h) = (lo.show(), hi.show());
        if l == h {
            l
        } else {
            format!("{l} to {h}")
        }
    }
    /// `LO:HI`, as the gate script reads `LOCKSTEP_FROM_RANGES`.
    pub(crate) fn script(&self) -> String {
        format!("{}:{}", self.lo, self.hi)
    }
}
