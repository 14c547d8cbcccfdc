/* data_h5.c: reads, validates and writes the data file of DESIGN.md
 * (format_version 1) with the HDF5 C library.
 *
 * Layout: /train/X (n_train, d) float32, /train/y (n_train) int32,
 * /test/X (n_test, d), /test/y (n_test); root attributes n_classes,
 * n_features, format_version (integers), name, source (strings) and the
 * optional label_values (k int64, the original label of each class).
 * Legend: n samples of a split, d features, k classes. Row and feature
 * numbers in messages count from 0.
 *
 * HDF5's automatic error printing is switched off: every failure becomes one
 * line "FILE: problem" in err. Saving writes a temporary file in the target's
 * directory and renames it over the target, so a reader never sees a partial
 * file. */
#define _POSIX_C_SOURCE 200809L
#include "data/dataset.h"
#include "util/common.h"

#include <hdf5.h>

#include "util/h5util.h"
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

static int check_split(const char *path, const char *split, const float *x,
                       const int64_t *y, const int32_t *y32, int64_t n, int64_t d,
                       int64_t k, char *err)
{
    for (int64_t i = 0; i < n; i++) {
        int64_t label = y ? y[i] : y32[i];
        if (label < 0 || label >= k)
            return st_fail(err, "%s: /%s/y holds label %lld but n_classes is %lld", path,
                           split, (long long)label, (long long)k);
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) {
            float v = x[i * d + j];
            if (!isfinite(v))
                return st_fail(err, "%s: /%s/X row %lld feature %lld is %s", path, split,
                               (long long)i, (long long)j,
                               isnan(v) ? "NaN" : (v > 0 ? "inf" : "-inf"));
        }
    return 0;
}

/* ------------------------------------------------------------------ load */

int dataset_check_input(const char *path, char *err)
{
    return st_check_regular_input(path, err);
}

/* Read the optional label_values attribute (k integers) into *out (k int64,
 * host, caller frees); *out stays NULL when the attribute is absent. */
static int read_label_values(hid_t file, const char *path, int64_t k, int64_t **out,
                             char *err)
{
    hid_t a = -1, t = -1, s = -1;
    int rc = -1;
    htri_t ex;
    *out = NULL;
    H5_TRY(ex = H5Aexists(file, "label_values"));
    if (!ex)
        return 0;
    H5_TRY(a = H5Aopen(file, "label_values", H5P_DEFAULT));
    H5_TRY(t = H5Aget_type(a));
    H5_TRY(s = H5Aget_space(a));
    hssize_t npts = H5Sget_simple_extent_npoints(s);
    if (H5Tget_class(t) != H5T_INTEGER || npts != k) {
        st_fail(err, "%s: attribute label_values must hold %lld integers (one per class), "
                "it holds %lld %s values", path, (long long)k, (long long)npts,
                h5u_class_name(H5Tget_class(t)));
        goto fail;
    }
    *out = st_malloc((size_t)k * sizeof **out, "label_values");
    H5_TRY(H5Aread(a, H5T_NATIVE_INT64, *out));
    rc = 0;
fail:
    if (rc) {
        free(*out);
        *out = NULL;
    }
    if (s >= 0) H5Sclose(s);
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    return rc;
}

/* Read split "train" or "test": *x (n, d) float32 and *y (n) int32 checked
 * against d and k. Returns 0 or -1 with err. */
static int read_split(hid_t file, const char *path, const char *split, int64_t d,
                      int64_t k, float **x, int32_t **y, int64_t *n, char *err)
{
    char xname[16], yname[16];
    hsize_t xd[2], yd[2];
    hid_t dx = -1, dy = -1;
    int64_t *y64 = NULL;
    int rc = -1;
    snprintf(xname, sizeof xname, "/%s/X", split);
    snprintf(yname, sizeof yname, "/%s/y", split);
    if ((dx = h5u_open_checked(file, path, xname, 2, H5T_FLOAT, xd, err)) < 0 ||
        (dy = h5u_open_checked(file, path, yname, 1, H5T_INTEGER, yd, err)) < 0)
        goto fail;
    if ((int64_t)xd[1] != d) {
        st_fail(err, "%s: %s has %llu columns but n_features is %lld", path, xname,
                (unsigned long long)xd[1], (long long)d);
        goto fail;
    }
    if (yd[0] != xd[0]) {
        st_fail(err, "%s: %s has %llu rows but %s has %llu", path, yname,
                (unsigned long long)yd[0], xname, (unsigned long long)xd[0]);
        goto fail;
    }
    if (xd[0] > (hsize_t)(SIZE_MAX / sizeof(float)) / (hsize_t)d) {
        st_fail(err, "%s: %s (%llu x %lld) is too large for memory", path, xname,
                (unsigned long long)xd[0], (long long)d);
        goto fail;
    }
    if (h5u_check_stored(dx, path, xname, 2, xd, err) || h5u_check_stored(dy, path, yname, 1, yd, err))
        goto fail;
    *n = (int64_t)xd[0];
    *x = st_malloc((size_t)*n * (size_t)d * sizeof(float), xname);
    *y = st_malloc((size_t)*n * sizeof(int32_t), yname);
    y64 = st_malloc((size_t)*n * sizeof *y64, yname);
    if (*n > 0 && (H5Dread(dx, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, *x) < 0 ||
                   H5Dread(dy, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, y64) < 0)) {
        char h5msg[256];
        st_fail(err, "%s: cannot read /%s: %s (truncated or corrupt file?)", path, split,
                h5u_message(h5msg));
        goto fail;
    }
    if (check_split(path, split, *x, y64, NULL, *n, d, k, err))
        goto fail;
    for (int64_t i = 0; i < *n; i++)
        (*y)[i] = (int32_t)y64[i];
    rc = 0;
fail:
    free(y64);
    if (dx >= 0) H5Dclose(dx);
    if (dy >= 0) H5Dclose(dy);
    return rc;
}

