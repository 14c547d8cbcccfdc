/* h5util.c: HDF5 helpers shared by the data file and the checkpoint:
 * one-line error messages from the HDF5 error stack, checked attribute and
 * dataset access, and atomic (optionally durable) file replacement. */
#define _POSIX_C_SOURCE 200809L
#include "util/h5util.h"
#include "util/outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sys/stat.h>
#include <unistd.h>

/* Walker for H5Ewalk2: keeps the innermost (most specific) description. */
static herr_t h5u_innermost(unsigned n, const H5E_error2_t *e, void *buf)
{
    if (n == 0)
        snprintf((char *)buf, 256, "%s", e->desc ? e->desc : "no description");
    return 0;
}

/* The HDF5 library's message for the last failed call (buf: 256 bytes),
 * on one line. */
const char *h5u_message(char *buf)
{
    snprintf(buf, 256, "no HDF5 error recorded");
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5u_innermost, buf);
    for (char *c = buf; *c; c++)
        if (*c == '\n')
            *c = ' ';
    return buf;
}



/* Walker for H5Ewalk2: records whether a record is HDF5's "cannot lock the
 * file" and keeps that record's text (the errno part says why). */
struct lock_search {
    int found;
    char desc[256];
};

static herr_t h5u_find_lock(unsigned n, const H5E_error2_t *e, void *data)
{
    (void)n;
    struct lock_search *ls = data;
    if (!ls->found && e->min_num == H5E_CANTLOCKFILE) {
        ls->found = 1;
        snprintf(ls->desc, sizeof ls->desc, "%s", e->desc ? e->desc : "");
    }
    return 0;
}

hid_t h5u_open_read(const char *path, char *err)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (st_check_regular_input(path, err))
        return -1;
    struct stat sb;
    if (stat(path, &sb) == 0 && sb.st_size == 0)
        return st_fail(err, "%s: is empty (0 bytes), not an HDF5 file", path);
    htri_t is = H5Fis_hdf5(path);
    hid_t file = is > 0 ? H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT) : -1;
    if (file >= 0)
        return file;
    char h5msg[256];
    struct lock_search ls = {0, ""};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5u_find_lock, &ls);
    if (ls.found) {
        /* HDF5 (1.10 and later) takes a shared flock to read and an
         * exclusive one to write; EAGAIN/EWOULDBLOCK is another process
         * holding it for writing. */
        if (strstr(ls.desc, "temporarily unavailable") || strstr(ls.desc, "errno = 11,"))
            return st_fail(err, "%s: is locked: another process has it open for writing "
                           "(HDF5 file locking); wait until that process closes it "
                           "(HDF5_USE_FILE_LOCKING=FALSE skips the lock, for a file system "
                           "whose locks are stale: only when no writer is left)", path);
        return st_fail(err, "%s: cannot take HDF5's read lock on the file (%s); where the "
                       "file system does not support locks, set HDF5_USE_FILE_LOCKING=FALSE",
                       path, ls.desc);
    }
    return st_fail(err, "%s: not an HDF5 file or truncated (%s)", path,
                   is == 0 ? "no HDF5 signature" : h5u_message(h5msg));
}

const char *h5u_class_name(H5T_class_t c)
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

/* Read one numeric attribute of loc (the file's root or a group) into out
 * as mtype; integers only unless any_number is set. */
static int read_one_attr(hid_t loc, const char *path, const char *name, int any_number,
                         hid_t mtype, void *out, char *err)
{
    hid_t a = -1, t = -1, s = -1;
    int rc = -1;
    htri_t ex;
    H5_TRY(ex = H5Aexists(loc, name));
    if (!ex)
        return st_fail(err, "%s: missing %sattribute %s", path,
                       H5Iget_type(loc) == H5I_FILE ? "root " : "", name);
    H5_TRY(a = H5Aopen(loc, name, H5P_DEFAULT));
    H5_TRY(t = H5Aget_type(a));
    H5_TRY(s = H5Aget_space(a));
    H5T_class_t cls = H5Tget_class(t);
    if ((cls != H5T_INTEGER && !(any_number && cls == H5T_FLOAT)) ||
        H5Sget_simple_extent_npoints(s) != 1) {
        st_fail(err, "%s: attribute %s must be one %s", path, name,
                any_number ? "number" : "integer");
        goto fail;
    }
    H5_TRY(H5Aread(a, mtype, out));
    rc = 0;
fail:
    if (s >= 0) H5Sclose(s);
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    return rc;
}

