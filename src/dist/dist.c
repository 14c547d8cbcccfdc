/* dist.c: data-parallel training over MPI for the CPU backend (dist.h says
 * what it does and why it is exact). Built with MPI when the Makefile finds
 * mpicc or pkg-config's mpi-c (ST_HAVE_MPI); otherwise a world of one.
 *
 * The per-batch step, on every rank:
 *   chunks [c0, c1) of the batch -> backend_cpu_batch_grad per chunk (float)
 *   -> round(g 2^32) added into acc (int64, grad_n + 4 slots)
 *   -> MPI_Allreduce(acc, sum) -> g = acc 2^-32 -> backend_cpu_apply_grad.
 * The four slots after the gradients: the loss in fixed point, the correct
 * count, the stop flag (a signal on any rank), the overflow flag (a chunk
 * gradient not finite or beyond 2^23, or a non-finite loss: the run
 * diverged; the batch is not applied and the epoch reports a NaN loss,
 * which train.c turns into its "training diverged" stop on every rank).
 *
 * Test hook: SETTRAIN_DIST_FAULT=RANK:EPOCH changes one weight of layer 1
 * on rank RANK before the comparison after the evolution of EPOCH, to show
 * that the check catches ranks that drift apart. */
#define _GNU_SOURCE
#include "dist/dist.h"

#include <math.h>
#include <omp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/common.h"
#include "cpu/cpu_ops.h"

#ifdef ST_HAVE_MPI
#include <mpi.h>
#endif


#define HOSTLEN 64

uint64_t dist_hash_topology(const st_layer *L)
{
    uint64_t h = 1469598103934665603ULL;
#define MIX(x) (h = (h ^ (uint64_t)(x)) * 1099511628211ULL)
    MIX(L->n_in);
    MIX(L->n_out);
    MIX(L->dense);
    if (!L->dense) {
        MIX(L->nb);
        for (int32_t r = 0; r <= L->nbr; r++)
            MIX((uint32_t)L->row_ptr[r]);
        for (int32_t k = 0; k < L->nb; k++)
            MIX((uint32_t)L->col_idx[k]);
    }
    return h;
}

uint64_t dist_hash_values(const st_layer *L)
{
    uint64_t h = 1469598103934665603ULL;
    const int64_t nnz = layer_nnz(L);
    uint32_t u;
    for (int64_t k = 0; k < nnz; k++) {
        memcpy(&u, &L->w[k], 4);
        MIX(u);
    }
    for (int32_t o = 0; o < L->n_out; o++) {
        memcpy(&u, &L->bias[o], 4);
        MIX(u);
    }
#undef MIX
    return h;
}

#ifndef ST_HAVE_MPI

int dist_init(char *err)
{
    const char *n = getenv("OMPI_COMM_WORLD_SIZE");
    if (!n)
        n = getenv("PMI_SIZE");
    if (n && atoi(n) > 1)
        return st_fail(err, "started as one of %s MPI ranks, but this settrain was built "
                            "without MPI (install libopenmpi-dev and rebuild; make prints "
                            "\"MPI\" with a check mark)", n);
    return 0;
}
int dist_active(void) { return 0; }
int dist_rank(void) { return 0; }
int dist_size(void) { return 1; }
void dist_finalize(void) {}
const char *dist_build_info(void) { return "no (built without MPI)"; }
int dist_wrap_backend(st_backend *be, char *err)
{
    (void)be;
    return st_fail(err, "this settrain was built without MPI");
}
int dist_any(int flag) { return flag != 0; }
int64_t dist_bytes_per_batch(const st_backend *be)
{
    return 8 * (backend_cpu_grad_size(be) + 4);
}
int dist_check_model(const st_model *m, int epoch, char *err)
{
    (void)m;
    (void)epoch;
    (void)err;
    return 0;
}

#else /* ST_HAVE_MPI */

static int g_active, g_rank, g_size = 1, g_finalized;
static char g_hosts_json[1400]; /* "rank_hosts": [...] */
static char g_libname[96], g_lib[128];

