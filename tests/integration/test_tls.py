"""
tests/integration/test_tls.py: the TLS face of a real gateway and the hardening of the
process behind it, against a real `sluice serve` with its real embedded PostgreSQL.

Covers: TLS 1.3 and 1.2 handshakes verified against the generated certificate (names
localhost, 127.0.0.1, ::1); TLS 1.1 and 1.0 refused; with TLS 1.2 only forward-secret AEAD
suites (ECDHE + AES-GCM / ChaCha20-Poly1305), never CBC, CCM or static RSA key exchange;
with TLS 1.3 only the GCM and ChaCha20 suites (Mozilla "intermediate"); the certificate
(ECDSA P-256, its SANs, the very certificate served); modes of the secret files; plain
HTTP on the TLS port answered with nothing; the server running as `sluice` with no
capabilities and not dumpable; the embedded PostgreSQL on a Unix socket only.

Refusals are checked with `openssl s_client -trace`: each negative case asserts that the
client really sent a ClientHello offering what is being tested (so a refusal is the
server's, not the client's own configuration) and that no session was negotiated. Each
list of refusals sits next to accepted cases on the same server, so a server that refused
everything would fail.

Run: SLUICE_BIN=.../bin/sluice /usr/bin/python3 -m unittest -v test_tls
"""
import os
import pwd
import re
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server  # noqa: E402

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
SS = shutil.which("ss") or "/usr/bin/ss"

TLS13_SUITES = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
TLS12_SUITES = {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                "ECDHE-ECDSA-CHACHA20-POLY1305"}


class SClient:
    """The outcome of one `openssl s_client -trace` run."""

    def __init__(self, args, rc, out):
        self.args = args
        self.rc = rc
        self.out = out
        # "New, V, Cipher is C": V is the cipher's own version, not the session's; the
        # session's is "Protocol  : V" (printed for TLS 1.2 and below, even when nothing
        # was negotiated), so it is taken from there when a cipher was negotiated
        m = re.search(r"^New, (\S+), Cipher is (\S+)", out, re.M)
        self.cipher = m.group(2) if m and m.group(2) != "(NONE)" else None
        self.protocol = None
        if self.cipher is not None:
            p = re.search(r"^\s+Protocol\s+: (\S+)", out, re.M)
            self.protocol = p.group(1) if p else m.group(1).rstrip(",")
        m = re.search(r"Verify return code: (\d+)", out)
        self.verify = int(m.group(1)) if m else None

    def sent_records(self):
        """The text of each record the client sent."""
        parts = re.split(r"^(Sent Record|Received Record)\s*$", self.out, flags=re.M)
        return [parts[i + 1] for i in range(1, len(parts) - 1, 2) if parts[i] == "Sent Record"]

    def received_records(self):
        parts = re.split(r"^(Sent Record|Received Record)\s*$", self.out, flags=re.M)
        return [parts[i + 1] for i in range(1, len(parts) - 1, 2) if parts[i] == "Received Record"]

    def client_hellos(self):
        return [r for r in self.sent_records() if "ClientHello" in r]

    def server_versions(self):
        return re.findall(r"server_version=0x([0-9A-Fa-f]+)", self.out)

    def __repr__(self):
        return "s_client %s -> rc=%d protocol=%s cipher=%s\n%s" % (
            " ".join(self.args), self.rc, self.protocol, self.cipher, self.out[-4000:])


