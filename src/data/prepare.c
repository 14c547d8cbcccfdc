/* prepare.c: the `settrain prepare` command, which converts a source data
 * set into the HDF5 data file of DESIGN.md:
 *   settrain prepare fmnist [--src DIR] --out FILE.h5
 *   settrain prepare mat --in FILE.mat --out FILE.h5 [--test-fraction F] [--seed S]
 * Options come from one table that drives getopt_long, the defaults and
 * --help. Exit codes: 0 done, 1 data or I/O error, 2 bad command line. */
#include "data/dataset.h"
#include "cli/commands.h"
#include "util/common.h"
#include "util/outfile.h"

#include <getopt.h>
#include <stdarg.h>

enum { CMD_FMNIST = 1, CMD_MAT = 2 };

enum prep_opt_id { OPT_SRC, OPT_IN, OPT_OUT, OPT_TEST_FRACTION, OPT_SEED, OPT_FORCE, OPT_HELP, OPT_COUNT };

typedef struct {
    const char *name;    /* long option                                        */
    const char *metavar; /* NULL: takes no argument                            */
    const char *def;     /* default value, applied through the parser; NULL: none */
    int cmds;            /* CMD_* bits of the subcommands that accept it      */
    const char *help;
} prep_opt;

static const prep_opt PREP_OPTS[OPT_COUNT] = {
    [OPT_SRC] = {"src", "DIR", "/usr/share/datasets/fashion-mnist", CMD_FMNIST,
                 "directory holding the four Fashion-MNIST .gz IDX files"},
    [OPT_IN] = {"in", "FILE.mat", NULL, CMD_MAT,
                "MATLAB file with variables X (samples x features) and Y (labels); required"},
    [OPT_OUT] = {"out", "FILE.h5", NULL, CMD_FMNIST | CMD_MAT,
                 "output data file (written atomically; its directory is created; an existing "
                 "file is refused unless --force); required"},
    [OPT_TEST_FRACTION] = {"test-fraction", "F", "0.3333", CMD_MAT,
                           "fraction of each class put in the test split, in [0, 1)"},
    [OPT_SEED] = {"seed", "S", "1", CMD_MAT, "seed of the stratified split"},
    [OPT_FORCE] = {"force", NULL, NULL, CMD_FMNIST | CMD_MAT,
                   "replace an existing --out file (never an input or a run's file)"},
    [OPT_HELP] = {"help", NULL, NULL, CMD_FMNIST | CMD_MAT, "print this help and exit"},
};

static const struct {
    const char *name;
    int bit;
    const char *summary;
} PREP_CMDS[] = {
    {"fmnist", CMD_FMNIST, "Fashion-MNIST IDX files -> pixels / 255, its own train/test split"},
    {"mat", CMD_MAT, "scikit-feature .mat file -> labels mapped to 0..K-1 in sorted order, "
                     "stratified seeded split"},
};
#define N_CMDS (int)(sizeof PREP_CMDS / sizeof PREP_CMDS[0])

typedef struct {
    const char *src, *in, *out;
    double test_fraction;
    uint64_t seed;
    int force;
} prep_args;

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "settrain: error: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return ST_EXIT_USAGE;
}

/* Help for the subcommands in the cmds bit mask. */
static void print_usage(int cmds)
{
    printf("usage:\n");
    for (int c = 0; c < N_CMDS; c++) {
        if (!(cmds & PREP_CMDS[c].bit))
            continue;
        printf("  settrain prepare %s", PREP_CMDS[c].name);
        for (int o = 0; o < OPT_COUNT; o++) {
            const prep_opt *p = &PREP_OPTS[o];
            if (!(p->cmds & PREP_CMDS[c].bit) || !p->metavar)
                continue;
            printf(p->def ? " [--%s %s]" : " --%s %s", p->name, p->metavar);
        }
        printf("\n      %s\n", PREP_CMDS[c].summary);
    }
    printf("options:\n");
    for (int o = 0; o < OPT_COUNT; o++) {
        const prep_opt *p = &PREP_OPTS[o];
        char lhs[64];
        if (!(p->cmds & cmds))
            continue;
        snprintf(lhs, sizeof lhs, "--%s%s%s", p->name, p->metavar ? " " : "",
                 p->metavar ? p->metavar : "");
        printf("  %-24s %s", lhs, p->help);
        if (p->def)
            printf(" (default %s)", p->def);
        if (cmds == (CMD_FMNIST | CMD_MAT) && p->cmds != cmds)
            printf(" [%s only]", p->cmds == CMD_MAT ? "mat" : "fmnist");
        printf("\n");
    }
}

/* Apply one option's value; returns 0 or a usage error's exit code. */
static int apply_opt(int id, const char *val, prep_args *a)
{
    switch (id) {
    case OPT_SRC: a->src = val; break;
    case OPT_IN: a->in = val; break;
    case OPT_OUT: a->out = val; break;
    case OPT_FORCE: a->force = 1; break;
    case OPT_TEST_FRACTION:
        if (st_parse_double(val, 0.0, 1.0, &a->test_fraction) || a->test_fraction >= 1.0)
            return usage_error("--test-fraction must be a number in [0, 1), got '%s'", val);
        break;
    case OPT_SEED:
        if (st_parse_u64(val, &a->seed))
            return usage_error("--seed must be a non-negative integer, got '%s'", val);
        break;
    default: break;
    }
    return 0;
}

