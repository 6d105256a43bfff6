# SPDX-License-Identifier: MIT
"""Credential injection through the binary (`--providers`): placeholder substitution in header
values, Bearer and Basic credentials, query values and path segments, header injection,
endpoint binding, redaction towards the policy and the client, and the secret canary: a random
secret per run that must never reach the client, airlock's output or its log. Also `airlock
check --providers` and `airlock env --providers`."""

import base64
import gzip
import json
import os
import re
import secrets
import time
import urllib.parse

from harness import LOOPBACK4, Skip, build_request, build_response, check, check_eq, read_response
from support import (check_deny, connect_raw, echo_authorization_handler, forward_recorded_client,
                     loopback_ep, open_recorded_tunnel, policy_doc, providers_doc,
                     recording_handler, run_cli, start_airlock, tcp_echo_server, wait_log,
                     write_json)

PLACEHOLDER = "AIRLOCK_PLACEHOLDER_TEST_0123456789"
SECRET_ENV = "AIRLOCK_E2E_CANARY_SECRET"
# One random canary per run; only unreserved characters, so it looks the same percent-encoded.
SECRET = "airlockcanary" + secrets.token_hex(16)
# A canary that needs percent-encoding in a query ('&' and '+' would change its meaning).
SPECIAL_SECRET = "airlockcanary-" + secrets.token_hex(8) + "&x+y"
SECOND_PLACEHOLDER = "AIRLOCK_PLACEHOLDER_SECOND_9876543210"
SECOND_SECRET = "airlocksecond" + secrets.token_hex(16)


# An echo canary that JSON escapes ("\/") and percent-encoding ('/' and '+') both change.
ECHO_SECRET = "airlockcanary/" + secrets.token_hex(12) + "+z"


def _pct_lower(s):
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), urllib.parse.quote(s, safe=""))


def _json_mixed(s):
    """What a JSON encoder that escapes '/' and writes some characters as \\u00XX (either
    case) makes of s."""
    out = []
    for i, ch in enumerate(s):
        if ch == "/":
            out.append("\\/")
        elif i % 4 == 1:
            out.append("\\u%04x" % ord(ch))
        elif i % 4 == 2:
            out.append("\\u%04X" % ord(ch))
        else:
            out.append(ch)
    return "".join(out)


def _leak_forms(secret):
    """The shapes in which a leaked secret could show up."""
    basic = ("user:" + secret).encode()
    return {secret, urllib.parse.quote(secret, safe=""), _pct_lower(secret),
            secret.replace("/", "\\/"), _json_mixed(secret),
            base64.b64encode(basic).decode(),
            base64.urlsafe_b64encode(basic).decode().rstrip("=")}


class Setup:
    """One provider ("test", bound to the first upstream) and airlock with a policy allowing
    every upstream. `log` collects every byte any client of this setup received."""

    def __init__(self, env, secret=SECRET, access="full", inject=None, handler=recording_handler,
                 others=0, forward_others=False, source="env", args=(), second_provider=False,
                 provider_extra=None):
        self.env = env
        self.secret = secret
        self.log = bytearray()
        self.up = env.upstream(handler)
        self.others = [env.upstream(recording_handler, tls=not forward_others)
                       for _ in range(others)]
        eps = [loopback_ep(LOOPBACK4, self.up.port, access=access)]
        eps += [loopback_ep(LOOPBACK4, o.port, access="full") for o in self.others]
        extra_env = {}
        if source == "env":
            src = {"env": SECRET_ENV}
            extra_env[SECRET_ENV] = secret
        else:
            path = env.path("secret.txt")
            with open(path, "w") as f:
                f.write(secret + "\n")
            os.chmod(path, 0o600)
            src = {"file": path}
        prov = {"placeholder": PLACEHOLDER, "secret": src,
                "endpoints": [{"host": LOOPBACK4, "port": self.up.port}]}
        if inject is not None:
            prov["inject"] = inject
        prov.update(provider_extra or {})
        provs = {"test": prov}
        self.secrets = [secret]
        if second_provider:
            # The first other upstream belongs to a second provider with its own secret.
            provs["second"] = {"placeholder": SECOND_PLACEHOLDER,
                               "secret": {"env": SECRET_ENV + "_2"},
                               "endpoints": [{"host": LOOPBACK4, "port": self.others[0].port}]}
            extra_env[SECRET_ENV + "_2"] = SECOND_SECRET
            self.secrets.append(SECOND_SECRET)
        self.al = start_airlock(env, policy_doc({"apis": eps}), providers=providers_doc(provs),
                                extra_env=extra_env, args=args)

    def tunnel(self, up=None):
        return open_recorded_tunnel(self.al, LOOPBACK4, (up or self.up).port, self.log)

    def upstream_request(self, up=None):
        up = up or self.up
        check_eq(len(up.requests), 1, "requests that reached the upstream")
        return up.requests[0]

    def finish(self):
        """The canary (see no_secret_anywhere)."""
        no_secret_anywhere(self.al, self.log, self.secrets)


