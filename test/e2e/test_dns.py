# SPDX-License-Identifier: MIT
"""Name resolution: airlock's own lookup threads, the bounded lookup queue (503), the answer
cache (vetted again on every use), and racing the addresses of a name (RFC 8305).

airlock runs in a mount namespace whose resolver is fakedns.FakeDns on loopback (see there);
the tests are skipped where that cannot be set up."""

import contextlib
import time

from fakedns import FakeDns, Record
from harness import (LOOPBACK4, LOOPBACK6, BlackholeListener, Reader, build_request, check,
                     check_eq, endpoint, open_tunnel, read_response_head, wait_until)
from support import check_deny, reload

SLOW = 3.0  # seconds a slow name's answers are held back


@contextlib.contextmanager
def _dns(env, records):
    dns = FakeDns(records, env.tmp).start()
    try:
        yield dns
    finally:
        dns.stop()


def _leaf(env):
    return env.pki.make_leaf("airlock.test", ["*.airlock.test"], [])


def _start(env, dns, up, args=(), endpoints=None):
    eps = endpoints if endpoints is not None else [endpoint("*.airlock.test", up.port)]
    return env.airlock(endpoints=eps, args=list(args), wrapper=dns.wrapper())


def _send_connect(al, host, port):
    """A CONNECT whose answer is read later (see _answer)."""
    sock = al.connect(timeout=15)
    auth = "%s:%d" % (host, port)
    sock.sendall(build_request("CONNECT", auth, [("Host", auth)]))
    return sock


def _answer(sock):
    return read_response_head(Reader(sock))


def test_slow_names_do_not_stall_lookups_of_other_names(env):
    # Four names whose DNS answers take 3 s used to hold all four threads of libuv's shared
    # pool: every other lookup waited behind them.
    recs = {"slow%d.airlock.test" % i: Record(a=[LOOPBACK4], delay=SLOW) for i in range(4)}
    recs["fast.airlock.test"] = Record(a=[LOOPBACK4])
    with _dns(env, recs) as dns:
        up = env.upstream(cert=_leaf(env))
        al = _start(env, dns, up)
        slow = [_send_connect(al, "slow%d.airlock.test" % i, up.port) for i in range(4)]
        wait_until(lambda: all(dns.count("slow%d.airlock.test" % i) for i in range(4)), 2)
        t0 = time.monotonic()
        c = open_tunnel(al, "fast.airlock.test", up.port, timeout=10)
        took = time.monotonic() - t0
        check(took < 1.5, "a fast name took %.1fs behind four slow ones" % took)
        check_eq(c.request("GET", "/").status, 200, "status through the tunnel")
        for s in slow:
            check_eq(_answer(s).status, 200, "CONNECT to a slow name, once it resolved")


def test_full_resolver_queue_answers_503_and_shares_lookups_of_one_name(env):
    recs = {"slow%d.airlock.test" % i: Record(a=[LOOPBACK4], delay=SLOW) for i in range(3)}
    with _dns(env, recs) as dns:
        up = env.upstream(cert=_leaf(env))
        al = _start(env, dns, up, ["--resolver-threads", "1", "--resolver-queue", "1"])
        running = _send_connect(al, "slow0.airlock.test", up.port)
        joined = _send_connect(al, "slow0.airlock.test", up.port)  # shares the lookup
        queued = _send_connect(al, "slow1.airlock.test", up.port)
        wait_until(lambda: dns.count("slow0.airlock.test"), 2)
        time.sleep(0.2)
        t0 = time.monotonic()
        sock = _send_connect(al, "slow2.airlock.test", up.port)
        reader = Reader(sock)
        resp = read_response_head(reader)
        took = time.monotonic() - t0
        check_eq(resp.status, 503, "status past the resolver queue")
        check(took < 1.0, "503 took %.1fs" % took)
        resp.body = reader.read_exact(int(resp.headers.get("content-length")))
        check_eq(resp.json().get("error"), "resolver_busy", "JSON error")
        check_eq(dns.count("slow2.airlock.test"), 0, "queries for the refused name")
        for s in (running, joined, queued):
            check_eq(_answer(s).status, 200, "CONNECT that waited for the resolver")
        check_eq(dns.count("slow0.airlock.test"), 1, "A queries for a name asked twice at once")
        lines = wait_until(lambda: "resolver queue full" in al.log_text(), 2)
        check(lines, "no log line for the refusal")


