# SPDX-License-Identifier: MIT
"""Forward proxy for https:// targets: an absolute-form `GET https://host/path` sent in clear
text to airlock (as axios 1.7 does) is judged like a request inside a CONNECT tunnel (L4, SSRF
guard, L7) and relayed over a verified TLS connection to the upstream. Keep-alive carries on
across origins: https:// and http://, one host and another."""

import socket
import ssl

from harness import (LOOPBACK4, WS_TEXT, Reader, WebSocketClient, app_handler, build_request,
                     check, check_eq, endpoint, find_log, forward_client, read_response,
                     silent_handler, ws_accept, ws_bad_accept_handler, ws_new_key)
from support import (check_deny, ep, loopback_ep, policy_doc, recording_handler, start_airlock,
                     tcp_echo_server)


def _auth(up):
    return "%s:%d" % (LOOPBACK4, up.port)


def _get(c, url, headers=(), method="GET", body=None):
    """One request in absolute form; Host is the URL's authority unless headers name one."""
    hs = list(headers)
    if not any(k.lower() == "host" for k, _ in hs):
        hs.insert(0, ("Host", url.split("/")[2]))
    if body is not None:
        hs.append(("Content-Length", str(len(body))))
    c.send(build_request(method, url, hs, body))
    return read_response(c.reader, method)


def _upstream_host(j):
    return [v for k, v in j["headers"] if k.lower() == "host"]


def test_forward_https_get_reaches_upstream_over_verified_tls(env):
    up = env.upstream()  # TLS, a leaf of the CA airlock trusts for upstreams
    al = env.airlock([up])
    c = forward_client(al)
    r = _get(c, "https://%s/a/./b//c?q=1" % _auth(up),
             [("Host", "ignored.example"), ("Proxy-Connection", "keep-alive")])
    check_eq(r.status, 200, "status (body %r)" % r.body[:300])
    j = r.json()
    check_eq(j["target"], "/a/b/c?q=1", "request-target upstream (canonical origin form)")
    check_eq(_upstream_host(j), [_auth(up)], "Host fields upstream (from the target)")
    check_eq([k for k, _ in j["headers"] if k.lower().startswith("proxy-")], [],
             "Proxy-* fields upstream")
    check_eq(up.handshakes, 1, "TLS handshakes the upstream completed")


def test_forward_https_path_denied_by_policy_gets_403_json(env):
    up = env.upstream()
    al = env.airlock(endpoints=[endpoint(LOOPBACK4, up.port, access="full",
                                         deny_rules=[{"method": "*", "path": "/admin/**"}])])
    c = forward_client(al)
    j = check_deny(_get(c, "https://%s/admin/./users" % _auth(up)), "policy_denied")
    check_eq(j.get("path"), "/admin/users", "path in the deny body (canonical)")
    check_eq(len(up.requests), 0, "requests that reached the upstream")


def test_forward_https_method_denied_by_access_gets_403_json(env):
    up = env.upstream()
    al = env.airlock(endpoints=[endpoint(LOOPBACK4, up.port, access="read-only")])
    c = forward_client(al)
    check_deny(_get(c, "https://%s/x" % _auth(up), method="POST", body=b"p"), "policy_denied")
    check_eq(len(up.requests), 0, "requests that reached the upstream")


def test_forward_https_to_host_not_in_policy_gets_403_before_dialling(env):
    up = env.upstream()
    denied = env.upstream()
    al = env.airlock([up])
    c = forward_client(al)
    j = check_deny(_get(c, "https://%s/" % _auth(denied)), "policy_denied")
    check_eq(j.get("port"), denied.port, "port in the deny body")
    check_eq(denied.accepts, 0, "connections made to the denied upstream")


def test_forward_https_to_loopback_without_allowed_ips_gets_403_ssrf(env):
    up = env.upstream()
    al = start_airlock(env, policy_doc({"apis": [ep(LOOPBACK4, up.port, access="full")]}))
    c = forward_client(al)
    check_deny(_get(c, "https://%s/" % _auth(up)), "ssrf_denied")
    check_eq(up.accepts, 0, "connections made to the loopback upstream")


