/* gpu_ops.h: the GPU backend's operators (kernels/gpu_ops.cu), its SET
 * evolution (kernels/gpu_evolve.cu) and the pure SET helpers both share with
 * the host tests.
 *
 * Legend: B batch (real samples), ld the batch stride of every activation
 * buffer (ld >= B, a multiple of 8; columns B..ld-1 are padding whose deltas
 * are zero), I / O a layer's in / out features, m motif size, bi x bo the
 * block shape (bi inputs, bo outputs), bs = bi * bo, nb present blocks,
 * nbr x nbc the block grid, nnz = nb * bs (dense: I * O). Activations are
 * feature-major: x is (I, ld) means row i, x[i*ld .. i*ld+ld), holds feature
 * i of every sample. Storage of a layer is exactly the host st_layer's
 * (model.h): W^T as block-CSR with row-major blocks, or (O, I) row-major.
 *
 * Part 1 (always compiled, also without CUDA): pure functions of SET
 * evolution and dropout used by the device kernels and by tests/test_gpu.c
 * on the host, so the window logic is exercised where no GPU exists.
 * Part 2 (ST_HAVE_CUDA builds): device layers, library context and the
 * extern "C" launchers. Every launcher takes a stream, enqueues work without
 * synchronising (unless it says so) and returns 0, or -1 with err
 * (ST_ERRLEN bytes) naming the failing call, file:line and the message.
 * Every pointer argument of a launcher is device memory unless marked host. */
#ifndef ST_GPU_OPS_H
#define ST_GPU_OPS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "model/model.h"
#include "util/philox.h"

/* ---- Part 1: pure SET / dropout helpers (host and device) --------------- */

/* Bits of a float (order-preserving for non-negative values). */
ST_HD uint32_t st_float_bits(float x)
{
#ifdef __CUDA_ARCH__
    return __float_as_uint(x);
#else
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
#endif
}

/* Regrow candidate d of (seed, layer, epoch): a block position in [0, npos)
 * (row-major over the nbr x nbc grid), as src/model/evolve.c draws it. */
ST_HD uint64_t st_regrow_candidate(uint64_t seed, int layer, int epoch, uint64_t d, uint64_t npos)
{
    st_u32x4 u = st_rand(seed, ST_STREAM_REGROW_POS, (uint32_t)layer, (uint32_t)d,
                         (uint32_t)(d >> 32), (uint32_t)epoch);
    return st_below(u.v[0], u.v[1], npos);
}

/* Is block column C of block row R present and not pruned? row_ptr (nbr + 1),
 * col_idx (nb, sorted within rows), removed (nb flags): the same binary
 * search as src/model/evolve.c's occupied(). */
ST_HD int st_block_occupied(const int32_t *row_ptr, const int32_t *col_idx,
                            const uint8_t *removed, int32_t R, int32_t C)
{
    int32_t lo = row_ptr[R], hi = row_ptr[R + 1], end = hi;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (col_idx[mid] < C)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < end && col_idx[lo] == C && !removed[lo];
}

