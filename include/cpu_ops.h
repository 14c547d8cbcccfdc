/* cpu_ops.h: the CPU backend's operators, feature-major, OpenMP over rows.
 * These are the oracle the GPU kernels are checked against, and the tests
 * call them directly.
 *
 * Legend: B batch (real samples), ld the batch stride of every activation
 * buffer (ld >= B, a multiple of 8; columns B..ld-1 are padding whose deltas
 * are zero), I / O a layer's in / out features. x is (I, ld) means row i of
 * x, x[i*ld .. i*ld+ld), holds feature i for every sample. All host memory.
 * Every row is reduced sequentially by one thread, so results do not depend
 * on the thread count. */
#ifndef ST_CPU_OPS_H
#define ST_CPU_OPS_H

#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* z (O, ld) = W^T a + bias; a is (I, ld). */
void cpu_layer_forward(const st_layer *L, const float *a, float *z, int ld);

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

/* delta_in (I, ld) = (W delta_out) * f'(z_in) * mask_in, one input motif at a
 * time through the transposed index (no atomics). mask_in may be NULL. */
void cpu_layer_backward_delta(const st_layer *L, const float *delta_out, const float *z_in,
                              const float *mask_in, st_activation act, int hidden_in,
                              float *delta_in, int ld);

/* Sampled product (SDDMM): gw[k] = sum_b delta_out[o, b] a_in[i, b] for each
 * present connection (o, i) in storage order (nnz floats); gb[o] = sum_b
 * delta_out[o, b]. Padding columns contribute 0 because their deltas are 0. */
void cpu_layer_grad(const st_layer *L, const float *a_in, const float *delta_out, int ld,
                    float *gw, float *gb);

/* Momentum SGD with weight decay on weights only:
 * v = mu v - lr (g + wd w); w += v (and the same for biases without wd). */
void cpu_layer_update(st_layer *L, const float *gw, const float *gb, float lr, float mu,
                      float wd);

/* Dropout mask from Philox: element (o, b) of hidden layer `hidden` in batch
 * batch_index of `epoch` takes 16-bit lane b % 8 (low half of word (b%8)/2
 * first) of st_rand(seed, DROPOUT, hidden, o, (batch_index << 9) | b / 8,
 * epoch); it is dropped when that lane is below round(rate * 65536) and
 * kept elements get 1 / (1 - rate). Needs batch <= 4096 and fewer than 2^23
 * batches per epoch. mask is (n, ld); padding columns get 0. */
void cpu_dropout_mask(uint64_t seed, int hidden, int epoch, int batch_index, float rate,
                      float *mask, int64_t n, int B, int ld);

#ifdef __cplusplus
}
#endif

#endif
