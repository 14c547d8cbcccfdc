/* harness.h: the project's minimal test harness. Each test binary defines
 * test functions, registers them in main() with ST_RUN, and ends with
 * st_test_summary(), which prints "N passed, N failed" (", N skipped") and
 * returns the exit status: non-zero when anything failed.
 *
 * Inside a test, ST_EXPECT(cond, fmt, ...) records a failure with file:line
 * and continues; a test fails if any expectation failed. ST_SKIP(fmt, ...)
 * marks the test skipped with a visible reason and returns.
 *
 * ST_TEST_NO_SKIP=1 in the environment turns every skip into a failure
 * (the GPU check sets it: on a machine with a device, a device test that
 * skips has tested nothing). */
#ifndef ST_HARNESS_H
#define ST_HARNESS_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int st_t_pass, st_t_fail, st_t_skip, st_t_cur_failed, st_t_cur_skipped;

#define ST_EXPECT(cond, ...)                                                   \
    do {                                                                       \
        if (!(cond)) {                                                         \
            printf("    FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);         \
            printf(__VA_ARGS__);                                               \
            printf("\n");                                                      \
            st_t_cur_failed = 1;                                               \
        }                                                                      \
    } while (0)

#define ST_SKIP(...)                                                           \
    do {                                                                       \
        printf("    SKIP: ");                                                  \
        printf(__VA_ARGS__);                                                   \
        printf("\n");                                                          \
        st_t_cur_skipped = 1;                                                  \
        return;                                                                \
    } while (0)

/* 1 when ST_TEST_NO_SKIP is set to anything but "" or "0". */
static inline int st_test_no_skip(void)
{
    const char *s = getenv("ST_TEST_NO_SKIP");
    return s && *s && strcmp(s, "0") != 0;
}

/* |a - b| <= atol + rtol * |ref| */
static inline int st_close(double a, double ref, double atol, double rtol)
{
    return isfinite(a) && fabs(a - ref) <= atol + rtol * fabs(ref);
}

#define ST_RUN(fn)                                                             \
    do {                                                                       \
        st_t_cur_failed = st_t_cur_skipped = 0;                                \
        printf("[ RUN  ] %s\n", #fn);                                          \
        fflush(stdout);                                                        \
        fn();                                                                  \
        if (st_t_cur_failed) {                                                 \
            st_t_fail++;                                                       \
            printf("[ FAIL ] %s\n", #fn);                                      \
        } else if (st_t_cur_skipped && st_test_no_skip()) {                    \
            st_t_fail++;                                                       \
            printf("[ FAIL ] %s (skipped; ST_TEST_NO_SKIP=1 makes a skip a "    \
                   "failure)\n", #fn);                                         \
        } else if (st_t_cur_skipped) {                                         \
            st_t_skip++;                                                       \
            printf("[ SKIP ] %s\n", #fn);                                      \
        } else {                                                               \
            st_t_pass++;                                                       \
            printf("[  OK  ] %s\n", #fn);                                      \
        }                                                                      \
        fflush(stdout);                                                        \
    } while (0)

static inline int st_test_summary(const char *suite)
{
    printf("%s: %d passed, %d failed, %d skipped\n", suite, st_t_pass, st_t_fail,
           st_t_skip);
    return st_t_fail ? 1 : 0;
}

#endif
