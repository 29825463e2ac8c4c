//! Config: the app's `lockstep.yaml`, its `lockstep.lock`, and the rule that
//! user-given paths stay inside the repository.
//!
//! `lockstep.yaml` sits in the app directory (the Argo CD plugin discovers apps
//! by it) and says what to render; the CLI reads the same file. `lockstep.lock`
//! beside it records the release that is deployed, written by `lockstep bump`.
//! This module owns reading and writing both files and resolving paths; it must
//! not render or judge versions.

use crate::inject::Phase;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

pub const CONFIG_FILE: &str = "lockstep.yaml";
pub const LOCK_FILE: &str = "lockstep.lock";

/// `lockstep.yaml`. Paths are relative to the file's directory.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppConfig {
    /// Chart directory or packaged .tgz; with `repo`, the chart's name in that repository;
    /// or `oci://HOST/PATH/CHART`. `{version}` is replaced by `version`.
    #[serde(default)]
    pub chart: Option<String>,
    /// A chart repository URL (as helm's --repo): `chart` is a chart in it.
    #[serde(default)]
    pub repo: Option<String>,
    /// The version of a repository or OCI chart to fetch (default: `version`).
    #[serde(default)]
    pub chart_version: Option<String>,
    /// The release this app is pinned to (moved by `lockstep bump`).
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub release: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    /// A built-in profile name or a profile file.
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub values: Vec<String>,
    /// Passed as `--set-string KEY=VALUE`; `{version}` is replaced by `version`.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub phase: Option<Phase>,
    #[serde(default)]
    pub api_workload: Option<String>,
    #[serde(default)]
    pub gate_image: Option<String>,
}

impl AppConfig {
    /// Reads `path`, which must stay inside the repository above it (see [`read_inside`]).
    pub fn load(path: &Path) -> Result<AppConfig> {
        AppConfig::load_in(&root_of(path)?, path)
    }

    /// Reads `path`, which must resolve inside `root`; checks what it says.
    pub(crate) fn load_in(root: &Path, path: &Path) -> Result<AppConfig> {
        let text = read_inside(root, path, "the app config")?;
        let cfg: AppConfig = crate::guard::yaml(&text, &path.display().to_string())
            .context("not a valid lockstep config (fields: chart, repo, chartVersion, version, release, namespace, profile, values, set, phase, apiWorkload, gateImage)")?;
        cfg.check().with_context(|| format!("{}", path.display()))?;
        Ok(cfg)
    }

    /// Values that reach manifests, paths and messages, checked where they enter.
    fn check(&self) -> Result<()> {
        if let Some(v) = &self.version {
            crate::guard::version(v, "version")?;
        }
        if let Some(ns) = &self.namespace {
            crate::guard::namespace(ns, "lockstep.yaml namespace")?;
        }
        if let Some(img) = &self.gate_image {
            crate::guard::image(img, "gateImage")?;
        }
        Ok(())
    }

    /// Where the chart is: a path inside the repository (`root`), resolved against `dir`,
    /// or a chart helm fetches (`repo:`, or `chart: oci://...`) with the pull options it
    /// needs. None when no `chart` is named.
    pub fn chart_source(&self, root: &Path, dir: &Path) -> Result<Option<ChartSource>> {
        let Some(c) = self.chart.as_deref() else {
            if self.repo.is_some() {
                bail!("lockstep.yaml names a `repo` but no `chart`: add `chart: NAME`, the chart's name in that repository");
            }
            return Ok(None);
        };
        let chart = self.expand(c)?;
        if self.repo.is_some() || chart.starts_with("oci://") {
            let version = match self.chart_version.as_deref().or(self.version.as_deref()) {
                Some(v) => Some(self.expand(v)?),
                None => None,
            };
            return Ok(Some(ChartSource::Fetch {
                chart,
                pull: crate::fetch::PullOptions {
                    repo: self.repo.clone(),
                    version,
                    ..Default::default()
                },
            }));
        }
        Ok(Some(ChartSource::Path(inside(root, dir, &chart, "chart")?)))
    }

