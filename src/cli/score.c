/* score.c: `settrain score`: computes the paper's comprehensive score
 * S = w_R * R_r + w_A * (1 - A_r), with the time reduction rate
 * R_r = (T_base - T)/T_base and the accuracy reduction rate
 * A_r = (A_base - A)/A_base, of each run against a baseline run, from
 * TIME:ACCURACY pairs or run folders (run.json: total_wall_s, final_test_acc),
 * and prints them as an aligned table or as CSV. */
#include "cli/score.h"
#include "cli/commands.h"

#include <ctype.h>
#include <math.h>
#include <sys/stat.h>

#include "util/common.h"

void score_compute(double t_base, double a_base, double t, double a, double w_r, double w_a,
                   double *rr, double *ar, double *s)
{
    double r = (t_base - t) / t_base;
    double q = (a_base - a) / a_base;
    *rr = r;
    *ar = q;
    *s = w_r * r + w_a * (1.0 - q);
}

/* Range checks shared by pairs and run folders; `what` names the source. */
static int check_run(const char *what, double t, double a, char *err)
{
    if (!(t > 0))
        return st_fail(err, "%s: time %g is not positive (seconds > 0 expected)", what, t);
    if (!(a >= 0 && a <= 1))
        return st_fail(err, "%s: accuracy %g is outside [0, 1] (give a fraction, not a percent)",
                       what, a);
    return 0;
}

int score_parse_pair(const char *arg, double *t, double *a, char *err)
{
    const char *colon = strchr(arg, ':');
    char buf[128];
    size_t n = colon ? (size_t)(colon - arg) : 0;
    if (!colon || strchr(colon + 1, ':') || n == 0 || n >= sizeof buf)
        return st_fail(err, "'%s': malformed TIME:ACCURACY pair (expected e.g. 14307.5:0.733)", arg);
    memcpy(buf, arg, n);
    buf[n] = '\0';
    double tv, av;
    if (st_parse_double(buf, -HUGE_VAL, HUGE_VAL, &tv) ||
        st_parse_double(colon + 1, -HUGE_VAL, HUGE_VAL, &av))
        return st_fail(err, "'%s': malformed TIME:ACCURACY pair (expected e.g. 14307.5:0.733)", arg);
    char what[ST_ERRLEN / 2];
    snprintf(what, sizeof what, "'%s'", arg);
    if (check_run(what, tv, av, err))
        return -1;
    *t = tv;
    *a = av;
    return 0;
}

int score_parse_weights(const char *arg, double *w_r, double *w_a, char *err)
{
    const char *comma = strchr(arg, ',');
    char buf[128];
    size_t n = comma ? (size_t)(comma - arg) : 0;
    double r, q;
    if (!comma || strchr(comma + 1, ',') || n == 0 || n >= sizeof buf)
        goto bad;
    memcpy(buf, arg, n);
    buf[n] = '\0';
    if (st_parse_double(buf, 0, HUGE_VAL, &r) || st_parse_double(comma + 1, 0, HUGE_VAL, &q))
        goto bad;
    *w_r = r + 0.0; /* + 0.0 turns -0 into 0 */
    *w_a = q + 0.0;
    return 0;
bad:
    return st_fail(err, "--weights '%s': expected two non-negative numbers W_R,W_A, e.g. 0.1,0.9",
                   arg);
}

/* Pointer to the value of the top-level member `key`, or NULL. Strings are
 * skipped with their escapes, so a key-like text inside a value never matches;
 * only members of the outermost object (depth 1) are considered. */
static const char *json_top_member(const char *js, const char *key)
{
    size_t klen = strlen(key);
    const char *p = js;
    while (isspace((unsigned char)*p))
        p++;
    if (*p != '{')
        return NULL;
    int depth = 0;
    for (; *p; p++) {
        if (*p == '{' || *p == '[') {
            depth++;
        } else if (*p == '}' || *p == ']') {
            if (--depth <= 0)
                return NULL;
        } else if (*p == '"') {
            const char *s = ++p;
            while (*p && *p != '"')
                p += (*p == '\\' && p[1]) ? 2 : 1;
            if (!*p)
                return NULL; /* unterminated string */
            size_t slen = (size_t)(p - s);
            const char *q = p + 1;
            while (isspace((unsigned char)*q))
                q++;
            if (*q == ':' && depth == 1 && slen == klen && !memcmp(s, key, klen)) {
                q++;
                while (isspace((unsigned char)*q))
                    q++;
                return q;
            }
        }
    }
    return NULL;
}

