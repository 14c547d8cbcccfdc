/* test_core.c: unit tests of the host core. The Philox generator against
 * the published Random123 answers; the Erdős–Rényi initialisation against
 * its binomial statistics and structural invariants; the CPU operators
 * (forward, activations, softmax cross-entropy, backward delta, SDDMM
 * gradient, momentum update, dropout mask) against dense double-precision
 * references and central finite differences; and SET evolution (prune,
 * regrow) against an independent re-derivation from DESIGN.md and the
 * header comment of src/model/evolve.c.
 *
 * Legend: B batch, ld batch stride (columns B..ld-1 are padding), I / O a
 * layer's in / out features, m motif size, bi x bo block shape, nb present
 * blocks, nbr x nbc the block grid, e a storage index into w (nnz floats).
 * Every buffer here is host memory. Inputs come from the tests' own
 * splitmix64 generator, independent of the Philox code under test. */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "backend.h"
#include "util/common.h"
#include "train/config.h"
#include "cpu/cpu_ops.h"
#include "cpu/thread_adapt.h"
#include "harness.h"
#include "test_rng.h"
#include "model/model.h"
#include "util/philox.h"
#ifdef __SSE2__
#include <immintrin.h>
#endif

/* ---- helpers ------------------------------------------------------------ */

static int trng_below(int n) { return (int)(trng_u01() * n); }

