#!/usr/bin/env bash
# Load test with traffic as WeChat sends it (wrk on loopback), in plain and safe mode: every
# request a distinct text message from a distinct user (distinct MsgId and nonce, the current
# timestamp), none repeated, so none is a retry. Two targets, measured in turn in each round:
#
#   reference  examples/bare_axum: the protocol work in one bare axum handler
#   serve      `huixin serve` as shipped: default middleware, the shipped rules, a fresh
#              SQLite file for every round
#
#   scripts/bench-traffic.sh       # DURATION=10s CONNECTIONS=32 ROUNDS=3 COUNT=900000 MODES="plain safe"
#   SERVE_BIN=/path/to/huixin scripts/bench-traffic.sh   # another build of huixin
#   WEBHOOK=1 scripts/bench-traffic.sh   # plus a row: every message also goes to a [[webhooks]]
#                                        # receiver (nginx answering 200), stored and delivered
#   METRICS_OFF=1 scripts/bench-traffic.sh   # plus a row: `[metrics] enabled = false`, the
#                                            # same defaults otherwise (what the metrics cost)
#
# Each round signs (and in safe mode encrypts) COUNT new requests just before it runs (they
# stay inside the 300 s clock window). Safe mode needs Python's `cryptography`
# (`apt-get install python3-cryptography`). Prints, per mode and target, requests per second,
# p99 latency and the server's CPU time per request (user + system, from /proc; median of
# the rounds).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
ROUNDS=${ROUNDS:-3}
COUNT=${COUNT:-900000}
MODES=${MODES:-plain safe}
TOKEN=benchToken
AES_KEY=kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR
APP_ID=wx49f0ab532d5d035a

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
cargo build --release --quiet --bin huixin --example bare_axum
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
BIN=${SERVE_BIN:-$TARGET_DIR/release/huixin}
REF=$TARGET_DIR/release/examples/bare_axum

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=scripts/traffic/ports.sh
. scripts/traffic/ports.sh

config() { # port db file mode
  cat >"$3" <<TOML
[server]
listen = "127.0.0.1:$1"
[storage]
url = "sqlite://$2"
[wechat]
token = "$TOKEN"
app_id = "$APP_ID"
encoding_aes_key = "$AES_KEY"
mode = "$4"
[rules]
dir = "$PWD/rules"
[log]
level = "warn"
TOML
}

# The receiver of the WEBHOOK row: nginx answering every POST with 200 `{}`.
hook_port=""
if [ "${WEBHOOK:-0}" = 1 ]; then
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "WEBHOOK=1 needs nginx" >&2; exit 1; }
  hook_port=$(free_port)
  mkdir -p "$work/hook"
  cat >"$work/hook/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $work/hook/nginx.pid;
error_log $work/hook/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/hook/body;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$hook_port;
    location / { client_body_buffer_size 64k; return 200 '{}'; }
  }
}
EOF
  PATH="$PATH:/usr/sbin" nginx -p "$work/hook" -e "$work/hook/error.log" -c "$work/hook/nginx.conf" &
  pids+=("$!")
  wait_port "$hook_port"
fi

# The [[webhooks]] entry of the WEBHOOK row.
webhook_entry() {
  cat <<TOML
[[webhooks]]
name = "bench"
url = "http://127.0.0.1:$hook_port/hook"
secret = "benchWebhookSecret0123456789"
events = ["message"]
TOML
}

# COUNT signed requests, one per line: "path?query<TAB>body", users and MsgIds from `seed`.
sign() { # seed out mode
  python3 scripts/traffic/sign.py "$1" "$2" "$COUNT" "$TOKEN" "$3" "$AES_KEY" "$APP_ID"
}


run() { # port requests pid -> "req/s p99 cpu_us_per_req"
  local out cpu0 cpu1 rps p99 total
  cpu0=$(awk '{print $14 + $15}' "/proc/$3/stat")
  out=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s scripts/traffic/traffic.lua "http://127.0.0.1:$1" -- "$2")
  cpu1=$(awk '{print $14 + $15}' "/proc/$3/stat")
  if grep -q "Non-2xx" <<<"$out"; then echo "$out" >&2; echo "non-2xx answers" >&2; exit 1; fi
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  total=$(awk '/requests in/ {print $1}' <<<"$out")
  if [ "$total" -gt "$COUNT" ]; then
    echo "wrk sent $total requests but only $COUNT distinct ones were signed: the rest were retries. Raise COUNT." >&2
    exit 1
  fi
  echo "$rps $p99 $(awk -v c="$((cpu1 - cpu0))" -v t="$total" -v k="$(getconf CLK_TCK)" 'BEGIN {printf "%.0f", c * 1e6 / k / t}')"
}
median() { sort -g | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}'; }

