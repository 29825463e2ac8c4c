#!/usr/bin/env python3
"""A small fake Kubernetes API server holding Helm release records (python3 stdlib only).

Enough of the API for the real `helm history REL -n NS -o json` and
`helm get metadata REL -n NS [--revision N] -o json` (Helm 3.19 and Helm 4.3, storage driver
"secret", the default): discovery (/version, /api, /apis, /api/v1), and Secrets
`sh.helm.release.v1.<name>.v<revision>` in namespaces, listed with a labelSelector or got by
name. Read-only: anything that would write answers 405.

Releases come from --releases FILE (JSON; YAML if PyYAML is importable), a list of

    {"name": "prefect", "namespace": "prefect", "revision": 2, "status": "deployed",
     "chart": {"name": "prefect-cloud", "version": "0.8.2", "appVersion": "3.1.0"},
     # optional:
     "description": "Upgrade complete", "updated": "2025-01-02T03:04:05Z",
     "first_deployed": "...", "notes": "", "manifest": "", "values": {}, "labels": {},
     "chart_api_version": "v2"}

(`version` is accepted for `revision`; a {"releases": [...]} wrapper too). Each record is
stored as Helm stores it (pkg/storage/driver: secrets.go newSecretsObject, util.go
encodeRelease): a Secret of type helm.sh/release.v1, labels name/owner=helm/status/version,
and data.release = base64(base64(gzip(release JSON))): Helm base64-encodes the gzip itself,
then Kubernetes base64-encodes Secret data again.

Usage:
    fake_kube.py --releases releases.json [--port-file F] [--kubeconfig-out F]
                 [--namespace NS] [--max-seconds 120] [--port 0]
The chosen port is printed to stdout as the first line (and written to --port-file).
Requests are logged to stderr. The server stops by itself after --max-seconds, and on
SIGTERM/SIGINT.
"""

import argparse
import base64
import gzip
import json
import os
import re
import signal
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

RELEASE_TYPE = "helm.sh/release.v1"
STATUSES = {
    "unknown", "deployed", "uninstalled", "superseded", "failed", "uninstalling",
    "pending-install", "pending-upgrade", "pending-rollback",
}
BASE_TIME = datetime(2025, 1, 1, tzinfo=timezone.utc)


def log(msg):
    sys.stderr.write("fake-kube: %s\n" % msg)
    sys.stderr.flush()


# ---------------------------------------------------------------------------------------
# Release records -> Secrets


def load_records(path):
    with open(path, "rb") as f:
        raw = f.read().decode("utf-8")
    try:
        data = json.loads(raw)
    except ValueError:
        try:
            import yaml  # optional
        except ImportError:
            raise SystemExit("fake-kube: %s is not JSON, and PyYAML is not available for YAML" % path)
        data = yaml.safe_load(raw)
    if isinstance(data, dict) and "releases" in data:
        data = data["releases"]
    if not isinstance(data, list):
        raise SystemExit("fake-kube: %s: expected a list of release records" % path)
    return data


def rfc3339(value, default):
    if value is None:
        return default.strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def release_json(rec, default_ns):
    """The release object as Helm's json.Marshal(release.Release) writes it."""
    try:
        name = rec["name"]
        revision = int(rec.get("revision", rec.get("version")))
        chart = rec["chart"]
        chart_name, chart_version = chart["name"], str(chart["version"])
    except (KeyError, TypeError, ValueError) as e:
        raise SystemExit("fake-kube: bad release record %r: %s" % (rec, e))
    status = rec.get("status", "deployed")
    if status not in STATUSES:
        raise SystemExit("fake-kube: release %s v%d: unknown status %r (one of %s)"
                         % (name, revision, status, ", ".join(sorted(STATUSES))))
    namespace = rec.get("namespace") or default_ns
    updated = rfc3339(rec.get("updated"), BASE_TIME + timedelta(days=revision))
    first = rfc3339(rec.get("first_deployed"), BASE_TIME + timedelta(days=1))
    default_desc = {
        "deployed": "Upgrade complete" if revision > 1 else "Install complete",
        "superseded": "Upgrade complete" if revision > 1 else "Install complete",
        "failed": "Upgrade \"%s\" failed: pre-upgrade hooks failed" % name,
    }.get(status, status)
    metadata = {
        "name": chart_name,
        "version": chart_version,
        "apiVersion": rec.get("chart_api_version", "v2"),
        "type": "application",
    }
    if chart.get("appVersion") is not None:
        metadata["appVersion"] = str(chart["appVersion"])
    for key in ("description", "annotations", "dependencies", "kubeVersion"):
        if chart.get(key) is not None:
            metadata[key] = chart[key]
    return {
        "name": name,
        "info": {
            "first_deployed": first,
            "last_deployed": updated,
            "deleted": "",
            "description": rec.get("description", default_desc),
            "status": status,
            "notes": rec.get("notes", ""),
        },
        "chart": {
            "metadata": metadata,
            "lock": None,
            "templates": [],
            "values": rec.get("chart_values", {}),
            "schema": None,
            "files": [],
        },
        "config": rec.get("values", {}),
        "manifest": rec.get("manifest", ""),
        "version": revision,
        "namespace": namespace,
        "labels": rec.get("labels") or None,
    }


