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
 * zero momentum; survivors keep weights and momentum.
 *
 * How (the results are those of the rules above, in any case):
 *  - prune: the keys (magnitude bits, which order non-negative floats as
 *    the floats do, then the index) go through a radix selection (one 16-bit
 *    digit at a time from the top) that marks exactly the k smallest;
 *  - regrow: candidates are drawn in windows; a window is radix-sorted by
 *    position (stable, so equal positions keep their draw order), checked against the surviving blocks row by row in
 *    position order (cache-friendly), and merged into the sorted set of
 *    first occurrences; once it holds n positions, the n with the earliest
 *    draws are accepted: exactly the first n accepted in draw order;
 *  - rebuild in place: survivors are compacted to the front, then survivors
 *    and new blocks are merged from the back (a write never overtakes an
 *    unread survivor).
 * All scratch memory is an st_evolve_ws allocated once for a model
 * (evolve_ws_create): evolution allocates nothing per epoch. */
#include <math.h>

#include "util/common.h"
#include "model/model.h"
#include "util/philox.h"

struct st_evolve_ws {
    size_t cap;        /* entries of a and b                              */
    size_t cap_n;      /* entries of acc_pos and acc_j                    */
    size_t cap_nb;     /* bytes of removed                                */
    size_t cap_nbc;    /* entries of fill                                 */
    uint64_t *a, *b;   /* sort keys and their radix-sort partner          */
    uint64_t *acc_pos; /* accepted positions, sorted                      */
    uint32_t *acc_j;   /* their acceptance order                          */
    uint8_t *removed;
    int32_t *fill;     /* the transposed index's cursor                   */
    size_t *count;     /* radix histogram, 65536 entries                  */
};

static size_t ws_cap_for(int64_t nb, double zeta)
{
    int64_t n = (int64_t)floor(zeta * (double)nb) + 1;
    int64_t c = 3 * n + 8192;
    return (size_t)(c > nb + 1 ? c : nb + 1);
}

static st_evolve_ws *ws_alloc(int64_t max_nb, int64_t max_nbc, double zeta)
{
    st_evolve_ws *ws = st_calloc(1, sizeof *ws, "evolution workspace");
    ws->cap = ws_cap_for(max_nb, zeta);
    ws->cap_n = (size_t)floor(zeta * (double)max_nb) + 1;
    ws->cap_nb = (size_t)max_nb + 1;
    ws->cap_nbc = (size_t)max_nbc + 1;
    ws->a = st_malloc(sizeof(uint64_t) * ws->cap, "evolution keys");
    ws->b = st_malloc(sizeof(uint64_t) * ws->cap, "evolution sort buffer");
    ws->acc_pos = st_malloc(sizeof(uint64_t) * ws->cap_n, "regrown positions");
    ws->acc_j = st_malloc(sizeof(uint32_t) * ws->cap_n, "regrown order");
    ws->removed = st_malloc(ws->cap_nb, "prune marks");
    ws->fill = st_malloc(sizeof(int32_t) * ws->cap_nbc, "transpose cursor");
    ws->count = st_malloc(sizeof(size_t) * 65536, "radix histogram");
    return ws;
}

st_evolve_ws *evolve_ws_create(const st_model *m, double zeta)
{
    int64_t max_nb = 0, max_nbc = 0;
    for (int l = 0; l < m->n_layers; l++) {
        const st_layer *L = &m->layers[l];
        if (L->dense)
            continue;
        if (L->nb > max_nb) max_nb = L->nb;
        if (L->nbc > max_nbc) max_nbc = L->nbc;
    }
    st_evolve_ws *ws = ws_alloc(max_nb, max_nbc, zeta);
    /* Touch every page now: the memory is the system's from the start, so a
     * machine that cannot hold it fails here rather than at the first
     * evolution after an epoch of work, and that evolution does not pay the
     * page faults (3 x 1M hidden: about 0.7 GB of scratch). */
    memset(ws->a, 0, sizeof(uint64_t) * ws->cap);
    memset(ws->b, 0, sizeof(uint64_t) * ws->cap);
    memset(ws->acc_pos, 0, sizeof(uint64_t) * ws->cap_n);
    memset(ws->acc_j, 0, sizeof(uint32_t) * ws->cap_n);
    memset(ws->removed, 0, ws->cap_nb);
    memset(ws->fill, 0, sizeof(int32_t) * ws->cap_nbc);
    return ws;
}

