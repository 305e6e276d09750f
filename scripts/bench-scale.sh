#!/usr/bin/env bash
# Scale-out benchmark: huixin on PostgreSQL with 1, 2 and 3 `huixin serve` processes behind
# nginx, beside SQLite with 1 process, on loopback (the processes, nginx, PostgreSQL and wrk
# share this machine's cores).
#
#   callback  traffic as WeChat sends it, as in scripts/bench-traffic.sh (plain mode, every
#             request a distinct text message from a distinct user, the current timestamp, none
#             repeated, the shipped rules), wrk -t1 -c32 through nginx (`hash $arg_openid
#             consistent`, keepalive to the processes, one worker). Rows, measured in turn in
#             each round: the bare axum reference direct, SQLite with 1 process direct (the
#             headline's configuration) and behind nginx, PostgreSQL with 1, 2 and 3 processes
#             behind nginx. Columns: req/s, p99, CPU µs per request of the huixin processes
#             (summed), of PostgreSQL (the postmaster and its children) and of nginx; on
#             PostgreSQL, SQL statements (pg_stat_statements) and transactions (pg_stat_database)
#             per message answered.
#   push      one push to a TOPIC_FOLLOWERS-follower topic with `huixin emulator` as WeChat,
#             `[push] rate_per_second = 0`, default concurrency: the time from the push accepted
#             to every recipient `sent` (polled every 100 ms), the sends per second, and the CPU
#             per send; PostgreSQL with 1 and 3 processes, SQLite with 1. Each run checks that
#             the emulator got exactly one template send per follower, all accepted.
#
#   scripts/bench-scale.sh        # DURATION=10s CONNECTIONS=32 ROUNDS=3 COUNT=900000 PARTS="callback push"
#   DURATION=3s ROUNDS=1 COUNT=400000 scripts/bench-scale.sh   # a quick check that it runs
#   SERVE_BIN=/path/to/huixin scripts/bench-scale.sh           # another build of huixin
#   PG_EXTRA="-c shared_buffers=512MB" scripts/bench-scale.sh  # more PostgreSQL server options
#   ROWS="pg-2 pg-3" PARTS=callback scripts/bench-scale.sh     # some callback rows beside the
#                        # reference: sqlite-direct sqlite-nginx pg-1 pg-2 pg-3 (default all)
#
# Every PostgreSQL row runs on a fresh database (dropped after it) of one throwaway cluster
# started here with PostgreSQL's durable settings (scripts/postgres.sh, PG_DURABLE=1) and
# pg_stat_statements, stopped at exit; every SQLite row on a fresh file. Processes get SETTLE
# seconds (3) after they listen to see each other's beats before anything is timed. Needs wrk,
# nginx, PostgreSQL (Debian's `postgresql`), sqlite3, curl, python3. Prints markdown tables
# (medians of the rounds); each round's figures, and any warning or error the huixin processes
# logged, go to stderr. Any non-2xx answer, socket error or repeated request fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
ROUNDS=${ROUNDS:-3}
COUNT=${COUNT:-900000}
SETTLE=${SETTLE:-3}
TOPIC_FOLLOWERS=${TOPIC_FOLLOWERS:-10000}
PUSH_ROUNDS=${PUSH_ROUNDS:-$ROUNDS}
PARTS=${PARTS:-callback push}
PG_EXTRA=${PG_EXTRA:-}
ROWS=${ROWS:-}
TOKEN=benchToken
APP_ID=wx49f0ab532d5d035a
AES_KEY=kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR

for tool in wrk nginx psql sqlite3 curl python3; do
  command -v "$tool" >/dev/null || { echo "$tool is needed (apt-get install $tool; psql: postgresql)" >&2; exit 1; }
done
cargo build --release --quiet --bin huixin --example bare_axum
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
BIN=${SERVE_BIN:-$TARGET_DIR/release/huixin}
REF=$TARGET_DIR/release/examples/bare_axum
TICK_US=$((1000000 / $(getconf CLK_TCK)))

