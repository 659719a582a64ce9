"""
tests/integration/test_compute.py: governed compute against a real gateway, its real
embedded PostgreSQL and real sluice-zone processes (real seccomp, real OpenBLAS).

- Models through the policy's view (a row filter, a hashed column, a denied column):
  ridge against numpy's least squares on exactly the rows the filter lets through,
  logistic regression to its gradient tolerance with metrics, k-means, PCA against
  numpy's SVD; the job's progress shows; the result holds only model and metrics.
- Features: exact statistics of the filtered rows (numpy), histograms with small bins
  suppressed, string columns as category counts, differential privacy within bounds and
  the per-(dataset, principal) epsilon budget refusing past its total (403 at submit).
- Release rules: min_rows (the refusal names the rule, never a count), max_parameters,
  one_hot on id/pii columns and features on pii columns refused at submit.
- A restricted dataset: rows are 403, training succeeds and its result holds no row;
  one row's values (min, max, quantiles) never leave without privacy.
- Receipts: verified by the server and offline by the CLI with /v1/keys/public; any
  change to any field fails; the receipt's checkpoint covers the job's events.
- Who sees what: only the job's principal reads the result; an auditor sees the status.
- The sandbox, proven through the gateway: zones that call socket(), open() or execve()
  after the filter die by SIGSYS and the job fails cleanly, audited; a zone that does
  not answer is cancelled or stopped by the job's time limit.

Run: SLUICE_BIN=.../bin/sluice /usr/bin/python3 -m unittest -v test_compute
"""
import base64
import json
import os
import secrets
import stat
import subprocess
import sys
import tempfile
import time
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BIN, ServerCase  # noqa: E402

CSV = {"Content-Type": "text/csv"}
PURPOSE = {"X-Sluice-Purpose": "model-training"}
EMAIL = "planted.%s@example.org" % secrets.token_hex(4)
SSN = "987-65-%04d" % secrets.randbelow(10000)

N = 800
COLS = [{"name": "id", "type": "int64", "tags": ["id"]}, {"name": "email", "tags": ["pii"]},
        {"name": "ssn", "tags": ["pii"]}, {"name": "region"}, {"name": "age", "type": "int64"},
        {"name": "x1", "type": "float64"}, {"name": "x2", "type": "float64"},
        {"name": "x3", "type": "float64"}, {"name": "y", "type": "int64"},
        {"name": "target", "type": "float64"}]


