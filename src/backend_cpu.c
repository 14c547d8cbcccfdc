/* backend_cpu.c: the CPU backend (plain C99 + OpenMP), the no-GPU path and
 * the oracle. Trains the host model in place. Buffers are sized once at
 * creation for the batch size: per layer l, z[l] and a[l] (n_l, ld),
 * delta[l] (n_l, ld), dropout masks for hidden layers, and gradient arrays
 * for the largest layer.
 *
 * Legend: B batch, ld = B rounded up to 8, n_l layer widths, L layers. */
#define _GNU_SOURCE
#include <omp.h>
#include <stdio.h>

#include "backend.h"
#include "common.h"
#include "cpu_ops.h"

typedef struct {
    int ld;
    float **z, **a, **delta, **mask; /* index 0..L (a[0] is the input batch) */
    float *gw, *gb;                  /* largest nnz / largest n_out          */
    int32_t *ybuf;                   /* B labels                             */
} cpu_impl;

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

/* Forward pass over the batch in a[0]; dropout masks drawn when train is set. */
static void forward(st_backend *be, int train, int epoch, int batch_index, int B)
{
    cpu_impl *c = be->impl;
    const st_model *m = be->model;
    const st_config *cfg = be->cfg;
    const int masked = train && cfg->dropout > 0;
    if (masked)
        for (int l = 1; l < m->n_layers; l++)
            cpu_dropout_mask(cfg->seed, l, epoch, batch_index, (float)cfg->dropout, c->mask[l],
                             m->sizes[l], B, c->ld);
    cpu_model_forward(m, cfg->activation, c->z, c->a, masked ? c->mask : NULL, c->ld);
}

static int cpu_train_epoch(st_backend *be, int epoch, const int64_t *perm, int64_t n,
                           int64_t start, const volatile int *stop, int64_t *done,
                           double *loss_sum, int64_t *correct, char *err)
{
    (void)err;
    cpu_impl *c = be->impl;
    st_model *m = be->model;
    const st_config *cfg = be->cfg;
    const int L = m->n_layers, K = m->sizes[L];
    int batch_index = (int)(start / cfg->batch);
    int64_t s = start;
    for (; s < n; s += cfg->batch, batch_index++) {
        int B = (int)(n - s < cfg->batch ? n - s : cfg->batch);
        gather_batch(be->data->x_train, be->data->d, perm + s, B, c->ld, c->a[0]);
        for (int b = 0; b < B; b++)
            c->ybuf[b] = be->data->y_train[perm[s + b]];
        forward(be, 1, epoch, batch_index, B);
        cpu_softmax_xent(c->z[L], c->ybuf, K, B, c->ld, c->delta[L], loss_sum, correct);
        for (int l = L - 1; l >= 0; l--) {
            st_layer *Ly = &m->layers[l];
            if (l > 0)
                cpu_layer_backward_delta(Ly, c->delta[l + 1], c->z[l],
                                         cfg->dropout > 0 ? c->mask[l] : NULL, cfg->activation,
                                         l, c->delta[l], c->ld);
            cpu_layer_grad(Ly, c->a[l], c->delta[l + 1], c->ld, c->gw, c->gb);
            cpu_layer_update(Ly, c->gw, c->gb, (float)cfg->lr, (float)cfg->momentum,
                             (float)cfg->weight_decay);
        }
        if (*stop) {
            s += cfg->batch;
            break;
        }
    }
    *done = s < n ? s : n;
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
    for (int64_t s = 0; s < n; s += bmax) {
        int B = (int)(n - s < bmax ? n - s : bmax);
        for (int b = 0; b < B; b++)
            rows[b] = s + b;
        gather_batch(x, ds->d, rows, B, c->ld, c->a[0]);
        forward(be, 0, 0, 0, B);
        cpu_softmax_xent(c->z[L], y + s, K, B, c->ld, NULL, loss_sum, correct);
    }
    return 0;
}

static int cpu_evolve(st_backend *be, int epoch, st_evolve_stats *stats, char *err)
{
    st_model *m = be->model;
    for (int l = 0; l < m->n_layers; l++)
        if (layer_evolve(&m->layers[l], l + 1, be->cfg->seed, epoch, be->cfg->zeta, &stats[l],
                         err))
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
    (void)be;
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
    snprintf(buf, n, "\"cpu_model\": \"%s\", \"threads\": %d, \"cores_online\": %d", model,
             omp_get_max_threads(), omp_get_num_procs());
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
    c->z = st_calloc((size_t)L + 1, sizeof(float *), "z");
    c->a = st_calloc((size_t)L + 1, sizeof(float *), "a");
    c->delta = st_calloc((size_t)L + 1, sizeof(float *), "delta");
    c->mask = st_calloc((size_t)L + 1, sizeof(float *), "mask");
    int64_t max_nnz = 0, max_out = 0;
    for (int l = 0; l <= L; l++) {
        size_t sz = sizeof(float) * (size_t)model->sizes[l] * (size_t)c->ld;
        c->a[l] = st_calloc(1, sz, "activations");
        if (l > 0) {
            c->z[l] = st_calloc(1, sz, "pre-activations");
            c->delta[l] = st_calloc(1, sz, "deltas");
            int64_t nnz = layer_nnz(&model->layers[l - 1]);
            if (nnz > max_nnz) max_nnz = nnz;
            if (model->sizes[l] > max_out) max_out = model->sizes[l];
        }
        if (l > 0 && l < L && cfg->dropout > 0)
            c->mask[l] = st_calloc(1, sz, "dropout mask");
    }
    c->gw = st_malloc(sizeof(float) * (size_t)max_nnz, "weight gradients");
    c->gb = st_malloc(sizeof(float) * (size_t)max_out, "bias gradients");
    c->ybuf = st_malloc(sizeof(int32_t) * (size_t)cfg->batch, "labels");
    return be;
}
