/* check.h - the assertions every unit test program uses; prints "N passed, N failed". */
#ifndef MOAT_TEST_CHECK_H
#define MOAT_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_passed;
static int check_failed;

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (cond) {                                                                       \
            check_passed++;                                                               \
        } else {                                                                          \
            check_failed++;                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);     \
        }                                                                                 \
    } while (0)

#define CHECK_STR(got, want)                                                              \
    do {                                                                                  \
        const char *check_g_ = (got);                                                     \
        const char *check_w_ = (want);                                                    \
        if (check_g_ != NULL && check_w_ != NULL && strcmp(check_g_, check_w_) == 0) {   \
            check_passed++;                                                               \
        } else {                                                                          \
            check_failed++;                                                               \
            fprintf(stderr, "%s:%d: got \"%s\", want \"%s\"\n", __FILE__, __LINE__,       \
                    check_g_ ? check_g_ : "(null)", check_w_ ? check_w_ : "(null)");      \
        }                                                                                 \
    } while (0)

/* Prints the closing line ctest logs show and returns the process exit status. */
static inline int check_report(void)
{
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed == 0 ? 0 : 1;
}

#endif
