/* SPDX-License-Identifier: MIT */
/* What ca.c (the CA and its leaves) shares with ca_truststore.c (the Java trust store written
 * beside it). Not a public header. */
#ifndef AIRLOCK_CA_INTERNAL_H
#define AIRLOCK_CA_INTERNAL_H

#include <stddef.h>
#include <sys/types.h>

/* err (errlen bytes) := "what path: " and OpenSSL's last error. */
void ca_ssl_fail(char *err, size_t errlen, const char *what, const char *path);
/* out := dir/name; -1 when it does not fit. */
int ca_join_path(char *out, size_t cap, const char *dir, const char *name);
/* Write dir/name atomically (a temporary file renamed over it) with mode; 0 or -1 (err set). */
int ca_write_file(const char *dir, const char *name, const char *data, size_t len, mode_t mode,
                  char *err, size_t errlen);

#endif
