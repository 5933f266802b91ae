/* float.c's kernels as a standalone program: random GEMMs (GELU, add, clamp epilogues; long and aliased sums),
 * depthwise, implicit-GEMM and fused 1x1 + depthwise convolutions, attention and LayerNorm against
 * double-precision loops, on 1 and 3
 * threads (the same bits); prints "ok <cases> isa <openqnn_float_isa()>" or the first failure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    long n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow;
} geo_t;

long sgemm_pack_size(long K, long N);
void sgemm_pack(const float* w, long K, long N, float* out);
void sgemm_f32(const float* a, long M, long K, long lda, const float* bp, long N, const float* bias, float* c,
               long ldc, const float* add, long ldadd, float lo, float hi, int clamp, int act);
void dw_f32(const float* x, const geo_t* g, const float* w, const float* bias, float* out, const float* add,
            float lo, float hi, int clamp);
int conv_f32(const float* x, const geo_t* q, const float* bp, long N, const float* bias, float* out,
             const float* add, float lo, float hi, int clamp);
int pwdw_f32(const float* x, long cin, const float* bp, const float* pw_bias, float pw_lo, float pw_hi,
             int pw_clamp, const geo_t* q, const float* dww, const float* dwb, float* out, const float* add,
             float lo, float hi, int clamp, const float* pbp, const float* pbias, long pn, float plo, float phi,
             int pclamp);
typedef struct {
    long B, H, Sq, Sk, D, Dv;
    const float *q, *k, *v, *mask;
    float* out;
    long qs[4], ks[4], vs[4], ms[4], os[4];
    float scale;
    int zero_empty, failed;
} attn_t;
int attn_f32(attn_t* a);
void ln_f32(const float* x, long M, long N, const float* g, const float* b, float eps, float* out);
int openqnn_float_isa(void);
void openqnn_pool_set_threads(int n);
extern double openqnn_parallel_macs;

static unsigned long long rng = 88172645463325252ull;
static float rnd(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}
static float* randv(long n) {
    float* v = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (long i = 0; i < n; ++i) v[i] = rnd();
    return v;
}
static double clampd(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }
static int close_to(const float* got, const double* want, long n, const char* what) {
    double top = 1.0;
    for (long i = 0; i < n; ++i) top = fabs(want[i]) > top ? fabs(want[i]) : top;
    for (long i = 0; i < n; ++i)
        if (fabs(got[i] - want[i]) > 2e-5 * top) {
            printf("FAIL %s at %ld: %g vs %g\n", what, i, got[i], want[i]);
            return 0;
        }
    return 1;
}

static int gemm_case(long M, long K, long N, int act) {
    float *a = randv(M * K), *w = randv(K * N), *b = randv(N + 64), *add = randv(M * N);
    float* bp = malloc((size_t)sgemm_pack_size(K, N) * sizeof(float));
    float *c1 = malloc((size_t)M * N * sizeof(float)), *c3 = malloc((size_t)M * N * sizeof(float));
    double* want = malloc((size_t)M * N * sizeof(double));
    sgemm_pack(w, K, N, bp);
    for (long i = 0; i < M; ++i)
        for (long j = 0; j < N; ++j) {
            double s = b[j];
            for (long k = 0; k < K; ++k) s += (double)a[i * K + k] * w[k * N + j];
            if (act == 1) s = 0.5 * s * (1.0 + erf(s / sqrt(2.0)));
            want[i * N + j] = clampd(s + add[i * N + j], -1.5, 2.0);
        }
    openqnn_pool_set_threads(1);
    sgemm_f32(a, M, K, K, bp, N, b, c1, N, add, N, -1.5f, 2.0f, 1, act);
    openqnn_pool_set_threads(3);
    sgemm_f32(a, M, K, K, bp, N, b, c3, N, add, N, -1.5f, 2.0f, 1, act);
    int ok = close_to(c1, want, M * N, "gemm") && memcmp(c1, c3, (size_t)M * N * sizeof(float)) == 0;
    /* written over its residual (c == add): the same bits */
    memcpy(c3, add, (size_t)M * N * sizeof(float));
    sgemm_f32(a, M, K, K, bp, N, b, c3, N, c3, N, -1.5f, 2.0f, 1, act);
    ok = ok && memcmp(c1, c3, (size_t)M * N * sizeof(float)) == 0;
    free(a), free(w), free(b), free(add), free(bp), free(c1), free(c3), free(want);
    return ok;
}

