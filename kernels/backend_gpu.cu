/* backend_gpu.cu: the GPU backend behind include/backend.h. The standardised
 * data set, weights, biases, momentum, topology, activations, deltas and
 * dropout masks live on the device for the whole run, all allocated once at
 * creation (SET keeps every layer's block count constant). train_epoch
 * uploads the epoch's permutation once, runs every batch on one stream with
 * no host copy or synchronisation, and reads back only the summed loss and
 * the correct count (accumulated on the device); evaluate likewise; evolve
 * runs prune / regrow / rebuild on the device (kernels/gpu_evolve.cu) and
 * refreshes the cuSPARSE plans; sync_model copies everything back.
 * The per-batch sequence mirrors src/cpu/backend_cpu.c exactly: gather, forward
 * (dropout masks for hidden layers when training), softmax cross-entropy,
 * then for l = L..1: delta_{l-1} with the pre-update W_l, gradient and
 * update of W_l.
 *
 * Legend: B batch, ld = B rounded up to 8 (as the CPU backend), n_l layer
 * widths, L layers. Buffers (device): a[l] (n_l, ld) for l < L, z[l] and
 * delta[l] (n_l, ld) for l >= 1, mask[l] (n_l, ld) for hidden l when
 * dropout > 0.
 *
 * Kernel choice (environment, read at creation; "auto" unless set):
 *   ST_GPU_FWD=auto|cusparse|row|block   forward product of sparse layers
 *   ST_GPU_BWD=auto|row|block            backward delta
 *   ST_GPU_SDDMM=auto|row|block          weight gradient + update
 *   ST_GPU_SPMM_ALG=csr3|csr1|csr2|default  cuSPARSE CSR algorithm [csr3]
 *                                        (BSR: the library default)
 *   ST_GPU_REGROW_WINDOW=N               regrow candidates per window
 *   ST_GPU_NO_FALLBACK=1                 a cuSPARSE configuration reported
 *                                        as not supported is an error
 *                                        instead of a fallback
 * auto: cuSPARSE CSR for m = 1 forwards, the BLOCK kernels for m = 2, 4, 8,
 * ROW otherwise. CSR_ALG3 is the default CSR algorithm: deterministic (the
 * library default is documented as not bit-reproducible), so a resumed run
 * repeats the uninterrupted one. What each layer runs is recorded in
 * describe()'s "gpu_kernels" (e.g. "L1 fwd=cusparse-csr(csr3) bwd=row
 * sddmm=row; L2 ..."; a fallback reads "fwd=row(fallback: cusparse-csr
 * not supported)") and counted in "gpu_fallbacks". NVTX ranges:
 * train_epoch, forward, backward, update, evolve, eval, sync_model.
 * Future work: capture one training step in a CUDA graph (its ~26 launches
 * per batch are fixed; only the batch offset, B and the dropout counters
 * change, which would have to move into device memory first). */
#include <nvtx3/nvToolsExt.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend.h"
#include "gpu/gpu_check.h"
#include "gpu/gpu_ops.h"

typedef struct {
    int device;
    cudaDeviceProp prop;
    st_gpu_ctx ctx;
    int L, ld, quiet;
    st_gpu_layer *layers;          /* L (host array of device layers)          */
    st_gpu_spmm *spmm;             /* L cuSPARSE plans (ready = 0: unused)     */
    st_gpu_variant *fwd, *bwd, *sddmm; /* L resolved variants                  */
    float **z, **a, **delta, **mask;   /* L + 1 device buffers (or NULL)       */
    float *x_train, *x_test;       /* (n, d) sample-major, device              */
    int32_t *y_train, *y_test;     /* n, device                                */
    int64_t *perm;                 /* n_train, device                          */
    int32_t *ybuf;                 /* batch labels, device                     */
    float *scratch;                /* largest dense nnz: dense gradients       */
    double *loss_acc;              /* device accumulators ...                  */
    unsigned long long *correct_acc;
    double *h_loss;                /* ... and their pinned host mirrors        */
    unsigned long long *h_correct;
    st_gpu_evolve_ws *ews;
    size_t bytes;                  /* device bytes allocated by this backend   */
    char kernels[1024];            /* per-layer variants, for describe()       */
    int fallbacks;                 /* cuSPARSE plans replaced by own kernels   */
} gpu_impl;

