/* openqnn cpu: float32 kernels with their epilogues fused, channels last.
 *
 * - sgemm_f32: rows of K floats times [K, N] weights packed once (sgemm_pack) plus a bias, then an
 *   optional element-wise add of a tensor of the output's shape and a clamp: a fully connected layer or
 *   an unpadded 1x1 convolution (NHWC rows), with a residual Add and Relu / ReluMinMax fused.
 * - dw_f32: a depthwise convolution (NHWC, weights [kh, kw, C]) plus a bias, then the same epilogue;
 *   taps outside the input are skipped (zero padding).
 *
 * Each output element is one sum in a fixed order (bias, then k = 0, 1, ... or the taps row by row), so
 * results do not depend on the thread count or on how the output is split into tiles. They do depend on
 * the build: with AVX2 / AVX-512 the multiply-adds are fused (one rounding), in the portable form they are
 * not; either is float32 arithmetic, as any float runtime's.
 *
 * The work is split into tasks over disjoint parts of the output and run on pool.c's threads.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* pool.c */
void openqnn_parallel(void (*fn)(void*, long), void* arg, long n);
int openqnn_pool_threads(void);
extern double openqnn_parallel_macs;

#if defined(__AVX512F__)
#include <immintrin.h>
#define VL 16
#define MR 12 /* rows per tile: 24 accumulators of 32 registers */
typedef __m512 V;
static inline V vzero(void) { return _mm512_setzero_ps(); }
static inline V vset(float a) { return _mm512_set1_ps(a); }
static inline V vload(const float* p) { return _mm512_loadu_ps(p); }
static inline void vstore(float* p, V v) { _mm512_storeu_ps(p, v); }
static inline V vfma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
static inline V vadd(V a, V b) { return _mm512_add_ps(a, b); }
static inline V vmul(V a, V b) { return _mm512_mul_ps(a, b); }
static inline V vdiv(V a, V b) { return _mm512_div_ps(a, b); }
static inline V vmax(V a, V b) { return _mm512_max_ps(a, b); }
static inline V vmin(V a, V b) { return _mm512_min_ps(a, b); }
static inline V vload_n(const float* p, long n) { /* lanes [0, n), zeros after */
    return n >= VL ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), p);
}
static inline void vstore_n(float* p, V v, long n) {
    if (n >= VL) _mm512_storeu_ps(p, v);
    else _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), v);
}
int openqnn_float_isa(void) { return 2; }
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define VL 8
#define MR 6 /* 12 accumulators of 16 registers */
typedef __m256 V;
static inline V vzero(void) { return _mm256_setzero_ps(); }
static inline V vset(float a) { return _mm256_set1_ps(a); }
static inline V vload(const float* p) { return _mm256_loadu_ps(p); }
static inline void vstore(float* p, V v) { _mm256_storeu_ps(p, v); }
static inline V vfma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
static inline V vadd(V a, V b) { return _mm256_add_ps(a, b); }
static inline V vmul(V a, V b) { return _mm256_mul_ps(a, b); }
static inline V vdiv(V a, V b) { return _mm256_div_ps(a, b); }
static inline V vmax(V a, V b) { return _mm256_max_ps(a, b); }
static inline V vmin(V a, V b) { return _mm256_min_ps(a, b); }
static inline __m256i lanes(long n) { return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)); }
static inline V vload_n(const float* p, long n) { return n >= VL ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, lanes(n)); }
static inline void vstore_n(float* p, V v, long n) {
    if (n >= VL) _mm256_storeu_ps(p, v);
    else _mm256_maskstore_ps(p, lanes(n), v);
}
int openqnn_float_isa(void) { return 1; }
#else
/* portable: GCC / Clang vector extensions (NEON on aarch64, SSE on baseline x86-64), multiply then add */
#define VL 4
#define MR 8
typedef float V __attribute__((vector_size(16)));
typedef int32_t VI __attribute__((vector_size(16)));
static inline V vzero(void) { V v = {0, 0, 0, 0}; return v; }
static inline V vset(float a) { V v = {a, a, a, a}; return v; }
static inline V vload(const float* p) { V v; memcpy(&v, p, sizeof v); return v; }
static inline void vstore(float* p, V v) { memcpy(p, &v, sizeof v); }
static inline V vfma(V a, V b, V c) { return a * b + c; }
static inline V vadd(V a, V b) { return a + b; }
static inline V vmul(V a, V b) { return a * b; }
static inline V vdiv(V a, V b) { return a / b; }
static inline V vpick(VI m, V a, V b) { return (V)(((VI)a & m) | ((VI)b & ~m)); } /* a where m, else b */
static inline V vmax(V a, V b) { return vpick(a > b, a, b); }
static inline V vmin(V a, V b) { return vpick(a < b, a, b); }
static inline V vload_n(const float* p, long n) {
    float t[VL] = {0};
    memcpy(t, p, (size_t)(n >= VL ? VL : n) * sizeof(float));
    return vload(t);
}
static inline void vstore_n(float* p, V v, long n) {
    float t[VL];
    vstore(t, v);
    memcpy(p, t, (size_t)(n >= VL ? VL : n) * sizeof(float));
}
int openqnn_float_isa(void) { return 0; }
#endif

#define NV 2           /* vectors per panel */
#define NR (NV * VL)   /* columns per panel of packed weights */
#define MC (4 * MR)    /* rows per task */

/* GELU, the exact (erf) form and its tanh approximation, for a FullyConnected layer's epilogue. With AVX2 /
 * AVX-512: erf by Abramowitz and Stegun's 7.1.26 (absolute error under 1.5e-7) and tanh from the exponential,
 * itself Cephes' expf reduction (2^n times a degree-6 polynomial); portable: the C library's erff / tanhf. */
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
static inline V vexp(V x) {
    x = vmin(vmax(x, vset(-87.0f)), vset(88.0f));
    V n = vfma(x, vset(1.44269504088896341f), vset(0.5f));
#if defined(__AVX512F__)
    n = _mm512_roundscale_ps(n, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
#else
    n = _mm256_floor_ps(n);
#endif
    V r = vfma(n, vset(-0.693359375f), x);
    r = vfma(n, vset(2.12194440e-4f), r);
    V p = vset(1.9875691500e-4f);
    p = vfma(p, r, vset(1.3981999507e-3f));
    p = vfma(p, r, vset(8.3334519073e-3f));
    p = vfma(p, r, vset(4.1665795894e-2f));
    p = vfma(p, r, vset(1.6666665459e-1f));
    p = vfma(p, r, vset(5.0000001201e-1f));
    p = vfma(vmul(p, r), r, vadd(r, vset(1.0f)));
#if defined(__AVX512F__)
    return _mm512_scalef_ps(p, n);
#else
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
#endif
}
static inline V vabs(V x) { return vmax(x, vmul(x, vset(-1.0f))); }
static inline V vcopysign(V mag, V sign) { /* |mag| with sign's sign */
#if defined(__AVX512F__)
    __m512i m = _mm512_set1_epi32((int)0x80000000u);
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_andnot_si512(m, _mm512_castps_si512(mag)),
                                               _mm512_and_si512(m, _mm512_castps_si512(sign))));
