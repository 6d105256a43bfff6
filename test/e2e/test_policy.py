# SPDX-License-Identifier: MIT
"""The policy engine and its guards through the binary: L7 access presets, rules and deny
rules with the deny body, canonical paths, audit mode, the SSRF guard, protocol tcp endpoints,
binary identity, hot reload under traffic, and `airlock check` error paths."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from harness import (LOOPBACK4, WS_TEXT, Skip, WebSocketClient, build_request, check, check_eq,
                     connect_tunnel_resp, forward_client, open_tunnel, read_response, wait_until,
                     ws_upgrade_request)
from support import (TcpEchoServer, check_deny, ep, loopback_ep, policy_doc, recv_exact,
                     recv_to_eof, reload, run_cli, start_airlock, tcp_echo_server, wait_log,
                     write_json)


def _one_endpoint(env, name, **extra):
    """An upstream (the harness echo app) and airlock with one loopback endpoint for it in the
    network policy `name`: (upstream, airlock)."""
    up = env.upstream()
    al = start_airlock(env, policy_doc({name: [loopback_ep(LOOPBACK4, up.port, **extra)]}))
    return up, al


def _denied(c, up, method, target, error="policy_denied", status=403, headers=None):
    """Send one request that must be refused: the deny answer's JSON body; the tunnel closes
    and the upstream gets no request."""
    before = len(up.requests)
    c.send_request(method, target, headers)
    r = read_response(c.reader, method)
    if method == "HEAD":
        # No content in an answer to HEAD (RFC 9110 §9.3.2): only the head, then the close.
        check_eq(r.status, status, "status")
        check_eq(r.headers.get("x-airlock-decision", "").lower(), "deny", "X-Airlock-Decision")
        j = None
    else:
        j = check_deny(r, error, status)
    closed, extra = c.wait_closed(5)
    check(closed, "tunnel still open after the %d for %s %s" % (status, method, target))
    check_eq(extra, b"", "bytes after the %d for %s %s" % (status, method, target))
    check_eq(len(up.requests) - before, 0, "requests that reached the upstream")
    return j


def _allowed(c, method, target, body=None):
    r = c.request(method, target, body=body)
    check_eq(r.status, 200, "status of %s %s (body %r)" % (method, target, r.body[:300]))
    return r


# ----- L7 access, rules, deny rules ------------------------------------------------------------

def test_read_only_allows_get_and_head(env):
    up, al = _one_endpoint(env, "ro", access="read-only")
    c = open_tunnel(al, LOOPBACK4, up.port)
    r = _allowed(c, "GET", "/repos/o/r")
    check_eq(r.json()["method"], "GET", "method seen upstream")
    r = c.request("HEAD", "/repos/o/r")
    check_eq(r.status, 200, "HEAD status")
    check_eq(len(up.requests), 2, "requests that reached the upstream")


def test_read_only_post_gets_403_with_agent_readable_json_body(env):
    up, al = _one_endpoint(env, "ro_policy", access="read-only")
    c = open_tunnel(al, LOOPBACK4, up.port)
    j = _denied(c, up, "POST", "/items/./new?token=querysecret42")
    check(isinstance(j.get("detail"), str) and j["detail"], "detail missing or empty: %r" % j)
    check_eq(j.get("policy"), "ro_policy", "policy")
    check_eq(j.get("host"), LOOPBACK4, "host")
    check_eq(j.get("port"), up.port, "port")
    check_eq(j.get("method"), "POST", "method")
    check_eq(j.get("path"), "/items/new", "path (canonical, without the query)")
    rm = j.get("rule_missing")
    check(isinstance(rm, dict) and "method" in rm and "path" in rm,
          "rule_missing is not an object with method and path: %r" % (rm,))
    check_eq(rm.get("method"), "POST", "rule_missing.method")
    check(isinstance(j.get("next_steps"), str) and j["next_steps"].strip(),
          "next_steps missing or empty: %r" % j)
    raw = repr(j)
    check("querysecret42" not in raw and "token" not in raw,
          "the query string leaked into the deny body: %r" % j)


def test_rule_allows_post_on_glob_path(env):
    up, al = _one_endpoint(env, "gh", access="read-only",
                           rules=[{"method": "POST", "path": "/repos/*/*/issues"}])
    c = open_tunnel(al, LOOPBACK4, up.port)
    r = _allowed(c, "POST", "/repos/octo/hello/issues", body=b'{"title": "t"}')
    check_eq(r.json()["method"], "POST", "method seen upstream")
    check_eq(r.json()["target"], "/repos/octo/hello/issues", "target seen upstream")


def test_rule_glob_star_does_not_cross_segments(env):
    up, al = _one_endpoint(env, "gh", access="read-only",
                           rules=[{"method": "POST", "path": "/repos/*/*/issues"}])
    for target in ("/repos/octo/issues", "/repos/a/b/c/issues", "/repos/octo/hello/pulls"):
        c = open_tunnel(al, LOOPBACK4, up.port)
        j = _denied(c, up, "POST", target)
        check_eq(j.get("path"), target, "path in the deny body")


def test_deny_rule_wins_over_full_access_and_covers_bare_prefix(env):
    up, al = _one_endpoint(env, "full_but_admin", access="full",
                           deny_rules=[{"method": "*", "path": "/admin/**"}])
    for method, target in (("GET", "/admin"), ("GET", "/admin/users/1"), ("DELETE", "/admin/x")):
        c = open_tunnel(al, LOOPBACK4, up.port)
        j = _denied(c, up, method, target)
        check_eq(j.get("method"), method, "method in the deny body")
    c = open_tunnel(al, LOOPBACK4, up.port)
    _allowed(c, "DELETE", "/administrator")
    _allowed(c, "POST", "/public/admin")


def test_deny_rule_refusal_names_the_rule_instead_of_rule_missing(env):
    # Deny wins over every allow rule: suggesting one would send the operator the wrong way.
    up, al = _one_endpoint(env, "full_but_admin", access="full",
                           deny_rules=[{"method": "*", "path": "/admin/**"}])
    j = _denied(open_tunnel(al, LOOPBACK4, up.port), up, "DELETE", "/Admin/x")
    check_eq(j.get("detail"), "matched deny rule", "detail")
    check("rule_missing" not in j, "rule_missing offered for a deny-rule refusal: %r" % j)
    check_eq(j.get("deny_rule"), {"method": "*", "path": "/admin/**"}, "deny_rule")
    check("deny rule" in j.get("next_steps", ""), "next_steps: %r" % j.get("next_steps"))


def test_denied_head_request_gets_the_head_only(env):
    up, al = _one_endpoint(env, "get_only", rules=[{"method": "GET", "path": "/x"}])
    _denied(open_tunnel(al, LOOPBACK4, up.port), up, "HEAD", "/x")


def _deny_fail_closed_airlock(env):
    return _one_endpoint(env, "guarded", access="full",
                         deny_rules=[{"method": "*", "path": "/admin/*"},
                                     {"method": "GET", "path": "/private/**"}])


def test_deny_rule_matches_with_a_trailing_slash(env):
    # "/admin/users/." is canonicalised to "/admin/users/": one empty segment more than the
    # glob has, and most upstreams serve it as /admin/users.
    up, al = _deny_fail_closed_airlock(env)
    for target in ("/admin/users/", "/admin/users/.", "/admin/users/x/.."):
        j = _denied(open_tunnel(al, LOOPBACK4, up.port), up, "GET", target)
        check_eq(j.get("path"), "/admin/users/", "canonical path in the deny body")
    _allowed(open_tunnel(al, LOOPBACK4, up.port), "GET", "/admin/users/deeper")


def test_deny_rule_matches_case_insensitively(env):
    up, al = _deny_fail_closed_airlock(env)
    for method, target in (("GET", "/ADMIN/users"), ("DELETE", "/Admin/Users/"),
                           ("GET", "/PRIVATE/x")):
        _denied(open_tunnel(al, LOOPBACK4, up.port), up, method, target)
    _allowed(open_tunnel(al, LOOPBACK4, up.port), "GET", "/ADMINISTRATOR")


def test_get_deny_rule_covers_head(env):
    up, al = _deny_fail_closed_airlock(env)
    for target in ("/private/x", "/private"):
        _denied(open_tunnel(al, LOOPBACK4, up.port), up, "HEAD", target)
    c = open_tunnel(al, LOOPBACK4, up.port)
    _allowed(c, "POST", "/private/x", body=b"p")
    _allowed(c, "OPTIONS", "/private/x")


def test_allow_rules_stay_exact(env):
    up, al = _one_endpoint(env, "exact", rules=[{"method": "GET", "path": "/v1/items"}])
    _allowed(open_tunnel(al, LOOPBACK4, up.port), "GET", "/v1/items")
    for method, target in (("GET", "/v1/items/"), ("GET", "/V1/items"), ("HEAD", "/v1/items")):
        _denied(open_tunnel(al, LOOPBACK4, up.port), up, method, target)


def test_read_write_allows_put_and_patch_but_not_delete(env):
    up, al = _one_endpoint(env, "rw", access="read-write")
    c = open_tunnel(al, LOOPBACK4, up.port)
    check_eq(_allowed(c, "PUT", "/doc/1", body=b"put").json()["method"], "PUT", "method upstream")
    check_eq(_allowed(c, "PATCH", "/doc/1", body=b"patch").json()["method"], "PATCH",
             "method upstream")
    check_eq(_allowed(c, "POST", "/doc", body=b"post").json()["method"], "POST", "method upstream")
    j = _denied(c, up, "DELETE", "/doc/1")
    check_eq(j.get("method"), "DELETE", "method in the deny body")


def test_deny_rule_matches_suffix_and_trailing_dot_spellings(env):
    # Rails serves /admin.json from /admin (format json), Spring's suffix match /admin.*, and
    # IIS drops trailing dots and spaces: a deny rule for /admin must refuse them all.
    up, al = _one_endpoint(env, "guarded", access="full",
                           deny_rules=[{"method": "*", "path": "/admin/**"}])
    for target in ("/admin.json", "/admin.", "/admin%20", "/ADMIN%2E", "/admin../",
                   "/admin.tar.gz", "/admin./users%20.", "/Admin.JSON/"):
        j = _denied(open_tunnel(al, LOOPBACK4, up.port), up, "GET", target)
        check_eq(j.get("detail"), "matched deny rule", "detail for %s" % target)
    c = open_tunnel(al, LOOPBACK4, up.port)
    for target in ("/administrator.json", "/admin-x.json", "/x/admin.json"):
        _allowed(c, "GET", target)


def test_deny_rule_for_every_path_refuses_options_asterisk(env):
    # "OPTIONS *" asks about the server as a whole, so a deny rule covering "/" covers it.
    up, al = _one_endpoint(env, "closed", access="full",
                           deny_rules=[{"method": "*", "path": "/**"}])
    j = _denied(open_tunnel(al, LOOPBACK4, up.port), up, "OPTIONS", "*")
    check_eq(j.get("deny_rule"), {"method": "*", "path": "/**"}, "deny_rule")
    up, al = _one_endpoint(env, "open", access="read-only")
    r = open_tunnel(al, LOOPBACK4, up.port).request("OPTIONS", "*")
    check_eq(r.status, 200, "OPTIONS * without a deny rule")


# ----- method overrides ------------------------------------------------------------------------

def test_method_override_is_judged_as_a_method(env):
    # Symfony, Laravel, Express's method-override and Google APIs perform the method a POST
    # names in these fields or in ?_method=: read-write must not let a DELETE through that way.
    up, al = _one_endpoint(env, "rw", access="read-write")
    for name in ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"):
        c = open_tunnel(al, LOOPBACK4, up.port)
        j = _denied(c, up, "POST", "/repos/o/r", headers=[(name, "delete"),
                                                         ("Content-Length", "0")])
        check_eq(j.get("detail"), "method override: method not allowed by access read-write",
                 "detail for %s" % name)
        check_eq(j.get("method"), "POST", "method in the deny body")
        check_eq(j.get("rule_missing"), {"method": "DELETE", "path": "/repos/o/r"},
                 "rule_missing names the override")
    for target in ("/repos/o/r?_method=DELETE", "/repos/o/r?a=1&%5Fmethod=Delete"):
        c = open_tunnel(al, LOOPBACK4, up.port)
        j = _denied(c, up, "POST", target, headers=[("Content-Length", "0")])
        check_eq(j.get("detail"), "method override: method not allowed by access read-write",
                 "detail for %s" % target)
    check(wait_log(al, lambda l: "method override" in json.dumps(l)),
          "no log line says a method override was refused:\n" + al.log_text()[-2000:])
    # an override the endpoint allows goes through, as it was sent
    c = open_tunnel(al, LOOPBACK4, up.port)
    r = _allowed(c, "POST", "/repos/o/r?_method=PATCH", body=b"x")
    check_eq(r.json()["method"], "POST", "method seen upstream")
    r = c.request("POST", "/repos/o/r", headers=[("X-HTTP-Method-Override", "PUT")], body=b"x")
    check_eq(r.status, 200, "POST overridden to PUT")


def test_method_override_that_is_not_a_method_gets_400(env):
    up, al = _one_endpoint(env, "rw", access="read-write")
    for headers, target in (([("X-HTTP-Method-Override", "DEL ETE")], "/x"),
                            ([("X-HTTP-Method-Override", "")], "/x"),
                            ([("X-HTTP-Method", "PUT,")], "/x"),
                            ([], "/x?_method=DELETE%00")):
        c = open_tunnel(al, LOOPBACK4, up.port)
        c.send_request("POST", target, headers + [("Content-Length", "0")])
        r = read_response(c.reader)
        check_eq(r.status, 400, "status for %r %s" % (headers, target))
        check_eq(r.json().get("error"), "bad_request", "error")
        closed, _ = c.wait_closed(5)
        check(closed, "tunnel still open after the 400")
    check_eq(len(up.requests), 0, "requests that reached the upstream")


# ----- websocket upgrades ----------------------------------------------------------------------

def test_websocket_upgrade_needs_a_grant_that_allows_writes(env):
    # After its 101 a websocket is a two-way channel whose frames no rule sees: read-only's
    # GET alone must not open one.
    up, al = _one_endpoint(env, "ro", access="read-only")
    c = open_tunnel(al, LOOPBACK4, up.port)
    req, _ = ws_upgrade_request(c.host)
    c.send(req)
    j = check_deny(read_response(c.reader), "policy_denied")
    check_eq(j.get("detail"), "websocket upgrade not allowed by access read-only", "detail")
    check_eq(j.get("rule_missing"), {"method": "GET", "path": "/ws"}, "rule_missing")
    closed, _ = c.wait_closed(5)
    check(closed, "tunnel still open after the 403")
    check_eq(len(up.requests), 0, "requests that reached the upstream")
    # the rule the answer suggests, or a preset that allows writes, lets it through
    for name, extra in (("ro_rule", {"access": "read-only",
                                     "rules": [{"method": "GET", "path": "/ws"}]}),
                        ("rw", {"access": "read-write"})):
        up, al = _one_endpoint(env, name, **extra)
        ws = _open_ws(al, up.port)
        ws.send(WS_TEXT, b"hi")
        check_eq(ws.recv(), (WS_TEXT, b"hi"), "echo through the %s endpoint" % name)
        ws.close()


# ----- canonical paths -------------------------------------------------------------------------

def test_canonical_path_goes_upstream(env):
    up, al = _one_endpoint(env, "canon", access="full")
    c = open_tunnel(al, LOOPBACK4, up.port)
    r = _allowed(c, "GET", "/a/./b/../c//d;x=1/%7Euser?q=%2F")
    check_eq(r.json()["target"], "/a/c/d/~user?q=%2F", "target seen upstream")


def test_policy_matches_the_canonical_path(env):
    # A deny rule on /a/c/** catches a request that spells the path differently.
    up, al = _one_endpoint(env, "canon", access="full",
                           deny_rules=[{"method": "*", "path": "/a/c/**"}])
    c = open_tunnel(al, LOOPBACK4, up.port)
    j = _denied(c, up, "GET", "/a/./b/../%63//;p=1/d")
    check_eq(j.get("path"), "/a/c/d", "canonical path in the deny body")


def _bad_path(env, target):
    up, al = _one_endpoint(env, "canon", access="full")
    c = open_tunnel(al, LOOPBACK4, up.port)
    c.send_request("GET", target)
    r = read_response(c.reader)
    check_eq(r.status, 400, "status for %r" % target)
    closed, _ = c.wait_closed(5)
    check(closed, "tunnel still open after 400 for %r" % target)
    check_eq(len(up.requests), 0, "requests that reached the upstream")


def test_path_climbing_above_root_gets_400(env):
    _bad_path(env, "/a/%2e%2e/%2e%2e/etc")


def test_encoded_slash_in_path_gets_400(env):
    _bad_path(env, "/a%2Fb")


def test_double_encoded_dot_in_path_gets_400(env):
    _bad_path(env, "/%252e%252e/x")


# ----- audit mode ------------------------------------------------------------------------------

def test_audit_mode_forwards_refused_request_and_logs_audit(env):
    up, al = _one_endpoint(env, "audited", access="read-only", enforcement="audit")
    c = open_tunnel(al, LOOPBACK4, up.port)
    r = c.request("POST", "/would-be-denied", body=b"payload")
    check_eq(r.status, 200, "status of an audited POST (body %r)" % r.body[:300])
    check_eq(len(up.requests), 1, "requests that reached the upstream")
    check_eq(up.requests[0].method, "POST", "method seen upstream")
    check_eq(up.requests[0].target, "/would-be-denied", "target seen upstream")

    def audit(line):
        u = line.get("unmapped")
        return isinstance(u, dict) and u.get("l7_decision") == "audit"
    check(wait_log(al, audit), "no log line with unmapped.l7_decision == \"audit\":\n" +
          al.log_text()[-3000:])


# ----- SSRF guard ------------------------------------------------------------------------------

def _ssrf_denied(env, host):
    up = env.upstream()
    al = start_airlock(env, policy_doc({"no_ips": [ep(host, up.port, access="full")]}))
    resp, sock = connect_tunnel_resp(al, host, up.port)
    check_deny(resp, "ssrf_denied")
    closed, _ = resp.reader.wait_eof(5)
    check(closed, "connection still open after the ssrf 403")
    time.sleep(0.3)
    check_eq(up.accepts, 0, "connections made to the loopback upstream")


def test_ssrf_loopback_ip_without_allowed_ips_gets_403(env):
    _ssrf_denied(env, LOOPBACK4)


def test_ssrf_localhost_without_allowed_ips_gets_403(env):
    _ssrf_denied(env, "localhost")


def test_loopback_with_allowed_ips_is_reachable(env):
    up = env.upstream()
    al = start_airlock(env, policy_doc({"lo": [
        ep(LOOPBACK4, up.port, access="full", allowed_ips=["127.0.0.0/8"])]}))
    c = open_tunnel(al, LOOPBACK4, up.port)
    _allowed(c, "GET", "/through")
    check_eq(up.accepts, 1, "upstream connections")


def test_allowed_ips_of_another_binarys_endpoint_do_not_open_the_address(env):
    # "tools" may reach loopback, but only for its binary; "open" lets this process through to
    # the same host and port without allowed_ips, so the connection must meet the SSRF guard.
    up = env.upstream()
    al = start_airlock(env, policy_doc({
        "tools": {"endpoints": [ep(LOOPBACK4, up.port, access="full",
                                   allowed_ips=["127.0.0.0/8"])],
                  "binaries": ["/opt/airlock-e2e-not-here/tool"]},
        "open": [ep(LOOPBACK4, up.port, access="full")],
    }))
    resp, sock = connect_tunnel_resp(al, LOOPBACK4, up.port)
    check_deny(resp, "ssrf_denied")
    time.sleep(0.3)
    check_eq(up.accepts, 0, "connections made to the loopback upstream")


def test_l7_on_an_allowed_ips_address_counts_only_endpoints_listing_it(env):
    # Only "reader" lists loopback, so only its read-only access may judge requests on a
    # tunnel dialled to 127.0.0.1; "writer" (full, no allowed_ips) never agreed to that traffic.
    up = env.upstream()
    al = start_airlock(env, policy_doc({
        "reader": [loopback_ep(LOOPBACK4, up.port, access="read-only")],
        "writer": [ep(LOOPBACK4, up.port, access="full")],
    }))
    c = open_tunnel(al, LOOPBACK4, up.port)
    _allowed(c, "GET", "/x")
    j = _denied(c, up, "POST", "/x")
    check_eq(j.get("policy"), "reader", "policy")
    check_eq(j.get("detail"), "method not allowed by access read-only", "detail")
    check_eq(j.get("rule_missing"), {"method": "POST", "path": "/x"}, "rule_missing")


def test_forward_proxy_to_an_allowed_ips_address_counts_only_endpoints_listing_it(env):
    # The forward proxy dials before its first L7 decision: the same rule holds there.
    up = env.upstream(tls=False)
    al = start_airlock(env, policy_doc({
        "reader": [loopback_ep(LOOPBACK4, up.port, access="read-only")],
        "writer": [ep(LOOPBACK4, up.port, access="full")],
    }))
    c = forward_client(al)
    auth = "%s:%d" % (LOOPBACK4, up.port)
    c.send(build_request("POST", "http://%s/x" % auth, [("Host", auth)], body=b"p"))
    j = check_deny(read_response(c.reader), "policy_denied")
    check_eq(j.get("policy"), "reader", "policy")
    check_eq(len(up.requests), 0, "requests that reached the upstream")


def _check_refuses(env, endpoints, want_path):
    path = write_json(env.path("metadata.json"), policy_doc({"x": endpoints}))
    rc, out, _ = run_cli(env, ["check", "--policy", path])
    check_eq(rc, 1, "exit code of check (output %r)" % out)
    check(want_path in out, "error does not name %s: %r" % (want_path, out))


def test_check_rejects_metadata_ip_endpoint(env):
    _check_refuses(env, [ep("169.254.169.254", 80, access="full",
                            allowed_ips=["169.254.0.0/16"])],
                   "network_policies.x.endpoints[0].host")


def test_check_rejects_azure_wireserver_endpoint(env):
    _check_refuses(env, [ep("168.63.129.16", 80, access="full")],
                   "network_policies.x.endpoints[0].host")


def test_check_rejects_gcp_ipv6_metadata_endpoint(env):
    _check_refuses(env, [ep("fd20:ce::254", 80, access="full")],
                   "network_policies.x.endpoints[0].host")


def test_check_rejects_metadata_behind_the_local_use_nat64_prefix(env):
    # 64:ff9b:1::/48 (RFC 8215) carries IPv4 addresses as 64:ff9b::/96 does:
    # 64:ff9b:1::a9fe:a9fe is 169.254.169.254 behind a local translator.
    _check_refuses(env, [ep("64:ff9b:1::a9fe:a9fe", 80, access="full",
                            allowed_ips=["64:ff9b:1::/48"])],
                   "network_policies.x.endpoints[0].host")
    _check_refuses(env, [ep("wire.example.com", 80, access="full",
                            allowed_ips=["64:ff9b:1::/48", "64:ff9b:1::a9fe:a9fe/128"])],
                   "network_policies.x.endpoints[0].allowed_ips[1]")


def test_check_rejects_metadata_address_in_allowed_ips(env):
    _check_refuses(env, [ep("wire.example.com", 80, access="full",
                            allowed_ips=["10.0.0.0/8", "168.63.129.16/32"])],
                   "network_policies.x.endpoints[0].allowed_ips[1]")


def test_check_rejects_metadata_hostname_endpoint(env):
    _check_refuses(env, [ep("api.example.com", 443, access="read-only"),
                         ep("metadata.google.internal", 80, access="full")],
                   "network_policies.x.endpoints[1].host")


# ----- protocol tcp ----------------------------------------------------------------------------

# Bytes that an HTTP parser or a TLS layer would not pass through untouched.
TCP_PAYLOAD = (b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n" + bytes(range(256)) +
               b"\r\n\r\n\x16\x03\x01\x00\x05hello\x00\xff" + bytes(range(255, -1, -1)) * 64)


def _tcp_tunnel(env):
    srv = tcp_echo_server(env)
    al = start_airlock(env, policy_doc({"raw": [loopback_ep(LOOPBACK4, srv.port,
                                                            protocol="tcp")]}))
    resp, sock = connect_tunnel_resp(al, LOOPBACK4, srv.port)
    check_eq(resp.status, 200, "CONNECT status for a tcp endpoint (%r)" % resp.body[:300])
    return srv, al, sock


def test_tcp_endpoint_pipes_bytes_untouched_both_ways(env):
    srv, al, sock = _tcp_tunnel(env)
    sock.sendall(TCP_PAYLOAD)
    back = recv_exact(sock, len(TCP_PAYLOAD))
    check(back == TCP_PAYLOAD, "echoed bytes differ from the bytes sent")
    check(bytes(srv.received) == TCP_PAYLOAD, "bytes the tcp upstream received differ")
    sock.sendall(b"\r\n\r\n")
    check_eq(recv_exact(sock, 4), b"\r\n\r\n", "second echo")


def test_reload_turning_a_tcp_endpoint_into_rest_closes_its_pipe(env):
    """A hostile review: raw bytes kept flowing to an endpoint that a reload made rest and
    read-only."""
    srv, al, sock = _tcp_tunnel(env)
    sock.sendall(b"before ")
    check_eq(recv_exact(sock, 7), b"before ", "echo before the reload")
    reload(al, policy_doc({"raw": [loopback_ep(LOOPBACK4, srv.port, access="read-only")]}))
    try:
        sock.sendall(b"DELETE /everything HTTP/1.1\r\n\r\n")
    except OSError:
        pass
    time.sleep(0.3)
    with srv.lock:
        got = bytes(srv.received)
    check(b"DELETE" not in got, "raw bytes reached a rest endpoint after the reload: %r" % got)


def test_tcp_endpoint_half_close_delivers_final_reply_then_eof(env):
    srv, al, sock = _tcp_tunnel(env)
    sock.sendall(TCP_PAYLOAD)
    check(recv_exact(sock, len(TCP_PAYLOAD)) == TCP_PAYLOAD, "echo before the half-close")
    sock.shutdown(socket.SHUT_WR)
    rest = recv_to_eof(sock)
    check_eq(rest, TcpEchoServer.FINAL + str(len(TCP_PAYLOAD)).encode(),
             "bytes after the client's half-close")
    check_eq(srv.eofs, 1, "EOFs the tcp upstream saw")


# ----- binary identity -------------------------------------------------------------------------

def _curl():
    path = shutil.which("curl")
    if not path:
        raise Skip("curl is not installed")
    return os.path.realpath(path)


def _binaries_airlock(env, binaries, args=()):
    up = env.upstream()
    doc = policy_doc({"tools": {"endpoints": [loopback_ep(LOOPBACK4, up.port, access="full")],
                                "binaries": binaries}})
    return up, start_airlock(env, doc, args=args)


def test_binaries_lets_listed_curl_through(env):
    curl = _curl()
    up, al = _binaries_airlock(env, [curl])
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": env.tmp}
    r = subprocess.run([curl, "-q", "-sS", "--max-time", "10",
                        "--proxy", "http://%s:%d" % (LOOPBACK4, al.port), "--cacert", al.ca_pem,
                        "https://%s:%d/from-curl" % (LOOPBACK4, up.port)],
                       capture_output=True, timeout=30, stdin=subprocess.DEVNULL, env=clean)
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    check_eq(r.returncode, 0, "curl exit code (output %r)" % out[-1000:])
    check('"/from-curl"' in out, "curl did not get the upstream's echo: %r" % out[-1000:])
    check_eq(len(up.requests), 1, "requests that reached the upstream")


def test_binaries_refuses_unlisted_process(env):
    up, al = _binaries_airlock(env, [_curl()])
    resp, sock = connect_tunnel_resp(al, LOOPBACK4, up.port)
    check_deny(resp, "policy_denied")
    time.sleep(0.3)
    check_eq(up.accepts, 0, "connections made to the upstream")


def test_binary_identity_off_lets_unlisted_process_through(env):
    up, al = _binaries_airlock(env, [_curl()], args=["--binary-identity", "off"])
    c = open_tunnel(al, LOOPBACK4, up.port)
    _allowed(c, "GET", "/from-python")


def _sleep():
    path = shutil.which("sleep") or "/bin/sleep"
    if not os.path.exists(path):
        raise Skip("sleep is not installed")
    return os.path.realpath(path)


# A process that got the client's socket by inheritance sends the CONNECT on it (fd argv[1],
# authority argv[2]) once told to (a line on stdin), and prints the status airlock answered.
# In "thread" mode a thread first takes a private copy of the fd table (unshare(CLONE_FILES))
# and the main thread closes the socket, so only that thread's table still holds it.
_SENDER = r"""
import ctypes, os, socket, sys, threading
fd, auth, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def send():
    s = socket.socket(fileno=os.dup(fd))
    s.settimeout(10)
    s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (auth, auth)).encode())
    head = b""
    while b"\r\n" not in head:
        b = s.recv(1)
        if not b:
            break
        head += b
    print(head.split(b" ")[1].decode() if head else "eof", flush=True)
