#!/usr/bin/env bash
# Load test of the push server's hot path on loopback, against the code of another git ref
# (main by default) measured in the same run:
#
#   accepts  wrk -t1 -c16 POSTing JSON pushes to one follower (`POST /api/v1/push` with a
#            user key) while the delivery worker runs against `huixin emulator`: requests per
#            second, p99 latency, and the server's CPU time per push (utime + stime from
#            /proc/PID/stat around the run, divided by the requests wrk counted)
#   topic    one push to a 10 000-follower topic over the same API: the time until it is
#            answered (median of TOPIC_RUNS), i.e. until the push and every recipient row
#            are committed
#
# Each binary gets a fresh SQLite file, its own emulator (with the followers) and `huixin
# serve` with `[push] rate_limit_per_minute = 0` (wrk is one key) and `[log] level = "warn"`.
#
#   scripts/bench-push.sh                    # BASE=main DURATION=10s CONNECTIONS=16 ROUNDS=3
#   BASE_BIN=/path/to/huixin scripts/bench-push.sh   # an already built baseline
#   BASE= scripts/bench-push.sh              # this tree only
#   PUSH_RATE=0 scripts/bench-push.sh        # worker unpaced ([push] rate_per_second)
#
# The baseline is built once from a detached worktree of BASE (kept in target/bench-base/,
# with its own target dir there, so later runs reuse it while BASE has not moved).
# Any non-2xx answer during a run fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-16}
ROUNDS=${ROUNDS:-3}
TOPIC_FOLLOWERS=${TOPIC_FOLLOWERS:-10000}
TOPIC_RUNS=${TOPIC_RUNS:-7}
PUSH_RATE=${PUSH_RATE:-50}
BASE=${BASE-main}
BASE_BIN=${BASE_BIN:-}

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
command -v sqlite3 >/dev/null || { echo "sqlite3 is needed: apt-get install sqlite3" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is needed" >&2; exit 1; }

cargo build --release --quiet --bin huixin
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
declare -A bin=([new]="$TARGET_DIR/release/huixin")
labels=(new)

if [ -z "$BASE_BIN" ] && [ -n "$BASE" ]; then
  commit=$(git rev-parse --verify "$BASE^{commit}")
  base_dir=$TARGET_DIR/bench-base
  mkdir -p "$base_dir"
  if [ "$(cat "$base_dir/COMMIT" 2>/dev/null || true)" != "$commit" ] || [ ! -x "$base_dir/huixin" ]; then
    tree=$base_dir/tree
    git worktree remove --force "$tree" 2>/dev/null || rm -rf "$tree"
    git worktree prune
    git worktree add --detach --quiet "$tree" "$commit"
    # Seeded from this tree's release build, so only huixin itself is compiled again.
    if [ ! -d "$base_dir/target/release" ]; then
      mkdir -p "$base_dir/target"
      cp -a "$TARGET_DIR/release" "$base_dir/target/release"
    fi
    (cd "$tree" && CARGO_TARGET_DIR="$base_dir/target" cargo build --release --quiet --bin huixin)
    cp "$base_dir/target/release/huixin" "$base_dir/huixin"
    echo "$commit" >"$base_dir/COMMIT"
    git worktree remove --force "$tree"
  fi
  BASE_BIN=$base_dir/huixin
fi
if [ -n "$BASE_BIN" ]; then
  bin[base]=$BASE_BIN
  labels=(base new)
fi

work=$(mktemp -d)
pids=()
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
cleanup() {
  stop_all
  rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=scripts/traffic/ports.sh
. scripts/traffic/ports.sh

# The followers: o_bench_00000 … (the first gets the user key; all are in the topic).
followers_toml() {
  python3 -c "import sys; n=int(sys.argv[1]); print('[' + ', '.join('\"o_bench_%05d\"' % i for i in range(n)) + ']')" "$1"
}
FOLLOWERS=$(followers_toml "$TOPIC_FOLLOWERS")

write_config() { # dir server-port emulator-port
  cat >"$1/huixin.toml" <<EOF
[server]
listen = "127.0.0.1:$2"
[storage]
url = "sqlite://$1/huixin.db"
[wechat]
token = "benchToken"
app_id = "wx_bench"
app_secret = "bench_secret"
api_base = "http://127.0.0.1:$3"
[rules]
dir = "$PWD/rules"
[push]
template_id = "huixin_template_1"
rate_limit_per_minute = 0
rate_per_second = $PUSH_RATE
[emulator]
listen = "127.0.0.1:$3"
followers = $FOLLOWERS
[log]
level = "warn"
EOF
}

# A wrk script POSTing one JSON push (key from the environment) per request.
cat >"$work/push.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("PUSH_KEY")
wrk.body = '{"title": "Disk almost full", "body": "## db-1\\n\\n- /var: **92%** used\\n- grows 1.2 GiB a day\\n\\n[Dashboard](https://example.com/disks)", "url": "https://example.com/disks/db-1"}'
EOF

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
to_ms() { # wrk latency (850.00us, 1.20ms, 2.00s) -> milliseconds
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.2f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.2f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.2f", v * 1000 }
    else print v }'
}

# One round for one binary: writes "req/s p99_ms cpu_us_per_push topic_ms committed requests"
# to $work/result.
run_case() { # label
  local b=${bin[$1]} dir port emport server key topic_key out requests rps p99 before after
  dir=$(mktemp -d -p "$work")
  port=$(free_port)
  emport=$(free_port)
  write_config "$dir" "$port" "$emport"
  (cd "$dir" && exec "$b" emulator >"$dir/emulator.log" 2>&1) & pids+=($!)
  key=$(cd "$dir" && "$b" keys create --user o_bench_00000 --label bench)
  (cd "$dir" && "$b" topics add bench >/dev/null)
  topic_key=$(cd "$dir" && "$b" keys create --topic bench --label bench)
  sqlite3 -cmd ".timeout 3000" "$dir/huixin.db" "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $TOPIC_FOLLOWERS) INSERT INTO topic_members (topic, openid, joined_at) SELECT 'bench', printf('o_bench_%05d', i), 0 FROM n;"
  (cd "$dir" && exec "$b" serve >"$dir/serve.log" 2>&1) & server=$!
  pids+=("$server")
  wait_port "$emport"
  wait_port "$port"
  local api="http://127.0.0.1:$port/api/v1/push"
  # Checked once, and the token fetched, before anything is timed.
  curl -sf -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    -d '{"title": "warm up"}' "$api" | grep -q '"recipients":1' \
    || { echo "$1: the push API does not accept a push" >&2; cat "$dir/serve.log" >&2; exit 1; }

  before=$(cpu_ticks "$server")
  out=$(PUSH_KEY=$key wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$work/push.lua" "$api")
  after=$(cpu_ticks "$server")
  if grep -q "Non-2xx\|Socket errors" <<<"$out"; then
    echo "$out" >&2
    echo "$1: errors during the run" >&2
    exit 1
  fi
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
  p99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
  local tick_us=$((1000000 / $(getconf CLK_TCK)))
  local cpu_us=$(((after - before) * tick_us / requests))
  local committed
  committed=$(sqlite3 -cmd ".timeout 3000" "$dir/huixin.db" "SELECT COUNT(*) - 1 FROM pushes;" | tail -1)

  # The topic push, answered once its push and recipient rows are committed.
  local times=""
  for _ in $(seq "$TOPIC_RUNS"); do
    local t
    t=$(curl -s -o "$dir/topic.json" -w '%{http_code} %{time_total}' \
      -H "Authorization: Bearer $topic_key" -H 'Content-Type: application/json' \
      -d '{"title": "Release 2.4 is out", "body": "Changelog: https://example.com/2.4"}' "$api")
    [ "${t%% *}" = 200 ] && grep -q "\"recipients\":$TOPIC_FOLLOWERS" "$dir/topic.json" \
      || { echo "$1: the topic push failed: $t $(cat "$dir/topic.json")" >&2; exit 1; }
    times="$times $(awk -v s="${t#* }" 'BEGIN {printf "%.1f", s * 1000}')"
  done
  echo "  $1 topic pushes (ms):$times" >&2
  echo "$rps $p99 $cpu_us $(echo "$times" | median) $committed $requests" >"$work/result"
  stop_all
}

echo "# huixin push accepts: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), wrk -t1 -c$CONNECTIONS -d$DURATION, $ROUNDS rounds, worker rate_per_second = $PUSH_RATE"
[ -n "${bin[base]:-}" ] && echo "base: $BASE ${commit:-($BASE_BIN)}"
echo
declare -A rps=() p99=() cpu=() topic=()
for round in $(seq "$ROUNDS"); do
  for l in "${labels[@]}"; do
    run_case "$l"
    read -r r p c t committed requests <"$work/result"
    echo "  round $round, $l: $r req/s, p99 $p ms, $c µs CPU/push, topic push $t ms, $committed pushes committed for $requests answered" >&2
    rps[$l]="${rps[$l]:-} $r"
    p99[$l]="${p99[$l]:-} $p"
    cpu[$l]="${cpu[$l]:-} $c"
    topic[$l]="${topic[$l]:-} $t"
  done
done
echo "| build | accepts/s | p99 (ms) | server CPU per push (µs) | $TOPIC_FOLLOWERS-follower topic push (ms) |"
echo "|---|---:|---:|---:|---:|"
for l in "${labels[@]}"; do
  echo "| $l | $(echo "${rps[$l]}" | median) | $(echo "${p99[$l]}" | median) | $(echo "${cpu[$l]}" | median) | $(echo "${topic[$l]}" | median) |"
done
echo
echo "Medians of $ROUNDS rounds; each round's figures are on stderr."
