/* common.h: error reporting, checked allocation, timing and small helpers
 * shared by every host source file.
 *
 * Errors a user can cause (bad files, bad options) are reported with
 * st_error()/st_die(): one line "settrain: error: ..." and a non-zero exit.
 * Programming or system failures go through the ST_CHECK_* macros, which
 * name the failing call, file:line and the library's own message. */
#ifndef ST_COMMON_H
#define ST_COMMON_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ST_VERSION "0.1.0"

/* Exit codes (documented in the README). */
#define ST_EXIT_OK 0
#define ST_EXIT_ERROR 1   /* bad input, bad option, I/O failure */
#define ST_EXIT_USAGE 2   /* command line could not be parsed */
#define ST_EXIT_INTERRUPTED 3 /* stopped by SIGTERM/SIGINT/SIGUSR1; checkpoint written */

/* Size of the error buffers that fallible functions fill ("FILE: problem"). */
#define ST_ERRLEN 512

/* Print "settrain: error: <msg>" to stderr and exit with ST_EXIT_ERROR. */
void st_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* A function st_die calls (once) after printing its message and before
 * exiting, e.g. to mark a run's run.json failed; NULL removes it. */
void st_set_die_hook(void (*hook)(const char *msg));
/* Print "settrain: warning: <msg>" to stderr. */
void st_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Format into err (ST_ERRLEN bytes) and return -1: `return st_fail(err, "...")`. */
int st_fail(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Checked allocation: on failure names the call site and the byte count. */
void *st_malloc_(size_t n, const char *what, const char *file, int line);
void *st_calloc_(size_t n, size_t size, const char *what, const char *file, int line);
#define st_malloc(n, what) st_malloc_((n), (what), __FILE__, __LINE__)
#define st_calloc(n, s, what) st_calloc_((n), (s), (what), __FILE__, __LINE__)

/* libc I/O check: on failure prints the call, file:line and strerror(errno). */
#define ST_CHECK_IO(call)                                                          \
    do {                                                                           \
        if (!(call))                                                               \
            st_die("%s failed at %s:%d: %s", #call, __FILE__, __LINE__,           \
                   strerror(errno));                                               \
    } while (0)

/* Monotonic wall clock in seconds. */
double st_now(void);

/* Parse helpers for the command line: return 0 on success, -1 when the text
 * is not a complete number in range (the caller reports the option name). */
int st_parse_int(const char *s, long lo, long hi, long *out);
int st_parse_double(const char *s, double lo, double hi, double *out);
int st_parse_u64(const char *s, uint64_t *out);

/* Create a directory and its parents (mkdir -p). Returns 0 or -1 with err. */
int st_mkdirs(const char *path, char *err);

/* 0 when path names a regular file (after following symbolic links) that
 * this process can open for reading; else -1 with one line in err (ST_ERRLEN
 * bytes): "PATH: cannot open: <reason>", "PATH: is a directory, not a file",
 * or "PATH: is a FIFO (named pipe) | a character device | a block device |
 * a socket, not a regular file". Nothing is opened that is not a regular
 * file, and the readability check opens non-blocking, so that a FIFO or a
 * device given as an input cannot block the process. Every reader of an
 * input file (data, MAT, IDX, checkpoint, run.json) calls it first. */
int st_check_regular_input(const char *path, char *err);

#ifdef __cplusplus
}
#endif

#endif
