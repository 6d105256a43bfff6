# SPDX-License-Identifier: MIT
"""HTTP/2 through airlock, attacked from both ends: a hostile client inside the sandbox and a
hostile upstream. Each test is the reproducer of a defect a hostile review found (its docstring
says which). The client speaks raw frames (hyperframe and hpack), so it can send what a
well-behaved library would not; the upstream is python-h2 with its checks off, over TLS with
ALPN h2. Needs python3-h2."""

import json
import secrets
import socket
import ssl
import threading
import time

from harness import (LOOPBACK4, Skip, Upstream, check, check_eq, client_ctx, connect_tunnel_resp,
                     wait_until)
from support import loopback_ep, policy_doc, providers_doc, start_airlock

try:
    import h2.config
    import h2.connection
    import h2.events
    import h2.settings
    import hpack
    import hyperframe.frame as hf
except ImportError:
    h2 = None

PLACEHOLDER = "AIRLOCK_PLACEHOLDER_H2_0123456789"
SECRET = "airlockh2canary" + secrets.token_hex(16)

# RFC 9113 §7 error codes.
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, REFUSED_STREAM, CANCEL, ENHANCE_YOUR_CALM = (
    0, 1, 2, 7, 8, 11)


def _need_h2():
    if h2 is None:
        raise Skip("python3-h2 is not installed")


def _text(v):
    return v.decode("latin-1") if isinstance(v, bytes) else v


# ---------------------------------------------------------------------------------------------
# A python-h2 upstream.
# ---------------------------------------------------------------------------------------------

class H2Request:
    def __init__(self, sid, headers):
        self.sid = sid
        self.headers = [(_text(k), _text(v)) for k, v in headers]
        self.body = b""

    def get(self, name):
        return next((v for k, v in self.headers if k == name), None)


class H2Upstream(Upstream):
    """A TLS upstream that selects h2 and serves each connection with python-h2 (checks off, so
    it can answer what a correct server would not). on_request(conn, sock, req) runs once a
    request ended, on_headers(conn, sock, req) as soon as its headers came; conn is the
    H2Connection, and what they queue on it is sent after each call. settings: the server's
    SETTINGS. Requests (H2Request) are in .requests as they arrive. Another thread may use a
    connection while it holds .h2_lock (see answer_later)."""

    def __init__(self, cert, on_request=None, on_headers=None, settings=None):
        super().__init__(self._serve_h2, cert=cert, name="h2-upstream")
        self.on_request = on_request or answer_json
        self.on_headers = on_headers
        self.settings = settings or {}
        self.h2_lock = threading.RLock()

    def start(self):
        super().start()
        self.ctx.set_alpn_protocols(["h2"])
        return self

    def _serve_h2(self, uc):
        sock = uc.sock
        cfg = h2.config.H2Configuration(client_side=False, validate_inbound_headers=False,
                                        validate_outbound_headers=False,
                                        normalize_outbound_headers=False,
                                        normalize_inbound_headers=False)
        conn = h2.connection.H2Connection(cfg)
        conn.local_settings = h2.settings.Settings(client=False, initial_values=self.settings)
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        reqs = {}
        while True:
            data = sock.recv(65536)
            if not data:
                return
            with self.h2_lock:
                self._on_events(conn, sock, reqs, conn.receive_data(data))
                sock.sendall(conn.data_to_send())

    def _on_events(self, conn, sock, reqs, events):
        for ev in events:
            if isinstance(ev, h2.events.RequestReceived):
                req = reqs[ev.stream_id] = H2Request(ev.stream_id, ev.headers)
                with self.lock:
                    self.requests.append(req)
                if self.on_headers:
                    self.on_headers(conn, sock, req)
            elif isinstance(ev, h2.events.DataReceived):
                reqs[ev.stream_id].body += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id in reqs:
                self.on_request(conn, sock, reqs[ev.stream_id])


def answer_json(conn, sock, req):
    body = json.dumps({"path": req.get(":path"), "body": len(req.body)}).encode()
    conn.send_headers(req.sid, [(":status", "200"), ("content-type", "application/json"),
                                ("content-length", str(len(body)))])
    conn.send_data(req.sid, body, end_stream=True)


def never_answer(conn, sock, req):
    pass


