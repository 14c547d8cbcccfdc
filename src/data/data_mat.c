/* data_mat.c: reads scikit-feature MATLAB files (variables X and Y) with
 * libmatio and turns them into a data set with a stratified, seeded
 * train/test split.
 *
 * X is (n, d) in MATLAB's column-major order and any real numeric class
 * (double, single, int8..int64, uint8..uint64; scikit-feature files often
 * store class double as int16 elements, which matio widens on reading); it
 * becomes row-major double. Y is a row or column vector of n integral,
 * finite labels of any numeric class.
 *
 * MAT v4 and v5 (the v6 and v7 formats too) are read with libmatio. MAT
 * v7.3 files are HDF5 files with a 512-byte MATLAB header; they are read
 * with the HDF5 library directly (the same checked access as the data
 * file: no external storage, virtual datasets or links out of the file),
 * because libmatio reads only the MATLAB_class attribute MATLAB itself
 * writes and calls a file from h5py or hdf5storage "class empty". Before
 * any variable is read, an empty file, a v5 file cut inside a variable and
 * a file of neither format are refused with their own message.
 * Legend: n samples, d features, K classes. */
#include "data/dataset.h"
#include "util/common.h"
#include "util/philox.h"

#include <float.h>
#include <math.h>
#include <matio.h>
#include <stdio.h>
#include <strings.h>
#include <sys/stat.h>

#include "util/h5util.h"

/* Last error matio logged, quoted in our messages instead of being printed. */
static char mat_log_msg[256];

static void mat_quiet_log(int level, char *message)
{
    if (level & (MATIO_LOG_LEVEL_ERROR | MATIO_LOG_LEVEL_CRITICAL))
        snprintf(mat_log_msg, sizeof mat_log_msg, "%s", message);
}

static const char *mat_class_name(enum matio_classes c)
{
    switch (c) {
    case MAT_C_EMPTY: return "empty";
    case MAT_C_CELL: return "cell";
    case MAT_C_STRUCT: return "struct";
    case MAT_C_OBJECT: return "object";
    case MAT_C_CHAR: return "char";
    case MAT_C_SPARSE: return "sparse";
    case MAT_C_FUNCTION: return "function";
    default: return "opaque";
    }
}

/* deflate (MAT v5 and v7.3 compression) expands data at most 1032:1 and an
 * element takes at least one byte, so a file of S bytes holds at most
 * MAT_MAX_EXPANSION * S elements: a header that declares more is corrupt. */
#define MAT_MAX_EXPANSION 1032

/* 0 when v (read or only its header, from Mat_VarReadInfo) is a real, full,
 * two-dimensional numeric array whose element count a file of file_bytes
 * can hold; else -1 with err. */
static int check_numeric(const matvar_t *v, const char *path, const char *name,
                         int64_t file_bytes, char *err)
{
    if (v->class_type == MAT_C_SPARSE)
        return st_fail(err, "%s: %s is a sparse matrix; save it as a full matrix", path,
                       name);
    if (v->class_type < MAT_C_DOUBLE || v->class_type > MAT_C_UINT64)
        return st_fail(err, "%s: %s has MATLAB class %s, expected a numeric array", path,
                       name, mat_class_name(v->class_type));
    if (v->isComplex)
        return st_fail(err, "%s: %s is complex, expected real values", path, name);
    if (v->rank != 2 || !v->dims)
        return st_fail(err, "%s: %s has %d dimensions, expected 2", path, name, v->rank);
    uint64_t cap = (uint64_t)file_bytes * MAT_MAX_EXPANSION;
    if (v->dims[0] > 0 && v->dims[1] > cap / v->dims[0])
        return st_fail(err, "%s: %s declares %zux%zu elements, more than a file of %lld "
                       "bytes can hold (corrupt or truncated file)", path, name,
                       v->dims[0], v->dims[1], (long long)file_bytes);
    return 0;
}

/* Read variable `name`; refuse anything but a real, full numeric array. Its
 * header is checked before Mat_VarRead allocates the memory it declares. */