sys.stdin.readline()
if mode == "thread":
    ready, out = threading.Event(), []
    def worker():
        libc = ctypes.CDLL(None, use_errno=True)
        out.append(libc.unshare(0x400))  # CLONE_FILES
        ready.set()
        if out[0] == 0:
            send()
    t = threading.Thread(target=worker)
    t.start()
    ready.wait()
    os.close(fd)
    t.join()
    if out[0] != 0:
        print("unshare failed", flush=True)
else:
    send()
"""


def _share_then_connect(al, host, port, sender_mode="plain"):
    """Connect to airlock, give the socket to a `sleep` (the lower PID) and to a python sender,
    close our own copy, and have the sender CONNECT: the status it got (a string)."""
    sock = al.connect()
    fd = sock.fileno()
    sleeper = subprocess.Popen([_sleep(), "30"], pass_fds=(fd,), stdin=subprocess.DEVNULL)
    try:
        sender = subprocess.Popen([sys.executable, "-c", _SENDER, str(fd), "%s:%d" % (host, port),
                                   sender_mode], pass_fds=(fd,), stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE)
        sock.close()
        out, _ = sender.communicate(b"go\n", timeout=20)
        return out.decode().strip()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_binaries_refuse_a_socket_shared_with_an_unlisted_process(env):
    """`sleep` is listed; a python process sharing its socket sends the CONNECT. The holder
    found first (the lower PID) is sleep, but every holder must match: 403."""
    up, al = _binaries_airlock(env, [_sleep()])
    check_eq(_share_then_connect(al, LOOPBACK4, up.port), "403", "CONNECT status")
    check(wait_until(lambda: "2 processes hold the client's socket" in al.log_text() +
                     al.stderr_text(), 3), "no log line naming both holders")
    check_eq(up.accepts, 0, "connections made to the upstream")


def test_binaries_see_a_thread_with_a_private_fd_table(env):
    """The sender's socket lives only in one thread's private fd table (not in /proc/PID/fd):
    the search still finds it, and the unlisted sender is refused."""
    up, al = _binaries_airlock(env, [_sleep()])
    got = _share_then_connect(al, LOOPBACK4, up.port, "thread")
    if got == "unshare failed":
        raise Skip("unshare(CLONE_FILES) is not permitted here")
    check_eq(got, "403", "CONNECT status")
    check_eq(up.accepts, 0, "connections made to the upstream")


# The brief's spoof as an agent writes it: a worker forked from the process that then execs a
# listed binary keeping the socket. The worker descends from that binary.
_FORK_EXEC = r"""
import os, socket, sys, time
fd, auth, sleep = int(sys.argv[1]), sys.argv[2], sys.argv[3]
pid = os.fork()
if pid:
    os.execv(sleep, [sleep, "30"])