work=$(mktemp -d)
# PostgreSQL runs as the postgres user and nginx's worker as nobody when this runs as root.
chmod 755 "$work"
pids=()
pg_started=""
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
cleanup() {
  stop_all
  if [ -n "$pg_started" ]; then scripts/postgres.sh stop "$work/pg" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=scripts/traffic/ports.sh
. scripts/traffic/ports.sh
column_median() { # file column -> the median of the column's values ("-" where none)
  awk -v c="$2" '$c != "-" {print $c}' "$1" | sort -g | awk '{a[NR] = $1} END {print NR ? a[int((NR + 1) / 2)] : "-"}'
}
to_ms() { # wrk latency (850.00us, 1.20ms, 2.00s) -> milliseconds
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.2f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.2f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.2f", v * 1000 }
    else print v }'
}
seconds() { # 10s, 2m, 1h -> seconds
  case "$1" in
    *h) echo $((${1%h} * 3600)) ;;
    *m) echo $((${1%m} * 60)) ;;
    *s) echo "${1%s}" ;;
    *) echo "$1" ;;
  esac
}
now_ms() { date +%s%3N; }

# CPU ticks (user + system) of a process, of the children it has reaped, and of its live
# children: a postmaster's backends and an nginx master's worker are counted even when they
# exit between two readings. Fields after "pid (comm) ": $12 utime, $13 stime, $14 cutime,
# $15 cstime.
ticks_tree() { # pid
  local total child
  total=$(sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13 + $14 + $15}')
  for child in $(pgrep -P "$1" || true); do
    total=$((total + $(sed 's/^.*) //' "/proc/$child/stat" 2>/dev/null | awk '{print $12 + $13}' || echo 0)))
  done
  echo "$total"
}
ticks_sum() { # pid... -> the sum of ticks_tree
  local total=0 p
  for p in "$@"; do total=$((total + $(ticks_tree "$p"))); done
  echo "$total"
}
per() { # ticks count -> µs per item
  awk -v t="$1" -v n="$2" -v u="$TICK_US" 'BEGIN {printf "%.0f", (n > 0) ? t * u / n : 0}'
}

# Warnings and errors the huixin processes logged (they run with [log] level = "warn"), on
# stderr: the count and the first few lines.
check_logs() { # label log...
  local label=$1 n
  shift
  n=$(cat "$@" | grep -c . || true)
  if [ "$n" -gt 0 ]; then
    echo "  $label: $n lines of warnings or errors in huixin's logs, the first:" >&2
    cat "$@" | head -5 | cut -c1-400 | sed 's/^/    /' >&2
  fi
}

# --- PostgreSQL: one durable cluster with pg_stat_statements for the whole run ----------------
PG=""
PM=""
start_pg() {
  [ -n "$PG" ] && return 0
  mkdir -p "$work/pg"
  pg_started=1
  local url
  url=$(PG_DURABLE=1 PG_OPTIONS="-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.max=20000 $PG_EXTRA" \
    scripts/postgres.sh start "$work/pg")
  PG=${url%/postgres}
  PM=$(head -1 "$work/pg/data/postmaster.pid")
  pg postgres "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"
}
pg() { # database sql -> unaligned rows
  psql -X -q -At -v ON_ERROR_STOP=1 "$PG/$1" -c "$2"
}
new_db() { # name
  pg postgres "CREATE DATABASE $1"
  pg "$1" "CREATE EXTENSION pg_stat_statements"
}
drop_db() { pg postgres "DROP DATABASE IF EXISTS $1 WITH (FORCE)"; }
# Statements run in database $1 (pg_stat_statements, filled at each statement's end) and its
# transactions (pg_stat_database, which backends flush at most every second: read it after a
# pause). Read from the postgres database, so these reads count in neither.
pg_counts() { # database -> "statements transactions"
  pg postgres "SELECT (SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE dbid = d.oid),
                      (SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datid = d.oid)
               FROM pg_database d WHERE datname = '$1'" | tr '|' ' '
}

# --- huixin processes ---------------------------------------------------------------------
serve_pids=()
serve_logs=()
start_serve() { # config dir ports... : starts one `huixin serve` per port in dir
  local config=$1 dir=$2 port i=0
  shift 2
  serve_pids=()
  serve_logs=()
  for port in "$@"; do
    (cd "$dir" && HUIXIN_SERVER_LISTEN="127.0.0.1:$port" exec "$BIN" serve --config "$config" \
      >"$dir/serve-$i.out" 2>"$dir/serve-$i.log") &
    serve_pids+=($!)
    pids+=($!)
    serve_logs+=("$dir/serve-$i.log")
    i=$((i + 1))
  done
  for port in "$@"; do wait_port "$port"; done
}

