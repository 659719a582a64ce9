"""
The data directory and the database: init refuses a non-empty directory; migrations
are recorded and a database newer than the binary is refused at start; --db uses an
existing PostgreSQL and starts none; --tls-cert/--tls-key are used as given.
"""
import os
import shutil
import subprocess
import tempfile
import unittest

import http.client
import ssl
import time

from harness import BIN, ServerCase, free_port


def run(*args, **kw):
    return subprocess.run([BIN] + list(args), capture_output=True, text=True, timeout=120, **kw)


class DataDir(ServerCase):

    def test_init_refuses_a_non_empty_directory(self):
        out = run("init", "--data-dir", self.srv.dir)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("not empty", out.stderr)

    def test_migrations_recorded(self):
        rows = self.srv.psql("SELECT version, name FROM schema_migrations ORDER BY version")
        self.assertTrue(rows.startswith("1|init"), rows)

    def test_newer_schema_refused_then_accepted(self):
        s = self.srv
        s.psql("INSERT INTO schema_migrations (version, name) VALUES (9999, 'from_the_future')")
        try:
            s.stop()
            out = subprocess.run([BIN, "serve", "--data-dir", s.dir], capture_output=True, text=True,
                                 timeout=120)
            self.assertNotEqual(out.returncode, 0)
            self.assertIn("newer than this sluice knows", out.stderr)
            # the refusal stopped the cluster it had started; start it to repair
            self.assertEqual(s.pg_ctl("start"), 0)
            s.psql("DELETE FROM schema_migrations WHERE version = 9999")
            self.assertEqual(s.pg_ctl("stop"), 0)
        finally:
            s.start()
        self.assertEqual(s.request("GET", "/v1/whoami").status, 200)

    def test_db_flag_uses_an_existing_server(self):
        s = self.srv
        s.psql("CREATE DATABASE other")
        tmp = tempfile.mkdtemp(prefix="slo-", dir="/tmp")
        os.chmod(tmp, 0o711)
        d = os.path.join(tmp, "d")
        conninfo = "host=%s/pg/run dbname=other user=sluice_admin" % s.dir
        port = free_port()
        proc = None
        try:
            out = run("init", "--data-dir", d, "--db", conninfo, "--listen", "127.0.0.1:%d" % port)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertFalse(os.path.exists(os.path.join(d, "pg")), "no cluster of its own")
            self.assertEqual(os.stat(os.path.join(d, "config.json")).st_mode & 0o777, 0o600)
            token = out.stdout.strip()
            self.assertTrue(token.startswith("slc_"))
            # its admin lives in the other database, not in the first gateway's
            self.assertEqual(s.psql("SELECT count(*) FROM principals WHERE name = 'admin'"), "1")
            n = subprocess.run(["psql", conninfo, "-Atc", "SELECT count(*) FROM principals"],
                               capture_output=True, text=True).stdout.strip()
            self.assertEqual(n, "1")
            # serve on it: no cluster started, requests served and audited in that database
            proc = subprocess.Popen([BIN, "serve", "--data-dir", d], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            ctx = ssl.create_default_context(cafile=os.path.join(d, "tls", "cert.pem"))
            status = None
            for _ in range(100):
                try:
                    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
                    c.request("GET", "/v1/whoami", headers={"Authorization": "Bearer " + token})
                    status = c.getresponse().status
                    c.close()
                    break
                except OSError:
                    time.sleep(0.1)
            self.assertEqual(status, 200)
            self.assertFalse(os.path.exists(os.path.join(d, "pg")))
            n = subprocess.run(["psql", conninfo, "-Atc", "SELECT count(*) FROM audit_events"],
                               capture_output=True, text=True).stdout.strip()
            self.assertGreaterEqual(int(n), 1)
        finally:
            if proc is not None:
                proc.terminate()
                self.assertEqual(proc.wait(timeout=60), 0)
            shutil.rmtree(tmp, ignore_errors=True)

    def test_given_certificate_is_used(self):
        tmp = tempfile.mkdtemp(prefix="slc-", dir="/tmp")
        os.chmod(tmp, 0o711)
        try:
            cert, key = os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                            "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=given.test",
                            "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
            d = os.path.join(tmp, "d")
            out = run("init", "--data-dir", d, "--tls-cert", cert, "--tls-key", key)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertFalse(os.path.exists(os.path.join(d, "tls", "cert.pem")))
            out = run("init", "--data-dir", os.path.join(tmp, "e"), "--tls-cert", cert)
            self.assertEqual(out.returncode, 2)
        finally:
            subprocess.run([os.environ.get("SLUICE_PG_BINDIR", "/usr/lib/postgresql/15/bin") + "/pg_ctl",
                            "-D", os.path.join(tmp, "d", "pg", "data"), "-m", "fast", "-w", "-s", "stop"],
                           capture_output=True)
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
