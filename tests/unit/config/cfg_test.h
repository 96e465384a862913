/* cfg_test.h - what the config unit tests share: the error buffer, parsing a document as if
 * it were a file in fixtures/, the check that one is refused with a given error line, and
 * the sites documents are built around.
 *
 * The tests run in tests/unit/config, so fixture paths are "fixtures/...".
 */
#ifndef MOAT_TEST_CFG_TEST_H
#define MOAT_TEST_CFG_TEST_H

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config.h"

/* A certificate whose files are in fixtures/, and upstreams for a site. */
#define CERT_A "\"certificate\":{\"cert\":\"a.pem\",\"key\":\"a.key\"}"
#define UPS "\"upstreams\":[\"127.0.0.1:9000\"]"
/* A site that is valid on its own, to build documents around one bad key. */
#define SITE_A "{\"hosts\":[\"a.test\"]," CERT_A "," UPS "}"
/* A site without "certificate": its certificate comes from ACME. */
#define SITE_ACME "{\"hosts\":[\"a.test\"]," UPS "}"
/* An EAB key: 32 bytes of base64url, padded. */
#define HMAC_KEY "yMnKy8zNzs_Q0dLT1NXW19jZ2tvc3d7f4OHi4-Tl5uc="

/* Where every call under test writes its error lines. */
static char err[8192];
/* The directory the test runs in; cwd_init fills it. */
static char cwd[PATH_MAX];

/* Fills cwd. Returns 0, or -1 (said on stderr) when the directory cannot be known. */
static inline int cwd_init(void)
{
    if (getcwd(cwd, sizeof(cwd)) == NULL) {
        perror("getcwd");
        return -1;
    }
    return 0;
}

/* cwd + "/fixtures/" + name: what a relative path in a fixture becomes. The text stays
 * valid until the next call. */
static inline const char *fixture_abs(const char *name)
{
    static char buf[PATH_MAX + 64];
    snprintf(buf, sizeof(buf), "%s/fixtures/%s", cwd, name);
    return buf;
}

/* Parses json with relative paths taken from base_dir (NULL: the current directory). */
static inline struct cfg *parse_in(const char *json, const char *base_dir)
{
    return cfg_parse(json, strlen(json), base_dir, err, sizeof(err));
}

/* Parses json as if it were a file in fixtures/. */
static inline struct cfg *parse(const char *json) { return parse_in(json, "fixtures"); }

/* The number of lines in s: each error is one. */
static inline int count_lines(const char *s)
{
    int n = s[0] != '\0' ? 1 : 0;
    for (; *s != '\0'; s++) {
        n += *s == '\n';
    }
    return n;
}

/* cfg must be NULL with an error line containing want in err; frees cfg either way. Two
 * checks; line is the caller's, for the message. */
static inline void check_refused(struct cfg *cfg, const char *want, int line)
{
    if (cfg != NULL || strstr(err, want) == NULL) {
        fprintf(stderr, "line %d: want error containing\n  %s\ngot (cfg %s)\n  %s\n", line, want,
                cfg != NULL ? "non-NULL" : "NULL", err);
    }
    CHECK(cfg == NULL);
    CHECK(strstr(err, want) != NULL);
    cfg_free(cfg);
}
/* The result of a parse or cfg_from_cli must be a refusal with want. */
#define CHECK_REFUSED(cfg, want) check_refused(cfg, want, __LINE__)
/* The document json must be refused with want. */
#define CHECK_DOC_ERROR(json, want) check_refused(parse(json), want, __LINE__)

#endif
