#!/usr/bin/env bash
# bench/serve.sh - `airlock serve` (issue 12): `bench/run.sh serve` runs it alone; a full
# bench/run.sh runs it after its own rows unless BENCH_SERVE=0.
#
# A bundle of two images (uncompressed, incompressible layers) is served on loopback; measured:
#   - start: the first start (every blob verified) and a second start on the unchanged file
#     (signature, headers and manifests checked; the record of the first verification used),
#   - full-blob GET of one BENCH_SERVE_MB layer with curl, the fastest of BENCH_RUNS, against
#     `openssl speed -evp sha256` (16 KiB blocks, one core) in the same run: every byte of a
#     whole blob is hashed on the way, so sha256 on one core is the ceiling of one stream; with
#     the server's and curl's CPU seconds per GiB (curl runs on the same cores), the same GET of
#     all but the last byte (a range, not hashed: what reading and sending cost), and nproc
#     full-blob GETs at once (the aggregate),
#   - BENCH_SERVE_CLIENTS clients pulling the same image (manifest, config, a
#     BENCH_SERVE_FLEET_MB layer) at once, with the server's RSS sampled every 50 ms: idle, during
#     one client, during all of them,
#   - time to first byte of a manifest (GET by tag): 200 requests on one kept-alive connection,
#     median and 99th percentile,
#   - then over TLS (the server started again with `--self-signed DIR`, as off loopback; curl
#     trusts DIR/ca.crt): the full-blob GET with the server's and curl's CPU per GiB, the clients
#     pulling at once with the server's RSS, and the manifest's time to first byte.
#
# Settings (environment): BENCH_SERVE_MB=1024, BENCH_SERVE_FLEET_MB=64, BENCH_SERVE_CLIENTS=50,
# and from bench/run.sh: BENCH_RUNS=3, BENCH_QUIET_WAIT=180, BENCH_KEEP=0, BENCH_AIRLOCK (a
# binary to use instead of building one). Needs curl and openssl; not root.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
. "$ROOT/bench/lib.sh"
setting MB BENCH_SERVE_MB 1024 1+
setting FLEET_MB BENCH_SERVE_FLEET_MB 64 1+
setting CLIENTS BENCH_SERVE_CLIENTS 50 1+
common_settings
command -v curl >/dev/null || die "curl is missing (apt-get install curl)"
[ -x /usr/bin/time ] || die "/usr/bin/time is missing (apt-get install time)"

WORK=$(mktemp -d /tmp/aserve.XXXXXX)
SERVER=""
cleanup() {
  [ -z "$SERVER" ] || { kill -TERM "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null || true; }
  if [ "$KEEP" = 1 ]; then echo "bench: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
mkdir -p "$WORK/logs" "$WORK/layout/blobs/sha256"

pick_airlock

# ---------------------------------------------------------------------------------------------
# An OCI layout of serve.example/big:1 (one MB MiB layer) and serve.example/fleet:1 (FLEET_MB).
L=$WORK/layout
LT=application/vnd.oci.image.layer.v1.tar
entries=()
image() { # NAME MIB
  stream "$1" $(($2 << 20)) >"$WORK/a"
  read -r AD AS <<<"$(put_blob "$L" "$WORK/a")"
  printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["%s"]}}' "$AD" >"$WORK/c"
  read -r CD CS <<<"$(put_blob "$L" "$WORK/c")"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"%s","digest":"%s","size":%d}]}' \
    "$CD" "$CS" "$LT" "$AD" "$AS" >"$WORK/m"
  read -r MD MS <<<"$(put_blob "$L" "$WORK/m")"
  entries+=("$(printf '{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%d,"annotations":{"org.opencontainers.image.ref.name":"serve.example/%s:1"}}' "$MD" "$MS" "$1")")
  eval "${1^^}_LAYER=$AD ${1^^}_CONFIG=$CD"
}
say "a bundle of a $MB MiB image and a $FLEET_MB MiB image"
echo '{"imageLayoutVersion":"1.0.0"}' >"$L/oci-layout"
image big "$MB"
image fleet "$FLEET_MB"
(
  IFS=,
  printf '{"schemaVersion":2,"manifests":[%s]}' "${entries[*]}"
) >"$L/index.json"
cd "$WORK"
"$AIRLOCK" keygen --no-password -o ops >/dev/null 2>&1
"$AIRLOCK" create -k ops.key --compression none -o bundle.tar "oci:$L" >logs/create.log 2>&1
rm -rf "$L"