static int round8(int b) { return (b + 7) / 8 * 8; }

/* An environment choice among the variant names. */
static int env_variant(const char *name, int allow_cusparse, st_gpu_variant *out, char *err)
{
    const char *s = getenv(name);
    *out = ST_GPU_VAR_AUTO;
    if (!s || !*s)
        return 0;
    int v = st_gpu_variant_parse(s);
    if (v < 0 || (v == ST_GPU_VAR_CUSPARSE && !allow_cusparse))
        return st_fail(err, "%s=%s: expected %s", name, s,
                       allow_cusparse ? "auto, cusparse, row or block" : "auto, row or block");
    *out = (st_gpu_variant)v;
    return 0;
}

/* ST_GPU_SPMM_ALG: the CSR SpMM algorithm and its name (csr3 when unset). */
static int env_spmm_alg(cusparseSpMMAlg_t *alg, const char **name, char *err)
{
    static const struct {
        const char *name;
        cusparseSpMMAlg_t alg;
    } algs[] = {{"csr3", CUSPARSE_SPMM_CSR_ALG3},
                {"csr1", CUSPARSE_SPMM_CSR_ALG1},
                {"csr2", CUSPARSE_SPMM_CSR_ALG2},
                {"default", CUSPARSE_SPMM_ALG_DEFAULT}};
    const char *s = getenv("ST_GPU_SPMM_ALG");
    *alg = algs[0].alg;
    *name = algs[0].name;
    if (!s || !*s)
        return 0;
    for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++)
        if (!strcmp(s, algs[i].name)) {
            *alg = algs[i].alg;
            *name = algs[i].name;
            return 0;
        }
    return st_fail(err, "ST_GPU_SPMM_ALG=%s: expected csr3, csr1, csr2 or default", s);
}

static int env_flag(const char *name)
{
    const char *s = getenv(name);
    return s && *s && strcmp(s, "0") != 0;
}

/* ---- the per-batch sequence ------------------------------------------- */

/* Forward pass over a[0]; dropout masks drawn when train is set. */
static int gpu_forward(st_backend *be, int train, int epoch, int batch_index, int B, char *err)
{
    gpu_impl *g = (gpu_impl *)be->impl;
    const st_config *cfg = be->cfg;
    const int masked = train && cfg->dropout > 0;
    cudaStream_t s = g->ctx.stream;
    for (int l = 0; l < g->L; l++) {
        st_gpu_layer *Ly = &g->layers[l];
        if (Ly->dense)
            ST_TRY(st_gpu_forward_dense(&g->ctx, Ly, g->a[l], g->z[l + 1], g->ld, err));
        else if (g->fwd[l] == ST_GPU_VAR_CUSPARSE)
            ST_TRY(st_gpu_spmm_run(&g->spmm[l], &g->ctx, Ly, g->z[l + 1], g->ld, err));
        else
            ST_TRY(st_gpu_forward_sparse(g->fwd[l], Ly, g->a[l], g->z[l + 1], g->ld, s, err));
        if (l + 1 < g->L) {
            if (masked)
                ST_TRY(st_gpu_dropout_mask(cfg->seed, l + 1, epoch, batch_index,
                                           (float)cfg->dropout, g->mask[l + 1], Ly->n_out, B,
                                           g->ld, s, err));
            ST_TRY(st_gpu_activation_forward(cfg->activation, l + 1, g->z[l + 1],
                                             masked ? g->mask[l + 1] : NULL, g->a[l + 1],
                                             Ly->n_out, g->ld, s, err));
        }
    }
    return 0;
}