echo "# huixin traffic load test: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, wrk -t1 -c$CONNECTIONS -d$DURATION, $ROUNDS rounds, $COUNT distinct users per round"
echo
echo "| mode | target | req/s | p99 | server CPU µs/req |"
echo "|---|---|---:|---:|---:|"
for mode in $MODES; do
  ref_port=$(free_port)
  config "$ref_port" "$work/ref.db" "$work/ref.toml" "$mode"
  HUIXIN_CONFIG="$work/ref.toml" "$REF" >/dev/null 2>&1 & ref_pid=$!
  pids+=("$ref_pid")
  wait_port "$ref_port"

  ref_runs=() serve_runs=() hook_runs=() hook_notes=() off_runs=()
  for round in $(seq "$ROUNDS"); do
    sign "$round" "$work/req.txt" "$mode"
    ref_runs+=("$(run "$ref_port" "$work/req.txt" "$ref_pid")")
    port=$(free_port)
    rm -f "$work"/serve.db*
    config "$port" "$work/serve.db" "$work/serve.toml" "$mode"
    "$BIN" serve --config "$work/serve.toml" >/dev/null 2>&1 & serve=$!
    wait_port "$port"
    serve_runs+=("$(run "$port" "$work/req.txt" "$serve")")
    kill "$serve" && wait "$serve" 2>/dev/null || true
    echo "  $mode round $round: reference ${ref_runs[-1]}, serve ${serve_runs[-1]} (req/s, p99, CPU µs/req)" >&2
    if [ "${METRICS_OFF:-0}" = 1 ]; then
      port=$(free_port)
      rm -f "$work"/serve.db*
      config "$port" "$work/serve.db" "$work/serve.toml" "$mode"
      printf '[metrics]\nenabled = false\n' >>"$work/serve.toml"
      "$BIN" serve --config "$work/serve.toml" >/dev/null 2>&1 & serve=$!
      wait_port "$port"
      off_runs+=("$(run "$port" "$work/req.txt" "$serve")")
      kill "$serve" && wait "$serve" 2>/dev/null || true
      echo "  $mode round $round: metrics off ${off_runs[-1]}" >&2
    fi
    if [ -n "$hook_port" ]; then
      port=$(free_port)
      rm -f "$work"/serve.db*
      config "$port" "$work/serve.db" "$work/serve.toml" "$mode"
      webhook_entry >>"$work/serve.toml"
      "$BIN" serve --config "$work/serve.toml" >/dev/null 2>&1 & serve=$!
      wait_port "$port"
      hook_runs+=("$(run "$port" "$work/req.txt" "$serve")")
      # What the outbox had delivered when the load stopped, and how long the rest took.
      start=$(date +%s%N)
      while [ "$(sqlite3 "$work/serve.db" "SELECT COUNT(*) FROM webhook_deliveries WHERE state IN ('pending','sending')")" != 0 ]; do
        sleep 0.2
      done
      drained=$(( ($(date +%s%N) - start) / 1000000 ))
      kill "$serve" && wait "$serve" 2>/dev/null || true
      stored=$(sqlite3 "$work/serve.db" "SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'delivered'")
      hook_notes+=("$stored delivered, the last ${drained} ms after the load")
      echo "  $mode round $round: webhook ${hook_runs[-1]}; ${hook_notes[-1]}" >&2
    fi
  done
  kill "$ref_pid" && wait "$ref_pid" 2>/dev/null || true

  read -r r_rps r_p99 r_cpu <<<"$(printf '%s\n' "${ref_runs[@]}" | median)"
  read -r s_rps s_p99 s_cpu <<<"$(printf '%s\n' "${serve_runs[@]}" | median)"
  echo "| $mode | reference (bare axum) | $r_rps | $r_p99 | $r_cpu |"
  awk -v s="$s_rps" -v r="$r_rps" -v p="$s_p99" -v c="$s_cpu" -v m="$mode" \
    'BEGIN {printf "| %s | huixin serve, defaults | %s (%.2f×) | %s | %s |\n", m, s, s / r, p, c}'
  if [ "${#off_runs[@]}" -gt 0 ]; then
    read -r o_rps o_p99 o_cpu <<<"$(printf '%s\n' "${off_runs[@]}" | median)"
    awk -v s="$o_rps" -v r="$r_rps" -v p="$o_p99" -v c="$o_cpu" -v m="$mode" \
      'BEGIN {printf "| %s | huixin serve, [metrics] enabled = false | %s (%.2f×) | %s | %s |\n", m, s, s / r, p, c}'
  fi
  if [ -n "$hook_port" ]; then
    read -r h_rps h_p99 h_cpu <<<"$(printf '%s\n' "${hook_runs[@]}" | median)"
    awk -v s="$h_rps" -v r="$r_rps" -v p="$h_p99" -v c="$h_cpu" -v m="$mode" \
      'BEGIN {printf "| %s | huixin serve + a webhook of every message | %s (%.2f×) | %s | %s |\n", m, s, s / r, p, c}'
  fi
done
