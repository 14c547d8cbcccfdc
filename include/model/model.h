/* model.h: the motif-sparse MLP of DESIGN.md on the host: layer sizes,
 * Erdős–Rényi block topology, weights, momentum, and SET evolution.
 *
 * Legend: I in features, O out features of a layer, m motif size,
 * bi x bo the block shape (bi = m inputs; bo = m outputs for hidden layers,
 * 1 for the output layer), nb present blocks, nnz = nb * bi * bo.
 *
 * A sparse layer stores W^T (O x I) as block-CSR over block rows (outputs):
 * block k sits at block row R, block column col_idx[k] (block columns are
 * input motifs); its bo x bi values are w[k*bo*bi .. +bo*bi), row-major
 * (output r within the block, then input c). m = 1 is plain CSR. The block
 * number k is also its "block index" order: row-major over the block grid.
 * A dense layer (p >= 1) stores W^T as (O, I) row-major in w.
 * A transposed index lists, for every block column, its blocks in block-row
 * order (t_ptr, t_blk, t_row), for the backward delta without atomics. */
#ifndef ST_MODEL_H
#define ST_MODEL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    ST_ACT_RELU,
    ST_ACT_ALLRELU,
    ST_ACT_SIGMOID,
    ST_ACT_TANH,
    ST_ACT_COUNT
} st_activation;

extern const char *const st_activation_names[ST_ACT_COUNT];

/* The initial weight scale (see layer_init_limit_fanin below). */
typedef enum { ST_INIT_HE = 0, ST_INIT_HE_SPARSE = 1, ST_INIT_COUNT } st_init;
extern const char *const st_init_names[ST_INIT_COUNT];

#define ST_ALLRELU_ALPHA 0.6f

typedef struct {
    int32_t n_in, n_out;  /* I, O                                            */
    int32_t bi, bo;       /* block: bi inputs x bo outputs                   */
    int32_t nbr, nbc;     /* block rows O/bo, block columns I/bi             */
    double p;             /* Erdős–Rényi block probability (clamped to 1)    */
    int dense;            /* 1: stored dense, never evolved                  */
    int32_t nb;           /* present blocks (sparse); constant during a run  */
    int32_t *row_ptr;     /* nbr + 1, host                                   */
    int32_t *col_idx;     /* nb, host, sorted within each block row          */
    int32_t *t_ptr;       /* nbc + 1, host                                   */
    int32_t *t_blk;       /* nb, host: block numbers by column, then row     */
    int32_t *t_row;       /* nb, host: block row of t_blk[j]                 */
    float *w;             /* nnz (sparse) or O*I (dense), host               */
    float *v;             /* momentum, same length as w                      */
    float *bias, *vbias;  /* O, host                                         */
    int init;             /* st_init: the scale of initial and regrown weights */
} st_layer;

typedef struct {
    int n_layers;         /* L: weight layers (hidden layers + output)       */
    int32_t *sizes;       /* L + 1: n_0 (features) .. n_L (classes)          */
    int motif;            /* m                                               */
    st_layer *layers;     /* L                                               */
    float *feat_mean;     /* n_0: standardisation statistics (NULL: none)    */
    float *feat_std;      /* n_0                                             */
} st_model;

/* Block probability p = min(1, eps (I + O) / (I O)). */
double layer_er_probability(int64_t n_in, int64_t n_out, double epsilon);

/* Check that m divides sizes[0 .. L-1] and that every layer's connection
 * count fits the 32-bit indices; -1 with a user-facing message in err. */
int model_check_shape(const int32_t *sizes, int n_layers, int motif, char *err);

/* Build the Erdős–Rényi topology (geometric skipping per block row: the same
 * distribution as an independent draw per block, O(nb) work) and He-uniform
 * weights from (seed, layer); biases and momentum 0. */
/* On failure the model may be partly built: call model_free() on it either way. */
int model_init(st_model *mdl, const int32_t *sizes, int n_layers, int motif, double epsilon,
               uint64_t seed, char *err);
/* The same with a choice of initial scale (model_init uses ST_INIT_HE). */
int model_init_ex(st_model *mdl, const int32_t *sizes, int n_layers, int motif, double epsilon,
                  uint64_t seed, st_init init, char *err);
