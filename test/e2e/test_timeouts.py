# SPDX-License-Identifier: MIT
"""Idleness and slowloris timers, and shutdown on SIGTERM."""

import time

from harness import LOOPBACK4, Reader, check, check_eq, connect_tunnel_resp, tunnel_answer


def test_idle_keepalive_tunnel_closed_after_idle_timeout(env):
    up, al, c = env.tunnel(args=["--idle-timeout", "1"])
    check_eq(c.request("GET", "/").status, 200, "status")
    t0 = time.monotonic()
    closed, extra = c.wait_closed(5)
    took = time.monotonic() - t0
    check(closed, "idle tunnel still open 5 s after a 1 s idle timeout")
    check_eq(extra, b"", "bytes sent on the idle close")
    check(0.5 <= took <= 3.5, "idle tunnel closed after %.1fs, want about 1 s" % took)


def _check_slowloris(reader, what):
    t0 = time.monotonic()
    closed, data = reader.wait_eof(6)
    took = time.monotonic() - t0
    check(closed, "%s: connection still open after 6 s with --head-timeout 1" % what)
    check(took <= 4.0, "%s: closed after %.1fs, want about 1 s" % (what, took))
    if data:
        check(data.startswith(b"HTTP/1.1 408"), "%s: answered %r, want 408 or a close" % (
            what, data[:40]))


def test_partial_request_head_in_tunnel_gets_408_or_close(env):
    up, al, c = env.tunnel(args=["--head-timeout", "1"])
    c.send(("GET /slow HTTP/1.1\r\nHost: %s\r\nX-Partial: " % c.host).encode())
    _check_slowloris(c.reader, "partial head in a tunnel")
    check_eq(len(up.requests), 0, "requests that reached the upstream")


def test_partial_connect_line_gets_408_or_close(env):
    up = env.upstream()
    al = env.airlock([up], args=["--head-timeout", "1"])
    sock = al.connect()
    sock.sendall(("CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0" % up.port).encode())
    _check_slowloris(Reader(sock), "partial CONNECT head")
    check_eq(up.accepts, 0, "upstream connections")


def test_sigterm_exits_0_promptly_with_idle_tunnel_open(env):
    up, al, c = env.tunnel()
    check_eq(c.request("GET", "/").status, 200, "status")
    # A second connection that has said nothing at all.
    quiet = al.connect()
    rc, took = al.terminate(timeout=10)
    check(rc is not None, "airlock still running 10 s after SIGTERM")
    check_eq(rc, 0, "exit code after SIGTERM")
    check(took <= 5.0, "exit took %.1fs after SIGTERM with idle connections" % took)
    closed, _ = c.wait_closed(2)
    check(closed, "tunnel not closed by the exit")


# A TLS record header that announces a 16 KiB handshake record: a TLS stack waits for all of
# it, so bytes dribbled after it keep the handshake unfinished without ever failing it.
_TLS_RECORD_16K = b"\x16\x03\x01\x40\x00"


def _dribble_until_closed(sock, interval, limit):
    """Send one byte every interval seconds until the peer closes; seconds until the close, or
    None when it stayed open for limit seconds."""
    t0 = time.monotonic()
    reader = Reader(sock)
    while time.monotonic() - t0 < limit:
        try:
            sock.sendall(b"\x00")
        except OSError:
            return time.monotonic() - t0
        closed, _ = reader.wait_eof(interval)
        if closed:
            return time.monotonic() - t0
    return None


def test_client_tls_handshake_timeout_is_a_deadline(env):
    # One byte of ClientHello every 0.5 s must not stretch --handshake-timeout: the handshake
    # (which holds a verified upstream connection) ends 2 s after it started, however busy.
    up = env.upstream()
    al = env.airlock([up], args=["--handshake-timeout", "2"])
    resp, sock = connect_tunnel_resp(al, LOOPBACK4, up.port)
    check_eq(resp.status, 200, "CONNECT status")
    sock.sendall(_TLS_RECORD_16K)
    took = _dribble_until_closed(sock, 0.5, 8)
    check(took is not None, "client handshake still open after 8 s of dribbled bytes")
    check(took <= 3.5, "client handshake closed after %.1fs, want about 2 s" % took)
    check_eq(len(up.requests), 0, "requests that reached the upstream")


def _dribbling_server_hello(conn):
    conn.sock.recv(65536)  # the ClientHello
    conn.sendall(_TLS_RECORD_16K)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        time.sleep(0.5)
        try:
            conn.sendall(b"\x02")
        except OSError:
            return


def test_upstream_tls_handshake_timeout_is_a_deadline(env):
    # An upstream that dribbles its ServerHello must not hold the CONNECT past --connect-timeout.
    up = env.upstream(_dribbling_server_hello, tls=False)
    al = env.airlock([up], args=["--connect-timeout", "2"])
    t0 = time.monotonic()
    status, body, in_tls = tunnel_answer(al, LOOPBACK4, up.port, timeout=20)
    took = time.monotonic() - t0
    check_eq(status, 502, "status for an upstream that never finishes its hello")
    check(in_tls and body and body.get("error") == "upstream_tls_failed",
          "the 502 comes inside the client's TLS, as upstream_tls_failed: %r" % (body,))
    check(took <= 3.5, "502 after %.1fs, want about 2 s" % took)
