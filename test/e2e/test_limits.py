# SPDX-License-Identifier: MIT
"""File descriptors: the soft limit raised to the hard one, a --max-connections derived from
it, and clients past either limit answered 503 (logged and counted) instead of reset in
silence, with airlock serving again once clients leave. airlock runs under prlimit."""

import contextlib
import os
import re
import select
import shutil
import socket
import time
from concurrent.futures import ThreadPoolExecutor

from fakedns import FakeDns, Record
from harness import (LOOPBACK4, BlackholeListener, Reader, Skip, build_request, check, check_eq,
                     free_port, open_tunnel, read_response, read_response_head, wait_until)
from support import loopback_ep


def _prlimit(soft, hard):
    if not shutil.which("prlimit"):
        raise Skip("prlimit is not installed")
    return ["prlimit", "--nofile=%d:%d" % (soft, hard)]


def _metric(port, sample):
    s = socket.create_connection((LOOPBACK4, port), timeout=5)
    try:
        s.sendall(build_request("GET", "/metrics", [("Host", "x"), ("Connection", "close")]))
        r = read_response(Reader(s))
    finally:
        s.close()
    check_eq(r.status, 200, "/metrics status")
    m = re.search(r"^%s (\d+)$" % re.escape(sample), r.body.decode(), re.M)
    check(m, "no %s in /metrics" % sample)
    return int(m.group(1))


def _idle_clients(al, n):
    out = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect((LOOPBACK4, al.port))
        al.clients.append(s)
        out.append(s)
    return out


def _answered(socks, wait):
    """The sockets among socks that received bytes within wait seconds."""
    ready, _, _ = select.select(socks, [], [], wait)
    time.sleep(0.1)
    ready, _, _ = select.select(socks, [], [], 0)
    return ready


def _check_503(sock, what):
    r = read_response(Reader(sock))
    check_eq(r.status, 503, "%s: status" % what)
    check_eq(r.json().get("error"), "too_many_connections", "%s: JSON error" % what)


def _close(socks, al):
    for s in socks:
        s.close()
        if s in al.clients:
            al.clients.remove(s)


