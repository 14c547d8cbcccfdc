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
#include "dataset.h"
#include "common.h"

#include <hdf5.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

/* Rows per chunk of a compressed dataset: about 1 MiB per chunk. */
#define H5_CHUNK_BYTES (1u << 20)
#define H5_GZIP_LEVEL 4

/* Walker for H5Ewalk2: keeps the innermost (most specific) description. */
static herr_t h5_innermost(unsigned n, const H5E_error2_t *e, void *buf)
{
    if (n == 0)
        snprintf((char *)buf, 256, "%s", e->desc ? e->desc : "no description");
    return 0;
}

/* The HDF5 library's message for the last failed call (buf: 256 bytes),
 * on one line. */
static const char *h5_message(char *buf)
{
    snprintf(buf, 256, "no HDF5 error recorded");
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_innermost, buf);
    for (char *c = buf; *c; c++)
        if (*c == '\n')
            *c = ' ';
    return buf;
}

/* HDF5 check: on a negative result writes "PATH: CALL failed at file:line:
 * HDF5 message" into err and jumps to the function's `fail` label. Needs
 * `path`, `err` and a `fail` label in scope. */
#define H5_TRY(call)                                                               \
    do {                                                                           \
        if ((call) < 0) {                                                          \
            char h5msg_[256];                                                      \
            st_fail(err, "%s: %s failed at %s:%d: %s", path, #call, __FILE__,      \
                    __LINE__, h5_message(h5msg_));                                 \
            goto fail;                                                             \
        }                                                                          \
    } while (0)

static const char *h5_class_name(H5T_class_t c)
{
    switch (c) {
    case H5T_INTEGER: return "integer";
    case H5T_FLOAT: return "float";
    case H5T_STRING: return "string";
    case H5T_COMPOUND: return "compound";
    case H5T_ENUM: return "enum";
    case H5T_ARRAY: return "array";
    default: return "non-numeric";
    }
}

/* Check one split in memory: labels in 0..k-1 and every feature finite.
 * x is (n, d), y is n int64 (as read) or NULL with y32 (n int32) instead. */
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
    struct stat sb;
    FILE *f = fopen(path, "rb");
    if (!f)
        return st_fail(err, "%s: cannot open: %s", path, strerror(errno));
    int rc = fstat(fileno(f), &sb);
    fclose(f);
    if (rc == 0 && S_ISDIR(sb.st_mode))
        return st_fail(err, "%s: is a directory, not a file", path);
    return 0;
}

/* Read a required integer root attribute that holds one value. */
static int read_int_attr(hid_t file, const char *path, const char *name, int64_t *out,
                         char *err)
{
    hid_t a = -1, t = -1, s = -1;
    int rc = -1;
    htri_t ex;
    H5_TRY(ex = H5Aexists(file, name));
    if (!ex)
        return st_fail(err, "%s: missing root attribute %s", path, name);
    H5_TRY(a = H5Aopen(file, name, H5P_DEFAULT));
    H5_TRY(t = H5Aget_type(a));
    H5_TRY(s = H5Aget_space(a));
    if (H5Tget_class(t) != H5T_INTEGER || H5Sget_simple_extent_npoints(s) != 1) {
        st_fail(err, "%s: attribute %s must be one integer", path, name);
        goto fail;
    }
    H5_TRY(H5Aread(a, H5T_NATIVE_INT64, out));
    rc = 0;
fail:
    if (s >= 0) H5Sclose(s);
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    return rc;
}

/* Read a string root attribute (fixed or variable length) into out (cap
 * bytes, truncated to fit). Returns 0 when read, 1 when absent, -1 with err. */
static int read_str_attr(hid_t file, const char *path, const char *name, char *out,
                         size_t cap, char *err)
{
    hid_t a = -1, t = -1, mt = -1;
    char *buf = NULL;
    int rc = -1;
    htri_t ex;
    H5_TRY(ex = H5Aexists(file, name));
    if (!ex)
        return 1;
    H5_TRY(a = H5Aopen(file, name, H5P_DEFAULT));
    H5_TRY(t = H5Aget_type(a));
    if (H5Tget_class(t) != H5T_STRING) {
        st_fail(err, "%s: attribute %s must be a string", path, name);
        goto fail;
    }
    H5_TRY(mt = H5Tcopy(H5T_C_S1));
    H5_TRY(H5Tset_cset(mt, H5Tget_cset(t)));
    if (H5Tis_variable_str(t) > 0) {
        char *s = NULL;
        H5_TRY(H5Tset_size(mt, H5T_VARIABLE));
        H5_TRY(H5Aread(a, mt, &s));
        snprintf(out, cap, "%s", s ? s : "");
        H5free_memory(s);
    } else {
        size_t len = H5Tget_size(t);
        H5_TRY(H5Tset_size(mt, len + 1));
        H5_TRY(H5Tset_strpad(mt, H5T_STR_NULLTERM));
        buf = st_malloc(len + 1, "string attribute");
        H5_TRY(H5Aread(a, mt, buf));
        buf[len] = '\0';
        snprintf(out, cap, "%s", buf);
    }
    rc = 0;
fail:
    free(buf);
    if (mt >= 0) H5Tclose(mt);
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    return rc;
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
                h5_class_name(H5Tget_class(t)));
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

