#!/usr/bin/env bash
# The console's pages on a big database, the way an operator opens them: a release build of
# `huixin serve` on a fresh SQLite file seeded by `huixin store seed` (FOLLOWERS followers,
# LOG_ROWS inbound-log rows over 30 days, PUSHES pushes), signed in, each page requested by one
# client back to back for DURATION (wrk -c1 --latency): requests per second and the latency
# percentiles. `/healthz` on the same server is the reference row.
#
#   scripts/bench-console.sh          # FOLLOWERS=100000 LOG_ROWS=1000000 PUSHES=10000 DURATION=5s
#   HUIXIN_BIN=target/debug/huixin scripts/bench-console.sh   # a binary built already
set -euo pipefail
cd "$(dirname "$0")/.."

FOLLOWERS=${FOLLOWERS:-100000}
LOG_ROWS=${LOG_ROWS:-1000000}
PUSHES=${PUSHES:-10000}
DURATION=${DURATION:-5s}

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is needed" >&2; exit 1; }

if [ -n "${HUIXIN_BIN:-}" ]; then
  bin=$(realpath "$HUIXIN_BIN")
else
  cargo build --release --quiet --bin huixin
  bin=${CARGO_TARGET_DIR:-$PWD/target}/release/huixin
fi

dir=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT

password="bench console password"
hash=$(printf '%s\n' "$password" | "$bin" admin hash-password 2>/dev/null)
cat > "$dir/huixin.toml" <<TOML
[server]
listen = "127.0.0.1:0"
[storage]
url = "sqlite://$dir/huixin.db"
[admin]
password = "$hash"
login_attempts_per_minute = 100
[log]
level = "warn"
TOML
cd "$dir"
seeded_at=$(date +%s.%N)
"$bin" store seed --followers "$FOLLOWERS" --log-rows "$LOG_ROWS" --pushes "$PUSHES" >/dev/null
seeded=$(awk -v a="$seeded_at" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
"$bin" serve > "$dir/serve.out" 2>&1 &
server=$!
for _ in $(seq 1 100); do
  grep -q 'listening on' "$dir/serve.out" 2>/dev/null && break
  sleep 0.1
done
base=$(grep -o 'http://[0-9.:]*' "$dir/serve.out" | tail -1)
[ -n "$base" ] || { cat "$dir/serve.out" >&2; exit 1; }

# Sign in as a browser would: the sign-in page's cookie and token, then the password.
jar="$dir/jar"
login=$(curl -s -c "$jar" "$base/admin/login")
token=$(printf '%s' "$login" | grep -o 'name="_csrf" value="[^"]*"' | head -1 | sed 's/.*value="//; s/"$//')
curl -s -o /dev/null -b "$jar" -c "$jar" --data-urlencode "_csrf=$token" \
  --data-urlencode "password=$password" --data-urlencode "next=/admin" "$base/admin/login"
cookie=$(awk '$6 == "huixin_admin" { print "huixin_admin=" $7 }' "$jar")
[ -n "$cookie" ] || { echo "could not sign in" >&2; exit 1; }

some_user=$(curl -s -H "Cookie: $cookie" "$base/admin/followers" | grep -o '/admin/followers/[^"]*' | head -1 | sed 's#.*/##')
some_push=$(curl -s -H "Cookie: $cookie" "$base/admin/pushes" | grep -o '/admin/pushes/[A-Za-z0-9]*"' | head -1 | sed 's#.*/##; s/"//')

pages=(
  "/healthz"
  "/admin"
  "/admin/followers"
  "/admin/followers?q=o6_bmA"
  "/admin/followers?scene=partner_b"
  "/admin/followers?topic=vip"
  "/admin/followers/$some_user"
  "/admin/conversations"
  "/admin/conversations?user=$some_user"
  "/admin/conversations?type=image"
  "/admin/conversations?outcome=failed"
  "/admin/pushes"
  "/admin/pushes/$some_push"
  "/admin/keys"
  "/admin/rules"
)

printf 'seeded %s followers, %s log rows, %s pushes in %.1f s\n\n' "$FOLLOWERS" "$LOG_ROWS" "$PUSHES" "$seeded"
# "first" is the page's first request since the server started (the overview's month of past
# days is read then and kept), the rest are wrk's over DURATION.
printf '| page | status | first | req/s | p50 | p90 | p99 | max |\n|---|---:|---:|---:|---:|---:|---:|---:|\n'
for page in "${pages[@]}"; do
  read -r status first < <(curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -H "Cookie: $cookie" "$base$page")
  first=$(awk -v t="$first" 'BEGIN { printf "%.2fms", t * 1000 }')
  out=$(wrk -t1 -c1 -d"$DURATION" --latency -H "Cookie: $cookie" "$base$page")
  rps=$(printf '%s\n' "$out" | awk '/Requests\/sec/ { print $2 }')
  p50=$(printf '%s\n' "$out" | awk '$1 == "50%" { print $2 }')
  p90=$(printf '%s\n' "$out" | awk '$1 == "90%" { print $2 }')
  p99=$(printf '%s\n' "$out" | awk '$1 == "99%" { print $2 }')
  max=$(printf '%s\n' "$out" | awk '$1 == "Latency" { print $4 }')
  printf '| `%s` | %s | %s | %s | %s | %s | %s | %s |\n' "$page" "$status" "$first" "$rps" "$p50" "$p90" "$p99" "$max"
done