/* the reference depthwise (taps outside read zeros) of x [n, h, w, c] */
static void dw_ref(const float* x, const geo_t* g, const float* w, const float* b, double* out) {
    for (long i = 0; i < g->n; ++i)
        for (long oy = 0; oy < g->oh; ++oy)
            for (long ox = 0; ox < g->ow; ++ox)
                for (long ch = 0; ch < g->c; ++ch) {
                    double s = b[ch];
                    for (long ky = 0; ky < g->kh; ++ky)
                        for (long kx = 0; kx < g->kw; ++kx) {
                            long iy = oy * g->sh - g->pt + ky * g->dh, ix = ox * g->sw - g->pl + kx * g->dw;
                            if (iy >= 0 && iy < g->h && ix >= 0 && ix < g->w)
                                s += (double)x[((i * g->h + iy) * g->w + ix) * g->c + ch] * w[(ky * g->kw + kx) * g->c + ch];
                        }
                    out[((i * g->oh + oy) * g->ow + ox) * g->c + ch] = clampd(s, 0.0, 6.0);
                }
}

static int dw_case(geo_t g) {
    long in = g.n * g.h * g.w * g.c, on = g.n * g.oh * g.ow * g.c;
    float *x = randv(in), *w = randv(g.kh * g.kw * g.c), *b = randv(g.c);
    float *o1 = malloc((size_t)on * sizeof(float)), *o3 = malloc((size_t)on * sizeof(float));
    double* want = malloc((size_t)on * sizeof(double));
    dw_ref(x, &g, w, b, want);
    openqnn_pool_set_threads(1);
    dw_f32(x, &g, w, b, o1, 0, 0.0f, 6.0f, 1);
    openqnn_pool_set_threads(3);
    dw_f32(x, &g, w, b, o3, 0, 0.0f, 6.0f, 1);
    int ok = close_to(o1, want, on, "depthwise") && memcmp(o1, o3, (size_t)on * sizeof(float)) == 0;
    free(x), free(w), free(b), free(o1), free(o3), free(want);
    return ok;
}

static int conv_case(geo_t g, long N) {
    long K = g.kh * g.kw * g.c, in = g.n * g.h * g.w * g.c, on = g.n * g.oh * g.ow * N;
    float *x = randv(in), *w = randv(K * N), *b = randv(N + 64);
    float* bp = malloc((size_t)sgemm_pack_size(K, N) * sizeof(float));
    float *o1 = malloc((size_t)on * sizeof(float)), *o3 = malloc((size_t)on * sizeof(float));
    double* want = malloc((size_t)on * sizeof(double));
    sgemm_pack(w, K, N, bp);
    for (long i = 0; i < g.n; ++i)
        for (long oy = 0; oy < g.oh; ++oy)
            for (long ox = 0; ox < g.ow; ++ox)
                for (long j = 0; j < N; ++j) {
                    double s = b[j];
                    for (long ky = 0; ky < g.kh; ++ky)
                        for (long kx = 0; kx < g.kw; ++kx)
                            for (long ci = 0; ci < g.c; ++ci) {
                                long iy = oy * g.sh - g.pt + ky * g.dh, ix = ox * g.sw - g.pl + kx * g.dw;
                                if (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w)
                                    s += (double)x[((i * g.h + iy) * g.w + ix) * g.c + ci] * w[((ky * g.kw + kx) * g.c + ci) * N + j];
                            }
                    want[((i * g.oh + oy) * g.ow + ox) * N + j] = clampd(s, 0.0, 6.0);
                }
    openqnn_pool_set_threads(1);
    int r1 = conv_f32(x, &g, bp, N, b, o1, 0, 0.0f, 6.0f, 1);
    openqnn_pool_set_threads(3);
    int r3 = conv_f32(x, &g, bp, N, b, o3, 0, 0.0f, 6.0f, 1);
    int ok = r1 == 0 && r3 == 0 && close_to(o1, want, on, "conv") && memcmp(o1, o3, (size_t)on * sizeof(float)) == 0;
    free(x), free(w), free(b), free(bp), free(o1), free(o3), free(want);
    return ok;
}

