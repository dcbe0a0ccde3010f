/* rng.h — the engine's one source of randomness (engine/rng.c): splitmix64-seeded xoshiro256**
 * (Blackman & Vigna 2018), a stream per use so that each random choice of a request (IG's uniform
 * baseline, SmoothGrad's noise, filter visualization's start and jitter, the sanity checks' noise,
 * re-initialized weights and random logit) depends only on the request's seed and not on what
 * else ran. Internal to engine/. */
#ifndef EXPLAIND_RNG_H
#define EXPLAIND_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
    int has_spare;
    double spare;
} rng_t;
/* The state for (seed, stream): x = seed ^ (stream * 0xd1342543de82ef95), s[i] = splitmix64(x). */
void rng_seed(rng_t *r, uint64_t seed, uint64_t stream);
uint64_t rng_u64(rng_t *r);
double rng_uniform(rng_t *r); /* [0, 1), 53 bits */
double rng_normal(rng_t *r);  /* N(0, 1), Marsaglia's polar Box-Muller (pairs: the second is kept) */

#endif
