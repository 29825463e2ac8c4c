#!/usr/bin/env python3
"""tests/fake-kube/fake_kube.py plus discovery for the kinds a chart renders (stdlib only).

Same command line and behaviour as fake_kube.py (read-only: every write answers 405, and
every request is logged to stderr). It also announces core/v1 serviceaccounts, configmaps
and services, apps/v1, batch/v1, autoscaling/v2 and networking.k8s.io/v1 in discovery, so Helm 3's `install --dry-run=client`
(which maps every rendered object through discovery, then GETs it to look for conflicts:
404 here) gets as far as printing the release. Pass --disable-openapi-validation to helm:
/openapi/v2 is not served.
"""

import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "fake-kube"))
import fake_kube  # noqa: E402


def res(name, kind, namespaced=True):
    return {"name": name, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind,
            "verbs": ["get", "list"]}


fake_kube.API_V1_RESOURCES["resources"] += [
    res("serviceaccounts", "ServiceAccount"),
    res("configmaps", "ConfigMap"),
    res("services", "Service"),
    res("persistentvolumeclaims", "PersistentVolumeClaim"),
]
GROUPS = {
    "apps": {"v1": [res("deployments", "Deployment"), res("statefulsets", "StatefulSet")]},
    "batch": {"v1": [res("jobs", "Job")]},
    "autoscaling": {"v2": [res("horizontalpodautoscalers", "HorizontalPodAutoscaler")]},
    "networking.k8s.io": {"v1": [res("ingresses", "Ingress")]},
}

_base_get = fake_kube.Handler.do_GET


def do_get(self):
    path = self.path.split("?", 1)[0].rstrip("/")
    if path == "/apis":
        groups = []
        for g, versions in GROUPS.items():
            vs = [{"groupVersion": "%s/%s" % (g, v), "version": v} for v in versions]
            groups.append({"name": g, "versions": vs, "preferredVersion": vs[0]})
        return self.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    m = re.match(r"^/apis/([^/]+)/([^/]+)$", path)
    if m and m.group(1) in GROUPS and m.group(2) in GROUPS[m.group(1)]:
        return self.send_json(200, {"kind": "APIResourceList", "groupVersion": "%s/%s" % m.groups(),
                                    "resources": GROUPS[m.group(1)][m.group(2)]})
    return _base_get(self)


fake_kube.Handler.do_GET = do_get
fake_kube.Handler.do_HEAD = do_get

if __name__ == "__main__":
    sys.exit(fake_kube.main())
