#!/usr/bin/env bash
# Builds the libFuzzer targets with clang into build-fuzz/ and runs each for a bounded time.
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 60)
# Inputs that crash a target are kept in tests/fuzz/corpus/TARGET/ (make them regression
# tests); the corpus a run grows stays in build-fuzz/corpus/. Exit status 1 on any crash.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-60}
build="$root/build-fuzz"
jobs=$(nproc)

cmake -S "$root" -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLAZARUS_FUZZ=ON -DLAZARUS_BUILD_TESTS=OFF \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer" >/dev/null
mapfile -t targets < <(grep -v '^$' "$build/fuzzers.txt")
cmake --build "$build" -j"$jobs" --target "${targets[@]}"

failed=0
for t in "${targets[@]}"; do
  seeds="$root/tests/fuzz/corpus/$t"
  corpus="$build/corpus/$t"
  mkdir -p "$corpus" "$seeds"
  echo "== fuzzing $t for ${seconds}s"
  # Regression inputs first: each must pass on its own.
  if compgen -G "$seeds/*" >/dev/null && ! "$build/bin/$t" -runs=0 "$seeds" >"$build/$t.regress.log" 2>&1; then
    echo "fuzz: $t fails on a regression input (log: $build/$t.regress.log)" >&2
    failed=1
    continue
  fi
  if ! "$build/bin/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="$seeds/" "$corpus" "$seeds" >"$build/$t.log" 2>&1; then
    echo "fuzz: $t crashed; input kept in $seeds/ (log: $build/$t.log)" >&2
    tail -n 30 "$build/$t.log" >&2
    failed=1
  else
    grep -E '^stat::number_of_executed_units|^stat::new_units_added' "$build/$t.log" | sed "s/^/  /"
  fi
done
exit $failed
