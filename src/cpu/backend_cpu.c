/* backend_cpu.c: the CPU backend (plain C99 + OpenMP), the no-GPU path and
 * the oracle. Trains the host model in place. Buffers are sized once at
 * creation for the batch size: per layer l, a[l] and delta[l] (n_l, ld),
 * z[l] (n_l, ld) for the output layer and, unless the activation is ReLU
 * (whose backward needs a[l] alone), for hidden layers with their dropout
 * masks, and gradient arrays for the largest layer (dense layers' scratch;
 * sparse layers update fused).
 * Data-parallel batches (backend.h): a flat gradient buffer, a reduce hook,
 * the update from the buffer. The thread count is measured, not assumed
 * (adapt_*, below).
 *
 * Legend: B batch, ld = B rounded up to 8, n_l layer widths, L layers. */
#define _GNU_SOURCE
#include <omp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "util/common.h"
#include "cpu/cpu_ops.h"
#include "cpu/thread_adapt.h"

typedef struct {
    int ld;
    float **z, **a, **delta, **mask; /* index 0..L (a[0] is the input batch) */
    float *gw, *gb;                  /* largest nnz / largest n_out          */
    int32_t *ybuf;                   /* B labels                             */
    st_evolve_ws *ews;               /* evolution scratch, allocated once    */
    /* data-parallel batches (backend_cpu_set_data_parallel) */
    st_grad_reduce_fn reduce;
    void *reduce_ctx;
    int shard, shards;
    float *grad;                     /* flat gradient buffer, grad_n floats  */
    int64_t grad_n;
    st_thread_adapt ta;              /* thread count chosen by measurement     */
} cpu_impl;

/* Thread count: with other work on the machine, OpenMP's barriers wait for
 * a thread that the scheduler has paused, and two threads can run many
 * times slower than one. So the backend measures: every `period` batches it
 * times ADAPT_PROBE full batches on one thread, then up to ADAPT_PROBE on
 * tmax threads (stopping at the first that is clearly slower than one
 * thread), and runs the next period on the faster count. The period grows
 * fourfold up to ADAPT_MAX while the choice holds and restarts at
 * ADAPT_MIN when it changes. Within a period on tmax threads, two batches in
 * a row slower than 1.5 times the last one-thread time, or a mean over
 * ADAPT_WINDOW batches above 1.2 times it, switch to one thread at once: a
 * competing process that takes a core for a time slice now and then makes
 * one batch in a few very slow, which no two-in-a-row rule sees (784-1000-
 * 1000-10 at m = 8 beside a busy loop: 2.2-2.4x the one-thread time in 3 of
 * 6 runs before the window). Results do not depend on the thread count, so
 * this changes speed only. SETTRAIN_ADAPT_THREADS=0 keeps tmax throughout. */
#define ADAPT_PROBE 3
#define ADAPT_MIN 48
#define ADAPT_MAX 3072
#define ADAPT_WINDOW 8

void st_thread_adapt_init(st_thread_adapt *a, int tmax, int adapt)
{
    memset(a, 0, sizeof *a);
    a->tmax = tmax;
    a->adapt = tmax > 1 && adapt;
    a->probe = a->adapt ? 1 : 0; /* start by timing one thread */
    a->cur = a->adapt ? 1 : tmax;
    a->left = ADAPT_PROBE;
    a->period = ADAPT_MIN;
}

static void adapt_init(cpu_impl *c)
{
    int tmax = omp_get_max_threads();
#ifdef CPU_COUNT
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0 &&
        CPU_COUNT(&set) < tmax)
        tmax = CPU_COUNT(&set);
#endif
    const char *e = getenv("SETTRAIN_ADAPT_THREADS");
    st_thread_adapt_init(&c->ta, tmax, !(e && !strcmp(e, "0")));
    omp_set_num_threads(tmax);
}

static void adapt_choose(st_thread_adapt *a, int best)
{
    if (a->probe_n[0])
        a->t1_ref = a->probe_t[0] / a->probe_n[0];
    a->slow = 0;
    if (best == a->choice)
        a->period = a->period * 4 < ADAPT_MAX ? a->period * 4 : ADAPT_MAX;
    else
        a->period = ADAPT_MIN;
    a->choice = best;
    a->cur = best;
    a->probe = 0;
    a->left = a->period;
    a->probe_t[0] = a->probe_t[1] = 0;
    a->probe_n[0] = a->probe_n[1] = 0;
    a->win_t = 0;
    a->win_n = 0;
}

