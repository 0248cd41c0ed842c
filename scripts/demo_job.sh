#!/usr/bin/env bash
# The demonstration's job: a counter that appends "tick N" to a file every 50 ms. Its
# state (N) lives only in the process's memory, so after a restore the file shows whether
# it went on from the snapshot or started again from 1.
out=$1
n=0
while :; do
  n=$((n + 1))
  echo "tick $n" >> "$out"
  sleep 0.05
done
