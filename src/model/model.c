/* model.c: layer sizes, Erdős–Rényi block topology and He-uniform
 * initialisation of the motif-sparse MLP (DESIGN.md "The network").
 *
 * Topology: for each block row (output motif) of W^T the present block
 * columns are drawn by geometric skipping: the gap to the next present block
 * is floor(log U / log(1 - p)), U uniform in (0, 1]. This yields exactly the
 * distribution of an independent Bernoulli(p) draw per block (a binomial
 * count per row, distinct sorted columns) in O(nb) work, never visiting
 * empty positions. U comes from Philox (seed, INIT_TOPO, layer, draw, row). */
#include "model/model.h"

#include <limits.h>

#include "util/common.h"
#include "util/philox.h"

const char *const st_activation_names[ST_ACT_COUNT] = {"relu", "allrelu", "sigmoid", "tanh"};
const char *const st_init_names[ST_INIT_COUNT] = {"he", "he-sparse"};

double layer_er_probability(int64_t n_in, int64_t n_out, double epsilon)
{
    double p = epsilon * (double)(n_in + n_out) / ((double)n_in * (double)n_out);
    return p < 1.0 ? p : 1.0;
}

int model_check_shape(const int32_t *sizes, int n_layers, int motif, char *err)
{
    if (n_layers < 1)
        return st_fail(err, "the network needs at least one layer");
    if (motif < 1)
        return st_fail(err, "motif size must be >= 1 (got %d)", motif);
    for (int l = 0; l <= n_layers; l++)
        if (sizes[l] < 1)
            return st_fail(err, "layer size %d (n_%d) must be >= 1", sizes[l], l);
    for (int l = 0; l < n_layers; l++)
        if (sizes[l] % motif != 0)
            return st_fail(err,
                           "motif size %d does not divide %s size %d (n_%d); "
                           "choose a motif size that divides every input and hidden size",
                           motif, l == 0 ? "the input (feature)" : "hidden layer", sizes[l], l);
    return 0;
}

int64_t model_connections(const st_model *mdl)
{
    int64_t n = 0;
    for (int l = 0; l < mdl->n_layers; l++)
        n += layer_nnz(&mdl->layers[l]);
    return n;
}

void layer_build_transpose(st_layer *L)
{
    int32_t *fill = st_malloc(sizeof(int32_t) * ((size_t)L->nbc + 1), "transpose cursor");
    layer_build_transpose_ws(L, fill, NULL, 0);
    free(fill);
}

void layer_build_transpose_ws(st_layer *L, int32_t *fill, uint64_t *tmp, size_t tmp_cap)
{
    int32_t *cnt = L->t_ptr; /* counts first, then prefix sums */
    memset(cnt, 0, sizeof(int32_t) * ((size_t)L->nbc + 1));
    for (int32_t k = 0; k < L->nb; k++)
        cnt[L->col_idx[k] + 1]++;
    for (int32_t c = 0; c < L->nbc; c++)
        cnt[c + 1] += cnt[c];
    /* Wide layers in two cache-friendly passes: a scatter of every block to
     * one cursor per column touches a cache line per block once the cursors
     * and the column lists outgrow the cache. First by bucket of 2^cb
     * columns (at most about 1024 buckets, each written in order), the
     * column's offset in the bucket packed above the row in t_row; then each
     * bucket, copied to tmp, by column. Both passes are stable, so each
     * column's list is sorted by row as in the one-pass fill. */
    int cb = 8;
    while ((L->nbc >> cb) > 1024)
        cb++;
    const int32_t CB = (int32_t)1 << cb, nbk = (L->nbc + CB - 1) >> cb;
    /* tmp holds any bucket when it holds every block */
    const int two_pass = tmp && tmp_cap >= (size_t)L->nb && L->nbc > 4096 && cb < 32 &&
                         (int64_t)L->nbr <= ((int64_t)1 << (32 - cb));
    if (!two_pass) { /* fill in block-row order so each column's list is sorted by row */
        memcpy(fill, cnt, sizeof(int32_t) * (size_t)L->nbc);
        for (int32_t r = 0; r < L->nbr; r++)
            for (int32_t k = L->row_ptr[r]; k < L->row_ptr[r + 1]; k++) {
                int32_t j = fill[L->col_idx[k]]++;
                L->t_blk[j] = k;
                L->t_row[j] = r;
            }
        return;
    }
    const int rbits = 32 - cb;
    const uint32_t rmask = rbits >= 32 ? 0xffffffffu : ((1u << rbits) - 1);
    for (int32_t g = 0; g < nbk; g++)
        fill[g] = cnt[g * CB];
    for (int32_t r = 0; r < L->nbr; r++)
        for (int32_t k = L->row_ptr[r]; k < L->row_ptr[r + 1]; k++) {
            const int32_t c = L->col_idx[k];
            const int32_t j = fill[c >> cb]++;
            L->t_blk[j] = k;
            L->t_row[j] = (int32_t)(((uint32_t)(c & (CB - 1)) << rbits) | (uint32_t)r);
        }
    for (int32_t g = 0; g < nbk; g++) {
        const int32_t c0 = g * CB, c1 = c0 + CB < L->nbc ? c0 + CB : L->nbc;
        const int32_t beg = cnt[c0], end = cnt[c1];
        for (int32_t j = beg; j < end; j++)
            tmp[j - beg] = (uint64_t)(uint32_t)L->t_row[j] << 32 | (uint32_t)L->t_blk[j];
        memcpy(fill + c0, cnt + c0, sizeof(int32_t) * (size_t)(c1 - c0));
        for (int32_t i = 0; i < end - beg; i++) {
            const uint32_t packed = (uint32_t)(tmp[i] >> 32);
            const int32_t j = fill[c0 + (int32_t)(packed >> rbits)]++;
            L->t_blk[j] = (int32_t)(uint32_t)tmp[i];
            L->t_row[j] = (int32_t)(packed & rmask);
        }
    }
}

