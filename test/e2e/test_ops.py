# SPDX-License-Identifier: MIT
"""Operations: the OCSF JSON log lines of each kind and their fields, the text log format, the
query string kept out of both, SIGUSR1 reopening the log after a rename, the SIGTERM drain (an
in-flight download completes, new connections are refused, exit 0), `airlock env` sourced in a
shell, `airlock run` refusing a bad policy, an unreadable CA or a CA key others can read, and
memory and descriptors given back after a burst of abandoned handshakes."""

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time

from harness import (LOOPBACK4, MIB, SANITIZER_MARKS, UPSTREAM_TIMEOUT, WS_TEXT, CertPair,
                     tunnel_answer,
                     Reader, Skip, WebSocketClient, build_response, check, check_eq, content_chunks,
                     content_sha256, endpoint, find_log, free_port, open_tunnel, read_response,
                     read_response_head, wait_until, write_policy, ws_upgrade_request)
from support import check_deny, loopback_ep, policy_doc, start_airlock, write_json

POLICY = "ops_policy"
QUERY_KEY = "opsq"
QUERY_VALUE = "qv-5e1d7c9a0b"
ITEMS_PATH = "/ops/items"
DENY_PATH = "/forbidden/x"
FIRST_WS_FRAME = b"hello from upstream"  # harness _ws_serve sends it with the 101
LEVELS = ("DEBUG", "INFO", "WARN", "ERROR")
TEXT_LINE = re.compile(r"^\d\d:\d\d:\d\d (\S+)")
DOWNLOAD = 5 * MIB
SIP = 64 * 1024  # what the client reads of the download before SIGTERM


# ---------------------------------------------------------------------------------------------
# Setup and the four flows the log tests look at.
# ---------------------------------------------------------------------------------------------

def _start(env, args=()):
    """One TLS upstream and airlock with policy POLICY: full access to it except /forbidden/**.
    Returns (upstream, airlock)."""
    up = env.upstream()
    ep = loopback_ep(LOOPBACK4, up.port, access="full",
                     deny_rules=[{"method": "*", "path": "/forbidden/**"}])
    al = start_airlock(env, policy_doc({POLICY: [ep]}), args=args)
    return up, al


def _src_port(c):
    return c.sock.getsockname()[1]


def _flow_allowed_gets(al, up):
    """Two requests on one tunnel, the first with a query string: the first exchange ends with
    the connection still usable (reusable) whatever the client does later. Returns the tunnel's
    client port."""
    c = open_tunnel(al, LOOPBACK4, up.port)
    src = _src_port(c)
    target = "%s?%s=%s" % (ITEMS_PATH, QUERY_KEY, QUERY_VALUE)
    r = c.request("GET", target)
    check_eq(r.status, 200, "GET %s status" % target)
    check_eq(r.json()["target"], target, "target seen upstream (query forwarded as is)")
    r = c.request("GET", "/ops/second")
    check_eq(r.status, 200, "second GET on the tunnel")
    return src


def _flow_l7_deny(al, up):
    c = open_tunnel(al, LOOPBACK4, up.port)
    src = _src_port(c)
    c.send_request("GET", DENY_PATH)
    check_deny(read_response(c.reader), "policy_denied")
    closed, _ = c.wait_closed(5)
    check(closed, "tunnel still open after the 403")
    return src


def _flow_unsolicited_101(al, up):
    c = open_tunnel(al, LOOPBACK4, up.port)
    src = _src_port(c)
    c.send_request("GET", "/unsolicited-101")
    check_eq(read_response(c.reader).status, 502, "status for an unsolicited 101")
    closed, _ = c.wait_closed(5)
    check(closed, "tunnel still open after the unsolicited 101")
    return src


def _flow_websocket(al, up):
    c = open_tunnel(al, LOOPBACK4, up.port)
    src = _src_port(c)
    req, _ = ws_upgrade_request(c.host)
    c.send(req)
    check_eq(read_response(c.reader).status, 101, "status of the WebSocket upgrade")
    ws = WebSocketClient(c.sock, c.reader)
    check_eq(ws.recv(), (WS_TEXT, FIRST_WS_FRAME), "first server frame")
    ws.send(WS_TEXT, b"ops echo")
    check_eq(ws.recv(), (WS_TEXT, b"ops echo"), "echoed frame")
    ws.close()
    return src


def _all_flows(al, up):
    return {"get": _flow_allowed_gets(al, up), "deny": _flow_l7_deny(al, up),
            "unsolicited": _flow_unsolicited_101(al, up), "ws": _flow_websocket(al, up)}


def _stopped_log(al):
    """Stop airlock (exit 0 required; the writer thread flushes every queued line) and return
    the log file's text."""
    al.stop()
    return al.log_text()


def _get(obj, dotted):
    for k in dotted.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(k)
    return obj


def _dump(al):
    return "\n--- log:\n" + al.log_text()[-4000:]


# ---------------------------------------------------------------------------------------------
# JSON log lines.
# ---------------------------------------------------------------------------------------------

