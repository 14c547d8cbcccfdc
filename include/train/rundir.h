/* rundir.h: the run folder as a unit that one process owns at a time.
 *
 * A folder holds a run when any of its files is there: metrics.csv,
 * run.json, checkpoint.h5 or run.lock. A new run claims its folder
 * atomically by creating run.lock with O_EXCL (two runs into one --out:
 * exactly one wins); the run, and a resumed run, hold a POSIX record lock
 * (fcntl F_SETLK, which also works on NFS, where flock may not) on run.lock
 * for their whole life, and write "pid PID host HOST" into it, so a second
 * process gets one error naming the holder. The lock ends with the process,
 * however it ends.
 *
 * A run is identified by a run id (16 hex digits, random) written to the
 * checkpoint, run.json and metrics.csv; resume refuses a checkpoint whose id
 * differs from the folder's. The data a run trains on is identified by a
 * fingerprint (shapes and a 64-bit hash of every dataset's values). */
#ifndef ST_RUNDIR_H
#define ST_RUNDIR_H

#include <stdint.h>

#include "data/dataset.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ST_RUN_LOCK_NAME "run.lock"
#define ST_RUN_ID_LEN 16

/* 1 when name is one of a run's own files (metrics.csv, run.json,
 * checkpoint.h5, run.lock). */
int st_is_run_file_name(const char *name);
/* 1 when dir holds any of a run's files. */
int st_dir_holds_run(const char *dir);

/* Claim dir for a new run (created with its parents when missing): fails
 * when it holds a run already or another process is claiming it. On
 * success *lock_fd is the locked run.lock (keep it open). */
int st_run_claim(const char *dir, int *lock_fd, char *err);
/* Lock the existing run in dir (resume): fails naming the holder when
 * another process has it. */
int st_run_lock(const char *dir, int *lock_fd, char *err);

/* A new random run id (ST_RUN_ID_LEN hex digits and a NUL). */
void st_run_id_new(char *out);

/* The run id recorded in dir/run.json or dir/metrics.csv: 1 found (id),
 * 0 absent (the file or its id; a run from before run ids), -1 error. */
int st_run_id_of_file(const char *path, char *id, char *err);

typedef struct {
    int64_t n_train, n_test, d;
    int32_t k;
    uint64_t hash; /* values of /train/X, /train/y, /test/X, /test/y */
} st_data_fingerprint;

/* The fingerprint of a data set as loaded (before --train-limit and
 * standardisation). */
void st_data_fingerprint_of(const st_dataset *ds, st_data_fingerprint *fp);

#ifdef __cplusplus
}
#endif

#endif
