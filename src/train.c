/* train.c: the host side of a run: loads and standardises the data, builds
 * the model, picks the backend, owns the epoch loop (shuffle, train,
 * evaluate, evolve, check the connection invariant) and writes
 * results/runs/<name>/metrics.csv (flushed every epoch) and run.json.
 *
 * Epoch order: train over the shuffled training set, evaluate on the test
 * set, then (except after the last epoch) evolve the sparse layers. train_loss
 * and train_acc are the means over the epoch's mini-batches as trained (with
 * dropout), as Keras reports them. */
#define _GNU_SOURCE
#include "train.h"

#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <omp.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef ST_HAVE_CUDA
#include <nvtx3/nvToolsExt.h>
#endif

#include "backend.h"
#include "checkpoint.h"
#include "common.h"
#include "philox.h"

void data_feature_stats(const float *x, int64_t n, int64_t d, float *mean, float *std)
{
    double *s = st_calloc((size_t)d, sizeof(double), "feature sums");
    double *s2 = st_calloc((size_t)d, sizeof(double), "feature squares");
    for (int64_t i = 0; i < n; i++)
        for (int64_t f = 0; f < d; f++)
            s[f] += x[i * d + f];
    for (int64_t f = 0; f < d; f++)
        s[f] /= (double)n;
    for (int64_t i = 0; i < n; i++)
        for (int64_t f = 0; f < d; f++) {
            double t = x[i * d + f] - s[f];
            s2[f] += t * t;
        }
    for (int64_t f = 0; f < d; f++) {
        mean[f] = (float)s[f];
        std[f] = (float)sqrt(s2[f] / (double)n);
    }
    free(s);
    free(s2);
}

void data_standardize(float *x, int64_t n, int64_t d, const float *mean, const float *std)
{
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        for (int64_t f = 0; f < d; f++)
            x[i * d + f] = (x[i * d + f] - mean[f]) / (std[f] > 0.0f ? std[f] : 1.0f);
}

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

/* Write run.json atomically (temporary file, then rename). */
static int write_run_json(const char *dir, const st_config *c, const st_model *m,
                          const st_dataset *ds, st_backend *be, const st_run_state *rs,
                          const char *status, double mean_epoch_s, char *err)
{
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/run.json", dir);
    snprintf(tmp, sizeof tmp, "%s/.run.json.tmp", dir);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return st_fail(err, "%s: cannot write: %s", tmp, strerror(errno));
    fprintf(f, "{\n  \"settrain_version\": \"%s\",\n  \"git_commit\": \"%s\",\n", ST_VERSION,
            ST_GIT_COMMIT);
    fprintf(f, "  \"status\": \"%s\",\n  \"started\": \"%s\",\n", status, rs->started);
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
               "    \"activation\": \"%s\",\n    \"seed\": %llu,\n    \"train_limit\": %lld,\n"
               "    \"standardize\": %s,\n    \"checkpoint_every\": %d,\n"
               "    \"threads\": %d\n  },\n",
            c->motif, c->epsilon, c->zeta, c->epochs, c->batch, c->lr, c->momentum,
            c->weight_decay, c->dropout, st_activation_names[c->activation],
            (unsigned long long)c->seed, (long long)c->train_limit,
            c->standardize ? "true" : "false", c->checkpoint_every, omp_get_max_threads());
    fprintf(f, "  \"backend\": \"%s\",\n  \"device\": {", be->ops->name);
    char desc[2048];
    be->ops->describe(be, desc, sizeof desc);
    fprintf(f, "%s},\n", desc);
    fprintf(f, "  \"data\": {\"n_train\": %lld, \"n_test\": %lld, \"n_features\": %lld, "
               "\"n_classes\": %d},\n",
            (long long)ds->n_train, (long long)ds->n_test, (long long)ds->d, ds->k);
    fprintf(f, "  \"layers\": [\n");
    for (int l = 0; l < m->n_layers; l++) {
        const st_layer *L = &m->layers[l];
        fprintf(f, "    {\"layer\": %d, \"n_in\": %d, \"n_out\": %d, \"block_in\": %d, "
                   "\"block_out\": %d, \"p\": %.17g, \"dense\": %s, \"blocks\": %lld, "
                   "\"connections\": %lld}%s\n",
                l + 1, L->n_in, L->n_out, L->bi, L->bo, L->p, L->dense ? "true" : "false",
                (long long)(L->dense ? (int64_t)L->nbr * L->nbc : L->nb),
                (long long)layer_nnz(L), l + 1 < m->n_layers ? "," : "");
    }
    fprintf(f, "  ],\n  \"connections\": %lld,\n", (long long)model_connections(m));
    fprintf(f, "  \"epochs_done\": %d,\n  \"evolutions_checked\": %lld,\n", rs->epochs_done,
            (long long)rs->evolutions_checked);
    fprintf(f, "  \"total_wall_s\": ");
    json_num(f, rs->wall_s);
    fprintf(f, ",\n  \"mean_epoch_s_excluding_first\": ");
    json_num(f, mean_epoch_s);
    fprintf(f, ",\n  \"final_test_acc\": ");
    json_num(f, rs->final_acc);
    fprintf(f, ",\n  \"best_test_acc\": ");
    json_num(f, rs->best_acc);
    fprintf(f, ",\n  \"best_epoch\": %d\n}\n", rs->best_epoch);
    int bad = ferror(f);
    bad |= fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        unlink(tmp);
        return st_fail(err, "%s: cannot write: %s", path, strerror(errno));
    }
    return 0;
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
                           int64_t n_train, const char *dir, st_backend *be)
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
    ROW("standardize", "%s", c->standardize ? "yes (training-set mean and std)" : "no");
    ROW("seed", "%llu", (unsigned long long)c->seed);
    ROW("backend", "%s: %s", be->ops->name, desc);
    ROW("run folder", "%s", dir);
