/* targets.h: the fuzz targets, one per data reader, shared by the libFuzzer
 * entry point (tests/fuzz/fuzz_main.c, built by `make fuzz`) and the replay
 * test (tests/test_fuzz_replay.c, run by `make test`), so that a saved crash
 * input goes through exactly the code that found it.
 *
 * Each target writes the input bytes to a file (as is, or gzip-compressed
 * for the IDX payload targets, so that the fuzzer mutates the header and the
 * pixels rather than the deflate stream), runs the reader on that file and
 * checks the reader's contract from dataset.h:
 *   - on success the output is well formed (sizes in range, labels in
 *     0..k-1, every feature finite) and every element is read once, so
 *     AddressSanitizer sees a short buffer;
 *   - on failure err holds one line that starts with the file name, and the
 *     outputs are left empty.
 * A target returns NULL when the contract held, else a sentence saying how
 * it broke (the caller aborts or records a test failure).
 *
 * Adding a target: a fuzz_run_<name> function here, a row in fuzz_targets[],
 * seeds in tests/fuzz/make_seeds.c, and one FUZZ_TARGET line in the Makefile.
 *
 * Targets (name: reader, input):
 *   h5          dataset_load_h5  the bytes of an HDF5 data file
 *   idx_gz      idx_read_images and idx_read_labels  the bytes of a .gz file
 *   idx_images  idx_read_images  the decompressed IDX file (gzipped here)
 *   idx_labels  idx_read_labels  the decompressed IDX file (gzipped here)
 *   mat         mat_read_xy, then prepare_mat on success  a MAT file
 * Legend: n samples, d features, k classes. */
#ifndef ST_FUZZ_TARGETS_H
#define ST_FUZZ_TARGETS_H

#include "util/common.h"
#include "train/checkpoint.h"
#include "data/dataset.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

/* ------------------------------------------------------------ input file */

/* The one scratch file of this process: "<dir>/settrain-fuzz-XXXXXX" in
 * /dev/shm when it exists (no disk traffic), else $TMPDIR or /tmp; created
 * on first use and removed at exit. */
static char fuzz_path_buf[512];

static void fuzz_path_remove(void)
{
    if (fuzz_path_buf[0])
        unlink(fuzz_path_buf);
}

static const char *fuzz_path(void)
{
    if (fuzz_path_buf[0])
        return fuzz_path_buf;
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    snprintf(fuzz_path_buf, sizeof fuzz_path_buf, "%s/settrain-fuzz-XXXXXX",
             dir && *dir ? dir : "/tmp");
    int fd = mkstemp(fuzz_path_buf);
    if (fd < 0) {
        perror(fuzz_path_buf);
        abort();
    }
    close(fd);
    atexit(fuzz_path_remove);
    return fuzz_path_buf;
}

/* Write size bytes to the scratch file (replacing it); returns its path. */
static const char *fuzz_write_raw(const uint8_t *data, size_t size)
{
    const char *path = fuzz_path();
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(path);
        abort();
    }
    return path;
}

/* Write the bytes gzip-compressed (level 1: the fuzzer wants speed). */
static const char *fuzz_write_gz(const uint8_t *data, size_t size)
{
    const char *path = fuzz_path();
    gzFile gz = gzopen(path, "wb1");
    if (!gz || (size && gzwrite(gz, data, (unsigned)size) != (int)size) ||
        gzclose(gz) != Z_OK) {
        fprintf(stderr, "%s: cannot write the gzip file\n", path);
        abort();
    }
    return path;
}

/* --------------------------------------------------------------- checks */

/* The failure half of the contract: one line that starts with path. */
static const char *fuzz_check_error(const char *path, const char *err)
{
    if (!err[0])
        return "the reader failed with an empty error message";
    if (strnlen(err, ST_ERRLEN) == ST_ERRLEN)
        return "the error message is not NUL-terminated within ST_ERRLEN bytes";
    if (strchr(err, '\n'))
        return "the error message spans several lines";
    if (strncmp(err, path, strlen(path)) != 0)
        return "the error message does not start with the file name";
    return NULL;
}

