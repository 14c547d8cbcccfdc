/* rundir.c: run folder recognition, claiming and locking, run ids and the
 * data fingerprint (see rundir.h). */
#define _GNU_SOURCE
#include "train/rundir.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/common.h"

static const char *const run_files[] = {"metrics.csv", "run.json", "checkpoint.h5",
                                        ST_RUN_LOCK_NAME};
#define N_RUN_FILES (int)(sizeof run_files / sizeof run_files[0])

int st_is_run_file_name(const char *name)
{
    for (int i = 0; i < N_RUN_FILES; i++)
        if (!strcmp(name, run_files[i]))
            return 1;
    return 0;
}

/* The first run file present in dir, or NULL. */
static const char *first_run_file(const char *dir, int skip_lock)
{
    char p[4400];
    for (int i = 0; i < N_RUN_FILES; i++) {
        if (skip_lock && !strcmp(run_files[i], ST_RUN_LOCK_NAME))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, run_files[i]);
        if (access(p, F_OK) == 0)
            return run_files[i];
    }
    return NULL;
}

int st_dir_holds_run(const char *dir)
{
    return first_run_file(dir, 0) != NULL;
}

/* "pid 123 host node7" from the lock file (or what F_GETLK says). */
static void describe_holder(int fd, char *buf, size_t cap)
{
    char text[256] = "";
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    if (n > 0) {
        text[n] = '\0';
        text[strcspn(text, "\n")] = '\0';
    }
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (text[0])
        snprintf(buf, cap, "%s", text);
    else if (fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK)
        snprintf(buf, cap, "pid %ld", (long)fl.l_pid);
    else
        snprintf(buf, cap, "pid unknown");
}

/* Take the write lock on fd and record this process in it. */
static int lock_and_stamp(int fd, const char *dir, const char *lockpath, char *err)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(fd, F_SETLK, &fl) != 0) {
        if (errno == EACCES || errno == EAGAIN) {
            char who[300];
            describe_holder(fd, who, sizeof who);
            return st_fail(err, "%s: the run is in use by another settrain process (%s); "
                                "wait for it to end or stop it first", dir, who);
        }
        return st_fail(err, "%s: cannot lock: %s", lockpath, strerror(errno));
    }
    char host[256] = "unknown", stamp[300];
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    int n = snprintf(stamp, sizeof stamp, "pid %ld host %s\n", (long)getpid(), host);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, stamp, (size_t)n, 0) != n)
        return st_fail(err, "%s: cannot write: %s", lockpath, strerror(errno));
    return 0;
}

int st_run_claim(const char *dir, int *lock_fd, char *err)
{
    char lockpath[4400];
    *lock_fd = -1;
    struct stat sb;
    if (stat(dir, &sb) == 0 && !S_ISDIR(sb.st_mode))
        return st_fail(err, "%s: exists and is not a directory; choose another --out", dir);
    if (st_mkdirs(dir, err))
        return -1;
    snprintf(lockpath, sizeof lockpath, "%s/%s", dir, ST_RUN_LOCK_NAME);
    int fd = open(lockpath, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) {
        if (errno != EEXIST)
            return st_fail(err, "%s: cannot create: %s", lockpath, strerror(errno));
        char who[300] = "";
        int rfd = open(lockpath, O_RDWR | O_CLOEXEC);
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
        if (rfd >= 0 && fcntl(rfd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK)
            describe_holder(rfd, who, sizeof who);
        if (rfd >= 0)
            close(rfd);
        if (who[0])
            return st_fail(err, "%s already holds a run, in use now by another settrain process "
                                "(%s); choose another --out", dir, who);
        return st_fail(err, "%s already holds a run (%s); choose another --out or continue it "
                            "with --resume %s", dir, ST_RUN_LOCK_NAME, dir);
    }
    if (lock_and_stamp(fd, dir, lockpath, err)) {
        close(fd);
        return -1;
    }
    /* A run from before run.lock existed is recognised by its other files. */
    const char *other = first_run_file(dir, 1);
    if (other) {
        unlink(lockpath);
        close(fd);
        return st_fail(err, "%s already holds a run (%s); choose another --out or continue it "
                            "with --resume %s", dir, other, dir);
    }
    *lock_fd = fd;
    return 0;
}

int st_run_lock(const char *dir, int *lock_fd, char *err)
{
    char lockpath[4400];
    *lock_fd = -1;
    snprintf(lockpath, sizeof lockpath, "%s/%s", dir, ST_RUN_LOCK_NAME);
    int fd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0)
        return st_fail(err, "%s: cannot open: %s", lockpath, strerror(errno));
    if (lock_and_stamp(fd, dir, lockpath, err)) {
        close(fd);
        return -1;
    }
    *lock_fd = fd;
    return 0;
}

