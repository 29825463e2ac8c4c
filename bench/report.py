#!/usr/bin/env python3
"""Turns bench/out (hyperfine JSON exports, memory.tsv, env.tsv) into bench/RESULTS.md."""
import json, os, sys, statistics

out = sys.argv[1]

def load(name):
    p = os.path.join(out, name)
    return json.load(open(p))["results"] if os.path.exists(p) else []

def by_name(results):
    return {r["command"]: r for r in results}

env = [l.rstrip("\n").split("\t", 1) for l in open(os.path.join(out, "env.tsv"))]
mem = {}
for l in open(os.path.join(out, "memory.tsv")):
    size, tool, kb = l.rstrip("\n").split("\t")
    mem[(int(size), tool)] = int(kb) if kb.isdigit() else None

p = print
p("# lockstep benchmark results")
p()
p("Written by `bash bench/run.sh` (bench/report.py); every number below comes from one run of it,")
p("on this machine, release build. The machine is shared (2 cores; other work may run beside it),")
p("so wall times carry noise: hyperfine's mean ± σ over the runs and the median are given.")
p()
p("| | |")
p("|---|---|")
for k, v in env:
    p(f"| {k} | {v} |")
p()
p("## (a) `lockstep render` vs `helm template` alone")
p()
p("Same chart, values and namespace; `lockstep render` runs that same `helm template` and then")
p("splits, locates, gates and injects. It runs helm with Go's garbage collector held back until")
p("helm's heap reaches 128 MiB (`GOGC=off GOMEMLIMIT=128MiB`, unless either is set already;")
p("src/helm.rs), so helm is timed twice: as a user runs it, and with those settings. The floor")
p("is bench/floor.rs, a wrapper that only runs helm (with the same settings) and copies its")
p("output: what any program that wraps helm pays, so lockstep / floor is lockstep's own cost.")
p("All four run interleaved (bench/pairs.py), and a ratio is the median of the per-round")
p("ratios, which the machine's drift affects least. Target: lockstep over helm ≤ 1.0 on a chart directory, ≤ 1.05 on a packaged .tgz.")
p()
p("| chart | helm template (ms) | helm, GC held back (ms) | floor wrapper (ms) | lockstep render (ms) | held back / helm | floor / held back | lockstep / floor | lockstep / helm | target |")
p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
# The targets: a chart directory at most helm's own time, a packaged chart 1.05.
TARGET = {"prefect-server-tgz": 1.05}
for name in ["prefect-server", "prefect-server-tgz", "prefect-cloud-1.2.0", "big-chart"]:
    path = os.path.join(out, f"render-{name}.json")
    if not os.path.exists(path):
        continue
    doc = json.load(open(path))
    r = by_name(doc["results"])
    h, g = r["helm template"], r["helm template, GC held back"]
    l, f = r["lockstep render"], r["floor wrapper"]
    q = doc["ratios"]
    ok = "met" if q["lockstep render/helm template"] <= TARGET.get(name, 1.0) else "MISSED"
    p(f"| {name} | {h['median']*1e3:.1f} | {g['median']*1e3:.1f} | {f['median']*1e3:.1f} | "
      f"{l['median']*1e3:.1f} | {q['helm template, GC held back/helm template']:.3f} | "
      f"{q['floor wrapper/helm template, GC held back']:.3f} | "
      f"{1 / q['floor wrapper/lockstep render']:.3f} | {q['lockstep render/helm template']:.3f} | {ok} |")
p()
p("Times are medians over the rounds.")
p()
p("`big-chart` is bench/gen-chart.py: 500 ConfigMaps, 4 CustomResourceDefinitions of ~100 KB")
p("(`--include-crds`) and the API Deployment, about 1 MB rendered.")
p()
p("## (b) `lockstep inject` on large streams")
p()
p("Streams from bench/gen-stream.py (deterministic): ConfigMaps (some with JSON and scripts as")
p("block scalars), Secrets, Services, 4 big CRDs (2% of the bytes each) and one API Deployment")
p("in the middle. `cat FILE > /dev/null` is the I/O floor. yq and kustomize do the same edit")
p("(add a Job running the API Deployment's image) and run only on the smaller streams.")
p("Targets: ≥ 500 MB/s at 50 MB; peak memory ≤ 1.5 × input + 32 MB.")
p()
p("| size | tool | mean (ms) | median (ms) | MB/s (median) | ms per MB | max RSS (MB) | memory target (MB) |")
p("|---:|---|---:|---:|---:|---:|---:|---:|")
sizes = sorted({int(f.split("-")[1].split(".")[0]) for f in os.listdir(out) if f.startswith("inject-") and f.endswith(".json")})
per_mb = {}
for size in sizes:
    mb = os.path.getsize(os.path.join(out, f"stream-{size}.yaml")) / 1e6
    rows = load(f"inject-{size}.json") + load(f"others-{size}.json")
    for r in rows:
        tool = r["command"]
        rss = mem.get((size, tool))
        rss_mb = f"{rss/1024:.1f}" if rss else "-"
        target = f"{1.5*mb+32:.0f}" if tool == "lockstep inject" else ""
        if tool == "lockstep inject":
            per_mb[size] = r["median"] * 1e3 / mb
        p(f"| {mb:.0f} MB | {tool} | {r['mean']*1e3:.1f} ± {r['stddev']*1e3:.1f} | {r['median']*1e3:.1f} | {mb/r['median']:.0f} | {r['median']*1e3/mb:.2f} | {rss_mb} | {target} |")
p()
if per_mb:
    p("Linearity (lockstep inject, ms per MB by size): " + ", ".join(f"{s} MB: {v:.2f}" for s, v in sorted(per_mb.items())) + ".")
    p()
lines = []
for size in sizes:
    mb = os.path.getsize(os.path.join(out, f"stream-{size}.yaml")) / 1e6
    r = by_name(load(f"inject-{size}.json")).get("lockstep inject")
    rss = mem.get((size, "lockstep inject"))
    if r and rss:
        lines.append(f"- {size} MB: {mb/r['median']:.0f} MB/s{' (target ≥ 500: ' + ('met' if mb/r['median'] >= 500 else 'MISSED') + ')' if size == 50 else ''}; "
                     f"max RSS {rss/1024:.0f} MB vs {1.5*mb+32:.0f} MB allowed: {'met' if rss/1024 <= 1.5*mb+32 else 'MISSED'}")
p("Targets:")
p()
for l in lines:
    p(l)
