/* openqnn htp: int8 convolutions with the requantization fused (AVX-512 VNNI).
 *
 * Two kernels compute exact int32 accumulators of uint8 activation codes times int8 weights
 * (vpdpbusd: four u8 x s8 products summed into an int32 lane, never saturating) and hand each block
 * of accumulators, still in cache, to requant.c's epilogue (an `rq_i32_*` function: the same bits
 * as the PyTorch form). Per output channel c:
 *
 *   acc[c] = init[c] + sum over taps and input channels of q * w[c]
 *
 * with init[c] = -zx * sum(w[c]) (the caller's choice), so acc is the spec's sum of (q - zx) * w.
 * The sum is computed modulo 2^32 and is exact because the final value fits int32 (checked by the
 * caller from the weights).
 *
 * - gemm_u8s8: rows of K codes (a 1x1 convolution, channels last) times [K, N] weights.
 * - dwconv_u8s8: a depthwise convolution (channels last, one weight per channel and tap), taps
 *   outside the input read the zero point.
 *
 * Built without AVX-512 VNNI, openqnn_int8_available() returns 0 and nothing else is defined.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* requant.c's epilogue: rows of ch accumulators (stride xstride) -> rows of ch outputs */
typedef void (*epi_fn)(const int32_t* x, long rows, long ch, long xstride, const double* cst, const double* mul,
                       const double* k0, const double* sc, const double* nd, const int32_t* madd,
                       const int32_t* shift, const int32_t* lo, const int32_t* hi, double qmax, void* out);

/* pool.c: fn(arg, i) for i in [0, n) on the pool's threads */
void openqnn_parallel(void (*fn)(void*, long), void* arg, long n);
int openqnn_pool_threads(void);
/* pool.c: multiply-adds below which a kernel stays on the calling thread */
extern double openqnn_parallel_macs;

/* one requantization: its epilogue, constants tiled k times (k rows of ch as one row), output size;
 * mode: 0, or (int32 -> uint8 by rqsimd.h's float32 estimate, no window) 1 | 2 * dyn | 4 * folded,
 * where the GEMM requantizes its accumulators in registers (sc holds the float32 constants, k0 the
 * sign correction's thresholds as int32, qmax the estimate's bound) */
typedef struct {
    epi_fn fn;
    const double *cst, *mul, *k0, *sc, *nd;
    const int32_t *madd, *shift, *lo, *hi;
    double qmax;
    long ch, k, out_size, mode;
} rq_plan;

static void epilogue(const rq_plan* p, const int32_t* acc, long rows, char* out) {
    long ch = p->ch, k = p->k, big = rows / k;
    if (big)
        p->fn(acc, big, ch * k, ch * k, p->cst, p->mul, p->k0, p->sc, p->nd, p->madd, p->shift, p->lo, p->hi,
              p->qmax, out);
    if (rows - big * k)
        p->fn(acc + big * k * ch, rows - big * k, ch, ch, p->cst, p->mul, p->k0, p->sc, p->nd, p->madd, p->shift,
              p->lo, p->hi, p->qmax, out + big * k * ch * p->out_size);
}

/* rows per epilogue call: a multiple of k, about 32 KiB of accumulators */
static long block_rows(const rq_plan* p) {
    long r = 8192 / (p->ch * p->k);
    return (r < 1 ? 1 : r) * p->k;
}

/* rows per block: whole epilogue blocks, at least 48 rows (each block streams all the weights); where
 * the product goes to the pool (*pooled), as many blocks of about equal size as a multiple of the threads (a
 * last short block, or one block more than the threads, would leave a thread idle: ResNet-18's 7x7 layers
 * have 49 rows). (The AVX2 and aarch64 GEMMs; the AVX-512 one sizes its blocks for cache.) */
__attribute__((unused)) static long pooled_rows(const rq_plan* plan, long M, long K, long N, int* pooled) {
    long br = block_rows(plan), rb = ((48 + br - 1) / br) * br;
    int threads = openqnn_pool_threads();
    *pooled = threads > 1 && (double)M * (double)K * (double)N >= openqnn_parallel_macs;
    if (*pooled) {
        long target = ((M + rb - 1) / rb + threads - 1) / threads * threads, k = plan->k > 0 ? plan->k : 1;
        long even = (M + target - 1) / target;
        rb = (even + k - 1) / k * k;
    }
    return rb;
}

/* Per-thread scratch, grown as needed and kept (the pool's threads live on): a block malloc'd and freed
 * per task hands its pages back to the system and faults them in again each time (a third of a GEMM's time). */
static __thread char* scratch_buf;
static __thread size_t scratch_cap;

__attribute__((unused)) static void* thread_scratch(size_t bytes) {
    if (bytes > scratch_cap) {
        free(scratch_buf);
        scratch_buf = (char*)malloc(bytes);
        scratch_cap = scratch_buf ? bytes : 0;
    }
    return scratch_buf;
}

/* One GEMM (every form): blocks of rb rows, each a task of its own (the same bits on any number
 * of threads). bp and init are in the form's packed layout. */
typedef struct {
    const uint8_t* A;
    long M, K, lda, N, rb;
    const void* bp;
    const int32_t* init;
    const rq_plan* plan;
    char* out;
    volatile int failed;
} block_job;

/* block t's first row and row count, and its scratch: the block's A rows (arow_bytes each, from the start of the
 * returned memory), then its int32 accumulators (*buf, rows x N); null, the job marked failed, where it cannot
 * be had */
__attribute__((unused)) static char* block_scratch(block_job* j, long t, size_t arow_bytes, long* r0, long* rows,
                                                   int32_t** buf) {
    *r0 = t * j->rb;
    *rows = j->M - *r0 < j->rb ? j->M - *r0 : j->rb;
    size_t abytes = ((size_t)*rows * arow_bytes + 63) / 64 * 64;
    char* mem = (char*)thread_scratch(abytes + (size_t)(*rows * j->N) * sizeof(int32_t));
    if (!mem) {
        j->failed = 1;
        return 0;
    }
    *buf = (int32_t*)(void*)(mem + abytes);
    return mem;
}

/* every block of the job, on the pool where pooled, else on this thread: 0, or -1 where a block's scratch failed */
__attribute__((unused)) static int run_blocks(block_job* j, void (*block)(void*, long), int pooled) {
    long blocks = (j->M + j->rb - 1) / j->rb;
    if (blocks > 1 && pooled)
        openqnn_parallel(block, j, blocks);
    else
        for (long t = 0; t < blocks; ++t) block(j, t);
    return j->failed ? -1 : 0;
}

/* a depthwise convolution's geometry (native/__init__.py's _Geo) */
typedef struct {
    long n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow;
    int32_t zx;
} dw_geo;

/* ---- im2col of uint8 codes, channels last (any ISA) -----------------------------------------------
 * out[(b, oy, ox), (ky, kx, ch)] = x[b, oy * sh - pt + ky * dh, ox * sw - pl + kx * dw, ch], or zx outside
 * the input (g: n h w c kh kw sh sw dh dw pt pl oh ow): the rows native GEMM multiplies by the weights
 * [kh * kw * c, cout]. A kernel row inside the input with dw = 1 is one run of kw * c bytes. */
static inline void copy_run(uint8_t* restrict d, const uint8_t* restrict s, long n) {
    for (; n >= 16; n -= 16, d += 16, s += 16) memcpy(d, s, 16); /* fixed sizes: plain moves */
    if (n >= 8) { memcpy(d, s, 8); d += 8; s += 8; n -= 8; }
    if (n >= 4) { memcpy(d, s, 4); d += 4; s += 4; n -= 4; }
    if (n >= 2) { memcpy(d, s, 2); d += 2; s += 2; n -= 2; }
    if (n) *d = *s;
}

/* output rows [r0, r1) of all images' n * oh (each ow x kh * kw * c bytes at its place in out) */
static void im2col_range(const uint8_t* x, const long* g, int zx, uint8_t* out, long r0, long r1) {
    long h = g[1], w = g[2], c = g[3], kh = g[4], kw = g[5], sh = g[6], sw = g[7], dh = g[8], dw = g[9];
    long pt = g[10], pl = g[11], oh = g[12], ow = g[13], run = kw * c;
    uint8_t* o = out + r0 * ow * kh * run;
    for (long r = r0; r < r1; ++r) {
        long b = r / oh, oy = r % oh;
        for (long ox = 0; ox < ow; ++ox) {
            long ix0 = ox * sw - pl, inside = ix0 >= 0 && ix0 + (kw - 1) * dw < w;
            for (long ky = 0; ky < kh; ++ky, o += run) {
                long iy = oy * sh - pt + ky * dh;
                if (iy < 0 || iy >= h) {
                    memset(o, zx, (size_t)run);
                    continue;
                }
                const uint8_t* row = x + ((b * h + iy) * w) * c;
                if (inside && dw == 1) {
                    copy_run(o, row + ix0 * c, run);
                    continue;
                }
                for (long kx = 0; kx < kw; ++kx) {
                    long ix = ix0 + kx * dw;
                    if (ix >= 0 && ix < w)
                        copy_run(o + kx * c, row + ix * c, c);
                    else
                        memset(o + kx * c, zx, (size_t)c);
                }
            }
        }
    }
}

typedef struct {
    const uint8_t* x;
    const long* g;
    int zx;
    uint8_t* out;
    long chunk, total;
} im2col_job;

static void im2col_task(void* arg, long t) {
    const im2col_job* j = (const im2col_job*)arg;
    long r0 = t * j->chunk, r1 = r0 + j->chunk < j->total ? r0 + j->chunk : j->total;
    im2col_range(j->x, j->g, j->zx, j->out, r0, r1);
}

/* The output rows go to the pool's threads in contiguous runs where there are many bytes to write (a
 * copy: the same bytes on any number of threads). */
void im2col_u8(const uint8_t* x, const long* g, int zx, uint8_t* out) {
    long total = g[0] * g[12];
    double bytes = (double)total * (double)g[13] * (double)(g[4] * g[5] * g[3]);
    int threads = openqnn_pool_threads();
    long tasks = bytes >= openqnn_parallel_macs / 4 && threads > 1 ? (threads < total ? threads : total) : 1;
    if (tasks > 1) {
        im2col_job j = {x, g, zx, out, (total + tasks - 1) / tasks, total};
        openqnn_parallel(im2col_task, &j, (total + j.chunk - 1) / j.chunk);
    } else {
        im2col_range(x, g, zx, out, 0, total);
    }
}

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#include <immintrin.h>

#include "rqsimd.h"

