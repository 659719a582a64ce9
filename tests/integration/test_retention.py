"""
tests/integration/test_retention.py: retention and legal holds against a real gateway
(its sweeper every second) and its real embedded PostgreSQL. Negative cases first:

- Deleting before min_days, in governance and in compliance mode, as the owner, as an
  admin (granted dataset.delete by policy, as admins get nothing implicitly), as a
  trainer and as an auditor (neither holds dataset.delete), each with and without
  X-Sluice-Bypass-Governance: only an admin with the header in governance mode deletes,
  and that event says so.
- Shortening compliance retention (a lower min_days, an expiry added or brought
  forward, compliance into governance): 409 for everyone, the header included;
  shortening governance retention: 409 unless an admin sends the header. Lengthening
  is allowed.
- A legal hold (set by an auditor; refused to others) blocks every deletion, the bypass
  included, and expiry: a version past max_days under a hold stays readable, and is
  shredded by the sweeper once the hold is cleared (a signed dataset.expire event, the
  version 404 afterwards, the trail verifying).

Run: SLUICE_BIN=.../bin/sluice /usr/bin/python3 -m unittest -v test_retention
"""
import json
import os
import secrets
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ServerCase  # noqa: E402

CSV = {"Content-Type": "text/csv"}
BYPASS = {"X-Sluice-Bypass-Governance": "true"}
DAY = 86400.0