static const char *launcher_env(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK",
                                       "PMI_SIZE", "MV2_COMM_WORLD_SIZE", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        if (getenv(vars[i]))
            return vars[i];
    return NULL;
}

const char *dist_build_info(void)
{
    if (!g_lib[0]) {
        char v[MPI_MAX_LIBRARY_VERSION_STRING];
        int len = 0;
        MPI_Get_library_version(v, &len);
        v[strcspn(v, ",\n\"\\")] = '\0';
        snprintf(g_libname, sizeof g_libname, "%.80s", v);
        snprintf(g_lib, sizeof g_lib, "yes (%s)", g_libname);
    }
    return g_lib;
}

/* An exit that did not pass through dist_finalize: an error on this rank.
 * Abort them all, or the others would wait in the next reduction forever. */
static void dist_atexit(void)
{
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin && !g_finalized && g_size > 1)
        MPI_Abort(MPI_COMM_WORLD, ST_EXIT_ERROR);
}

int dist_init(char *err)
{
    if (g_active)
        return 0;
    const char *force = getenv("SETTRAIN_MPI");
    const char *why = launcher_env();
    if (force && !strcmp(force, "0"))
        return 0;
    if (!why && !(force && !strcmp(force, "1"))) {
        const char *ntasks = getenv("SLURM_STEP_NUM_TASKS");
        if (getenv("SLURM_PROCID") && ntasks && atoi(ntasks) > 1)
            return st_fail(err, "started by srun as one of %s tasks without MPI wire-up: "
                                "use srun --mpi=pmix (or mpirun inside the allocation)", ntasks);
        return 0;
    }
    int init = 0;
    MPI_Initialized(&init);
    int provided = 0;
    if (!init && MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return st_fail(err, "MPI_Init failed");
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    g_active = 1;
    atexit(dist_atexit);

    char host[HOSTLEN] = "";
    gethostname(host, sizeof host - 1);
    host[strcspn(host, ".")] = '\0';
    for (char *p = host; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 32)
            *p = '?';
    char *all = st_malloc((size_t)g_size * HOSTLEN, "host names");
    MPI_Allgather(host, HOSTLEN, MPI_CHAR, all, HOSTLEN, MPI_CHAR, MPI_COMM_WORLD);
    size_t n = (size_t)snprintf(g_hosts_json, sizeof g_hosts_json, "\"rank_hosts\": [");
    int r = 0;
    for (; r < g_size; r++) {
        size_t need = strlen(all + (size_t)r * HOSTLEN) + 4;
        if (n + need + 40 > sizeof g_hosts_json)
            break;
        n += (size_t)snprintf(g_hosts_json + n, sizeof g_hosts_json - n, "%s\"%s\"",
                              r ? ", " : "", all + (size_t)r * HOSTLEN);
    }
    snprintf(g_hosts_json + n, sizeof g_hosts_json - n, "]%s",
             r < g_size ? ", \"rank_hosts_truncated\": true" : "");
    free(all);
    if (g_rank > 0 && !freopen("/dev/null", "w", stdout)) {
        /* Nothing to report: rank 0 prints; an error here only means this
         * rank's progress lines still go to the launcher's output. */
    }
    return 0;
}

int dist_active(void) { return g_active; }
int dist_rank(void) { return g_rank; }
int dist_size(void) { return g_size; }

void dist_finalize(void)
{
    if (!g_active || g_finalized)
        return;
    g_finalized = 1;
    MPI_Finalize();
}

int dist_any(int flag)
{
    if (!g_active)
        return flag != 0;
    int in = flag != 0, out = 0;
    MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return out;
}

int64_t dist_bytes_per_batch(const st_backend *be)
{
    return 8 * (backend_cpu_grad_size(be) + 4);
}

/* --- the data-parallel backend ----------------------------------------- */

static struct {
    st_backend_ops ops;
    const st_backend_ops *orig;
    int64_t gn;          /* gradient values (backend_cpu_grad_size)      */
    float *g;            /* gn floats                                    */
    int64_t *acc;        /* gn + 4                                       */
    float **ea, **ez;    /* evaluation buffers (sizes[l], CHUNK), 0..L  */
    int L;
    double t_reduce;     /* seconds in the batches' MPI_Allreduce        */
    int64_t n_reduce;    /* batches reduced                              */
} D;

static const double FIX = 4294967296.0;       /* 2^ST_DIST_FIXED_BITS */
static const double FIX_INV = 1.0 / 4294967296.0;
static const float GRAD_MAX = 8388608.0f;     /* 2^23 */

/* The chunks (of `chunk` samples) of B samples that this rank computes. */
static void my_chunks(int64_t B, int chunk, int64_t *c0, int64_t *c1)
{
    const int64_t k = (B + chunk - 1) / chunk;
    *c0 = k * g_rank / g_size;
    *c1 = k * (g_rank + 1) / g_size;
}

/* acc[i] += round(g[i] 2^32); returns 1 when a value is not finite or
 * beyond 2^23 (then acc is left partly updated: the batch is discarded). */
static int add_fixed(int64_t *restrict acc, const float *restrict g, int64_t n)
{
    int bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad)
    for (int64_t i = 0; i < n; i++) {
        const float x = g[i];
        if (!(fabsf(x) < GRAD_MAX)) {
            bad = 1;
            continue;
        }
        /* x 2^32 is exact in float (|x| < 2^23); lrintf rounds it to the
         * integer nearest, as llrint((double)x * 2^32) would, in one
         * instruction. */
        acc[i] += (int64_t)lrintf(x * 4294967296.0f);
    }
    return bad;
}

