#!/usr/bin/env bash
# bench/run.sh - airlock vs. skopeo (and docker save) on a realistic multi-image `docker save`.
#
# One run: builds airlock (release), builds N images offline (umoci) that share one base layer,
# loads them into a private dockerd (dockerd 20.10: legacy `docker save` layout), saves them into
# ONE multi-image docker-save tarball, then times
#   - docker save of those images (reference),
#   - skopeo copy docker-archive:multi.tar:imgK oci-archive:s-K.tar:imgK, for every K (summed),
#   - airlock create (gzip, the default) and airlock create --compression zstd of all images at once,
#   - airlock create (gzip) from a Docker 25+ `docker save` of the same images (dockerd 26.1 from
#     scripts/peers.sh install-modern-dockerd, graphdriver store: OCI layout, uncompressed layers),
#   - airlock verify of the gzip bundle (page cache warm),
#   - create + verify of one image with a single big layer (memory check),
#   - verify against `openssl speed -evp sha256` in the same run (bench/verify-speed.sh, which
#     also runs alone: one big layer and 8 equal layers, from the file and from a pipe),
#   - with a loopback registry (scripts/peers.sh start-registry) seeded with the same images:
#     airlock create from docker://127.0.0.1:PORT/... (plain, and --cache DIR --jobs 4 cold)
#     against skopeo copy docker://... oci:DIR:..., one image per copy into one OCI layout;
#     airlock push of that bundle into a fresh registry against skopeo copy oci:DIR:...
#     docker://..., one image per copy into another fresh registry; and a repeat airlock push
#     into a registry that holds everything already,
# and prints a table. Progress goes to stderr, the table to stdout. See bench/README.md.
#
# Settings (environment):
#   BENCH_IMAGES=4         images in the multi-image save (all share the base layer)
#   BENCH_BASE_MB=200      size of the shared base layer's content, MiB
#   BENCH_APP_MB=50        size of each image's own layer, MiB (40% random, 60% real files)
#   BENCH_BIG_MB=1024      size of the single-layer image for the memory check, MiB (0 skips it)
#   BENCH_REGISTRY=1       0 skips the registry rows (create from a registry, push)
#   BENCH_DOCKER26=1       0 skips the Docker 25+ save row (and the dockerd 26 it needs)
#   BENCH_RUNS=3           timed runs of each skopeo/airlock command (the fastest is reported)
#   BENCH_QUIET_WAIT=180   seconds in all that timed runs may wait for other processes on the
#                          machine to go idle (a command whose fastest run was disturbed anyway
#                          runs again, up to 2 x BENCH_RUNS runs)
#   BENCH_KEEP=0           1 keeps the work dir (/tmp/abench.XXXXXX) for a look afterwards
#   BENCH_REV=             build this git revision (exported with `git archive`, built in
#                          target/bench-rev) instead of the work tree
#   BENCH_AIRLOCK=         path to an airlock binary to use instead of building one
#   BENCH_WAN=1            0 skips the WAN rows (bench/wan.sh: registry traffic at 50 ms RTT)
#   BENCH_DELTA=1          0 skips the delta rows (bench/delta.sh: a delta bundle against the
#                          full one for a one-image change)
#   BENCH_SERVE=1          0 skips the serve rows (bench/serve.sh: airlock serve's start, full-blob
#                          GET against sha256, 50 clients' RSS, a manifest's time to first byte;
#                          plain HTTP and over TLS)
#   BENCH_VOLUMES=1        0 skips the volume rows (bench/volumes.sh: parity encoding per core,
#                          create split and with parity, against one file and sha256)
#
# `bench/run.sh wan` runs only the WAN rows (bench/wan.sh; no root needed); `bench/run.sh delta`
# only the delta rows (bench/delta.sh; no root needed); `bench/run.sh serve` only the serve rows
# (bench/serve.sh; no root needed); `bench/run.sh volumes` only the volume rows (bench/volumes.sh).
#
# Needs root (umoci, dockerd). Installs missing peers with scripts/peers.sh and /usr/bin/time
# with apt-get. Everything started (dockerd, registries) is stopped on exit; the work dir is
# removed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
case ${1:-} in
  wan) exec "$ROOT/bench/wan.sh" ;; # the WAN rows alone (see bench/wan.sh)
  delta) exec "$ROOT/bench/delta.sh" ;; # the delta rows alone (see bench/delta.sh)
  volumes) exec "$ROOT/bench/volumes.sh" ;; # split bundles and parity alone (see bench/volumes.sh)
  serve) exec "$ROOT/bench/serve.sh" ;; # the serve rows alone (see bench/serve.sh)
  "") ;;
  *) echo "usage: bench/run.sh [wan|delta|volumes|serve]" >&2; exit 2 ;;
