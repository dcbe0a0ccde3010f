/* render.c — maps to pictures (normalize, bilinear resize, colormap, overlay, PNG), raw float32
 * maps and base64. The order of operations and every rounding rule is documented in render.h; the
 * references the tests compare against are numpy.percentile, torch F.interpolate and matplotlib.
 * The percentile is the engine's (engine/maps.h); the bilinear kernel here is ATen's with float32
 * coordinates, which the engine's maps_upsample_bilinear (float64 coordinates) is not: the two
 * differ in the last bits whenever a scale is not a power of two, so they stay two until a change
 * that may move the engine's numbers (sanity metrics, faithfulness, Score-CAM masks) unifies them.
 */
#include "render.h"

#include <math.h>
#include <png.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* stb_image_resize is compiled static into this file only, so that another file of the library
 * may include its own copy without a duplicate symbol. Included as <stb/...> so that GCC treats it
 * as a system header (its unused static functions and casts are not our warnings). */
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#define STB_IMAGE_RESIZE_STATIC
#include <stb/stb_image_resize.h>

void map_normalize(const float *map, size_t n, double clip_percentile, float *out)
{
    /* one pass: copy, min, max, and whether anything is not finite (NaN fails both compares and
     * x - x is NaN for +-Inf: the slow path below is taken only for such maps) */
    float mn = INFINITY, mx = -INFINITY;
    int nonfinite = 0;
    for (size_t i = 0; i < n; i++) {
        float v = map[i];
        out[i] = v;
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
        nonfinite |= !(v - v == 0.0f);
    }
    if (nonfinite) { /* NaN, -Inf -> the finite minimum; +Inf -> the finite maximum */
        mn = INFINITY;
        mx = -INFINITY;
        for (size_t i = 0; i < n; i++) {
            float v = map[i];
            if (isfinite(v)) {
                mn = v < mn ? v : mn;
                mx = v > mx ? v : mx;
            }
        }
        for (size_t i = 0; i < n; i++) {
            float v = map[i];
            out[i] = isfinite(v) ? v : v == INFINITY ? mx : mn;
        }
    }
    if (!(mn <= mx)) { /* n == 0 or nothing finite */
        memset(out, 0, n * sizeof *out);
        return;
    }
    double lo = mn;
    double hi = map_percentile(out, n, clip_percentile);
    if (!(hi > lo)) {
        memset(out, 0, n * sizeof *out);
        return;
    }
    /* (v - lo) * (1 / (hi - lo)) in double, clipped to [0,1], rounded to float */
    double inv = 1.0 / (hi - lo);
    for (size_t i = 0; i < n; i++) {
        float v = map[i];
        if (nonfinite && !isfinite(v)) v = v == INFINITY ? mx : mn;
        double t = ((double)v - lo) * inv;
        t = t < 0.0 ? 0.0 : t;
        t = t > 1.0 ? 1.0 : t;
        out[i] = (float)t;
    }
}

/* ---- bilinear resize (PyTorch upsample_bilinear2d, align_corners=False) ----------------------- */

/* Per output row and column: the two source indices and their weights, computed the way ATen's
 * compute_source_index_and_lambda does: scale = (float)in / out; the source coordinate
 * scale * (d + 0.5) - 0.5 evaluated in double, rounded to float, clamped at 0; equal sizes copy. */
typedef struct {
    int sh, sw, dh, dw;
    int *y0, *y1, *x0, *x1;
    float *wy0, *wy1, *wx0, *wx1;
    void *mem;
} bilin_t;

static void linear_axis(int in, int out, int *i0, int *i1, float *w0, float *w1)
{
    float scale = (float)in / (float)out;
    for (int d = 0; d < out; d++) {
        if (in == out) {
            i0[d] = i1[d] = d;
            w0[d] = 1.0f;
            w1[d] = 0.0f;
            continue;
        }
        float src = (float)((double)scale * ((double)d + 0.5) - 0.5);
        if (src < 0.0f) src = 0.0f;
        int a = (int)src;
        if (a > in - 1) a = in - 1;
        float l1 = src - (float)a;
        if (l1 < 0.0f) l1 = 0.0f;
        if (l1 > 1.0f) l1 = 1.0f;
        i0[d] = a;
        i1[d] = a < in - 1 ? a + 1 : a;
        w1[d] = l1;
        w0[d] = 1.0f - l1;
    }
}

