# SPDX-License-Identifier: MIT
"""HTTP/2 through an inspected tunnel (issue #12, include/airlock/h2.h, docs/http2.md).

ALPN never translates: airlock offers the upstream h2 only when the client offered it and gives
the client exactly what the upstream chose. Inside an h2 tunnel every stream is judged on its own
(policy, :authority, credential placeholders, malformed requests), bodies stream both ways with
trailers, gRPC works through it, hostile clients and upstreams meet the limits of h2.h, and each
stream is one log line and a metric.

The clients and servers are python3-h2 (a frame-level client too, for the attacks), python3-grpcio,
nghttpd (nghttp2-server) and curl; a test whose tool is missing is skipped. Everything is on
127.0.0.1. Helpers: tls_tunnel/h2_client/raw_h2 (client side), h2_upstream (a TLS server that
speaks h2 when ALPN chose it and the harness's HTTP/1.1 app otherwise), nghttpd, grpc_server/
grpc_channel.
"""

import collections
import hashlib
import importlib.util
import json
import os
import queue
import select
import shutil
import socket
import ssl
import subprocess
import threading
import time

from harness import (LOOPBACK4, MIB, SOCK_TIMEOUT, Headers, HttpClient, Reader, Skip, Upstream,
                     app_handler, check, check_eq, client_ctx, connect_tunnel_resp,
                     content_chunks, content_sha256, endpoint, find_log, free_port, open_tunnel,
                     read_response, sha256, wait_until)
from support import loopback_ep, policy_doc, providers_doc, reload, start_airlock, wait_log

try:
    import h2.config
    import h2.connection
    import h2.events
    import h2.exceptions
    import h2.settings
    import hpack
    from hyperframe import frame as hf
    _H2_MISSING = None
except ImportError as e:  # python3-h2 (with hpack and hyperframe)
    _H2_MISSING = str(e)

# include/airlock/h2.h
H2_MAX_STREAMS = 100
H2_MAX_HEADER = 64 * 1024
H2_RESET_BUDGET = 200
H2_CONTROL_BUDGET = 1000

# RFC 9113 §7 error codes and §6.5.2 settings.
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR = 0x0, 0x1, 0x2
REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, ENHANCE_YOUR_CALM = 0x7, 0x8, 0x9, 0xB
S_HEADER_TABLE_SIZE, S_ENABLE_PUSH, S_MAX_CONCURRENT_STREAMS = 0x1, 0x2, 0x3
S_INITIAL_WINDOW_SIZE, S_MAX_FRAME_SIZE, S_MAX_HEADER_LIST_SIZE = 0x4, 0x5, 0x6

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# Fields that RFC 9113 §8.2.2 forbids in HTTP/2 (a message with one is malformed).
CONNECTION_SPECIFIC = ("connection", "keep-alive", "proxy-connection", "transfer-encoding",
                       "upgrade")
SSE_MAX_DELAY = 0.100


def _need_h2():
    if _H2_MISSING:
        raise Skip("python3-h2 is not installed (%s)" % _H2_MISSING)


def _need_grpc():
    if importlib.util.find_spec("grpc") is None:
        raise Skip("python3-grpcio is not installed")


def _need_tool(name, package):
    if not shutil.which(name):
        raise Skip("%s (%s) is not installed" % (name, package))


def _auth(host, port):
    return "%s:%d" % (("[%s]" % host) if ":" in host else host, port)


# ---------------------------------------------------------------------------------------------
# Client side: a CONNECT tunnel with TLS and a chosen ALPN offer, then HTTP/2 over it.
# ---------------------------------------------------------------------------------------------

def tls_tunnel(al, host, port, alpn=("h2", "http/1.1"), timeout=SOCK_TIMEOUT):
    """CONNECT (must be 200), then TLS verified against airlock's CA offering alpn (None: no
    ALPN extension). Returns the TLS socket (tracked by airlock, closed at stop)."""
    resp, sock = connect_tunnel_resp(al, host, port, timeout)
    check(resp.status == 200, "CONNECT %s:%s answered %d %r" % (host, port, resp.status,
                                                               resp.body[:300]))
    ctx = client_ctx(al.ca_pem, alpn=False)
    if alpn is not None:
        ctx.set_alpn_protocols(list(alpn))
    tls = ctx.wrap_socket(sock, server_hostname=host)
    al.clients.append(tls)
    return tls


def _require_h2(tls):
    check_eq(tls.selected_alpn_protocol(), "h2",
             "ALPN protocol airlock selected for a client offering h2 to an h2 upstream")


def h2_client(al, host, port, settings=None):
    """An H2Client over a new tunnel to host:port (ALPN h2 required)."""
    _need_h2()
    tls = tls_tunnel(al, host, port)
    _require_h2(tls)
    return H2Client(tls, _auth(host, port), settings)


def raw_h2(al, host, port, settings=None):
    """A RawH2 over a new tunnel to host:port (ALPN h2 required), preface and SETTINGS sent."""
    _need_h2()
    tls = tls_tunnel(al, host, port)
    _require_h2(tls)
    raw = RawH2(tls, _auth(host, port))
    raw.start(settings or {})
    return raw


class H2Response:
    """What one client stream received. `violations` lists what RFC 9113 forbids in it."""

    def __init__(self, sid):
        self.sid = sid
        self.status = None
        self.headers = []
        self.interim = []
        self.body = bytearray()
        self.data_log = []   # (monotonic arrival time, bytes) per DATA frame
        self.trailers = []
        self.ended = False
        self.reset = None    # the RST_STREAM error code
        self.violations = []

    @property
    def done(self):
        return self.ended or self.reset is not None

    def header(self, name, default=None):
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def trailer(self, name, default=None):
        for k, v in self.trailers:
            if k == name:
                return v
        return default

    def json(self):
        try:
            return json.loads(bytes(self.body).decode("utf-8"))
        except ValueError as e:
            raise AssertionError("stream %d body is not JSON (%s): %r" % (
                self.sid, e, bytes(self.body[:300])))

    def __repr__(self):
        return "<stream %d status=%r ended=%r reset=%r headers=%r body=%r>" % (
            self.sid, self.status, self.ended, self.reset, self.headers, bytes(self.body[:200]))


def _field_violations(fields, what):
    out = []
    for k, v in fields:
        if k != k.lower():
            out.append("%s: upper-case field name %r" % (what, k))
        if k in CONNECTION_SPECIFIC or (k == "te" and v != "trailers"):
            out.append("%s: connection-specific field %s: %s" % (what, k, v))
    return out


class H2Client:
    """An HTTP/2 client (python3-h2) over one TLS socket, driven by the test's thread: request()
    sends, pump()/wait()/response() read. Outbound validation is off so tests can send what a
    hostile client would; inbound validation is off so what airlock sent is recorded and checked
    here (violations) rather than dropped. `received` keeps every decoded field and body byte
    (for secret canaries)."""

    def __init__(self, tls, authority, settings=None):
        self.sock = tls
        self.authority = authority
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                        validate_outbound_headers=False,
                                        normalize_outbound_headers=False,
                                        validate_inbound_headers=False)
        self.conn = h2.connection.H2Connection(cfg)
        if settings:
            self.conn.local_settings = h2.settings.Settings(client=True,
                                                            initial_values=settings)
        self.streams = {}
        self.goaway = None         # the first GOAWAY airlock sent (hyperframe GoAwayFrame)
        self.inbox = bytearray()   # received bytes not yet a complete frame
        self.closed = False
        self.remote_settings = {}
        self.pushes = []           # PushedStreamReceived
        self.received = bytearray()
        self.conn.initiate_connection()
        self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data and not self.closed:
            try:
                self.sock.sendall(data)
            except (OSError, ssl.SSLError):
                self.closed = True

    def stream(self, sid):
        if sid not in self.streams:
            self.streams[sid] = H2Response(sid)
        return self.streams[sid]

    def request(self, method, path, headers=(), body=None, end=True, authority=None,
                scheme="https", fields=None):
        """Open a stream: HEADERS (pseudo-headers from the arguments, or exactly `fields`), then
        body when given; END_STREAM after the last unless end is False. Returns the stream id."""
        sid = self.conn.get_next_available_stream_id()
        if fields is None:
            fields = [(":method", method), (":scheme", scheme),
                      (":authority", authority or self.authority), (":path", path)]
            fields += list(headers)
        self.stream(sid)
        self.conn.send_headers(sid, fields, end_stream=end and body is None)
        self.flush()
        if body is not None:
            self.send_body(sid, body, end)
        return sid

    def send_body(self, sid, data, end=True, timeout=5.0):
        """DATA within the flow-control windows, reading WINDOW_UPDATEs as needed."""
        view = memoryview(data)
        off = 0
        deadline = time.monotonic() + timeout
        while off < len(view):
            s = self.streams[sid]
            check(not s.done and not self.closed,
                  "stream %d ended after %d of %d body bytes: %r goaway=%r" % (
                      sid, off, len(view), s, self.goaway))
            n = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size,
                    len(view) - off)
            if n <= 0:
                check(time.monotonic() < deadline,
                      "flow control never opened after %d of %d body bytes" % (off, len(view)))
                self.pump(0.2)
                continue
            self.conn.send_data(sid, bytes(view[off:off + n]))
            off += n
            self.flush()
        if end:
            self.conn.end_stream(sid)
            self.flush()

    def send_trailers(self, sid, fields):
        self.conn.send_headers(sid, fields, end_stream=True)
        self.flush()

    def pump(self, timeout=0.2):
        """Read once (up to timeout) and handle the events. False once the connection ended."""
        if self.closed:
            return False
        try:
            self.sock.settimeout(timeout)
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return True
        except (OSError, ssl.SSLError):
            data = b""
        if not data:
            self.closed = True
            return False
        self.inbox += data
        try:
            events = self.conn.receive_data(self._without_goaway())
        except h2.exceptions.ProtocolError as e:
            self.flush()
            raise AssertionError("airlock's frames broke HTTP/2 for the client: %r" % e)
        for ev in events:
            self._on_event(ev)
        self.flush()
        return True

    def _without_goaway(self):
        """The complete frames received so far, GOAWAY taken out and recorded: python3-h2 closes
        its state machine on a GOAWAY and would refuse the frames that may still follow for
        streams at or below its last-stream-id (RFC 9113 §6.8)."""
        out = bytearray()
        while len(self.inbox) >= 9:
            n = 9 + int.from_bytes(self.inbox[:3], "big")
            if len(self.inbox) < n:
                break
            frame = bytes(self.inbox[:n])
            del self.inbox[:n]
            if frame[3] == 0x7:
                f, _ = hf.Frame.parse_frame_header(memoryview(frame[:9]))
                f.parse_body(memoryview(frame[9:]))
                if self.goaway is None:
                    self.goaway = f
            else:
                out += frame
        return bytes(out)

    def wait(self, pred, timeout=5.0):
        deadline = time.monotonic() + timeout
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0 or not self.pump(min(left, 0.2)):
                break
        return pred()

    def response(self, sid, timeout=5.0):
        """The stream once it ended or was reset; fails after timeout or on a response that
        breaks RFC 9113 §8.2."""
        s = self.streams[sid]
        self.wait(lambda: s.done, timeout)
        check(s.done, "stream %d neither ended nor reset within %.1fs (connection closed=%r, "
              "goaway=%r): %r" % (sid, timeout, self.closed, self.goaway, s))
        check(not s.violations, "stream %d: %s" % (sid, "; ".join(s.violations)))
        return s

    def get(self, path, headers=(), timeout=5.0, **kw):
        return self.response(self.request("GET", path, headers, **kw), timeout)

    def _on_event(self, ev):
        sid = getattr(ev, "stream_id", None)
        if isinstance(ev, h2.events.ResponseReceived):
            s = self.stream(sid)
            s.headers = list(ev.headers)
            s.status = int(dict(ev.headers).get(":status", "0"))
            s.violations += _field_violations(ev.headers, "response headers")
            self._record_fields(ev.headers)
        elif isinstance(ev, h2.events.InformationalResponseReceived):
            self.stream(sid).interim.append(list(ev.headers))
        elif isinstance(ev, h2.events.TrailersReceived):
            s = self.stream(sid)
            s.trailers = list(ev.headers)
            s.violations += _field_violations(ev.headers, "trailers")
            self._record_fields(ev.headers)
        elif isinstance(ev, h2.events.DataReceived):
            s = self.stream(sid)
            s.body += ev.data
            s.data_log.append((time.monotonic(), ev.data))
            self.received += ev.data
            if ev.flow_controlled_length:
                try:
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                    pass
        elif isinstance(ev, h2.events.StreamEnded):
            self.stream(sid).ended = True
        elif isinstance(ev, h2.events.StreamReset):
            self.stream(sid).reset = ev.error_code
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            for k, v in ev.changed_settings.items():
                self.remote_settings[int(k)] = v.new_value
        elif isinstance(ev, h2.events.PushedStreamReceived):
            self.pushes.append(ev)

    def _record_fields(self, fields):
        for k, v in fields:
            self.received += ("%s: %s\n" % (k, v)).encode("utf-8", "replace")


