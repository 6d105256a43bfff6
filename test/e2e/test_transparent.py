# SPDX-License-Identifier: MIT
"""Transparent mode's pieces that work without the listener: `airlock rules` (its values
checked, its ruleset read by `nft -c`), and the ruleset applied for real in a network namespace
that the test makes itself, where redirected connections reach a stand-in listener
(test/helpers/origdst_probe) that must see their original destination through origdst_get(),
and airlock's own connections (by mark, or by uid) must not be redirected.

Every address used lives inside that namespace: 127.0.0.1, ::1, and 192.0.2.1 / 2001:db8::1
(documentation ranges) put on its own loopback device. Nothing leaves it. Tests skip with the
reason when nft (Debian's nftables) or unshare is unavailable.

Run as a script (`python3 test_transparent.py scenario MODE ...`), this file is the part that
runs inside the namespace; run.py only imports it.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import Skip, check, check_eq  # noqa: E402

TPORT = 15001
UPSTREAM4 = "192.0.2.1"
UPSTREAM6 = "2001:db8::1"
MARK = 0x2A
NOBODY = 65534


def _out(r):
    return (r.stdout + r.stderr).decode("utf-8", "replace")


def _nft():
    for p in (shutil.which("nft"), "/usr/sbin/nft", "/sbin/nft"):
        if p and os.access(p, os.X_OK):
            return p
    raise Skip("nft is not installed (Debian package nftables)")


def _unshare():
    """The unshare command line for a new network namespace, or Skip."""
    cmd = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
    try:
        r = subprocess.run(cmd + ["true"], capture_output=True, timeout=10,
                           stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise Skip("unshare is not installed")
    if r.returncode != 0:
        raise Skip("cannot make a network namespace: %s" % _out(r).strip())
    return cmd


def _probe(env):
    p = os.path.join(os.path.dirname(os.path.abspath(env.binary)), "test", "helpers",
                     "origdst_probe")
    check(os.access(p, os.X_OK), "origdst_probe not built next to the binary: %s" % p)
    return p


def _rules(env, *args):
    return env.run_cli(["rules", "--transparent-port", str(TPORT)] + list(args))


# ---- the command line --------------------------------------------------------------------------

def test_rules_refuses_bad_values_without_printing_a_ruleset(env):
    cases = [
        ([], "--uid UID or --mark MARK"),
        (["--uid", "995", "--mark", "42"], "exactly one of"),
        (["--uid", "0"], "uid 0"),
        (["--uid", "-1"], "uid -1"),
        (["--uid", "airlock"], "uid airlock"),
        (["--mark", "0"], "mark 0"),
        (["--mark", "0x1g"], "mark 0x1g"),
        (["--uid", "995", "--ports", "80,80"], "twice"),
        (["--uid", "995", "--ports", "80,"], "ports 80,"),
        (["--uid", "995", "--ports", "0"], "port 0"),
        (["--uid", "995", "--ports", "443,%d" % TPORT], "transparent port"),
        (["--uid", "995", "--family", "ipv4"], "family ipv4"),
        (["--uid", "995", "--ports"], "needs a value"),
        (["--uid", "995", "--port", "80"], "--port"),
        (["--uid", "995", "extra"], "extra"),
    ]
    for args, needle in cases:
        r = _rules(env, *args)
        check_eq(r.returncode, 1, "exit code of rules %s" % " ".join(args))
        check(r.stdout == b"", "rules %s printed a ruleset: %r" % (args, r.stdout[:200]))
        check(needle in r.stderr.decode(), "rules %s: no %r in %r" % (args, needle, _out(r)))
    for port in ("0", "65536", "08080", "x"):
        r = env.run_cli(["rules", "--transparent-port", port, "--uid", "995"])
        check_eq(r.returncode, 1, "exit code of rules --transparent-port %s" % port)
        check(r.stdout == b"", "rules --transparent-port %s printed a ruleset" % port)
    r = env.run_cli(["rules", "--uid", "995"])
    check_eq(r.returncode, 1, "exit code of rules without --transparent-port")
    check("--transparent-port PORT is required" in r.stderr.decode(), _out(r))


def test_rules_output_is_accepted_by_nft(env):
    nft = _nft()
    unshare = _unshare()
    variants = [
        ["--uid", "995"],
        ["--mark", "0x2a"],
        ["--mark", "4294967295", "--family", "ip"],
        ["--uid", "4294967294", "--family", "ip6", "--ports", "443"],
        ["--uid", "995", "--ports", ",".join(str(p) for p in range(8000, 8032))],
    ]
    for args in variants:
        r = _rules(env, *args)
        check_eq(r.returncode, 0, "exit code of rules %s: %s" % (args, _out(r)))
        c = subprocess.run(unshare + [nft, "-c", "-f", "-"], input=r.stdout, capture_output=True,
                           timeout=30)
        check(c.returncode == 0, "nft -c refused the ruleset of %s: %s\n%s"
              % (args, _out(c), r.stdout.decode()))


# ---- inside a namespace ------------------------------------------------------------------------

def _run_scenario(env, mode):
    nft = _nft()
    unshare = _unshare()
    if mode == "uid" and os.geteuid() != 0:
        raise Skip("a connection of another uid needs root to setuid in the namespace")
    cmd = unshare + [sys.executable, os.path.abspath(__file__), "scenario", mode,
                     os.path.abspath(env.binary), _probe(env), nft]
    r = subprocess.run(cmd, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    check(r.returncode == 0, "scenario %s failed (exit %d): %s" % (mode, r.returncode, _out(r)))
    return json.loads(r.stdout.decode().strip().splitlines()[-1])


def test_rules_redirect_to_the_listener_which_reads_the_original_destination(env):
    res = _run_scenario(env, "mark")
    check_eq(res["origdst4"], "%s:80" % UPSTREAM4, "original destination seen by the listener")
    if res["v6"]:
        check_eq(res["origdst6"], "[%s]:443" % UPSTREAM6, "IPv6 original destination")


def test_rules_leave_marked_loopback_and_unlisted_traffic_alone(env):
    res = _run_scenario(env, "mark")
    check_eq(res["marked_reached_upstream"], True, "a marked connection went to its destination")
    check_eq(res["loopback_reached"], True, "a loopback connection went to its destination")
    check_eq(res["unlisted_port_reached"], True, "port 8080 went to its destination")
    check_eq(res["reapplied"], True, "the ruleset applied twice in a row")


def test_rules_leave_the_excluded_uid_alone(env):
    res = _run_scenario(env, "uid")
    check_eq(res["uid_reached_upstream"], True, "uid %d's connection went to its destination"
             % NOBODY)
    check_eq(res["origdst4"], "%s:80" % UPSTREAM4, "root's connection was redirected")


# ---- the part that runs inside the namespace ---------------------------------------------------

class _Listener:
    """Accepts on host:port in a thread and counts connections."""

    def __init__(self, host, port):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.accepted = 0
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            self.accepted += 1
            c.close()

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()


def _sh(*cmd, stdin=None):
    r = subprocess.run(list(cmd), input=stdin, capture_output=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(cmd), _out(r)))
    return r.stdout


def _connect(host, port, mark=None):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(5)
    if mark is not None:
        s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_MARK", 36), mark)
    try:
        s.connect((host, port))
    finally:
        s.close()


def _reached(listener, connect):
    """True when connect() succeeds and listener (and nobody else) accepted it."""
    before = listener.accepted
    try:
        connect()
    except OSError:
        return False  # redirected to the transparent port, where nobody listens yet
    deadline = time.monotonic() + 3
    while listener.accepted == before and time.monotonic() < deadline:
        time.sleep(0.02)
    return listener.accepted == before + 1


def _connect_as_nobody():
    code = "import socket; socket.create_connection((%r, 80), timeout=5).close()" % UPSTREAM4
    py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    r = subprocess.run([py, "-c", code], capture_output=True, timeout=30,
                       preexec_fn=lambda: (os.setgid(NOBODY), os.setuid(NOBODY)))
    if r.returncode != 0:
        raise OSError("connect as uid %d: %s" % (NOBODY, _out(r)))


def _probe_origdst(probe, listen, host, port):
    p = subprocess.Popen([probe, listen, "10"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = p.stdout.readline().decode().strip()
        if line != "ready":
            raise RuntimeError("probe: %r %s" % (line, p.stderr.read().decode()))
        _connect(host, port)
        out, err = p.communicate(timeout=15)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    words = out.decode().split()
    if len(words) != 2 or words[0] != "origdst":
        raise RuntimeError("probe said %r %r" % (out, err))
    return words[1]


def _scenario(mode, binary, probe, nft):
    res = {}
    _sh("ip", "link", "set", "lo", "up")
    _sh("ip", "addr", "add", UPSTREAM4 + "/32", "dev", "lo")
    try:
        _sh("ip", "-6", "addr", "add", UPSTREAM6 + "/128", "dev", "lo", "nodad")
        res["v6"] = True
    except RuntimeError:
        res["v6"] = False
    excl = ["--mark", str(MARK)] if mode == "mark" else ["--uid", str(NOBODY)]
    ruleset = _sh(binary, "rules", "--transparent-port", str(TPORT), *excl)
    _sh(nft, "-f", "-", stdin=ruleset)
    _sh(nft, "-f", "-", stdin=ruleset)  # a second copy replaces the first
    res["reapplied"] = b"redirect to :%d" % TPORT in _sh(nft, "list", "table", "inet", "airlock")

    up80 = _Listener(UPSTREAM4, 80)
    up8080 = _Listener(UPSTREAM4, 8080)
    lo80 = _Listener("127.0.0.1", 80)
    try:
        if mode == "mark":
            res["marked_reached_upstream"] = _reached(up80, lambda: _connect(UPSTREAM4, 80, MARK))
        else:
            res["uid_reached_upstream"] = _reached(up80, _connect_as_nobody)
        res["loopback_reached"] = _reached(lo80, lambda: _connect("127.0.0.1", 80))
        res["unlisted_port_reached"] = _reached(up8080, lambda: _connect(UPSTREAM4, 8080))
        res["origdst4"] = _probe_origdst(probe, "127.0.0.1:%d" % TPORT, UPSTREAM4, 80)
        if res["v6"]:
            res["origdst6"] = _probe_origdst(probe, "[::1]:%d" % TPORT, UPSTREAM6, 443)
    finally:
        for listener in (up80, up8080, lo80):
            listener.close()
    print(json.dumps(res))


if __name__ == "__main__" and len(sys.argv) == 6 and sys.argv[1] == "scenario":
    _scenario(*sys.argv[2:])
