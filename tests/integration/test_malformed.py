"""
tests/integration/test_malformed.py: several hundred malformed requests against one real
gateway, each of which must get a 4xx answer with the API's JSON error shape (a 413 or
431 from the HTTP layer may be bare), be audited exactly once, and leave the server up.

The cases are generated: bad JSON (truncated, trailing garbage, NaN, comments, single
quotes, 10 000-deep nesting, huge numbers, duplicate keys, bad escapes), invalid UTF-8 in
bodies and paths, a wrong type for every field of POST /v1/principals, PATCH
/v1/principals/{name} and POST /v1/principals/{name}/tokens, unknown fields (422), wrong
Content-Type (415), bodies over 1 MiB (413, with Content-Length and chunked), huge
headers (431/413), traversal and odd names in paths, unknown paths (404), wrong methods
(405 with Allow), bad query values (422), bodies on endpoints that take none, and broken
credentials (401). Everything goes over a raw TLS socket so that the bytes are exactly
the ones meant.

Separate tests: a planted secret-like value is never echoed in an error nor written to
the trail; a bad X-Request-Id is replaced by a generated one; a NUL (%00) in a path name
never aliases another principal; errors produced by the HTTP layer itself; and at the
end, the trail verifies.

Run: SLUICE_BIN=.../bin/sluice /usr/bin/python3 -m unittest -v test_malformed
"""
import collections
import json
import os
import re
import secrets
import socket
import ssl
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, ServerCase, header_of  # noqa: E402


MIB = 1024 * 1024
MAX_TTL = 365 * 86400  # the default --max-token-ttl-days
PLANTED = "SECRET-PLANTED-12345"
PLANTED_BARE = "SECRETPLANTED12345"  # the same, as a bare JSON token
# what must never come back: the values, and pieces of them
FRAGMENTS = (PLANTED, PLANTED_BARE, "PLANTED", "123456789e99999")
CODES = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
         405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
         422: "invalid", 423: "locked", 429: "rate_limited", 431: "headers_too_large"}


# ---- a raw HTTP/1.1 client over TLS ----

class RawResponse:
    def __init__(self, status, reason, headers, body, complete):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.complete = complete

    def header(self, name):
        return header_of(self.headers, name)

    def __repr__(self):
        return "RawResponse(%s, %r)" % (self.status, self.body[:200])