    /// The values files, each resolved inside the repository `root` from the app's `dir`.
    pub fn values_in(&self, root: &Path, dir: &Path) -> Result<Vec<PathBuf>> {
        self.values
            .iter()
            .map(|v| inside(root, dir, v, "values file"))
            .collect()
    }

    /// `set` as helm `--set-string KEY=VALUE` arguments, `{version}` expanded and the value
    /// escaped (a comma in it starts no other key); keys `skip` says another source gives
    /// are left out.
    pub fn set_strings(&self, skip: impl Fn(&str) -> bool) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for (k, v) in self.set.iter().filter(|(k, _)| !skip(k)) {
            out.push(format!(
                "{k}={}",
                crate::source::escape_set_value(&self.expand(v)?)
            ));
        }
        Ok(out)
    }

    /// Replaces `{version}` with the pinned version.
    pub(crate) fn expand(&self, s: &str) -> Result<String> {
        if !s.contains("{version}") {
            return Ok(s.to_owned());
        }
        match &self.version {
            Some(v) => Ok(s.replace("{version}", v)),
            None => bail!("lockstep.yaml uses {{version}} in {s:?} but sets no `version`"),
        }
    }
}

/// Where lockstep.yaml's chart is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChartSource {
    /// A chart directory or .tgz inside the repository.
    Path(PathBuf),
    /// A chart helm fetches ([`crate::fetch`]).
    Fetch {
        chart: String,
        pull: crate::fetch::PullOptions,
    },
}

/// `lockstep.lock`: the release that runs now.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub deployed: Deployed,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployed {
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

impl Lock {
    /// Reads `path` when it exists; it must stay inside the repository above it.
    pub fn load(path: &Path) -> Result<Option<Lock>> {
        if std::fs::symlink_metadata(path).is_err() {
            return Ok(None);
        }
        Lock::load_in(&root_of(path)?, path)
    }

    /// Reads `path` when it exists; it must resolve inside `root`.
    pub(crate) fn load_in(root: &Path, path: &Path) -> Result<Option<Lock>> {
        if std::fs::symlink_metadata(path).is_err() {
            return Ok(None);
        }
        let text = read_inside(root, path, "the lock file")?;
        let fix = "Restore it from git, or delete it and pass --from VERSION";
        let lock: Lock =
            crate::guard::yaml(&text, &path.display().to_string()).with_context(|| {
                format!(
                    "{} is corrupt: expected `deployed: {{version: X.Y.Z, image: IMAGE}}`. {fix}",
                    path.display()
                )
            })?;
        crate::guard::version(&lock.deployed.version, "deployed.version")
            .and_then(|()| {
                crate::gate::parse_version(&lock.deployed.version)
                    .map(|_| ())
                    .ok_or_else(|| anyhow::anyhow!("deployed.version is not a version"))
            })
            .with_context(|| format!("{} is corrupt. {fix}", path.display()))?;
        if let Some(img) = &lock.deployed.image {
            crate::guard::image(img, "deployed.image")
                .with_context(|| format!("{} is corrupt. {fix}", path.display()))?;
        }
        Ok(Some(lock))
    }

    /// The file's text, as `lockstep bump` writes it.
    pub fn to_text(&self) -> Result<String> {
        Ok(format!(
            "# Written by `lockstep bump`: the release this app runs now. The next render must be\n# reachable from it. Commit this file with the change to lockstep.yaml.\n{}",
            serde_yaml::to_string(self)?
        ))
    }
}

/// The repository root above the file `path`.
fn root_of(path: &Path) -> Result<PathBuf> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    Ok(enclosing_repository(&dir))
}

