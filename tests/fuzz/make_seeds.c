/* make_seeds.c: writes the seed corpus of every fuzz target: small valid
 * files of each format, made with the libraries a user's tools would use
 * (the project's HDF5 writer and the HDF5 API, zlib, matio), in the layouts
 * that reach different parts of each reader.
 *
 * Usage: make_seeds DIR   writes DIR/<target>/<seed> for each target of
 * tests/fuzz/targets.h (`make fuzz` runs it; every file is under 20 KB).
 * Legend: n samples, d features, k classes. */
#define _GNU_SOURCE
#include "util/common.h"
#include "train/checkpoint.h"
#include "data/dataset.h"

#include <hdf5.h>
#include <matio.h>
#include <sys/stat.h>
#include <zlib.h>

static const char *out_dir;

/* "<out_dir>/<target>/<name>", creating the target's folder. */
static const char *seed_path(const char *target, const char *name)
{
    static char buf[4096];
    char err[ST_ERRLEN];
    snprintf(buf, sizeof buf, "%s/%s", out_dir, target);
    if (st_mkdirs(buf, err))
        st_die("%s", err);
    snprintf(buf, sizeof buf, "%s/%s/%s", out_dir, target, name);
    return buf;
}

static void write_file(const char *path, const void *data, size_t len, int gzip)
{
    if (gzip) {
        gzFile gz = gzopen(path, "wb9");
        if (!gz || gzwrite(gz, data, (unsigned)len) != (int)len || gzclose(gz) != Z_OK)
            st_die("%s: cannot write the gzip file", path);
        return;
    }
    FILE *f = fopen(path, "wb");
    ST_CHECK_IO(f);
    ST_CHECK_IO(fwrite(data, 1, len, f) == len);
    ST_CHECK_IO(fclose(f) == 0);
}

/* ------------------------------------------------------------------ HDF5 */

/* A small data set through dataset_save_h5 (chunked, deflate). */
static void seed_h5_saved(const char *name, int64_t n_train, int64_t n_test, int64_t d,
                          int32_t k, int with_label_values)
{
    st_dataset ds;
    char err[ST_ERRLEN];
    memset(&ds, 0, sizeof ds);
    ds.n_train = n_train;
    ds.n_test = n_test;
    ds.d = d;
    ds.k = k;
    ds.x_train = st_malloc((size_t)(n_train * d) * sizeof(float), "x_train");
    ds.y_train = st_malloc((size_t)n_train * sizeof(int32_t), "y_train");
    ds.x_test = st_malloc((size_t)(n_test * d) * sizeof(float), "x_test");
    ds.y_test = st_malloc((size_t)n_test * sizeof(int32_t), "y_test");
    for (int64_t i = 0; i < n_train * d; i++)
        ds.x_train[i] = (float)i * 0.25f - 1.0f;
    for (int64_t i = 0; i < n_test * d; i++)
        ds.x_test[i] = (float)i / 3.0f;
    for (int64_t i = 0; i < n_train; i++)
        ds.y_train[i] = (int32_t)(i % k);
    for (int64_t i = 0; i < n_test; i++)
        ds.y_test[i] = (int32_t)((i + 1) % k);
    if (with_label_values) {
        ds.label_values = st_malloc((size_t)k * sizeof(int64_t), "label_values");
        for (int32_t c = 0; c < k; c++)
            ds.label_values[c] = 10 * c - 3;
    }
    snprintf(ds.name, sizeof ds.name, "seed");
    snprintf(ds.source, sizeof ds.source, "tests/fuzz/make_seeds.c");
    if (dataset_save_h5(seed_path("h5", name), &ds, err))
        st_die("%s", err);
    dataset_free(&ds);
}

