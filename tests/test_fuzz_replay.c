/* test_fuzz_replay.c: replays every input the fuzzers found (crashes, leaks,
 * timeouts, out-of-memory) through the reader that failed on it, in the
 * normal build (make test) and under the sanitizers (make sanitize): each
 * must now end in success or in a clean one-line error,
 * never a crash, a sanitizer report or a broken contract (tests/fuzz/
 * targets.h says what each fuzz target checks). Also checks that the fuzz
 * targets themselves accept valid files and refuse an empty one, so that a
 * replay cannot pass by never reaching the reader.
 *
 * Inputs live in tests/fuzz_regressions/<target>/ (`make fuzz` copies new
 * findings there); tests/fuzz_regressions/library/<target>/ holds inputs
 * that crash inside a third-party library (libhdf5, matio), which this code
 * cannot fix: they are replayed too, a crash there is listed as known and
 * the test is marked skipped (the reader's contract must still hold);
 * library-hangs/<target>/ holds inputs on which the library never returns,
 * kept for the record and not replayed.
 * A file named refuse-* (a hand-made input) must moreover be refused.
 * $ST_FUZZ_REGRESSIONS overrides the folder. Each input runs in a child
 * process, so one crash names its file and the others still run. */
#define _GNU_SOURCE
#include "fuzz/targets.h"
#include "harness.h"

#include <dirent.h>
#include <hdf5.h>
#include <matio.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#if defined(__SANITIZE_ADDRESS__)
#define REPLAY_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define REPLAY_ASAN 1
#endif
#endif
#ifndef REPLAY_ASAN
#define REPLAY_ASAN 0
#endif

/* Seconds one input may take (every reader needs far less than one, under
 * the sanitizers too): a reader that loops or blocks fails the test after
 * this long instead of hanging it. */
#define REPLAY_SECONDS 20

static char regress_dir[4096];

/* The regressions folder: $ST_FUZZ_REGRESSIONS, else fuzz_regressions/ next
 * to this source file (make runs the tests from the repository root). */