uint64_t evolve_ws_bytes(int64_t max_nb, int64_t max_nbc, double zeta)
{
    uint64_t cap = ws_cap_for(max_nb, zeta), n = (uint64_t)floor(zeta * (double)max_nb) + 1;
    return 16 * cap + 12 * n + (uint64_t)max_nb + 4 * (uint64_t)max_nbc + 8 * 65536;
}

void evolve_ws_free(st_evolve_ws *ws)
{
    if (!ws)
        return;
    free(ws->a);
    free(ws->b);
    free(ws->acc_pos);
    free(ws->acc_j);
    free(ws->removed);
    free(ws->fill);
    free(ws->count);
    free(ws);
}

/* Sort x[0..n) ascending on bits [lo, hi) (LSD radix, 16-bit digits, stable:
 * keys equal on those bits keep their order), using tmp; returns the array
 * that holds the result (x or tmp). */
static uint64_t *radix_sort_bits(uint64_t *x, uint64_t *tmp, size_t n, int lo, int hi,
                                 size_t *count)
{
    uint64_t *src = x, *dst = tmp;
    for (int shift = lo; shift < hi; shift += 16) {
        memset(count, 0, sizeof(size_t) * 65536);
        for (size_t i = 0; i < n; i++)
            count[(src[i] >> shift) & 0xffff]++;
        if (count[(n ? src[0] >> shift : 0) & 0xffff] == n)
            continue; /* every key has this digit: the pass would not move anything */
        size_t sum = 0;
        for (size_t d = 0; d < 65536; d++) {
            size_t c = count[d];
            count[d] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++)
            dst[count[(src[i] >> shift) & 0xffff]++] = src[i];
        uint64_t *t = src;
        src = dst;
        dst = t;
    }
    return src;
}

static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Mark the k smallest of the n keys (magnitude bits << 32 | index; all
 * distinct) by radix selection: histogram a 16-bit digit of the candidates,
 * from the top; every candidate below the digit where the k-th smallest
 * falls is marked, the ones with that digit stay candidates for the next
 * digit, the rest are dropped. The marked set is the first k of the sorted
 * keys, found in about two passes over them instead of a sort. Uses ws->a
 * (the keys) and ws->b. */
static void mark_smallest(st_evolve_ws *ws, size_t n, int64_t k, uint8_t *removed)
{
    if (k <= 0)
        return;
    size_t *count = ws->count;
    uint64_t *src = ws->a, *alt = ws->b;
    size_t m = n, need = (size_t)k;
    for (int shift = 48; m > 0; shift -= 16) {
        memset(count, 0, sizeof(size_t) * 65536);
        for (size_t i = 0; i < m; i++)
            count[(src[i] >> shift) & 0xffff]++;
        size_t below = 0, t = 0;
        while (below + count[t] < need)
            below += count[t++];
        size_t e = 0;
        for (size_t i = 0; i < m; i++) { /* branch-free: the digits are random */
            const size_t dg = (src[i] >> shift) & 0xffff;
            removed[(uint32_t)src[i]] |= dg < t;
            alt[e] = src[i];
            e += dg == t;
        }
        need -= below;
        if (need == e || shift == 0) { /* the whole digit's bucket is taken */
            for (size_t i = 0; i < need; i++)
                removed[(uint32_t)alt[i]] = 1;
            return;
        }
        uint64_t *tp = src;
        src = alt;
        alt = tp;
        m = e;
    }
}

