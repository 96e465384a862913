/* test_values.c - the single-value helpers: durations, host:port, networks, host match. */
#include <arpa/inet.h>
#include <stdlib.h>

#include "cfg_test.h"

static void check_duration(const char *s, uint64_t want, int line)
{
    uint64_t ms = 12345;
    int rc = cfg_parse_duration(s, &ms);
    if (rc != 0 || ms != want) {
        fprintf(stderr, "line %d: \"%s\" -> rc %d, %llu ms; want %llu\n", line, s, rc,
                (unsigned long long)ms, (unsigned long long)want);
    }
    CHECK(rc == 0 && ms == want);
}
#define CHECK_DURATION(s, want) check_duration(s, want, __LINE__)

static void check_bad_duration(const char *s, int line)
{
    uint64_t ms = 12345;
    int rc = cfg_parse_duration(s, &ms);
    if (rc != -1 || ms != 12345) {
        fprintf(stderr, "line %d: \"%s\" accepted as %llu ms\n", line, s ? s : "(null)",
                (unsigned long long)ms);
    }
    CHECK(rc == -1 && ms == 12345);
}
#define CHECK_BAD_DURATION(s) check_bad_duration(s, __LINE__)

static void test_durations(void)
{
    CHECK_DURATION("500ms", 500);
    CHECK_DURATION("10s", 10000);
    CHECK_DURATION("2m", 120000);
    CHECK_DURATION("1h", 3600000);
    CHECK_DURATION("10", 10000);
    CHECK_DURATION("1.5", 1500);
    CHECK_DURATION("1.5s", 1500);
    CHECK_DURATION("0.1s", 100);
    CHECK_DURATION("0.5h", 1800000);
    CHECK_DURATION("1.25m", 75000);
    CHECK_DURATION("0s", 0);
    CHECK_DURATION("007s", 7000);
    /* A fraction of a millisecond rounds up, so a positive duration never becomes 0. */
    CHECK_DURATION("0.0001s", 1);
    CHECK_DURATION("1.0001ms", 2);
    CHECK_DURATION("0.0000000000001s", 1);
    CHECK_DURATION("0.5000000000000s", 500);
    CHECK_DURATION("18446744073709551s", 18446744073709551000ull);

    CHECK_BAD_DURATION(NULL);
    CHECK_BAD_DURATION("");
    CHECK_BAD_DURATION("s");
    CHECK_BAD_DURATION("ten");
    CHECK_BAD_DURATION("10x");
    CHECK_BAD_DURATION("10S");
    CHECK_BAD_DURATION("10 s");
    CHECK_BAD_DURATION(" 10s");
    CHECK_BAD_DURATION("-1s");
    CHECK_BAD_DURATION("+1s");
    CHECK_BAD_DURATION("1.s");
    CHECK_BAD_DURATION(".5s");
    CHECK_BAD_DURATION("1e3");
    CHECK_BAD_DURATION("1d");
    CHECK_BAD_DURATION("1ms2");
    CHECK_BAD_DURATION("18446744073709552s");
    CHECK_BAD_DURATION("99999999999999999999999h");
    CHECK(cfg_parse_duration("1s", NULL) == -1);
}

static void check_hostport(const char *s, bool empty_ok, const char *host, unsigned port, int line)
{
    struct cfg_hostport hp = {NULL, 0};
    int rc = cfg_parse_hostport(s, empty_ok, &hp);
    bool ok = rc == 0 && hp.host != NULL && strcmp(hp.host, host) == 0 && hp.port == port;
    if (!ok) {
        fprintf(stderr, "line %d: \"%s\" -> rc %d, \"%s\" %u\n", line, s, rc,
                hp.host ? hp.host : "(null)", hp.port);
    }
    CHECK(ok);
    free(hp.host);
}
#define CHECK_HOSTPORT(s, e, h, p) check_hostport(s, e, h, p, __LINE__)