/* Report the first few of many element-wise failures, count all of them. */
static void note_bad(int *bad, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note_bad(int *bad, const char *fmt, ...)
{
    if ((*bad)++ < 5) {
        va_list ap;
        va_start(ap, fmt);
        printf("      ");
        vprintf(fmt, ap);
        printf("\n");
        va_end(ap);
    }
}


/* Allocate w, v, bias, vbias (and the transposed index of a sparse layer,
 * built from row_ptr / col_idx) for a layer whose shape is set. */
static void layer_alloc_rest(st_layer *L)
{
    int64_t nnz = layer_nnz(L);
    L->w = calloc((size_t)nnz + 1, sizeof(float));
    L->v = calloc((size_t)nnz + 1, sizeof(float));
    L->bias = calloc((size_t)L->n_out, sizeof(float));
    L->vbias = calloc((size_t)L->n_out, sizeof(float));
    if (!L->dense) {
        L->t_ptr = malloc(sizeof(int32_t) * ((size_t)L->nbc + 1));
        L->t_blk = malloc(sizeof(int32_t) * ((size_t)L->nb + 1));
        L->t_row = malloc(sizeof(int32_t) * ((size_t)L->nb + 1));
        layer_build_transpose(L);
    }
}

/* A hand-built sparse layer from a block-CSR; w (nb * bi * bo floats) or
 * NULL for zeros; momentum and biases 0. */
static st_layer layer_from_csr(int n_in, int n_out, int bi, int bo, const int32_t *row_ptr,
                               const int32_t *col_idx, const float *w)
{
    st_layer L;
    memset(&L, 0, sizeof L);
    L.n_in = n_in;
    L.n_out = n_out;
    L.bi = bi;
    L.bo = bo;
    L.nbr = n_out / bo;
    L.nbc = n_in / bi;
    L.p = 0.5;
    L.nb = row_ptr[L.nbr];
    L.row_ptr = malloc(sizeof(int32_t) * ((size_t)L.nbr + 1));
    memcpy(L.row_ptr, row_ptr, sizeof(int32_t) * ((size_t)L.nbr + 1));
    L.col_idx = malloc(sizeof(int32_t) * ((size_t)L.nb + 1));
    memcpy(L.col_idx, col_idx, sizeof(int32_t) * (size_t)L.nb);
    layer_alloc_rest(&L);
    if (w)
        memcpy(L.w, w, sizeof(float) * (size_t)layer_nnz(&L));
    return L;
}

/* A random sparse layer: each block present with probability density,
 * block row empty_row (-1: none) forced empty; weights U(-1, 1), momentum
 * U(-0.1, 0.1), biases U(-0.5, 0.5), bias momentum U(-0.05, 0.05). */
static st_layer make_sparse_layer(int n_in, int n_out, int bi, int bo, double density,
                                  int empty_row)
{
    st_layer L;
    memset(&L, 0, sizeof L);
    L.n_in = n_in;
    L.n_out = n_out;
    L.bi = bi;
    L.bo = bo;
    L.nbr = n_out / bo;
    L.nbc = n_in / bi;
    L.p = density;
    L.row_ptr = malloc(sizeof(int32_t) * ((size_t)L.nbr + 1));
    L.col_idx = malloc(sizeof(int32_t) * ((size_t)L.nbr * L.nbc + 1));
    L.row_ptr[0] = 0;
    for (int32_t R = 0; R < L.nbr; R++) {
        int32_t n = L.row_ptr[R];
        for (int32_t C = 0; C < L.nbc; C++)
            if (R != empty_row && trng_u01() < density)
                L.col_idx[n++] = C;
        L.row_ptr[R + 1] = n;
    }
    L.nb = L.row_ptr[L.nbr];
    layer_alloc_rest(&L);
    for (int64_t e = 0; e < layer_nnz(&L); e++) {
        L.w[e] = trng_unif(-1, 1);
        L.v[e] = trng_unif(-0.1, 0.1);
    }
    for (int32_t o = 0; o < n_out; o++) {
        L.bias[o] = trng_unif(-0.5, 0.5);
        L.vbias[o] = trng_unif(-0.05, 0.05);
    }
    return L;
}

/* A random dense layer (W^T (O, I) row-major), values as above. */
static st_layer make_dense_layer(int n_in, int n_out)
{
    st_layer L;
    memset(&L, 0, sizeof L);
    L.n_in = n_in;
    L.n_out = n_out;
    L.bi = L.bo = 1;
    L.nbr = n_out;
    L.nbc = n_in;
    L.p = 1.0;
    L.dense = 1;
    layer_alloc_rest(&L);
    for (int64_t e = 0; e < layer_nnz(&L); e++) {
        L.w[e] = trng_unif(-1, 1);
        L.v[e] = trng_unif(-0.1, 0.1);
    }
    for (int32_t o = 0; o < n_out; o++) {
        L.bias[o] = trng_unif(-0.5, 0.5);
        L.vbias[o] = trng_unif(-0.05, 0.05);
    }
    return L;
}

static st_layer copy_layer(const st_layer *S)
{
    st_layer L = *S;
    int64_t nnz = layer_nnz(S);
    L.w = malloc(sizeof(float) * ((size_t)nnz + 1));
    L.v = malloc(sizeof(float) * ((size_t)nnz + 1));
    memcpy(L.w, S->w, sizeof(float) * (size_t)nnz);
    memcpy(L.v, S->v, sizeof(float) * (size_t)nnz);
    L.bias = malloc(sizeof(float) * (size_t)S->n_out);
    L.vbias = malloc(sizeof(float) * (size_t)S->n_out);
    memcpy(L.bias, S->bias, sizeof(float) * (size_t)S->n_out);
    memcpy(L.vbias, S->vbias, sizeof(float) * (size_t)S->n_out);
    L.row_ptr = L.col_idx = L.t_ptr = L.t_blk = L.t_row = NULL;
    if (!S->dense) {
        L.row_ptr = malloc(sizeof(int32_t) * ((size_t)S->nbr + 1));
        memcpy(L.row_ptr, S->row_ptr, sizeof(int32_t) * ((size_t)S->nbr + 1));
        L.col_idx = malloc(sizeof(int32_t) * ((size_t)S->nb + 1));
        memcpy(L.col_idx, S->col_idx, sizeof(int32_t) * (size_t)S->nb);
        L.t_ptr = malloc(sizeof(int32_t) * ((size_t)S->nbc + 1));
        L.t_blk = malloc(sizeof(int32_t) * ((size_t)S->nb + 1));
        L.t_row = malloc(sizeof(int32_t) * ((size_t)S->nb + 1));
        memcpy(L.t_ptr, S->t_ptr, sizeof(int32_t) * ((size_t)S->nbc + 1));
        memcpy(L.t_blk, S->t_blk, sizeof(int32_t) * (size_t)S->nb);
        memcpy(L.t_row, S->t_row, sizeof(int32_t) * (size_t)S->nb);
    }
    return L;
}

/* Block-CSR invariants (row_ptr consistent, col_idx strictly increasing in
 * each row and < nbc) and the transposed index: per column, exactly the
 * CSR's blocks of that column, sorted by block row, each block once.
 * Records one expectation failure naming label; returns the violations. */
static int check_structure(const st_layer *L, const char *label)
{
    int bad = 0;
    if (L->row_ptr[0] != 0)
        note_bad(&bad, "row_ptr[0] = %d", L->row_ptr[0]);
    if (L->row_ptr[L->nbr] != L->nb)
        note_bad(&bad, "row_ptr[nbr] = %d, nb = %d", L->row_ptr[L->nbr], L->nb);
    for (int32_t R = 0; R < L->nbr; R++) {
        if (L->row_ptr[R + 1] < L->row_ptr[R] || L->row_ptr[R + 1] > L->nb) {
            note_bad(&bad, "row_ptr[%d..%d] = %d, %d", R, R + 1, L->row_ptr[R],
                     L->row_ptr[R + 1]);
            return bad;
        }
        for (int32_t k = L->row_ptr[R]; k < L->row_ptr[R + 1]; k++) {
            if (L->col_idx[k] < 0 || L->col_idx[k] >= L->nbc)
                note_bad(&bad, "row %d: col_idx[%d] = %d out of [0, %d)", R, k, L->col_idx[k],
                         L->nbc);
            if (k > L->row_ptr[R] && L->col_idx[k] <= L->col_idx[k - 1])
                note_bad(&bad, "row %d: col_idx[%d] = %d after %d (not strictly increasing)",
                         R, k, L->col_idx[k], L->col_idx[k - 1]);
        }
    }
    if (L->t_ptr[0] != 0 || L->t_ptr[L->nbc] != L->nb)
        note_bad(&bad, "t_ptr[0] = %d, t_ptr[nbc] = %d, nb = %d", L->t_ptr[0],
                 L->t_ptr[L->nbc], L->nb);
    int *seen = calloc((size_t)L->nb + 1, sizeof(int));
    for (int32_t C = 0; C < L->nbc && !bad; C++) {
        if (L->t_ptr[C + 1] < L->t_ptr[C] || L->t_ptr[C + 1] > L->nb) {
            note_bad(&bad, "t_ptr[%d..%d] = %d, %d", C, C + 1, L->t_ptr[C], L->t_ptr[C + 1]);
            break;
        }
        for (int32_t j = L->t_ptr[C]; j < L->t_ptr[C + 1]; j++) {
            int32_t k = L->t_blk[j], R = L->t_row[j];
            if (k < 0 || k >= L->nb || R < 0 || R >= L->nbr) {
                note_bad(&bad, "column %d: t_blk = %d, t_row = %d out of range", C, k, R);
                continue;
            }
            seen[k]++;
            if (L->col_idx[k] != C)
                note_bad(&bad, "column %d lists block %d of column %d", C, k, L->col_idx[k]);
            if (k < L->row_ptr[R] || k >= L->row_ptr[R + 1])
                note_bad(&bad, "column %d: block %d is not in block row %d", C, k, R);
            if (j > L->t_ptr[C] && R <= L->t_row[j - 1])
                note_bad(&bad, "column %d: rows %d then %d (not sorted by row)", C,
                         L->t_row[j - 1], R);
        }
    }
    for (int32_t k = 0; k < L->nb && !bad; k++)
        if (seen[k] != 1)
            note_bad(&bad, "block %d appears %d times in the transposed index", k, seen[k]);
    free(seen);
    ST_EXPECT(bad == 0, "%s: %d structure violations", label, bad);
    return bad;
}

/* W^T (O, I) in double from the layer's storage as model.h documents it:
 * block k in block row R, block column col_idx[k], values row-major
 * (output r in the block, then input c); dense layers (O, I) row-major. */
static double *expand_wt(const st_layer *L)
{
    double *wt = calloc((size_t)L->n_out * L->n_in, sizeof(double));
    if (L->dense) {
        for (int64_t e = 0; e < (int64_t)L->n_out * L->n_in; e++)
            wt[e] = L->w[e];
        return wt;
    }
    const int bi = L->bi, bo = L->bo;
    for (int32_t R = 0; R < L->nbr; R++)
        for (int32_t k = L->row_ptr[R]; k < L->row_ptr[R + 1]; k++)
            for (int r = 0; r < bo; r++)
                for (int c = 0; c < bi; c++)
                    wt[(int64_t)(R * bo + r) * L->n_in + L->col_idx[k] * bi + c] =
                        L->w[(int64_t)k * bi * bo + r * bi + c];
    return wt;
}

/* The (output, input) position of storage entry e, by the same layout. */
static void entry_pos(const st_layer *L, int64_t e, int *o, int *i)
{
    if (L->dense) {
        *o = (int)(e / L->n_in);
        *i = (int)(e % L->n_in);
        return;
    }
    const int bs = L->bi * L->bo;
    int32_t k = (int32_t)(e / bs), t = (int32_t)(e % bs), R = 0;
    while (L->row_ptr[R + 1] <= k)
        R++;
    *o = R * L->bo + t / L->bi;
    *i = L->col_idx[k] * L->bi + t % L->bi;
}

/* DESIGN.md's activations in double; All-ReLU alpha = 0.6, negative slope
 * -alpha on odd hidden layers, +alpha on even ones. */
static double ref_act(st_activation act, int hidden, double z)
{
    switch (act) {
    case ST_ACT_RELU: return z > 0 ? z : 0;
    case ST_ACT_ALLRELU: return z > 0 ? z : ((hidden % 2) ? -0.6 : 0.6) * z;
    case ST_ACT_SIGMOID: return 1 / (1 + exp(-z));
    case ST_ACT_TANH: return tanh(z);
    default: return NAN;
    }
}

static double ref_act_grad(st_activation act, int hidden, double z)
{
    switch (act) {
    case ST_ACT_RELU: return z > 0 ? 1 : 0;
    case ST_ACT_ALLRELU: return z > 0 ? 1 : ((hidden % 2) ? -0.6 : 0.6);
    case ST_ACT_SIGMOID: {
        double s = 1 / (1 + exp(-z));
        return s * (1 - s);
    }
    case ST_ACT_TANH: return 1 - tanh(z) * tanh(z);
    default: return NAN;
    }
}

/* ---- 1. Philox ---------------------------------------------------------- */

/* Exercises st_philox4x32_10 against the three Random123 known-answer
 * vectors (kat_vectors, philox4x32 with 10 rounds), the documented mapping
 * of st_rand onto it, and the ranges of st_below, st_u01f, st_u01d_open0. */
static void test_philox_known_answers(void)
{
    static const struct {
        uint32_t ctr[4], key[2], out[4];
    } kat[3] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
         {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
         {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (int t = 0; t < 3; t++) {
        st_u32x4 c = {{kat[t].ctr[0], kat[t].ctr[1], kat[t].ctr[2], kat[t].ctr[3]}};
        st_u32x4 r = st_philox4x32_10(c, kat[t].key[0], kat[t].key[1]);
        for (int j = 0; j < 4; j++)
            ST_EXPECT(r.v[j] == kat[t].out[j], "vector %d word %d: got 0x%08x, want 0x%08x", t,
                      j, r.v[j], kat[t].out[j]);
    }

    /* st_rand: counter {c0, c1, c2, stream << 24 | layer}, key = seed lo, hi. */
    uint64_t seed = 0x0123456789abcdefull;
    st_u32x4 c = {{7, 8, 9, (5u << 24) | 3u}};
    st_u32x4 want = st_philox4x32_10(c, 0x89abcdefu, 0x01234567u);
    st_u32x4 got = st_rand(seed, 5, 3, 7, 8, 9);
    ST_EXPECT(!memcmp(&want, &got, sizeof want),
              "st_rand does not map onto the counter as documented");

    /* The 8- and 16-block forms (vector code where the build has it) give
     * each block's st_philox4x32_10. */
    for (int n = 8; n <= 16; n += 8) {
        uint32_t cw[4][16], key0 = 0x9e3779b9u * (uint32_t)n, key1 = 0x7f4a7c15u;
        for (int w = 0; w < 4; w++)
            for (int j = 0; j < 16; j++)
                cw[w][j] = 0x85ebca6bu * (uint32_t)(w * 16 + j + 1) ^ (uint32_t)n;
        uint32_t in[4][16];
        memcpy(in, cw, sizeof in);
        if (n == 8) {
            uint32_t c8[4][8];
            for (int w = 0; w < 4; w++)
                memcpy(c8[w], cw[w], sizeof c8[w]);
            st_philox4x32_10_x8(c8, key0, key1);
            for (int w = 0; w < 4; w++)
                memcpy(cw[w], c8[w], sizeof c8[w]);
        } else {
            st_philox4x32_10_x16(cw, key0, key1);
        }
        int nbad = 0;
        for (int j = 0; j < n; j++) {
            st_u32x4 cj = {{in[0][j], in[1][j], in[2][j], in[3][j]}};
            st_u32x4 r = st_philox4x32_10(cj, key0, key1);
            for (int w = 0; w < 4; w++)
                nbad += r.v[w] != cw[w][j];
        }
        ST_EXPECT(nbad == 0, "st_philox4x32_10_x%d: %d words differ from the scalar blocks", n,
                  nbad);
    }

    /* st_below: < n for every n, 0 for the zero word, n - 1 for all ones. */
    static const uint64_t ns[] = {1, 2, 3, 7, 1000, 4294967301ull, 1ull << 63, UINT64_MAX};
    int bad = 0;
    for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
        uint64_t n = ns[t];
        if (st_below(0, 0, n) != 0)
            note_bad(&bad, "st_below(0, 0, %llu) != 0", (unsigned long long)n);
        if (st_below(0xffffffffu, 0xffffffffu, n) != n - 1)
            note_bad(&bad, "st_below(~0, ~0, %llu) = %llu, want n - 1", (unsigned long long)n,
                     (unsigned long long)st_below(0xffffffffu, 0xffffffffu, n));
        for (uint32_t i = 0; i < 2000; i++) {
            st_u32x4 u = st_rand(42, ST_STREAM_REGROW_POS, 1, i, (uint32_t)t, 0);
            if (st_below(u.v[0], u.v[1], n) >= n)
                note_bad(&bad, "st_below >= n = %llu", (unsigned long long)n);
        }
    }
    ST_EXPECT(bad == 0, "%d st_below range failures", bad);

    /* st_below(., ., 3) is uniform: each value's count within 5 sd of N/3. */
    int64_t cnt[3] = {0, 0, 0};
    const int N = 30000;
    for (int i = 0; i < N; i++) {
        st_u32x4 u = st_rand(7, ST_STREAM_REGROW_POS, 2, (uint32_t)i, 0, 1);
        cnt[st_below(u.v[0], u.v[1], 3)]++;
    }
    double sd3 = sqrt(N * (1.0 / 3) * (2.0 / 3));
    for (int j = 0; j < 3; j++)
        ST_EXPECT(fabs((double)cnt[j] - N / 3.0) <= 5 * sd3,
                  "st_below(.,.,3): value %d drawn %lld times of %d", j, (long long)cnt[j], N);

    /* st_u01f in [0, 1), st_u01d_open0 in (0, 1], including the extremes. */
    ST_EXPECT(st_u01f(0) == 0.0f, "st_u01f(0) = %g", st_u01f(0));
    ST_EXPECT(st_u01f(0xffffffffu) < 1.0f, "st_u01f(~0) = %.9g", st_u01f(0xffffffffu));
    ST_EXPECT(st_u01d_open0(0, 0) > 0.0, "st_u01d_open0(0, 0) = %g", st_u01d_open0(0, 0));
    ST_EXPECT(st_u01d_open0(0xffffffffu, 0xffffffffu) <= 1.0, "st_u01d_open0(~0, ~0) > 1");
    bad = 0;
    double mean = 0;
    for (uint32_t i = 0; i < 10000; i++) {
        st_u32x4 u = st_rand(99, ST_STREAM_INIT_W, 1, i, 0, 0);
        for (int j = 0; j < 4; j++) {
            float f = st_u01f(u.v[j]);
            if (!(f >= 0.0f && f < 1.0f))
                note_bad(&bad, "st_u01f(0x%08x) = %.9g", u.v[j], f);
            mean += f;
        }
    }
    ST_EXPECT(bad == 0, "%d st_u01f values outside [0, 1)", bad);
    /* 40000 uniforms: sd of the mean is sqrt(1/12/40000) = 0.0014; 5 sd. */
    mean /= 40000;
    ST_EXPECT(fabs(mean - 0.5) <= 5 * sqrt(1.0 / 12 / 40000), "mean of st_u01f = %g", mean);
}

/* ---- 2. Erdős–Rényi initialisation -------------------------------------- */

/* Exercises layer_er_probability against the formula of DESIGN.md. */
static void test_er_probability_formula(void)
{
    /* The values are computed in double from the same formula; 1e-14
     * relative only allows for a different association of the operations. */
    ST_EXPECT(st_close(layer_er_probability(784, 400, 20), 20.0 * 1184 / (784.0 * 400), 0, 1e-14),
              "784-400: %.17g", layer_er_probability(784, 400, 20));
    ST_EXPECT(st_close(layer_er_probability(400, 400, 20), 0.1, 0, 1e-14), "400-400: %.17g",
              layer_er_probability(400, 400, 20));
    ST_EXPECT(st_close(layer_er_probability(10, 10, 1), 0.2, 0, 1e-14), "10-10 eps 1: %.17g",
              layer_er_probability(10, 10, 1));
    ST_EXPECT(st_close(layer_er_probability(1000000, 1000000, 20), 4e-5, 0, 1e-14),
              "1e6-1e6: %.17g", layer_er_probability(1000000, 1000000, 20));
    ST_EXPECT(layer_er_probability(20, 20, 20) == 1.0, "20-20 eps 20 must clamp to 1, got %g",
              layer_er_probability(20, 20, 20));
    ST_EXPECT(layer_er_probability(400, 10, 20) == 1.0, "400-10 eps 20 must clamp to 1, got %g",
              layer_er_probability(400, 10, 20));
}

/* Exercises model_init on 784-400-400-10 at epsilon 20 for m = 1, 2, 4 and
 * two seeds: block counts against the binomial expectation, whole blocks of
 * the right shape, sorted CSR and a consistent transposed index, column 0,
 * the last column and the left half used at rate p (no bias in the
 * geometric skipping), binomial variance of the row counts, equal expected
 * connections across m, the dense 400-10 output, He-uniform weights and
 * zero biases and momentum. */
static void test_er_init_statistics(void)
{
    const int32_t sizes[4] = {784, 400, 400, 10};
    const int ms[3] = {1, 2, 4};
    const uint64_t seeds[2] = {1, 20240531};
    char err[ST_ERRLEN], label[96];
    for (int si = 0; si < 2; si++)
        for (int mi = 0; mi < 3; mi++) {
            int m = ms[mi];
            st_model mdl;
            int rc = model_init(&mdl, sizes, 3, m, 20.0, seeds[si], err);
            ST_EXPECT(rc == 0, "model_init m = %d: %s", m, err);
            if (rc)
                continue;
            for (int l = 0; l < 3; l++) {
                const st_layer *L = &mdl.layers[l];
                int out = (l == 2);
                snprintf(label, sizeof label, "seed %llu m %d layer %d",
                         (unsigned long long)seeds[si], m, l + 1);
                double p = 20.0 * (sizes[l] + sizes[l + 1]) / ((double)sizes[l] * sizes[l + 1]);
                ST_EXPECT(L->n_in == sizes[l] && L->n_out == sizes[l + 1], "%s: shape %d-%d", label,
                          L->n_in, L->n_out);
                ST_EXPECT(L->bi == m && L->bo == (out ? 1 : m), "%s: block %dx%d", label, L->bi,
                          L->bo);
                ST_EXPECT(L->nbr * L->bo == L->n_out && L->nbc * L->bi == L->n_in,
                          "%s: grid %dx%d", label, L->nbr, L->nbc);
                if (out) {
                    /* 400-10 at eps 20: p = 2.05 -> dense, I * O weights. */
                    ST_EXPECT(L->dense && L->p == 1.0, "%s: dense %d p %g", label, L->dense, L->p);
                    ST_EXPECT(layer_nnz(L) == 4000, "%s: %lld weights", label,
                              (long long)layer_nnz(L));
                } else {
                    ST_EXPECT(!L->dense, "%s: p = %g must be sparse", label, p);
                    /* Same formula in double; 1e-14 relative for association. */
                    ST_EXPECT(st_close(L->p, p, 0, 1e-14), "%s: p %.17g want %.17g", label, L->p,
                              p);
                    double n = (double)L->nbr * L->nbc, mu = n * p, sd = sqrt(n * p * (1 - p));
                    /* 5 sd of the binomial: a false alarm has probability < 1e-6. */
                    ST_EXPECT(fabs(L->nb - mu) <= 5 * sd, "%s: %d blocks, expected %.1f +- %.1f",
                              label, L->nb, mu, sd);
                    /* Equal budgets across m: the expected connections are
                     * p I O for every m, and the drawn ones within 5 sd. */
                    double sdc = sd * L->bi * L->bo;
                    ST_EXPECT(fabs((double)layer_nnz(L) - p * L->n_in * L->n_out) <= 5 * sdc,
                              "%s: %lld connections, expected %.1f +- %.1f", label,
                              (long long)layer_nnz(L), p * L->n_in * L->n_out, sdc);
                    check_structure(L, label);
                    /* Columns 0 and nbc-1 each present in a Binomial(nbr, p)
                     * number of rows; the left half in Binomial(nbr * nbc/2, p). */
                    int64_t c0 = 0, clast = 0, left = 0;
                    for (int32_t k = 0; k < L->nb; k++) {
                        c0 += L->col_idx[k] == 0;
                        clast += L->col_idx[k] == L->nbc - 1;
                        left += L->col_idx[k] < L->nbc / 2;
                    }
                    double sdr = sqrt(L->nbr * p * (1 - p));
                    ST_EXPECT(fabs(c0 - L->nbr * p) <= 5 * sdr,
                              "%s: column 0 in %lld rows, expected %.1f", label, (long long)c0,
                              L->nbr * p);
                    ST_EXPECT(fabs(clast - L->nbr * p) <= 5 * sdr,
                              "%s: last column in %lld rows, expected %.1f", label,
                              (long long)clast, L->nbr * p);
                    /* Row counts are Binomial(nbc, p), not a fixed count:
                     * their sample variance within 5 sd of nbc p (1 - p),
                     * sd = var sqrt(2 / (nbr - 1) + kurtosis / nbr). */
                    double rm = 0, rv = 0;
                    for (int32_t R = 0; R < L->nbr; R++)
                        rm += L->row_ptr[R + 1] - L->row_ptr[R];
                    rm /= L->nbr;
                    for (int32_t R = 0; R < L->nbr; R++) {
                        double dd = L->row_ptr[R + 1] - L->row_ptr[R] - rm;
                        rv += dd * dd;
                    }
                    rv /= L->nbr - 1;
                    double bv = L->nbc * p * (1 - p), kurt = (1 - 6 * p * (1 - p)) / bv;
                    double sdv = bv * sqrt(2.0 / (L->nbr - 1) + kurt / L->nbr);
                    ST_EXPECT(fabs(rv - bv) <= 5 * sdv,
                              "%s: row-count variance %.2f, binomial %.2f +- %.2f", label, rv, bv,
                              sdv);
                    double nl = (double)L->nbr * (L->nbc / 2);
                    ST_EXPECT(fabs(left - nl * p) <= 5 * sqrt(nl * p * (1 - p)),
                              "%s: %lld blocks in the left half, expected %.1f", label,
                              (long long)left, nl * p);
                }
                /* He-uniform: |w| <= sqrt(6 / I) (the float of the limit,
                 * which may round up by half an ulp), spread over the whole
                 * range, mean within 5 sd of 0. */
                double lim = sqrt(6.0 / L->n_in), flim = (float)lim, mean = 0, mn = 1e9, mx = -1e9;
                int64_t nnz = layer_nnz(L), outside = 0, nonzero = 0;
                for (int64_t e = 0; e < nnz; e++) {
                    outside += fabs(L->w[e]) > flim;
                    nonzero += L->v[e] != 0.0f;
                    mean += L->w[e];
                    if (L->w[e] < mn) mn = L->w[e];
                    if (L->w[e] > mx) mx = L->w[e];
                }
                mean /= (double)nnz;
                ST_EXPECT(outside == 0, "%s: %lld weights outside +-%g", label, (long long)outside,
                          lim);
                /* P(no weight beyond 0.9 lim on a side) = 0.95^nnz, < 1e-80
                 * for the >= 4000 weights of every layer here. */
                ST_EXPECT(mn < -0.9 * lim && mx > 0.9 * lim, "%s: weights span [%g, %g] of +-%g",
                          label, mn, mx, lim);
                ST_EXPECT(fabs(mean) <= 5 * lim / sqrt(3.0 * nnz), "%s: mean weight %g", label,
                          mean);
                ST_EXPECT(nonzero == 0, "%s: %lld non-zero momenta", label, (long long)nonzero);
                int nzb = 0;
                for (int32_t o = 0; o < L->n_out; o++)
                    nzb += L->bias[o] != 0.0f || L->vbias[o] != 0.0f;
                ST_EXPECT(nzb == 0, "%s: %d non-zero biases or bias momenta", label, nzb);
            }
            ST_EXPECT(model_connections(&mdl) == layer_nnz(&mdl.layers[0]) +
                                                     layer_nnz(&mdl.layers[1]) + 4000,
                      "model_connections = %lld", (long long)model_connections(&mdl));
            model_free(&mdl);
        }
}

/* Exercises the dense case: 20-20-4 at epsilon 20 (p = 2 and 6) gives two
 * dense layers with I * O weights, all within the He-uniform limit. */
static void test_er_dense_layers(void)
{
    const int32_t sizes[3] = {20, 20, 4};
    st_model mdl;
    char err[ST_ERRLEN];
    int rc = model_init(&mdl, sizes, 2, 4, 20.0, 5, err);
    ST_EXPECT(rc == 0, "model_init: %s", err);
    if (rc)
        return;
    for (int l = 0; l < 2; l++) {
        const st_layer *L = &mdl.layers[l];
        ST_EXPECT(L->dense && L->p == 1.0, "layer %d: dense %d p %g", l + 1, L->dense, L->p);
        ST_EXPECT(layer_nnz(L) == (int64_t)sizes[l] * sizes[l + 1], "layer %d: %lld weights",
                  l + 1, (long long)layer_nnz(L));
        float lim = (float)sqrt(6.0 / sizes[l]);
        int outside = 0;
        for (int64_t e = 0; e < layer_nnz(L); e++)
            outside += !(fabsf(L->w[e]) <= lim);
        ST_EXPECT(outside == 0, "layer %d: %d weights outside +-%g", l + 1, outside, lim);
    }
    model_free(&mdl);
}

/* Exercises model_check_shape and model_init: m must divide the input and
 * hidden sizes (the message names the size) but not the output size. */
static void test_er_shape_errors(void)
{
    char err[ST_ERRLEN];
    st_model mdl;
    const int32_t hid[3] = {784, 300, 10}; /* 300 % 8 = 4 */
    err[0] = '\0';
    ST_EXPECT(model_check_shape(hid, 2, 8, err) == -1, "784-300-10 m 8 accepted");
    ST_EXPECT(strstr(err, "300") != NULL, "message does not name 300: \"%s\"", err);
    err[0] = '\0';
    ST_EXPECT(model_init(&mdl, hid, 2, 8, 20.0, 1, err) == -1,
              "model_init 784-300-10 m 8 accepted");
    ST_EXPECT(strstr(err, "300") != NULL, "model_init message does not name 300: \"%s\"", err);
    model_free(&mdl);

    const int32_t inp[3] = {30, 16, 10}; /* 30 % 4 = 2 */
    err[0] = '\0';
    ST_EXPECT(model_check_shape(inp, 2, 4, err) == -1, "30-16-10 m 4 accepted");
    ST_EXPECT(strstr(err, "30") != NULL, "message does not name 30: \"%s\"", err);

    /* The output size need not be divisible: 784-304-10 with m = 8. */
    const int32_t okay[3] = {784, 304, 10};
    err[0] = '\0';
    ST_EXPECT(model_check_shape(okay, 2, 8, err) == 0, "784-304-10 m 8 rejected: %s", err);
    int rc = model_init(&mdl, okay, 2, 8, 20.0, 1, err);
    ST_EXPECT(rc == 0, "model_init 784-304-10 m 8: %s", err);
    if (rc == 0) {
        const st_layer *L = &mdl.layers[1];
        ST_EXPECT(L->bi == 8 && L->bo == 1 && L->nbr == 10 && L->nbc == 38,
                  "output layer block %dx%d grid %dx%d", L->bi, L->bo, L->nbr, L->nbc);
        model_free(&mdl);
    }
}

/* Exercises determinism of model_init: the same seed gives bitwise the same
 * topology and weights, another seed a different topology. */
static void test_er_seed_determinism(void)
{
    const int32_t sizes[4] = {784, 400, 400, 10};
    char err[ST_ERRLEN];
    for (int m = 1; m <= 4; m *= 2) {
        st_model a, b, c;
        int rc = model_init(&a, sizes, 3, m, 20.0, 77, err) |
                 model_init(&b, sizes, 3, m, 20.0, 77, err) |
                 model_init(&c, sizes, 3, m, 20.0, 78, err);
        ST_EXPECT(rc == 0, "model_init: %s", err);
        if (rc)
            return;
        for (int l = 0; l < 3; l++) {
            const st_layer *A = &a.layers[l], *Bl = &b.layers[l], *Cl = &c.layers[l];
            int same =
                A->nb == Bl->nb && !memcmp(A->w, Bl->w, sizeof(float) * (size_t)layer_nnz(A));
            if (!A->dense && same)
                same = !memcmp(A->row_ptr, Bl->row_ptr, sizeof(int32_t) * ((size_t)A->nbr + 1)) &&
                       !memcmp(A->col_idx, Bl->col_idx, sizeof(int32_t) * (size_t)A->nb);
            ST_EXPECT(same, "m %d layer %d differs between two runs with seed 77", m, l + 1);
            if (!A->dense) {
                int differ = A->nb != Cl->nb ||
                             memcmp(A->col_idx, Cl->col_idx, sizeof(int32_t) * (size_t)A->nb) != 0;
                ST_EXPECT(differ, "m %d layer %d: seeds 77 and 78 give the same topology", m,
                          l + 1);
            }
        }
        model_free(&a);
        model_free(&b);
        model_free(&c);
    }
}

/* ---- 3. gradients by finite differences ---------------------------------- */

#define GW 16  /* widest layer of the gradient networks */
#define GL 3   /* most weight layers                    */
#define GB 5   /* batch                                 */
#define GLD 8  /* batch stride: 3 padding columns       */

typedef struct {
    int nl;
    const int32_t *sizes;
    double *wt[GL];      /* W^T (O, I) per layer, double */
    double bias[GL][GW];
} ref_net;

/* Mean softmax cross-entropy of the batch in double; hidden activations
 * multiplied by mask[h] (hidden h, 1-based) when given. Writes the sign of
 * every hidden pre-activation (kink detection) and the smallest |z|. */
static double ref_loss(const ref_net *n, const float *x, const int32_t *y, st_activation act,
                       float *const *mask, unsigned char *sign, double *minabs)
{
    double loss = 0, mn = INFINITY;
    int si = 0;
    for (int b = 0; b < GB; b++) {
        double h[GW], z[GW];
        for (int i = 0; i < n->sizes[0]; i++)
            h[i] = x[i * GLD + b];
        for (int l = 0; l < n->nl; l++) {
            int I = n->sizes[l], O = n->sizes[l + 1];
            for (int o = 0; o < O; o++) {
                double s = n->bias[l][o];
                for (int i = 0; i < I; i++)
                    s += n->wt[l][o * I + i] * h[i];
                z[o] = s;
            }
            if (l + 1 < n->nl) {
                for (int o = 0; o < O; o++) {
                    if (sign)
                        sign[si++] = z[o] > 0;
                    if (fabs(z[o]) < mn)
                        mn = fabs(z[o]);
                    h[o] =
                        ref_act(act, l + 1, z[o]) * (mask[l + 1] ? mask[l + 1][o * GLD + b] : 1.0);
                }
            } else {
                double zm = z[0], s = 0;
                for (int o = 1; o < O; o++)
                    if (z[o] > zm) zm = z[o];
                for (int o = 0; o < O; o++)
                    s += exp(z[o] - zm);
                loss += zm + log(s) - z[y[b]];
            }
        }
    }
    if (minabs)
        *minabs = mn;
    return loss / GB;
}

typedef struct {
    int64_t checked, skipped;
    double max_err, max_ratio;
} grad_stats;

/* Central difference of the reference loss in *param. Returns 0 (skipped)
 * for a piecewise-linear activation when a hidden pre-activation changes
 * sign between the base point and a perturbed one (a kink in the stencil). */
static int fd_grad(const ref_net *n, double *param, const float *x, const int32_t *y,
                   st_activation act, float *const *mask, const unsigned char *sign0,
                   size_t nsign, double *g)
{
    /* h = 1e-4: the central difference's truncation error h^2/6 |L'''| is
     * ~1e-8 for these O(1) networks, its rounding error ~1e-16 / h = 1e-12;
     * both far below the float error of the analytic gradient. */
    const double h = 1e-4;
    unsigned char sp[GL * GW * GB], sm[GL * GW * GB];
    double save = *param;
    *param = save + h;
    double lp = ref_loss(n, x, y, act, mask, sp, NULL);
    *param = save - h;
    double lm = ref_loss(n, x, y, act, mask, sm, NULL);
    *param = save;
    int kinky = act == ST_ACT_RELU || act == ST_ACT_ALLRELU;
    if (kinky && (memcmp(sp, sign0, nsign) || memcmp(sm, sign0, nsign)))
        return 0;
    *g = (lp - lm) / (2 * h);
    return 1;
}

/* One gradient check: model_init(sizes, m, eps), random biases, inputs away
 * from kinks, the analytic path of backend_cpu.c (forward, activation,
 * softmax cross-entropy, backward delta, SDDMM gradient) against central
 * differences of a double reference for every weight and bias. */
static void grad_check(const int32_t *sizes, int nl, int m, double eps, st_activation act,
                       int use_mask, int out_dense, grad_stats *gs)
{
    char err[ST_ERRLEN], label[96];
    int len = 0;
    for (int l = 0; l <= nl; l++)
        len += snprintf(label + len, sizeof label - (size_t)len, l ? "-%d" : "%d", sizes[l]);
    snprintf(label + len, sizeof label - (size_t)len, " m %d eps %g %s%s", m, eps,
             st_activation_names[act], use_mask ? " dropout" : "");
    st_model mdl;
    uint64_t seed;
    for (seed = 11; seed < 60; seed++) { /* a seed whose sparse layers all have blocks */
        if (model_init(&mdl, sizes, nl, m, eps, seed, err)) {
            ST_EXPECT(0, "%s: model_init: %s", label, err);
            return;
        }
        int ok = 1;
        for (int l = 0; l < nl; l++)
            ok &= mdl.layers[l].dense || mdl.layers[l].nb >= 1;
        if (ok)
            break;
        model_free(&mdl);
    }
    ST_EXPECT(seed < 60, "%s: no seed gives non-empty sparse layers", label);
    if (seed >= 60)
        return;
    /* The configuration covers what it claims: a dense or sparse output. */
    ST_EXPECT(mdl.layers[nl - 1].dense == out_dense, "%s: output layer dense = %d, wanted %d",
              label, mdl.layers[nl - 1].dense, out_dense);
    trng_seed(seed * 1000 + (uint64_t)act * 10 + (uint64_t)m);
    ref_net rn = {.nl = nl, .sizes = sizes};
    for (int l = 0; l < nl; l++) {
        st_layer *L = &mdl.layers[l];
        for (int o = 0; o < L->n_out; o++)
            L->bias[o] = trng_unif(-0.2, 0.2);
        rn.wt[l] = expand_wt(L);
        for (int o = 0; o < L->n_out; o++)
            rn.bias[l][o] = L->bias[o];
    }
    float *mask[GL + 1] = {NULL};
    int dropped = 0;
    if (use_mask)
        for (int h = 1; h < nl; h++) {
            mask[h] = malloc(sizeof(float) * (size_t)sizes[h] * GLD);
            cpu_dropout_mask(seed, h, 1, 0, 0.3f, mask[h], sizes[h], GB, GLD);
            for (int e = 0; e < sizes[h] * GLD; e++)
                dropped += (e % GLD) < GB && mask[h][e] == 0.0f;
        }
    ST_EXPECT(!use_mask || dropped > 0, "%s: the dropout mask dropped nothing", label);

    /* Inputs U(-1, 1), padding columns filled with 3 (ops must ignore them);
     * for relu / allrelu redrawn until every hidden |z| >= 1e-3, so float
     * and double agree on each side of the kink. */
    float x[GW * GLD];
    int32_t y[GB];
    int K = sizes[nl];
    double base = 0, minabs = 0;
    unsigned char sign0[GL * GW * GB];
    int kinky = act == ST_ACT_RELU || act == ST_ACT_ALLRELU;
    for (int tries = 0; tries < 200; tries++) {
        for (int i = 0; i < sizes[0]; i++)
            for (int b = 0; b < GLD; b++)
                x[i * GLD + b] = b < GB ? trng_unif(-1, 1) : 3.0f;
        for (int b = 0; b < GB; b++)
            y[b] = trng_below(K);
        base = ref_loss(&rn, x, y, act, mask, sign0, &minabs);
        if (!kinky || minabs >= 1e-3)
            break;
    }
    ST_EXPECT(!kinky || minabs >= 1e-3, "%s: no input away from the relu kinks", label);
    size_t nsign = 0;
    for (int l = 1; l < nl; l++)
        nsign += (size_t)sizes[l] * GB;

    /* The analytic path, in the order of backend_cpu.c's cpu_train_epoch. */
    float *z[GL + 1] = {NULL}, *a[GL + 1] = {NULL}, *dl[GL + 1] = {NULL}, *gw[GL], *gb[GL];
    a[0] = x;
    for (int l = 1; l <= nl; l++) {
        z[l] = calloc((size_t)sizes[l] * GLD, sizeof(float));
        a[l] = calloc((size_t)sizes[l] * GLD, sizeof(float));
        dl[l] = calloc((size_t)sizes[l] * GLD, sizeof(float));
    }
    for (int l = 0; l < nl; l++) {
        const st_layer *L = &mdl.layers[l];
        cpu_layer_forward(L, a[l], z[l + 1], GLD);
        if (l + 1 < nl)
            cpu_activation_forward(act, l + 1, z[l + 1], mask[l + 1], a[l + 1], L->n_out, GLD);
    }
    double loss_sum = 0;
    int64_t correct = 0;
    cpu_softmax_xent(z[nl], y, K, GB, GLD, dl[nl], &loss_sum, &correct);
    /* The float forward carries ~1e-6 relative rounding on an O(1) loss. */
    ST_EXPECT(st_close(loss_sum / GB, base, 1e-5, 1e-5), "%s: loss %.9g, reference %.9g", label,
              loss_sum / GB, base);
    for (int l = nl - 1; l >= 0; l--) {
        const st_layer *L = &mdl.layers[l];
        if (l > 0)
            cpu_layer_backward_delta(L, dl[l + 1], z[l], mask[l], act, l, dl[l], GLD);
        gw[l] = malloc(sizeof(float) * (size_t)layer_nnz(L));
        gb[l] = malloc(sizeof(float) * (size_t)L->n_out);
        cpu_layer_grad(L, a[l], dl[l + 1], GLD, gw[l], gb[l]);
    }

    /* Tolerance: the analytic gradient is float through up to three layers
     * of sums of <= 16 terms; measured errors are <= 1.5e-7 against
     * gradients of 1e-3..1e-1, the worst element using < 4% of its
     * tolerance (see the printed maxima). atol 1e-6 and rtol 1e-4 keep that
     * 25x margin and still catch a wrong factor, sign, mask or missing
     * term, which are of the size of the gradient itself. */
    const double atol = 1e-6, rtol = 1e-4;
    int bad = 0;
    int64_t checked = 0, skipped = 0;
    for (int l = 0; l < nl; l++) {
        const st_layer *L = &mdl.layers[l];
        for (int64_t e = 0; e < layer_nnz(L) + L->n_out; e++) {
            double *param;
            float got;
            int o, i = -1;
            if (e < layer_nnz(L)) {
                entry_pos(L, e, &o, &i);
                param = &rn.wt[l][o * L->n_in + i];
                got = gw[l][e];
            } else {
                o = (int)(e - layer_nnz(L));
                param = &rn.bias[l][o];
                got = gb[l][o];
            }
            double fd;
            if (!fd_grad(&rn, param, x, y, act, mask, sign0, nsign, &fd)) {
                skipped++;
                continue;
            }
            checked++;
            double errv = fabs(got - fd), ratio = errv / (atol + rtol * fabs(fd));
            if (errv > gs->max_err) gs->max_err = errv;
            if (ratio > gs->max_ratio) gs->max_ratio = ratio;
            if (!st_close(got, fd, atol, rtol))
                note_bad(&bad, "%s: layer %d %s (o %d, i %d): analytic %.9g, FD %.9g", label,
                         l + 1, i < 0 ? "bias" : "weight", o, i, got, fd);
        }
    }
    ST_EXPECT(bad == 0, "%s: %d gradient mismatches", label, bad);
    /* The check must not be vacuous: kinks skip only a few elements. */
    ST_EXPECT(skipped * 10 <= checked, "%s: %lld skipped of %lld", label, (long long)skipped,
              (long long)checked);
    gs->checked += checked;
    gs->skipped += skipped;

    for (int l = 0; l < nl; l++) {
        free(rn.wt[l]);
        free(gw[l]);
        free(gb[l]);
    }
    for (int l = 1; l <= nl; l++) {
        free(z[l]);
        free(a[l]);
        free(dl[l]);
        free(mask[l]);
    }
    model_free(&mdl);
}

static const struct {
    int32_t sizes[4];
    int nl;
    double eps;
    int out_dense;
} grad_cfgs[] = {
    {{8, 8, 8, 3}, 3, 20.0, 1},  /* p >= 1 everywhere: dense layers          */
    {{8, 8, 3, 0}, 2, 20.0, 1},  /* one dense hidden layer                    */
    {{8, 8, 8, 3}, 3, 2.0, 0},   /* hidden p = 0.5, output p = 0.92 (sparse)  */
    {{16, 16, 4, 0}, 2, 1.0, 0}, /* hidden p = 0.125, output p = 0.31         */
    {{16, 16, 16, 3}, 3, 3.0, 1},/* hidden p = 0.375, output p > 1 (dense)    */
};

/* Exercises the whole CPU backward pass (cpu_softmax_xent delta,
 * cpu_layer_backward_delta with f' and hidden index, cpu_layer_grad) for
 * every activation, m = 1, 2, 4, sparse and dense hidden and output
 * layers, B = 5 with ld = 8, against central finite differences in double
 * of every weight and bias. */
static void test_grad_finite_differences(void)
{
    grad_stats gs = {0, 0, 0, 0};
    for (size_t c = 0; c < sizeof grad_cfgs / sizeof grad_cfgs[0]; c++)
        for (int m = 1; m <= 4; m *= 2)
            for (int act = 0; act < ST_ACT_COUNT; act++)
                grad_check(grad_cfgs[c].sizes, grad_cfgs[c].nl, m, grad_cfgs[c].eps,
                           (st_activation)act, 0, grad_cfgs[c].out_dense, &gs);
    printf("    %lld gradients checked, %lld skipped at kinks, max |err| %.3g, max err/tol %.3g\n",
           (long long)gs.checked, (long long)gs.skipped, gs.max_err, gs.max_ratio);
}

/* Exercises the dropout path of the backward pass: with fixed masks from
 * cpu_dropout_mask (rate 0.3) on the hidden layers, the analytic gradient
 * equals finite differences of the loss under the same masks. */
static void test_grad_with_dropout_mask(void)
{
    grad_stats gs = {0, 0, 0, 0};
    const size_t cfgs[3] = {0, 2, 4};
    const st_activation acts[3] = {ST_ACT_RELU, ST_ACT_ALLRELU, ST_ACT_TANH};
    for (int c = 0; c < 3; c++)
        for (int m = 1; m <= 2; m++)
            for (int a = 0; a < 3; a++)
                grad_check(grad_cfgs[cfgs[c]].sizes, grad_cfgs[cfgs[c]].nl, m,
                           grad_cfgs[cfgs[c]].eps, acts[a], 1, grad_cfgs[cfgs[c]].out_dense, &gs);
    printf("    %lld gradients checked, %lld skipped at kinks, max |err| %.3g, max err/tol %.3g\n",
           (long long)gs.checked, (long long)gs.skipped, gs.max_err, gs.max_ratio);
}

/* ---- 4. operators against a dense reference ----------------------------- */

typedef struct {
    int n_in, n_out, bi, bo;
    double density;
    int empty_row, dense;
    const char *label;
} op_shape;

static const op_shape op_shapes[] = {
    {24, 16, 1, 1, 0.30, 2, 0, "m 1 (CSR), 24-16"},
    {24, 16, 2, 2, 0.35, 1, 0, "m 2, 24-16"},
    {32, 16, 4, 4, 0.40, 0, 0, "m 4, 32-16"},
    {24, 10, 4, 1, 0.40, 3, 0, "output shape bi 4 bo 1, 24-10"},
    {12, 10, 1, 1, 1.00, -1, 1, "dense 12-10"},
};
#define OP_B 35  /* real samples                                    */
#define OP_LD 40 /* batch stride: 5 padding columns; one 32-wide    */
                 /* tile plus an 8-wide tail in the vectorised ops  */

static st_layer op_layer(int s)
{
    trng_seed(1000 + (uint64_t)s);
    const op_shape *S = &op_shapes[s];
    return S->dense ? make_dense_layer(S->n_in, S->n_out)
                    : make_sparse_layer(S->n_in, S->n_out, S->bi, S->bo, S->density, S->empty_row);
}

/* (n, OP_LD) activations U(-1, 1), padding columns pad. */
static float *op_matrix(int n, float pad)
{
    float *x = malloc(sizeof(float) * (size_t)n * OP_LD);
    for (int i = 0; i < n; i++)
        for (int b = 0; b < OP_LD; b++)
            x[i * OP_LD + b] = b < OP_B ? trng_unif(-1, 1) : pad;
    return x;
}

/* Exercises cpu_layer_forward on every shape (CSR, blocks, output blocks,
 * an empty block row, dense) against the dense W^T a + bias in double,
 * over all ld columns. */
static void test_forward_vs_dense(void)
{
    for (int s = 0; s < (int)(sizeof op_shapes / sizeof op_shapes[0]); s++) {
        st_layer L = op_layer(s);
        const int I = L.n_in, O = L.n_out;
        if (!L.dense)
            check_structure(&L, op_shapes[s].label);
        double *wt = expand_wt(&L);
        float *a = op_matrix(I, 2.5f);
        float *z = malloc(sizeof(float) * (size_t)O * OP_LD);
        for (int e = 0; e < O * OP_LD; e++)
            z[e] = NAN; /* every element must be written */
        cpu_layer_forward(&L, a, z, OP_LD);
        int bad = 0;
        for (int o = 0; o < O; o++)
            for (int b = 0; b < OP_LD; b++) {
                double ref = L.bias[o], sa = fabs(L.bias[o]);
                for (int i = 0; i < I; i++) {
                    ref += wt[o * I + i] * a[i * OP_LD + b];
                    sa += fabs(wt[o * I + i] * a[i * OP_LD + b]);
                }
                /* Recursive float summation of n terms errs by at most
                 * n u sum|terms| (u = FLT_EPSILON / 2); (I + 1) FLT_EPSILON
                 * sum|terms| is twice that bound, for any order or FMA. */
                double tol = (I + 1) * FLT_EPSILON * sa;
                if (!st_close(z[o * OP_LD + b], ref, tol, 0))
                    note_bad(&bad, "z[%d, %d] = %.9g, reference %.9g", o, b, z[o * OP_LD + b], ref);
            }
        ST_EXPECT(bad == 0, "%s: %d forward mismatches", op_shapes[s].label, bad);
        free(wt);
        free(a);
        free(z);
        layer_free(&L);
    }
}

/* Exercises cpu_layer_grad (SDDMM) on every shape: at each present
 * connection the dense (delta_out a_in^T) in double, gb the row sums, with
 * padding columns of delta zero and of a_in non-zero. */
static void test_grad_sddmm_vs_dense(void)
{
    for (int s = 0; s < (int)(sizeof op_shapes / sizeof op_shapes[0]); s++) {
        st_layer L = op_layer(s);
        const int I = L.n_in, O = L.n_out;
        float *a = op_matrix(I, 2.5f), *d = op_matrix(O, 0.0f);
        int64_t nnz = layer_nnz(&L);
        float *gw = malloc(sizeof(float) * (size_t)nnz), *gb = malloc(sizeof(float) * (size_t)O);
        for (int64_t e = 0; e < nnz; e++)
            gw[e] = NAN;
        for (int o = 0; o < O; o++)
            gb[o] = NAN;
        cpu_layer_grad(&L, a, d, OP_LD, gw, gb);
        int bad = 0;
        for (int64_t e = 0; e < nnz; e++) {
            int o, i;
            entry_pos(&L, e, &o, &i);
            double ref = 0, sa = 0;
            for (int b = 0; b < OP_LD; b++) {
                ref += (double)d[o * OP_LD + b] * a[i * OP_LD + b];
                sa += fabs((double)d[o * OP_LD + b] * a[i * OP_LD + b]);
            }
            /* A float dot product of ld terms: twice the n u sum|terms| bound. */
            if (!st_close(gw[e], ref, OP_LD * FLT_EPSILON * sa, 0))
                note_bad(&bad, "gw[%lld] (o %d, i %d) = %.9g, reference %.9g", (long long)e, o, i,
                         gw[e], ref);
        }
        for (int o = 0; o < O; o++) {
            double ref = 0, sa = 0;
            for (int b = 0; b < OP_B; b++) {
                ref += d[o * OP_LD + b];
                sa += fabs(d[o * OP_LD + b]);
            }
            /* Same bound for a float sum of ld terms. */
            if (!st_close(gb[o], ref, OP_LD * FLT_EPSILON * sa, 0))
                note_bad(&bad, "gb[%d] = %.9g, reference %.9g", o, gb[o], ref);
        }
        ST_EXPECT(bad == 0, "%s: %d gradient mismatches", op_shapes[s].label, bad);
        free(a);
        free(d);
        free(gw);
        free(gb);
        layer_free(&L);
    }
}

/* Exercises cpu_layer_backward_delta on every shape through the transposed
 * index: (W delta_out) * f'(z_in) * mask_in against the dense product in
 * double, for every activation (All-ReLU on an odd and an even hidden
 * layer), with and without a mask; z_in holds exact zeros (f'(0) is the
 * "else" branch: 0 for relu, -+alpha for allrelu); padding stays 0. */
static void test_backward_delta_vs_dense(void)
{
    for (int s = 0; s < (int)(sizeof op_shapes / sizeof op_shapes[0]); s++) {
        st_layer L = op_layer(s);
        const int I = L.n_in, O = L.n_out;
        double *wt = expand_wt(&L);
        float *d = op_matrix(O, 0.0f);
        float *zin = op_matrix(I, 1.0f);
        for (int i = 0; i < I; i++)
            for (int b = 0; b < OP_B; b++) {
                zin[i * OP_LD + b] *= 2.0f;
                if (trng_below(10) == 0)
                    zin[i * OP_LD + b] = 0.0f;
            }
        float *mask = malloc(sizeof(float) * (size_t)I * OP_LD);
        cpu_dropout_mask(3, 1, 0, 0, 0.3f, mask, I, OP_B, OP_LD);
        float *din = malloc(sizeof(float) * (size_t)I * OP_LD);
        static const struct { st_activation act; int hidden; } acts[5] = {
            {ST_ACT_RELU, 1}, {ST_ACT_ALLRELU, 1}, {ST_ACT_ALLRELU, 2}, {ST_ACT_SIGMOID, 1},
            {ST_ACT_TANH, 2}};
        for (int t = 0; t < 5; t++)
            for (int mk = 0; mk < 2; mk++) {
                const float *mi = mk ? mask : NULL;
                for (int e = 0; e < I * OP_LD; e++)
                    din[e] = NAN;
                cpu_layer_backward_delta(&L, d, zin, mi, acts[t].act, acts[t].hidden, din, OP_LD);
                int bad = 0;
                for (int i = 0; i < I; i++)
                    for (int b = 0; b < OP_LD; b++) {
                        double sum = 0, sa = 0;
                        for (int o = 0; o < O; o++) {
                            sum += wt[o * I + i] * d[o * OP_LD + b];
                            sa += fabs(wt[o * I + i] * d[o * OP_LD + b]);
                        }
                        double g = ref_act_grad(acts[t].act, acts[t].hidden, zin[i * OP_LD + b]);
                        double mv = mi ? mi[i * OP_LD + b] : 1.0;
                        double ref = sum * g * mv;
                        /* Twice the float-sum bound on the product, plus
                         * 4 FLT_EPSILON |sum m| for f' evaluated in float
                         * (1 - t^2, s (1 - s), 0.6f: a few eps absolute),
                         * plus 2 FLT_EPSILON |ref| for the two products. */
                        double tol = 2 * O * FLT_EPSILON * sa * fabs(g * mv) +
                                     4 * FLT_EPSILON * fabs(sum * mv) + 2 * FLT_EPSILON * fabs(ref);
                        if (!st_close(din[i * OP_LD + b], ref, tol, 0))
                            note_bad(&bad,
                                     "%s hidden %d mask %d: delta_in[%d, %d] = %.9g, reference "
                                     "%.9g (z %g)",
                                     st_activation_names[acts[t].act], acts[t].hidden, mk, i, b,
                                     din[i * OP_LD + b], ref, zin[i * OP_LD + b]);
                    }
                ST_EXPECT(bad == 0, "%s: %d backward mismatches", op_shapes[s].label, bad);
            }
        free(wt);
        free(d);
        free(zin);
        free(mask);
        free(din);
        layer_free(&L);
    }
}

/* Exercises cpu_layer_update element by element: v = mu v - lr (g + wd w),
 * w += v for weights; the same without weight decay for biases. Weights
 * and biases up to 4 in size make a decay wrongly applied to biases (or
 * missing on weights) ~2e-3, far above the tolerance. */
static void test_update_step(void)
{
    const float lr = 0.05f, mu = 0.9f, wd = 0.01f;
    for (int s = 0; s < (int)(sizeof op_shapes / sizeof op_shapes[0]); s++) {
        st_layer L = op_layer(s);
        int64_t nnz = layer_nnz(&L);
        float *gw = malloc(sizeof(float) * (size_t)nnz),
              *gb = malloc(sizeof(float) * (size_t)L.n_out);
        for (int64_t e = 0; e < nnz; e++) {
            L.w[e] = trng_unif(-4, 4);
            gw[e] = trng_unif(-1, 1);
        }
        for (int o = 0; o < L.n_out; o++) {
            L.bias[o] = trng_unif(-4, 4);
            gb[o] = trng_unif(-1, 1);
        }
        st_layer B = copy_layer(&L);
        cpu_layer_update(&L, gw, gb, lr, mu, wd);
        int bad = 0;
        for (int64_t e = 0; e < nnz + L.n_out; e++) {
            int isw = e < nnz;
            int64_t j = isw ? e : e - nnz;
            double w0 = isw ? B.w[j] : B.bias[j], v0 = isw ? B.v[j] : B.vbias[j];
            double g = isw ? gw[j] : gb[j], dec = isw ? wd : 0.0;
            double v1 = (double)mu * v0 - (double)lr * (g + dec * w0), w1 = w0 + v1;
            double gv = isw ? L.v[j] : L.vbias[j], gwt = isw ? L.w[j] : L.bias[j];
            /* A handful of float roundings on terms of these sizes: 4
             * FLT_EPSILON of the summed magnitudes, then 2 more for w. */
            double tv = 4 * FLT_EPSILON * (fabs(mu * v0) + lr * (fabs(g) + dec * fabs(w0)));
            double tw = tv + 2 * FLT_EPSILON * (fabs(w0) + fabs(v1));
            if (!st_close(gv, v1, tv, 0) || !st_close(gwt, w1, tw, 0))
                note_bad(&bad, "%s %lld: v %.9g want %.9g, w %.9g want %.9g",
                         isw ? "weight" : "bias", (long long)j, gv, v1, gwt, w1);
        }
        ST_EXPECT(bad == 0, "%s: %d update mismatches", op_shapes[s].label, bad);
        free(gw);
        free(gb);
        layer_free(&B);
        layer_free(&L);
    }
}

/* Exercises cpu_activation_forward (with and without a mask, every
 * activation, All-ReLU on odd and even hidden layers, z = 0, saturation at
 * +-30 and +-100) and st_activation_grad against DESIGN.md's definitions
 * in double. */
static void test_activations(void)
{
    enum { N = 3, LD = 16 };
    float z[N * LD], a[N * LD], mask[N * LD];
    static const float special[8] = {0.0f, -0.0f, 1e-6f, -1e-6f, 30.0f, -30.0f, 100.0f, -100.0f};
    trng_seed(4242);
    for (int e = 0; e < N * LD; e++) {
        z[e] = e < 8 ? special[e] : trng_unif(-4, 4);
        mask[e] = trng_below(10) < 3 ? 0.0f : 1.0f / 0.7f;
    }
    for (int act = 0; act < ST_ACT_COUNT; act++)
        for (int hidden = 1; hidden <= 2; hidden++)
            for (int mk = 0; mk < 2; mk++) {
                const float *m = mk ? mask : NULL;
                cpu_activation_forward((st_activation)act, hidden, z, m, a, N, LD);
                int bad = 0;
                for (int e = 0; e < N * LD; e++) {
                    double mv = m ? m[e] : 1.0;
                    double ref = ref_act((st_activation)act, hidden, z[e]) * mv;
                    /* expf / tanhf and a product in float: a few ulps;
                     * 4 FLT_EPSILON relative, and FLT_MIN absolute for
                     * the underflowing sigmoid(-100) = 3.7e-44. */
                    if (!st_close(a[e], ref, FLT_MIN, 4 * FLT_EPSILON))
                        note_bad(&bad, "%s hidden %d mask %d: f(%g) = %.9g, want %.9g",
                                 st_activation_names[act], hidden, mk, z[e], a[e], ref);
                    double g = st_activation_grad((st_activation)act, hidden, z[e]);
                    double rg = ref_act_grad((st_activation)act, hidden, z[e]);
                    /* f' in float: 1 - t^2 and s (1 - s) lose up to ~2
                     * FLT_EPSILON absolute near saturation; 0.6f is 0.6
                     * within 1e-7 relative. */
                    if (!st_close(g, rg, 2 * FLT_EPSILON, 4 * FLT_EPSILON))
                        note_bad(&bad, "%s hidden %d: f'(%g) = %.9g, want %.9g",
                                 st_activation_names[act], hidden, z[e], g, rg);
                    double v = st_activation_value((st_activation)act, hidden, z[e]);
                    if (!st_close(v, ref_act((st_activation)act, hidden, z[e]), FLT_MIN,
                                  4 * FLT_EPSILON))
                        note_bad(&bad, "%s hidden %d: st_activation_value(%g) = %.9g",
                                 st_activation_names[act], hidden, z[e], v);
                }
                ST_EXPECT(bad == 0, "%s hidden %d mask %d: %d mismatches",
                          st_activation_names[act], hidden, mk, bad);
            }
}

/* Exercises the promise of cpu_ops.h that results do not depend on the
 * thread count: forward, backward delta (tanh, with mask), SDDMM gradient
 * and the dropout mask with 1 and with 4 OpenMP threads are bitwise equal,
 * on layers large enough to be split (256-256 at m 1 and 4, dense 64-48). */
static void test_ops_thread_independent(void)
{
#ifndef _OPENMP
    ST_SKIP("built without OpenMP");
#else
    const int ld = 40;
    int saved = omp_get_max_threads();
    trng_seed(9090);
    st_layer layers[3] = {make_sparse_layer(256, 256, 1, 1, 0.1, 3),
                          make_sparse_layer(256, 256, 4, 4, 0.2, 3), make_dense_layer(64, 48)};
    for (int s = 0; s < 3; s++) {
        st_layer *L = &layers[s];
        const int I = L->n_in, O = L->n_out;
        int64_t nnz = layer_nnz(L);
        float *a = malloc(sizeof(float) * (size_t)I * ld),
              *d = malloc(sizeof(float) * (size_t)O * ld);
        float *zin = malloc(sizeof(float) * (size_t)I * ld);
        for (int e = 0; e < I * ld; e++) {
            a[e] = trng_unif(-1, 1);
            zin[e] = trng_unif(-2, 2);
        }
        for (int e = 0; e < O * ld; e++)
            d[e] = (e % ld) < 35 ? trng_unif(-1, 1) : 0.0f;
        float *out[2][5];
        for (int t = 0; t < 2; t++) {
            omp_set_num_threads(t ? 4 : 1);
            out[t][0] = malloc(sizeof(float) * (size_t)O * ld);
            out[t][1] = malloc(sizeof(float) * (size_t)I * ld);
            out[t][2] = malloc(sizeof(float) * (size_t)nnz);
            out[t][3] = malloc(sizeof(float) * (size_t)O);
            out[t][4] = malloc(sizeof(float) * (size_t)I * ld);
            cpu_dropout_mask(5, 1, 2, 3, 0.3f, out[t][4], I, 35, ld);
            cpu_layer_forward(L, a, out[t][0], ld);
            cpu_layer_backward_delta(L, d, zin, out[t][4], ST_ACT_TANH, 1, out[t][1], ld);
            cpu_layer_grad(L, a, d, ld, out[t][2], out[t][3]);
        }
        omp_set_num_threads(saved);
        const size_t len[5] = {(size_t)O * ld, (size_t)I * ld, (size_t)nnz, (size_t)O,
                               (size_t)I * ld};
        static const char *what[5] = {"forward", "backward delta", "weight gradient",
                                      "bias gradient", "dropout mask"};
        for (int k = 0; k < 5; k++) {
            ST_EXPECT(!memcmp(out[0][k], out[1][k], sizeof(float) * len[k]),
                      "layer %d: %s differs between 1 and 4 threads", s, what[k]);
            free(out[0][k]);
            free(out[1][k]);
        }
        free(a);
        free(d);
        free(zin);
        layer_free(L);
    }
#endif
}

/* ---- 4b. register-blocked kernels, fused update, data-parallel batches --- */

/* The shapes with their own compiled kernels (1x1, 2x2, 4x4, 8x8 and the
 * output layer's m x 1) and two generic ones, on odd block-grid sizes with
 * an empty block row; n_in = bi nbc, n_out = bo nbr. */
static const struct { int bi, bo, nbc, nbr; double density; } blk_shapes[] = {
    {1, 1, 37, 29, 0.30}, {2, 2, 19, 13, 0.35}, {4, 4, 11, 9, 0.40}, {8, 8, 7, 5, 0.45},
    {2, 1, 17, 11, 0.40}, {4, 1, 9, 7, 0.45},   {8, 1, 5, 9, 0.50},  {3, 3, 9, 7, 0.40},
    {4, 2, 7, 5, 0.40}};
#define BLK_NSHAPES ((int)(sizeof blk_shapes / sizeof blk_shapes[0]))

/* Everything one layer's kernels write: forward z, a, mask; backward delta
 * (ReLU with the mask, and tanh without); gw, gb; w, v, bias, vbias after
 * the fused step and after cpu_layer_grad + cpu_layer_update. */
typedef struct {
    float *z, *a, *mask, *din_relu, *din_tanh, *gw, *gb, *fused[4], *unfused[4];
    /* the one-pass backward and gradient (cpu_layer_backward_grad: tanh, as
     * din_tanh; cpu_layer_backward_grad_update: ReLU from the activation)
     * and cpu_layer_backward_delta_relu + cpu_layer_grad_update for it */
    float *din_bg, *gw_bg, *gb_bg, *din_ra, *din_bgu, *bgu[4], *ra_u[4];
} blk_out;

static void blk_run(const st_layer *L0, const float *x, const float *d, const float *zin,
                    int B, int ld, blk_out *o)
{
    const int I = L0->n_in, O = L0->n_out;
    const int64_t nnz = layer_nnz(L0);
    o->z = malloc(sizeof(float) * (size_t)O * ld);
    o->a = malloc(sizeof(float) * (size_t)O * ld);
    o->mask = malloc(sizeof(float) * (size_t)O * ld);
    o->din_relu = malloc(sizeof(float) * (size_t)I * ld);
    o->din_tanh = malloc(sizeof(float) * (size_t)I * ld);
    o->gw = malloc(sizeof(float) * (size_t)nnz);
    o->gb = malloc(sizeof(float) * (size_t)O);
    const cpu_dropout_spec dp = {77, 2, 5, 0.3f, 0, B};
    cpu_layer_forward_act(L0, x, o->z, o->a, ST_ACT_RELU, 1, &dp, o->mask, ld);
    float *imask = malloc(sizeof(float) * (size_t)I * ld);
    cpu_dropout_mask(78, 1, 2, 5, 0.3f, imask, I, B, ld);
    cpu_layer_backward_delta(L0, d, zin, imask, ST_ACT_RELU, 1, o->din_relu, ld);
    cpu_layer_backward_delta(L0, d, zin, NULL, ST_ACT_TANH, 2, o->din_tanh, ld);
    cpu_layer_grad(L0, x, d, ld, o->gw, o->gb);
    st_layer F = copy_layer(L0), U = copy_layer(L0);
    float *sg = malloc(sizeof(float) * ((size_t)nnz + 1)), *sb = malloc(sizeof(float) * (size_t)O);
    cpu_layer_grad_update(&F, x, d, ld, 0.05f, 0.9f, 0.01f, sg, sb);
    cpu_layer_grad(&U, x, d, ld, sg, sb);
    cpu_layer_update(&U, sg, sb, 0.05f, 0.9f, 0.01f);
    o->fused[0] = F.w, o->fused[1] = F.v, o->fused[2] = F.bias, o->fused[3] = F.vbias;
    o->unfused[0] = U.w, o->unfused[1] = U.v, o->unfused[2] = U.bias, o->unfused[3] = U.vbias;
    free(F.row_ptr), free(F.col_idx), free(F.t_ptr), free(F.t_blk), free(F.t_row);
    free(U.row_ptr), free(U.col_idx), free(U.t_ptr), free(U.t_blk), free(U.t_row);
    /* the one-pass backward and gradient, and what it must equal */
    o->din_bg = malloc(sizeof(float) * (size_t)I * ld);
    o->gw_bg = malloc(sizeof(float) * ((size_t)nnz + 1));
    o->gb_bg = malloc(sizeof(float) * (size_t)O);
    cpu_layer_backward_grad(L0, d, x, zin, NULL, ST_ACT_TANH, 2, 1.0f, o->din_bg, ld, o->gw_bg,
                            o->gb_bg);
    const float keep = cpu_dropout_keep(0.3f);
    o->din_ra = malloc(sizeof(float) * (size_t)I * ld);
    o->din_bgu = malloc(sizeof(float) * (size_t)I * ld);
    st_layer G = copy_layer(L0), R = copy_layer(L0);
    cpu_layer_backward_grad_update(&G, d, x, NULL, NULL, ST_ACT_RELU, 1, keep, o->din_bgu, ld,
                                   0.05f, 0.9f, 0.01f, sg, sb);
    cpu_layer_backward_delta_relu(&R, d, x, keep, o->din_ra, ld);
    cpu_layer_grad_update(&R, x, d, ld, 0.05f, 0.9f, 0.01f, sg, sb);
    o->bgu[0] = G.w, o->bgu[1] = G.v, o->bgu[2] = G.bias, o->bgu[3] = G.vbias;
    o->ra_u[0] = R.w, o->ra_u[1] = R.v, o->ra_u[2] = R.bias, o->ra_u[3] = R.vbias;
    free(G.row_ptr), free(G.col_idx), free(G.t_ptr), free(G.t_blk), free(G.t_row);
    free(R.row_ptr), free(R.col_idx), free(R.t_ptr), free(R.t_blk), free(R.t_row);
    free(sg);
    free(sb);
    free(imask);
}

static void blk_free(blk_out *o)
{
    free(o->z), free(o->a), free(o->mask), free(o->din_relu), free(o->din_tanh);
    free(o->gw), free(o->gb);
    for (int k = 0; k < 4; k++)
        free(o->fused[k]), free(o->unfused[k]), free(o->bgu[k]), free(o->ra_u[k]);
    free(o->din_bg), free(o->gw_bg), free(o->gb_bg), free(o->din_ra), free(o->din_bgu);
}

/* 0 when every output of x and y has identical bits; counts the arrays
 * that differ otherwise (naming them). cmp_fused also compares the fused
 * step against the unfused one within x. */
static int blk_compare(const st_layer *L, int ld, const blk_out *x, const blk_out *y,
                       const char *what, const char *label)
{
    const size_t O = (size_t)L->n_out * ld, I = (size_t)L->n_in * ld, nnz = (size_t)layer_nnz(L),
                 no = (size_t)L->n_out;
    const struct { const float *p, *q; size_t n; const char *name; } arr[] = {
        {x->z, y->z, O, "z"}, {x->a, y->a, O, "a"}, {x->mask, y->mask, O, "mask"},
        {x->din_relu, y->din_relu, I, "delta (relu, mask)"},
        {x->din_tanh, y->din_tanh, I, "delta (tanh)"}, {x->gw, y->gw, nnz, "gw"},
        {x->gb, y->gb, no, "gb"}, {x->fused[0], y->fused[0], nnz, "w (fused step)"},
        {x->fused[1], y->fused[1], nnz, "v (fused step)"},
        {x->fused[2], y->fused[2], no, "bias (fused step)"},
        {x->fused[3], y->fused[3], no, "vbias (fused step)"},
        {x->din_bg, y->din_bg, I, "delta (one-pass backward and gradient)"},
        {x->gw_bg, y->gw_bg, nnz, "gw (one-pass backward and gradient)"},
        {x->gb_bg, y->gb_bg, no, "gb (one-pass backward and gradient)"},
        {x->din_bgu, y->din_bgu, I, "delta (one-pass backward and update)"},
        {x->bgu[0], y->bgu[0], nnz, "w (one-pass backward and update)"},
        {x->bgu[1], y->bgu[1], nnz, "v (one-pass backward and update)"},
        {x->bgu[2], y->bgu[2], no, "bias (one-pass backward and update)"},
        {x->bgu[3], y->bgu[3], no, "vbias (one-pass backward and update)"}};
    int bad = 0;
    for (size_t k = 0; k < sizeof arr / sizeof arr[0]; k++)
        if (memcmp(arr[k].p, arr[k].q, sizeof(float) * arr[k].n)) {
            bad++;
            printf("      %s: %s: %s differs\n", label, what, arr[k].name);
        }
    return bad;
}

/* Exercises the register-blocked kernels (forward with dropout and ReLU,
 * backward delta, SDDMM, fused SDDMM + update) against the generic path
 * (cpu_ops_force_generic) for m = 1, 2, 4, 8, the m x 1 output shapes and
 * two generic shapes, on odd grid sizes with an empty block row, at
 * ld 40 (B 35), ld 136 (B 131: every tile width and its tails), ld 128 (B
 * 125), 48 (B 48) and 8 (B 5) (m = 1's one-pass backward and gradient at
 * all but 136): the bits
 * must agree. Also the one-pass backward and gradient (and update) against
 * the separate calls. Also the fused step against cpu_layer_grad + cpu_layer_update
 * (identical bits), 1 against 3 threads on the blocked path, and the
 * blocked path with its gather prefetch forced on (as for wide layers). */
static void test_block_kernels_vs_generic(void)
{
    /* ld 40, 128, 48 and 8: the one-pass backward and gradient of m = 1 (ld
     * at most 128; 40 with its 8-column tail, 8 the tail alone) */
    static const int lds[5] = {40, 136, 128, 48, 8}, Bs[5] = {35, 131, 125, 48, 5};
    int saved = 1;
#ifdef _OPENMP
    saved = omp_get_max_threads();
#endif
    for (int s = 0; s < BLK_NSHAPES; s++)
        for (int li = 0; li < 5; li++) {
            const int ld = lds[li], B = Bs[li];
            trng_seed(4242 + (uint64_t)s * 7 + (uint64_t)li);
            st_layer L = make_sparse_layer(blk_shapes[s].bi * blk_shapes[s].nbc,
                                           blk_shapes[s].bo * blk_shapes[s].nbr, blk_shapes[s].bi,
                                           blk_shapes[s].bo, blk_shapes[s].density, 2);
            char label[96];
            snprintf(label, sizeof label, "%dx%d blocks, %d-%d, ld %d", L.bi, L.bo, L.n_in,
                     L.n_out, ld);
            const int I = L.n_in, O = L.n_out;
            float *x = malloc(sizeof(float) * (size_t)I * ld),
                  *zin = malloc(sizeof(float) * (size_t)I * ld),
                  *d = malloc(sizeof(float) * (size_t)O * ld);
            for (int e = 0; e < I * ld; e++) {
                x[e] = (e % ld) < B ? trng_unif(-1, 1) : 0.0f;
                zin[e] = trng_unif(-2, 2);
            }
            for (int e = 0; e < O * ld; e++)
                d[e] = (e % ld) < B ? trng_unif(-1, 1) : 0.0f;
            blk_out fast, gen, fast3, fastpf;
#ifdef _OPENMP
            omp_set_num_threads(1);
#endif
            blk_run(&L, x, d, zin, B, ld, &fast);
            cpu_ops_force_prefetch(1); /* the prefetching kernels (wide layers) */
            blk_run(&L, x, d, zin, B, ld, &fastpf);
            cpu_ops_force_prefetch(-1);
            cpu_ops_force_generic(1);
            blk_run(&L, x, d, zin, B, ld, &gen);
            cpu_ops_force_generic(0);
#ifdef _OPENMP
            omp_set_num_threads(3);
#endif
            blk_run(&L, x, d, zin, B, ld, &fast3);
#ifdef _OPENMP
            omp_set_num_threads(saved);
#endif
            int bad = blk_compare(&L, ld, &fast, &gen, "blocked vs generic", label);
            bad += blk_compare(&L, ld, &fast, &fast3, "1 vs 3 threads", label);
            bad += blk_compare(&L, ld, &fast, &fastpf, "with prefetch", label);
            const int64_t nnz = layer_nnz(&L);
            const int64_t n4[4] = {nnz, nnz, O, O};
            for (int k = 0; k < 4; k++) {
                if (memcmp(fast.fused[k], fast.unfused[k], sizeof(float) * (size_t)n4[k])) {
                    bad++;
                    printf("      %s: fused step differs from grad + update (array %d)\n", label,
                           k);
                }
                if (memcmp(fast.bgu[k], fast.ra_u[k], sizeof(float) * (size_t)n4[k])) {
                    bad++;
                    printf("      %s: one-pass backward and update differs from backward, "
                           "then fused step (array %d)\n", label, k);
                }
            }
            const struct { const float *p, *q; size_t n; const char *name; } one[] = {
                {fast.din_bg, fast.din_tanh, (size_t)I * ld, "delta (tanh)"},
                {fast.gw_bg, fast.gw, (size_t)nnz, "gw"},
                {fast.gb_bg, fast.gb, (size_t)O, "gb"},
                {fast.din_bgu, fast.din_ra, (size_t)I * ld, "delta (relu from a)"}};
            for (int k = 0; k < 4; k++)
                if (memcmp(one[k].p, one[k].q, sizeof(float) * one[k].n)) {
                    bad++;
                    printf("      %s: one-pass backward and gradient: %s differs from the "
                           "separate calls\n", label, one[k].name);
                }
            /* the step moved the weights (the comparison is not vacuous) */
            int moved = 0;
            for (int64_t e = 0; e < nnz; e++)
                moved += fast.fused[0][e] != L.w[e];
            ST_EXPECT(nnz == 0 || moved > nnz / 2, "%s: only %d of %lld weights moved", label,
                      moved, (long long)nnz);
            ST_EXPECT(bad == 0, "%s: %d arrays differ", label, bad);
            blk_free(&fast);
            blk_free(&gen);
            blk_free(&fast3);
            blk_free(&fastpf);
            free(x);
            free(zin);
            free(d);
            layer_free(&L);
        }
}

/* fma(a, b, c) as the kernels round it (one rounding where there is FMA). */
static float fma_like(float a, float b, float c)
{
#ifdef __FMA__
    return fmaf(a, b, c);
#else
    return c + a * b;
#endif
}

/* Exercises the dense output layer's kernels. Forward (at most 12 outputs:
 * every row a slice of columns): against the generic path (four rows at a
 * time) and against a scalar chain of FMAs, bias first, inputs in order, bit
 * for bit, for 1 to 13 outputs (13: the four-row path), ld 8 to 136 (every
 * slice width and its tails), and 1 against 3 threads. Weight gradient
 * (blocks of 8 outputs, the last as few as it has): against the scalar form
 * of its sum (8 lane chains over the batch, then the pairwise reduction). */
static void test_dense_output_kernels(void)
{
    static const int Os[] = {1, 2, 3, 5, 10, 12, 13}, lds[] = {8, 24, 40, 56, 136};
    int saved = 1;
#ifdef _OPENMP
    saved = omp_get_max_threads();
#endif
    for (size_t oi = 0; oi < sizeof Os / sizeof Os[0]; oi++)
        for (size_t li = 0; li < sizeof lds / sizeof lds[0]; li++) {
            const int O = Os[oi], ld = lds[li], I = 37;
            trng_seed(777 + oi * 11 + li);
            st_layer L = make_dense_layer(I, O);
            float *x = malloc(sizeof(float) * (size_t)I * ld);
            for (int e = 0; e < I * ld; e++)
                x[e] = trng_unif(-1, 1);
            float *z[3], *ref = malloc(sizeof(float) * (size_t)O * ld);
            for (int t = 0; t < 3; t++) {
                z[t] = malloc(sizeof(float) * (size_t)O * ld);
#ifdef _OPENMP
                omp_set_num_threads(t == 2 ? 3 : 1);
#endif
                cpu_ops_force_generic(t == 1);
                cpu_layer_forward(&L, x, z[t], ld);
                cpu_ops_force_generic(0);
            }
#ifdef _OPENMP
            omp_set_num_threads(saved);
#endif
            for (int o = 0; o < O; o++)
                for (int b = 0; b < ld; b++) {
                    float acc = L.bias[o];
                    for (int i = 0; i < I; i++)
                        acc = fma_like(L.w[(int64_t)o * I + i], x[(int64_t)i * ld + b], acc);
                    ref[(int64_t)o * ld + b] = acc;
                }
            const size_t n = sizeof(float) * (size_t)O * ld;
            ST_EXPECT(!memcmp(z[0], ref, n), "%d outputs, ld %d: differs from the FMA chain", O,
                      ld);
            ST_EXPECT(!memcmp(z[0], z[1], n), "%d outputs, ld %d: differs from the generic path",
                      O, ld);
            ST_EXPECT(!memcmp(z[0], z[2], n), "%d outputs, ld %d: 1 and 3 threads differ", O, ld);
            /* the weight gradient, with z as the deltas */
            float *gw = malloc(sizeof(float) * (size_t)O * I), *gb = malloc(sizeof(float) * O);
            cpu_layer_grad(&L, x, z[0], ld, gw, gb);
            int bad = 0;
            for (int o = 0; o < O; o++)
                for (int i = 0; i < I; i++) {
                    float lane[8];
                    for (int l = 0; l < 8; l++) {
                        lane[l] = 0.0f;
                        for (int b = l; b < ld; b += 8)
                            lane[l] = fma_like(z[0][(int64_t)o * ld + b], x[(int64_t)i * ld + b],
                                               lane[l]);
                    }
                    const float g = ((lane[0] + lane[1]) + (lane[2] + lane[3])) +
                                    ((lane[4] + lane[5]) + (lane[6] + lane[7]));
                    bad += memcmp(&g, &gw[(int64_t)o * I + i], sizeof g) != 0;
                }
            ST_EXPECT(bad == 0, "%d outputs, ld %d: %d weight gradients differ from their sum",
                      O, ld, bad);
            free(gw);
            free(gb);
            for (int t = 0; t < 3; t++)
                free(z[t]);
            free(ref);
            free(x);
            layer_free(&L);
        }
}

/* Exercises cpu_layer_backward_delta_relu against cpu_layer_backward_delta
 * (ReLU, z_in and the mask) bit for bit, on every kernel shape, a generic
 * one and a dense layer, with and without dropout, at ld 40 and 136, with
 * z_in holding zeros of both signs, infinities, NaN and numbers at the
 * bottom of the normal range, under both denormal modes the backend can be
 * in (kept, and FTZ + DAZ). a_in is what cpu_layer_forward_act would give:
 * relu(z_in) * mask_in. */
static void test_backward_relu_from_activation(void)
{
    static const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, FLT_MIN,
                                    -FLT_MIN, 1.5f * FLT_MIN, 1e-30f, -1e-30f};
    static const int lds[2] = {40, 136}, Bs[2] = {35, 131};
#ifdef _OPENMP
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1); /* the MXCSR set below is this thread's */
#endif
#ifdef __SSE2__
    const unsigned int csr = _mm_getcsr();
#endif
    for (int ftz = 0; ftz < 2; ftz++) {
#ifdef __SSE2__
        _mm_setcsr(ftz ? csr | 0x8040 : csr & ~0x8040u);
#else
        if (ftz)
            break;
#endif
        for (int s = 0; s <= BLK_NSHAPES; s++)
            for (int li = 0; li < 2; li++)
                for (int drop = 0; drop < 2; drop++) {
                    const int ld = lds[li], B = Bs[li];
                    trng_seed(5150 + (uint64_t)s * 13 + (uint64_t)li * 2 + (uint64_t)drop);
                    st_layer L = s < BLK_NSHAPES
                                     ? make_sparse_layer(
                                           blk_shapes[s].bi * blk_shapes[s].nbc,
                                           blk_shapes[s].bo * blk_shapes[s].nbr, blk_shapes[s].bi,
                                           blk_shapes[s].bo, blk_shapes[s].density, 2)
                                     : make_dense_layer(29, 10);
                    const int I = L.n_in, O = L.n_out;
                    float *zin = malloc(sizeof(float) * (size_t)I * ld),
                          *ain = malloc(sizeof(float) * (size_t)I * ld),
                          *mask = malloc(sizeof(float) * (size_t)I * ld),
                          *d = malloc(sizeof(float) * (size_t)O * ld),
                          *want = malloc(sizeof(float) * (size_t)I * ld),
                          *got = malloc(sizeof(float) * (size_t)I * ld);
                    for (int e = 0; e < I * ld; e++)
                        zin[e] = e % 5 == 0 ? special[(e / 5) % 10] : trng_unif(-2, 2);
                    for (int e = 0; e < O * ld; e++)
                        d[e] = (e % ld) < B ? trng_unif(-1, 1) : 0.0f;
                    d[1] = INFINITY; /* an infinite delta meets zero factors */
                    const float keep = drop ? cpu_dropout_keep(0.3f) : 1.0f;
                    if (drop)
                        cpu_dropout_mask(61, 1, 2, 5, 0.3f, mask, I, B, ld);
                    for (int e = 0; e < I * ld; e++) {
                        volatile float z = zin[e]; /* the forward's formula, rounded alike */
                        ain[e] = (z > 0.0f ? z : 0.0f) * (drop ? mask[e] : 1.0f);
                    }
                    for (int g = 0; g < 2; g++) {
                        cpu_ops_force_generic(g);
                        cpu_layer_backward_delta(&L, d, zin, drop ? mask : NULL, ST_ACT_RELU, 1,
                                                 want, ld);
                        cpu_layer_backward_delta_relu(&L, d, ain, keep, got, ld);
                        cpu_ops_force_generic(0);
                        int bad = 0;
                        for (int e = 0; e < I * ld; e++)
                            bad += memcmp(&want[e], &got[e], sizeof(float)) != 0;
                        ST_EXPECT(bad == 0,
                                  "%dx%d %d-%d ld %d dropout %d ftz %d generic %d: %d of %d "
                                  "deltas differ",
                                  L.bi, L.bo, I, O, ld, drop, ftz, g, bad, I * ld);
                    }
                    free(zin);
                    free(ain);
                    free(mask);
                    free(d);
                    free(want);
                    free(got);
                    layer_free(&L);
                }
    }
#ifdef __SSE2__
    _mm_setcsr(csr);
#endif
#ifdef _OPENMP
    omp_set_num_threads(saved);
#endif
}

