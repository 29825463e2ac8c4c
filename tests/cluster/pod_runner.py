#!/usr/bin/env python3
"""A kubelet stand-in for the Pods of Jobs, for lockstep's end-to-end tests (tests/cluster.rs).

The control plane the tests start has no kubelet: the Job controller creates Pods and they
stay Pending. This program plays the kubelet's part for Pods owned by a Job, and nothing else
(Deployment Pods stay Pending). For each such Pending Pod it:

* builds each container's environment as the kubelet does: `envFrom` (configMapRef,
  secretRef, prefix, optional) first, then `env` (value with `$(VAR)` expansion from the
  variables before it, `$$` escaping; valueFrom secretKeyRef / configMapKeyRef with
  `optional`, fieldRef metadata.name / metadata.namespace). A missing non-optional reference
  keeps the Pod Pending (the kubelet's CreateContainerConfigError) and is retried;
* materialises configMap and secret volumes (items and optional honoured), projected ones
  (the same, downwardAPI name/namespace, a real service-account token from the TokenRequest
  API) and emptyDirs in a private directory per Pod, and mounts them (subPath, subPathExpr) by path rewriting only:
  an env value or workingDir naming a mountPath is rewritten to the private directory, and
  each rewrite is logged;
* FAKES, and logs: cluster DNS names (`*.svc`, `*.svc.cluster.local`) in env values become
  127.0.0.1 (the servers run on loopback); HOME, when it names a path that is neither mounted
  nor present on the host, becomes a private directory; a Service that the tests play on
  the host (--service REGEX=HOST:PORT, e.g. a bundled database's `NAME-postgresql.NS:5432`,
  a short name a cluster's DNS search path would resolve) becomes that host and port in env
  values; the termination-message file
  (`terminationMessagePath`, which the kubelet would mount) is a private file whose path is
  passed in LOCKSTEP_TERMINATION_LOG, the gate script's own override;
* runs the containers (init containers first, then the others one after another) as host
  processes with `command` + `args` ($(VAR) expanded): no image, no user, no securityContext,
  no resource limits. An argument naming a file of the image that the tests stand in for
  (--image-file, e.g. /usr/bin/tini and Prefect's /opt/prefect/entrypoint.sh, see
  tests/cluster/image/) is replaced by the stand-in, logged. PATH is chosen by image (--image-path REGEX=DIR, e.g. the Prefect venv
  of the image's version) before the stand-ins (--path) and /usr/bin:/bin. A Pod deleted
  while running (a Job's deadline, helm's before-hook-creation) has its processes killed;
* patches the Pod's status: Running, then Succeeded or Failed with each container's exit
  code and termination message (the file, else with FallbackToLogsOnError the log's tail).

Every action is one line in the log (--log). Python 3 standard library only.
"""
import argparse
import base64
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

DNS = re.compile(r"\b[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\.svc(\.cluster\.local)?\b")
VAR = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")


class Api:
    def __init__(self, server, ca, token):
        self.server = server.rstrip("/")
        self.ctx = ssl.create_default_context(cafile=ca)
        self.token = token

    def call(self, method, path, body=None, ctype="application/json"):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Authorization", "Bearer " + self.token)
        if data is not None:
            req.add_header("Content-Type", ctype)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=30) as r:
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise RuntimeError(f"{method} {path}: {e.code} {e.read()[:300]!r}") from None

    def get(self, path):
        return self.call("GET", path)


class Missing(Exception):
    """A non-optional Secret/ConfigMap (key) a container needs does not exist yet."""


