/* Element-wise activations. Each backward mirrors PyTorch's, including the boundary choices:
 *   Relu         y = max(x, 0)                    dx = dy · [y > 0]
 *   LeakyRelu    y = x > 0 ? x : αx               dx = dy · (x > 0 ? 1 : α)
 *   Clip         y = min(max(x, lo), hi)          dx = dy · [lo < x < hi]      (hardtanh_backward; ReLU6)
 *   Sigmoid      y = 1 / (1 + e^-x)               dx = dy · y (1 - y)
 *   Tanh         y = tanh x                       dx = dy · (1 - y²)
 *   HardSigmoid  y = clip(αx + β, 0, 1)           dx = dy · α · [0 < αx + β < 1]
 *   HardSwish    y = x · clip(x/6 + 1/2, 0, 1)    dx = dy · (x < -3 ? 0 : x <= 3 ? x/3 + 1/2 : 1)
 * Clip takes min/max as attributes before opset 11 and as optional constant inputs from 11 on.
 * These are "unary" ops: explanation methods may replace their backward through hooks (guided
 * backprop and deconvnet replace Relu's).
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../graph.h"

enum { A_RELU, A_LEAKY, A_CLIP, A_SIGMOID, A_TANH, A_HSIGMOID, A_HSWISH };
typedef struct {
    int kind;
    float alpha, beta, lo, hi;
} act_p;

static int act_init_kind(graph_t *g, node_t *n, eng_err_t *err, int kind)
{
    int rc = node_need_act(g, n, 0, err);
    if (rc) return rc;
    act_p *p = calloc(1, sizeof *p);
    if (!p) return node_err(g, n, err, ENG_ENOMEM, "out of memory");
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
    default: break;
    }
    const value_t *x = nin(g, n, 0);
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

static void act_forward(const node_t *nd, const exec_t *e)
{
    const act_p *p = nd->p;
    const size_t n = (size_t)e->n * nout(e->g, nd)->size;
    const float *x = e->x[0];
    float *y = e->y;
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
    }
}

static void act_backward(const node_t *nd, const exec_t *e)
{
    const act_p *p = nd->p;
    float *dx = e->dx[0];
    if (!dx) return;
    const size_t n = (size_t)e->n * nout(e->g, nd)->size;
    const float *x = e->x[0], *y = e->y, *dy = e->dy;
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
    }
#undef EMIT
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