/* The forward pass of a hidden layer without its pre-activations or its
 * mask kept (z NULL, mask NULL with dropout: what the CPU backend does for
 * ReLU layers) gives a_out bit for bit as with them, on every block shape
 * and a dense layer of more than ST_FEW_ROWS outputs (dense_block4, and
 * 4 rows that do not divide n_out), with and without dropout, 1 and 3
 * threads, generic and blocked kernels; and it leaves the given z alone
 * when only the mask is not kept. The mask it draws is cpu_dropout_mask_at's
 * (row by row) at every batch width, those whose rows share Philox calls
 * (ld 8, 16 from column 8 as a shard, 40) and those that do not (136). */
static void test_forward_without_z(void)
{
    enum { NLD = 4 };
    static const int lds[NLD] = {8, 16, 40, 136}, Bs[NLD] = {5, 11, 35, 131},
                     col0s[NLD] = {0, 8, 0, 0};
    int saved = 1;
#ifdef _OPENMP
    saved = omp_get_max_threads();
#endif
    for (int s = 0; s <= BLK_NSHAPES; s++)
        for (int li = 0; li < NLD; li++)
            for (int drop = 0; drop < 2; drop++)
                for (int t = 0; t < 4; t++) { /* bit 0: 3 threads, bit 1: generic */
                    const int ld = lds[li], B = Bs[li];
                    trng_seed(6262 + (uint64_t)s * 13 + (uint64_t)li * 2 + (uint64_t)drop);
                    st_layer L = s < BLK_NSHAPES
                                     ? make_sparse_layer(
                                           blk_shapes[s].bi * blk_shapes[s].nbc,
                                           blk_shapes[s].bo * blk_shapes[s].nbr, blk_shapes[s].bi,
                                           blk_shapes[s].bo, blk_shapes[s].density, 2)
                                     : make_dense_layer(23, 18);
                    const int I = L.n_in, O = L.n_out;
                    const size_t no = (size_t)O * ld;
                    float *x = malloc(sizeof(float) * (size_t)I * ld),
                          *z = malloc(sizeof(float) * no), *z2 = malloc(sizeof(float) * no),
                          *mask = malloc(sizeof(float) * no), *want = malloc(sizeof(float) * no),
                          *got = malloc(sizeof(float) * no), *got2 = malloc(sizeof(float) * no);
                    for (int e = 0; e < I * ld; e++)
                        x[e] = (e % ld) < B ? trng_unif(-1, 1) : 0.0f;
                    const cpu_dropout_spec dp = {91, 3, 7, 0.3f, col0s[li], B};
#ifdef _OPENMP
                    omp_set_num_threads(t & 1 ? 3 : 1);
#endif
                    cpu_ops_force_generic(t >> 1);
                    cpu_layer_forward_act(&L, x, z, want, ST_ACT_RELU, 1, drop ? &dp : NULL,
                                          drop ? mask : NULL, ld);
                    for (size_t e = 0; e < no; e++)
                        got[e] = got2[e] = z2[e] = -7.0f;
                    cpu_layer_forward_act(&L, x, NULL, got, ST_ACT_RELU, 1, drop ? &dp : NULL,
                                          NULL, ld);
                    cpu_layer_forward_act(&L, x, z2, got2, ST_ACT_RELU, 1, drop ? &dp : NULL,
                                          NULL, ld);
                    cpu_ops_force_generic(0);
                    if (drop) {
                        float *ref = malloc(sizeof(float) * no);
                        cpu_dropout_mask_at(91, 1, 3, 7, 0.3f, ref, O, col0s[li], B, ld);
                        ST_EXPECT(!memcmp(ref, mask, sizeof(float) * no),
                                  "%dx%d %d-%d ld %d col0 %d threads %d generic %d: the forward's "
                                  "dropout mask is not cpu_dropout_mask_at's",
                                  L.bi, L.bo, I, O, ld, col0s[li], t & 1 ? 3 : 1, t >> 1);
                        free(ref);
                    }
                    ST_EXPECT(!memcmp(want, got, sizeof(float) * no),
                              "%dx%d %d-%d ld %d dropout %d threads %d generic %d: a differs "
                              "without z and mask",
                              L.bi, L.bo, I, O, ld, drop, t & 1 ? 3 : 1, t >> 1);
                    ST_EXPECT(!memcmp(want, got2, sizeof(float) * no) &&
                                  !memcmp(z, z2, sizeof(float) * no),
                              "%dx%d %d-%d ld %d dropout %d threads %d generic %d: a or z "
                              "differs without the mask",
                              L.bi, L.bo, I, O, ld, drop, t & 1 ? 3 : 1, t >> 1);
                    free(x), free(z), free(z2), free(mask), free(want), free(got), free(got2);
                    layer_free(&L);
                }
#ifdef _OPENMP
    omp_set_num_threads(saved);
#endif
}