class RetentionTest(ServerCase):
    serve_args = ("--retention-sweep-s", "1")

    @classmethod
    def prepare(cls):
        cls.owner = cls.srv.create_principal("olga", roles=["owner"])
        cls.trainer = cls.srv.create_principal("tom", roles=["trainer"])
        cls.auditor = cls.srv.create_principal("audrey", roles=["auditor"])

    # ---- helpers ----
    def dataset(self, retention=None, versions=2):
        """A dataset of olga's with `versions` versions, whose policy lets the admin
        delete and manage (admins hold nothing implicitly)."""
        name = "ds-" + secrets.token_hex(4)
        body = {"name": name, "classification": "internal"}
        if retention is not None:
            body["retention"] = retention
        r = self.srv.request("POST", "/v1/datasets", token=self.owner, body=body)
        self.assertEqual(r.status, 201, r)
        for i in range(versions):
            r = self.srv.request("POST", "/v1/datasets/%s/versions" % name, token=self.owner,
                                 raw=b"k,v\n%d,x\n" % i, headers=CSV)
            self.assertEqual(r.status, 201, r)
        r = self.srv.request("PUT", "/v1/datasets/%s/policy" % name, token=self.owner, body={"statements": [
            {"id": "admins", "effect": "allow", "principals": {"roles": ["admin"]},
             "actions": ["dataset.delete", "dataset.manage", "dataset.describe"]}]})
        self.assertEqual(r.status, 200, r)
        return name

    def delete(self, name, v, token, headers=None):
        rid = "ret-" + secrets.token_hex(6)
        h = {"X-Request-Id": rid}
        h.update(headers or {})
        return self.srv.request("DELETE", "/v1/datasets/%s/versions/%d" % (name, v), token=token, headers=h), rid

    def put_retention(self, name, rule, token=None, headers=None):
        return self.srv.request("PUT", "/v1/datasets/%s/retention" % name, token=token or self.owner,
                                body=rule, headers=headers)

    def hold(self, name, on, token=None, reason="litigation 2026-17"):
        body = {"hold": on}
        if reason is not None:
            body["reason"] = reason
        return self.srv.request("PUT", "/v1/datasets/%s/legal-hold" % name, token=token or self.auditor,
                                body=body)

    def assertCode(self, r, status, code):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.json()["error"]["code"], code, r)
        return r.json()["error"]["message"]

    def event(self, rid):
        evs = [e for e in self.srv.events() if e.get("request_id") == rid]
        self.assertEqual(len(evs), 1, rid)
        return evs[0]

    def event_of_last(self, action):
        return [e for e in self.srv.events() if e["action"] == action][-1]

    def live(self, name):
        d = self.srv.request("GET", "/v1/datasets/%s" % name, token=self.owner).json()
        return [v["version"] for v in d["versions"]]

    # ---- deletion before min_days ----
    def test_a_early_delete_in_each_mode_as_each_role(self):
        for mode in ("governance", "compliance"):
            name = self.dataset({"min_days": 1, "mode": mode})
            with self.subTest(mode=mode):
                for who, tok in (("owner", self.owner), ("admin", "admin")):
                    for hdr in (None, BYPASS):
                        if who == "admin" and hdr and mode == "governance":
                            continue  # the one that may: below
                        r, rid = self.delete(name, 1, tok, hdr)
                        msg = self.assertCode(r, 423, "locked")
                        self.assertIn("%s retention until" % mode, msg)
                        e = self.event(rid)
                        self.assertEqual((e["decision"], e["status"]), ("deny", 423))
                for tok in (self.trainer, self.auditor):  # no dataset.delete: refused first
                    for hdr in (None, BYPASS):
                        r, _ = self.delete(name, 1, tok, hdr)
                        self.assertCode(r, 403, "forbidden")
                self.assertEqual(self.live(name), [1, 2])
                if mode == "governance":
                    r, rid = self.delete(name, 1, "admin", BYPASS)
                    self.assertEqual(r.status, 204, r)
                    e = self.event(rid)
                    self.assertTrue(e["detail"]["bypass_governance"])
                    self.assertEqual(self.live(name), [2])

    def test_b_shortening_and_lengthening(self):
        comp = self.dataset({"min_days": 2, "max_days": 30, "mode": "compliance"}, versions=0)
        shorter = [{"min_days": 1, "max_days": 30, "mode": "compliance"},
                   {"min_days": 2, "max_days": 20, "mode": "compliance"},
                   {"min_days": 2, "max_days": 30, "mode": "governance"},
                   {"min_days": 2, "mode": "governance"}]
        for rule in shorter:
            for tok, hdr in ((self.owner, None), ("admin", BYPASS)):
                with self.subTest(rule=rule, admin=tok == "admin"):
                    msg = self.assertCode(self.put_retention(comp, rule, tok, hdr), 409, "conflict")
                    self.assertIn("compliance", msg)
        r = self.srv.request("GET", "/v1/datasets/%s" % comp, token=self.owner).json()
        self.assertEqual(r["retention"], {"min_days": 2, "max_days": 30, "mode": "compliance"})
        # lengthening: allowed, and it sticks
        r = self.put_retention(comp, {"min_days": 5, "max_days": 60.5, "mode": "compliance"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.event_of_last("retention.put")["detail"]["retention"],
                         {"min_days": "5", "max_days": "60.5", "mode": "compliance"})
        r = self.put_retention(comp, {"min_days": 5, "max_days": 60, "mode": "compliance"})
        self.assertEqual(r.status, 409, r)
        r = self.put_retention(comp, {"min_days": 5, "max_days": 60.5, "mode": "compliance"})
        self.assertEqual(r.json(), {"min_days": 5, "max_days": 60.5, "mode": "compliance"})
        d = self.srv.request("GET", "/v1/datasets/%s" % comp, token=self.owner).json()
        self.assertEqual(d["retention"], {"min_days": 5, "max_days": 60.5, "mode": "compliance"})
        # compliance without an expiry: adding one shortens it
        forever = self.dataset({"min_days": 1, "mode": "compliance"}, versions=0)
        self.assertCode(self.put_retention(forever, {"min_days": 1, "max_days": 3650, "mode": "compliance"}),
                        409, "conflict")
        # governance: shortening needs an admin with the header
        gov = self.dataset({"min_days": 3, "mode": "governance"}, versions=0)
        rule = {"min_days": 1, "mode": "governance"}
        self.assertCode(self.put_retention(gov, rule), 409, "conflict")
        self.assertCode(self.put_retention(gov, rule, self.owner, BYPASS), 409, "conflict")
        self.assertCode(self.put_retention(gov, rule, "admin"), 409, "conflict")
        self.assertEqual(self.put_retention(gov, rule, "admin", BYPASS).status, 200)
        # governance into compliance is lengthening
        self.assertEqual(self.put_retention(gov, {"min_days": 1, "mode": "compliance"}).status, 200)
        # bad rules: 422, nothing changed
        for bad in ({"min_days": 1}, {"mode": "governance"}, {"min_days": -1, "mode": "governance"},
                    {"min_days": 5, "max_days": 2, "mode": "governance"}, {"max_days": 0, "mode": "compliance"},
                    {"min_days": "1", "mode": "governance"}, {"min_days": 1, "mode": "strict"},
                    {"min_days": 1, "mode": "governance", "extra": True}):
            with self.subTest(bad=bad):
                self.assertCode(self.put_retention(gov, bad), 422, "invalid")
        # a trainer may not set retention at all
        self.assertCode(self.put_retention(gov, {"min_days": 9, "mode": "compliance"}, self.trainer), 403,
                        "forbidden")

    # ---- legal holds ----
    def test_c_legal_hold_blocks_every_deletion(self):
        name = self.dataset()
        for tok in (self.owner, self.trainer):
            self.assertCode(self.hold(name, True, token=tok), 403, "forbidden")
        self.assertCode(self.hold(name, True, reason=None), 422, "invalid")
        r = self.hold(name, True)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"hold": True, "reason": "litigation 2026-17"})
        d = self.srv.request("GET", "/v1/datasets/%s" % name, token=self.owner).json()
        self.assertEqual((d["legal_hold"], d["legal_hold_reason"]), (True, "litigation 2026-17"))
        for tok, hdr in ((self.owner, None), (self.owner, BYPASS), ("admin", BYPASS), ("admin", None)):
            r, rid = self.delete(name, 1, tok, hdr)
            msg = self.assertCode(r, 423, "locked")
            self.assertIn("legal hold", msg)
        self.assertEqual(self.live(name), [1, 2])
        self.assertEqual(self.hold(name, False, token="admin", reason=None).status, 200)
        r, _ = self.delete(name, 1, self.owner)
        self.assertEqual(r.status, 204, r)
        self.assertEqual(self.live(name), [2])

    # ---- expiry ----
    def test_d_expiry_waits_for_the_hold_then_shreds(self):
        name = self.dataset({"max_days": 2 / DAY, "mode": "governance"}, versions=1)
        self.assertEqual(self.hold(name, True).status, 200)
        time.sleep(4.5)  # past max_days, and several sweeps
        self.assertEqual(self.live(name), [1], "a version under a legal hold must not expire")
        r = self.srv.request("GET", "/v1/datasets/%s/versions/1/rows" % name, token=self.owner)
        self.assertEqual(r.status, 200, r)
        r, _ = self.delete(name, 1, "admin", BYPASS)
        self.assertCode(r, 423, "locked")
        self.assertEqual(self.hold(name, False).status, 200)
        deadline = time.time() + 15
        while time.time() < deadline and self.live(name):
            time.sleep(0.3)
        self.assertEqual(self.live(name), [], "the sweeper did not shred the expired version")
        r = self.srv.request("GET", "/v1/datasets/%s/versions/1/rows" % name, token=self.owner)
        self.assertCode(r, 404, "not_found")
        evs = [e for e in self.srv.events() if e["action"] == "dataset.expire" and name in e["resource"]
               and e["decision"] == "allow"]
        self.assertEqual(len(evs), 1, evs)
        e = evs[0]
        self.assertEqual((e["decision"], e["status"], e["principal"]), ("allow", 204, None))
        self.assertTrue(e["detail"]["shred"]["key_destroyed"])
        # no event anywhere was replaced by the minimal one (fractional numbers, say)
        self.assertEqual([x for x in self.srv.events() if x["action"] == "audit.unencodable"], [])
        self.assertEqual(self.srv.psql(
            "SELECT state || coalesce(length(wrapped_key)::text, '-') FROM dataset_versions v JOIN datasets d "
            "ON d.id = v.dataset_id WHERE d.name = '%s'" % name), "shredded-")
        r = self.srv.request("GET", "/v1/audit/verify")
        self.assertTrue(r.json()["ok"], r)

    def test_d2_protection_ends_and_younger_versions_stay(self):
        # compliance, min_days of 3 seconds: refused now, allowed once they have passed
        name = self.dataset({"min_days": 3 / DAY, "mode": "compliance"}, versions=1)
        r, _ = self.delete(name, 1, self.owner)
        self.assertCode(r, 423, "locked")
        time.sleep(3.5)
        r, _ = self.delete(name, 1, self.owner)
        self.assertEqual(r.status, 204, r)
        # expiry takes the old version and leaves the younger one
        name = self.dataset({"max_days": 4 / DAY, "mode": "governance"}, versions=1)
        time.sleep(2.5)
        r = self.srv.request("POST", "/v1/datasets/%s/versions" % name, token=self.owner, raw=b"k,v\n9,y\n",
                             headers=CSV)
        self.assertEqual(r.status, 201, r)
        deadline = time.time() + 10
        while time.time() < deadline and 1 in self.live(name):
            time.sleep(0.2)
        self.assertEqual(self.live(name), [2], "version 1 expired, version 2 is younger than max_days")

    def test_d3_the_database_guards_too(self):
        """What the gateway refuses, the database refuses as well (a trigger), even to its
        superuser: shredding a held or retained version, shortening compliance."""
        held = self.dataset(versions=1)
        self.assertEqual(self.hold(held, True, token="admin").status, 200)  # an admin may set one too
        kept = self.dataset({"min_days": 1, "max_days": 10, "mode": "compliance"}, versions=1)
        for name in (held, kept):
            with self.subTest(name=name), self.assertRaises(AssertionError) as cm:
                self.srv.psql("UPDATE dataset_versions SET state = 'shredded', wrapped_key = NULL, "
                              "shredded_at = now() FROM datasets d WHERE d.id = dataset_id AND d.name = '%s'"
                              % name)
            self.assertIn("sluice:", str(cm.exception))
        for sql in ("retention_min_days = 0.5", "retention_mode = 'governance'", "retention_max_days = 5"):
            with self.subTest(sql=sql), self.assertRaises(AssertionError) as cm:
                self.srv.psql("UPDATE datasets SET %s WHERE name = '%s'" % (sql, kept))
            self.assertIn("cannot be shortened", str(cm.exception))
        self.srv.psql("UPDATE datasets SET retention_max_days = NULL WHERE name = '%s'" % kept)  # longer
        self.assertEqual(self.live(held), [1])
        self.assertEqual(self.live(kept), [1])
        self.assertEqual(self.hold(held, False, token="admin", reason=None).status, 200)

    def test_e_cli(self):
        name = self.dataset(versions=0)
        out = self.srv.cli("retention", "set", name, "--min-days", "1.5", "--mode", "governance",
                           token=self.owner).stdout
        self.assertIn("retention:  governance, min_days 1.5, max_days none", out)
        out = self.srv.cli("hold", "set", name, "--reason", "audit 7", token=self.auditor).stdout
        self.assertIn("legal hold: audit 7", out)
        r = self.srv.cli("hold", "set", name, token=self.auditor, check=False)
        self.assertEqual(r.returncode, 2)
        out = self.srv.cli("hold", "clear", name, token=self.auditor).stdout
        self.assertIn("legal hold: no", out)
        r = self.srv.cli("retention", "set", name, "--min-days", "1", "--mode", "governance",
                         token=self.owner, check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("409", r.stderr)
        self.assertEqual(self.srv.cli("retention", "set", name, "--min-days", "1", "--mode", "governance",
                                      "--bypass-governance").returncode, 0)


if __name__ == "__main__":
    unittest.main()