def no_secret_anywhere(al, received, secret_list):
    """The canary: no secret is in what the clients received, nor (after a clean stop, which
    flushes the log) in airlock's stdout, stderr or log file."""
    al.stop()
    places = [("what the client received", bytes(received).decode("latin-1")),
              ("airlock's stdout/stderr", al.stderr_text()),
              ("airlock's log file", al.log_text())]
    for secret in secret_list:
        for what, text in places:
            for form in _leak_forms(secret):
                check(form not in text, "a secret (%s) appears in %s" % (
                    "as is" if form == secret else "encoded", what))


def _get(c, target, headers=()):
    r = c.request("GET", target, list(headers))
    check_eq(r.status, 200, "status of GET %s (body %r)" % (target, r.body[:300]))
    return r


# ----- substitution ----------------------------------------------------------------------------

def test_placeholder_as_whole_header_value_becomes_secret(env):
    s = Setup(env)
    _get(s.tunnel(), "/h", [("X-Api-Key", PLACEHOLDER)])
    check_eq(s.upstream_request().headers.get("x-api-key"), SECRET, "X-Api-Key upstream")
    s.finish()


def test_bearer_placeholder_becomes_bearer_secret(env):
    s = Setup(env)
    _get(s.tunnel(), "/bearer", [("Authorization", "Bearer " + PLACEHOLDER)])
    check_eq(s.upstream_request().headers.get("authorization"), "Bearer " + SECRET,
             "Authorization upstream")
    s.finish()


def test_basic_credential_placeholder_is_substituted_inside_base64(env):
    s = Setup(env)
    cred = base64.b64encode(("user:" + PLACEHOLDER).encode()).decode()
    _get(s.tunnel(), "/basic", [("Authorization", "Basic " + cred)])
    got = s.upstream_request().headers.get("authorization", "")
    check(got.startswith("Basic "), "Authorization upstream is not Basic: %r" % got[:20])
    try:
        decoded = base64.b64decode(got[len("Basic "):], validate=True).decode()
    except ValueError as e:
        raise AssertionError("Authorization upstream is not valid base64 (%s)" % e)
    check(decoded == "user:" + SECRET,
          "Basic credential upstream does not decode to user:<secret> (it has %d chars)" %
          len(decoded))
    s.finish()


def test_query_value_placeholder_becomes_secret(env):
    s = Setup(env)
    _get(s.tunnel(), "/search?key=%s&q=1" % PLACEHOLDER)
    check_eq(s.upstream_request().target, "/search?key=%s&q=1" % SECRET, "target upstream")
    s.finish()


def test_query_value_secret_with_reserved_characters_is_percent_encoded(env):
    s = Setup(env, secret=SPECIAL_SECRET)
    _get(s.tunnel(), "/search?key=%s&q=1" % PLACEHOLDER)
    target = s.upstream_request().target
    path, _, query = target.partition("?")
    check_eq(path, "/search", "path upstream")
    params = query.split("&")
    check_eq(len(params), 2, "query parameters upstream (a raw '&' splits the secret)")
    name, _, value = params[0].partition("=")
    check_eq(name, "key", "first parameter name upstream")
    check("+" not in value and "&" not in value,
          "the secret's '+' or '&' reached the upstream query unencoded")
    check(urllib.parse.unquote(value) == SPECIAL_SECRET,
          "the key parameter upstream does not percent-decode to the secret")
    check_eq(params[1], "q=1", "second parameter upstream")
    s.finish()


def test_path_segment_placeholder_becomes_secret(env):
    s = Setup(env)
    _get(s.tunnel(), "/bot%s/sendMessage" % PLACEHOLDER)
    check_eq(s.upstream_request().target, "/bot%s/sendMessage" % SECRET, "target upstream")
    s.finish()


def test_percent_encoded_placeholder_in_query_is_substituted(env):
    s = Setup(env)
    encoded = "%41" + PLACEHOLDER[1:]
    _get(s.tunnel(), "/search?key=" + encoded)
    check_eq(s.upstream_request().target, "/search?key=" + SECRET, "target upstream")
    s.finish()


