/* test_gpu.c: the GPU backend against the CPU oracle.
 *
 * Host part (runs everywhere, also without a GPU or without CUDA):
 *   - the pure helpers the kernels share with the host (gpu_ops.h part 1):
 *     dropout groups bit for bit against cpu_dropout_mask, prune keys
 *     against float ordering, row lookup and pointer building;
 *   - a host transliteration of the device SET evolution
 *     (kernels/gpu_evolve.cu: prune by sorted keys, regrow in windows of D
 *     candidates with first-occurrence flags, scan and compaction, rebuild
 *     by sorted keys) with stable sorts standing in for CUB, compared bit
 *     for bit with src/model/evolve.c for m = 1, 2, 4, output blocks, and windows
 *     from 1 candidate (one acceptance at most per window) to one window;
 *   - backend_gpu_device_count() returns 0 without a device (that path runs
 *     here) and backend_gpu_create() fails with a sentence saying so.
 * Device part (skipped with "SKIP: no CUDA device (...)" when none):
 *   - every operator and kernel variant on the layers of small networks
 *     (m = 1, 2, 4, 8; dense and sparse output layer; an all-dense network)
 *     against the CPU operators: forward z, dropout mask (exact), every
 *     activation, softmax loss / count / delta, backward delta, weight and
 *     bias gradients, one optimiser step;
 *   - a whole epoch through the backend interface, with and without
 *     dropout, against the CPU backend (loss, accuracy, every weight,
 *     momentum and bias), then evaluation;
 *   - one and two evolution steps from identical weights (with ties and
 *     exact zeros) against layer_evolve: topology (row_ptr, col_idx, t_ptr,
 *     t_blk, t_row) and weights / momentum bit for bit, identical stats,
 *     also with a 7-candidate regrow window; then an epoch on the evolved
 *     topology (cuSPARSE plans refreshed);
 *   - which kernels ran: describe()'s "gpu_kernels" must equal the text the
 *     documented choice rules give (no silent fallback from cuSPARSE to
 *     the own kernels), with and without the ST_GPU_FWD / BWD / SDDMM and
 *     ST_GPU_SPMM_ALG overrides, each override also trained against the CPU;
 *   - a stop inside an epoch, a new backend from the synced model (what
 *     --resume does) and the rest of the epoch, then an evolution and an
 *     epoch: bit for bit the uninterrupted GPU run (m = 1 on CSR_ALG3,
 *     m = 4 on the block kernels);
 *   - ST_GPU_SYNC_CHECK=1: training still agrees, and a planted illegal
 *     address (in a child process) is reported by the launch that caused it;
 *   - the out-of-memory message and describe()'s JSON members.
 * ST_GPU_TEST_SHORT=1 runs a reduced device part (for compute-sanitizer):
 * the tests it leaves out are not run at all (so ST_TEST_NO_SKIP=1, which
 * makes a skip a failure, applies to the ones it runs).
 *
 * Legend: B batch, ld batch stride, I / O in / out features, m motif size,
 * bi x bo block shape, nb blocks, nnz stored weights. Host buffers unless
 * named d_* (device). */
#define _GNU_SOURCE
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "util/common.h"
#include "cpu/cpu_ops.h"
#include "gpu/gpu_ops.h"
#include "harness.h"
#include "model/model.h"
#include "test_rng.h"
#include "train/train.h"

#ifdef ST_HAVE_CUDA
#include "gpu/gpu_check.h"
#endif

/* ---- helpers ------------------------------------------------------------ */


static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        printf("out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

/* Weights quantised to multiples of 1/8 of the init limit: many exact ties
 * and zeros of both signs, so the prune tie rules are exercised. */
static void quantise_weights(st_layer *L)
{
    const float q = layer_init_limit(L) / 8.0f;
    for (int64_t e = 0; e < layer_nnz(L); e++)
        L->w[e] = q * roundf(L->w[e] / q);
}

/* Momentum U(-0.01, 0.01) so that "survivors keep momentum" is visible. */
static void random_momentum(st_model *m, uint64_t seed)
{
    trng_seed(seed);
    for (int l = 0; l < m->n_layers; l++) {
        st_layer *L = &m->layers[l];
        for (int64_t e = 0; e < layer_nnz(L); e++)
            L->v[e] = trng_unif(-0.01, 0.01);
        for (int32_t o = 0; o < L->n_out; o++) {
            L->bias[o] = trng_unif(-0.1, 0.1);
            L->vbias[o] = trng_unif(-0.01, 0.01);
        }
    }
}

/* Topology, weights and momentum of two layers, exactly. Returns mismatches. */
static int compare_layers_exact(const st_layer *A, const st_layer *B, const char *label)
{
    int bad = 0;
#define EXACT(cond, ...)                                                                    \
    do {                                                                                    \
        if (!(cond) && bad++ < 5) {                                                         \
            printf("      %s: ", label);                                                    \
            printf(__VA_ARGS__);                                                            \
            printf("\n");                                                                   \
        }                                                                                   \
    } while (0)
    EXACT(A->nb == B->nb, "nb %d vs %d", A->nb, B->nb);
    if (bad)
        return bad;
    if (!A->dense) {
        EXACT(!memcmp(A->row_ptr, B->row_ptr, sizeof(int32_t) * ((size_t)A->nbr + 1)),
              "row_ptr differs");
        EXACT(!memcmp(A->col_idx, B->col_idx, sizeof(int32_t) * (size_t)A->nb),
              "col_idx differs");
        EXACT(!memcmp(A->t_ptr, B->t_ptr, sizeof(int32_t) * ((size_t)A->nbc + 1)),
              "t_ptr differs");
        EXACT(!memcmp(A->t_blk, B->t_blk, sizeof(int32_t) * (size_t)A->nb), "t_blk differs");
        EXACT(!memcmp(A->t_row, B->t_row, sizeof(int32_t) * (size_t)A->nb), "t_row differs");
    }
    EXACT(!memcmp(A->w, B->w, sizeof(float) * (size_t)layer_nnz(A)), "weights differ");
    EXACT(!memcmp(A->v, B->v, sizeof(float) * (size_t)layer_nnz(A)), "momentum differs");
#undef EXACT
    return bad;
}

static int stats_equal(const st_evolve_stats *a, const st_evolve_stats *b)
{
    return a->blocks_before == b->blocks_before && a->blocks_after == b->blocks_after &&
           a->removed == b->removed && a->removed_pos == b->removed_pos &&
           a->removed_neg == b->removed_neg && a->regrown == b->regrown && a->draws == b->draws;
}

static void print_stats(const char *who, const st_evolve_stats *s)
{
    printf("      %s: before %lld after %lld removed %lld (+%lld -%lld) regrown %lld draws %lld\n",
           who, (long long)s->blocks_before, (long long)s->blocks_after, (long long)s->removed,
           (long long)s->removed_pos, (long long)s->removed_neg, (long long)s->regrown,
           (long long)s->draws);
}

/* ---- 1. pure helpers (host) ---------------------------------------------- */

/* st_dropout_group reproduces cpu_dropout_mask bit for bit (rates 0, 0.3,
 * 0.5; B a multiple of 8, not one, and 1; several batches and layers). */
static void test_dropout_group_matches_cpu(void)
{
    static const struct {
        int B, ld;
        float rate;
    } cases[] = {{16, 16, 0.3f}, {13, 16, 0.3f}, {1, 8, 0.5f}, {130, 136, 0.3f}, {64, 64, 0.0f}};
    const int64_t n = 37;
    int bad = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int B = cases[c].B, ld = cases[c].ld;
        float *mask = xmalloc(sizeof(float) * (size_t)(n * ld));
        for (int hidden = 1; hidden <= 2; hidden++)
            for (int batch = 0; batch < 3; batch++) {
                cpu_dropout_mask(42, hidden, 3, batch * 101, cases[c].rate, mask, n, B, ld);
                const uint32_t thresh = (uint32_t)lrintf(cases[c].rate * 65536.0f);
                const float keep = 1.0f / (1.0f - cases[c].rate);
                for (int64_t o = 0; o < n; o++)
                    for (int g = 0; g < ld / 8; g++) {
                        float m8[8];
                        st_dropout_group(42, hidden, 3, batch * 101, o, g, B, thresh, keep, m8);
                        if (memcmp(m8, mask + o * ld + 8 * g, sizeof m8) && bad++ < 5)
                            printf("      case %zu row %lld group %d differs\n", c, (long long)o,
                                   g);
                    }
            }
        free(mask);
    }
    ST_EXPECT(bad == 0, "%d dropout groups differ from cpu_dropout_mask", bad);
}

/* Prune keys order like the CPU's float comparisons: m = 1 keys put every
 * positive (by value) before every negative (by |w|) before zeros / NaN;
 * block keys order like the sequential |w| sums. */
static void test_prune_keys_order(void)
{
    float vals[] = {0.5f, -0.5f, 0.0f, -0.0f, 1e-40f, -1e-40f, 3.0f, -3.0f, 0.25f, -0.25f,
                    INFINITY, -INFINITY, NAN, 1e-30f, FLT_MIN, -FLT_MIN, 0.5f, -0.5f};
    const int n = (int)(sizeof vals / sizeof vals[0]);
    int bad = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            float a = vals[i], b = vals[j];
            uint64_t ka = st_prune_key_m1(a), kb = st_prune_key_m1(b);
            int ca = a > 0 ? 0 : (a < 0 ? 1 : 2), cb = b > 0 ? 0 : (b < 0 ? 1 : 2);
            int want;
            if (ca != cb)
                want = ca < cb ? -1 : 1;
            else if (ca == 2)
                want = 0;
            else {
                float fa = ca ? -a : a, fb = cb ? -b : b;
                want = fa < fb ? -1 : (fa > fb ? 1 : 0);
            }
            int got = ka < kb ? -1 : (ka > kb ? 1 : 0);
            if (got != want && bad++ < 5)
                printf("      keys of %g and %g compare %d, want %d\n", a, b, got, want);
            if ((ka >> ST_PRUNE_KEY_M1_BITS) != 0 && bad++ < 5)
                printf("      key of %g exceeds %d bits\n", a, ST_PRUNE_KEY_M1_BITS);
        }
    trng_seed(5);
    for (int t = 0; t < 2000; t++) {
        float wa[8], wb[8];
        float sa = 0.0f, sb = 0.0f;
        for (int e = 0; e < 8; e++)
            wa[e] = trng_unif(-1, 1);
        for (int e = 0; e < 8; e++) {
            wb[e] = t % 3 ? trng_unif(-1, 1) : -wa[7 - e]; /* same |w|, other order */
            sa += fabsf(wa[e]);
            sb += fabsf(wb[e]);
        }
        uint64_t ka = st_prune_key_block(wa, 8), kb = st_prune_key_block(wb, 8);
        int want = sa < sb ? -1 : (sa > sb ? 1 : 0), got = ka < kb ? -1 : (ka > kb ? 1 : 0);
        if (got != want && bad++ < 5)
            printf("      block sums %.9g, %.9g compare %d, want %d\n", sa, sb, got, want);
    }
    ST_EXPECT(bad == 0, "%d prune key order failures", bad);
}

/* st_row_of_block (with empty rows, first and last) and st_ptr_fill_item
 * rebuild a row_ptr; st_sorted_contains_u64; st_bits_for. */
