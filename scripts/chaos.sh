#!/usr/bin/env bash
# Repeats the distributed chaos test (3 workers, random kill -9, one RabbitMQ
# restart, 100,000 individuals) with N different seeds and prints one line per run.
# Needs PostgreSQL and RabbitMQ on 127.0.0.1 (as .ci/run starts them).
#   scripts/chaos.sh 5
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
cargo test --release -p provsync --test chaos --no-run >/dev/null 2>&1 || {
  echo "build failed" >&2; exit 1; }
pass=0
for seed in $(seq 101 $((100 + runs))); do
  start=$(date +%s.%N)
  out=$(PROVSYNC_CHAOS_SEED=$seed CI=true cargo test --release -p provsync --test chaos \
    three_workers -- --nocapture 2>&1)
  status=$?
  secs=$(echo "$(date +%s.%N) - $start" | bc)
  line=$(grep -o 'chaos seed .*' <<<"$out" | head -1)
  if [ $status -eq 0 ]; then
    pass=$((pass + 1)); echo "seed $seed: ok     (${line:-?}; test ${secs%.*} s)"
  else
    echo "seed $seed: FAILED (${line:-?})"; grep -E 'panicked|check\(s\) failed|  - ' <<<"$out" | head -8
  fi
done
echo "$pass of $runs chaos runs passed"
