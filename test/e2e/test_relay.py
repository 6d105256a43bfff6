# SPDX-License-Identifier: MIT
"""HTTP/1.1 exchanges inside a terminated tunnel: framing both ways, interim responses,
keep-alive and pipelining, the authority check, hop-by-hop fields and malformed input."""

import ssl

from harness import (MIB, build_request, check, check_eq, content_chunks, content_sha256,
                     encode_chunked, read_final_response, read_response, sha256)


def _body(n):
    return b"".join(content_chunks(n))


def test_post_1mib_with_content_length_both_ways(env):
    up, al, c = env.tunnel()
    body = _body(MIB)
    r = c.request("POST", "/mirror", [("Content-Type", "application/octet-stream")], body)
    check_eq(r.status, 200, "status")
    check_eq(r.headers.get("x-body-sha256"), sha256(body), "request body digest seen upstream")
    check_eq(r.headers.get("content-length"), str(MIB), "Content-Length relayed")
    check_eq(len(r.body), MIB, "response body length")
    check_eq(sha256(r.body), sha256(body), "response body digest")


def test_chunked_request_body_relayed(env):
    up, al, c = env.tunnel()
    pieces = [b"first-", b"x" * 70000, b"", b"-last"]
    body = b"".join(pieces)
    c.send_request("POST", "/echo", [("Transfer-Encoding", "chunked")])
    c.send(encode_chunked(pieces))
    r, _ = read_final_response(c.reader)
    check_eq(r.status, 200, "status")
    j = r.json()
    check_eq(j["body_len"], len(body), "body length seen upstream")
    check_eq(j["body_sha256"], sha256(body), "body digest seen upstream")


def test_chunked_response_trailers_reach_client(env):
    up, al, c = env.tunnel()
    r = c.request("GET", "/chunked-trailers")
    check_eq(r.status, 200, "status")
    check_eq(r.framing, "chunked", "response framing")
    want = b"alpha-" * 10 + b"beta-" * 1000 + b"gamma" + b"delta-" * 5000
    check_eq(r.body, want, "body")
    check_eq(r.trailers.get("x-checksum"), sha256(want), "trailer X-Checksum")


def test_head_response_has_content_length_and_no_body(env):
    up, al, c = env.tunnel()
    r = c.request("HEAD", "/file")
    check_eq(r.status, 200, "HEAD status")
    check_eq(r.headers.get("content-length"), "1234", "Content-Length of the HEAD response")
    # Had airlock sent body bytes, they would now be read as the next response's head.
    r = c.request("GET", "/after-head")
    check_eq(r.status, 200, "status of the request after HEAD")
    check_eq(r.json()["target"], "/after-head", "target of the request after HEAD")


def test_204_has_no_body_and_tunnel_stays_usable(env):
    up, al, c = env.tunnel()
    r = c.request("GET", "/status/204")
    check_eq(r.status, 204, "status")
    r = c.request("GET", "/after-204")
    check_eq(r.json()["target"], "/after-204", "target of the request after 204")


def test_304_has_no_body_and_tunnel_stays_usable(env):
    up, al, c = env.tunnel()
    r = c.request("GET", "/status/304", [("If-None-Match", '"v1"')])
    check_eq(r.status, 304, "status")
    check_eq(r.headers.get("etag"), '"v1"', "ETag")
    r = c.request("GET", "/after-304")
    check_eq(r.json()["target"], "/after-304", "target of the request after 304")


def test_keep_alive_20_sequential_requests_on_one_tunnel(env):
    up, al, c = env.tunnel()
    for i in range(20):
        r = c.request("GET", "/seq/%d" % i)
        check_eq(r.status, 200, "status of request %d" % i)
        check_eq(r.json()["target"], "/seq/%d" % i, "target of request %d" % i)
    check_eq(up.accepts, 1, "upstream connections for 20 keep-alive requests")


def test_pipelined_requests_answered_in_order(env):
    up, al, c = env.tunnel()
    data = b"".join(build_request("GET", "/pipe/%d" % i, [("Host", c.host)]) for i in range(3))
    c.send(data)
    for i in range(3):
        r = read_response(c.reader)
        check_eq(r.status, 200, "status of pipelined request %d" % i)
        check_eq(r.json()["target"], "/pipe/%d" % i, "order of pipelined responses")


