/* Pooling, NCHW, 2-D: MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool.
 *
 * MaxPool:     y[c,o] = max over the window (padding is -inf); forward saves the argmax of each
 *              output (the first maximum in scan order, as PyTorch), backward routes dy there:
 *              dx[c, argmax] += dy[c, o].
 * AveragePool: y = sum(window ∩ input) / divisor, with PyTorch's divisor: the window clipped to
 *              the padded input when count_include_pad=1, clipped to the input otherwise.
 *              Backward spreads dy / divisor over the same window.
 * ceil_mode:   out = ceil((H + pads - ext) / s) + 1, minus one when the last window would start
 *              in the end padding (PyTorch's rule).
 * Global*:     over all H*W; GlobalMaxPool saves its argmax like MaxPool. GlobalAveragePool sums in double:
 *              a float running sum over a large map whose values share a sign and magnitude (a white
 *              letterbox band) drifts by up to H*W ulps, which PyTorch's blocked sums do not (regnet_y_3_2gf's
 *              squeeze-excitation pools on chelsea letterboxed on white: 38x PyTorch float32's error at the
 *              first SE's output, 105 kink flips; tests/zoo/zoo_check.py).
 *
 * Ties: exact comparisons, the first maximum in scan order wins (PyTorch's CPU kernel: `val > maxval`, index
 * of the first; padding never wins). Flat image regions (letterbox bands, saturated pixels) make exact ties
 * common: PyTorch computes identical input patches to identical bits in float32 and float64, so ties there
 * are real and its gradient goes to the window's first position. The engine keeps them real in the
 * convolutions (conv.c, same_patch_fixup), not by a tolerance here: "within k ulps of the maximum is a tie"
 * needed k ~ 128 of the window maximum to absorb the old position-dependent rounding, and on the fixed
 * engine every k > 0 misroutes more near-ties that float64 resolves by value (vgg11_bn at 224, 5 MaxPools,
 * 6 images: exact 7 windows unlike float64, as many as PyTorch float32; k = 2 of the window max 11, k = 8
 * 33, k = 2 of the layer's max 55; tests/conformance/tie_rules.py, docs/NUMERICS.md).
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../graph.h"

typedef struct {
    int C, H, W, Ho, Wo, kh, kw, sh, sw, ph, pw, ph1, pw1, dh, dw;
    int include_pad, is_max, global;
} pool_p;

static int pool_dim(int in, int k, int s, int d, int p0, int p1, int ceil_mode)
{
    int ext = d * (k - 1) + 1;
    int span = in + p0 + p1 - ext;
    if (span < 0) return 0;
    int out = ceil_mode ? (span + s - 1) / s + 1 : span / s + 1;
    if (ceil_mode && (out - 1) * s >= in + p0) out--;
    return out;
}

static int pool_init_common(graph_t *g, node_t *n, eng_err_t *err, int is_max, int global)
{
    int rc = node_need_act(g, n, 0, err);
    if (rc) return rc;
    const value_t *x = nin(g, n, 0);
    if (x->rank != 4) return node_err(g, n, err, ENG_EUNSUPPORTED, "only 2-D pooling (rank-4 input) is supported");
    pool_p *p = calloc(1, sizeof *p);
    if (!p) return node_err(g, n, err, ENG_ENOMEM, "out of memory");
    n->p = p;
    p->C = (int)x->dims[1];
    p->H = (int)x->dims[2];
    p->W = (int)x->dims[3];
    p->is_max = is_max;
    p->global = global;
    if (global) {
        p->kh = p->H;
        p->kw = p->W;
        p->sh = p->sw = p->dh = p->dw = 1;
        p->Ho = p->Wo = 1;
    } else {
        int64_t ks[2], st[2] = {1, 1}, dl[2] = {1, 1}, pads[4] = {0, 0, 0, 0};
        if (attr_ints(n, "kernel_shape", ks, 2) != 2) return node_err(g, n, err, ENG_EFORMAT, "kernel_shape must have 2 values");
        int ns = attr_ints(n, "strides", st, 2), nd = attr_ints(n, "dilations", dl, 2), np = attr_ints(n, "pads", pads, 4);
        if ((ns != -1 && ns != 2) || (nd != -1 && nd != 2) || (np != -1 && np != 4))
            return node_err(g, n, err, ENG_EFORMAT, "strides/dilations/pads have the wrong length");
        if (ks[0] < 1 || ks[1] < 1 || st[0] < 1 || st[1] < 1 || dl[0] < 1 || dl[1] < 1 || pads[0] < 0 || pads[1] < 0 ||
            pads[2] < 0 || pads[3] < 0)
            return node_err(g, n, err, ENG_EFORMAT, "kernel, strides and dilations must be >= 1 and pads >= 0");
        if (!is_max && (dl[0] != 1 || dl[1] != 1)) return node_err(g, n, err, ENG_EUNSUPPORTED, "dilated AveragePool");
        p->kh = (int)ks[0]; p->kw = (int)ks[1];
        p->sh = (int)st[0]; p->sw = (int)st[1];
        p->dh = (int)dl[0]; p->dw = (int)dl[1];
        const char *ap = attr_str(n, "auto_pad", "NOTSET");
        int ceil_mode = (int)attr_int(n, "ceil_mode", 0);
        if (!strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER")) {
            p->Ho = (p->H + p->sh - 1) / p->sh;
            p->Wo = (p->W + p->sw - 1) / p->sw;
            int th = (p->Ho - 1) * p->sh + p->dh * (p->kh - 1) + 1 - p->H, tw = (p->Wo - 1) * p->sw + p->dw * (p->kw - 1) + 1 - p->W;
            if (th < 0) th = 0;
            if (tw < 0) tw = 0;
            int upper = !strcmp(ap, "SAME_UPPER");
            p->ph = upper ? th / 2 : th - th / 2; p->ph1 = th - p->ph;
            p->pw = upper ? tw / 2 : tw - tw / 2; p->pw1 = tw - p->pw;
        } else if (!strcmp(ap, "VALID") || !strcmp(ap, "NOTSET")) {
            if (!strcmp(ap, "VALID")) pads[0] = pads[1] = pads[2] = pads[3] = 0;
            p->ph = (int)pads[0]; p->pw = (int)pads[1]; p->ph1 = (int)pads[2]; p->pw1 = (int)pads[3];
            p->Ho = pool_dim(p->H, p->kh, p->sh, p->dh, p->ph, p->ph1, ceil_mode);
            p->Wo = pool_dim(p->W, p->kw, p->sw, p->dw, p->pw, p->pw1, ceil_mode);
        } else {
            return node_err(g, n, err, ENG_EFORMAT, "unknown auto_pad '%s'", ap);
        }
        if (p->Ho < 1 || p->Wo < 1) return node_err(g, n, err, ENG_EFORMAT, "the window is larger than the padded input");
        p->include_pad = (int)attr_int(n, "count_include_pad", 0);
        /* storage_order only orders the optional Indices output, which graph_init_node refuses to
         * have used: the values are the same either way */
    }
    int64_t od[4] = {1, p->C, p->Ho, p->Wo};
    value_set_shape(nout(g, n), 4, od);
    if (is_max) n->aux_per_image = sizeof(int32_t) * (size_t)p->C * p->Ho * p->Wo;
    n->flops = (double)p->C * p->Ho * p->Wo * p->kh * p->kw;
    return ENG_OK;
}