def answer_later(up, delay):
    """An on_request that answers (answer_json) after delay seconds, from another thread."""
    def on_request(conn, sock, req):
        def answer():
            time.sleep(delay)
            with up.h2_lock:
                answer_json(conn, sock, req)
                sock.sendall(conn.data_to_send())
        threading.Thread(target=answer, daemon=True).start()
    return on_request


def h2_upstream(env, on_request=None, on_headers=None, settings=None):
    up = H2Upstream(env.pki.leaf, on_request, on_headers, settings)
    env.upstreams.append(up)
    return up.start()


# ---------------------------------------------------------------------------------------------
# A raw HTTP/2 client through a CONNECT tunnel.
# ---------------------------------------------------------------------------------------------

class RawH2:
    """Frames in and out of an h2 tunnel, with the flow-control bookkeeping a client owes
    (WINDOW_UPDATE for what it read, SETTINGS acknowledged) and nothing else."""

    def __init__(self, tls, authority):
        self.sock = tls
        self.authority = authority
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.buf = b""
        self.frames = []  # every frame received
        self.closed = False
        self.next_sid = 1
        self.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + hf.SettingsFrame(0).serialize())

    def send(self, frame):
        self.sock.sendall(frame if isinstance(frame, bytes) else frame.serialize())

    def request_headers(self, path, method="GET", extra=()):
        return [(":method", method), (":scheme", "https"), (":authority", self.authority),
                (":path", path)] + list(extra)

    def headers_frame(self, sid, headers, end=True):
        f = hf.HeadersFrame(sid, flags=["END_HEADERS"] + (["END_STREAM"] if end else []))
        f.data = self.enc.encode(headers)
        return f

    def data_frame(self, sid, data, end=False):
        return hf.DataFrame(sid, data, flags=["END_STREAM"] if end else [])

    def request(self, path, method="GET", extra=(), end=True):
        """HEADERS for a new stream; returns its id."""
        sid = self.next_sid
        self.next_sid += 2
        self.send(self.headers_frame(sid, self.request_headers(path, method, extra), end))
        return sid

    def read(self, timeout):
        """The frames that came within timeout: it returns once some came and no more bytes
        are waiting (or at the close)."""
        self.sock.settimeout(timeout)
        got = []
        while not self.closed:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                break
            except (ssl.SSLError, OSError):
                data = b""
            if not data:
                self.closed = True
                break
            self.buf += data
            got += self._parse()
            self.sock.settimeout(0.01)  # what is already on its way
        self.frames += got
        return got

    def _parse(self):
        got = []
        while len(self.buf) >= 9:
            f, length = hf.Frame.parse_frame_header(memoryview(self.buf[:9]))
            if len(self.buf) < 9 + length:
                break
            f.parse_body(memoryview(self.buf[9:9 + length]))
            self.buf = self.buf[9 + length:]
            if isinstance(f, hf.HeadersFrame):
                f.fields = [(_text(k), _text(v)) for k, v in self.dec.decode(f.data)]
            elif isinstance(f, hf.SettingsFrame) and "ACK" not in f.flags:
                self.send(hf.SettingsFrame(0, flags=["ACK"]))
            elif isinstance(f, hf.DataFrame) and f.flow_controlled_length:
                self.send(hf.WindowUpdateFrame(0, window_increment=f.flow_controlled_length))
            got.append(f)
        return got

    def wait(self, pred, timeout):
        """Read until pred(frame) holds for a received frame, or timeout: that frame or None."""
        deadline = time.monotonic() + timeout
        while True:
            hit = next((f for f in self.frames if pred(f)), None)
            if hit or self.closed or time.monotonic() > deadline:
                return hit
            self.read(max(0.01, deadline - time.monotonic()))

    def stream(self, sid):
        return [f for f in self.frames if f.stream_id == sid]

    def status(self, sid):
        """The :status of the stream's response, or None."""
        for f in self.stream(sid):
            if isinstance(f, hf.HeadersFrame):
                return int(dict(f.fields).get(":status", 0))
        return None

    def reset_code(self, sid):
        return next((f.error_code for f in self.stream(sid) if isinstance(f, hf.RstStreamFrame)),
                    None)

    def goaway(self):
        return next((f for f in self.frames if isinstance(f, hf.GoAwayFrame)), None)

    def ended(self, sid):
        """The stream is over for the client: END_STREAM or RST_STREAM received."""
        return any(f.stream_id == sid and ("END_STREAM" in f.flags or
                                           isinstance(f, hf.RstStreamFrame))
                   for f in self.frames)


