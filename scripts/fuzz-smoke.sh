#!/usr/bin/env bash
# Runs each cargo-fuzz target for SECONDS (default 60) on a corpus seeded from fuzz/seeds.
# Needs a nightly toolchain and cargo-fuzz (installed here when missing). A crash leaves its input
# in fuzz/artifacts/<target>/; copy it to fuzz/regressions/<target>/ once fixed, so
# `cargo test --test fuzz_replay` keeps it fixed. The corpora in fuzz/corpus/ are committed
# (minimised with `-merge=1`) and replayed by that test too.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${1:-60}"

if ! command -v cargo-fuzz >/dev/null; then
  cargo install cargo-fuzz --locked
fi
for target in json_redact config_load request_target; do
  corpus="fuzz/corpus/$target"
  mkdir -p "$corpus"
  cp -n fuzz/seeds/"$target"/* "$corpus"/ 2>/dev/null || true
  echo "== $target: ${SECONDS_PER_TARGET}s"
  cargo +nightly fuzz run "$target" "$corpus" -- \
    -max_total_time="$SECONDS_PER_TARGET" -max_len=65536 -print_final_stats=1 2>&1 \
    | grep -E '^(stat::number_of_executed_units|stat::new_units_added|#[0-9]+ +DONE)|ERROR|panicked' || true
  if ls fuzz/artifacts/"$target"/crash-* >/dev/null 2>&1; then
    echo "$target: crashes found in fuzz/artifacts/$target" >&2
    exit 1
  fi
done
echo "fuzz smoke: no crash"
