# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# shellcheck disable=SC2154,SC2034 # tmp, pids come from the caller; pin_* are for the caller
# Shell functions shared by scripts/bench and scripts/soak (sourced, not run). The caller sets
# `tmp` (its temp dir) and an array `pids` (what its EXIT trap stops, by PID) before using them.

die() {
    echo "${0##*/}: $*" >&2
    exit 1
}

# build_airlock DIR [SRC]: a release build of airlock's binary in DIR, from the sources in SRC
# (default: this checkout); only the binary and the core library, not the tests.
build_airlock() {
    local dir=$1 src=${2:-.}
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "$src" -Dbuildtype=release >/dev/null
    fi
    meson compile -C "$dir" airlock >/dev/null || meson compile -C "$dir" airlock
}

# build_tools: the load generator and the upstream (test/bench/*.c) into $tmp.
build_tools() {
    local prog ssl_flags
    read -r -a ssl_flags <<<"$(pkg-config --cflags --libs openssl libnghttp2)"
    for prog in loadgen upstream; do
        cc -O2 -std=c11 -Wall -Wextra -o "$tmp/$prog" "test/bench/$prog.c" "${ssl_flags[@]}" -lm ||
            die "cannot build test/bench/$prog.c"
    done
}

ossl() {
    openssl "$@" >"$tmp/openssl.log" 2>&1 || {
        cat "$tmp/openssl.log" >&2
        die "openssl $1 failed"
    }
}

# make_pki: a throwaway PKI in $tmp: the upstream's CA (upstream-ca.pem) and its leaf for
# 127.0.0.1 (leaf.pem, leaf.key), EC P-256 like airlock's; pki.cnf for more CAs (new_ca).
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
make_pki() {
    cat >"$tmp/pki.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[v3_ca]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
EOF
    new_ca "$tmp/upstream-ca" "airlock bench upstream CA"
    ossl req -new -config "$tmp/pki.cnf" "${ec[@]}" -keyout "$tmp/leaf.key" -out "$tmp/leaf.csr" \
        -subj "/CN=127.0.0.1"
    ossl x509 -req -in "$tmp/leaf.csr" -CA "$tmp/upstream-ca.pem" -CAkey "$tmp/upstream-ca.key" \
        -set_serial "0x$(openssl rand -hex 8)" -days 2 -extfile "$tmp/pki.cnf" -extensions leaf \
        -out "$tmp/leaf.pem"
}

# new_ca PREFIX CN: a CA certificate PREFIX.pem and its key PREFIX.key.
new_ca() {
    ossl req -x509 -new -config "$tmp/pki.cnf" -extensions v3_ca "${ec[@]}" -days 2 \
        -keyout "$1.key" -out "$1.pem" -subj "/CN=$2"
}

# pin_cores: the proxy alone on the first allowed core, everything else on the second. Sets
# pin_proxy and pin_client (command prefixes, empty when pinning is impossible) and `pinning`.
pin_cores() {
    local cpus=() allowed ranges r lo hi i
    allowed=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status)
    IFS=, read -r -a ranges <<<"${allowed:-0}"
    for r in "${ranges[@]}"; do
        lo=${r%-*} hi=${r#*-}
        for ((i = lo; i <= hi && ${#cpus[@]} < 2; i++)); do
            cpus+=("$i")
        done
    done
    pin_proxy=() pin_client=()
    pinning="not pinned (taskset missing or fewer than 2 cores): figures are only indicative"
    if command -v taskset >/dev/null && [ ${#cpus[@]} -ge 2 ]; then
        pin_proxy=(taskset -c "${cpus[0]}") pin_client=(taskset -c "${cpus[1]}")
        pinning="proxy pinned to core ${cpus[0]}; load generator + upstream share core ${cpus[1]}"
    fi
}

hz=$(getconf CLK_TCK)
cpu_ticks() { # utime + stime of a process, in clock ticks (proc(5) fields 14 and 15)
    awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}
rss_kib() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}
fd_count() {
    local fds
    fds=$(ls "/proc/$1/fd" 2>/dev/null | wc -l) || true
    echo "${fds:-0}"
}
calc() {
    awk "BEGIN { printf \"$1\", $2 }"
}
wait_port() { # PORT PID: until something accepts on 127.0.0.1:PORT, for at most 10 s
    local i
    for ((i = 0; i < 100; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# start_upstream: the TLS upstream on the client core; sets up_pid, up_port and target.
start_upstream() {
    local i
    "${pin_client[@]}" "$tmp/upstream" --cert "$tmp/leaf.pem" --key "$tmp/leaf.key" \
        --max-seconds "${1:-900}" >"$tmp/upstream.out" 2>"$tmp/upstream.err" &
    up_pid=$!
    pids+=("$up_pid")
    up_port=''
    for ((i = 0; i < 100; i++)); do
        up_port=$(sed -n 's/^port=//p' "$tmp/upstream.out")
        [ -n "$up_port" ] && break
        kill -0 "$up_pid" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$up_port" ] || die "upstream did not start: $(cat "$tmp/upstream.err")"
    target=127.0.0.1:$up_port
}

# write_policy [EXTRA-JSON]: the policy allowing the upstream, alone in $tmp/policy (airlock
# watches that directory for changes, and the load generator's output files must not wake it).
write_policy() {
    mkdir -p "$tmp/policy"
    cat >"$tmp/policy/bench.json" <<EOF
{"version": 1, "network_policies": {"bench": {"endpoints": [
  {"host": "127.0.0.1", "port": $up_port, "access": "full", "allowed_ips": ["127.0.0.0/8"]}]${1:-}}}}
EOF
}

# apt_install PACKAGE WHY: installs a Debian package when we are root and apt-get exists.
apt_install() {
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "${0##*/}: installing Debian's $1 package ($2)"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends "$1"; } >/dev/null 2>&1 || echo "${0##*/}: apt-get install $1 failed" >&2
    else
        echo "${0##*/}: $1 is missing ($2); install it as root (apt-get install $1)" >&2
    fi
}
