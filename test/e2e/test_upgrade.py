# SPDX-License-Identifier: MIT
"""101 Switching Protocols: a real WebSocket upgrade is piped (overflow bytes included, no idle
cut), an unsolicited or invalid 101 is refused with 502."""

import hashlib
import json
import time

from harness import (WS_BINARY, WS_TEXT, WebSocketClient, build_request, check, check_eq,
                     find_log, read_response, ws_accept, ws_bad_accept_handler,
                     ws_upgrade_request)

FIRST = b"hello from upstream"


def _open_ws(env, args=()):
    up, al, c = env.tunnel(args=args)
    req, key = ws_upgrade_request(c.host)
    c.send(req)
    r = read_response(c.reader)
    check_eq(r.status, 101, "status of the upgrade")
    check(r.headers.has_token("upgrade", "websocket"), "101 lacks Upgrade: websocket")
    check(r.headers.has_token("connection", "upgrade"), "101 lacks Connection: upgrade")
    check_eq(r.headers.get("sec-websocket-accept"), ws_accept(key), "Sec-WebSocket-Accept")
    return up, al, WebSocketClient(c.sock, c.reader)


def test_websocket_101_and_first_frame_in_one_write_both_reach_client(env):
    up, al, ws = _open_ws(env)
    check_eq(ws.recv(), (WS_TEXT, FIRST), "first server frame (sent with the 101)")
    ws.close()


def _payload(i, n, binary):
    if binary:
        seed = hashlib.sha256(b"%d" % i).digest()
        return (seed * (n // 32 + 1))[:n]
    return (("msg %d " % i).encode() + b"abcdefghijklmnopqrstuvwxyz" * (n // 26 + 1))[:n]


SIZES = [1, 2, 125, 126, 127, 1000, 16384, 65535, 65536, 200 * 1024]


def test_websocket_echo_100_round_trips_then_close_handshake(env):
    up, al, ws = _open_ws(env)
    check_eq(ws.recv(), (WS_TEXT, FIRST), "first server frame")
    for i in range(100):
        n = SIZES[i % len(SIZES)]
        binary = (i // len(SIZES)) % 2 == 1 or i % 3 == 0
        op = WS_BINARY if binary else WS_TEXT
        msg = _payload(i, n, binary)
        ws.send(op, msg)
        got_op, got = ws.recv()
        check_eq(got_op, op, "opcode of echo %d (%d bytes)" % (i, n))
        check(got == msg, "payload of echo %d (%d bytes) differs" % (i, n))
    ws.close()


def test_websocket_outlives_keepalive_idle_timeout(env):
    up, al, ws = _open_ws(env, args=["--idle-timeout", "1"])
    check_eq(ws.recv(), (WS_TEXT, FIRST), "first server frame")
    time.sleep(2.5)
    ws.send(WS_TEXT, b"still there?")
    check_eq(ws.recv(), (WS_TEXT, b"still there?"), "echo after 2.5 s idle")
    ws.close()


def _finding(line):
    return line.get("class_uid") == 2004 or "unsolicited" in json.dumps(line).lower()


def test_unsolicited_101_gets_502_closes_and_logs_finding(env):
    up, al, c = env.tunnel()
    c.send_request("GET", "/unsolicited-101")
    r = read_response(c.reader)
    check_eq(r.status, 502, "status for a 101 nobody asked for")
    closed, extra = c.wait_closed(5)
    check(closed, "tunnel still open after the unsolicited 101")
    check(b"raw bytes after 101" not in r.body + extra, "bytes after the 101 reached the client")
    lines = find_log(al, _finding)
    check(lines, "no finding (class_uid 2004 / unsolicited) in the log:\n" + al.log_text()[-3000:])


def test_101_with_wrong_websocket_accept_gets_502(env):
    up, al, c = env.tunnel(handler=ws_bad_accept_handler)
    req, key = ws_upgrade_request(c.host)
    c.send(req)
    r = read_response(c.reader)
    check_eq(r.status, 502, "status for a 101 whose Sec-WebSocket-Accept does not match")
    closed, _ = c.wait_closed(5)
    check(closed, "tunnel still open after the invalid 101")


def test_upgrade_refused_by_upstream_keeps_http(env):
    # An upgrade request that the upstream answers with a normal response stays HTTP.
    up, al, c = env.tunnel()
    c.send(build_request("GET", "/no-ws-here", [
        ("Host", c.host), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")]))
    r = read_response(c.reader)
    check_eq(r.status, 200, "status")
    r = c.request("GET", "/after")
    check_eq(r.json()["target"], "/after", "next request on the same tunnel")
