/* test_score.c: tests of `settrain score` (src/cli/score.c): the comprehensive
 * score S = w_R*R_r + w_A*(1 - A_r) on the paper's own FMNIST and Lung times
 * and accuracies, custom weights, the TIME:ACCURACY and --weights parsers,
 * the run.json member lookup, run folders, and the command's output and exit
 * codes (captured through score_cli with temporary files). */
#define _GNU_SOURCE
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/common.h"
#include "harness.h"
#include "cli/score.h"

/* true when v rounds to the 4-decimal value ref (the way the command prints) */
static int round4(double v, double ref)
{
    return fabs(v - ref) < 0.00005 + 1e-12;
}

/* S of each (t, a) against the first, with the given weights */
static void scores(const double *t, const double *a, int n, double wr, double wa, double *s)
{
    double rr, ar;
    for (int i = 0; i < n; i++)
        score_compute(t[0], a[0], t[i], a[i], wr, wa, &rr, &ar, &s[i]);
}

/* The paper's FMNIST runs (m = 1, 2, 4) give S 0.9000, 0.9102, 0.8819 with the
 * default weights 0.1, 0.9 (DESIGN.md: the paper prints 0.9100 and 0.8864). */
static void test_paper_fmnist(void)
{
    const double t[3] = {25236.2, 14307.5, 9209.3}, a[3] = {0.761, 0.733, 0.692};
    const double want[3] = {0.9000, 0.9102, 0.8819};
    double s[3];
    scores(t, a, 3, SCORE_DEFAULT_WR, SCORE_DEFAULT_WA, s);
    for (int i = 0; i < 3; i++)
        ST_EXPECT(round4(s[i], want[i]), "run %d: S %.6f, want %.4f", i, s[i], want[i]);
    double rr, ar, sv;
    score_compute(t[0], a[0], t[1], a[1], 0.1, 0.9, &rr, &ar, &sv);
    ST_EXPECT(st_close(rr, 10928.7 / 25236.2, 1e-12, 0), "R_r %.6f", rr);
    ST_EXPECT(st_close(ar, 0.028 / 0.761, 1e-12, 0), "A_r %.6f", ar);
}

/* The paper's Lung runs give S 0.9000, 0.9198, 0.9089. */
static void test_paper_lung(void)
{
    const double t[3] = {4953.2, 3448.7, 3417.3}, a[3] = {0.937, 0.926, 0.914};
    const double want[3] = {0.9000, 0.9198, 0.9089};
    double s[3];
    scores(t, a, 3, SCORE_DEFAULT_WR, SCORE_DEFAULT_WA, s);
    for (int i = 0; i < 3; i++)
        ST_EXPECT(round4(s[i], want[i]), "run %d: S %.6f, want %.4f", i, s[i], want[i]);
}

/* The baseline against itself: R_r 0, A_r 0, S = w_A exactly. */
static void test_baseline_row(void)
{
    double rr, ar, s;
    score_compute(123.4, 0.5, 123.4, 0.5, 0.3, 0.7, &rr, &ar, &s);
    ST_EXPECT(rr == 0 && ar == 0 && s == 0.7, "R_r %g A_r %g S %g", rr, ar, s);
}

/* Custom weights: 1,0 gives S = R_r; 0,1 gives 1 - A_r; 0.5,0.5 the mean; a
 * slower, more accurate run gives negative R_r and A_r. */
