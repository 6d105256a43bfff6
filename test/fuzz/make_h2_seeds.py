#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the seed corpus of fuzz_h2 (test/fuzz/corpus/h2/): whole HTTP/2 tunnels, the client's
and the upstream's frames interleaved as real peers send them (requests, bodies, trailers,
denials, credentials, resets, GOAWAY, interim responses, trailers-only answers, and the attacks
test/e2e/test_h2_attack.py reproduces), in fuzz_h2's input format: a mode byte, then records
(a side-and-event byte; for bytes a 2-byte length and the bytes). Needs python3-hpack. Run it
from anywhere; it rewrites the directory's files of the same names."""

import os
import struct

import hpack

RO, CREDS = 1, 2
CLIENT, UPSTREAM = 0x00, 0x80
BYTES, EOF, TIMEOUT, SHUTDOWN = 0, 1, 2, 3
PH = "AIRLOCK_PLACEHOLDER_API_000001"
SECRET = "s3cretTOKENvalue42"

DATA, HEADERS, RST, SETTINGS, PUSH, PING, GOAWAY, WINDOW, CONT = 0, 1, 3, 4, 5, 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS = 1, 1, 4


def frame(kind, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", sid) + \
        payload


class Peer:
    """One side's frames, with its own HPACK encoder (as the real peer keeps one)."""

    def __init__(self):
        self.enc = hpack.Encoder()

    def headers(self, sid, fields, end=True):
        return frame(HEADERS, END_HEADERS | (END_STREAM if end else 0), sid,
                     self.enc.encode(fields))

    @staticmethod
    def data(sid, body, end=True):
        return frame(DATA, END_STREAM if end else 0, sid, body)


def req(host, path, method="GET", extra=()):
    return [(":method", method), (":scheme", "https"), (":authority", host + ":443"),
            (":path", path)] + list(extra)


def ok(body=b"ok", extra=()):
    return [(":status", "200"), ("content-length", str(len(body)))] + list(extra)


def records(*steps):
    out = b""
    for side, event, *payload in steps:
        out += bytes([side | event])
        if event == BYTES:
            out += struct.pack(">H", len(payload[0])) + payload[0]
    return out


ACK_SETTINGS = frame(SETTINGS, ACK, 0)


def seeds():
    api, ro = "api.example.com", "ro.example.com"
    out = {}

    c, u = Peer(), Peer()
    out["get"] = bytes([0]) + records(
        (CLIENT, BYTES, ACK_SETTINGS + c.headers(1, req(api, "/x"))),
        (UPSTREAM, BYTES, ACK_SETTINGS + u.headers(1, ok(end := b"hello"), end=False) +
         u.data(1, end)))

    c, u = Peer(), Peer()
    out["post_body_trailers"] = bytes([0]) + records(
        (CLIENT, BYTES, ACK_SETTINGS + c.headers(1, req(api, "/up", "POST"), end=False) +
         c.data(1, b"part one ", end=False)),
        (CLIENT, BYTES, c.data(1, b"part two", end=False) +
         c.headers(1, [("x-checksum", "abc")])),
        (UPSTREAM, BYTES, ACK_SETTINGS + u.headers(1, [(":status", "200")], end=False) +
         u.data(1, b"chunk", end=False) + u.headers(1, [("grpc-status", "0")])))

    c = Peer()
    out["denied"] = bytes([RO]) + records(
        (CLIENT, BYTES, ACK_SETTINGS + c.headers(1, req(ro, "/admin/x")) +
         c.headers(3, req(ro, "/x", "DELETE")) + c.headers(5, req("evil.example", "/x"))))

    c, u = Peer(), Peer()
    out["credential"] = bytes([CREDS]) + records(
        (CLIENT, BYTES, ACK_SETTINGS + c.headers(1, req(api, "/k?key=" + PH,
                                                       extra=[("authorization",
                                                               "Bearer " + PH)]))),
        (UPSTREAM, BYTES, ACK_SETTINGS + u.headers(1, ok(echo := ("echo " + SECRET).encode(),
                                                         [("x-echo", SECRET)]), end=False) +
         u.data(1, echo)))

    c = Peer()
    out["credential_wrong_host"] = bytes([RO | CREDS]) + records(
        (CLIENT, BYTES, ACK_SETTINGS + c.headers(1, req(ro, "/x",
                                                       extra=[("x-api-key", PH)]))))

    c, u = Peer(), Peer()
    out["resets"] = bytes([0]) + records(
        (CLIENT, BYTES, ACK_SETTINGS + c.headers(1, req(api, "/a"), end=False) +
         frame(RST, 0, 1, struct.pack(">I", 8)) + c.headers(3, req(api, "/b"))),
        (UPSTREAM, BYTES, ACK_SETTINGS + frame(RST, 0, 1, struct.pack(">I", 2)) +
         u.headers(3, [(":status", "200")], end=False) + u.data(3, b"x", end=False) +
         frame(RST, 0, 3, struct.pack(">I", 0))))

    c, u = Peer(), Peer()
    out["goaway_mid_response"] = bytes([0]) + records(
        (CLIENT, BYTES, ACK_SETTINGS + c.headers(1, req(api, "/a")) + c.headers(3, req(api, "/b"))),
        (UPSTREAM, BYTES, ACK_SETTINGS + u.headers(1, [(":status", "200")], end=False) +
         frame(GOAWAY, 0, 0, struct.pack(">II", 1, 0)) + u.data(1, b"rest")),
        (UPSTREAM, EOF))

    c, u = Peer(), Peer()
    out["interim_and_trailers_only"] = bytes([0]) + records(
        (CLIENT, BYTES, ACK_SETTINGS + c.headers(1, req(api, "/up", "POST",
                                                       [("expect", "100-continue")]),
                                                 end=False)),
        (UPSTREAM, BYTES, ACK_SETTINGS + u.headers(1, [(":status", "100")], end=False) +
         u.headers(1, [(":status", "103"), ("link", "</s>")], end=False)),
        (CLIENT, BYTES, c.data(1, b"body")),
        (UPSTREAM, BYTES, u.headers(1, [(":status", "200"), ("grpc-status", "0")])))

    c, u = Peer(), Peer()
    out["head_and_204"] = bytes([0]) + records(
        (CLIENT, BYTES, ACK_SETTINGS + c.headers(1, req(api, "/h", "HEAD")) +
         c.headers(3, req(api, "/n"))),
        (UPSTREAM, BYTES, ACK_SETTINGS + u.headers(1, ok(b"0123456789")) +
         u.headers(3, [(":status", "204")])))

    c = Peer()
    out["made_you_reset"] = bytes([0]) + records(
        (CLIENT, BYTES, ACK_SETTINGS + b"".join(
            c.headers(sid, req(api, "/u", "POST", [("content-length", "1")]), end=False) +
            c.data(sid, b"too long", end=False) for sid in range(1, 40, 2))))

    c, u = Peer(), Peer()
    out["protocol_error_upstream"] = bytes([0]) + records(
        (CLIENT, BYTES, ACK_SETTINGS + c.headers(1, req(api, "/p"))),
        (UPSTREAM, BYTES, ACK_SETTINGS + frame(PUSH, END_HEADERS, 1, struct.pack(">I", 2) +
                                               u.enc.encode(req(api, "/pushed")))))

    c, u = Peer(), Peer()
    out["timeout_and_shutdown"] = bytes([0]) + records(
        (CLIENT, BYTES, ACK_SETTINGS + c.headers(1, req(api, "/slow")) +
         c.headers(3, req(api, "/up", "POST"), end=False) + c.data(3, b"x" * 100, end=False)),
        (UPSTREAM, BYTES, ACK_SETTINGS),
        (CLIENT, TIMEOUT), (CLIENT, SHUTDOWN), (CLIENT, EOF))

    c = Peer()
    out["continuation_and_ping"] = bytes([0]) + records(
        (CLIENT, BYTES, ACK_SETTINGS + frame(HEADERS, 0, 1, c.enc.encode(req(api, "/c"))) +
         frame(CONT, 0, 1, c.enc.encode([("x-a", "1")])) +
         frame(CONT, END_HEADERS, 1, c.enc.encode([("x-b", "2")])) +
         frame(PING, 0, 0, b"12345678") + frame(WINDOW, 0, 0, struct.pack(">I", 1000))))
    return out


def main():
    d = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "h2")
    os.makedirs(d, exist_ok=True)
    for name, data in seeds().items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
