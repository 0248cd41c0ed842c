#!/usr/bin/env bash
# The main job, part 2 (issue 5): exactly-once effects across crashes. Called by demo.sh once
# lazarusd runs on its default socket and `lazarus` is on PATH; the programs are those of
# the build directory (build/bin).
#
# A ledger (build/bin/lz-ledger, not under Lazarus) counts requests by item. Beside it, a
# small worker job runs under Lazarus (`lazarus run --interval 1`: a snapshot every second):
# it reads item ids from a file, posts each to the ledger over one TCP connection, appends
# "<id> <value>" per reply to an output file and keeps a running total in memory. Every
# process of the job is SIGKILLed 5 times at random moments, and `lazarus restore` brings it
# back each time: the restored job re-executes from its snapshot and everything it had done
# since is answered from its effect log. Twice: an unmodified C program (the LD_PRELOAD shim
# records its libc calls) and the same worker written with the explicit C++ API, which sends
# each effect's idempotency key to the ledger (0 duplicates).
#
# Prints a table; exits non-zero when a number is wrong. Cleans up its jobs, ledgers and files.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/build/bin
items=${LAZARUS_DEMO_ITEMS:-400}
kills=${LAZARUS_DEMO_KILLS:-5}
delay_ms=20  # the ledger answers each request after 20 ms: ~8 s of work per job

