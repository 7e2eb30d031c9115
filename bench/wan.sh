#!/usr/bin/env bash
# bench/wan.sh - registry traffic at WAN latency (`bench/run.sh wan` runs it alone; a full
# bench/run.sh runs it after its own rows unless BENCH_WAN=0).
#
# A CNCF distribution registry on 127.0.0.1 holds N small images that share one base layer; a
# latency-injecting TCP proxy (bench/latency_proxy.rs, no bandwidth cap) sits in front of it and
# of the push targets, adding BENCH_WAN_DELAY_MS each way. Timed through the proxy:
#   - airlock create -f LIST (every image, docker://; and with --no-attachments, to show what
#     looking for signatures and referrers costs) and airlock create --cache DIR (a cold cache,
#     emptied before each run, and a warm one, filled once before the first run),
#   - skopeo sync of the same images into a dir (for comparison),
#   - airlock push of that bundle into an empty registry (a fresh one per run), and again into a
#     registry that holds everything,
# each against its floor: RTT x round trips per image x images / concurrency, where the round
# trips are those an image needs at the least (create: manifest, then config and layers; cold
# push: blob upload start and end, manifest; repeat push: one HEAD) and the concurrency is
# airlock's default (BENCH_WAN_CONCURRENCY, keep it equal to the README's figure).
#
# Settings (environment): BENCH_WAN_IMAGES=100, BENCH_WAN_DELAY_MS=25 (one way),
# BENCH_WAN_BASE_KB=1024 (base layer content), BENCH_WAN_CONCURRENCY=16, BENCH_WAN_ROWS=all
# (`create` times only the create rows, `push` only the push rows), BENCH_WAN_SKOPEO=1 (0 leaves
# out the skopeo sync row, the slowest by far), and from bench/run.sh:
# BENCH_RUNS=3, BENCH_QUIET_WAIT=180, BENCH_KEEP=0, BENCH_AIRLOCK (a binary to use instead of
# building one). Needs skopeo and docker-registry (scripts/peers.sh install); not root.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
PEERS=$ROOT/scripts/peers.sh
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
setting IMAGES BENCH_WAN_IMAGES 100 1+
setting DELAY BENCH_WAN_DELAY_MS 25 0+
setting BASE_KB BENCH_WAN_BASE_KB 1024 0+
setting CONC BENCH_WAN_CONCURRENCY 16 1+
setting ROWS BENCH_WAN_ROWS all 'all|create|push'
setting SKOPEO BENCH_WAN_SKOPEO 1 flag
common_settings

