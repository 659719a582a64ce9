"""
tests/integration/test_store.py: datasets and their versions against a real gateway, its
real embedded PostgreSQL and real storage directories: the encrypted, erasure-coded store
seen from outside.

- Round trips: a CSV of every type with awkward fields (quotes, doubled quotes, commas,
  CRLF and LF inside quoted fields, multi-byte UTF-8, null versus "", extreme floats,
  int64 limits, bools in any case) comes back as canonical csv text, as jsonl values
  with the same float bits, and as a hand-parsed .npy matrix; projections, offset and
  limit, also across the row-group boundary of a 70000-row version; a CSV written with
  Python's repr() of floats comes back byte-identical; manifests and dataset documents.
- Refused uploads: 422 naming line and column but never the data (ragged rows, a value
  of the wrong type, bad UTF-8, an unterminated quote, header mismatches, a bad value
  after the first row group, columns fixed by the first upload), nothing visible, the
  version number consumed; 415 for another content type; 404 for unknown datasets.
- Planted values (an SSN-like string, an e-mail address) are nowhere in the data
  directory, the storage, PostgreSQL's files, the server's log or the audit trail.
- Damage with parity 1 over 3 directories (a fragment deleted, a byte flipped, two chunk
  files swapped, a file truncated, a fragment replayed from another version): reads are
  byte-identical, counted as rebuilt, and the scrub rewrites exactly the bad fragments
  (byte-identical to the originals); with no parity a damaged chunk is a clean 503 (or a
  stream that visibly stops) and the scrub reports it unrecoverable.
- Parity 2 over 6 directories: any two whole directories lost, read back identical; the
  scrub restores them, so a different pair can be lost next.
- kill -9 during uploads: every acknowledged version is live and intact, anything else
  live is intact too, no leftovers of interrupted uploads in storage or the database.
- Master key rotation (new key file, old one removed, data identical, also after a
  restart); crypto-shredding (a deleted version stays unreadable with its fragments put
  back, also through a scrub and a restart; its number is not reused).
- Authorisation without policies: another owner (and the admin) is refused describe,
  read, write, delete and manage, each refusal audited as a deny; a restricted dataset's
  rows leave for nobody; lists show each principal only their own datasets
  (test_policy.py covers what policies grant).

The kill -9 test draws its timings at random (SLUICE_TEST_SEED fixes them); like
harness.close it stops the embedded cluster a killed gateway leaves running before the
restart. Classes whose tests crash the server restart it for the next test.

Run: SLUICE_BIN=.../bin/sluice /usr/bin/python3 -m unittest -v test_store
"""
import ast
import concurrent.futures
import hashlib
import http.client
import io
import json
import math
import os
import pwd
import random
import re
import secrets
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server  # noqa: E402

CSV = {"Content-Type": "text/csv"}
I64_MIN = -(2 ** 63)
I64_MAX = 2 ** 63 - 1
ROWS_PER_GROUP = 65536
LINE_COL_RE = re.compile(r"^line (\d+), column (\d+): ")


# ---- helpers ----

def sha256(b):
    return hashlib.sha256(b).hexdigest()


def bits(x):
    return struct.pack("<d", x)


def metric(text, name):
    m = re.search(r"^%s(?:\{[^}]*\})? ([0-9.e+-]+)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None


def poll(fn, timeout, interval=0.1):
    deadline = time.time() + timeout
    while True:
        v = fn()
        if v or time.time() >= deadline:
            return v
        time.sleep(interval)


def csv_field(v):
    """A value as the gateway's canonical csv writes it (floats as Python's repr)."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if v == "" or any(ch in v for ch in ',"\r\n'):
        return '"' + v.replace('"', '""') + '"'
    return v


def csv_text(names, rows):
    out = [",".join(names) + "\n"]
    for row in rows:
        out.append(",".join(csv_field(v) for v in row) + "\n")
    return "".join(out).encode("utf-8")


def parse_npy(body):
    """NumPy .npy 1.0 by hand: (header dict, header length, values as doubles)."""
    if body[:6] != b"\x93NUMPY":
        raise AssertionError("not an .npy file: %r" % body[:20])
    if (body[6], body[7]) != (1, 0):
        raise AssertionError("npy version %d.%d, expected 1.0" % (body[6], body[7]))
    hlen = struct.unpack("<H", body[8:10])[0]
    header = body[10:10 + hlen].decode("latin-1")
    if not header.endswith("\n"):
        raise AssertionError("npy header does not end with a newline: %r" % header)
    d = ast.literal_eval(header.strip())
    data = body[10 + hlen:]
    if len(data) % 8:
        raise AssertionError("npy data of %d bytes is not whole doubles" % len(data))
    return d, 10 + hlen, [struct.unpack("<d", data[i:i + 8])[0] for i in range(0, len(data), 8)]


def numpy_or_none():
    try:
        import numpy  # noqa: F401
        return numpy
    except ImportError:  # optional cross-check only
        return None


def sluice_user():
    pw = pwd.getpwnam("sluice")
    return pw.pw_uid, pw.pw_gid


def flip_byte(path, pos=None):
    with open(path, "r+b") as f:
        data = f.read()
        pos = len(data) // 2 if pos is None else pos
        f.seek(pos)
        f.write(bytes([data[pos] ^ 0xFF]))


def snapshot(dirs):
    """Every file under the storage directories: {(dir index, relative path): bytes}."""
    out = {}
    for i, d in enumerate(dirs):
        for root, _, files in os.walk(d):
            for fn in files:
                p = os.path.join(root, fn)
                with open(p, "rb") as f:
                    out[(i, os.path.relpath(p, d))] = f.read()
    return out


def audit_events(srv):
    r = srv.request("GET", "/v1/audit?format=jsonl")
    assert r.status == 200, r
    evs = []
    for line in r.body.decode("utf-8").splitlines():
        if line:
            e = json.loads(line)
            if "checkpoint" not in e:
                evs.append(e)
    return evs


def event_for(srv, request_id, timeout=10):
    def find():
        return [e for e in audit_events(srv) if e.get("request_id") == request_id]
    evs = poll(find, timeout, 0.2)
    return evs


# ---- the awkward dataset of the round trips ----

AWK_NAMES = ["id", "i", "f", "b", "s"]
# the values, and the CSV that is uploaded for them (deliberately not canonical: CRLF and
# LF record ends, quotes where none are needed, floats and bools in other spellings)
AWK_ROWS = [
    (1, I64_MIN, 5e-324, True, "plain"),
    (2, I64_MAX, 2.2250738585072014e-308, False, 'say "hi", then leave'),
    (3, 0, 1.7976931348623157e308, None, "line1\r\nline2\nline3"),
    (4, None, 0.1, True, ""),
    (5, 42, None, False, None),
    (6, -1, 1e22, True, "日本語 🙂 é — ünïcödé"),
    (7, 7, 123456789012345680.0, False, '""'),
    (8, 1, -1.5e-07, True, " leading and trailing "),
    (9, None, -5e-324, False, "a,b,c"),
    (10, -42, 1e-300, True, '"'),
]
AWK_UPLOAD = (
    'id,i,f,b,s\r\n'
    '1,-9223372036854775808,5e-324,true,"plain"\r\n'
    '2,9223372036854775807,2.2250738585072014e-308,FALSE,"say ""hi"", then leave"\n'
    '3,0,1.7976931348623157e308,,"line1\r\nline2\nline3"\r\n'
    '4,,0.10,True,""\n'
    '5,42,,false,\n'
    '6,-1,1E22,true,日本語 🙂 é — ünïcödé\n'
    '7,7,123456789012345680.0,false,""""""\n'
    '8,1,-1.5e-07,true," leading and trailing "\n'
    '9,,-5e-324,False,"a,b,c"\n'
    '10,-42,1e-300,true,""""\r\n'
).encode("utf-8")
AWK_TYPES = ["int64", "int64", "float64", "bool", "string"]