# --- part 1: callback load -------------------------------------------------------------------
callback_config() { # file storage-url
  cat >"$1" <<TOML
[server]
listen = "127.0.0.1:0"
[storage]
url = "$2"
[wechat]
token = "$TOKEN"
app_id = "$APP_ID"
encoding_aes_key = "$AES_KEY"
mode = "plain"
[rules]
dir = "$PWD/rules"
[log]
level = "warn"
TOML
}

# COUNT signed requests, one per line: "path?query<TAB>body", users and MsgIds from `seed`
# (as scripts/bench-traffic.sh signs them, plain mode).
sign() { # seed out
  python3 scripts/traffic/sign.py "$1" "$2" "$COUNT" "$TOKEN" plain "$AES_KEY" "$APP_ID"
}


# Requests are signed with the time they are signed at, and huixin refuses timestamps older
# than 300 s: a new batch (new users) whenever the next run could end past 250 s (wrk takes
# a few seconds to load them, and the processes SETTLE).
signed_at=0
seed=0
fresh_requests() {
  if [ $(($(date +%s) - signed_at + $(seconds "$DURATION") + SETTLE + 30)) -gt 250 ]; then
    seed=$((seed + 1))
    signed_at=$(date +%s)
    sign "$seed" "$work/req.txt"
  fi
}