static void test_row_and_ptr_helpers(void)
{
    const int32_t row_ptr[] = {0, 0, 3, 3, 4, 7, 7, 7};
    const int32_t nbr = 7, nb = 7;
    int32_t rows[7], ptr[8];
    int bad = 0;
    for (int32_t k = 0; k < nb; k++) {
        int32_t R = 0;
        while (row_ptr[R + 1] <= k)
            R++;
        rows[k] = st_row_of_block(row_ptr, nbr, k);
        if (rows[k] != R && bad++ < 5)
            printf("      row of block %d: %d, want %d\n", k, rows[k], R);
    }
    memset(ptr, 0x7F, sizeof ptr);
    for (int32_t k = 0; k < nb; k++)
        st_ptr_fill_item(ptr, k, nb, k ? rows[k - 1] : -1, rows[k], nbr);
    if (memcmp(ptr, row_ptr, sizeof ptr) && bad++ < 5)
        printf("      rebuilt row_ptr differs\n");
    const uint64_t sorted[] = {2, 5, 5, 9, 100};
    for (uint64_t x = 0; x < 102; x++) {
        int want = x == 2 || x == 5 || x == 9 || x == 100;
        if (st_sorted_contains_u64(sorted, 5, x) != want && bad++ < 5)
            printf("      contains(%llu) wrong\n", (unsigned long long)x);
    }
    if (st_sorted_contains_u64(sorted, 0, 2) && bad++ < 5)
        printf("      contains on an empty list\n");
    if ((st_bits_for(1) != 1 || st_bits_for(2) != 2 || st_bits_for(255) != 8 ||
         st_bits_for(256) != 9 || st_bits_for(UINT64_MAX) != 64) &&
        bad++ < 5)
        printf("      st_bits_for wrong\n");
    ST_EXPECT(bad == 0, "%d helper failures", bad);
}

/* ---- 2. host transliteration of the device evolution ---------------------- */

typedef struct {
    uint64_t key;
    int32_t val;
    int64_t pos;
} kv;

static int kv_cmp(const void *pa, const void *pb)
{
    const kv *a = pa, *b = pb;
    if (a->key != b->key)
        return a->key < b->key ? -1 : 1;
    return (a->pos > b->pos) - (a->pos < b->pos);
}

/* What cub::DeviceRadixSort::SortPairs does with bits [0, end_bit): a stable
 * sort by key (every key must fit the bits). Returns -1 if one does not. */
static int sort_pairs_host(const uint64_t *kin, uint64_t *kout, const int32_t *vin,
                           int32_t *vout, int64_t n, int end_bit)
{
    kv *t = xmalloc(sizeof(kv) * (size_t)(n + 1));
    int rc = 0;
    for (int64_t i = 0; i < n; i++) {
        if (end_bit < 64 && (kin[i] >> end_bit) != 0)
            rc = -1;
        t[i] = (kv){kin[i], vin[i], i};
    }
    qsort(t, (size_t)n, sizeof(kv), kv_cmp);
    for (int64_t i = 0; i < n; i++) {
        kout[i] = t[i].key;
        vout[i] = t[i].val;
    }
    free(t);
    return rc;
}

/* kernels/gpu_evolve.cu's st_gpu_evolve_layer, step for step, on the host. */
static int emulate_evolve(st_layer *L, int layer, uint64_t seed, int epoch, double zeta,
                          int64_t D, st_evolve_stats *st)
{
    memset(st, 0, sizeof *st);
    const int64_t nb = L->nb;
    const int bs = L->bi * L->bo;
    st->blocks_before = nb;
    if (nb == 0)
        return 0;
    const uint64_t npos = (uint64_t)L->nbr * (uint64_t)L->nbc;
    const int pos_bits = st_bits_for(npos);
    const int64_t cap = 2 * nb > D ? 2 * nb : D;
    uint64_t *ka = xmalloc(8 * (size_t)cap), *kb = xmalloc(8 * (size_t)cap);
    int32_t *va = xmalloc(4 * (size_t)cap), *vb = xmalloc(4 * (size_t)cap);
    uint8_t *removed = calloc((size_t)nb, 1);
    int32_t *flag = xmalloc(4 * (size_t)D), *rank = xmalloc(4 * (size_t)D);
    uint64_t *acc_pos = xmalloc(8 * (size_t)nb), *acc_sorted = xmalloc(8 * (size_t)nb);
    int rc = 0;

    /* 1. prune */
    for (int64_t k = 0; k < nb; k++) {
        ka[k] = bs == 1 ? st_prune_key_m1(L->w[k]) : st_prune_key_block(L->w + k * bs, bs);
        va[k] = (int32_t)k;
    }
    rc |= sort_pairs_host(ka, kb, va, vb, nb, bs == 1 ? ST_PRUNE_KEY_M1_BITS : 32);
    int64_t a1, b0 = 0, b1 = 0, n;
    if (bs == 1) {
        int32_t bounds[4];
        for (int64_t i = 0; i < nb; i++)
            st_ptr_fill_item(bounds, i, nb, i ? (int32_t)(kb[i - 1] >> 32) : -1,
                             (int32_t)(kb[i] >> 32), 3);
        int64_t np = bounds[1], nn = bounds[2] - bounds[1];
        int64_t rpos = (int64_t)floor(zeta * (double)np), rneg = (int64_t)floor(zeta * (double)nn);
        a1 = rpos;
        b0 = np;
        b1 = np + rneg;
        st->removed_pos = rpos;
        st->removed_neg = rneg;
        n = rpos + rneg;
    } else {
        n = a1 = (int64_t)floor(zeta * (double)nb);
    }
    st->removed = n;
    for (int64_t t = 0; t < a1 + (b1 - b0); t++)
        removed[vb[t < a1 ? t : b0 + (t - a1)]] = 1;

    /* 2. regrow in windows */
    int64_t got = 0;
    uint64_t d0 = 0, draws = 0;
    while (got < n) {
        const int64_t need = n - got;
        for (int64_t i = 0; i < D; i++) {
            uint64_t pos = st_regrow_candidate(seed, layer, epoch, d0 + (uint64_t)i, npos);
            int32_t R = (int32_t)(pos / (uint64_t)L->nbc), C = (int32_t)(pos % (uint64_t)L->nbc);
            int taken = st_block_occupied(L->row_ptr, L->col_idx, removed, R, C) ||
                        st_sorted_contains_u64(acc_sorted, got, pos);
            ka[i] = taken ? npos : pos;
            va[i] = (int32_t)i;
        }
        rc |= sort_pairs_host(ka, kb, va, vb, D, pos_bits);
        memset(flag, 0, 4 * (size_t)D);
        for (int64_t j = 0; j < D; j++)
            if (kb[j] != npos && (j == 0 || kb[j - 1] != kb[j]))
                flag[vb[j]] = 1;
        for (int64_t i = 0, s = 0; i < D; i++) {
            rank[i] = (int32_t)s;
            s += flag[i];
        }
        int64_t last = -1;
        for (int64_t i = 0; i < D; i++)
            if (flag[i] && rank[i] < need) {
                acc_pos[got + rank[i]] =
                    st_regrow_candidate(seed, layer, epoch, d0 + (uint64_t)i, npos);
                if (rank[i] == need - 1)
                    last = i;
            }
        const int64_t cnt = rank[D - 1] + flag[D - 1];
        if (cnt >= need) {
            draws = d0 + (uint64_t)last + 1;
            got = n;
            break;
        }
        got += cnt;
        d0 += (uint64_t)D;
        for (int64_t i = 0; i < got; i++)
            va[i] = (int32_t)i;
        rc |= sort_pairs_host(acc_pos, acc_sorted, va, vb, got, pos_bits);
    }
    st->regrown = got;
    st->draws = (int64_t)draws;

    /* 3. rebuild */
    for (int64_t i = 0; i < nb + n; i++) {
        if (i < nb) {
            ka[i] = removed[i] ? npos
                               : (uint64_t)st_row_of_block(L->row_ptr, L->nbr, (int32_t)i) *
                                         (uint64_t)L->nbc +
                                     (uint64_t)L->col_idx[i];
            va[i] = (int32_t)i;
        } else {
            ka[i] = acc_pos[i - nb];
            va[i] = -(int32_t)(i - nb) - 1;
        }
    }
    rc |= sort_pairs_host(ka, kb, va, vb, nb + n, pos_bits);
    int32_t *new_col = xmalloc(4 * (size_t)nb), *new_row = xmalloc(4 * (size_t)nb);
    float *nw = xmalloc(4 * (size_t)(nb * bs)), *nv = xmalloc(4 * (size_t)(nb * bs));
    const float lim = layer_init_limit(L);
    for (int64_t e = 0; e < nb * bs; e++) {
        int64_t i = e / bs;
        int t = (int)(e - i * bs);
        int32_t src = vb[i];
        if (t == 0) {
            new_col[i] = (int32_t)(kb[i] % (uint64_t)L->nbc);
            new_row[i] = (int32_t)(kb[i] / (uint64_t)L->nbc);
        }
        if (src >= 0) {
            nw[e] = L->w[(int64_t)src * bs + t];
            nv[e] = L->v[(int64_t)src * bs + t];
        } else {
            nw[e] = st_regrow_weight(seed, layer, epoch, -src - 1, bs, t, lim);
            nv[e] = 0.0f;
        }
    }
    for (int64_t i = 0; i < nb; i++)
        st_ptr_fill_item(L->row_ptr, i, nb, i ? new_row[i - 1] : -1, new_row[i], L->nbr);
    memcpy(L->col_idx, new_col, 4 * (size_t)nb);
    memcpy(L->w, nw, 4 * (size_t)(nb * bs));
    memcpy(L->v, nv, 4 * (size_t)(nb * bs));
    for (int64_t k = 0; k < nb; k++) {
        ka[k] = (uint64_t)L->col_idx[k];
        va[k] = (int32_t)k;
    }
    rc |= sort_pairs_host(ka, kb, va, vb, nb, st_bits_for((uint64_t)L->nbc));
    for (int64_t j = 0; j < nb; j++) {
        L->t_blk[j] = vb[j];
        L->t_row[j] = new_row[vb[j]];
        new_col[j] = (int32_t)kb[j];
    }
    for (int64_t j = 0; j < nb; j++)
        st_ptr_fill_item(L->t_ptr, j, nb, j ? new_col[j - 1] : -1, new_col[j], L->nbc);
    st->blocks_after = L->row_ptr[L->nbr];
    free(ka);
    free(kb);
    free(va);
    free(vb);
    free(removed);
    free(flag);
    free(rank);
    free(acc_pos);
    free(acc_sorted);
    free(new_col);
    free(new_row);
    free(nw);
    free(nv);
    return rc;
}

/* The windowed device algorithm (on the host) evolves every sparse layer of
 * networks with m = 1, 2, 4 exactly as src/model/evolve.c: same topology and
 * transposed index, same weights and momentum bit for bit, same stats, for
 * windows of 1 (many windows, one acceptance each at most), 7, 64 and one
 * big window; two epochs in a row. The first network has a dense-ish
 * layer (p = 0.6) where many candidates collide with present blocks. */
