"""
The audit trail end to end: exactly one event per request, committed before the
answer; filters and formats of the export; tamper detection as a database superuser
(update, delete, insert, swap, truncate), each pinpointed; offline verification of an
export and its failure after a one-byte change; append-only enforcement.
"""
import json
import os
import subprocess
import tempfile
import unittest
import uuid

from harness import Server, ServerCase


def verify(srv):
    r = srv.request("GET", "/v1/audit/verify")
    assert r.status == 200, r
    return r.json()


def fill(srv, n=12):
    """Sequential requests: each its own group commit, so each event has a checkpoint."""
    for i in range(n):
        r = srv.request("GET", "/v1/whoami", headers={"X-Request-Id": "fill-%d" % i})
        assert r.status == 200, r


class OneEventPerRequest(ServerCase):

    def test_every_request_exactly_one_event(self):
        s = self.srv
        big = b"{" + b" " * (1024 * 1024 + 10) + b"}"
        cases = [
            ("GET", "/v1/whoami", "admin", None, {}, 200),
            ("GET", "/v1/whoami", None, None, {}, 401),
            ("GET", "/v1/whoami", "slc_0000000000000000_" + "0" * 64, None, {}, 401),
            ("GET", "/v1/nowhere", "admin", None, {}, 404),
            ("DELETE", "/v1/whoami", "admin", None, {}, 405),
            ("POST", "/v1/principals", "admin", b"{bad json", {"Content-Type": "application/json"}, 400),
            ("POST", "/v1/principals", "admin", b'{"name":"x1","typo":1}', {"Content-Type": "application/json"}, 422),
            ("POST", "/v1/principals", "admin", b'{"name":"x2"}', {"Content-Type": "text/plain"}, 415),
            ("POST", "/v1/principals", "admin", big, {"Content-Type": "application/json"}, 413),
            ("POST", "/v1/principals", "admin", b'{"name":"evt-owner","roles":["owner"]}',
             {"Content-Type": "application/json"}, 201),
            ("GET", "/v1/principals/evt-owner", "admin", None, {}, 200),
            ("GET", "/v1/principals/nobody-here", "admin", None, {}, 404),
            ("GET", "/v1/audit/checkpoints?limit=2", "admin", None, {}, 200),
            ("GET", "/v1/keys/public", "admin", None, {}, 200),
        ]
        ids = []
        for method, path, tok, raw, headers, want in cases:
            rid = "req-" + uuid.uuid4().hex
            h = dict(headers)
            h["X-Request-Id"] = rid
            r = s.request(method, path, token=tok, raw=raw, headers=h)
            self.assertEqual(r.status, want, (method, path, r))
            self.assertEqual(r.header("X-Request-Id"), rid)
            if r.status >= 400:
                err = r.json()["error"]
                self.assertEqual(err["request_id"], rid)
            ids.append((rid, want))
        # not audited: health, readiness, metrics
        for path in ("/healthz", "/readyz", "/metrics"):
            r = s.request("GET", path, headers={"X-Request-Id": "noaudit-" + path.strip("/")})
            self.assertEqual(r.status, 200, r)
        events = s.events()
        by_id = {}
        for e in events:
            by_id.setdefault(e["request_id"], []).append(e)
        for rid, want in ids:
            self.assertIn(rid, by_id, rid)
            self.assertEqual(len(by_id[rid]), 1, by_id[rid])
            self.assertEqual(by_id[rid][0]["status"], want)
        for path in ("healthz", "readyz", "metrics"):
            self.assertNotIn("noaudit-" + path, by_id)
        # decisions follow the status
        d = {e["status"]: e["decision"] for e in events}
        self.assertEqual(d[200], "allow")
        self.assertEqual(d[401], "deny")
        self.assertEqual(d[422], "error")

    def test_events_hold_no_secrets(self):
        s = self.srv
        tok = s.create_principal("secret-holder", roles=["trainer"])
        self.assertEqual(s.request("GET", "/v1/whoami", token=tok).status, 200)
        secret = tok.split("_", 2)[2]
        admin_secret = s.admin_token.split("_", 2)[2]
        dump = s.psql("SELECT string_agg(canon, E'\\n') FROM audit_events")
        self.assertNotIn(secret, dump)
        self.assertNotIn(admin_secret, dump)
        # a token pasted into a path is redacted from the trail
        s.request("GET", "/v1/principals/" + tok)
        dump = s.psql("SELECT string_agg(canon, E'\\n') FROM audit_events")
        self.assertNotIn(secret, dump)
        self.assertIn("[redacted]", dump)

    def test_export_filters_and_formats(self):
        s = self.srv
        tok = s.create_principal("filter-me", roles=["trainer"])
        for _ in range(3):
            s.request("GET", "/v1/whoami", token=tok)
        s.request("GET", "/v1/principals", token=tok)  # 403
        r = s.request("GET", "/v1/audit?principal=filter-me&format=jsonl")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Content-Type"), "application/x-ndjson")
        lines = [json.loads(l) for l in r.body.decode().splitlines() if l]
        evs = [l for l in lines if "checkpoint" not in l]
        self.assertEqual(len(evs), 4)
        self.assertTrue(all(e["principal"] == "filter-me" for e in evs))
        cps = [l["checkpoint"] for l in lines if "checkpoint" in l]
        self.assertTrue(all(set(c) == {"seq", "hash", "ts", "key_id", "signature"} for c in cps))
        r = s.request("GET", "/v1/audit?principal=filter-me&decision=deny")
        evs = [json.loads(l) for l in r.body.decode().splitlines() if l and "checkpoint" not in l]
        self.assertEqual([e["status"] for e in evs], [403])
        r = s.request("GET", "/v1/audit?action=whoami&principal=filter-me&format=csv")
        self.assertEqual(r.status, 200)
        rows = r.body.decode().splitlines()
        self.assertTrue(rows[0].startswith("seq,ts,request_id,principal,action"))
        self.assertEqual(len(rows), 4)
        r = s.request("GET", "/v1/audit?since=2000-01-01T00:00:00Z&until=2000-01-02T00:00:00Z")
        self.assertEqual(r.body, b"")
        for bad in ("since=yesterday", "format=xml", "decision=maybe", "principal=Bad%20Name", "limit=0"):
            r = s.request("GET", "/v1/audit?" + bad)
            self.assertEqual(r.status, 422, (bad, r))
        # a trainer may not read the trail
        self.assertEqual(s.request("GET", "/v1/audit", token=tok).status, 403)

    def test_checkpoints_paged_and_ascending(self):
        s = self.srv
        fill(s, 5)
        r = s.request("GET", "/v1/audit/checkpoints?limit=2")
        page = r.json()
        self.assertEqual(len(page["items"]), 2)
        self.assertIsNotNone(page["next"])
        r2 = s.request("GET", "/v1/audit/checkpoints?limit=2&after=" + page["next"]).json()
        seqs = [c["seq"] for c in page["items"] + r2["items"]]
        self.assertEqual(seqs, sorted(seqs))
        self.assertEqual(len(set(seqs)), 4)

    def test_append_only_for_the_gateway_role_and_trigger(self):
        s = self.srv
        fill(s, 2)
        with self.assertRaises(AssertionError) as e:
            s.psql("SET ROLE sluice_gw; UPDATE audit_events SET status = 1 WHERE seq = 1")
        self.assertIn("permission denied", str(e.exception))
        with self.assertRaises(AssertionError) as e:
            s.psql("SET ROLE sluice_gw; DELETE FROM audit_events WHERE seq = 1")
        self.assertIn("permission denied", str(e.exception))
        # even the owner: the trigger refuses
        with self.assertRaises(AssertionError) as e:
            s.psql("UPDATE audit_events SET status = 1 WHERE seq = 1")
        self.assertIn("append-only", str(e.exception))
        with self.assertRaises(AssertionError) as e:
            s.psql("DELETE FROM audit_checkpoints WHERE seq = 1")
        self.assertIn("append-only", str(e.exception))
        with self.assertRaises(AssertionError) as e:
            s.psql("TRUNCATE audit_events")
        self.assertIn("append-only", str(e.exception))
        self.assertTrue(verify(s)["ok"])