#else
    __m256 m = _mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000u));
    return _mm256_or_ps(_mm256_andnot_ps(m, mag), _mm256_and_ps(m, sign));
#endif
}
static inline V verf(V x) {
    V a = vabs(x), t;
#if defined(__AVX512F__)
    t = _mm512_div_ps(vset(1.0f), vfma(a, vset(0.3275911f), vset(1.0f)));
#else
    t = _mm256_div_ps(vset(1.0f), vfma(a, vset(0.3275911f), vset(1.0f)));
#endif
    V p = vfma(vset(1.061405429f), t, vset(-1.453152027f));
    p = vfma(p, t, vset(1.421413741f));
    p = vfma(p, t, vset(-0.284496736f));
    p = vfma(p, t, vset(0.254829592f));
    V y = vfma(vmul(p, t), vmul(vset(-1.0f), vexp(vmul(vmul(a, a), vset(-1.0f)))), vset(1.0f));
    return vcopysign(y, x);
}
static inline V vtanh(V x) { /* 1 - 2 / (e^2x + 1) */
    V u = vmin(vmax(x, vset(-9.0f)), vset(9.0f)), e = vexp(vadd(u, u));
#if defined(__AVX512F__)
    return vadd(vset(1.0f), _mm512_div_ps(vset(-2.0f), vadd(e, vset(1.0f))));
#else
    return vadd(vset(1.0f), _mm256_div_ps(vset(-2.0f), vadd(e, vset(1.0f))));
#endif
}
#else
static inline V vmap(V x, float (*f)(float)) {
    float t[VL];
    vstore(t, x);
    for (int i = 0; i < VL; ++i) t[i] = f(t[i]);
    return vload(t);
}
static inline V verf(V x) { return vmap(x, erff); }
static inline V vtanh(V x) { return vmap(x, tanhf); }
static inline V vexp(V x) { return vmap(x, expf); }
#endif

static inline V vgelu(V x, int act) {
    if (act == 1) return vmul(vmul(x, vset(0.5f)), vadd(vset(1.0f), verf(vmul(x, vset(0.70710678118654752f)))));
    /* tanh form: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) */
    V inner = vmul(vset(0.79788456080286536f), vfma(vmul(vmul(x, x), x), vset(0.044715f), x));
    return vmul(vmul(x, vset(0.5f)), vadd(vset(1.0f), vtanh(inner)));
}

/* The epilogue: y = clamp(act(acc) + add, lo, hi), where add is optional, the clamp may be off and act is
 * 0 (none), 1 (GELU) or 2 (GELU's tanh approximation) */
typedef struct {
    const float* add;
    long ldadd;
    float lo, hi;
    int clamp, act;
} epi_t;

static inline V epi(const epi_t* e, V x, const float* add, long n) {
    if (e->act) x = vgelu(x, e->act);
    if (add) x = vadd(x, vload_n(add, n));
    if (e->clamp) x = vmin(vmax(x, vset(e->lo)), vset(e->hi));
    return x;
}

/* ---------------------------------------------------------------------------------------------- */
/* GEMM */

long sgemm_pack_size(long K, long N) { return K * ((N + NR - 1) / NR) * NR; }

/* w [K, N] row-major -> panels of NR columns, each K rows of NR floats (zeros past N) */
void sgemm_pack(const float* w, long K, long N, float* out) {
    long panels = (N + NR - 1) / NR;
    for (long j = 0; j < panels; ++j)
        for (long k = 0; k < K; ++k)
            for (long c = 0; c < NR; ++c) {
                long n = j * NR + c;
                out[(j * K + k) * NR + c] = n < N ? w[k * N + n] : 0.0f;
            }
}

/* rows [0, mr) of one tile: nv vectors of columns (nc of them valid), K values of k; row i's k-th operand is
 * a[i * lda + k], or with an offset table (a convolution's taps) a[i * lda + off[k]], or with row pointers (a
 * convolution's tile across output rows: each pixel's window where it lies) rp[i][off[k]]. A long K runs in chunks
 * (FIRST: the sums start from the bias, else from what c holds; LAST: the epilogue, else c gets the partial
 * sums), each sum still one multiply-add after another in k's order. */
#define FIRST 1
#define LAST 2
#define KC 256 /* k per chunk where K is over 2 KC */
static inline __attribute__((always_inline)) void tile_at(const float* a, long lda, const float* const* rp,
                                                          const float* pf, const long* off, long K,
                                                          const float* bp, const float* bias, float* c, long ldc,
                                                          const int mr, const int nv, long nc, const epi_t* e,
                                                          const float* add, int part) {
    V acc[MR][NV];
    if (part & LAST) /* the rows of the output and of the residual, fetched while the sums run */
        for (int i = 0; i < mr; ++i) {
            __builtin_prefetch(c + i * ldc, 1, 3);
            if (nv > 1) __builtin_prefetch(c + i * ldc + VL, 1, 3);
            if (add) {
                __builtin_prefetch(add + i * e->ldadd, 0, 3);
                if (nv > 1) __builtin_prefetch(add + i * e->ldadd + VL, 0, 3);
            }
        }
    V b0 = vload(bias), b1 = nv > 1 ? vload(bias + VL) : vzero();
    for (int i = 0; i < MR; ++i) {
        if (part & FIRST || i >= mr) {
            acc[i][0] = b0;
            acc[i][1] = b1;
        } else {
            acc[i][0] = vload_n(c + i * ldc, nc);
            acc[i][1] = nv > 1 && nc > VL ? vload_n(c + i * ldc + VL, nc - VL) : vzero();
        }
    }
    for (long k = 0; k < K; ++k) {
        V w0 = vload(bp + k * NR), w1 = nv > 1 ? vload(bp + k * NR + VL) : vzero();
        long ak = off ? off[k] : k;
        if (pf) /* the weights a later tile reads, fetched while these sums run (from memory, for large layers) */
            for (int o = 0; o < NR; o += 64 / (int)sizeof(float)) __builtin_prefetch(pf + k * NR + o, 0, 3);
        for (int i = 0; i < MR; ++i) {
            if (i < mr) {
                V x = vset(rp ? rp[i][ak] : a[i * lda + ak]);
                acc[i][0] = vfma(x, w0, acc[i][0]);
                if (nv > 1) acc[i][1] = vfma(x, w1, acc[i][1]);
            }
        }
    }
    for (int i = 0; i < mr; ++i) {
        if (!(part & LAST)) {
            vstore_n(c + i * ldc, acc[i][0], nc);
            if (nv > 1 && nc > VL) vstore_n(c + i * ldc + VL, acc[i][1], nc - VL);
            continue;
        }
        const float* ad = add ? add + i * e->ldadd : 0;
        vstore_n(c + i * ldc, epi(e, acc[i][0], ad, nc), nc);
        if (nv > 1 && nc > VL) vstore_n(c + i * ldc + VL, epi(e, acc[i][1], ad ? ad + VL : 0, nc - VL), nc - VL);
    }
}

