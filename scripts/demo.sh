#!/usr/bin/env bash
# Installs what a fresh machine lacks, builds duet in release and runs the loopback call demo
# on synthetic media (speech and the stamped test pattern). Extra arguments go to `duet loopback`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release
exec target/release/duet loopback --audio speech --video pattern "$@"
