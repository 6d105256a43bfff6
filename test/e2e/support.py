# SPDX-License-Identifier: MIT
"""Helpers for the policy and credential end-to-end tests (Python standard library only).

harness.py owns the shared fixtures; this module adds what test_policy.py and test_creds.py
need on top of them: policy and providers documents written as given (no implied allowed_ips),
an airlock started with an extra environment and a providers file, a recording upstream that
never echoes what it received, a plain TCP echo server with half-close, a reader that keeps
every byte a client received (for the secret canary), deny-body checks and SIGHUP reloads.
Every socket binds to 127.0.0.1 and has a timeout.
"""

import json
import os
import signal
import socket
import subprocess
import threading
import time

from harness import (LOOPBACK4, SOCK_TIMEOUT, UPSTREAM_TIMEOUT, Airlock, HttpClient, Reader,
                     build_request, build_response, check, check_eq, read_response_head,
                     read_chunked, tls_wrap, wait_until)

LOOPBACK_IPS = ["127.0.0.0/8", "::1/128"]


# ---------------------------------------------------------------------------------------------
# Documents.
# ---------------------------------------------------------------------------------------------

def ep(host, port, **extra):
    """A policy endpoint with exactly the given keys: no access and no allowed_ips implied."""
    d = {"host": host, "port": port}
    d.update(extra)
    return d


def loopback_ep(host, port, **extra):
    """An endpoint that may reach loopback (allowed_ips covers 127/8 and ::1)."""
    d = ep(host, port, allowed_ips=list(LOOPBACK_IPS))
    d.update(extra)
    return d


def policy_doc(policies):
    """policies: {name: [endpoint, ...]} or {name: {"endpoints": [...], ...}}."""
    nps = {}
    for name, v in policies.items():
        nps[name] = {"endpoints": list(v)} if isinstance(v, list) else dict(v)
    return {"version": 1, "network_policies": nps}


def providers_doc(providers):
    return {"version": 1, "providers": dict(providers)}


