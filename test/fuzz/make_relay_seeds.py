#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the seed corpus of fuzz_relay (test/fuzz/corpus/relay/): the e2e suite's smuggling and
hardening cases (test/e2e/test_hardening.py, test_relay.py, test_upgrade.py, test_forward.py)
and the relay contract's main paths, in fuzz_relay's input format: 4 header bytes (mode, client
chunk size, upstream chunk size, schedule seed), the client's stream, "\\n<<>>\\n", the
upstream's. Run it from anywhere; it rewrites the directory's files of the same names."""

import os

TUNNEL, CREDS, DRAINING, CLIENT_EOF, UPSTREAM_EOF, CLIENT_FIRST = 1, 8, 16, 32, 64, 128
HOSTS = {"api": 0, "ro": 1, "audit": 2, "rules": 3}
MARKER = b"\n<<>>\n"
PH = "AIRLOCK_PLACEHOLDER_API_000001"
SECRET = "s3cretTOKENvalue42"
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
WS_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
ECHO = ('{"echo":"%s"}' % SECRET).encode()


def req(method, target, headers=(), body=b"", host=None):
    head = "%s %s HTTP/1.1\r\n" % (method, target)
    if host:
        head += "Host: %s\r\n" % host
    head += "".join("%s: %s\r\n" % kv for kv in headers) + "\r\n"
    return head.encode("latin-1") + body


def resp(status, reason, headers=(), body=b""):
    head = "HTTP/1.1 %d %s\r\n" % (status, reason)
    head += "".join("%s: %s\r\n" % kv for kv in headers) + "\r\n"
    return head.encode("latin-1") + body


def ok(body=b"ok"):
    return resp(200, "OK", [("Content-Length", str(len(body)))], body)


def ws(host, path="/ws", extra=()):
    return req("GET", path, [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                             ("Sec-WebSocket-Key", WS_KEY), ("Sec-WebSocket-Version", "13")] +
               list(extra), host=host)


WS_101 = resp(101, "Switching Protocols", [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                           ("Sec-WebSocket-Accept", WS_ACCEPT)])


def seed(host, client, upstream=b"", flags=0, cchunk=0, uchunk=0, rng=ord("s")):
    """host: a tunnel's (api, ro, audit, rules) or None for the forward proxy."""
    mode = flags | (TUNNEL | HOSTS[host] << 1 if host else 0)
    return bytes([mode, cchunk, uchunk, rng]) + client + MARKER + upstream


