#!/usr/bin/env bash
# scripts/bench.sh: the benchmarks of tests/bench/, each next to a peer measured on this
# machine in the same run (as root; about 5 minutes, more on a slow disk):
#   (a) bench_audit: audit events/s through the writer vs a plain COPY of the same rows
#   (b) bench_whoami.sh: authenticated, audited GET /v1/whoami over HTTPS vs nginx
#       serving a 1 KiB file over HTTPS (wrk, 64 keep-alive connections)
#   (c) bench_store.sh: upload and fetch of a generated 1 GiB CSV over HTTPS vs nginx
#       accepting it (WebDAV PUT) and serving it (GET) over HTTPS (curl), the serve
#       process's peak memory, pandas' read_csv of the same file
#   (d) bench_policy: policy decisions per second and their latency in process, 10,000
#       statements over 1,000 datasets (targets p50 <= 1 us, p99 <= 10 us)
#   (e) bench_train: the zone's models in process on 1,000,000 x 64 synthetic rows vs
#       scikit-learn on the same data (logistic regression to the log-loss lbfgs reaches:
#       target <= 1/3 of its time; ridge vs LinearRegression: target >= 20x faster; the
#       Gram phase's GFLOP/s vs dgemm's: target >= 0.70)
#   (f) bench_job.sh: a logistic regression job end to end through the gateway (upload,
#       decrypt, view, pipe, zone, fit, receipt) over its fit alone
# Builds a release with the benchmarks into build/ (the directory of scripts/build.sh)
# and prints the ratios at the end. Not run by ctest or CI.
#   BENCH_EVENTS, BENCH_THREADS   bench_audit's --events and --threads (200000, 64)
#   BENCH_DURATION                wrk's duration per side (20s)
#   BENCH_STORE_MB                bench_store's CSV size in MiB (1024)
#   BENCH_STORE_RUNS              bench_store's transfers per side and direction (3)
#   BENCH_TRAIN_ROWS              bench_train's rows (1000000)
#   BENCH_JOB_ROWS                bench_job's rows (1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

[ "$(id -u)" -eq 0 ] || { echo "bench.sh: run as root" >&2; exit 1; }
scripts/deps.sh --bench
audit_dir=$(mktemp -d /tmp/slba-XXXX)
logs=$(mktemp -d /tmp/slbl-XXXX)
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # bench_audit stops its cluster itself; this is for an interrupted run
  if [ -f "$audit_dir/pg/data/postmaster.pid" ]; then
    runuser -u sluice -- /usr/lib/postgresql/15/bin/pg_ctl -D "$audit_dir/pg/data" \
      -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$audit_dir" "$logs"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Same build directory as the "release" preset; SLUICE_BENCH=ON only adds targets.
echo "== building a release with the benchmarks in build/"
if ! { cmake -S . -B build -G "Unix Makefiles" -DCMAKE_BUILD_TYPE=Release -DSLUICE_BENCH=ON -DSLUICE_TESTS=OFF &&
  cmake --build build -j"$(nproc)"; } >"$logs/build.log" 2>&1; then
  tail -n 40 "$logs/build.log" >&2
  echo "bench.sh: the build failed" >&2
  exit 1
fi

echo "== (a) audit writer vs COPY"
build/bin/sluice init --data-dir "$audit_dir" >/dev/null 2>"$logs/init.log" ||
  { cat "$logs/init.log" >&2; exit 1; }
fail=0
build/bin/bench_audit "$audit_dir" --events "${BENCH_EVENTS:-200000}" \
  --threads "${BENCH_THREADS:-64}" | tee "$logs/audit.txt" || fail=1

echo "== (b) GET /v1/whoami vs nginx"
SLUICE_BIN="$repo/build/bin/sluice" tests/bench/bench_whoami.sh | tee "$logs/whoami.txt" ||
  fail=1

echo "== (d) policy decisions in process (10,000 statements over 1,000 datasets)"
build/bin/bench_policy | tee "$logs/policy.txt" || fail=1

echo "== (c) dataset upload and fetch vs nginx PUT and GET"
SLUICE_BIN="$repo/build/bin/sluice" tests/bench/bench_store.sh | tee "$logs/store.txt" ||
  fail=1

echo "== (e) model training in process (ridge, logistic; dsyrk vs dgemm) vs scikit-learn"
build/bin/bench_train --rows "${BENCH_TRAIN_ROWS:-1000000}" --cols 64 \
  --py tests/bench/bench_train.py | tee "$logs/train.txt" || fail=1

echo "== (f) a training job end to end through the gateway, over its fit alone"
SLUICE_BIN="$repo/build/bin/sluice" tests/bench/bench_job.sh | tee "$logs/job.txt" || fail=1

echo "== summary ($(nproc) cores, $(uname -r))"
grep '^audit writer:' "$logs/audit.txt" || echo "audit writer: no result"
grep '^whoami (audited)' "$logs/whoami.txt" || echo "whoami: no result"
grep -E '^store (fetch|fetch masked and filtered|upload|peak server memory):' "$logs/store.txt" ||
  echo "store: no result"
grep -E '^(decisions|latency|targets):' "$logs/policy.txt" || echo "policy decisions: no result"
grep -E '^train (data|gram|ridge|logistic):' "$logs/train.txt" || echo "train: no result"
grep -E '^job_(end_to_end_s|fit_s|end_to_end_over_fit)=' "$logs/job.txt" || echo "job: no result"
[ "$fail" -eq 0 ] || echo "bench.sh: a benchmark failed (see above)" >&2
exit "$fail"