def test_forward_https_upstream_cert_from_untrusted_ca_gets_502_json(env):
    up = env.upstream(cert=env.pki.untrusted_leaf)
    al = env.airlock([up])
    c = forward_client(al)
    r = _get(c, "https://%s/x" % _auth(up))
    check_eq(r.status, 502, "status")
    check_eq(r.json().get("error"), "upstream_tls_failed", "JSON error")
    check_eq(len(up.requests), 0, "requests that reached the untrusted upstream")


def test_forward_https_upstream_cert_with_wrong_name_gets_502_json(env):
    up = env.upstream(cert=env.pki.wrong_name_leaf)
    al = env.airlock([up])
    c = forward_client(al)
    r = _get(c, "https://%s/x" % _auth(up))
    check_eq(r.status, 502, "status")
    check_eq(r.json().get("error"), "upstream_tls_failed", "JSON error")


def _close_after_client_hello(conn):
    conn.reader.read_some()  # the ClientHello: read, so the close is a FIN, not a reset
    conn.sock.shutdown(2)


def test_forward_https_upstream_closing_in_handshake_gets_502_json(env):
    up = env.upstream(_close_after_client_hello, tls=False)
    al = env.airlock([up])
    c = forward_client(al)
    r = _get(c, "https://%s/x" % _auth(up))
    check_eq(r.status, 502, "status")
    check_eq(r.json().get("error"), "upstream_tls_failed", "JSON error")


def test_forward_https_silent_upstream_gets_502_after_connect_timeout(env):
    up = env.upstream(silent_handler, tls=False)
    al = env.airlock([up], args=["--connect-timeout", "1"])
    c = forward_client(al)
    r = _get(c, "https://%s/x" % _auth(up))
    check_eq(r.status, 502, "status")
    check_eq(r.json().get("error"), "upstream_failed", "JSON error")


def test_forward_https_to_tcp_endpoint_gets_403(env):
    srv = tcp_echo_server(env)
    al = start_airlock(env, policy_doc({"raw": [loopback_ep(LOOPBACK4, srv.port,
                                                            protocol="tcp")]}))
    for scheme in ("https", "http"):
        c = forward_client(al)
        check_deny(_get(c, "%s://%s/" % (scheme, _auth(srv))), "policy_denied")
    check_eq(srv.accepts, 0, "connections made to the tcp upstream")


def test_forward_keep_alive_across_https_and_http_origins(env):
    a = env.upstream()
    plain = env.upstream(tls=False)
    b = env.upstream()
    al = env.airlock([a, plain, b])
    c = forward_client(al)
    for path in ("/one", "/two"):
        r = _get(c, "https://%s%s" % (_auth(a), path))
        check_eq(r.status, 200, "status of https %s" % path)
        check_eq(r.json()["target"], path, "target upstream")
    r = _get(c, "http://%s/three" % _auth(plain))
    check_eq(r.status, 200, "status of the http:// request")
    check_eq(r.json()["target"], "/three", "target at the plain upstream")
    r = _get(c, "https://%s/four" % _auth(b))
    check_eq(r.status, 200, "status of https://b")
    check_eq(r.json()["target"], "/four", "target at the second TLS upstream")
    r = _get(c, "https://%s/five" % _auth(a))
    check_eq(r.status, 200, "status of https://a again")
    check_eq((a.accepts, a.handshakes), (2, 2),
             "connections and handshakes at a (one for /one and /two, one for /five)")
    check_eq((plain.accepts, b.accepts, b.handshakes), (1, 1, 1),
             "connections at the plain upstream, connections and handshakes at b")
    check_eq([r.target for r in a.requests], ["/one", "/two", "/five"], "requests at a")


