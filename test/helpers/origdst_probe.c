/* SPDX-License-Identifier: MIT */
/* origdst_probe: a stand-in for airlock's transparent listener in the end-to-end tests
 * (test/e2e/test_transparent.py), which run it inside a network namespace of their own with
 * airlock's nftables rules applied. It listens on HOST:PORT, prints "ready", accepts one
 * connection within TIMEOUT seconds (default 10) and prints what origdst_get() answers for it:
 * "origdst HOST:PORT", then exits 0. "timeout" and exit 1 when nobody came; exit 2 on errors. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "airlock/addr.h"
#include "airlock/origdst.h"

static int fail(const char *what, int err)
{
    fprintf(stderr, "origdst_probe: %s: %s\n", what, strerror(err));
    return 2;
}

int main(int argc, char **argv)
{
    struct sockaddr_storage ss, out;
    struct pollfd pfd;
    char text[80];
    int one = 1, l, c, rc;

    if (argc < 2 || argc > 3 || addr_parse_hostport(argv[1], &ss) < 0) {
        fprintf(stderr, "usage: origdst_probe HOST:PORT [TIMEOUT_S]\n");
        return 2;
    }
    l = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l < 0)
        return fail("socket", errno);
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(l, (struct sockaddr *)&ss, sizeof(ss)) < 0 || listen(l, 8) < 0)
        return fail("bind", errno);
    printf("ready\n");
    fflush(stdout);
    pfd = (struct pollfd){.fd = l, .events = POLLIN};
    if (poll(&pfd, 1, (argc == 3 ? atoi(argv[2]) : 10) * 1000) != 1) {
        printf("timeout\n");
        return 1;
    }
    c = accept(l, NULL, NULL);
    if (c < 0)
        return fail("accept", errno);
    rc = origdst_get(c, &out);
    if (rc < 0)
        return fail("origdst_get", -rc);
    addr_format_endpoint((struct sockaddr *)&out, text, sizeof(text));
    printf("origdst %s\n", text);
    close(c);
    close(l);
    return 0;
}