static void test_evolve_window_emulation(void)
{
    static const struct {
        int32_t sizes[4];
        int n_layers, motif;
        double eps;
    } nets[] = {{{40, 30, 20, 10}, 3, 1, 12.0},
                {{48, 64, 32, 6}, 3, 2, 4.0},
                {{64, 96, 80, 10}, 3, 4, 6.0},
                {{200, 120, 10, 0}, 2, 1, 3.0}};
    static const int64_t windows[] = {1, 7, 64, 1 << 16};
    char err[ST_ERRLEN];
    int bad = 0, layers_checked = 0;
    for (size_t t = 0; t < sizeof nets / sizeof nets[0]; t++)
        for (size_t w = 0; w < sizeof windows / sizeof windows[0]; w++) {
            st_model A, B;
            if (model_init(&A, nets[t].sizes, nets[t].n_layers, nets[t].motif, nets[t].eps, 9 + t,
                           err) ||
                model_init(&B, nets[t].sizes, nets[t].n_layers, nets[t].motif, nets[t].eps, 9 + t,
                           err)) {
                ST_EXPECT(0, "model_init: %s", err);
                model_free(&A);
                model_free(&B);
                return;
            }
            random_momentum(&A, 77);
            random_momentum(&B, 77);
            for (int l = 0; l < A.n_layers; l++) {
                quantise_weights(&A.layers[l]);
                quantise_weights(&B.layers[l]);
            }
            for (int epoch = 1; epoch <= 2; epoch++)
                for (int l = 0; l < A.n_layers; l++) {
                    if (A.layers[l].dense)
                        continue;
                    st_evolve_stats sa, sb;
                    ST_EXPECT(layer_evolve(&A.layers[l], l + 1, 3, epoch, 0.3, &sa, err) == 0,
                              "%s", err);
                    int rc = emulate_evolve(&B.layers[l], l + 1, 3, epoch, 0.3, windows[w], &sb);
                    char label[96];
                    snprintf(label, sizeof label, "net %zu window %lld epoch %d layer %d", t,
                             (long long)windows[w], epoch, l + 1);
                    if (rc) {
                        printf("      %s: a sort key exceeded its bit range\n", label);
                        bad++;
                    }
                    if (!stats_equal(&sa, &sb)) {
                        printf("      %s: stats differ\n", label);
                        print_stats("cpu", &sa);
                        print_stats("emulated", &sb);
                        bad++;
                    }
                    bad += compare_layers_exact(&A.layers[l], &B.layers[l], label);
                    layers_checked++;
                }
            model_free(&A);
            model_free(&B);
        }
    printf("    %d layer evolutions compared\n", layers_checked);
    ST_EXPECT(bad == 0, "%d differences between the windowed algorithm and src/model/evolve.c", bad);
    ST_EXPECT(layers_checked >= 40, "only %d layer evolutions were compared", layers_checked);
}

/* ---- 3. the no-device path ------------------------------------------------ */

#ifdef ST_HAVE_CUDA
/* 1 when a device is present; else a skip reason in why. */
static int have_device(char *why, size_t n)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        snprintf(why, n, "no CUDA device (cudaGetDeviceCount: %s)", cudaGetErrorString(e));
        return 0;
    }
    if (count < 1) {
        snprintf(why, n, "no CUDA device (cudaGetDeviceCount reported 0)");
        return 0;
    }
    return 1;
}
#endif

/* backend_gpu_device_count() and backend_gpu_create() without a device:
 * 0 and NULL with a sentence naming the problem (runs on this machine). */
static void test_device_count_path(void)
{
#ifndef ST_HAVE_CUDA
    ST_SKIP("built without CUDA (make NVCC=): there is no GPU backend to test");
#else
    char why[256], err[ST_ERRLEN] = "";
    int count = backend_gpu_device_count();
    if (have_device(why, sizeof why)) {
        ST_EXPECT(count > 0, "a device is present but backend_gpu_device_count() = %d", count);
        printf("    %d CUDA device(s)\n", count);
        return;
    }
    printf("    %s\n", why);
    ST_EXPECT(count == 0, "backend_gpu_device_count() = %d without a device", count);
    st_config cfg;
    config_defaults(&cfg);
    cfg.quiet = 1;
    const int32_t sizes[] = {16, 8, 4};
    st_model m;
    ST_EXPECT(model_init(&m, sizes, 2, 1, 4.0, 1, err) == 0, "%s", err);
    st_dataset ds;
    memset(&ds, 0, sizeof ds);
    ds.n_train = 1;
    ds.d = 16;
    ds.k = 4;
    float x[16] = {0};
    int32_t y[1] = {0};
    ds.x_train = x;
    ds.y_train = y;
    st_backend *be = backend_gpu_create(&m, &ds, &cfg, err);
    ST_EXPECT(be == NULL, "backend_gpu_create succeeded without a device");
    ST_EXPECT(strstr(err, "CUDA device") != NULL, "unhelpful message: '%s'", err);
    printf("    backend_gpu_create: %s\n", err);
    if (be)
        be->ops->destroy(be);
    model_free(&m);
#endif
}

/* ---- 4. device tests ------------------------------------------------------ */

#ifdef ST_HAVE_CUDA

static int env_set(const char *name)
{
    const char *s = getenv(name);
    return s && *s && strcmp(s, "0") != 0;
}

static int short_mode(void) { return env_set("ST_GPU_TEST_SHORT"); }
static int no_fallback(void) { return env_set("ST_GPU_NO_FALLBACK"); }

#define SKIP_WITHOUT_DEVICE()                                                               \
    do {                                                                                    \
        char why_[256];                                                                     \
        if (!have_device(why_, sizeof why_))                                                \
            ST_SKIP("%s", why_);                                                            \
    } while (0)

/* The launchers run on a non-blocking stream, which does not wait for the
 * legacy default stream that cudaMemcpy / cudaMemset use: every helper
 * below therefore ends with a device synchronisation. */
static void dev_memset(void *d, int value, size_t bytes)
{
    ST_CUDA_CHECK(cudaMemset(d, value, bytes));
    ST_CUDA_CHECK(cudaDeviceSynchronize());
}

static float *dev_upload(const void *h, size_t bytes)
{
    void *d = NULL;
    ST_CUDA_CHECK(cudaMalloc(&d, bytes ? bytes : 16));
    if (h)
        ST_CUDA_CHECK(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice));
    else
        ST_CUDA_CHECK(cudaMemset(d, 0, bytes ? bytes : 16));
    ST_CUDA_CHECK(cudaDeviceSynchronize());
    return (float *)d;
}

static void dev_download(void *h, const void *d, size_t bytes)
{
    ST_CUDA_CHECK(cudaDeviceSynchronize());
    ST_CUDA_CHECK(cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost));
}

/* Count element-wise failures, print the first few. */
static int bad_count;
static void bad_reset(void) { bad_count = 0; }
static void bad_note(const char *label, int64_t e, double got, double want)
{
    if (bad_count++ < 5)
        printf("      %s[%lld]: got %.9g, want %.9g\n", label, (long long)e, got, want);
}

/* |got - want| <= atol + rtol |want| over n floats; returns failures. */
static int compare_floats(const char *label, const float *got, const float *want, int64_t n,
                          double atol, double rtol)
{
    bad_reset();
    for (int64_t e = 0; e < n; e++)
        if (!st_close(got[e], want[e], atol, rtol))
            bad_note(label, e, got[e], want[e]);
    if (bad_count)
        printf("      %s: %d of %lld outside atol %g rtol %g\n", label, bad_count, (long long)n,
               atol, rtol);
    return bad_count;
}

/* Tolerances. Inputs are U(-1, 1), weights He-uniform (|w| <= sqrt(6/I)),
 * so every sum here has at most ~200 terms of magnitude <= 1. Two float32
 * summation orders (the GPU's tree / FMA order vs the CPU's vector order)
 * then differ by at most n 2^-24 sum|terms| (~2e-3 in the very worst case)
 * and typically by sqrt(n) 2^-24 |sum| ~ 1e-6; an indexing error moves a
 * value by the size of a term (~0.05 and up). ATOL / RTOL sit in between,
 * 100x above the typical rounding and far below any real error. */
#define OP_ATOL 1e-4
#define OP_RTOL 1e-4
/* After a whole epoch the rounding differences of every step feed the next
 * (momentum accumulates them); over ~5 batches they stay ~1e-6 relative,
 * and 1e-3 relative (1e-4 absolute) still catches any logic error, which
 * moves a weight by a full learning-rate step (~1e-3 .. 1e-2). */
#define EPOCH_ATOL 1e-4
#define EPOCH_RTOL 1e-3
/* ReLU and All-ReLU have a kink at 0: a pre-activation within rounding of 0
 * (|z| ~ 1e-7, a few times in a million elements) may take the other
 * branch of f' on the GPU, which changes that sample's contribution to one
 * row or column of weights by up to lr |delta a| ~ 1e-4 per step. With a
 * kinked activation an array may therefore hold a few such outliers: at
 * most 2 + n / 200 entries beyond the epoch tolerance, none beyond
 * KINK_ATOL. A logic error disturbs most entries of an array. */
#define KINK_ATOL 1e-2

typedef struct {
    const char *name;
    int32_t sizes[4];
    int n_layers;
    double eps; /* picks which layers are dense (p >= 1) */
} net_spec;

/* Small networks for motif m (every input / hidden size divisible by 8):
 * eps 6: every layer sparse (output p = 0.675); eps 10: dense output layer
 * (p = 1.125) and sparse hidden ones; eps 1000: every layer dense. */
static const net_spec nets_sparse_out = {"sparse output", {64, 96, 80, 10}, 3, 6.0};
static const net_spec nets_dense_out = {"dense output", {64, 96, 80, 10}, 3, 10.0};
static const net_spec nets_all_dense = {"all dense", {64, 96, 80, 10}, 3, 1000.0};

static void fill_uniform(float *x, int64_t n, double lo, double hi)
{
    for (int64_t e = 0; e < n; e++)
        x[e] = trng_unif(lo, hi);
}

/* (rows, ld) with columns >= B zero: the contract for deltas. */
static void zero_padding(float *x, int64_t rows, int B, int ld)
{
    for (int64_t r = 0; r < rows; r++)
        for (int b = B; b < ld; b++)
            x[r * ld + b] = 0.0f;
}

