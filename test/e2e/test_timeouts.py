# SPDX-License-Identifier: MIT
"""Idleness and slowloris timers, and shutdown on SIGTERM."""

import time

from harness import Reader, check, check_eq


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
