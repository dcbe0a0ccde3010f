/* Element-wise math on one activation. Backward as PyTorch's autograd formulas (derivatives.yaml),
 * including their values at the boundaries:
 *   Pow(x, p)     y = x^p   (p a constant)         dx = dy · p·x^(p-1), and 0 when p == 0   (pow_backward:
 *                                                   at x = 0: 0 for p > 1, dy for p = 1, ±inf for p < 1);
 *                                                   p a scalar or a tensor broadcast over x (not the batch)
 *   Pow(a, x)     y = a^x   (a a scalar constant)  dx = dy · y·ln a, and 0 where a == 0 and x >= 0
 *                                                   (pow_backward_exponent)
 *   Sqrt          y = √x                            dx = dy / (2y)
 *   Reciprocal    y = 1/x                           dx = -dy · y²
 *   Exp           y = e^x                           dx = dy · y
 *   Log           y = ln x                          dx = dy / x
 *   Neg           y = -x                            dx = -dy
 *   Abs           y = |x|                           dx = dy · sgn x,  sgn 0 = 0
 *   Erf           y = erf x                         dx = dy · 2/√π · e^(-x²)
 * Pow's exponent became any numeric type at opset 12 (an int64 constant is read as its value); the
 * others are unchanged in semantics from opset 6 to 18 (13 only adds types). Constant-only versions
 * are folded at load (engine/fold.c).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nditer.h"

enum { M_POW, M_POWT, M_POWBASE, M_SQRT, M_RECIP, M_EXP, M_LOG, M_NEG, M_ABS, M_ERF };
typedef struct {
    int kind;
    int act;    /* the activation input (Pow(a, x): 1) */
    float c;    /* Pow's constant exponent or base */
    ndi_t view; /* M_POWT: operand 1 reads the exponent tensor pw over x's shape */
    float pw[];
} math_p;

/* Pow(x, p) with a constant exponent tensor: p broadcast over x's shape (never beyond it, never over
 * the batch); kept as float with its offsets in a strided view. */
static int pow_tensor_init(graph_t *g, node_t *n, math_p **pp, eng_err_t *err)
{
    const value_t *x = nin(g, n, 0), *e = nin(g, n, 1);
    if (e->rank > x->rank || (e->rank == x->rank && e->dims[0] != 1))
        return node_err(g, n, err, ENG_EUNSUPPORTED, "the exponent '%s' would broadcast over the batch", e->name);
    int64_t ed[ENG_MAX_RANK], es[ENG_MAX_RANK];
    for (int i = 0; i < x->rank; i++) {
        int ei = i - (x->rank - e->rank);
        ed[i] = ei < 0 ? 1 : e->dims[ei];
        if (ed[i] != 1 && ed[i] != x->dims[i])
            return node_err(g, n, err, ENG_EUNSUPPORTED,
                            "the exponent's dimension %d (%lld) does not broadcast to the input's %lld", i,
                            (long long)ed[i], (long long)x->dims[i]);
    }
    math_p *p = realloc(*pp, sizeof *p + sizeof(float) * e->size);
    if (!p) return node_err(g, n, err, ENG_ENOMEM, "out of memory");
    *pp = p;
    n->p = p;
    p->kind = M_POWT;
    for (size_t k = 0; k < e->size; k++) p->pw[k] = e->dtype == DT_FLOAT ? e->f[k] : (float)e->i64[k];
    ndi_strides(x->rank, ed, es);
    memset(&p->view, 0, sizeof p->view);
    p->view.rank = x->rank;
    for (int i = 0; i < x->rank; i++) {
        p->view.d[i] = x->dims[i];
        p->view.s[1][i] = (i == 0 || ed[i] == 1) ? 0 : es[i];
    }
    return ENG_OK;
}

