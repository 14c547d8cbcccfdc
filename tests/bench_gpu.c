/* bench_gpu.c: the GPU benchmark (make bench-gpu; scripts/gpu_check.sh runs
 * a short version).
 *
 * Section --train: seconds per epoch of training, evolution and evaluation
 * (mean of epochs 2..N) of the GPU backend on Fashion-MNIST,
 * 784-3000-3000-3000-10, epsilon 20, batch 128, for each motif size, and
 * the all-dense network (cuBLAS) as the baseline in the same run. Without
 * data/fmnist.h5 (make it with `build/settrain prepare fmnist --out
 * data/fmnist.h5`) a synthetic set of the same shape is timed instead and
 * the rows say so.
 * Section --kernels: the kernel harness. For square hidden layers of width
 * W (3000, 20000, 100000) at Erdős–Rényi density (epsilon 20; W rounded up
 * to a multiple of m), batch 128 and 1024, m = 1, 2, 4, 8, 16: every
 * forward / backward / SDDMM variant of kernels/gpu_ops.cu is validated
 * against the CPU operator and timed (CUDA events, warm-up, median of the
 * repetitions) beside cuSPARSE CSR SpMM (the blocks expanded to elements),
 * cuSPARSE BSR SpMM (m > 1), cuSPARSE SDDMM and the dense cuBLAS GEMM of the
 * same shape (skipped when the dense matrix would exceed 8 GiB). Prints
 * `variant | ms | GB/s | GFLOP/s | check`.
 * GB/s counts compulsory traffic (weights, indices, each dense operand read
 * once, outputs written once); GFLOP/s counts 2 nnz ld useful flops
 * (dense: 2 I O ld).
 * Writes results/bench/gpu-<card>-<commit>.csv (first line: card, commit,
 * date). Exit status 1 when a variant disagrees with the CPU.
 *
 * Legend: W width (I = O = W), B batch, ld = B rounded up to 8, m motif,
 * nnz connections. Host buffers, device buffers named d_*. */
#define _GNU_SOURCE
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "util/common.h"
#include "train/config.h"
#include "cpu/cpu_ops.h"
#include "data/dataset.h"
#include "model/model.h"
#include "train/train.h"

#ifdef ST_HAVE_CUDA
#include "gpu/gpu_check.h"
#include "gpu/gpu_ops.h"
#endif

#define MAXLIST 16

typedef struct {
    int train, kernels, check, dense_baseline, devices;
    char data[1024], out[1024];
    int epochs;
    int64_t train_limit;
    int motifs[MAXLIST], n_motifs;
    int widths[MAXLIST], n_widths;
    int batches[MAXLIST], n_batches;
    int kmotifs[MAXLIST], n_kmotifs;
    int reps, warmup;
} bench_opts;

/* One table drives both the parser and --help (defaults in the text). */
static const struct {
    const char *name;
    int has_arg;
    const char *arg, *help;
} opt_table[] = {
    {"train", 0, NULL, "run the training section (default: both sections)"},
    {"kernels", 0, NULL, "run the kernel harness section"},
    {"short", 0, NULL, "short run: epochs 2, motifs 1,4; widths 3000,20000, batch 128, m 1,4, reps 10"},
    {"data", 1, "FILE", "Fashion-MNIST HDF5 file (data/fmnist.h5)"},
    {"epochs", 1, "N", "epochs per training configuration, mean of 2..N (4)"},
    {"motifs", 1, "LIST", "motif sizes of the training section (1,2,4,8)"},
    {"no-dense", 0, NULL, "leave out the all-dense training baseline"},
    {"train-limit", 1, "N", "train on the first N samples (all)"},
    {"widths", 1, "LIST", "harness layer widths (3000,20000,100000)"},
    {"batches", 1, "LIST", "harness batch sizes (128,1024)"},
    {"kmotifs", 1, "LIST", "harness motif sizes (1,2,4,8,16)"},
    {"reps", 1, "N", "timed repetitions per variant, median reported (20)"},
    {"warmup", 1, "N", "untimed warm-up runs per variant (3)"},
    {"no-check", 0, NULL, "skip the CPU validation in the harness"},
    {"out", 1, "FILE", "CSV path (results/bench/gpu-<card>-<commit>.csv)"},
    {"devices", 0, NULL, "print one line naming the CUDA devices and exit: 0 with one, 1 without"},
    {"help", 0, NULL, "this text"},
};
#define N_OPTS (int)(sizeof opt_table / sizeof opt_table[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_gpu [options]\n");
    for (int i = 0; i < N_OPTS; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", opt_table[i].name, opt_table[i].arg ? " " : "",
                 opt_table[i].arg ? opt_table[i].arg : "");
        fprintf(f, "  %-22s %s\n", left, opt_table[i].help);
    }
}

static int parse_list(const char *s, int *out, int *n)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    *n = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        long v;
        if (*n >= MAXLIST || st_parse_int(tok, 1, 1 << 24, &v))
            return -1;
        out[(*n)++] = (int)v;
    }
    return *n ? 0 : -1;
}

