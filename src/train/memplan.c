/* memplan.c: the memory a run needs and the memory available (memplan.h). */
#define _GNU_SOURCE
#include "train/memplan.h"

#include <math.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

#include "util/common.h"
#include "model/model.h"

const char *const st_mem_part_keys[ST_MEM_COUNT] = {
    "data", "model", "activations", "gradients", "evolution", "checkpoint", "process"};

const char *const st_mem_part_names[ST_MEM_COUNT] = {
    "data", "model (weights, momentum, indices)", "activations (batch x widest layers)",
    "gradients", "evolution scratch", "checkpoint writing", "the program (libraries, stacks)"};

/* This process's resident memory now (/proc/self/statm), 0 if unknown. */
static uint64_t resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, res = 0;
    int ok = f && fscanf(f, "%llu %llu", &size, &res) == 2;
    if (f)
        fclose(f);
    long pg = sysconf(_SC_PAGESIZE);
    return ok && pg > 0 ? (uint64_t)res * (uint64_t)pg : 0;
}

void st_memplan_compute(const int32_t *sizes, int n_layers, int motif, double epsilon,
                        double zeta, int batch, double dropout, int relu, int64_t n_train,
                        int64_t n_test, int64_t d, st_memplan *mp)
{
    double max_nb = 0, max_nbc = 0;
    memset(mp, 0, sizeof *mp);
    const double ld = (double)((batch + 7) / 8 * 8);
    double model = 0, act = 0, grad_max = 0, out_max = 0, evo_max = 0;
    for (int l = 0; l < n_layers; l++) {
        const double nin = sizes[l], nout = sizes[l + 1];
        const int bi = motif, bo = (l == n_layers - 1) ? 1 : motif;
        const double p = layer_er_probability(sizes[l], sizes[l + 1], epsilon);
        const double nbr = nout / bo, nbc = nin / bi;
        double nb, nnz;
        if (p >= 1.0) {
            nb = 0;
            nnz = nin * nout;
        } else {
            nb = p * nbr * nbc;
            nnz = nb * bi * bo;
        }
        mp->connections += (int64_t)llround(nnz);
        /* w, v; col_idx, t_blk, t_row; row_ptr, t_ptr; bias, vbias */
        model += 8 * nnz + 12 * nb + 4 * (nbr + nbc + 2) + 8 * nout;
        if (nnz > grad_max) grad_max = nnz;
        if (nout > out_max) out_max = nout;
        if (p < 1.0 && nb > max_nb) max_nb = nb;
        if (p < 1.0 && nbc > max_nbc) max_nbc = nbc;
    }
    for (int l = 0; l <= n_layers; l++) {
        double per = 4.0 * sizes[l] * ld;
        act += per;                              /* activations */
        if (l > 0) act += per;                   /* deltas */
        /* pre-activations and dropout masks: the output layer's z, and the
         * hidden layers' unless ReLU (backend_cpu.c keeps neither for it) */
        const int keep = l == n_layers || !relu;
        if (l > 0 && keep) act += per;
        if (l > 0 && l < n_layers && dropout > 0 && keep) act += per;
    }
    mp->part[ST_MEM_DATA] = (uint64_t)((double)(n_train + n_test) * (4.0 * (double)d + 4.0) +
                                       8.0 * (double)n_train);
    mp->part[ST_MEM_MODEL] = (uint64_t)model;
    mp->part[ST_MEM_ACTIVATIONS] = (uint64_t)act;
    mp->part[ST_MEM_GRADIENTS] = (uint64_t)(4 * grad_max + 4 * out_max);
    /* evolve.c's workspace for the largest sparse layer (allocated once) */
    evo_max = max_nb > 0 ? (double)evolve_ws_bytes((int64_t)(max_nb * 1.01) + 64,
                                                   (int64_t)max_nbc, zeta) : 0;
    mp->part[ST_MEM_EVOLUTION] = (uint64_t)evo_max;
    /* The checkpoint is written by HDF5 straight from the model's arrays
     * into its file (h5u_save_atomic): no image in memory, only HDF5's
     * metadata cache and buffers, about 1 MiB. */
    mp->part[ST_MEM_CHECKPOINT] = 1ull << 20;
    /* the program itself: libraries (HDF5, OpenMP; cuSPARSE and cuBLAS in a
     * CUDA build, whose loading alone takes about 180 MB), thread stacks,
     * heap slack: what this process holds now beyond the loaded data, at
     * least 16 MiB (a run of 784-16-10 peaks at 17 MB with its data) */
    uint64_t proc = 16ull << 20, rss = resident_bytes();
    if (rss > mp->part[ST_MEM_DATA] && rss - mp->part[ST_MEM_DATA] > proc)
        proc = rss - mp->part[ST_MEM_DATA];
    mp->part[ST_MEM_PROCESS] = proc;
    for (int i = 0; i < ST_MEM_COUNT; i++)
        mp->total += mp->part[i];
    mp->available = st_memory_available(&mp->available_from);
}

static uint64_t parse_size(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || !(v > 0))
        return 0;
    switch (*end) {
    case 'k': case 'K': v *= 1024.0; break;
    case 'm': case 'M': v *= 1024.0 * 1024; break;
    case 'g': case 'G': v *= 1024.0 * 1024 * 1024; break;
    case 't': case 'T': v *= 1024.0 * 1024 * 1024 * 1024; break;
    default: break;
    }
    return (uint64_t)v;
}

