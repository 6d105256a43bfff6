# SPDX-License-Identifier: MIT
"""The offline subcommands: `airlock ca init`, `airlock check`, `airlock --version`, and how
options are parsed."""

import json
import os
import subprocess

from harness import check, check_eq


def _out(r):
    return (r.stdout + r.stderr).decode("utf-8", "replace")


def _ca_init(env, d, *extra):
    return env.run_cli(["ca", "init", "--dir", d] + list(extra))


def _cert_text(pem):
    r = subprocess.run(["openssl", "x509", "-in", pem, "-noout", "-text"], capture_output=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    check(r.returncode == 0, "openssl x509 cannot read %s: %s" % (pem, r.stderr.decode()))
    return r.stdout.decode()


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def test_ca_init_creates_ca_files_with_private_key_0600(env):
    d = env.path("ca")
    r = _ca_init(env, d)
    check(r.returncode == 0, "ca init exited %d: %s" % (r.returncode, _out(r)))
    for name in ("ca.pem", "ca.key", "bundle.pem", "truststore.p12"):
        check(os.path.isfile(os.path.join(d, name)), "missing " + name)
    mode = os.stat(os.path.join(d, "ca.key")).st_mode & 0o777
    check_eq(oct(mode), oct(0o600), "ca.key mode")
    ca = _read(os.path.join(d, "ca.pem"))
    check(b"-----BEGIN CERTIFICATE-----" in ca, "ca.pem holds no certificate")
    check(ca.strip() in _read(os.path.join(d, "bundle.pem")), "bundle.pem does not contain ca.pem")
    key = _read(os.path.join(d, "ca.key"))
    check(b"PRIVATE KEY" in key, "ca.key holds no private key")
    check(b"PRIVATE KEY" not in ca and b"PRIVATE KEY" not in _read(os.path.join(d, "bundle.pem")),
          "a private key leaked into ca.pem or bundle.pem")


def test_ca_init_refuses_to_overwrite_without_force(env):
    d = env.path("ca")
    r = _ca_init(env, d)
    check(r.returncode == 0, "first ca init exited %d: %s" % (r.returncode, _out(r)))
    before = (_read(os.path.join(d, "ca.pem")), _read(os.path.join(d, "ca.key")))
    r = _ca_init(env, d)
    check(r.returncode != 0, "second ca init without --force exited 0")
    after = (_read(os.path.join(d, "ca.pem")), _read(os.path.join(d, "ca.key")))
    check(before == after, "ca init without --force changed the CA files")


def test_ca_init_force_replaces_ca(env):
    d = env.path("ca")
    r = _ca_init(env, d)
    check(r.returncode == 0, "first ca init exited %d: %s" % (r.returncode, _out(r)))
    old = _read(os.path.join(d, "ca.pem"))
    r = _ca_init(env, d, "--force")
    check(r.returncode == 0, "ca init --force exited %d: %s" % (r.returncode, _out(r)))
    check(_read(os.path.join(d, "ca.pem")) != old, "ca init --force kept the old certificate")
    mode = os.stat(os.path.join(d, "ca.key")).st_mode & 0o777
    check_eq(oct(mode), oct(0o600), "ca.key mode after --force")


def test_ca_cert_is_ca_with_pathlen_0_and_p256_key(env):
    d = env.path("ca")
    r = _ca_init(env, d)
    check(r.returncode == 0, "ca init exited %d: %s" % (r.returncode, _out(r)))
    text = _cert_text(os.path.join(d, "ca.pem"))
    check("CA:TRUE, pathlen:0" in text, "basicConstraints is not CA:TRUE, pathlen:0:\n" + text)
    check("Certificate Sign" in text, "keyUsage lacks Certificate Sign:\n" + text)
    check("prime256v1" in text or "P-256" in text, "CA key is not EC P-256:\n" + text)


def _policy(env, name, host):
    path = env.path(name)
    with open(path, "w") as f:
        json.dump({"version": 1, "network_policies": {
            "web": {"endpoints": [
                {"host": "api.example.com", "port": 443, "access": "read-only"},
                {"host": host, "ports": [443, "8000-8099"], "access": "full"}]}}}, f)
    return path


def test_check_accepts_valid_policy(env):
    r = env.run_cli(["check", "--policy", _policy(env, "good.json", "*.example.org")])
    check(r.returncode == 0, "check of a valid policy exited %d: %s" % (r.returncode, _out(r)))


def test_check_rejects_wildcard_tld_host_naming_json_path(env):
    r = env.run_cli(["check", "--policy", _policy(env, "bad.json", "*.com")])
    check_eq(r.returncode, 1, "exit code of check on host *.com")
    out = _out(r)
    check("network_policies." in out and ".host" in out,
          "error does not name the JSON path (network_policies....host): %r" % out)


def test_version_prints_airlock_and_library_versions(env):
    r = env.run_cli(["--version"])
    check_eq(r.returncode, 0, "exit code of --version")
    lines = r.stdout.decode().splitlines()
    names = [l.split(" ", 1)[0] for l in lines]
    check_eq(names, ["airlock", "libuv", "OpenSSL", "llhttp", "cJSON", "nghttp2"], "--version lines")
    for l in lines:
        version = l.split(" ", 1)[1] if " " in l else ""
        check(version[:1].isdigit() and "." in version, "no version in %r" % l)


def test_options_take_whole_names_and_values_after_equals(env):
    good = _policy(env, "good.json", "*.example.org")
    r = env.run_cli(["check", "--policy=" + good])
    check(r.returncode == 0, "check --policy=FILE exited %d: %s" % (r.returncode, _out(r)))
    # An abbreviation is refused, not taken for the option it starts.
    r = env.run_cli(["check", "--pol", good])
    check_eq(r.returncode, 1, "exit code of check --pol")
    check("check: unexpected argument --pol" in _out(r), "message: %r" % _out(r))
    r = env.run_cli(["run", "--listen"])
    check_eq(r.returncode, 1, "exit code of run --listen without a value")
    check("run: --listen needs a value" in _out(r), "message: %r" % _out(r))
    r = env.run_cli(["run", "--workers=65"])
    check_eq(r.returncode, 1, "exit code of run --workers=65")
    check("run: --workers takes 0 (one per core) to 64, not 65" in _out(r),
          "message: %r" % _out(r))
    r = env.run_cli(["run", "--idle-timeout=x"])
    check("run: --idle-timeout takes seconds" in _out(r), "message: %r" % _out(r))
