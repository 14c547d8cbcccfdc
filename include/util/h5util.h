/* h5util.h: small helpers over the HDF5 C library shared by the data file
 * (data_h5.c) and the checkpoint (checkpoint.c): one-line error messages,
 * checked attribute and dataset access, and atomic file replacement.
 * Every function returns 0 (or a valid id) on success, or -1 after writing
 * "PATH: problem" into err (ST_ERRLEN bytes). */
#ifndef ST_H5UTIL_H
#define ST_H5UTIL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "util/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Rows per chunk of a compressed dataset: about 1 MiB per chunk. */
#define H5_CHUNK_BYTES (1u << 20)
#define H5_GZIP_LEVEL 4

/* HDF5 check: on a negative result writes "PATH: CALL failed at file:line:
 * HDF5 message" into err and jumps to the function's `fail` label. Needs
 * `path`, `err` and a `fail` label in scope. */
#define H5_TRY(call)                                                               \
    do {                                                                           \
        if ((call) < 0) {                                                          \
            char h5msg_[256];                                                      \
            st_fail(err, "%s: %s failed at %s:%d: %s", path, #call, __FILE__,      \
                    __LINE__, h5u_message(h5msg_));                                 \
            goto fail;                                                             \
        }                                                                          \
    } while (0)

/* The HDF5 library's message for the last failed call, on one line (buf: 256 bytes). */
const char *h5u_message(char *buf);
const char *h5u_class_name(H5T_class_t c);

/* Open an existing HDF5 file read-only: st_check_regular_input first (no
 * FIFO, device or directory), then one clear message for an empty file, a
 * file another process holds open for writing (HDF5 file locking; says
 * HDF5_USE_FILE_LOCKING) and a file that is not HDF5 or is truncated.
 * Returns the file id (caller closes) or -1 with err. */
hid_t h5u_open_read(const char *path, char *err);

/* One integer (or, for h5u_read_num_attr, integer or float) attribute of
 * the file's root or of a group. */
int h5u_read_int_attr(hid_t loc, const char *path, const char *name, int64_t *out, char *err);
int h5u_read_num_attr(hid_t loc, const char *path, const char *name, double *out, char *err);
/* Returns 0 when read, 1 when absent, -1 with err; out is truncated to cap bytes. */
int h5u_read_str_attr(hid_t loc, const char *path, const char *name, char *out, size_t cap,
                      char *err);
/* Open dataset `name` (a full path such as "/train/X") after checking that it
 * and its parent group exist as hard links (no soft or external link, no
 * dataset where a group belongs), that it keeps its values in the file
 * (contiguous, chunked or compact storage: external storage and virtual
 * datasets are refused), its rank and its type class (H5T_NO_CLASS: any);
 * dims gets its shape (rank <= 2). */
hid_t h5u_open_checked(hid_t file, const char *path, const char *name, int rank,
                       H5T_class_t cls, hsize_t dims[2], char *err);

/* Refuse a dataset of the given shape whose stored bytes cannot hold it
 * (chunks never written, or more values than any compression could expand
 * to): a small corrupt file must not make the reader allocate gigabytes. */
int h5u_check_stored(hid_t dset, const char *path, const char *name, int rank,
                     const hsize_t *dims, char *err);

int h5u_write_dset(hid_t file, const char *path, const char *name, hid_t ftype, hid_t mtype,
                   int rank, const hsize_t *dims, size_t row_bytes, const void *data,
                   char *err);
int h5u_write_attr(hid_t loc, const char *path, const char *name, hid_t ftype, hid_t mtype,
                   hsize_t n, const void *data, char *err);
int h5u_write_int_attr(hid_t loc, const char *path, const char *name, int32_t v, char *err);
int h5u_write_str_attr(hid_t loc, const char *path, const char *name, const char *v,
                       char *err);

/* Write a new HDF5 file at path atomically: write(file, path, ctx, err)
 * writes it into a temporary file in the same directory (fsync'ed when
 * durable is set), which is renamed over path (and the directory
 * fsync'ed). On any failure (a full disk, an unwritable
 * folder) the temporary file is removed and path is untouched. */
typedef int (*h5u_writer)(hid_t file, const char *path, const void *ctx, char *err);
int h5u_save_atomic(const char *path, h5u_writer write, const void *ctx, int durable,
                    char *err);

#ifdef __cplusplus
}
#endif

#endif