# start [ARGS...]: launches the server (with ARGS), waits for its "serving" line; sets SERVER,
# ADDR, URL (scheme://ADDR/v2/serve.example) and START (s). The requests of every start are logged.
start() {
  local t0=$EPOCHREALTIME
  # Every client is 127.0.0.1: its share of connections must hold them all.
  "$AIRLOCK" serve -p ops.pub --state "$WORK/state.json" --listen 127.0.0.1:0 \
    --max-connections-per-address $((CLIENTS + 8)) "$@" bundle.tar \
    >>"$WORK/logs/requests.log" 2>"$WORK/logs/serve.err" &
  SERVER=$!
  until grep -q '^serving' "$WORK/logs/serve.err"; do
    kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/logs/serve.err" >&2; die "airlock serve exited"; }
    sleep 0.01
  done
  START=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
  ADDR=""
  until [ -n "$ADDR" ]; do # the line may be half written
    ADDR=$(sed -n 's|^serving.*://\([^ ]*\) .*|\1|p' "$WORK/logs/serve.err")
    [ -n "$ADDR" ] || sleep 0.01
  done
  URL=$(sed -n 's|^serving.* \([a-z]*\)://.*|\1|p' "$WORK/logs/serve.err")://$ADDR/v2/serve.example
}
# Every curl gets these options: none for plain HTTP, the CA to trust over TLS.
CURLX=()
stop() { kill -TERM "$SERVER"; wait "$SERVER" || true; SERVER=""; }
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$SERVER/status" 2>/dev/null || echo 0; }
# The server's user + system CPU time so far, in clock ticks.
cpu_ticks() { local a st; st=$(cat "/proc/$SERVER/stat"); read -r -a a <<<"${st##*) }"; echo $((a[11] + a[12])); }

say "start: full verification, then the record of it"
warm bundle.tar
quiet
start
START_FULL=$START
stop
quiet
start
START_AGAIN=$START
grep -q 'every blob verified at' "$WORK/logs/serve.err" || die "the second start verified every blob again"

sha() {
  openssl speed -evp sha256 -bytes 16384 -seconds 3 2>/dev/null |
    awk '/^sha256/ { sub(/k$/, "", $2); printf "%.3f", $2 * 1000 / 1e9 }'
}
say "full-blob GET of the $MB MiB layer against openssl speed -evp sha256"
quiet
SHA0=$(sha)
LOAD0=$(cut -d' ' -f1 /proc/loadavg)
# gets NAME [CURL ARGS...]: BENCH_RUNS GETs of the big layer, each after a quiet wait; sets
# NAME_GBS (the fastest, GB/s), NAME_CPU (the server's CPU seconds per GiB sent, all runs) and
# NAME_CLIENT (curl's).
gets() {
  local name=$1 r s t0 best=0 client=0
  shift
  t0=$(cpu_ticks)
  for ((r = 1; r <= RUNS; r++)); do
    quiet
    s=$(/usr/bin/time -f '%U %S' -o "$WORK/curl.time" curl -sS "${CURLX[@]}" "$@" -o /dev/null -w '%{speed_download}' "$URL/big/blobs/$BIG_LAYER")
    best=$(awk -v a="$s" -v b="$best" 'BEGIN { print (a > b) ? a : b }')
    client=$(awk -v c="$client" '{ printf "%.2f", c + $1 + $2 }' "$WORK/curl.time")
  done
  printf -v "${name}_GBS" '%s' "$(awk -v b="$best" 'BEGIN { printf "%.3f", b / 1e9 }')"
  printf -v "${name}_CPU" '%s' "$(awk -v t=$(($(cpu_ticks) - t0)) -v hz="$HZ" -v n="$RUNS" -v mb="$MB" 'BEGIN { printf "%.2f", t / hz / (n * mb / 1024) }')"
  printf -v "${name}_CLIENT" '%s' "$(awk -v c="$client" -v n="$RUNS" -v mb="$MB" 'BEGIN { printf "%.2f", c / (n * mb / 1024) }')"
}
# Sent whole, hashed on the way; then all but the last byte (a range: not hashed), which shows
# what the reads, the socket and the client cost without sha256.
gets WHOLE
gets RANGE -r "0-$(((MB << 20) - 2))"
# NPROC GETs of the layer at once (each hashed): the aggregate, every core busy.
quiet
T0=$(cpu_ticks) t0=$EPOCHREALTIME
pids=()
for ((i = 1; i <= $(nproc); i++)); do curl -sSf "${CURLX[@]}" -o /dev/null "$URL/big/blobs/$BIG_LAYER" & pids+=($!); done
for p in "${pids[@]}"; do wait "$p" || die "a concurrent GET failed"; done
PAR_GBS=$(awk -v a="$t0" -v b="$EPOCHREALTIME" -v n="$(nproc)" -v mb="$MB" 'BEGIN { printf "%.3f", n * mb * 1048576 / (b - a) / 1e9 }')
PAR_CPU=$(awk -v t=$(($(cpu_ticks) - T0)) -v hz="$HZ" -v n="$(nproc)" -v mb="$MB" 'BEGIN { printf "%.2f", t / hz / (n * mb / 1024) }')
LOAD1=$(cut -d' ' -f1 /proc/loadavg)
SHA1=$(sha)
SHA=$(awk -v a="$SHA0" -v b="$SHA1" 'BEGIN { printf "%.3f", (a + b) / 2 }')

