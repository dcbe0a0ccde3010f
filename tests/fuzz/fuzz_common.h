/* fuzz_common.h — what the harnesses share: where the shipped model lives and how to load it, and a check that stops
 * the run (abort, which libFuzzer and the replay driver report as a crash) when an invariant of a
 * successful parse does not hold. A harness that only waits for a segfault misses wrong answers. */
#ifndef EXPLAIND_FUZZ_COMMON_H
#define EXPLAIND_FUZZ_COMMON_H

#include <stdio.h>
#include <stdlib.h>

#include "engine.h"

#define FUZZ_CHECK(cond)                                                                            \
    do {                                                                                            \
        if (!(cond)) {                                                                              \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);            \
            abort();                                                                                \
        }                                                                                           \
    } while (0)

/* The models directory ($FUZZ_MODELS_DIR, default "models": run from the repository root). */
static inline const char *fuzz_models_dir(void)
{
    const char *d = getenv("FUZZ_MODELS_DIR");
    return d && *d ? d : "models";
}

/* The shipped fashion-cnn with its sidecar, loaded once in LLVMFuzzerInitialize; a harness that
 * cannot load it exits (nothing it would run is meaningful without it). */
static inline model_t *fuzz_load_fashion_cnn(const char *harness)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/fashion-cnn.onnx", fuzz_models_dir());
    model_t *m = NULL;
    eng_err_t err;
    if (model_load_path(path, NULL, NULL, &m, &err)) {
        fprintf(stderr, "%s: cannot load %s: %s\n", harness, path, err.msg);
        exit(1);
    }
    return m;
}

#endif