def test_secret_from_file_is_substituted(env):
    s = Setup(env, source="file")
    _get(s.tunnel(), "/file", [("X-Api-Key", PLACEHOLDER)])
    check_eq(s.upstream_request().headers.get("x-api-key"), SECRET,
             "X-Api-Key upstream (secret file with a trailing newline)")
    s.finish()


# ----- inject ----------------------------------------------------------------------------------

INJECT = {"header": "Authorization", "format": "Bearer {secret}"}


def test_inject_sets_header_when_client_sent_none(env):
    s = Setup(env, inject=INJECT)
    _get(s.tunnel(), "/inject")
    check_eq(s.upstream_request().headers.get_all("authorization"), ["Bearer " + SECRET],
             "Authorization fields upstream")
    s.finish()


def test_inject_replaces_client_header(env):
    s = Setup(env, inject=INJECT)
    _get(s.tunnel(), "/inject", [("Authorization", "xyz")])
    check_eq(s.upstream_request().headers.get_all("authorization"), ["Bearer " + SECRET],
             "Authorization fields upstream")
    s.finish()


# ----- binding and redaction -------------------------------------------------------------------

def _finding(line):
    return line.get("class_uid") == 2004 or "credential" in json.dumps(line).lower()


def test_placeholder_to_unnamed_endpoint_gets_403_and_nothing_forwarded(env):
    s = Setup(env, others=1)
    other = s.others[0]
    c = s.tunnel(other)
    c.send_request("GET", "/leak", [("X-Api-Key", PLACEHOLDER)])
    j = check_deny(read_response(c.reader), "credential_endpoint_mismatch")
    check(PLACEHOLDER not in json.dumps(j), "the placeholder appears in the deny body")
    closed, _ = c.wait_closed(5)
    check(closed, "tunnel still open after credential_endpoint_mismatch")
    check_eq(len(other.requests), 0, "requests that reached the unnamed upstream")
    check_eq(len(s.up.requests), 0, "requests that reached the provider's upstream")
    check(wait_log(s.al, _finding), "no finding logged for the mismatch:\n" +
          s.al.log_text()[-3000:])
    s.finish()


def test_placeholder_to_another_providers_endpoint_gets_403(env):
    s = Setup(env, others=1, second_provider=True)
    other = s.others[0]
    c = s.tunnel(other)
    c.send_request("GET", "/cross", [("Authorization", "Bearer " + PLACEHOLDER)])
    check_deny(read_response(c.reader), "credential_endpoint_mismatch")
    check_eq(len(other.requests), 0, "requests that reached the other provider's upstream")
    s.finish()


def test_placeholder_via_forward_proxy_gets_403(env):
    s = Setup(env, others=1, forward_others=True)
    plain = s.others[0]
    c = forward_recorded_client(s.al, s.log)
    auth = "%s:%d" % (LOOPBACK4, plain.port)
    c.send(build_request("GET", "http://%s/fwd?key=%s" % (auth, PLACEHOLDER), [("Host", auth)]))
    j = check_deny(read_response(c.reader), "credential_endpoint_mismatch")
    check(PLACEHOLDER not in json.dumps(j), "the placeholder appears in the deny body")
    check_eq(len(plain.requests), 0, "requests that reached the plain upstream")
    s.finish()


# ----- forward proxy with https:// targets: credentials on the TLS hop only ---------------------

def _forward_https(s, up=None):
    """A plain connection to airlock whose absolute-form https:// requests go to up (default the
    provider's upstream); returns (client, authority)."""
    return forward_recorded_client(s.al, s.log), "%s:%d" % (LOOPBACK4, (up or s.up).port)


def _forward_get(c, url, headers=()):
    c.send(build_request("GET", url, [("Host", url.split("/")[2])] + list(headers)))
    return read_response(c.reader)


def test_placeholder_via_forward_https_is_substituted_on_the_tls_hop(env):
    s = Setup(env)
    c, auth = _forward_https(s)
    r = _forward_get(c, "https://%s/search?key=%s" % (auth, PLACEHOLDER),
                     [("X-Api-Key", PLACEHOLDER)])
    check_eq(r.status, 200, "status (body %r)" % r.body[:300])
    req = s.upstream_request()
    check_eq(req.headers.get("x-api-key"), SECRET, "X-Api-Key upstream")
    check_eq(req.target, "/search?key=" + SECRET, "target upstream")
    check_eq(s.up.handshakes, 1, "TLS handshakes at the provider's upstream")
    s.finish()


