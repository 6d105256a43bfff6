# SPDX-License-Identifier: MIT
"""The deployment files in deploy/: the Kubernetes manifest (parsed with python3-yaml), the
entrypoint run outside a container against the binary under test, the systemd unit (verified
with systemd-analyze, its command line run), and the Containerfile's shape (it cannot be built
here: no container engine)."""

import http.client
import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import time

from harness import (LOOPBACK4, SANITIZER_MARKS, START_TIMEOUT, STOP_TIMEOUT, Skip, check,
                     check_eq, endpoint, free_port, write_policy)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(ROOT, "deploy")
ENTRYPOINT = os.path.join(DEPLOY, "entrypoint.sh")
SYSTEM_PYTHON = "/usr/bin/python3"

# Parse every YAML document with the system python's yaml module (Debian's python3-yaml) and
# print them as one JSON array; exit 3 when the module is missing.
_YAML_TO_JSON = """\
import json, sys
try:
    import yaml
except ImportError:
    sys.exit(3)
with open(sys.argv[1]) as f:
    docs = [d for d in yaml.safe_load_all(f) if d is not None]
json.dump(docs, sys.stdout)
"""


def _load_manifest():
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        raise Skip("%s not found: cannot parse YAML with python3-yaml" % SYSTEM_PYTHON)
    r = subprocess.run([SYSTEM_PYTHON, "-c", _YAML_TO_JSON,
                        os.path.join(DEPLOY, "kubernetes.yaml")],
                       capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    if r.returncode == 3:
        raise Skip("python3-yaml is not installed (%s cannot import yaml); scripts/setup "
                   "installs it" % SYSTEM_PYTHON)
    check(r.returncode == 0, "deploy/kubernetes.yaml does not parse as YAML: %s" %
          r.stderr.decode("utf-8", "replace"))
    docs = json.loads(r.stdout.decode("utf-8"))
    check(all(isinstance(d, dict) for d in docs), "a YAML document is not a mapping")
    return docs


def _one(docs, kind):
    found = [d for d in docs if d.get("kind") == kind]
    check_eq(len(found), 1, "number of %s objects in deploy/kubernetes.yaml" % kind)
    return found[0]


def _env_map(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def _containers_by_role(pod):
    containers = pod["spec"]["containers"]
    sidecar = [c for c in containers if "readinessProbe" in c]
    agent = [c for c in containers if "readinessProbe" not in c]
    check_eq(len(sidecar), 1, "containers with a readinessProbe (the airlock sidecar)")
    check_eq(len(agent), 1, "containers without one (the agent)")
    return agent[0], sidecar[0]


def _volume_of(container, path):
    """(volume name, mountPath) of the container's mount that holds path, or (None, None)."""
    best = (None, None)
    for m in container.get("volumeMounts", []):
        mp = m["mountPath"].rstrip("/")
        if (path == mp or path.startswith(mp + "/")) and len(mp) > len(best[1] or ""):
            best = (m["name"], mp)
    return best


def test_kubernetes_manifest_pod_has_agent_and_sidecar_with_probes_and_proxy_env(env):
    docs = _load_manifest()
    pod = _one(docs, "Pod")
    containers = pod["spec"]["containers"]
    check_eq(len(containers), 2, "containers in the Pod")
    agent, sidecar = _containers_by_role(pod)

    ready = sidecar["readinessProbe"]["httpGet"]
    live = sidecar["livenessProbe"]["httpGet"]
    check_eq(ready["path"], "/readyz", "readinessProbe path")
    check_eq(live["path"], "/healthz", "livenessProbe path")
    port_names = {p.get("name"): p["containerPort"] for p in sidecar.get("ports", [])}
    check(ready["port"] in port_names or ready["port"] in port_names.values(),
          "readinessProbe port %r is not a port of the sidecar %r" % (ready["port"], port_names))
    check_eq(live["port"], ready["port"], "liveness and readiness probe ports")

    agent_env = _env_map(agent)
    side_env = _env_map(sidecar)
    listen = side_env.get("AIRLOCK_LISTEN", "127.0.0.1:3128")
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        check_eq(agent_env.get(var), "http://" + listen, "agent %s" % var)
    check("127.0.0.1" in (agent_env.get("NO_PROXY") or ""), "agent NO_PROXY lacks 127.0.0.1")
    # The kubelet probes the pod's IP, not its loopback: the probes go to the health-only
    # listener, which listens beyond loopback.
    health = side_env.get("AIRLOCK_HEALTH")
    check(health, "the sidecar has no AIRLOCK_HEALTH (the health-only listener)")
    check(not health.startswith("127.") and not health.startswith("unix:"),
          "AIRLOCK_HEALTH %r: the kubelet cannot probe it" % health)
    check_eq(int(health.rsplit(":", 1)[1]), port_names.get(ready["port"], ready["port"]),
             "probe port vs AIRLOCK_HEALTH port")


def _mebibytes(quantity):
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    for suffix, scale in units.items():
        if str(quantity).endswith(suffix):
            return float(str(quantity)[:-2]) * scale
    return float(quantity) / (1 << 20)


def test_kubernetes_manifest_memory_limit_holds_its_max_connections(env):
    # deploy/README.md "Connections and memory": about 40 KiB per idle tunnel over a base of
    # about 16 MiB; the limit must hold every allowed connection idle, with room to spare.
    _, sidecar = _containers_by_role(_one(_load_manifest(), "Pod"))
    args = sidecar.get("args", [])
    check("--max-connections" in args, "the sidecar has no --max-connections: the default is "
          "derived from descriptors, not from its memory limit")
    n = int(args[args.index("--max-connections") + 1])
    limit = _mebibytes(sidecar["resources"]["limits"]["memory"])
    need = 16 + n * 40 / 1024
    check(limit >= 1.5 * need, "memory limit %g MiB for --max-connections %d (idle: %g MiB)" % (
        limit, n, need))


def test_kubernetes_manifest_keeps_metrics_and_policy_out_of_the_agents_reach(env):
    docs = _load_manifest()
    pod = _one(docs, "Pod")
    agent, sidecar = _containers_by_role(pod)
    side_env = _env_map(sidecar)
    args = list(sidecar.get("args", [])) + list(sidecar.get("command", []))
    # The agent shares the pod's network namespace: any TCP admin address, loopback included,
    # is reachable from it. /metrics and /policy go to a Unix socket in a volume the agent
    # does not mount.
    for flag in ("--admin-public", "--admin-expose-sensitive"):
        check(flag not in args, "the sidecar runs with %s" % flag)
    admin = side_env.get("AIRLOCK_ADMIN", "unix:/run/airlock/admin.sock")  # entrypoint default
    check(admin.startswith("unix:"), "AIRLOCK_ADMIN %r is a TCP address, which the agent can "
          "reach from the shared network namespace" % admin)
    sock = admin[len("unix:"):]
    vol, _ = _volume_of(sidecar, os.path.dirname(sock))
    check(vol is not None, "the admin socket %s is on the read-only root filesystem, in no "
          "volume of the sidecar" % sock)
    check(vol not in {m["name"] for m in agent.get("volumeMounts", [])},
          "the agent mounts the volume %s that holds the admin socket" % vol)
    # No container port for the admin endpoint: only the health listener is declared.
    for p in sidecar.get("ports", []):
        check_eq(p["containerPort"], int(side_env["AIRLOCK_HEALTH"].rsplit(":", 1)[1]),
                 "declared sidecar port (%r)" % p)


def test_kubernetes_manifest_gives_agent_public_ca_files_only_and_hardens_containers(env):
    docs = _load_manifest()
    pod = _one(docs, "Pod")
    spec = pod["spec"]
    agent, sidecar = _containers_by_role(pod)
    volumes = {v["name"]: v for v in spec["volumes"]}
    agent_mounts = {m["name"]: m for m in agent["volumeMounts"]}

    # The CA with its key: a volume of the sidecar that the agent never mounts.
    ca_dir = _env_map(sidecar).get("AIRLOCK_CA_DIR", "/airlock/ca")
    private, _ = _volume_of(sidecar, ca_dir)
    check(private is not None, "no sidecar volume holds the CA dir %s" % ca_dir)
    check("emptyDir" in volumes[private], "the CA volume is not an emptyDir")
    check(private not in agent_mounts, "the agent mounts the volume %s holding ca.key" % private)

    # An init container of the airlock image makes the CA there, and copies the public files
    # into another volume, which the agent mounts read-only.
    inits = [c for c in spec.get("initContainers", [])
             if _env_map(c).get("AIRLOCK_INIT_ONLY") == "1"]
    check_eq(len(inits), 1, "init containers that make the CA")
    init = inits[0]
    init_env = _env_map(init)
    check_eq(init_env.get("AIRLOCK_CA_DIR", "/airlock/ca"), ca_dir, "the init container's CA dir")
    check_eq(_volume_of(init, ca_dir)[0], private, "the init container's CA volume")
    public_dir = init_env.get("AIRLOCK_PUBLIC_CA_DIR")
    check(public_dir, "the init container has no AIRLOCK_PUBLIC_CA_DIR: the agent would need "
          "the private CA volume")
    public, public_mount = _volume_of(init, public_dir)
    check(public is not None and public != private,
          "AIRLOCK_PUBLIC_CA_DIR %s is not in a volume of its own" % public_dir)
    check(public in agent_mounts, "the agent does not mount the public CA volume %s" % public)
    check_eq(agent_mounts[public]["mountPath"].rstrip("/"), public_mount,
             "public CA volume mount path in the agent (wgetrc names an absolute path)")
    check(agent_mounts[public].get("readOnly") is True,
          "the agent could rewrite the CA it trusts: mount it readOnly")

    agent_env = _env_map(agent)
    for var in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO",
                "CARGO_HTTP_CAINFO"):
        check_eq(agent_env.get(var), public_dir + "/bundle.pem", "agent " + var)
    for var in ("NODE_EXTRA_CA_CERTS", "DENO_CERT"):
        check_eq(agent_env.get(var), public_dir + "/ca.pem", "agent " + var)
    check_eq(agent_env.get("WGETRC"), public_dir + "/wgetrc", "agent WGETRC")
    # Java's options as `airlock env` prints them for the public dir and the sidecar's address.
    d = env.path("public-ca")
    os.makedirs(d)
    listen = _env_map(sidecar).get("AIRLOCK_LISTEN", "127.0.0.1:3128")
    r = env.run_cli(["env", "--ca-dir", d, "--listen", listen, "--format", "dotenv"])
    check_eq(r.returncode, 0, "airlock env exit code (%s)" % r.stderr.decode())
    printed = dict(l.split("=", 1) for l in r.stdout.decode().splitlines())
    check_eq(agent_env.get("JAVA_TOOL_OPTIONS"),
             printed["JAVA_TOOL_OPTIONS"].replace(os.path.realpath(d), public_dir),
             "agent JAVA_TOOL_OPTIONS vs airlock env's")

    check(spec.get("securityContext", {}).get("runAsNonRoot") is True, "pod runAsNonRoot")
    for c in containers_all(spec):
        sc = c.get("securityContext", {})
        if c["name"] == "airlock-rules":
            # nft needs root with NET_ADMIN; it gets that and nothing else, and exits first
            check_eq(sc.get("capabilities", {}).get("add"), ["NET_ADMIN"],
                     "airlock-rules: the one capability added")
            check_eq(sc.get("capabilities", {}).get("drop"), ["ALL"], "airlock-rules: drop")
        else:
            check(sc.get("runAsNonRoot") is True, "%s: runAsNonRoot" % c["name"])
        check(sc.get("readOnlyRootFilesystem") is True, "%s: readOnlyRootFilesystem" % c["name"])
        check(sc.get("allowPrivilegeEscalation") is False,
              "%s: allowPrivilegeEscalation" % c["name"])

    # Provider secrets: a Secret mounted as files into airlock only.
    secret = _one(docs, "Secret")
    secret_vols = [n for n, v in volumes.items()
                   if v.get("secret", {}).get("secretName") == secret["metadata"]["name"]]
    check_eq(len(secret_vols), 1, "volumes of the provider Secret")
    check(any(m["name"] == secret_vols[0] for m in sidecar["volumeMounts"]),
          "the sidecar does not mount the provider Secret")
    check(secret_vols[0] not in agent_mounts, "the agent mounts the provider Secret")
    check(not any(e.get("valueFrom", {}).get("secretKeyRef") for e in agent.get("env", [])),
          "the agent's environment reads the Secret")


def containers_all(spec):
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def test_kubernetes_manifest_policy_and_providers_pass_airlock_check(env):
    docs = _load_manifest()
    cm = _one(docs, "ConfigMap")
    pol = env.path("policy.json")
    with open(pol, "w") as f:
        f.write(cm["data"]["policy.json"])
    r = env.run_cli(["check", "--policy", pol])
    check(r.returncode == 0, "the manifest's policy fails `airlock check`: %s" %
          (r.stdout + r.stderr).decode("utf-8", "replace"))

    # The providers name secret files that exist only in the pod: point them at local files
    # holding the Secret's sample values.
    secret = _one(docs, "Secret")
    values = dict(secret.get("stringData", {}))
    prov = json.loads(cm["data"]["providers.json"])
    for name, p in prov["providers"].items():
        path = p["secret"]["file"]
        key = os.path.basename(path)
        check(key in values, "provider %s reads %s, which the Secret does not hold" % (name, path))
        local = env.path("secret-" + key)
        with open(local, "w") as f:
            f.write(values[key])
        p["secret"]["file"] = local
    provf = env.path("providers.json")
    with open(provf, "w") as f:
        json.dump(prov, f)
    r = env.run_cli(["check", "--policy", pol, "--providers", provf])
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    if r.returncode != 0 and "not supported" in out:
        return  # credential injection is not in this build yet; the policy was checked above
    check(r.returncode == 0, "the manifest's providers fail `airlock check`: %s" % out)
    for v in values.values():
        check(v not in out, "`airlock check` printed a secret")


# ----- the entrypoint ---------------------------------------------------------------------------

def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def _entrypoint_env(env, extra):
    e = dict(os.environ)
    for k in list(e):
        if k.startswith("AIRLOCK_"):
            del e[k]
    e.update(extra)
    return e


def _fake_airlock(env):
    """A stand-in binary that records its arguments and fakes `ca init`."""
    path = env.path("fake-airlock")
    record = env.path("fake-args")
    with open(path, "w") as f:
        f.write("""#!/bin/sh
if [ "$1" = ca ]; then
    mkdir -p "$4" && echo cert >"$4/ca.pem" && echo key >"$4/ca.key" && chmod 0644 "$4/ca.key"
    echo bundle >"$4/bundle.pem"
    exit 0
fi
for a in "$@"; do printf '%%s\\n' "$a"; done >"%s"
""" % record)
    os.chmod(path, 0o755)
    return path, record


def _run_entrypoint(env, extra_env, args=()):
    return subprocess.run(["sh", ENTRYPOINT] + list(args), env=_entrypoint_env(env, extra_env),
                          capture_output=True, timeout=30, stdin=subprocess.DEVNULL)


def test_entrypoint_builds_run_command_from_environment(env):
    fake, record = _fake_airlock(env)
    ca = env.path("ca-fake")
    r = _run_entrypoint(env, {"AIRLOCK_BIN": fake, "AIRLOCK_CA_DIR": ca}, ["--workers", "2"])
    check(r.returncode == 0, "entrypoint exited %d: %s" % (r.returncode, r.stderr.decode()))
    with open(record) as f:
        argv = f.read().splitlines()
    check_eq(argv, ["run", "--listen", "127.0.0.1:3128", "--ca-dir", ca, "--policy",
                    "/etc/airlock/policy.json", "--admin", "unix:/run/airlock/admin.sock",
                    "--log-format", "json", "--workers", "2"],
             "airlock arguments with the defaults")
    # The fake wrote ca.key 0644: the entrypoint narrows it.
    check_eq(oct(_mode(os.path.join(ca, "ca.key"))), oct(0o600), "ca.key mode")

    r = _run_entrypoint(env, {"AIRLOCK_BIN": fake, "AIRLOCK_CA_DIR": ca,
                              "AIRLOCK_LISTEN": "127.0.0.1:4000", "AIRLOCK_ADMIN": "0.0.0.0:9999",
                              "AIRLOCK_HEALTH": "0.0.0.0:9998", "AIRLOCK_POLICY": "/p.json",
                              "AIRLOCK_PROVIDERS": "/prov dir/p.json"},
                        ["--admin-public"])
    check(r.returncode == 0, "entrypoint exited %d: %s" % (r.returncode, r.stderr.decode()))
    with open(record) as f:
        argv = f.read().splitlines()
    check_eq(argv, ["run", "--listen", "127.0.0.1:4000", "--ca-dir", ca, "--policy", "/p.json",
                    "--providers", "/prov dir/p.json", "--health", "0.0.0.0:9998", "--admin",
                    "0.0.0.0:9999", "--log-format", "json", "--admin-public"],
             "airlock arguments from the env")


def test_entrypoint_init_only_makes_ca_once_and_keeps_it(env):
    ca = env.path("ca")
    base = {"AIRLOCK_BIN": env.binary, "AIRLOCK_CA_DIR": ca, "AIRLOCK_INIT_ONLY": "1"}
    r = _run_entrypoint(env, base)
    check(r.returncode == 0, "entrypoint exited %d: %s" % (r.returncode, r.stderr.decode()))
    with open(os.path.join(ca, "ca.pem"), "rb") as f:
        first = f.read()
    # Loosen the modes as a careless copy would; the next start narrows them again and keeps
    # the same CA (the agent already trusts it).
    os.chmod(os.path.join(ca, "ca.key"), 0o644)
    os.chmod(os.path.join(ca, "ca.pem"), 0o600)
    r = _run_entrypoint(env, base)
    check(r.returncode == 0, "second run exited %d: %s" % (r.returncode, r.stderr.decode()))
    with open(os.path.join(ca, "ca.pem"), "rb") as f:
        check(f.read() == first, "the entrypoint replaced an existing CA")
    check_eq(oct(_mode(os.path.join(ca, "ca.key"))), oct(0o600), "ca.key mode")
    check_eq(oct(_mode(os.path.join(ca, "ca.pem"))), oct(0o644), "ca.pem mode")
    # Half a CA is replaced by a whole new one.
    os.unlink(os.path.join(ca, "ca.pem"))
    r = _run_entrypoint(env, base)
    check(r.returncode == 0, "run on half a CA exited %d: %s" % (r.returncode, r.stderr.decode()))
    with open(os.path.join(ca, "ca.pem"), "rb") as f:
        check(f.read() not in (b"", first), "no new CA after ca.pem went missing")


def test_entrypoint_public_ca_dir_gets_certificates_never_the_key(env):
    ca, pub = env.path("private-ca"), env.path("public-ca")
    base = {"AIRLOCK_BIN": env.binary, "AIRLOCK_CA_DIR": ca, "AIRLOCK_PUBLIC_CA_DIR": pub,
            "AIRLOCK_INIT_ONLY": "1"}
    for attempt in ("first", "second"):
        r = _run_entrypoint(env, base)
        check(r.returncode == 0, "%s run exited %d: %s" % (attempt, r.returncode,
                                                          r.stderr.decode()))
        check_eq(sorted(os.listdir(pub)), ["bundle.pem", "ca.pem", "truststore.p12", "wgetrc"],
                 "files in the public CA dir after the %s run" % attempt)
        for name in ("ca.pem", "bundle.pem", "truststore.p12"):
            with open(os.path.join(ca, name), "rb") as a, open(os.path.join(pub, name), "rb") as b:
                check(a.read() == b.read(), "public %s differs from the CA's" % name)
            check_eq(oct(_mode(os.path.join(pub, name))), oct(0o644), "public %s mode" % name)
        with open(os.path.join(pub, "wgetrc")) as f:
            check_eq(f.read(), "ca_certificate = %s/bundle.pem\n" % os.path.realpath(pub),
                     "public wgetrc")
        check_eq(oct(_mode(ca)), oct(0o700), "the private CA dir mode")
        check_eq(oct(_mode(os.path.join(ca, "ca.key"))), oct(0o600), "ca.key mode")

    # A CA made by an airlock older than truststore.p12: the rest is still published.
    os.unlink(os.path.join(ca, "truststore.p12"))
    r = _run_entrypoint(env, base)
    check_eq(r.returncode, 0, "exit code without truststore.p12 (%s)" % r.stderr.decode())
    check(b"truststore.p12" in r.stderr, "no word about the missing trust store: %r" % r.stderr)

    # The CA dir itself as the public one would hand out the key: refused.
    r = _run_entrypoint(env, dict(base, AIRLOCK_PUBLIC_CA_DIR=ca + "/."))
    check_eq(r.returncode, 1, "exit code with the CA dir as the public dir")
    check(b"ca.key" in r.stderr, "no message about the key: %r" % r.stderr)


def _admin_get(port, path):
    """(status, body) from the admin port, or None when nothing answers."""
    c = http.client.HTTPConnection(LOOPBACK4, port, timeout=2)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    except OSError:
        return None
    finally:
        c.close()


def test_entrypoint_outside_container_serves_then_exits_0_on_sigterm(env):
    ca = env.path("ca")
    policy = write_policy(env.path("policy.json"), [endpoint(LOOPBACK4, 9)])
    port, admin_port = free_port(), free_port()
    stderr_path = env.path("entrypoint-stderr.txt")
    extra = {"AIRLOCK_BIN": env.binary, "AIRLOCK_CA_DIR": ca, "AIRLOCK_POLICY": policy,
             "AIRLOCK_LISTEN": "%s:%d" % (LOOPBACK4, port),
             "AIRLOCK_ADMIN": "%s:%d" % (LOOPBACK4, admin_port)}
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(["sh", ENTRYPOINT, "--workers", "1"], stdin=subprocess.DEVNULL,
                                stdout=err, stderr=err, env=_entrypoint_env(env, extra))
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            check(proc.poll() is None, "entrypoint exited %s at start: %s" % (
                proc.returncode, _read_text(stderr_path)))
            try:
                socket.create_connection((LOOPBACK4, port), timeout=1).close()
                break
            except OSError:
                check(time.monotonic() < deadline, "the proxy port %d did not accept within %ds"
                      % (port, START_TIMEOUT))
                time.sleep(0.05)

        # exec: the process we started is airlock itself, so SIGTERM reaches it.
        exe = os.path.realpath("/proc/%d/exe" % proc.pid)
        check_eq(exe, os.path.realpath(env.binary), "the entrypoint's process after exec")

        for name, want in (("ca.pem", 0o644), ("bundle.pem", 0o644), ("ca.key", 0o600)):
            path = os.path.join(ca, name)
            check(os.path.isfile(path), "the entrypoint did not create %s" % name)
            check_eq(oct(_mode(path)), oct(want), name + " mode")
        check(_mode(ca) & 0o005 == 0o005, "the CA dir is not readable by others")

        # `--admin` is being implemented in parallel: until it lands airlock may ignore the
        # flag. Check readiness only when the admin port answers within a few seconds.
        got = None
        deadline = time.monotonic() + 3
        while got is None and time.monotonic() < deadline:
            got = _admin_get(admin_port, "/readyz")
            if got is None:
                time.sleep(0.1)
        if got is not None:
            check_eq(got[0], 200, "GET /readyz on the admin port")
            health = _admin_get(admin_port, "/healthz")
            check(health is not None and health[0] == 200, "GET /healthz: %r" % (health,))

        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError("airlock did not exit within %ds of SIGTERM" % STOP_TIMEOUT)
        check_eq(rc, 0, "exit code after SIGTERM")
        text = _read_text(stderr_path)
        for mark in SANITIZER_MARKS:
            check(mark not in text, "sanitizer report in airlock stderr (%s)" % mark)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def _read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")[-3000:]
    except OSError:
        return ""


# ----- the systemd unit (checked offline: systemd need not be running) -------------------------

UNIT = os.path.join(DEPLOY, "airlock.service")
UNIT_BINARY = "/usr/local/bin/airlock"  # where `meson install` puts airlock by default


def _unit_settings():
    """[(section, key, value)] of deploy/airlock.service, continuation lines joined."""
    with open(UNIT, encoding="utf-8") as f:
        text = re.sub(r"\\\n", " ", f.read())
    settings, section = [], None
    for line in text.splitlines():
        s = line.strip()
        if not s or s[0] in "#;":
            continue
        if s.startswith("["):
            section = s.strip("[]")
            continue
        key, _, value = s.partition("=")
        settings.append((section, key.strip(), value.strip()))
    return settings


def _unit_value(key, section="Service"):
    found = [v for s, k, v in _unit_settings() if s == section and k == key]
    check_eq(len(found), 1, "number of %s= lines in [%s] of deploy/airlock.service" % (key, section))
    return found[0]


def _systemd_analyze():
    if not shutil.which("systemd-analyze"):
        raise Skip("systemd-analyze is not installed (Debian's systemd package)")
    return "systemd-analyze"


def test_systemd_unit_passes_systemd_analyze_verify_with_low_exposure(env):
    tool = _systemd_analyze()
    # verify insists that ExecStart's program exists: point it at the binary under test. The
    # file keeps its name, which verify reads as the unit's name.
    with open(UNIT, encoding="utf-8") as f:
        text = f.read()
    check(UNIT_BINARY in text, "deploy/airlock.service does not run %s" % UNIT_BINARY)
    os.makedirs(env.path("unit"))
    unit = env.path("unit/airlock.service")
    with open(unit, "w", encoding="utf-8") as f:
        f.write(text.replace(UNIT_BINARY, os.path.abspath(env.binary)))
    r = subprocess.run([tool, "verify", "--man=no", unit], capture_output=True, timeout=60,
                       stdin=subprocess.DEVNULL, cwd=env.path("unit"))
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    # A misspelt key or a bad value is only a warning (exit 0): any output fails the test.
    check(r.returncode == 0 and not out.strip(),
          "systemd-analyze verify deploy/airlock.service (exit %d):\n%s" % (r.returncode, out))
    r = subprocess.run([tool, "security", "--offline=yes", unit], capture_output=True,
                       timeout=60, stdin=subprocess.DEVNULL, cwd=env.path("unit"))
    out = r.stdout.decode("utf-8", "replace")
    m = re.search(r"Overall exposure level for airlock\.service: ([0-9.]+)", out)
    if m is None:
        raise Skip("systemd-analyze security --offline gave no exposure level: %s"
                   % (out + r.stderr.decode("utf-8", "replace"))[-500:])
    # 1.9 with systemd 252; 10 is a unit with no hardening at all.
    check(float(m.group(1)) <= 3.0, "exposure level %s above 3.0:\n%s" % (m.group(1), out))


def test_systemd_unit_hardening_and_the_settings_airlock_relies_on(env):
    want = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
            "PrivateTmp": "yes", "CapabilityBoundingSet": "", "User": "airlock",
            "ExecReload": "/bin/kill -HUP $MAINPID", "Type": "exec"}
    for key, value in want.items():
        check_eq(_unit_value(key), value, key)
    check("airlock/ca" in _unit_value("StateDirectory").split(),
          "StateDirectory= does not make the CA directory airlock/ca")
    # The agent's user reads ca.pem and bundle.pem there.
    check_eq(_unit_value("StateDirectoryMode"), "0755", "StateDirectoryMode")
    # Binary identity reads other users' /proc entries from airlock's own user namespace.
    keys = {k for _, k, _ in _unit_settings()}
    for key in ("ProtectProc", "ProcSubset", "PrivateUsers", "DynamicUser"):
        check(key not in keys, "%s= would break airlock (see the comments in the unit)" % key)
    check("AF_NETLINK" in _unit_value("RestrictAddressFamilies").split(),
          "RestrictAddressFamilies= leaves out AF_NETLINK (sock_diag, for binary identity)")
    # systemd's stop timeout outlasts airlock's drain, or a drain is cut short by SIGKILL.
    argv = shlex.split(_unit_value("ExecStart"))
    drain = float(argv[argv.index("--drain-timeout") + 1]) if "--drain-timeout" in argv else 30
    check(float(_unit_value("TimeoutStopSec")) > drain,
          "TimeoutStopSec= is not above the drain timeout (%ss)" % drain)
    check_eq(_unit_value("RestartPreventExitStatus"), "1", "RestartPreventExitStatus")
    # The sysusers file makes the user the unit names.
    with open(os.path.join(DEPLOY, "airlock.sysusers"), encoding="utf-8") as f:
        lines = [l.split() for l in f if l.strip() and not l.startswith("#")]
    check_eq([l[:3] for l in lines], [["u", "airlock", "-"]], "deploy/airlock.sysusers entries")


