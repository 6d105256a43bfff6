# SPDX-License-Identifier: MIT
"""The admin endpoint (--admin): health and readiness, Prometheus metrics that move with real
traffic, the active policy as JSON, its bounds (404/405/400, the connection cap, the 5 s
timeout), and the refusal of a non-loopback address without --admin-public."""

import json
import os
import re
import signal
import socket
import time

from harness import (LOOPBACK4, SANITIZER_MARKS, SOCK_TIMEOUT, Reader, check, check_eq, endpoint,
                     free_port, open_tunnel, read_response, wait_until, write_policy)

ADMIN_MAX_CONNS = 64  # src/admin.c

_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"'
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:%s(?:,%s)*)?\})? (\S+)$' % (_LABEL, _LABEL))


def _start(env, upstreams=(), args=()):
    """airlock with --admin on a free loopback port: (airlock, admin port)."""
    port = free_port()
    # A policy needs one endpoint even when a test sends no proxy traffic.
    al = env.airlock(list(upstreams), endpoints=[endpoint("admin.test", 443)],
                     args=["--admin", "%s:%d" % (LOOPBACK4, port)] + list(args))
    return al, port


def _admin_conn(port):
    s = socket.create_connection((LOOPBACK4, port), timeout=SOCK_TIMEOUT)
    s.settimeout(SOCK_TIMEOUT)
    return s


def _admin(port, target, method="GET", raw=None):
    """One request on a new connection; returns the Response after checking that airlock
    closes the connection behind it (one request per connection)."""
    s = _admin_conn(port)
    try:
        if raw is None:
            raw = ("%s %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (method, target, LOOPBACK4,
                                                               port)).encode()
        s.sendall(raw)
        reader = Reader(s)
        r = read_response(reader, method)
        check(r.headers.has_token("connection", "close"), "no Connection: close on %s" % target)
        closed, extra = reader.wait_eof(SOCK_TIMEOUT)
        check(closed and not extra, "admin connection not closed after one response")
        return r
    finally:
        s.close()


def _scrape(port):
    """GET /metrics, parsed: {"name{labels}": value}, and the family of each TYPE line. Fails
    on any line that is not a comment or `name{labels} value`."""
    r = _admin(port, "/metrics")
    check_eq(r.status, 200, "/metrics status")
    check_eq(r.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8",
             "/metrics Content-Type")
    text = r.body.decode("utf-8")
    check(text.endswith("\n"), "exposition does not end with a newline")
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            check(kind in ("counter", "gauge", "histogram"), "bad TYPE line %r" % line)
            types[name] = kind
            continue
        if line.startswith("# HELP "):
            continue
        m = _SAMPLE.match(line)
        check(m is not None, "not a Prometheus sample line: %r" % line)
        name = m.group(1)
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        check(name in types or types.get(base) == "histogram",
              "sample %r before its TYPE line" % line)
        key = name + (m.group(2) or "")
        check(key not in samples, "duplicate sample %r" % key)
        samples[key] = float(m.group(3))
    return samples, types


def _check_histogram(samples, name):
    buckets = [(k, v) for k, v in samples.items() if k.startswith(name + "_bucket{")]
    check(buckets, "no buckets for %s" % name)
    les = [float(re.search(r'le="([^"]+)"', k).group(1)) for k, _ in buckets]
    check(les == sorted(les) and les[-1] == float("inf"), "%s bounds out of order" % name)
    counts = [v for _, v in buckets]
    check(counts == sorted(counts), "%s buckets not cumulative: %r" % (name, counts))
    check_eq(counts[-1], samples[name + "_count"], "%s +Inf bucket vs _count" % name)


def _probe_settled(port):
    s, _ = _scrape(port)
    return s["airlock_connections_accepted_total"] >= 1 and s["airlock_connections_active"] == 0


def test_admin_healthz_and_readyz_answer_200(env):
    al, port = _start(env)
    r = _admin(port, "/healthz")
    check_eq((r.status, r.body), (200, b"ok\n"), "/healthz")
    r = _admin(port, "/readyz")
    check_eq((r.status, r.body), (200, b"ready\n"), "/readyz")
    # The query is not part of the path.
    check_eq(_admin(port, "/healthz?verbose=1").status, 200, "/healthz with a query")