void st_run_id_new(char *out)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r = ((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec ^
            ((uint64_t)getpid() << 40);
    }
    snprintf(out, ST_RUN_ID_LEN + 1, "%016llx", (unsigned long long)r);
}

/* Copy 16 hex digits at s into id; 1 when they are there. */
static int take_id(const char *s, char *id)
{
    for (int i = 0; i < ST_RUN_ID_LEN; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    memcpy(id, s, ST_RUN_ID_LEN);
    id[ST_RUN_ID_LEN] = '\0';
    return 1;
}

int st_run_id_of_file(const char *path, char *id, char *err)
{
    struct stat sb;
    if (stat(path, &sb) != 0 && errno == ENOENT)
        return 0;
    if (st_check_regular_input(path, err)) /* a FIFO would block fopen */
        return -1;
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT)
            return 0;
        return st_fail(err, "%s: cannot read: %s", path, strerror(errno));
    }
    char line[8192];
    int found = 0;
    size_t plen = strlen(path);
    int csv = plen >= 4 && !strcmp(path + plen - 4, ".csv");
    if (csv) {
        /* metrics.csv: the last column of the first data row (header names it run_id). */
        if (fgets(line, sizeof line, f) && strstr(line, ",run_id") && fgets(line, sizeof line, f)) {
            char *c = strrchr(line, ',');
            found = c && take_id(c + 1, id);
        }
    } else {
        while (!found && fgets(line, sizeof line, f)) {
            char *p = strstr(line, "\"run_id\": \"");
            if (p)
                found = take_id(p + 11, id);
        }
    }
    fclose(f);
    return found;
}

/* 64-bit hash over a byte range, four independent lanes of 8-byte words
 * (a change anywhere changes the result with overwhelming probability; not
 * meant to resist deliberate collisions). */
static uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static uint64_t hash_bytes(uint64_t seed, const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h[4] = {seed ^ 0x9e3779b97f4a7c15ull, seed + 1, seed ^ 0x632be59bd9b4e019ull,
                     seed - 1};
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int l = 0; l < 4; l++) {
            uint64_t w;
            memcpy(&w, b + i + 8 * l, 8);
            h[l] = (h[l] ^ w) * 0x100000001b3ull + (h[l] >> 29);
        }
    uint64_t tail = 0;
    for (size_t j = 0; i + j < n; j++)
        tail = (tail << 8) | b[i + j];
    return mix(mix(h[0]) ^ mix(h[1] + 1) ^ mix(h[2] + 2) ^ mix(h[3] + 3) ^ mix(tail ^ n));
}

void st_data_fingerprint_of(const st_dataset *ds, st_data_fingerprint *fp)
{
    fp->n_train = ds->n_train;
    fp->n_test = ds->n_test;
    fp->d = ds->d;
    fp->k = ds->k;
    uint64_t h = mix((uint64_t)ds->n_train ^ ((uint64_t)ds->n_test << 32) ^
                     ((uint64_t)ds->d << 16) ^ (uint64_t)ds->k);
    h = hash_bytes(h, ds->x_train, sizeof(float) * (size_t)ds->n_train * (size_t)ds->d);
    h = hash_bytes(h, ds->y_train, sizeof(int32_t) * (size_t)ds->n_train);
    if (ds->n_test > 0) {
        h = hash_bytes(h, ds->x_test, sizeof(float) * (size_t)ds->n_test * (size_t)ds->d);
        h = hash_bytes(h, ds->y_test, sizeof(int32_t) * (size_t)ds->n_test);
    }
    fp->hash = h;
}
