/* outfile.c: safe output files (see outfile.h): target kind checks,
 * refusal of a command's own inputs and of a run's files, and atomic
 * replacement through a temporary file in the target's folder. */
#define _GNU_SOURCE
#include "util/outfile.h"

#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "train/rundir.h"

const char *st_file_kind(mode_t mode)
{
    if (S_ISREG(mode)) return "a regular file";
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISLNK(mode)) return "a symbolic link";
    return "not a regular file";
}

int st_output_resolve(const char *path, char *resolved, size_t cap, char *err)
{
    struct stat sb;
    if (!path[0])
        return st_fail(err, "the output path is empty");
    if (lstat(path, &sb) != 0) {
        if (errno != ENOENT)
            return st_fail(err, "%s: cannot inspect the output path: %s", path, strerror(errno));
        if (strlen(path) >= cap)
            return st_fail(err, "%s: path too long", path);
        strcpy(resolved, path);
        return 0;
    }
    if (S_ISLNK(sb.st_mode)) {
        char real[PATH_MAX];
        struct stat tb;
        if (!realpath(path, real) || stat(real, &tb) != 0)
            return st_fail(err, "%s: a symbolic link whose target does not exist; settrain "
                                "follows a link only to an existing regular file", path);
        if (!S_ISREG(tb.st_mode))
            return st_fail(err, "%s: a symbolic link to %s (%s); settrain writes only regular "
                                "files", path, real, st_file_kind(tb.st_mode));
        if (strlen(real) >= cap)
            return st_fail(err, "%s: path too long", real);
        strcpy(resolved, real);
        return 0;
    }
    if (!S_ISREG(sb.st_mode))
        return st_fail(err, "%s: exists and is %s; settrain writes only regular files and "
                            "never replaces anything else", path, st_file_kind(sb.st_mode));
    if (strlen(path) >= cap)
        return st_fail(err, "%s: path too long", path);
    strcpy(resolved, path);
    return 0;
}

int st_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (!a || !b || stat(a, &sa) != 0 || stat(b, &sb) != 0)
        return 0;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* The folder part of path ("." when there is none) into dir (cap bytes). */
static void parent_of(const char *path, char *dir, size_t cap)
{
    char copy[PATH_MAX];
    snprintf(copy, sizeof copy, "%s", path);
    snprintf(dir, cap, "%s", dirname(copy));
}

int st_output_check(const char *path, const char *flag, const char *const *inputs, int n,
                    int force, char *err)
{
    char target[PATH_MAX];
    if (st_output_resolve(path, target, sizeof target, err))
        return -1;
    for (int i = 0; i < n; i++)
        if (inputs[i] && st_same_file(target, inputs[i]))
            return st_fail(err, "%s %s: is also an input of this command (%s); choose another "
                                "output file", flag, path, inputs[i]);
    char dir[PATH_MAX], base[PATH_MAX];
    parent_of(target, dir, sizeof dir);
    snprintf(base, sizeof base, "%s", target);
    const char *name = basename(base);
    if (st_is_run_file_name(name) && st_dir_holds_run(dir))
        return st_fail(err, "%s %s: is a file of the training run in %s; choose an output "
                            "outside run folders", flag, path, dir);
    if (!force && access(target, F_OK) == 0)
        return st_fail(err, "%s %s: exists; add --force to replace it", flag, path);
    return 0;
}

int st_outfile_open(st_outfile *o, const char *path, char *err)
{
    memset(o, 0, sizeof *o);
    if (st_output_resolve(path, o->target, sizeof o->target, err))
        return -1;
    o->existed = access(o->target, F_OK) == 0;
    if (snprintf(o->tmp, sizeof o->tmp, "%s.tmp.XXXXXX", o->target) >= (int)sizeof o->tmp)
        return st_fail(err, "%s: path too long", path);
    int fd = mkstemp(o->tmp);
    if (fd < 0)
        return st_fail(err, "%s: cannot create a temporary file beside it: %s", path,
                       strerror(errno));
    /* mkstemp creates mode 0600; give the file the usual umask-based mode. */
    mode_t um = umask(0);
    umask(um);
    if (fchmod(fd, 0666 & ~um) != 0 || !(o->f = fdopen(fd, "w"))) {
        int e = errno;
        close(fd);
        unlink(o->tmp);
        return st_fail(err, "%s: cannot write: %s", path, strerror(e));
    }
    return 0;
}

static void fsync_parent(const char *path)
{
    char dir[PATH_MAX];
    parent_of(path, dir, sizeof dir);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd); /* best effort: the rename is already visible */
        close(dfd);
    }
}

int st_outfile_commit(st_outfile *o, int durable, char *err)
{
    int bad = ferror(o->f) != 0;
    bad |= fflush(o->f) != 0;
    int e = errno;
    if (!bad && durable && fsync(fileno(o->f)) != 0) {
        bad = 1;
        e = errno;
    }
    if (fclose(o->f) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    o->f = NULL;
    if (!bad && rename(o->tmp, o->target) != 0) {
        bad = 1;
        e = errno;
    }
    if (bad) {
        unlink(o->tmp);
        return st_fail(err, "%s: cannot write: %s; %s", o->target, strerror(e ? e : EIO),
                       o->existed ? "the previous file is unchanged" : "nothing was written");
    }
    if (durable)
        fsync_parent(o->target);
    return 0;
}

void st_outfile_abort(st_outfile *o)
{
    if (o->f)
        fclose(o->f);
    o->f = NULL;
    if (o->tmp[0])
        unlink(o->tmp);
}
