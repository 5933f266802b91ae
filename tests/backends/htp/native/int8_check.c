/* A standalone check of native/int8.c's int8 kernels for any build of it (run under an emulator for another
 * architecture, e.g. qemu-aarch64 for the aarch64 dotprod section): random GEMMs and depthwise
 * convolutions on 1 and 3 threads (every product split however small), their int32 accumulators against
 * int64 sums; prints "ok <cases>" or the first mismatch, exits 0 or 1. Built by
 * tests/backends/htp/test_native_cross.py with int8.c, requant.c and pool.c. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*epi_fn)(const int32_t* x, long rows, long ch, long xstride, const double* cst, const double* mul,
                       const double* k0, const double* sc, const double* nd, const int32_t* madd,
                       const int32_t* shift, const int32_t* lo, const int32_t* hi, double qmax, void* out);
typedef struct { /* int8.c's rq_plan */
    epi_fn fn;
    const double *cst, *mul, *k0, *sc, *nd;
    const int32_t *madd, *shift, *lo, *hi;
    double qmax;
    long ch, k, out_size, mode;
} rq_plan;
typedef struct {
    long n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow;
    int32_t zx;
} dw_geo;

int openqnn_int8_available(void);
int openqnn_int8_isa(void);
long gemm_pack_size(long K, long N);
void gemm_pack(const int8_t* w, long K, long N, int8_t* out);
int gemm_u8s8(const uint8_t* A, long M, long K, long lda, const int8_t* bp, long N, const int32_t* init,
              const rq_plan* plan, char* out);
long dw_pack_size(long kh, long kw, long C);
void dw_pack(const int8_t* w, long kh, long kw, long C, int8_t* out);
int dwconv_u8s8(const uint8_t* x, const dw_geo* g, const int8_t* wp, const int32_t* init, const rq_plan* plan,
                char* out);
void openqnn_pool_set_threads(int n);
extern double openqnn_parallel_macs;

static void copy_rows(const int32_t* x, long rows, long ch, long xstride, const double* cst, const double* mul,
                      const double* k0, const double* sc, const double* nd, const int32_t* madd,
                      const int32_t* shift, const int32_t* lo, const int32_t* hi, double qmax, void* out) {
    (void)cst; (void)mul; (void)k0; (void)sc; (void)nd; (void)madd; (void)shift; (void)lo; (void)hi; (void)qmax;
    for (long r = 0; r < rows; ++r) memcpy((int32_t*)out + r * ch, x + r * xstride, (size_t)ch * sizeof(int32_t));
}

static uint64_t state = 88172645463325252ull;
static long rnd(long n) { /* [0, n) */
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (long)(state % (uint64_t)n);
}

static int check_gemm(long M, long K, long N) {
    uint8_t* a = malloc((size_t)(M * K));
    int8_t* w = malloc((size_t)(K * N));
    int32_t* init = malloc((size_t)N * 4);
    int32_t* out = malloc((size_t)(M * N) * 4);
    int8_t* bp = malloc((size_t)gemm_pack_size(K, N));
    for (long i = 0; i < M * K; ++i) a[i] = (uint8_t)(i % 7 == 0 ? 255 : rnd(256));
    for (long i = 0; i < K * N; ++i) w[i] = (int8_t)(i % 5 == 0 ? -128 : rnd(256) - 128);
    for (long i = 0; i < N; ++i) init[i] = (int32_t)rnd(20001) - 10000;
    gemm_pack(w, K, N, bp);
    rq_plan p = {copy_rows, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.0, N, 1, 4, 0};
    int bad = gemm_u8s8(a, M, K, K, bp, N, init, &p, (char*)out) != 0;
    for (long m = 0; m < M && !bad; ++m)
        for (long n = 0; n < N && !bad; ++n) {
            int64_t s = init[n];
            for (long k = 0; k < K; ++k) s += (int64_t)a[m * K + k] * w[k * N + n];
            if (s != out[m * N + n]) {
                printf("gemm %ldx%ldx%ld: [%ld, %ld] = %d, want %lld\n", M, K, N, m, n, out[m * N + n], (long long)s);
                bad = 1;
            }
        }
    free(a); free(w); free(init); free(out); free(bp);
    return bad;
}

