# SPDX-License-Identifier: MIT
"""Bodies are streamed, never buffered whole: SSE events arrive as sent, a large download is
exact, and a slow reader holds the proxy's memory flat (backpressure)."""

import hashlib
import json
import time

from harness import (MIB, check, check_eq, content_sha256, iter_chunked, open_tunnel,
                     read_response_head)

SSE_MAX_DELAY = 0.100
BIG = 50 * MIB


def _body_pieces(reader, resp):
    """Yield body bytes as they arrive, whatever the framing airlock chose."""
    if resp.headers.has_token("transfer-encoding", "chunked"):
        yield from iter_chunked(reader)
    elif resp.headers.has("content-length"):
        left = int(resp.headers.get("content-length"))
        while left:
            part = reader.read_some(min(left, 1 << 20))
            if not part:
                raise EOFError("EOF with %d body bytes missing" % left)
            left -= len(part)
            yield part
    else:
        while True:
            part = reader.read_some()
            if not part:
                return
            yield part


def test_sse_events_arrive_without_buffering(env):
    up, al, c = env.tunnel()
    c.send_request("GET", "/sse", [("Accept", "text/event-stream")])
    resp = read_response_head(c.reader)
    check_eq(resp.status, 200, "status")
    buf = b""
    events = []
    for piece in _body_pieces(c.reader, resp):
        buf += piece
        while b"\n\n" in buf:
            ev, buf = buf.split(b"\n\n", 1)
            now = time.monotonic()
            data = [l[5:].strip() for l in ev.split(b"\n") if l.startswith(b"data:")]
            j = json.loads(data[0])
            events.append((j["i"], now - j["t"]))
    check_eq([i for i, _ in events], [0, 1, 2, 3, 4], "event ids")
    late = ["event %d after %.0f ms" % (i, d * 1000) for i, d in events if d > SSE_MAX_DELAY]
    check(not late, "events delayed past %d ms: %s" % (SSE_MAX_DELAY * 1000, ", ".join(late)))


def test_download_50mib_exact_length_and_sha256(env):
    up, al, c = env.tunnel()
    c.send_request("GET", "/download/%d" % BIG)
    resp = read_response_head(c.reader)
    check_eq(resp.status, 200, "status")
    if resp.headers.has("content-length"):
        check_eq(resp.headers.get("content-length"), str(BIG), "Content-Length")
    h = hashlib.sha256()
    n = 0
    for piece in _body_pieces(c.reader, resp):
        h.update(piece)
        n += len(piece)
    check_eq(n, BIG, "bytes received")
    check_eq(h.hexdigest(), content_sha256(BIG), "SHA-256 of the download")
    r = c.request("GET", "/after")
    check_eq(r.json()["target"], "/after", "next request on the same tunnel")


def _sanitized(binary):
    with open(binary, "rb") as f:
        return b"__asan_init" in f.read()


def test_slow_reader_keeps_proxy_memory_flat(env):
    up = env.upstream()
    al = env.airlock([up])
    # A small receive buffer so the kernel cannot absorb the download on airlock's behalf.
    c = open_tunnel(al, "127.0.0.1", up.port, rcvbuf=128 * 1024)
    check_eq(c.request("GET", "/warm-up").status, 200, "warm-up status")
    baseline = al.rss_kib()
    limit = baseline + 30 * 1024
    peak = [baseline]

    def sample():
        rss = al.rss_kib()
        peak[0] = max(peak[0], rss)
        check(rss <= limit, "airlock RSS %d KiB, over baseline %d KiB + 30 MiB" % (rss, baseline))

    c.send_request("GET", "/download/%d" % BIG)
    # Read nothing for 2 s: the upstream keeps sending, airlock must stop reading it.
    t_end = time.monotonic() + 2.0
    while time.monotonic() < t_end:
        sample()
        time.sleep(0.1)
    resp = read_response_head(c.reader)
    check_eq(resp.status, 200, "status")
    pieces = _body_pieces(c.reader, resp)
    h = hashlib.sha256()
    n = 0
    # Then trickle for 1.5 s, then read at full speed.
    t_end = time.monotonic() + 1.5
    while time.monotonic() < t_end:
        part = next(pieces)
        h.update(part)
        n += len(part)
        time.sleep(0.02)
        sample()
    # Under AddressSanitizer the quarantine keeps freed buffers resident, so at full speed RSS
    # measures allocation churn, not buffering: check it only on a normal build.
    full_speed_check = not _sanitized(env.binary)
    next_sample = n + 2 * MIB
    for part in pieces:
        h.update(part)
        n += len(part)
        if full_speed_check and n >= next_sample:
            sample()
            next_sample = n + 2 * MIB
    check_eq(n, BIG, "bytes received")
    check_eq(h.hexdigest(), content_sha256(BIG), "SHA-256 of the download")
