//! `helm lockstep install|upgrade`: the final stream wrapped into a temporary chart whose
//! only template is `{{ .Files.Get "lockstep/manifests.yaml" }}` (so helm takes the
//! documents carrying `helm.sh/hook` as real hooks, and nothing is templated twice),
//! then the real `helm install|upgrade` with the validated flags; helm's exit code and
//! messages pass through ([`exit::Passed`]).

use super::args::{helm_flags, Behaviour, Invocation};
use super::cluster::Connection;
use super::{build_request, usage};
use crate::private_dir::PrivateDir;
use crate::{exit, gate, helm, stream};
use anyhow::{anyhow, Context, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The one template of the temporary chart: the final stream, as it is.
pub(crate) const TEMPLATE: &str = "{{ .Files.Get \"lockstep/manifests.yaml\" }}\n";

/// Splits the final stream for the temporary chart: CustomResourceDefinitions that came
/// from a chart's `crds/` directory (helm template's `# Source: .../crds/...`) go back to
/// `crds/`, where helm installs them once and never upgrades or deletes them, as it would
/// for the original chart; everything else goes to `lockstep/manifests.yaml`.
pub(crate) fn split_crds(text: &str) -> Result<(String, String)> {
    let s = stream::split(text)?;
    if s.json {
        return Ok((String::new(), text.to_owned()));
    }
    let (mut crds, mut rest) = (String::new(), String::new());
    for d in &s.docs {
        let from_crds_dir = d
            .head
            .as_ref()
            .is_some_and(|h| h.kind == "CustomResourceDefinition")
            && d.raw.lines().any(|l| {
                l.strip_prefix("# Source: ")
                    .is_some_and(|p| p.split('/').rev().skip(1).any(|seg| seg == "crds"))
            });
        let out = if from_crds_dir { &mut crds } else { &mut rest };
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&d.raw);
    }
    Ok((crds, rest))
}

/// Writes the temporary chart into `dir`: Chart.yaml from the original (dependencies
/// removed: they are rendered already), the single template, and the stream as a file.
pub(crate) fn write_chart(dir: &Path, chart_yaml: &str, stream: &str) -> Result<PathBuf> {
    let mut meta: serde_yaml::Value = serde_yaml::from_str(chart_yaml)
        .context("`helm show chart` printed something that is not a Chart.yaml")?;
    let map = meta.as_mapping_mut().ok_or_else(|| {
        anyhow!("`helm show chart` printed something that is not a Chart.yaml mapping")
    })?;
    map.remove("dependencies");
    let name = map
        .get("name")
        .and_then(serde_yaml::Value::as_str)
        .unwrap_or("chart")
        .to_owned();
    let safe = if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !name.starts_with('.')
    {
        name
    } else {
        "chart".to_owned()
    };
    let root = dir.join(safe);
    let (crds, manifests) = split_crds(stream)?;
    let write = |file: &str, text: &str| -> Result<()> {
        let path = root.join(file);
        let dir = path.parent().unwrap_or(&root);
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&path, text))
            .with_context(|| format!("cannot write the temporary chart's {}", path.display()))
    };
    write("Chart.yaml", &crate::yaml::to_string_of(&meta)?)?;
    write("templates/lockstep.yaml", TEMPLATE)?;
    write("lockstep/manifests.yaml", &manifests)?;
    if !crds.is_empty() {
        write("crds/lockstep-crds.yaml", &crds)?;
    }
    Ok(root)
}

/// The major version of helm (3 or 4).
fn helm_major(helm: &Path) -> Result<u64> {
    let v = helm::run(
        helm,
        &["version".into(), "--template={{.Version}}".into()],
        "helm version",
    )?;
    gate::parse_version(v.trim())
        .map(|v| v.major)
        .ok_or_else(|| {
            anyhow!(
                "cannot read helm's version from {:?} (`{} version`)",
                v.trim(),
                helm.display()
            )
        })
}

/// What `--timeout` adds to the longest hook Job deadline: pod start and Helm's own
/// deletes before and after the hook.
pub(crate) const HOOK_TIMEOUT_MARGIN_SECONDS: i64 = 120;

/// Helm's `--timeout` applies to each hook (pkg/action/hooks.go, WatchUntilReady): at
/// least the longest `activeDeadlineSeconds` of the stream's hook Jobs plus a margin, or
/// None when no hook Job has a deadline.
pub(crate) fn hook_timeout(stream: &str) -> Result<Option<i64>> {
    let mut longest: Option<i64> = None;
    for doc in crate::stream::split(stream)?.docs.iter() {
        let Some(h) = &doc.head else { continue };
        if h.kind != "Job" || !doc.raw.contains("helm.sh/hook") {
            continue;
        }
        let v = doc.value()?;
        let is_hook = v
            .get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get("helm.sh/hook"))
            .is_some();
        let deadline = v
            .get("spec")
            .and_then(|s| s.get("activeDeadlineSeconds"))
            .and_then(serde_yaml::Value::as_i64);
        if let (true, Some(d)) = (is_hook, deadline) {
            longest = Some(longest.map_or(d, |l| l.max(d)));
        }
    }
    Ok(longest.map(|l| l + HOOK_TIMEOUT_MARGIN_SECONDS))
}