def encode_release(rel):
    """pkg/storage/driver/util.go encodeRelease: base64(gzip(json))."""
    raw = json.dumps(rel, separators=(",", ":")).encode("utf-8")
    return base64.b64encode(gzip.compress(raw, compresslevel=9)).decode("ascii")


def secret_for(rel, uid):
    key = "sh.helm.release.v1.%s.v%d" % (rel["name"], rel["version"])
    helm_encoded = encode_release(rel)
    labels = dict(rel.get("labels") or {})
    labels.update({
        "name": rel["name"],
        "owner": "helm",
        "status": rel["info"]["status"],
        "version": str(rel["version"]),
    })
    return {
        "metadata": {
            "name": key,
            "namespace": rel["namespace"],
            "uid": "00000000-0000-4000-8000-%012d" % uid,
            "resourceVersion": str(1000 + uid),
            "creationTimestamp": rel["info"]["last_deployed"][:19] + "Z",
            "labels": labels,
        },
        # Kubernetes' own base64 of the bytes Helm stored (already base64 text).
        "data": {"release": base64.b64encode(helm_encoded.encode("ascii")).decode("ascii")},
        "type": RELEASE_TYPE,
    }


class Store:
    def __init__(self, records, default_ns):
        self.secrets = {}  # (namespace, name) -> secret
        for i, rec in enumerate(records, 1):
            rel = release_json(rec, default_ns)
            s = secret_for(rel, i)
            k = (s["metadata"]["namespace"], s["metadata"]["name"])
            if k in self.secrets:
                raise SystemExit("fake-kube: duplicate release record %s/%s" % k)
            self.secrets[k] = s

    def namespaces(self):
        return sorted({ns for ns, _ in self.secrets})

    def list(self, namespace, selector):
        out = []
        for (ns, _), s in sorted(self.secrets.items()):
            if namespace is not None and ns != namespace:
                continue
            if selector(s["metadata"].get("labels", {})):
                out.append(s)
        return out

    def get(self, namespace, name):
        return self.secrets.get((namespace, name))


# ---------------------------------------------------------------------------------------
# Label selectors: k=v, k==v, k!=v, k in (a,b), k notin (a,b), k, !k


def split_requirements(sel):
    parts, depth, cur = [], 0, ""
    for ch in sel:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def parse_selector(sel):
    preds = []
    for req in split_requirements(sel or ""):
        m = re.match(r"^([\w./-]+)\s+(in|notin)\s+\((.*)\)$", req)
        if m:
            key, op = m.group(1), m.group(2)
            vals = {v.strip() for v in m.group(3).split(",") if v.strip()}
            if op == "in":
                preds.append(lambda l, k=key, vs=vals: l.get(k) in vs)
            else:
                preds.append(lambda l, k=key, vs=vals: l.get(k) not in vs)
            continue
        m = re.match(r"^([\w./-]+)\s*(!=|==|=)\s*(.*)$", req)
        if m:
            key, op, val = m.group(1), m.group(2), m.group(3).strip()
            if op == "!=":
                preds.append(lambda l, k=key, v=val: l.get(k) != v)
            else:
                preds.append(lambda l, k=key, v=val: l.get(k) == v)
            continue
        m = re.match(r"^(!?)([\w./-]+)$", req)
        if m:
            neg, key = m.group(1), m.group(2)
            if neg:
                preds.append(lambda l, k=key: k not in l)
            else:
                preds.append(lambda l, k=key: k in l)
            continue
        raise ValueError("unable to parse requirement: %r" % req)
    return lambda labels: all(p(labels) for p in preds)


# ---------------------------------------------------------------------------------------
# HTTP


def status_obj(code, reason, message, details=None):
    obj = {
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    }
    if details:
        obj["details"] = details
    return obj


API_V1_RESOURCES = {
    "kind": "APIResourceList",
    "groupVersion": "v1",
    "resources": [
        {"name": "namespaces", "singularName": "namespace", "namespaced": False,
         "kind": "Namespace", "verbs": ["get", "list"], "shortNames": ["ns"]},
        {"name": "secrets", "singularName": "secret", "namespaced": True,
         "kind": "Secret", "verbs": ["get", "list"]},
    ],
}