/* the fused 1x1 + depthwise [+ projection with a residual, cout > 0] against its parts run one after the other */
static int pwdw_case(geo_t g, long cin, long cout) {
    long ce = g.c, in = g.n * g.h * g.w * cin, mid = g.n * g.h * g.w * ce, dn = g.n * g.oh * g.ow * ce;
    long on = cout ? g.n * g.oh * g.ow * cout : dn;
    float *x = randv(in), *pw = randv(cin * ce), *pb = randv(ce + 64), *dw = randv(g.kh * g.kw * ce), *db = randv(ce);
    float *pj = cout ? randv(ce * cout) : 0, *pjb = cout ? randv(cout + 64) : 0, *res = cout ? randv(on) : 0;
    float* bp = malloc((size_t)sgemm_pack_size(cin, ce) * sizeof(float));
    float* pbp = cout ? malloc((size_t)sgemm_pack_size(ce, cout) * sizeof(float)) : 0;
    float *e = malloc((size_t)mid * sizeof(float)), *d = malloc((size_t)dn * sizeof(float));
    float *o1 = malloc((size_t)on * sizeof(float)), *o3 = malloc((size_t)on * sizeof(float));
    float* parts = malloc((size_t)on * sizeof(float));
    sgemm_pack(pw, cin, ce, bp);
    if (cout) sgemm_pack(pj, ce, cout, pbp);
    openqnn_pool_set_threads(1);
    sgemm_f32(x, g.n * g.h * g.w, cin, cin, bp, ce, pb, e, ce, 0, 0, 0.0f, 6.0f, 1, 0);
    dw_f32(e, &g, dw, db, cout ? d : parts, 0, 0.0f, 6.0f, 1);
    if (cout) sgemm_f32(d, g.n * g.oh * g.ow, ce, ce, pbp, cout, pjb, parts, cout, res, cout, 0.0f, 0.0f, 0, 0);
    int r1 = pwdw_f32(x, cin, bp, pb, 0.0f, 6.0f, 1, &g, dw, db, o1, res, 0.0f, 6.0f, 1, pbp, pjb, cout, 0.0f, 0.0f, 0);
    openqnn_pool_set_threads(3);
    int r3 = pwdw_f32(x, cin, bp, pb, 0.0f, 6.0f, 1, &g, dw, db, o3, res, 0.0f, 6.0f, 1, pbp, pjb, cout, 0.0f, 0.0f, 0);
    int ok = r1 == 0 && r3 == 0 && memcmp(o1, parts, (size_t)on * sizeof(float)) == 0 &&
             memcmp(o1, o3, (size_t)on * sizeof(float)) == 0;
    if (!ok) printf("FAIL pwdw%s\n", cout ? " + projection" : "");
    free(x), free(pw), free(pb), free(dw), free(db), free(bp), free(e), free(d), free(o1), free(o3), free(parts);
    free(pj), free(pjb), free(res), free(pbp);
    return ok;
}