def test_admin_metrics_parse_and_move_after_connect_and_get(env):
    up = env.upstream()
    al, port = _start(env, [up])
    accepted = "airlock_connections_accepted_total"
    # The harness's readiness probe is a proxy connection too: let it come and go first.
    check(wait_until(lambda: _probe_settled(port), 5),
          "the readiness probe connection was not counted and closed")
    before, types = _scrape(port)
    for name in ("airlock_connections_accepted_total", "airlock_connections_active",
                 "airlock_exchanges_total", "airlock_requests_total", "airlock_connects_total",
                 "airlock_upgrades_active", "airlock_bytes_received_total",
                 "airlock_bytes_sent_total", "airlock_tls_handshakes_total",
                 "airlock_tls_handshake_failures_total",
                 "airlock_upstream_connect_failures_total", "airlock_ssrf_denied_total",
                 "airlock_findings_total", "airlock_policy_reloads_total",
                 "airlock_log_lines_dropped_total", "airlock_upstream_connect_seconds",
                 "airlock_time_to_first_byte_seconds"):
        check(name in types, "no TYPE line for %s" % name)
    for h in ("airlock_upstream_connect_seconds", "airlock_time_to_first_byte_seconds"):
        _check_histogram(before, h)

    c = open_tunnel(al, LOOPBACK4, up.port)
    r = c.request("GET", "/counted")
    check_eq(r.status, 200, "GET through the tunnel")

    allow = 'airlock_requests_total{decision="allow"}'

    def moved():
        s, _ = _scrape(port)
        return s if s[allow] >= before[allow] + 1 and s[accepted] >= before[accepted] + 1 else None
    after = wait_until(moved, 5)
    check(after, "counters did not move: %r" % {k: _scrape(port)[0][k] for k in (allow, accepted)})
    check_eq(after[accepted] - before[accepted], 1, "connections accepted")
    check_eq(after[allow] - before[allow], 1, "requests allowed")
    check_eq(after['airlock_connects_total{decision="allow"}'] -
             before['airlock_connects_total{decision="allow"}'], 1, "CONNECTs allowed")
    check(after["airlock_connections_active"] >= 1, "no active connection with a tunnel open")
    check(after["airlock_bytes_received_total"] > before["airlock_bytes_received_total"],
          "bytes received did not move")
    check(after['airlock_tls_handshakes_total{side="client"}'] >
          before['airlock_tls_handshakes_total{side="client"}'], "client handshakes did not move")
    check_eq(after["airlock_upstream_connect_seconds_count"] -
             before["airlock_upstream_connect_seconds_count"], 1, "upstream connects observed")
    check(after["airlock_time_to_first_byte_seconds_count"] >
          before["airlock_time_to_first_byte_seconds_count"], "time to first byte not observed")
    for h in ("airlock_upstream_connect_seconds", "airlock_time_to_first_byte_seconds"):
        _check_histogram(after, h)


def test_admin_policy_returns_the_policy_file_json(env):
    al, port = _start(env)
    r = _admin(port, "/policy")
    check_eq(r.status, 200, "/policy status")
    check_eq(r.headers.get("content-type"), "application/json", "/policy Content-Type")
    with open(al.policy) as f:
        want = json.load(f)
    check_eq(r.json(), want, "/policy body")


def test_admin_policy_follows_a_reload_and_reloads_are_counted(env):
    al, port = _start(env)
    before, _ = _scrape(port)
    doc = json.load(open(al.policy))
    doc["network_policies"]["reloaded"] = {"endpoints": [endpoint("reloaded.test", 443)]}
    # Written as a new file renamed over the old one, as editors do; the file watch reloads.
    tmp = al.policy + ".new"
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.rename(tmp, al.policy)
    got = wait_until(lambda: _admin(port, "/policy").json() == doc, 5)
    check(got, "/policy does not show the reloaded policy")
    ok = 'airlock_policy_reloads_total{result="ok"}'
    failed = 'airlock_policy_reloads_total{result="failed"}'
    check(_scrape(port)[0][ok] >= before[ok] + 1, "successful reload not counted")

    with open(tmp, "w") as f:
        f.write('{"version": 1, "network_policies": {"bad": {"endpoints": [{"host": "*"}]}}}')
    os.rename(tmp, al.policy)
    al.proc.send_signal(signal.SIGHUP)
    check(wait_until(lambda: _scrape(port)[0][failed] >= before[failed] + 1, 5),
          "failed reload not counted")
    check_eq(_admin(port, "/policy").json(), doc, "/policy after a failed reload")


