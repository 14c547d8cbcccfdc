/* train_cli.c: `settrain train` options. One table drives getopt_long and
 * the --help text, so the help cannot drift from the parser. */
#include <getopt.h>
#include <stdio.h>

#include "util/common.h"
#include "cli/commands.h"
#include "train/config.h"
#include "train/train.h"

enum {
    OPT_DATA = 256, OPT_HIDDEN, OPT_MOTIF, OPT_EPSILON, OPT_ZETA, OPT_EPOCHS, OPT_BATCH,
    OPT_LR, OPT_MOMENTUM, OPT_WD, OPT_DROPOUT, OPT_ACT, OPT_SEED, OPT_LIMIT, OPT_BACKEND,
    OPT_THREADS, OPT_OUT, OPT_NOSTD, OPT_QUIET, OPT_CKPT, OPT_RESUME, OPT_ALLOW_DATA, OPT_INIT, OPT_PAD, OPT_HELP
};

typedef struct {
    const char *name;
    int has_arg;
    int id;
    const char *metavar;
    const char *def;
    const char *help;
} opt_doc;

static const opt_doc opts[] = {
    {"data", 1, OPT_DATA, "FILE.h5", NULL, "data file (settrain prepare); required (with --resume: "
                                           "where the run's data file is now)"},
    {"hidden", 1, OPT_HIDDEN, "N,N,..", "3000,3000,3000", "hidden layer sizes"},
    {"motif", 1, OPT_MOTIF, "M", "1", "motif size m; must divide the input and hidden sizes (1 = plain SET)"},
    {"epsilon", 1, OPT_EPSILON, "E", "20", "Erdos-Renyi connections per neuron (not a density)"},
    {"zeta", 1, OPT_ZETA, "Z", "0.3", "fraction pruned and regrown after each epoch"},
    {"epochs", 1, OPT_EPOCHS, "N", "300", "training epochs"},
    {"batch", 1, OPT_BATCH, "B", "128", "mini-batch size (1..4096)"},
    {"lr", 1, OPT_LR, "ETA", "0.01", "learning rate"},
    {"momentum", 1, OPT_MOMENTUM, "MU", "0.9", "heavy-ball momentum"},
    {"weight-decay", 1, OPT_WD, "L", "2e-4", "L2 weight decay (weights only)"},
    {"dropout", 1, OPT_DROPOUT, "D", "0.3", "inverted dropout rate on hidden activations"},
    {"activation", 1, OPT_ACT, "F", "relu", "relu, allrelu, sigmoid or tanh"},
    {"init", 1, OPT_INIT, "S", "he", "initial and regrown weight scale: he (sqrt(6/I), the dense fan-in; "
                                     "SET's) or he-sparse (sqrt(6/k), k the neuron's present inputs)"},
    {"pad-input", 0, OPT_PAD, NULL, NULL, "pad the input with zero features up to a multiple of --motif "
                                          "(inside the model; the data file is unchanged)"},
    {"seed", 1, OPT_SEED, "S", "1", "seed of every random draw (topology, init, shuffle, dropout, regrowth)"},
    {"train-limit", 1, OPT_LIMIT, "N", "all", "train on the first N training samples"},
    {"backend", 1, OPT_BACKEND, "B", "auto", "cpu, gpu, or auto (gpu when a CUDA device is present)"},
    {"threads", 1, OPT_THREADS, "T", "all cores", "CPU threads (OpenMP)"},
    {"out", 1, OPT_OUT, "DIR", "results/runs/<data>_m<M>_s<S>_<time>", "run folder (must not hold a run already)"},
    {"no-standardize", 0, OPT_NOSTD, NULL, NULL, "do not standardise features with training-set statistics"},
    {"quiet", 0, OPT_QUIET, NULL, NULL, "print only the settings and the final summary"},
    {"checkpoint-every", 1, OPT_CKPT, "N", "0: at the end and on a signal only", "also write checkpoint.h5 after every N epochs"},
    {"resume", 1, OPT_RESUME, "DIR", NULL, "continue the run in DIR from its checkpoint.h5 (its settings; "
                                           "only --threads, --backend, --quiet, --checkpoint-every, --data, "
                                           "--allow-data-change may be given)"},
    {"allow-data-change", 0, OPT_ALLOW_DATA, NULL, NULL, "with --resume: continue although the data "
                                                        "file's contents differ from the run's start"},
    {"help", 0, OPT_HELP, NULL, NULL, "show this help"},
};
#define N_OPTS ((int)(sizeof opts / sizeof opts[0]))

