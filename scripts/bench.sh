#!/usr/bin/env bash
# Runs the checkpoint benchmark (`lazarus checkpoint`/`restore` vs raw `criu dump`/`restore`),
# building the project first (scripts/build.sh; quick when it is up to date). Needs root.
#
#   scripts/bench.sh                 # 64 and 512 MiB, median of 5 runs (a few minutes here)
#   scripts/bench.sh --quick         # one 64 MiB run: a smoke run of a few seconds
#   scripts/bench.sh --json          # the same figures as JSON on stdout
#   scripts/bench.sh --help          # every option (--runs, --sizes, --drop-caches, ...)
#
# BUILD_DIR picks the build directory (default: build). Build output goes to stderr, so
# stdout holds only the figures.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}

die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (CRIU dumps and restores process trees)"
# CRIU cannot dump a process under ASan: the benchmarks exist only in a plain build.
if grep -qs '^LAZARUS_SANITIZE:BOOL=ON' "$build/CMakeCache.txt"; then
  die "$build is a sanitizer build; set BUILD_DIR to a plain build directory"
fi
bash "$root/scripts/build.sh" "$build" -DLAZARUS_BUILD_TESTS=ON >&2
exec "$build/bin/lazarus-bench-checkpoint" "$@"
