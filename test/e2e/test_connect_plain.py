# SPDX-License-Identifier: MIT
"""CONNECT followed by plain HTTP (issue: undici's EnvHttpProxyAgent sends CONNECT for an
http:// URL and speaks plain HTTP inside the tunnel). airlock answers 200 after the L4 decision
and the upstream's TCP connect, then tells TLS from plain HTTP by the client's first bytes: plain
requests are judged like any request in a tunnel, and never carry a credential; bytes that are
neither close the tunnel with a log line."""

import json
import socket
import ssl
import time
import struct

from harness import (LOOPBACK4, HttpClient, Reader, build_request, build_response, check,
                     client_ctx,
                     check_eq, connect_tunnel_resp, read_response, tunnel_answer)
from support import (check_deny, loopback_ep, policy_doc, providers_doc, recording_handler,
                     start_airlock, wait_log)

PLACEHOLDER = "AIRLOCK_PLACEHOLDER_PLAIN_0123456789"


def _plain_tunnel(al, port):
    resp, sock = connect_tunnel_resp(al, LOOPBACK4, port)
    check_eq(resp.status, 200, "CONNECT to a rest endpoint whose upstream speaks plain HTTP")
    return HttpClient(sock, "%s:%d" % (LOOPBACK4, port))


def _read_only(up):
    return policy_doc({"plain": [loopback_ep(LOOPBACK4, up.port, access="read-only")]})


def test_connect_then_plain_http_is_relayed_and_judged(env):
    up = env.upstream(recording_handler, tls=False)
    al = start_airlock(env, _read_only(up))
    c = _plain_tunnel(al, up.port)
    r = c.request("GET", "/a/../b?x=1")
    check_eq(r.status, 200, "an allowed GET inside the tunnel")
    r = c.request("GET", "/again")
    check_eq(r.status, 200, "a second request on the same tunnel (keep-alive)")
    check_eq([(q.method, q.target) for q in up.requests], [("GET", "/b?x=1"), ("GET", "/again")],
             "what reached the plain upstream: the canonical path")
    r = c.request("POST", "/write", body=b"x")
    j = check_deny(r, "policy_denied")
    check_eq(j.get("path"), "/write", "the deny body names the path")
    check_eq(len(up.requests), 2, "the refused POST did not reach the upstream")


def test_plain_http_in_a_tunnel_must_name_the_tunnel(env):
    up = env.upstream(recording_handler, tls=False)
    al = start_airlock(env, _read_only(up))
    c = _plain_tunnel(al, up.port)
    c.host = "elsewhere.example:%d" % up.port
    check_deny(c.request("GET", "/"), "request_authority_mismatch", status=421)
    check_eq(len(up.requests), 0, "nothing reached the upstream")


def test_plain_http_in_a_tunnel_never_carries_a_credential(env):
    up = env.upstream(recording_handler, tls=False)
    prov = providers_doc({"plain": {"placeholder": PLACEHOLDER,
                                    "secret": {"env": "AIRLOCK_E2E_PLAIN_SECRET"},
                                    "endpoints": [{"host": LOOPBACK4, "port": up.port}]}})
    al = start_airlock(env, _read_only(up), providers=prov,
                       extra_env={"AIRLOCK_E2E_PLAIN_SECRET": "plain-secret-0123456789"})
    c = _plain_tunnel(al, up.port)
    r = c.request("GET", "/", headers=[("Authorization", "Bearer " + PLACEHOLDER)])
    check_deny(r, "credential_endpoint_mismatch")
    check_eq(len(up.requests), 0, "nothing reached the upstream")


def test_neither_tls_nor_http_in_a_tunnel_is_closed_and_logged(env):
    up = env.upstream(recording_handler, tls=False)
    al = start_airlock(env, _read_only(up))
    resp, sock = connect_tunnel_resp(al, LOOPBACK4, up.port)
    check_eq(resp.status, 200, "CONNECT")
    sock.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
    check(Reader(sock).wait_eof(5), "the tunnel was not closed")
    sock.close()
    check(wait_log(al, lambda l: "neither TLS nor HTTP" in json.dumps(l)),
          "no log line says the client spoke neither TLS nor HTTP")
    check_eq(len(up.requests), 0, "nothing reached the upstream")


def test_malformed_plain_http_in_a_tunnel_gets_400(env):
    up = env.upstream(recording_handler, tls=False)
    al = start_airlock(env, _read_only(up))
    resp, sock = connect_tunnel_resp(al, LOOPBACK4, up.port)
    check_eq(resp.status, 200, "CONNECT")
    sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    r = read_response(Reader(sock), "GET")
    check_eq(r.status, 400, "two Host fields")
    sock.close()
    check_eq(len(up.requests), 0, "nothing reached the upstream")


def test_tls_client_whose_upstream_speaks_plain_http_gets_502_inside_tls(env):
    # The upstream is plain: airlock's TLS hello to it fails. The client, already told 200,
    # completes its handshake with airlock and reads a 502 it can act on.
    up = env.upstream(recording_handler, tls=False)
    al = start_airlock(env, _read_only(up), args=["--connect-timeout", "1"])
    status, body, in_tls = tunnel_answer(al, LOOPBACK4, up.port)
    check_eq(status, 502, "status")
    check(in_tls, "the 502 came inside the client's TLS")
    check_eq((body or {}).get("error"), "upstream_tls_failed", "error")
    check(wait_log(al, lambda l: l.get("class_uid") == 2004 and "TLS" in
                   l.get("activity_name", "")),
          "no finding logged for the upstream's TLS failure")


