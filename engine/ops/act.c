/* Element-wise activations. Each backward mirrors PyTorch's, including the boundary choices:
 *   Relu         y = max(x, 0)                    dx = dy · [y > 0]
 *   LeakyRelu    y = x > 0 ? x : αx               dx = dy · (x > 0 ? 1 : α)
 *   Clip         y = min(max(x, lo), hi)          dx = dy · [lo < x < hi]      (hardtanh_backward; ReLU6)
 *   Sigmoid      y = 1 / (1 + e^-x)               dx = dy · y (1 - y)
 *   Tanh         y = tanh x                       dx = dy · (1 - y²)
 *   HardSigmoid  y = clip(αx + β, 0, 1)           dx = dy · α · [0 < αx + β < 1]
 *   HardSwish    y = x · clip(x/6 + 1/2, 0, 1)    dx = dy · (x < -3 ? 0 : x <= 3 ? x/3 + 1/2 : 1)
 *   Elu          y = x > 0 ? x : α(eˣ - 1)        dx = dy · (x > 0 ? 1 : α eˣ)         (elu_backward, x ≤ 0 branch at 0)
 *   Selu         y = γ(x > 0 ? x : α(eˣ - 1))     dx = dy · γ (x > 0 ? 1 : α eˣ)
 *   Celu         y = x > 0 ? x : α(e^(x/α) - 1)   dx = dy · (x > 0 ? 1 : e^(x/α))
 *   PRelu        y = x > 0 ? x : s·x              dx = dy · (x > 0 ? 1 : s)          (s: constant slope, broadcast)
 *   Softplus     y = log(1 + eˣ)                  dx = dy · eˣ / (1 + eˣ)             (x > 20: y = x, dx = dy, as torch)
 *   Softsign     y = x / (1 + |x|)                dx = dy / (1 + |x|)²
 *   Mish         y = x · tanh(softplus x)         dx = dy · (t + x σ(x)(1 - t²)), t = tanh(softplus x)
 *   ThresholdedRelu  y = x > α ? x : 0            dx = dy · [x > α]                   (threshold_backward)
 *   Gelu (none)  y = x Φ(x) = ½x(1 + erf(x/√2))  dx = dy · (Φ(x) + x φ(x))
 *   Gelu (tanh)  y = ½x(1 + t), t = tanh(k(x + 0.044715x³)), k = √(2/π)
 *                                                 dx = dy · (½(1 + t) + ½x(1 - t²) k (1 + 3·0.044715x²))
 * Clip takes min/max as attributes before opset 11 and as optional constant inputs from 11 on.
 * Gelu (ONNX opset 20, attribute approximate) and Mish (opset 18) also run at lower opsets: the
 * Erf / tanh forms of GELU and the Softplus -> Tanh -> Mul form of Mish that exporters write there
 * are fused into them at load (engine/fuse.c). PRelu's slope is a constant unidirectionally
 * broadcast to x (scalar, per-channel (C,1,1), ...): it is expanded once, at init, over the
 * smallest block of axes where it varies.
 * These are "unary" ops: explanation methods may replace their backward through hooks (guided
 * backprop and deconvnet replace Relu's). With a team, forward and backward split the elements
 * into chunks (every element computed as on one thread).
 */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../graph.h"
#include "../par.h"

enum {
    A_RELU, A_LEAKY, A_CLIP, A_SIGMOID, A_TANH, A_HSIGMOID, A_HSWISH, A_ELU, A_SELU, A_CELU, A_PRELU, A_SOFTPLUS,
    A_SOFTSIGN, A_MISH, A_THRESH, A_GELU, A_GELU_TANH
};
typedef struct {
    int kind;
    float alpha, beta, lo, hi;
    float pos, neg, negin;       /* Elu family: x > 0 ? pos·x : neg·(e^(negin·x) - 1) */
    size_t outer, len, inner;    /* PRelu: the slope varies over `len` (per image: outer × len × inner) */
    float *slope;                /* PRelu: len floats, after the struct */
} act_p;

#define GELU_KAPPA 0.044715f
#define GELU_BETA 0.7978845608028654f /* √(2/π) */