ppid = os.getppid()
for _ in range(200):
    if os.path.realpath("/proc/%d/exe" % ppid) == sleep:
        break
    time.sleep(0.02)
s = socket.socket(fileno=fd)
s.settimeout(10)
s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (auth, auth)).encode())
head = b""
while b"\r\n" not in head:
    b = s.recv(1)
    if not b:
        break
    head += b
print(head.split(b" ")[1].decode() if head else "eof", flush=True)
os.kill(ppid, 9)
"""


def _fork_exec_connect(al, host, port):
    sock = al.connect()
    fd = sock.fileno()
    proc = subprocess.Popen([sys.executable, "-c", _FORK_EXEC, str(fd), "%s:%d" % (host, port),
                             _sleep()], pass_fds=(fd,), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE)
    sock.close()
    try:
        # The pipe ends when the worker prints and kills its parent (the sleep).
        out = proc.stdout.read()
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    return out.decode().strip()


def test_binaries_match_ancestors_lets_a_child_of_a_listed_binary_through(env):
    """The default: a process passes when an ancestor runs a listed binary. A worker whose
    parent exec'd `sleep` after forking it shares the socket with sleep, and both pass."""
    up, al = _binaries_airlock(env, [_sleep()])
    check_eq(_fork_exec_connect(al, LOOPBACK4, up.port), "200", "CONNECT status")


