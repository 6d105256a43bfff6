# SPDX-License-Identifier: MIT
"""Language runtimes through airlock with nothing but what `airlock env` prints.

Each runtime runs its own HTTP client from Debian's packages (test/e2e/clients/): Java 17's
java.net.http.HttpClient, its WebSocket and HttpsURLConnection (openjdk-17-jdk-headless: the
single-file source launcher needs the compiler), and Go's net/http (golang-go). The client's
environment is PATH, HOME, a locale and the variables parsed from `airlock env`'s output, nothing
else (Go also gets its build cache in the test's directory, offline); the client code sets no
proxy and no trust of its own. Each does a GET, a POST, an SSE stream whose first event must
arrive long before the stream ends, and a WebSocket where the runtime has a client, all over
https (CONNECT), and a plain http:// GET (airlock as a forward proxy).

The upstream is named runtime.airlock.test, which only fakedns answers (127.0.0.1): a name, not
a loopback address, since NO_PROXY lists those (and Go never proxies loopback at all). airlock
and the client both run in a mount namespace whose resolv.conf names fakedns (see there), so a
client that tried to go direct would ask fakedns, reach the upstream without airlock and fail on
its certificate, which neither trust store holds: nothing ever leaves loopback. Where a runtime,
unshare or fakedns's port 53 is unavailable, the test is skipped with the reason.

Also here: the Java trust store that airlock writes beside its CA (truststore.p12), as Debian's
keytool reads it, and as `airlock run` writes it for a CA made without one.
"""

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import urllib.parse

from fakedns import FakeDns, Record
from harness import (LOOPBACK4, SANITIZER_MARKS, START_TIMEOUT, STOP_TIMEOUT, Skip, check,
                     check_eq, endpoint, find_log, free_port, wait_until, write_policy)

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENTS = os.path.join(HERE, "clients")
NAME = "runtime.airlock.test"
SSE_EVENTS = 5                 # app_handler's /sse: 5 events 200 ms apart
SSE_MIN_SPREAD_MS = 400        # first event to end of stream, unbuffered: about 800 ms
CLIENT_TIMEOUT = 150           # a cold `go run` or `java X.java` on a loaded 2-core machine


# ---------------------------------------------------------------------------------------------
# The environment `airlock env` prints, and a client run with it alone.
# ---------------------------------------------------------------------------------------------

def airlock_env_vars(env, al):
    """The variables of `airlock env` for this airlock, as a shell that evals them sees them."""
    r = env.run_cli(["env", "--listen", "%s:%d" % (LOOPBACK4, al.port), "--ca-dir", al.ca_dir])
    check_eq(r.returncode, 0, "airlock env exit code (%s)" % r.stderr.decode()[-500:])
    out = {}
    for line in r.stdout.decode("utf-8").splitlines():
        m = re.match(r"^export ([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
        check(m, "not an export line: %r" % line)
        words = shlex.split(m.group(2))
        check_eq(len(words), 1, "shell words in the value of %s" % m.group(1))
        out[m.group(1)] = words[0]
    return out


def _base_env(env):
    home = env.path("home")
    os.makedirs(home, exist_ok=True)
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "LANG": "C.UTF-8"}