static void train_usage(FILE *f)
{
    fprintf(f, "usage: settrain train --data FILE.h5 [OPTIONS]\n\n"
               "Trains a motif-sparse MLP (input - hidden... - classes) with SET on the data\n"
               "file and writes metrics.csv (one row per epoch), run.json and checkpoint.h5 to\n"
               "the run folder. SIGTERM, SIGINT, SIGUSR1 or SIGHUP finish the current batch, write the\n"
               "checkpoint and exit with status 3; `settrain train --resume DIR` continues.\n\n"
               "options:\n");
    for (int i = 0; i < N_OPTS; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", opts[i].name, opts[i].metavar ? " " : "",
                 opts[i].metavar ? opts[i].metavar : "");
        fprintf(f, "  %-24s %s", left, opts[i].help);
        if (opts[i].def)
            fprintf(f, " [%s]", opts[i].def);
        fputc('\n', f);
    }
}

static int bad_value(const char *opt, const char *val, const char *want)
{
    fprintf(stderr, "settrain: error: --%s '%s': %s\n", opt, val, want);
    return -1;
}

static int parse_hidden(const char *s, st_config *c)
{
    char buf[1024];
    if (strlen(s) >= sizeof buf)
        return bad_value("hidden", s, "too long");
    strcpy(buf, s);
    c->n_hidden = 0;
    char *save = NULL;
    if (!strcmp(buf, "") || buf[strlen(buf) - 1] == ',' || buf[0] == ',' || strstr(buf, ",,"))
        return bad_value("hidden", s, "expected comma-separated positive integers, e.g. 3000,3000,3000");
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        long v;
        if (c->n_hidden == ST_MAX_HIDDEN)
            return bad_value("hidden", s, "too many hidden layers (at most 64)");
        if (st_parse_int(t, 1, 100000000, &v))
            return bad_value("hidden", s, "expected comma-separated positive integers, e.g. 3000,3000,3000");
        c->hidden[c->n_hidden++] = (int32_t)v;
    }
    return 0;
}

