/* checkpoint.c: writes and reads checkpoint.h5 (see checkpoint.h).
 *
 * Layout (format_version 2, root attribute; kind = "settrain-checkpoint"):
 *   /config  attributes: every training option that defines the run (data:
 *            the data file's absolute path)
 *   /state   attributes: st_run_state, with the run id (run_id) and the data
 *            fingerprint (data_n_train, data_n_test, data_d, data_k,
 *            data_hash); format_version 1 files lack those two and load
 *            with has_fingerprint = 0 and an empty run id
 *   /model   attributes n_layers, motif; datasets sizes (L + 1 int32),
 *            feat_mean, feat_std (n_0 float32)
 *   /model/layer_<l> (l = 1..L) attributes n_in, n_out, bi, bo, dense, nb,
 *            p; datasets w, v (nnz float32), bias, vbias (n_out float32) and,
 *            when sparse, row_ptr (nbr + 1 int32), col_idx (nb int32).
 * The transposed index is rebuilt on load. Loading validates every shape,
 * index range and value, so a damaged or hostile file gives one error line. */
#define _POSIX_C_SOURCE 200809L
#include "train/checkpoint.h"

#include <math.h>

#include "data/dataset.h"
#include "util/h5util.h"

typedef struct {
    const st_config *cfg;
    const st_model *m;
    const st_run_state *rs;
} ckpt_ctx;

static int write_f64_attr(hid_t loc, const char *path, const char *name, double v, char *err)
{
    return h5u_write_attr(loc, path, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 0, &v, err);
}

static int write_i64_attr(hid_t loc, const char *path, const char *name, int64_t v, char *err)
{
    return h5u_write_attr(loc, path, name, H5T_STD_I64LE, H5T_NATIVE_INT64, 0, &v, err);
}

/* A 1-D dataset, stored contiguous and uncompressed: weights and momentum
 * barely compress (random mantissas), and gzip made a checkpoint of 10M
 * connections take seconds longer to write than the bytes take to store. */
