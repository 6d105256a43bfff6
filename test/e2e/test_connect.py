# SPDX-License-Identifier: MIT
"""The first request on a client connection: CONNECT authority parsing, the L4 policy decision,
the minted leaf certificate, and upstream failures answered with 502."""

import os
import ssl
import time

from harness import (LOOPBACK4, BlackholeListener, HttpClient, Reader, build_request, check,
                     check_eq, connect_tunnel_resp, endpoint, free_port, read_response,
                     silent_handler, tls_wrap, wait_until)


def test_connect_get_returns_upstream_response(env):
    up, al, c = env.tunnel()
    r = c.request("GET", "/hello?x=1")
    check_eq(r.status, 200, "status")
    j = r.json()
    check_eq(j["method"], "GET", "method seen upstream")
    check_eq(j["target"], "/hello?x=1", "target seen upstream")
    check_eq(up.accepts, 1, "upstream connections")


def _san(cert):
    return sorted(cert.get("subjectAltName", ()))


def test_leaf_for_ip_connect_has_ip_san_and_chains_to_airlock_ca(env):
    up, al, c = env.tunnel()
    # The handshake verified against airlock's ca.pem alone and checked the IP (open_tunnel).
    cert = c.sock.getpeercert()
    check(("IP Address", LOOPBACK4) in _san(cert), "no IP SAN 127.0.0.1 in %r" % _san(cert))
    check(not any(k == "DNS" for k, _ in _san(cert)), "IP leaf has DNS SANs %r" % _san(cert))
    check_eq(c.request("GET", "/").status, 200, "status over the verified tunnel")


def test_leaf_for_localhost_connect_has_dns_san(env):
    up, al, c = env.tunnel(host="localhost")
    cert = c.sock.getpeercert()
    check(("DNS", "localhost") in _san(cert), "no DNS SAN localhost in %r" % _san(cert))
    check_eq(c.request("GET", "/").status, 200, "status over the verified tunnel")


def test_leaf_does_not_chain_to_upstream_ca(env):
    # The client must see airlock's leaf, never the upstream's certificate.
    up = env.upstream()
    al = env.airlock([up])
    resp, sock = connect_tunnel_resp(al, LOOPBACK4, up.port)
    check_eq(resp.status, 200, "CONNECT status")
    try:
        tls_wrap(sock, LOOPBACK4, cafile=env.pki.ca.cert, airlock=al)
    except ssl.SSLCertVerificationError:
        return
    raise AssertionError("the tunnel's certificate verified against the upstream CA")


def test_client_sni_differing_from_connect_host_fails_handshake(env):
    up = env.upstream(dual_stack=True)
    al = env.airlock([up])
    resp, sock = connect_tunnel_resp(al, "localhost", up.port)
    check_eq(resp.status, 200, "CONNECT status")
    try:
        # No verification: the only reason for a failure is airlock refusing the SNI.
        s = tls_wrap(sock, "example.com", check_hostname=False, airlock=al)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:
        # DESIGN.md: the handshake is aborted with alert unrecognized_name.
        check("UNRECOGNIZED_NAME" in str(e).upper(),
              "handshake failed, but not with alert unrecognized_name: %r" % e)
        check_eq(len(up.requests), 0, "requests that reached the upstream")
        return
    s.close()
    raise AssertionError("handshake with SNI example.com for CONNECT localhost succeeded")


BAD_AUTHORITIES = [
    "2130706433:443",      # IPv4 as one decimal number
    "127.1:443",           # shortened dotted form
    "0x7f.1:443",          # hex
    "0177.0.0.1:443",      # octal
    "127.0.0.1",           # missing port
    "localhost",           # missing port
    "[::1]",               # IPv6 without port
    "::1:443",             # IPv6 without brackets
    "127.0.0.1:0",         # port 0
    "127.0.0.1:65536",     # port out of range
    "127.0.0.1:https",     # named port
    "user@127.0.0.1:443",  # userinfo
    ":443",                # empty host
    "bad_host!:443",       # garbage
    "..:443",              # empty labels
]


def test_connect_non_canonical_authorities_get_400(env):
    al = env.airlock(endpoints=[endpoint("127.0.0.1", 443), endpoint("localhost", 443)])
    wrong = []
    for auth in BAD_AUTHORITIES:
        sock = al.connect()
        sock.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (auth, auth)).encode())
        try:
            r = read_response(Reader(sock), "CONNECT")
            if r.status != 400:
                wrong.append("%s -> %d" % (auth, r.status))
        except (EOFError, OSError) as e:
            wrong.append("%s -> no response (%s)" % (auth, e))
        sock.close()
    check(not wrong, "CONNECT authorities not answered 400: " + ", ".join(wrong))


