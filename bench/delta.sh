#!/usr/bin/env bash
# bench/delta.sh - a delta bundle against the full bundle, for a one-image change (`bench/run.sh
# delta` runs it alone; a full bench/run.sh runs it after its own rows unless BENCH_DELTA=0).
#
# An OCI layout written here holds N images that share one base layer, each with a layer of its
# own (random bytes, so gzip cannot shrink them). Yesterday's bundle is the full set; today one
# image's own layer changed. Timed (the fastest of BENCH_RUNS runs, each after a wait for a quiet
# machine):
#   - airlock create of today's full set (the full bundle),
#   - airlock create --base yesterday.index of the same set (the delta: reads only the index),
#   - airlock create --base yesterday.index of yesterday's unchanged set (the smallest delta),
# and their sizes. `airlock diff` of yesterday's index and the delta is checked against the sizes.
#
# Settings (environment): BENCH_DELTA_IMAGES=8, BENCH_DELTA_BASE_MB=200 (the shared layer),
# BENCH_DELTA_APP_MB=20 (each image's own layer), and from bench/run.sh: BENCH_RUNS=3,
# BENCH_QUIET_WAIT=180, BENCH_KEEP=0, BENCH_AIRLOCK (a binary to use instead of building one).
# Needs nothing but airlock; not root.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
. "$ROOT/bench/lib.sh"
setting IMAGES BENCH_DELTA_IMAGES 8 1+
setting BASE_MB BENCH_DELTA_BASE_MB 200 0+
setting APP_MB BENCH_DELTA_APP_MB 20 0+
common_settings
work_dir adelta

pick_airlock

# ---------------------------------------------------------------------------------------------
# layout DIR CHANGED: an OCI layout of IMAGES images named delta.example/app<K>:1; image 1's own
# layer is made from seed CHANGED (so two layouts differ in that layer, its config and manifest).
LT=application/vnd.oci.image.layer.v1.tar
layout() {
  local L=$1 changed=$2 k seed
  mkdir -p "$L/blobs/sha256"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$L/oci-layout"
  cp "$WORK/base.bin" "$WORK/b"
  read -r BD BS <<<"$(put_blob "$L" "$WORK/b")"
  local entries=()
  for ((k = 1; k <= IMAGES; k++)); do
    seed=$k
    [ "$k" = 1 ] && seed=$changed
    stream "app$seed" $((APP_MB << 20)) >"$WORK/a"
    read -r AD AS <<<"$(put_blob "$L" "$WORK/a")"
    printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["%s","%s"]}}' "$BD" "$AD" >"$WORK/c"
    read -r CD CS <<<"$(put_blob "$L" "$WORK/c")"
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"%s","digest":"%s","size":%d},{"mediaType":"%s","digest":"%s","size":%d}]}' \
      "$CD" "$CS" "$LT" "$BD" "$BS" "$LT" "$AD" "$AS" >"$WORK/m"
    read -r MD MS <<<"$(put_blob "$L" "$WORK/m")"
    entries+=("$(printf '{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%d,"annotations":{"org.opencontainers.image.ref.name":"delta.example/app%d:1"}}' "$MD" "$MS" "$k")")
  done
  (
    IFS=,
    printf '{"schemaVersion":2,"manifests":[%s]}' "${entries[*]}"
  ) >"$L/index.json"
}

say "$IMAGES images sharing a $BASE_MB MiB layer, $APP_MB MiB of their own each; image 1 changes"
stream base $((BASE_MB << 20)) >"$WORK/base.bin"
layout "$WORK/yesterday" 0
layout "$WORK/today" 1
rm -f "$WORK/base.bin"
cd "$WORK/out"
"$AIRLOCK" keygen --no-password -o ops >/dev/null 2>&1
CREATE=("$AIRLOCK" create -k ops.key --created 2026-01-01T00:00:00Z)
"${CREATE[@]}" --sequence 1 -o yesterday.tar "oci:$WORK/yesterday" >"$WORK/logs/yesterday.log" 2>&1
"$AIRLOCK" index yesterday.tar -o yesterday.index >/dev/null

job full full.tar "${CREATE[@]}" -o full.tar "oci:$WORK/today"
job delta delta.tar "${CREATE[@]}" --base yesterday.index -o delta.tar "oci:$WORK/today"
job unchanged unchanged.tar "${CREATE[@]}" --base yesterday.index -o unchanged.tar "oci:$WORK/yesterday"
run_jobs full delta unchanged

carried=$("$AIRLOCK" diff --json yesterday.index delta.tar | sed -n 's/.*"bytesToCarry": \([0-9]*\).*/\1/p')
size() { stat -c %s "$1"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
kib() { awk -v b="$1" 'BEGIN { printf "%.1f KiB", b / 1024 }'; }
echo
echo "delta bundles: $IMAGES images, one changed ($APP_MB MiB layer), $REV, best of $RUNS"
printf '%-44s %12s %10s %10s\n' "bundle" "size" "create s" "peak RSS"
printf '%-44s %12s %10s %10s\n' "full bundle of today's set" "$(mib "$(size full.tar)")" "${WALL[full]}" "$((RSS[full] / 1024)) MiB"
printf '%-44s %12s %10s %10s\n' "delta against yesterday's index" "$(mib "$(size delta.tar)")" "${WALL[delta]}" "$((RSS[delta] / 1024)) MiB"
printf '%-44s %12s %10s %10s\n' "delta of the unchanged set" "$(kib "$(size unchanged.tar)")" "${WALL[unchanged]}" "$((RSS[unchanged] / 1024)) MiB"
printf '%-44s %12s\n' "index file kept on the connected side" "$(kib "$(size yesterday.index)")"
echo "diff says the delta carries $(mib "$carried") of blobs"
