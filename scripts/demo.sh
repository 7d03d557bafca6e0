#!/usr/bin/env bash
# Installs what a fresh machine lacks, builds duet in release and runs `duet demo`: a signaling
# server, two contacts who chat and share a folder, and a video call between them over WebRTC on
# synthetic media, with its figures. Extra arguments go to `duet demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release
exec target/release/duet demo "$@"