def test_binaries_match_exact_refuses_a_child_of_a_listed_binary(env):
    """"binaries_match": "exact": the worker's own executable (python) is not listed, so the
    same fork-then-exec trick is refused."""
    up = env.upstream()
    doc = policy_doc({"tools": {"endpoints": [loopback_ep(LOOPBACK4, up.port, access="full",
                                                          binaries_match="exact")],
                                "binaries": [_sleep()]}})
    al = start_airlock(env, doc)
    check_eq(_fork_exec_connect(al, LOOPBACK4, up.port), "403", "CONNECT status")
    check_eq(up.accepts, 0, "connections made to the upstream")


def test_binaries_match_exact_lets_the_listed_binary_itself_through(env):
    curl = _curl()
    up = env.upstream()
    doc = policy_doc({"tools": {"endpoints": [loopback_ep(LOOPBACK4, up.port, access="full",
                                                          binaries_match="exact")],
                                "binaries": [curl]}})
    al = start_airlock(env, doc)
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": env.tmp}
    r = subprocess.run([curl, "-q", "-sS", "--max-time", "10",
                        "--proxy", "http://%s:%d" % (LOOPBACK4, al.port), "--cacert", al.ca_pem,
                        "https://%s:%d/exact" % (LOOPBACK4, up.port)],
                       capture_output=True, timeout=30, stdin=subprocess.DEVNULL, env=clean)
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    check_eq(r.returncode, 0, "curl exit code (output %r)" % out[-1000:])
    check_eq(len(up.requests), 1, "requests that reached the upstream")


