/* gpu_ops.cu: the GPU backend's per-batch operators: batch gather, forward
 * product (cuSPARSE SpMM, the project's ROW and BLOCK kernels, cuBLAS for
 * dense layers), dropout mask, activations, softmax cross-entropy, backward
 * delta through the transposed index, SDDMM weight gradient fused with the
 * momentum / weight-decay update, bias gradient and update. Each kernel is
 * the twin of a CPU operator in src/cpu/cpu_ops.c (same definition, same
 * accumulation order where the kernel owns it: bias first, then blocks in
 * storage order, then the block's entries), checked against it by
 * tests/test_gpu.c and timed by tests/bench_gpu.c.
 *
 * Legend: B batch, ld batch stride (multiple of 8), I / O a layer's in / out
 * features, bi x bo block shape (bs = bi bo), nb blocks, nbr x nbc block
 * grid, K classes. Activations (n, ld) feature-major, device memory.
 * Columns are processed 128 at a time per warp: lane l owns columns
 * 4l .. 4l+3 of the chunk as a float4 (ld % 4 == 0 keeps them aligned and
 * a chunk's lanes either hold 4 columns or none).
 *
 * Variants:
 *   forward   CUSPARSE  cusparseSpMM, CSR (m = 1) or BSR (square blocks)
 *             ROW       one warp per output row and column chunk, any shape
 *             BLOCK<BI,BO> one warp per block row: the bo outputs share
 *                       each loaded input row (registers: bo float4)
 *             dense     cuBLAS sgemm on the row-major layout
 *   backward  ROW       one warp per input row: its blocks from the
 *                       transposed index, fused with f'(z) and the mask
 *             BLOCK<BI,BO> one warp per input motif (bi rows in registers)
 *             dense     cuBLAS sgemm, then the f' / mask scale
 *   SDDMM     ROW       one warp per block, one dot product per entry
 *             BLOCK<BI,BO> one warp per block, all bs dots at once
 *             dense     cuBLAS sgemm into a gradient buffer, then update
 * The kernel section comes first, the launchers after it. */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "gpu/gpu_check.h"
#include "gpu/gpu_ops.h"

#define ST_WARP 32
#define ST_CHUNK 128         /* columns per warp pass: 32 lanes x float4 */
#define ST_WARPS_PER_CTA 4   /* warps per thread block for row kernels  */
#define ST_EW_THREADS 256    /* threads per block for element-wise ops  */

/* ========================================================================
 * Kernels
 * ====================================================================== */
