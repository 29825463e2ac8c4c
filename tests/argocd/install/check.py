#!/usr/bin/env python3
"""Checks the Argo CD install pieces of lockstep (no cluster, no network).

usage: check.py BUILD_OUTPUT.yaml

BUILD_OUTPUT.yaml is `kubectl kustomize tests/argocd/install`. Checked:
  - the build: the ConfigMap lockstep-cmp-plugin holding deploy/argocd/plugin.yaml as is, and
    the Deployment argocd-repo-server with its own containers, init container and volumes
    untouched plus the lockstep sidecar, its emptyDir and the ConfigMap volume;
  - deploy/argocd/plugin.yaml against the CMP contract (Argo CD parses it leniently, so a
    misspelt key would silently do nothing);
  - examples/argocd/*.yaml against plugin.yaml (plugin name, announced parameters and their
    types, values files inside the repository, the prune guard).
Prints one line per check and ends with "N passed, M failed"; exit 1 on any failure.
"""
import copy
import pathlib
import sys

import yaml

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent.parent
PLUGIN_FILE = ROOT / "deploy" / "argocd" / "plugin.yaml"
STANDIN_FILE = HERE / "argocd-repo-server.yaml"
EXAMPLES = sorted((ROOT / "examples" / "argocd").glob("*.yaml"))

CMP_SOCKET_DIR = "/home/argocd/cmp-server/plugins"
CMP_CONFIG = "/home/argocd/cmp-server/config/plugin.yaml"
CMP_SERVER = "/var/run/argocd/argocd-cmp-server"
IMAGE_NAME = "ghcr.io/lockstep-dev/lockstep-cmp"
STATIC_PARAMS = {  # name -> collectionType, from the binary's Argo CD interface
    "values-files": "array",
    "helm-parameters": "map",
    "release": "string",
    "profile": "string",
    "from": "string",
    "phase": "string",
    "force-migrations": "string",
}

passed = 0
failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   - {name}")
    else:
        failed += 1
        print(f"FAIL - {name}" + (f": {detail}" if detail else ""))
    return ok


def by_name(items):
    return {i.get("name"): i for i in items or []}


