#!/usr/bin/env python3
"""Writes a deterministic rendered stream of about SIZE megabytes (10^6 bytes) to OUT.

    python3 bench/gen-stream.py SIZE_MB OUT

The stream looks like a big helm render: thousands of ConfigMaps (some holding JSON and
scripts as block scalars), Secrets, Services, a few large CustomResourceDefinitions (about
2% of the bytes each, deep openAPIV3Schema trees), and exactly one API workload: the
prefect-server Deployment, in the middle. Same SIZE, same bytes: no randomness, no clock.
"""
import sys

def crd(i, target):
    out = [f"""---
# Source: big/templates/crd-{i}.yaml
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets{i}.bench.lockstep.dev
  annotations:
    controller-gen.kubebuilder.io/version: v0.16.0
spec:
  group: bench.lockstep.dev
  names:
    kind: Widget{i}
    plural: widgets{i}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
"""]
    size = sum(map(len, out))
    n = 0
    while size < target:
        block = f"""            field{n}:
              description: "Field {n} of widget {i}: what it configures, its default, and the rules it must follow."
              type: object
              properties:
                name:
                  type: string
                  maxLength: 63
                  pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'
                replicas:
                  type: integer
                  format: int32
                  minimum: 0
                selector:
                  type: object
                  additionalProperties:
                    type: string
                items:
                  type: array
                  items:
                    type: object
                    properties:
                      key: {{type: string}}
                      value: {{type: string}}
"""
        out.append(block)
        size += len(block)
        n += 1
    return "".join(out)

def configmap(i):
    if i % 5 == 0:
        body = f"""  settings.json: |
    {{
      "name": "service-{i}",
      "replicas": {i % 7},
      "endpoints": ["http://a-{i}.svc:8080", "http://b-{i}.svc:8080"],
      "limits": {{"cpu": "500m", "memory": "512Mi"}}
    }}
  run.sh: |
    #!/bin/sh
    set -eu
    echo "starting service-{i}"
    exec /app/server --port 8080 --name "service-{i}"
"""
    else:
        body = "".join(f'  KEY_{k}: "value-{i}-{k}-abcdefghijklmnopqrstuvwxyz"\n' for k in range(12))
    return f"""---
# Source: big/templates/configmap.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: config-{i}
  namespace: prefect
  labels:
    app.kubernetes.io/name: big
    app.kubernetes.io/instance: prefect-server
    app.kubernetes.io/part-of: bench
    helm.sh/chart: big-1.0.0
  annotations:
    checksum/config: "{i:064x}"
data:
{body}"""

def secret(i):
    return f"""---
# Source: big/templates/secret.yaml
apiVersion: v1
kind: Secret
metadata:
  name: secret-{i}
  namespace: prefect
  labels:
    app.kubernetes.io/name: big
type: Opaque
data:
  password: "{('c2VjcmV0LXBhc3N3b3Jk' * 4)}"
  username: "dXNlcm5hbWU="
"""

def service(i):
    return f"""---
# Source: big/templates/service.yaml
apiVersion: v1
kind: Service
metadata:
  name: service-{i}
  namespace: prefect
  labels:
    app.kubernetes.io/name: big
spec:
  type: ClusterIP
  selector:
    app.kubernetes.io/name: service-{i}
  ports:
    - name: http
      port: 8080
      targetPort: http
"""

API = """---
# Source: prefect-server/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: prefect-server
  namespace: prefect
  labels:
    app.kubernetes.io/name: prefect-server
    app.kubernetes.io/instance: prefect-server
    app.kubernetes.io/component: server
    helm.sh/chart: prefect-server-2026.8.18172642
spec:
  replicas: 1
  selector:
    matchLabels:
      app.kubernetes.io/component: server
  template:
    metadata:
      labels:
        app.kubernetes.io/component: server
    spec:
      containers:
        - name: prefect-server
          image: "prefecthq/prefect:3.8.3-python3.11"
          args: [prefect, server, start, --port, "4200"]
          env:
            - name: PREFECT_SERVER_DATABASE_CONNECTION_URL
              valueFrom:
                secretKeyRef:
                  name: prefect-db
                  key: url
            - name: PREFECT_SERVER_DATABASE_MIGRATE_ON_START
              value: "false"
"""

def main():
    size_mb, out = float(sys.argv[1]), sys.argv[2]
    total = int(size_mb * 1_000_000)
    crd_size = max(20_000, total // 50)
    n_crds = 4
    parts, size, i, api_done = [], 0, 0, False
    for c in range(n_crds):
        t = crd(c, crd_size)
        parts.append(t)
        size += len(t)
    while size < total:
        if not api_done and size >= total // 2:
            parts.append(API)
            size += len(API)
            api_done = True
        kind = i % 4
        t = configmap(i) if kind < 2 else secret(i) if kind == 2 else service(i)
        parts.append(t)
        size += len(t)
        i += 1
    if not api_done:
        parts.append(API)
    with open(out, "w", newline="") as f:
        f.write("".join(parts))

main()