static int64_t fixed_of(double x, int *bad)
{
    if (!(fabs(x) < 1e9)) {
        *bad = 1;
        return 0;
    }
    return (int64_t)llrint(x * FIX);
}

static int dist_train_epoch(st_backend *be, int epoch, const int64_t *perm, int64_t n,
                            int64_t start, const volatile int *stop, int64_t *done,
                            double *loss_sum, int64_t *correct, char *err)
{
    const int bs = be->cfg->batch;
    const int64_t gn = D.gn;
    int64_t *acc = D.acc;
    int batch_index = (int)(start / bs);
    int64_t s = start;
    for (; s < n; s += bs, batch_index++) {
        const int B = (int)(n - s < bs ? n - s : bs);
        int64_t c0, c1;
        my_chunks(B, ST_DIST_CHUNK, &c0, &c1);
        memset(acc, 0, sizeof(int64_t) * (size_t)(gn + 4));
        int bad = 0;
        for (int64_t c = c0; c < c1 && !bad; c++) {
            const int lo = (int)(c * ST_DIST_CHUNK);
            const int hi = lo + ST_DIST_CHUNK < B ? lo + ST_DIST_CHUNK : B;
            double l = 0.0;
            int64_t k = 0;
            if (backend_cpu_batch_grad(be, epoch, batch_index, perm + s, B, lo, hi, D.g, &l, &k,
                                       err))
                st_die("rank %d: %s", g_rank, err); /* a bad range: a bug, abort all */
            bad |= add_fixed(acc, D.g, gn);
            acc[gn] += fixed_of(l, &bad);
            acc[gn + 1] += k;
        }
        acc[gn + 2] = *stop ? 1 : 0;
        acc[gn + 3] = bad;
        const double t0 = MPI_Wtime();
        if (MPI_Allreduce(MPI_IN_PLACE, acc, (int)(gn + 4), MPI_INT64_T, MPI_SUM,
                          MPI_COMM_WORLD) != MPI_SUCCESS)
            return st_fail(err, "the gradient reduction of batch %d of epoch %d failed",
                           batch_index, epoch);
        D.t_reduce += MPI_Wtime() - t0; /* includes waiting for the slowest rank */
        D.n_reduce++;
        if (acc[gn + 3]) {
            /* Diverged: no update; the NaN loss stops the run after the
             * epoch on every rank (train.c), before any checkpoint. */
            *loss_sum = NAN;
            *done = n;
            return 0;
        }
        float *g = D.g;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < gn; i++)
            g[i] = (float)((double)acc[i] * FIX_INV);
        backend_cpu_apply_grad(be, g);
        *loss_sum += (double)acc[gn] * FIX_INV;
        *correct += acc[gn + 1];
        if (acc[gn + 2]) {
            s += bs;
            break;
        }
    }
    *done = s < n ? s : n;
    return 0;
}

