#!/usr/bin/env bash
# tests/bench/bench_job.sh: a governed training job end to end, over the time its fit
# alone takes. A generated CSV (BENCH_JOB_ROWS rows of 64 float64 features and a 0/1
# label) is uploaded to a fresh gateway; a trainer's logistic regression job (l2 = 1/n, as
# scikit-learn's C = 1) is timed from submit to its end (the claim, the decryption, the
# policy's view, the frames over the pipe, the zone's table and design matrix, the fit,
# the release checks, the receipt), and its metrics give the fit's own seconds
# (fit_seconds, measured in the zone). Also the job's peak zone memory is not measured
# here (the zone's address-space limit bounds it). Run as root (scripts/bench.sh).
#   SLUICE_BIN        the sluice binary (default: build/bin/sluice of this repository)
#   BENCH_JOB_ROWS    rows (default 1000000)
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
sluice=${SLUICE_BIN:-$repo/build/bin/sluice}
rows=${BENCH_JOB_ROWS:-1000000}
py=/usr/bin/python3

die() { echo "bench_job: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (the gateway drops to the sluice user itself)"
[ -x "$sluice" ] || die "no sluice binary at $sluice (set SLUICE_BIN or run scripts/bench.sh)"
case "$rows" in '' | *[!0-9]* | 0) die "BENCH_JOB_ROWS must be a positive integer" ;; esac
"$py" -c 'import numpy' 2>/dev/null || die "$py cannot import numpy (scripts/deps.sh --bench)"

data=$(mktemp -d /tmp/slbj-XXXX)
work=$(mktemp -d /tmp/slbk-XXXX)
sluice_pid=""
# shellcheck source=tests/bench/lib.sh
. "$(dirname "$0")/lib.sh"

# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  bench_stop_sluice bench_job "$sluice_pid" "$data"
  bench_show_log bench_job "$rc" "$work/sluice.log"
  [ -n "${BENCH_KEEP_LOG:-}" ] && cp "$work/sluice.log" "$BENCH_KEEP_LOG"
  rm -rf "$data" "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
chmod 711 "$data" "$work"

echo "bench_job: generating $rows rows x 64 features"
"$py" - "$work/train.csv" "$rows" <<'PY'
import sys
import numpy as np
path, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(1)
w = rng.normal(size=64) / 4
with open(path, "w") as f:
    f.write(",".join(["x%d" % j for j in range(64)] + ["y"]) + "\n")
    step = 50000
    for at in range(0, n, step):
        m = min(step, n - at)
        x = rng.normal(size=(m, 64))
        y = (rng.random(m) < 1 / (1 + np.exp(-(x @ w + 0.2)))).astype(np.int64)
        np.savetxt(f, np.column_stack([x, y]), fmt=["%.9g"] * 64 + ["%d"], delimiter=",")
PY
ls -l "$work/train.csv" | awk '{printf "bench_job: %.0f MB of CSV\n", $5 / 1e6}'

port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$sluice" init --data-dir "$data/d" --listen "127.0.0.1:$port" >"$work/admin.token" 2>"$work/init.log" ||
  { cat "$work/init.log" >&2; exit 1; }
"$sluice" serve --data-dir "$data/d" >"$work/sluice.log" 2>&1 &
sluice_pid=$!
export SLUICE_ADDR="https://127.0.0.1:$port" SLUICE_CACERT="$data/d/tls/cert.pem"
SLUICE_TOKEN=$(cat "$work/admin.token")
export SLUICE_TOKEN
for _ in $(seq 300); do
  curl -fsS --cacert "$SLUICE_CACERT" "$SLUICE_ADDR/healthz" >/dev/null 2>&1 && break
  kill -0 "$sluice_pid" 2>/dev/null || die "sluice serve exited"
  sleep 0.1
done

owner=$("$sluice" principal create olga --role owner --output json |
  "$py" -c 'import json, sys; print(json.load(sys.stdin)["token"])')
trainer=$("$sluice" principal create tom --role trainer --output json |
  "$py" -c 'import json, sys; print(json.load(sys.stdin)["token"])')
cols=()
for j in $(seq 0 63); do cols+=(--column "x$j:float64"); done
SLUICE_TOKEN=$owner "$sluice" dataset create bench --classification confidential "${cols[@]}" \
  --column y:int64 >/dev/null
SLUICE_TOKEN=$owner "$sluice" dataset upload bench "$work/train.csv" >/dev/null
cat >"$work/policy.json" <<'JSON'
{"statements": [{"id": "bench", "effect": "allow", "principals": {"roles": ["trainer"]},
                 "actions": ["compute.train"]}]}
JSON
SLUICE_TOKEN=$owner "$sluice" policy put bench "$work/policy.json" >/dev/null
"$py" - "$work/job.json" "$rows" <<'PY'
import json, sys
n = int(sys.argv[2])
json.dump({"dataset": "bench", "kind": "train",
           "features": [{"column": "x%d" % j} for j in range(64)], "label": "y",
           "model": {"type": "logistic_regression", "l2": 1.0 / n, "max_iter": 100, "tol": 1e-6},
           "validation": {"fraction": 0}}, open(sys.argv[1], "w"))
PY
t0=$(date +%s.%N)
job=$(SLUICE_TOKEN=$trainer "$sluice" job submit --file "$work/job.json" --output json |
  "$py" -c 'import json, sys; print(json.load(sys.stdin)["job_id"])')
SLUICE_TOKEN=$trainer "$sluice" job wait "$job" >/dev/null || {
  SLUICE_TOKEN=$trainer "$sluice" job status "$job" >&2; die "the job did not succeed"; }
t1=$(date +%s.%N)
SLUICE_TOKEN=$trainer "$sluice" job result "$job" --out "$work/result.json" 2>/dev/null
"$py" - "$work/result.json" "$t0" "$t1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
total = float(sys.argv[3]) - float(sys.argv[2])
fit = r["metrics"]["fit_seconds"]
print("job_end_to_end_s=%.3f" % total)
print("job_fit_s=%.3f" % fit)
print("job_iterations=%d" % r["metrics"]["iterations"])
print("job_log_loss=%.9f" % r["metrics"]["log_loss"])
print("job_end_to_end_over_fit=%.2f" % (total / fit))
PY
