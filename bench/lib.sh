# bench/lib.sh - settings and timing helpers shared by the bench scripts (sourced, not run).
# The timing helpers need WORK (with logs/ and, for registries, reg/DIR/pid), RUNS and QUIET_WAIT
# (common_settings sets RUNS, QUIET_WAIT and KEEP). Messages start with NAME (default "bench").
die() { echo "${NAME:-bench}: $*" >&2; exit 1; }
say() { printf '\n== [%4ds] %s\n' "$SECONDS" "$*" >&2; }

# setting VAR ENV DEFAULT KIND: sets VAR to $ENV, or DEFAULT when ENV is unset or empty, after
# checking it: KIND is N+ (a whole number >= N), flag (0 or 1), or a|b|c (one of those words).
setting() {
  local var=$1 env=$2 kind=$4 val=${!2:-$3}
  case $kind in
    flag) [[ $val =~ ^[01]$ ]] || die "$env must be 0 or 1, got '$val'" ;;
    *+) [[ $val =~ ^[0-9]+$ ]] && ((val >= ${kind%+})) || die "$env must be a whole number >= ${kind%+}, got '$val'" ;;
    *) [[ $val =~ ^($kind)$ ]] || die "$env must be one of ${kind//|/, }, got '$val'" ;;
  esac
  printf -v "$var" '%s' "$val"
}
# The settings every bench script takes: BENCH_RUNS, BENCH_QUIET_WAIT, BENCH_KEEP.
common_settings() {
  setting RUNS BENCH_RUNS 3 1+
  setting QUIET_WAIT BENCH_QUIET_WAIT 180 0+
  QUIET_TRIES=$((QUIET_WAIT * 2)) # half-second looks left for quiet
  setting KEEP BENCH_KEEP 0 flag
}
declare -A WALL RSS CPU OTHER SRV
HZ=$(getconf CLK_TCK)
# Busy CPU time of the whole machine in clock ticks (user nice system irq softirq steal), to see
# how much else ran while a tool was timed: this machine may be shared.
busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
# CPU time (user + system, clock ticks) the registries running now have used: those with a pid
# file under $WORK/reg. A registry's work for the tool under test is not "other" load.
srv_ticks() {
  local f pid st t=0 a
  for f in "$WORK"/reg/*/pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    st=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    read -r -a a <<<"${st##*) }" # a[0] is field 3 (state): utime is field 14, stime 15
    t=$((t + a[11] + a[12]))
  done
  echo "$t"
}

# measure NAME OUT CMD...: removes OUT (a file or a directory; unless -), runs CMD once. Records
# wall clock (EPOCHREALTIME), peak RSS (KiB) and user+sys CPU seconds (/usr/bin/time), the CPU
# seconds the running registries used meanwhile (SRV) and those everything else on the machine
# used (OTHER). CMD's output goes to logs/NAME.log.
measure() {
  local name=$1 out=$2 t0 t1 b0 b1 s0 s1 line rss u s
  shift 2
  [ "$out" = - ] || rm -rf "$out"
  s0=$(srv_ticks)
  b0=$(busy)
  t0=$EPOCHREALTIME
  if ! /usr/bin/time -f '%e %M %U %S' -o "$WORK/logs/$name.time" "$@" >"$WORK/logs/$name.log" 2>&1; then
    tail -n 20 "$WORK/logs/$name.log" >&2
    die "$name failed: $*"
  fi
  t1=$EPOCHREALTIME
  b1=$(busy)
  s1=$(srv_ticks)
  line=$(tail -n 1 "$WORK/logs/$name.time")
  read -r _ rss u s <<<"$line"
  RSS[$name]=$rss
  WALL[$name]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  CPU[$name]=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
  SRV[$name]=$(awk -v s=$((s1 - s0)) -v hz="$HZ" 'BEGIN { printf "%.2f", s / hz }')
  OTHER[$name]=$(awk -v b0="$b0" -v b1="$b1" -v hz="$HZ" -v c="${CPU[$name]}" -v r="${SRV[$name]}" \
    'BEGIN { o = (b1 - b0) / hz - c - r; printf "%.2f", (o > 0) ? o : 0 }')
  printf 'bench: %-18s %8.2f s wall %7.2f s cpu %8.1f MiB peak RSS  (others: %.2f s cpu)\n' "$name" \
    "${WALL[$name]}" "${CPU[$name]}" "$(awk -v k="${RSS[$name]}" 'BEGIN { print k / 1024 }')" "${OTHER[$name]}" >&2
}

# quiet: waits until other processes keep less than 0.15 cores busy over half a second, taking
# the time from a budget of BENCH_QUIET_WAIT seconds for the whole run (then it stops waiting).
quiet() {
  local b0 b1 said=0
  while [ "$QUIET_TRIES" -gt 0 ]; do
    b0=$(busy)
    sleep 0.5
    b1=$(busy)
    awk -v d=$((b1 - b0)) -v hz="$HZ" 'BEGIN { exit !(d / hz / 0.5 < 0.15) }' && return 0
    if [ $said = 0 ]; then
      echo "${NAME:-bench}: machine busy, waiting (up to $((QUIET_TRIES / 2)) s of BENCH_QUIET_WAIT left)" >&2
      said=1
    fi
    QUIET_TRIES=$((QUIET_TRIES - 1))
  done
}

# noisy NAME: did other processes keep more than 0.2 cores busy during that run?
noisy() { awk -v w="${WALL[$1]}" -v o="${OTHER[$1]}" 'BEGIN { exit !(o >= 0.1 && o / w > 0.2) }'; }

# Timed commands are "jobs": job NAME OUT CMD... registers one, run_jobs NAME... runs them in
# rounds (each job once per round, interleaved, so that a spell of load from other processes hits
# every tool alike), RUNS rounds, then up to RUNS more rounds for the jobs whose fastest run was
# disturbed. NAME gets the fastest run's wall, CPU, registry and others' CPU, and the highest
# peak RSS. hooks NAME PRE POST adds untimed shell commands run before (ahead of the wait for a
# quiet machine) and after every run of job NAME, with the run's name (NAME.R) as last argument.
declare -A JOB_CMD JOB_OUT JOB_RUNS JOB_BEST JOB_PRE JOB_POST
job() {
  local name=$1 out=$2
  shift 2
  JOB_OUT[$name]=$out JOB_CMD[$name]=$(printf '%q ' "$@") JOB_RUNS[$name]=0 JOB_BEST[$name]=""
  JOB_PRE[$name]="" JOB_POST[$name]=""
}
hooks() { JOB_PRE[$1]=$2 JOB_POST[$1]=$3; }
run_job() {
  local name=$1 r b
  r=$((JOB_RUNS[$name] + 1))
  JOB_RUNS[$name]=$r
  [ -z "${JOB_PRE[$name]}" ] || eval "${JOB_PRE[$name]} $(printf %q "$name.$r")"
  quiet
  eval "measure $(printf %q "$name.$r") $(printf %q "${JOB_OUT[$name]}") ${JOB_CMD[$name]}"
  [ -z "${JOB_POST[$name]}" ] || eval "${JOB_POST[$name]} $(printf %q "$name.$r")"
  b=${JOB_BEST[$name]}
  if [ -z "$b" ] || awk -v a="${WALL[$name.$r]}" -v b="${WALL[$b]}" 'BEGIN { exit !(a < b) }'; then
    JOB_BEST[$name]=$name.$r
  fi
}
run_jobs() {
  local round n r b todo
  for ((round = 1; round <= RUNS; round++)); do
    for n; do run_job "$n"; done
  done
  for ((round = 1; round <= RUNS; round++)); do
    todo=()
    for n; do if noisy "${JOB_BEST[$n]}"; then todo+=("$n"); fi; done
    [ ${#todo[@]} -gt 0 ] || break
    echo "bench: disturbed by other processes, one more run of: ${todo[*]}" >&2
    for n in "${todo[@]}"; do run_job "$n"; done
  done
  for n; do
    b=${JOB_BEST[$n]}
    WALL[$n]=${WALL[$b]} CPU[$n]=${CPU[$b]} OTHER[$n]=${OTHER[$b]} SRV[$n]=${SRV[$b]} RSS[$n]=0
    for ((r = JOB_RUNS[$n]; r >= 1; r--)); do
      if [ "${RSS[$n.$r]}" -gt "${RSS[$n]}" ]; then RSS[$n]=${RSS[$n.$r]}; fi
    done
  done
}
size() { stat -c %s "$1"; }
warm() { cat "$@" >/dev/null; }
add() { awk -v a="$1" -v b="$2" 'BEGIN { print a + b }'; }

# Registries: CNCF distribution on 127.0.0.1 (plain HTTP), one process per registry, each in its
# own directory under $WORK/reg (the caller's exit trap stops every one still running).
# free_ports N: N distinct TCP ports nothing listens on, below Linux's ephemeral port range.
free_ports() {
  local p ports=()
  for p in $(shuf -i 20000-32000 -n 200); do
    [ -z "$(ss -Htln "sport = :$p")" ] || continue
    ports+=("$p")
    [ ${#ports[@]} -lt "$1" ] || break
  done
  [ ${#ports[@]} -eq "$1" ] || die "no $1 free TCP ports found"
  echo "${ports[*]}"
}
start_registry() { "$PEERS" start-registry "$1" "$2" >/dev/null; } # DIR PORT
# Job hooks: a new, empty registry for each run (fresh_registry PORT RUN), gone after it
# (drop_registry RUN). The port is the job's; the directory is the run's.
fresh_registry() { start_registry "$WORK/reg/$2" "$1"; }
drop_registry() {
  "$PEERS" stop-registry "$WORK/reg/$1" >&2
  rm -rf "${WORK:?}/reg/$1"
}

# Table figures.
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
kib2mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f", b / 1e6 / s; else print "n/a" }'; }
check() {
  awk -v v="$1" -v op="$2" -v t="$3" \
    'BEGIN { if (v !~ /^[0-9.]+$/) { print "n/a"; exit } ok = (op == "<=") ? v <= t : (op == ">=") ? v >= t : v < t; print ok ? "PASS" : "MISS" }'
}

# Sets AIRLOCK (an absolute path: the benches cd into their work directory) and REV: the binary
# BENCH_AIRLOCK names, or a release build of the work tree at ROOT.
pick_airlock() {
  if [ -n "${BENCH_AIRLOCK:-}" ]; then
    AIRLOCK=$(cd "$(dirname "$BENCH_AIRLOCK")" && pwd -P)/$(basename "$BENCH_AIRLOCK")
    REV="$AIRLOCK (given)"
  else
    (cd "$ROOT" && cargo build --release >&2)
    AIRLOCK=$ROOT/target/release/airlock
    REV="work tree $(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo unknown)"
  fi
}

# work_dir PREFIX: a scratch directory $WORK (logs/, out/) removed on exit unless KEEP=1, for the
# scripts that time with /usr/bin/time.
work_dir() {
  WORK=$(mktemp -d "/tmp/$1.XXXXXX")
  cleanup() { if [ "$KEEP" = 1 ]; then echo "bench: kept $WORK" >&2; else rm -rf "$WORK"; fi; }
  trap cleanup EXIT
  mkdir -p "$WORK/logs" "$WORK/out"
  [ -x /usr/bin/time ] || die "/usr/bin/time is missing (apt-get install time)"
}

# put_blob DIR FILE: moves FILE into OCI layout DIR's blobs; prints "sha256:<hex> <size>".
put_blob() {
  local d s
  d=$(sha256sum "$2" | cut -d' ' -f1)
  s=$(stat -c %s "$2")
  mv "$2" "$1/blobs/sha256/$d"
  echo "sha256:$d $s"
}
# stream SEED BYTES: incompressible bytes, the same for the same seed (AES-CTR of zeros).
stream() { head -c "$2" < <(openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass "pass:$1" -in /dev/zero 2>/dev/null); }

# random_layout DIR LAYERS MIB: an OCI layout of one image of LAYERS random (incompressible) layers
# of MIB MiB each, tagged `bench`.
random_layout() {
  local dir=$1 layers=$2 mib=$3 i h s descs="" diffs=""
  mkdir -p "$dir/blobs/sha256"
  for ((i = 1; i <= layers; i++)); do
    stream "layer$i" $((mib << 20)) >"$dir/l"
    read -r h s < <(put_blob "$dir" "$dir/l")
    descs+="${descs:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"$h\",\"size\":$s}"
    diffs+="${diffs:+,}\"$h\""
  done
  printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[%s]},"config":{}}' \
    "$diffs" >"$dir/c"
  read -r h s < <(put_blob "$dir" "$dir/c")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[%s]}' \
    "$h" "$s" "$descs" >"$dir/m"
  read -r h s < <(put_blob "$dir" "$dir/m")
  printf '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci-layout"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"bench"}}]}' \
    "$h" "$s" >"$dir/index.json"
}