# ----- binary identity: paths forged with mounts ----------------------------------------------

AGENT_UID = 65534  # the agent runs as a user of its own, as the README advises

# Connect to airlock (port argv[1]), CONNECT to argv[2], print the status code. Run as
# `python -c "$AIRLOCK_CLIENT"`, so that the agent's user needs no file of ours.
_CONNECT_CLIENT = r"""
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (sys.argv[2], sys.argv[2])).encode())
head = b""
while b"\r\n" not in head:
    b = s.recv(1)
    if not b:
        break
    head += b
print(head.split(b" ")[1].decode() if head else "eof", flush=True)
"""


def _as_agent(script, **variables):
    """Run a shell script as the agent's user with variables in its environment; its output."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "AIRLOCK_CLIENT": _CONNECT_CLIENT}
    env.update(variables)
    r = subprocess.run(["setpriv", "--reuid=%d" % AGENT_UID, "--regid=%d" % AGENT_UID,
                        "--clear-groups", "sh", "-c", script], capture_output=True, timeout=30,
                       stdin=subprocess.DEVNULL, cwd="/", env=env)
    return (r.stdout + r.stderr).decode("utf-8", "replace").strip()


def _forging_agent():
    """Skip unless this machine lets an unprivileged user make a user and mount namespace and
    bind-mount in it (the forgery), and the test can run as that user."""
    if os.geteuid() != 0:
        raise Skip("needs root to run the agent as a user of its own")
    for tool in ("setpriv", "unshare"):
        if not shutil.which(tool):
            raise Skip("%s is not installed" % tool)
    py = os.path.realpath(sys.executable)
    if not py.startswith("/usr/"):
        raise Skip("python (%s) is not a system binary the agent's user can run" % py)
    r = subprocess.run(["setpriv", "--reuid=%d" % AGENT_UID, "--regid=%d" % AGENT_UID,
                        "--clear-groups", "unshare", "-Urm", "true"], capture_output=True,
                       timeout=10, stdin=subprocess.DEVNULL, cwd="/")
    if r.returncode != 0:
        raise Skip("unprivileged user namespaces are not available: %r" % r.stderr[-200:])
    return py


def _forgery_airlock(env, py, curl):
    """curl's endpoint lists only curl, python's only python (both exact)."""
    up_curl, up_py = env.upstream(), env.upstream()
    doc = policy_doc({
        "curl_only": {"endpoints": [loopback_ep(LOOPBACK4, up_curl.port, access="full",
                                                binaries_match="exact")], "binaries": [curl]},
        "python": {"endpoints": [loopback_ep(LOOPBACK4, up_py.port, access="full",
                                             binaries_match="exact")], "binaries": [py]}})
    return up_curl, up_py, start_airlock(env, doc)


def _check_untrusted_path_refused(al, up, got):
    check_eq(got, "403", "CONNECT status for python dressed as curl")
    check(wait_until(lambda: "cannot be trusted" in al.log_text() + al.stderr_text(), 3),
          "no warning saying why the binary is unknown")
    check_eq(up.accepts, 0, "connections made to curl's upstream")


def test_binaries_refuse_an_exe_bind_mounted_over_a_listed_one_in_a_user_namespace(env):
    """The agent makes a user and mount namespace (no privilege needed), bind-mounts python over
    the listed curl in it and runs "curl": /proc shows /usr/bin/curl, but the process's user
    namespace is not airlock's, so its mounts and its path prove nothing."""
    py = _forging_agent()
    curl = _curl()
    up_curl, up_py, al = _forgery_airlock(env, py, curl)
    # The agent's own python, unforged, passes on python's endpoint: the setup works.
    check_eq(_as_agent('"$PY" -c "$AIRLOCK_CLIENT" "$PORT" "$AUTH"', PY=py, PORT=str(al.port),
                       AUTH="%s:%d" % (LOOPBACK4, up_py.port)), "200", "python on its endpoint")
    got = _as_agent('unshare -Urm sh -c \'mount --bind "$PY" "$CURL" && '
                    'exec "$CURL" -c "$AIRLOCK_CLIENT" "$PORT" "$AUTH"\'',
                    PY=py, CURL=curl, PORT=str(al.port), AUTH="%s:%d" % (LOOPBACK4, up_curl.port))
    _check_untrusted_path_refused(al, up_curl, got)


