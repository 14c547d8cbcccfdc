/* test_dist.c: the data-parallel path (src/dist/dist.c).
 *  - the layer hashes the ranks compare after every evolution: a change of
 *    one column index changes the topology hash only, of one weight or bias
 *    the value hash only;
 *  - without a launcher dist_init starts nothing (a world of one);
 *  - with MPI built and mpirun present: TOX-171 (split 90/10) trained for 2 epochs (one
 *    evolution, then a last epoch) by mpirun -np 1, 2 and 3 with the same
 *    seed and batch: the final checkpoints hold the same model bit for bit
 *    (topology after the evolution, weights, momentum, biases), so the
 *    connection counts and the N = 1 vs N = 2 topology after the first
 *    evolution are compared exactly. Skipped visibly without MPI or data.
 * Usage: BUILD=build build/tests/test_dist (make test runs it) */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/checkpoint.h"
#include "util/common.h"
#include "dist/dist.h"
#include "harness.h"
#include "model/model.h"

static void test_hashes(void)
{
    st_model m;
    char err[ST_ERRLEN];
    int32_t sizes[3] = {40, 24, 3};
    ST_EXPECT(model_init(&m, sizes, 2, 1, 4.0, 7, err) == 0, "%s", err);
    st_layer *L = &m.layers[0];
    ST_EXPECT(!L->dense && L->nb > 2, "layer 1 is sparse (nb %d)", (int)L->nb);
    const uint64_t t0 = dist_hash_topology(L), v0 = dist_hash_values(L);
    ST_EXPECT(t0 == dist_hash_topology(L) && v0 == dist_hash_values(L), "hashes are stable");
    /* Move the last block of row 0 one column right when that column is free. */
    int32_t k = L->row_ptr[1] - 1, saved = L->col_idx[k];
    if (k >= L->row_ptr[0] && saved + 1 < L->nbc) {
        L->col_idx[k] = saved + 1;
        ST_EXPECT(dist_hash_topology(L) != t0, "a moved connection changes the topology hash");
        ST_EXPECT(dist_hash_values(L) == v0, "  but not the value hash");
        L->col_idx[k] = saved;
    }
    float w = L->w[3];
    L->w[3] = nextafterf(w, 1.0f);
    ST_EXPECT(dist_hash_values(L) != v0, "one ulp of one weight changes the value hash");
    ST_EXPECT(dist_hash_topology(L) == t0, "  but not the topology hash");
    L->w[3] = w;
    L->bias[1] += 1e-6f;
    ST_EXPECT(dist_hash_values(L) != v0, "a bias changes the value hash");
    model_free(&m);
}

