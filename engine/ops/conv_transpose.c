/* ConvTranspose (2-D), NCHW. x (N,C,H,W), w (C,M/g,kh,kw), b (M) -> y (N,M,Ho,Wo).
 * The data gradient of a convolution whose input is y and whose output is x (same kernel, strides,
 * pads, dilations and groups), so forward and backward swap Conv's:
 *   Forward, per image and group:  col = w_gᵀ · x_g          (K x HW, K = M/g·kh·kw; one sgemm)
 *                                  y_g = col2im(col) (+ b)   (scatter-add into the output)
 *   Backward (data only):          col = im2col(dy_g)        (gather, the adjoint of col2im)
 *                                  dx_g (+)= w_g · col       (one sgemm)
 *   where output pixel (oh, ow) = (h·sh - ph + i·dh, w·sw - pw + j·dw) for input (h, w), tap (i, j).
 * Output size (ONNX onnx/defs/nn/defs.cc, docs/Operators.md "ConvTranspose"):
 *   Ho = sh·(H-1) + output_padding + dh·(kh-1) + 1 - pad_begin - pad_end
 *   output_shape given (2 values, or 4 with N and C): total = sh·(H-1) + output_padding + dh·(kh-1) + 1 - Ho;
 *     SAME_UPPER: pad_begin = total/2, else pad_begin = total - total/2 (the spec's rule; the
 *     backend case test_convtranspose_autopad_same has the extra row cropped at the end).
 *     A negative total (output larger than the computed one) pads at the end, like output_padding
 *     (onnxruntime's choice; the spec's formula would shift the output).
 *   auto_pad SAME_UPPER / SAME_LOWER without output_shape: Ho = H·sh, pads as above; VALID: pads 0.
 * output_padding only adds rows and columns at the end (zeros plus the bias). PyTorch's
 * ConvTranspose2d(output_size=...) exports as output_padding.
 * The weight must be a constant (w_in/b_in make it a parameterized layer for the sanity checks).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../graph.h"

#define CT_MAX_DIM (1 << 20)

typedef struct {
    int C, H, W, M, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw, group;
    int Cg, Mg, K;
} convt_p;

/* Output length and begin pad of one axis; -1 when out of range. */
static int64_t convt_dim(const char *autopad, int64_t in, int64_t k, int64_t s, int64_t d, int64_t p0, int64_t p1,
                         int64_t op, int64_t out_shape, int *pbegin)
{
    const int64_t full = s * (in - 1) + op + d * (k - 1) + 1;
    int upper = !strcmp(autopad, "SAME_UPPER");
    int64_t out;
    if (out_shape > 0 || upper || !strcmp(autopad, "SAME_LOWER")) {
        out = out_shape > 0 ? out_shape : in * s;
        int64_t total = full - out;
        *pbegin = total <= 0 ? 0 : (int)(upper ? total / 2 : total - total / 2);
    } else if (!strcmp(autopad, "VALID")) {
        out = full;
        *pbegin = 0;
    } else {
        out = full - p0 - p1;
        *pbegin = (int)p0;
    }
    return out >= 1 && out <= CT_MAX_DIM ? out : -1;
}