def test_binaries_refuse_an_exe_run_through_another_namespaces_mounts(env):
    """The same forgery, run from airlock's own namespaces through the forging process's root
    (/proc/PID/root/usr/bin/curl): the process is in airlock's user namespace, but its
    executable's mount is not in its mount namespace."""
    py = _forging_agent()
    curl = _curl()
    up_curl, _, al = _forgery_airlock(env, py, curl)
    got = _as_agent('unshare -Urm sh -c \'mount --bind "$PY" "$CURL" && exec sleep 30\' & F=$!\n'
                    'for i in $(seq 200); do\n'
                    '  [ "$(readlink /proc/$F/exe)" = "$(readlink -f "$(command -v sleep)")" ] '
                    '&& break\n'
                    '  sleep 0.02\n'
                    'done\n'
                    '"/proc/$F/root$CURL" -c "$AIRLOCK_CLIENT" "$PORT" "$AUTH"\n'
                    'kill $F',
                    PY=py, CURL=curl, PORT=str(al.port), AUTH="%s:%d" % (LOOPBACK4, up_curl.port))
    _check_untrusted_path_refused(al, up_curl, got)


# ----- reload under traffic --------------------------------------------------------------------

def _xy_policy(port, paths):
    return policy_doc({"xy": [loopback_ep(LOOPBACK4, port,
                                          rules=[{"method": "GET", "path": p} for p in paths])]})