/* PRelu: the slope constant s, unidirectionally broadcast to x (whose dims include the batch), is
 * expanded over the block of axes [lo, hi] where it is not 1; it must be 1 on the batch axis. */
static int prelu_layout(graph_t *g, node_t *n, const value_t *x, const value_t *s, act_p **pp, eng_err_t *err)
{
    if (s->rank > x->rank)
        return node_err(g, n, err, ENG_EFORMAT, "slope has rank %d, over the input's %d", s->rank, x->rank);
    int64_t sd[ENG_MAX_RANK];
    int lo = -1, hi = -1;
    for (int i = 0; i < x->rank; i++) {
        int si = i - (x->rank - s->rank);
        sd[i] = si < 0 ? 1 : s->dims[si];
        if (i == 0 && sd[i] != 1) return node_err(g, n, err, ENG_EUNSUPPORTED, "the slope varies over the batch");
        if (sd[i] != 1 && sd[i] != x->dims[i])
            return node_err(g, n, err, ENG_EFORMAT, "slope dimension %d is %lld; input has %lld (must be 1 or equal)",
                            i, (long long)sd[i], (long long)x->dims[i]);
        if (sd[i] != 1) {
            if (lo < 0) lo = i;
            hi = i;
        }
    }
    size_t len = lo < 0 ? 1 : shape_size(hi - lo + 1, x->dims + lo);
    act_p *p = calloc(1, sizeof *p + sizeof(float) * len);
    if (!p) return node_err(g, n, err, ENG_ENOMEM, "out of memory");
    p->slope = (float *)(p + 1);
    p->len = len;
    p->outer = lo < 0 ? 1 : shape_size(lo - 1, x->dims + 1);
    p->inner = lo < 0 ? shape_size(x->rank - 1, x->dims + 1) : shape_size(x->rank - hi - 1, x->dims + hi + 1);
    /* slope element for each position of the block: strides of s over x's axes lo..hi (0 where s is 1) */
    int64_t st[ENG_MAX_RANK], acc = 1;
    for (int i = x->rank - 1; i >= 0; i--) {
        st[i] = sd[i] == 1 ? 0 : acc;
        acc *= sd[i];
    }
    for (size_t k = 0; k < len; k++) {
        size_t rem = k, off = 0;
        for (int i = hi; i >= lo && lo >= 0; i--) {
            off += (size_t)st[i] * (rem % (size_t)x->dims[i]);
            rem /= (size_t)x->dims[i];
        }
        p->slope[k] = s->f[off];
    }
    *pp = p;
    return ENG_OK;
}

static int act_init_kind(graph_t *g, node_t *n, eng_err_t *err, int kind)
{
    int rc = node_need_act(g, n, 0, err);
    if (rc) return rc;
    const value_t *x = nin(g, n, 0);
    act_p *p = NULL;
    if (kind == A_PRELU) {
        if ((rc = node_need_const(g, n, 1, err))) return rc;
        if ((rc = prelu_layout(g, n, x, nin(g, n, 1), &p, err))) return rc;
        n->params = (int64_t)nin(g, n, 1)->size;
    } else {
        p = calloc(1, sizeof *p);
        if (!p) return node_err(g, n, err, ENG_ENOMEM, "out of memory");
    }
    n->p = p;
    p->kind = kind;
    switch (kind) {
    case A_LEAKY: p->alpha = attr_float(n, "alpha", 0.01f); break;
    case A_HSIGMOID:
        p->alpha = attr_float(n, "alpha", 0.2f);
        p->beta = attr_float(n, "beta", 0.5f);
        break;
    case A_CLIP:
        p->lo = -INFINITY;
        p->hi = INFINITY;
        if (g->opset < 11) {
            p->lo = attr_float(n, "min", -INFINITY);
            p->hi = attr_float(n, "max", INFINITY);
        } else {
            for (int k = 1; k < n->n_in && k < 3; k++) {
                if (n->in[k] < 0) continue;
                const value_t *v = nin(g, n, k);
                if (!v->is_const || v->size != 1)
                    return node_err(g, n, err, ENG_EUNSUPPORTED, "min/max must be scalar constants");
                float f = v->dtype == DT_FLOAT ? v->f[0] : (float)v->i64[0];
                if (k == 1) p->lo = f;
                else p->hi = f;
            }
        }
        break;
    case A_ELU:
        p->pos = 1.f;
        p->neg = attr_float(n, "alpha", 1.f);
        p->negin = 1.f;
        break;
    case A_SELU: { /* ONNX defaults: the float32 values of torch's SELU constants */
        float a = attr_float(n, "alpha", 1.67326319217681884765625f), gm = attr_float(n, "gamma", 1.05070102214813232421875f);
        p->pos = gm;
        p->neg = a * gm;
        p->negin = 1.f;
        break;
    }
    case A_CELU:
        p->pos = 1.f;
        p->neg = attr_float(n, "alpha", 1.f);
        if (!(p->neg != 0.f) || !isfinite(p->neg)) return node_err(g, n, err, ENG_EFORMAT, "alpha must be finite and non-zero");
        p->negin = 1.f / p->neg;
        break;
    case A_THRESH: p->alpha = attr_float(n, "alpha", 1.f); break;
    case A_GELU: {
        const char *a = attr_str(n, "approximate", "none");
        if (!strcmp(a, "tanh")) p->kind = A_GELU_TANH;
        else if (strcmp(a, "none"))
            return node_err(g, n, err, ENG_EFORMAT, "approximate is '%s' (expected 'none' or 'tanh')", a);
        break;
    }
    default: break;
    }
    value_set_shape(nout(g, n), x->rank, x->dims);
    n->flops = (double)x->size;
    return ENG_OK;
}

