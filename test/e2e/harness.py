# SPDX-License-Identifier: MIT
"""Fixtures for the airlock end-to-end tests (Python standard library only).

Owns: a throwaway PKI made with the openssl CLI for each run, loopback upstream servers that
write raw bytes (TLS or plain), the Airlock process wrapper, the policy writer and minimal raw
HTTP/1.1 and WebSocket clients. Every socket has a timeout and binds only to 127.0.0.1 or ::1.
Nothing here knows about a particular test; tests get an Env from run.py.
"""

import base64
import hashlib
import json
import os
import select
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time

LOOPBACK4 = "127.0.0.1"
LOOPBACK6 = "::1"
SOCK_TIMEOUT = 10.0          # default for every client socket operation
UPSTREAM_TIMEOUT = 30.0      # upstream connections (slow readers make senders wait)
START_TIMEOUT = 10.0         # airlock must accept connections within this
STOP_TIMEOUT = 10.0          # and exit after SIGTERM within this
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")
MIB = 1024 * 1024


class Skip(Exception):
    """Raised by a test when an optional tool it needs is missing."""


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def check_eq(got, want, what):
    if got != want:
        raise AssertionError("%s: got %r, want %r" % (what, _short(got), _short(want)))


def _short(v, n=300):
    r = v
    if isinstance(v, (bytes, bytearray)) and len(v) > n:
        r = bytes(v[:n]) + b"...(%d bytes)" % len(v)
    elif isinstance(v, str) and len(v) > n:
        r = v[:n] + "...(%d chars)" % len(v)
    return r


def wait_until(pred, timeout, interval=0.05):
    """Poll pred() until it returns a true value or timeout passes; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# PKI: a throwaway upstream CA, leaves, an untrusted CA, a wrong-name leaf (openssl CLI).
# ---------------------------------------------------------------------------------------------

_REQ_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[v3_ca]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
"""

_LEAF_EXT = """\
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = %s
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
"""


class CertPair:
    def __init__(self, cert, key):
        self.cert = cert
        self.key = key