static int bilin_init(bilin_t *b, int sh, int sw, int dh, int dw)
{
    size_t n = (size_t)dh + (size_t)dw;
    b->mem = malloc(2 * n * (sizeof(int) + sizeof(float)));
    if (!b->mem) return ENG_ENOMEM;
    b->sh = sh;
    b->sw = sw;
    b->dh = dh;
    b->dw = dw;
    b->y0 = b->mem;
    b->y1 = b->y0 + dh;
    b->x0 = b->y1 + dh;
    b->x1 = b->x0 + dw;
    b->wy0 = (float *)(b->x1 + dw);
    b->wy1 = b->wy0 + dh;
    b->wx0 = b->wy1 + dh;
    b->wx1 = b->wx0 + dw;
    linear_axis(sh, dh, b->y0, b->y1, b->wy0, b->wy1);
    linear_axis(sw, dw, b->x0, b->x1, b->wx0, b->wx1);
    return ENG_OK;
}

/* output row y (dw floats) of src (sh x sw) */
static void bilin_row(const bilin_t *b, const float *src, int y, float *out)
{
    const float *r0 = src + (size_t)b->y0[y] * (size_t)b->sw, *r1 = src + (size_t)b->y1[y] * (size_t)b->sw;
    float a = b->wy0[y], c = b->wy1[y];
    for (int x = 0; x < b->dw; x++) {
        /* ATen's generic kernel: the width sums of both rows, then weighted by the row weights */
        float t0 = r0[b->x0[x]] * b->wx0[x] + r0[b->x1[x]] * b->wx1[x];
        float t1 = r1[b->x0[x]] * b->wx0[x] + r1[b->x1[x]] * b->wx1[x];
        out[x] = t0 * a + t1 * c;
    }
}

void map_resize_bilinear(const float *src, int sh, int sw, float *dst, int dh, int dw)
{
    bilin_t b;
    if (bilin_init(&b, sh, sw, dh, dw) != ENG_OK) { /* a few KiB: degrade to zeros rather than UB */
        memset(dst, 0, (size_t)dh * (size_t)dw * sizeof *dst);
        return;
    }
    for (int y = 0; y < dh; y++) bilin_row(&b, src, y, dst + (size_t)y * (size_t)dw);
    free(b.mem);
}

/* ---- images ---------------------------------------------------------------------------------- */

static int image_ok(const image_t *im)
{
    return im && im->data && (im->channels == 1 || im->channels == 3) && im->width >= 1 && im->height >= 1 &&
           im->width <= RENDER_MAX_SIDE && im->height <= RENDER_MAX_SIDE;
}

int image_resize(const image_t *src, int w, int h, image_t *dst)
{
    if (!image_ok(src) || !dst || w < 1 || h < 1 || w > RENDER_MAX_SIDE || h > RENDER_MAX_SIDE) return ENG_EINVAL;
    size_t bytes = (size_t)w * (size_t)h * (size_t)src->channels;
    uint8_t *data = malloc(bytes);
    if (!data) return ENG_ENOMEM;
    if (w == src->width && h == src->height) {
        memcpy(data, src->data, bytes);
    } else if (!stbir_resize_uint8(src->data, src->width, src->height, 0, data, w, h, 0, src->channels)) {
        free(data); /* stbir fails only when its scratch allocation does */
        return ENG_ENOMEM;
    }
    dst->width = w;
    dst->height = h;
    dst->channels = src->channels;
    dst->data = data;
    return ENG_OK;
}

/* ---- heatmaps and overlays ------------------------------------------------------------------- */

void render_opts_default(render_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->colormap = "jet";
    o->clip_percentile = 99.5;
    o->alpha = 0.5;
}