int openqnn_int8_available(void) { return 1; }
int openqnn_int8_isa(void) { return 2; }

/* ---- GEMM ---------------------------------------------------------------------------------------
 * Packed weights (gemm_pack_size / gemm_pack): columns padded to multiples of 16, taken in panels of
 * up to 64 (nb blocks of 16); per panel, per group of 4 k: nb * 64 bytes, block j holding columns
 * 16j..16j+15 as 4 consecutive k bytes each (vpdpbusd's layout). K is padded to a multiple of 4. */

#define MR 6

long gemm_pack_size(long K, long N) { return ((K + 3) / 4) * 4 * ((N + 15) / 16) * 16; }

void gemm_pack(const int8_t* w, long K, long N, int8_t* out) { /* w: [K, N] row-major */
    long kq = (K + 3) / 4, np = (N + 15) / 16;
    for (long p0 = 0; p0 < np; p0 += 4) {
        long nb = np - p0 < 4 ? np - p0 : 4;
        for (long q = 0; q < kq; ++q)
            for (long j = 0; j < nb; ++j) {
                long k0 = 4 * q, col0 = (p0 + j) * 16;
                if (k0 + 4 <= K && col0 + 16 <= N) { /* a whole 4 x 16 block: a transpose, no bounds */
                    const int8_t* r = w + k0 * N + col0;
                    for (long c = 0; c < 16; ++c) {
                        out[4 * c] = r[c];
                        out[4 * c + 1] = r[N + c];
                        out[4 * c + 2] = r[2 * N + c];
                        out[4 * c + 3] = r[3 * N + c];
                    }
                    out += 64;
                    continue;
                }
                for (long c = 0; c < 16; ++c) /* an edge block: zeros past K and N */
                    for (long e = 0; e < 4; ++e) {
                        long kk = k0 + e, col = col0 + c;
                        *out++ = (kk < K && col < N) ? w[kk * N + col] : 0;
                    }
            }
    }
}

static inline __m512i load4(const uint8_t* a, long rem) { /* 4 bytes broadcast, fewer at the end of a row */
    int32_t v = 0;
    memcpy(&v, a, rem < 4 ? (size_t)rem : 4);
    return _mm512_set1_epi32(v);
}