class RawFrames:
    """A frame reader over a TLS socket (hyperframe), with HPACK decoding of header blocks
    (HEADERS + CONTINUATION) into `.fields` on the HEADERS frame."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.frames = []
        self.closed = False
        self.decoder = hpack.Decoder()
        self._block = None

    def poll(self, timeout=0.0):
        """Read whatever arrives within timeout; parse complete frames. False once closed."""
        if self.closed:
            return False
        deadline = time.monotonic() + timeout
        while True:
            left = max(0.0, deadline - time.monotonic())
            if not self.sock.pending():
                try:
                    r, _, _ = select.select([self.sock], [], [], left)
                except (OSError, ValueError):
                    r = [self.sock]
                if not r:
                    return True
            try:
                self.sock.settimeout(max(left, 0.5))
                data = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                return True
            except (OSError, ssl.SSLError):
                data = b""
            if not data:
                self.closed = True
                return False
            self.buf += data
            self._parse()
            if time.monotonic() > deadline + 0.05:  # a peer that never stops sending
                return True

    def _parse(self):
        while len(self.buf) >= 9:
            f, length = hf.Frame.parse_frame_header(memoryview(bytes(self.buf[:9])))
            if len(self.buf) < 9 + length:
                return
            body = bytes(self.buf[9:9 + length])
            del self.buf[:9 + length]
            f.parse_body(memoryview(body))
            self._decode_fields(f)
            self.frames.append(f)

    def _decode_fields(self, f):
        if isinstance(f, (hf.HeadersFrame, hf.PushPromiseFrame)):
            self._block = (f, bytearray(f.data))
        elif isinstance(f, hf.ContinuationFrame) and self._block:
            self._block[1].extend(f.data)
        else:
            return
        if "END_HEADERS" in f.flags:
            first, block = self._block
            self._block = None
            first.fields = [(k.decode("latin-1") if isinstance(k, bytes) else k,
                             v.decode("latin-1") if isinstance(v, bytes) else v)
                            for k, v in self.decoder.decode(bytes(block), raw=True)]

    def of(self, kind, sid=None):
        return [f for f in self.frames if isinstance(f, kind) and
                (sid is None or f.stream_id == sid)]

    def goaway(self):
        g = self.of(hf.GoAwayFrame)
        return g[0] if g else None


class RawH2:
    """A frame-level HTTP/2 client for the attacks: it sends exactly the frames it is given
    (hyperframe + its own HPACK encoder) and records every frame airlock sends back."""

    def __init__(self, tls, authority):
        self.sock = tls
        self.authority = authority
        self.encoder = hpack.Encoder()
        self.reader = RawFrames(tls)
        self.send_failed = False
        self.sent = 0

    def start(self, settings):
        """The preface and SETTINGS (with large receive windows unless settings say otherwise:
        this client never sends WINDOW_UPDATE, so a long answer must not stall)."""
        s = {S_INITIAL_WINDOW_SIZE: 1 << 24}
        s.update(settings)
        self.send_bytes(PREFACE + hf.SettingsFrame(0, settings=s).serialize() +
                        hf.WindowUpdateFrame(0, window_increment=1 << 24).serialize())

    def send_bytes(self, data, timeout=2.0):
        """False once airlock stopped taking bytes (closed, reset, or not reading for timeout)."""
        if self.send_failed:
            return False
        try:
            self.sock.settimeout(timeout)
            self.sock.sendall(data)
            self.sent += len(data)
            return True
        except (OSError, ssl.SSLError, socket.timeout):
            self.send_failed = True
            return False

    def send(self, *frames):
        return self.send_bytes(b"".join(f.serialize() for f in frames))

    def request_fields(self, path="/", method="GET", extra=()):
        return [(":method", method), (":scheme", "https"), (":authority", self.authority),
                (":path", path)] + list(extra)

    def headers_frames(self, sid, fields, end_stream=True, block=None, max_frame=16384):
        """HEADERS (+ CONTINUATION) carrying fields, END_HEADERS on the last."""
        block = self.encoder.encode(fields) if block is None else block
        parts = [block[i:i + max_frame] for i in range(0, len(block), max_frame)] or [b""]
        out = []
        for i, p in enumerate(parts):
            f = hf.HeadersFrame(sid, data=p) if i == 0 else hf.ContinuationFrame(sid, data=p)
            if i == 0 and end_stream:
                f.flags.add("END_STREAM")
            if i == len(parts) - 1:
                f.flags.add("END_HEADERS")
            out.append(f)
        return out

    def settings(self):
        """airlock's first non-ACK SETTINGS, waiting up to 2 s."""
        self.wait(lambda: [f for f in self.reader.of(hf.SettingsFrame) if "ACK" not in f.flags],
                  2.0)
        got = [f for f in self.reader.of(hf.SettingsFrame) if "ACK" not in f.flags]
        check(got, "no SETTINGS from airlock within 2 s (frames: %r)" % self.reader.frames)
        return dict(got[0].settings)

    def ack_settings(self):
        self.settings()
        return self.send(hf.SettingsFrame(0, flags=["ACK"]))

    def wait(self, pred, timeout):
        deadline = time.monotonic() + timeout
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0 or not self.reader.poll(min(left, 0.1)):
                break
        return pred()

    def wait_closed(self, timeout):
        """Read until airlock closes the connection; True when it did within timeout."""
        return self.wait(lambda: self.reader.closed, timeout)

    def status(self, sid):
        for f in self.reader.of(hf.HeadersFrame, sid):
            for k, v in getattr(f, "fields", []):
                if k == ":status":
                    return int(v)
        return None

    def rst(self, sid):
        r = self.reader.of(hf.RstStreamFrame, sid)
        return r[0].error_code if r else None

    def ended(self, sid):
        return any("END_STREAM" in f.flags for f in self.reader.frames
                   if f.stream_id == sid and isinstance(f, (hf.HeadersFrame, hf.DataFrame)))


def flood(raw, unit, total, batch=200, timeout=4.0):
    """Send `unit` (serialized frames) `total` times in batches, polling for airlock's answer
    between batches; stop at a GOAWAY, a close or a refused write. Returns (units sent, whether
    the connection closed within timeout, seconds from the first byte to the close)."""
    t0 = time.monotonic()
    sent = 0
    while sent < total and not raw.reader.goaway() and not raw.reader.closed:
        n = min(batch, total - sent)
        if not raw.send_bytes(unit * n):
            break
        sent += n
        raw.reader.poll(0)
    closed = raw.wait_closed(max(0.1, timeout - (time.monotonic() - t0)))
    return sent, closed, time.monotonic() - t0


def _describe(raw):
    kinds = collections.Counter(type(f).__name__ for f in raw.reader.frames)
    return "frames from airlock %s, goaway %r, closed %r, bytes sent %d" % (
        dict(kinds), raw.reader.goaway(), raw.reader.closed, raw.sent)


# ---------------------------------------------------------------------------------------------
# Upstream side: a TLS server that speaks h2 (python3-h2) when ALPN chose it.
# ---------------------------------------------------------------------------------------------

class H2Request:
    """One request as the h2 upstream received it."""

    def __init__(self, sid, fields, server):
        self.sid = sid
        self.server = server
        self.fields = list(fields)
        self.pseudo = dict((k, v) for k, v in fields if k.startswith(":"))
        self.headers = Headers([(k, v) for k, v in fields if not k.startswith(":")])
        self.method = self.pseudo.get(":method")
        self.path = self.pseudo.get(":path")
        self.target = self.path
        self.authority = self.pseudo.get(":authority")
        self.scheme = self.pseudo.get(":scheme")
        self.version = "HTTP/2"
        self.body = bytearray()
        self.trailers = []
        self.reset = None
        self.ended = threading.Event()

    def wait_body(self, timeout=10.0):
        check(self.ended.wait(timeout), "request body of %s never ended" % self.path)
        return bytes(self.body)


