#!/usr/bin/env bash
# bench/verify-speed.sh - airlock verify against the machine's own sha256 speed, in one run.
#
# Builds two OCI layouts of random (incompressible) layers, packs each into a bundle, and times
# `airlock verify` of each, from the file (blobs hashed in parallel by offset) and from a pipe
# (`cat bundle | airlock verify -`, one stream), with the page cache warm. `openssl speed -evp
# sha256` (16 KiB blocks, one core) runs before and after the verify runs; their mean is the
# yardstick, and every row prints its speed as a ratio to it. Goals (issue 8): one big layer at
# >= 0.88 x sha256; equal-size blobs from a file at >= 1.6 x on two cores.
#
# Runs alone (no root, no docker):   bench/verify-speed.sh
# bench/run.sh runs it after its table, with the airlock it built.
#
# Settings (environment):
#   BENCH_VERIFY_MB=1024   bundle size, MiB: one layer of that size; and 8 layers of 1/8 each
#   BENCH_RUNS=3           timed runs per row; the median is reported
#   BENCH_AIRLOCK=         airlock binary to use (default: cargo build --release of the work tree)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
MB=${BENCH_VERIFY_MB:-1024}
RUNS=${BENCH_RUNS:-3}
[[ $MB =~ ^[0-9]+$ && $MB -ge 8 ]] || { echo "verify-speed: BENCH_VERIFY_MB must be a number >= 8" >&2; exit 1; }
[[ $RUNS =~ ^[0-9]+$ && $RUNS -ge 1 ]] || { echo "verify-speed: BENCH_RUNS must be >= 1" >&2; exit 1; }

if [ -n "${BENCH_AIRLOCK:-}" ]; then
  # Absolute: the runs below cd into a work directory.
  AIRLOCK=$(cd "$(dirname "$BENCH_AIRLOCK")" && pwd -P)/$(basename "$BENCH_AIRLOCK")
else
  (cd "$ROOT" && cargo build --release >&2)
  AIRLOCK=$ROOT/target/release/airlock
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/averify.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

# layout DIR LAYERS MIB: one image of LAYERS random layers of MIB MiB each.
layout() {
  local dir=$1 layers=$2 mib=$3 i h s descs="" diffs=""
  mkdir -p "$dir/blobs/sha256"
  put() { # FILE -> "sha256:<hex> <size>", the file moved into the layout
    h=$(sha256sum "$1" | cut -d' ' -f1) s=$(stat -c %s "$1")
    mv "$1" "$dir/blobs/sha256/$h"
    echo "sha256:$h $s"
  }
  for ((i = 1; i <= layers; i++)); do
    openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass "pass:layer$i" </dev/zero 2>/dev/null |
      head -c $((mib << 20)) >"$dir/l" || true
    read -r h s < <(put "$dir/l")
    descs+="${descs:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"$h\",\"size\":$s}"
    diffs+="${diffs:+,}\"$h\""
  done
  printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[%s]},"config":{}}' \
    "$diffs" >"$dir/c"
  read -r h s < <(put "$dir/c")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[%s]}' \
    "$h" "$s" "$descs" >"$dir/m"
  read -r h s < <(put "$dir/m")
  printf '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci-layout"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"bench"}}]}' \
    "$h" "$s" >"$dir/index.json"
}

echo "verify-speed: bundles of ${MB} MiB (1 layer; 8 layers)" >&2
"$AIRLOCK" keygen --no-password -o k >/dev/null 2>&1
layout one 1 "$MB"
layout eight 8 $((MB / 8))
"$AIRLOCK" create -k k.key -o one.tar oci:one:bench=bench.example/one:1 >/dev/null 2>&1
"$AIRLOCK" create -k k.key -o eight.tar oci:eight:bench=bench.example/eight:1 >/dev/null 2>&1
rm -rf one eight

sha256_gbps() {
  openssl speed -evp sha256 -bytes 16384 -seconds 3 2>/dev/null |
    awk '/^sha256/ { sub(/k$/, "", $2); printf "%.3f", $2 * 1000 / 1e9 }'
}
# median_secs CMD...: median wall time of RUNS runs (after one untimed run that warms the cache).
median_secs() {
  local i s e
  "$@" >/dev/null 2>&1 || { echo "verify-speed: failed: $*" >&2; exit 1; }
  for ((i = 0; i < RUNS; i++)); do
    s=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    e=$(date +%s.%N)
    awk -v s="$s" -v e="$e" 'BEGIN { printf "%.3f\n", e - s }'
  done | sort -n | awk '{ t[NR] = $1 } END { print t[int((NR + 1) / 2)] }'
}
pipe_verify() { cat "$1" | "$AIRLOCK" verify -p k.pub -; }

LOAD0=$(cut -d' ' -f1 /proc/loadavg)
SHA0=$(sha256_gbps)
declare -A T
for b in one eight; do
  T[$b.file]=$(median_secs "$AIRLOCK" verify -p k.pub "$b.tar")
  T[$b.pipe]=$(median_secs pipe_verify "$b.tar")
done
SHA1=$(sha256_gbps)
LOAD1=$(cut -d' ' -f1 /proc/loadavg)
SHA=$(awk -v a="$SHA0" -v b="$SHA1" 'BEGIN { printf "%.3f", (a + b) / 2 }')

row() { printf '%-44s %8s %9s %9s  %s\n' "$@"; }
# speed BUNDLE INPUT GOAL: one row; GOAL is the least ratio to sha256 wanted ("" for none).
speed() {
  local bytes secs gbps ratio verdict=""
  bytes=$(stat -c %s "$1.tar") secs=${T[$1.$2]}
  gbps=$(awk -v b="$bytes" -v s="$secs" 'BEGIN { printf "%.2f", b / s / 1e9 }')
  ratio=$(awk -v g="$gbps" -v h="$SHA" 'BEGIN { printf "%.2f", g / h }')
  if [ -n "$3" ]; then
    verdict="goal >= $3 x: $(awk -v r="$ratio" -v g="$3" 'BEGIN { print (r >= g ? "met" : "NOT met") }')"
  fi
  row "$4" "$secs" "$gbps" "${ratio} x" "$verdict"
}
echo
echo "verify against sha256 (openssl speed -evp sha256, 16 KiB blocks, one core: $SHA0 / $SHA1 GB/s before / after)"
echo "machine: nproc=$(nproc); load average before / after: $LOAD0 / $LOAD1; median of $RUNS runs, page cache warm"
row "verify" "wall s" "GB/s" "sha256" ""
speed one file 0.88 "one ${MB} MiB layer, from the file"
speed one pipe 0.88 "one ${MB} MiB layer, from a pipe"
goal8=""
[ "$(nproc)" -lt 2 ] || goal8=1.6
speed eight file "$goal8" "8 layers of $((MB / 8)) MiB, from the file"
speed eight pipe "" "8 layers of $((MB / 8)) MiB, from a pipe"