nginx_pid=""
start_nginx() { # port upstream-ports...
  local port=$1 ng=$work/nginx up
  shift
  rm -rf "$ng"
  mkdir -p "$ng"
  chmod 755 "$ng"
  for up in "$@"; do printf '    server 127.0.0.1:%s;\n' "$up"; done >"$ng/servers"
  cat >"$ng/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $ng/nginx.pid;
error_log $ng/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $ng/body;
  proxy_temp_path $ng/proxy;
  fastcgi_temp_path $ng/fastcgi;
  uwsgi_temp_path $ng/uwsgi;
  scgi_temp_path $ng/scgi;
  # wrk keeps its connections; so does nginx to the processes (the default closes both
  # every 1000 requests).
  keepalive_requests 1000000;
  upstream huixin {
    hash \$arg_openid consistent;
$(cat "$ng/servers")
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$port;
    location / {
      proxy_pass http://huixin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
  nginx -p "$ng" -e "$ng/error.log" -c "$ng/nginx.conf" &
  nginx_pid=$!
  pids+=("$nginx_pid")
  wait_port "$port"
}

# One row of one round. kind: reference | sqlite | pg; via: direct | nginx. Appends
# "req/s p99_ms server_cpu pg_cpu nginx_cpu statements transactions" to $work/res/$label.
callback_row() { # label kind processes via round
  local label=$1 kind=$2 n=$3 via=$4 round=$5 dir db="" url ports=() port target i
  dir="$work/$label"
  rm -rf "$dir"
  mkdir -p "$dir"
  fresh_requests
  case $kind in
    reference)
      port=$(free_port)
      callback_config "$dir/ref.toml" "sqlite://$dir/ref.db"
      sed -i "s/127.0.0.1:0/127.0.0.1:$port/" "$dir/ref.toml"
      HUIXIN_CONFIG="$dir/ref.toml" "$REF" >"$dir/ref.log" 2>&1 &
      serve_pids=($!)
      serve_logs=()
      pids+=($!)
      wait_port "$port"
      ports=("$port")
      ;;
    sqlite | pg)
      if [ "$kind" = pg ]; then
        db="bench_${label//-/_}_r$round"
        new_db "$db"
        url="$PG/$db"
      else
        url="sqlite://$dir/huixin.db"
      fi
      callback_config "$dir/huixin.toml" "$url"
      for i in $(seq "$n"); do ports+=("$(free_port)"); done
      start_serve "$dir/huixin.toml" "$dir" "${ports[@]}"
      ;;
  esac
  target=${ports[0]}
  if [ "$via" = nginx ]; then
    target=$(free_port)
    start_nginx "$target" "${ports[@]}"
  fi
  [ "$kind" = reference ] || sleep "$SETTLE"

  local c0 c1 s0 out st0 st1 xa0 xa1
  [ -n "$db" ] && { pg postgres "SELECT pg_stat_statements_reset()" >/dev/null; s0=$(pg_counts "$db"); }
  local pg0=0 ng0=0 pg1=0 ng1=0
  c0=$(ticks_sum "${serve_pids[@]}")
  [ -n "$db" ] && pg0=$(ticks_tree "$PM")
  [ -n "$nginx_pid" ] && ng0=$(ticks_tree "$nginx_pid")
  out=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s scripts/traffic/traffic.lua "http://127.0.0.1:$target" -- "$work/req.txt")
  c1=$(ticks_sum "${serve_pids[@]}")
  [ -n "$db" ] && pg1=$(ticks_tree "$PM")
  [ -n "$nginx_pid" ] && ng1=$(ticks_tree "$nginx_pid")
  if grep -q "Non-2xx\|Socket errors" <<<"$out"; then
    echo "$out" >&2
    echo "$label: errors during the run" >&2
    [ "$kind" = reference ] || check_logs "$label" "${serve_logs[@]}"
    exit 1
  fi
  local total rps p99 stmts="" xacts="" logged=""
  total=$(awk '/requests in/ {print $1}' <<<"$out")
  rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
  p99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
  if [ "$total" -gt "$COUNT" ]; then
    echo "wrk sent $total requests but only $COUNT distinct ones were signed: the rest were retries. Raise COUNT." >&2
    exit 1
  fi
  if [ -n "$db" ]; then
    sleep 1.5
    read -r st1 xa1 <<<"$(pg_counts "$db")"
    read -r st0 xa0 <<<"$s0"
    stmts=$(awk -v a="$st0" -v b="$st1" -v t="$total" 'BEGIN {printf "%.3f", (b - a) / t}')
    xacts=$(awk -v a="$xa0" -v b="$xa1" -v t="$total" 'BEGIN {printf "%.3f", (b - a) / t}')
    if [ "$round" = "$ROUNDS" ]; then
      # Where the statements go, in the last round: the most frequent, per message.
      echo "  $label, statements by calls (calls per message, µs per message executing [planning], statement):" >&2
      pg postgres "SELECT round(s.calls::numeric / $total, 4),
                          round((s.total_exec_time * 1000 / $total)::numeric, 1) || ' [' ||
                            round((s.total_plan_time * 1000 / $total)::numeric, 1) || ']',
                          left(regexp_replace(s.query, '\s+', ' ', 'g'), 100)
                   FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
                   WHERE d.datname = '$db' ORDER BY s.calls DESC LIMIT 6" | tr '|' ' ' | sed 's/^/    /' >&2
    fi
    local dealloc
    dealloc=$(pg postgres "SELECT dealloc FROM pg_stat_statements_info")
    [ "$dealloc" = 0 ] || echo "  $label: pg_stat_statements evicted statements ($dealloc): the statement count is low" >&2
  fi

  stop_all
  nginx_pid=""
  if [ "$kind" != reference ]; then
    # Every answered message is in the inbound log once the processes have flushed at exit.
    if [ -n "$db" ]; then
      logged=$(pg "$db" "SELECT count(*) FROM inbound_log")
      drop_db "$db"
    else
      logged=$(sqlite3 "$dir/huixin.db" "SELECT count(*) FROM inbound_log")
    fi
    check_logs "$label" "${serve_logs[@]}"
  fi
  if [ "$via" = nginx ] && grep -qv '\[notice\]' "$work/nginx/error.log"; then
    grep -v '\[notice\]' "$work/nginx/error.log" | head -3 | sed "s/^/  $label nginx: /" >&2
  fi
  rm -rf "$dir"

  local cpu pgc="" ngc=""
  cpu=$(per $((c1 - c0)) "$total")
  [ -n "$db" ] && pgc=$(per $((pg1 - pg0)) "$total")
  [ "$via" = nginx ] && ngc=$(per $((ng1 - ng0)) "$total")
  echo "  round $round, $label: $rps req/s, p99 $p99 ms, CPU µs/req huixin ${cpu} pg ${pgc:--} nginx ${ngc:--}, statements/msg ${stmts:--}, transactions/msg ${xacts:--}; $total answered${logged:+, $logged logged}" >&2
  echo "$rps $p99 $cpu ${pgc:--} ${ngc:--} ${stmts:--} ${xacts:--}" >>"$work/res/$label"
}

