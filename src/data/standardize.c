/* standardize.c: the data layer's last step before training: per-feature
 * mean and standard deviation of the training split, standardisation of a
 * split with them (train, test, and the inputs of eval, predict and
 * features), and --pad-input's zero features (include/data/dataset.h). */
#include <math.h>
#include <string.h>

#include "data/dataset.h"
#include "util/common.h"

void data_feature_stats(const float *x, int64_t n, int64_t d, float *mean, float *std)
{
    double *s = st_calloc((size_t)d, sizeof(double), "feature sums");
    double *s2 = st_calloc((size_t)d, sizeof(double), "feature squares");
    for (int64_t i = 0; i < n; i++)
        for (int64_t f = 0; f < d; f++)
            s[f] += x[i * d + f];
    for (int64_t f = 0; f < d; f++)
        s[f] /= (double)n;
    for (int64_t i = 0; i < n; i++)
        for (int64_t f = 0; f < d; f++) {
            double t = x[i * d + f] - s[f];
            s2[f] += t * t;
        }
    for (int64_t f = 0; f < d; f++) {
        mean[f] = (float)s[f];
        std[f] = (float)sqrt(s2[f] / (double)n);
    }
    free(s);
    free(s2);
}

static float *pad_rows(const float *x, int64_t n, int64_t d, int64_t d_new)
{
    float *y = st_calloc((size_t)(n ? n : 1) * (size_t)d_new, sizeof(float), "padded features");
    for (int64_t i = 0; i < n; i++)
        memcpy(y + i * d_new, x + i * d, sizeof(float) * (size_t)d);
    return y;
}

void data_pad_features(st_dataset *ds, int64_t d_new)
{
    if (d_new <= ds->d)
        return;
    float *tr = pad_rows(ds->x_train, ds->n_train, ds->d, d_new);
    float *te = pad_rows(ds->x_test, ds->n_test, ds->d, d_new);
    free(ds->x_train);
    free(ds->x_test);
    ds->x_train = tr;
    ds->x_test = te;
    ds->d = d_new;
}

void data_standardize(float *x, int64_t n, int64_t d, const float *mean, const float *std)
{
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        for (int64_t f = 0; f < d; f++)
            x[i * d + f] = (x[i * d + f] - mean[f]) / (std[f] > 0.0f ? std[f] : 1.0f);
}
