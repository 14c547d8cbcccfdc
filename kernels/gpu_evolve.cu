/* gpu_evolve.cu: SET evolution of one sparse layer on the device, the twin
 * of src/model/evolve.c's layer_evolve and identical to it bit for bit in
 * topology, weights, momentum and statistics.
 *
 * Legend: nb present blocks, bs = bi bo entries per block, nbr x nbc the
 * block grid, npos = nbr nbc block positions, n blocks pruned (= regrown),
 * D candidates per regrow window. Every buffer is device memory except the
 * pinned host mirror of a few counters.
 *
 * 1. Prune. Each block gets a 64-bit key (gpu_ops.h: st_prune_key_m1 for
 *    m = 1, the sequential |w| sum's bits for m > 1) and its index; CUB's
 *    radix sort is stable, so equal keys stay in index order: the CPU's tie
 *    rule. m = 1: class boundaries of the sorted keys give n_pos and n_neg;
 *    the first floor(zeta n_pos) positives and floor(zeta n_neg) negatives
 *    are marked removed. m > 1: the first floor(zeta nb) blocks.
 * 2. Regrow in windows of D draws d0 .. d0+D-1: candidate i is free when its
 *    position is not occupied after pruning (binary search in its row, as
 *    the CPU) and not accepted in an earlier window (binary search in the
 *    sorted accepted list); keys (free ? pos : npos, i) are sorted (stable:
 *    by position, then draw), the first of each free position is flagged,
 *    an exclusive scan ranks the flags in draw order, and the first n - got
 *    become accepted blocks got, got+1, ... This is the CPU's acceptance
 *    sequence exactly: a candidate is accepted iff it is free and no
 *    earlier draw had its position. If the window runs out, the next one
 *    starts at d0 + D with the accepted list sorted for the membership test.
 * 3. Rebuild. Survivors get key R nbc + C, removed blocks the key npos, the
 *    j-th accepted block its position; a sort of the nb + n keys puts the nb
 *    present blocks first in row-major order (the CPU's per-row merge).
 *    Weights and momentum are gathered (survivors) or drawn (new: Philox
 *    REGROW_W, momentum 0) into scratch and copied back in place, row_ptr is
 *    rebuilt from the sorted rows, and the transposed index from a stable
 *    sort of (column, block). */
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>
#include <math.h>

#include "gpu/gpu_check.h"
#include "gpu/gpu_ops.h"

#define ST_EV_THREADS 256

/* ========================================================================
 * Kernels
 * ====================================================================== */
namespace {

#define ST_GRID_STRIDE(i, n)                                                                \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);               \
         i += (int64_t)gridDim.x * blockDim.x)

/* keys[k] = prune key of block k, vals[k] = k. */
__global__ void prune_keys_kernel(const float *__restrict__ w, int64_t nb, int bs,
                                  uint64_t *__restrict__ keys, int32_t *__restrict__ vals)
{
    ST_GRID_STRIDE(k, nb)
    {
        keys[k] = bs == 1 ? st_prune_key_m1(w[k]) : st_prune_key_block(w + k * bs, bs);
        vals[k] = (int32_t)k;
    }
}

/* bounds[0..3] = first sorted index of class 0, 1, 2 and nb (m = 1). */
__global__ void class_bounds_kernel(const uint64_t *__restrict__ skeys, int64_t nb,
                                    int32_t *__restrict__ bounds)
{
    ST_GRID_STRIDE(i, nb)
    {
        int32_t g = (int32_t)(skeys[i] >> 32);
        int32_t gp = i ? (int32_t)(skeys[i - 1] >> 32) : -1;
        st_ptr_fill_item(bounds, i, nb, gp, g, 3);
    }
}