static matvar_t *read_numeric(mat_t *mat, const char *path, int64_t file_bytes,
                              const char *name, char *err)
{
    matvar_t *info = Mat_VarReadInfo(mat, name);
    if (!info) {
        st_fail(err, "%s: no variable %s", path, name);
        return NULL;
    }
    int bad = check_numeric(info, path, name, file_bytes, err);
    Mat_VarFree(info);
    if (bad)
        return NULL;
    mat_log_msg[0] = '\0';
    matvar_t *v = Mat_VarRead(mat, name);
    if (!v) {
        st_fail(err, "%s: cannot read variable %s: %s", path, name,
                mat_log_msg[0] ? mat_log_msg : "corrupt or truncated file");
        return NULL;
    }
    if (!check_numeric(v, path, name, file_bytes, err))
        return v;
    Mat_VarFree(v);
    return NULL;
}

/* Column-major (n, d) array of v's class -> row-major (n, d) doubles in out. */
#define MAT_TO_ROW_MAJOR(T)                                                        \
    do {                                                                           \
        const T *src = (const T *)v->data;                                         \
        for (size_t j = 0; j < d; j++)                                             \
            for (size_t i = 0; i < n; i++)                                         \
                out[i * d + j] = (double)src[j * n + i];                           \
    } while (0)

static int to_row_major(const matvar_t *v, const char *path, size_t n, size_t d,
                        double *out, char *err)
{
    if (!v->data || v->nbytes < n * d * Mat_SizeOfClass(v->class_type))
        return st_fail(err, "%s: %s holds fewer bytes than its %zux%zu shape needs", path,
                       v->name, n, d);
    switch (v->class_type) {
    case MAT_C_DOUBLE: MAT_TO_ROW_MAJOR(double); break;
    case MAT_C_SINGLE: MAT_TO_ROW_MAJOR(float); break;
    case MAT_C_INT8: MAT_TO_ROW_MAJOR(int8_t); break;
    case MAT_C_UINT8: MAT_TO_ROW_MAJOR(uint8_t); break;
    case MAT_C_INT16: MAT_TO_ROW_MAJOR(int16_t); break;
    case MAT_C_UINT16: MAT_TO_ROW_MAJOR(uint16_t); break;
    case MAT_C_INT32: MAT_TO_ROW_MAJOR(int32_t); break;
    case MAT_C_UINT32: MAT_TO_ROW_MAJOR(uint32_t); break;
    case MAT_C_INT64: MAT_TO_ROW_MAJOR(int64_t); break;
    case MAT_C_UINT64: MAT_TO_ROW_MAJOR(uint64_t); break;
    default: return st_fail(err, "%s: %s is not numeric", path, v->name);
    }
    return 0;
}

/* ------------------------------------------------------ file kind */

enum mat_kind { MAT_KIND_OTHER, MAT_KIND_V5, MAT_KIND_V73 };

/* The 128-byte header of a v5 or v7.3 file: text, subsystem offset,
 * version 0x0100 (v5) or 0x0200 (v7.3) and the endian indicator "IM" or
 * "MI"; anything else may still be a v4 file (which has no header). */
static enum mat_kind mat_header_kind(const unsigned char *h, size_t len)
{
    if (len < 128)
        return MAT_KIND_OTHER;
    unsigned version;
    if (h[126] == 'I' && h[127] == 'M')
        version = (unsigned)h[124] | (unsigned)h[125] << 8;
    else if (h[126] == 'M' && h[127] == 'I')
        version = (unsigned)h[124] << 8 | (unsigned)h[125];
    else
        return MAT_KIND_OTHER;
    return version == 0x0100 ? MAT_KIND_V5 : version == 0x0200 ? MAT_KIND_V73 : MAT_KIND_OTHER;
}

/* A v5 file is a sequence of data elements after the header (tag: type,
 * byte count; the data padded to 8 bytes except compressed elements).
 * 0 when the last element ends within the file; else -1 with a message
 * saying where the file was cut (matio would read the variables before
 * the cut and report the rest as absent). */