/* Every operator of one layer against the CPU, for every variant. */
static int check_layer_ops(st_gpu_ctx *ctx, st_layer *H, int l, int n_layers, int B, int ld)
{
    char err[ST_ERRLEN], label[128];
    int bad = 0;
    const int64_t I = H->n_in, O = H->n_out, nnz = layer_nnz(H);
    st_gpu_layer G;
    if (st_gpu_layer_create(&G, H, l + 1, NULL, err)) {
        printf("      %s\n", err);
        return 1;
    }
    float *a = xmalloc(sizeof(float) * (size_t)(I * ld));
    float *zin = xmalloc(sizeof(float) * (size_t)(I * ld));
    float *mask = xmalloc(sizeof(float) * (size_t)(I * ld));
    float *dout = xmalloc(sizeof(float) * (size_t)(O * ld));
    float *zc = xmalloc(sizeof(float) * (size_t)(O * ld)), *zg = xmalloc(sizeof(float) * (size_t)(O * ld));
    float *dc = xmalloc(sizeof(float) * (size_t)(I * ld)), *dg = xmalloc(sizeof(float) * (size_t)(I * ld));
    float *gwc = xmalloc(sizeof(float) * (size_t)nnz), *gwg = xmalloc(sizeof(float) * (size_t)nnz);
    float *gbc = xmalloc(sizeof(float) * (size_t)O), *gbg = xmalloc(sizeof(float) * (size_t)O);
    fill_uniform(a, I * ld, -1, 1); /* padding columns too: the CPU reads them as well */
    fill_uniform(zin, I * ld, -1, 1);
    fill_uniform(dout, O * ld, -0.1, 0.1);
    zero_padding(dout, O, B, ld);
    cpu_dropout_mask(11, l, 2, 5, 0.3f, mask, I, B, ld);
    float *d_a = dev_upload(a, sizeof(float) * (size_t)(I * ld));
    float *d_zin = dev_upload(zin, sizeof(float) * (size_t)(I * ld));
    float *d_mask = dev_upload(mask, sizeof(float) * (size_t)(I * ld));
    float *d_dout = dev_upload(dout, sizeof(float) * (size_t)(O * ld));
    float *d_z = dev_upload(NULL, sizeof(float) * (size_t)(O * ld));
    float *d_din = dev_upload(NULL, sizeof(float) * (size_t)(I * ld));
    float *d_gw = dev_upload(NULL, sizeof(float) * (size_t)nnz);
    float *d_gb = dev_upload(NULL, sizeof(float) * (size_t)O);
    float *d_scratch = dev_upload(NULL, sizeof(float) * (size_t)nnz);
    cudaStream_t s = ctx->stream;
    const int blk = !H->dense && st_gpu_block_supported(H->bi, H->bo);

    /* Forward: every variant, cuSPARSE CSR with the library's default
     * algorithm and with the backend's default, CSR_ALG3. Pass 0 is
     * CSR_ALG3 (1 x 1 blocks only), pass v >= 1 variant v. */
    cpu_layer_forward(H, a, zc, ld);
    for (int pass = 0; pass <= ST_GPU_VAR_BLOCK; pass++) {
        const int csr_alg3 = pass == 0;
        const int var = csr_alg3 ? ST_GPU_VAR_CUSPARSE : pass;
        if (csr_alg3 && (H->dense || H->bi != 1 || H->bo != 1))
            continue;
        if (H->dense && var != ST_GPU_VAR_CUSPARSE)
            continue;
        if (!H->dense && var == ST_GPU_VAR_BLOCK && !blk)
            continue;
        if (!H->dense && var == ST_GPU_VAR_CUSPARSE && H->bi != H->bo)
            continue; /* the backend uses cuSPARSE BSR for square blocks only */
        int rc = 0;
        st_gpu_spmm plan;
        memset(&plan, 0, sizeof plan);
        if (H->dense) {
            rc = st_gpu_forward_dense(ctx, &G, d_a, d_z, ld, err);
            snprintf(label, sizeof label, "layer %d forward cublas", l + 1);
        } else if (var == ST_GPU_VAR_CUSPARSE) {
            const int bsr = !(H->bi == 1 && H->bo == 1);
            snprintf(label, sizeof label, "layer %d forward cusparse-%s", l + 1,
                     bsr ? "bsr" : (csr_alg3 ? "csr(csr3)" : "csr(default)"));
            rc = st_gpu_spmm_init(&plan, ctx, &G, bsr,
                                  csr_alg3 ? CUSPARSE_SPMM_CSR_ALG3 : CUSPARSE_SPMM_ALG_DEFAULT,
                                  d_a, d_z, ld, l + 1, NULL, err);
            if (rc > 0 && bsr) { /* BSR of this block shape not offered: note it */
                printf("      %s: not supported here (%s)\n", label, err);
                if (no_fallback()) {
                    printf("      ST_GPU_NO_FALLBACK=1: that is a failure\n");
                    bad++;
                }
                continue;
            }
            if (rc == 0)
                rc = st_gpu_spmm_run(&plan, ctx, &G, d_z, ld, err);
        } else {
            snprintf(label, sizeof label, "layer %d forward %s", l + 1, st_gpu_variant_names[var]);
            rc = st_gpu_forward_sparse((st_gpu_variant)var, &G, d_a, d_z, ld, s, err);
        }
        if (rc) {
            printf("      %s: %s\n", label, err);
            bad++;
        } else {
            dev_download(zg, d_z, sizeof(float) * (size_t)(O * ld));
            bad += compare_floats(label, zg, zc, O * ld, OP_ATOL, OP_RTOL) > 0;
        }
        st_gpu_spmm_free(&plan);
        dev_memset(d_z, 0, sizeof(float) * (size_t)(O * ld));
    }

    /* Backward delta into this layer's input (a hidden layer when l > 0). */
    if (l > 0) {
        static const st_activation acts[] = {ST_ACT_RELU, ST_ACT_ALLRELU, ST_ACT_SIGMOID,
                                             ST_ACT_TANH};
        for (size_t ai = 0; ai < sizeof acts / sizeof acts[0]; ai++)
            for (int masked = 0; masked <= 1; masked++) {
                cpu_layer_backward_delta(H, dout, zin, masked ? mask : NULL, acts[ai], l, dc, ld);
                for (int var = ST_GPU_VAR_ROW; var <= ST_GPU_VAR_BLOCK; var++) {
                    if ((H->dense && var == ST_GPU_VAR_BLOCK) || (var == ST_GPU_VAR_BLOCK && !blk))
                        continue;
                    snprintf(label, sizeof label, "layer %d backward %s act %s%s", l + 1,
                             H->dense ? "cublas" : st_gpu_variant_names[var],
                             st_activation_names[acts[ai]], masked ? " masked" : "");
                    int rc = H->dense ? st_gpu_backward_dense(ctx, &G, d_dout, d_zin,
                                                              masked ? d_mask : NULL, acts[ai], l,
                                                              d_din, ld, err)
                                      : st_gpu_backward_sparse((st_gpu_variant)var, &G, d_dout,
                                                               d_zin, masked ? d_mask : NULL,
                                                               acts[ai], l, d_din, ld, s, err);
                    if (rc) {
                        printf("      %s: %s\n", label, err);
                        bad++;
                        continue;
                    }
                    dev_download(dg, d_din, sizeof(float) * (size_t)(I * ld));
                    bad += compare_floats(label, dg, dc, I * ld, OP_ATOL, OP_RTOL) > 0;
                }
            }
    }

    /* Gradients (no update), then one fused optimiser step. */
    cpu_layer_grad(H, a, dout, ld, gwc, gbc);
    for (int var = ST_GPU_VAR_ROW; var <= ST_GPU_VAR_BLOCK; var++) {
        if ((H->dense && var == ST_GPU_VAR_BLOCK) || (var == ST_GPU_VAR_BLOCK && !blk))
            continue;
        snprintf(label, sizeof label, "layer %d gradient %s", l + 1,
                 H->dense ? "cublas" : st_gpu_variant_names[var]);
        if (st_gpu_layer_grad_update(ctx, (st_gpu_variant)var, &G, d_a, d_dout, ld, 0.01f, 0.9f,
                                     2e-4f, d_gw, d_gb, d_scratch, err)) {
            printf("      %s: %s\n", label, err);
            bad++;
            continue;
        }
        dev_download(gwg, d_gw, sizeof(float) * (size_t)nnz);
        dev_download(gbg, d_gb, sizeof(float) * (size_t)O);
        bad += compare_floats(label, gwg, gwc, nnz, OP_ATOL, OP_RTOL) > 0;
        bad += compare_floats("bias gradient", gbg, gbc, O, OP_ATOL, OP_RTOL) > 0;
    }
    for (int var = ST_GPU_VAR_ROW; var <= ST_GPU_VAR_BLOCK; var++) {
        if ((H->dense && var == ST_GPU_VAR_BLOCK) || (var == ST_GPU_VAR_BLOCK && !blk))
            continue;
        st_layer C = *H; /* CPU copy of the values (topology shared, read only) */
        C.w = xmalloc(sizeof(float) * (size_t)nnz);
        C.v = xmalloc(sizeof(float) * (size_t)nnz);
        C.bias = xmalloc(sizeof(float) * (size_t)O);
        C.vbias = xmalloc(sizeof(float) * (size_t)O);
        memcpy(C.w, H->w, sizeof(float) * (size_t)nnz);
        memcpy(C.v, H->v, sizeof(float) * (size_t)nnz);
        memcpy(C.bias, H->bias, sizeof(float) * (size_t)O);
        memcpy(C.vbias, H->vbias, sizeof(float) * (size_t)O);
        cpu_layer_update(&C, gwc, gbc, 0.01f, 0.9f, 2e-4f);
        char e2[ST_ERRLEN];
        ST_CUDA_CHECK(cudaDeviceSynchronize());
        if (st_gpu_layer_upload(&G, H, s, e2) ||
            st_gpu_layer_grad_update(ctx, (st_gpu_variant)var, &G, d_a, d_dout, ld, 0.01f, 0.9f,
                                     2e-4f, NULL, NULL, d_scratch, e2)) {
            printf("      update: %s\n", e2);
            bad++;
        } else {
            st_layer R = *H;
            R.w = gwg; /* reuse buffers: nnz / O floats */
            R.bias = gbg;
            float *rv = xmalloc(sizeof(float) * (size_t)nnz), *rvb = xmalloc(sizeof(float) * (size_t)O);
            dev_download(R.w, G.w, sizeof(float) * (size_t)nnz);
            dev_download(rv, G.v, sizeof(float) * (size_t)nnz);
            dev_download(R.bias, G.bias, sizeof(float) * (size_t)O);
            dev_download(rvb, G.vbias, sizeof(float) * (size_t)O);
            snprintf(label, sizeof label, "layer %d step %s w", l + 1,
                     H->dense ? "cublas" : st_gpu_variant_names[var]);
            bad += compare_floats(label, R.w, C.w, nnz, OP_ATOL, OP_RTOL) > 0;
            bad += compare_floats("step v", rv, C.v, nnz, OP_ATOL, OP_RTOL) > 0;
            bad += compare_floats("step bias", R.bias, C.bias, O, OP_ATOL, OP_RTOL) > 0;
            bad += compare_floats("step vbias", rvb, C.vbias, O, OP_ATOL, OP_RTOL) > 0;
            free(rv);
            free(rvb);
        }
        free(C.w);
        free(C.v);
        free(C.bias);
        free(C.vbias);
    }
    (void)n_layers;
    cudaFree(d_a);
    cudaFree(d_zin);
    cudaFree(d_mask);
    cudaFree(d_dout);
    cudaFree(d_z);
    cudaFree(d_din);
    cudaFree(d_gw);
    cudaFree(d_gb);
    cudaFree(d_scratch);
    st_gpu_layer_free(&G);
    free(a);
    free(zin);
    free(mask);
    free(dout);
    free(zc);
    free(zg);
    free(dc);
    free(dg);
    free(gwc);
    free(gwg);
    free(gbc);
    free(gbg);
    return bad;
}

