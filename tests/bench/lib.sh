# shellcheck shell=bash
# tests/bench/lib.sh: what the HTTPS benchmarks share (sourced, not run): stopping what
# they started. Callers pass their own name for messages; pg_bin is the PostgreSQL binaries' directory (default Debian's).
pg_bin=${pg_bin:-/usr/lib/postgresql/15/bin}

# Stops nginx (graceful, then killed after 5 s) when its pid is given and alive.
bench_stop_nginx() {
  local pid=$1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -QUIT "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Stops sluice serve (SIGTERM, killed after 40 s) and any embedded cluster it left.
bench_stop_sluice() {
  local name=$1 pid=$2 data=$3
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 400); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "$name: sluice did not stop on SIGTERM; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  fi
  # a cluster left behind (sluice killed, or init interrupted) is stopped here
  if [ -f "$data/pg/data/postmaster.pid" ]; then
    runuser -u sluice -- "$pg_bin/pg_ctl" -D "$data/pg/data" -m immediate -w stop \
      >/dev/null 2>&1 || true
  fi
}

# On failure, the end of the sluice log.
bench_show_log() {
  local name=$1 rc=$2 log=$3
  if [ "$rc" -ne 0 ] && [ -f "$log" ]; then
    echo "$name: last lines of the sluice log:" >&2
    tail -n 20 "$log" >&2 || true
  fi
}