int st_thread_adapt_next(st_thread_adapt *a, int full, double dt)
{
    if (!a->adapt)
        return a->cur;
    if (a->probe && full) {
        a->probe_t[a->probe - 1] += dt;
        a->probe_n[a->probe - 1]++;
    }
    const double t1 = a->probe_n[0] ? a->probe_t[0] / a->probe_n[0] : 0;
    const int on_tmax = !a->probe && a->cur > 1 && full && a->t1_ref > 0;
    int win_slow = 0; /* a full window of tmax batches, slow on the mean */
    if (on_tmax) {
        a->win_t += dt;
        if (++a->win_n == ADAPT_WINDOW) {
            win_slow = a->win_t > 1.2 * a->t1_ref * ADAPT_WINDOW;
            a->win_t = 0;
            a->win_n = 0;
        }
    }
    if (a->probe == 2 && full && a->probe_n[0] && dt > 1.25 * t1) {
        adapt_choose(a, 1); /* clearly slower: no more batches on tmax */
    } else if (on_tmax && (dt > 1.5 * a->t1_ref ? ++a->slow : (a->slow = 0)) >= 2) {
        adapt_choose(a, 1); /* tmax turned slow within a period (other work started) */
    } else if (win_slow) {
        adapt_choose(a, 1); /* slow on the mean: now and then a batch waits a time slice */
    } else if (--a->left > 0) {
        /* go on */
    } else if (a->probe == 1) { /* now time tmax threads */
        a->probe = 2;
        a->left = ADAPT_PROBE;
        a->cur = a->tmax;
    } else if (a->probe == 2) {
        const double tm = a->probe_n[1] ? a->probe_t[1] / a->probe_n[1] : 0;
        adapt_choose(a, a->probe_n[0] && a->probe_n[1] && tm < t1 ? a->tmax
                        : a->probe_n[0] && a->probe_n[1] ? 1 : a->cur);
    } else { /* period over: probe again */
        a->probe = 1;
        a->left = ADAPT_PROBE;
        a->cur = 1;
    }
    return a->cur;
}

/* After a batch (full: of the configured size) that took dt seconds: the
 * thread count of the next batch. */
static void adapt_after_batch(cpu_impl *c, int full, double dt)
{
    if (c->ta.adapt)
        omp_set_num_threads(st_thread_adapt_next(&c->ta, full, dt));
}

static int round8(int b) { return (b + 7) / 8 * 8; }

/* a[0] (d, ld) = the samples rows[0..B) of x (n, d), feature-major. */
static void gather_batch(const float *x, int64_t d, const int64_t *rows, int B, int ld,
                         float *a0)
{
#pragma omp parallel for schedule(static)
    for (int64_t f = 0; f < d; f++) {
        float *dst = a0 + f * ld;
        for (int b = 0; b < B; b++)
            dst[b] = x[rows[b] * d + f];
        for (int b = B; b < ld; b++)
            dst[b] = 0.0f;
    }
}

/* Forward pass over the B samples in a[0]; dropout masks drawn when train
 * is set (mask column j is batch column col0 + j). */
static void forward(st_backend *be, int train, int epoch, int batch_index, int col0, int B)
{
    cpu_impl *c = be->impl;
    const st_model *m = be->model;
    const st_config *cfg = be->cfg;
    const int masked = train && cfg->dropout > 0;
    const cpu_dropout_spec dp = {cfg->seed, epoch, batch_index, (float)cfg->dropout, col0, B};
    for (int l = 0; l < m->n_layers; l++) {
        const int hid = l + 1 < m->n_layers;
        /* z[l + 1] and mask[l + 1] are NULL for a ReLU hidden layer: its
         * backward needs a[l + 1] alone, so they are not kept */
        cpu_layer_forward_act(&m->layers[l], c->a[l], c->z[l + 1], hid ? c->a[l + 1] : NULL,
                              cfg->activation, l + 1, hid && masked ? &dp : NULL,
                              hid && masked ? c->mask[l + 1] : NULL, c->ld);
    }
}

/* Labels of samples rows[0..B) into ybuf and their inputs into a[0]. */
static void load_batch(st_backend *be, const int64_t *rows, int B)
{
    cpu_impl *c = be->impl;
    gather_batch(be->data->x_train, be->data->d, rows, B, c->ld, c->a[0]);
    for (int b = 0; b < B; b++)
        c->ybuf[b] = be->data->y_train[rows[b]];
}