/* Element-wise operators: dropout mask (exact), activations, softmax. */
static int check_elementwise(st_gpu_ctx *ctx, int B, int ld)
{
    char err[ST_ERRLEN];
    int bad = 0;
    const int64_t n = 45, K = 10;
    cudaStream_t s = ctx->stream;
    float *z = xmalloc(sizeof(float) * (size_t)(n * ld)), *mc = xmalloc(sizeof(float) * (size_t)(n * ld));
    float *mg = xmalloc(sizeof(float) * (size_t)(n * ld)), *ac = xmalloc(sizeof(float) * (size_t)(n * ld));
    float *ag = xmalloc(sizeof(float) * (size_t)(n * ld));
    fill_uniform(z, n * ld, -3, 3);
    float *d_z = dev_upload(z, sizeof(float) * (size_t)(n * ld));
    float *d_m = dev_upload(NULL, sizeof(float) * (size_t)(n * ld));
    float *d_a = dev_upload(NULL, sizeof(float) * (size_t)(n * ld));
    for (int hidden = 1; hidden <= 2; hidden++) {
        cpu_dropout_mask(5, hidden, 4, 9, 0.3f, mc, n, B, ld);
        if (st_gpu_dropout_mask(5, hidden, 4, 9, 0.3f, d_m, n, B, ld, s, err)) {
            printf("      %s\n", err);
            bad++;
            continue;
        }
        dev_download(mg, d_m, sizeof(float) * (size_t)(n * ld));
        if (memcmp(mg, mc, sizeof(float) * (size_t)(n * ld))) {
            printf("      dropout mask (hidden %d, B %d, ld %d) differs from the CPU's\n", hidden,
                   B, ld);
            bad++;
        }
        for (int act = 0; act < ST_ACT_COUNT; act++)
            for (int masked = 0; masked <= 1; masked++) {
                cpu_activation_forward((st_activation)act, hidden, z, masked ? mc : NULL, ac, n, ld);
                if (st_gpu_activation_forward((st_activation)act, hidden, d_z, masked ? d_m : NULL,
                                              d_a, n, ld, s, err)) {
                    printf("      %s\n", err);
                    bad++;
                    continue;
                }
                dev_download(ag, d_a, sizeof(float) * (size_t)(n * ld));
                char label[64];
                snprintf(label, sizeof label, "activation %s hidden %d%s",
                         st_activation_names[act], hidden, masked ? " masked" : "");
                /* expf / tanhf: CUDA's are within 2 ulp of glibc's. */
                bad += compare_floats(label, ag, ac, n * ld, 1e-6, 1e-5) > 0;
            }
    }
    /* Softmax cross-entropy on K classes (z rows 0..K-1). */
    int32_t *y = xmalloc(sizeof(int32_t) * (size_t)B);
    for (int b = 0; b < B; b++)
        y[b] = (int32_t)(trng_next() % (uint64_t)K);
    float *dc = xmalloc(sizeof(float) * (size_t)(K * ld)), *dg = xmalloc(sizeof(float) * (size_t)(K * ld));
    double loss_c = 0.0;
    int64_t ok_c = 0;
    cpu_softmax_xent(z, y, (int)K, B, ld, dc, &loss_c, &ok_c);
    int32_t *d_y = (int32_t *)dev_upload(y, sizeof(int32_t) * (size_t)B);
    float *d_d = dev_upload(NULL, sizeof(float) * (size_t)(K * ld));
    double *d_loss = (double *)dev_upload(NULL, sizeof(double));
    unsigned long long *d_ok = (unsigned long long *)dev_upload(NULL, sizeof(unsigned long long));
    dev_memset(d_d, 0x7F, sizeof(float) * (size_t)(K * ld)); /* padding must be rewritten */
    for (int rep = 0; rep < 2; rep++) /* twice: the accumulators add */
        if (st_gpu_softmax_xent(d_z, d_y, (int)K, B, ld, d_d, d_loss, d_ok, s, err)) {
            printf("      %s\n", err);
            bad++;
        }
    double loss_g = 0.0;
    unsigned long long ok_g = 0;
    dev_download(&loss_g, d_loss, sizeof loss_g);
    dev_download(&ok_g, d_ok, sizeof ok_g);
    dev_download(dg, d_d, sizeof(float) * (size_t)(K * ld));
    /* double exp / log in both; only the reduction order differs. */
    if (!st_close(loss_g, 2 * loss_c, 1e-9, 1e-12)) {
        printf("      softmax loss %.15g, want %.15g\n", loss_g, 2 * loss_c);
        bad++;
    }
    if ((int64_t)ok_g != 2 * ok_c) {
        printf("      softmax correct %llu, want %lld\n", ok_g, (long long)(2 * ok_c));
        bad++;
    }
    bad += compare_floats("softmax delta", dg, dc, K * ld, 1e-7, 1e-6) > 0;
    /* Labels outside 0..K-1 (K and -1): never an index (z has rows beyond
     * K here, so a read would go unnoticed but for the result); the loss
     * is NaN, the deltas finite. */
    if (B >= 2) {
        y[0] = (int32_t)K;
        y[B - 1] = -1;
        ST_CUDA_CHECK(cudaMemcpy(d_y, y, sizeof(int32_t) * (size_t)B, cudaMemcpyHostToDevice));
        dev_memset(d_loss, 0, sizeof(double));
        dev_memset(d_ok, 0, sizeof(unsigned long long));
        if (st_gpu_softmax_xent(d_z, d_y, (int)K, B, ld, d_d, d_loss, d_ok, s, err)) {
            printf("      %s\n", err);
            bad++;
        }
        dev_download(&loss_g, d_loss, sizeof loss_g);
        dev_download(dg, d_d, sizeof(float) * (size_t)(K * ld));
        if (!isnan(loss_g)) {
            printf("      softmax with labels %d and -1: loss %.9g, want NaN\n", (int)K, loss_g);
            bad++;
        }
        int64_t nonfinite = 0;
        for (int64_t e = 0; e < K * ld; e++)
            nonfinite += !isfinite(dg[e]);
        if (nonfinite) {
            printf("      softmax with bad labels: %lld non-finite deltas\n", (long long)nonfinite);
            bad++;
        }
    }
    cudaFree(d_z);
    cudaFree(d_m);
    cudaFree(d_a);
    cudaFree(d_y);
    cudaFree(d_d);
    cudaFree(d_loss);
    cudaFree(d_ok);
    free(z);
    free(mc);
    free(mg);
    free(ac);
    free(ag);
    free(y);
    free(dc);
    free(dg);
    return bad;
}

/* Batch gather: a0 equals the CPU backend's gather (with a permutation and
 * without, B < ld). */
static int check_gather(st_gpu_ctx *ctx)
{
    char err[ST_ERRLEN];
    const int64_t n = 50, d = 70;
    const int B = 21, ld = 24;
    float *x = xmalloc(sizeof(float) * (size_t)(n * d)), *a = xmalloc(sizeof(float) * (size_t)(d * ld));
    int32_t y[50], yb[24];
    int64_t perm[50];
    fill_uniform(x, n * d, -1, 1);
    for (int i = 0; i < n; i++) {
        y[i] = i % 7;
        perm[i] = (i * 17 + 3) % n;
    }
    float *d_x = dev_upload(x, sizeof(float) * (size_t)(n * d));
    int32_t *d_y = (int32_t *)dev_upload(y, sizeof y);
    int64_t *d_perm = (int64_t *)dev_upload(perm, sizeof perm);
    float *d_a = dev_upload(NULL, sizeof(float) * (size_t)(d * ld));
    int32_t *d_yb = (int32_t *)dev_upload(NULL, sizeof yb);
    int bad = 0;
    for (int use_perm = 0; use_perm <= 1; use_perm++) {
        const int64_t first = 20;
        dev_memset(d_a, 0x7F, sizeof(float) * (size_t)(d * ld));
        if (st_gpu_gather_batch(d_x, d, use_perm ? d_perm : NULL, first, B, ld, d_a, d_y, d_yb,
                                ctx->stream, err)) {
            printf("      %s\n", err);
            return 1;
        }
        dev_download(a, d_a, sizeof(float) * (size_t)(d * ld));
        dev_download(yb, d_yb, sizeof(int32_t) * (size_t)B);
        for (int64_t f = 0; f < d; f++)
            for (int b = 0; b < ld; b++) {
                int64_t r = use_perm ? perm[first + b < n ? first + b : 0] : first + b;
                float want = b < B ? x[r * d + f] : 0.0f;
                if (a[f * ld + b] != want && bad++ < 5)
                    printf("      gather (perm %d) a[%lld, %d] = %g, want %g\n", use_perm,
                           (long long)f, b, a[f * ld + b], want);
            }
        for (int b = 0; b < B; b++) {
            int64_t r = use_perm ? perm[first + b] : first + b;
            if (yb[b] != y[r] && bad++ < 5)
                printf("      gather label %d = %d, want %d\n", b, yb[b], y[r]);
        }
    }
    cudaFree(d_x);
    cudaFree(d_y);
    cudaFree(d_perm);
    cudaFree(d_a);
    cudaFree(d_yb);
    free(x);
    free(a);
    return bad;
}

/* Operators of every layer of the network for motif m. */
static void run_ops(const net_spec *ns, int m)
{
    char err[ST_ERRLEN];
    st_model M;
    if (model_init(&M, ns->sizes, ns->n_layers, m, ns->eps, 100 + (uint64_t)m, err)) {
        ST_EXPECT(0, "model_init: %s", err);
        model_free(&M);
        return;
    }
    random_momentum(&M, 3);
    st_gpu_ctx ctx;
    if (st_gpu_ctx_init(&ctx, err)) {
        ST_EXPECT(0, "%s", err);
        model_free(&M);
        return;
    }
    /* B = 50 (ld 56: one partial 128-column chunk) and B = 200 (ld 200:
     * one full chunk and one partial). */
    static const int Bs[][2] = {{50, 56}, {200, 200}};
    int bad = 0;
    trng_seed(1000 + (uint64_t)m);
    for (size_t bi = 0; bi < 2; bi++)
        for (int l = 0; l < M.n_layers; l++)
            bad += check_layer_ops(&ctx, &M.layers[l], l, M.n_layers, Bs[bi][0], Bs[bi][1]);
    printf("    m=%d %s:", m, ns->name);
    for (int l = 0; l < M.n_layers; l++)
        printf(" layer %d %s (%lld weights)%s", l + 1, M.layers[l].dense ? "dense" : "sparse",
               (long long)layer_nnz(&M.layers[l]), l + 1 < M.n_layers ? "," : "\n");
    st_gpu_ctx_free(&ctx);
    model_free(&M);
    ST_EXPECT(bad == 0, "m=%d %s: %d operator comparisons failed", m, ns->name, bad);
}

static void test_gpu_elementwise_ops(void)
{
    SKIP_WITHOUT_DEVICE();
    char err[ST_ERRLEN];
    st_gpu_ctx ctx;
    ST_EXPECT(st_gpu_ctx_init(&ctx, err) == 0, "%s", err);
    trng_seed(17);
    int bad = check_gather(&ctx);
    bad += check_elementwise(&ctx, 50, 56);
    bad += check_elementwise(&ctx, 128, 128);
    bad += check_elementwise(&ctx, 1, 8);
    st_gpu_ctx_free(&ctx);
    ST_EXPECT(bad == 0, "%d element-wise comparisons failed", bad);
}

static void test_gpu_ops_m1(void)
{
    SKIP_WITHOUT_DEVICE();
    run_ops(&nets_sparse_out, 1);
    run_ops(&nets_dense_out, 1);
    if (!short_mode())
        run_ops(&nets_all_dense, 1);
}

static void test_gpu_ops_m2(void)
{
    SKIP_WITHOUT_DEVICE();
    run_ops(&nets_sparse_out, 2);
    run_ops(&nets_dense_out, 2);
}

static void test_gpu_ops_m4(void)
{
    SKIP_WITHOUT_DEVICE();
    run_ops(&nets_sparse_out, 4);
    run_ops(&nets_dense_out, 4);
}

static void test_gpu_ops_m8(void)
{
    SKIP_WITHOUT_DEVICE();
    run_ops(&nets_sparse_out, 8);
    run_ops(&nets_dense_out, 8);
}

/* ---- whole epochs and evolution through the backend interface ------------ */

/* A synthetic data set: 250 training samples (batch 60: four full batches
 * and a last one of 10, ld 64 with padding), 70 test samples, d features,
 * K classes; features U(-1, 1) plus a class signal. */
