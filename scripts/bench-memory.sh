#!/usr/bin/env bash
# Memory under many distinct users: `huixin serve` as shipped (default middleware, the shipped
# rules, a fresh SQLite file) receives COUNT text messages, each from a distinct user (distinct
# MsgId and nonce, current timestamps), sent once each by wrk on loopback. Prints the resident
# memory (VmRSS) idle after start, at the end, and its peak (VmHWM).
#
#   scripts/bench-memory.sh           # COUNT=1000000 CONNECTIONS=32
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT=${COUNT:-1000000}
CONNECTIONS=${CONNECTIONS:-32}
TOKEN=benchToken

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
cargo build --release --quiet --bin huixin
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/huixin

work=$(mktemp -d)
server=
client=
cleanup() {
  [ -n "$client" ] && kill "$client" 2>/dev/null || true
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/serve.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
[storage]
url = "sqlite://$work/serve.db"
[wechat]
token = "$TOKEN"
[rules]
dir = "$PWD/rules"
[log]
level = "warn"
TOML

python3 - "$work/req.txt" "$COUNT" "$TOKEN" <<'PY'
import hashlib, secrets, sys, time
out, count, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ts = str(int(time.time()))
with open(out, "w", encoding="utf-8") as f:
    for n in range(count):
        nonce = secrets.token_hex(8)
        sig = hashlib.sha1("".join(sorted([token, ts, nonce])).encode()).hexdigest()
        user = f"o_mem_{n:09d}"
        f.write(f"/wechat?signature={sig}&timestamp={ts}&nonce={nonce}&openid={user}\t"
                f"<xml><ToUserName><![CDATA[gh_bench]]></ToUserName>"
                f"<FromUserName><![CDATA[{user}]]></FromUserName><CreateTime>{ts}</CreateTime>"
                f"<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hello huixin {n}]]></Content>"
                f"<MsgId>{8000000000000000000 + n}</MsgId></xml>\n")
PY

# Each request once: every connection takes the next unsent line. wrk's main thread sleeps for
# the whole duration whatever its threads do, so the script marks the last answer in a file
# and this shell then interrupts wrk (SIGINT ends its sleep; it prints its figures).
cat >"$work/once.lua" <<'LUA'
local reqs, i, done, total, flag, idle = {}, 0, 0, 0, nil, nil
function init(args)
  flag = args[2]
  for line in io.lines(args[1]) do
    local path, body = line:match("^([^\t]*)\t(.*)$")
    reqs[#reqs + 1] = wrk.format("POST", path, {["Content-Type"] = "text/xml"}, body)
  end
  total = #reqs
  idle = wrk.format("GET", "/healthz")
end
function request()
  i = i + 1
  if i > total then return idle end
  return reqs[i]
end
function response(status)
  done = done + 1
  if done == total then
    local f = io.open(flag, "w")
    f:write("done\n")
    f:close()
  end
end
LUA

"$BIN" serve --config "$work/serve.toml" >/dev/null 2>&1 & server=$!
for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
sleep 2
idle=$(awk '/VmRSS/ {print $2}' "/proc/$server/status")
start=$(date +%s)
wrk -t1 -c"$CONNECTIONS" -d1h -s "$work/once.lua" "http://127.0.0.1:$port" -- "$work/req.txt" "$work/done" >"$work/wrk.out" &
client=$!
while [ ! -e "$work/done" ]; do
  kill -0 "$client" 2>/dev/null || { echo "wrk ended early:" >&2; cat "$work/wrk.out" >&2; exit 1; }
  sleep 0.1
done
kill -INT "$client"
wait "$client" || true
took=$(( $(date +%s) - start ))
sleep 2
end_rss=$(awk '/VmRSS/ {print $2}' "/proc/$server/status")
peak=$(awk '/VmHWM/ {print $2}' "/proc/$server/status")
echo "# huixin memory: $(date -u +%Y-%m-%dT%H:%MZ), $COUNT distinct users, one message each, in ${took}s"
echo
echo "| idle RSS | RSS after | peak RSS |"
echo "|---:|---:|---:|"
echo "| $((idle / 1024)) MiB | $((end_rss / 1024)) MiB | $((peak / 1024)) MiB |"
if grep -q "Non-2xx" "$work/wrk.out"; then
  echo
  echo "wrk: $(grep "Non-2xx" "$work/wrk.out")" >&2
  exit 1
fi
