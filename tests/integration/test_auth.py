"""
tests/integration/test_auth.py: authentication, tokens and roles against a real gateway
with its real embedded PostgreSQL, over real TLS.

Covers: 401 for a missing, malformed, unknown or wrong token (each audited as a deny with
no principal, the token nowhere in the trail or the log); the per-address failed-auth
limit (429, audited, even for a valid token, lifted when the bucket refills); revocation
(by an admin, by the token's own principal, 403 for another's); expiry and TTL bounds;
disabling and re-enabling a principal; built-in roles on principals, audit and metrics;
last-admin protection (also under two concurrent demotions); duplicate names; whoami;
/metrics contents; and a restart that keeps principals, tokens and the trail.

Every client here is 127.0.0.1, so the rate-limit tests run on their own servers and the
shared server has a failed-auth allowance far above what its tests use.

Run: SLUICE_BIN=.../bin/sluice /usr/bin/python3 -m unittest -v test_auth
"""
import collections
import os
import re
import secrets
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, ServerCase  # noqa: E402


TOKEN_RE = re.compile(r"^slc_([0-9a-f]{16})_([0-9a-f]{64})$")
_rid_n = [0]
_rid_lock = threading.Lock()


def rid(tag):
    with _rid_lock:
        _rid_n[0] += 1
        return "auth-%s-%d-%s" % (tag, _rid_n[0], secrets.token_hex(4))


def split_token(tok):
    m = TOKEN_RE.match(tok)
    assert m, "not a token: %r" % tok
    return m.group(1), m.group(2)


def events_for(srv, request_id):
    return [e for e in srv.events() if e.get("request_id") == request_id]


def whole_trail_text(srv):
    """Every column of every audit row and checkpoint, as text."""
    return srv.psql("SELECT t::text FROM audit_events t") + "\n" + srv.psql("SELECT t::text FROM audit_checkpoints t")