static int64_t prune_select_ws(const st_layer *L, double zeta, uint8_t *removed,
                               st_evolve_stats *st, st_evolve_ws *ws)
{
    const int bs = L->bi * L->bo;
    memset(removed, 0, (size_t)L->nb);
    int64_t total;
    uint64_t *v = ws->a;
    if (bs == 1) {
        size_t npos = 0, nneg = 0;
        for (int32_t k = 0; k < L->nb; k++) { /* branch-free: the signs are random */
            v[npos] = (uint64_t)fbits(L->w[k]) << 32 | (uint32_t)k;
            npos += L->w[k] > 0.0f;
        }
        int64_t rpos = (int64_t)floor(zeta * (double)npos);
        mark_smallest(ws, npos, rpos, removed);
        for (int32_t k = 0; k < L->nb; k++) { /* closest to zero = smallest |w| */
            v[nneg] = (uint64_t)fbits(-L->w[k]) << 32 | (uint32_t)k;
            nneg += L->w[k] < 0.0f;
        }
        int64_t rneg = (int64_t)floor(zeta * (double)nneg);
        mark_smallest(ws, nneg, rneg, removed);
        st->removed_pos = rpos;
        st->removed_neg = rneg;
        total = rpos + rneg;
    } else {
        for (int32_t k = 0; k < L->nb; k++) {
            const float *wk = L->w + (int64_t)k * bs;
            float s = 0.0f;
            for (int t = 0; t < bs; t++)
                s += fabsf(wk[t]);
            v[k] = (uint64_t)fbits(s) << 32 | (uint32_t)k;
        }
        total = (int64_t)floor(zeta * (double)L->nb);
        mark_smallest(ws, (size_t)L->nb, total, removed);
        st->removed_pos = st->removed_neg = 0;
    }
    st->removed = total;
    return total;
}

int64_t layer_prune_select(const st_layer *L, double zeta, uint8_t *removed,
                           st_evolve_stats *st)
{
    st_evolve_ws *ws = ws_alloc(L->nb, L->nbc, zeta);
    int64_t n = prune_select_ws(L, zeta, removed, st, ws);
    evolve_ws_free(ws);
    return n;
}

static int bits_for(uint64_t v) /* bits needed to hold 0..v */
{
    int b = 0;
    while (b < 64 && (v >> b))
        b++;
    return b ? b : 1;
}

/* A regrowth candidate's key packs its block position (the high bits) and
 * its draw number (the low dbits) into 64 bits; the draws it leaves room for
 * (at most 2^32 - 1, the counter word). */
static int draw_bits(uint64_t npos) { return 64 - bits_for(npos - 1); }
static uint64_t draw_max(int dbits) { return dbits >= 32 ? 0xffffffffull : ((1ull << dbits) - 1); }
/* A window asks for 1.25 times the blocks still missing plus 1024. */
static size_t window_for(size_t miss) { return miss + miss / 4 + 1024; }

int evolve_check_sizes(const int32_t *sizes, int n_layers, int motif, double epsilon,
                       double zeta, char *err)
{
    for (int l = 0; l < n_layers; l++) {
        const int bi = motif, bo = l == n_layers - 1 ? 1 : motif;
        const double p = layer_er_probability(sizes[l], sizes[l + 1], epsilon);
        if (p >= 1.0)
            continue; /* stored dense, never evolved */
        const uint64_t nbr = (uint64_t)(sizes[l + 1] / bo), nbc = (uint64_t)(sizes[l] / bi);
        const uint64_t npos = nbr * nbc;
        if (npos < 2)
            continue;
        const uint64_t dmax = draw_max(draw_bits(npos));
        /* the expected block count with a margin of 1% for the draw, and
         * the first window regrow_select asks for to regrow it */
        const size_t n = (size_t)floor(zeta * p * (double)nbr * (double)nbc * 1.01);
        if (window_for(n) > dmax)
            return st_fail(err, "layer %d (%d -> %d) is too large to evolve: regrowing its %zu "
                                "blocks needs %zu candidate draws, more than the %llu a "
                                "position key leaves room for; lower --epsilon, --zeta or the "
                                "layer's width (or raise --motif)",
                           l + 1, sizes[l], sizes[l + 1], n, window_for(n),
                           (unsigned long long)dmax);
    }
    return 0;
}

