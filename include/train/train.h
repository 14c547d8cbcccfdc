/* train.h: the host epoch loop and `settrain train`. */
#ifndef ST_TRAIN_H
#define ST_TRAIN_H

#include "config.h"
#include "dataset.h"
#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Standardise x (n, d) in place with mean/std; std == 0 divides by 1. */
void data_standardize(float *x, int64_t n, int64_t d, const float *mean, const float *std);
/* --pad-input: widen both splits to d_new >= d features, the new ones 0
 * (standardisation leaves them 0: their mean is 0 and a zero deviation
 * divides by 1). */
void data_pad_features(st_dataset *ds, int64_t d_new);
/* The padded width for a model of motif m: d rounded up to a multiple of m. */
static inline int64_t data_padded_width(int64_t d, int m)
{
    return (d + m - 1) / m * m;
}
/* Mean and standard deviation of each feature of x (n, d), in double. */
void data_feature_stats(const float *x, int64_t n, int64_t d, float *mean, float *std);

/* The epoch's sample order: Fisher-Yates over 0..n-1 from Philox
 * (seed, SHUFFLE, 0, i, 0, epoch). perm: n entries, host. */
void train_shuffle(uint64_t seed, int epoch, int64_t n, int64_t *perm);

/* Run a whole training as configured; returns the process exit code. */
int train_run(const st_config *cfg);

/* `settrain eval|predict|features ...` (argv[0] is the command). */
int cmd_model(int argc, char **argv);

/* `settrain train ...` (argv[0] == "train"). Returns the exit code. */
int cmd_train(int argc, char **argv);

#ifdef __cplusplus
}
#endif

#endif