/* A heatmap or overlay produced row by row (steps 1-4 of render.h), so that the PNG path never
 * holds the upsampled map or the whole RGB image: only the normalized native map and one row. */
typedef struct {
    const uint8_t *lut;
    int h, w, ow, oh;
    float *norm; /* h x w, normalized */
    float *row;  /* ow floats when resizing */
    bilin_t bl;
    int resize;
    const image_t *base; /* overlay only */
    double alpha;
} heat_t;

static void heat_free(heat_t *t)
{
    free(t->norm);
    free(t->row);
    if (t->resize) free(t->bl.mem);
}

static int heat_init(heat_t *t, const float *map, int h, int w, const render_opts_t *o, int overlay)
{
    memset(t, 0, sizeof *t);
    if (!map || !o || h < 1 || w < 1 || h > RENDER_MAX_SIDE || w > RENDER_MAX_SIDE) return ENG_EINVAL;
    int ow = o->out_w, oh = o->out_h;
    if (overlay) {
        if (!image_ok(o->base)) return ENG_EINVAL;
        if (ow == 0 && oh == 0) {
            ow = o->base->width;
            oh = o->base->height;
        }
        if (ow != o->base->width || oh != o->base->height) return ENG_EINVAL;
        t->base = o->base;
        t->alpha = !(o->alpha >= 0.0) ? 0.0 : o->alpha > 1.0 ? 1.0 : o->alpha;
    } else if (ow == 0 && oh == 0) {
        ow = w;
        oh = h;
    }
    if (ow < 1 || oh < 1 || ow > RENDER_MAX_SIDE || oh > RENDER_MAX_SIDE) return ENG_EINVAL;
    t->lut = colormap_table(o->colormap ? o->colormap : "jet");
    if (!t->lut) return ENG_EINVAL;
    t->h = h;
    t->w = w;
    t->ow = ow;
    t->oh = oh;
    t->resize = ow != w || oh != h;
    t->norm = malloc((size_t)h * (size_t)w * sizeof(float));
    if (!t->norm) return ENG_ENOMEM;
    if (t->resize) {
        t->row = malloc((size_t)ow * sizeof(float));
        if (!t->row || bilin_init(&t->bl, h, w, oh, ow) != ENG_OK) {
            t->resize = 0; /* bl.mem was not allocated */
            heat_free(t);
            return ENG_ENOMEM;
        }
    }
    map_normalize(map, (size_t)h * (size_t)w, o->clip_percentile, t->norm);
    return ENG_OK;
}

/* output row y as ow RGB pixels */
static void heat_row(const heat_t *t, int y, uint8_t *rgb)
{
    const float *v = t->norm + (size_t)y * (size_t)t->w;
    if (t->resize) {
        bilin_row(&t->bl, t->norm, y, t->row);
        v = t->row;
    }
    for (int x = 0; x < t->ow; x++) {
        /* matplotlib Colormap.__call__ on floats: (int)(v * N), v == 1 -> N - 1. v is in [0,1]
         * (bilinear weights are convex); the clamps only guard the last ulp. */
        float f = v[x] * 256.0f;
        int k = f >= 255.0f ? 255 : f > 0.0f ? (int)f : 0;
        memcpy(rgb + 3 * x, t->lut + 3 * k, 3);
    }
    if (!t->base) return;
    /* out = (1 - alpha) * base + alpha * heat, rounded half up; both terms are in [0,255] */
    double a = t->alpha, ab = 1.0 - a;
    const image_t *b = t->base;
    const uint8_t *src = b->data + (size_t)y * (size_t)b->width * (size_t)b->channels;
    for (int x = 0; x < t->ow; x++)
        for (int c = 0; c < 3; c++) {
            uint8_t bv = b->channels == 3 ? src[3 * x + c] : src[x];
            double o = ab * bv + a * rgb[3 * x + c];
            rgb[3 * x + c] = (uint8_t)(o + 0.5);
        }
}