/* Forward and backward over B samples already loaded (columns col0 .. of a
 * batch of n_batch); per layer, the gradient goes into grad (its layout:
 * backend.h) or, grad NULL, is applied at once (fused SDDMM and update). */
static void batch_pass(st_backend *be, int epoch, int batch_index, int col0, int B, int n_batch,
                       float *grad, double *loss_sum, int64_t *correct)
{
    cpu_impl *c = be->impl;
    st_model *m = be->model;
    const st_config *cfg = be->cfg;
    const int L = m->n_layers, K = m->sizes[L];
    forward(be, 1, epoch, batch_index, col0, B);
    cpu_softmax_xent_scaled(c->z[L], c->ybuf, K, B, c->ld, n_batch, c->delta[L], loss_sum,
                            correct);
    int64_t off = 0;
    int64_t *offs = grad ? st_malloc(sizeof(int64_t) * (size_t)L, "offsets") : NULL;
    for (int l = 0; grad && l < L; l++) {
        offs[l] = off;
        off += layer_nnz(&m->layers[l]) + m->layers[l].n_out;
    }
    const float keep = cfg->dropout > 0 ? cpu_dropout_keep((float)cfg->dropout) : 1.0f;
    for (int l = L - 1; l >= 0; l--) {
        st_layer *Ly = &m->layers[l];
        if (l > 0) { /* backward delta and gradient, one pass where the layer allows */
            const int relu = cfg->activation == ST_ACT_RELU; /* f' and mask from a[l] alone */
            const float *z_in = relu ? NULL : c->z[l];
            const float *mask_in = cfg->dropout > 0 ? c->mask[l] : NULL;
            if (grad)
                cpu_layer_backward_grad(Ly, c->delta[l + 1], c->a[l], z_in, mask_in,
                                        cfg->activation, l, keep, c->delta[l], c->ld,
                                        grad + offs[l], grad + offs[l] + layer_nnz(Ly));
            else
                cpu_layer_backward_grad_update(Ly, c->delta[l + 1], c->a[l], z_in, mask_in,
                                               cfg->activation, l, keep, c->delta[l], c->ld,
                                               (float)cfg->lr, (float)cfg->momentum,
                                               (float)cfg->weight_decay, c->gw, c->gb);
            continue;
        }
        if (grad)
            cpu_layer_grad(Ly, c->a[l], c->delta[l + 1], c->ld, grad + offs[l],
                           grad + offs[l] + layer_nnz(Ly));
        else
            cpu_layer_grad_update(Ly, c->a[l], c->delta[l + 1], c->ld, (float)cfg->lr,
                                  (float)cfg->momentum, (float)cfg->weight_decay, c->gw, c->gb);
    }
    free(offs);
}

int64_t backend_cpu_grad_size(const st_backend *be)
{
    int64_t n = 0;
    for (int l = 0; l < be->model->n_layers; l++)
        n += layer_nnz(&be->model->layers[l]) + be->model->layers[l].n_out;
    return n;
}

int backend_cpu_batch_grad(st_backend *be, int epoch, int batch_index, const int64_t *rows,
                           int n_batch, int lo, int hi, float *grad, double *loss_sum,
                           int64_t *correct, char *err)
{
    if (lo < 0 || hi < lo || hi > n_batch || n_batch > be->cfg->batch) {
        st_fail(err, "shard %d..%d of a batch of %d is out of range (batch size %d)", lo, hi,
                n_batch, be->cfg->batch);
        return -1;
    }
    if (hi == lo) { /* an empty shard adds nothing */
        memset(grad, 0, sizeof(float) * (size_t)backend_cpu_grad_size(be));
        return 0;
    }
    /* The shard runs at the stride of its own columns (rounded up to 8), not
     * the whole batch's: padding columns cost as much as samples. Buffers
     * sized for the batch hold any smaller stride; per-column results do not
     * depend on it. */
    cpu_impl *c = be->impl;
    const int ld_batch = c->ld;
    c->ld = round8(hi - lo);
    load_batch(be, rows + lo, hi - lo);
    batch_pass(be, epoch, batch_index, lo, hi - lo, n_batch, grad, loss_sum, correct);
    c->ld = ld_batch;
    return 0;
}