/* Exercises the CPU backend's choice of its thread count (st_thread_adapt)
 * with made-up batch times: it picks two threads when they are faster; it
 * leaves them when a competing process makes one batch in four wait a time
 * slice (the case two slow batches in a row never catch: 2.2-2.4x the one-
 * thread time was measured so); it keeps them while they stay fast; and it
 * never leaves tmax when the choice is switched off. */
static void test_thread_adapt(void)
{
    st_thread_adapt a;
    st_thread_adapt_init(&a, 2, 1);
    ST_EXPECT(a.cur == 1, "the first batches are not timed on one thread (%d)", a.cur);
    int cur = a.cur, b = 0;
    for (; b < 3; b++) /* one thread: 1.0 s a batch */
        cur = st_thread_adapt_next(&a, 1, 1.0);
    ST_EXPECT(cur == 2, "after the one-thread probe the next batches are not on 2 (%d)", cur);
    for (; b < 6; b++) /* two threads: 0.6 s */
        cur = st_thread_adapt_next(&a, 1, 0.6);
    ST_EXPECT(cur == 2, "two faster threads were not chosen (%d)", cur);
    /* two threads stay fast: kept (the period is 48 batches: all of this is inside it) */
    for (int k = 0; k < 20; k++)
        cur = st_thread_adapt_next(&a, 1, 0.6);
    ST_EXPECT(cur == 2, "fast two threads were dropped (%d)", cur);
    /* a competitor: one batch in four waits a time slice (mean 1.45 s, never two in a row) */
    int left_at = -1;
    for (int k = 0; k < 16 && left_at < 0; k++) {
        cur = st_thread_adapt_next(&a, 1, k % 4 == 3 ? 4.0 : 0.6);
        if (cur == 1 && a.probe == 0) /* chosen, not a probe of one thread */
            left_at = k;
    }
    ST_EXPECT(left_at >= 0, "two threads kept for 16 batches although their mean batch is "
                            "1.45x one thread's");
    /* switched off: tmax always */
    st_thread_adapt_init(&a, 2, 0);
    int always = a.cur == 2;
    for (int k = 0; k < 20; k++)
        always &= st_thread_adapt_next(&a, 1, k % 2 ? 5.0 : 0.1) == 2;
    ST_EXPECT(always, "SETTRAIN_ADAPT_THREADS=0 did not keep tmax threads");
}