def write_json(path, doc):
    """Write doc (a dict, or a str written as is) atomically: a reader never sees half a file."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        if isinstance(doc, str):
            f.write(doc)
        else:
            json.dump(doc, f, indent=2)
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------------
# The airlock process with a policy document, a providers file and an environment.
# ---------------------------------------------------------------------------------------------

def start_airlock(env, policy, args=(), extra_env=None, providers=None, base_env=None):
    """Start airlock with the policy document `policy` (written as given) and, when providers
    is a document, a providers file passed with --providers. extra_env is added to the process
    environment (base_env, default os.environ). The process is stopped by the runner's cleanup.
    The Airlock gets .policy_path and .providers_path."""
    workdir = env.path("pe-airlock-%d" % len(env.airlocks))
    os.makedirs(workdir)
    pol = write_json(os.path.join(workdir, "policy.json"), policy)
    argv = list(args)
    prov = None
    if providers is not None:
        prov = write_json(os.path.join(workdir, "providers.json"), providers)
        argv = ["--providers", prov] + argv
    proc_env = dict(os.environ if base_env is None else base_env)
    proc_env.update(extra_env or {})
    al = Airlock(env.binary, workdir, pol, env.pki.ca.cert, argv, proc_env)
    al.policy_path = pol
    al.providers_path = prov
    env.airlocks.append(al)
    return al.start()


def _reload_mentions(al):
    return (al.stderr_text() + al.log_text()).lower().count("reload")


def reload(al, policy=None, providers=None, settle=0.2):
    """Rewrite the policy (and providers) files when given, send SIGHUP, and wait until airlock
    has acted on it: a new line mentioning the reload (success or failure) in its log or
    stderr, up to 2 s; then settle, for the workers to pick the new snapshot up."""
    if policy is not None:
        write_json(al.policy_path, policy)
    if providers is not None:
        write_json(al.providers_path, providers)
    before = _reload_mentions(al)
    al.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: _reload_mentions(al) > before, 2.0)
    time.sleep(settle)
    check(al.alive(), "airlock exited after SIGHUP: " + al.stderr_text()[-2000:])


def wait_log(al, pred, timeout=2.0):
    """JSON log lines matching pred, polling up to timeout (lines come from a writer thread)."""
    return wait_until(lambda: [l for l in al.log_lines() if pred(l)], timeout)


def run_cli(env, args, extra_env=None, base_env=None, timeout=30):
    """(exit code, stdout + stderr as text) of one airlock subcommand."""
    proc_env = dict(os.environ if base_env is None else base_env)
    proc_env.update(extra_env or {})
    r = subprocess.run([env.binary] + list(args), capture_output=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, env=proc_env)
    return r.returncode, (r.stdout + r.stderr).decode("utf-8", "replace"), r


# ---------------------------------------------------------------------------------------------
# Clients that keep everything they received.
# ---------------------------------------------------------------------------------------------

class RecordingReader(Reader):
    """A Reader that also appends every received byte to `log` (a bytearray, maybe shared)."""

    def __init__(self, sock, log):
        Reader.__init__(self, sock)
        self.log = log

    def fill(self, size=65536):
        n = len(self.buf)
        ok = Reader.fill(self, size)
        if ok:
            self.log += self.buf[n:]
        return ok


def connect_raw(al, host, port, log, extra_headers=(), timeout=SOCK_TIMEOUT):
    """Send CONNECT host:port and read the answer head and (non-2xx) body with a recording
    reader: (Response, socket, reader)."""
    sock = al.connect(timeout)
    auth = "%s:%s" % (("[%s]" % host) if ":" in host else host, port)
    sock.sendall(build_request("CONNECT", auth, [("Host", auth)] + list(extra_headers)))
    reader = RecordingReader(sock, log)
    resp = read_response_head(reader)
    if not 200 <= resp.status < 300:
        h = resp.headers
        if h.has("content-length"):
            resp.body = reader.read_exact(int(h.get("content-length")))
        elif h.has_token("transfer-encoding", "chunked"):
            resp.body, resp.trailers = read_chunked(reader)
        else:
            resp.body = reader.read_to_eof(1 << 20)
    resp.reader = reader
    return resp, sock, reader


def open_recorded_tunnel(al, host, port, log):
    """CONNECT (require 200), TLS verified against airlock's CA: an HttpClient whose reader
    records into log."""
    resp, sock, _ = connect_raw(al, host, port, log)
    check(resp.status == 200, "CONNECT %s:%s answered %d %r" % (host, port, resp.status,
                                                               resp.body[:300]))
    tls = tls_wrap(sock, host, airlock=al)
    c = HttpClient(tls, "%s:%d" % (host, port))
    c.reader = RecordingReader(tls, log)
    return c


def forward_recorded_client(al, log):
    c = HttpClient(al.connect(), None)
    c.reader = RecordingReader(c.sock, log)
    return c


# ---------------------------------------------------------------------------------------------
# Deny answers.
# ---------------------------------------------------------------------------------------------

def check_deny(resp, error, status=403):
    """The documented deny answer: status, X-Airlock-Decision: deny, Connection: close, a JSON
    body whose error is `error`. Returns the decoded body."""
    check_eq(resp.status, status, "status")
    check_eq(resp.headers.get("x-airlock-decision", "").lower(), "deny", "X-Airlock-Decision")
    check(resp.headers.has_token("connection", "close"),
          "deny answer without Connection: close: %r" % resp.raw_head)
    j = resp.json()
    check(isinstance(j, dict), "deny body is not a JSON object: %r" % resp.body[:300])
    check_eq(j.get("error"), error, "JSON error")
    return j


# ---------------------------------------------------------------------------------------------
# Upstream handlers that never echo what they received (the test reads Upstream.requests).
# ---------------------------------------------------------------------------------------------

def _respond_loop(conn, extra_headers):
    while True:
        req = conn.read_request()
        if req is None:
            return
        close = req.headers.has_token("connection", "close")
        body = b'{"ok": true}'
        hs = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        hs += extra_headers(req)
        if close:
            hs.append(("Connection", "close"))
        conn.sendall(build_response(200, "OK", hs, body))
        if close:
            return


def recording_handler(conn):
    """Keep-alive; answers every request 200 {"ok": true}. What arrived is in up.requests."""
    _respond_loop(conn, lambda req: [])


def echo_authorization_handler(conn):
    """Like recording_handler, plus a response header X-Echo with the Authorization value the
    upstream received (an upstream that reflects a credential)."""
    _respond_loop(conn, lambda req: [("X-Echo", req.headers.get("authorization", ""))])


# ---------------------------------------------------------------------------------------------
# A plain TCP echo server with half-close.
# ---------------------------------------------------------------------------------------------

class TcpEchoServer:
    """On 127.0.0.1, port 0. Each connection: every chunk read is written back at once; on EOF
    from the peer the server records it, writes FINAL + b"<total bytes received>" and closes.
    Records accepts, all bytes received and the EOFs seen."""

    FINAL = b"FINAL:"

    def __init__(self):
        self.lock = threading.Lock()
        self.accepts = 0
        self.received = bytearray()
        self.eofs = 0
        self.errors = []
        self.stopped = False
        self.conns = []
        self.listener = None
        self.port = None
        self.thread = None

    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((LOOPBACK4, 0))
        s.listen(16)
        s.settimeout(0.2)
        self.listener = s
        self.port = s.getsockname()[1]
        self.thread = threading.Thread(target=self._accept_loop, name="tcp-echo", daemon=True)
        self.thread.start()
        return self

    def _accept_loop(self):
        while not self.stopped:
            try:
                sock, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            sock.settimeout(UPSTREAM_TIMEOUT)
            with self.lock:
                self.accepts += 1
                self.conns.append(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock):
        total = 0
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                total += len(data)
                with self.lock:
                    self.received += data
                sock.sendall(data)
            with self.lock:
                self.eofs += 1
            sock.sendall(self.FINAL + str(total).encode())
            sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            if not self.stopped:
                with self.lock:
                    self.errors.append(repr(e))
        finally:
            sock.close()

    def stop(self):
        self.stopped = True
        try:
            self.listener.close()
        except OSError:
            pass
        with self.lock:
            conns = list(self.conns)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self.thread:
            self.thread.join(2)


def tcp_echo_server(env):
    """A started TcpEchoServer, stopped with the test's upstreams (it has a stop())."""
    srv = TcpEchoServer().start()
    env.upstreams.append(srv)
    return srv


def recv_exact(sock, n):
    out = bytearray()
    while len(out) < n:
        data = sock.recv(n - len(out))
        if not data:
            raise EOFError("EOF after %d of %d bytes" % (len(out), n))
        out += data
    return bytes(out)


def recv_to_eof(sock, limit=1 << 20):
    out = bytearray()
    while True:
        data = sock.recv(65536)
        if not data:
            return bytes(out)
        out += data
        check(len(out) <= limit, "more than %d bytes before EOF" % limit)