/* One tile: MR rows x NB blocks of 16 columns, every accumulator a named register. */
#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define DP(i, j) c##i##_##j = _mm512_dpbusd_epi32(c##i##_##j, av, b##j)
#define ROW_STEP(i)                                                  \
    {                                                                \
        int32_t v;                                                   \
        memcpy(&v, r##i + off, 4);                                   \
        __m512i av = _mm512_set1_epi32(v);                           \
        DP(i, 0);                                                    \
        if (NB > 1) DP(i, 1);                                        \
        if (NB > 2) DP(i, 2);                                        \
        if (NB > 3) DP(i, 3);                                        \
    }
#define ROW_TAIL(i)                                                  \
    {                                                                \
        __m512i av = load4(r##i + off, K % 4);                       \
        DP(i, 0);                                                    \
        if (NB > 1) DP(i, 1);                                        \
        if (NB > 2) DP(i, 2);                                        \
        if (NB > 3) DP(i, 3);                                        \
    }
#define ROW_DECL(i)                                                  \
    const uint8_t* r##i = a + (i < mr ? i : mr - 1) * lda;           \
    __m512i c##i##_0 = init[0], c##i##_1 = init[NB > 1 ? 1 : 0];     \
    __m512i c##i##_2 = init[NB > 2 ? 2 : 0], c##i##_3 = init[NB > 3 ? 3 : 0];
#define STORE1(i, j)                                                                                \
    {                                                                                               \
        long left = ncols - 16 * j;                                                                 \
        if (left >= 16)                                                                             \
            _mm512_storeu_si512((void*)(c + i * ldc + 16 * j), c##i##_##j);                         \
        else                                                                                        \
            _mm512_mask_storeu_epi32(c + i * ldc + 16 * j, (__mmask16)((1u << left) - 1), c##i##_##j); \
    }
#define ROW_STORE(i)                                                 \
    if (i < mr) {                                                    \
        STORE1(i, 0);                                                \
        if (NB > 1) STORE1(i, 1);                                    \
        if (NB > 2) STORE1(i, 2);                                    \
        if (NB > 3) STORE1(i, 3);                                    \
    }

/* One row of a tile requantized in registers (plan mode != 0; NB = 1: 16 channels of one pixel in the
 * depthwise kernel): NB blocks of 16 accumulators for
 * columns col .. col + ncols - 1 (ncols counted from col, may exceed 16 * NB) -> uint8 at o. */
/* requant.c's int32 QNN form (rqi_*, plan mode 8) on 16 lanes: its constants for columns col .. col + 15
 * (mask m: those that exist), loaded once where many pixels share them, and the form: clamp(x) + base, >> s,
 * * m + c, >> d (the caller's saturating conversion clamps to [0, 255]) */
typedef struct {
    __m512i lo, hi, base, s, m, c, d;
} rqi_c;

static inline __attribute__((always_inline)) rqi_c rqi_load(const rq_plan* p, long col, __mmask16 mk) {
    rqi_c k;
    k.lo = _mm512_maskz_loadu_epi32(mk, p->lo + col);
    k.hi = _mm512_maskz_loadu_epi32(mk, p->hi + col);
    k.base = _mm512_maskz_loadu_epi32(mk, (const int32_t*)(const void*)p->k0 + col);
    k.s = _mm512_maskz_loadu_epi32(mk, p->shift + col);
    k.m = _mm512_maskz_loadu_epi32(mk, p->madd + col);
    k.c = _mm512_maskz_loadu_epi32(mk, (const int32_t*)(const void*)p->sc + col);
    k.d = _mm512_maskz_loadu_epi32(mk, (const int32_t*)(const void*)p->nd + col);
    return k;
}

static inline __attribute__((always_inline)) __m512i rqi_apply(const rqi_c* k, __m512i x) {
    x = _mm512_min_epi32(_mm512_max_epi32(x, k->lo), k->hi);
    x = _mm512_srav_epi32(_mm512_add_epi32(x, k->base), k->s);
    return _mm512_srav_epi32(_mm512_add_epi32(_mm512_mullo_epi32(x, k->m), k->c), k->d);
}

static inline __attribute__((always_inline)) __m512i rqi16(const rq_plan* p, __m512i x, long col, __mmask16 m) {
    rqi_c k = rqi_load(p, col, m);
    return rqi_apply(&k, x);
}

static inline __attribute__((always_inline)) void rq_tile_row(const rq_plan* p, __m512i a0, __m512i a1, __m512i a2,
                                                             __m512i a3, const int NB, uint8_t* o, long col,
                                                             long ncols, const int dyn, const int folded,
                                                             const int qint) {
    if (qint) { /* requant.c's rqi_*: saturating packs clamp to [0, 255] (qmax) */
        __m512i r[4] = {a0, a1, a2, a3};
        __mmask16 mk[4];
        for (int j = 0; j < NB; ++j) {
            long left = ncols - 16 * j;
            mk[j] = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
            r[j] = rqi16(p, r[j], col + 16 * j, mk[j]);
        }
        if (NB == 4 && ncols >= 64) {
            _mm512_storeu_si512((void*)o, pack64(r[0], r[1], r[2], r[3]));
        } else {
            for (int j = 0; j < NB; ++j)
                rqv_store(o + 16 * j, ncols - 16 * j, mk[j], _mm512_max_epi32(r[j], _mm512_setzero_si512()));
        }
        return;
    }
    const int32_t* xthr = (const int32_t*)(const void*)p->k0 + col;
    __m512i v[4] = {a0, a1, a2, a3};
    __mmask16 k[4];
    for (int j = 0; j < NB; ++j) {
        long left = ncols - 16 * j;
        __mmask16 m = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
        k[j] = dyn ? _mm512_mask_cmplt_epi32_mask(m, v[j], _mm512_maskz_loadu_epi32(m, xthr + 16 * j)) : 0;
    }
    rqf_groups(v, k, NB, ncols, (const float*)(const void*)p->sc + (col / 16) * 48, (float)p->qmax, p->cst + col,
               p->mul + col, dyn ? p->nd + col : 0, p->madd + col, o, dyn, folded);
}

#define ROW_RQ(i)                                                                                          \
    if (i < mr) rq_tile_row(p, c##i##_0, c##i##_1, c##i##_2, c##i##_3, NB, o + i * ldo, col, ncols, RQ & 2, RQ & 4, \
                            RQ & 8);

/* mode 8: block j's constants loaded once for the tile's rows */
#define ROW_RQI(i, j) \
    if (i < mr) rqv_store(o + i * ldo + 16 * j, left, mk, _mm512_max_epi32(rqi_apply(&k, c##i##_##j), _mm512_setzero_si512()));
#define ROW_RQI_0(i) ROW_RQI(i, 0)
#define ROW_RQI_1(i) ROW_RQI(i, 1)
#define ROW_RQI_2(i) ROW_RQI(i, 2)
#define ROW_RQI_3(i) ROW_RQI(i, 3)
#define BLOCK_RQI(j)                                                                          \
    if (NB > j) {                                                                             \
        long left = ncols - 16 * j;                                                           \
        __mmask16 mk = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);        \
        rqi_c k = rqi_load(p, col + 16 * j, mk);                                              \
        ROWS(ROW_RQI_##j)                                                                     \
    }

/* RQ = 0: int32 accumulators to c (row stride ldc); else plan p's mode: uint8 outputs to o (stride ldo) */
static inline __attribute__((always_inline)) void gemm_tile(const uint8_t* a, long lda, int mr, long K,
                                                           const int8_t* bp, const int NB, const __m512i* init,
                                                           int32_t* c, long ldc, long ncols, const int RQ,
                                                           const rq_plan* p, uint8_t* o, long ldo, long col) {
    ROWS(ROW_DECL)
    long full = K / 4;
    const int8_t* bq = bp;
    for (long q = 0; q < full; ++q, bq += NB * 64) {
        long off = 4 * q;
        __m512i b0 = _mm512_loadu_si512((const void*)bq), b1 = b0, b2 = b0, b3 = b0;
        if (NB > 1) b1 = _mm512_loadu_si512((const void*)(bq + 64));
        if (NB > 2) b2 = _mm512_loadu_si512((const void*)(bq + 128));
        if (NB > 3) b3 = _mm512_loadu_si512((const void*)(bq + 192));
        ROWS(ROW_STEP)
    }
    if (K % 4) {
        long off = 4 * full;
        __m512i b0 = _mm512_loadu_si512((const void*)bq), b1 = b0, b2 = b0, b3 = b0;
        if (NB > 1) b1 = _mm512_loadu_si512((const void*)(bq + 64));
        if (NB > 2) b2 = _mm512_loadu_si512((const void*)(bq + 128));
        if (NB > 3) b3 = _mm512_loadu_si512((const void*)(bq + 192));
        ROWS(ROW_TAIL)
    }
    if (RQ & 8) {
        BLOCK_RQI(0) BLOCK_RQI(1) BLOCK_RQI(2) BLOCK_RQI(3)
    } else if (RQ) {
        ROWS(ROW_RQ)
    } else {
        ROWS(ROW_STORE)
    }
}

/* the tiles of one panel (nb blocks of 16 columns from col) over rows rows of A */
static inline __attribute__((always_inline)) void gemm_panel(const uint8_t* A, long rows, long K, long lda,
                                                            const int8_t* panel, int nb, const __m512i* iv,
                                                            int32_t* c, long ldc, long ncols, const int RQ,
                                                            const rq_plan* p, uint8_t* o, long ldo, long col) {
    for (long i = 0; i < rows; i += MR) {
        int mr = rows - i < MR ? (int)(rows - i) : MR;
        const uint8_t* a = A + i * lda;
        int32_t* ci = c ? c + i * ldc : 0;
        uint8_t* oi = o ? o + i * ldo : 0;
        switch (nb) {
        case 4: gemm_tile(a, lda, mr, K, panel, 4, iv, ci, ldc, ncols, RQ, p, oi, ldo, col); break;
        case 3: gemm_tile(a, lda, mr, K, panel, 3, iv, ci, ldc, ncols, RQ, p, oi, ldo, col); break;
        case 2: gemm_tile(a, lda, mr, K, panel, 2, iv, ci, ldc, ncols, RQ, p, oi, ldo, col); break;
        default: gemm_tile(a, lda, mr, K, panel, 1, iv, ci, ldc, ncols, RQ, p, oi, ldo, col); break;
        }
    }
}

#define GEMM_RQ(MODE)                                                                                        \
    static void gemm_rq_##MODE(const uint8_t* A, long rows, long K, long lda, const int8_t* panel, int nb,   \
                               const __m512i* iv, long ncols, const rq_plan* p, uint8_t* o, long ldo,        \
                               long col) {                                                                   \
        gemm_panel(A, rows, K, lda, panel, nb, iv, 0, 0, ncols, MODE, p, o, ldo, col);                       \
    }
GEMM_RQ(1)
GEMM_RQ(3)
GEMM_RQ(5)
GEMM_RQ(7)
GEMM_RQ(8)

/* rows [r0, r0 + rb) of one GEMM: every panel, then the epilogue (plan mode 0) */
static void gemm_block(void* arg, long t) {
    block_job* j = (block_job*)arg;
    const rq_plan* plan = j->plan;
    long r0 = t * j->rb, rows = j->M - r0 < j->rb ? j->M - r0 : j->rb, N = j->N, K = j->K, np = (N + 15) / 16;
    long kq = (K + 3) / 4, mode = plan->mode;
    int32_t* buf = 0;
    if (!mode && !(buf = (int32_t*)malloc((size_t)(rows * N) * sizeof(int32_t)))) {
        j->failed = 1;
        return;
    }
    const uint8_t* a = j->A + r0 * j->lda;
    for (long p0 = 0; p0 < np; p0 += 4) {
        int nb = np - p0 < 4 ? (int)(np - p0) : 4;
        const int8_t* panel = (const int8_t*)j->bp + p0 * 16 * kq * 4;
        __m512i iv[4];
        for (int q = 0; q < nb; ++q) {
            long col = (p0 + q) * 16, left = N - col;
            iv[q] = _mm512_maskz_loadu_epi32((__mmask16)(left >= 16 ? 0xFFFF : (1u << left) - 1), j->init + col);
        }
        long col = p0 * 16, ncols = N - col;
        uint8_t* o = (uint8_t*)j->out + r0 * N + col;
        switch (mode) {
        case 0: gemm_panel(a, rows, K, j->lda, panel, nb, iv, buf + col, N, ncols, 0, plan, 0, 0, col); break;
        case 1: gemm_rq_1(a, rows, K, j->lda, panel, nb, iv, ncols, plan, o, N, col); break;
        case 3: gemm_rq_3(a, rows, K, j->lda, panel, nb, iv, ncols, plan, o, N, col); break;
        case 5: gemm_rq_5(a, rows, K, j->lda, panel, nb, iv, ncols, plan, o, N, col); break;
        case 7: gemm_rq_7(a, rows, K, j->lda, panel, nb, iv, ncols, plan, o, N, col); break;
        default: gemm_rq_8(a, rows, K, j->lda, panel, nb, iv, ncols, plan, o, N, col); break;
        }
    }
    if (!mode) epilogue(plan, buf, rows, j->out + r0 * N * plan->out_size);
    free(buf);
}

/* out[M, N] = requant(init + A[M, K] (uint8, row stride lda) @ W[K, N] (int8, packed)): requantized
 * in registers (plan mode != 0) or by the plan's epilogue on blocks of rows in cache. The blocks of
 * rows are independent tasks (pool.c): the same bits on any number of threads. */
int gemm_u8s8(const uint8_t* A, long M, long K, long lda, const int8_t* bp, long N, const int32_t* init,
              const rq_plan* plan, char* out) {
    /* rows per block: in registers, whole tiles of about 32 KiB of A (in cache across the panels);
     * else those of the epilogue's block of accumulators */
    long rb = plan->mode ? ((32768 / (K > 0 ? K : 1)) / MR + 1) * MR : block_rows(plan);
    block_job j = {A, M, K, lda, N, rb, (const void*)bp, init, plan, out, 0};
    /* a thread's wake-up costs about as much as a few hundred thousand multiply-adds: small products
     * stay on this thread */
    return run_blocks(&j, gemm_block, (double)M * (double)K * (double)N >= openqnn_parallel_macs);
}

/* ---- depthwise: dwwindow.h's window rows, 16 channels per vpdpbusd ----------------------------- */

/* 16 channels of 4 taps (16 bytes each) -> 64 bytes, channel-major (4 bytes per channel) */
static inline void interleave4(__m128i a, __m128i b, __m128i c, __m128i d, uint8_t* dst) {
#if defined(__AVX512VBMI__)
    const __m512i idx = _mm512_set_epi8(63, 47, 31, 15, 62, 46, 30, 14, 61, 45, 29, 13, 60, 44, 28, 12,
                                        59, 43, 27, 11, 58, 42, 26, 10, 57, 41, 25, 9, 56, 40, 24, 8,
                                        55, 39, 23, 7, 54, 38, 22, 6, 53, 37, 21, 5, 52, 36, 20, 4,
                                        51, 35, 19, 3, 50, 34, 18, 2, 49, 33, 17, 1, 48, 32, 16, 0);
    __m512i v = _mm512_inserti32x4(_mm512_castsi128_si512(a), b, 1);
    v = _mm512_inserti32x4(_mm512_inserti32x4(v, c, 2), d, 3);
    _mm512_storeu_si512((void*)dst, _mm512_permutexvar_epi8(idx, v));
#else
    __m128i l01 = _mm_unpacklo_epi8(a, b), h01 = _mm_unpackhi_epi8(a, b);
    __m128i l23 = _mm_unpacklo_epi8(c, d), h23 = _mm_unpackhi_epi8(c, d);
    _mm_storeu_si128((__m128i*)dst, _mm_unpacklo_epi16(l01, l23));
    _mm_storeu_si128((__m128i*)(dst + 16), _mm_unpackhi_epi16(l01, l23));
    _mm_storeu_si128((__m128i*)(dst + 32), _mm_unpacklo_epi16(h01, h23));
    _mm_storeu_si128((__m128i*)(dst + 48), _mm_unpackhi_epi16(h01, h23));
#endif
}

static inline __m128i dw_tail16(const uint8_t* p, long n) { /* n < 16 bytes, zeros after */
    return _mm_maskz_loadu_epi8((__mmask16)((1u << n) - 1), p);
}

#include "dwwindow.h"

/* One output row: src[i] the window row of kernel row i. KH, GROUPS: compile-time kernel rows and tap
 * groups (0: g's, at run time). RQ = 0: int32 accumulators to buf (ow x C) for the plan's epilogue;
 * else the plan's mode: requantized in registers to orow (ow x C uint8). */
static inline __attribute__((always_inline)) void dw_row(const dw_geo* g, const uint8_t* const* src,
                                                        const int8_t* wp, const int32_t* init, int32_t* buf,
                                                        uint8_t* orow, const rq_plan* p, const long KH,
                                                        const long GROUPS, const int RQ) {
    long C = g->c, kh = KH ? KH : g->kh, groups = GROUPS ? GROUPS : (g->kw + 3) / 4, chunks = (C + 15) / 16;
    long step = groups * chunks * 64; /* bytes from one output column to the next */
    for (long cb = 0; cb < chunks; ++cb) {
        long left = C - cb * 16, col = cb * 16;
        __mmask16 m = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
        __m512i iv = _mm512_maskz_loadu_epi32(m, init + col);
        rqi_c kq; /* mode 8: the requantization's constants of these channels, for every pixel of the row */
        if (RQ & 8) kq = rqi_load(p, col, m);
        long ox = 0;
        for (; ox + 8 <= g->ow; ox += 8) { /* 8 independent accumulators (vpdpbusd's latency) */
            __m512i a0 = iv, a1 = iv, a2 = iv, a3 = iv, a4 = iv, a5 = iv, a6 = iv, a7 = iv;
            for (long i = 0; i < kh; ++i)
                for (long gi = 0; gi < groups; ++gi) {
                    const uint8_t* q = src[i] + ((ox * groups + gi) * chunks + cb) * 64;
                    __m512i wv = _mm512_loadu_si512((const void*)(wp + ((i * groups + gi) * chunks + cb) * 64));
#define DWSTEP(u) a##u = _mm512_dpbusd_epi32(a##u, _mm512_loadu_si512((const void*)(q + u * step)), wv);
                    DWSTEP(0) DWSTEP(1) DWSTEP(2) DWSTEP(3) DWSTEP(4) DWSTEP(5) DWSTEP(6) DWSTEP(7)
#undef DWSTEP
                }
            if (RQ & 8) {
                uint8_t* o = orow + ox * C + col;
#define DWRQI(u) rqv_store(o + u * C, left, m, _mm512_max_epi32(rqi_apply(&kq, a##u), _mm512_setzero_si512()));
                DWRQI(0) DWRQI(1) DWRQI(2) DWRQI(3) DWRQI(4) DWRQI(5) DWRQI(6) DWRQI(7)
#undef DWRQI
            } else if (RQ) {
                uint8_t* o = orow + ox * C + col;
#define DWRQ(u) rq_tile_row(p, a##u, a##u, a##u, a##u, 1, o + u * C, col, left, RQ & 2, RQ & 4, RQ & 8);
                DWRQ(0) DWRQ(1) DWRQ(2) DWRQ(3) DWRQ(4) DWRQ(5) DWRQ(6) DWRQ(7)
#undef DWRQ
            } else {
                int32_t* o = buf + ox * C + col;
#define DWST(u) _mm512_mask_storeu_epi32(o + u * C, m, a##u);
                DWST(0) DWST(1) DWST(2) DWST(3) DWST(4) DWST(5) DWST(6) DWST(7)
#undef DWST
            }
        }
        for (; ox < g->ow; ++ox) {
            __m512i acc = iv;
            for (long i = 0; i < kh; ++i)
                for (long gi = 0; gi < groups; ++gi) {
                    __m512i xv = _mm512_loadu_si512((const void*)(src[i] + ((ox * groups + gi) * chunks + cb) * 64));
                    __m512i wv = _mm512_loadu_si512((const void*)(wp + ((i * groups + gi) * chunks + cb) * 64));
                    acc = _mm512_dpbusd_epi32(acc, xv, wv);
                }
            if (RQ & 8)
                rqv_store(orow + ox * C + col, left, m, _mm512_max_epi32(rqi_apply(&kq, acc), _mm512_setzero_si512()));
            else if (RQ)
                rq_tile_row(p, acc, acc, acc, acc, 1, orow + ox * C + col, col, left, RQ & 2, RQ & 4, RQ & 8);
            else
                _mm512_mask_storeu_epi32(buf + ox * C + col, m, acc);
        }
    }
}

#define DW_ROW(NAME, KH, GROUPS, RQ)                                                                          \
    static void NAME(const dw_geo* g, const uint8_t* const* src, const int8_t* wp, const int32_t* init,     \
                     int32_t* buf, uint8_t* orow, const rq_plan* p) {                                         \
        dw_row(g, src, wp, init, buf, orow, p, KH, GROUPS, RQ);                                               \
    }
/* the 3x3 kernel (one group of 4 taps per row) unrolled, and any kernel; per requantization mode */
DW_ROW(dw_row3_0, 3, 1, 0)
DW_ROW(dw_row3_1, 3, 1, 1)
DW_ROW(dw_row3_3, 3, 1, 3)
DW_ROW(dw_row3_5, 3, 1, 5)
DW_ROW(dw_row3_7, 3, 1, 7)
DW_ROW(dw_row3_8, 3, 1, 8)
DW_ROW(dw_rowk_0, 0, 0, 0)
DW_ROW(dw_rowk_1, 0, 0, 1)
DW_ROW(dw_rowk_3, 0, 0, 3)
DW_ROW(dw_rowk_5, 0, 0, 5)
DW_ROW(dw_rowk_7, 0, 0, 7)
DW_ROW(dw_rowk_8, 0, 0, 8)


static dw_row_fn dw_pick(long kh, long groups, long mode) {
    static const dw_row_fn rows3[9] = {dw_row3_0, dw_row3_1, 0, dw_row3_3, 0, dw_row3_5, 0, dw_row3_7, dw_row3_8};
    static const dw_row_fn rowsk[9] = {dw_rowk_0, dw_rowk_1, 0, dw_rowk_3, 0, dw_rowk_5, 0, dw_rowk_7, dw_rowk_8};
    return (kh == 3 && groups == 1 ? rows3 : rowsk)[mode & 15];
}

/* ---- NCHW -> NHWC of 3-channel uint8 images (a model's input transpose) ----------------------------
 * Per 64 pixels, three 64-byte outputs each gathered from the three planes by two byte permutes. */
void nchw3_to_nhwc_u8(const uint8_t* x, long n, long hw, uint8_t* out) {
    uint8_t iab[3][64], ic[3][64];
    __mmask64 mc[3] = {0, 0, 0};
    for (int q = 0; q < 3; ++q)
        for (int j = 0; j < 64; ++j) {
            int pos = 64 * q + j, pix = pos / 3, plane = pos % 3;
            iab[q][j] = (uint8_t)(plane == 0 ? pix : 64 + pix);
            ic[q][j] = (uint8_t)pix;
            if (plane == 2) mc[q] |= (__mmask64)1 << j;
        }
    __m512i vab[3], vc[3];
    for (int q = 0; q < 3; ++q) {
        vab[q] = _mm512_loadu_si512((const void*)iab[q]);
        vc[q] = _mm512_loadu_si512((const void*)ic[q]);
    }
    for (long b = 0; b < n; ++b) {
        const uint8_t *p0 = x + b * 3 * hw, *p1 = p0 + hw, *p2 = p1 + hw;
        uint8_t* o = out + b * 3 * hw;
        long p = 0;
#if defined(__AVX512VBMI__)
        for (; p + 64 <= hw; p += 64) {
            __m512i a = _mm512_loadu_si512((const void*)(p0 + p)), bb = _mm512_loadu_si512((const void*)(p1 + p));
            __m512i c = _mm512_loadu_si512((const void*)(p2 + p));
            for (int q = 0; q < 3; ++q) {
                __m512i t = _mm512_permutex2var_epi8(a, vab[q], bb);
                _mm512_storeu_si512((void*)(o + 3 * p + 64 * q), _mm512_mask_permutexvar_epi8(t, mc[q], vc[q], c));
            }
        }
#endif
        for (; p < hw; ++p) {
            o[3 * p] = p0[p];
            o[3 * p + 1] = p1[p];
            o[3 * p + 2] = p2[p];
        }
    }
}

#elif defined(__AVX2__)
/* ---- AVX2 without AVX-512: the same entry points -----------------------------------------------------
 * Without VNNI, exact with vpmaddwd: 
 * it multiplies int16 pairs and adds each pair into an int32 lane: with uint8 codes and int8
 * weights widened to int16, |a0 w0 + a1 w1| <= 2 * 255 * 128 never saturates (vpmaddubsw, which sums
 * u8 x s8 pairs into int16, would). Each product pass writes int32 accumulators; the plan's epilogue
 * requantizes them (this build has no in-register requantization: NativeRequant's mode is always 0
 * here, rqsimd.h being AVX-512 only). */
#include <immintrin.h>

/* With 256-bit VNNI (AVX-VNNI: Intel's client CPUs since Alder Lake, AMD's since Zen 5), the GEMM's products are
 * vpdpbusd's, as in the AVX-512 section but on 8 lanes: four u8 x s8 products summed into each int32 lane,
 * exact, twice vpmaddwd's products per instruction and no widening of A. The EVEX form of the same
 * instruction (AVX512-VNNI with AVX512-VL, no AVX512-BW: OPENQNN_MAX_ISA=avxvnni on an AVX-512 machine)
 * computes the same, so an AVX-512 machine runs and tests this path. The depthwise kernel stays vpmaddwd's. */
#if defined(__AVXVNNI__) || (defined(__AVX512VNNI__) && defined(__AVX512VL__))
#define INT8_VNNI256 1
#if defined(__AVXVNNI__)
#define DPBUSD256(acc, a, b) _mm256_dpbusd_avx_epi32(acc, a, b)
#else
#define DPBUSD256(acc, a, b) _mm256_dpbusd_epi32(acc, a, b)
#endif
#else
#define INT8_VNNI256 0
#endif

int openqnn_int8_available(void) { return 1; }
int openqnn_int8_isa(void) { return INT8_VNNI256 ? 3 : 1; }



/* acc += v in acc's register (GCC otherwise adds into v's and copies back, a move per product) */
static inline __attribute__((always_inline)) void acc_add(__m256i* acc, __m256i v) {
    __asm__("vpaddd %1, %0, %0" : "+x"(*acc) : "x"(v));
}

static inline __m256i tail_mask(long left) { /* lanes [0, left) of 8 */
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(left < 8 ? left : 8)), idx);
}

static inline __m256i load_acc(const int32_t* c, long left) {
    return left >= 8 ? _mm256_loadu_si256((const __m256i*)c) : _mm256_maskload_epi32(c, tail_mask(left));
}

static inline void store_acc(int32_t* c, long left, __m256i v) {
    if (left >= 8)
        _mm256_storeu_si256((__m256i*)c, v);
    else
        _mm256_maskstore_epi32(c, tail_mask(left), v);
}

/* requant.c's int32 QNN form (rqi_*, plan mode 8) on 8 lanes: its constants for columns col .. col + 7 (left
 * of them valid), loaded once for the pixels that share them, and the form, stored as 8 bytes clamped to
 * [0, 255] at o (the depthwise kernel's outputs, requantized in registers) */
typedef struct {
    __m256i lo, hi, base, s, m, c, d;
} rqi8_c;

static inline __attribute__((always_inline)) rqi8_c rqi8_load(const rq_plan* p, long col, long left) {
    rqi8_c k;
    k.lo = load_acc(p->lo + col, left);
    k.hi = load_acc(p->hi + col, left);
    k.base = load_acc((const int32_t*)(const void*)p->k0 + col, left);
    k.s = load_acc(p->shift + col, left);
    k.m = load_acc(p->madd + col, left);
    k.c = load_acc((const int32_t*)(const void*)p->sc + col, left);
    k.d = load_acc((const int32_t*)(const void*)p->nd + col, left);
    return k;
}

static inline __attribute__((always_inline)) void rqi8_store(const rqi8_c* k, __m256i x, long left, uint8_t* o) {
    x = _mm256_min_epi32(_mm256_max_epi32(x, k->lo), k->hi);
    x = _mm256_srav_epi32(_mm256_add_epi32(x, k->base), k->s);
    x = _mm256_srav_epi32(_mm256_add_epi32(_mm256_mullo_epi32(x, k->m), k->c), k->d);
    __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(x), _mm256_extracti128_si256(x, 1)); /* saturating: */
    __m128i b = _mm_packus_epi16(w, w);                                                     /* [0, 255] */
    if (left >= 8)
        _mm_storel_epi64((__m128i*)o, b);
    else {
        uint8_t t[16];
        _mm_storeu_si128((__m128i*)t, b);
        memcpy(o, t, (size_t)left);
    }
}


#define TN 2 /* blocks of 8 columns per panel (both builds) */

/* The AVX2 section's weight packing, for both builds: columns padded to multiples of 8 in panels of up to TN
 * blocks of 8; per panel, per group of G k (4: vpdpbusd's bytes; 2: vpmaddwd's int16 pairs, WIDE), a block's
 * 8 columns as G consecutive k each; zeros past K and N. */
static void pack_groups(const int8_t* w, long K, long N, long G, int wide, int8_t* out8) { /* w: [K, N] */
    int16_t* o16 = (int16_t*)(void*)out8;
    long kg = (K + G - 1) / G, nb8 = (N + 7) / 8, at = 0;
    for (long p0 = 0; p0 < nb8; p0 += TN) {
        long nb = nb8 - p0 < TN ? nb8 - p0 : TN;
        for (long q = 0; q < kg; ++q)
            for (long j = 0; j < nb; ++j)
                for (long c = 0; c < 8; ++c)
                    for (long e = 0; e < G; ++e, ++at) {
                        long kk = G * q + e, col = (p0 + j) * 8 + c;
                        int8_t v = (kk < K && col < N) ? w[kk * N + col] : 0;
                        if (wide)
                            o16[at] = v;
                        else
                            out8[at] = v;
                    }
    }
}

#if INT8_VNNI256
/* ---- GEMM with 256-bit VNNI --------------------------------------------------------------------
 * Packed weights (gemm_pack_size: bytes): columns padded to multiples of 8, taken in panels of up to TN
 * blocks of 8; per panel, per group of 4 k: nb * 32 bytes, block j holding columns 8j..8j+7 as 4
 * consecutive k bytes each (vpdpbusd's layout). K is padded to a multiple of 4. Per block of rows, A is
 * copied once into rows of K padded to a multiple of 4 with zeros (the tiles read 4 bytes at a time, no
 * row end to guard); the reduction runs in chunks of KC, every row tile of a chunk adding to the block's
 * int32 accumulators (in cache), which the epilogue then requantizes. */

/* Tiles of TM rows x TN blocks of 8 columns: 12 accumulators, 2 weight registers and a broadcast (15 of
 * the 16 registers AVX-VNNI has: vpdpbusd accumulates in place, so nothing more is live) */
#define TM 6
#define KC 1024 /* k per chunk: 16 KiB of a panel's weights */

long gemm_pack_size(long K, long N) { return ((K + 3) / 4) * 4 * ((N + 7) / 8) * 8; }

void gemm_pack(const int8_t* w, long K, long N, int8_t* out) { pack_groups(w, K, N, 4, 0, out); }

/* One tile: MRC (<= TM, at compile time) rows of A (stride lda bytes, a multiple of 4) x NB blocks of 8
 * columns, over nq groups of 4 k from the packed panel bq; accumulators start from iv (first chunk) or c,
 * and go to c. */
static inline __attribute__((always_inline)) void gemm_tile(const uint8_t* a, long lda, const int MRC, long nq,
                                                           const int8_t* bq, const int NB, int first,
                                                           const __m256i* iv, int32_t* c, long ldc, long ncols) {
    __m256i acc[TM][TN];
    const uint8_t* r[TM];
    for (int i = 0; i < MRC; ++i) {
        r[i] = a + i * lda;
        for (int j = 0; j < NB; ++j) acc[i][j] = first ? iv[j] : load_acc(c + i * ldc + 8 * j, ncols - 8 * j);
    }
    for (long q = 0; q < nq; ++q, bq += NB * 32) {
        __m256i b0 = _mm256_loadu_si256((const __m256i*)bq);
        __m256i b1 = NB > 1 ? _mm256_loadu_si256((const __m256i*)(bq + 32)) : b0;
        for (int i = 0; i < MRC; ++i) {
            int32_t v;
            memcpy(&v, r[i] + 4 * q, 4);
            __m256i av = _mm256_set1_epi32(v);
            acc[i][0] = DPBUSD256(acc[i][0], av, b0);
            if (NB > 1) acc[i][1] = DPBUSD256(acc[i][1], av, b1);
        }
    }
    for (int i = 0; i < MRC; ++i)
        for (int j = 0; j < NB; ++j) store_acc(c + i * ldc + 8 * j, ncols - 8 * j, acc[i][j]);
}

/* the tiles of one chunk of k and one panel over rows rows (TM at a time, the last with fewer) */
static inline __attribute__((always_inline)) void gemm_rows(const uint8_t* a, long rows, long lda, long nq,
                                                           const int8_t* bq, const int NB, int first,
                                                           const __m256i* iv, int32_t* c, long ldc, long ncols) {
    long i = 0;
    for (; i + TM <= rows; i += TM) gemm_tile(a + i * lda, lda, TM, nq, bq, NB, first, iv, c + i * ldc, ldc, ncols);
    switch (rows - i) {
    case 5: gemm_tile(a + i * lda, lda, 5, nq, bq, NB, first, iv, c + i * ldc, ldc, ncols); break;
    case 4: gemm_tile(a + i * lda, lda, 4, nq, bq, NB, first, iv, c + i * ldc, ldc, ncols); break;
    case 3: gemm_tile(a + i * lda, lda, 3, nq, bq, NB, first, iv, c + i * ldc, ldc, ncols); break;
    case 2: gemm_tile(a + i * lda, lda, 2, nq, bq, NB, first, iv, c + i * ldc, ldc, ncols); break;
    case 1: gemm_tile(a + i * lda, lda, 1, nq, bq, NB, first, iv, c + i * ldc, ldc, ncols); break;
    default: break;
    }
}

#define GEMM_ROWS(NAME, NB)                                                                                     \
    static void NAME(const uint8_t* a, long rows, long lda, long nq, const int8_t* bq, int first,               \
                     const __m256i* iv, int32_t* c, long ldc, long ncols) {                                     \
        gemm_rows(a, rows, lda, nq, bq, NB, first, iv, c, ldc, ncols);                                         \
    }
GEMM_ROWS(gemm_rows_1, 1)
GEMM_ROWS(gemm_rows_2, 2) /* TN = 2 */

/* rows [r0, r0 + rb) of one GEMM: A copied into rows padded to 4k, every chunk of k and panel, then the
 * epilogue */
static void gemm_block(void* arg, long t) {
    block_job* j = (block_job*)arg;
    long N = j->N, K = j->K, kq = (K + 3) / 4, lda = 4 * kq, nb8 = (N + 7) / 8, r0, rows;
    int32_t* buf;
    uint8_t* a4 = (uint8_t*)block_scratch(j, t, (size_t)lda, &r0, &rows, &buf);
    if (!a4) return;
    for (long r = 0; r < rows; ++r) {
        memcpy(a4 + r * lda, j->A + (r0 + r) * j->lda, (size_t)K);
        memset(a4 + r * lda + K, 0, (size_t)(lda - K));
    }
    for (long q0 = 0; q0 < kq; q0 += KC / 4) {
        long nq = kq - q0 < KC / 4 ? kq - q0 : KC / 4;
        for (long p0 = 0; p0 < nb8; p0 += TN) {
            int nb = nb8 - p0 < TN ? (int)(nb8 - p0) : TN;
            long col = p0 * 8, ncols = N - col;
            const int8_t* bq = (const int8_t*)j->bp + p0 * 32 * kq + q0 * nb * 32;
            __m256i iv[TN];
            for (int b = 0; b < nb; ++b) iv[b] = _mm256_loadu_si256((const __m256i*)(j->init + col + 8 * b));
            (nb == 2 ? gemm_rows_2 : gemm_rows_1)(a4 + 4 * q0, rows, lda, nq, bq, q0 == 0, iv, buf + col, N, ncols);
        }
    }
    epilogue(j->plan, buf, rows, j->out + r0 * N * j->plan->out_size);
}

#else /* vpmaddwd */

/* ---- GEMM ---------------------------------------------------------------------------------------
 * Packed weights (gemm_pack_size: bytes): columns padded to multiples of 8, taken in panels of up to
 * TN blocks of 8; per panel, per pair of k: nb * 16 int16, block j holding columns 8j..8j+7 as
 * the pair (w[k][col], w[k + 1][col]) each (vpmaddwd's layout). K is padded to a multiple of 2.
 * Per block of rows, A is widened to int16 once (rows of K padded to even); the reduction runs in
 * chunks of KC (its panel of weights in L1), every row tile of a chunk adding to the accumulators
 * of the block (int32, in cache), which the epilogue then requantizes. */

/* Tiles of TM rows x TN blocks of 8 columns: 8 accumulators, 4 broadcasts and 2 weight registers of
 * the 16 (measured on Zen 4: 3 x 4, 2 x 4, 3 x 3 and 6 x 2 were slower or no faster; GCC spills 6 x 2's) */
#define TM 4
#define KC 512 /* k per chunk: 16 KiB of a panel's weights */

long gemm_pack_size(long K, long N) { return ((K + 1) / 2) * 2 * ((N + 7) / 8) * 8 * 2; }

void gemm_pack(const int8_t* w, long K, long N, int8_t* out8) { pack_groups(w, K, N, 2, 1, out8); }

/* One tile: MRC (<= TM, at compile time: a short last tile computes only its rows) rows of widened A
 * (stride lda int16) x NB blocks of 8 columns, over nq pairs of k from the packed panel bq; accumulators
 * start from iv (first chunk) or c, and go to c. (Requantizing the last chunk's accumulators in registers
 * here, as rqi8_store does for the depthwise kernel, measured no faster than the epilogue pass on Zen 4,
 * and slower for K <= 32: the epilogue's loop packs 32 outputs at a time.) */
static inline __attribute__((always_inline)) void gemm_tile(const int16_t* a, long lda, const int MRC, long nq,
                                                           const int16_t* bq, const int NB, int first,
                                                           const __m256i* iv, int32_t* c, long ldc, long ncols) {
    __m256i acc[TM][TN];
    const int16_t* r[TM];
    for (int i = 0; i < MRC; ++i) {
        r[i] = a + i * lda;
        for (int j = 0; j < NB; ++j) acc[i][j] = first ? iv[j] : load_acc(c + i * ldc + 8 * j, ncols - 8 * j);
    }
    for (long q = 0; q < nq; ++q, bq += NB * 16) {
        for (int i = 0; i < MRC; ++i) {
            int32_t v;
            memcpy(&v, r[i] + 2 * q, 4);
            __m256i av = _mm256_set1_epi32(v);
            for (int j = 0; j < NB; ++j)
                acc_add(&acc[i][j], _mm256_madd_epi16(av, _mm256_loadu_si256((const __m256i*)(bq + 16 * j))));
        }
    }
    for (int i = 0; i < MRC; ++i)
        for (int j = 0; j < NB; ++j) store_acc(c + i * ldc + 8 * j, ncols - 8 * j, acc[i][j]);
}

/* the tiles of one chunk of k and one panel over rows rows (TM at a time, the last with fewer) */
static inline __attribute__((always_inline)) void gemm_rows(const int16_t* aw, long rows, long lda, long nq,
                                                           const int16_t* bq, const int NB, int first,
                                                           const __m256i* iv, int32_t* c, long ldc, long ncols) {
    long i = 0;
    for (; i + TM <= rows; i += TM)
        gemm_tile(aw + i * lda, lda, TM, nq, bq, NB, first, iv, c + i * ldc, ldc, ncols);
    switch (rows - i) {
    case 3: gemm_tile(aw + i * lda, lda, 3, nq, bq, NB, first, iv, c + i * ldc, ldc, ncols); break;
    case 2: gemm_tile(aw + i * lda, lda, 2, nq, bq, NB, first, iv, c + i * ldc, ldc, ncols); break;
    case 1: gemm_tile(aw + i * lda, lda, 1, nq, bq, NB, first, iv, c + i * ldc, ldc, ncols); break;
    default: break;
    }
}

#define GEMM_ROWS(NAME, NB)                                                                                     \
    static void NAME(const int16_t* aw, long rows, long lda, long nq, const int16_t* bq, int first,             \
                     const __m256i* iv, int32_t* c, long ldc, long ncols) {                                     \
        gemm_rows(aw, rows, lda, nq, bq, NB, first, iv, c, ldc, ncols);                                        \
    }
GEMM_ROWS(gemm_rows_1, 1)
GEMM_ROWS(gemm_rows_2, 2) /* TN = 2 */

/* rows [r0, r0 + rb) of one GEMM: A widened, every chunk of k and panel, then the epilogue */
static void gemm_block(void* arg, long t) {
    block_job* j = (block_job*)arg;
    long N = j->N, K = j->K, kp = (K + 1) / 2, lda = 2 * kp, nb8 = (N + 7) / 8, r0, rows;
    int32_t* buf;
    int16_t* aw = (int16_t*)(void*)block_scratch(j, t, (size_t)lda * sizeof(int16_t), &r0, &rows, &buf);
    if (!aw) return;
    for (long r = 0; r < rows; ++r) { /* uint8 -> int16, an odd K padded with a zero */
        const uint8_t* src = j->A + (r0 + r) * j->lda;
        int16_t* dst = aw + r * lda;
        long k = 0;
        for (; k + 16 <= K; k += 16)
            _mm256_storeu_si256((__m256i*)(dst + k), _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i*)(src + k))));
        for (; k < K; ++k) dst[k] = src[k];
        if (K % 2) dst[K] = 0;
    }
    for (long q0 = 0; q0 < kp; q0 += KC / 2) {
        long nq = kp - q0 < KC / 2 ? kp - q0 : KC / 2;
        for (long p0 = 0; p0 < nb8; p0 += TN) {
            int nb = nb8 - p0 < TN ? (int)(nb8 - p0) : TN;
            long col = p0 * 8, ncols = N - col;
            const int16_t* bq = (const int16_t*)j->bp + p0 * 16 * kp + q0 * nb * 16;
            __m256i iv[TN];
            for (int b = 0; b < nb; ++b) iv[b] = _mm256_loadu_si256((const __m256i*)(j->init + col + 8 * b));
            (nb == 2 ? gemm_rows_2 : gemm_rows_1)(aw + 2 * q0, rows, lda, nq, bq, q0 == 0, iv, buf + col, N, ncols);
        }
    }
    epilogue(j->plan, buf, rows, j->out + r0 * N * j->plan->out_size);
}