static int parse_opts(int argc, char **argv, bench_opts *o)
{
    memset(o, 0, sizeof *o);
    o->check = 1;
    o->dense_baseline = 1;
    snprintf(o->data, sizeof o->data, "data/fmnist.h5");
    o->epochs = 4;
    o->reps = 20;
    o->warmup = 3;
    parse_list("1,2,4,8", o->motifs, &o->n_motifs);
    parse_list("3000,20000,100000", o->widths, &o->n_widths);
    parse_list("128,1024", o->batches, &o->n_batches);
    parse_list("1,2,4,8,16", o->kmotifs, &o->n_kmotifs);
    struct option lo[N_OPTS + 1];
    for (int i = 0; i < N_OPTS; i++)
        lo[i] = (struct option){opt_table[i].name, opt_table[i].has_arg, NULL, 256 + i};
    memset(&lo[N_OPTS], 0, sizeof lo[N_OPTS]);
    int ch, sections = 0;
    long v;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (ch < 256) {
            usage(stderr);
            return -1;
        }
        const char *name = opt_table[ch - 256].name;
        int bad = 0;
        if (!strcmp(name, "train")) sections |= 1;
        else if (!strcmp(name, "kernels")) sections |= 2;
        else if (!strcmp(name, "short")) {
            o->epochs = 2;
            parse_list("1,4", o->motifs, &o->n_motifs);
            parse_list("3000,20000", o->widths, &o->n_widths);
            parse_list("128", o->batches, &o->n_batches);
            parse_list("1,4", o->kmotifs, &o->n_kmotifs);
            o->reps = 10;
        } else if (!strcmp(name, "data")) snprintf(o->data, sizeof o->data, "%s", optarg);
        else if (!strcmp(name, "epochs")) bad = st_parse_int(optarg, 2, 100000, &v) || !(o->epochs = (int)v);
        else if (!strcmp(name, "motifs")) bad = parse_list(optarg, o->motifs, &o->n_motifs);
        else if (!strcmp(name, "no-dense")) o->dense_baseline = 0;
        else if (!strcmp(name, "train-limit")) bad = st_parse_int(optarg, 1, 1L << 40, &v) || !(o->train_limit = v);
        else if (!strcmp(name, "widths")) bad = parse_list(optarg, o->widths, &o->n_widths);
        else if (!strcmp(name, "batches")) bad = parse_list(optarg, o->batches, &o->n_batches);
        else if (!strcmp(name, "kmotifs")) bad = parse_list(optarg, o->kmotifs, &o->n_kmotifs);
        else if (!strcmp(name, "reps")) bad = st_parse_int(optarg, 1, 100000, &v) || !(o->reps = (int)v);
        else if (!strcmp(name, "warmup")) bad = st_parse_int(optarg, 0, 100000, &v) || ((o->warmup = (int)v), 0);
        else if (!strcmp(name, "no-check")) o->check = 0;
        else if (!strcmp(name, "out")) snprintf(o->out, sizeof o->out, "%s", optarg);
        else if (!strcmp(name, "devices")) o->devices = 1;
        else if (!strcmp(name, "help")) {
            usage(stdout);
            return 1;
        }
        if (bad) {
            fprintf(stderr, "bench_gpu: error: --%s '%s' is not valid\n", name, optarg);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "bench_gpu: error: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (!sections)
        sections = 3;
    o->train = sections & 1;
    o->kernels = (sections >> 1) & 1;
    return 0;
}

#ifndef ST_HAVE_CUDA
int main(int argc, char **argv)
{
    bench_opts o;
    int r = parse_opts(argc, argv, &o);
    if (r)
        return r > 0 ? 0 : 2;
    if (o.devices) {
        printf("no CUDA device is usable: this build has no CUDA (built with NVCC=)\n");
        return 1;
    }
    fprintf(stderr, "bench_gpu: this build has no CUDA (built with NVCC=); nothing to time\n");
    return 1;
}
#else

/* ---- shared state -------------------------------------------------------- */

static FILE *csv;
static int failures;

static void csv_row(const char *section, const char *name, int width, int batch, int motif,
                    const char *variant, int64_t conn, double ms, double gbps, double gflops,
                    double t_train, double t_evolve, double t_eval, double acc, const char *check)
{
#define NUM(x) ((x) >= 0 ? (x) : NAN)
    fprintf(csv, "%s,%s,%d,%d,%d,%s,%lld,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%s\n", section, name,
            width, batch, motif, variant, (long long)conn, NUM(ms), NUM(gbps), NUM(gflops),
            NUM(t_train), NUM(t_evolve), NUM(t_eval), NUM(acc), check);
#undef NUM
    fflush(csv);
}

/* ---- section 1: training ------------------------------------------------- */

/* A synthetic stand-in of Fashion-MNIST's shape (60000 / 10000 x 784, 10
 * classes; class signal on a band of pixels) when the file is absent. */
static void synthetic_fmnist(st_dataset *ds)
{
    memset(ds, 0, sizeof *ds);
    ds->n_train = 60000;
    ds->n_test = 10000;
    ds->d = 784;
    ds->k = 10;
    ds->x_train = st_malloc(sizeof(float) * 60000 * 784, "synthetic x");
    ds->y_train = st_malloc(sizeof(int32_t) * 60000, "synthetic y");
    ds->x_test = st_malloc(sizeof(float) * 10000 * 784, "synthetic x");
    ds->y_test = st_malloc(sizeof(int32_t) * 10000, "synthetic y");
    uint64_t s = 12345;
    for (int split = 0; split < 2; split++) {
        int64_t n = split ? ds->n_test : ds->n_train;
        float *x = split ? ds->x_test : ds->x_train;
        int32_t *y = split ? ds->y_test : ds->y_train;
        for (int64_t i = 0; i < n; i++) {
            y[i] = (int32_t)(i % 10);
            for (int f = 0; f < 784; f++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                float u = (float)(s >> 40) / 16777216.0f;
                x[i * 784 + f] = u + (f / 78 == y[i] ? 0.5f : 0.0f);
            }
        }
    }
    snprintf(ds->name, sizeof ds->name, "synthetic-fmnist-shape");
}

static void bench_train(const bench_opts *o)
{
    char err[ST_ERRLEN];
    st_dataset ds;
    int synthetic = 0;
    if (access(o->data, R_OK) == 0) {
        if (dataset_load_h5(o->data, &ds, err))
            st_die("%s", err);
    } else {
        printf("train: %s not found (make it with `build/settrain prepare fmnist --out %s`); "
               "timing a synthetic set of the same shape\n",
               o->data, o->data);
        synthetic_fmnist(&ds);
        synthetic = 1;
    }
    if (o->train_limit && o->train_limit < ds.n_train)
        ds.n_train = o->train_limit;
    float *mean = st_malloc(sizeof(float) * (size_t)ds.d, "means");
    float *sd = st_malloc(sizeof(float) * (size_t)ds.d, "deviations");
    data_feature_stats(ds.x_train, ds.n_train, ds.d, mean, sd);
    data_standardize(ds.x_train, ds.n_train, ds.d, mean, sd);
    data_standardize(ds.x_test, ds.n_test, ds.d, mean, sd);
    free(mean);
    free(sd);
    printf("\ntrain: 784-3000-3000-3000-10, epsilon 20, batch 128, %lld samples%s, %d epochs "
           "(mean of epochs 2..%d, seconds)\n",
           (long long)ds.n_train, synthetic ? " (synthetic)" : "", o->epochs, o->epochs);
    printf("%-8s %12s %10s %10s %10s %10s %9s\n", "config", "connections", "train", "evolve",
           "eval", "epoch", "test acc");
    int n_cfg = o->n_motifs + (o->dense_baseline ? 1 : 0);
    for (int c = 0; c < n_cfg; c++) {
        const int dense = c == o->n_motifs;
        const int motif = dense ? 1 : o->motifs[c];
        st_config cfg;
        config_defaults(&cfg);
        cfg.motif = motif;
        cfg.epsilon = dense ? 1e9 : 20.0; /* every p clamps to 1: all layers dense */
        cfg.quiet = 1;
        const int32_t sizes[] = {(int32_t)ds.d, 3000, 3000, 3000, ds.k};
        st_model m;
        if (model_init(&m, sizes, 4, motif, cfg.epsilon, cfg.seed, err))
            st_die("%s", err);
        st_backend *be = backend_gpu_create(&m, &ds, &cfg, err);
        if (!be)
            st_die("%s", err);
        int64_t *perm = st_malloc(sizeof(int64_t) * (size_t)ds.n_train, "permutation");
        st_evolve_stats ev[4];
        double sum_tr = 0, sum_ev = 0, sum_el = 0, acc = 0;
        for (int epoch = 1; epoch <= o->epochs; epoch++) {
            double loss = 0, tloss = 0;
            int64_t correct = 0, tcorrect = 0, done = 0;
            volatile int stop = 0;
            train_shuffle(cfg.seed, epoch, ds.n_train, perm);
            double t0 = st_now();
            if (be->ops->train_epoch(be, epoch, perm, ds.n_train, 0, &stop, &done, &loss,
                                     &correct, err))
                st_die("%s", err);
            double t1 = st_now();
            if (be->ops->evaluate(be, 1, &tloss, &tcorrect, err))
                st_die("%s", err);
            double t2 = st_now();
            if (be->ops->evolve(be, epoch, ev, err))
                st_die("%s", err);
            double t3 = st_now();
            acc = ds.n_test ? (double)tcorrect / (double)ds.n_test : NAN;
            if (epoch > 1) {
                sum_tr += t1 - t0;
                sum_el += t2 - t1;
                sum_ev += t3 - t2;
            }
        }
        const double k = o->epochs - 1;
        char name[32];
        snprintf(name, sizeof name, dense ? "dense" : "m%d", motif);
        printf("%-8s %12lld %10.4f %10.4f %10.4f %10.4f %9.4f\n", name,
               (long long)model_connections(&m), sum_tr / k, sum_ev / k, sum_el / k,
               (sum_tr + sum_ev + sum_el) / k, acc);
        fflush(stdout);
        csv_row(synthetic ? "train-synthetic" : "train", name, 3000, 128, motif,
                dense ? "cublas" : "backend", model_connections(&m), -1, -1, -1, sum_tr / k,
                sum_ev / k, sum_el / k, acc, "");
        free(perm);
        be->ops->destroy(be);
        model_free(&m);
    }
    dataset_free(&ds);
}

/* ---- section 2: kernel harness ------------------------------------------- */

static float *dalloc(size_t bytes)
{
    void *p = NULL;
    ST_CUDA_CHECK(cudaMalloc(&p, bytes ? bytes : 16));
    return (float *)p;
}

static float *dupload(const void *h, size_t bytes)
{
    float *d = dalloc(bytes);
    ST_CUDA_CHECK(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice));
    /* the launchers' stream does not wait for the legacy default stream */
    ST_CUDA_CHECK(cudaDeviceSynchronize());
    return d;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef enum { OP_FWD, OP_BWD, OP_SDDMM } op_kind;
static const char *const op_names[] = {"forward", "backward", "sddmm"};

/* Everything one harness case needs. */
typedef struct {
    st_gpu_ctx ctx;
    st_layer *H;          /* host layer (block-CSR)                        */
    st_gpu_layer G;       /* device copy                                   */
    int ld, B;
    int64_t I, O, nnz;
    float *d_a, *d_z, *d_dout, *d_din, *d_zin, *d_gw, *d_gb;
    /* element-level CSR of W^T for the cuSPARSE comparisons */
    int32_t *d_erow, *d_ecol;
    float *d_ew;
    int64_t *exp2blk;     /* host: expanded entry -> block storage index   */
    cusparseSpMatDescr_t csr;
    cusparseDnMatDescr_t dn_a, dn_z, dn_dout, dn_din;
    void *spbuf;
    size_t spbuf_bytes;
    st_gpu_spmm bsr;
    float *d_dense;       /* W^T dense (O, I) or NULL when too big         */
    int variant;          /* what run_variant runs                          */
    op_kind op;
    char why[256];        /* why a library variant is not available         */
} hcase;

enum { V_ROW, V_BLOCK, V_CSR, V_BSR, V_DENSE };
static const char *const v_names[] = {"row", "block", "cusparse-csr", "cusparse-bsr", "cublas-dense"};

static void ensure_spbuf(hcase *h, size_t need)
{
    if (need > h->spbuf_bytes) {
        cudaFree(h->spbuf);
        h->spbuf = dalloc(need);
        h->spbuf_bytes = need;
    }
}

/* Library comparison calls: a failure makes the variant unavailable (noted
 * in h->why) instead of ending the benchmark. */
#define LIB_SPARSE(call)                                                                    \
    do {                                                                                    \
        cusparseStatus_t st_ = (call);                                                      \
        if (st_ != CUSPARSE_STATUS_SUCCESS) {                                               \
            snprintf(h->why, sizeof h->why, "%s: %s", #call, cusparseGetErrorString(st_));   \
            return 1;                                                                       \
        }                                                                                   \
    } while (0)
#define LIB_BLAS(call)                                                                      \
    do {                                                                                    \
        cublasStatus_t st_ = (call);                                                        \
        if (st_ != CUBLAS_STATUS_SUCCESS) {                                                 \
            snprintf(h->why, sizeof h->why, "%s: %s", #call, cublasGetStatusString(st_));    \
            return 1;                                                                       \
        }                                                                                   \
    } while (0)

/* Run one variant of one op once. Returns 0, or 1 when not available here
 * (h->why says why). */
static int run_variant(hcase *h, int fused_update)
{
    char err[ST_ERRLEN];
    const float one = 1.0f, zero = 0.0f;
    cudaStream_t s = h->ctx.stream;
    int rc = 0;
    switch (h->op) {
    case OP_FWD:
        if (h->variant == V_ROW || h->variant == V_BLOCK)
            rc = st_gpu_forward_sparse(h->variant == V_ROW ? ST_GPU_VAR_ROW : ST_GPU_VAR_BLOCK,
                                       &h->G, h->d_a, h->d_z, h->ld, s, err);
        else if (h->variant == V_BSR)
            rc = st_gpu_spmm_run(&h->bsr, &h->ctx, &h->G, h->d_z, h->ld, err);
        else if (h->variant == V_CSR) {
            rc = st_gpu_bias_fill(h->G.bias, h->d_z, h->G.n_out, h->ld, s, err);
            size_t need = 0;
            LIB_SPARSE(cusparseSpMM_bufferSize(
                h->ctx.cusparse, CUSPARSE_OPERATION_NON_TRANSPOSE,
                CUSPARSE_OPERATION_NON_TRANSPOSE, &one, h->csr, h->dn_a, &one, h->dn_z,
                CUDA_R_32F, CUSPARSE_SPMM_ALG_DEFAULT, &need));
            ensure_spbuf(h, need);
            LIB_SPARSE(cusparseSpMM(h->ctx.cusparse, CUSPARSE_OPERATION_NON_TRANSPOSE,
                                           CUSPARSE_OPERATION_NON_TRANSPOSE, &one, h->csr,
                                           h->dn_a, &one, h->dn_z, CUDA_R_32F,
                                           CUSPARSE_SPMM_ALG_DEFAULT, h->spbuf));
        } else {
            rc = st_gpu_bias_fill(h->G.bias, h->d_z, h->G.n_out, h->ld, s, err);
            LIB_BLAS(cublasSgemm(h->ctx.cublas, CUBLAS_OP_N, CUBLAS_OP_N, h->ld,
                                        (int)h->O, (int)h->I, &one, h->d_a, h->ld, h->d_dense,
                                        (int)h->I, &one, h->d_z, h->ld));
        }
        break;
    case OP_BWD:
        if (h->variant == V_ROW || h->variant == V_BLOCK)
            rc = st_gpu_backward_sparse(h->variant == V_ROW ? ST_GPU_VAR_ROW : ST_GPU_VAR_BLOCK,
                                        &h->G, h->d_dout, h->d_zin, NULL, ST_ACT_RELU, 1,
                                        h->d_din, h->ld, s, err);
        else if (h->variant == V_CSR) {
            size_t need = 0;
            cusparseStatus_t st = cusparseSpMM_bufferSize(
                h->ctx.cusparse, CUSPARSE_OPERATION_TRANSPOSE, CUSPARSE_OPERATION_NON_TRANSPOSE,
                &one, h->csr, h->dn_dout, &zero, h->dn_din, CUDA_R_32F,
                CUSPARSE_SPMM_ALG_DEFAULT, &need);
            LIB_SPARSE(st);
            ensure_spbuf(h, need);
            LIB_SPARSE(cusparseSpMM(h->ctx.cusparse, CUSPARSE_OPERATION_TRANSPOSE,
                                           CUSPARSE_OPERATION_NON_TRANSPOSE, &one, h->csr,
                                           h->dn_dout, &zero, h->dn_din, CUDA_R_32F,
                                           CUSPARSE_SPMM_ALG_DEFAULT, h->spbuf));
        } else if (h->variant == V_DENSE) {
            LIB_BLAS(cublasSgemm(h->ctx.cublas, CUBLAS_OP_N, CUBLAS_OP_T, h->ld, (int)h->I,
                                        (int)h->O, &one, h->d_dout, h->ld, h->d_dense, (int)h->I,
                                        &zero, h->d_din, h->ld));
        } else
            return 1;
        break;
    case OP_SDDMM:
        if (h->variant == V_ROW || h->variant == V_BLOCK)
            rc = st_gpu_layer_grad_update(&h->ctx,
                                          h->variant == V_ROW ? ST_GPU_VAR_ROW : ST_GPU_VAR_BLOCK,
                                          &h->G, h->d_a, h->d_dout, h->ld, 1e-6f, 0.9f, 2e-4f,
                                          fused_update ? NULL : h->d_gw,
                                          fused_update ? NULL : h->d_gb, NULL, err);
        else if (h->variant == V_CSR) {
            size_t need = 0;
            cusparseStatus_t st = cusparseSDDMM_bufferSize(
                h->ctx.cusparse, CUSPARSE_OPERATION_NON_TRANSPOSE, CUSPARSE_OPERATION_TRANSPOSE,
                &one, h->dn_dout, h->dn_a, &zero, h->csr, CUDA_R_32F, CUSPARSE_SDDMM_ALG_DEFAULT,
                &need);
            LIB_SPARSE(st);
            ensure_spbuf(h, need);
            LIB_SPARSE(cusparseSDDMM(h->ctx.cusparse, CUSPARSE_OPERATION_NON_TRANSPOSE,
                                            CUSPARSE_OPERATION_TRANSPOSE, &one, h->dn_dout,
                                            h->dn_a, &zero, h->csr, CUDA_R_32F,
                                            CUSPARSE_SDDMM_ALG_DEFAULT, h->spbuf));
        } else if (h->variant == V_DENSE) {
            LIB_BLAS(cublasSgemm(h->ctx.cublas, CUBLAS_OP_T, CUBLAS_OP_N, (int)h->I,
                                        (int)h->O, h->ld, &one, h->d_a, h->ld, h->d_dout, h->ld,
                                        &zero, h->d_dense, (int)h->I));
        } else
            return 1;
        break;
    }
    if (rc)
        st_die("%s", err);
    return 0;
}

/* Median milliseconds of reps runs after warm-up (CUDA events). */
static double time_variant(hcase *h, int warmup, int reps)
{
    cudaEvent_t e0, e1;
    ST_CUDA_CHECK(cudaEventCreate(&e0));
    ST_CUDA_CHECK(cudaEventCreate(&e1));
    for (int i = 0; i < warmup; i++)
        run_variant(h, 1);
    double *ms = st_malloc(sizeof(double) * (size_t)reps, "timings");
    for (int i = 0; i < reps; i++) {
        ST_CUDA_CHECK(cudaEventRecord(e0, h->ctx.stream));
        run_variant(h, 1);
        ST_CUDA_CHECK(cudaEventRecord(e1, h->ctx.stream));
        ST_CUDA_CHECK(cudaEventSynchronize(e1));
        float t = 0;
        ST_CUDA_CHECK(cudaEventElapsedTime(&t, e0, e1));
        ms[i] = t;
    }
    qsort(ms, (size_t)reps, sizeof(double), cmp_double);
    double med = reps % 2 ? ms[reps / 2] : 0.5 * (ms[reps / 2 - 1] + ms[reps / 2]);
    free(ms);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return med;
}

static int close_all(const float *got, const float *want, int64_t n, double *maxerr)
{
    int ok = 1;
    *maxerr = 0;
    for (int64_t e = 0; e < n; e++) {
        double d = fabs((double)got[e] - (double)want[e]);
        if (d > *maxerr)
            *maxerr = d;
        /* float sums of up to a few thousand terms in different orders:
         * 1e-3 absolute + 1e-3 relative is far above rounding, far below
         * any indexing error */
        if (!(d <= 1e-3 + 1e-3 * fabs(want[e])))
            ok = 0;
    }
    return ok;
}

/* Validate the variant's output against the CPU reference ref (n floats)
 * or, for the SDDMM, the gradient in block storage order. */
static const char *validate(hcase *h, const float *ref, const float *ref_gb, double *maxerr)
{
    *maxerr = 0;
    if (!ref)
        return "-";
    if (h->op == OP_SDDMM && h->variant == V_DENSE)
        return "-"; /* the dense gradient has no sparse reference */
    run_variant(h, 0);
    ST_CUDA_CHECK(cudaDeviceSynchronize());
    int ok = 1;
    if (h->op == OP_FWD || h->op == OP_BWD) {
        const int64_t n = (h->op == OP_FWD ? h->O : h->I) * h->ld;
        float *got = st_malloc(sizeof(float) * (size_t)n, "output");
        ST_CUDA_CHECK(cudaMemcpy(got, h->op == OP_FWD ? h->d_z : h->d_din, sizeof(float) * (size_t)n,
                                 cudaMemcpyDeviceToHost));
        ok = close_all(got, ref, n, maxerr);
        free(got);
    } else {
        float *got = st_malloc(sizeof(float) * (size_t)h->nnz, "gradient");
        if (h->variant == V_CSR) {
            float *e = st_malloc(sizeof(float) * (size_t)h->nnz, "expanded gradient");
            ST_CUDA_CHECK(cudaMemcpy(e, h->d_ew, sizeof(float) * (size_t)h->nnz,
                                     cudaMemcpyDeviceToHost));
            for (int64_t x = 0; x < h->nnz; x++)
                got[h->exp2blk[x]] = e[x];
            free(e);
        } else {
            ST_CUDA_CHECK(cudaMemcpy(got, h->d_gw, sizeof(float) * (size_t)h->nnz,
                                     cudaMemcpyDeviceToHost));
            float *gb = st_malloc(sizeof(float) * (size_t)h->O, "bias gradient");
            double m2;
            ST_CUDA_CHECK(cudaMemcpy(gb, h->d_gb, sizeof(float) * (size_t)h->O,
                                     cudaMemcpyDeviceToHost));
            ok = close_all(gb, ref_gb, h->O, &m2);
            free(gb);
        }
        double m1;
        ok &= close_all(got, ref, h->nnz, &m1);
        *maxerr = m1 > *maxerr ? m1 : *maxerr;
        free(got);
    }
    if (!ok)
        failures++;
    return ok ? "ok" : "FAIL";
}

/* Element-level CSR of the block-CSR W^T (O x I) and the map back. */
static void expand_csr(const st_layer *H, int32_t *erow, int32_t *ecol, float *ew, int64_t *map)
{
    const int bi = H->bi, bo = H->bo, bs = bi * bo;
    int64_t x = 0;
    erow[0] = 0;
    for (int32_t R = 0; R < H->nbr; R++)
        for (int r = 0; r < bo; r++) {
            for (int32_t k = H->row_ptr[R]; k < H->row_ptr[R + 1]; k++)
                for (int c = 0; c < bi; c++) {
                    ecol[x] = H->col_idx[k] * bi + c;
                    ew[x] = H->w[(int64_t)k * bs + r * bi + c];
                    map[x] = (int64_t)k * bs + r * bi + c;
                    x++;
                }
            erow[R * bo + r + 1] = (int32_t)x;
        }
}

static void harness_case(const bench_opts *o, int width, int batch, int motif, const char *card)
{
    char err[ST_ERRLEN];
    const int W = (width + motif - 1) / motif * motif;
    const int32_t sizes[] = {W, W, 10};
    st_model M;
    if (model_init(&M, sizes, 2, motif, 20.0, 7, err))
        st_die("%s", err);
    hcase h;
    memset(&h, 0, sizeof h);
    h.H = &M.layers[0];
    h.B = batch;
    h.ld = (batch + 7) / 8 * 8;
    h.I = h.O = W;
    h.nnz = layer_nnz(h.H);
    const size_t act = sizeof(float) * (size_t)W * (size_t)h.ld;
    if (st_gpu_ctx_init(&h.ctx, err) || st_gpu_layer_create(&h.G, h.H, 1, NULL, err))
        st_die("%s", err);
    /* Inputs: a and z_in U(-1, 1) / z_in > 0 (relu' = 1, so every backward
     * variant computes W delta_out), delta_out U(-0.1, 0.1) with zero padding. */
    float *a = st_malloc(act, "a"), *dout = st_malloc(act, "delta"), *zin = st_malloc(act, "z");
    uint64_t s = 99 + (uint64_t)W + (uint64_t)motif;
    for (int64_t e = 0; e < (int64_t)W * h.ld; e++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        double u = (double)(s >> 11) * 0x1p-53;
        a[e] = (float)(2 * u - 1);
        zin[e] = (float)(u + 0.01);
        dout[e] = (e % h.ld) < batch ? (float)(0.2 * u - 0.1) : 0.0f;
    }
    h.d_a = dupload(a, act);
    h.d_zin = dupload(zin, act);
    h.d_dout = dupload(dout, act);
    h.d_z = dalloc(act);
    h.d_din = dalloc(act);
    h.d_gw = dalloc(sizeof(float) * (size_t)h.nnz);
    h.d_gb = dalloc(sizeof(float) * (size_t)W);
    /* Expanded CSR for cuSPARSE. */
    int32_t *erow = st_malloc(sizeof(int32_t) * ((size_t)W + 1), "erow");
    int32_t *ecol = st_malloc(sizeof(int32_t) * (size_t)h.nnz, "ecol");
    float *ew = st_malloc(sizeof(float) * (size_t)h.nnz, "ew");
    h.exp2blk = st_malloc(sizeof(int64_t) * (size_t)h.nnz, "map");
    expand_csr(h.H, erow, ecol, ew, h.exp2blk);
    h.d_erow = (int32_t *)dupload(erow, sizeof(int32_t) * ((size_t)W + 1));
    h.d_ecol = (int32_t *)dupload(ecol, sizeof(int32_t) * (size_t)h.nnz);
    h.d_ew = dupload(ew, sizeof(float) * (size_t)h.nnz);
    ST_CUSPARSE_CHECK(cusparseCreateCsr(&h.csr, W, W, h.nnz, h.d_erow, h.d_ecol, h.d_ew,
                                        CUSPARSE_INDEX_32I, CUSPARSE_INDEX_32I,
                                        CUSPARSE_INDEX_BASE_ZERO, CUDA_R_32F));
    ST_CUSPARSE_CHECK(cusparseCreateDnMat(&h.dn_a, W, h.ld, h.ld, h.d_a, CUDA_R_32F, CUSPARSE_ORDER_ROW));
    ST_CUSPARSE_CHECK(cusparseCreateDnMat(&h.dn_z, W, h.ld, h.ld, h.d_z, CUDA_R_32F, CUSPARSE_ORDER_ROW));
    ST_CUSPARSE_CHECK(cusparseCreateDnMat(&h.dn_dout, W, h.ld, h.ld, h.d_dout, CUDA_R_32F,
                                          CUSPARSE_ORDER_ROW));
    ST_CUSPARSE_CHECK(cusparseCreateDnMat(&h.dn_din, W, h.ld, h.ld, h.d_din, CUDA_R_32F,
                                          CUSPARSE_ORDER_ROW));
    int have_bsr = 0;
    if (motif > 1) {
        int rc = st_gpu_spmm_init(&h.bsr, &h.ctx, &h.G, 1, CUSPARSE_SPMM_ALG_DEFAULT, h.d_a,
                                  h.d_z, h.ld, 1, NULL, err);
        if (rc < 0)
            st_die("%s", err);
        have_bsr = rc == 0;
        if (rc > 0)
            printf("  (cuSPARSE BSR: %s)\n", err);
    }
    /* The dense equivalent of the layer (zeros elsewhere), so the cuBLAS
     * forward and backward compute the same products as the sparse ones. */
    const double dense_bytes = 4.0 * (double)W * (double)W;
    if (dense_bytes <= 8.0 * 1073741824.0) {
        float *dense = calloc((size_t)W * (size_t)W, sizeof(float));
        if (dense) {
            for (int32_t o = 0; o < W; o++)
                for (int32_t x = erow[o]; x < erow[o + 1]; x++)
                    dense[(int64_t)o * W + ecol[x]] = ew[x];
            h.d_dense = dupload(dense, (size_t)dense_bytes);
            free(dense);
        }
    }
    /* CPU references. */
    float *zref = NULL, *dref = NULL, *gref = NULL, *gbref = NULL;
    if (o->check) {
        zref = st_malloc(act, "z ref");
        dref = st_malloc(act, "delta ref");
        gref = st_malloc(sizeof(float) * (size_t)h.nnz, "gw ref");
        gbref = st_malloc(sizeof(float) * (size_t)W, "gb ref");
        cpu_layer_forward(h.H, a, zref, h.ld);
        cpu_layer_backward_delta(h.H, dout, zin, NULL, ST_ACT_RELU, 1, dref, h.ld);
        cpu_layer_grad(h.H, a, dout, h.ld, gref, gbref);
    }
    printf("\nW %d, batch %d, m %d: %lld connections (density %.5f)\n", W, batch, motif,
           (long long)h.nnz, (double)h.nnz / ((double)W * W));
    printf("  %-9s %-13s | %9s | %8s | %9s | %s\n", "op", "variant", "ms", "GB/s", "GFLOP/s",
           "check");
    const double fl_sparse = 2.0 * (double)h.nnz * h.ld, fl_dense = 2.0 * (double)W * W * h.ld;
    const double dn = 4.0 * (double)W * h.ld; /* one dense (W, ld) operand */
    const double idx = 4.0 * (double)h.G.nb + 4.0 * (h.G.nbr + 1);
    for (int op = OP_FWD; op <= OP_SDDMM; op++)
        for (int v = V_ROW; v <= V_DENSE; v++) {
            if (v == V_BLOCK && !st_gpu_block_supported(motif, motif))
                continue;
            if (v == V_BSR && (op != OP_FWD || !have_bsr))
                continue;
            if (v == V_DENSE && !h.d_dense) {
                printf("  %-9s %-13s | %9s | %8s | %9s | skipped: dense W^T needs %.1f GiB\n",
                       op_names[op], v_names[v], "-", "-", "-", dense_bytes / 1073741824.0);
                continue;
            }
            h.op = (op_kind)op;
            h.variant = v;
            h.why[0] = '\0';
            if (run_variant(&h, 1)) {
                printf("  %-9s %-13s | not available: %s\n", op_names[op], v_names[v],
                       h.why[0] ? h.why : "not offered for this shape");
                csv_row("kernel", op_names[op], W, batch, motif, v_names[v], h.nnz, -1, -1, -1,
                        -1, -1, -1, -1, "n/a");
                continue;
            }
            double maxerr;
            const char *chk = validate(&h, op == OP_FWD ? zref : op == OP_BWD ? dref : gref,
                                       gbref, &maxerr);
            double ms = time_variant(&h, o->warmup, o->reps);
            double bytes, flops = v == V_DENSE ? fl_dense : fl_sparse;
            if (v == V_DENSE)
                bytes = dense_bytes + 2 * dn;
            else if (op == OP_SDDMM)
                bytes = 16.0 * (double)h.nnz + idx + 2 * dn; /* w, v read and written */
            else
                bytes = 4.0 * (double)h.nnz + idx + (op == OP_BWD ? 3 : 2) * dn;
            double gbps = bytes / (ms * 1e-3) / 1e9, gflops = flops / (ms * 1e-3) / 1e9;
            char chkbuf[64];
            if (strcmp(chk, "-"))
                snprintf(chkbuf, sizeof chkbuf, "%s (max |err| %.2g)", chk, maxerr);
            else
                snprintf(chkbuf, sizeof chkbuf, "%s", o->check ? "- (no sparse reference)" : "-");
            printf("  %-9s %-13s | %9.4f | %8.1f | %9.1f | %s\n", op_names[op], v_names[v], ms,
                   gbps, gflops, chkbuf);
            fflush(stdout);
            char name[64];
            snprintf(name, sizeof name, "%s", op_names[op]);
            csv_row("kernel", name, W, batch, motif, v_names[v], h.nnz, ms, gbps, gflops, -1, -1,
                    -1, -1, chk);
        }
    (void)card;
    cusparseDestroySpMat(h.csr);
    cusparseDestroyDnMat(h.dn_a);
    cusparseDestroyDnMat(h.dn_z);
    cusparseDestroyDnMat(h.dn_dout);
    cusparseDestroyDnMat(h.dn_din);
    st_gpu_spmm_free(&h.bsr);
    cudaFree(h.spbuf);
    cudaFree(h.d_dense);
    cudaFree(h.d_a);
    cudaFree(h.d_zin);
    cudaFree(h.d_dout);
    cudaFree(h.d_z);
    cudaFree(h.d_din);
    cudaFree(h.d_gw);
    cudaFree(h.d_gb);
    cudaFree(h.d_erow);
    cudaFree(h.d_ecol);
    cudaFree(h.d_ew);
    st_gpu_layer_free(&h.G);
    st_gpu_ctx_free(&h.ctx);
    free(a);
    free(dout);
    free(zin);
    free(erow);
    free(ecol);
    free(ew);
    free(h.exp2blk);
    free(zref);
    free(dref);
    free(gref);
    free(gbref);
    model_free(&M);
}

int main(int argc, char **argv)
{
    bench_opts o;
    int r = parse_opts(argc, argv, &o);
    if (r)
        return r > 0 ? 0 : 2;
    int ndev = 0;
    cudaError_t e = cudaGetDeviceCount(&ndev);
    if (o.devices) { /* one line either way (scripts/gpu_check.sh asks first) */
        if (e != cudaSuccess || ndev < 1) {
            printf("no CUDA device is present (cudaGetDeviceCount: %s)\n",
                   e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
            return 1;
        }
        printf("%d CUDA device(s):", ndev);
        for (int d = 0; d < ndev; d++) {
            struct cudaDeviceProp p;
            if (cudaGetDeviceProperties(&p, d) == cudaSuccess)
                printf("%s %d: %s (compute %d.%d, %.1f GiB)", d ? ";" : "", d, p.name, p.major,
                       p.minor, (double)p.totalGlobalMem / 1073741824.0);
        }
        printf("\n");
        return 0;
    }
    if (e != cudaSuccess || ndev < 1) {
        fprintf(stderr, "bench_gpu: no CUDA device (cudaGetDeviceCount: %s)\n",
                e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
        return 1;
    }
    struct cudaDeviceProp prop;
    ST_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    char card[256];
    snprintf(card, sizeof card, "%s", prop.name);
    for (char *p = card; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
            *p = '-';
    char path[1100];
    if (o.out[0])
        snprintf(path, sizeof path, "%s", o.out);
    else {
        char err[ST_ERRLEN];
        if (st_mkdirs("results/bench", err))
            st_die("%s", err);
        snprintf(path, sizeof path, "results/bench/gpu-%s-%s.csv", card, ST_GIT_COMMIT);
    }
    csv = fopen(path, "w");
    if (!csv)
        st_die("%s: cannot write: %s", path, strerror(errno));
    char stamp[32];
    time_t now = time(NULL);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    fprintf(csv, "# settrain GPU benchmark: gpu \"%s\" (compute %d.%d), commit %s, %s\n",
            prop.name, prop.major, prop.minor, ST_GIT_COMMIT, stamp);
    fprintf(csv, "section,name,width,batch,motif,variant,connections,ms,gbps,gflops,t_train_s,"
                 "t_evolve_s,t_eval_s,test_acc,check\n");
    printf("GPU: %s (compute %d.%d, %.1f GiB), commit %s\n", prop.name, prop.major, prop.minor,
           (double)prop.totalGlobalMem / 1073741824.0, ST_GIT_COMMIT);
    if (o.kernels)
        for (int wi = 0; wi < o.n_widths; wi++)
            for (int bi = 0; bi < o.n_batches; bi++)
                for (int mi = 0; mi < o.n_kmotifs; mi++)
                    harness_case(&o, o.widths[wi], o.batches[bi], o.kmotifs[mi], card);
    if (o.train)
        bench_train(&o);
    fclose(csv);
    printf("\nwritten: %s\n", path);
    if (failures) {
        printf("%d variant(s) disagree with the CPU reference\n", failures);
        return 1;
    }
    return 0;
}
#endif
