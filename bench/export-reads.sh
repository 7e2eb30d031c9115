#!/usr/bin/env bash
# bench/export-reads.sh - how many bytes `airlock export` of a bundle file reads, and what that
# costs: one image of one random (incompressible) layer, exported to a docker-archive on the same
# disk. Each row is the fastest of BENCH_RUNS rounds (binaries alternating) of wall time, CPU
# (user + sys), bytes read through read(2)/pread(2) (`rchar` of /proc/PID/io: page cache or
# disk) and bytes the block layer fetched for it (`read_bytes`). With BENCH_COLD=1 (root only)
# the page cache is dropped before each run as well: a bundle on a slow stick, read from the
# device. A bundle smaller than the page cache is fetched from the device once whatever the
# number of passes (the second pass hits the cache); `rchar` counts every pass.
#
#   BENCH_AIRLOCK=target/release/airlock BENCH_BEFORE=/tmp/old-airlock bench/export-reads.sh
#
# Settings (environment):
#   BENCH_AIRLOCK=    the airlock to measure (default: cargo build --release of the work tree)
#   BENCH_BEFORE=     another airlock to measure beside it (e.g. an older commit's build)
#   BENCH_MB=1024     layer size, MiB
#   BENCH_RUNS=3      rounds
#   BENCH_COLD=0      1: also cold-cache rows (drops the whole machine's page cache: root only)
#   BENCH_QUIET_WAIT=180  seconds, in all, to wait for a quiet machine before runs (bench/lib.sh)
#   BENCH_KEEP=0      1 keeps the work dir (/tmp/aexport.XXXXXX)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
NAME=export-reads
. "$ROOT/bench/lib.sh"
setting MB BENCH_MB 1024 1+
setting COLD BENCH_COLD 0 flag
common_settings
[ "$COLD" = 0 ] || [ "$(id -u)" = 0 ] || die "BENCH_COLD=1 needs root (it writes /proc/sys/vm/drop_caches)"
work_dir aexport
cd "$WORK"
pick_airlock
declare -A BIN=([now]=$AIRLOCK)
[ -z "${BENCH_BEFORE:-}" ] || BIN[before]=$(realpath "$BENCH_BEFORE")

random_layout l 1 "$MB"
"$AIRLOCK" keygen --no-password -o k >/dev/null 2>&1
"$AIRLOCK" create -k k.key -o b.tar oci:l:bench=bench.example/one:1 >/dev/null 2>&1
rm -rf l

# run NAME COLD: one export; prints "wall cpu rchar read_bytes rss" (seconds, seconds, bytes,
# bytes, KiB of peak RSS).
# The bash in between reaps airlock, so its /proc/PID/io then holds airlock's counts too.
run() {
  local bin=${BIN[$1]} t io
  rm -f out.tar st.json
  if [ "$2" = 1 ]; then sync; echo 3 >/proc/sys/vm/drop_caches; else warm b.tar; fi
  quiet
  io=$(/usr/bin/time -f '%e %U %S %M' -o t bash -c \
    '"$1" export -p k.pub --state st.json --format docker-archive -o out.tar b.tar >/dev/null 2>&1 || exit 1
     cat /proc/$$/io' _ "$bin") || die "$1: export failed"
  read -r w u s m <t
  awk -v w="$w" -v u="$u" -v s="$s" -v m="$m" '
    /^rchar:/ { r = $2 } /^read_bytes:/ { b = $2 }
    END { printf "%s %.2f %.0f %.0f %d\n", w, u + s, r, b, m }' <<<"$io"
}

declare -A BEST
for cold in 0 $([ "$COLD" = 0 ] || echo 1); do
  for ((i = 1; i <= RUNS; i++)); do
    for name in "${!BIN[@]}"; do
      line=$(run "$name" "$cold")
      echo "export-reads: $name cold=$cold round $i: $line" >&2
      key=$name.$cold
      if [ -z "${BEST[$key]:-}" ] || awk -v a="${line%% *}" -v b="${BEST[$key]%% *}" 'BEGIN { exit !(a < b) }'; then
        BEST[$key]=$line
      fi
    done
  done
done

echo
echo "export --format docker-archive of one ${MB} MiB layer bundle ($(stat -c %s b.tar) bytes), fastest of $RUNS rounds"
echo "machine: nproc=$(nproc); load average now: $(cut -d' ' -f1-3 /proc/loadavg); now: $REV"
printf '%-8s %-5s %8s %8s %12s %12s %9s\n' airlock cache "wall s" "cpu s" "read MiB" "device MiB" "RSS MiB"
for key in $(printf '%s\n' "${!BEST[@]}" | sort); do
  read -r w c r b m <<<"${BEST[$key]}"
  cache=warm
  [ "${key##*.}" = 0 ] || cache=cold
  printf '%-8s %-5s %8s %8s %12s %12s %9s\n' "${key%.*}" "$cache" "$w" "$c" "$((r >> 20))" "$((b >> 20))" \
    "$(awk -v k="$m" 'BEGIN { printf "%.1f", k / 1024 }')"
done