#define INIT(name, kind) \
    static int name(graph_t *g, node_t *n, eng_err_t *err) { return act_init_kind(g, n, err, kind); }
INIT(relu_init, A_RELU)
INIT(leaky_init, A_LEAKY)
INIT(clip_init, A_CLIP)
INIT(sigmoid_init, A_SIGMOID)
INIT(tanh_init, A_TANH)
INIT(hsigmoid_init, A_HSIGMOID)
INIT(hswish_init, A_HSWISH)
INIT(elu_init, A_ELU)
INIT(selu_init, A_SELU)
INIT(celu_init, A_CELU)
INIT(prelu_init, A_PRELU)
INIT(softplus_init, A_SOFTPLUS)
INIT(softsign_init, A_SOFTSIGN)
INIT(mish_init, A_MISH)
INIT(thresh_init, A_THRESH)
INIT(gelu_init, A_GELU)

static inline float softplus(float x) { return x > 20.f ? x : log1pf(expf(x)); }

/* elements [i0, i0 + n) of the batch (PRelu: always the whole batch) */
static void act_forward_span(const node_t *nd, const exec_t *e, size_t i0, size_t n)
{
    const act_p *p = nd->p;
    const float *x = e->x[0] + i0;
    float *y = e->y + i0;
    switch (p->kind) {
    case A_RELU: for (size_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0.f; break;
    case A_LEAKY: for (size_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : p->alpha * x[i]; break;
    case A_CLIP:
        for (size_t i = 0; i < n; i++) {
            float v = x[i] < p->lo ? p->lo : x[i];
            y[i] = v > p->hi ? p->hi : v;
        }
        break;
    case A_SIGMOID: for (size_t i = 0; i < n; i++) y[i] = 1.f / (1.f + expf(-x[i])); break;
    case A_TANH: for (size_t i = 0; i < n; i++) y[i] = tanhf(x[i]); break;
    case A_HSIGMOID:
        for (size_t i = 0; i < n; i++) {
            float v = p->alpha * x[i] + p->beta;
            y[i] = v < 0 ? 0.f : v > 1 ? 1.f : v;
        }
        break;
    case A_HSWISH:
        for (size_t i = 0; i < n; i++) {
            float v = x[i] / 6.f + 0.5f;
            v = v < 0 ? 0.f : v > 1 ? 1.f : v;
            y[i] = x[i] * v;
        }
        break;
    case A_ELU:
    case A_SELU:
    case A_CELU:
        for (size_t i = 0; i < n; i++) y[i] = x[i] > 0 ? p->pos * x[i] : p->neg * expm1f(p->negin * x[i]);
        break;
    case A_PRELU: {
        const size_t img = p->outer * p->len * p->inner;
        for (int b = 0; b < e->n; b++)
            for (size_t o = 0; o < p->outer; o++)
                for (size_t l = 0; l < p->len; l++) {
                    const size_t base = (size_t)b * img + (o * p->len + l) * p->inner;
                    const float s = p->slope[l];
                    for (size_t q = 0; q < p->inner; q++) y[base + q] = x[base + q] > 0 ? x[base + q] : s * x[base + q];
                }
        break;
    }
    case A_SOFTPLUS: for (size_t i = 0; i < n; i++) y[i] = softplus(x[i]); break;
    case A_SOFTSIGN: for (size_t i = 0; i < n; i++) y[i] = x[i] / (1.f + fabsf(x[i])); break;
    case A_MISH: for (size_t i = 0; i < n; i++) y[i] = x[i] * tanhf(log1pf(expf(x[i]))); break;
    case A_THRESH: for (size_t i = 0; i < n; i++) y[i] = x[i] > p->alpha ? x[i] : 0.f; break;
    case A_GELU: for (size_t i = 0; i < n; i++) y[i] = x[i] * 0.5f * (1.f + erff(x[i] * (float)M_SQRT1_2)); break;
    case A_GELU_TANH:
        for (size_t i = 0; i < n; i++) {
            const float v = x[i];
            y[i] = 0.5f * v * (1.f + tanhf(GELU_BETA * (v + GELU_KAPPA * v * v * v)));
        }
        break;
    }
}

static void act_backward_span(const node_t *nd, const exec_t *e, size_t i0, size_t n)
{
    const act_p *p = nd->p;
    float *dx = e->dx[0] + i0;
    const float *x = e->x[0] + i0, *y = e->y + i0, *dy = e->dy + i0;
    const int acc = e->acc[0];
/* operands are loaded unconditionally so the compiler can if-convert and vectorize the selects */
#define EMIT(expr)                                                                                                     \
    do {                                                                                                               \
        if (acc)                                                                                                       \
            for (size_t i = 0; i < n; i++) {                                                                           \
                const float X = x[i], Y = y[i], D = dy[i];                                                             \
                (void)X, (void)Y;                                                                                      \
                dx[i] += (expr);                                                                                       \
            }                                                                                                          \
        else                                                                                                           \
            for (size_t i = 0; i < n; i++) {                                                                           \
                const float X = x[i], Y = y[i], D = dy[i];                                                             \
                (void)X, (void)Y;                                                                                      \
                dx[i] = (expr);                                                                                        \
            }                                                                                                          \
    } while (0)
    switch (p->kind) {
    case A_RELU: EMIT(Y > 0 ? D : 0.f); break;
    case A_LEAKY: EMIT(X > 0 ? D : p->alpha * D); break;
    case A_CLIP: EMIT(((X > p->lo) & (X < p->hi)) ? D : 0.f); break;
    case A_SIGMOID: EMIT(D * Y * (1.f - Y)); break;
    case A_TANH: EMIT(D * (1.f - Y * Y)); break;
    case A_HSIGMOID: {
        const float a = p->alpha, b = p->beta;
        EMIT(((a * X + b > 0) & (a * X + b < 1)) ? D * a : 0.f);
        break;
    }
    case A_HSWISH: EMIT(X < -3.f ? 0.f : X <= 3.f ? D * (X / 3.f + 0.5f) : D); break;
    case A_ELU:
    case A_SELU:
    case A_CELU: {
        const float pos = p->pos, c = p->neg * p->negin, ni = p->negin;
        EMIT(X > 0 ? D * pos : D * c * expf(ni * X));
        break;
    }
    case A_PRELU: {
        const size_t img = p->outer * p->len * p->inner;
        for (int b = 0; b < e->n; b++)
            for (size_t o = 0; o < p->outer; o++)
                for (size_t l = 0; l < p->len; l++) {
                    const size_t base = (size_t)b * img + (o * p->len + l) * p->inner;
                    const float s = p->slope[l];
                    if (acc)
                        for (size_t q = 0; q < p->inner; q++) dx[base + q] += x[base + q] > 0 ? dy[base + q] : s * dy[base + q];
                    else
                        for (size_t q = 0; q < p->inner; q++) dx[base + q] = x[base + q] > 0 ? dy[base + q] : s * dy[base + q];
                }
        break;
    }
    case A_SOFTPLUS: EMIT(X > 20.f ? D : D * (expf(X) / (expf(X) + 1.f))); break;
    case A_SOFTSIGN: EMIT(D / ((1.f + fabsf(X)) * (1.f + fabsf(X)))); break;
    case A_MISH: /* mish_backward: σ(x) and t = tanh(softplus(x)) recomputed from x */
        for (size_t i = 0; i < n; i++) {
            const float X = x[i], t = tanhf(log1pf(expf(X))), s = 1.f / (1.f + expf(-X));
            const float v = dy[i] * (t + X * s * (1.f - t * t));
            dx[i] = acc ? dx[i] + v : v;
        }
        break;
    case A_THRESH: {
        const float a = p->alpha;
        EMIT(X > a ? D : 0.f);
        break;
    }
    case A_GELU: {
        const float k_alpha = (float)(M_2_SQRTPI * M_SQRT1_2 * 0.5); /* 1/√(2π) */
        EMIT(D * (0.5f * (1.f + erff(X * (float)M_SQRT1_2)) + X * k_alpha * expf(-0.5f * X * X)));
        break;
    }
    case A_GELU_TANH: /* gelu_backward(approximate='tanh'): left = ½x, right = 1 + t */
        for (size_t i = 0; i < n; i++) {
            const float X = x[i], t = tanhf(GELU_BETA * (X + GELU_KAPPA * X * X * X));
            const float v = dy[i] * (0.5f * (1.f + t) + 0.5f * X * (1.f - t * t) * GELU_BETA * (1.f + 3.f * GELU_KAPPA * X * X));
            dx[i] = acc ? dx[i] + v : v;
        }
        break;
    }
#undef EMIT
}

/* Over a team: elements in chunks of ACT_GRAIN, each computed as on one thread (PRelu, whose slope
 * index depends on the position, runs whole). */
#define ACT_GRAIN 16384
typedef struct {
    const node_t *nd;
    const exec_t *e;
} act_job_t;

static void act_forward_part(void *ctx, int lo, int hi, int tid)
{
    (void)tid;
    const act_job_t *j = ctx;
    act_forward_span(j->nd, j->e, (size_t)lo, (size_t)(hi - lo));
}

static void act_backward_part(void *ctx, int lo, int hi, int tid)
{
    (void)tid;
    const act_job_t *j = ctx;
    act_backward_span(j->nd, j->e, (size_t)lo, (size_t)(hi - lo));
}

static int act_split(const node_t *nd, const exec_t *e, size_t n)
{
    return ((const act_p *)nd->p)->kind != A_PRELU && n <= INT_MAX && n >= 2 * ACT_GRAIN && par_team_active(e->team) > 1;
}

static void act_forward(const node_t *nd, const exec_t *e)
{
    const size_t n = (size_t)e->n * nout(e->g, nd)->size;
    act_job_t j = {nd, e};
    if (act_split(nd, e, n)) par_for_grain(e->team, (int)n, ACT_GRAIN, act_forward_part, &j);
    else act_forward_span(nd, e, 0, n);
}

static void act_backward(const node_t *nd, const exec_t *e)
{
    if (!e->dx[0]) return;
    const size_t n = (size_t)e->n * nout(e->g, nd)->size;
    act_job_t j = {nd, e};
    if (act_split(nd, e, n)) par_for_grain(e->team, (int)n, ACT_GRAIN, act_backward_part, &j);
    else act_backward_span(nd, e, 0, n);
}

const op_def_t op_relu = {.name = "Relu", .init = relu_init, .forward = act_forward, .backward = act_backward, .unary = 1,
    .opset_min = 1, .opset_max = 0, .doc = "y = max(x, 0); dx = dy·[y > 0]"};
const op_def_t op_leakyrelu = {.name = "LeakyRelu", .init = leaky_init, .forward = act_forward, .backward = act_backward, .unary = 1,
    .opset_min = 1, .opset_max = 0, .doc = "y = x > 0 ? x : αx (alpha)"};
const op_def_t op_clip = {.name = "Clip", .init = clip_init, .forward = act_forward, .backward = act_backward, .unary = 1,
    .opset_min = 1, .opset_max = 0, .doc = "y = min(max(x, min), max): attributes before opset 11, constant inputs from 11"};
const op_def_t op_sigmoid = {.name = "Sigmoid", .init = sigmoid_init, .forward = act_forward, .backward = act_backward, .unary = 1,
    .opset_min = 1, .opset_max = 0, .doc = "y = 1 / (1 + e^-x)"};
const op_def_t op_tanh = {.name = "Tanh", .init = tanh_init, .forward = act_forward, .backward = act_backward, .unary = 1,
    .opset_min = 1, .opset_max = 0, .doc = "y = tanh x"};
const op_def_t op_hardsigmoid = {.name = "HardSigmoid", .init = hsigmoid_init, .forward = act_forward, .backward = act_backward, .unary = 1,
    .opset_min = 1, .opset_max = 0, .doc = "y = clip(αx + β, 0, 1) (alpha, beta)"};
const op_def_t op_hardswish = {.name = "HardSwish", .init = hswish_init, .forward = act_forward, .backward = act_backward, .unary = 1,
    .opset_min = 1, .opset_max = 0, .doc = "y = x · clip(x/6 + 1/2, 0, 1)"};
const op_def_t op_elu = {.name = "Elu", .init = elu_init, .forward = act_forward, .backward = act_backward, .unary = 1,
    .opset_min = 1, .opset_max = 0, .doc = "y = x > 0 ? x : α(eˣ - 1) (alpha)"};
const op_def_t op_selu = {.name = "Selu", .init = selu_init, .forward = act_forward, .backward = act_backward, .unary = 1,
    .opset_min = 1, .opset_max = 0, .doc = "y = γ(x > 0 ? x : α(eˣ - 1)) (alpha, gamma)"};
const op_def_t op_celu = {.name = "Celu", .init = celu_init, .forward = act_forward, .backward = act_backward, .unary = 1,
    .opset_min = 12, .opset_max = 0, .doc = "y = max(0, x) + min(0, α(e^(x/α) - 1)) (alpha)"};
const op_def_t op_prelu = {.name = "PRelu", .init = prelu_init, .forward = act_forward, .backward = act_backward, .unary = 1,
    .opset_min = 7, .opset_max = 0, .doc = "y = x > 0 ? x : slope·x; slope a constant broadcast to x (scalar, per channel (C,1,1), ...)"};
const op_def_t op_softplus = {.name = "Softplus", .init = softplus_init, .forward = act_forward, .backward = act_backward, .unary = 1,
    .opset_min = 1, .opset_max = 0, .doc = "y = log(1 + eˣ)"};
const op_def_t op_softsign = {.name = "Softsign", .init = softsign_init, .forward = act_forward, .backward = act_backward, .unary = 1,
    .opset_min = 1, .opset_max = 0, .doc = "y = x / (1 + |x|)"};
const op_def_t op_mish = {.name = "Mish", .init = mish_init, .forward = act_forward, .backward = act_backward, .unary = 1,
    .opset_min = 1, .opset_max = 0,
    .doc = "y = x · tanh(softplus x) (ONNX opset 18; at any opset Mul(x, Tanh(Softplus(x))) is fused into it at load)"};
const op_def_t op_thresholdedrelu = {.name = "ThresholdedRelu", .init = thresh_init, .forward = act_forward, .backward = act_backward, .unary = 1,
    .opset_min = 10, .opset_max = 0, .doc = "y = x > α ? x : 0 (alpha)"};
const op_def_t op_gelu = {.name = "Gelu", .init = gelu_init, .forward = act_forward, .backward = act_backward, .unary = 1,
    .opset_min = 1, .opset_max = 0,
    .doc = "y = ½x(1 + erf(x/√2)), or the tanh approximation (approximate = tanh) (ONNX opset 20; at any opset the Erf and "
           "tanh forms PyTorch exports are fused into it at load)"};