static void find_regress_dir(void)
{
    const char *env = getenv("ST_FUZZ_REGRESSIONS");
    if (env && *env) {
        snprintf(regress_dir, sizeof regress_dir, "%s", env);
        return;
    }
    const char *slash = strrchr(__FILE__, '/');
    snprintf(regress_dir, sizeof regress_dir, "%.*s%sfuzz_regressions",
             slash ? (int)(slash - __FILE__) : 0, __FILE__, slash ? "/" : "");
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Whole file into *data (host, caller frees); -1 when unreadable. */
static int read_all(const char *path, uint8_t **data, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t cap = 1 << 16, len = 0, got;
    uint8_t *buf = st_malloc(cap, "replay input");
    while ((got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            uint8_t *grown = realloc(buf, cap *= 2);
            if (!grown)
                st_die("out of memory reading %s", path);
            buf = grown;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return -1;
    }
    *data = buf;
    *size = len;
    return 0;
}

/* Runs target t on data in a child process (quiet: its stderr, where a
 * sanitizer reports, goes to /dev/null; must_refuse: success breaks the
 * contract too). Returns "" when the child kept the contract, else a
 * description (static buffer) of what happened. */
static const char *run_in_child(const struct fuzz_target *t, const uint8_t *data,
                                size_t size, int quiet, int must_refuse)
{
    static char what[256];
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        st_die("fork failed: %s", strerror(errno));
    if (pid == 0) {
        char err[ST_ERRLEN] = "";
        if (quiet && !freopen("/dev/null", "w", stderr))
            exit(4);
        alarm(REPLAY_SECONDS); /* a hang fails (SIGALRM) instead of blocking the suite */
        const char *bad = t->run(data, size, err);
        if (bad) {
            printf("    contract broken: %s (err: '%s')\n", bad, err);
            exit(3);
        }
        if (must_refuse && !err[0]) {
            printf("    contract broken: the reader accepted an input it must refuse\n");
            exit(3);
        }
        exit(0); /* exit, not _exit: LeakSanitizer checks at exit */
    }
    int status;
    if (waitpid(pid, &status, 0) != pid)
        st_die("waitpid failed: %s", strerror(errno));
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
        snprintf(what, sizeof what, "did not finish within %d s (the reader hangs)",
                 REPLAY_SECONDS);
    else if (WIFSIGNALED(status))
        snprintf(what, sizeof what, "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else if (WEXITSTATUS(status) == 3)
        snprintf(what, sizeof what, "broke the reader contract (see above)");
    else if (WEXITSTATUS(status) != 0)
        snprintf(what, sizeof what,
                 "exited %d (a sanitizer report or settrain error above)",
                 WEXITSTATUS(status));
    else
        what[0] = '\0';
    return what;
}

/* Replays every regular file of dir through t; returns how many. A crash or
 * a sanitizer report fails the test, unless known_crashes is non-NULL: then
 * it is counted there and printed as a known crash of a library (a broken
 * contract always fails). */
static int replay_dir(const struct fuzz_target *t, const char *dir, int *known_crashes)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0; /* a target without findings has no folder */
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[8192];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (e->d_name[0] == '.' || stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        if (n == cap) {
            char **grown = realloc(names, (cap = cap ? 2 * cap : 16) * sizeof *names);
            if (!grown)
                st_die("out of memory listing %s", dir);
            names = grown;
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        char path[8192];
        uint8_t *data;
        size_t size;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (read_all(path, &data, &size) == 0) {
            const char *what = run_in_child(t, data, size, known_crashes != NULL,
                                            !strncmp(names[i], "refuse-", 7));
            if (what[0] && known_crashes && !strstr(what, "contract")) {
                printf("    known library crash: %s %s\n", path, what);
                (*known_crashes)++;
            } else {
                ST_EXPECT(!what[0], "%s (%s, %zu bytes) %s", path, t->name, size, what);
            }
            free(data);
        } else {
            ST_EXPECT(0, "cannot read %s", path);
        }
        free(names[i]);
    }
    free(names);
    return (int)n;
}

/* Every file under tests/fuzz_regressions/<target>/ ends cleanly. */
static void test_replay_regressions(void)
{
    struct stat sb;
    ST_EXPECT(stat(regress_dir, &sb) == 0 && S_ISDIR(sb.st_mode),
              "no regressions folder %s (run from the repository root or set "
              "ST_FUZZ_REGRESSIONS)", regress_dir);
    for (size_t i = 0; i < FUZZ_TARGET_COUNT; i++) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/%s", regress_dir, fuzz_targets[i].name);
        int n = replay_dir(&fuzz_targets[i], dir, NULL);
        printf("    %s: %d inputs replayed\n", fuzz_targets[i].name, n);
    }
}

/* Inputs that crash inside libhdf5 or matio themselves (see
 * tests/fuzz_regressions/library/README.md): this code cannot fix those
 * crashes, so a crash or sanitizer report is listed as known and the test
 * is marked skipped, naming them; the reader's own contract (a clean
 * one-line error when the library returns) must still hold. When the
 * library is fixed the crashes disappear and the test passes. */
static void test_replay_library_bugs(void)
{
    int known = 0, total = 0;
    for (size_t i = 0; i < FUZZ_TARGET_COUNT; i++) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/library/%s", regress_dir, fuzz_targets[i].name);
        int n = replay_dir(&fuzz_targets[i], dir, &known);
        if (n)
            printf("    library/%s: %d inputs replayed\n", fuzz_targets[i].name, n);
        total += n;
    }
    if (known)
        ST_SKIP("%d of %d inputs in %s/library/ still crash inside the library%s", known,
                total, regress_dir,
                REPLAY_ASAN ? " (or read out of bounds there: AddressSanitizer)" : "");
}

/* ------------------------------------------- the targets reach the readers */

static char tmpdir[64];

static uint8_t *file_bytes(const char *path, size_t *size)
{
    uint8_t *data;
    if (read_all(path, &data, size))
        st_die("cannot read back %s", path);
    return data;
}

/* Runs target `name` on data: expects success (want_ok) or a clean error. */
static void expect_target(const char *name, const uint8_t *data, size_t size, int want_ok)
{
    const struct fuzz_target *t = fuzz_target_find(name);
    char err[ST_ERRLEN] = "";
    ST_EXPECT(t != NULL, "no fuzz target %s", name);
    if (!t)
        return;
    const char *bad = t->run(data, size, err);
    ST_EXPECT(!bad, "%s: %s", name, bad);
    if (want_ok)
        ST_EXPECT(!err[0], "%s refused a valid input: %s", name, err);
    else
        ST_EXPECT(err[0], "%s accepted an invalid input", name);
}

/* An IDX file in memory: images (n x 2 x 3) or labels (n). */
static size_t idx_bytes(uint8_t *buf, int images, uint32_t n)
{
    uint32_t words[4] = {images ? 0x803u : 0x801u, n, 2, 3};
    size_t len = 0;
    for (int w = 0; w < (images ? 4 : 2); w++)
        for (int b = 3; b >= 0; b--)
            buf[len++] = (uint8_t)(words[w] >> (8 * b));
    for (uint32_t i = 0; i < (images ? n * 6 : n); i++)
        buf[len++] = (uint8_t)(i % 10);
    return len;
}

/* Each target accepts a valid file of its format and refuses an empty
 * input with a clean message: the replays above do reach the readers. */
static void test_targets_reach_readers(void)
{
    char path[512];
    uint8_t buf[128], *data;
    size_t len, size;

    len = idx_bytes(buf, 1, 4);
    expect_target("idx_images", buf, len, 1);
    expect_target("idx_labels", buf, len, 0); /* an image file is not a label file */
    len = idx_bytes(buf, 0, 5);
    expect_target("idx_labels", buf, len, 1);
    snprintf(path, sizeof path, "%s/labels.gz", tmpdir);
    gzFile gz = gzopen(path, "wb");
    ST_CHECK_IO(gz && gzwrite(gz, buf, (unsigned)len) == (int)len && gzclose(gz) == Z_OK);
    data = file_bytes(path, &size);
    expect_target("idx_gz", data, size, 0); /* images first: a labels file fails */
    free(data);

    st_dataset ds;
    char err[ST_ERRLEN];
    memset(&ds, 0, sizeof ds);
    float x[6] = {0.5f, -1, 2, 3, 4, 5};
    int32_t y[3] = {0, 1, 1};
    ds.n_train = 3;
    ds.d = 2;
    ds.k = 2;
    ds.x_train = x;
    ds.y_train = y;
    snprintf(path, sizeof path, "%s/data.h5", tmpdir);
    ST_EXPECT(dataset_save_h5(path, &ds, err) == 0, "%s", err);
    data = file_bytes(path, &size);
    expect_target("h5", data, size, 1);
    free(data);

    double xd[8] = {1, 2, 3, 4, 5, 6, 7, 8}, yd[4] = {3, 4, 3, 4};
    size_t xdims[2] = {4, 2}, ydims[2] = {4, 1};
    snprintf(path, sizeof path, "%s/data.mat", tmpdir);
    mat_t *mat = Mat_CreateVer(path, NULL, MAT_FT_MAT5);
    ST_CHECK_IO(mat);
    matvar_t *vx = Mat_VarCreate("X", MAT_C_DOUBLE, MAT_T_DOUBLE, 2, xdims, xd,
                                 MAT_F_DONT_COPY_DATA);
    matvar_t *vy = Mat_VarCreate("Y", MAT_C_DOUBLE, MAT_T_DOUBLE, 2, ydims, yd,
                                 MAT_F_DONT_COPY_DATA);
    ST_CHECK_IO(vx && vy && !Mat_VarWrite(mat, vx, MAT_COMPRESSION_NONE) &&
                !Mat_VarWrite(mat, vy, MAT_COMPRESSION_NONE));
    Mat_VarFree(vx);
    Mat_VarFree(vy);
    Mat_Close(mat);
    data = file_bytes(path, &size);
    expect_target("mat", data, size, 1);
    free(data);

    for (size_t i = 0; i < FUZZ_TARGET_COUNT; i++)
        expect_target(fuzz_targets[i].name, (const uint8_t *)"", 0, 0);
}

int main(void)
{
    find_regress_dir();
    snprintf(tmpdir, sizeof tmpdir, "/tmp/settrain-replay-XXXXXX");
    if (!mkdtemp(tmpdir))
        st_die("mkdtemp %s: %s", tmpdir, strerror(errno));
    ST_RUN(test_targets_reach_readers);
    ST_RUN(test_replay_regressions);
    ST_RUN(test_replay_library_bugs);
    char path[512];
    const char *files[] = {"labels.gz", "data.h5", "data.mat"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, files[i]);
        remove(path);
    }
    rmdir(tmpdir);
    return st_test_summary("test_fuzz_replay");
}