static int convt_init(graph_t *g, node_t *n, eng_err_t *err)
{
    int rc;
    if ((rc = node_need_act(g, n, 0, err))) return rc;
    if (n->n_in > 1 && n->in[1] >= 0 && !nin(g, n, 1)->is_const)
        return node_err(g, n, err, ENG_EUNSUPPORTED,
                        "the weight ('%s') is computed from the image; only a constant weight is supported",
                        nin(g, n, 1)->name);
    if ((rc = node_need_const(g, n, 1, err))) return rc;
    const value_t *x = nin(g, n, 0), *w = nin(g, n, 1);
    if (x->rank != 4)
        return node_err(g, n, err, ENG_EUNSUPPORTED, "only 2-D transposed convolution (rank-4 input) is supported");
    if (w->rank != 4) return node_err(g, n, err, ENG_EFORMAT, "weight has rank %d; expected 4", w->rank);
    convt_p *p = calloc(1, sizeof *p);
    if (!p) return node_err(g, n, err, ENG_ENOMEM, "out of memory");
    n->p = p;
    p->C = (int)x->dims[1];
    p->H = (int)x->dims[2];
    p->W = (int)x->dims[3];
    int64_t group = attr_int(n, "group", 1);
    if (w->dims[0] != p->C)
        return node_err(g, n, err, ENG_EFORMAT, "weight has %lld input channels but the input has %d",
                        (long long)w->dims[0], p->C);
    if (group < 1 || group > p->C || p->C % group || w->dims[1] < 1 || w->dims[1] * group > CT_MAX_DIM)
        return node_err(g, n, err, ENG_EFORMAT, "group %lld does not divide %d input channels", (long long)group, p->C);
    p->group = (int)group;
    p->Cg = p->C / p->group;
    p->Mg = (int)w->dims[1];
    p->M = p->Mg * p->group;
    p->kh = (int)w->dims[2];
    p->kw = (int)w->dims[3];
    if (p->kh < 1 || p->kw < 1) return node_err(g, n, err, ENG_EFORMAT, "empty kernel");
    int64_t ks[2];
    if (attr_ints(n, "kernel_shape", ks, 2) == 2 && (ks[0] != p->kh || ks[1] != p->kw))
        return node_err(g, n, err, ENG_EFORMAT, "kernel_shape disagrees with the weight");
    int64_t st[2] = {1, 1}, dl[2] = {1, 1}, pads[4] = {0, 0, 0, 0}, opad[2] = {0, 0}, oshape[4] = {0, 0, 0, 0};
    int ns = attr_ints(n, "strides", st, 2), nd = attr_ints(n, "dilations", dl, 2), np = attr_ints(n, "pads", pads, 4);
    int nop = attr_ints(n, "output_padding", opad, 2), nos = attr_ints(n, "output_shape", oshape, 4);
    if ((ns != -1 && ns != 2) || (nd != -1 && nd != 2) || (np != -1 && np != 4) || (nop != -1 && nop != 2))
        return node_err(g, n, err, ENG_EFORMAT, "strides, dilations and output_padding need 2 values, pads 4");
    if (nos != -1 && nos != 2 && nos != 4)
        return node_err(g, n, err, ENG_EFORMAT, "output_shape needs 2 values (H, W) or 4 (N, C, H, W)");
    if (nos == 4) {
        if (oshape[1] != p->M)
            return node_err(g, n, err, ENG_EFORMAT, "output_shape has %lld channels; the weight gives %d",
                            (long long)oshape[1], p->M);
        oshape[0] = oshape[2];
        oshape[1] = oshape[3];
    }
    for (int i = 0; i < 2; i++)
        if (st[i] < 1 || st[i] > CT_MAX_DIM || dl[i] < 1 || dl[i] > CT_MAX_DIM || opad[i] < 0 || opad[i] > CT_MAX_DIM ||
            pads[i] < 0 || pads[i + 2] < 0 || pads[i] > CT_MAX_DIM || pads[i + 2] > CT_MAX_DIM ||
            (nos != -1 && (oshape[i] < 1 || oshape[i] > CT_MAX_DIM)))
            return node_err(g, n, err, ENG_EFORMAT,
                            "strides and dilations must be >= 1, pads and output_padding >= 0, output_shape >= 1");
    p->sh = (int)st[0];
    p->sw = (int)st[1];
    p->dh = (int)dl[0];
    p->dw = (int)dl[1];
    const char *ap = attr_str(n, "auto_pad", "NOTSET");
    if (strcmp(ap, "NOTSET") && strcmp(ap, "SAME_UPPER") && strcmp(ap, "SAME_LOWER") && strcmp(ap, "VALID"))
        return node_err(g, n, err, ENG_EFORMAT, "unknown auto_pad '%s'", ap);
    int64_t ho = convt_dim(ap, p->H, p->kh, p->sh, p->dh, pads[0], pads[2], opad[0], nos != -1 ? oshape[0] : 0, &p->ph);
    int64_t wo = convt_dim(ap, p->W, p->kw, p->sw, p->dw, pads[1], pads[3], opad[1], nos != -1 ? oshape[1] : 0, &p->pw);
    if (ho < 1 || wo < 1)
        return node_err(g, n, err, ENG_EFORMAT, "the output size (%lld x %lld) is out of range", (long long)ho,
                        (long long)wo);
    p->Ho = (int)ho;
    p->Wo = (int)wo;
    if ((size_t)p->M * (size_t)p->Ho * (size_t)p->Wo > ((size_t)1 << 30) ||
        (size_t)p->Mg * p->kh * p->kw * (size_t)p->H * p->W > ((size_t)1 << 30))
        return node_err(g, n, err, ENG_EFORMAT, "the output or its column buffer is too large");
    if (n->n_in > 2 && n->in[2] >= 0) {
        if ((rc = node_need_const(g, n, 2, err))) return rc;
        if ((int64_t)nin(g, n, 2)->size != p->M)
            return node_err(g, n, err, ENG_EFORMAT, "bias has %zu values for %d output channels", nin(g, n, 2)->size, p->M);
        n->b_in = 2;
    }
    n->w_in = 1;
    p->K = p->Mg * p->kh * p->kw;
    int64_t od[4] = {1, p->M, p->Ho, p->Wo};
    value_set_shape(nout(g, n), 4, od);
    n->scratch_fixed = (size_t)p->K * p->H * p->W;
    n->flops = 2.0 * p->C * p->H * p->W * p->K;
    n->params = (int64_t)w->size + (n->b_in >= 0 ? p->M : 0);
    return ENG_OK;
}

