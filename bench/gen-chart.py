#!/usr/bin/env python3
"""Writes a large, deterministic Helm chart to OUT_DIR for `lockstep render` vs `helm template`:
500 ConfigMaps (one template with a range), 4 big CustomResourceDefinitions under crds/
(rendered by --include-crds), and the prefect-server API Deployment.

    python3 bench/gen-chart.py OUT_DIR
"""
import os, sys

out = sys.argv[1]
os.makedirs(os.path.join(out, "templates"), exist_ok=True)
os.makedirs(os.path.join(out, "crds"), exist_ok=True)

def write(rel, text):
    with open(os.path.join(out, rel), "w", newline="") as f:
        f.write(text)

write("Chart.yaml", """apiVersion: v2
name: big
description: A large generated chart for lockstep's benchmarks (bench/gen-chart.py).
version: 1.0.0
appVersion: "3.8.3"
annotations:
  lockstep.dev/profile: prefect-server
""")
write("values.yaml", """configMaps: 500
image: prefecthq/prefect:3.8.3-python3.11
""")
write("templates/configmaps.yaml", """{{- range $i := until (int .Values.configMaps) }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ $.Release.Name }}-config-{{ $i }}
  labels:
    app.kubernetes.io/name: big
    app.kubernetes.io/instance: {{ $.Release.Name }}
    helm.sh/chart: big-1.0.0
data:
  index: {{ $i | quote }}
  settings.json: |
    {"name": "service-{{ $i }}", "replicas": 2, "endpoints": ["http://a-{{ $i }}:8080", "http://b-{{ $i }}:8080"]}
{{- range $k := until 10 }}
  KEY_{{ $k }}: "value-{{ $i }}-{{ $k }}-abcdefghijklmnopqrstuvwxyz"
{{- end }}
{{- end }}
""")
write("templates/deployment.yaml", """apiVersion: apps/v1
kind: Deployment
metadata:
  name: prefect-server
  labels:
    app.kubernetes.io/name: prefect-server
    app.kubernetes.io/instance: {{ .Release.Name }}
    app.kubernetes.io/component: server
    helm.sh/chart: big-1.0.0
spec:
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
          image: {{ .Values.image | quote }}
          env:
            - name: PREFECT_SERVER_DATABASE_CONNECTION_URL
              valueFrom:
                secretKeyRef: {name: prefect-db, key: url}
            - name: PREFECT_SERVER_DATABASE_MIGRATE_ON_START
              value: "false"
""")
for c in range(4):
    parts = [f"""apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets{c}.bench.lockstep.dev
spec:
  group: bench.lockstep.dev
  names: {{kind: Widget{c}, plural: widgets{c}}}
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
    for n in range(400):
        parts.append(f"""            field{n}:
              description: "Field {n} of widget {c}: what it configures, its default, and its rules."
              type: object
              properties:
                name: {{type: string, maxLength: 63}}
                replicas: {{type: integer, format: int32, minimum: 0}}
                selector:
                  type: object
                  additionalProperties: {{type: string}}
""")
    write(f"crds/widgets{c}.yaml", "".join(parts))
