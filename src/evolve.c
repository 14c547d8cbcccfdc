/* evolve.c: SET evolution of one sparse layer on the CPU (DESIGN.md "SET
 * evolution"): prune, regrow from Philox candidates, rebuild block-CSR and
 * the transposed index. This is the reference the GPU backend must match
 * bit for bit in topology.
 *
 * Prune, m = 1: of the positive weights remove the floor(zeta n_pos)
 * smallest, of the negative ones the floor(zeta n_neg) largest (closest to
 * zero); exact zeros are neither and stay. Ties go to the lower storage
 * index. m > 1: a block's magnitude is the sum of |w| over its entries in
 * storage order (float, sequential; the mean's ordering without the
 * division); remove the floor(zeta nb) smallest, ties to the lower block index.
 * Regrow: draw d = 0, 1, ... gives position floor(u64 * nbr * nbc / 2^64)
 * from Philox (seed, REGROW_POS, layer, d, epoch); accept it if empty after
 * pruning and not already accepted. The j-th accepted block gets He-uniform
 * weights from Philox (seed, REGROW_W, layer, (j * bs + t) / 4, epoch) and
 * zero momentum; survivors keep weights and momentum. */
#include <math.h>

#include "common.h"
#include "model.h"
#include "philox.h"

typedef struct {
    float key;
    int32_t idx;
} keyed;

static int keyed_cmp(const void *pa, const void *pb)
{
    const keyed *a = pa, *b = pb;
    if (a->key < b->key) return -1;
    if (a->key > b->key) return 1;
    return (a->idx > b->idx) - (a->idx < b->idx);
}

/* Mark the n smallest keys of v[0..len) (ties: lower idx) in removed. */
static void mark_smallest(keyed *v, int64_t len, int64_t n, uint8_t *removed)
{
    if (n <= 0)
        return;
    qsort(v, (size_t)len, sizeof *v, keyed_cmp);
    for (int64_t j = 0; j < n; j++)
        removed[v[j].idx] = 1;
}

int64_t layer_prune_select(const st_layer *L, double zeta, uint8_t *removed,
                           st_evolve_stats *st)
{
    const int bs = L->bi * L->bo;
    memset(removed, 0, (size_t)L->nb);
    keyed *v = st_malloc(sizeof(keyed) * ((size_t)L->nb + 1), "prune keys");
    int64_t total;
    if (bs == 1) {
        int64_t npos = 0, nneg = 0;
        for (int32_t k = 0; k < L->nb; k++)
            if (L->w[k] > 0.0f)
                v[npos++] = (keyed){L->w[k], k};
        int64_t rpos = (int64_t)floor(zeta * (double)npos);
        mark_smallest(v, npos, rpos, removed);
        for (int32_t k = 0; k < L->nb; k++)
            if (L->w[k] < 0.0f)
                v[nneg++] = (keyed){-L->w[k], k}; /* closest to zero = smallest |w| */
        int64_t rneg = (int64_t)floor(zeta * (double)nneg);
        mark_smallest(v, nneg, rneg, removed);
        st->removed_pos = rpos;
        st->removed_neg = rneg;
        total = rpos + rneg;
    } else {
        for (int32_t k = 0; k < L->nb; k++) {
            const float *wk = L->w + (int64_t)k * bs;
            float s = 0.0f;
            for (int t = 0; t < bs; t++)
                s += fabsf(wk[t]);
            v[k] = (keyed){s, k};
        }
        total = (int64_t)floor(zeta * (double)L->nb);
        mark_smallest(v, L->nb, total, removed);
        st->removed_pos = st->removed_neg = 0;
    }
    free(v);
    st->removed = total;
    return total;
}

/* Open-addressing set of accepted positions (keys are position + 1). */
typedef struct {
    uint64_t *slot;
    uint64_t mask;
} posset;

static int posset_insert(posset *s, uint64_t pos)
{
    uint64_t key = pos + 1, h = (pos * 0x9E3779B97F4A7C15ull) & s->mask;
    while (s->slot[h]) {
        if (s->slot[h] == key)
            return 0;
        h = (h + 1) & s->mask;
    }
    s->slot[h] = key;
    return 1;
}

/* Is block column C present and surviving in block row R? */
static int occupied(const st_layer *L, const uint8_t *removed, int32_t R, int32_t C)
{
    int32_t lo = L->row_ptr[R], hi = L->row_ptr[R + 1];
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (L->col_idx[mid] < C)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < L->row_ptr[R + 1] && L->col_idx[lo] == C && !removed[lo];
}

typedef struct {
    uint64_t pos;
    int64_t j; /* acceptance order */
} accepted;

static int accepted_cmp(const void *pa, const void *pb)
{
    const accepted *a = pa, *b = pb;
    return (a->pos > b->pos) - (a->pos < b->pos);
}