static void test_custom_weights(void)
{
    double rr, ar, s;
    score_compute(100, 0.8, 60, 0.7, 1, 0, &rr, &ar, &s);
    ST_EXPECT(st_close(s, 0.4, 1e-12, 0) && st_close(rr, 0.4, 1e-12, 0), "S %g R_r %g", s, rr);
    score_compute(100, 0.8, 60, 0.7, 0, 1, &rr, &ar, &s);
    ST_EXPECT(st_close(s, 1 - 0.125, 1e-12, 0) && st_close(ar, 0.125, 1e-12, 0), "S %g A_r %g",
              s, ar);
    score_compute(100, 0.8, 60, 0.7, 0.5, 0.5, &rr, &ar, &s);
    ST_EXPECT(st_close(s, 0.5 * 0.4 + 0.5 * 0.875, 1e-12, 0), "S %g", s);
    score_compute(100, 0.8, 150, 0.9, 0.1, 0.9, &rr, &ar, &s);
    ST_EXPECT(st_close(rr, -0.5, 1e-12, 0) && st_close(ar, -0.125, 1e-12, 0) &&
                  st_close(s, -0.05 + 0.9 * 1.125, 1e-12, 0),
              "R_r %g A_r %g S %g", rr, ar, s);
}

/* TIME:ACCURACY parsing: good pairs, malformed pairs, non-positive times,
 * accuracies outside [0, 1]; each error names the argument. */
static void test_parse_pair(void)
{
    char err[ST_ERRLEN];
    double t = -1, a = -1;
    ST_EXPECT(score_parse_pair("14307.5:0.733", &t, &a, err) == 0 && t == 14307.5 && a == 0.733,
              "t %g a %g", t, a);
    ST_EXPECT(score_parse_pair("1e3:1", &t, &a, err) == 0 && t == 1000 && a == 1, "t %g a %g", t,
              a);
    ST_EXPECT(score_parse_pair("5:0", &t, &a, err) == 0 && a == 0, "accuracy 0 is allowed");
    static const char *const malformed[] = {"14307.5", "a:b", "1:2:3", ":0.5", "1:", "1:0.5x",
                                            "", ":", "nan:0.5", "1:inf", "0x:0.5"};
    for (size_t i = 0; i < sizeof malformed / sizeof *malformed; i++) {
        err[0] = '\0';
        ST_EXPECT(score_parse_pair(malformed[i], &t, &a, err) == -1 && strstr(err, "malformed") &&
                      strstr(err, malformed[i]),
                  "'%s' accepted or err '%s'", malformed[i], err);
    }
    static const char *const nonpos[] = {"0:0.5", "-3:0.5", "-0:0.5"};
    for (size_t i = 0; i < sizeof nonpos / sizeof *nonpos; i++) {
        err[0] = '\0';
        ST_EXPECT(score_parse_pair(nonpos[i], &t, &a, err) == -1 && strstr(err, "not positive") &&
                      strstr(err, nonpos[i]),
                  "'%s' accepted or err '%s'", nonpos[i], err);
    }
    static const char *const badacc[] = {"1:1.5", "1:-0.1", "1:76.1"};
    for (size_t i = 0; i < sizeof badacc / sizeof *badacc; i++) {
        err[0] = '\0';
        ST_EXPECT(score_parse_pair(badacc[i], &t, &a, err) == -1 && strstr(err, "[0, 1]") &&
                      strstr(err, badacc[i]),
                  "'%s' accepted or err '%s'", badacc[i], err);
    }
}

/* --weights parsing: two non-negative numbers, nothing else. */
static void test_parse_weights(void)
{
    char err[ST_ERRLEN];
    double r = -1, q = -1;
    ST_EXPECT(score_parse_weights("0.1,0.9", &r, &q, err) == 0 && r == 0.1 && q == 0.9, "%g %g",
              r, q);
    ST_EXPECT(score_parse_weights("0,2", &r, &q, err) == 0 && r == 0 && q == 2, "%g %g", r, q);
    static const char *const bad[] = {"0.1", "0.1,0.9,0", "-0.1,0.9", "0.1,-0.9", "a,b", ",0.9",
                                      "0.1,", "", ",", "0.1;0.9", "inf,1", "0.1,nan"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = '\0';
        ST_EXPECT(score_parse_weights(bad[i], &r, &q, err) == -1 && strstr(err, "--weights"),
                  "'%s' accepted or err '%s'", bad[i], err);
    }
}

