/* LayerNormalization over a contiguous block of non-batch axes.
 * Per image the tensor is viewed as (outer, D, inner), D the product of the normalized axes; for
 * each (o, q), with μ the mean over D, σ² the biased variance and r = 1/√(σ² + ε):
 *   x̂ = (x - μ) r,  y = x̂ · scale + bias          g = dy · scale
 *                                                  dx = r (g - mean(g) - x̂ · mean(g · x̂))
 * (PyTorch's layer_norm backward, data gradient only). scale and bias hold D values, broadcast over
 * outer and inner. Statistics and the backward sums are computed in double; μ and r are saved for
 * the backward (aux).
 * ONNX LayerNormalization (opset 17): axis (default -1) normalizes axes [axis, rank); Scale and the
 * optional B are constants broadcastable to X.shape[axis:]; epsilon (default 1e-5); stash_type is
 * ignored (double always). Only Y may be used; the Mean and InvStdDev outputs are refused.
 * At any opset, engine/fuse.c rewrites the chain PyTorch exports below opset 17
 * (ReduceMean, Sub, Pow, ReduceMean, Add ε, Sqrt, Div [, Mul scale] [, Add bias]) into this op. A
 * fused node may normalize a block that ends before the last axis (the channels of NCHW, as in
 * ConvNeXt's channels_first LayerNorm written with x.mean(1)): it then carries the private attribute
 * _last_axis, the last normalized axis.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../graph.h"

typedef struct {
    size_t outer, D, inner; /* per image */
    double eps;
    float *scale, *bias;    /* D each, after the struct */
} ln_p;

/* Does constant c broadcast onto x (full rank, batch included) without changing its shape, and vary
 * only along axes a0..a1? If so and out is non-NULL, write its D values in the order of the block. */
int layernorm_param_fits(const value_t *c, const value_t *x, int a0, int a1, float *out)
{
    if (!c->is_const || c->dtype != DT_FLOAT || c->rank > x->rank) return 0;
    int64_t cd[ENG_MAX_RANK], st[ENG_MAX_RANK], acc = 1;
    for (int i = 0; i < x->rank; i++) {
        int ci = i - (x->rank - c->rank);
        cd[i] = ci < 0 ? 1 : c->dims[ci];
        if (cd[i] != 1 && (cd[i] != x->dims[i] || i < a0 || i > a1)) return 0;
    }
    if (!out) return 1;
    for (int i = x->rank - 1; i >= 0; i--) {
        st[i] = cd[i] == 1 ? 0 : acc;
        acc *= cd[i];
    }
    size_t D = shape_size(a1 - a0 + 1, x->dims + a0);
    for (size_t k = 0; k < D; k++) {
        size_t rem = k, off = 0;
        for (int i = a1; i >= a0; i--) {
            off += (size_t)st[i] * (rem % (size_t)x->dims[i]);
            rem /= (size_t)x->dims[i];
        }
        out[k] = c->f[off];
    }
    return 1;
}

static int ln_init(graph_t *g, node_t *n, eng_err_t *err)
{
    int rc = node_need_act(g, n, 0, err);
    if (rc) return rc;
    const value_t *x = nin(g, n, 0);
    int64_t a = attr_int(n, "axis", -1), l = attr_int(n, "_last_axis", x->rank - 1);
    if (a < -x->rank || a >= x->rank || l < -x->rank || l >= x->rank)
        return node_err(g, n, err, ENG_EFORMAT, "axis %lld out of range for rank %d", (long long)a, x->rank);
    int a0 = (int)(a < 0 ? a + x->rank : a), a1 = (int)(l < 0 ? l + x->rank : l);
    if (a0 == 0) return node_err(g, n, err, ENG_EUNSUPPORTED, "axis %lld normalizes over the batch", (long long)a);
    if (a1 < a0) return node_err(g, n, err, ENG_EFORMAT, "empty block of normalized axes");
    float eps = attr_float(n, "epsilon", 1e-5f);
    if (!(eps >= 0) || !isfinite(eps)) return node_err(g, n, err, ENG_EFORMAT, "epsilon must be finite and >= 0");
    size_t D = shape_size(a1 - a0 + 1, x->dims + a0);
    const value_t *sc = n->n_in > 1 && n->in[1] >= 0 ? nin(g, n, 1) : NULL;
    const value_t *bi = n->n_in > 2 && n->in[2] >= 0 ? nin(g, n, 2) : NULL;
    if ((sc && !layernorm_param_fits(sc, x, a0, a1, NULL)) || (bi && !layernorm_param_fits(bi, x, a0, a1, NULL)))
        return node_err(g, n, err, ENG_EUNSUPPORTED,
                        "Scale and B must be float constants broadcastable to the normalized axes %d..%d", a0, a1);
    ln_p *p = calloc(1, sizeof *p + 2 * sizeof(float) * D);
    if (!p) return node_err(g, n, err, ENG_ENOMEM, "out of memory");
    n->p = p;
    p->outer = shape_size(a0 - 1, x->dims + 1);
    p->D = D;
    p->inner = shape_size(x->rank - a1 - 1, x->dims + a1 + 1);
    p->eps = eps;
    p->scale = (float *)(p + 1);
    p->bias = p->scale + D;
    for (size_t k = 0; k < D; k++) p->scale[k] = 1.f;
    if (sc) layernorm_param_fits(sc, x, a0, a1, p->scale);
    if (bi) layernorm_param_fits(bi, x, a0, a1, p->bias);
    value_set_shape(nout(g, n), x->rank, x->dims);
    /* Mean and InvStdDev: shapes only, so that a consumer's init gets as far as finalize's "only the
     * first output is supported" */
    int64_t sd[ENG_MAX_RANK];
    for (int i = 0; i < x->rank; i++) sd[i] = i < a0 || i > a1 ? x->dims[i] : 1;
    for (int o = 1; o < n->n_out && o < 3; o++)
        if (n->out[o] >= 0) {
            value_set_shape(gval(g, n->out[o]), x->rank, sd);
            gval(g, n->out[o])->size = shape_size(x->rank, sd);
        }
    n->aux_per_image = 2 * sizeof(double) * p->outer * p->inner;
    if (p->inner > 1) n->scratch_fixed = 4 * p->inner + 16; /* 2 × inner doubles */
    n->flops = 8.0 * (double)x->size;
    n->params = (int64_t)((sc ? sc->size : 0) + (bi ? bi->size : 0));
    return ENG_OK;
}