callback_part() {
  local rows=(
    "reference|reference|1|direct|reference (bare axum), direct"
    "sqlite-direct|sqlite|1|direct|SQLite, 1 process, direct"
    "sqlite-nginx|sqlite|1|nginx|SQLite, 1 process behind nginx"
    "pg-1|pg|1|nginx|PostgreSQL, 1 process behind nginx"
    "pg-2|pg|2|nginx|PostgreSQL, 2 processes behind nginx"
    "pg-3|pg|3|nginx|PostgreSQL, 3 processes behind nginx"
  )
  local row label kind n via name round kept=()
  # ROWS picks some of them (the reference always runs: the ratios are to it).
  for row in "${rows[@]}"; do
    label=${row%%|*}
    if [ "$label" = reference ] || [ -z "$ROWS" ] || [[ " $ROWS " == *" $label "* ]]; then kept+=("$row"); fi
  done
  rows=("${kept[@]}")
  mkdir -p "$work/res"
  for round in $(seq "$ROUNDS"); do
    for row in "${rows[@]}"; do
      IFS='|' read -r label kind n via name <<<"$row"
      callback_row "$label" "$kind" "$n" "$via" "$round"
    done
  done

  echo "## Callback load: traffic as WeChat sends it, plain mode (wrk -t1 -c$CONNECTIONS -d$DURATION, median of $ROUNDS)"
  echo
  echo "| target | req/s | p99 | huixin CPU µs/req | PostgreSQL CPU µs/req | nginx CPU µs/req | SQL statements/msg | transactions/msg |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  local ref_rps="" col vals=()
  for row in "${rows[@]}"; do
    IFS='|' read -r label kind n via name <<<"$row"
    vals=()
    for col in 1 2 3 4 5 6 7; do
      vals+=("$(column_median "$work/res/$label" "$col")")
    done
    [ "$kind" = reference ] && ref_rps=${vals[0]}
    awk -v name="$name" -v r="$ref_rps" -v kind="$kind" \
      -v rps="${vals[0]}" -v p99="${vals[1]}" -v cpu="${vals[2]}" -v pgc="${vals[3]:--}" \
      -v ngc="${vals[4]:--}" -v st="${vals[5]:--}" -v xa="${vals[6]:--}" 'BEGIN {
        ratio = (kind == "reference") ? "" : sprintf(" (%.2f×)", rps / r)
        printf "| %s | %s%s | %s ms | %s | %s | %s | %s | %s |\n", name, rps, ratio, p99, cpu, pgc, ngc, st, xa
      }'
  done
  echo
  echo "Per request answered. huixin CPU: the processes' user + system time summed (for the reference,"
  echo "its own); PostgreSQL: the postmaster and every process it started. Statements: pg_stat_statements'"
  echo "calls in the row's database, BEGIN and COMMIT included: each is one round trip to the server."
}

# --- part 2: push delivery -------------------------------------------------------------------
FOLLOWERS=$(python3 -c "import sys; n=int(sys.argv[1]); print('[' + ', '.join('\"o_bench_%05d\"' % i for i in range(n)) + ']')" "$TOPIC_FOLLOWERS")

push_config() { # file storage-url emulator-port
  cat >"$1" <<EOF
[server]
listen = "127.0.0.1:0"
[storage]
url = "$2"
[wechat]
token = "$TOKEN"
app_id = "wx_bench"
app_secret = "bench_secret"
api_base = "http://127.0.0.1:$3"
[rules]
dir = "$PWD/rules"
[push]
template_id = "huixin_template_1"
rate_limit_per_minute = 0
rate_per_second = 0
[emulator]
listen = "127.0.0.1:$3"
followers = $FOLLOWERS
[log]
level = "warn"
EOF
}

# Recipients of push `seq` in the given states.
recipients() { # kind db-or-file seq states
  local sql="SELECT count(*) FROM push_recipients WHERE push_seq = $3 AND state IN ($4)"
  if [ "$1" = pg ]; then pg "$2" "$sql"; else sqlite3 -cmd ".timeout 3000" "$2" "$sql" | tail -1; fi
}
push_seq() { # kind db-or-file id
  local sql="SELECT seq FROM pushes WHERE id = '$3'"
  if [ "$1" = pg ]; then pg "$2" "$sql"; else sqlite3 -cmd ".timeout 3000" "$2" "$sql" | tail -1; fi
}