# floats whose repr() is not what %g gives: integral values, zeros, 1e15..1e16
REPR_FLOATS = [-0.0, 0.0, 1.0, -2.0, 100.0, 1e15, 1e16, 123456789012345.0, 9007199254740992.0,
               0.5, 1e-05, 0.0001, 1.5]


def big_text(n=70000):
    return ("k,x\n" + "".join("%d,%r\n" % (k, k + 0.5) for k in range(n))).encode()


# ---- the base class ----

class StoreCase(unittest.TestCase):
    """One gateway per class; storage_dirs > 0 makes that many directories with parity."""
    srv = None
    storage_dirs = 0
    parity = 0
    serve_args = ()

    @classmethod
    def setUpClass(cls):
        cls.storage_parent = None
        init_args = []
        if cls.storage_dirs:
            # the storage's parent belongs to the server's user, so that a lost directory
            # can be made anew by the scrub (as on a replaced disk)
            cls.storage_parent = tempfile.mkdtemp(prefix="slt-st-", dir="/tmp")
            if os.geteuid() == 0:
                os.chown(cls.storage_parent, *sluice_user())
            os.chmod(cls.storage_parent, 0o700)
            cls.dirs = [os.path.join(cls.storage_parent, "s%d" % i) for i in range(cls.storage_dirs)]
            init_args = ["--storage", ",".join(cls.dirs), "--parity", str(cls.parity)]
        try:
            cls.srv = Server(serve_args=list(cls.serve_args), init_args=init_args)
            if not cls.storage_dirs:
                cls.dirs = [os.path.join(cls.srv.dir, "storage")]
            cls.srv.start()
            cls.prepare()
        except Exception:
            cls.cleanup()
            raise

    @classmethod
    def prepare(cls):
        pass

    @classmethod
    def tearDownClass(cls):
        cls.cleanup()

    @classmethod
    def cleanup(cls):
        try:
            if cls.srv is not None:
                cls.srv.close()
        finally:
            if cls.storage_parent and os.environ.get("SLUICE_KEEP_TMP") is None:
                shutil.rmtree(cls.storage_parent, ignore_errors=True)

    def setUp(self):
        # a test that crashed the server must not take the next ones with it
        p = self.srv.proc
        if p is not None and p.poll() is None:
            try:
                if self.srv.request("GET", "/healthz", token=None).status == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass
            try:
                p.wait(15)  # a dying process (a sanitizer's report) finishes first
            except subprocess.TimeoutExpired:
                pass
        self.restart(hard=True)

    @classmethod
    def restart(cls, hard=False):
        srv = cls.srv
        if srv.proc is not None:
            srv.stop(sig=signal.SIGKILL if hard else signal.SIGTERM)
        if os.path.exists(os.path.join(srv.dir, "pg", "data", "postmaster.pid")):
            srv.pg_ctl("stop")
        srv.start()

    # ---- requests ----
    @classmethod
    def create(cls, name, classification="internal", columns=None, token="admin", **extra):
        body = {"name": name, "classification": classification}
        if columns is not None:
            body["columns"] = columns
        body.update(extra)
        r = cls.srv.request("POST", "/v1/datasets", body=body, token=token)
        assert r.status == 201, r
        return r.json()

    @classmethod
    def upload(cls, ds, data, token="admin", headers=None, expect=201):
        h = dict(CSV)
        h.update(headers or {})
        r = cls.srv.request("POST", "/v1/datasets/%s/versions" % ds, raw=data, headers=h, token=token)
        if expect is not None:
            assert r.status == expect, (ds, r)
        return r

    def rows(self, ds, v, token="admin", **query):
        q = "&".join("%s=%s" % kv for kv in sorted(query.items()))
        return self.srv.request("GET", "/v1/datasets/%s/versions/%s/rows%s" % (ds, v, "?" + q if q else ""),
                                token=token)

    def rows_ok(self, ds, v, fmt="csv", **query):
        r = self.rows(ds, v, format=fmt, **query)
        self.assertEqual(r.status, 200, r)
        ctype = {"csv": "text/csv", "jsonl": "application/x-ndjson", "npy": "application/octet-stream"}[fmt]
        self.assertTrue((r.header("Content-Type") or "").startswith(ctype), r.headers)
        self.assertEqual(r.header("X-Sluice-Policy-Version"), "0", r.headers)
        return r.body

    def assertError(self, r, status, code):
        self.assertEqual(r.status, status, r)
        self.assertTrue((r.header("Content-Type") or "").startswith("application/json"), r.headers)
        j = r.json()
        self.assertEqual(set(j), {"error"}, j)
        self.assertEqual(j["error"]["code"], code, j)
        return j["error"]["message"]

    @classmethod
    def dataset_id(cls, name):
        return int(cls.srv.psql("SELECT id FROM datasets WHERE name = '%s'" % name))

    def metrics(self):
        r = self.srv.request("GET", "/metrics")
        self.assertEqual(r.status, 200, r)
        return r.body.decode()

    def rebuilt(self):
        return metric(self.metrics(), "sluice_store_fragments_rebuilt_total")

    def read_failures(self):
        return metric(self.metrics(), "sluice_store_read_failures_total")

    def scrub(self):
        r = self.srv.request("POST", "/v1/store/scrub")
        self.assertEqual(r.status, 200, r)
        j = r.json()
        for k in ("versions", "chunks", "fragments_repaired", "chunks_unrecoverable", "items"):
            self.assertIn(k, j)
        return j

    def frag(self, d, ds_id, v, g, c):
        return os.path.join(self.dirs[d], str(ds_id), str(v), "%d.%d.frag" % (g, c))


# ---- round trips, refusals, planted values, authorisation ----

