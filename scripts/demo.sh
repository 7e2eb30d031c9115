#!/usr/bin/env bash
# The main job on a small built-in example: builds airlock, makes a signing key, bundles the
# committed fixture images (a multi-image `docker save`, an OCI layout, an OCI archive and a
# two-platform index) into one signed bundle, lists it and verifies it.
#
#   scripts/demo.sh [OUTDIR]     # default: a new temporary directory, kept for you to look at
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet
airlock="$PWD/target/release/airlock"
fx="$PWD/fixtures"
out=${1:-$(mktemp -d /tmp/airlock-demo.XXXXXX)}
mkdir -p "$out" && cd "$out"

run() { printf '\n$ %s\n' "$*"; "$@"; }
[ -f ops.key ] || run "$airlock" keygen --no-password -o ops
run "$airlock" create -k ops.key -o bundle.tar \
  "docker-archive:$fx/legacy-save.tar" \
  "oci:$fx/oci-layout:registry.example/team/app:1.4" \
  "oci-archive:$fx/tools.oci.tar" \
  "oci-archive:$fx/multiarch.oci.tar"
run "$airlock" inspect bundle.tar
run "$airlock" verify -p ops.pub bundle.tar
printf '\nThe bundle, key pair and nothing else are in %s\n' "$out"