def metric(text, name):
    m = re.search(r"^%s(?:\{[^}]*\})? ([0-9.e+-]+)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None


class AuthTestBase(ServerCase):

    def req(self, method, path, token="admin", body=None, headers=None, request_id=None):
        h = dict(headers or {})
        if request_id is not None:
            h["X-Request-Id"] = request_id
        return self.srv.request(method, path, token=token, body=body, headers=h)

    def assertError(self, r, status, code):
        self.assertEqual(r.status, status, r)
        self.assertTrue((r.header("Content-Type") or "").startswith("application/json"), r.headers)
        j = r.json()
        self.assertEqual(set(j), {"error"}, j)
        self.assertEqual(j["error"]["code"], code, j)
        self.assertIsInstance(j["error"]["message"], str)
        self.assertEqual(j["error"]["request_id"], r.header("X-Request-Id"))
        return j

    def one_event(self, request_id):
        evs = events_for(self.srv, request_id)
        self.assertEqual(len(evs), 1, "request %s has %d audit events: %r" % (request_id, len(evs), evs))
        return evs[0]

    def new_principal(self, prefix, roles=(), attributes=None, ttl=None):
        name = "%s-%s" % (prefix, secrets.token_hex(3))
        body = {"name": name, "kind": "user", "roles": list(roles), "attributes": attributes or {}}
        if ttl is not None:
            body["ttl_seconds"] = ttl
        r = self.req("POST", "/v1/principals", body=body)
        self.assertEqual(r.status, 201, r)
        j = r.json()
        self.assertTrue(TOKEN_RE.match(j["token"]), j)
        self.assertEqual(j["token_id"], split_token(j["token"])[0])
        return name, j["token"]


class AuthTest(AuthTestBase):
    # a failed-auth allowance far above what these tests use: the limit has its own class
    serve_args = ("--auth-fail-burst", "100000", "--auth-fail-per-min", "100000",
                  "--max-token-ttl-days", "30")

    # ---- failed authentication ----

    def test_bad_credentials_are_401_audited_and_never_stored(self):
        admin_id, admin_secret = split_token(self.srv.admin_token)
        wrong_secret = secrets.token_hex(32)
        unknown_id_secret = secrets.token_hex(32)
        unknown_id = secrets.token_hex(8)
        cases = [
            ("none", None, None),
            ("empty-bearer", "", "Bearer "),
            ("basic", None, "Basic YWRtaW46YWRtaW4="),
            ("bearer-only", None, "Bearer"),
            ("not-a-token", "hello", None),
            ("no-secret", "slc_" + admin_id, None),
            ("short-secret", "slc_%s_%s" % (admin_id, admin_secret[:63]), None),
            ("long-secret", "slc_%s_%s0" % (admin_id, admin_secret), None),
            ("upper-hex", "slc_%s_%s" % (admin_id.upper(), admin_secret.upper()), None),
            ("bad-prefix", "slk_%s_%s" % (admin_id, admin_secret[::-1]), None),
            ("non-hex", "slc_%s_%s" % ("zz" * 8, "zz" * 32), None),
            ("trailing", "slc_%s_%s " % (admin_id, wrong_secret) + "x", None),
            ("unknown-id", "slc_%s_%s" % (unknown_id, unknown_id_secret), None),
            ("wrong-secret", "slc_%s_%s" % (admin_id, wrong_secret), None),
        ]
        rids = {}
        for tag, token, auth_header in cases:
            request_id = rid(tag)
            headers = {"Authorization": auth_header} if auth_header is not None else {}
            r = self.req("GET", "/v1/whoami", token=token, headers=headers, request_id=request_id)
            j = self.assertError(r, 401, "unauthenticated")
            self.assertEqual(j["error"]["request_id"], request_id)
            self.assertNotIn(b"admin", r.body, "a 401 must not say whose token it was")
            rids[tag] = request_id
        for tag, request_id in rids.items():
            ev = self.one_event(request_id)
            self.assertEqual(ev["decision"], "deny", (tag, ev))
            self.assertIsNone(ev["principal"], (tag, ev))
            self.assertEqual(ev["status"], 401, (tag, ev))
            self.assertEqual(ev["action"], "whoami", (tag, ev))
            self.assertTrue(ev["reason"].startswith("unauthenticated"), (tag, ev))
        self.assertIn("wrong secret", self.one_event(rids["wrong-secret"])["reason"])
        self.assertIn("unknown token id", self.one_event(rids["unknown-id"])["reason"])
        # no secret, right or wrong, anywhere in the trail or in the server's log
        trail = whole_trail_text(self.srv)
        log = self.srv.read_log()
        for s in (admin_secret, wrong_secret, unknown_id_secret, admin_secret.upper()):
            self.assertNotIn(s, trail)
            self.assertNotIn(s, log)
        self.assertEqual(int(self.srv.psql(
            "SELECT count(*) FROM audit_events WHERE canon LIKE '%%%s%%' OR canon LIKE '%%%s%%'"
            % (admin_secret, wrong_secret))), 0)

    def test_token_pasted_into_a_path_is_not_stored(self):
        _, admin_secret = split_token(self.srv.admin_token)
        request_id = rid("token-in-path")
        r = self.req("GET", "/v1/principals/" + self.srv.admin_token, request_id=request_id)
        self.assertIn(r.status, (400, 404), r)
        self.one_event(request_id)
        self.assertNotIn(admin_secret, whole_trail_text(self.srv))

    def test_failed_auth_counted_in_metrics(self):
        before = metric(self.req("GET", "/metrics").body.decode(), "sluice_auth_failures_total")
        self.assertIsNotNone(before)
        self.assertEqual(self.req("GET", "/v1/whoami", token="slc_%s_%s" % (secrets.token_hex(8), secrets.token_hex(32))).status, 401)
        self.assertEqual(self.req("GET", "/v1/whoami", token=None).status, 401)
        after = metric(self.req("GET", "/metrics").body.decode(), "sluice_auth_failures_total")
        self.assertGreaterEqual(after, before + 2)

    # ---- revocation ----

    def test_admin_revokes_a_token(self):
        name, tok = self.new_principal("rev", roles=["trainer"])
        tid, secret = split_token(tok)
        self.assertEqual(self.req("GET", "/v1/whoami", token=tok).status, 200)
        request_id = rid("revoke")
        r = self.req("DELETE", "/v1/tokens/" + tid, request_id=request_id)
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.body, b"")
        ev = self.one_event(request_id)
        self.assertEqual((ev["action"], ev["decision"], ev["principal"], ev["status"]),
                         ("token.revoke", "allow", "admin", 204))
        r = self.req("GET", "/v1/whoami", token=tok, request_id=rid("revoked"))
        self.assertError(r, 401, "unauthenticated")
        self.assertIn("revoked", events_for(self.srv, r.header("X-Request-Id"))[0]["reason"])
        self.assertNotIn(secret, whole_trail_text(self.srv))
        # the listing shows it revoked; revoking an unknown id is a 404, a bad id a 400
        r = self.req("GET", "/v1/principals/" + name)
        self.assertEqual(r.status, 200, r)
        toks = {t.get("token_id"): t for t in r.json()["tokens"]}
        self.assertIn(tid, toks)
        self.assertNotIn(secret, r.body.decode())
        self.assertError(self.req("DELETE", "/v1/tokens/" + secrets.token_hex(8)), 404, "not_found")
        self.assertError(self.req("DELETE", "/v1/tokens/not-a-token-id"), 400, "bad_request")

    def test_principal_revokes_own_token_but_not_anothers(self):
        name, tok1 = self.new_principal("own", roles=["trainer"])
        r = self.req("POST", "/v1/principals/%s/tokens" % name, body={})
        self.assertEqual(r.status, 201, r)
        tok2 = r.json()["token"]
        tid2 = r.json()["token_id"]
        self.assertEqual(self.req("GET", "/v1/whoami", token=tok2).status, 200)
        other, other_tok = self.new_principal("other", roles=["trainer"])
        other_tid, _ = split_token(other_tok)
        # another principal's token: 403, audited as a deny, and the token still works
        request_id = rid("revoke-other")
        r = self.req("DELETE", "/v1/tokens/" + other_tid, token=tok1, request_id=request_id)
        self.assertError(r, 403, "forbidden")
        ev = self.one_event(request_id)
        self.assertEqual((ev["decision"], ev["principal"], ev["status"]), ("deny", name, 403))
        self.assertEqual(self.req("GET", "/v1/whoami", token=other_tok).status, 200)
        # its own second token: 204, that token stops, the first keeps working
        r = self.req("DELETE", "/v1/tokens/" + tid2, token=tok1)
        self.assertEqual(r.status, 204, r)
        self.assertError(self.req("GET", "/v1/whoami", token=tok2), 401, "unauthenticated")
        self.assertEqual(self.req("GET", "/v1/whoami", token=tok1).status, 200)
        # a token may revoke itself, and is dead on the next request
        tid1, _ = split_token(tok1)
        self.assertEqual(self.req("DELETE", "/v1/tokens/" + tid1, token=tok1).status, 204)
        self.assertError(self.req("GET", "/v1/whoami", token=tok1), 401, "unauthenticated")

    # ---- expiry and TTL bounds ----

    def test_token_expires(self):
        name, tok = self.new_principal("exp", roles=["trainer"], ttl=2)
        r = self.req("POST", "/v1/principals/%s/tokens" % name, body={"ttl_seconds": 2})
        self.assertEqual(r.status, 201, r)
        tok_b = r.json()["token"]
        r = self.req("GET", "/v1/whoami", token=tok)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.req("GET", "/v1/whoami", token=tok_b).status, 200)
        time.sleep(3.1)
        request_id = rid("expired")
        self.assertError(self.req("GET", "/v1/whoami", token=tok, request_id=request_id), 401, "unauthenticated")
        self.assertIn("expired", self.one_event(request_id)["reason"])
        self.assertError(self.req("GET", "/v1/whoami", token=tok_b), 401, "unauthenticated")

    def test_ttl_bounds(self):
        max_s = 30 * 86400  # --max-token-ttl-days 30
        for ttl in (0, -1, max_s + 1, 10 ** 12, 1.5, "60", True):
            name = "ttl-%s" % secrets.token_hex(3)
            r = self.req("POST", "/v1/principals", body={"name": name, "kind": "user", "roles": [],
                                                         "attributes": {}, "ttl_seconds": ttl})
            self.assertError(r, 422, "invalid")
            self.assertError(self.req("GET", "/v1/principals/" + name), 404, "not_found")
            r = self.req("POST", "/v1/principals/admin/tokens", body={"ttl_seconds": ttl})
            self.assertError(r, 422, "invalid")
        # the maximum itself is fine, and so is the default (capped at the maximum)
        name, tok = self.new_principal("ttlmax", ttl=max_s)
        r = self.req("GET", "/v1/whoami", token=tok)
        self.assertEqual(r.status, 200, r)
        r = self.req("POST", "/v1/principals/%s/tokens" % name, body={})
        self.assertEqual(r.status, 201, r)
        exp = time.mktime(time.strptime(r.json()["expires_at"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
        self.assertLessEqual(exp, time.time() + max_s + 60, "the default TTL must be capped at the maximum")

    # ---- disabling ----

    def test_disable_and_enable(self):
        name, tok = self.new_principal("dis", roles=["trainer"])
        self.assertEqual(self.req("GET", "/v1/whoami", token=tok).status, 200)
        r = self.req("PATCH", "/v1/principals/" + name, body={"disabled": True})
        self.assertEqual(r.status, 200, r)
        self.assertIs(r.json()["disabled"], True)
        request_id = rid("disabled")
        self.assertError(self.req("GET", "/v1/whoami", token=tok, request_id=request_id), 401, "unauthenticated")
        self.assertIn("disabled", self.one_event(request_id)["reason"])
        r = self.req("PATCH", "/v1/principals/" + name, body={"disabled": False})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.req("GET", "/v1/whoami", token=tok).status, 200)

    # ---- roles ----

    def test_roles(self):
        _, trainer = self.new_principal("trainer", roles=["trainer"])
        _, auditor = self.new_principal("auditor", roles=["auditor"])
        _, monitor = self.new_principal("monitor", roles=["monitor"])
        _, owner = self.new_principal("owner", roles=["owner"])
        checks = [
            (trainer, "GET", "/v1/principals", None, 403),
            (trainer, "GET", "/v1/audit", None, 403),
            (trainer, "GET", "/v1/audit/verify", None, 403),
            (trainer, "GET", "/metrics", None, 403),
            (trainer, "POST", "/v1/principals", {"name": "nope-t", "roles": ["admin"]}, 403),
            (trainer, "PATCH", "/v1/principals/admin", {"disabled": True}, 403),
            (trainer, "POST", "/v1/principals/admin/tokens", {}, 403),
            (owner, "GET", "/v1/principals", None, 403),
            (owner, "GET", "/v1/audit", None, 403),
            (auditor, "GET", "/v1/audit", None, 200),
            (auditor, "GET", "/v1/audit/verify", None, 200),
            (auditor, "GET", "/v1/audit/checkpoints", None, 200),
            (auditor, "POST", "/v1/principals", {"name": "nope-a", "roles": []}, 403),
            (auditor, "GET", "/v1/principals", None, 403),
            (auditor, "GET", "/metrics", None, 403),
            (monitor, "GET", "/metrics", None, 200),
            (monitor, "GET", "/v1/principals", None, 403),
            (monitor, "GET", "/v1/audit", None, 403),
            (monitor, "GET", "/v1/whoami", None, 200),
            (trainer, "GET", "/v1/whoami", None, 200),
            (trainer, "GET", "/v1/keys/public", None, 200),
        ]
        for tok, method, path, body, want in checks:
            request_id = rid("role")
            r = self.req(method, path, token=tok, body=body, request_id=request_id)
            self.assertEqual(r.status, want, (method, path, r))
            if want == 403:
                self.assertError(r, 403, "forbidden")
                if path != "/metrics":
                    ev = self.one_event(request_id)
                    self.assertEqual((ev["decision"], ev["status"]), ("deny", 403), ev)
                    self.assertIsNotNone(ev["principal"])
        for n in ("nope-t", "nope-a"):
            self.assertError(self.req("GET", "/v1/principals/" + n), 404, "not_found")

    def test_last_admin_protected(self):
        for body in ({"disabled": True}, {"roles": ["owner"]}, {"roles": []}):
            request_id = rid("last-admin")
            r = self.req("PATCH", "/v1/principals/admin", body=body, request_id=request_id)
            self.assertError(r, 409, "conflict")
            ev = self.one_event(request_id)
            self.assertEqual(ev["status"], 409)
        self.assertEqual(self.req("GET", "/v1/whoami").status, 200)
        # with a second enabled admin, that one may be disabled and enabled again
        name, tok = self.new_principal("admin2", roles=["admin"])
        self.assertEqual(self.req("PATCH", "/v1/principals/" + name, body={"disabled": True}).status, 200)
        self.assertError(self.req("PATCH", "/v1/principals/admin", body={"disabled": True}), 409, "conflict")
        self.assertEqual(self.req("PATCH", "/v1/principals/" + name, body={"disabled": False}).status, 200)
        self.assertEqual(self.req("PATCH", "/v1/principals/" + name, body={"roles": ["monitor"]}).status, 200)
        self.assertEqual(self.req("GET", "/v1/principals", token=tok).status, 403)

    def test_duplicate_name(self):
        name, _ = self.new_principal("dup")
        request_id = rid("dup")
        r = self.req("POST", "/v1/principals", body={"name": name, "kind": "service", "roles": ["admin"],
                                                     "attributes": {}}, request_id=request_id)
        self.assertError(r, 409, "conflict")
        self.assertNotIn(b"slc_", r.body)
        self.assertEqual(self.one_event(request_id)["status"], 409)
        r = self.req("GET", "/v1/principals/" + name)
        self.assertEqual(r.json()["roles"], [])
        self.assertEqual(r.json()["kind"], "user")
        self.assertError(self.req("POST", "/v1/principals", body={"name": "admin", "roles": []}), 409, "conflict")

    def test_whoami(self):
        name, tok = self.new_principal("who", roles=["trainer", "owner"], attributes={"department": "research", "site": "eu"})
        request_id = rid("whoami")
        r = self.req("GET", "/v1/whoami", token=tok, request_id=request_id)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("X-Request-Id"), request_id)
        j = r.json()
        self.assertEqual(j["name"], name)
        self.assertEqual(sorted(j["roles"]), ["owner", "trainer"])
        self.assertEqual(j["attributes"], {"department": "research", "site": "eu"})
        self.assertNotIn("token", j)
        ev = self.one_event(request_id)
        self.assertEqual((ev["principal"], ev["action"], ev["decision"], ev["status"]), (name, "whoami", "allow", 200))
        self.assertEqual(ev["client"], "127.0.0.1")
        r = self.req("GET", "/v1/whoami")
        self.assertEqual((r.json()["name"], r.json()["roles"]), ("admin", ["admin"]))

    def test_metrics(self):
        # metrics are not audited; the rest is
        r = self.req("GET", "/metrics")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.header("Content-Type").startswith("text/plain"), r.headers)
        text = r.body.decode()
        for name in ("sluice_requests_total", "sluice_request_duration_seconds_bucket", "sluice_audit_queue_depth",
                     "sluice_audit_commit_seconds", "sluice_auth_failures_total"):
            self.assertRegex(text, r"(?m)^%s(\{|_| )" % name, name)
        self.assertRegex(text, r'(?m)^sluice_requests_total\{[^}]*route="/v1/whoami"[^}]*\} \d+$')
        self.assertRegex(text, r'(?m)^sluice_request_duration_seconds_bucket\{le="\+Inf"\} \d+$')
        self.assertRegex(text, r'(?m)^sluice_audit_commit_seconds_(bucket\{le="\+Inf"\}|count) \d+$')
        before = self.srv.audit_count()
        for path in ("/metrics", "/healthz", "/readyz"):
            self.assertEqual(self.req("GET", path).status, 200)
        self.assertEqual(self.srv.wait_audit_count(before + 1, timeout=1), before)


