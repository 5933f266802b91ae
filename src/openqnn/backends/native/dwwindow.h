/* openqnn htp: the depthwise convolution on window rows, shared by int8.c's AVX-512 VNNI build and its
 * 256-bit VNNI one (included by each, inside its section).
 *
 * Taps of one kernel row go in groups of 4 (zero weights past the last). For each input row a window row
 * is built once: per output column ox, group g and 16 channels, 64 bytes holding the 4 taps' codes of each
 * channel side by side (vpdpbusd's layout; taps outside the input read the zero point). An output pixel
 * then takes one load and one vpdpbusd per kernel row, group and 16 channels (AVX-512) or 8 (256-bit). The
 * window rows of the input rows one output row spans are kept (the next output row reuses them).
 * Weights (dw_pack): [kh][groups][C padded to 16][4].
 *
 * The includer defines, before including this: interleave4(a, b, c, d, dst) (16 channels of 4 taps, 16
 * bytes each, -> 64 bytes, channel-major) and dw_tail16(p, n) (n < 16 bytes at p, zeros after, as a
 * __m128i); and after it: its row functions and dw_pick(kh, groups, mode), which returns the one for a
 * plan's mode (0: int32 accumulators for the epilogue; otherwise requantized in registers). */

long dw_pack_size(long kh, long kw, long C) { return kh * ((kw + 3) / 4) * ((C + 15) / 16) * 64; }

void dw_pack(const int8_t* w, long kh, long kw, long C, int8_t* out) { /* w: [kh, kw, C] */
    long groups = (kw + 3) / 4, cp = (C + 15) / 16 * 16;
    for (long i = 0; i < kh; ++i)
        for (long g = 0; g < groups; ++g)
            for (long c = 0; c < cp; ++c)
                for (long e = 0; e < 4; ++e) {
                    long j = 4 * g + e;
                    *out++ = (j < kw && c < C) ? w[(i * kw + j) * C + c] : 0;
                }
}

/* the window row of input row iy of image b (inside the input); cols[ox * 4 * groups + j]: the byte
 * offset of tap j's pixel in the row, or -1 outside (read from padrow) */
static void window_row(const uint8_t* x, const dw_geo* g, long b, long iy, const long* cols, const uint8_t* padrow,
                       long groups, long chunks, uint8_t* dst) {
    long C = g->c, full = C / 16;
    const uint8_t* row = x + (b * g->h + iy) * g->w * C;
    for (long ox = 0; ox < g->ow; ++ox)
        for (long gi = 0; gi < groups; ++gi) {
            const long* o = cols + (ox * groups + gi) * 4;
            const uint8_t* t0 = o[0] >= 0 ? row + o[0] : padrow;
            const uint8_t* t1 = o[1] >= 0 ? row + o[1] : padrow;
            const uint8_t* t2 = o[2] >= 0 ? row + o[2] : padrow;
            const uint8_t* t3 = o[3] >= 0 ? row + o[3] : padrow;
            uint8_t* d = dst + (ox * groups + gi) * chunks * 64;
            long cb = 0;
            for (; cb < full; ++cb) {
                long c0 = cb * 16;
                interleave4(_mm_loadu_si128((const __m128i*)(t0 + c0)), _mm_loadu_si128((const __m128i*)(t1 + c0)),
                            _mm_loadu_si128((const __m128i*)(t2 + c0)), _mm_loadu_si128((const __m128i*)(t3 + c0)),
                            d + cb * 64);
            }
            if (cb < chunks) {
                long c0 = cb * 16, n = C - c0;
                interleave4(dw_tail16(t0 + c0, n), dw_tail16(t1 + c0, n), dw_tail16(t2 + c0, n),
                            dw_tail16(t3 + c0, n), d + cb * 64);
            }
        }
}

typedef void (*dw_row_fn)(const dw_geo*, const uint8_t* const*, const int8_t*, const int32_t*, int32_t*, uint8_t*,
                          const rq_plan*);

static dw_row_fn dw_pick(long kh, long groups, long mode);

typedef struct {
    const uint8_t* x;
    const dw_geo* g;
    const int8_t* wp;
    const int32_t* init; /* padded to a multiple of 16 channels */
    const rq_plan* plan;
    char* out;
    long chunk; /* output rows (over images and rows) per task */
    volatile int failed;
} dw_job;

