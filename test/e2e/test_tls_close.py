# SPDX-License-Identifier: MIT
"""How a TLS connection's end crosses airlock. A close_notify is the authenticated end of a TLS
stream; a TCP FIN without one is what anyone on the path can inject. Where the end of what a
peer receives is the other peer's end (a response body delimited by the close, a WebSocket pipe,
either direction), airlock passes it on as it came: close_notify for close_notify, a FIN alone
for a FIN alone, so a truncation never reaches the other peer as a clean end.

The clients and upstreams here read with suppress_ragged_eofs=False and without
OP_IGNORE_UNEXPECTED_EOF, so that a FIN without close_notify raises an SSL error while a
close_notify reads as b""."""

import socket
import ssl
import threading

from harness import (LOOPBACK4, build_response, check, check_eq, connect_tunnel_resp, find_log,
                     wait_until, ws_accept, ws_upgrade_request)

BODY = b"".join(b"line %04d of a body that runs until the connection closes\n" % i
                for i in range(200))
PAYLOAD = b"raw bytes piped after the upgrade\n" * 100
# Set by default in some Python builds: it makes a FIN without close_notify read as a clean end.
_IGNORE_UNEXPECTED_EOF = getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)


def _strict_tunnel(al, port):
    """CONNECT and TLS to airlock's minted certificate, reporting a bare FIN as an error."""
    resp, sock = connect_tunnel_resp(al, LOOPBACK4, port)
    check_eq(resp.status, 200, "CONNECT status")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(al.ca_pem)
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.options &= ~_IGNORE_UNEXPECTED_EOF
    tls = ctx.wrap_socket(sock, server_hostname=LOOPBACK4, suppress_ragged_eofs=False)
    al.clients.append(tls)
    return tls


def _read_to_end(sock, have=b""):
    """Everything until the peer's end, and how it ended: "close_notify", "fin" (a TCP FIN
    without close_notify) or "reset"."""
    data = bytearray(have)
    while True:
        try:
            chunk = sock.recv(65536)
        except ssl.SSLError as e:
            # OpenSSL 3 reports a FIN without close_notify as "unexpected eof while reading"
            # (SSLEOFError in newer Pythons, a plain SSLError with that reason in older ones).
            if isinstance(e, ssl.SSLEOFError) or e.reason == "UNEXPECTED_EOF_WHILE_READING":
                return bytes(data), "fin"
            raise
        except (ConnectionResetError, BrokenPipeError):
            return bytes(data), "reset"
        if not chunk:
            return bytes(data), "close_notify"
        data += chunk


