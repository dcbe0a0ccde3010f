/* Resize (opsets 10, 11, 13, 18) and Upsample (opsets 7-9), NCHW, resizing H and W.
 *
 * Every mode is linear in x: each output pixel is a weighted sum of input pixels, and the weights
 * factor into one table per axis (the ONNX reference interpolates axis by axis, so the 2-D map is
 * the product of two 1-D maps). init builds the tables; for output o of an axis, taps t give an
 * input index i_t (clamped to the image: the reference pads with edge values) and a weight w_t:
 *   Forward:  tmp[c,h,ow] = Σ_t ww_t · x[c,h,i_t(ow)]          (along W)
 *             y[c,oh,ow]  = Σ_t wh_t · tmp[c,i_t(oh),ow]       (along H)
 *   Backward (the transpose of the same map, what PyTorch's upsample_*_backward computes):
 *             dtmp[c,i_t(oh),ow] += wh_t · dy[c,oh,ow]
 *             dx[c,h,i_t(ow)]    += ww_t · dtmp[c,h,ow]
 *   nearest routes dy to the source pixel (accumulating); linear and cubic spread it with the
 *   forward's weights. tf_crop_and_resize outputs that fall outside the image are
 *   extrapolation_value (a constant: no gradient).
 * Source coordinate x of output o (ONNX onnx/defs/tensor/defs.cc, docs/Operators.md "Resize";
 * scale = output/input length, or the given scale; L = scale · in, the "length_resized"):
 *   half_pixel          (o + 0.5) / scale - 0.5            (PyTorch's align_corners=False)
 *   pytorch_half_pixel  L > 1 ? (o + 0.5) / scale - 0.5 : 0  (the spec's 0; ONNX's reference code
 *                       uses -0.5, which differs only for cubic with one output pixel)
 *   align_corners       L == 1 ? 0 : o · (in - 1) / (L - 1)
 *   asymmetric          o / scale                          (PyTorch's nearest; Upsample; Resize-10)
 *   tf_half_pixel_for_nn (o + 0.5) / scale
 *   tf_crop_and_resize  L > 1 ? r0 (in-1) + o (r1-r0)(in-1)/(L-1) : (r0+r1)(in-1)/2; outside [0, in-1]
 *                       the output is extrapolation_value (roi = constant [r0.., r1..])
 * Weights at x:
 *   nearest  one tap at round(x) per nearest_mode: round_prefer_floor, round_prefer_ceil, floor,
 *            ceil (an integer x is itself). Upsample and Resize-10 use floor with asymmetric, as
 *            PyTorch's nearest does (onnxruntime ceils when downsampling there; PyTorch never does).
 *   linear   1 - |i - x| for |i - x| < 1
 *   cubic    Keys' kernel with a = cubic_coeff_a (default -0.75, PyTorch's bicubic) for |i - x| < 2
 *   exclude_outside=1 (linear, cubic): taps outside the image get weight 0, the rest sums to 1.
 *   antialias=1 (opset 18, linear/cubic, downsampling by s < 1): the kernel is stretched by 1/s,
 *            w_i = k(s (i - x)), normalized to sum 1.
 * Output size: sizes, or floor(in · scale) with the product in float32 (as onnxruntime computes it;
 * a scale of 0.7f on 10 pixels gives 7, PyTorch's size, where a float64 product would give 6);
 * tf_crop_and_resize multiplies in by (r1 - r0). keep_aspect_ratio_policy (18, with sizes):
 * not_larger / not_smaller use one scale = min / max of sizes/in over the axes, out = ⌊scale·in + ½⌋.
 * Opsets: Upsample-7 takes scales as an attribute, Upsample-9 and Resize-10 as input 1 (modes
 * nearest|linear, asymmetric coordinates); Resize-11 has inputs (X, roi, scales, sizes) and the
 * attributes above; 13 makes roi and scales optional; 18 adds antialias, axes and
 * keep_aspect_ratio_policy. tf_half_pixel_for_nn (dropped from the spec at 13) is accepted.
 * The batch scale must be 1 and the channel axis must map to itself: anything else is refused (the
 * engine never mixes the images of a batch, and resizing channels is outside CNN classifiers).
 * Both are checked on the tap tables, so tf_half_pixel_for_nn with ceil / round_prefer_ceil, which
 * per the spec moves channel c to c + 1 even at scale 1, is refused too, unless opset 18's axes
 * leaves the batch and channel axes out (an axis not listed is not resized at all).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../graph.h"

enum { RS_NEAREST, RS_LINEAR, RS_CUBIC };
enum { CT_HALF_PIXEL, CT_PYTORCH_HALF_PIXEL, CT_ALIGN_CORNERS, CT_ASYMMETRIC, CT_TF_HALF_PIXEL_NN, CT_TF_CROP };
enum { NM_ROUND_PREFER_FLOOR, NM_ROUND_PREFER_CEIL, NM_FLOOR, NM_CEIL };

#define RS_MAX_OUT (1 << 24)      /* output height or width */
#define RS_MAX_ELEMS ((size_t)1 << 30) /* output elements per image */
#define RS_MAX_WINDOW (1 << 22)   /* taps of one output before clamping (antialias stretches the kernel) */
#define A8(b) (((size_t)(b) + 7) & ~(size_t)7)