def _cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_limit_derived_from_descriptor_limit_answers_503_and_recovers(env):
    up = env.upstream()
    admin = free_port()
    al = env.airlock([up], args=["--admin", "%s:%d" % (LOOPBACK4, admin)],
                     wrapper=_prlimit(100, 140))
    # The writer thread may not have written the start-up lines yet.
    wait_until(lambda: "derived from the file descriptor limit" in al.log_text(), 3)
    log = al.log_text()
    check("raised from 100 to 140" in log, "soft limit not raised to the hard one:\n" + log)
    m = re.search(r"--max-connections (\d+) \(derived", log)
    check(m, "no derived --max-connections in the log:\n" + log)
    limit = int(m.group(1))
    check(0 < limit < 140 // 2, "derived limit %d for 140 descriptors" % limit)
    # The start-up probe's connection must be gone before counting starts: accepted (it may
    # still wait in the listen backlog) and closed.
    check(wait_until(lambda: _metric(admin, "airlock_connections_accepted_total") >= 1 and
                     _metric(admin, "airlock_connections_active") == 0, 3),
          "connections still active after start")
    held = _idle_clients(al, limit)
    time.sleep(0.3)
    early = _answered(held, 0)
    check(not early, "idle clients within the limit %d answered: %r" % (
        limit, [s.recv(200) for s in early]))
    extra = _idle_clients(al, 3)
    for i, s in enumerate(extra):
        _check_503(s, "client %d past the limit" % (i + 1))
    check(wait_until(lambda: al.log_text().count("--max-connections %d reached" % limit) >= 3,
                     2), "no log line per refusal")
    check_eq(_metric(admin, 'airlock_connections_refused_total{reason="limit"}'), 3,
             "refusals counted")
    _close(held + extra, al)
    time.sleep(0.5)
    c = open_tunnel(al, LOOPBACK4, up.port)
    check_eq(c.request("GET", "/").status, 200, "status once the clients left")


def test_out_of_descriptors_answers_503_logs_and_recovers(env):
    # --max-connections far above what 120 descriptors hold: accept itself runs out. libuv
    # alone would accept and close such clients in silence.
    up = env.upstream()
    admin = free_port()
    al = env.airlock([up], args=["--max-connections", "1000",
                                 "--admin", "%s:%d" % (LOOPBACK4, admin)],
                     wrapper=_prlimit(120, 120))
    socks = _idle_clients(al, 130)
    answered = _answered(socks, 1.0)
    check(len(answered) >= 10, "only %d of 130 clients answered with 120 descriptors" %
          len(answered))
    for s in answered:
        _check_503(s, "client past the descriptors")
    check(wait_until(lambda: "out of file descriptors" in al.log_text(), 2),
          "no log line for the refusals")
    # Still out of descriptors, with a client waiting: the listener must not spin.
    waiting = _idle_clients(al, 1)
    cpu0 = _cpu_seconds(al.pid)
    time.sleep(1.0)
    check(_cpu_seconds(al.pid) - cpu0 < 0.5, "airlock busy while out of descriptors")
    _close(socks + waiting, al)
    time.sleep(0.5)
    check(_metric(admin, 'airlock_connections_refused_total{reason="fds"}') >= len(answered),
          "refusals not counted")
    c = open_tunnel(al, LOOPBACK4, up.port)
    check_eq(c.request("GET", "/").status, 200, "status once the clients left")
    check("more than the file descriptor limit" in al.log_text(), "no warning at start")


def _open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def test_worker_that_cannot_start_leaves_the_others_serving(env):
    # Workers start one after another, each making its own loop; with the descriptor limit
    # just above what the first worker needs, the second cannot make its loop. airlock used to
    # uv_loop_close that half-made loop and crash; now it gives the worker up, answers with the
    # one that started, and stops cleanly (harness: exit 0, no sanitizer report).
    up = env.upstream()
    one = env.airlock([up])
    f1 = _open_fds(one.pid)
    one.stop()
    three = env.airlock([up], args=["--workers", "3"])
    f3 = _open_fds(three.pid)
    three.stop()
    per_worker = (f3 - f1) // 2  # its listening socket and its loop's descriptors
    before_workers = f3 - 3 * (per_worker - 1)  # every listening socket is opened first
    started = False
    for limit in range(before_workers + per_worker, before_workers + 2 * per_worker):
        try:
            al = env.airlock([up], args=["--workers", "3"], wrapper=_prlimit(limit, limit))
        except AssertionError:
            al = env.airlocks[-1]
            check(al.returncode is not None and al.returncode >= 0,
                  "airlock died of signal %s with %d descriptors" % (
                      -al.returncode if al.returncode else "?", limit))
            continue  # too few even for the first worker: exit 2, try one more descriptor
        m = re.search(r"worker ([12]): ", al.log_text())
        if not m:
            al.stop()
            continue
        started = True
        # So few descriptors leave little room for a tunnel, but a client still gets an answer.
        s = _idle_clients(al, 1)[0]
        s.sendall(build_request("CONNECT", "%s:%d" % (LOOPBACK4, up.port),
                                [("Host", "%s:%d" % (LOOPBACK4, up.port))]))
        status = b""  # the status line only: a 200 to CONNECT has no body to read to its end
        while len(status) < 12:
            chunk = s.recv(12 - len(status))
            if not chunk:
                break
            status += chunk
        # 200, or 502/503 when the descriptors run out on the way: an answer either way.
        check(status.startswith(b"HTTP/1.1 ") and status[9:10] in b"25",
              "CONNECT answered %r with %s worker(s)" % (status, m.group(1)))
        al.stop()
        check_eq(al.returncode, 0, "exit code after SIGTERM")
        break
    check(started, "no descriptor limit between %d and %d stopped a later worker" % (
        before_workers + per_worker, before_workers + 2 * per_worker))


def test_racing_connects_to_blackholed_addresses_stay_within_the_derived_limit(env):
    # A name with 8 addresses that swallow SYNs: each CONNECT races them, a new attempt every
    # 250 ms. The derived limit counts 3 descriptors a connection, but every race used to keep
    # all 8 attempts open: well under the limit, airlock ran out of descriptors and /healthz
    # and other clients got nothing. A race now holds at most 2.
    nofile = 200
    with contextlib.ExitStack() as stack:
        port = stack.enter_context(BlackholeListener("127.0.0.2"))
        others = [BlackholeListener("127.0.0.%d" % i, port) for i in range(3, 10)]
        for b in others:
            stack.push(b.__exit__)
        with ThreadPoolExecutor(len(others)) as pool:  # each takes 0.7 s to check
            list(pool.map(lambda b: b.__enter__(), others))
        dns = FakeDns({"bh.airlock.test": Record(a=["127.0.0.%d" % i for i in range(2, 10)])},
                      env.tmp).start()
        stack.callback(dns.stop)
        up = env.upstream()
        admin = free_port()
        al = env.airlock(endpoints=[loopback_ep("bh.airlock.test", port, access="full"),
                                    loopback_ep(LOOPBACK4, up.port, access="full")],
                         hosts=(), args=["--connect-timeout", "10",
                                         "--admin", "%s:%d" % (LOOPBACK4, admin)],
                         wrapper=_prlimit(nofile, nofile) + dns.wrapper())
        derived = re.compile(r"--max-connections (\d+) \(derived")
        check(wait_until(lambda: derived.search(al.log_text()), 3),
              "no derived --max-connections in the log")
        limit = int(derived.search(al.log_text()).group(1))
        racing = []
        for _ in range(limit - 2):
            s = al.connect(timeout=15)
            s.sendall(build_request("CONNECT", "bh.airlock.test:%d" % port,
                                    [("Host", "bh.airlock.test:%d" % port)]))
            racing.append(s)
        time.sleep(8 * 0.25 + 0.6)  # every race has tried all 8 addresses
        held = _open_fds(al.pid)
        check(held < nofile - 10, "%d racing CONNECTs (limit %d) hold %d of %d descriptors" % (
            len(racing), limit, held, nofile))
        c = open_tunnel(al, LOOPBACK4, up.port)
        check_eq(c.request("GET", "/").status, 200, "another client's request meanwhile")
        a = socket.create_connection((LOOPBACK4, admin), timeout=2)
        try:
            a.sendall(build_request("GET", "/healthz", [("Host", "x")]))
            check_eq(read_response(Reader(a)).status, 200, "/healthz meanwhile")
        finally:
            a.close()
        _close(racing, al)
