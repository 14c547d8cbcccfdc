/* data_idx.c: reads gzip-compressed IDX files (the MNIST / Fashion-MNIST
 * format) and builds the Fashion-MNIST data set from its four files.
 *
 * IDX: a big-endian header, magic 0x00000803 (uint8 images: n, rows, cols)
 * or 0x00000801 (uint8 labels: n), then exactly n * rows * cols (or n) bytes.
 * A file that is not gzip, has a bad magic, implausible dimensions, fewer
 * bytes than its header promises or bytes after them is refused with one line
 * "FILE: problem". Legend: n samples, d = rows * cols features. */
#include "data/dataset.h"
#include "util/common.h"

#include <sys/stat.h>
#include <zlib.h>

#define IDX_MAGIC_IMAGES 0x00000803u
#define IDX_MAGIC_LABELS 0x00000801u
/* Plausibility limits on the header: at most 2^31-1 items of at most
 * 4096 x 4096 pixels and 16 GiB of payload. */
#define IDX_MAX_N 0x7FFFFFFFu
#define IDX_MAX_SIDE 4096u
#define IDX_MAX_BYTES (1ull << 34)
/* deflate expands data at most 1032:1, so a gzip file of S bytes holds at
 * most IDX_MAX_EXPANSION * S bytes: a header that promises more is refused
 * before that memory is allocated. */
#define IDX_MAX_EXPANSION 1032u

#define FMNIST_CLASSES 10

/* Read up to len bytes; returns the count read (short only at the end of
 * the stream or on a zlib error, which gzerror then reports). */
static size_t gz_read_full(gzFile gz, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        size_t want = len - got < (1u << 30) ? len - got : (1u << 30);
        int r = gzread(gz, (char *)buf + got, (unsigned)want);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    return got;
}

/* The zlib error after a short read: a message for a corrupt stream, or
 * NULL when the stream simply ended early. */