static void make_dataset(st_dataset *ds, int64_t d, int K)
{
    memset(ds, 0, sizeof *ds);
    ds->n_train = 250;
    ds->n_test = 70;
    ds->d = d;
    ds->k = K;
    ds->x_train = xmalloc(sizeof(float) * (size_t)(ds->n_train * d));
    ds->y_train = xmalloc(sizeof(int32_t) * (size_t)ds->n_train);
    ds->x_test = xmalloc(sizeof(float) * (size_t)(ds->n_test * d));
    ds->y_test = xmalloc(sizeof(int32_t) * (size_t)ds->n_test);
    trng_seed(4242);
    for (int split = 0; split < 2; split++) {
        int64_t n = split ? ds->n_test : ds->n_train;
        float *x = split ? ds->x_test : ds->x_train;
        int32_t *y = split ? ds->y_test : ds->y_train;
        for (int64_t i = 0; i < n; i++) {
            y[i] = (int32_t)(i % K);
            for (int64_t f = 0; f < d; f++)
                x[i * d + f] = trng_unif(-1, 1) + (f % K == y[i] ? 1.0f : 0.0f);
        }
    }
    snprintf(ds->name, sizeof ds->name, "synthetic");
}

/* compare_floats with the epoch tolerance; kinked: allow the few
 * outliers of a kinked activation (see KINK_ATOL). Returns 1 on failure. */
static int compare_epoch_floats(const char *label, const float *got, const float *want,
                                int64_t n, int kinked)
{
    if (!kinked)
        return compare_floats(label, got, want, n, EPOCH_ATOL, EPOCH_RTOL) > 0;
    int64_t out = 0;
    double worst = 0;
    for (int64_t e = 0; e < n; e++) {
        double d = fabs((double)got[e] - (double)want[e]);
        if (!isfinite(got[e]) || !st_close(got[e], want[e], EPOCH_ATOL, EPOCH_RTOL))
            out++;
        if (!isfinite(got[e]) || d > worst)
            worst = isfinite(got[e]) ? d : INFINITY;
    }
    if (out > 2 + n / 200 || worst > KINK_ATOL) {
        printf("      %s: %lld of %lld beyond atol %g rtol %g (allowed %lld), worst %.3g "
               "(allowed %g)\n",
               label, (long long)out, (long long)n, EPOCH_ATOL, EPOCH_RTOL,
               (long long)(2 + n / 200), worst, KINK_ATOL);
        return compare_floats(label, got, want, n, EPOCH_ATOL, EPOCH_RTOL) > 0;
    }
    if (out)
        printf("      %s: %lld kink outlier(s), worst %.3g\n", label, (long long)out, worst);
    return 0;
}

/* Weights, momentum and biases of two models within the epoch tolerance. */
static int compare_models(const st_model *A, const st_model *B, const char *what, int kinked)
{
    int bad = 0;
    char label[96];
    for (int l = 0; l < A->n_layers; l++) {
        const st_layer *a = &A->layers[l], *b = &B->layers[l];
        if (!a->dense && (memcmp(a->row_ptr, b->row_ptr, sizeof(int32_t) * ((size_t)a->nbr + 1)) ||
                          memcmp(a->col_idx, b->col_idx, sizeof(int32_t) * (size_t)a->nb))) {
            printf("      %s layer %d: topology differs\n", what, l + 1);
            bad++;
            continue;
        }
        snprintf(label, sizeof label, "%s layer %d w", what, l + 1);
        bad += compare_epoch_floats(label, b->w, a->w, layer_nnz(a), kinked);
        snprintf(label, sizeof label, "%s layer %d v", what, l + 1);
        bad += compare_epoch_floats(label, b->v, a->v, layer_nnz(a), kinked);
        snprintf(label, sizeof label, "%s layer %d bias", what, l + 1);
        bad += compare_epoch_floats(label, b->bias, a->bias, a->n_out, kinked);
        snprintf(label, sizeof label, "%s layer %d vbias", what, l + 1);
        bad += compare_epoch_floats(label, b->vbias, a->vbias, a->n_out, kinked);
    }
    return bad;
}

/* Train one epoch on both backends and compare (loss relative 1e-4: the
 * per-batch sums are reduced in another order; correct counts may differ
 * by a sample whose top two logits are within rounding). */
static int compare_epoch(st_backend *cb, st_backend *gb, int epoch, const char *what)
{
    char err[ST_ERRLEN];
    const int64_t n = cb->data->n_train;
    int64_t *perm = xmalloc(sizeof(int64_t) * (size_t)n);
    train_shuffle(cb->cfg->seed, epoch, n, perm);
    volatile int stop = 0;
    double lc = 0, lg = 0;
    int64_t cc = 0, cg = 0, donec = 0, doneg = 0;
    int bad = 0;
    if (cb->ops->train_epoch(cb, epoch, perm, n, 0, &stop, &donec, &lc, &cc, err) ||
        gb->ops->train_epoch(gb, epoch, perm, n, 0, &stop, &doneg, &lg, &cg, err) ||
        gb->ops->sync_model(gb, err)) {
        printf("      %s: %s\n", what, err);
        free(perm);
        return 1;
    }
    free(perm);
    if (donec != n || doneg != n) {
        printf("      %s: done %lld / %lld of %lld\n", what, (long long)donec, (long long)doneg,
               (long long)n);
        bad++;
    }
    if (!st_close(lg, lc, 1e-6, 1e-4) || llabs(cg - cc) > 2) {
        printf("      %s: train loss %.9g vs %.9g, correct %lld vs %lld\n", what, lg, lc,
               (long long)cg, (long long)cc);
        bad++;
    }
    const st_activation act = cb->cfg->activation;
    bad += compare_models(cb->model, gb->model, what,
                          act == ST_ACT_RELU || act == ST_ACT_ALLRELU);
    double tc = 0, tg = 0;
    int64_t ec = 0, eg = 0;
    if (cb->ops->evaluate(cb, 1, &tc, &ec, err) || gb->ops->evaluate(gb, 1, &tg, &eg, err)) {
        printf("      %s evaluate: %s\n", what, err);
        return bad + 1;
    }
    if (!st_close(tg, tc, 1e-6, 1e-4) || llabs(eg - ec) > 2) {
        printf("      %s: test loss %.9g vs %.9g, correct %lld vs %lld\n", what, tg, tc,
               (long long)eg, (long long)ec);
        bad++;
    }
    return bad;
}

/* ---- which kernels ran ---------------------------------------------------- */

/* The "gpu_kernels" text the backend must report for model M under the
 * choice rules of kernels/backend_gpu.cu, with the overrides fwd, bwd,
 * sddmm (variant names) and alg (ST_GPU_SPMM_ALG name); NULL: not set. */
static void expected_kernels(const st_model *M, const char *fwd, const char *bwd,
                             const char *sddmm, const char *alg, char *out, size_t n)
{
    out[0] = '\0';
    for (int l = 0; l < M->n_layers; l++) {
        const st_layer *L = &M->layers[l];
        size_t used = strlen(out);
        if (L->dense) {
            snprintf(out + used, n - used, "%sL%d dense=cublas", used ? "; " : "", l + 1);
            continue;
        }
        const int blk = st_gpu_block_supported(L->bi, L->bo);
        const int one = L->bi == 1 && L->bo == 1;
        const char *f = fwd ? fwd : "auto";
        if (!strcmp(f, "auto"))
            f = one ? "cusparse" : (blk ? "block" : "row");
        if (!strcmp(f, "cusparse") && L->bi != L->bo)
            f = blk ? "block" : "row";
        if (!strcmp(f, "block") && !blk)
            f = "row";
        char fn[64];
        if (!strcmp(f, "cusparse") && one)
            snprintf(fn, sizeof fn, "cusparse-csr(%s)", alg ? alg : "csr3");
        else if (!strcmp(f, "cusparse"))
            snprintf(fn, sizeof fn, "cusparse-bsr");
        else
            snprintf(fn, sizeof fn, "%s", f);
        const char *b = (bwd && !strcmp(bwd, "row")) || !blk ? "row" : "block";
        const char *g = (sddmm && !strcmp(sddmm, "row")) || !blk ? "row" : "block";
        snprintf(out + used, n - used, "%sL%d fwd=%s bwd=%s sddmm=%s", used ? "; " : "", l + 1,
                 fn, b, g);
    }
}

/* describe()'s "gpu_kernels" value and "gpu_fallbacks" count. */
static void backend_kernels(st_backend *gb, char *out, size_t n, int *fallbacks)
{
    char desc[4096];
    gb->ops->describe(gb, desc, sizeof desc);
    out[0] = '\0';
    *fallbacks = -1;
    const char *k = strstr(desc, "\"gpu_kernels\": \"");
    if (k) {
        k += strlen("\"gpu_kernels\": \"");
        size_t len = strcspn(k, "\"");
        snprintf(out, n, "%.*s", (int)(len < n ? len : n - 1), k);
    }
    const char *f = strstr(desc, "\"gpu_fallbacks\": ");
    if (f)
        *fallbacks = atoi(f + strlen("\"gpu_fallbacks\": "));
}

/* 0 when the backend ran exactly the expected kernels; else prints both. */
static int check_kernels(st_backend *gb, const st_model *M, const char *fwd, const char *bwd,
                         const char *sddmm, const char *alg, const char *what)
{
    char want[1024], got[1024];
    int fallbacks;
    expected_kernels(M, fwd, bwd, sddmm, alg, want, sizeof want);
    backend_kernels(gb, got, sizeof got, &fallbacks);
    if (strcmp(want, got) != 0 || fallbacks != 0) {
        printf("      %s: kernels \"%s\" (%d fallbacks), want \"%s\" (0 fallbacks)\n", what, got,
               fallbacks, want);
        return 1;
    }
    return 0;
}

/* Set or unset (value NULL) an environment variable. */
static void set_env(const char *name, const char *value)
{
    if (value)
        setenv(name, value, 1);
    else
        unsetenv(name);
}

/* One epoch of each configuration on both backends. */
static void run_epoch(int m, double eps, double dropout, st_activation act)
{
    char err[ST_ERRLEN], what[96];
    st_dataset ds;
    make_dataset(&ds, 64, 10);
    st_config cfg;
    config_defaults(&cfg);
    cfg.batch = 60;
    cfg.dropout = dropout;
    cfg.activation = act;
    cfg.lr = 0.05;
    cfg.quiet = 1;
    cfg.seed = 21;
    const int32_t sizes[] = {64, 96, 80, 10};
    st_model A, B;
    if (model_init(&A, sizes, 3, m, eps, 21, err) || model_init(&B, sizes, 3, m, eps, 21, err)) {
        ST_EXPECT(0, "model_init: %s", err);
        return;
    }
    st_backend *cb = backend_cpu_create(&A, &ds, &cfg, err);
    st_backend *gb = backend_gpu_create(&B, &ds, &cfg, err);
    ST_EXPECT(cb && gb, "backend create: %s", err);
    if (cb && gb) {
        char desc[2048];
        gb->ops->describe(gb, desc, sizeof desc);
        snprintf(what, sizeof what, "m=%d eps %g dropout %g %s", m, eps, dropout,
                 st_activation_names[act]);
        printf("    %s: %s\n", what, strstr(desc, "\"gpu_kernels\"") ? strstr(desc, "\"gpu_kernels\"") : desc);
        int bad = check_kernels(gb, &B, NULL, NULL, NULL, NULL, what);
        bad += compare_epoch(cb, gb, 1, what);
        bad += compare_epoch(cb, gb, 2, what);
        ST_EXPECT(bad == 0, "%s: %d differences after training", what, bad);
    }
    if (cb)
        cb->ops->destroy(cb);
    if (gb)
        gb->ops->destroy(gb);
    model_free(&A);
    model_free(&B);
    dataset_free(&ds);
}