static void test_world_of_one(void)
{
    char err[ST_ERRLEN] = "";
    if (getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK"))
        ST_SKIP("running under an MPI launcher");
    ST_EXPECT(dist_init(err) == 0, "%s", err);
    ST_EXPECT(!dist_active() && dist_rank() == 0 && dist_size() == 1,
              "no launcher: no MPI (active %d, rank %d, size %d)", dist_active(), dist_rank(),
              dist_size());
    ST_EXPECT(dist_any(0) == 0 && dist_any(5) == 1, "dist_any of one process");
}

#ifdef ST_HAVE_MPI
static int layers_equal(const st_model *a, const st_model *b, char *why, size_t n)
{
    if (a->n_layers != b->n_layers)
        return snprintf(why, n, "layer counts %d, %d", a->n_layers, b->n_layers), 0;
    for (int l = 0; l < a->n_layers; l++) {
        const st_layer *x = &a->layers[l], *y = &b->layers[l];
        const int64_t nnz = layer_nnz(x);
        if (x->dense != y->dense || x->nb != y->nb || layer_nnz(y) != nnz)
            return snprintf(why, n, "layer %d: block counts %d, %d", l + 1, x->nb, y->nb), 0;
        if (!x->dense && (memcmp(x->row_ptr, y->row_ptr, sizeof(int32_t) * (x->nbr + 1)) ||
                          memcmp(x->col_idx, y->col_idx, sizeof(int32_t) * (size_t)x->nb)))
            return snprintf(why, n, "layer %d: topology differs", l + 1), 0;
        if (memcmp(x->w, y->w, sizeof(float) * (size_t)nnz) ||
            memcmp(x->v, y->v, sizeof(float) * (size_t)nnz))
            return snprintf(why, n, "layer %d: weights or momentum differ", l + 1), 0;
        if (memcmp(x->bias, y->bias, sizeof(float) * (size_t)x->n_out) ||
            memcmp(x->vbias, y->vbias, sizeof(float) * (size_t)x->n_out))
            return snprintf(why, n, "layer %d: biases differ", l + 1), 0;
    }
    return 1;
}
#endif

static void test_ranks_train_one_model(void)
{
#ifndef ST_HAVE_MPI
    ST_SKIP("built without MPI");
#else
    if (system("command -v mpirun >/dev/null 2>&1") != 0)
        ST_SKIP("mpirun is not installed (apt-get install openmpi-bin)");
    const char *sh = getenv("ST_SHARED_DATA") ? getenv("ST_SHARED_DATA") : "../shared/data";
    char mat[4096];
    snprintf(mat, sizeof mat, "%s/TOX-171.mat", sh);
    if (access(mat, R_OK) != 0)
        ST_SKIP("%s is absent", mat);
    const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
    char bin[4096], tmp[] = "/tmp/settrain-test-dist.XXXXXX", cmd[16384];
    snprintf(bin, sizeof bin, "%s/settrain", build);
    if (access(bin, X_OK) != 0)
        ST_SKIP("%s is not built", bin);
    if (!mkdtemp(tmp))
        ST_SKIP("mkdtemp failed");
    snprintf(cmd, sizeof cmd, "%s prepare mat --in %s --out %s/tox.h5 --test-fraction 0.1 >/dev/null",
             bin, mat, tmp);
    ST_EXPECT(system(cmd) == 0, "prepare: %s", cmd);
    st_model m[4];
    memset(m, 0, sizeof m);
    int ok[4] = {0, 0, 0, 0};
    for (int n = 1; n <= 3; n++) {
        /* Batch 150 of 153 samples: chunks 64+64+22 (one per rank at N = 3) and 3. */
        snprintf(cmd, sizeof cmd,
                 "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
                 "ASAN_OPTIONS=\"${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0\" "
                 "timeout 120 mpirun --oversubscribe -np %d %s train --data %s/tox.h5 "
                 "--hidden 200,200 --epochs 2 --batch 150 --seed 9 --threads 1 --quiet "
                 "--backend cpu --out %s/n%d >%s/n%d.log 2>&1",
                 n, bin, tmp, tmp, n, tmp, n);
        int rc = system(cmd);
        ST_EXPECT(rc == 0, "mpirun -np %d exited with %d (log %s/n%d.log)", n, rc, tmp, n);
        char path[4200], err[ST_ERRLEN];
        st_config cfg;
        st_run_state rs;
        snprintf(path, sizeof path, "%s/n%d/checkpoint.h5", tmp, n);
        ok[n] = rc == 0 && checkpoint_load(path, &cfg, &m[n], &rs, err) == 0;
        ST_EXPECT(ok[n] || rc != 0, "%s", err);
    }
    char why[256] = "";
    if (ok[1] && ok[2]) {
        ST_EXPECT(model_connections(&m[1]) == model_connections(&m[2]),
                  "connections %lld (N=1) vs %lld (N=2)", (long long)model_connections(&m[1]),
                  (long long)model_connections(&m[2]));
        ST_EXPECT(layers_equal(&m[1], &m[2], why, sizeof why),
                  "N=1 vs N=2 after the first evolution and one more epoch: %s", why);
    }
    if (ok[1] && ok[3])
        ST_EXPECT(layers_equal(&m[1], &m[3], why, sizeof why), "N=1 vs N=3: %s", why);
    for (int n = 1; n <= 3; n++)
        if (ok[n])
            model_free(&m[n]);
    if (!st_t_cur_failed) {
        snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
        if (system(cmd) != 0)
            printf("    (could not remove %s)\n", tmp);
    }
#endif
}

int main(void)
{
    ST_RUN(test_hashes);
    ST_RUN(test_world_of_one);
    ST_RUN(test_ranks_train_one_model);
    return st_test_summary("test_dist");
}