/* one tile at a time, shaped by the rows and columns left (a full tile is specialized at compile time) */
static inline __attribute__((always_inline)) void tiles(const float* a, long lda, const float* const* rp,
                                                        const float* pf, const long* off, long K, const float* bp,
                                                        const float* bias, float* c, long ldc, long mr, long nc,
                                                        const epi_t* e, const float* add, int part) {
    if (mr == MR && nc > VL) tile_at(a, lda, rp, pf, off, K, bp, bias, c, ldc, MR, 2, nc, e, add, part);
    else if (mr == MR) tile_at(a, lda, rp, pf, off, K, bp, bias, c, ldc, MR, 1, nc, e, add, part);
    else if (nc > VL) tile_at(a, lda, rp, pf, off, K, bp, bias, c, ldc, (int)mr, 2, nc, e, add, part);
    else tile_at(a, lda, rp, pf, off, K, bp, bias, c, ldc, (int)mr, 1, nc, e, add, part);
}


typedef struct {
    const float *a, *bp, *bias;
    float* c;
    long M, K, lda, N, ldc, panels, groups, per_group, rows;
    epi_t e;
} gemm_job;

/* the k chunks of a sum over K: [k0, k0 + kc) for k0 = 0, chunk(g), ... A chunk's partial sums wait in the
 * output, so an output written over its residual operand (add == c) takes all of K at once: each sum is the
 * same multiply-adds in the same order either way. */
static inline long chunk(const gemm_job* g) { return g->K > 2 * KC && g->e.add != g->c ? KC : g->K; }

/* per-thread buffers that grow as needed and are kept for the thread's next call: slot 0 for a GEMM's copied
 * rows, slot 1 for the expanded rows of a fused pointwise + depthwise convolution, slot 2 for attention's K^T,
 * V and scores */
/* slot 3: a convolution's padded input; slot 4: the depthwise output rows a fused projection reads */
static _Thread_local float* scratch[5] = {0, 0, 0, 0, 0};
static _Thread_local long scratch_size[5] = {0, 0, 0, 0, 0};

static float* scratch_for(int slot, long floats) {
    if (floats > scratch_size[slot]) {
        free(scratch[slot]);
        scratch[slot] = (float*)aligned_alloc(64, (size_t)((floats * 4 + 63) / 64 * 64));
        scratch_size[slot] = scratch[slot] ? floats : 0;
    }
    return scratch[slot];
}

/* rows [m0, m1) of a (row stride lda) times panels [j0, j1): the tiles of c they make */
static void gemm_rows(const gemm_job* g, const float* a, long lda, long m0, long m1, long j0, long j1) {
    /* weights that stay in cache: a tile of rows through all the panels, so that output rows are written
     * whole, one after the other; else a panel through all the rows, so that it is read once */
    long K = g->K, step = chunk(g);
    /* rows a multiple of 4 KiB apart share the L1 cache's sets: a tile's rows then evict each other, so such a
     * block is copied first, each chunk's rows at a stride off that multiple */
    long off4k = lda % 1024;
    float* packed = off4k < 32 || off4k > 992 ? scratch_for(0, (m1 - m0) * (step + 16)) : 0;
    for (long k0 = 0; k0 < K || k0 == 0; k0 += step) {
        long kc = K - k0 < step ? K - k0 : step;
        int part = (k0 == 0 ? FIRST : 0) | (k0 + kc >= K ? LAST : 0);
        int rows_first = kc * (j1 - j0) * NR <= 65536;
        const float* ak = a + k0;
        long ld = lda;
        if (packed) {
            for (long r = 0; r < m1 - m0; ++r) memcpy(packed + r * (step + 16), a + r * lda + k0, (size_t)kc * sizeof(float));
            ak = packed;
            ld = step + 16;
        }
        for (long o = 0; o < (rows_first ? m1 - m0 : j1 - j0); o += rows_first ? MR : 1)
            for (long p = 0; p < (rows_first ? j1 - j0 : m1 - m0); p += rows_first ? 1 : MR) {
                long i = m0 + (rows_first ? o : p), j = j0 + (rows_first ? p : o);
                long mr = m1 - i < MR ? m1 - i : MR, nc = g->N - j * NR < NR ? g->N - j * NR : NR;
                float* c = g->c + i * g->ldc + j * NR;
                const float* add = g->e.add ? g->e.add + i * g->e.ldadd + j * NR : 0;
                tiles(ak + (i - m0) * ld, ld, 0, 0, 0, kc, g->bp + (j * K + k0) * NR, g->bias + j * NR, c, g->ldc, mr, nc,
                      &g->e, add, part);
            }
        if (K == 0) break;
    }
}

static void gemm_task(void* arg, long t) {
    const gemm_job* g = (const gemm_job*)arg;
    long rb = t / g->groups, pg = t % g->groups;
    long m0 = rb * g->rows, m1 = m0 + g->rows < g->M ? m0 + g->rows : g->M;
    long j0 = pg * g->per_group, j1 = j0 + g->per_group < g->panels ? j0 + g->per_group : g->panels;
    gemm_rows(g, g->a + m0 * g->lda, g->lda, m0, m1, j0, j1);
}

/* the task split of an [M, N] output: blocks of g->rows rows (a multiple of MR) times groups of panels,
 * enough tasks for the threads where the work is large enough to share */
static long split(gemm_job* g, double macs) {
    long row_blocks = (g->M + g->rows - 1) / g->rows;
    int threads = openqnn_pool_threads();
    int shared = threads > 1 && macs >= openqnn_parallel_macs;
    g->groups = shared && row_blocks < 4 * threads ? (4 * threads + row_blocks - 1) / row_blocks : 1;
    if (g->groups > g->panels) g->groups = g->panels;
    g->per_group = (g->panels + g->groups - 1) / g->groups;
    g->groups = (g->panels + g->per_group - 1) / g->per_group;
    long tasks = row_blocks * g->groups;
    return shared && tasks > 1 ? -tasks : tasks; /* negative: run on the pool */
}

/* c[M, N] (row stride ldc) = a[M, K] (row stride lda) @ packed weights + bias (padded to the panels'
 * width), then the GELU act (0 none, 1 erf, 2 tanh), then + add[M, N] (row stride ldadd; null for none), then
 * clamped to [lo, hi] if clamp */
void sgemm_f32(const float* a, long M, long K, long lda, const float* bp, long N, const float* bias, float* c,
               long ldc, const float* add, long ldadd, float lo, float hi, int clamp, int act) {
    gemm_job g = {a, bp, bias, c, M, K, lda, N, ldc, (N + NR - 1) / NR, 1, 0, MC, {add, ldadd, lo, hi, clamp, act}};
    long tasks = split(&g, (double)M * K * N);
    if (tasks < 0)
        openqnn_parallel(gemm_task, &g, -tasks);
    else
        for (long t = 0; t < tasks; ++t) gemm_task(&g, t);
}

/* ---------------------------------------------------------------------------------------------- */
/* Convolution as an implicit GEMM: output pixels are rows, the taps (ky, kx, input channel) the K axis.
 * Consecutive pixels of an output row read the input a constant stride apart (stride x channels), and tap k
 * sits at a fixed offset off[k] from a pixel's window, so the GEMM tiles read the input where it lies: no
 * im2col. A padded input is first copied with its zeros (once per call). */

typedef struct {
    long n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow;
} conv_geo;