static int maxpool_init(graph_t *g, node_t *n, eng_err_t *err) { return pool_init_common(g, n, err, 1, 0); }
static int avgpool_init(graph_t *g, node_t *n, eng_err_t *err) { return pool_init_common(g, n, err, 0, 0); }
static int gmaxpool_init(graph_t *g, node_t *n, eng_err_t *err) { return pool_init_common(g, n, err, 1, 1); }
static int gavgpool_init(graph_t *g, node_t *n, eng_err_t *err) { return pool_init_common(g, n, err, 0, 1); }

/* The general loop below takes a tap when it is the window's first, greater than the best so far, or
 * NaN (so a NaN wins, as in PyTorch). The two fast paths make the same comparisons in the same
 * order, so the values and the argmax indices are the same; they only drop the bounds checks. */
#define MAX_TAKE(v, idx)                                                                                \
    do {                                                                                                \
        float v_ = (v);                                                                                 \
        if (v_ > best || isnan(v_)) {                                                                   \
            best = v_;                                                                                  \
            bi = (idx);                                                                                 \
        }                                                                                               \
    } while (0)

/* 2x2 windows, stride 2, no padding, no dilation, every window inside the input: the CNN pool */
static int pool_2x2s2(const pool_p *p)
{
    return p->kh == 2 && p->kw == 2 && p->sh == 2 && p->sw == 2 && p->ph == 0 && p->pw == 0 && p->dh == 1 && p->dw == 1 &&
           2 * p->Ho <= p->H && 2 * p->Wo <= p->W;
}