static int const_scalar(const graph_t *g, const node_t *n, int k, float *out, eng_err_t *err)
{
    const value_t *v = nin(g, n, k), *a = nin(g, n, 1 - k);
    if (!v->is_const || v->size != 1 || v->rank > a->rank)
        return node_err(g, n, err, ENG_EUNSUPPORTED, "input %d ('%s') must be a scalar constant (one value)", k, v->name);
    *out = v->dtype == DT_FLOAT ? v->f[0] : (float)v->i64[0];
    return ENG_OK;
}

static int math_init_kind(graph_t *g, node_t *n, eng_err_t *err, int kind)
{
    math_p *p = calloc(1, sizeof *p);
    if (!p) return node_err(g, n, err, ENG_ENOMEM, "out of memory");
    n->p = p;
    p->kind = kind;
    int rc;
    if (kind == M_POW) {
        if (n->n_in != 2 || n->in[0] < 0 || n->in[1] < 0) return node_err(g, n, err, ENG_EFORMAT, "needs two inputs");
        if (!nin(g, n, 0)->is_const) {
            const value_t *e = nin(g, n, 1);
            if (e->is_const && e->size > 1) {
                if ((rc = pow_tensor_init(g, n, &p, err))) return rc;
            } else if ((rc = const_scalar(g, n, 1, &p->c, err))) {
                return rc;
            }
        } else {
            p->kind = M_POWBASE;
            p->act = 1;
            if ((rc = const_scalar(g, n, 0, &p->c, err))) return rc;
        }
    }
    if ((rc = node_need_act(g, n, p->act, err))) return rc;
    const value_t *x = nin(g, n, p->act);
    value_set_shape(nout(g, n), x->rank, x->dims);
    n->flops = (double)x->size;
    return ENG_OK;
}

#define INIT(name, kind) \
    static int name(graph_t *g, node_t *n, eng_err_t *err) { return math_init_kind(g, n, err, kind); }
INIT(pow_init, M_POW)
INIT(sqrt_init, M_SQRT)
INIT(recip_init, M_RECIP)
INIT(exp_init, M_EXP)
INIT(log_init, M_LOG)
INIT(neg_init, M_NEG)
INIT(abs_init, M_ABS)
INIT(erf_init, M_ERF)

static float pow_fwd(float x, float p)
{
    /* the small integer exponents exporters write, exactly as a product (powf is within an ulp too) */
    if (p == 2.f) return x * x;
    if (p == 3.f) return x * x * x;
    if (p == 1.f) return x;
    if (p == 0.5f) return sqrtf(x);
    return powf(x, p);
}

static void math_forward(const node_t *nd, const exec_t *e)
{
    const math_p *p = nd->p;
    const size_t n = (size_t)e->n * nout(e->g, nd)->size;
    const float *x = e->x[p->act];
    float *y = e->y;
    const float c = p->c;
    switch (p->kind) {
    case M_POW: for (size_t i = 0; i < n; i++) y[i] = pow_fwd(x[i], c); break;
    case M_POWT: {
        const ndi_t t = ndi_for_batch(&p->view, e->n);
        const float *P = p->pw;
        NDI_LOOP(&t, {
            for (int64_t q = 0; q < L; q++) y[oo + q] = pow_fwd(x[oo + q], P[off[1] + q * is[1]]);
        });
        break;
    }
    case M_POWBASE: for (size_t i = 0; i < n; i++) y[i] = powf(c, x[i]); break;
    case M_SQRT: for (size_t i = 0; i < n; i++) y[i] = sqrtf(x[i]); break;
    case M_RECIP: for (size_t i = 0; i < n; i++) y[i] = 1.f / x[i]; break;
    case M_EXP: for (size_t i = 0; i < n; i++) y[i] = expf(x[i]); break;
    case M_LOG: for (size_t i = 0; i < n; i++) y[i] = logf(x[i]); break;
    case M_NEG: for (size_t i = 0; i < n; i++) y[i] = -x[i]; break;
    case M_ABS: for (size_t i = 0; i < n; i++) y[i] = fabsf(x[i]); break;
    case M_ERF: for (size_t i = 0; i < n; i++) y[i] = erff(x[i]); break;
    }
}

