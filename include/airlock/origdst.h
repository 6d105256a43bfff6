/* SPDX-License-Identifier: MIT */
/* origdst: where a connection accepted on airlock's transparent listener was going before the
 * kernel turned it towards airlock. Two ways to get there: nftables/iptables `redirect` or DNAT
 * rewrite the destination and conntrack remembers the original (SO_ORIGINAL_DST, and its IPv6
 * form IP6T_SO_ORIGINAL_DST); `tproxy` leaves the destination as it was, so the socket's own
 * local address is the original destination. No libuv: it takes the accepted socket's fd. */
#ifndef AIRLOCK_ORIGDST_H
#define AIRLOCK_ORIGDST_H

#include <sys/socket.h>

/* The original destination of the accepted TCP socket fd (borrowed), into *out: AF_INET or
 * AF_INET6 with the port set. An IPv4 connection accepted on a dual-stack IPv6 socket comes
 * out as AF_INET (never as ::ffff:a.b.c.d), so that one address has one form. Where conntrack
 * knows no original destination (a tproxy socket, or no NAT table in the namespace) this is
 * the local address (getsockname): a connection that was not redirected at all names airlock's
 * own listener, which the caller refuses as a loop. 0, or a negative errno (-ENOTCONN, -EBADF,
 * -EAFNOSUPPORT for a socket of another family). */
int origdst_get(int fd, struct sockaddr_storage *out);

#endif
