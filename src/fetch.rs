//! Fetch: a chart that is not on disk, pulled once with the real helm.
//!
//! A chart argument is what `helm template` accepts: a directory, a packaged `.tgz`, a
//! `REPO/CHART` of a repository added with `helm repo add`, a chart name with `--repo
//! URL`, or an `oci://` reference, each with an optional `--version`. Whatever is not on
//! disk is pulled with `helm pull ... --destination DIR` (an argument vector) into a
//! private temporary directory (mode 0700, removed when the [`Pulled`] is dropped), and
//! from there on it is a packaged chart like any other.
//!
//! Credentials come only from the environment (`LOCKSTEP_REPO_USERNAME`,
//! `LOCKSTEP_REPO_PASSWORD`) or a file (`--password-file`), never from a command-line
//! flag, and never reach one: helm gets the password on its stdin (`helm repo add
//! --password-stdin` into a temporary repository config for `--repo URL`, `helm registry
//! login --password-stdin` into a temporary registry config for `oci://`). No error
//! message shows helm's arguments, and none shows the password.
//!
//! This module owns deciding where a chart is and getting it onto disk. It must not read
//! the chart (`source` does) or render it (`render` does).

use crate::private_dir::PrivateDir;
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// How to pull a chart that is not on disk: helm's pulling flags that lockstep passes on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullOptions {
    /// `--repo URL`: CHART is a chart name in that repository.
    pub repo: Option<String>,
    /// `--version`: a version or a constraint, as helm takes it (default: the latest).
    pub version: Option<String>,
    /// `--username` (or LOCKSTEP_REPO_USERNAME).
    pub username: Option<String>,
    /// A file holding the password (or LOCKSTEP_REPO_PASSWORD).
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_tls_verify: bool,
    /// For `oci://` registries served over plain HTTP.
    pub plain_http: bool,
}

/// Where a chart argument points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// A directory or a file on disk.
    Local(PathBuf),
    /// Something helm pulls: `oci://...`, `REPO/CHART`, or a name in `--repo`.
    Remote(String),
}

/// Where `chart` is, as helm decides it: `oci://` and `--repo` always pull; an existing
/// path is local; `NAME/CHART` that is not on disk is a repository chart; anything else
/// is a local path (that may not exist: reading it says so).
pub(crate) fn locate(chart: &str, opts: &PullOptions) -> Location {
    if chart.starts_with("oci://") || opts.repo.is_some() {
        return Location::Remote(chart.to_owned());
    }
    let p = Path::new(chart);
    if p.exists() {
        return Location::Local(p.to_path_buf());
    }
    let parts: Vec<&str> = chart.split('/').collect();
    let repo_like = parts.len() == 2
        && parts
            .iter()
            .all(|s| !s.is_empty() && !s.starts_with('.') && !s.contains('\\'));
    if repo_like && !chart.ends_with(".tgz") {
        Location::Remote(chart.to_owned())
    } else {
        Location::Local(p.to_path_buf())
    }
}

/// The chart on disk for `chart`: the path itself, or the `.tgz` helm pulled (kept while
/// the returned [`Pulled`] lives). A local chart with `--version` must be that version.
pub fn resolve(chart: &str, opts: &PullOptions) -> Result<(PathBuf, Option<Pulled>)> {
    match locate(chart, opts) {
        Location::Local(p) => {
            if opts
                != &(PullOptions {
                    version: opts.version.clone(),
                    ..Default::default()
                })
            {
                bail!("{chart} is a local chart: --repo, credentials, --ca-file, --insecure-skip-tls-verify and --plain-http are for charts helm fetches (REPO/CHART, --repo URL CHART, oci://)");
            }
            Ok((p, None))
        }
        Location::Remote(r) => {
            let helm = crate::helm::helm_bin()?;
            let pulled = pull(&helm, &r, opts)?;
            Ok((pulled.tgz.clone(), Some(pulled)))
        }
    }
}