int layer_evolve(st_layer *L, int layer, uint64_t seed, int epoch, double zeta,
                 st_evolve_stats *st, char *err)
{
    memset(st, 0, sizeof *st);
    if (L->dense)
        return 0;
    const int bs = L->bi * L->bo;
    const int32_t nb = L->nb;
    st->blocks_before = nb;
    uint8_t *removed = st_malloc((size_t)nb + 1, "prune marks");
    int64_t n = layer_prune_select(L, zeta, removed, st);

    /* Regrow n blocks at empty positions, in draw order. */
    const uint64_t npos = (uint64_t)L->nbr * (uint64_t)L->nbc;
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)n + 2)
        cap <<= 1;
    posset set = {st_calloc(cap, sizeof(uint64_t), "regrow set"), cap - 1};
    accepted *acc = st_malloc(sizeof(accepted) * ((size_t)n + 1), "regrow list");
    int64_t got = 0;
    uint64_t d = 0;
    while (got < n) {
        st_u32x4 u = st_rand(seed, ST_STREAM_REGROW_POS, (uint32_t)layer, (uint32_t)d,
                             (uint32_t)(d >> 32), (uint32_t)epoch);
        d++;
        uint64_t pos = st_below(u.v[0], u.v[1], npos);
        int32_t R = (int32_t)(pos / (uint64_t)L->nbc), C = (int32_t)(pos % (uint64_t)L->nbc);
        if (occupied(L, removed, R, C) || !posset_insert(&set, pos))
            continue;
        acc[got].pos = pos;
        acc[got].j = got;
        got++;
    }
    st->draws = (int64_t)d;
    st->regrown = got;
    qsort(acc, (size_t)got, sizeof *acc, accepted_cmp);

    /* Merge survivors and new blocks row by row into fresh arrays. */
    int32_t *ncol = st_malloc(sizeof(int32_t) * (size_t)nb + 1, "evolve col_idx");
    float *nw = st_malloc(sizeof(float) * (size_t)nb * bs + 1, "evolve weights");
    float *nv = st_malloc(sizeof(float) * (size_t)nb * bs + 1, "evolve momentum");
    float lim = layer_init_limit(L);
    int64_t out = 0, a = 0;
    for (int32_t R = 0; R < L->nbr; R++) {
        int32_t k = L->row_ptr[R], kend = L->row_ptr[R + 1];
        if (L->init == ST_INIT_HE_SPARSE) {
            /* the row's fan-in after this evolution: survivors and new blocks */
            int64_t blocks = 0;
            for (int32_t q = k; q < kend; q++)
                blocks += !removed[q];
            for (int64_t b = a; b < got && acc[b].pos / (uint64_t)L->nbc == (uint64_t)R; b++)
                blocks++;
            lim = layer_init_limit_fanin(L, blocks * L->bi);
        }
        L->row_ptr[R] = (int32_t)out;
        for (;;) {
            while (k < kend && removed[k])
                k++;
            int have_old = k < kend;
            int have_new = a < got && acc[a].pos / (uint64_t)L->nbc == (uint64_t)R;
            if (!have_old && !have_new)
                break;
            int32_t cnew = have_new ? (int32_t)(acc[a].pos % (uint64_t)L->nbc) : 0;
            if (out >= nb) {
                free(removed); free(set.slot); free(acc); free(ncol); free(nw); free(nv);
                return st_fail(err, "layer %d: evolution produced more blocks than the %d it had",
                               layer, nb);
            }
            if (have_old && (!have_new || L->col_idx[k] < cnew)) {
                ncol[out] = L->col_idx[k];
                memcpy(nw + out * bs, L->w + (int64_t)k * bs, sizeof(float) * (size_t)bs);
                memcpy(nv + out * bs, L->v + (int64_t)k * bs, sizeof(float) * (size_t)bs);
                k++;
            } else {
                ncol[out] = cnew;
                for (int t = 0; t < bs; t++) {
                    uint64_t e = (uint64_t)acc[a].j * bs + t;
                    st_u32x4 u = st_rand(seed, ST_STREAM_REGROW_W, (uint32_t)layer,
                                         (uint32_t)(e / 4), (uint32_t)(e / 4 >> 32),
                                         (uint32_t)epoch);
                    nw[out * bs + t] = (2.0f * st_u01f(u.v[e % 4]) - 1.0f) * lim;
                    nv[out * bs + t] = 0.0f;
                }
                a++;
            }
            out++;
        }
    }
    L->row_ptr[L->nbr] = (int32_t)out;
    free(removed);
    free(set.slot);
    free(acc);
    st->blocks_after = out;
    if (out != nb) {
        free(ncol); free(nw); free(nv);
        return st_fail(err, "layer %d: block count changed from %d to %lld during evolution",
                       layer, nb, (long long)out);
    }
    free(L->col_idx);
    free(L->w);
    free(L->v);
    L->col_idx = ncol;
    L->w = nw;
    L->v = nv;
    layer_build_transpose(L);
    return 0;
}