class H2ServerConn:
    """One upstream h2 connection. Only its loop thread touches the socket and the H2Connection;
    apps (one thread per request) queue what to send through the thread-safe methods, and the
    loop sends each stream's queue in order within the flow-control windows."""

    def __init__(self, up, sock):
        self.up = up
        self.sock = sock
        cfg = h2.config.H2Configuration(client_side=False, header_encoding="utf-8",
                                        validate_inbound_headers=False,
                                        validate_outbound_headers=False,
                                        normalize_outbound_headers=False)
        self.conn = h2.connection.H2Connection(cfg)
        self.conn.local_settings = h2.settings.Settings(client=False,
                                                        initial_values=up.h2_settings)
        # Initial values take effect without an ACK, so the decoder's own limit is set here.
        self.conn.decoder.max_header_list_size = up.h2_settings[S_MAX_HEADER_LIST_SIZE]
        self.actions = queue.Queue()
        self.out = {}
        self.requests = {}

    # --- for apps (any thread) ---
    def call(self, fn):
        self.actions.put(fn)

    def send_headers(self, sid, fields, end=False):
        self.call(lambda: self._queue(sid, ("headers", list(fields), end)))

    def send_data(self, sid, data, end=False):
        self.call(lambda: self._queue(sid, ("data", memoryview(bytes(data)), end)))

    def send_trailers(self, sid, fields):
        self.send_headers(sid, fields, end=True)

    def reset(self, sid, code):
        self.call(lambda: self._queue(sid, ("reset", code)))

    def respond(self, sid, status, headers=(), body=b"", trailers=None):
        fields = [(":status", str(status))] + list(headers)
        if not body and not trailers:
            self.send_headers(sid, fields, end=True)
            return
        self.send_headers(sid, fields)
        if body:
            self.send_data(sid, body, end=not trailers)
        if trailers:
            self.send_trailers(sid, trailers)

    def send_raw(self, make):
        """Frames outside the state machine: make(H2Connection) returns bytes, written after
        everything queued before (a PUSH_PROMISE the peer forbade, a GOAWAY mid-stream...)."""
        def run():
            self._drain()
            self._flush()
            self.sock.sendall(make(self.conn))
        self.call(run)

    # --- the loop ---
    def run(self):
        self.conn.initiate_connection()
        if self.up.conn_window:
            self.conn.increment_flow_control_window(self.up.conn_window)
        self._flush()
        while not self.up.stopped:
            self._run_actions()
            self._drain()
            self._flush()
            if not self.sock.pending():
                try:
                    r, _, _ = select.select([self.sock], [], [], 0.005)
                except (OSError, ValueError):
                    return
                if not r:
                    continue
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                continue
            except (OSError, ssl.SSLError):
                return
            if not data:
                return
            try:
                events = self.conn.receive_data(data)
            except h2.exceptions.ProtocolError as e:
                self.up.note_error("h2 upstream: airlock broke HTTP/2: %r" % e)
                self._flush()
                return
            for ev in events:
                self._on_event(ev)
            self._flush()

    def _flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def _run_actions(self):
        while True:
            try:
                fn = self.actions.get_nowait()
            except queue.Empty:
                return
            fn()

    def _queue(self, sid, item):
        self.out.setdefault(sid, collections.deque()).append(item)

    def _drain(self):
        for sid in list(self.out):
            q = self.out[sid]
            try:
                self._drain_stream(sid, q)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError) as e:
                q.clear()  # airlock reset the stream (or the connection ended): drop the rest
                req = self.requests.get(sid)
                if req is not None and req.reset is None:
                    req.reset = "send failed: %r" % e
            if not q:
                del self.out[sid]

    def _drain_stream(self, sid, q):
        while q:
            item = q[0]
            if item[0] == "headers":
                self.conn.send_headers(sid, item[1], end_stream=item[2])
            elif item[0] == "reset":
                self.conn.reset_stream(sid, item[1])
            else:
                data, end = item[1], item[2]
                n = min(self.conn.local_flow_control_window(sid),
                        self.conn.max_outbound_frame_size, len(data))
                if n <= 0 and len(data):
                    return
                self.conn.send_data(sid, bytes(data[:n]), end_stream=end and n == len(data))
                if n < len(data):
                    q[0] = ("data", data[n:], end)
                    continue
            q.popleft()

    def _on_event(self, ev):
        sid = getattr(ev, "stream_id", None)
        req = self.requests.get(sid)
        if isinstance(ev, h2.events.RequestReceived):
            req = H2Request(sid, ev.headers, self)
            self.requests[sid] = req
            with self.up.lock:
                self.up.requests.append(req)
            threading.Thread(target=self._run_app, args=(req,), daemon=True).start()
        elif isinstance(ev, h2.events.DataReceived) and req is not None:
            req.body += ev.data
            if ev.flow_controlled_length:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
        elif isinstance(ev, h2.events.TrailersReceived) and req is not None:
            req.trailers = list(ev.headers)
        elif isinstance(ev, h2.events.StreamEnded) and req is not None:
            req.ended.set()
        elif isinstance(ev, h2.events.StreamReset):
            self.out.pop(sid, None)
            if req is not None:
                req.reset = ev.error_code
                req.ended.set()
        elif isinstance(ev, h2.events.ConnectionTerminated):
            with self.up.lock:
                self.up.goaways.append((ev.error_code, ev.last_stream_id))
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            with self.up.lock:
                for k, v in ev.changed_settings.items():
                    self.up.remote_settings[int(k)] = v.new_value

    def _run_app(self, req):
        try:
            self.up.route(req)(req, self)
        except Exception as e:  # recorded; a test that cares asserts on up.errors
            if not self.up.stopped:
                self.up.note_error("app for %s: %s: %r" % (req.path, type(e).__name__, e))


def h2_echo(req, sc):
    """The default route: the request as JSON (pseudo-headers, fields, body length and digest)."""
    body = req.wait_body()
    out = json.dumps({
        "method": req.method, "path": req.path, "authority": req.authority,
        "scheme": req.scheme, "headers": [[k, v] for k, v in req.headers.items],
        "body_len": len(body), "body_sha256": sha256(body),
        "trailers": [[k, v] for k, v in req.trailers]}, sort_keys=True).encode()
    sc.respond(req.sid, 200, [("content-type", "application/json"),
                              ("content-length", str(len(out)))], out)


def h2_hold(req, sc):
    """Answer only once the test sets up.release (at most 10 s)."""
    req.wait_body()
    req.server.up.release.wait(10)
    sc.respond(req.sid, 200, [("content-type", "text/plain")], b"held " + req.path.encode())


class H2Upstream(Upstream):
    """A TLS upstream whose ALPN list is `alpn`: an h2 connection runs the route whose prefix
    matches the path (longest first; default h2_echo) in a thread per request; an http/1.1 one
    (or none) gets the harness's app_handler. Records the ALPN chosen per connection, airlock's
    SETTINGS (remote_settings) and the GOAWAYs it sent."""

    def __init__(self, routes=None, alpn=("h2", "http/1.1"), settings=None, cert=None,
                 name="h2-upstream", conn_window=16 * MIB):
        Upstream.__init__(self, self._serve_conn, tls=True, cert=cert, name=name)
        self.routes = dict(routes or {})
        self.alpn = list(alpn)
        # Generous limits of its own, so that what a test meets is airlock's.
        self.h2_settings = {S_MAX_CONCURRENT_STREAMS: 1000, S_MAX_HEADER_LIST_SIZE: 1 << 20,
                            S_INITIAL_WINDOW_SIZE: 1 << 20}
        self.h2_settings.update(settings or {})
        self.conn_window = conn_window  # added to the connection's receive window (0: none)
        self.alpn_selected = []
        self.remote_settings = {}
        self.goaways = []
        self.release = threading.Event()
        self.state = {}

    def start(self):
        Upstream.start(self)
        self.ctx.set_alpn_protocols(self.alpn)  # before any connection: the test has the port
        return self

    def note_error(self, msg):
        with self.lock:
            self.errors.append(msg)

    def route(self, req):
        for prefix in sorted(self.routes, key=len, reverse=True):
            if (req.path or "").startswith(prefix):
                return self.routes[prefix]
        return h2_echo

    def _serve_conn(self, uconn):
        proto = uconn.sock.selected_alpn_protocol()
        with self.lock:
            self.alpn_selected.append(proto)
        if proto == "h2":
            H2ServerConn(self, uconn.sock).run()
        else:
            app_handler(uconn)


def h2_upstream(env, routes=None, alpn=("h2", "http/1.1"), settings=None, conn_window=16 * MIB):
    _need_h2()
    up = H2Upstream(routes, alpn, settings, cert=env.pki.leaf,
                    name="h2-upstream-%d" % len(env.upstreams), conn_window=conn_window)
    env.upstreams.append(up)
    return up.start()


def h2_setup(env, routes=None, args=(), **ep_extra):
    """An h2 upstream and airlock allowing it (endpoint options ep_extra): (upstream, airlock)."""
    up = h2_upstream(env, routes)
    al = env.airlock(endpoints=[endpoint(LOOPBACK4, up.port, **ep_extra)], args=args)
    return up, al


class _Stopper:
    """Something env.cleanup() stops with the upstreams."""

    def __init__(self, fn):
        self.stop = fn


def _wait_port(port, proc=None, timeout=5.0):
    def up():
        if proc is not None and proc.poll() is not None:
            raise AssertionError("server exited %d before listening" % proc.returncode)
        try:
            socket.create_connection((LOOPBACK4, port), timeout=0.5).close()
            return True
        except OSError:
            return False
    check(wait_until(up, timeout), "nothing listens on %d after %.0fs" % (port, timeout))


def nghttpd(env, docroot, extra=()):
    """nghttpd serving docroot over TLS with the test leaf on 127.0.0.1: its port."""
    _need_tool("nghttpd", "nghttp2-server")
    port = free_port()
    err = open(env.path("nghttpd.err"), "wb")
    proc = subprocess.Popen(["nghttpd", "-a", LOOPBACK4, "-d", docroot] + list(extra) +
                            [str(port), env.pki.leaf.key, env.pki.leaf.cert],
                            stdin=subprocess.DEVNULL, stdout=err, stderr=err)

    def stop():
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        err.close()
    env.upstreams.append(_Stopper(stop))
    _wait_port(port, proc)
    return port


# ---------------------------------------------------------------------------------------------
# 1. ALPN never translates.
# ---------------------------------------------------------------------------------------------