/* Exercises cpu_dropout_mask_at: a shard's mask (column offset col0, any
 * alignment) equals the whole batch's columns col0 .. col0 + B - 1, with
 * zeros in the shard's padding. */
static void test_dropout_shard_columns(void)
{
    const int n = 5, Bfull = 131, ldf = 136;
    float *full = malloc(sizeof(float) * n * ldf), *part = malloc(sizeof(float) * n * ldf);
    cpu_dropout_mask(31, 2, 4, 7, 0.3f, full, n, Bfull, ldf);
    static const int cuts[][2] = {{0, 64}, {64, 131}, {3, 40}, {77, 131}, {130, 131}, {13, 14}};
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        const int lo = cuts[c][0], B = cuts[c][1] - lo, ld = (B + 7) / 8 * 8;
        cpu_dropout_mask_at(31, 2, 4, 7, 0.3f, part, n, lo, B, ld);
        int bad = 0;
        for (int o = 0; o < n; o++)
            for (int j = 0; j < ld; j++) {
                float want = j < B ? full[o * ldf + lo + j] : 0.0f;
                if (part[o * ld + j] != want)
                    note_bad(&bad, "shard %d..%d: mask[%d, %d] = %g, batch column %d has %g", lo,
                             lo + B, o, j, part[o * ld + j], lo + j, want);
            }
        ST_EXPECT(bad == 0, "shard %d..%d: %d mask values differ", lo, lo + B, bad);
    }
    free(full);
    free(part);
}

