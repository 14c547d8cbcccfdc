/* cpu_ops.c: forward product, activations, softmax cross-entropy, motif-wise
 * backward delta, SDDMM weight gradient and momentum update on the CPU.
 *
 * Legend: B batch, ld batch stride (multiple of 8), I / O layer in / out
 * features, bi x bo block shape, nb blocks. Activations are feature-major
 * (n, ld). Each output row (forward, gradient) or input row (backward) is
 * computed by one thread in a fixed order, so results are bitwise identical
 * for any thread count. The inner loops run over the batch and vectorise.
 *
 * Sparse layers: register-blocked kernels with the block shape fixed at
 * compile time (1x1, 2x2, 4x4, 8x8, and m x 1 for the output layer): a tile
 * of vector accumulators stays in registers across a row's index list, each
 * weight is broadcast once a tile; where the build has AVX-512, 512-bit
 * tiles hold 2 or 4 of a square block's rows together so each gathered input
 * vector feeds that many FMAs. Where a layer's gathered matrix is larger than
 * the cache, the kernels prefetch the rows they will gather. The SDDMM sums
 * whole blocks at once (one transposing reduction for 8 sums) and, fused,
 * applies the momentum step
 * to each weight as soon as its gradient is summed; for m = 1 hidden
 * layers the gradient is summed in the backward's pass instead, from the
 * delta rows it gathers anyway (fused_col_*). Other shapes take a
 * generic path with the same summation order and explicit FMAs, so both
 * give the same bits (tests/test_core.c checks it). Per batch there is one
 * parallel region per layer and phase (dropout and activation are drawn and
 * applied inside the forward's region). */
#include "cpu/cpu_ops.h"

#include <math.h>
#include <unistd.h>
#ifdef __x86_64__
#include <immintrin.h>
#endif
#include <string.h>

#include "util/philox.h"
#include "util/common.h"

/* Batch-wise vectors (GCC/Clang vector extensions; plain C elsewhere). The
 * batch loop is tiled: 32 columns (four vectors) accumulate in registers
 * across a row's connections, then 8 at a time for the rest of ld. */
typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4)));

static inline v8 ld8(const float *p) { return *(const v8u *)p; }
static inline void st8(float *p, v8 x) { *(v8u *)p = x; }
static inline v8 splat8(float w) { return (v8){w, w, w, w, w, w, w, w}; }

/* acc + a b, always one rounding where the target has FMA (the compiler's
 * own contraction of a * b + c differs between loop shapes, and the
 * blocked and generic paths must round alike). */
static inline v8 fma8(v8 a, v8 b, v8 acc)
{
#ifdef __FMA__
    return (v8)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)acc);
#else
    return acc + a * b;
#endif
}

/* The sum of the 8 lanes in the order of reduce8's transposing reduction
 * (pairs, then quads, then halves), so one sum and eight round alike. */
static inline float hsum8(v8 x)
{
    return ((x[0] + x[1]) + (x[2] + x[3])) + ((x[4] + x[5]) + (x[6] + x[7]));
}

/* sum_b x[b] y[b] over ld (a multiple of 8): one accumulator, then hsum8,
 * the order of every SDDMM tile (a generic-shape weight rounds like a
 * blocked one). */
static inline float dot_row(const float *restrict x, const float *restrict y, int ld)
{
    v8 s = {0};
    for (int b = 0; b < ld; b += 8)
        s = fma8(ld8(x + b), ld8(y + b), s);
    return hsum8(s);
}

/* Eight sums at once: out[j] = sum of the lanes of acc[j] (one transposing
 * reduction instead of eight horizontal sums). */
static inline void reduce8(const v8 acc[8], float out[8])
{
#ifdef __AVX2__
    __m256 t0 = _mm256_hadd_ps((__m256)acc[0], (__m256)acc[1]);
    __m256 t1 = _mm256_hadd_ps((__m256)acc[2], (__m256)acc[3]);
    __m256 t2 = _mm256_hadd_ps((__m256)acc[4], (__m256)acc[5]);
    __m256 t3 = _mm256_hadd_ps((__m256)acc[6], (__m256)acc[7]);
    t0 = _mm256_hadd_ps(t0, t1);
    t2 = _mm256_hadd_ps(t2, t3);
    __m256 r = _mm256_add_ps(_mm256_permute2f128_ps(t0, t2, 0x20),
                             _mm256_permute2f128_ps(t0, t2, 0x31));
    _mm256_storeu_ps(out, r);
#else
    for (int j = 0; j < 8; j++)
        out[j] = hsum8(acc[j]);
#endif
}

/* out[j] = sum_b d[b] rows[j][b] for NR rows: the dense gradient's inner
 * step, with d loaded once per 8 columns; 8 rows take one transposing
 * reduction for all 8 sums, 4 and 2 rows hsum8 each (the same order). */
#define ST_DOTS(NAME, NR, REDUCE)                                                          \
    static inline void NAME(const float *restrict d, const float *const rows[], int ld,   \
                            float out[])                                                   \
    {                                                                                      \
        v8 acc[NR] = {{0}};                                                                \
        for (int b = 0; b < ld; b += 8) {                                                  \
            v8 dv = ld8(d + b);                                                            \
            for (int j = 0; j < NR; j++)                                                   \
                acc[j] = fma8(dv, ld8(rows[j] + b), acc[j]);                               \
        }                                                                                  \
        REDUCE;                                                                            \
    }
ST_DOTS(dots8, 8, reduce8(acc, out))
ST_DOTS(dots4, 4, for (int j = 0; j < 4; j++) out[j] = hsum8(acc[j]))
ST_DOTS(dots2, 2, for (int j = 0; j < 2; j++) out[j] = hsum8(acc[j]))
#undef ST_DOTS

/* out[0..ld) = init + sum_k w_k x_k[0..ld), where for k < n the weight is
 * wts[wi[k] + woff] and the row is rows + ri[k] * rstride (both through an
 * index list; wi == NULL means wts[k * wstep + woff]). One call per output row. */
typedef struct {
    const float *wts;
    const int32_t *wi; /* weight index list or NULL          */
    int64_t wstep, woff;
    const float *rows;
    const int32_t *ri; /* row index list                     */
    int64_t rstride;   /* floats between consecutive indices */
    int64_t k0, k1;
    int inner;         /* consecutive rows per entry (block width) */
    int64_t winner;    /* weight step between those rows     */
} gather_list;

static inline float glw(const gather_list *g, int64_t k, int c)
{
    int64_t base = g->wi ? (int64_t)g->wi[k] * g->wstep : k * g->wstep;
    return g->wts[base + g->woff + c * g->winner];
}

/* One tile of NV vectors (8 NV batch columns from b0): the accumulators stay
 * in registers across the whole list; the list is read once per tile. */
#define ST_GATHER_TILE(NV)                                                               \
    static inline void gather_tile##NV(float *restrict out, float init,                 \
                                       const gather_list *g, int ld, int b0)            \
    {                                                                                    \
        v8 acc[NV];                                                                      \
        for (int v = 0; v < NV; v++)                                                     \
            acc[v] = splat8(init);                                                       \
        for (int64_t k = g->k0; k < g->k1; k++) {                                        \
            const float *x = g->rows + (int64_t)g->ri[k] * g->rstride + b0;              \
            for (int c = 0; c < g->inner; c++, x += ld) {                                \
                const v8 w = splat8(glw(g, k, c));                                       \
                for (int v = 0; v < NV; v++)                                             \
                    acc[v] = fma8(w, ld8(x + 8 * v), acc[v]);                            \
            }                                                                            \
        }                                                                                \
        for (int v = 0; v < NV; v++)                                                     \
            st8(out + b0 + 8 * v, acc[v]);                                               \
    }
ST_GATHER_TILE(1)
ST_GATHER_TILE(2)
ST_GATHER_TILE(3)
ST_GATHER_TILE(4)
ST_GATHER_TILE(5)
ST_GATHER_TILE(6)
#undef ST_GATHER_TILE

/* The batch in tiles of at most 6 vectors (48 columns): ld = 40 is one pass
 * over the list, ld = 128 three. */
static void gather_axpy(float *restrict out, float init, const gather_list *g, int ld)
{
    for (int b0 = 0; b0 < ld;) {
        int nv = (ld - b0) / 8;
        if (nv > 6)
            nv = 6;
        switch (nv) {
        case 1: gather_tile1(out, init, g, ld, b0); break;
        case 2: gather_tile2(out, init, g, ld, b0); break;
        case 3: gather_tile3(out, init, g, ld, b0); break;
        case 4: gather_tile4(out, init, g, ld, b0); break;
        case 5: gather_tile5(out, init, g, ld, b0); break;
        default: gather_tile6(out, init, g, ld, b0); break;
        }
        b0 += 8 * nv;
    }
}

/* Dense block: rows r0 .. r0 + nr - 1 (nr <= 4) of out (ld stride) =
 * init[r] + sum_{i<n} w[r * rs + i * is] x[i * ld + b] (init NULL: 0). Four
 * rows share each load of x; 16 batch columns (two vectors per row) stay in
 * registers across the sum. */
static void dense_block4_from(float *out, const float *init, int64_t r0, int nr,
                              const float *w, int64_t rs, int64_t is, const float *x, int64_t n,
                              int ld, int bstart)
{
    const float *wr[4];
    for (int r = 0; r < 4; r++) /* rows past nr repeat the last one; never stored */
        wr[r] = w + (r0 + (r < nr ? r : nr - 1)) * rs;
    for (int b0 = bstart; b0 < ld; b0 += 16) {
        const int two = b0 + 16 <= ld; /* ld is a multiple of 8 */
        v8 acc[4][2];
        for (int r = 0; r < 4; r++) {
            float v = init ? init[r0 + (r < nr ? r : nr - 1)] : 0.0f;
            acc[r][0] = splat8(v);
            acc[r][1] = acc[r][0];
        }
        for (int64_t i = 0; i < n; i++) {
            const float *xi = x + i * ld + b0;
            v8 x0 = ld8(xi), x1 = two ? ld8(xi + 8) : x0;
            for (int r = 0; r < 4; r++) {
                const v8 wv = splat8(wr[r][i * is]);
                acc[r][0] = fma8(wv, x0, acc[r][0]);
                acc[r][1] = fma8(wv, x1, acc[r][1]);
            }
        }
        for (int r = 0; r < nr; r++) {
            st8(out + r * ld + b0, acc[r][0]);
            if (two)
                st8(out + r * ld + b0 + 8, acc[r][1]);
        }
    }
}