/* A number from the first line of a file ("max" or absent: 0). */
static uint64_t read_u64_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char buf[64] = "";
    uint64_t v = 0;
    if (fgets(buf, sizeof buf, f) && strncmp(buf, "max", 3))
        v = strtoull(buf, NULL, 10);
    fclose(f);
    return v;
}

/* The value of `key` (e.g. "anon ") in a key-value file such as memory.stat. */
static uint64_t read_key(const char *path, const char *key, uint64_t scale)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[256];
    uint64_t v = 0;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl)) {
            v = strtoull(line + kl, NULL, 10) * scale;
            break;
        }
    fclose(f);
    return v;
}

/* This process's cgroup (v2) folder under /sys/fs/cgroup, or "" */
static void cgroup_dir(char *buf, size_t n)
{
    buf[0] = '\0';
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f)
        return;
    char line[1024];
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "0::", 3)) {
            line[strcspn(line, "\n")] = '\0';
            snprintf(buf, n, "/sys/fs/cgroup%s", line + 3);
        }
    fclose(f);
}

uint64_t st_memory_available(const char **what)
{
    const char *env = getenv("SETTRAIN_MEMORY_LIMIT");
    if (env && *env) {
        *what = "SETTRAIN_MEMORY_LIMIT";
        return parse_size(env);
    }
    uint64_t best = 0;
    *what = "unknown";
#define TAKE(v, name) do { uint64_t v_ = (v); if (v_ && (!best || v_ < best)) { best = v_; *what = (name); } } while (0)
    TAKE(read_key("/proc/meminfo", "MemAvailable:", 1024), "MemAvailable");
    char cg[1100], p[1200];
    cgroup_dir(cg, sizeof cg);
    /* cgroup v2: walk up from this process's group; each level may limit. */
    const size_t root = strlen("/sys/fs/cgroup");
    while (strlen(cg) > root) {
        snprintf(p, sizeof p, "%s/memory.max", cg);
        uint64_t lim = read_u64_file(p);
        if (lim) {
            snprintf(p, sizeof p, "%s/memory.stat", cg);
            uint64_t used = read_key(p, "anon ", 1);
            TAKE(lim > used ? lim - used : 1, "the cgroup's memory.max");
        }
        char *slash = strrchr(cg, '/');
        if (!slash)
            break;
        *slash = '\0';
    }
    /* cgroup v1 */
    uint64_t v1 = read_u64_file("/sys/fs/cgroup/memory/memory.limit_in_bytes");
    if (v1 && v1 < (1ull << 60)) {
        uint64_t used = read_key("/sys/fs/cgroup/memory/memory.stat", "rss ", 1);
        TAKE(v1 > used ? v1 - used : 1, "the cgroup's memory.limit_in_bytes");
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        uint64_t vm = read_key("/proc/self/status", "VmSize:", 1024);
        TAKE(rl.rlim_cur > vm ? rl.rlim_cur - vm : 1, "RLIMIT_AS (ulimit -v)");
    }
    if (getrlimit(RLIMIT_DATA, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        uint64_t dm = read_key("/proc/self/status", "VmData:", 1024);
        TAKE(rl.rlim_cur > dm ? rl.rlim_cur - dm : 1, "RLIMIT_DATA (ulimit -d)");
    }
#undef TAKE
    return best;
}

void st_fmt_bytes(uint64_t b, char *buf, size_t n)
{
    const double x = (double)b;
    if (x >= 1024.0 * 1024 * 1024)
        snprintf(buf, n, "%.2f GiB", x / (1024.0 * 1024 * 1024));
    else if (x >= 1024.0 * 1024)
        snprintf(buf, n, "%.1f MiB", x / (1024.0 * 1024));
    else
        snprintf(buf, n, "%.1f KiB", x / 1024.0);
}

int st_memplan_check(const st_memplan *mp, uint64_t already, int batch, char *err)
{
    const char *what = mp->available_from;
    const uint64_t avail = mp->available;
    if (!avail)
        return 0;
    uint64_t need = mp->total > already ? mp->total - already : 0;
    if (need <= avail)
        return 0;
    int big = 0;
    for (int i = 1; i < ST_MEM_COUNT; i++)
        if (mp->part[i] > mp->part[big])
            big = i;
    char t[32], a[32], b[32];
    st_fmt_bytes(mp->total, t, sizeof t);
    st_fmt_bytes(avail + already, a, sizeof a);
    st_fmt_bytes(mp->part[big], b, sizeof b);
    const char *advice =
        big == ST_MEM_ACTIVATIONS ? "lower --batch or the hidden sizes"
        : big == ST_MEM_DATA      ? "use --train-limit or a smaller data file"
                                  : "lower the hidden sizes or --epsilon";
    if (big == ST_MEM_ACTIVATIONS && batch > 1) {
        char hint[64];
        uint64_t per = mp->part[big] / (uint64_t)batch;
        uint64_t room = avail + already > mp->total - mp->part[big]
                            ? avail + already - (mp->total - mp->part[big]) : 0;
        long fit = per ? (long)(room / per) : 0;
        snprintf(hint, sizeof hint, " (at most about --batch %ld fits)", fit > 0 ? fit : 0);
        return st_fail(err, "the run needs about %s of memory but %s are available (%s); the "
                            "biggest part is %s at %s: %s%s", t, a, what, st_mem_part_names[big],
                       b, advice, fit > 0 ? hint : "");
    }
    return st_fail(err, "the run needs about %s of memory but %s are available (%s); the "
                        "biggest part is %s at %s: %s", t, a, what, st_mem_part_names[big], b,
                   advice);
}
