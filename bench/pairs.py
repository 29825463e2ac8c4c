#!/usr/bin/env python3
"""Times two commands interleaved (A B A B ...), so that a shared machine's drift hits both
alike, and writes hyperfine-shaped JSON plus the median of the per-pair ratios B/A.

    pairs.py OUT.json RUNS WARMUP NAME_A CMD_A NAME_B CMD_B

Commands are argument vectors written as one shell-quoted string (split with shlex; no
shell runs them); stdout goes to /dev/null, stderr too, and each must exit 0.
"""
import json, shlex, statistics, subprocess, sys, time

out, runs, warmup, name_a, cmd_a, name_b, cmd_b = sys.argv[1:8]
runs, warmup = int(runs), int(warmup)
cmds = [(name_a, shlex.split(cmd_a)), (name_b, shlex.split(cmd_b))]


def once(argv):
    t = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


for _ in range(warmup):
    for _, argv in cmds:
        once(argv)
times = {name: [] for name, _ in cmds}
for i in range(runs):
    # Alternate which goes first, so neither always runs on a warmer cache.
    for name, argv in cmds if i % 2 == 0 else cmds[::-1]:
        times[name].append(once(argv))
ratios = [b / a for a, b in zip(times[name_a], times[name_b])]
results = [
    {
        "command": name,
        "mean": statistics.mean(t),
        "stddev": statistics.stdev(t),
        "median": statistics.median(t),
        "min": min(t),
        "max": max(t),
        "times": t,
    }
    for name, t in times.items()
]
json.dump({"results": results, "pair_ratio_median": statistics.median(ratios)}, open(out, "w"), indent=1)
a, b = results
print(f"{name_a}: median {a['median']*1e3:.1f} ms; {name_b}: median {b['median']*1e3:.1f} ms; "
      f"median of pair ratios {statistics.median(ratios):.3f}", file=sys.stderr)
