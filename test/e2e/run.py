#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The airlock end-to-end runner.

    python3 test/e2e/run.py --binary build/airlock [-k SUBSTRING] [-v] [--timeout SECONDS]

Finds test/e2e/test_*.py, runs every function test_*(env) in file order and then definition
order, one at a time, each with its own Env and a time limit. Prints PASS / FAIL / SKIP per test
and a last line `N passed, M failed, K skipped`; exits 1 when any test failed, 2 when the run
could not start.
"""

import argparse
import importlib.util
import os
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402


def discover(pattern):
    tests = []
    for fname in sorted(os.listdir(HERE)):
        if not (fname.startswith("test_") and fname.endswith(".py")):
            continue
        modname = fname[:-3]
        spec = importlib.util.spec_from_file_location(modname, os.path.join(HERE, fname))
        mod = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(mod)
        except Exception as e:  # a broken module is one failing test, not a crashed run
            err = "%s: %s" % (type(e).__name__, e)

            def broken(env, err=err):
                raise AssertionError("cannot import: " + err)
            if pattern is None or pattern in modname:
                tests.append(("%s.<import>" % modname, broken))
            continue
        for name, fn in vars(mod).items():  # definition order
            if name.startswith("test_") and callable(fn):
                full = "%s.%s" % (modname, name)
                if pattern is None or pattern in full:
                    tests.append((full, fn))
    return tests


def run_one(fn, env, timeout):
    """(outcome, reason): outcome is "pass", "fail" or "skip"."""
    result = {}

    def body():
        try:
            fn(env)
            result["outcome"] = ("pass", "")
        except harness.Skip as e:
            result["outcome"] = ("skip", str(e))
        except AssertionError as e:
            result["outcome"] = ("fail", str(e) or "assertion failed",
                                 traceback.format_exc())
        except BaseException as e:  # noqa: B902 - any error is a failure of this test
            result["outcome"] = ("fail", "%s: %s" % (type(e).__name__, e),
                                 traceback.format_exc())

    t = threading.Thread(target=body, name="test", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        return ("fail", "timed out after %ds" % timeout, "")
    return result["outcome"]


def main():
    ap = argparse.ArgumentParser(description="airlock end-to-end tests")
    ap.add_argument("--binary", default="build/airlock", help="the airlock executable")
    ap.add_argument("-k", dest="pattern", default=None, help="run tests whose name contains this")
    ap.add_argument("-v", dest="verbose", action="store_true", help="tracebacks and timings")
    ap.add_argument("--timeout", type=float, default=60.0, help="per-test limit in seconds")
    args = ap.parse_args()

    binary = os.path.abspath(args.binary)
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        print("e2e: no executable airlock at %s (build it first)" % binary, file=sys.stderr)
        return 2
    tests = discover(args.pattern)

    run_dir = harness.make_run_dir()
    passed = failed = skipped = 0
    try:
        try:
            os.makedirs(os.path.join(run_dir, "pki"))
            pki = harness.PKI(os.path.join(run_dir, "pki"))
        except Exception as e:
            print("e2e: could not make the test PKI: %s" % e, file=sys.stderr)
            return 2
        for i, (name, fn) in enumerate(tests):
            tmp = os.path.join(run_dir, "t%03d" % i)
            os.makedirs(tmp)
            env = harness.Env(binary, pki, tmp, args.verbose)
            t0 = time.monotonic()
            outcome = run_one(fn, env, args.timeout)
            cleanup_errors = env.cleanup()
            took = time.monotonic() - t0
            kind, reason = outcome[0], outcome[1]
            tb = outcome[2] if len(outcome) > 2 else ""
            if kind != "fail" and cleanup_errors:
                kind, reason = "fail", "; ".join(cleanup_errors)
            elif kind == "fail" and cleanup_errors:
                reason += " (and at stop: %s)" % "; ".join(cleanup_errors)
            timing = " (%.1fs)" % took if args.verbose else ""
            if kind == "pass":
                passed += 1
                print("PASS %s%s" % (name, timing))
            elif kind == "skip":
                skipped += 1
                print("SKIP %s: %s" % (name, reason))
            else:
                failed += 1
                print("FAIL %s: %s%s" % (name, reason, timing))
                if args.verbose and tb:
                    print(tb.rstrip())
                diag = env.diagnostics()
                if diag:
                    print("    " + diag.replace("\n", "\n    "))
            sys.stdout.flush()
    finally:
        harness.remove_run_dir(run_dir)
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
