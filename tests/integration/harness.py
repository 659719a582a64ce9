"""
tests/integration/harness.py: starts a real sluice gateway with its real embedded
PostgreSQL for a test, and talks to it over real TLS. Standard library only, run by
/usr/bin/python3. Used by every integration test; needs root (the embedded cluster runs
as the `sluice` system user that scripts/deps.sh creates).

Environment: SLUICE_BIN (path to build-test/bin/sluice), set by ctest.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

BIN = os.environ.get("SLUICE_BIN", os.path.join(os.path.dirname(__file__), "../../build-test/bin/sluice"))
PG_BIN = os.environ.get("SLUICE_PG_BINDIR", "/usr/lib/postgresql/15/bin")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def header_of(headers, name):
    """The value of a header in a list of (name, value) pairs, any case, or None."""
    for k, v in headers:
        if k.lower() == name.lower():
            return v
    return None


class ServerCase(unittest.TestCase):
    """A test class sharing one gateway: `serve_args` for serve, `prepare()` to set it up."""
    srv = None
    serve_args = ()

    @classmethod
    def setUpClass(cls):
        cls.srv = Server(serve_args=list(cls.serve_args))
        try:
            cls.srv.start()
            cls.prepare()
        except Exception:
            cls.srv.close()
            raise

    @classmethod
    def prepare(cls):
        pass

    @classmethod
    def tearDownClass(cls):
        if cls.srv is not None:
            cls.srv.close()


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def header(self, name):
        return header_of(self.headers, name)

    def __repr__(self):
        return "Response(%d, %r)" % (self.status, self.body[:300])


class Server:
    """One data directory and one gateway. Use as a context manager."""

    def __init__(self, serve_args=(), init_args=()):
        # a short path: the PostgreSQL socket lives inside the data directory
        self.tmp = tempfile.mkdtemp(prefix="slt-", dir="/tmp")
        os.chmod(self.tmp, 0o711)  # the cluster's user must reach DIR/pg
        self.dir = os.path.join(self.tmp, "d")
        self.port = free_port()
        self.addr = "127.0.0.1:%d" % self.port
        self.serve_args = list(serve_args)
        self.proc = None
        self.log_path = os.path.join(self.tmp, "serve.log")
        out = subprocess.run([BIN, "init", "--data-dir", self.dir, "--listen", self.addr] + list(init_args),
                             capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError("sluice init failed: %s %s" % (out.stdout, out.stderr))
        self.admin_token = out.stdout.strip()
        assert self.admin_token.startswith("slc_"), out.stdout
        self.cacert = os.path.join(self.dir, "tls", "cert.pem")
        self.ctx = ssl.create_default_context(cafile=self.cacert)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def start(self, extra=()):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([BIN, "serve", "--data-dir", self.dir] + self.serve_args + list(extra),
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("sluice serve exited %s: %s" % (self.proc.returncode, self.read_log()))
            try:
                if self.request("GET", "/healthz", token=None).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("sluice serve did not come up: " + self.read_log())

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc is None:
            return None
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc = None
        self.log.close()
        return rc

    def close(self):
        try:
            self.stop()
        finally:
            # a server killed hard may leave its cluster running: stop it
            if os.path.exists(os.path.join(self.dir, "pg", "data", "postmaster.pid")):
                self.pg_ctl("stop")
            if os.environ.get("SLUICE_KEEP_TMP") is None:
                shutil.rmtree(self.tmp, ignore_errors=True)

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # ---- HTTP ----
    def connect(self, timeout=30):
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=timeout)

    def request(self, method, path, token="admin", body=None, headers=None, raw=None, conn=None):
        """token: "admin" (the admin token), None (no Authorization), or a token string."""
        h = dict(headers or {})
        if token == "admin":
            token = self.admin_token
        if token is not None:
            h["Authorization"] = "Bearer " + token
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        own = conn is None
        c = conn or self.connect()
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            return Response(r.status, r.getheaders(), r.read())
        finally:
            if own:
                c.close()

    def create_principal(self, name, roles=(), attributes=None, ttl=None, kind="user"):
        body = {"name": name, "kind": kind, "roles": list(roles), "attributes": attributes or {}}
        if ttl is not None:
            body["ttl_seconds"] = ttl
        r = self.request("POST", "/v1/principals", body=body)
        assert r.status == 201, r
        return r.json()["token"]

    # ---- the CLI ----
    def cli(self, *args, token="admin", check=True, env=None):
        e = dict(os.environ)
        e.update({"SLUICE_ADDR": "https://" + self.addr, "SLUICE_CACERT": self.cacert,
                  "SLUICE_TOKEN": self.admin_token if token == "admin" else (token or "")})
        e.update(env or {})
        out = subprocess.run([BIN] + list(args), capture_output=True, text=True, env=e, timeout=120)
        if check and out.returncode != 0:
            raise AssertionError("sluice %s failed (%d): %s %s" % (" ".join(args), out.returncode, out.stdout, out.stderr))
        return out

    # ---- the database, as its superuser (what an attacker with the database has) ----
    def conninfo(self):
        return "host=%s/pg/run dbname=sluice user=sluice_admin" % self.dir

    def psql(self, sql):
        out = subprocess.run([os.path.join(PG_BIN, "psql"), self.conninfo(), "-v", "ON_ERROR_STOP=1",
                              "-Atq", "-c", sql], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise AssertionError("psql failed: %s" % out.stderr)
        return out.stdout.strip()

    def pg_ctl(self, action):
        cmd = [os.path.join(PG_BIN, "pg_ctl"), "-D", os.path.join(self.dir, "pg", "data"), "-w", "-t", "60",
               "-s", "-l", os.path.join(self.dir, "pg", "log", "postgresql.log")]
        if action == "stop":
            cmd += ["-m", "fast"]
        cmd.append(action)
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "sluice", "--"] + cmd
        return subprocess.run(cmd, capture_output=True, text=True, timeout=90).returncode

    def audit_count(self):
        return int(self.psql("SELECT count(*) FROM audit_events"))

    def wait_audit_count(self, n, timeout=10):
        """Events posted without waiting (abandoned requests) land shortly after."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            c = self.audit_count()
            if c >= n:
                return c
            time.sleep(0.05)
        return self.audit_count()

    def events(self):
        rows = self.psql("SELECT canon FROM audit_events ORDER BY seq")
        return [json.loads(line) for line in rows.splitlines() if line]
