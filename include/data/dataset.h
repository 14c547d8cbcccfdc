/* dataset.h: the HDF5 data format of DESIGN.md (format_version 1) and the
 * converters that produce it (Fashion-MNIST IDX, scikit-feature MAT).
 *
 * In memory, features are sample-major as stored: x_train is (n_train, d)
 * row-major, host memory; labels are int32 in 0..k-1.
 * Every fallible function returns 0 on success or -1 after writing one line
 * "FILE: problem" into err (ST_ERRLEN bytes). Nothing here exits. */
#ifndef ST_DATASET_H
#define ST_DATASET_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ST_DATA_FORMAT_VERSION 1
/* Most classes a data file may declare (root attribute n_classes): 2^20.
 * The output layer has one neuron per class; a larger count is a corrupt
 * or mistaken attribute (or labels that are not classes), refused with the
 * attribute's name before any layer is sized from it. */
#define ST_DATA_MAX_CLASSES (1 << 20)

typedef struct {
    int64_t n_train, n_test; /* samples in each split (n_test may be 0)     */
    int64_t d;               /* features                                    */
    int32_t k;               /* classes                                     */
    float *x_train;          /* (n_train, d) host                           */
    int32_t *y_train;        /* n_train host, 0..k-1                        */
    float *x_test;           /* (n_test, d) host                            */
    int32_t *y_test;         /* n_test host                                 */
    int64_t *label_values;   /* k original labels (class c was label_values[c]); may be NULL */
    char name[256];          /* root attribute "name"                       */
    char source[1024];       /* root attribute "source"                     */
} st_dataset;

/* 0 when path is a regular file this process can read; else -1 with one
 * line naming the file and what it is instead (a directory, a FIFO, a
 * device, a socket) or why it cannot be opened: st_check_regular_input of
 * common.h, which never blocks on a FIFO or a device. Every reader below
 * (and the checkpoint reader) checks its input with it first. */
int dataset_check_input(const char *path, char *err);

/* Read and validate a data file: every dataset present with the right rank,
 * type and shape, n_train >= 1, labels in 0..n_classes-1, all features
 * finite, attributes consistent. */
int dataset_load_h5(const char *path, st_dataset *ds, char *err);
/* Write ds to path (replacing it) in format_version 1. */
int dataset_save_h5(const char *path, const st_dataset *ds, char *err);
void dataset_free(st_dataset *ds);

/* Fashion-MNIST: read the gzip IDX files train-images-idx3-ubyte.gz,
 * train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and
 * t10k-labels-idx1-ubyte.gz from src_dir; pixels / 255. */
int prepare_fmnist(const char *src_dir, st_dataset *ds, char *err);

/* One gzip IDX file. Images: magic 0x00000803, (n, rows, cols) uint8 ->
 * *pix (n * rows * cols, host, caller frees). Labels: magic 0x00000801, n uint8. */
int idx_read_images(const char *path, uint8_t **pix, int64_t *n, int64_t *rows,
                    int64_t *cols, char *err);
int idx_read_labels(const char *path, uint8_t **lab, int64_t *n, char *err);

/* scikit-feature MAT file (v4 and v5 through libmatio, v7.3 through HDF5):
 * variables X (samples x features, any numeric class) and Y (labels, any
 * numeric class, integral values) -> *x (n, d) row-major double and *y (n)
 * int64, host, caller frees. */
int mat_read_xy(const char *path, double **x, int64_t *n, int64_t *d, int64_t **y,
                char *err);
/* Stratified seeded split of a MAT file into ds (labels mapped to 0..K-1 in
 * sorted order, the original values kept in ds->label_values). */
int prepare_mat(const char *path, double test_fraction, uint64_t seed, st_dataset *ds,
                char *err);

/* Standardisation and padding (src/data/standardize.c). */
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

#ifdef __cplusplus
}
#endif

#endif
