#!/usr/bin/env bash
# The main job: sets everything up, installs Lazarus, starts the daemon on its default
# state directory (/var/lib/lazarus) and socket, and shows the core loop with real parts:
# a job runs, CRIU snapshots it while it runs, every process of it is SIGKILLed, and the
# daemon restores it so that it goes on from the snapshot instead of from the beginning.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash scripts/setup.sh
echo "== building and installing Lazarus"
bash scripts/build.sh "$root/build" >/dev/null
cmake --install "$root/build" --prefix /usr/local >/dev/null
hash -r

# A daemon left running by an earlier run of an older build is replaced (its jobs keep
# running: a new daemon re-adopts them).
old=$(cat /var/lib/lazarus/lazarusd.lock 2>/dev/null || true)
if [ -n "$old" ] && [ "$(readlink "/proc/$old/exe" 2>/dev/null)" != "$(command -v lazarusd)" ]; then
  echo "== restarting lazarusd (pid $old runs an older build)"
  kill -TERM "$old" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
fi
if ! lazarus list >/dev/null 2>&1; then
  echo "== starting lazarusd (state /var/lib/lazarus, socket /run/lazarus/lazarusd.sock, log /var/lib/lazarus/lazarusd.log)"
  lazarusd
fi

work=$(mktemp -d /tmp/lazarus-demo.XXXXXX)
out=$work/ticks.txt
install -m 0755 scripts/demo_job.sh "$work/demo_job.sh"
last() { tail -n 1 "$out" | awk '{print $2}'; }
wait_state() {
  for _ in $(seq 100); do
    [ "$(lazarus status "$1" --json | sed -n 's/.*"state":"\([a-z]*\)".*/\1/p')" = "$2" ] && return 0
    sleep 0.1
  done
  echo "demo: job $1 never became $2" >&2
  return 1
}

name=demo-$(date +%H%M%S)
# Part 1 shows the snapshot mechanics alone (--no-shim: nothing is replayed); part 2
# (demo_exactly_once.sh) the same with the effect log answering what was done.
job=$(lazarus run --no-shim --name "$name" -- "$work/demo_job.sh" "$out")
echo "== job $name ($job) started: it appends 'tick N' to $out every 50 ms"
sleep 2
echo "== lazarus checkpoint $name"
before_snap=$(last)
snap=$(lazarus checkpoint "$name")
after_snap=$(last)
echo "   snapshot $snap taken while the counter was at $before_snap..$after_snap; the job kept running"
sleep 2
pid=$(lazarus status "$name" --json | sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
tree=$(pstree -p "$pid" 2>/dev/null | grep -o '([0-9]*)' | tr -d '()' || echo "$pid")
at_kill=$(last)
echo "== SIGKILL every process of the job (host pids: $(echo $tree | tr '\n' ' ')) at tick $at_kill"
kill -KILL $tree
wait_state "$name" crashed
echo "   lazarus status: $(lazarus status "$name" --json | sed -n 's/.*"state":"\([a-z]*\)".*/\1/p') ($(lazarus status "$name" --json | sed -n 's/.*"exit_status":"\([^"]*\)".*/\1/p'))"
echo "== lazarus restore $name"
lazarus restore "$name" >/dev/null
sleep 2
lazarus status "$name"

# The first tick written after the restore is where the job went on from.
resumed=$(awk '{n = $2} prev != "" && n != prev + 1 {print n; exit} {prev = n}' "$out")
now=$(last)
lazarus kill "$name"
echo
echo "== what happened"
printf '  %-44s %s\n' "ticks written before the kill" "1..$at_kill" \
                      "snapshot $snap taken at tick" "$before_snap..$after_snap" \
                      "first tick after the restore" "${resumed:-none}" \
                      "ticks after the restore" "${resumed:-?}..$now"
if [ -n "$resumed" ] && [ "$resumed" -gt "$before_snap" ] && [ "$resumed" -le $((after_snap + 1)) ] && [ "$now" -gt "$resumed" ]; then
  echo "  => the restored job went on from its snapshot (not from tick 1, no tick skipped)."
  echo "     Ticks $resumed..$at_kill appear twice: without the shim, what the job did after the"
  echo "     snapshot is redone. Next, with it: those effects are answered from the effect log."
else
  echo "  => unexpected: the job did not resume from its snapshot" >&2
  exit 1
fi
echo "  The job ($name) is kept for inspection: lazarus status $name; lazarus snapshots $name; lazarus rm $name"
echo "  Its output: $out"
echo
bash "$root/scripts/demo_exactly_once.sh"