/* Is x in the sorted array a[0..n)? */
ST_HD int st_sorted_contains_u64(const uint64_t *a, int64_t n, uint64_t x)
{
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (a[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && a[lo] == x;
}

/* Block row of block k: the largest R with row_ptr[R] <= k (k < nb). */
ST_HD int32_t st_row_of_block(const int32_t *row_ptr, int32_t nbr, int32_t k)
{
    int32_t lo = 0, hi = nbr - 1;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo + 1) / 2;
        if (row_ptr[mid] <= k)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* Prune sort key, m = 1: class in bits 32..33 (0 positive, 1 negative,
 * 2 zero or NaN: kept), |w| bits below. An ascending stable sort of
 * (key, storage index) lists the positives closest to zero first, then the
 * negatives closest to zero, ties by lower index: src/model/evolve.c's order. */
ST_HD uint64_t st_prune_key_m1(float w)
{
    uint64_t cls = w > 0.0f ? 0u : (w < 0.0f ? 1u : 2u);
    return (cls << 32) | (cls == 2u ? 0u : (st_float_bits(w) & 0x7FFFFFFFu));
}
#define ST_PRUNE_KEY_M1_BITS 34

/* Prune sort key, m > 1: the bits of the block's magnitude, the float sum of
 * |w| over its bs entries in storage order (sequential, as src/model/evolve.c). */
ST_HD uint64_t st_prune_key_block(const float *w, int bs)
{
    float s = 0.0f;
    for (int t = 0; t < bs; t++)
        s += fabsf(w[t]);
    return st_float_bits(s);
}
#define ST_PRUNE_KEY_BLOCK_BITS 32

/* Weight t of the j-th accepted block (src/model/evolve.c): He-uniform from
 * Philox (seed, REGROW_W, layer, (j bs + t) / 4, epoch); lim = sqrt(6 / I). */
ST_HD float st_regrow_weight(uint64_t seed, int layer, int epoch, int64_t j, int bs, int t,
                             float lim)
{
    uint64_t e = (uint64_t)j * (uint64_t)bs + (uint64_t)t;
    st_u32x4 u = st_rand(seed, ST_STREAM_REGROW_W, (uint32_t)layer, (uint32_t)(e / 4),
                         (uint32_t)(e / 4 >> 32), (uint32_t)epoch);
    return (2.0f * st_u01f(u.v[e % 4]) - 1.0f) * lim;
}

/* Compressed pointers from sorted group ids: item i of n (group ids g
 * non-decreasing, g_prev = g[i - 1] or -1 for i = 0) writes ptr[G] = i for
 * g_prev < G <= g_cur, and the last item also ptr[G] = n for g_cur < G <=
 * ngroups. Run for every item (n >= 1) this fills ptr[0..ngroups]. */
ST_HD void st_ptr_fill_item(int32_t *ptr, int64_t i, int64_t n, int32_t g_prev, int32_t g_cur,
                            int32_t ngroups)
{
    for (int32_t G = g_prev + 1; G <= g_cur; G++)
        ptr[G] = (int32_t)i;
    if (i == n - 1)
        for (int32_t G = g_cur + 1; G <= ngroups; G++)
            ptr[G] = (int32_t)n;
}

/* Dropout mask values of elements (o, 8g .. 8g+7) (cpu_ops.h's definition):
 * 16-bit lane j of st_rand(seed, DROPOUT, hidden, o, batch << 9 | g, epoch)
 * (low half of word j/2 first); kept (keep = 1/(1-rate)) when the lane is
 * >= thresh = round(rate 65536), else 0; columns >= B are 0. */
ST_HD void st_dropout_group(uint64_t seed, int hidden, int epoch, int batch_index, int64_t o,
                            int g, int B, uint32_t thresh, float keep, float out[8])
{
    st_u32x4 u = st_rand(seed, ST_STREAM_DROPOUT, (uint32_t)hidden, (uint32_t)o,
                         ((uint32_t)batch_index << 9) | (uint32_t)g, (uint32_t)epoch);
    for (int j = 0; j < 8; j++) {
        uint32_t h = (j & 1) ? (u.v[j / 2] >> 16) : (u.v[j / 2] & 0xFFFFu);
        out[j] = (8 * g + j < B && h >= thresh) ? keep : 0.0f;
    }
}

/* Bits needed to hold the values 0..x (x >= 1): the radix-sort end bit. */
ST_HD int st_bits_for(uint64_t x)
{
    int b = 0;
    while (b < 64 && (x >> b) != 0)
        b++;
    return b;
}

/* ---- Part 2: device layers and launchers (CUDA builds) ------------------ */
#if defined(ST_HAVE_CUDA) || defined(__CUDACC__)

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cusparse.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Kernel variants. Forward: CUSPARSE (SpMM: CSR for bo = bi = 1, BSR for
 * square blocks), ROW (one warp per output row, any block shape) or BLOCK
 * (one warp per block row, registers for all bo rows; st_gpu_block_supported
 * shapes). Backward delta and SDDMM: ROW (one warp per input row / per
 * block, any shape) or BLOCK. AUTO picks CUSPARSE for m = 1 forwards, BLOCK
 * where supported, ROW otherwise. */
typedef enum {
    ST_GPU_VAR_AUTO,
    ST_GPU_VAR_CUSPARSE,
    ST_GPU_VAR_ROW,
    ST_GPU_VAR_BLOCK,
    ST_GPU_VAR_COUNT
} st_gpu_variant;
extern const char *const st_gpu_variant_names[ST_GPU_VAR_COUNT];

/* 1 when the BLOCK kernels are compiled for blocks of bi inputs x bo
 * outputs: (2, 2), (4, 4), (8, 8), (2, 1), (4, 1), (8, 1). */
int st_gpu_block_supported(int bi, int bo);

/* Parse a variant name ("auto", "cusparse", "row", "block"); -1 if unknown. */
int st_gpu_variant_parse(const char *s);

/* A layer on the device, shaped and stored as the host st_layer. */
typedef struct {
    int32_t n_in, n_out, bi, bo, nbr, nbc, nb;
    int dense;
    int64_t nnz;          /* nb * bi * bo, or n_in * n_out when dense         */
    float *w, *v;         /* nnz, device: weights and momentum                */
    float *bias, *vbias;  /* n_out, device                                    */
    int32_t *row_ptr;     /* nbr + 1, device (NULL when dense)                */
    int32_t *col_idx;     /* nb, device                                       */
    int32_t *t_ptr;       /* nbc + 1, device: transposed index                */
    int32_t *t_blk;       /* nb, device: block numbers by column, then row   */
    int32_t *t_row;       /* nb, device: block row of t_blk[j]                */
} st_gpu_layer;

/* cudaMalloc with the project's out-of-memory message: on failure err reads
 * "layer L: out of GPU memory allocating N bytes for WHAT (device has F
 * free of T)" (without "layer L: " when layer <= 0). Adds bytes to *total
 * when total is not NULL. */
int st_gpu_malloc(void **p, size_t bytes, int layer, const char *what, size_t *total,
                  char *err);

/* Allocate g shaped like the host layer L (layer is 1-based, for messages)
 * and copy L's arrays up (synchronous). */
int st_gpu_layer_create(st_gpu_layer *g, const st_layer *L, int layer, size_t *total, char *err);
/* Copy the host layer's arrays (same shape) into g, on stream s. */
int st_gpu_layer_upload(st_gpu_layer *g, const st_layer *L, cudaStream_t s, char *err);
/* Copy g back into the host layer L (same shape): weights, momentum, biases
 * and the topology; synchronises the stream. */
int st_gpu_layer_download(const st_gpu_layer *g, st_layer *L, cudaStream_t s, char *err);
void st_gpu_layer_free(st_gpu_layer *g);

/* Library handles bound to one stream. */
typedef struct {
    cudaStream_t stream;
    cublasHandle_t cublas;
    cusparseHandle_t cusparse;
} st_gpu_ctx;
int st_gpu_ctx_init(st_gpu_ctx *c, char *err);
void st_gpu_ctx_free(st_gpu_ctx *c);

/* cuSPARSE SpMM plan for z (O, ld) = W^T x (I, ld) of one sparse layer:
 * descriptors (CSR, or BSR when bsr is set), buffer-size query, buffer,
 * preprocess, following the cuSPARSE samples. x and z are fixed buffers. */
typedef struct {
    int ready, bsr;
    cusparseSpMatDescr_t mat;
    cusparseDnMatDescr_t x, z;
    cusparseSpMMAlg_t alg;
    void *buf;            /* device, buf_bytes                               */
    size_t buf_bytes;
} st_gpu_spmm;
/* Returns 1 (not -1) with err when cuSPARSE reports the configuration as
 * not supported, so a caller can fall back to its own kernel. */
int st_gpu_spmm_init(st_gpu_spmm *p, st_gpu_ctx *c, const st_gpu_layer *L, int bsr,
                     cusparseSpMMAlg_t alg, const float *x, float *z, int ld, int layer,
                     size_t *total, char *err);
/* After the topology changed (same nb): buffer-size query (the buffer is
 * only regrown if cuSPARSE asks for more) and preprocess again. */
int st_gpu_spmm_refresh(st_gpu_spmm *p, st_gpu_ctx *c, const st_gpu_layer *L, int layer,
                        size_t *total, char *err);
/* z = bias (broadcast over ld), then z += W^T x. */
int st_gpu_spmm_run(st_gpu_spmm *p, st_gpu_ctx *c, const st_gpu_layer *L, float *z, int ld,
                    char *err);
void st_gpu_spmm_free(st_gpu_spmm *p);

/* ---- launchers ---------------------------------------------------------- */

/* a0 (d, ld) = samples of x (n, d) sample-major: sample rows[first + b]
 * (rows NULL: first + b) for b < B, zeros for b in B..ld-1; ybatch[b] =
 * y[same sample] for b < B (y / ybatch may be NULL). rows: int64. */
int st_gpu_gather_batch(const float *x, int64_t d, const int64_t *rows, int64_t first, int B,
                        int ld, float *a0, const int32_t *y, int32_t *ybatch, cudaStream_t s,
                        char *err);

/* z (O, ld) = W^T a (I, ld) + bias with the project's kernels (variant ROW or
 * BLOCK; sparse layers). */
int st_gpu_forward_sparse(st_gpu_variant var, const st_gpu_layer *L, const float *a, float *z,
                          int ld, cudaStream_t s, char *err);
/* Dense layer: z = bias, then cuBLAS sgemm z += W^T a. */
int st_gpu_forward_dense(st_gpu_ctx *c, const st_gpu_layer *L, const float *a, float *z, int ld,
                         char *err);
/* z[o, b] = bias[o] for every b < ld. */
int st_gpu_bias_fill(const float *bias, float *z, int32_t n, int ld, cudaStream_t s, char *err);

/* cpu_dropout_mask on the device: mask (n, ld). */
int st_gpu_dropout_mask(uint64_t seed, int hidden, int epoch, int batch_index, float rate,
                        float *mask, int64_t n, int B, int ld, cudaStream_t s, char *err);
/* a = f(z) * mask (mask NULL: 1); a, z (n, ld). */
int st_gpu_activation_forward(st_activation act, int hidden, const float *z, const float *mask,
                              float *a, int64_t n, int ld, cudaStream_t s, char *err);

/* Softmax cross-entropy as cpu_softmax_xent: z (K, ld) logits, y (B labels,
 * device), delta (K, ld) or NULL; adds the batch's summed loss to
 * *loss_acc and its correct count to *correct_acc (both device, one thread
 * adds, so the sums are deterministic). */
int st_gpu_softmax_xent(const float *z, const int32_t *y, int K, int B, int ld, float *delta,
                        double *loss_acc, unsigned long long *correct_acc, cudaStream_t s,
                        char *err);

/* delta_in (I, ld) = (W delta_out) * f'(z_in) * mask_in (mask NULL: 1), one
 * input row (ROW) or input motif (BLOCK) per warp through the transposed
 * index, no atomics. Sparse layers. */
int st_gpu_backward_sparse(st_gpu_variant var, const st_gpu_layer *L, const float *delta_out,
                           const float *z_in, const float *mask_in, st_activation act,
                           int hidden_in, float *delta_in, int ld, cudaStream_t s, char *err);
/* Dense layer: cuBLAS sgemm delta_in = W delta_out, then the f' and mask scale. */
int st_gpu_backward_dense(st_gpu_ctx *c, const st_gpu_layer *L, const float *delta_out,
                          const float *z_in, const float *mask_in, st_activation act,
                          int hidden_in, float *delta_in, int ld, char *err);

/* Weight and bias gradients of one layer and the optimiser step.
 * gw == NULL: fused SDDMM + momentum/weight-decay update of w, v, bias,
 * vbias (cpu_layer_grad followed by cpu_layer_update). gw != NULL (nnz
 * floats) and gb (n_out floats): write the gradients only, no update.
 * Dense layers use cuBLAS into gw, or into scratch (nnz floats, device)
 * when gw is NULL. var selects the sparse SDDMM kernel (ROW or BLOCK). */
int st_gpu_layer_grad_update(st_gpu_ctx *c, st_gpu_variant var, st_gpu_layer *L,
                             const float *a_in, const float *delta_out, int ld, float lr,
                             float mu, float wd, float *gw, float *gb, float *scratch,
                             char *err);

/* ---- SET evolution on the device (kernels/gpu_evolve.cu) ----------------- */

typedef struct st_gpu_evolve_ws st_gpu_evolve_ws;
/* Workspace for evolving layers of up to nb_max blocks and nnz_max weights
 * with regrow windows of `window` candidates (0: chosen from zeta and
 * nb_max). Sized once; *total gets the bytes allocated. */
int st_gpu_evolve_ws_create(st_gpu_evolve_ws **ws, int64_t nb_max, int64_t nnz_max,
                            double zeta, int64_t window, size_t *total, char *err);
void st_gpu_evolve_ws_free(st_gpu_evolve_ws *ws);
int64_t st_gpu_evolve_window(const st_gpu_evolve_ws *ws);
/* src/model/evolve.c's layer_evolve on the device for the sparse layer L (layer
 * 1-based, lim = layer_init_limit): prune, regrow in windows of candidates,
 * rebuild the block-CSR in place and the transposed index. Fills st like the
 * CPU (blocks_before/after, removed, removed_pos/neg, regrown, draws);
 * synchronises the stream a few times for the counts. Dense layers: no-op. */
int st_gpu_evolve_layer(st_gpu_evolve_ws *ws, st_gpu_layer *L, int layer, uint64_t seed,
                        int epoch, double zeta, float lim, st_evolve_stats *st, cudaStream_t s,
                        char *err);

#ifdef __cplusplus
}
#endif

#endif /* ST_HAVE_CUDA || __CUDACC__ */

#endif