# One delivery; appends "seconds sends/s huixin_cpu pg_cpu last_send_ms" to $work/push/$label.
push_run() { # label kind processes round
  local label=$1 kind=$2 n=$3 round=$4 dir db="" url store emport ports=() i
  dir="$work/$label"
  rm -rf "$dir"
  mkdir -p "$dir"
  emport=$(free_port)
  if [ "$kind" = pg ]; then
    db="push_${label//-/_}_r$round"
    new_db "$db"
    url="$PG/$db"
    store=$db
  else
    url="sqlite://$dir/huixin.db"
    store="$dir/huixin.db"
  fi
  push_config "$dir/huixin.toml" "$url" "$emport"
  (cd "$dir" && exec "$BIN" emulator >"$dir/emulator.log" 2>&1) &
  pids+=($!)
  local user_key topic_key
  user_key=$(cd "$dir" && "$BIN" keys create --user o_bench_00000 --label bench)
  (cd "$dir" && "$BIN" topics add bench >/dev/null)
  topic_key=$(cd "$dir" && "$BIN" keys create --topic bench --label bench)
  if [ "$kind" = pg ]; then
    pg "$db" "INSERT INTO topic_members (topic, openid, joined_at)
              SELECT 'bench', 'o_bench_' || lpad(i::text, 5, '0'), 0 FROM generate_series(0, $TOPIC_FOLLOWERS - 1) AS i" >/dev/null
  else
    sqlite3 -cmd ".timeout 3000" "$store" "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $TOPIC_FOLLOWERS) INSERT INTO topic_members (topic, openid, joined_at) SELECT 'bench', printf('o_bench_%05d', i), 0 FROM n;"
  fi
  for i in $(seq "$n"); do ports+=("$(free_port)"); done
  start_serve "$dir/huixin.toml" "$dir" "${ports[@]}"
  wait_port "$emport"
  sleep "$SETTLE"
  local api="http://127.0.0.1:${ports[0]}/api/v1/push" answer id seq
  # A push to one follower first, so the access token is fetched before anything is timed.
  answer=$(curl -sf -H "Authorization: Bearer $user_key" -H 'Content-Type: application/json' \
    -d '{"title": "warm up"}' "$api") \
    || { echo "$label: the push API does not accept a push" >&2; check_logs "$label" "${serve_logs[@]}"; exit 1; }
  id=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])' <<<"$answer")
  seq=$(push_seq "$kind" "$store" "$id")
  for _ in $(seq 100); do
    [ "$(recipients "$kind" "$store" "$seq" "'sent', 'delivered'")" = 1 ] && break
    sleep 0.1
  done
  [ "$(recipients "$kind" "$store" "$seq" "'sent', 'delivered'")" = 1 ] \
    || { echo "$label: the warm-up push was not delivered in 10 s" >&2; check_logs "$label" "${serve_logs[@]}"; exit 1; }
  curl -sf -X DELETE "http://127.0.0.1:$emport/emulator/calls" >/dev/null

  local c0 c1 pg0=0 pg1=0 t0 t1 done_count
  c0=$(ticks_sum "${serve_pids[@]}")
  [ -n "$db" ] && pg0=$(ticks_tree "$PM")
  answer=$(curl -sf -H "Authorization: Bearer $topic_key" -H 'Content-Type: application/json' \
    -d '{"title": "Release 2.4 is out", "body": "Changelog: https://example.com/2.4"}' "$api") \
    || { echo "$label: the topic push failed" >&2; check_logs "$label" "${serve_logs[@]}"; exit 1; }
  t0=$(now_ms)
  grep -q "\"recipients\":$TOPIC_FOLLOWERS" <<<"$answer" \
    || { echo "$label: the topic push reached the wrong number of recipients: $answer" >&2; exit 1; }
  id=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])' <<<"$answer")
  seq=$(push_seq "$kind" "$store" "$id")
  while true; do
    done_count=$(recipients "$kind" "$store" "$seq" "'sent', 'delivered'")
    t1=$(now_ms)
    [ "$done_count" = "$TOPIC_FOLLOWERS" ] && break
    if [ $((t1 - t0)) -gt 300000 ]; then
      echo "$label: $done_count of $TOPIC_FOLLOWERS recipients sent after 300 s" >&2
      check_logs "$label" "${serve_logs[@]}"
      exit 1
    fi
    sleep 0.1
  done
  c1=$(ticks_sum "${serve_pids[@]}")
  [ -n "$db" ] && pg1=$(ticks_tree "$PM")
  local each=() p
  for p in "${serve_pids[@]}"; do each+=("$(ticks_tree "$p")"); done

  # The emulator saw each follower exactly once, every send accepted.
  local calls failed
  calls=$(curl -sf "http://127.0.0.1:$emport/emulator/calls?path=/cgi-bin/message/template/send" \
    | python3 -c '
import json, sys
calls = json.load(sys.stdin)
users = [c["body"]["touser"] for c in calls]
refused = sum(1 for c in calls if c["errcode"] != 0)
last = max((c["at_ms"] for c in calls), default=0)
print(len(calls), len(set(users)), refused, last)')
  failed=$(recipients "$kind" "$store" "$seq" "'failed'")
  read -r sends distinct refused last_ms <<<"$calls"
  if [ "$sends" != "$TOPIC_FOLLOWERS" ] || [ "$distinct" != "$TOPIC_FOLLOWERS" ] || [ "$refused" != 0 ] || [ "$failed" != 0 ]; then
    echo "$label: the emulator got $sends template sends to $distinct followers ($refused refused), $failed recipients failed; expected $TOPIC_FOLLOWERS each, once" >&2
    check_logs "$label" "${serve_logs[@]}"
    exit 1
  fi

  stop_all
  check_logs "$label" "${serve_logs[@]}"
  [ -n "$db" ] && drop_db "$db"
  rm -rf "$dir"

  local secs rate cpu pgc="-" last
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", (b - a) / 1000}')
  rate=$(awk -v a="$t0" -v b="$t1" -v n="$TOPIC_FOLLOWERS" 'BEGIN {printf "%.0f", n * 1000 / (b - a)}')
  last=$(awk -v a="$t0" -v b="$last_ms" 'BEGIN {printf "%.2f", (b - a) / 1000}')
  cpu=$(per $((c1 - c0)) "$TOPIC_FOLLOWERS")
  [ -n "$db" ] && pgc=$(per $((pg1 - pg0)) "$TOPIC_FOLLOWERS")
  echo "  round $round, $label: all $TOPIC_FOLLOWERS sent after $secs s (last send at the emulator after $last s), $rate sends/s, CPU µs/send huixin $cpu pg $pgc; CPU ticks per process since start: ${each[*]}" >&2
  echo "$secs $rate $cpu $pgc $last" >>"$work/push/$label"
}