static int mat5_check_complete(FILE *f, const char *path, int swap, int64_t size, char *err)
{
    int64_t off = 128;
    int count = 0;
    while (off < size) {
        unsigned char tag[8];
        if (size - off < 8 || fseek(f, (long)off, SEEK_SET) != 0 || fread(tag, 1, 8, f) != 8)
            return st_fail(err, "%s: truncated: the file ends inside the tag of variable %d "
                           "(offset %lld of %lld bytes)", path, count + 1, (long long)off,
                           (long long)size);
        uint32_t w[2];
        for (int k = 0; k < 2; k++)
            w[k] = swap ? (uint32_t)tag[4 * k] << 24 | (uint32_t)tag[4 * k + 1] << 16 |
                              (uint32_t)tag[4 * k + 2] << 8 | tag[4 * k + 3]
                        : (uint32_t)tag[4 * k + 3] << 24 | (uint32_t)tag[4 * k + 2] << 16 |
                              (uint32_t)tag[4 * k + 1] << 8 | tag[4 * k];
        int64_t len;
        if (w[0] >> 16) /* small data element: type and size in one word */
            len = 8;
        else if (w[0] == 15) /* miCOMPRESSED: not padded */
            len = 8 + (int64_t)w[1];
        else
            len = 8 + (((int64_t)w[1] + 7) & ~(int64_t)7);
        if (len > size - off) {
            /* The last element's padding may be missing: only data count. */
            int64_t need = (w[0] >> 16) ? 8 : 8 + (int64_t)w[1];
            if (need > size - off)
                return st_fail(err, "%s: truncated: variable %d (at offset %lld) needs %lld "
                               "bytes, the file ends after %lld", path, count + 1,
                               (long long)off, (long long)need, (long long)(size - off));
        }
        off += len;
        count++;
    }
    return 0;
}

/* Names of the variables of an open v4/v5 file, for "no variable X". */
static void mat_list_names(mat_t *mat, char *out, size_t cap)
{
    size_t used = 0;
    matvar_t *v;
    out[0] = '\0';
    Mat_Rewind(mat);
    for (int k = 0; k < 16 && (v = Mat_VarReadNextInfo(mat)); k++) {
        if (v->name && used < cap)
            used += (size_t)snprintf(out + used, cap - used, "%s%s", used ? ", " : "", v->name);
        Mat_VarFree(v);
    }
    Mat_Rewind(mat);
}

/* ------------------------------------------------------- MAT v7.3 */

/* 0 when MATLAB_class (or, without the attribute, the HDF5 type) of
 * dataset /name is a real numeric (or logical) array; -1 with err. */
static int mat73_check_class(hid_t dset, const char *path, const char *name, char *err)
{
    static const char *const numeric[] = {"double", "single", "int8", "uint8", "int16",
                                          "uint16", "int32", "uint32", "int64", "uint64",
                                          "logical"};
    char cls[64] = "";
    int r = h5u_read_str_attr(dset, path, "MATLAB_class", cls, sizeof cls, err);
    if (r < 0)
        return -1;
    if (r == 0) {
        int ok = 0;
        for (size_t k = 0; k < sizeof numeric / sizeof numeric[0]; k++)
            ok |= !strcmp(cls, numeric[k]);
        if (!ok)
            return st_fail(err, "%s: %s has MATLAB class %s, expected a numeric array", path,
                           name, cls[0] ? cls : "(empty name)");
    }
    if (H5Aexists(dset, "MATLAB_empty") > 0)
        return st_fail(err, "%s: %s is empty (MATLAB_empty)", path, name);
    hid_t t = H5Dget_type(dset);
    H5T_class_t tc = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    if (t >= 0)
        H5Tclose(t);
    if (tc == H5T_COMPOUND)
        return st_fail(err, "%s: %s is complex, expected real values", path, name);
    if (tc != H5T_INTEGER && tc != H5T_FLOAT)
        return st_fail(err, "%s: %s is stored as HDF5 %s values, expected a numeric array",
                       path, name, h5u_class_name(tc));
    return 0;
}

/* Variable `name` of an open v7.3 file as MATLAB sees it: (*rows, *cols)
 * column-major doubles in *out (caller frees). HDF5 holds MATLAB's array
 * with the dimensions reversed: dataset (cols, rows), row-major. */