/* out[M, N] = requant(init + A[M, K] (uint8, row stride lda) @ W[K, N] (int8, packed)), the plan's
 * epilogue on blocks of rows in cache. The blocks of rows are independent tasks (pool.c): the same
 * bits on any number of threads. */
#endif /* INT8_VNNI256 */

int gemm_u8s8(const uint8_t* A, long M, long K, long lda, const int8_t* bp, long N, const int32_t* init,
              const rq_plan* plan, char* out) {
    int pooled;
    long rb = pooled_rows(plan, M, K, N, &pooled);
    long np8 = (N + 7) / 8 * 8;
    int32_t* iv = (int32_t*)calloc((size_t)np8, sizeof(int32_t));
    if (!iv) return -1;
    memcpy(iv, init, (size_t)N * sizeof(int32_t));
    block_job j = {A, M, K, lda, N, rb, (const void*)bp, iv, plan, out, 0};
    int rc = run_blocks(&j, gemm_block, pooled);
    free(iv);
    return rc;
}

#if INT8_VNNI256
/* ---- depthwise with 256-bit VNNI: dwwindow.h's window rows, 8 channels per vpdpbusd (a 3x3 kernel: 3
 * per pixel and 8 channels instead of vpmaddwd's 9) --------------------------------------------- */

/* 16 channels of 4 taps (16 bytes each) -> 64 bytes, channel-major (4 bytes per channel) */
static inline void interleave4(__m128i a, __m128i b, __m128i c, __m128i d, uint8_t* dst) {
    __m128i l01 = _mm_unpacklo_epi8(a, b), h01 = _mm_unpackhi_epi8(a, b);
    __m128i l23 = _mm_unpacklo_epi8(c, d), h23 = _mm_unpackhi_epi8(c, d);
    _mm_storeu_si128((__m128i*)dst, _mm_unpacklo_epi16(l01, l23));
    _mm_storeu_si128((__m128i*)(dst + 16), _mm_unpackhi_epi16(l01, l23));
    _mm_storeu_si128((__m128i*)(dst + 32), _mm_unpacklo_epi16(h01, h23));
    _mm_storeu_si128((__m128i*)(dst + 48), _mm_unpackhi_epi16(h01, h23));
}