class Runtime:
    """An upstream named NAME, an airlock that allows it and resolves NAME through fakedns, and
    the variables `airlock env` prints for it. Use as a context manager (fakedns stops)."""

    def __init__(self, env):
        self.env = env
        self.dns = None

    def __enter__(self):
        env = self.env
        self.dns = FakeDns({NAME: Record(a=[LOOPBACK4])}, env.tmp).start()
        try:
            self.up = env.upstream(cert=env.pki.make_leaf(NAME, [NAME], []))
            self.plain = env.upstream(tls=False)  # http:// URLs: airlock as a forward proxy
            self.al = env.airlock(endpoints=[endpoint(NAME, self.up.port),
                                             endpoint(NAME, self.plain.port)],
                                  wrapper=self.dns.wrapper())
            self.vars = airlock_env_vars(env, self.al)
        except BaseException:
            self.dns.stop()
            raise
        self.base = "https://%s:%d" % (NAME, self.up.port)
        self.plain_base = "http://%s:%d" % (NAME, self.plain.port)
        return self

    def __exit__(self, *exc):
        self.dns.stop()
        return False

    def run(self, argv, cwd, extra=None):
        """Run a client in fakedns's namespace with only PATH, HOME, a locale, extra and the
        variables of `airlock env`. Returns its stdout lines."""
        proc_env = _base_env(self.env)
        proc_env.update(extra or {})
        proc_env.update(self.vars)
        try:
            r = subprocess.run(self.dns.wrapper() + argv, capture_output=True, cwd=cwd,
                               timeout=CLIENT_TIMEOUT, stdin=subprocess.DEVNULL, env=proc_env)
        except subprocess.TimeoutExpired:
            raise AssertionError("%s did not finish within %ds" % (argv[0], CLIENT_TIMEOUT))
        out = r.stdout.decode("utf-8", "replace")
        check_eq(r.returncode, 0, "%s exit code; stdout:\n%s\nstderr:\n%s" % (
            argv[0], out[-3000:], r.stderr.decode("utf-8", "replace")[-3000:]))
        return out.splitlines()

    def check_results(self, lines, paths, body):
        """The client's result lines: proxy choices agree with NO_PROXY, every exchange went
        through airlock and got the upstream's answer, and the SSE events were not buffered."""
        got = {}
        for line in lines:
            kind, _, rest = line.partition(" ")
            got.setdefault(kind, []).append(rest)
        self._check_proxy_choices(got.get("PROXY", []))
        for kind, path in paths.items():
            check(kind in got, "no %s result in the client's output:\n%s" % (
                kind, "\n".join(lines)))
            status, _, text = got[kind][0].partition(" ")
            check_eq(status, "200", "%s status" % kind)
            echo = json.loads(text)
            check_eq(echo["target"], path, "%s target seen upstream" % kind)
            if kind == "POST":
                check_eq(echo["method"], "POST", "POST method seen upstream")
                check_eq(echo["body"], body, "POST body seen upstream")
        self._check_sse(got.get("SSE", []), got.get("SSE_END", []))
        seen = {p.split("?")[0] for p in paths.values()} | {"/sse"}
        for p in sorted(seen):
            check(find_log(self.al, lambda l, p=p: _get(l, "http_request.url.path") == p),
                  "airlock logged no request for %s: it did not go through airlock\n%s" % (
                      p, self.al.log_text()[-3000:]))

    def _check_proxy_choices(self, choices):
        direct = self.vars["NO_PROXY"].split(",")
        check_eq(len(choices), len(direct) + 1, "PROXY lines")
        for line in choices:
            url, _, choice = line.partition(" ")
            host = urllib.parse.urlsplit(url).hostname
            if host in direct:
                check("DIRECT" in choice, "%s in NO_PROXY goes %s, not direct" % (url, choice))
            else:
                check(str(self.al.port) in choice and "DIRECT" not in choice,
                      "%s goes %s, not through airlock on port %d" % (url, choice, self.al.port))

    def _check_sse(self, events, end):
        check_eq(len(events), SSE_EVENTS, "SSE events received")
        ids = [json.loads(e.split(" ", 2)[2])["i"] for e in events]
        check_eq(ids, list(range(SSE_EVENTS)), "SSE event ids")
        check_eq(len(end), 1, "SSE_END lines")
        first, last = int(events[0].split(" ")[1]), int(end[0])
        check(last - first >= SSE_MIN_SPREAD_MS,
              "the first SSE event arrived at %d ms and the stream ended at %d ms: buffered, "
              "not streamed" % (first, last))


def _get(obj, dotted):
    for k in dotted.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(k)
    return obj


def _copy_client(env, name):
    d = env.path("client")
    os.makedirs(d, exist_ok=True)
    shutil.copy(os.path.join(CLIENTS, name), d)
    return d


# ---------------------------------------------------------------------------------------------
# Java.
# ---------------------------------------------------------------------------------------------

def _java():
    java = shutil.which("java")
    if not java or not shutil.which("javac"):
        raise Skip("java with its compiler is not installed (Debian package "
                   "openjdk-17-jdk-headless; the single-file source launcher compiles)")
    return java