for p in lz-ledger lzc-ledger-client lz-keyed-client liblazarus-preload.so; do
  [ -e "$bin/$p" ] || { echo "demo: $bin/$p is missing (build with tests: scripts/build.sh)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/lazarus-demo-eo.XXXXXX)
jobs=()
ledgers=()
cleanup() {
  for j in "${jobs[@]}"; do lazarus rm --force "$j" >/dev/null 2>&1 || true; done
  for l in "${ledgers[@]}"; do kill -TERM "$l" 2>/dev/null || true; wait "$l" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

field() {  # field JOB NAME: a string or number field of `lazarus status JOB --json`
  lazarus status "$1" --json 2>/dev/null | sed -n "s/.*\"$2\":\"\{0,1\}\([^\",}]*\).*/\1/p"
}
wait_state() {  # wait_state JOB STATE [TENTHS]
  for _ in $(seq "${3:-200}"); do
    [ "$(field "$1" state)" = "$2" ] && return 0
    sleep 0.1
  done
  echo "demo: job $1 did not become $2 (status: $(lazarus status "$1" --json 2>&1))" >&2
  return 1
}
tree() {  # a process and all its descendants
  echo "$1"
  local c
  # shellcheck disable=SC2013  # the children file is a list of pids
  for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do tree "$c"; done
}
ask() {  # ask PORT REQUEST: the first line of the ledger's answer
  local line
  exec 9<>"/dev/tcp/127.0.0.1/$1"
  printf '%s\n' "$2" >&9
  IFS= read -r line <&9
  exec 9<&-
  echo "$line"
}
stat_of() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

# The items, and what an uncrashed run writes: "<id> <3 id + 1>" per item.
seq 10000 $((10000 + items - 1)) >"$work/items.txt"
awk '{print $1, 3 * $1 + 1}' "$work/items.txt" >"$work/expected.txt"
expected_total=$(awk '{t += 3 * $1 + 1} END {print t}' "$work/items.txt")

fail=0
rows=()
# run_worker LABEL PROGRAM: one job with its own ledger, killed $kills times.
run_worker() {
  local label=$1 program=$2 tag=$3
  local portfile=$work/$tag.port out=$work/$tag-out.txt
  "$bin/lz-ledger" "$portfile" --delay-ms "$delay_ms" >"$work/$tag-ledger.log" 2>&1 &
  ledgers+=($!)
  for _ in $(seq 100); do [ -s "$portfile" ] && break; sleep 0.05; done
  local port
  port=$(cat "$portfile")
  local name=demo-eo-$tag-$$
  LAZARUS_VERBOSE=1 lazarus run --name "$name" --interval 1 -- "$bin/$program" "$port" "$work/items.txt" "$out" >/dev/null
  jobs+=("$name")
  wait_state "$name" running
  echo "== $label: job $name posts $items items to the ledger on 127.0.0.1:$port"
  local k recoveries=0 slot=$(((items * 8 / 10) / kills))
  for k in $(seq 0 $((kills - 1))); do
    # A random moment: when the output reaches a random line of this kill's slot, plus 0-30 ms
    # (about a second apart, so that most restores find a snapshot taken since the last one).
    local at=$((items / 10 + k * slot + RANDOM % (slot / 4 + 1)))
    while [ "$(wc -l 2>/dev/null <"$out" || echo 0)" -lt "$at" ]; do sleep 0.01; done
    while [ "$(field "$name" snapshot_count)" = "" ] || [ "$(field "$name" snapshot_count)" -lt 1 ]; do sleep 0.05; done
    sleep "0.0$((RANDOM % 4))"
    local pid lines
    pid=$(field "$name" pid)
    lines=$(wc -l <"$out")
    # shellcheck disable=SC2046  # one word per pid
    kill -KILL $(tree "$pid") 2>/dev/null || true
    wait_state "$name" crashed
    lazarus restore "$name" >/dev/null
    wait_state "$name" running
    recoveries=$((recoveries + 1))
    echo "   kill $((k + 1)) at output line $lines: SIGKILL, crashed, restored from snapshot $(field "$name" restored_from | cut -d/ -f2) (incarnation $(field "$name" incarnation))"
  done
  wait_state "$name" exited 600
  local exit_status stats replayed total_line
  exit_status=$(field "$name" exit_status)
  stats=$(ask "$port" STATS)
  replayed=$(sed -n 's/^lazarus: incarnation [0-9]*: replaying \([0-9]*\) records.*/\1/p' "$(field "$name" stderr_path)" |
             awk '{s += $1} END {print s + 0}')
  total_line=$(grep -o 'total=[0-9]* items=[0-9]*' "$(field "$name" stdout_path)" | tail -n 1 || true)
  local seen dups resent output total in_doubt
  seen=$(stat_of "$stats" items)
  dups=$(stat_of "$stats" duplicates)
  resent=$(stat_of "$stats" resent_keys)
  if cmp -s "$out" "$work/expected.txt"; then output=same; else output=DIFFERENT; fi
  if [ "$total_line" = "total=$expected_total items=$items" ]; then total=right; else total=WRONG; fi
  # Items in doubt: requests whose reply was lost at a kill and that the job could only send
  # again blindly (each is a duplicate at the ledger). With an idempotency key the ledger
  # answers a resent request from its key: none is in doubt.
  if [ "$tag" = plain ]; then in_doubt=$dups; else in_doubt=0; fi
  rows+=("$(printf '%-36s %6s %11s %17s %15s %21s   %s/%s' "$label" "$kills" "$recoveries" "$replayed" "$in_doubt" "$dups" "$output" "$total")")
  local bad=""
  [ "$exit_status" = "exited 0" ] || bad+=" job ended '$exit_status';"
  [ "$recoveries" -eq "$kills" ] || bad+=" $recoveries recoveries;"
  [ "$seen" = "$items" ] || bad+=" the ledger saw $seen of $items items;"
  [ "$output" = same ] || bad+=" output differs from an uncrashed run's;"
  [ "$total" = right ] || bad+=" total '$total_line', want $expected_total;"
  [ "$replayed" -gt 0 ] || bad+=" nothing replayed;"
  if [ "$tag" = plain ]; then
    [ "$dups" -le "$kills" ] || bad+=" $dups duplicates for $kills kills;"
  else
    [ "$dups" -eq 0 ] || bad+=" $dups duplicates with idempotency keys;"
    keyed_resent=$resent
  fi
  if [ -n "$bad" ]; then
    echo "demo: $label:$bad" >&2
    fail=1
  fi
}

keyed_resent=0
run_worker "unmodified C program (shim only)" lzc-ledger-client plain
run_worker "explicit C++ API + idempotency keys" lz-keyed-client keyed

echo
echo "== exactly once: $items items, $kills SIGKILLs each, a snapshot every second"
printf '%-36s %6s %11s %17s %15s %21s   %s\n' "" kills recoveries "effects replayed" "items in doubt" "duplicates at ledger" "output/total"
for r in "${rows[@]}"; do echo "$r"; done
echo
echo "  effects replayed: log records answered from the effect log after the restores (what the"
echo "  job had done between its snapshot and the kill: not sent to the ledger again)."
echo "  items in doubt: requests whose reply was lost with the connection at a kill; the"
echo "  unmodified program can only send them again (a duplicate at the ledger, at most one per"
echo "  kill). With keys, $keyed_resent requests were resent with their key and answered from it."
echo "  output/total: the output file equals an uncrashed run's; the in-memory total is right."
if [ "$fail" -ne 0 ]; then
  echo "  => unexpected numbers (see above)" >&2
  exit 1
fi
echo "  => every item reached the ledger; nothing the jobs did before a kill was done twice,"
echo "     except the lost replies of the unmodified program; with keys, nothing at all."