class Runner:
    def __init__(self, args):
        self.api = Api(args.server, args.ca, open(args.token).read().strip())
        self.work = os.path.abspath(args.workdir)
        self.image_path = [(re.compile(p), d) for p, d in (x.split("=", 1) for x in args.image_path)]
        self.path = args.path
        self.image_files = dict(x.split("=", 1) for x in args.image_file)
        self.services = [(re.compile(p), r) for p, r in (x.split("=", 1) for x in args.service)]
        self.log_file = open(args.log, "a", buffering=1)
        self.lock = threading.Lock()
        self.started = set()
        self.waiting = {}
        self.parent = args.parent
        # Process groups of the containers running now: killed when the runner exits, so a
        # test run that ends mid-Job leaves no container behind.
        self.running = set()

    def log(self, pod, msg):
        with self.lock:
            self.log_file.write(f"{time.strftime('%H:%M:%S')} {pod}: {msg}\n")

    # --- the kubelet's inputs -------------------------------------------------------------
    def obj(self, ns, kind, name):
        path = "configmaps" if kind == "configMap" else "secrets"
        return self.api.get(f"/api/v1/namespaces/{ns}/{path}/{name}")

    @staticmethod
    def data_of(kind, o):
        if kind == "configMap":
            out = {k: v.encode() for k, v in (o.get("data") or {}).items()}
            out.update({k: base64.b64decode(v) for k, v in (o.get("binaryData") or {}).items()})
            return out
        return {k: base64.b64decode(v) for k, v in (o.get("data") or {}).items()}

    def key_ref(self, ns, kind, ref):
        o = self.obj(ns, kind, ref["name"])
        data = self.data_of(kind, o) if o else {}
        if ref["key"] in data:
            return data[ref["key"]].decode()
        if ref.get("optional"):
            return None
        raise Missing(f"{kind} {ns}/{ref['name']} key {ref['key']}")

    @staticmethod
    def expand(s, env):
        return VAR.sub(lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), s)

    def environment(self, pod, c, rewrites, tag):
        ns = pod["metadata"]["namespace"]
        env = {}
        for src in c.get("envFrom") or []:
            kind = "configMap" if "configMapRef" in src else "secret"
            ref = src.get("configMapRef") or src.get("secretRef")
            o = self.obj(ns, kind, ref["name"])
            if o is None:
                if ref.get("optional"):
                    continue
                raise Missing(f"{kind} {ns}/{ref['name']}")
            for k, v in self.data_of(kind, o).items():
                env[src.get("prefix", "") + k] = v.decode()
        for e in c.get("env") or []:
            if "valueFrom" in e:
                vf = e["valueFrom"]
                if "secretKeyRef" in vf:
                    v = self.key_ref(ns, "secret", vf["secretKeyRef"])
                elif "configMapKeyRef" in vf:
                    v = self.key_ref(ns, "configMap", vf["configMapKeyRef"])
                elif "fieldRef" in vf:
                    fp = vf["fieldRef"]["fieldPath"]
                    if fp not in ("metadata.name", "metadata.namespace"):
                        raise RuntimeError(f"fieldRef {fp} is not supported by the pod runner")
                    v = pod["metadata"][fp.split(".")[1]]
                else:
                    raise RuntimeError(f"env {e['name']}: valueFrom {list(vf)} is not supported by the pod runner")
                if v is None:
                    continue
            else:
                v = self.expand(e.get("value", ""), env)
            env[e["name"]] = v
        for k, v in list(env.items()):
            new = self.rewrite_path(v, rewrites)
            for pattern, to in self.services:
                new = pattern.sub(to, new)
            new = DNS.sub("127.0.0.1", new)
            if new != v:
                shown = "(secret value)" if "@" in v or "PASSWORD" in k else f"{v} -> {new}"
                self.log(tag, f"rewrote env {k}: {shown}")
                env[k] = new
        return env

    @staticmethod
    def rewrite_path(v, rewrites):
        for mount, host in rewrites:
            if v == mount or v.startswith(mount.rstrip("/") + "/"):
                return host + v[len(mount.rstrip("/")):]
        return v

    def volumes(self, pod, root, tag):
        ns = pod["metadata"]["namespace"]
        out = {}
        for v in pod["spec"].get("volumes") or []:
            d = os.path.join(root, "volumes", v["name"])
            os.makedirs(d, exist_ok=True)
            if "emptyDir" in v:
                pass
            elif "configMap" in v or "secret" in v:
                kind = "configMap" if "configMap" in v else "secret"
                spec = v[kind]
                name = spec.get("name") or spec.get("secretName")
                o = self.obj(ns, kind, name)
                if o is None:
                    if not spec.get("optional"):
                        raise Missing(f"{kind} {ns}/{name} (volume {v['name']})")
                    self.log(tag, f"volume {v['name']}: optional {kind} {name} is absent, empty directory")
                else:
                    data = self.data_of(kind, o)
                    items = spec.get("items") or [{"key": k, "path": k} for k in data]
                    for it in items:
                        if it["key"] not in data:
                            if spec.get("optional"):
                                continue
                            raise Missing(f"{kind} {ns}/{name} key {it['key']}")
                        p = os.path.join(d, it["path"])
                        os.makedirs(os.path.dirname(p), exist_ok=True)
                        with open(p, "wb") as f:
                            f.write(data[it["key"]])
                    if pod["metadata"]["uid"] not in self.waiting:
                        self.log(tag, f"volume {v['name']}: {kind} {name} ({len(items)} keys) in {d}")
            elif "projected" in v:
                self.projected(pod, v["projected"], d, tag, v["name"])
            else:
                raise RuntimeError(f"volume {v['name']}: type {[k for k in v if k != 'name']} is not supported by the pod runner")
            out[v["name"]] = d
        return out

    def projected(self, pod, spec, d, tag, vname):
        """configMap, secret, downwardAPI (name, namespace) and serviceAccountToken sources; the
        token is a real one from the TokenRequest API."""
        ns = pod["metadata"]["namespace"]
        files = {}
        for src in spec.get("sources") or []:
            if "configMap" in src or "secret" in src:
                kind = "configMap" if "configMap" in src else "secret"
                ref = src[kind]
                o = self.obj(ns, kind, ref["name"])
                if o is None:
                    if ref.get("optional"):
                        continue
                    raise Missing(f"{kind} {ns}/{ref['name']} (volume {vname})")
                data = self.data_of(kind, o)
                for it in ref.get("items") or [{"key": k, "path": k} for k in data]:
                    if it["key"] in data:
                        files[it["path"]] = data[it["key"]]
            elif "downwardAPI" in src:
                for it in src["downwardAPI"].get("items") or []:
                    fp = it["fieldRef"]["fieldPath"]
                    if fp not in ("metadata.name", "metadata.namespace"):
                        raise RuntimeError(f"downwardAPI {fp} is not supported by the pod runner")
                    files[it["path"]] = pod["metadata"][fp.split(".")[1]].encode()
            elif "serviceAccountToken" in src:
                sa = pod["spec"].get("serviceAccountName") or "default"
                t = self.api.call("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token",
                                  {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {
                                      "expirationSeconds": src["serviceAccountToken"].get("expirationSeconds", 3600)}})
                files[src["serviceAccountToken"]["path"]] = t["status"]["token"].encode()
            else:
                raise RuntimeError(f"projected source {list(src)} is not supported by the pod runner")
        for path, data in files.items():
            p = os.path.join(d, path)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as f:
                f.write(data)
        if pod["metadata"]["uid"] not in self.waiting:
            self.log(tag, f"volume {vname}: projected ({', '.join(sorted(files))}) in {d}")

    # --- running --------------------------------------------------------------------------
    def pod_alive(self, ns, name, uid):
        p = self.api.get(f"/api/v1/namespaces/{ns}/pods/{name}")
        return p is not None and p["metadata"]["uid"] == uid and not p["metadata"].get("deletionTimestamp")

    def run_container(self, pod, c, vols, root, tag):
        ns, name, uid = pod["metadata"]["namespace"], pod["metadata"]["name"], pod["metadata"]["uid"]
        croot = os.path.join(root, "containers", c["name"])
        os.makedirs(croot, exist_ok=True)
        rewrites = []
        pre_env = {e["name"]: e.get("value", "") for e in c.get("env") or [] if "value" in e}
        for m in c.get("volumeMounts") or []:
            sub = m.get("subPath") or self.expand(m.get("subPathExpr", ""), pre_env)
            host = os.path.join(vols[m["name"]], sub) if sub else vols[m["name"]]
            os.makedirs(host, exist_ok=True)
            rewrites.append((m["mountPath"], host))
            self.log(tag, f"mount {m['name']}{'/' + sub if sub else ''} at {m['mountPath']} -> {host}")
        rewrites.sort(key=lambda r: -len(r[0]))
        env = self.environment(pod, c, rewrites, tag)
        home = env.get("HOME")
        if home and not os.path.isdir(home):
            env["HOME"] = os.path.join(croot, "home")
            os.makedirs(env["HOME"], exist_ok=True)
            self.log(tag, f"HOME {home} is not on the host: HOME={env['HOME']}")
        term = os.path.join(croot, "termination-log")
        open(term, "w").close()
        env["LOCKSTEP_TERMINATION_LOG"] = term
        self.log(tag, f"terminationMessagePath {c.get('terminationMessagePath', '/dev/termination-log')} -> {term} (LOCKSTEP_TERMINATION_LOG)")
        image = c.get("image", "")
        path = [self.expand_image_path(image)] + self.path + ["/usr/local/bin", "/usr/bin", "/bin"]
        env["PATH"] = ":".join(p for p in path if p)
        env["HOSTNAME"] = name
        argv = [self.expand(a, env) for a in (c.get("command") or []) + (c.get("args") or [])]
        for i, a in enumerate(argv):
            if a in self.image_files:
                self.log(tag, f"image file {a} -> {self.image_files[a]}")
                argv[i] = self.image_files[a]
        if not argv:
            raise RuntimeError(f"container {c['name']}: no command (the image's entrypoint is unknown to the pod runner)")
        wd = self.rewrite_path(c.get("workingDir") or "", rewrites) or croot
        if not os.path.isdir(wd):
            self.log(tag, f"workingDir {wd} is not on the host: {croot}")
            wd = croot
        logp = os.path.join(croot, "log")
        self.log(tag, f"run container {c['name']} (image {image}): {' '.join(argv)[:160].replace(chr(10), ' ')} [cwd {wd}]")
        t0 = time.time()
        with open(logp, "wb") as out:
            # The command is an argument vector as the container's; argv[0] resolved on PATH.
            exe = argv[0]
            if "/" not in exe:
                for p in env["PATH"].split(":"):
                    if os.access(os.path.join(p, exe), os.X_OK):
                        exe = os.path.join(p, exe)
                        break
            try:
                proc = subprocess.Popen([exe] + argv[1:], env=env, cwd=wd, stdin=subprocess.DEVNULL,
                                        stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as e:
                out.write(f"pod runner: cannot start {argv[0]}: {e}\n".encode())
                self.log(tag, f"container {c['name']} exited 127: cannot start {argv[0]}: {e}")
                return 127, f"cannot start {argv[0]}: {e}"
            with self.lock:
                self.running.add(proc.pid)
            killed = False
            while proc.poll() is None:
                time.sleep(0.5)
                try:
                    alive = self.pod_alive(ns, name, uid)
                except Exception as e:  # the API is unreachable: keep running
                    self.log(tag, f"status check failed: {e}")
                    alive = True
                if not alive and not killed:
                    self.log(tag, "Pod deleted while running: killing its processes")
                    os.killpg(proc.pid, signal.SIGTERM)
                    killed = True
                    try:
                        proc.wait(5)
                    except subprocess.TimeoutExpired:
                        os.killpg(proc.pid, signal.SIGKILL)
            with self.lock:
                self.running.discard(proc.pid)
        code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
        with open(logp, "rb") as f:
            text = f.read().decode(errors="replace")
        for line in text.splitlines()[-40:]:
            self.log(tag, f"  | {line}")
        self.log(tag, f"container {c['name']} exited {code} after {time.time() - t0:.1f}s")
        msg = open(term, errors="replace").read()[:4096]
        if not msg and code != 0 and c.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            msg = "\n".join(text.splitlines()[-80:])[-2048:]
        return (None if killed else code), msg

    def expand_image_path(self, image):
        for rx, d in self.image_path:
            m = rx.search(image)
            if m:
                return m.expand(d)
        return ""

    def patch_status(self, pod, status):
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        return self.api.call("PATCH", f"/api/v1/namespaces/{ns}/pods/{name}/status", {"status": status},
                             "application/merge-patch+json")

    def statuses(self, containers, states):
        return [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False,
                 "restartCount": 0, "state": s} for c, s in zip(containers, states)]

    def handle(self, pod):
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        tag = f"{ns}/{name}"
        root = os.path.join(self.work, ns, name)
        try:
            vols = self.volumes(pod, root, tag)
        except Missing as e:
            return self.wait(pod, tag, str(e))
        except Exception as e:
            return self.fail_pod(pod, tag, f"pod runner: {e}")
        spec = pod["spec"]
        cs = spec.get("containers") or []
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.patch_status(pod, {"phase": "Running", "startTime": now, "containerStatuses":
                                self.statuses(cs, [{"running": {"startedAt": now}}] * len(cs))})
        states = []
        failed = False
        for c in (spec.get("initContainers") or []) + cs:
            if failed:
                break
            try:
                code, msg = self.run_container(pod, c, vols, root, tag)
            except Missing as e:
                return self.wait(pod, tag, str(e))
            except Exception as e:
                code, msg = 128, f"pod runner: {e}"
                self.log(tag, msg)
            if code is None:
                return  # the Pod is gone
            if c in cs:
                end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                term = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                        "startedAt": now, "finishedAt": end}
                if msg:
                    term["message"] = msg
                states.append({"terminated": term})
            failed = code != 0
        phase = "Failed" if failed else "Succeeded"
        states += [{"terminated": {"exitCode": 137, "reason": "NotRun"}}] * (len(cs) - len(states))
        if self.patch_status(pod, {"phase": phase, "containerStatuses": self.statuses(cs, states)}) is None:
            self.log(tag, "Pod is gone; status not set")
        else:
            self.log(tag, f"status {phase}")

    def fail_pod(self, pod, tag, msg):
        self.log(tag, msg)
        cs = pod["spec"].get("containers") or []
        self.patch_status(pod, {"phase": "Failed", "containerStatuses": self.statuses(
            cs, [{"terminated": {"exitCode": 128, "reason": "StartError", "message": msg}}] * len(cs))})

    def wait(self, pod, tag, what):
        uid = pod["metadata"]["uid"]
        if self.waiting.get(uid) != what:
            self.log(tag, f"CreateContainerConfigError: {what} not found; the Pod stays Pending, retried")
            self.waiting[uid] = what
        time.sleep(1)
        with self.lock:
            self.started.discard(uid)

    def kill_running(self):
        with self.lock:
            groups = list(self.running)
        for pgid in groups:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def loop(self):
        while True:
            if self.parent and not os.path.exists(f"/proc/{self.parent}"):
                self.kill_running()
                return  # the test run that started us is gone
            try:
                pods = self.api.get("/api/v1/pods") or {"items": []}
            except Exception as e:
                print(f"pod runner: listing pods failed: {e}", file=sys.stderr)
                time.sleep(1)
                continue
            for p in pods["items"]:
                owners = p["metadata"].get("ownerReferences") or []
                if not any(o.get("kind") == "Job" for o in owners):
                    continue
                if (p.get("status") or {}).get("phase", "Pending") != "Pending" or p["metadata"].get("deletionTimestamp"):
                    continue
                uid = p["metadata"]["uid"]
                with self.lock:
                    if uid in self.started:
                        continue
                    self.started.add(uid)
                threading.Thread(target=self.safe_handle, args=(p,), daemon=True).start()
            time.sleep(0.2)

    def safe_handle(self, pod):
        tag = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
        try:
            self.handle(pod)
        except Exception as e:
            self.log(tag, f"pod runner error: {e!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--token", required=True, help="file holding a bearer token")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--image-path", action="append", default=[], metavar="REGEX=DIR")
    ap.add_argument("--path", action="append", default=[], metavar="DIR")
    ap.add_argument("--image-file", action="append", default=[], metavar="PATH=HOSTPATH",
                    help="a file of the image (an entrypoint) and its stand-in on the host")
    ap.add_argument("--service", action="append", default=[], metavar="REGEX=HOST:PORT",
                    help="a Service the tests play on the host: its address in env values")
    ap.add_argument("--parent", type=int, help="exit once this process is gone")
    Runner(ap.parse_args()).loop()


if __name__ == "__main__":
    main()