def _stored_secret_handler(conn):
    """A provider's host that hands back the secret it stored from an earlier request (over
    TLS, on another connection), whatever it is asked."""
    while True:
        req = conn.read_request()
        if req is None:
            return
        body = ('{"stored": "%s"}' % STORED_SECRET).encode()
        conn.sendall(build_response(200, "OK", [("X-Stored", STORED_SECRET),
                                                ("Content-Length", str(len(body)))], body))


STORED_SECRET = "plain-stored-secret-0123456789"


def test_plain_http_to_a_providers_host_is_redacted(env):
    # No secret goes on a plain hop, but the provider's host may still answer there with one it
    # stored: its responses are redacted as inside a TLS tunnel (docs/providers.md).
    up = env.upstream(_stored_secret_handler, tls=False)
    prov = providers_doc({"plain": {"placeholder": PLACEHOLDER,
                                    "secret": {"env": "AIRLOCK_E2E_PLAIN_SECRET"},
                                    "endpoints": [{"host": LOOPBACK4, "port": up.port}]}})
    al = start_airlock(env, _read_only(up), providers=prov,
                       extra_env={"AIRLOCK_E2E_PLAIN_SECRET": STORED_SECRET})
    r = _plain_tunnel(al, up.port).request("GET", "/me", headers=[("Accept-Encoding", "gzip")])
    check_eq(r.status, 200, "status")
    check_eq(r.headers.get("x-stored"), PLACEHOLDER, "X-Stored as the client sees it")
    check_eq(r.json(), {"stored": PLACEHOLDER}, "body as the client sees it")
    check_eq(up.requests[0].headers.get("accept-encoding"), "identity",
             "Accept-Encoding upstream (an encoded answer could not be redacted)")


def _reset(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _reset_after_hello(conn):
    conn.sock.recv(5)  # the start of airlock's ClientHello
    _reset(conn.sock)


def _reset_after_request(conn):
    conn.read_request()
    _reset(conn.sock)


def test_upstream_reset_in_its_handshake_gets_502_inside_tls(env):
    # A reset is a failed handshake like any other: never a silent close after the 200.
    up = env.upstream(_reset_after_hello, tls=False)
    al = start_airlock(env, _read_only(up))
    status, body, in_tls = tunnel_answer(al, LOOPBACK4, up.port)
    check_eq(status, 502, "status")
    check(in_tls, "the 502 came inside the client's TLS")
    check_eq((body or {}).get("error"), "upstream_tls_failed", "error")


def test_upstream_reset_before_answering_gets_502(env):
    up = env.upstream(_reset_after_request, tls=False)
    al = start_airlock(env, _read_only(up))
    r = _plain_tunnel(al, up.port).request("GET", "/")
    check_eq(r.status, 502, "status")
    check_eq(r.json().get("error"), "upstream_closed", "JSON error")


def _close_at_once(conn):
    """An upstream that completes its TLS handshake and closes before any request."""
    return


def _tls_exchange_holding_finished(sock, cafile, host, hold, request):
    """A TLS client over sock that holds its Finished back for `hold` seconds (airlock's side of
    the handshake is still running meanwhile), then sends request and returns all it reads."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_ctx(cafile, True).wrap_bio(inc, out, server_hostname=host)

    def handshake_step():
        try:
            tls.do_handshake()
            return True
        except ssl.SSLWantReadError:
            return False

    handshake_step()
    sock.sendall(out.read())  # the ClientHello
    while not handshake_step():
        data = sock.recv(65536)
        check(data, "airlock closed during the client's handshake")
        inc.write(data)
    time.sleep(hold)
    tls.write(request)
    sock.sendall(out.read())  # the Finished and the request
    got = bytearray()
    while True:
        try:
            chunk = tls.read(65536)
            if not chunk:
                return bytes(got)  # close_notify
            got += chunk
            continue
        except ssl.SSLWantReadError:
            pass
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return bytes(got)
        data = sock.recv(65536)
        if not data:
            return bytes(got)
        inc.write(data)


def test_upstream_closing_right_after_its_handshake_gets_502_inside_tls(env):
    # The upstream's close reaches airlock while the client's handshake with airlock runs (the
    # client holds its Finished back a second): the client still completes it and reads why,
    # never a bare close after the 200.
    up = env.upstream(_close_at_once)
    al = start_airlock(env, _read_only(up))
    resp, sock = connect_tunnel_resp(al, LOOPBACK4, up.port)
    check_eq(resp.status, 200, "CONNECT")
    sock.settimeout(10)
    got = _tls_exchange_holding_finished(
        sock, al.ca_pem, LOOPBACK4, 1.0,
        build_request("GET", "/", [("Host", "%s:%d" % (LOOPBACK4, up.port))]))
    sock.close()
    head, _, body = got.partition(b"\r\n\r\n")
    check(head.startswith(b"HTTP/1.1 502 "), "inside TLS: %r" % got[:200])
    check_eq(json.loads(body).get("error"), "upstream_closed", "error")
