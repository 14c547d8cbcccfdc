/* bench_cpu.c: CPU kernel benchmark (scripts/bench_cpu.sh builds and runs
 * it). For a network (784-3000-3000-3000-10 or 784-1000-1000-10, epsilon
 * 20) and motif sizes 1, 2, 4, 8 it times one training step of a batch
 * (forward with ReLU and dropout, softmax, backward delta, fused SDDMM and
 * update), SET evolution and a forward pass without dropout, interleaving
 * the motif sizes round by round and keeping each one's fastest round (the
 * least disturbed by other work on the machine). It also measures the
 * core's peak multiply-add rate with a loop of independent FMAs (512-bit
 * where the build has AVX-512, else 256-bit), and
 * prints the useful multiply-add rate (3 x connections x samples per
 * training step) as a fraction of it.
 *
 *   bench_cpu HIDDEN BATCH ROUNDS [MOTIF...]     e.g. bench_cpu 3000,3000,3000 128 5 1 2 4 8
 *
 * Output: CSV on stdout, one line per motif size:
 * motif,connections,step_s,epoch_train_s,evolve_s,eval_epoch_s,gfma_s,peak_gfma_s,peak_fraction,
 * forward_s,backward_s,sddmm_update_s (the step's phases; where a hidden layer's
 * backward delta and gradient run as one pass (m = 1), that pass is in backward_s)
 * (epoch_train_s: step_s x 60000 / BATCH; eval_epoch_s: the forward pass
 * over 70000 samples.) Threads: OMP_NUM_THREADS. Clock: BENCH_CLOCK=cpu (process CPU
 * time, the default; right for one thread on a shared machine) or wall.
 * BENCH_STEP_ONLY=1 times the training steps alone (no evaluation,
 * evolution or FMA loop; those columns are 0), for a profiler's view of a
 * step (scripts/bench_cpu_compare.sh's profile section). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/common.h"
#include "cpu/cpu_ops.h"
#include "model/model.h"

#define MAXM 8

/* Seconds of CPU time of this process (BENCH_CLOCK=cpu, the default: with
 * one thread, the time a core spent on it, whatever else runs beside it)
 * or of the wall clock (BENCH_CLOCK=wall). */
static int use_wall;
static double now(void)
{
    if (use_wall)
        return st_now();
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    st_model m;
    float **z, **a, **d, **mask, *gw, *gb;
    int32_t *y;
} net;