/* removed[svals[j]] = 1 for j in [a0, a1) and [b0, b1). */
__global__ void mark_kernel(const int32_t *__restrict__ svals, int64_t a0, int64_t a1, int64_t b0,
                            int64_t b1, uint8_t *__restrict__ removed)
{
    const int64_t na = a1 - a0, n = na + (b1 - b0);
    ST_GRID_STRIDE(t, n)
    removed[svals[t < na ? a0 + t : b0 + (t - na)]] = 1;
}

/* Window candidates: keys[i] = pos (free) or npos (taken), vals[i] = i. */
__global__ void candidates_kernel(int64_t D, uint64_t d0, uint64_t seed, int layer, int epoch,
                                  uint64_t npos, int32_t nbc, const int32_t *__restrict__ row_ptr,
                                  const int32_t *__restrict__ col_idx,
                                  const uint8_t *__restrict__ removed,
                                  const uint64_t *__restrict__ acc_sorted, int64_t got,
                                  uint64_t *__restrict__ keys, int32_t *__restrict__ vals)
{
    ST_GRID_STRIDE(i, D)
    {
        uint64_t pos = st_regrow_candidate(seed, layer, epoch, d0 + (uint64_t)i, npos);
        int32_t R = (int32_t)(pos / (uint64_t)nbc), C = (int32_t)(pos % (uint64_t)nbc);
        int taken = st_block_occupied(row_ptr, col_idx, removed, R, C) ||
                    st_sorted_contains_u64(acc_sorted, got, pos);
        keys[i] = taken ? npos : pos;
        vals[i] = (int32_t)i;
    }
}

/* flag[draw] = 1 for the first (lowest draw) candidate of each free position. */
__global__ void first_kernel(const uint64_t *__restrict__ skeys, const int32_t *__restrict__ svals,
                             int64_t D, uint64_t npos, int32_t *__restrict__ flag)
{
    ST_GRID_STRIDE(j, D)
    {
        uint64_t k = skeys[j];
        if (k != npos && (j == 0 || skeys[j - 1] != k))
            flag[svals[j]] = 1;
    }
}

/* Accept the first `need` flagged draws in draw order: acc_pos[got + rank]
 * = position. small[0] = flags in the window, small[1] = the window index of
 * the need-th acceptance (-1 if none). */
__global__ void take_kernel(const int32_t *__restrict__ flag, const int32_t *__restrict__ rank,
                            int64_t D, int64_t need, int64_t got, uint64_t d0, uint64_t seed,
                            int layer, int epoch, uint64_t npos, uint64_t *__restrict__ acc_pos,
                            int32_t *__restrict__ small)
{
    ST_GRID_STRIDE(i, D)
    {
        if (flag[i] && rank[i] < need) {
            acc_pos[got + rank[i]] = st_regrow_candidate(seed, layer, epoch, d0 + (uint64_t)i, npos);
            if (rank[i] == need - 1)
                small[1] = (int32_t)i;
        }
        if (i == D - 1)
            small[0] = rank[i] + flag[i];
    }
}

__global__ void iota_kernel(int32_t *__restrict__ v, int64_t n)
{
    ST_GRID_STRIDE(i, n)
    v[i] = (int32_t)i;
}

/* Rebuild keys: old block i < nb -> R nbc + C, or npos when removed;
 * accepted block j -> its position, value -(j + 1). */
__global__ void rebuild_keys_kernel(int64_t nb, int64_t n, int32_t nbr, int32_t nbc, uint64_t npos,
                                    const int32_t *__restrict__ row_ptr,
                                    const int32_t *__restrict__ col_idx,
                                    const uint8_t *__restrict__ removed,
                                    const uint64_t *__restrict__ acc_pos,
                                    uint64_t *__restrict__ keys, int32_t *__restrict__ vals)
{
    ST_GRID_STRIDE(i, nb + n)
    {
        if (i < nb) {
            keys[i] = removed[i] ? npos
                                 : (uint64_t)st_row_of_block(row_ptr, nbr, (int32_t)i) *
                                           (uint64_t)nbc +
                                       (uint64_t)col_idx[i];
            vals[i] = (int32_t)i;
        } else {
            keys[i] = acc_pos[i - nb];
            vals[i] = -(int32_t)(i - nb) - 1;
        }
    }
}

