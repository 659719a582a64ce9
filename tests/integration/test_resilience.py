"""
tests/integration/test_resilience.py: the gateway when its PostgreSQL goes away and
comes back, and when it is stopped with requests in flight.

- PostgreSQL stopped under a running gateway: /readyz 503; whoami, an unauthenticated
  request and POST /v1/principals answer 503 `unavailable` within the audit bound and
  carry no data; the principal is not created; the audit writer backs off instead of
  spinning; PostgreSQL started again: the same gateway (no restart) is ready and serves
  within 15 s, the 503 answers are in the trail (status 503, exactly once each) and the
  trail verifies.
- SIGTERM with whoami loops in flight: exit status 0 within 30 s, every answered request
  is in the trail, and the embedded PostgreSQL is stopped (no postmaster.pid).
- The audit writer's connection cut (by a proxy in front of PostgreSQL) just after a
  batch committed, before the answer reached it, and just before a batch committed: the
  request is answered 200 and its event is in the trail exactly once either way.

Run: SLUICE_BIN=.../bin/sluice /usr/bin/python3 -m unittest -v test_resilience
"""
import collections
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, ServerCase  # noqa: E402


AUDIT_BOUND_MS = 1000


def metric(text, name):
    m = re.search(r"^%s(?:\{[^}]*\})? ([0-9.e+-]+)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None


def proc_cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def poll(fn, timeout, interval=0.2):
    """Calls fn until it returns a true value or timeout passes; returns the last value."""
    deadline = time.time() + timeout
    v = None
    while True:
        try:
            v = fn()
        except OSError:
            v = None
        if v or time.time() >= deadline:
            return v
        time.sleep(interval)


class OutageTest(ServerCase):
    srv = None

    serve_args = ("--audit-bound-ms", str(AUDIT_BOUND_MS))

    def setUp(self):
        # each test starts with a working database, whatever the last one left
        if not os.path.exists(os.path.join(self.srv.dir, "pg", "data", "postmaster.pid")):
            self.srv.pg_ctl("start")
        poll(lambda: self.srv.request("GET", "/readyz", token=None).status == 200, 20)

    def unavailable(self, r, what):
        self.assertEqual(r.status, 503, (what, r))
        j = r.json()
        self.assertEqual(set(j), {"error"}, (what, j))
        self.assertEqual(j["error"]["code"], "unavailable", (what, j))
        self.assertEqual(j["error"]["request_id"], r.header("X-Request-Id"))
        for leak in (b"admin", b"roles", b"attributes", b"token", b"slc_"):
            self.assertNotIn(leak, r.body, (what, r))

    def test_outage_fails_closed_and_recovers(self):
        srv = self.srv
        self.assertEqual(srv.request("GET", "/v1/whoami").status, 200)
        self.assertEqual(srv.request("POST", "/v1/principals", body={"name": "before", "roles": ["trainer"]}).status, 201)
        failures_before = metric(srv.request("GET", "/metrics").body.decode(), "sluice_audit_commit_failures_total")
        v = srv.request("GET", "/v1/audit/verify").json()
        self.assertTrue(v["ok"], v)
        gw_pid = srv.proc.pid

        self.assertEqual(srv.pg_ctl("stop"), 0, "could not stop the embedded PostgreSQL")
        self.assertFalse(os.path.exists(os.path.join(srv.dir, "pg", "data", "postmaster.pid")))

        # readiness says so at once; liveness stays
        self.assertTrue(poll(lambda: srv.request("GET", "/readyz", token=None).status == 503, 5),
                        "/readyz did not turn 503 with PostgreSQL stopped")
        r = srv.request("GET", "/readyz", token=None)
        self.assertEqual(r.status, 503, r)
        self.assertEqual(srv.request("GET", "/healthz", token=None).status, 200)

        outage = {}
        # an authenticated read: 503 within the bound (plus the pool's acquire wait), no data
        for tag, method, path, token, body in (
                ("whoami", "GET", "/v1/whoami", "admin", None),
                ("whoami-noauth", "GET", "/v1/whoami", None, None),
                ("whoami-2", "GET", "/v1/whoami", "admin", None),
                ("create", "POST", "/v1/principals", "admin", {"name": "during-outage", "kind": "user",
                                                                "roles": ["admin"], "attributes": {}}),
                ("list", "GET", "/v1/principals", "admin", None),
                ("unknown-path", "GET", "/v1/nowhere", "admin", None)):
            rid = "outage-%s-%s" % (tag, secrets.token_hex(4))
            t0 = time.time()
            r = srv.request(method, path, token=token, body=body, headers={"X-Request-Id": rid})
            took = time.time() - t0
            self.unavailable(r, tag)
            self.assertEqual(r.header("X-Request-Id"), rid)
            self.assertLess(took, AUDIT_BOUND_MS / 1000 + 4, "%s took %.1f s to fail" % (tag, took))
            outage[rid] = tag
        self.assertIsNone(srv.proc.poll(), "the gateway died with its database")

        # the database comes back; the same gateway process recovers by itself
        self.assertEqual(srv.pg_ctl("start"), 0, "could not start the embedded PostgreSQL")
        t0 = time.time()
        ready = poll(lambda: srv.request("GET", "/readyz", token=None).status == 200, 15)
        self.assertTrue(ready, "/readyz not 200 within 15 s of PostgreSQL returning")
        ok = poll(lambda: srv.request("GET", "/v1/whoami").status == 200, max(1, 15 - (time.time() - t0)))
        self.assertTrue(ok, "whoami not 200 within 15 s of PostgreSQL returning")
        self.assertEqual(srv.proc.pid, gw_pid)
        self.assertIsNone(srv.proc.poll())

        # the refused creation did not happen
        r = srv.request("GET", "/v1/principals/during-outage")
        self.assertEqual(r.status, 404, r)
        self.assertEqual(srv.psql("SELECT count(*) FROM principals WHERE name = 'during-outage'"), "0")
        self.assertEqual(srv.request("GET", "/v1/principals/before").status, 200)

        # every 503 is in the trail, once, as a 503, written when the database returned
        def all_there():
            ids = [e["request_id"] for e in srv.events()]
            return all(rid in ids for rid in outage)
        self.assertTrue(poll(all_there, 10), "the 503 answers of the outage are not all in the trail")
        by_rid = collections.defaultdict(list)
        for e in srv.events():
            by_rid[e["request_id"]].append(e)
        for rid, tag in outage.items():
            self.assertEqual(len(by_rid[rid]), 1, (tag, by_rid[rid]))
            ev = by_rid[rid][0]
            self.assertEqual(ev["status"], 503, (tag, ev))
            self.assertEqual(ev["decision"], "error", (tag, ev))
            self.assertEqual(ev["bytes"], 0, (tag, ev))
        v = srv.request("GET", "/v1/audit/verify").json()
        self.assertTrue(v["ok"], v)
        self.assertIsNone(v["first_bad_seq"], v)
        seqs = [e["seq"] for e in srv.events()]
        self.assertEqual(seqs, list(range(1, len(seqs) + 1)))
        text = srv.request("GET", "/metrics").body.decode()
        self.assertGreater(metric(text, "sluice_audit_commit_failures_total"), failures_before)
        self.assertEqual(metric(text, "sluice_audit_queue_depth"), 0)

    def test_writer_backs_off_while_database_is_down(self):
        """An unreachable database must not turn the audit writer into a busy loop."""
        srv = self.srv
        self.assertEqual(srv.request("GET", "/v1/whoami").status, 200)
        self.assertEqual(srv.pg_ctl("stop"), 0)
        try:
            # one request leaves an event queued, so the writer has something to retry
            self.assertEqual(srv.request("GET", "/v1/whoami").status, 503)
            lines0 = srv.read_log().count("could not commit")
            cpu0 = proc_cpu_seconds(srv.proc.pid)
            time.sleep(4)
            lines = srv.read_log().count("could not commit") - lines0
            cpu = proc_cpu_seconds(srv.proc.pid) - cpu0
        finally:
            self.assertEqual(srv.pg_ctl("start"), 0)
        self.assertTrue(poll(lambda: srv.request("GET", "/v1/whoami").status == 200, 15))
        self.assertLess(lines, 40, "the audit writer logged %d failed commits in 4 s: it retries without "
                                   "backing off (busy loop)" % lines)
        self.assertLess(cpu, 1.0, "the gateway used %.2f s of CPU in 4 idle s with the database down" % cpu)


class ShutdownTest(unittest.TestCase):

    def test_sigterm_while_requests_wait_for_a_stopped_database(self):
        """
        Requests suspended for their audit event while PostgreSQL is away, with a bound
        longer than the 30 s a stop used to wait: the server still stops cleanly
        (libmicrohttpd aborts if stopped with a suspended connection), answering them 503
        when their bound passes.
        """
        srv = Server(serve_args=["--audit-bound-ms", "35000"])
        try:
            srv.start()
            for _ in range(3):  # the admin's authentication is now cached: no query needed
                self.assertEqual(srv.request("GET", "/v1/whoami").status, 200)
            self.assertEqual(srv.pg_ctl("stop"), 0)
            statuses, lock = [], threading.Lock()

            def one():
                try:
                    st = srv.request("GET", "/v1/whoami", conn=srv.connect(timeout=80)).status
                except Exception as e:  # noqa: BLE001
                    st = type(e).__name__
                with lock:
                    statuses.append(st)

            threads = [threading.Thread(target=one) for _ in range(4)]
            for t in threads:
                t.start()
            time.sleep(2)
            t0 = time.time()
            rc = srv.stop(timeout=90)
            took = time.time() - t0
            for t in threads:
                t.join(timeout=60)
            log = srv.read_log()
            self.assertEqual(rc, 0, log[-3000:])
            self.assertNotIn("Fatal error", log)
            self.assertEqual(statuses, [503] * 4, log[-2000:])
            self.assertLess(took, 70, "stopping took %.1f s" % took)
        finally:
            srv.close()

    def test_sigterm_with_requests_in_flight(self):
        srv = Server(serve_args=["--audit-bound-ms", str(AUDIT_BOUND_MS)])
        try:
            srv.start()
            stop = threading.Event()
            answered = []  # (request id, status)
            errors = collections.Counter()
            lock = threading.Lock()

            def loop(keep_alive):
                conn = srv.connect(timeout=40) if keep_alive else None
                while not stop.is_set():
                    rid = "sd-%s" % secrets.token_hex(6)
                    try:
                        r = srv.request("GET", "/v1/whoami", headers={"X-Request-Id": rid}, conn=conn)
                        with lock:
                            answered.append((rid, r.status))
                    except Exception as e:  # refused or closed once the server stops: expected
                        with lock:
                            errors[type(e).__name__] += 1
                        if conn is not None:
                            conn.close()
                            conn = srv.connect(timeout=40)
                        time.sleep(0.05)
                if conn is not None:
                    conn.close()

            threads = [threading.Thread(target=loop, args=(i % 2 == 0,)) for i in range(6)]
            for t in threads:
                t.start()
            time.sleep(1.5)
            with lock:
                n_before = len(answered)
            self.assertGreater(n_before, 10, "the load did not get going: %r" % errors)
            t0 = time.time()
            rc = srv.stop(timeout=45)
            took = time.time() - t0
            stop.set()
            for t in threads:
                t.join(timeout=60)
            self.assertEqual(rc, 0, srv.read_log()[-3000:])
            self.assertLess(took, 30, "shutdown took %.1f s" % took)
            self.assertFalse(os.path.exists(os.path.join(srv.dir, "pg", "data", "postmaster.pid")),
                             "the embedded PostgreSQL is still running after the gateway stopped")
            statuses = collections.Counter(s for _, s in answered)
            self.assertEqual(set(statuses), {200}, "answers during shutdown: %r" % statuses)
            # every answered request was audited before its answer: look, with the database up
            self.assertEqual(srv.pg_ctl("start"), 0)
            ids = set(e["request_id"] for e in srv.events())
            missing = [rid for rid, _ in answered if rid not in ids]
            self.assertEqual(missing, [], "%d answered requests have no audit event" % len(missing))
            self.assertEqual(srv.pg_ctl("stop"), 0)
        finally:
            srv.close()




class StalledWriterTest(unittest.TestCase):
    """A database session that stops answering (here: the writer's backend SIGSTOPped)
    must not hold answers: 503 within the bound plus a short grace, /readyz says so, and
    once the session moves again the trail records what the clients really got."""

    def test_stalled_writer_session_answers_503_and_is_corrected(self):
        import signal
        with Server(serve_args=["--audit-bound-ms", str(AUDIT_BOUND_MS)]) as s:
            self.assertEqual(s.request("GET", "/v1/whoami").status, 200)
            pid = int(s.psql("SELECT pid FROM pg_stat_activity "
                             "WHERE application_name = 'sluice audit writer'"))
            os.kill(pid, signal.SIGSTOP)
            try:
                t0 = time.time()
                r = s.request("GET", "/v1/whoami", headers={"X-Request-Id": "stalled-1"})
                took = time.time() - t0
                self.assertEqual(r.status, 503, r)
                self.assertEqual(r.json()["error"]["code"], "unavailable")
                self.assertNotIn(b"admin", r.body)
                self.assertLess(took, AUDIT_BOUND_MS / 1000 + 3, "an answer waited on a stalled session")
                r = s.request("GET", "/v1/whoami", headers={"X-Request-Id": "stalled-2"})
                self.assertEqual(r.status, 503, r)
                self.assertEqual(s.request("GET", "/readyz", token=None).status, 503)
            finally:
                os.kill(pid, signal.SIGCONT)
            self.assertEqual(poll(lambda: s.request("GET", "/v1/whoami").status == 200, 15), True)
            ev = [e for e in s.events() if e["request_id"] in ("stalled-1", "stalled-2")]
            # each request's record ends with what the client got: 503
            for rid in ("stalled-1", "stalled-2"):
                mine = [e for e in ev if e["request_id"] == rid]
                self.assertTrue(mine, rid)
                self.assertEqual(mine[-1]["status"], 503, mine)
                if len(mine) > 1:
                    self.assertEqual(mine[-1]["action"], "audit.correction", mine)
                    self.assertEqual(mine[-1]["detail"]["corrects_seq"], mine[0]["seq"])
            v = s.request("GET", "/v1/audit/verify").json()
            self.assertTrue(v["ok"], v)


class PgProxy:
    """A Unix-socket proxy in front of PostgreSQL. Armed, it cuts the audit writer's
    connection once: "after_commit" when the server has committed an append (its
    ReadyForQuery, idle, follows the INSERT) but before any of that answer is passed on;
    "before_commit" instead of passing on the writer's next Bind (nothing of the batch
    reaches the server: an explicit COMMIT in a pipeline commits before its Sync)."""

    def __init__(self, target):
        self.target = target
        self.dir = tempfile.mkdtemp(prefix="slp-", dir="/tmp")
        os.chmod(self.dir, 0o755)  # the gateway connects as its unprivileged user
        self.path = os.path.join(self.dir, ".s.PGSQL.5432")
        self.lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.lsock.bind(self.path)
        os.chmod(self.path, 0o777)
        self.lsock.listen(64)
        self.lock = threading.Lock()
        self.mode = None
        self.cuts = []
        self.closing = False
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def arm(self, mode):
        with self.lock:
            self.mode = mode

    def take(self, mode):
        """The armed mode is used up by the first connection that gets to it."""
        with self.lock:
            if self.mode != mode:
                return False
            self.mode = None
            self.cuts.append(mode)
            return True

    def close(self):
        self.closing = True
        self.lsock.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def accept_loop(self):
        while not self.closing:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.target)
            conn = {"writer": False, "dead": False}
            threading.Thread(target=self.client_to_server, args=(c, s, conn), daemon=True).start()
            threading.Thread(target=self.server_to_client, args=(c, s, conn), daemon=True).start()

    @staticmethod
    def cut(c, s, conn):
        conn["dead"] = True
        for x in (c, s):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            x.close()

    @staticmethod
    def messages(buf, startup):
        """Complete messages at the front of buf: (type, body, raw) each, and the rest."""
        out = []
        while True:
            if startup:  # the startup packet has no type byte
                if len(buf) < 4:
                    break
                n = struct.unpack("!I", buf[:4])[0]
                if len(buf) < n:
                    break
                out.append((b"", buf[4:n], buf[:n]))
                buf = buf[n:]
                startup = False
                continue
            if len(buf) < 5:
                break
            n = struct.unpack("!I", buf[1:5])[0]
            if len(buf) < 1 + n:
                break
            out.append((buf[:1], buf[5:1 + n], buf[:1 + n]))
            buf = buf[1 + n:]
        return out, buf

    def client_to_server(self, c, s, conn):
        buf, startup = b"", True
        try:
            while not conn["dead"]:
                data = c.recv(65536)
                if not data:
                    break
                buf += data
                msgs, buf = self.messages(buf, startup)
                startup = False if msgs else startup
                for t, body, raw in msgs:
                    if b"sluice audit writer" in body:
                        conn["writer"] = True
                    if conn["writer"] and t == b"B" and self.take("before_commit"):
                        self.cut(c, s, conn)
                        return
                    s.sendall(raw)
        except OSError:
            pass
        if not conn["dead"]:
            self.cut(c, s, conn)

    def server_to_client(self, c, s, conn):
        buf, held = b"", None
        try:
            while not conn["dead"]:
                data = s.recv(65536)
                if not data:
                    break
                buf += data
                msgs, buf = self.messages(buf, False)
                for t, body, raw in msgs:
                    if held is None and conn["writer"] and t == b"C" and body.startswith(b"INSERT") \
                            and self.mode == "after_commit":
                        held = []
                    if held is None:
                        c.sendall(raw)
                        continue
                    held.append(raw)
                    if t == b"Z":
                        if body == b"I" and self.take("after_commit"):
                            self.cut(c, s, conn)  # committed; the answer never arrives
                            return
                        for h in held:
                            c.sendall(h)
                        held = None
        except OSError:
            pass
        if not conn["dead"]:
            self.cut(c, s, conn)


