# SPDX-License-Identifier: MIT
"""Forward proxy: absolute-form requests over plain HTTP, policy-checked like CONNECT."""

from harness import build_request, check_eq, forward_client, read_response


def test_forward_get_sends_origin_form_and_strips_proxy_headers(env):
    up = env.upstream(tls=False)
    al = env.airlock([up])
    c = forward_client(al)
    auth = "127.0.0.1:%d" % up.port
    c.send(build_request("GET", "http://%s/path/x?q=1" % auth, [
        ("Host", auth), ("Proxy-Connection", "keep-alive"), ("Proxy-Authorization", "x"),
        ("X-End-To-End", "kept")]))
    r = read_response(c.reader)
    check_eq(r.status, 200, "status")
    j = r.json()
    check_eq(j["target"], "/path/x?q=1", "request-target seen upstream (origin form)")
    hosts = [v for k, v in j["headers"] if k.lower() == "host"]
    check_eq(hosts, [auth], "Host fields seen upstream")
    proxy = [k for k, _ in j["headers"] if k.lower().startswith("proxy-")]
    check_eq(proxy, [], "Proxy-* fields seen upstream")
    check_eq(dict((k.lower(), v) for k, v in j["headers"]).get("x-end-to-end"), "kept",
             "end-to-end field")


def test_forward_to_host_not_in_policy_gets_403_json(env):
    up = env.upstream(tls=False)
    denied = env.upstream(tls=False)
    al = env.airlock([up])
    c = forward_client(al)
    auth = "127.0.0.1:%d" % denied.port
    c.send(build_request("GET", "http://%s/" % auth, [("Host", auth)]))
    r = read_response(c.reader)
    check_eq(r.status, 403, "status")
    check_eq(r.headers.get("x-airlock-decision", "").lower(), "deny", "X-Airlock-Decision")
    check_eq(r.json().get("error"), "policy_denied", "JSON error")
    check_eq(denied.accepts, 0, "connections made to the denied upstream")