typedef struct {
    gemm_job g;
    const float* x; /* the input, padded: [n, hp, wp, c] */
    const long* off;
    long hp, wp;
    const conv_geo* geo;
} conv_job;

#define CONV_PIXELS (8 * MR) /* output pixels per convolution task */

/* a block of g->rows output pixels (image, row, column in order, so across output rows) times a group of panels:
 * per k chunk and panel, the block's tiles, each of MR consecutive pixels reading its own windows (row pointers),
 * so that a small image (7x7, 14x14) fills whole tiles and a chunk of weights is read once per block. Each
 * output's sum is the same multiply-adds in the same order whatever the blocking. */
static void conv_task(void* arg, long t) {
    const conv_job* j = (const conv_job*)arg;
    const gemm_job* g = &j->g;
    const conv_geo* q = j->geo;
    long rb = t / g->groups, pg = t % g->groups, C = q->c, per_img = q->oh * q->ow;
    long p0 = rb * g->rows, p1 = p0 + g->rows < g->M ? p0 + g->rows : g->M;
    long j0 = pg * g->per_group, j1 = j0 + g->per_group < g->panels ? j0 + g->per_group : g->panels;
    const float* rp[p1 - p0 > 0 ? p1 - p0 : 1];
    long img = p0 / per_img, oy = p0 % per_img / q->ow, ox0 = p0 % q->ow, ox = ox0;
    for (long p = p0; p < p1; ++p) { /* (no division per pixel: a small K's whole task costs a few per pixel) */
        rp[p - p0] = j->x + ((img * j->hp + oy * q->sh) * j->wp + ox * q->sw) * C;
        if (++ox == q->ow) {
            ox = 0;
            if (++oy == q->oh) oy = 0, ++img;
        }
    }
    long K = g->K, step = chunk(g);
    for (long k0 = 0; k0 < K; k0 += step) {
        long kc = K - k0 < step ? K - k0 : step;
        int part = (k0 == 0 ? FIRST : 0) | (k0 + kc >= K ? LAST : 0);
        for (long jj = j0; jj < j1; ++jj) {
            long nc = g->N - jj * NR < NR ? g->N - jj * NR : NR;
            const float* bp = g->bp + (jj * K + k0) * NR;
            /* the block's first tile fetches the next panel's chunk of weights */
            const float* next = jj + 1 < j1 ? bp + K * NR : 0;
            for (long p = p0, x0 = ox0; p < p1; p += MR, x0 = (x0 + MR) % q->ow) { /* x0: p's column */
                long mr = p1 - p < MR ? p1 - p : MR;
                float* c = g->c + p * g->ldc + jj * NR;
                const float* add = g->e.add ? g->e.add + p * g->e.ldadd + jj * NR : 0;
                const float* pf = p == p0 ? next : 0;
                if (x0 + mr <= q->ow) /* within one output row: its windows a constant stride apart */
                    tiles(rp[p - p0], q->sw * C, 0, pf, j->off + k0, kc, bp, g->bias + jj * NR, c, g->ldc, mr, nc,
                          &g->e, add, part);
                else
                    tiles(0, 0, rp + (p - p0), pf, j->off + k0, kc, bp, g->bias + jj * NR, c, g->ldc, mr, nc, &g->e,
                          add, part);
            }
        }
    }
}

/* one row (image, y) of the zero-padded input [n, hp, wp, c]: its zeros and the input row it holds */
typedef struct {
    const float* x;
    float* xp;
    const conv_geo* q;
    long hp, wp;
} pad_job;

static void pad_task(void* arg, long t) {
    const pad_job* p = (const pad_job*)arg;
    const conv_geo* q = p->q;
    long C = q->c, img = t / p->hp, y = t % p->hp, iy = y - q->pt;
    float* dst = p->xp + t * p->wp * C;
    if (iy < 0 || iy >= q->h) {
        memset(dst, 0, (size_t)(p->wp * C) * sizeof(float));
        return;
    }
    memset(dst, 0, (size_t)(q->pl * C) * sizeof(float));
    memcpy(dst + q->pl * C, p->x + (img * q->h + iy) * q->w * C, (size_t)(q->w * C) * sizeof(float));
    memset(dst + (q->pl + q->w) * C, 0, (size_t)((p->wp - q->pl - q->w) * C) * sizeof(float));
}

/* out [n, oh, ow, N] = conv(x [n, h, w, c], packed [kh * kw * c, N] weights) + bias, then + add (the
 * output's shape; null for none), then clamped to [lo, hi] if clamp; returns 0, or -1 out of memory */
