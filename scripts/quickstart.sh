#!/usr/bin/env bash
# scripts/quickstart.sh [--walk-only] [DATA_DIR]
# Installs what is missing, builds, initialises a data directory (./sluice-data unless
# given) with its embedded PostgreSQL, serves the gateway, and walks through a short
# real scenario with the CLI: who am I; an owner, a trainer and an auditor are created;
# the auditor reads and verifies the audit trail, also offline. Then it keeps serving
# until Ctrl-C, or with --walk-only stops the gateway after the walk.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

walk_only=0
dir=""
for a in "$@"; do
  case "$a" in
    --walk-only) walk_only=1 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    -*) echo "quickstart: unknown option $a" >&2; exit 2 ;;
    *) dir="$a" ;;
  esac
done
dir=${dir:-$repo/sluice-data}
listen=${SLUICE_LISTEN:-127.0.0.1:8443}

scripts/build.sh
bin=$repo/build/bin/sluice

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { local shown=("$@"); [ "${shown[0]}" = "$bin" ] && shown[0]=sluice; printf '$ %s\n' "${shown[*]}"; "$@"; }

# As root, PostgreSQL runs as the unprivileged user `sluice`; it must reach the data
# directory. A checkout under a private home (mode 0700) cannot be reached: use a
# directory of the system instead, and say so.
parent=$(dirname "$(realpath -m "$dir")")
if [ "$(id -u)" -eq 0 ] && [ ! -e "$dir/config.json" ]; then
  mkdir -p "$parent"
  if ! runuser -u sluice -- test -x "$parent" 2>/dev/null; then
    echo "quickstart: user sluice cannot reach $parent; using /var/lib/sluice-quickstart instead" >&2
    mkdir -p /var/lib/sluice-quickstart && chmod 0711 /var/lib/sluice-quickstart
    dir=/var/lib/sluice-quickstart/data
  fi
fi

if [ ! -e "$dir/config.json" ]; then
  step "sluice init: keys, TLS certificate, embedded PostgreSQL, schema, first admin"
  run "$bin" init --data-dir "$dir" --listen "$listen" >/dev/null
  echo "(the admin token was printed once and is kept in $dir/admin.token, mode 0600)"
else
  step "using the existing data directory $dir"
fi

step "sluice serve"
log="$dir/serve.log"
"$bin" serve --data-dir "$dir" >>"$log" 2>&1 &
pid=$!
stop() {
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    wait "$pid" || true
  fi
}
trap 'stop; exit 130' INT TERM
trap stop EXIT
export SLUICE_ADDR="https://$listen" SLUICE_CACERT="$dir/tls/cert.pem"
export SLUICE_TOKEN
SLUICE_TOKEN=$(cat "$dir/admin.token")
for _ in $(seq 1 150); do
  if curl -fsS --cacert "$SLUICE_CACERT" "$SLUICE_ADDR/healthz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "quickstart: the gateway exited; its log:" >&2; tail -20 "$log" >&2; exit 1
  fi
  sleep 0.2
done
curl -fsS --cacert "$SLUICE_CACERT" "$SLUICE_ADDR/readyz"; echo
echo "gateway pid $pid on $SLUICE_ADDR (log: $log)"

step "the admin: who am I?"
run "$bin" whoami

make_principal() { # name role attributes...
  local name=$1 role=$2; shift 2
  if "$bin" principal show "$name" >/dev/null 2>&1; then
    echo "($name exists already)" >&2
    "$bin" principal token "$name" --ttl 86400 | sed -n 's/^token:  *//p'
  else
    "$bin" principal create "$name" --role "$role" "$@" 2>/dev/null | sed -n 's/^token:  *//p'
  fi
}
step "an owner, a trainer and an auditor"
echo '$ sluice principal create alice --role owner --attr department=research'
owner_token=$(make_principal alice owner --attr department=research)
echo '$ sluice principal create bob --role trainer --attr department=research --attr employment=staff'
trainer_token=$(make_principal bob trainer --attr department=research --attr employment=staff)
echo '$ sluice principal create carol --role auditor'
auditor_token=$(make_principal carol auditor)
run "$bin" principal list

step "the trainer, bob: who am I, and what may I not do"
SLUICE_TOKEN=$trainer_token run "$bin" whoami
echo '$ sluice principal list    (as bob: refused, and audited)'
SLUICE_TOKEN=$trainer_token "$bin" principal list || true
echo '$ sluice whoami            (with a wrong token: refused, and audited)'
SLUICE_TOKEN="slc_0000000000000000_$(printf '0%.0s' $(seq 64))" "$bin" whoami || true
: "$owner_token"

