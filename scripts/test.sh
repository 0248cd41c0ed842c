#!/usr/bin/env bash
# The test command: installs everything (Debian packages, CRIU >= 4.2), builds, and runs
# every test: unit tests under ASan+UBSan, integration tests with real CRIU and real
# processes, and a short run of the benchmark. Run as root on Debian 12.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash scripts/setup.sh

echo "== unit tests (AddressSanitizer + UndefinedBehaviorSanitizer)"
bash scripts/build.sh "$root/build-asan" -DLAZARUS_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -DLAZARUS_BUILD_TESTS=ON
ctest --test-dir "$root/build-asan" -L unit --output-on-failure

echo "== integration tests (real CRIU, real processes)"
bash scripts/build.sh "$root/build" -DLAZARUS_BUILD_TESTS=ON
ctest --test-dir "$root/build" -L integration --output-on-failure --timeout 600

echo "== fuzzing (bounded)"
bash scripts/fuzz.sh "${LAZARUS_FUZZ_SECONDS:-60}"

echo "== benchmark smoke run (figures: scripts/bench.sh)"
"$root/build/bin/lazarus-bench-checkpoint" --quick
