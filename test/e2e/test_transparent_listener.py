# SPDX-License-Identifier: MIT
"""Transparent mode end to end: clients that know nothing of any proxy (a raw socket, Python's
websockets, Node's built-in fetch) connect to an address of their own choosing; the kernel
redirects them to airlock's transparent listener (`airlock rules ... | nft -f -`), and airlock
judges them by the name in their first bytes and relays them like a CONNECT tunnel.

Each test makes a network namespace and a mount namespace of its own (unshare) and runs its
scenario inside them: this file, run as a script (`python3 THIS inside SCENARIO SPEC`), is that
part; run.py only imports it. Inside, everything lives on the namespace's own loopback device:
127.0.0.1, ::1, and the documentation addresses 192.0.2.1 and 2001:db8::1 added to it; a hosts
file bind-mounted over /etc/hosts names api.test as 192.0.2.1 for every resolver in there,
airlock's included. Nothing leaves the namespace.

airlock runs with `--mark 42`, and the ruleset leaves sockets with that mark alone: airlock's own
upstream connections to 192.0.2.1 must reach the upstream there instead of coming back to it.
Tests skip with the reason where unshare, nft, websockets or node are unavailable, and when not
run as root.
"""

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import (CertPair, Env, HttpClient, Reader, Skip, build_request,  # noqa: E402
                     check, check_eq, client_ctx, wait_until)
from support import check_deny, policy_doc, start_airlock, wait_log  # noqa: E402
from test_transparent import _nft, _out, _sh  # noqa: E402  (the rules tests' helpers)

TPORT = 15001
MARK = 42
NS4 = "192.0.2.1"
NS6 = "2001:db8::1"
NAME = "api.test"  # NS4, by the namespace's hosts file
DENIED = "denied.test"
SKIP_EXIT = 77
NO_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "ws_proxy", "wss_proxy")


# ---- the outside: make the namespaces and run a scenario in them -------------------------------