/* heads split out of [B, S, H D] rows, K read through its strides, a padding mask broadcast over heads and rows */
static int attn_case(long B, long H, long Sq, long Sk, long D, long Dv) {
    float *q = randv(B * Sq * H * D), *k = randv(B * Sk * H * D), *v = randv(B * Sk * H * Dv), *m = randv(B * Sk);
    for (long i = 0; i < B * Sk; ++i) m[i] = m[i] > 0.6f ? -10000.0f : 0.0f;
    long n = B * Sq * H * Dv;
    float *o1 = malloc((size_t)n * sizeof(float)), *o3 = malloc((size_t)n * sizeof(float));
    double *want = malloc((size_t)n * sizeof(double)), *p = malloc((size_t)Sk * sizeof(double));
    for (long b = 0; b < B; ++b)
        for (long h = 0; h < H; ++h)
            for (long i = 0; i < Sq; ++i) {
                double mx = -1e300, sum = 0.0;
                for (long j = 0; j < Sk; ++j) {
                    double s = 0.0;
                    for (long d = 0; d < D; ++d) s += (double)q[(b * Sq + i) * H * D + h * D + d] * k[(b * Sk + j) * H * D + h * D + d];
                    p[j] = s * 0.25 + m[b * Sk + j];
                    mx = p[j] > mx ? p[j] : mx;
                }
                for (long j = 0; j < Sk; ++j) sum += (p[j] = exp(p[j] - mx));
                for (long e = 0; e < Dv; ++e) {
                    double s = 0.0;
                    for (long j = 0; j < Sk; ++j) s += p[j] * v[(b * Sk + j) * H * Dv + h * Dv + e];
                    want[(b * Sq + i) * H * Dv + h * Dv + e] = s / sum;
                }
            }
    attn_t a = {B, H, Sq, Sk, D, Dv, q, k, v, m, o1, {Sq * H * D, D, H * D, 1}, {Sk * H * D, D, H * D, 1},
                {Sk * H * Dv, Dv, H * Dv, 1}, {Sk, 0, 0, 1}, {Sq * H * Dv, Dv, H * Dv, 1}, 0.25f, 0, 0};
    openqnn_pool_set_threads(1);
    int ok = attn_f32(&a) == 0;
    a.out = o3;
    openqnn_pool_set_threads(3);
    ok = ok && attn_f32(&a) == 0 && close_to(o1, want, n, "attention") && memcmp(o1, o3, (size_t)n * sizeof(float)) == 0;
    if (!ok) printf("FAIL attention threads\n");
    free(q), free(k), free(v), free(m), free(o1), free(o3), free(want), free(p);
    return ok;
}

static int ln_case(long M, long N) {
    float *x = randv(M * N), *g = randv(N), *b = randv(N);
    float *o1 = malloc((size_t)M * N * sizeof(float)), *o3 = malloc((size_t)M * N * sizeof(float));
    double* want = malloc((size_t)M * N * sizeof(double));
    for (long i = 0; i < M * N; ++i) x[i] = 3.0f * x[i] + 1.5f;
    for (long r = 0; r < M; ++r) {
        double mean = 0.0, var = 0.0;
        for (long c = 0; c < N; ++c) mean += x[r * N + c];
        mean /= (double)N;
        for (long c = 0; c < N; ++c) var += (x[r * N + c] - mean) * (x[r * N + c] - mean);
        double rstd = 1.0 / sqrt(var / (double)N + 1e-5);
        for (long c = 0; c < N; ++c) want[r * N + c] = (x[r * N + c] - mean) * rstd * g[c] + b[c];
    }
    openqnn_pool_set_threads(1);
    ln_f32(x, M, N, g, b, 1e-5f, o1);
    openqnn_pool_set_threads(3);
    ln_f32(x, M, N, g, b, 1e-5f, o3);
    int ok = close_to(o1, want, M * N, "layernorm") && memcmp(o1, o3, (size_t)M * N * sizeof(float)) == 0;
    if (!ok) printf("FAIL layernorm threads\n");
    free(x), free(g), free(b), free(o1), free(o3), free(want);
    return ok;
}

