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