/* Open dataset `name` ("/train/X") after checking that it and its group
 * exist, that it has rank `rank` and type class `cls`; dims receives its
 * shape. Returns the dataset id or -1 with err. */
static hid_t open_checked(hid_t file, const char *path, const char *name, int rank,
                          H5T_class_t cls, hsize_t dims[2], char *err)
{
    hid_t dset = -1, t = -1, s = -1;
    char group[64];
    const char *slash = strrchr(name, '/');
    snprintf(group, sizeof group, "%.*s", (int)(slash - name), name);
    htri_t ex;
    H5_TRY(ex = H5Lexists(file, group, H5P_DEFAULT));
    if (ex)
        H5_TRY(ex = H5Lexists(file, name, H5P_DEFAULT));
    if (!ex) {
        st_fail(err, "%s: missing dataset %s", path, name);
        goto fail;
    }
    dset = H5Dopen2(file, name, H5P_DEFAULT);
    if (dset < 0) {
        st_fail(err, "%s: %s is not a dataset", path, name);
        goto fail;
    }
    H5_TRY(s = H5Dget_space(dset));
    int r = H5Sget_simple_extent_ndims(s);
    if (r != rank) {
        st_fail(err, "%s: %s has rank %d, expected %d", path, name, r, rank);
        goto fail;
    }
    H5_TRY(H5Sget_simple_extent_dims(s, dims, NULL));
    H5_TRY(t = H5Dget_type(dset));
    if (H5Tget_class(t) != cls) {
        st_fail(err, "%s: %s has type class %s, expected %s", path, name,
                h5_class_name(H5Tget_class(t)), h5_class_name(cls));
        goto fail;
    }
    H5Tclose(t);
    H5Sclose(s);
    return dset;
fail:
    if (t >= 0) H5Tclose(t);
    if (s >= 0) H5Sclose(s);
    if (dset >= 0) H5Dclose(dset);
    return -1;
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
    if ((dx = open_checked(file, path, xname, 2, H5T_FLOAT, xd, err)) < 0 ||
        (dy = open_checked(file, path, yname, 1, H5T_INTEGER, yd, err)) < 0)
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
    *n = (int64_t)xd[0];
    *x = st_malloc((size_t)*n * (size_t)d * sizeof(float), xname);
    *y = st_malloc((size_t)*n * sizeof(int32_t), yname);
    y64 = st_malloc((size_t)*n * sizeof *y64, yname);
    if (*n > 0 && (H5Dread(dx, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, *x) < 0 ||
                   H5Dread(dy, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, y64) < 0)) {
        char h5msg[256];
        st_fail(err, "%s: cannot read /%s: %s (truncated or corrupt file?)", path, split,
                h5_message(h5msg));
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

    if (dataset_check_input(path, err))
        return -1;
    if (H5Fis_hdf5(path) <= 0 || (file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0) {
        char h5msg[256];
        return st_fail(err, "%s: not an HDF5 file or truncated (%s)", path,
                       h5_message(h5msg));
    }

    if (read_int_attr(file, path, "format_version", &version, err) ||
        read_int_attr(file, path, "n_classes", &k, err) ||
        read_int_attr(file, path, "n_features", &d, err))
        goto fail;
    if (version != ST_DATA_FORMAT_VERSION) {
        st_fail(err, "%s: format_version is %lld, this build reads %d", path,
                (long long)version, ST_DATA_FORMAT_VERSION);
        goto fail;
    }
    if (k < 2 || k > INT32_MAX) {
        st_fail(err, "%s: n_classes is %lld, expected 2 .. 2^31-1", path, (long long)k);
        goto fail;
    }
    if (d < 1) {
        st_fail(err, "%s: n_features is %lld, expected at least 1", path, (long long)d);
        goto fail;
    }
    ds->k = (int32_t)k;
    ds->d = d;
    /* name and source are descriptive: absent ones are left empty. */
    if (read_str_attr(file, path, "name", ds->name, sizeof ds->name, err) < 0 ||
        read_str_attr(file, path, "source", ds->source, sizeof ds->source, err) < 0 ||
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

/* Write one dataset: rank 1 or 2, dims[0] rows of row_bytes each, stored
 * as ftype from data in mtype; chunked and gzip-compressed when it has rows
 * (an empty dataset stays contiguous). No shuffle filter: on Fashion-MNIST
 * (pixel / 255) it doubled the file and made saving 60% slower. */
static int write_dset(hid_t file, const char *path, const char *name, hid_t ftype,
                      hid_t mtype, int rank, const hsize_t *dims, size_t row_bytes,
                      const void *data, char *err)
{
    hid_t s = -1, dcpl = -1, dset = -1;
    int rc = -1;
    H5_TRY(s = H5Screate_simple(rank, dims, NULL));
    H5_TRY(dcpl = H5Pcreate(H5P_DATASET_CREATE));
    if (dims[0] > 0) {
        hsize_t chunk[2] = {H5_CHUNK_BYTES / row_bytes, rank == 2 ? dims[1] : 1};
        if (chunk[0] < 1)
            chunk[0] = 1;
        if (chunk[0] > dims[0])
            chunk[0] = dims[0];
        H5_TRY(H5Pset_chunk(dcpl, rank, chunk));
        H5_TRY(H5Pset_deflate(dcpl, H5_GZIP_LEVEL));
    }
    H5_TRY(dset = H5Dcreate2(file, name, ftype, s, H5P_DEFAULT, dcpl, H5P_DEFAULT));
    if (dims[0] > 0)
        H5_TRY(H5Dwrite(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data));
    rc = 0;
fail:
    if (dset >= 0) H5Dclose(dset);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (s >= 0) H5Sclose(s);
    return rc;
}

/* Write a root attribute: one value (n == 0, scalar) or n values. */
static int write_attr(hid_t file, const char *path, const char *name, hid_t ftype,
                      hid_t mtype, hsize_t n, const void *data, char *err)
{
    hid_t s = -1, a = -1;
    int rc = -1;
    H5_TRY(s = n ? H5Screate_simple(1, &n, NULL) : H5Screate(H5S_SCALAR));
    H5_TRY(a = H5Acreate2(file, name, ftype, s, H5P_DEFAULT, H5P_DEFAULT));
    H5_TRY(H5Awrite(a, mtype, data));
    rc = 0;
fail:
    if (a >= 0) H5Aclose(a);
    if (s >= 0) H5Sclose(s);
    return rc;
}

static int write_int_attr(hid_t file, const char *path, const char *name, int32_t v,
                          char *err)
{
    return write_attr(file, path, name, H5T_STD_I32LE, H5T_NATIVE_INT32, 0, &v, err);
}

/* Fixed-length, null-terminated ASCII string attribute. */
static int write_str_attr(hid_t file, const char *path, const char *name, const char *v,
                          char *err)
{
    hid_t t = -1;
    int rc = -1;
    H5_TRY(t = H5Tcopy(H5T_C_S1));
    H5_TRY(H5Tset_size(t, strlen(v) + 1));
    H5_TRY(H5Tset_strpad(t, H5T_STR_NULLTERM));
    rc = write_attr(file, path, name, t, t, 0, v, err);
fail:
    if (t >= 0) H5Tclose(t);
    return rc;
}

/* Write the whole file layout of ds into the (new, empty) HDF5 file. */
static int write_layout(hid_t file, const char *path, const st_dataset *ds, char *err)
{
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
        if (write_dset(file, path, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, xd,
                       (size_t)ds->d * sizeof(float), x[s], err))
            return -1;
        snprintf(name, sizeof name, "/%s/y", split[s]);
        if (write_dset(file, path, name, H5T_STD_I32LE, H5T_NATIVE_INT32, 1, yd,
                       sizeof(int32_t), y[s], err))
            return -1;
    }
    if (write_int_attr(file, path, "format_version", ST_DATA_FORMAT_VERSION, err) ||
        write_int_attr(file, path, "n_classes", ds->k, err) ||
        write_int_attr(file, path, "n_features", (int32_t)ds->d, err) ||
        write_str_attr(file, path, "name", ds->name, err) ||
        write_str_attr(file, path, "source", ds->source, err))
        return -1;
    if (ds->label_values &&
        write_attr(file, path, "label_values", H5T_STD_I64LE, H5T_NATIVE_INT64,
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
    if (ds->n_train < 1 || ds->n_test < 0 || ds->d < 1 || ds->d > INT32_MAX || ds->k < 2)
        return st_fail(err, "%s: cannot save n_train %lld, n_test %lld, d %lld, k %d "
                       "(need n_train >= 1, 1 <= d < 2^31, k >= 2)", path,
                       (long long)ds->n_train, (long long)ds->n_test, (long long)ds->d,
                       ds->k);
    if (check_split(path, "train", ds->x_train, NULL, ds->y_train, ds->n_train, ds->d,
                    ds->k, err) ||
        check_split(path, "test", ds->x_test, NULL, ds->y_test, ds->n_test, ds->d, ds->k,
                    err))
        return -1;

    size_t len = strlen(path);
    char *tmp = st_malloc(len + 16, "temporary file name");
    snprintf(tmp, len + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        st_fail(err, "%s: cannot create temporary file %s: %s", path, tmp,
                strerror(errno));
        free(tmp);
        return -1;
    }
    /* mkstemp creates mode 0600; give the file the usual umask-based mode. */
    mode_t um = umask(0);
    umask(um);
    fchmod(fd, 0666 & ~um);
    close(fd);

    hid_t file = -1;
    H5_TRY(file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
    if (write_layout(file, path, ds, err))
        goto fail;
    hid_t f = file; /* the fail path must not close it a second time */
    file = -1;
    H5_TRY(H5Fclose(f));
    if (rename(tmp, path) != 0) {
        st_fail(err, "%s: cannot rename %s to it: %s", path, tmp, strerror(errno));
        goto fail;
    }
    free(tmp);
    return 0;
fail:
    if (file >= 0)
        H5Fclose(file);
    unlink(tmp);
    free(tmp);
    return -1;
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