/* Visit the present block columns of block row r in increasing order; with
 * cols == NULL only counts. Returns the count. */
static int64_t er_row(uint64_t seed, int layer, int32_t r, int32_t nbc, double log1mp,
                      int32_t *cols)
{
    int64_t c = -1, n = 0;
    for (uint32_t j = 0;; j++) {
        st_u32x4 u = st_rand(seed, ST_STREAM_INIT_TOPO, (uint32_t)layer, j, (uint32_t)r, 0);
        double gap = floor(log(st_u01d_open0(u.v[0], u.v[1])) / log1mp);
        if (gap >= (double)nbc)
            break;
        c += 1 + (int64_t)gap;
        if (c >= nbc)
            break;
        if (cols)
            cols[n] = (int32_t)c;
        n++;
    }
    return n;
}

/* Weight e is (2 u_e - 1) lim with u_e from Philox (seed, INIT_W, layer,
 * e / 4) whatever the scale; lim is the layer's (ST_INIT_HE) or the block
 * row's (ST_INIT_HE_SPARSE; a dense layer's rows all have fan-in I). */
static void layer_init_weights(st_layer *L, uint64_t seed, int layer)
{
    int64_t nnz = layer_nnz(L);
    const int64_t row_len = L->dense ? L->n_in : 0; /* dense: one row of W^T per output */
    const int bs = L->bi * L->bo;
    int32_t r = 0;
    for (int64_t e = 0; e < nnz; e += 4) {
        uint64_t q = (uint64_t)e / 4;
        st_u32x4 u = st_rand(seed, ST_STREAM_INIT_W, (uint32_t)layer, (uint32_t)q,
                             (uint32_t)(q >> 32), 0);
        for (int t = 0; t < 4 && e + t < nnz; t++) {
            int64_t fanin;
            if (L->dense) {
                fanin = row_len;
            } else {
                int64_t k = (e + t) / bs; /* block number; find its block row */
                while (L->row_ptr[r + 1] <= k)
                    r++;
                fanin = (int64_t)(L->row_ptr[r + 1] - L->row_ptr[r]) * L->bi;
            }
            L->w[e + t] = (2.0f * st_u01f(u.v[t]) - 1.0f) * layer_init_limit_fanin(L, fanin);
        }
    }
}

int model_init(st_model *mdl, const int32_t *sizes, int n_layers, int motif, double epsilon,
               uint64_t seed, char *err)
{
    return model_init_ex(mdl, sizes, n_layers, motif, epsilon, seed, ST_INIT_HE, err);
}

