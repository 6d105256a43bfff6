# SPDX-License-Identifier: MIT
"""A DNS server for the resolver tests (Python standard library only).

airlock resolves names with the system resolver, which reads /etc/resolv.conf. The tests never
touch the machine's configuration: airlock runs in a user and mount namespace of its own
(`unshare --user --map-root-user --mount`) in which a resolv.conf naming this server, and a
gai.conf with RFC 6724's default address order, are bind-mounted over the real ones. The
network namespace is the machine's, so the server listens on port 53 of a random 127.x.y.z
address (root only) and every query stays on loopback. Where any of this is unavailable the
tests are skipped (harness.Skip).

Names are given as {name: Record}; anything else gets NXDOMAIN. A record's delay holds each
answer back, which is how a test makes a name slow.
"""

import os
import random
import socket
import struct
import subprocess
import threading

from harness import Skip

T_A, T_AAAA = 1, 28

# RFC 6724 §2.1's default policy table, so that ::1 sorts before 127.0.0.1 whatever the
# machine's own gai.conf prefers.
_GAI_CONF = """\
precedence ::1/128 50
precedence ::/0 40
precedence ::ffff:0:0/96 35
precedence 2002::/16 30
precedence 2001::/32 5
precedence fc00::/7 3
precedence ::/96 1
precedence fec0::/10 1
precedence 3ffe::/16 1
"""


class Record:
    def __init__(self, a=(), aaaa=(), delay=0.0):
        self.a = list(a)
        self.aaaa = list(aaaa)
        self.delay = delay


def _parse_query(data):
    """(id, flags, name, qtype, question bytes) of a standard query."""
    qid, flags, qdcount = struct.unpack("!HHH", data[:6])
    if qdcount != 1:
        raise ValueError("want one question")
    i = 12
    labels = []
    while data[i]:
        n = data[i]
        labels.append(data[i + 1:i + 1 + n].decode("ascii").lower())
        i += 1 + n
    qtype, _ = struct.unpack("!HH", data[i + 1:i + 5])
    return qid, flags, ".".join(labels), qtype, data[12:i + 5]


def _response(qid, flags, question, answers, rcode):
    # QR, AA, RA, the query's RD, and the rcode; the answers point back at the question name.
    rflags = 0x8000 | 0x0400 | 0x0080 | (flags & 0x0100) | rcode
    out = struct.pack("!HHHHHH", qid, rflags, 1, len(answers), 0, 0) + question
    for rtype, rdata in answers:
        out += struct.pack("!HHHIH", 0xC00C, rtype, 1, 300, len(rdata)) + rdata
    return out


class FakeDns:
    def __init__(self, records, workdir):
        self.records = {k.lower(): v for k, v in records.items()}
        self.workdir = workdir
        self.lock = threading.Lock()
        self.queries = {}  # (name, qtype) -> count
        self.sock = None
        self.addr = None
        self.stopped = False
        self.timers = []

    def start(self):
        _require_unshare()
        for _ in range(20):
            addr = "127.%d.%d.%d" % (random.randint(1, 254), random.randint(0, 255),
                                     random.randint(2, 254))
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.bind((addr, 53))
            except PermissionError:
                s.close()
                raise Skip("binding port 53 needs root")
            except OSError:
                s.close()
                continue
            self.sock, self.addr = s, addr
            break
        else:
            raise Skip("no free loopback address for port 53")
        self.sock.settimeout(0.2)
        threading.Thread(target=self._serve, name="fakedns", daemon=True).start()
        return self

    def stop(self):
        self.stopped = True
        for t in self.timers:
            t.cancel()
        if self.sock:
            self.sock.close()

    def count(self, name, qtype=T_A):
        with self.lock:
            return self.queries.get((name.lower(), qtype), 0)

    def wrapper(self):
        """The command that runs airlock in a namespace whose resolver is this server."""
        resolv = os.path.join(self.workdir, "resolv.conf")
        with open(resolv, "w") as f:
            f.write("nameserver %s\noptions timeout:10 attempts:1\n" % self.addr)
        gai = os.path.join(self.workdir, "gai.conf")
        with open(gai, "w") as f:
            f.write(_GAI_CONF)
        script = ('mount --bind "$0" /etc/resolv.conf && '
                  '{ [ ! -e /etc/gai.conf ] || mount --bind "$1" /etc/gai.conf; } && '
                  'shift && exec "$@"')
        return ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script,
                resolv, gai]

    def _serve(self):
        while not self.stopped:
            try:
                data, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                qid, flags, name, qtype, question = _parse_query(data)
            except (ValueError, IndexError, UnicodeDecodeError):
                continue
            with self.lock:
                self.queries[(name, qtype)] = self.queries.get((name, qtype), 0) + 1
            rec = self.records.get(name)
            if rec is None:
                reply = _response(qid, flags, question, [], 3)  # NXDOMAIN
            else:
                answers = []
                if qtype == T_A:
                    answers = [(T_A, socket.inet_pton(socket.AF_INET, a)) for a in rec.a]
                elif qtype == T_AAAA:
                    answers = [(T_AAAA, socket.inet_pton(socket.AF_INET6, a)) for a in rec.aaaa]
                reply = _response(qid, flags, question, answers, 0)
            delay = rec.delay if rec else 0.0
            if delay:
                t = threading.Timer(delay, self._send, (reply, peer))
                t.daemon = True
                self.timers.append(t)
                t.start()
            else:
                self._send(reply, peer)

    def _send(self, reply, peer):
        try:
            self.sock.sendto(reply, peer)
        except OSError:
            pass


_unshare_ok = None


def _require_unshare():
    global _unshare_ok
    if _unshare_ok is None:
        try:
            r = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                                "mount --bind /etc/resolv.conf /etc/resolv.conf"],
                               capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
            _unshare_ok = r.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            _unshare_ok = False
    if not _unshare_ok:
        raise Skip("unshare --user --mount is not available")