static void math_backward(const node_t *nd, const exec_t *e)
{
    const math_p *p = nd->p;
    float *dx = e->dx[p->act];
    if (!dx) return;
    const size_t n = (size_t)e->n * nout(e->g, nd)->size;
    const float *x = e->x[p->act], *y = e->y, *dy = e->dy;
    const int acc = e->acc[p->act];
    const float c = p->c;
#define EMIT(expr)                                                                                                     \
    do {                                                                                                               \
        if (acc)                                                                                                       \
            for (size_t i = 0; i < n; i++) {                                                                           \
                const float X = x[i], Y = y[i], D = dy[i];                                                             \
                (void)X, (void)Y, (void)D;                                                                                    \
                dx[i] += (expr);                                                                                       \
            }                                                                                                          \
        else                                                                                                           \
            for (size_t i = 0; i < n; i++) {                                                                           \
                const float X = x[i], Y = y[i], D = dy[i];                                                             \
                (void)X, (void)Y, (void)D;                                                                                    \
                dx[i] = (expr);                                                                                        \
            }                                                                                                          \
    } while (0)
    switch (p->kind) {
    case M_POW:
        if (c == 0.f) EMIT(0.f);
        else if (c == 1.f) EMIT(D);
        else if (c == 2.f) EMIT(D * (2.f * X));
        else if (c == 3.f) EMIT(D * (3.f * (X * X)));
        else EMIT(D * (c * powf(X, c - 1.f)));
        break;
    case M_POWT: {
        const ndi_t t = ndi_for_batch(&p->view, e->n);
        const float *P = p->pw;
        NDI_LOOP(&t, {
            for (int64_t q = 0; q < L; q++) {
                const size_t i = oo + (size_t)q;
                const float pe = P[off[1] + q * is[1]];
                const float g = pe == 0.f ? 0.f : dy[i] * (pe * powf(x[i], pe - 1.f));
                dx[i] = acc ? dx[i] + g : g;
            }
        });
        break;
    }
    case M_POWBASE: {
        const float lc = logf(c);
        EMIT((c == 0.f && X >= 0.f) ? 0.f : D * (Y * lc));
        break;
    }
    case M_SQRT: EMIT(D / (2.f * Y)); break;
    case M_RECIP: EMIT(-D * (Y * Y)); break;
    case M_EXP: EMIT(D * Y); break;
    case M_LOG: EMIT(D / X); break;
    case M_NEG: EMIT(-D); break;
    case M_ABS: EMIT(X > 0.f ? D : X < 0.f ? -D : 0.f); break;
    case M_ERF: {
        const float k = 1.12837916709551257f; /* 2/√π */
        EMIT(D * (k * expf(-X * X)));
        break;
    }
    }
#undef EMIT
}

/* Pow has two inputs (the activation may be either): not "unary", so no backward hook replaces it */
#define ROW(sym, nm, ini, un, omin, text)                                                                              \
    const op_def_t sym = {.name = nm, .init = ini, .forward = math_forward, .backward = math_backward, .unary = un,    \
                          .opset_min = omin, .opset_max = 0, .doc = text};
ROW(op_pow, "Pow", pow_init, 0, 1, "x^p with a constant exponent p (a scalar or broadcast over x), or a^x with a scalar constant base a")
ROW(op_sqrt, "Sqrt", sqrt_init, 1, 1, "y = √x")
ROW(op_reciprocal, "Reciprocal", recip_init, 1, 1, "y = 1/x")
ROW(op_exp, "Exp", exp_init, 1, 1, "y = e^x")
ROW(op_log, "Log", log_init, 1, 1, "y = ln x")
ROW(op_neg, "Neg", neg_init, 1, 1, "y = -x")
ROW(op_abs, "Abs", abs_init, 1, 1, "y = |x|; gradient sgn x with sgn 0 = 0 (as torch)")
ROW(op_erf, "Erf", erf_init, 1, 9, "y = erf x")
#undef ROW
