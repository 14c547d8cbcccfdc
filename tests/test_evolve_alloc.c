/* test_evolve_alloc.c: SET evolution allocates nothing once its workspace
 * exists (evolve_ws_create at start-up), so a run that fitted in memory when
 * it started cannot fail with an allocation error after an epoch of work.
 * This binary counts every malloc, calloc, realloc and posix_memalign (it
 * defines them, forwarding to glibc's) while layer_evolve_ws runs on layers
 * of m = 1, 2, 4 over several epochs; the count must be 0. It also checks
 * that the counter sees the allocations of layer_evolve (which makes a
 * temporary workspace), so a count of 0 is not a counter that never counts. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/common.h"
#include "harness.h"
#include "model/model.h"

#if defined(__SANITIZE_ADDRESS__)
/* AddressSanitizer owns malloc: the counting allocator cannot sit beside it. */
int main(void)
{
    printf("    SKIP: allocation counting is not possible under AddressSanitizer\n");
    printf("test_evolve_alloc: 0 passed, 0 failed, 1 skipped\n");
    return 0;
}
#else
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern int __posix_memalign(void **, size_t, size_t);
extern void *__libc_memalign(size_t, size_t);

static volatile int g_counting;
static volatile long g_allocs;

void *malloc(size_t n)
{
    if (g_counting)
        g_allocs++;
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t s)
{
    if (g_counting)
        g_allocs++;
    return __libc_calloc(n, s);
}

void *realloc(void *p, size_t n)
{
    if (g_counting)
        g_allocs++;
    return __libc_realloc(p, n);
}

int posix_memalign(void **p, size_t a, size_t n)
{
    if (g_counting)
        g_allocs++;
    void *q = __libc_memalign(a, n);
    if (!q)
        return 12; /* ENOMEM */
    *p = q;
    return 0;
}

static void check_motif(int m)
{
    int32_t sizes[4] = {800, 1200, 1200, 10};
    st_model mdl;
    char err[ST_ERRLEN];
    ST_EXPECT(model_init(&mdl, sizes, 3, m, 20, 11, err) == 0, "%s", err);
    st_evolve_ws *ws = evolve_ws_create(&mdl, 0.3);
    st_evolve_stats st;
    g_allocs = 0;
    g_counting = 1;
    int rc = 0;
    for (int epoch = 1; epoch <= 4 && rc == 0; epoch++)
        for (int l = 0; l < mdl.n_layers && rc == 0; l++)
            rc = layer_evolve_ws(&mdl.layers[l], l + 1, 11, epoch, 0.3, &st, ws, err);
    g_counting = 0;
    long with_ws = g_allocs;
    ST_EXPECT(rc == 0, "m=%d: %s", m, err);
    ST_EXPECT(with_ws == 0, "m=%d: evolution with a workspace allocated %ld times", m, with_ws);
    /* the counter works: the temporary-workspace entry point allocates */
    g_allocs = 0;
    g_counting = 1;
    rc = layer_evolve(&mdl.layers[0], 1, 11, 5, 0.3, &st, err);
    g_counting = 0;
    ST_EXPECT(rc == 0 && g_allocs > 0, "m=%d: layer_evolve allocated %ld times (rc %d)", m,
              g_allocs, rc);
    printf("    m=%d: 4 epochs x 3 layers: %ld allocations; layer_evolve alone: %ld\n", m,
           with_ws, g_allocs);
    evolve_ws_free(ws);
    model_free(&mdl);
}

static void test_no_alloc_m1(void) { check_motif(1); }
static void test_no_alloc_m2(void) { check_motif(2); }
static void test_no_alloc_m4(void) { check_motif(4); }

int main(void)
{
    ST_RUN(test_no_alloc_m1);
    ST_RUN(test_no_alloc_m2);
    ST_RUN(test_no_alloc_m4);
    return st_test_summary("test_evolve_alloc");
}
#endif