#undef ROW
    printf("+----------------------+------------------------------------------------------\n");
    fflush(stdout);
}

/* Set by SIGTERM, SIGINT and SIGUSR1: finish the batch, checkpoint, exit 3. */
static volatile int g_stop;
static volatile int g_signal;

static void on_stop_signal(int sig)
{
    g_stop = 1;
    g_signal = sig;
}

static void install_stop_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    const int sigs[3] = {SIGTERM, SIGINT, SIGUSR1};
    for (int i = 0; i < 3; i++)
        sigaction(sigs[i], &sa, NULL);
}

/* Keep the header and the rows of epochs 1..epochs_done of metrics.csv
 * (rows of an epoch that a killed run wrote after its last checkpoint are
 * dropped: the resumed run writes them again, identically). Atomic. */
static int metrics_truncate(const char *path, int epochs_done, char *err)
{
    FILE *in = fopen(path, "r");
    if (!in)
        return st_fail(err, "%s: cannot read: %s", path, strerror(errno));
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *out = fopen(tmp, "w");
    if (!out) {
        fclose(in);
        return st_fail(err, "%s: cannot write: %s", tmp, strerror(errno));
    }
    char line[4096];
    int row = 0, want = 1;
    while (fgets(line, sizeof line, in)) {
        if (row++ == 0 || (want <= epochs_done && atoi(line) == want)) {
            fputs(line, out);
            if (row > 1)
                want++;
        }
    }
    fclose(in);
    int bad = ferror(out) | (fflush(out) != 0) | (fsync(fileno(out)) != 0);
    bad |= fclose(out) != 0;
    if (bad || want != epochs_done + 1 || rename(tmp, path) != 0) {
        unlink(tmp);
        if (want != epochs_done + 1)
            return st_fail(err, "%s: holds rows for %d epochs, the checkpoint %d", path,
                           want - 1, epochs_done);
        return st_fail(err, "%s: cannot rewrite: %s", path, strerror(errno));
    }
    return 0;
}

static double mean_epoch(const st_run_state *rs)
{
    if (rs->epochs_done > 1)
        return rs->sum_epoch_after_first / (rs->epochs_done - 1);
    return rs->epochs_done == 1 ? rs->first_epoch_s : NAN;
}

/* Write the checkpoint (an NVTX range "checkpoint" on the timeline of a
 * CUDA build, beside the GPU backend's ranges). */