/* Labels in 0..k-1 and features finite, reading every element once. */
static const char *fuzz_check_split(const float *x, const int32_t *y, int64_t n, int64_t d,
                                    int64_t k)
{
    if (n > 0 && (!x || !y))
        return "a split with rows has a NULL buffer";
    for (int64_t i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= k)
            return "a label is outside 0..k-1";
    for (int64_t i = 0; i < n * d; i++)
        if (!isfinite(x[i]))
            return "a feature is not finite";
    return NULL;
}

/* A loaded st_dataset is what dataset.h promises. */
static const char *fuzz_check_dataset(const st_dataset *ds)
{
    const char *bad;
    if (ds->n_train < 1 || ds->n_test < 0 || ds->d < 1 || ds->k < 2)
        return "success with n_train < 1, n_test < 0, d < 1 or k < 2";
    if ((bad = fuzz_check_split(ds->x_train, ds->y_train, ds->n_train, ds->d, ds->k)) ||
        (bad = fuzz_check_split(ds->x_test, ds->y_test, ds->n_test, ds->d, ds->k)))
        return bad;
    if (ds->label_values) {
        /* Distinct values are not promised for a loaded file; reading them
         * all lets AddressSanitizer check that k values were allocated. */
        volatile int64_t sum = 0;
        for (int32_t c = 0; c < ds->k; c++)
            sum += ds->label_values[c];
        (void)sum;
    }
    if (strnlen(ds->name, sizeof ds->name) == sizeof ds->name ||
        strnlen(ds->source, sizeof ds->source) == sizeof ds->source)
        return "name or source is not NUL-terminated";
    return NULL;
}

static int fuzz_dataset_empty(const st_dataset *ds)
{
    return !ds->x_train && !ds->y_train && !ds->x_test && !ds->y_test && !ds->label_values;
}

/* -------------------------------------------------------------- targets */

static const char *fuzz_run_h5(const uint8_t *data, size_t size, char *err)
{
    const char *path = fuzz_write_raw(data, size), *bad;
    st_dataset ds;
    if (dataset_load_h5(path, &ds, err) != 0) {
        if ((bad = fuzz_check_error(path, err)))
            return bad;
        return fuzz_dataset_empty(&ds) ? NULL : "failure left buffers in the data set";
    }
    bad = fuzz_check_dataset(&ds);
    dataset_free(&ds);
    return bad;
}

/* One IDX read of the file at path: images (ndims 3) or labels (ndims 1). */
static const char *fuzz_idx_file(const char *path, int ndims, char *err)
{
    uint8_t *buf = (uint8_t *)1; /* the reader must overwrite it */
    int64_t n = -1, rows = 1, cols = 1;
    int rc = ndims == 3 ? idx_read_images(path, &buf, &n, &rows, &cols, err)
                        : idx_read_labels(path, &buf, &n, err);
    if (rc != 0) {
        const char *bad = fuzz_check_error(path, err);
        return bad ? bad : buf ? "failure left a buffer" : NULL;
    }
    if (!buf || n < 1 || rows < 1 || cols < 1)
        return "success with a NULL buffer or a dimension < 1";
    volatile uint32_t sum = 0;
    for (int64_t i = 0; i < n * rows * cols; i++)
        sum += buf[i];
    (void)sum;
    free(buf);
    return NULL;
}

static const char *fuzz_run_idx_gz(const uint8_t *data, size_t size, char *err)
{
    const char *path = fuzz_write_raw(data, size), *bad;
    if ((bad = fuzz_idx_file(path, 3, err)))
        return bad;
    return fuzz_idx_file(path, 1, err);
}

static const char *fuzz_run_idx_images(const uint8_t *data, size_t size, char *err)
{
    return fuzz_idx_file(fuzz_write_gz(data, size), 3, err);
}

static const char *fuzz_run_idx_labels(const uint8_t *data, size_t size, char *err)
{
    return fuzz_idx_file(fuzz_write_gz(data, size), 1, err);
}