#define H5_OK(call)                                                                \
    do {                                                                           \
        if ((call) < 0)                                                            \
            st_die("%s failed at %s:%d", #call, __FILE__, __LINE__);              \
    } while (0)

static void h5_dset(hid_t f, const char *name, hid_t ftype, hid_t mtype, int rank,
                    const hsize_t *dims, const void *data)
{
    hid_t s, ds;
    H5_OK(s = H5Screate_simple(rank, dims, NULL));
    H5_OK(ds = H5Dcreate2(f, name, ftype, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5_OK(H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data));
    H5Dclose(ds);
    H5Sclose(s);
}

static void h5_attr_i64(hid_t f, const char *name, int64_t v)
{
    hid_t s, a;
    H5_OK(s = H5Screate(H5S_SCALAR));
    H5_OK(a = H5Acreate2(f, name, H5T_STD_I64BE, s, H5P_DEFAULT, H5P_DEFAULT));
    H5_OK(H5Awrite(a, H5T_NATIVE_INT64, &v));
    H5Aclose(a);
    H5Sclose(s);
}

/* A file the project's writer never makes but the reader accepts:
 * contiguous (uncompressed, so mutated bytes land in the values), X as
 * big-endian float64, y as uint8, 64-bit attributes, a variable-length
 * name; latest = 1 uses the newest file format (checksummed headers). */
static void seed_h5_api(const char *name, int latest)
{
    hid_t fapl, f, g, t, s, a;
    double x[4][3] = {{0, 1, 2}, {-1.5, 0.5, 3}, {7, 8, 9}, {1e-3, -2e3, 0}};
    uint8_t y[4] = {0, 1, 1, 0};
    hsize_t xd[2] = {4, 3}, yd[1] = {4}, xt[2] = {2, 3}, yt[1] = {2};
    const char *nm = "seed-api";
    H5_OK(fapl = H5Pcreate(H5P_FILE_ACCESS));
    if (latest)
        H5_OK(H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST));
    H5_OK(f = H5Fcreate(seed_path("h5", name), H5F_ACC_TRUNC, H5P_DEFAULT, fapl));
    H5_OK(g = H5Gcreate2(f, "/train", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Gclose(g);
    H5_OK(g = H5Gcreate2(f, "/test", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Gclose(g);
    h5_dset(f, "/train/X", H5T_IEEE_F64BE, H5T_NATIVE_DOUBLE, 2, xd, x);
    h5_dset(f, "/train/y", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, yd, y);
    h5_dset(f, "/test/X", H5T_IEEE_F64BE, H5T_NATIVE_DOUBLE, 2, xt, x);
    h5_dset(f, "/test/y", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, yt, y);
    h5_attr_i64(f, "format_version", ST_DATA_FORMAT_VERSION);
    h5_attr_i64(f, "n_classes", 2);
    h5_attr_i64(f, "n_features", 3);
    H5_OK(t = H5Tcopy(H5T_C_S1));
    H5_OK(H5Tset_size(t, H5T_VARIABLE));
    H5_OK(s = H5Screate(H5S_SCALAR));
    H5_OK(a = H5Acreate2(f, "name", t, s, H5P_DEFAULT, H5P_DEFAULT));
    H5_OK(H5Awrite(a, t, &nm));
    H5Aclose(a);
    H5Sclose(s);
    H5Tclose(t);
    H5Fclose(f);
    H5Pclose(fapl);
}

/* ------------------------------------------------------------------- IDX */

/* An IDX file in memory (the big-endian header, then the bytes). */
static size_t idx_build(uint8_t *buf, int images, uint32_t n, uint32_t rows, uint32_t cols)
{
    uint32_t words[4] = {images ? 0x803u : 0x801u, n, rows, cols};
    size_t len = 0;
    for (int w = 0; w < (images ? 4 : 2); w++)
        for (int b = 3; b >= 0; b--)
            buf[len++] = (uint8_t)(words[w] >> (8 * b));
    size_t items = images ? (size_t)n * rows * cols : n;
    for (size_t i = 0; i < items; i++)
        buf[len++] = (uint8_t)(i * 37 % (images ? 256 : 10));
    return len;
}

static void seed_idx(void)
{
    uint8_t buf[256];
    size_t len;
    len = idx_build(buf, 1, 4, 3, 5);
    write_file(seed_path("idx_gz", "images.gz"), buf, len, 1);
    write_file(seed_path("idx_images", "images"), buf, len, 0);
    write_file(seed_path("idx_labels", "images"), buf, len, 0);
    len = idx_build(buf, 1, 1, 1, 1);
    write_file(seed_path("idx_images", "one-pixel"), buf, len, 0);
    len = idx_build(buf, 0, 6, 0, 0);
    write_file(seed_path("idx_gz", "labels.gz"), buf, len, 1);
    write_file(seed_path("idx_labels", "labels"), buf, len, 0);
    write_file(seed_path("idx_images", "labels"), buf, len, 0);
}

/* ------------------------------------------------------------------- MAT */

static void mat_put(mat_t *mat, const char *name, enum matio_classes cls,
                    enum matio_types type, size_t rows, size_t cols, void *data,
                    enum matio_compression comp)
{
    size_t dims[2] = {rows, cols};
    matvar_t *v = Mat_VarCreate(name, cls, type, 2, dims, data, MAT_F_DONT_COPY_DATA);
    if (!v || Mat_VarWrite(mat, v, comp))
        st_die("cannot write MAT variable %s", name);
    Mat_VarFree(v);
}

/* X is 6 x 3, Y has 6 labels in 3 classes; each file stores them in other
 * classes, orientations, compression and file versions. */
static void seed_mat(void)
{
    double xd[18], yd[6] = {1, 2, 1, 2, 3, 3};
    float xf[18];
    int16_t x16[18];
    uint8_t y8[6] = {5, 5, 7, 7, 9, 9};
    int32_t y32[6] = {-1, 0, -1, 0, -1, 0};
    for (int i = 0; i < 18; i++) {
        xd[i] = i * 0.5 - 2;
        xf[i] = (float)i / 7.0f;
        x16[i] = (int16_t)(i * 100 - 900);
    }
    mat_t *mat;
    if (!(mat = Mat_CreateVer(seed_path("mat", "v5-double.mat"), NULL, MAT_FT_MAT5)))
        st_die("cannot create a MAT v5 file");
    mat_put(mat, "X", MAT_C_DOUBLE, MAT_T_DOUBLE, 6, 3, xd, MAT_COMPRESSION_NONE);
    mat_put(mat, "Y", MAT_C_DOUBLE, MAT_T_DOUBLE, 6, 1, yd, MAT_COMPRESSION_NONE);
    Mat_Close(mat);

    /* scikit-feature style: class double stored as int16 elements. */
    if (!(mat = Mat_CreateVer(seed_path("mat", "v5-int16.mat"), NULL, MAT_FT_MAT5)))
        st_die("cannot create a MAT v5 file");
    mat_put(mat, "X", MAT_C_DOUBLE, MAT_T_INT16, 6, 3, x16, MAT_COMPRESSION_NONE);
    mat_put(mat, "Y", MAT_C_UINT8, MAT_T_UINT8, 1, 6, y8, MAT_COMPRESSION_NONE);
    Mat_Close(mat);

    if (!(mat = Mat_CreateVer(seed_path("mat", "v5-zlib.mat"), NULL, MAT_FT_MAT5)))
        st_die("cannot create a MAT v5 file");
    mat_put(mat, "X", MAT_C_SINGLE, MAT_T_SINGLE, 6, 3, xf, MAT_COMPRESSION_ZLIB);
    mat_put(mat, "Y", MAT_C_INT32, MAT_T_INT32, 6, 1, y32, MAT_COMPRESSION_ZLIB);
    Mat_Close(mat);

    if (!(mat = Mat_CreateVer(seed_path("mat", "v4.mat"), NULL, MAT_FT_MAT4)))
        st_die("cannot create a MAT v4 file");
    mat_put(mat, "X", MAT_C_DOUBLE, MAT_T_DOUBLE, 6, 3, xd, MAT_COMPRESSION_NONE);
    mat_put(mat, "Y", MAT_C_DOUBLE, MAT_T_DOUBLE, 1, 6, yd, MAT_COMPRESSION_NONE);
    Mat_Close(mat);

    /* v7.3 is HDF5 inside; only when this matio was built with HDF5. */
    if ((mat = Mat_CreateVer(seed_path("mat", "v73.mat"), NULL, MAT_FT_MAT73))) {
        mat_put(mat, "X", MAT_C_DOUBLE, MAT_T_DOUBLE, 6, 3, xd, MAT_COMPRESSION_NONE);
        mat_put(mat, "Y", MAT_C_DOUBLE, MAT_T_DOUBLE, 6, 1, yd, MAT_COMPRESSION_NONE);
        Mat_Close(mat);
    } else {
        remove(seed_path("mat", "v73.mat"));
    }
}

/* ------------------------------------------------------------ checkpoint */

/* A trained-shape checkpoint of a small network with motif m. */
static void seed_checkpoint(const char *name, int motif)
{
    st_config cfg;
    st_model m;
    st_run_state rs;
    char err[ST_ERRLEN], dir[600], from[700];
    const int32_t sizes[4] = {8, 8, 8, 3};
    config_defaults(&cfg);
    snprintf(cfg.data, sizeof cfg.data, "data.h5");
    cfg.n_hidden = 2;
    cfg.hidden[0] = cfg.hidden[1] = 8;
    cfg.motif = motif;
    cfg.epsilon = 2;
    if (model_init(&m, sizes, 3, motif, cfg.epsilon, 7, err)) {
        fprintf(stderr, "make_seeds: %s\n", err);
        exit(1);
    }
    m.feat_mean = st_calloc(8, sizeof(float), "mean");
    m.feat_std = st_calloc(8, sizeof(float), "std");
    memset(&rs, 0, sizeof rs);
    rs.epochs_done = 3;
    rs.best_acc = rs.final_acc = 0.5;
    snprintf(rs.started, sizeof rs.started, "2026-01-01T00:00:00");
#if ST_CHECKPOINT_FORMAT_VERSION >= 2
    /* Format 2 carries the run id and the data fingerprint: without them
     * the reader refuses the seed at once and the fuzzer never gets past. */
    st_dataset ds;
    memset(&ds, 0, sizeof ds);
    float x[24] = {0};
    int32_t y[3] = {0, 1, 2};
    ds.n_train = 3;
    ds.d = 8;
    ds.k = 3;
    ds.x_train = x;
    ds.y_train = y;
    snprintf(rs.run_id, sizeof rs.run_id, "0123456789abcdef");
    st_data_fingerprint_of(&ds, &rs.data_fp);
    rs.has_fingerprint = 1;
#endif
    snprintf(dir, sizeof dir, "%s/checkpoint", out_dir);
    if (st_mkdirs(dir, err) || checkpoint_save(dir, &cfg, &m, &rs, err)) {
        fprintf(stderr, "make_seeds: %s\n", err);
        exit(1);
    }
    snprintf(from, sizeof from, "%s/checkpoint.h5", dir);
    ST_CHECK_IO(rename(from, seed_path("checkpoint", name)) == 0);
    model_free(&m);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR   (writes DIR/<target>/<seed>)\n", argv[0]);
        return ST_EXIT_USAGE;
    }
    out_dir = argv[1];
    seed_h5_saved("saved-labels.h5", 5, 3, 4, 3, 1);
    seed_h5_saved("saved-no-test.h5", 2, 0, 1, 2, 0);
    seed_h5_api("contiguous.h5", 0);
    seed_h5_api("latest-format.h5", 1);
    seed_idx();
    seed_mat();
    seed_checkpoint("m1.h5", 1);
    seed_checkpoint("m2.h5", 2);
    return 0;
}
