/* train.c: the host side of a run (train_run): loads the data (src/data/),
 * plans the memory (src/train/memplan.c), builds the model (src/model/),
 * standardises the data (src/data/standardize.c), picks the backend
 * (include/backend.h), claims the run folder (src/train/rundir.c), owns the
 * epoch loop (shuffle, train, evaluate, evolve, check the connection
 * invariant, checkpoint) and writes results/runs/<name>/metrics.csv (flushed
 * every epoch) and run.json.
 *
 * Epoch order: train over the shuffled training set, evaluate on the test
 * set, then (except after the last epoch) evolve the sparse layers. train_loss
 * and train_acc are the means over the epoch's mini-batches as trained (with
 * dropout), as Keras reports them. */
#define _GNU_SOURCE
#include "train/train.h"

#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <omp.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef ST_HAVE_CUDA
#include <nvtx3/nvToolsExt.h>
#endif

#include "backend.h"
#include "train/checkpoint.h"
#include "dist/dist.h"
#include "util/common.h"
#include "train/memplan.h"
#include "util/outfile.h"
#include "util/philox.h"
#include "train/rundir.h"

void train_shuffle(uint64_t seed, int epoch, int64_t n, int64_t *perm)
{
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        st_u32x4 u = st_rand(seed, ST_STREAM_SHUFFLE, 0, (uint32_t)i, (uint32_t)((uint64_t)i >> 32),
                             (uint32_t)epoch);
        int64_t j = (int64_t)st_below(u.v[0], u.v[1], (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

/* Write s as a JSON string literal. */
static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

/* A number, or null where it is not finite (JSON has no NaN). */
static void json_num(FILE *f, double x)
{
    if (isfinite(x))
        fprintf(f, "%.6f", x);
    else
        fprintf(f, "null");
}

/* Features in the data file (the model's input may be padded beyond them). */
static int64_t g_d_data;

/* What run.json says besides the model and the run state. */
typedef struct {
    const char *status;   /* running, finished, interrupted, diverged, failed */
    const char *error;    /* the message of a failed or diverged run, or NULL */
    const st_memplan *mem;
} run_json_extra;

/* Write run.json atomically (temporary file, fsync, rename). */
static int write_run_json(const char *dir, const st_config *c, const st_model *m,
                          const st_dataset *ds, st_backend *be, const st_run_state *rs,
                          const run_json_extra *x, double mean_epoch_s, char *err)
{
    if (!dist_is_root())
        return 0; /* rank 0 alone writes the run's files */
    char path[4200];
    snprintf(path, sizeof path, "%s/run.json", dir);
    st_outfile o;
    if (st_outfile_open(&o, path, err))
        return -1;
    FILE *f = o.f;
    fprintf(f, "{\n  \"settrain_version\": \"%s\",\n  \"git_commit\": \"%s\",\n", ST_VERSION,
            ST_GIT_COMMIT);
    fprintf(f, "  \"run_id\": \"%s\",\n", rs->run_id);
    fprintf(f, "  \"status\": \"%s\",\n", x->status);
    if (x->error) {
        fprintf(f, "  \"error\": ");
        json_str(f, x->error);
        fprintf(f, ",\n");
    }
    fprintf(f, "  \"started\": \"%s\",\n", rs->started);
    fprintf(f, "  \"config\": {\n    \"data\": ");
    json_str(f, c->data);
    fprintf(f, ",\n    \"dataset_name\": ");
    json_str(f, ds->name);
    fprintf(f, ",\n    \"hidden\": [");
    for (int i = 0; i < c->n_hidden; i++)
        fprintf(f, "%s%d", i ? ", " : "", c->hidden[i]);
    fprintf(f, "],\n    \"motif\": %d,\n    \"epsilon\": %.17g,\n    \"zeta\": %.17g,\n"
               "    \"epochs\": %d,\n    \"batch\": %d,\n    \"lr\": %.17g,\n"
               "    \"momentum\": %.17g,\n    \"weight_decay\": %.17g,\n    \"dropout\": %.17g,\n"
               "    \"activation\": \"%s\",\n    \"init\": \"%s\",\n    \"pad_input\": %s,\n"
               "    \"seed\": %llu,\n    \"train_limit\": %lld,\n"
               "    \"standardize\": %s,\n    \"checkpoint_every\": %d,\n"
               "    \"threads\": %d\n  },\n",
            c->motif, c->epsilon, c->zeta, c->epochs, c->batch, c->lr, c->momentum,
            c->weight_decay, c->dropout, st_activation_names[c->activation],
            st_init_names[c->init], c->pad_input ? "true" : "false", (unsigned long long)c->seed, (long long)c->train_limit,
            c->standardize ? "true" : "false", c->checkpoint_every, omp_get_max_threads());
    fprintf(f, "  \"backend\": \"%s\",\n  \"device\": {", be ? be->ops->name : "none");
    char desc[2048] = "";
    if (be)
        be->ops->describe(be, desc, sizeof desc);
    fprintf(f, "%s},\n", desc);
    fprintf(f, "  \"data\": {\"n_train\": %lld, \"n_test\": %lld, \"n_features\": %lld, "
               "\"n_inputs\": %lld, \"n_classes\": %d, \"fingerprint\": \"%016llx\"},\n",
            (long long)ds->n_train, (long long)ds->n_test, (long long)g_d_data, (long long)ds->d, ds->k,
            (unsigned long long)rs->data_fp.hash);
    if (x->mem) {
        fprintf(f, "  \"memory_estimate_bytes\": {");
        for (int i = 0; i < ST_MEM_COUNT; i++)
            fprintf(f, "\"%s\": %llu, ", st_mem_part_keys[i], (unsigned long long)x->mem->part[i]);
        fprintf(f, "\"total\": %llu},\n", (unsigned long long)x->mem->total);
    }
    /* This process's peak resident memory so far (a resumed run: since the
     * resume), beside the estimate above. */
    struct rusage ru;
    if (!getrusage(RUSAGE_SELF, &ru))
        fprintf(f, "  \"peak_rss_bytes\": %llu,\n", (unsigned long long)ru.ru_maxrss * 1024ull);
    fprintf(f, "  \"layers\": [\n");
    for (int l = 0; m->layers && l < m->n_layers; l++) {
        const st_layer *L = &m->layers[l];
        fprintf(f, "    {\"layer\": %d, \"n_in\": %d, \"n_out\": %d, \"block_in\": %d, "
                   "\"block_out\": %d, \"p\": %.17g, \"dense\": %s, \"blocks\": %lld, "
                   "\"connections\": %lld}%s\n",
                l + 1, L->n_in, L->n_out, L->bi, L->bo, L->p, L->dense ? "true" : "false",
                (long long)(L->dense ? (int64_t)L->nbr * L->nbc : L->nb),
                (long long)layer_nnz(L), l + 1 < m->n_layers ? "," : "");
    }
    fprintf(f, "  ],\n  \"connections\": %lld,\n", (long long)(m->layers ? model_connections(m) : 0));
    fprintf(f, "  \"epochs_done\": %d,\n  \"evolutions_checked\": %lld,\n", rs->epochs_done,
            (long long)rs->evolutions_checked);
    fprintf(f, "  \"total_wall_s\": ");
    json_num(f, rs->wall_s);
    fprintf(f, ",\n  \"checkpoint_s_total\": ");
    json_num(f, rs->ckpt_s);
    fprintf(f, ",\n  \"checkpoint_s_last\": ");
    json_num(f, rs->ckpt_last_s);
    fprintf(f, ",\n  \"mean_epoch_s_excluding_first\": ");
    json_num(f, mean_epoch_s);
    fprintf(f, ",\n  \"final_test_acc\": ");
    json_num(f, rs->final_acc);
    fprintf(f, ",\n  \"best_test_acc\": ");
    json_num(f, rs->best_acc);
    fprintf(f, ",\n  \"best_epoch\": %d\n}\n", rs->best_epoch);
    return st_outfile_commit(&o, 1, err);
}

static void fmt_duration(double s, char *buf, size_t n)
{
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60)
        snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(buf, n, "%.1fs", s);
}

static void print_settings(const st_config *c, const st_model *m, const st_dataset *ds,
                           int64_t n_train, const char *dir, st_backend *be,
                           const st_memplan *mp)
{
    char desc[2048];
    be->ops->describe(be, desc, sizeof desc);
    printf("+----------------------+------------------------------------------------------\n");
#define ROW(k, ...) do { printf("| %-20s | ", k); printf(__VA_ARGS__); printf("\n"); } while (0)
    ROW("data", "%s (%s)", c->data, ds->name);
    ROW("samples", "%lld train%s, %lld test, %lld features, %d classes", (long long)n_train,
        c->train_limit ? " (--train-limit)" : "", (long long)ds->n_test, (long long)ds->d, ds->k);
    char net[1024];
    int o = snprintf(net, sizeof net, "%d", m->sizes[0]);
    for (int l = 1; l <= m->n_layers && o < (int)sizeof net; l++)
        o += snprintf(net + o, sizeof net - (size_t)o, "-%d", m->sizes[l]);
    ROW("network", "%s", net);
    ROW("motif", "%d", c->motif);
    ROW("epsilon / zeta", "%g / %g", c->epsilon, c->zeta);
    for (int l = 0; l < m->n_layers; l++) {
        const st_layer *L = &m->layers[l];
        char k[32];
        snprintf(k, sizeof k, "layer %d", l + 1);
        ROW(k, "%d x %d, block %dx%d, p %.5f, %s, %lld connections", L->n_in, L->n_out, L->bi,
            L->bo, L->p, L->dense ? "dense" : "sparse", (long long)layer_nnz(L));
    }
    ROW("connections", "%lld", (long long)model_connections(m));
    ROW("epochs / batch", "%d / %d", c->epochs, c->batch);
    ROW("lr / momentum / wd", "%g / %g / %g", c->lr, c->momentum, c->weight_decay);
    ROW("dropout / activation", "%g / %s", c->dropout, st_activation_names[c->activation]);
    ROW("init", "%s", c->init == ST_INIT_HE ? "he (sqrt(6 / n_in), the dense fan-in)"
                                            : "he-sparse (sqrt(6 / k), k a neuron's present inputs)");
    if (c->pad_input)
        ROW("input padding", "%lld data features + %lld zero features (--pad-input)",
            (long long)g_d_data, (long long)(m->sizes[0] - g_d_data));
    ROW("standardize", "%s", c->standardize ? "yes (training-set mean and std)" : "no");
    ROW("seed", "%llu", (unsigned long long)c->seed);
    ROW("backend", "%s: %s", be->ops->name, desc);
    {
        char tot[32], big[32], av[32];
        int bi = 0;
        for (int i = 1; i < ST_MEM_COUNT; i++)
            if (mp->part[i] > mp->part[bi])
                bi = i;
        st_fmt_bytes(mp->total, tot, sizeof tot);
        st_fmt_bytes(mp->part[bi], big, sizeof big);
        const char *what = mp->available_from;
        uint64_t a = mp->available;
        st_fmt_bytes(a, av, sizeof av);
        ROW("host memory", "about %s (largest: %s %s); %s available (%s)", tot,
            st_mem_part_names[bi], big, a ? av : "?", what);
    }
    ROW("run folder", "%s", dir);
#undef ROW
    printf("+----------------------+------------------------------------------------------\n");
    fflush(stdout);
}

/* Stop signals (SIGTERM, SIGINT, SIGUSR1, SIGHUP). While the run is being
 * set up (checkpoint and data loading, before the run folder is claimed or
 * its files are touched) there is nothing to save: the process ends at once
 * with exit status 3. Once the run has started, a signal sets g_stop: the
 * current batch finishes, the checkpoint is written, exit 3. */
static volatile int g_stop; /* the backends poll it after each batch */
static volatile sig_atomic_t g_signal;
static volatile sig_atomic_t g_started;

static void on_stop_signal(int sig)
{
    g_stop = 1;
    g_signal = sig;
    if (!g_started) {
        static const char msg[] = "settrain: stopped by a signal while setting up the run; "
                                  "nothing was written\n";
        ssize_t w = write(2, msg, sizeof msg - 1);
        (void)w;
        _exit(ST_EXIT_INTERRUPTED);
    }
}

static void install_stop_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    const int sigs[4] = {SIGTERM, SIGINT, SIGUSR1, SIGHUP};
    for (int i = 0; i < 4; i++)
        sigaction(sigs[i], &sa, NULL);
}

#define METRICS_HEADER "epoch,train_loss,train_acc,test_loss,test_acc,t_train_s,t_evolve_s," \
                       "t_eval_s,t_epoch_s,connections,run_id\n"

/* Keep the header and the rows of epochs 1..epochs_done of metrics.csv
 * (rows of an epoch that a killed run wrote after its last checkpoint are
 * dropped: the resumed run writes them again, identically). A file from
 * before run ids gets the run_id column. Atomic. */
static int metrics_truncate(const char *path, int epochs_done, const char *run_id, char *err)
{
    if (st_check_regular_input(path, err)) /* a FIFO would block fopen */
        return -1;
    FILE *in = fopen(path, "r");
    if (!in)
        return st_fail(err, "%s: cannot read: %s", path, strerror(errno));
    st_outfile o;
    if (st_outfile_open(&o, path, err)) {
        fclose(in);
        return -1;
    }
    char line[4096];
    int row = 0, want = 1, legacy = 0;
    while (fgets(line, sizeof line, in)) {
        if (row++ == 0) {
            legacy = !strstr(line, ",run_id");
            fputs(METRICS_HEADER, o.f);
        } else if (want <= epochs_done && atoi(line) == want) {
            if (legacy) {
                line[strcspn(line, "\n")] = '\0';
                fprintf(o.f, "%s,%s\n", line, run_id);
            } else {
                fputs(line, o.f);
            }
            want++;
        }
    }
    fclose(in);
    if (want != epochs_done + 1) {
        st_outfile_abort(&o);
        return st_fail(err, "%s: holds rows for %d epochs, the checkpoint %d", path, want - 1,
                       epochs_done);
    }
    return st_outfile_commit(&o, 1, err);
}

static double mean_epoch(const st_run_state *rs)
{
    if (rs->epochs_done > 1)
        return rs->sum_epoch_after_first / (rs->epochs_done - 1);
    return rs->epochs_done == 1 ? rs->first_epoch_s : NAN;
}

/* The first non-finite weight, momentum or bias of the model: 0 none, else
 * 1 + the layer index in *layer. */
static int model_nonfinite(const st_model *m, int *layer)
{
    for (int l = 0; l < m->n_layers; l++) {
        const st_layer *L = &m->layers[l];
        const int64_t nnz = layer_nnz(L);
        int bad = 0;
        for (int64_t i = 0; i < nnz; i++)
            bad |= !isfinite(L->w[i]) | !isfinite(L->v[i]);
        for (int32_t i = 0; i < L->n_out; i++)
            bad |= !isfinite(L->bias[i]) | !isfinite(L->vbias[i]);
        if (bad) {
            *layer = l + 1;
            return 1;
        }
    }
    return 0;
}

/* The state that the fatal-error hook and the checkpoint writer need. */
static struct {
    const char *dir;
    const st_config *cfg;
    const st_model *model;
    const st_dataset *ds;
    st_backend *be;
    st_run_state *rs;
    const st_memplan *mem;
    double t_start, wall_before;
    int have_checkpoint; /* dir/checkpoint.h5 exists (written by this run or resumed) */
} g_run;

/* st_die's hook once the run folder exists: run.json says "failed" and why. */
static void mark_failed(const char *msg)
{
    char err[ST_ERRLEN];
    if (!g_run.dir)
        return;
    g_run.rs->wall_s = g_run.wall_before + (st_now() - g_run.t_start);
    run_json_extra x = {"failed", msg, g_run.mem};
    /* Best effort: where the disk is full, run.json cannot say it either
     * (the error line already printed is the one that counts). */
    write_run_json(g_run.dir, g_run.cfg, g_run.model, g_run.ds, g_run.be, g_run.rs, &x,
                   mean_epoch(g_run.rs), err);
}

/* What a diverged run leaves behind, for its error message. */
static const char *last_state_note(void)
{
    return g_run.have_checkpoint ? "checkpoint.h5 keeps the last finite state"
                                 : "no checkpoint had been written";
}

/* Write the checkpoint (an NVTX range "checkpoint" on the timeline of a
 * CUDA build, beside the GPU backend's ranges). A model holding a
 * non-finite value is never written: the last finite checkpoint stays. */
static void save_checkpoint(st_backend *be, const char *dir, const st_config *cfg,
                            const st_model *m, st_run_state *rs)
{
    char err[ST_ERRLEN];
    if (!dist_is_root())
        return;
#ifdef ST_HAVE_CUDA
    nvtxRangePushA("checkpoint");
#endif
    const double t0 = st_now();
    int rc = be->ops->sync_model(be, err);
    int layer = 0;
    if (!rc && model_nonfinite(m, &layer))
        st_die("training diverged by epoch %d: layer %d holds a NaN or infinite weight, "
               "momentum or bias (lower --lr); %s", rs->epochs_done + 1, layer,
               last_state_note());
    rc = rc || checkpoint_save(dir, cfg, m, rs, err);
#ifdef ST_HAVE_CUDA
    nvtxRangePop();
#endif
    if (rc)
        st_die("%s", err);
    g_run.have_checkpoint = 1;
    /* The time goes into the next checkpoint and run.json (the file just
     * written holds the total before it). */
    rs->ckpt_last_s = st_now() - t0;
    rs->ckpt_s += rs->ckpt_last_s;
}

/* Remove the temporary files that a run killed while writing left behind
 * (its complete files were never touched: they are replaced by rename).
 * Called with the run's lock held, so no live process owns them. */
static void remove_stale_temporaries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char path[4400];
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, "checkpoint.h5.tmp.", 18) ||
            !strncmp(e->d_name, "metrics.csv.tmp", 15) || !strncmp(e->d_name, "run.json.tmp.", 13) ||
            !strcmp(e->d_name, ".run.json.tmp")) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    closedir(d);
}