def test_inject_via_forward_https_sets_header_on_the_tls_hop(env):
    s = Setup(env, inject=INJECT)
    c, auth = _forward_https(s)
    check_eq(_forward_get(c, "https://%s/inject" % auth).status, 200, "status")
    check_eq(s.upstream_request().headers.get_all("authorization"), ["Bearer " + SECRET],
             "Authorization fields upstream")
    s.finish()


def test_placeholder_via_forward_https_to_unnamed_host_gets_403(env):
    s = Setup(env, others=1)
    other = s.others[0]
    c, auth = _forward_https(s, other)
    j = check_deny(_forward_get(c, "https://%s/leak" % auth, [("X-Api-Key", PLACEHOLDER)]),
                   "credential_endpoint_mismatch")
    check("does not name" in j.get("detail", ""), "detail: %r" % j.get("detail"))
    check(PLACEHOLDER not in json.dumps(j), "the placeholder appears in the deny body")
    check_eq(len(other.requests), 0, "requests that reached the unnamed upstream")
    check(wait_log(s.al, _finding), "no finding logged for the mismatch")
    s.finish()


def test_placeholder_via_forward_http_after_https_to_the_same_port_gets_403(env):
    """The scheme, not the host and port, decides: after an https:// request to the provider's
    own host and port, an http:// one to the same authority travels in clear text and must not
    get the secret (nor reuse the TLS upstream)."""
    s = Setup(env)
    c, auth = _forward_https(s)
    check_eq(_forward_get(c, "https://%s/tls" % auth, [("X-Api-Key", PLACEHOLDER)]).status, 200,
             "status over https://")
    j = check_deny(_forward_get(c, "http://%s/plain" % auth, [("X-Api-Key", PLACEHOLDER)]),
                   "credential_endpoint_mismatch")
    check("plain HTTP" in j.get("detail", ""), "detail: %r" % j.get("detail"))
    check_eq([r.target for r in s.up.requests], ["/tls"], "requests at the provider's upstream")
    s.finish()


def test_secret_echoed_via_forward_https_reaches_client_as_placeholder(env):
    s = Setup(env, secret=ECHO_SECRET, handler=echo_secret_handler)
    c, auth = _forward_https(s)
    r = _forward_get(c, "https://%s/json" % auth, [("Authorization", "Bearer " + PLACEHOLDER)])
    check_eq(r.json(), {"echo": "Bearer " + PLACEHOLDER}, "JSON body")
    check_eq(r.framing, "chunked", "framing of a redacted Content-Length body")
    # An answer from the provider's host to a request without a secret is redacted too.
    r = _forward_get(c, "https://%s/json" % auth)
    check_eq(r.framing, "chunked", "framing of an answer from a provider's host")
    s.finish()


def test_policy_sees_credential_marker_in_path(env):
    s = Setup(env, access="read-only")
    c = s.tunnel()
    c.send_request("POST", "/bot%s/sendMessage?chat=%s" % (PLACEHOLDER, PLACEHOLDER), body=b"x")
    r = read_response(c.reader)
    j = check_deny(r, "policy_denied")
    check_eq(j.get("path"), "/bot[CREDENTIAL]/sendMessage", "path in the deny body")
    check(PLACEHOLDER not in r.body.decode("latin-1"), "the placeholder appears in the deny body")
    check_eq(len(s.up.requests), 0, "requests that reached the upstream")
    s.finish()


def test_secret_echoed_in_response_header_reaches_client_as_placeholder(env):
    s = Setup(env, handler=echo_authorization_handler)
    r = _get(s.tunnel(), "/reflect", [("Authorization", "Bearer " + PLACEHOLDER)])
    check_eq(s.upstream_request().headers.get("authorization"), "Bearer " + SECRET,
             "Authorization upstream")
    echo = r.headers.get("x-echo", "")
    check(SECRET not in echo, "the client received the secret in X-Echo")
    check_eq(echo, "Bearer " + PLACEHOLDER, "X-Echo as the client sees it")
    s.finish()


# ----- echoes in response bodies, reason phrases and trailers ----------------------------------

