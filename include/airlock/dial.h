/* SPDX-License-Identifier: MIT */
/* dial: a TCP connection to whichever of several addresses answers first, racing them as RFC
 * 8305 (Happy Eyeballs v2) describes: address families alternate, a new attempt starts every
 * DIAL_ATTEMPT_DELAY_MS (or as soon as one fails), earlier attempts keep running, the first
 * to connect wins and the rest are closed. A blackholed address therefore costs 250 ms, not
 * the whole connect timeout. Unlike the RFC, at most DIAL_MAX_IN_FLIGHT attempts are open at
 * once: a new one closes the oldest still connecting, so that a race holds a bounded number
 * of descriptors, which the server's connection limit counts on. The caller bounds the whole
 * race with its own timer. Knows nothing of policy: the addresses it gets are already
 * vetted. */
#ifndef AIRLOCK_DIAL_H
#define AIRLOCK_DIAL_H

#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>
#include <uv.h>

#define DIAL_MAX_ADDRS        8
#define DIAL_ATTEMPT_DELAY_MS 250 /* RFC 8305 §8 "Connection Attempt Delay" */
/* Sockets one race holds at most. Two lets the families alternate (the attempt closed to make
 * room is then the previous one of the new attempt's family) and gives every attempt at least
 * one delay, usually two, before it is given up; the last two run until the caller's timer. */
#define DIAL_MAX_IN_FLIGHT 2

struct dial;

/* result: a connected, non-blocking socket that the callee now owns, or a negative libuv
 * error (the last attempt's, UV_ECANCELED after dial_cancel). */
typedef void (*dial_cb)(int result, void *data);

/* Race the n addresses (ports set; the first DIAL_MAX_ADDRS) on loop. cb fires exactly once,
 * always on a later loop turn, after the race's own handles are closed. mark, when not 0, is
 * set as SO_MARK on every socket before it connects (an attempt whose mark cannot be set fails
 * with that error: no unmarked socket ever connects). log_id names the connection in log
 * lines. NULL when out of memory (and no callback). */
struct dial *dial_start(uv_loop_t *loop, const struct sockaddr_storage *addrs, size_t n,
                        uint32_t mark, uint64_t log_id, dial_cb cb, void *data);
/* Stop racing: every attempt is closed and cb fires with UV_ECANCELED once they are. When the
 * outcome is already decided (a winner, or every attempt failed) this changes nothing: cb
 * still fires with it, and the callee must close a socket it no longer wants. */
void dial_cancel(struct dial *d);

/* RFC 8305 §4: the order attempts are made in: the first address's family first, then the
 * families alternating, each family keeping its own order. Exposed for the unit test. */
void dial_interleave(const struct sockaddr_storage *in, size_t n, struct sockaddr_storage *out);

#endif
