#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the seed corpus of fuzz_h2 (test/fuzz/corpus/h2/): the HTTP/2 contract's main paths
(test/unit/test_h2.c) as raw frames, in fuzz_h2's input format: a mode byte, then chunks of at
most 255 bytes, each one length byte and its bytes, fed alternately to the client's side and
the upstream's (the client's first). Both sides are past their preface when the input starts;
HPACK is written without the dynamic table, so that any seed decodes on its own. Run it from
anywhere; it rewrites the directory's files of the same names."""

import os
import struct

CREDS, SHUTDOWN, TIMEOUT, WRITE_FAILS, UPSTREAM_EOF, CLIENT_EOF = 1, 2, 4, 8, 16, 32
HOST = "api.example.com"
PH = "AIRLOCK_PLACEHOLDER_API_000001"
SECRET = "s3cretTOKENvalue42"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = 0, 1, 2, 3, 4, 5, 6, 7, 8, 9
END_STREAM, END_HEADERS, PADDED, PRIO, ACK = 1, 4, 8, 0x20, 1

# RFC 7541 Appendix A: the static entries the seeds use, whole or by name.
STATIC = {(":method", "GET"): 2, (":method", "POST"): 3, (":path", "/"): 4,
          (":scheme", "http"): 6, (":scheme", "https"): 7, (":status", "200"): 8,
          (":status", "204"): 9, (":status", "304"): 11, (":status", "404"): 13}
NAMES = {":authority": 1, ":method": 2, ":path": 4, ":scheme": 6, ":status": 8,
         "accept-encoding": 16, "authorization": 23, "content-length": 28,
         "content-type": 31, "host": 38, "user-agent": 58}


def integer(value, prefix_bits, first):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def string(s):
    b = s.encode("latin-1")
    return integer(len(b), 7, 0) + b


def hpack(fields):
    """Indexed when the static table has the pair, else a literal never indexed."""
    out = b""
    for name, value in fields:
        if (name, value) in STATIC:
            out += integer(STATIC[(name, value)], 7, 0x80)
        elif name in NAMES:
            out += integer(NAMES[name], 4, 0x10) + string(value)
        else:
            out += b"\x10" + string(name) + string(value)
    return out


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", sid) + payload


def req(sid, method, path, extra=(), end=True, authority=HOST):
    fields = [(":method", method), (":scheme", "https"), (":path", path)]
    if authority is not None:
        fields.append((":authority", authority))
    return frame(HEADERS, END_HEADERS | (END_STREAM if end else 0), sid,
                 hpack(fields + list(extra)))


def resp(sid, status, extra=(), end=False):
    return frame(HEADERS, END_HEADERS | (END_STREAM if end else 0), sid,
                 hpack([(":status", str(status))] + list(extra)))


def data(sid, payload, end=True):
    return frame(DATA, END_STREAM if end else 0, sid, payload)


def trailers(sid, fields):
    return frame(HEADERS, END_HEADERS | END_STREAM, sid, hpack(fields))


def rst(sid, code):
    return frame(RST_STREAM, 0, sid, struct.pack(">I", code))


def goaway(last, code):
    return frame(GOAWAY, 0, 0, struct.pack(">II", last, code))


def ok(sid, body=b"ok"):
    return resp(sid, 200, [("content-type", "text/plain"),
                           ("content-length", str(len(body)))]) + data(sid, body)


def seed(events, mode=0):
    """events: (side, bytes) in order, side "c" or "u"; written as alternating chunks."""
    out = bytearray([mode])
    turn = "c"
    for side, payload in events:
        if side != turn:
            out.append(0)
            turn = side
        pieces = [payload[i:i + 255] for i in range(0, len(payload), 255)] or [b""]
        for n, piece in enumerate(pieces):
            if n:
                out.append(0)  # the other side says nothing in between
            out.append(len(piece))
            out += piece
        turn = "u" if turn == "c" else "c"
    return bytes(out)


GRPC_MSG = b"\0\0\0\0\5hello"
SECRET_BODY = ('{"k":"%s"}' % SECRET).encode()

