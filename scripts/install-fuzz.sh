#!/usr/bin/env bash
# Installs what `cargo fuzz` needs for lockstep's fuzz targets (fuzz/).
#
# * cargo-fuzz, from crates.io (`cargo install --locked cargo-fuzz`), once.
# * "nightly": cargo-fuzz passes nightly-only flags (-Zsanitizer=address, -Zbuild-std
#   is not used). This machine has exactly one Rust toolchain, a stable one, and no
#   other can be fetched. RUSTC_BOOTSTRAP=1 lets a stable rustc accept -Z flags; the
#   fuzz commands below set it. A C++ compiler (g++) builds libFuzzer (libfuzzer-sys).
#
# Use:
#   bash scripts/install-fuzz.sh
#   cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run split -- -max_total_time=600
#   (targets: split, inject, values; `cargo fuzz list`)
set -euo pipefail
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi
if ! command -v c++ >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq g++
fi
cargo fuzz --version
echo "install-fuzz: run targets with RUSTC_BOOTSTRAP=1 (stable toolchain, nightly -Z flags)" >&2