/* Input columns [lo, hi) whose output column w*sw + off (off = j*dw - pw) lies inside the output. */
static void valid_cols(const convt_p *p, int off, int *lo, int *hi)
{
    int a = 0, b = p->W;
    while (a < p->W && (int64_t)a * p->sw + off < 0) a++;
    while (b > a && (int64_t)(b - 1) * p->sw + off >= p->Wo) b--;
    *lo = a;
    *hi = b;
}

/* y[m][h*sh - ph + i*dh][w*sw - pw + j*dw] += col[(m*kh + i)*kw + j][h*W + w] (inside the output only) */
static void col2im_add(const convt_p *p, const float *col, float *y)
{
    const size_t HW = (size_t)p->H * p->W;
    for (int m = 0; m < p->Mg; m++)
        for (int i = 0; i < p->kh; i++)
            for (int j = 0; j < p->kw; j++) {
                const float *row = col + (size_t)((m * p->kh + i) * p->kw + j) * HW;
                float *ym = y + (size_t)m * p->Ho * p->Wo;
                int lo, hi, off = j * p->dw - p->pw;
                valid_cols(p, off, &lo, &hi);
                for (int h = 0; h < p->H; h++) {
                    int64_t oh = (int64_t)h * p->sh - p->ph + (int64_t)i * p->dh;
                    if (oh < 0 || oh >= p->Ho) continue;
                    const float *restrict r = row + (size_t)h * p->W;
                    float *restrict yr = ym + (size_t)oh * p->Wo;
                    if (p->sw == 1)
                        for (int w = lo; w < hi; w++) yr[w + off] += r[w];
                    else
                        for (int w = lo; w < hi; w++) yr[(int64_t)w * p->sw + off] += r[w];
                }
            }
}

