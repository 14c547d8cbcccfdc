/* checkpoint.h: the run state that a checkpoint carries besides the model,
 * and the checkpoint file (results/runs/<name>/checkpoint.h5, HDF5,
 * format_version 2; version 1 files still load): configuration, model (topology, weights, momentum,
 * biases, standardisation statistics) and run state. Every random draw of a
 * run is a pure function of (seed, stream, layer, epoch, counters), so the
 * seed and the epoch position are the complete generator state. */
#ifndef ST_CHECKPOINT_H
#define ST_CHECKPOINT_H

#include <stdint.h>

#include "train/config.h"
#include "model/model.h"
#include "train/rundir.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 2 adds the run id and the data fingerprint; version 1 files still load
 * (without them: resume cannot check the folder's identity or the data). */
#define ST_CHECKPOINT_FORMAT_VERSION 2

typedef struct {
    int epochs_done;              /* completed epochs (trained, evaluated, evolved)   */
    int64_t next_sample;          /* > 0: epoch epochs_done + 1 was interrupted here  */
    double part_loss;             /* ... with this summed training loss so far        */
    int64_t part_correct;         /* ... this many correct training predictions       */
    double part_t_train;          /* ... and this many seconds of training            */
    double best_acc, final_acc;   /* test accuracy: best and last (NaN: none yet)     */
    int best_epoch;
    double sum_epoch_after_first; /* seconds of epochs 2.. (for the mean)             */
    double first_epoch_s;
    int64_t evolutions_checked;   /* evolutions whose invariant was checked           */
    double wall_s;                /* wall seconds of every session so far             */
    double ckpt_s;                /* seconds spent writing checkpoints, all sessions  */
    double ckpt_last_s;           /* the last checkpoint write (this process)         */
    char started[32];             /* ISO 8601 start of the first session              */
    char run_id[ST_RUN_ID_LEN + 1]; /* "" in a format_version 1 checkpoint            */
    int has_fingerprint;          /* data_fp is known (format_version >= 2)           */
    st_data_fingerprint data_fp;  /* the data the run started on                      */
} st_run_state;

/* Write dir/checkpoint.h5 atomically and durably (temporary file in dir,
 * fsync, rename): at every moment dir holds one complete checkpoint. The
 * model must be current on the host (backend sync_model). */
int checkpoint_save(const char *dir, const st_config *cfg, const st_model *m,
                    const st_run_state *rs, char *err);

/* Read and validate a checkpoint file: cfg gets the stored configuration
 * (data path, network, optimiser, seed; not out, threads, backend, quiet),
 * m the model (allocated; model_free it), rs the run state. Any
 * inconsistency (shapes, index ranges, unsorted columns, non-finite values)
 * is an error naming the file. */
int checkpoint_load(const char *path, st_config *cfg, st_model *m, st_run_state *rs,
                    char *err);

#ifdef __cplusplus
}
#endif

#endif
