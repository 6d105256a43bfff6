#!/bin/sh
# SPDX-License-Identifier: MIT
# The airlock sidecar's entrypoint (POSIX sh). Makes sure the per-sandbox CA exists, with the
# private key readable by airlock alone, optionally copies its public files (never the key) to
# a directory the agent's container mounts, then replaces itself with `airlock run` so that
# signals (SIGTERM drains, SIGHUP reloads) reach airlock directly. Extra arguments are passed
# on to `airlock run`.
#
#   AIRLOCK_BIN            the airlock executable   (default: airlock, found on PATH)
#   AIRLOCK_CA_DIR         the CA directory         (default: /airlock/ca)
#   AIRLOCK_PUBLIC_CA_DIR  when set: copy ca.pem, bundle.pem and truststore.p12 there, with a
#                          wgetrc naming bundle.pem, for the agent, and make AIRLOCK_CA_DIR 0700
#                          (default: unset; a new AIRLOCK_CA_DIR is 0755, shared, the key
#                          staying 0600)
#   AIRLOCK_LISTEN         the proxy address        (default: 127.0.0.1:3128)
#   AIRLOCK_POLICY         the policy file          (default: /etc/airlock/policy.json)
#   AIRLOCK_PROVIDERS      the providers file       (default: none, no credential injection)
#   AIRLOCK_ADMIN          the admin endpoint       (default: unix:/run/airlock/admin.sock)
#   AIRLOCK_HEALTH         the health-only listener (default: none)
#   AIRLOCK_INIT_ONLY      when 1: prepare the CA and exit 0 (for an init container)
set -eu

bin=${AIRLOCK_BIN:-airlock}
ca_dir=${AIRLOCK_CA_DIR:-/airlock/ca}

log() {
    printf 'entrypoint: %s\n' "$*" >&2
}

# Files written from here on are readable by others (the agent runs as another user); the
# key is narrowed to 0600 below.
umask 022

if ! mkdir -p "$ca_dir"; then
    log "cannot create the CA directory $ca_dir"
    exit 1
fi

if [ -s "$ca_dir/ca.pem" ] && [ -s "$ca_dir/ca.key" ]; then
    log "using the CA in $ca_dir"
else
    # Half a CA (a crashed init, a hand-deleted file) is useless: make a new one. The CA is
    # per sandbox, so nothing outside this pod trusts the old one.
    force=
    if [ -e "$ca_dir/ca.pem" ] || [ -e "$ca_dir/ca.key" ]; then
        log "incomplete CA in $ca_dir: replacing it"
        force=--force
    fi
    # shellcheck disable=SC2086 # $force is empty or one word
    "$bin" ca init --dir "$ca_dir" $force >&2
fi

# The public files must be readable by the agent's user; the key only by airlock. Ignore
# chmod failures on files another user owns (a read-only shared CA): the checks below still
# refuse a key that others can read.
for f in ca.pem bundle.pem wgetrc truststore.p12; do
    if [ -e "$ca_dir/$f" ]; then
        chmod 0644 "$ca_dir/$f" 2>/dev/null || true
    fi
done
chmod 0600 "$ca_dir/ca.key" 2>/dev/null || true

# Refuse to serve with a CA key that other users can read: anyone holding it can mint
# certificates that the agent trusts. `ls -ln` is the POSIX way to see a mode; columns 5-10
# are the group and other bits.
# shellcheck disable=SC2012 # one known file name, only its mode is read
key_others=$(ls -ln "$ca_dir/ca.key" | cut -c5-10)
if [ "$key_others" != "------" ]; then
    log "$ca_dir/ca.key is open to group or others and cannot be narrowed to 0600"
    exit 1
fi

# Copy $1 to $2 through a temporary name, 0644: a reader never sees half a file.
publish() {
    cp "$1" "$2.tmp.$$" && chmod 0644 "$2.tmp.$$" && mv -f "$2.tmp.$$" "$2"
}

pub=${AIRLOCK_PUBLIC_CA_DIR:-}
if [ -n "$pub" ]; then
    # The agent mounts this directory: it gets the certificate, never the key.
    if ! mkdir -p "$pub"; then
        log "cannot create the public CA directory $pub"
        exit 1
    fi
    pub_abs=$(cd "$pub" && pwd -P)
    if [ "$pub_abs" = "$(cd "$ca_dir" && pwd -P)" ]; then
        log "AIRLOCK_PUBLIC_CA_DIR is the CA directory itself: it would hand the agent ca.key"
        exit 1
    fi
    if [ -e "$pub/ca.key" ]; then
        log "$pub/ca.key exists: the public CA directory must never hold the key"
        exit 1
    fi
    chmod 0755 "$pub" 2>/dev/null || true
    for f in ca.pem bundle.pem; do
        if ! publish "$ca_dir/$f" "$pub/$f"; then
            log "cannot write $pub/$f"
            exit 1
        fi
    done
    # The Java trust store: a CA made by an airlock older than the file has none until
    # `airlock run` writes it, which is after this copy.
    if [ -e "$ca_dir/truststore.p12" ]; then
        if ! publish "$ca_dir/truststore.p12" "$pub/truststore.p12"; then
            log "cannot write $pub/truststore.p12"
            exit 1
        fi
    else
        log "no truststore.p12 in $ca_dir (a CA made by an older airlock): Java clients will" \
            "not trust it"
    fi
    # wget reads ca_certificate as an absolute path: name the public copy, not the private one.
    tmp="$pub/wgetrc.tmp.$$"
    if ! { printf 'ca_certificate = %s/bundle.pem\n' "$pub_abs" >"$tmp" &&
        chmod 0644 "$tmp" && mv -f "$tmp" "$pub/wgetrc"; }; then
        log "cannot write $pub/wgetrc"
        exit 1
    fi
    chmod 0700 "$ca_dir" 2>/dev/null || true
    log "public CA files in $pub"
fi

if [ "${AIRLOCK_INIT_ONLY:-0}" = 1 ]; then
    log "CA ready in $ca_dir"
    exit 0
fi

policy=${AIRLOCK_POLICY:-/etc/airlock/policy.json}
listen=${AIRLOCK_LISTEN:-127.0.0.1:3128}
# A Unix socket by default: in a pod the agent shares the network namespace, so a loopback
# port would be the agent's to read too. The image makes /run/airlock (0700, uid 10001).
admin=${AIRLOCK_ADMIN:-unix:/run/airlock/admin.sock}

# Build the argument list in front of the caller's own arguments (POSIX sh has no arrays).
set -- --admin "$admin" --log-format json "$@"
if [ -n "${AIRLOCK_HEALTH:-}" ]; then
    set -- --health "$AIRLOCK_HEALTH" "$@"
fi
if [ -n "${AIRLOCK_PROVIDERS:-}" ]; then
    set -- --providers "$AIRLOCK_PROVIDERS" "$@"
fi
exec "$bin" run --listen "$listen" --ca-dir "$ca_dir" --policy "$policy" "$@"