/* The n blocks to regrow: ws->acc_pos[0..n) sorted by position, ws->acc_j
 * their acceptance order. Returns the number of draws, or -1 (err).
 * Buffers: U, the sorted first occurrences (pos << dbits | draw), lives in
 * a[0..nu); each window is drawn into a[nu..nu + w) and sorted with b. A
 * window asks for 1.25 times the blocks still missing plus 1024, so nu never
 * exceeds 1.25 n + 1024 and the capacity 3 n + 8192 holds U and a sort's
 * partner beside it. */
static int64_t regrow_select(const st_layer *L, int layer, uint64_t seed, int epoch, int64_t n,
                             const uint8_t *removed, st_evolve_ws *ws, char *err)
{
    const uint64_t npos = (uint64_t)L->nbr * (uint64_t)L->nbc;
    const int dbits = draw_bits(npos);
    const uint64_t dmax = draw_max(dbits);
    uint64_t *U = ws->a, *B = ws->b;
    size_t nu = 0;
    uint64_t d = 0;
    while ((int64_t)nu < n) {
        size_t miss = (size_t)(n - (int64_t)nu);
        size_t w = window_for(miss);
        if (nu + w > ws->cap)
            return st_fail(err, "layer %d: the regrowth window does not fit its workspace", layer);
        if (d + w > dmax)
            return st_fail(err, "layer %d: regrowth needs more than %llu candidate draws (a "
                                "layer this large or this dense is not supported)", layer,
                           (unsigned long long)dmax);
        uint64_t *W = U + nu;
        for (size_t i = 0; i < w; i++) {
            uint64_t di = d + i;
            st_u32x4 u = st_rand(seed, ST_STREAM_REGROW_POS, (uint32_t)layer, (uint32_t)di,
                                 (uint32_t)(di >> 32), (uint32_t)epoch);
            W[i] = st_below(u.v[0], u.v[1], npos) << dbits | di;
        }
        d += w;
        /* by position; equal positions keep their draw order (the low bits
         * ascend through the window already) */
        uint64_t *S = radix_sort_bits(W, B, w, dbits, 64, ws->count);
        /* keep the empty positions: in position order the rows ascend and
         * so do the columns within a row, so one walk along each row's
         * sorted columns answers "occupied?" for all its candidates */
        size_t kept = 0;
        {
            const uint64_t nbc = (uint64_t)L->nbc;
            int32_t R = 0, p = L->row_ptr[0], pend = L->row_ptr[1];
            uint64_t row0 = 0; /* R * nbc */
            for (size_t i = 0; i < w; i++) {
                const uint64_t pos = S[i] >> dbits;
                if (pos >= row0 + nbc) {
                    do {
                        R++;
                        row0 += nbc;
                    } while (pos >= row0 + nbc);
                    p = L->row_ptr[R];
                    pend = L->row_ptr[R + 1];
                }
                const int32_t C = (int32_t)(pos - row0);
                while (p < pend && L->col_idx[p] < C)
                    p++;
                if (!(p < pend && L->col_idx[p] == C && !removed[p]))
                    S[kept++] = S[i];
            }
        }
        if (S != B)
            memcpy(B, S, sizeof(uint64_t) * kept);
        /* merge U and the window (in B) backwards into U[0 .. nu + kept) */
        size_t i = nu, j = kept, o = nu + kept;
        while (j > 0) {
            if (i > 0 && U[i - 1] > B[j - 1])
                U[--o] = U[--i];
            else
                U[--o] = B[--j];
        }
        /* keep each position's first occurrence (its earliest draw) */
        size_t m = 0;
        for (size_t q = 0; q < nu + kept; q++)
            if (m == 0 || (U[q] >> dbits) != (U[m - 1] >> dbits))
                U[m++] = U[q];
        nu = m;
    }
    /* the n earliest draws among the first occurrences are the accepted */
    const uint64_t dmask = dbits >= 64 ? ~0ull : ((1ull << dbits) - 1);
    for (size_t q = 0; q < nu; q++)
        B[q] = (U[q] & dmask) << 32 | (uint64_t)q; /* draw, then place in U */
    uint64_t *Ds = radix_sort_bits(B, U + nu, nu, 32, 32 + bits_for(d), ws->count); /* draws are distinct */
    uint64_t last_draw = Ds[n - 1] >> 32;
    /* acceptance order r of the place q; sorted by q, i.e. by position */
    uint64_t *P = ws->acc_pos;
    for (int64_t r = 0; r < n; r++)
        P[r] = (Ds[r] & 0xffffffffull) << 32 | (uint64_t)r;
    uint64_t *Ps = radix_sort_bits(P, B, (size_t)n, 32, 32 + bits_for(nu), ws->count); /* places are distinct */
    for (int64_t r = 0; r < n; r++) {
        uint64_t x = Ps[r];
        ws->acc_pos[r] = U[x >> 32] >> dbits;
        ws->acc_j[r] = (uint32_t)x;
    }
    return (int64_t)last_draw + 1;
}

