/* outfile.h: every file settrain writes goes through here, so that no
 * command can destroy what it did not mean to replace:
 *  - a target that exists but is not a regular file (a device such as
 *    /dev/null, a FIFO, a socket, a directory) is refused; a symbolic link is
 *    followed only to a regular file, which is then replaced in place of the
 *    link's target (the link stays);
 *  - an output that is one of the command's own inputs is refused;
 *  - an existing output is refused unless the command was given --force;
 *  - the file is written to a temporary file beside the target, flushed
 *    (fsync'ed when durable), and renamed over it: on any failure (a full
 *    disk, an unwritable folder) the temporary file is removed and the
 *    previous file, if there was one, is unchanged.
 * Every function returns 0 on success or -1 after writing "PATH: problem"
 * into err (ST_ERRLEN bytes). */
#ifndef ST_OUTFILE_H
#define ST_OUTFILE_H

#include <stdio.h>
#include <sys/types.h>

#include "util/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* "a FIFO", "a character device", ... for a stat mode. */
const char *st_file_kind(mode_t mode);

/* The path to write for target `path`: path itself when it does not exist
 * or is a regular file, the link's final target when it is a symbolic link
 * to a regular file; any other existing kind is refused. resolved holds
 * cap bytes. */
int st_output_resolve(const char *path, char *resolved, size_t cap, char *err);

/* 1 when a and b both exist and are the same file (device and inode). */
int st_same_file(const char *a, const char *b);

/* The checks of a command's output before any work is done: the target's
 * kind (as st_output_resolve), not one of the n inputs (NULL entries are
 * skipped), not a file of a training run (checkpoint.h5, run.json or
 * metrics.csv in a run folder), and, unless force, not existing. `flag`
 * names the option in messages ("--out"). */
int st_output_check(const char *path, const char *flag, const char *const *inputs, int n,
                    int force, char *err);

/* An output file being written: f is a temporary file beside the target. */
typedef struct {
    FILE *f;
    char target[4200]; /* the resolved target path        */
    char tmp[4300];    /* the temporary file, same folder */
    int existed;       /* the target existed when opened  */
} st_outfile;

int st_outfile_open(st_outfile *o, const char *path, char *err);
/* Flush (fsync when durable), close and rename over the target. On failure
 * the temporary file is removed and the target left as it was. */
int st_outfile_commit(st_outfile *o, int durable, char *err);
/* Give up: close and remove the temporary file. */
void st_outfile_abort(st_outfile *o);


#ifdef __cplusplus
}
#endif

#endif