/* A reduce hook that only counts its calls and checks the size. */
typedef struct {
    int calls;
    int64_t n;
} hook_ctx;

static int count_hook(float *grad, int64_t n, void *ctx)
{
    (void)grad;
    hook_ctx *h = ctx;
    h->calls++;
    h->n = n;
    return 0;
}

static int failing_hook(float *grad, int64_t n, void *ctx)
{
    (void)grad, (void)n, (void)ctx;
    return -1;
}

/* Largest |x - y| / (1 + |y|) over a model's weights, momenta and biases. */
static double model_rel_diff(const st_model *x, const st_model *y)
{
    double worst = 0;
    for (int l = 0; l < x->n_layers; l++) {
        const st_layer *a = &x->layers[l], *b = &y->layers[l];
        const int64_t nnz = layer_nnz(a);
        const float *pa[4] = {a->w, a->v, a->bias, a->vbias}, *pb[4] = {b->w, b->v, b->bias,
                                                                            b->vbias};
        const int64_t n[4] = {nnz, nnz, a->n_out, a->n_out};
        for (int k = 0; k < 4; k++)
            for (int64_t e = 0; e < n[k]; e++) {
                double r = fabs((double)pa[k][e] - pb[k][e]) / (1.0 + fabs((double)pb[k][e]));
                if (!(r <= worst))
                    worst = isfinite(r) ? r : INFINITY;
            }
    }
    return worst;
}

/* Exercises the data-parallel interface of the CPU backend on a 24-16-16-3
 * network (m 2, dropout 0.3, batch 32 over 70 samples: batches 32, 32, 6):
 * one epoch with an identity reduce hook (gradients into the flat buffer,
 * then the update from it) must match the fused epoch up to float
 * rounding; the hook runs once per batch on backend_cpu_grad_size floats;
 * two shards' buffers from backend_cpu_batch_grad, summed and applied,
 * must match a whole batch; a failing hook fails the epoch with a message;
 * a bad shard is refused. */
#ifdef __SSE2__
/* Threads (the caller and every OpenMP thread) in which 1e-20f * 1e-20f,
 * which underflows, gives a denormal instead of 0. */
static int denormal_threads(void)
{
    volatile float a = 1e-20f;
    volatile float p0 = a * a;
    int bad = p0 != 0.0f;
#pragma omp parallel reduction(+ : bad)
    {
        volatile float x = a;
        volatile float p = x * x;
        bad += p != 0.0f;
    }
    return bad;
}
#endif

/* The CPU backend flushes denormals to zero in every thread it computes in
 * (a saturated softmax's deltas made a wide run 5x slower by its third
 * epoch): with MXCSR's FTZ and DAZ cleared the underflowing product is
 * denormal (the check can fail), after backend_cpu_create it is 0 on every
 * thread. */
static void test_backend_flushes_denormals(void)
{
#ifdef __SSE2__
    const unsigned int ftz_daz = 0x8040;
    _mm_setcsr(_mm_getcsr() & ~ftz_daz);
#pragma omp parallel
    _mm_setcsr(_mm_getcsr() & ~ftz_daz);
    ST_EXPECT(denormal_threads() > 0, "without FTZ/DAZ no thread gives a denormal product");
    st_dataset ds;
    memset(&ds, 0, sizeof ds);
    ds.n_train = 4;
    ds.n_test = 4;
    ds.d = 8;
    ds.k = 2;
    float x[32] = {0};
    int32_t y[4] = {0, 1, 0, 1};
    ds.x_train = ds.x_test = x;
    ds.y_train = ds.y_test = y;
    st_config cfg;
    config_defaults(&cfg);
    cfg.batch = 4;
    const int32_t sizes[3] = {8, 8, 2};
    st_model m;
    char err[512] = "";
    ST_EXPECT(model_init(&m, sizes, 2, 1, 4.0, 3, err) == 0, "model_init: %s", err);
    st_backend *be = backend_cpu_create(&m, &ds, &cfg, err);
    ST_EXPECT(be != NULL, "backend_cpu_create: %s", err);
    const int bad = denormal_threads();
    ST_EXPECT(bad == 0, "after backend_cpu_create %d thread(s) still give denormals", bad);
    if (be)
        be->ops->destroy(be);
    model_free(&m);
#else
    ST_SKIP("no SSE2: denormal flushing is x86-only");
#endif
}

static void test_backend_hook_matches_fused(void)
{
    const int n = 70, dim = 24, K = 3;
    st_dataset ds;
    memset(&ds, 0, sizeof ds);
    ds.n_train = n;
    ds.n_test = 10;
    ds.d = dim;
    ds.k = K;
    ds.x_train = malloc(sizeof(float) * (size_t)n * dim);
    ds.y_train = malloc(sizeof(int32_t) * (size_t)n);
    ds.x_test = malloc(sizeof(float) * 10 * (size_t)dim);
    ds.y_test = malloc(sizeof(int32_t) * 10);
    trng_seed(5150);
    for (int i = 0; i < n; i++) {
        ds.y_train[i] = i % K;
        for (int f = 0; f < dim; f++)
            ds.x_train[i * dim + f] = trng_unif(-1, 1) + (f % K == i % K ? 1.0f : 0.0f);
    }
    for (int i = 0; i < 10 * dim; i++)
        ds.x_test[i] = trng_unif(-1, 1);
    for (int i = 0; i < 10; i++)
        ds.y_test[i] = i % K;
    int64_t perm[70];
    for (int i = 0; i < n; i++)
        perm[i] = (i * 37) % n;
    st_config cfg;
    config_defaults(&cfg);
    cfg.batch = 32;
    cfg.lr = 0.05;
    cfg.dropout = 0.3;
    cfg.motif = 2;
    const int32_t sizes[4] = {dim, 16, 16, K};
    st_model m[3];
    char err[512] = "";
    st_backend *be[3];
    for (int r = 0; r < 3; r++) {
        ST_EXPECT(model_init(&m[r], sizes, 3, 2, 4.0, 9, err) == 0, "model_init: %s", err);
        be[r] = backend_cpu_create(&m[r], &ds, &cfg, err);
        ST_EXPECT(be[r] != NULL, "backend_cpu_create: %s", err);
        if (!be[r])
            return;
    }
    ST_EXPECT(!m[0].layers[1].dense, "the middle layer should be sparse");
    volatile int stop = 0;
    double loss[3] = {0, 0, 0};
    int64_t correct[3] = {0, 0, 0}, done = 0;
    /* 0: fused; 1: identity hook */
    ST_EXPECT(be[0]->ops->train_epoch(be[0], 1, perm, n, 0, &stop, &done, &loss[0], &correct[0],
                                      err) == 0,
              "fused epoch: %s", err);
    hook_ctx h = {0, 0};
    ST_EXPECT(backend_cpu_set_data_parallel(be[1], 0, 1, count_hook, &h, err) == 0, "set: %s",
              err);
    ST_EXPECT(be[1]->ops->train_epoch(be[1], 1, perm, n, 0, &stop, &done, &loss[1], &correct[1],
                                      err) == 0,
              "hook epoch: %s", err);
    ST_EXPECT(h.calls == 3, "hook called %d times, want 3 (one per batch)", h.calls);
    ST_EXPECT(h.n == backend_cpu_grad_size(be[1]), "hook got %lld floats, grad_size %lld",
              (long long)h.n, (long long)backend_cpu_grad_size(be[1]));
    int64_t want = 0;
    for (int l = 0; l < 3; l++)
        want += layer_nnz(&m[1].layers[l]) + m[1].layers[l].n_out;
    ST_EXPECT(backend_cpu_grad_size(be[1]) == want, "grad_size %lld, want %lld",
              (long long)backend_cpu_grad_size(be[1]), (long long)want);
    double dh = model_rel_diff(&m[1], &m[0]);
    printf("    hook vs fused: largest relative difference %.3g\n", dh);
    ST_EXPECT(dh <= 1e-5, "hook path differs from the fused path by %.3g", dh);
    ST_EXPECT(fabs(loss[1] - loss[0]) <= 1e-5 * fabs(loss[0]) && correct[1] == correct[0],
              "loss %.9g vs %.9g, correct %lld vs %lld", loss[1], loss[0], (long long)correct[1],
              (long long)correct[0]);
    /* 2: the first batch of epoch 2 as two shards of 13 + 19 samples,
     * against be[0] running the same batch fused */
    const int64_t gn = backend_cpu_grad_size(be[2]);
    float *g0 = malloc(sizeof(float) * (size_t)gn), *g1 = malloc(sizeof(float) * (size_t)gn);
    ST_EXPECT(be[2]->ops->train_epoch(be[2], 1, perm, n, 0, &stop, &done, &loss[2], &correct[2],
                                      err) == 0,
              "epoch: %s", err);
    double l2 = 0;
    int64_t c2 = 0;
    ST_EXPECT(backend_cpu_batch_grad(be[2], 2, 0, perm, 32, 0, 13, g0, &l2, &c2, err) == 0,
              "shard 0: %s", err);
    ST_EXPECT(backend_cpu_batch_grad(be[2], 2, 0, perm, 32, 13, 32, g1, &l2, &c2, err) == 0,
              "shard 1: %s", err);
    for (int64_t e = 0; e < gn; e++)
        g0[e] += g1[e];
    backend_cpu_apply_grad(be[2], g0);
    double l0 = 0;
    int64_t c0 = 0;
    ST_EXPECT(be[0]->ops->train_epoch(be[0], 2, perm, 32, 0, &stop, &done, &l0, &c0, err) == 0,
              "fused batch: %s", err);
    double ds2 = model_rel_diff(&m[2], &m[0]);
    printf("    two shards vs one batch: largest relative difference %.3g\n", ds2);
    ST_EXPECT(ds2 <= 1e-5, "two shards differ from one batch by %.3g", ds2);
    ST_EXPECT(fabs(l2 - l0) <= 1e-5 * fabs(l0) && c2 == c0, "shard loss %.9g vs %.9g", l2, l0);
    /* errors */
    err[0] = '\0';
    ST_EXPECT(backend_cpu_batch_grad(be[2], 2, 0, perm, 32, 20, 40, g0, &l2, &c2, err) == -1 &&
                  strstr(err, "out of range"),
              "a shard past the batch was accepted ('%s')", err);
    ST_EXPECT(backend_cpu_set_data_parallel(be[2], 2, 2, NULL, NULL, err) == -1,
              "shard 2 of 2 was accepted");
    ST_EXPECT(backend_cpu_set_data_parallel(be[2], 0, 1, failing_hook, NULL, err) == 0, "set: %s",
              err);
    err[0] = '\0';
    ST_EXPECT(be[2]->ops->train_epoch(be[2], 3, perm, n, 0, &stop, &done, &l2, &c2, err) == -1 &&
                  strstr(err, "reduction"),
              "a failing hook did not fail the epoch ('%s')", err);
    free(g0);
    free(g1);
    for (int r = 0; r < 3; r++) {
        be[r]->ops->destroy(be[r]);
        model_free(&m[r]);
    }
    free(ds.x_train), free(ds.y_train), free(ds.x_test), free(ds.y_test);
}