/* The run.json member lookup: whitespace anywhere, members only at the top
 * level, key-like text inside strings ignored, non-numbers reported. */
static void test_json_number(void)
{
    double v = 0;
    ST_EXPECT(score_json_number("{\"a\":1,\"total_wall_s\":12.5}", "total_wall_s", &v) == 0 &&
                  v == 12.5,
              "compact: %g", v);
    ST_EXPECT(score_json_number(" \n{ \"x\" : [1, {\"total_wall_s\": 3}],\n\t\"total_wall_s\"\n"
                                "  :\n -2.5e1 \n}\n",
                                "total_wall_s", &v) == 0 &&
                  v == -25,
              "spaced, nested decoy: %g", v);
    ST_EXPECT(score_json_number("{\"config\": {\"final_test_acc\": 0.5}}", "final_test_acc",
                                &v) == -1,
              "nested member must not match");
    ST_EXPECT(score_json_number("{\"data\": \"x\\\"final_test_acc\\\": 0.5\", \"n\": 1}",
                                "final_test_acc", &v) == -1,
              "text inside a string must not match");
    ST_EXPECT(score_json_number("{\"final_test_acc_x\": 0.5}", "final_test_acc", &v) == -1,
              "a longer key must not match");
    ST_EXPECT(score_json_number("{\"final_test_acc\": \"0.5\"}", "final_test_acc", &v) == -2,
              "a string value is not a number");
    ST_EXPECT(score_json_number("{\"final_test_acc\": null}", "final_test_acc", &v) == -2,
              "null is not a number");
    ST_EXPECT(score_json_number("{\"final_test_acc\": nan}", "final_test_acc", &v) == -2,
              "nan is not JSON");
    ST_EXPECT(score_json_number("{\"final_test_acc\": 0.5x}", "final_test_acc", &v) == -2,
              "trailing garbage");
    ST_EXPECT(score_json_number("[\"final_test_acc\", 1]", "final_test_acc", &v) == -1,
              "not an object");
    ST_EXPECT(score_json_number("", "final_test_acc", &v) == -1, "empty text");
    ST_EXPECT(score_json_number("{\"final_test_acc", "final_test_acc", &v) == -1,
              "unterminated string");
}

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f);
}

/* A temporary folder (removed by cleanup_dir) */
static char tmpdir[256];
static int make_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/test_score_XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static void cleanup_dir(void)
{
    static const char *const sub[] = {"m1_run/run.json", "m1_run", "m4_run/run.json", "m4_run",
                                      "empty", "partial/run.json", "partial", "badacc/run.json",
                                      "badacc"};
    char p[512];
    for (size_t i = 0; i < sizeof sub / sizeof *sub; i++) {
        snprintf(p, sizeof p, "%s/%s", tmpdir, sub[i]);
        if (remove(p) != 0 && errno != ENOENT)
            printf("    note: cannot remove %s\n", p);
    }
    rmdir(tmpdir);
}

static int mkrun(const char *name, const char *json)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    if (mkdir(p, 0777) != 0)
        return -1;
    if (!json)
        return 0;
    snprintf(p, sizeof p, "%s/%s/run.json", tmpdir, name);
    return write_file(p, json);
}

/* Runs score_cli with the given arguments (argv[0] "score" added); captures
 * stdout and stderr into the buffers and returns the exit code. */