# pull N: N clients at once, each GETs fleet's manifest, config and layer; prints wall seconds.
# pull runs in a subshell: each failed client adds a line to $WORK/failed.
: >"$WORK/failed"
pull() {
  local i pids=() t0=$EPOCHREALTIME base="$URL/fleet"
  for ((i = 1; i <= $1; i++)); do
    curl -sSf "${CURLX[@]}" -o /dev/null -o /dev/null -o /dev/null "$base/manifests/1" "$base/blobs/$FLEET_CONFIG" \
      "$base/blobs/$FLEET_LAYER" &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || echo "$i" >>"$WORK/failed"; done
  awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'
}
# sampled CMD...: runs CMD with the server's RSS sampled every 50 ms; sets PEAK (KiB).
sampled() {
  local f=$WORK/rss.samples
  : >"$f"
  (while true; do rss >>"$f"; sleep 0.05; done) &
  local sampler=$!
  OUT=$("$@")
  kill "$sampler"
  wait "$sampler" 2>/dev/null || true
  PEAK=$(sort -n "$f" | tail -n 1)
}
# fleet NAME: 1 client, then CLIENTS at once; sets NAME_IDLE, NAME_ONE_PEAK, NAME_MANY_PEAK and
# NAME_AFTER (the server's RSS, KiB), NAME_ONE_S and NAME_MANY_S (wall seconds).
fleet() {
  say "$CLIENTS clients pulling serve.example/fleet:1 at once, RSS sampled ($URL)"
  printf -v "$1_IDLE" '%s' "$(rss)"
  quiet
  sampled pull 1
  printf -v "$1_ONE_S" '%s' "$OUT"
  printf -v "$1_ONE_PEAK" '%s' "$PEAK"
  quiet
  sampled pull "$CLIENTS"
  printf -v "$1_MANY_S" '%s' "$OUT"
  printf -v "$1_MANY_PEAK" '%s' "$PEAK"
  printf -v "$1_AFTER" '%s' "$(rss)"
}
# ttfb NAME: sets NAME_MED and NAME_P99 (ms).
ttfb() {
  local i urls=()
  say "time to first byte of a manifest: 200 GETs on one connection ($URL)"
  for ((i = 0; i < 200; i++)); do urls+=(-o /dev/null "$URL/fleet/manifests/1"); done
  quiet
  curl -sS "${CURLX[@]}" -w '%{time_starttransfer}\n' "${urls[@]}" | sort -n >"$WORK/ttfb"
  printf -v "$1_MED" '%s' "$(awk '{ a[NR] = $1 } END { printf "%.2f", a[int(NR / 2) + 1] * 1000 }' "$WORK/ttfb")"
  printf -v "$1_P99" '%s' "$(awk '{ a[NR] = $1 } END { printf "%.2f", a[int(NR * 0.99)] * 1000 }' "$WORK/ttfb")"
}
fleet PULL
ttfb TTFB
stop