def test_json_log_every_line_is_an_object_and_events_carry_ocsf_class_fields(env):
    up, al = _start(env)
    _all_flows(al, up)
    text = _stopped_log(al)
    classes = set()
    for n, raw in enumerate(text.splitlines(), 1):
        check(raw.strip(), "empty line %d in the JSON log" % n)
        try:
            obj = json.loads(raw)
        except ValueError as e:
            raise AssertionError("log line %d is not JSON (%s): %r" % (n, e, raw[:300]))
        check(isinstance(obj, dict), "log line %d is not a JSON object: %r" % (n, raw[:300]))
        check(isinstance(obj.get("time"), int), "log line %d has no integer time: %r" % (
            n, raw[:300]))
        if "class_uid" not in obj:
            check(obj.get("level") in ("debug", "info", "warn", "error") and "message" in obj,
                  "line %d is neither an event nor a diagnostic: %r" % (n, raw[:300]))
            continue
        cls = obj["class_uid"]
        classes.add(cls)
        check(cls in (4001, 4002, 2004), "unexpected class_uid on line %d: %r" % (n, raw[:300]))
        for key in ("class_name", "category_uid", "category_name", "activity_id",
                    "activity_name", "type_uid", "severity_id", "severity", "action"):
            check(key in obj, "event line %d lacks %s: %r" % (n, key, raw[:300]))
        check_eq(obj["type_uid"], cls * 100 + obj["activity_id"], "type_uid of line %d" % n)
        check_eq(obj["category_uid"], 2 if cls == 2004 else 4, "category_uid of line %d" % n)
        check_eq(_get(obj, "metadata.product.name"), "airlock", "product name of line %d" % n)
    check_eq(sorted(classes), [2004, 4001, 4002], "OCSF classes seen after the four flows")


def test_json_log_connect_line_has_network_activity_fields(env):
    up, al = _start(env)
    src = _flow_allowed_gets(al, up)
    t_ms = int(time.time() * 1000)
    lines = find_log(al, lambda l: l.get("class_uid") == 4001 and
                     _get(l, "src_endpoint.port") == src, 2.0)
    check(lines, "no class_uid 4001 line for the CONNECT from port %d%s" % (src, _dump(al)))
    l = lines[0]
    check_eq(l.get("activity_name"), "CONNECT", "activity_name")
    check_eq(l.get("action"), "allow", "action")
    check_eq(l.get("disposition"), "Allowed", "disposition")
    check(isinstance(l.get("severity_id"), int) and isinstance(l.get("severity"), str),
          "severity_id / severity missing: %r" % l)
    check_eq(l.get("severity_id"), 1, "severity_id of an allowed CONNECT")
    check_eq(_get(l, "src_endpoint.ip"), LOOPBACK4, "src_endpoint.ip")
    check_eq(_get(l, "dst_endpoint.hostname"), LOOPBACK4, "dst_endpoint.hostname")
    check_eq(_get(l, "dst_endpoint.port"), up.port, "dst_endpoint.port")
    check_eq(_get(l, "firewall_rule.name"), POLICY, "firewall_rule.name")
    check(isinstance(l.get("time"), int) and abs(l["time"] - t_ms) < 60000,
          "time %r is not epoch milliseconds near %d" % (l.get("time"), t_ms))


def test_json_log_request_line_has_path_without_query_and_reusable_outcome(env):
    up, al = _start(env)
    src = _flow_allowed_gets(al, up)
    lines = find_log(al, lambda l: l.get("class_uid") == 4002 and
                     _get(l, "src_endpoint.port") == src and
                     _get(l, "http_request.url.path") == ITEMS_PATH, 2.0)
    check(lines, "no class_uid 4002 line with url.path %s%s" % (ITEMS_PATH, _dump(al)))
    l = lines[0]
    check_eq(_get(l, "http_request.http_method"), "GET", "http_request.http_method")
    check_eq(_get(l, "http_response.code"), 200, "http_response.code")
    check_eq(_get(l, "unmapped.l7_decision"), "allow", "unmapped.l7_decision")
    # A second request followed on the same tunnel: the first exchange left it reusable.
    check_eq(_get(l, "unmapped.relay_outcome"), "reusable", "unmapped.relay_outcome")
    check_eq(l.get("action"), "allow", "action")
    check_eq(_get(l, "dst_endpoint.port"), up.port, "dst_endpoint.port")
    check_eq(_get(l, "firewall_rule.name"), POLICY, "firewall_rule.name")


def test_json_log_never_contains_the_query_string(env):
    up, al = _start(env)
    _all_flows(al, up)
    text = _stopped_log(al)
    check(ITEMS_PATH in text, "the request is not in the log at all:\n" + text[-3000:])
    check(QUERY_VALUE not in text, "the query string value is in the JSON log:\n" + "\n".join(
        l for l in text.splitlines() if QUERY_VALUE in l))
    check(QUERY_KEY + "=" not in text, "the query string is in the JSON log:\n" + "\n".join(
        l for l in text.splitlines() if QUERY_KEY + "=" in l))


