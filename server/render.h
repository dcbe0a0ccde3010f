/* render.h — turning explanation maps into pictures: colormapped heatmaps and overlays, as RGB
 * images or PNGs (encoded by encode.h, which also has raw float32 maps and base64).
 *
 * Memory: functions that return memory say so (free() it); the others write into buffers the
 * caller sized with the *_len/_max helpers. The PNG encoder keeps libpng's and zlib's blocks in a
 * per-thread cache (at most 16 blocks, about 300 KiB for 224x224 images) that is freed when the
 * thread exits: re-faulting them on every request tripled the cost of a small PNG.
 * Functions that can fail return ENG_OK or an ENG_* status from engine.h; they fail only on bad
 * arguments (ENG_EINVAL), malformed input (ENG_EFORMAT) or a failed malloc (ENG_ENOMEM).
 * All functions are thread-safe: no shared state is written.
 *
 * How a map becomes a picture (render_heatmap_* / render_overlay_*), in this order:
 *   1. map_normalize at the map's native resolution (e.g. 7x7 for Grad-CAM): lo = min, hi = the
 *      clip_percentile-th percentile, v -> clip((v - lo) / (hi - lo), 0, 1). Smilkov et al. 2017
 *      ("SmoothGrad: removing noise by adding noise", VisualizeImageGrayscale) clip the top
 *      percentile so that a few extreme gradients do not wash the picture out.
 *   2. map_resize_bilinear of the normalized map to the output size (PyTorch's
 *      F.interpolate(mode='bilinear', align_corners=False)); skipped when the sizes are equal.
 *      Normalizing first keeps the percentile a property of the method's own map, independent of
 *      the output size, and bilinear interpolation of values in [0,1] stays in [0,1].
 *   3. colormap: entry min((int)(v * 256), 255) of a 256-entry matplotlib table, exactly what
 *      matplotlib's Colormap.__call__ does for float input.
 *   4. overlay only: out = (1 - alpha) * base + alpha * heat per channel, rounded half up (a gray
 *      base is replicated to RGB).
 *   5. PNG: 8-bit RGB, written by libpng into memory with zlib level 1 and the Sub filter (chosen
 *      by measured speed over stb_image_write: docs/RENDER_BENCH.md). Rows are produced one at a
 *      time, so the PNG path holds neither the upsampled map nor the whole RGB image.
 */
#ifndef EXPLAIND_RENDER_H
#define EXPLAIND_RENDER_H

#include <stddef.h>
#include <stdint.h>

#include "encode.h" /* the PNG writer, base64 and raw maps: what answers carry */
#include "engine.h" /* image_t, ENG_* status codes */

/* ---- colormaps (server/colormaps.c, generated from matplotlib 3.6) ---------------------------- */
/* The 256x3 RGB table (row-major, entry i at [3*i]) of `name`: "jet", "turbo", "viridis",
 * "inferno" or "gray"; NULL for any other name (or NULL). Tables are static and read-only. */
const uint8_t *colormap_table(const char *name);
int colormap_valid(const char *name); /* 1 if colormap_table(name) != NULL */
int colormap_count(void);
const char *colormap_name(int i); /* i in 0..colormap_count()-1, else NULL (for "must be one of") */

/* ---- maps ------------------------------------------------------------------------------------ */
/* map_percentile (numpy.percentile of float32 data) is the engine's: engine/maps.h. */

/* out[i] = clip((map[i] - lo) / (hi - lo), 0, 1), computed in double as (v - lo) * (1 / (hi - lo)),
 * with lo = min(map) and hi = the clip_percentile-th percentile of map (map_percentile). When
 * hi <= lo (a constant map, n == 0, or a percentile that lands on the minimum) every out[i] is 0:
 * a flat map renders as the colormap's first entry.
 * Non-finite values never crash and never spread: NaN and -Inf count as the smallest finite value
 * (they render as 0), +Inf as the largest finite value; a map with no finite value gives zeros.
 * O(n); out (n floats, may not alias map) doubles as the selection scratch: no allocation. */
void map_normalize(const float *map, size_t n, double clip_percentile, float *out);

/* Resize a single-channel sh x sw map (row-major) to dh x dw like PyTorch 1.13's
 * F.interpolate(x, size=(dh, dw), mode='bilinear', align_corners=False): half-pixel centres,
 * source coordinate = (d + 0.5) * (in / out) - 0.5 clamped at 0 (scale in float, as ATen),
 * neighbours clamped at the edge, no antialiasing when shrinking. Float arithmetic; results agree
 * with torch within a few ulps (tests: 1e-6; torch's own channels-first and channels-last kernels
 * differ from each other by as much). Equal sizes copy. All sizes >= 1; src and dst distinct. */
void map_resize_bilinear(const float *src, int sh, int sw, float *dst, int dh, int dw);

/* ---- images ---------------------------------------------------------------------------------- */
/* Resize an image (1 or 3 channels) to w x h with stb_image_resize's default filters (our own
 * output only: overlay bases at size=model). dst->data is malloc'd: free() it (or image_free). */
int image_resize(const image_t *src, int w, int h, image_t *dst);

/* ---- heatmaps and overlays ------------------------------------------------------------------- */

typedef struct {
    const char *colormap;   /* colormap_table name; NULL means "jet" (the API default) */
    double clip_percentile; /* upper percentile for map_normalize; the API default is 99.5 */
    int out_w, out_h;       /* output size; 0 and 0: the base image's size for an overlay, else the map's */
    double alpha;           /* overlay opacity in [0,1] (clamped); the API default is 0.5 */
    const image_t *base;    /* overlay only: 1- or 3-channel image, exactly out_w x out_h. Resize
                             * it first (image_resize): only the caller knows how the model input
                             * was cut from the upload (stretch, center_crop, letterbox). */
} render_opts_t;

/* The API defaults: jet, 99.5, native size, alpha 0.5, no base. */
void render_opts_default(render_opts_t *o);

/* The colormapped map as an RGB image of the output size (steps 1-3). out->data is malloc'd. */
int render_heatmap_rgb(const float *map, int h, int w, const render_opts_t *o, image_t *out);
/* The heatmap blended over o->base (steps 1-4). out->data is malloc'd. */
int render_overlay_rgb(const float *map, int h, int w, const render_opts_t *o, image_t *out);

/* The same, encoded as PNG: *png is malloc'd (free() it), *png_len its size. */
int render_heatmap_png(const float *map, int h, int w, const render_opts_t *o, uint8_t **png, size_t *png_len);
int render_overlay_png(const float *map, int h, int w, const render_opts_t *o, uint8_t **png, size_t *png_len);

#endif
