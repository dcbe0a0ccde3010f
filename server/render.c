/* render.c — maps to pictures (normalize, bilinear resize, colormap, overlay; PNG through
 * encode.c). The order of operations and every rounding rule is documented in render.h; the
 * references the tests compare against are numpy.percentile, torch F.interpolate and matplotlib.
 * The percentile is the engine's (engine/maps.h); the bilinear kernel here is ATen's with float32
 * coordinates, which the engine's maps_upsample_bilinear (float64 coordinates) is not: the two
 * differ in the last bits whenever a scale is not a power of two, so they stay two until a change
 * that may move the engine's numbers (sanity metrics, faithfulness, Score-CAM masks) unifies them.
 */
#include "render.h"

#include <math.h>
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
