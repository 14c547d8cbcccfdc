/* dist.h: data-parallel training over MPI (CPU backend), src/dist/dist.c.
 *
 * `mpirun -np N settrain train ...` (or `srun` inside an allocation) trains
 * one model on N ranks. Every rank holds the whole model and data set and
 * draws the same permutation; a batch of B samples is cut into chunks of
 * ST_DIST_CHUNK samples (the last one shorter) and each rank takes a
 * contiguous run of chunks (chunks [K r / N, K (r + 1) / N) of K). A chunk's
 * gradient (backend_cpu_batch_grad over its columns) is converted to fixed
 * point (2^-ST_DIST_FIXED_BITS) and added in 64-bit integers; one
 * MPI_Allreduce (MPI_INT64_T, sum) over one flat buffer (every layer's
 * weight gradients at its present connections, then its biases, then the
 * chunk losses, the correct count, the stop flag and an overflow flag)
 * gives every rank the same exact sum, whatever N and however the chunks
 * were dealt; every rank applies the same update. Integer sums are
 * associative, so a run gives bit-identical metrics, topology and weights
 * for every N (1 included) at the same seed and batch. Evaluation shards
 * the test set the same way. After every evolution the ranks compare a hash
 * of each layer's topology and weights; a difference stops the run naming
 * the layer and the epoch.
 *
 * MPI starts only when the process was started by an MPI launcher
 * (environment of mpirun / mpiexec / srun with PMI or PMIx); a plain
 * `settrain train` of an MPI build runs as before (the fused single-process
 * path, whose float sums round differently from the chunked one: the two
 * agree to rounding, not bit for bit). Without MPI support (no mpicc when
 * built) every function below is a world of one. */
#ifndef ST_DIST_H
#define ST_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "model/model.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef ST_DIST_CHUNK
/* 64: the widest register tile of the CPU kernels (8 vectors of 8), so a
 * chunk costs per sample what a whole batch does; more ranks than
 * ceil(B / 64) leave some idle. */
#define ST_DIST_CHUNK 64      /* samples per chunk of a batch               */
#endif
#define ST_DIST_EVAL_CHUNK 128 /* test samples per chunk of the evaluation  */
#define ST_DIST_FIXED_BITS 32 /* fixed-point fraction bits of the reduction */

/* Starts MPI when launched by an MPI launcher (SETTRAIN_MPI=0 never starts
 * it, SETTRAIN_MPI=1 always does). Ranks other than 0 send stdout to
 * /dev/null. Safe to call more than once. Returns 0, or -1 with err (an
 * MPI-less build started by a launcher for several ranks, or srun without
 * MPI wire-up). */
int dist_init(char *err);
/* 1 when MPI runs (the data-parallel path is used, any world size). */
int dist_active(void);
int dist_rank(void);
int dist_size(void);
/* Rank 0 (and the only process without MPI): the one that writes files. */
static inline int dist_is_root(void) { return dist_rank() == 0; }
/* MPI_Finalize at the normal end of a run. A process that exits without it
 * (an error on any rank) aborts every rank, so none waits forever. */
void dist_finalize(void);
/* One line for --version: "yes (Open MPI v4.1.4)" or "no (built without MPI)". */
const char *dist_build_info(void);

/* Makes be (a CPU backend) data-parallel: its train_epoch, evaluate, evolve
 * and describe become the ones above; destroy frees the buffers too. Caps
 * the OpenMP threads at the CPUs the rank is bound to. Returns 0, or -1
 * with err (another backend). */
int dist_wrap_backend(st_backend *be, char *err);
/* A collective: 1 on every rank when flag is non-zero on any rank. Every
 * rank must call it at the same point of the run. Without MPI: flag != 0. */
int dist_any(int flag);
/* Bytes one batch's reduction moves into each rank's buffer (8 per
 * gradient value and bias, plus 4 counters). */
int64_t dist_bytes_per_batch(const st_backend *be);

/* Hashes (64-bit, FNV-1a over 64-bit words) of a layer's topology (block
 * rows and columns) and of its values (weights and biases). */
uint64_t dist_hash_topology(const st_layer *L);
uint64_t dist_hash_values(const st_layer *L);
/* Compares every layer's hashes across ranks (a collective); -1 with err
 * naming the first layer that differs and the epoch. */
int dist_check_model(const st_model *m, int epoch, char *err);

#ifdef __cplusplus
}
#endif

#endif