def test_json_log_l7_deny_line_has_deny_decision_and_action(env):
    up, al = _start(env)
    src = _flow_l7_deny(al, up)
    lines = find_log(al, lambda l: l.get("class_uid") == 4002 and
                     _get(l, "src_endpoint.port") == src and
                     _get(l, "unmapped.l7_decision") == "deny", 2.0)
    check(lines, "no class_uid 4002 line with l7_decision deny%s" % _dump(al))
    l = lines[0]
    check_eq(l.get("action"), "deny", "action")
    check_eq(l.get("disposition"), "Blocked", "disposition")
    check_eq(_get(l, "http_request.http_method"), "GET", "http_request.http_method")
    check_eq(_get(l, "http_request.url.path"), DENY_PATH, "http_request.url.path")
    check_eq(_get(l, "http_response.code"), 403, "http_response.code")
    check_eq(_get(l, "firewall_rule.name"), POLICY, "firewall_rule.name")


def test_json_log_unsolicited_101_finding_has_high_severity(env):
    up, al = _start(env)
    src = _flow_unsolicited_101(al, up)
    lines = find_log(al, lambda l: l.get("class_uid") == 2004 and
                     _get(l, "src_endpoint.port") == src, 2.0)
    check(lines, "no class_uid 2004 finding for the unsolicited 101%s" % _dump(al))
    l = lines[0]
    check(isinstance(l.get("severity_id"), int) and l["severity_id"] >= 4,
          "finding severity_id %r, want High (4) or above" % l.get("severity_id"))
    check_eq(str(l.get("severity")).lower(), "high", "finding severity")
    check_eq(l.get("action"), "deny", "finding action")
    check_eq(_get(l, "dst_endpoint.port"), up.port, "finding dst_endpoint.port")
    check_eq(_get(l, "http_request.url.path"), "/unsolicited-101", "finding url.path")


def test_json_log_websocket_upgrade_line_has_allow_upgrade_and_upgraded(env):
    up, al = _start(env)
    src = _flow_websocket(al, up)
    lines = find_log(al, lambda l: _get(l, "src_endpoint.port") == src and (
        _get(l, "unmapped.l7_decision") == "allow_upgrade" or
        _get(l, "unmapped.relay_outcome") == "upgraded"), 2.0)
    check(lines, "no line with l7_decision allow_upgrade or relay_outcome upgraded%s" % _dump(al))
    for l in lines:
        check(l.get("class_uid") in (4001, 4002), "upgrade line class_uid: %r" % l)
        check_eq(l.get("action"), "allow", "action of the upgrade line")
        check_eq(_get(l, "dst_endpoint.port"), up.port, "dst_endpoint.port of the upgrade line")
        check_eq(_get(l, "firewall_rule.name"), POLICY, "firewall_rule.name of the upgrade line")
        if l["class_uid"] == 4002:
            check_eq(_get(l, "http_request.url.path"), "/ws", "url.path of the upgrade request")
            check_eq(_get(l, "http_response.code"), 101, "http_response.code of the upgrade")


# ---------------------------------------------------------------------------------------------
# Text log lines.
# ---------------------------------------------------------------------------------------------

def _text_events(text):
    """Every line must start with HH:MM:SS; returns the event lines (the word after the time is
    not a diagnostic level)."""
    events = []
    for n, line in enumerate(text.splitlines(), 1):
        m = TEXT_LINE.match(line)
        check(m, "text log line %d does not start with HH:MM:SS: %r" % (n, line[:300]))
        if m.group(1) not in LEVELS:
            events.append(line)
    return events


def test_text_log_one_line_per_event_with_time_verdict_and_target(env):
    up, al = _start(env, args=["--log-format", "text"])  # the last --log-format wins
    ports = _all_flows(al, up)
    text = _stopped_log(al)
    check(not text.lstrip().startswith("{"), "--log-format text wrote JSON:\n" + text[:500])
    events = _text_events(text)
    target = "%s:%d" % (LOOPBACK4, up.port)
    for line in events:
        check(re.search(r"\b(ALLOW|DENY)\b", line), "event line without ALLOW/DENY: %r" % line)
        check(target in line, "event line without %s: %r" % (target, line))

    def count(pattern):
        return len([l for l in events if re.search(pattern, l)])
    # One line per event: each of these events appears exactly once.
    for what, pattern in (
            ("allowed CONNECT of the first tunnel",
             r"ALLOW CONNECT %s\b.*src=%s:%d\b" % (re.escape(target), LOOPBACK4, ports["get"])),
            ("allowed GET %s" % ITEMS_PATH, r"ALLOW GET %s%s\b" % (re.escape(target),
                                                                   re.escape(ITEMS_PATH))),
            ("denied GET %s" % DENY_PATH, r"DENY GET %s%s\b" % (re.escape(target),
                                                                re.escape(DENY_PATH))),
            ("unsolicited 101 finding", r"DENY .*%s/unsolicited-101\b.*severity=high" %
             re.escape(target)),
            ("WebSocket upgrade", r"ALLOW UPGRADE %s\b" % re.escape(target))):
        check_eq(count(pattern), 1, "text lines for the %s (in:\n%s\n)" % (what,
                                                                        "\n".join(events)))
    check_eq(count(r"ALLOW CONNECT "), 4, "CONNECT lines for four tunnels")


def test_text_log_never_contains_the_query_string(env):
    up, al = _start(env, args=["--log-format", "text"])
    _all_flows(al, up)
    text = _stopped_log(al)
    check(ITEMS_PATH in text, "the request is not in the text log at all:\n" + text[-3000:])
    bad = [l for l in text.splitlines() if QUERY_VALUE in l or QUERY_KEY + "=" in l]
    check(not bad, "the query string is in the text log:\n" + "\n".join(bad))


