#!/usr/bin/env bash
# End-to-end records/s of a full sync into PostgreSQL: the embedded runtime, then
# the distributed runtime with 1, 2 and 3 `provsync worker` processes on RabbitMQ,
# on the same generated world (a fresh target database each time).
#   scripts/bench-distributed.sh [individuals]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
cargo build --release -p provsync >/dev/null 2>&1
bin=$PWD/target/release/provsync
work=$(mktemp -d)
trap 'pkill -f "provsync worker --state postgres://postgres@127.0.0.1:5432/provsync_bench_" 2>/dev/null; rm -rf "$work"' EXIT
"$bin" generate --individuals "$n" --seed 11 --out "$work/world.ndjson" >/dev/null 2>&1
pg=postgres://postgres@127.0.0.1:5432
run() { # label, workers ("" = embedded)
  local label=$1 workers=$2 db="provsync_bench_$$_$RANDOM"
  psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $db" postgres
  cat >"$work/job.toml" <<JOB
scope = ["US"]
[source]
type = "file"
path = "$work/world.ndjson"
[target]
type = "postgres"
url = "$pg/$db"
schema = "provider"
JOB
  local q="amqp://guest:guest@127.0.0.1:5672/%2f?prefix=$db" args=()
  if [ -n "$workers" ]; then
    for i in $(seq 1 "$workers"); do
      "$bin" worker --state "$pg/$db" --queue "$q" >"$work/w$i.log" 2>&1 &
    done
    args=(--queue "$q")
  fi
  local start end summary
  start=$(date +%s.%N)
  summary=$("$bin" run "$work/job.toml" --state "$pg/$db" "${args[@]}" --json -q)
  end=$(date +%s.%N)
  pkill -f "provsync worker --state $pg/$db" 2>/dev/null || true
  for s in transform load dead; do rabbitmqctl -q delete_queue "$db.$s" >/dev/null 2>&1 || true; done
  local records secs
  records=$(grep -o '"extracted": [0-9]*' <<<"$summary" | head -1 | grep -o '[0-9]*')
  secs=$(echo "$end - $start" | bc)
  printf '%-22s %9s records %7.1f s %9.0f records/s  %s\n' "$label" "$records" "$secs" \
    "$(echo "$records / $secs" | bc -l)" "$(grep -o '"state": "[a-z_]*"' <<<"$summary" | head -1)"
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE $db WITH (FORCE)" postgres
}
echo "full sync of $n individuals into PostgreSQL on $(nproc) cores"
run "embedded" ""
run "distributed, 1 worker" 1
run "distributed, 2 workers" 2
run "distributed, 3 workers" 3
