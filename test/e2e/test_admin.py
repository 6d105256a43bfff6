# SPDX-License-Identifier: MIT
"""The admin endpoint (--admin) and the health listener (--health): health and readiness,
Prometheus metrics that move with real traffic, the active policy as JSON, their bounds
(404/405/400, the 2 s timeout), probes still answered under a flood of idle sockets, the
refusal of a non-loopback --admin without --admin-public, /metrics and /policy kept off a
non-loopback address without --admin-expose-sensitive (checked in a network namespace of the
test's own), and the admin endpoint on a 0600 Unix socket."""

import json
import os
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import time

from harness import (LOOPBACK4, SANITIZER_MARKS, SOCK_TIMEOUT, Reader, Skip, check, check_eq,
                     endpoint, free_port, open_tunnel, read_response, wait_until, write_policy)

ADMIN_MAX_CONNS = 64  # src/admin.c
ADMIN_MAX_PER_SOURCE = 8
ADMIN_TIMEOUT = 2.0
FLOOD = 100  # idle sockets held open against a listener
PROBE_DEADLINE = 1.0  # a probe under a flood must be answered within this

_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"'
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:%s(?:,%s)*)?\})? (\S+)$' % (_LABEL, _LABEL))


def _start(env, upstreams=(), args=()):
    """airlock with --admin on a free loopback port: (airlock, admin port)."""
    port = free_port()
    # A policy needs one endpoint even when a test sends no proxy traffic.
    al = env.airlock(list(upstreams), endpoints=[endpoint("admin.test", 443)],
                     args=["--admin", "%s:%d" % (LOOPBACK4, port)] + list(args))
    return al, port


def _admin_conn(port, source=None, timeout=SOCK_TIMEOUT):
    """A connection to the admin port (an int) or Unix socket (a path), from source (a
    loopback address) when given."""
    if isinstance(port, str):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(port)
        return s
    s = socket.create_connection((LOOPBACK4, port), timeout=timeout,
                                 source_address=(source, 0) if source else None)
    s.settimeout(timeout)
    return s


def _admin(port, target, method="GET", raw=None, timeout=SOCK_TIMEOUT):
    """One request on a new connection; returns the Response after checking that airlock
    closes the connection behind it (one request per connection)."""
    s = _admin_conn(port, timeout=timeout)
    try:
        if raw is None:
            raw = ("%s %s HTTP/1.1\r\nHost: airlock\r\n\r\n" % (method, target)).encode()
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
        check(ADMIN_TIMEOUT - 0.5 <= took <= ADMIN_TIMEOUT + 2,
              "closed after %.1f s, want about %.0f" % (took, ADMIN_TIMEOUT))
        check_eq(extra, b"", "bytes sent on a timed-out admin connection")
    finally:
        s.close()