int h5u_read_int_attr(hid_t loc, const char *path, const char *name, int64_t *out, char *err)
{
    return read_one_attr(loc, path, name, 0, H5T_NATIVE_INT64, out, err);
}

int h5u_read_num_attr(hid_t loc, const char *path, const char *name, double *out, char *err)
{
    return read_one_attr(loc, path, name, 1, H5T_NATIVE_DOUBLE, out, err);
}


/* Read a string attribute (fixed or variable length) into out (cap
 * bytes, truncated to fit). Returns 0 when read, 1 when absent, -1 with err. */
int h5u_read_str_attr(hid_t file, const char *path, const char *name, char *out,
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


/* 0 when every component of the absolute object path `name` ("/train",
 * then "/train/X") is a hard link in the file; 1 when one is absent
 * (*missing is the prefix that is absent); -1 with err for a soft,
 * external or user-defined link, or when a group on the way is not a
 * group. An external link would make HDF5 open another file (any file,
 * a FIFO too) and a soft link may lead anywhere in this one: the formats
 * settrain reads only ever hold hard links. */
static int check_path(hid_t file, const char *path, const char *name, char *missing,
                      size_t cap, char *err)
{
    char prefix[256];
    size_t len = strlen(name);
    if (len >= sizeof prefix || name[0] != '/')
        return st_fail(err, "%s: internal: bad object path %s", path, name);
    for (size_t i = 1; i <= len; i++) {
        if (name[i] != '/' && name[i] != '\0')
            continue;
        memcpy(prefix, name, i);
        prefix[i] = '\0';
        htri_t ex = H5Lexists(file, prefix, H5P_DEFAULT);
        if (ex < 0) {
            char h5msg[256];
            return st_fail(err, "%s: cannot look up %s: %s (corrupt file?)", path, prefix,
                           h5u_message(h5msg));
        }
        if (!ex) {
            snprintf(missing, cap, "%s", prefix);
            return 1;
        }
        H5L_info_t li;
        if (H5Lget_info(file, prefix, &li, H5P_DEFAULT) < 0) {
            char h5msg[256];
            return st_fail(err, "%s: cannot look up %s: %s (corrupt file?)", path, prefix,
                           h5u_message(h5msg));
        }
        if (li.type != H5L_TYPE_HARD)
            return st_fail(err, "%s: %s is %s; settrain reads only objects stored in the "
                           "file itself", path, prefix,
                           li.type == H5L_TYPE_EXTERNAL ? "an external link (to another file)"
                           : li.type == H5L_TYPE_SOFT   ? "a soft link"
                                                        : "a user-defined link");
        if (i == len)
            break;
        /* An intermediate component must be a group ("/train" stored as
         * a dataset would otherwise fail the next lookup with HDF5's text). */
        hid_t o = H5Oopen(file, prefix, H5P_DEFAULT);
        H5I_type_t type = o >= 0 ? H5Iget_type(o) : H5I_BADID;
        if (o >= 0)
            H5Oclose(o);
        if (type != H5I_GROUP)
            return st_fail(err, "%s: %s is %s, expected a group (holding %s)", path, prefix,
                           type == H5I_DATASET ? "a dataset" : type == H5I_DATATYPE
                           ? "a named datatype" : "not a readable object", name);
    }
    return 0;
}

/* 0 when dataset `name` keeps its values in this file: contiguous, chunked
 * or compact storage. External storage (raw bytes in other files, which
 * may be /dev/urandom or a FIFO) and virtual datasets (values mapped from
 * other datasets or files; fill values where a source is missing) are
 * refused: HDF5 would follow them silently. */
static int check_layout(hid_t dset, const char *path, const char *name, char *err)
{
    hid_t dcpl = H5Dget_create_plist(dset);
    if (dcpl < 0) {
        char h5msg[256];
        return st_fail(err, "%s: cannot read the storage properties of %s: %s", path, name,
                       h5u_message(h5msg));
    }
    H5D_layout_t layout = H5Pget_layout(dcpl);
    int n_ext = H5Pget_external_count(dcpl);
    char ext[256] = "";
    off_t off;
    hsize_t size;
    if (n_ext > 0 && H5Pget_external(dcpl, 0, sizeof ext, ext, &off, &size) < 0)
        snprintf(ext, sizeof ext, "?");
    ext[sizeof ext - 1] = '\0';
    H5Pclose(dcpl);
    if (layout == H5D_VIRTUAL)
        return st_fail(err, "%s: %s is a virtual dataset (its values are mapped from other "
                       "datasets or files); settrain reads only values stored in the file "
                       "itself (contiguous, chunked or compact storage)", path, name);
    if (n_ext != 0)
        return st_fail(err, "%s: %s keeps its values in external file '%s'%s; settrain "
                       "reads only values stored in the file itself (contiguous, chunked or "
                       "compact storage)", path, name, n_ext > 0 ? ext : "?",
                       n_ext > 1 ? " and others" : "");
    if (layout != H5D_CONTIGUOUS && layout != H5D_CHUNKED && layout != H5D_COMPACT)
        return st_fail(err, "%s: %s has an unknown storage layout (%d)", path, name,
                       (int)layout);
    return 0;
}

/* Open dataset `name` ("/train/X") after checking that it and its group
 * exist as hard links, that it is a dataset stored in the file (no external
 * or virtual storage), that it has rank `rank` and type class `cls` (any
 * class for H5T_NO_CLASS); dims receives its shape. Returns the dataset id or -1 with err. */
hid_t h5u_open_checked(hid_t file, const char *path, const char *name, int rank,
                          H5T_class_t cls, hsize_t dims[2], char *err)
{
    hid_t dset = -1, t = -1, s = -1;
    char missing[256];
    int ex = check_path(file, path, name, missing, sizeof missing, err);
    if (ex < 0)
        return -1;
    if (ex) {
        if (strcmp(missing, name))
            st_fail(err, "%s: missing dataset %s (no %s)", path, name, missing);
        else
            st_fail(err, "%s: missing dataset %s", path, name);
        return -1;
    }
    hid_t o = H5Oopen(file, name, H5P_DEFAULT);
    H5I_type_t type = o >= 0 ? H5Iget_type(o) : H5I_BADID;
    if (o >= 0)
        H5Oclose(o);
    if (type != H5I_DATASET) {
        st_fail(err, "%s: %s is %s, not a dataset", path, name,
                type == H5I_GROUP ? "a group" : type == H5I_DATATYPE ? "a named datatype"
                                                                     : "not readable");
        return -1;
    }
    dset = H5Dopen2(file, name, H5P_DEFAULT);
    if (dset < 0) {
        st_fail(err, "%s: %s is not a dataset", path, name);
        goto fail;
    }
    if (check_layout(dset, path, name, err))
        goto fail;
    H5_TRY(s = H5Dget_space(dset));
    int r = H5Sget_simple_extent_ndims(s);
    if (r != rank) {
        st_fail(err, "%s: %s has rank %d, expected %d", path, name, r, rank);
        goto fail;
    }
    H5_TRY(H5Sget_simple_extent_dims(s, dims, NULL));
    H5_TRY(t = H5Dget_type(dset));
    if (cls != H5T_NO_CLASS && H5Tget_class(t) != cls) {
        st_fail(err, "%s: %s has type class %s, expected %s", path, name,
                h5u_class_name(H5Tget_class(t)), h5u_class_name(cls));
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


/* Write one dataset: rank 1 or 2, dims[0] rows of row_bytes each, stored
 * as ftype from data in mtype; chunked and gzip-compressed when it has rows
 * (an empty dataset stays contiguous). No shuffle filter: on Fashion-MNIST
 * (pixel / 255) it doubled the file and made saving 60% slower. */
int h5u_write_dset(hid_t file, const char *path, const char *name, hid_t ftype,
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

/* Write an attribute of file (the root) or a group: one value (n == 0,
 * scalar) or n values. */
int h5u_write_attr(hid_t file, const char *path, const char *name, hid_t ftype,
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

int h5u_write_int_attr(hid_t file, const char *path, const char *name, int32_t v,
                          char *err)
{
    return h5u_write_attr(file, path, name, H5T_STD_I32LE, H5T_NATIVE_INT32, 0, &v, err);
}

/* Fixed-length, null-terminated ASCII string attribute. */
int h5u_write_str_attr(hid_t file, const char *path, const char *name, const char *v,
                          char *err)
{
    hid_t t = -1;
    int rc = -1;
    H5_TRY(t = H5Tcopy(H5T_C_S1));
    H5_TRY(H5Tset_size(t, strlen(v) + 1));
    H5_TRY(H5Tset_strpad(t, H5T_STR_NULLTERM));
    rc = h5u_write_attr(file, path, name, t, t, 0, v, err);
fail:
    if (t >= 0) H5Tclose(t);
    return rc;
}

/* deflate (the only filter the writer uses) expands data at most 1032:1;
 * a stored value takes at least one byte before compression. */
#define H5_MAX_EXPANSION 1032

/* 0 when the file stores every value that dataset `name` (rank 1 or 2,
 * shape dims) declares: all its chunks, or all its contiguous bytes, and no
 * more values than its stored bytes can expand to. HDF5 returns fill values
 * for storage never written, so without this a file of a few KB could
 * declare gigabytes of zeros (and make the reader allocate them); a shape
 * corrupted in the file is caught here too, before memory is allocated.
 * (H5Dget_space_status is no help: 1.10 reports fully written chunked
 * datasets as partly allocated.) */
int h5u_check_stored(hid_t dset, const char *path, const char *name, int rank,
                        const hsize_t *dims, char *err)
{
    hid_t dcpl = -1, t = -1, space = -1;
    int rc = -1;
    hsize_t values = 1, chunks = 1, cdims[2], have;
    for (int i = 0; i < rank; i++)
        values *= dims[i];
    if (values == 0)
        return 0;
    hsize_t stored = H5Dget_storage_size(dset);
    H5_TRY(dcpl = H5Dget_create_plist(dset));
    H5_TRY(t = H5Dget_type(dset));
    H5D_layout_t layout = H5Pget_layout(dcpl);
    if (layout == H5D_CHUNKED) {
        H5_TRY(H5Pget_chunk(dcpl, rank, cdims));
        for (int i = 0; i < rank; i++)
            chunks *= (dims[i] + cdims[i] - 1) / cdims[i];
        H5_TRY(space = H5Dget_space(dset));
        H5_TRY(H5Dget_num_chunks(dset, space, &have));
        if (have != chunks) {
            st_fail(err, "%s: %s stores %llu of its %llu chunks (never written, or a corrupt "
                    "file)", path, name, (unsigned long long)have, (unsigned long long)chunks);
            goto fail;
        }
    } else if (layout == H5D_CONTIGUOUS && stored / H5Tget_size(t) < values) {
        st_fail(err, "%s: %s declares %llu values but stores %llu bytes (never written, or a "
                "corrupt file)", path, name, (unsigned long long)values,
                (unsigned long long)stored);
        goto fail;
    }
    if (values / H5_MAX_EXPANSION > stored) {
        st_fail(err, "%s: %s declares %llu values, more than its %llu stored bytes can hold "
                "(corrupt file)", path, name, (unsigned long long)values,
                (unsigned long long)stored);
        goto fail;
    }
    rc = 0;
fail:
    if (space >= 0) H5Sclose(space);
    if (t >= 0) H5Tclose(t);
    if (dcpl >= 0) H5Pclose(dcpl);
    return rc;
}

/* The file is written by HDF5 (sec2 driver) straight into the temporary
 * file that st_outfile_open made beside the target, from the caller's
 * arrays: no image of it is built in memory. Building one (HDF5's core
 * driver) and copying it out cost twice the file in fresh memory, whose
 * first touch dominated: a 395 MB checkpoint took 2.6 s, 1.05 s of it
 * faulting in the copy's pages, and 2 x 1.3 GB of a 3 x 1M network's peak
 * memory. Any failure (a full disk, an unwritable folder) removes the
 * temporary file and leaves the target as it was; st_outfile_commit then
 * fsyncs (durable), renames over the target and fsyncs the folder. */
int h5u_save_atomic(const char *path, h5u_writer write, const void *ctx, int durable,
                    char *err)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    st_outfile o;
    if (st_outfile_open(&o, path, err))
        return -1;
    hid_t fapl = -1, file = -1;
    int rc = -1;
    H5_TRY(fapl = H5Pcreate(H5P_FILE_ACCESS));
    H5_TRY(H5Pset_fapl_sec2(fapl));
#if H5_VERSION_GE(1, 10, 7)
    /* the temporary file is this process's alone: no lock to take (and none
     * that a cluster filesystem without locks could refuse) */
    H5_TRY(H5Pset_file_locking(fapl, 0, 1));
#endif
    H5_TRY(file = H5Fcreate(o.tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl));
    if (write(file, path, ctx, err))
        goto fail;
    {
        hid_t f = file;
        file = -1;
        H5_TRY(H5Fclose(f)); /* writes the rest of the metadata */
    }
    rc = 0;
fail:
    if (file >= 0)
        H5Fclose(file);
    if (fapl >= 0)
        H5Pclose(fapl);
    if (rc) {
        char why[ST_ERRLEN];
        snprintf(why, sizeof why, "%s", err);
        st_outfile_abort(&o);
        st_fail(err, "%s: cannot write: %s; %s", o.target, why,
                o.existed ? "the previous file is unchanged" : "nothing was written");
        return -1;
    }
    return st_outfile_commit(&o, durable, err);
}
