#!/usr/bin/env bash
# Installs what a fresh machine lacks, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --workspace "$@"