def _hold_flood(port):
    """FLOOD idle connections: half from 127.0.0.1 (the probes' own source), half from as many
    other loopback sources. Returns the sockets; some are closed by airlock to make room."""
    held = []
    for i in range(FLOOD):
        src = LOOPBACK4 if i % 2 == 0 else "127.0.%d.%d" % (1 + i // 250, 1 + i % 250)
        held.append(_admin_conn(port, source=src))
    return held


def _probe_quickly(port, path, want_status):
    t0 = time.monotonic()
    try:
        r = _admin(port, path, timeout=PROBE_DEADLINE)
    except (OSError, EOFError) as e:
        raise AssertionError("%s under a flood of %d idle sockets: %s after %.2f s" % (
            path, FLOOD, type(e).__name__, time.monotonic() - t0))
    took = time.monotonic() - t0
    check_eq(r.status, want_status, "%s status under a flood" % path)
    check(took <= PROBE_DEADLINE, "%s took %.2f s under a flood" % (path, took))


def _flood_then_probe(port):
    held = _hold_flood(port)
    try:
        time.sleep(0.2)  # every flood connection accepted before the probes
        for _ in range(6):
            _probe_quickly(port, "/healthz", 200)
            _probe_quickly(port, "/readyz", 200)
        # The flood goes on: new idle sockets keep arriving between probes.
        for _ in range(3):
            held += _hold_flood(port)
            _probe_quickly(port, "/healthz", 200)
    finally:
        for s in held:
            s.close()


def test_admin_flood_of_idle_sockets_never_starves_health_probes(env):
    al, port = _start(env)
    _flood_then_probe(port)


def test_health_listener_flood_of_idle_sockets_never_starves_probes(env):
    hport = free_port()
    al, port = _start(env, args=["--health", "%s:%d" % (LOOPBACK4, hport)])
    _flood_then_probe(hport)
    # Probes on the health listener while the admin listener is flooded too.
    held = _hold_flood(port)
    try:
        _probe_quickly(hport, "/readyz", 200)
    finally:
        for s in held:
            s.close()


def test_admin_per_source_cap_evicts_only_that_sources_idle_sockets(env):
    al, port = _start(env)
    other = _admin_conn(port, source="127.0.0.2")
    noisy = [_admin_conn(port, source="127.0.0.3") for _ in range(ADMIN_MAX_PER_SOURCE * 3)]
    try:
        # The noisy source evicted its own oldest sockets, never the other source's.
        closed = [s for s in noisy if Reader(s).wait_eof(0.05)[0]]
        check_eq(len(closed), len(noisy) - ADMIN_MAX_PER_SOURCE, "noisy sockets closed")
        check(not Reader(other).wait_eof(0.05)[0], "another source's socket was evicted")
        other.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        check_eq(read_response(Reader(other)).status, 200, "the other source's request")
    finally:
        other.close()
        for s in noisy:
            s.close()


BURST_SOURCES = 32  # distinct loopback addresses a burst comes from
BURST_BEFORE, BURST_AFTER = 50, 70  # connections queued before and after the probe's


def _queue_burst(port, n, first):
    """n non-blocking connects from BURST_SOURCES sources, left open and silent."""
    socks = []
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.%d" % (2 + (first + i) % BURST_SOURCES), 0))
        s.setblocking(False)
        s.connect_ex((LOOPBACK4, port))
        socks.append(s)
    return socks


def _reset_all(socks):
    for s in socks:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()


def test_admin_probe_in_the_middle_of_a_burst_from_many_sources_is_answered(env):
    """A burst from many sources lands in the listener's backlog around a probe: airlock is
    stopped while the backlog fills (the probe's request included), then continued. It used to
    accept the whole backlog in one go, the cap evicting the oldest waiting connections, the
    probe among them, before its request was read (EOF). Room now comes from the source holding
    the most connections, a candidate's waiting request is read first, and a batch of accepts
    gives the loop a turn."""
    al, port = _start(env)
    failures = []
    for round_ in range(20):
        flood, probe = [], None
        os.kill(al.pid, signal.SIGSTOP)
        try:
            flood += _queue_burst(port, BURST_BEFORE, round_)
            probe = _admin_conn(port, source=LOOPBACK4, timeout=PROBE_DEADLINE)
            probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            flood += _queue_burst(port, BURST_AFTER, round_ + BURST_BEFORE)
        finally:
            os.kill(al.pid, signal.SIGCONT)
        t0 = time.monotonic()
        try:
            status = read_response(Reader(probe)).status
            took = time.monotonic() - t0
            if status != 200 or took > PROBE_DEADLINE:
                failures.append("round %d: status %d after %.2f s" % (round_, status, took))
        except (OSError, EOFError) as e:
            failures.append("round %d: %s after %.2f s" % (round_, type(e).__name__,
                                                            time.monotonic() - t0))
        finally:
            probe.close()
            _reset_all(flood)
    check(not failures, "probes amid bursts from %d sources not answered: %r" % (
        BURST_SOURCES, failures))


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


# ----- a non-loopback address, in a network namespace of the test's own -------------------------

NON_LOOPBACK = "192.0.2.1"  # TEST-NET-1 (RFC 5737), added to the namespace's own lo only

# Runs inside the namespace: GET argv[3] from argv[1]:argv[2], print {"status", "body"}.
_NS_CLIENT = """\
import http.client, json, sys
c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=2)
try:
    c.request("GET", sys.argv[3])
    r = c.getresponse()
    print(json.dumps({"status": r.status, "body": r.read().decode("utf-8", "replace")}))
except OSError as e:
    print(json.dumps({"status": None, "body": str(e)}))
"""


class _NetnsAirlock:
    """airlock run in a new network namespace whose loopback interface also holds
    NON_LOOPBACK, so that a non-loopback bind is real and yet nothing leaves the machine."""

    def __init__(self, env, args):
        for tool in ("unshare", "nsenter", "ip"):
            if not shutil.which(tool):
                raise Skip("%s not found: cannot make a network namespace" % tool)
        if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
            raise Skip("cannot create a network namespace here (needs CAP_SYS_ADMIN)")
        d = env.path("ca-ns-%d" % free_port())
        check_eq(env.run_cli(["ca", "init", "--dir", d]).returncode, 0, "ca init")
        pol = write_policy(env.path("policy-ns-%d.json" % free_port()),
                           [endpoint("admin.test", 443)])
        self.stderr_path = env.path("ns-stderr-%d.txt" % free_port())
        setup = "ip link set lo up && ip addr add %s/32 dev lo && exec \"$0\" \"$@\"" % NON_LOOPBACK
        cmd = ["unshare", "-n", "sh", "-c", setup, env.binary, "run", "--listen",
               "%s:3128" % LOOPBACK4, "--ca-dir", d, "--policy", pol, "--workers", "1",
               "--log-format", "text"] + list(args)
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err)

    def get(self, port, path):
        """(status or None, body) of GET path on NON_LOOPBACK:port inside the namespace."""
        r = subprocess.run(["nsenter", "-t", str(self.proc.pid), "-n", sys.executable, "-c",
                            _NS_CLIENT, NON_LOOPBACK, str(port), path],
                           capture_output=True, timeout=15, stdin=subprocess.DEVNULL)
        check(r.returncode == 0, "namespace client failed: %s" % r.stderr.decode())
        out = json.loads(r.stdout.decode())
        return out["status"], out["body"]

    def wait_ready(self, port):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            check(self.proc.poll() is None, "airlock in the namespace exited %s: %s" % (
                self.proc.returncode, self.output()))
            if self.get(port, "/healthz")[0] == 200:
                return
            time.sleep(0.1)
        raise AssertionError("no /healthz on %s:%d within 10 s: %s" % (
            NON_LOOPBACK, port, self.output()))

    def output(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise AssertionError("airlock in the namespace did not stop on SIGTERM")
        out = self.output()
        for mark in SANITIZER_MARKS:
            check(mark not in out, "sanitizer report in airlock output:\n%s" % out)
        check_eq(self.proc.returncode, 0, "exit code after SIGTERM (%s)" % out[-1000:])


def test_admin_non_loopback_serves_metrics_and_policy_only_with_expose_sensitive(env):
    admin, health = 9090, 9091
    al = _NetnsAirlock(env, ["--admin", "%s:%d" % (NON_LOOPBACK, admin), "--admin-public",
                             "--health", "%s:%d" % (NON_LOOPBACK, health)])
    try:
        al.wait_ready(admin)
        check_eq(al.get(admin, "/readyz")[0], 200, "/readyz on a public --admin")
        for path in ("/metrics", "/policy"):
            status, body = al.get(admin, path)
            check_eq(status, 403, "%s on a public --admin without --admin-expose-sensitive" % path)
            check("--admin-expose-sensitive" in body, "the 403 does not name the flag: %r" % body)
        # The health listener needs no --admin-public and serves probes only.
        for path, want in (("/healthz", 200), ("/readyz", 200), ("/metrics", 404),
                           ("/policy", 404)):
            check_eq(al.get(health, path)[0], want, "%s on the --health listener" % path)
        check("/metrics and /policy need --admin-expose-sensitive" in al.output(),
              "the start-up line does not say what the admin endpoint serves: %s" % al.output())
    finally:
        al.stop()

    al = _NetnsAirlock(env, ["--admin", "%s:%d" % (NON_LOOPBACK, admin), "--admin-public",
                             "--admin-expose-sensitive"])
    try:
        al.wait_ready(admin)
        status, body = al.get(admin, "/metrics")
        check_eq(status, 200, "/metrics with --admin-expose-sensitive")
        check("airlock_connections_accepted_total" in body, "/metrics body: %r" % body[:200])
        status, body = al.get(admin, "/policy")
        check_eq(status, 200, "/policy with --admin-expose-sensitive")
        check("admin.test" in body, "/policy body: %r" % body[:200])
    finally:
        al.stop()


def test_admin_expose_sensitive_without_admin_public_is_a_usage_error(env):
    r = _run_refused(env, "%s:%d" % (LOOPBACK4, free_port()), ["--admin-expose-sensitive"])
    out = _output(r)
    check_eq(r.returncode, 1, "exit code: %s" % out)
    check("--admin-expose-sensitive" in out and "--admin-public" in out,
          "no message naming both flags: %r" % out)


# ----- the admin endpoint on a Unix socket --------------------------------------------------------

def test_admin_unix_socket_is_0600_serves_everything_and_is_removed_at_stop(env):
    path = env.path("admin.sock")
    al = env.airlock(endpoints=[endpoint("admin.test", 443)], args=["--admin", "unix:" + path])
    st = os.lstat(path)
    check(stat.S_ISSOCK(st.st_mode), "%s is not a socket" % path)
    check_eq(oct(stat.S_IMODE(st.st_mode)), oct(0o600), "admin socket mode")
    check_eq(_admin(path, "/healthz").status, 200, "/healthz on the Unix socket")
    check_eq(_admin(path, "/metrics").status, 200, "/metrics on the Unix socket")
    r = _admin(path, "/policy")
    check_eq(r.status, 200, "/policy on the Unix socket")
    with open(al.policy) as f:
        check_eq(r.json(), json.load(f), "/policy body on the Unix socket")
    _flood_then_probe(path)

    # `airlock admin get`: the client for shells without one (the image has no curl).
    r = env.run_cli(["admin", "get", "/healthz", "--admin", "unix:" + path])
    check_eq((r.returncode, r.stdout), (0, b"ok\n"), "airlock admin get /healthz")
    r = subprocess.run([env.binary, "admin", "get", "/metrics"], capture_output=True, timeout=30,
                       stdin=subprocess.DEVNULL, env=dict(os.environ, AIRLOCK_ADMIN="unix:" + path))
    check_eq(r.returncode, 0, "airlock admin get /metrics with AIRLOCK_ADMIN set")
    check(b"airlock_connections_accepted_total" in r.stdout,
          "admin get /metrics: %r" % r.stdout[:200])
    r = env.run_cli(["admin", "get", "/nope", "--admin", "unix:" + path])
    check_eq(r.returncode, 1, "airlock admin get of a 404")
    check(b"404" in r.stderr, "no status in the error: %r" % r.stderr)
    al.stop()
    check(not os.path.lexists(path), "the admin socket file is left behind after stop")
    r = env.run_cli(["admin", "get", "/healthz", "--admin", "unix:" + path])
    check_eq(r.returncode, 1, "airlock admin get with nothing listening")
    check(b"cannot connect" in r.stderr, "no message when nothing listens: %r" % r.stderr)


def test_admin_unix_socket_replaces_a_stale_socket_and_refuses_a_regular_file(env):
    path = env.path("stale.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()  # the file stays, nobody listens: what a crashed process leaves
    al = env.airlock(endpoints=[endpoint("admin.test", 443)], args=["--admin", "unix:" + path])
    check_eq(_admin(path, "/healthz").status, 200, "/healthz on a socket that replaced a stale one")
    # A second airlock must not steal the live socket.
    r = _run_refused(env, "unix:" + path)
    out = _output(r)
    check_eq(r.returncode, 1, "exit code with the socket in use: %s" % out)
    check("another process" in out, "no message about the live socket: %r" % out)
    check_eq(_admin(path, "/healthz").status, 200, "/healthz after the refused second start")
    al.stop()

    regular = env.path("not-a-socket")
    with open(regular, "w") as f:
        f.write("keep me\n")
    r = _run_refused(env, "unix:" + regular)
    out = _output(r)
    check_eq(r.returncode, 1, "exit code with a regular file at the path: %s" % out)
    check("not a socket" in out, "no message about the regular file: %r" % out)
    with open(regular) as f:
        check_eq(f.read(), "keep me\n", "the regular file")
