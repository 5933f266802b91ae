/* openqnn htp: the requantization epilogue of requant.py's fast form, one pass per accumulator.
 *
 * The same arithmetic as the PyTorch form (Requant._run_fold / _run_window), element by element,
 * on rows of `ch` channels (channels last), per-channel constants indexed by the channel:
 *
 *   window (integer-valued input):  a = clamp((int32)x + shift, lo, hi)   (int32)
 *   y = cst + (double)a * mul                                            (float64, exact: dyadic)
 *   dyn:     t = clamp(k0 + y * sc, 0, 1); y = y + t * nd                (rdbpot's sign correction)
 *   folded:  out = (int)clamp(y, 0, qmax)                                (truncation: y >= 0)
 *   else:    out = clamp((int)clamp(floor(y), -2^30, 2^30) + madd, 0, qmax)
 *
 * Every float64 value is an exact dyadic fraction (requant.py proves it per layer at build time),
 * so the evaluation order cannot change a bit. Built with -ffp-contract=off all the same.
 * One function per (input type, output type, variant) so that each inner loop vectorizes.
 */
#include <stdint.h>

static inline int32_t iclamp(int32_t v, int32_t lo, int32_t hi) {
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
}
/* doubles: min/max instructions (no NaN here: -ffinite-math-only), not compares and blends */
#define FCLAMP(v, a, b) __builtin_fmin(__builtin_fmax((v), (a)), (b))

#define ROW_BODY(XEXPR)                                                                 \
    for (long c = 0; c < ch; ++c) {                                                     \
        double y = cst[c] + (double)(XEXPR) * mul[c];                                   \
        if (DYN) {                                                                      \
            double t = k0[c] + y * sc[c];                                               \
            t = FCLAMP(t, 0.0, 1.0);                                                     \
            y = y + t * nd[c];                                                          \
        }                                                                               \
        if (FOLDED) {                                                                   \
            double v = FCLAMP(y, 0.0, qmax);                                             \
            o[c] = (OT)(int32_t)v;                                                      \
        } else {                                                                        \
            double v = __builtin_floor(y);                                              \
            v = FCLAMP(v, -1073741824.0, 1073741824.0);                                  \
            int32_t q = (int32_t)v + madd[c];                                           \
            q = iclamp(q, 0, iqmax);                                                     \
            o[c] = (OT)q;                                                               \
        }                                                                               \
    }

#define DEFINE(NAME, XT, OT_, DYN_, FOLDED_, WINDOW_)                                                         \
    static void NAME##_row(const XT* restrict x, long ch, const double* restrict cst,                        \
                           const double* restrict mul, const double* restrict k0, const double* restrict sc, \
                           const double* restrict nd, const int32_t* restrict madd,                          \
                           const int32_t* restrict shift, const int32_t* restrict lo,                        \
                           const int32_t* restrict hi, double qmax, OT_* restrict o) {                       \
        typedef OT_ OT;                                                                                      \
        enum { DYN = DYN_, FOLDED = FOLDED_ };                                                               \
        const int32_t iqmax = (int32_t)qmax;                                                                 \
        (void)k0; (void)sc; (void)nd; (void)madd; (void)shift; (void)lo; (void)hi; (void)iqmax;             \
        if (WINDOW_) {                                                                                       \
            ROW_BODY(iclamp((int32_t)x[c] + shift[c], lo[c], hi[c]))                                          \
        } else {                                                                                             \
            ROW_BODY(x[c])                                                                                   \
        }                                                                                                    \
    }                                                                                                        \
    void NAME(const XT* x, long rows, long ch, long xstride, const double* cst, const double* mul,          \
              const double* k0, const double* sc, const double* nd, const int32_t* madd,                     \
              const int32_t* shift, const int32_t* lo, const int32_t* hi, double qmax, OT_* out) {          \
        for (long r = 0; r < rows; ++r)                                                                      \
            NAME##_row(x + r * xstride, ch, cst, mul, k0, sc, nd, madd, shift, lo, hi, qmax, out + r * ch); \
    }