esac
PEERS=$ROOT/scripts/peers.sh
. "$ROOT/bench/lib.sh"
setting IMAGES BENCH_IMAGES 4 1+
setting BASE_MB BENCH_BASE_MB 200 0+
setting APP_MB BENCH_APP_MB 50 0+
setting BIG_MB BENCH_BIG_MB 1024 0+
common_settings
for v in REGISTRY DOCKER26 WAN DELTA VOLUMES SERVE; do setting "$v" "BENCH_$v" 1 flag; done
[ "$(id -u)" = 0 ] || die "run as root (umoci and dockerd need it)"

WORK=$(mktemp -d /tmp/abench.XXXXXX) # short: dockerd's unix sockets live below it
# Every run imports the same bundle again: a state file of its own, never the user's, and
# --allow-rollback on each push (a repeat of the last bundle applied is a replay).
export XDG_STATE_HOME=$WORK/state
DK=$WORK/dk
DK26=$WORK/dk26
cleanup() {
  local rc=$?
  set +e
  if [ -f "$DK/pid" ]; then "$PEERS" stop-dockerd "$DK" >&2; fi
  if [ -f "$DK26/pid" ]; then "$PEERS" stop-dockerd "$DK26" >&2; fi
  local reg
  for reg in "$WORK"/reg/*/; do
    if [ -f "$reg/pid" ]; then "$PEERS" stop-registry "$reg" >&2; fi
  done
  if [ "$KEEP" = 1 ]; then
    echo "bench: work dir kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$WORK"/{logs,lists,tmp,out}
export TMPDIR=$WORK/tmp # skopeo's and umoci's big temporary files stay in the work dir

# ---------------------------------------------------------------------------------------------
say "tools"
"$PEERS" install >&2
if [ ! -x /usr/bin/time ]; then
  DEBIAN_FRONTEND=noninteractive apt-get update >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y time >&2
fi
case $(dockerd --version) in
  "Docker version 1"* | "Docker version 20."* | "Docker version 23."* | "Docker version 24."*) ;;
  *) echo "bench: warning: dockerd >= 25 writes the OCI save layout, not the legacy one" >&2 ;;
esac

say "build airlock (release)"
if [ -n "${BENCH_AIRLOCK:-}" ]; then
  AIRLOCK=$(cd "$(dirname "$BENCH_AIRLOCK")" && pwd -P)/$(basename "$BENCH_AIRLOCK")
  REV="$AIRLOCK (given)"
elif [ -n "${BENCH_REV:-}" ]; then
  # A committed revision, exported with git archive (the work tree is not touched).
  sha=$(git -C "$ROOT" rev-parse --verify "$BENCH_REV^{commit}")
  mkdir -p "$WORK/src"
  git -C "$ROOT" archive "$sha" | tar -x -C "$WORK/src"
  (cd "$WORK/src" && CARGO_TARGET_DIR=$ROOT/target/bench-rev cargo build --release >&2)
  AIRLOCK=$ROOT/target/bench-rev/release/airlock
  REV="commit $(git -C "$ROOT" rev-parse --short "$sha") ($BENCH_REV)"
else
  (cd "$ROOT" && cargo build --release >&2)
  AIRLOCK=$ROOT/target/release/airlock
  REV="work tree $(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo unknown)"
fi
[ -x "$AIRLOCK" ] || die "no airlock binary at $AIRLOCK"

# ---------------------------------------------------------------------------------------------
# Content: real files from /usr/lib and /usr/share (binaries, libraries, scripts, text,
# compressed docs: about as compressible as real image layers, ~0.33 with gzip -6), in a
# reproducible shuffled order (so every layer gets a mix, not one package tree), wrapping around
# into a new r<N>/ directory if more is wanted than there is.
say "content corpus from /usr/lib and /usr/share"
CORPUS=$WORK/lists/corpus
find /usr/lib /usr/share -xdev -type f -readable -size +0 -size -4M ! -path '*[[:space:]]*' \
  -printf '%s\t%p\n' | LC_ALL=C sort -t "$(printf '\t')" -k2,2 |
  shuf --random-source=<(openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass pass:airlock-bench </dev/zero 2>/dev/null) \
    >"$CORPUS"
[ -s "$CORPUS" ] || die "no files found under /usr/lib and /usr/share"
awk -F'\t' '{ s += $1 } END { printf "bench: corpus: %d files, %.0f MiB\n", NR, s / 1048576 }' "$CORPUS" >&2

# fill DEST MIB START: copies corpus files from line START+1 on (wrapping) into DEST until they
# add up to >= MIB MiB; prints the line to start from next time.
fill() {
  local dest=$1 want=$(($2 * 1048576)) start=$3 list next
  local prefix=$WORK/lists/fill.$$.$RANDOM
  next=$(awk -F'\t' -v want="$want" -v start="$start" -v prefix="$prefix" '
    { size[NR] = $1; path[NR] = substr($2, 2) }
    END {
      n = NR; i = start % n; total = 0; taken = 0
      while (total < want) {
        if (i >= n) i = 0
        i++
        round = int(taken / n); taken++
        print path[i] > (prefix "." round)
        total += size[i]
      }
      print i % n
    }' "$CORPUS")
  for list in "$prefix".*; do
    [ -e "$list" ] || continue
    mkdir -p "$dest/r${list##*.}"
    tar -C / --no-recursion --no-unquote -cf - -T "$list" | tar -C "$dest/r${list##*.}" -xf -
    rm -f "$list"
  done
  echo "$next"
}

# random FILE MIB SEED: incompressible, reproducible bytes.
random() {
  (openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass "pass:airlock-bench-$3" </dev/zero 2>/dev/null || true) |
    head -c $(($2 * 1048576)) >"$1"
}

# ---------------------------------------------------------------------------------------------
say "images (umoci): base ${BASE_MB} MiB shared by $IMAGES images with ${APP_MB} MiB each"
L=$WORK/oci
H=(--history.created_by bench)
umoci init --layout "$L"
umoci new --image "$L:empty"
mkdir -p "$WORK/c/base"
pos=$(fill "$WORK/c/base" "$BASE_MB" 0)
umoci insert --image "$L:empty" --tag base "${H[@]}" "$WORK/c/base" /opt/base
rm -rf "$WORK/c/base"
NAMES=()
RAND_MB=$((APP_MB * 2 / 5))
for ((k = 1; k <= IMAGES; k++)); do
  d=$WORK/c/app$k
  mkdir -p "$d"
  pos=$(fill "$d/files" $((APP_MB - RAND_MB)) "$pos")
  random "$d/app.bin" "$RAND_MB" "$k"
  umoci insert --image "$L:base" --tag "app$k" "${H[@]}" "$d" "/opt/app$k"
  umoci config --image "$L:app$k" --no-history --config.cmd "/opt/app$k/app.bin"
  rm -rf "$d"
  NAMES+=("bench/app$k:1.0")
done
if [ "$BIG_MB" -gt 0 ]; then
  say "image (umoci): one layer of ${BIG_MB} MiB"
  mkdir -p "$WORK/c/big"
  fill "$WORK/c/big" "$BIG_MB" "$pos" >/dev/null
  umoci insert --image "$L:empty" --tag big "${H[@]}" "$WORK/c/big" /opt/big
  rm -rf "$WORK/c/big"
fi

say "private dockerd (legacy docker save layout)"
eval "$("$PEERS" start-dockerd "$DK")"
docker version --format 'dockerd {{.Server.Version}}' >&2
load() { # TAG NAME
  skopeo copy --quiet "oci:$L:$1" "docker-archive:$WORK/load.tar:$2"
  docker load -q -i "$WORK/load.tar" >&2
  rm -f "$WORK/load.tar"
}
for ((k = 1; k <= IMAGES; k++)); do load "app$k" "${NAMES[k - 1]}"; done
[ "$BIG_MB" -gt 0 ] && load big bench/big:1.0
[ "$REGISTRY" = 1 ] || rm -rf "$L" # the registry section seeds its registry from it
docker image ls >&2

# ---------------------------------------------------------------------------------------------

M=$WORK/multi.tar
say "docker save (reference): ${NAMES[*]}"
measure docker_save - docker save -o "$M" "${NAMES[@]}"
if [ "$BIG_MB" -gt 0 ]; then
  measure big_docker_save - docker save -o "$WORK/big.tar" bench/big:1.0
fi
say "stop dockerd (nothing but the tools under test runs while they are timed)"
"$PEERS" stop-dockerd "$DK" >&2
unset DOCKER_HOST CONTAINERD_ADDRESS
[ "$KEEP" = 1 ] || rm -rf "$DK/root"

M26=$WORK/multi26.tar
if [ "$DOCKER26" = 1 ]; then
  say "private dockerd 26 (Docker 25+ docker save layout, graphdriver store): load multi.tar, save"
  D26=$("$PEERS" install-modern-dockerd | sed -n 's/^export DOCKERD=//p')
  eval "$(DOCKERD=$D26 "$PEERS" start-dockerd "$DK26")"
  docker version --format 'dockerd {{.Server.Version}}' >&2
  docker load -q -i "$M" >&2
  measure d26_docker_save - docker save -o "$M26" "${NAMES[@]}"
  M26_BYTES=$(size "$M26")
  D26_VERSION=$(docker version --format '{{.Server.Version}}')
  "$PEERS" stop-dockerd "$DK26" >&2
  unset DOCKER_HOST CONTAINERD_ADDRESS
  [ "$KEEP" = 1 ] || rm -rf "$DK26/root"
fi

O=$WORK/out
cd "$O"
"$AIRLOCK" keygen --no-password -o ops >/dev/null 2>&1

say "skopeo copy (one image per copy), airlock create (gzip), airlock create --compression zstd:" \
  "$RUNS interleaved rounds"
warm "$M"
SK=()
for ((k = 1; k <= IMAGES; k++)); do
  n=${NAMES[k - 1]}
  job "skopeo_$k" "$O/s-$k.tar" skopeo copy --quiet "docker-archive:$M:$n" "oci-archive:$O/s-$k.tar:$n"
  SK+=("skopeo_$k")
done
job create_gzip "$O/a.tar" "$AIRLOCK" create -k ops.key -o "$O/a.tar" "docker-archive:$M"
job create_zstd "$O/z.tar" "$AIRLOCK" create -k ops.key -o "$O/z.tar" --compression zstd "docker-archive:$M"
CREATES=(create_gzip create_zstd)
if [ "$DOCKER26" = 1 ]; then
  warm "$M26"
  job create_d26 "$O/d26.tar" "$AIRLOCK" create -k ops.key -o "$O/d26.tar" "docker-archive:$M26"
  CREATES+=(create_d26)
fi
run_jobs "${SK[@]}" "${CREATES[@]}"
SK_WALL=0 SK_CPU=0 SK_OTHER=0 SK_RSS=0 SK_BYTES=0
for n in "${SK[@]}"; do
  SK_WALL=$(add "$SK_WALL" "${WALL[$n]}")
  SK_CPU=$(add "$SK_CPU" "${CPU[$n]}")
  SK_OTHER=$(add "$SK_OTHER" "${OTHER[$n]}")
  if [ "${RSS[$n]}" -gt "$SK_RSS" ]; then SK_RSS=${RSS[$n]}; fi
  SK_BYTES=$((SK_BYTES + $(size "${JOB_OUT[$n]}")))
  rm -f "${JOB_OUT[$n]}"
done
A_BYTES=$(size "$O/a.tar")
Z_BYTES=$(size "$O/z.tar")
rm -f "$O/z.tar"
if [ "$DOCKER26" = 1 ]; then
  D26_BYTES=$(size "$O/d26.tar")
  rm -f "$O/d26.tar"
  [ "$KEEP" = 1 ] || rm -f "$M26"
fi

say "airlock verify (page cache warm: one untimed run first; best of $RUNS)"
warm "$O/a.tar"
"$AIRLOCK" verify -p ops.pub "$O/a.tar" >/dev/null
job verify - "$AIRLOCK" verify -p ops.pub "$O/a.tar"
run_jobs verify
rm -f "$O/a.tar"

if [ "$BIG_MB" -gt 0 ]; then
  say "memory check: one image with a single ${BIG_MB} MiB layer (best of $RUNS)"
  warm "$WORK/big.tar"
  job big_create "$O/big.tar" "$AIRLOCK" create -k ops.key -o "$O/big.tar" "docker-archive:$WORK/big.tar"
  job big_create_zstd "$O/big-z.tar" "$AIRLOCK" create -k ops.key -o "$O/big-z.tar" --compression zstd \
    "docker-archive:$WORK/big.tar"
  run_jobs big_create big_create_zstd
  B_BYTES=$(size "$O/big.tar")
  BZ_BYTES=$(size "$O/big-z.tar")
  rm -f "$O/big-z.tar"
  warm "$O/big.tar"
  "$AIRLOCK" verify -p ops.pub "$O/big.tar" >/dev/null
  job big_verify - "$AIRLOCK" verify -p ops.pub "$O/big.tar"
  run_jobs big_verify
  rm -f "$O/big.tar"
fi

# ---------------------------------------------------------------------------------------------
# Registry rows: CNCF distribution on 127.0.0.1 (plain HTTP), one process per registry, each in
# its own directory under $WORK/reg (the cleanup trap stops every one that is still running).
if [ "$REGISTRY" = 1 ]; then
  drop_cache() { rm -rf "$O/cache"; }
  # digests HOST:PORT/PREFIX: the manifest digest of every image under that prefix.
  digests() {
    local n
    for n in "${NAMES[@]}"; do
      skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$1$n"
    done
  }

  read -r P_SRC P_FULL P_APUSH P_SPUSH <<<"$(free_ports 4)"
  SRC=127.0.0.1:$P_SRC
  say "registry: seed $SRC with the $IMAGES images from the OCI layout (untimed)"
  docker-registry --version >&2
  start_registry "$WORK/reg/src" "$P_SRC"
  RSRC=()
  for ((k = 1; k <= IMAGES; k++)); do
    n=${NAMES[k - 1]}
    skopeo copy --quiet --dest-tls-verify=false "oci:$L:app$k" "docker://$SRC/$n"
    RSRC+=("docker://$SRC/$n")
  done
  rm -rf "$L"

  say "registry: skopeo copy docker:// -> oci:DIR (one image per copy), airlock create from" \
    "the registry, airlock create --cache DIR --jobs 4 (cold): $RUNS interleaved rounds"
  SR=$O/sr # skopeo's OCI layout (made fresh in every run), pushed by skopeo below
  # What users do today: skopeo copy, image by image, into one layout (it skips blobs the layout
  # has, here the shared base). One job (a child bash) runs all the copies, so that each timed
  # run starts from an empty layout; wall and CPU are those of all the copies together.
  # shellcheck disable=SC2016 # the script's own $1, $n
  job skopeo_pull "$SR" bash -c 'src=$1 dir=$2; shift 2; for n; do
      skopeo copy --quiet --src-tls-verify=false "docker://$src/$n" "oci:$dir:$n" || exit; done' _ \
    "$SRC" "$SR" "${NAMES[@]}"
  job reg_create "$O/r.tar" "$AIRLOCK" create -k ops.key -o "$O/r.tar" "${RSRC[@]}"
  job reg_create_cache "$O/rc.tar" "$AIRLOCK" create -k ops.key -o "$O/rc.tar" \
    --cache "$O/cache" --jobs 4 "${RSRC[@]}"
  hooks reg_create_cache drop_cache ""
  run_jobs skopeo_pull reg_create reg_create_cache
  SR_BYTES=$(du -sb "$SR" | cut -f1)
  R_BYTES=$(size "$O/r.tar")
  RC_BYTES=$(size "$O/rc.tar")
  rm -rf "$O/rc.tar" "$O/cache"

  say "registry: airlock push of r.tar and skopeo copy oci:DIR -> docker:// (one image per" \
    "copy), each into a fresh registry per run; airlock push again into a full one:" \
    "$RUNS interleaved rounds"
  FULL=127.0.0.1:$P_FULL
  warm "$O/r.tar" "$SR"/blobs/sha256/*
  start_registry "$WORK/reg/full" "$P_FULL"
  "$AIRLOCK" push -p ops.pub --allow-rollback "$O/r.tar" --to "$FULL/mirror" >"$WORK/logs/push_fill.log" 2>&1 ||
    { tail -n 20 "$WORK/logs/push_fill.log" >&2; die "airlock push into $FULL failed"; }
  # The pushed images must be the registry's own (same manifest digests), or the rows compare
  # different work.
  [ "$(digests "$SRC/")" = "$(digests "$FULL/mirror/")" ] ||
    die "airlock push: manifest digests in $FULL/mirror differ from those in $SRC"
  # Both land at 127.0.0.1:PORT/mirror/bench/appK:1.0.
  job push_cold - "$AIRLOCK" push -p ops.pub --allow-rollback "$O/r.tar" --to "127.0.0.1:$P_APUSH/mirror"
  hooks push_cold "fresh_registry $P_APUSH" drop_registry
  # shellcheck disable=SC2016 # the script's own $1, $n
  job skopeo_push - bash -c 'dir=$1 dst=$2; shift 2; for n; do
      skopeo copy --quiet --dest-tls-verify=false "oci:$dir:$n" "docker://$dst/$n" || exit; done' _ \
    "$SR" "127.0.0.1:$P_SPUSH/mirror" "${NAMES[@]}"
  hooks skopeo_push "fresh_registry $P_SPUSH" drop_registry
  job push_repeat - "$AIRLOCK" push -p ops.pub --allow-rollback "$O/r.tar" --to "$FULL/mirror"
  run_jobs skopeo_push push_cold push_repeat
  # What the fastest repeat push said it uploaded ("...: uploaded 0 B in all").
  REPEAT_UP=$(sed -n 's/^.*: uploaded \(.*\) in all$/\1/p' "$WORK/logs/${JOB_BEST[push_repeat]}.log")
  REG_VERSION=$(docker-registry --version | awk '{ print $NF }')
  "$PEERS" stop-registry "$WORK/reg/full" >&2
  "$PEERS" stop-registry "$WORK/reg/src" >&2
  rm -rf "$O/r.tar" "$SR" "$WORK/reg"
fi

# ---------------------------------------------------------------------------------------------
# others WALL OTHER: mean number of cores that other processes kept busy during the run.
# ("-" for runs under 0.3 s: /proc/stat counts in 10 ms ticks, too coarse to tell).
others() { awk -v w="$1" -v o="$2" 'BEGIN { if (w < 0.3) print "-"; else printf "%.2f", o / w }'; }
BUSY_MAX=0
note_busy() { # CORES OTHER-CPU-S: keeps the highest "others" figure of a run long enough to tell
  if awk -v a="$1" -v o="$2" -v b="$BUSY_MAX" 'BEGIN { exit !(a != "-" && o >= 0.1 && a > b) }'; then BUSY_MAX=$1; fi
}

CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
grep -qw sha_ni /proc/cpuinfo && SHANI=yes || SHANI=no
M_BYTES=$(size "$M")
R_GZ=$(ratio "${WALL[create_gzip]}" "$SK_WALL")
R_ZS=$(ratio "${WALL[create_zstd]}" "$SK_WALL")
V_MBPS=$(mbps "$A_BYTES" "${WALL[verify]}")
V_CORE=$(mbps "$A_BYTES" "${CPU[verify]}")
r() { # ROW-LABEL NAME OUTPUT-BYTES NOTE
  local out="" busy
  [ -z "$3" ] || out=$(mib "$3")
  busy=$(others "${WALL[$2]}" "${OTHER[$2]}")
  [[ $2 == *docker_save ]] || note_busy "$busy" "${OTHER[$2]}"
  row "$1" "${WALL[$2]}" "${CPU[$2]}" "$(kib2mib "${RSS[$2]}")" "$out" "$busy" "$4"
}

row() { printf '%-50s %8s %8s %9s %9s %7s  %s\n' "$@"; }
line() { printf '%.0s-' {1..130}; echo; }
{
  echo
  echo "airlock benchmark ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
  echo "machine: nproc=$(nproc), CPU: ${CPU_MODEL:-unknown}, sha_ni: $SHANI, memory: $(free -g | awk '/^Mem:/ { print $2 }') GiB"
  echo "airlock: $REV; $(skopeo --version); $(dockerd --version | cut -d, -f1)"
  echo "input: $IMAGES images, shared base ${BASE_MB} MiB + ${APP_MB} MiB own layer each;" \
    "multi-image docker save $(mib "$M_BYTES") MiB (legacy layout, uncompressed layers)"
  [ "$DOCKER26" = 0 ] || echo "Docker 25+ save: the same images loaded into dockerd $D26_VERSION (graphdriver store, vfs)" \
    "and saved: $(mib "$M26_BYTES") MiB (OCI layout + manifest.json, uncompressed layers)"
  echo "each timed command: fastest of $RUNS+ runs (skopeo and create interleaved), peak RSS the highest of all runs; inputs in page cache"
  echo
  line
  row "step" "wall s" "CPU s" "peak RSS" "output" "others" "ratio vs skopeo / target"
  row "" "" "" "MiB" "MiB" "cores" ""
  line
  r "docker save, $IMAGES images (reference; client only)" docker_save "$M_BYTES" ""
  SK_BUSY=$(others "$SK_WALL" "$SK_OTHER")
  note_busy "$SK_BUSY" "$SK_OTHER"
  row "skopeo copy -> oci-archive, x$IMAGES (sum; max RSS)" "$(printf %.3f "$SK_WALL")" "$SK_CPU" \
    "$(kib2mib "$SK_RSS")" "$(mib "$SK_BYTES")" "$SK_BUSY" "1.00"
  r "airlock create (gzip)" create_gzip "$A_BYTES" \
    "time $R_GZ (CPU $(ratio "${CPU[create_gzip]}" "$SK_CPU")), size $(ratio "$A_BYTES" "$SK_BYTES"); time <= 0.50: $(check "$R_GZ" "<=" 0.5)"
  r "airlock create --compression zstd" create_zstd "$Z_BYTES" \
    "time $R_ZS (CPU $(ratio "${CPU[create_zstd]}" "$SK_CPU")), size $(ratio "$Z_BYTES" "$SK_BYTES")"
  if [ "$DOCKER26" = 1 ]; then
    R_26=$(ratio "${WALL[create_d26]}" "$SK_WALL")
    r "docker save, $IMAGES images, dockerd $D26_VERSION (ref.)" d26_docker_save "$M26_BYTES" ""
    r "airlock create (gzip) from that Docker 25+ save" create_d26 "$D26_BYTES" \
      "time $R_26 (CPU $(ratio "${CPU[create_d26]}" "$SK_CPU")); size vs. from the legacy save $(ratio "$D26_BYTES" "$A_BYTES"): $(check "$(ratio "$D26_BYTES" "$A_BYTES")" "<=" 1.01)"
  fi
  r "airlock verify (gzip bundle, page cache warm)" verify "" \
    "$V_MBPS MB/s wall, $V_CORE MB/s per CPU-s; >= 1200 per core: $(check "$V_CORE" ">=" 1200)"
  if [ "$BIG_MB" -gt 0 ]; then
    line
    r "docker save, 1 image, 1 layer of ${BIG_MB} MiB (ref.)" big_docker_save "$(size "$WORK/big.tar")" ""
    r "airlock create (gzip), ${BIG_MB} MiB layer" big_create "$B_BYTES" \
      "peak RSS < 64 MiB: $(check "$(kib2mib "${RSS[big_create]}")" "<" 64)"
    r "airlock verify, ${BIG_MB} MiB layer" big_verify "" \
      "$(mbps "$B_BYTES" "${WALL[big_verify]}") MB/s; peak RSS < 64 MiB: $(check "$(kib2mib "${RSS[big_verify]}")" "<" 64)"
    r "airlock create --compression zstd, ${BIG_MB} MiB layer" big_create_zstd "$BZ_BYTES" \
      "peak RSS < 64 MiB: $(check "$(kib2mib "${RSS[big_create_zstd]}")" "<" 64)"
  fi
  if [ "$REGISTRY" = 1 ]; then
    line
    R_CR=$(ratio "${WALL[reg_create]}" "${WALL[skopeo_pull]}")
    R_CC=$(ratio "${WALL[reg_create_cache]}" "${WALL[skopeo_pull]}")
    R_PU=$(ratio "${WALL[push_cold]}" "${WALL[skopeo_push]}")
    reg() { echo "reg. CPU ${SRV[$1]} s"; } # the registry's CPU time during the reported run
    r "skopeo copy docker:// -> oci:DIR, x$IMAGES (one dir)" skopeo_pull "$SR_BYTES" \
      "1.00; $(reg skopeo_pull)"
    r "airlock create from the registry" reg_create "$R_BYTES" \
      "time $R_CR (CPU $(ratio "${CPU[reg_create]}" "${CPU[skopeo_pull]}")), size $(ratio "$R_BYTES" "$SR_BYTES"); time <= 0.50: $(check "$R_CR" "<=" 0.5); $(reg reg_create)"
    r "airlock create --cache DIR --jobs 4 (cold cache)" reg_create_cache "$RC_BYTES" \
      "time $R_CC (CPU $(ratio "${CPU[reg_create_cache]}" "${CPU[skopeo_pull]}")), size $(ratio "$RC_BYTES" "$SR_BYTES"); $(reg reg_create_cache)"
    r "skopeo copy oci:DIR -> fresh registry, x$IMAGES" skopeo_push "" "1.00; $(reg skopeo_push)"
    r "airlock push -> fresh registry (cold)" push_cold "" \
      "time $R_PU (CPU $(ratio "${CPU[push_cold]}" "${CPU[skopeo_push]}")); time <= 0.60: $(check "$R_PU" "<=" 0.6); $(reg push_cold)"
    r "airlock push again (registry has everything)" push_repeat "" \
      "uploaded ${REPEAT_UP:-?}; wall <= 0.20 s: $(check "${WALL[push_repeat]}" "<=" 0.2); $(reg push_repeat)"
  fi
  line
  echo "ratio: time = airlock wall / summed skopeo wall (CPU: the same for user+sys); size = bundle bytes / summed skopeo archive bytes."
  echo "MB/s: 10^6 bundle bytes per second; per CPU-s divides by airlock's user+sys time (verify is one stream)."
  echo "others: mean cores busy with other processes during the reported run (docker save: that is dockerd's work)."
  if [ "$REGISTRY" = 1 ]; then
    echo "registry rows: docker-registry $REG_VERSION on 127.0.0.1, plain HTTP; source: $IMAGES images pushed there from the umoci layout (gzip layers)."
    echo "  skopeo pull: all copies into one fresh OCI layout (size: its du -sb); create output: the bundle. Push: r.tar (the bundle from the registry)"
    echo "  vs. that layout, each into a new empty registry per run. reg. CPU: the registries' CPU time in that run (not in CPU s or others)."
  fi
  if awk -v b="$BUSY_MAX" 'BEGIN { exit !(b > 0.2) }'; then
    echo "WARNING: other processes kept up to $BUSY_MAX cores busy during a timed run; times are pessimistic."
  fi
}

# verify against the machine's own sha256 speed, measured in this run (runs alone as
# bench/verify-speed.sh, without root or docker).
say "verify against openssl speed -evp sha256 (bench/verify-speed.sh)"
BENCH_AIRLOCK=$AIRLOCK BENCH_RUNS=$RUNS "$ROOT/bench/verify-speed.sh"
if [ "$WAN" = 1 ]; then
  say "WAN rows (bench/wan.sh)"
  BENCH_AIRLOCK=$AIRLOCK "$ROOT/bench/wan.sh"
fi
# a delta bundle against the full one for a one-image change (runs alone as bench/delta.sh).
if [ "$DELTA" = 1 ]; then
  say "delta rows (bench/delta.sh)"
  BENCH_AIRLOCK=$AIRLOCK BENCH_RUNS=$RUNS "$ROOT/bench/delta.sh"
fi
# split bundles and parity: encoding speed per core, create split and with parity against one file
# and against sha256 in the same run (runs alone as bench/volumes.sh).
if [ "$VOLUMES" = 1 ]; then
  say "volume rows (bench/volumes.sh)"
  BENCH_AIRLOCK=$AIRLOCK BENCH_RUNS=$RUNS "$ROOT/bench/volumes.sh"
fi
# airlock serve: start, full-blob GET against sha256, 50 clients' RSS, TTFB, plain and over TLS
# (runs alone as bench/serve.sh).
if [ "$SERVE" = 1 ]; then
  say "serve rows (bench/serve.sh)"
  BENCH_AIRLOCK=$AIRLOCK BENCH_RUNS=$RUNS "$ROOT/bench/serve.sh"
fi
