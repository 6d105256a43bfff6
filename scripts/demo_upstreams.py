#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Loopback servers and the WebSocket client for scripts/demo (Python standard library only;
the raw HTTP/1.1, TLS and WebSocket pieces come from test/e2e/harness.py).

    demo_upstreams.py serve DIR
        Make a throwaway upstream CA and leaf in DIR/pki (openssl CLI), then serve on 127.0.0.1:
          - an HTTPS API that records every request it receives (DIR/received.jsonl, one JSON
            object a line: method, target, headers, body) and answers with a JSON echo of it;
            GET /unsolicited-101 is answered with a 101 Switching Protocols nobody asked for;
          - a WebSocket-over-TLS echo server (GET with Upgrade: websocket on any path).
        Writes DIR/upstreams.env (API_PORT, WS_PORT, UPSTREAM_CA) once both listen, and runs
        until SIGTERM or SIGINT, until its parent exits, or for at most 10 minutes.

    demo_upstreams.py ws-client --proxy HOST:PORT --ca FILE --target HOST:PORT --message TEXT
        CONNECT through the proxy, TLS verified against FILE, WebSocket upgrade, send TEXT, print
        what comes back, close. Exit 0 when the echo matches, 1 otherwise.
"""

import argparse
import json
import os
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "test", "e2e"))

import harness  # noqa: E402
from harness import (WS_CLOSE, WS_PING, WS_PONG, WS_TEXT, Reader, WebSocketClient,  # noqa: E402
                     build_request, build_response, read_response, read_response_head,
                     ws_accept, ws_encode, ws_read_frame, ws_upgrade_request)

MAX_LIFETIME = 600.0   # seconds: never outlive a demo that lost track of us
SOCK_TIMEOUT = 10.0


# ----- servers ---------------------------------------------------------------------------------

class Recorder:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    def record(self, req):
        line = json.dumps({
            "method": req.method,
            "target": req.target,
            "headers": [[k, v] for k, v in req.headers.items],
            "body": req.body.decode("utf-8", "replace"),
        })
        with self.lock:
            with open(self.path, "a") as f:
                f.write(line + "\n")


def api_handler(recorder):
    def handle(conn):
        while True:
            req = conn.read_request()
            if req is None:
                return
            recorder.record(req)
            path = req.target.split("?")[0]
            if path == "/unsolicited-101":
                # A hostile or broken upstream: it switches protocols on a plain GET. A proxy
                # that pipes this hands the client raw bytes it never negotiated.
                conn.sendall(build_response(101, "Switching Protocols", [
                    ("Upgrade", "websocket"), ("Connection", "Upgrade")]) +
                    b"raw bytes after an unsolicited 101")
                conn.reader.wait_eof(SOCK_TIMEOUT)
                return
            body = json.dumps({"upstream_received": {
                "method": req.method, "target": req.target,
                "headers": dict((k, v) for k, v in req.headers.items),
                "body": req.body.decode("utf-8", "replace")}}, indent=2).encode() + b"\n"
            close = req.headers.has_token("connection", "close")
            conn.sendall(build_response(200, "OK", [
                ("Content-Type", "application/json"), ("Content-Length", str(len(body)))] +
                ([("Connection", "close")] if close else []), body))
            if close:
                return
    return handle


def ws_echo_handler(conn):
    req = conn.read_request()
    if req is None:
        return
    if not req.headers.has_token("upgrade", "websocket"):
        body = b"this server speaks WebSocket only\n"
        conn.sendall(build_response(426, "Upgrade Required", [
            ("Upgrade", "websocket"), ("Connection", "close"),
            ("Content-Length", str(len(body)))], body))
        return
    conn.sendall(build_response(101, "Switching Protocols", [
        ("Upgrade", "websocket"), ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", ws_accept(req.headers.get("sec-websocket-key", "")))]))
    while True:
        fin, opcode, payload, masked = ws_read_frame(conn.reader)
        if opcode == WS_CLOSE:
            conn.sendall(ws_encode(WS_CLOSE, payload[:2], masked=False))
            return
        if opcode == WS_PING:
            conn.sendall(ws_encode(WS_PONG, payload, masked=False))
            continue
        conn.sendall(ws_encode(opcode, payload, masked=False, fin=fin))


def serve(directory):
    os.makedirs(os.path.join(directory, "pki"), exist_ok=True)
    pki = harness.PKI(os.path.join(directory, "pki"))
    recorder = Recorder(os.path.join(directory, "received.jsonl"))
    open(recorder.path, "w").close()
    api = harness.Upstream(api_handler(recorder), tls=True, cert=pki.leaf, name="demo-api")
    ws = harness.Upstream(ws_echo_handler, tls=True, cert=pki.leaf, name="demo-ws")
    api.start()
    ws.start()

    env_path = os.path.join(directory, "upstreams.env")
    with open(env_path + ".tmp", "w") as f:
        f.write("API_PORT=%d\nWS_PORT=%d\nUPSTREAM_CA='%s'\n" % (
            api.port, ws.port, pki.ca.cert.replace("'", "'\\''")))
    os.rename(env_path + ".tmp", env_path)   # the demo waits for this file: write it whole

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    parent = os.getppid()
    started = time.monotonic()
    while not stop.wait(0.2):
        if os.getppid() != parent or time.monotonic() - started > MAX_LIFETIME:
            break
    api.stop()
    ws.stop()
    return 0


# ----- the WebSocket client ---------------------------------------------------------------------

def _hostport(s):
    host, _, port = s.rpartition(":")
    return host.strip("[]"), int(port)


def ws_client(proxy, cafile, target, message):
    import socket
    phost, pport = _hostport(proxy)
    thost, tport = _hostport(target)
    sock = socket.create_connection((phost, pport), timeout=SOCK_TIMEOUT)
    try:
        auth = "%s:%d" % (thost, tport)
        print("client: CONNECT %s (through the proxy at %s)" % (auth, proxy))
        sock.sendall(build_request("CONNECT", auth, [("Host", auth)]))
        r = read_response_head(Reader(sock))
        print("client: proxy answered %d %s" % (r.status, r.reason))
        if r.status != 200:
            return 1
        tls = harness.client_ctx(cafile).wrap_socket(sock, server_hostname=thost)
        sock = tls
        print("client: TLS with %s, certificate verified against %s" % (
            tls.version(), os.path.basename(cafile)))
        req, key = ws_upgrade_request(auth, "/chat")
        tls.sendall(req)
        reader = Reader(tls)
        r = read_response(reader)
        print("client: GET /chat with Upgrade: websocket -> %d %s" % (r.status, r.reason))
        if r.status != 101 or r.headers.get("sec-websocket-accept") != ws_accept(key):
            print("client: not a valid WebSocket upgrade")
            return 1
        ws = WebSocketClient(tls, reader)
        data = message.encode("utf-8")
        ws.send(WS_TEXT, data)
        print("client: sent text frame     %r" % message)
        opcode, payload = ws.recv()
        print("client: received text frame %r" % payload.decode("utf-8", "replace"))
        if (opcode, payload) != (WS_TEXT, data):
            print("client: the echo differs from what was sent")
            return 1
        ws.close()
        print("client: close handshake done")
        return 0
    except (OSError, EOFError, AssertionError) as e:
        print("client: %s: %s" % (type(e).__name__, e))
        return 1
    finally:
        try:
            sock.close()
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser(description="loopback upstreams and client for scripts/demo")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("dir")
    c = sub.add_parser("ws-client")
    c.add_argument("--proxy", required=True)
    c.add_argument("--ca", required=True)
    c.add_argument("--target", required=True)
    c.add_argument("--message", required=True)
    args = ap.parse_args()
    if args.cmd == "serve":
        return serve(args.dir)
    return ws_client(args.proxy, args.ca, args.target, args.message)


if __name__ == "__main__":
    sys.exit(main())