/* The run id recorded in dir/name must be the checkpoint's. */
static void check_run_id(const char *dir, const char *name, const char *want)
{
    char path[4400], id[ST_RUN_ID_LEN + 1] = "", err[ST_ERRLEN];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int r = st_run_id_of_file(path, id, err);
    if (r < 0)
        st_die("%s", err);
    if (r == 0 && !want[0])
        return; /* a run from before run ids: nothing to compare */
    if (r == 0 && access(path, F_OK) != 0)
        return;
    if (r == 0 || strcmp(id, want))
        st_die("--resume %s: checkpoint.h5 belongs to run %s but %s belongs to %s; the "
               "checkpoint was copied from another run folder: resume it in its own folder",
               dir, want[0] ? want : "(no id)", name, r ? id : "a run without an id");
}

/* Resume: lock the folder, then load its checkpoint and check that the
 * folder's files belong to the same run. */
static void open_resumed(st_config *cfg, st_model *model, st_run_state *rs, char *dir,
                         size_t n, int *lock_fd)
{
    char err[ST_ERRLEN], path[4200];
    memset(rs, 0, sizeof *rs);
    snprintf(dir, n, "%s", cfg->resume);
    snprintf(path, sizeof path, "%s/checkpoint.h5", dir);
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        st_die("--resume %s: not a run folder (%s)", dir,
               errno && stat(dir, &sb) != 0 ? strerror(errno) : "not a directory");
    if (access(path, F_OK) != 0)
        st_die("--resume %s: no checkpoint.h5 in that folder", dir);
    if (dist_is_root() && st_run_lock(dir, lock_fd, err))
        st_die("%s", err);
    if (dist_is_root())
        remove_stale_temporaries(dir);
    st_config saved;
    if (checkpoint_load(path, &saved, model, rs, err))
        st_die("%s", err);
    check_run_id(dir, "run.json", rs->run_id);
    check_run_id(dir, "metrics.csv", rs->run_id);
    if (!rs->run_id[0])
        st_run_id_new(rs->run_id); /* a run from before run ids gets one now */
    /* The checkpoint defines the run; only how it runs may change, and where
     * its data file is (checked against the fingerprint). */
    saved.threads = cfg->threads;
    saved.backend = cfg->backend;
    saved.quiet = cfg->quiet;
    saved.allow_data_change = cfg->allow_data_change;
    if (cfg->data[0])
        snprintf(saved.data, sizeof saved.data, "%s", cfg->data);
    if (cfg->checkpoint_every)
        saved.checkpoint_every = cfg->checkpoint_every;
    snprintf(saved.resume, sizeof saved.resume, "%s", cfg->resume);
    snprintf(saved.out, sizeof saved.out, "%s", dir);
    *cfg = saved;
}

