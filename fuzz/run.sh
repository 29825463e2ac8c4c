#!/usr/bin/env bash
# Runs one fuzz target for a while, seeded from the test fixtures and corpus.
#   bash fuzz/run.sh TARGET [SECONDS] [extra libFuzzer flags...]
# TARGET: split | inject | values. Needs `bash scripts/install-fuzz.sh` once.
# The machine's only toolchain is stable: RUSTC_BOOTSTRAP=1 lets it take cargo-fuzz's -Z flags.
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: fuzz/run.sh split|inject|values [SECONDS]}
secs=${2:-600}
shift $(( $# >= 2 ? 2 : 1 ))
seeds=target/seeds/$target # generated, git-ignored with target/
rm -rf "$seeds" && mkdir -p "$seeds" "corpus/$target" "artifacts/$target"
fixtures=../tests/fixtures/prefect-server
case $target in
split)
  cp "$fixtures"/*.yaml "$seeds"/
  cp ../tests/odd/* "$seeds"/ 2>/dev/null || true
  cp ../tests/bad/*.yaml "$seeds"/ 2>/dev/null || true
  # Nesting behind block context (guard::check_depth against the parser's events).
  printf 'd:\n  a: x\n    [ "\n  b: [[[{x: [[1]]}]]]\n' > "$seeds/depth-plain.yaml"
  printf 'd:\n  a: |\n    [ "\n  b: [[[[[1]]]]]\n' > "$seeds/depth-block.yaml"
  printf 'd: "x\n  [" # [[\nb: [a: [b: {c: [[]]}]]\n' > "$seeds/depth-quoted.yaml"
  ;;
inject)
  # First byte: option flags (see fuzz_targets/inject.rs).
  for f in "$fixtures"/*2026.8*.yaml ../tests/odd/*; do
    [ -f "$f" ] || continue
    for flag in 0 3; do
      { printf "\\x0$flag"; cat "$f"; } > "$seeds/$flag-$(basename "$f")"
    done
  done
  ;;
values)
  cp ../examples/values/prefect-cloud/*.yaml "$seeds"/
  ;;
esac
# inject: the pipeline compiles its templates on a scoped thread; glibc's registration of
# that thread's thread-local destructors (__cxa_thread_atexit_impl) is now and then reported
# by LeakSanitizer as a 32-byte leak that does not reproduce on the same input: leak
# detection is off for it (-rss_limit_mb still catches growth).
[ "$target" = inject ] && set -- -detect_leaks=0 "$@"
# Build, then run the binary itself: `cargo fuzz run` would rebuild on every source change.
[ -n "${NO_BUILD:-}" ] || RUSTC_BOOTSTRAP=1 cargo fuzz build --release "$target"
exec target/x86_64-unknown-linux-gnu/release/"$target" -artifact_prefix="artifacts/$target/" \
  -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -max_len=65536 "$@" "corpus/$target" "$seeds"