static int heat_image(const float *map, int h, int w, const render_opts_t *o, int overlay, image_t *out)
{
    if (!out) return ENG_EINVAL;
    heat_t t;
    int rc = heat_init(&t, map, h, w, o, overlay);
    if (rc != ENG_OK) return rc;
    size_t stride = (size_t)t.ow * 3;
    uint8_t *rgb = malloc(stride * (size_t)t.oh);
    if (!rgb) {
        heat_free(&t);
        return ENG_ENOMEM;
    }
    for (int y = 0; y < t.oh; y++) heat_row(&t, y, rgb + (size_t)y * stride);
    out->width = t.ow;
    out->height = t.oh;
    out->channels = 3;
    out->data = rgb;
    heat_free(&t);
    return ENG_OK;
}

int render_heatmap_rgb(const float *map, int h, int w, const render_opts_t *o, image_t *out)
{
    return heat_image(map, h, w, o, 0, out);
}

int render_overlay_rgb(const float *map, int h, int w, const render_opts_t *o, image_t *out)
{
    return heat_image(map, h, w, o, 1, out);
}

/* ---- PNG ------------------------------------------------------------------------------------- */
/* libpng writing to memory, zlib level 1, Sub filter: docs/RENDER_BENCH.md has the measurements
 * (stb_image_write and libpng at several levels and filters) behind this choice. */

/* A per-thread cache of the blocks libpng and zlib allocate. Every encode asks for the same few
 * blocks (zlib's window, hash chains and pending buffer: about 256 KiB for a 224x224 image);
 * freed at the top of the heap, glibc gives them back to the kernel (M_TRIM_THRESHOLD) and the
 * next encode page-faults them in again. Measured in a request-like loop: a 28x28 heatmap PNG
 * took 90 us instead of 24 (docs/RENDER_BENCH.md). Keeping the blocks per thread removes that
 * without touching process-wide malloc settings. At most PNG_CACHE_SLOTS blocks stay per thread;
 * they are freed when the thread exits. */
enum { PNG_CACHE_SLOTS = 16, PNG_BLOCK_HDR = 16 /* keeps max_align_t alignment */ };
static __thread void *png_cache[PNG_CACHE_SLOTS];
static __thread int png_cache_registered;
static pthread_key_t png_cache_key;
static pthread_once_t png_cache_once = PTHREAD_ONCE_INIT;
static int png_cache_key_ok;

static size_t block_cap(void *blk) { return *(size_t *)blk; }

static void png_cache_release(void *cache)
{
    void **slots = cache;
    for (int i = 0; i < PNG_CACHE_SLOTS; i++) {
        free(slots[i]);
        slots[i] = NULL;
    }
}

static void png_cache_init(void) { png_cache_key_ok = pthread_key_create(&png_cache_key, png_cache_release) == 0; }

static png_voidp png_cached_malloc(png_structp png, png_alloc_size_t size)
{
    (void)png;
    int best = -1;
    for (int i = 0; i < PNG_CACHE_SLOTS; i++) /* best fit */
        if (png_cache[i] && block_cap(png_cache[i]) >= size &&
            (best < 0 || block_cap(png_cache[i]) < block_cap(png_cache[best])))
            best = i;
    void *blk;
    if (best >= 0) {
        blk = png_cache[best];
        png_cache[best] = NULL;
    } else {
        if (size > SIZE_MAX - PNG_BLOCK_HDR) return NULL;
        blk = malloc(PNG_BLOCK_HDR + size);
        if (!blk) return NULL;
        *(size_t *)blk = size;
    }
    return (char *)blk + PNG_BLOCK_HDR;
}