# ---------------------------------------------------------------------------------------------
# SIGUSR1: reopen the log file (logrotate renames it first).
# ---------------------------------------------------------------------------------------------

def _paths_in(path):
    out = []
    try:
        with open(path, "rb") as f:
            for raw in f.read().decode("utf-8", "replace").splitlines():
                try:
                    obj = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(obj, dict) and _get(obj, "http_request.url.path"):
                    out.append(_get(obj, "http_request.url.path"))
    except OSError:
        pass
    return out


def test_sigusr1_reopens_log_at_original_path_after_rename(env):
    up, al = _start(env)
    c = open_tunnel(al, LOOPBACK4, up.port)
    check_eq(c.request("GET", "/before-rotate").status, 200, "GET before the rotation")
    check(wait_until(lambda: "/before-rotate" in _paths_in(al.log_path), 2.0),
          "the first request was not logged%s" % _dump(al))
    rotated = al.log_path + ".1"
    os.rename(al.log_path, rotated)
    al.proc.send_signal(signal.SIGUSR1)
    check(wait_until(lambda: os.path.exists(al.log_path), 2.0),
          "no fresh log file at %s within 2 s of SIGUSR1" % al.log_path)
    check_eq(c.request("GET", "/after-rotate").status, 200, "GET after the rotation")
    check(wait_until(lambda: "/after-rotate" in _paths_in(al.log_path), 2.0),
          "the request after SIGUSR1 is not in the fresh log file (fresh: %r, rotated: %r)" % (
              _paths_in(al.log_path), _paths_in(rotated)))
    check(al.alive(), "airlock exited after SIGUSR1")
    old = _paths_in(rotated)
    check("/before-rotate" in old, "the rotated file lost its lines: %r" % old)
    check("/after-rotate" not in old, "a line after SIGUSR1 went to the rotated file")
    check("/before-rotate" not in _paths_in(al.log_path),
          "a line from before SIGUSR1 is in the fresh file")


# ---------------------------------------------------------------------------------------------
# SIGTERM: drain.
# ---------------------------------------------------------------------------------------------

def _gated_download(gate):
    """An upstream handler for one GET: a 200 with Content-Length DOWNLOAD, the first MiB of
    content_chunks at once, the rest only after gate is set. The client's slow reading alone
    cannot keep the body in flight (airlock's kernel send buffer grows to about 4 MiB), the
    gate can."""
    def handler(conn):
        if conn.read_request() is None:
            return
        conn.sendall(build_response(200, "OK", [("Content-Length", str(DOWNLOAD)),
                                                ("Content-Type", "application/octet-stream")]))
        for i, piece in enumerate(content_chunks(DOWNLOAD)):  # 1 MiB pieces
            if i == 1 and not gate.wait(UPSTREAM_TIMEOUT):
                raise AssertionError("the gate was never opened")
            conn.sendall(piece)
        conn.reader.wait_eof(UPSTREAM_TIMEOUT)
    return handler


def _download_in_flight(env, gate, drain_timeout):
    """airlock with --drain-timeout, and a DOWNLOAD-byte response through a tunnel of which the
    client has read the head and SIP bytes while the upstream holds the last 4 MiB back until
    gate is set. Returns (airlock, client, sha256 so far)."""
    up = env.upstream(_gated_download(gate))
    al = env.airlock([up], args=["--drain-timeout", str(drain_timeout)])
    c = open_tunnel(al, LOOPBACK4, up.port, rcvbuf=SIP)
    c.send_request("GET", "/download/%d" % DOWNLOAD)
    resp = read_response_head(c.reader)
    check_eq(resp.status, 200, "download status")
    check_eq(resp.headers.get("content-length"), str(DOWNLOAD), "download Content-Length")
    h = hashlib.sha256()
    h.update(c.reader.read_exact(SIP))
    return al, c, h


def _read_rest(c, h, already):
    n = already
    while n < DOWNLOAD:
        part = c.reader.read_some(min(65536, DOWNLOAD - n))
        check(part, "the download stopped after %d of %d bytes" % (n, DOWNLOAD))
        h.update(part)
        n += len(part)
    return n


def _close_after_drained_exchange(c):
    """While draining, airlock ends the tunnel once its exchange is done (close_notify, FIN);
    the client then closes too, as real clients do, so airlock need not wait out its linger."""
    closed, extra = c.wait_closed(5)
    check(closed, "tunnel still open 5 s after its exchange ended during the drain")
    check_eq(extra, b"", "bytes after the download")
    c.sock.close()


def _wait_exit(al, timeout):
    try:
        rc = al.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None
    al.returncode = rc  # stop() at cleanup then only checks it (and stderr)
    return rc