/* Parse argv into c; returns 0, 1 for --help shown, or -1 on error. */
static int parse_train_args(int argc, char **argv, st_config *c)
{
    struct option lo[N_OPTS + 1];
    for (int i = 0; i < N_OPTS; i++)
        lo[i] = (struct option){opts[i].name, opts[i].has_arg ? required_argument : no_argument,
                                NULL, opts[i].id};
    lo[N_OPTS] = (struct option){0, 0, 0, 0};
    optind = 1;
    opterr = 0;
    int ch;
    long iv;
    double dv;
    const char *defining = NULL; /* an option that defines the run (not allowed with --resume) */
    while ((ch = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
        const char *name = NULL;
        for (int i = 0; i < N_OPTS; i++)
            if (opts[i].id == ch)
                name = opts[i].name;
        if (ch != OPT_THREADS && ch != OPT_BACKEND && ch != OPT_QUIET && ch != OPT_CKPT &&
            ch != OPT_RESUME && ch != OPT_DATA && ch != OPT_ALLOW_DATA && ch != OPT_HELP &&
            ch != 'h' && ch != ':' && ch != '?' && name)
            defining = name;
        switch (ch) {
        case OPT_DATA:
            if (strlen(optarg) >= sizeof c->data) return bad_value(name, optarg, "path too long");
            strcpy(c->data, optarg);
            break;
        case OPT_HIDDEN: if (parse_hidden(optarg, c)) return -1; break;
        case OPT_MOTIF:
            if (st_parse_int(optarg, 1, 1 << 20, &iv)) return bad_value(name, optarg, "expected an integer >= 1");
            c->motif = (int)iv;
            break;
        case OPT_EPSILON:
            if (st_parse_double(optarg, 1e-9, 1e9, &dv)) return bad_value(name, optarg, "expected a number > 0");
            c->epsilon = dv;
            break;
        case OPT_ZETA:
            if (st_parse_double(optarg, 0, 1, &dv) || dv >= 1) return bad_value(name, optarg, "expected a number in [0, 1)");
            c->zeta = dv;
            break;
        case OPT_EPOCHS:
            if (st_parse_int(optarg, 1, 1000000, &iv)) return bad_value(name, optarg, "expected an integer >= 1");
            c->epochs = (int)iv;
            break;
        case OPT_BATCH:
            if (st_parse_int(optarg, 1, 4096, &iv)) return bad_value(name, optarg, "expected an integer in 1..4096");
            c->batch = (int)iv;
            break;
        case OPT_LR:
            if (st_parse_double(optarg, 0, 1e6, &dv) || dv == 0) return bad_value(name, optarg, "expected a number > 0");
            c->lr = dv;
            break;
        case OPT_MOMENTUM:
            if (st_parse_double(optarg, 0, 1, &dv) || dv >= 1) return bad_value(name, optarg, "expected a number in [0, 1)");
            c->momentum = dv;
            break;
        case OPT_WD:
            if (st_parse_double(optarg, 0, 1e6, &dv)) return bad_value(name, optarg, "expected a number >= 0");
            c->weight_decay = dv;
            break;
        case OPT_DROPOUT:
            if (st_parse_double(optarg, 0, 1, &dv) || dv >= 1) return bad_value(name, optarg, "expected a number in [0, 1)");
            c->dropout = dv;
            break;
        case OPT_ACT: {
            int found = -1;
            for (int a = 0; a < ST_ACT_COUNT; a++)
                if (!strcmp(optarg, st_activation_names[a]))
                    found = a;
            if (found < 0) return bad_value(name, optarg, "expected relu, allrelu, sigmoid or tanh");
            c->activation = (st_activation)found;
            break;
        }
        case OPT_INIT: {
            int found = -1;
            for (int a = 0; a < ST_INIT_COUNT; a++)
                if (!strcmp(optarg, st_init_names[a]))
                    found = a;
            if (found < 0) return bad_value(name, optarg, "expected he or he-sparse");
            c->init = (st_init)found;
            break;
        }
        case OPT_PAD: c->pad_input = 1; break;
        case OPT_SEED:
            if (st_parse_u64(optarg, &c->seed)) return bad_value(name, optarg, "expected a non-negative integer");
            break;
        case OPT_LIMIT:
            if (st_parse_int(optarg, 1, (long)1 << 40, &iv)) return bad_value(name, optarg, "expected an integer >= 1");
            c->train_limit = iv;
            break;
        case OPT_BACKEND: {
            int found = -1;
            for (int b = 0; b < ST_BACKEND_COUNT; b++)
                if (!strcmp(optarg, st_backend_names[b]))
                    found = b;
            if (found < 0) return bad_value(name, optarg, "expected cpu, gpu or auto");
            c->backend = (st_backend_kind)found;
            break;
        }
        case OPT_THREADS:
            if (st_parse_int(optarg, 1, 4096, &iv)) return bad_value(name, optarg, "expected an integer >= 1");
            c->threads = (int)iv;
            break;
        case OPT_OUT:
            if (strlen(optarg) >= sizeof c->out - 64) return bad_value(name, optarg, "path too long");
            strcpy(c->out, optarg);
            break;
        case OPT_NOSTD: c->standardize = 0; break;
        case OPT_CKPT:
            if (st_parse_int(optarg, 1, 1000000, &iv)) return bad_value(name, optarg, "expected an integer >= 1");
            c->checkpoint_every = (int)iv;
            break;
        case OPT_RESUME:
            if (strlen(optarg) >= sizeof c->resume - 64) return bad_value(name, optarg, "path too long");
            strcpy(c->resume, optarg);
            break;
        case OPT_QUIET: c->quiet = 1; break;
        case OPT_ALLOW_DATA: c->allow_data_change = 1; break;
        case 'h':
        case OPT_HELP: train_usage(stdout); return 1;
        case ':':
            fprintf(stderr, "settrain: error: option '%s' needs a value (see settrain train --help)\n",
                    argv[optind - 1]);
            return -1;
        default:
            fprintf(stderr, "settrain: error: unknown option '%s' (see settrain train --help)\n",
                    argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "settrain: error: unexpected argument '%s' (see settrain train --help)\n",
                argv[optind]);
        return -1;
    }
    if (c->resume[0] && defining) {
        fprintf(stderr, "settrain: error: --%s cannot be combined with --resume: a resumed run keeps "
                        "the settings in its checkpoint\n", defining);
        return -1;
    }
    if (c->allow_data_change && !c->resume[0]) {
        fprintf(stderr, "settrain: error: --allow-data-change is only meaningful with --resume\n");
        return -1;
    }
    if (!c->data[0] && !c->resume[0]) {
        fprintf(stderr, "settrain: error: --data FILE.h5 is required (see settrain train --help)\n");
        return -1;
    }
    return 0;
}

int cmd_train(int argc, char **argv)
{
    st_config cfg;
    config_defaults(&cfg);
    int r = parse_train_args(argc, argv, &cfg);
    if (r > 0)
        return ST_EXIT_OK;
    if (r < 0)
        return ST_EXIT_USAGE;
    return train_run(&cfg);
}