static void png_cached_free(png_structp png, png_voidp ptr)
{
    (void)png;
    if (!ptr) return;
    void *blk = (char *)ptr - PNG_BLOCK_HDR;
    if (!png_cache_registered) { /* so that the thread's blocks are freed when it exits */
        pthread_once(&png_cache_once, png_cache_init);
        if (!png_cache_key_ok || pthread_setspecific(png_cache_key, png_cache) != 0) {
            free(blk);
            return;
        }
        png_cache_registered = 1;
    }
    int slot = -1;
    for (int i = 0; i < PNG_CACHE_SLOTS; i++) {
        if (!png_cache[i]) {
            slot = i;
            break;
        }
        if (slot < 0 || block_cap(png_cache[i]) < block_cap(png_cache[slot])) slot = i; /* smallest */
    }
    if (png_cache[slot]) { /* full: keep the larger of this block and the smallest cached one */
        if (block_cap(png_cache[slot]) >= block_cap(blk)) {
            free(blk);
            return;
        }
        free(png_cache[slot]);
    }
    png_cache[slot] = blk;
}

typedef struct {
    uint8_t *p;
    size_t len, cap;
} membuf_t;

static void png_mem_write(png_structp png, png_bytep data, png_size_t len)
{
    membuf_t *m = png_get_io_ptr(png);
    if (len > m->cap - m->len) {
        size_t cap = m->cap ? m->cap : 4096;
        while (len > cap - m->len) {
            if (cap > SIZE_MAX / 2) png_error(png, "out of memory");
            cap *= 2;
        }
        uint8_t *p = realloc(m->p, cap);
        if (!p) png_error(png, "out of memory");
        m->p = p;
        m->cap = cap;
    }
    memcpy(m->p + m->len, data, len);
    m->len += len;
}

static void png_mem_flush(png_structp png) { (void)png; }

/* libpng's default handlers print to stderr; errors here are our own (out of memory) and are
 * reported as a status, so they stay quiet. */
static void png_quiet_error(png_structp png, png_const_charp msg)
{
    (void)msg;
    png_longjmp(png, 1);
}

static void png_quiet_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

/* Rows come from a callback: a pointer to row y, written into scratch (w * channels bytes) or not. */
typedef const uint8_t *(*png_row_fn)(void *ctx, int y, uint8_t *scratch);

static int png_encode_rows(int w, int h, int channels, png_row_fn row_fn, void *ctx, uint8_t **png_out,
                           size_t *png_len)
{
    *png_out = NULL;
    *png_len = 0;
    size_t stride = (size_t)w * (size_t)channels;
    /* The output buffer lives on the heap: libpng's callbacks change it between setjmp and a
     * possible longjmp, which C leaves indeterminate for a non-volatile local. A smooth heatmap
     * compresses to about a tenth of its raw size: start the buffer there. */
    membuf_t *m = malloc(sizeof *m);
    uint8_t *scratch = malloc(stride);
    if (m) {
        m->len = 0;
        m->cap = stride * (size_t)h / 8 + 1024;
        m->p = malloc(m->cap);
    }
    png_structp png = png_create_write_struct_2(PNG_LIBPNG_VER_STRING, NULL, png_quiet_error, png_quiet_warning, NULL,
                                                png_cached_malloc, png_cached_free);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!m || !m->p || !scratch || !info) {
        if (png) png_destroy_write_struct(&png, &info);
        if (m) free(m->p);
        free(m);
        free(scratch);
        return ENG_ENOMEM;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(m->p);
        free(m);
        free(scratch);
        return ENG_ENOMEM;
    }
    png_set_write_fn(png, m, png_mem_write, png_mem_flush);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_compression_level(png, 1);
    png_set_filter(png, PNG_FILTER_TYPE_BASE, PNG_FILTER_SUB);
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, row_fn(ctx, y, scratch));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(scratch);
    *png_out = m->p;
    *png_len = m->len;
    free(m);
    return ENG_OK;
}

static const uint8_t *image_row(void *ctx, int y, uint8_t *scratch)
{
    (void)scratch;
    const image_t *im = ctx;
    return im->data + (size_t)y * (size_t)im->width * (size_t)im->channels;
}

int render_png_encode(const image_t *img, uint8_t **png, size_t *png_len)
{
    if (!image_ok(img) || !png || !png_len) return ENG_EINVAL;
    return png_encode_rows(img->width, img->height, img->channels, image_row, (void *)img, png, png_len);
}