int score_json_number(const char *json, const char *key, double *out)
{
    const char *v = json_top_member(json, key);
    if (!v)
        return -1;
    /* A JSON number starts with '-' or a digit (strtod alone would also take
     * "nan", "inf", hex and a leading '+'). */
    if (!(*v == '-' || isdigit((unsigned char)*v)))
        return -2;
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || !isfinite(d))
        return -2;
    while (isspace((unsigned char)*end))
        end++;
    if (*end != ',' && *end != '}')
        return -2;
    *out = d;
    return 0;
}

/* Reads a whole (small) file into a NUL-terminated buffer; NULL with err. */
static char *read_text(const char *path, char *err)
{
    if (st_check_regular_input(path, err)) /* a FIFO or device would block fopen */
        return NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        st_fail(err, "%s: cannot read: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = st_malloc(cap, "run.json");
    for (;;) {
        if (n + 1 >= cap) {
            if (cap >= ((size_t)64 << 20)) {
                free(buf);
                fclose(f);
                st_fail(err, "%s: larger than 64 MiB, not a run.json", path);
                return NULL;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                fclose(f);
                st_fail(err, "%s: out of memory", path);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        st_fail(err, "%s: read error", path);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

int score_read_run_dir(const char *dir, double *t, double *a, char *err)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/run.json", dir) >= (int)sizeof path)
        return st_fail(err, "%s: path too long", dir);
    struct stat sb;
    if (stat(path, &sb) != 0)
        return st_fail(err, "%s: no run.json in this folder (expected a run folder written by "
                            "settrain train, or a TIME:ACCURACY pair)", dir);
    char *js = read_text(path, err);
    if (!js)
        return -1;
    static const char *const keys[2] = {"total_wall_s", "final_test_acc"};
    double v[2];
    for (int i = 0; i < 2; i++) {
        int r = score_json_number(js, keys[i], &v[i]);
        if (r) {
            free(js);
            return st_fail(err, "%s: %s \"%s\"", path,
                           r == -1 ? "no top-level member" : "not a finite number:", keys[i]);
        }
    }
    free(js);
    if (check_run(path, v[0], v[1], err))
        return -1;
    *t = v[0];
    *a = v[1];
    return 0;
}

typedef struct {
    char *label;
    double t, a, rr, ar, s;
} score_row;

/* A row label: the pair as given, or the folder's base name. */
static char *make_label(const char *arg, int is_dir)
{
    size_t n = strlen(arg);
    const char *b = arg;
    if (is_dir) {
        while (n > 1 && arg[n - 1] == '/')
            n--;
        for (size_t i = 0; i + 1 < n; i++)
            if (arg[i] == '/')
                b = arg + i + 1;
        n -= (size_t)(b - arg);
    }
    char *s = st_malloc(n + 1, "score label");
    memcpy(s, b, n);
    s[n] = '\0';
    return s;
}

/* Resolve one RUN argument: a directory is a run folder, anything else a pair. */
static int load_run(const char *arg, score_row *row, char *err)
{
    struct stat sb;
    int is_dir = stat(arg, &sb) == 0 && S_ISDIR(sb.st_mode);
    int r = is_dir ? score_read_run_dir(arg, &row->t, &row->a, err)
                   : score_parse_pair(arg, &row->t, &row->a, err);
    if (r == 0)
        row->label = make_label(arg, is_dir);
    return r;
}

/* "%.4f" without a "-0.0000" for values that round to zero. */
static void fmt4(char *buf, size_t n, double v)
{
    snprintf(buf, n, "%.4f", v);
    if (!strcmp(buf, "-0.0000"))
        snprintf(buf, n, "0.0000");
}

static void csv_field(FILE *out, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, out);
        return;
    }
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', out);
        fputc(*s, out);
    }
    fputc('"', out);
}

static void print_rows(FILE *out, const score_row *rows, int n, int csv)
{
    char c[6][64];
    if (csv) {
        fprintf(out, "run,time_s,accuracy,R_r,A_r,S\n");
        for (int i = 0; i < n; i++) {
            fmt4(c[3], sizeof c[3], rows[i].rr);
            fmt4(c[4], sizeof c[4], rows[i].ar);
            fmt4(c[5], sizeof c[5], rows[i].s);
            csv_field(out, rows[i].label);
            fprintf(out, ",%.10g,%.10g,%s,%s,%s\n", rows[i].t, rows[i].a, c[3], c[4], c[5]);
        }
        return;
    }
    static const char *const head[6] = {"run", "time_s", "accuracy", "R_r", "A_r", "S"};
    int w[6];
    for (int j = 0; j < 6; j++)
        w[j] = (int)strlen(head[j]);
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            fprintf(out, "%-*s", w[0], head[0]);
            for (int j = 1; j < 6; j++)
                fprintf(out, "  %*s", w[j], head[j]);
            fputc('\n', out);
        }
        for (int i = 0; i < n; i++) {
            snprintf(c[1], sizeof c[1], "%.3f", rows[i].t);
            snprintf(c[2], sizeof c[2], "%.4f", rows[i].a);
            fmt4(c[3], sizeof c[3], rows[i].rr);
            fmt4(c[4], sizeof c[4], rows[i].ar);
            fmt4(c[5], sizeof c[5], rows[i].s);
            if (pass == 0) {
                int l = (int)strlen(rows[i].label);
                if (l > w[0])
                    w[0] = l;
                for (int j = 1; j < 6; j++)
                    if ((int)strlen(c[j]) > w[j])
                        w[j] = (int)strlen(c[j]);
            } else {
                fprintf(out, "%-*s", w[0], rows[i].label);
                for (int j = 1; j < 6; j++)
                    fprintf(out, "  %*s", w[j], c[j]);
                fputc('\n', out);
            }
        }
    }
}