/* Backward pass and update after the softmax wrote delta[L]. */
static int gpu_backward_update(st_backend *be, char *err)
{
    gpu_impl *g = (gpu_impl *)be->impl;
    const st_config *cfg = be->cfg;
    cudaStream_t s = g->ctx.stream;
    for (int l = g->L - 1; l >= 0; l--) {
        st_gpu_layer *Ly = &g->layers[l];
        if (l > 0) {
            nvtxRangePushA("backward");
            const float *maskp = cfg->dropout > 0 ? g->mask[l] : NULL;
            int rc = Ly->dense
                         ? st_gpu_backward_dense(&g->ctx, Ly, g->delta[l + 1], g->z[l], maskp,
                                                 cfg->activation, l, g->delta[l], g->ld, err)
                         : st_gpu_backward_sparse(g->bwd[l], Ly, g->delta[l + 1], g->z[l], maskp,
                                                  cfg->activation, l, g->delta[l], g->ld, s, err);
            nvtxRangePop();
            ST_TRY(rc);
        }
        nvtxRangePushA("update");
        int rc = st_gpu_layer_grad_update(&g->ctx, g->sddmm[l], Ly, g->a[l], g->delta[l + 1],
                                          g->ld, (float)cfg->lr, (float)cfg->momentum,
                                          (float)cfg->weight_decay, NULL, NULL, g->scratch, err);
        nvtxRangePop();
        ST_TRY(rc);
    }
    return 0;
}

/* Add the device accumulators to the host sums (one copy, one sync). */
static int read_metrics(gpu_impl *g, double *loss_sum, int64_t *correct, char *err)
{
    cudaStream_t s = g->ctx.stream;
    ST_CUDA_TRY(err, cudaMemcpyAsync(g->h_loss, g->loss_acc, sizeof(double),
                                     cudaMemcpyDeviceToHost, s));
    ST_CUDA_TRY(err, cudaMemcpyAsync(g->h_correct, g->correct_acc, sizeof(unsigned long long),
                                     cudaMemcpyDeviceToHost, s));
    ST_CUDA_TRY(err, cudaStreamSynchronize(s));
    *loss_sum += *g->h_loss;
    *correct += (int64_t)*g->h_correct;
    return 0;
}

static int zero_metrics(gpu_impl *g, char *err)
{
    ST_CUDA_TRY(err, cudaMemsetAsync(g->loss_acc, 0, sizeof(double), g->ctx.stream));
    ST_CUDA_TRY(err, cudaMemsetAsync(g->correct_acc, 0, sizeof(unsigned long long),
                                     g->ctx.stream));
    return 0;
}

static int train_batches(st_backend *be, int epoch, const int64_t *perm, int64_t n,
                         int64_t start, const volatile int *stop, int64_t *done, char *err)
{
    gpu_impl *g = (gpu_impl *)be->impl;
    const st_config *cfg = be->cfg;
    const int L = g->L, K = be->model->sizes[L];
    cudaStream_t s = g->ctx.stream;
    ST_CUDA_TRY(err, cudaMemcpyAsync(g->perm, perm, sizeof(int64_t) * (size_t)n,
                                     cudaMemcpyHostToDevice, s));
    ST_TRY(zero_metrics(g, err));
    int batch_index = (int)(start / cfg->batch);
    int64_t i = start;
    for (; i < n; i += cfg->batch, batch_index++) {
        int B = (int)(n - i < cfg->batch ? n - i : cfg->batch);
        ST_TRY(st_gpu_gather_batch(g->x_train, be->data->d, g->perm, i, B, g->ld, g->a[0],
                                   g->y_train, g->ybuf, s, err));
        nvtxRangePushA("forward");
        int rc = gpu_forward(be, 1, epoch, batch_index, B, err);
        nvtxRangePop();
        ST_TRY(rc);
        ST_TRY(st_gpu_softmax_xent(g->z[L], g->ybuf, K, B, g->ld, g->delta[L], g->loss_acc,
                                   g->correct_acc, s, err));
        ST_TRY(gpu_backward_update(be, err));
        if (stop && *stop) {
            i += cfg->batch;
            break;
        }
    }
    *done = i < n ? i : n;
    return 0;
}

