/* SPDX-License-Identifier: MIT */
/* The two sides of a proxied connection, as the transport (conn) and the relay name them. */
#ifndef AIRLOCK_SIDE_H
#define AIRLOCK_SIDE_H

enum side_id { SIDE_CLIENT = 0, SIDE_UPSTREAM = 1 };

#endif