static void ln_forward(const node_t *nd, const exec_t *e)
{
    const ln_p *p = nd->p;
    const size_t D = p->D, in = p->inner, img = p->outer * D * in;
    for (int i = 0; i < e->n; i++) {
        double *mu = (double *)e->aux + (size_t)i * 2 * p->outer * in, *rs = mu + p->outer * in;
        for (size_t o = 0; o < p->outer; o++) {
            const float *x = e->x[0] + (size_t)i * img + o * D * in;
            float *y = e->y + (size_t)i * img + o * D * in;
            double *m = mu + o * in, *r = rs + o * in;
            if (in == 1) {
                double s = 0, v = 0;
                for (size_t d = 0; d < D; d++) s += x[d];
                const double mean = s / (double)D;
                for (size_t d = 0; d < D; d++) v += ((double)x[d] - mean) * ((double)x[d] - mean);
                const double rstd = 1.0 / sqrt(v / (double)D + p->eps);
                for (size_t d = 0; d < D; d++) y[d] = (float)(((double)x[d] - mean) * rstd * p->scale[d] + p->bias[d]);
                *m = mean;
                *r = rstd;
                continue;
            }
            double *v = (double *)e->scratch;
            for (size_t q = 0; q < in; q++) m[q] = v[q] = 0;
            for (size_t d = 0; d < D; d++)
                for (size_t q = 0; q < in; q++) m[q] += x[d * in + q];
            for (size_t q = 0; q < in; q++) m[q] /= (double)D;
            for (size_t d = 0; d < D; d++)
                for (size_t q = 0; q < in; q++) {
                    const double t = (double)x[d * in + q] - m[q];
                    v[q] += t * t;
                }
            for (size_t q = 0; q < in; q++) r[q] = 1.0 / sqrt(v[q] / (double)D + p->eps);
            for (size_t d = 0; d < D; d++) {
                const double s = p->scale[d], b = p->bias[d];
                for (size_t q = 0; q < in; q++) y[d * in + q] = (float)(((double)x[d * in + q] - m[q]) * r[q] * s + b);
            }
        }
    }
}

static void ln_backward(const node_t *nd, const exec_t *e)
{
    const ln_p *p = nd->p;
    float *DX = e->dx[0];
    if (!DX) return;
    const int acc = e->acc[0];
    const size_t D = p->D, in = p->inner, img = p->outer * D * in;
    for (int i = 0; i < e->n; i++) {
        const double *mu = (const double *)e->aux + (size_t)i * 2 * p->outer * in, *rs = mu + p->outer * in;
        for (size_t o = 0; o < p->outer; o++) {
            const size_t base = (size_t)i * img + o * D * in;
            const float *x = e->x[0] + base, *dy = e->dy + base;
            float *dx = DX + base;
            const double *m = mu + o * in, *r = rs + o * in;
            if (in == 1) {
                double sg = 0, sgx = 0;
                for (size_t d = 0; d < D; d++) {
                    const double gv = (double)dy[d] * p->scale[d];
                    sg += gv;
                    sgx += gv * ((double)x[d] - m[0]) * r[0];
                }
                sg /= (double)D;
                sgx /= (double)D;
                for (size_t d = 0; d < D; d++) {
                    const double xh = ((double)x[d] - m[0]) * r[0];
                    const float v = (float)(r[0] * ((double)dy[d] * p->scale[d] - sg - xh * sgx));
                    dx[d] = acc ? dx[d] + v : v;
                }
                continue;
            }
            double *sg = (double *)e->scratch, *sgx = sg + in;
            for (size_t q = 0; q < in; q++) sg[q] = sgx[q] = 0;
            for (size_t d = 0; d < D; d++) {
                const double s = p->scale[d];
                for (size_t q = 0; q < in; q++) {
                    const double gv = (double)dy[d * in + q] * s;
                    sg[q] += gv;
                    sgx[q] += gv * ((double)x[d * in + q] - m[q]) * r[q];
                }
            }
            for (size_t q = 0; q < in; q++) {
                sg[q] /= (double)D;
                sgx[q] /= (double)D;
            }
            for (size_t d = 0; d < D; d++) {
                const double s = p->scale[d];
                for (size_t q = 0; q < in; q++) {
                    const double xh = ((double)x[d * in + q] - m[q]) * r[q];
                    const float v = (float)(r[q] * ((double)dy[d * in + q] * s - sg[q] - xh * sgx[q]));
                    dx[d * in + q] = acc ? dx[d * in + q] + v : v;
                }
            }
        }
    }
}

const op_def_t op_layernorm = {.name = "LayerNormalization", .init = ln_init, .forward = ln_forward, .backward = ln_backward, .unary = 0,
    .opset_min = 1, .opset_max = 0,
    .doc = "over axes [axis, rank) (axis, epsilon; Scale, B constants) (ONNX opset 17; at any opset the ReduceMean/Sub/Pow/"
           "ReduceMean/Add/Sqrt/Div[/Mul/Add] chain PyTorch exports below 17 is fused into it at load)"};
