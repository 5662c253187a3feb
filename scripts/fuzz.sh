#!/usr/bin/env bash
# Runs the broker's cargo-fuzz targets (broker/fuzz) on the nightly toolchain.
#
#   scripts/fuzz.sh smoke            each target for 10 s from its kept corpus (the test
#                                    suite runs this); new inputs go to a temporary directory
#   scripts/fuzz.sh SECONDS [T...]   each target (or the named ones) for SECONDS, adding what
#                                    it finds to broker/fuzz/corpus/<target>; then minimize
#                                    the corpus with `cargo fuzz cmin` before committing it
#
# A crash stops the run and leaves the input in broker/fuzz/artifacts/<target>/. Copy it to
# broker/fuzz/regressions/<target>/ once fixed: `cargo test` replays that directory.
#
# Targets are built without a sanitizer: the broker has no unsafe code of its own, and
# its allocator is jemalloc, which AddressSanitizer does not watch; the checks that matter
# here are the targets' assertions, Rust's overflow checks and debug assertions (cargo-fuzz
# turns both on), libFuzzer's timeout and its RSS limit.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

TARGETS=(request record_batch sasl config znode)
mode=${1:-smoke}
shift || true
if [ $# -gt 0 ]; then TARGETS=("$@"); fi

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "installing the nightly Rust toolchain, which cargo-fuzz needs"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi

cd broker
if [ "$mode" = smoke ]; then
  seconds=10
  # Unoptimized: builds in about two thirds of the time, and ten seconds need no speed.
  build=(--dev)
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
else
  seconds=$mode
  build=()
  scratch=""
fi
buildlog=$(mktemp)
if ! cargo +nightly fuzz build --sanitizer none "${build[@]}" >"$buildlog" 2>&1; then
  tail -n 40 "$buildlog"
  echo "building the fuzz targets failed (cd broker && cargo +nightly fuzz build)"
  exit 1
fi
rm -f "$buildlog"

failed=()
for t in "${TARGETS[@]}"; do
  corpus=(fuzz/corpus/"$t")
  if [ -n "$scratch" ]; then
    mkdir -p "$scratch/$t"
    corpus=("$scratch/$t" fuzz/corpus/"$t")
  fi
  log=$(mktemp)
  echo "== fuzz $t: ${seconds}s"
  if cargo +nightly fuzz run --sanitizer none "${build[@]}" "$t" "${corpus[@]}" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    grep -E '^(stat::number_of_executed_units|stat::new_units_added)|Done [0-9]+ runs' "$log" | sed 's/^/   /'
  else
    failed+=("$t")
    tail -n 60 "$log"
    echo "fuzz target $t failed: the input is in broker/fuzz/artifacts/$t/;" \
      "reproduce with: cd broker && cargo +nightly fuzz run --sanitizer none $t <that file>"
  fi
  rm -f "$log"
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found crashes in: ${failed[*]}"
  exit 1
fi
echo "fuzzing: ${#TARGETS[@]} targets, ${seconds}s each, no crash"
