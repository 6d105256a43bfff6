# SPDX-License-Identifier: MIT
"""scripts/demo runs its five steps against the binary under test and cleans up after itself."""

import os
import signal
import subprocess

from harness import check

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(ROOT, "scripts", "demo")
DEMO_TIMEOUT = 50   # below the runner's default per-test limit of 60 s

STEPS = ("1/5 An allowed GET", "2/5 A denied POST", "3/5 Credential injection",
         "4/5 An unsolicited 101", "5/5 A WebSocket echo")


def _session_members(sid):
    """Pids of live processes in session sid (what the demo started and left behind)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        # fields[0] is the state, [3] the session id; a zombie has already exited.
        if len(fields) > 3 and fields[0] != "Z" and int(fields[3]) == sid:
            pids.append(int(name))
    return pids


def test_demo_runs_every_step_and_cleans_up(env):
    tmpdir = env.path("demo-tmp")
    os.makedirs(tmpdir)
    e = dict(os.environ, AIRLOCK_DEMO_BINARY=env.binary, TMPDIR=tmpdir)
    proc = subprocess.Popen([DEMO], cwd=ROOT, env=e, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=DEMO_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError("scripts/demo did not finish within %ds:\n%s" % (
            DEMO_TIMEOUT, out.decode("utf-8", "replace")[-4000:]))
    finally:
        leftovers = _session_members(proc.pid)
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    text = out.decode("utf-8", "replace")
    check(proc.returncode == 0, "scripts/demo exited %d:\n%s" % (proc.returncode, text[-4000:]))
    for step in STEPS:
        check(step in text, "the demo's output does not mention step %r:\n%s" % (step, text))
    check("HTTP 200" in text, "no 200 for the allowed GET")
    check("HTTP 403" in text and '"policy_denied"' in text, "no 403 policy_denied body")
    check("HTTP 502" in text, "no 502 for the unsolicited 101")
    check("received text frame 'hello through airlock'" in text, "no WebSocket echo")
    check("(credential injection not in this build)" in text or
          "the upstream received the secret" in text, "the credential step did not report")
    check("ALLOW GET" in text and "DENY POST" in text, "airlock's log lines are not shown")
    check("demo: all 5 steps behaved as expected" in text, "no closing line")
    check(not leftovers, "processes left running after the demo: %r" % leftovers)
    check(not os.listdir(tmpdir), "the demo left files in its temp dir: %r" % os.listdir(tmpdir))