static int run_cli(char *outb, size_t on, char *errb, size_t en, ...)
{
    char *argv[32] = {"score"};
    int argc = 1;
    va_list ap;
    va_start(ap, en);
    for (char *a; argc < 31 && (a = va_arg(ap, char *)) != NULL;)
        argv[argc++] = a;
    va_end(ap);
    FILE *o = tmpfile(), *e = tmpfile();
    if (!o || !e) {
        if (o) fclose(o);
        if (e) fclose(e);
        return -100;
    }
    int rc = score_cli(argc, argv, o, e);
    rewind(o);
    rewind(e);
    size_t n = fread(outb, 1, on - 1, o);
    outb[n] = '\0';
    n = fread(errb, 1, en - 1, e);
    errb[n] = '\0';
    fclose(o);
    fclose(e);
    return rc;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* The table: header, one aligned row per run, the paper's FMNIST S values;
 * the Lung values through --csv, exactly. */
static void test_cli_table_and_csv(void)
{
    char out[4096], err[1024];
    int rc = run_cli(out, sizeof out, err, sizeof err, "--base", "25236.2:0.761", "14307.5:0.733",
                     "9209.3:0.692", NULL);
    ST_EXPECT(rc == 0 && err[0] == '\0', "rc %d err '%s'", rc, err);
    ST_EXPECT(count_lines(out) == 4, "lines: %d\n%s", count_lines(out), out);
    ST_EXPECT(!strncmp(out, "run ", 4) && strstr(out, "time_s") && strstr(out, "accuracy") &&
                  strstr(out, "R_r") && strstr(out, "A_r"),
              "header:\n%s", out);
    ST_EXPECT(strstr(out, "0.9000\n") && strstr(out, "0.9102\n") && strstr(out, "0.8819\n"),
              "S values:\n%s", out);
    /* the baseline row shows R_r 0, A_r 0 */
    ST_EXPECT(strstr(out, "25236.2:0.761") && strstr(out, "0.0000  0.0000  0.9000"),
              "baseline row:\n%s", out);
    /* aligned: every line has the same length */
    int len = -1, aligned = 1;
    for (const char *p = out; *p;) {
        const char *nl = strchr(p, '\n');
        if (!nl)
            break;
        if (len >= 0 && (int)(nl - p) != len)
            aligned = 0;
        len = (int)(nl - p);
        p = nl + 1;
    }
    ST_EXPECT(aligned, "rows not aligned:\n%s", out);

    rc = run_cli(out, sizeof out, err, sizeof err, "--csv", "--base", "4953.2:0.937",
                 "3448.7:0.926", "3417.3:0.914", NULL);
    const char *want = "run,time_s,accuracy,R_r,A_r,S\n"
                       "4953.2:0.937,4953.2,0.937,0.0000,0.0000,0.9000\n"
                       "3448.7:0.926,3448.7,0.926,0.3037,0.0117,0.9198\n"
                       "3417.3:0.914,3417.3,0.914,0.3101,0.0245,0.9089\n";
    ST_EXPECT(rc == 0 && !strcmp(out, want), "rc %d csv:\n%s", rc, out);

    /* without --base the first run is the baseline; --base may come last */
    char out2[4096];
    rc = run_cli(out2, sizeof out2, err, sizeof err, "--csv", "3448.7:0.926", "3417.3:0.914",
                 "--base=4953.2:0.937", NULL);
    ST_EXPECT(rc == 0 && !strcmp(out2, want), "rc %d csv:\n%s", rc, out2);
    rc = run_cli(out2, sizeof out2, err, sizeof err, "--csv", "4953.2:0.937", "3448.7:0.926",
                 "3417.3:0.914", NULL);
    ST_EXPECT(rc == 0 && !strcmp(out2, want), "rc %d csv:\n%s", rc, out2);

    /* a lone baseline is one row */
    rc = run_cli(out, sizeof out, err, sizeof err, "--csv", "--base", "10:0.5", NULL);
    ST_EXPECT(rc == 0 && count_lines(out) == 2, "rc %d:\n%s", rc, out);
}

/* --weights changes S (and the baseline's S is w_A); bad weights are usage
 * errors (exit 2) with one line naming --weights. */
static void test_cli_weights(void)
{
    char out[4096], err[1024];
    int rc = run_cli(out, sizeof out, err, sizeof err, "--csv", "--weights", "0.5,0.5", "--base",
                     "100:0.8", "60:0.7", NULL);
    ST_EXPECT(rc == 0 && strstr(out, "100:0.8,100,0.8,0.0000,0.0000,0.5000\n") &&
                  strstr(out, "60:0.7,60,0.7,0.4000,0.1250,0.6375\n"),
              "rc %d:\n%s", rc, out);
    rc = run_cli(out, sizeof out, err, sizeof err, "--weights=1,0", "--csv", "100:0.8", "60:0.7",
                 NULL);
    ST_EXPECT(rc == 0 && strstr(out, "60:0.7,60,0.7,0.4000,0.1250,0.4000\n"), "rc %d:\n%s", rc,
              out);
    rc = run_cli(out, sizeof out, err, sizeof err, "--weights", "-0.1,0.9", "100:0.8", NULL);
    ST_EXPECT(rc == 2 && count_lines(err) == 1 && strstr(err, "settrain: error: --weights") &&
                  strstr(err, "-0.1,0.9") && out[0] == '\0',
              "rc %d err '%s'", rc, err);
    rc = run_cli(out, sizeof out, err, sizeof err, "100:0.8", "--weights", NULL);
    ST_EXPECT(rc == 2 && count_lines(err) == 1 && strstr(err, "--weights"), "rc %d err '%s'", rc,
              err);
}

/* Bad input: each error is exit 1 (runs) or 2 (options), one line on stderr
 * starting "settrain: error:" and naming the argument, nothing on stdout. */
static void test_cli_errors(void)
{
    struct {
        const char *args[4];
        int rc;
        const char *names;
    } cases[] = {
        {{NULL}, 1, "no run given"},
        {{"--csv", NULL}, 1, "no run given"},
        {{"--base", "25236.2:0.761", "14307.5", NULL}, 1, "14307.5"},
        {{"--base", "25236.2:0.761", "14307.5:0.7:3", NULL}, 1, "14307.5:0.7:3"},
        {{"--base", "0:0.761", "1:0.5", NULL}, 1, "0:0.761"},
        {{"25236.2:0.761", "-5:0.5", NULL}, 1, "-5:0.5"},
        {{"25236.2:0.761", "10:1.2", NULL}, 1, "10:1.2"},
        {{"25236.2:0.761", "10:-0.2", NULL}, 1, "10:-0.2"},
        {{"--base", "25236.2:0", "10:0.5", NULL}, 1, "25236.2:0"},
        {{"25236.2:0.761", "--frob", NULL}, 2, "--frob"},
        {{"25236.2:0.761", "--base", NULL}, 2, "--base"},
        {{"--base", "1:0.5", "--base", "2:0.5"}, 2, "2:0.5"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char out[4096], err[1024];
        const char *const *a = cases[i].args;
        int rc = run_cli(out, sizeof out, err, sizeof err, a[0], a[0] ? a[1] : NULL,
                         a[0] && a[1] ? a[2] : NULL, a[0] && a[1] && a[2] ? a[3] : NULL, NULL);
        ST_EXPECT(rc == cases[i].rc && count_lines(err) == 1 &&
                      !strncmp(err, "settrain: error: ", 17) && strstr(err, cases[i].names) &&
                      out[0] == '\0',
                  "case %zu: rc %d (want %d) out '%s' err '%s'", i, rc, cases[i].rc, out, err);
    }
}

/* --help documents the formula, the options and the exit codes, exit 0. */
static void test_cli_help(void)
{
    char out[8192], err[1024];
    int rc = run_cli(out, sizeof out, err, sizeof err, "--help", NULL);
    ST_EXPECT(rc == 0 && err[0] == '\0' && strstr(out, "usage: settrain score") &&
                  strstr(out, "S   = w_R * R_r + w_A * (1 - A_r)") && strstr(out, "--weights") &&
                  strstr(out, "--csv") && strstr(out, "--base") &&
                  strstr(out, "total_wall_s") && strstr(out, "final_test_acc"),
              "rc %d:\n%s", rc, out);
}

/* Run folders: run.json read for T and A, rows labelled with the base name
 * (trailing slashes dropped), mixed with pairs; a folder without run.json,
 * without a member, or with an accuracy out of range is an error naming it. */
static void test_run_dirs(void)
{
    if (make_tmpdir())
        ST_SKIP("cannot create a temporary folder: %s", strerror(errno));
    int ok = mkrun("m1_run", "{\n  \"status\": \"finished\",\n  \"config\": {\"motif\": 1},\n"
                             "  \"total_wall_s\": 4953.200000,\n"
                             "  \"final_test_acc\": 0.937000,\n  \"best_epoch\": 3\n}\n") == 0 &&
             mkrun("m4_run", "{\"final_test_acc\":0.914,\"total_wall_s\":3417.3}") == 0 &&
             mkrun("empty", NULL) == 0 &&
             mkrun("partial", "{\"total_wall_s\": 12.0, \"config\": {\"final_test_acc\": 0.5}}") == 0 &&
             mkrun("badacc", "{\"total_wall_s\": 12.0, \"final_test_acc\": 93.7}") == 0;
    ST_EXPECT(ok, "cannot write the test folders under %s", tmpdir);
    if (!ok) {
        cleanup_dir();
        return;
    }
    char p1[512], p4[512], pe[512], pp[512], pb[512], out[4096], err[1024];
    snprintf(p1, sizeof p1, "%s/m1_run", tmpdir);
    snprintf(p4, sizeof p4, "%s/m4_run/", tmpdir);
    snprintf(pe, sizeof pe, "%s/empty", tmpdir);
    snprintf(pp, sizeof pp, "%s/partial", tmpdir);
    snprintf(pb, sizeof pb, "%s/badacc", tmpdir);

    double t = 0, a = 0;
    char e[ST_ERRLEN];
    ST_EXPECT(score_read_run_dir(p1, &t, &a, e) == 0 && t == 4953.2 && a == 0.937, "t %g a %g",
              t, a);

    int rc = run_cli(out, sizeof out, err, sizeof err, "--csv", "--base", p1, "3448.7:0.926", p4,
                     NULL);
    ST_EXPECT(rc == 0 && !strcmp(out, "run,time_s,accuracy,R_r,A_r,S\n"
                                      "m1_run,4953.2,0.937,0.0000,0.0000,0.9000\n"
                                      "3448.7:0.926,3448.7,0.926,0.3037,0.0117,0.9198\n"
                                      "m4_run,3417.3,0.914,0.3101,0.0245,0.9089\n"),
              "rc %d err '%s' out:\n%s", rc, err, out);

    struct {
        const char *dir, *what;
    } bad[] = {{pe, "no run.json"}, {pp, "final_test_acc"}, {pb, "[0, 1]"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        rc = run_cli(out, sizeof out, err, sizeof err, "--base", p1, bad[i].dir, NULL);
        ST_EXPECT(rc == 1 && count_lines(err) == 1 && strstr(err, bad[i].dir) &&
                      strstr(err, bad[i].what) && out[0] == '\0',
                  "%s: rc %d err '%s'", bad[i].dir, rc, err);
    }
    cleanup_dir();
}

int main(void)
{
    ST_RUN(test_paper_fmnist);
    ST_RUN(test_paper_lung);
    ST_RUN(test_baseline_row);
    ST_RUN(test_custom_weights);
    ST_RUN(test_parse_pair);
    ST_RUN(test_parse_weights);
    ST_RUN(test_json_number);
    ST_RUN(test_cli_table_and_csv);
    ST_RUN(test_cli_weights);
    ST_RUN(test_cli_errors);
    ST_RUN(test_cli_help);
    ST_RUN(test_run_dirs);
    return st_test_summary("test_score");
}