def test_systemd_unit_command_line_serves_reloads_and_drains(env):
    """ExecStart as systemd would run it, with the state and runtime directories (%S, %t) and
    the policy in the test's directory and a free port: it serves, makes the CA readable by
    the agent with the key private, reloads on ExecReload and exits 0 on SIGTERM."""
    state, run = env.path("var-lib"), env.path("run")
    ca = os.path.join(state, "airlock", "ca")
    os.makedirs(ca)  # StateDirectory=airlock airlock/ca, StateDirectoryMode=0755
    os.chmod(os.path.join(state, "airlock"), 0o755)
    os.chmod(ca, 0o755)
    os.makedirs(os.path.join(run, "airlock"), 0o700)  # RuntimeDirectory=airlock, 0700
    policy = write_policy(env.path("policy.json"), [endpoint(LOOPBACK4, 9)])
    port = free_port()

    cmd = _unit_value("ExecStart").replace("%S", state).replace("%t", run)
    check("%" not in cmd, "a specifier this test does not replace in ExecStart: %s" % cmd)
    argv = [a for a in shlex.split(cmd) if a != "$AIRLOCK_OPTS"]  # unset: no words
    check(not any("$" in a for a in argv), "a variable this test does not expand: %s" % cmd)
    check_eq(argv[:2], [UNIT_BINARY, "run"], "ExecStart's program and command")
    argv[0] = env.binary
    for flag, value in (("--policy", policy), ("--listen", "%s:%d" % (LOOPBACK4, port))):
        check(flag in argv, "ExecStart has no %s" % flag)
        argv[argv.index(flag) + 1] = value
    admin = argv[argv.index("--admin") + 1]
    check_eq(admin, "unix:%s/airlock/admin.sock" % run, "the admin socket")

    stderr_path = env.path("unit-stderr.txt")
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                cwd=env.tmp)
    try:
        def admin_get(path):
            return subprocess.run([env.binary, "admin", "get", path, "--admin", admin],
                                  capture_output=True, timeout=10, stdin=subprocess.DEVNULL)

        deadline = time.monotonic() + START_TIMEOUT
        while admin_get("/readyz").returncode != 0:
            check(proc.poll() is None, "airlock exited %s at start: %s"
                  % (proc.returncode, _read_text(stderr_path)))
            check(time.monotonic() < deadline, "/readyz did not answer 200 within %ds"
                  % START_TIMEOUT)
            time.sleep(0.05)

        # The proxy listener answers: a CONNECT the policy does not allow gets 403.
        with socket.create_connection((LOOPBACK4, port), timeout=5) as s:
            s.sendall(b"CONNECT 127.0.0.2:9 HTTP/1.1\r\nHost: 127.0.0.2:9\r\n\r\n")
            check(s.recv(64).startswith(b"HTTP/1.1 403"), "a denied CONNECT did not get 403")

        for name, want in (("ca.pem", 0o644), ("bundle.pem", 0o644), ("wgetrc", 0o644),
                           ("ca.key", 0o600)):
            path = os.path.join(ca, name)
            check(os.path.isfile(path), "airlock did not create %s" % path)
            check_eq(oct(_mode(path)), oct(want), name + " mode")
        check_eq(oct(_mode(ca)), oct(0o755), "the CA directory's mode")
        check_eq(oct(_mode(admin[len("unix:"):])), oct(0o600), "admin.sock mode")

        # ExecReload, with $MAINPID as systemd gives it.
        reload = shlex.split(_unit_value("ExecReload").replace("$MAINPID", str(proc.pid)))
        check_eq(subprocess.run(reload, timeout=10).returncode, 0, "exit code of ExecReload")
        ok = 'airlock_policy_reloads_total{result="ok"} 1'
        deadline = time.monotonic() + START_TIMEOUT
        while ok not in admin_get("/metrics").stdout.decode():
            check(time.monotonic() < deadline, "no successful reload after ExecReload")
            time.sleep(0.05)

        proc.send_signal(signal.SIGTERM)  # systemd's KillSignal=
        try:
            rc = proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError("airlock did not exit within %ds of SIGTERM" % STOP_TIMEOUT)
        check_eq(rc, 0, "exit code after SIGTERM")
        text = _read_text(stderr_path)
        for mark in SANITIZER_MARKS:
            check(mark not in text, "sanitizer report in airlock stderr (%s)" % mark)
        # --log-format json: every line an object, for the journal and what reads it.
        with open(stderr_path, "rb") as f:
            lines = [l for l in f.read().decode("utf-8", "replace").splitlines() if l.strip()]
        check(lines, "airlock logged nothing")
        for line in lines:
            try:
                check(isinstance(json.loads(line), dict), "a log line is not an object")
            except ValueError:
                raise AssertionError("a log line is not JSON: %r" % line)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