def _unshare():
    """unshare's command line for a new network and mount namespace, or Skip."""
    if os.geteuid() != 0:
        # In a user namespace of its own, every directory above airlock's log file belongs to
        # an unmapped uid, and airlock refuses to log below a directory another user may swap.
        raise Skip("needs root: airlock refuses a log file below the unmapped directories "
                   "a user namespace (unshare -r) shows")
    cmd = ["unshare", "-n", "-m"]
    try:
        r = subprocess.run(cmd + ["true"], capture_output=True, timeout=10,
                           stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise Skip("unshare is not installed")
    if r.returncode != 0:
        raise Skip("cannot make a network and mount namespace: %s" % _out(r).strip())
    return cmd


def _in_namespace(env, scenario):
    nft = _nft()
    cmd = _unshare()
    ns_leaf = env.pki.make_leaf(NAME, [NAME], [NS4, NS6], tag="transparent-ns")
    spec = {"binary": env.binary, "nft": nft, "tmp": env.tmp, "verbose": env.verbose,
            "ca": env.pki.ca.cert, "leaf": [env.pki.leaf.cert, env.pki.leaf.key],
            "ns_leaf": [ns_leaf.cert, ns_leaf.key]}
    r = subprocess.run(cmd + [sys.executable, os.path.abspath(__file__), "inside", scenario,
                              json.dumps(spec)],
                       capture_output=True, timeout=90, stdin=subprocess.DEVNULL)
    out = _out(r)
    if r.returncode == SKIP_EXIT:
        raise Skip(out.strip().splitlines()[-1] if out.strip() else "skipped")
    check(r.returncode == 0, "scenario %s failed (exit %d):\n%s" % (scenario, r.returncode, out))


def test_run_mark_refuses_zero_and_a_missing_capability(env):
    r = env.run_cli(["run", "--mark", "0"])
    check_eq(r.returncode, 1, "exit code of run --mark 0")
    check("mark 0" in _out(r), "no message names the bad mark: %s" % _out(r))
    # A user namespace of its own gives no capability over the network namespace it shares.
    r = subprocess.run(["unshare", "-r", env.binary, "run", "--mark", "42", "--listen",
                        "127.0.0.1:0", "--log-format", "text"],
                       capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    if r.returncode != 0 and b"unshare" in r.stderr and b"--mark" not in r.stderr:
        raise Skip("cannot make a user namespace: %s" % _out(r).strip())
    check_eq(r.returncode, 1, "exit code of run --mark without CAP_NET_ADMIN")
    check("--mark 42: cannot mark sockets" in _out(r) and "CAP_NET_ADMIN" in _out(r),
          "no message says why --mark failed: %s" % _out(r))


def test_tls_by_sni_is_relayed_and_judged(env):
    _in_namespace(env, "tls_sni")


def test_tls_to_a_host_the_policy_does_not_name_is_refused(env):
    _in_namespace(env, "tls_denied_host")


def test_tls_refusals_are_answered_inside_tls(env):
    _in_namespace(env, "tls_refusals")


def test_first_bytes_sent_slowly_are_cut_off(env):
    _in_namespace(env, "slow_first_bytes")


def test_plain_http_by_host_is_relayed_and_judged(env):
    _in_namespace(env, "http_host")


def test_tls_without_sni_is_judged_by_ip_and_airlocks_own_dial_is_not_redirected(env):
    _in_namespace(env, "no_sni")


def test_python_websockets_without_proxy_variables(env):
    _in_namespace(env, "websockets")


def test_node_fetch_without_proxy_variables(env):
    _in_namespace(env, "node_fetch")


def test_a_connection_straight_to_the_transparent_port_is_closed(env):
    _in_namespace(env, "direct")


def test_neither_tls_nor_http_is_piped_to_a_tcp_endpoint_or_closed(env):
    _in_namespace(env, "tcp")


# ---- the inside: the namespace's addresses, rules, airlock and clients -------------------------


class Namespace:
    """What a scenario works with: the Env (upstreams and airlock are cleaned up by it), whether
    IPv6 is there, and the paths of the harness PKI."""

    def __init__(self, spec):
        self.spec = spec
        self.binary = spec["binary"]
        self.nft = spec["nft"]
        pki = types.SimpleNamespace(ca=CertPair(spec["ca"], None), leaf=CertPair(*spec["leaf"]))
        self.ns_leaf = CertPair(*spec["ns_leaf"])
        self.env = Env(self.binary, pki, spec["tmp"], spec["verbose"])
        self.v6 = False
        self.al = None

    def setup(self):
        _sh("ip", "link", "set", "lo", "up")
        _sh("ip", "addr", "add", NS4 + "/32", "dev", "lo")
        try:
            _sh("ip", "-6", "addr", "add", NS6 + "/128", "dev", "lo", "nodad")
            self.v6 = True
        except RuntimeError:
            self.v6 = False
        hosts = self.env.path("hosts")
        with open(hosts, "w") as f:
            f.write("127.0.0.1 localhost\n::1 localhost\n%s %s\n" % (NS4, NAME))
        _sh("mount", "--bind", hosts, "/etc/hosts")
        ruleset = _sh(self.binary, "rules", "--transparent-port", str(TPORT), "--mark", str(MARK),
                      "--ports", "80,443,22,2222")
        _sh(self.nft, "-f", "-", stdin=ruleset)

    def airlock(self, endpoints, args=()):
        """airlock with a proxy port (the harness's), the transparent listeners and --mark."""
        argv = ["--transparent", "127.0.0.1:%d" % TPORT, "--mark", str(MARK)]
        if self.v6:
            argv += ["--transparent", "[::1]:%d" % TPORT]
        self.al = start_airlock(self.env, policy_doc({"transparent": endpoints}),
                                argv + list(args))
        return self.al

    def upstream(self, host, port, tls=True, cert=None, handler=None):
        kw = {"handler": handler} if handler else {}
        return self.env.upstream(tls=tls, cert=cert or self.ns_leaf, host=host, port=port, **kw)

    def connect(self, host, port, timeout=5):
        s = socket.create_connection((host, port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.al.clients.append(s)
        return s

    def tls(self, host, port, server_hostname):
        """TLS to host:port verified against airlock's CA for server_hostname (an IP sends no
        SNI)."""
        s = client_ctx(self.al.ca_pem).wrap_socket(self.connect(host, port),
                                                   server_hostname=server_hostname)
        self.al.clients.append(s)
        return s

    def logged(self, text, timeout=3.0):
        return wait_log(self.al, lambda l: text in json.dumps(l), timeout)

    def client_env(self):
        """The environment of a client program: no proxy variable of any case."""
        return {k: v for k, v in os.environ.items() if k.lower() not in NO_PROXY_VARS}


def _ep(host, port, ips, **extra):
    d = {"host": host, "port": port, "access": "full", "allowed_ips": list(ips)}
    d.update(extra)
    return d


ADMIN_DENY = [{"method": "*", "path": "/admin/**"}]
LOOP_IPS = ["127.0.0.0/8", "::1/128"]
NS_IPS = [NS4 + "/32", NS6 + "/128"]
MISMATCH = "original destination is not among airlock's answers"


def _echo(resp, what):
    check_eq(resp.status, 200, what)
    return resp.json()


def _scenario_tls_sni(ns):
    """SNI names the host; the original destination's port is the port; airlock dials its own
    answers for the name (127.0.0.1 for localhost, not 192.0.2.1: a finding), relays the
    request, and refuses a path the policy denies with the usual 403 inside TLS."""
    up = ns.upstream("127.0.0.1", 443, cert=ns.env.pki.leaf)
    ns.airlock([_ep("localhost", 443, LOOP_IPS, deny_rules=ADMIN_DENY)])
    c = HttpClient(ns.tls(NS4, 443, "localhost"), "localhost")
    j = _echo(c.request("GET", "/hello?x=1"), "GET through the redirect")
    check_eq(j["target"], "/hello?x=1", "what reached the upstream")
    check_eq(dict((k.lower(), v) for k, v in j["headers"]).get("host"), "localhost",
             "the Host the upstream saw")
    _echo(c.request("POST", "/again", body=b"keep-alive"), "a second request, same connection")
    check_deny(c.request("GET", "/admin/users"), "policy_denied")
    check_eq([q.target for q in up.requests], ["/hello?x=1", "/again"],
             "the denied request did not reach the upstream")
    check(ns.logged(MISMATCH), "no finding logged for an original destination (%s) that is not "
          "among airlock's answers for localhost" % NS4)
    if ns.v6:
        c6 = HttpClient(ns.tls(NS6, 443, "localhost"), "localhost")
        _echo(c6.request("GET", "/v6"), "GET through the IPv6 redirect")
        check_eq(up.requests[-1].target, "/v6", "the IPv6 client's request reached the upstream")


def _scenario_tls_denied_host(ns):
    """A ClientHello naming a host no endpoint allows: nothing is dialled, and the client still
    completes a handshake (a leaf for the name it asked for) and reads the usual 403 JSON."""
    up = ns.upstream(NS4, 443)
    ns.airlock([_ep(NAME, 443, NS_IPS)])
    c = HttpClient(ns.tls(NS4, 443, DENIED), DENIED)
    j = check_deny(c.request("GET", "/"), "policy_denied")
    check_eq((j.get("host"), j.get("port")), (DENIED, 443), "the host and port the 403 names")
    closed, _ = c.wait_closed(5)
    check(closed, "the connection stays open after the 403")
    check_eq(up.accepts, 0, "nothing reached an upstream")
    check(ns.logged(DENIED), "no log line names the refused host")


def _scenario_tls_refusals(ns):
    """Every refusal before the upstream's handshake reaches a TLS client inside its own
    completed handshake: a name that resolves to an address the endpoint does not open (403
    ssrf_denied), an upstream that refuses the connection (502)."""
    ns.airlock([_ep(NAME, 443, LOOP_IPS), _ep("localhost", 443, LOOP_IPS)])
    c = HttpClient(ns.tls(NS4, 443, NAME), NAME)
    check_deny(c.request("GET", "/"), "ssrf_denied")
    c = HttpClient(ns.tls(NS4, 443, "localhost"), "localhost")
    r = c.request("GET", "/")
    check_eq((r.status, r.json().get("error")), (502, "upstream_connect_failed"),
             "the answer when nothing listens upstream")
    check(c.wait_closed(5)[0], "the connection stays open after the 502")


def _client_hello(name):
    """The first flight of a TLS client for name, as bytes."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname=name)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def _scenario_slow_first_bytes(ns):
    """A client that sends its ClientHello a byte at a time cannot hold the connection: from its
    first byte, the whole of it must come within --handshake-timeout (silence alone waits for
    --idle-timeout)."""
    up = ns.upstream("127.0.0.1", 443, cert=ns.env.pki.leaf)
    ns.airlock([_ep("localhost", 443, LOOP_IPS)], ["--handshake-timeout", "1",
                                                   "--idle-timeout", "1"])
    hello = _client_hello("localhost")
    s = ns.connect(NS4, 443)
    t0 = time.monotonic()
    closed_at = None
    for i in range(len(hello) - 1):  # never the last byte
        try:
            s.sendall(hello[i:i + 1])
        except OSError:
            closed_at = time.monotonic()
            break
        s.settimeout(0.25)
        try:
            if s.recv(1) == b"":
                closed_at = time.monotonic()
                break
        except socket.timeout:
            pass
        except OSError:
            closed_at = time.monotonic()
            break
        if time.monotonic() - t0 > 4:
            break
    check(closed_at is not None, "a ClientHello dripped a byte every 0.25 s held the connection "
          "for %.1f s" % (time.monotonic() - t0))
    check(closed_at - t0 < 2.5, "closed only after %.1f s" % (closed_at - t0))
    check_eq(up.accepts, 0, "nothing was dialled")
    check(ns.logged("did not come in time"), "no log line for the slow first bytes")


def _scenario_http_host(ns):
    """Plain HTTP: the Host field names the host, the relay judges every request."""
    up = ns.upstream("127.0.0.1", 80, tls=False)
    ns.airlock([_ep("localhost", 80, LOOP_IPS, deny_rules=ADMIN_DENY)])
    c = HttpClient(ns.connect(NS4, 80), "localhost")
    j = _echo(c.request("GET", "/"), "plain GET through the redirect")
    check_eq(dict((k.lower(), v) for k, v in j["headers"]).get("host"), "localhost",
             "the Host the upstream saw")
    _echo(c.request("GET", "/second"), "a second request, same connection")
    check_deny(c.request("GET", "/admin/x"), "policy_denied")
    check_eq([q.target for q in up.requests], ["/", "/second"],
             "the denied request did not reach the upstream")
    other = HttpClient(ns.connect(NS4, 80), DENIED)
    j = check_deny(other.request("GET", "/"), "policy_denied")
    check_eq(j.get("host"), DENIED, "the host the 403 names")
    check_eq(len(up.requests), 2, "the denied host reached nothing")


def _scenario_no_sni(ns):
    """No SNI (the client connects by IP): judged by the original destination's IP, and airlock
    dials that same address, 192.0.2.1:443, which the ruleset would send back to airlock if its
    mark did not exempt it. The upstream there must get the request, once."""
    up = ns.upstream(NS4, 443)
    ns.airlock([_ep(NS4, 443, NS_IPS)])
    c = HttpClient(ns.tls(NS4, 443, NS4), NS4)
    j = _echo(c.request("GET", "/by-ip"), "GET by IP through the redirect")
    check_eq(j["target"], "/by-ip", "what reached the upstream")
    check_eq(up.accepts, 1, "connections the upstream at %s:443 accepted" % NS4)
    conns = wait_log(ns.al, lambda l: l.get("activity_name") == "CONNECT", 1.0)
    check_eq(len(conns), 1, "airlock saw one connection (a second would be its own, looped)")
    check(not ns.logged(MISMATCH, 0.3), "a finding for a destination that is airlock's answer")


_WS_CLIENT = r"""
import asyncio, json, ssl, sys
import websockets

async def main(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    out = {}
    for scheme, kw in (("wss", {"ssl": ctx}), ("ws", {})):
        async with websockets.connect("%s://api.test/ws" % scheme, open_timeout=5, **kw) as ws:
            first = await ws.recv()
            await ws.send("ping through airlock")
            out[scheme] = [first, await ws.recv()]
    try:
        async with websockets.connect("wss://api.test/admin/ws", ssl=ctx, open_timeout=5):
            out["denied"] = 101
    except websockets.exceptions.InvalidStatusCode as e:
        out["denied"] = e.status_code
    print(json.dumps(out))

asyncio.run(main(sys.argv[1]))
"""


def _system_python_with(module):
    py = "/usr/bin/python3"
    if not os.access(py, os.X_OK):
        raise Skip("no /usr/bin/python3")
    r = subprocess.run([py, "-c", "import " + module], capture_output=True, timeout=30)
    if r.returncode != 0:
        raise Skip("/usr/bin/python3 has no %s (Debian package python3-%s)" % (module, module))
    return py


def _run_client(ns, argv, extra_env=None):
    env = ns.client_env()
    env.update(extra_env or {})
    r = subprocess.run(argv, capture_output=True, timeout=30, env=env, stdin=subprocess.DEVNULL)
    check(r.returncode == 0, "%s exited %d: %s" % (argv[0], r.returncode, _out(r)))
    return json.loads(r.stdout.decode().strip().splitlines()[-1])


def _scenario_websockets(ns):
    """Python's websockets ignores proxy variables: by name (api.test is 192.0.2.1 here), wss://
    and ws:// reach the upstream through the redirect and echo; a denied path gets 403."""
    py = _system_python_with("websockets")
    ups = [ns.upstream(NS4, 443), ns.upstream(NS4, 80, tls=False)]
    ns.airlock([_ep(NAME, 443, NS_IPS, deny_rules=ADMIN_DENY), _ep(NAME, 80, NS_IPS)])
    out = _run_client(ns, [py, "-c", _WS_CLIENT, ns.al.ca_pem])
    want = ["hello from upstream", "ping through airlock"]
    check_eq(out.get("wss"), want, "wss:// echo")
    check_eq(out.get("ws"), want, "ws:// echo")
    check_eq(out.get("denied"), 403, "the status of a denied upgrade")
    check_eq([[q.target for q in up.requests] for up in ups], [["/ws"], ["/ws"]],
             "what reached the upstreams (not the denied one)")
    check(not ns.logged(MISMATCH, 0.3), "a finding, though api.test is the original destination")


_NODE_CLIENT = r"""
const out = {};
(async () => {
  let r = await fetch("https://api.test/hello?from=node");
  out.get = [r.status, (await r.json()).target];
  r = await fetch("https://api.test/mirror", {method: "POST", body: "node body"});
  out.post = [r.status, await r.text()];
  r = await fetch("https://api.test/admin/x");
  out.denied = [r.status, (await r.json()).error];
  r = await fetch("http://api.test/plain");
  out.plain = [r.status, (await r.json()).target];
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e, e.cause); process.exit(1); });
"""


def _scenario_node_fetch(ns):
    """Node's built-in fetch ignores proxy variables: it reaches the upstream through the
    redirect over https (trusting airlock's CA by NODE_EXTRA_CA_CERTS) and http."""
    node = shutil.which("node") or shutil.which("nodejs")
    if not node:
        raise Skip("node is not installed (Debian package nodejs)")
    ups = [ns.upstream(NS4, 443), ns.upstream(NS4, 80, tls=False)]
    ns.airlock([_ep(NAME, 443, NS_IPS, deny_rules=ADMIN_DENY), _ep(NAME, 80, NS_IPS)])
    out = _run_client(ns, [node, "-e", _NODE_CLIENT], {"NODE_EXTRA_CA_CERTS": ns.al.ca_pem,
                                                       "NODE_NO_WARNINGS": "1"})
    check_eq(out.get("get"), [200, "/hello?from=node"], "GET")
    check_eq(out.get("post"), [200, "node body"], "POST /mirror")
    check_eq(out.get("denied"), [403, "policy_denied"], "a denied path")
    check_eq(out.get("plain"), [200, "/plain"], "plain http://")
    check_eq([[q.target for q in up.requests] for up in ups],
             [["/hello?from=node", "/mirror"], ["/plain"]], "what reached the upstreams")


def _scenario_direct(ns):
    """A client that dials the transparent port itself was not redirected (or is a loop): the
    connection is closed before a byte is read, with a log line."""
    ns.airlock([_ep("localhost", 443, LOOP_IPS)])
    targets = [("127.0.0.1", TPORT)] + ([("::1", TPORT)] if ns.v6 else [])
    for host, port in targets:
        s = ns.connect(host, port)
        try:
            s.sendall(build_request("GET", "/", [("Host", "localhost")]))
        except OSError:
            pass
        closed, seen = Reader(s).wait_eof(5)
        check(closed, "a direct connection to [%s]:%d stayed open" % (host, port))
        check_eq(seen, b"", "bytes airlock sent to a direct connection")
    wait_until(lambda: len(ns.logged("not redirected", 0)) >= len(targets), 3.0)
    check_eq(len(ns.logged("not redirected", 0)), len(targets),
             "log lines for connections that were not redirected")


class _BannerEcho:
    """A server-speaks-first TCP service on host:port (SSH-like): a banner line, then every byte
    back."""

    BANNER = b"SSH-2.0-airlock-e2e\r\n"

    def __init__(self, host, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, port))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.accepts = 0
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepts += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        c.settimeout(10)
        try:
            c.sendall(self.BANNER)
            while True:
                data = c.recv(65536)
                if not data:
                    return
                c.sendall(data)
        except OSError:
            pass
        finally:
            c.close()

    def stop(self):
        self.stopped = True
        self.sock.close()
        self.thread.join(2)


def _recv_n(s, n):
    out = b""
    while len(out) < n:
        d = s.recv(n - len(out))
        if not d:
            raise EOFError("EOF after %r" % out)
        out += d
    return out


def _scenario_tcp(ns):
    """Bytes that are neither TLS nor HTTP, or silence until the sniff gives up (a protocol
    whose server speaks first), are matched as a `tcp` endpoint on the original destination
    and piped untouched."""
    srv = _BannerEcho(NS4, 22)
    ns.env.upstreams.append(srv)
    ns.airlock([{"host": NS4, "port": 22, "protocol": "tcp", "allowed_ips": [NS4 + "/32"]}],
               ["--idle-timeout", "0.5"])
    banner = _BannerEcho.BANNER
    talker = ns.connect(NS4, 22)
    talker.sendall(b"client speaks first\n")
    check_eq(_recv_n(talker, len(banner) + 20), banner + b"client speaks first\n",
             "banner and echo for a client that spoke first")
    t0 = time.monotonic()
    quiet = ns.connect(NS4, 22)
    check_eq(_recv_n(quiet, len(banner)), banner, "banner for a client that waits")
    check(time.monotonic() - t0 < 3, "the banner came after the sniff timeout, not much later")
    quiet.sendall(b"then talks\n")
    check_eq(_recv_n(quiet, 11), b"then talks\n", "echo after the banner")
    check_eq(srv.accepts, 2, "connections the service accepted")
    # A destination no endpoint names: no HTTP answer to a client that spoke no HTTP.
    other = ns.connect(NS4, 2222)
    other.sendall(b"SSH-2.0-client\r\n")
    closed, seen = Reader(other).wait_eof(5)
    check(closed, "a connection to a destination no endpoint names stayed open")
    check_eq(seen, b"", "what airlock sent a client that spoke neither TLS nor HTTP")
    check(ns.logged("no endpoint matches host and port"), "no log line for the refusal")


SCENARIOS = {
    "tls_sni": _scenario_tls_sni,
    "tls_denied_host": _scenario_tls_denied_host,
    "tls_refusals": _scenario_tls_refusals,
    "slow_first_bytes": _scenario_slow_first_bytes,
    "http_host": _scenario_http_host,
    "no_sni": _scenario_no_sni,
    "websockets": _scenario_websockets,
    "node_fetch": _scenario_node_fetch,
    "direct": _scenario_direct,
    "tcp": _scenario_tcp,
}


def _inside(scenario, spec):
    ns = Namespace(json.loads(spec))
    rc = 0
    try:
        ns.setup()
        SCENARIOS[scenario](ns)
    except Skip as e:
        print(str(e))
        rc = SKIP_EXIT
    except Exception:  # noqa: B902 - every failure, assertions included, is reported
        import traceback
        traceback.print_exc()
        print(ns.env.diagnostics())
        rc = 1
    errors = ns.env.cleanup()
    if errors:
        print("at stop: %s" % "; ".join(errors))
        print(ns.env.diagnostics())
        rc = 1
    sys.stdout.flush()
    os._exit(rc)  # daemon threads of the upstreams need no joining


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "inside":
    _inside(sys.argv[2], sys.argv[3])
