#!/usr/bin/env bash
# Peak RSS of `provsync run` when one designated body answers with a big SOAP
# answer (about 200 MB with the default 420,000 doctors): a `provsync emulate gmc`
# process serving that one body, the `gmc` source, the PostgreSQL doctors store.
# Run twice: with the default source.max_answer_bytes (64 MiB: the body is refused
# and fails, nothing is loaded) and with it raised to 256 MiB (the answer is loaded).
#   scripts/bench-gmc-big-answer.sh [doctors] [provsync binary]
# The binary defaults to $CARGO_TARGET_DIR (or ./target)/release/provsync; build it
# first (`cargo build --release -p provsync`).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-420000}
bin=${2:-${CARGO_TARGET_DIR:-$PWD/target}/release/provsync}
pg=postgres://postgres@127.0.0.1:5432
work=$(mktemp -d)
emu=
cleanup() {
  if [ -n "$emu" ]; then kill "$emu" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" emulate gmc --listen 127.0.0.1:0 --bodies 1 --doctors-per-body "$n" \
  >"$work/emulator.out" 2>"$work/emulator.err" &
emu=$!
for _ in $(seq 100); do
  grep -q '^bodies: ' "$work/emulator.out" && break
  sleep 0.1
done
url=$(sed -n 's/^gmc emulator listening on //p' "$work/emulator.out")
body=$(sed -n 's/^bodies: //p' "$work/emulator.out")
[ -n "$url" ] && [ -n "$body" ] || { cat "$work/emulator.err" >&2; exit 1; }

# The answer's size, as the source will receive it.
cat >"$work/call.xml" <<XML
<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><GetDoctorsForDB xmlns="https://webcache.gmc-uk.org/GMCWebServices/"><request><DesignatedBodyCode>$body</DesignatedBodyCode><ClientRequestID>bench</ClientRequestID><InternalUser>bench</InternalUser></request><Username>provsync</Username><Password>emulator</Password></GetDoctorsForDB></soap:Body></soap:Envelope>
XML
bytes=$(curl -sS -o /dev/null -w '%{size_download}' -H 'Content-Type: text/xml; charset=utf-8' \
  -H 'SOAPAction: "https://webcache.gmc-uk.org/GMCWebServices/GetDoctorsForDB"' \
  --data-binary @"$work/call.xml" "$url")
printf 'one designated body (%s) of %s doctors: a %s-byte answer (%.1f MB)\n' \
  "$body" "$n" "$bytes" "$(echo "$bytes / 1000000" | bc -l)"
printf 'username=provsync\npassword=emulator\n' >"$work/gmc.secret"

run() { # label, max_answer_bytes line ("" = the default)
  local label=$1 cap=$2 db="provsync_bench_big_$$_$RANDOM"
  psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $db" postgres
  cat >"$work/job.toml" <<JOB
mode = "full"
scope = ["$body"]
mapping = "$PWD/mappings/gmc-doctors.toml"
[source]
type = "gmc"
url = "$url"
secret_file = "$work/gmc.secret"
timeout_secs = 600
retries = 0
$cap
[target]
type = "postgres"
url = "$pg/$db"
schema = "gmc"
JOB
  local code=0 timer child
  /usr/bin/time -v -o "$work/time.txt" \
    "$bin" run "$work/job.toml" --state "sqlite://$work/state-$db.db" --json -q \
    >"$work/summary.json" 2>"$work/run.err" &
  timer=$!
  # RSS once a second, to see which phase holds the memory (fetch, then load).
  : >"$work/rss.txt"
  while kill -0 "$timer" 2>/dev/null; do
    child=$(pgrep -P "$timer" || true)
    if [ -n "$child" ]; then
      awk '/VmRSS/ {printf "%d ", $2 / 1024}' "/proc/$child/status" >>"$work/rss.txt" 2>/dev/null || true
    fi
    sleep 1
  done
  wait "$timer" || code=$?
  local rss wall cpu state doctors
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/time.txt")
  cpu=$(awk -F': ' '/(User|System) time/ {s += $2} END {printf "%.1f", s}' "$work/time.txt")
  state=$(grep -o '"state": "[a-z_]*"' "$work/summary.json" | head -1 | cut -d'"' -f4)
  doctors=$(psql -h 127.0.0.1 -U postgres -tAc "SELECT count(*) FROM gmc.doctors" "$db" 2>/dev/null || echo 0)
  printf '%-34s peak RSS %6.0f MiB  wall %8s  cpu %6s s  exit %s, %s, %s doctors loaded\n' \
    "$label" "$(echo "$rss / 1024" | bc -l)" "$wall" "$cpu" "$code" "${state:-?}" "$doctors"
  printf '  RSS each second (MiB): %s\n' "$(cat "$work/rss.txt")"
  if [ -z "$state" ]; then tail -5 "$work/run.err" >&2; fi
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE $db WITH (FORCE)" postgres
}
run "default max_answer_bytes (64 MiB)" ""
run "max_answer_bytes = 256 MiB" "max_answer_bytes = $((256 * 1024 * 1024))"