static int mat73_read_var(hid_t file, const char *path, int64_t file_bytes, const char *name,
                          double **out, size_t *rows, size_t *cols, char *err)
{
    char full[8];
    hsize_t dims[2];
    *out = NULL;
    snprintf(full, sizeof full, "/%s", name);
    htri_t ex = H5Lexists(file, full, H5P_DEFAULT);
    if (ex <= 0)
        return st_fail(err, "%s: no variable %s", path, name);
    hid_t o = H5Oopen(file, full, H5P_DEFAULT);
    H5I_type_t type = o >= 0 ? H5Iget_type(o) : H5I_BADID;
    if (o >= 0)
        H5Oclose(o);
    if (type == H5I_GROUP)
        return st_fail(err, "%s: %s is a MATLAB sparse matrix, struct or cell array (an HDF5 "
                       "group); save it as a full numeric matrix", path, name);
    hid_t dset = h5u_open_checked(file, path, full, 2, H5T_NO_CLASS, dims, err);
    if (dset < 0) {
        /* "has rank 3, expected 2" reads better in MATLAB's words */
        return -1;
    }
    int rc = -1;
    if (mat73_check_class(dset, path, name, err) ||
        h5u_check_stored(dset, path, full, 2, dims, err))
        goto out;
    uint64_t cap = (uint64_t)file_bytes * MAT_MAX_EXPANSION;
    if (dims[0] > 0 && dims[1] > cap / dims[0]) {
        st_fail(err, "%s: %s declares %llux%llu elements, more than a file of %lld bytes can "
                "hold (corrupt or truncated file)", path, name, (unsigned long long)dims[1],
                (unsigned long long)dims[0], (long long)file_bytes);
        goto out;
    }
    *rows = (size_t)dims[1];
    *cols = (size_t)dims[0];
    *out = st_malloc(*rows * *cols * sizeof **out, name);
    if (*rows * *cols > 0 &&
        H5Dread(dset, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0) {
        char h5msg[256];
        st_fail(err, "%s: cannot read variable %s: %s (truncated or corrupt file?)", path,
                name, h5u_message(h5msg));
        goto out;
    }
    rc = 0;
out:
    if (rc) {
        free(*out);
        *out = NULL;
    }
    H5Dclose(dset);
    return rc;
}

/* ------------------------------------------------------------ X and Y */

/* X and Y as MATLAB arrays: X (xr, xc) and Y (yr, yc), both column-major
 * doubles (owned here). */
typedef struct {
    double *x, *y;
    size_t xr, xc, yr, yc;
} mat_xy;

static int read_v73(const char *path, int64_t file_bytes, mat_xy *v, char *err)
{
    hid_t file = h5u_open_read(path, err);
    if (file < 0)
        return -1;
    int rc = mat73_read_var(file, path, file_bytes, "X", &v->x, &v->xr, &v->xc, err) ||
             mat73_read_var(file, path, file_bytes, "Y", &v->y, &v->yr, &v->yc, err)
                 ? -1 : 0;
    H5Fclose(file);
    return rc;
}

/* A matio variable (checked numeric) as column-major doubles. */
static int matio_to_doubles(const matvar_t *mv, const char *path, double **out, size_t *r,
                            size_t *c, char *err)
{
    *r = mv->dims[0];
    *c = mv->dims[1];
    *out = st_malloc(*r * *c * sizeof **out, mv->name);
    /* to_row_major of the (r*c, 1) vector copies the elements in order. */
    if (to_row_major(mv, path, *r * *c, 1, *out, err)) {
        free(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

static int read_v45(const char *path, int64_t file_bytes, mat_xy *v, char *err)
{
    matvar_t *vx = NULL, *vy = NULL;
    int rc = -1;
    mat_t *mat = Mat_Open(path, MAT_ACC_RDONLY);
    if (!mat)
        return st_fail(err, "%s: not a MATLAB MAT file (v4, v5 to v7, or v7.3)", path);
    if (!(vx = read_numeric(mat, path, file_bytes, "X", err)) ||
        !(vy = read_numeric(mat, path, file_bytes, "Y", err))) {
        if (strstr(err, ": no variable ")) {
            char names[200];
            mat_list_names(mat, names, sizeof names);
            size_t len = strlen(err);
            snprintf(err + len, ST_ERRLEN - len, names[0] ? " (the file holds: %s)"
                     : " (the file holds no variables)", names);
        }
        goto out;
    }
    if (matio_to_doubles(vx, path, &v->x, &v->xr, &v->xc, err) ||
        matio_to_doubles(vy, path, &v->y, &v->yr, &v->yc, err))
        goto out;
    rc = 0;
out:
    Mat_VarFree(vx);
    Mat_VarFree(vy);
    Mat_Close(mat);
    return rc;
}

int mat_read_xy(const char *path, double **x, int64_t *n, int64_t *d, int64_t **y,
                char *err)
{
    mat_xy v = {0};
    int rc = -1;
    *x = NULL;
    *y = NULL;
    Mat_LogInitFunc("settrain", mat_quiet_log);

    if (dataset_check_input(path, err))
        return -1;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return st_fail(err, "%s: cannot open: %s", path, strerror(errno));
    if (sb.st_size == 0)
        return st_fail(err, "%s: is empty (0 bytes), not a MAT file", path);
    unsigned char hdr[128];
    FILE *f = fopen(path, "rb");
    if (!f)
        return st_fail(err, "%s: cannot open: %s", path, strerror(errno));
    size_t hlen = fread(hdr, 1, sizeof hdr, f);
    enum mat_kind kind = mat_header_kind(hdr, hlen);
    int bad = kind == MAT_KIND_V5 &&
              mat5_check_complete(f, path, hdr[126] == 'M', (int64_t)sb.st_size, err);
    fclose(f);
    if (bad)
        return -1;
    if (kind == MAT_KIND_V73 ? read_v73(path, (int64_t)sb.st_size, &v, err)
                             : read_v45(path, (int64_t)sb.st_size, &v, err))
        goto out;

    size_t rows = v.xr, cols = v.xc;
    if (rows < 1 || cols < 1) {
        st_fail(err, "%s: X is empty (%zux%zu)", path, rows, cols);
        goto out;
    }
    if (v.yr != 1 && v.yc != 1) {
        st_fail(err, "%s: Y is a %zux%zu matrix, expected a vector of labels", path, v.yr,
                v.yc);
        goto out;
    }
    size_t ny = v.yr * v.yc;
    if (ny != rows) {
        st_fail(err, "%s: Y holds %zu labels but X has %zu rows (samples)%s", path, ny, rows,
                ny == cols ? "; X looks transposed (features x samples): MATLAB's X is "
                             "samples x features" : "");
        goto out;
    }

    *x = st_malloc(rows * cols * sizeof **x, "X");
    for (size_t j = 0; j < cols; j++)
        for (size_t i = 0; i < rows; i++)
            (*x)[i * cols + j] = v.x[j * rows + i];
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < cols; j++)
            if (!isfinite((*x)[i * cols + j])) {
                st_fail(err, "%s: X row %zu feature %zu is %s", path, i, j,
                        isnan((*x)[i * cols + j]) ? "NaN" : "infinite");
                goto out;
            }
    *y = st_malloc(rows * sizeof **y, "labels");
    /* A vector is (ny, 1) in either orientation: the elements are in order. */
    for (size_t i = 0; i < rows; i++) {
        double yd = v.y[i];
        /* 2^53: beyond it a double no longer holds every integer. */
        if (!isfinite(yd) || yd != floor(yd) || fabs(yd) > 9007199254740992.0) {
            st_fail(err, "%s: Y[%zu] = %g is not an integer label", path, i, yd);
            goto out;
        }
        (*y)[i] = (int64_t)yd;
    }
    *n = (int64_t)rows;
    *d = (int64_t)cols;
    rc = 0;
out:
    if (rc) {
        free(*x);
        free(*y);
        *x = NULL;
        *y = NULL;
    }
    free(v.x);
    free(v.y);
    return rc;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t u = *(const int64_t *)a, v = *(const int64_t *)b;
    return (u > v) - (u < v);
}

/* Split rule, per class c with m samples (the classes in sorted label
 * order):
 *   1. shuffle the class's sample indices (in file order) with Fisher-Yates,
 *      for i = m-1 down to 1 swapping i with j = st_below(r0, r1, i + 1),
 *      r = st_rand(seed, ST_STREAM_SPLIT, 0, i, c, 0);
 *   2. the first t = round(test_fraction * m) shuffled samples (halves round
 *      up) go to the test split, but at most m - 1, so every class keeps at
 *      least one training sample;
 *   3. both splits keep the samples in file order.
 * The split is a pure function of (labels, test_fraction, seed). */
static void split_stratified(const int32_t *cls, int64_t n, int32_t k, double test_fraction,
                             uint64_t seed, uint8_t *is_test)
{
    int64_t *start = st_calloc((size_t)k + 1, sizeof *start, "class offsets");
    int64_t *fill = st_malloc((size_t)k * sizeof *fill, "class offsets");
    int64_t *members = st_malloc((size_t)n * sizeof *members, "class members");
    for (int64_t i = 0; i < n; i++)
        start[cls[i] + 1]++;
    for (int32_t c = 0; c < k; c++)
        start[c + 1] += start[c];
    memcpy(fill, start, (size_t)k * sizeof *fill);
    for (int64_t i = 0; i < n; i++)
        members[fill[cls[i]]++] = i;

    memset(is_test, 0, (size_t)n);
    for (int32_t c = 0; c < k; c++) {
        int64_t *ix = members + start[c];
        int64_t m = start[c + 1] - start[c];
        for (int64_t i = m - 1; i >= 1; i--) {
            st_u32x4 r = st_rand(seed, ST_STREAM_SPLIT, 0, (uint32_t)i, (uint32_t)c, 0);
            int64_t j = (int64_t)st_below(r.v[0], r.v[1], (uint64_t)i + 1);
            int64_t t = ix[i];
            ix[i] = ix[j];
            ix[j] = t;
        }
        int64_t t = (int64_t)floor(test_fraction * (double)m + 0.5);
        if (t > m - 1)
            t = m - 1;
        for (int64_t q = 0; q < t; q++)
            is_test[ix[q]] = 1;
    }
    free(start);
    free(fill);
    free(members);
}

int prepare_mat(const char *path, double test_fraction, uint64_t seed, st_dataset *ds,
                char *err)
{
    double *x = NULL;
    int64_t *y = NULL, *labels = NULL, n, d;
    int32_t *cls = NULL;
    uint8_t *is_test = NULL;
    int rc = -1;
    memset(ds, 0, sizeof *ds);
    if (!(test_fraction >= 0.0 && test_fraction < 1.0))
        return st_fail(err, "%s: test fraction %g is outside [0, 1)", path, test_fraction);
    if (mat_read_xy(path, &x, &n, &d, &y, err))
        return -1;

    /* Classes are the distinct labels in increasing order. */
    labels = st_malloc((size_t)n * sizeof *labels, "labels");
    memcpy(labels, y, (size_t)n * sizeof *labels);
    qsort(labels, (size_t)n, sizeof *labels, cmp_i64);
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        if (i == 0 || labels[i] != labels[k - 1])
            labels[k++] = labels[i];
    if (k < 2) {
        st_fail(err, "%s: Y holds a single class (label %lld), need at least 2", path,
                (long long)labels[0]);
        goto out;
    }
    if (k > ST_DATA_MAX_CLASSES) {
        st_fail(err, "%s: Y holds %lld distinct labels, more than the %d classes a data file "
                "may have (are they class labels?)", path, (long long)k, ST_DATA_MAX_CLASSES);
        goto out;
    }
    cls = st_malloc((size_t)n * sizeof *cls, "classes");
    for (int64_t i = 0; i < n; i++) {
        const int64_t *hit = bsearch(&y[i], labels, (size_t)k, sizeof *labels, cmp_i64);
        cls[i] = (int32_t)(hit - labels);
    }

    for (int64_t i = 0; i < n * d; i++)
        if (fabs(x[i]) > FLT_MAX) {
            st_fail(err, "%s: X row %lld feature %lld = %g does not fit in float32", path,
                    (long long)(i / d), (long long)(i % d), x[i]);
            goto out;
        }

    is_test = st_malloc((size_t)n, "split");
    split_stratified(cls, n, (int32_t)k, test_fraction, seed, is_test);
    for (int64_t i = 0; i < n; i++)
        ds->n_test += is_test[i];
    ds->n_train = n - ds->n_test;
    ds->d = d;
    ds->k = (int32_t)k;
    ds->x_train = st_malloc((size_t)(ds->n_train * d) * sizeof(float), "x_train");
    ds->y_train = st_malloc((size_t)ds->n_train * sizeof(int32_t), "y_train");
    ds->x_test = st_malloc((size_t)(ds->n_test * d) * sizeof(float), "x_test");
    ds->y_test = st_malloc((size_t)ds->n_test * sizeof(int32_t), "y_test");
    int64_t itr = 0, ite = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t row = is_test[i] ? ite++ : itr++;
        float *dst = (is_test[i] ? ds->x_test : ds->x_train) + row * d;
        for (int64_t j = 0; j < d; j++)
            dst[j] = (float)x[i * d + j];
        (is_test[i] ? ds->y_test : ds->y_train)[row] = cls[i];
    }
    ds->label_values = st_malloc((size_t)k * sizeof *ds->label_values, "label_values");
    memcpy(ds->label_values, labels, (size_t)k * sizeof *labels);

    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t blen = strlen(base);
    if (blen > 4 && strcasecmp(base + blen - 4, ".mat") == 0)
        blen -= 4;
    snprintf(ds->name, sizeof ds->name, "%.*s", (int)blen, base);
    snprintf(ds->source, sizeof ds->source, "%s", path);
    rc = 0;
out:
    free(x);
    free(y);
    free(labels);
    free(cls);
    free(is_test);
    if (rc)
        dataset_free(ds);
    return rc;
}