static int gpu_train_epoch(st_backend *be, int epoch, const int64_t *perm, int64_t n,
                           int64_t start, const volatile int *stop, int64_t *done,
                           double *loss_sum, int64_t *correct, char *err)
{
    gpu_impl *g = (gpu_impl *)be->impl;
    if (n > be->data->n_train)
        return st_fail(err, "internal error: epoch of %lld samples, %lld were uploaded",
                       (long long)n, (long long)be->data->n_train);
    nvtxRangePushA("train_epoch");
    int rc = train_batches(be, epoch, perm, n, start, stop, done, err);
    if (rc == 0)
        rc = read_metrics(g, loss_sum, correct, err);
    nvtxRangePop();
    return rc;
}

static int eval_batches(st_backend *be, int split, char *err)
{
    gpu_impl *g = (gpu_impl *)be->impl;
    const int L = g->L, K = be->model->sizes[L];
    const float *x = split ? g->x_test : g->x_train;
    const int32_t *y = split ? g->y_test : g->y_train;
    const int64_t n = split ? be->data->n_test : be->data->n_train;
    const int bmax = be->cfg->batch;
    cudaStream_t s = g->ctx.stream;
    ST_TRY(zero_metrics(g, err));
    for (int64_t i = 0; i < n; i += bmax) {
        int B = (int)(n - i < bmax ? n - i : bmax);
        ST_TRY(st_gpu_gather_batch(x, be->data->d, NULL, i, B, g->ld, g->a[0], y, g->ybuf, s,
                                   err));
        ST_TRY(gpu_forward(be, 0, 0, 0, B, err));
        ST_TRY(st_gpu_softmax_xent(g->z[L], g->ybuf, K, B, g->ld, NULL, g->loss_acc,
                                   g->correct_acc, s, err));
    }
    return 0;
}

static int gpu_evaluate(st_backend *be, int split, double *loss_sum, int64_t *correct, char *err)
{
    gpu_impl *g = (gpu_impl *)be->impl;
    nvtxRangePushA("eval");
    int rc = eval_batches(be, split, err);
    if (rc == 0)
        rc = read_metrics(g, loss_sum, correct, err);
    nvtxRangePop();
    return rc;
}

static int evolve_layers(st_backend *be, int epoch, st_evolve_stats *stats, char *err)
{
    gpu_impl *g = (gpu_impl *)be->impl;
    const st_model *m = be->model;
    for (int l = 0; l < g->L; l++) {
        st_gpu_layer *Ly = &g->layers[l];
        ST_TRY(st_gpu_evolve_layer(g->ews, Ly, l + 1, be->cfg->seed, epoch, be->cfg->zeta,
                                   layer_init_limit(&m->layers[l]), &stats[l], g->ctx.stream,
                                   err));
        if (g->spmm[l].ready)
            ST_TRY(st_gpu_spmm_refresh(&g->spmm[l], &g->ctx, Ly, l + 1, &g->bytes, err));
    }
    ST_CUDA_TRY(err, cudaStreamSynchronize(g->ctx.stream));
    return 0;
}

static int gpu_evolve(st_backend *be, int epoch, st_evolve_stats *stats, char *err)
{
    nvtxRangePushA("evolve");
    int rc = evolve_layers(be, epoch, stats, err);
    nvtxRangePop();
    return rc;
}

static int gpu_sync_model(st_backend *be, char *err)
{
    gpu_impl *g = (gpu_impl *)be->impl;
    nvtxRangePushA("sync_model");
    int rc = 0;
    for (int l = 0; l < g->L && rc == 0; l++)
        rc = st_gpu_layer_download(&g->layers[l], &be->model->layers[l], g->ctx.stream, err);
    nvtxRangePop();
    return rc;
}

