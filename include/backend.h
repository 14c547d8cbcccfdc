/* backend.h: the interface between the host epoch loop (train.c) and a
 * compute backend (cpu: backend_cpu.c; gpu: kernels/). The host owns the
 * data on disk, the epoch loop, shuffling, logging and files; a backend owns
 * the model's working copy and runs whole epochs, evaluation and evolution,
 * returning only scalars. */
#ifndef ST_BACKEND_H
#define ST_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "dataset.h"
#include "model.h"

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