static void check_bad_hostport(const char *s, bool empty_ok, int line)
{
    struct cfg_hostport hp = {NULL, 7};
    int rc = cfg_parse_hostport(s, empty_ok, &hp);
    if (rc != -1 || hp.host != NULL || hp.port != 7) {
        fprintf(stderr, "line %d: \"%s\" accepted\n", line, s ? s : "(null)");
    }
    CHECK(rc == -1 && hp.host == NULL && hp.port == 7);
    free(hp.host);
}
#define CHECK_BAD_HOSTPORT(s, e) check_bad_hostport(s, e, __LINE__)

static void test_hostport(void)
{
    CHECK_HOSTPORT("127.0.0.1:80", false, "127.0.0.1", 80);
    CHECK_HOSTPORT("[::1]:443", false, "::1", 443);
    CHECK_HOSTPORT("[2001:db8::1]:65535", false, "2001:db8::1", 65535);
    CHECK_HOSTPORT("[::ffff:10.0.0.1]:1", false, "::ffff:10.0.0.1", 1);
    CHECK_HOSTPORT("backend.local:8080", false, "backend.local", 8080);
    CHECK_HOSTPORT("Backend:8080", false, "Backend", 8080);
    CHECK_HOSTPORT("my_service:9000", false, "my_service", 9000);
    CHECK_HOSTPORT("h:0", false, "h", 0);
    CHECK_HOSTPORT(":443", true, "", 443);
    CHECK_HOSTPORT(":0", true, "", 0);
    CHECK_HOSTPORT("h:00080", false, "h", 80);

    CHECK_BAD_HOSTPORT(NULL, true);
    CHECK_BAD_HOSTPORT("", true);
    CHECK_BAD_HOSTPORT("h", false);
    CHECK_BAD_HOSTPORT("h:", false);
    CHECK_BAD_HOSTPORT("h:99999", false);
    CHECK_BAD_HOSTPORT("h:65536", false);
    CHECK_BAD_HOSTPORT("h:12ab", false);
    CHECK_BAD_HOSTPORT("h:-1", false);
    CHECK_BAD_HOSTPORT("h:+1", false);
    CHECK_BAD_HOSTPORT("h: 1", false);
    CHECK_BAD_HOSTPORT("[::1", false);
    CHECK_BAD_HOSTPORT("[::1]", false);
    CHECK_BAD_HOSTPORT("[::1]:", false);
    CHECK_BAD_HOSTPORT("[::1]80", false);
    CHECK_BAD_HOSTPORT("[]:80", true);
    CHECK_BAD_HOSTPORT("[example.com]:80", false);
    CHECK_BAD_HOSTPORT("[1.2.3.4]:80", false);
    CHECK_BAD_HOSTPORT("::1:80", false);
    CHECK_BAD_HOSTPORT("::1", false);
    CHECK_BAD_HOSTPORT(":80", false);
    CHECK_BAD_HOSTPORT("a b:80", false);
    CHECK_BAD_HOSTPORT("a..b:80", false);
    CHECK_BAD_HOSTPORT("999.1.1.1:80", false);
    CHECK_BAD_HOSTPORT("-a:80", false);
}

static struct cfg_cidr net(int family, const char *addr, unsigned prefix)
{
    struct cfg_cidr c;
    memset(&c, 0, sizeof(c));
    c.family = family;
    c.prefix = prefix;
    CHECK(inet_pton(family == 4 ? AF_INET : AF_INET6, addr, c.addr) == 1);
    return c;
}

static bool match(const struct cfg_cidr *nets, size_t n, const char *addr)
{
    uint8_t buf[16];
    if (inet_pton(AF_INET, addr, buf) == 1) {
        return cfg_cidr_match(nets, n, 4, buf);
    }
    CHECK(inet_pton(AF_INET6, addr, buf) == 1);
    return cfg_cidr_match(nets, n, 6, buf);
}

