#!/usr/bin/env bash
# Load test on loopback with wrk (Debian package `wrk`), in plain and safe mode, every target
# measured in turn in each round:
#
#   reference  examples/bare_axum: the protocol work (verify, decrypt, parse, echo, render,
#              encrypt) in one bare axum handler
#   core       examples/echo_bot: the full HTTP edge and dispatcher with Rust handlers
#   rules      huixin serve with the shipped rules and every layer but dedup and the rate
#              limit: each request runs the rules (a session read, two Rhai handlers), is
#              logged and bookkept
#   replays    huixin serve as configured by default (rate limit off): the requests repeat,
#              so after the first pass they are WeChat retries answered by dedup
#
# The headline comes first: scripts/bench-traffic.sh, traffic as WeChat sends it (distinct
# users and messages, current timestamps, nothing repeated, a fresh database), beside the
# reference; then scripts/bench-push.sh (push accepts, a 10,000-follower topic push). The rows
# below are extra rows isolating layers: pre-signed text messages from one user (1000
# distinct, cycled). HEADLINE=0 skips the first two. SCALE=1 adds scripts/bench-scale.sh after
# them (PostgreSQL with 1, 2 and 3 processes behind nginx, beside SQLite; a topic push with 1 and
# 3 processes): it needs nginx and PostgreSQL, and takes several minutes more.
#
#   scripts/bench.sh                      # DURATION=10s CONNECTIONS=32 ROUNDS=3 by default
#   DURATION=20s ROUNDS=5 scripts/bench.sh
#
# Prints a Markdown table of requests per second (median of the rounds) and each target's
# ratio to the reference. Any non-2xx answer during a run fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
ROUNDS=${ROUNDS:-3}
WRK_THREADS=${WRK_THREADS:-1}
REQUESTS=${REQUESTS:-1000}
TARGETS=(reference core rules replays)

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
cargo build --release --quiet --bin huixin --example bare_axum --example echo_bot
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
BIN=$TARGET_DIR/release/huixin
REF=$TARGET_DIR/release/examples/bare_axum
CORE=$TARGET_DIR/release/examples/echo_bot

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

write_config() { # mode port file [middleware list]
  {
    printf '[server]\nlisten = "127.0.0.1:%s"\n' "$2"
    printf '[storage]\nurl = "sqlite://%s/%s.db"\n' "$work" "$(basename "$3" .toml)"
    printf '[wechat]\ntoken = "benchToken"\napp_id = "wx49f0ab532d5d035a"\n'
    printf 'encoding_aes_key = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"\nmode = "%s"\n' "$1"
    # Requests are signed once before the runs; long runs must not turn them stale.
    printf 'max_clock_skew_secs = 0\n'
    printf '[rules]\ndir = "%s/rules"\n' "$PWD"
    printf '[bot]\nrate_limit_per_minute = 0\n'
    if [ -n "${4:-}" ]; then printf 'middleware = %s\n' "$4"; fi
    printf '[log]\nlevel = "warn"\n'
  } >"$3"
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

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

if [ "${HEADLINE:-1}" != 0 ]; then
  DURATION=$DURATION CONNECTIONS=$CONNECTIONS ROUNDS=$ROUNDS scripts/bench-traffic.sh
  echo
  BASE=${PUSH_BASE-} ROUNDS=$ROUNDS scripts/bench-push.sh
  echo
  if [ "${SCALE:-0}" = 1 ]; then
    DURATION=$DURATION CONNECTIONS=$CONNECTIONS ROUNDS=$ROUNDS scripts/bench-scale.sh
    echo
  fi
fi

echo "# huixin load test: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS rounds"
echo
echo "| mode | reference req/s | core req/s | rules req/s | replays req/s |"
echo "|---|---:|---:|---:|---:|"
NO_DEDUP='["trace", "deadline", "followers", "log", "blocklist"]'
for mode in plain safe; do
  declare -A port=() runs=() med=()
  for t in "${TARGETS[@]}"; do
    port[$t]=$(free_port)
    runs[$t]=""
  done
  write_config "$mode" "${port[reference]}" "$work/reference-$mode.toml"
  write_config "$mode" "${port[core]}" "$work/core-$mode.toml"
  write_config "$mode" "${port[rules]}" "$work/rules-$mode.toml" "$NO_DEDUP"
  write_config "$mode" "${port[replays]}" "$work/replays-$mode.toml"
  HUIXIN_CONFIG="$work/reference-$mode.toml" "$REF" >/dev/null 2>&1 & pids+=($!)
  HUIXIN_CONFIG="$work/core-$mode.toml" "$CORE" >/dev/null 2>&1 & pids+=($!)
  "$BIN" serve --config "$work/rules-$mode.toml" >/dev/null 2>&1 & pids+=($!)
  "$BIN" serve --config "$work/replays-$mode.toml" >/dev/null 2>&1 & pids+=($!)
  for t in "${TARGETS[@]}"; do wait_port "${port[$t]}"; done

  # Every target must answer correctly before it is timed.
  for t in "${TARGETS[@]}"; do
    "$BIN" simulate --config "$work/rules-$mode.toml" --url "http://127.0.0.1:${port[$t]}/wechat" \
      text "bench check" | grep -q "text: bench check" \
      || { echo "$t does not echo in $mode mode" >&2; exit 1; }
  done

  "$BIN" simulate --config "$work/rules-$mode.toml" --url "http://127.0.0.1:${port[reference]}/wechat" \
    --print-request --count "$REQUESTS" text "hello huixin 你好" >"$work/$mode.jsonl"
  make_lua "$work/$mode.jsonl" "$work/$mode.lua"

  for _ in $(seq "$ROUNDS"); do
    for t in "${TARGETS[@]}"; do
      runs[$t]="${runs[$t]} $(run_wrk "${port[$t]}" "$work/$mode.lua")"
    done
  done
  for t in "${TARGETS[@]}"; do med[$t]=$(echo "${runs[$t]}" | median); done
  ratio() { awk -v f="$1" -v r="${med[reference]}" 'BEGIN {printf "%.0f%%", 100 * f / r}'; }
  echo "| $mode | ${med[reference]} | ${med[core]} ($(ratio "${med[core]}")) | ${med[rules]} ($(ratio "${med[rules]}")) | ${med[replays]} ($(ratio "${med[replays]}")) |"
  for t in "${TARGETS[@]}"; do echo "  rounds ($mode, $t):${runs[$t]}" >&2; done

  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
done
