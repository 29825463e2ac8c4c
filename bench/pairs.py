#!/usr/bin/env python3
"""Times commands interleaved (A B C, C B A, ...), so that a shared machine's drift hits
all alike, and writes hyperfine-shaped JSON plus, for each pair of commands, the median
of the per-round ratios.

    pairs.py OUT.json RUNS WARMUP NAME_A CMD_A NAME_B CMD_B [NAME_C CMD_C ...]

Commands are argument vectors written as one shell-quoted string (split with shlex; no
shell runs them); leading NAME=VALUE words are set in the command's environment, as a
shell would. stdout goes to /dev/null, stderr too, and each must exit 0.
`ratios["X/Y"]` is X against Y (the median of the per-round ratios) for every pair.
"""
import json, os, re, shlex, statistics, subprocess, sys, time

out, runs, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rest = sys.argv[4:]


def command(text):
    words = shlex.split(text)
    env = dict(os.environ)
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    return words, env


cmds = [(rest[i], command(rest[i + 1])) for i in range(0, len(rest), 2)]


def once(cmd):
    argv, env = cmd
    t = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


for _ in range(warmup):
    for _, argv in cmds:
        once(argv)
times = {name: [] for name, _ in cmds}
for i in range(runs):
    # Alternate the order, so none always runs on a warmer cache.
    for name, argv in cmds if i % 2 == 0 else cmds[::-1]:
        times[name].append(once(argv))
names = [name for name, _ in cmds]
ratios = {
    f"{b}/{a}": statistics.median(y / x for x, y in zip(times[a], times[b]))
    for i, a in enumerate(names)
    for b in names[i + 1:]
}
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
json.dump({"results": results, "ratios": ratios},
          open(out, "w"), indent=1)
print("; ".join(f"{n}: median {statistics.median(times[n])*1e3:.1f} ms" for n in names) + "; "
      + "; ".join(f"{k} {v:.3f}" for k, v in ratios.items()), file=sys.stderr)