# The same over TLS: the server started as off loopback with a generated CA, curl trusting it.
say "over TLS: --self-signed, curl --cacert"
start --self-signed "$WORK/tls"
CURLX=(--cacert "$WORK/tls/ca.crt")
LOAD2=$(cut -d' ' -f1 /proc/loadavg)
gets TLS
LOAD3=$(cut -d' ' -f1 /proc/loadavg)
fleet TLS_PULL
ttfb TLS_TTFB
stop
CUT=$(grep -c ' CUT: ' "$WORK/logs/requests.log" || true)

mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
echo
echo "airlock serve: $REV; nproc=$(nproc); loopback, plain HTTP (then TLS rows), page cache warm; curl as the client"
printf '%-58s %s\n' "start, every blob verified (bundle $(awk -v b="$(stat -c %s bundle.tar)" 'BEGIN { printf "%.0f MiB", b / 1048576 }'))" "$START_FULL s"
printf '%-58s %s\n' "start again, file unchanged (verification record)" "$START_AGAIN s"
x() { awk -v g="$1" -v s="$SHA" 'BEGIN { printf "%.2f", g / s }'; }
SHA_GIB=$(awk -v s="$SHA" 'BEGIN { printf "%.2f", 1.073741824 / s }')
printf '%-58s %s\n' "openssl speed -evp sha256, 16 KiB, one core (before/after)" "$SHA0 / $SHA1 GB/s = $SHA_GIB s of CPU per GiB"
# whole NAME WHAT LOADS: the rows of gets NAME.
whole() {
  local g=$1_GBS c=$1_CPU k=$1_CLIENT
  printf '%-58s %s\n' "full-blob GET$2, $MB MiB layer, best of $RUNS" "${!g} GB/s = $(x "${!g}") x sha256 (load $3)"
  printf '%-58s %s\n' "  server / curl CPU per GiB (sha256 alone: $SHA_GIB s)" "${!c} s = $(awk -v c="${!c}" -v s="$SHA_GIB" 'BEGIN { printf "%.2f", c / s }') x sha256's / ${!k} s"
}
# clients PULL TTFB WHAT: the rows of fleet PULL and ttfb TTFB.
clients() {
  local i=$1_IDLE o=$1_ONE_PEAK m=$1_MANY_PEAK a=$1_AFTER s=$1_MANY_S s1=$1_ONE_S
  printf '%-58s %s\n' "server RSS$3 idle / 1 client / $CLIENTS clients / after" "$(mib "${!i}") / $(mib "${!o}") / $(mib "${!m}") / $(mib "${!a}")"
  printf '%-58s %s\n' "$CLIENTS clients x $FLEET_MB MiB image$3: wall, aggregate" "${!s} s, $(awk -v n="$CLIENTS" -v m="$FLEET_MB" -v s="${!s}" 'BEGIN { printf "%.2f GB/s", n * m * 1048576 / s / 1e9 }') (1 client: ${!s1} s)"
  i=$2_MED o=$2_P99
  printf '%-58s %s\n' "manifest time to first byte$3, median / p99 of 200" "${!i} / ${!o} ms"
}
whole WHOLE "" "$LOAD0 / $LOAD1"
printf '%-58s %s\n' "same, all but the last byte (a range: not hashed)" "$RANGE_GBS GB/s = $(x "$RANGE_GBS") x sha256"
printf '%-58s %s\n' "  server / curl CPU per GiB" "$RANGE_CPU s / $RANGE_CLIENT s"
# With curl on the same cores, the CPU one GET costs (server + curl), spread perfectly over every
# core, bounds its speed (one stream is hashed in order on one core, which tightens it further).
printf '%-58s %s\n' "  (server + curl CPU) / $(nproc) cores, if perfectly spread" "$(awk -v w="$WHOLE_CPU" -v c="$WHOLE_CLIENT" -v n="$(nproc)" -v s="$SHA_GIB" \
  'BEGIN { a = (w + c) / n; printf "%.2f s per GiB = %.2f x sha256", a, s / a }')"
printf '%-58s %s\n' "$(nproc) full-blob GETs at once: aggregate" "$PAR_GBS GB/s = $(x "$PAR_GBS") x one core's sha256; server CPU $PAR_CPU s per GiB"
clients PULL TTFB ""
whole TLS " over TLS" "$LOAD2 / $LOAD3"
clients TLS_PULL TLS_TTFB " over TLS"
printf '%-58s %s\n' "responses cut (should be 0)" "$CUT"
printf '%-58s %s\n' "client pulls that failed (should be 0)" "$(wc -l <"$WORK/failed")"