/* Create the directory that will hold path, if path names one. */
static int make_parent(const char *path, char *err)
{
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path)
        return 0;
    char *dir = st_malloc((size_t)(slash - path) + 1, "directory name");
    memcpy(dir, path, (size_t)(slash - path));
    dir[slash - path] = '\0';
    int rc = st_mkdirs(dir, err);
    free(dir);
    return rc;
}

/* "wrote OUT: n_train .., n_test .., d .., k ..; label:train/test ..." */
static void print_summary(const char *out, const st_dataset *ds)
{
    int64_t *cnt = st_calloc(2 * (size_t)ds->k, sizeof *cnt, "class counts");
    for (int64_t i = 0; i < ds->n_train; i++)
        cnt[2 * ds->y_train[i]]++;
    for (int64_t i = 0; i < ds->n_test; i++)
        cnt[2 * ds->y_test[i] + 1]++;
    printf("wrote %s: n_train %lld, n_test %lld, d %lld, k %d; class label:train/test",
           out, (long long)ds->n_train, (long long)ds->n_test, (long long)ds->d, ds->k);
    for (int32_t c = 0; c < ds->k; c++)
        printf(" %lld:%lld/%lld", (long long)(ds->label_values ? ds->label_values[c] : c),
               (long long)cnt[2 * c], (long long)cnt[2 * c + 1]);
    printf("\n");
    free(cnt);
}

int cmd_prepare(int argc, char **argv)
{
    if (argc < 2)
        return usage_error("prepare needs a subcommand: fmnist or mat "
                           "(see settrain prepare --help)");
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        print_usage(CMD_FMNIST | CMD_MAT);
        return ST_EXIT_OK;
    }
    int cmd = 0;
    for (int c = 0; c < N_CMDS; c++)
        if (!strcmp(argv[1], PREP_CMDS[c].name))
            cmd = PREP_CMDS[c].bit;
    if (!cmd)
        return usage_error("unknown prepare subcommand '%s' (expected fmnist or mat)",
                           argv[1]);
    const char *cname = cmd == CMD_FMNIST ? "fmnist" : "mat";

    prep_args a = {0};
    struct option longopts[OPT_COUNT + 1];
    int nl = 0, rc;
    for (int o = 0; o < OPT_COUNT; o++) {
        const prep_opt *p = &PREP_OPTS[o];
        if (!(p->cmds & cmd))
            continue;
        if (p->def && (rc = apply_opt(o, p->def, &a)))
            return rc;
        longopts[nl++] = (struct option){p->name, p->metavar ? required_argument : no_argument,
                                         NULL, o};
    }
    longopts[nl] = (struct option){NULL, 0, NULL, 0};

    /* getopt sees the subcommand as its argv[0]. */
    int gargc = argc - 1;
    char **gargv = argv + 1;
    int id;
    optind = 1;
    opterr = 0;
    while ((id = getopt_long(gargc, gargv, ":", longopts, NULL)) != -1) {
        if (id == '?')
            return usage_error("prepare %s: unknown option '%s' (see settrain prepare %s "
                               "--help)", cname, gargv[optind - 1], cname);
        if (id == ':')
            return usage_error("prepare %s: option '%s' needs a value", cname,
                               gargv[optind - 1]);
        if (id == OPT_HELP) {
            print_usage(cmd);
            return ST_EXIT_OK;
        }
        if ((rc = apply_opt(id, optarg, &a)))
            return rc;
    }
    if (optind < gargc)
        return usage_error("prepare %s: unexpected argument '%s'", cname, gargv[optind]);
    if (!a.out)
        return usage_error("prepare %s: --out FILE.h5 is required", cname);
    if (cmd == CMD_MAT && !a.in)
        return usage_error("prepare mat: --in FILE.mat is required");

    char err[ST_ERRLEN];
    /* The output is checked before any work: not an input, not a device or
     * a FIFO, not a run's file, not existing unless --force. */
    char fm[4][4200];
    const char *inputs[4] = {a.in, NULL, NULL, NULL};
    if (cmd == CMD_FMNIST) {
        static const char *const names[4] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
        for (int i = 0; i < 4; i++) {
            snprintf(fm[i], sizeof fm[i], "%s/%s", a.src, names[i]);
            inputs[i] = fm[i];
        }
    }
    if (st_output_check(a.out, "--out", inputs, 4, a.force, err)) {
        fprintf(stderr, "settrain: error: %s\n", err);
        return ST_EXIT_ERROR;
    }
    st_dataset ds;
    if (cmd == CMD_FMNIST ? prepare_fmnist(a.src, &ds, err)
                          : prepare_mat(a.in, a.test_fraction, a.seed, &ds, err)) {
        fprintf(stderr, "settrain: error: %s\n", err);
        return ST_EXIT_ERROR;
    }
    rc = make_parent(a.out, err) || dataset_save_h5(a.out, &ds, err);
    if (rc)
        fprintf(stderr, "settrain: error: %s\n", err);
    else
        print_summary(a.out, &ds);
    dataset_free(&ds);
    return rc ? ST_EXIT_ERROR : ST_EXIT_OK;
}