static int dist_evaluate(st_backend *be, int split, double *loss_sum, int64_t *correct,
                         char *err)
{
    const st_dataset *ds = be->data;
    const st_model *m = be->model;
    const int L = m->n_layers, K = m->sizes[L], ld = ST_DIST_EVAL_CHUNK;
    const float *x = split ? ds->x_test : ds->x_train;
    const int32_t *y = split ? ds->y_test : ds->y_train;
    const int64_t n = split ? ds->n_test : ds->n_train, d = ds->d;
    int64_t c0, c1;
    my_chunks(n, ST_DIST_EVAL_CHUNK, &c0, &c1);
    int64_t acc[3] = {0, 0, 0};
    int bad = 0;
    for (int64_t c = c0; c < c1; c++) {
        const int64_t lo = c * ST_DIST_EVAL_CHUNK;
        const int B = (int)(n - lo < ST_DIST_EVAL_CHUNK ? n - lo : ST_DIST_EVAL_CHUNK);
        float *a0 = D.ea[0];
#pragma omp parallel for schedule(static)
        for (int64_t f = 0; f < d; f++) {
            for (int b = 0; b < B; b++)
                a0[f * ld + b] = x[(lo + b) * d + f];
            for (int b = B; b < ld; b++)
                a0[f * ld + b] = 0.0f;
        }
        for (int l = 0; l < L; l++) {
            const int hid = l + 1 < L;
            cpu_layer_forward_act(&m->layers[l], D.ea[l], D.ez[l + 1], hid ? D.ea[l + 1] : NULL,
                                  be->cfg->activation, l + 1, NULL, NULL, ld);
        }
        double l = 0.0;
        int64_t k = 0;
        cpu_softmax_xent(D.ez[L], y + lo, K, B, ld, NULL, &l, &k);
        acc[0] += fixed_of(l, &bad);
        acc[1] += k;
    }
    acc[2] = bad;
    if (MPI_Allreduce(MPI_IN_PLACE, acc, 3, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
        return st_fail(err, "the reduction of the evaluation failed");
    *loss_sum += acc[2] ? NAN : (double)acc[0] * FIX_INV;
    *correct += acc[1];
    return 0;
}

int dist_check_model(const st_model *m, int epoch, char *err)
{
    const int L = m->n_layers;
    uint64_t *mine = st_malloc(sizeof(uint64_t) * 2 * (size_t)L, "layer hashes");
    uint64_t *all = st_malloc(sizeof(uint64_t) * 2 * (size_t)L * (size_t)g_size, "layer hashes");
    for (int l = 0; l < L; l++) {
        mine[2 * l] = dist_hash_topology(&m->layers[l]);
        mine[2 * l + 1] = dist_hash_values(&m->layers[l]);
    }
    MPI_Allgather(mine, 2 * L, MPI_UINT64_T, all, 2 * L, MPI_UINT64_T, MPI_COMM_WORLD);
    int rc = 0;
    for (int r = 1; r < g_size && !rc; r++)
        for (int l = 0; l < L && !rc; l++)
            for (int w = 0; w < 2 && !rc; w++) {
                const uint64_t h0 = all[2 * l + w], hr = all[(size_t)r * 2 * L + 2 * l + w];
                if (h0 != hr)
                    rc = st_fail(err, "after the evolution of epoch %d, layer %d's %s "
                                      "between rank 0 and rank %d (hash %016llx against "
                                      "%016llx): the ranks no longer train the same model",
                                 epoch, l + 1, w ? "weights differ" : "topology differs", r,
                                 (unsigned long long)h0, (unsigned long long)hr);
            }
    free(mine);
    free(all);
    return rc;
}

static int dist_evolve(st_backend *be, int epoch, st_evolve_stats *stats, char *err)
{
    if (D.orig->evolve(be, epoch, stats, err))
        return -1;
    const char *fault = getenv("SETTRAIN_DIST_FAULT");
    int fr = -1, fe = -1;
    if (fault && sscanf(fault, "%d:%d", &fr, &fe) == 2 && fr == g_rank && fe == epoch &&
        layer_nnz(&be->model->layers[0]) > 0)
        be->model->layers[0].w[0] += 1e-3f;
    return dist_check_model(be->model, epoch, err);
}

static void dist_describe(st_backend *be, char *buf, size_t n)
{
    D.orig->describe(be, buf, n);
    size_t len = strlen(buf);
    if (len + 64 >= n)
        return;
    snprintf(buf + len, n - len,
             ", \"mpi\": \"%s\", \"world_size\": %d, \"dist_chunk\": %d, "
             "\"reduce_bytes_per_batch\": %lld, \"batches_reduced\": %lld, "
             "\"reduce_s_total\": %.6f, %s",
             (dist_build_info(), g_libname), g_size, ST_DIST_CHUNK,
             (long long)dist_bytes_per_batch(be), (long long)D.n_reduce, D.t_reduce,
             g_hosts_json);
}

static void dist_destroy(st_backend *be)
{
    free(D.g);
    free(D.acc);
    for (int l = 0; l <= D.L; l++) {
        free(D.ea[l]);
        free(D.ez[l]);
    }
    free(D.ea);
    free(D.ez);
    const st_backend_ops *orig = D.orig;
    memset(&D, 0, sizeof D);
    orig->destroy(be);
}

int dist_wrap_backend(st_backend *be, char *err)
{
    if (!be || strcmp(be->ops->name, "cpu") != 0)
        return st_fail(err, "MPI runs use the CPU backend (give --backend cpu): the %s backend "
                            "has no gradient reduction", be ? be->ops->name : "(none)");
    if (D.orig)
        return st_fail(err, "dist_wrap_backend: a backend is already wrapped");
    const st_model *m = be->model;
    D.orig = be->ops;
    D.ops = *be->ops;
    D.ops.train_epoch = dist_train_epoch;
    D.ops.evaluate = dist_evaluate;
    D.ops.evolve = dist_evolve;
    D.ops.describe = dist_describe;
    D.ops.destroy = dist_destroy;
    D.gn = backend_cpu_grad_size(be);
    if (D.gn + 4 > INT32_MAX)
        return st_fail(err, "%lld gradient values exceed one MPI_Allreduce's count limit",
                       (long long)D.gn);
    D.g = st_malloc(sizeof(float) * (size_t)D.gn, "gradient buffer");
    D.acc = st_malloc(sizeof(int64_t) * (size_t)(D.gn + 4), "reduction buffer");
    D.L = m->n_layers;
    D.ea = st_calloc((size_t)D.L + 1, sizeof(float *), "evaluation buffers");
    D.ez = st_calloc((size_t)D.L + 1, sizeof(float *), "evaluation buffers");
    for (int l = 0; l <= D.L; l++) {
        const size_t sz = sizeof(float) * (size_t)m->sizes[l] * ST_DIST_EVAL_CHUNK;
        D.ea[l] = st_calloc(1, sz, "evaluation activations");
        if (l > 0)
            D.ez[l] = st_calloc(1, sz, "evaluation pre-activations");
    }
    be->ops = &D.ops;
#ifdef CPU_COUNT
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0 &&
        CPU_COUNT(&set) < omp_get_max_threads())
        omp_set_num_threads(CPU_COUNT(&set));
#endif
    return 0;
}

#endif /* ST_HAVE_MPI */