static const char *gz_corruption(gzFile gz)
{
    int code;
    const char *msg = gzerror(gz, &code);
    return code == Z_OK || code == Z_BUF_ERROR ? NULL : msg;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Read one gzip IDX file with the given magic and ndims (1 or 3) header
 * dimensions into dims and *data (dims product bytes, host, caller frees). */
static int idx_read(const char *path, uint32_t magic, int ndims, uint8_t **data,
                    int64_t *dims, char *err)
{
    const char *kind = ndims == 3 ? "image" : "label";
    uint8_t hdr[16];
    int rc = -1;
    *data = NULL;
    struct stat sb;
    if (dataset_check_input(path, err))
        return -1;
    if (stat(path, &sb) != 0)
        return st_fail(err, "%s: cannot open: %s", path, strerror(errno));
    errno = 0;
    gzFile gz = gzopen(path, "rb");
    if (!gz)
        return st_fail(err, "%s: cannot open: %s", path,
                       errno ? strerror(errno) : "out of memory");
    gzbuffer(gz, 1u << 17);
    if (gzdirect(gz)) {
        st_fail(err, "%s: not a gzip file (expected a gzip-compressed IDX %s file)", path,
                kind);
        goto out;
    }

    /* The magic first, so that a file of the other kind is named as such. */
    size_t hlen = 4 + 4 * (size_t)ndims;
    size_t got = gz_read_full(gz, hdr, 4);
    if (got == 4 && be32(hdr) != magic) {
        st_fail(err, "%s: bad magic 0x%08x, expected 0x%08x (IDX %s file)", path,
                be32(hdr), magic, kind);
        goto out;
    }
    if (got == 4)
        got += gz_read_full(gz, hdr + 4, hlen - 4);
    if (got < hlen) {
        const char *bad = gz_corruption(gz);
        st_fail(err, "%s: %s%s", path, bad ? "corrupt gzip data: " : "",
                bad ? bad : "too short for an IDX header");
        goto out;
    }
    uint64_t total = 1;
    for (int i = 0; i < ndims; i++) {
        uint32_t v = be32(hdr + 4 + 4 * i);
        uint32_t max = i == 0 ? IDX_MAX_N : IDX_MAX_SIDE;
        if (v < 1 || v > max) {
            st_fail(err, "%s: implausible dimension %d of the header: %u (expected 1 .. %u)",
                    path, i, v, max);
            goto out;
        }
        dims[i] = v;
        total *= v;
    }
    if (total > IDX_MAX_BYTES) {
        st_fail(err, "%s: implausible header: %llu bytes of %s data", path,
                (unsigned long long)total, kind);
        goto out;
    }
    if (total > IDX_MAX_EXPANSION * (uint64_t)sb.st_size) {
        st_fail(err, "%s: truncated: the header promises %llu bytes of %s data, more than "
                "a gzip file of %lld bytes can hold", path, (unsigned long long)total, kind,
                (long long)sb.st_size);
        goto out;
    }

    *data = st_malloc((size_t)total, path);
    got = gz_read_full(gz, *data, (size_t)total);
    if (got < total) {
        const char *bad = gz_corruption(gz);
        if (bad)
            st_fail(err, "%s: corrupt gzip data: %s", path, bad);
        else
            st_fail(err, "%s: truncated: the header promises %llu bytes of %s data, the "
                    "file holds %zu", path, (unsigned long long)total, kind, got);
        goto out;
    }
    /* The stream must end here; reaching the end also checks the gzip CRC. */
    uint8_t extra;
    int r = gzread(gz, &extra, 1);
    if (r > 0) {
        st_fail(err, "%s: trailing data after the %lld %ss the header declares", path,
                (long long)dims[0], kind);
        goto out;
    }
    if (r < 0) {
        st_fail(err, "%s: corrupt or truncated gzip stream: %s", path, gzerror(gz, &r));
        goto out;
    }
    rc = 0;
out:
    gzclose(gz);
    if (rc) {
        free(*data);
        *data = NULL;
    }
    return rc;
}

int idx_read_images(const char *path, uint8_t **pix, int64_t *n, int64_t *rows,
                    int64_t *cols, char *err)
{
    int64_t dims[3];
    if (idx_read(path, IDX_MAGIC_IMAGES, 3, pix, dims, err))
        return -1;
    *n = dims[0];
    *rows = dims[1];
    *cols = dims[2];
    return 0;
}

int idx_read_labels(const char *path, uint8_t **lab, int64_t *n, char *err)
{
    return idx_read(path, IDX_MAGIC_LABELS, 1, lab, n, err);
}

/* One split: "<dir>/<prefix>-images-idx3-ubyte.gz" and the labels file
 * -> *x (n, rows * cols) = pixel / 255 and *y (n), host. */
static int fmnist_split(const char *dir, const char *prefix, float **x, int32_t **y,
                        int64_t *n, int64_t *rows, int64_t *cols, char *err)
{
    char ipath[4096], lpath[4096];
    uint8_t *pix = NULL, *lab = NULL;
    int64_t ni, nl;
    int rc = -1;
    snprintf(ipath, sizeof ipath, "%s/%s-images-idx3-ubyte.gz", dir, prefix);
    snprintf(lpath, sizeof lpath, "%s/%s-labels-idx1-ubyte.gz", dir, prefix);
    if (idx_read_images(ipath, &pix, &ni, rows, cols, err) ||
        idx_read_labels(lpath, &lab, &nl, err))
        goto out;
    if (ni != nl) {
        st_fail(err, "%s: holds %lld labels but %s holds %lld images", lpath,
                (long long)nl, ipath, (long long)ni);
        goto out;
    }
    for (int64_t i = 0; i < nl; i++)
        if (lab[i] >= FMNIST_CLASSES) {
            st_fail(err, "%s: label %d at index %lld is outside 0..%d", lpath, lab[i],
                    (long long)i, FMNIST_CLASSES - 1);
            goto out;
        }
    size_t m = (size_t)ni * (size_t)(*rows * *cols);
    *n = ni;
    *x = st_malloc(m * sizeof **x, "fashion-mnist pixels");
    *y = st_malloc((size_t)ni * sizeof **y, "fashion-mnist labels");
    for (size_t i = 0; i < m; i++)
        (*x)[i] = (float)pix[i] / 255.0f;
    for (int64_t i = 0; i < ni; i++)
        (*y)[i] = lab[i];
    rc = 0;
out:
    free(pix);
    free(lab);
    return rc;
}

int prepare_fmnist(const char *src_dir, st_dataset *ds, char *err)
{
    int64_t rows, cols, test_rows, test_cols;
    memset(ds, 0, sizeof *ds);
    if (fmnist_split(src_dir, "train", &ds->x_train, &ds->y_train, &ds->n_train, &rows,
                     &cols, err) ||
        fmnist_split(src_dir, "t10k", &ds->x_test, &ds->y_test, &ds->n_test, &test_rows,
                     &test_cols, err))
        goto fail;
    if (rows != test_rows || cols != test_cols) {
        st_fail(err, "%s: training images are %lldx%lld but test images are %lldx%lld",
                src_dir, (long long)rows, (long long)cols, (long long)test_rows,
                (long long)test_cols);
        goto fail;
    }
    ds->d = rows * cols;
    ds->k = FMNIST_CLASSES;
    ds->label_values = st_malloc(FMNIST_CLASSES * sizeof *ds->label_values, "label_values");
    for (int c = 0; c < FMNIST_CLASSES; c++)
        ds->label_values[c] = c;
    snprintf(ds->name, sizeof ds->name, "fashion-mnist");
    snprintf(ds->source, sizeof ds->source, "Fashion-MNIST IDX files in %s", src_dir);
    return 0;
fail:
    dataset_free(ds);
    return -1;
}