def test_cached_answer_serves_while_every_lookup_thread_is_busy(env):
    recs = {"fast.airlock.test": Record(a=[LOOPBACK4]),
            "slow0.airlock.test": Record(a=[LOOPBACK4], delay=SLOW)}
    with _dns(env, recs) as dns:
        up = env.upstream(cert=_leaf(env))
        al = _start(env, dns, up, ["--resolver-threads", "1", "--resolver-queue", "0"])
        open_tunnel(al, "fast.airlock.test", up.port)
        busy = _send_connect(al, "slow0.airlock.test", up.port)
        wait_until(lambda: dns.count("slow0.airlock.test"), 2)
        t0 = time.monotonic()
        c = open_tunnel(al, "fast.airlock.test", up.port)
        took = time.monotonic() - t0
        check(took < 1.0, "a cached name took %.1fs while the lookup thread was busy" % took)
        check_eq(c.request("GET", "/").status, 200, "status through the tunnel")
        check_eq(dns.count("fast.airlock.test"), 1, "A queries for a cached name")
        check_eq(_answer(busy).status, 200, "CONNECT to the slow name")


def test_cached_answer_is_vetted_again_against_the_current_policy(env):
    # The cache keeps raw answers: a policy reload that stops allowing loopback refuses the
    # cached 127.0.0.1 exactly as it would a fresh one.
    with _dns(env, {"fast.airlock.test": Record(a=[LOOPBACK4])}) as dns:
        up = env.upstream(cert=_leaf(env))
        al = _start(env, dns, up)
        open_tunnel(al, "fast.airlock.test", up.port)
        doc = {"version": 1, "network_policies": {"e2e": {"endpoints": [
            {"host": "*.airlock.test", "port": up.port, "access": "full"}]}}}
        al.policy_path = al.policy
        reload(al, policy=doc)
        sock = _send_connect(al, "fast.airlock.test", up.port)
        reader = Reader(sock)
        resp = read_response_head(reader)
        resp.body = reader.read_exact(int(resp.headers.get("content-length")))
        check_deny(resp, "ssrf_denied")
        check_eq(dns.count("fast.airlock.test"), 1, "A queries (the second answer was cached)")


def _upstream_with_blackholed_v6_twin(env):
    """An upstream on 127.0.0.1:P and a blackholed listener on [::1]:P (entered). The port is
    the blackhole's, free on ::1; its IPv4 twin may be taken by another socket, so a few are
    tried (a port chosen on 127.0.0.1 first could be taken on ::1 the same way)."""
    for _ in range(10):
        hole = BlackholeListener(LOOPBACK6)
        port = hole.__enter__()
        try:
            return env.upstream(cert=_leaf(env), port=port), hole
        except OSError:
            hole.__exit__()
    raise AssertionError("no port free on both 127.0.0.1 and ::1 in 10 tries")


def test_blackholed_first_address_costs_a_quarter_second_not_the_connect_timeout(env):
    # dual.airlock.test is ::1 (first, by RFC 6724) and 127.0.0.1; ::1 swallows SYNs. Tried
    # one after the other, the ::1 attempt used the whole connect timeout.
    with _dns(env, {"dual.airlock.test": Record(a=[LOOPBACK4], aaaa=[LOOPBACK6])}) as dns:
        up, hole = _upstream_with_blackholed_v6_twin(env)
        try:
            al = _start(env, dns, up, ["--connect-timeout", "5"])
            t0 = time.monotonic()
            c = open_tunnel(al, "dual.airlock.test", up.port, timeout=10)
            took = time.monotonic() - t0
            check(took < 1.5, "CONNECT took %.1fs with a blackholed ::1 first" % took)
            check_eq(c.request("GET", "/").status, 200, "status through the tunnel")
        finally:
            hole.__exit__()