def test_java_httpclient_urlconnection_sse_and_websocket_with_airlock_env_only(env):
    java = _java()
    with Runtime(env) as rt:
        check("JAVA_TOOL_OPTIONS" in rt.vars, "airlock env prints no JAVA_TOOL_OPTIONS")
        d = _copy_client(env, "RuntimeClient.java")
        ws = "wss://%s:%d/ws" % (NAME, rt.up.port)
        lines = rt.run([java, "RuntimeClient.java", rt.base, ws, rt.plain_base], d)
        rt.check_results(lines, {"GET": "/java-get?q=1", "POST": "/java-post",
                                 "URLCONNECTION": "/java-urlconnection",
                                 "PLAIN": "/java-plain"}, "hello from java")
        check_eq([l for l in lines if l.startswith("WS ")],
                 ["WS hello from upstream", "WS hello from java", "WS closed 1000"],
                 "WebSocket messages: the upstream's first, the echo, the close")
        check(find_log(rt.al, lambda l: _get(l, "http_request.url.path") == "/ws"),
              "airlock logged no WebSocket upgrade")


# ---------------------------------------------------------------------------------------------
# The Java trust store, and the JVM options that name it.
# ---------------------------------------------------------------------------------------------

def _keytool_list(path):
    keytool = shutil.which("keytool")
    if not keytool:
        raise Skip("keytool is not installed (Debian package openjdk-17-jre-headless)")
    # No -storepass: the store has no MAC and no password, and keytool must not need one.
    r = subprocess.run([keytool, "-list", "-v", "-keystore", path, "-storetype", "PKCS12"],
                       capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    out = r.stdout.decode("utf-8", "replace")
    check_eq(r.returncode, 0, "keytool -list exit code: %s%s" % (out, r.stderr.decode()))
    return out


def _fingerprint(pem_path):
    with open(pem_path) as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    h = hashlib.sha256(der).hexdigest().upper()
    return ":".join(h[i:i + 2] for i in range(0, len(h), 2))


def test_java_truststore_holds_the_ca_as_its_one_trusted_entry(env):
    d = env.path("ca")
    check_eq(env.run_cli(["ca", "init", "--dir", d]).returncode, 0, "ca init")
    store = os.path.join(d, "truststore.p12")
    check_eq(oct(os.stat(store).st_mode & 0o777), oct(0o644), "truststore.p12 mode")
    out = _keytool_list(store)
    check("Your keystore contains 1 entry" in out, "keytool does not see one entry:\n" + out)
    check("Entry type: trustedCertEntry" in out, "not a trusted certificate entry:\n" + out)
    check("PrivateKeyEntry" not in out, "the trust store holds a key:\n" + out)
    check(_fingerprint(os.path.join(d, "ca.pem")) in out,
          "the entry is not ca.pem's certificate:\n" + out)


def _serve_once(env, ca_dir, tag):
    """Start `airlock run` on ca_dir until it accepts, then stop it with SIGTERM (exit 0, no
    sanitizer report). Returns its stderr."""
    policy = write_policy(env.path("policy-%s.json" % tag), [endpoint(LOOPBACK4, 9)])
    port = free_port()
    p = subprocess.Popen([env.binary, "run", "--listen", "%s:%d" % (LOOPBACK4, port), "--ca-dir",
                          ca_dir, "--policy", policy, "--workers", "1"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    try:
        def accepting():
            try:
                socket.create_connection((LOOPBACK4, port), timeout=1).close()
                return True
            except OSError:
                return p.poll() is not None
        wait_until(accepting, START_TIMEOUT)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=STOP_TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    text = err.decode("utf-8", "replace")
    check_eq(p.returncode, 0, "airlock run exit code (%s)" % text[-2000:])
    for mark in SANITIZER_MARKS:
        check(mark not in text, "sanitizer report:\n" + text)
    return text


def test_run_writes_the_java_truststore_when_missing_or_stale_and_leaves_it_otherwise(env):
    d = env.path("ca")
    check_eq(env.run_cli(["ca", "init", "--dir", d]).returncode, 0, "ca init")
    store = os.path.join(d, "truststore.p12")
    with open(store, "rb") as f:
        made = f.read()
    os.unlink(store)  # as a CA made by an older airlock has none
    log = _serve_once(env, d, "missing")
    check("truststore.p12" in log, "no log line about the written trust store:\n" + log)
    with open(store, "rb") as f:
        check(f.read() == made, "the trust store written at run differs from ca init's")
    check_eq(oct(os.stat(store).st_mode & 0o777), oct(0o644), "truststore.p12 mode")

    # Up to date: left alone, not rewritten at every start.
    ino = os.stat(store).st_ino
    log = _serve_once(env, d, "current")
    check_eq(os.stat(store).st_ino, ino, "inode of an up-to-date trust store after a start")
    check("truststore.p12" not in log, "a log line about an up-to-date trust store:\n" + log)

    # Stale (another CA's, or garbage) or a symlink planted in its place: replaced, and the
    # symlink's target left untouched.
    with open(store, "wb") as f:
        f.write(b"not a trust store")
    _serve_once(env, d, "stale")
    with open(store, "rb") as f:
        check(f.read() == made, "a stale trust store was not replaced")
    target = env.path("elsewhere")
    with open(target, "wb") as f:
        f.write(b"untouched")
    os.unlink(store)
    os.symlink(target, store)
    _serve_once(env, d, "symlink")
    check(not os.path.islink(store), "the symlink is still there")
    with open(store, "rb") as f:
        check(f.read() == made, "the trust store behind a symlink was not written")
    with open(target, "rb") as f:
        check_eq(f.read(), b"untouched", "the symlink's target")


def test_java_tool_options_keep_a_ca_dir_with_spaces_whole(env):
    java = _java()
    d = env.path("a ca 'dir'")
    check_eq(env.run_cli(["ca", "init", "--dir", d]).returncode, 0, "ca init")
    r = env.run_cli(["env", "--listen", "127.0.0.1:3999", "--ca-dir", d])
    check_eq(r.returncode, 0, "airlock env exit code (%s)" % r.stderr.decode())
    p = subprocess.run(["bash", "-c", 'eval "$1"; exec "$2" -XshowSettings:properties -version',
                        "bash", r.stdout.decode(), java],
                       capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
                       env=_base_env(env))
    check_eq(p.returncode, 0, "java -version exit code: %s" % p.stderr.decode()[-2000:])
    props = dict(re.findall(r"^\s+(\S+) = (.*)$", p.stderr.decode(), re.M))
    check_eq(props.get("javax.net.ssl.trustStore"),
             os.path.join(os.path.realpath(d), "truststore.p12"), "the JVM's trust store")
    check_eq(props.get("https.proxyPort"), "3999", "the JVM's https.proxyPort")
    check_eq(props.get("http.nonProxyHosts"), "localhost|127.0.0.1|[::1]", "http.nonProxyHosts")


def test_env_warns_when_the_java_truststore_is_missing_and_refuses_a_bad_listen(env):
    d = env.path("ca")
    check_eq(env.run_cli(["ca", "init", "--dir", d]).returncode, 0, "ca init")
    os.unlink(os.path.join(d, "truststore.p12"))
    r = env.run_cli(["env", "--ca-dir", d])
    check_eq(r.returncode, 0, "airlock env exit code (%s)" % r.stderr.decode())
    check(b"JAVA_TOOL_OPTIONS" in r.stdout, "no JAVA_TOOL_OPTIONS without the trust store")
    check(b"truststore.p12" in r.stderr and b"airlock run" in r.stderr,
          "no warning about the missing trust store: %r" % r.stderr)
    # The Java options need the proxy's host and port apart.
    r = env.run_cli(["env", "--ca-dir", d, "--listen", "no-port"])
    check_eq(r.returncode, 1, "airlock env exit code with --listen no-port")
    check(b"HOST:PORT" in r.stderr, "no message naming HOST:PORT: %r" % r.stderr)
    check_eq(r.stdout, b"", "output with a bad --listen")


# ---------------------------------------------------------------------------------------------
# Go.
# ---------------------------------------------------------------------------------------------

def _go():
    go = shutil.which("go")
    if not go:
        raise Skip("go is not installed (Debian package golang-go)")
    return go


def _go_env(env):
    """Go's own settings, none about the network: the build cache and module path in the test's
    directory, and no module proxy or toolchain download (offline; std only)."""
    return {"GOCACHE": env.path("gocache"), "GOPATH": env.path("gopath"), "GOPROXY": "off",
            "GOTOOLCHAIN": "local", "GOFLAGS": "", "GOENV": "off"}


def test_go_net_http_get_post_and_sse_with_airlock_env_only(env):
    go = _go()
    with Runtime(env) as rt:
        d = _copy_client(env, "runtime_client.go")
        lines = rt.run([go, "run", "runtime_client.go", rt.base, rt.plain_base], d,
                       extra=_go_env(env))
        rt.check_results(lines, {"GET": "/go-get?q=1", "POST": "/go-post", "PLAIN": "/go-plain"},
                         "hello from go")


def test_go_websocket(env):
    raise Skip("Go's standard library has no WebSocket client (golang.org/x/net/websocket and "
               "others are modules outside it); Go's HTTP through airlock is tested above")
