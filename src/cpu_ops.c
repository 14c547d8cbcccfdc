/* cpu_ops.c: forward product, activations, softmax cross-entropy, motif-wise
 * backward delta, SDDMM weight gradient and momentum update on the CPU.
 *
 * Legend: B batch, ld batch stride (multiple of 8), I / O layer in / out
 * features, bi x bo block shape, nb blocks. Activations are feature-major
 * (n, ld). Each output row (forward, gradient) or input row (backward) is
 * computed by one thread in a fixed order, so results are bitwise identical
 * for any thread count. The inner loops run over the batch and vectorise. */
#include "cpu_ops.h"

#include <math.h>
#include <string.h>

#include "philox.h"

/* Batch-wise vectors (GCC/Clang vector extensions; plain C elsewhere). The
 * batch loop is tiled: 32 columns (four vectors) accumulate in registers
 * across a row's connections, then 8 at a time for the rest of ld. */
typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4)));

static inline v8 ld8(const float *p) { return *(const v8u *)p; }
static inline void st8(float *p, v8 x) { *(v8u *)p = x; }

static inline float hsum8(v8 x)
{
    return ((x[0] + x[4]) + (x[1] + x[5])) + ((x[2] + x[6]) + (x[3] + x[7]));
}

/* sum_b x[b] y[b] over ld (a multiple of 8). */
static inline float dot_row(const float *restrict x, const float *restrict y, int ld)
{
    v8 s0 = {0}, s1 = {0};
    int b = 0;
    for (; b + 16 <= ld; b += 16) {
        s0 += ld8(x + b) * ld8(y + b);
        s1 += ld8(x + b + 8) * ld8(y + b + 8);
    }
    for (; b < ld; b += 8)
        s0 += ld8(x + b) * ld8(y + b);
    return hsum8(s0 + s1);
}

/* out[j] = sum_b d[b] rows[j][b] for 8 rows: the SDDMM inner step, with d
 * loaded once per 8 columns and one transposing reduction for all 8 sums. */