class CachedAuthTest(AuthTestBase):
    """
    A gateway caches authentications; a change made elsewhere (another gateway sharing the
    database, or an operator with SQL: here plain UPDATEs, the version moving on by
    trigger) still takes effect on the very next request: the cached claim is checked in the transaction that commits the request's
    event, and when it fails the request is made anew from the database. Each test uses
    its token first so the next request is served from the cache (the metrics show it),
    then checks that the failed claim left one event, the right one, and no change.
    """
    serve_args = AuthTest.serve_args

    def counters(self):
        text = self.req("GET", "/metrics").body.decode()
        return (metric(text, "sluice_auth_cache_hits_total"), metric(text, "sluice_auth_claims_failed_total"))

    def warm(self, tok):
        hits0, _ = self.counters()
        for _ in range(2):
            self.assertEqual(self.req("GET", "/v1/whoami", token=tok).status, 200)
        hits1, _ = self.counters()
        self.assertGreaterEqual(hits1 - hits0, 1, "the token's second request was not served from the cache")

    def assertRedone(self, claims_before):
        _, failed = self.counters()
        self.assertEqual(failed - claims_before, 1, "the stale cached authentication was not caught at commit")

    def test_token_revoked_elsewhere(self):
        _, tok = self.new_principal("crev", roles=["trainer"])
        tid, secret = split_token(tok)
        self.warm(tok)
        _, failed0 = self.counters()
        self.srv.psql("UPDATE tokens SET revoked_at = now() WHERE token_id = '%s'" % tid)
        request_id = rid("crevoked")
        self.assertError(self.req("GET", "/v1/whoami", token=tok, request_id=request_id), 401, "unauthenticated")
        ev = self.one_event(request_id)
        self.assertEqual((ev["status"], ev["decision"], ev["principal"]), (401, "deny", None))
        self.assertIn("revoked", ev["reason"])
        self.assertRedone(failed0)
        # and it stays refused (no stale entry left behind)
        self.assertError(self.req("GET", "/v1/whoami", token=tok), 401, "unauthenticated")
        self.assertNotIn(secret, whole_trail_text(self.srv))

    def test_role_removed_elsewhere_refuses_and_rolls_back(self):
        name, tok = self.new_principal("cadm", roles=["admin"])
        self.warm(tok)
        _, failed0 = self.counters()
        self.srv.psql("UPDATE principals SET roles = '[]' WHERE name = '%s'" % name)
        request_id = rid("cdemoted")
        victim = "made-%s" % secrets.token_hex(3)
        body = {"name": victim, "kind": "user", "roles": ["admin"], "attributes": {}}
        r = self.req("POST", "/v1/principals", token=tok, body=body, request_id=request_id)
        self.assertError(r, 403, "forbidden")
        self.assertNotIn("token", r.body.decode())
        ev = self.one_event(request_id)
        self.assertEqual((ev["status"], ev["decision"], ev["principal"]), (403, "deny", name))
        self.assertRedone(failed0)
        self.assertError(self.req("GET", "/v1/principals/" + victim), 404, "not_found")
        self.assertEqual(self.srv.psql("SELECT count(*) FROM principals WHERE name = '%s'" % victim), "0")

    def test_role_granted_elsewhere_is_seen(self):
        name, tok = self.new_principal("cgrant", roles=["trainer"])
        self.warm(tok)
        _, failed0 = self.counters()
        self.srv.psql("UPDATE principals SET roles = '[\"auditor\"]' WHERE name = '%s'" % name)
        request_id = rid("cgranted")
        r = self.req("GET", "/v1/audit/checkpoints", token=tok, request_id=request_id)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.one_event(request_id)["status"], 200)
        self.assertRedone(failed0)

    def test_disabled_elsewhere(self):
        name, tok = self.new_principal("cdis", roles=["trainer"])
        self.warm(tok)
        _, failed0 = self.counters()
        self.srv.psql("UPDATE principals SET disabled = true WHERE name = '%s'" % name)
        request_id = rid("cdisabled")
        self.assertError(self.req("GET", "/v1/whoami", token=tok, request_id=request_id), 401, "unauthenticated")
        self.assertIn("disabled", self.one_event(request_id)["reason"])
        self.assertRedone(failed0)

    def test_expired_elsewhere(self):
        _, tok = self.new_principal("cexp", roles=["trainer"])
        tid, _ = split_token(tok)
        self.warm(tok)
        _, failed0 = self.counters()
        self.srv.psql("UPDATE tokens SET expires_at = now() - interval '1 second' WHERE token_id = '%s'" % tid)
        request_id = rid("cexpired")
        self.assertError(self.req("GET", "/v1/whoami", token=tok, request_id=request_id), 401, "unauthenticated")
        self.assertIn("expired", self.one_event(request_id)["reason"])
        self.assertRedone(failed0)

    def test_unchanged_claims_pass_under_load(self):
        """Many cached requests at once, one token revoked meanwhile: only its requests fail."""
        _, keep = self.new_principal("ckeep", roles=["trainer"])
        _, drop = self.new_principal("cdrop", roles=["trainer"])
        drop_id, _ = split_token(drop)
        self.warm(keep)
        self.warm(drop)
        results = {"keep": collections.Counter(), "drop": collections.Counter()}
        lock = threading.Lock()
        revoked = threading.Event()

        def loop(kind, tok):
            for _ in range(25):
                after = revoked.is_set()  # the revocation had committed before this began
                st = self.req("GET", "/v1/whoami", token=tok).status
                with lock:
                    results[kind][(after, st)] += 1

        threads = [threading.Thread(target=loop, args=(k, t)) for k, t in
                   (("keep", keep), ("drop", drop)) * 3]
        for t in threads:
            t.start()
        time.sleep(0.2)
        self.srv.psql("UPDATE tokens SET revoked_at = now() WHERE token_id = '%s'" % drop_id)
        revoked.set()
        for t in threads:
            t.join(timeout=120)
        self.assertEqual(set(st for (_, st) in results["keep"]), {200}, results)
        # a request begun after the revocation committed is never served
        self.assertEqual(results["drop"][(True, 200)], 0, results)
        self.assertGreater(results["drop"][(True, 401)], 0, results)
        self.assertError(self.req("GET", "/v1/whoami", token=drop), 401, "unauthenticated")