step "the owner, alice: a dataset, uploaded encrypted and erasure coded, read back"
export SLUICE_TOKEN=$owner_token
work=$(mktemp -d)
/usr/bin/python3 - "$work/patients.csv" <<'PY'
import random, sys
random.seed(7)
with open(sys.argv[1], "w") as f:
    f.write("patient_id,email,age,systolic,diabetic,region\n")
    for i in range(5000):
        f.write("%d,p%d@clinic.example,%d,%r,%s,%s\n" % (
            i, i, random.randint(18, 90), round(random.gauss(125, 15)) + 0.5,
            random.random() < 0.1 and "true" or "false", random.choice(["EU", "US", "\"Asia, East\""])))
PY
if ! "$bin" dataset show patients >/dev/null 2>&1; then
  run "$bin" dataset create patients --classification confidential \
    --description "synthetic patients for the walk" \
    --column patient_id:int64:id --column email:string:pii --column age:int64 \
    --column systolic:float64 --column diabetic:bool --column region:string
fi
run "$bin" dataset upload patients "$work/patients.csv"
run "$bin" dataset show patients
run "$bin" dataset fetch patients --format csv --limit 3
run "$bin" dataset fetch patients --format jsonl --columns age,systolic,diabetic --offset 10 --limit 3
echo '$ sluice dataset fetch patients --out copy.csv   (byte for byte what was uploaded)'
"$bin" dataset fetch patients --out "$work/copy.csv"
cmp "$work/patients.csv" "$work/copy.csv" && echo "identical: $(wc -c <"$work/copy.csv") bytes"
echo '$ sluice dataset fetch patients    (as bob, the trainer: refused, and audited)'
SLUICE_TOKEN=$trainer_token "$bin" dataset fetch patients >/dev/null || true

step "the owner, alice: a policy for the research trainers (masks, a denied column, a row filter)"
cat >"$work/policy.json" <<'JSON'
{"statements": [
  {"id": "research-read", "effect": "allow",
   "principals": {"roles": ["trainer"], "attributes": {"department": "research"}},
   "actions": ["dataset.describe", "dataset.read", "compute.train", "compute.features"],
   "purposes": ["model-training"],
   "columns": {"deny": ["patient_id"], "mask": {"email": "hash"}},
   "row_filter": "region == \"EU\" and age >= 18"},
  {"id": "no-contractors", "effect": "deny",
   "principals": {"attributes": {"employment": "contractor"}}, "actions": ["*"]}]}
JSON
cat "$work/policy.json"
run "$bin" policy put patients "$work/policy.json"
run "$bin" policy explain --principal bob --action dataset.read --dataset patients --purpose model-training

step "the trainer, bob: reading under the policy"
echo '$ sluice dataset fetch patients --purpose model-training --limit 3    (as bob)'
SLUICE_TOKEN=$trainer_token "$bin" dataset fetch patients --purpose model-training --limit 3
echo '$ sluice dataset fetch patients --format npy --purpose model-training --out x.npy   (as bob)'
SLUICE_TOKEN=$trainer_token "$bin" dataset fetch patients --format npy --purpose model-training \
  --out "$work/x.npy"
/usr/bin/python3 -c 'import ast, sys; b = open(sys.argv[1], "rb").read(); h = ast.literal_eval(b[10:10 + int.from_bytes(b[8:10], "little")].decode()); print("npy: shape", h["shape"], "(rows, numeric columns seen by bob)")' "$work/x.npy"
echo '$ sluice dataset fetch patients --columns patient_id --purpose model-training   (as bob: a denied column, refused)'
SLUICE_TOKEN=$trainer_token "$bin" dataset fetch patients --columns patient_id --purpose model-training || true
echo '$ sluice dataset fetch patients    (as bob, without a purpose: refused, and audited)'
SLUICE_TOKEN=$trainer_token "$bin" dataset fetch patients >/dev/null || true
run "$bin" dataset upload patients "$work/patients.csv"
latest=$("$bin" dataset show patients --output json | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["latest"])')
run "$bin" retention set patients --min-days 0 --max-days 3650 --mode governance

step "the auditor, carol: a legal hold freezes the dataset"
SLUICE_TOKEN=$auditor_token run "$bin" hold set patients --reason "inquiry 2026-11"
echo "\$ sluice dataset delete patients $((latest - 1))    (as alice, under the hold: refused, and audited)"
"$bin" dataset delete patients "$((latest - 1))" || true
SLUICE_TOKEN=$auditor_token run "$bin" hold clear patients
run "$bin" dataset delete patients "$((latest - 1))"

