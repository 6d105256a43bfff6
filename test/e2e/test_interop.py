# SPDX-License-Identifier: MIT
"""Real clients: curl through airlock, as an agent's tools would use it."""

import json
import os
import shutil
import subprocess

from harness import Skip, check, check_eq


def _curl(args):
    curl = shutil.which("curl")
    if not curl:
        raise Skip("curl not installed")
    env = dict((k, v) for k, v in os.environ.items() if "proxy" not in k.lower())
    return subprocess.run([curl, "-sS", "--max-time", "20"] + args, capture_output=True,
                          timeout=30, stdin=subprocess.DEVNULL, env=env)


def test_curl_https_through_connect_tunnel(env):
    up = env.upstream()
    al = env.airlock([up])
    r = _curl(["--proxy", "http://127.0.0.1:%d" % al.port, "--cacert", al.ca_pem,
               "https://127.0.0.1:%d/from-curl?a=b" % up.port])
    check(r.returncode == 0, "curl exited %d: %s" % (r.returncode, r.stderr.decode()))
    j = json.loads(r.stdout)
    check_eq(j["target"], "/from-curl?a=b", "target seen upstream")


def test_curl_https_to_localhost_through_connect_tunnel(env):
    up = env.upstream(dual_stack=True)
    al = env.airlock([up])
    r = _curl(["--proxy", "http://127.0.0.1:%d" % al.port, "--cacert", al.ca_pem,
               "https://localhost:%d/named" % up.port])
    check(r.returncode == 0, "curl exited %d: %s" % (r.returncode, r.stderr.decode()))
    check_eq(json.loads(r.stdout)["target"], "/named", "target seen upstream")


def test_curl_plain_http_through_forward_proxy(env):
    up = env.upstream(tls=False)
    al = env.airlock([up])
    r = _curl(["--proxy", "http://127.0.0.1:%d" % al.port,
               "http://127.0.0.1:%d/plain" % up.port])
    check(r.returncode == 0, "curl exited %d: %s" % (r.returncode, r.stderr.decode()))
    check_eq(json.loads(r.stdout)["target"], "/plain", "target seen upstream")
