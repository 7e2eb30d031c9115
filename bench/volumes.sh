#!/usr/bin/env bash
# bench/volumes.sh - split bundles and parity (`bench/run.sh volumes` runs it alone; a full
# bench/run.sh runs it after its own rows unless BENCH_VOLUMES=0).
#
#   - Reed–Solomon parity encoding speed per CPU-second of one core (bench/parity_speed.rs: the encoder
#     `create --parity` uses, 256 KiB stripes of k=8 data parts, N = 1, 2, 4);
#   - airlock create of one image with a single BENCH_VOLUMES_MB MiB incompressible layer
#     (--compression none), unsplit, then --volume-size 256M, then --volume-size 256M --parity 2:
#     the difference is the read-back pass that hashes the parts and computes parity.
#
# Settings (environment): BENCH_VOLUMES_MB=1024, BENCH_RUNS=3 (fastest run kept), BENCH_KEEP=0,
# BENCH_AIRLOCK (a binary to use instead of building one). Needs nothing but airlock and python3.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
MB=${BENCH_VOLUMES_MB:-1024}
RUNS=${BENCH_RUNS:-3}
KEEP=${BENCH_KEEP:-0}
say() { printf '\n== [%4ds] %s\n' "$SECONDS" "$*" >&2; }

cd "$ROOT"
say "parity encoding, one core"
nice -n 19 cargo run --quiet --release --example parity_speed -- 8 4096
AIRLOCK=${BENCH_AIRLOCK:-}
if [ -z "$AIRLOCK" ]; then
  cargo build --quiet --release
  AIRLOCK=$ROOT/target/release/airlock
fi

WORK=$(mktemp -d /tmp/airlock-bench-volumes.XXXXXX)
[ "$KEEP" = 1 ] || trap 'rm -rf "$WORK"' EXIT
say "a docker save with one ${MB} MiB random layer"
python3 - "$WORK/save.tar" "$MB" <<'PY'
import hashlib, io, json, os, sys, tarfile
out, mb = sys.argv[1], int(sys.argv[2])
layer = out + ".layer"
with tarfile.open(layer, "w", format=tarfile.USTAR_FORMAT) as t:
    info = tarfile.TarInfo("data.bin"); info.size = mb << 20
    class R(io.RawIOBase):
        left = info.size
        def readinto(self, b):
            n = min(len(b), self.left); b[:n] = os.urandom(n); self.left -= n; return n
    t.addfile(info, io.BufferedReader(R(), 1 << 20))
h = hashlib.sha256()
with open(layer, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""): h.update(chunk)
diff = h.hexdigest()
config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff]}}).encode()
cid = hashlib.sha256(config).hexdigest()
manifest = json.dumps([{"Config": cid + ".json", "RepoTags": ["example.com/bench/volumes:1"], "Layers": [diff + "/layer.tar"]}]).encode()
with tarfile.open(out, "w", format=tarfile.USTAR_FORMAT) as t:
    for name, data in ((cid + ".json", config), ("manifest.json", manifest)):
        i = tarfile.TarInfo(name); i.size = len(data); t.addfile(i, io.BytesIO(data))
    t.add(layer, diff + "/layer.tar")
os.remove(layer)
PY
"$AIRLOCK" keygen --no-password -o "$WORK/k" >/dev/null

best() { # LABEL ARGS…: the fastest of RUNS creates, in seconds
  local label=$1 t b=""; shift
  for _ in $(seq "$RUNS"); do
    rm -rf "$WORK/out" && mkdir "$WORK/out"
    t=$( { /usr/bin/env time -f %e "$AIRLOCK" create -k "$WORK/k.key" -o "$WORK/out/b.tar" --compression none \
      "$@" "docker-archive:$WORK/save.tar" >/dev/null; } 2>&1 | tail -1)
    b=$(awk -v a="$t" -v b="$b" 'BEGIN { print (b == "" || a < b) ? a : b }')
  done
  printf '%-48s %7s s  %6.0f MB/s\n' "$label" "$b" "$(awk -v s="$b" -v m="$MB" 'BEGIN { print m * 1.048576 / s }')"
}
say "create, fastest of $RUNS"
best "create (one file)"
best "create --volume-size 256M" --volume-size 256M
best "create --volume-size 256M --parity 2" --volume-size 256M --parity 2
