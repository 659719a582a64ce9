#!/usr/bin/env bash
# tests/bench/bench_whoami.sh: authenticated GET /v1/whoami over HTTPS (every request
# durably audited) with wrk and 64 keep-alive connections, next to nginx serving a 1 KiB
# file over HTTPS with the same certificate, on the same machine in the same run.
# Checks that every answered request has its audit event. Run as root (scripts/bench.sh).
#   SLUICE_BIN       the sluice binary (default: build/bin/sluice of this repository)
#   BENCH_DURATION   wrk duration per side (default 20s)
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
sluice=${SLUICE_BIN:-$repo/build/bin/sluice}
duration=${BENCH_DURATION:-20s}
conns=64
pg_bin=/usr/lib/postgresql/15/bin
hz=$(getconf CLK_TCK)

die() { echo "bench_whoami: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (the gateway drops to the sluice user itself)"
[ -x "$sluice" ] || die "no sluice binary at $sluice (set SLUICE_BIN or run scripts/bench.sh)"
for p in wrk nginx curl psql python3; do
  command -v "$p" >/dev/null || die "$p is missing (scripts/deps.sh --bench)"
done

data=$(mktemp -d /tmp/slb-XXXX)   # short: PostgreSQL's socket path lives under it
work=$(mktemp -d /tmp/slbn-XXXX)  # nginx's prefix, logs, wrk output
sluice_pid=""
nginx_pid=""

# shellcheck source=tests/bench/lib.sh
. "$(dirname "$0")/lib.sh"

# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  bench_stop_nginx "$nginx_pid"
  bench_stop_sluice bench_whoami "$sluice_pid" "$data"
  bench_show_log bench_whoami "$rc" "$work/sluice.log"
  rm -rf "$data" "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# CPU ticks (user + system) used so far by a process tree: the process (all its threads),
# its live children, and the children it has reaped (backends and workers that ended).
cpu_tree() {
  local pid=$1 kid total
  total=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$pid/stat" 2>/dev/null || echo 0)
  for kid in $(pgrep -P "$pid" || true); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$kid/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}

# audit writer counters from /metrics: events, commits, seconds spent committing
audit_metrics() {
  curl -skf --max-time 5 -H "Authorization: Bearer $token" "https://127.0.0.1:$port/metrics" |
    awk '$1 == "sluice_audit_events_total" { e = $2 } $1 == "sluice_audit_commits_total" { c = $2 }
         $1 == "sluice_audit_commit_seconds_sum" { s = $2 } END { print e + 0, c + 0, s + 0 }'
}

psql_q() {
  psql -X -A -t -q "host=$data/pg/run dbname=sluice user=sluice_admin" -c "$1"
}

# wrk with the admin token; prints wrk's report to $2 and the CPU seconds wrk used to $2.cpu
run_wrk() {
  local url=$1 out=$2 s0 s1
  s0=$(awk '{print $14 + $15 + $16 + $17}' /proc/$$/stat)
  wrk -t2 -c"$conns" -d"$duration" --latency -H "Authorization: Bearer $token" "$url" >"$out"
  # wrk was waited for by this shell: its CPU shows in our children's times
  s1=$(awk '{print $14 + $15 + $16 + $17}' /proc/$$/stat)
  echo $((s1 - s0)) >"$out.cpu"
}

field() { # field FILE: Requests/sec, total requests, non-2xx, socket errors, p50, p99
  awk '
    /^Requests\/sec:/ { rps = $2 }
    / requests in / { total = $1 }
    /Non-2xx or 3xx responses:/ { bad = $NF }
    /Socket errors:/ { sub(/^ *Socket errors: */, ""); errs = $0 }
    $1 == "50%" { p50 = $2 }
    $1 == "99%" { p99 = $2 }
    END { printf "%s %s %s %s %s \"%s\"\n", rps, total, bad + 0, p50, p99, errs }' "$1"
}

secs() { awk -v t="$1" -v hz="$hz" 'BEGIN { printf "%.1f", t / hz }'; }

# ---- sluice ----
"$sluice" init --data-dir "$data" >/dev/null 2>"$work/init.log" ||
  { cat "$work/init.log" >&2; die "sluice init failed"; }
token=$(cat "$data/admin.token")
port=$(free_port)
"$sluice" serve --data-dir "$data" --listen "127.0.0.1:$port" >"$work/sluice.log" 2>&1 &
sluice_pid=$!
for i in $(seq 300); do
  curl -skf --max-time 2 "https://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  kill -0 "$sluice_pid" 2>/dev/null || die "sluice serve exited"
  [ "$i" -lt 300 ] || die "sluice did not answer /healthz in 60 s"
  sleep 0.2
done
code=$(curl -sk -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" \
  "https://127.0.0.1:$port/v1/whoami")
[ "$code" = 200 ] || die "GET /v1/whoami answered $code, not 200"

seq0=$(psql_q "SELECT coalesce(max(seq), 0) FROM audit_events")
postmaster=$(head -n 1 "$data/pg/data/postmaster.pid")
read -r m_ev0 m_co0 m_s0 < <(audit_metrics)
c_sl0=$(cpu_tree "$sluice_pid")
c_pg0=$(cpu_tree "$postmaster")
echo "bench_whoami: wrk -t2 -c$conns -d$duration against sluice on 127.0.0.1:$port" >&2
run_wrk "https://127.0.0.1:$port/v1/whoami" "$work/wrk-sluice.txt"
c_sl1=$(cpu_tree "$sluice_pid")
c_pg1=$(cpu_tree "$postmaster")
read -r m_ev1 m_co1 m_s1 < <(audit_metrics)
sleep 1 # requests in flight when wrk stopped finish and commit their events
read -r ev_all ev_ok ev_other < <(psql_q "SELECT count(*),
    count(*) FILTER (WHERE action = 'whoami' AND status = 200),
    count(*) FILTER (WHERE NOT (action = 'whoami' AND status = 200)
                     AND action <> 'http.connection')
  FROM audit_events WHERE seq > $seq0" | tr '|' ' ')
# connections closed without a request (a client's probe, a reconnect) are audited too
conn_events=$(psql_q "SELECT count(*) FROM audit_events WHERE seq > $seq0 AND action = 'http.connection'")
[ "$conn_events" -eq 0 ] || echo "($conn_events connections closed without a request, audited as http.connection)"
cp_last=$(psql_q "SELECT coalesce(max(seq), 0) FROM audit_checkpoints")
ev_last=$(psql_q "SELECT coalesce(max(seq), 0) FROM audit_events")

kill -TERM "$sluice_pid"
for i in $(seq 400); do kill -0 "$sluice_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$sluice_pid" 2>/dev/null && die "sluice did not stop within 40 s of SIGTERM"
wait "$sluice_pid" || die "sluice serve exited with status $? after SIGTERM"
sluice_pid=""

# ---- nginx: its own configuration and prefix, the same certificate and key ----
nport=$(free_port)
mkdir -p "$work/www" "$work/tmp"
head -c 1024 /dev/zero | tr '\0' 'x' >"$work/www/1k.txt"
cat >"$work/nginx.conf" <<EOF
# the benchmark's peer: a static 1 KiB file over HTTPS (HTTP/1.1, no access log)
user root;
worker_processes auto;
daemon off;
pid $work/nginx.pid;
error_log $work/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  default_type text/plain;
  sendfile on;
  keepalive_timeout 65s;
  keepalive_requests 100000;
  client_body_temp_path $work/tmp/body;
  proxy_temp_path $work/tmp/proxy;
  fastcgi_temp_path $work/tmp/fastcgi;
  uwsgi_temp_path $work/tmp/uwsgi;
  scgi_temp_path $work/tmp/scgi;
  server {
    listen 127.0.0.1:$nport ssl;
    ssl_certificate $data/tls/cert.pem;
    ssl_certificate_key $data/tls/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    root $work/www;
  }
}
EOF
nginx -p "$work" -c "$work/nginx.conf" -e "$work/error.log" &
nginx_pid=$!
for i in $(seq 100); do
  curl -skf --max-time 2 "https://127.0.0.1:$nport/1k.txt" >/dev/null 2>&1 && break
  kill -0 "$nginx_pid" 2>/dev/null || { cat "$work/error.log" >&2; die "nginx exited"; }
  [ "$i" -lt 100 ] || die "nginx did not answer in 20 s"
  sleep 0.2
done
c_ng0=$(cpu_tree "$nginx_pid")
echo "bench_whoami: wrk -t2 -c$conns -d$duration against nginx on 127.0.0.1:$nport" >&2
run_wrk "https://127.0.0.1:$nport/1k.txt" "$work/wrk-nginx.txt"
c_ng1=$(cpu_tree "$nginx_pid")
kill -QUIT "$nginx_pid"
wait "$nginx_pid" || true
nginx_pid=""

# ---- report ----
eval "set -- $(field "$work/wrk-sluice.txt")"
s_rps=$1 s_total=$2 s_bad=$3 s_p50=$4 s_p99=$5 s_errs=$6
eval "set -- $(field "$work/wrk-nginx.txt")"
n_rps=$1 n_total=$2 n_bad=$3 n_p50=$4 n_p99=$5 n_errs=$6
if [ -z "$s_rps" ] || [ -z "$n_rps" ]; then die "could not read wrk's reports"; fi
ratio=$(awk -v a="$s_rps" -v b="$n_rps" 'BEGIN { printf "%.2f", a / b }')

echo "--- sluice: wrk report"
sed 's/^/  /' "$work/wrk-sluice.txt"
echo "--- nginx: wrk report"
sed 's/^/  /' "$work/wrk-nginx.txt"
echo "---"
echo "sluice latency p50 $s_p50, p99 $s_p99; nginx latency p50 $n_p50, p99 $n_p99"
echo "sluice: $s_total requests, non-2xx $s_bad, socket errors ${s_errs:-none};" \
  "nginx: $n_total requests, non-2xx $n_bad, socket errors ${n_errs:-none}"
echo "audit: $s_total requests counted by wrk; $ev_all events written meanwhile" \
  "($ev_ok whoami 200, $ev_other other); $((ev_ok - s_total)) answered after wrk stopped" \
  "counting (in flight at the end; at most $conns)"
echo "CPU seconds during the sluice run ($conns connections, ${duration}, $(nproc) cores):" \
  "sluice $(secs $((c_sl1 - c_sl0))), postgres $(secs $((c_pg1 - c_pg0)))," \
  "wrk $(secs "$(cat "$work/wrk-sluice.txt.cpu")")"
awk -v e=$((m_ev1 - m_ev0)) -v c=$((m_co1 - m_co0)) -v s0="$m_s0" -v s1="$m_s1" -v d="$duration" '
  BEGIN { d += 0; s = s1 - s0; if (c == 0) c = 1
          printf "audit writer during the sluice run: %d events in %d group commits (average " \
                 "batch %.1f), %.2f ms per commit, busy %.0f%% of the %ds\n", e, c, e / c,
                 1000 * s / c, 100 * s / d, d }'
echo "CPU seconds during the nginx run: nginx $(secs $((c_ng1 - c_ng0)))," \
  "wrk $(secs "$(cat "$work/wrk-nginx.txt.cpu")")"
echo "whoami (audited) $s_rps req/s; nginx 1 KiB $n_rps req/s; ratio $ratio (target >= 0.3)"

fail=0
if [ "$s_bad" -ne 0 ]; then
  echo "bench_whoami: FAIL: $s_bad non-2xx answers from sluice" >&2
  fail=1
fi
if [ "$ev_ok" -lt "$s_total" ] || [ "$ev_ok" -gt $((s_total + conns)) ] || [ "$ev_other" -ne 0 ]; then
  echo "bench_whoami: FAIL: $s_total requests but $ev_ok whoami events ($ev_other other)" >&2
  fail=1
fi
if [ "$cp_last" -ne "$ev_last" ]; then
  echo "bench_whoami: FAIL: the last event (seq $ev_last) has no checkpoint (last $cp_last)" >&2
  fail=1
fi
exit "$fail"