class RateLimitTest(AuthTestBase):
    """burst 5, 6 per minute: a token every 10 s. Its own server: every test is 127.0.0.1."""
    serve_args = ("--auth-fail-burst", "5", "--auth-fail-per-min", "6")

    def test_rate_limit(self):
        srv = self.srv
        bad = "slc_%s_%s" % (secrets.token_hex(8), secrets.token_hex(32))
        self.assertEqual(self.req("GET", "/v1/whoami").status, 200)
        for i in range(5):
            self.assertError(self.req("GET", "/v1/whoami", token=bad if i % 2 else None), 401, "unauthenticated")
        t_empty = time.time()
        # the 6th failure: 429, and the token is not looked at
        request_id = rid("limited")
        j = self.assertError(self.req("GET", "/v1/whoami", token=bad, request_id=request_id), 429, "rate_limited")
        self.assertEqual(j["error"]["request_id"], request_id)
        ev = self.one_event(request_id)
        self.assertEqual((ev["decision"], ev["principal"], ev["status"]), ("deny", None, 429), ev)
        # even the admin's valid token, from the limited address
        request_id = rid("limited-admin")
        self.assertError(self.req("GET", "/v1/whoami", request_id=request_id), 429, "rate_limited")
        ev = self.one_event(request_id)
        self.assertEqual((ev["decision"], ev["principal"], ev["status"]), ("deny", None, 429), ev)
        self.assertError(self.req("POST", "/v1/principals", body={"name": "while-limited", "roles": []}), 429, "rate_limited")
        # unauthenticated endpoints still answer
        self.assertEqual(srv.request("GET", "/healthz", token=None).status, 200)
        self.assertEqual(srv.request("GET", "/readyz", token=None).status, 200)
        # 429s take nothing more from the bucket: one token comes back ~10 s after it emptied
        deadline = t_empty + 16
        status = 429
        while time.time() < deadline:
            status = self.req("GET", "/v1/whoami").status
            if status != 429:
                break
            time.sleep(0.5)
        waited = time.time() - t_empty
        self.assertEqual(status, 200, "the limit did not lift after %.1f s" % waited)
        self.assertGreater(waited, 8, "the limit lifted too early")
        self.assertError(srv.request("GET", "/v1/principals/while-limited"), 404, "not_found")
        # the limit and the failures are counted
        text = self.req("GET", "/metrics").body.decode()
        self.assertGreaterEqual(metric(text, "sluice_auth_rate_limited_total"), 3)
        self.assertGreaterEqual(metric(text, "sluice_auth_failures_total"), 5)
        # the secret of the bad token is nowhere in the trail
        self.assertNotIn(bad.split("_")[2], whole_trail_text(srv))
        # no 429 event names a principal
        self.assertEqual(srv.psql("SELECT count(*) FROM audit_events WHERE status = 429 AND principal IS NOT NULL"), "0")


