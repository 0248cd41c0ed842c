#!/usr/bin/env bash
# Builds Lazarus into build/ (after scripts/setup.sh has installed what it needs).
# Usage: scripts/build.sh [BUILD_DIR [CMAKE ARGS...]]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/build}
shift || true
cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"