static inline __m128i dw_tail16(const uint8_t* p, long n) { /* n < 16 bytes, zeros after */
    uint8_t t[16] = {0};
    memcpy(t, p, (size_t)n);
    return _mm_loadu_si128((const __m128i*)t);
}

#include "dwwindow.h"

/* One output row: src[i] the window row of kernel row i. KH, GROUPS: compile-time kernel rows and tap
 * groups (0: g's, at run time). RQ = 0: int32 accumulators to buf (ow x C) for the plan's epilogue;
 * RQ = 8 (the int32 QNN form): requantized in registers to orow (ow x C uint8), 4 pixels at a time (the
 * form's 7 constant registers stay loaded), else 8 (vpdpbusd's latency). */
static inline __attribute__((always_inline)) void dw_row(const dw_geo* g, const uint8_t* const* src,
                                                        const int8_t* wp, const int32_t* init, int32_t* buf,
                                                        uint8_t* orow, const rq_plan* p, const long KH,
                                                        const long GROUPS, const int RQ) {
    enum { U = 8 };
    const int UN = RQ ? 4 : 8;
    long C = g->c, kh = KH ? KH : g->kh, groups = GROUPS ? GROUPS : (g->kw + 3) / 4, chunks = (C + 15) / 16;
    long step = groups * chunks * 64; /* bytes from one output column to the next */
    for (long col = 0; col < C; col += 8) {
        long left = C - col, cb = col / 16, half = (col % 16) * 4; /* bytes into the chunk's 64 */
        __m256i iv = _mm256_loadu_si256((const __m256i*)(init + col));
        rqi8_c kq; /* RQ: the requantization's constants of these channels, for every pixel of the row */
        if (RQ) kq = rqi8_load(p, col, left);
        long ox = 0;
        for (; ox + UN <= g->ow; ox += UN) {
            __m256i a[U];
            for (int u = 0; u < UN; ++u) a[u] = iv;
            for (long i = 0; i < kh; ++i)
                for (long gi = 0; gi < groups; ++gi) {
                    const uint8_t* q = src[i] + ((ox * groups + gi) * chunks + cb) * 64 + half;
                    __m256i wv = _mm256_loadu_si256((const __m256i*)(wp + ((i * groups + gi) * chunks + cb) * 64 + half));
                    for (int u = 0; u < UN; ++u)
                        a[u] = DPBUSD256(a[u], _mm256_loadu_si256((const __m256i*)(q + u * step)), wv);
                }
            for (int u = 0; u < UN; ++u) {
                if (RQ)
                    rqi8_store(&kq, a[u], left, orow + (ox + u) * C + col);
                else
                    store_acc(buf + (ox + u) * C + col, left, a[u]);
            }
        }
        for (; ox < g->ow; ++ox) {
            __m256i acc = iv;
            for (long i = 0; i < kh; ++i)
                for (long gi = 0; gi < groups; ++gi) {
                    __m256i xv = _mm256_loadu_si256((const __m256i*)(src[i] + ((ox * groups + gi) * chunks + cb) * 64 + half));
                    __m256i wv = _mm256_loadu_si256((const __m256i*)(wp + ((i * groups + gi) * chunks + cb) * 64 + half));
                    acc = DPBUSD256(acc, xv, wv);
                }
            if (RQ)
                rqi8_store(&kq, acc, left, orow + ox * C + col);
            else
                store_acc(buf + ox * C + col, left, acc);
        }
    }
}