def test_sigterm_drain_completes_in_flight_download_then_exits_0(env):
    drain_timeout = 20
    gate = threading.Event()
    try:
        al, c, h = _download_in_flight(env, gate, drain_timeout)
        al.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        check(al.alive(), "airlock exited %r within 0.3 s of SIGTERM with a download in "
              "flight" % al.proc.poll())
    finally:
        gate.set()  # the upstream sends the last 4 MiB: they reach airlock during the drain
    n = _read_rest(c, h, SIP)
    check_eq(n, DOWNLOAD, "bytes of the download received during the drain")
    check_eq(h.hexdigest(), content_sha256(DOWNLOAD), "SHA-256 of the download")
    _close_after_drained_exchange(c)
    # The last busy connection is done: the drain ends well before its timeout.
    rc = _wait_exit(al, 5)
    check(rc is not None, "airlock still running 5 s after the drained download ended "
          "(drain timeout %d s)" % drain_timeout)
    check_eq(rc, 0, "exit code after the drain")


def _new_connection_outcome(port):
    """"refused", "closed" (accepted, then closed or reset without a byte of answer), or what
    happened instead."""
    try:
        s = socket.create_connection((LOOPBACK4, port), timeout=2)
    except ConnectionRefusedError:
        return "refused"
    try:
        s.settimeout(3)
        s.sendall(b"CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n")
        data = s.recv(4096)
        return "closed" if data == b"" else "answered %r" % data[:200]
    except (ConnectionResetError, BrokenPipeError):
        return "closed"
    except socket.timeout:
        return "held open for 3 s without an answer"
    finally:
        s.close()


def test_sigterm_drain_refuses_new_connections(env):
    gate = threading.Event()
    try:
        al, c, h = _download_in_flight(env, gate, 20)
        al.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)  # the worker closes its listener on the drain request
        outcome = _new_connection_outcome(al.port)
        check(al.alive(), "airlock exited before the in-flight download ended")
    finally:
        gate.set()
    check(outcome in ("refused", "closed"),
          "a new connection during the drain was %s, want refused or closed" % outcome)
    n = _read_rest(c, h, SIP)
    check_eq(n, DOWNLOAD, "bytes of the download received during the drain")
    check_eq(h.hexdigest(), content_sha256(DOWNLOAD), "SHA-256 of the download")
    _close_after_drained_exchange(c)
    check_eq(_wait_exit(al, 5), 0, "exit code after the drain")


# ---------------------------------------------------------------------------------------------
# airlock env.
# ---------------------------------------------------------------------------------------------

ENV_KEYS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "WSS_PROXY", "http_proxy", "https_proxy",
            "all_proxy", "wss_proxy", "NO_PROXY", "no_proxy", "NODE_USE_ENV_PROXY",
            "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO",
            "CARGO_HTTP_CAINFO", "NODE_EXTRA_CA_CERTS", "DENO_CERT", "WGETRC",
            "JAVA_TOOL_OPTIONS")


def _clean_env(env):
    """A shell environment with no proxy or CA variable and no ~/.curlrc."""
    home = env.path("home")
    os.makedirs(home, exist_ok=True)
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "LC_ALL": "C"}


def test_env_sourced_in_shell_makes_curl_use_proxy_and_ca_without_flags(env):
    if not shutil.which("curl") or not shutil.which("bash"):
        raise Skip("curl or bash not installed")
    up = env.upstream()
    al = env.airlock([up])
    r = env.run_cli(["env", "--listen", "%s:%d" % (LOOPBACK4, al.port), "--ca-dir", al.ca_dir])
    check_eq(r.returncode, 0, "airlock env exit code (%s)" % r.stderr.decode()[-500:])
    envfile = env.path("airlock.env")
    with open(envfile, "wb") as f:
        f.write(r.stdout)
    # NO_PROXY names 127.0.0.1 and localhost, which is right for a sandbox but would make curl
    # bypass the proxy for this loopback upstream; unsetting it leaves exactly what the test is
    # about: the proxy and CA variables alone make curl work, with no curl flag.
    script = 'eval "$(cat "$1")"; unset NO_PROXY no_proxy; curl -sS https://%s:%d/env-check' % (
        LOOPBACK4, up.port)
    p = subprocess.run(["bash", "-c", script, "bash", envfile], capture_output=True, timeout=30,
                       stdin=subprocess.DEVNULL, env=_clean_env(env))
    out = p.stdout.decode("utf-8", "replace")
    check_eq(p.returncode, 0, "curl exit code (stderr %r)" % p.stderr.decode()[-500:])
    try:
        j = json.loads(out)
    except ValueError:
        raise AssertionError("curl output is not the upstream's JSON echo: %r" % out[:500])
    check_eq(j.get("target"), "/env-check", "target seen upstream")
    lines = find_log(al, lambda l: _get(l, "http_request.url.path") == "/env-check", 2.0)
    check(lines, "the request did not go through airlock%s" % _dump(al))


def _parse_env_lines(text, prefix):
    out = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        check(line.startswith(prefix), "line without %r: %r" % (prefix, line))
        body = line[len(prefix):]
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(.+)$", body)
        check(m, "not a KEY=VALUE line: %r" % line)
        check(m.group(1) not in out, "%s printed twice" % m.group(1))
        # export lines are shell-quoted; compare the values a shell would see
        value = m.group(2)
        if prefix:
            parts = shlex.split(value)
            check_eq(len(parts), 1, "one shell word for %s" % m.group(1))
            value = parts[0]
        out[m.group(1)] = value
    return out


