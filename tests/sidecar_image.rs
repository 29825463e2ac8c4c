//! The sidecar image's two build files stay in step: scripts/sidecar-image.sh (podman, run
//! by .ci/run where podman works; it builds deploy/argocd/Containerfile) and
//! deploy/argocd/Dockerfile (for Docker/BuildKit users; not built here: no engine, no
//! registry). Same files at the same paths, same env, user, workdir and entrypoint; the
//! same helm release; and what the Kustomize sidecar patch and the CMP config expect of it.
//! Also: `lockstep build-id` is the sha256 of the sources, as sha256sum computes it.

mod common;

use common::repo;
use std::collections::BTreeSet;
use std::process::Command;

fn read(p: &str) -> String {
    std::fs::read_to_string(repo().join(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// Instructions (comments dropped, continuations joined) of the last stage.
fn final_stage(file: &str) -> Vec<String> {
    let text = read(file);
    let mut lines = Vec::new();
    let mut cur = String::new();
    for l in text.lines() {
        let t = l.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            cur.push_str(head.trim_end());
            cur.push(' ');
            continue;
        }
        cur.push_str(t);
        if !cur.trim().is_empty() {
            lines.push(cur.trim().to_owned());
        }
        cur.clear();
    }
    let last = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .unwrap_or_else(|| panic!("{file} has no FROM"));
    lines[last..].to_vec()
}

/// Destinations under the image root: the last argument of COPY/install lines that write
/// below `marker` (Dockerfile: /rootfs/, script: "$rootfs/).
fn rootfs_paths(text: &str, marker: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for piece in text.split([';', '\n']) {
        let t = piece.trim().trim_end_matches('\\').trim();
        if !(t.starts_with("COPY ") || t.starts_with("install ")) {
            continue;
        }
        let last = t.split_whitespace().last().unwrap().trim_matches('"');
        if let Some(p) = last.strip_prefix(marker) {
            if !p.is_empty() {
                out.insert(p.trim_end_matches('/').to_owned());
            }
        }
    }
    out
}

#[test]
fn dockerfile_and_containerfile_build_the_same_image() {
    let docker = final_stage("deploy/argocd/Dockerfile");
    let podman = final_stage("deploy/argocd/Containerfile");
    assert_eq!(podman[0], "FROM scratch");
    assert_eq!(docker[0], "FROM scratch");
    // The root filesystem comes in one COPY; everything after it is identical.
    assert_eq!(podman[1], "COPY rootfs/ /");
    assert_eq!(docker[1], "COPY --from=rootfs /rootfs/ /");
    assert_eq!(
        docker[2..],
        podman[2..],
        "Dockerfile and Containerfile differ after the COPY"
    );
    for want in [
        "USER 999:999",
        "WORKDIR /tmp",
        "ENTRYPOINT [\"/usr/local/bin/lockstep\"]",
    ] {
        assert!(
            podman.iter().any(|l| l == want),
            "Containerfile lacks {want}"
        );
    }

    let script = read("scripts/sidecar-image.sh");
    let from_script = rootfs_paths(&script, "$rootfs/");
    let from_docker = rootfs_paths(&read("deploy/argocd/Dockerfile"), "/rootfs/");
    let want: BTreeSet<String> = [
        "etc/group",
        "etc/passwd",
        "etc/ssl/certs/ca-certificates.crt",
        "tmp",
        "usr/local/bin/helm",
        "usr/local/bin/lockstep",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(from_script, want, "files the script puts into the image");
    assert_eq!(
        from_docker, want,
        "files the Dockerfile puts into the image"
    );
    // Both take passwd/group from deploy/argocd/image/, where 999 is the argocd user.
    for f in ["passwd", "group"] {
        let src = format!("deploy/argocd/image/{f}");
        assert!(script.contains(&src), "the script does not install {src}");
        assert!(read("deploy/argocd/Dockerfile").contains(&format!("COPY {src} /rootfs/etc/{f}")));
    }
    assert!(read("deploy/argocd/image/passwd")
        .lines()
        .any(|l| l.starts_with("argocd:x:999:999:")));
}

#[test]
fn both_ship_the_helm_of_install_tools() {
    let tools = read("scripts/install-tools.sh");
    let v = tools
        .lines()
        .find_map(|l| l.strip_prefix("HELM3_VERSION=\""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("HELM3_VERSION in install-tools.sh");
    assert!(read("scripts/sidecar-image.sh").contains(".tools/bin/helm3"));
    assert!(
        read("deploy/argocd/Dockerfile").contains(&format!("ARG HELM_VERSION={v}\n")),
        "deploy/argocd/Dockerfile's HELM_VERSION is not install-tools' helm 3 ({v})"
    );
}

#[test]
fn the_sidecar_patch_and_the_plugin_config_match_the_image() {
    let podman = final_stage("deploy/argocd/Containerfile");
    let env_line = podman.iter().find(|l| l.starts_with("ENV ")).unwrap();
    let image_env: BTreeSet<(String, String)> = env_line[4..]
        .split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let patch: serde_yaml::Value =
        serde_yaml::from_str(&read("deploy/argocd/repo-server-sidecar.yaml")).unwrap();
    let c = &patch[0]["value"];
    assert_eq!(c["securityContext"]["runAsUser"].as_u64(), Some(999));
    assert_eq!(
        c["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true)
    );
    for e in c["env"].as_sequence().unwrap() {
        let kv = (
            e["name"].as_str().unwrap().to_owned(),
            e["value"].as_str().unwrap().to_owned(),
        );
        assert!(
            image_env.contains(&kv),
            "the sidecar sets {kv:?}, the image does not"
        );
    }
    let plugin: serde_yaml::Value =
        serde_yaml::from_str(&read("deploy/argocd/plugin.yaml")).unwrap();
    for key in ["init", "generate"] {
        assert_eq!(
            plugin["spec"][key]["command"][0].as_str(),
            Some("/usr/local/bin/lockstep")
        );
    }
    assert_eq!(
        plugin["spec"]["parameters"]["dynamic"]["command"][0].as_str(),
        Some("/usr/local/bin/lockstep")
    );
}

/// build.rs's id equals `find SOURCES -type f | LC_ALL=C sort | xargs sha256sum | sha256sum`,
/// the way the Helm plugin's install hook computes it (which checks SHA-256 itself too).
#[test]
fn build_id_is_the_sha256_of_the_sources() {
    let out = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .arg("build-id")
        .output()
        .unwrap();
    assert!(out.status.success());
    let id = String::from_utf8(out.stdout).unwrap();
    let sh = Command::new("sh")
        .args(["scripts/helm-plugin-install.sh", "--source-id", "."])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        sh.status.success(),
        "{}",
        String::from_utf8_lossy(&sh.stderr)
    );
    let want = String::from_utf8(sh.stdout).unwrap();
    assert_eq!(id.trim().len(), 64);
    assert_eq!(
        id.trim(),
        want.trim(),
        "lockstep build-id vs the install hook's source id"
    );
}