A, R = "api.example.com", "ro.example.com"
SEEDS = {
    # ----- test_hardening.py: framing can not be deleted or smuggled
    "connection_names_content_length": seed("ro", req(
        "GET", "/allowed", [("Content-Length", str(len(req("DELETE", "/repos/x", host=R)))),
                            ("Connection", "content-length")], host=R) +
        req("DELETE", "/repos/x", host=R)),
    "connection_names_transfer_encoding": seed("api", req(
        "POST", "/x", [("Connection", "keep-alive, Transfer-Encoding"),
                       ("Transfer-Encoding", "chunked")], b"0\r\n\r\n", host=A)),
    "connection_names_host": seed("api", req("POST", "/x", [("Connection", "Host")], host=A)),
    "response_names_content_length": seed("ro", req("GET", "/x", host=R), resp(
        200, "OK", [("Content-Length", "5"), ("Connection", "content-length")], b"HTTP/")),
    "body_is_never_a_second_request": seed("ro", req("GET", "/first", host=R) +
                                           req("DELETE", "/second", host=R), ok(), cchunk=0x90),
    "body_that_looks_like_a_request": seed("api", req(
        "POST", "/p", [("Content-Length", str(len(req("DELETE", "/admin/x", host=A))))],
        req("DELETE", "/admin/x", host=A), host=A), ok()),
    "gzip_chunked_both_ways": seed("api", req(
        "POST", "/gz", [("Transfer-Encoding", "gzip, chunked")], b"4\r\n\x1f\x8b\x08\x00\r\n0\r\n\r\n",
        host=A), resp(200, "OK", [("Transfer-Encoding", "gzip, chunked")],
                      b"3\r\nabc\r\n0\r\n\r\n"), uchunk=0x83),
    "request_coding_not_chunked": seed("ro", req(
        "POST", "/x", [("Transfer-Encoding", "gzip")], b"abc", host=R)),
    "absolute_form_other_authority": seed("ro", req("GET", "http://evil.invalid/x", host=R)),
    "absolute_form_the_tunnel": seed("api", req("GET", "http://api.example.com/x?q=1", host=A),
                                     ok()),
    "many_response_fields": seed("api", req("GET", "/x", host=A), resp(
        200, "OK", [("X-%d" % i, "v") for i in range(101)] + [("Content-Length", "0")])),
    "websocket_post_with_body": seed("api", req(
        "POST", "/ws", [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                        ("Sec-WebSocket-Key", WS_KEY), ("Sec-WebSocket-Version", "13"),
                        ("Content-Length", "8")], b"smuggled", host=A)),
    "websocket_get_with_body": seed("api", req(
        "GET", "/ws", [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                       ("Sec-WebSocket-Key", WS_KEY), ("Sec-WebSocket-Version", "13"),
                       ("Content-Length", "8")], b"smuggled", host=A)),
    "websocket_short_key": seed("api", req(
        "GET", "/ws", [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                       ("Sec-WebSocket-Key", "c2hvcnQ="), ("Sec-WebSocket-Version", "13")],
        host=A)),
    "trailers_with_framing_fields": seed("api", req(
        "POST", "/x", [("Transfer-Encoding", "chunked")],
        b"1\r\nx\r\n0\r\nHost: evil.invalid\r\nConnection: close\r\nKeep-Alive: 5\r\n"
        b"X-Checksum: abc\r\n\r\n", host=A), resp(
        200, "OK", [("Transfer-Encoding", "chunked"), ("Trailer", "X-T")],
        b"2\r\nok\r\n0\r\nX-T: 1\r\nContent-Length: 9\r\n\r\n"), cchunk=0x87),
    "empty_transfer_encoding": seed("api", req("POST", "/x", [("Transfer-Encoding", ",")],
                                               host=A)),
    "connection_close_in_a_trailer": seed("api", req("GET", "/first", host=A) + req(
        "POST", "/second", [("Content-Length", "0")], host=A), resp(
        200, "OK", [("Transfer-Encoding", "chunked")], b"2\r\nok\r\n0\r\nConnection: close\r\n\r\n")
        + ok(b""), uchunk=0x8f),
    "host_spelling": seed("api", req("GET", "/h", host="API.Example.COM.") +
                          req("GET", "/h", host="api.example.com.:443"), ok() + ok(),
                          uchunk=0x9f),
    "garbage_between_exchanges": seed("api", req("GET", "/x", host=A),
                                      ok() + b"NOT HTTP AT ALL\r\n\r\n", uchunk=0x84),
    # ----- test_relay.py
    "content_length_with_transfer_encoding": seed("api", req(
        "POST", "/x", [("Content-Length", "3"), ("Transfer-Encoding", "chunked")],
        b"3\r\nabc\r\n0\r\n\r\n", host=A)),
    "obs_fold": seed("api", b"GET /x HTTP/1.1\r\nHost: api.example.com\r\nX-A: 1\r\n folded\r\n\r\n"),
    "bad_chunk_size": seed("api", req("POST", "/c", [("Transfer-Encoding", "chunked")],
                                      b"zz\r\nab\r\n", host=A)),
    "chunked_request_and_response": seed("api", req(
        "POST", "/c", [("Transfer-Encoding", "chunked")], b"5;e=1\r\nhello\r\n0\r\n\r\n", host=A),
        resp(200, "OK", [("Transfer-Encoding", "chunked")], b"3\r\nabc\r\n0\r\nX-T: 2\r\n\r\n"),
        cchunk=0x85, uchunk=0x85),
    "head_204_304": seed("api", req("HEAD", "/h", host=A) + req("DELETE", "/d", host=A) +
                         req("GET", "/c", [("If-None-Match", '"e"')], host=A),
                         resp(200, "OK", [("Content-Length", "10")]) + resp(204, "No Content") +
                         resp(304, "Not Modified", [("Content-Length", "7")]), uchunk=0x9f),
    "expect_100_continue": seed("api", req(
        "POST", "/up", [("Expect", "100-continue"), ("Content-Length", "5")], b"hello", host=A),
        resp(100, "Continue") + resp(103, "Early Hints", [("Link", "</s.css>; rel=preload")]) +
        resp(201, "Created", [("Content-Length", "0")]), cchunk=0x9f, uchunk=0x9f),
    "read_until_close": seed("api", req("GET", "/u", host=A), resp(200, "OK", [("X-A", "1")],
                                                                   b"abcdef"),
                             flags=UPSTREAM_EOF),
    "truncated_response": seed("api", req("GET", "/t", host=A),
                               resp(200, "OK", [("Content-Length", "10")], b"abc"),
                               flags=UPSTREAM_EOF),
    "host_naming_another_host": seed("api", req("GET", "/x", host="evil.example")),
    "host_with_another_port": seed("api", req("GET", "/x", host="api.example.com:8443")),
    "hop_by_hop_fields": seed("api", req(
        "GET", "/x", [("Connection", "keep-alive, X-Hop"), ("X-Hop", "1"), ("Keep-Alive", "5"),
                      ("Proxy-Authorization", "Basic eA=="), ("TE", "trailers"),
                      ("Upgrade", "h2c")], host=A),
        resp(200, "OK", [("Connection", "X-Gone"), ("X-Gone", "1"),
                         ("Proxy-Authenticate", "Basic"), ("Content-Length", "2")], b"ok")),
    "pipelined": seed("api", req("GET", "/1", host=A) + req("POST", "/2", [("Content-Length", "1")],
                                                            b"z", host=A) +
                      req("GET", "/3", host=A), ok() + ok(b"two") + ok(b""), uchunk=0x8a),
    "http10_client": seed("api", b"GET /o HTTP/1.0\r\nHost: api.example.com\r\n\r\n",
                          resp(100, "Continue") + resp(200, "OK", [("Transfer-Encoding", "chunked")],
                                                       b"2\r\nhi\r\n0\r\n\r\n")),
    "paths": seed("api", req("GET", "/a/../b", host=A) + req("GET", "/a/%2e%2e/c", host=A) +
                  req("GET", "//x//y;p=1?z=%2e", host=A) + req("OPTIONS", "*", host=A),
                  ok() + ok() + ok() + ok(), uchunk=0x9f),
    "path_climbing": seed("api", req("GET", "/%2e%2e/x", host=A)),
    "early_response": seed("api", req("POST", "/big", [("Content-Length", "10")], b"abc", host=A),
                           resp(413, "Payload Too Large", [("Content-Length", "0")])),
    "draining": seed("api", req("GET", "/d", host=A), ok(), flags=DRAINING),
    # ----- test_upgrade.py
    "websocket_upgrade": seed("api", ws(A) + b"\x81\x02up", WS_101 + b"\x81\x02hi",
                              cchunk=0x90),
    "websocket_unsolicited_101": seed("api", req("GET", "/x", host=A), WS_101),
    "websocket_wrong_accept": seed("api", ws(A), resp(
        101, "Switching Protocols", [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                     ("Sec-WebSocket-Accept", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")])),
    "websocket_refused_keeps_http": seed("api", ws(A) + req("GET", "/next", host=A),
                                         ok(b"no") + ok(), uchunk=0x8c, flags=CLIENT_FIRST),
    "websocket_by_rule": seed("rules", ws("rules.example.com") + b"\x81\x00",
                              WS_101, cchunk=0x83),
    # ----- policy
    "read_only_denies": seed("ro", req("DELETE", "/repos/o/r", host=R)),
    "deny_rule": seed("ro", req("GET", "/admin/x", host=R)),
    "rule_allows_post": seed("ro", req("POST", "/repos/o/r/issues", [("Content-Length", "2")],
                                       b"{}", host=R), ok()),
    "audit_forwards": seed("audit", req("DELETE", "/x", host="audit.example.com"),
                           resp(204, "No Content")),
    "method_override": seed("ro", req("GET", "/x", [("X-HTTP-Method-Override", "DELETE")],
                                      host=R)),
    "method_override_query": seed("ro", req("GET", "/x?_method=delete", host=R)),
    "plain_tunnel": seed("api", req("GET", "/p", host=A) + req("GET", "/q?k=" + PH, host=A),
                         ok(), flags=CREDS, rng=0xf3),
    # ----- credentials
    "placeholder_substituted": seed("api", req(
        "GET", "/bot%s/send?key=%s" % (PH, PH), [("X-Api-Key", PH),
                                                 ("Authorization", "Bearer " + PH)], host=A),
        ok(), flags=CREDS),
    "placeholder_echoed": seed("api", req("GET", "/e", [("X-Api-Key", PH)], host=A), resp(
        200, "OK " + SECRET, [("X-Echo", SECRET), ("Content-Length", str(len(ECHO)))], ECHO),
        flags=CREDS, uchunk=0x88),
    "placeholder_to_another_host": seed("ro", req("GET", "/x", [("X-Key", PH)], host=R),
                                        flags=CREDS),
    "injected_header": seed("ro", req("GET", "/i", [("Authorization", "Bearer mine")], host=R),
                            ok(), flags=CREDS),
    "compressed_echo": seed("api", req("GET", "/z", [("X-Api-Key", PH)], host=A), resp(
        200, "OK", [("Content-Encoding", "gzip"), ("Content-Length", "2")], b"zz"),
        flags=CREDS),
    # ----- findings of fuzz_relay itself (test_relay.c's test_finding_*)
    "finding_secret_echoed_in_a_field_name": seed("api", req("GET", "/n", [("X-Api-Key", PH)],
                                                             host=A),
                                                  resp(200, "OK", [("X-" + SECRET, "1"),
                                                                   ("Content-Length", "0")]),
                                                  flags=CREDS),
    "finding_gzip_to_an_http10_client": seed("api", b"GET /o HTTP/1.0\r\nHost: api.example.com\r\n\r\n",
                                             resp(200, "OK", [("Transfer-Encoding", "gzip, chunked")],
                                                  b"2\r\n\x1f\x8b\r\n0\r\n\r\n")),
    # ----- test_forward.py
    "forward_two_origins": seed(None, req(
        "GET", "http://example.com/a", [("Proxy-Connection", "keep-alive")], host="example.com") +
        req("GET", "http://example.com:80/b", host="example.com") +
        req("GET", "http://other.example.com/c", host="other.example.com"),
        ok() + ok() + ok(), uchunk=0x9f),
    "forward_post": seed(None, req("POST", "http://example.com/p", [("Content-Length", "5")],
                                   b"hello", host="example.com"), ok()),
    "forward_denied": seed(None, req("DELETE", "http://other.example.com/x",
                                     host="other.example.com")),
    "forward_placeholder": seed(None, req("GET", "http://example.com/x?k=" + PH,
                                          host="example.com"), flags=CREDS),
    "forward_https": seed(None, req("GET", "https://api.example.com/x", [("X-Api-Key", PH)],
                                    host="api.example.com") +
                          req("GET", "http://api.example.com/y", host="api.example.com"),
                          resp(200, "OK " + SECRET, [("Content-Length", "2")], b"ok"),
                          flags=CREDS),
    "forward_connect": seed(None, b"CONNECT api.example.com:443 HTTP/1.1\r\n"
                            b"Host: api.example.com:443\r\n\r\n" + req("GET", "/x", host=A), ok()),
    "client_closes_mid_request": seed("api", req("POST", "/x", [("Content-Length", "9")], b"abc",
                                                 host=A), flags=CLIENT_EOF),
}


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "relay")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print("%d seeds in %s" % (len(SEEDS), out))


if __name__ == "__main__":
    main()