class TLSGateway(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server().__enter__()
        cls.port = cls.srv.port

    @classmethod
    def tearDownClass(cls):
        cls.srv.close()

    # ---- helpers ----
    def s_client(self, *args, timeout=15):
        argv = [OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % self.port, "-trace",
                "-CAfile", self.srv.cacert] + list(args)
        # stdin at EOF: s_client closes right after the handshake
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
        return SClient(list(args), p.returncode, p.stdout + "\n" + p.stderr)

    def assertRefused(self, r, offered, hello_version=None):
        """The client sent a ClientHello naming `offered` (and with client_version
        `hello_version`), and no session came of it."""
        hellos = r.client_hellos()
        self.assertTrue(hellos, "the client sent no ClientHello at all (client-side refusal?): %r" % r)
        self.assertIn(offered, hellos[0], "the ClientHello did not offer %s: %r" % (offered, r))
        if hello_version is not None:
            self.assertIn("client_version=%s" % hello_version, hellos[0], repr(r))
        self.assertNotEqual(r.rc, 0, "handshake unexpectedly succeeded: %r" % r)
        self.assertIsNone(r.cipher, "a cipher was negotiated: %r" % r)
        self.assertNotIn("Server Temp Key", r.out, repr(r))
        self.assertNotIn("Certificate, Length", "".join(r.received_records()), repr(r))

    def assertAccepted(self, r, protocol, cipher=None):
        self.assertEqual(r.rc, 0, repr(r))
        self.assertEqual(r.protocol, protocol, repr(r))
        if cipher is not None:
            self.assertEqual(r.cipher, cipher, repr(r))
        self.assertEqual(r.verify, 0, "certificate did not verify against cert.pem: %r" % r)

    def python_tls(self, version, hostname):
        """A verified handshake pinned to `version` with `hostname` checked, then
        GET /healthz over it. Returns (version, cipher, status line, peer cert DER)."""
        ctx = ssl.create_default_context(cafile=self.srv.cacert)
        ctx.minimum_version = version
        ctx.maximum_version = version
        self.assertTrue(ctx.check_hostname)
        self.assertEqual(ctx.verify_mode, ssl.CERT_REQUIRED)
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=hostname) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: " + hostname.encode() +
                          b"\r\nConnection: close\r\n\r\n")
                data = b""
                while b"\r\n" not in data:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                return s.version(), s.cipher()[0], data.split(b"\r\n")[0], s.getpeercert(binary_form=True)

    def cert_text(self):
        p = subprocess.run([OPENSSL, "x509", "-in", self.srv.cacert, "-noout", "-text"],
                           capture_output=True, text=True, timeout=15)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout

    def sluice_ids(self):
        pw = pwd.getpwnam("sluice")
        return pw.pw_uid, pw.pw_gid

    def postmaster(self):
        """(pid, port, socket dir, listen address) from the cluster's postmaster.pid."""
        with open(os.path.join(self.srv.dir, "pg", "data", "postmaster.pid")) as f:
            lines = f.read().split("\n")
        return int(lines[0]), int(lines[3]), lines[4], lines[5].strip()

    def pid_tree(self, root):
        children = {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % d) as f:
                    st = f.read()
            except OSError:
                continue
            ppid = int(st[st.rindex(")") + 2:].split()[1])
            children.setdefault(ppid, []).append(int(d))
        out, todo = set(), [root]
        while todo:
            p = todo.pop()
            if p not in out:
                out.add(p)
                todo.extend(children.get(p, []))
        return out

    def ss(self, *flags):
        p = subprocess.run([SS, "-H"] + list(flags), capture_output=True, text=True, timeout=15)
        self.assertEqual(p.returncode, 0, p.stderr)
        rows = []
        for line in p.stdout.splitlines():
            pids = {int(x) for x in re.findall(r"pid=(\d+)", line)}
            names = set(re.findall(r'\(\("([^"]+)"', line)) | set(re.findall(r'\),\("([^"]+)"', line))
            rows.append((line, pids, names))
        return rows

    # ---- 1. TLS 1.3 and 1.2 succeed, verified ----
    def test_tls13_handshake_verified(self):
        for host in ("localhost", "127.0.0.1", "::1"):
            with self.subTest(host=host):
                ver, cipher, status, _ = self.python_tls(ssl.TLSVersion.TLSv1_3, host)
                self.assertEqual(ver, "TLSv1.3")
                self.assertIn(cipher, TLS13_SUITES)
                self.assertEqual(status, b"HTTP/1.1 200 OK")

    def test_tls12_handshake_verified(self):
        for host in ("localhost", "127.0.0.1", "::1"):
            with self.subTest(host=host):
                ver, cipher, status, _ = self.python_tls(ssl.TLSVersion.TLSv1_2, host)
                self.assertEqual(ver, "TLSv1.2")
                self.assertIn(cipher, TLS12_SUITES)
                self.assertEqual(status, b"HTTP/1.1 200 OK")

    def test_wrong_hostname_fails_verification(self):
        """The positive cases above really check the name."""
        for host in ("example.com", "127.0.0.2"):
            with self.subTest(host=host):
                with self.assertRaises(ssl.SSLCertVerificationError):
                    self.python_tls(ssl.TLSVersion.TLSv1_3, host)

    def test_served_certificate_is_cert_pem(self):
        _, _, _, der = self.python_tls(ssl.TLSVersion.TLSv1_3, "localhost")
        with open(self.srv.cacert) as f:
            self.assertEqual(der, ssl.PEM_cert_to_DER_cert(f.read()))

    def test_tls12_session_properties(self):
        r = self.s_client("-tls1_2")
        self.assertAccepted(r, "TLSv1.2")
        self.assertIn(r.cipher, TLS12_SUITES, repr(r))
        self.assertIn("Secure Renegotiation IS supported", r.out, repr(r))
        self.assertRegex(r.out, r"Extended master secret: yes", repr(r))

    # ---- 2. TLS 1.1 and 1.0 refused ----
    def test_tls11_and_tls10_refused(self):
        for flag, hello in (("-tls1_1", "0x302"), ("-tls1", "0x301")):
            with self.subTest(version=flag):
                # SECLEVEL=0: OpenSSL 3 will then offer the old versions and SHA-1 suites
                r = self.s_client(flag, "-cipher", "DEFAULT:@SECLEVEL=0")
                self.assertRefused(r, "ClientHello", hello_version=hello)
                for v in r.server_versions():
                    self.assertNotIn(v.lower(), ("301", "302"), "server answered with an old version: %r" % r)

    # ---- 3. TLS 1.2: only forward-secret AEAD suites; TLS 1.3: GCM and ChaCha20 only ----
    def test_tls12_aead_ecdhe_suites_accepted(self):
        for suite in sorted(TLS12_SUITES):
            with self.subTest(suite=suite):
                self.assertAccepted(self.s_client("-tls1_2", "-cipher", suite), "TLSv1.2", suite)

    def test_tls12_cbc_ccm_and_static_rsa_refused(self):
        cases = [
            ("AES128-SHA", "TLS_RSA_WITH_AES_128_CBC_SHA"),                     # RSA kx, CBC
            ("AES128-GCM-SHA256", "TLS_RSA_WITH_AES_128_GCM_SHA256"),           # RSA kx (no FS), AEAD
            ("AES256-GCM-SHA384", "TLS_RSA_WITH_AES_256_GCM_SHA384"),           # RSA kx (no FS), AEAD
            ("ECDHE-ECDSA-AES128-SHA", "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"),  # CBC
            ("ECDHE-ECDSA-AES128-SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"),
            ("ECDHE-ECDSA-AES256-SHA384", "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384"),
            ("ECDHE-ECDSA-AES128-CCM", "TLS_ECDHE_ECDSA_WITH_AES_128_CCM"),      # not in intermediate
        ]
        for suite, iana in cases:
            with self.subTest(suite=suite):
                self.assertRefused(self.s_client("-tls1_2", "-cipher", suite), iana, hello_version="0x303")

    def test_tls13_suites(self):
        for suite in sorted(TLS13_SUITES):
            with self.subTest(suite=suite):
                self.assertAccepted(self.s_client("-tls1_3", "-ciphersuites", suite), "TLSv1.3", suite)
        for suite in ("TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256"):
            with self.subTest(suite=suite):
                self.assertRefused(self.s_client("-tls1_3", "-ciphersuites", suite), suite)

    def test_tls13_groups(self):
        """Each of Mozilla intermediate's groups works on its own."""
        for group in ("X25519", "P-256", "P-384"):
            with self.subTest(group=group):
                self.assertAccepted(self.s_client("-tls1_3", "-groups", group), "TLSv1.3")

    # ---- 4. the certificate and the secret files ----
    def test_certificate_ecdsa_p256_and_sans(self):
        text = self.cert_text()
        self.assertRegex(text, r"Public Key Algorithm: id-ecPublicKey")
        self.assertRegex(text, r"Public-Key: \(256 bit\)")
        self.assertRegex(text, r"ASN1 OID: prime256v1")
        self.assertRegex(text, r"Signature Algorithm: ecdsa-with-SHA256")
        m = re.search(r"X509v3 Subject Alternative Name:.*?\n\s*(.+)\n", text)
        self.assertIsNotNone(m, text)
        sans = {s.strip() for s in m.group(1).split(",")}
        self.assertIn("DNS:localhost", sans)
        self.assertIn("IP Address:127.0.0.1", sans)
        self.assertTrue({"IP Address:0:0:0:0:0:0:0:1", "IP Address:::1"} & sans, sans)

    def test_key_pem_matches_certificate(self):
        key = os.path.join(self.srv.dir, "tls", "key.pem")
        a = subprocess.run([OPENSSL, "pkey", "-in", key, "-pubout"], capture_output=True, text=True, timeout=15)
        b = subprocess.run([OPENSSL, "x509", "-in", self.srv.cacert, "-noout", "-pubkey"],
                           capture_output=True, text=True, timeout=15)
        self.assertEqual(a.returncode, 0, a.stderr)
        self.assertEqual(b.returncode, 0, b.stderr)
        self.assertEqual(a.stdout, b.stdout)

    def test_secret_file_modes(self):
        for rel in ("tls/key.pem", "keys/master.1.key", "admin.token"):
            with self.subTest(path=rel):
                st = os.stat(os.path.join(self.srv.dir, rel))
                self.assertTrue(stat.S_ISREG(st.st_mode))
                self.assertEqual(stat.S_IMODE(st.st_mode), 0o600, "%s is %o" % (rel, stat.S_IMODE(st.st_mode)))

    def test_pg_directory_owned_by_sluice_0700(self):
        uid, gid = self.sluice_ids()
        for rel in ("pg", "pg/run", "pg/data"):
            with self.subTest(path=rel):
                st = os.stat(os.path.join(self.srv.dir, rel))
                self.assertTrue(stat.S_ISDIR(st.st_mode))
                self.assertEqual(st.st_uid, uid)
                self.assertEqual(stat.S_IMODE(st.st_mode), 0o700, "%s is %o" % (rel, stat.S_IMODE(st.st_mode)))

    # ---- 5. plain HTTP on the TLS port ----
    def test_plain_http_gets_no_http_answer(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
            data = b""
            try:
                while len(data) < 65536:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except (socket.timeout, ConnectionResetError):
                pass
        self.assertNotIn(b"HTTP/1.1 200", data)
        self.assertFalse(data.startswith(b"HTTP/"), data[:200])
        # and the server is still fine afterwards
        self.assertEqual(self.srv.request("GET", "/healthz", token=None).status, 200)

    # ---- 6. the process: unprivileged, no capabilities, not dumpable ----
    def proc_status(self, path):
        with open(path) as f:
            return dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)

    def test_runs_as_sluice(self):
        uid, gid = self.sluice_ids()
        self.assertNotEqual(uid, 0)
        pid = self.srv.proc.pid
        tasks = sorted(os.listdir("/proc/%d/task" % pid), key=int)
        self.assertIn(str(pid), tasks)
        for tid in tasks:  # every thread, not only the main one
            with self.subTest(tid=tid):
                st = self.proc_status("/proc/%d/task/%s/status" % (pid, tid))
                self.assertEqual([int(x) for x in st["Uid"].split()], [uid] * 4, st["Uid"])
                self.assertEqual([int(x) for x in st["Gid"].split()], [gid] * 4, st["Gid"])
                self.assertEqual(st["Groups"].split(), [], st["Groups"])
                for cap in ("CapPrm", "CapEff", "CapAmb"):
                    self.assertEqual(int(st[cap], 16), 0, "%s %s" % (cap, st[cap]))

    def test_not_dumpable(self):
        """A task that is not dumpable has its /proc/PID files owned by root (proc(5)),
        while this one runs as `sluice`: a root owner means PR_SET_DUMPABLE is 0."""
        uid, _ = self.sluice_ids()
        pid = self.srv.proc.pid
        st = self.proc_status("/proc/%d/status" % pid)
        self.assertEqual(int(st["Uid"].split()[0]), uid)  # precondition: not root itself
        for name in ("status", "environ", "mem", "maps"):
            with self.subTest(file=name):
                self.assertEqual(os.stat("/proc/%d/%s" % (pid, name)).st_uid, 0,
                                 "/proc/%d/%s is not owned by root: the process is dumpable" % (pid, name))

    # ---- 7. the embedded PostgreSQL: Unix socket only ----
    def test_postgres_no_tcp_listener(self):
        pm, _, _, listen = self.postmaster()
        cluster = self.pid_tree(pm)
        self.assertIn(pm, cluster)
        rows = self.ss("-ltnp")
        # ss does see processes: the gateway's own listener, and only that one
        mine = [line for line, pids, _ in rows if self.srv.proc.pid in pids]
        self.assertEqual(len(mine), 1, rows)
        self.assertIn("127.0.0.1:%d" % self.port, mine[0])
        bad = [line for line, pids, _ in rows if pids & cluster]
        self.assertEqual(bad, [], "the embedded PostgreSQL listens on TCP")
        self.assertEqual(listen, "", "postmaster.pid names a listen address: %r" % listen)

    def test_postgres_unix_socket(self):
        pm, port, sockdir, _ = self.postmaster()
        run = os.path.join(self.srv.dir, "pg", "run")
        self.assertEqual(os.path.realpath(sockdir), os.path.realpath(run))
        path = os.path.join(run, ".s.PGSQL.%d" % port)
        st = os.stat(path)
        self.assertTrue(stat.S_ISSOCK(st.st_mode), path)
        self.assertEqual(st.st_uid, self.sluice_ids()[0])
        rows = self.ss("-lxp")
        self.assertTrue(any(path in line and pm in pids for line, pids, _ in rows),
                        "no Unix listener %s owned by postmaster %d in ss -lxp" % (path, pm))


if __name__ == "__main__":
    unittest.main()