class LostCommitAnswerTest(unittest.TestCase):
    """A batch whose commit's answer is lost is looked up in the trail, not written again."""

    def test_event_written_once_when_the_commit_answer_is_lost(self):
        with Server() as s:
            s.stop()  # the embedded cluster stops with the gateway; start it alone
            self.assertEqual(s.pg_ctl("start"), 0)
            proxy = PgProxy(os.path.join(s.dir, "pg", "run", ".s.PGSQL.5432"))
            try:
                s.start(extra=("--db", "host=%s dbname=sluice user=sluice_admin connect_timeout=5"
                               % proxy.dir))
                self.assertEqual(s.request("GET", "/v1/whoami").status, 200)
                for mode in ("after_commit", "before_commit"):
                    rid = "lost-%s-%s" % (mode, secrets.token_hex(4))
                    proxy.arm(mode)
                    r = s.request("GET", "/v1/whoami", headers={"X-Request-Id": rid})
                    self.assertEqual(r.status, 200, (mode, r))
                    self.assertEqual(proxy.cuts[-1:], [mode], "the proxy did not cut the writer")
                    mine = [e for e in s.events() if e["request_id"] == rid]
                    self.assertEqual(len(mine), 1, (mode, mine))
                    self.assertEqual(mine[0]["status"], 200)
                self.assertIn("commit went unanswered is in the trail", s.read_log())
                self.assertIn("not in the trail: written again", s.read_log())
                v = s.request("GET", "/v1/audit/verify").json()
                self.assertTrue(v["ok"], v)
            finally:
                s.stop()
                proxy.close()


if __name__ == "__main__":
    unittest.main()