namespace {

__device__ __forceinline__ float4 ld4(const float *p)
{
    return *reinterpret_cast<const float4 *>(p);
}

__device__ __forceinline__ void st4(float *p, float4 v) { *reinterpret_cast<float4 *>(p) = v; }

/* acc += w * x, element-wise (contracted to FMAs like the CPU loops). */
__device__ __forceinline__ void axpy4(float4 &acc, float w, float4 x)
{
    acc.x += w * x.x;
    acc.y += w * x.y;
    acc.z += w * x.z;
    acc.w += w * x.w;
}

__device__ __forceinline__ float dot4(float4 a, float4 b)
{
    return a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w;
}

__device__ __forceinline__ float warp_sum(float s)
{
    for (int o = ST_WARP / 2; o > 0; o /= 2)
        s += __shfl_xor_sync(0xFFFFFFFFu, s, o);
    return s;
}

/* st_activation_value / st_activation_grad of src/cpu/cpu_ops.c. */
__device__ __forceinline__ float act_value(st_activation act, int hidden, float z)
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

__device__ __forceinline__ float act_grad(st_activation act, int hidden, float z)
{
    switch (act) {
    case ST_ACT_RELU: return z > 0.0f ? 1.0f : 0.0f;
    case ST_ACT_ALLRELU:
        return z > 0.0f ? 1.0f : ((hidden & 1) ? -ST_ALLRELU_ALPHA : ST_ALLRELU_ALPHA);
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

/* d * (f'(z) * mask) for four columns (the CPU's scale_by_grad order). */
__device__ __forceinline__ float4 scale_grad4(float4 d, const float *z, const float *mask,
                                              st_activation act, int hidden)
{
    float4 zv = ld4(z);
    float4 mv = mask ? ld4(mask) : make_float4(1.0f, 1.0f, 1.0f, 1.0f);
    d.x *= act_grad(act, hidden, zv.x) * mv.x;
    d.y *= act_grad(act, hidden, zv.y) * mv.y;
    d.z *= act_grad(act, hidden, zv.z) * mv.z;
    d.w *= act_grad(act, hidden, zv.w) * mv.w;
    return d;
}

/* Momentum SGD with weight decay on one weight (cpu_layer_update). */
__device__ __forceinline__ void sgd_step(float *w, float *v, int64_t e, float g, float lr,
                                         float mu, float wd)
{
    float wv = w[e];
    float vv = mu * v[e] - lr * (g + wd * wv);
    v[e] = vv;
    w[e] = wv + vv;
}

/* a0 (d, ld) from sample-major x through a 32 x 32 shared tile (reads
 * coalesced along features, writes along the batch). grid (ceil(d/32),
 * ceil(ld/32)), block (32, 8). */
__global__ void __launch_bounds__(256)
gather_kernel(const float *__restrict__ x, int64_t d, const int64_t *__restrict__ rows,
              int64_t first, int B, int ld, float *__restrict__ a0,
              const int32_t *__restrict__ y, int32_t *__restrict__ yb)
{
    __shared__ float tile[32][33];
    const int64_t f0 = (int64_t)blockIdx.x * 32;
    const int b0 = blockIdx.y * 32;
    for (int i = threadIdx.y; i < 32; i += 8) {
        int b = b0 + i;
        int64_t f = f0 + threadIdx.x;
        float val = 0.0f;
        if (b < B && f < d) {
            int64_t r = rows ? rows[first + b] : first + b;
            val = x[r * d + f];
        }
        tile[i][threadIdx.x] = val;
    }
    __syncthreads();
    for (int i = threadIdx.y; i < 32; i += 8) {
        int64_t f = f0 + i;
        int b = b0 + threadIdx.x;
        if (f < d && b < ld)
            a0[f * ld + b] = tile[threadIdx.x][i];
    }
    if (y && blockIdx.x == 0 && threadIdx.y == 0) {
        int b = b0 + threadIdx.x;
        if (b < B)
            yb[b] = y[rows ? rows[first + b] : first + b];
    }
}

/* z[o, b] = bias[o] over (n, ld). */
__global__ void bias_fill_kernel(const float *__restrict__ bias, float *__restrict__ z,
                                 int64_t total, int ld)
{
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (int64_t)gridDim.x * blockDim.x)
        z[e] = bias[e / ld];
}

/* Forward ROW: warp per output row o = R bo + r and 128-column chunk:
 * z = bias + sum_k sum_c w[k bs + r bi + c] a[col[k] bi + c, :]. */
__global__ void __launch_bounds__(ST_WARP * ST_WARPS_PER_CTA)
fwd_row_kernel(int32_t n_out, int bi, int bo, const int32_t *__restrict__ row_ptr,
               const int32_t *__restrict__ col, const float *__restrict__ w,
               const float *__restrict__ bias, const float *__restrict__ a,
               float *__restrict__ z, int ld)
{
    const int lane = threadIdx.x % ST_WARP;
    const int32_t o = blockIdx.x * ST_WARPS_PER_CTA + threadIdx.x / ST_WARP;
    const int b = blockIdx.y * ST_CHUNK + lane * 4;
    if (o >= n_out || b >= ld)
        return;
    const int32_t R = o / bo;
    const int r = o - R * bo, bs = bi * bo;
    const float bv = bias[o];
    float4 acc = make_float4(bv, bv, bv, bv);
    for (int32_t k = row_ptr[R]; k < row_ptr[R + 1]; k++) {
        const float *x = a + (int64_t)col[k] * bi * ld + b;
        const float *wk = w + (int64_t)k * bs + r * bi;
        for (int c = 0; c < bi; c++)
            axpy4(acc, wk[c], ld4(x + (int64_t)c * ld));
    }
    st4(z + (int64_t)o * ld + b, acc);
}

/* Forward BLOCK: warp per block row R and chunk; all BO outputs at once. */
template <int BI, int BO>
__global__ void __launch_bounds__(ST_WARP * ST_WARPS_PER_CTA)
fwd_block_kernel(int32_t nbr, const int32_t *__restrict__ row_ptr,
                 const int32_t *__restrict__ col, const float *__restrict__ w,
                 const float *__restrict__ bias, const float *__restrict__ a,
                 float *__restrict__ z, int ld)
{
    const int lane = threadIdx.x % ST_WARP;
    const int32_t R = blockIdx.x * ST_WARPS_PER_CTA + threadIdx.x / ST_WARP;
    const int b = blockIdx.y * ST_CHUNK + lane * 4;
    if (R >= nbr || b >= ld)
        return;
    float4 acc[BO];
#pragma unroll
    for (int r = 0; r < BO; r++) {
        float bv = bias[(int64_t)R * BO + r];
        acc[r] = make_float4(bv, bv, bv, bv);
    }
    for (int32_t k = row_ptr[R]; k < row_ptr[R + 1]; k++) {
        const float *x = a + (int64_t)col[k] * BI * ld + b;
        const float *wk = w + (int64_t)k * (BI * BO);
#pragma unroll
        for (int c = 0; c < BI; c++) {
            float4 xv = ld4(x + (int64_t)c * ld);
#pragma unroll
            for (int r = 0; r < BO; r++)
                axpy4(acc[r], wk[r * BI + c], xv);
        }
    }
#pragma unroll
    for (int r = 0; r < BO; r++)
        st4(z + ((int64_t)R * BO + r) * ld + b, acc[r]);
}

/* Dropout mask: one thread per (row o, group g of 8 columns). */
__global__ void dropout_kernel(uint64_t seed, int hidden, int epoch, int batch_index,
                               uint32_t thresh, float keep, float *__restrict__ mask, int64_t n,
                               int B, int ld)
{
    const int groups = ld / 8;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < n * groups;
         t += (int64_t)gridDim.x * blockDim.x) {
        int64_t o = t / groups;
        int g = (int)(t - o * groups);
        float m[8];
        st_dropout_group(seed, hidden, epoch, batch_index, o, g, B, thresh, keep, m);
        float *dst = mask + o * ld + 8 * g;
        st4(dst, make_float4(m[0], m[1], m[2], m[3]));
        st4(dst + 4, make_float4(m[4], m[5], m[6], m[7]));
    }
}

/* a = f(z) * mask over n * ld elements. */
__global__ void activation_kernel(st_activation act, int hidden, const float *__restrict__ z,
                                  const float *__restrict__ mask, float *__restrict__ a,
                                  int64_t total)
{
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (int64_t)gridDim.x * blockDim.x)
        a[e] = act_value(act, hidden, z[e]) * (mask ? mask[e] : 1.0f);
}

/* d *= f'(z) * mask over n * ld elements (dense backward). */
__global__ void grad_scale_kernel(st_activation act, int hidden, const float *__restrict__ z,
                                  const float *__restrict__ mask, float *__restrict__ d,
                                  int64_t total)
{
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (int64_t)gridDim.x * blockDim.x)
        d[e] *= act_grad(act, hidden, z[e]) * (mask ? mask[e] : 1.0f);
}

/* Softmax cross-entropy, one thread block: thread t takes samples t, t +
 * blockDim, ...; per-sample arithmetic as cpu_softmax_xent (double exp/log);
 * the block's loss and count are reduced in a fixed tree and thread 0 adds
 * them to the accumulators: deterministic. blockDim = ST_EW_THREADS. */
__global__ void __launch_bounds__(ST_EW_THREADS)
softmax_xent_kernel(const float *__restrict__ z, const int32_t *__restrict__ y, int K, int B,
                    int ld, float *__restrict__ delta, double *loss_acc,
                    unsigned long long *correct_acc)
{
    __shared__ double sloss[ST_EW_THREADS];
    __shared__ unsigned sok[ST_EW_THREADS];
    double loss = 0.0;
    unsigned ok = 0;
    for (int b = threadIdx.x; b < B; b += blockDim.x) {
        float zmax = z[b];
        int arg = 0;
        for (int c = 1; c < K; c++) {
            float zc = z[(int64_t)c * ld + b];
            if (zc > zmax) {
                zmax = zc;
                arg = c;
            }
        }
        double sum = 0.0;
        for (int c = 0; c < K; c++)
            sum += exp((double)(z[(int64_t)c * ld + b] - zmax));
        double lse = log(sum) + zmax;
        int yb = y[b];
        /* A label outside 0..K-1 is never used as an index: the loss
         * becomes NaN (the run's loss shows it) and no class is its own. */
        loss += (yb >= 0 && yb < K) ? lse - (double)z[(int64_t)yb * ld + b] : (double)NAN;
        ok += (arg == yb);
        if (delta)
            for (int c = 0; c < K; c++) {
                double pc = exp((double)z[(int64_t)c * ld + b] - lse);
                delta[(int64_t)c * ld + b] = (float)((pc - (c == yb)) / B);
            }
    }
    if (delta)
        for (int b = B + threadIdx.x; b < ld; b += blockDim.x)
            for (int c = 0; c < K; c++)
                delta[(int64_t)c * ld + b] = 0.0f;
    sloss[threadIdx.x] = loss;
    sok[threadIdx.x] = ok;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s /= 2) {
        if ((int)threadIdx.x < s) {
            sloss[threadIdx.x] += sloss[threadIdx.x + s];
            sok[threadIdx.x] += sok[threadIdx.x + s];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        *loss_acc += sloss[0];
        *correct_acc += sok[0];
    }
}