def test_expect_100_continue_relays_interim_then_final(env):
    up, al, c = env.tunnel()
    body = b"y" * 50000
    c.send_request("POST", "/continue", [("Expect", "100-continue"),
                                         ("Content-Length", str(len(body)))])
    interim = read_response(c.reader)
    check_eq(interim.status, 100, "interim status before the body is sent")
    c.send(body)
    r, _ = read_final_response(c.reader)
    check_eq(r.status, 200, "final status")
    check_eq(r.json()["body_sha256"], sha256(body), "body digest seen upstream")


def test_read_until_close_response_delivered_then_closed(env):
    up, al, c = env.tunnel()
    c.send_request("GET", "/until-close")
    r = read_response(c.reader)
    check_eq(r.status, 200, "status")
    check_eq(len(r.body), 300000, "body length")
    check_eq(sha256(r.body), content_sha256(300000), "body digest")
    if r.framing != "close":
        closed, extra = c.wait_closed(5)
        check(closed and not extra, "tunnel not closed after a read-until-close response")


def _check_421(r, c, up):
    check_eq(r.status, 421, "status")
    check_eq(r.json().get("error"), "request_authority_mismatch", "JSON error")
    closed, _ = c.wait_closed(5)
    check(closed, "tunnel still open after 421")
    check_eq(len(up.requests), 0, "requests that reached the upstream")


def test_host_naming_another_host_gets_421(env):
    up, al, c = env.tunnel()
    c.send_request("GET", "/", [("Host", "example.com")], host=False)
    _check_421(read_response(c.reader), c, up)


def test_host_without_port_is_accepted(env):
    up, al, c = env.tunnel()
    c.send_request("GET", "/noport", [("Host", "127.0.0.1")], host=False)
    r = read_response(c.reader)
    check_eq(r.status, 200, "status for Host without port")
    check_eq(r.json()["target"], "/noport", "target seen upstream")


def test_host_with_another_port_gets_421(env):
    up, al, c = env.tunnel()
    other = up.port + 1 if up.port < 65535 else up.port - 1
    c.send_request("GET", "/", [("Host", "127.0.0.1:%d" % other)], host=False)
    _check_421(read_response(c.reader), c, up)


def test_hop_by_hop_headers_not_forwarded(env):
    up, al, c = env.tunnel()
    r = c.request("GET", "/hop", [
        ("Connection", "keep-alive, X-Secret-Hop"), ("X-Secret-Hop", "1"), ("Keep-Alive", "5"),
        ("Proxy-Authorization", "x"), ("Proxy-Connection", "keep-alive"), ("TE", "trailers"),
        ("X-End-To-End", "kept")])
    check_eq(r.status, 200, "status")
    h = dict((k.lower(), v) for k, v in r.json()["headers"])
    for name in ("x-secret-hop", "keep-alive", "proxy-authorization", "proxy-connection"):
        check(name not in h, "hop-by-hop field %s reached the upstream: %r" % (name, h))
    check("x-secret-hop" not in h.get("connection", "").lower(),
          "Connection upstream still names X-Secret-Hop: %r" % h.get("connection"))
    check_eq(h.get("x-end-to-end"), "kept", "end-to-end field")


def _send_ignoring_close(c, data):
    # airlock may answer and close before reading everything; the answer is what counts.
    try:
        c.send(data)
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
        pass


def _check_error(c, want, up):
    r = read_response(c.reader)
    check_eq(r.status, want, "status")
    closed, _ = c.wait_closed(5)
    check(closed, "tunnel still open after %d" % want)
    check_eq(len(up.requests), 0, "requests that reached the upstream")


def test_content_length_with_transfer_encoding_gets_400(env):
    up, al, c = env.tunnel()
    _send_ignoring_close(c, build_request("POST", "/", [
        ("Host", c.host), ("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
        b"0\r\n\r\n"))
    _check_error(c, 400, up)


def test_oversized_request_head_gets_431(env):
    up, al, c = env.tunnel()
    fields = [("Host", c.host)] + [("X-Fill-%02d" % i, "a" * 1000) for i in range(64)]
    _send_ignoring_close(c, build_request("GET", "/", fields))
    _check_error(c, 431, up)


def test_long_request_target_gets_414(env):
    up, al, c = env.tunnel()
    _send_ignoring_close(c, build_request("GET", "/" + "a" * 10240, [("Host", c.host)]))
    _check_error(c, 414, up)