/* ---- register-blocked block kernels ------------------------------------ *
 * A tile keeps RB rows x T vectors of accumulators in registers across a
 * whole index list; every loaded input vector feeds RB rows, every weight
 * is broadcast once per tile. Entry k of the list reads INNER consecutive
 * rows from rows + ri[k] * rstride; the weight of group row r and inner row
 * c is wts[blk * bs + woff + r * WR + c * WC], with blk = k (WI 0: blocks in
 * storage order) or wi[k] (WI 1). Each output element is init plus its
 * products in list order (k, then c), one FMA each, whatever the vector
 * width or the group size: every tiling gives the same bits.
 *
 * Two widths. 256-bit (AVX2, 16 registers): tiles of 8 accumulators (the
 * FMA latency times two pipes), T = 8 / RB; square blocks use RB = 1 with
 * the block's bi (forward) or bo (backward) rows unrolled, because on an
 * AVX2 core grouping a block's rows measured slower (the reuse of each input
 * vector did not pay for the register pressure). 512-bit (AVX-512, 32
 * registers): 16 columns a vector, and square blocks group their rows (RB =
 * m, at most 4; 2 where ld is wider than 64, see ST_RB2W) so one load of a
 * gathered input vector feeds RB FMAs: that is what makes a motif block
 * cheaper per connection than m^2 single connections. A tail of 8 columns
 * (ld is a multiple of 8) takes one 256-bit tile. */
/* Software prefetch of gathered rows (pf set: the gathered matrix is larger
 * than the cache that would hold it, see gather_prefetch): 8 entries ahead,
 * the distance that measured best at 1M neurons (the forward 1.07 -> 0.84 s,
 * the backward 1.25 -> 1.03 s for a 1M x 1M layer at m = 1, one thread,
 * Zen), where each gathered row comes from memory. */
