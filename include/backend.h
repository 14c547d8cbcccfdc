/* backend.h: the interface between the host epoch loop (src/train/train.c)
 * and a compute backend (cpu: src/cpu/backend_cpu.c; gpu:
 * kernels/backend_gpu.cu). The host owns the
 * data on disk, the epoch loop, shuffling, logging and files; a backend owns
 * the model's working copy and runs whole epochs, evaluation and evolution,
 * returning only scalars. */
#ifndef ST_BACKEND_H
#define ST_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "train/config.h"
#include "data/dataset.h"
#include "model/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct st_backend st_backend;

typedef struct {
    const char *name;
    /* Mini-batch SGD over the samples perm[start..n) of the training set in
     * batches of cfg->batch (start is a multiple of the batch size; the last
     * batch may be partial; batch k of the epoch starts at sample k * batch).
     * After each batch, if *stop is non-zero, returns early. *done receives
     * the sample index reached (n when the epoch is complete). Adds the summed
     * loss and the correct count of the batches it ran. Returns 0, or -1 with
     * err. */
    int (*train_epoch)(st_backend *b, int epoch, const int64_t *perm, int64_t n, int64_t start,
                       const volatile int *stop, int64_t *done, double *loss_sum,
                       int64_t *correct, char *err);
    /* Forward pass without dropout over a whole split (0 train, 1 test). */
    int (*evaluate)(st_backend *b, int split, double *loss_sum, int64_t *correct, char *err);
    /* SET evolution of every sparse layer after `epoch`; stats has L entries. */
    int (*evolve)(st_backend *b, int epoch, st_evolve_stats *stats, char *err);
    /* Make the host model current (weights, momentum, topology). */
    int (*sync_model)(st_backend *b, char *err);
    /* Device description as JSON members (no braces), for run.json. */
    void (*describe)(st_backend *b, char *buf, size_t n);
    void (*destroy)(st_backend *b);
} st_backend_ops;

struct st_backend {
    const st_backend_ops *ops;
    st_model *model;          /* host model (the CPU backend trains it in place) */
    const st_dataset *data;   /* standardised data, host                         */
    const st_config *cfg;
    void *impl;
};

/* Create a backend for model and data (which must outlive it). Returns NULL
 * with err when the backend cannot run here (e.g. no CUDA device). */
st_backend *backend_cpu_create(st_model *model, const st_dataset *data, const st_config *cfg,
                               char *err);
/* --- CPU backend: data-parallel batches (docs: /work/notes/cpu_backend_api.md) ---
 * A batch runs as: gradients of this process's shard of the batch into one
 * flat buffer -> the reduce hook on that buffer (e.g. an MPI all-reduce
 * sum) -> the momentum / weight-decay update from the buffer.
 * Buffer layout (backend_cpu_grad_size floats): for each layer l = 0..L-1
 * in order, its nnz weight gradients in storage order (block-CSR blocks,
 * each bo x bi row-major; dense layers (O, I) row-major), then its n_out
 * bias gradients. The gradients are sums over the shard's samples of the
 * batch-mean loss's terms (each delta is divided by the whole batch size),
 * so the sum over all shards is the whole batch's gradient. */
typedef int (*st_grad_reduce_fn)(float *grad, int64_t n, void *ctx);

int64_t backend_cpu_grad_size(const st_backend *b);
/* From now on train_epoch runs every batch of B samples as shard `shard`
 * of `shards`: samples [B shard / shards, B (shard + 1) / shards) of the
 * batch, then fn(grad, n, ctx) when fn is not NULL (non-zero: the epoch
 * fails), then the update. shards 1 with fn NULL restores the fused path
 * (gradients applied as they are summed, no buffer). loss_sum and correct
 * of train_epoch then count this shard's samples only. The model and data
 * must be the same on every shard (same seed). Returns 0, or -1 with err. */
int backend_cpu_set_data_parallel(st_backend *b, int shard, int shards, st_grad_reduce_fn fn,
                                  void *ctx, char *err);
/* The pieces, for callers that run their own loop: gradients of the samples
 * rows[lo..hi) of a batch of n_batch samples rows[0..n_batch) (batch
 * batch_index of epoch: the dropout stream) into grad (grad_size floats,
 * zeros for an empty shard); adds the shard's loss and correct count.
 * Returns 0, or -1 with err. */
int backend_cpu_batch_grad(st_backend *b, int epoch, int batch_index, const int64_t *rows,
                           int n_batch, int lo, int hi, float *grad, double *loss_sum,
                           int64_t *correct, char *err);
/* Momentum / weight-decay step of every layer from a gradient buffer. */
void backend_cpu_apply_grad(st_backend *b, const float *grad);

#ifdef ST_HAVE_CUDA
st_backend *backend_gpu_create(st_model *model, const st_dataset *data, const st_config *cfg,
                               char *err);
/* Number of usable CUDA devices (0 when none or no driver). */
int backend_gpu_device_count(void);
#endif

#ifdef __cplusplus
}
#endif

#endif