void model_free(st_model *mdl);
/* Free one layer's host arrays (a layer built by hand or by model_init). */
void layer_free(st_layer *L);

static inline int64_t layer_nnz(const st_layer *L)
{
    return L->dense ? (int64_t)L->n_in * L->n_out : (int64_t)L->nb * L->bi * L->bo;
}
int64_t model_connections(const st_model *mdl);

/* Rebuild t_ptr / t_blk / t_row from row_ptr / col_idx. */
void layer_build_transpose(st_layer *L);
/* The same with a cursor of nbc + 1 int32 supplied (no allocation), and
 * scratch tmp of tmp_cap >= nb entries (NULL, or fewer: none) that lets a
 * wide layer (more than 4096 block columns) be transposed in two
 * cache-friendly passes instead of one scatter; the result is the same. */
void layer_build_transpose_ws(st_layer *L, int32_t *fill, uint64_t *tmp, size_t tmp_cap);

/* He-uniform limit sqrt(6 / I) with the dense fan-in I (SET's reference). */
static inline float layer_init_limit(const st_layer *L)
{
    return (float)sqrt(6.0 / (double)L->n_in);
}

/* How weights are drawn, at initialisation and at regrowth: uniform in
 * [-lim, lim] with lim = sqrt(6 / fan-in), the fan-in being
 *   ST_INIT_HE         the layer's dense fan-in I (DESIGN.md, SET's code);
 *   ST_INIT_HE_SPARSE  the output neuron's actual fan-in: the present
 *                      inputs of its block row, (blocks in the row) x bi,
 *                      counted when the weight is drawn (after pruning and
 *                      regrowth for a regrown weight). */

/* The limit for a weight of an output neuron with `fanin` present inputs. */
static inline float layer_init_limit_fanin(const st_layer *L, int64_t fanin)
{
    if (L->init == ST_INIT_HE_SPARSE && fanin > 0)
        return (float)sqrt(6.0 / (double)fanin);
    return layer_init_limit(L);
}

/* --- SET evolution (CPU reference; the GPU backend must match it) ------- */
typedef struct {
    int64_t blocks_before, blocks_after;
    int64_t removed;      /* blocks pruned (m = 1: positive + negative)      */
    int64_t removed_pos, removed_neg; /* m = 1 only                          */
    int64_t regrown;      /* blocks accepted                                 */
    int64_t draws;        /* Philox candidates drawn                         */
} st_evolve_stats;

/* Mark the blocks to prune (DESIGN.md step 1): removed[k] = 1 for each.
 * removed: nb bytes, host. Returns the number marked. */
int64_t layer_prune_select(const st_layer *L, double zeta, uint8_t *removed,
                           st_evolve_stats *st);
/* Prune, regrow (candidates from Philox keyed by (seed, layer, epoch)), rebuild
 * the block-CSR and the transposed index. layer is 1-based. Checks that the
 * block count is unchanged; returns -1 with err otherwise. */
int layer_evolve(st_layer *L, int layer, uint64_t seed, int epoch, double zeta,
                 st_evolve_stats *st, char *err);

/* The scratch memory of evolution, allocated once for a model (sized for
 * its largest sparse layer at this zeta), so that evolving allocates
 * nothing per epoch; layer_evolve makes a temporary one. */
/* Refuse (-1 with err naming the layer) a network whose SET evolution
 * would fail for want of room for its regrowth candidates' draw numbers
 * (a position key holds the block position and the draw in 64 bits), so a
 * run is refused before training rather than at its first evolution.
 * sizes: n_layers + 1 layer sizes. */
int evolve_check_sizes(const int32_t *sizes, int n_layers, int motif, double epsilon,
                       double zeta, char *err);
typedef struct st_evolve_ws st_evolve_ws;
st_evolve_ws *evolve_ws_create(const st_model *m, double zeta);
void evolve_ws_free(st_evolve_ws *ws);
/* Bytes evolve_ws_create allocates for these largest sizes. */
uint64_t evolve_ws_bytes(int64_t max_nb, int64_t max_nbc, double zeta);
int layer_evolve_ws(st_layer *L, int layer, uint64_t seed, int epoch, double zeta,
                    st_evolve_stats *st, st_evolve_ws *ws, char *err);

#ifdef __cplusplus
}
#endif

#endif
