#!/usr/bin/env bash
# peers.sh - real peer programs for airlock's integration tests and fixtures.
#
# Everything here runs locally and listens on loopback / unix sockets only.
#
#   peers.sh install
#       apt-get installs docker.io docker-registry skopeo podman umoci minisign
#       busybox-static python3 apache2-utils openssl curl, only when one is
#       missing (a second run does nothing and is fast).
#
#   peers.sh install-modern-dockerd [DEST]
#       Debian 12 ships dockerd 20.10, whose `docker save` writes the legacy
#       layout. Docker >= 25 writes the OCI layout + manifest.json. This fetches
#       Debian 13's docker.io package (dockerd 26.1) with apt-get download into
#       a private apt state under DEST (default /var/cache/airlock-peers/docker-trixie),
#       unpacks it there (nothing is installed system-wide; it runs fine on
#       Debian 12 with Debian 12's containerd/runc) and prints
#           export DOCKERD=DEST/usr/sbin/dockerd
#       If the system dockerd is already >= 25 it prints that one instead.
#
#   peers.sh install-go-peers [DEST]
#       Builds with `go install` from the Go module proxy the peers Debian
#       lacks, pinned (the README lists the same versions):
#           cosign  github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5
#           oras    oras.land/oras/cmd/oras@v1.3.6
#           crane   github.com/google/go-containerregistry/cmd/crane@v0.22.1
#           distribution-conformance.test  `go test -c` of
#                   github.com/opencontainers/distribution-spec/conformance@v0.0.0-20260831232431-97274622c111
#           rsparts  scripts/rsparts (go.mod pins github.com/klauspost/reedsolomon v1.14.2):
#                   rebuilds split-bundle parts from docs/bundle-format.md alone, for the
#                   cross-implementation parity tests; stamped with a hash of its source
#       into DEST/bin (default /var/cache/airlock-peers/go/bin), each only when
#       DEST/bin/TOOL.version does not already name the pinned version (a
#       second run does nothing). Prints
#           export PATH=DEST/bin:$PATH
#
#   peers.sh start-dockerd DIR [--containerd-store]
#       Starts a private Docker Engine (binary: $DOCKERD, default `dockerd`):
#           dockerd --data-root DIR/root --exec-root DIR/exec
#                   -H unix://DIR/docker.sock --pidfile DIR/pid
#                   --iptables=false --ip6tables=false --bridge=none
#                   --config-file DIR/daemon.json --storage-driver=vfs
#       --containerd-store (dockerd >= 24): the containerd image store, as
#       fresh Docker 29 installs have it: DIR/daemon.json is
#           {"features":{"containerd-snapshotter":true}}
#       and the storage driver is containerd's `native` snapshotter (plain
#       copies, like vfs; needs no overlay mounts). Images then live in
#       containerd's `moby` namespace (`ctr -n moby images ls`).
#       logging to DIR/dockerd.log, waits (<= 60 s) until `docker version`
#       answers, and prints
#           export DOCKER_HOST=unix://DIR/docker.sock
#           export CONTAINERD_ADDRESS=DIR/exec/containerd/containerd.sock
#       dockerd starts its own containerd: its socket is
#       DIR/exec/containerd/containerd.sock (pid in DIR/exec/containerd/containerd.pid,
#       config DIR/exec/containerd/containerd.toml, content store under
#       DIR/root/containerd/daemon). Use it as
#           ctr -a DIR/exec/containerd/containerd.sock -n NAMESPACE images ls
#       (dockerd 20.10 and 26.1 with the default graphdriver store keep their
#       images in DIR/root, not in containerd: containerd's namespaces start
#       empty). Keep DIR short: unix socket paths are limited to ~100 bytes.
#       Usage: eval "$(scripts/peers.sh start-dockerd /tmp/dk)"
#
#   peers.sh stop-dockerd DIR
#       SIGTERM to the pid in DIR/pid, waits until dockerd and its containerd
#       are gone (SIGKILL after 30 s), unmounts anything left under DIR.
#
#   peers.sh start-registry DIR PORT [--htpasswd USER:PASS] [--tls]
#       CNCF distribution (`docker-registry serve DIR/config.yml`) on
#       127.0.0.1:PORT, storage in DIR/data, log in DIR/registry.log, pid in
#       DIR/pid. --htpasswd: bcrypt htpasswd file DIR/htpasswd (htpasswd -B).
#       --tls: self-signed CA DIR/ca.crt (key DIR/ca.key), server cert
#       DIR/server.crt (SANs IP:127.0.0.1, DNS:localhost). Waits until /v2/
#       answers (200, or 401 with auth), then prints
#           export REGISTRY=127.0.0.1:PORT
#           export REGISTRY_URL=http[s]://127.0.0.1:PORT
#           export REGISTRY_CA=DIR/ca.crt          (only with --tls)
#           export REGISTRY_USER=USER REGISTRY_PASS=PASS   (only with --htpasswd)
#
#   peers.sh stop-registry DIR
#       Stops the registry whose pid is in DIR/pid.
set -euo pipefail