def echo_secret_handler(conn):
    """An upstream that hands the Authorization it received back in every way it can: a JSON
    body framed by Content-Length, a chunked body cut in the middle of the secret (in separate
    writes) with the secret in a trailer, percent-encoded and JSON-escaped forms, the reason
    phrase, and Base64 in Location and WWW-Authenticate."""
    while True:
        req = conn.read_request()
        if req is None:
            return
        auth = req.headers.get("authorization", "")
        secret = auth[len("Bearer "):] if auth.startswith("Bearer ") else auth
        path = req.target
        if path == "/json":
            body = json.dumps({"echo": auth}).encode()
            conn.sendall(build_response(200, "OK", [("Content-Type", "application/json"),
                                                    ("Content-Length", str(len(body)))], body))
        elif path == "/chunked":
            body = json.dumps({"echo": auth, "again": secret}).encode()
            at = body.index(secret.encode())
            cuts = [0, at + len(secret) // 2, at + len(secret) // 2 + 3, len(body)]
            conn.sendall(build_response(200, "OK", [("Content-Type", "application/json"),
                                                    ("Transfer-Encoding", "chunked"),
                                                    ("Trailer", "X-Echo")]))
            for a, b in zip(cuts, cuts[1:]):
                conn.sendall(b"%x\r\n" % (b - a) + body[a:b] + b"\r\n")
                time.sleep(0.05)  # separate reads on airlock's side
            conn.sendall(("0\r\nX-Echo: %s\r\n\r\n" % auth).encode())
        elif path == "/encoded":
            body = json.dumps({"pct": urllib.parse.quote(secret, safe=""),
                               "pct_lower": _pct_lower(secret)}).encode()
            body = body[:-1] + (', "json": "%s", "slash": "%s"}' % (
                _json_mixed(secret), secret.replace("/", "\\/"))).encode()
            conn.sendall(build_response(200, "OK", [("Content-Length", str(len(body)))], body))
        elif path == "/reason":
            conn.sendall(build_response(401, "Bad token " + secret, [("Content-Length", "0")]))
        elif path == "/base64":
            basic = ("user:" + secret).encode()
            state = base64.urlsafe_b64encode(basic).decode().rstrip("=")
            conn.sendall(build_response(302, "Found", [
                ("Location", "https://example.invalid/cb?state=%s&x=1" % state),
                ("WWW-Authenticate", 'Basic realm="x", error="%s"' %
                 base64.b64encode(basic).decode()),
                ("Content-Length", "0")]))
        elif path == "/gzip":
            body = gzip.compress(json.dumps({"echo": auth}).encode())
            conn.sendall(build_response(200, "OK", [("Content-Encoding", "gzip"),
                                                    ("Content-Length", str(len(body)))], body))
        else:
            conn.sendall(build_response(404, "Not Found", [("Content-Length", "0")]))


def test_secret_echoed_in_bodies_reason_and_trailers_reaches_client_as_placeholder(env):
    s = Setup(env, secret=ECHO_SECRET, handler=echo_secret_handler)
    c = s.tunnel()
    auth = [("Authorization", "Bearer " + PLACEHOLDER)]
    r = _get(c, "/json", auth)
    check_eq(r.json(), {"echo": "Bearer " + PLACEHOLDER}, "JSON body")
    # The lengths differ, so the Content-Length body is re-framed chunked.
    check(not r.headers.has("content-length"), "Content-Length kept: %r" % r.raw_head)
    check_eq(r.framing, "chunked", "framing of a redacted Content-Length body")

    r = _get(c, "/chunked", auth)
    check_eq(r.json(), {"echo": "Bearer " + PLACEHOLDER, "again": PLACEHOLDER}, "chunked body")
    check_eq(r.trailers.get("x-echo"), "Bearer " + PLACEHOLDER, "trailer")

    r = _get(c, "/encoded", auth)
    check_eq(json.loads(r.body.decode().replace("\\/", "/")),
             {"pct": PLACEHOLDER, "pct_lower": PLACEHOLDER, "json": PLACEHOLDER,
              "slash": PLACEHOLDER}, "encoded forms in the body")

    c.send_request("GET", "/reason", auth)
    r = read_response(c.reader)
    check_eq((r.status, r.reason), (401, "Bad token " + PLACEHOLDER), "status line")

    c.send_request("GET", "/base64", auth)
    r = read_response(c.reader)
    check_eq(r.status, 302, "status")
    loc = r.headers.get("location", "")
    state = loc.partition("state=")[2].partition("&")[0]
    check_eq(base64.urlsafe_b64decode(state + "=" * (-len(state) % 4)).decode(),
             "user:" + PLACEHOLDER, "Location state, decoded")
    www = r.headers.get("www-authenticate", "")
    b64 = www.partition('error="')[2].rstrip('"')
    check_eq(base64.b64decode(b64).decode(), "user:" + PLACEHOLDER,
             "WWW-Authenticate error, decoded")

    # Every answer from a provider's host is redacted (it may hand back what it stored from
    # an earlier request), so even one to a request without a secret is re-framed.
    r = _get(s.tunnel(), "/json")
    check_eq(r.framing, "chunked", "framing of an answer from a provider's host")
    check_eq(len(s.up.requests), 6, "requests that reached the upstream")
    s.finish()


def test_secret_echoed_to_http10_client_is_redacted_close_delimited(env):
    s = Setup(env, secret=ECHO_SECRET, handler=echo_secret_handler)
    c = s.tunnel()
    c.send(("GET /json HTTP/1.0\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n" %
            (c.host, PLACEHOLDER)).encode())
    r = read_response(c.reader)
    check(not r.headers.has("content-length"), "Content-Length kept: %r" % r.raw_head)
    check_eq(r.framing, "close", "framing towards an HTTP/1.0 client")
    check_eq(r.json(), {"echo": "Bearer " + PLACEHOLDER}, "JSON body")
    s.finish()


def test_secret_exchange_asks_identity_and_refuses_encoded_answer(env):
    s = Setup(env, secret=ECHO_SECRET, handler=echo_secret_handler)
    c = s.tunnel()
    c.send_request("GET", "/gzip", [("Authorization", "Bearer " + PLACEHOLDER),
                                    ("Accept-Encoding", "gzip, br")])
    r = read_response(c.reader)
    check_eq((r.status, r.json().get("error")), (502, "unredactable_response"), "answer")
    check_eq(s.upstream_request().headers.get_all("accept-encoding"), ["identity"],
             "Accept-Encoding upstream")
    check(wait_log(s.al, lambda l: l.get("class_uid") == 2004),
          "no finding logged:\n" + s.al.log_text()[-3000:])
    # A provider's host may return what it stored from an earlier request: even without a
    # secret on this request, its answers are redacted, so they too must come unencoded.
    c = s.tunnel()
    c.send_request("GET", "/gzip", [("Accept-Encoding", "gzip")])
    r = read_response(c.reader)
    check_eq(r.status, 502, "status of an encoded answer from a provider's host")
    check_eq(s.up.requests[1].headers.get_all("accept-encoding"), ["identity"],
             "Accept-Encoding upstream without a secret")
    s.finish()


# ----- substitute_in ---------------------------------------------------------------------------

def test_substitute_in_refuses_placeholder_elsewhere(env):
    s = Setup(env, provider_extra={"substitute_in": ["header:Authorization", "query:api_key"]})
    _get(s.tunnel(), "/ok?api_key=%s&q=1" % PLACEHOLDER,
         [("Authorization", "Bearer " + PLACEHOLDER)])
    got = s.upstream_request()
    check_eq(got.target, "/ok?api_key=%s&q=1" % SECRET, "target upstream")
    check_eq(got.headers.get("authorization"), "Bearer " + SECRET, "Authorization upstream")
    for target, headers in [("/x", [("X-Api-Key", PLACEHOLDER)]),
                            ("/bot%s/send" % PLACEHOLDER, []),
                            ("/x?other=%s" % PLACEHOLDER, []),
                            ("/x?api_key=%s" % PLACEHOLDER, [("X-Other", PLACEHOLDER)])]:
        c = s.tunnel()
        c.send_request("GET", target, headers)
        j = check_deny(read_response(c.reader), "credential_location_refused")
        check(PLACEHOLDER not in json.dumps(j), "the placeholder appears in the deny body")
        closed, _ = c.wait_closed(5)
        check(closed, "tunnel still open after credential_location_refused")
    check_eq(len(s.up.requests), 1, "requests that reached the upstream")
    check(wait_log(s.al, lambda l: l.get("class_uid") == 2004 and l.get("severity_id") == 4),
          "no high-severity finding logged:\n" + s.al.log_text()[-3000:])
    s.finish()


# ----- the process environment -----------------------------------------------------------------

def test_env_secret_is_scrubbed_from_proc_environ(env):
    s = Setup(env)
    pid = s.al.proc.pid
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            environ = f.read()
    except PermissionError:
        raise Skip("/proc/%d/environ is not readable by this user" % pid)
    check(SECRET_ENV.encode() + b"=" + SECRET.encode() not in environ,
          "the secret's variable is still in /proc/PID/environ")
    check(SECRET.encode() not in environ, "the secret is in /proc/PID/environ")
    # The captured value still works.
    _get(s.tunnel(), "/h", [("X-Api-Key", PLACEHOLDER)])
    check_eq(s.upstream_request().headers.get("x-api-key"), SECRET, "X-Api-Key upstream")
    s.finish()


def test_secret_absent_from_text_log_and_output(env):
    # Every path a credential takes, with the human log format at its most verbose.
    s = Setup(env, others=1, args=["--log-format", "text", "--log-level", "debug"])
    c = s.tunnel()
    cred = base64.b64encode(("user:" + PLACEHOLDER).encode()).decode()
    _get(c, "/bot%s/send?key=%s" % (PLACEHOLDER, PLACEHOLDER),
         [("X-Api-Key", PLACEHOLDER), ("Authorization", "Basic " + cred)])
    _get(c, "/again", [("Authorization", "Bearer " + PLACEHOLDER)])
    check_eq(len(s.up.requests), 2, "requests that reached the upstream")
    check(SECRET in s.up.requests[1].headers.get("authorization", ""),
          "the secret did not reach the upstream")
    c = s.tunnel(s.others[0])
    c.send_request("GET", "/leak?key=" + PLACEHOLDER)
    check_deny(read_response(c.reader), "credential_endpoint_mismatch")
    s.finish()
    check(s.al.log_text().strip(), "the text log is empty")


def test_tcp_endpoint_with_provider_gets_403_uninspected_credentials(env):
    srv = tcp_echo_server(env)
    pol = policy_doc({"raw": [loopback_ep(LOOPBACK4, srv.port, protocol="tcp")]})
    prov = providers_doc({"test": {"placeholder": PLACEHOLDER, "secret": {"env": SECRET_ENV},
                                   "endpoints": [{"host": LOOPBACK4, "port": srv.port}]}})
    al = start_airlock(env, pol, providers=prov, extra_env={SECRET_ENV: SECRET})
    log = bytearray()
    resp, sock, _ = connect_raw(al, LOOPBACK4, srv.port, log)
    check_deny(resp, "uninspected_credentials")
    check_eq(srv.accepts, 0, "connections made to the tcp upstream")
    no_secret_anywhere(al, log, [SECRET])


# ----- airlock check / airlock env -------------------------------------------------------------

def _cli_files(env, provider):
    pol = write_json(env.path("cli-policy.json"), policy_doc({"gh": [
        {"host": "api.github.com", "port": 443, "access": "read-only"}]}))
    prov = write_json(env.path("cli-providers.json"), providers_doc({"github": provider}))
    return pol, prov


def _provider(**over):
    p = {"placeholder": PLACEHOLDER, "secret": {"env": SECRET_ENV},
         "endpoints": [{"host": "api.github.com", "port": 443}],
         "inject": {"header": "Authorization", "format": "Bearer {secret}"}}
    p.update(over)
    return p


def _check_cli(env, provider, extra_env):
    pol, prov = _cli_files(env, provider)
    base = dict((k, v) for k, v in os.environ.items() if k != SECRET_ENV)
    return run_cli(env, ["check", "--policy", pol, "--providers", prov], extra_env=extra_env,
                   base_env=base)


def _check_fails_naming(env, provider, extra_env, want):
    rc, out, _ = _check_cli(env, provider, extra_env)
    check_eq(rc, 1, "exit code of check (output %r)" % out.replace(SECRET, "<SECRET>"))
    check(SECRET not in out, "check printed the secret")
    check(want in out, "check output does not name %s: %r" % (want, out))


def test_check_valid_providers_exits_0_without_printing_secret(env):
    rc, out, _ = _check_cli(env, _provider(), {SECRET_ENV: SECRET})
    check_eq(rc, 0, "exit code of check (output %r)" % out.replace(SECRET, "<SECRET>"))
    check(SECRET not in out, "check printed the secret")


def test_check_missing_secret_env_names_json_path(env):
    _check_fails_naming(env, _provider(), {}, "providers.github.")


def test_check_short_placeholder_names_json_path(env):
    _check_fails_naming(env, _provider(placeholder="AIRLOCK_SHORT"), {SECRET_ENV: SECRET},
                        "providers.github.placeholder")


def test_check_wildcard_host_names_json_path(env):
    _check_fails_naming(env, _provider(endpoints=[{"host": "*.github.com", "port": 443}]),
                        {SECRET_ENV: SECRET}, "providers.github.endpoints[0].host")


def test_env_prints_placeholder_never_secret(env):
    ca = env.path("env-ca")
    rc, out, _ = run_cli(env, ["ca", "init", "--dir", ca])
    check_eq(rc, 0, "exit code of ca init (output %r)" % out)
    _, prov = _cli_files(env, _provider())
    rc, out, _ = run_cli(env, ["env", "--ca-dir", ca, "--providers", prov],
                         extra_env={SECRET_ENV: SECRET})
    check_eq(rc, 0, "exit code of env (output %r)" % out.replace(SECRET, "<SECRET>"))
    check(SECRET not in out, "env printed the secret")
    want = re.compile(r"^(export )?%s='?%s'?$" % (SECRET_ENV, PLACEHOLDER), re.M)
    check(want.search(out), "no line %s=%s in env output: %r" % (SECRET_ENV, PLACEHOLDER, out))


def remembering_echo_handler(conn):
    """An upstream that remembers the last Authorization it saw on the connection and hands it
    back on /later, to a request that carries none (an API that reflects an earlier call)."""
    last = ""
    while True:
        req = conn.read_request()
        if req is None:
            return
        last = req.headers.get("authorization", last)
        body = json.dumps({"remembered": last}).encode()
        conn.sendall(build_response(200, "Seen " + last, [
            ("X-Remembered", last), ("Content-Length", str(len(body)))], body))


def test_secret_echoed_to_a_later_request_without_one_is_redacted(env):
    """A hostile review: redaction covered only the exchange that carried the secret; any
    later response on the same connection could hand it to the agent."""
    s = Setup(env, secret=ECHO_SECRET, handler=remembering_echo_handler)
    c = s.tunnel()
    _get(c, "/first", [("Authorization", "Bearer " + PLACEHOLDER)])
    r = _get(c, "/later")
    seen = r.raw_head.decode("latin-1") + r.body.decode("latin-1")
    check(ECHO_SECRET not in seen, "a later response handed the secret to the client")
    check_eq(r.json(), {"remembered": "Bearer " + PLACEHOLDER}, "the later body")
    check_eq(r.headers.get("x-remembered"), "Bearer " + PLACEHOLDER, "the later header")
    s.finish()


def stored_echo_handler(conn):
    """An upstream that stores X-Store values across connections and hands them back on
    /fetch: the secret comes back on a connection that never carried it."""
    while True:
        req = conn.read_request()
        if req is None:
            return
        if req.headers.get("x-store"):
            conn.upstream.stored = req.headers.get("x-store")
        body = json.dumps({"stored": getattr(conn.upstream, "stored", "")}).encode()
        conn.sendall(build_response(200, "OK", [("Content-Length", str(len(body)))], body))


def test_secret_stored_then_fetched_on_another_connection_is_redacted(env):
    """A hostile review: only exchanges that carried a secret were scanned, so a secret the
    provider stored came back in clear on a later request or connection."""
    s = Setup(env, secret=ECHO_SECRET, handler=stored_echo_handler)
    _get(s.tunnel(), "/store", [("X-Store", PLACEHOLDER)])
    r = _get(s.tunnel(), "/fetch")
    check(ECHO_SECRET not in r.body.decode("latin-1"), "the stored secret reached the client")
    check_eq(r.json(), {"stored": PLACEHOLDER}, "the fetched body")
    s.finish()


def ranged_echo_handler(conn):
    """An upstream that reflects the Authorization it saw and honours Range on it."""
    while True:
        req = conn.read_request()
        if req is None:
            return
        body = req.headers.get("authorization", "").encode()
        rng = req.headers.get("range", "")
        if rng.startswith("bytes="):
            a, _, b = rng[len("bytes="):].partition("-")
            part = body[int(a):int(b) + 1]
            conn.sendall(build_response(206, "Partial Content", [
                ("Content-Range", "bytes %s-%s/%d" % (a, b, len(body))),
                ("Content-Length", str(len(part)))], part))
        else:
            conn.sendall(build_response(200, "OK", [("Content-Length", str(len(body)))], body))


def test_range_requests_cannot_fetch_a_secret_in_pieces(env):
    """A hostile review: two ranged GETs returned the two halves of an echoed secret, which
    the redactor, looking for whole secrets, let through."""
    s = Setup(env, secret=ECHO_SECRET, handler=ranged_echo_handler)
    c = s.tunnel()
    got = b""
    for rng in ("bytes=0-15", "bytes=16-200"):
        r = _get(c, "/reflect", [("Authorization", "Bearer " + PLACEHOLDER), ("Range", rng)])
        got += r.body
    check(ECHO_SECRET[:12].encode() not in got and ECHO_SECRET[12:].encode() not in got,
          "parts of the secret reached the client: %r" % got)
    check_eq(s.up.requests[0].headers.get("range"), None, "Range upstream")
    s.finish()