def _h1_over(tls, host, port):
    return HttpClient(tls, _auth(host, port))


def test_h2_alpn_h2_client_and_h2_upstream_negotiate_h2(env):
    up, al = h2_setup(env)
    tls = tls_tunnel(al, LOOPBACK4, up.port, ("h2", "http/1.1"))
    check_eq(tls.selected_alpn_protocol(), "h2", "ALPN airlock gave the client")
    c = H2Client(tls, _auth(LOOPBACK4, up.port))
    r = c.get("/alpn")
    check_eq(r.status, 200, "status over h2")
    check_eq(r.json()["path"], "/alpn", "path the upstream saw")
    check_eq(up.alpn_selected, ["h2"], "ALPN the upstream chose (so airlock offered h2)")


def test_h2_alpn_http11_only_upstream_gives_client_http11(env):
    up = env.upstream()  # the harness's app: ALPN http/1.1 only
    al = env.airlock([up])
    tls = tls_tunnel(al, LOOPBACK4, up.port, ("h2", "http/1.1"))
    check_eq(tls.selected_alpn_protocol(), "http/1.1",
             "ALPN airlock gave an h2-offering client of an http/1.1-only upstream")
    r = _h1_over(tls, LOOPBACK4, up.port).request("GET", "/one-one")
    check_eq(r.status, 200, "status over HTTP/1.1")
    check_eq(r.json()["version"], "HTTP/1.1", "version the upstream saw")


def test_h2_alpn_curl_http2_speaks_http11_to_http11_only_upstream(env):
    _need_tool("curl", "curl")
    up = env.upstream()
    al = env.airlock([up])
    out = _curl(al, "https://%s:%d/curl" % (LOOPBACK4, up.port))
    check_eq(out.version, "1.1", "HTTP version curl --http2 ended up speaking")
    check_eq(out.code, "200", "status")
    check_eq(json.loads(out.body)["target"], "/curl", "target the upstream saw")


def test_h2_alpn_client_without_h2_gets_http11_throughout(env):
    up, al = h2_setup(env)
    for offer, want in ((("http/1.1",), "http/1.1"), (None, None)):
        tls = tls_tunnel(al, LOOPBACK4, up.port, offer)
        check_eq(tls.selected_alpn_protocol(), want, "ALPN the client got offering %r" % (offer,))
        r = _h1_over(tls, LOOPBACK4, up.port).request("GET", "/no-h2")
        check_eq(r.status, 200, "status for a client offering %r" % (offer,))
        check_eq(r.json()["version"], "HTTP/1.1", "version the upstream saw")
    check_eq(up.alpn_selected, ["http/1.1", "http/1.1"],
             "ALPN the h2-capable upstream chose (airlock must not offer it h2)")


class ClientHelloCapture:
    """A TCP upstream that reads one ClientHello per connection, records its ALPN list (None:
    no ALPN extension) and closes: what airlock offered the upstream."""

    def __init__(self):
        self.offers = []
        self.lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.bind((LOOPBACK4, 0))
        self.listener.listen(8)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.stopped = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stopped:
            try:
                s, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with s:
                s.settimeout(5)
                try:
                    offer = _client_hello_alpn(Reader(s))
                except (AssertionError, EOFError, OSError) as e:
                    offer = "unparsable: %s" % e
            with self.lock:
                self.offers.append(offer)

    def stop(self):
        self.stopped = True
        self.listener.close()
        self.thread.join(2)


def _client_hello_alpn(reader):
    """The ALPN protocol list of the ClientHello the reader's peer sends (RFC 8446 §4.1.2)."""
    msg = bytearray()
    while len(msg) < 4 or len(msg) < 4 + int.from_bytes(msg[1:4], "big"):
        head = reader.read_exact(5)
        check(head[0] == 22, "not a TLS handshake record: %r" % head)
        msg += reader.read_exact(int.from_bytes(head[3:5], "big"))
    check(msg[0] == 1, "not a ClientHello")
    p = 4 + 2 + 32
    p += 1 + msg[p]                                   # session id
    p += 2 + int.from_bytes(msg[p:p + 2], "big")      # cipher suites
    p += 1 + msg[p]                                   # compression methods
    end = p + 2 + int.from_bytes(msg[p:p + 2], "big")
    p += 2
    while p < end:
        kind, n = int.from_bytes(msg[p:p + 2], "big"), int.from_bytes(msg[p + 2:p + 4], "big")
        data = bytes(msg[p + 4:p + 4 + n])
        p += 4 + n
        if kind == 16:
            out, q = [], 2
            while q < len(data):
                out.append(data[q + 1:q + 1 + data[q]].decode("ascii", "replace"))
                q += 1 + data[q]
            return out
    return None


def test_h2_alpn_offer_to_upstream_follows_the_client(env):
    cap = ClientHelloCapture()
    env.upstreams.append(cap)
    al = env.airlock(endpoints=[endpoint(LOOPBACK4, cap.port)])
    cases = ((("h2", "http/1.1"), ["h2", "http/1.1"]), (("h2",), ["h2", "http/1.1"]),
             (("http/1.1",), ["http/1.1"]))
    for i, (offer, _) in enumerate(cases):
        try:  # the capture closes after the ClientHello: the client's handshake may fail
            tls_tunnel(al, LOOPBACK4, cap.port, offer, timeout=2).close()
        except (ssl.SSLError, OSError, AssertionError):
            pass
        check(wait_until(lambda: len(cap.offers) > i, 3),
              "no ClientHello reached the upstream for a client offering %r" % (offer,))
    check_eq(cap.offers, [want for _, want in cases],
             "ALPN lists airlock offered the upstream for clients offering %r" % (
                 [o for o, _ in cases],))


# ---------------------------------------------------------------------------------------------
# 2. Each stream judged on its own.
# ---------------------------------------------------------------------------------------------

def _check_h2_deny(r, error, status=403):
    """A refusal on an h2 stream: the status, X-Airlock-Decision: deny, JSON with `error`."""
    check_eq(r.status, status, "status of the refused stream %d (%r)" % (r.sid, r))
    check(r.ended, "refused stream %d not ended cleanly: %r" % (r.sid, r))
    check_eq((r.header("x-airlock-decision") or "").lower(), "deny", "x-airlock-decision")
    check((r.header("content-type") or "").startswith("application/json"),
          "content-type of the refusal: %r" % r.header("content-type"))
    j = r.json()
    check_eq(j.get("error"), error, "JSON error")
    return j


def _h1_refusal(al, port, method, path, headers=(), host=None):
    """The JSON body HTTP/1.1 gets for the same request (Host: host when given), for an exact
    comparison."""
    c = open_tunnel(al, LOOPBACK4, port)
    c.send_request(method, path, [("Host", host or c.host)] + list(headers), host=False)
    return read_response(c.reader, method).json()


def test_h2_allowed_get_returns_upstream_response(env):
    up, al = h2_setup(env, {"/hello": lambda req, sc: sc.respond(
        req.sid, 200, [("content-type", "text/plain"), ("x-from", "upstream")],
        b"hello over h2")})
    c = h2_client(al, LOOPBACK4, up.port)
    r = c.get("/hello", [("accept", "text/plain")])
    check_eq((r.status, bytes(r.body), r.header("x-from")), (200, b"hello over h2", "upstream"),
             "response")
    r = c.get("/echo?q=1")
    j = r.json()
    check_eq((j["method"], j["path"], j["scheme"], j["authority"]),
             ("GET", "/echo?q=1", "https", _auth(LOOPBACK4, up.port)), "request upstream")
    check_eq(up.alpn_selected, ["h2"], "upstream connections (one, h2)")


def test_h2_denied_path_403_on_its_stream_while_another_stream_succeeds(env):
    up, al = h2_setup(env, {"/ok": h2_hold}, deny_rules=[{"method": "*", "path": "/admin/**"}])
    c = h2_client(al, LOOPBACK4, up.port)
    ok = c.request("GET", "/ok")           # held by the upstream while the other is refused
    check(wait_until(lambda: len(up.requests) == 1, 3), "GET /ok never reached the upstream")
    bad = c.request("GET", "/admin/users?token=querysecret42")
    r = c.response(bad)
    j = _check_h2_deny(r, "policy_denied")
    check_eq((j.get("host"), j.get("port"), j.get("method"), j.get("path")),
             (LOOPBACK4, up.port, "GET", "/admin/users"), "host, port, method, path")
    check(j.get("detail"), "no detail: %r" % j)
    check_eq(j.get("deny_rule"), {"method": "*", "path": "/admin/**"}, "deny_rule")
    check("querysecret42" not in json.dumps(j), "the query leaked into the deny body")
    check(not c.streams[ok].done, "the held stream ended with its neighbour's refusal")
    up.release.set()
    r = c.response(ok)
    check_eq((r.status, bytes(r.body)), (200, b"held /ok"), "the other stream")
    check_eq(c.get("/after").status, 200, "a stream after the refusal")
    check_eq([q.path for q in up.requests], ["/ok", "/after"], "requests upstream")
    check_eq(j, _h1_refusal(al, up.port, "GET", "/admin/users?token=querysecret42"),
             "the h2 refusal's JSON vs HTTP/1.1's")


def test_h2_authority_of_another_host_gets_421_on_its_stream(env):
    up, al = h2_setup(env)
    c = h2_client(al, LOOPBACK4, up.port)
    other = "other.test:%d" % up.port
    r = c.get("/elsewhere", authority=other)
    j = _check_h2_deny(r, "request_authority_mismatch", 421)
    check(j.get("detail"), "no detail: %r" % j)
    check_eq(c.get("/here").status, 200, "a stream naming the tunnel's host after the 421")
    check_eq([q.path for q in up.requests], ["/here"], "requests upstream")
    check_eq(j, _h1_refusal(al, up.port, "GET", "/elsewhere", host=other),
             "the h2 refusal's JSON vs HTTP/1.1's")


def _creds_setup(env, routes, others=0):
    from test_creds import PLACEHOLDER, SECRET, SECRET_ENV
    up = h2_upstream(env, routes)
    extra = [h2_upstream(env) for _ in range(others)]
    eps = [loopback_ep(LOOPBACK4, u.port, access="full") for u in [up] + extra]
    prov = {"placeholder": PLACEHOLDER, "secret": {"env": SECRET_ENV},
            "endpoints": [{"host": LOOPBACK4, "port": up.port}]}
    al = start_airlock(env, policy_doc({"apis": eps}), providers=providers_doc({"test": prov}),
                       extra_env={SECRET_ENV: SECRET})
    return up, extra, al, PLACEHOLDER, SECRET