/// Reads a file lockstep itself opens (`lockstep.yaml`, `lockstep.lock`): it is
/// resolved first, and a path (a symlink) leading outside `root` is refused before a
/// byte is read. Errors never carry the file's text.
pub(crate) fn read_inside(root: &Path, path: &Path, what: &str) -> Result<String> {
    let root = root
        .canonicalize()
        .with_context(|| format!("cannot resolve the repository root {}", root.display()))?;
    let real = path.canonicalize().with_context(|| {
        format!(
            "cannot read {what} {}: it does not resolve to a file",
            path.display()
        )
    })?;
    if !real.starts_with(&root) {
        bail!(
            "{what} {} resolves outside the repository ({}): lockstep reads only files inside the repository. Replace the symlink with the file itself",
            path.display(),
            root.display()
        );
    }
    std::fs::read_to_string(&real).with_context(|| format!("cannot read {what} {}", path.display()))
}

/// The repository root above `dir`: the nearest ancestor with `.git`, else `dir`.
pub fn enclosing_repository(dir: &Path) -> PathBuf {
    dir.ancestors()
        .find(|d| d.join(".git").exists())
        .unwrap_or(dir)
        .to_path_buf()
}

/// Resolves a user-given relative path against `base`, refusing anything that
/// leaves `root`: absolute paths, `..` escapes, and symlinks pointing out.
pub(crate) fn inside(root: &Path, base: &Path, user: &str, what: &str) -> Result<PathBuf> {
    let p = Path::new(user);
    if p.is_absolute()
        || p.components()
            .any(|c| matches!(c, Component::Prefix(_) | Component::RootDir))
    {
        bail!("{what} {user:?} is an absolute path: paths must be relative to the app directory and stay inside the repository");
    }
    let root = root
        .canonicalize()
        .with_context(|| format!("cannot resolve the repository root {}", root.display()))?;
    let base = base
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", base.display()))?;
    // Lexically first, so an escape is named as one even when its target is missing.
    let mut lexical = base.clone();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                lexical.pop();
            }
            Component::Normal(n) => lexical.push(n),
            _ => {}
        }
    }
    if !lexical.starts_with(&root) {
        // Without a .git above the app, the repository is the app directory itself.
        let why = if root == base {
            " (no .git was found above the app directory, so the repository is taken to be that directory; run lockstep inside the git checkout)"
        } else {
            ""
        };
        bail!(
            "{what} {user:?} leaves the repository {}{why}: values files and charts must stay inside the repository",
            root.display()
        );
    }
    let joined = base.join(p);
    let resolved = joined.canonicalize().with_context(|| {
        format!(
            "{what} {user:?} does not exist (looked for {})",
            joined.display()
        )
    })?;
    if !resolved.starts_with(&root) {
        bail!("{what} {user:?} resolves outside the repository ({}): values files and charts must stay inside the repository", resolved.display());
    }
    Ok(resolved)
}

/// Writes every `(path, text)` or none: each text goes to a temporary file beside its
/// path first, then the temporary files are renamed over the paths in order. When a
/// rename fails, the files already renamed get their old text back (or are removed when
/// they did not exist), so a failure anywhere leaves every path as it was.
pub fn write_all_or_none(files: &[(&Path, String)]) -> Result<()> {
    write_all_or_none_with(files, |from, to| std::fs::rename(from, to))
}

/// [`write_all_or_none`] with the rename step given (a test makes it fail).
fn write_all_or_none_with(
    files: &[(&Path, String)],
    rename: impl Fn(&Path, &Path) -> std::io::Result<()>,
) -> Result<()> {
    let temp = |p: &Path| {
        let mut name = p.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".lockstep-{}.tmp", std::process::id()));
        p.with_file_name(name)
    };
    let remove_temps = || {
        for (p, _) in files {
            let _ = std::fs::remove_file(temp(p));
        }
    };
    let mut old: Vec<Option<Vec<u8>>> = Vec::new();
    for (p, text) in files {
        old.push(std::fs::read(p).ok());
        if let Err(e) = std::fs::write(temp(p), text) {
            remove_temps();
            return Err(e).with_context(|| {
                format!("cannot write {}: nothing was changed", temp(p).display())
            });
        }
    }
    for (i, (p, _)) in files.iter().enumerate() {
        if let Err(e) = rename(&temp(p), p) {
            remove_temps();
            let mut undone = Vec::new();
            for ((done, _), before) in files[..i].iter().zip(&old) {
                let restored = match before {
                    Some(bytes) => std::fs::write(done, bytes),
                    None => std::fs::remove_file(done),
                };
                if restored.is_err() {
                    undone.push(done.display().to_string());
                }
            }
            let state = if undone.is_empty() {
                "nothing was changed".to_owned()
            } else {
                format!(
                    "{} could not be restored: restore it from git",
                    undone.join(", ")
                )
            };
            return Err(e).with_context(|| format!("cannot replace {}: {state}", p.display()));
        }
    }
    Ok(())
}