#define DW_ROW(NAME, KH, GROUPS, RQ)                                                                          \
    static void NAME(const dw_geo* g, const uint8_t* const* src, const int8_t* wp, const int32_t* init,     \
                     int32_t* buf, uint8_t* orow, const rq_plan* p) {                                         \
        dw_row(g, src, wp, init, buf, orow, p, KH, GROUPS, RQ);                                               \
    }
/* the 3x3 kernel (one group of 4 taps per row) unrolled, and any kernel; the epilogue pass or mode 8 */
DW_ROW(dw_row3_0, 3, 1, 0)
DW_ROW(dw_row3_8, 3, 1, 8)
DW_ROW(dw_rowk_0, 0, 0, 0)
DW_ROW(dw_rowk_8, 0, 0, 8)


static dw_row_fn dw_pick(long kh, long groups, long mode) { /* (this build's modes: 0, or 8) */
    return kh == 3 && groups == 1 ? (mode == 8 ? dw_row3_8 : dw_row3_0) : (mode == 8 ? dw_rowk_8 : dw_rowk_0);
}

#else /* vpmaddwd */

/* ---- depthwise ----------------------------------------------------------------------------------
 * Per input row a padded row is kept (its channels padded to Cp, a multiple of 8; columns outside
 * the input hold the zero point), and the rows one output row spans are reused by the next. Each tap
 * of 8 channels is one vpmaddwd of the codes zero-extended to int32 lanes (high int16 zero) with the
 * weights as int32 lanes (high int16 zero): one exact product per lane.
 * Weights (dw_pack): int32 [kh][kw][Cp], w as the low int16. */