static int write_vec(hid_t file, const char *path, const char *name, hid_t ftype, hid_t mtype,
                     int64_t n, size_t elem, const void *data, char *err)
{
    (void)elem;
    hsize_t dims[1] = {(hsize_t)n};
    hid_t s = -1, d = -1;
    int rc = -1;
    H5_TRY(s = H5Screate_simple(1, dims, NULL));
    H5_TRY(d = H5Dcreate2(file, name, ftype, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    if (n > 0)
        H5_TRY(H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data));
    rc = 0;
fail:
    if (d >= 0) H5Dclose(d);
    if (s >= 0) H5Sclose(s);
    return rc;
}

static int write_config(hid_t g, const char *path, const st_config *c, char *err)
{
    uint64_t seed = c->seed;
    return h5u_write_str_attr(g, path, "data", c->data, err) ||
           h5u_write_attr(g, path, "hidden", H5T_STD_I32LE, H5T_NATIVE_INT32,
                          (hsize_t)c->n_hidden, c->hidden, err) ||
           h5u_write_int_attr(g, path, "motif", c->motif, err) ||
           write_f64_attr(g, path, "epsilon", c->epsilon, err) ||
           write_f64_attr(g, path, "zeta", c->zeta, err) ||
           h5u_write_int_attr(g, path, "epochs", c->epochs, err) ||
           h5u_write_int_attr(g, path, "batch", c->batch, err) ||
           write_f64_attr(g, path, "lr", c->lr, err) ||
           write_f64_attr(g, path, "momentum", c->momentum, err) ||
           write_f64_attr(g, path, "weight_decay", c->weight_decay, err) ||
           write_f64_attr(g, path, "dropout", c->dropout, err) ||
           h5u_write_str_attr(g, path, "activation", st_activation_names[c->activation], err) ||
           h5u_write_attr(g, path, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, 0, &seed, err) ||
           write_i64_attr(g, path, "train_limit", c->train_limit, err) ||
           h5u_write_int_attr(g, path, "standardize", c->standardize, err) ||
           h5u_write_int_attr(g, path, "checkpoint_every", c->checkpoint_every, err) ||
           h5u_write_str_attr(g, path, "init", st_init_names[c->init], err) ||
           h5u_write_int_attr(g, path, "pad_input", c->pad_input, err);
}

static int write_state(hid_t g, const char *path, const st_run_state *rs, char *err)
{
    return h5u_write_int_attr(g, path, "epochs_done", rs->epochs_done, err) ||
           write_i64_attr(g, path, "next_sample", rs->next_sample, err) ||
           write_f64_attr(g, path, "part_loss", rs->part_loss, err) ||
           write_i64_attr(g, path, "part_correct", rs->part_correct, err) ||
           write_f64_attr(g, path, "part_t_train", rs->part_t_train, err) ||
           write_f64_attr(g, path, "best_acc", rs->best_acc, err) ||
           write_f64_attr(g, path, "final_acc", rs->final_acc, err) ||
           h5u_write_int_attr(g, path, "best_epoch", rs->best_epoch, err) ||
           write_f64_attr(g, path, "sum_epoch_after_first", rs->sum_epoch_after_first, err) ||
           write_f64_attr(g, path, "first_epoch_s", rs->first_epoch_s, err) ||
           write_i64_attr(g, path, "evolutions_checked", rs->evolutions_checked, err) ||
           write_f64_attr(g, path, "wall_s", rs->wall_s, err) ||
           write_f64_attr(g, path, "ckpt_s", rs->ckpt_s, err) ||
           h5u_write_str_attr(g, path, "started", rs->started, err) ||
           h5u_write_str_attr(g, path, "run_id", rs->run_id, err) ||
           write_i64_attr(g, path, "data_n_train", rs->data_fp.n_train, err) ||
           write_i64_attr(g, path, "data_n_test", rs->data_fp.n_test, err) ||
           write_i64_attr(g, path, "data_d", rs->data_fp.d, err) ||
           write_i64_attr(g, path, "data_k", rs->data_fp.k, err) ||
           h5u_write_attr(g, path, "data_hash", H5T_STD_U64LE, H5T_NATIVE_UINT64, 0,
                          &rs->data_fp.hash, err);
}

static int write_layer(hid_t file, const char *path, int l, const st_layer *L, char *err)
{
    char name[64], d[96];
    hid_t g = -1;
    int rc = -1;
    snprintf(name, sizeof name, "/model/layer_%d", l);
    H5_TRY(g = H5Gcreate2(file, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    if (h5u_write_int_attr(g, path, "n_in", L->n_in, err) ||
        h5u_write_int_attr(g, path, "n_out", L->n_out, err) ||
        h5u_write_int_attr(g, path, "bi", L->bi, err) ||
        h5u_write_int_attr(g, path, "bo", L->bo, err) ||
        h5u_write_int_attr(g, path, "dense", L->dense, err) ||
        h5u_write_int_attr(g, path, "nb", L->nb, err) ||
        write_f64_attr(g, path, "p", L->p, err))
        goto fail;
    int64_t nnz = layer_nnz(L);
#define VEC(nm, ft, mt, n, el, data)                                                    \
    snprintf(d, sizeof d, "%s/%s", name, nm);                                            \
    if (write_vec(file, path, d, ft, mt, n, el, data, err))                              \
        goto fail;
    VEC("w", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, nnz, sizeof(float), L->w);
    VEC("v", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, nnz, sizeof(float), L->v);
    VEC("bias", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, L->n_out, sizeof(float), L->bias);
    VEC("vbias", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, L->n_out, sizeof(float), L->vbias);
    if (!L->dense) {
        VEC("row_ptr", H5T_STD_I32LE, H5T_NATIVE_INT32, (int64_t)L->nbr + 1, sizeof(int32_t),
            L->row_ptr);
        VEC("col_idx", H5T_STD_I32LE, H5T_NATIVE_INT32, L->nb, sizeof(int32_t), L->col_idx);
    }
#undef VEC
    rc = 0;
fail:
    if (g >= 0) H5Gclose(g);
    return rc;
}

static int write_checkpoint(hid_t file, const char *path, const void *vctx, char *err)
{
    const ckpt_ctx *ctx = vctx;
    const st_model *m = ctx->m;
    hid_t g = -1;
    int rc = -1;
    if (h5u_write_int_attr(file, path, "format_version", ST_CHECKPOINT_FORMAT_VERSION, err) ||
        h5u_write_str_attr(file, path, "kind", "settrain-checkpoint", err) ||
        h5u_write_str_attr(file, path, "settrain_version", ST_VERSION, err))
        return -1;
    H5_TRY(g = H5Gcreate2(file, "/config", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    if (write_config(g, path, ctx->cfg, err))
        goto fail;
    H5Gclose(g);
    H5_TRY(g = H5Gcreate2(file, "/state", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    if (write_state(g, path, ctx->rs, err))
        goto fail;
    H5Gclose(g);
    H5_TRY(g = H5Gcreate2(file, "/model", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    if (h5u_write_int_attr(g, path, "n_layers", m->n_layers, err) ||
        h5u_write_int_attr(g, path, "motif", m->motif, err))
        goto fail;
    H5Gclose(g);
    g = -1;
    if (write_vec(file, path, "/model/sizes", H5T_STD_I32LE, H5T_NATIVE_INT32,
                  m->n_layers + 1, sizeof(int32_t), m->sizes, err) ||
        write_vec(file, path, "/model/feat_mean", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, m->sizes[0],
                  sizeof(float), m->feat_mean, err) ||
        write_vec(file, path, "/model/feat_std", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, m->sizes[0],
                  sizeof(float), m->feat_std, err))
        goto fail;
    for (int l = 0; l < m->n_layers; l++)
        if (write_layer(file, path, l + 1, &m->layers[l], err))
            goto fail;
    rc = 0;
fail:
    if (g >= 0) H5Gclose(g);
    return rc;
}

int checkpoint_save(const char *dir, const st_config *cfg, const st_model *m,
                    const st_run_state *rs, char *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/checkpoint.h5", dir);
    ckpt_ctx ctx = {cfg, m, rs};
    return h5u_save_atomic(path, write_checkpoint, &ctx, 1, err);
}

/* ------------------------------------------------------------------ load */


/* An integer attribute within [lo, hi]. */
static int read_int_in(hid_t loc, const char *path, const char *name, int64_t lo, int64_t hi,
                       int64_t *out, char *err)
{
    if (h5u_read_int_attr(loc, path, name, out, err))
        return -1;
    if (*out < lo || *out > hi)
        return st_fail(err, "%s: attribute %s = %lld is outside [%lld, %lld]", path, name,
                       (long long)*out, (long long)lo, (long long)hi);
    return 0;
}

static int read_dbl_in(hid_t loc, const char *path, const char *name, double lo, double hi,
                       double *out, char *err)
{
    if (h5u_read_num_attr(loc, path, name, out, err))
        return -1;
    if (!(*out >= lo && *out <= hi))
        return st_fail(err, "%s: attribute %s = %g is outside [%g, %g]", path, name, *out, lo,
                       hi);
    return 0;
}

/* Read a 1-D dataset of exactly n elements of class cls into a new buffer. */
static void *read_vec(hid_t file, const char *path, const char *name, H5T_class_t cls,
                      hid_t mtype, int64_t n, size_t elem, char *err)
{
    hsize_t dims[2];
    hid_t d = h5u_open_checked(file, path, name, 1, cls, dims, err);
    if (d < 0)
        return NULL;
    if ((int64_t)dims[0] != n) {
        st_fail(err, "%s: %s has %lld elements, expected %lld", path, name,
                (long long)dims[0], (long long)n);
        H5Dclose(d);
        return NULL;
    }
    if (h5u_check_stored(d, path, name, 1, dims, err)) {
        H5Dclose(d);
        return NULL;
    }
    void *buf = st_malloc((size_t)n * elem, name);
    if (n > 0 && H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        char msg[256];
        st_fail(err, "%s: cannot read %s: %s", path, name, h5u_message(msg));
        free(buf);
        buf = NULL;
    }
    H5Dclose(d);
    return buf;
}

static int all_finite(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

/* config/hidden: an int array of 1..ST_MAX_HIDDEN values. */
static int read_hidden(hid_t g, const char *path, st_config *c, char *err)
{
    hid_t a = -1, s = -1;
    int rc = -1;
    htri_t ex;
    H5_TRY(ex = H5Aexists(g, "hidden"));
    if (!ex) {
        st_fail(err, "%s: missing attribute config/hidden", path);
        goto fail;
    }
    H5_TRY(a = H5Aopen(g, "hidden", H5P_DEFAULT));
    H5_TRY(s = H5Aget_space(a));
    hssize_t nh = H5Sget_simple_extent_npoints(s);
    if (nh < 1 || nh > ST_MAX_HIDDEN) {
        st_fail(err, "%s: config/hidden holds %lld sizes (1..%d expected)", path, (long long)nh,
                ST_MAX_HIDDEN);
        goto fail;
    }
    H5_TRY(H5Aread(a, H5T_NATIVE_INT32, c->hidden));
    c->n_hidden = (int)nh;
    rc = 0;
fail:
    if (s >= 0) H5Sclose(s);
    if (a >= 0) H5Aclose(a);
    return rc;
}

/* An unsigned 64-bit attribute (config/seed, state/data_hash). */
static int read_u64_attr(hid_t g, const char *path, const char *name, uint64_t *out,
                         char *err)
{
    hid_t a = -1;
    int rc = -1;
    htri_t ex;
    H5_TRY(ex = H5Aexists(g, name));
    if (!ex) {
        st_fail(err, "%s: missing attribute %s", path, name);
        goto fail;
    }
    H5_TRY(a = H5Aopen(g, name, H5P_DEFAULT));
    H5_TRY(H5Aread(a, H5T_NATIVE_UINT64, out));
    rc = 0;
fail:
    if (a >= 0) H5Aclose(a);
    return rc;
}

static int read_config(hid_t g, const char *path, st_config *c, char *err)
{
    int64_t iv;
    char act[32];
    config_defaults(c);
    if (h5u_read_str_attr(g, path, "data", c->data, sizeof c->data, err) != 0)
        return c->data[0] ? -1 : st_fail(err, "%s: missing attribute config/data", path);
    if (read_hidden(g, path, c, err))
        return -1;
    if (read_int_in(g, path, "motif", 1, 1 << 20, &iv, err)) return -1;
    c->motif = (int)iv;
    if (read_dbl_in(g, path, "epsilon", 1e-9, 1e9, &c->epsilon, err) ||
        read_dbl_in(g, path, "zeta", 0, 1, &c->zeta, err))
        return -1;
    if (read_int_in(g, path, "epochs", 1, 1000000, &iv, err)) return -1;
    c->epochs = (int)iv;
    if (read_int_in(g, path, "batch", 1, 4096, &iv, err)) return -1;
    c->batch = (int)iv;
    if (read_dbl_in(g, path, "lr", 0, 1e6, &c->lr, err) ||
        read_dbl_in(g, path, "momentum", 0, 1, &c->momentum, err) ||
        read_dbl_in(g, path, "weight_decay", 0, 1e6, &c->weight_decay, err) ||
        read_dbl_in(g, path, "dropout", 0, 0.999999, &c->dropout, err))
        return -1;
    if (h5u_read_str_attr(g, path, "activation", act, sizeof act, err) != 0)
        return st_fail(err, "%s: missing attribute config/activation", path);
    int found = -1;
    for (int k = 0; k < ST_ACT_COUNT; k++)
        if (!strcmp(act, st_activation_names[k]))
            found = k;
    if (found < 0)
        return st_fail(err, "%s: unknown activation '%s'", path, act);
    c->activation = (st_activation)found;
    if (read_u64_attr(g, path, "seed", &c->seed, err))
        return -1;
    if (read_int_in(g, path, "train_limit", 0, INT64_MAX, &c->train_limit, err)) return -1;
    if (read_int_in(g, path, "standardize", 0, 1, &iv, err)) return -1;
    c->standardize = (int)iv;
    if (read_int_in(g, path, "checkpoint_every", 0, 1000000, &iv, err)) return -1;
    c->checkpoint_every = (int)iv;
    /* init and pad_input came after format_version 2's first files: absent = he, no pad */
    char init[32] = "";
    int r = h5u_read_str_attr(g, path, "init", init, sizeof init, err);
    if (r < 0)
        return -1;
    if (r == 0) {
        int f = -1;
        for (int k = 0; k < ST_INIT_COUNT; k++)
            if (!strcmp(init, st_init_names[k]))
                f = k;
        if (f < 0)
            return st_fail(err, "%s: unknown config/init '%s'", path, init);
        c->init = (st_init)f;
    }
    htri_t ex = H5Aexists(g, "pad_input");
    if (ex < 0)
        return st_fail(err, "%s: cannot read config/pad_input", path);
    if (ex) {
        if (read_int_in(g, path, "pad_input", 0, 1, &iv, err)) return -1;
        c->pad_input = (int)iv;
    }
    return 0;
}

static int read_state(hid_t g, const char *path, const st_config *c, int64_t version,
                      st_run_state *rs, char *err)
{
    int64_t iv;
    memset(rs, 0, sizeof *rs);
    if (read_int_in(g, path, "epochs_done", 0, c->epochs, &iv, err)) return -1;
    rs->epochs_done = (int)iv;
    if (read_int_in(g, path, "next_sample", 0, INT64_MAX, &rs->next_sample, err)) return -1;
    if (rs->next_sample % c->batch != 0 || (rs->next_sample > 0 && rs->epochs_done >= c->epochs))
        return st_fail(err, "%s: state/next_sample %lld does not fit the run", path,
                       (long long)rs->next_sample);
    if (h5u_read_num_attr(g, path, "part_loss", &rs->part_loss, err) ||
        read_int_in(g, path, "part_correct", 0, rs->next_sample, &rs->part_correct, err) ||
        h5u_read_num_attr(g, path, "part_t_train", &rs->part_t_train, err) ||
        h5u_read_num_attr(g, path, "best_acc", &rs->best_acc, err) ||
        h5u_read_num_attr(g, path, "final_acc", &rs->final_acc, err) ||
        h5u_read_num_attr(g, path, "sum_epoch_after_first", &rs->sum_epoch_after_first, err) ||
        h5u_read_num_attr(g, path, "first_epoch_s", &rs->first_epoch_s, err) ||
        h5u_read_num_attr(g, path, "wall_s", &rs->wall_s, err))
        return -1;
    htri_t cex = H5Aexists(g, "ckpt_s");
    if (cex > 0 && h5u_read_num_attr(g, path, "ckpt_s", &rs->ckpt_s, err))
        return -1;
    if (read_int_in(g, path, "best_epoch", 0, c->epochs, &iv, err)) return -1;
    rs->best_epoch = (int)iv;
    if (read_int_in(g, path, "evolutions_checked", 0, c->epochs, &rs->evolutions_checked, err))
        return -1;
    if (h5u_read_str_attr(g, path, "started", rs->started, sizeof rs->started, err) < 0)
        return -1;
    if (version < 2)
        return 0;
    int r = h5u_read_str_attr(g, path, "run_id", rs->run_id, sizeof rs->run_id, err);
    if (r < 0)
        return -1;
    if (r > 0)
        return st_fail(err, "%s: missing attribute state/run_id", path);
    if (strlen(rs->run_id) != ST_RUN_ID_LEN)
        return st_fail(err, "%s: state/run_id '%s' is not a run id", path, rs->run_id);
    int64_t k;
    if (read_int_in(g, path, "data_n_train", 1, INT64_MAX, &rs->data_fp.n_train, err) ||
        read_int_in(g, path, "data_n_test", 0, INT64_MAX, &rs->data_fp.n_test, err) ||
        read_int_in(g, path, "data_d", 1, INT64_MAX, &rs->data_fp.d, err) ||
        read_int_in(g, path, "data_k", 2, INT32_MAX, &k, err) ||
        read_u64_attr(g, path, "data_hash", &rs->data_fp.hash, err))
        return -1;
    rs->data_fp.k = (int32_t)k;
    rs->has_fingerprint = 1;
    return 0;
}

static int read_layer(hid_t file, const char *path, int l, st_layer *L, int motif,
                      int last, const int32_t *sizes, char *err)
{
    char name[64], d[96];
    hid_t g = -1;
    int64_t v;
    snprintf(name, sizeof name, "/model/layer_%d", l);
    htri_t ex = H5Lexists(file, name, H5P_DEFAULT);
    if (ex <= 0)
        return st_fail(err, "%s: missing group %s", path, name);
    if ((g = H5Gopen2(file, name, H5P_DEFAULT)) < 0)
        return st_fail(err, "%s: %s is not a group", path, name);
    int rc = -1;
    L->n_in = sizes[l - 1];
    L->n_out = sizes[l];
    L->bi = motif;
    L->bo = last ? 1 : motif;
    L->nbr = L->n_out / L->bo;
    L->nbc = L->n_in / L->bi;
#define EXPECT_ATTR(nm, val)                                                              \
    if (h5u_read_int_attr(g, path, nm, &v, err)) goto fail;                               \
    if (v != (val)) {                                                                     \
        st_fail(err, "%s: %s/%s = %lld, expected %lld", path, name, nm, (long long)v,     \
                (long long)(val));                                                        \
        goto fail;                                                                        \
    }
    EXPECT_ATTR("n_in", L->n_in);
    EXPECT_ATTR("n_out", L->n_out);
    EXPECT_ATTR("bi", L->bi);
    EXPECT_ATTR("bo", L->bo);
#undef EXPECT_ATTR
    if (read_int_in(g, path, "dense", 0, 1, &v, err)) goto fail;
    L->dense = (int)v;
    int64_t max_nb = (int64_t)L->nbr * L->nbc;
    if (read_int_in(g, path, "nb", 0, L->dense ? 0 : max_nb, &v, err)) goto fail;
    L->nb = (int32_t)v;
    if (read_dbl_in(g, path, "p", 0, 1, &L->p, err)) goto fail;
    int64_t nnz = layer_nnz(L);
    if (nnz > INT32_MAX) {
        st_fail(err, "%s: %s holds more than 2^31-1 weights", path, name);
        goto fail;
    }
#define VEC(dst, nm, cls, mt, n, el)                                                      \
    snprintf(d, sizeof d, "%s/%s", name, nm);                                             \
    if (!(dst = read_vec(file, path, d, cls, mt, n, el, err))) goto fail;
    VEC(L->w, "w", H5T_FLOAT, H5T_NATIVE_FLOAT, nnz, sizeof(float));
    VEC(L->v, "v", H5T_FLOAT, H5T_NATIVE_FLOAT, nnz, sizeof(float));
    VEC(L->bias, "bias", H5T_FLOAT, H5T_NATIVE_FLOAT, L->n_out, sizeof(float));
    VEC(L->vbias, "vbias", H5T_FLOAT, H5T_NATIVE_FLOAT, L->n_out, sizeof(float));
    if (!all_finite(L->w, nnz) || !all_finite(L->v, nnz) || !all_finite(L->bias, L->n_out) ||
        !all_finite(L->vbias, L->n_out)) {
        st_fail(err, "%s: %s holds a NaN or infinite weight, momentum or bias", path, name);
        goto fail;
    }
    if (!L->dense) {
        VEC(L->row_ptr, "row_ptr", H5T_INTEGER, H5T_NATIVE_INT32, (int64_t)L->nbr + 1,
            sizeof(int32_t));
        VEC(L->col_idx, "col_idx", H5T_INTEGER, H5T_NATIVE_INT32, L->nb, sizeof(int32_t));
        if (L->row_ptr[0] != 0 || L->row_ptr[L->nbr] != L->nb) {
            st_fail(err, "%s: %s/row_ptr does not span its %d blocks", path, name, L->nb);
            goto fail;
        }
        for (int32_t r = 0; r < L->nbr; r++) {
            if (L->row_ptr[r + 1] < L->row_ptr[r] || L->row_ptr[r + 1] > L->nb) {
                st_fail(err, "%s: %s/row_ptr decreases at block row %d", path, name, r);
                goto fail;
            }
            for (int32_t k = L->row_ptr[r]; k < L->row_ptr[r + 1]; k++)
                if (L->col_idx[k] < 0 || L->col_idx[k] >= L->nbc ||
                    (k > L->row_ptr[r] && L->col_idx[k] <= L->col_idx[k - 1])) {
                    st_fail(err, "%s: %s/col_idx is out of range or unsorted in block row %d",
                            path, name, r);
                    goto fail;
                }
        }
        L->t_ptr = st_malloc(sizeof(int32_t) * ((size_t)L->nbc + 1), "t_ptr");
        L->t_blk = st_malloc(sizeof(int32_t) * ((size_t)L->nb + 1), "t_blk");
        L->t_row = st_malloc(sizeof(int32_t) * ((size_t)L->nb + 1), "t_row");
        layer_build_transpose(L);
    }
#undef VEC
    rc = 0;
fail:
    H5Gclose(g);
    return rc;
}

int checkpoint_load(const char *path, st_config *cfg, st_model *m, st_run_state *rs,
                    char *err)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    memset(m, 0, sizeof *m);
    /* regular file, not empty, not locked by a writer, an HDF5 file */
    hid_t file = h5u_open_read(path, err);
    if (file < 0)
        return -1;
    hid_t g = -1;
    int rc = -1;
    int64_t v;
    char kind[64] = "";
    if (h5u_read_str_attr(file, path, "kind", kind, sizeof kind, err) < 0)
        goto fail;
    if (strcmp(kind, "settrain-checkpoint")) {
        st_fail(err, "%s: not a settrain checkpoint (no kind = settrain-checkpoint)", path);
        goto fail;
    }
    if (h5u_read_int_attr(file, path, "format_version", &v, err))
        goto fail;
    if (v < 1 || v > ST_CHECKPOINT_FORMAT_VERSION) {
        st_fail(err, "%s: checkpoint format_version %lld is not supported (this build reads "
                     "1..%d)", path, (long long)v, ST_CHECKPOINT_FORMAT_VERSION);
        goto fail;
    }
    const int64_t version = v;
    const char *groups[3] = {"/config", "/state", "/model"};
    for (int i = 0; i < 3; i++)
        if (H5Lexists(file, groups[i], H5P_DEFAULT) <= 0) {
            st_fail(err, "%s: missing group %s", path, groups[i]);
            goto fail;
        }
    H5_TRY(g = H5Gopen2(file, "/config", H5P_DEFAULT));
    if (read_config(g, path, cfg, err))
        goto fail;
    H5Gclose(g);
    H5_TRY(g = H5Gopen2(file, "/state", H5P_DEFAULT));
    if (read_state(g, path, cfg, version, rs, err))
        goto fail;
    H5Gclose(g);
    H5_TRY(g = H5Gopen2(file, "/model", H5P_DEFAULT));
    if (read_int_in(g, path, "n_layers", cfg->n_hidden + 1, cfg->n_hidden + 1, &v, err))
        goto fail;
    m->n_layers = (int)v;
    if (read_int_in(g, path, "motif", cfg->motif, cfg->motif, &v, err))
        goto fail;
    m->motif = (int)v;
    H5Gclose(g);
    g = -1;
    if (!(m->sizes = read_vec(file, path, "/model/sizes", H5T_INTEGER, H5T_NATIVE_INT32,
                              m->n_layers + 1, sizeof(int32_t), err)))
        goto fail;
    for (int l = 1; l < m->n_layers; l++)
        if (m->sizes[l] != cfg->hidden[l - 1]) {
            st_fail(err, "%s: /model/sizes does not match config/hidden", path);
            goto fail;
        }
    if (model_check_shape(m->sizes, m->n_layers, m->motif, err)) {
        char inner[ST_ERRLEN];
        snprintf(inner, sizeof inner, "%s", err);
        st_fail(err, "%s: %s", path, inner);
        goto fail;
    }
    m->layers = st_calloc((size_t)m->n_layers, sizeof(st_layer), "layers");
    if (!(m->feat_mean = read_vec(file, path, "/model/feat_mean", H5T_FLOAT, H5T_NATIVE_FLOAT,
                                  m->sizes[0], sizeof(float), err)) ||
        !(m->feat_std = read_vec(file, path, "/model/feat_std", H5T_FLOAT, H5T_NATIVE_FLOAT,
                                 m->sizes[0], sizeof(float), err)))
        goto fail;
    if (!all_finite(m->feat_mean, m->sizes[0]) || !all_finite(m->feat_std, m->sizes[0])) {
        st_fail(err, "%s: standardisation statistics hold a NaN or infinity", path);
        goto fail;
    }
    for (int l = 0; l < m->n_layers; l++) {
        if (read_layer(file, path, l + 1, &m->layers[l], m->motif, l == m->n_layers - 1,
                       m->sizes, err))
            goto fail;
        m->layers[l].init = cfg->init;
    }
    rc = 0;
fail:
    if (g >= 0)
        H5Gclose(g);
    H5Fclose(file);
    if (rc)
        model_free(m);
    return rc;
}