static void gpu_describe(st_backend *be, char *buf, size_t n)
{
    gpu_impl *g = (gpu_impl *)be->impl;
    char name[256];
    snprintf(name, sizeof name, "%s", g->prop.name);
    for (char *p = name; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
            *p = ' ';
    int drv = 0, rt = 0, sp[3] = {0, 0, 0}, bl[3] = {0, 0, 0};
    cudaDriverGetVersion(&drv);
    cudaRuntimeGetVersion(&rt);
    cusparseGetProperty(MAJOR_VERSION, &sp[0]);
    cusparseGetProperty(MINOR_VERSION, &sp[1]);
    cusparseGetProperty(PATCH_LEVEL, &sp[2]);
    cublasGetProperty(MAJOR_VERSION, &bl[0]);
    cublasGetProperty(MINOR_VERSION, &bl[1]);
    cublasGetProperty(PATCH_LEVEL, &bl[2]);
    size_t fr = 0, tot = 0;
    cudaMemGetInfo(&fr, &tot);
    snprintf(buf, n,
             "\"gpu_name\": \"%s\", \"driver_version\": \"%d.%d\", "
             "\"cuda_runtime_version\": \"%d.%d\", \"cusparse_version\": \"%d.%d.%d\", "
             "\"cublas_version\": \"%d.%d.%d\", \"compute_capability\": \"%d.%d\", "
             "\"device_memory_bytes\": %zu, \"device_memory_used_bytes\": %zu, "
             "\"device_memory_free_bytes\": %zu, \"gpu_kernels\": \"%s\", \"gpu_fallbacks\": %d",
             name, drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10, sp[0], sp[1], sp[2],
             bl[0], bl[1], bl[2], g->prop.major, g->prop.minor, g->prop.totalGlobalMem, g->bytes,
             fr, g->kernels, g->fallbacks);
}

static void gpu_free_impl(gpu_impl *g, int L)
{
    if (!g)
        return;
    if (g->ctx.stream)
        cudaStreamSynchronize(g->ctx.stream);
    for (int l = 0; l < L; l++) {
        if (g->spmm)
            st_gpu_spmm_free(&g->spmm[l]);
        if (g->layers)
            st_gpu_layer_free(&g->layers[l]);
    }
    for (int l = 0; l <= L; l++) {
        if (g->z)
            cudaFree(g->z[l]);
        if (g->a)
            cudaFree(g->a[l]);
        if (g->delta)
            cudaFree(g->delta[l]);
        if (g->mask)
            cudaFree(g->mask[l]);
    }
    free(g->z);
    free(g->a);
    free(g->delta);
    free(g->mask);
    free(g->layers);
    free(g->spmm);
    free(g->fwd);
    free(g->bwd);
    free(g->sddmm);
    cudaFree(g->x_train);
    cudaFree(g->x_test);
    cudaFree(g->y_train);
    cudaFree(g->y_test);
    cudaFree(g->perm);
    cudaFree(g->ybuf);
    cudaFree(g->scratch);
    cudaFree(g->loss_acc);
    cudaFree(g->correct_acc);
    if (g->h_loss)
        cudaFreeHost(g->h_loss);
    if (g->h_correct)
        cudaFreeHost(g->h_correct);
    st_gpu_evolve_ws_free(g->ews);
    st_gpu_ctx_free(&g->ctx);
    free(g);
}

static void gpu_destroy(st_backend *be)
{
    gpu_free_impl((gpu_impl *)be->impl, be->model->n_layers);
    free(be);
}

static const st_backend_ops gpu_ops = {"gpu", gpu_train_epoch, gpu_evaluate, gpu_evolve,
                                       gpu_sync_model, gpu_describe, gpu_destroy};

extern "C" int backend_gpu_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

/* Choose the kernels of sparse layer l and set up its cuSPARSE plan. */
static int setup_layer_kernels(gpu_impl *g, int l, st_gpu_variant want_fwd,
                               st_gpu_variant want_bwd, st_gpu_variant want_sddmm,
                               cusparseSpMMAlg_t alg, const char *alg_name, char *err)
{
    st_gpu_layer *Ly = &g->layers[l];
    const int blk = st_gpu_block_supported(Ly->bi, Ly->bo);
    const int one = Ly->bi == 1 && Ly->bo == 1;
    st_gpu_variant f = want_fwd;
    if (f == ST_GPU_VAR_AUTO)
        f = one ? ST_GPU_VAR_CUSPARSE : (blk ? ST_GPU_VAR_BLOCK : ST_GPU_VAR_ROW);
    char fname[96] = "";
    if (f == ST_GPU_VAR_CUSPARSE && Ly->bi != Ly->bo) /* BSR: square blocks only */
        f = blk ? ST_GPU_VAR_BLOCK : ST_GPU_VAR_ROW;
    if (f == ST_GPU_VAR_CUSPARSE) {
        const int bsr = !one;
        int rc = st_gpu_spmm_init(&g->spmm[l], &g->ctx, Ly, bsr,
                                  bsr ? CUSPARSE_SPMM_ALG_DEFAULT : alg, g->a[l], g->z[l + 1],
                                  g->ld, l + 1, &g->bytes, err);
        if (rc < 0)
            return -1;
        const char *own = blk ? "block" : "row";
        if (rc > 0) { /* not supported here: our own kernel instead, and say so */
            if (env_flag("ST_GPU_NO_FALLBACK")) {
                char why[ST_ERRLEN];
                snprintf(why, sizeof why, "%s", err);
                return st_fail(err, "layer %d: %s (ST_GPU_NO_FALLBACK=1: no fallback to the %s "
                                    "kernel)",
                               l + 1, why, own);
            }
            if (!g->quiet)
                st_warn("layer %d: %s; using the %s kernel", l + 1, err, own);
            f = blk ? ST_GPU_VAR_BLOCK : ST_GPU_VAR_ROW;
            snprintf(fname, sizeof fname, "%s(fallback: cusparse-%s not supported)", own,
                     bsr ? "bsr" : "csr");
            g->fallbacks++;
        } else if (bsr) {
            snprintf(fname, sizeof fname, "cusparse-bsr");
        } else {
            snprintf(fname, sizeof fname, "cusparse-csr(%s)", alg_name);
        }
    }
    if (f == ST_GPU_VAR_BLOCK && !blk)
        f = ST_GPU_VAR_ROW;
    g->fwd[l] = f;
    g->bwd[l] = (want_bwd == ST_GPU_VAR_ROW || !blk) ? ST_GPU_VAR_ROW : ST_GPU_VAR_BLOCK;
    g->sddmm[l] = (want_sddmm == ST_GPU_VAR_ROW || !blk) ? ST_GPU_VAR_ROW : ST_GPU_VAR_BLOCK;
    size_t used = strlen(g->kernels);
    snprintf(g->kernels + used, sizeof g->kernels - used, "%sL%d fwd=%s bwd=%s sddmm=%s",
             used ? "; " : "", l + 1, fname[0] ? fname : st_gpu_variant_names[f],
             st_gpu_variant_names[g->bwd[l]], st_gpu_variant_names[g->sddmm[l]]);
    return 0;
}

static int gpu_setup(st_backend *be, gpu_impl *g, char *err)
{
    const st_model *m = be->model;
    const st_dataset *ds = be->data;
    const st_config *cfg = be->cfg;
    const int L = m->n_layers;
    if (cfg->batch < 1 || cfg->batch > 4096)
        return st_fail(err, "batch size %d is out of range 1..4096", cfg->batch);
    int ndev = 0;
    cudaError_t e = cudaGetDeviceCount(&ndev);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return st_fail(err, "no usable CUDA device (cudaGetDeviceCount: %s)",
                       cudaGetErrorString(e));
    }
    if (ndev < 1)
        return st_fail(err, "no CUDA device found (cudaGetDeviceCount reported 0)");
    g->device = 0;
    ST_CUDA_TRY(err, cudaSetDevice(g->device));
    ST_CUDA_TRY(err, cudaGetDeviceProperties(&g->prop, g->device));
    ST_TRY(st_gpu_ctx_init(&g->ctx, err));

    st_gpu_variant want_fwd, want_bwd, want_sddmm;
    cusparseSpMMAlg_t alg;
    const char *alg_name;
    ST_TRY(env_variant("ST_GPU_FWD", 1, &want_fwd, err));
    ST_TRY(env_variant("ST_GPU_BWD", 0, &want_bwd, err));
    ST_TRY(env_variant("ST_GPU_SDDMM", 0, &want_sddmm, err));
    ST_TRY(env_spmm_alg(&alg, &alg_name, err));
    int64_t window = 0;
    const char *ws = getenv("ST_GPU_REGROW_WINDOW");
    if (ws && *ws) {
        long v;
        if (st_parse_int(ws, 1, 1L << 30, &v))
            return st_fail(err, "ST_GPU_REGROW_WINDOW=%s: expected an integer in 1..2^30", ws);
        window = v;
    }

    g->L = L;
    g->ld = round8(cfg->batch);
    const size_t ld = (size_t)g->ld;
    g->layers = (st_gpu_layer *)calloc((size_t)L, sizeof *g->layers);
    g->spmm = (st_gpu_spmm *)calloc((size_t)L, sizeof *g->spmm);
    g->fwd = (st_gpu_variant *)calloc((size_t)L, sizeof *g->fwd);
    g->bwd = (st_gpu_variant *)calloc((size_t)L, sizeof *g->bwd);
    g->sddmm = (st_gpu_variant *)calloc((size_t)L, sizeof *g->sddmm);
    g->z = (float **)calloc((size_t)L + 1, sizeof(float *));
    g->a = (float **)calloc((size_t)L + 1, sizeof(float *));
    g->delta = (float **)calloc((size_t)L + 1, sizeof(float *));
    g->mask = (float **)calloc((size_t)L + 1, sizeof(float *));
    if (!g->layers || !g->spmm || !g->fwd || !g->bwd || !g->sddmm || !g->z || !g->a ||
        !g->delta || !g->mask)
        return st_fail(err, "out of host memory setting up the GPU backend");

    /* Data set (standardised on the host), labels, permutation. */
    const size_t d = (size_t)ds->d;
    ST_TRY(st_gpu_malloc((void **)&g->x_train, sizeof(float) * (size_t)ds->n_train * d, 0,
                         "the training set", &g->bytes, err));
    ST_TRY(st_gpu_malloc((void **)&g->y_train, sizeof(int32_t) * (size_t)ds->n_train, 0,
                         "training labels", &g->bytes, err));
    ST_TRY(st_gpu_malloc((void **)&g->x_test, sizeof(float) * (size_t)ds->n_test * d, 0,
                         "the test set", &g->bytes, err));
    ST_TRY(st_gpu_malloc((void **)&g->y_test, sizeof(int32_t) * (size_t)ds->n_test, 0,
                         "test labels", &g->bytes, err));
    ST_TRY(st_gpu_malloc((void **)&g->perm, sizeof(int64_t) * (size_t)ds->n_train, 0,
                         "the epoch permutation", &g->bytes, err));
    ST_TRY(st_gpu_malloc((void **)&g->ybuf, sizeof(int32_t) * ld, 0, "batch labels", &g->bytes,
                         err));
    ST_TRY(st_gpu_malloc((void **)&g->loss_acc, sizeof(double), 0, "loss accumulator", &g->bytes,
                         err));
    ST_TRY(st_gpu_malloc((void **)&g->correct_acc, sizeof(unsigned long long), 0,
                         "accuracy accumulator", &g->bytes, err));
    ST_CUDA_TRY(err, cudaMallocHost((void **)&g->h_loss, sizeof(double)));
    ST_CUDA_TRY(err, cudaMallocHost((void **)&g->h_correct, sizeof(unsigned long long)));
    ST_CUDA_TRY(err, cudaMemcpy(g->x_train, ds->x_train, sizeof(float) * (size_t)ds->n_train * d,
                                cudaMemcpyHostToDevice));
    ST_CUDA_TRY(err, cudaMemcpy(g->y_train, ds->y_train, sizeof(int32_t) * (size_t)ds->n_train,
                                cudaMemcpyHostToDevice));
    if (ds->n_test > 0) {
        ST_CUDA_TRY(err, cudaMemcpy(g->x_test, ds->x_test,
                                    sizeof(float) * (size_t)ds->n_test * d,
                                    cudaMemcpyHostToDevice));
        ST_CUDA_TRY(err, cudaMemcpy(g->y_test, ds->y_test, sizeof(int32_t) * (size_t)ds->n_test,
                                    cudaMemcpyHostToDevice));
    }

    /* Layers, activations, deltas, masks. */
    int64_t nb_max = 0, nnz_max = 0, dense_max = 0;
    for (int l = 0; l < L; l++) {
        const st_layer *H = &m->layers[l];
        ST_TRY(st_gpu_layer_create(&g->layers[l], H, l + 1, &g->bytes, err));
        if (H->dense) {
            if (layer_nnz(H) > dense_max)
                dense_max = layer_nnz(H);
        } else {
            if (H->nb > nb_max)
                nb_max = H->nb;
            if (layer_nnz(H) > nnz_max)
                nnz_max = layer_nnz(H);
        }
    }
    for (int l = 0; l <= L; l++) {
        const size_t sz = sizeof(float) * (size_t)m->sizes[l] * ld;
        const int lay = l > 0 ? l : 1; /* a[0] is layer 1's input */
        if (l < L) {
            ST_TRY(st_gpu_malloc((void **)&g->a[l], sz, lay, "activations", &g->bytes, err));
            ST_CUDA_TRY(err, cudaMemset(g->a[l], 0, sz));
        }
        if (l > 0) {
            ST_TRY(st_gpu_malloc((void **)&g->z[l], sz, l, "pre-activations", &g->bytes, err));
            ST_TRY(st_gpu_malloc((void **)&g->delta[l], sz, l, "deltas", &g->bytes, err));
            ST_CUDA_TRY(err, cudaMemset(g->z[l], 0, sz));
            ST_CUDA_TRY(err, cudaMemset(g->delta[l], 0, sz));
        }
        if (l > 0 && l < L && cfg->dropout > 0)
            ST_TRY(st_gpu_malloc((void **)&g->mask[l], sz, l, "dropout mask", &g->bytes, err));
    }
    if (dense_max > 0)
        ST_TRY(st_gpu_malloc((void **)&g->scratch, sizeof(float) * (size_t)dense_max, 0,
                             "dense weight gradients", &g->bytes, err));
    ST_TRY(st_gpu_evolve_ws_create(&g->ews, nb_max, nnz_max, cfg->zeta, window, &g->bytes, err));

    /* Kernel variants and cuSPARSE plans (need a[l], z[l+1]). */
    for (int l = 0; l < L; l++) {
        if (g->layers[l].dense) {
            size_t used = strlen(g->kernels);
            snprintf(g->kernels + used, sizeof g->kernels - used, "%sL%d dense=cublas",
                     used ? "; " : "", l + 1);
            continue;
        }
        ST_TRY(setup_layer_kernels(g, l, want_fwd, want_bwd, want_sddmm, alg, alg_name, err));
    }
    ST_CUDA_TRY(err, cudaDeviceSynchronize());
    return 0;
}

extern "C" st_backend *backend_gpu_create(st_model *model, const st_dataset *data,
                                          const st_config *cfg, char *err)
{
    st_backend *be = (st_backend *)calloc(1, sizeof *be);
    gpu_impl *g = (gpu_impl *)calloc(1, sizeof *g);
    if (!be || !g) {
        free(be);
        free(g);
        st_fail(err, "out of host memory creating the GPU backend");
        return NULL;
    }
    be->ops = &gpu_ops;
    be->model = model;
    be->data = data;
    be->cfg = cfg;
    be->impl = g;
    g->quiet = cfg->quiet;
    if (gpu_setup(be, g, err)) {
        gpu_free_impl(g, model->n_layers);
        free(be);
        return NULL;
    }
    if (!cfg->quiet) {
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        printf("settrain: GPU backend on %s (compute %d.%d): %.1f MiB allocated on the device, "
               "%.1f of %.1f MiB free; kernels: %s\n",
               g->prop.name, g->prop.major, g->prop.minor, (double)g->bytes / 1048576.0,
               (double)fr / 1048576.0, (double)tot / 1048576.0, g->kernels);
        fflush(stdout);
    }
    return be;
}