/// `helm lockstep install|upgrade`.
pub(crate) fn deploy(helm: &Path, inv: &Invocation, notes: &mut Vec<String>) -> Result<()> {
    let cmd = inv.command.expect("parsed");
    let flags = match helm_flags(&inv.behaviour, helm_major(helm)?) {
        Ok(f) => f,
        Err(msg) => return Err(usage(&msg)),
    };
    let req = build_request(helm, inv, notes)?;
    let conn = Connection::new(req.namespace.clone(), inv);
    let mut buf = Vec::new();
    crate::run(&req, &mut buf, notes)?;
    let stream = String::from_utf8(buf).context("the final stream is not UTF-8")?;
    let mut flags = flags;
    if !inv
        .behaviour
        .iter()
        .any(|b| matches!(b, Behaviour::Timeout(_)))
    {
        if let Some(secs) = hook_timeout(&stream)? {
            notes.push(format!(
                "--timeout={secs}s: helm waits that long for each hook (the longest hook Job's activeDeadlineSeconds plus {HOOK_TIMEOUT_MARGIN_SECONDS}s); with helm's default 300s a long migration would be marked failed while it runs, and the retry would delete it mid-run. Pass --timeout to choose another"
            ));
            flags.push(format!("--timeout={secs}s"));
        }
    }

    let chart_abs = inv
        .chart
        .path
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", inv.chart.path.display()))?;
    let chart_yaml = helm::run(
        helm,
        &["show".into(), "chart".into(), chart_abs.into_os_string()],
        "helm show chart",
    )?;
    let tmp = PrivateDir::new("lockstep-helm", "the chart helm installs")?;
    let chart_dir = write_chart(tmp.path(), &chart_yaml, &stream)?;

    let mut args: Vec<OsString> = vec![
        cmd.name().into(),
        inv.release().into(),
        chart_dir.into_os_string(),
    ];
    args.extend(conn.args());
    // The user's values go on record in the release (`helm get values`); the temporary
    // chart does not read them: the stream is rendered already.
    for f in &inv.chart.values {
        let mut s = OsString::from("--values=");
        s.push(f.as_os_str());
        args.push(s);
    }
    args.extend(
        inv.chart
            .set
            .iter()
            .map(|s| OsString::from(format!("--set={s}"))),
    );
    args.extend(
        inv.chart
            .set_string
            .iter()
            .map(|s| OsString::from(format!("--set-string={s}"))),
    );
    args.extend(flags.into_iter().map(OsString::from));

    // lockstep's notes first, then helm on the user's terminal.
    for n in notes.drain(..) {
        eprintln!("lockstep: {n}");
    }
    let status = helm::run_inherited(helm, &args, &format!("helm {}", cmd.name()));
    drop(tmp);
    let status = status?;
    if !status.success() {
        return Err(exit::Passed(status.code().unwrap_or(exit::ERROR)).into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_timeout_covers_the_longest_hook_job_deadline() {
        let job = |name: &str, hook: &str, deadline: i64| {
            format!("---\napiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\n  annotations:\n    helm.sh/hook: {hook}\nspec:\n  activeDeadlineSeconds: {deadline}\n  template: {{spec: {{containers: []}}}}\n")
        };
        let stream = [
            job("gate", "pre-install", 300),
            job("migrate", "pre-install,pre-upgrade", 1800),
            "---\napiVersion: batch/v1\nkind: Job\nmetadata: {name: not-a-hook}\nspec: {activeDeadlineSeconds: 99999, template: {spec: {containers: []}}}\n".to_owned(),
        ]
        .concat();
        assert_eq!(
            hook_timeout(&stream).unwrap(),
            Some(1800 + HOOK_TIMEOUT_MARGIN_SECONDS)
        );
        assert_eq!(
            hook_timeout("---\nkind: ConfigMap\nmetadata: {name: a}\n").unwrap(),
            None
        );
    }

    #[test]
    fn crds_from_the_crds_directory_go_back_there() {
        let text = "---\n# Source: app/crds/widgets.yaml\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.example.com\n---\n# Source: app/templates/crd.yaml\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: gadgets.example.com\n---\n# Source: app/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: crds\n";
        let (crds, rest) = split_crds(text).unwrap();
        assert!(
            crds.contains("widgets.example.com") && !crds.contains("gadgets"),
            "{crds}"
        );
        assert!(
            rest.contains("gadgets.example.com")
                && rest.contains("kind: ConfigMap")
                && !rest.contains("widgets"),
            "{rest}"
        );
    }

    #[test]
    fn temporary_chart() {
        let dir = std::env::temp_dir().join(format!("lockstep-helm-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let chart = "apiVersion: v2\nname: app\nversion: 1.0.0\ndependencies:\n- name: db\n  version: 0.1.0\n";
        let root = write_chart(
            &dir,
            chart,
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
        )
        .unwrap();
        assert_eq!(root, dir.join("app"));
        let meta = std::fs::read_to_string(root.join("Chart.yaml")).unwrap();
        assert!(
            meta.contains("name: app") && !meta.contains("dependencies"),
            "{meta}"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("templates/lockstep.yaml")).unwrap(),
            TEMPLATE
        );
        assert!(
            std::fs::read_to_string(root.join("lockstep/manifests.yaml"))
                .unwrap()
                .contains("kind: ConfigMap")
        );
        assert!(!root.join("crds").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