class DatasetsTest(StoreCase):

    @classmethod
    def prepare(cls):
        cls.awk_doc = cls.create("awkward", description="every type, awkward fields",
                                 columns=[{"name": "id", "type": "int64"}, {"name": "i"}, {"name": "f"},
                                          {"name": "b", "tags": ["label"]}, {"name": "s", "tags": ["pii"]}])
        cls.awk_up = cls.upload("awkward", AWK_UPLOAD).json()
        cls.big = big_text()
        cls.create("big")
        cls.big_up = cls.upload("big", cls.big).json()

    # ---- round trips ----

    def test_upload_answer_manifest_and_document(self):
        self.assertEqual(self.awk_doc["name"], "awkward")
        self.assertEqual(self.awk_doc["owner"], "admin")
        self.assertEqual(self.awk_doc["versions"], [])
        self.assertIsNone(self.awk_doc["latest"])
        self.assertEqual([c["name"] for c in self.awk_doc["columns"]], AWK_NAMES)
        self.assertEqual(self.awk_doc["columns"][0].get("type"), "int64")
        self.assertNotIn("type", self.awk_doc["columns"][1])
        self.assertEqual(self.awk_doc["columns"][4]["tags"], ["pii"])
        up = self.awk_up
        self.assertEqual(up["version"], 1)
        self.assertEqual(up["rows"], len(AWK_ROWS))
        self.assertEqual(up["columns"], [{"name": n, "type": t} for n, t in zip(AWK_NAMES, AWK_TYPES)])
        self.assertEqual(up["bytes_in"], len(AWK_UPLOAD))
        self.assertEqual(up["sha256"], sha256(AWK_UPLOAD))
        self.assertGreater(up["bytes_stored"], 0)
        for v in ("1", "latest"):
            r = self.srv.request("GET", "/v1/datasets/awkward/versions/" + v)
            self.assertEqual(r.status, 200, r)
            m = r.json()
            self.assertEqual(m["dataset"], "awkward")
            self.assertEqual(m["version"], 1)
            self.assertEqual(m["rows"], len(AWK_ROWS))
            self.assertEqual(m["row_groups"], 1)
            self.assertEqual(m["bytes_in"], len(AWK_UPLOAD))
            self.assertEqual(m["bytes_stored"], up["bytes_stored"])
            self.assertEqual(m["sha256"], sha256(AWK_UPLOAD))
            self.assertEqual(m["created_by"], "admin")
            self.assertRegex(m["created_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
            self.assertEqual(m["columns"], [{"name": "id", "type": "int64", "tags": []},
                                            {"name": "i", "type": "int64", "tags": []},
                                            {"name": "f", "type": "float64", "tags": []},
                                            {"name": "b", "type": "bool", "tags": ["label"]},
                                            {"name": "s", "type": "string", "tags": ["pii"]}])
            # a summary, never values
            for value in (b"plain", b"leading and trailing", b"9223372036854775807"):
                self.assertNotIn(value, r.body)
        r = self.srv.request("GET", "/v1/datasets/awkward")
        self.assertEqual(r.status, 200, r)
        d = r.json()
        self.assertEqual(d["latest"], 1)
        self.assertEqual([c.get("type") for c in d["columns"]], AWK_TYPES)
        self.assertEqual(len(d["versions"]), 1)
        self.assertEqual((d["versions"][0]["version"], d["versions"][0]["rows"], d["versions"][0]["sha256"]),
                         (1, len(AWK_ROWS), sha256(AWK_UPLOAD)))
        self.assertEqual(d["classification"], "internal")
        self.assertEqual(d["description"], "every type, awkward fields")
        for k in ("policy_version", "retention", "legal_hold", "created_at"):
            self.assertIn(k, d)

    def test_csv_is_canonical(self):
        body = self.rows_ok("awkward", 1, "csv")
        self.assertEqual(body.decode("utf-8"), csv_text(AWK_NAMES, AWK_ROWS).decode("utf-8"))
        # and "latest" is the same version
        self.assertEqual(self.rows_ok("awkward", "latest", "csv"), body)

    def test_jsonl_values_and_float_bits(self):
        body = self.rows_ok("awkward", 1, "jsonl")
        lines = body.decode("utf-8").split("\n")
        self.assertEqual(lines[-1], "", "jsonl must end with a newline")
        lines = lines[:-1]
        self.assertEqual(len(lines), len(AWK_ROWS))
        for line, want in zip(lines, AWK_ROWS):
            float_tokens = []

            def pf(tok):
                float_tokens.append(tok)
                return float(tok)
            got = json.loads(line, object_pairs_hook=list, parse_float=pf)
            self.assertEqual([k for k, _ in got], AWK_NAMES, line)
            for (name, g), w, t in zip(got, want, AWK_TYPES):
                if w is None:
                    self.assertIsNone(g, (name, line))
                elif t == "float64":
                    self.assertIsInstance(g, float, "%s: float64 needs a point or an exponent: %s" % (name, line))
                    self.assertEqual(bits(g), bits(w), (name, g, w))
                elif t == "int64":
                    self.assertIs(type(g), int, (name, line))
                    self.assertEqual(g, w)
                    self.assertIn(":%d" % w, line.replace(" ", ""), "int64 must print all its digits")
                else:
                    self.assertEqual(type(g), type(w), (name, line))
                    self.assertEqual(g, w)
            for tok in float_tokens:
                self.assertTrue("." in tok or "e" in tok or "E" in tok, tok)

    def check_npy(self, body, cols, rows):
        d, hend, values = parse_npy(body)
        self.assertEqual(d, {"descr": "<f8", "fortran_order": False, "shape": (len(rows), len(cols))})
        self.assertEqual(hend % 16, 0, "npy header not padded to a multiple of 16 (64 since NumPy 1.x)")
        self.assertEqual(len(values), len(rows) * len(cols))
        idx = [AWK_NAMES.index(c) for c in cols]
        for r, row in enumerate(rows):
            for j, ci in enumerate(idx):
                w, g = row[ci], values[r * len(cols) + j]
                if w is None:
                    self.assertTrue(math.isnan(g), (r, cols[j], g))
                else:
                    self.assertEqual(bits(g), bits(float(w)), (r, cols[j], g, w))
        np = numpy_or_none()
        if np is not None:
            a = np.load(io.BytesIO(body), allow_pickle=False)
            self.assertEqual(a.shape, (len(rows), len(cols)))
            self.assertEqual(a.dtype, np.dtype("<f8"))

    def test_npy_all_numeric_columns_by_default(self):
        body = self.rows_ok("awkward", 1, "npy")
        self.check_npy(body, ["id", "i", "f", "b"], AWK_ROWS)

    def test_npy_projection_offset_and_refusals(self):
        self.check_npy(self.rows_ok("awkward", 1, "npy", columns="f,b"), ["f", "b"], AWK_ROWS)
        self.check_npy(self.rows_ok("awkward", 1, "npy", columns="b,i", offset=2, limit=3), ["b", "i"], AWK_ROWS[2:5])
        self.assertError(self.rows("awkward", 1, format="npy", columns="s"), 422, "invalid")
        self.assertError(self.rows("awkward", 1, format="npy", columns="f,s"), 422, "invalid")

    def test_projection_offset_limit(self):
        # columns in the order asked
        body = self.rows_ok("awkward", 1, "csv", columns="s,id")
        self.assertEqual(body, csv_text(["s", "id"], [(r[4], r[0]) for r in AWK_ROWS]))
        body = self.rows_ok("awkward", 1, "csv", columns="f", offset=2, limit=3)
        self.assertEqual(body, csv_text(["f"], [(r[2],) for r in AWK_ROWS[2:5]]))
        self.assertEqual(self.rows_ok("awkward", 1, "csv", offset=8), csv_text(AWK_NAMES, AWK_ROWS[8:]))
        self.assertEqual(self.rows_ok("awkward", 1, "csv", columns="i", offset=10), b"i\n")
        self.assertEqual(self.rows_ok("awkward", 1, "csv", columns="i", limit=0), b"i\n")
        self.assertEqual(self.rows_ok("awkward", 1, "csv", columns="b", offset=1000000), b"b\n")
        body = self.rows_ok("awkward", 1, "jsonl", columns="b,i", offset=7, limit=2)
        self.assertEqual([json.loads(x, object_pairs_hook=list) for x in body.decode().splitlines()],
                         [[("b", r[3]), ("i", r[1])] for r in AWK_ROWS[7:9]])
        for bad in ({"columns": "zz"}, {"columns": "id,zz"}, {"columns": "id,id"}, {"columns": ""},
                    {"format": "xml"}, {"limit": "-1"}, {"offset": "x"}):
            q = dict({"format": "csv"}, **bad)
            r = self.rows("awkward", 1, **q)
            self.assertIn(r.status, (400, 422), (bad, r))
            self.assertTrue(r.header("Content-Type").startswith("application/json"), (bad, r))
        self.assertError(self.rows("awkward", 1, columns="zz"), 422, "invalid")

    def test_csv_floats_written_with_repr_come_back_byte_identical(self):
        text = ("x\n" + "".join("%r\n" % v for v in REPR_FLOATS)).encode()
        self.create("reprfloats")
        up = self.upload("reprfloats", text).json()
        self.assertEqual(up["columns"], [{"name": "x", "type": "float64"}])
        body = self.rows_ok("reprfloats", up["version"], "jsonl")
        got = [json.loads(line)["x"] for line in body.decode().splitlines()]
        self.assertEqual([bits(g) for g in got], [bits(v) for v in REPR_FLOATS], got)
        self.assertTrue(all(isinstance(g, float) for g in got),
                        "jsonl float64 must carry '.' or an exponent: %s" % body.decode())
        self.assertIn(b'{"x":-0.0}', body)
        self.assertIn(b'{"x":1.0}', body)
        _, _, values = parse_npy(self.rows_ok("reprfloats", up["version"], "npy"))
        self.assertEqual([bits(g) for g in values], [bits(v) for v in REPR_FLOATS])
        csv_body = self.rows_ok("reprfloats", up["version"], "csv")
        self.assertEqual(csv_body.decode(), text.decode(),
                         "a CSV written with repr() of floats must come back byte-identical")

    def test_offset_limit_across_row_groups(self):
        text, up = self.big, self.big_up
        self.assertEqual(up["rows"], 70000)
        self.assertEqual(up["sha256"], sha256(text))
        m = self.srv.request("GET", "/v1/datasets/big/versions/1").json()
        self.assertEqual((m["rows"], m["row_groups"]), (70000, 2))
        self.assertEqual(self.rows_ok("big", 1, "csv"), text)
        # across the boundary, just past it, at the very end, and the very first rows
        self.assertEqual(self.rows_ok("big", 1, "csv", offset=65530, limit=10),
                         b"k,x\n" + b"".join(b"%d,%r\n" % (k, k + 0.5) for k in range(65530, 65540)))
        self.assertEqual(self.rows_ok("big", 1, "csv", columns="x", offset=ROWS_PER_GROUP, limit=3),
                         b"x\n" + b"".join(b"%r\n" % (k + 0.5) for k in range(65536, 65539)))
        self.assertEqual(self.rows_ok("big", 1, "csv", columns="k", offset=69998), b"k\n69998\n69999\n")
        self.assertEqual(self.rows_ok("big", 1, "csv", columns="x", limit=2), b"x\n0.5\n1.5\n")
        d, _, values = parse_npy(self.rows_ok("big", 1, "npy", offset=65534, limit=4))
        self.assertEqual(d["shape"], (4, 2))
        self.assertEqual(values, [v for k in range(65534, 65538) for v in (float(k), k + 0.5)])

    def test_jsonl_across_row_groups(self):
        try:
            body = self.rows_ok("big", 1, "jsonl", offset=65534, limit=4)
        except (OSError, http.client.HTTPException) as e:
            try:
                self.srv.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
            log = self.srv.read_log()
            at = max(0, log.find("ERROR: AddressSanitizer"))
            self.fail("the jsonl answer broke off (%r); server exit status %s; log: %s"
                      % (e, self.srv.proc.poll(), log[at:at + 1200] if at else log[-1200:]))
        self.assertEqual([json.loads(x) for x in body.decode().splitlines()],
                         [{"k": k, "x": k + 0.5} for k in range(65534, 65538)])
        self.assertIsNone(self.srv.proc.poll(), "the server died: " + self.srv.read_log()[-3000:])

    # ---- refusals ----

    def check_refused(self, ds, body, line, column, planted=(), code="invalid"):
        r = self.upload(ds, body, expect=None)
        msg = self.assertError(r, 422, code)
        m = LINE_COL_RE.match(msg)
        self.assertIsNotNone(m, "the message does not name line and column: %r" % msg)
        self.assertEqual(int(m.group(1)), line, msg)
        if column is not None:
            self.assertEqual(int(m.group(2)), column, msg)
        for p in planted:
            self.assertNotIn(p.encode() if isinstance(p, str) else p, r.body, "the refusal echoes data")
        return msg

    def test_invalid_uploads_name_line_and_column_never_data(self):
        cols = [{"name": "id", "type": "int64"}, {"name": "name"}, {"name": "score", "type": "float64"},
                {"name": "ok", "type": "bool"}]
        self.create("strict", columns=cols)
        p = lambda: "planted-%s" % secrets.token_hex(6)  # noqa: E731
        good = 'id,name,score,ok\n1,ada,1.5,true\n2,"multi\nline",2.5,false\n'   # record 2 spans lines 3-4
        cases = []
        v1 = p()
        cases.append(("ragged-long", good + '3,%s,3.5,true,extra\n' % v1, 5, 5, [v1, "extra"]))
        v2 = p()
        cases.append(("ragged-short", good + '3,%s,3.5\n' % v2, 5, None, [v2]))
        v3 = p()
        cases.append(("bad-int", good + '%s,bob,3.5,true\n' % v3, 5, 1, [v3, "bob"]))
        cases.append(("bad-float", good + '3,bob,1e999,true\n', 5, 3, ["bob", "1e999"]))
        v5 = p()
        cases.append(("bad-bool", good + '3,bob,3.5,%s\n' % v5, 5, 4, [v5, "bob"]))
        v6 = p()
        cases.append(("bad-utf8", (good + '3,%s').encode() % v6.encode() + b"\xff\xfe-tail,3.5,true\n", 5, 2,
                      [v6, "tail"]))
        v7 = p()
        cases.append(("unterminated-quote", good + '3,"%s,3.5,true\n4,x,1,false\n' % v7, 5, 2, [v7]))
        v8 = p()
        # (planted words are not hex: request ids in the answer are)
        cases.append(("header-name", 'id,%s,score,ok\n1,adam,1.5,true\n' % v8, 1, 2, [v8, "adam"]))
        v9 = p()
        cases.append(("quote-in-field", good + '3,ab"%s,3.5,true\n' % v9, 5, 2, [v9]))
        n_failed = 0
        for tag, body, line, col, planted in cases:
            with self.subTest(case=tag):
                self.check_refused("strict", body.encode() if isinstance(body, str) else body, line, col, planted)
            n_failed += 1
        # header of another width: refused too (line 1)
        r = self.upload("strict", b"id,name\n1,x\n", expect=None)
        self.assertTrue(self.assertError(r, 422, "invalid").startswith("line 1"), r)
        n_failed += 1
        # nothing is visible, and every failed upload consumed its number
        d = self.srv.request("GET", "/v1/datasets/strict").json()
        self.assertEqual((d["latest"], d["versions"]), (None, []))
        for v in range(1, n_failed + 1):
            self.assertError(self.srv.request("GET", "/v1/datasets/strict/versions/%d" % v), 404, "not_found")
            self.assertError(self.rows("strict", v), 404, "not_found")
        self.assertError(self.srv.request("GET", "/v1/datasets/strict/versions/latest"), 404, "not_found")
        up = self.upload("strict", good.encode()).json()
        self.assertEqual(up["version"], n_failed + 1, "a failed upload's number must be consumed, never reused")
        self.assertEqual(self.rows_ok("strict", up["version"], "csv", columns="id,score,ok"),
                         b"id,score,ok\n1,1.5,true\n2,2.5,false\n")
        ids = self.dataset_id("strict")
        self.assertFalse(any(os.path.exists(os.path.join(self.dirs[0], str(ids), str(v)))
                             for v in range(1, n_failed + 1)), "a refused upload left fragments")

    def test_bad_value_after_the_first_row_group(self):
        """Types inferred from the first 65536 rows; a later value that does not fit is refused."""
        self.create("inferred")
        planted = "late-%s" % secrets.token_hex(6)
        n = ROWS_PER_GROUP + 10
        text = "a,b\n" + "".join("%d,%d\n" % (k, k) for k in range(n)) + "7,%s\n" % planted
        self.check_refused("inferred", text.encode(), n + 2, 2, [planted])
        d = self.srv.request("GET", "/v1/datasets/inferred").json()
        self.assertEqual((d["latest"], d["versions"]), (None, []))
        self.assertEqual(d["columns"], [], "a refused first upload must not fix the dataset's columns")

    def test_columns_are_fixed_by_the_first_upload(self):
        self.create("fixed")
        self.assertEqual(self.upload("fixed", b"a,b\n1,x\n").json()["version"], 1)
        d = self.srv.request("GET", "/v1/datasets/fixed").json()
        self.assertEqual([(c["name"], c.get("type")) for c in d["columns"]], [("a", "int64"), ("b", "string")])
        self.check_refused("fixed", b"a,b\n2,y\n2.5,z\n", 3, 1, [b"2.5"])
        self.check_refused("fixed", b"a,c\n1,x\n", 1, 2)
        r = self.upload("fixed", b"a,b,c\n1,x,2\n", expect=None)
        self.assertEqual(r.status, 422, r)
        self.assertTrue(r.json()["error"]["message"].startswith("line 1"), r)
        self.assertEqual(self.srv.request("GET", "/v1/datasets/fixed").json()["latest"], 1)
        self.assertEqual(self.upload("fixed", b"a,b\n3,q\n").json()["version"], 5)

    def test_content_type_and_unknown_things(self):
        self.create("ctype")
        for ct in ("application/json", "text/plain", "application/octet-stream"):
            r = self.srv.request("POST", "/v1/datasets/ctype/versions", raw=b"a\n1\n", headers={"Content-Type": ct})
            self.assertError(r, 415, "unsupported_media_type")
        r = self.srv.request("POST", "/v1/datasets/ctype/versions", raw=b"a\n1\n")
        self.assertError(r, 415, "unsupported_media_type")
        self.assertEqual(self.srv.request("GET", "/v1/datasets/ctype").json()["versions"], [])
        self.assertError(self.upload("nosuchds", b"a\n1\n", expect=None), 404, "not_found")
        for method, path in (("GET", "/v1/datasets/nosuchds"), ("GET", "/v1/datasets/nosuchds/versions/1"),
                             ("GET", "/v1/datasets/nosuchds/versions/latest/rows"),
                             ("DELETE", "/v1/datasets/nosuchds/versions/1"),
                             ("GET", "/v1/datasets/awkward/versions/999"),
                             ("GET", "/v1/datasets/awkward/versions/999/rows"),
                             ("DELETE", "/v1/datasets/awkward/versions/999"),
                             ("GET", "/v1/datasets/ctype/versions/latest")):
            self.assertError(self.srv.request(method, path), 404, "not_found")
        # creation refusals
        r = self.srv.request("POST", "/v1/datasets", body={"name": "awkward", "classification": "internal"})
        self.assertError(r, 409, "conflict")
        r = self.srv.request("POST", "/v1/datasets", body={"name": "cls1", "classification": "secret"})
        self.assertError(r, 422, "invalid")
        r = self.srv.request("POST", "/v1/datasets", body={"name": "cls2", "classification": "public", "colums": []})
        self.assertError(r, 422, "invalid")
        r = self.srv.request("POST", "/v1/datasets", body={"name": "cls3", "classification": "public",
                                                           "columns": [{"name": "a", "type": "decimal"}]})
        self.assertError(r, 422, "invalid")
        for n in ("cls1", "cls2", "cls3"):
            self.assertError(self.srv.request("GET", "/v1/datasets/" + n), 404, "not_found")

    # ---- planted values ----

    def test_planted_values_are_nowhere_at_rest(self):
        srv = self.srv
        tag = secrets.token_hex(5)
        ssn = "987-65-4321-%s" % tag
        email = "planted.%s@example.org" % tag
        ssn_bad = "987-65-4322-%s" % tag   # only in a refused upload
        control = "control-%s" % secrets.token_hex(6)   # metadata: PostgreSQL must hold it
        name = "planted-%s" % tag
        self.create(name, classification="confidential", description=control,
                    columns=[{"name": "ssn", "tags": ["pii", "id"]}, {"name": "email", "tags": ["pii"]},
                             {"name": "n"}])
        rows = ["%03d-00-%04d,person%d@example.com,%d" % (i, i, i, i) for i in range(40)]
        rows[17] = "%s,%s,17" % (ssn, email)
        text = ("ssn,email,n\n" + "\n".join(rows) + "\n").encode()
        up = self.upload(name, text).json()
        # the values are really there: read back whole
        self.assertEqual(self.rows_ok(name, up["version"], "csv"), text)
        self.assertIn(email.encode(), self.rows_ok(name, up["version"], "jsonl", columns="email"))
        r = self.upload(name, b"ssn,email,n\n1-2,a@b,1\n%s,%s\n" % (ssn_bad.encode(), email.encode()), expect=None)
        self.assertEqual(r.status, 422, r)
        # the upload's event: what was written, never values
        evs = [e for e in audit_events(srv) if e["action"] == "dataset.write" and e["status"] == 201
               and (e.get("detail") or {}).get("dataset") == name]
        self.assertEqual(len(evs), 1, evs)
        det = evs[0]["detail"]
        self.assertEqual((det.get("version"), det.get("rows"), det.get("sha256")), (up["version"], 40, sha256(text)))
        trail = srv.request("GET", "/v1/audit?format=jsonl").body
        for s in (ssn, email, ssn_bad, "person3@example.com"):
            self.assertNotIn(s.encode(), trail, "the audit trail holds a dataset value")
        # a clean stop, so PostgreSQL has written everything; then every file at rest
        self.assertEqual(srv.stop(), 0)
        try:
            planted = [s.encode() for s in (ssn, email, ssn_bad)]
            planted += [s.encode("utf-16-le") for s in (ssn, email)]
            found, scanned, frags, control_in_pg = [], 0, 0, False
            roots = [srv.tmp] + [d for d in self.dirs if not d.startswith(srv.tmp)]
            for root in roots:
                for dirpath, _, files in os.walk(root):
                    for fn in files:
                        path = os.path.join(dirpath, fn)
                        if os.path.islink(path) or not os.path.isfile(path):
                            continue
                        with open(path, "rb") as f:
                            data = f.read()
                        scanned += 1
                        frags += fn.endswith(".frag")
                        if control.encode() in data and os.sep + "pg" + os.sep in path:
                            control_in_pg = True
                        for s in planted:
                            if s in data:
                                found.append((path, s))
            self.assertGreater(frags, 0, "no fragment files were scanned")
            self.assertTrue(control_in_pg, "the scan did not see PostgreSQL's files (the description is not in them)")
            self.assertEqual(found, [], "planted values found at rest (of %d files)" % scanned)
        finally:
            srv.start()

    # ---- authorisation ----

    def test_other_owners_are_refused_and_audited(self):
        srv = self.srv
        tag = secrets.token_hex(3)
        a_name, b_name, t_name = "own-a-" + tag, "own-b-" + tag, "trainer-" + tag
        a = srv.create_principal(a_name, roles=["owner"])
        b = srv.create_principal(b_name, roles=["owner"])
        t = srv.create_principal(t_name, roles=["trainer"])
        alpha, alpha_r, beta = "alpha-" + tag, "alpha-r-" + tag, "beta-" + tag
        secret_value = "secret-%s" % secrets.token_hex(5)
        doc = self.create(alpha, token=a, columns=[{"name": "v"}, {"name": "w"}])
        self.assertEqual(doc["owner"], a_name)
        text = ("v,w\n%s,1\nother,2\n" % secret_value).encode()
        self.assertEqual(self.upload(alpha, text, token=a).json()["version"], 1)
        self.create(alpha_r, classification="restricted", token=a)
        self.upload(alpha_r, b"v,w\n%s,3\n" % secret_value.encode(), token=a)
        self.create(beta, token=b)
        # the owner reads their own
        self.assertEqual(self.rows(alpha, 1, token=a, columns="v").status, 200)
        # B: describe, read, write, delete, manage: refused, each audited as a deny
        attempts = [
            ("dataset.describe", "GET", "/v1/datasets/%s" % alpha, None, None),
            ("dataset.describe", "GET", "/v1/datasets/%s/versions/1" % alpha, None, None),
            ("dataset.describe", "GET", "/v1/datasets/%s/versions/latest" % alpha, None, None),
            ("dataset.read", "GET", "/v1/datasets/%s/versions/1/rows" % alpha, None, None),
            ("dataset.read", "GET", "/v1/datasets/%s/versions/latest/rows?format=jsonl" % alpha, None, None),
            ("dataset.write", "POST", "/v1/datasets/%s/versions" % alpha, b"v,w\nfromb,9\n", CSV),
            ("dataset.delete", "DELETE", "/v1/datasets/%s/versions/1" % alpha, None, None),
            ("dataset.manage", "PATCH", "/v1/datasets/%s" % alpha, json.dumps({"description": "b was here"}).encode(),
             {"Content-Type": "application/json"}),
        ]
        rids = []
        for action, method, path, raw, headers in attempts:
            rid = "st-deny-%s" % secrets.token_hex(6)
            h = dict(headers or {})
            h["X-Request-Id"] = rid
            r = srv.request(method, path, token=b, raw=raw, headers=h)
            with self.subTest(action=action, path=path):
                self.assertError(r, 403, "forbidden")
                self.assertNotIn(secret_value.encode(), r.body)
            rids.append((rid, action, method, path))
        evs = {e.get("request_id"): e for e in audit_events(srv)}
        for rid, action, method, path in rids:
            with self.subTest(audit=path, method=method):
                e = evs.get(rid)
                self.assertIsNotNone(e, "no audit event for the refused %s %s" % (method, path))
                self.assertEqual((e["decision"], e["status"], e["principal"], e["action"]),
                                 ("deny", 403, b_name, action), e)
                self.assertIn(alpha, e["resource"], e)
        d = srv.request("GET", "/v1/datasets/%s" % alpha, token=a).json()
        self.assertEqual((d["latest"], len(d["versions"]), d["description"]), (1, 1, ""))
        self.assertEqual(self.rows(alpha, 1, token=a, columns="v").status, 200, "B's delete must not have happened")
        # the admin holds no right on another's dataset: access is by policy, like anyone's
        self.assertError(srv.request("GET", "/v1/datasets/%s" % alpha), 403, "forbidden")
        self.assertError(self.rows(alpha, 1, columns="w"), 403, "forbidden")
        # a restricted dataset: describable by its owner; its rows leave for nobody
        self.assertEqual(srv.request("GET", "/v1/datasets/%s" % alpha_r, token=a).status, 200)
        self.assertEqual(srv.request("GET", "/v1/datasets/%s/versions/1" % alpha_r, token=a).status, 200)
        for who, tok in (("owner", a), ("admin", "admin"), ("other", b)):
            for fmt in ("csv", "jsonl", "npy"):
                rid = "st-restricted-%s" % secrets.token_hex(6)
                r = srv.request("GET", "/v1/datasets/%s/versions/1/rows?format=%s" % (alpha_r, fmt), token=tok,
                                headers={"X-Request-Id": rid})
                with self.subTest(restricted=who, fmt=fmt):
                    self.assertError(r, 403, "forbidden")
                    self.assertNotIn(secret_value.encode(), r.body)
                    if fmt == "csv":
                        ev = event_for(srv, rid)
                        self.assertEqual(len(ev), 1)
                        self.assertEqual((ev[0]["decision"], ev[0]["status"]), ("deny", 403))
        # lists: a non-admin sees their own only
        def names(tok):
            r = srv.request("GET", "/v1/datasets?limit=1000", token=tok)
            self.assertEqual(r.status, 200, r)
            return {d["name"] for d in r.json()["items"]}
        self.assertEqual(names(a), {alpha, alpha_r})
        self.assertEqual(names(b), {beta})
        self.assertEqual(names(t), set())
        self.assertIn("awkward", names("admin"))
        self.assertFalse({alpha, alpha_r, beta} & names("admin"))
        # a principal without the owner role creates nothing
        r = srv.request("POST", "/v1/datasets", token=t, body={"name": "t-" + tag, "classification": "public"})
        self.assertError(r, 403, "forbidden")


# ---- damage, parity 1 over 3 directories ----

class DamageParity1Test(StoreCase):
    storage_dirs = 3
    parity = 1

    def test_damaged_fragments_read_identical_and_scrub_repairs(self):
        self.create("dmg1")      # one column: v1 deleted, v2 flipped, v4 truncated, v5 replayed
        self.create("dmg2")      # two columns: v1 with two chunk files swapped
        one = lambda n: ("s\n" + "".join("row-%d-%s\n" % (k, "x" * (k % 13)) for k in range(n))).encode()  # noqa
        texts1 = {v: one(200 + 17 * v) for v in (1, 2, 3, 4)}
        for v in (1, 2, 3, 4):
            self.assertEqual(self.upload("dmg1", texts1[v]).json()["version"], v)
        text2 = ("a,b\n" + "".join("%d,val-%d\n" % (k, k * k) for k in range(300))).encode()
        self.assertEqual(self.upload("dmg2", text2).json()["version"], 1)
        i1, i2 = self.dataset_id("dmg1"), self.dataset_id("dmg2")
        original = snapshot(self.dirs)
        self.assertEqual(len(original), 3 * (4 + 2), sorted(original))
        rebuilt0, failures0 = self.rebuilt(), self.read_failures()
        self.assertIsNotNone(rebuilt0)
        self.assertIsNotNone(failures0)

        # (a) a fragment deleted
        os.unlink(self.frag(0, i1, 1, 0, 0))
        # (b) a byte flipped
        flip_byte(self.frag(1, i1, 2, 0, 0))
        # (c) two chunk files swapped within one directory
        p0, p1 = self.frag(2, i2, 1, 0, 0), self.frag(2, i2, 1, 0, 1)
        tmp = p0 + ".swap"
        os.rename(p0, tmp)
        os.rename(p1, p0)
        os.rename(tmp, p1)
        # (d) truncated
        p = self.frag(0, i1, 4, 0, 0)
        os.truncate(p, os.path.getsize(p) // 2)
        # (e) a fragment of another version put in place of this one's (replayed)
        shutil.copyfile(self.frag(1, i1, 1, 0, 0), self.frag(1, i1, 3, 0, 0))

        expect_rebuilt = {("dmg1", 1): 1, ("dmg1", 2): 1, ("dmg2", 1): 2, ("dmg1", 4): 1, ("dmg1", 3): 1}
        for (ds, v), n in expect_rebuilt.items():
            before = self.rebuilt()
            want = texts1[v] if ds == "dmg1" else text2
            with self.subTest(damaged=(ds, v)):
                self.assertEqual(self.rows_ok(ds, v, "csv"), want)
                self.assertEqual(self.rebuilt() - before, n, "fragments rebuilt by this read")
        self.assertEqual(self.read_failures(), failures0)

        s = self.scrub()
        self.assertEqual((s["versions"], s["chunks"], s["fragments_repaired"], s["chunks_unrecoverable"]),
                         (5, 6, 6, 0), s)
        got = sorted((it["dataset_id"], it["version"], it["row_group"], it["column"],
                      tuple(it.get("repaired_directories", ()))) for it in s["items"])
        self.assertEqual(got, sorted([(i1, 1, 0, 0, (0,)), (i1, 2, 0, 0, (1,)), (i2, 1, 0, 0, (2,)),
                                      (i2, 1, 0, 1, (2,)), (i1, 4, 0, 0, (0,)), (i1, 3, 0, 0, (1,))]))
        # every fragment is back, byte for byte
        after = snapshot(self.dirs)
        self.assertEqual(sorted(after), sorted(original))
        for k in original:
            self.assertEqual(after[k], original[k], "fragment %s differs from the original after the scrub" % (k,))
        s2 = self.scrub()
        self.assertEqual((s2["fragments_repaired"], s2["chunks_unrecoverable"]), (0, 0), s2)
        # an intact read rebuilds nothing; a different directory lost now is survivable
        before = self.rebuilt()
        self.assertEqual(self.rows_ok("dmg1", 2, "csv"), texts1[2])
        self.assertEqual(self.rebuilt(), before)
        os.unlink(self.frag(2, i1, 1, 0, 0))
        os.unlink(self.frag(0, i2, 1, 0, 0))
        os.unlink(self.frag(1, i2, 1, 0, 1))
        self.assertEqual(self.rows_ok("dmg1", 1, "csv"), texts1[1])
        self.assertEqual(self.rows_ok("dmg2", 1, "csv"), text2)
        self.assertEqual(self.read_failures(), failures0)


# ---- no parity: damage is a clean failure ----

class DamageParity0Test(StoreCase):

    def test_damage_without_parity_fails_cleanly(self):
        self.create("p0")
        text = ("s\n" + "".join("secretish-%d\n" % k for k in range(100))).encode()
        self.upload("p0", text)
        self.upload("p0", text)
        ds = self.dataset_id("p0")
        failures0 = self.read_failures()
        flip_byte(self.frag(0, ds, 1, 0, 0))
        os.unlink(self.frag(0, ds, 2, 0, 0))
        for v in (1, 2):
            for fmt in ("csv", "jsonl"):
                rid = "st-p0-%s" % secrets.token_hex(6)
                r = self.srv.request("GET", "/v1/datasets/p0/versions/%d/rows?format=%s" % (v, fmt),
                                     headers={"X-Request-Id": rid})
                with self.subTest(version=v, fmt=fmt):
                    self.assertError(r, 503, "unavailable")
                    self.assertNotIn(b"secretish", r.body)
                    ev = event_for(self.srv, rid)
                    self.assertEqual(len(ev), 1, ev)
                    self.assertEqual((ev[0]["status"], ev[0]["decision"]), (503, "error"), ev)
        self.assertEqual(self.read_failures() - failures0, 4)
        # describing still works; the scrub says what is lost and repairs nothing
        self.assertEqual(self.srv.request("GET", "/v1/datasets/p0/versions/1").status, 200)
        s = self.scrub()
        self.assertEqual(s["fragments_repaired"], 0, s)
        mine = [it for it in s["items"] if it["dataset_id"] == ds]
        self.assertEqual(sorted((it["version"], it["row_group"], it["column"]) for it in mine),
                         [(1, 0, 0), (2, 0, 0)], s)
        self.assertGreaterEqual(s["chunks_unrecoverable"], 2, s)
        for it in mine:
            self.assertIn("error", it)
            self.assertNotIn("secretish", json.dumps(it))

    def test_damage_in_a_later_row_group_stops_the_stream_visibly(self):
        """The answer has begun as 200: it must not end as if complete."""
        self.create("p0big")
        n = ROWS_PER_GROUP + 500
        text = ("k\n" + "".join("%d\n" % k for k in range(n))).encode()
        self.upload("p0big", text)
        ds = self.dataset_id("p0big")
        flip_byte(self.frag(0, ds, 1, 1, 0))
        rid = "st-p0big-%s" % secrets.token_hex(6)
        conn = self.srv.connect(timeout=60)
        complete, body = None, b""
        try:
            conn.request("GET", "/v1/datasets/p0big/versions/1/rows?format=csv",
                         headers={"Authorization": "Bearer " + self.srv.admin_token, "X-Request-Id": rid})
            resp = conn.getresponse()
            status = resp.status
            try:
                body = resp.read()
                complete = True
            except (http.client.IncompleteRead, OSError, http.client.HTTPException):
                complete = False
        finally:
            conn.close()
        if status == 200:
            self.assertFalse(complete, "a stream that could not be read to its end ended as if complete "
                                       "(%d of %d bytes)" % (len(body), len(text)))
        else:
            self.assertEqual(status, 503)
        # the trail says the answer failed (the event of its 200 beginning may precede it)
        ev = event_for(self.srv, rid)
        self.assertIn((503, "error"), [(e["status"], e["decision"]) for e in ev], ev)
        self.assertIsNone(self.srv.proc.poll(), "the server died")


# ---- parity 2 over 6 directories: any two directories may be lost ----

class Parity2Test(StoreCase):
    storage_dirs = 6
    parity = 2

    def test_two_directories_lost_then_restored_by_scrub(self):
        self.create("p2")
        texts = {}
        for v in (1, 2):
            texts[v] = ("name,n\n" + "".join("n%d-%d-%s,%d\n" % (v, k, "y" * (k % 7), k * v)
                                               for k in range(300 * v))).encode()
            self.assertEqual(self.upload("p2", texts[v]).json()["version"], v)
        original = snapshot(self.dirs)
        self.assertEqual(len(original), 6 * 2 * 2)
        for pair in ((0, 1), (2, 5), (4, 5)):
            with self.subTest(lost=pair):
                for d in pair:
                    shutil.rmtree(self.dirs[d])
                for v in (1, 2):
                    self.assertEqual(self.rows_ok("p2", v, "csv"), texts[v], "directories %s lost" % (pair,))
                # the scrub makes the lost directories anew, byte for byte: the next pair can go
                s = self.scrub()
                self.assertEqual((s["versions"], s["chunks"], s["fragments_repaired"], s["chunks_unrecoverable"]),
                                 (2, 4, 8, 0), s)
                after = snapshot(self.dirs)
                self.assertEqual(sorted(after), sorted(original))
                self.assertTrue(all(after[k] == original[k] for k in original), "restored fragments differ")
        # three directories lost is beyond parity: a clean 503, never wrong data
        for d in (1, 2, 3):
            shutil.rmtree(self.dirs[d])
        self.assertError(self.rows("p2", 1, format="csv"), 503, "unavailable")


# ---- kill -9 during uploads ----

class KillNineTest(StoreCase):

    def test_acknowledged_uploads_survive_kill_9(self):
        srv = self.srv
        self.create("crash", columns=[{"name": "k", "type": "int64"}])
        ds_id = self.dataset_id("crash")
        n_uploads, n_rows = 20, ROWS_PER_GROUP + 400  # two row groups: a kill can land between them
        texts = [("k\n" + "".join("%d\n" % (a * 10000000 + j) for j in range(n_rows))).encode()
                 for a in range(n_uploads)]
        outcome = {}
        lock = threading.Lock()
        up = threading.Event()
        up.set()
        started = [0]
        rnd = random.Random(os.environ.get("SLUICE_TEST_SEED") or secrets.randbits(32))

        # each body is sent chunked in two pieces with a pause after the first row group,
        # whose fragments are then on disk while the version is not yet live
        split = [len(b"k\n") + sum(len(b"%d\n" % (a * 10000000 + j)) for j in range(ROWS_PER_GROUP + 100))
                 for a in range(n_uploads)]
        pauses = [rnd.uniform(0.1, 0.6) for _ in range(n_uploads)]

        def post(a):
            conn = srv.connect(timeout=60)

            def pieces():
                yield texts[a][:split[a]]
                time.sleep(pauses[a])
                yield texts[a][split[a]:]
            try:
                conn.request("POST", "/v1/datasets/crash/versions", body=pieces(), encode_chunked=True,
                             headers={"Authorization": "Bearer " + srv.admin_token, "Content-Type": "text/csv"})
                r = conn.getresponse()
                body = r.read()
                return ("status", r.status, json.loads(body) if r.status == 201 else body[:200])
            except (OSError, http.client.HTTPException) as e:
                return ("lost", type(e).__name__, None)
            finally:
                conn.close()

        def uploader(indices):
            for a in indices:
                up.wait(120)
                with lock:
                    started[0] += 1
                res = post(a)
                with lock:
                    outcome[a] = res

        threads = [threading.Thread(target=uploader, args=(range(t, n_uploads, 2),)) for t in range(2)]
        for t in threads:
            t.start()

        def partial_on_disk():
            """An upload whose first row group is on disk and that is not live yet."""
            out = srv.psql("SELECT version FROM dataset_versions WHERE dataset_id = %d AND state = 'uploading'"
                           % ds_id)
            return any(os.path.exists(self.frag(0, ds_id, int(v), 0, 0)) for v in out.split())

        kills, hit_partial = 0, False
        try:
            for k in range(3):
                if k == 0:
                    # the first kill lands while an upload has fragments on disk
                    hit_partial = poll(partial_on_disk, 30, 0.02)
                else:
                    target = min(n_uploads, started[0] + 1 + rnd.randrange(3))
                    poll(lambda: started[0] >= target or not any(t.is_alive() for t in threads), 120, 0.01)
                    time.sleep(rnd.uniform(0.0, 1.2))
                up.clear()
                srv.stop(sig=signal.SIGKILL)
                kills += 1
                # the gateway's cluster outlives it (as test_resilience and harness.close know)
                if os.path.exists(os.path.join(srv.dir, "pg", "data", "postmaster.pid")):
                    srv.pg_ctl("stop")
                srv.start()
                up.set()
        finally:
            up.set()
            for t in threads:
                t.join(300)
        self.assertEqual(kills, 3)
        self.assertTrue(hit_partial, "no kill landed while an upload had fragments on disk")
        self.assertEqual(len(outcome), n_uploads)
        acked = {a: res[2]["version"] for a, res in outcome.items() if res[0] == "status" and res[1] == 201}
        other = {a: res for a, res in outcome.items() if a not in acked}
        for a, res in other.items():
            self.assertTrue(res[0] == "lost" or res[1] == 503, "upload %d: %r" % (a, res))
        self.assertGreater(len(acked), 0)
        # acknowledged versions: distinct numbers, increasing per uploader
        self.assertEqual(len(set(acked.values())), len(acked))
        for t in range(2):
            seq = [acked[a] for a in range(t, n_uploads, 2) if a in acked]
            self.assertEqual(seq, sorted(seq))

        # the last start's recovery has run: what is live now is what must read back
        d = srv.request("GET", "/v1/datasets/crash").json()
        live = {v["version"]: v for v in d["versions"]}
        for a, v in acked.items():
            self.assertIn(v, live, "acknowledged upload %d (version %d) is not live" % (a, v))
            self.assertEqual(live[v]["sha256"], sha256(texts[a]))
            self.assertEqual(live[v]["rows"], n_rows)
        by_sha = {sha256(texts[a]): a for a in range(n_uploads)}
        for v, doc in live.items():
            self.assertIn(doc["sha256"], by_sha, "version %d is not any upload" % v)
            a = by_sha[doc["sha256"]]
            # acknowledged as this version, or its answer lost in a kill; never one refused
            self.assertTrue(acked.get(a) == v or (a in other and other[a][0] == "lost"),
                            "version %d holds upload %d, answered %r" % (v, a, outcome[a][:2]))
        self.assertEqual(len({doc["sha256"] for doc in live.values()}), len(live), "an upload is live twice")

        def fetch(v):
            return v, self.rows("crash", v, format="csv")
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            for v, r in ex.map(fetch, sorted(live)):
                a = by_sha[live[v]["sha256"]]
                self.assertEqual(r.status, 200, (v, r))
                self.assertTrue(r.body == texts[a], "version %d does not read back intact" % v)
        # nothing left of interrupted uploads
        self.assertEqual(srv.psql("SELECT count(*) FROM dataset_versions WHERE state = 'uploading'"), "0")
        on_disk = set()
        for root, dirs, files in os.walk(self.dirs[0]):
            for fn in files:
                self.assertFalse(fn.endswith(".tmp"), os.path.join(root, fn))
        ds_dir = os.path.join(self.dirs[0], str(ds_id))
        if os.path.isdir(ds_dir):
            on_disk = {int(x) for x in os.listdir(ds_dir)}
        self.assertEqual(on_disk - set(live), set(), "version directories of versions that are not live")
        self.assertEqual(set(live) - on_disk, set())
        # every acknowledged upload has its event
        evs = [e for e in audit_events(srv) if e["action"] == "dataset.write" and e["status"] == 201]
        written = {(e["detail"].get("version"), e["detail"].get("sha256")) for e in evs}
        for a, v in acked.items():
            self.assertIn((v, sha256(texts[a])), written)
        # numbers are not reused after the crashes
        nxt = self.upload("crash", texts[0]).json()["version"]
        self.assertGreater(nxt, max(live) if live else 0)


# ---- master keys and crypto-shredding ----

class KeysTest(StoreCase):

    def master_files(self):
        return sorted(f for f in os.listdir(os.path.join(self.srv.dir, "keys")) if f.startswith("master."))

    def test_rotation_keeps_data_and_retires_the_old_key(self):
        self.create("rot")
        texts = {v: ("a\n" + "".join("r%d-%d\n" % (v, k) for k in range(50 * v))).encode() for v in (1, 2)}
        for v in (1, 2):
            self.upload("rot", texts[v])
        before = self.master_files()
        self.assertEqual(len(before), 1, before)
        m0 = int(before[0].split(".")[1])
        live = int(self.srv.psql("SELECT count(*) FROM dataset_versions WHERE state = 'live'"))
        r = self.srv.request("POST", "/v1/keys/rotate")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"master_key_version": m0 + 1, "rewrapped": live})
        self.assertTrue(poll(lambda: self.master_files() == ["master.%d.key" % (m0 + 1)], 10),
                        "keys/ holds %s after rotating to %d" % (self.master_files(), m0 + 1))
        for v in (1, 2):
            self.assertEqual(self.rows_ok("rot", v, "csv"), texts[v])
        # an upload under the new key, then a restart: everything reads back
        texts[3] = b"a\nafter-rotation\n"
        self.assertEqual(self.upload("rot", texts[3]).json()["version"], 3)
        self.restart()
        self.assertEqual(self.master_files(), ["master.%d.key" % (m0 + 1)])
        for v in (1, 3):
            self.assertEqual(self.rows_ok("rot", v, "csv"), texts[v])
        # again: the key made by the last rotation is retired in turn
        r = self.srv.request("POST", "/v1/keys/rotate")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["master_key_version"], m0 + 2)
        self.assertTrue(poll(lambda: self.master_files() == ["master.%d.key" % (m0 + 2)], 10), self.master_files())
        self.assertEqual(self.rows_ok("rot", 2, "csv"), texts[2])
        # tokens still work (the token key was rewrapped too), also after a restart
        self.restart()
        self.assertEqual(self.srv.request("GET", "/v1/whoami").status, 200)
        self.assertEqual(self.rows_ok("rot", 3, "csv"), texts[3])

    def test_shredded_version_stays_unreadable_with_its_fragments_back(self):
        srv = self.srv
        self.create("shred")
        texts = {v: ("s\n" + "".join("shred-v%d-%d\n" % (v, k) for k in range(80))).encode() for v in (1, 2)}
        for v in (1, 2):
            self.assertEqual(self.upload("shred", texts[v]).json()["version"], v)
        ds = self.dataset_id("shred")
        vdir = os.path.join(self.dirs[0], str(ds), "1")
        copy = os.path.join(srv.tmp, "shred-copy")
        shutil.copytree(vdir, copy)
        self.assertTrue(os.listdir(copy))
        rid = "st-shred-%s" % secrets.token_hex(6)
        r = srv.request("DELETE", "/v1/datasets/shred/versions/1", headers={"X-Request-Id": rid})
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.body, b"")
        ev = event_for(srv, rid)
        self.assertEqual(len(ev), 1, ev)
        self.assertEqual((ev[0]["action"], ev[0]["decision"], ev[0]["status"]), ("dataset.delete", "allow", 204))
        self.assertIs(ev[0]["detail"]["shred"]["key_destroyed"], True, ev[0])
        self.assertEqual(srv.psql("SELECT state, wrapped_key IS NULL FROM dataset_versions "
                                  "WHERE dataset_id = %d AND version = 1" % ds), "shredded|t")
        self.assertTrue(poll(lambda: not os.path.exists(vdir), 10), "the shredded version's fragments remain")

        def gone():
            self.assertError(srv.request("GET", "/v1/datasets/shred/versions/1"), 404, "not_found")
            for fmt in ("csv", "npy"):
                r = self.rows("shred", 1, format=fmt)
                self.assertError(r, 404, "not_found")
                self.assertNotIn(b"shred-v1", r.body)
            d = srv.request("GET", "/v1/datasets/shred").json()
            self.assertEqual([v["version"] for v in d["versions"]], [2])
            self.assertEqual(d["latest"], 2)
        gone()
        self.assertEqual(self.rows_ok("shred", 2, "csv"), texts[2])
        # the fragments put back (as the server's user): still gone, a scrub does not bring it back
        shutil.copytree(copy, vdir)
        if os.geteuid() == 0:
            uid, gid = sluice_user()
            for p in [vdir] + [os.path.join(vdir, f) for f in os.listdir(vdir)]:
                os.chown(p, uid, gid)
        gone()
        s = self.scrub()
        self.assertFalse([it for it in s["items"] if it["dataset_id"] == ds and it["version"] == 1], s)
        gone()
        self.assertError(srv.request("DELETE", "/v1/datasets/shred/versions/1"), 404, "not_found")
        # a restart removes what is not live
        self.restart()
        gone()
        self.assertFalse(os.path.exists(vdir), "fragments of a shredded version survive a restart")
        self.assertEqual(self.rows_ok("shred", "latest", "csv"), texts[2])
        # its number is never given again
        self.assertEqual(self.upload("shred", texts[1]).json()["version"], 3)


if __name__ == "__main__":
    unittest.main()