def _echo_secret(req, sc):
    """Hands the Authorization it received back in a header, a body cut mid-secret across two
    DATA frames, and a trailer."""
    req.wait_body()
    auth = req.headers.get("authorization", "")
    body = json.dumps({"echo": auth}).encode()
    cut = body.index(b"Bearer ") + 7 + (len(auth) - 7) // 2
    sc.send_headers(req.sid, [(":status", "200"), ("content-type", "application/json"),
                              ("x-echo", auth)])
    sc.send_data(req.sid, body[:cut])
    time.sleep(0.05)
    sc.send_data(req.sid, body[cut:])
    sc.send_trailers(req.sid, [("x-echo-trailer", auth)])


def test_h2_placeholder_becomes_secret_upstream_and_echo_is_redacted(env):
    from test_creds import no_secret_anywhere
    up, _, al, placeholder, secret = _creds_setup(env, {"/reflect": _echo_secret})
    c = h2_client(al, LOOPBACK4, up.port)
    r = c.get("/reflect", [("authorization", "Bearer " + placeholder)])
    check_eq(r.status, 200, "status (%r)" % r)
    check_eq(len(up.requests), 1, "requests upstream")
    check_eq(up.requests[0].headers.get("authorization"), "Bearer " + secret,
             "Authorization the upstream saw")
    auth = [f for f in up.requests[0].fields if f[0] == "authorization"]
    check(isinstance(auth[0], hpack.NeverIndexedHeaderTuple),
          "the secret went upstream indexable by HPACK (not never-indexed)")
    check_eq(r.header("x-echo"), "Bearer " + placeholder, "x-echo as the client sees it")
    check_eq(r.json(), {"echo": "Bearer " + placeholder}, "body as the client sees it")
    check_eq(r.trailer("x-echo-trailer"), "Bearer " + placeholder, "trailer")
    no_secret_anywhere(al, c.received, [secret])


def test_h2_placeholder_to_host_outside_provider_gets_403_on_its_stream(env):
    up, extra, al, placeholder, _ = _creds_setup(env, None, others=1)
    other = extra[0]
    c = h2_client(al, LOOPBACK4, other.port)
    r = c.get("/leak", [("x-api-key", placeholder)])
    j = _check_h2_deny(r, "credential_endpoint_mismatch")
    check(placeholder not in json.dumps(j), "the placeholder appears in the deny body")
    check_eq(c.get("/clean").status, 200, "a stream without the placeholder afterwards")
    check_eq([q.path for q in other.requests], ["/clean"], "requests the other host saw")
    check_eq(len(up.requests), 0, "requests the provider's host saw")


def test_h2_refusal_before_the_body_ended_is_followed_by_rst_no_error(env):
    """docs/http2.md: a refusal that comes before the whole request body was sent is followed
    by RST_STREAM(NO_ERROR), so the client may stop sending (RFC 9113 §8.1)."""
    up, al = h2_setup(env, deny_rules=[{"method": "*", "path": "/admin/**"}])
    c = h2_client(al, LOOPBACK4, up.port)
    sid = c.request("POST", "/admin/upload", body=b"x" * 1000, end=False)
    r = c.streams[sid]
    c.wait(lambda: r.ended and r.reset is not None, 3)
    _check_h2_deny(r, "policy_denied")
    check_eq(r.reset, NO_ERROR, "RST_STREAM after the refusal (%r)" % r)
    check_eq(c.get("/fine").status, 200, "a stream afterwards")
    check_eq([q.path for q in up.requests], ["/fine"], "requests upstream")


def _interim_route(req, sc):
    """/interim: 103 Early Hints, then the answer; with expect: 100-continue, a 100 first."""
    if req.headers.get("expect") == "100-continue":
        sc.send_headers(req.sid, [(":status", "100")])
    req.wait_body()
    sc.send_headers(req.sid, [(":status", "103"), ("link", "</style.css>; rel=preload")])
    sc.respond(req.sid, 200, [("content-type", "text/plain")], b"final")


def test_h2_interim_responses_are_relayed(env):
    """docs/http2.md: interim responses go on (RFC 9110 §15.2): the 100 Continue the client
    waits for, and a 103 with its Link field."""
    up, al = h2_setup(env, {"/interim": _interim_route})
    c = h2_client(al, LOOPBACK4, up.port)
    sid = c.request("POST", "/interim", [("expect", "100-continue")], end=False)
    s = c.streams[sid]
    c.wait(lambda: s.interim or s.done, 3)
    check_eq([dict(h).get(":status") for h in s.interim], ["100"], "interim responses")
    c.send_body(sid, b"body")
    r = c.response(sid)
    check_eq((r.status, bytes(r.body)), (200, b"final"), "final response")
    check_eq([dict(h).get(":status") for h in r.interim], ["100", "103"], "interim responses")
    check_eq(dict(r.interim[1]).get("link"), "</style.css>; rel=preload", "the 103's Link")


MALFORMED = (
    ("no :path", lambda a: [(":method", "GET"), (":scheme", "https"), (":authority", a)]),
    (":scheme http", lambda a: [(":method", "GET"), (":scheme", "http"), (":authority", a),
                                (":path", "/m")]),
    ("connection: keep-alive", lambda a: _ok_fields(a) + [("connection", "keep-alive")]),
    ("transfer-encoding: chunked", lambda a: _ok_fields(a) + [("transfer-encoding", "chunked")]),
    ("upper-case name", lambda a: _ok_fields(a) + [("X-Upper", "1")]),
    ("CR LF in a value", lambda a: _ok_fields(a) + [("x-evil", "a\r\nx-injected: b")]),
    ("pseudo-header after a field", lambda a: [(":method", "GET"), (":scheme", "https"),
                                               ("x-early", "1"), (":authority", a),
                                               (":path", "/m")]),
    ("CONNECT", lambda a: [(":method", "CONNECT"), (":authority", a)]),
    ("neither :authority nor host", lambda a: [(":method", "GET"), (":scheme", "https"),
                                               (":path", "/m")]),
    ("host disagreeing with :authority", lambda a: _ok_fields(a) + [("host", "other.test")]),
)


def _ok_fields(authority, path="/m"):
    return [(":method", "GET"), (":scheme", "https"), (":authority", authority), (":path", path)]


def test_h2_malformed_requests_are_refused_never_forwarded(env):
    up, al = h2_setup(env)
    for what, fields in MALFORMED:
        c = h2_client(al, LOOPBACK4, up.port)
        sid = c.request(None, None, fields=fields(c.authority))
        r = c.response(sid)
        check(r.reset is not None or r.status == 400,
              "%s: stream answered %r, want a reset or 400" % (what, r))
        check_eq(len(up.requests), 0, "%s: requests upstream (%r)" % (
            what, [q.fields for q in up.requests]))
        # A malformed request is a stream error (RFC 9113 §8.1.1): the connection goes on.
        r = c.get("/fine")
        check_eq(r.status, 200, "%s: a good stream afterwards" % what)
        up.requests.clear()


# ---------------------------------------------------------------------------------------------
# 3. Streaming: a 50 MiB download, SSE, an upload, trailers.
# ---------------------------------------------------------------------------------------------

class _CurlOut:
    def __init__(self, body, version, code, stderr):
        self.body, self.version, self.code, self.stderr = body, version, code, stderr


def _curl(al, url, extra=(), digest=False, timeout=60):
    """curl --http2 through airlock's CONNECT, verifying with airlock's CA. The body (or its
    SHA-256 and length when digest), the HTTP version and status curl reported."""
    cmd = ["curl", "--http2", "-sS", "-x", "http://%s:%d" % (LOOPBACK4, al.port),
           "--cacert", al.ca_pem, "-o", "-", "-w", "%{stderr}\n%{http_version} %{http_code}",
           "--max-time", str(timeout)] + list(extra) + [url]
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE,
                         env={k: v for k, v in os.environ.items() if "proxy" not in k.lower()})
    h = hashlib.sha256()
    n = 0
    body = bytearray()
    while True:
        chunk = p.stdout.read(1 << 20)
        if not chunk:
            break
        n += len(chunk)
        if digest:
            h.update(chunk)
        else:
            body += chunk
    err = p.stderr.read().decode("utf-8", "replace")
    rc = p.wait(timeout)
    last = err.strip().splitlines()[-1].split() if err.strip() else ["?", "?"]
    check(rc == 0, "curl exited %d: %s" % (rc, err[-2000:]))
    out = _CurlOut(bytes(body), last[0], last[-1], err)
    out.sha256, out.length = h.hexdigest(), n
    return out


def test_h2_curl_downloads_50mib_from_nghttpd_with_exact_sha256(env):
    _need_tool("curl", "curl")
    _need_tool("nghttpd", "nghttp2-server")
    big = 50 * MIB
    docroot = env.path("htdocs")
    os.makedirs(docroot)
    with open(os.path.join(docroot, "big.bin"), "wb") as f:
        for c in content_chunks(big):
            f.write(c)
    port = nghttpd(env, docroot)
    al = env.airlock(endpoints=[endpoint(LOOPBACK4, port)])
    out = _curl(al, "https://%s:%d/big.bin" % (LOOPBACK4, port), digest=True)
    check_eq(out.version, "2", "HTTP version curl spoke through airlock")
    check_eq(out.code, "200", "status")
    check_eq(out.length, big, "bytes received")
    check_eq(out.sha256, content_sha256(big), "SHA-256 of the download")


def _sse_route(req, sc):
    """Event 0, then waits (up to 3 s) for the test to see it before sending events 1-4 100 ms
    apart and ending the stream. Each event carries its send time."""
    up = req.server.up

    def event(i):
        return ("id: %d\ndata: {\"i\": %d, \"t\": %.6f}\n\n" % (i, i, time.monotonic())).encode()
    sc.send_headers(req.sid, [(":status", "200"), ("content-type", "text/event-stream"),
                              ("cache-control", "no-cache")])
    sc.send_data(req.sid, event(0))
    up.state["held"] = not up.release.wait(3)
    for i in range(1, 5):
        time.sleep(0.1)
        sc.send_data(req.sid, event(i))
    sc.send_data(req.sid, b"", end=True)


