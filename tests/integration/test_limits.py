"""
Connection limits of `serve`: --max-connections refuses connections beyond the limit and
accepts again once one closes; --conn-timeout closes an idle connection (slow clients
cannot hold threads), and that connection, which sent no request, is audited.
"""
import socket
import ssl
import time
import unittest

from harness import Server


def tls_connect(srv, timeout=5):
    raw = socket.create_connection(("127.0.0.1", srv.port), timeout=timeout)
    return srv.ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def whoami(srv, s):
    s.sendall(("GET /v1/whoami HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
               % srv.admin_token).encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b" ", 2)[1] if data.startswith(b"HTTP/1.1") else None


class Limits(unittest.TestCase):
    def test_connection_limit(self):
        with Server(serve_args=["--max-connections", "3"]) as srv:
            held = [tls_connect(srv) for _ in range(3)]
            for s in held:
                self.assertEqual(whoami(srv, s), b"200")
            refused = False
            try:
                extra = tls_connect(srv, timeout=5)
                refused = whoami(srv, extra) is None
                extra.close()
            except (OSError, ssl.SSLError):
                refused = True
            self.assertTrue(refused, "a fourth connection was served past --max-connections 3")
            held.pop().close()
            deadline = time.time() + 5
            ok = False
            while time.time() < deadline and not ok:
                try:
                    s = tls_connect(srv)
                    ok = whoami(srv, s) == b"200"
                    s.close()
                except (OSError, ssl.SSLError):
                    time.sleep(0.1)
            self.assertTrue(ok, "no connection accepted again after one closed")
            for s in held:
                s.close()

    def test_idle_connection_closed_and_audited(self):
        with Server(serve_args=["--conn-timeout", "2"]) as srv:
            before = srv.audit_count()
            s = tls_connect(srv, timeout=10)
            t0 = time.time()
            s.settimeout(10)
            try:
                data = s.recv(1)
            except (OSError, ssl.SSLError):
                data = b""
            took = time.time() - t0
            s.close()
            self.assertEqual(data, b"")
            self.assertLess(took, 8, "an idle connection was held past --conn-timeout")
            self.assertGreaterEqual(srv.wait_audit_count(before + 1, timeout=5), before + 1)
            ev = srv.events()[-1]
            self.assertEqual(ev["action"], "http.connection")
            self.assertEqual(ev["status"], 0)


if __name__ == "__main__":
    unittest.main()