/* ---- 5. prune ------------------------------------------------------------ */

/* Exercises layer_prune_select for m = 1 on known weights: the floor(zeta
 * n_pos) smallest positives and floor(zeta n_neg) negatives closest to zero,
 * ties (0.2 x4, -0.1 x2) to the lower index, +0 and -0 never removed; at
 * zeta 0.5, 1 and 0. */
static void test_prune_m1_known(void)
{
    /* Two block rows of 7 in an 8-input layer: k = 0..6, then 7..13. */
    const int32_t row_ptr[3] = {0, 7, 14};
    const int32_t col_idx[14] = {0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 4, 5, 6, 7};
    const float w[14] = {0.5f, -0.1f, 0.2f, 0.0f, -0.3f, 0.2f, 0.05f,
                         -0.1f, 0.9f, -0.7f, 0.2f, -0.05f, -0.0f, 0.2f};
    st_layer L = layer_from_csr(8, 2, 1, 1, row_ptr, col_idx, w);
    uint8_t removed[14];
    st_evolve_stats st;

    /* zeta 0.5: 7 positives -> 3: 0.05 (k6), then 0.2 at k2, k5 (not k10,
     * k13); 5 negatives -> 2: -0.05 (k11), then -0.1 at k1 (not k7). */
    const uint8_t want_half[14] = {0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0};
    memset(&st, 0, sizeof st);
    int64_t n = layer_prune_select(&L, 0.5, removed, &st);
    ST_EXPECT(n == 5 && st.removed == 5, "zeta 0.5: %lld marked, st.removed %lld", (long long)n,
              (long long)st.removed);
    ST_EXPECT(st.removed_pos == 3 && st.removed_neg == 2, "zeta 0.5: pos %lld neg %lld",
              (long long)st.removed_pos, (long long)st.removed_neg);
    for (int k = 0; k < 14; k++)
        ST_EXPECT(removed[k] == want_half[k], "zeta 0.5: block %d (w %g) removed = %d, want %d", k,
                  w[k], removed[k], want_half[k]);

    /* zeta 1: every non-zero weight goes, both zeros stay. */
    n = layer_prune_select(&L, 1.0, removed, &st);
    ST_EXPECT(n == 12, "zeta 1: %lld marked", (long long)n);
    for (int k = 0; k < 14; k++)
        ST_EXPECT(removed[k] == (w[k] != 0.0f), "zeta 1: block %d (w %g) removed = %d", k, w[k],
                  removed[k]);

    /* zeta 0: nothing. */
    n = layer_prune_select(&L, 0.0, removed, &st);
    int any = 0;
    for (int k = 0; k < 14; k++)
        any |= removed[k];
    ST_EXPECT(n == 0 && !any, "zeta 0: %lld marked", (long long)n);
    layer_free(&L);
}

static const float *prune_keys;
static int prune_cmp(const void *pa, const void *pb)
{
    int a = *(const int *)pa, b = *(const int *)pb;
    float ka = fabsf(prune_keys[a]), kb = fabsf(prune_keys[b]);
    if (ka != kb)
        return ka < kb ? -1 : 1;
    return (a > b) - (a < b);
}

/* Exercises layer_prune_select for m = 1 on 600 random weights quantised to
 * 1/16 (many ties, some zeros) at zeta 0.3, against a sort by (|w|, index)
 * of the positives and of the negatives done here. */
static void test_prune_m1_random(void)
{
    trng_seed(555);
    st_layer L = make_sparse_layer(40, 30, 1, 1, 0.5, -1);
    for (int32_t k = 0; k < L.nb; k++)
        L.w[k] = (float)(trng_below(33) - 16) / 16.0f;
    int *pos = malloc(sizeof(int) * (size_t)L.nb), *neg = malloc(sizeof(int) * (size_t)L.nb);
    int np = 0, nn = 0;
    for (int32_t k = 0; k < L.nb; k++) {
        if (L.w[k] > 0) pos[np++] = k;
        if (L.w[k] < 0) neg[nn++] = k;
    }
    prune_keys = L.w;
    qsort(pos, (size_t)np, sizeof(int), prune_cmp);
    qsort(neg, (size_t)nn, sizeof(int), prune_cmp);
    uint8_t *want = calloc((size_t)L.nb, 1), *removed = malloc((size_t)L.nb);
    int rp = (int)floor(0.3 * np), rn = (int)floor(0.3 * nn);
    for (int j = 0; j < rp; j++) want[pos[j]] = 1;
    for (int j = 0; j < rn; j++) want[neg[j]] = 1;
    st_evolve_stats st;
    int64_t n = layer_prune_select(&L, 0.3, removed, &st);
    ST_EXPECT(n == rp + rn && st.removed_pos == rp && st.removed_neg == rn,
              "marked %lld (pos %lld neg %lld), want %d + %d", (long long)n,
              (long long)st.removed_pos, (long long)st.removed_neg, rp, rn);
    int bad = 0;
    for (int32_t k = 0; k < L.nb; k++)
        if (removed[k] != want[k])
            note_bad(&bad, "block %d (w %g): removed %d, want %d", k, L.w[k], removed[k], want[k]);
    ST_EXPECT(bad == 0, "%d blocks marked differently (nb %d)", bad, L.nb);
    free(pos);
    free(neg);
    free(want);
    free(removed);
    layer_free(&L);
}

/* Exercises layer_prune_select for m > 1 on known blocks: the floor(zeta nb)
 * blocks of smallest mean |w| (not signed mean, not max), ties to the lower
 * block index; 2x2 hidden blocks and 2x1 output blocks. Values are powers
 * of two so block sums are exact and ties are real. */
static void test_prune_blocks_known(void)
{
    /* 2x2 blocks filling the 2x4 block grid of an 8-4 layer: k = 0..7. */
    const int32_t rp2[3] = {0, 4, 8};
    const int32_t ci2[8] = {0, 1, 2, 3, 0, 1, 2, 3};
    const float w2[32] = {
        0.125f, -0.125f, 0.125f, -0.125f,  /* b0 mean .125 (signed sum 0)  */
        0.5f, 0.5f, -0.5f, 0.5f,           /* b1 .5                        */
        0.25f, -0.125f, 0.0625f, 0.0625f,  /* b2 .125 (ties b0)            */
        0.0625f, -0.0625f, 0.0625f, 0.0625f, /* b3 .0625                   */
        0.9375f, 0.0f, 0.0f, 0.0f,         /* b4 .234 (largest max)        */
        0.25f, 0.25f, -0.25f, 0.25f,       /* b5 .25                       */
        1.0f, 1.0f, 1.0f, 1.0f,            /* b6 1                         */
        -0.75f, -0.75f, -0.75f, -0.75f,    /* b7 .75 (signed mean -0.75)   */
    };
    st_layer L = layer_from_csr(8, 4, 2, 2, rp2, ci2, w2);
    uint8_t removed[8];
    st_evolve_stats st;
    /* zeta 0.3: floor(2.4) = 2 -> b3, b0 (b0 before its tie b2). */
    const uint8_t want3[8] = {1, 0, 0, 1, 0, 0, 0, 0};
    int64_t n = layer_prune_select(&L, 0.3, removed, &st);
    ST_EXPECT(n == 2 && st.removed == 2, "2x2 zeta 0.3: %lld marked", (long long)n);
    for (int k = 0; k < 8; k++)
        ST_EXPECT(removed[k] == want3[k], "2x2 zeta 0.3: block %d removed %d, want %d", k,
                  removed[k], want3[k]);
    /* zeta 0.5: 4 -> b3, b0, b2, b4 (mean |w|: b4 before b5). */
    const uint8_t want5[8] = {1, 0, 1, 1, 1, 0, 0, 0};
    n = layer_prune_select(&L, 0.5, removed, &st);
    ST_EXPECT(n == 4, "2x2 zeta 0.5: %lld marked", (long long)n);
    for (int k = 0; k < 8; k++)
        ST_EXPECT(removed[k] == want5[k], "2x2 zeta 0.5: block %d removed %d, want %d", k,
                  removed[k], want5[k]);
    layer_free(&L);

    /* Output blocks bi = 2, bo = 1 of a 4-3 layer, full 3x2 grid. */
    const int32_t rpo[4] = {0, 2, 4, 6};
    const int32_t cio[6] = {0, 1, 0, 1, 0, 1};
    const float wo[12] = {0.5f, -0.5f,    /* b0 .5      */
                          0.25f, 0.25f,   /* b1 .25     */
                          -0.125f, 0.375f,/* b2 .25 tie */
                          0.0f, 0.0625f,  /* b3 .03125  */
                          1.0f, -1.0f,    /* b4 1       */
                          0.75f, 0.0f};   /* b5 .375    */
    st_layer O = layer_from_csr(4, 3, 2, 1, rpo, cio, wo);
    uint8_t ro[6];
    /* zeta 0.4: floor(2.4) = 2 -> b3, b1 (b1 before its tie b2). */
    const uint8_t wanto[6] = {0, 1, 0, 1, 0, 0};
    n = layer_prune_select(&O, 0.4, ro, &st);
    ST_EXPECT(n == 2, "2x1 zeta 0.4: %lld marked", (long long)n);
    for (int k = 0; k < 6; k++)
        ST_EXPECT(ro[k] == wanto[k], "2x1 zeta 0.4: block %d removed %d, want %d", k, ro[k],
                  wanto[k]);
    layer_free(&O);
}

/* ---- 6. regrow ----------------------------------------------------------- */

/* One evolution of a copy of L0 (1-based layer, seed, epoch, zeta) against
 * the regrowth re-derived here from DESIGN.md and src/model/evolve.c's header:
 * candidates pos = st_below(u0, u1, nbr nbc) of Philox (seed, REGROW_POS,
 * layer, d, d >> 32, epoch) for d = 0, 1, .., accepted in draw order when
 * empty after pruning and not yet accepted; the j-th accepted block's entry
 * t gets (2 u01f(word e % 4 of Philox (seed, REGROW_W, layer, e / 4, ..,
 * epoch)) - 1) sqrt(6 / I), e = j bs + t, and momentum 0. Returns the
 * number of candidates drawn; *regrown gets the number accepted. */
static int64_t regrow_check(const st_layer *L0, int layer, uint64_t seed, int epoch, double zeta,
                            const char *label, int64_t *regrown)
{
    const int bs = L0->bi * L0->bo;
    const int64_t npos = (int64_t)L0->nbr * L0->nbc;
    uint8_t *removed = malloc((size_t)L0->nb + 1);
    st_evolve_stats ps;
    int64_t nrem = layer_prune_select(L0, zeta, removed, &ps);
    if (regrown)
        *regrown = nrem;

    /* owner[pos]: -1 empty, -2 - k for old block k (survivor or pruned). */
    int64_t *owner = malloc(sizeof(int64_t) * (size_t)npos);
    for (int64_t p = 0; p < npos; p++)
        owner[p] = -1;
    for (int32_t R = 0; R < L0->nbr; R++)
        for (int32_t k = L0->row_ptr[R]; k < L0->row_ptr[R + 1]; k++)
            owner[(int64_t)R * L0->nbc + L0->col_idx[k]] = -2 - k;
    /* after[pos]: -1 empty, -2 - k survivor k, j >= 0 the j-th regrown. */
    int64_t *after = malloc(sizeof(int64_t) * (size_t)npos);
    for (int64_t p = 0; p < npos; p++)
        after[p] = (owner[p] <= -2 && !removed[-2 - owner[p]]) ? owner[p] : -1;
    int64_t got = 0;
    uint64_t d = 0;
    while (got < nrem && d < 100000000ull) {
        st_u32x4 u = st_rand(seed, ST_STREAM_REGROW_POS, (uint32_t)layer, (uint32_t)d,
                             (uint32_t)(d >> 32), (uint32_t)epoch);
        d++;
        int64_t p = (int64_t)st_below(u.v[0], u.v[1], (uint64_t)npos);
        if (after[p] == -1)
            after[p] = got++;
    }

    st_layer L = copy_layer(L0);
    st_evolve_stats st;
    char err[ST_ERRLEN] = "";
    int rc = layer_evolve(&L, layer, seed, epoch, zeta, &st, err);
    ST_EXPECT(rc == 0, "%s: layer_evolve: %s", label, err);
    ST_EXPECT(st.removed == nrem && st.regrown == nrem, "%s: removed %lld regrown %lld, want %lld",
              label, (long long)st.removed, (long long)st.regrown, (long long)nrem);
    ST_EXPECT(L.nb == L0->nb && st.blocks_before == L0->nb && st.blocks_after == L0->nb,
              "%s: nb %d -> %d (stats %lld -> %lld)", label, L0->nb, L.nb,
              (long long)st.blocks_before, (long long)st.blocks_after);
    ST_EXPECT(st.draws == (int64_t)d, "%s: %lld draws, re-derived %llu", label,
              (long long)st.draws, (unsigned long long)d);
    if (rc || L.nb != L0->nb) {
        free(removed);
        free(owner);
        free(after);
        layer_free(&L);
        return (int64_t)d;
    }
    check_structure(&L, label);

    /* Topology exactly as re-derived, then values block by block. */
    const float lim = (float)sqrt(6.0 / L0->n_in);
    int bad = 0, k = 0;
    for (int32_t R = 0; R < L.nbr; R++) {
        if (L.row_ptr[R] != k)
            note_bad(&bad, "row_ptr[%d] = %d, want %d", R, L.row_ptr[R], k);
        for (int32_t C = 0; C < L.nbc; C++) {
            int64_t p = (int64_t)R * L.nbc + C, a = after[p];
            if (a == -1)
                continue;
            if (k >= L.nb) {
                note_bad(&bad, "block (%d, %d) missing: only %d blocks", R, C, L.nb);
                continue;
            }
            int32_t kk = k++;
            if (L.col_idx[kk] != C) {
                note_bad(&bad, "block %d: column %d, want %d (row %d)", kk, L.col_idx[kk], C, R);
                continue;
            }
            if (a <= -2) { /* survivor: weights and momentum bit for bit */
                int32_t ko = (int32_t)(-2 - a);
                if (memcmp(L.w + (int64_t)kk * bs, L0->w + (int64_t)ko * bs, sizeof(float) * bs) ||
                    memcmp(L.v + (int64_t)kk * bs, L0->v + (int64_t)ko * bs, sizeof(float) * bs))
                    note_bad(&bad, "survivor (%d, %d): weights or momentum changed", R, C);
            } else { /* new: position was empty before or pruned */
                if (owner[p] <= -2 && !removed[-2 - owner[p]])
                    note_bad(&bad, "new block at (%d, %d) where a survivor was", R, C);
                for (int t = 0; t < bs; t++) {
                    uint64_t e = (uint64_t)a * bs + t;
                    st_u32x4 u =
                        st_rand(seed, ST_STREAM_REGROW_W, (uint32_t)layer, (uint32_t)(e / 4),
                                (uint32_t)(e / 4 >> 32), (uint32_t)epoch);
                    float want = (2.0f * st_u01f(u.v[e % 4]) - 1.0f) * lim;
                    /* The same float expression; 2 FLT_EPSILON lim allows
                     * only a different rounding of the limit or an FMA. */
                    if (!st_close(L.w[(int64_t)kk * bs + t], want, 2 * FLT_EPSILON * lim, 0) ||
                        L.v[(int64_t)kk * bs + t] != 0.0f)
                        note_bad(&bad,
                                 "new block %lld at (%d, %d) entry %d: w %.9g want %.9g, v %g",
                                 (long long)a, R, C, t, L.w[(int64_t)kk * bs + t], want,
                                 L.v[(int64_t)kk * bs + t]);
                }
            }
        }
    }
    if (L.row_ptr[L.nbr] != k)
        note_bad(&bad, "row_ptr[nbr] = %d, want %d", L.row_ptr[L.nbr], k);
    ST_EXPECT(bad == 0, "%s: %d differences from the re-derived regrowth", label, bad);
    /* Biases are not touched by evolution. */
    ST_EXPECT(!memcmp(L.bias, L0->bias, sizeof(float) * (size_t)L0->n_out) &&
                  !memcmp(L.vbias, L0->vbias, sizeof(float) * (size_t)L0->n_out),
              "%s: biases changed", label);
    free(removed);
    free(owner);
    free(after);
    layer_free(&L);
    return (int64_t)d;
}