typedef struct {
    int mode, coord, nearest, exclude_outside, antialias;
    double cubic_a;
} rs_cfg_t;

/* one axis: output o reads taps off[o] .. off[o+1]-1 (input idx[t], weight w[t]); outside[o]: the
 * output is extrapolation_value (tf_crop_and_resize) */
typedef struct {
    int n_out, n_taps;
    int *off, *idx;
    float *w;
    unsigned char *outside;
} rs_axis_t;

typedef struct {
    int C, H, W, Ho, Wo;
    int any_outside;
    float extrap;
    rs_axis_t ah, aw; /* their arrays follow in the same allocation (n->p is freed with free()) */
} resize_p;

/* one axis of the resize: lengths, scale, L (length_resized) and roi */
typedef struct {
    int in, out;
    double scale, len, r0, r1;
} rs_dim_t;

static double keys(double d, double a)
{
    d = fabs(d);
    if (d <= 1) return ((a + 2) * d - (a + 3)) * d * d + 1;
    if (d < 2) return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a;
    return 0;
}

static double src_coord(const rs_cfg_t *c, const rs_dim_t *d, int o)
{
    const double in1 = d->in - 1;
    switch (c->coord) {
    case CT_HALF_PIXEL: return (o + 0.5) / d->scale - 0.5;
    case CT_PYTORCH_HALF_PIXEL: return d->len > 1 ? (o + 0.5) / d->scale - 0.5 : 0;
    case CT_ALIGN_CORNERS: return d->len == 1 ? 0 : o * in1 / (d->len - 1);
    case CT_ASYMMETRIC: return o / d->scale;
    case CT_TF_HALF_PIXEL_NN: return (o + 0.5) / d->scale;
    default:
        return d->len > 1 ? d->r0 * in1 + o * (d->r1 - d->r0) * in1 / (d->len - 1) : 0.5 * (d->r0 + d->r1) * in1;
    }
}

/* Taps of output o into idx/w (room for cap); returns the count, 0 for an outside output (*outside
 * set), or -1 when the weights do not normalize (all excluded). Indices are clamped and merged. */