/* New block i (sorted order): column, row, and its bs weights / momenta. */
__global__ void rebuild_values_kernel(int64_t nb, int bs, int32_t nbc,
                                      const uint64_t *__restrict__ skeys,
                                      const int32_t *__restrict__ svals,
                                      const float *__restrict__ w, const float *__restrict__ v,
                                      uint64_t seed, int layer, int epoch, float lim,
                                      int32_t *__restrict__ new_col, int32_t *__restrict__ new_row,
                                      float *__restrict__ nw, float *__restrict__ nv)
{
    ST_GRID_STRIDE(e, nb * bs)
    {
        const int64_t i = e / bs;
        const int t = (int)(e - i * bs);
        const int32_t src = svals[i];
        if (t == 0) {
            new_col[i] = (int32_t)(skeys[i] % (uint64_t)nbc);
            new_row[i] = (int32_t)(skeys[i] / (uint64_t)nbc);
        }
        if (src >= 0) {
            nw[e] = w[(int64_t)src * bs + t];
            nv[e] = v[(int64_t)src * bs + t];
        } else {
            nw[e] = st_regrow_weight(seed, layer, epoch, (int64_t)(-src - 1), bs, t, lim);
            nv[e] = 0.0f;
        }
    }
}

/* ptr[0..ngroups] from the non-decreasing group ids g[0..n). */
__global__ void ptr_from_groups_kernel(const int32_t *__restrict__ g, int64_t n, int32_t ngroups,
                                       int32_t *__restrict__ ptr)
{
    ST_GRID_STRIDE(i, n)
    st_ptr_fill_item(ptr, i, n, i ? g[i - 1] : -1, g[i], ngroups);
}

/* Transposed index keys: (column of block k, k). */
__global__ void t_keys_kernel(const int32_t *__restrict__ col_idx, int64_t nb,
                              uint64_t *__restrict__ keys, int32_t *__restrict__ vals)
{
    ST_GRID_STRIDE(k, nb)
    {
        keys[k] = (uint64_t)col_idx[k];
        vals[k] = (int32_t)k;
    }
}

/* t_blk / t_row from the sorted (column, block) pairs; the columns (as
 * int32, into cols) for t_ptr. */
__global__ void t_fill_kernel(const uint64_t *__restrict__ skeys, const int32_t *__restrict__ svals,
                              int64_t nb, const int32_t *__restrict__ row_of,
                              int32_t *__restrict__ t_blk, int32_t *__restrict__ t_row,
                              int32_t *__restrict__ cols)
{
    ST_GRID_STRIDE(j, nb)
    {
        t_blk[j] = svals[j];
        t_row[j] = row_of[svals[j]];
        cols[j] = (int32_t)skeys[j];
    }
}

} /* namespace */

/* ========================================================================
 * Launchers and the driver
 * ====================================================================== */

struct st_gpu_evolve_ws {
    int64_t nb_max, nnz_max, window, cap;
    uint64_t *key_a, *key_b;   /* cap: sort keys in / out                  */
    int32_t *val_a, *val_b;    /* cap: sort values in / out                */
    uint8_t *removed;          /* nb_max                                   */
    int32_t *flag, *rank;      /* window                                   */
    uint64_t *acc_pos;         /* nb_max: accepted positions, draw order   */
    uint64_t *acc_sorted;      /* nb_max: the same, sorted                 */
    int32_t *new_col, *new_row;/* nb_max                                   */
    float *nw, *nv;            /* nnz_max                                  */
    int32_t *small;            /* 8, device: counters                      */
    int32_t *small_host;       /* 8, pinned host mirror                    */
    void *temp;                /* CUB temporary storage                    */
    size_t temp_bytes;
};

