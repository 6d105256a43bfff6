/* SPDX-License-Identifier: MIT */
/* Unit tests for rules: the option parsers with tables of accepted and refused values, the
 * cross checks, the whole ruleset for one configuration word for word, what each family and
 * exclusion changes, and the snprintf-like contract of rules_format. `nft -c` reading the
 * output is in test/e2e/test_transparent.py. */
#include "airlock/rules.h"

#include <string.h>

#include "test.h"

static char err[256];

static void test_parse_port(void)
{
    static const struct {
        const char *in;
        int port; /* -1: refused */
    } cases[] = {
        {"1", 1},
        {"80", 80},
        {"65535", 65535},
        {"0", -1},
        {"65536", -1},
        {"080", -1},
        {"+80", -1},
        {"-1", -1},
        {"", -1},
        {"8 0", -1},
        {"80 ", -1},
        {"0x50", -1},
        {"99999999999999999999", -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint16_t port = 0;
        int rc = rules_parse_port(cases[i].in, &port, err, sizeof(err));
        CHECK_EQ(rc, cases[i].port < 0 ? -1 : 0);
        if (cases[i].port >= 0)
            CHECK_EQ(port, cases[i].port);
        else
            CHECK(strstr(err, "1 to 65535") != NULL);
    }
}

static void test_parse_ports(void)
{
    uint16_t ports[RULES_PORTS_MAX];
    size_t n = 0;

    CHECK_EQ(rules_parse_ports("80,443", ports, &n, err, sizeof(err)), 0);
    CHECK_EQ(n, 2);
    CHECK(ports[0] == 80 && ports[1] == 443);
    CHECK_EQ(rules_parse_ports("8443", ports, &n, err, sizeof(err)), 0);
    CHECK(n == 1 && ports[0] == 8443);
    static const char *const bad[] = {"",        ",",      "80,",       ",80",     "80,,443",
                                      "80, 443", "80;443", "80,80",     "80,0",    "80,65536",
                                      "1-1024",  "http",   "80,443,80", "0000080", "8080808080"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        n = 99;
        CHECK_EQ(rules_parse_ports(bad[i], ports, &n, err, sizeof(err)), -1);
        CHECK_EQ(n, 99); /* untouched on error */
        CHECK(err[0] != '\0');
    }
    CHECK_EQ(rules_parse_ports("80,80", ports, &n, err, sizeof(err)), -1);
    CHECK(strstr(err, "twice") != NULL);

    /* RULES_PORTS_MAX ports, and one more */
    char list[RULES_PORTS_MAX * 6 + 8] = "";
    for (int i = 1; i <= RULES_PORTS_MAX; i++)
        snprintf(list + strlen(list), sizeof(list) - strlen(list), i > 1 ? ",%d" : "%d", i);
    CHECK_EQ(rules_parse_ports(list, ports, &n, err, sizeof(err)), 0);
    CHECK_EQ(n, RULES_PORTS_MAX);
    strcat(list, ",999");
    CHECK_EQ(rules_parse_ports(list, ports, &n, err, sizeof(err)), -1);
    CHECK(strstr(err, "more than") != NULL);
}

static void test_parse_uid_and_mark(void)
{
    uint32_t v = 0;

    CHECK_EQ(rules_parse_uid("995", &v, err, sizeof(err)), 0);
    CHECK_EQ(v, 995);
    CHECK_EQ(rules_parse_uid("4294967294", &v, err, sizeof(err)), 0);
    CHECK_EQ(v, 4294967294u);
    CHECK_EQ(rules_parse_uid("0", &v, err, sizeof(err)), -1);
    CHECK(strstr(err, "root") != NULL);
    static const char *const bad_uid[] = {"4294967295", "-1",  "",           "airlock",
                                          "0995",       "1e3", "99999999999"};
    for (size_t i = 0; i < sizeof(bad_uid) / sizeof(bad_uid[0]); i++)
        CHECK_EQ(rules_parse_uid(bad_uid[i], &v, err, sizeof(err)), -1);

    CHECK_EQ(rules_parse_mark("42", &v, err, sizeof(err)), 0);
    CHECK_EQ(v, 42);
    CHECK_EQ(rules_parse_mark("0x2A", &v, err, sizeof(err)), 0);
    CHECK_EQ(v, 42);
    CHECK_EQ(rules_parse_mark("0xffffffff", &v, err, sizeof(err)), 0);
    CHECK_EQ(v, 0xffffffffu);
    CHECK_EQ(rules_parse_mark("4294967295", &v, err, sizeof(err)), 0);
    static const char *const bad_mark[] = {"0",   "0x0",        "0x",          "0x100000000",
                                           "-1",  "4294967296", "0x1g",        "",
                                           "042", "0X",         "0x000000001", "1 "};
    for (size_t i = 0; i < sizeof(bad_mark) / sizeof(bad_mark[0]); i++)
        CHECK_EQ(rules_parse_mark(bad_mark[i], &v, err, sizeof(err)), -1);
}

static void test_parse_family(void)
{
    enum rules_family f;

    CHECK(rules_parse_family("inet", &f, err, sizeof(err)) == 0 && f == RULES_INET);
    CHECK(rules_parse_family("ip", &f, err, sizeof(err)) == 0 && f == RULES_IP);
    CHECK(rules_parse_family("ip6", &f, err, sizeof(err)) == 0 && f == RULES_IP6);
    CHECK_EQ(rules_parse_family("ipv4", &f, err, sizeof(err)), -1);
    CHECK_EQ(rules_parse_family("INET", &f, err, sizeof(err)), -1);
    CHECK_EQ(rules_parse_family("", &f, err, sizeof(err)), -1);
}

static struct rules_config base(void)
{
    return (struct rules_config){.transparent_port = 15001,
                                 .exclude = RULES_BY_UID,
                                 .uid = 995,
                                 .ports = {80, 443},
                                 .nports = 2,
                                 .family = RULES_INET};
}

static void test_check(void)
{
    struct rules_config cfg = base();

    CHECK_EQ(rules_check(&cfg, err, sizeof(err)), 0);
    cfg.ports[1] = 15001;
    CHECK_EQ(rules_check(&cfg, err, sizeof(err)), -1);
    CHECK(strstr(err, "transparent port") != NULL);
    cfg = base();
    cfg.nports = 0;
    CHECK_EQ(rules_check(&cfg, err, sizeof(err)), -1);
    cfg = base();
    cfg.transparent_port = 0;
    CHECK_EQ(rules_check(&cfg, err, sizeof(err)), -1);
    cfg = base();
    cfg.uid = 0;
    CHECK_EQ(rules_check(&cfg, err, sizeof(err)), -1);
    cfg = base();
    cfg.exclude = RULES_BY_MARK;
    cfg.mark = 0;
    CHECK_EQ(rules_check(&cfg, err, sizeof(err)), -1);
}

static const char golden_inet_uid[] =
    "# airlock transparent mode, written by `airlock rules`: apply it in the agent's\n"
    "# network namespace with `nft -f -`.\n"
    "# redirected: outgoing TCP to ports 80, 443, to airlock's transparent port 15001 on "
    "loopback\n"
    "# left alone: airlock's own connections (sockets of uid 995),\n"
    "#             loopback destinations, and port 15001 itself\n"
    "add table inet airlock\n"
    "delete table inet airlock\n"
    "\n"
    "table inet airlock {\n"
    "\tchain output {\n"
    "\t\ttype nat hook output priority -100; policy accept;\n"
    "\t\tmeta skuid 995 return\n"
    "\t\tip daddr 127.0.0.0/8 return\n"
    "\t\tip6 daddr ::1 return\n"
    "\t\ttcp dport 15001 return\n"
    "\t\ttcp dport { 80, 443 } redirect to :15001\n"
    "\t}\n"
    "}\n";

static void test_format_inet_uid(void)
{
    struct rules_config cfg = base();
    char text[4096];
    size_t n = rules_format(&cfg, text, sizeof(text));

    CHECK_EQ(n, strlen(golden_inet_uid));
    CHECK_STR(text, golden_inet_uid);
}

/* The exclusion comes before the redirect, always: else airlock's own connections loop. */
static void check_order(const char *text, const char *exclusion)
{
    const char *ex = strstr(text, exclusion), *redirect = strstr(text, "redirect to");

    CHECK(ex != NULL && redirect != NULL && ex < redirect);
}

static void test_format_variants(void)
{
    struct rules_config cfg = base();
    char text[4096];

    cfg.exclude = RULES_BY_MARK;
    cfg.mark = 0x2a;
    cfg.family = RULES_IP;
    cfg.ports[0] = 443;
    cfg.nports = 1;
    rules_format(&cfg, text, sizeof(text));
    CHECK(strstr(text, "\t\tmeta mark 0x2a return\n") != NULL);
    CHECK(strstr(text, "skuid") == NULL);
    CHECK(strstr(text, "table ip airlock {\n") != NULL);
    CHECK(strstr(text, "add table ip airlock\ndelete table ip airlock\n") != NULL);
    CHECK(strstr(text, "ip daddr 127.0.0.0/8 return") != NULL);
    CHECK(strstr(text, "ip6") == NULL);
    CHECK(strstr(text, "\t\ttcp dport 443 redirect to :15001\n") != NULL);
    CHECK(strstr(text, "to port 443, to") != NULL);
    CHECK(strstr(text, "sockets marked 0x2a") != NULL);
    check_order(text, "meta mark");
    check_order(text, "tcp dport 15001 return");

    cfg.family = RULES_IP6;
    rules_format(&cfg, text, sizeof(text));
    CHECK(strstr(text, "table ip6 airlock {\n") != NULL);
    CHECK(strstr(text, "ip6 daddr ::1 return") != NULL);
    CHECK(strstr(text, " ip daddr") == NULL && strstr(text, "127.0.0.0") == NULL);

    cfg = base();
    for (size_t i = 0; i < RULES_PORTS_MAX; i++)
        cfg.ports[i] = (uint16_t)(60000 + i);
    cfg.nports = RULES_PORTS_MAX;
    cfg.uid = 4294967294u;
    rules_format(&cfg, text, sizeof(text));
    CHECK(strstr(text, "tcp dport { 60000, 60001, ") != NULL);
    CHECK(strstr(text, ", 60031 } redirect to :15001\n") != NULL);
    CHECK(strstr(text, "meta skuid 4294967294 return") != NULL);
    check_order(text, "meta skuid");
}

/* rules_format counts like snprintf: a short buffer holds a cut, terminated prefix. */
static void test_format_truncation(void)
{
    struct rules_config cfg = base();
    char full[4096], small[64];
    size_t n = rules_format(&cfg, full, sizeof(full));
    size_t m;

    memset(small, 'x', sizeof(small));
    m = rules_format(&cfg, small, sizeof(small));
    CHECK_EQ(m, n);
    CHECK_EQ(strlen(small), sizeof(small) - 1);
    CHECK(memcmp(small, full, sizeof(small) - 1) == 0);
    CHECK_EQ(rules_format(&cfg, NULL, 0), n);
    small[0] = 'x';
    CHECK_EQ(rules_format(&cfg, small, 1), n);
    CHECK_EQ(small[0], '\0');
}

int main(void)
{
    RUN(test_parse_port);
    RUN(test_parse_ports);
    RUN(test_parse_uid_and_mark);
    RUN(test_parse_family);
    RUN(test_check);
    RUN(test_format_inet_uid);
    RUN(test_format_variants);
    RUN(test_format_truncation);
    return test_report();
}
