/* config.c: the training configuration's defaults (the values --help shows)
 * and the backend names. */
#include <string.h>

#include "train/config.h"

const char *const st_backend_names[ST_BACKEND_COUNT] = {"cpu", "gpu", "auto"};

void config_defaults(st_config *c)
{
    memset(c, 0, sizeof *c);
    c->n_hidden = 3;
    c->hidden[0] = c->hidden[1] = c->hidden[2] = 3000;
    c->motif = 1;
    c->epsilon = 20;
    c->zeta = 0.3;
    c->epochs = 300;
    c->batch = 128;
    c->lr = 0.01;
    c->momentum = 0.9;
    c->weight_decay = 2e-4;
    c->dropout = 0.3;
    c->activation = ST_ACT_RELU;
    c->seed = 1;
    c->backend = ST_BACKEND_AUTO;
    c->standardize = 1;
}