/* Backward ROW: warp per input row i = C bi + c and chunk:
 * delta_in = sum_{j in column C} sum_r w[t_blk[j] bs + r bi + c]
 * delta_out[t_row[j] bo + r, :], then * f'(z_in) * mask. */
__global__ void __launch_bounds__(ST_WARP * ST_WARPS_PER_CTA)
bwd_row_kernel(int32_t n_in, int bi, int bo, const int32_t *__restrict__ t_ptr,
               const int32_t *__restrict__ t_blk, const int32_t *__restrict__ t_row,
               const float *__restrict__ w, const float *__restrict__ delta_out,
               const float *__restrict__ z_in, const float *__restrict__ mask,
               st_activation act, int hidden, float *__restrict__ delta_in, int ld)
{
    const int lane = threadIdx.x % ST_WARP;
    const int32_t i = blockIdx.x * ST_WARPS_PER_CTA + threadIdx.x / ST_WARP;
    const int b = blockIdx.y * ST_CHUNK + lane * 4;
    if (i >= n_in || b >= ld)
        return;
    const int32_t C = i / bi;
    const int c = i - C * bi, bs = bi * bo;
    float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    for (int32_t j = t_ptr[C]; j < t_ptr[C + 1]; j++) {
        const float *d = delta_out + (int64_t)t_row[j] * bo * ld + b;
        const float *wk = w + (int64_t)t_blk[j] * bs + c;
        for (int r = 0; r < bo; r++)
            axpy4(acc, wk[r * bi], ld4(d + (int64_t)r * ld));
    }
    const int64_t off = (int64_t)i * ld + b;
    st4(delta_in + off, scale_grad4(acc, z_in + off, mask ? mask + off : nullptr, act, hidden));
}

/* Backward BLOCK: warp per input motif C and chunk; BI input rows at once. */
template <int BI, int BO>
__global__ void __launch_bounds__(ST_WARP * ST_WARPS_PER_CTA)
bwd_block_kernel(int32_t nbc, const int32_t *__restrict__ t_ptr,
                 const int32_t *__restrict__ t_blk, const int32_t *__restrict__ t_row,
                 const float *__restrict__ w, const float *__restrict__ delta_out,
                 const float *__restrict__ z_in, const float *__restrict__ mask,
                 st_activation act, int hidden, float *__restrict__ delta_in, int ld)
{
    const int lane = threadIdx.x % ST_WARP;
    const int32_t C = blockIdx.x * ST_WARPS_PER_CTA + threadIdx.x / ST_WARP;
    const int b = blockIdx.y * ST_CHUNK + lane * 4;
    if (C >= nbc || b >= ld)
        return;
    float4 acc[BI];
#pragma unroll
    for (int c = 0; c < BI; c++)
        acc[c] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    for (int32_t j = t_ptr[C]; j < t_ptr[C + 1]; j++) {
        const float *d = delta_out + (int64_t)t_row[j] * BO * ld + b;
        const float *wk = w + (int64_t)t_blk[j] * (BI * BO);
#pragma unroll
        for (int r = 0; r < BO; r++) {
            float4 dv = ld4(d + (int64_t)r * ld);
#pragma unroll
            for (int c = 0; c < BI; c++)
                axpy4(acc[c], wk[r * BI + c], dv);
        }
    }
#pragma unroll
    for (int c = 0; c < BI; c++) {
        const int64_t off = ((int64_t)C * BI + c) * ld + b;
        st4(delta_in + off,
            scale_grad4(acc[c], z_in + off, mask ? mask + off : nullptr, act, hidden));
    }
}

/* SDDMM ROW: warp per block k (in block row R); entry t = r bi + c gets
 * g = sum_b delta_out[R bo + r, b] a_in[col[k] bi + c, b]; then either
 * gw[k bs + t] = g or the SGD step on w, v. */
__global__ void __launch_bounds__(ST_WARP * ST_WARPS_PER_CTA)
sddmm_row_kernel(int32_t nb, int32_t nbr, int bi, int bo, const int32_t *__restrict__ row_ptr,
                 const int32_t *__restrict__ col, const float *__restrict__ a_in,
                 const float *__restrict__ delta_out, int ld, float *__restrict__ gw,
                 float *__restrict__ w, float *__restrict__ v, float lr, float mu, float wd)
{
    const int lane = threadIdx.x % ST_WARP;
    const int32_t k = blockIdx.x * ST_WARPS_PER_CTA + threadIdx.x / ST_WARP;
    if (k >= nb)
        return;
    const int32_t R = st_row_of_block(row_ptr, nbr, k);
    const int bs = bi * bo;
    const float *ak = a_in + (int64_t)col[k] * bi * ld;
    const float *dk = delta_out + (int64_t)R * bo * ld;
    for (int t = 0; t < bs; t++) {
        const int r = t / bi, c = t - (t / bi) * bi;
        const float *x = ak + (int64_t)c * ld, *d = dk + (int64_t)r * ld;
        float s = 0.0f;
        for (int b = lane * 4; b < ld; b += ST_CHUNK)
            s += dot4(ld4(d + b), ld4(x + b));
        s = warp_sum(s);
        if (lane == 0) {
            const int64_t e = (int64_t)k * bs + t;
            if (gw)
                gw[e] = s;
            else
                sgd_step(w, v, e, s, lr, mu, wd);
        }
    }
}

/* SDDMM BLOCK: warp per block, all BO x BI dot products in registers; lane
 * t % 32 writes entry t. */