# --- the kustomize build ---------------------------------------------------------------
def check_build(path):
    docs = [d for d in yaml.safe_load_all(pathlib.Path(path).read_text()) if d]
    kinds = sorted(f"{d.get('kind')}/{d.get('metadata', {}).get('name')}" for d in docs)
    check("build has exactly the ConfigMap and the Deployment",
          kinds == ["ConfigMap/lockstep-cmp-plugin", "Deployment/argocd-repo-server"], kinds)
    cms = [d for d in docs if d.get("kind") == "ConfigMap"]
    deps = [d for d in docs if d.get("kind") == "Deployment"]
    if not cms or not deps:
        check("build output usable", False, "missing ConfigMap or Deployment")
        return
    cm, dep = cms[0], deps[0]
    check("ConfigMap name has no hash suffix", cm["metadata"]["name"] == "lockstep-cmp-plugin")
    check("ConfigMap holds only plugin.yaml", sorted(cm.get("data", {})) == ["plugin.yaml"])
    check("ConfigMap plugin.yaml is deploy/argocd/plugin.yaml verbatim",
          cm.get("data", {}).get("plugin.yaml") == PLUGIN_FILE.read_text())
    check("ConfigMap and Deployment in the same namespace",
          cm["metadata"].get("namespace") == dep["metadata"].get("namespace") == "argocd")

    standin = yaml.safe_load(STANDIN_FILE.read_text())
    want_pod = standin["spec"]["template"]["spec"]
    pod = dep["spec"]["template"]["spec"]
    containers = by_name(pod.get("containers"))
    check("containers are argocd-repo-server then lockstep",
          [c["name"] for c in pod.get("containers", [])] == ["argocd-repo-server", "lockstep"],
          [c.get("name") for c in pod.get("containers", [])])
    check("repo-server container untouched",
          containers.get("argocd-repo-server") == want_pod["containers"][0])
    check("copyutil init container untouched", pod.get("initContainers") == want_pod["initContainers"])
    vols = by_name(pod.get("volumes"))
    check("every upstream volume kept unchanged",
          all(vols.get(v["name"]) == v for v in want_pod["volumes"]),
          sorted(set(v["name"] for v in want_pod["volumes"]) - set(vols)))
    check("volumes var-files and plugins present (emptyDir)",
          all(vols.get(n, {}).get("emptyDir") == {} for n in ("var-files", "plugins")))
    check("volume lockstep-tmp is an emptyDir", "emptyDir" in vols.get("lockstep-tmp", {}))
    check("volume lockstep-cmp-plugin mounts the ConfigMap",
          vols.get("lockstep-cmp-plugin", {}).get("configMap", {}).get("name") == cm["metadata"]["name"])
    check("no duplicate volume names", len(vols) == len(pod.get("volumes", [])))
    others = {k: v for k, v in pod.items() if k not in ("containers", "volumes")}
    want_others = {k: v for k, v in want_pod.items() if k not in ("containers", "volumes")}
    check("rest of the pod spec untouched", others == want_others)

    c = containers.get("lockstep")
    if not check("sidecar container lockstep present", c is not None):
        return
    check("sidecar command is argocd-cmp-server", c.get("command") == [CMP_SERVER] and "args" not in c)
    check("sidecar image is the kustomize-overridable placeholder",
          c.get("image", "").rsplit(":", 1)[0] == IMAGE_NAME, c.get("image"))
    sc = c.get("securityContext", {})
    want_sc = {"runAsNonRoot": True, "runAsUser": 999, "allowPrivilegeEscalation": False,
               "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    check("sidecar securityContext", all(sc.get(k) == v for k, v in want_sc.items()), sc)
    mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
    check("mount var-files at /var/run/argocd", mounts.get("var-files", {}).get("mountPath") == "/var/run/argocd")
    check("mount plugins at the socket dir",
          mounts.get("plugins", {}).get("mountPath") == CMP_SOCKET_DIR
          and not mounts["plugins"].get("readOnly"))
    check("own emptyDir at /tmp, never the repo-server's tmp",
          mounts.get("lockstep-tmp", {}).get("mountPath") == "/tmp" and "tmp" not in mounts)
    cfg = mounts.get("lockstep-cmp-plugin", {})
    check("plugin.yaml mounted with subPath",
          cfg.get("mountPath") == CMP_CONFIG and cfg.get("subPath") == "plugin.yaml")
    check("every sidecar mount has a volume", all(n in vols for n in mounts), sorted(set(mounts) - set(vols)))
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    check("helm homes are writable (under /tmp)",
          all(str(env.get(k, "")).startswith("/tmp/")
              for k in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME")), env)
    res = c.get("resources", {})
    check("sidecar resource requests and limits",
          {"cpu", "memory"} <= set(res.get("requests", {})) and "memory" in res.get("limits", {}), res)


# --- plugin.yaml against the contract --------------------------------------------------
def argv_ok(cmd, want):
    return (isinstance(cmd, dict) and set(cmd) <= {"command", "args"}
            and cmd.get("command") == want and not cmd.get("args"))


def check_plugin():
    p = yaml.safe_load(PLUGIN_FILE.read_text())
    check("plugin: top-level keys", set(p) == {"apiVersion", "kind", "metadata", "spec"}, sorted(p))
    check("plugin: apiVersion/kind",
          p.get("apiVersion") == "argoproj.io/v1alpha1" and p.get("kind") == "ConfigManagementPlugin")
    check("plugin: metadata.name lockstep", p.get("metadata") == {"name": "lockstep"}, p.get("metadata"))
    s = p.get("spec", {})
    known = {"version", "init", "generate", "discover", "parameters", "preserveFileMode",
             "provideGitCreds"}
    check("plugin: spec keys all known to Argo CD", set(s) <= known, sorted(set(s) - known))
    check("plugin: version v1 (Applications use lockstep-v1)", s.get("version") == "v1")
    lk = "/usr/local/bin/lockstep"
    check("plugin: init is exec of lockstep argocd init", argv_ok(s.get("init"), [lk, "argocd", "init"]))
    check("plugin: generate is exec of lockstep argocd generate",
          argv_ok(s.get("generate"), [lk, "argocd", "generate"]))
    d = s.get("discover")
    check("plugin: discovery on ./lockstep.yaml only", d == {"fileName": "./lockstep.yaml"}, d)
    params = s.get("parameters", {})
    check("plugin: parameters keys", set(params) == {"static", "dynamic"}, sorted(params))
    check("plugin: dynamic parameters is exec of lockstep argocd parameters",
          argv_ok(params.get("dynamic"), [lk, "argocd", "parameters"]))
    static = params.get("static", [])
    names = [x.get("name") for x in static]
    check("plugin: static parameter names", sorted(names) == sorted(STATIC_PARAMS), names)
    pkeys = {"name", "title", "tooltip", "required", "itemType", "collectionType", "string", "array", "map"}
    for x in static:
        n = x.get("name")
        check(f"plugin: parameter {n} keys known", set(x) <= pkeys, sorted(set(x) - pkeys))
        check(f"plugin: parameter {n} has title and tooltip", bool(x.get("title")) and bool(x.get("tooltip")))
        check(f"plugin: parameter {n} collectionType {STATIC_PARAMS.get(n)}",
              x.get("collectionType") == STATIC_PARAMS.get(n))
    phase = by_name(static).get("phase", {})
    check("plugin: phase announces default presync", phase.get("string") == "presync")
    check("plugin: preserveFileMode and provideGitCreds off",
          s.get("preserveFileMode") is False and s.get("provideGitCreds") is False)
    argvs = [c.get("command", []) + c.get("args", []) for c in
             (s.get("init") or {}, s.get("generate") or {}, params.get("dynamic") or {},
              (s.get("discover") or {}).get("find") or {})]
    shells = [a for a in argvs if a and (a[0].rsplit("/", 1)[-1] in ("sh", "bash", "dash", "ash") or "-c" in a)]
    check("plugin: no command runs a shell", not shells, shells)
    return p


# --- the example Applications ------------------------------------------------------------
def check_examples(plugin):
    check("examples: Application files present", len(EXAMPLES) >= 2, [e.name for e in EXAMPLES])
    spec = plugin.get("spec") or {}
    want_name = f"{(plugin.get('metadata') or {}).get('name')}-{spec.get('version')}"
    announced = {x.get("name"): x.get("collectionType", "string")
                 for x in ((spec.get("parameters") or {}).get("static") or [])}
    for f in EXAMPLES:
        for app in (d for d in yaml.safe_load_all(f.read_text()) if d):
            tag = f"{f.name}"
            check(f"{tag}: Application", app.get("apiVersion") == "argoproj.io/v1alpha1"
                  and app.get("kind") == "Application")
            spec = app.get("spec", {})
            src = spec.get("source", {})
            pl = src.get("plugin", {})
            check(f"{tag}: plugin name {want_name}", pl.get("name") == want_name, pl.get("name"))
            envs = pl.get("env", [])
            check(f"{tag}: env entries have name and string value",
                  all(set(e) == {"name", "value"} and isinstance(e["value"], str) for e in envs))
            seen = set()
            for prm in pl.get("parameters", []):
                n = prm.get("name")
                kind = announced.get(n)
                vals = [k for k in ("string", "array", "map") if k in prm]
                check(f"{tag}: parameter {n} is announced", kind is not None)
                check(f"{tag}: parameter {n} given as {kind}", vals == [kind], vals)
                check(f"{tag}: parameter {n} set once", n not in seen)
                seen.add(n)
                if kind == "map":
                    check(f"{tag}: parameter {n} map values are strings",
                          all(isinstance(v, str) for v in prm.get("map", {}).values()))
                if n == "values-files":
                    bad = [v for v in prm.get("array", [])
                           if not isinstance(v, str) or v.startswith("/") or ".." in v.split("/")]
                    check(f"{tag}: values files relative and inside the repository", not bad, bad)
                if n == "phase":
                    check(f"{tag}: phase is presync or sync", prm.get("string") in ("presync", "sync"))
            check(f"{tag}: shows values-files, helm-parameters, release, phase",
                  {"values-files", "helm-parameters", "release", "phase"} <= seen, sorted(seen))
            sp = spec.get("syncPolicy", {})
            auto = sp.get("automated", {})
            check(f"{tag}: automated sync never allows an empty app", auto.get("allowEmpty") is not True)
            check(f"{tag}: CreateNamespace=true", "CreateNamespace=true" in sp.get("syncOptions", []))
            app_dir = ROOT / src.get("path", "")
            if app_dir.is_dir():
                check(f"{tag}: {src['path']} has lockstep.yaml (discovery)", (app_dir / "lockstep.yaml").is_file())
                for prm in pl.get("parameters", []):
                    if prm.get("name") == "values-files":
                        missing = [v for v in prm.get("array", []) if not (app_dir / v).is_file()]
                        check(f"{tag}: values files exist in {src['path']}", not missing, missing)
            else:
                print(f"note - {tag}: {src.get('path')} does not exist yet; app-dir checks skipped")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    check_build(sys.argv[1])
    plugin = check_plugin()
    check_examples(copy.deepcopy(plugin))
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
