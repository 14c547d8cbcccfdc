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

/* y[0..ld) += w * x[0..ld) */
static inline void axpy_row(float *restrict y, float w, const float *restrict x, int ld)
{
#pragma omp simd
    for (int b = 0; b < ld; b++)
        y[b] += w * x[b];
}

static inline float dot_row(const float *restrict x, const float *restrict y, int ld)
{
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int b = 0; b < ld; b++)
        s += x[b] * y[b];
    return s;
}

void cpu_layer_forward(const st_layer *L, const float *a, float *z, int ld)
{
    if (L->dense) {
#pragma omp parallel for schedule(static)
        for (int32_t o = 0; o < L->n_out; o++) {
            float *zo = z + (int64_t)o * ld;
            const float *wo = L->w + (int64_t)o * L->n_in;
            for (int b = 0; b < ld; b++)
                zo[b] = L->bias[o];
            for (int32_t i = 0; i < L->n_in; i++)
                axpy_row(zo, wo[i], a + (int64_t)i * ld, ld);
        }
        return;
    }
    const int bi = L->bi, bo = L->bo, bs = bi * bo;
#pragma omp parallel for schedule(dynamic, 16)
    for (int32_t R = 0; R < L->nbr; R++) {
        for (int r = 0; r < bo; r++) {
            int64_t o = (int64_t)R * bo + r;
            float *zo = z + o * ld;
            for (int b = 0; b < ld; b++)
                zo[b] = L->bias[o];
            for (int32_t k = L->row_ptr[R]; k < L->row_ptr[R + 1]; k++) {
                const float *wk = L->w + (int64_t)k * bs + r * bi;
                const float *ak = a + (int64_t)L->col_idx[k] * bi * ld;
                for (int c = 0; c < bi; c++)
                    axpy_row(zo, wk[c], ak + (int64_t)c * ld, ld);
            }
        }
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
    if (act == ST_ACT_RELU) { /* the common case, kept branch-free */
#pragma omp parallel for simd schedule(static)
        for (int64_t e = 0; e < total; e++)
            a[e] = (z[e] > 0.0f ? z[e] : 0.0f) * (mask ? mask[e] : 1.0f);
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
    if (L->dense) {
#pragma omp parallel for schedule(static)
        for (int32_t i = 0; i < L->n_in; i++) {
            float *di = delta_in + (int64_t)i * ld;
            memset(di, 0, sizeof(float) * (size_t)ld);
            for (int32_t o = 0; o < L->n_out; o++)
                axpy_row(di, L->w[(int64_t)o * L->n_in + i], delta_out + (int64_t)o * ld, ld);
            scale_by_grad(di, z_in + (int64_t)i * ld, mask_in ? mask_in + (int64_t)i * ld : NULL,
                          act, hidden_in, ld);
        }
        return;
    }
    const int bi = L->bi, bo = L->bo, bs = bi * bo;
#pragma omp parallel for schedule(dynamic, 16)
    for (int32_t C = 0; C < L->nbc; C++) {
        for (int c = 0; c < bi; c++) {
            int64_t i = (int64_t)C * bi + c;
            float *di = delta_in + i * ld;
            memset(di, 0, sizeof(float) * (size_t)ld);
            for (int32_t t = L->t_ptr[C]; t < L->t_ptr[C + 1]; t++) {
                const float *wk = L->w + (int64_t)L->t_blk[t] * bs + c;
                const float *dk = delta_out + (int64_t)L->t_row[t] * bo * ld;
                for (int r = 0; r < bo; r++)
                    axpy_row(di, wk[r * bi], dk + (int64_t)r * ld, ld);
            }
            scale_by_grad(di, z_in + i * ld, mask_in ? mask_in + i * ld : NULL, act, hidden_in,
                          ld);
        }
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
#pragma omp parallel for schedule(static)
        for (int32_t o = 0; o < L->n_out; o++) {
            const float *d = delta_out + (int64_t)o * ld;
            for (int32_t i = 0; i < L->n_in; i++)
                gw[(int64_t)o * L->n_in + i] = dot_row(d, a_in + (int64_t)i * ld, ld);
        }
        return;
    }
    const int bi = L->bi, bo = L->bo, bs = bi * bo;
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

void cpu_dropout_mask(uint64_t seed, int hidden, int epoch, int batch_index, int batch,
                      float rate, float *mask, int64_t n, int B, int ld)
{
    const uint32_t thresh = (uint32_t)lrintf(rate * 65536.0f);
    const float keep = 1.0f / (1.0f - rate);
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < n; o++) {
        float *m = mask + o * ld;
        int64_t e0 = o * batch;
        int b = 0;
        while (b < B) {
            int64_t e = e0 + b;
            uint64_t q = (uint64_t)e / 8;
            st_u32x4 u = st_rand(seed, ST_STREAM_DROPOUT, (uint32_t)hidden, (uint32_t)q,
                                 (uint32_t)batch_index, (uint32_t)epoch);
            for (int lane = (int)(e % 8); lane < 8 && b < B; lane++, b++) {
                uint32_t h = (u.v[lane >> 1] >> ((lane & 1) * 16)) & 0xFFFFu;
                m[b] = h < thresh ? 0.0f : keep;
            }
        }
        for (; b < ld; b++)
            m[b] = 0.0f;
    }
}