int layer_evolve_ws(st_layer *L, int layer, uint64_t seed, int epoch, double zeta,
                    st_evolve_stats *st, st_evolve_ws *ws, char *err)
{
    memset(st, 0, sizeof *st);
    if (L->dense)
        return 0;
    if ((size_t)L->nb + 1 > ws->cap_nb || (size_t)L->nbc + 1 > ws->cap_nbc ||
        ws_cap_for(L->nb, zeta) > ws->cap)
        return st_fail(err, "layer %d: the evolution workspace is smaller than the layer", layer);
    const int bs = L->bi * L->bo;
    const int32_t nb = L->nb;
    st->blocks_before = nb;
    uint8_t *removed = ws->removed;
    int64_t n = prune_select_ws(L, zeta, removed, st, ws);
    int64_t draws = n > 0 ? regrow_select(L, layer, seed, epoch, n, removed, ws, err) : 0;
    if (draws < 0)
        return -1;
    st->draws = draws;
    st->regrown = n;
    const uint64_t *acc_pos = ws->acc_pos;
    const uint32_t *acc_j = ws->acc_j;

    /* 1. compact the survivors to the front, row by row */
    int32_t out = 0;
    for (int32_t R = 0; R < L->nbr; R++) {
        int32_t k0 = L->row_ptr[R], k1 = L->row_ptr[R + 1];
        L->row_ptr[R] = out;
        if (bs == 1) { /* branch-free: which blocks survive is random */
            for (int32_t k = k0; k < k1; k++) {
                L->col_idx[out] = L->col_idx[k];
                L->w[out] = L->w[k];
                L->v[out] = L->v[k];
                out += !removed[k];
            }
            continue;
        }
        for (int32_t k = k0; k < k1; k++) {
            if (removed[k])
                continue;
            if (out != k) {
                L->col_idx[out] = L->col_idx[k];
                memcpy(L->w + (int64_t)out * bs, L->w + (int64_t)k * bs, sizeof(float) * (size_t)bs);
                memcpy(L->v + (int64_t)out * bs, L->v + (int64_t)k * bs, sizeof(float) * (size_t)bs);
            }
            out++;
        }
    }
    L->row_ptr[L->nbr] = out;
    if ((int64_t)out + n != nb)
        return st_fail(err, "layer %d: %d survivors and %lld regrown blocks do not make the %d "
                            "it had", layer, out, (long long)n, nb);
    /* m = 1: the new weights' uniforms, 16 Philox blocks at a time (each
     * weight e takes word e % 4 of block e / 4, as in the loop below);
     * ws->b is free once regrow_select has filled acc_pos and acc_j */
    float *unew = NULL;
    if (bs == 1 && n > 0) {
        unew = (float *)ws->b;
        const uint32_t tag = ((uint32_t)ST_STREAM_REGROW_W << 24) | ((uint32_t)layer & 0xFFFFFFu);
        for (int64_t r0 = 0; r0 < n; r0 += 16) {
            uint32_t c[4][16];
            const int nr = n - r0 < 16 ? (int)(n - r0) : 16;
            for (int j = 0; j < 16; j++) {
                const uint64_t e = acc_j[r0 + (j < nr ? j : nr - 1)];
                c[0][j] = (uint32_t)(e / 4);
                c[1][j] = (uint32_t)(e / 4 >> 32);
                c[2][j] = (uint32_t)epoch;
                c[3][j] = tag;
            }
            st_philox4x32_10_x16(c, (uint32_t)seed, (uint32_t)(seed >> 32));
            for (int j = 0; j < nr; j++)
                unew[r0 + j] = 2.0f * st_u01f(c[acc_j[r0 + j] % 4][j]) - 1.0f;
        }
    }
    /* 2. merge survivors and new blocks from the back */
    int64_t o = nb, a = n - 1;
    uint64_t row0 = (uint64_t)L->nbr * (uint64_t)L->nbc; /* R * nbc */
    for (int32_t R = L->nbr - 1; R >= 0; R--) {
        const int32_t s_beg = L->row_ptr[R], s_end = L->row_ptr[R + 1];
        row0 -= (uint64_t)L->nbc;
        int64_t a_beg = a; /* the new blocks left are in rows <= R */
        while (a_beg >= 0 && acc_pos[a_beg] >= row0)
            a_beg--;
        /* new blocks of row R: acc (a_beg, a] */
        const float lim =
            layer_init_limit_fanin(L, ((int64_t)(s_end - s_beg) + (a - a_beg)) * L->bi);
        const int64_t row_end = o;
        int32_t s = s_end - 1;
        if (unew) { /* m = 1, branch-free: new and surviving blocks interleave at random */
            while (s >= s_beg || a > a_beg) {
                o--;
                const int has_new = a > a_beg, has_old = s >= s_beg;
                const int32_t cn = (int32_t)(acc_pos[has_new ? a : 0] - row0);
                const int32_t so = has_old ? s : (int32_t)o; /* o >= s: nothing read is lost */
                const int32_t co = L->col_idx[so];
                const int take_new = has_new && (!has_old || cn > co);
                const float wn = unew[has_new ? a : 0] * lim, wo = L->w[so], vo = L->v[so];
                L->col_idx[o] = take_new ? cn : co;
                L->w[o] = take_new ? wn : wo;
                L->v[o] = take_new ? 0.0f : vo;
                a -= take_new;
                s -= !take_new;
            }
            L->row_ptr[R + 1] = (int32_t)row_end;
            continue;
        }
        while (s >= s_beg || a > a_beg) {
            o--;
            int32_t cnew = a > a_beg ? (int32_t)(acc_pos[a] - row0) : -1;
            if (a > a_beg && (s < s_beg || cnew > L->col_idx[s])) {
                L->col_idx[o] = cnew;
                for (int t = 0; t < bs; t++) {
                    uint64_t e = (uint64_t)acc_j[a] * bs + t;
                    st_u32x4 u = st_rand(seed, ST_STREAM_REGROW_W, (uint32_t)layer,
                                         (uint32_t)(e / 4), (uint32_t)(e / 4 >> 32),
                                         (uint32_t)epoch);
                    L->w[o * bs + t] = (2.0f * st_u01f(u.v[e % 4]) - 1.0f) * lim;
                    L->v[o * bs + t] = 0.0f;
                }
                a--;
            } else {
                if (o != s) {
                    L->col_idx[o] = L->col_idx[s];
                    memcpy(L->w + o * bs, L->w + (int64_t)s * bs, sizeof(float) * (size_t)bs);
                    memcpy(L->v + o * bs, L->v + (int64_t)s * bs, sizeof(float) * (size_t)bs);
                }
                s--;
            }
        }
        L->row_ptr[R + 1] = (int32_t)row_end;
    }
    L->row_ptr[0] = 0;
    st->blocks_after = nb;
    if (o != 0 || a != -1)
        return st_fail(err, "layer %d: evolution rebuilt %lld blocks of %d", layer,
                       (long long)(nb - o), nb);
    layer_build_transpose_ws(L, ws->fill, ws->a, ws->cap); /* a and b are free again */
    return 0;
}

int layer_evolve(st_layer *L, int layer, uint64_t seed, int epoch, double zeta,
                 st_evolve_stats *st, char *err)
{
    st_evolve_ws *ws = ws_alloc(L->dense ? 0 : L->nb, L->nbc, zeta);
    int rc = layer_evolve_ws(L, layer, seed, epoch, zeta, st, ws, err);
    evolve_ws_free(ws);
    return rc;
}
