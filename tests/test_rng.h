/* test_rng.h: splitmix64, the tests' own input generator (independent of
 * the Philox streams under test). One generator per test binary. */
#ifndef ST_TEST_RNG_H
#define ST_TEST_RNG_H

#include <stdint.h>

static uint64_t trng_s;
static inline void trng_seed(uint64_t s) { trng_s = s; }
static inline uint64_t trng_next(void)
{
    uint64_t z = (trng_s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static inline double trng_u01(void) { return (double)(trng_next() >> 11) * 0x1p-53; }
static inline float trng_unif(double lo, double hi)
{
    return (float)(lo + (hi - lo) * trng_u01());
}

#endif