void sum_rows_f32(const float* x, long outer, long rows, long inner, int mean, float* out);

static int rows_case(long outer, long rows, long inner, int mean) {
    float *x = randv(outer * rows * inner), *got = malloc((size_t)(outer * inner) * sizeof(float));
    double* want = malloc((size_t)(outer * inner) * sizeof(double));
    for (long o = 0; o < outer; ++o)
        for (long i = 0; i < inner; ++i) {
            double s = 0;
            for (long r = 0; r < rows; ++r) s += x[(o * rows + r) * inner + i];
            want[o * inner + i] = mean ? s / rows : s;
        }
    sum_rows_f32(x, outer, rows, inner, mean, got);
    int ok = close_to(got, want, outer * inner, "row sums");
    free(x), free(got), free(want);
    return ok;
}

int main(void) {
    openqnn_parallel_macs = 0.0; /* split even these small shapes */
    int cases = 0;
    long gemms[][3] = {{1, 1, 1}, {5, 3, 17}, {64, 128, 70}, {13, 1100, 40}, {25, 1024, 20}, {97, 24, 33}};
    for (unsigned i = 0; i < sizeof gemms / sizeof gemms[0]; ++i)
        for (int act = 0; act < 2; ++act, ++cases)
            if (!gemm_case(gemms[i][0], gemms[i][1], gemms[i][2], act)) return 1;
    geo_t dws[] = {{2, 9, 11, 21, 3, 3, 2, 2, 1, 1, 1, 0, 5, 5}, {1, 8, 8, 40, 3, 3, 1, 1, 1, 1, 1, 1, 8, 8},
                   {1, 10, 9, 5, 5, 5, 1, 1, 2, 2, 4, 4, 10, 9}};
    for (unsigned i = 0; i < sizeof dws / sizeof dws[0]; ++i, ++cases)
        if (!dw_case(dws[i])) return 1;
    geo_t convs[] = {{2, 12, 10, 3, 3, 3, 2, 2, 1, 1, 1, 1, 6, 5}, {1, 7, 9, 70, 3, 3, 1, 1, 1, 1, 1, 1, 7, 9}};
    for (unsigned i = 0; i < sizeof convs / sizeof convs[0]; ++i, ++cases)
        if (!conv_case(convs[i], 19)) return 1;
    geo_t pwdws[] = {{2, 11, 10, 36, 3, 3, 2, 2, 1, 1, 1, 1, 6, 5}, {1, 9, 9, 20, 5, 5, 1, 1, 1, 1, 2, 2, 9, 9}};
    for (unsigned i = 0; i < sizeof pwdws / sizeof pwdws[0]; ++i, cases += 2)
        if (!pwdw_case(pwdws[i], 7, 0) || !pwdw_case(pwdws[i], 7, 13)) return 1;
    long attns[][6] = {{1, 4, 64, 64, 32, 32}, {2, 3, 7, 37, 5, 19}, {1, 1, 1, 1, 1, 1}};
    for (unsigned i = 0; i < sizeof attns / sizeof attns[0]; ++i, ++cases)
        if (!attn_case(attns[i][0], attns[i][1], attns[i][2], attns[i][3], attns[i][4], attns[i][5])) return 1;
    long lns[][2] = {{1, 1}, {33, 128}, {40, 23}};
    for (unsigned i = 0; i < sizeof lns / sizeof lns[0]; ++i, ++cases)
        if (!ln_case(lns[i][0], lns[i][1])) return 1;
    long sums[][4] = {{2, 49, 1280, 1}, {3, 7, 37, 0}};
    for (unsigned i = 0; i < sizeof sums / sizeof sums[0]; ++i, ++cases)
        if (!rows_case(sums[i][0], sums[i][1], sums[i][2], (int)sums[i][3])) return 1;
    printf("ok %d isa %d\n", cases, openqnn_float_isa());
    return 0;
}