static int check_dw(long c, long kh, long kw) {
    dw_geo g = {2, 0, 0, c, kh, kw, 1 + rnd(2), 1 + rnd(2), 1 + rnd(2), 1 + rnd(2), rnd(3), rnd(3), 0, 0, (int32_t)rnd(256)};
    long pb = rnd(3), pr = rnd(3);
    g.h = g.dh * (kh - 1) + 1 + rnd(9);
    g.w = g.dw * (kw - 1) + 1 + rnd(11);
    g.oh = (g.h + g.pt + pb - g.dh * (kh - 1) - 1) / g.sh + 1;
    g.ow = (g.w + g.pl + pr - g.dw * (kw - 1) - 1) / g.sw + 1;
    long nx = g.n * g.h * g.w * c, no = g.n * g.oh * g.ow * c;
    uint8_t* x = malloc((size_t)nx);
    int8_t* w = malloc((size_t)(kh * kw * c));
    int32_t* init = malloc((size_t)c * 4);
    int32_t* out = malloc((size_t)no * 4);
    int8_t* wp = malloc((size_t)dw_pack_size(kh, kw, c));
    for (long i = 0; i < nx; ++i) x[i] = (uint8_t)rnd(256);
    for (long i = 0; i < kh * kw * c; ++i) w[i] = (int8_t)(rnd(256) - 128);
    for (long i = 0; i < c; ++i) init[i] = (int32_t)rnd(2001) - 1000;
    dw_pack(w, kh, kw, c, wp);
    rq_plan p = {copy_rows, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.0, c, 1, 4, 0};
    int bad = dwconv_u8s8(x, &g, wp, init, &p, (char*)out) != 0;
    for (long b = 0; b < g.n && !bad; ++b)
        for (long oy = 0; oy < g.oh && !bad; ++oy)
            for (long ox = 0; ox < g.ow && !bad; ++ox)
                for (long ch = 0; ch < c && !bad; ++ch) {
                    int64_t s = init[ch];
                    for (long i = 0; i < kh; ++i)
                        for (long j = 0; j < kw; ++j) {
                            long iy = oy * g.sh - g.pt + i * g.dh, ix = ox * g.sw - g.pl + j * g.dw;
                            int64_t q = (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) ? g.zx
                                        : x[((b * g.h + iy) * g.w + ix) * c + ch];
                            s += q * w[(i * kw + j) * c + ch];
                        }
                    long at = ((b * g.oh + oy) * g.ow + ox) * c + ch;
                    if (s != out[at]) {
                        printf("depthwise c=%ld %ldx%ld: output %ld = %d, want %lld\n", c, kh, kw, at, out[at], (long long)s);
                        bad = 1;
                    }
                }
    free(x); free(w); free(init); free(out); free(wp);
    return bad;
}

int main(void) {
    if (!openqnn_int8_available()) {
        printf("not built: this build has no int8 kernels\n");
        return 2;
    }
    static const long shapes[][3] = {{1, 1, 1}, {2, 2, 7}, {3, 3, 9}, {4, 5, 15}, {5, 15, 17}, {7, 17, 23}, {13, 64, 70},
                                     {50, 130, 129}, {49, 1030, 33}, {200, 16, 96}, {3, 1000, 200}, {97, 2100, 40}};
    static const long dws[][3] = {{1, 1, 1}, {3, 3, 3}, {7, 5, 5}, {9, 2, 7}, {17, 3, 3}, {33, 3, 3}, {100, 3, 3}};
    int cases = 0;
    for (int threads = 1; threads <= 3; threads += 2) {
        openqnn_pool_set_threads(threads);
        openqnn_parallel_macs = threads > 1 ? 0.0 : 1.0e6;
        for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); ++i, ++cases)
            if (check_gemm(shapes[i][0], shapes[i][1], shapes[i][2])) return 1;
        for (size_t i = 0; i < sizeof(dws) / sizeof(dws[0]); ++i, ++cases)
            if (check_dw(dws[i][0], dws[i][1], dws[i][2])) return 1;
    }
    printf("ok %d isa %d\n", cases, openqnn_int8_isa());
    return 0;
}