def test_env_dotenv_prints_key_value_lines_without_export(env):
    d = env.path("ca")
    check_eq(env.run_cli(["ca", "init", "--dir", d]).returncode, 0, "ca init")
    listen = ["--listen", "%s:%d" % (LOOPBACK4, 3999), "--ca-dir", d]
    r = env.run_cli(["env"] + listen + ["--format", "dotenv"])
    check_eq(r.returncode, 0, "airlock env --format dotenv exit code (%s)" % r.stderr.decode())
    text = r.stdout.decode("utf-8")
    check("export" not in text, "dotenv output mentions export:\n" + text)
    dotenv = _parse_env_lines(text, "")
    r = env.run_cli(["env"] + listen)
    check_eq(r.returncode, 0, "airlock env exit code (%s)" % r.stderr.decode())
    exported = _parse_env_lines(r.stdout.decode("utf-8"), "export ")
    check_eq(dotenv, exported, "dotenv variables vs the export format's")
    for key in ENV_KEYS:
        check(key in dotenv, "dotenv output lacks %s:\n%s" % (key, text))
    check_eq(dotenv["HTTPS_PROXY"], "http://%s:3999" % LOOPBACK4, "HTTPS_PROXY")
    check_eq(dotenv["CURL_CA_BUNDLE"], os.path.join(os.path.realpath(d), "bundle.pem"),
             "CURL_CA_BUNDLE")


# ---------------------------------------------------------------------------------------------
# airlock run refuses a bad configuration.
# ---------------------------------------------------------------------------------------------

def _run_to_exit(env, ca_dir, policy, tag, timeout=10):
    """Run `airlock run` with a log file; it must exit by itself within timeout. Returns
    (exit code, stderr + log text)."""
    log = env.path("%s.log" % tag)
    cmd = [env.binary, "run", "--listen", "%s:%d" % (LOOPBACK4, free_port()), "--ca-dir",
           ca_dir, "--policy", policy, "--upstream-ca", env.pki.ca.cert, "--log", log,
           "--workers", "1"]
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate(timeout=5)
        raise AssertionError("airlock run (%s) did not exit within %ds: it started serving" % (
            tag, timeout))
    text = out.decode("utf-8", "replace")
    try:
        with open(log, "rb") as f:
            text += f.read().decode("utf-8", "replace")
    except OSError:
        pass
    for mark in SANITIZER_MARKS:
        check(mark not in text, "sanitizer report in airlock output:\n" + text)
    return p.returncode, text


def _good_policy(env):
    return write_policy(env.path("good-policy.json"), [endpoint(LOOPBACK4, 9)])


def test_run_invalid_policy_exits_1_naming_json_path(env):
    d = env.path("ca")
    check_eq(env.run_cli(["ca", "init", "--dir", d]).returncode, 0, "ca init")
    pol = write_json(env.path("bad-policy.json"), policy_doc({"ops_bad": [
        loopback_ep(LOOPBACK4, 443, access="full"),
        loopback_ep("*.com", 443, access="full")]}))
    rc, out = _run_to_exit(env, d, pol, "bad-policy")
    check_eq(rc, 1, "exit code of run with an invalid policy (output %r)" % out[-2000:])
    check("network_policies.ops_bad.endpoints[1].host" in out,
          "the error does not name its JSON path: %r" % out[-2000:])


def test_run_unreadable_ca_file_exits_nonzero_with_message(env):
    d = env.path("ca")
    check_eq(env.run_cli(["ca", "init", "--dir", d]).returncode, 0, "ca init")
    # A directory where the key should be: unreadable as a file, for root too (no chmod).
    key = os.path.join(d, "ca.key")
    os.remove(key)
    os.mkdir(key)
    rc, out = _run_to_exit(env, d, _good_policy(env), "unreadable-ca")
    check(rc is not None and rc > 0, "exit code %r of run with an unreadable ca.key, want "
          "non-zero (output %r)" % (rc, out[-2000:]))
    check("ca.key" in out, "no message naming the unreadable ca.key: %r" % out[-2000:])


def test_run_ca_dir_that_is_a_file_exits_nonzero_with_message(env):
    d = env.path("not-a-dir")
    with open(d, "w") as f:
        f.write("not a CA directory\n")
    rc, out = _run_to_exit(env, d, _good_policy(env), "ca-dir-file")
    check(rc is not None and rc > 0, "exit code %r of run with a file as --ca-dir, want "
          "non-zero (output %r)" % (rc, out[-2000:]))
    check(d in out, "no message naming the CA dir %s: %r" % (d, out[-2000:]))


def test_run_refuses_a_ca_key_readable_by_others_naming_the_fix(env):
    d = env.path("ca")
    check_eq(env.run_cli(["ca", "init", "--dir", d]).returncode, 0, "ca init")
    key = os.path.join(d, "ca.key")
    os.chmod(key, 0o644)
    rc, out = _run_to_exit(env, d, _good_policy(env), "open-ca-key")
    check_eq(rc, 1, "exit code of run with a 0644 ca.key (output %r)" % out[-2000:])
    check(key in out and "chmod 600" in out, "the error does not name %s and the fix: %r" % (
        key, out[-2000:]))



