#!/usr/bin/env bash
# Load test with traffic as WeChat sends it (wrk on loopback, plain mode): every request a
# distinct text message from a distinct user (distinct MsgId and nonce, the current timestamp),
# none repeated, so none is a retry. Two targets, measured in turn in each round:
#
#   reference  examples/bare_axum: the protocol work in one bare axum handler
#   serve      `huixin serve` as shipped: default middleware, the shipped rules, a fresh
#              SQLite file for every round
#
#   scripts/bench-traffic.sh              # DURATION=10s CONNECTIONS=32 ROUNDS=3 COUNT=150000
#
# Each round signs COUNT new requests just before it runs (they stay inside the 300 s clock
# window). Prints requests per second and p99 latency per target (median of the rounds).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
ROUNDS=${ROUNDS:-3}
COUNT=${COUNT:-150000}
TOKEN=benchToken

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
cargo build --release --quiet --bin huixin --example bare_axum
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
BIN=$TARGET_DIR/release/huixin
REF=$TARGET_DIR/release/examples/bare_axum

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

config() { # port db file
  cat >"$3" <<TOML
[server]
listen = "127.0.0.1:$1"
[storage]
url = "sqlite://$2"
[wechat]
token = "$TOKEN"
[rules]
dir = "$PWD/rules"
[log]
level = "warn"
TOML
}

# COUNT signed requests, one per line: "path?query<TAB>body", users and MsgIds from `seed`.
sign() { # seed out
  python3 - "$1" "$2" "$COUNT" "$TOKEN" <<'PY'
import hashlib, secrets, sys, time
seed, out, count, token = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
ts = str(int(time.time()))
with open(out, "w", encoding="utf-8") as f:
    for i in range(count):
        n = seed * count + i
        nonce = secrets.token_hex(8)
        sig = hashlib.sha1("".join(sorted([token, ts, nonce])).encode()).hexdigest()
        user = f"o_bench_{n:09d}"
        body = (f"<xml><ToUserName><![CDATA[gh_bench]]></ToUserName>"
                f"<FromUserName><![CDATA[{user}]]></FromUserName><CreateTime>{ts}</CreateTime>"
                f"<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hello huixin {n}]]></Content>"
                f"<MsgId>{7000000000000000000 + n}</MsgId></xml>")
        f.write(f"/wechat?signature={sig}&timestamp={ts}&nonce={nonce}&openid={user}\t{body}\n")
PY
}

cat >"$work/traffic.lua" <<'LUA'
local reqs = {}
local i = 0
function init(args)
  for line in io.lines(args[1]) do
    local path, body = line:match("^([^\t]*)\t(.*)$")
    reqs[#reqs + 1] = wrk.format("POST", path, {["Content-Type"] = "text/xml"}, body)
  end
end
function request()
  i = i % #reqs + 1
  return reqs[i]
end
LUA

run() { # port requests -> "req/s p99"
  local out
  out=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$work/traffic.lua" "http://127.0.0.1:$1" -- "$2")
  if grep -q "Non-2xx" <<<"$out"; then echo "$out" >&2; echo "non-2xx answers" >&2; exit 1; fi
  echo "$(awk '/Requests\/sec/ {print $2}' <<<"$out") $(awk '$1 == "99%" {print $2}' <<<"$out")"
}
median() { sort -g | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}'; }

ref_port=$(free_port)
config "$ref_port" "$work/ref.db" "$work/ref.toml"
HUIXIN_CONFIG="$work/ref.toml" "$REF" >/dev/null 2>&1 & pids+=($!)
wait_port "$ref_port"

ref_runs=() serve_runs=()
for round in $(seq "$ROUNDS"); do
  sign "$round" "$work/req.txt"
  ref_runs+=("$(run "$ref_port" "$work/req.txt")")
  port=$(free_port)
  config "$port" "$work/serve-$round.db" "$work/serve.toml"
  "$BIN" serve --config "$work/serve.toml" >/dev/null 2>&1 & serve=$!
  wait_port "$port"
  serve_runs+=("$(run "$port" "$work/req.txt")")
  kill "$serve" && wait "$serve" 2>/dev/null || true
  echo "  round $round: reference ${ref_runs[-1]}, serve ${serve_runs[-1]} (req/s, p99)" >&2
done

ref=$(printf '%s\n' "${ref_runs[@]}" | median)
srv=$(printf '%s\n' "${serve_runs[@]}" | median)
echo "# huixin traffic load test: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, wrk -t1 -c$CONNECTIONS -d$DURATION, $ROUNDS rounds, plain mode"
echo
echo "| target | req/s | p99 |"
echo "|---|---:|---:|"
echo "| reference (bare axum) | ${ref% *} | ${ref#* } |"
awk -v s="${srv% *}" -v r="${ref% *}" -v p="${srv#* }" 'BEGIN {printf "| huixin serve, defaults | %s (%.2f×) | %s |\n", s, s / r, p}'
