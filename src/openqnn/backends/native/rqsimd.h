/* openqnn htp: AVX-512 helpers of the int32 -> uint8 requantization, shared by requant.c's row
 * kernels and int8.c's fused convolutions (which requantize their accumulators in registers).
 * Included only where __AVX512F__ and __AVX512BW__ are defined, after <immintrin.h>. See requant.c
 * for the arithmetic; every helper works on 16 lanes of one row's channels c .. c + 15. */
#ifndef OPENQNN_RQSIMD_H
#define OPENQNN_RQSIMD_H
#include <stdint.h>

static inline __m512d rqv_half(__m256i xi, const double* cst, const double* mul, const double* nd, __mmask8 corr,
                               int dyn) {
    __m512d y = _mm512_add_pd(_mm512_mul_pd(_mm512_cvtepi32_pd(xi), _mm512_loadu_pd(mul)), _mm512_loadu_pd(cst));
    if (dyn) y = _mm512_mask_add_pd(y, corr, y, _mm512_loadu_pd(nd));
    return y;
}

static inline __m512i rqv_finish(__m512d lo, __m512d hi, const int32_t* madd, __mmask16 m, int folded) {
    if (folded) {
        const __m512d top = _mm512_set1_pd(255.0);
        lo = _mm512_min_pd(lo, top);
        hi = _mm512_min_pd(hi, top);
        __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvttpd_epi32(lo)), _mm512_cvttpd_epi32(hi), 1);
        return _mm512_max_epi32(q, _mm512_setzero_si512());
    }
    const __m512d a = _mm512_set1_pd(-1073741824.0), b = _mm512_set1_pd(1073741824.0);
    lo = _mm512_min_pd(_mm512_max_pd(_mm512_roundscale_pd(lo, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC), a), b);
    hi = _mm512_min_pd(_mm512_max_pd(_mm512_roundscale_pd(hi, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC), a), b);
    __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvttpd_epi32(lo)), _mm512_cvttpd_epi32(hi), 1);
    q = _mm512_add_epi32(q, _mm512_maskz_loadu_epi32(m, madd));
    return _mm512_min_epi32(_mm512_max_epi32(q, _mm512_setzero_si512()), _mm512_set1_epi32(255));
}

/* 16 inputs at c (fewer at a row's end: mask m) as int32, clamped to the window; corr: lanes below xthr */
static inline __attribute__((always_inline)) __m512i rqv_load(const void* x, int xf, long c, __mmask16 m,
                                                             const int32_t* shift, const int32_t* lo,
                                                             const int32_t* hi, const int32_t* xthr,
                                                             __mmask16* corr, int dyn, int window) {
    /* xf: float32 inputs holding integers below 2^24 (the requantization's contract), converted exactly */
    __m512i v = xf ? _mm512_cvttps_epi32(_mm512_maskz_loadu_ps(m, (const float*)x + c))
                   : _mm512_maskz_loadu_epi32(m, (const int32_t*)x + c);
    if (window)
        v = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(v, _mm512_maskz_loadu_epi32(m, shift + c)),
                                              _mm512_maskz_loadu_epi32(m, lo + c)),
                             _mm512_maskz_loadu_epi32(m, hi + c));
    *corr = dyn ? _mm512_cmplt_epi32_mask(v, _mm512_maskz_loadu_epi32(m, xthr + c)) : 0;
    return v;
}

/* the float64 form of 16 lanes (left < 16: the row's tail, constants copied out first) */
static inline __attribute__((always_inline)) __m512i rqv_double(__m512i v, long c, long left, __mmask16 m,
                                                               __mmask16 corr, const double* cst,
                                                               const double* mul, const double* nd,
                                                               const int32_t* madd, int dyn, int folded) {
    __m512d ylo, yhi;
    if (left >= 16) {
        ylo = rqv_half(_mm512_castsi512_si256(v), cst + c, mul + c, nd + c, (__mmask8)corr, dyn);
        yhi = rqv_half(_mm512_extracti64x4_epi64(v, 1), cst + c + 8, mul + c + 8, nd + c + 8, (__mmask8)(corr >> 8),
                       dyn);
    } else {
        double cb[16] = {0}, mb[16] = {0}, nb[16] = {0};
        for (long i = 0; i < left; ++i) {
            cb[i] = cst[c + i];
            mb[i] = mul[c + i];
            if (dyn) nb[i] = nd[c + i];
        }
        ylo = rqv_half(_mm512_castsi512_si256(v), cb, mb, nb, (__mmask8)corr, dyn);
        yhi = rqv_half(_mm512_extracti64x4_epi64(v, 1), cb + 8, mb + 8, nb + 8, (__mmask8)(corr >> 8), dyn);
    }
    return rqv_finish(ylo, yhi, madd + c, m, folded);
}