static void save_checkpoint(st_backend *be, const char *dir, const st_config *cfg,
                            const st_model *m, const st_run_state *rs)
{
    char err[ST_ERRLEN];
#ifdef ST_HAVE_CUDA
    nvtxRangePushA("checkpoint");
#endif
    int rc = be->ops->sync_model(be, err) || checkpoint_save(dir, cfg, m, rs, err);
#ifdef ST_HAVE_CUDA
    nvtxRangePop();
#endif
    if (rc)
        st_die("%s", err);
}

/* Remove the temporary files that a run killed while writing left behind
 * (its complete files were never touched: they are replaced by rename). */
static void remove_stale_temporaries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char path[4400];
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, "checkpoint.h5.tmp.", 18) || !strcmp(e->d_name, "metrics.csv.tmp") ||
            !strcmp(e->d_name, ".run.json.tmp")) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    closedir(d);
}

/* The run folder and the state to start from: a new run (refusing a folder
 * that already holds one) or the checkpoint of --resume DIR. */
static void open_run(st_config *cfg, st_model *model, st_run_state *rs, char *dir, size_t n,
                     const char *dataset_name)
{
    char err[ST_ERRLEN], path[4200];
    memset(rs, 0, sizeof *rs);
    if (cfg->resume[0]) {
        snprintf(dir, n, "%s", cfg->resume);
        snprintf(path, sizeof path, "%s/checkpoint.h5", dir);
        if (access(path, F_OK) != 0)
            st_die("--resume %s: no checkpoint.h5 in that folder", dir);
        remove_stale_temporaries(dir);
        st_config saved;
        if (checkpoint_load(path, &saved, model, rs, err))
            st_die("%s", err);
        /* The checkpoint defines the run; only how it runs may change. */
        saved.threads = cfg->threads;
        saved.backend = cfg->backend;
        saved.quiet = cfg->quiet;
        if (cfg->checkpoint_every)
            saved.checkpoint_every = cfg->checkpoint_every;
        snprintf(saved.resume, sizeof saved.resume, "%s", cfg->resume);
        snprintf(saved.out, sizeof saved.out, "%s", dir);
        *cfg = saved;
        return;
    }
    if (cfg->out[0]) {
        snprintf(dir, n, "%s", cfg->out);
    } else {
        char stamp[32];
        time_t now = time(NULL);
        strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", localtime(&now));
        snprintf(dir, n, "results/runs/%s_m%d_s%llu_%s", dataset_name, cfg->motif,
                 (unsigned long long)cfg->seed, stamp);
    }
    snprintf(path, sizeof path, "%s/metrics.csv", dir);
    if (access(path, F_OK) == 0)
        st_die("%s already holds a run (metrics.csv); choose another --out or continue it "
               "with --resume %s", dir, dir);
    if (st_mkdirs(dir, err))
        st_die("%s", err);
    rs->best_acc = rs->final_acc = NAN;
    time_t now = time(NULL);
    strftime(rs->started, sizeof rs->started, "%Y-%m-%dT%H:%M:%S%z", localtime(&now));
}