def _tls_or_plain_handler(ctx, kinds):
    """app_handler behind TLS when the client's first byte starts a TLS record, else in clear
    text: one port that serves both schemes. kinds records which, per connection."""
    def handler(conn):
        first = conn.sock.recv(1, socket.MSG_PEEK)
        if first == b"\x16":
            conn.sock = ctx.wrap_socket(conn.sock, server_side=True)
            conn.reader = Reader(conn.sock)
        kinds.append("tls" if first == b"\x16" else "plain")
        app_handler(conn)
    return handler


def test_forward_https_then_http_to_the_same_port_is_another_origin(env):
    # The scheme is part of the origin (RFC 6454 §4): http://h:p after https://h:p needs an
    # upstream of its own, in clear text, never the TLS one; and back again.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(env.pki.leaf.cert, env.pki.leaf.key)
    kinds = []
    up = env.upstream(_tls_or_plain_handler(ctx, kinds), tls=False)
    al = env.airlock([up])
    c = forward_client(al)
    for url in ("https://%s/s1", "http://%s/p", "https://%s/s2"):
        r = _get(c, url % _auth(up))
        check_eq(r.status, 200, "status of %s" % url)
    check_eq(kinds, ["tls", "plain", "tls"], "upstream connections, in order")
    check_eq([r.target for r in up.requests], ["/s1", "/p", "/s2"], "requests upstream")


def test_forward_https_websocket_upgrade_is_piped(env):
    up = env.upstream()
    al = env.airlock([up])
    c = forward_client(al)
    key = ws_new_key()
    c.send(build_request("GET", "https://%s/ws" % _auth(up), [
        ("Host", _auth(up)), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]))
    r = read_response(c.reader)
    check_eq(r.status, 101, "status of the upgrade")
    check_eq(r.headers.get("sec-websocket-accept"), ws_accept(key), "Sec-WebSocket-Accept")
    ws = WebSocketClient(c.sock, c.reader)
    check_eq(ws.recv(), (WS_TEXT, b"hello from upstream"), "first server frame")
    ws.send(WS_TEXT, b"ping over a plain hop and a TLS hop")
    check_eq(ws.recv(), (WS_TEXT, b"ping over a plain hop and a TLS hop"), "echo")
    ws.close()


def test_forward_https_websocket_with_bad_accept_gets_502(env):
    up = env.upstream(ws_bad_accept_handler)
    al = env.airlock([up])
    c = forward_client(al)
    c.send(build_request("GET", "https://%s/ws" % _auth(up), [
        ("Host", _auth(up)), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", ws_new_key()), ("Sec-WebSocket-Version", "13")]))
    r = read_response(c.reader)
    check_eq(r.status, 502, "status for a 101 with a wrong Sec-WebSocket-Accept")


def test_forward_https_is_logged_as_forward_then_request(env):
    up = env.upstream(recording_handler)
    al = env.airlock([up])
    c = forward_client(al)
    check_eq(_get(c, "https://%s/logged" % _auth(up)).status, 200, "status")

    def to_up(l):
        return l.get("dst_endpoint", {}).get("port") == up.port
    fwd = find_log(al, lambda l: to_up(l) and l.get("activity_name") == "FORWARD")
    check(fwd and fwd[0].get("action") == "allow", "no FORWARD allow line:\n" +
          al.log_text()[-2000:])
    req = find_log(al, lambda l: to_up(l) and l.get("activity_name") == "REQUEST")
    check(req and req[0].get("http_request", {}).get("url", {}).get("path") == "/logged" and
          req[0].get("unmapped", {}).get("l7_decision") == "allow",
          "no REQUEST allow line for /logged:\n" + al.log_text()[-2000:])


def _reset_after_hello(conn):
    import struct
    conn.sock.recv(5)  # the start of airlock's ClientHello
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.sock.close()


def test_forward_https_upstream_reset_in_handshake_gets_502_json(env):
    up = env.upstream(_reset_after_hello, tls=False)
    al = env.airlock([up])
    r = _get(forward_client(al), "https://%s/" % _auth(up))
    check_eq(r.status, 502, "status")
    check_eq(r.json().get("error"), "upstream_tls_failed", "JSON error")