def _sse_events(r):
    """(event index, arrival - send time) for each complete event, by DATA frame arrival."""
    out, buf = [], b""
    for t, data in r.data_log:
        buf += data
        while b"\n\n" in buf:
            ev, buf = buf.split(b"\n\n", 1)
            j = json.loads([l[5:] for l in ev.split(b"\n") if l.startswith(b"data:")][0])
            out.append((j["i"], t - j["t"]))
    return out


def test_h2_sse_events_arrive_one_by_one_while_stream_is_open(env):
    up, al = h2_setup(env, {"/sse": _sse_route})
    c = h2_client(al, LOOPBACK4, up.port)
    sid = c.request("GET", "/sse", [("accept", "text/event-stream")])
    r = c.streams[sid]
    c.wait(lambda: _sse_events(r) or r.done, 2.5)
    check_eq(r.status, 200, "status")
    check([i for i, _ in _sse_events(r)] == [0],
          "event 0 did not arrive alone while the upstream held the stream open: %r" % r)
    check(not r.done, "the stream ended before the upstream finished it")
    up.release.set()
    c.response(sid)
    check(r.ended, "SSE stream reset: %r" % r)
    check(not up.state.get("held"), "the upstream waited 3 s: the test never released it")
    events = _sse_events(r)
    check_eq([i for i, _ in events], [0, 1, 2, 3, 4], "events")
    late = ["event %d after %.0f ms" % (i, d * 1000) for i, d in events if d > SSE_MAX_DELAY]
    check(not late, "events delayed past %d ms: %s" % (SSE_MAX_DELAY * 1000, ", ".join(late)))


def test_h2_upload_post_body_sha256_checked_upstream(env):
    up, al = h2_setup(env)
    c = h2_client(al, LOOPBACK4, up.port)
    body = b"".join(content_chunks(4 * MIB))
    for name, headers in (("with content-length", [("content-length", str(len(body)))]),
                          ("without content-length", [])):
        sid = c.request("POST", "/upload", [("content-type", "application/octet-stream")] +
                        headers, body=body)
        r = c.response(sid, timeout=10)
        check_eq(r.status, 200, "status of the upload %s (%r)" % (name, r))
        j = r.json()
        check_eq((j["body_len"], j["body_sha256"]), (len(body), sha256(body)),
                 "length and SHA-256 the upstream saw, upload %s" % name)


def _download_route(req, sc):
    """/download/N: N bytes of content_chunks(N), with content-length."""
    req.wait_body()
    n = int(req.path.rsplit("/", 1)[1])
    sc.send_headers(req.sid, [(":status", "200"), ("content-type", "application/octet-stream"),
                              ("content-length", str(n))])
    for c in content_chunks(n):
        sc.send_data(req.sid, c)
    sc.send_data(req.sid, b"", end=True)


# Past this, a peer with 64 KiB windows (python3-h2's, and many servers' defaults) has sent
# about 1,500 WINDOW_UPDATEs (a stream's and the connection's every 32 KiB): ordinary flow
# control, which no flood budget may count against it.
LONG_TRANSFER = 24 * MIB


def test_h2_download_with_default_windows_is_not_a_flood(env):
    up, al = h2_setup(env, {"/download/": _download_route})
    c = h2_client(al, LOOPBACK4, up.port)  # python3-h2's default 65,535-byte windows
    r = c.streams[c.request("GET", "/download/%d" % LONG_TRANSFER)]
    c.wait(lambda: r.done or c.goaway is not None, 20)
    check(c.goaway is None, "GOAWAY during a %d MiB download after %d bytes: %r" % (
        LONG_TRANSFER // MIB, len(r.body), c.goaway))
    check(r.ended, "download not ended cleanly after %d bytes: %r" % (len(r.body), r))
    check_eq(len(r.body), LONG_TRANSFER, "bytes received")
    check_eq(sha256(bytes(r.body)), content_sha256(LONG_TRANSFER), "SHA-256 of the download")


def test_h2_upload_to_default_window_upstream_is_not_a_flood(env):
    up = h2_upstream(env, settings={S_INITIAL_WINDOW_SIZE: 65535}, conn_window=0)
    al = env.airlock(endpoints=[endpoint(LOOPBACK4, up.port)])
    c = h2_client(al, LOOPBACK4, up.port)
    body = b"".join(content_chunks(LONG_TRANSFER))
    try:
        r = c.response(c.request("POST", "/upload", body=body), timeout=20)
    except AssertionError as e:
        raise AssertionError("%s (airlock's GOAWAYs to the upstream: %r)" % (e, up.goaways))
    check_eq(up.goaways, [], "GOAWAYs airlock sent the upstream")
    check_eq(r.status, 200, "status (%r)" % r)
    check_eq(r.json()["body_sha256"], sha256(body), "SHA-256 the upstream saw")


def _trailers_route(req, sc):
    req.wait_body()
    pieces = [b"alpha-" * 10, b"beta-" * 3000, b"gamma"]
    sc.send_headers(req.sid, [(":status", "200"), ("content-type", "text/plain"),
                              ("trailer", "x-checksum")])
    for p in pieces:
        sc.send_data(req.sid, p)
    sc.send_trailers(req.sid, [("x-checksum", sha256(b"".join(pieces))),
                               ("x-trailer-count", "2")])


def test_h2_response_trailers_are_relayed(env):
    up, al = h2_setup(env, {"/trailers": _trailers_route})
    c = h2_client(al, LOOPBACK4, up.port)
    r = c.get("/trailers", [("te", "trailers")])
    check_eq(r.status, 200, "status")
    check(r.ended, "stream not ended cleanly: %r" % r)
    check_eq(r.trailer("x-checksum"), sha256(bytes(r.body)), "x-checksum trailer vs body")
    check_eq(r.trailer("x-trailer-count"), "2", "second trailer")
    check_eq(up.requests[0].headers.get("te"), "trailers", "te the upstream saw")


# ---------------------------------------------------------------------------------------------
# 4. gRPC (python3-grpcio), TLS upstream with the test leaf, channel through airlock.
# ---------------------------------------------------------------------------------------------

GRPC_SERVICE = "airlock.test.Echo"


def grpc_server(env):
    """A grpcio TLS server on 127.0.0.1 with Unary (b"pong:" + request), ServerStream (the
    request's count of numbered messages), Bidi (echoes each message at once) and Denied; its
    port. Bytes pass as is (no serializers)."""
    _need_grpc()
    import grpc
    from concurrent import futures

    def unary(req, ctx):
        return b"pong:" + req

    def server_stream(req, ctx):
        for i in range(int(req)):
            yield b"msg-%06d:" % i + b"x" * 100

    def bidi(it, ctx):
        for m in it:
            yield b"echo:" + m

    handlers = {"Unary": grpc.unary_unary_rpc_method_handler(unary),
                "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
                "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
                "Denied": grpc.unary_unary_rpc_method_handler(unary)}
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(GRPC_SERVICE,
                                                                          handlers),))
    with open(env.pki.leaf.key, "rb") as k, open(env.pki.leaf.cert, "rb") as c:
        creds = grpc.ssl_server_credentials([(k.read(), c.read())])
    port = server.add_secure_port("%s:0" % LOOPBACK4, creds)
    check(port, "grpc server could not bind")
    server.start()
    env.upstreams.append(_Stopper(lambda: server.stop(0).wait(5)))
    return port