/// `--version` given with a local chart: helm renders what is on disk, so a different
/// version there is an error, not a silent render of another release.
pub fn check_version(
    chart: &Path,
    want: Option<&str>,
    meta: &crate::source::ChartMeta,
) -> Result<()> {
    let Some(want) = want else {
        return Ok(());
    };
    let have = semver::Version::parse(&meta.version).ok();
    let ok = match (semver::Version::parse(want.trim_start_matches('v')), &have) {
        (Ok(w), Some(h)) => &w == h,
        (Err(_), Some(h)) => semver::VersionReq::parse(want).is_ok_and(|r| r.matches(h)),
        (_, None) => want == meta.version,
    };
    if !ok {
        bail!(
            "--version {want}: the local chart {} is {} {}; a local chart is rendered as it is (pass a chart helm fetches, REPO/CHART, --repo URL CHART or oci://, to get another version)",
            chart.display(),
            meta.name,
            meta.version
        );
    }
    Ok(())
}

/// A pulled chart: the `.tgz`, in a private directory removed on drop.
#[derive(Debug)]
pub struct Pulled {
    _dir: PrivateDir,
    pub tgz: PathBuf,
}

/// The password, from `--password-file`, else LOCKSTEP_REPO_PASSWORD.
fn password(opts: &PullOptions) -> Result<Option<String>> {
    if let Some(f) = &opts.password_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the password file {}", f.display()))?;
        let pw = text.trim_end_matches(['\n', '\r']).to_owned();
        if pw.is_empty() {
            bail!("the password file {} is empty", f.display());
        }
        return Ok(Some(pw));
    }
    Ok(std::env::var("LOCKSTEP_REPO_PASSWORD")
        .ok()
        .filter(|s| !s.is_empty()))
}

fn username(opts: &PullOptions) -> Option<String> {
    opts.username.clone().or_else(|| {
        std::env::var("LOCKSTEP_REPO_USERNAME")
            .ok()
            .filter(|s| !s.is_empty())
    })
}

/// Checks what can be checked before helm runs: no credentials inside a URL, flags that
/// fit the reference.
fn check(reference: &str, opts: &PullOptions) -> Result<()> {
    for url in [Some(reference), opts.repo.as_deref()]
        .into_iter()
        .flatten()
    {
        if let Some((_, rest)) = url.split_once("://") {
            let authority = rest.split('/').next().unwrap_or_default();
            if authority.contains('@') {
                bail!("the chart URL holds credentials (user:password@): they would show in process lists and logs. Remove them from the URL and set LOCKSTEP_REPO_USERNAME and LOCKSTEP_REPO_PASSWORD (or --password-file FILE)");
            }
        }
    }
    if let Some(repo) = &opts.repo {
        if !(repo.starts_with("http://") || repo.starts_with("https://")) {
            bail!("--repo {repo:?} is not an http(s) URL: for an OCI registry pass the chart as oci://HOST/PATH/CHART instead");
        }
        if reference.contains('/') {
            bail!("with --repo URL, CHART is the chart's name in that repository (e.g. prefect-server), not {reference:?}");
        }
    }
    if opts.plain_http && !reference.starts_with("oci://") {
        bail!("--plain-http is for oci:// registries; an http:// repository URL is plain HTTP already");
    }
    Ok(())
}