static const uint8_t *heat_png_row(void *ctx, int y, uint8_t *scratch)
{
    heat_row(ctx, y, scratch);
    return scratch;
}

static int heat_png(const float *map, int h, int w, const render_opts_t *o, int overlay, uint8_t **png,
                    size_t *png_len)
{
    if (!png || !png_len) return ENG_EINVAL;
    *png = NULL;
    *png_len = 0;
    heat_t t;
    int rc = heat_init(&t, map, h, w, o, overlay);
    if (rc != ENG_OK) return rc;
    rc = png_encode_rows(t.ow, t.oh, 3, heat_png_row, &t, png, png_len);
    heat_free(&t);
    return rc;
}

int render_heatmap_png(const float *map, int h, int w, const render_opts_t *o, uint8_t **png, size_t *png_len)
{
    return heat_png(map, h, w, o, 0, png, png_len);
}

int render_overlay_png(const float *map, int h, int w, const render_opts_t *o, uint8_t **png, size_t *png_len)
{
    return heat_png(map, h, w, o, 1, png, png_len);
}

/* ---- base64 ---------------------------------------------------------------------------------- */

static const char b64_alphabet[65] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Decoding classes: 0..63 a digit, B64_WS whitespace (skipped), B64_PAD '=', B64_BAD anything else.
 * Digits are < 64, so four digits are valid exactly when their OR is < 64. */
enum { B64_WS = 0x40, B64_PAD = 0x41, B64_BAD = 0x80 };
static const uint8_t b64_class[256] = {
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40, 0x40, 0x40, 0x40, 0x40, 0x80, 0x80,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x40, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x3e, 0x80, 0x80, 0x80, 0x3f,
    0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x80, 0x80, 0x80, 0x41, 0x80, 0x80,
    0x80, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
    0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x80, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28,
    0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
};

size_t b64_encoded_len(size_t n) { return (n / 3 + (n % 3 != 0)) * 4; }

size_t b64_decoded_max(size_t n) { return (n / 4 + (n % 4 != 0)) * 3; }

void b64_encode(const uint8_t *in, size_t n, char *out)
{
    size_t i = 0;
    for (; n - i >= 3; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[0] = b64_alphabet[v >> 18];
        out[1] = b64_alphabet[(v >> 12) & 63];
        out[2] = b64_alphabet[(v >> 6) & 63];
        out[3] = b64_alphabet[v & 63];
        out += 4;
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[0] = b64_alphabet[v >> 18];
        out[1] = b64_alphabet[(v >> 12) & 63];
        out[2] = '=';
        out[3] = '=';
        out += 4;
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[0] = b64_alphabet[v >> 18];
        out[1] = b64_alphabet[(v >> 12) & 63];
        out[2] = b64_alphabet[(v >> 6) & 63];
        out[3] = '=';
        out += 4;
    }
    *out = '\0';
}

static int is_ws(char c) { return b64_class[(uint8_t)c] == B64_WS; }

static int lower_eq(const char *s, const char *lit, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != lit[i]) return 0;
    }
    return 1;
}

