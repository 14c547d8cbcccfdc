/* cpu_ops.h: the CPU backend's operators, feature-major, OpenMP over rows.
 * These are the oracle the GPU kernels are checked against, and the tests
 * call them directly.
 *
 * Legend: B batch (real samples), ld the batch stride of every activation
 * buffer (ld >= B, a multiple of 8; columns B..ld-1 are padding whose deltas
 * are zero), I / O a layer's in / out features. x is (I, ld) means row i of
 * x, x[i*ld .. i*ld+ld), holds feature i for every sample. All host memory.
 * Every row is reduced sequentially by one thread, so results do not depend
 * on the thread count. Sparse layers run register-blocked kernels whose
 * block shape is known at compile time (1x1, 2x2, 4x4, 8x8 and the output
 * layer's m x 1) and a generic path for other shapes, with the same
 * summation order, so the two give identical bits. */
#ifndef ST_CPU_OPS_H
#define ST_CPU_OPS_H

#include "model/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* z (O, ld) = W^T a + bias; a is (I, ld). */
void cpu_layer_forward(const st_layer *L, const float *a, float *z, int ld);

/* Dropout of one batch (see cpu_dropout_mask): the mask's column j is
 * column col0 + j of the batch (a shard of a batch starts at col0), B real
 * columns from there. */
typedef struct {
    uint64_t seed;
    int epoch, batch_index;
    float rate;
    int col0, B;
} cpu_dropout_spec;

/* z (O, ld) = W^T a + bias and, when a_out is not NULL (a hidden layer),
 * a_out = f(z) * mask in the same pass over the rows. dp not NULL: the mask
 * rows of hidden layer `hidden` are drawn into mask first (n_out, ld), or,
 * mask NULL, drawn and used but not kept; dp NULL: mask (or NULL, no
 * dropout) is used as given. z may be NULL for a hidden layer: the
 * pre-activations are then not kept (a ReLU layer's backward needs a_out
 * alone, cpu_layer_backward_delta_relu), and the pass writes a_out only.
 * a_out the same either way. One parallel region. */
void cpu_layer_forward_act(const st_layer *L, const float *a, float *z, float *a_out,
                           st_activation act, int hidden, const cpu_dropout_spec *dp,
                           float *mask, int ld);

/* Whole-network forward pass: for l = 1..L, z[l] (n_l, ld) = W_l^T a[l-1]
 * + b_l and, for hidden layers, a[l] = f(z[l]) * mask[l] (mask NULL: no
 * dropout). a[0] holds the input; z[L] receives the logits. */
void cpu_model_forward(const st_model *m, st_activation act, float *const *z, float *const *a,
                       float *const *mask, int ld);

/* Hidden activation in place: a = f(z) * mask; mask (n, ld) holds 0 or
 * 1/(1-d), or is NULL (no dropout). hidden is the 1-based hidden layer
 * (All-ReLU's slope sign). a and z may not alias. */
void cpu_activation_forward(st_activation act, int hidden, const float *z, const float *mask,
                            float *a, int64_t n, int ld);

/* f'(z) for one element (the shared definition of every activation). */
float st_activation_grad(st_activation act, int hidden, float z);
float st_activation_value(st_activation act, int hidden, float z);

/* Softmax cross-entropy over K classes: z (K, ld) logits, y B labels.
 * Writes delta (K, ld) = (softmax - onehot) / B (0 in padding columns),
 * adds the summed loss to *loss_sum and the correct predictions to *correct.
 * delta may be NULL (evaluation). */
void cpu_softmax_xent(const float *z, const int32_t *y, int K, int B, int ld, float *delta,
                      double *loss_sum, int64_t *correct);
/* The same with delta = (softmax - onehot) / scale_n: a shard of B samples
 * of a batch of scale_n. */
void cpu_softmax_xent_scaled(const float *z, const int32_t *y, int K, int B, int ld, int scale_n,
                             float *delta, double *loss_sum, int64_t *correct);

/* delta_in (I, ld) = (W delta_out) * f'(z_in) * mask_in, one input motif at a
 * time through the transposed index (no atomics). mask_in may be NULL. */
void cpu_layer_backward_delta(const st_layer *L, const float *delta_out, const float *z_in,
                              const float *mask_in, st_activation act, int hidden_in,
                              float *delta_in, int ld);

/* The same for a ReLU hidden input layer, from its activation a_in =
 * relu(z_in) * mask_in (cpu_layer_forward_act's) whose mask values are all 0
 * or keep = cpu_dropout_keep(rate) (keep 1 and no mask without dropout):
 * f'(z_in) mask_in is keep where a_in > 0 and 0 elsewhere, so the values,
 * and the bits, are cpu_layer_backward_delta's, from one array read instead
 * of two (a_in, which the layer's weight gradient reads next). Needs
 * denormals either kept or flushed with both FTZ and DAZ (as
 * cpu_ops_flush_denormals does). */