# ----- the Containerfile (static: there is no container engine to build it here) ---------------

def _stages(text):
    """[(FROM line, [instruction lines])] with continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    stages = []
    for line in joined.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.upper().startswith("FROM "):
            stages.append((s, []))
        else:
            check(stages, "an instruction before the first FROM: %r" % s)
            stages[-1][1].append(s)
    return stages


def test_containerfile_is_multistage_nonroot_without_compiler_or_archive_hosts(env):
    with open(os.path.join(DEPLOY, "Containerfile")) as f:
        text = f.read()
    stages = _stages(text)
    check_eq(len(stages), 2, "stages in deploy/Containerfile")
    for frm, _ in stages:
        check(frm.split()[1] == "debian:bookworm", "stage base %r is not debian:bookworm" % frm)
    build, final = stages
    check(any("scripts/setup" in i for i in build[1]), "the build stage does not run scripts/setup")
    check(any("meson setup" in i and "buildtype=release" in i for i in build[1]),
          "the build stage does not configure a meson release build")

    runs = " ".join(i for i in final[1] if i.upper().startswith("RUN "))
    installed = set()
    for args in re.findall(r"apt-get\s+install\s+([^&;|]*)", runs):
        installed.update(w for w in args.split() if not w.startswith("-"))
    check_eq(sorted(installed), sorted(["libuv1", "libssl3", "libcjson1", "libnghttp2-14", "ca-certificates",
                                       "nftables"]),  # nft, for the transparent-mode rules
             "packages the final stage installs with apt-get (runtime libraries only)")
    check("libllhttp9.2" in " ".join(final[1]), "the final stage does not install libllhttp9.2")
    users = [i.split(None, 1)[1] for i in final[1] if i.upper().startswith("USER ")]
    check(users and users[-1].split(":")[0] not in ("root", "0"), "the final stage runs as root")
    check(any(i.upper().startswith("ENTRYPOINT") and "entrypoint" in i for i in final[1]),
          "no ENTRYPOINT running the entrypoint script")
    # Archive hosts come from the image's own apt configuration, never from this file.
    check(not re.search(r"[a-z]+://", text), "deploy/Containerfile names a URL")


def test_kubernetes_manifest_redirects_what_ignores_the_proxy_to_the_transparent_listener(env):
    docs = _load_manifest()
    pod = _one(docs, "Pod")
    spec = pod["spec"]
    _, sidecar = _containers_by_role(pod)
    inits = [c for c in spec.get("initContainers", []) if c["name"] == "airlock-rules"]
    check_eq(len(inits), 1, "the init container that applies the redirect rules")
    init = inits[0]
    check_eq(spec["initContainers"][0]["name"], "airlock-rules",
             "the rules are applied before any other container starts")
    script = " ".join(init.get("command", []) + init.get("args", []))
    m = re.search(r"airlock rules (.*?)\| *nft -f -", script)
    check(m, "the init container does not pipe `airlock rules` into `nft -f -`: %r" % script)
    words = shlex.split(m.group(1))
    opt = dict(zip(words[::2], words[1::2]))
    uid = sidecar["securityContext"]["runAsUser"]
    check_eq(opt.get("--uid"), str(uid), "airlock's own connections (its uid) are exempt")
    args = sidecar.get("args", [])
    transparent = [args[i + 1] for i, a in enumerate(args) if a == "--transparent"]
    check(transparent, "the sidecar has no --transparent listener")
    for t in transparent:
        check_eq(t.rsplit(":", 1)[1], opt.get("--transparent-port"),
                 "the rules' port vs the listener %s" % t)
    check("[::1]:%s" % opt.get("--transparent-port") in transparent,
          "no IPv6 loopback listener: the rules redirect IPv6 to ::1")
    # The ruleset the init container would apply is what airlock prints for these options.
    r = subprocess.run([env.binary, "rules"] + words, capture_output=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    check_eq(r.returncode, 0, "airlock rules %s: %s" % (" ".join(words), r.stderr.decode()))
    out = r.stdout.decode()
    check("redirect to :%s" % opt.get("--transparent-port") in out, "the ruleset redirects")