/* name: rq_<input>_<output>_<d|n: sign correction or not>_<f|n: folded or not>[_w: window] */
#define DEFINE_SET(XN, XT, WINDOW, SUFFIX)                                  \
    DEFINE(rq_##XN##_u8_n_f##SUFFIX, XT, uint8_t, 0, 1, WINDOW)            \
    DEFINE(rq_##XN##_u8_n_n##SUFFIX, XT, uint8_t, 0, 0, WINDOW)            \
    DEFINE(rq_##XN##_u8_d_f##SUFFIX, XT, uint8_t, 1, 1, WINDOW)            \
    DEFINE(rq_##XN##_u8_d_n##SUFFIX, XT, uint8_t, 1, 0, WINDOW)            \
    DEFINE(rq_##XN##_i32_n_f##SUFFIX, XT, int32_t, 0, 1, WINDOW)           \
    DEFINE(rq_##XN##_i32_n_n##SUFFIX, XT, int32_t, 0, 0, WINDOW)           \
    DEFINE(rq_##XN##_i32_d_f##SUFFIX, XT, int32_t, 1, 1, WINDOW)           \
    DEFINE(rq_##XN##_i32_d_n##SUFFIX, XT, int32_t, 1, 0, WINDOW)

DEFINE_SET(f32, float, 0, )
DEFINE_SET(f64, double, 0, )
DEFINE_SET(i32, int32_t, 0, )
/* window variants: integer-valued inputs (int32, or float32 holding integers below 2^24) */
DEFINE_SET(i32, int32_t, 1, _w)
DEFINE_SET(f32, float, 1, _w)

int openqnn_native_version(void) { return 1; }

/* QNN's HTP requantization (spec/qnn_requant.py), two floors per element:
 *
 *   y1  = floor(cst + x * mul)          the accumulator with its offset, low s bits dropped (mul = c * 2^-s)
 *   out = clamp(floor(k0 + y1 * sc) + madd, 0, qmax)    (sc = m * 2^(s-k), k0 = (centre * m + half) * 2^-k)
 *
 * Each sum is an integer below 2^53 times a power of two (requant.py's QnnRequant checks the bounds), so
 * float64 computes both exactly and the floors are the spec's arithmetic shifts. */
#define DEFINE_QNN(NAME, XT, OT_)                                                                            \
    void NAME(const XT* x, long rows, long ch, long xstride, const double* cst, const double* mul,          \
              const double* k0, const double* sc, const double* nd, const int32_t* madd,                     \
              const int32_t* shift, const int32_t* lo, const int32_t* hi, double qmax, OT_* out) {          \
        const int32_t iqmax = (int32_t)qmax;                                                                 \
        (void)nd; (void)shift; (void)lo; (void)hi;                                                           \
        for (long r = 0; r < rows; ++r) {                                                                    \
            const XT* restrict xr = x + r * xstride;                                                         \
            OT_* restrict o = out + r * ch;                                                                  \
            for (long c = 0; c < ch; ++c) {                                                                  \
                double y1 = __builtin_floor(cst[c] + (double)xr[c] * mul[c]);                                \
                double v = __builtin_floor(k0[c] + y1 * sc[c]);                                              \
                v = FCLAMP(v, -1073741824.0, 1073741824.0);                                                  \
                o[c] = (OT_)iclamp((int32_t)v + madd[c], 0, iqmax);                                          \
            }                                                                                                \
        }                                                                                                    \
    }

DEFINE_QNN(rqq_i32_u8, int32_t, uint8_t)
DEFINE_QNN(rqq_f32_u8, float, uint8_t)
DEFINE_QNN(rqq_f64_u8, double, uint8_t)
DEFINE_QNN(rqq_i32_i32, int32_t, int32_t)
DEFINE_QNN(rqq_f32_i32, float, int32_t)
DEFINE_QNN(rqq_f64_i32, double, int32_t)

/* QNN's requantization in int32 (rqi_*), the same bits as rqq_* where prepare proves it per channel
 * (native/__init__.py's qnn_int_form: an accumulator coefficient of 1, every intermediate within int32):
 *
 *   a   = clamp(x, lo, hi) + base        (int32; base stored modulo 2^32, the true sum fits int32)
 *   y1  = a >> s                          (= floor(cst + x * mul): cst = base * 2^-s, mul = 2^-s)
 *   out = clamp((y1 * m + c) >> d, 0, qmax)   (= clamp(floor(k0 + y1 * sc) + madd): sc = m * 2^-d,
 *                                          k0 + madd = c * 2^-d, the output offset folded into c)
 *
 * The spec is monotone in x, so clamping x to [lo, hi] (the accumulators beyond which the output is 0
 * or qmax whatever they are) changes no output and bounds every intermediate. Constants in the epilogue's
 * slots, each int32 per channel: lo, hi, shift = s, madd = m, and k0 = base, sc = c, nd = d (cast). */
static inline int32_t rqi_one(int32_t x, int32_t lo, int32_t hi, int32_t base, int32_t s, int32_t m, int32_t c,
                              int32_t d, int32_t qmax) {
    int32_t a = (int32_t)((uint32_t)iclamp(x, lo, hi) + (uint32_t)base);
    return iclamp(((a >> s) * m + c) >> d, 0, qmax);
}

#define DEFINE_QNN_INT(NAME, XT, OT_)                                                                        \
    void NAME(const XT* x, long rows, long ch, long xstride, const double* cst, const double* mul,          \
              const double* k0, const double* sc, const double* nd, const int32_t* madd,                     \
              const int32_t* shift, const int32_t* lo, const int32_t* hi, double qmax, OT_* out) {          \
        const int32_t iqmax = (int32_t)qmax;                                                                 \
        const int32_t* restrict base = (const int32_t*)(const void*)k0;                                      \
        const int32_t* restrict c2 = (const int32_t*)(const void*)sc;                                        \
        const int32_t* restrict d = (const int32_t*)(const void*)nd;                                         \
        (void)cst; (void)mul;                                                                                \
        for (long r = 0; r < rows; ++r) {                                                                    \
            const XT* restrict xr = x + r * xstride;                                                         \
            OT_* restrict o = out + r * ch;                                                                  \
            for (long c = 0; c < ch; ++c)                                                                    \
                o[c] = (OT_)rqi_one((int32_t)xr[c], lo[c], hi[c], base[c], shift[c], madd[c], c2[c], d[c],   \
                                    iqmax);                                                                  \
        }                                                                                                    \
    }

DEFINE_QNN_INT(rqi_i32_u8, int32_t, uint8_t)
DEFINE_QNN_INT(rqi_f32_u8, float, uint8_t)

/* The hot case by hand (AVX-512): int32 accumulators (or float32 ones holding integers below 2^24,
 * converted as loaded) to uint8, 16 per step. The same arithmetic,
 * except that the sign correction is an integer compare: the correction applies exactly where the
 * accumulator lies below the threshold (N_thr - N = (thr - a) * Me), so t = (x < xthr[c]) with xthr
 * the threshold on this function's input (passed in the k0 slot as int32; sc unused). Folded
 * outputs clamp above in float64 and below in int32 (truncation of y < 0 gives <= 0, and a y beyond
 * the int32 range converts to INT32_MIN: both clamp to 0, as clamp-then-truncate gives). */
#if defined(__AVX512F__) && defined(__AVX512BW__)
#include <immintrin.h>

int openqnn_rqv_available(void) { return 1; }

#include "rqsimd.h"

static inline __attribute__((always_inline)) void rqv_row(const void* x, int xf, long ch, const double* cst,
                                                         const double* mul, const int32_t* xthr, const double* nd,
                                                         const int32_t* madd, const int32_t* shift,
                                                         const int32_t* lo, const int32_t* hi, uint8_t* o,
                                                         int dyn, int folded, int window) {
    for (long c = 0; c < ch; c += 16) {
        long left = ch - c;
        __mmask16 m = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1), corr;
        __m512i v = rqv_load(x, xf, c, m, shift, lo, hi, xthr, &corr, dyn, window);
        rqv_store(o + c, left, m, rqv_double(v, c, left, m, corr, cst, mul, nd, madd, dyn, folded));
    }
}

/* the float32 estimate (rqsimd.h's rqf_est) over a row, 64 channels per step where it can */
static inline __attribute__((always_inline)) void rqf_row(const void* x, int xf, long ch, const double* cst,
                                                         const double* mul, const int32_t* xthr, const double* nd,
                                                         const float* aux, float eps, const int32_t* madd,
                                                         const int32_t* shift, const int32_t* lo,
                                                         const int32_t* hi, uint8_t* o, int dyn, int folded,
                                                         int window) {
    const __mmask16 all = 0xFFFF;
    long c = 0;
    for (; c + 64 <= ch; c += 64) { /* the hot loop: four groups of 16, one check, one pack */
        __m512i v[4];
        __mmask16 k[4];
        for (int j = 0; j < 4; ++j) v[j] = rqv_load(x, xf, c + 16 * j, all, shift, lo, hi, xthr, &k[j], dyn, window);
        rqf_groups(v, k, 4, 64, aux + (c / 16) * 48, eps, cst + c, mul + c, dyn ? nd + c : 0, madd + c, o + c, dyn,
                   folded);
    }
    for (; c < ch; c += 16) {
        long left = ch - c;
        __mmask16 corr;
        __m512i v = rqv_load(x, xf, c, left >= 16 ? all : (__mmask16)((1u << left) - 1), shift, lo, hi, xthr, &corr,
                             dyn, window);
        rqf_groups(&v, &corr, 1, left, aux + (c / 16) * 48, eps, cst + c, mul + c, dyn ? nd + c : 0, madd + c, o + c,
                   dyn, folded);
    }
}

#define DEFINE_F(NAME, XT, XF, DYN, FOLDED, WINDOW)                                                           \
    void NAME(const XT* x, long rows, long ch, long xstride, const double* cst, const double* mul,           \
              const double* k0, const double* sc, const double* nd, const int32_t* madd, const int32_t* shift, \
              const int32_t* lo, const int32_t* hi, double qmax, uint8_t* out) {                               \
        for (long r = 0; r < rows; ++r)                                                                        \
            rqf_row(x + r * xstride, XF, ch, cst, mul, (const int32_t*)(const void*)k0, nd,                    \
                    (const float*)(const void*)sc, (float)qmax, madd, shift, lo, hi, out + r * ch, DYN,        \
                    FOLDED, WINDOW);                                                                           \
    }

#define DEFINE_V(NAME, XT, XF, DYN, FOLDED, WINDOW)                                                           \
    void NAME(const XT* x, long rows, long ch, long xstride, const double* cst, const double* mul,           \
              const double* k0, const double* sc, const double* nd, const int32_t* madd, const int32_t* shift, \
              const int32_t* lo, const int32_t* hi, double qmax, uint8_t* out) {                               \
        (void)sc; (void)qmax;                                                                                  \
        for (long r = 0; r < rows; ++r)                                                                        \
            rqv_row(x + r * xstride, XF, ch, cst, mul, (const int32_t*)(const void*)k0, nd, madd, shift, lo,   \
                    hi, out + r * ch, DYN, FOLDED, WINDOW);                                                    \
    }

/* name: rq<f|v: float32 estimate or float64>_<input>_u8_<d|n>_<f|n>[_w], as the portable set */
#define DEFINE_HAND(K, KIND, XN, XT, XF)                    \
    DEFINE_##KIND(rq##K##_##XN##_u8_n_f, XT, XF, 0, 1, 0)   \
    DEFINE_##KIND(rq##K##_##XN##_u8_n_n, XT, XF, 0, 0, 0)   \
    DEFINE_##KIND(rq##K##_##XN##_u8_d_f, XT, XF, 1, 1, 0)   \
    DEFINE_##KIND(rq##K##_##XN##_u8_d_n, XT, XF, 1, 0, 0)   \
    DEFINE_##KIND(rq##K##_##XN##_u8_n_f_w, XT, XF, 0, 1, 1) \
    DEFINE_##KIND(rq##K##_##XN##_u8_n_n_w, XT, XF, 0, 0, 1) \
    DEFINE_##KIND(rq##K##_##XN##_u8_d_f_w, XT, XF, 1, 1, 1) \
    DEFINE_##KIND(rq##K##_##XN##_u8_d_n_w, XT, XF, 1, 0, 1)

DEFINE_HAND(f, F, i32, int32_t, 0)
DEFINE_HAND(v, V, i32, int32_t, 0)
/* float32 accumulators holding integers (oneDNN's convolutions): converted to int32 as loaded */
DEFINE_HAND(f, F, f32, float, 1)
DEFINE_HAND(v, V, f32, float, 1)
#else
int openqnn_rqv_available(void) { return 0; }
#endif

/* Table lookups of 8-bit codes (element-wise ops whose result is a function of the codes):
 * out[i] = table[x[i]] (256 entries) and out[i] = table[x[i] * 256 + y[i]] (65536 entries). */
void lut1_u8(const uint8_t* restrict x, long n, const uint8_t* restrict table, uint8_t* restrict out) {
    for (long i = 0; i < n; ++i) out[i] = table[x[i]];
}

void lut2_u8(const uint8_t* restrict x, const uint8_t* restrict y, long n, const uint8_t* restrict table,
             uint8_t* restrict out) {
    for (long i = 0; i < n; ++i) out[i] = table[((unsigned)x[i] << 8) | y[i]];
}

/* Float inputs to codes with a per-tensor encoding: clamp(round_half_even(x / scale) - offset). */
void quantize_f32_u8(const float* restrict x, long n, double scale, double offset, double qmin, double qmax,
                     uint8_t* restrict out) {
    for (long i = 0; i < n; ++i) {
        double v = __builtin_nearbyint((double)x[i] / scale) - offset;
        v = FCLAMP(v, qmin, qmax);
        out[i] = (uint8_t)(int32_t)v;
    }
}

void quantize_f32_i32(const float* restrict x, long n, double scale, double offset, double qmin, double qmax,
                      int32_t* restrict out) {
    for (long i = 0; i < n; ++i) {
        double v = __builtin_nearbyint((double)x[i] / scale) - offset;
        v = FCLAMP(v, qmin, qmax);
        out[i] = (int32_t)v;
    }
}

/* Sums of uint8 codes over the middle axis of [A, P, C]: out[a, c] = sum over p of x[a, p, c]
 * (int32; the caller checks that P * 255 fits). A mean over H and W of channels-last images. */
void sum_mid_u8(const uint8_t* restrict x, long A, long P, long C, int32_t* restrict out) {
    for (long a = 0; a < A; ++a) {
        int32_t* restrict o = out + a * C;
        const uint8_t* restrict xa = x + a * P * C;
        for (long c = 0; c < C; ++c) o[c] = 0;
        for (long p = 0; p < P; ++p)
            for (long c = 0; c < C; ++c) o[c] += xa[p * C + c];
    }
}

/* Max pooling of uint8 codes, channels last: out[b, oy, ox, :] = the maximum of low and of the taps
 * x[b, oy * sh - pt + ky * dh, ox * sw - pl + kx * dw, :] inside the input (g: n h w c kh kw sh sw dh
 * dw pt pl oh ow). Padding is never chosen; a window entirely in the padding gives low. */
void maxpool2d_u8(const uint8_t* restrict x, const long* g, uint8_t low, uint8_t* restrict out) {
    long n = g[0], h = g[1], w = g[2], c = g[3], kh = g[4], kw = g[5], sh = g[6], sw = g[7], dh = g[8], dw = g[9];
    long pt = g[10], pl = g[11], oh = g[12], ow = g[13];
    for (long b = 0; b < n; ++b)
        for (long oy = 0; oy < oh; ++oy)
            for (long ox = 0; ox < ow; ++ox) {
                uint8_t* restrict o = out + ((b * oh + oy) * ow + ox) * c;
                for (long ch = 0; ch < c; ++ch) o[ch] = low;
                for (long ky = 0; ky < kh; ++ky) {
                    long iy = oy * sh - pt + ky * dh;
                    if (iy < 0 || iy >= h) continue;
                    for (long kx = 0; kx < kw; ++kx) {
                        long ix = ox * sw - pl + kx * dw;
                        if (ix < 0 || ix >= w) continue;
                        const uint8_t* restrict p = x + ((b * h + iy) * w + ix) * c;
                        for (long ch = 0; ch < c; ++ch) o[ch] = p[ch] > o[ch] ? p[ch] : o[ch];
                    }
                }
            }
}
