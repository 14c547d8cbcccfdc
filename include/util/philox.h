/* philox.h: the Philox4x32-10 counter-based generator (Salmon et al., SC'11,
 * as in Random123) and the project's mapping of random streams onto it.
 *
 * Every random decision in a run is a pure function of (seed, stream, layer,
 * counter words), so the CPU and GPU backends draw identical numbers in any
 * order and any thread count. Usable from host C and from CUDA device code. */
#ifndef ST_PHILOX_H
#define ST_PHILOX_H

#include <stdint.h>

#ifdef __CUDACC__
#define ST_HD __host__ __device__ __forceinline__
#else
#define ST_HD static inline
#endif

typedef struct { uint32_t v[4]; } st_u32x4;

ST_HD void st_mulhilo32(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo)
{
    uint64_t p = (uint64_t)a * (uint64_t)b;
    *hi = (uint32_t)(p >> 32);
    *lo = (uint32_t)p;
}

/* Philox4x32 with 10 rounds: ctr (4 words) and key (2 words) -> 4 words. */
ST_HD st_u32x4 st_philox4x32_10(st_u32x4 ctr, uint32_t k0, uint32_t k1)
{
    const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
    const uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
    for (int r = 0; r < 10; r++) {
        uint32_t hi0, lo0, hi1, lo1;
        st_mulhilo32(M0, ctr.v[0], &hi0, &lo0);
        st_mulhilo32(M1, ctr.v[2], &hi1, &lo1);
        st_u32x4 n;
        n.v[0] = hi1 ^ ctr.v[1] ^ k0;
        n.v[1] = lo1;
        n.v[2] = hi0 ^ ctr.v[3] ^ k1;
        n.v[3] = lo0;
        ctr = n;
        k0 += W0;
        k1 += W1;
    }
    return ctr;
}

/* Streams: the top byte of counter word 3; the low 24 bits hold the layer. */
enum st_stream {
    ST_STREAM_INIT_TOPO = 1, /* ctr {draw, block row, 0, .}        */
    ST_STREAM_INIT_W = 2,    /* ctr {entry/4 lo, hi, 0, .}          */
    ST_STREAM_SHUFFLE = 3,   /* ctr {i, 0, epoch, .}                */
    ST_STREAM_DROPOUT = 4,   /* ctr {row, batch<<9 | col/8, epoch, .} */
    ST_STREAM_REGROW_POS = 5,/* ctr {draw lo, draw hi, epoch, .}    */
    ST_STREAM_REGROW_W = 6,  /* ctr {entry/4 lo, hi, epoch, .}      */
    ST_STREAM_SPLIT = 7,     /* ctr {i, class, 0, .} (prepare mat)  */
    ST_STREAM_COUNT
};

/* One Philox block for (seed, stream, layer, c0, c1, c2). */
ST_HD st_u32x4 st_rand(uint64_t seed, uint32_t stream, uint32_t layer,
                       uint32_t c0, uint32_t c1, uint32_t c2)
{
    st_u32x4 c;
    c.v[0] = c0;
    c.v[1] = c1;
    c.v[2] = c2;
    c.v[3] = (stream << 24) | (layer & 0xFFFFFFu);
    return st_philox4x32_10(c, (uint32_t)seed, (uint32_t)(seed >> 32));
}

/* Uniform float in [0, 1) with 24 random bits. */
ST_HD float st_u01f(uint32_t u) { return (float)(u >> 8) * (1.0f / 16777216.0f); }

/* Uniform double in (0, 1] with 53 random bits from two words. */
ST_HD double st_u01d_open0(uint32_t a, uint32_t b)
{
    uint64_t x = (((uint64_t)a << 32) | b) >> 11;
    return ((double)x + 1.0) * (1.0 / 9007199254740992.0);
}

/* Uniform integer in [0, n) from two words: floor(u64 * n / 2^64). */
ST_HD uint64_t st_below(uint32_t a, uint32_t b, uint64_t n)
{
    uint64_t x = ((uint64_t)a << 32) | b;
#ifdef __CUDA_ARCH__
    return __umul64hi(x, n);
#else
    return (uint64_t)(((unsigned __int128)x * n) >> 64);
#endif
}

#if !defined(__CUDACC__)
/* Eight or sixteen independent Philox4x32-10 blocks at once (host only):
 * c[w][j] is counter word w of block j on entry and output word w on
 * return. */