def open_h2(al, port, host=LOOPBACK4):
    resp, sock = connect_tunnel_resp(al, host, port)
    check_eq(resp.status, 200, "CONNECT status")
    ctx = client_ctx(al.ca_pem)
    ctx.set_alpn_protocols(["h2"])
    tls = ctx.wrap_socket(sock, server_hostname=host)
    al.clients.append(tls)
    check_eq(tls.selected_alpn_protocol(), "h2", "ALPN the client got")
    c = RawH2(tls, "%s:%d" % (host, port))
    c.read(0.2)  # airlock's SETTINGS
    return c


# ---------------------------------------------------------------------------------------------
# Credentials.
# ---------------------------------------------------------------------------------------------

# Response fields HTTP/2 forbids, each with the credential the upstream received.
_BAD_FIELDS = {"/space-in-name": lambda auth: ("x echo", auth),
               "/upper-case-name": lambda auth: ("X-Echo", auth),
               "/trailing-space": lambda auth: ("x-echo", auth + " ")}


def _echo_credential_in_a_bad_field(conn, sock, req):
    """An upstream that reflects the Authorization it received in a response field that
    nghttp2 refuses (the stream is reset, and relayed as 502)."""
    bad = _BAD_FIELDS[req.get(":path")](req.get("authorization") or "")
    conn.send_headers(req.sid, [(":status", "200"), bad, ("content-length", "2")])
    conn.send_data(req.sid, b"ok", end_stream=True)


def test_h2_invalid_response_field_with_a_secret_stays_out_of_the_log(env):
    """nghttp2 reports a field it refuses with the field's name and value, and airlock logged
    that text: an upstream that echoed the injected credential in a bad field put the secret
    in airlock's log."""
    _need_h2()
    up = h2_upstream(env, _echo_credential_in_a_bad_field)
    prov = {"test": {"placeholder": PLACEHOLDER, "secret": {"env": "AIRLOCK_H2_SECRET"},
                     "endpoints": [{"host": LOOPBACK4, "port": up.port}]}}
    al = start_airlock(env, policy_doc({"apis": [loopback_ep(LOOPBACK4, up.port,
                                                             access="full")]}),
                       providers=providers_doc(prov), extra_env={"AIRLOCK_H2_SECRET": SECRET})
    c = open_h2(al, up.port)
    auth = [("authorization", "Bearer " + PLACEHOLDER)]
    sids = [c.request(path, extra=auth) for path in _BAD_FIELDS]
    c.wait(lambda f: all(c.ended(sid) for sid in sids), 5)
    for sid, path in zip(sids, _BAD_FIELDS):
        check_eq(c.status(sid), 502, "status of the response to %s" % path)
    check(wait_until(lambda: len(up.requests) == len(sids), 2), "the upstream saw the requests")
    check_eq(up.requests[0].get("authorization"), "Bearer " + SECRET, "credential upstream")
    al.stop()
    for what, text in (("log file", al.log_text()), ("stdout/stderr", al.stderr_text())):
        check(SECRET not in text, "the secret appears in airlock's %s" % what)


# ---------------------------------------------------------------------------------------------
# A hostile upstream.
# ---------------------------------------------------------------------------------------------

def _literal_block(fields):
    """An HPACK block of literals never indexed: it leaves the peer's table as it was."""
    out = b""
    for name, value in fields:
        name, value = name.encode(), value.encode()
        out += (b"\x10" + hpack.hpack.encode_integer(len(name), 7) + name +
                hpack.hpack.encode_integer(len(value), 7) + value)
    return out