void cpu_layer_backward_delta_relu(const st_layer *L, const float *delta_out, const float *a_in,
                                   float keep, float *delta_in, int ld);

/* Sampled product (SDDMM): gw[k] = sum_b delta_out[o, b] a_in[i, b] for each
 * present connection (o, i) in storage order (nnz floats); gb[o] = sum_b
 * delta_out[o, b]. Padding columns contribute 0 because their deltas are 0. */
void cpu_layer_grad(const st_layer *L, const float *a_in, const float *delta_out, int ld,
                    float *gw, float *gb);

/* Momentum SGD with weight decay on weights only:
 * v = mu v - lr (g + wd w); w += v (and the same for biases without wd). */
void cpu_layer_update(st_layer *L, const float *gw, const float *gb, float lr, float mu,
                      float wd);

/* cpu_layer_grad then cpu_layer_update, fused for a sparse layer: each
 * weight's gradient is applied as soon as it is summed (no gradient array);
 * the result equals the two calls bit for bit. A dense layer uses the two
 * calls with scratch_gw (nnz) and scratch_gb (n_out). */
void cpu_layer_grad_update(st_layer *L, const float *a_in, const float *delta_out, int ld,
                           float lr, float mu, float wd, float *scratch_gw, float *scratch_gb);

/* cpu_layer_backward_delta (z_in not NULL: f' of act at hidden_in and
 * mask_in) or cpu_layer_backward_delta_relu (z_in NULL: from a_in and
 * keep), then cpu_layer_grad into gw (nnz) and gb (n_out), with the same
 * bits; for an m = 1 sparse layer at a batch stride of at most 128 (where
 * the build has AVX-512), in one pass over the transposed
 * index: the gradients are summed from the delta rows the backward gathers
 * (cpu_ops.c, fused_col_*). */
void cpu_layer_backward_grad(const st_layer *L, const float *delta_out, const float *a_in,
                             const float *z_in, const float *mask_in, st_activation act,
                             int hidden_in, float keep, float *delta_in, int ld, float *gw,
                             float *gb);
/* The same backward delta, then cpu_layer_grad_update (same bits); where
 * the pass is fused the gradients go through scratch_gw and scratch_gb
 * (the layer's nnz and n_out floats), then one update pass. */
void cpu_layer_backward_grad_update(st_layer *L, const float *delta_out, const float *a_in,
                                    const float *z_in, const float *mask_in,
                                    st_activation act, int hidden_in, float keep,
                                    float *delta_in, int ld, float lr, float mu, float wd,
                                    float *scratch_gw, float *scratch_gb);

/* Dropout mask from Philox: element (o, b) of hidden layer `hidden` in batch
 * batch_index of `epoch` takes 16-bit lane b % 8 (low half of word (b%8)/2
 * first) of st_rand(seed, DROPOUT, hidden, o, (batch_index << 9) | b / 8,
 * epoch); it is dropped when that lane is below round(rate * 65536) and
 * kept elements get 1 / (1 - rate). Needs batch <= 4096 and fewer than 2^23
 * batches per epoch. mask is (n, ld); padding columns get 0. */
void cpu_dropout_mask(uint64_t seed, int hidden, int epoch, int batch_index, float rate,
                      float *mask, int64_t n, int B, int ld);
/* The factor kept elements get: 1 / (1 - rate), as a float. */
float cpu_dropout_keep(float rate);
/* The same for a shard: mask column j is batch column col0 + j, B real
 * columns (the shard's samples); the values equal cpu_dropout_mask's
 * columns col0 .. col0 + B - 1 of the whole batch. */
void cpu_dropout_mask_at(uint64_t seed, int hidden, int epoch, int batch_index, float rate,
                         float *mask, int64_t n, int col0, int B, int ld);

/* Tests: 1 makes every sparse layer take the generic (runtime block shape)
 * path instead of the register-blocked kernels for 1x1, 2x2, 4x4, 8x8 and
 * m x 1; both give bit-identical results. Not for use while kernels run. */
void cpu_ops_force_generic(int on);
/* Tests: whether the sparse kernels prefetch gathered rows: -1 (the
 * default) where the gathered matrix is larger than the cache that would
 * hold it (cpu_ops.c, gather_prefetch), 0 never, 1 always. A hint only: the
 * results are the same bits. */
void cpu_ops_force_prefetch(int mode);

/* Flush denormal floats to zero (x86: MXCSR FTZ and DAZ) in the calling
 * thread and in every OpenMP thread (threads created later inherit it from
 * the caller). The CPU backend calls it when it is created: a float below
 * 1.2e-38 (a saturated softmax's deltas, and their products downstream)
 * costs a microcode assist of about a hundred cycles per operation, and a
 * 784-1000000-10 run took 5x longer per epoch by its third epoch. Results
 * change only where such values occur (they become 0). */
void cpu_ops_flush_denormals(void);

#ifdef __cplusplus
}
#endif

#endif
