/* XOR masking kernels for fastws/_speedups.pyx (RFC 6455 section 5.3).
 *
 * fastws_mask(dst, src, n, key, phase): dst[i] = src[i] ^ key[(phase + i) & 3]; dst may equal src.
 * Widest path the CPU has: AVX2 (picked at run time), SSE2 (baseline on x86-64), NEON (arm64),
 * else 64-bit words. All loads and stores are unaligned-safe (loadu/storeu or memcpy), so any
 * offset into any buffer works. Intrinsics live here because Cython cannot express them; the
 * .pyx owns everything else. bench/micro/codec.py measures these against a plain copy.
 */
#ifndef FASTWS_MASK_H
#define FASTWS_MASK_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define FASTWS_HAVE_SSE2 1
#if defined(__GNUC__) || defined(__clang__)
#define FASTWS_HAVE_AVX2 1
#endif
#elif defined(__aarch64__)
#include <arm_neon.h>
#define FASTWS_HAVE_NEON 1
#endif

/* The 4-byte key rotated so that its first byte meets dst[0]. */
static inline uint32_t fastws_key_word(const uint8_t *key, unsigned phase) {
    uint8_t k[4];
    uint32_t w;
    k[0] = key[phase & 3];
    k[1] = key[(phase + 1) & 3];
    k[2] = key[(phase + 2) & 3];
    k[3] = key[(phase + 3) & 3];
    memcpy(&w, k, 4);
    return w;
}

/* Scalar tail and the whole job where no SIMD is available: eight bytes per step. */
static inline void fastws_mask_words(uint8_t *dst, const uint8_t *src, size_t n, uint32_t k4) {
    uint64_t k8 = ((uint64_t)k4 << 32) | k4, w;
    uint8_t k[4];
    size_t i = 0;
    memcpy(k, &k4, 4);
    for (; i + 8 <= n; i += 8) {
        memcpy(&w, src + i, 8);
        w ^= k8;
        memcpy(dst + i, &w, 8);
    }
    for (; i < n; i++) /* i is a multiple of 8 here, so the key phase is i & 3 */
        dst[i] = src[i] ^ k[i & 3];
}

#ifdef FASTWS_HAVE_AVX2
__attribute__((target("avx2")))
static void fastws_mask_avx2(uint8_t *dst, const uint8_t *src, size_t n, uint32_t k4) {
    __m256i k = _mm256_set1_epi32((int)k4);
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(src + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(src + i + 32));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_xor_si256(a, k));
        _mm256_storeu_si256((__m256i *)(dst + i + 32), _mm256_xor_si256(b, k));
    }
    for (; i + 32 <= n; i += 32) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(src + i));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_xor_si256(a, k));
    }
    fastws_mask_words(dst + i, src + i, n - i, k4); /* i is a multiple of 4: phase unchanged */
}

static int fastws_avx2_state = -1; /* -1 unknown, 0 no, 1 yes; set once, idempotent */

static inline int fastws_have_avx2(void) {
    if (fastws_avx2_state < 0) {
        __builtin_cpu_init();
        fastws_avx2_state = __builtin_cpu_supports("avx2") ? 1 : 0;
    }
    return fastws_avx2_state;
}
#endif

static inline void fastws_mask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t *key,
                               unsigned phase) {
    uint32_t k4 = fastws_key_word(key, phase);
    size_t i = 0;
    if (n < 16) {
        fastws_mask_words(dst, src, n, k4);
        return;
    }
#ifdef FASTWS_HAVE_AVX2
    if (n >= 128 && fastws_have_avx2()) {
        fastws_mask_avx2(dst, src, n, k4);
        return;
    }
#endif
#if defined(FASTWS_HAVE_SSE2)
    {
        __m128i k = _mm_set1_epi32((int)k4);
        for (; i + 16 <= n; i += 16) {
            __m128i a = _mm_loadu_si128((const __m128i *)(src + i));
            _mm_storeu_si128((__m128i *)(dst + i), _mm_xor_si128(a, k));
        }
    }
#elif defined(FASTWS_HAVE_NEON)
    {
        uint8x16_t k = vreinterpretq_u8_u32(vdupq_n_u32(k4));
        for (; i + 16 <= n; i += 16)
            vst1q_u8(dst + i, veorq_u8(vld1q_u8(src + i), k));
    }
#endif
    fastws_mask_words(dst + i, src + i, n - i, k4);
}

#endif /* FASTWS_MASK_H */