int model_init_ex(st_model *mdl, const int32_t *sizes, int n_layers, int motif, double epsilon,
                  uint64_t seed, st_init init, char *err)
{
    memset(mdl, 0, sizeof *mdl);
    if (model_check_shape(sizes, n_layers, motif, err))
        return -1;
    if (!(epsilon > 0))
        return st_fail(err, "epsilon must be > 0 (got %g)", epsilon);
    mdl->n_layers = n_layers;
    mdl->motif = motif;
    mdl->sizes = st_malloc(sizeof(int32_t) * (size_t)(n_layers + 1), "layer sizes");
    memcpy(mdl->sizes, sizes, sizeof(int32_t) * (size_t)(n_layers + 1));
    mdl->layers = st_calloc((size_t)n_layers, sizeof(st_layer), "layers");
    for (int l = 0; l < n_layers; l++) {
        st_layer *L = &mdl->layers[l];
        int out_layer = (l == n_layers - 1);
        L->n_in = sizes[l];
        L->n_out = sizes[l + 1];
        L->bi = motif;
        L->bo = out_layer ? 1 : motif;
        L->nbr = L->n_out / L->bo;
        L->nbc = L->n_in / L->bi;
        L->p = layer_er_probability(L->n_in, L->n_out, epsilon);
        L->init = init;
        L->dense = L->p >= 1.0;
        if (L->dense) {
            int64_t nnz = (int64_t)L->n_in * L->n_out;
            if (nnz > INT32_MAX)
                return st_fail(err, "layer %d is dense with %lld weights; more than 2^31-1 is not supported",
                               l + 1, (long long)nnz);
        } else {
            double log1mp = log1p(-L->p);
            L->row_ptr = st_malloc(sizeof(int32_t) * ((size_t)L->nbr + 1), "row_ptr");
            int64_t nb = 0;
            L->row_ptr[0] = 0;
            for (int32_t r = 0; r < L->nbr; r++) {
                nb += er_row(seed, l + 1, r, L->nbc, log1mp, NULL);
                if (nb * L->bi * L->bo > INT32_MAX)
                    return st_fail(err, "layer %d would hold more than 2^31-1 connections; lower epsilon",
                                   l + 1);
                L->row_ptr[r + 1] = (int32_t)nb;
            }
            if (nb == 0)
                return st_fail(err, "layer %d (%d x %d) drew no connection at epsilon %g "
                                    "(block probability %.3g); raise --epsilon", l + 1, L->n_in,
                               L->n_out, epsilon, L->p);
            L->nb = (int32_t)nb;
            L->col_idx = st_malloc(sizeof(int32_t) * (size_t)nb, "col_idx");
            for (int32_t r = 0; r < L->nbr; r++)
                er_row(seed, l + 1, r, L->nbc, log1mp, L->col_idx + L->row_ptr[r]);
            L->t_ptr = st_malloc(sizeof(int32_t) * ((size_t)L->nbc + 1), "t_ptr");
            L->t_blk = st_malloc(sizeof(int32_t) * (size_t)nb, "t_blk");
            L->t_row = st_malloc(sizeof(int32_t) * (size_t)nb, "t_row");
            layer_build_transpose(L);
        }
        int64_t nnz = layer_nnz(L);
        L->w = st_malloc(sizeof(float) * (size_t)nnz, "weights");
        L->v = st_calloc((size_t)nnz, sizeof(float), "momentum");
        L->bias = st_calloc((size_t)L->n_out, sizeof(float), "bias");
        L->vbias = st_calloc((size_t)L->n_out, sizeof(float), "bias momentum");
        layer_init_weights(L, seed, l + 1);
    }
    return 0;
}

void layer_free(st_layer *L)
{
    free(L->row_ptr);
    free(L->col_idx);
    free(L->t_ptr);
    free(L->t_blk);
    free(L->t_row);
    free(L->w);
    free(L->v);
    free(L->bias);
    free(L->vbias);
    memset(L, 0, sizeof *L);
}

void model_free(st_model *mdl)
{
    if (mdl->layers)
        for (int l = 0; l < mdl->n_layers; l++)
            layer_free(&mdl->layers[l]);
    free(mdl->layers);
    free(mdl->sizes);
    free(mdl->feat_mean);
    free(mdl->feat_std);
    memset(mdl, 0, sizeof *mdl);
}