void backend_cpu_apply_grad(st_backend *be, const float *grad)
{
    const st_config *cfg = be->cfg;
    int64_t off = 0;
    for (int l = 0; l < be->model->n_layers; l++) {
        st_layer *Ly = &be->model->layers[l];
        const int64_t nnz = layer_nnz(Ly);
        cpu_layer_update(Ly, grad + off, grad + off + nnz, (float)cfg->lr, (float)cfg->momentum,
                         (float)cfg->weight_decay);
        off += nnz + Ly->n_out;
    }
}

int backend_cpu_set_data_parallel(st_backend *be, int shard, int shards, st_grad_reduce_fn fn,
                                  void *ctx, char *err)
{
    if (!be || !be->ops || strcmp(be->ops->name, "cpu") != 0) {
        st_fail(err, "data-parallel batches need the cpu backend");
        return -1;
    }
    if (shards < 1 || shard < 0 || shard >= shards) {
        st_fail(err, "shard %d of %d is out of range", shard, shards);
        return -1;
    }
    cpu_impl *c = be->impl;
    c->shard = shard;
    c->shards = shards;
    c->reduce = fn;
    c->reduce_ctx = ctx;
    if ((fn || shards > 1) && !c->grad) {
        c->grad_n = backend_cpu_grad_size(be);
        c->grad = st_malloc(sizeof(float) * (size_t)c->grad_n, "gradient buffer");
    }
    return 0;
}

static int cpu_train_epoch(st_backend *be, int epoch, const int64_t *perm, int64_t n,
                           int64_t start, const volatile int *stop, int64_t *done,
                           double *loss_sum, int64_t *correct, char *err)
{
    cpu_impl *c = be->impl;
    const st_config *cfg = be->cfg;
    const int split = c->reduce || c->shards > 1;
    omp_set_num_threads(c->ta.cur); /* the measured count inside the backend; tmax outside */
    int batch_index = (int)(start / cfg->batch);
    int64_t s = start;
    for (; s < n; s += cfg->batch, batch_index++) {
        const int B = (int)(n - s < cfg->batch ? n - s : cfg->batch);
        const double t0 = omp_get_wtime();
        if (split) {
            const int lo = (int)((int64_t)B * c->shard / c->shards);
            const int hi = (int)((int64_t)B * (c->shard + 1) / c->shards);
            if (backend_cpu_batch_grad(be, epoch, batch_index, perm + s, B, lo, hi, c->grad,
                                       loss_sum, correct, err)) {
                omp_set_num_threads(c->ta.tmax);
                return -1;
            }
            if (c->reduce && c->reduce(c->grad, c->grad_n, c->reduce_ctx) != 0) {
                omp_set_num_threads(c->ta.tmax);
                st_fail(err, "the gradient reduction of batch %d failed", batch_index);
                return -1;
            }
            backend_cpu_apply_grad(be, c->grad);
        } else {
            load_batch(be, perm + s, B);
            batch_pass(be, epoch, batch_index, 0, B, B, NULL, loss_sum, correct);
        }
        adapt_after_batch(c, B == cfg->batch, omp_get_wtime() - t0);
        if (*stop) {
            s += cfg->batch;
            break;
        }
    }
    *done = s < n ? s : n;
    omp_set_num_threads(c->ta.tmax);
    return 0;
}

static int cpu_evaluate(st_backend *be, int split, double *loss_sum, int64_t *correct,
                        char *err)
{
    (void)err;
    cpu_impl *c = be->impl;
    const st_dataset *ds = be->data;
    const int L = be->model->n_layers, K = be->model->sizes[L];
    const float *x = split ? ds->x_test : ds->x_train;
    const int32_t *y = split ? ds->y_test : ds->y_train;
    int64_t n = split ? ds->n_test : ds->n_train;
    int64_t rows[4096];
    const int bmax = be->cfg->batch;
    omp_set_num_threads(c->ta.cur);
    for (int64_t s = 0; s < n; s += bmax) {
        int B = (int)(n - s < bmax ? n - s : bmax);
        for (int b = 0; b < B; b++)
            rows[b] = s + b;
        gather_batch(x, ds->d, rows, B, c->ld, c->a[0]);
        forward(be, 0, 0, 0, 0, B);
        cpu_softmax_xent(c->z[L], y + s, K, B, c->ld, NULL, loss_sum, correct);
    }
    omp_set_num_threads(c->ta.tmax);
    return 0;
}

