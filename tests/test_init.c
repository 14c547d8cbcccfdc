/* test_init.c: the initial weight scale (--init).
 *  - he (the default) is bit for bit what model_init always drew;
 *  - he-sparse draws the same uniform numbers, scaled per output neuron by
 *    sqrt(6 / k) with k its present inputs: every weight within its row's
 *    limit, the variance k Var(w) / 2 = 1 over a large layer, for m = 1, 2, 4;
 *  - the topology (Erdős–Rényi draw) does not depend on the scale;
 *  - regrown weights use the row's fan-in after pruning and regrowth;
 *  - the checkpoint keeps the scale. */
#define _GNU_SOURCE
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/checkpoint.h"
#include "util/common.h"
#include "train/config.h"
#include "harness.h"
#include "model/model.h"

static char tmpdir[256];

static int32_t row_fanin(const st_layer *L, int32_t r)
{
    return (L->row_ptr[r + 1] - L->row_ptr[r]) * L->bi;
}

static void test_default_unchanged(void)
{
    int32_t sizes[4] = {400, 256, 256, 10};
    st_model a, b;
    char err[ST_ERRLEN];
    ST_EXPECT(model_init(&a, sizes, 3, 2, 20, 7, err) == 0, "%s", err);
    ST_EXPECT(model_init_ex(&b, sizes, 3, 2, 20, 7, ST_INIT_HE, err) == 0, "%s", err);
    for (int l = 0; l < 3; l++) {
        int64_t n = layer_nnz(&a.layers[l]);
        ST_EXPECT(n == layer_nnz(&b.layers[l]), "layer %d sizes differ", l + 1);
        ST_EXPECT(!memcmp(a.layers[l].w, b.layers[l].w, sizeof(float) * (size_t)n),
                  "layer %d: he weights differ from model_init's", l + 1);
        float lim = layer_init_limit(&a.layers[l]);
        int within = 1;
        for (int64_t e = 0; e < n; e++)
            within &= fabsf(a.layers[l].w[e]) <= lim;
        ST_EXPECT(within, "layer %d: a weight exceeds sqrt(6 / n_in)", l + 1);
    }
    model_free(&a);
    model_free(&b);
}

static void check_sparse_layer(int motif)
{
    /* 3000 x 3000 at epsilon 20: about 40 present inputs per neuron. */
    int32_t sizes[3] = {3000, 3000, 10};
    st_model d, s;
    char err[ST_ERRLEN];
    ST_EXPECT(model_init_ex(&d, sizes, 2, motif, 20, 3, ST_INIT_HE, err) == 0, "%s", err);
    ST_EXPECT(model_init_ex(&s, sizes, 2, motif, 20, 3, ST_INIT_HE_SPARSE, err) == 0, "%s", err);
    const st_layer *D = &d.layers[0], *S = &s.layers[0];
    ST_EXPECT(D->nb == S->nb && !memcmp(D->row_ptr, S->row_ptr, sizeof(int32_t) * (D->nbr + 1)) &&
                  !memcmp(D->col_idx, S->col_idx, sizeof(int32_t) * (size_t)D->nb),
              "m=%d: the topology depends on the scale", motif);
    const int bs = S->bi * S->bo;
    const float ld = layer_init_limit(D);
    double acc = 0.0;
    int64_t n = 0;
    int within = 1, same_u = 1;
    for (int32_t r = 0; r < S->nbr; r++) {
        const int32_t k = row_fanin(S, r);
        const float lim = (float)sqrt(6.0 / k);
        for (int32_t b = S->row_ptr[r]; b < S->row_ptr[r + 1]; b++)
            for (int t = 0; t < bs; t++) {
                const float w = S->w[(int64_t)b * bs + t], wd = D->w[(int64_t)b * bs + t];
                within &= fabsf(w) <= lim;
                /* the same uniform draw u: w / lim = wd / lim_dense = 2u - 1 */
                same_u &= fabsf(w / lim - wd / ld) <= 1e-5f;
                acc += (double)w * w * k / 2.0;
                n++;
            }
    }
    double var_ratio = acc / (double)n;
    printf("    m=%d: %lld weights, mean k w^2 / 2 = %.4f (1 expected); he limit / he-sparse limit at the mean fan-in %.3f\n",
           motif, (long long)n, var_ratio, (ld / sqrt(6.0 / (S->nb * bs / (double)S->n_out))));
    ST_EXPECT(within, "m=%d: a weight exceeds sqrt(6 / k) of its row", motif);
    ST_EXPECT(same_u, "m=%d: he-sparse does not scale the same uniform draws", motif);
    ST_EXPECT(fabs(var_ratio - 1.0) < 0.03, "m=%d: k Var(w) / 2 = %.4f, expected 1", motif,
              var_ratio);
    /* The dense output layer: every row has fan-in n_in, the same limit as he. */
    ST_EXPECT(!memcmp(d.layers[1].w, s.layers[1].w, sizeof(float) * (size_t)layer_nnz(&d.layers[1])),
              "m=%d: the dense output layer differs between he and he-sparse", motif);
    model_free(&d);
    model_free(&s);
}