long dw_pack_size(long kh, long kw, long C) { return kh * kw * ((C + 7) / 8) * 8 * 4; }

void dw_pack(const int8_t* w, long kh, long kw, long C, int8_t* out8) { /* w: [kh, kw, C] */
    int32_t* out = (int32_t*)(void*)out8;
    long cp = (C + 7) / 8 * 8;
    for (long t = 0; t < kh * kw; ++t)
        for (long c = 0; c < cp; ++c) *out++ = c < C ? (int32_t)(uint16_t)(int16_t)w[t * C + c] : 0;
}


typedef struct {
    const uint8_t* x;
    const dw_geo* g;
    const int32_t* wp;
    const int32_t* init; /* padded to Cp */
    const rq_plan* plan;
    char* out;
    long chunk; /* output rows (over images and rows) per task */
    volatile int failed;
} dw_job;

static inline __m256i dw_x8(const uint8_t* p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)p)); }

/* one output row into buf (ow x C int32), or (RQ: plan mode 8) requantized in registers into orow (ow x C
 * uint8): src[i] the padded row of kernel row i (Cp bytes per column) */
#define DW_OUT(u, acc)                                                    \
    if (RQ)                                                               \
        rqi8_store(&kq, acc, left, orow + (ox + u) * C + cb);             \
    else                                                                  \
        store_acc(buf + (ox + u) * C + cb, left, acc);
static inline __attribute__((always_inline)) void dw_row(const dw_geo* g, long cp, const uint8_t* const* src,
                                                        const int32_t* wp, const int32_t* init, int32_t* buf,
                                                        uint8_t* orow, const rq_plan* p, const int RQ) {
    long C = g->c, kh = g->kh, kw = g->kw, ow = g->ow, xs = g->sw * cp, ts = g->dw * cp;
    for (long cb = 0; cb < cp; cb += 8) {
        long left = C - cb;
        __m256i iv = _mm256_loadu_si256((const __m256i*)(init + cb));
        rqi8_c kq; /* RQ: the requantization's constants of these channels, for every pixel of the row */
        if (RQ) kq = rqi8_load(p, cb, left);
        long ox = 0;
        for (; ox + 4 <= ow; ox += 4) { /* 4 independent accumulators, each weight loaded once */
            __m256i a0 = iv, a1 = iv, a2 = iv, a3 = iv;
            for (long i = 0; i < kh; ++i) {
                const uint8_t* q = src[i] + ox * xs + cb;
                const int32_t* wr = wp + i * kw * cp + cb;
                for (long t = 0; t < kw; ++t, q += ts, wr += cp) {
                    __m256i wv = _mm256_loadu_si256((const __m256i*)wr);
                    a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(dw_x8(q), wv));
                    a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(dw_x8(q + xs), wv));
                    a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(dw_x8(q + 2 * xs), wv));
                    a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(dw_x8(q + 3 * xs), wv));
                }
            }
            DW_OUT(0, a0)
            DW_OUT(1, a1)
            DW_OUT(2, a2)
            DW_OUT(3, a3)
        }
        for (; ox < ow; ++ox) {
            __m256i a0 = iv;
            for (long i = 0; i < kh; ++i) {
                const uint8_t* q = src[i] + ox * xs + cb;
                const int32_t* wr = wp + i * kw * cp + cb;
                for (long t = 0; t < kw; ++t, q += ts, wr += cp)
                    a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(dw_x8(q), _mm256_loadu_si256((const __m256i*)wr)));
            }
            DW_OUT(0, a0)
        }
    }
}
#undef DW_OUT

static void dw_row_epi(const dw_geo* g, long cp, const uint8_t* const* src, const int32_t* wp, const int32_t* init,
                       int32_t* buf, uint8_t* orow, const rq_plan* p) {
    dw_row(g, cp, src, wp, init, buf, orow, p, 0);
}

static void dw_row_rq(const dw_geo* g, long cp, const uint8_t* const* src, const int32_t* wp, const int32_t* init,
                      int32_t* buf, uint8_t* orow, const rq_plan* p) {
    dw_row(g, cp, src, wp, init, buf, orow, p, 1);
}

/* output rows [t * chunk, (t + 1) * chunk) of all images' n * oh, with buffers of its own */
static void dw_rows(void* arg, long t) {
    dw_job* j = (dw_job*)arg;
    const dw_geo* g = j->g;
    long C = g->c, cp = (C + 7) / 8 * 8, kh = g->kh;
    long wpad = (g->ow - 1) * g->sw + (g->kw - 1) * g->dw + 1; /* the columns the kernel reaches */
    long rowbytes = wpad * cp + 8;
    long slots = (kh - 1) * g->dh + 1;
    long first = t * j->chunk, last = first + j->chunk < g->n * g->oh ? first + j->chunk : g->n * g->oh;
    long c0 = g->pl, c1 = g->pl + g->w < wpad ? g->pl + g->w : wpad; /* padded columns of input columns */
    size_t rbytes = ((size_t)((slots + 1) * rowbytes) + 63) / 64 * 64;
    char* mem = (char*)thread_scratch(rbytes + (size_t)(g->ow * C) * sizeof(int32_t));
    long* tags = (long*)malloc((size_t)slots * sizeof(long));
    const uint8_t** src = (const uint8_t**)malloc((size_t)kh * sizeof(*src));
    if (!mem || !tags || !src) {
        free(tags); free(src);
        j->failed = 1;
        return;
    }
    uint8_t* rows = (uint8_t*)mem;
    int32_t* buf = (int32_t*)(void*)(mem + rbytes);
    memset(rows, (int)g->zx, (size_t)((slots + 1) * rowbytes)); /* padding columns and channels stay zx */
    uint8_t* padrow = rows + slots * rowbytes;
    long image = -1;
    for (long r = first; r < last; ++r) {
        long b = r / g->oh, oy = r % g->oh;
        if (b != image) {
            for (long s = 0; s < slots; ++s) tags[s] = -1;
            image = b;
        }
        for (long i = 0; i < kh; ++i) {
            long iy = oy * g->sh - g->pt + i * g->dh;
            if (iy < 0 || iy >= g->h) {
                src[i] = padrow;
                continue;
            }
            long s = iy % slots;
            uint8_t* dst = rows + s * rowbytes;
            if (tags[s] != iy) {
                const uint8_t* in = j->x + (b * g->h + iy) * g->w * C;
                if (cp == C) {
                    if (c1 > c0) memcpy(dst + c0 * cp, in, (size_t)((c1 - c0) * C));
                } else {
                    for (long col = c0; col < c1; ++col) memcpy(dst + col * cp, in + (col - c0) * C, (size_t)C);
                }
                tags[s] = iy;
            }
            src[i] = dst;
        }
        char* orow = j->out + r * g->ow * C * j->plan->out_size;
        if (j->plan->mode == 8) {
            dw_row_rq(g, cp, src, j->wp, j->init, buf, (uint8_t*)orow, j->plan);
        } else {
            dw_row_epi(g, cp, src, j->wp, j->init, buf, (uint8_t*)orow, j->plan);
            epilogue(j->plan, buf, g->ow, orow);
        }
    }
    free(tags); free(src);
}

/* The output rows go to the pool's threads in contiguous runs (each keeps its rows): the same bits
 * on any number of threads. */
int dwconv_u8s8(const uint8_t* x, const dw_geo* g, const int8_t* wp, const int32_t* init, const rq_plan* plan,
                char* out) {
    long total = g->n * g->oh, cp = (g->c + 7) / 8 * 8;
    double macs = (double)total * (double)g->ow * (double)g->c * (double)(g->kh * g->kw);
    int threads = openqnn_pool_threads();
    long tasks = macs >= openqnn_parallel_macs / 4 && threads > 1 ? (threads < total ? threads : total) : 1;
    int32_t* iv = (int32_t*)calloc((size_t)cp, sizeof(int32_t));
    if (!iv) return -1;
    memcpy(iv, init, (size_t)g->c * sizeof(int32_t));
    dw_job j = {x, g, (const int32_t*)(const void*)wp, iv, plan, out, (total + tasks - 1) / (tasks > 0 ? tasks : 1), 0};
    if (tasks > 1)
        openqnn_parallel(dw_rows, &j, (total + j.chunk - 1) / j.chunk);
    else if (total)
        dw_rows(&j, 0);
    free(iv);
    return j.failed ? -1 : 0;
}

#endif /* INT8_VNNI256 */

/* ---- NCHW -> NHWC of 3-channel uint8 images (a model's input transpose) ---------------------------- */
void nchw3_to_nhwc_u8(const uint8_t* x, long n, long hw, uint8_t* out) {
    for (long b = 0; b < n; ++b) {
        const uint8_t *p0 = x + b * 3 * hw, *p1 = p0 + hw, *p2 = p1 + hw;
        uint8_t* o = out + b * 3 * hw;
        for (long p = 0; p < hw; ++p) {
            o[3 * p] = p0[p];
            o[3 * p + 1] = p1[p];
            o[3 * p + 2] = p2[p];
        }
    }
}

#elif defined(__aarch64__) && defined(__ARM_FEATURE_DOTPROD)
/* ---- aarch64 with the dot product instructions (ARMv8.2 dotprod: Cortex-A55/A76 and later, Neoverse, Apple) --
 * The same entry points. sdot sums four s8 x s8 products into each int32 lane, exact; the codes are made
 * signed as q - 128 (an exclusive or of the top bit) when a block of rows is copied into rows of K padded to
 * a multiple of 4, and 128 * sum(w) per column, kept beside the packed weights, is added back to the
 * accumulator's start, so the accumulator is the same sum(q * w) + init as on x86. Each product pass writes
 * int32 accumulators, which the plan's epilogue (requant.c) requantizes. The depthwise convolution is plain
 * C over padded rows (the compiler vectorizes its channel loop). */
#include <arm_neon.h>

int openqnn_int8_available(void) { return 1; }
int openqnn_int8_isa(void) { return 4; }

/* ---- GEMM ---------------------------------------------------------------------------------------
 * Packed weights (gemm_pack_size: bytes): columns padded to multiples of 16, taken in panels of 16; per
 * panel, per group of 4 k: 64 bytes, 4 blocks of 4 columns, each column's 4 consecutive k bytes (sdot's
 * layout); then 128 * sum_k w[k][col] per (padded) column as int32. K is padded to a multiple of 4. */