SEEDS = {
    "get_ok": seed([("c", req(1, "GET", "/x?q=1")), ("u", ok(1))]),
    "denied": seed([("c", req(1, "GET", "/deny/x") + req(3, "GET", "/y")), ("u", ok(1))]),
    "grpc_trailers_both_ways": seed([
        ("c", req(1, "POST", "/grpc/pkg.Svc/Call",
                  [("content-type", "application/grpc"), ("te", "trailers")], end=False) +
         data(1, GRPC_MSG, end=False) + trailers(1, [("x-req-trailer", "done")])),
        ("u", resp(1, 200, [("content-type", "application/grpc")]) + data(1, GRPC_MSG, end=False) +
         trailers(1, [("grpc-status", "0"), ("grpc-message", "fine")]))]),
    "authority_mismatch": seed([("c", req(1, "GET", "/a", authority="evil.example") +
                                 req(3, "GET", "/b", authority=HOST + ":8443") +
                                 req(5, "GET", "/c", [("host", "evil.example")]))]),
    "host_without_authority": seed([("c", req(1, "GET", "/h", [("host", HOST)], authority=None)),
                                    ("u", ok(1))]),
    "placeholder_echo": seed([
        ("c", req(1, "GET", "/me", [("authorization", "Bearer " + PH)])),
        ("u", resp(1, 200, [("x-key", SECRET), ("content-length", str(len(SECRET_BODY)))]) +
         data(1, SECRET_BODY))], CREDS),
    "placeholder_in_path": seed([("c", req(1, "GET", "/p/" + PH + "?k=" + PH)), ("u", ok(1))],
                                CREDS),
    "client_reset": seed([("c", req(1, "GET", "/x")), ("u", b""),
                          ("c", rst(1, 8) + req(3, "GET", "/y")), ("u", ok(3))]),
    "upstream_reset": seed([("c", req(1, "GET", "/x")), ("u", rst(1, 2)),
                            ("c", req(3, "GET", "/y")), ("u", ok(3))]),
    "upstream_reset_mid_body": seed([("c", req(1, "GET", "/x")),
                                     ("u", resp(1, 200, [("content-length", "10")]) +
                                      data(1, b"abc", end=False) + rst(1, 2))]),
    "client_goaway": seed([("c", req(1, "GET", "/x") + goaway(0, 0)), ("u", ok(1))]),
    "upstream_goaway": seed([("c", req(1, "GET", "/x") + req(3, "GET", "/y")),
                             ("u", goaway(1, 0) + ok(1))]),
    "two_streams_interleaved": seed([
        ("c", req(1, "GET", "/a") + req(3, "POST", "/echo", end=False) + data(3, b"x" * 300)),
        ("u", resp(3, 200) + resp(1, 200) + data(3, b"y" * 200, end=False) + data(1, b"one") +
         data(3, b"z"))]),
    "control_frames": seed([
        ("c", frame(PING, 0, 0, b"pingpong") +
         frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 1 << 20) + struct.pack(">HI", 1, 0)) +
         frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1 << 20)) +
         frame(PRIORITY, 0, 3, struct.pack(">IB", 1, 15)) + req(1, "GET", "/x")),
        ("u", frame(PING, 0, 0, b"pingpong") + frame(SETTINGS, 0, 0, struct.pack(">HI", 1, 0)) +
         frame(SETTINGS, ACK, 0) + ok(1))]),
    "paths": seed([("c", req(1, "GET", "/a/../b?x=%2e") + req(3, "GET", "/%2e%2e/x") +
                    req(5, "GET", "/a%2fb") + req(7, "OPTIONS", "*") + req(9, "GET", "//x//y")),
                   ("u", ok(1) + ok(3) + ok(5))]),
    "head_204_304": seed([("c", req(1, "HEAD", "/h") + req(3, "GET", "/n") + req(5, "GET", "/m")),
                          ("u", resp(1, 200, [("content-length", "2")], end=True) +
                           resp(3, 204, end=True) + resp(5, 304, end=True))]),
    "content_length_mismatch": seed([
        ("c", req(1, "POST", "/p", [("content-length", "10")], end=False) + data(1, b"12345")),
        ("u", resp(1, 200, [("content-length", "5")]) + data(1, b"123"))]),
    "interim_then_final": seed([("c", req(1, "POST", "/e", [("expect", "100-continue")],
                                          end=False)),
                                ("u", resp(1, 100) + resp(1, 103, [("link", "</s>")])),
                                ("c", data(1, b"body")), ("u", ok(1))]),
    "upstream_http1_fields": seed([("c", req(1, "GET", "/x")),
                                   ("u", resp(1, 200, [("connection", "close"),
                                                       ("transfer-encoding", "chunked"),
                                                       ("content-length", "2")]) +
                                    data(1, b"ok"))]),
    "continuation": seed([("c", frame(HEADERS, 0, 1, hpack([(":method", "GET"),
                                                             (":scheme", "https")])) +
                           frame(CONTINUATION, END_HEADERS | END_STREAM, 1,
                                 hpack([(":path", "/c"), (":authority", HOST)]))),
                          ("u", ok(1))]),
    "padding": seed([("c", frame(HEADERS, END_HEADERS | END_STREAM | PADDED, 1,
                                 b"\x03" + hpack([(":method", "GET"), (":scheme", "https"),
                                                  (":path", "/pad"), (":authority", HOST)]) +
                                 b"\0\0\0")),
                     ("u", resp(1, 200) + frame(DATA, END_STREAM | PADDED, 1, b"\x02ok\0\0"))]),
    "upload": seed([("c", req(1, "PUT", "/up", [("content-length", "900")], end=False) +
                     data(1, b"a" * 300, end=False) + data(1, b"b" * 300, end=False) +
                     data(1, b"c" * 300)), ("u", ok(1))]),
    "connect_and_bad_scheme": seed([("c", frame(HEADERS, END_HEADERS | END_STREAM, 1,
                                                hpack([(":method", "CONNECT"),
                                                       (":authority", HOST + ":443")])) +
                                     req(3, "GET", "/s", [(":scheme", "http")]))]),
    "shutdown_midway": seed([("c", req(1, "GET", "/x")), ("u", b""), ("c", b""), ("u", ok(1))],
                            SHUTDOWN),
    "timeout_midway": seed([("c", req(1, "GET", "/x") + req(3, "GET", "/y")), ("u", ok(3)),
                            ("c", b""), ("u", ok(1))], TIMEOUT),
    "write_fails_midway": seed([("c", req(1, "GET", "/x")), ("u", ok(1)),
                                ("c", req(3, "POST", "/p", end=False)), ("u", b""),
                                ("c", data(3, b"late"))], WRITE_FAILS),
    "upstream_eof": seed([("c", req(1, "GET", "/x"))], UPSTREAM_EOF),
    "client_eof": seed([("c", req(1, "GET", "/x")), ("u", ok(1))], CLIENT_EOF | UPSTREAM_EOF),
}


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "h2")
    os.makedirs(out, exist_ok=True)
    for name, body in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(body)
    print("%d seeds in %s" % (len(SEEDS), out))


if __name__ == "__main__":
    main()