class TwoWriters(ServerCase):
    """
    A second writer (tests/integration/audit_burst.c: another gateway's, with the same
    keys) appends thousands of events while this gateway serves requests: batches that
    large go by COPY, and each writer's fast path finds the head moved by the other and
    re-reads it. The chain stays whole, every event is there once, and it verifies.
    """

    def test_second_writer_large_batches_one_chain(self):
        s = self.srv
        burst = os.environ.get("SLUICE_AUDIT_BURST")
        if not burst:
            self.fail("SLUICE_AUDIT_BURST is not set (ctest sets it to the audit_burst tool)")
        before = s.audit_count()
        proc = subprocess.Popen([burst, s.dir, "3000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ids = []
        while proc.poll() is None and len(ids) < 400:
            rid = "two-" + uuid.uuid4().hex
            self.assertEqual(s.request("GET", "/v1/whoami", headers={"X-Request-Id": rid}).status, 200)
            ids.append(rid)
        out, err = proc.communicate(timeout=180)
        self.assertEqual(proc.returncode, 0, out + err)
        events = s.events()
        self.assertEqual(len(events), s.audit_count())
        self.assertEqual(s.audit_count() - before, 3001 + len(ids))
        burst_ids = [e["request_id"] for e in events if e["request_id"].startswith("burst-0")]
        self.assertEqual(sorted(burst_ids), ["burst-%08d" % i for i in range(3000)])
        seen = [e["request_id"] for e in events]
        for rid in ids:
            self.assertEqual(seen.count(rid), 1, rid)
        # events keep their text exactly (quotes, backslash, non-ASCII through COPY)
        one = [e for e in events if e["request_id"] == "burst-00000007"][0]
        self.assertEqual(one["reason"], 'a quoted "reason" with a \\ and \u00e9')
        self.assertEqual(one["detail"], {"i": 7})
        # some batch was large enough for COPY
        gaps = s.psql("SELECT max(seq - prev) FROM (SELECT seq, lag(seq) OVER (ORDER BY seq) AS prev"
                      " FROM audit_checkpoints) g")
        self.assertGreaterEqual(int(gaps), 256, "no batch went by COPY")
        v = verify(s)
        self.assertTrue(v["ok"], v)


# What a database superuser can do: bypass the trigger (replica mode) and edit rows.
SU = "SET session_replication_role = replica; "


class Tamper(ServerCase):
    """Each change is pinpointed, then undone so the next starts from a good trail."""

    @classmethod
    def prepare(cls):
        fill(cls.srv, 12)

    def setUp(self):
        v = verify(self.srv)
        self.assertTrue(v["ok"], v)

    def tearDown(self):
        v = verify(self.srv)
        self.assertTrue(v["ok"], ("trail not restored", v))

    def test_update_of_the_hashed_text(self):
        s = self.srv
        orig = s.psql("SELECT canon FROM audit_events WHERE seq = 5")
        s.psql(SU + "UPDATE audit_events SET canon = replace(canon, '\"reason\":\"ok\"', "
                    "'\"reason\":\"fine\"') WHERE seq = 5")
        self.assertNotEqual(orig, s.psql("SELECT canon FROM audit_events WHERE seq = 5"))
        v = verify(s)
        self.assertFalse(v["ok"])
        self.assertEqual(v["first_bad_seq"], 5)
        s.psql(SU + "UPDATE audit_events SET canon = replace(canon, '\"reason\":\"fine\"', "
                    "'\"reason\":\"ok\"') WHERE seq = 5")

    def test_update_of_a_filter_column(self):
        s = self.srv
        s.psql(SU + "UPDATE audit_events SET principal = 'mallory' WHERE seq = 4")
        v = verify(s)
        self.assertFalse(v["ok"])
        self.assertEqual(v["first_bad_seq"], 4)
        s.psql(SU + "UPDATE audit_events SET principal = 'admin' WHERE seq = 4")

    def test_delete(self):
        s = self.srv
        s.psql("CREATE TABLE saved AS SELECT * FROM audit_events WHERE seq = 6")
        s.psql(SU + "DELETE FROM audit_events WHERE seq = 6")
        v = verify(s)
        self.assertFalse(v["ok"])
        self.assertEqual(v["first_bad_seq"], 6)
        s.psql(SU + "INSERT INTO audit_events SELECT * FROM saved; DROP TABLE saved")

    def test_swap(self):
        s = self.srv
        swap = (SU + "UPDATE audit_events a SET ts = b.ts, principal = b.principal, action = b.action, "
                "resource = b.resource, decision = b.decision, status = b.status, canon = b.canon, hash = b.hash "
                "FROM audit_events b WHERE (a.seq, b.seq) IN ((7, 8), (8, 7))")
        s.psql(swap)
        v = verify(s)
        self.assertFalse(v["ok"])
        self.assertEqual(v["first_bad_seq"], 7)
        s.psql(swap)

    def test_checkpoint_signature_forged(self):
        s = self.srv
        sig = s.psql("SELECT signature FROM audit_checkpoints WHERE seq = 3")
        forged = ("A" if sig[0] != "A" else "B") + sig[1:]
        s.psql(SU + "UPDATE audit_checkpoints SET signature = '%s' WHERE seq = 3" % forged)
        v = verify(s)
        self.assertFalse(v["ok"])
        self.assertEqual(v["first_bad_seq"], 3)
        s.psql(SU + "UPDATE audit_checkpoints SET signature = '%s' WHERE seq = 3" % sig)


class TamperInsert(unittest.TestCase):
    def test_insertion_after_the_signed_head(self):
        with Server() as s:
            fill(s, 6)
            last = int(s.psql("SELECT max(seq) FROM audit_events"))
            head = s.psql("SELECT encode(hash, 'hex') FROM audit_events WHERE seq = %d" % last)
            # a forger with the database writes a well-formed, correctly chained event
            ev = {"seq": last + 1, "ts": "2026-01-01T00:00:00.000000Z", "request_id": "forged",
                  "principal": "admin", "action": "whoami", "resource": "whoami", "decision": "allow",
                  "reason": "ok", "purpose": None, "status": 200, "bytes": 10, "client": "127.0.0.1",
                  "detail": {"method": "GET"}, "prev_hash": head}
            canon = json.dumps(ev, sort_keys=True, separators=(",", ":"))
            import hashlib
            h = hashlib.sha256(bytes.fromhex(head) + canon.encode()).hexdigest()
            s.psql(SU + "INSERT INTO audit_events VALUES (%d, '2026-01-01T00:00:00Z', 'admin', 'whoami', "
                        "'whoami', 'allow', 200, '%s', '\\x%s')" % (last + 1, canon, h))
            v = verify(s)
            self.assertFalse(v["ok"])
            self.assertEqual(v["first_bad_seq"], last + 1)
            # the gateway keeps writing, but never signs over the forged event
            fill(s, 3)
            v = verify(s)
            self.assertFalse(v["ok"])
            self.assertEqual(v["first_bad_seq"], last + 1, v)


class TamperTruncate(unittest.TestCase):
    def test_truncated_tail_after_a_signed_head(self):
        with Server() as s:
            fill(s, 8)
            last = int(s.psql("SELECT max(seq) FROM audit_events"))
            s.psql(SU + "DELETE FROM audit_events WHERE seq > %d" % (last - 3))
            v = verify(s)
            self.assertFalse(v["ok"])
            self.assertEqual(v["first_bad_seq"], last - 2, v)
            # later events do not paper over the hole
            fill(s, 2)
            v = verify(s)
            self.assertFalse(v["ok"])
            self.assertEqual(v["first_bad_seq"], last - 2, v)


class OfflineVerify(unittest.TestCase):
    def test_export_verifies_offline_and_fails_after_one_byte(self):
        with Server() as s:
            fill(s, 5)
            s.create_principal("offline-p", roles=["auditor"])
            d = tempfile.mkdtemp(prefix="slx-")
            export = os.path.join(d, "trail.jsonl")
            keys = os.path.join(d, "keys.json")
            s.cli("audit", "export", "--out", export)
            out = s.cli("keys", "public", "--output", "json")
            with open(keys, "w") as f:
                f.write(out.stdout)
            b64 = json.loads(out.stdout)["keys"][0]["public_key"]
            # stop the server: offline means offline
            s.stop()
            for key in (keys, b64):
                out = subprocess.run([__import__("harness").BIN, "audit", "verify",
                                      "--file", export, "--public-key", key], capture_output=True, text=True)
                self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
                self.assertIn("trail verified", out.stdout)
            with open(export, "rb") as f:
                data = bytearray(f.read())
            lines = data.split(b"\n")
            # one byte in an event of the middle: a reason letter
            target = [k for k, l in enumerate(lines) if l.startswith(b'{"action"')][3]
            i = lines[target].index(b'"reason":"') + len(b'"reason":"')
            lines[target][i] ^= 0x01
            bad = os.path.join(d, "bad.jsonl")
            with open(bad, "wb") as f:
                f.write(b"\n".join(lines))
            out = subprocess.run([__import__("harness").BIN, "audit", "verify", "--file", bad,
                                  "--public-key", keys, "--output", "json"], capture_output=True, text=True)
            self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
            res = json.loads(out.stdout)
            self.assertFalse(res["ok"])
            self.assertEqual(res["first_bad_seq"], json.loads(bytes(lines[target]).decode())["seq"])
            # a wrong key fails too
            other = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
            out = subprocess.run([__import__("harness").BIN, "audit", "verify", "--file", export,
                                  "--public-key", other], capture_output=True, text=True)
            self.assertEqual(out.returncode, 1, out.stdout)
            # a dropped line (an event) is found
            with open(export, "rb") as f:
                lines = f.read().split(b"\n")
            del lines[4]
            with open(bad, "wb") as f:
                f.write(b"\n".join(lines))
            out = subprocess.run([__import__("harness").BIN, "audit", "verify", "--file", bad,
                                  "--public-key", keys], capture_output=True, text=True)
            self.assertEqual(out.returncode, 1, out.stdout)


if __name__ == "__main__":
    unittest.main()