/* col[(m*kh + i)*kw + j][h*W + w] = dy[m][h*sh - ph + i*dh][w*sw - pw + j*dw] (0 outside): the adjoint */
static void im2col(const convt_p *p, const float *dy, float *col)
{
    const size_t HW = (size_t)p->H * p->W;
    for (int m = 0; m < p->Mg; m++)
        for (int i = 0; i < p->kh; i++)
            for (int j = 0; j < p->kw; j++) {
                float *row = col + (size_t)((m * p->kh + i) * p->kw + j) * HW;
                const float *ym = dy + (size_t)m * p->Ho * p->Wo;
                int lo, hi, off = j * p->dw - p->pw;
                valid_cols(p, off, &lo, &hi);
                for (int h = 0; h < p->H; h++) {
                    float *r = row + (size_t)h * p->W;
                    int64_t oh = (int64_t)h * p->sh - p->ph + (int64_t)i * p->dh;
                    if (oh < 0 || oh >= p->Ho) {
                        memset(r, 0, sizeof(float) * p->W);
                        continue;
                    }
                    const float *yr = ym + (size_t)oh * p->Wo;
                    for (int w = 0; w < lo; w++) r[w] = 0;
                    if (p->sw == 1) memcpy(r + lo, yr + lo + off, sizeof(float) * (size_t)(hi - lo));
                    else for (int w = lo; w < hi; w++) r[w] = yr[(int64_t)w * p->sw + off];
                    for (int w = hi; w < p->W; w++) r[w] = 0;
                }
            }
}

static void convt_forward(const node_t *nd, const exec_t *e)
{
    const convt_p *p = nd->p;
    const size_t in_hw = (size_t)p->H * p->W, out_hw = (size_t)p->Ho * p->Wo;
    for (int i = 0; i < e->n; i++) {
        const float *x = e->x[0] + (size_t)i * p->C * in_hw;
        float *y = e->y + (size_t)i * p->M * out_hw;
        for (int m = 0; m < p->M; m++) {
            const float b = e->b ? e->b[m] : 0.f;
            for (size_t q = 0; q < out_hw; q++) y[m * out_hw + q] = b;
        }
        for (int gi = 0; gi < p->group; gi++) {
            /* w_g is (Cg, K): col (K, HW) = w_gᵀ · x_g */
            eng_sgemm(e->team, 1, 0, p->K, (int)in_hw, p->Cg, 1.f, e->w + (size_t)gi * p->Cg * p->K, p->K,
                      x + (size_t)gi * p->Cg * in_hw, (int)in_hw, 0.f, e->scratch, (int)in_hw);
            col2im_add(p, e->scratch, y + (size_t)gi * p->Mg * out_hw);
        }
    }
}

static void convt_backward(const node_t *nd, const exec_t *e)
{
    const convt_p *p = nd->p;
    if (!e->dx[0]) return;
    const size_t in_hw = (size_t)p->H * p->W, out_hw = (size_t)p->Ho * p->Wo;
    for (int i = 0; i < e->n; i++) {
        const float *dy = e->dy + (size_t)i * p->M * out_hw;
        float *dx = e->dx[0] + (size_t)i * p->C * in_hw;
        for (int gi = 0; gi < p->group; gi++) {
            im2col(p, dy + (size_t)gi * p->Mg * out_hw, e->scratch);
            eng_sgemm(e->team, 0, 0, p->Cg, (int)in_hw, p->K, 1.f, e->w + (size_t)gi * p->Cg * p->K, p->K, e->scratch,
                      (int)in_hw, e->acc[0] ? 1.f : 0.f, dx + (size_t)gi * p->Cg * in_hw, (int)in_hw);
        }
    }
}

const op_def_t op_convtranspose = {.name = "ConvTranspose", .init = convt_init, .forward = convt_forward,
    .backward = convt_backward, .unary = 0, .opset_min = 1, .opset_max = 0,
    .doc = "2-D, NCHW, constant weight: strides, pads, output_padding, dilations, groups, output_shape, auto_pad, bias"};