def test_reload_applies_to_next_request_on_same_tunnel(env):
    up = env.upstream()
    al = start_airlock(env, _xy_policy(up.port, ["/x"]))
    # Policy A refuses /y (on its own tunnel: a 403 closes the connection).
    _denied(open_tunnel(al, LOOPBACK4, up.port), up, "GET", "/y")
    c = open_tunnel(al, LOOPBACK4, up.port)
    _allowed(c, "GET", "/x")
    reload(al, _xy_policy(up.port, ["/x", "/y"]))
    r = _allowed(c, "GET", "/y")
    check_eq(r.json()["target"], "/y", "target seen upstream after the reload")
    check_eq(up.accepts, 2, "upstream connections (the tunnel was kept across the reload)")


def test_reload_with_invalid_policy_keeps_old_policy(env):
    up = env.upstream()
    al = start_airlock(env, _xy_policy(up.port, ["/x"]))
    c = open_tunnel(al, LOOPBACK4, up.port)
    _allowed(c, "GET", "/x")
    reload(al, '{"version": 1, "network_policies": {"xy": {"endpoints": [ {"host": "*"')
    _allowed(c, "GET", "/x")
    _allowed(open_tunnel(al, LOOPBACK4, up.port), "GET", "/x")
    _denied(open_tunnel(al, LOOPBACK4, up.port), up, "GET", "/y")