int b64_decode(const char *in, size_t n, uint8_t *out, size_t *out_len)
{
    size_t pos = 0;
    uint8_t *o = out;
#define FAIL_AT(p)                                                                                             \
    do {                                                                                                       \
        *out_len = (p);                                                                                        \
        return ENG_EFORMAT;                                                                                    \
    } while (0)
    while (pos < n && is_ws(in[pos])) pos++;
    /* RFC 2397 data URL: "data:" [mediatype] [";base64"] "," data; scheme and "base64" match
     * case-insensitively. Only the base64 form carries binary. */
    if (n - pos >= 5 && lower_eq(in + pos, "data:", 5)) {
        const char *comma = memchr(in + pos, ',', n - pos);
        if (!comma) FAIL_AT(n);
        size_t c = (size_t)(comma - in);
        if (c - pos < 5 + 7 || !lower_eq(comma - 7, ";base64", 7)) FAIL_AT(c);
        pos = c + 1;
    }
    uint32_t acc = 0;
    int q = 0;               /* digits in the current quantum */
    size_t last_digit = pos; /* where the last digit was, for the non-zero-bits error */
    while (pos < n) {
        if (q == 0) { /* fast path: whole quanta of four digits */
            while (n - pos >= 4) {
                const uint8_t *s = (const uint8_t *)in + pos;
                uint32_t d0 = b64_class[s[0]], d1 = b64_class[s[1]], d2 = b64_class[s[2]], d3 = b64_class[s[3]];
                if ((d0 | d1 | d2 | d3) >= 64) break;
                uint32_t v = d0 << 18 | d1 << 12 | d2 << 6 | d3;
                o[0] = (uint8_t)(v >> 16);
                o[1] = (uint8_t)(v >> 8);
                o[2] = (uint8_t)v;
                o += 3;
                pos += 4;
            }
            if (pos >= n) break;
        }
        uint8_t c = b64_class[(uint8_t)in[pos]];
        if (c < 64) {
            acc = acc << 6 | c;
            last_digit = pos;
            if (++q == 4) {
                o[0] = (uint8_t)(acc >> 16);
                o[1] = (uint8_t)(acc >> 8);
                o[2] = (uint8_t)acc;
                o += 3;
                q = 0;
                acc = 0;
            }
        } else if (c == B64_WS) {
        } else if (c == B64_PAD) {
            break;
        } else {
            FAIL_AT(pos);
        }
        pos++;
    }
    if (pos < n) { /* at the first '=' */
        if (q < 2) FAIL_AT(pos);
        int pads = 4 - q;
        while (pos < n && pads > 0) {
            char ch = in[pos];
            if (ch == '=') pads--;
            else if (!is_ws(ch)) FAIL_AT(pos);
            pos++;
        }
        if (pads > 0) FAIL_AT(n);
        for (; pos < n; pos++)
            if (!is_ws(in[pos])) FAIL_AT(pos);
        if (q == 2) {
            if (acc & 0xf) FAIL_AT(last_digit);
            *o++ = (uint8_t)(acc >> 4);
        } else {
            if (acc & 0x3) FAIL_AT(last_digit);
            o[0] = (uint8_t)(acc >> 10);
            o[1] = (uint8_t)(acc >> 2);
            o += 2;
        }
    } else if (q != 0) {
        FAIL_AT(n);
    }
#undef FAIL_AT
    *out_len = (size_t)(o - out);
    return ENG_OK;
}

/* ---- raw maps -------------------------------------------------------------------------------- */

static int host_is_little_endian(void)
{
    const uint16_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 1;
}

char *render_raw_b64(const float *map, size_t n)
{
    if (n > SIZE_MAX / 8) return NULL;
    size_t bytes = n * 4;
    char *s = malloc(b64_encoded_len(bytes) + 1);
    if (!s) return NULL;
    if (host_is_little_endian()) { /* folded at compile time */
        b64_encode((const uint8_t *)map, bytes, s);
        return s;
    }
    /* big-endian host: byte-swap through a buffer of a multiple of 3 floats (12 bytes, so that
     * every chunk but the last encodes to whole quanta and the pieces concatenate) */
    enum { CHUNK = 3 * 256 };
    uint8_t buf[CHUNK * 4];
    char *o = s;
    for (size_t i = 0; i < n; i += CHUNK) {
        size_t m = n - i < CHUNK ? n - i : CHUNK;
        for (size_t j = 0; j < m; j++) {
            uint32_t u;
            memcpy(&u, map + i + j, 4);
            buf[4 * j] = (uint8_t)u;
            buf[4 * j + 1] = (uint8_t)(u >> 8);
            buf[4 * j + 2] = (uint8_t)(u >> 16);
            buf[4 * j + 3] = (uint8_t)(u >> 24);
        }
        b64_encode(buf, m * 4, o);
        o += b64_encoded_len(m * 4);
    }
    *o = '\0';
    return s;
}