WORK=$(mktemp -d /tmp/awan.XXXXXX)
# Every run imports the same bundle again: a state file of its own, never the user's, and
# --allow-rollback on each push (a repeat of the last bundle applied is a replay).
export XDG_STATE_HOME=$WORK/state
PROXIES=()
cleanup() {
  local rc=$? reg p
  set +e
  for p in "${PROXIES[@]}"; do kill "$p" 2>/dev/null; done
  for reg in "$WORK"/reg/*/; do
    if [ -f "$reg/pid" ]; then "$PEERS" stop-registry "$reg" >&2; fi
  done
  if [ "$KEEP" = 1 ]; then echo "bench: work dir kept: $WORK" >&2; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$WORK"/{logs,tmp,out,reg}
export TMPDIR=$WORK/tmp

say "tools"
command -v skopeo >/dev/null && command -v docker-registry >/dev/null || "$PEERS" install >&2
[ -x /usr/bin/time ] || die "/usr/bin/time is missing (apt-get install time)"
# std only: rustc builds it in seconds, without building airlock's library as the example would.
PROXY=$ROOT/target/latency_proxy
if [ ! -x "$PROXY" ] || [ "$ROOT/bench/latency_proxy.rs" -nt "$PROXY" ]; then
  mkdir -p "$ROOT/target"
  rustc --edition 2024 -O -o "$PROXY" "$ROOT/bench/latency_proxy.rs" >&2
fi
pick_airlock

# ---------------------------------------------------------------------------------------------
# The images: an OCI layout written here (gzip layers, reproducible), one base layer shared by
# all, one tiny layer of its own per image, named wan.example/wan/appK:1.0.
say "$IMAGES images sharing a ${BASE_KB} KiB base layer"
L=$WORK/layout
mkdir -p "$L/blobs/sha256" "$WORK/c"
echo '{"imageLayoutVersion":"1.0.0"}' >"$L/oci-layout"
# layer DIR: gzip tar of DIR into the layout; prints "DIGEST SIZE DIFF_ID".
layer() {
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$1" -cf "$WORK/c/l.tar" .
  local diff
  diff=sha256:$(sha256sum "$WORK/c/l.tar" | cut -d' ' -f1)
  gzip -n -6 <"$WORK/c/l.tar" >"$WORK/c/l.tgz"
  echo "$(put_blob "$L" "$WORK/c/l.tgz") $diff"
}
mkdir -p "$WORK/c/base/opt"
head -c $((BASE_KB * 512)) /dev/urandom >"$WORK/c/base/opt/random.bin"
find /usr/share/doc -type f -name copyright -print0 2>/dev/null | head -z -n 200 |
  xargs -0 cat 2>/dev/null | head -c $((BASE_KB * 512)) >"$WORK/c/base/opt/text" || true
read -r BASE_D BASE_S BASE_DIFF <<<"$(layer "$WORK/c/base")"
LT=application/vnd.oci.image.layer.v1.tar+gzip
entries=()
for ((k = 1; k <= IMAGES; k++)); do
  rm -rf "$WORK/c/app" && mkdir -p "$WORK/c/app/opt"
  echo "app $k" >"$WORK/c/app/opt/app$k"
  read -r D S DIFF <<<"$(layer "$WORK/c/app")"
  printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["/opt/app%d"]},"rootfs":{"type":"layers","diff_ids":["%s","%s"]}}' \
    "$k" "$BASE_DIFF" "$DIFF" >"$WORK/c/config"
  read -r CD CS <<<"$(put_blob "$L" "$WORK/c/config")"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"%s","digest":"%s","size":%d},{"mediaType":"%s","digest":"%s","size":%d}]}' \
    "$CD" "$CS" "$LT" "$BASE_D" "$BASE_S" "$LT" "$D" "$S" >"$WORK/c/manifest"
  read -r MD MS <<<"$(put_blob "$L" "$WORK/c/manifest")"
  entries+=("$(printf '{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%d,"annotations":{"org.opencontainers.image.ref.name":"wan.example/wan/app%d:1.0"}}' "$MD" "$MS" "$k")")
done
(
  IFS=,
  printf '{"schemaVersion":2,"manifests":[%s]}' "${entries[*]}"
) >"$L/index.json"

# ---------------------------------------------------------------------------------------------
read -r P_SRC P_FULL P_COLD X_SRC X_FULL X_COLD <<<"$(free_ports 6)"
say "registries on :$P_SRC (source), :$P_FULL (full), :$P_COLD (cold, fresh per run); proxies" \
  "adding $DELAY ms each way on :$X_SRC, :$X_FULL, :$X_COLD"
proxy() { # LISTEN TARGET
  "$PROXY" "$1" "$2" "$DELAY" >"$WORK/logs/proxy-$1.log" 2>&1 &
  PROXIES+=($!)
}
proxy "$X_SRC" "$P_SRC"
proxy "$X_FULL" "$P_FULL"
proxy "$X_COLD" "$P_COLD"
cd "$WORK/out"
"$AIRLOCK" keygen --no-password -o ops >/dev/null 2>&1
start_registry "$WORK/reg/src" "$P_SRC"
"$AIRLOCK" create -k ops.key -o seed.tar "oci:$L" >"$WORK/logs/seed.log" 2>&1 ||
  { tail "$WORK/logs/seed.log" >&2; die "airlock create of the seed bundle failed"; }
"$AIRLOCK" push -p ops.pub --allow-rollback seed.tar --to "127.0.0.1:$P_SRC" >>"$WORK/logs/seed.log" 2>&1 ||
  { tail "$WORK/logs/seed.log" >&2; die "seeding the source registry failed"; }
rm -f seed.tar
LIST=$WORK/out/images.txt
SYNC=$WORK/out/sync.yaml
{
  echo "127.0.0.1:$X_SRC:"
  echo "  tls-verify: false"
  echo "  images:"
} >"$SYNC"
for ((k = 1; k <= IMAGES; k++)); do
  echo "127.0.0.1:$X_SRC/wan/app$k:1.0" >>"$LIST"
  echo "    wan/app$k: [\"1.0\"]" >>"$SYNC"
done

if [ "$ROWS" != push ]; then
  say "through the proxy: create, create --cache, skopeo sync; $RUNS interleaved rounds"
  drop_cache() { rm -rf "$WORK/out/cache"; }
  job wan_create "$WORK/out/w.tar" "$AIRLOCK" create -k ops.key -o "$WORK/out/w.tar" -f "$LIST"
  job wan_create_cache "$WORK/out/wc.tar" "$AIRLOCK" create -k ops.key -o "$WORK/out/wc.tar" \
    --cache "$WORK/out/cache" -f "$LIST"
  hooks wan_create_cache drop_cache ""
  fill_cache() {
    [ -d "$WORK/out/warm" ] && return
    "$AIRLOCK" create -k ops.key -o "$WORK/out/ww.tar" --cache "$WORK/out/warm" -f "$LIST" \
      >"$WORK/logs/fill-cache.log" 2>&1 || { tail "$WORK/logs/fill-cache.log" >&2; die "filling the cache failed"; }
    rm -f "$WORK/out/ww.tar"
  }
  job wan_create_warm "$WORK/out/ww.tar" "$AIRLOCK" create -k ops.key -o "$WORK/out/ww.tar" \
    --cache "$WORK/out/warm" -f "$LIST"
  hooks wan_create_warm fill_cache ""
  job wan_create_bare "$WORK/out/wb.tar" "$AIRLOCK" create -k ops.key -o "$WORK/out/wb.tar" --no-attachments \
    -f "$LIST"
  CREATE_JOBS=(wan_create wan_create_bare wan_create_cache wan_create_warm)
  if [ "$SKOPEO" = 1 ]; then
    job wan_skopeo_sync "$WORK/out/sync" skopeo sync --src yaml --dest dir "$SYNC" "$WORK/out/sync"
    CREATE_JOBS+=(wan_skopeo_sync)
  fi
  run_jobs "${CREATE_JOBS[@]}"
  rm -rf "$WORK/out/wc.tar" "$WORK/out/ww.tar" "$WORK/out/wb.tar" "$WORK/out/sync" "$WORK/out/cache" "$WORK/out/warm"
else
  "$AIRLOCK" create -k ops.key -o "$WORK/out/w.tar" -f "$LIST" >"$WORK/logs/w.log" 2>&1 ||
    { tail "$WORK/logs/w.log" >&2; die "airlock create of the bundle to push failed"; }
fi

if [ "$ROWS" != create ]; then
  say "through the proxy: push into an empty registry, push again into a full one; $RUNS rounds"
  start_registry "$WORK/reg/full" "$P_FULL"
  "$AIRLOCK" push -p ops.pub --allow-rollback w.tar --to "127.0.0.1:$P_FULL" >"$WORK/logs/fill.log" 2>&1 ||
    { tail "$WORK/logs/fill.log" >&2; die "filling the full registry failed"; }
  job wan_push_cold - "$AIRLOCK" push -p ops.pub --allow-rollback "$WORK/out/w.tar" --to "127.0.0.1:$X_COLD"
  hooks wan_push_cold "fresh_registry $P_COLD" drop_registry
  job wan_push_repeat - "$AIRLOCK" push -p ops.pub --allow-rollback "$WORK/out/w.tar" --to "127.0.0.1:$X_FULL"
  run_jobs wan_push_cold wan_push_repeat
  REPEAT_UP=$(sed -n 's/^.*: uploaded \(.*\) in all$/\1/p' "$WORK/logs/${JOB_BEST[wan_push_repeat]}.log")
fi

# ---------------------------------------------------------------------------------------------
RTT=$(awk -v d="$DELAY" 'BEGIN { print 2 * d / 1000 }')
floor() { awk -v rt="$1" -v rtt="$RTT" -v n="$IMAGES" -v c="$CONC" 'BEGIN { printf "%.2f", rt * rtt * n / c }'; }
wrow() { printf '%-46s %8s %8s %7s %7s %8s  %s\n' "$@"; }
w() { # LABEL NAME ROUND-TRIPS GOAL-SECONDS NOTE
  local f busy
  f=$(floor "$3")
  busy=$(awk -v w="${WALL[$2]}" -v o="${OTHER[$2]}" 'BEGIN { printf "%.2f", o / w }')
  wrow "$1" "${WALL[$2]}" "$f" "$(ratio "${WALL[$2]}" "$f")" "$busy" "${4:--}" \
    "${4:+$(check "${WALL[$2]}" "<=" "$4")}${5:+; $5}"
}
{
  echo
  echo "airlock WAN benchmark ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
  echo "airlock: $REV; $(skopeo --version); docker-registry $(docker-registry --version | awk '{ print $NF }')"
  echo "$IMAGES images (base layer $(mib "$BASE_S") MiB gzip shared, one tiny layer each) on 127.0.0.1 behind a" \
    "proxy adding $DELAY ms each way (RTT $RTT s, no bandwidth cap); fastest of $RUNS+ runs; defaults, no tuning flags"
  printf '%.0s-' {1..110}
  echo
  wrow "operation" "wall s" "floor s" "ratio" "others" "goal s" ""
  printf '%.0s-' {1..110}
  echo
  if [ "$ROWS" != push ]; then
    w "airlock create -f LIST" wan_create 2 2.5
    w "airlock create -f LIST --no-attachments" wan_create_bare 2 ""
    w "airlock create --cache DIR -f LIST (cold)" wan_create_cache 2 2.5
    w "airlock create --cache DIR -f LIST (warm)" wan_create_warm 2 2.5
    if [ "$SKOPEO" = 1 ]; then w "skopeo sync --src yaml --dest dir" wan_skopeo_sync 2 ""; fi
  fi
  if [ "$ROWS" != create ]; then
    w "airlock push -> empty registry (cold)" wan_push_cold 3 4
    w "airlock push again (registry has everything)" wan_push_repeat 1 1 "uploaded ${REPEAT_UP:-?}"
  fi
  printf '%.0s-' {1..110}
  echo
  echo "floor: RTT x round trips per image (create 2, cold push 3, repeat push 1) x images / $CONC (airlock's default concurrency); ratio = wall / floor."
  echo "others: mean cores kept busy by other processes during the reported run (the registries' own work excluded)."
}