def _parse(buf, eof):
    """A response parsed from buf, or None when more bytes are needed."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buf[:end].decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3}) ?(.*)$", lines[0])
    if not m:
        return RawResponse(None, lines[0], [], buf, True)
    headers = []
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.append((k.strip(), v.strip()))
    resp = RawResponse(int(m.group(1)), m.group(2), headers, b"", False)
    rest = buf[end + 4:]
    te = (resp.header("Transfer-Encoding") or "").lower()
    cl = resp.header("Content-Length")
    if "chunked" in te:
        body, pos = b"", 0
        while True:
            nl = rest.find(b"\r\n", pos)
            if nl < 0:
                break
            size = int(rest[pos:nl].split(b";")[0] or b"0", 16)
            if size == 0:
                resp.body, resp.complete = body, True
                return resp
            if len(rest) < nl + 2 + size + 2:
                break
            body += rest[nl + 2:nl + 2 + size]
            pos = nl + 2 + size + 2
        if eof:
            resp.body = body
            return resp
        return None
    if cl is not None and cl.isdigit():
        n = int(cl)
        if len(rest) >= n:
            resp.body, resp.complete = rest[:n], True
            return resp
        if eof:
            resp.body = rest
            return resp
        return None
    if eof:
        resp.body, resp.complete = rest, True
        return resp
    return None


def raw_exchange(srv, data, timeout=20):
    """Sends data as it is, reads one response; None when the server answered nothing."""
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=timeout)
    s = srv.ctx.wrap_socket(sock, server_hostname="127.0.0.1")
    buf = b""
    try:
        try:
            s.sendall(data)
        except (OSError, ssl.SSLError):
            pass  # the server may answer (413, 431) and close before taking everything
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                r = _parse(buf, False)
                if r is not None:
                    return r
        except (OSError, ssl.SSLError):
            pass
        return _parse(buf, True)
    finally:
        try:
            s.close()
        except OSError:
            pass


def build(method, path, headers=(), body=None, chunked=False, content_length=True):
    """Request bytes. path and header values may be bytes (sent as they are)."""
    if isinstance(path, str):
        path = path.encode()
    if isinstance(method, str):
        method = method.encode()
    out = [method + b" " + path + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    for k, v in headers:
        out.append((k.encode() if isinstance(k, str) else k) + b": " + (v.encode() if isinstance(v, str) else v))
    payload = b""
    if body is not None:
        if isinstance(body, str):
            body = body.encode()
        if chunked:
            out.append(b"Transfer-Encoding: chunked")
            step = 256 * 1024
            for i in range(0, len(body), step):
                part = body[i:i + step]
                payload += b"%x\r\n" % len(part) + part + b"\r\n"
            payload += b"0\r\n\r\n"
        else:
            if content_length:
                out.append(b"Content-Length: %d" % len(body))
            payload = body
    return b"\r\n".join(out) + b"\r\n\r\n" + payload


Case = collections.namedtuple("Case", "name method path headers body expect chunked auth ctype")


JSON_CT = "application/json"


def case(name, method, path, body=None, expect=(400,), headers=(), chunked=False, auth="admin", ctype=JSON_CT):
    """body: dict/list (JSON-encoded), str/bytes (sent as they are) or None."""
    if isinstance(expect, int):
        expect = (expect,)
    return Case(name, method, path, list(headers), body, frozenset(expect), chunked, auth, ctype)


def json_bytes(v):
    return json.dumps(v, ensure_ascii=False).encode("utf-8")


# ---- the generated cases ----

BAD_JSON = [
    # truncated
    "{", '{"name"', '{"name":', '{"name": "x"', '{"name": "x", ', '{"roles": ["a", ', '{"attributes": {"k": "v"',
    '{"name": "unterminated', '{"disabled": tru', '{"ttl_seconds": 12e',
    # trailing garbage
    '{"name": "x"} xyz', "{}{}", '{"name": "x"},', "{} []", '{"name": "x"}\x00', "{}]", '{"a": 1}}',
    # not JSON numbers
    '{"ttl_seconds": NaN}', '{"ttl_seconds": Infinity}', '{"ttl_seconds": -Infinity}', '{"ttl_seconds": 0x10}',
    '{"ttl_seconds": 01}', '{"ttl_seconds": +1}', '{"ttl_seconds": .5}', '{"ttl_seconds": 1.}',
    # comments, single quotes, bare words
    '{/* c */ "name": "x"}', '{"name": "x"} // c', '# c\n{}', "{'name': 'x'}", '{"name": \'x\'}', "{name: \"x\"}",
    '{"disabled": True}', '{"disabled": undefined}',
    # huge numbers
    '{"ttl_seconds": 1e999}', '{"ttl_seconds": -1e999}', '{"ttl_seconds": 99999999999999999999999999999}',
    '{"ttl_seconds": ' + "9" * 5000 + "}",
    # bad strings
    '{"name": "a\\x41"}', '{"name": "\\ud800"}', '{"name": "\\udc00\\ud800"}', '{"name": "a\\u00"}',
    '{"name": "a\tb"}', '{"name": "a\nb"}', '{"name": "a\\u0000b"}', '{"attributes": {"k": "v\\u0000"}}',
    '{"attributes": {"k\\u0000": "v"}}',
    # not an object, empty
    "", " ", "\n\n", "null", "[]", '"string"', "123", "true", '[{"name": "x"}]',
    # duplicate keys, BOM
    '{"name": "a", "name": "b"}', '{"roles": [], "roles": []}', "\ufeff{}",
    # depth
    "[" * 10000 + "]" * 10000, '{"a":' * 10000 + "1" + "}" * 10000, '{"attributes": ' + "[" * 10000 + "]" * 10000 + "}",
    '{"attributes": {"k": ' + "[" * 20 + "]" * 20 + "}}", "[" * 10000,
]

BAD_UTF8 = [
    b'{"name": "\xff"}', b'{"name": "\xc0\xaf"}', b'{"name": "\xed\xa0\x80"}', b'{"name": "\xe2\x82"}',
    b'{"name": "\xf8\x88\x80\x80\x80"}', b'{"name": "\xf4\x90\x80\x80"}', b'{"attributes": {"k": "\x80"}}',
    b'{"\xfe": 1}', b'\xff{"name": "x"}',
]

GENERIC_BAD = [None, True, False, 0, 1, -1, 1.5, "", "str", [], {}, [1], {"a": 1}]


def principal_create_cases(uniq):
    cases = []

    def base(**over):
        b = {"name": uniq(), "kind": "user", "roles": ["trainer"], "attributes": {"team": "x"}, "ttl_seconds": 3600}
        b.update(over)
        return b

    bad = {
        "name": [v for v in GENERIC_BAD if v != "str"] + [
            "A", "Abc", "1abc", "-a", "_a", ".a", "a" * 64, "a b", "a/b", "../etc", "..", "é", "a\u2028", "ab\t", "a$",
            "a:b", "ab\\c", "a" * 5000],
        "kind": [v for v in GENERIC_BAD] + ["admin", "USER", "User", " user", ["user"]],
        "roles": [v for v in GENERIC_BAD if v != []] + [
            "trainer", [None], [""], ["Trainer"], ["a", "a"], [[]], [{}], ["r%d" % i for i in range(33)], ["a" * 64],
            ["admin", 1], ["has space"]],
        "attributes": [v for v in GENERIC_BAD if v != {}] + [
            ["a"], {"k": None}, {"k": ""}, {"k": True}, {"k": {}}, {"k": []}, {"K": "v"}, {"1k": "v"},
            {"k": "x" * 257}, {"k%d" % i: "v" for i in range(33)}, {"": "v"}, {"k k": "v"}, {"k": 1.5}],
        "ttl_seconds": [True, False, "3600", "", 0, -1, 1.5, [], {}, [3600], 2 ** 53, MAX_TTL + 1, -2 ** 63],
    }
    for field, values in bad.items():
        for i, v in enumerate(values):
            cases.append(case("create %s=%r" % (field, v if len(repr(v)) < 40 else repr(v)[:40]), "POST",
                              "/v1/principals", base(**{field: v}), 422))
    # a NUL in a string: the JSON parser refuses it (400) or the validation does (422)
    cases.append(case("create kind with NUL", "POST", "/v1/principals", base(kind="service\u0000"), (400, 422)))
    # missing the required name
    b = base()
    del b["name"]
    cases.append(case("create without name", "POST", "/v1/principals", b, 422))
    cases.append(case("create {}", "POST", "/v1/principals", {}, 422))
    # too big integers are refused by the JSON parser (400) or the validation (422)
    cases.append(case("create ttl 2^64", "POST", "/v1/principals", '{"name": "%s", "ttl_seconds": 18446744073709551616}' % uniq(), (400, 422)))
    # unknown fields
    for extra in ({"extra": 1}, {"Name": "x"}, {"password": "x"}, {"token": "slc_0000000000000000_" + "0" * 64},
                  {"role": "admin"}, {"disabled": False}, {"": 1}, {"ttl": 5}, {"name ": "x"}, {"attributes ": {}},
                  {"__proto__": {}}, {"expires_at": "2030-01-01T00:00:00Z"}):
            b = base()
            b.update(extra)
            cases.append(case("create unknown %r" % sorted(extra)[0], "POST", "/v1/principals", b, 422))
    cases.append(case("create misspelled name", "POST", "/v1/principals", {"nme": uniq()}, 422))
    return cases


def principal_patch_cases(target):
    path = "/v1/principals/" + target
    cases = []
    bad = {
        "roles": [v for v in GENERIC_BAD if v != []] + ["trainer", [None], [""], ["Trainer"], ["a", "a"], [[]],
                                                        ["r%d" % i for i in range(33)]],
        "attributes": [v for v in GENERIC_BAD if v != {}] + [{"k": None}, {"k": ""}, {"k": 1}, {"K": "v"},
                                                             {"k": "x" * 257}, {"k%d" % i: "v" for i in range(33)}],
        "disabled": [None, 0, 1, "true", "false", "", [], {}, [True], 1.5, "yes"],
    }
    for field, values in bad.items():
        for v in values:
            cases.append(case("patch %s=%r" % (field, v if len(repr(v)) < 40 else repr(v)[:40]), "PATCH", path, {field: v}, 422))
            # a valid field next to an invalid one changes nothing either
            cases.append(case("patch disabled+%s=%r" % (field, repr(v)[:40]), "PATCH", path,
                              {"disabled": True, field: v} if field != "disabled" else {"roles": ["owner"], field: v}, 422))
    cases.append(case("patch {}", "PATCH", path, {}, 422))
    for extra in ({"name": "x"}, {"kind": "user"}, {"ttl_seconds": 5}, {"Roles": []}, {"disable": True},
                  {"disabled": True, "extra": 1}, {"roles": ["owner"], "token": "x"}):
        cases.append(case("patch unknown %r" % sorted(extra), "PATCH", path, extra, 422))
    return cases


def token_create_cases(target):
    path = "/v1/principals/%s/tokens" % target
    cases = []
    for v in [True, False, "3600", "", 0, -1, 1.5, [], {}, [60], 2 ** 53, MAX_TTL + 1]:
        cases.append(case("token ttl=%r" % (v,), "POST", path, {"ttl_seconds": v}, 422))
    for extra in ({"ttl": 60}, {"expires_at": "2030-01-01T00:00:00Z"}, {"ttl_seconds": 60, "x": 1}, {"name": target},
                  {"roles": ["admin"]}):
        cases.append(case("token unknown %r" % sorted(extra), "POST", path, extra, 422))
    return cases


def body_endpoints(target):
    return [("POST", "/v1/principals"), ("PATCH", "/v1/principals/" + target), ("POST", "/v1/principals/%s/tokens" % target)]


def syntax_cases(target):
    cases = []
    for method, path in body_endpoints(target):
        for i, text in enumerate(BAD_JSON):
            if text == "" and path.endswith("/tokens"):
                continue  # no body at all is valid for token creation
            cases.append(case("%s %s bad json #%d %r" % (method, path, i, text[:30]), method, path, text, 400))
        for i, raw in enumerate(BAD_UTF8):
            cases.append(case("%s %s bad utf-8 #%d" % (method, path, i), method, path, raw, 400))
    return cases


def media_cases(target, uniq):
    cases = []
    for ct in ("text/plain", "application/xml", "application/jsonx", "application/x-www-form-urlencoded",
               "multipart/form-data; boundary=x", "json", "text/json", "application/json-patch+json", "*/*", "",
               "application/javascript", "text/csv"):
        for method, path in body_endpoints(target):
            body = {"name": uniq(), "roles": []} if path == "/v1/principals" else (
                {"disabled": False} if method == "PATCH" else {"ttl_seconds": 60})
            cases.append(case("%s %s content-type %r" % (method, path, ct), method, path, body, 415, ctype=ct))
    for method, path in body_endpoints(target):
        body = {"name": uniq()} if path == "/v1/principals" else ({"disabled": False} if method == "PATCH" else {"ttl_seconds": 60})
        cases.append(case("%s %s no content-type" % (method, path), method, path, body, 415, ctype=None))
    return cases


def size_cases(target):
    big_attr = json_bytes({"name": "big", "attributes": {"k": "x" * (MIB + 10)}})
    cases = [
        case("create body 1 MiB + 1", "POST", "/v1/principals", b"{" + b" " * MIB + b"}", 413),
        case("create body 2 MiB JSON", "POST", "/v1/principals", big_attr, 413),
        case("create chunked 1.5 MiB", "POST", "/v1/principals", b"{" + b" " * (MIB + MIB // 2) + b"}", 413, chunked=True),
        case("patch chunked 1 MiB + 1", "PATCH", "/v1/principals/" + target, b"{" + b" " * MIB + b"}", 413, chunked=True),
        case("tokens body 1 MiB + 100", "POST", "/v1/principals/%s/tokens" % target, b"{" + b" " * (MIB + 100) + b"}", 413),
        case("create claims 10 GB", "POST", "/v1/principals", None, 413,
             headers=[("Content-Type", "application/json"), ("Content-Length", "10000000000")]),
        case("create claims 1 MiB + 1", "POST", "/v1/principals", None, 413,
             headers=[("Content-Type", "application/json"), ("Content-Length", str(MIB + 1))]),
        # huge headers: refused by the HTTP layer
        case("100 KB header", "GET", "/v1/whoami", None, (413, 431), headers=[("X-Big", "a" * 100000)]),
        case("64 KB header", "GET", "/v1/whoami", None, (413, 431), headers=[("X-Big", "b" * 65536)]),
        case("400 headers of 200 B", "GET", "/v1/whoami", None, (413, 431),
             headers=[("X-H%d" % i, "c" * 200) for i in range(400)]),
        case("100 KB Authorization", "GET", "/v1/whoami", None, (413, 431), auth="Bearer slc_" + "a" * 100000),
        case("100 KB X-Request-Id", "GET", "/v1/whoami", None, (413, 431), headers=[("X-Request-Id", "r" * 100000)]),
        case("100 KB header on POST", "POST", "/v1/principals", {"name": "hh"}, (413, 431),
             headers=[("X-Big", "d" * 100000)]),
    ]
    return cases


def path_cases(target):
    cases = []
    names = [
        ("..%2F..%2Fetc%2Fpasswd", (400, 404)), ("%2e%2e", 400), ("%2E%2E", 400), ("%2e", 400), (".", 400), ("..", 400),
        ("a%00b", 400), ("target%00", 400), ("%00", (400, 404)), ("a" * 64, 400), ("a" * 1100, 400), ("a" * 5000, 400),
        ("Admin", 400), ("a%20b", 400), ("a%2Fb", (400, 404)), ("..%5C..%5Cwindows", 400), ("%252e%252e", 400),
        ("a;b", 400), ("~root", 400), ("%ff", 400), ("%c0%af", 400), ("%ed%a0%80", 400), ("a%0d%0ab", 400),
        ("%e2%80%ae", 400), ("-a", 400), ("a%09", 400), ("%7Badmin%7D", 400),
    ]
    for name, expect in names:
        # a name the HTTP layer decodes into a path of another route may get 404 or 405
        other = expect if isinstance(expect, int) else tuple(expect) + (405,)
        cases.append(case("GET principal %r" % name[:30], "GET", "/v1/principals/" + name, None, expect))
        cases.append(case("PATCH principal %r" % name[:30], "PATCH", "/v1/principals/" + name, {"disabled": True}, other))
        cases.append(case("POST tokens %r" % name[:30], "POST", "/v1/principals/%s/tokens" % name, {}, other))
    for raw in (b"/v1/principals/\xff\xfe", b"/v1/principals/\xc3\x28", b"/v1/principals/\xed\xa0\x80",
                b"/v1/\xff/whoami", b"/v1/whoami\xc0\xaf", b"/\xf8\x88\x80\x80\x80"):
        cases.append(case("raw invalid utf-8 path %r" % raw, "GET", raw, None, 400))
    for tid in ("..%2F..%2Fx", "%2e%2e", "ABCDEF0123456789", "abcdef012345678", "abcdef01234567890", "zzzzzzzzzzzzzzzz",
                "abcdef0123456789%00", "%ff"):
        cases.append(case("DELETE token %r" % tid, "DELETE", "/v1/tokens/" + tid, None, (400, 404)))
    return cases


def route_cases():
    cases = []
    for path in ("/", "/v1", "/v1/", "/v2/whoami", "/V1/whoami", "/v1/whoami/", "/v1/whoami/x", "/healthz/x",
                 "/v1/principals/a/b/c", "/admin", "/.env", "/v1/tokens", "/v1/tokens/", "/metrics/", "/v1//principals",
                 "/v1/principals/../whoami", "/v1/./whoami", "/v1/audit/", "/v1/audit/verify/x", "/v1/keys",
                 "/v1/principals/x/tokens/y", "/%76%31/whoami%2F", "//v1/whoami", "/v1/whoami%3Fx"):
        cases.append(case("unknown path %s" % path, "GET", path, None, 404))
        cases.append(case("unknown path %s no token" % path, "GET", path, None, 404, auth=None))
    wrong = [("DELETE", "/v1/whoami"), ("POST", "/v1/whoami"), ("PUT", "/v1/whoami"), ("PUT", "/v1/principals"),
             ("DELETE", "/v1/principals"), ("PATCH", "/v1/principals"), ("PUT", "/v1/principals/x"),
             ("DELETE", "/v1/principals/x"), ("POST", "/v1/principals/x"), ("GET", "/v1/principals/x/tokens"),
             ("DELETE", "/v1/principals/x/tokens"), ("POST", "/v1/audit"), ("DELETE", "/v1/audit"),
             ("POST", "/v1/audit/verify"), ("PUT", "/v1/audit/checkpoints"), ("GET", "/v1/tokens/abcdef0123456789"),
             ("PATCH", "/v1/tokens/abcdef0123456789"), ("POST", "/healthz"), ("DELETE", "/readyz"),
             ("POST", "/metrics"), ("POST", "/v1/keys/public"), ("FOO", "/v1/whoami"), ("get", "/v1/whoami"),
             ("TRACE", "/v1/whoami"), ("OPTIONS", "/v1/principals"), ("PROPFIND", "/v1/principals/x")]
    for method, path in wrong:
        cases.append(case("%s %s" % (method, path), method, path, None, 405))
    return cases


def query_cases():
    cases = []
    for q in ("limit=-1", "limit=abc", "limit=0", "limit=1001", "limit=1e3", "limit=", "limit=99999999999999999999",
              "limit=1.5", "limit=%20", "limit=0x10", "after=" + "a" * 300, "after=%ff"):
        cases.append(case("principals ?%s" % q[:40], "GET", "/v1/principals?" + q, None, 422))
    # a NUL anywhere in the URI is refused before routing: it would cut a decoded value
    cases.append(case("principals ?limit=%00", "GET", "/v1/principals?limit=%00", None, 400))
    for q in ("limit=-1", "limit=abc", "limit=0", "format=xml", "format=", "since=yesterday", "until=2024-13-01T00:00:00Z",
              "decision=maybe", "principal=Bad!Name", "since=%ff", "action=" + "a" * 300):
        cases.append(case("audit ?%s" % q[:40], "GET", "/v1/audit?" + q, None, 422))
    for q in ("since_seq=-1", "since_seq=x", "limit=-1", "limit=abc"):
        cases.append(case("checkpoints ?%s" % q, "GET", "/v1/audit/checkpoints?" + q, None, 422))
    return cases


def misc_cases():
    fake = "slc_%s_%s" % (secrets.token_hex(8), secrets.token_hex(32))
    cases = [
        case("whoami with a body", "GET", "/v1/whoami", {"x": 1}, 400),
        case("whoami with a text body", "GET", "/v1/whoami", "hello", 400, ctype="text/plain"),
        case("principal list with a body", "GET", "/v1/principals", {}, 400),
        case("verify with a body", "GET", "/v1/audit/verify", "{}", 400),
        case("revoke with a body", "DELETE", "/v1/tokens/abcdef0123456789", {"why": "x"}, 400),
        case("chunked body on whoami", "GET", "/v1/whoami", b"{}", 400, chunked=True),
    ]
    for i, auth in enumerate(("Bearer", "Bearer ", "Bearer  ", "bearer", "Basic abc", "Token " + fake, fake,
                              "Bearer " + fake, "Bearer slc_", "Bearer " + "x" * 4000, "Bearer " + fake + "\t",
                              "Bearer slc_%s_%s" % ("0" * 16, "0" * 64), "Bearer " + fake[:-1],
                              "Bearer " + fake + "," + fake, "Bearer\x01" + fake)):
        cases.append(case("auth #%d %r" % (i, auth[:24]), "GET", "/v1/whoami", None, 401, auth=auth))
    cases.append(case("no auth on principals", "POST", "/v1/principals", {"name": "nobody"}, 401, auth=None))
    return cases


class MalformedTest(ServerCase):
    TARGET = "target"
    # every client is 127.0.0.1: no failed-auth limit in the way of the 401 cases
    serve_args = ("--auth-fail-burst", "100000", "--auth-fail-per-min", "100000")

    @classmethod
    def prepare(cls):
        r = cls.srv.request("POST", "/v1/principals", body={"name": cls.TARGET, "kind": "user", "roles": ["trainer"],
                                                             "attributes": {"team": "t"}})
        assert r.status == 201, r
        cls.target_token = r.json()["token"]
        r = cls.srv.request("POST", "/v1/principals", body={"name": "a", "kind": "user", "roles": ["trainer"],
                                                             "attributes": {}})
        assert r.status == 201, r

    # ---- helpers ----

    def send(self, c, request_id=None):
        headers = list(c.headers)
        if c.auth == "admin":
            headers.append(("Authorization", "Bearer " + self.srv.admin_token))
        elif c.auth is not None:
            headers.append(("Authorization", c.auth))
        if request_id is not None and not any(k.lower() == "x-request-id" for k, _ in headers):
            headers.append(("X-Request-Id", request_id))
        body = c.body
        if isinstance(body, (dict, list)):
            body = json_bytes(body)
        if body is not None and c.ctype is not None and not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("Content-Type", c.ctype))
        return raw_exchange(self.srv, build(c.method, c.path, headers, body, chunked=c.chunked))

    def check_shape(self, r, request_id):
        """Problems with a 4xx answer's shape, as a list of strings."""
        problems = []
        http_layer = r.status in (413, 431) and r.header("X-Request-Id") is None
        if http_layer:
            return problems
        ctype = r.header("Content-Type") or ""
        if not ctype.startswith("application/json"):
            problems.append("Content-Type %r" % ctype)
        try:
            j = json.loads(r.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return problems + ["body is not JSON: %r" % r.body[:120]]
        e = j.get("error") if isinstance(j, dict) else None
        if not isinstance(j, dict) or set(j) != {"error"} or not isinstance(e, dict):
            return problems + ["not an error object: %r" % j]
        if set(e) != {"code", "message", "request_id"} or not all(isinstance(e[k], str) for k in e):
            problems.append("error fields %r" % sorted(e))
        if e.get("code") != CODES.get(r.status):
            problems.append("code %r for status %d" % (e.get("code"), r.status))
        if e.get("request_id") != r.header("X-Request-Id"):
            problems.append("request_id %r, header %r" % (e.get("request_id"), r.header("X-Request-Id")))
        if request_id is not None and e.get("request_id") != request_id:
            problems.append("request_id %r is not the one sent (%r)" % (e.get("request_id"), request_id))
        if r.status == 405 and not (r.header("Allow") or "").strip():
            problems.append("405 without an Allow header")
        return problems

    def assert_alive(self, where):
        self.assertIsNone(self.srv.proc.poll(), "the server exited (%s): %s" % (where, self.srv.read_log()[-3000:]))
        r = self.srv.request("GET", "/healthz", token=None)
        self.assertEqual(r.status, 200, "healthz after %s: %r" % (where, r))

    # ---- the tests ----

    def test_1_malformed_requests(self):
        n = [0]

        def uniq():
            n[0] += 1
            return "mal-%d" % n[0]

        cases = (principal_create_cases(uniq) + principal_patch_cases(self.TARGET) + token_create_cases(self.TARGET)
                 + syntax_cases(self.TARGET) + media_cases(self.TARGET, uniq) + size_cases(self.TARGET)
                 + path_cases(self.TARGET) + route_cases() + query_cases() + misc_cases())
        self.assertGreaterEqual(len(cases), 300)
        target_before = self.srv.request("GET", "/v1/principals/" + self.TARGET).json()
        n_principals = self.srv.psql("SELECT count(*) FROM principals")
        n_tokens = self.srv.psql("SELECT count(*) FROM tokens")
        events_before = self.srv.audit_count()

        results, mismatches = [], []
        for i, c in enumerate(cases):
            request_id = "mal-%04d" % i
            r = self.send(c, request_id)
            if r is None or r.status is None:
                mismatches.append("%s: no answer (%r)" % (c.name, r))
                results.append((c, request_id, None))
            else:
                results.append((c, request_id, r))
                problems = []
                if r.status not in c.expect:
                    problems.append("status %d, expected %s (%r)" % (r.status, sorted(c.expect), r.body[:160]))
                if not 400 <= r.status < 500:
                    problems.append("not a 4xx")
                else:
                    problems += self.check_shape(r, None if any(k.lower() == "x-request-id" for k, _ in c.headers)
                                                 else request_id)
                if problems:
                    mismatches.append("%s: %s" % (c.name, "; ".join(problems)))
            if i % 25 == 24 or i == len(cases) - 1:
                self.assert_alive("case %d (%s)" % (i, c.name))

        by_status = collections.Counter(r.status for _, _, r in results if r is not None)
        print("\n%d malformed requests, answers by status: %s" % (len(cases), dict(sorted(by_status.items()))),
              file=sys.stderr)

        # exactly one audit event each: by our request id where the gateway answered, and
        # in total (HTTP-layer refusals are posted asynchronously)
        audit = []
        total = self.srv.wait_audit_count(events_before + len(cases), timeout=15)
        time.sleep(0.5)  # and no more than that arrives
        total = self.srv.audit_count()
        if total != events_before + len(cases):
            audit.append("%d audit events for %d requests" % (total - events_before, len(cases)))
        evs = collections.defaultdict(list)
        for e in self.srv.events():
            evs[e["request_id"]].append(e)
        for c, request_id, r in results:
            if r is None or r.header("X-Request-Id") != request_id:
                continue  # refused before routing, or our id was the case's own
            got = evs.get(request_id, [])
            if len(got) != 1 or got[0]["status"] != r.status:
                audit.append("%s: %d events %r" % (c.name, len(got), [(e["status"], e["reason"]) for e in got]))

        # nothing was changed or created by any of them
        changed = []
        target_after = self.srv.request("GET", "/v1/principals/" + self.TARGET).json()
        if target_after != target_before:
            changed.append("principal %r changed: %r -> %r" % (self.TARGET, target_before, target_after))
        a_after = self.srv.request("GET", "/v1/principals/a").json()
        if a_after["disabled"] or a_after["roles"] != ["trainer"]:
            changed.append("principal 'a' changed: %r" % a_after)
        for table, before in (("principals", n_principals), ("tokens", n_tokens)):
            now = self.srv.psql("SELECT count(*) FROM %s" % table)
            if now != before:
                changed.append("%s: %s rows before, %s after" % (table, before, now))
        # put things back for the other tests
        self.srv.request("PATCH", "/v1/principals/" + self.TARGET,
                         body={"disabled": False, "roles": ["trainer"], "attributes": target_before["attributes"]})
        self.srv.request("PATCH", "/v1/principals/a", body={"disabled": False, "roles": ["trainer"], "attributes": {}})
        self.assertEqual(self.srv.request("GET", "/v1/whoami", token=self.target_token).status, 200)

        report = []
        if mismatches:
            report.append("%d of %d cases answered wrongly:\n  %s" % (len(mismatches), len(cases), "\n  ".join(mismatches)))
        if changed:
            report.append("state changed by malformed requests:\n  " + "\n  ".join(changed))
        if audit:
            report.append("audit:\n  " + "\n  ".join(audit))
        self.assertEqual(report, [], "\n" + "\n".join(report))

    def test_2_planted_secret_never_echoed(self):
        P = PLANTED
        t = "/v1/principals/" + self.TARGET
        cases = [
            ("POST", "/v1/principals", {"name": "Bad Name!", "attributes": {"note": P}}),
            ("POST", "/v1/principals", {"name": "ok-name", "attributes": {"note": P}, "bogus": 1}),
            ("POST", "/v1/principals", {"name": "ok-name2", "attributes": {"note": P}, "ttl_seconds": 0}),
            ("POST", "/v1/principals", {"name": "ok-name3", "attributes": {"note": P + "x" * 300}}),
            ("POST", "/v1/principals", {"name": "ok-name4", "attributes": {"note": P, "Bad": "v"}}),
            ("POST", "/v1/principals", {"name": P}),
            ("POST", "/v1/principals", {"name": P.lower()[:-1] + "!"}),
            ("POST", "/v1/principals", {"name": "ok-name5", "kind": P}),
            ("POST", "/v1/principals", {"name": "ok-name6", "roles": [P]}),
            ("POST", "/v1/principals", {"name": "ok-name7", "ttl_seconds": P}),
            ("POST", "/v1/principals", {"name": "ok-name8", "roles": "trainer", "attributes": {"note": P}}),
            ("PATCH", t, {"disabled": P}),
            ("PATCH", t, {"attributes": {"note": P}, "x": 1}),
            ("PATCH", t, {"attributes": {"note": [P]}}),
            ("PATCH", t, {"roles": [P]}),
            ("POST", t + "/tokens", {"ttl_seconds": P}),
            # invalid JSON around the value: quoted, then as a bare token and a number
            ("POST", "/v1/principals", '{"name": "x", "attributes": {"note": "%s"} "x"}' % P),
            ("POST", "/v1/principals", '{"name": "x", "attributes": {"note": "%s"' % P),
            ("POST", "/v1/principals", "{'name': 'x', 'attributes': {'note': '%s'}}" % P),
            ("POST", "/v1/principals", '{"name": "x", "attributes": {"note": %s}}' % PLANTED_BARE),
            ("POST", "/v1/principals", '{"name": "x", "attributes": {"note": "%s\\u0000"}}' % P),
            ("PATCH", t, '{"attributes": {"ssn": 123456789e99999}}'),
            # a short string value with an escape the parser refuses (jansson quotes tokens of <= 20 bytes)
            ("PATCH", t, '{"attributes": {"ssn": "PLANTED-1234\\u0000"}}'),
            ("POST", "/v1/principals", b'{"name": "x", "attributes": {"note": "' + P.encode() + b'\xff"}}'),
            ("GET", "/v1/principals?limit=" + P, None),
            ("GET", "/v1/principals?after=" + P + "%ff", None),
            ("GET", "/v1/audit?since=" + P, None),
        ]
        problems = []
        for method, path, body in cases:
            c = case("planted", method, path, body, (400, 422))
            r = self.send(c, "planted-%s" % secrets.token_hex(4))
            if r is None or not 400 <= (r.status or 0) < 500:
                problems.append("%s %s %r: not a 4xx: %r" % (method, path, body, r))
                continue
            for s in FRAGMENTS:
                if s.encode() in r.body:
                    problems.append("echoed %r: %s %s %r -> %r" % (s, method, path, body, r.body))
                    break
        trail = self.srv.psql("SELECT t::text FROM audit_events t")
        for s in FRAGMENTS:
            if s in trail:
                at = trail.index(s)
                problems.append("audit trail holds %r: ...%s..." % (s, trail[max(0, at - 120):at + 60]))
        self.assertEqual(self.srv.psql("SELECT count(*) FROM principals WHERE name LIKE 'ok-name%'"), "0")
        self.assertEqual(problems, [], "\n  " + "\n  ".join(problems))

    def test_3_bad_request_ids_are_replaced(self):
        for bad in ("", "a b", "x" * 65, "<script>alert(1)</script>", "id\x7f", "../../etc", "r\u00e9",
                    "a,b", "a;b", "{}", "%41", "a/b", "a\tb"):
            hdr = bad.encode("latin-1")
            r = raw_exchange(self.srv, build("GET", "/v1/whoami", [("Authorization", "Bearer " + self.srv.admin_token),
                                                                   ("X-Request-Id", hdr)]))
            self.assertIsNotNone(r)
            self.assertEqual(r.status, 200, (bad, r))
            got = r.header("X-Request-Id")
            self.assertNotEqual(got, bad)
            self.assertRegex(got or "", r"^[0-9a-f]{32}$", (bad, got))
            evs = [e for e in self.srv.events() if e["request_id"] == got]
            self.assertEqual(len(evs), 1, (bad, got, evs))
        # the same on an error answer: the body carries the generated id
        r = raw_exchange(self.srv, build("GET", "/v1/nowhere", [("X-Request-Id", "bad id!")]))
        self.assertEqual(r.status, 404, r)
        self.assertRegex(r.header("X-Request-Id"), r"^[0-9a-f]{32}$")
        self.assertEqual(json.loads(r.body)["error"]["request_id"], r.header("X-Request-Id"))
        # a good one is kept
        r = raw_exchange(self.srv, build("GET", "/v1/nowhere", [("X-Request-Id", "Good-id_1.2")]))
        self.assertEqual(r.header("X-Request-Id"), "Good-id_1.2")

    def test_4_nul_in_path_does_not_alias_another_principal(self):
        """`/v1/principals/target%00x` names no valid principal; it must not act on `target`."""
        before = self.srv.request("GET", "/v1/principals/" + self.TARGET).json()
        results = {}
        for method, path, body in (
                ("GET", "/v1/principals/%s%%00x" % self.TARGET, None),
                ("PATCH", "/v1/principals/%s%%00x" % self.TARGET, {"attributes": {"pwned": "yes"}}),
                ("POST", "/v1/principals/%s%%00x/tokens" % self.TARGET, {}),
                ("PATCH", "/v1/principals/a%00b", {"roles": ["admin"]})):
            r = self.send(case("nul", method, path, body))
            results[(method, path)] = r
        after = self.srv.request("GET", "/v1/principals/" + self.TARGET).json()
        a_roles = self.srv.request("GET", "/v1/principals/a").json()["roles"]
        # put things back before asserting, so that later tests see the same state
        if after != before:
            self.srv.request("PATCH", "/v1/principals/" + self.TARGET, body={"attributes": before["attributes"]})
        if a_roles != ["trainer"]:
            self.srv.request("PATCH", "/v1/principals/a", body={"roles": ["trainer"]})
        self.assertEqual(after["attributes"], before["attributes"],
                         "PATCH /v1/principals/target%00x changed principal \"target\"")
        self.assertEqual(a_roles, ["trainer"], "PATCH /v1/principals/a%00b {roles:[admin]} made \"a\" an admin")
        for (method, path), r in results.items():
            self.assertEqual(r.status, 400, "%s %s: %r (the name is not valid: expected 400)" % (method, path, r))

    # ---- requests refused by the HTTP layer (libmicrohttpd) before routing ----

    def http_layer_cases(self):
        """(name, bytes, statuses accepted). API.md: errors are JSON always; only a 413 or
        431 for an oversized request may come bare from the HTTP layer."""
        A = ("Authorization", "Bearer " + self.srv.admin_token)
        J = ("Content-Type", "application/json")
        return {
            "Content-Length: abc": (build("POST", "/v1/principals", [A, J, ("Content-Length", "abc")], b"{}",
                                          content_length=False), {400}),
            "Content-Length: -1": (build("POST", "/v1/principals", [A, J, ("Content-Length", "-1")], b"{}",
                                         content_length=False), {400}),
            # RFC 9112 6.3: differing Content-Lengths are unrecoverable (a smuggling vector): 400
            "two different Content-Lengths": (build("POST", "/v1/principals", [A, J, ("Content-Length", "2"),
                                                                              ("Content-Length", "3")],
                                                    b"{} ", content_length=False), {400}),
            "header line without a colon": (build("GET", "/v1/whoami", [A, (b"Bad Header", b"")]).replace(
                b"Bad Header: ", b"Bad Header"), {400}),
            "HTTP/9.9": (build("GET", "/v1/whoami", [A]).replace(b"HTTP/1.1", b"HTTP/9.9", 1), {400, 505}),
            "garbage request line": (b"GARBAGE\r\n\r\n", {400}),
            # RFC 9112 6.1: a transfer coding the server does not know: 501 (or 400), at once
            "Transfer-Encoding: gzip": (build("POST", "/v1/principals", [A, J, ("Transfer-Encoding", "gzip")], b"{}",
                                              content_length=False), {400, 501}),
            "100 KB URI": (build("GET", "/v1/" + "a" * 100000, [A]), {414, 431}),
        }

    def exchange_http_layer(self, names, check_answer=True, check_audit=False, bare=(413, 414, 431),
                            allow_silence=False):
        cases = self.http_layer_cases()
        failures = []
        for name in names:
            data, expect = cases[name]
            before = self.srv.audit_count()
            t0 = time.time()
            r = raw_exchange(self.srv, data, timeout=5)
            took = time.time() - t0
            if check_answer:
                if r is None or r.status is None:
                    if not (allow_silence and took < 5):
                        failures.append("%s: no answer (connection closed or 5 s passed: %.1f s)" % (name, took))
                else:
                    problems = []
                    if r.status not in expect:
                        problems.append("status %d, expected %s" % (r.status, sorted(expect)))
                    if r.status not in bare:  # refusals of the HTTP layer itself may be bare
                        problems += self.check_shape(r, None)
                    if problems:
                        failures.append("%s: %d: %s" % (name, r.status, "; ".join(problems)))
            if check_audit and self.srv.wait_audit_count(before + 1, timeout=3) < before + 1:
                failures.append("%s: no audit event (answered %s)" % (name, r.status if r else "nothing"))
            self.assert_alive(name)
        self.assertEqual(failures, [], "\n  " + "\n  ".join(failures))

    def test_5_http_layer_refusals(self):
        """Unparseable framing is refused by libmicrohttpd before sluice sees a request: a bare
        400 or 505 (not the JSON shape: nothing of sluice has run), or for a request line that
        is not HTTP at all, the connection closed at once. Never a hang, never a 2xx."""
        self.exchange_http_layer(["Content-Length: abc", "Content-Length: -1", "header line without a colon",
                                  "HTTP/9.9", "garbage request line"], bare=(400, 413, 414, 431, 505),
                                 allow_silence=True)

    def test_6_conflicting_framing_refused_at_once(self):
        """Framing sluice sees (its access handler runs once the headers are in) but accepts."""
        self.exchange_http_layer(["two different Content-Lengths", "Transfer-Encoding: gzip"])

    def test_7_http_layer_refusals_are_audited(self):
        """Every request, refused by the HTTP layer or not, leaves one event."""
        self.exchange_http_layer(["Content-Length: abc", "header line without a colon", "HTTP/9.9",
                                  "garbage request line", "100 KB URI"], check_answer=False, check_audit=True)

    def test_9_server_up_and_trail_verifies(self):
        self.assert_alive("all the malformed requests")
        r = self.srv.request("GET", "/v1/audit/verify")
        self.assertEqual(r.status, 200, r)
        v = r.json()
        self.assertTrue(v["ok"], v)
        self.assertIsNone(v["first_bad_seq"], v)
        # the verify request's own event is committed after it counted
        self.assertIn(self.srv.wait_audit_count(v["events"] + 1, timeout=5), (v["events"], v["events"] + 1))
        self.assertNotIn("AddressSanitizer", self.srv.read_log())
        self.assertNotIn("runtime error", self.srv.read_log())


if __name__ == "__main__":
    unittest.main()