/// Pulls `reference` with helm into a private temporary directory.
pub(crate) fn pull(helm: &Path, reference: &str, opts: &PullOptions) -> Result<Pulled> {
    check(reference, opts)?;
    let dir = PrivateDir::new("lockstep-chart", "the chart helm pulls")?;
    let dest = dir.path().join("chart");
    std::fs::create_dir(&dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let tls = tls_flags(opts);
    // Settings of helm's own that this pull must use: private ones when credentials are
    // given, so nothing is written to the user's helm configuration.
    let mut env: Vec<(&str, OsString)> = Vec::new();
    let mut args: Vec<OsString> = vec!["pull".into()];
    match credentials(opts)? {
        Some((user, pw)) if reference.starts_with("oci://") => {
            env.push((
                "HELM_REGISTRY_CONFIG",
                dir.path().join("registry.json").into(),
            ));
            registry_login(helm, reference, opts, (&user, &pw), &tls, &env)?;
            args.push(reference.into());
        }
        Some((user, pw)) => {
            env.push((
                "HELM_REPOSITORY_CONFIG",
                dir.path().join("repositories.yaml").into(),
            ));
            env.push(("HELM_REPOSITORY_CACHE", dir.path().join("cache").into()));
            repo_add(helm, opts, (&user, &pw), &tls, &env)?;
            args.push(format!("lockstep-pull/{reference}").into());
        }
        None => {
            if let Some(url) = &opts.repo {
                args.push(format!("--repo={url}").into());
            }
            args.push(reference.into());
        }
    }
    args.push({
        let mut d = OsString::from("--destination=");
        d.push(dest.as_os_str());
        d
    });
    if let Some(v) = &opts.version {
        args.push(format!("--version={v}").into());
    }
    args.extend(tls);
    if opts.plain_http {
        args.push("--plain-http".into());
    }
    run_pull(helm, &args, &env, reference, opts)?;
    Ok(Pulled {
        tgz: the_one_tgz(&dest, reference)?,
        _dir: dir,
    })
}

/// The user name and password, both or neither.
fn credentials(opts: &PullOptions) -> Result<Option<(String, String)>> {
    match (username(opts), password(opts)?) {
        (Some(user), Some(pw)) => Ok(Some((user, pw))),
        (None, None) => Ok(None),
        _ => bail!("credentials need both a username (--username or LOCKSTEP_REPO_USERNAME) and a password (LOCKSTEP_REPO_PASSWORD or --password-file)"),
    }
}

/// `--ca-file` and `--insecure-skip-tls-verify`, as every helm command of the pull takes them.
fn tls_flags(opts: &PullOptions) -> Vec<OsString> {
    let mut tls: Vec<OsString> = Vec::new();
    if let Some(ca) = &opts.ca_file {
        let mut a = OsString::from("--ca-file=");
        a.push(ca.as_os_str());
        tls.push(a);
    }
    if opts.insecure_skip_tls_verify {
        tls.push("--insecure-skip-tls-verify".into());
    }
    tls
}

/// `helm registry login` to the registry of an oci:// reference, the password on stdin.
fn registry_login(
    helm: &Path,
    reference: &str,
    opts: &PullOptions,
    user: (&str, &str),
    tls: &[OsString],
    env: &[(&str, OsString)],
) -> Result<()> {
    let host = reference["oci://".len()..]
        .split('/')
        .next()
        .unwrap_or_default();
    let mut flags = tls.to_vec();
    if opts.plain_http || opts.insecure_skip_tls_verify {
        flags.push("--insecure".into());
    }
    let command = ["registry", "login", host];
    log_in(helm, &command, user, &flags, env, "helm registry login")
}

/// `helm repo add lockstep-pull URL` into the private repository configuration, the
/// password on stdin.
fn repo_add(
    helm: &Path,
    opts: &PullOptions,
    user: (&str, &str),
    tls: &[OsString],
    env: &[(&str, OsString)],
) -> Result<()> {
    let Some(url) = &opts.repo else {
        bail!("credentials are for --repo URL and oci:// charts: a repository added with `helm repo add` uses the credentials stored with it");
    };
    let command = ["repo", "add", "lockstep-pull", url.as_str()];
    log_in(helm, &command, user, tls, env, "helm repo add")
}

/// Runs the helm `command` that stores credentials, the user as a flag and the password
/// on stdin, then `flags`.
fn log_in(
    helm: &Path,
    command: &[&str],
    (user, pw): (&str, &str),
    flags: &[OsString],
    env: &[(&str, OsString)],
    what: &str,
) -> Result<()> {
    let mut args: Vec<OsString> = command.iter().map(OsString::from).collect();
    args.push(format!("--username={user}").into());
    args.push("--password-stdin".into());
    args.extend(flags.iter().cloned());
    with_stdin(helm, &args, env, pw, what)
}

/// Runs `helm pull`; its failure says what to check.
fn run_pull(
    helm: &Path,
    args: &[OsString],
    env: &[(&str, OsString)],
    reference: &str,
    opts: &PullOptions,
) -> Result<()> {
    let out = Command::new(helm)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not run {} for helm pull", helm.display()))?;
    if !out.status.success() {
        bail!(
            "cannot fetch the chart {reference}{}: `helm pull` failed ({}): {}\n  fix: {}",
            opts.version
                .as_deref()
                .map(|v| format!(" version {v}"))
                .unwrap_or_default(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            fix_for(reference, opts)
        );
    }
    Ok(())
}

/// The packaged chart `helm pull` left in `dest`: exactly one.
fn the_one_tgz(dest: &Path, reference: &str) -> Result<PathBuf> {
    let mut tgzs: Vec<PathBuf> = std::fs::read_dir(dest)
        .with_context(|| format!("cannot read {}", dest.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "tgz"))
        .collect();
    if tgzs.len() != 1 {
        bail!(
            "`helm pull {reference}` left {} packaged charts instead of one",
            tgzs.len()
        );
    }
    Ok(tgzs.pop().expect("one"))
}

fn fix_for(reference: &str, opts: &PullOptions) -> &'static str {
    if reference.starts_with("oci://") {
        "check the reference (oci://HOST/PATH/CHART, no tag: use --version), the network, and credentials (LOCKSTEP_REPO_USERNAME/LOCKSTEP_REPO_PASSWORD); a registry on plain HTTP needs --plain-http"
    } else if opts.repo.is_some() {
        "check the repository URL (its index.yaml must list the chart), the chart name and --version, and credentials (LOCKSTEP_REPO_USERNAME/LOCKSTEP_REPO_PASSWORD)"
    } else {
        "REPO/CHART needs the repository added first (`helm repo add REPO URL`, then `helm repo update`), or pass --repo URL CHART; for a local chart, check the path"
    }
}

/// Runs helm with `secret` on its stdin; its failure named without its arguments.
fn with_stdin(
    helm: &Path,
    args: &[OsString],
    env: &[(&str, OsString)],
    secret: &str,
    what: &str,
) -> Result<()> {
    let mut child = Command::new(helm)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not run {} for {what}", helm.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(secret.as_bytes());
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr).replace(secret, "***");
        bail!(
            "cannot log in to the chart's repository: `{what}` failed ({}): {}\n  fix: check LOCKSTEP_REPO_USERNAME and the password (LOCKSTEP_REPO_PASSWORD or --password-file)",
            out.status,
            said.trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let none = PullOptions::default();
        let repo = PullOptions {
            repo: Some("https://charts.example".into()),
            ..Default::default()
        };
        assert_eq!(
            locate("oci://r.example/c/prefect-server", &none),
            Location::Remote("oci://r.example/c/prefect-server".into())
        );
        assert_eq!(
            locate("prefect/prefect-server", &none),
            Location::Remote("prefect/prefect-server".into())
        );
        assert_eq!(
            locate("prefect-server", &repo),
            Location::Remote("prefect-server".into())
        );
        // On disk wins, as in helm; paths that cannot be REPO/CHART stay paths.
        assert_eq!(
            locate("src/lib.rs", &none),
            Location::Local("src/lib.rs".into())
        );
        for p in ["./a/b", "a/b/c", "missing", "a/b.tgz", "/abs/x"] {
            assert_eq!(locate(p, &none), Location::Local(p.into()), "{p}");
        }
    }

    #[test]
    fn refused_before_helm() {
        let e = |r: &str, o: PullOptions| format!("{:#}", check(r, &o).unwrap_err());
        assert!(
            e("oci://u:secret@r.example/c", PullOptions::default()).contains("holds credentials")
        );
        let repo = |u: &str| PullOptions {
            repo: Some(u.into()),
            ..Default::default()
        };
        assert!(e("c", repo("https://u:p@x")).contains("holds credentials"));
        assert!(!e("c", repo("https://u:p@x")).contains("u:p"));
        assert!(e("c", repo("oci://x")).contains("not an http(s) URL"));
        assert!(e("a/c", repo("https://x")).contains("chart's name"));
        let plain = PullOptions {
            plain_http: true,
            ..Default::default()
        };
        assert!(e("r/c", plain).contains("for oci://"));
    }
}