static void test_sparse_scale_m1(void) { check_sparse_layer(1); }
static void test_sparse_scale_m2(void) { check_sparse_layer(2); }
static void test_sparse_scale_m4(void) { check_sparse_layer(4); }

/* Regrown blocks get sqrt(6 / k') with k' the row's fan-in after evolution. */
static void test_regrow_scale(void)
{
    int32_t sizes[3] = {1200, 1200, 10};
    char err[ST_ERRLEN];
    for (int m = 1; m <= 4; m *= 2) {
        st_model s;
        ST_EXPECT(model_init_ex(&s, sizes, 2, m, 20, 5, ST_INIT_HE_SPARSE, err) == 0, "%s", err);
        st_layer *L = &s.layers[0];
        int64_t nnz = layer_nnz(L);
        for (int64_t e = 0; e < nnz; e++)
            L->v[e] = 1.0f; /* survivors keep v = 1; regrown weights start at v = 0 */
        st_evolve_stats st;
        ST_EXPECT(layer_evolve(L, 1, 5, 1, 0.3, &st, err) == 0, "%s", err);
        const int bs = L->bi * L->bo;
        int64_t regrown = 0, near_lim = 0;
        int within = 1;
        for (int32_t r = 0; r < L->nbr; r++) {
            const float lim = (float)sqrt(6.0 / row_fanin(L, r));
            for (int32_t b = L->row_ptr[r]; b < L->row_ptr[r + 1]; b++)
                if (L->v[(int64_t)b * bs] == 0.0f)
                    for (int t = 0; t < bs; t++) {
                        float w = L->w[(int64_t)b * bs + t];
                        within &= fabsf(w) <= lim;
                        near_lim += fabsf(w) > 0.9f * lim;
                        regrown++;
                    }
        }
        ST_EXPECT(regrown == st.regrown * bs, "m=%d: %lld regrown weights found, %lld expected", m,
                  (long long)regrown, (long long)(st.regrown * bs));
        ST_EXPECT(within, "m=%d: a regrown weight exceeds its row's sqrt(6 / k)", m);
        /* uniform in [-lim, lim]: about 10% beyond 0.9 lim (not the smaller dense scale) */
        ST_EXPECT(near_lim > regrown / 20, "m=%d: only %lld of %lld regrown weights reach 0.9 lim",
                  m, (long long)near_lim, (long long)regrown);
        model_free(&s);
    }
}

/* The checkpoint keeps --init (and --pad-input). */
static void test_checkpoint_keeps_init(void)
{
    int32_t sizes[3] = {64, 32, 3};
    st_model s, r;
    st_config c, rc;
    st_run_state rs, rrs;
    char err[ST_ERRLEN];
    config_defaults(&c);
    c.n_hidden = 1;
    c.hidden[0] = 32;
    c.motif = 2;
    c.init = ST_INIT_HE_SPARSE;
    c.pad_input = 1;
    snprintf(c.data, sizeof c.data, "/nonexistent/data.h5");
    ST_EXPECT(model_init_ex(&s, sizes, 2, 2, 20, 1, ST_INIT_HE_SPARSE, err) == 0, "%s", err);
    s.feat_mean = calloc(64, sizeof(float));
    s.feat_std = calloc(64, sizeof(float));
    for (int i = 0; i < 64; i++)
        s.feat_std[i] = 1.0f;
    memset(&rs, 0, sizeof rs);
    rs.best_acc = rs.final_acc = NAN;
    snprintf(rs.run_id, sizeof rs.run_id, "0123456789abcdef");
    rs.data_fp = (st_data_fingerprint){10, 5, 63, 3, 42};
    rs.has_fingerprint = 1;
    ST_EXPECT(checkpoint_save(tmpdir, &c, &s, &rs, err) == 0, "%s", err);
    char path[512];
    snprintf(path, sizeof path, "%s/checkpoint.h5", tmpdir);
    ST_EXPECT(checkpoint_load(path, &rc, &r, &rrs, err) == 0, "%s", err);
    ST_EXPECT(rc.init == ST_INIT_HE_SPARSE && rc.pad_input == 1, "init %d pad %d after load",
              (int)rc.init, rc.pad_input);
    ST_EXPECT(r.n_layers == 2 && r.layers[0].init == ST_INIT_HE_SPARSE,
              "the loaded layers lost the scale");
    ST_EXPECT(!strcmp(rrs.run_id, "0123456789abcdef") && rrs.has_fingerprint &&
                  rrs.data_fp.d == 63 && rrs.data_fp.hash == 42,
              "run id or fingerprint lost: '%s' %d", rrs.run_id, rrs.has_fingerprint);
    model_free(&s);
    model_free(&r);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_init.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        printf("cannot make a temporary folder\ntest_init: 0 passed, 1 failed, 0 skipped\n");
        return 1;
    }
    ST_RUN(test_default_unchanged);
    ST_RUN(test_sparse_scale_m1);
    ST_RUN(test_sparse_scale_m2);
    ST_RUN(test_sparse_scale_m4);
    ST_RUN(test_regrow_scale);
    ST_RUN(test_checkpoint_keeps_init);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        printf("note: could not remove %s\n", tmpdir);
    return st_test_summary("test_init");
}