class LastAdminRaceTest(AuthTestBase):
    """Two admins demote each other at the same moment: at least one must stay enabled."""
    # the loser of each round fails authentication (its token's principal was just disabled)
    serve_args = ("--auth-fail-burst", "100000", "--auth-fail-per-min", "100000")

    def test_concurrent_demotion_keeps_an_admin(self):
        srv = self.srv
        r = srv.request("POST", "/v1/principals", body={"name": "admin2", "kind": "user", "roles": ["admin"], "attributes": {}})
        self.assertEqual(r.status, 201, r)
        tok2 = r.json()["token"]
        outcomes = []
        for attempt in range(25):
            barrier = threading.Barrier(2)
            res = {}

            def patch(key, target, token):
                barrier.wait()
                res[key] = srv.request("PATCH", "/v1/principals/" + target, token=token, body={"disabled": True}).status

            t1 = threading.Thread(target=patch, args=("a", "admin", tok2))
            t2 = threading.Thread(target=patch, args=("b", "admin2", "admin"))
            t1.start()
            t2.start()
            t1.join()
            t2.join()
            outcomes.append((res.get("a"), res.get("b")))
            enabled = int(srv.psql("SELECT count(*) FROM principals WHERE NOT disabled AND roles ? 'admin'"))
            self.assertGreaterEqual(
                enabled, 1,
                "both concurrent PATCH {disabled:true} succeeded (attempt %d, statuses %r): no enabled admin "
                "is left and the gateway is locked out" % (attempt + 1, outcomes[-1]))
            # put both back (whoever is still enabled re-enables the other)
            if srv.request("GET", "/v1/whoami").status == 200:
                self.assertEqual(srv.request("PATCH", "/v1/principals/admin2", body={"disabled": False}).status, 200)
            else:
                self.assertEqual(srv.request("PATCH", "/v1/principals/admin", token=tok2, body={"disabled": False}).status, 200)