class Handler(BaseHTTPRequestHandler):
    server_version = "fake-kube/1"
    protocol_version = "HTTP/1.1"
    store = None  # set in main

    def log_message(self, fmt, *args):  # requests go to stderr through log()
        pass

    def send_json(self, code, obj):
        body = json.dumps(obj).encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        log("%s %s -> %d" % (self.command, self.path, code))

    def not_found(self, message, kind=None, name=None):
        details = {"name": name, "kind": kind} if kind else None
        self.send_json(404, status_obj(404, "NotFound", message, details))

    def do_GET(self):
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        query = parse_qs(url.query)
        store = self.store

        if path == "/version":
            return self.send_json(200, {
                "major": "1", "minor": "33", "gitVersion": "v1.33.0-fake",
                "gitCommit": "0000000000000000000000000000000000000000",
                "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z",
                "goVersion": "go1.24.0", "compiler": "gc", "platform": "linux/amd64",
            })
        if path == "/api":
            return self.send_json(200, {
                "kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:%d" % self.server.server_port}],
            })
        if path == "/apis":
            return self.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
        if path == "/api/v1":
            return self.send_json(200, API_V1_RESOURCES)
        if path in ("/healthz", "/livez", "/readyz"):
            body = b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            log("GET %s -> 200" % self.path)
            return None

        if path == "/api/v1/namespaces":
            items = [self.namespace_obj(ns) for ns in store.namespaces()]
            return self.send_json(200, {"kind": "NamespaceList", "apiVersion": "v1",
                                        "metadata": {"resourceVersion": "1"}, "items": items})
        m = re.match(r"^/api/v1/namespaces/([^/]+)$", path)
        if m:
            return self.send_json(200, self.namespace_obj(m.group(1)))

        m = re.match(r"^/api/v1/(?:namespaces/([^/]+)/)?secrets(?:/([^/]+))?$", path)
        if m:
            namespace, name = m.group(1), m.group(2)
            if name is not None:
                if namespace is None:
                    return self.not_found("the server could not find the requested resource")
                s = store.get(namespace, name)
                if s is None:
                    return self.not_found('secrets "%s" not found' % name, "secrets", name)
                return self.send_json(200, dict(s, kind="Secret", apiVersion="v1"))
            if query.get("watch", ["false"])[0] in ("true", "1"):
                return self.send_json(405, status_obj(405, "MethodNotAllowed", "watch is not supported by fake-kube"))
            try:
                selector = parse_selector(query.get("labelSelector", [""])[0])
            except ValueError as e:
                return self.send_json(400, status_obj(400, "BadRequest", str(e)))
            items = store.list(namespace, selector)
            return self.send_json(200, {
                "kind": "SecretList", "apiVersion": "v1",
                "metadata": {"resourceVersion": "2000"}, "items": items,
            })

        return self.not_found("the server could not find the requested resource")

    do_HEAD = do_GET

    def namespace_obj(self, ns):
        return {"kind": "Namespace", "apiVersion": "v1",
                "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}},
                "status": {"phase": "Active"}}

    def refuse(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_json(405, status_obj(405, "MethodNotAllowed",
                                       "fake-kube is read-only: %s %s" % (self.command, self.path)))

    do_POST = do_PUT = do_PATCH = do_DELETE = refuse


# ---------------------------------------------------------------------------------------


def write_atomic(path, text):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def kubeconfig(port, namespace):
    return """apiVersion: v1
kind: Config
clusters:
  - name: fake-kube
    cluster:
      server: http://127.0.0.1:{port}
contexts:
  - name: fake-kube
    context:
      cluster: fake-kube
      user: fake-kube
      namespace: {ns}
current-context: fake-kube
users:
  - name: fake-kube
    user:
      token: fake-kube-token
preferences: {{}}
""".format(port=port, ns=namespace)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--releases", action="append", default=[],
                    help="JSON (or YAML with PyYAML) list of release records; repeatable")
    ap.add_argument("--namespace", default="default",
                    help="namespace for records without one, and the kubeconfig's (default: default)")
    ap.add_argument("--port", type=int, default=0, help="port to bind on 127.0.0.1 (default: a free one)")
    ap.add_argument("--port-file", help="write the port here once listening")
    ap.add_argument("--kubeconfig-out", help="write a kubeconfig for http://127.0.0.1:PORT here")
    ap.add_argument("--max-seconds", type=float, default=120.0,
                    help="stop after this many seconds (default: 120)")
    args = ap.parse_args(argv)

    records = []
    for path in args.releases:
        records.extend(load_records(path))
    Handler.store = Store(records, args.namespace)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    port = server.server_port

    if args.kubeconfig_out:
        write_atomic(args.kubeconfig_out, kubeconfig(port, args.namespace))
    if args.port_file:
        write_atomic(args.port_file, "%d\n" % port)
    sys.stdout.write("%d\n" % port)
    sys.stdout.flush()
    log("listening on http://127.0.0.1:%d with %d release record(s); stopping after %gs"
        % (port, len(Handler.store.secrets), args.max_seconds))

    stop = threading.Event()

    def on_signal(signum, _frame):
        log("signal %d: stopping" % signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    t.start()
    deadline = time.monotonic() + args.max_seconds
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            log("--max-seconds reached: stopping")
            break
        stop.wait(min(left, 0.5))
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
