#!/usr/bin/env bash
# tests/bench/bench_store.sh: upload (POST /v1/datasets/{ds}/versions, text/csv, streamed)
# and fetch (GET .../versions/latest/rows?format=csv) of a generated CSV over HTTPS, next
# to nginx on the same machine in the same run serving the same file (GET) and accepting
# it (WebDAV PUT) over HTTPS with the same certificate. curl on both sides, HTTP/1.1, the
# sides alternating. Also: the serve process's peak memory, pandas' read_csv of the same
# file (Debian's python3-pandas) and the bytes stored per byte uploaded. Run as root
# (scripts/bench.sh).
#   SLUICE_BIN         the sluice binary (default: build/bin/sluice of this repository)
#   BENCH_STORE_MB     size of the CSV in MiB (default 1024): 20 float columns, an int
#                      label, a short string column
#   BENCH_STORE_RUNS   transfers per side and direction (default 3)
# MB/s are 10^6 bytes per second.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
sluice=${SLUICE_BIN:-$repo/build/bin/sluice}
size_mb=${BENCH_STORE_MB:-1024}
runs=${BENCH_STORE_RUNS:-3}
py=/usr/bin/python3 # Debian's, with python3-numpy and python3-pandas
pg_bin=/usr/lib/postgresql/15/bin
hz=$(getconf CLK_TCK)
mem_limit_mib=256

die() { echo "bench_store: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (the gateway drops to the sluice user itself)"
[ -x "$sluice" ] || die "no sluice binary at $sluice (set SLUICE_BIN or run scripts/bench.sh)"
case "$size_mb" in '' | *[!0-9]* | 0) die "BENCH_STORE_MB must be a positive integer" ;; esac
case "$runs" in '' | *[!0-9]* | 0) die "BENCH_STORE_RUNS must be a positive integer" ;; esac
for p in nginx curl du; do
  command -v "$p" >/dev/null || die "$p is missing (scripts/deps.sh --bench)"
done
[ -x "$py" ] || die "$py is missing (scripts/deps.sh --bench)"
"$py" -c 'import numpy, pandas' 2>/dev/null ||
  die "$py cannot import numpy and pandas (scripts/deps.sh --bench: python3-pandas)"
nginx -V 2>&1 | grep -q -- --with-http_dav_module ||
  die "this nginx has no http_dav_module (scripts/deps.sh --bench: nginx-light)"

data=$(mktemp -d /tmp/slbs-XXXX)  # short: PostgreSQL's socket path lives under it
work=$(mktemp -d /tmp/slbt-XXXX)  # the CSV, nginx's prefix and WebDAV target, logs
sluice_pid=""
nginx_pid=""
sampler_pid=""

# shellcheck source=tests/bench/lib.sh
. "$(dirname "$0")/lib.sh"

# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$sampler_pid" ] && kill -0 "$sampler_pid" 2>/dev/null; then
    kill -TERM "$sampler_pid" 2>/dev/null || true
    wait "$sampler_pid" 2>/dev/null || true
  fi
  bench_stop_nginx "$nginx_pid"
  bench_stop_sluice bench_store "$sluice_pid" "$data"
  bench_show_log bench_store "$rc" "$work/sluice.log"
  rm -rf "$data" "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

