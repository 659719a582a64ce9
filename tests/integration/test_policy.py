"""
tests/integration/test_policy.py: policies against a real gateway and its real embedded
PostgreSQL, as non-admin principals (and as an admin, who gets no exemption).

- Documents: PUT makes a new version (GET dataset and GET policy show it); an invalid
  one is a 422 naming the statement and the field, and changes nothing; a restricted
  dataset refuses any statement naming dataset.read; unknown fields are refused.
- Decisions: deny by default, grants by role and attribute, deny wins, purposes by
  X-Sluice-Purpose (a malformed one is a 400), each refusal audited with the statements
  and policy versions that decided.
- The conformance matrix: a trainer reads csv, jsonl and npy and sees exactly the view:
  denied columns absent (named explicitly: 403), masks applied (hash consistent within a
  dataset and different across datasets, partial, year, redact, null), the row filter
  applied (offset and limit count rows after it, npy's row count too, nulls fail
  closed); planted values appear in no output, error, log line or audit event.
- Global policies by tag: their masks join the dataset's (the strictest wins), and an
  admin reading through a global grant sees the same masked, filtered view.
- /v1/authorize explains a decision without performing it; lists show what a principal
  may describe.

Run: SLUICE_BIN=.../bin/sluice /usr/bin/python3 -m unittest -v test_policy
"""
import hashlib
import io
import json
import os
import re
import secrets
import struct
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ServerCase  # noqa: E402

CSV = {"Content-Type": "text/csv"}
HEX64 = re.compile(r"^[0-9a-f]{64}$")

# planted values: they must never leave unmasked, nor appear in errors, logs or the trail
SSN = "987-65-%04d" % secrets.randbelow(10000)
EMAIL = "planted.%s@example.org" % secrets.token_hex(4)

HEADER = "id,name,email,ssn,dob,region,consent,age,score"
ROWS = [
    # id, name, email, ssn, dob, region, consent, age, score
    (1, "Ada Lovelace", EMAIL, SSN, "1815-12-10", "EU", "true", 36, 0.5),
    (2, "Bob", "bob@example.org", "123-45-6789", "1990-01-02", "US", "true", 34, 1.25),
    (3, "Chloé Dupont", "chloe@example.org", "", "2001-07-14", "EU", "false", 23, -2.0),
    (4, "Dan", EMAIL, "222-33-4444", "not a date", "EU", "true", None, 3.0),
    (5, "Eve", "eve@example.org", "555-66-7777", "1970-05-05", "EU", "", 55, None),
    (6, "Fay", "fay@example.org", "888-99-0000", "1999", "EU", "true", 17, 7.5),
]


def csv_text():
    out = [HEADER]
    for r in ROWS:
        out.append(",".join("" if v is None else str(v) for v in r))
    return ("\n".join(out) + "\n").encode()