template <int BI, int BO>
__global__ void __launch_bounds__(ST_WARP * ST_WARPS_PER_CTA)
sddmm_block_kernel(int32_t nb, int32_t nbr, const int32_t *__restrict__ row_ptr,
                   const int32_t *__restrict__ col, const float *__restrict__ a_in,
                   const float *__restrict__ delta_out, int ld, float *__restrict__ gw,
                   float *__restrict__ w, float *__restrict__ v, float lr, float mu, float wd)
{
    const int lane = threadIdx.x % ST_WARP;
    const int32_t k = blockIdx.x * ST_WARPS_PER_CTA + threadIdx.x / ST_WARP;
    if (k >= nb)
        return;
    const int32_t R = st_row_of_block(row_ptr, nbr, k);
    const float *ak = a_in + (int64_t)col[k] * BI * ld;
    const float *dk = delta_out + (int64_t)R * BO * ld;
    float acc[BO][BI];
#pragma unroll
    for (int r = 0; r < BO; r++)
#pragma unroll
        for (int c = 0; c < BI; c++)
            acc[r][c] = 0.0f;
    for (int b = lane * 4; b < ld; b += ST_CHUNK) {
        float4 av[BI];
#pragma unroll
        for (int c = 0; c < BI; c++)
            av[c] = ld4(ak + (int64_t)c * ld + b);
#pragma unroll
        for (int r = 0; r < BO; r++) {
            float4 dv = ld4(dk + (int64_t)r * ld + b);
#pragma unroll
            for (int c = 0; c < BI; c++)
                acc[r][c] += dot4(dv, av[c]);
        }
    }
#pragma unroll
    for (int r = 0; r < BO; r++)
#pragma unroll
        for (int c = 0; c < BI; c++) {
            const float s = warp_sum(acc[r][c]);
            const int t = r * BI + c;
            if (lane == t % ST_WARP) {
                const int64_t e = (int64_t)k * (BI * BO) + t;
                if (gw)
                    gw[e] = s;
                else
                    sgd_step(w, v, e, s, lr, mu, wd);
            }
        }
}

/* Bias: warp per row o: g = sum_b delta_out[o, b]; gb[o] = g, or
 * vbias = mu vbias - lr g; bias += vbias (no weight decay). */
__global__ void __launch_bounds__(ST_WARP * ST_WARPS_PER_CTA)
bias_grad_kernel(int32_t n_out, const float *__restrict__ delta_out, int ld,
                 float *__restrict__ gb, float *__restrict__ bias, float *__restrict__ vbias,
                 float lr, float mu)
{
    const int lane = threadIdx.x % ST_WARP;
    const int32_t o = blockIdx.x * ST_WARPS_PER_CTA + threadIdx.x / ST_WARP;
    if (o >= n_out)
        return;
    const float *d = delta_out + (int64_t)o * ld;
    float s = 0.0f;
    for (int b = lane * 4; b < ld; b += ST_CHUNK) {
        float4 dv = ld4(d + b);
        s += (dv.x + dv.y) + (dv.z + dv.w);
    }
    s = warp_sum(s);
    if (lane == 0) {
        if (gb) {
            gb[o] = s;
        } else {
            float vb = mu * vbias[o] - lr * s;
            vbias[o] = vb;
            bias[o] += vb;
        }
    }
}

/* Dense update: SGD step on every weight from the gradient g. */
__global__ void dense_update_kernel(float *__restrict__ w, float *__restrict__ v,
                                    const float *__restrict__ g, int64_t n, float lr, float mu,
                                    float wd)
{
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x)
        sgd_step(w, v, e, g[e], lr, mu, wd);
}

} /* namespace */

/* ========================================================================
 * Launchers
 * ====================================================================== */

const char *const st_gpu_variant_names[ST_GPU_VAR_COUNT] = {"auto", "cusparse", "row", "block"};

extern "C" int st_gpu_sync_check(void)
{
    const char *s = getenv("ST_GPU_SYNC_CHECK");
    return s && *s && strcmp(s, "0") != 0;
}

static unsigned ew_blocks(int64_t total)
{
    int64_t b = (total + ST_EW_THREADS - 1) / ST_EW_THREADS;
    if (b < 1)
        b = 1;
    return (unsigned)(b < 65536 * 16 ? b : 65536 * 16); /* grid-stride beyond */
}

static int check_ld(int ld, char *err)
{
    if (ld <= 0 || ld % 8 != 0)
        return st_fail(err, "internal error: batch stride ld = %d is not a positive multiple of 8",
                       ld);
    return 0;
}

/* Warp-per-row grids: x over rows (4 per thread block), y over 128-column chunks. */
static dim3 row_grid(int64_t rows, int ld)
{
    return dim3((unsigned)((rows + ST_WARPS_PER_CTA - 1) / ST_WARPS_PER_CTA),
                (unsigned)((ld + ST_CHUNK - 1) / ST_CHUNK));
}

extern "C" int st_gpu_block_supported(int bi, int bo)
{
    return (bi == 2 || bi == 4 || bi == 8) && (bo == bi || bo == 1);
}

extern "C" int st_gpu_variant_parse(const char *s)
{
    for (int v = 0; v < ST_GPU_VAR_COUNT; v++)
        if (!strcmp(s, st_gpu_variant_names[v]))
            return v;
    return -1;
}

extern "C" int st_gpu_malloc(void **p, size_t bytes, int layer, const char *what, size_t *total,
                             char *err)
{
    *p = NULL;
    cudaError_t e = cudaMalloc(p, bytes ? bytes : 16);
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError(); /* clear the (non-sticky) error */
        size_t fr = 0, tot = 0;
        (void)cudaMemGetInfo(&fr, &tot);
        *p = NULL;
        if (layer > 0)
            return st_fail(err, "layer %d: out of GPU memory allocating %zu bytes for %s "
                                "(device has %zu free of %zu)",
                           layer, bytes, what, fr, tot);
        return st_fail(err, "out of GPU memory allocating %zu bytes for %s (device has %zu free "
                            "of %zu)",
                       bytes, what, fr, tot);
    }
    if (e != cudaSuccess) {
        *p = NULL;
        return st_fail(err, "cudaMalloc(%zu bytes for %s) failed at %s:%d: %s (%s)", bytes, what,
                       __FILE__, __LINE__, cudaGetErrorString(e), cudaGetErrorName(e));
    }
    if (total)
        *total += bytes ? bytes : 16;
    return 0;
}