def test_run_refuses_a_log_path_that_is_a_symlink_leaving_its_target_alone(env):
    d = env.path("ca")
    check_eq(env.run_cli(["ca", "init", "--dir", d]).returncode, 0, "ca init")
    target = env.path("not-a-log.json")  # say, a file airlock reads
    with open(target, "w") as f:
        f.write("{}\n")
    log = env.path("planted.log")
    os.symlink(target, log)
    r = subprocess.run([env.binary, "run", "--listen", "%s:%d" % (LOOPBACK4, free_port()),
                        "--ca-dir", d, "--policy", _good_policy(env), "--log", log,
                        "--workers", "1"], capture_output=True, timeout=10,
                       stdin=subprocess.DEVNULL)
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    check(r.returncode != 0, "airlock ran with its log path a symlink: %r" % out)
    check(log in out and "symbolic link" in out, "no message naming the symlink: %r" % out)
    with open(target) as f:
        check_eq(f.read(), "{}\n", "the symlink's target")



def test_sigusr1_refuses_a_log_directory_swapped_for_a_symlink(env):
    # Whoever may rename entries of a directory above the log's swaps the log's directory for
    # a symbolic link to one of their choosing (standing for /etc/logrotate.d) before the
    # rotation's SIGUSR1. Only the last component used to be opened without following links.
    base = env.path("log-base")
    logs = os.path.join(base, "logs")
    os.makedirs(logs)
    chosen = env.path("chosen-dir")
    os.mkdir(chosen)
    path = os.path.join(logs, "airlock.log")
    al = env.airlock([], endpoints=[endpoint("x.test", 443)], args=["--log", path])
    check(wait_until(lambda: os.path.exists(path), 3), "airlock did not create %s" % path)
    os.rename(logs, logs + ".old")
    os.symlink(chosen, logs)
    al.proc.send_signal(signal.SIGUSR1)
    old = os.path.join(logs + ".old", "airlock.log")

    planted = os.path.join(chosen, "airlock.log")

    def refusal_logged():
        with open(old, errors="replace") as f:
            return "on its path is a symbolic link" in f.read()
    wait_until(lambda: refusal_logged() or os.path.exists(planted), 3)
    al.proc.send_signal(signal.SIGHUP)  # a reload writes more lines
    time.sleep(0.3)
    check(not os.path.exists(planted),
          "airlock created its log in a directory reached through a symlinked parent")
    check(refusal_logged(), "no refusal logged in the old file")
    check(al.alive(), "airlock exited after the refused reopen")


def test_run_refuses_a_log_below_a_directory_of_another_user(env):
    # The log's own directory is root's, but the one above it belongs to the agent, who could
    # rename it: refused at start, naming that directory.
    if os.geteuid() != 0:
        raise Skip("needs root to give a directory to another user")
    d = env.path("ca")
    check_eq(env.run_cli(["ca", "init", "--dir", d]).returncode, 0, "ca init")
    base = env.path("agents-dir")
    os.makedirs(os.path.join(base, "logs"))
    os.chmod(base, 0o755)
    os.chown(base, 65534, 65534)
    log = os.path.join(base, "logs", "airlock.log")
    r = subprocess.run([env.binary, "run", "--listen", "%s:%d" % (LOOPBACK4, free_port()),
                        "--ca-dir", d, "--policy", _good_policy(env), "--log", log,
                        "--workers", "1"], capture_output=True, timeout=10,
                       stdin=subprocess.DEVNULL)
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    check(r.returncode != 0, "airlock ran with its log below another user's directory: %r" % out)
    check(base in out and "belongs to uid 65534" in out, "no message naming %s: %r" % (base, out))
    check(not os.path.exists(log), "the log file was made")

# ---------------------------------------------------------------------------------------------
# Upstream trust: --upstream-ca adds to the system roots, --upstream-ca-only replaces them, and
# a certificate's subject CN never stands in for a SAN.
# ---------------------------------------------------------------------------------------------

def _connect_status(al, port, host=LOOPBACK4):
    """200 when the upstream is verified (a GET inside the tunnel succeeds); an upstream whose
    TLS is refused gives a 502 upstream_tls_failed inside the client's handshake."""
    status, body, in_tls = tunnel_answer(al, host, port, timeout=UPSTREAM_TIMEOUT)
    if status == 502:
        check(in_tls and body and body.get("error") == "upstream_tls_failed",
              "a refused upstream certificate is a 502 upstream_tls_failed inside TLS, got %r"
              % (body,))
    return status


def test_upstream_ca_adds_to_system_roots_and_upstream_ca_only_replaces_them(env):
    # SSL_CERT_FILE in airlock's environment names its "system roots": here a second test CA.
    ours = env.upstream()  # signed by the CA given with --upstream-ca (the harness's)
    system = env.upstream(cert=env.pki.untrusted_leaf)  # signed by the "system" CA
    doc = policy_doc({"trust": [loopback_ep(LOOPBACK4, ours.port, access="full"),
                                loopback_ep(LOOPBACK4, system.port, access="full")]})
    roots = {"SSL_CERT_FILE": env.pki.untrusted_ca.cert, "SSL_CERT_DIR": env.path("no-certs")}
    al = start_airlock(env, doc, extra_env=roots)  # --upstream-ca FILE
    check_eq(_connect_status(al, ours.port), 200, "--upstream-ca: upstream of that CA")
    check_eq(_connect_status(al, system.port), 200, "--upstream-ca: upstream of a system root")
    al.stop()

    # The harness passes --upstream-ca too; --upstream-ca-only switches the system roots off.
    al = start_airlock(env, doc, args=["--upstream-ca-only", env.pki.ca.cert], extra_env=roots)
    check_eq(_connect_status(al, ours.port), 200, "--upstream-ca-only: upstream of that CA")
    check_eq(_connect_status(al, system.port), 502,
             "--upstream-ca-only: upstream of a system root (must be refused)")