static int cpu_evolve(st_backend *be, int epoch, st_evolve_stats *stats, char *err)
{
    st_model *m = be->model;
    cpu_impl *c = be->impl;
    for (int l = 0; l < m->n_layers; l++)
        if (layer_evolve_ws(&m->layers[l], l + 1, be->cfg->seed, epoch, be->cfg->zeta,
                            &stats[l], c->ews, err))
            return -1;
    return 0;
}

static int cpu_sync_model(st_backend *be, char *err)
{
    (void)be;
    (void)err;
    return 0; /* the CPU backend trains the host model in place */
}

static void cpu_describe(st_backend *be, char *buf, size_t n)
{
    char model[256] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "model name", 10)) {
                char *p = strchr(line, ':');
                if (p) {
                    p += 1 + (p[1] == ' ');
                    p[strcspn(p, "\n")] = '\0';
                    snprintf(model, sizeof model, "%s", p);
                }
                break;
            }
        fclose(f);
    }
    for (char *p = model; *p; p++)
        if (*p == '"' || *p == '\\')
            *p = ' ';
    const cpu_impl *c = be->impl;
    snprintf(buf, n,
             "\"cpu_model\": \"%s\", \"threads\": %d, \"threads_adaptive\": %s, "
             "\"cores_online\": %d",
             model, c->ta.tmax, c->ta.adapt ? "true" : "false", omp_get_num_procs());
}

static void cpu_destroy(st_backend *be)
{
    cpu_impl *c = be->impl;
    int L = be->model->n_layers;
    for (int l = 0; l <= L; l++) {
        free(c->z[l]);
        free(c->a[l]);
        free(c->delta[l]);
        free(c->mask[l]);
    }
    free(c->z);
    free(c->a);
    free(c->delta);
    free(c->mask);
    free(c->gw);
    free(c->gb);
    free(c->ybuf);
    free(c->grad);
    evolve_ws_free(c->ews);
    free(c);
    free(be);
}

static const st_backend_ops cpu_ops = {"cpu", cpu_train_epoch, cpu_evaluate, cpu_evolve,
                                       cpu_sync_model, cpu_describe, cpu_destroy};

st_backend *backend_cpu_create(st_model *model, const st_dataset *data, const st_config *cfg,
                               char *err)
{
    if (cfg->batch < 1 || cfg->batch > 4096) {
        st_fail(err, "batch size %d is out of range 1..4096", cfg->batch);
        return NULL;
    }
    st_backend *be = st_calloc(1, sizeof *be, "backend");
    cpu_impl *c = st_calloc(1, sizeof *c, "cpu backend");
    be->ops = &cpu_ops;
    be->model = model;
    be->data = data;
    be->cfg = cfg;
    be->impl = c;
    const int L = model->n_layers;
    c->ld = round8(cfg->batch);
    c->shards = 1;
    adapt_init(c);
    cpu_ops_flush_denormals();
    c->z = st_calloc((size_t)L + 1, sizeof(float *), "z");
    c->a = st_calloc((size_t)L + 1, sizeof(float *), "a");
    c->delta = st_calloc((size_t)L + 1, sizeof(float *), "delta");
    c->mask = st_calloc((size_t)L + 1, sizeof(float *), "mask");
    int64_t max_nnz = 0, max_out = 0;
    for (int l = 0; l <= L; l++) {
        size_t sz = sizeof(float) * (size_t)model->sizes[l] * (size_t)c->ld;
        c->a[l] = st_calloc(1, sz, "activations");
        /* a ReLU hidden layer keeps neither z nor its mask (see forward) */
        const int keep = l == L || cfg->activation != ST_ACT_RELU;
        if (l > 0) {
            if (keep)
                c->z[l] = st_calloc(1, sz, "pre-activations");
            c->delta[l] = st_calloc(1, sz, "deltas");
            int64_t nnz = layer_nnz(&model->layers[l - 1]);
            if (nnz > max_nnz) max_nnz = nnz;
            if (model->sizes[l] > max_out) max_out = model->sizes[l];
        }
        if (l > 0 && l < L && cfg->dropout > 0 && keep)
            c->mask[l] = st_calloc(1, sz, "dropout mask");
    }
    c->gw = st_malloc(sizeof(float) * (size_t)max_nnz, "weight gradients");
    c->gb = st_malloc(sizeof(float) * (size_t)max_out, "bias gradients");
    c->ybuf = st_malloc(sizeof(int32_t) * (size_t)cfg->batch, "labels");
    c->ews = evolve_ws_create(model, cfg->zeta); /* SET keeps every layer's size */
    return be;
}