static void score_usage(FILE *f)
{
    fprintf(f,
            "usage: settrain score [--weights W_R,W_A] [--csv] [--base] BASE [RUN...]\n"
            "\n"
            "Computes the paper's comprehensive score (its equation 1) of each run against\n"
            "a baseline run (the m = 1 run of the same configuration):\n"
            "  R_r = (T_base - T) / T_base        time reduction rate\n"
            "  A_r = (A_base - A) / A_base        accuracy reduction rate\n"
            "  S   = w_R * R_r + w_A * (1 - A_r)\n"
            "and prints one row per run, the baseline first (R_r 0, A_r 0, S = w_A), with the\n"
            "columns run, time_s, accuracy, R_r, A_r, S (R_r, A_r and S to 4 decimals).\n"
            "A negative R_r means slower than the baseline; a negative A_r, more accurate.\n"
            "\n"
            "Each run is TIME:ACCURACY (seconds > 0 and a fraction in [0, 1], e.g.\n"
            "14307.5:0.733), labelled as written, or a run folder of settrain train, whose\n"
            "run.json gives T = total_wall_s and A = final_test_acc, labelled with the\n"
            "folder's base name. Pairs and folders may be mixed. The baseline is the run\n"
            "after --base, or the first RUN when --base is not given; its accuracy must\n"
            "be above 0.\n"
            "\n"
            "options:\n"
            "  --base RUN               the baseline run [the first RUN]\n"
            "  --weights W_R,W_A        weights, two non-negative numbers [0.1,0.9]\n"
            "  --csv                    print CSV (run,time_s,accuracy,R_r,A_r,S) instead\n"
            "                           of the table\n"
            "  --help                   show this help\n"
            "\n"
            "Exit status: 0; 1 when no run is given or a run cannot be read or is out of\n"
            "range; 2 when the options cannot be parsed. Errors are one line on stderr.\n"
            "\n"
            "example: settrain score --base 25236.2:0.761 14307.5:0.733 9209.3:0.692\n");
}