static void test_cidr(void)
{
    struct cfg_cidr nets[] = {
        net(4, "10.0.0.0", 8), net(4, "192.168.1.7", 32), net(6, "2001:db8::", 32),
        net(6, "::1", 128),    net(4, "172.16.0.0", 12),
    };
    size_t n = sizeof(nets) / sizeof(nets[0]);

    CHECK(match(nets, n, "10.1.2.3"));
    CHECK(match(nets, n, "10.255.255.255"));
    CHECK(!match(nets, n, "11.0.0.1"));
    CHECK(!match(nets, n, "9.255.255.255"));
    CHECK(match(nets, n, "192.168.1.7"));
    CHECK(!match(nets, n, "192.168.1.8"));
    CHECK(match(nets, n, "172.31.255.255"));
    CHECK(!match(nets, n, "172.32.0.0"));
    CHECK(!match(nets, n, "172.15.255.255"));
    CHECK(match(nets, n, "2001:db8::5"));
    CHECK(match(nets, n, "2001:db8:ffff::"));
    CHECK(!match(nets, n, "2001:db9::"));
    CHECK(match(nets, n, "::1"));
    CHECK(!match(nets, n, "::2"));
    /* IPv4-mapped IPv6 addresses match IPv4 networks. */
    CHECK(match(nets, n, "::ffff:10.9.9.9"));
    CHECK(match(nets, n, "::ffff:192.168.1.7"));
    CHECK(!match(nets, n, "::ffff:11.0.0.1"));
    /* An IPv4 network does not match a v6 address that merely ends in the same bytes. */
    CHECK(!match(nets, n, "::10.9.9.9"));
    CHECK(!match(nets, 0, "10.1.2.3"));

    /* A mapped network written in IPv6 form matches plain IPv4 addresses too. */
    struct cfg_cidr mapped = net(6, "::ffff:10.0.0.0", 104);
    CHECK(match(&mapped, 1, "10.2.3.4"));
    CHECK(match(&mapped, 1, "::ffff:10.2.3.4"));
    CHECK(!match(&mapped, 1, "11.2.3.4"));

    struct cfg_cidr all4 = net(4, "0.0.0.0", 0), all6 = net(6, "::", 0);
    CHECK(match(&all4, 1, "1.2.3.4"));
    CHECK(match(&all4, 1, "::ffff:1.2.3.4"));
    CHECK(!match(&all4, 1, "2001:db8::1"));
    CHECK(match(&all6, 1, "2001:db8::1"));
    CHECK(!match(&all6, 1, "1.2.3.4"));

    uint8_t a[16] = {10, 0, 0, 1};
    CHECK(!cfg_cidr_match(nets, n, 5, a));
    CHECK(!cfg_cidr_match(nets, n, 4, NULL));
}

static void test_host_match(void)
{
    CHECK(cfg_host_match("a.test", "a.test"));
    CHECK(!cfg_host_match("a.test", "b.test"));
    CHECK(!cfg_host_match("a.test", "x.a.test"));
    CHECK(cfg_host_match("*.b.test", "x.b.test"));
    CHECK(cfg_host_match("*.b.test", "xn--bcher-kva.b.test"));
    CHECK(!cfg_host_match("*.b.test", "b.test"));
    CHECK(!cfg_host_match("*.b.test", "a.c.b.test"));
    CHECK(!cfg_host_match("*.b.test", ".b.test"));
    CHECK(!cfg_host_match("*.b.test", "xb.test"));
    CHECK(!cfg_host_match("*.b.test", "x.b.test.evil"));
    CHECK(!cfg_host_match("*.b.test", "x.bb.test"));
    CHECK(!cfg_host_match("a*.b.test", "ab.b.test"));
    /* Host headers keep the client's case; DNS names compare without it. */
    CHECK(cfg_host_match("a.test", "A.Test"));
    CHECK(cfg_host_match("*.b.test", "X.B.TEST"));
    /* "*", the catch-all of on-demand sites, matches any non-empty name. */
    CHECK(cfg_host_match("*", "a.test"));
    CHECK(cfg_host_match("*", "x.b.test"));
    CHECK(cfg_host_match("*", "localhost"));
    CHECK(cfg_host_match("*", "*"));
    CHECK(!cfg_host_match("*", ""));
    CHECK(!cfg_host_match("*", NULL));
    CHECK(!cfg_host_match("*x", "ax"));
    CHECK(!cfg_host_match("**", "a.test"));
    CHECK(!cfg_host_match(NULL, "a.test"));
    CHECK(!cfg_host_match("a.test", NULL));
}

int main(void)
{
    test_durations();
    test_hostport();
    test_cidr();
    test_host_match();
    return check_report();
}