static unsigned ev_blocks(int64_t n)
{
    int64_t b = (n + ST_EV_THREADS - 1) / ST_EV_THREADS;
    return (unsigned)(b < 1 ? 1 : (b < 65536 * 16 ? b : 65536 * 16));
}

#define ST_EV_LAUNCH(err, kernel, n, s, ...)                                                \
    do {                                                                                    \
        kernel<<<ev_blocks(n), ST_EV_THREADS, 0, s>>>(__VA_ARGS__);                         \
        ST_CUDA_LAUNCH_TRY(err, #kernel);                                                   \
    } while (0)

/* Stable radix sort of (keys, vals) over bits [0, end_bit). */
static int sort_pairs(st_gpu_evolve_ws *ws, const uint64_t *kin, uint64_t *kout,
                      const int32_t *vin, int32_t *vout, int64_t n, int end_bit, cudaStream_t s,
                      char *err)
{
    if (n <= 0)
        return 0;
    if (end_bit < 1)
        end_bit = 1;
    size_t need = 0;
    ST_CUDA_TRY(err, cub::DeviceRadixSort::SortPairs(nullptr, need, kin, kout, vin, vout, n, 0,
                                                     end_bit, s));
    if (need > ws->temp_bytes)
        return st_fail(err, "internal error: CUB sort of %lld items needs %zu bytes of "
                            "temporary storage, %zu were sized",
                       (long long)n, need, ws->temp_bytes);
    ST_CUDA_TRY(err, cub::DeviceRadixSort::SortPairs(ws->temp, need, kin, kout, vin, vout, n, 0,
                                                     end_bit, s));
    ST_GPU_SYNC_TRY(err, "cub::DeviceRadixSort::SortPairs");
    return 0;
}

static int exclusive_sum(st_gpu_evolve_ws *ws, const int32_t *in, int32_t *out, int64_t n,
                         cudaStream_t s, char *err)
{
    size_t need = 0;
    ST_CUDA_TRY(err, cub::DeviceScan::ExclusiveSum(nullptr, need, in, out, n, s));
    if (need > ws->temp_bytes)
        return st_fail(err, "internal error: CUB scan of %lld items needs %zu bytes of temporary "
                            "storage, %zu were sized",
                       (long long)n, need, ws->temp_bytes);
    ST_CUDA_TRY(err, cub::DeviceScan::ExclusiveSum(ws->temp, need, in, out, n, s));
    ST_GPU_SYNC_TRY(err, "cub::DeviceScan::ExclusiveSum");
    return 0;
}

/* Copy k counters from the device to the pinned mirror and wait. */
static int read_small(st_gpu_evolve_ws *ws, int k, cudaStream_t s, char *err)
{
    ST_CUDA_TRY(err, cudaMemcpyAsync(ws->small_host, ws->small, sizeof(int32_t) * (size_t)k,
                                     cudaMemcpyDeviceToHost, s));
    ST_CUDA_TRY(err, cudaStreamSynchronize(s));
    return 0;
}

extern "C" void st_gpu_evolve_ws_free(st_gpu_evolve_ws *ws)
{
    if (!ws)
        return;
    cudaFree(ws->key_a);
    cudaFree(ws->key_b);
    cudaFree(ws->val_a);
    cudaFree(ws->val_b);
    cudaFree(ws->removed);
    cudaFree(ws->flag);
    cudaFree(ws->rank);
    cudaFree(ws->acc_pos);
    cudaFree(ws->acc_sorted);
    cudaFree(ws->new_col);
    cudaFree(ws->new_row);
    cudaFree(ws->nw);
    cudaFree(ws->nv);
    cudaFree(ws->small);
    cudaFree(ws->temp);
    if (ws->small_host)
        cudaFreeHost(ws->small_host);
    free(ws);
}

extern "C" int64_t st_gpu_evolve_window(const st_gpu_evolve_ws *ws) { return ws->window; }

extern "C" int st_gpu_evolve_ws_create(st_gpu_evolve_ws **out, int64_t nb_max, int64_t nnz_max,
                                       double zeta, int64_t window, size_t *total, char *err)
{
    *out = NULL;
    st_gpu_evolve_ws *ws = (st_gpu_evolve_ws *)calloc(1, sizeof *ws);
    if (!ws)
        return st_fail(err, "out of host memory for the evolution workspace");
    if (nb_max < 1)
        nb_max = 1;
    if (nnz_max < 1)
        nnz_max = 1;
    if (window <= 0) {
        /* Enough for the usual case in one window: the expected draws are
         * n / (fraction of free positions), about n for sparse layers. */
        int64_t want = (int64_t)ceil(1.25 * zeta * (double)nb_max) + 1024;
        window = 4096;
        while (window < want && window < ((int64_t)1 << 25))
            window *= 2;
    }
    ws->nb_max = nb_max;
    ws->nnz_max = nnz_max;
    ws->window = window;
    ws->cap = 2 * nb_max > window ? 2 * nb_max : window;
    const size_t cap = (size_t)ws->cap, nbm = (size_t)nb_max;
    *out = ws; /* freed by the caller on failure too */
    ST_TRY(st_gpu_malloc((void **)&ws->key_a, cap * 8, 0, "evolution sort keys", total, err));
    ST_TRY(st_gpu_malloc((void **)&ws->key_b, cap * 8, 0, "evolution sort keys", total, err));
    ST_TRY(st_gpu_malloc((void **)&ws->val_a, cap * 4, 0, "evolution sort values", total, err));
    ST_TRY(st_gpu_malloc((void **)&ws->val_b, cap * 4, 0, "evolution sort values", total, err));
    ST_TRY(st_gpu_malloc((void **)&ws->removed, nbm, 0, "prune marks", total, err));
    ST_TRY(st_gpu_malloc((void **)&ws->flag, (size_t)window * 4, 0, "regrow flags", total, err));
    ST_TRY(st_gpu_malloc((void **)&ws->rank, (size_t)window * 4, 0, "regrow ranks", total, err));
    ST_TRY(st_gpu_malloc((void **)&ws->acc_pos, nbm * 8, 0, "regrow positions", total, err));
    ST_TRY(st_gpu_malloc((void **)&ws->acc_sorted, nbm * 8, 0, "regrow positions", total, err));
    ST_TRY(st_gpu_malloc((void **)&ws->new_col, nbm * 4, 0, "evolved columns", total, err));
    ST_TRY(st_gpu_malloc((void **)&ws->new_row, nbm * 4, 0, "evolved rows", total, err));
    ST_TRY(st_gpu_malloc((void **)&ws->nw, (size_t)nnz_max * 4, 0, "evolved weights", total, err));
    ST_TRY(st_gpu_malloc((void **)&ws->nv, (size_t)nnz_max * 4, 0, "evolved momentum", total, err));
    ST_TRY(st_gpu_malloc((void **)&ws->small, 8 * sizeof(int32_t), 0, "evolution counters", total,
                         err));
    ST_CUDA_TRY(err, cudaMallocHost((void **)&ws->small_host, 8 * sizeof(int32_t)));
    /* CUB temporary storage for the largest sort and scan. */
    size_t sort_bytes = 0, scan_bytes = 0;
    ST_CUDA_TRY(err, cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes,
                                                     (const uint64_t *)ws->key_a, ws->key_b,
                                                     (const int32_t *)ws->val_a, ws->val_b,
                                                     ws->cap, 0, 64));
    ST_CUDA_TRY(err, cub::DeviceScan::ExclusiveSum(nullptr, scan_bytes,
                                                   (const int32_t *)ws->flag, ws->rank,
                                                   ws->window));
    ws->temp_bytes = sort_bytes > scan_bytes ? sort_bytes : scan_bytes;
    ST_TRY(st_gpu_malloc(&ws->temp, ws->temp_bytes, 0, "CUB temporary storage", total, err));
    return 0;
}