static inline void rqv_store(uint8_t* o, long left, __mmask16 m, __m512i r) {
    __m128i b = _mm512_cvtusepi32_epi8(r);
    if (left >= 16)
        _mm_storeu_si128((__m128i*)o, b); /* (a masked store is far slower on some CPUs) */
    else
        _mm_mask_storeu_epi8(o, m, b);
}

/* float32 estimate, exact result: y is evaluated in float32 (one FMA, then the sign correction's
 * add) from float32 copies of the constants (aux, in sc's slot: per 16 channels [16 cst][16 mul]
 * [16 nd]). The caller bounds |y32 - y| by eps (in qmax's slot) from the inputs' range and the
 * constants' rounding. Rounding y32 - eps down and y32 + eps up brackets y: where both fall in
 * [q, q + 1), floor(y) = q. Where a lane of a group is not bracketed that way, the group runs in
 * float64. The caller guarantees |y| < 2^30 and qmax = 255, so q converts to int32 exactly and the
 * final clamp is a saturating pack (int32 -> int16 -> uint8 clamps to [0, 255] exactly). */
static inline __attribute__((always_inline)) __m512 rqf_est(__m512i v, const float* a, __m512 ve, __mmask16 corr,
                                                           __mmask16 m, int dyn, __mmask16* bad) {
    __m512 y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), _mm512_loadu_ps(a + 16), _mm512_loadu_ps(a));
    if (dyn) y = _mm512_mask_add_ps(y, corr, y, _mm512_loadu_ps(a + 32)); /* nd = -2^-e, exact in float32 */
    __m512 down = _mm512_sub_round_ps(y, ve, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    __m512 q = _mm512_roundscale_ps(_mm512_add_round_ps(y, ve, _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC),
                                    _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    *bad |= _mm512_mask_cmp_ps_mask(m, down, q, _CMP_LT_OQ);
    return q;
}

/* floor(y) as int32 plus the output offset (not folded): clamped to [0, 255] by the caller's pack */
static inline __attribute__((always_inline)) __m512i rqf_int(__m512 q, const int32_t* madd, __mmask16 m, int folded) {
    __m512i r = _mm512_cvttps_epi32(q);
    return folded ? r : _mm512_add_epi32(r, _mm512_maskz_loadu_epi32(m, madd));
}

/* 64 int32 lanes (each in [INT16_MIN, INT16_MAX] or saturating the same way) -> 64 bytes clamped to [0, 255] */
static inline __m512i pack64(__m512i a, __m512i b, __m512i c, __m512i d) {
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    return _mm512_permutexvar_epi32(order, _mm512_packus_epi16(_mm512_packs_epi32(a, b), _mm512_packs_epi32(c, d)));
}

/* NB (1 to 4) groups of 16 inputs v[j] (channels c + 16 j; ncols of them valid counting from c, which
 * may exceed 16 NB; k[j]: the lanes the sign correction applies to) requantized by the float32
 * estimate, by the float64 form for all NB where a lane is not bracketed, and stored as uint8 at o
 * (one saturating pack and a 64-byte store where NB = 4 and all 64 are valid). aux, cst, mul, nd
 * (with dyn) and madd point at channel c. */
static inline __attribute__((always_inline)) void rqf_groups(const __m512i* v, const __mmask16* k, const int NB,
                                                            long ncols, const float* aux, float eps,
                                                            const double* cst, const double* mul, const double* nd,
                                                            const int32_t* madd, uint8_t* o, int dyn, int folded) {
    const __m512 ve = _mm512_set1_ps(eps);
    __m512i r[4];
    __mmask16 m[4], bad = 0;
    long left[4];
    for (int j = 0; j < NB; ++j) {
        left[j] = ncols - 16 * j;
        m[j] = left[j] >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left[j]) - 1);
        r[j] = rqf_int(rqf_est(v[j], aux + 48 * j, ve, k[j], m[j], dyn, &bad), madd + 16 * j, m[j], folded);
    }
    if (__builtin_expect(bad != 0, 0))
        for (int j = 0; j < NB; ++j)
            r[j] = rqv_double(v[j], 16 * j, left[j], m[j], k[j], cst, mul, nd, madd, dyn, folded);
    if (NB == 4 && ncols >= 64) {
        _mm512_storeu_si512((void*)o, pack64(r[0], r[1], r[2], r[3]));
    } else {
        for (int j = 0; j < NB; ++j) /* the store's conversion saturates above only */
            rqv_store(o + 16 * j, left[j], m[j], _mm512_max_epi32(r[j], _mm512_setzero_si512()));
    }
}

#endif