static inline void dots8(const float *restrict d, const float *const rows[8], int ld,
                         float out[8])
{
    v8 acc[8] = {{0}};
    for (int b = 0; b < ld; b += 8) {
        v8 dv = ld8(d + b);
        for (int j = 0; j < 8; j++)
            acc[j] += dv * ld8(rows[j] + b);
    }
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
            acc[v] = (v8){0} + init;                                                     \
        for (int64_t k = g->k0; k < g->k1; k++) {                                        \
            const float *x = g->rows + (int64_t)g->ri[k] * g->rstride + b0;              \
            for (int c = 0; c < g->inner; c++, x += ld) {                                \
                const float w = glw(g, k, c);                                            \
                for (int v = 0; v < NV; v++)                                             \
                    acc[v] += w * ld8(x + 8 * v);                                        \
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
static void dense_block4(float *out, const float *init, int64_t r0, int nr, const float *w,
                         int64_t rs, int64_t is, const float *x, int64_t n, int ld)
{
    const float *wr[4];
    for (int r = 0; r < 4; r++) /* rows past nr repeat the last one; never stored */
        wr[r] = w + (r0 + (r < nr ? r : nr - 1)) * rs;
    for (int b0 = 0; b0 < ld; b0 += 16) {
        const int two = b0 + 16 <= ld; /* ld is a multiple of 8 */
        v8 acc[4][2];
        for (int r = 0; r < 4; r++) {
            float v = init ? init[r0 + (r < nr ? r : nr - 1)] : 0.0f;
            acc[r][0] = (v8){0} + v;
            acc[r][1] = acc[r][0];
        }
        for (int64_t i = 0; i < n; i++) {
            const float *xi = x + i * ld + b0;
            v8 x0 = ld8(xi), x1 = two ? ld8(xi + 8) : x0;
            for (int r = 0; r < 4; r++) {
                const float wv = wr[r][i * is];
                acc[r][0] += wv * x0;
                acc[r][1] += wv * x1;
            }
        }
        for (int r = 0; r < nr; r++) {
            st8(out + (r0 + r) * ld + b0, acc[r][0]);
            if (two)
                st8(out + (r0 + r) * ld + b0 + 8, acc[r][1]);
        }
    }
}

void cpu_layer_forward(const st_layer *L, const float *a, float *z, int ld)
{
    if (L->dense) { /* Z (O, ld) = W^T (O, I) A (I, ld), four output rows at a time */
#pragma omp parallel for schedule(dynamic, 1)
        for (int32_t o = 0; o < L->n_out; o += 4)
            dense_block4(z, L->bias, o, L->n_out - o < 4 ? L->n_out - o : 4, L->w, L->n_in, 1,
                         a, L->n_in, ld);
        return;
    }
    const int bi = L->bi, bo = L->bo, bs = bi * bo;
#pragma omp parallel for schedule(dynamic, 16)
    for (int32_t R = 0; R < L->nbr; R++)
        for (int r = 0; r < bo; r++) {
            int64_t o = (int64_t)R * bo + r;
            gather_list g = {L->w, NULL, bs, (int64_t)r * bi, a, L->col_idx, (int64_t)bi * ld,
                             L->row_ptr[R], L->row_ptr[R + 1], bi, 1};
            gather_axpy(z + o * ld, L->bias[o], &g, ld);
        }
}

void cpu_model_forward(const st_model *m, st_activation act, float *const *z, float *const *a,
                       float *const *mask, int ld)
{
    for (int l = 0; l < m->n_layers; l++) {
        const st_layer *L = &m->layers[l];
        cpu_layer_forward(L, a[l], z[l + 1], ld);
        if (l + 1 < m->n_layers)
            cpu_activation_forward(act, l + 1, z[l + 1], mask ? mask[l + 1] : NULL, a[l + 1],
                                   L->n_out, ld);
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
                delta[(int64_t)c * ld + b] = (float)((pc - (c == y[b])) / B);
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

void cpu_layer_backward_delta(const st_layer *L, const float *delta_out, const float *z_in,
                              const float *mask_in, st_activation act, int hidden_in,
                              float *delta_in, int ld)
{
    if (L->dense) { /* delta_in (I, ld) = W (I, O) delta_out (O, ld), four input rows at a time */
#pragma omp parallel for schedule(dynamic, 16)
        for (int32_t i0 = 0; i0 < L->n_in; i0 += 4) {
            const int nr = L->n_in - i0 < 4 ? L->n_in - i0 : 4;
            dense_block4(delta_in, NULL, i0, nr, L->w, 1, L->n_in, delta_out, L->n_out, ld);
            for (int r = 0; r < nr; r++) {
                int64_t i = (int64_t)i0 + r;
                scale_by_grad(delta_in + i * ld, z_in + i * ld,
                              mask_in ? mask_in + i * ld : NULL, act, hidden_in, ld);
            }
        }
        return;
    }
    const int bi = L->bi, bo = L->bo, bs = bi * bo;
#pragma omp parallel for schedule(dynamic, 16)
    for (int32_t C = 0; C < L->nbc; C++)
        for (int c = 0; c < bi; c++) {
            int64_t i = (int64_t)C * bi + c;
            float *di = delta_in + i * ld;
            /* entries: blocks of column C; within a block, the bo outputs r
             * (consecutive delta rows) with weights w[k*bs + r*bi + c] */
            gather_list g = {L->w, L->t_blk, bs, c, delta_out, L->t_row, (int64_t)bo * ld,
                             L->t_ptr[C], L->t_ptr[C + 1], bo, bi};
            gather_axpy(di, 0.0f, &g, ld);
            scale_by_grad(di, z_in + i * ld, mask_in ? mask_in + i * ld : NULL, act, hidden_in,
                          ld);
        }
}

void cpu_layer_grad(const st_layer *L, const float *a_in, const float *delta_out, int ld,
                    float *gw, float *gb)
{
#pragma omp parallel for schedule(static)
    for (int32_t o = 0; o < L->n_out; o++) {
        const float *d = delta_out + (int64_t)o * ld;
        float s = 0.0f;
        for (int b = 0; b < ld; b++)
            s += d[b];
        gb[o] = s;
    }
    if (L->dense) {
        /* G (O, I) = delta (O, ld) A^T: eight output rows share each load of an
         * input row; tasks are (8 outputs) x (1024 inputs) */
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
            for (int32_t i = i0; i < i1; i++) {
                float g8[8];
                dots8(a_in + (int64_t)i * ld, rows, ld, g8);
                for (int j = 0; j < no; j++)
                    gw[(int64_t)(o0 + j) * I + i] = g8[j];
            }
        }
        return;
    }
    const int bi = L->bi, bo = L->bo, bs = bi * bo;
    if (bs == 1) { /* plain CSR: eight connections of a row at a time */
#pragma omp parallel for schedule(dynamic, 16)
        for (int32_t o = 0; o < L->nbr; o++) {
            const float *d = delta_out + (int64_t)o * ld;
            int32_t k = L->row_ptr[o];
            const int32_t k1 = L->row_ptr[o + 1];
            for (; k + 8 <= k1; k += 8) {
                const float *rows[8];
                for (int j = 0; j < 8; j++)
                    rows[j] = a_in + (int64_t)L->col_idx[k + j] * ld;
                dots8(d, rows, ld, gw + k);
            }
            for (; k < k1; k++)
                gw[k] = dot_row(d, a_in + (int64_t)L->col_idx[k] * ld, ld);
        }
        return;
    }
#pragma omp parallel for schedule(dynamic, 16)
    for (int32_t R = 0; R < L->nbr; R++)
        for (int32_t k = L->row_ptr[R]; k < L->row_ptr[R + 1]; k++) {
            const float *ak = a_in + (int64_t)L->col_idx[k] * bi * ld;
            for (int r = 0; r < bo; r++) {
                const float *d = delta_out + ((int64_t)R * bo + r) * ld;
                for (int c = 0; c < bi; c++)
                    gw[(int64_t)k * bs + r * bi + c] = dot_row(d, ak + (int64_t)c * ld, ld);
            }
        }
}

void cpu_layer_update(st_layer *L, const float *gw, const float *gb, float lr, float mu,
                      float wd)
{
    int64_t nnz = layer_nnz(L);
    float *restrict w = L->w, *restrict v = L->v;
#pragma omp parallel for simd schedule(static)
    for (int64_t e = 0; e < nnz; e++) {
        v[e] = mu * v[e] - lr * (gw[e] + wd * w[e]);
        w[e] += v[e];
    }
    for (int32_t o = 0; o < L->n_out; o++) {
        L->vbias[o] = mu * L->vbias[o] - lr * gb[o];
        L->bias[o] += L->vbias[o];
    }
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
 * (u[w][j]: word w of group j): column l of group j takes the 16-bit half
 * l % 2 (low first) of word l / 2 and is kept when it is >= thresh. */
static inline void dropout_groups(uint32_t u[4][8], uint32_t thresh, float keep, float *m,
                                  int nj)
{
#ifdef __AVX2__
    /* lane j holds group j: compare all 64 halves, then transpose to rows */
    __m256 v[8];
    const __m256i t = _mm256_set1_epi32((int)thresh - 1);
    const __m256 kv = _mm256_set1_ps(keep);
    for (int w = 0; w < 4; w++) {
        __m256i x = _mm256_loadu_si256((const __m256i *)u[w]);
        __m256i lo = _mm256_and_si256(x, _mm256_set1_epi32(0xFFFF));
        __m256i hi = _mm256_srli_epi32(x, 16);
        v[2 * w] = _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(lo, t)), kv);
        v[2 * w + 1] = _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(hi, t)), kv);
    }
    transpose8x8(v);
    for (int j = 0; j < nj; j++)
        _mm256_storeu_ps(m + j * 8, v[j]);
#else
    for (int j = 0; j < nj; j++)
        for (int l = 0; l < 8; l++) {
            uint32_t h = (u[l >> 1][j] >> ((l & 1) * 16)) & 0xFFFFu;
            m[j * 8 + l] = (float)(h >= thresh) * keep; /* branch-free: drops are random */
        }
#endif
}

void cpu_dropout_mask(uint64_t seed, int hidden, int epoch, int batch_index, float rate,
                      float *mask, int64_t n, int B, int ld)
{
    const uint32_t thresh = (uint32_t)lrintf(rate * 65536.0f);
    const float keep = 1.0f / (1.0f - rate);
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < n; o++) {
        float *m = mask + o * ld;
        const int groups = ld / 8;
        for (int g0 = 0; g0 < groups; g0 += 8) {
            uint32_t u[4][8];
            for (int j = 0; j < 8; j++) {
                u[0][j] = (uint32_t)o;
                u[1][j] = ((uint32_t)batch_index << 9) | (uint32_t)(g0 + j);
                u[2][j] = (uint32_t)epoch;
                u[3][j] = ((uint32_t)ST_STREAM_DROPOUT << 24) | ((uint32_t)hidden & 0xFFFFFFu);
            }
            st_philox4x32_10_x8(u, (uint32_t)seed, (uint32_t)(seed >> 32));
            dropout_groups(u, thresh, keep, m + g0 * 8, groups - g0 < 8 ? groups - g0 : 8);
        }
        for (int b = B; b < ld; b++)
            m[b] = 0.0f;
    }
}
