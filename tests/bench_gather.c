/* bench_gather.c: the memory floor under settrain's m = 1 kernels
 * (scripts/bench_scale.sh builds and runs it). A sparse layer's forward
 * gathers, for each connection, the row of 128 activations (512 bytes at
 * batch 128) of its input neuron and adds it, times the weight, into the
 * output row; the backward does the same with the delta rows. This program
 * times that access pattern alone, with the kernels' 512-bit FMA chains and
 * their software prefetch 8 entries ahead, over a matrix of N rows:
 *
 *   random     each output row gathers FAN rows at random (an Erdős–Rényi
 *              layer's pattern, sorted within the row as settrain's index)
 *   sequential the same number of rows in storage order (the best locality
 *              any reordering could give), and
 *   stream     a plain sum over the matrix (the core's read bandwidth).
 *
 * For each N of the command line it prints one CSV line: the nanoseconds per
 * gathered row of each pattern and the gather's bytes per second. The ratio
 * of the random gather's cost at a large N to its cost at a small N is what
 * any kernel that gathers rows pays when the activations leave the cache.
 *
 *   bench_gather [N ...]      e.g. bench_gather 3000 1000000 (default)
 *
 * Output: N,matrix_mib,gathers,random_ns,random_pf_ns,sequential_ns,stream_gbs,random_gbs
 * (random_ns: without prefetch; random_pf_ns: with it, as the kernels do
 * beyond the cache; each the fastest of 3 rounds, process CPU time.) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LD 128 /* floats a row: batch 128 */
#define FAN 40 /* rows gathered per output row: epsilon 20, n_in = n_out */
#define PF 8   /* prefetch distance, as the kernels' ST_PF_AHEAD */

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));

/* out row o = sum over its FAN entries k of w[k] * x[idx[k]]: the forward of
 * fw_1x1 (one chain of FMAs per 16 columns). */
static void gather(float *restrict out, const float *restrict x, const int32_t *restrict idx,
                   const float *restrict w, int64_t rows, int pf)
{
    for (int64_t o = 0; o < rows; o++) {
        v16 acc[LD / 16];
        for (int v = 0; v < LD / 16; v++)
            acc[v] = (v16){0};
        const int64_t k0 = o * FAN, k1 = k0 + FAN, kend = rows * FAN;
        for (int64_t k = k0; k < k1; k++) {
            if (pf) {
                const int64_t kp = k + PF < kend ? k + PF : kend - 1;
                const char *p = (const char *)(x + (int64_t)idx[kp] * LD);
                for (int c = 0; c < LD * 4; c += 64)
                    __builtin_prefetch(p + c);
            }
            const float *xr = x + (int64_t)idx[k] * LD;
            const float wk = w[k];
            for (int v = 0; v < LD / 16; v++)
                acc[v] += wk * *(const v16u *)(xr + 16 * v);
        }
        for (int v = 0; v < LD / 16; v++)
            *(v16u *)(out + o * LD + 16 * v) = acc[v];
    }
}

static float stream_sum(const float *restrict x, int64_t n)
{
    v16 acc[8] = {{0}};
    for (int64_t i = 0; i + 128 <= n; i += 128)
        for (int v = 0; v < 8; v++)
            acc[v] += *(const v16u *)(x + i + 16 * v);
    float s = 0;
    for (int v = 0; v < 8; v++)
        for (int l = 0; l < 16; l++)
            s += acc[v][l];
    return s;
}

int main(int argc, char **argv)
{
    int64_t def[] = {3000, 1000000};
    int nn = argc > 1 ? argc - 1 : 2;
    printf("N,matrix_mib,gathers,random_ns,random_pf_ns,sequential_ns,stream_gbs,random_gbs\n");
    for (int a = 0; a < nn; a++) {
        const int64_t n = argc > 1 ? atoll(argv[a + 1]) : def[a];
        if (n < FAN || n > (1LL << 30)) {
            fprintf(stderr, "bench_gather: error: N must be %d to 2^30, not %s\n", FAN,
                    argv[a + 1]);
            return 2;
        }
        /* output rows: as many as the matrix's (a square layer), at most 2^18 so
         * a large N's run stays about a second; at least 2^14 for a small one */
        int64_t rows = n < (1 << 14) ? (1 << 14) : n > (1 << 18) ? (1 << 18) : n;
        const int64_t g = rows * FAN;
        float *x = malloc(sizeof(float) * (size_t)(n * LD));
        float *out = malloc(sizeof(float) * (size_t)(rows * LD));
        float *w = malloc(sizeof(float) * (size_t)g);
        int32_t *ri = malloc(sizeof(int32_t) * (size_t)g), *si = malloc(sizeof(int32_t) * (size_t)g);
        if (!x || !out || !w || !ri || !si) {
            fprintf(stderr, "bench_gather: error: out of memory for N = %lld\n", (long long)n);
            return 1;
        }
        for (int64_t i = 0; i < n * LD; i++)
            x[i] = (float)(i % 1000) * 1e-3f;
        for (int64_t k = 0; k < g; k++) {
            w[k] = (float)(next_rand() % 1000) * 1e-3f;
            ri[k] = (int32_t)(next_rand() % (uint64_t)n);
            si[k] = (int32_t)(k % n);
        }
        for (int64_t o = 0; o < rows; o++)
            qsort(ri + o * FAN, FAN, sizeof(int32_t), cmp_i32);
        double best[4] = {1e30, 1e30, 1e30, 1e30};
        volatile float sink = 0;
        for (int round = 0; round < 3; round++) {
            double t = cpu_now();
            gather(out, x, ri, w, rows, 0);
            t = cpu_now() - t, best[0] = t < best[0] ? t : best[0];
            t = cpu_now();
            gather(out, x, ri, w, rows, 1);
            t = cpu_now() - t, best[1] = t < best[1] ? t : best[1];
            t = cpu_now();
            gather(out, x, si, w, rows, 0);
            t = cpu_now() - t, best[2] = t < best[2] ? t : best[2];
            t = cpu_now();
            sink += stream_sum(x, n * LD);
            t = cpu_now() - t, best[3] = t < best[3] ? t : best[3];
            sink += out[round];
        }
        const double bytes = (double)g * LD * sizeof(float);
        const double rnd = best[0] < best[1] ? best[0] : best[1];
        printf("%lld,%.1f,%lld,%.2f,%.2f,%.2f,%.1f,%.1f\n", (long long)n,
               (double)n * LD * 4 / 1048576.0, (long long)g, best[0] / g * 1e9, best[1] / g * 1e9,
               best[2] / g * 1e9, (double)n * LD * 4 / best[3] * 1e-9, bytes / rnd * 1e-9);
        (void)sink;
        free(x), free(out), free(w), free(ri), free(si);
    }
    return 0;
}
