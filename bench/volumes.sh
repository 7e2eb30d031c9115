#!/usr/bin/env bash
# bench/volumes.sh - split bundles and parity (`bench/run.sh volumes` runs it alone; a full
# bench/run.sh runs it after its own rows unless BENCH_VOLUMES=0).
#
#   - Reed–Solomon parity encoding speed per CPU-second of one core (bench/parity_speed.rs: the
#     kernel `create --parity` folds each data part in with, 256 KiB stripes, k=8, N = 1, 2, 4);
#   - `openssl speed -evp sha256` on one core, in the same run (before and after the creates):
#     every byte of a split bundle is hashed once more for its part's sha256, so sha256 is the
#     ceiling the split rows are compared with;
#   - airlock create of one image with a single BENCH_VOLUMES_MB MiB incompressible layer
#     (--compression none): one file, then --volume-size 256M, then with --parity 1 and 2. The
#     split rows hash the parts and fold parity while the parts are written (no read-back pass):
#     each is printed with its time as a ratio of the one-file create and its rate as a ratio of
#     sha256 on one core.
#
# Timed as bench/run.sh times (bench/lib.sh: the fastest of BENCH_RUNS interleaved rounds, each
# after a wait for a quiet machine, rerun when other processes disturbed it). Settings
# (environment): BENCH_VOLUMES_MB=1024, and from bench/run.sh: BENCH_RUNS=3, BENCH_QUIET_WAIT=180,
# BENCH_KEEP=0, BENCH_AIRLOCK (a binary to use instead of building one). Needs airlock, python3,
# openssl and /usr/bin/time; not root.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
. "$ROOT/bench/lib.sh"
setting MB BENCH_VOLUMES_MB 1024 1+
common_settings
work_dir airlock-bench-volumes

pick_airlock
say "parity encoding, one core"
PARITY=$(cd "$ROOT" && nice -n 19 cargo run --quiet --release --example parity_speed -- 8 4096)

say "a docker save with one ${MB} MiB random layer"
python3 - "$WORK/save.tar" "$MB" <<'PY'
import hashlib, io, json, os, sys, tarfile
out, mb = sys.argv[1], int(sys.argv[2])
layer = out + ".layer"
with tarfile.open(layer, "w", format=tarfile.USTAR_FORMAT) as t:
    info = tarfile.TarInfo("data.bin"); info.size = mb << 20
    class R(io.RawIOBase):
        left = info.size
        def readable(self): return True
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
cd "$WORK/out"
"$AIRLOCK" keygen --no-password -o k >/dev/null 2>&1
warm "$WORK/save.tar"

sha() {
  openssl speed -evp sha256 -bytes 16384 -seconds 3 2>/dev/null |
    awk '/^sha256/ { sub(/k$/, "", $2); printf "%.3f", $2 * 1000 / 1e9 }'
}
CREATE=("$AIRLOCK" create -k k.key --created 2026-01-01T00:00:00Z --compression none)
SRC=docker-archive:$WORK/save.tar
job one - "${CREATE[@]}" -o one/b.tar "$SRC"
job split - "${CREATE[@]}" -o split/b.tar --volume-size 256M "$SRC"
job parity1 - "${CREATE[@]}" -o parity1/b.tar --volume-size 256M --parity 1 "$SRC"
job parity2 - "${CREATE[@]}" -o parity2/b.tar --volume-size 256M --parity 2 "$SRC"
# Each run writes into an empty directory named after its job, gone after the run (disk space).
fresh() { rm -rf "${1%.*}" && mkdir "${1%.*}"; }
gone() { rm -rf "${1%.*}"; }
for n in one split parity1 parity2; do hooks "$n" fresh gone; done
say "create, fastest of $RUNS rounds, against openssl speed -evp sha256"
quiet
SHA0=$(sha)
LOAD0=$(cut -d' ' -f1 /proc/loadavg)
run_jobs one split parity1 parity2
LOAD1=$(cut -d' ' -f1 /proc/loadavg)
SHA1=$(sha)
SHA=$(awk -v a="$SHA0" -v b="$SHA1" 'BEGIN { printf "%.3f", (a > b) ? a : b }')
BYTES=$((MB << 20))

echo
echo "split bundles and parity: one ${MB} MiB layer, --compression none, $REV, best of $RUNS"
echo "$PARITY"
printf '%-44s %8s %8s %10s %14s\n' "create" "wall s" "cpu s" "MB/s" "x one file / x sha256"
for n in one split parity1 parity2; do
  case $n in
    one) label="one file" ;;
    split) label="--volume-size 256M" ;;
    parity1) label="--volume-size 256M --parity 1" ;;
    parity2) label="--volume-size 256M --parity 2" ;;
  esac
  rate=$(mbps "$BYTES" "${WALL[$n]}")
  printf '%-44s %8s %8s %10s %7s / %5s\n' "$label" "${WALL[$n]}" "${CPU[$n]}" "$rate" \
    "$(ratio "${WALL[$n]}" "${WALL[one]}")" "$(awk -v r="$rate" -v s="$SHA" 'BEGIN { printf "%.2f", r / 1000 / s }')"
done
printf '%-44s %s\n' "openssl speed -evp sha256, 16 KiB, one core" "$SHA0 / $SHA1 GB/s (before/after)"
printf '%-44s %s\n' "load average" "$LOAD0 / $LOAD1 (before/after)"