mbps() { awk -v b="$1" -v t="$2" 'BEGIN { printf "%.1f", (t > 0 ? b / t / 1e6 : 0) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
wall() { awk -v t="$1" 'BEGIN { printf "%.1f", t }'; }
# "S s (P% of a core)": CPU seconds given in ticks, or in seconds with a third argument
cpu_share() {
  awk -v c="$1" -v w="$2" -v hz="${3:-$hz}" \
    'BEGIN { printf "%.1f s (%.0f%% of a core)", c / hz, (w > 0 ? 100 * c / hz / w : 0) }'
}
secs() { awk -v t="$1" -v hz="$hz" 'BEGIN { printf "%.1f", t / hz }'; }
best() { printf '%s\n' "$@" | sort -g | tail -n 1; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
  printf "%.1f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# CPU ticks (user + system) of one process, all its threads; of this shell's waited-for
# children (curl runs in a command substitution, so it is counted when that ends).
cpu_of() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
cpu_kids() { awk '{ print $16 + $17 }' /proc/$$/stat; }
# the machine's busy ticks (all CPUs) and those of this benchmark's processes: the serve
# process, its PostgreSQL (the postmaster, its backends live and ended), nginx, and this
# shell with its children (curl, the sampler)
busy_all() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
busy_ours() {
  local total kid pm
  total=$(($(cpu_of "$sluice_pid") + $(cpu_nginx)))
  total=$((total + $(awk '{ print $14 + $15 + $16 + $17 }' /proc/$$/stat)))
  pm=$(head -n 1 "$data/pg/data/postmaster.pid" 2>/dev/null || true)
  if [ -n "$pm" ]; then
    total=$((total + $(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$pm/stat" 2>/dev/null || echo 0)))
    for kid in $(pgrep -P "$pm" || true); do total=$((total + $(cpu_of "$kid"))); done
  fi
  echo "$total"
}
# nginx: the master and its live workers
cpu_nginx() {
  local total kid
  total=$(cpu_of "$nginx_pid")
  for kid in $(pgrep -P "$nginx_pid" || true); do total=$((total + $(cpu_of "$kid"))); done
  echo "$total"
}

# One sample every 0.2 s while PID lives, tagged with the phase in $work/phase:
#   rss PHASE KIB                           the serve process's VmRSS
#   thr PHASE TID NAME RUN_NS WAIT_NS       each of its threads' time so far on a CPU and
#                                           runnable but waiting for one (schedstat)
# shellcheck disable=SC2317  # runs in the background
sampler() {
  local pid=$1 out=$2 phase k v _ line tid name f run wait
  trap 'exit 0' TERM
  while kill -0 "$pid" 2>/dev/null; do
    phase=$(<"$work/phase")
    [ -n "$phase" ] || phase=idle
    {
      while read -r k v _; do
        [ "$k" = VmRSS: ] && echo "rss $phase $v"
      done <"/proc/$pid/status"
      for f in /proc/"$pid"/task/*; do
        read -r line 2>/dev/null <"$f/stat" || continue
        read -r run wait _ 2>/dev/null <"$f/schedstat" || continue
        tid=${line%% *}
        name=${line#*(}
        name=${name%)*}
        echo "thr $phase $tid ${name// /_} $run $wait"
      done
    } >>"$out" 2>/dev/null || true
    sleep 0.2
  done
}

# the phase is replaced whole (rename), never seen half-written
set_phase() { echo "$1" >"$work/phase.new" && mv -f "$work/phase.new" "$work/phase"; }

# the largest VmRSS sampled in a phase (MiB), or over all phases matching a pattern
rss_max() {
  awk -v p="$1" '$1 == "rss" && $2 ~ p && $3 > m { m = $3 } END { printf "%.0f", m / 1024 }' \
    "$work/samples"
}
# the busiest thread of a phase: "NAME SECONDS"
#   "NAME RUN WAIT ALL_RUN ALL_WAIT": its seconds on a CPU and waiting for one, and those
#   of all the threads together (a thread that ran and waited for about the whole time was
#   CPU-bound, and the machine's other load slowed it by its wait)
busiest() {
  awk -v p="$1" '$1 == "thr" && $2 == p {
      if (!($3 in r0)) { r0[$3] = $5; w0[$3] = $6 }
      r1[$3] = $5; w1[$3] = $6; nm[$3] = $4 }
    END { m = -1
          for (t in r1) { r = r1[t] - r0[t]; ar += r; aw += w1[t] - w0[t]
                          if (r > m) { m = r; n = nm[t]; w = w1[t] - w0[t] } }
          printf "%s %.1f %.1f %.1f %.1f\n", (n == "" ? "-" : n), m / 1e9, w / 1e9, ar / 1e9,
                 aw / 1e9 }' "$work/samples"
}

# curl with the same options on both sides; the last line of stdout is
# "HTTP_CODE SIZE_UPLOAD SIZE_DOWNLOAD TIME_TOTAL"
xfer() {
  curl -sS --http1.1 --cacert "$data/tls/cert.pem" --max-time "$((600 + size_mb * 2))" \
    -H 'Expect:' -w '\n%{http_code} %{size_upload} %{size_download} %{time_total}\n' "$@"
}

# ---- the CSV: header f0..f19,label,tag; floats as Python/NumPy repr (shortest round-trip,
# up to 17 significant digits), uniform [0,1) and standard normal; label 0..9; tag 4-8
# letters. Written in blocks, cut at the first row end past the size asked for.
csv=$work/bench.csv
echo "bench_store: generating a ${size_mb} MiB CSV" >&2
"$py" - "$csv" "$((size_mb * 1024 * 1024))" >"$work/rows" <<'EOF'
import sys
import numpy as np
out, target = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(20240611)
letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype="S1")
block = 20000
fmt = ("%r," * 20 + "%d,%s\n") * block
rows = 0
with open(out, "wb", buffering=1 << 22) as f:
    f.write((",".join("f%d" % i for i in range(20)) + ",label,tag\n").encode())
    n = f.tell()
    while n < target:
        v = np.empty((block, 22), dtype=object)
        v[:, :10] = rng.random((block, 10))
        v[:, 10:20] = rng.normal(0.0, 1.0, (block, 10))
        v[:, 20] = rng.integers(0, 10, block)
        ln = rng.integers(4, 9, block).tolist()
        ch = letters[rng.integers(0, 26, (block, 8))].view("S8").ravel().tolist()
        v[:, 21] = [c[:k].decode() for c, k in zip(ch, ln)]
        b = (fmt % tuple(v.ravel().tolist())).encode()
        if n + len(b) > target:
            b = b[: b.index(b"\n", target - n) + 1]
        f.write(b)
        n += len(b)
        rows += b.count(b"\n")
print(rows)
EOF
rows_gen=$(cat "$work/rows")
csv_bytes=$(stat -c %s "$csv")
csv_sha=$(sha256sum "$csv" | cut -d' ' -f1)

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
base="https://127.0.0.1:$port/v1/datasets"
auth="Authorization: Bearer $token"
out=$(xfer -o "$work/create.json" -X POST -H "$auth" -H 'Content-Type: application/json' \
  --data '{"name":"bench","classification":"internal"}' "$base") || die "POST /v1/datasets failed"
read -r code _ <<<"${out##*$'\n'}"
[ "$code" = 201 ] || die "POST /v1/datasets answered $code, not 201: $(head -c 300 "$work/create.json")"

# ---- nginx: its own configuration and prefix, the same certificate and key ----
nport=$(free_port)
mkdir -p "$work/dav" "$work/tmp"
cat >"$work/nginx.conf" <<EOF
# the benchmark's peer: GET of the CSV and WebDAV PUT over HTTPS (HTTP/1.1, no access log)
user root;
worker_processes auto;
daemon off;
pid $work/nginx.pid;
error_log $work/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  default_type application/octet-stream;
  sendfile on;
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
    location = /bench.csv { root $work; }
    location /dav/ {
      root $work;
      dav_methods PUT;
      create_full_put_path on;
      client_max_body_size 0;
      client_body_temp_path $work/dav-tmp;
    }
  }
}
EOF
nginx -p "$work" -c "$work/nginx.conf" -e "$work/error.log" &
nginx_pid=$!
for i in $(seq 100); do
  curl -sf --cacert "$data/tls/cert.pem" --max-time 2 -r 0-0 \
    "https://127.0.0.1:$nport/bench.csv" >/dev/null 2>&1 && break
  kill -0 "$nginx_pid" 2>/dev/null || { cat "$work/error.log" >&2; die "nginx exited"; }
  [ "$i" -lt 100 ] || die "nginx did not answer in 20 s"
  sleep 0.2
done
tls_of() {
  curl -sv --http1.1 --cacert "$data/tls/cert.pem" -o /dev/null "$1" 2>&1 |
    sed -n 's/^\* SSL connection using //p' | head -n 1
}
echo "TLS: sluice $(tls_of "https://127.0.0.1:$port/healthz"); nginx $(tls_of "https://127.0.0.1:$nport/bench.csv")"

# after a failed fetch the serve process may go on reading for the client that left: wait
# (at most 300 s) until it uses less than a tenth of a core, so that the next upload is
# measured alone; how long it stayed busy is reported
wait_idle() {
  local i c0 c1
  c0=$(cpu_of "$sluice_pid")
  for i in $(seq 300); do
    sleep 1
    c1=$(cpu_of "$sluice_pid")
    if [ $((c1 - c0)) -le $((hz / 10)) ]; then
      busy_after="the serve process stayed busy about $((i - 1)) s after the failed fetch"
      return 0
    fi
    c0=$c1
  done
  busy_after="the serve process was still busy 300 s after the failed fetch (later uploads overlap it)"
}

# ---- the runs, alternating: sluice upload, nginx PUT, sluice fetch, nginx GET ----
set_phase idle
: >"$work/samples"
sampler "$sluice_pid" "$work/samples" &
sampler_pid=$!

load0=$(cut -d' ' -f1-3 /proc/loadavg)
b_all0=$(busy_all) b_ours0=$(busy_ours) t_runs0=$(date +%s)
up_s=() put_n=() get_s=() get_s_orig=() get_n=()
up_cpu=() up_curl=() up_wall=() up_thr=() get_cpu=() get_curl=() get_wall=() get_thr=()
put_wall=() put_cpu=() put_curl=() ngget_wall=() ngget_cpu=() ngget_curl=()
bytes_in="" bytes_stored="" fail=0 fetch_err="" get_bytes="" busy_after=""
for r in $(seq "$runs"); do
  # sluice upload
  echo "bench_store: run $r/$runs: sluice upload" >&2
  set_phase "up$r"
  c0=$(cpu_of "$sluice_pid") k0=$(cpu_kids)
  out=$(xfer -o "$work/upload.json" -X POST -H "$auth" -H 'Content-Type: text/csv' \
    -T "$csv" "$base/bench/versions") || die "the upload failed (curl)"
  c1=$(cpu_of "$sluice_pid") k1=$(cpu_kids)
  set_phase idle
  read -r code sent _ t <<<"${out##*$'\n'}"
  [ "$code" = 201 ] ||
    die "POST /v1/datasets/bench/versions answered $code, not 201: $(head -c 300 "$work/upload.json")"
  [ "$sent" -eq "$csv_bytes" ] || die "curl sent $sent bytes of $csv_bytes"
  read -r v_rows bytes_in bytes_stored v_sha < <("$py" -c 'import json, sys
j = json.load(open(sys.argv[1]))
print(j["rows"], j["bytes_in"], j["bytes_stored"], j["sha256"])' "$work/upload.json") ||
    die "the upload's answer is not the JSON expected: $(head -c 300 "$work/upload.json")"
  if [ "$v_rows" != "$rows_gen" ] || [ "$bytes_in" != "$csv_bytes" ]; then
    echo "bench_store: FAIL: the upload answered rows $v_rows, bytes_in $bytes_in;" \
      "sent $rows_gen rows, $csv_bytes bytes" >&2
    fail=1
  fi
  up_s+=("$(mbps "$csv_bytes" "$t")")
  up_wall+=("$t") up_cpu+=($((c1 - c0))) up_curl+=($((k1 - k0)))
  up_thr+=("$(busiest "up$r")")

  # nginx PUT (the previous run's file is removed first: a new file each time)
  echo "bench_store: run $r/$runs: nginx PUT" >&2
  rm -f "$work/dav/bench.csv"
  c0=$(cpu_nginx) k0=$(cpu_kids)
  out=$(xfer -o /dev/null -T "$csv" "https://127.0.0.1:$nport/dav/bench.csv") ||
    die "the nginx PUT failed (curl)"
  c1=$(cpu_nginx) k1=$(cpu_kids)
  read -r code sent _ t <<<"${out##*$'\n'}"
  [ "$code" = 201 ] || die "nginx answered the PUT with $code, not 201"
  [ "$(stat -c %s "$work/dav/bench.csv")" -eq "$csv_bytes" ] || die "nginx stored a short file"
  put_n+=("$(mbps "$csv_bytes" "$t")")
  put_wall+=("$t") put_cpu+=($((c1 - c0))) put_curl+=($((k1 - k0)))

  # sluice fetch; after a failed one, the runs go on without (uploads and nginx measured)
  if [ -z "$fetch_err" ]; then
    echo "bench_store: run $r/$runs: sluice fetch" >&2
    set_phase "get$r"
    c0=$(cpu_of "$sluice_pid") k0=$(cpu_kids)
    crc=0
    out=$(xfer -o /dev/null -H "$auth" "$base/bench/versions/latest/rows?format=csv" \
      2>"$work/fetch.err") || crc=$?
    c1=$(cpu_of "$sluice_pid") k1=$(cpu_kids)
    set_phase idle
    read -r code _ got t <<<"${out##*$'\n'}"
    get_wall[r - 1]=$t get_cpu[r - 1]=$((c1 - c0)) get_curl[r - 1]=$((k1 - k0))
    get_thr[r - 1]=$(busiest "get$r")
    if [ "$crc" -ne 0 ] || [ "$code" != 200 ]; then
      fetch_err="run $r: HTTP $code, $got bytes in $(wall "$t") s, curl exit $crc"
      fetch_err+=" ($(tr -d '\n' <"$work/fetch.err" | head -c 200))"
      echo "bench_store: FAIL: the fetch: $fetch_err; no more fetches" >&2
      fail=1
      wait_idle
    else
      get_s[r - 1]=$(mbps "$got" "$t") get_s_orig[r - 1]=$(mbps "$csv_bytes" "$t")
      get_bytes=$got
    fi
  fi

  # nginx GET
  echo "bench_store: run $r/$runs: nginx GET" >&2
  c0=$(cpu_nginx) k0=$(cpu_kids)
  out=$(xfer -o /dev/null "https://127.0.0.1:$nport/bench.csv") || die "the nginx GET failed (curl)"
  c1=$(cpu_nginx) k1=$(cpu_kids)
  read -r code _ got t <<<"${out##*$'\n'}"
  [ "$code" = 200 ] || die "nginx answered the GET with $code, not 200"
  [ "$got" -eq "$csv_bytes" ] || die "nginx sent $got bytes of $csv_bytes"
  get_n+=("$(mbps "$got" "$t")")
  ngget_wall+=("$t") ngget_cpu+=($((c1 - c0))) ngget_curl+=($((k1 - k0)))
done

# one more fetch, not timed: is the CSV served the bytes uploaded? (floats may differ in
# their spelling only, e.g. 1e-05; the first difference is shown)
if [ -n "$fetch_err" ]; then
  same="not checked (the fetch failed)"
else
  echo "bench_store: fetching once more to compare with the file" >&2
  set_phase check
  xfer -o "$work/fetched.csv" -H "$auth" "$base/bench/versions/latest/rows?format=csv" \
    >/dev/null || die "the checking fetch failed (curl)"
  set_phase idle
fi
if [ -n "$fetch_err" ]; then
  :
elif cmp -s "$csv" "$work/fetched.csv"; then
  same="identical to the file"
else
  line=$(cmp "$csv" "$work/fetched.csv" 2>&1 | sed -n 's/.*line \([0-9]*\).*/\1/p' | head -n 1)
  same="DIFFERS from the file${line:+ from line $line: file $(sed -n "${line}{p;q}" "$csv" |
    head -c 200), served $(sed -n "${line}{p;q}" "$work/fetched.csv" | head -c 200)}"
fi
rm -f "$work/fetched.csv"

# ---- the same fetch through a policy's view: the tag column hashed (HMAC-SHA-256 under
# the dataset's key) and the rows with label 0 left out (about a tenth); the admin owns
# the dataset and the statement names it, so the view applies to its reads (a deny's
# filter drops the rows it matches: label == 0). Compared by
# time over the same stored version: plain fetch time / viewed fetch time.
masked_s=() masked_wall=() masked_rows=""
if [ -z "$fetch_err" ]; then
  out=$(xfer -o "$work/policy.json" -X PUT -H "$auth" -H 'Content-Type: application/json' \
    --data '{"statements":[{"id":"bench-view","effect":"deny","principals":{"names":["admin"]},"actions":["dataset.read"],"columns":{"mask":{"tag":"hash"}},"row_filter":"label == 0"}]}' \
    "$base/bench/policy") || die "PUT policy failed (curl)"
  read -r code _ <<<"${out##*$'\n'}"
  [ "$code" = 200 ] || die "PUT /v1/datasets/bench/policy answered $code: $(head -c 300 "$work/policy.json")"
  for r in $(seq "$runs"); do
    echo "bench_store: run $r/$runs: sluice fetch, masked and filtered" >&2
    set_phase "masked$r"
    out=$(xfer -o "$work/masked.csv" -H "$auth" "$base/bench/versions/latest/rows?format=csv") ||
      die "the masked fetch failed (curl)"
    set_phase idle
    read -r code _ got t <<<"${out##*$'\n'}"
    [ "$code" = 200 ] || die "the masked fetch answered $code"
    masked_rows=$(($(wc -l <"$work/masked.csv") - 1))
    masked_s+=("$(mbps "$got" "$t")") masked_wall+=("$t")
  done
  # the view held: no label 0, every tag 64 hex digits
  "$py" - "$work/masked.csv" <<'EOF2' || die "the masked fetch did not hold the view"
import csv, re, sys
hexre = re.compile(r"^[0-9a-f]{64}$")
with open(sys.argv[1], newline="") as f:
    r = csv.reader(f)
    head = next(r)
    li, ti = head.index("label"), head.index("tag")
    for row in r:
        assert row[li] != "0" and hexre.match(row[ti]), row
EOF2
  rm -f "$work/masked.csv"
fi
kill -TERM "$sampler_pid" 2>/dev/null || true
wait "$sampler_pid" 2>/dev/null || true
sampler_pid=""
load1=$(cut -d' ' -f1-3 /proc/loadavg)
b_all1=$(busy_all) b_ours1=$(busy_ours) t_runs1=$(date +%s)
hwm_kib=$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$sluice_pid/status")
nginx_hwm_kib=0
for kid in $(pgrep -P "$nginx_pid" || true); do
  v=$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$kid/status" 2>/dev/null || echo 0)
  if [ "${v:-0}" -gt "$nginx_hwm_kib" ]; then nginx_hwm_kib=$v; fi
done

# ---- pandas: read_csv of the same file (warm page cache, as for the transfers) ----
echo "bench_store: pandas read_csv" >&2
read -r pd_rows pd_t < <("$py" - "$csv" <<'EOF'
import sys, time
import pandas as pd
t = time.perf_counter()
df = pd.read_csv(sys.argv[1])
print(len(df), time.perf_counter() - t)
EOF
)
[ "$pd_rows" = "$rows_gen" ] || die "pandas read $pd_rows rows, the CSV has $rows_gen"
pd_mbps=$(mbps "$csv_bytes" "$pd_t")

# ---- the bytes stored ----
if [ -d "$data/storage" ]; then
  store_dirs=("$data/storage")
else # the storage roots: DIR/<dataset>/<version>/<group>.<column>.frag
  mapfile -t store_dirs < <(find "$data" -name '*.frag' -printf '%h\n' |
    sed 's|/[^/]*/[^/]*$||' | sort -u)
fi
((${#store_dirs[@]})) || die "no fragments (*.frag) under $data"
du_bytes=$(du -scb "${store_dirs[@]}" | awk 'END { print $1 }')
frag_bytes=$(find "$data" -name '*.frag' -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')

# ---- report ----
up_best=$(best "${up_s[@]}") up_med=$(median "${up_s[@]}")
put_best=$(best "${put_n[@]}") put_med=$(median "${put_n[@]}")
get_best="" get_med="" geto_best=""
if ((${#get_s[@]})); then
  get_best=$(best "${get_s[@]}") get_med=$(median "${get_s[@]}")
  geto_best=$(best "${get_s_orig[@]}")
fi
ngget_best=$(best "${get_n[@]}") ngget_med=$(median "${get_n[@]}")
masked_ratio=""
if ((${#masked_wall[@]})) && ((${#get_wall[@]})); then
  masked_ratio=$(awk -v a="$(median "${get_wall[@]}")" -v b="$(median "${masked_wall[@]}")" \
    'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
fi
echo "--- $size_mb MiB CSV: $csv_bytes bytes, $rows_gen rows, 23 columns; $runs runs per side" \
  "($(nproc) cores, $(uname -r))"
awk -v a=$((b_all1 - b_all0)) -v o=$((b_ours1 - b_ours0)) -v s=$((t_runs1 - t_runs0)) \
  -v n="$(nproc)" -v hz="$hz" -v l0="$load0" -v l1="$load1" 'BEGIN {
    x = (a - o) / hz; if (x < 0) x = 0; if (s < 1) s = 1
    printf "other processes during the runs: %.0f CPU s in %d s, %.0f%% of the %d cores " \
           "(load average before %s, after %s)%s\n", x, s, 100 * x / (s * n), n, l0, l1,
           (x / (s * n) > 0.1 ? ": the figures are noisy" : "") }'
for r in $(seq "$runs"); do
  i=$((r - 1))
  echo "run $r: sluice upload ${up_s[i]} MB/s, nginx PUT ${put_n[i]} MB/s;" \
    "sluice fetch ${get_s[i]:-(failed or not run)}${get_s[i]:+ MB/s}, nginx GET ${get_n[i]} MB/s"
done
for r in $(seq "$runs"); do
  i=$((r - 1))
  read -r un us uw _ uaw <<<"${up_thr[i]}"
  echo "run $r CPU: upload $(wall "${up_wall[i]}") s: sluice $(cpu_share "${up_cpu[i]}" "${up_wall[i]}")," \
    "its busiest thread ($un) $(cpu_share "$us" "${up_wall[i]}" 1) and waiting for a CPU $uw s," \
    "all its threads waiting for a CPU $uaw s; curl $(secs "${up_curl[i]}") s"
  if [ -n "${get_wall[i]:-}" ]; then
    read -r gn gs gw _ gaw <<<"${get_thr[i]}"
    echo "run $r CPU: fetch$([ -n "${get_s[i]:-}" ] || echo " (failed)") $(wall "${get_wall[i]}") s:" \
      "sluice $(cpu_share "${get_cpu[i]}" "${get_wall[i]}")," \
      "its busiest thread ($gn) $(cpu_share "$gs" "${get_wall[i]}" 1) and waiting for a CPU $gw s," \
      "all its threads waiting for a CPU $gaw s; curl $(secs "${get_curl[i]}") s"
  fi
  echo "run $r CPU: PUT $(wall "${put_wall[i]}") s: nginx $(cpu_share "${put_cpu[i]}" "${put_wall[i]}")," \
    "curl $(secs "${put_curl[i]}") s; GET $(wall "${ngget_wall[i]}") s:" \
    "nginx $(cpu_share "${ngget_cpu[i]}" "${ngget_wall[i]}"), curl $(secs "${ngget_curl[i]}") s"
done
[ -z "$busy_after" ] || echo "($busy_after)"
echo "fetched bytes: sluice ${get_bytes:-none}, file $csv_bytes; the fetched CSV is $same;" \
  "upload sha256 $([ "$v_sha" = "$csv_sha" ] && echo "matches the file's" || echo "is $v_sha, the file's $csv_sha")"
if [ -n "$get_best" ] && [ -z "$fetch_err" ]; then
  echo "store fetch: sluice $get_best MB/s, nginx GET $ngget_best MB/s, ratio $(ratio "$get_best" "$ngget_best")" \
    "(median $get_med / $ngget_med, ratio $(ratio "$get_med" "$ngget_med"); over the file's size" \
    "sluice $geto_best MB/s; target >= 0.8)"
else
  echo "store fetch: sluice FAILED, nginx GET $ngget_best MB/s, ratio -" \
    "(${get_best:+sluice $get_best MB/s before it failed; }$fetch_err; target >= 0.8)"
fi
if [ -n "$masked_ratio" ]; then
  echo "store fetch masked and filtered: $masked_ratio of the plain fetch's speed over the same" \
    "version (median times $(median "${get_wall[@]}") s / $(median "${masked_wall[@]}") s;" \
    "tag hashed, $masked_rows of $rows_gen rows; served $(median "${masked_s[@]}") MB/s; target >= 0.7)"
fi
echo "store upload: sluice $up_best MB/s, nginx PUT $put_best MB/s, ratio $(ratio "$up_best" "$put_best")" \
  "(median $up_med / $put_med, ratio $(ratio "$up_med" "$put_med"); target >= 0.5)"
echo "store peak server memory: $(awk -v k="$hwm_kib" 'BEGIN { printf "%.0f", k / 1024 }') MiB (limit $mem_limit_mib)" \
  "(VmHWM of the serve process; VmRSS sampled every 0.2 s: uploads $(rss_max '^up')," \
  "fetches $(rss_max '^get') MiB; nginx's largest worker $((nginx_hwm_kib / 1024)) MiB)"
echo "store parse: sluice $up_best MB/s (upload, parse+seal+store), pandas read_csv $pd_mbps MB/s" \
  "($(wall "$pd_t") s)"
echo "store bytes stored per byte uploaded: $(awk -v a="$bytes_stored" -v b="$bytes_in" \
  'BEGIN { printf "%.3f", a / b }') (bytes_stored $bytes_stored / bytes_in $bytes_in);" \
  "on disk $(awk -v a="$du_bytes" -v b="$csv_bytes" -v n="$runs" 'BEGIN { printf "%.3f", a / (b * n) }')" \
  "(du -sb ${store_dirs[*]#"$data"/}: $du_bytes bytes for $runs versions; *.frag $frag_bytes)"

if [ "$hwm_kib" -ge $((mem_limit_mib * 1024)) ]; then
  echo "bench_store: the serve process's peak memory is over $mem_limit_mib MiB" >&2
fi
exit "$fail"
