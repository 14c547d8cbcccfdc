/* train.h: the host side of a training run (src/train/train.c): train_run,
 * which `settrain train` calls once its options are parsed, and the
 * epoch's sample order. */
#ifndef ST_TRAIN_H
#define ST_TRAIN_H

#include "train/config.h"
#include "data/dataset.h"
#include "model/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The epoch's sample order: Fisher-Yates over 0..n-1 from Philox
 * (seed, SHUFFLE, 0, i, 0, epoch). perm: n entries, host. */
void train_shuffle(uint64_t seed, int epoch, int64_t n, int64_t *perm);

/* Run a whole training as configured; returns the process exit code. */
int train_run(const st_config *cfg);

#ifdef __cplusplus
}
#endif

#endif
