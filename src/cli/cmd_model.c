/* cmd_model.c: commands that use a trained model (a checkpoint.h5):
 *   settrain eval --model CKPT --data FILE.h5 [--split test|train]
 *       accuracy, per-class accuracy and the confusion matrix
 *   settrain predict --model CKPT --input FILE.h5 [--split test|train] --out FILE.csv
 *       one row per sample: row, class, original label, probability
 *   settrain features --model CKPT [--top K] [--out FILE.csv]
 *       input features ranked by the summed |w| of their outgoing connections
 * Inputs are standardised with the model's own statistics. The forward pass
 * is the CPU backend's (cpu_model_forward) without dropout. */
#define _POSIX_C_SOURCE 200809L
#include <getopt.h>
#include <math.h>
#include <stdio.h>

#include "train/checkpoint.h"
#include "cli/commands.h"
#include "util/common.h"
#include "cpu/cpu_ops.h"
#include "data/dataset.h"
#include "util/outfile.h"
#include "train/train.h"

typedef struct {
    const char *model, *data, *out;
    int split; /* 1 test, 0 train */
    long top;
    int force;
} model_args;

static int model_usage(FILE *f, const char *cmd)
{
    if (!strcmp(cmd, "eval"))
        fprintf(f, "usage: settrain eval --model CKPT --data FILE.h5 [--split test|train]\n"
                   "Accuracy, per-class accuracy and confusion matrix (rows: true class,\n"
                   "columns: predicted class) of a trained model on a split [test].\n");
    else if (!strcmp(cmd, "predict"))
        fprintf(f, "usage: settrain predict --model CKPT --input FILE.h5 --out FILE.csv "
                   "[--split test|train] [--force]\n"
                   "Writes one CSV row per sample of the split [test]: row, class (0..K-1),\n"
                   "label (the original label when the file records one), probability.\n"
                   "FILE.csv is written atomically; an existing file is refused unless --force,\n"
                   "and neither the model nor the input can be the output.\n");
    else
        fprintf(f, "usage: settrain features --model CKPT [--top K] [--out FILE.csv [--force]]\n"
                   "Input features ranked by the summed magnitude of their outgoing\n"
                   "connections in the first layer, as CSV (rank, feature, importance,\n"
                   "connections) on stdout or in FILE.csv [all features]; FILE.csv is written\n"
                   "atomically, an existing file is refused unless --force.\n");
    return ST_EXIT_OK;
}