static void test_gpu_epoch(void)
{
    SKIP_WITHOUT_DEVICE();
    static const int ms[] = {1, 2, 4, 8};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
        if (short_mode() && ms[i] != 4)
            continue;
        /* tanh (smooth f'): every weight within the epoch tolerance */
        run_epoch(ms[i], 6.0, 0.0, ST_ACT_TANH);  /* every layer sparse, no dropout */
        run_epoch(ms[i], 10.0, 0.3, ST_ACT_TANH); /* dense output layer, dropout    */
        /* the kinked activations (a few outliers allowed, see KINK_ATOL) */
        run_epoch(ms[i], 6.0, 0.3, ST_ACT_RELU);
        if (!short_mode())
            run_epoch(ms[i], 10.0, 0.3, ST_ACT_ALLRELU);
    }
    if (!short_mode()) {
        run_epoch(1, 1000.0, 0.3, ST_ACT_TANH); /* every layer dense (cuBLAS) */
        run_epoch(1, 1000.0, 0.3, ST_ACT_RELU);
    }
}

/* Evolution from identical weights (quantised: ties and zeros) on both
 * backends, twice, then an epoch on the evolved topology. */
static void run_evolve(int m, double eps, const char *window)
{
    char err[ST_ERRLEN], what[96];
    st_dataset ds;
    make_dataset(&ds, 64, 10);
    st_config cfg;
    config_defaults(&cfg);
    cfg.batch = 60;
    cfg.lr = 0.05;
    cfg.quiet = 1;
    cfg.seed = 8;
    const int32_t sizes[] = {64, 96, 80, 10};
    st_model A, B;
    if (model_init(&A, sizes, 3, m, eps, 8, err) || model_init(&B, sizes, 3, m, eps, 8, err)) {
        ST_EXPECT(0, "model_init: %s", err);
        return;
    }
    random_momentum(&A, 12);
    random_momentum(&B, 12);
    for (int l = 0; l < 3; l++) {
        quantise_weights(&A.layers[l]);
        quantise_weights(&B.layers[l]);
    }
    if (window)
        setenv("ST_GPU_REGROW_WINDOW", window, 1);
    st_backend *cb = backend_cpu_create(&A, &ds, &cfg, err);
    st_backend *gb = backend_gpu_create(&B, &ds, &cfg, err);
    unsetenv("ST_GPU_REGROW_WINDOW");
    ST_EXPECT(cb && gb, "backend create: %s", err);
    int bad = 0;
    snprintf(what, sizeof what, "m=%d eps %g window %s", m, eps, window ? window : "default");
    if (gb) /* m = 1: the default CSR_ALG3 plan, refreshed by each evolution */
        bad += check_kernels(gb, &B, NULL, NULL, NULL, NULL, what);
    for (int epoch = 1; cb && gb && epoch <= 2; epoch++) {
        st_evolve_stats sc[3], sg[3];
        if (cb->ops->evolve(cb, epoch, sc, err) || gb->ops->evolve(gb, epoch, sg, err) ||
            gb->ops->sync_model(gb, err)) {
            printf("      %s: %s\n", what, err);
            bad++;
            break;
        }
        for (int l = 0; l < 3; l++) {
            char label[128];
            snprintf(label, sizeof label, "%s epoch %d layer %d", what, epoch, l + 1);
            if (!stats_equal(&sc[l], &sg[l])) {
                printf("      %s: stats differ\n", label);
                print_stats("cpu", &sc[l]);
                print_stats("gpu", &sg[l]);
                bad++;
            }
            bad += compare_layers_exact(&A.layers[l], &B.layers[l], label);
            if (epoch == 1 && l == 0)
                print_stats(label, &sg[l]);
        }
    }
    /* Training on the evolved topology (descriptors, plans, indices). */
    if (cb && gb && bad == 0)
        bad += compare_epoch(cb, gb, 3, what);
    ST_EXPECT(bad == 0, "%s: %d differences", what, bad);
    if (cb)
        cb->ops->destroy(cb);
    if (gb)
        gb->ops->destroy(gb);
    model_free(&A);
    model_free(&B);
    dataset_free(&ds);
}

static void test_gpu_evolve(void)
{
    SKIP_WITHOUT_DEVICE();
    static const int ms[] = {1, 2, 4, 8};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
        if (short_mode() && ms[i] != 1 && ms[i] != 4)
            continue;
        run_evolve(ms[i], 6.0, NULL);  /* sparse output layer (bo = 1 blocks) */
        run_evolve(ms[i], 10.0, "7");  /* dense output, many small windows   */
    }
}

/* The kernel overrides: each one reported as the rules say and trained
 * (one epoch) against the CPU; bad values are sentences. */
static void run_override(int m, double eps, const char *fwd, const char *bwd, const char *sddmm,
                         const char *alg)
{
    char err[ST_ERRLEN], what[160];
    st_dataset ds;
    make_dataset(&ds, 64, 10);
    st_config cfg;
    config_defaults(&cfg);
    cfg.batch = 60;
    cfg.dropout = 0.3;
    cfg.activation = ST_ACT_TANH;
    cfg.lr = 0.05;
    cfg.quiet = 1;
    cfg.seed = 31;
    const int32_t sizes[] = {64, 96, 80, 10};
    st_model A, B;
    if (model_init(&A, sizes, 3, m, eps, 31, err) || model_init(&B, sizes, 3, m, eps, 31, err)) {
        ST_EXPECT(0, "model_init: %s", err);
        return;
    }
    snprintf(what, sizeof what, "m=%d eps %g ST_GPU_FWD=%s BWD=%s SDDMM=%s SPMM_ALG=%s", m, eps,
             fwd ? fwd : "-", bwd ? bwd : "-", sddmm ? sddmm : "-", alg ? alg : "-");
    set_env("ST_GPU_FWD", fwd);
    set_env("ST_GPU_BWD", bwd);
    set_env("ST_GPU_SDDMM", sddmm);
    set_env("ST_GPU_SPMM_ALG", alg);
    st_backend *cb = backend_cpu_create(&A, &ds, &cfg, err);
    st_backend *gb = cb ? backend_gpu_create(&B, &ds, &cfg, err) : NULL;
    unsetenv("ST_GPU_FWD");
    unsetenv("ST_GPU_BWD");
    unsetenv("ST_GPU_SDDMM");
    unsetenv("ST_GPU_SPMM_ALG");
    ST_EXPECT(cb && gb, "%s: backend create: %s", what, err);
    if (cb && gb) {
        int bad = check_kernels(gb, &B, fwd, bwd, sddmm, alg, what);
        bad += compare_epoch(cb, gb, 1, what);
        printf("    %s: %s\n", what, bad ? "differs" : "agrees with the CPU");
        ST_EXPECT(bad == 0, "%s: %d differences", what, bad);
    }
    if (cb)
        cb->ops->destroy(cb);
    if (gb)
        gb->ops->destroy(gb);
    model_free(&A);
    model_free(&B);
    dataset_free(&ds);
}

static void test_gpu_overrides(void)
{
    SKIP_WITHOUT_DEVICE();
    static const char *algs[] = {"csr3", "csr1", "csr2", "default"};
    for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++)
        run_override(1, 6.0, NULL, NULL, NULL, algs[i]);
    run_override(1, 6.0, "row", NULL, NULL, NULL);
    run_override(1, 6.0, "cusparse", "row", "row", "csr1");
    for (int m = 2; m <= 8; m *= 2) {
        run_override(m, 6.0, "cusparse", NULL, NULL, NULL); /* BSR on square blocks */
        run_override(m, 10.0, "row", "row", "row", NULL);
        run_override(m, 6.0, "block", "row", NULL, NULL);
        run_override(m, 6.0, NULL, NULL, "row", NULL);
    }
    /* Bad values: one sentence naming the variable, no backend. */
    static const struct {
        const char *name, *value, *want;
    } bad[] = {{"ST_GPU_FWD", "fastest", "ST_GPU_FWD=fastest: expected auto, cusparse, row or block"},
               {"ST_GPU_BWD", "cusparse", "ST_GPU_BWD=cusparse: expected auto, row or block"},
               {"ST_GPU_SDDMM", "tiles", "ST_GPU_SDDMM=tiles: expected auto, row or block"},
               {"ST_GPU_SPMM_ALG", "csr4", "ST_GPU_SPMM_ALG=csr4: expected csr3, csr1, csr2 or default"}};
    char err[ST_ERRLEN];
    st_dataset ds;
    make_dataset(&ds, 64, 10);
    st_config cfg;
    config_defaults(&cfg);
    cfg.batch = 60;
    cfg.quiet = 1;
    const int32_t sizes[] = {64, 96, 80, 10};
    st_model M;
    ST_EXPECT(model_init(&M, sizes, 3, 1, 6.0, 1, err) == 0, "%s", err);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv(bad[i].name, bad[i].value, 1);
        err[0] = '\0';
        st_backend *gb = backend_gpu_create(&M, &ds, &cfg, err);
        unsetenv(bad[i].name);
        ST_EXPECT(gb == NULL && strstr(err, bad[i].want) != NULL, "%s=%s: message '%s'",
                  bad[i].name, bad[i].value, err);
        if (gb)
            gb->ops->destroy(gb);
    }
    model_free(&M);
    dataset_free(&ds);
}

/* Bit-for-bit equality of two models (topology, weights, momentum, biases). */
static int models_identical(const st_model *A, const st_model *B, const char *what)
{
    int bad = 0;
    for (int l = 0; l < A->n_layers; l++) {
        char label[128];
        snprintf(label, sizeof label, "%s layer %d", what, l + 1);
        bad += compare_layers_exact(&A->layers[l], &B->layers[l], label);
        if (memcmp(A->layers[l].bias, B->layers[l].bias, sizeof(float) * (size_t)A->layers[l].n_out) ||
            memcmp(A->layers[l].vbias, B->layers[l].vbias,
                   sizeof(float) * (size_t)A->layers[l].n_out)) {
            printf("      %s: biases differ\n", label);
            bad++;
        }
    }
    return bad;
}

/* Stop inside epoch 1 after the first batch, sync the model, make a new
 * backend from it (what a checkpoint and --resume do), finish the epoch
 * from the sample where it stopped; then evolve and train epoch 2. Every
 * weight must equal the uninterrupted GPU run's bit for bit (the GPU path
 * is deterministic: no atomics, CSR_ALG3 for m = 1), the loss sums within
 * the rounding of adding two partial sums, the correct counts exactly. */