/* output rows [t * chunk, (t + 1) * chunk) of all images' n * oh, with buffers of its own */
static void dw_rows(void* arg, long t) {
    dw_job* j = (dw_job*)arg;
    const dw_geo* g = j->g;
    const rq_plan* plan = j->plan;
    long C = g->c, kh = g->kh, groups = (g->kw + 3) / 4, chunks = (C + 15) / 16, mode = plan->mode;
    long rowbytes = g->ow * groups * chunks * 64;
    long slots = (kh - 1) * g->dh + 1; /* the rows of one output row fall in distinct slots */
    long first = t * j->chunk, last = first + j->chunk < g->n * g->oh ? first + j->chunk : g->n * g->oh;
    dw_row_fn row_fn = dw_pick(kh, groups, mode);
    uint8_t* rows = (uint8_t*)malloc((size_t)((slots + 1) * rowbytes));
    int32_t* buf = mode ? 0 : (int32_t*)malloc((size_t)(g->ow * C) * sizeof(int32_t));
    uint8_t* padrow = (uint8_t*)malloc((size_t)(C + 64));
    long* tags = (long*)malloc((size_t)slots * sizeof(long));
    const uint8_t** src = (const uint8_t**)malloc((size_t)kh * sizeof(*src));
    long* cols = (long*)malloc((size_t)(g->ow * groups * 4) * sizeof(long));
    if (!rows || (!mode && !buf) || !padrow || !tags || !src || !cols) {
        free(rows); free(buf); free(padrow); free(tags); free(src); free(cols);
        j->failed = 1;
        return;
    }
    for (long ox = 0; ox < g->ow; ++ox)
        for (long q = 0; q < groups * 4; ++q) {
            long ix = ox * g->sw - g->pl + q * g->dw;
            cols[ox * groups * 4 + q] = (q < g->kw && ix >= 0 && ix < g->w) ? ix * C : -1;
        }
    memset(padrow, (int)g->zx, (size_t)(C + 64));
    uint8_t* padwin = rows + slots * rowbytes; /* the window row of a row outside the input: all zx */
    memset(padwin, (int)g->zx, (size_t)rowbytes);
    long image = -1;
    for (long r = first; r < last; ++r) {
        long b = r / g->oh, oy = r % g->oh;
        if (b != image) { /* a new image: no window row is kept */
            for (long s = 0; s < slots; ++s) tags[s] = -1;
            image = b;
        }
        for (long i = 0; i < kh; ++i) {
            long iy = oy * g->sh - g->pt + i * g->dh;
            if (iy < 0 || iy >= g->h) {
                src[i] = padwin;
                continue;
            }
            long s = iy % slots;
            if (tags[s] != iy) {
                window_row(j->x, g, b, iy, cols, padrow, groups, chunks, rows + s * rowbytes);
                tags[s] = iy;
            }
            src[i] = rows + s * rowbytes;
        }
        char* orow = j->out + r * g->ow * C * plan->out_size;
        row_fn(g, src, j->wp, j->init, buf, (uint8_t*)orow, plan);
        if (!mode) epilogue(plan, buf, g->ow, orow);
    }
    free(rows); free(buf); free(padrow); free(tags); free(src); free(cols);
}

/* The output rows go to the pool's threads in contiguous runs (each keeps its window rows): the
 * same bits on any number of threads. */
int dwconv_u8s8(const uint8_t* x, const dw_geo* g, const int8_t* wp, const int32_t* init, const rq_plan* plan,
                char* out) {
    long total = g->n * g->oh, cp = (g->c + 15) / 16 * 16;
    double macs = (double)total * (double)g->ow * (double)g->c * (double)(g->kh * g->kw);
    int threads = openqnn_pool_threads();
    long tasks = macs >= openqnn_parallel_macs / 4 && threads > 1 ? (threads < total ? threads : total) : 1;
    int32_t* iv = (int32_t*)calloc((size_t)cp, sizeof(int32_t));
    if (!iv) return -1;
    memcpy(iv, init, (size_t)g->c * sizeof(int32_t));
    dw_job j = {x, g, wp, iv, plan, out, (total + tasks - 1) / (tasks > 0 ? tasks : 1), 0};
    if (tasks > 1)
        openqnn_parallel(dw_rows, &j, (total + j.chunk - 1) / j.chunk);
    else if (total)
        dw_rows(&j, 0);
    free(iv);
    return j.failed ? -1 : 0;
}