def _read_head(sock):
    """The response head (through the blank line) and whatever came behind it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        check(chunk, "the connection ended before a response head: %r" % data[:200])
        data += chunk
    i = data.index(b"\r\n\r\n") + 4
    return data[:i], data[i:]


def _end_with_fin(conn):
    """The upstream's end without close_notify: a FIN on the raw socket under the TLS layer, then
    wait for airlock to close its side (closing earlier could turn our FIN into a reset)."""
    socket.socket.shutdown(conn.sock, socket.SHUT_WR)
    conn.sock.settimeout(5)
    try:
        while socket.socket.recv(conn.sock, 65536):
            pass
    except OSError:
        pass


def _end_with_close_notify(conn):
    """close_notify, then FIN. unwrap() also waits for the peer's close_notify, which airlock
    may never send (it closes the upstream once the response is complete): bounded, ignored."""
    conn.sock.settimeout(2)
    try:
        sock = conn.sock.unwrap()
        sock.shutdown(socket.SHUT_WR)
    except (OSError, ssl.SSLError):
        pass


def _body_until_close(ending):
    def handler(conn):
        conn.read_request()
        # No Content-Length, no chunking: the body ends where the connection does
        # (RFC 9112 §6.3, rule 8).
        conn.sendall(build_response(200, "OK", [("Content-Type", "text/plain"),
                                                ("Connection", "close")]) + BODY)
        ending(conn)
    return handler


def _get_until_close(env, ending):
    up = env.upstream(_body_until_close(ending))
    al = env.airlock([up])
    tls = _strict_tunnel(al, up.port)
    tls.sendall(b"GET /until-close HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (LOOPBACK4.encode(),
                                                                     up.port))
    head, rest = _read_head(tls)
    check(head.startswith(b"HTTP/1.1 200 "), "response head: %r" % head)
    body, how = _read_to_end(tls, rest)
    check(body == BODY, "the body differs: %d bytes, want %d" % (len(body), len(BODY)))
    return al, how


def test_body_until_close_cut_by_a_bare_fin_reaches_the_client_without_close_notify(env):
    """The upstream's FIN ends the body without close_notify (a cut anyone on the path could
    make): the client must not get a close_notify, which would vouch for a complete body."""
    al, how = _get_until_close(env, _end_with_fin)
    check_eq(how, "fin", "how the client's TLS stream ended")
    check(find_log(al, lambda l: "without TLS close_notify" in str(l.get("status_detail", ""))),
          "no log line says the upstream ended without close_notify")


def test_body_until_close_ended_by_close_notify_reaches_the_client_with_close_notify(env):
    al, how = _get_until_close(env, _end_with_close_notify)
    check_eq(how, "close_notify", "how the client's TLS stream ended")


# ----- after a WebSocket upgrade ---------------------------------------------------------------

def _upgrade_then(after):
    """Answer the upgrade, then after(conn)."""
    def handler(conn):
        req = conn.read_request()
        key = req.headers.get("sec-websocket-key", "")
        conn.sendall(build_response(101, "Switching Protocols", [
            ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", ws_accept(key))]))
        after(conn)
    return handler


def _upgraded(env, handler, strict_upstream=False):
    up = env.upstream(handler)
    if strict_upstream:
        # The upstream must tell a bare FIN from a close_notify too.
        up.ctx.options &= ~_IGNORE_UNEXPECTED_EOF
    al = env.airlock([up])
    tls = _strict_tunnel(al, up.port)
    req, _ = ws_upgrade_request("%s:%d" % (LOOPBACK4, up.port))
    tls.sendall(req)
    head, rest = _read_head(tls)
    check(head.startswith(b"HTTP/1.1 101 "), "upgrade answer: %r" % head)
    return up, al, tls, rest


def _send_then(ending):
    def after(conn):
        conn.sendall(PAYLOAD)
        ending(conn)
    return after


def test_pipe_upstream_bare_fin_reaches_the_client_without_close_notify(env):
    up, al, tls, rest = _upgraded(env, _upgrade_then(_send_then(_end_with_fin)))
    data, how = _read_to_end(tls, rest)
    check(data == PAYLOAD, "piped bytes differ: %d, want %d" % (len(data), len(PAYLOAD)))
    check_eq(how, "fin", "how the client's TLS stream ended")
    check(find_log(al, lambda l: "without TLS close_notify" in str(l.get("status_detail", ""))),
          "no log line says the upstream ended without close_notify")


def test_pipe_upstream_close_notify_reaches_the_client(env):
    up, al, tls, rest = _upgraded(env, _upgrade_then(_send_then(_end_with_close_notify)))
    data, how = _read_to_end(tls, rest)
    check(data == PAYLOAD, "piped bytes differ: %d, want %d" % (len(data), len(PAYLOAD)))
    check_eq(how, "close_notify", "how the client's TLS stream ended")


def _record_client_end(seen):
    """The upstream reads the client's bytes to their end and records (bytes, how)."""
    def after(conn):
        conn.sock.suppress_ragged_eofs = False
        seen.append(_read_to_end(conn.sock))
        _end_with_fin(conn)
    return after


def _wait_seen(seen):
    check(wait_until(lambda: seen, 5), "the upstream never saw the client's end")
    return seen[0]


def test_pipe_client_bare_fin_reaches_the_upstream_without_close_notify(env):
    seen = []
    up, al, tls, _ = _upgraded(env, _upgrade_then(_record_client_end(seen)),
                               strict_upstream=True)
    tls.sendall(PAYLOAD)
    socket.socket.shutdown(tls, socket.SHUT_WR)  # under the TLS layer: no close_notify
    data, how = _wait_seen(seen)
    check(data == PAYLOAD, "piped bytes differ: %d, want %d" % (len(data), len(PAYLOAD)))
    check_eq(how, "fin", "how the upstream's TLS stream ended")
    check(find_log(al, lambda l: "client closed without TLS close_notify" in
                   str(l.get("status_detail", ""))),
          "no log line says the client ended without close_notify")


def test_pipe_client_close_notify_reaches_the_upstream(env):
    seen = []
    up, al, tls, _ = _upgraded(env, _upgrade_then(_record_client_end(seen)),
                               strict_upstream=True)
    tls.sendall(PAYLOAD)
    # unwrap() sends close_notify, then waits for one back, which never comes (the upstream
    # ends with a bare FIN): run it aside, bounded.
    tls.settimeout(3)

    def close_notify():
        try:
            tls.unwrap()
        except (OSError, ssl.SSLError):
            pass
    t = threading.Thread(target=close_notify, daemon=True)
    t.start()
    data, how = _wait_seen(seen)
    t.join(5)
    check(data == PAYLOAD, "piped bytes differ: %d, want %d" % (len(data), len(PAYLOAD)))
    check_eq(how, "close_notify", "how the upstream's TLS stream ended")
