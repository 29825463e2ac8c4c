#!/usr/bin/env python3
"""Check fake_kube.py against real helm binaries (stdlib only).

    python3 tests/fake-kube/selftest.py [HELM ...]

Without arguments it uses .tools/bin/helm3 and .tools/bin/helm4 (scripts/install-tools.sh)
when present. For each helm: `helm history prefect -o json` lists revisions 1-3,
`helm get metadata prefect --revision 2 -o json` gives chart version 0.8.2, and
`helm history nope -o json` exits 1 with "Error: release: not found" on stderr.
"""

import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def run(helm, env, *args):
    p = subprocess.run([helm, *args], env=env, capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def check(helm, kubeconfig, tmp):
    env = dict(os.environ, KUBECONFIG=kubeconfig, HELM_DRIVER="secret",
               HELM_CONFIG_HOME=os.path.join(tmp, "config"), HELM_CACHE_HOME=os.path.join(tmp, "cache"),
               HELM_DATA_HOME=os.path.join(tmp, "data"))
    env.pop("HELM_PLUGINS", None)
    fails = []

    rc, out, err = run(helm, env, "history", "prefect", "-n", "prefect", "-o", "json")
    hist = json.loads(out) if rc == 0 else []
    got = [(h["revision"], h["status"], h["chart"]) for h in hist]
    want = [(1, "superseded", "prefect-cloud-0.7.0"), (2, "deployed", "prefect-cloud-0.8.2"),
            (3, "failed", "prefect-cloud-1.2.0")]
    if got != want:
        fails.append("history: rc=%d got %r, stderr %r" % (rc, got, err))

    rc, out, err = run(helm, env, "get", "metadata", "prefect", "-n", "prefect", "--revision", "2", "-o", "json")
    meta = json.loads(out) if rc == 0 else {}
    if (meta.get("chart"), meta.get("version"), meta.get("revision"), meta.get("status")) != (
            "prefect-cloud", "0.8.2", 2, "deployed"):
        fails.append("get metadata --revision 2: rc=%d got %r, stderr %r" % (rc, meta, err))

    rc, out, err = run(helm, env, "history", "nope", "-n", "prefect", "-o", "json")
    if rc != 1 or out or err.strip() != "Error: release: not found":
        fails.append("history of a missing release: rc=%d stdout %r stderr %r" % (rc, out, err))
    return fails


def main():
    helms = sys.argv[1:] or [p for p in (os.path.join(ROOT, ".tools/bin/helm3"),
                                         os.path.join(ROOT, ".tools/bin/helm4")) if os.path.exists(p)]
    if not helms:
        print("selftest: no helm given and none in .tools/bin (run scripts/install-tools.sh)")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = os.path.join(tmp, "kubeconfig")
        server = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "fake_kube.py"),
             "--releases", os.path.join(HERE, "prefect-releases.json"),
             "--kubeconfig-out", kubeconfig, "--max-seconds", "120"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            server.stdout.readline()  # the port: kubeconfig is written before it
            failed = False
            for helm in helms:
                fails = check(helm, kubeconfig, tmp)
                print("%s: %s" % (helm, "ok" if not fails else "FAILED"))
                for f in fails:
                    print("  " + f)
                failed = failed or bool(fails)
        finally:
            server.terminate()
            server.wait(timeout=10)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
