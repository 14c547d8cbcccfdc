/* config.h: the training configuration (every `settrain train` option). */
#ifndef ST_CONFIG_H
#define ST_CONFIG_H

#include <stdint.h>

#include "model/model.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ST_MAX_HIDDEN 64

typedef enum { ST_BACKEND_CPU, ST_BACKEND_GPU, ST_BACKEND_AUTO, ST_BACKEND_COUNT } st_backend_kind;
extern const char *const st_backend_names[ST_BACKEND_COUNT];

typedef struct {
    char data[4096];          /* --data FILE.h5                               */
    int32_t hidden[ST_MAX_HIDDEN];
    int n_hidden;             /* --hidden 3000,3000,3000                      */
    int motif;                /* --motif 1                                    */
    double epsilon;           /* --epsilon 20                                 */
    double zeta;              /* --zeta 0.3                                   */
    int epochs;               /* --epochs 300                                 */
    int batch;                /* --batch 128                                  */
    double lr;                /* --lr 0.01                                    */
    double momentum;          /* --momentum 0.9                               */
    double weight_decay;      /* --weight-decay 2e-4                          */
    double dropout;           /* --dropout 0.3                                */
    st_activation activation; /* --activation relu                            */
    st_init init;             /* --init he                                    */
    int pad_input;            /* --pad-input: zero features up to a multiple of the motif */
    uint64_t seed;            /* --seed 1                                     */
    int64_t train_limit;      /* --train-limit N (0: all)                     */
    st_backend_kind backend;  /* --backend auto                               */
    int threads;              /* --threads T (0: OpenMP's default)            */
    char out[4096];           /* --out DIR (default results/runs/<name>)      */
    int standardize;          /* 1 unless --no-standardize                    */
    int checkpoint_every;     /* --checkpoint-every N epochs (0: only at the end and on a signal) */
    char resume[4096];        /* --resume DIR: continue the run in DIR        */
    int quiet;                /* --quiet: no per-epoch lines                  */
    int allow_data_change;    /* --allow-data-change: resume on other data    */
} st_config;

void config_defaults(st_config *c);

#ifdef __cplusplus
}
#endif

#endif
