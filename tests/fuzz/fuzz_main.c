/* fuzz_main.c: the libFuzzer entry point of every fuzz target. `make fuzz`
 * builds one binary per target from this file with -DFUZZ_TARGET="name"
 * (a row of fuzz_targets[] in targets.h) and clang's
 * -fsanitize=fuzzer,address,undefined.
 *
 * A broken reader contract aborts with the target's sentence, which
 * libFuzzer records as a crash like any sanitizer report. */
#define _GNU_SOURCE
#include "targets.h"

#ifndef FUZZ_TARGET
#error "build with -DFUZZ_TARGET=\"name\" (see tests/fuzz/targets.h)"
#endif

static const struct fuzz_target *target;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    target = fuzz_target_find(FUZZ_TARGET);
    if (!target) {
        fprintf(stderr, "fuzz: no target named %s in tests/fuzz/targets.h\n", FUZZ_TARGET);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[ST_ERRLEN] = "";
    const char *bad = target->run(data, size, err);
    if (bad) {
        fprintf(stderr, "fuzz %s: reader contract broken: %s (err: '%.*s')\n",
                target->name, bad, ST_ERRLEN, err);
        abort();
    }
    return 0;
}