/* Looks `name` up as "--name VALUE" or "--name=VALUE" at argv[*i]. Returns
 * 1 with *val set (advancing *i past a separate value), 0 when argv[*i] is
 * not this option, -1 when the value is missing. */
static int opt_value(int argc, char **argv, int *i, const char *name, const char **val)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n))
        return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *val = argv[++*i];
    return 1;
}

#define SCORE_ERR(...)                                                                   \
    do {                                                                                 \
        fflush(out);                                                                     \
        fprintf(errf, "settrain: error: ");                                              \
        fprintf(errf, __VA_ARGS__);                                                      \
        fputc('\n', errf);                                                               \
    } while (0)

int score_cli(int argc, char **argv, FILE *out, FILE *errf)
{
    double w_r = SCORE_DEFAULT_WR, w_a = SCORE_DEFAULT_WA;
    int csv = 0, only_runs = 0, nrun = 0;
    const char *base = NULL;
    char err[ST_ERRLEN];
    /* run arguments in order; the baseline goes first */
    const char **runs = st_calloc((size_t)argc + 1, sizeof *runs, "score runs");
    int rc = ST_EXIT_OK;
    score_row *rows = NULL;
    int nrows = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val;
        int r;
        /* "-5:0.7" and the like are runs (reported as bad pairs), not options */
        int looks_opt = a[0] == '-' && a[1] != '\0' && !isdigit((unsigned char)a[1]) && a[1] != '.';
        if (only_runs || !looks_opt) {
            runs[1 + nrun++] = a;
        } else if (!strcmp(a, "--")) {
            only_runs = 1;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            score_usage(out);
            goto done;
        } else if (!strcmp(a, "--csv")) {
            csv = 1;
        } else if ((r = opt_value(argc, argv, &i, "--weights", &val)) != 0) {
            if (r < 0) {
                SCORE_ERR("option '--weights' needs a value W_R,W_A (see settrain score --help)");
                rc = ST_EXIT_USAGE;
                goto done;
            }
            if (score_parse_weights(val, &w_r, &w_a, err)) {
                SCORE_ERR("%s", err);
                rc = ST_EXIT_USAGE;
                goto done;
            }
        } else if ((r = opt_value(argc, argv, &i, "--base", &val)) != 0) {
            if (r < 0) {
                SCORE_ERR("option '--base' needs a value RUN (see settrain score --help)");
                rc = ST_EXIT_USAGE;
                goto done;
            }
            if (base) {
                SCORE_ERR("--base '%s': the baseline was already given as '%s'", val, base);
                rc = ST_EXIT_USAGE;
                goto done;
            }
            base = val;
        } else {
            SCORE_ERR("unknown option '%s' (see settrain score --help)", a);
            rc = ST_EXIT_USAGE;
            goto done;
        }
    }

    const char **list = runs + 1;
    if (base) {
        runs[0] = base;
        list = runs;
        nrun++;
    }
    if (nrun < 1) {
        SCORE_ERR("no run given: expected a baseline and runs to compare, as TIME:ACCURACY "
                  "pairs or run folders (see settrain score --help)");
        rc = ST_EXIT_ERROR;
        goto done;
    }
    rows = st_calloc((size_t)nrun, sizeof *rows, "score rows");
    for (; nrows < nrun; nrows++) {
        if (load_run(list[nrows], &rows[nrows], err)) {
            SCORE_ERR("%s", err);
            rc = ST_EXIT_ERROR;
            goto done;
        }
    }
    if (!(rows[0].a > 0)) {
        SCORE_ERR("baseline '%s': accuracy is 0, so the accuracy reduction rate A_r is undefined",
                  list[0]);
        rc = ST_EXIT_ERROR;
        goto done;
    }
    for (int i = 0; i < nrows; i++)
        score_compute(rows[0].t, rows[0].a, rows[i].t, rows[i].a, w_r, w_a, &rows[i].rr,
                      &rows[i].ar, &rows[i].s);
    print_rows(out, rows, nrows, csv);
    fflush(out);

done:
    for (int i = 0; i < nrows; i++)
        free(rows[i].label);
    free(rows);
    free(runs);
    return rc;
}

int cmd_score(int argc, char **argv)
{
    return score_cli(argc, argv, stdout, stderr);
}