def _break_the_protocol(conn, sock, req):
    """Answers what RFC 9113 makes a connection error: a PUSH_PROMISE although airlock said
    SETTINGS_ENABLE_PUSH 0 (§8.4), or DATA before any response HEADERS (§8.1)."""
    sock.sendall(conn.data_to_send())
    if req.get(":path") == "/push":
        f = hf.PushPromiseFrame(req.sid, promised_stream_id=2, flags=["END_HEADERS"])
        f.data = _literal_block([(":method", "GET"), (":scheme", "https"),
                                 (":authority", req.get(":authority")), (":path", "/pushed")])
        sock.sendall(f.serialize())
    else:
        sock.sendall(hf.DataFrame(req.sid, b"early").serialize())


def test_h2_upstream_protocol_error_ends_the_client_connection(env):
    """An upstream that broke the protocol got its GOAWAY, but the client's session went on:
    the stream waiting for it hung until the response timeout, later streams were refused one
    by one, and the client never heard GOAWAY. Now its streams are answered 502 and the client
    gets GOAWAY and the close, as when the upstream closes."""
    _need_h2()
    up = h2_upstream(env, _break_the_protocol)
    al = env.airlock([up])
    for path in ("/push", "/data-first"):
        c = open_h2(al, up.port)
        sid = c.request(path)
        c.wait(lambda f: c.closed, 3)
        check(c.closed, "%s: the client's connection is still open" % path)
        check_eq(c.status(sid), 502, "%s: status of the stream" % path)
        g = c.goaway()
        check(g is not None, "%s: no GOAWAY to the client" % path)


# ---------------------------------------------------------------------------------------------
# A hostile client: resets, floods, memory.
# ---------------------------------------------------------------------------------------------

def test_h2_streams_the_client_makes_airlock_reset_count_as_resets(env):
    """The rapid-reset budget counted only RST_STREAM frames the client sent. A client that
    makes airlock reset its streams instead (MadeYouReset, CVE-2025-8671: here more DATA than
    its content-length, which nghttp2 answers with RST_STREAM PROTOCOL_ERROR) opened and
    dropped streams without end, each one a request airlock may have sent upstream."""
    _need_h2()
    up = h2_upstream(env, never_answer)
    al = env.airlock([up])
    c = open_h2(al, up.port)
    for _ in range(300):  # one at a time: the throttle to 10 streams plays no part
        sid = c.request("/upload", "POST", [("content-length", "1")], end=False)
        c.send(c.data_frame(sid, b"too long"))
        c.wait(lambda f: c.ended(sid) or isinstance(f, hf.GoAwayFrame), 2)
        if c.closed or c.goaway():
            break
        check_eq(c.reset_code(sid), PROTOCOL_ERROR, "reset of stream %d" % sid)
    g = c.goaway()
    check(g is not None, "no GOAWAY after 300 streams reset for breaking the rules")
    check_eq(g.error_code, ENHANCE_YOUR_CALM, "GOAWAY's error code")
    check(g.last_stream_id < 2 * 260, "GOAWAY came only after stream %d" % g.last_stream_id)


def test_h2_streams_reset_while_their_request_waits_upstream_are_bounded(env):
    """A request waits in nghttp2's queue while the upstream's SETTINGS_MAX_CONCURRENT_STREAMS
    are all taken, and a stream the client resets meanwhile stays in airlock (its relay, its
    queued request) until the upstream frees a slot, which a hostile or busy upstream never
    does: opening and resetting streams grew airlock by kilobytes each, without bound. Now
    they count against the client's concurrent streams, and past them a stream is refused
    (until the upstream frees its slot)."""
    _need_h2()
    up = h2_upstream(env, settings={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1})
    up.on_request = answer_later(up, 1.5)
    al = env.airlock([up])
    c = open_h2(al, up.port)
    slow = c.request("/slow")  # takes the upstream's only slot for 1.5 s
    check(wait_until(lambda: len(up.requests) == 1, 1), "the upstream did not get /slow")
    for _ in range(150):
        sid = c.request("/queued", "POST", end=False)
        c.send(hf.RstStreamFrame(sid, error_code=CANCEL))
    probe = c.request("/probe")
    c.wait(lambda f: c.ended(probe), 3)
    check_eq(c.reset_code(probe), REFUSED_STREAM,
             "reset of a stream opened past the concurrent streams airlock holds")
    c.wait(lambda f: c.ended(slow), 3)
    check_eq(c.status(slow), 200, "status of /slow")
    after = c.request("/after")  # the reset ones left with the slot: room again
    c.wait(lambda f: c.ended(after), 3)
    check_eq(c.status(after), 200, "status of a request once the upstream freed its slot")
    check(c.goaway() is None, "GOAWAY: %r" % c.goaway())


