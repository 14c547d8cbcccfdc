/* main.c: the settrain command line: the top-level usage, --version, and
 * dispatch to the subcommands (include/cli/commands.h); a command's exit
 * code stands only if its standard output was written in full. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "util/common.h"
#include "cli/commands.h"
#include "data/dataset.h"
#include "dist/dist.h"
#include "cli/score.h"
#include "train/train.h"

#ifdef ST_HAVE_CUDA
#define ST_BACKENDS "cpu, gpu"
#else
#define ST_BACKENDS "cpu (built without CUDA: no gpu backend)"
#endif

static void usage(FILE *f)
{
    fprintf(f,
            "settrain %s: motif-based Sparse Evolutionary Training of sparse MLPs\n"
            "\n"
            "usage: settrain COMMAND [OPTIONS]\n"
            "\n"
            "commands:\n"
            "  prepare fmnist  convert Fashion-MNIST IDX files to the HDF5 data format\n"
            "  prepare mat     convert a scikit-feature MATLAB file (stratified split)\n"
            "  train           train a motif-sparse MLP with SET, writing results/runs/<name>/\n"
            "  eval            accuracy, per-class accuracy and confusion matrix of a model\n"
            "  predict         class and probability per sample, as CSV\n"
            "  features        input features ranked by their outgoing connections\n"
            "  score           the paper's comprehensive score S of runs against a baseline\n"
            "\n"
            "settrain COMMAND --help describes each command's options and defaults.\n"
            "settrain --version prints the version, the git commit and the backends built.\n",
            ST_VERSION);
}

/* A report written to a full or closed standard output must not look like
 * success: the command's exit code stands only if stdout took every byte. */
static int finish(int code)
{
    if (fflush(stdout) != 0 || ferror(stdout) || fclose(stdout) != 0) {
        fprintf(stderr, "settrain: error: standard output: write failed: %s\n",
                strerror(errno ? errno : EIO));
        return code ? code : ST_EXIT_ERROR;
    }
    return code;
}

static int dispatch(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return ST_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return ST_EXIT_OK;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
        printf("settrain %s (commit %s)\nbackends: %s\nmpi: %s\n", ST_VERSION, ST_GIT_COMMIT,
               ST_BACKENDS, dist_build_info());
        return ST_EXIT_OK;
    }
    if (!strcmp(cmd, "prepare"))
        return cmd_prepare(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval") || !strcmp(cmd, "predict") || !strcmp(cmd, "features"))
        return cmd_model(argc - 1, argv + 1);
    if (!strcmp(cmd, "score"))
        return cmd_score(argc - 1, argv + 1);
    if (!strcmp(cmd, "train"))
        return cmd_train(argc - 1, argv + 1);
    fprintf(stderr, "settrain: error: unknown command '%s' (see settrain --help)\n", cmd);
    return ST_EXIT_USAGE;
}

int main(int argc, char **argv)
{
    int code = dispatch(argc, argv);
    errno = 0;
    return finish(code);
}