def make_rows(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    x[:, 1] = x[:, 1] * 2 + 1
    age = rng.integers(18, 90, size=n)
    logits = 1.5 * x[:, 0] - 1.0 * x[:, 1] + 0.5 * x[:, 2] + 0.3
    y = (rng.random(n) < 1 / (1 + np.exp(-logits))).astype(int)
    target = 2.0 * x[:, 0] - 3.0 * x[:, 1] + 0.25 * x[:, 2] + 0.01 * age + 1.5 + rng.normal(scale=0.1, size=n)
    region = np.where(rng.random(n) < 0.15, "ZZ", np.where(rng.random(n) < 0.5, "EU", "US"))
    rows = []
    for i in range(n):
        rows.append({"id": i + 1, "email": EMAIL if i % 97 == 0 else "user%d@example.org" % i,
                     "ssn": SSN if i % 89 == 0 else "%03d-11-%04d" % (i % 1000, i),
                     "region": str(region[i]), "age": int(age[i]), "x1": float(x[i, 0]),
                     "x2": float(x[i, 1]), "x3": float(x[i, 2]), "y": int(y[i]),
                     "target": float(target[i])})
    return rows


def csv_of(rows):
    names = [c["name"] for c in COLS]
    out = [",".join(names)]
    for r in rows:
        out.append(",".join(repr(r[k]) if isinstance(r[k], float) else str(r[k]) for k in names))
    return ("\n".join(out) + "\n").encode()


POLICY = {"statements": [
    {"id": "train", "effect": "allow", "principals": {"roles": ["trainer"]},
     "actions": ["compute.train", "compute.features", "dataset.describe"], "purposes": ["model-training"],
     "columns": {"deny": ["ssn"], "mask": {"email": "hash", "region": "hash"}},
     "row_filter": "region != \"ZZ\""},
]}
# the same view, with reads: a job sees exactly what a read of the same principal sees
READ_POLICY = {"statements": [dict(POLICY["statements"][0],
                                   actions=POLICY["statements"][0]["actions"] + ["dataset.read"])]}


class ComputeBase(ServerCase):
    def submit(self, spec, token=None, expect=202, headers=None):
        r = self.srv.request("POST", "/v1/jobs", token=token or self.trainer, body=spec,
                             headers=dict(PURPOSE, **(headers or {})))
        self.assertEqual(r.status, expect, r)
        body = r.body.decode("utf-8", "replace")
        for planted in (EMAIL, SSN):
            self.assertNotIn(planted, body)
        return r.json()

    def wait(self, job_id, token=None, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            r = self.srv.request("GET", "/v1/jobs/" + job_id, token=token or self.trainer)
            self.assertEqual(r.status, 200, r)
            j = r.json()
            if j["status"] not in ("queued", "running"):
                return j
            time.sleep(0.1)
        self.fail("job %s did not end" % job_id)

    def run_job(self, spec, token=None):
        job = self.submit(spec, token=token)
        self.assertEqual(job["status"], "queued")
        st = self.wait(job["job_id"], token=token)
        return job["job_id"], st

    def result(self, job_id, token=None, expect=200):
        r = self.srv.request("GET", "/v1/jobs/%s/result" % job_id, token=token or self.trainer)
        self.assertEqual(r.status, expect, r)
        text = r.body.decode("utf-8", "replace")
        for planted in (EMAIL, SSN):
            self.assertNotIn(planted, text)
        return r.json()


class ComputeTest(ComputeBase):
    @classmethod
    def prepare(cls):
        srv = cls.srv
        cls.owner = srv.create_principal("olga", roles=["owner"])
        cls.trainer = srv.create_principal("tom", roles=["trainer"])
        cls.trainer2 = srv.create_principal("tina", roles=["trainer"])
        cls.auditor = srv.create_principal("audrey", roles=["auditor"])
        cls.rows = make_rows(N, 7)
        for ds, cls_ in (("clinic", "confidential"), ("vault", "restricted")):
            r = srv.request("POST", "/v1/datasets", token=cls.owner,
                            body={"name": ds, "classification": cls_, "columns": COLS})
            assert r.status == 201, r
            r = srv.request("POST", "/v1/datasets/%s/versions" % ds, token=cls.owner, raw=csv_of(cls.rows),
                            headers=CSV)
            assert r.status == 201, r
            r = srv.request("PUT", "/v1/datasets/%s/policy" % ds, token=cls.owner,
                            body=READ_POLICY if ds == "clinic" else POLICY)
            assert r.status == 200, r
        # a small one: under min_rows once filtered
        r = srv.request("POST", "/v1/datasets", token=cls.owner,
                        body={"name": "tiny", "classification": "internal", "columns": COLS})
        assert r.status == 201, r
        r = srv.request("POST", "/v1/datasets/tiny/versions", token=cls.owner, raw=csv_of(make_rows(60, 3)),
                        headers=CSV)
        assert r.status == 201, r
        r = srv.request("PUT", "/v1/datasets/tiny/policy", token=cls.owner, body=POLICY)
        assert r.status == 200, r
        cls.kept = [r for r in cls.rows if r["region"] != "ZZ"]

    def matrix(self, names):
        return np.array([[r[k] for k in names] for r in self.kept], dtype=float)

    def test_a_linear_regression_matches_least_squares_on_the_filtered_rows(self):
        job_id, st = self.run_job({"dataset": "clinic", "kind": "train",
                                   "features": [{"column": c} for c in ("x1", "x2", "x3", "age")],
                                   "label": "target", "model": {"type": "linear_regression"},
                                   "validation": {"fraction": 0}})
        self.assertEqual(st["status"], "succeeded", st)
        res = self.result(job_id)
        self.assertEqual(set(res), {"model", "metrics", "receipt"})
        m = res["model"]
        self.assertEqual(m["type"], "linear_regression")
        self.assertEqual(m["features"], ["x1", "x2", "x3", "age"])
        x = self.matrix(["x1", "x2", "x3", "age"])
        y = self.matrix(["target"])[:, 0]
        a = np.hstack([x, np.ones((len(x), 1))])
        sol = np.linalg.lstsq(a, y, rcond=None)[0]
        np.testing.assert_allclose(m["coefficients"], sol[:4], rtol=1e-7, atol=1e-9)
        self.assertAlmostEqual(m["intercept"], sol[4], places=7)
        pred = a @ sol
        r2 = 1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
        self.assertAlmostEqual(res["metrics"]["r2"], r2, places=9)
        self.assertEqual(res["metrics"]["evaluated_on"], "training")
        # the receipt binds it
        rc = res["receipt"]
        for k in ("job_id", "principal", "purpose", "dataset", "dataset_version", "dataset_sha256",
                  "policy_versions", "statements", "spec_sha256", "model_sha256", "audit_checkpoint",
                  "started", "finished", "sluice_version", "key_id", "signature"):
            self.assertIn(k, rc)
        self.assertEqual((rc["job_id"], rc["principal"], rc["purpose"], rc["dataset"]),
                         (job_id, "tom", "model-training", "clinic"))
        self.assertEqual(rc["statements"], ["train"])

    def test_b_logistic_regression_converges_with_metrics_and_progress(self):
        job_id, st = self.run_job({"dataset": "clinic", "purpose": "model-training", "kind": "train",
                                   "features": [{"column": "x1", "transform": "standardize"},
                                                {"column": "x2", "transform": "minmax"},
                                                {"column": "x3"},
                                                {"column": "region", "transform": "one_hot"}],
                                   "label": "y",
                                   "model": {"type": "logistic_regression", "l2": 0.001, "max_iter": 100,
                                             "tol": 1e-8},
                                   "validation": {"fraction": 0.25, "seed": 42}})
        self.assertEqual(st["status"], "succeeded", st)
        self.assertIsInstance(st["progress"]["iteration"], int)
        self.assertGreater(st["progress"]["iteration"], 0)
        res = self.result(job_id)
        m, met = res["model"], res["metrics"]
        self.assertEqual(m["features"][:3], ["x1", "x2", "x3"])
        # region is hashed by the policy: its categories are pseudonyms, ZZ filtered out
        self.assertEqual(len(m["features"]), 5)
        for f in m["features"][3:]:
            self.assertRegex(f, r"^region=[0-9a-f]{64}$")
        self.assertEqual(len(m["coefficients"]), 5)
        self.assertLessEqual(met["gradient_norm"], 1e-8)
        for k in ("accuracy", "log_loss", "roc_auc"):
            self.assertIn(k, met)
        self.assertGreater(met["roc_auc"], 0.75)
        self.assertGreater(met["accuracy"], 0.6)
        self.assertEqual(met["evaluated_on"], "validation")
        # the training split's statistics of a standardize transform are released here
        t = m["transforms"][0]
        xs = self.matrix(["x1"])[:, 0]
        self.assertEqual(t["transform"], "standardize")
        self.assertLess(abs(t["mean"] - xs.mean()), 0.2)

    def test_c_kmeans_and_pca(self):
        job_id, st = self.run_job({"dataset": "clinic", "kind": "train",
                                   "features": [{"column": "x1"}, {"column": "x2"}, {"column": "x3"}],
                                   "model": {"type": "pca", "components": 2}, "validation": {"fraction": 0}})
        self.assertEqual(st["status"], "succeeded", st)
        m = self.result(job_id)["model"]
        x = self.matrix(["x1", "x2", "x3"])
        xc = x - x.mean(axis=0)
        _, s, vt = np.linalg.svd(xc, full_matrices=False)
        np.testing.assert_allclose(m["explained_variance"], (s[:2] ** 2) / (len(x) - 1), rtol=1e-8)
        for i in range(2):
            self.assertAlmostEqual(abs(float(np.dot(m["components"][i], vt[i]))), 1.0, places=8)
        job_id, st = self.run_job({"dataset": "clinic", "kind": "train",
                                   "features": [{"column": "x1"}, {"column": "x2"}],
                                   "model": {"type": "kmeans", "k": 3, "seed": 1}})
        self.assertEqual(st["status"], "succeeded", st)
        res = self.result(job_id)
        self.assertEqual(len(res["model"]["centroids"]), 3)
        self.assertIn("inertia", res["metrics"])

    def test_d_features_are_exact_on_the_filtered_rows(self):
        job_id, st = self.run_job({"dataset": "clinic", "kind": "features", "columns": ["age", "x1", "region"],
                                   "bins": 5})
        self.assertEqual(st["status"], "succeeded", st)
        res = self.result(job_id)
        self.assertEqual(set(res), {"stats", "receipt"})
        self.assertIn("result_sha256", res["receipt"])
        for name in ("age", "x1"):
            v = self.matrix([name])[:, 0]
            s = res["stats"][name]
            self.assertEqual(s["count"], len(v))
            self.assertAlmostEqual(s["mean"], v.mean(), places=9)
            self.assertAlmostEqual(s["std"], v.std(ddof=1), places=9)
            self.assertEqual((s["min"], s["max"]), (v.min(), v.max()))
            self.assertAlmostEqual(s["quantiles"]["0.5"], float(np.quantile(v, 0.5)), places=9)
            counts, edges = np.histogram(v, bins=5)
            want = [int(c) if c >= 10 else None for c in counts]
            self.assertEqual(s["histogram"]["counts"], want)
            np.testing.assert_allclose(s["histogram"]["edges"], edges, rtol=1e-12)
        # the job saw exactly the view a read of the same principal gets: filtered rows,
        # the region hashed (the same pseudonyms, the same counts)
        r = self.srv.request("GET", "/v1/datasets/clinic/versions/latest/rows?format=jsonl&columns=region,age",
                             token=self.trainer, headers=PURPOSE)
        self.assertEqual(r.status, 200, r)
        seen = [json.loads(x) for x in r.body.decode().splitlines()]
        self.assertEqual(len(seen), len(self.kept))
        counts = {}
        for o in seen:
            counts[o["region"]] = counts.get(o["region"], 0) + 1
        reg = res["stats"]["region"]
        self.assertEqual(reg["categories"], counts)
        self.assertEqual(len(counts), 2)
        for k in counts:
            self.assertRegex(k, r"^[0-9a-f]{64}$")
        self.assertEqual(res["stats"]["age"]["count"], len([o for o in seen if o["age"] is not None]))

    def test_e_release_rules(self):
        # refused at submit: one_hot on an id column, features on a pii one, a denied column
        for spec, rule in (
                ({"dataset": "clinic", "kind": "train", "features": [{"column": "id", "transform": "one_hot"}],
                  "label": "target", "model": {"type": "linear_regression"}}, "one_hot_id_pii"),
                ({"dataset": "clinic", "kind": "features", "columns": ["email"]}, "features_pii")):
            r = self.srv.request("POST", "/v1/jobs", token=self.trainer, body=spec, headers=PURPOSE)
            self.assertEqual(r.status, 403, r)
            self.assertIn(rule, r.json()["error"]["message"])
        r = self.srv.request("POST", "/v1/jobs", token=self.trainer, headers=PURPOSE,
                             body={"dataset": "clinic", "kind": "features", "columns": ["ssn"]})
        self.assertEqual(r.status, 403, r)
        self.assertIn("denied by policy", r.json()["error"]["message"])
        # min_rows once filtered: the job ends refused, naming the rule and no count
        job_id, st = self.run_job({"dataset": "tiny", "kind": "features", "columns": ["age"]})
        self.assertEqual(st["status"], "refused", st)
        self.assertIn("min_rows", st["error"])
        self.assertFalse(any(ch.isdigit() for ch in st["error"]), st["error"])
        fin = [e for e in self.srv.events() if e["resource"] == "jobs/" + job_id and e["action"] == "job.finish"]
        self.assertEqual((fin[0]["decision"], fin[0]["status"], fin[0]["detail"]["rule"]), ("deny", 403, "min_rows"))
        self.assertEqual(self.result(job_id, expect=404)["error"]["code"], "not_found")
        # metrics over a handful of held-out rows would be their values: refused
        job_id, st = self.run_job({"dataset": "clinic", "kind": "train", "features": [{"column": "x1"}],
                                   "label": "target", "model": {"type": "linear_regression"},
                                   "validation": {"fraction": 0.01, "seed": 2}})
        self.assertEqual(st["status"], "refused", st)
        self.assertIn("min_rows", st["error"])
        # max_parameters: 3 x 300 centroid numbers cannot leave with ~680 training rows
        job_id, st = self.run_job({"dataset": "clinic", "kind": "train",
                                   "features": [{"column": "x1"}, {"column": "x2"}, {"column": "x3"}],
                                   "model": {"type": "kmeans", "k": 300}, "validation": {"fraction": 0}})
        self.assertEqual(st["status"], "refused", st)
        self.assertIn("max_parameters", st["error"])
        # a malformed spec is a 422, audited, and makes no job
        for bad in ({"dataset": "clinic", "kind": "train"}, {"dataset": "clinic", "kind": "features", "columns": []},
                    {"dataset": "clinic", "kind": "features", "columns": ["age"], "extra": 1},
                    {"dataset": "clinic", "kind": "train", "features": [{"column": "x1"}], "label": "y",
                     "model": {"type": "svm"}},
                    {"dataset": "clinic", "kind": "features", "columns": ["nope"]}):
            r = self.srv.request("POST", "/v1/jobs", token=self.trainer, body=bad, headers=PURPOSE)
            self.assertEqual(r.status, 422, (bad, r))

    def test_f_privacy_budget(self):
        spec = {"dataset": "clinic", "kind": "features", "columns": ["age", "region"],
                "privacy": {"epsilon": 4, "bounds": {"age": [0, 120]}}}
        r = self.srv.request("POST", "/v1/jobs", token=self.trainer2, headers=PURPOSE,
                             body={"dataset": "clinic", "kind": "features", "columns": ["age"],
                                   "privacy": {"epsilon": 1}})
        self.assertEqual(r.status, 422, r)  # a numeric column needs bounds
        ids = []
        for _ in range(2):
            ids.append(self.submit(spec, token=self.trainer2)["job_id"])
        r = self.srv.request("POST", "/v1/jobs", token=self.trainer2, body=spec, headers=PURPOSE)
        self.assertEqual(r.status, 403, r)
        self.assertIn("privacy_budget", r.json()["error"]["message"])
        # another principal has a budget of their own
        self.submit(dict(spec, privacy={"epsilon": 1, "bounds": {"age": [0, 120]}}))
        for job_id in ids:
            st = self.wait(job_id, token=self.trainer2)
            self.assertEqual(st["status"], "succeeded", st)
            s = self.result(job_id, token=self.trainer2)["stats"]["age"]
            for k in ("mean", "min", "max"):
                self.assertTrue(0 <= s[k] <= 120, s)
            self.assertTrue(0 <= s["quantiles"]["0.5"] <= 120, s)

    def test_g_restricted_dataset(self):
        r = self.srv.request("GET", "/v1/datasets/vault/versions/latest/rows", token=self.trainer, headers=PURPOSE)
        self.assertEqual(r.status, 403, r)
        job_id, st = self.run_job({"dataset": "vault", "kind": "train",
                                   "features": [{"column": "x1", "transform": "minmax"},
                                                {"column": "x2", "transform": "standardize"}],
                                   "label": "y", "model": {"type": "logistic_regression"},
                                   "validation": {"fraction": 0.2, "seed": 1}})
        self.assertEqual(st["status"], "succeeded", st)
        res = self.result(job_id)
        text = json.dumps(res)
        # no row: no value of any row's strings, and the transform statistics are withheld
        for r_ in self.rows[:50]:
            self.assertNotIn(r_["email"], text)
        for t in res["model"]["transforms"]:
            for k in ("mean", "std", "min", "max"):
                self.assertNotIn(k, t)
        # its split is the gateway's (fraction and seed fixed per version): a job asking a
        # one-row validation split gets the fixed one, not a row's value in its metrics
        job_id, st = self.run_job({"dataset": "vault", "kind": "train", "features": [{"column": "x1"}],
                                   "label": "target", "model": {"type": "linear_regression"},
                                   "validation": {"fraction": 0.0015, "seed": 9}})
        self.assertEqual(st["status"], "succeeded", st)
        self.assertEqual(self.result(job_id)["metrics"]["evaluated_on"], "validation")
        # one row's values never leave without privacy
        job_id, st = self.run_job({"dataset": "vault", "kind": "features", "columns": ["age"]})
        self.assertEqual(st["status"], "succeeded", st)
        s = self.result(job_id)["stats"]["age"]
        self.assertIsNone(s["min"])
        self.assertIsNone(s["max"])
        self.assertTrue(s["quantiles"] is None or all(v is None for v in s["quantiles"].values()), s)
        self.assertNotIn("histogram", s)

    def test_h_receipts_verify_online_and_offline(self):
        job_id, st = self.run_job({"dataset": "clinic", "kind": "features", "columns": ["x2"]})
        self.assertEqual(st["status"], "succeeded", st)
        res = self.result(job_id)
        rc = res["receipt"]
        r = self.srv.request("POST", "/v1/receipts/verify", token=self.auditor, body={"receipt": rc})
        self.assertEqual(r.json(), {"valid": True})
        for field in rc:
            if field == "signature":
                continue
            bad = json.loads(json.dumps(rc))
            v = bad[field]
            bad[field] = (v + "0") if isinstance(v, str) else (v + 1 if isinstance(v, int) else "x")
            r = self.srv.request("POST", "/v1/receipts/verify", token=self.auditor, body={"receipt": bad})
            self.assertEqual(r.json(), {"valid": False}, field)
        # offline, with the published key
        keys = self.srv.request("GET", "/v1/keys/public", token=self.trainer).json()
        with tempfile.TemporaryDirectory() as d:
            rf, kf = os.path.join(d, "r.json"), os.path.join(d, "keys.json")
            with open(kf, "w") as f:
                json.dump(keys, f)
            out = self.srv.cli("job", "result", job_id, "--out", rf, token=self.trainer)
            out = self.srv.cli("receipt", "verify", "--file", rf, "--public-key", kf, token=None)
            self.assertIn("receipt verified", out.stdout)
            with open(rf) as f:
                doc = json.load(f)
            doc["receipt"]["dataset_version"] += 1
            with open(rf, "w") as f:
                json.dump(doc, f)
            out = self.srv.cli("receipt", "verify", "--file", rf, "--public-key", kf, token=None, check=False)
            self.assertEqual(out.returncode, 1, out)
            # the signature's bytes themselves
            doc["receipt"]["dataset_version"] -= 1
            sig = bytearray(base64.b64decode(doc["receipt"]["signature"]))
            sig[5] ^= 1
            doc["receipt"]["signature"] = base64.b64encode(bytes(sig)).decode()
            with open(rf, "w") as f:
                json.dump(doc, f)
            out = self.srv.cli("receipt", "verify", "--file", rf, "--public-key", kf, token=None, check=False)
            self.assertEqual(out.returncode, 1, out)
        # the checkpoint covers the job's events, which the trail holds
        evs = [e for e in self.srv.events() if e["resource"] == "jobs/" + job_id]
        actions = [e["action"] for e in evs]
        for a in ("job.submit", "job.start", "job.release", "job.finish"):
            self.assertIn(a, actions)
        release = [e for e in evs if e["action"] == "job.release"][0]
        self.assertGreaterEqual(rc["audit_checkpoint"]["seq"], release["seq"])
        for e in self.srv.events():
            text = json.dumps(e)
            self.assertNotIn(EMAIL, text)
            self.assertNotIn(SSN, text)
        log = self.srv.read_log()
        self.assertNotIn(EMAIL, log)
        self.assertNotIn(SSN, log)

    def test_i_who_sees_what(self):
        job_id, st = self.run_job({"dataset": "clinic", "kind": "features", "columns": ["x3"]})
        self.assertEqual(st["status"], "succeeded", st)
        self.assertEqual(self.result(job_id, token=self.trainer2, expect=404)["error"]["code"], "not_found")
        r = self.srv.request("GET", "/v1/jobs/" + job_id, token=self.trainer2)
        self.assertEqual(r.status, 404, r)
        r = self.srv.request("GET", "/v1/jobs/" + job_id, token=self.auditor)
        self.assertEqual((r.status, r.json()["status"]), (200, "succeeded"))
        self.assertEqual(self.result(job_id, token=self.auditor, expect=404)["error"]["code"], "not_found")
        # an admin sees the status, not the result
        self.assertEqual(self.srv.request("GET", "/v1/jobs/" + job_id).status, 200)
        self.assertEqual(self.srv.request("GET", "/v1/jobs/%s/result" % job_id).status, 404)
        r = self.srv.request("DELETE", "/v1/jobs/" + job_id, token=self.trainer2)
        self.assertEqual(r.status, 404, r)
        r = self.srv.request("DELETE", "/v1/jobs/" + job_id, token=self.trainer)
        self.assertEqual(r.status, 409, r)  # already ended
        mine = self.srv.request("GET", "/v1/jobs", token=self.trainer).json()["items"]
        self.assertIn(job_id, [j["job_id"] for j in mine])
        self.assertNotIn(job_id, [j["job_id"] for j in self.srv.request("GET", "/v1/jobs", token=self.trainer2)
                                  .json()["items"]])
        # no permission to compute, no job
        r = self.srv.request("POST", "/v1/jobs", token=self.trainer, body={"dataset": "clinic", "kind": "features",
                                                                           "columns": ["x1"]})
        self.assertEqual(r.status, 403, r)  # no purpose: the statement requires one
        # the CLI: submit, wait, result
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump({"dataset": "clinic", "kind": "features", "columns": ["x1"]}, f)
        try:
            out = self.srv.cli("job", "submit", "--file", f.name, "--wait", "--purpose", "model-training",
                               token=self.trainer)
            self.assertIn("succeeded", out.stdout)
        finally:
            os.unlink(f.name)


# A zone taken over: it reads its input, then answers what it likes. The gateway checks the
# answer against the job before anything leaves.
EVIL_ZONE = r"""
import json, struct, sys
mode = sys.argv[1]
data = sys.stdin.buffer.read()
spec = json.loads(data[12:12 + struct.unpack("<I", data[8:12])[0]])
stats = {"x1": {"count": 300, "nulls": 0, "mean": 0.1, "std": 1.0, "min": -2.0, "max": 2.0,
                "quantiles": {"0.5": 0.0}}}
if mode == "evil-extra":     # rows smuggled in a field the job did not ask for
    res = {"stats": stats, "rows": 300, "metrics": {"rows": ["a", "b"]}}
elif mode == "evil-column":  # a column the job did not ask for
    res = {"stats": dict(stats, email={"categories": {"x@example.org": 1}}), "rows": 300}
elif mode == "evil-rows":    # more rows than it was sent
    res = {"stats": stats, "rows": 10 ** 9}
else:                        # well-formed: what a sound zone says (of fewer rows than sent)
    res = {"stats": stats, "rows": 150}
out = json.dumps(res).encode()
sys.stdout.buffer.write(b"SLZ1" + bytes([8, 0, 0, 0]) + struct.pack("<I", len(out)) + out)
"""


class ZoneSandboxTest(ComputeBase):
    """A zone that breaks its sandbox, or never answers, fails the job cleanly."""
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="slz-", dir="/tmp")
        os.chmod(cls.tmp, 0o755)
        cls.mode = os.path.join(cls.tmp, "mode")
        cls.set_mode("none")
        zone = os.path.join(os.path.dirname(BIN), "sluice-zone")
        cls.wrapper = os.path.join(cls.tmp, "zone.sh")
        cls.evil = os.path.join(cls.tmp, "evil.py")
        with open(cls.evil, "w") as f:
            f.write(EVIL_ZONE)
        with open(cls.wrapper, "w") as f:
            f.write("#!/bin/sh\nm=$(cat %s)\ncase $m in\n"
                    "  sleep) sleep 30; exec %s \"$@\" ;;\n"
                    "  none) exec %s \"$@\" ;;\n"
                    "  evil-*) exec /usr/bin/python3 %s $m ;;\n"
                    "  *) exec %s \"$@\" --selftest $m ;;\nesac\n" % (cls.mode, zone, zone, cls.evil, zone))
        os.chmod(cls.wrapper, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        cls.serve_args = ["--zone-bin", cls.wrapper]
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        subprocess.run(["rm", "-rf", cls.tmp])

    @classmethod
    def set_mode(cls, m):
        with open(cls.mode, "w") as f:
            f.write(m + "\n")
        os.chmod(cls.mode, 0o644)

    @classmethod
    def prepare(cls):
        srv = cls.srv
        cls.owner = srv.create_principal("olga", roles=["owner"])
        cls.trainer = srv.create_principal("tom", roles=["trainer"])
        r = srv.request("POST", "/v1/datasets", token=cls.owner,
                        body={"name": "clinic", "classification": "confidential", "columns": COLS})
        assert r.status == 201, r
        r = srv.request("POST", "/v1/datasets/clinic/versions", token=cls.owner, raw=csv_of(make_rows(300, 5)),
                        headers=CSV)
        assert r.status == 201, r
        r = srv.request("PUT", "/v1/datasets/clinic/policy", token=cls.owner, body=POLICY)
        assert r.status == 200, r
        # one numeric column, more rows than a pipe holds once framed (1 MiB)
        r = srv.request("POST", "/v1/datasets", token=cls.owner,
                        body={"name": "big", "classification": "internal",
                              "columns": [{"name": "x1", "type": "float64"}]})
        assert r.status == 201, r
        body = ("x1\n" + "".join("%d.5\n" % (i % 1000) for i in range(200000))).encode()
        r = srv.request("POST", "/v1/datasets/big/versions", token=cls.owner, raw=body, headers=CSV)
        assert r.status == 201, r
        r = srv.request("PUT", "/v1/datasets/big/policy", token=cls.owner,
                        body={"statements": [{"id": "t", "effect": "allow", "principals": {"roles": ["trainer"]},
                                              "actions": ["compute.features"]}]})
        assert r.status == 200, r

    SPEC = {"dataset": "clinic", "kind": "features", "columns": ["x1"]}

    def test_a_forbidden_calls_kill_the_zone_and_fail_the_job(self):
        for what in ("socket", "open", "execve"):
            with self.subTest(what=what):
                self.set_mode(what)
                job_id, st = self.run_job(self.SPEC)
                self.assertEqual(st["status"], "failed", st)
                self.assertIn("SIGSYS", st["error"])
                fin = [e for e in self.srv.events()
                       if e["resource"] == "jobs/" + job_id and e["action"] == "job.finish"]
                self.assertEqual(len(fin), 1)
                self.assertEqual((fin[0]["decision"], fin[0]["detail"]["status"]), ("error", "failed"))
        self.set_mode("none")
        job_id, st = self.run_job(self.SPEC)
        self.assertEqual(st["status"], "succeeded", st)

    def test_c_a_zone_taken_over_releases_only_what_the_job_asked(self):
        try:
            for mode in ("evil-extra", "evil-column", "evil-rows"):
                with self.subTest(mode=mode):
                    self.set_mode(mode)
                    job_id, st = self.run_job(self.SPEC)
                    self.assertEqual(st["status"], "failed", st)
                    self.assertIn("compute zone", st["error"])
                    self.assertEqual(self.result(job_id, expect=404)["error"]["code"], "not_found")
            self.set_mode("evil-ok")
            job_id, st = self.run_job(self.SPEC)
            self.assertEqual(st["status"], "succeeded", st)
        finally:
            self.set_mode("none")

    def test_d_a_zone_that_stops_reading_cannot_hold_the_gateway(self):
        # more rows than the pipe holds: the gateway's writes would block on a zone that
        # does not read; the time limit still ends the job, and cancellation still works
        self.set_mode("sleep")
        try:
            t0 = time.time()
            job_id, st = self.run_job({"dataset": "big", "kind": "features", "columns": ["x1"],
                                       "time_limit_s": 2})
            self.assertEqual(st["status"], "failed", st)
            self.assertIn("time limit", st["error"])
            self.assertLess(time.time() - t0, 20)
        finally:
            self.set_mode("none")
        job_id, st = self.run_job({"dataset": "big", "kind": "features", "columns": ["x1"]})
        self.assertEqual(st["status"], "succeeded", st)

    def test_b_cancel_and_time_limit(self):
        self.set_mode("sleep")
        try:
            job = self.submit(self.SPEC)
            deadline = time.time() + 30
            while time.time() < deadline:
                if self.srv.request("GET", "/v1/jobs/" + job["job_id"], token=self.trainer).json()["status"] == "running":
                    break
                time.sleep(0.05)
            r = self.srv.request("DELETE", "/v1/jobs/" + job["job_id"], token=self.trainer)
            self.assertEqual(r.json(), {"job_id": job["job_id"], "status": "cancelled"})
            st = self.wait(job["job_id"])
            self.assertEqual(st["status"], "cancelled")
            self.assertEqual(self.result(job["job_id"], expect=404)["error"]["code"], "not_found")
            job_id, st = self.run_job(dict(self.SPEC, time_limit_s=2))
            self.assertEqual(st["status"], "failed", st)
            self.assertIn("time limit", st["error"])
        finally:
            self.set_mode("none")
        # the gateway goes on serving jobs
        job_id, st = self.run_job(self.SPEC)
        self.assertEqual(st["status"], "succeeded", st)


if __name__ == "__main__":
    unittest.main()