def test_admin_unknown_path_404_and_other_methods_405(env):
    al, port = _start(env)
    check_eq(_admin(port, "/nope").status, 404, "/nope")
    check_eq(_admin(port, "/").status, 404, "/")
    check_eq(_admin(port, "/metrics/extra").status, 404, "/metrics/extra")
    r = _admin(port, "/metrics", method="POST",
               raw=b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    check_eq(r.status, 405, "POST /metrics")
    check_eq(r.headers.get("allow"), "GET", "Allow on 405")
    check_eq(_admin(port, "/policy", method="DELETE").status, 405, "DELETE /policy")
    check_eq(_admin(port, "/healthz", method="HEAD").status, 405, "HEAD /healthz")


def test_admin_malformed_request_gets_400(env):
    al, port = _start(env)
    r = _admin(port, None, raw=b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n")
    check_eq(r.status, 400, "field without a colon")
    r = _admin(port, None, raw=b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    check_eq(r.status, 400, "Content-Length with Transfer-Encoding")
    # Still serving.
    check_eq(_admin(port, "/healthz").status, 200, "/healthz after bad requests")


def test_admin_readyz_503_while_draining(env):
    al, port = _start(env, args=["--drain-timeout", "10"])
    # A half-sent request head keeps the drain going (busy connections are not cut at once).
    busy = al.connect()
    busy.sendall(b"CONNECT 127.0.0.1:")
    check(wait_until(lambda: _scrape(port)[0]["airlock_connections_active"] >= 1, 5),
          "proxy connection not counted")
    time.sleep(0.2)
    al.proc.send_signal(signal.SIGTERM)
    r = wait_until(lambda: (lambda x: x if x.status == 503 else None)(_admin(port, "/readyz")), 5)
    check(r, "/readyz did not turn 503 after SIGTERM")
    check_eq(r.body, b"draining\n", "/readyz body while draining")
    check_eq(_admin(port, "/healthz").status, 200, "/healthz while draining")
    check(al.alive(), "airlock exited with a busy connection left")
    busy.close()
    try:
        rc = al.proc.wait(10)
    except Exception:
        rc = None
    check_eq(rc, 0, "exit code after the drain")


def test_admin_idle_connection_closed_after_timeout(env):
    al, port = _start(env)
    s = _admin_conn(port)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\n")  # never finished
        t0 = time.monotonic()
        closed, extra = Reader(s).wait_eof(9)
        took = time.monotonic() - t0
        check(closed, "admin connection still open after 9 s")
        check(4.0 <= took <= 8.0, "closed after %.1f s, want about 5" % took)
        check_eq(extra, b"", "bytes sent on a timed-out admin connection")
    finally:
        s.close()


def test_admin_connection_cap_refuses_extra_connections(env):
    al, port = _start(env)
    held = []
    try:
        for _ in range(ADMIN_MAX_CONNS):
            held.append(_admin_conn(port))
        # Accepts are in order: once the cap is full, the next one is closed unanswered.
        extra = _admin_conn(port)
        try:
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            closed, got = Reader(extra).wait_eof(3)
            check(closed and got == b"", "connection over the cap was served: %r" % got[:80])
        except (ConnectionResetError, BrokenPipeError):
            pass
        finally:
            extra.close()
    finally:
        for s in held:
            s.close()
    check(wait_until(lambda: _try_health(port), 5), "no /healthz after the held connections closed")


def test_admin_open_connections_closed_at_stop(env):
    al, port = _start(env)
    held = [_admin_conn(port) for _ in range(3)]
    held[0].sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # a head in progress
    check_eq(_admin(port, "/healthz").status, 200, "/healthz beside held connections")
    try:
        # stop() requires exit 0 and no sanitizer report (LeakSanitizer runs at exit).
        al.stop()
        for s in held:
            closed, _ = Reader(s).wait_eof(5)
            check(closed, "admin connection left open after airlock stopped")
    finally:
        for s in held:
            s.close()


def _try_health(port):
    try:
        return _admin(port, "/healthz").status == 200
    except (OSError, AssertionError, EOFError):
        return False


def _run_refused(env, admin_addr, extra=()):
    d = env.path("ca-%d" % free_port())
    r = env.run_cli(["ca", "init", "--dir", d])
    check_eq(r.returncode, 0, "ca init")
    pol = write_policy(env.path("policy-refused.json"), [endpoint(LOOPBACK4, 9)])
    return env.run_cli(["run", "--listen", "%s:%d" % (LOOPBACK4, free_port()), "--ca-dir", d,
                        "--policy", pol, "--admin", admin_addr, "--workers", "1",
                        "--log-format", "text"] + list(extra), timeout=15)


def _output(r):
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    for mark in SANITIZER_MARKS:
        check(mark not in out, "sanitizer report in airlock output:\n%s" % out)
    return out


def test_admin_non_loopback_address_refused_without_admin_public(env):
    for addr in ("0.0.0.0:%d" % free_port(), "[::]:%d" % free_port()):
        r = _run_refused(env, addr)
        out = _output(r)
        check_eq(r.returncode, 1, "exit code of run --admin %s: %s" % (addr, out))
        check("--admin-public" in out and "loopback" in out,
              "no message about --admin-public for %s: %r" % (addr, out))


def test_admin_bad_address_is_a_config_error(env):
    r = _run_refused(env, "not-an-address")
    out = _output(r)
    check_eq(r.returncode, 1, "exit code of run --admin not-an-address: %s" % out)
    check("--admin" in out, "no message naming --admin: %r" % out)


def test_admin_port_in_use_is_a_config_error(env):
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        taken.bind((LOOPBACK4, 0))
        taken.listen(1)
        addr = "%s:%d" % (LOOPBACK4, taken.getsockname()[1])
        r = _run_refused(env, addr)
        out = _output(r)
        check_eq(r.returncode, 1, "exit code of run --admin %s (in use): %s" % (addr, out))
        check("cannot listen" in out and addr in out, "no message about the busy port: %r" % out)
    finally:
        taken.close()