static int taps_of(const rs_cfg_t *c, const rs_dim_t *d, int o, int *idx, double *w, int cap, int *outside)
{
    double x = src_coord(c, d, o);
    *outside = 0;
    if (c->coord == CT_TF_CROP && !(x >= 0 && x <= d->in - 1)) {
        *outside = 1;
        return 0;
    }
    if (!isfinite(x)) x = 0;
    /* beyond a few pixels past the edge every tap clamps to the edge pixel: bound x (ints stay small) */
    const double far = 8.0 + (double)cap;
    if (x < -far) x = -far;
    if (x > d->in + far) x = d->in + far;
    int k = 0;
    if (c->mode == RS_NEAREST) {
        double fl = floor(x), fr = x - fl;
        double r = fr == 0 ? fl
                 : c->nearest == NM_ROUND_PREFER_FLOOR ? (fr <= 0.5 ? fl : fl + 1)
                 : c->nearest == NM_ROUND_PREFER_CEIL ? (fr < 0.5 ? fl : fl + 1)
                 : c->nearest == NM_FLOOR ? fl : fl + 1;
        idx[0] = r < 0 ? 0 : r > d->in - 1 ? d->in - 1 : (int)r;
        w[0] = 1;
        return 1;
    }
    const double s = c->antialias && d->scale < 1 ? d->scale : 1; /* the kernel is stretched by 1/s */
    const double support = (c->mode == RS_LINEAR ? 1.0 : 2.0) / s;
    const int64_t lo = (int64_t)ceil(x - support), hi = (int64_t)floor(x + support);
    double sum = 0;
    int last = -1;
    for (int64_t i = lo; i <= hi; i++) {
        double v = c->mode == RS_LINEAR ? 1 - fabs((double)(i - x) * s) : keys((double)(i - x) * s, c->cubic_a);
        if (c->mode == RS_LINEAR && v < 0) v = 0;
        if (c->exclude_outside && (i < 0 || i >= d->in)) v = 0;
        sum += v;
        if (v == 0) continue;
        int ci = i < 0 ? 0 : i >= d->in ? d->in - 1 : (int)i;
        if (ci == last) {
            w[k - 1] += v;
        } else {
            if (k >= cap) return -1;
            idx[k] = ci;
            w[k++] = v;
            last = ci;
        }
    }
    if (c->antialias || c->exclude_outside) {
        if (!(sum != 0) || !isfinite(sum)) return -1;
        for (int j = 0; j < k; j++) w[j] /= sum;
    }
    return k;
}

static int window_cap(const rs_cfg_t *c, const rs_dim_t *d)
{
    if (c->mode == RS_NEAREST) return 1;
    const double s = c->antialias && d->scale < 1 ? d->scale : 1;
    double win = 2 * (c->mode == RS_LINEAR ? 1.0 : 2.0) / s + 3;
    return win > RS_MAX_WINDOW ? -1 : (int)win;
}

/* Does the axis map each output to the same input with weight 1 (the batch and channel axes must)? */
static int axis_is_identity(const rs_cfg_t *c, const rs_dim_t *d)
{
    int cap = window_cap(c, d);
    if (cap < 0 || d->out != d->in) return 0;
    int *idx = malloc(sizeof(int) * (size_t)cap);
    double *w = malloc(sizeof(double) * (size_t)cap);
    int ok = idx && w;
    for (int o = 0; ok && o < d->out; o++) {
        int outside, k = taps_of(c, d, o, idx, w, cap, &outside);
        ok = k == 1 && idx[0] == o && fabs(w[0] - 1) < 1e-9;
    }
    free(idx);
    free(w);
    return ok;
}

/* taps of a whole axis into freshly malloc'd arrays; returns the tap count or -1 */
static int axis_build(const rs_cfg_t *c, const rs_dim_t *d, int **off, int **idx, double **w, unsigned char **outside)
{
    int cap = window_cap(c, d);
    if (cap < 0) return -1;
    size_t room = (size_t)d->out * (size_t)(cap < d->in ? cap : d->in);
    *off = malloc(sizeof(int) * ((size_t)d->out + 1));
    *idx = malloc(sizeof(int) * room);
    *w = malloc(sizeof(double) * room);
    *outside = calloc((size_t)d->out, 1);
    int *ti = malloc(sizeof(int) * (size_t)cap);
    double *tw = malloc(sizeof(double) * (size_t)cap);
    int total = -1;
    if (*off && *idx && *w && *outside && ti && tw && room < INT32_MAX) {
        size_t t = 0;
        for (int o = 0; o < d->out; o++) {
            int out_flag, k = taps_of(c, d, o, ti, tw, cap, &out_flag);
            if (k < 0 || t + (size_t)k > room) {
                t = (size_t)-1;
                break;
            }
            (*off)[o] = (int)t;
            (*outside)[o] = (unsigned char)out_flag;
            memcpy(*idx + t, ti, sizeof(int) * (size_t)k);
            memcpy(*w + t, tw, sizeof(double) * (size_t)k);
            t += (size_t)k;
        }
        if (t != (size_t)-1) {
            (*off)[d->out] = (int)t;
            total = (int)t;
        }
    }
    free(ti);
    free(tw);
    return total;
}

