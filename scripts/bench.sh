#!/usr/bin/env bash
# Load test on loopback with wrk (Debian package `wrk`): `huixin serve` against
# examples/bare_axum, a minimal axum handler doing the same protocol work (verify, decrypt,
# parse, echo, render, encrypt), in plain and safe mode, measured alternately in one run.
#
#   scripts/bench.sh                      # DURATION=10s CONNECTIONS=32 ROUNDS=3 by default
#   DURATION=20s ROUNDS=5 scripts/bench.sh
#
# Prints a Markdown table of requests per second (median of the rounds) and the ratio
# full/reference. Any non-2xx answer during a run fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
ROUNDS=${ROUNDS:-3}
WRK_THREADS=${WRK_THREADS:-1}
REQUESTS=${REQUESTS:-1000}

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
cargo build --release --quiet --bin huixin --example bare_axum
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
BIN=$TARGET/release/huixin
REF=$TARGET/release/examples/bare_axum

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() {
  for _ in $(seq 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "nothing listens on port $1" >&2
  exit 1
}

write_config() { # mode port file
  cat >"$3" <<EOF
[server]
listen = "127.0.0.1:$2"
[storage]
url = "sqlite://$work/$1-$2.db"
[wechat]
token = "benchToken"
app_id = "wx49f0ab532d5d035a"
encoding_aes_key = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
mode = "$1"
# Requests are signed once before the runs; long runs must not turn them stale.
max_clock_skew_secs = 0
[log]
level = "warn"
EOF
}

# JSON lines from `huixin simulate --print-request` -> a wrk script cycling through them.
make_lua() { # requests.jsonl out.lua
  python3 - "$1" "$2" <<'PY'
import json, sys, urllib.parse
reqs = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
with open(sys.argv[2], "w", encoding="utf-8") as f:
    f.write("local data = {\n")
    for r in reqs:
        u = urllib.parse.urlsplit(r["url"])
        f.write("  {[==[%s?%s]==], [==[%s]==]},\n" % (u.path, u.query, r["body"]))
    f.write("}\nlocal reqs = {}\nlocal i = 0\n")
    f.write("function init(args)\n  for k, r in ipairs(data) do\n")
    f.write('    reqs[k] = wrk.format("POST", r[1], {["Content-Type"] = "text/xml"}, r[2])\n')
    f.write("  end\nend\n")
    f.write("function request()\n  i = i % #reqs + 1\n  return reqs[i]\nend\n")
PY
}

run_wrk() { # port lua -> requests/sec
  local out
  out=$(wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" -s "$2" "http://127.0.0.1:$1")
  if grep -q "Non-2xx" <<<"$out"; then
    echo "$out" >&2
    echo "non-2xx answers during the run" >&2
    exit 1
  fi
  awk '/Requests\/sec/ {print $2}' <<<"$out"
}

median() { tr ' ' '\n' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "# huixin load test: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS rounds"
echo
echo "| mode | reference (bare_axum) req/s | huixin serve req/s | huixin / reference |"
echo "|---|---:|---:|---:|"
for mode in plain safe; do
  ref_port=$(free_port); full_port=$(free_port)
  write_config "$mode" "$ref_port" "$work/ref-$mode.toml"
  write_config "$mode" "$full_port" "$work/full-$mode.toml"
  HUIXIN_CONFIG="$work/ref-$mode.toml" "$REF" >/dev/null 2>&1 & pids+=($!)
  "$BIN" serve --config "$work/full-$mode.toml" >/dev/null 2>&1 & pids+=($!)
  wait_port "$ref_port"; wait_port "$full_port"

  # Both must answer correctly before they are timed.
  for port in "$ref_port" "$full_port"; do
    "$BIN" simulate --config "$work/full-$mode.toml" --url "http://127.0.0.1:$port/wechat" text "bench check" \
      | grep -q "text: bench check" || { echo "port $port does not echo in $mode mode" >&2; exit 1; }
  done

  "$BIN" simulate --config "$work/full-$mode.toml" --url "http://127.0.0.1:$ref_port/wechat" \
    --print-request --count "$REQUESTS" text "hello huixin 你好" >"$work/$mode.jsonl"
  make_lua "$work/$mode.jsonl" "$work/$mode.lua"

  ref_runs=(); full_runs=()
  for _ in $(seq "$ROUNDS"); do
    ref_runs+=("$(run_wrk "$ref_port" "$work/$mode.lua")")
    full_runs+=("$(run_wrk "$full_port" "$work/$mode.lua")")
  done
  ref=$(echo "${ref_runs[*]}" | median)
  full=$(echo "${full_runs[*]}" | median)
  ratio=$(awk -v f="$full" -v r="$ref" 'BEGIN {printf "%.0f%%", 100 * f / r}')
  echo "| $mode | $ref | $full | $ratio |"
  echo "  rounds ($mode): reference ${ref_runs[*]}; huixin ${full_runs[*]}" >&2

  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
done