extern "C" int st_gpu_layer_create(st_gpu_layer *g, const st_layer *L, int layer, size_t *total,
                                   char *err)
{
    memset(g, 0, sizeof *g);
    g->n_in = L->n_in;
    g->n_out = L->n_out;
    g->bi = L->bi;
    g->bo = L->bo;
    g->nbr = L->nbr;
    g->nbc = L->nbc;
    g->nb = L->dense ? 0 : L->nb;
    g->dense = L->dense;
    g->nnz = layer_nnz(L);
    const size_t fw = sizeof(float) * (size_t)g->nnz, fo = sizeof(float) * (size_t)L->n_out;
    ST_TRY(st_gpu_malloc((void **)&g->w, fw, layer, "weights", total, err));
    ST_TRY(st_gpu_malloc((void **)&g->v, fw, layer, "momentum", total, err));
    ST_TRY(st_gpu_malloc((void **)&g->bias, fo, layer, "biases", total, err));
    ST_TRY(st_gpu_malloc((void **)&g->vbias, fo, layer, "bias momentum", total, err));
    if (!L->dense) {
        const size_t ib = sizeof(int32_t) * (size_t)L->nb;
        ST_TRY(st_gpu_malloc((void **)&g->row_ptr, sizeof(int32_t) * ((size_t)L->nbr + 1), layer,
                             "row pointers", total, err));
        ST_TRY(st_gpu_malloc((void **)&g->col_idx, ib, layer, "column indices", total, err));
        ST_TRY(st_gpu_malloc((void **)&g->t_ptr, sizeof(int32_t) * ((size_t)L->nbc + 1), layer,
                             "transposed index pointers", total, err));
        ST_TRY(st_gpu_malloc((void **)&g->t_blk, ib, layer, "transposed index blocks", total,
                             err));
        ST_TRY(st_gpu_malloc((void **)&g->t_row, ib, layer, "transposed index rows", total,
                             err));
    }
    ST_TRY(st_gpu_layer_upload(g, L, 0, err));
    ST_CUDA_TRY(err, cudaStreamSynchronize(0));
    return 0;
}

extern "C" int st_gpu_layer_upload(st_gpu_layer *g, const st_layer *L, cudaStream_t s, char *err)
{
    const size_t fw = sizeof(float) * (size_t)g->nnz, fo = sizeof(float) * (size_t)g->n_out;
    ST_CUDA_TRY(err, cudaMemcpyAsync(g->w, L->w, fw, cudaMemcpyHostToDevice, s));
    ST_CUDA_TRY(err, cudaMemcpyAsync(g->v, L->v, fw, cudaMemcpyHostToDevice, s));
    ST_CUDA_TRY(err, cudaMemcpyAsync(g->bias, L->bias, fo, cudaMemcpyHostToDevice, s));
    ST_CUDA_TRY(err, cudaMemcpyAsync(g->vbias, L->vbias, fo, cudaMemcpyHostToDevice, s));
    if (!g->dense) {
        const size_t ib = sizeof(int32_t) * (size_t)g->nb;
        ST_CUDA_TRY(err, cudaMemcpyAsync(g->row_ptr, L->row_ptr,
                                         sizeof(int32_t) * ((size_t)g->nbr + 1),
                                         cudaMemcpyHostToDevice, s));
        ST_CUDA_TRY(err, cudaMemcpyAsync(g->col_idx, L->col_idx, ib, cudaMemcpyHostToDevice, s));
        ST_CUDA_TRY(err, cudaMemcpyAsync(g->t_ptr, L->t_ptr, sizeof(int32_t) * ((size_t)g->nbc + 1),
                                         cudaMemcpyHostToDevice, s));
        ST_CUDA_TRY(err, cudaMemcpyAsync(g->t_blk, L->t_blk, ib, cudaMemcpyHostToDevice, s));
        ST_CUDA_TRY(err, cudaMemcpyAsync(g->t_row, L->t_row, ib, cudaMemcpyHostToDevice, s));
    }
    /* The host arrays are pageable: the copies complete before returning,
     * but synchronise anyway so the caller may free or change them. */
    ST_CUDA_TRY(err, cudaStreamSynchronize(s));
    return 0;
}

extern "C" int st_gpu_layer_download(const st_gpu_layer *g, st_layer *L, cudaStream_t s,
                                     char *err)
{
    const size_t fw = sizeof(float) * (size_t)g->nnz, fo = sizeof(float) * (size_t)g->n_out;
    ST_CUDA_TRY(err, cudaMemcpyAsync(L->w, g->w, fw, cudaMemcpyDeviceToHost, s));
    ST_CUDA_TRY(err, cudaMemcpyAsync(L->v, g->v, fw, cudaMemcpyDeviceToHost, s));
    ST_CUDA_TRY(err, cudaMemcpyAsync(L->bias, g->bias, fo, cudaMemcpyDeviceToHost, s));
    ST_CUDA_TRY(err, cudaMemcpyAsync(L->vbias, g->vbias, fo, cudaMemcpyDeviceToHost, s));
    if (!g->dense) {
        const size_t ib = sizeof(int32_t) * (size_t)g->nb;
        ST_CUDA_TRY(err, cudaMemcpyAsync(L->row_ptr, g->row_ptr,
                                         sizeof(int32_t) * ((size_t)g->nbr + 1),
                                         cudaMemcpyDeviceToHost, s));
        ST_CUDA_TRY(err, cudaMemcpyAsync(L->col_idx, g->col_idx, ib, cudaMemcpyDeviceToHost, s));
        ST_CUDA_TRY(err, cudaMemcpyAsync(L->t_ptr, g->t_ptr, sizeof(int32_t) * ((size_t)g->nbc + 1),
                                         cudaMemcpyDeviceToHost, s));
        ST_CUDA_TRY(err, cudaMemcpyAsync(L->t_blk, g->t_blk, ib, cudaMemcpyDeviceToHost, s));
        ST_CUDA_TRY(err, cudaMemcpyAsync(L->t_row, g->t_row, ib, cudaMemcpyDeviceToHost, s));
    }
    ST_CUDA_TRY(err, cudaStreamSynchronize(s));
    return 0;
}

extern "C" void st_gpu_layer_free(st_gpu_layer *g)
{
    cudaFree(g->w);
    cudaFree(g->v);
    cudaFree(g->bias);
    cudaFree(g->vbias);
    cudaFree(g->row_ptr);
    cudaFree(g->col_idx);
    cudaFree(g->t_ptr);
    cudaFree(g->t_blk);
    cudaFree(g->t_row);
    memset(g, 0, sizeof *g);
}