/* mat_read_xy, and on success prepare_mat (label mapping and the
 * stratified split) on the same file. */
static const char *fuzz_run_mat(const uint8_t *data, size_t size, char *err)
{
    const char *path = fuzz_write_raw(data, size), *bad;
    double *x = (double *)1;
    int64_t *y = (int64_t *)1, n = -1, d = -1;
    if (mat_read_xy(path, &x, &n, &d, &y, err) != 0) {
        if ((bad = fuzz_check_error(path, err)))
            return bad;
        return x || y ? "failure left a buffer" : NULL;
    }
    if (!x || !y || n < 1 || d < 1)
        return "success with a NULL buffer or a dimension < 1";
    bad = NULL;
    for (int64_t i = 0; i < n * d && !bad; i++)
        if (!isfinite(x[i]))
            bad = "a feature is not finite";
    volatile int64_t sum = 0;
    for (int64_t i = 0; i < n; i++)
        sum += y[i];
    (void)sum;
    free(x);
    free(y);
    if (bad)
        return bad;

    st_dataset ds;
    if (prepare_mat(path, 0.3333, 1, &ds, err) != 0) {
        if ((bad = fuzz_check_error(path, err)))
            return bad;
        return fuzz_dataset_empty(&ds) ? NULL : "prepare_mat failure left buffers";
    }
    bad = fuzz_check_dataset(&ds);
    if (!bad && ds.n_train + ds.n_test != n)
        bad = "prepare_mat lost or invented samples";
    if (!bad && !ds.label_values)
        bad = "prepare_mat gave no label_values";
    for (int32_t c = 1; !bad && c < ds.k; c++)
        if (ds.label_values[c] <= ds.label_values[c - 1])
            bad = "prepare_mat label_values are not strictly increasing";
    dataset_free(&ds);
    return bad;
}

/* checkpoint_load: success gives a model whose topology indexes stay in
 * range (walked once so AddressSanitizer sees every array's length). */
static const char *fuzz_run_checkpoint(const uint8_t *data, size_t size, char *err)
{
    const char *path = fuzz_write_raw(data, size), *bad = NULL;
    st_config cfg;
    st_model m;
    st_run_state rs;
    if (checkpoint_load(path, &cfg, &m, &rs, err) != 0)
        return fuzz_check_error(path, err);
    for (int l = 0; l < m.n_layers && !bad; l++) {
        const st_layer *L = &m.layers[l];
        volatile float sum = 0.0f;
        for (int64_t e = 0; e < layer_nnz(L); e++)
            sum += L->w[e] + L->v[e];
        if (!L->dense)
            for (int32_t r = 0; r < L->nbr && !bad; r++)
                for (int32_t k = L->row_ptr[r]; k < L->row_ptr[r + 1]; k++)
                    if (L->col_idx[k] < 0 || L->col_idx[k] >= L->nbc)
                        bad = "a loaded column index is out of range";
        (void)sum;
    }
    model_free(&m);
    return bad;
}

typedef const char *(*fuzz_run_fn)(const uint8_t *data, size_t size, char *err);

static const struct fuzz_target {
    const char *name; /* the folder name under tests/fuzz_regressions/ */
    fuzz_run_fn run;
} fuzz_targets[] = {
    {"h5", fuzz_run_h5},
    {"idx_gz", fuzz_run_idx_gz},
    {"idx_images", fuzz_run_idx_images},
    {"idx_labels", fuzz_run_idx_labels},
    {"mat", fuzz_run_mat},
    {"checkpoint", fuzz_run_checkpoint},
};
#define FUZZ_TARGET_COUNT (sizeof fuzz_targets / sizeof fuzz_targets[0])

static const struct fuzz_target *fuzz_target_find(const char *name)
{
    for (size_t i = 0; i < FUZZ_TARGET_COUNT; i++)
        if (!strcmp(fuzz_targets[i].name, name))
            return &fuzz_targets[i];
    return NULL;
}

#endif
