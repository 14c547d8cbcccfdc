/* memplan.h: what a training run will need in host memory, computed from
 * its shape before anything large is allocated, and what this process may
 * use (the cgroup limit, MemAvailable and RLIMIT_AS/RLIMIT_DATA, whichever
 * is least). `settrain train` prints the need in its settings table and
 * refuses a run that does not fit, naming the biggest consumer.
 *
 * The connection count of a sparse layer is its expectation p * nbr * nbc
 * blocks (the Erdős–Rényi draw is within a few standard deviations of it);
 * the buffers are those of model.c, backend_cpu.c, evolve.c (one layer's
 * scratch at a time) and the checkpoint writer (the file is built in memory). */
#ifndef ST_MEMPLAN_H
#define ST_MEMPLAN_H

#include <stddef.h>
#include <stdint.h>

#include "train/config.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
    ST_MEM_DATA,        /* training and test features and labels        */
    ST_MEM_MODEL,       /* weights, momentum, biases, indices           */
    ST_MEM_ACTIVATIONS, /* per-batch activations, deltas, dropout masks */
    ST_MEM_GRADIENTS,   /* weight and bias gradients                    */
    ST_MEM_EVOLUTION,   /* prune and regrow scratch (largest layer)     */
    ST_MEM_CHECKPOINT,  /* HDF5's buffers while a checkpoint is written */
    ST_MEM_PROCESS,     /* libraries, stacks, heap slack                */
    ST_MEM_COUNT
};

typedef struct {
    uint64_t part[ST_MEM_COUNT];
    uint64_t total;
    int64_t connections; /* expected */
    uint64_t available;  /* st_memory_available when the plan was made (0: unknown) */
    const char *available_from;
} st_memplan;

extern const char *const st_mem_part_names[ST_MEM_COUNT];
/* The parts' keys in run.json's memory_estimate_bytes ("data", "model", ...). */
extern const char *const st_mem_part_keys[ST_MEM_COUNT];

/* sizes: n_layers + 1 layer sizes; relu: the hidden activation is ReLU (the
 * CPU backend then keeps no hidden pre-activations or masks); n_train,
 * n_test, d as loaded. */
void st_memplan_compute(const int32_t *sizes, int n_layers, int motif, double epsilon,
                        double zeta, int batch, double dropout, int relu, int64_t n_train,
                        int64_t n_test, int64_t d, st_memplan *mp);

/* Bytes this process may still allocate; *what names the limit ("cgroup
 * memory.max", "MemAvailable", "RLIMIT_AS", or the SETTRAIN_MEMORY_LIMIT
 * environment variable, which overrides the others: bytes, or with a K, M,
 * G suffix). Returns 0 when nothing is known. */
uint64_t st_memory_available(const char **what);

/* "12.3 GiB" */
void st_fmt_bytes(uint64_t b, char *buf, size_t n);

/* Refuse (0 or -1 with err) a plan whose total exceeds what was available
 * when it was made (mp->available),
 * naming the biggest part and what to change. `already` is what the
 * process holds of the plan already (the loaded data). */
int st_memplan_check(const st_memplan *mp, uint64_t already, int batch, char *err);

#ifdef __cplusplus
}
#endif

#endif