static int parse_model_args(int argc, char **argv, model_args *a)
{
    const char *cmd = argv[0];
    static const struct option lo[] = {{"model", required_argument, NULL, 'm'},
                                       {"data", required_argument, NULL, 'd'},
                                       {"input", required_argument, NULL, 'i'},
                                       {"out", required_argument, NULL, 'o'},
                                       {"split", required_argument, NULL, 's'},
                                       {"top", required_argument, NULL, 't'},
                                       {"force", no_argument, NULL, 'f'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    memset(a, 0, sizeof *a);
    a->split = 1;
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
        switch (ch) {
        case 'm': a->model = optarg; break;
        case 'd':
        case 'i': a->data = optarg; break;
        case 'o': a->out = optarg; break;
        case 'f': a->force = 1; break;
        case 's':
            if (strcmp(optarg, "test") && strcmp(optarg, "train")) {
                fprintf(stderr, "settrain: error: --split '%s': expected test or train\n", optarg);
                return -1;
            }
            a->split = !strcmp(optarg, "test");
            break;
        case 't':
            if (st_parse_int(optarg, 1, 1L << 40, &a->top)) {
                fprintf(stderr, "settrain: error: --top '%s': expected an integer >= 1\n", optarg);
                return -1;
            }
            break;
        case 'h': model_usage(stdout, cmd); return 1;
        case ':':
            fprintf(stderr, "settrain: error: option '%s' needs a value\n", argv[optind - 1]);
            return -1;
        default:
            fprintf(stderr, "settrain: error: %s: unknown option '%s' (see settrain %s --help)\n",
                    cmd, argv[optind - 1], cmd);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "settrain: error: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (!a->model) {
        fprintf(stderr, "settrain: error: %s: --model CKPT is required\n", cmd);
        return -1;
    }
    if (strcmp(cmd, "features") && !a->data) {
        fprintf(stderr, "settrain: error: %s: --%s FILE.h5 is required\n", cmd,
                strcmp(cmd, "eval") ? "input" : "data");
        return -1;
    }
    if (!strcmp(cmd, "predict") && !a->out) {
        fprintf(stderr, "settrain: error: predict: --out FILE.csv is required\n");
        return -1;
    }
    if (a->out) {
        char err[ST_ERRLEN];
        const char *inputs[2] = {a->model, a->data};
        if (st_output_check(a->out, "--out", inputs, 2, a->force, err)) {
            fprintf(stderr, "settrain: error: %s: %s\n", cmd, err);
            return -2;
        }
    }
    return 0;
}

/* Class probabilities (n, K) of the samples x (n, d), already standardised. */
static float *model_probabilities(const st_model *m, st_activation act, const float *x,
                                  int64_t n, int64_t d)
{
    const int L = m->n_layers, K = m->sizes[L], ld = 128;
    float **z = st_calloc((size_t)L + 1, sizeof(float *), "z");
    float **a = st_calloc((size_t)L + 1, sizeof(float *), "a");
    for (int l = 0; l <= L; l++) {
        z[l] = st_calloc((size_t)m->sizes[l] * ld, sizeof(float), "pre-activations");
        a[l] = st_calloc((size_t)m->sizes[l] * ld, sizeof(float), "activations");
    }
    float *probs = st_malloc(sizeof(float) * (size_t)(n * K), "probabilities");
    for (int64_t s = 0; s < n; s += ld) {
        int B = (int)(n - s < ld ? n - s : ld);
        for (int64_t f = 0; f < d; f++)
            for (int b = 0; b < ld; b++)
                a[0][f * ld + b] = b < B ? x[(s + b) * d + f] : 0.0f;
        cpu_model_forward(m, act, z, a, NULL, ld);
        for (int b = 0; b < B; b++) {
            double zmax = -INFINITY, sum = 0.0;
            for (int c = 0; c < K; c++)
                zmax = fmax(zmax, z[L][(int64_t)c * ld + b]);
            for (int c = 0; c < K; c++)
                sum += exp(z[L][(int64_t)c * ld + b] - zmax);
            for (int c = 0; c < K; c++)
                probs[(s + b) * K + c] = (float)(exp(z[L][(int64_t)c * ld + b] - zmax) / sum);
        }
    }
    for (int l = 0; l <= L; l++) {
        free(z[l]);
        free(a[l]);
    }
    free(z);
    free(a);
    return probs;
}

static int argmax(const float *p, int k)
{
    int best = 0;
    for (int c = 1; c < k; c++)
        if (p[c] > p[best])
            best = c;
    return best;
}

/* A model's class probabilities on one split of a data file. */
typedef struct {
    st_model m;
    st_dataset ds;
    const int32_t *y; /* n labels of the split, host                     */
    int64_t n;        /* samples in the split                            */
    float *p;         /* (n, k) probabilities, host                      */
} split_probs;

/* Load the model and the split, standardise it with the model's statistics
 * and compute the probabilities. */
static void split_probs_load(const model_args *a, split_probs *s)
{
    char err[ST_ERRLEN];
    st_config cfg;
    st_run_state rs;
    if (checkpoint_load(a->model, &cfg, &s->m, &rs, err))
        st_die("%s", err);
    if (dataset_load_h5(a->data, &s->ds, err))
        st_die("%s", err);
    if (cfg.pad_input && s->ds.d < s->m.sizes[0] &&
        data_padded_width(s->ds.d, s->m.motif) == s->m.sizes[0])
        data_pad_features(&s->ds, s->m.sizes[0]);
    const st_dataset *ds = &s->ds;
    if (ds->d != s->m.sizes[0] || ds->k != s->m.sizes[s->m.n_layers])
        st_die("%s has %lld features and %d classes but the model %s expects %d and %d",
               a->data, (long long)ds->d, ds->k, a->model, s->m.sizes[0],
               s->m.sizes[s->m.n_layers]);
    float *x = a->split ? ds->x_test : ds->x_train;
    s->y = a->split ? ds->y_test : ds->y_train;
    s->n = a->split ? ds->n_test : ds->n_train;
    if (s->n == 0)
        st_die("%s: the %s split is empty", a->data, a->split ? "test" : "train");
    data_standardize(x, s->n, ds->d, s->m.feat_mean, s->m.feat_std);
    s->p = model_probabilities(&s->m, cfg.activation, x, s->n, ds->d);
}

static void split_probs_free(split_probs *s)
{
    free(s->p);
    model_free(&s->m);
    dataset_free(&s->ds);
}

static int cmd_eval(const model_args *a)
{
    split_probs sp;
    split_probs_load(a, &sp);
    const st_dataset ds = sp.ds;
    const int32_t *y = sp.y;
    const int64_t n = sp.n;
    const float *p = sp.p;
    const int K = ds.k;
    int64_t *conf = st_calloc((size_t)K * K, sizeof(int64_t), "confusion matrix");
    int64_t ok = 0;
    for (int64_t i = 0; i < n; i++) {
        int c = argmax(p + i * K, K);
        conf[(int64_t)y[i] * K + c]++;
        ok += c == y[i];
    }
    printf("model %s on %s (%s split, %lld samples)\naccuracy %.4f\n\nclass  label  samples  accuracy\n",
           a->model, a->data, a->split ? "test" : "train", (long long)n, (double)ok / (double)n);
    for (int c = 0; c < K; c++) {
        int64_t row = 0;
        for (int j = 0; j < K; j++)
            row += conf[(int64_t)c * K + j];
        printf("%5d  %5lld  %7lld  ", c, (long long)(ds.label_values ? ds.label_values[c] : c),
               (long long)row);
        if (row)
            printf("%.4f\n", (double)conf[(int64_t)c * K + c] / (double)row);
        else
            printf("-\n");
    }
    printf("\nconfusion matrix (rows: true class, columns: predicted class)\n      ");
    for (int j = 0; j < K; j++)
        printf(" %6d", j);
    printf("\n");
    for (int c = 0; c < K; c++) {
        printf("%5d:", c);
        for (int j = 0; j < K; j++)
            printf(" %6lld", (long long)conf[(int64_t)c * K + j]);
        printf("\n");
    }
    free(conf);
    split_probs_free(&sp);
    return ST_EXIT_OK;
}

/* The command's output: stdout, or an atomic file (see outfile.h). */
typedef struct {
    FILE *f;
    st_outfile o;
    const char *path;
} out_stream;

static void open_out(out_stream *s, const char *path)
{
    char err[ST_ERRLEN];
    s->path = path;
    if (!path) {
        s->f = stdout;
        return;
    }
    if (st_outfile_open(&s->o, path, err))
        st_die("%s", err);
    s->f = s->o.f;
}

static void close_out(out_stream *s)
{
    char err[ST_ERRLEN];
    if (!s->path)
        return; /* main checks stdout when the command returns */
    if (st_outfile_commit(&s->o, 1, err))
        st_die("%s", err);
}

static int cmd_predict(const model_args *a)
{
    split_probs sp;
    split_probs_load(a, &sp);
    const st_dataset ds = sp.ds;
    const int64_t n = sp.n;
    const float *p = sp.p;
    const int K = ds.k;
    out_stream os;
    open_out(&os, a->out);
    FILE *f = os.f;
    fprintf(f, "row,class,label,probability\n");
    for (int64_t i = 0; i < n; i++) {
        int c = argmax(p + i * K, K);
        fprintf(f, "%lld,%d,%lld,%.6f\n", (long long)i, c,
                (long long)(ds.label_values ? ds.label_values[c] : c), p[i * K + c]);
    }
    close_out(&os);
    fprintf(stderr, "settrain: wrote %lld predictions to %s\n", (long long)n, a->out);
    split_probs_free(&sp);
    return ST_EXIT_OK;
}

typedef struct {
    double imp;
    int64_t conn;
    int32_t feature;
} feat_rank;

static int feat_cmp(const void *pa, const void *pb)
{
    const feat_rank *a = pa, *b = pb;
    if (a->imp != b->imp)
        return a->imp < b->imp ? 1 : -1;
    return (a->feature > b->feature) - (a->feature < b->feature);
}

static int cmd_features(const model_args *a)
{
    st_config cfg;
    st_model m;
    st_run_state rs;
    char err[ST_ERRLEN];
    if (checkpoint_load(a->model, &cfg, &m, &rs, err))
        st_die("%s", err);
    const st_layer *L = &m.layers[0];
    const int32_t d = L->n_in;
    feat_rank *r = st_calloc((size_t)d, sizeof *r, "feature ranks");
    for (int32_t i = 0; i < d; i++)
        r[i].feature = i;
    if (L->dense) {
        for (int32_t o = 0; o < L->n_out; o++)
            for (int32_t i = 0; i < d; i++) {
                r[i].imp += fabsf(L->w[(int64_t)o * d + i]);
                r[i].conn++;
            }
    } else {
        const int bs = L->bi * L->bo;
        for (int32_t k = 0; k < L->nb; k++)
            for (int rr = 0; rr < L->bo; rr++)
                for (int c = 0; c < L->bi; c++) {
                    int32_t i = L->col_idx[k] * L->bi + c;
                    r[i].imp += fabsf(L->w[(int64_t)k * bs + rr * L->bi + c]);
                    r[i].conn++;
                }
    }
    /* Zero features that --pad-input added are not the data's: not ranked. */
    const int32_t dr = rs.has_fingerprint && rs.data_fp.d < d ? (int32_t)rs.data_fp.d : d;
    qsort(r, (size_t)dr, sizeof *r, feat_cmp);
    int64_t top = a->top && a->top < dr ? a->top : dr;
    out_stream os;
    open_out(&os, a->out);
    FILE *f = os.f;
    fprintf(f, "rank,feature,importance,connections\n");
    for (int64_t j = 0; j < top; j++)
        fprintf(f, "%lld,%d,%.6g,%lld\n", (long long)j + 1, r[j].feature, r[j].imp,
                (long long)r[j].conn);
    close_out(&os);
    free(r);
    model_free(&m);
    return ST_EXIT_OK;
}

int cmd_model(int argc, char **argv)
{
    model_args a;
    int r = parse_model_args(argc, argv, &a);
    if (r)
        return r > 0 ? ST_EXIT_OK : r == -2 ? ST_EXIT_ERROR : ST_EXIT_USAGE;
    if (!strcmp(argv[0], "eval"))
        return cmd_eval(&a);
    if (!strcmp(argv[0], "predict"))
        return cmd_predict(&a);
    return cmd_features(&a);
}