#define TM 4
#define KC 1024 /* k per chunk */

long gemm_pack_size(long K, long N) { return ((K + 3) / 4) * 4 * ((N + 15) / 16) * 16 + ((N + 15) / 16) * 16 * 4; }

void gemm_pack(const int8_t* w, long K, long N, int8_t* out) { /* w: [K, N] row-major */
    long kq = (K + 3) / 4, np = (N + 15) / 16;
    int8_t* o = out;
    for (long p0 = 0; p0 < np; ++p0)
        for (long q = 0; q < kq; ++q)
            for (long c = 0; c < 16; ++c)
                for (long e = 0; e < 4; ++e) {
                    long kk = 4 * q + e, col = p0 * 16 + c;
                    *o++ = (kk < K && col < N) ? w[kk * N + col] : 0;
                }
    int32_t* sums = (int32_t*)(void*)(out + kq * 4 * np * 16);
    for (long col = 0; col < np * 16; ++col) {
        int32_t t = 0;
        for (long kk = 0; kk < K && col < N; ++kk) t += w[kk * N + col];
        sums[col] = 128 * t;
    }
}


/* MRC (<= TM) rows of signed codes (stride lda, a multiple of 4) x 16 columns over nq groups of 4 k from the
 * packed panel bq; accumulators start from iv (first chunk) or c, and go to c (ncols of them valid) */
static inline __attribute__((always_inline)) void gemm_tile(const int8_t* a, long lda, const int MRC, long nq,
                                                           const int8_t* bq, int first, const int32_t* iv,
                                                           int32_t* c, long ldc, long ncols) {
    int32x4_t acc[TM][4];
    int32_t tmp[16];
    for (int i = 0; i < MRC; ++i) {
        const int32_t* src = iv;
        if (!first) {
            for (int j = 0; j < 16; ++j) tmp[j] = j < ncols ? c[i * ldc + j] : 0;
            src = tmp;
        }
        for (int j = 0; j < 4; ++j) acc[i][j] = vld1q_s32(src + 4 * j);
    }
    for (long q = 0; q < nq; ++q, bq += 64) {
        int8x16_t b0 = vld1q_s8(bq), b1 = vld1q_s8(bq + 16), b2 = vld1q_s8(bq + 32), b3 = vld1q_s8(bq + 48);
        for (int i = 0; i < MRC; ++i) {
            int32_t v;
            memcpy(&v, a + i * lda + 4 * q, 4);
            int8x16_t av = vreinterpretq_s8_s32(vdupq_n_s32(v));
            acc[i][0] = vdotq_s32(acc[i][0], b0, av);
            acc[i][1] = vdotq_s32(acc[i][1], b1, av);
            acc[i][2] = vdotq_s32(acc[i][2], b2, av);
            acc[i][3] = vdotq_s32(acc[i][3], b3, av);
        }
    }
    for (int i = 0; i < MRC; ++i) {
        for (int j = 0; j < 4; ++j) vst1q_s32(tmp + 4 * j, acc[i][j]);
        memcpy(c + i * ldc, tmp, (size_t)(ncols < 16 ? ncols : 16) * sizeof(int32_t));
    }
}

/* rows [r0, r0 + rb) of one GEMM: A copied as signed codes into rows padded to 4k, every chunk and panel,
 * then the epilogue (init: + 128 * sum(w), padded to a multiple of 16 columns) */
static void gemm_block(void* arg, long t) {
    block_job* j = (block_job*)arg;
    long N = j->N, K = j->K, kq = (K + 3) / 4, lda = 4 * kq, np = (N + 15) / 16, r0, rows;
    int32_t* buf;
    int8_t* a4 = (int8_t*)block_scratch(j, t, (size_t)lda, &r0, &rows, &buf);
    if (!a4) return;
    for (long r = 0; r < rows; ++r) {
        const uint8_t* src = j->A + (r0 + r) * j->lda;
        int8_t* dst = a4 + r * lda;
        long k = 0;
        for (; k + 16 <= K; k += 16)
            vst1q_s8(dst + k, vreinterpretq_s8_u8(veorq_u8(vld1q_u8(src + k), vdupq_n_u8(0x80))));
        for (; k < K; ++k) dst[k] = (int8_t)(src[k] ^ 0x80);
        for (; k < lda; ++k) dst[k] = 0;
    }
    for (long q0 = 0; q0 < kq; q0 += KC / 4) {
        long nq = kq - q0 < KC / 4 ? kq - q0 : KC / 4;
        for (long p0 = 0; p0 < np; ++p0) {
            long col = p0 * 16, ncols = N - col;
            const int8_t* bq = (const int8_t*)j->bp + p0 * 64 * kq + q0 * 64;
            long i = 0;
            for (; i + TM <= rows; i += TM)
                gemm_tile(a4 + i * lda + 4 * q0, lda, TM, nq, bq, q0 == 0, j->init + col, buf + i * N + col, N, ncols);
            switch (rows - i) {
            case 3: gemm_tile(a4 + i * lda + 4 * q0, lda, 3, nq, bq, q0 == 0, j->init + col, buf + i * N + col, N, ncols); break;
            case 2: gemm_tile(a4 + i * lda + 4 * q0, lda, 2, nq, bq, q0 == 0, j->init + col, buf + i * N + col, N, ncols); break;
            case 1: gemm_tile(a4 + i * lda + 4 * q0, lda, 1, nq, bq, q0 == 0, j->init + col, buf + i * N + col, N, ncols); break;
            default: break;
            }
        }
    }
    epilogue(j->plan, buf, rows, j->out + r0 * N * j->plan->out_size);
}

/* out[M, N] = requant(init + A[M, K] (uint8, row stride lda) @ W[K, N] (int8, packed)), the plan's epilogue
 * on blocks of rows in cache; the blocks are tasks of about equal size (pool.c): the same bits on any
 * number of threads. */
int gemm_u8s8(const uint8_t* A, long M, long K, long lda, const int8_t* bp, long N, const int32_t* init,
              const rq_plan* plan, char* out) {
    int pooled;
    long rb = pooled_rows(plan, M, K, N, &pooled);
    long np16 = (N + 15) / 16 * 16, kq = (K + 3) / 4;
    int32_t* iv = (int32_t*)calloc((size_t)np16, sizeof(int32_t));
    if (!iv) return -1;
    const int32_t* sums = (const int32_t*)(const void*)(bp + kq * 4 * np16);
    for (long c = 0; c < N; ++c) iv[c] = init[c] + sums[c]; /* (wraps as the accumulator does) */
    block_job j = {A, M, K, lda, N, rb, (const void*)bp, iv, plan, out, 0};
    int rc = run_blocks(&j, gemm_block, pooled);
    free(iv);
    return rc;
}

/* ---- depthwise ----------------------------------------------------------------------------------
 * Plain C: per output row, int32 accumulators of every tap over the channels (taps outside the input
 * read the zero point), then the plan's epilogue. Weights (dw_pack): int32 [kh][kw][C]. */

long dw_pack_size(long kh, long kw, long C) { return kh * kw * C * 4; }

void dw_pack(const int8_t* w, long kh, long kw, long C, int8_t* out8) { /* w: [kh, kw, C] */
    int32_t* out = (int32_t*)(void*)out8;
    for (long t = 0; t < kh * kw * C; ++t) out[t] = w[t];
}


typedef struct {
    const uint8_t* x;
    const dw_geo* g;
    const int32_t* wp;
    const int32_t* init;
    const rq_plan* plan;
    char* out;
    long chunk;
    volatile int failed;
} dw_job;

static void dw_rows(void* arg, long t) {
    dw_job* j = (dw_job*)arg;
    const dw_geo* g = j->g;
    long C = g->c, total = g->n * g->oh;
    long first = t * j->chunk, last = first + j->chunk < total ? first + j->chunk : total;
    int32_t* buf = (int32_t*)thread_scratch((size_t)(g->ow * C) * sizeof(int32_t));
    if (!buf) {
        j->failed = 1;
        return;
    }
    for (long r = first; r < last; ++r) {
        long b = r / g->oh, oy = r % g->oh;
        for (long ox = 0; ox < g->ow; ++ox) {
            int32_t* acc = buf + ox * C;
            for (long c = 0; c < C; ++c) acc[c] = j->init[c];
            for (long i = 0; i < g->kh; ++i) {
                long iy = oy * g->sh - g->pt + i * g->dh;
                for (long t2 = 0; t2 < g->kw; ++t2) {
                    long ix = ox * g->sw - g->pl + t2 * g->dw;
                    const int32_t* wt = j->wp + (i * g->kw + t2) * C;
                    if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w) {
                        for (long c = 0; c < C; ++c) acc[c] += g->zx * wt[c];
                        continue;
                    }
                    const uint8_t* q = j->x + ((b * g->h + iy) * g->w + ix) * C;
                    for (long c = 0; c < C; ++c) acc[c] += (int32_t)q[c] * wt[c];
                }
            }
        }
        epilogue(j->plan, buf, g->ow, j->out + r * g->ow * C * j->plan->out_size);
    }
}

int dwconv_u8s8(const uint8_t* x, const dw_geo* g, const int8_t* wp, const int32_t* init, const rq_plan* plan,
                char* out) {
    long total = g->n * g->oh;
    double macs = (double)total * (double)g->ow * (double)g->c * (double)(g->kh * g->kw);
    int threads = openqnn_pool_threads();
    long tasks = macs >= openqnn_parallel_macs / 4 && threads > 1 ? (threads < total ? threads : total) : 1;
    dw_job j = {x, g, (const int32_t*)(const void*)wp, init, plan, out, (total + tasks - 1) / (tasks > 0 ? tasks : 1), 0};
    if (tasks > 1)
        openqnn_parallel(dw_rows, &j, (total + j.chunk - 1) / j.chunk);
    else if (total)
        dw_rows(&j, 0);
    return j.failed ? -1 : 0;
}

void nchw3_to_nhwc_u8(const uint8_t* x, long n, long hw, uint8_t* out) {
    for (long b = 0; b < n; ++b) {
        const uint8_t *p0 = x + b * 3 * hw, *p1 = p0 + hw, *p2 = p1 + hw;
        uint8_t* o = out + b * 3 * hw;
        for (long p = 0; p < hw; ++p) {
            o[3 * p] = p0[p];
            o[3 * p + 1] = p1[p];
            o[3 * p + 2] = p2[p];
        }
    }
}

#else
int openqnn_int8_available(void) { return 0; }
int openqnn_int8_isa(void) { return 0; }
#endif