def _cn_only_leaf(env, cn):
    """A leaf signed by the harness's upstream CA whose only name is its subject CN."""
    base = env.path("cn-only-" + cn)
    def openssl(*args):
        r = subprocess.run(("openssl",) + args, capture_output=True, timeout=30,
                           stdin=subprocess.DEVNULL)
        check(r.returncode == 0, "openssl %s: %s" % (args[0], r.stderr.decode()))
    openssl("req", "-new", "-config", env.pki.cnf, "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-nodes", "-keyout", base + ".key", "-out", base + ".csr",
            "-subj", "/CN=" + cn)
    openssl("x509", "-req", "-in", base + ".csr", "-CA", env.pki.ca.cert, "-CAkey",
            env.pki.ca.key, "-set_serial", "0x" + os.urandom(8).hex(), "-days", "3",
            "-out", base + ".pem")
    return CertPair(base + ".pem", base + ".key")


def test_upstream_certificate_naming_the_host_only_in_its_cn_is_refused(env):
    up = env.upstream(cert=_cn_only_leaf(env, "localhost"))
    al = env.airlock([up])
    check_eq(_connect_status(al, up.port, "localhost"), 502,
             "CONNECT localhost to an upstream whose certificate has CN=localhost and no SAN")
    check(find_log(al, lambda l: "hostname mismatch" in json.dumps(l)),
          "no log line with the verification failure%s" % _dump(al))


# ---------------------------------------------------------------------------------------------
# Memory and descriptors come back after a burst.
# ---------------------------------------------------------------------------------------------

BURST = 500
BURST_RSS_SLACK_KIB = 20 * 1024
BURST_FD_SLACK = 20
BURST_SETTLE = 8.0
# A TLS record header and the start of a ClientHello that announces 200 bytes and sends 44.
PARTIAL_CLIENT_HELLO = bytes.fromhex("16030100c8010000c40303") + b"\x5a" * 33


def _fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def _uses_asan(pid):
    with open("/proc/%d/maps" % pid) as f:
        return "libasan" in f.read()


def test_memory_and_fds_return_to_baseline_after_burst_of_abandoned_handshakes(env):
    up = env.upstream()
    al = env.airlock([up])
    auth = "%s:%d" % (LOOPBACK4, up.port)
    # One whole exchange first: what a first tunnel allocates once (the leaf, the upstream
    # session) belongs to the baseline.
    c = open_tunnel(al, LOOPBACK4, up.port)
    check_eq(c.request("GET", "/warm").status, 200, "warm-up GET")
    c.sock.close()
    time.sleep(1.0)
    base_rss, base_fds = al.rss_kib(), _fd_count(al.pid)

    socks = []
    try:
        # All CONNECTs answered 200 (upstream dialled and verified), each tunnel then given a
        # partial ClientHello, all open together before any closes: the burst's peak.
        for _ in range(BURST):
            s = socket.create_connection((LOOPBACK4, al.port), timeout=UPSTREAM_TIMEOUT)
            socks.append(s)
            s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (auth, auth)).encode())
        for s in socks:
            check_eq(read_response_head(Reader(s)).status, 200, "CONNECT in the burst")
            s.sendall(PARTIAL_CLIENT_HELLO)
        peak_rss = al.rss_kib()
    finally:
        for s in socks:
            s.close()

    def settled():
        rss, fds = al.rss_kib(), _fd_count(al.pid)
        return (rss, fds) if rss <= base_rss + BURST_RSS_SLACK_KIB and \
            fds <= base_fds + BURST_FD_SLACK else None
    got = wait_until(settled, BURST_SETTLE, 0.2)
    rss, fds = al.rss_kib(), _fd_count(al.pid)
    if env.verbose:
        print("RSS KiB: baseline %d, peak %d, %.0f s after %d %s; fds %d -> %d" % (
            base_rss, peak_rss, BURST_SETTLE, BURST, "settled" if got else "not settled",
            base_fds, fds))
    check(fds <= base_fds + BURST_FD_SLACK, "%d fds open %.0f s after the burst, baseline %d" % (
        fds, BURST_SETTLE, base_fds))
    if _uses_asan(al.pid):
        raise Skip("RSS under AddressSanitizer's allocator (quarantine) says nothing about glibc's")
    check(got, "RSS %d KiB %.0f s after %d abandoned handshakes: baseline %d KiB + more than %d "
          "(peak %d)" % (rss, BURST_SETTLE, BURST, base_rss, BURST_RSS_SLACK_KIB, peak_rss))