#define ST_PF_AHEAD 8
static inline void st_prefetch(const char *p)
{
#ifdef __SSE__
    _mm_prefetch(p, _MM_HINT_T0);
#else
    __builtin_prefetch(p);
#endif
}
#define ST_BLK_TILE_W(NAME, INNER, RB, WR, WC, WI, T, PF, VT, VW, LD, ST, SPLAT, FMA)       \
    static inline void NAME(float *restrict out, int ld, int b0, const float *init,       \
                            const float *restrict wts, const int32_t *restrict wi,         \
                            int64_t bs, int64_t woff, const float *restrict rows,          \
                            const int32_t *restrict ri, int64_t rstride, int64_t k0,       \
                            int64_t k1)                                                    \
    {                                                                                      \
        VT acc[RB][T];                                                                     \
        for (int r = 0; r < RB; r++) {                                                     \
            const float iv = init ? init[r] : 0.0f;                                        \
            for (int v = 0; v < T; v++)                                                    \
                acc[r][v] = SPLAT(iv);                                                     \
        }                                                                                  \
        for (int64_t k = k0; k < k1; k++) {                                                \
            const float *wk = wts + (WI ? (int64_t)wi[k] : k) * bs + woff;                 \
            const float *x = rows + (int64_t)ri[k] * rstride + b0;                         \
            if (PF) { /* the tile's part of the entry ST_PF_AHEAD on, into L1 */           \
                const int64_t kp = k + ST_PF_AHEAD < k1 ? k + ST_PF_AHEAD : k1 - 1;        \
                const char *px = (const char *)(rows + (int64_t)ri[kp] * rstride + b0);    \
                for (int c = 0; c < INNER; c++)                                            \
                    for (int v = 0; v < T * VW; v += 16)                                   \
                        st_prefetch(px + 4 * ((int64_t)c * ld + v));                       \
            }                                                                              \
            for (int c = 0; c < INNER; c++, x += ld) {                                     \
                VT xv[T];                                                                  \
                for (int v = 0; v < T; v++)                                                \
                    xv[v] = LD(x + VW * v);                                                \
                for (int r = 0; r < RB; r++) {                                             \
                    const VT w = SPLAT(wk[r * WR + c * WC]);                               \
                    for (int v = 0; v < T; v++)                                            \
                        acc[r][v] = FMA(w, xv[v], acc[r][v]);                              \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
        for (int r = 0; r < RB; r++)                                                       \
            for (int v = 0; v < T; v++)                                                    \
                ST(out + (int64_t)r * ld + b0 + VW * v, acc[r][v]);                        \
    }
#define ST_BLK_TILE(NAME, INNER, RB, WR, WC, WI, T, PF)                                    \
    ST_BLK_TILE_W(NAME, INNER, RB, WR, WC, WI, T, PF, v8, 8, ld8, st8, splat8, fma8)

#define ST_BLK_CALL(F) F(out, ld, b0, init, wts, wi, bs, woff, rows, ri, rstride, k0, k1)
/* The tile of NV vectors: P1 .. P8 (P is NAME_t or NAME_z, NAME_p_t or NAME_p_z). */
#define ST_BLK_SWITCH(P, NV)                                                               \
    switch (NV) {                                                                          \
    case 8: ST_BLK_CALL(P##8); break;                                                      \
    case 7: ST_BLK_CALL(P##7); break;                                                      \
    case 6: ST_BLK_CALL(P##6); break;                                                      \
    case 5: ST_BLK_CALL(P##5); break;                                                      \
    case 4: ST_BLK_CALL(P##4); break;                                                      \
    case 3: ST_BLK_CALL(P##3); break;                                                      \
    case 2: ST_BLK_CALL(P##2); break;                                                      \
    default: ST_BLK_CALL(P##1); break;                                                     \
    }

#ifdef __AVX512F__
typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));
static inline v16 ld16(const float *p) { return *(const v16u *)p; }
static inline void st16(float *p, v16 x) { *(v16u *)p = x; }
static inline v16 splat16(float w) { return (v16)_mm512_set1_ps(w); }
static inline v16 fma16(v16 a, v16 b, v16 acc)
{
    return (v16)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)acc);
}
#define ST_WIDE 1
/* 512-bit tiles: 8 vectors (128 columns) for RB 1 and 2, 4 for RB 4, so
 * accumulators and loaded vectors fit the 32 registers. */
#define ST_TMAX16(RB) ((RB) <= 2 ? 8 : 4)
#define ST_BLK_TILE16(NAME, INNER, RB, WR, WC, WI, T, PF)                                  \
    ST_BLK_TILE_W(NAME, INNER, RB, WR, WC, WI, T, PF, v16, 16, ld16, st16, splat16, fma16)
/* All of ld for one group: 512-bit tiles of up to ST_TMAX16(RB) vectors,
 * then the 8-column tail. */
#define ST_BLK_TILES(NAME, INNER, RB, WR, WC, WI, PF)                                      \
    ST_BLK_TILE(NAME##t1, INNER, RB, WR, WC, WI, 1, PF)                                    \
    ST_BLK_TILE16(NAME##z1, INNER, RB, WR, WC, WI, 1, PF)                                  \
    ST_BLK_TILE16(NAME##z2, INNER, RB, WR, WC, WI, 2, PF)                                  \
    ST_BLK_TILE16(NAME##z3, INNER, RB, WR, WC, WI, 3, PF)                                  \
    ST_BLK_TILE16(NAME##z4, INNER, RB, WR, WC, WI, 4, PF)                                  \
    ST_BLK_TILE16(NAME##z5, INNER, RB, WR, WC, WI, 5, PF)                                  \
    ST_BLK_TILE16(NAME##z6, INNER, RB, WR, WC, WI, 6, PF)                                  \
    ST_BLK_TILE16(NAME##z7, INNER, RB, WR, WC, WI, 7, PF)                                  \
    ST_BLK_TILE16(NAME##z8, INNER, RB, WR, WC, WI, 8, PF)
#define ST_BLK_PASSES(P)                                                                   \
    do {                                                                                   \
        int b0 = 0;                                                                        \
        while (ld - b0 >= 16) {                                                            \
            const int nv = (ld - b0) / 16 < tmax ? (ld - b0) / 16 : tmax;                  \
            ST_BLK_SWITCH(P##z, nv);                                                       \
            b0 += 16 * nv;                                                                 \
        }                                                                                  \
        if (b0 < ld)                                                                       \
            ST_BLK_CALL(P##t1);                                                            \
    } while (0)
#define ST_BLK_TMAX(RB) ST_TMAX16(RB)
#else
#define ST_WIDE 0
#define ST_ACC 8 /* accumulators a tile: FMA latency x 2 pipes */
/* All of ld for one group: tiles of TMAX = 8 / RB vectors, and one tile of
 * the rest (a tail of a single vector would leave one accumulator chain
 * waiting on FMA latency). */
#define ST_BLK_TILES(NAME, INNER, RB, WR, WC, WI, PF)                                      \
    ST_BLK_TILE(NAME##t1, INNER, RB, WR, WC, WI, 1, PF)                                    \
    ST_BLK_TILE(NAME##t2, INNER, RB, WR, WC, WI, 2, PF)                                    \
    ST_BLK_TILE(NAME##t3, INNER, RB, WR, WC, WI, 3, PF)                                    \
    ST_BLK_TILE(NAME##t4, INNER, RB, WR, WC, WI, 4, PF)                                    \
    ST_BLK_TILE(NAME##t5, INNER, RB, WR, WC, WI, 5, PF)                                    \
    ST_BLK_TILE(NAME##t6, INNER, RB, WR, WC, WI, 6, PF)                                    \
    ST_BLK_TILE(NAME##t7, INNER, RB, WR, WC, WI, 7, PF)                                    \
    ST_BLK_TILE(NAME##t8, INNER, RB, WR, WC, WI, 8, PF)
#define ST_BLK_PASSES(P)                                                                   \
    for (int b0 = 0; b0 < ld;) {                                                           \
        const int nv = (ld - b0) / 8 < tmax ? (ld - b0) / 8 : tmax;                        \
        ST_BLK_SWITCH(P##t, nv);                                                           \
        b0 += 8 * nv;                                                                      \
    }
#define ST_BLK_TMAX(RB) (ST_ACC / (RB) < 8 ? ST_ACC / (RB) : 8)
#endif
/* Two sets of tiles, without and with the prefetch (NAME_p_...), and the
 * kernel that runs all of ld through one of them. */
#define ST_BLK_ROWS(NAME, INNER, RB, WR, WC, WI)                                           \
    ST_BLK_TILES(NAME##_, INNER, RB, WR, WC, WI, 0)                                        \
    ST_BLK_TILES(NAME##_p_, INNER, RB, WR, WC, WI, 1)                                      \
    static void NAME(float *restrict out, int ld, const float *init, const float *wts,     \
                     const int32_t *wi, int64_t bs, int64_t woff, const float *rows,       \
                     const int32_t *ri, int64_t rstride, int64_t k0, int64_t k1, int pf)   \
    {                                                                                      \
        const int tmax = ST_BLK_TMAX(RB);                                                  \
        if (pf) {                                                                          \
            ST_BLK_PASSES(NAME##_p_);                                                      \
        } else {                                                                           \
            ST_BLK_PASSES(NAME##_);                                                        \
        }                                                                                  \
    }

/* Dense block (dense_block4_from's sum, columns from 0): on 512-bit cores
 * 64 columns (four vectors a row, 16 accumulators) a pass while they last,
 * the rest by the 256-bit code; every element is the same chain of FMAs. */
static void dense_block4(float *out, const float *init, int64_t r0, int nr, const float *w,
                         int64_t rs, int64_t is, const float *x, int64_t n, int ld)
{
    int b0 = 0;
#ifdef __AVX512F__
    const float *wr[4];
    for (int r = 0; r < 4; r++) /* rows past nr repeat the last one; never stored */
        wr[r] = w + (r0 + (r < nr ? r : nr - 1)) * rs;
    for (; b0 + 64 <= ld; b0 += 64) {
        v16 acc[4][4];
        for (int r = 0; r < 4; r++) {
            const float v = init ? init[r0 + (r < nr ? r : nr - 1)] : 0.0f;
            for (int q = 0; q < 4; q++)
                acc[r][q] = splat16(v);
        }
        for (int64_t i = 0; i < n; i++) {
            const float *xi = x + i * ld + b0;
            const v16 x0 = ld16(xi), x1 = ld16(xi + 16), x2 = ld16(xi + 32), x3 = ld16(xi + 48);
            for (int r = 0; r < 4; r++) {
                const v16 wv = splat16(wr[r][i * is]);
                acc[r][0] = fma16(wv, x0, acc[r][0]);
                acc[r][1] = fma16(wv, x1, acc[r][1]);
                acc[r][2] = fma16(wv, x2, acc[r][2]);
                acc[r][3] = fma16(wv, x3, acc[r][3]);
            }
        }
        for (int r = 0; r < nr; r++)
            for (int q = 0; q < 4; q++)
                st16(out + r * ld + b0 + 16 * q, acc[r][q]);
    }
#endif
    if (b0 < ld)
        dense_block4_from(out, init, r0, nr, w, rs, is, x, n, ld, b0);
}

/* A dense layer of few outputs (the output layer: O <= ST_FEW_ROWS): every
 * row of out = init[r] + sum_{i<n} w[r * rs + i * is] x[i * ld + b] for one
 * slice of columns (NV vectors from b0), so each loaded x vector feeds all
 * O rows and x is read once; dense_block4 reads it once per four rows (three
 * times for ten classes), and its ld / 64 passes leave one thread idle. The
 * rows are done in RG registers (rows past O repeat the last one; never
 * stored); every element is dense_block4's chain of FMAs, the same bits. */
#define ST_FEW_ROWS 12
#define ST_DENSE_FEW(NAME, RG, NV, VT, VW, LD, ST, SPLAT, FMA)                              \
    static void NAME(float *out, const float *init, int nr, const float *w, int64_t rs,    \
                     int64_t is, const float *x, int64_t n, int ld, int b0)                \
    {                                                                                      \
        const float *wr[RG];                                                               \
        VT acc[RG][NV];                                                                    \
        for (int r = 0; r < RG; r++) {                                                     \
            const int rr = r < nr ? r : nr - 1;                                            \
            wr[r] = w + rr * rs;                                                           \
            for (int v = 0; v < NV; v++)                                                   \
                acc[r][v] = SPLAT(init ? init[rr] : 0.0f);                                 \
        }                                                                                  \
        for (int64_t i = 0; i < n; i++) {                                                  \
            VT xv[NV];                                                                     \
            for (int v = 0; v < NV; v++)                                                   \
                xv[v] = LD(x + i * ld + b0 + VW * v);                                      \
            for (int r = 0; r < RG; r++) {                                                 \
                const VT wv = SPLAT(wr[r][i * is]);                                        \
                for (int v = 0; v < NV; v++)                                               \
                    acc[r][v] = FMA(wv, xv[v], acc[r][v]);                                 \
            }                                                                              \
        }                                                                                  \
        for (int r = 0; r < nr; r++)                                                       \
            for (int v = 0; v < NV; v++)                                                   \
                ST(out + (int64_t)r * ld + b0 + VW * v, acc[r][v]);                        \
    }
#define ST_DENSE_FEW_RG(RG)                                                                \
    ST_DENSE_FEW(dense_few##RG##_t1, RG, 1, v8, 8, ld8, st8, splat8, fma8)                 \
    ST_DENSE_FEW_WIDE(RG)
#ifdef __AVX512F__
/* 32 columns a slice (two vectors), 16 or 8 for the rest */
#define ST_FEW_SLICE 32
#define ST_DENSE_FEW_WIDE(RG)                                                              \
    ST_DENSE_FEW(dense_few##RG##_z1, RG, 1, v16, 16, ld16, st16, splat16, fma16)           \
    ST_DENSE_FEW(dense_few##RG##_z2, RG, 2, v16, 16, ld16, st16, splat16, fma16)
#define ST_DENSE_FEW_CALL(RG)                                                              \
    (nc == 32   ? dense_few##RG##_z2(out, init, nr, w, rs, is, x, n, ld, b0)               \
     : nc == 16 ? dense_few##RG##_z1(out, init, nr, w, rs, is, x, n, ld, b0)               \
                : dense_few##RG##_t1(out, init, nr, w, rs, is, x, n, ld, b0))
#else
/* 8 columns a slice: 16 registers */
#define ST_FEW_SLICE 8
#define ST_DENSE_FEW_WIDE(RG)
#define ST_DENSE_FEW_CALL(RG) dense_few##RG##_t1(out, init, nr, w, rs, is, x, n, ld, b0)
#endif
ST_DENSE_FEW_RG(2)
ST_DENSE_FEW_RG(4)
ST_DENSE_FEW_RG(6)
ST_DENSE_FEW_RG(8)
ST_DENSE_FEW_RG(10)
ST_DENSE_FEW_RG(12)

/* Columns b0 .. b0 + nc - 1 (nc: ST_FEW_SLICE, or less at the end of ld) of
 * all nr <= ST_FEW_ROWS rows. */
static void dense_few(float *out, const float *init, int nr, const float *w, int64_t rs,
                      int64_t is, const float *x, int64_t n, int ld, int b0, int nc)
{
    if (nc > 16 && nc < 32) { /* 24 columns at the end: 16, then 8 */
        dense_few(out, init, nr, w, rs, is, x, n, ld, b0, 16);
        dense_few(out, init, nr, w, rs, is, x, n, ld, b0 + 16, nc - 16);
        return;
    }
    switch ((nr + 1) / 2) {
    case 1: ST_DENSE_FEW_CALL(2); break;
    case 2: ST_DENSE_FEW_CALL(4); break;
    case 3: ST_DENSE_FEW_CALL(6); break;
    case 4: ST_DENSE_FEW_CALL(8); break;
    case 5: ST_DENSE_FEW_CALL(10); break;
    default: ST_DENSE_FEW_CALL(12); break;
    }
}
#undef ST_DENSE_FEW
#undef ST_DENSE_FEW_RG
#undef ST_DENSE_FEW_WIDE
#undef ST_DENSE_FEW_CALL

/* Group sizes of square blocks: their rows together on 512-bit cores. A
 * group of 4 rows holds 4 vectors (64 columns) a row; where ld needs more
 * than one such pass, the 4 x 4 and 8 x 8 blocks take groups of 2 rows
 * instead (ST_RB2W: 8 vectors, 128 columns a pass): reading each gathered
 * row whole once a group measured 5-15% faster at batch 128 than reading
 * half of it twice, and 5% slower at batch 40 (Zen, one thread). */
#if ST_WIDE
#define ST_RB2 2
#define ST_RB4 4
#define ST_RB8 4
#define ST_RB2W 2
#define ST_RB_WIDE_LD (16 * ST_TMAX16(4)) /* wider ld: ST_RB2W groups */
#else
#define ST_RB2 1
#define ST_RB4 1
#define ST_RB8 1
#define ST_RB2W 1
#define ST_RB_WIDE_LD (1 << 30)
#endif

/* Forward (INNER = bi inputs of a block, groups of the bo outputs; weight
 * of output r, input c at r * bi + c, i.e. WR bi, WC 1) and backward delta
 * (INNER = bo outputs, groups of the bi inputs; weight at r * bi + c, i.e.
 * WR 1, WC bi). fw_BIxBO / bw_BIxBO. */
ST_BLK_ROWS(fw_1x1, 1, 1, 1, 1, 0)
ST_BLK_ROWS(fw_2x2, 2, ST_RB2, 2, 1, 0)
ST_BLK_ROWS(fw_4x4, 4, ST_RB4, 4, 1, 0)
ST_BLK_ROWS(fw_8x8, 8, ST_RB8, 8, 1, 0)
#if ST_WIDE
ST_BLK_ROWS(fw_4x4w, 4, ST_RB2W, 4, 1, 0)
ST_BLK_ROWS(fw_8x8w, 8, ST_RB2W, 8, 1, 0)
#endif
ST_BLK_ROWS(fw_2x1, 2, 1, 2, 1, 0)
ST_BLK_ROWS(fw_4x1, 4, 1, 4, 1, 0)
ST_BLK_ROWS(fw_8x1, 8, 1, 8, 1, 0)
ST_BLK_ROWS(bw_1x1, 1, 1, 1, 1, 1)
ST_BLK_ROWS(bw_2x2, 2, ST_RB2, 1, 2, 1)
ST_BLK_ROWS(bw_4x4, 4, ST_RB4, 1, 4, 1)
ST_BLK_ROWS(bw_8x8, 8, ST_RB8, 1, 8, 1)
#if ST_WIDE
ST_BLK_ROWS(bw_4x4w, 4, ST_RB2W, 1, 4, 1)
ST_BLK_ROWS(bw_8x8w, 8, ST_RB2W, 1, 8, 1)
#endif
ST_BLK_ROWS(bw_2x1, 1, 2, 1, 2, 1)
ST_BLK_ROWS(bw_4x1, 1, 4, 1, 4, 1)
ST_BLK_ROWS(bw_8x1, 1, 4, 1, 8, 1)
#undef ST_BLK_ROWS
#undef ST_BLK_TILES
#undef ST_BLK_PASSES
#undef ST_BLK_TMAX
#undef ST_BLK_TILE
#undef ST_BLK_TILE16
#undef ST_BLK_TILE_W
#undef ST_BLK_CALL
#undef ST_BLK_SWITCH

typedef void (*blk_rows_fn)(float *restrict, int, const float *, const float *, const int32_t *,
                            int64_t, int64_t, const float *, const int32_t *, int64_t, int64_t,
                            int64_t, int);

static int st_generic_only; /* tests: 1 runs every shape on the generic path */

void cpu_ops_force_generic(int on) { st_generic_only = on; }

void cpu_ops_flush_denormals(void)
{
#ifdef __SSE2__
    const unsigned int ftz_daz = 0x8040; /* bit 15 flush to zero, bit 6 denormals are zero */
    _mm_setcsr(_mm_getcsr() | ftz_daz);
#pragma omp parallel
    _mm_setcsr(_mm_getcsr() | ftz_daz);
#endif
}

/* The compiled kernel and its group size for a block shape (NULL: generic). */
static blk_rows_fn blk_kernel(int bi, int bo, int backward, int ld, int *rb)
{
    if (st_generic_only)
        return NULL;
#if ST_WIDE
    if (ld > ST_RB_WIDE_LD && bi == bo && (bi == 4 || bi == 8)) {
        *rb = ST_RB2W;
        return bi == 4 ? (backward ? bw_4x4w : fw_4x4w) : (backward ? bw_8x8w : fw_8x8w);
    }
#else
    (void)ld;
#endif
    /* rows a group (forward, backward): the square blocks' ST_RBm, and for
     * m x 1 blocks 1 forward and up to 4 backward, whose single-entry lists
     * share each delta load among the inputs */
    static const struct { int bi, bo, fw_rb, bw_rb; blk_rows_fn fw, bw; } k[] = {
        {1, 1, 1, 1, fw_1x1, bw_1x1},           {2, 2, ST_RB2, ST_RB2, fw_2x2, bw_2x2},
        {4, 4, ST_RB4, ST_RB4, fw_4x4, bw_4x4}, {8, 8, ST_RB8, ST_RB8, fw_8x8, bw_8x8},
        {2, 1, 1, 2, fw_2x1, bw_2x1},           {4, 1, 1, 4, fw_4x1, bw_4x1},
        {8, 1, 1, 4, fw_8x1, bw_8x1}};
    for (size_t j = 0; j < sizeof k / sizeof k[0]; j++)
        if (k[j].bi == bi && k[j].bo == bo) {
            *rb = backward ? k[j].bw_rb : k[j].fw_rb;
            return backward ? k[j].bw : k[j].fw;
        }
    return NULL;
}

/* Block SDDMM tile: NB consecutive blocks k .. k + NB - 1 of one block row,
 * RG delta rows (outputs r0 ..) x CG input rows (c0 ..) of each: g[(n RG +
 * r) CG + c] = sum_b d[r0 + r, b] a[col_idx[k + n] bi + c0 + c, b], with
 * NB RG CG <= 8 accumulators; each loaded delta vector feeds NB CG
 * products and each input vector RG. Sums in a fixed order (lanes, then
 * reduce8), the same for every caller. */
#define ST_SDDMM_TILE(NAME, NB, RG, CG)                                                    \
    static inline void NAME(float g[8], const float *restrict d, const float *restrict a,  \
                            const int32_t *restrict col, int64_t k, int bi, int c0, int ld) \
    {                                                                                      \
        v8 acc[8] = {{0}};                                                                 \
        const float *ar[NB];                                                               \
        for (int n = 0; n < NB; n++)                                                       \
            ar[n] = a + ((int64_t)col[k + n] * bi + c0) * ld;                              \
        for (int b = 0; b < ld; b += 8) {                                                  \
            v8 dv[RG];                                                                     \
            for (int r = 0; r < RG; r++)                                                   \
                dv[r] = ld8(d + (int64_t)r * ld + b);                                      \
            for (int n = 0; n < NB; n++)                                                   \
                for (int c = 0; c < CG; c++) {                                             \
                    const v8 av = ld8(ar[n] + (int64_t)c * ld + b);                        \
                    for (int r = 0; r < RG; r++)                                           \
                        acc[(n * RG + r) * CG + c] =                                       \
                            fma8(dv[r], av, acc[(n * RG + r) * CG + c]);                   \
                }                                                                          \
        }                                                                                  \
        reduce8(acc, g);                                                                   \
    }
ST_SDDMM_TILE(sd_n8_1x1, 8, 1, 1)
ST_SDDMM_TILE(sd_n2_2x2, 2, 2, 2)
ST_SDDMM_TILE(sd_n1_2x2, 1, 2, 2)
ST_SDDMM_TILE(sd_n1_2x4, 1, 2, 4)
ST_SDDMM_TILE(sd_n1_2x8, 1, 2, 4) /* 8 x 8 blocks: 2 outputs x 4 inputs a tile */
ST_SDDMM_TILE(sd_n4_1x2, 4, 1, 2)
ST_SDDMM_TILE(sd_n1_1x2, 1, 1, 2)
ST_SDDMM_TILE(sd_n2_1x4, 2, 1, 4)
ST_SDDMM_TILE(sd_n1_1x4, 1, 1, 4)
ST_SDDMM_TILE(sd_n1_1x8, 1, 1, 8)
#undef ST_SDDMM_TILE

#if defined(__AVX512F__) && defined(__AVX512DQ__) /* insertf32x8, broadcast_f32x8 */
/* The same sums with two delta rows a 512-bit register: accumulator (n, p,
 * c) holds the chains of rows r0 + 2p (low half) and r0 + 2p + 1 (high
 * half) against input row c0 + c of block k + n; each 8-column piece of an
 * input row is loaded once and broadcast to both halves, so one FMA does two
 * chains' steps. Lane for lane the FMAs are those of ST_SDDMM_TILE (every
 * chain sums its 8-column pieces in order from 0), and the 16 chains are
 * reduced by reduce8 in the order g[(n RG + r) CG + c], RG = 2 RP: the same
 * bits. NB RP CG = 8 accumulators. */
#define ST_SDDMM_ZTILE(NAME, NB, RP, CG)                                                   \
    static inline void NAME(float g[16], const float *restrict d, const float *restrict a, \
                            const int32_t *restrict col, int64_t k, int bi, int c0, int ld) \
    {                                                                                      \
        __m512 acc[NB][RP][CG];                                                            \
        const float *ar[NB];                                                               \
        for (int n = 0; n < NB; n++) {                                                     \
            ar[n] = a + ((int64_t)col[k + n] * bi + c0) * ld;                              \
            for (int p = 0; p < RP; p++)                                                   \
                for (int c = 0; c < CG; c++)                                               \
                    acc[n][p][c] = _mm512_setzero_ps();                                    \
        }                                                                                  \
        for (int b = 0; b < ld; b += 8) {                                                  \
            __m512 dv[RP];                                                                 \
            for (int p = 0; p < RP; p++)                                                   \
                dv[p] = _mm512_insertf32x8(                                                \
                    _mm512_castps256_ps512(_mm256_loadu_ps(d + (int64_t)(2 * p) * ld + b)), \
                    _mm256_loadu_ps(d + (int64_t)(2 * p + 1) * ld + b), 1);                \
            for (int n = 0; n < NB; n++)                                                   \
                for (int c = 0; c < CG; c++) {                                             \
                    const __m512 av =                                                      \
                        _mm512_broadcast_f32x8(_mm256_loadu_ps(ar[n] + (int64_t)c * ld + b)); \
                    for (int p = 0; p < RP; p++)                                           \
                        acc[n][p][c] = _mm512_fmadd_ps(dv[p], av, acc[n][p][c]);           \
                }                                                                          \
        }                                                                                  \
        v8 ch[16];                                                                         \
        for (int n = 0; n < NB; n++)                                                       \
            for (int p = 0; p < RP; p++)                                                   \
                for (int c = 0; c < CG; c++) {                                             \
                    ch[(n * 2 * RP + 2 * p) * CG + c] =                                    \
                        (v8)_mm512_castps512_ps256(acc[n][p][c]);                          \
                    ch[(n * 2 * RP + 2 * p + 1) * CG + c] =                                \
                        (v8)_mm512_extractf32x8_ps(acc[n][p][c], 1);                       \
                }                                                                          \
        reduce8(ch, g);                                                                    \
        reduce8(ch + 8, g + 8);                                                            \
    }
ST_SDDMM_ZTILE(sz_n4_2x2, 4, 1, 2) /* four 2 x 2 blocks */
ST_SDDMM_ZTILE(sz_n1_4x4, 1, 2, 4) /* 4 outputs x 4 inputs: a 4 x 4 block, a quarter of 8 x 8 */
#undef ST_SDDMM_ZTILE
#endif

/* Where a gradient goes: stored in gw (gw != NULL), or applied at once. */
typedef struct {
    float *gw;              /* NULL: fused update into w, v */
    float *w, *v;
    float lr, mu, wd;
} grad_sink;

/* The momentum step for one weight; the update functions all use it, so
 * the fused and the stored-then-applied paths round alike. */
static inline void momentum_step(float *w, float *v, float g, float lr, float mu, float wd)
{
    const float nv = mu * *v - lr * (g + wd * *w);
    *v = nv;
    *w += nv;
}

static inline void sink_put(const grad_sink *s, int64_t e, float g)
{
    if (s->gw)
        s->gw[e] = g;
    else
        momentum_step(s->w + e, s->v + e, g, s->lr, s->mu, s->wd);
}

/* NB blocks from k, RG x CG tiles from (r0, c0): g[(n RG + r) CG + c] goes
 * to storage index (k + n) bs + (r0 + r) bi + c0 + c. */
static inline void sink_tile(const grad_sink *s, const float g[8], int NB, int RG, int CG,
                             int64_t k, int bs, int bi, int r0, int c0)
{
    /* The fused update in vectors: momentum_step's expression lane for lane
     * (the same rounding; test_core compares it with the generic path's
     * scalar steps). Whole blocks are NB bs consecutive weights; otherwise
     * each tile row is CG consecutive ones. */
    if (!s->gw && CG == bi && RG * CG == bs) {
        const int64_t e0 = k * bs;
        float *restrict w = s->w + e0, *restrict v = s->v + e0;
        const float lr = s->lr, mu = s->mu, wd = s->wd;
#pragma omp simd
        for (int i = 0; i < NB * bs; i++) {
            const float nv = mu * v[i] - lr * (g[i] + wd * w[i]);
            v[i] = nv;
            w[i] += nv;
        }
        return;
    }
    if (!s->gw && CG >= 4) {
        const float lr = s->lr, mu = s->mu, wd = s->wd;
        for (int n = 0; n < NB; n++)
            for (int r = 0; r < RG; r++) {
                const int64_t e0 = (k + n) * bs + (int64_t)(r0 + r) * bi + c0;
                float *restrict w = s->w + e0, *restrict v = s->v + e0;
                const float *gr = g + (n * RG + r) * CG;
#pragma omp simd
                for (int c = 0; c < CG; c++) {
                    const float nv = mu * v[c] - lr * (gr[c] + wd * w[c]);
                    v[c] = nv;
                    w[c] += nv;
                }
            }
        return;
    }
    for (int n = 0; n < NB; n++)
        for (int r = 0; r < RG; r++)
            for (int c = 0; c < CG; c++)
                sink_put(s, (k + n) * bs + (int64_t)(r0 + r) * bi + c0 + c,
                         g[(n * RG + r) * CG + c]);
}

/* sum_b d[b] over ld, in the fixed order of the vector lanes. */
static inline float row_sum(const float *restrict d, int ld)
{
    v8 s0 = {0}, s1 = {0};
    int b = 0;
    for (; b + 16 <= ld; b += 16) {
        s0 += ld8(d + b);
        s1 += ld8(d + b + 8);
    }
    for (; b < ld; b += 8)
        s0 += ld8(d + b);
    return hsum8(s0 + s1);
}

/* Weight gradients of block row R (and their update, with a fused sink). */
static void sddmm_block_row(const st_layer *L, const float *a_in, const float *delta_out,
                            int ld, int32_t R, const grad_sink *s, int pf)
{
    const int bi = L->bi, bo = L->bo, bs = bi * bo;
    const float *d = delta_out + (int64_t)R * bo * ld;
    const int32_t *col = L->col_idx;
    int64_t k = L->row_ptr[R];
    const int64_t k1 = L->row_ptr[R + 1];
    float g[16];
#define ST_TILE(FN, NB, RG, CG, R0, C0)                                                    \
    do {                                                                                   \
        FN(g, d + (int64_t)(R0) * ld, a_in, col, k, bi, C0, ld);                           \
        sink_tile(s, g, NB, RG, CG, k, bs, bi, R0, C0);                                    \
    } while (0)
    if (!st_generic_only) {
        if (bi == 1 && bo == 1) {
            for (; k + 8 <= k1; k += 8) {
                if (pf) /* the next tile's rows (see gather_prefetch) */
                    for (int n = 8; n < 16; n++) {
                        const char *p =
                            (const char *)(a_in + (int64_t)col[k + n < k1 ? k + n : k1 - 1] * ld);
                        for (int b = 0; b < ld; b += 16)
                            st_prefetch(p + 4 * b);
                    }
                ST_TILE(sd_n8_1x1, 8, 1, 1, 0, 0);
            }
            if (k < k1) { /* the tail: 8 lanes, the missing ones repeat the last */
                int32_t cl[8];
                for (int j = 0; j < 8; j++)
                    cl[j] = col[k + j < k1 ? k + j : k1 - 1];
                sd_n8_1x1(g, d, a_in, cl, 0, bi, 0, ld);
                sink_tile(s, g, (int)(k1 - k), 1, 1, k, bs, bi, 0, 0);
            }
            return;
        }
#if defined(__AVX512F__) && defined(__AVX512DQ__)
        if (bi == 2 && bo == 2)
            for (; k + 4 <= k1; k += 4)
                ST_TILE(sz_n4_2x2, 4, 2, 2, 0, 0);
        if (bi == 4 && bo == 4) {
            for (; k < k1; k++)
                ST_TILE(sz_n1_4x4, 1, 4, 4, 0, 0);
            return;
        }
        if (bi == 8 && bo == 8) {
            for (; k < k1; k++)
                for (int r0 = 0; r0 < 8; r0 += 4) {
                    ST_TILE(sz_n1_4x4, 1, 4, 4, r0, 0);
                    ST_TILE(sz_n1_4x4, 1, 4, 4, r0, 4);
                }
            return;
        }
#endif
        if (bi == 2 && bo == 2) {
            for (; k + 2 <= k1; k += 2)
                ST_TILE(sd_n2_2x2, 2, 2, 2, 0, 0);
            for (; k < k1; k++)
                ST_TILE(sd_n1_2x2, 1, 2, 2, 0, 0);
            return;
        }
        if (bi == 4 && bo == 4) {
            for (; k < k1; k++) {
                ST_TILE(sd_n1_2x4, 1, 2, 4, 0, 0);
                ST_TILE(sd_n1_2x4, 1, 2, 4, 2, 0);
            }
            return;
        }
        if (bi == 8 && bo == 8) {
            for (; k < k1; k++)
                for (int r0 = 0; r0 < 8; r0 += 2) {
                    ST_TILE(sd_n1_2x8, 1, 2, 4, r0, 0);
                    ST_TILE(sd_n1_2x8, 1, 2, 4, r0, 4);
                }
            return;
        }
        if (bo == 1 && bi == 2) {
            for (; k + 4 <= k1; k += 4)
                ST_TILE(sd_n4_1x2, 4, 1, 2, 0, 0);
            for (; k < k1; k++)
                ST_TILE(sd_n1_1x2, 1, 1, 2, 0, 0);
            return;
        }
        if (bo == 1 && bi == 4) {
            for (; k + 2 <= k1; k += 2)
                ST_TILE(sd_n2_1x4, 2, 1, 4, 0, 0);
            for (; k < k1; k++)
                ST_TILE(sd_n1_1x4, 1, 1, 4, 0, 0);
            return;
        }
        if (bo == 1 && bi == 8) {
            for (; k < k1; k++)
                ST_TILE(sd_n1_1x8, 1, 1, 8, 0, 0);
            return;
        }
    }
#undef ST_TILE
    /* generic shape: one dot product per weight */
    for (; k < k1; k++) {
        const float *ak = a_in + (int64_t)col[k] * bi * ld;
        for (int r = 0; r < bo; r++)
            for (int c = 0; c < bi; c++)
                sink_put(s, k * bs + (int64_t)r * bi + c,
                         dot_row(d + (int64_t)r * ld, ak + (int64_t)c * ld, ld));
    }
}

/* z rows of block row R (zr: its first row): bias + W^T a (one group of RB
 * outputs at a time). */
static void forward_block_row(const st_layer *L, const float *a, float *zr, int ld, int32_t R,
                              blk_rows_fn fn, int rb, int pf)
{
    const int bi = L->bi, bo = L->bo, bs = bi * bo;
    const int64_t k0 = L->row_ptr[R], k1 = L->row_ptr[R + 1];
    if (fn) {
        for (int r0 = 0; r0 < bo; r0 += rb) {
            const int64_t o = (int64_t)R * bo + r0;
            fn(zr + (int64_t)r0 * ld, ld, L->bias + o, L->w, NULL, bs, (int64_t)r0 * bi, a,
               L->col_idx, (int64_t)bi * ld, k0, k1, pf);
        }
        return;
    }
    for (int r = 0; r < bo; r++) {
        int64_t o = (int64_t)R * bo + r;
        gather_list g = {L->w, NULL, bs, (int64_t)r * bi, a, L->col_idx, (int64_t)bi * ld,
                         k0, k1, bi, 1};
        gather_axpy(zr + (int64_t)r * ld, L->bias[o], &g, ld);
    }
}

/* delta_in rows of block column C = W delta_out (before f'). */
static void backward_block_col(const st_layer *L, const float *delta_out, float *delta_in,
                               int ld, int32_t C, blk_rows_fn fn, int rb, int pf)
{
    const int bi = L->bi, bo = L->bo, bs = bi * bo;
    const int64_t j0 = L->t_ptr[C], j1 = L->t_ptr[C + 1];
    if (fn) {
        for (int c0 = 0; c0 < bi; c0 += rb) {
            const int64_t i = (int64_t)C * bi + c0;
            fn(delta_in + i * ld, ld, NULL, L->w, L->t_blk, bs, c0, delta_out, L->t_row,
               (int64_t)bo * ld, j0, j1, pf);
        }
        return;
    }
    for (int c = 0; c < bi; c++) {
        int64_t i = (int64_t)C * bi + c;
        /* entries: blocks of column C; within a block, the bo outputs r
         * (consecutive delta rows) with weights w[k*bs + r*bi + c] */
        gather_list g = {L->w, L->t_blk, bs, c, delta_out, L->t_row, (int64_t)bo * ld, j0, j1,
                         bo, bi};
        gather_axpy(delta_in + i * ld, 0.0f, &g, ld);
    }
}

/* Whether a sparse layer's kernels prefetch the rows they gather (n rows of
 * ld floats): when the gathered matrix is larger than the core's cache of
 * that level (2: L2, 3: L3), so it comes from further out. Measured on a Zen
 * core (1 MiB L2, 32 MiB L3), one thread, batch 128: at 3000 neurons (1.5 MB:
 * over L2, in L3) m = 1's forward and backward took 5% less with
 * prefetching, m = 4's 12% more (a block's rows are contiguous and the
 * hardware prefetcher follows them) and m = 1's SDDMM 10% more; at 1M
 * neurons (in memory) m = 1's forward, backward and SDDMM took 21%, 16%
 * and 15% less, m = 4's forward and backward 11% and 10% less. So forward
 * and backward prefetch for m = 1 beyond L2 and for blocks beyond L3, the
 * SDDMM (m = 1's eight-entry tiles) beyond L3. Where the matrix fits L2,
 * prefetching measured 0-8% slower (a Xeon with 2 MiB of L2 at 3000
 * neurons). */
static int st_prefetch_mode = -1; /* tests: 0 never, 1 always */

void cpu_ops_force_prefetch(int mode) { st_prefetch_mode = mode; }

static int gather_prefetch(int64_t n, int ld, int level)
{
    if (st_prefetch_mode >= 0)
        return st_prefetch_mode;
    static long l2 = -1, l3 = -1;
    if (l2 < 0) {
        long v2 = 0, v3 = 0;
#ifdef _SC_LEVEL2_CACHE_SIZE
        v2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
        v3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
        l3 = v3 > 0 ? v3 : 32L << 20;
        l2 = v2 > 0 ? v2 : 1L << 20;
    }
    return n * ld * (int64_t)sizeof(float) > (level == 2 ? l2 : l3);
}

/* Chunk of a dynamic schedule over n rows: about 64 chunks a region, so a
 * thread slowed by other work takes fewer of them. */
static inline int dyn_chunk(int64_t n)
{
    int64_t c = (n + 63) / 64;
    return c < 1 ? 1 : (int)c;
}

void cpu_layer_forward(const st_layer *L, const float *a, float *z, int ld)
{
    cpu_layer_forward_act(L, a, z, NULL, ST_ACT_RELU, 0, NULL, NULL, ld);
}

/* a = f(z) * mask for one row (mask NULL: none). */
static inline void act_row(st_activation act, int hidden, const float *restrict z,
                           const float *restrict mask, float *restrict a, int ld)
{
    if (act == ST_ACT_RELU && mask) {
#pragma omp simd
        for (int b = 0; b < ld; b++)
            a[b] = (z[b] > 0.0f ? z[b] : 0.0f) * mask[b];
    } else if (act == ST_ACT_RELU) {
#pragma omp simd
        for (int b = 0; b < ld; b++)
            a[b] = z[b] > 0.0f ? z[b] : 0.0f;
    } else {
        for (int b = 0; b < ld; b++)
            a[b] = st_activation_value(act, hidden, z[b]) * (mask ? mask[b] : 1.0f);
    }
}

static void dropout_rows(const cpu_dropout_spec *dp, int hidden, int64_t o0, int nr, float *m,
                         int ld);
static int dropout_packs_rows(const cpu_dropout_spec *dp, int ld);

/* Rows o0 .. o1 - 1 of a hidden layer after z (zr: row o0's): masks (drawn
 * when dp; into mask's rows, or into the scratch rows mrow, one a row, when
 * mask is NULL), then a. */
static inline void finish_rows(int64_t o0, int64_t o1, const float *zr, float *a_out,
                               st_activation act, int hidden, const cpu_dropout_spec *dp,
                               float *mask, float *mrow, int ld)
{
    if (!a_out)
        return;
    float *m0 = mask ? mask + o0 * ld : dp ? mrow : NULL;
    if (dp)
        dropout_rows(dp, hidden, o0, (int)(o1 - o0), m0, ld);
    for (int64_t o = o0; o < o1; o++)
        act_row(act, hidden, zr + (o - o0) * ld, m0 ? m0 + (o - o0) * ld : NULL,
                a_out + o * ld, ld);
}

/* Scratch of one thread for the rows z and the mask would hold (z or mask
 * not kept): zrows rows of z, then mrow mask rows; 64-byte aligned. */
static float *forward_scratch(int zrows, int mrow, int ld)
{
    const size_t n = (size_t)(zrows + mrow) * (size_t)ld * sizeof(float);
    void *p = NULL;
    if (n && posix_memalign(&p, 64, n) != 0)
        st_die("out of memory allocating %zu bytes for the forward scratch", n);
    return p;
}

void cpu_layer_forward_act(const st_layer *L, const float *a, float *z, float *a_out,
                           st_activation act, int hidden, const cpu_dropout_spec *dp,
                           float *mask, int ld)
{
    if (!a_out)
        dp = NULL, mask = NULL;
    if (L->dense && !a_out && L->n_out <= ST_FEW_ROWS && !st_generic_only) {
        /* the output layer: every row a slice of columns (dense_few) */
#pragma omp parallel for schedule(dynamic, 1)
        for (int b0 = 0; b0 < ld; b0 += ST_FEW_SLICE)
            dense_few(z, L->bias, L->n_out, L->w, L->n_in, 1, a, L->n_in, ld, b0,
                      ld - b0 < ST_FEW_SLICE ? ld - b0 : ST_FEW_SLICE);
        return;
    }
    /* z NULL or mask NULL with dp: rows go through a thread's scratch, so
     * the pass writes a_out alone (a row's z and mask stay in L1) */
    if (L->dense) { /* Z (O, ld) = W^T (O, I) A (I, ld), four output rows at a time */
        const int zrows = z ? 0 : 4, mrow = dp && !mask ? 4 : 0;
#pragma omp parallel
        {
            float *scr = forward_scratch(zrows, mrow, ld);
#pragma omp for schedule(dynamic, 1)
            for (int32_t o = 0; o < L->n_out; o += 4) {
                const int nr = L->n_out - o < 4 ? L->n_out - o : 4;
                float *zr = z ? z + (int64_t)o * ld : scr;
                dense_block4(zr, L->bias, o, nr, L->w, L->n_in, 1, a, L->n_in, ld);
                finish_rows(o, o + nr, zr, a_out, act, hidden, dp, mask,
                            mrow ? scr + (size_t)zrows * ld : NULL, ld);
            }
            free(scr);
        }
        return;
    }
    int rb = 1;
    blk_rows_fn fn = blk_kernel(L->bi, L->bo, 0, ld, &rb);
    /* gr block rows at a time (16 output rows) where a row's mask takes
     * fewer than 16 Philox blocks (batch < 128): their masks are drawn in
     * full 16-block calls (batch 8: one call for 16 rows, not one for each
     * row computing 8 blocks for the 1 it uses) */
    const int gr = dp && dropout_packs_rows(dp, ld) ? (16 / L->bo > 0 ? 16 / L->bo : 1) : 1;
    const int zrows = z ? 0 : L->bo * gr, mrow = dp && !mask ? L->bo * gr : 0;
    const int32_t ngrp = (L->nbr + gr - 1) / gr;
    const int ch = (dyn_chunk(L->nbr) + gr - 1) / gr,
              pf = gather_prefetch(L->n_in, ld, L->bi == 1 ? 2 : 3);
#pragma omp parallel
    {
        float *scr = forward_scratch(zrows, mrow, ld);
#pragma omp for schedule(dynamic, ch)
        for (int32_t G = 0; G < ngrp; G++) {
            const int32_t R0 = G * gr, R1 = R0 + gr < L->nbr ? R0 + gr : L->nbr;
            const int64_t o0 = (int64_t)R0 * L->bo;
            float *zr = z ? z + o0 * ld : scr;
            for (int32_t R = R0; R < R1; R++)
                forward_block_row(L, a, zr + (int64_t)(R - R0) * L->bo * ld, ld, R, fn, rb, pf);
            finish_rows(o0, (int64_t)R1 * L->bo, zr, a_out, act, hidden, dp, mask,
                        mrow ? scr + (size_t)zrows * ld : NULL, ld);
        }
        free(scr);
    }
}

void cpu_model_forward(const st_model *m, st_activation act, float *const *z, float *const *a,
                       float *const *mask, int ld)
{
    for (int l = 0; l < m->n_layers; l++) {
        const int hid = l + 1 < m->n_layers;
        cpu_layer_forward_act(&m->layers[l], a[l], z[l + 1], hid ? a[l + 1] : NULL, act, l + 1,
                              NULL, hid && mask ? mask[l + 1] : NULL, ld);
    }
}

float st_activation_value(st_activation act, int hidden, float z)
{
    switch (act) {
    case ST_ACT_RELU: return z > 0.0f ? z : 0.0f;
    case ST_ACT_ALLRELU:
        return z > 0.0f ? z : ((hidden & 1) ? -ST_ALLRELU_ALPHA : ST_ALLRELU_ALPHA) * z;
    case ST_ACT_SIGMOID: return 1.0f / (1.0f + expf(-z));
    case ST_ACT_TANH: return tanhf(z);
    default: return z;
    }
}

float st_activation_grad(st_activation act, int hidden, float z)
{
    switch (act) {
    case ST_ACT_RELU: return z > 0.0f ? 1.0f : 0.0f;
    case ST_ACT_ALLRELU: return z > 0.0f ? 1.0f : ((hidden & 1) ? -ST_ALLRELU_ALPHA : ST_ALLRELU_ALPHA);
    case ST_ACT_SIGMOID: {
        float s = 1.0f / (1.0f + expf(-z));
        return s * (1.0f - s);
    }
    case ST_ACT_TANH: {
        float t = tanhf(z);
        return 1.0f - t * t;
    }
    default: return 1.0f;
    }
}

void cpu_activation_forward(st_activation act, int hidden, const float *z, const float *mask,
                            float *a, int64_t n, int ld)
{
    int64_t total = n * ld;
    if (act == ST_ACT_RELU && mask) { /* the common cases, kept branch-free */
#pragma omp parallel for simd schedule(static)
        for (int64_t e = 0; e < total; e++)
            a[e] = (z[e] > 0.0f ? z[e] : 0.0f) * mask[e];
        return;
    }
    if (act == ST_ACT_RELU) {
#pragma omp parallel for simd schedule(static)
        for (int64_t e = 0; e < total; e++)
            a[e] = z[e] > 0.0f ? z[e] : 0.0f;
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t e = 0; e < total; e++)
        a[e] = st_activation_value(act, hidden, z[e]) * (mask ? mask[e] : 1.0f);
}

void cpu_softmax_xent(const float *z, const int32_t *y, int K, int B, int ld, float *delta,
                      double *loss_sum, int64_t *correct)
{
    cpu_softmax_xent_scaled(z, y, K, B, ld, B, delta, loss_sum, correct);
}

void cpu_softmax_xent_scaled(const float *z, const int32_t *y, int K, int B, int ld, int scale_n,
                             float *delta, double *loss_sum, int64_t *correct)
{
    double loss = 0.0;
    int64_t ok = 0;
    for (int b = 0; b < B; b++) {
        float zmax = z[b];
        int arg = 0;
        for (int c = 1; c < K; c++)
            if (z[(int64_t)c * ld + b] > zmax) {
                zmax = z[(int64_t)c * ld + b];
                arg = c;
            }
        double sum = 0.0;
        for (int c = 0; c < K; c++)
            sum += exp((double)(z[(int64_t)c * ld + b] - zmax));
        double lse = log(sum) + zmax;
        loss += lse - (double)z[(int64_t)y[b] * ld + b];
        ok += (arg == y[b]);
        if (delta)
            for (int c = 0; c < K; c++) {
                double pc = exp((double)z[(int64_t)c * ld + b] - lse);
                delta[(int64_t)c * ld + b] = (float)((pc - (c == y[b])) / scale_n);
            }
    }
    if (delta)
        for (int c = 0; c < K; c++)
            for (int b = B; b < ld; b++)
                delta[(int64_t)c * ld + b] = 0.0f;
    *loss_sum += loss;
    *correct += ok;
}

/* delta_in[i, :] *= f'(z_in[i, :]) * mask_in[i, :] for one row. */
static inline void scale_by_grad(float *restrict d, const float *restrict z,
                                 const float *restrict mask, st_activation act, int hidden,
                                 int ld)
{
    if (act == ST_ACT_RELU) {
#pragma omp simd
        for (int b = 0; b < ld; b++)
            d[b] *= (z[b] > 0.0f ? 1.0f : 0.0f) * (mask ? mask[b] : 1.0f);
        return;
    }
    for (int b = 0; b < ld; b++)
        d[b] *= st_activation_grad(act, hidden, z[b]) * (mask ? mask[b] : 1.0f);
}

/* Where f'(z_in) mask_in comes from: z_in and mask_in, or (a_in not NULL)
 * a ReLU layer's activation and its keep factor. */
typedef struct {
    const float *z, *mask, *a;
    float keep;
    st_activation act;
    int hidden;
} grad_src;

/* z_in not NULL: f' of act at hidden_in and mask_in; NULL: a ReLU layer,
 * from a_in and keep. */
static grad_src make_src(const float *a_in, const float *z_in, const float *mask_in,
                         st_activation act, int hidden_in, float keep)
{
    if (!z_in) /* a ReLU layer: f' and the mask from a_in and keep */
        return (grad_src){NULL, NULL, a_in, keep, ST_ACT_RELU, 0};
    return (grad_src){z_in, mask_in, NULL, 1.0f, act, hidden_in};
}

/* Row i of delta_in times its factor. */
static inline void scale_row(float *restrict d, const grad_src *g, int64_t i, int ld)
{
    if (g->a) {
        const float *restrict a = g->a + i * ld;
        const float k = g->keep;
#pragma omp simd
        for (int b = 0; b < ld; b++)
            d[b] *= a[b] > 0.0f ? k : 0.0f;
        return;
    }
    scale_by_grad(d, g->z + i * ld, g->mask ? g->mask + i * ld : NULL, g->act, g->hidden, ld);
}

static void backward_delta(const st_layer *L, const float *delta_out, const grad_src *g,
                           float *delta_in, int ld);

void cpu_layer_backward_delta(const st_layer *L, const float *delta_out, const float *z_in,
                              const float *mask_in, st_activation act, int hidden_in,
                              float *delta_in, int ld)
{
    const grad_src g = make_src(NULL, z_in, mask_in, act, hidden_in, 1.0f);
    backward_delta(L, delta_out, &g, delta_in, ld);
}

void cpu_layer_backward_delta_relu(const st_layer *L, const float *delta_out, const float *a_in,
                                   float keep, float *delta_in, int ld)
{
    const grad_src g = make_src(a_in, NULL, NULL, ST_ACT_RELU, 0, keep);
    backward_delta(L, delta_out, &g, delta_in, ld);
}

static void backward_delta(const st_layer *L, const float *delta_out, const grad_src *g,
                           float *delta_in, int ld)
{
    if (L->dense) { /* delta_in (I, ld) = W (I, O) delta_out (O, ld), four input rows at a time */
#pragma omp parallel for schedule(dynamic, 16)
        for (int32_t i0 = 0; i0 < L->n_in; i0 += 4) {
            const int nr = L->n_in - i0 < 4 ? L->n_in - i0 : 4;
            dense_block4(delta_in + (int64_t)i0 * ld, NULL, i0, nr, L->w, 1, L->n_in, delta_out,
                         L->n_out, ld);
            for (int r = 0; r < nr; r++)
                scale_row(delta_in + ((int64_t)i0 + r) * ld, g, (int64_t)i0 + r, ld);
        }
        return;
    }
    int rb = 1;
    blk_rows_fn fn = blk_kernel(L->bi, L->bo, 1, ld, &rb);
    const int bi = L->bi, ch = dyn_chunk(L->nbc);
    const int pf = gather_prefetch(L->n_out, ld, L->bo == 1 ? 2 : 3);
#pragma omp parallel for schedule(dynamic, ch)
    for (int32_t C = 0; C < L->nbc; C++) {
        backward_block_col(L, delta_out, delta_in, ld, C, fn, rb, pf);
        for (int c = 0; c < bi; c++) {
            const int64_t i = (int64_t)C * bi + c;
            scale_row(delta_in + i * ld, g, i, ld);
        }
    }
}

/* Dense weight gradient G (O, I) = delta (O, ld) A^T: eight output rows
 * share each load of an input row; tasks are (8 outputs) x (1024 inputs). */
static void dense_grad(const st_layer *L, const float *a_in, const float *delta_out, int ld,
                       float *gw)
{
    const int32_t I = L->n_in, O = L->n_out;
    const int64_t oblocks = (O + 7) / 8, ichunks = ((int64_t)I + 1023) / 1024;
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t task = 0; task < oblocks * ichunks; task++) {
        const int32_t o0 = (int32_t)(task / ichunks) * 8;
        const int32_t i0 = (int32_t)(task % ichunks) * 1024;
        const int32_t i1 = I - i0 < 1024 ? I : i0 + 1024;
        const int no = O - o0 < 8 ? O - o0 : 8;
        const float *rows[8];
        for (int j = 0; j < 8; j++) /* rows past no repeat the last; never stored */
            rows[j] = delta_out + (int64_t)(o0 + (j < no ? j : no - 1)) * ld;
        for (int32_t i = i0; i < i1; i++) { /* the last block: as few rows as it has */
            float g8[8];
            if (no <= 2)
                dots2(a_in + (int64_t)i * ld, rows, ld, g8);
            else if (no <= 4)
                dots4(a_in + (int64_t)i * ld, rows, ld, g8);
            else
                dots8(a_in + (int64_t)i * ld, rows, ld, g8);
            for (int j = 0; j < no; j++)
                gw[(int64_t)(o0 + j) * I + i] = g8[j];
        }
    }
}

/* Sparse layer: gradients of every block row into sink s, the bias
 * gradient (row sums) into gb or, fused, its momentum step. */
static void sparse_grad(const st_layer *L, const float *a_in, const float *delta_out, int ld,
                        const grad_sink *s, float *gb)
{
    const int bo = L->bo, ch = dyn_chunk(L->nbr), pf = gather_prefetch(L->n_in, ld, 3);
    float *vb = L->vbias, *bias = L->bias;
#pragma omp parallel for schedule(dynamic, ch)
    for (int32_t R = 0; R < L->nbr; R++) {
        for (int r = 0; r < bo; r++) {
            const int64_t o = (int64_t)R * bo + r;
            const float g = row_sum(delta_out + o * ld, ld);
            if (gb)
                gb[o] = g;
            else
                momentum_step(bias + o, vb + o, g, s->lr, s->mu, 0.0f);
        }
        sddmm_block_row(L, a_in, delta_out, ld, R, s, pf);
    }
}

void cpu_layer_grad(const st_layer *L, const float *a_in, const float *delta_out, int ld,
                    float *gw, float *gb)
{
    if (L->dense) {
#pragma omp parallel for schedule(static)
        for (int32_t o = 0; o < L->n_out; o++)
            gb[o] = row_sum(delta_out + (int64_t)o * ld, ld);
        dense_grad(L, a_in, delta_out, ld, gw);
        return;
    }
    grad_sink s = {gw, NULL, NULL, 0, 0, 0};
    sparse_grad(L, a_in, delta_out, ld, &s, gb);
}

void cpu_layer_grad_update(st_layer *L, const float *a_in, const float *delta_out, int ld,
                           float lr, float mu, float wd, float *scratch_gw, float *scratch_gb)
{
    if (L->dense) {
        cpu_layer_grad(L, a_in, delta_out, ld, scratch_gw, scratch_gb);
        cpu_layer_update(L, scratch_gw, scratch_gb, lr, mu, wd);
        return;
    }
    grad_sink s = {NULL, L->w, L->v, lr, mu, wd};
    sparse_grad(L, a_in, delta_out, ld, &s, NULL);
}

/* Backward delta and weight gradient in one pass (m = 1 hidden layers).
 * The backward delta of input row i gathers the delta rows of its outputs
 * r (through the transposed index); the SDDMM's gradient of weight (r, i)
 * is the dot product of that same delta row with a_in row i. So the pass
 * that gathers delta row r for the backward also sums the gradient, and
 * the SDDMM's own gather of a_in rows (512 bytes a connection at batch
 * 128, from L3 or memory once a layer is wider than L2) is gone; the
 * gradients are stored where their weights are (the update follows the
 * pass, which reads the weights). Bits: delta_in is the backward's chain of
 * FMAs (entries in order, one 512-bit accumulator per 16 columns, a
 * 256-bit one for a last 8); each
 * gradient is sd_n8_1x1's chain (8-column pieces in order from 0, then
 * reduce8), so the results equal cpu_layer_backward_delta* followed by
 * cpu_layer_grad or cpu_layer_grad_update bit for bit (tests/test_core.c).
 * One thread a row, as everywhere: the same bits for any thread count.
 * 784-3000x3-10 at m = 1, one thread, batch 128: a training step 6.0-6.4 ->
 * 5.2-5.4 ms (the two hidden layers' backward and SDDMM 3.7 -> 2.7 ms);
 * 784-300k-300k-10: 1.19 -> 0.98 s. */
#if defined(__AVX512F__) && defined(__AVX512DQ__)
#define ST_FUSED_BW 1
/* One input row: NV 512-bit vectors and TL 256-bit ones (ld = 16 NV + 8
 * TL, TL 0 or 1), accumulators in registers. */
#define ST_FUSED_COL(NAME, NV, TL)                                                         \
    static void NAME(float *restrict din, const float *restrict ai,                        \
                     const float *restrict delta_out, const int32_t *restrict trow,         \
                     const int32_t *restrict tblk, int64_t j0, int64_t j1,                  \
                     const float *restrict w, float *restrict gw, int pf)                   \
    {                                                                                      \
        const int ld = 16 * NV + 8 * TL;                                                   \
        __m512 acc[NV + 1];                                                                \
        v8 acct = {0};                                                                     \
        for (int v = 0; v < NV; v++)                                                       \
            acc[v] = _mm512_setzero_ps();                                                  \
        for (int64_t j = j0; j < j1; j += 8) {                                             \
            const int nn = j1 - j < 8 ? (int)(j1 - j) : 8;                                 \
            v8 dot[8] = {{0}};                                                             \
            for (int n = 0; n < nn; n++) {                                                 \
                const float *x = delta_out + (int64_t)trow[j + n] * ld;                    \
                if (pf) { /* the row of the entry ST_PF_AHEAD on (see gather_prefetch) */  \
                    const int64_t kp = j + n + ST_PF_AHEAD < j1 ? j + n + ST_PF_AHEAD : j1 - 1; \
                    const char *px = (const char *)(delta_out + (int64_t)trow[kp] * ld);   \
                    for (int v = 0; v < NV + TL; v++)                                      \
                        st_prefetch(px + 64 * v);                                          \
                }                                                                          \
                const __m512 wv = _mm512_set1_ps(w[tblk[j + n]]);                          \
                v8 d = dot[n];                                                             \
                for (int v = 0; v < NV; v++) {                                             \
                    const __m512 xv = _mm512_loadu_ps(x + 16 * v);                         \
                    acc[v] = _mm512_fmadd_ps(wv, xv, acc[v]);                              \
                    d = fma8((v8)_mm512_castps512_ps256(xv), ld8(ai + 16 * v), d);         \
                    d = fma8((v8)_mm512_extractf32x8_ps(xv, 1), ld8(ai + 16 * v + 8), d);  \
                }                                                                          \
                if (TL) { /* the last 8 columns */                                         \
                    const v8 xt = ld8(x + 16 * NV);                                        \
                    acct = fma8((v8)_mm512_castps512_ps256(wv), xt, acct);                 \
                    d = fma8(xt, ld8(ai + 16 * NV), d);                                    \
                }                                                                          \
                dot[n] = d;                                                                \
            }                                                                              \
            float g[8];                                                                    \
            reduce8(dot, g);                                                               \
            for (int n = 0; n < nn; n++)                                                   \
                gw[tblk[j + n]] = g[n];                                                    \
        }                                                                                  \
        for (int v = 0; v < NV; v++)                                                       \
            _mm512_storeu_ps(din + 16 * v, acc[v]);                                        \
        if (TL)                                                                            \
            st8(din + 16 * NV, acct);                                                      \
    }
ST_FUSED_COL(fused_col_1, 0, 1) /* ld 8 */
ST_FUSED_COL(fused_col_2, 1, 0)
ST_FUSED_COL(fused_col_3, 1, 1)
ST_FUSED_COL(fused_col_4, 2, 0)
ST_FUSED_COL(fused_col_5, 2, 1)
ST_FUSED_COL(fused_col_6, 3, 0)
ST_FUSED_COL(fused_col_7, 3, 1)
ST_FUSED_COL(fused_col_8, 4, 0)
ST_FUSED_COL(fused_col_9, 4, 1)
ST_FUSED_COL(fused_col_10, 5, 0)
ST_FUSED_COL(fused_col_11, 5, 1)
ST_FUSED_COL(fused_col_12, 6, 0)
ST_FUSED_COL(fused_col_13, 6, 1)
ST_FUSED_COL(fused_col_14, 7, 0)
ST_FUSED_COL(fused_col_15, 7, 1)
ST_FUSED_COL(fused_col_16, 8, 0) /* ld 128 */
typedef void (*fused_col_fn)(float *, const float *, const float *, const int32_t *,
                             const int32_t *, int64_t, int64_t, const float *, float *, int);
#else
#define ST_FUSED_BW 0
#endif

/* Whether backward_grad takes the fused pass for L at ld. */
static int fused_bw_ok(const st_layer *L, int ld)
{
    return ST_FUSED_BW && !L->dense && L->bi == 1 && L->bo == 1 && !st_generic_only &&
           ld % 8 == 0 && ld <= 128;
}

/* backward_delta, then the gradients into gw and gb (cpu_layer_grad):
 * one pass where fused_bw_ok, else the two. */
static void backward_grad(const st_layer *L, const float *delta_out, const grad_src *g,
                          const float *a_in, float *delta_in, int ld, float *gw, float *gb)
{
    if (!fused_bw_ok(L, ld)) {
        backward_delta(L, delta_out, g, delta_in, ld);
        cpu_layer_grad(L, a_in, delta_out, ld, gw, gb);
        return;
    }
#if ST_FUSED_BW
    static const fused_col_fn fns[16] = {
        fused_col_1,  fused_col_2,  fused_col_3,  fused_col_4,  fused_col_5,  fused_col_6,
        fused_col_7,  fused_col_8,  fused_col_9,  fused_col_10, fused_col_11, fused_col_12,
        fused_col_13, fused_col_14, fused_col_15, fused_col_16}; /* ld / 8 - 1 */
    const fused_col_fn fn = fns[ld / 8 - 1];
    const int pf = gather_prefetch(L->n_out, ld, 2), ch = dyn_chunk(L->n_in);
#pragma omp parallel
    {
#pragma omp for schedule(static) nowait
        for (int32_t o = 0; o < L->n_out; o++)
            gb[o] = row_sum(delta_out + (int64_t)o * ld, ld);
#pragma omp for schedule(dynamic, ch)
        for (int32_t i = 0; i < L->n_in; i++) {
            fn(delta_in + (int64_t)i * ld, a_in + (int64_t)i * ld, delta_out, L->t_row, L->t_blk,
               L->t_ptr[i], L->t_ptr[i + 1], L->w, gw, pf);
            scale_row(delta_in + (int64_t)i * ld, g, i, ld);
        }
    }
#endif
}

void cpu_layer_backward_grad(const st_layer *L, const float *delta_out, const float *a_in,
                             const float *z_in, const float *mask_in, st_activation act,
                             int hidden_in, float keep, float *delta_in, int ld, float *gw,
                             float *gb)
{
    const grad_src g = make_src(a_in, z_in, mask_in, act, hidden_in, keep);
    backward_grad(L, delta_out, &g, a_in, delta_in, ld, gw, gb);
}

void cpu_layer_backward_grad_update(st_layer *L, const float *delta_out, const float *a_in,
                                    const float *z_in, const float *mask_in,
                                    st_activation act, int hidden_in, float keep,
                                    float *delta_in, int ld, float lr, float mu, float wd,
                                    float *scratch_gw, float *scratch_gb)
{
    const grad_src g = make_src(a_in, z_in, mask_in, act, hidden_in, keep);
    if (fused_bw_ok(L, ld)) {
        /* the gradients stored (a store where they fall), then one pass of
         * momentum steps in storage order: measured faster than each weight's
         * step where its gradient is summed (the momentum is scattered), 5.4
         * against 5.6 ms a step at 784-3000x3-10, 0.98 against 1.09 s at
         * 784-300k-300k-10 */
        backward_grad(L, delta_out, &g, a_in, delta_in, ld, scratch_gw, scratch_gb);
        cpu_layer_update(L, scratch_gw, scratch_gb, lr, mu, wd);
        return;
    }
    backward_delta(L, delta_out, &g, delta_in, ld);
    cpu_layer_grad_update(L, a_in, delta_out, ld, lr, mu, wd, scratch_gw, scratch_gb);
}

void cpu_layer_update(st_layer *L, const float *gw, const float *gb, float lr, float mu,
                      float wd)
{
    int64_t nnz = layer_nnz(L);
    float *restrict w = L->w, *restrict v = L->v;
#pragma omp parallel for schedule(static)
    for (int64_t e = 0; e < nnz; e++)
        momentum_step(w + e, v + e, gw[e], lr, mu, wd);
    for (int32_t o = 0; o < L->n_out; o++)
        momentum_step(L->bias + o, L->vbias + o, gb[o], lr, mu, 0.0f);
}

#ifdef __AVX2__
/* In-place transpose of an 8 x 8 float matrix held as 8 row vectors. */
static inline void transpose8x8(__m256 r[8])
{
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}
#endif

/* Mask values of nj <= 8 groups of 8 columns from the Philox outputs u
 * (u[w * us + j]: word w of group j): column l of group j takes the 16-bit
 * half l % 2 (low first) of word l / 2 and is kept when it is >= thresh. */
static inline void dropout_groups(const uint32_t *u, int us, uint32_t thresh, float keep,
                                  float *m, int nj)
{
#ifdef __AVX2__
    /* lane j holds group j: compare all 64 halves, then transpose to rows */
    __m256 v[8];
    const __m256i t = _mm256_set1_epi32((int)thresh - 1);
    const __m256 kv = _mm256_set1_ps(keep);
    for (int w = 0; w < 4; w++) {
        __m256i x = _mm256_loadu_si256((const __m256i *)(u + w * us));
        __m256i lo = _mm256_and_si256(x, _mm256_set1_epi32(0xFFFF));
        __m256i hi = _mm256_srli_epi32(x, 16);
        v[2 * w] = _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(lo, t)), kv);
        v[2 * w + 1] = _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(hi, t)), kv);
    }
    transpose8x8(v);
    if (nj == 8) { /* spelt out: a loop of nj stores became a byte copy from the stack */
        _mm256_storeu_ps(m, v[0]);
        _mm256_storeu_ps(m + 8, v[1]);
        _mm256_storeu_ps(m + 16, v[2]);
        _mm256_storeu_ps(m + 24, v[3]);
        _mm256_storeu_ps(m + 32, v[4]);
        _mm256_storeu_ps(m + 40, v[5]);
        _mm256_storeu_ps(m + 48, v[6]);
        _mm256_storeu_ps(m + 56, v[7]);
    } else {
        for (int j = 0; j < nj; j++)
            _mm256_storeu_ps(m + j * 8, v[j]);
    }
#else
    for (int j = 0; j < nj; j++)
        for (int l = 0; l < 8; l++) {
            uint32_t h = (u[(l >> 1) * us + j] >> ((l & 1) * 16)) & 0xFFFFu;
            m[j * 8 + l] = (float)(h >= thresh) * keep; /* branch-free: drops are random */
        }
#endif
}

/* Mask row o of hidden layer `hidden` for columns col0 .. col0 + B - 1 of
 * the batch (column j of m is batch column col0 + j); padding j >= B is 0.
 * Group g of 8 batch columns takes the Philox block with counter (o,
 * batch_index << 9 | g, epoch, stream | hidden), 16 groups a call: the same
 * mask whatever the number of groups drawn at once. */
static void dropout_row(const cpu_dropout_spec *dp, int hidden, int64_t o, float *m, int ld)
{
    enum { NG = 16 };
    const uint32_t thresh = (uint32_t)lrintf(dp->rate * 65536.0f);
    const float keep = cpu_dropout_keep(dp->rate);
    const int col0 = dp->col0, B = dp->B;
    const int gfirst = col0 / 8, skip = col0 % 8;
    const int glast = (col0 + (B > 0 ? B : 1) - 1) / 8; /* groups gfirst .. glast */
    float tmp[8 * 8];
    for (int g0 = gfirst; g0 <= glast; g0 += NG) {
        const int ng = glast + 1 - g0 < NG ? glast + 1 - g0 : NG;
        uint32_t u[4][NG];
        for (int j = 0; j < NG; j++) {
            u[0][j] = (uint32_t)o;
            u[1][j] = ((uint32_t)dp->batch_index << 9) | (uint32_t)(g0 + j);
            u[2][j] = (uint32_t)dp->epoch;
            u[3][j] = ((uint32_t)ST_STREAM_DROPOUT << 24) | ((uint32_t)hidden & 0xFFFFFFu);
        }
        st_philox4x32_10_xn(&u[0][0], NG, ng > 8 ? 2 : 1, (uint32_t)dp->seed,
                            (uint32_t)(dp->seed >> 32));
        for (int h = 0; h < ng; h += 8) { /* 8 groups a transpose */
            const int nj = ng - h < 8 ? ng - h : 8;
            const int64_t first = (int64_t)(g0 + h - gfirst) * 8 - skip; /* m index of tmp[0] */
            if (skip == 0 && first + nj * 8 <= ld) {
                dropout_groups(&u[0][h], NG, thresh, keep, m + first, nj);
            } else {
                dropout_groups(&u[0][h], NG, thresh, keep, tmp, nj);
                for (int t = 0; t < nj * 8; t++)
                    if (first + t >= 0 && first + t < ld)
                        m[first + t] = tmp[t];
            }
        }
    }
    for (int b = B; b < ld; b++)
        m[b] = 0.0f;
}

/* Whether a row's mask takes fewer than 16 Philox blocks (groups of 8
 * columns) that start at a group boundary and fit ld, so that
 * dropout_rows packs the groups of several rows into each call. */
static int dropout_packs_rows(const cpu_dropout_spec *dp, int ld)
{
    const int gfirst = dp->col0 / 8, glast = (dp->col0 + (dp->B > 0 ? dp->B : 1) - 1) / 8;
    const int ng = glast - gfirst + 1;
    return dp->col0 % 8 == 0 && ng < 16 && ng * 8 <= ld;
}

/* Masks of rows o0 .. o0 + nr - 1 (row r's at m + r ld): dropout_row's
 * values, row by row. Where a row takes fewer than 16 Philox blocks, the
 * blocks of consecutive rows share the calls, 16 at a time (the counters
 * say which row and group a block is for, so the values do not depend on
 * how they are grouped). */
static void dropout_rows(const cpu_dropout_spec *dp, int hidden, int64_t o0, int nr, float *m,
                         int ld)
{
    if (nr <= 1 || !dropout_packs_rows(dp, ld)) {
        for (int r = 0; r < nr; r++)
            dropout_row(dp, hidden, o0 + r, m + (int64_t)r * ld, ld);
        return;
    }
    enum { NG = 16 };
    const uint32_t thresh = (uint32_t)lrintf(dp->rate * 65536.0f);
    const float keep = cpu_dropout_keep(dp->rate);
    const int gfirst = dp->col0 / 8, B = dp->B;
    const int ng = (dp->col0 + (B > 0 ? B : 1) - 1) / 8 - gfirst + 1;
    const int lanes = nr * ng;
    for (int l0 = 0; l0 < lanes; l0 += NG) {
        const int nl = lanes - l0 < NG ? lanes - l0 : NG;
        uint32_t u[4][NG];
        for (int j = 0; j < NG; j++) {
            const int l = l0 + (j < nl ? j : nl - 1); /* unused lanes repeat the last */
            u[0][j] = (uint32_t)(o0 + l / ng);
            u[1][j] = ((uint32_t)dp->batch_index << 9) | (uint32_t)(gfirst + l % ng);
            u[2][j] = (uint32_t)dp->epoch;
            u[3][j] = ((uint32_t)ST_STREAM_DROPOUT << 24) | ((uint32_t)hidden & 0xFFFFFFu);
        }
        st_philox4x32_10_xn(&u[0][0], NG, nl > 8 ? 2 : 1, (uint32_t)dp->seed,
                            (uint32_t)(dp->seed >> 32));
        for (int h = 0; h < nl; h += 8) {
            const int nj = nl - h < 8 ? nl - h : 8;
            float tmp[8 * 8];
            dropout_groups(&u[0][h], NG, thresh, keep, tmp, nj);
            for (int j = 0; j < nj; j++) {
                const int l = l0 + h + j;
                memcpy(m + (int64_t)(l / ng) * ld + (l % ng) * 8, tmp + j * 8, 8 * sizeof(float));
            }
        }
    }
    for (int r = 0; r < nr; r++)
        for (int b = B; b < ld; b++)
            m[(int64_t)r * ld + b] = 0.0f;
}

float cpu_dropout_keep(float rate) { return 1.0f / (1.0f - rate); }

void cpu_dropout_mask_at(uint64_t seed, int hidden, int epoch, int batch_index, float rate,
                         float *mask, int64_t n, int col0, int B, int ld)
{
    const cpu_dropout_spec dp = {seed, epoch, batch_index, rate, col0, B};
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < n; o++)
        dropout_row(&dp, hidden, o, mask + o * ld, ld);
}

void cpu_dropout_mask(uint64_t seed, int hidden, int epoch, int batch_index, float rate,
                      float *mask, int64_t n, int B, int ld)
{
    cpu_dropout_mask_at(seed, hidden, epoch, batch_index, rate, mask, n, 0, B, ld);
}
