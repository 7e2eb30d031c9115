#!/usr/bin/env bash
# Runs airlock's fuzz targets one after another (docs/fuzzing.md).
#
#   fuzz/run.sh [SECONDS] [TARGET...]   # default: 900 s (15 min) each, every target
#   fuzz/run.sh merge [TARGET...]       # minimise corpus + what the runs found into fuzz/corpus
#   fuzz/run.sh list
#
# Each run starts from fuzz/corpus/TARGET (committed) and writes what it finds to fuzz/work/TARGET
# (not committed); `merge` keeps the smallest set of inputs with the same coverage. A crash, a hang
# (one input over 10 s), a leak or more than 2 GiB of memory stops the target; libFuzzer writes
# the input to fuzz/artifacts/TARGET/. Logs and a summary line per target go to fuzz/logs/.
#
# cargo-fuzz needs nightly features: the nightly toolchain when rustup has one, otherwise the
# stable one with RUSTC_BOOTSTRAP=1. Install cargo-fuzz once: cargo install cargo-fuzz --locked.
# Everything runs under `nice -n 19`: fuzzing takes whatever CPU it is given.
set -euo pipefail
cd "$(dirname "$0")"

targets() { sed -n 's/^name = "\([a-z_]*\)"$/\1/p' Cargo.toml | grep -v '^airlock-fuzz$'; }

if cargo +nightly --version >/dev/null 2>&1; then
  toolchain=(+nightly)
else
  toolchain=()
  export RUSTC_BOOTSTRAP=1
fi
fuzz() { nice -n 19 cargo "${toolchain[@]}" fuzz "$@"; }

case "${1:-}" in
list)
  targets
  exit 0
  ;;
merge)
  shift
  for t in "${@:-$(targets)}"; do
    mkdir -p "work/$t" "corpus.new/$t"
    fuzz run "$t" "corpus.new/$t" "corpus/$t" "work/$t" -- -merge=1 2>&1 | tail -n 2
    rm -rf "corpus/$t" && mv "corpus.new/$t" "corpus/$t"
  done
  rmdir corpus.new 2>/dev/null || true
  du -sh corpus
  exit 0
  ;;
esac

secs=${1:-900}
shift || true
mkdir -p logs
for t in "${@:-$(targets)}"; do
  mkdir -p "work/$t" "artifacts/$t"
  log="logs/$t.log"
  status=ok
  fuzz run "$t" "work/$t" "corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || status=FAILED
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log")
  line="$t: $status, ${secs}s, ${execs:-?} execs (${rate:-?}/s), peak RSS ${rss:-?} MB, last: ${last:-none}"
  echo "$line" | tee -a logs/summary.txt
done