/* Input k as doubles: *cnt = -1 when absent (no input or ""), 0 when empty; error when not constant. */
static int const_doubles(const graph_t *g, const node_t *n, int k, double *out, int max, int *cnt, eng_err_t *err)
{
    *cnt = -1;
    if (k >= n->n_in || n->in[k] < 0) return ENG_OK;
    const value_t *v = nin(g, n, k);
    if (!v->is_const)
        return node_err(g, n, err, ENG_EUNSUPPORTED, "input %d ('%s') must be a constant (it could not be folded)", k,
                        v->name);
    if (v->size > (size_t)max)
        return node_err(g, n, err, ENG_EFORMAT, "input %d ('%s') has %zu values; expected at most %d", k, v->name,
                        v->size, max);
    for (size_t i = 0; i < v->size; i++) out[i] = v->dtype == DT_FLOAT ? (double)v->f[i] : (double)v->i64[i];
    *cnt = (int)v->size;
    return ENG_OK;
}

static int parse_enum(const char *s, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i])) return i;
    return -1;
}

static int resize_init_common(graph_t *g, node_t *n, eng_err_t *err, int upsample)
{
    int rc = node_need_act(g, n, 0, err);
    if (rc) return rc;
    const value_t *x = nin(g, n, 0);
    if (x->rank != 4)
        return node_err(g, n, err, ENG_EUNSUPPORTED, "only 4-D (N,C,H,W) input is supported (rank %d)", x->rank);
    const int legacy = upsample || g->opset < 11; /* Upsample-7/9, Resize-10 */
    rs_cfg_t c = {.mode = RS_NEAREST, .coord = CT_ASYMMETRIC, .nearest = NM_FLOOR, .cubic_a = -0.75};
    static const char *const modes[] = {"nearest", "linear", "cubic"};
    const char *ms = attr_str(n, "mode", "nearest");
    c.mode = parse_enum(ms, modes, legacy ? 2 : 3);
    if (c.mode < 0)
        return node_err(g, n, err, ENG_EUNSUPPORTED, "mode '%s' is not supported (%s)", ms,
                        legacy ? "nearest, linear" : "nearest, linear, cubic");
    float extrap = 0;
    int keep = 0; /* keep_aspect_ratio_policy: 0 stretch, 1 not_larger, 2 not_smaller */
    int64_t axes[4] = {0, 1, 2, 3};
    int n_axes = 4;
    if (!legacy) {
        static const char *const coords[] = {"half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric",
                                             "tf_half_pixel_for_nn", "tf_crop_and_resize"};
        static const char *const nearests[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
        static const char *const keeps[] = {"stretch", "not_larger", "not_smaller"};
        const char *cs = attr_str(n, "coordinate_transformation_mode", "half_pixel");
        const char *ns = attr_str(n, "nearest_mode", "round_prefer_floor");
        if ((c.coord = parse_enum(cs, coords, 6)) < 0)
            return node_err(g, n, err, ENG_EUNSUPPORTED, "coordinate_transformation_mode '%s' is not supported", cs);
        if ((c.nearest = parse_enum(ns, nearests, 4)) < 0)
            return node_err(g, n, err, ENG_EUNSUPPORTED, "nearest_mode '%s' is not supported", ns);
        c.cubic_a = attr_float(n, "cubic_coeff_a", -0.75f);
        c.exclude_outside = c.mode != RS_NEAREST && attr_int(n, "exclude_outside", 0) != 0;
        extrap = attr_float(n, "extrapolation_value", 0.f);
        if (!isfinite(c.cubic_a) || !isfinite(extrap))
            return node_err(g, n, err, ENG_EFORMAT, "cubic_coeff_a and extrapolation_value must be finite");
        if (g->opset >= 18) {
            c.antialias = c.mode != RS_NEAREST && attr_int(n, "antialias", 0) != 0;
            const char *ks = attr_str(n, "keep_aspect_ratio_policy", "stretch");
            if ((keep = parse_enum(ks, keeps, 3)) < 0)
                return node_err(g, n, err, ENG_EUNSUPPORTED, "keep_aspect_ratio_policy '%s' is not supported", ks);
            int na = attr_ints(n, "axes", axes, 4);
            if (na > 4 || na == 0) return node_err(g, n, err, ENG_EFORMAT, "axes must list 1 to 4 axes of the 4-D input");
            if (na > 0) {
                n_axes = na;
                for (int i = 0; i < na; i++) {
                    if (axes[i] < -4 || axes[i] > 3) return node_err(g, n, err, ENG_EFORMAT, "axis %lld is out of range", (long long)axes[i]);
                    if (axes[i] < 0) axes[i] += 4;
                    for (int j = 0; j < i; j++)
                        if (axes[j] == axes[i]) return node_err(g, n, err, ENG_EFORMAT, "axis %lld is repeated", (long long)axes[i]);
                }
            }
        }
    }

    /* scales / sizes / roi, one entry per listed axis */
    double scales[4], sizes[4], roi[8];
    int n_scales = -1, n_sizes = -1, n_roi = -1;
    if (upsample && g->opset < 9) {
        const attr_t *a = attr_get(n, "scales");
        if (!a || a->type != AT_FLOATS) return node_err(g, n, err, ENG_EFORMAT, "the scales attribute is missing");
        if (a->n > 4) return node_err(g, n, err, ENG_EFORMAT, "scales has %d values for a 4-D input", a->n);
        for (int i = 0; i < a->n; i++) scales[i] = a->floats[i];
        n_scales = a->n;
    } else if (legacy) {
        if ((rc = const_doubles(g, n, 1, scales, 4, &n_scales, err))) return rc;
    } else {
        if ((rc = const_doubles(g, n, 1, roi, 8, &n_roi, err)) || (rc = const_doubles(g, n, 2, scales, 4, &n_scales, err)) ||
            (rc = const_doubles(g, n, 3, sizes, 4, &n_sizes, err)))
            return rc;
    }
    if (n_scales == 0) n_scales = -1; /* an empty tensor stands for an omitted input (opset 11) */
    if (n_sizes == 0) n_sizes = -1;
    if (n_roi == 0) n_roi = -1;
    if (legacy && n_scales <= 0) return node_err(g, n, err, ENG_EFORMAT, "the scales input is missing or empty");
    if ((n_scales > 0) == (n_sizes > 0))
        return node_err(g, n, err, ENG_EFORMAT, "exactly one of scales and sizes must be given");
    if ((n_scales > 0 && n_scales != n_axes) || (n_sizes > 0 && n_sizes != n_axes))
        return node_err(g, n, err, ENG_EFORMAT, "%s has %d values for %d axes", n_scales > 0 ? "scales" : "sizes",
                        n_scales > 0 ? n_scales : n_sizes, n_axes);
    if (c.coord == CT_TF_CROP && n_roi != 2 * n_axes)
        return node_err(g, n, err, ENG_EFORMAT, "tf_crop_and_resize needs a constant roi of %d values", 2 * n_axes);

    rs_dim_t d[4];
    for (int i = 0; i < 4; i++) {
        d[i].in = i == 0 ? 1 : (int)x->dims[i];
        d[i].out = d[i].in;
        d[i].scale = 1;
        d[i].r0 = 0;
        d[i].r1 = 1;
    }
    double common = keep == 1 ? INFINITY : -INFINITY;
    for (int k = 0; k < n_axes; k++) {
        rs_dim_t *a = &d[axes[k]];
        if (c.coord == CT_TF_CROP) {
            a->r0 = roi[k];
            a->r1 = roi[n_axes + k];
            if (!isfinite(a->r0) || !isfinite(a->r1)) return node_err(g, n, err, ENG_EFORMAT, "roi must be finite");
        }
        if (n_scales > 0) {
            double s = scales[k];
            if (!(s > 0) || !isfinite(s) || s > 1e6)
                return node_err(g, n, err, ENG_EFORMAT, "scale %g on axis %lld is not a positive number", s, (long long)axes[k]);
            float prod = (float)a->in * (float)s;
            if (c.coord == CT_TF_CROP) prod *= (float)(a->r1 - a->r0);
            double o = floor((double)prod);
            if (!(o >= 1) || o > RS_MAX_OUT)
                return node_err(g, n, err, ENG_EFORMAT, "scale %g gives %g pixels on axis %lld from %d", s, o,
                                (long long)axes[k], a->in);
            a->out = (int)o;
            a->scale = s;
        } else {
            double sz = sizes[k];
            if (!(sz >= 1) || sz > RS_MAX_OUT)
                return node_err(g, n, err, ENG_EFORMAT, "size %g on axis %lld is out of range", sz, (long long)axes[k]);
            a->out = (int)sz;
            a->scale = sz / a->in;
            if (keep == 1 && a->scale < common) common = a->scale;
            if (keep == 2 && a->scale > common) common = a->scale;
        }
    }
    if (n_sizes > 0 && keep)
        for (int k = 0; k < n_axes; k++) {
            rs_dim_t *a = &d[axes[k]];
            double o = floor(common * a->in + 0.5);
            if (!(o >= 1) || o > RS_MAX_OUT)
                return node_err(g, n, err, ENG_EFORMAT, "keep_aspect_ratio_policy gives %g pixels on axis %lld", o,
                                (long long)axes[k]);
            a->scale = common;
            a->out = (int)o;
        }
    int listed[4] = {0, 0, 0, 0}; /* axes not listed (opset 18) are not resized at all */
    for (int k = 0; k < n_axes; k++) listed[axes[k]] = 1;
    for (int i = 0; i < 4; i++) d[i].len = d[i].scale * d[i].in;

    /* the batch: scale 1, and two images must map to themselves (tf_half_pixel_for_nn + ceil does not) */
    if (d[0].out != 1 || d[0].scale != 1)
        return node_err(g, n, err, ENG_EUNSUPPORTED,
                        "resizing the batch axis (scale %g) would mix the images of a batch; only H and W may be resized",
                        d[0].scale);
    rs_dim_t nb = d[0];
    nb.in = nb.out = 2;
    nb.len = 2;
    if (listed[0] && !axis_is_identity(&c, &nb))
        return node_err(g, n, err, ENG_EUNSUPPORTED,
                        "this coordinate mapping moves the batch axis (each image would read another); refused");
    if (listed[1] && !axis_is_identity(&c, &d[1]))
        return node_err(g, n, err, ENG_EUNSUPPORTED,
                        "resizing or shifting the channel axis (%d -> %d channels) is not supported; only H and W", d[1].in,
                        d[1].out);
    if ((size_t)d[1].out * (size_t)d[2].out * (size_t)d[3].out > RS_MAX_ELEMS ||
        (size_t)d[2].in * (size_t)d[3].out > RS_MAX_ELEMS) /* the scratch: input rows x output columns */
        return node_err(g, n, err, ENG_EFORMAT, "the output (%d x %d x %d) is too large", d[1].out, d[2].out, d[3].out);

    /* the two spatial tables, packed after the parameters */
    int *off[2] = {0, 0}, *idx[2] = {0, 0};
    double *w[2] = {0, 0};
    unsigned char *outs[2] = {0, 0};
    int nt[2];
    const rs_cfg_t ident = {.mode = RS_NEAREST, .coord = CT_ASYMMETRIC, .nearest = NM_FLOOR}; /* unlisted axes */
    nt[0] = axis_build(listed[2] ? &c : &ident, &d[2], &off[0], &idx[0], &w[0], &outs[0]);
    nt[1] = nt[0] < 0 ? -1 : axis_build(listed[3] ? &c : &ident, &d[3], &off[1], &idx[1], &w[1], &outs[1]);
    resize_p *p = NULL;
    if (nt[0] >= 0 && nt[1] >= 0) {
        size_t bytes = A8(sizeof(resize_p));
        for (int a = 0; a < 2; a++) {
            size_t no = (size_t)d[2 + a].out, t = (size_t)nt[a];
            bytes += A8(sizeof(int) * (no + 1)) + A8(sizeof(int) * t) + A8(sizeof(float) * t) + A8(no);
        }
        p = calloc(1, bytes);
    }
    if (p) {
        n->p = p;
        p->C = d[1].in;
        p->H = d[2].in;
        p->W = d[3].in;
        p->Ho = d[2].out;
        p->Wo = d[3].out;
        p->extrap = extrap;
        char *q = (char *)p + A8(sizeof(resize_p)); /* every array starts 8-byte aligned */
        for (int a = 0; a < 2; a++) {
            rs_axis_t *ax = a ? &p->aw : &p->ah;
            int no = d[2 + a].out;
            ax->n_out = no;
            ax->n_taps = nt[a];
            ax->off = (int *)q;
            q += A8(sizeof(int) * ((size_t)no + 1));
            ax->idx = (int *)q;
            q += A8(sizeof(int) * (size_t)nt[a]);
            ax->w = (float *)q;
            q += A8(sizeof(float) * (size_t)nt[a]);
            ax->outside = (unsigned char *)q;
            q += A8((size_t)no);
            memcpy(ax->off, off[a], sizeof(int) * ((size_t)no + 1));
            memcpy(ax->idx, idx[a], sizeof(int) * (size_t)nt[a]);
            for (int t = 0; t < nt[a]; t++) ax->w[t] = (float)w[a][t];
            memcpy(ax->outside, outs[a], (size_t)no);
            for (int o = 0; o < no; o++) p->any_outside |= ax->outside[o];
        }
    }
    for (int a = 0; a < 2; a++) {
        free(off[a]);
        free(idx[a]);
        free(w[a]);
        free(outs[a]);
    }
    if (nt[0] < 0 || nt[1] < 0)
        return node_err(g, n, err, ENG_EUNSUPPORTED, "the interpolation weights could not be built (antialias window "
                                                     "too wide or all taps excluded)");
    if (!p) return node_err(g, n, err, ENG_ENOMEM, "out of memory");
    int64_t od[4] = {1, p->C, p->Ho, p->Wo};
    value_set_shape(nout(g, n), 4, od);
    n->scratch_fixed = (size_t)p->H * p->Wo;
    n->flops = 2.0 * p->C * ((double)p->H * p->aw.n_taps + (double)p->Wo * p->ah.n_taps);
    return ENG_OK;
}

static int resize_init(graph_t *g, node_t *n, eng_err_t *err) { return resize_init_common(g, n, err, 0); }
static int upsample_init(graph_t *g, node_t *n, eng_err_t *err) { return resize_init_common(g, n, err, 1); }

static void resize_forward(const node_t *nd, const exec_t *e)
{
    const resize_p *p = nd->p;
    const rs_axis_t *ah = &p->ah, *aw = &p->aw;
    const size_t in_hw = (size_t)p->H * p->W, out_hw = (size_t)p->Ho * p->Wo;
    float *tmp = e->scratch;
    for (size_t ic = 0; ic < (size_t)e->n * p->C; ic++) {
        const float *x = e->x[0] + ic * in_hw;
        float *y = e->y + ic * out_hw;
        for (int h = 0; h < p->H; h++) { /* along W */
            const float *xr = x + (size_t)h * p->W;
            float *tr = tmp + (size_t)h * p->Wo;
            for (int ow = 0; ow < p->Wo; ow++) {
                float s = 0;
                for (int t = aw->off[ow]; t < aw->off[ow + 1]; t++) s += aw->w[t] * xr[aw->idx[t]];
                tr[ow] = s;
            }
        }
        for (int oh = 0; oh < p->Ho; oh++) { /* along H */
            float *restrict yr = y + (size_t)oh * p->Wo;
            int t0 = ah->off[oh], t1 = ah->off[oh + 1];
            if (ah->outside[oh] || t0 == t1) {
                for (int ow = 0; ow < p->Wo; ow++) yr[ow] = ah->outside[oh] ? p->extrap : 0.f;
                continue;
            }
            const float *restrict tr = tmp + (size_t)ah->idx[t0] * p->Wo;
            float w0 = ah->w[t0];
            for (int ow = 0; ow < p->Wo; ow++) yr[ow] = w0 * tr[ow];
            for (int t = t0 + 1; t < t1; t++) {
                const float *restrict tt = tmp + (size_t)ah->idx[t] * p->Wo;
                float wt = ah->w[t];
                for (int ow = 0; ow < p->Wo; ow++) yr[ow] += wt * tt[ow];
            }
            if (p->any_outside)
                for (int ow = 0; ow < p->Wo; ow++)
                    if (aw->outside[ow]) yr[ow] = p->extrap;
        }
    }
}

static void resize_backward(const node_t *nd, const exec_t *e)
{
    const resize_p *p = nd->p;
    if (!e->dx[0]) return;
    const rs_axis_t *ah = &p->ah, *aw = &p->aw;
    const size_t in_hw = (size_t)p->H * p->W, out_hw = (size_t)p->Ho * p->Wo;
    float *dtmp = e->scratch;
    for (size_t ic = 0; ic < (size_t)e->n * p->C; ic++) {
        const float *dy = e->dy + ic * out_hw;
        float *dx = e->dx[0] + ic * in_hw;
        memset(dtmp, 0, sizeof(float) * (size_t)p->H * p->Wo);
        for (int oh = 0; oh < p->Ho; oh++) { /* transpose of the H pass */
            if (ah->outside[oh]) continue;
            const float *restrict dyr = dy + (size_t)oh * p->Wo;
            for (int t = ah->off[oh]; t < ah->off[oh + 1]; t++) {
                float *restrict tr = dtmp + (size_t)ah->idx[t] * p->Wo;
                float wt = ah->w[t];
                for (int ow = 0; ow < p->Wo; ow++) tr[ow] += wt * dyr[ow];
            }
        }
        if (!e->acc[0]) memset(dx, 0, sizeof(float) * in_hw);
        for (int h = 0; h < p->H; h++) { /* transpose of the W pass */
            const float *tr = dtmp + (size_t)h * p->Wo;
            float *xr = dx + (size_t)h * p->W;
            for (int ow = 0; ow < p->Wo; ow++) {
                if (aw->outside[ow]) continue;
                float gv = tr[ow];
                for (int t = aw->off[ow]; t < aw->off[ow + 1]; t++) xr[aw->idx[t]] += aw->w[t] * gv;
            }
        }
    }
}

const op_def_t op_resize = {.name = "Resize", .init = resize_init, .forward = resize_forward,
    .backward = resize_backward, .unary = 0, .opset_min = 10, .opset_max = 18,
    .doc = "NCHW, H and W (constant scales or sizes; N and C unchanged): nearest (every coordinate_transformation_mode "
           "and nearest_mode), linear, cubic (cubic_coeff_a, exclude_outside), tf_crop_and_resize, antialias, axes, "
           "keep_aspect_ratio_policy"};

const op_def_t op_upsample = {.name = "Upsample", .init = upsample_init, .forward = resize_forward,
    .backward = resize_backward, .unary = 0, .opset_min = 7, .opset_max = 9,
    .doc = "NCHW, H and W (constant scales; N and C scales 1): nearest (floor) and linear, asymmetric coordinates"};