def _big_or_quiet(up):
    """/big: as much body as the stream's window takes, and no end. /quiet: the head, then
    one late DATA frame that ends the response after 2.5 s (a quiet stream, such as a gRPC
    stream between two messages)."""
    def on_request(conn, sock, req):
        conn.send_headers(req.sid, [(":status", "200")])
        if req.get(":path") == "/big":
            left = conn.local_flow_control_window(req.sid)
            while left > 0:
                n = min(left, conn.max_outbound_frame_size)
                conn.send_data(req.sid, b"b" * n)
                left -= n
            return

        def late():
            time.sleep(2.5)
            with up.h2_lock:
                conn.send_data(req.sid, b"late", end_stream=True)
                sock.sendall(conn.data_to_send())
        threading.Thread(target=late, daemon=True).start()
    return on_request


def test_h2_stream_whose_reader_stalled_is_reset_after_the_response_timeout(env):
    """Streams with a response under way were never cut, so a client that opened no window
    (or an upstream that read no request body) held the stream, its upstream stream and up to
    the connection's window of bytes in airlock for good, where HTTP/1.1 gives up on a
    response that stopped moving after --response-timeout. Now a stream with bytes waiting for
    a side that took none for a whole --response-timeout is reset; a quiet stream, with
    nothing waiting, is left alone."""
    _need_h2()
    up = h2_upstream(env)
    up.on_request = _big_or_quiet(up)
    al = env.airlock([up], args=["--response-timeout", "1"])
    c = open_h2(al, up.port)
    c.send(hf.SettingsFrame(0, settings={hf.SettingsFrame.INITIAL_WINDOW_SIZE: 0}))
    big = c.request("/big")
    quiet = c.request("/quiet")
    c.send(hf.WindowUpdateFrame(quiet, window_increment=1000))
    c.wait(lambda f: c.ended(big) and c.ended(quiet), 5)
    check_eq(c.status(big), 200, "status of /big")
    check_eq(c.reset_code(big), CANCEL, "reset of /big, whose reader opened no window")
    check_eq(c.status(quiet), 200, "status of /quiet")
    body = b"".join(f.data for f in c.stream(quiet) if isinstance(f, hf.DataFrame))
    check_eq(body, b"late", "body of /quiet")
    check_eq(c.reset_code(quiet), None, "reset of /quiet")


def test_h2_a_flood_of_refused_streams_gets_goaway(env):
    """On HTTP/1.1 a refusal ends the connection; on one HTTP/2 connection a client could have
    thousands of streams refused a second, each a 403 and a log line, for free. A refused
    stream costs from the same budget as a reset one: GOAWAY ENHANCE_YOUR_CALM past it, while
    refusals mixed with requests that complete go on."""
    _need_h2()
    up = h2_upstream(env, answer_json)
    al = start_airlock(env, policy_doc({"p": [loopback_ep(
        LOOPBACK4, up.port, access="full",
        deny_rules=[{"method": "*", "path": "/admin/**"}])]}))
    mixed = open_h2(al, up.port)
    for i in range(150):  # as many refused as completed: never throttled, never cut
        for path, want in (("/admin/x", 403), ("/ok", 200)):
            sid = mixed.request(path)
            mixed.wait(lambda f: mixed.ended(sid), 3)
            check_eq(mixed.status(sid), want, "status of %s, round %d" % (path, i))
    check(mixed.goaway() is None, "GOAWAY to a client whose refusals are matched by answers")
    flood = open_h2(al, up.port)
    for _ in range(400):
        sid = flood.request("/admin/x")
        flood.wait(lambda f: flood.ended(sid) or isinstance(f, hf.GoAwayFrame), 2)
        if flood.closed or flood.goaway():
            break
    g = flood.goaway()
    check(g is not None, "no GOAWAY after 400 refused streams")
    check_eq(g.error_code, ENHANCE_YOUR_CALM, "GOAWAY's error code")
    check(g.last_stream_id < 2 * 260, "GOAWAY came only after stream %d" % g.last_stream_id)