def test_origin_form_first_request_gets_400(env):
    up = env.upstream()
    al = env.airlock([up])
    sock = al.connect()
    sock.sendall(build_request("GET", "/", [("Host", "127.0.0.1:%d" % up.port)]))
    r = read_response(Reader(sock))
    check_eq(r.status, 400, "status of an origin-form first request")
    check_eq(up.accepts, 0, "upstream connections")


def _check_deny(resp, sock, want_error):
    check_eq(resp.status, 403, "status")
    check_eq(resp.headers.get("x-airlock-decision", "").lower(), "deny", "X-Airlock-Decision")
    j = resp.json()
    check_eq(j.get("error"), want_error, "JSON error")
    closed, data = resp.reader.wait_eof(5)
    check(closed, "connection still open after the 403")


def test_connect_port_not_in_policy_gets_403_json_without_upstream_connection(env):
    allowed = env.upstream()
    denied = env.upstream()
    al = env.airlock([allowed])
    resp, sock = connect_tunnel_resp(al, LOOPBACK4, denied.port)
    _check_deny(resp, sock, "policy_denied")
    time.sleep(0.3)
    check_eq(denied.accepts, 0, "connections made to the denied upstream")


def test_connect_host_not_in_policy_gets_403_json(env):
    up = env.upstream()
    al = env.airlock([up], hosts=[LOOPBACK4])
    resp, sock = connect_tunnel_resp(al, "api.test", up.port)
    _check_deny(resp, sock, "policy_denied")
    resp, sock = connect_tunnel_resp(al, "localhost", up.port)
    _check_deny(resp, sock, "policy_denied")
    check_eq(up.accepts, 0, "upstream connections")


def _expect_502(al, host, port, up=None, within=None):
    """The upstream cannot be reached or verified. The design answers the CONNECT itself with
    502; an implementation that answers 200 first must then answer the first request with 502.
    Either way the upstream must not get one HTTP byte."""
    t0 = time.monotonic()
    resp, sock = connect_tunnel_resp(al, host, port, timeout=20)
    status = resp.status
    if status == 200:
        tls = tls_wrap(sock, host, airlock=al)
        c = HttpClient(tls, "%s:%d" % (host, port))
        status = c.request("GET", "/").status
    took = time.monotonic() - t0
    check_eq(status, 502, "status for an unusable upstream")
    if within is not None:
        check(took <= within, "502 took %.1fs, want <= %.0fs" % (took, within))
    if up is not None:
        check_eq(len(up.requests), 0, "requests that reached the upstream")


def test_upstream_cert_from_untrusted_ca_gets_502(env):
    up = env.upstream(cert=env.pki.untrusted_leaf)
    al = env.airlock([up])
    _expect_502(al, LOOPBACK4, up.port, up)


def test_upstream_cert_with_wrong_name_gets_502(env):
    up = env.upstream(cert=env.pki.wrong_name_leaf)
    al = env.airlock([up])
    _expect_502(al, LOOPBACK4, up.port, up)


def test_upstream_connection_refused_gets_502(env):
    port = free_port()  # bound and closed: nothing listens there
    al = env.airlock(endpoints=[endpoint(LOOPBACK4, port)])
    _expect_502(al, LOOPBACK4, port, within=10)


def test_upstream_tls_silent_gets_502_after_handshake_timeout(env):
    # TCP connects, the TLS handshake never completes: the handshake timer ends it (DESIGN.md
    # "Timeouts": TLS handshake 10 s, each with a flag).
    up = env.upstream(silent_handler, tls=False)
    al = env.airlock([up], args=["--connect-timeout", "1", "--handshake-timeout", "1"])
    _expect_502(al, LOOPBACK4, up.port, within=5)
    check_eq(up.accepts, 1, "TCP connections accepted by the silent upstream")


def test_upstream_tcp_connect_timeout_gets_502(env):
    # A listener whose accept queue is full drops new SYNs, so airlock's connect hangs until
    # --connect-timeout (on loopback, without any other address).
    with BlackholeListener() as port:
        al = env.airlock(endpoints=[endpoint(LOOPBACK4, port)], args=["--connect-timeout", "1"])
        _expect_502(al, LOOPBACK4, port, within=5)


def _sockets_of(pid):
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            n += os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:")
        except OSError:
            pass
    return n


def test_connect_timeout_leaves_no_upstream_socket_behind(env):
    # The 502 ends the connection: the connect attempt to a blackholed address must go with it
    # rather than hold a socket for the kernel's whole SYN timeout.
    with BlackholeListener() as port:
        al = env.airlock(endpoints=[endpoint(LOOPBACK4, port)], args=["--connect-timeout", "1"])
        before = _sockets_of(al.pid)
        _expect_502(al, LOOPBACK4, port, within=5)
        # The client keeps its end open: only its own socket may remain.
        check(wait_until(lambda: _sockets_of(al.pid) <= before + 1, 1),
              "airlock holds %d sockets after the 502, %d before and the client's" % (
                  _sockets_of(al.pid), before))