/* Exercises layer_evolve (prune + regrow + rebuild) on m = 1, m = 2, an
 * output-shaped layer (bi 4, bo 1), a nearly full layer (many rejected
 * candidates) and a full one (regrowth must refill exactly the pruned
 * positions), with a seed using both key words, layer 2, epoch 3. */
static void test_regrow_rederived(void)
{
    const uint64_t seed = 0x1234567890abcdefull;
    trng_seed(7001);
    st_layer a = make_sparse_layer(40, 30, 1, 1, 0.2, 4);
    regrow_check(&a, 2, seed, 3, 0.3, "m 1, 40-30", NULL);
    regrow_check(&a, 1, seed, 0, 0.3, "m 1, 40-30, layer 1 epoch 0", NULL);
    layer_free(&a);

    st_layer b = make_sparse_layer(40, 32, 2, 2, 0.3, 2);
    regrow_check(&b, 2, seed, 3, 0.3, "m 2, 40-32", NULL);
    layer_free(&b);

    st_layer c = make_sparse_layer(32, 10, 4, 1, 0.5, -1);
    regrow_check(&c, 3, seed, 3, 0.3, "output bi 4 bo 1, 32-10", NULL);
    layer_free(&c);

    st_layer f = make_sparse_layer(20, 20, 1, 1, 0.95, -1);
    int64_t regrown = 0;
    int64_t draws = regrow_check(&f, 2, seed, 5, 0.3, "m 1, 20-20 at 95%", &regrown);
    /* Coverage of the case: at least half the candidates were rejected. */
    ST_EXPECT(draws >= 2 * regrown, "nearly full: %lld draws for %lld blocks", (long long)draws,
              (long long)regrown);
    layer_free(&f);

    st_layer g = make_sparse_layer(16, 16, 2, 2, 1.0, -1); /* all 64 blocks */
    ST_EXPECT(g.nb == 64, "full layer has %d blocks", g.nb);
    regrow_check(&g, 2, seed, 3, 0.3, "m 2, 16-16 full", NULL);
    layer_free(&g);
}

/* Exercises layer_evolve on a dense layer: a no-op returning 0. */
static void test_regrow_dense_noop(void)
{
    trng_seed(7002);
    st_layer L = make_dense_layer(12, 10);
    st_layer C = copy_layer(&L);
    st_evolve_stats st;
    char err[ST_ERRLEN] = "";
    ST_EXPECT(layer_evolve(&L, 1, 1, 0, 0.3, &st, err) == 0, "dense evolve: %s", err);
    ST_EXPECT(!memcmp(L.w, C.w, sizeof(float) * 120) && !memcmp(L.v, C.v, sizeof(float) * 120),
              "dense layer changed by evolution");
    ST_EXPECT(st.removed == 0 && st.regrown == 0, "dense: removed %lld regrown %lld",
              (long long)st.removed, (long long)st.regrown);
    layer_free(&C);
    layer_free(&L);
}

/* ---- 7. dropout mask ----------------------------------------------------- */

/* Exercises cpu_dropout_mask: values 0 or 1/(1-rate); drop fraction of a
 * 250000-element mask within 5 sd of the rate (0.3 and 0.5; rate 0 drops
 * nothing); identical for identical arguments, different for another
 * batch, epoch, layer or seed; padding 0; the same decision for an element
 * whatever ld, and a partial last batch (smaller B) reproduces the first B
 * columns of a full one; each decision is the documented 16-bit lane b % 8
 * (low half of word (b % 8) / 2 first) of Philox (seed, DROPOUT, hidden,
 * o, batch_index << 9 | b / 8, epoch), as include/cpu/cpu_ops.h states. */
/* The mask element (o, b) of cpu_dropout_mask_at from its definition, one
 * scalar Philox block at a time: group g = (col0 + b) / 8 of row o takes
 * the block with counter (o, batch_index << 9 | g, epoch, stream | hidden);
 * column l = (col0 + b) % 8 of the group reads half l % 2 of word l / 2,
 * and is kept (1 / (1 - rate)) when that half is at least rate x 65536. */
static float dropout_ref(uint64_t seed, int hidden, int epoch, int batch_index, float rate,
                         int64_t o, int col)
{
    const uint32_t g = (uint32_t)(col / 8), l = (uint32_t)(col % 8);
    st_u32x4 u = st_rand(seed, ST_STREAM_DROPOUT, (uint32_t)hidden, (uint32_t)o,
                         ((uint32_t)batch_index << 9) | g, (uint32_t)epoch);
    const uint32_t half = (u.v[l / 2] >> (16 * (l % 2))) & 0xFFFFu;
    return half >= (uint32_t)lrintf(rate * 65536.0f) ? cpu_dropout_keep(rate) : 0.0f;
}

static void test_dropout_mask(void)
{
    const int n = 1000, B = 250, ld = 256;
    const size_t sz = (size_t)n * ld;
    float *m1 = malloc(sizeof(float) * sz), *m2 = malloc(sizeof(float) * sz);
    /* every element against the definition: full 16-group draws (ld 256),
     * a row's partial last draw (B 250), a shard from column 24 and one
     * that starts inside a group (column 13), batch 8 */
    static const struct { int col0, B, ld; } ex[4] = {{0, 250, 256}, {24, 131, 136},
                                                      {13, 40, 48}, {0, 8, 8}};
    for (int c = 0; c < 4; c++) {
        cpu_dropout_mask_at(42, 2, 3, 5, 0.3f, m2, 97, ex[c].col0, ex[c].B, ex[c].ld);
        int64_t bad = 0;
        for (int64_t o = 0; o < 97; o++)
            for (int b = 0; b < ex[c].ld; b++) {
                const float want = b < ex[c].B ? dropout_ref(42, 2, 3, 5, 0.3f, o, ex[c].col0 + b)
                                               : 0.0f;
                bad += m2[o * ex[c].ld + b] != want;
            }
        ST_EXPECT(bad == 0, "col0 %d B %d ld %d: %lld mask elements differ from the definition",
                  ex[c].col0, ex[c].B, ex[c].ld, (long long)bad);
    }
    const float rates[2] = {0.3f, 0.5f};
    for (int r = 0; r < 2; r++) {
        float rate = rates[r];
        cpu_dropout_mask(42, 1, 2, 5, rate, m1, n, B, ld);
        int64_t drop = 0, badv = 0, badpad = 0;
        /* keep = 1/(1-rate) in float: 2 FLT_EPSILON relative covers the two
         * roundings of 1 - rate and the division. */
        double keep = 1.0 / (1.0 - (double)rate);
        for (int o = 0; o < n; o++)
            for (int b = 0; b < ld; b++) {
                float v = m1[(size_t)o * ld + b];
                if (b >= B) {
                    badpad += v != 0.0f;
                    continue;
                }
                if (v == 0.0f)
                    drop++;
                else if (!st_close(v, keep, 0, 2 * FLT_EPSILON))
                    badv++;
            }
        ST_EXPECT(badv == 0, "rate %g: %lld values neither 0 nor %g", rate, (long long)badv, keep);
        ST_EXPECT(badpad == 0, "rate %g: %lld non-zero padding values", rate, (long long)badpad);
        double N = (double)n * B, frac = drop / N;
        /* Binomial: 5 sd of the fraction, a false alarm < 1e-6. */
        ST_EXPECT(fabs(frac - rate) <= 5 * sqrt(rate * (1 - rate) / N),
                  "rate %g: dropped fraction %.5f", rate, frac);
    }

    cpu_dropout_mask(42, 1, 2, 5, 0.0f, m1, n, B, ld);
    int64_t notone = 0;
    for (int o = 0; o < n; o++)
        for (int b = 0; b < B; b++)
            notone += m1[(size_t)o * ld + b] != 1.0f;
    ST_EXPECT(notone == 0, "rate 0: %lld elements not 1", (long long)notone);

    /* Determinism and dependence on every key. */
    cpu_dropout_mask(42, 1, 2, 5, 0.3f, m1, n, B, ld);
    cpu_dropout_mask(42, 1, 2, 5, 0.3f, m2, n, B, ld);
    ST_EXPECT(!memcmp(m1, m2, sizeof(float) * sz), "same arguments, different masks");
    static const struct {
        uint64_t seed;
        int hidden, epoch, batch_index;
        const char *what;
    } other[4] = {{42, 1, 2, 6, "batch index"},
                  {42, 1, 3, 5, "epoch"},
                  {42, 2, 2, 5, "hidden layer"},
                  {43, 1, 2, 5, "seed"}};
    for (int t = 0; t < 4; t++) {
        cpu_dropout_mask(other[t].seed, other[t].hidden, other[t].epoch, other[t].batch_index,
                         0.3f, m2, n, B, ld);
        int64_t diff = 0;
        for (size_t e = 0; e < sz; e++)
            diff += (m1[e] == 0.0f) != (m2[e] == 0.0f);
        /* Independent masks disagree on 2 p (1 - p) = 42% of elements. */
        ST_EXPECT(diff > (int64_t)(0.3 * n * B), "another %s: only %lld of %d decisions differ",
                  other[t].what, (long long)diff, n * B);
    }

    /* Independent of ld: the same decisions with ld = 264. */
    const int ld2 = 264;
    float *m3 = malloc(sizeof(float) * (size_t)n * ld2);
    cpu_dropout_mask(42, 1, 2, 5, 0.3f, m3, n, B, ld2);
    int64_t diff = 0, pad = 0;
    for (int o = 0; o < n; o++) {
        for (int b = 0; b < B; b++)
            diff += m3[(size_t)o * ld2 + b] != m1[(size_t)o * ld + b];
        for (int b = B; b < ld2; b++)
            pad += m3[(size_t)o * ld2 + b] != 0.0f;
    }
    ST_EXPECT(diff == 0 && pad == 0, "ld 264 vs 256: %lld differences, %lld non-zero padding",
              (long long)diff, (long long)pad);

    /* A partial last batch: B = 37 in ld 40 gives the first 37 columns. */
    cpu_dropout_mask(42, 1, 2, 5, 0.3f, m2, n, 37, 40);
    diff = pad = 0;
    for (int o = 0; o < n; o++) {
        for (int b = 0; b < 37; b++)
            diff += m2[(size_t)o * 40 + b] != m1[(size_t)o * ld + b];
        for (int b = 37; b < 40; b++)
            pad += m2[(size_t)o * 40 + b] != 0.0f;
    }
    ST_EXPECT(diff == 0 && pad == 0, "B 37 vs 250: %lld differences, %lld non-zero padding",
              (long long)diff, (long long)pad);

    /* The documented counter and lane layout (the GPU must reproduce it). */
    const uint32_t thresh = (uint32_t)lrint(0.3 * 65536);
    int bad = 0;
    for (int o = 0; o < n; o += 7)
        for (int b = 0; b < B; b++) {
            st_u32x4 u =
                st_rand(42, ST_STREAM_DROPOUT, 1, (uint32_t)o, (5u << 9) | (uint32_t)(b / 8), 2);
            int lane = b % 8;
            uint32_t h = (u.v[lane / 2] >> (16 * (lane % 2))) & 0xFFFFu;
            int dropped = m1[(size_t)o * ld + b] == 0.0f;
            if (dropped != (h < thresh))
                note_bad(&bad, "element (%d, %d): dropped %d, lane value %u", o, b, dropped, h);
        }
    ST_EXPECT(bad == 0, "%d decisions differ from the documented Philox lanes", bad);
    free(m1);
    free(m2);
    free(m3);
}

/* ---- 8. softmax cross-entropy -------------------------------------------- */

/* Loss of one sample and delta column in double, log-sum-exp stabilised. */
static double ref_xent(const float *z, int K, int ld, int b, int y, int B, double *delta, int *arg)
{
    double zm = z[b];
    *arg = 0;
    for (int c = 1; c < K; c++)
        if (z[c * ld + b] > zm) {
            zm = z[c * ld + b];
            *arg = c;
        }
    double s = 0;
    for (int c = 0; c < K; c++)
        s += exp(z[c * ld + b] - zm);
    double lse = zm + log(s);
    for (int c = 0; c < K; c++)
        delta[c] = (exp(z[c * ld + b] - lse) - (c == y)) / B;
    return lse - z[y * ld + b];
}

/* Exercises cpu_softmax_xent: summed loss, delta = (softmax - onehot) / B,
 * zero padding deltas, the correct count, accumulation into the running
 * sums, the delta = NULL path, and stability with logits of +-1000. */
static void test_softmax_xent(void)
{
    enum { K = 5, B = 6, LD = 8 };
    float z[K * LD], delta[K * LD];
    int32_t y[B] = {0, 3, 4, 1, 2, 2};
    trng_seed(808);
    for (int c = 0; c < K; c++)
        for (int b = 0; b < LD; b++)
            z[c * LD + b] = b < B ? trng_unif(-3, 3) : 50.0f;
    /* Sample 4: huge logits with a near-tie at the top; sample 5: its label
     * at -1000 (loss ~2000, exp underflows to 0 for it). */
    const float big4[K] = {1000.0f, 0.0f, -1000.0f, 999.0f, 1000.0f};
    const float big5[K] = {1000.0f, 999.5f, -1000.0f, 3.0f, -2.0f};
    for (int c = 0; c < K; c++) {
        z[c * LD + 4] = big4[c];
        z[c * LD + 5] = big5[c];
    }
    y[5] = 2;
    for (int e = 0; e < K * LD; e++)
        delta[e] = 9.0f; /* padding must be overwritten with 0 */
    double loss = 1.5;
    int64_t correct = 2;
    cpu_softmax_xent(z, y, K, B, LD, delta, &loss, &correct);

    double rloss = 0, maxz = 0;
    int rcorrect = 0, bad = 0;
    for (int b = 0; b < B; b++) {
        double rd[K];
        int arg;
        double lb = ref_xent(z, K, LD, b, y[b], B, rd, &arg);
        rloss += lb;
        rcorrect += arg == y[b];
        double mz = 0;
        for (int c = 0; c < K; c++)
            if (fabs(z[c * LD + b]) > mz) mz = fabs(z[c * LD + b]);
        if (mz > maxz) maxz = mz;
        for (int c = 0; c < K; c++) {
            /* A float logit difference z - zmax may round by FLT_EPSILON
             * max|z| in the exponent, i.e. that relative error in a
             * probability <= 1; plus the final float rounding of delta. */
            double tol = (2 * FLT_EPSILON * (mz + 1)) / B;
            if (!st_close(delta[c * LD + b], rd[c], tol, FLT_EPSILON))
                note_bad(&bad, "delta[%d, %d] = %.9g, reference %.9g", c, b, delta[c * LD + b],
                         rd[c]);
        }
    }
    for (int c = 0; c < K; c++)
        for (int b = B; b < LD; b++)
            if (delta[c * LD + b] != 0.0f)
                note_bad(&bad, "padding delta[%d, %d] = %g", c, b, delta[c * LD + b]);
    ST_EXPECT(bad == 0, "%d delta mismatches", bad);
    /* Same rounding argument for the summed loss: per sample FLT_EPSILON
     * max|z| from the float logit differences, times B, doubled. */
    double ltol = 2 * B * FLT_EPSILON * (maxz + 1);
    ST_EXPECT(isfinite(loss) && st_close(loss - 1.5, rloss, ltol, 0),
              "loss sum %.12g, reference %.12g", loss - 1.5, rloss);
    ST_EXPECT(rloss > 1999.0, "the test must include the ~2000 loss of sample 5 (%g)", rloss);
    ST_EXPECT(correct - 2 == rcorrect, "correct %lld, reference %d", (long long)(correct - 2),
              rcorrect);
    ST_EXPECT(rcorrect >= 1 && rcorrect < B, "reference correct count %d must be non-trivial",
              rcorrect);

    /* Evaluation path: delta NULL gives bitwise the same sums (the loss
     * does not depend on whether deltas are written). */
    double loss2 = 1.5;
    int64_t correct2 = 2;
    cpu_softmax_xent(z, y, K, B, LD, NULL, &loss2, &correct2);
    ST_EXPECT(loss2 == loss, "delta NULL: loss %.17g vs %.17g", loss2, loss);
    ST_EXPECT(correct2 == correct, "delta NULL: correct %lld vs %lld", (long long)correct2,
              (long long)correct);

    /* Every column's delta sums to 0 (softmax sums to 1). */
    for (int b = 0; b < B; b++) {
        double s = 0;
        for (int c = 0; c < K; c++)
            s += delta[c * LD + b];
        /* K float deltas of size <= 1/B, each rounded. */
        ST_EXPECT(fabs(s) <= 4 * K * FLT_EPSILON, "column %d: deltas sum to %g", b, s);
    }
}

int main(void)
{
    ST_RUN(test_philox_known_answers);
    ST_RUN(test_er_probability_formula);
    ST_RUN(test_er_init_statistics);
    ST_RUN(test_er_dense_layers);
    ST_RUN(test_er_shape_errors);
    ST_RUN(test_er_seed_determinism);
    ST_RUN(test_grad_finite_differences);
    ST_RUN(test_grad_with_dropout_mask);
    ST_RUN(test_forward_vs_dense);
    ST_RUN(test_grad_sddmm_vs_dense);
    ST_RUN(test_backward_delta_vs_dense);
    ST_RUN(test_update_step);
    ST_RUN(test_activations);
    ST_RUN(test_ops_thread_independent);
    ST_RUN(test_block_kernels_vs_generic);
    ST_RUN(test_dense_output_kernels);
    ST_RUN(test_backward_relu_from_activation);
    ST_RUN(test_forward_without_z);
    ST_RUN(test_thread_adapt);
    ST_RUN(test_dropout_shard_columns);
    ST_RUN(test_backend_hook_matches_fused);
    ST_RUN(test_prune_m1_known);
    ST_RUN(test_prune_m1_random);
    ST_RUN(test_prune_blocks_known);
    ST_RUN(test_regrow_rederived);
    ST_RUN(test_regrow_dense_noop);
    ST_RUN(test_backend_flushes_denormals);
    ST_RUN(test_dropout_mask);
    ST_RUN(test_softmax_xent);
    return st_test_summary("test_core");
}