/* one window covering the whole plane (GlobalMaxPool, CBAM's channel max pool) */
static int pool_whole_plane(const pool_p *p)
{
    return p->Ho == 1 && p->Wo == 1 && p->kh == p->H && p->kw == p->W && p->ph == 0 && p->pw == 0 && p->dh == 1 &&
           p->dw == 1;
}

static void maxpool_forward(const node_t *nd, const exec_t *e)
{
    const pool_p *p = nd->p;
    const size_t in_hw = (size_t)p->H * p->W, out_hw = (size_t)p->Ho * p->Wo;
    int32_t *arg = e->aux;
    if (pool_2x2s2(p)) {
        for (size_t c = 0; c < (size_t)e->n * p->C; c++) {
            const float *x = e->x[0] + c * in_hw;
            float *y = e->y + c * out_hw;
            int32_t *a = arg + c * out_hw;
            for (int oh = 0; oh < p->Ho; oh++)
                for (int ow = 0; ow < p->Wo; ow++) {
                    int i0 = 2 * oh * p->W + 2 * ow;
                    float best = x[i0];
                    int32_t bi = i0;
                    MAX_TAKE(x[i0 + 1], i0 + 1);
                    MAX_TAKE(x[i0 + p->W], i0 + p->W);
                    MAX_TAKE(x[i0 + p->W + 1], i0 + p->W + 1);
                    y[oh * p->Wo + ow] = best;
                    a[oh * p->Wo + ow] = bi;
                }
        }
        return;
    }
    if (pool_whole_plane(p)) {
        for (size_t c = 0; c < (size_t)e->n * p->C; c++) {
            const float *x = e->x[0] + c * in_hw;
            float best = x[0];
            int32_t bi = 0;
            for (int32_t i = 1; i < (int32_t)in_hw; i++) MAX_TAKE(x[i], i);
            e->y[c] = best;
            arg[c] = bi;
        }
        return;
    }
    for (size_t c = 0; c < (size_t)e->n * p->C; c++) {
        const float *x = e->x[0] + c * in_hw;
        float *y = e->y + c * out_hw;
        int32_t *a = arg + c * out_hw;
        for (int oh = 0; oh < p->Ho; oh++)
            for (int ow = 0; ow < p->Wo; ow++) {
                float best = -INFINITY;
                int32_t bi = -1;
                for (int i = 0; i < p->kh; i++) {
                    int ih = oh * p->sh - p->ph + i * p->dh;
                    if (ih < 0 || ih >= p->H) continue;
                    for (int j = 0; j < p->kw; j++) {
                        int iw = ow * p->sw - p->pw + j * p->dw;
                        if (iw < 0 || iw >= p->W) continue;
                        float v = x[ih * p->W + iw];
                        if (v > best || isnan(v) || bi < 0) {
                            best = v;
                            bi = ih * p->W + iw;
                        }
                    }
                }
                y[oh * p->Wo + ow] = best;
                a[oh * p->Wo + ow] = bi;
            }
    }
}

static void maxpool_backward(const node_t *nd, const exec_t *e)
{
    const pool_p *p = nd->p;
    if (!e->dx[0]) return;
    const size_t in_hw = (size_t)p->H * p->W, out_hw = (size_t)p->Ho * p->Wo;
    if (!e->acc[0]) memset(e->dx[0], 0, sizeof(float) * in_hw * p->C * e->n);
    const int32_t *arg = e->aux;
    for (size_t c = 0; c < (size_t)e->n * p->C; c++) {
        float *dx = e->dx[0] + c * in_hw;
        const float *dy = e->dy + c * out_hw;
        const int32_t *a = arg + c * out_hw;
        for (size_t o = 0; o < out_hw; o++)
            if (a[o] >= 0) dx[a[o]] += dy[o];
    }
}