#ifdef __AVX2__
#include <immintrin.h>
/* hi and lo words of the 32x32-bit products a * m, lane-wise */
static inline void st_mulhilo32x8(__m256i a, __m256i m, __m256i *hi, __m256i *lo)
{
    __m256i pe = _mm256_mul_epu32(a, m);                        /* lanes 0,2,4,6 */
    __m256i po = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m); /* lanes 1,3,5,7 */
    *hi = _mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA);
    *lo = _mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA);
}
#endif
#ifdef __AVX512F__
static inline void st_mulhilo32x16(__m512i a, __m512i m, __m512i *hi, __m512i *lo)
{
    __m512i pe = _mm512_mul_epu32(a, m);
    __m512i po = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);
    *hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 32), po);
    *lo = _mm512_mask_blend_epi32(0xAAAA, pe, _mm512_slli_epi64(po, 32));
}
#endif

/* n8 x 8 independent blocks (n8 1 or 2): word w of block j is c[w * stride
 * + j] (stride >= 8 n8), the counter on entry and the output on return.
 * With AVX2 each group of 8 runs in vector registers, and the groups'
 * rounds interleave (a round waits on the multiply's latency; a second
 * independent chain fills the gap); with AVX-512, 16 blocks take one 512-bit
 * chain (1.5 times the 256-bit pair's rate, measured on a Zen core);
 * otherwise lane by lane. */
static inline void st_philox4x32_10_xn(uint32_t *c, int stride, int n8, uint32_t k0,
                                       uint32_t k1)
{
#ifdef __AVX512F__
    if (n8 == 2) {
        __m512i x[4];
        for (int w = 0; w < 4; w++)
            x[w] = _mm512_loadu_si512((const void *)(c + w * stride));
        const __m512i m0 = _mm512_set1_epi32((int)0xD2511F53u);
        const __m512i m1 = _mm512_set1_epi32((int)0xCD9E8D57u);
        for (int r = 0; r < 10; r++) {
            const __m512i kk0 = _mm512_set1_epi32((int)k0), kk1 = _mm512_set1_epi32((int)k1);
            __m512i hi0, lo0, hi1, lo1;
            st_mulhilo32x16(x[0], m0, &hi0, &lo0);
            st_mulhilo32x16(x[2], m1, &hi1, &lo1);
            x[0] = _mm512_ternarylogic_epi32(hi1, x[1], kk0, 0x96); /* three-way xor */
            x[2] = _mm512_ternarylogic_epi32(hi0, x[3], kk1, 0x96);
            x[1] = lo1;
            x[3] = lo0;
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        for (int w = 0; w < 4; w++)
            _mm512_storeu_si512((void *)(c + w * stride), x[w]);
        return;
    }
#endif
#ifdef __AVX2__
    __m256i x[2][4];
    for (int g = 0; g < n8; g++)
        for (int w = 0; w < 4; w++)
            x[g][w] = _mm256_loadu_si256((const __m256i *)(c + w * stride + 8 * g));
    const __m256i m0 = _mm256_set1_epi32((int)0xD2511F53u);
    const __m256i m1 = _mm256_set1_epi32((int)0xCD9E8D57u);
    for (int r = 0; r < 10; r++) {
        const __m256i kk0 = _mm256_set1_epi32((int)k0), kk1 = _mm256_set1_epi32((int)k1);
        for (int g = 0; g < n8; g++) {
            __m256i hi0, lo0, hi1, lo1;
            st_mulhilo32x8(x[g][0], m0, &hi0, &lo0);
            st_mulhilo32x8(x[g][2], m1, &hi1, &lo1);
            x[g][0] = _mm256_xor_si256(_mm256_xor_si256(hi1, x[g][1]), kk0);
            x[g][2] = _mm256_xor_si256(_mm256_xor_si256(hi0, x[g][3]), kk1);
            x[g][1] = lo1;
            x[g][3] = lo0;
        }
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    for (int g = 0; g < n8; g++)
        for (int w = 0; w < 4; w++)
            _mm256_storeu_si256((__m256i *)(c + w * stride + 8 * g), x[g][w]);
#else
    for (int j = 0; j < 8 * n8; j++) {
        st_u32x4 in = {{c[j], c[stride + j], c[2 * stride + j], c[3 * stride + j]}};
        st_u32x4 out = st_philox4x32_10(in, k0, k1);
        for (int w = 0; w < 4; w++)
            c[w * stride + j] = out.v[w];
    }
#endif
}

static inline void st_philox4x32_10_x8(uint32_t c[4][8], uint32_t k0, uint32_t k1)
{
    st_philox4x32_10_xn(&c[0][0], 8, 1, k0, k1);
}

/* Sixteen blocks (c[w][j], j < 16): two interleaved groups of 8. */
static inline void st_philox4x32_10_x16(uint32_t c[4][16], uint32_t k0, uint32_t k1)
{
    st_philox4x32_10_xn(&c[0][0], 16, 2, k0, k1);
}
#endif

#endif