int train_run(const st_config *cfg_in)
{
    st_config cfg = *cfg_in;
    char err[ST_ERRLEN];
    double t_start = st_now();
    st_model model;
    st_run_state rs;
    char dir[4096];
    int resumed = cfg.resume[0] != 0;
    /* From the start: a stop signal while the data loads ends the run after
     * its first batch, with a checkpoint, like any other stop. */
    install_stop_handlers();

    /* A resumed run takes its data path and settings from the checkpoint. */
    if (resumed)
        open_run(&cfg, &model, &rs, dir, sizeof dir, NULL);
    if (cfg.threads > 0)
        omp_set_num_threads(cfg.threads);
    cfg.threads = omp_get_max_threads();

    st_dataset ds;
    if (dataset_load_h5(cfg.data, &ds, err))
        st_die("%s", err);
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
        if (model_init(&model, sizes, cfg.n_hidden + 1, cfg.motif, cfg.epsilon, cfg.seed, err))
            st_die("%s", err);
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

    if (!resumed)
        open_run(&cfg, &model, &rs, dir, sizeof dir, ds.name);
    char path[4200];
    snprintf(path, sizeof path, "%s/metrics.csv", dir);
    FILE *csv;
    if (resumed) {
        if (metrics_truncate(path, rs.epochs_done, err))
            st_die("%s", err);
        csv = fopen(path, "a");
    } else {
        csv = fopen(path, "w");
        if (csv)
            fprintf(csv, "epoch,train_loss,train_acc,test_loss,test_acc,t_train_s,t_evolve_s,"
                         "t_eval_s,t_epoch_s,connections\n");
    }
    if (!csv || fflush(csv) != 0)
        st_die("%s: cannot write: %s", path, strerror(errno));

    const double wall_before = rs.wall_s;
    if (write_run_json(dir, &cfg, &model, &ds, be, &rs, "running", mean_epoch(&rs), err))
        st_die("%s", err);
    print_settings(&cfg, &model, &ds, n_train, dir, be);
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
        int64_t moved = 0;
        if (epoch < cfg.epochs) {
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
        double tr_loss = loss / (double)n_train, tr_acc = (double)correct / (double)n_train;
        double te_loss = ds.n_test ? tloss / (double)ds.n_test : NAN;
        double te_acc = ds.n_test ? (double)tcorrect / (double)ds.n_test : NAN;
        double t_epoch = t_train + (t3 - t1);
        fprintf(csv, "%d,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%lld\n", epoch, tr_loss, tr_acc,
                te_loss, te_acc, t_train, t3 - t2, t2 - t1, t_epoch, (long long)conn);
        if (fflush(csv) != 0 || ferror(csv))
            st_die("%s: write failed: %s", path, strerror(errno));
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
        if (!cfg.quiet) {
            char eta[32];
            fmt_duration(mean_epoch(&rs) * (cfg.epochs - epoch), eta, sizeof eta);
            printf("epoch %4d/%d | loss %.4f acc %.4f | test loss %.4f acc %.4f | "
                   "train %.2fs evolve %.2fs eval %.2fs | conn %lld (moved %lld) | ETA %s\n",
                   epoch, cfg.epochs, tr_loss, tr_acc, te_loss, te_acc, t_train, t3 - t2,
                   t2 - t1, (long long)conn, (long long)moved, eta);
            fflush(stdout);
        }
        if (g_stop && epoch < cfg.epochs) {
            status = "interrupted";
            break;
        }
        if (cfg.checkpoint_every && epoch % cfg.checkpoint_every == 0 && epoch < cfg.epochs) {
            rs.wall_s = wall_before + (st_now() - t_start);
            save_checkpoint(be, dir, &cfg, &model, &rs);
        }
    }
    fclose(csv);
    /* The final model (or the interrupted state) is always checkpointed. */
    rs.wall_s = wall_before + (st_now() - t_start);
    save_checkpoint(be, dir, &cfg, &model, &rs);
    if (write_run_json(dir, &cfg, &model, &ds, be, &rs, status, mean_epoch(&rs), err))
        st_die("%s", err);
    int code = ST_EXIT_OK;
    if (!strcmp(status, "interrupted")) {
        printf("stopped by signal %d after epoch %d%s; checkpoint written. Continue with:\n"
               "  settrain train --resume %s\n",
               (int)g_signal, rs.epochs_done,
               rs.next_sample ? " (inside the next epoch)" : "", dir);
        code = ST_EXIT_INTERRUPTED;
    } else {
        printf("done: %d epochs in %.1fs (mean epoch %.3fs excluding the first); final test acc "
               "%.4f, best %.4f (epoch %d)\nresults: %s/metrics.csv, %s/run.json, "
               "%s/checkpoint.h5\n",
               cfg.epochs, rs.wall_s, mean_epoch(&rs), rs.final_acc, rs.best_acc, rs.best_epoch,
               dir, dir, dir);
    }
    fflush(stdout);
    free(perm);
    free(evs);
    be->ops->destroy(be);
    model_free(&model);
    dataset_free(&ds);
    return code;
}