class PKI:
    """All files live under dir; the caller removes dir. Keys are EC P-256."""

    def __init__(self, dir):
        self.dir = dir
        self.cnf = os.path.join(dir, "req.cnf")
        with open(self.cnf, "w") as f:
            f.write(_REQ_CNF)
        self._leaves = {}
        self.ca = self.make_ca("ca", "airlock e2e upstream CA")
        self.untrusted_ca = self.make_ca("untrusted-ca", "airlock e2e untrusted CA")
        # The usual upstream leaf: every loopback name a test may CONNECT to.
        self.leaf = self.make_leaf("localhost", ["localhost"], [LOOPBACK4, LOOPBACK6])
        self.api_leaf = self.make_leaf("api.test", ["api.test", "*.api.test"], [])
        # Signed by a CA that airlock does not trust, names right.
        self.untrusted_leaf = self.make_leaf("localhost", ["localhost"], [LOOPBACK4, LOOPBACK6],
                                             ca=self.untrusted_ca, tag="untrusted")
        # Trusted CA, but names neither localhost nor any loopback address.
        self.wrong_name_leaf = self.make_leaf("wrong.test", ["wrong.test"], [], tag="wrongname")

    def _openssl(self, *args):
        r = subprocess.run(("openssl",) + args, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=30)
        if r.returncode != 0:
            raise RuntimeError("openssl %s failed: %s" % (" ".join(args), r.stderr.decode()))
        return r.stdout

    def make_ca(self, tag, cn):
        cert = os.path.join(self.dir, tag + ".pem")
        key = os.path.join(self.dir, tag + ".key")
        self._openssl("req", "-x509", "-new", "-config", self.cnf, "-extensions", "v3_ca",
                      "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                      "-keyout", key, "-out", cert, "-days", "3", "-subj", "/CN=" + cn)
        return CertPair(cert, key)

    def make_leaf(self, cn, dns, ips, ca=None, tag=None):
        """A leaf signed by ca (default: the trusted upstream CA) with the given SANs."""
        ca = ca or self.ca
        tag = tag or cn
        cache_key = (tag, ca.cert)
        if cache_key in self._leaves:
            return self._leaves[cache_key]
        base = os.path.join(self.dir, "leaf-" + tag.replace("*", "star"))
        sans = ",".join(["DNS:" + d for d in dns] + ["IP:" + i for i in ips])
        ext = base + ".ext"
        with open(ext, "w") as f:
            f.write(_LEAF_EXT % sans)
        self._openssl("req", "-new", "-config", self.cnf, "-newkey", "ec", "-pkeyopt",
                      "ec_paramgen_curve:P-256", "-nodes", "-keyout", base + ".key",
                      "-out", base + ".csr", "-subj", "/CN=" + cn)
        serial = "0x" + os.urandom(8).hex()
        self._openssl("x509", "-req", "-in", base + ".csr", "-CA", ca.cert, "-CAkey", ca.key,
                      "-set_serial", serial, "-days", "3", "-extfile", ext, "-extensions", "leaf",
                      "-out", base + ".pem")
        pair = CertPair(base + ".pem", base + ".key")
        self._leaves[cache_key] = pair
        return pair


# ---------------------------------------------------------------------------------------------
# Byte reader over a (TLS or plain) socket, and raw HTTP/1.1 messages.
# ---------------------------------------------------------------------------------------------

class Reader:
    """Buffered reads over a socket. EOF (a FIN, close_notify, an unexpected TLS EOF or a reset)
    makes fill() return False; `reset` tells whether the end was a reset."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.eof = False
        self.reset = False
        self.received = 0

    def fill(self, size=65536):
        if self.eof:
            return False
        try:
            data = self.sock.recv(size)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            self.reset = True
            data = b""
        if not data:
            self.eof = True
            return False
        self.received += len(data)
        self.buf += data
        return True

    def take(self, n):
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_until(self, delim, limit=1 << 20):
        start = 0
        while True:
            i = self.buf.find(delim, start)
            if i >= 0:
                return self.take(i + len(delim))
            if len(self.buf) > limit:
                raise AssertionError("no %r within %d bytes" % (delim, limit))
            start = max(0, len(self.buf) - len(delim) + 1)
            if not self.fill():
                raise EOFError("EOF before %r (have %r)" % (delim, _short(bytes(self.buf))))

    def read_line(self, limit=65536):
        return self.read_until(b"\r\n", limit)

    def read_exact(self, n):
        while len(self.buf) < n:
            if not self.fill(max(65536, min(n - len(self.buf), 1 << 20))):
                raise EOFError("EOF after %d of %d bytes" % (len(self.buf), n))
        return self.take(n)

    def read_some(self, size=65536):
        """Buffered bytes, or one recv; b"" at EOF."""
        if not self.buf:
            self.fill(size)
        return self.take(min(size, len(self.buf)))

    def read_to_eof(self, limit=256 * MIB):
        while self.fill():
            if len(self.buf) > limit:
                raise AssertionError("more than %d bytes before EOF" % limit)
        return self.take(len(self.buf))

    def wait_eof(self, timeout):
        """Wait up to timeout for the peer to close. Returns (closed, bytes_seen_meanwhile)."""
        old = self.sock.gettimeout()
        deadline = time.monotonic() + timeout
        seen = bytearray(self.take(len(self.buf)))
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False, bytes(seen)
                self.sock.settimeout(left)
                try:
                    if not self.fill():
                        return True, bytes(seen)
                except (socket.timeout, TimeoutError):
                    return False, bytes(seen)
                except ssl.SSLError:
                    # A fatal alert or a TLS-level close is also the end of the connection.
                    self.eof = True
                    return True, bytes(seen)
                seen += self.take(len(self.buf))
        finally:
            try:
                self.sock.settimeout(old)
            except OSError:
                pass


class Headers:
    """Fields in order, names as sent; lookups are case-insensitive."""

    def __init__(self, items=None):
        self.items = list(items or [])

    def get(self, name, default=None):
        n = name.lower()
        for k, v in self.items:
            if k.lower() == n:
                return v
        return default

    def get_all(self, name):
        n = name.lower()
        return [v for k, v in self.items if k.lower() == n]

    def has(self, name):
        return self.get(name) is not None

    def has_token(self, name, token):
        t = token.lower()
        for v in self.get_all(name):
            if t in [x.strip().lower() for x in v.split(",")]:
                return True
        return False

    def names(self):
        return [k for k, _ in self.items]

    def __repr__(self):
        return "Headers(%r)" % self.items


def parse_fields(lines):
    items = []
    for line in lines:
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            raise AssertionError("malformed field line %r" % line)
        items.append((name.decode("latin-1"), value.strip().decode("latin-1")))
    return Headers(items)


def read_head(reader, limit=256 * 1024):
    """(start line as str, Headers, raw bytes) of the next head."""
    raw = reader.read_until(b"\r\n\r\n", limit)
    lines = raw[:-4].split(b"\r\n")
    return lines[0].decode("latin-1"), parse_fields(lines[1:]), raw


def read_chunked(reader, max_body=256 * MIB):
    body = bytearray()
    while True:
        size_line = reader.read_line()
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            break
        body += reader.read_exact(size)
        check_eq(reader.read_exact(2), b"\r\n", "chunk terminator")
        check(len(body) <= max_body, "chunked body over %d bytes" % max_body)
    trailer_lines = []
    while True:
        line = reader.read_line()
        if line == b"\r\n":
            break
        trailer_lines.append(line[:-2])
    return bytes(body), parse_fields(trailer_lines)


def iter_chunked(reader):
    """Yield the de-chunked body as it arrives (partial chunks too); stops after the last chunk
    and its trailer section."""
    while True:
        size = int(reader.read_line().split(b";")[0].strip(), 16)
        if size == 0:
            while reader.read_line() != b"\r\n":
                pass
            return
        left = size
        while left:
            part = reader.read_some(left)
            if not part:
                raise EOFError("EOF inside a chunk")
            left -= len(part)
            yield part
        check_eq(reader.read_exact(2), b"\r\n", "chunk terminator")


class Response:
    def __init__(self, version, status, reason, headers, raw_head):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
        self.raw_head = raw_head
        self.body = b""
        self.trailers = Headers()
        self.framing = None   # "none", "length", "chunked", "close"

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except ValueError as e:
            raise AssertionError("response body is not JSON (%s): %r" % (e, _short(self.body)))

    def __repr__(self):
        return "<Response %d %s %r>" % (self.status, self.reason, _short(self.body, 200))


def read_response_head(reader):
    start, headers, raw = read_head(reader)
    parts = start.split(" ", 2)
    check(len(parts) >= 2 and parts[0].startswith("HTTP/1."), "bad status line %r" % start)
    try:
        status = int(parts[1])
    except ValueError:
        raise AssertionError("bad status line %r" % start)
    return Response(parts[0], status, parts[2] if len(parts) > 2 else "", headers, raw)


def read_response(reader, method="GET", max_body=256 * MIB):
    """Read one response, 1xx included (the caller loops past interim ones)."""
    r = read_response_head(reader)
    h = r.headers
    if method == "HEAD" or r.status in (204, 304) or 100 <= r.status < 200:
        r.framing = "none"
    elif h.has_token("transfer-encoding", "chunked"):
        r.framing = "chunked"
        r.body, r.trailers = read_chunked(reader, max_body)
    elif h.has("content-length"):
        r.framing = "length"
        n = int(h.get("content-length"))
        check(n <= max_body, "Content-Length %d over %d" % (n, max_body))
        r.body = reader.read_exact(n)
    else:
        r.framing = "close"
        r.body = reader.read_to_eof(max_body)
    return r


def read_final_response(reader, method="GET"):
    """Skip interim (1xx) responses; returns (final, [interim...])."""
    interim = []
    while True:
        r = read_response(reader, method)
        if r.status >= 200 or r.status == 101:
            return r, interim
        interim.append(r)


class Request:
    def __init__(self, method, target, version, headers, raw_head):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.raw_head = raw_head
        self.body = b""
        self.trailers = Headers()
        self.framing = "none"


def read_request_head(reader):
    """The next request head, or None when the peer closed before sending a byte."""
    while not reader.buf:
        if not reader.fill():
            return None
    start, headers, raw = read_head(reader)
    parts = start.split(" ")
    check(len(parts) == 3, "bad request line %r" % start)
    return Request(parts[0], parts[1], parts[2], headers, raw)


def read_request_body(reader, req):
    h = req.headers
    if h.has_token("transfer-encoding", "chunked"):
        req.framing = "chunked"
        req.body, req.trailers = read_chunked(reader)
    elif h.has("content-length"):
        req.framing = "length"
        req.body = reader.read_exact(int(h.get("content-length")))
    return req


def build_request(method, target, headers=(), body=None):
    out = ["%s %s HTTP/1.1\r\n" % (method, target)]
    for k, v in headers:
        out.append("%s: %s\r\n" % (k, v))
    out.append("\r\n")
    data = "".join(out).encode("latin-1")
    if body:
        data += body
    return data


def build_response(status, reason, headers=(), body=b""):
    out = ["HTTP/1.1 %d %s\r\n" % (status, reason)]
    for k, v in headers:
        out.append("%s: %s\r\n" % (k, v))
    out.append("\r\n")
    return "".join(out).encode("latin-1") + body


def encode_chunked(pieces, trailers=()):
    out = bytearray()
    for p in pieces:
        if p:
            out += b"%x\r\n" % len(p) + p + b"\r\n"
    out += b"0\r\n"
    for k, v in trailers:
        out += ("%s: %s\r\n" % (k, v)).encode("latin-1")
    out += b"\r\n"
    return bytes(out)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# Deterministic download content: chunk i (1 MiB) is its 8-byte index followed by a fixed
# pseudo-random block, so reordered, dropped or repeated chunks change the digest.
# ---------------------------------------------------------------------------------------------

_BLOCK = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(MIB // 32))
_DIGESTS = {}


def content_chunks(n, piece=MIB):
    """The first n bytes of the content, in slices of at most piece bytes."""
    off = 0
    i = 0
    while off < n:
        block = (i.to_bytes(8, "big") + _BLOCK[8:])[:n - off]
        for s in range(0, len(block), piece):
            yield block[s:s + piece]
        off += len(block)
        i += 1


def content_sha256(n):
    if n not in _DIGESTS:
        h = hashlib.sha256()
        for c in content_chunks(n):
            h.update(c)
        _DIGESTS[n] = h.hexdigest()
    return _DIGESTS[n]


# ---------------------------------------------------------------------------------------------
# WebSocket (RFC 6455) frames.
# ---------------------------------------------------------------------------------------------

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WS_CONT, WS_TEXT, WS_BINARY, WS_CLOSE, WS_PING, WS_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def ws_accept(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode("ascii")).digest()).decode()


def ws_new_key():
    return base64.b64encode(os.urandom(16)).decode()


def _xor_mask(payload, mask):
    n = len(payload)
    if not n:
        return b""
    rep = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(rep, "big")).to_bytes(n, "big")


def ws_encode(opcode, payload, masked, fin=True):
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    mbit = 0x80 if masked else 0
    if n < 126:
        head = bytes([b0, mbit | n])
    elif n < 65536:
        head = bytes([b0, mbit | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([b0, mbit | 127]) + n.to_bytes(8, "big")
    if masked:
        mask = os.urandom(4)
        return head + mask + _xor_mask(payload, mask)
    return head + payload


def ws_read_frame(reader):
    """(fin, opcode, payload, was_masked)."""
    b0, b1 = reader.read_exact(2)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(reader.read_exact(2), "big")
    elif n == 127:
        n = int.from_bytes(reader.read_exact(8), "big")
    masked = bool(b1 & 0x80)
    mask = reader.read_exact(4) if masked else None
    payload = reader.read_exact(n)
    if masked:
        payload = _xor_mask(payload, mask)
    return bool(b0 & 0x80), b0 & 0x0F, payload, masked


class WebSocketClient:
    """Client side of an open WebSocket: masks every frame, expects unmasked frames."""

    def __init__(self, sock, reader):
        self.sock = sock
        self.reader = reader

    def send(self, opcode, payload):
        self.sock.sendall(ws_encode(opcode, payload, masked=True))

    def recv(self):
        fin, opcode, payload, masked = ws_read_frame(self.reader)
        check(not masked, "server frame is masked (RFC 6455 §5.1 forbids it)")
        check(fin, "unexpected fragmented server frame")
        return opcode, payload

    def close(self, code=1000):
        """Send a close frame and expect the echoed close frame, then EOF."""
        self.send(WS_CLOSE, code.to_bytes(2, "big"))
        opcode, payload = self.recv()
        check_eq(opcode, WS_CLOSE, "opcode after close")
        check_eq(payload[:2], code.to_bytes(2, "big"), "close code echoed")
        closed, extra = self.reader.wait_eof(5)
        check(closed, "connection not closed after the close handshake")
        check_eq(extra, b"", "bytes after the close frame")


def ws_upgrade_request(host, path="/ws", key=None, extra=()):
    key = key or ws_new_key()
    headers = [("Host", host), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
               ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")] + list(extra)
    return build_request("GET", path, headers), key


# ---------------------------------------------------------------------------------------------
# Upstream servers.
# ---------------------------------------------------------------------------------------------

class UpstreamConn:
    """One accepted upstream connection as a handler sees it."""

    def __init__(self, upstream, sock):
        self.upstream = upstream
        self.sock = sock
        self.reader = Reader(sock)

    def read_request(self, read_body=True):
        req = read_request_head(self.reader)
        if req is None:
            return None
        with self.upstream.lock:
            self.upstream.requests.append(req)
        if read_body:
            read_request_body(self.reader, req)
        return req

    def sendall(self, data):
        self.sock.sendall(data)


class Upstream:
    """A server on 127.0.0.1 (and ::1 on the same port when dual_stack) port 0, or on host and
    port when given (a network namespace's own addresses). Each accepted connection runs
    handler(UpstreamConn) in its own thread, after the TLS handshake when tls. Counts accepts,
    completed handshakes, request heads and bytes received."""

    def __init__(self, handler, tls=True, cert=None, dual_stack=False, name="upstream",
                 host=LOOPBACK4, port=0):
        self.handler = handler
        self.host = host
        self.want_port = port
        self.tls = tls
        self.cert = cert
        self.dual_stack = dual_stack
        self.name = name
        self.lock = threading.Lock()
        self.accepts = 0
        self.handshakes = 0
        self.handshake_errors = []
        self.errors = []
        self.requests = []
        self.conns = []
        self.listeners = []
        self.stopped = False
        self.ctx = None
        self.port = None
        self.thread = None

    def start(self):
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.cert.cert, self.cert.key)
            ctx.set_alpn_protocols(["http/1.1"])
            ctx.options |= getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
            self.ctx = ctx
        for attempt in range(20):
            s4 = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET,
                               socket.SOCK_STREAM)
            s4.bind((self.host, self.want_port))
            port = s4.getsockname()[1]
            listeners = [s4]
            if self.dual_stack:
                s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
                s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    s6.bind((LOOPBACK6, port))
                except OSError:
                    s6.close()
                    s4.close()
                    continue
                listeners.append(s6)
            break
        else:
            raise RuntimeError("could not bind a dual-stack loopback port")
        for s in listeners:
            s.listen(128)
            s.settimeout(0.2)
        self.listeners = listeners
        self.port = port
        self.thread = threading.Thread(target=self._accept_loop, name=self.name, daemon=True)
        self.thread.start()
        return self

    def _accept_loop(self):
        while not self.stopped:
            try:
                ready, _, _ = select.select(self.listeners, [], [], 0.2)
            except (OSError, ValueError):
                return
            for ls in ready:
                try:
                    sock, _ = ls.accept()
                except (socket.timeout, BlockingIOError):
                    continue
                except OSError:
                    return
                sock.settimeout(UPSTREAM_TIMEOUT)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with self.lock:
                    self.accepts += 1
                    self.conns.append(sock)
                threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock):
        try:
            if self.tls:
                try:
                    sock = self.ctx.wrap_socket(sock, server_side=True)
                except (ssl.SSLError, OSError) as e:
                    with self.lock:
                        self.handshake_errors.append(repr(e))
                    return
                with self.lock:
                    self.handshakes += 1
                    self.conns.append(sock)
            conn = UpstreamConn(self, sock)
            try:
                self.handler(conn)
            except Exception as e:  # recorded; a test that cares asserts on errors
                if not self.stopped:
                    with self.lock:
                        self.errors.append("%s: %r" % (type(e).__name__, e))
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def stop(self):
        self.stopped = True
        for s in self.listeners:
            try:
                s.close()
            except OSError:
                pass
        with self.lock:
            conns = list(self.conns)
        for s in conns:
            try:
                socket.socket.shutdown(s, socket.SHUT_RDWR)
            except OSError:
                pass
        if self.thread:
            self.thread.join(2)


# ----- ready-made handlers --------------------------------------------------------------------

def _json_bytes(obj):
    return json.dumps(obj, sort_keys=True).encode("utf-8")


def echo_json(req):
    body = req.body
    return {
        "method": req.method,
        "target": req.target,
        "version": req.version,
        "headers": [[k, v] for k, v in req.headers.items],
        "framing": req.framing,
        "body_len": len(body),
        "body_sha256": sha256(body),
        "body": body.decode("latin-1") if len(body) <= 65536 else None,
        "trailers": [[k, v] for k, v in req.trailers.items],
    }


def _ws_serve(conn, req, first_message=b"hello from upstream"):
    key = req.headers.get("sec-websocket-key", "")
    head = build_response(101, "Switching Protocols", [
        ("Upgrade", "websocket"), ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", ws_accept(key))])
    # The 101 and the first server frame go out in one write: the proxy gets both in one read
    # and must hand the bytes past the head to the pipe (overflow).
    conn.sendall(head + ws_encode(WS_TEXT, first_message, masked=False))
    while True:
        fin, opcode, payload, masked = ws_read_frame(conn.reader)
        check(masked, "client frame not masked")
        if opcode == WS_CLOSE:
            conn.sendall(ws_encode(WS_CLOSE, payload[:2], masked=False))
            return
        if opcode == WS_PING:
            conn.sendall(ws_encode(WS_PONG, payload, masked=False))
            continue
        conn.sendall(ws_encode(opcode, payload, masked=False, fin=fin))


def _sse(conn, count, interval):
    conn.sendall(build_response(200, "OK", [
        ("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"),
        ("Transfer-Encoding", "chunked")]))
    for i in range(count):
        if i:
            time.sleep(interval)
        event = ("id: %d\ndata: {\"i\": %d, \"t\": %.6f}\n\n" % (i, i, time.monotonic())).encode()
        conn.sendall(b"%x\r\n" % len(event) + event + b"\r\n")
    conn.sendall(b"0\r\n\r\n")


def app_handler(conn):
    """The default upstream: a keep-alive loop over routes chosen by path.

    /mirror            body back as is, Content-Length, X-Body-Sha256 of the request body
    /chunked-trailers  chunked body in 4 chunks with trailer X-Checksum (sha256 of the body)
    /status/N          N with no body (204, 304), or with a JSON body otherwise
    /until-close       body delimited by closing the connection (no length, no chunking)
    /download/N        N bytes of content_chunks(N) with Content-Length
    /sse               5 events 200 ms apart, chunked, each with its send time
    /ws                WebSocket echo when an upgrade is asked (101 + first frame together)
    /unsolicited-101   101 Switching Protocols to any request
    HEAD anything      Content-Length: 1234 and no body
    anything else      JSON echo of the request (see echo_json)
    A request with Expect: 100-continue gets a 100 before its body is read.
    """
    while True:
        req = conn.read_request(read_body=False)
        if req is None:
            return
        if req.headers.get("expect", "").lower() == "100-continue":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        read_request_body(conn.reader, req)
        path = req.target.split("?")[0]
        close = req.headers.has_token("connection", "close")
        ka = [("Connection", "close")] if close else []
        if req.method == "HEAD":
            conn.sendall(build_response(200, "OK", [("Content-Length", "1234"),
                                                    ("Content-Type", "text/plain")] + ka))
        elif path == "/mirror":
            conn.sendall(build_response(200, "OK", [
                ("Content-Length", str(len(req.body))), ("X-Body-Sha256", sha256(req.body)),
                ("Content-Type", "application/octet-stream")] + ka, req.body))
        elif path == "/chunked-trailers":
            pieces = [b"alpha-" * 10, b"beta-" * 1000, b"gamma", b"delta-" * 5000]
            body = b"".join(pieces)
            conn.sendall(build_response(200, "OK", [
                ("Transfer-Encoding", "chunked"), ("Trailer", "X-Checksum")] + ka) +
                encode_chunked(pieces, [("X-Checksum", sha256(body))]))
        elif path.startswith("/status/"):
            code = int(path[len("/status/"):])
            if code in (204, 304):
                extra = [("ETag", '"v1"')] if code == 304 else []
                conn.sendall(build_response(code, "No Body", extra + ka))
            else:
                b = _json_bytes({"status": code})
                conn.sendall(build_response(code, "Status", [
                    ("Content-Length", str(len(b)))] + ka, b))
        elif path == "/until-close":
            conn.sendall(build_response(200, "OK", [("Connection", "close"),
                                                    ("Content-Type", "text/plain")]))
            for c in content_chunks(300000, 65536):
                conn.sendall(c)
            return
        elif path.startswith("/download/"):
            n = int(path[len("/download/"):])
            conn.sendall(build_response(200, "OK", [
                ("Content-Length", str(n)), ("Content-Type", "application/octet-stream")] + ka))
            for c in content_chunks(n):
                conn.sendall(c)
        elif path == "/sse":
            _sse(conn, 5, 0.2)
        elif path == "/ws" and req.headers.has_token("connection", "upgrade"):
            _ws_serve(conn, req)
            return
        elif path == "/unsolicited-101":
            conn.sendall(build_response(101, "Switching Protocols", [
                ("Upgrade", "websocket"), ("Connection", "Upgrade")]) + b"raw bytes after 101")
            conn.reader.wait_eof(UPSTREAM_TIMEOUT)
            return
        else:
            b = _json_bytes(echo_json(req))
            conn.sendall(build_response(200, "OK", [
                ("Content-Type", "application/json"), ("Content-Length", str(len(b)))] + ka, b))
        if close:
            return


def ws_bad_accept_handler(conn):
    """Answers an upgrade request with a 101 whose Sec-WebSocket-Accept is wrong."""
    req = conn.read_request()
    if req is None:
        return
    conn.sendall(build_response(101, "Switching Protocols", [
        ("Upgrade", "websocket"), ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", ws_accept("not-the-client-key"))]))
    conn.reader.wait_eof(UPSTREAM_TIMEOUT)


def silent_handler(conn):
    """Accepts TCP and never says a word (use with tls=False: the TLS handshake never ends)."""
    conn.reader.wait_eof(UPSTREAM_TIMEOUT)


# ---------------------------------------------------------------------------------------------
# Policy and the airlock process.
# ---------------------------------------------------------------------------------------------

def endpoint(host, port, access="full", **extra):
    ep = {"host": host, "port": port, "access": access,
          "allowed_ips": ["127.0.0.0/8", "::1/128"]}
    ep.update(extra)
    return ep


def write_policy(path, endpoints, name="e2e"):
    doc = {"version": 1, "network_policies": {name: {"endpoints": list(endpoints)}}}
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
    return path


class BlackholeListener:
    """A loopback port whose accept queue is full: the kernel drops further SYNs, so a connect
    to it hangs (until the connector's own timeout). Use as a context manager; yields the port.
    host is 127.0.0.1 or ::1; port 0 picks a free one."""

    def __init__(self, host=LOOPBACK4, port=0):
        self.host = host
        self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.want_port = port
        self.listener = None
        self.fillers = []

    def __enter__(self):
        self.listener = socket.socket(self.family, socket.SOCK_STREAM)
        if self.family == socket.AF_INET6:
            self.listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        self.listener.bind((self.host, self.want_port))
        self.listener.listen(0)
        port = self.listener.getsockname()[1]
        # listen(0) queues one connection; a few more make sure the queue stays full.
        for _ in range(3):
            f = socket.socket(self.family, socket.SOCK_STREAM)
            f.setblocking(False)
            try:
                f.connect((self.host, port))
            except BlockingIOError:
                pass
            self.fillers.append(f)
        time.sleep(0.2)
        probe = socket.socket(self.family, socket.SOCK_STREAM)
        probe.settimeout(0.5)
        try:
            probe.connect((self.host, port))
            connected = True
        except (socket.timeout, TimeoutError):
            connected = False
        finally:
            probe.close()
        if connected:
            self.__exit__()
            raise AssertionError("could not fill the accept queue of a loopback listener")
        return port

    def __exit__(self, *exc):
        for f in self.fillers:
            f.close()
        if self.listener:
            self.listener.close()
        return False


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((LOOPBACK4, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _tail(path, n=40):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


class Airlock:
    """One airlock process. The CA dir is made by `airlock ca init` first."""

    def __init__(self, binary, workdir, policy, upstream_ca, args=(), env=None, wrapper=()):
        self.binary = binary
        self.wrapper = list(wrapper)  # a command that execs airlock: prlimit, unshare ...
        self.workdir = workdir
        self.policy = policy
        self.upstream_ca = upstream_ca
        self.args = list(args)
        self.env = env
        self.ca_dir = os.path.join(workdir, "ca")
        self.ca_pem = os.path.join(self.ca_dir, "ca.pem")
        self.log_path = os.path.join(workdir, "airlock.log")
        self.stderr_path = os.path.join(workdir, "stderr.txt")
        self.proc = None
        self.port = None
        self.returncode = None
        self.clients = []
        self.died_early = False
        self.start_failed = False
        self._stderr = None

    def start(self):
        r = subprocess.run([self.binary, "ca", "init", "--dir", self.ca_dir],
                           capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
        check(r.returncode == 0, "airlock ca init exited %d: %s" % (
            r.returncode, (r.stdout + r.stderr).decode("utf-8", "replace")))
        for f in ("ca.pem", "ca.key", "bundle.pem"):
            check(os.path.exists(os.path.join(self.ca_dir, f)), "ca init did not write " + f)
        mode = os.stat(os.path.join(self.ca_dir, "ca.key")).st_mode & 0o777
        check(mode == 0o600, "ca.key mode is %o, want 600" % mode)
        self.port = free_port()
        cmd = self.wrapper + [self.binary, "run", "--listen", "%s:%d" % (LOOPBACK4, self.port),
               "--ca-dir", self.ca_dir, "--policy", self.policy,
               "--upstream-ca", self.upstream_ca, "--log", self.log_path,
               "--log-format", "json", "--workers", "1"] + self.args
        self.cmd = cmd
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._stderr,
                                     stderr=self._stderr, env=self.env)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                self.start_failed = True  # reported here; stop() does not report it again
                raise AssertionError("airlock exited %d at start: %s" % (
                    self.proc.returncode, _tail(self.stderr_path)))
            try:
                probe = socket.create_connection((LOOPBACK4, self.port), timeout=1)
                probe.close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("airlock did not accept on port %d within %ds" % (
                        self.port, START_TIMEOUT))
                time.sleep(0.05)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def connect(self, timeout=SOCK_TIMEOUT, rcvbuf=None):
        """A plain TCP connection to the proxy port, closed at stop()."""
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.connect((LOOPBACK4, self.port))
        self.clients.append(s)
        return s

    def log_lines(self):
        out = []
        try:
            with open(self.log_path, "rb") as f:
                for line in f.read().decode("utf-8", "replace").splitlines():
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        obj = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(obj, dict):
                        out.append(obj)
        except OSError:
            pass
        return out

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS for pid %d" % self.proc.pid)

    def close_clients(self):
        for s in self.clients:
            try:
                s.close()
            except OSError:
                pass
        self.clients = []

    def terminate(self, timeout=STOP_TIMEOUT):
        """SIGTERM and wait; returns (exit code or None on overrun, seconds taken)."""
        if self.proc.poll() is not None:
            self.returncode = self.proc.returncode
            self.died_early = True
            return self.returncode, 0.0
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None, time.monotonic() - t0
        return self.returncode, time.monotonic() - t0

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        if self._stderr:
            self._stderr.close()
            self._stderr = None

    def stop(self):
        """Close tracked clients, SIGTERM, and require exit 0 within STOP_TIMEOUT and a stderr
        free of sanitizer reports. Idempotent: a second call re-checks the recorded outcome."""
        if self.proc is None:
            return
        self.close_clients()
        if self.returncode is None:
            rc, took = self.terminate()
            if rc is None:
                self.kill()
                raise AssertionError("airlock did not exit within %ds of SIGTERM" % STOP_TIMEOUT)
        if self._stderr:
            self._stderr.close()
            self._stderr = None
        if self.start_failed:
            return
        err = self.stderr_text()
        for mark in SANITIZER_MARKS:
            check(mark not in err, "sanitizer report in airlock stderr (%s)" % mark)
        if self.returncode != 0:
            how = ("killed by signal %d" % -self.returncode if self.returncode < 0
                   else "exited %d" % self.returncode)
            when = "before SIGTERM" if self.died_early else "after SIGTERM, want exit 0"
            raise AssertionError("airlock %s %s" % (how, when))

    def diagnostics(self, n=40):
        return "--- airlock %s\n--- stderr (tail):\n%s\n--- log (tail):\n%s" % (
            " ".join(getattr(self, "cmd", [self.binary])), _tail(self.stderr_path, n),
            _tail(self.log_path, n))


def find_log(airlock, pred, timeout=3.0):
    """Log lines matching pred, waiting up to timeout (the log has a writer thread). If none
    appear and airlock is still running, stop it (which flushes the log) and look again."""
    lines = wait_until(lambda: [l for l in airlock.log_lines() if pred(l)], timeout)
    if not lines and airlock.alive():
        airlock.stop()
        lines = [l for l in airlock.log_lines() if pred(l)]
    return lines


# ---------------------------------------------------------------------------------------------
# Clients.
# ---------------------------------------------------------------------------------------------

def client_ctx(cafile, check_hostname=True, alpn=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.options |= getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    if check_hostname:
        ctx.load_verify_locations(cafile)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def tls_wrap(sock, server_hostname, cafile=None, check_hostname=True, airlock=None):
    """TLS over an open tunnel. cafile defaults to airlock.ca_pem; verification and hostname
    checking are on unless check_hostname is False."""
    if cafile is None and airlock is not None:
        cafile = airlock.ca_pem
    ctx = client_ctx(cafile, check_hostname)
    s = ctx.wrap_socket(sock, server_hostname=server_hostname)
    if airlock is not None:
        airlock.clients.append(s)
    return s


def connect_tunnel(airlock, host, port, timeout=SOCK_TIMEOUT):
    """CONNECT host:port through airlock: (status, Headers, body, socket). The body is read
    when the status is not 2xx. The socket is tracked by airlock (closed at stop)."""
    resp, sock = connect_tunnel_resp(airlock, host, port, timeout)
    return resp.status, resp.headers, resp.body, sock


def connect_tunnel_resp(airlock, host, port, timeout=SOCK_TIMEOUT, extra_headers=(),
                        rcvbuf=None):
    """connect_tunnel's work: (Response, socket); Response.reader holds whatever was read
    past the response, for wait_eof()."""
    sock = airlock.connect(timeout, rcvbuf)
    auth = "%s:%s" % (("[%s]" % host) if ":" in host else host, port)
    sock.sendall(build_request("CONNECT", auth, [("Host", auth)] + list(extra_headers)))
    reader = Reader(sock)
    resp = read_response_head(reader)
    if 200 <= resp.status < 300:
        check(not reader.buf, "bytes after the CONNECT 2xx head: %r" % _short(bytes(reader.buf)))
    else:
        h = resp.headers
        if h.has("content-length"):
            resp.body = reader.read_exact(int(h.get("content-length")))
        elif h.has_token("transfer-encoding", "chunked"):
            resp.body, resp.trailers = read_chunked(reader)
        else:
            resp.body = reader.read_to_eof(1 << 20)
    resp.reader = reader
    return resp, sock


class HttpClient:
    """A raw HTTP/1.1 client over one (usually TLS) socket."""

    def __init__(self, sock, host_header):
        self.sock = sock
        self.host = host_header
        self.reader = Reader(sock)

    def send(self, data):
        self.sock.sendall(data)

    def send_request(self, method, target, headers=None, body=None, host=True):
        hs = []
        if host:
            hs.append(("Host", self.host))
        hs += list(headers or [])
        if body is not None and not any(k.lower() in ("content-length", "transfer-encoding")
                                        for k, _ in hs):
            hs.append(("Content-Length", str(len(body))))
        self.send(build_request(method, target, hs, body))

    def request(self, method, target, headers=None, body=None):
        self.send_request(method, target, headers, body)
        r, _ = read_final_response(self.reader, method)
        return r

    def read_response(self, method="GET"):
        return read_response(self.reader, method)

    def wait_closed(self, timeout):
        return self.reader.wait_eof(timeout)


def open_tunnel(airlock, host, port, sni=None, timeout=SOCK_TIMEOUT, rcvbuf=None):
    """CONNECT, require 200, TLS with verification against airlock's CA: an HttpClient whose
    Host header is host:port."""
    resp, sock = connect_tunnel_resp(airlock, host, port, timeout, rcvbuf=rcvbuf)
    check(resp.status == 200, "CONNECT %s:%s answered %d %s %r" % (
        host, port, resp.status, resp.reason, _short(resp.body)))
    tls = tls_wrap(sock, sni or host, airlock=airlock)
    hh = "%s:%d" % (("[%s]" % host) if ":" in host else host, port)
    return HttpClient(tls, hh)


def tunnel_answer(airlock, host, port, sni=None, timeout=SOCK_TIMEOUT):
    """What a tunnel to host:port gives a TLS client: the CONNECT's status when it is not 200,
    else the response to a first GET inside the tunnel (airlock answers 200 once the upstream's
    TCP connect succeeds; an upstream TLS failure is then a 502 inside the client's completed
    handshake). Returns (status, parsed JSON body or None, whether it came inside TLS)."""
    resp, sock = connect_tunnel_resp(airlock, host, port, timeout)
    if resp.status != 200:
        sock.close()
        return resp.status, _json_or_none(resp.body), False
    try:
        tls = tls_wrap(sock, sni or host, airlock=airlock)
        hh = "%s:%d" % (("[%s]" % host) if ":" in host else host, port)
        r = HttpClient(tls, hh).request("GET", "/")
        return r.status, _json_or_none(r.body), True
    finally:
        sock.close()


def _json_or_none(body):
    try:
        return json.loads(body)
    except (ValueError, TypeError):
        return None


def forward_client(airlock, timeout=SOCK_TIMEOUT):
    """A plain connection to the proxy for absolute-form (forward proxy) requests."""
    return HttpClient(airlock.connect(timeout), None)


# ---------------------------------------------------------------------------------------------
# The per-test environment.
# ---------------------------------------------------------------------------------------------

class Env:
    """What a test gets: the binary, the run's PKI, a scratch dir, and factories whose products
    are cleaned up after the test (clients closed, airlock stopped with exit-0 and sanitizer
    checks, upstreams stopped)."""

    def __init__(self, binary, pki, tmpdir, verbose=False):
        self.binary = binary
        self.pki = pki
        self.tmp = tmpdir
        self.verbose = verbose
        self.airlocks = []
        self.upstreams = []
        self._n = 0

    def path(self, name):
        return os.path.join(self.tmp, name)

    def upstream(self, handler=app_handler, tls=True, cert=None, dual_stack=False,
                 host=LOOPBACK4, port=0):
        up = Upstream(handler, tls=tls, cert=cert or self.pki.leaf, dual_stack=dual_stack,
                      name="upstream-%d" % len(self.upstreams), host=host, port=port)
        self.upstreams.append(up)
        return up.start()

    def policy(self, endpoints):
        self._n += 1
        return write_policy(self.path("policy-%d.json" % self._n), endpoints)

    def airlock(self, upstreams=(), endpoints=(), args=(), hosts=(LOOPBACK4, "localhost"),
                wrapper=()):
        """Start airlock with a policy allowing every given upstream's port under each of hosts,
        plus the extra endpoints. wrapper: a command line that execs airlock's (prlimit ...)."""
        eps = [endpoint(h, up.port) for up in upstreams for h in hosts] + list(endpoints)
        self._n += 1
        workdir = self.path("airlock-%d" % self._n)
        os.makedirs(workdir)
        pol = write_policy(os.path.join(workdir, "policy.json"), eps)
        al = Airlock(self.binary, workdir, pol, self.pki.ca.cert, args, wrapper=wrapper)
        self.airlocks.append(al)
        return al.start()

    def tunnel(self, handler=app_handler, args=(), host=LOOPBACK4):
        """The common setup: one TLS upstream, airlock allowing it, and an open TLS tunnel to
        it. Returns (upstream, airlock, HttpClient)."""
        up = self.upstream(handler, dual_stack=(host != LOOPBACK4))
        al = self.airlock([up], args=args)
        return up, al, open_tunnel(al, host, up.port)

    def run_cli(self, args, timeout=30):
        return subprocess.run([self.binary] + list(args), capture_output=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def cleanup(self):
        """Stop everything; returns a list of failures (non-zero exit, sanitizer reports)."""
        errors = []
        for al in self.airlocks:
            try:
                al.stop()
            except AssertionError as e:
                errors.append(str(e))
            finally:
                al.kill()
        for up in self.upstreams:
            up.stop()
        return errors

    def diagnostics(self):
        return "\n".join(al.diagnostics() for al in self.airlocks)


def make_run_dir():
    return tempfile.mkdtemp(prefix="airlock-e2e-")


def remove_run_dir(d):
    shutil.rmtree(d, ignore_errors=True)
