/* common.c: error reporting, checked allocation, timing, number parsing. */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* madvise's MADV_HUGEPAGE */
#include "util/common.h"

#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void (*g_die_hook)(const char *msg);

void st_set_die_hook(void (*hook)(const char *msg))
{
    g_die_hook = hook;
}

void st_die(const char *fmt, ...)
{
    va_list ap;
    char msg[2 * ST_ERRLEN];
    fflush(stdout);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "settrain: error: %s\n", msg);
    /* The hook runs once: an error inside it must not recurse. */
    void (*hook)(const char *) = g_die_hook;
    g_die_hook = NULL;
    if (hook)
        hook(msg);
    exit(ST_EXIT_ERROR);
}

void st_warn(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "settrain: warning: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int st_fail(char *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, ST_ERRLEN, fmt, ap);
    va_end(ap);
    return -1;
}

/* Large buffers (weights, indices, activations of wide layers) ask for
 * transparent huge pages: Debian's default THP mode is "madvise", and the
 * gathers of a wide layer touch a 4 KiB page per connection, so with small
 * pages most of them also miss the TLB (3 x 300k hidden: a training step
 * 12% faster with huge pages). Only the page-aligned inside of the buffer is
 * advised; where THP is off or "always" the call changes nothing. */
static void hint_huge(void *p, size_t n)
{
#ifdef MADV_HUGEPAGE
    if (n < ((size_t)8 << 20))
        return;
    const uintptr_t pg = 4096, a = ((uintptr_t)p + pg - 1) & ~(pg - 1),
                    e = ((uintptr_t)p + n) & ~(pg - 1);
    if (e > a)
        (void)madvise((void *)a, e - a, MADV_HUGEPAGE); /* advice only: failure is harmless */
#else
    (void)p;
    (void)n;
#endif
}

void *st_malloc_(size_t n, const char *what, const char *file, int line)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        st_die("out of memory allocating %zu bytes for %s (%s:%d)", n, what, file, line);
    hint_huge(p, n);
    return p;
}

void *st_calloc_(size_t n, size_t size, const char *what, const char *file, int line)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        st_die("out of memory allocating %zu x %zu bytes for %s (%s:%d)", n, size, what,
               file, line);
    if (size && n <= SIZE_MAX / size)
        hint_huge(p, n * size);
    return p;
}

double st_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int st_parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int st_parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v) || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int st_parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (*s == '-')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end != '\0')
        return -1;
    *out = (uint64_t)v;
    return 0;
}

int st_mkdirs(const char *path, char *err)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return st_fail(err, "%s: path is empty or too long", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return st_fail(err, "%s: cannot create directory: %s", buf, strerror(errno));
            buf[i] = c;
        }
    }
    return 0;
}

int st_check_regular_input(const char *path, char *err)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return st_fail(err, "%s: cannot open: %s", path, strerror(errno));
    const char *kind = S_ISDIR(sb.st_mode)    ? NULL
                       : S_ISFIFO(sb.st_mode) ? "a FIFO (named pipe)"
                       : S_ISCHR(sb.st_mode)  ? "a character device"
                       : S_ISBLK(sb.st_mode)  ? "a block device"
                       : S_ISSOCK(sb.st_mode) ? "a socket"
                       : S_ISREG(sb.st_mode)  ? ""
                                              : "not a regular file";
    if (!kind)
        return st_fail(err, "%s: is a directory, not a file", path);
    if (kind[0])
        return st_fail(err, "%s: is %s, not a regular file (settrain reads its inputs only "
                       "from regular files)", path, kind);
    /* Readable? O_NONBLOCK: should the path have been replaced by a FIFO
     * since the stat, the open still returns at once (and fstat says so). */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return st_fail(err, "%s: cannot open: %s", path, strerror(errno));
    int rc = fstat(fd, &sb);
    close(fd);
    if (rc != 0 || !S_ISREG(sb.st_mode))
        return st_fail(err, "%s: is not a regular file (it changed while being opened)", path);
    return 0;
}