/// Rewrites the `version:` line of a lockstep.yaml text, keeping everything else.
pub fn set_version_line(text: &str, to: &str) -> Result<String> {
    let mut out = String::with_capacity(text.len() + 16);
    let mut done = false;
    for line in text.split_inclusive('\n') {
        if !done && line.starts_with("version:") {
            let nl = if line.ends_with('\n') { "\n" } else { "" };
            out.push_str(&format!("version: {}{nl}", serde_json::to_string(to)?));
            done = true;
        } else {
            out.push_str(line);
        }
    }
    if !done {
        bail!(
            "lockstep.yaml has no top-level `version:` line to move; add `version: CURRENT` first"
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside() {
        let root = std::env::temp_dir().join(format!("lockstep-inside-{}", std::process::id()));
        let app = root.join("apps/a");
        std::fs::create_dir_all(&app).unwrap();
        std::fs::write(app.join("v.yaml"), "").unwrap();
        assert!(inside(&root, &app, "v.yaml", "values file").is_ok());
        assert!(inside(&root, &app, "../../../etc/passwd", "values file").is_err());
        assert!(inside(&root, &app, "/etc/passwd", "values file").is_err());
        // The message names the root, and says why when no .git made it the app itself.
        let err = format!(
            "{:#}",
            inside(&app, &app, "../x.yaml", "chart").unwrap_err()
        );
        assert!(err.contains("no .git was found"), "{err}");
        let err = format!(
            "{:#}",
            inside(&root, &app, "../../../x", "chart").unwrap_err()
        );
        assert!(
            !err.contains("no .git") && err.contains("leaves the repository"),
            "{err}"
        );
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc/hostname", app.join("link.yaml")).unwrap();
            let err = format!(
                "{:#}",
                inside(&root, &app, "link.yaml", "values file").unwrap_err()
            );
            assert!(err.contains("outside the repository"), "{err}");
        }
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn all_or_none() {
        let dir = std::env::temp_dir().join(format!("lockstep-both-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::write(&b, "old b").unwrap();
        let files = [
            (a.as_path(), "new a".to_owned()),
            (b.as_path(), "new b".to_owned()),
        ];
        // The second rename fails: the first file, new before, is removed again.
        let second = |from: &Path, to: &Path| {
            if to == b {
                Err(std::io::Error::other("refused"))
            } else {
                std::fs::rename(from, to)
            }
        };
        let err = format!("{:#}", write_all_or_none_with(&files, second).unwrap_err());
        assert!(
            err.contains("cannot replace") && err.contains("nothing was changed"),
            "{err}"
        );
        assert!(!a.exists());
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "old b");
        // Now the first exists and the second fails: the first gets its old text back.
        std::fs::write(&a, "old a").unwrap();
        write_all_or_none_with(&files, second).unwrap_err();
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "old a");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            2,
            "no temporary file is left"
        );
        write_all_or_none(&files).unwrap();
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "new a");
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "new b");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn version_line() {
        let t = "# app\nchart: c-{version}\nversion: 0.8.2 # pinned\nrelease: r\n";
        assert_eq!(
            set_version_line(t, "1.2.0").unwrap(),
            "# app\nchart: c-{version}\nversion: \"1.2.0\"\nrelease: r\n"
        );
    }
}