def parse_npy(b):
    assert b[:6] == b"\x93NUMPY", b[:10]
    hlen = struct.unpack("<H", b[8:10])[0]
    header = b[10:10 + hlen].decode()
    shape = tuple(int(x) for x in re.search(r"\(([^)]*)\)", header).group(1).split(",") if x.strip())
    data = b[10 + hlen:]
    vals = struct.unpack("<%dd" % (len(data) // 8), data)
    return shape, vals


class PolicyTest(ServerCase):
    @classmethod
    def prepare(cls):
        srv = cls.srv
        cls.owner = srv.create_principal("olga", roles=["owner"])
        cls.owner2 = srv.create_principal("oscar", roles=["owner"])
        cls.trainer = srv.create_principal("tom", roles=["trainer"], attributes={"department": "research"})
        cls.contractor = srv.create_principal("carl", roles=["trainer"],
                                              attributes={"department": "research", "employment": "contractor"})
        cls.sales = srv.create_principal("sam", roles=["trainer"], attributes={"department": "sales"})
        cls.auditor = srv.create_principal("audrey", roles=["auditor"])
        cols = [{"name": "id", "type": "int64", "tags": ["id"]}, {"name": "name", "tags": ["pii"]},
                {"name": "email", "tags": ["pii"]}, {"name": "ssn", "tags": ["pii"]}, {"name": "dob"},
                {"name": "region"}, {"name": "consent", "type": "bool"}, {"name": "age", "type": "int64"},
                {"name": "score", "type": "float64"}]
        for ds in ("patients", "patients2"):
            r = srv.request("POST", "/v1/datasets", token=cls.owner,
                            body={"name": ds, "classification": "confidential", "columns": cols})
            assert r.status == 201, r
            r = srv.request("POST", "/v1/datasets/%s/versions" % ds, token=cls.owner, raw=csv_text(), headers=CSV)
            assert r.status == 201, r
        r = srv.request("POST", "/v1/datasets", token=cls.owner,
                        body={"name": "vault", "classification": "restricted"})
        assert r.status == 201, r

    # ---- helpers ----
    def put_policy(self, ds, doc, token=None, expect=200):
        r = self.srv.request("PUT", "/v1/datasets/%s/policy" % ds, token=token or self.owner, body=doc)
        self.assertEqual(r.status, expect, r)
        return r

    def rows(self, ds, token, fmt="csv", purpose=None, **q):
        q["format"] = fmt
        path = "/v1/datasets/%s/versions/latest/rows?%s" % (ds, "&".join("%s=%s" % kv for kv in sorted(q.items())))
        h = {"X-Sluice-Purpose": purpose} if purpose else {}
        return self.srv.request("GET", path, token=token, headers=h)

    def assertError(self, r, status, code):
        self.assertEqual(r.status, status, r)
        j = r.json()
        self.assertEqual(j["error"]["code"], code, j)
        for planted in (SSN, EMAIL):
            self.assertNotIn(planted, r.body.decode("utf-8", "replace"))
        return j["error"]["message"]

    def events(self):
        return self.srv.events()

    def event(self, rid):
        evs = [e for e in self.events() if e.get("request_id") == rid]
        self.assertEqual(len(evs), 1, rid)
        return evs[0]

    TRAINER_POLICY = {"statements": [
        {"id": "research-read", "effect": "allow",
         "principals": {"roles": ["trainer"], "attributes": {"department": "research"}},
         "actions": ["dataset.read", "dataset.describe"], "purposes": ["model-training"],
         "columns": {"deny": ["ssn"], "mask": {"email": "hash", "name": "partial", "dob": "year",
                                                "id": "null"}},
         "row_filter": "region == \"EU\" and consent == true"},
        {"id": "no-contractors", "effect": "deny", "principals": {"attributes": {"employment": "contractor"}},
         "actions": ["*"]},
    ]}

    # ---- documents ----
    def test_a_documents_versions_and_refusals(self):
        srv = self.srv
        self.assertEqual(srv.request("GET", "/v1/datasets/patients", token=self.owner).json()["policy_version"], 0)
        r = srv.request("GET", "/v1/datasets/patients/policy", token=self.owner)
        self.assertEqual(r.json(), {"policy_version": 0, "document": {"statements": []}})
        v1 = self.put_policy("patients", {"statements": []}).json()["policy_version"]
        v2 = self.put_policy("patients", self.TRAINER_POLICY).json()["policy_version"]
        self.assertEqual((v1 + 1), v2)
        self.assertEqual(srv.request("GET", "/v1/datasets/patients", token=self.owner).json()["policy_version"], v2)
        got = srv.request("GET", "/v1/datasets/patients/policy", token=self.auditor).json()
        self.assertEqual(got["policy_version"], v2)
        self.assertEqual(got["document"], self.TRAINER_POLICY)
        # refusals name the statement and field, and change nothing
        bad = [
            ({"statements": [{"id": "s1", "effect": "allow", "principals": {"roles": ["x"]},
                              "actions": ["dataset.read"], "columns": {"deny": ["nope"]}}]},
             'statement "s1", field "columns.deny": unknown column "nope"'),
            ({"statements": [{"id": "s2", "effect": "allow", "principals": {"roles": ["x"]},
                              "actions": ["dataset.read"], "row_filter": "age == \"%s\"" % SSN}]},
             'statement "s2", field "row_filter"'),
            ({"statements": [{"id": "s3", "effect": "allow", "principals": {"roles": ["x"]},
                              "actions": ["dataset.reed"]}]}, 'statement "s3", field "actions"'),
            ({"statements": [{"id": "s4", "effect": "allow", "principals": {"roles": ["x"]},
                              "actions": ["*"], "columns": {"mask": {"score": "partial"}}}]},
             'field "columns.mask.score": mask partial does not fit type float64'),
            ({"statements": [], "extra": 1}, 'unknown field "extra"'),
        ]
        for doc, words in bad:
            with self.subTest(words=words):
                msg = self.assertError(self.put_policy("patients", doc, expect=422), 422, "invalid")
                self.assertIn(words, msg)
        self.assertEqual(srv.request("GET", "/v1/datasets/patients/policy", token=self.owner).json()["policy_version"], v2)
        # only dataset.manage writes it; an auditor reads it, a trainer does not
        self.assertError(self.put_policy("patients", {"statements": []}, token=self.trainer, expect=403), 403, "forbidden")
        self.assertError(srv.request("GET", "/v1/datasets/patients/policy", token=self.trainer), 403, "forbidden")
        # restricted: no statement may name dataset.read
        msg = self.assertError(self.put_policy("vault", {"statements": [
            {"id": "r1", "effect": "allow", "principals": {"roles": ["trainer"]},
             "actions": ["compute.train", "dataset.read"]}]}, expect=422), 422, "invalid")
        self.assertIn("restricted", msg)
        self.put_policy("vault", {"statements": [
            {"id": "r2", "effect": "allow", "principals": {"roles": ["trainer"]}, "actions": ["*"]}]})
        self.assertError(self.srv.request("GET", "/v1/datasets/vault/versions/latest/rows", token=self.trainer),
                         403, "forbidden")

    # ---- decisions ----
    def test_b_decisions_purposes_and_audit(self):
        self.put_policy("patients", self.TRAINER_POLICY)
        rid = "pol-" + secrets.token_hex(6)
        r = self.srv.request("GET", "/v1/datasets/patients/versions/latest/rows", token=self.trainer,
                             headers={"X-Request-Id": rid})
        self.assertError(r, 403, "forbidden")  # no purpose: the statement needs one
        e = self.event(rid)
        self.assertEqual((e["decision"], e["status"]), ("deny", 403))
        self.assertEqual(e["detail"]["policy"]["statements"], [])
        self.assertIn("dataset", e["detail"]["policy"]["policy_versions"])
        self.assertEqual(self.rows("patients", self.trainer, purpose="model-training").status, 200)
        self.assertError(self.rows("patients", self.trainer, purpose="marketing"), 403, "forbidden")
        self.assertError(self.rows("patients", self.sales, purpose="model-training"), 403, "forbidden")
        rid = "pol-" + secrets.token_hex(6)
        r = self.srv.request("GET", "/v1/datasets/patients/versions/latest/rows", token=self.contractor,
                             headers={"X-Request-Id": rid, "X-Sluice-Purpose": "model-training"})
        msg = self.assertError(r, 403, "forbidden")
        self.assertIn("no-contractors", msg)
        self.assertEqual(self.event(rid)["detail"]["policy"]["statements"], ["no-contractors"])
        # a malformed purpose is a 400
        r = self.srv.request("GET", "/v1/datasets/patients", token=self.trainer,
                             headers={"X-Sluice-Purpose": "Not A Word"})
        self.assertError(r, 400, "bad_request")
        # the admin holds nothing here without a policy
        self.assertError(self.rows("patients", "admin", purpose="model-training"), 403, "forbidden")
        # lists: what each may describe
        def names(**h):
            r = self.srv.request("GET", "/v1/datasets", token=self.trainer, headers=h)
            self.assertEqual(r.status, 200, r)
            return {d["name"] for d in r.json()["items"]}
        self.assertEqual(names(), {"vault"})  # research-read needs a purpose; vault's r2 none
        self.assertEqual(names(**{"X-Sluice-Purpose": "model-training"}), {"patients", "vault"})

    # ---- the conformance matrix ----
    def expected_rows(self):
        """The rows the trainer's view lets through, in upload order."""
        return [r for r in ROWS if r[5] == "EU" and r[6] == "true"]

    def test_c_every_format_sees_exactly_the_view(self):
        self.put_policy("patients", self.TRAINER_POLICY)
        self.put_policy("patients2", self.TRAINER_POLICY)
        want = self.expected_rows()
        self.assertEqual([r[0] for r in want], [1, 4, 6])
        # csv
        r = self.rows("patients", self.trainer, purpose="model-training")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("X-Sluice-Policy-Version"),
                         str(self.srv.request("GET", "/v1/datasets/patients", token=self.owner).json()["policy_version"]))
        self.assertEqual(r.header("X-Sluice-Masked-Columns"), "id=null,name=partial,email=hash,dob=year")
        lines = r.body.decode().splitlines()
        self.assertEqual(lines[0], "id,name,email,dob,region,consent,age,score")
        got = [ln.split(",") for ln in lines[1:]]
        self.assertEqual(len(got), 3)
        for row, src in zip(got, want):
            self.assertEqual(row[0], "")                          # id: null
            self.assertEqual(len(row[1]), len(src[1]))             # name: partial
            if len(src[1]) <= 4:
                self.assertEqual(row[1], "*" * len(src[1]))
            else:
                self.assertTrue(row[1].endswith(src[1][-4:]) and set(row[1][:-4]) == {"*"}, row)
            self.assertRegex(row[2], HEX64)                        # email: hash
            self.assertEqual(row[3], src[4][:4] if re.match(r"^\d{4}(-|$)", src[4]) else "")  # dob: year
            self.assertEqual(row[4:6], ["EU", "true"])
            self.assertEqual(row[6], "" if src[7] is None else str(src[7]))
        self.assertEqual(got[0][2], got[1][2], "equal emails give equal pseudonyms")
        self.assertNotEqual(got[0][2], got[2][2])
        # the pseudonym differs in another dataset
        other = self.rows("patients2", self.trainer, purpose="model-training").body.decode().splitlines()
        self.assertNotEqual(other[1].split(",")[2], got[0][2])
        # jsonl: the same rows and values
        r = self.rows("patients", self.trainer, fmt="jsonl", purpose="model-training")
        objs = [json.loads(x) for x in r.body.decode().splitlines()]
        self.assertEqual([o["age"] for o in objs], [36, None, 17])
        self.assertEqual([o["email"] for o in objs], [g[2] for g in got])
        self.assertEqual([o["id"] for o in objs], [None, None, None])
        self.assertNotIn("ssn", objs[0])
        # offset and limit count rows after the filter
        r = self.rows("patients", self.trainer, fmt="jsonl", purpose="model-training", offset=1, limit=1)
        self.assertEqual([(json.loads(x)["name"], json.loads(x)["age"]) for x in r.body.decode().splitlines()],
                         [("***", None)])
        # npy: numeric columns that are still numeric; id masked null is NaN
        r = self.rows("patients", self.trainer, fmt="npy", purpose="model-training")
        self.assertEqual(r.status, 200, r)
        shape, vals = parse_npy(r.body)
        self.assertEqual(shape, (3, 4))  # id (null), consent, age, score
        self.assertTrue(all(v != v for v in vals[0::4]), vals)
        self.assertEqual(list(vals[2::4])[0:1] + list(vals[2::4])[2:], [36.0, 17.0])
        self.assertEqual(list(vals[3::4]), [0.5, 3.0, 7.5])
        r = self.rows("patients", self.trainer, fmt="npy", purpose="model-training", offset=2)
        self.assertEqual(parse_npy(r.body)[0], (1, 4))
        # a denied column named: 403; a masked-to-text column in npy: 422
        self.assertError(self.rows("patients", self.trainer, purpose="model-training", columns="id,ssn"),
                         403, "forbidden")
        self.assertError(self.rows("patients", self.trainer, fmt="npy", purpose="model-training", columns="email"),
                         422, "invalid")
        # planted values: in no output of the trainer's, nor in the trail or the log
        for fmt in ("csv", "jsonl", "npy"):
            body = self.rows("patients", self.trainer, fmt=fmt, purpose="model-training").body
            self.assertNotIn(SSN.encode(), body)
            self.assertNotIn(EMAIL.encode(), body)
        trail = json.dumps(self.events())
        self.assertNotIn("audit.unencodable", trail)  # every event kept whole
        self.assertNotIn(SSN, trail)
        self.assertNotIn(EMAIL, trail)
        log = self.srv.read_log()
        self.assertNotIn(SSN, log)
        self.assertNotIn(EMAIL, log)

    def test_d_deny_filters_fail_closed_on_nulls(self):
        doc = {"statements": [
            {"id": "read", "effect": "allow", "principals": {"names": ["tom"]}, "actions": ["dataset.read"]},
            {"id": "no-minors", "effect": "deny", "principals": {"names": ["tom"]}, "actions": ["dataset.read"],
             "row_filter": "age < 18"}]}
        self.put_policy("patients2", doc)
        r = self.rows("patients2", self.trainer, fmt="jsonl", columns="id,age")
        ids = [json.loads(x)["id"] for x in r.body.decode().splitlines()]
        # row 6 (17) is denied; row 4 (age null) cannot be shown not to match: dropped too
        self.assertEqual(ids, [1, 2, 3, 5])

    def test_e_global_policies_and_the_admin(self):
        srv = self.srv
        self.put_policy("patients", self.TRAINER_POLICY)
        g = {"applies_to": {"tags": ["pii"]}, "statements": [
            {"id": "pii-redact", "effect": "deny", "principals": {"roles": ["trainer", "admin"]},
             "actions": ["dataset.read"], "columns": {"mask": {"tag:pii": "redact"}}},
            {"id": "admin-read", "effect": "allow", "principals": {"roles": ["admin"]},
             "actions": ["dataset.read"], "row_filter": "region == \"EU\" and consent == true"}]}
        self.assertError(srv.request("PUT", "/v1/policies/pii", token=self.owner, body=g), 403, "forbidden")
        r = srv.request("PUT", "/v1/policies/pii", body=g)
        self.assertEqual(r.status, 200, r)
        try:
            lst = srv.request("GET", "/v1/policies", token=self.auditor).json()["items"]
            self.assertEqual([p["name"] for p in lst], ["pii"])
            # redact (global) beats hash and partial (dataset)
            r = self.rows("patients", self.trainer, fmt="jsonl", purpose="model-training")
            o = json.loads(r.body.decode().splitlines()[0])
            self.assertEqual((o["email"], o["name"]), ("[redacted]", "[redacted]"))
            self.assertIn("email=redact", r.header("X-Sluice-Masked-Columns"))
            # the admin reads by the global grant: masked and filtered like anyone
            r = self.rows("patients", "admin", fmt="jsonl")
            self.assertEqual(r.status, 200, r)
            objs = [json.loads(x) for x in r.body.decode().splitlines()]
            self.assertEqual([o["id"] for o in objs], [1, 4, 6])
            self.assertEqual({o["ssn"] for o in objs}, {"[redacted]"})
            self.assertNotIn(SSN.encode(), r.body)
            # /v1/authorize explains without performing
            r = srv.request("POST", "/v1/authorize", token=self.auditor,
                            body={"principal": "tom", "action": "dataset.read", "dataset": "patients",
                                  "purpose": "model-training", "columns": ["email", "ssn"]})
            j = r.json()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(j["decision"], "deny")  # ssn is denied, so a read naming it is refused
            self.assertEqual(j["denied_columns"], ["ssn"])
            self.assertEqual(j["masked_columns"], {"email": "redact"})
            self.assertEqual(j["policy_versions"]["global:pii"], 1)
            r = srv.request("POST", "/v1/authorize", token=self.owner,
                            body={"principal": "tom", "action": "dataset.read", "dataset": "patients",
                                  "purpose": "model-training"})
            j = r.json()
            self.assertEqual((j["decision"], j["statements"]), ("allow", ["research-read"]))
            self.assertEqual(j["row_filter"], '(region == "EU" and consent == true)')
            # an owner explains their own datasets only; a trainer none
            self.assertError(srv.request("POST", "/v1/authorize", token=self.owner2,
                                         body={"principal": "tom", "action": "dataset.read", "dataset": "patients"}),
                             403, "forbidden")
            self.assertError(srv.request("POST", "/v1/authorize", token=self.trainer,
                                         body={"principal": "tom", "action": "dataset.read", "dataset": "patients"}),
                             403, "forbidden")
            self.assertError(srv.request("POST", "/v1/authorize", token=self.auditor,
                                         body={"principal": "tom", "action": "dataset.reed", "dataset": "patients"}),
                             422, "invalid")
        finally:
            self.assertEqual(srv.request("DELETE", "/v1/policies/pii").status, 204)
        self.assertEqual(srv.request("GET", "/v1/policies").json()["items"], [])
        self.assertError(srv.request("DELETE", "/v1/policies/pii"), 404, "not_found")
        self.assertError(self.rows("patients", "admin"), 403, "forbidden")

    def test_g_masked_header_names_are_escaped(self):
        srv = self.srv
        r = srv.request("POST", "/v1/datasets", token=self.owner,
                        body={"name": "weird", "classification": "internal"})
        self.assertEqual(r.status, 201, r)
        r = srv.request("POST", "/v1/datasets/weird/versions", token=self.owner,
                        raw='"a,b=c",é\nx,y\n'.encode(), headers=CSV)
        self.assertEqual(r.status, 201, r)
        self.put_policy("weird", {"statements": [
            {"id": "self-mask", "effect": "deny", "principals": {"names": ["olga"]},
             "actions": ["dataset.read"], "columns": {"mask": {"a,b=c": "redact", "é": "null"}}}]})
        r = self.rows("weird", self.owner)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("X-Sluice-Masked-Columns"), "a%2Cb%3Dc=redact,%C3%A9=null")
        self.assertEqual(r.body.decode(), '"a,b=c",é\n[redacted],\n')

    def test_f_cli(self):
        import tempfile
        srv = self.srv
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(self.TRAINER_POLICY, f)
            path = f.name
        try:
            out = srv.cli("policy", "put", "patients", path, token=self.owner).stdout
            self.assertRegex(out, r"^dataset patients: policy version \d+")
            got = json.loads(srv.cli("policy", "get", "patients", token=self.owner).stdout)
            self.assertEqual(got["document"], self.TRAINER_POLICY)
            bad = srv.cli("policy", "put", "patients", "/nonexistent.json", token=self.owner, check=False)
            self.assertEqual(bad.returncode, 1)
            out = srv.cli("policy", "explain", "--principal", "tom", "--action", "dataset.read", "--dataset",
                          "patients", "--purpose", "model-training", token=self.owner).stdout
            self.assertIn("decision:        allow", out)
            self.assertIn("statements:      research-read", out)
            self.assertIn("denied columns:  ssn", out)
            # a trainer fetches with its purpose; the view holds
            out = srv.cli("dataset", "fetch", "patients", "--format", "jsonl", "--purpose", "model-training",
                          token=self.trainer).stdout
            self.assertEqual([json.loads(x)["region"] for x in out.splitlines()], ["EU"] * 3)
            self.assertNotIn(SSN, out)
            r = srv.cli("dataset", "fetch", "patients", token=self.trainer, check=False)
            self.assertEqual(r.returncode, 1)
            self.assertIn("forbidden", r.stderr)
            r = srv.cli("dataset", "fetch", "patients", "--purpose", "Bad Word", token=self.trainer, check=False)
            self.assertEqual(r.returncode, 2)
        finally:
            os.unlink(path)


if __name__ == "__main__":
    unittest.main()