def _open_ws(al, port):
    c = open_tunnel(al, LOOPBACK4, port)
    req, _ = ws_upgrade_request(c.host)
    c.send(req)
    r = read_response(c.reader)
    check_eq(r.status, 101, "status of the upgrade")
    ws = WebSocketClient(c.sock, c.reader)
    check_eq(ws.recv(), (WS_TEXT, b"hello from upstream"), "first server frame")
    return ws


def _ws_policy(ports):
    return policy_doc({"ws": [loopback_ep(LOOPBACK4, p, access="full") for p in ports]})


def test_reload_keeping_endpoint_keeps_websocket_open(env):
    up = env.upstream()
    other = env.upstream()
    al = start_airlock(env, _ws_policy([up.port]))
    ws = _open_ws(al, up.port)
    reload(al, _ws_policy([other.port, up.port]))
    ws.send(WS_TEXT, b"after reload")
    check_eq(ws.recv(), (WS_TEXT, b"after reload"), "echo after a reload that keeps the endpoint")
    ws.close()


def test_reload_removing_endpoint_closes_websocket(env):
    up = env.upstream()
    other = env.upstream()
    al = start_airlock(env, _ws_policy([up.port]))
    ws = _open_ws(al, up.port)
    write_json(al.policy_path, _ws_policy([other.port]))
    al.proc.send_signal(signal.SIGHUP)
    closed, _ = ws.reader.wait_eof(2.0)
    check(closed, "WebSocket still open 2 s after a reload that removed its endpoint")
    check(al.alive(), "airlock exited after the reload")


def _closed_by_reload(al, reader, why):
    closed, _ = reader.wait_eof(2.0)
    check(closed, "pipe still open 2 s after a reload that %s" % why)
    check(wait_log(al, lambda l: "allowed_ips no longer cover" in json.dumps(l)),
          "no log line says why the pipe closed:\n" + al.log_text()[-3000:])
    check(al.alive(), "airlock exited after the reload")


def test_reload_dropping_allowed_ips_closes_websocket_to_loopback(env):
    # The new policy still allows the host and port, but no longer the loopback address the
    # WebSocket was dialled to: the SSRF guard would refuse it now, so the pipe must go.
    up = env.upstream()
    al = start_airlock(env, policy_doc({"ws": [loopback_ep(LOOPBACK4, up.port, access="full")]}))
    ws = _open_ws(al, up.port)
    reload(al, policy_doc({"ws": [ep(LOOPBACK4, up.port, access="full")]}), settle=0)
    _closed_by_reload(al, ws.reader, "dropped its allowed_ips")


def test_reload_dropping_allowed_ips_closes_tcp_pipe_to_loopback(env):
    srv, al, sock = _tcp_tunnel(env)
    sock.sendall(b"ping")
    check_eq(recv_exact(sock, 4), b"ping", "echo before the reload")
    reload(al, policy_doc({"raw": [ep(LOOPBACK4, srv.port, protocol="tcp")]}), settle=0)
    sock.settimeout(2.0)
    try:
        recv_to_eof(sock)
        closed = True
    except socket.timeout:
        closed = False
    except ConnectionError:
        closed = True
    check(closed, "tcp pipe still open 2 s after a reload that dropped allowed_ips")
    check(wait_log(al, lambda l: "allowed_ips no longer cover" in json.dumps(l)),
          "no log line says why the pipe closed:\n" + al.log_text()[-3000:])


def test_reload_dropping_allowed_ips_refuses_next_request_on_http_tunnel(env):
    up = env.upstream()
    al = start_airlock(env, policy_doc({"lo": [loopback_ep(LOOPBACK4, up.port, access="full")]}))
    c = open_tunnel(al, LOOPBACK4, up.port)
    _allowed(c, "GET", "/before")
    reload(al, policy_doc({"lo": [ep(LOOPBACK4, up.port, access="full")]}))
    j = _denied(c, up, "GET", "/after")
    check_eq(j.get("detail"), "connected address not in allowed_ips", "detail")
    check("rule_missing" not in j, "rule_missing offered for an address refusal: %r" % j)


# ----- airlock check ---------------------------------------------------------------------------

def test_check_reports_each_error_with_its_json_path(env):
    doc = policy_doc({"x": [
        {"host": "bad host!", "ports": [443, "9000-8000"], "access": "read-only"},
        {"host": "ok.example.com", "port": 443},
        {"host": "a*.example.com", "port": 70000, "access": "everything"},
    ]})
    path = write_json(env.path("bad.json"), doc)
    rc, out, _ = run_cli(env, ["check", "--policy", path])
    check_eq(rc, 1, "exit code of check on a policy with several errors (output %r)" % out)
    for want in ("network_policies.x.endpoints[0].host",
                 "network_policies.x.endpoints[0].ports[1]",
                 "network_policies.x.endpoints[1]",
                 "network_policies.x.endpoints[2].host",
                 "network_policies.x.endpoints[2].port",
                 "network_policies.x.endpoints[2].access"):
        check(want in out, "check output does not name %s: %r" % (want, out))