int dataset_load_h5(const char *path, st_dataset *ds, char *err)
{
    hid_t file = -1;
    int64_t version, k, d;
    memset(ds, 0, sizeof *ds);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);

    if ((file = h5u_open_read(path, err)) < 0)
        return -1;

    if (h5u_read_int_attr(file, path, "format_version", &version, err) ||
        h5u_read_int_attr(file, path, "n_classes", &k, err) ||
        h5u_read_int_attr(file, path, "n_features", &d, err))
        goto fail;
    if (version != ST_DATA_FORMAT_VERSION) {
        st_fail(err, "%s: format_version is %lld, this build reads %d", path,
                (long long)version, ST_DATA_FORMAT_VERSION);
        goto fail;
    }
    if (k < 2 || k > ST_DATA_MAX_CLASSES) {
        st_fail(err, "%s: root attribute n_classes is %lld, expected 2 .. %d", path,
                (long long)k, ST_DATA_MAX_CLASSES);
        goto fail;
    }
    if (d < 1) {
        st_fail(err, "%s: n_features is %lld, expected at least 1", path, (long long)d);
        goto fail;
    }
    ds->k = (int32_t)k;
    ds->d = d;
    /* name and source are descriptive: absent ones are left empty. */
    if (h5u_read_str_attr(file, path, "name", ds->name, sizeof ds->name, err) < 0 ||
        h5u_read_str_attr(file, path, "source", ds->source, sizeof ds->source, err) < 0 ||
        read_label_values(file, path, k, &ds->label_values, err) < 0)
        goto fail;

    if (read_split(file, path, "train", d, k, &ds->x_train, &ds->y_train, &ds->n_train,
                   err) ||
        read_split(file, path, "test", d, k, &ds->x_test, &ds->y_test, &ds->n_test, err))
        goto fail;
    if (ds->n_train < 1) {
        st_fail(err, "%s: /train/X has 0 rows", path);
        goto fail;
    }
    H5Fclose(file);
    return 0;
fail:
    if (file >= 0)
        H5Fclose(file);
    dataset_free(ds);
    return -1;
}

/* ------------------------------------------------------------------ save */

/* Write the whole file layout of ds into the (new, empty) HDF5 file. */
static int write_layout(hid_t file, const char *path, const void *ctx, char *err)
{
    const st_dataset *ds = ctx;
    const char *split[2] = {"train", "test"};
    const int64_t n[2] = {ds->n_train, ds->n_test};
    const float *x[2] = {ds->x_train, ds->x_test};
    const int32_t *y[2] = {ds->y_train, ds->y_test};
    for (int s = 0; s < 2; s++) {
        char name[16];
        hid_t g;
        snprintf(name, sizeof name, "/%s", split[s]);
        H5_TRY(g = H5Gcreate2(file, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
        H5Gclose(g);
        hsize_t xd[2] = {(hsize_t)n[s], (hsize_t)ds->d}, yd[1] = {(hsize_t)n[s]};
        snprintf(name, sizeof name, "/%s/X", split[s]);
        if (h5u_write_dset(file, path, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, xd,
                       (size_t)ds->d * sizeof(float), x[s], err))
            return -1;
        snprintf(name, sizeof name, "/%s/y", split[s]);
        if (h5u_write_dset(file, path, name, H5T_STD_I32LE, H5T_NATIVE_INT32, 1, yd,
                       sizeof(int32_t), y[s], err))
            return -1;
    }
    if (h5u_write_int_attr(file, path, "format_version", ST_DATA_FORMAT_VERSION, err) ||
        h5u_write_int_attr(file, path, "n_classes", ds->k, err) ||
        h5u_write_int_attr(file, path, "n_features", (int32_t)ds->d, err) ||
        h5u_write_str_attr(file, path, "name", ds->name, err) ||
        h5u_write_str_attr(file, path, "source", ds->source, err))
        return -1;
    if (ds->label_values &&
        h5u_write_attr(file, path, "label_values", H5T_STD_I64LE, H5T_NATIVE_INT64,
                   (hsize_t)ds->k, ds->label_values, err))
        return -1;
    return 0;
fail:
    return -1;
}

int dataset_save_h5(const char *path, const st_dataset *ds, char *err)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    /* Refuse what dataset_load_h5 would refuse, before touching the disk. */
    if (ds->n_train < 1 || ds->n_test < 0 || ds->d < 1 || ds->d > INT32_MAX || ds->k < 2 ||
        ds->k > ST_DATA_MAX_CLASSES)
        return st_fail(err, "%s: cannot save n_train %lld, n_test %lld, d %lld, k %d "
                       "(need n_train >= 1, 1 <= d < 2^31, 2 <= k <= %d)", path,
                       (long long)ds->n_train, (long long)ds->n_test, (long long)ds->d,
                       ds->k, ST_DATA_MAX_CLASSES);
    if (check_split(path, "train", ds->x_train, NULL, ds->y_train, ds->n_train, ds->d,
                    ds->k, err) ||
        check_split(path, "test", ds->x_test, NULL, ds->y_test, ds->n_test, ds->d, ds->k,
                    err))
        return -1;

    return h5u_save_atomic(path, write_layout, ds, 0, err);
}

void dataset_free(st_dataset *ds)
{
    free(ds->x_train);
    free(ds->y_train);
    free(ds->x_test);
    free(ds->y_test);
    free(ds->label_values);
    memset(ds, 0, sizeof *ds);
}