static float avg_divisor(const pool_p *p, int oh, int ow, int *h0, int *h1, int *w0, int *w1)
{
    int hs = oh * p->sh - p->ph, ws = ow * p->sw - p->pw;
    int he = hs + p->kh, we = ws + p->kw;
    if (he > p->H + p->ph1) he = p->H + p->ph1;
    if (we > p->W + p->pw1) we = p->W + p->pw1;
    int pool_size = (he - hs) * (we - ws);
    if (hs < 0) hs = 0;
    if (ws < 0) ws = 0;
    if (he > p->H) he = p->H;
    if (we > p->W) we = p->W;
    *h0 = hs; *h1 = he; *w0 = ws; *w1 = we;
    int cnt = p->include_pad ? pool_size : (he - hs) * (we - ws);
    return cnt > 0 ? (float)cnt : 1.f;
}

static void avgpool_forward(const node_t *nd, const exec_t *e)
{
    const pool_p *p = nd->p;
    const size_t in_hw = (size_t)p->H * p->W, out_hw = (size_t)p->Ho * p->Wo;
    for (size_t c = 0; c < (size_t)e->n * p->C; c++) {
        const float *x = e->x[0] + c * in_hw;
        float *y = e->y + c * out_hw;
        if (p->global) { /* in double: a float running sum over a 112 x 112 flat letterbox band drifts */
            double s = 0;
            for (size_t q = 0; q < in_hw; q++) s += x[q];
            y[0] = (float)(s / (double)in_hw);
            continue;
        }
        for (int oh = 0; oh < p->Ho; oh++)
            for (int ow = 0; ow < p->Wo; ow++) {
                int h0, h1, w0, w1;
                float div = avg_divisor(p, oh, ow, &h0, &h1, &w0, &w1);
                float s = 0;
                for (int ih = h0; ih < h1; ih++)
                    for (int iw = w0; iw < w1; iw++) s += x[ih * p->W + iw];
                y[oh * p->Wo + ow] = s / div;
            }
    }
}

static void avgpool_backward(const node_t *nd, const exec_t *e)
{
    const pool_p *p = nd->p;
    if (!e->dx[0]) return;
    const size_t in_hw = (size_t)p->H * p->W, out_hw = (size_t)p->Ho * p->Wo;
    if (!e->acc[0] && !p->global) memset(e->dx[0], 0, sizeof(float) * in_hw * p->C * e->n);
    for (size_t c = 0; c < (size_t)e->n * p->C; c++) {
        float *dx = e->dx[0] + c * in_hw;
        const float *dy = e->dy + c * out_hw;
        if (p->global) {
            float g = dy[0] / (float)in_hw;
            if (e->acc[0]) for (size_t q = 0; q < in_hw; q++) dx[q] += g;
            else for (size_t q = 0; q < in_hw; q++) dx[q] = g;
            continue;
        }
        for (int oh = 0; oh < p->Ho; oh++)
            for (int ow = 0; ow < p->Wo; ow++) {
                int h0, h1, w0, w1;
                float g = dy[oh * p->Wo + ow] / avg_divisor(p, oh, ow, &h0, &h1, &w0, &w1);
                for (int ih = h0; ih < h1; ih++)
                    for (int iw = w0; iw < w1; iw++) dx[ih * p->W + iw] += g;
            }
    }
}

const op_def_t op_maxpool = {.name = "MaxPool", .init = maxpool_init, .forward = maxpool_forward, .backward = maxpool_backward, .unary = 0,
    .opset_min = 1, .opset_max = 0, .doc = "2-D: kernel_shape, strides, pads, dilations, ceil_mode, auto_pad; first maximum in scan order (PyTorch)"};
const op_def_t op_avgpool = {.name = "AveragePool", .init = avgpool_init, .forward = avgpool_forward, .backward = avgpool_backward, .unary = 0,
    .opset_min = 1, .opset_max = 0, .doc = "2-D: kernel_shape, strides, pads, ceil_mode, count_include_pad, auto_pad (PyTorch's divisor)"};
const op_def_t op_gmaxpool = {.name = "GlobalMaxPool", .init = gmaxpool_init, .forward = maxpool_forward, .backward = maxpool_backward, .unary = 0,
    .opset_min = 1, .opset_max = 0, .doc = "over H×W"};
const op_def_t op_gavgpool = {.name = "GlobalAveragePool", .init = gavgpool_init, .forward = avgpool_forward, .backward = avgpool_backward, .unary = 0,
    .opset_min = 1, .opset_max = 0, .doc = "over H×W"};