int conv_f32(const float* x, const conv_geo* q, const float* bp, long N, const float* bias, float* out,
             const float* add, float lo, float hi, int clamp) {
    long C = q->c, K = q->kh * q->kw * C;
    /* the padded extent the windows reach (at least the input) */
    long hp = (q->oh - 1) * q->sh + (q->kh - 1) * q->dh + 1, wp = (q->ow - 1) * q->sw + (q->kw - 1) * q->dw + 1;
    int padded = q->pt || q->pl || hp > q->h || wp > q->w;
    if (hp < q->h + q->pt) hp = q->h + q->pt;
    if (wp < q->w + q->pl) wp = q->w + q->pl;
    long* off = (long*)malloc((size_t)(K > 0 ? K : 1) * sizeof(long));
    /* (the calling thread's buffer, kept for its next call: the padded copy is written whole, in row tasks that
     * the threads share where it is large) */
    float* xp = padded ? scratch_for(3, q->n * hp * wp * C > 0 ? q->n * hp * wp * C : 1) : 0;
    if (!off || (padded && !xp)) {
        free(off);
        return -1;
    }
    if (padded) {
        pad_job pj = {x, xp, q, hp, wp};
        long prows = q->n * hp;
        if (openqnn_pool_threads() > 1 && prows > 1 && q->n * hp * wp * C >= (1L << 16))
            openqnn_parallel(pad_task, &pj, prows);
        else
            for (long t = 0; t < prows; ++t) pad_task(&pj, t);
    } else {
        hp = q->h;
        wp = q->w;
    }
    for (long ky = 0, k = 0; ky < q->kh; ++ky)
        for (long kx = 0; kx < q->kw; ++kx)
            for (long ci = 0; ci < C; ++ci) off[k++] = (ky * q->dh * wp + kx * q->dw) * C + ci;
    /* pixels per task: whole output rows where they are wide (tiles then stay within a row), else CONV_PIXELS */
    long rows = 2 * q->ow >= CONV_PIXELS ? q->ow * (CONV_PIXELS > q->ow ? CONV_PIXELS / q->ow : 1) : CONV_PIXELS;
    conv_job j = {{0, bp, bias, out, q->n * q->oh * q->ow, K, 0, N, N, (N + NR - 1) / NR, 1, 0, rows,
                   {add, N, lo, hi, clamp, 0}},
                  padded ? xp : x, off, hp, wp, q};
    long tasks = split(&j.g, (double)q->n * q->oh * q->ow * K * N);
    if (tasks < 0)
        openqnn_parallel(conv_task, &j, -tasks);
    else
        for (long t = 0; t < tasks; ++t) conv_task(&j, t);
    free(off);
    return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Depthwise convolution */

typedef struct {
    const float *x, *w, *bias;
    float* out;
    const conv_geo* g;
    epi_t e;
} dw_job;

/* one output row's channels [cb, ce) (cb a multiple of VL) from the kh input rows its windows read (rows[ky]:
 * the row's first pixel, null where the row lies in the padding); the 3x3 interior keeps its nine weight vectors
 * in registers */
static void dw_row(const float* const* rows, const conv_geo* g, const float* wt, const float* bias, float* o,
                   const float* add, const epi_t* e, long cb, long ce) {
    long C = g->c;
    int rows_in = 1;
    for (long ky = 0; ky < g->kh; ++ky) rows_in &= rows[ky] != 0;
    int three = g->kh == 3 && g->kw == 3 && g->dh == 1 && g->dw == 1;
    for (long c0 = cb; c0 < ce; c0 += VL) {
        long nc = ce - c0 < VL ? ce - c0 : VL;
        V b = vload_n(bias + c0, nc);
        if (three && rows_in) {
            const float* w = wt + c0;
            V w0 = vload_n(w, nc), w1 = vload_n(w + C, nc), w2 = vload_n(w + 2 * C, nc);
            V w3 = vload_n(w + 3 * C, nc), w4 = vload_n(w + 4 * C, nc), w5 = vload_n(w + 5 * C, nc);
            V w6 = vload_n(w + 6 * C, nc), w7 = vload_n(w + 7 * C, nc), w8 = vload_n(w + 8 * C, nc);
            const float *r0 = rows[0] + c0, *r1 = rows[1] + c0, *r2 = rows[2] + c0;
            for (long ox = 0; ox < g->ow; ++ox) {
                long ix0 = ox * g->sw - g->pl;
                V acc = b;
                if (ix0 >= 0 && ix0 + 2 < g->w && nc == VL) {
                    const float *p0 = r0 + ix0 * C, *p1 = r1 + ix0 * C, *p2 = r2 + ix0 * C;
                    acc = vfma(vload(p0), w0, acc);
                    acc = vfma(vload(p0 + C), w1, acc);
                    acc = vfma(vload(p0 + 2 * C), w2, acc);
                    acc = vfma(vload(p1), w3, acc);
                    acc = vfma(vload(p1 + C), w4, acc);
                    acc = vfma(vload(p1 + 2 * C), w5, acc);
                    acc = vfma(vload(p2), w6, acc);
                    acc = vfma(vload(p2 + C), w7, acc);
                    acc = vfma(vload(p2 + 2 * C), w8, acc);
                } else {
                    V ws[9] = {w0, w1, w2, w3, w4, w5, w6, w7, w8};
                    const float* rs[3] = {r0, r1, r2};
                    for (long ky = 0; ky < 3; ++ky)
                        for (long kx = 0; kx < 3; ++kx) {
                            long ix = ix0 + kx;
                            if (ix < 0 || ix >= g->w) continue;
                            acc = vfma(vload_n(rs[ky] + ix * C, nc), ws[ky * 3 + kx], acc);
                        }
                }
                vstore_n(o + ox * C + c0, epi(e, acc, add ? add + ox * C + c0 : 0, nc), nc);
            }
            continue;
        }
        for (long ox = 0; ox < g->ow; ++ox) {
            long ix0 = ox * g->sw - g->pl;
            V acc = b;
            for (long ky = 0; ky < g->kh; ++ky) {
                if (!rows[ky]) continue;
                for (long kx = 0; kx < g->kw; ++kx) {
                    long ix = ix0 + kx * g->dw;
                    if (ix < 0 || ix >= g->w) continue;
                    acc = vfma(vload_n(rows[ky] + ix * C + c0, nc), vload_n(wt + (ky * g->kw + kx) * C + c0, nc), acc);
                }
            }
            vstore_n(o + ox * C + c0, epi(e, acc, add ? add + ox * C + c0 : 0, nc), nc);
        }
    }
}

/* the input rows an output row's windows read (null in the padding) */
static void window_rows(const float* x, const conv_geo* g, long oy, const float** rows) {
    for (long ky = 0; ky < g->kh; ++ky) {
        long iy = oy * g->sh - g->pt + ky * g->dh;
        rows[ky] = iy >= 0 && iy < g->h ? x + iy * g->w * g->c : 0;
    }
}

static void dw_task(void* arg, long t) {
    const dw_job* j = (const dw_job*)arg;
    const conv_geo* g = j->g;
    long img = t / g->oh, oy = t % g->oh, C = g->c;
    const float* rows[g->kh];
    window_rows(j->x + img * g->h * g->w * C, g, oy, rows);
    long at = (img * g->oh + oy) * g->ow * C;
    dw_row(rows, g, j->w, j->bias, j->out + at, j->e.add ? j->e.add + at : 0, &j->e, 0, C);
}

/* out [n, oh, ow, c] = depthwise(x [n, h, w, c], w [kh, kw, c]) + bias, then + add (same shape as out;
 * null for none), then clamped to [lo, hi] if clamp */
void dw_f32(const float* x, const conv_geo* g, const float* w, const float* bias, float* out, const float* add,
            float lo, float hi, int clamp) {
    dw_job j = {x, w, bias, out, g, {add, g->c, lo, hi, clamp, 0}};
    long tasks = g->n * g->oh;
    double macs = (double)tasks * g->ow * g->c * g->kh * g->kw;
    if (openqnn_pool_threads() > 1 && tasks > 1 && macs >= openqnn_parallel_macs / 4)
        openqnn_parallel(dw_task, &j, tasks);
    else
        for (long t = 0; t < tasks; ++t) dw_task(&j, t);
}

/* ---------------------------------------------------------------------------------------------- */
/* A 1x1 convolution and the depthwise convolution it alone feeds (MobileNets' expansion), fused: each
 * expanded row is computed into a ring of kh rows as the depthwise's windows reach it, and never written out
 * whole. Each task takes a band of output rows of one image (the rows two bands share are expanded by both)
 * and a group of the expanded channels (panels of the 1x1's columns: a small image splits its channels among
 * the threads, not its few rows); every value is computed by the same code either way. */

typedef struct {
    gemm_job pw;       /* the 1x1: one input row (w pixels) times [cin, ce]; pw.e its clamp */
    const float* x;    /* [n, h, w, cin] */
    const conv_geo* q; /* the depthwise's geometry (c = ce, dilation 1) */
    const float *dww, *dwb;
    float* out;
    epi_t e;     /* the depthwise's epilogue (its add null where a projection follows) */
    gemm_job pj; /* the projection (a 1x1 convolution of the depthwise's output; its e the step's epilogue), where
                  * pj.bp is not null */
    long bands, groups; /* tasks per image: bands of output rows times groups of panels */
    _Atomic int failed;
} pwdw_job;

#define PROJ_FLOATS (1L << 16) /* depthwise output (floats) a projection takes at once: rows of the band, in cache */

static void pwdw_task(void* arg, long t) {
    pwdw_job* j = (pwdw_job*)arg;
    const conv_geo* q = j->q;
    long grp = t % j->groups;
    t /= j->groups;
    long img = t / j->bands, band = t % j->bands, per = (q->oh + j->bands - 1) / j->bands;
    long per_group = (j->pw.panels + j->groups - 1) / j->groups, p0 = grp * per_group;
    long p1 = p0 + per_group < j->pw.panels ? p0 + per_group : j->pw.panels;
    long cb = p0 * NR, ce = p1 * NR < q->c ? p1 * NR : q->c;
    long oy0 = band * per, oy1 = oy0 + per < q->oh ? oy0 + per : q->oh, C = q->c, kh = q->kh;
    long row_floats = q->w * C, cin = j->pw.K;
    float* ring = scratch_for(1, kh * row_floats);
    if (!ring) {
        j->failed = 1;
        return;
    }
    long held[kh]; /* the input row each ring slot holds */
    for (long i = 0; i < kh; ++i) held[i] = -1;
    const float* rows[kh];
    gemm_job g = j->pw;
    /* with a projection: the depthwise's rows of a chunk of the band go to a buffer, and the projection's GEMM takes
     * them (the chunk's pixels its rows) when the chunk is full */
    long out_floats = q->ow * C, chunk_rows = PROJ_FLOATS / (out_floats > 0 ? out_floats : 1), c0 = oy0;
    if (chunk_rows < 1) chunk_rows = 1;
    float* dwout = j->pj.bp ? scratch_for(4, chunk_rows * out_floats) : 0;
    if (j->pj.bp && !dwout) {
        j->failed = 1;
        return;
    }
    for (long oy = oy0; oy < oy1; ++oy) {
        for (long ky = 0; ky < kh; ++ky) {
            long iy = oy * q->sh - q->pt + ky;
            if (iy < 0 || iy >= q->h) {
                rows[ky] = 0;
                continue;
            }
            long slot = iy % kh;
            if (held[slot] != iy) {
                g.c = ring + slot * row_floats;
                gemm_rows(&g, j->x + (img * q->h + iy) * q->w * cin, cin, 0, q->w, p0, p1);
                held[slot] = iy;
            }
            rows[ky] = ring + slot * row_floats;
        }
        if (!j->pj.bp) {
            long at = (img * q->oh + oy) * q->ow * C;
            dw_row(rows, q, j->dww, j->dwb, j->out + at, j->e.add ? j->e.add + at : 0, &j->e, cb, ce);
            continue;
        }
        dw_row(rows, q, j->dww, j->dwb, dwout + (oy - c0) * out_floats, 0, &j->e, 0, C);
        if (oy + 1 - c0 == chunk_rows || oy + 1 == oy1) {
            gemm_job p = j->pj;
            long at = (img * q->oh + c0) * q->ow * p.N;
            p.c += at;
            if (p.e.add) p.e.add += at;
            gemm_rows(&p, dwout, C, 0, (oy + 1 - c0) * q->ow, 0, p.panels);
            c0 = oy + 1;
        }
    }
}

/* out [n, oh, ow, ce] = depthwise(clamp(x [n, h, w, cin] @ packed [cin, ce] + pw_bias)) + dw_bias, clamped; then,
 * with a projection (pbp not null: packed [ce, pn] weights, their bias pbias), out [n, oh, ow, pn] = that @ pbp +
 * pbias, clamped to [plo, phi] if pclamp; + add (the output's shape, null for none) before the last clamp. The
 * depthwise's geometry q (c = ce, dilations 1); returns 0, or -1 out of memory */
int pwdw_f32(const float* x, long cin, const float* bp, const float* pw_bias, float pw_lo, float pw_hi,
             int pw_clamp, const conv_geo* q, const float* dww, const float* dwb, float* out, const float* add,
             float lo, float hi, int clamp, const float* pbp, const float* pbias, long pn, float plo, float phi,
             int pclamp) {
    long ce = q->c;
    pwdw_job j = {{0, bp, pw_bias, 0, q->w, cin, cin, ce, ce, (ce + NR - 1) / NR, 1, 0, MC, {0, 0, pw_lo, pw_hi, pw_clamp, 0}},
                  x, q, dww, dwb, out, {pbp ? 0 : add, ce, lo, hi, clamp, 0},
                  {0, pbp, pbias, out, 0, ce, ce, pn, pn, (pn + NR - 1) / NR, 1, 0, MC, {add, pn, plo, phi, pclamp, 0}},
                  1, 1, 0};
    int threads = openqnn_pool_threads();
    int shared = threads > 1 && (double)q->n * q->h * q->w * cin * ce >= openqnn_parallel_macs;
    int few_rows = q->oh < 4 * threads; /* bands of them would be uneven, two rows expanded twice each */
    if (shared && few_rows && pbp) {
        /* a small image on several threads: its few rows would split unevenly, so the expansion and depthwise
         * split their channels (below) into the calling thread's buffer, and the projection's GEMM splits its own
         * rows and panels (the same sums: the projection is the same GEMM either way) */
        long dn = q->n * q->oh * q->ow * ce;
        float* mid = scratch_for(4, dn > 0 ? dn : 1);
        if (!mid) return -1;
        if (pwdw_f32(x, cin, bp, pw_bias, pw_lo, pw_hi, pw_clamp, q, dww, dwb, mid, 0, lo, hi, clamp, 0, 0, 0, 0.0f,
                     0.0f, 0) != 0)
            return -1;
        sgemm_f32(mid, q->n * q->oh * q->ow, ce, ce, pbp, pn, pbias, out, pn, add, pn, plo, phi, pclamp, 0);
        return 0;
    }
    if (shared && !few_rows)
        j.bands = threads; /* bands of rows */
    else if (shared) { /* a small image (7x7 on 2 threads): groups of channels, about two per thread */
        long per_group = (j.pw.panels + 2 * threads - 1) / (2 * threads);
        j.groups = (j.pw.panels + per_group - 1) / per_group;
    }
    long tasks = q->n * j.bands * j.groups;
    if (tasks > 1)
        openqnn_parallel(pwdw_task, &j, tasks);
    else
        pwdw_task(&j, 0);
    return j.failed ? -1 : 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Attention: out = softmax(q k^T scale + mask) v for every (batch, head). Q, K, V, the mask and the output are
 * read and written through strides -- element (b, h, row, col) of each at p + b s[0] + h s[1] + row s[2] +
 * col s[3] -- so heads split out of a projection's rows, or merged back into them, need no copy. One task per
 * (batch, head): K^T and V are copied to contiguous blocks, then AR query rows at a time get their scores (each
 * one sum over d in order, times the scale, plus the mask), the row's maximum, the exponentials of the
 * differences, their sum, and the weighted sum of V's rows (j = 0, 1, ... in order) divided by that sum. A row
 * whose scores are all -inf gives NaN, as Softmax does, or zeros where zero_empty is set. */
typedef struct {
    long B, H, Sq, Sk, D, Dv;
    const float *q, *k, *v, *mask;
    float* out;
    long qs[4], ks[4], vs[4], ms[4], os[4];
    float scale;
    int zero_empty; /* a row of -inf scores gives zeros (else NaN) */
    int failed;
} attn_args;

#define AR 4 /* query rows per block */

/* a vector's lanes reduced: its maximum, its sum (a tree of halves, the same order on every call) */
static inline float hmax(V x) {
#if defined(__AVX512F__)
    return _mm512_reduce_max_ps(x);
#elif defined(__AVX2__)
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
#else
    float t[VL], m;
    vstore(t, x);
    m = t[0];
    for (int i = 1; i < VL; ++i) m = t[i] > m ? t[i] : m;
    return m;
#endif
}
static inline float hsum(V x) {
#if defined(__AVX512F__)
    return _mm512_reduce_add_ps(x);
#elif defined(__AVX2__)
    __m128 m = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    m = _mm_add_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_add_ss(m, _mm_movehdup_ps(m)));
#else
    float t[VL], s = 0.0f;
    vstore(t, x);
    for (int i = 0; i < VL; ++i) s += t[i];
    return s;
#endif
}

/* scores of AR rows (q rows qr, element dd at qr[r][dd * qd]) against nv vectors of K^T's columns from j */
static inline __attribute__((always_inline)) void attn_scores(const float* const* qr, long qd, const float* kt,
                                                               long ldkt, long D, long j, int nv, float scale,
                                                               float* s, long lds) {
    V acc[AR][2];
    for (int r = 0; r < AR; ++r)
        for (int c = 0; c < nv; ++c) acc[r][c] = vzero();
    for (long dd = 0; dd < D; ++dd) {
        const float* kp = kt + dd * ldkt + j;
        V k0 = vload(kp), k1 = nv > 1 ? vload(kp + VL) : k0;
        for (int r = 0; r < AR; ++r) {
            V qv = vset(qr[r][dd * qd]);
            acc[r][0] = vfma(qv, k0, acc[r][0]);
            if (nv > 1) acc[r][1] = vfma(qv, k1, acc[r][1]);
        }
    }
    for (int r = 0; r < AR; ++r)
        for (int c = 0; c < nv; ++c) vstore(s + r * lds + j + c * VL, vmul(acc[r][c], vset(scale)));
}

/* out rows += p rows (AR of them, row stride lds) times V's rows, for nv vectors of V's columns from e */
static inline __attribute__((always_inline)) void attn_values(const float* p, long lds, const float* vv, long ldv,
                                                               long Sk, long e, int nv, V* res) {
    V acc[AR][2];
    for (int r = 0; r < AR; ++r)
        for (int c = 0; c < nv; ++c) acc[r][c] = vzero();
    for (long j = 0; j < Sk; ++j) {
        const float* vp = vv + j * ldv + e;
        V v0 = vload(vp), v1 = nv > 1 ? vload(vp + VL) : v0;
        for (int r = 0; r < AR; ++r) {
            V pv = vset(p[r * lds + j]);
            acc[r][0] = vfma(pv, v0, acc[r][0]);
            if (nv > 1) acc[r][1] = vfma(pv, v1, acc[r][1]);
        }
    }
    for (int r = 0; r < AR; ++r)
        for (int c = 0; c < nv; ++c) res[r * 2 + c] = acc[r][c];
}

static void attn_task(void* arg, long t) {
    attn_args* a = (attn_args*)arg;
    long b = t / a->H, h = t % a->H, Sq = a->Sq, Sk = a->Sk, D = a->D, Dv = a->Dv;
    long skp = (Sk + 2 * VL - 1) / (2 * VL) * (2 * VL), dvp = (Dv + 2 * VL - 1) / (2 * VL) * (2 * VL);
    float* kt = scratch_for(2, D * skp + Sk * dvp + AR * skp);
    if (!kt) {
        a->failed = 1;
        return;
    }
    float *vv = kt + D * skp, *s = vv + Sk * dvp;
    const float* kb = a->k + b * a->ks[0] + h * a->ks[1];
    for (long dd = 0; dd < D; ++dd) {
        for (long j = 0; j < Sk; ++j) kt[dd * skp + j] = kb[j * a->ks[2] + dd * a->ks[3]];
        for (long j = Sk; j < skp; ++j) kt[dd * skp + j] = 0.0f;
    }
    const float* vb = a->v + b * a->vs[0] + h * a->vs[1];
    for (long j = 0; j < Sk; ++j) {
        if (a->vs[3] == 1)
            memcpy(vv + j * dvp, vb + j * a->vs[2], (size_t)Dv * sizeof(float));
        else
            for (long e = 0; e < Dv; ++e) vv[j * dvp + e] = vb[j * a->vs[2] + e * a->vs[3]];
        for (long e = Dv; e < dvp; ++e) vv[j * dvp + e] = 0.0f;
    }
    const float* qb = a->q + b * a->qs[0] + h * a->qs[1];
    const float* mb = a->mask ? a->mask + b * a->ms[0] + h * a->ms[1] : 0;
    float* ob = a->out + b * a->os[0] + h * a->os[1];
    for (long i0 = 0; i0 < Sq; i0 += AR) {
        long nr = Sq - i0 < AR ? Sq - i0 : AR;
        const float* qr[AR];
        for (long r = 0; r < AR; ++r) qr[r] = qb + (i0 + (r < nr ? r : 0)) * a->qs[2];
        for (long j = 0; j < skp; j += 2 * VL) attn_scores(qr, a->qs[3], kt, skp, D, j, 2, a->scale, s, skp);
        float inv[AR];
        for (long r = 0; r < nr; ++r) {
            float* sr = s + r * skp;
            if (mb) {
                const float* mr = mb + (i0 + r) * a->ms[2];
                if (a->ms[3] == 1)
                    for (long c = 0; c < Sk; c += VL) vstore_n(sr + c, vadd(vload_n(sr + c, Sk - c), vload_n(mr + c, Sk - c)), Sk - c);
                else if (a->ms[3] == 0) {
                    V m = vset(mr[0]);
                    for (long c = 0; c < Sk; c += VL) vstore_n(sr + c, vadd(vload_n(sr + c, Sk - c), m), Sk - c);
                } else
                    for (long c = 0; c < Sk; ++c) sr[c] += mr[c * a->ms[3]];
            }
            V vmx = vset(sr[0]);
            long c = 0;
            for (; c + VL <= Sk; c += VL) vmx = vmax(vmx, vload(sr + c));
            float mx = hmax(vmx);
            for (; c < Sk; ++c) mx = sr[c] > mx ? sr[c] : mx;
            uint32_t bits;
            memcpy(&bits, &mx, sizeof bits); /* (the build assumes finite math: no isinf) */
            if (bits == 0xff800000u) {        /* every score -inf: 0 / 0, or zeros */
                memset(sr, 0, (size_t)Sk * sizeof(float));
                bits = a->zero_empty ? 0u : 0x7fc00000u;
                memcpy(&inv[r], &bits, sizeof bits);
                continue;
            }
            V vm = vset(-mx), sum = vzero();
            for (c = 0; c + VL <= Sk; c += VL) {
                V e = vexp(vadd(vload(sr + c), vm));
                vstore(sr + c, e);
                sum = vadd(sum, e);
            }
            float tail = 0.0f;
            if (c < Sk) {
                V e = vexp(vadd(vload_n(sr + c, Sk - c), vm));
                vstore_n(sr + c, e, Sk - c);
                for (long cc = c; cc < Sk; ++cc) tail += sr[cc];
            }
            inv[r] = 1.0f / (hsum(sum) + tail);
        }
        for (long e = 0; e < dvp; e += 2 * VL) {
            V res[AR * 2];
            attn_values(s, skp, vv, dvp, Sk, e, 2, res);
            for (long r = 0; r < nr; ++r) {
                float* o = ob + (i0 + r) * a->os[2];
                for (int c2 = 0; c2 < 2; ++c2) {
                    long at = e + c2 * VL;
                    if (at < Dv) vstore_n(o + at, vmul(res[r * 2 + c2], vset(inv[r])), Dv - at);
                }
            }
        }
    }
}

/* returns 0, or -1 where a thread's buffers could not be allocated */
int attn_f32(attn_args* a) {
    a->failed = 0;
    long tasks = a->B * a->H;
    double macs = (double)tasks * a->Sq * a->Sk * (a->D + a->Dv);
    if (openqnn_pool_threads() > 1 && macs >= openqnn_parallel_macs && tasks > 1)
        openqnn_parallel(attn_task, a, tasks);
    else
        for (long t = 0; t < tasks; ++t) attn_task(a, t);
    return a->failed ? -1 : 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* LayerNorm over the last axis: each of M rows of N floats -> (x - mean) / sqrt(var + eps) * g + b, the mean
 * and the (biased) variance of the differences each one sum over the row (vectors in order, then their lanes, then
 * the tail); g and b may be null (1 and 0). The rows are split over the pool in blocks, each row's result its own. */
typedef struct {
    const float *x, *g, *b;
    float* out;
    long M, N;
    float eps;
} ln_job;

#define LN_ROWS 16 /* rows per task */

static void ln_row(const ln_job* j, long r) {
    long N = j->N, c = 0;
    const float* x = j->x + r * N;
    float* o = j->out + r * N;
    V s = vzero();
    for (; c + VL <= N; c += VL) s = vadd(s, vload(x + c));
    float mean = hsum(s);
    for (; c < N; ++c) mean += x[c];
    mean /= (float)N;
    V neg = vset(-mean), q = vzero();
    for (c = 0; c + VL <= N; c += VL) {
        V d = vadd(vload(x + c), neg);
        q = vfma(d, d, q);
    }
    float var = hsum(q);
    for (; c < N; ++c) var += (x[c] - mean) * (x[c] - mean);
    V rstd = vset(1.0f / sqrtf(var / (float)N + j->eps));
    for (c = 0; c < N; c += VL) {
        long n = N - c;
        V y = vmul(vadd(vload_n(x + c, n), neg), rstd);
        if (j->g) y = vmul(y, vload_n(j->g + c, n));
        if (j->b) y = vadd(y, vload_n(j->b + c, n));
        vstore_n(o + c, y, n);
    }
}

static void ln_task(void* arg, long t) {
    const ln_job* j = (const ln_job*)arg;
    long end = (t + 1) * LN_ROWS < j->M ? (t + 1) * LN_ROWS : j->M;
    for (long r = t * LN_ROWS; r < end; ++r) ln_row(j, r);
}

void ln_f32(const float* x, long M, long N, const float* g, const float* b, float eps, float* out) {
    ln_job j = {x, g, b, out, M, N, eps};
    long tasks = (M + LN_ROWS - 1) / LN_ROWS;
    if (openqnn_pool_threads() > 1 && (double)M * N * 4 >= openqnn_parallel_macs && tasks > 1)
        openqnn_parallel(ln_task, &j, tasks);
    else
        for (long t = 0; t < tasks; ++t) ln_task(&j, t);
}

/* ---------------------------------------------------------------------------------------------- */
/* Sums and means over the middle axis of [outer, rows, inner] (a global average pool over an image's pixels,
 * channels last; an encoder's mean over tokens): out[o, i] = sum over r of x[o, r, i] in r's order, divided by
 * rows for a mean. One pass over x, each vector of inner elements accumulated in registers. */

void sum_rows_f32(const float* x, long outer, long rows, long inner, int mean, float* out) {
    V div = vset((float)rows);
    for (long o = 0; o < outer; ++o) {
        const float* src = x + o * rows * inner;
        float* dst = out + o * inner;
        for (long i0 = 0; i0 < inner; i0 += 4 * VL) {
            long n = inner - i0 < 4 * VL ? inner - i0 : 4 * VL;
            if (n == 4 * VL) {
                V a0 = vzero(), a1 = vzero(), a2 = vzero(), a3 = vzero();
                for (long r = 0; r < rows; ++r) {
                    const float* p = src + r * inner + i0;
                    a0 = vadd(a0, vload(p));
                    a1 = vadd(a1, vload(p + VL));
                    a2 = vadd(a2, vload(p + 2 * VL));
                    a3 = vadd(a3, vload(p + 3 * VL));
                }
                if (mean) {
                    a0 = vdiv(a0, div);
                    a1 = vdiv(a1, div);
                    a2 = vdiv(a2, div);
                    a3 = vdiv(a3, div);
                }
                vstore(dst + i0, a0);
                vstore(dst + i0 + VL, a1);
                vstore(dst + i0 + 2 * VL, a2);
                vstore(dst + i0 + 3 * VL, a3);
                continue;
            }
            for (long i = i0; i < i0 + n; i += VL) {
                long m = i0 + n - i < VL ? i0 + n - i : VL;
                V a = vzero();
                for (long r = 0; r < rows; ++r) a = vadd(a, vload_n(src + r * inner + i, m));
                vstore_n(dst + i, mean ? vdiv(a, div) : a, m);
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* The same kernels called with their fixed operands in one struct, made once per layer: a call from Python then
 * converts five arguments, not fifteen (about 1 us of a small layer's few). */
typedef struct {
    const float *bp, *bias;
    long K, N;
    float lo, hi;
    int clamp, act;
} sgemm_plan;

void sgemm_run(const sgemm_plan* p, const float* a, long M, float* c, const float* add) {
    sgemm_f32(a, M, p->K, p->K, p->bp, p->N, p->bias, c, p->N, add, p->N, p->lo, p->hi, p->clamp, p->act);
}

typedef struct {
    const conv_geo* g;
    const float *w, *bias;
    float lo, hi;
    int clamp;
} dw_plan;

void dw_run(const dw_plan* p, const float* x, float* out, const float* add) {
    dw_f32(x, p->g, p->w, p->bias, out, add, p->lo, p->hi, p->clamp);
}

typedef struct {
    long cin;
    const float *bp, *pw_bias;
    float pw_lo, pw_hi;
    int pw_clamp;
    const conv_geo* g;
    const float *dww, *dwb;
    float lo, hi;
    int clamp;
    const float *pbp, *pbias; /* the projection (pbp null for none) */
    long pn;
    float plo, phi;
    int pclamp;
} pwdw_plan;

int pwdw_run(const pwdw_plan* p, const float* x, float* out, const float* add) {
    return pwdw_f32(x, p->cin, p->bp, p->pw_bias, p->pw_lo, p->pw_hi, p->pw_clamp, p->g, p->dww, p->dwb, out, add,
                    p->lo, p->hi, p->clamp, p->pbp, p->pbias, p->pn, p->plo, p->phi, p->pclamp);
}