extern "C" int st_gpu_ctx_init(st_gpu_ctx *c, char *err)
{
    memset(c, 0, sizeof *c);
    ST_CUDA_TRY(err, cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    ST_CUBLAS_TRY(err, cublasCreate(&c->cublas));
    ST_CUBLAS_TRY(err, cublasSetStream(c->cublas, c->stream));
    /* Plain FP32 (no TF32): the CPU backend is the oracle. */
    ST_CUBLAS_TRY(err, cublasSetMathMode(c->cublas, CUBLAS_DEFAULT_MATH));
    ST_CUSPARSE_TRY(err, cusparseCreate(&c->cusparse));
    ST_CUSPARSE_TRY(err, cusparseSetStream(c->cusparse, c->stream));
    return 0;
}

extern "C" void st_gpu_ctx_free(st_gpu_ctx *c)
{
    if (c->cusparse)
        cusparseDestroy(c->cusparse);
    if (c->cublas)
        cublasDestroy(c->cublas);
    if (c->stream)
        cudaStreamDestroy(c->stream);
    memset(c, 0, sizeof *c);
}

/* ---- cuSPARSE SpMM plan ------------------------------------------------ */

extern "C" void st_gpu_spmm_free(st_gpu_spmm *p)
{
    if (p->mat)
        cusparseDestroySpMat(p->mat);
    if (p->x)
        cusparseDestroyDnMat(p->x);
    if (p->z)
        cusparseDestroyDnMat(p->z);
    cudaFree(p->buf);
    memset(p, 0, sizeof *p);
}

/* The sparse descriptor of W^T over L's arrays (CSR, or BSR when p->bsr). */
static int spmm_create_mat(st_gpu_spmm *p, const st_gpu_layer *L, char *err)
{
    if (!p->bsr)
        ST_CUSPARSE_TRY(err, cusparseCreateCsr(&p->mat, L->n_out, L->n_in, L->nb, L->row_ptr,
                                               L->col_idx, L->w, CUSPARSE_INDEX_32I,
                                               CUSPARSE_INDEX_32I, CUSPARSE_INDEX_BASE_ZERO,
                                               CUDA_R_32F));
    else
        ST_CUSPARSE_TRY(err, cusparseCreateBsr(&p->mat, L->nbr, L->nbc, L->nb, L->bo, L->bi,
                                               L->row_ptr, L->col_idx, L->w, CUSPARSE_INDEX_32I,
                                               CUSPARSE_INDEX_32I, CUSPARSE_INDEX_BASE_ZERO,
                                               CUDA_R_32F, CUSPARSE_ORDER_ROW));
    return 0;
}

extern "C" int st_gpu_spmm_init(st_gpu_spmm *p, st_gpu_ctx *c, const st_gpu_layer *L, int bsr,
                                cusparseSpMMAlg_t alg, const float *x, float *z, int ld,
                                int layer, size_t *total, char *err)
{
    memset(p, 0, sizeof *p);
    ST_TRY(check_ld(ld, err));
    if (L->dense)
        return st_fail(err, "internal error: cuSPARSE plan requested for a dense layer");
    if (!bsr && (L->bi != 1 || L->bo != 1))
        return st_fail(err, "internal error: CSR SpMM needs 1 x 1 blocks (got %d x %d)", L->bo,
                       L->bi);
    p->bsr = bsr;
    p->alg = alg;
    /* 1. Descriptors: W^T (O x I) over the layer's own arrays; x (I, ld)
     * and z (O, ld) row-major with leading dimension ld. */
    ST_TRY(spmm_create_mat(p, L, err));
    ST_CUSPARSE_TRY(err, cusparseCreateDnMat(&p->x, L->n_in, ld, ld, (void *)x, CUDA_R_32F,
                                             CUSPARSE_ORDER_ROW));
    ST_CUSPARSE_TRY(err, cusparseCreateDnMat(&p->z, L->n_out, ld, ld, z, CUDA_R_32F,
                                             CUSPARSE_ORDER_ROW));
    /* 2. Buffer size (NOT_SUPPORTED: let the caller fall back). */
    const float one = 1.0f;
    size_t need = 0;
    cusparseStatus_t st = cusparseSpMM_bufferSize(
        c->cusparse, CUSPARSE_OPERATION_NON_TRANSPOSE, CUSPARSE_OPERATION_NON_TRANSPOSE, &one,
        p->mat, p->x, &one, p->z, CUDA_R_32F, alg, &need);
    if (st == CUSPARSE_STATUS_NOT_SUPPORTED) {
        st_fail(err, "cusparseSpMM_bufferSize (%s, %d x %d blocks, alg %d): %s",
                bsr ? "BSR" : "CSR", L->bo, L->bi, (int)alg, cusparseGetErrorString(st));
        st_gpu_spmm_free(p);
        return 1;
    }
    ST_CUSPARSE_TRY(err, st);
    ST_TRY(st_gpu_malloc(&p->buf, need, layer, "cuSPARSE SpMM buffer", total, err));
    p->buf_bytes = need;
    /* 3. Preprocess for this sparsity pattern. */
    st = cusparseSpMM_preprocess(c->cusparse, CUSPARSE_OPERATION_NON_TRANSPOSE,
                                 CUSPARSE_OPERATION_NON_TRANSPOSE, &one, p->mat, p->x, &one,
                                 p->z, CUDA_R_32F, alg, p->buf);
    if (st == CUSPARSE_STATUS_NOT_SUPPORTED) {
        st_fail(err, "cusparseSpMM_preprocess (%s, alg %d): %s", bsr ? "BSR" : "CSR", (int)alg,
                cusparseGetErrorString(st));
        st_gpu_spmm_free(p);
        return 1;
    }
    ST_CUSPARSE_TRY(err, st);
    ST_GPU_SYNC_TRY(err, "cusparseSpMM_preprocess");
    p->ready = 1;
    return 0;
}

extern "C" int st_gpu_spmm_refresh(st_gpu_spmm *p, st_gpu_ctx *c, const st_gpu_layer *L,
                                   int layer, size_t *total, char *err)
{
    /* The indices changed in place: the documented sequence for a new
     * sparsity pattern is a new descriptor, a buffer-size query and a new
     * preprocess (the old descriptor and buffer may still be in use by a
     * queued SpMM, so the stream is drained first). */
    ST_CUDA_TRY(err, cudaStreamSynchronize(c->stream));
    if (p->mat) {
        cusparseDestroySpMat(p->mat);
        p->mat = NULL;
    }
    ST_TRY(spmm_create_mat(p, L, err));
    const float one = 1.0f;
    size_t need = 0;
    ST_CUSPARSE_TRY(err, cusparseSpMM_bufferSize(
                             c->cusparse, CUSPARSE_OPERATION_NON_TRANSPOSE,
                             CUSPARSE_OPERATION_NON_TRANSPOSE, &one, p->mat, p->x, &one, p->z,
                             CUDA_R_32F, p->alg, &need));
    if (need > p->buf_bytes) {
        /* nnz is constant, so this is not expected; regrow rather than fail. */
        cudaFree(p->buf);
        p->buf = NULL;
        ST_TRY(st_gpu_malloc(&p->buf, need, layer, "cuSPARSE SpMM buffer", total, err));
        p->buf_bytes = need;
    }
    ST_CUSPARSE_TRY(err, cusparseSpMM_preprocess(c->cusparse, CUSPARSE_OPERATION_NON_TRANSPOSE,
                                                 CUSPARSE_OPERATION_NON_TRANSPOSE, &one, p->mat,
                                                 p->x, &one, p->z, CUDA_R_32F, p->alg, p->buf));
    ST_GPU_SYNC_TRY(err, "cusparseSpMM_preprocess");
    return 0;
}

extern "C" int st_gpu_spmm_run(st_gpu_spmm *p, st_gpu_ctx *c, const st_gpu_layer *L, float *z,
                               int ld, char *err)
{
    ST_TRY(st_gpu_bias_fill(L->bias, z, L->n_out, ld, c->stream, err));
    const float one = 1.0f;
    ST_CUSPARSE_TRY(err, cusparseSpMM(c->cusparse, CUSPARSE_OPERATION_NON_TRANSPOSE,
                                      CUSPARSE_OPERATION_NON_TRANSPOSE, &one, p->mat, p->x, &one,
                                      p->z, CUDA_R_32F, p->alg, p->buf));
    ST_GPU_SYNC_TRY(err, p->bsr ? "cusparseSpMM (BSR)" : "cusparseSpMM (CSR)");
    return 0;
}

/* ---- per-batch launchers ---------------------------------------------- */

extern "C" int st_gpu_gather_batch(const float *x, int64_t d, const int64_t *rows, int64_t first,
                                   int B, int ld, float *a0, const int32_t *y, int32_t *ybatch,
                                   cudaStream_t s, char *err)
{
    ST_TRY(check_ld(ld, err));
    dim3 grid((unsigned)((d + 31) / 32), (unsigned)((ld + 31) / 32)), block(32, 8);
    gather_kernel<<<grid, block, 0, s>>>(x, d, rows, first, B, ld, a0, y, ybatch);
    ST_CUDA_LAUNCH_TRY(err, "gather_kernel");
    return 0;
}

extern "C" int st_gpu_bias_fill(const float *bias, float *z, int32_t n, int ld, cudaStream_t s,
                                char *err)
{
    const int64_t total = (int64_t)n * ld;
    bias_fill_kernel<<<ew_blocks(total), ST_EW_THREADS, 0, s>>>(bias, z, total, ld);
    ST_CUDA_LAUNCH_TRY(err, "bias_fill_kernel");
    return 0;
}

#define ST_BLOCK_SHAPES(X) X(2, 2) X(4, 4) X(8, 8) X(2, 1) X(4, 1) X(8, 1)

extern "C" int st_gpu_forward_sparse(st_gpu_variant var, const st_gpu_layer *L, const float *a,
                                     float *z, int ld, cudaStream_t s, char *err)
{
    ST_TRY(check_ld(ld, err));
    if (L->dense)
        return st_fail(err, "internal error: st_gpu_forward_sparse on a dense layer");
    if (var == ST_GPU_VAR_BLOCK && st_gpu_block_supported(L->bi, L->bo)) {
        dim3 grid = row_grid(L->nbr, ld);
#define ST_FWD_CASE(BI, BO)                                                                 \
    if (L->bi == BI && L->bo == BO) {                                                       \
        fwd_block_kernel<BI, BO><<<grid, ST_WARP * ST_WARPS_PER_CTA, 0, s>>>(               \
            L->nbr, L->row_ptr, L->col_idx, L->w, L->bias, a, z, ld);                       \
        ST_CUDA_LAUNCH_TRY(err, "fwd_block_kernel<" #BI "," #BO ">");                       \
        return 0;                                                                           \
    }
        ST_BLOCK_SHAPES(ST_FWD_CASE)
#undef ST_FWD_CASE
    }
    if (var != ST_GPU_VAR_ROW && var != ST_GPU_VAR_BLOCK)
        return st_fail(err, "internal error: forward variant %s is not a kernel variant",
                       st_gpu_variant_names[var]);
    fwd_row_kernel<<<row_grid(L->n_out, ld), ST_WARP * ST_WARPS_PER_CTA, 0, s>>>(
        L->n_out, L->bi, L->bo, L->row_ptr, L->col_idx, L->w, L->bias, a, z, ld);
    ST_CUDA_LAUNCH_TRY(err, "fwd_row_kernel");
    return 0;
}

extern "C" int st_gpu_forward_dense(st_gpu_ctx *c, const st_gpu_layer *L, const float *a,
                                    float *z, int ld, char *err)
{
    ST_TRY(check_ld(ld, err));
    ST_TRY(st_gpu_bias_fill(L->bias, z, L->n_out, ld, c->stream, err));
    /* Column-major view: Z^T (ld x O) += A^T (ld x I) * W (I x O), where the
     * row-major (O, I) W^T is the column-major (I x O) W with leading dim I. */
    const float one = 1.0f;
    ST_CUBLAS_TRY(err, cublasSgemm(c->cublas, CUBLAS_OP_N, CUBLAS_OP_N, ld, L->n_out, L->n_in,
                                   &one, a, ld, L->w, L->n_in, &one, z, ld));
    ST_GPU_SYNC_TRY(err, "cublasSgemm (dense forward)");
    return 0;
}

extern "C" int st_gpu_dropout_mask(uint64_t seed, int hidden, int epoch, int batch_index,
                                   float rate, float *mask, int64_t n, int B, int ld,
                                   cudaStream_t s, char *err)
{
    ST_TRY(check_ld(ld, err));
    /* Host-side constants exactly as cpu_dropout_mask computes them. */
    const uint32_t thresh = (uint32_t)lrintf(rate * 65536.0f);
    const float keep = 1.0f / (1.0f - rate);
    dropout_kernel<<<ew_blocks(n * (ld / 8)), ST_EW_THREADS, 0, s>>>(
        seed, hidden, epoch, batch_index, thresh, keep, mask, n, B, ld);
    ST_CUDA_LAUNCH_TRY(err, "dropout_kernel");
    return 0;
}

extern "C" int st_gpu_activation_forward(st_activation act, int hidden, const float *z,
                                         const float *mask, float *a, int64_t n, int ld,
                                         cudaStream_t s, char *err)
{
    const int64_t total = n * ld;
    activation_kernel<<<ew_blocks(total), ST_EW_THREADS, 0, s>>>(act, hidden, z, mask, a, total);
    ST_CUDA_LAUNCH_TRY(err, "activation_kernel");
    return 0;
}

extern "C" int st_gpu_softmax_xent(const float *z, const int32_t *y, int K, int B, int ld,
                                   float *delta, double *loss_acc,
                                   unsigned long long *correct_acc, cudaStream_t s, char *err)
{
    softmax_xent_kernel<<<1, ST_EW_THREADS, 0, s>>>(z, y, K, B, ld, delta, loss_acc,
                                                    correct_acc);
    ST_CUDA_LAUNCH_TRY(err, "softmax_xent_kernel");
    return 0;
}

extern "C" int st_gpu_backward_sparse(st_gpu_variant var, const st_gpu_layer *L,
                                      const float *delta_out, const float *z_in,
                                      const float *mask_in, st_activation act, int hidden_in,
                                      float *delta_in, int ld, cudaStream_t s, char *err)
{
    ST_TRY(check_ld(ld, err));
    if (L->dense)
        return st_fail(err, "internal error: st_gpu_backward_sparse on a dense layer");
    if (var == ST_GPU_VAR_BLOCK && st_gpu_block_supported(L->bi, L->bo)) {
        dim3 grid = row_grid(L->nbc, ld);
#define ST_BWD_CASE(BI, BO)                                                                 \
    if (L->bi == BI && L->bo == BO) {                                                       \
        bwd_block_kernel<BI, BO><<<grid, ST_WARP * ST_WARPS_PER_CTA, 0, s>>>(               \
            L->nbc, L->t_ptr, L->t_blk, L->t_row, L->w, delta_out, z_in, mask_in, act,      \
            hidden_in, delta_in, ld);                                                       \
        ST_CUDA_LAUNCH_TRY(err, "bwd_block_kernel<" #BI "," #BO ">");                       \
        return 0;                                                                           \
    }
        ST_BLOCK_SHAPES(ST_BWD_CASE)
#undef ST_BWD_CASE
    }
    bwd_row_kernel<<<row_grid(L->n_in, ld), ST_WARP * ST_WARPS_PER_CTA, 0, s>>>(
        L->n_in, L->bi, L->bo, L->t_ptr, L->t_blk, L->t_row, L->w, delta_out, z_in, mask_in,
        act, hidden_in, delta_in, ld);
    ST_CUDA_LAUNCH_TRY(err, "bwd_row_kernel");
    return 0;
}

extern "C" int st_gpu_backward_dense(st_gpu_ctx *c, const st_gpu_layer *L,
                                     const float *delta_out, const float *z_in,
                                     const float *mask_in, st_activation act, int hidden_in,
                                     float *delta_in, int ld, char *err)
{
    ST_TRY(check_ld(ld, err));
    /* Column-major: Din^T (ld x I) = Dout^T (ld x O) * (W (I x O))^T. */
    const float one = 1.0f, zero = 0.0f;
    ST_CUBLAS_TRY(err, cublasSgemm(c->cublas, CUBLAS_OP_N, CUBLAS_OP_T, ld, L->n_in, L->n_out,
                                   &one, delta_out, ld, L->w, L->n_in, &zero, delta_in, ld));
    ST_GPU_SYNC_TRY(err, "cublasSgemm (dense backward)");
    const int64_t total = (int64_t)L->n_in * ld;
    grad_scale_kernel<<<ew_blocks(total), ST_EW_THREADS, 0, c->stream>>>(act, hidden_in, z_in,
                                                                        mask_in, delta_in, total);
    ST_CUDA_LAUNCH_TRY(err, "grad_scale_kernel");
    return 0;
}

extern "C" int st_gpu_layer_grad_update(st_gpu_ctx *c, st_gpu_variant var, st_gpu_layer *L,
                                        const float *a_in, const float *delta_out, int ld,
                                        float lr, float mu, float wd, float *gw, float *gb,
                                        float *scratch, char *err)
{
    ST_TRY(check_ld(ld, err));
    cudaStream_t s = c->stream;
    if (L->dense) {
        /* Column-major: G (I x O) = A (ld x I)^T * Dout (ld x O); G is the
         * row-major (O, I) gradient of W^T. */
        float *g = gw ? gw : scratch;
        const float one = 1.0f, zero = 0.0f;
        ST_CUBLAS_TRY(err, cublasSgemm(c->cublas, CUBLAS_OP_T, CUBLAS_OP_N, L->n_in, L->n_out, ld,
                                       &one, a_in, ld, delta_out, ld, &zero, g, L->n_in));
        ST_GPU_SYNC_TRY(err, "cublasSgemm (dense gradient)");
        if (!gw) {
            dense_update_kernel<<<ew_blocks(L->nnz), ST_EW_THREADS, 0, s>>>(L->w, L->v, g,
                                                                            L->nnz, lr, mu, wd);
            ST_CUDA_LAUNCH_TRY(err, "dense_update_kernel");
        }
    } else if (L->nb > 0) {
        dim3 grid((unsigned)((L->nb + ST_WARPS_PER_CTA - 1) / ST_WARPS_PER_CTA));
        int done = 0;
        if (var == ST_GPU_VAR_BLOCK && st_gpu_block_supported(L->bi, L->bo)) {
#define ST_SDDMM_CASE(BI, BO)                                                               \
    if (!done && L->bi == BI && L->bo == BO) {                                              \
        sddmm_block_kernel<BI, BO><<<grid, ST_WARP * ST_WARPS_PER_CTA, 0, s>>>(             \
            L->nb, L->nbr, L->row_ptr, L->col_idx, a_in, delta_out, ld, gw, L->w, L->v, lr, \
            mu, wd);                                                                        \
        ST_CUDA_LAUNCH_TRY(err, "sddmm_block_kernel<" #BI "," #BO ">");                     \
        done = 1;                                                                           \
    }
            ST_BLOCK_SHAPES(ST_SDDMM_CASE)
#undef ST_SDDMM_CASE
        }
        if (!done) {
            sddmm_row_kernel<<<grid, ST_WARP * ST_WARPS_PER_CTA, 0, s>>>(
                L->nb, L->nbr, L->bi, L->bo, L->row_ptr, L->col_idx, a_in, delta_out, ld, gw,
                L->w, L->v, lr, mu, wd);
            ST_CUDA_LAUNCH_TRY(err, "sddmm_row_kernel");
        }
    }
    bias_grad_kernel<<<(unsigned)((L->n_out + ST_WARPS_PER_CTA - 1) / ST_WARPS_PER_CTA),
                       ST_WARP * ST_WARPS_PER_CTA, 0, s>>>(L->n_out, delta_out, ld, gb, L->bias,
                                                           L->vbias, lr, mu);
    ST_CUDA_LAUNCH_TRY(err, "bias_grad_kernel");
    return 0;
}