def grpc_channel(env, al, port, host="localhost"):
    """A channel to host:port through airlock (grpc.http_proxy), trusting airlock's CA."""
    import grpc
    with open(al.ca_pem, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    ch = grpc.secure_channel("%s:%d" % (host, port), creds, options=[
        ("grpc.http_proxy", "http://%s:%d" % (LOOPBACK4, al.port)),
        ("grpc.enable_retries", 0)])
    env.upstreams.append(_Stopper(ch.close))
    return ch


def _grpc_setup(env, **ep_extra):
    port = grpc_server(env)
    al = env.airlock(endpoints=[endpoint("localhost", port, **ep_extra)])
    return al, grpc_channel(env, al, port)


def _method(name):
    return "/%s/%s" % (GRPC_SERVICE, name)


def _through_airlock(al, name):
    """The call went through airlock (not straight to the server): its log has the path."""
    lines = find_log(al, lambda l: _log_path(l) == _method(name))
    check(lines, "no log line for %s: the channel did not go through airlock?\n%s" % (
        _method(name), al.log_text()[-2000:]))


def test_h2_grpc_unary_call(env):
    al, ch = _grpc_setup(env)
    got = ch.unary_unary(_method("Unary"))(b"ping", timeout=5)
    check_eq(got, b"pong:ping", "unary answer")
    _through_airlock(al, "Unary")


def test_h2_grpc_to_an_ip_target(env):
    """grpc-core sends an IP target's address as SNI, which RFC 6066 §3 does not allow: airlock
    reads it as no name (the CONNECT authority decides), rather than closing the tunnel."""
    port = grpc_server(env)
    al = env.airlock(endpoints=[endpoint(LOOPBACK4, port)])
    ch = grpc_channel(env, al, port, host=LOOPBACK4)
    got = ch.unary_unary(_method("Unary"))(b"ip", timeout=5)
    check_eq(got, b"pong:ip", "unary answer to an IP target")
    _through_airlock(al, "Unary")


def test_h2_grpc_server_streaming_1000_messages(env):
    al, ch = _grpc_setup(env)
    got = list(ch.unary_stream(_method("ServerStream"))(b"1000", timeout=10))
    check_eq(len(got), 1000, "messages received")
    check_eq([m[:11] for m in got], [b"msg-%06d:" % i for i in range(1000)], "order")
    _through_airlock(al, "ServerStream")


def test_h2_grpc_server_streaming_10000_messages_is_not_a_flood(env):
    """A gRPC client acknowledges what it reads (WINDOW_UPDATE) and probes the bandwidth
    (PING) as messages arrive: a long stream is no flood."""
    _need_grpc()
    import grpc
    al, ch = _grpc_setup(env)
    got = 0
    try:
        for m in ch.unary_stream(_method("ServerStream"))(b"10000", timeout=20):
            check_eq(m[:11], b"msg-%06d:" % got, "message %d" % got)
            got += 1
    except grpc.RpcError as e:
        al.stop()  # flushes the log
        why = [l.get("message") for l in al.log_lines() if "h2" in (l.get("message") or "")]
        raise AssertionError("the stream failed after %d of 10000 messages: %s %s; log: %r" % (
            got, e.code(), e.details(), why))
    check_eq(got, 10000, "messages received")


def test_h2_grpc_bidirectional_stream(env):
    """Each answer must arrive before the next message is sent: full duplex, not buffered."""
    al, ch = _grpc_setup(env)
    outbox = queue.Queue()

    def requests():
        while True:
            m = outbox.get()
            if m is None:
                return
            yield m
    answers = ch.stream_stream(_method("Bidi"))(requests(), timeout=10)
    for i in range(50):
        outbox.put(b"m%d" % i)
        check_eq(next(answers), b"echo:m%d" % i, "answer %d" % i)
    outbox.put(None)
    check_eq(list(answers), [], "answers after the client finished")
    _through_airlock(al, "Bidi")


def test_h2_grpc_denied_method_is_permission_denied(env):
    """airlock's 403 has no grpc-status: gRPC maps HTTP 403 to PERMISSION_DENIED
    (grpc's doc/http-grpc-status-mapping.md)."""
    _need_grpc()
    import grpc
    al, ch = _grpc_setup(env, deny_rules=[{"method": "*", "path": _method("Denied")}])
    try:
        ch.unary_unary(_method("Denied"))(b"x", timeout=5)
        raise AssertionError("the denied method answered")
    except grpc.RpcError as e:
        check_eq(e.code(), grpc.StatusCode.PERMISSION_DENIED,
                 "status of the denied call (details %r)" % e.details())
    check_eq(ch.unary_unary(_method("Unary"))(b"after", timeout=5), b"pong:after",
             "a call on the same channel after the refusal")


# ---------------------------------------------------------------------------------------------
# 5. Hostile clients.
# ---------------------------------------------------------------------------------------------

def test_h2_more_than_100_concurrent_streams_end_the_connection(env):
    """A client that opens more streams than the 100 it acknowledged breaks the protocol:
    nghttp2 makes that a connection error (GOAWAY PROTOCOL_ERROR; RFC 9113 §5.1.2 also allows
    a stream error), and no stream beyond the limit ever reaches the upstream."""
    up, al = h2_setup(env, {"/hold": h2_hold})
    raw = raw_h2(al, LOOPBACK4, up.port)
    limit = raw.settings().get(S_MAX_CONCURRENT_STREAMS)
    check_eq(limit, H2_MAX_STREAMS, "SETTINGS_MAX_CONCURRENT_STREAMS")
    raw.ack_settings()
    n = H2_MAX_STREAMS + 10
    sids = [1 + 2 * i for i in range(n)]
    frames = []
    for i, sid in enumerate(sids):
        frames += raw.headers_frames(sid, raw.request_fields("/hold/%d" % i))
    raw.send(*frames)
    raw.wait(lambda: raw.reader.goaway() is not None or raw.reader.closed, 3)
    g = raw.reader.goaway()
    check(g is not None, "no GOAWAY after %d streams (%s)" % (n, _describe(raw)))
    check_eq(g.error_code, PROTOCOL_ERROR, "GOAWAY code (%s)" % _describe(raw))
    up.release.set()
    time.sleep(0.2)
    check(len(up.requests) <= limit, "%d requests upstream, over the limit %d" % (
        len(up.requests), limit))


def test_h2_header_list_over_64kib_refuses_the_stream_only(env):
    up, al = h2_setup(env)
    raw = raw_h2(al, LOOPBACK4, up.port)
    raw.ack_settings()
    big = [hpack.NeverIndexedHeaderTuple("x-big-%02d" % i, "a" * 4000)
           for i in range(H2_MAX_HEADER // 4000 + 2)]
    raw.send(*raw.headers_frames(1, raw.request_fields("/big") + big))
    raw.wait(lambda: raw.rst(1) is not None or raw.ended(1) or raw.reader.closed, 3)
    check(raw.rst(1) is not None or raw.status(1) == 431,
          "a %d-byte header list answered %r, want 431 or RST_STREAM (%s)" % (
              sum(len(h[0]) + len(h[1]) for h in big), raw.status(1), _describe(raw)))
    check(raw.reader.goaway() is None and not raw.reader.closed,
          "the connection ended over one stream's headers (%s)" % _describe(raw))
    raw.send(*raw.headers_frames(3, raw.request_fields("/small")))
    raw.wait(lambda: raw.ended(3) or raw.rst(3) is not None, 3)
    check_eq(raw.status(3), 200, "the next stream (%s)" % _describe(raw))
    check_eq([q.path for q in up.requests], ["/small"], "requests upstream")


def test_h2_endless_continuation_gets_goaway_bounded(env):
    up, al = h2_setup(env)
    rss0 = al.rss_kib()
    # Header fields that grow the list (each CONTINUATION adds ~16 KiB of new fields), and
    # empty CONTINUATIONs (nothing to decode, only frames).
    growing = [hpack.NeverIndexedHeaderTuple("x-c%06d" % i, "v" * 1000) for i in range(16)]
    for what, make_block, count in (("growing", lambda raw: raw.encoder.encode(growing), 2000),
                                    ("empty", lambda raw: b"", 200000)):
        raw = raw_h2(al, LOOPBACK4, up.port)
        head = raw.headers_frames(1, raw.request_fields("/cont"), end_stream=True)[0]
        head.flags.discard("END_HEADERS")
        raw.send(head)
        unit = hf.ContinuationFrame(1, data=make_block(raw)).serialize()
        sent, closed, took = flood(raw, unit, count, batch=100)
        g = raw.reader.goaway()
        check(closed and g is not None,
              "%s CONTINUATIONs: after %d frames (%d bytes) in %.1fs: %s" % (
                  what, sent, raw.sent, took, _describe(raw)))
        check(took < 4, "%s CONTINUATIONs: closed only after %.1fs" % (what, took))
        check(g.error_code != NO_ERROR, "%s CONTINUATIONs: GOAWAY NO_ERROR" % what)
    grown = al.rss_kib() - rss0
    check(grown < 32 * 1024, "airlock grew %d KiB during the CONTINUATION floods" % grown)
    check_eq(len(up.requests), 0, "requests upstream")


def test_h2_rapid_reset_gets_goaway_enhance_your_calm(env):
    up, al = h2_setup(env)
    raw = raw_h2(al, LOOPBACK4, up.port)
    raw.ack_settings()
    total, batch = 5000, 100
    t0 = time.monotonic()
    sid = 1
    while sid < 2 * total and not raw.reader.goaway() and not raw.reader.closed:
        frames = []
        for _ in range(batch):
            frames += raw.headers_frames(sid, raw.request_fields("/rr"))
            frames.append(hf.RstStreamFrame(sid, error_code=CANCEL))
            sid += 2
        if not raw.send(*frames):
            break
        raw.reader.poll(0)
    closed = raw.wait_closed(max(0.1, 4 - (time.monotonic() - t0)))
    g = raw.reader.goaway()
    check(g is not None and closed, "after %d HEADERS+RST_STREAM pairs: %s" % (
        sid // 2, _describe(raw)))
    check_eq(g.error_code, ENHANCE_YOUR_CALM, "GOAWAY error code")
    check(len(up.requests) < 1000, "%d of the reset streams reached the upstream" %
          len(up.requests))


def _control_flood(env, what, unit, total=5000, open_stream=False, acks=None):
    """total copies of unit (5 times H2_CONTROL_BUDGET) must end in GOAWAY ENHANCE_YOUR_CALM and
    a close, with at most H2_CONTROL_BUDGET answers of the kind `acks` (a frame class) sent
    back. (The kernel's buffers take every byte before airlock has read them: how many frames
    were sent proves nothing.)"""
    up, al = h2_setup(env, {"/slow-upload": h2_hold})
    raw = raw_h2(al, LOOPBACK4, up.port)
    if open_stream:
        raw.send(*raw.headers_frames(1, raw.request_fields("/slow-upload", "POST"),
                                     end_stream=False))
    sent, closed, took = flood(raw, unit, total)
    g = raw.reader.goaway()
    check(closed and g is not None, "%s: after %d frames and %.1fs: %s" % (
        what, sent, took, _describe(raw)))
    check_eq(g.error_code, ENHANCE_YOUR_CALM, "%s: GOAWAY error code" % what)
    if acks is not None:
        n = len([f for f in raw.reader.of(acks) if "ACK" in f.flags])
        check(n <= H2_CONTROL_BUDGET + 1, "%s: %d ACKs sent back" % (what, n))
    check(al.alive(), "airlock died")


def test_h2_settings_flood_gets_goaway(env):
    _need_h2()
    _control_flood(env, "SETTINGS flood", hf.SettingsFrame(0).serialize(),
                   acks=hf.SettingsFrame)


def test_h2_ping_flood_gets_goaway(env):
    _need_h2()
    _control_flood(env, "PING flood", hf.PingFrame(0, opaque_data=b"12345678").serialize(),
                   acks=hf.PingFrame)


def test_h2_empty_data_flood_gets_goaway(env):
    _need_h2()
    _control_flood(env, "empty DATA flood", hf.DataFrame(1, data=b"").serialize(),
                   open_stream=True)


def test_h2_hpack_table_size_update_above_limit_is_connection_error(env):
    up, al = h2_setup(env)
    raw = raw_h2(al, LOOPBACK4, up.port)
    table = raw.settings().get(S_HEADER_TABLE_SIZE, 4096)
    raw.ack_settings()
    block = _hpack_size_update(max(table, 4096) * 256) + raw.encoder.encode(
        raw.request_fields("/hpack"))
    raw.send(*raw.headers_frames(1, None, block=block))
    closed = raw.wait_closed(3)
    g = raw.reader.goaway()
    check(g is not None and closed, "a table size update to %d (limit %d): %s" % (
        max(table, 4096) * 256, table, _describe(raw)))
    check_eq(g.error_code, COMPRESSION_ERROR, "GOAWAY error code")
    check_eq(len(up.requests), 0, "requests upstream")


def _hpack_size_update(size):
    """A dynamic table size update (RFC 7541 §6.3): 001 + a 5-bit prefix integer."""
    if size < 31:
        return bytes([0x20 | size])
    out, size = bytearray([0x20 | 31]), size - 31
    while size >= 128:
        out.append(0x80 | (size & 0x7F))
        size >>= 7
    out.append(size)
    return bytes(out)


def test_h2_h2c_upgrade_inside_http11_tunnel_is_not_forwarded(env):
    up = env.upstream()
    al = env.airlock([up])
    c = open_tunnel(al, LOOPBACK4, up.port)  # ALPN http/1.1
    r = c.request("GET", "/h2c", [("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"),
                                  ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")])
    check(r.status != 101, "airlock answered 101 to an h2c upgrade: %r" % r)
    for q in up.requests:
        check(not q.headers.has("upgrade"), "the upstream saw Upgrade: %r" % q.raw_head)
        check(not q.headers.has("http2-settings"), "the upstream saw HTTP2-Settings: %r" %
              q.raw_head)


def test_h2_prior_knowledge_preface_inside_http11_tunnel_gets_400(env):
    up = env.upstream()
    al = env.airlock([up])
    c = open_tunnel(al, LOOPBACK4, up.port)
    c.send(PREFACE)
    r = c.read_response()
    check_eq(r.status, 400, "answer to an h2 preface on an HTTP/1.1 tunnel (%r)" % r)
    check_eq(len(up.requests), 0, "requests upstream")


# ---------------------------------------------------------------------------------------------
# 6. Hostile upstreams.
# ---------------------------------------------------------------------------------------------

def _push_route(req, sc):
    """PUSH_PROMISE on the request's stream though airlock said SETTINGS_ENABLE_PUSH 0, then a
    normal response."""
    req.wait_body()

    def promise(conn):
        block = conn.encoder.encode([(":method", "GET"), (":scheme", "https"),
                                     (":authority", req.authority), (":path", "/pushed")])
        f = hf.PushPromiseFrame(req.sid, promised_stream_id=2, data=block)
        f.flags.add("END_HEADERS")
        return f.serialize()
    sc.send_raw(promise)
    sc.respond(req.sid, 200, [("content-type", "text/plain")], b"parent")


def test_h2_upstream_push_promise_never_reaches_client(env):
    up, al = h2_setup(env, {"/push": _push_route})
    c = h2_client(al, LOOPBACK4, up.port)  # a client that would accept pushes
    r = c.get("/push")
    check_eq(up.remote_settings.get(S_ENABLE_PUSH), 0, "SETTINGS_ENABLE_PUSH airlock sent")
    check_eq(c.pushes, [], "pushes the client received")
    check(r.reset is not None or r.status == 502,
          "the pushing upstream's stream answered %r, want 502 or a reset" % r)
    wait_until(lambda: up.goaways, 2)
    check_eq([code for code, _ in up.goaways], [PROTOCOL_ERROR],
             "GOAWAY airlock sent the pushing upstream")
    c.wait(lambda: c.goaway is not None, 3)
    check(c.goaway is not None, "no GOAWAY to the client after its upstream broke the protocol")


def _reset_route(req, sc):
    """/reset-refused and /reset-before: RST_STREAM (REFUSED_STREAM, INTERNAL_ERROR) before any
    response; /reset-after: INTERNAL_ERROR in the middle of the body."""
    req.wait_body()
    if req.path in ("/reset-refused", "/reset-before"):
        sc.reset(req.sid, REFUSED_STREAM if req.path == "/reset-refused" else INTERNAL_ERROR)
        return
    sc.send_headers(req.sid, [(":status", "200"), ("content-type", "text/plain")])
    sc.send_data(req.sid, b"partial " * 100)
    time.sleep(0.1)
    sc.reset(req.sid, INTERNAL_ERROR)


def test_h2_upstream_rst_stream_resets_client_stream(env):
    """docs/http2.md, Resets and GOAWAY: REFUSED_STREAM before a response is passed on (the
    client may retry), another code before a response is a 502, after it the same reset."""
    up, al = h2_setup(env, {"/reset-": _reset_route})
    c = h2_client(al, LOOPBACK4, up.port)
    r = c.get("/reset-refused")
    check_eq((r.status, r.reset), (None, REFUSED_STREAM),
             "(status, reset) of a stream the upstream refused (%r)" % r)
    r = c.get("/reset-before")
    check_eq(r.status, 502, "stream reset upstream before a response (%r)" % r)
    check(r.ended, "the 502 did not end cleanly: %r" % r)
    check(isinstance(r.json(), dict), "the 502 has no JSON body: %r" % r)
    r = c.get("/reset-after")
    check(not r.ended, "a body cut by the upstream's reset ended cleanly: %r" % r)
    check_eq((r.status, r.reset), (200, INTERNAL_ERROR),
             "(status, reset) of a stream reset upstream mid-body (%r)" % r)
    check_eq(c.get("/still-fine").status, 200, "a stream on the same connection afterwards")


def _goaway_routes():
    """/first is held until /second arrives; /second makes the upstream send GOAWAY with
    last-stream-id = /first's stream, then /first is answered and /second never is."""
    def first(req, sc):
        req.wait_body()
        req.server.up.state["first"] = req.sid
        check(req.server.up.release.wait(5), "/second never came")
        sc.respond(req.sid, 200, [("content-type", "text/plain")], b"first")

    def second(req, sc):
        req.wait_body()
        up = req.server.up
        last = up.state["first"]
        sc.send_raw(lambda conn: hf.GoAwayFrame(0, last_stream_id=last,
                                                error_code=NO_ERROR).serialize())
        up.release.set()
    return {"/first": first, "/second": second}


def test_h2_upstream_goaway_fails_streams_above_last_id_cleanly(env):
    up, al = h2_setup(env, _goaway_routes())
    c = h2_client(al, LOOPBACK4, up.port)
    a = c.request("GET", "/first")
    check(wait_until(lambda: "first" in up.state, 3), "/first never reached the upstream")
    b = c.request("GET", "/second")
    ra = c.response(a)
    check_eq((ra.status, bytes(ra.body)), (200, b"first"), "the stream below last-stream-id")
    rb = c.response(b)
    check_eq((rb.status, rb.reset), (None, REFUSED_STREAM),
             "(status, reset) of the stream above last-stream-id (%r)" % rb)
    c.wait(lambda: c.goaway is not None, 3)
    check(c.goaway is not None, "no GOAWAY to the client after the upstream's")


def _drop_route(req, sc):
    """Closes the whole connection (TCP, no GOAWAY) while the request waits for its answer."""
    req.wait_body()
    sc.call(lambda: sc.sock.shutdown(socket.SHUT_RDWR))


def test_h2_upstream_connection_drop_fails_open_streams(env):
    up, al = h2_setup(env, {"/drop": _drop_route, "/hold": h2_hold})
    c = h2_client(al, LOOPBACK4, up.port)
    held = c.request("GET", "/hold")
    check(wait_until(lambda: len(up.requests) == 1, 3), "/hold never reached the upstream")
    dropped = c.request("GET", "/drop")
    for sid in (held, dropped):
        r = c.response(sid, 3)
        check_eq(r.status, 502, "stream %d, with no response yet when the upstream's "
                 "connection dropped (%r)" % (sid, r))
    c.wait(lambda: c.goaway is not None, 3)
    check(c.goaway is not None, "no GOAWAY to the client after its upstream closed")


# ---------------------------------------------------------------------------------------------
# 7. Logs and metrics.
# ---------------------------------------------------------------------------------------------

def _log_path(line):
    return ((line.get("http_request") or {}).get("url") or {}).get("path")


def test_h2_log_has_one_line_per_stream_with_version_2_and_stream_id(env):
    up, al = h2_setup(env, deny_rules=[{"method": "*", "path": "/admin/**"}])
    c = h2_client(al, LOOPBACK4, up.port)
    ok = c.get("/logged")
    bad = c.get("/admin/x")
    check_eq((ok.status, bad.status), (200, 403), "statuses")
    for r, path in ((ok, "/logged"), (bad, "/admin/x")):
        lines = find_log(al, lambda l: _log_path(l) == path)
        check_eq(len(lines), 1, "log lines for stream %d (%s): %r" % (r.sid, path, lines))
        line = lines[0]
        check_eq(line["http_request"].get("version"), "2", "http_request.version of " + path)
        check_eq((line.get("unmapped") or {}).get("stream_id"), r.sid,
                 "unmapped.stream_id of " + path)
        check_eq((line.get("http_response") or {}).get("code"), r.status,
                 "http_response.code of " + path)


def test_h2_metrics_count_streams_by_decision(env):
    from test_admin import _scrape
    up = h2_upstream(env)
    admin = free_port()
    al = env.airlock(endpoints=[endpoint(LOOPBACK4, up.port,
                                         deny_rules=[{"method": "*", "path": "/admin/**"}])],
                     args=["--admin", "%s:%d" % (LOOPBACK4, admin)])
    before, _ = _scrape(admin)
    c = h2_client(al, LOOPBACK4, up.port)
    check_eq(c.get("/counted").status, 200, "allowed stream")
    check_eq(c.get("/admin/x").status, 403, "denied stream")
    allow, deny = ('airlock_h2_streams_total{decision="allow"}',
                   'airlock_h2_streams_total{decision="deny"}')

    def moved():
        s, _ = _scrape(admin)
        return s if s.get(allow, 0) > before.get(allow, 0) and \
            s.get(deny, 0) > before.get(deny, 0) else None
    after = wait_until(moved, 3)
    s, _ = _scrape(admin)
    check(after, "h2 stream counters did not move: %r" % {
        k: v for k, v in s.items() if "h2" in k})
    check_eq(after[allow] - before.get(allow, 0), 1, "allowed h2 streams counted")
    check_eq(after[deny] - before.get(deny, 0), 1, "denied h2 streams counted")


def test_h2_stream_judged_before_a_reload_logs_after_it(env):
    """Streams overlap: a stream audited under one policy snapshot ends after a reload that a
    later stream on the same connection was judged by. Its log line still says why it was
    audited, and the later stream is judged by the new policy."""
    up = h2_upstream(env, {"/hold": h2_hold})
    doc = policy_doc({"p": [loopback_ep(LOOPBACK4, up.port, access="read-only",
                                        enforcement="audit")]})
    al = start_airlock(env, doc)
    c = h2_client(al, LOOPBACK4, up.port)
    held = c.request("POST", "/hold/audited", body=b"x")  # read-only: audited, not denied
    wait_until(lambda: up.requests, 3)
    doc2 = policy_doc({"q": [loopback_ep(LOOPBACK4, up.port, access="full")]})
    reload(al, doc2)
    check_eq(c.get("/after").status, 200, "a stream judged under the new policy")
    up.release.set()
    r = c.response(held, 5)
    check_eq(r.status, 200, "the held stream's answer")
    lines = wait_log(al, lambda l: _log_path(l) == "/hold/audited" and
                     l.get("action") == "audit", 3)
    check(lines, "no audit line for the held stream:\n" + al.log_text()[-2000:])
    check("read-only" in (lines[0].get("status_detail") or ""),
          "the audit line lost its reason: %r" % lines[0])