die() { echo "peers.sh: $*" >&2; exit 1; }
log() { echo "peers.sh: $*" >&2; }

abspath() { mkdir -p "$1" && (cd "$1" && pwd -P); }

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# wait_gone PID SECONDS: wait until PID exits; SIGKILL it after SECONDS.
wait_gone() {
  local pid=$1 secs=$2 i
  for ((i = 0; i < secs * 10; i++)); do
    alive "$pid" || return 0
    sleep 0.1
  done
  log "pid $pid still alive after ${secs}s, sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    alive "$pid" || return 0
    sleep 0.1
  done
  return 1
}

cmd_install() {
  local missing=() c
  for c in dockerd:docker.io docker-registry:docker-registry skopeo:skopeo \
    podman:podman umoci:umoci minisign:minisign python3:python3 \
    htpasswd:apache2-utils openssl:openssl curl:curl ctr:containerd mkfs.vfat:dosfstools; do
    command -v "${c%%:*}" >/dev/null 2>&1 || missing+=("${c#*:}")
  done
  # /bin/busybox must be the static build (it is copied into image rootfs).
  dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q '^install ok installed' ||
    missing+=(busybox-static)
  if [ ${#missing[@]} -eq 0 ]; then
    log "all peer tools present"
    return 0
  fi
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y docker.io docker-registry skopeo podman umoci minisign \
    busybox-static python3 apache2-utils openssl curl dosfstools
}

dockerd_major() { "$1" --version 2>/dev/null | sed -n 's/^Docker version \([0-9]*\)\..*/\1/p'; }

cmd_install_modern_dockerd() {
  local dest=${1:-/var/cache/airlock-peers/docker-trixie} sys
  sys=$(command -v dockerd || true)
  if [ -n "$sys" ] && [ "$(dockerd_major "$sys")" -ge 25 ] 2>/dev/null; then
    echo "export DOCKERD=$sys"
    return 0
  fi
  if [ -x "$dest/usr/sbin/dockerd" ] && [ "$(dockerd_major "$dest/usr/sbin/dockerd")" -ge 25 ] 2>/dev/null; then
    echo "export DOCKERD=$dest/usr/sbin/dockerd"
    return 0
  fi
  mkdir -p "$dest/apt/lists/partial" "$dest/apt/cache/archives/partial" "$dest/debs"
  dest=$(cd "$dest" && pwd -P)
  # Reuse the system's Debian mirror(s): take the apt sources that serve
  # bookworm and point them at trixie, in a private apt state (the system's
  # apt configuration and package lists are left untouched).
  : >"$dest/apt/trixie.list"
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # deb822 stanzas: keep the URIs of stanzas whose Suites has plain "bookworm".
    awk 'function flush() { if (ok) for (i = 1; i <= n; i++) print "deb " u[i] " trixie main"; ok = 0; n = 0 }
         /^[[:space:]]*$/ { flush(); next }
         /^URIs:/ { for (i = 2; i <= NF; i++) u[++n] = $i }
         /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm") ok = 1 }
         END { flush() }' "$f" >>"$dest/apt/trixie.list"
  done
  if [ -f /etc/apt/sources.list ]; then
    awk '$1 == "deb" && $0 ~ / bookworm / && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print "deb " $i " trixie main"; break } }' \
      /etc/apt/sources.list >>"$dest/apt/trixie.list"
  fi
  sort -u -o "$dest/apt/trixie.list" "$dest/apt/trixie.list"
  [ -s "$dest/apt/trixie.list" ] || die "no Debian bookworm apt source found to derive a trixie source from"
  local apto=(-o "Dir::Etc::sourcelist=$dest/apt/trixie.list" -o "Dir::Etc::sourceparts=-"
    -o "Dir::State::Lists=$dest/apt/lists" -o "Dir::Cache=$dest/apt/cache"
    -o "APT::Sandbox::User=root")
  log "fetching Debian 13 docker.io (dockerd 26) into $dest"
  apt-get "${apto[@]}" update >&2
  (cd "$dest/debs" && apt-get "${apto[@]}" download docker.io >&2)
  local deb
  for deb in "$dest"/debs/docker.io_*.deb; do dpkg-deb -x "$deb" "$dest"; done
  rm -rf "$dest/apt" "$dest/debs"
  [ "$(dockerd_major "$dest/usr/sbin/dockerd")" -ge 25 ] 2>/dev/null ||
    die "$dest/usr/sbin/dockerd does not run or is older than 25"
  echo "export DOCKERD=$dest/usr/sbin/dockerd"
}

# tool module@version; the README's peer table lists the same pins.
GO_PEERS=(
  "cosign github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5"
  "oras oras.land/oras/cmd/oras@v1.3.6"
  "crane github.com/google/go-containerregistry/cmd/crane@v0.22.1"
  "distribution-conformance.test github.com/opencontainers/distribution-spec/conformance@v0.0.0-20260831232431-97274622c111"
)
# The repository's own Go peer: its stamp changes whenever its source or pins do.
RSPARTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/rsparts" && pwd -P)
GO_PEERS+=("rsparts scripts/rsparts@$(cat "$RSPARTS_DIR"/go.mod "$RSPARTS_DIR"/go.sum "$RSPARTS_DIR"/main.go | sha256sum | cut -c1-16)")

cmd_install_go_peers() {
  local dest=${1:-/var/cache/airlock-peers/go} entry tool spec
  # Go's own installer puts it in /usr/local/go, which a non-login shell may not have on PATH.
  command -v go >/dev/null 2>&1 || PATH=$PATH:/usr/local/go/bin
  command -v go >/dev/null 2>&1 || die "go is needed to build cosign, oras, crane, the conformance suite and rsparts"
  mkdir -p "$dest/bin" "$dest/gopath"
  dest=$(cd "$dest" && pwd -P)
  for entry in "${GO_PEERS[@]}"; do
    tool=${entry%% *}
    spec=${entry#* }
    if [ -x "$dest/bin/$tool" ] && [ "$(cat "$dest/bin/$tool.version" 2>/dev/null)" = "$spec" ]; then
      continue
    fi
    log "building $tool ($spec)"
    if [ "$tool" = distribution-conformance.test ]; then
      # A test binary: `go test -c` inside a throwaway module that requires the suite.
      local mod
      mod=$(mktemp -d)
      (cd "$mod" && GOPATH="$dest/gopath" go mod init airlock-peers/conformance >/dev/null 2>&1 &&
        GOPATH="$dest/gopath" GOFLAGS=-mod=mod go get "$spec" >/dev/null 2>&1 &&
        GOPATH="$dest/gopath" GOFLAGS=-mod=mod go test -c -o "$dest/bin/$tool" "${spec%@*}") ||
        { rm -rf "$mod"; die "could not build $tool from $spec"; }
      rm -rf "$mod"
    elif [ "$tool" = rsparts ]; then
      (cd "$RSPARTS_DIR" && GOPATH="$dest/gopath" GOFLAGS=-mod=readonly go build -o "$dest/bin/$tool" .) ||
        die "could not build $tool from $RSPARTS_DIR"
    else
      GOPATH="$dest/gopath" GOBIN="$dest/bin" go install "$spec" || die "could not build $tool from $spec"
    fi
    echo "$spec" >"$dest/bin/$tool.version"
  done
  echo "export PATH=$dest/bin:\$PATH"
}

cmd_start_dockerd() {
  [ $# -ge 1 ] || die "usage: start-dockerd DIR [--containerd-store]"
  local dir dockerd=${DOCKERD:-dockerd} pid i features='{}' driver=vfs
  dir=$(abspath "$1")
  shift
  while [ $# -gt 0 ]; do
    case $1 in
      --containerd-store) features='{"features":{"containerd-snapshotter":true}}'; driver=native; shift ;;
      *) die "unknown option: $1" ;;
    esac
  done
  local sock="$dir/docker.sock" csock="$dir/exec/containerd/containerd.sock"
  [ ${#csock} -le 100 ] || die "DIR too long for unix sockets: $csock (${#csock} > 100 bytes)"
  command -v "$dockerd" >/dev/null 2>&1 || die "dockerd not found ($dockerd); run: $0 install"
  if [ -f "$dir/pid" ] && alive "$(cat "$dir/pid")"; then
    die "a dockerd is already running for $dir (pid $(cat "$dir/pid"))"
  fi
  mkdir -p "$dir/root" "$dir/exec"
  # Its own daemon.json, so a system /etc/docker/daemon.json never applies.
  echo "$features" >"$dir/daemon.json"
  # setsid: own session, so it survives the caller and ignores its ^C;
  # all fds redirected so $(...) around this command returns.
  setsid "$dockerd" \
    --data-root "$dir/root" --exec-root "$dir/exec" \
    -H "unix://$sock" --pidfile "$dir/pid" \
    --iptables=false --ip6tables=false --bridge=none \
    --config-file "$dir/daemon.json" --storage-driver="$driver" \
    </dev/null >"$dir/dockerd.log" 2>&1 &
  pid=$!
  for ((i = 0; i < 600; i++)); do
    if DOCKER_HOST="unix://$sock" docker version >/dev/null 2>&1; then
      echo "export DOCKER_HOST=unix://$sock"
      echo "export CONTAINERD_ADDRESS=$csock"
      return 0
    fi
    if ! alive "$pid"; then
      tail -n 30 "$dir/dockerd.log" >&2 || true
      die "dockerd exited during startup (log: $dir/dockerd.log)"
    fi
    sleep 0.1
  done
  tail -n 30 "$dir/dockerd.log" >&2 || true
  kill "$pid" 2>/dev/null || true
  die "dockerd did not answer within 60s (log: $dir/dockerd.log)"
}

cmd_stop_dockerd() {
  [ $# -eq 1 ] || die "usage: stop-dockerd DIR"
  local dir pid cpid=""
  [ -d "$1" ] || die "no such dir: $1"
  dir=$(cd "$1" && pwd -P)
  [ -f "$dir/exec/containerd/containerd.pid" ] && cpid=$(cat "$dir/exec/containerd/containerd.pid" 2>/dev/null || true)
  if [ -f "$dir/pid" ]; then
    pid=$(cat "$dir/pid")
    if alive "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      wait_gone "$pid" 30 || log "dockerd $pid would not die"
    fi
  fi
  # dockerd stops the containerd it started; make sure.
  if alive "$cpid" && tr '\0' ' ' <"/proc/$cpid/cmdline" 2>/dev/null | grep -q -- "$dir/"; then
    kill -TERM "$cpid" 2>/dev/null || true
    wait_gone "$cpid" 15 || log "containerd $cpid would not die"
  fi
  # Leftover mounts (e.g. the private bind mount of DIR/root, netns files).
  awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
  rm -f "$dir/pid"
}

cmd_start_registry() {
  [ $# -ge 2 ] || die "usage: start-registry DIR PORT [--htpasswd USER:PASS] [--tls]"
  local dir port=$2 auth="" tls=0 scheme=http
  dir=$(abspath "$1")
  shift 2
  while [ $# -gt 0 ]; do
    case $1 in
      --htpasswd) [ $# -ge 2 ] || die "--htpasswd needs USER:PASS"; auth=$2; shift 2 ;;
      --htpasswd=*) auth=${1#--htpasswd=}; shift ;;
      --tls) tls=1; shift ;;
      *) die "unknown option: $1" ;;
    esac
  done
  [[ $port =~ ^[0-9]+$ ]] || die "bad port: $port"
  [ -z "$auth" ] || [[ $auth == *:* ]] || die "--htpasswd wants USER:PASS"
  command -v docker-registry >/dev/null || die "docker-registry not found; run: $0 install"
  if [ -f "$dir/pid" ] && alive "$(cat "$dir/pid")"; then
    die "a registry is already running for $dir (pid $(cat "$dir/pid"))"
  fi
  if curl -s -k -o /dev/null --max-time 2 "http://127.0.0.1:$port/" ||
    curl -s -k -o /dev/null --max-time 2 "https://127.0.0.1:$port/"; then
    die "something already listens on 127.0.0.1:$port"
  fi
  mkdir -p "$dir/data"

  if [ $tls = 1 ]; then
    scheme=https
    command -v openssl >/dev/null || die "openssl not found"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
      -keyout "$dir/ca.key" -out "$dir/ca.crt" \
      -subj "/CN=airlock test CA" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -sha256 \
      -keyout "$dir/server.key" -out "$dir/server.csr" \
      -subj "/CN=127.0.0.1" 2>/dev/null
    printf '%s\n' \
      "basicConstraints=CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth" \
      "subjectAltName=IP:127.0.0.1,DNS:localhost" >"$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
      -CAcreateserial -days 3650 -sha256 -extfile "$dir/server.ext" \
      -out "$dir/server.crt" 2>/dev/null
  fi
  if [ -n "$auth" ]; then
    command -v htpasswd >/dev/null || die "htpasswd not found (apache2-utils); run: $0 install"
    htpasswd -B -b -c "$dir/htpasswd" "${auth%%:*}" "${auth#*:}" 2>/dev/null
  fi

  {
    echo "version: 0.1"
    echo "log:"
    echo "  level: info"
    echo "storage:"
    echo "  filesystem:"
    echo "    rootdirectory: $dir/data"
    echo "  delete:"
    echo "    enabled: true"
    echo "http:"
    echo "  addr: 127.0.0.1:$port"
    echo "  secret: $(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
    if [ $tls = 1 ]; then
      echo "  tls:"
      echo "    certificate: $dir/server.crt"
      echo "    key: $dir/server.key"
    fi
    if [ -n "$auth" ]; then
      echo "auth:"
      echo "  htpasswd:"
      echo "    realm: airlock-test"
      echo "    path: $dir/htpasswd"
    fi
  } >"$dir/config.yml"

  setsid docker-registry serve "$dir/config.yml" </dev/null >"$dir/registry.log" 2>&1 &
  local pid=$! i code
  echo "$pid" >"$dir/pid"
  local curlopts=(-s -o /dev/null -w '%{http_code}' --max-time 2)
  [ $tls = 1 ] && curlopts+=(--cacert "$dir/ca.crt")
  for ((i = 0; i < 300; i++)); do
    code=$(curl "${curlopts[@]}" "$scheme://127.0.0.1:$port/v2/" || true)
    # Whoever answers must be this registry: it says so once it holds the port, while another
    # server that took the port first (tests pick free ports in parallel) may answer too.
    if { [ "$code" = 200 ] || [ "$code" = 401 ]; } &&
      grep -q "listening on 127.0.0.1:$port" "$dir/registry.log"; then
      echo "export REGISTRY=127.0.0.1:$port"
      echo "export REGISTRY_URL=$scheme://127.0.0.1:$port"
      [ $tls = 1 ] && echo "export REGISTRY_CA=$dir/ca.crt"
      [ -n "$auth" ] && echo "export REGISTRY_USER=${auth%%:*} REGISTRY_PASS=${auth#*:}"
      return 0
    fi
    if ! alive "$pid"; then
      tail -n 20 "$dir/registry.log" >&2 || true
      die "registry exited during startup (log: $dir/registry.log)"
    fi
    sleep 0.1
  done
  kill "$pid" 2>/dev/null || true
  tail -n 20 "$dir/registry.log" >&2 || true
  die "registry did not answer on 127.0.0.1:$port within 30s"
}

cmd_stop_registry() {
  [ $# -eq 1 ] || die "usage: stop-registry DIR"
  local pid
  [ -f "$1/pid" ] || { log "no pid file in $1"; return 0; }
  pid=$(cat "$1/pid")
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    wait_gone "$pid" 15 || die "registry $pid would not die"
  fi
  rm -f "$1/pid"
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

main() {
  [ $# -ge 1 ] || { usage >&2; exit 2; }
  local sub=$1
  shift
  case $sub in
    install) cmd_install "$@" ;;
    install-modern-dockerd) cmd_install_modern_dockerd "$@" ;;
    install-go-peers) cmd_install_go_peers "$@" ;;
    start-dockerd) cmd_start_dockerd "$@" ;;
    stop-dockerd) cmd_stop_dockerd "$@" ;;
    start-registry) cmd_start_registry "$@" ;;
    stop-registry) cmd_stop_registry "$@" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