step "the owner, alice: a restricted dataset; its rows never leave, bob trains on it"
export SLUICE_TOKEN=$owner_token
/usr/bin/python3 - "$work/vitals.csv" <<'PY'
import math, random, sys
random.seed(11)
with open(sys.argv[1], "w") as f:
    f.write("age,systolic,bmi,region,diabetic\n")
    for i in range(4000):
        age, sbp, bmi = random.randint(18, 90), random.gauss(125, 15), random.gauss(27, 4)
        z = 0.04 * (age - 50) + 0.03 * (sbp - 125) + 0.25 * (bmi - 27) - 1.5
        f.write("%d,%.1f,%.1f,%s,%d\n" % (age, sbp, bmi, random.choice(["EU", "US"]),
                                          random.random() < 1 / (1 + math.exp(-z))))
PY
if ! "$bin" dataset show vitals >/dev/null 2>&1; then
  run "$bin" dataset create vitals --classification restricted \
    --description "synthetic vitals: restricted, rows never leave" \
    --column age:int64 --column systolic:float64 --column bmi:float64 --column region:string \
    --column diabetic:int64
fi
run "$bin" dataset upload vitals "$work/vitals.csv"
cat >"$work/vitals-policy.json" <<'JSON'
{"statements": [
  {"id": "research-train", "effect": "allow",
   "principals": {"roles": ["trainer"], "attributes": {"department": "research"}},
   "actions": ["dataset.describe", "compute.train", "compute.features"],
   "purposes": ["model-training"]}]}
JSON
run "$bin" policy put vitals "$work/vitals-policy.json"
export SLUICE_TOKEN=$trainer_token
echo '$ sluice dataset fetch vitals --purpose model-training    (as bob: restricted, refused)'
"$bin" dataset fetch vitals --purpose model-training >/dev/null || true
cat >"$work/job.json" <<'JSON'
{"dataset": "vitals", "purpose": "model-training", "kind": "train",
 "features": [{"column": "age", "transform": "standardize"},
              {"column": "systolic", "transform": "standardize"},
              {"column": "bmi", "transform": "standardize"},
              {"column": "region", "transform": "one_hot"}],
 "label": "diabetic",
 "model": {"type": "logistic_regression", "l2": 0.001, "max_iter": 100, "tol": 1e-8},
 "validation": {"fraction": 0.2}}
JSON
cat "$work/job.json"
echo '$ sluice job submit --file job.json --wait    (as bob)'
"$bin" job submit --file "$work/job.json" --wait | tee "$work/job.txt"
job=$(sed -n 's/^job:  *//p' "$work/job.txt")
echo "\$ sluice job result $job --out model.json    (as bob: the model, its metrics, a signed receipt)"
"$bin" job result "$job" --out "$work/model.json"
/usr/bin/python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); m = r["model"]; print("features:    ", ", ".join(m["features"])); print("coefficients:", ", ".join("%.4f" % c for c in m["coefficients"])); print("metrics:     ", ", ".join("%s=%.4g" % (k, v) for k, v in sorted(r["metrics"].items()) if isinstance(v, float))); print("receipt:      model_sha256", r["receipt"]["model_sha256"][:16] + "...", "dataset_sha256", r["receipt"]["dataset_sha256"][:16] + "...")' "$work/model.json"
"$bin" keys public --output json >"$work/keys.json"
run "$bin" receipt verify --file "$work/model.json" --public-key "$work/keys.json"
echo "(offline: a changed byte in model.json's receipt makes it fail)"
rm -rf "$work"

step "the auditor, carol: the trail, its verification, offline too"
export SLUICE_TOKEN=$auditor_token
echo '$ sluice audit export --format csv | tail -4'
"$bin" audit export --format csv | cut -d, -f1,2,4,5,7,10 | tail -4
run "$bin" audit verify
work=$(mktemp -d)
run "$bin" audit export --out "$work/trail.jsonl"
"$bin" keys public --output json >"$work/keys.json"
run "$bin" audit verify --file "$work/trail.jsonl" --public-key "$work/keys.json"
echo "(offline: no server involved; a one-byte change to $work/trail.jsonl makes it fail)"
rm -rf "$work"

if [ "$walk_only" -eq 1 ]; then
  step "walk done; stopping the gateway (--walk-only)"
  stop
  trap - EXIT
  exit 0
fi
step "serving on $SLUICE_ADDR until Ctrl-C"
echo "export SLUICE_ADDR=$SLUICE_ADDR SLUICE_CACERT=$SLUICE_CACERT SLUICE_TOKEN=\$(cat $dir/admin.token)"
wait "$pid"
