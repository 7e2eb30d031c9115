#!/usr/bin/env bash
# The whole test suite: installs the real peers (docker, podman, containerd, skopeo, umoci,
# minisign, the distribution registry, Debian 13's dockerd 26; cosign, oras, crane and the OCI
# conformance suite built from the Go module proxy), starts a private dockerd 20.10 on
# a unix socket, runs every unit and integration test against them, and stops what it started.
#
#   scripts/test.sh            # extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/peers.sh install >&2

work=$(mktemp -d /tmp/airlock-test.XXXXXX)
cleanup() {
  scripts/peers.sh stop-dockerd "$work/dk" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

mkdir -p "$work/dk"
eval "$(scripts/peers.sh start-dockerd "$work/dk")"
export AIRLOCK_TEST_DOCKER_HOST="$DOCKER_HOST" AIRLOCK_TEST_CONTAINERD="$CONTAINERD_ADDRESS"
# Docker 26 (Debian 13's docker.io, unpacked beside the system's 20.10): tests of today's
# `docker save` start their own dockerd from it, with the graphdriver or the containerd store.
AIRLOCK_TEST_DOCKERD26=$(scripts/peers.sh install-modern-dockerd | sed -n 's/^export DOCKERD=//p')
export AIRLOCK_TEST_DOCKERD26
# cosign, oras, crane and the distribution-spec conformance suite, built from the Go module proxy
# (pinned; cached under /var/cache/airlock-peers/go, so a second run builds nothing).
eval "$(scripts/peers.sh install-go-peers)"
# Every peer is here: a test that would skip for want of one fails instead.
export AIRLOCK_TEST_REQUIRE_PEERS=1
unset DOCKER_HOST CONTAINERD_ADDRESS

cargo test --locked "$@"