static float *falloc(int64_t n)
{
    float *p = st_malloc(sizeof(float) * (size_t)n, "bench buffer");
    for (int64_t i = 0; i < n; i++)
        p[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    return p;
}

static void net_init(net *n, const int32_t *sizes, int L, int motif, int ld, double eps)
{
    char err[512];
    memset(n, 0, sizeof *n);
    if (model_init(&n->m, sizes, L, motif, eps, 1, err)) {
        fprintf(stderr, "bench_cpu: error: %s\n", err);
        exit(1);
    }
    n->z = calloc((size_t)L + 1, sizeof(float *));
    n->a = calloc((size_t)L + 1, sizeof(float *));
    n->d = calloc((size_t)L + 1, sizeof(float *));
    n->mask = calloc((size_t)L + 1, sizeof(float *));
    int64_t maxnnz = 0, maxo = 0;
    for (int l = 0; l <= L; l++) {
        n->z[l] = falloc((int64_t)sizes[l] * ld);
        n->a[l] = falloc((int64_t)sizes[l] * ld);
        n->d[l] = falloc((int64_t)sizes[l] * ld);
        n->mask[l] = falloc((int64_t)sizes[l] * ld);
        if (l < L) {
            if (layer_nnz(&n->m.layers[l]) > maxnnz)
                maxnnz = layer_nnz(&n->m.layers[l]);
            if (sizes[l + 1] > maxo)
                maxo = sizes[l + 1];
        }
    }
    n->gw = falloc(maxnnz);
    n->gb = falloc(maxo);
    n->y = malloc(sizeof(int32_t) * (size_t)ld);
    for (int b = 0; b < ld; b++)
        n->y[b] = b % sizes[L];
}

/* Seconds in forward, backward delta, SDDMM + update (summed over steps). */
static double phase_t[3];

/* One training step on the batch in a[0] (what backend_cpu.c runs). */
static void step(net *n, int B, int ld, int it)
{
    const st_model *m = &n->m;
    const int L = m->n_layers;
    const cpu_dropout_spec dp = {1, 1, it, 0.3f, 0, B};
    double t0 = now();
    for (int l = 0; l < L; l++) {
        const int hid = l + 1 < L;
        cpu_layer_forward_act(&m->layers[l], n->a[l], n->z[l + 1], hid ? n->a[l + 1] : NULL,
                              ST_ACT_RELU, l + 1, hid ? &dp : NULL, hid ? n->mask[l + 1] : NULL,
                              ld);
    }
    double loss = 0;
    int64_t ok = 0;
    cpu_softmax_xent(n->z[L], n->y, m->sizes[L], B, ld, n->d[L], &loss, &ok);
    double t1 = now();
    phase_t[0] += t1 - t0;
    for (int l = L - 1; l >= 0; l--) {
        if (l > 0) { /* as the backend does: one pass where the layer allows (m = 1) */
            cpu_layer_backward_grad_update(&m->layers[l], n->d[l + 1], n->a[l], NULL, NULL,
                                           ST_ACT_RELU, l, cpu_dropout_keep(dp.rate), n->d[l],
                                           ld, 1e-6f, 0.9f, 2e-4f, n->gw, n->gb);
            const double t2 = now();
            phase_t[1] += t2 - t1; /* the fused pass counts as backward */
            t1 = t2;
            continue;
        }
        double t2 = now();
        phase_t[1] += t2 - t1;
        /* a tiny learning rate keeps the weights (and the timing) steady */
        cpu_layer_grad_update(&m->layers[l], n->a[l], n->d[l + 1], ld, 1e-6f, 0.9f, 2e-4f, n->gw,
                              n->gb);
        t1 = now();
        phase_t[2] += t1 - t2;
    }
}

static void eval_pass(net *n, int ld)
{
    cpu_model_forward(&n->m, ST_ACT_RELU, n->z, n->a, NULL, ld);
}

/* Peak multiply-adds per second of one thread: 12 independent chains of
 * FMAs of the widest vectors the build has (512-bit with AVX-512, else
 * 256-bit; enough chains to cover 2 pipes x 4-5 cycles of latency). */
#ifdef __AVX512F__
#define PEAK_LANES 16
#else
#define PEAK_LANES 8
#endif
typedef float vpk __attribute__((vector_size(4 * PEAK_LANES)));
static double fma_peak(void)
{
    vpk acc[12], x = {0}, y = {0};
    for (int i = 0; i < PEAK_LANES; i++) {
        x[i] = 1.0f + 1e-7f * (float)i;
        y[i] = 1e-8f;
    }
    for (int j = 0; j < 12; j++)
        acc[j] = x * (float)j;
    double best = 0;
    for (int rep = 0; rep < 30; rep++) { /* short repetitions: the best is undisturbed */
        const long iters = 150000;
        double t0 = now();
        for (long i = 0; i < iters; i++) {
            for (int j = 0; j < 12; j++)
                acc[j] = acc[j] * x + y;
            __asm__ volatile("" : "+v"(acc[0]), "+v"(acc[1]), "+v"(acc[2]), "+v"(acc[3]),
                             "+v"(acc[4]), "+v"(acc[5]));
            __asm__ volatile("" : "+v"(acc[6]), "+v"(acc[7]), "+v"(acc[8]), "+v"(acc[9]),
                             "+v"(acc[10]), "+v"(acc[11]));
        }
        double dt = now() - t0, rate = (double)iters * 12 * PEAK_LANES / dt;
        if (rate > best)
            best = rate;
    }
    float s = 0;
    for (int j = 0; j < 12; j++)
        s += acc[j][0];
    if (s == 12345.0f)
        printf("#\n");
    return best;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: bench_cpu HIDDEN BATCH ROUNDS [MOTIF...]\n");
        return 2;
    }
    use_wall = getenv("BENCH_CLOCK") && !strcmp(getenv("BENCH_CLOCK"), "wall");
    const int step_only = getenv("BENCH_STEP_ONLY") && !strcmp(getenv("BENCH_STEP_ONLY"), "1");
    cpu_ops_flush_denormals(); /* as the CPU backend does */
    int32_t sizes[8];
    int L = 0;
    sizes[L++] = 784;
    for (char *p = argv[1]; *p && L < 7;) {
        sizes[L++] = (int32_t)strtol(p, &p, 10);
        if (*p == ',')
            p++;
    }
    sizes[L] = 10;
    const int B = atoi(argv[2]), ld = (B + 7) / 8 * 8, rounds = atoi(argv[3]);
    int motifs[MAXM], nm = 0;
    for (int i = 4; i < argc && nm < MAXM; i++)
        motifs[nm++] = atoi(argv[i]);
    if (nm == 0)
        motifs[nm++] = 1;
    const double eps = getenv("BENCH_EPS") ? atof(getenv("BENCH_EPS")) : 20.0;
    static net nets[MAXM];
    for (int i = 0; i < nm; i++)
        net_init(&nets[i], sizes, L, motifs[i], ld, eps);
    double best_step[MAXM], best_evo[MAXM], best_eval[MAXM], best_ph[MAXM][3];
    for (int i = 0; i < nm; i++) {
        best_step[i] = best_evo[i] = best_eval[i] = 1e30;
        best_ph[i][0] = best_ph[i][1] = best_ph[i][2] = 0;
    }
    double peak = 0;
    const int steps = 20;
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < nm; i++) {
            net *n = &nets[i];
            step(n, B, ld, 0); /* warm the caches */
            phase_t[0] = phase_t[1] = phase_t[2] = 0;
            double t0 = now();
            for (int s = 0; s < steps; s++)
                step(n, B, ld, s);
            double t = (now() - t0) / steps;
            if (t < best_step[i]) {
                best_step[i] = t;
                for (int p = 0; p < 3; p++)
                    best_ph[i][p] = phase_t[p] / steps;
            }
            if (step_only) {
                best_eval[i] = best_evo[i] = 0;
                continue;
            }
            t0 = now();
            for (int s = 0; s < 5; s++)
                eval_pass(n, ld);
            t = (now() - t0) / 5;
            if (t < best_eval[i])
                best_eval[i] = t;
            st_evolve_stats st;
            char err[512];
            t0 = now();
            for (int l = 0; l < n->m.n_layers; l++)
                if (!n->m.layers[l].dense &&
                    layer_evolve(&n->m.layers[l], l + 1, 1, r, 0.3, &st, err)) {
                    fprintf(stderr, "bench_cpu: error: %s\n", err);
                    return 1;
                }
            t = now() - t0;
            if (t < best_evo[i])
                best_evo[i] = t;
            const double pk = fma_peak(); /* interleaved too: the best round */
            if (pk > peak)
                peak = pk;
        }
    printf("motif,connections,step_s,epoch_train_s,evolve_s,eval_epoch_s,gfma_s,peak_gfma_s,"
           "peak_fraction,forward_s,backward_s,sddmm_update_s\n");
    for (int i = 0; i < nm; i++) {
        const int64_t conn = model_connections(&nets[i].m);
        const double fma = 3.0 * (double)conn * B / best_step[i];
        /* step_only: no FMA loop ran, so no peak and no fraction of it */
        printf("%d,%lld,%.6f,%.4f,%.5f,%.4f,%.2f,%.2f,%.3f,%.6f,%.6f,%.6f\n", motifs[i],
               (long long)conn, best_step[i], best_step[i] * 60000.0 / B, best_evo[i],
               best_eval[i] * 70000.0 / B, fma / 1e9, peak / 1e9, peak > 0 ? fma / peak : 0.0,
               best_ph[i][0], best_ph[i][1], best_ph[i][2]);
    }
    return 0;
}