extern "C" int st_gpu_evolve_layer(st_gpu_evolve_ws *ws, st_gpu_layer *L, int layer,
                                   uint64_t seed, int epoch, double zeta, float lim,
                                   st_evolve_stats *st, cudaStream_t s, char *err)
{
    memset(st, 0, sizeof *st);
    if (L->dense)
        return 0;
    const int64_t nb = L->nb;
    const int bs = L->bi * L->bo;
    st->blocks_before = nb;
    if (nb > ws->nb_max || nb * bs > ws->nnz_max)
        return st_fail(err, "internal error: layer %d has %lld blocks, the evolution workspace "
                            "was sized for %lld",
                       layer, (long long)nb, (long long)ws->nb_max);
    if (nb == 0)
        return 0;
    const uint64_t npos = (uint64_t)L->nbr * (uint64_t)L->nbc;
    const int pos_bits = st_bits_for(npos);

    /* 1. Prune. */
    ST_EV_LAUNCH(err, prune_keys_kernel, nb, s, L->w, nb, bs, ws->key_a, ws->val_a);
    ST_TRY(sort_pairs(ws, ws->key_a, ws->key_b, ws->val_a, ws->val_b, nb,
                      bs == 1 ? ST_PRUNE_KEY_M1_BITS : ST_PRUNE_KEY_BLOCK_BITS, s, err));
    int64_t a1, b0 = 0, b1 = 0, n;
    if (bs == 1) {
        ST_EV_LAUNCH(err, class_bounds_kernel, nb, s, ws->key_b, nb, ws->small);
        ST_TRY(read_small(ws, 4, s, err));
        const int64_t npos_w = ws->small_host[1], nneg_w = ws->small_host[2] - ws->small_host[1];
        const int64_t rpos = (int64_t)floor(zeta * (double)npos_w);
        const int64_t rneg = (int64_t)floor(zeta * (double)nneg_w);
        a1 = rpos;
        b0 = npos_w;
        b1 = npos_w + rneg;
        st->removed_pos = rpos;
        st->removed_neg = rneg;
        n = rpos + rneg;
    } else {
        n = a1 = (int64_t)floor(zeta * (double)nb);
    }
    st->removed = n;
    ST_CUDA_TRY(err, cudaMemsetAsync(ws->removed, 0, (size_t)nb, s));
    if (n > 0)
        ST_EV_LAUNCH(err, mark_kernel, n, s, ws->val_b, (int64_t)0, a1, b0, b1, ws->removed);

    /* 2. Regrow n blocks in windows of D draws. */
    const int64_t D = ws->window;
    int64_t got = 0;
    uint64_t d0 = 0, draws = 0;
    while (got < n) {
        const int64_t need = n - got;
        ST_EV_LAUNCH(err, candidates_kernel, D, s, D, d0, seed, layer, epoch, npos, L->nbc,
                     L->row_ptr, L->col_idx, ws->removed, ws->acc_sorted, got, ws->key_a,
                     ws->val_a);
        ST_TRY(sort_pairs(ws, ws->key_a, ws->key_b, ws->val_a, ws->val_b, D, pos_bits, s, err));
        ST_CUDA_TRY(err, cudaMemsetAsync(ws->flag, 0, sizeof(int32_t) * (size_t)D, s));
        ST_EV_LAUNCH(err, first_kernel, D, s, ws->key_b, ws->val_b, D, npos, ws->flag);
        ST_TRY(exclusive_sum(ws, ws->flag, ws->rank, D, s, err));
        ST_CUDA_TRY(err, cudaMemsetAsync(ws->small, 0xFF, 2 * sizeof(int32_t), s));
        ST_EV_LAUNCH(err, take_kernel, D, s, ws->flag, ws->rank, D, need, got, d0, seed, layer,
                     epoch, npos, ws->acc_pos, ws->small);
        ST_TRY(read_small(ws, 2, s, err));
        const int64_t cnt = ws->small_host[0];
        if (cnt >= need) {
            if (ws->small_host[1] < 0)
                return st_fail(err, "internal error: layer %d: regrow window lost its last "
                                    "acceptance",
                               layer);
            draws = d0 + (uint64_t)ws->small_host[1] + 1;
            got = n;
            break;
        }
        got += cnt;
        d0 += (uint64_t)D;
        /* Accepted so far, sorted, for the next window's membership test. */
        ST_EV_LAUNCH(err, iota_kernel, got, s, ws->val_a, got);
        ST_TRY(sort_pairs(ws, ws->acc_pos, ws->acc_sorted, ws->val_a, ws->val_b, got, pos_bits, s,
                          err));
    }
    st->regrown = got;
    st->draws = (int64_t)draws;

    /* 3. Rebuild the block-CSR (old row_ptr / col_idx are read before they
     * are rewritten: stream order). */
    ST_EV_LAUNCH(err, rebuild_keys_kernel, nb + n, s, nb, n, L->nbr, L->nbc, npos, L->row_ptr,
                 L->col_idx, ws->removed, ws->acc_pos, ws->key_a, ws->val_a);
    ST_TRY(sort_pairs(ws, ws->key_a, ws->key_b, ws->val_a, ws->val_b, nb + n, pos_bits, s, err));
    ST_EV_LAUNCH(err, rebuild_values_kernel, nb * bs, s, nb, bs, L->nbc, ws->key_b, ws->val_b,
                 L->w, L->v, seed, layer, epoch, lim, ws->new_col, ws->new_row, ws->nw, ws->nv);
    ST_EV_LAUNCH(err, ptr_from_groups_kernel, nb, s, ws->new_row, nb, L->nbr, L->row_ptr);
    ST_CUDA_TRY(err, cudaMemcpyAsync(L->col_idx, ws->new_col, sizeof(int32_t) * (size_t)nb,
                                     cudaMemcpyDeviceToDevice, s));
    ST_CUDA_TRY(err, cudaMemcpyAsync(L->w, ws->nw, sizeof(float) * (size_t)(nb * bs),
                                     cudaMemcpyDeviceToDevice, s));
    ST_CUDA_TRY(err, cudaMemcpyAsync(L->v, ws->nv, sizeof(float) * (size_t)(nb * bs),
                                     cudaMemcpyDeviceToDevice, s));

    /* Transposed index: stable sort of (column, block) keeps each column's
     * blocks in block order, i.e. by row. new_col doubles as the columns. */
    ST_EV_LAUNCH(err, t_keys_kernel, nb, s, L->col_idx, nb, ws->key_a, ws->val_a);
    ST_TRY(sort_pairs(ws, ws->key_a, ws->key_b, ws->val_a, ws->val_b, nb, st_bits_for(L->nbc), s,
                      err));
    ST_EV_LAUNCH(err, t_fill_kernel, nb, s, ws->key_b, ws->val_b, nb, ws->new_row, L->t_blk,
                 L->t_row, ws->new_col);
    ST_EV_LAUNCH(err, ptr_from_groups_kernel, nb, s, ws->new_col, nb, L->nbc, L->t_ptr);

    /* The invariant, checked on the device's own row pointers. */
    ST_CUDA_TRY(err, cudaMemcpyAsync(ws->small, L->row_ptr + L->nbr, sizeof(int32_t),
                                     cudaMemcpyDeviceToDevice, s));
    ST_TRY(read_small(ws, 1, s, err));
    st->blocks_after = ws->small_host[0];
    if (st->blocks_after != nb)
        return st_fail(err, "layer %d: block count changed from %lld to %lld during evolution",
                       layer, (long long)nb, (long long)st->blocks_after);
    return 0;
}