class RestartTest(AuthTestBase):

    def test_restart_keeps_principals_tokens_and_trail(self):
        srv = self.srv
        r = srv.request("POST", "/v1/principals", body={"name": "keeper", "kind": "service", "roles": ["auditor"],
                                                      "attributes": {"team": "audit"}})
        self.assertEqual(r.status, 201, r)
        tok = r.json()["token"]
        r = srv.request("POST", "/v1/principals", body={"name": "gone", "kind": "user", "roles": [], "attributes": {}})
        gone_tid = r.json()["token_id"]
        gone_tok = r.json()["token"]
        self.assertEqual(srv.request("DELETE", "/v1/tokens/" + gone_tid).status, 204)
        self.assertEqual(srv.request("PATCH", "/v1/principals/keeper", body={"attributes": {"team": "audit", "x": "y"}}).status, 200)
        self.assertEqual(srv.request("GET", "/v1/whoami", token=tok).status, 200)
        listing = srv.request("GET", "/v1/principals").json()
        v = srv.request("GET", "/v1/audit/verify").json()
        self.assertTrue(v["ok"], v)
        count = srv.wait_audit_count(v["events"] + 1)
        head = srv.psql("SELECT seq, encode(hash, 'hex') FROM audit_events ORDER BY seq DESC LIMIT 1")

        self.assertEqual(srv.stop(), 0, srv.read_log()[-2000:])
        srv.start()

        # nothing was written by the restart itself (/healthz is not audited)
        self.assertEqual(srv.audit_count(), count)
        self.assertEqual(srv.psql("SELECT seq, encode(hash, 'hex') FROM audit_events ORDER BY seq DESC LIMIT 1"), head)
        r = srv.request("GET", "/v1/whoami", token=tok)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["attributes"], {"team": "audit", "x": "y"})
        self.assertEqual(srv.request("GET", "/v1/whoami").status, 200)
        self.assertEqual(srv.request("GET", "/v1/whoami", token=gone_tok).status, 401)
        self.assertEqual(srv.request("GET", "/v1/principals").json(), listing)
        v = srv.request("GET", "/v1/audit/verify", token=tok).json()
        self.assertTrue(v["ok"], v)
        self.assertIsNone(v["first_bad_seq"])
        self.assertGreaterEqual(v["events"], count)
        # and the chain continues from the old head
        after = srv.events()
        self.assertEqual(len(after), srv.audit_count())
        self.assertEqual([e["seq"] for e in after], list(range(1, len(after) + 1)))


if __name__ == "__main__":
    unittest.main()