static void run_stop_resume(int m, double dropout)
{
    char err[ST_ERRLEN], what[96];
    st_dataset ds;
    make_dataset(&ds, 64, 10);
    st_config cfg;
    config_defaults(&cfg);
    cfg.batch = 60;
    cfg.dropout = dropout;
    cfg.lr = 0.05;
    cfg.quiet = 1;
    cfg.seed = 5;
    const int32_t sizes[] = {64, 96, 80, 10};
    st_model A, B;
    snprintf(what, sizeof what, "m=%d dropout %g stop/resume", m, dropout);
    if (model_init(&A, sizes, 3, m, 6.0, 5, err) || model_init(&B, sizes, 3, m, 6.0, 5, err)) {
        ST_EXPECT(0, "model_init: %s", err);
        return;
    }
    const int64_t n = ds.n_train;
    int64_t *perm = xmalloc(sizeof(int64_t) * (size_t)n);
    st_backend *ga = backend_gpu_create(&A, &ds, &cfg, err);
    st_backend *gb = ga ? backend_gpu_create(&B, &ds, &cfg, err) : NULL;
    ST_EXPECT(ga && gb, "%s: backend create: %s", what, err);
    int bad = 0;
    if (ga && gb) {
        bad += check_kernels(gb, &B, NULL, NULL, NULL, NULL, what);
        volatile int go = 0, stop = 1;
        double la = 0, lb = 0;
        int64_t ca = 0, cb = 0, done_a = 0, done_b = 0;
        train_shuffle(cfg.seed, 1, n, perm);
        if (ga->ops->train_epoch(ga, 1, perm, n, 0, &go, &done_a, &la, &ca, err) ||
            gb->ops->train_epoch(gb, 1, perm, n, 0, &stop, &done_b, &lb, &cb, err) ||
            gb->ops->sync_model(gb, err)) {
            printf("      %s: %s\n", what, err);
            bad++;
        } else if (done_b != cfg.batch || done_a != n) {
            printf("      %s: the stopped epoch did %lld samples (want %d), the whole one %lld\n",
                   what, (long long)done_b, cfg.batch, (long long)done_a);
            bad++;
        } else {
            gb->ops->destroy(gb); /* the model B holds everything a checkpoint holds */
            gb = backend_gpu_create(&B, &ds, &cfg, err);
            int64_t done2 = 0;
            if (!gb || gb->ops->train_epoch(gb, 1, perm, n, done_b, &go, &done2, &lb, &cb, err)) {
                printf("      %s: resume: %s\n", what, err);
                bad++;
            } else if (done2 != n) {
                printf("      %s: resumed epoch ended at %lld of %lld\n", what, (long long)done2,
                       (long long)n);
                bad++;
            } else {
                if (!st_close(lb, la, 1e-9, 1e-9) || ca != cb) {
                    printf("      %s: epoch 1 loss %.12g vs %.12g, correct %lld vs %lld\n", what,
                           lb, la, (long long)cb, (long long)ca);
                    bad++;
                }
                st_evolve_stats sa[3], sb[3];
                double l2a = 0, l2b = 0;
                int64_t c2a = 0, c2b = 0, d2a = 0, d2b = 0;
                train_shuffle(cfg.seed, 2, n, perm);
                if (ga->ops->evolve(ga, 1, sa, err) || gb->ops->evolve(gb, 1, sb, err) ||
                    ga->ops->train_epoch(ga, 2, perm, n, 0, &go, &d2a, &l2a, &c2a, err) ||
                    gb->ops->train_epoch(gb, 2, perm, n, 0, &go, &d2b, &l2b, &c2b, err) ||
                    ga->ops->sync_model(ga, err) || gb->ops->sync_model(gb, err)) {
                    printf("      %s: epoch 2: %s\n", what, err);
                    bad++;
                } else {
                    if (l2a != l2b || c2a != c2b) {
                        printf("      %s: epoch 2 loss %.12g vs %.12g, correct %lld vs %lld\n",
                               what, l2b, l2a, (long long)c2b, (long long)c2a);
                        bad++;
                    }
                    bad += models_identical(&A, &B, what);
                }
            }
        }
    }
    printf("    %s: %s\n", what, bad ? "differs" : "identical to the uninterrupted run");
    ST_EXPECT(bad == 0, "%s: %d differences", what, bad);
    if (ga)
        ga->ops->destroy(ga);
    if (gb)
        gb->ops->destroy(gb);
    free(perm);
    model_free(&A);
    model_free(&B);
    dataset_free(&ds);
}

static void test_gpu_stop_resume(void)
{
    SKIP_WITHOUT_DEVICE();
    run_stop_resume(1, 0.3);
    run_stop_resume(4, 0.3);
    if (!short_mode())
        run_stop_resume(2, 0.0);
}

/* ST_GPU_SYNC_CHECK=1: the switch reads as set, training agrees with the
 * CPU as without it, and (outside the short mode, in a child process so
 * the broken context dies with it) a forward whose column index points far
 * outside the input fails at that launch with the kernel's name. */
static void test_gpu_sync_check(void)
{
    SKIP_WITHOUT_DEVICE();
    const char *old = getenv("ST_GPU_SYNC_CHECK");
    char keep[64];
    snprintf(keep, sizeof keep, "%s", old ? old : "");
    setenv("ST_GPU_SYNC_CHECK", "1", 1);
    ST_EXPECT(st_gpu_sync_check() == 1, "ST_GPU_SYNC_CHECK=1 not seen");
    run_epoch(1, 6.0, 0.3, ST_ACT_RELU);
    run_epoch(4, 10.0, 0.3, ST_ACT_TANH);
    set_env("ST_GPU_SYNC_CHECK", old ? keep : NULL);
    if (short_mode())
        return; /* compute-sanitizer would (rightly) report the planted fault */
    char self[1024], cmd[1100];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    ST_EXPECT(n > 0, "readlink /proc/self/exe failed");
    if (n <= 0)
        return;
    self[n] = '\0';
    snprintf(cmd, sizeof cmd, "'%s' --planted-fault 2>&1", self);
    FILE *p = popen(cmd, "r");
    ST_EXPECT(p != NULL, "popen failed");
    if (!p)
        return;
    char out[4096] = "";
    size_t len = fread(out, 1, sizeof out - 1, p);
    out[len] = '\0';
    int status = pclose(p);
    printf("    planted fault: %s", out);
    ST_EXPECT(status == 0, "the child reported: %s", out);
    ST_EXPECT(strstr(out, "kernel fwd_row_kernel failed at") != NULL &&
                  strstr(out, "ST_GPU_SYNC_CHECK") != NULL,
              "the fault was not named at its launch: %s", out);
}

/* The child of test_gpu_sync_check: a ROW forward over a layer whose first
 * column index is 2^30 (an address 32 GiB past the input). Prints the
 * launcher's message; exits 0 when the launch itself reported it. */
static int planted_fault_child(void)
{
    char err[ST_ERRLEN] = "";
    setenv("ST_GPU_SYNC_CHECK", "1", 1);
    const int32_t sizes[] = {64, 32};
    st_model M;
    if (model_init(&M, sizes, 1, 1, 4.0, 3, err)) {
        printf("model_init: %s\n", err);
        return 1;
    }
    st_gpu_layer G;
    st_gpu_ctx ctx;
    if (st_gpu_ctx_init(&ctx, err) || st_gpu_layer_create(&G, &M.layers[0], 1, NULL, err)) {
        printf("%s\n", err);
        return 1;
    }
    const int ld = 8;
    float *d_a = dev_upload(NULL, sizeof(float) * 64 * ld);
    float *d_z = dev_upload(NULL, sizeof(float) * 32 * ld);
    const int32_t far = 1 << 30;
    ST_CUDA_CHECK(cudaMemcpy(G.col_idx, &far, sizeof far, cudaMemcpyHostToDevice));
    ST_CUDA_CHECK(cudaDeviceSynchronize());
    int rc = st_gpu_forward_sparse(ST_GPU_VAR_ROW, &G, d_a, d_z, ld, ctx.stream, err);
    printf("%s\n", rc ? err : "the launch reported nothing");
    return rc ? 0 : 1;
}

/* The out-of-memory sentence, and describe()'s members. */
static void test_gpu_messages(void)
{
    SKIP_WITHOUT_DEVICE();
    char err[ST_ERRLEN];
    if (short_mode()) {
        /* compute-sanitizer reports the failing cudaMalloc as an API error */
        printf("    ST_GPU_TEST_SHORT: the out-of-memory case is left out\n");
    } else {
        void *p = NULL;
        size_t total = 0;
        int rc = st_gpu_malloc(&p, (size_t)1 << 52, 3, "a test buffer", &total, err);
        ST_EXPECT(rc != 0 && p == NULL, "allocating 4 PiB succeeded");
        ST_EXPECT(strstr(err, "layer 3: out of GPU memory allocating 4503599627370496 bytes for "
                              "a test buffer (device has ") != NULL,
                  "message: %s", err);
        printf("    %s\n", err);
        ST_EXPECT(cudaGetLastError() == cudaSuccess, "the allocation failure left an error behind");
    }

    st_dataset ds;
    make_dataset(&ds, 64, 10);
    st_config cfg;
    config_defaults(&cfg);
    cfg.batch = 60;
    cfg.quiet = 1;
    const int32_t sizes[] = {64, 96, 80, 10};
    st_model M;
    ST_EXPECT(model_init(&M, sizes, 3, 1, 6.0, 1, err) == 0, "%s", err);
    st_backend *gb = backend_gpu_create(&M, &ds, &cfg, err);
    ST_EXPECT(gb != NULL, "%s", err);
    if (gb) {
        char desc[2048];
        gb->ops->describe(gb, desc, sizeof desc);
        static const char *keys[] = {"\"gpu_name\": \"", "\"driver_version\": \"",
                                     "\"cuda_runtime_version\": \"", "\"cusparse_version\": \"",
                                     "\"cublas_version\": \"", "\"compute_capability\": \"",
                                     "\"device_memory_bytes\": ", "\"device_memory_used_bytes\": "};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
            ST_EXPECT(strstr(desc, keys[k]) != NULL, "describe() lacks %s: %s", keys[k], desc);
        printf("    %s\n", desc);
        gb->ops->destroy(gb);
    }
    /* A bad kernel choice is a sentence, not a crash. */
    setenv("ST_GPU_FWD", "fastest", 1);
    gb = backend_gpu_create(&M, &ds, &cfg, err);
    unsetenv("ST_GPU_FWD");
    ST_EXPECT(gb == NULL && strstr(err, "ST_GPU_FWD=fastest") != NULL, "message: %s", err);
    if (gb)
        gb->ops->destroy(gb);
    model_free(&M);
    dataset_free(&ds);
}

#endif /* ST_HAVE_CUDA */

/* ST_GPU_TEST_FILTER=a,b runs only the device tests whose names contain a
 * or b (the host tests always run). */
static int selected(const char *name)
{
    const char *f = getenv("ST_GPU_TEST_FILTER");
    if (!f || !*f)
        return 1;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", f);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ","))
        if (strstr(name, tok))
            return 1;
    return 0;
}
#define RUN_SELECTED(fn)                                                                    \
    do {                                                                                    \
        if (selected(#fn))                                                                  \
            ST_RUN(fn);                                                                     \
    } while (0)

int main(int argc, char **argv)
{
#ifdef ST_HAVE_CUDA
    if (argc == 2 && !strcmp(argv[1], "--planted-fault"))
        return planted_fault_child();
#endif
    (void)argc;
    (void)argv;
    ST_RUN(test_dropout_group_matches_cpu);
    ST_RUN(test_prune_keys_order);
    ST_RUN(test_row_and_ptr_helpers);
    ST_RUN(test_evolve_window_emulation);
    ST_RUN(test_device_count_path);
#ifdef ST_HAVE_CUDA
    RUN_SELECTED(test_gpu_elementwise_ops);
    RUN_SELECTED(test_gpu_ops_m1);
    if (short_mode())
        printf("ST_GPU_TEST_SHORT: test_gpu_ops_m2, test_gpu_ops_m8 and test_gpu_overrides are "
               "not run\n");
    else
        RUN_SELECTED(test_gpu_ops_m2);
    RUN_SELECTED(test_gpu_ops_m4);
    if (!short_mode())
        RUN_SELECTED(test_gpu_ops_m8);
    RUN_SELECTED(test_gpu_epoch);
    RUN_SELECTED(test_gpu_evolve);
    if (!short_mode())
        RUN_SELECTED(test_gpu_overrides);
    RUN_SELECTED(test_gpu_stop_resume);
    RUN_SELECTED(test_gpu_sync_check);
    RUN_SELECTED(test_gpu_messages);
#else
    (void)selected;
#endif
    return st_test_summary("test_gpu");
}