push_part() {
  local rows=(
    "push-pg-1|pg|1|PostgreSQL, 1 process"
    "push-pg-3|pg|3|PostgreSQL, 3 processes"
    "push-sqlite-1|sqlite|1|SQLite, 1 process"
  )
  local row label kind n name round col vals=()
  mkdir -p "$work/push"
  for round in $(seq "$PUSH_ROUNDS"); do
    for row in "${rows[@]}"; do
      IFS='|' read -r label kind n name <<<"$row"
      push_run "$label" "$kind" "$n" "$round"
    done
  done
  echo "## Push delivery: one push to a $TOPIC_FOLLOWERS-follower topic, rate_per_second = 0, default concurrency (median of $PUSH_ROUNDS)"
  echo
  echo "| store, processes | all sent after | sends/s | last send at the emulator after | huixin CPU µs/send | PostgreSQL CPU µs/send |"
  echo "|---|---:|---:|---:|---:|---:|"
  for row in "${rows[@]}"; do
    IFS='|' read -r label kind n name <<<"$row"
    vals=()
    for col in 1 3 4 5; do
      vals[col - 1]=$(column_median "$work/push/$label" "$col")
    done
    # The rate from the median time, so the two agree with an even number of rounds too.
    echo "| $name | ${vals[0]} s | $(awk -v s="${vals[0]}" -v n="$TOPIC_FOLLOWERS" 'BEGIN {printf "%.0f", n / s}') | ${vals[4]} s | ${vals[2]} | ${vals[3]:--} |"
  done
  echo
  echo "From the push accepted (its answer) to every recipient recorded sent (polled every 100 ms;"
  echo "sends/s from that time); the emulator's clock for its last send. The emulator got exactly one"
  echo "template send per follower in every run."
}

echo "# huixin scale-out: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), PostgreSQL $(psql --version | awk '{print $3}') (durable defaults), nginx $(nginx -v 2>&1 | sed 's|.*/||'), wrk -t1 -c$CONNECTIONS -d$DURATION, $ROUNDS rounds, $COUNT distinct users per batch of requests, $SETTLE s settle${PG_EXTRA:+, PostgreSQL options: $PG_EXTRA}"
echo
start_pg
for part in $PARTS; do
  case $part in
    callback) callback_part ;;
    push) push_part ;;
    *) echo "unknown part $part (callback, push)" >&2; exit 2 ;;
  esac
  echo
done