/* A new run: claim its folder (refusing one that holds a run). */
static void open_new(st_config *cfg, st_run_state *rs, char *dir, size_t n,
                     const char *dataset_name, int *lock_fd)
{
    char err[ST_ERRLEN];
    if (cfg->out[0]) {
        snprintf(dir, n, "%s", cfg->out);
    } else {
        char stamp[32];
        time_t now = time(NULL);
        strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", localtime(&now));
        snprintf(dir, n, "results/runs/%s_m%d_s%llu_%s", dataset_name, cfg->motif,
                 (unsigned long long)cfg->seed, stamp);
    }
    if (dist_is_root() && st_run_claim(dir, lock_fd, err))
        st_die("%s", err);
    rs->best_acc = rs->final_acc = NAN;
    time_t now = time(NULL);
    strftime(rs->started, sizeof rs->started, "%Y-%m-%dT%H:%M:%S%z", localtime(&now));
}

/* The data path as stored in the checkpoint: absolute, so that a resume
 * from another working directory finds it. */
static void absolute_data_path(st_config *cfg)
{
    char real[PATH_MAX];
    if (cfg->data[0] != '/' && realpath(cfg->data, real) && strlen(real) < sizeof cfg->data)
        strcpy(cfg->data, real);
}

int train_run(const st_config *cfg_in)
{
    st_config cfg = *cfg_in;
    char err[ST_ERRLEN];
    double t_start = st_now();
    st_model model;
    memset(&model, 0, sizeof model);
    st_run_state rs;
    memset(&rs, 0, sizeof rs);
    char dir[4096];
    int lock_fd = -1;
    int resumed = cfg.resume[0] != 0;
    /* From the start: a stop signal while the checkpoint or the data loads
     * ends the process at once (exit 3: nothing to save yet). */
    g_started = 0;
    if (dist_init(err)) /* MPI, when started by mpirun or srun */
        st_die("%s", err);
    install_stop_handlers();

    /* A resumed run takes its data path and settings from the checkpoint. */
    if (resumed)
        open_resumed(&cfg, &model, &rs, dir, sizeof dir, &lock_fd);
    if (cfg.threads > 0)
        omp_set_num_threads(cfg.threads);
    cfg.threads = omp_get_max_threads();

    st_dataset ds;
    if (dataset_load_h5(cfg.data, &ds, err)) {
        if (resumed)
            st_die("%s (the data file recorded in %s/checkpoint.h5; give --data PATH with "
                   "--resume if it moved)", err, dir);
        st_die("%s", err);
    }
    st_data_fingerprint fp;
    st_data_fingerprint_of(&ds, &fp);
    if (resumed && rs.has_fingerprint && !cfg.allow_data_change &&
        (fp.n_train != rs.data_fp.n_train || fp.n_test != rs.data_fp.n_test ||
         fp.d != rs.data_fp.d || fp.k != rs.data_fp.k || fp.hash != rs.data_fp.hash))
        st_die("%s: the data differs from what the run started on (now %lld train, %lld test, "
               "%lld features, %d classes, fingerprint %016llx; then %lld, %lld, %lld, %d, "
               "%016llx); resume with the original file, or add --allow-data-change",
               cfg.data, (long long)fp.n_train, (long long)fp.n_test, (long long)fp.d, fp.k,
               (unsigned long long)fp.hash, (long long)rs.data_fp.n_train,
               (long long)rs.data_fp.n_test, (long long)rs.data_fp.d, rs.data_fp.k,
               (unsigned long long)rs.data_fp.hash);
    if (!resumed || !rs.has_fingerprint || cfg.allow_data_change) {
        rs.data_fp = fp;
        rs.has_fingerprint = 1;
    }
    if (!resumed)
        absolute_data_path(&cfg);
    g_d_data = ds.d; /* features in the file; the model may pad them */
    if (cfg.pad_input)
        data_pad_features(&ds, data_padded_width(ds.d, cfg.motif));
    int64_t n_train = ds.n_train;
    if (cfg.train_limit) {
        if (cfg.train_limit > ds.n_train)
            st_die("--train-limit %lld exceeds the %lld training samples in %s",
                   (long long)cfg.train_limit, (long long)ds.n_train, cfg.data);
        n_train = cfg.train_limit;
        ds.n_train = n_train; /* the trainer sees only the first N samples */
    }
    if (ds.d > INT32_MAX)
        st_die("%s: %lld features is more than this build supports", cfg.data, (long long)ds.d);

    /* The memory the run needs, before anything large is allocated. */
    st_memplan mem;
    {
        int32_t sizes[ST_MAX_HIDDEN + 2];
        int nl = resumed ? model.n_layers : cfg.n_hidden + 1;
        if (resumed) {
            memcpy(sizes, model.sizes, sizeof(int32_t) * (size_t)(nl + 1));
        } else {
            sizes[0] = ds.d > INT32_MAX ? INT32_MAX : (int32_t)ds.d;
            for (int i = 0; i < cfg.n_hidden; i++)
                sizes[i + 1] = cfg.hidden[i];
            sizes[nl] = ds.k;
        }
        st_memplan_compute(sizes, nl, cfg.motif, cfg.epsilon, cfg.zeta, cfg.batch, cfg.dropout,
                           cfg.activation == ST_ACT_RELU, n_train, ds.n_test, ds.d, &mem);
        uint64_t held = mem.part[ST_MEM_DATA] + (resumed ? mem.part[ST_MEM_MODEL] : 0);
        if (cfg.backend != ST_BACKEND_GPU && st_memplan_check(&mem, held, cfg.batch, err))
            st_die("%s", err);
        if (cfg.backend != ST_BACKEND_GPU &&
            evolve_check_sizes(sizes, nl, cfg.motif, cfg.epsilon, cfg.zeta, err))
            st_die("%s", err);
    }

    if (resumed) {
        if (model.sizes[0] != ds.d || model.sizes[model.n_layers] != ds.k)
            st_die("%s: the data has %lld features and %d classes but the checkpoint's network "
                   "is %d-...-%d", cfg.data, (long long)ds.d, ds.k, model.sizes[0],
                   model.sizes[model.n_layers]);
    } else {
        int32_t sizes[ST_MAX_HIDDEN + 2];
        sizes[0] = (int32_t)ds.d;
        for (int i = 0; i < cfg.n_hidden; i++)
            sizes[i + 1] = cfg.hidden[i];
        sizes[cfg.n_hidden + 1] = ds.k;
        if (model_init_ex(&model, sizes, cfg.n_hidden + 1, cfg.motif, cfg.epsilon, cfg.seed,
                          cfg.init, err)) {
            if (!cfg.pad_input && ds.d % cfg.motif != 0)
                st_die("%s; or add --pad-input to pad the input with zero features up to %lld",
                       err, (long long)data_padded_width(ds.d, cfg.motif));
            st_die("%s", err);
        }
        model.feat_mean = st_malloc(sizeof(float) * (size_t)ds.d, "feature means");
        model.feat_std = st_malloc(sizeof(float) * (size_t)ds.d, "feature deviations");
        if (cfg.standardize) {
            data_feature_stats(ds.x_train, n_train, ds.d, model.feat_mean, model.feat_std);
        } else {
            for (int64_t f = 0; f < ds.d; f++) {
                model.feat_mean[f] = 0.0f;
                model.feat_std[f] = 1.0f;
            }
        }
    }
    if (cfg.standardize) {
        data_standardize(ds.x_train, n_train, ds.d, model.feat_mean, model.feat_std);
        data_standardize(ds.x_test, ds.n_test, ds.d, model.feat_mean, model.feat_std);
    }

    /* Backend. */
    st_backend *be = NULL;
    if (cfg.init != ST_INIT_HE && cfg.backend == ST_BACKEND_GPU)
        st_die("--init %s: the GPU backend regrows weights at the dense fan-in scale only; "
               "use --backend cpu", st_init_names[cfg.init]);
    if (cfg.init != ST_INIT_HE && cfg.backend == ST_BACKEND_AUTO) {
        printf("settrain: --init %s runs on the CPU backend\n", st_init_names[cfg.init]);
        cfg.backend = ST_BACKEND_CPU;
    }
    if (cfg.backend == ST_BACKEND_GPU) {
#ifdef ST_HAVE_CUDA
        be = backend_gpu_create(&model, &ds, &cfg, err);
        if (!be)
            st_die("%s", err);
#else
        st_die("--backend gpu: this build has no GPU backend (built without CUDA); "
               "use --backend cpu or rebuild with nvcc available");
#endif
    } else if (cfg.backend == ST_BACKEND_AUTO) {
#ifdef ST_HAVE_CUDA
        int ndev = backend_gpu_device_count();
        if (ndev > 0)
            be = backend_gpu_create(&model, &ds, &cfg, err);
        if (!be)
            printf("settrain: %s; using the CPU backend\n", ndev > 0 ? err : "no usable CUDA device");
#else
        printf("settrain: built without CUDA; using the CPU backend\n");
#endif
    }
    if (!be && !(be = backend_cpu_create(&model, &ds, &cfg, err)))
        st_die("%s", err);
    if (dist_active() && dist_wrap_backend(be, err))
        st_die("%s", err);

    /* From here on a stop signal is saved: the run folder is about to be
     * claimed (new run) or its files rewritten (resumed run). */
    g_started = 1;
    if (!resumed) {
        open_new(&cfg, &rs, dir, sizeof dir, ds.name, &lock_fd);
        st_run_id_new(rs.run_id);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/metrics.csv", dir);
    FILE *csv;
    if (!dist_is_root()) {
        csv = fopen("/dev/null", "w"); /* rank 0 alone writes metrics.csv */
    } else if (resumed) {
        if (metrics_truncate(path, rs.epochs_done, rs.run_id, err))
            st_die("%s", err);
        csv = fopen(path, "a");
    } else {
        csv = fopen(path, "w");
        if (csv)
            fputs(METRICS_HEADER, csv);
    }
    if (!csv || fflush(csv) != 0)
        st_die("%s: cannot write: %s", path, strerror(errno));

    const double wall_before = rs.wall_s;
    g_run.dir = dir;
    g_run.cfg = &cfg;
    g_run.model = &model;
    g_run.ds = &ds;
    g_run.be = be;
    g_run.rs = &rs;
    g_run.mem = &mem;
    g_run.t_start = t_start;
    g_run.wall_before = wall_before;
    g_run.have_checkpoint = resumed;
    run_json_extra xr = {"running", NULL, &mem};
    if (write_run_json(dir, &cfg, &model, &ds, be, &rs, &xr, mean_epoch(&rs), err))
        st_die("%s", err);
    st_set_die_hook(mark_failed);
    print_settings(&cfg, &model, &ds, n_train, dir, be, &mem);
    if (resumed)
        printf("resuming %s after epoch %d%s\n", dir, rs.epochs_done,
               rs.next_sample ? " (inside the next epoch)" : "");
    int64_t *perm = st_malloc(sizeof(int64_t) * (size_t)n_train, "permutation");
    st_evolve_stats *evs = st_calloc((size_t)model.n_layers, sizeof *evs, "evolution stats");
    const int64_t conn0 = model_connections(&model);
    const char *status = "finished";
    for (int epoch = rs.epochs_done + 1; epoch <= cfg.epochs; epoch++) {
        double t0 = st_now();
        double loss = rs.part_loss, tloss = 0.0;
        int64_t correct = rs.part_correct, tcorrect = 0, done = 0;
        train_shuffle(cfg.seed, epoch, n_train, perm);
        if (be->ops->train_epoch(be, epoch, perm, n_train, rs.next_sample, &g_stop, &done,
                                 &loss, &correct, err))
            st_die("%s", err);
        double t1 = st_now();
        double t_train = (t1 - t0) + rs.part_t_train;
        if (done < n_train) { /* stopped by a signal inside the epoch */
            if (!isfinite(loss))
                st_die("training diverged in epoch %d: the training loss is %s (lower --lr); "
                       "%s", epoch, isnan(loss) ? "NaN" : "infinite",
                       last_state_note());
            rs.next_sample = done;
            rs.part_loss = loss;
            rs.part_correct = correct;
            rs.part_t_train = t_train;
            status = "interrupted";
            break;
        }
        rs.next_sample = 0;
        rs.part_loss = rs.part_t_train = 0.0;
        rs.part_correct = 0;
        if (ds.n_test > 0 && be->ops->evaluate(be, 1, &tloss, &tcorrect, err))
            st_die("%s", err);
        double t2 = st_now();
        double tr_loss = loss / (double)n_train, tr_acc = (double)correct / (double)n_train;
        double te_loss = ds.n_test ? tloss / (double)ds.n_test : NAN;
        double te_acc = ds.n_test ? (double)tcorrect / (double)ds.n_test : NAN;
        /* A diverged run stops here, before evolution and before any
         * checkpoint could hold its non-finite weights. */
        int diverged = !isfinite(tr_loss) || (ds.n_test > 0 && !isfinite(te_loss));
        int64_t moved = 0;
        if (epoch < cfg.epochs && !diverged) {
            if (be->ops->evolve(be, epoch, evs, err))
                st_die("%s", err);
            for (int l = 0; l < model.n_layers; l++) {
                if (evs[l].blocks_before != evs[l].blocks_after || evs[l].removed != evs[l].regrown)
                    st_die("layer %d: connection invariant broken after epoch %d "
                           "(%lld blocks before, %lld after, %lld pruned, %lld regrown)",
                           l + 1, epoch, (long long)evs[l].blocks_before,
                           (long long)evs[l].blocks_after, (long long)evs[l].removed,
                           (long long)evs[l].regrown);
                moved += evs[l].regrown;
            }
            rs.evolutions_checked++;
        }
        double t3 = st_now();
        int64_t conn = model_connections(&model);
        if (conn != conn0)
            st_die("connection count changed from %lld to %lld after epoch %d",
                   (long long)conn0, (long long)conn, epoch);
        double t_epoch = t_train + (t3 - t1);
        fprintf(csv, "%d,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%lld,%s\n", epoch, tr_loss,
                tr_acc, te_loss, te_acc, t_train, t3 - t2, t2 - t1, t_epoch, (long long)conn,
                rs.run_id);
        if (fflush(csv) != 0 || ferror(csv))
            st_die("%s: write failed: %s", path, strerror(errno));
        if (diverged) {
            char msg[ST_ERRLEN];
            snprintf(msg, sizeof msg,
                     "training diverged in epoch %d: the %s loss is %s (lower --lr); %s", epoch,
                     !isfinite(tr_loss) ? "training" : "test",
                     isnan(!isfinite(tr_loss) ? tr_loss : te_loss) ? "NaN" : "infinite",
                     last_state_note());
            fclose(csv);
            rs.wall_s = wall_before + (st_now() - t_start);
            st_set_die_hook(NULL);
            run_json_extra xd = {"diverged", msg, &mem};
            if (write_run_json(dir, &cfg, &model, &ds, be, &rs, &xd, mean_epoch(&rs), err))
                fprintf(stderr, "settrain: error: %s\n", err);
            st_die("%s", msg);
        }
        if (!isnan(te_acc) && (isnan(rs.best_acc) || te_acc > rs.best_acc)) {
            rs.best_acc = te_acc;
            rs.best_epoch = epoch;
        }
        rs.final_acc = te_acc;
        rs.epochs_done = epoch;
        if (epoch > 1)
            rs.sum_epoch_after_first += t_epoch;
        else
            rs.first_epoch_s = t_epoch;
        int ckpt_now = cfg.checkpoint_every && epoch % cfg.checkpoint_every == 0 &&
                       epoch < cfg.epochs && !(g_stop && epoch < cfg.epochs);
        if (ckpt_now) {
            rs.wall_s = wall_before + (st_now() - t_start);
            save_checkpoint(be, dir, &cfg, &model, &rs);
        }
        if (!cfg.quiet) {
            char eta[32], ck[32] = "";
            fmt_duration(mean_epoch(&rs) * (cfg.epochs - epoch), eta, sizeof eta);
            if (ckpt_now)
                snprintf(ck, sizeof ck, " ckpt %.2fs", rs.ckpt_last_s);
            printf("epoch %4d/%d | loss %.4f acc %.4f | test loss %.4f acc %.4f | "
                   "train %.2fs evolve %.2fs eval %.2fs%s | conn %lld (moved %lld) | ETA %s\n",
                   epoch, cfg.epochs, tr_loss, tr_acc, te_loss, te_acc, t_train, t3 - t2,
                   t2 - t1, ck, (long long)conn, (long long)moved, eta);
            fflush(stdout);
        }
        if (epoch < cfg.epochs && dist_any(g_stop)) { /* every rank stops here */
            status = "interrupted";
            break;
        }
    }
    if (fclose(csv) != 0)
        st_die("%s: write failed: %s", path, strerror(errno));
    /* The final model (or the interrupted state) is always checkpointed. */
    rs.wall_s = wall_before + (st_now() - t_start);
    save_checkpoint(be, dir, &cfg, &model, &rs);
    rs.wall_s = wall_before + (st_now() - t_start); /* run.json counts the final checkpoint */
    run_json_extra xf = {status, NULL, &mem};
    if (write_run_json(dir, &cfg, &model, &ds, be, &rs, &xf, mean_epoch(&rs), err))
        st_die("%s", err);
    st_set_die_hook(NULL);
    int code = ST_EXIT_OK;
    if (!strcmp(status, "interrupted")) {
        printf("stopped by signal %d after epoch %d%s; checkpoint written. Continue with:\n"
               "  settrain train --resume %s\n",
               (int)g_signal, rs.epochs_done,
               rs.next_sample ? " (inside the next epoch)" : "", dir);
        code = ST_EXIT_INTERRUPTED;
    } else {
        printf("done: %d epochs in %.1fs (mean epoch %.3fs excluding the first; final checkpoint "
               "%.2fs); final test acc %.4f, best over epochs %.4f (epoch %d)\nresults: "
               "%s/metrics.csv, %s/run.json, %s/checkpoint.h5\n",
               cfg.epochs, rs.wall_s, mean_epoch(&rs), rs.ckpt_last_s, rs.final_acc, rs.best_acc,
               rs.best_epoch, dir, dir, dir);
    }
    fflush(stdout);
    free(perm);
    free(evs);
    be->ops->destroy(be);
    model_free(&model);
    dataset_free(&ds);
    memset(&g_run, 0, sizeof g_run);
    if (lock_fd >= 0)
        close(lock_fd);
    dist_finalize();
    return code;
}
