/* Lp norms: LpNormalization and GlobalLpPool.
 *   LpNormalization  along one non-batch axis (default -1), p = 1 or 2 (default 2), ‖x‖ₚ = (Σ|x|ᵖ)^(1/p):
 *     y = x / ‖x‖ₚ                   dx = dy / ‖x‖ₚ - (Σ dy·x / ‖x‖ₚ²) · ∂‖x‖ₚ/∂x,
 *                                    ∂‖x‖₂/∂x = x / ‖x‖₂ (0 where ‖x‖₂ = 0),  ∂‖x‖₁/∂x = sign x
 *     (torch autograd of x / x.norm(p, axis, keepdim=True)). As in the ONNX definition there is no ε:
 *     a zero vector gives NaN (torch's F.normalize clamps the norm instead; PyTorch exports that as
 *     ReduceL2 -> Clip -> Expand -> Div, not as this op).
 *   GlobalLpPool  x (N, C, D1, ...) -> (N, C, 1, ...), y = (Σ_spatial |x|ᵖ)^(1/p), p ≥ 1 (default 2):
 *     dx = dy · sign(x) |x|^(p-1) / y^(p-1)   (0 where y = 0; p = 1: dy · sign x)
 *     (torch.linalg.vector_norm's backward). Sums are computed in double.
 */
#include <math.h>
#include <stdlib.h>

#include "../graph.h"

typedef struct {
    size_t outer, len, inner; /* per image; GlobalLpPool: (C, S, 1) */
    double p;
} lp_p;

static int lpnorm_init(graph_t *g, node_t *n, eng_err_t *err)
{
    int rc = node_need_act(g, n, 0, err);
    if (rc) return rc;
    const value_t *x = nin(g, n, 0);
    int64_t a = attr_int(n, "axis", -1), pp = attr_int(n, "p", 2);
    if (a < -x->rank || a >= x->rank)
        return node_err(g, n, err, ENG_EFORMAT, "axis %lld out of range for rank %d", (long long)a, x->rank);
    int axis = (int)(a < 0 ? a + x->rank : a);
    if (axis == 0) return node_err(g, n, err, ENG_EUNSUPPORTED, "axis %lld normalizes over the batch", (long long)a);
    if (pp != 1 && pp != 2) return node_err(g, n, err, ENG_EFORMAT, "p is %lld; LpNormalization takes 1 or 2", (long long)pp);
    lp_p *p = calloc(1, sizeof *p);
    if (!p) return node_err(g, n, err, ENG_ENOMEM, "out of memory");
    n->p = p;
    p->outer = shape_size(axis - 1, x->dims + 1);
    p->len = (size_t)x->dims[axis];
    p->inner = shape_size(x->rank - axis - 1, x->dims + axis + 1);
    p->p = (double)pp;
    value_set_shape(nout(g, n), x->rank, x->dims);
    n->aux_per_image = sizeof(double) * p->outer * p->inner; /* the norms */
    n->flops = 3.0 * (double)x->size;
    return ENG_OK;
}

static void lpnorm_forward(const node_t *nd, const exec_t *e)
{
    const lp_p *p = nd->p;
    const size_t L = p->len, in = p->inner, img = p->outer * L * in;
    for (int i = 0; i < e->n; i++)
        for (size_t o = 0; o < p->outer; o++)
            for (size_t q = 0; q < in; q++) {
                const size_t base = (size_t)i * img + o * L * in + q;
                const float *x = e->x[0] + base;
                float *y = e->y + base;
                double s = 0;
                if (p->p == 1) for (size_t k = 0; k < L; k++) s += fabs((double)x[k * in]);
                else {
                    for (size_t k = 0; k < L; k++) s += (double)x[k * in] * x[k * in];
                    s = sqrt(s);
                }
                ((double *)e->aux)[((size_t)i * p->outer + o) * in + q] = s;
                for (size_t k = 0; k < L; k++) y[k * in] = (float)(x[k * in] / s);
            }
}

static void lpnorm_backward(const node_t *nd, const exec_t *e)
{
    const lp_p *p = nd->p;
    if (!e->dx[0]) return;
    const size_t L = p->len, in = p->inner, img = p->outer * L * in;
    const int acc = e->acc[0];
    for (int i = 0; i < e->n; i++)
        for (size_t o = 0; o < p->outer; o++)
            for (size_t q = 0; q < in; q++) {
                const size_t base = (size_t)i * img + o * L * in + q;
                const float *x = e->x[0] + base, *dy = e->dy + base;
                float *dx = e->dx[0] + base;
                const double nrm = ((const double *)e->aux)[((size_t)i * p->outer + o) * in + q];
                double sdx = 0;
                for (size_t k = 0; k < L; k++) sdx += (double)dy[k * in] * x[k * in];
                const double c = sdx / (nrm * nrm);
                for (size_t k = 0; k < L; k++) {
                    const double xv = x[k * in];
                    const double dn = p->p == 1 ? (xv > 0) - (xv < 0) : (nrm == 0 ? 0 : xv / nrm);
                    const float v = (float)(dy[k * in] / nrm - c * dn);
                    dx[k * in] = acc ? dx[k * in] + v : v;
                }
            }
}

static int glp_init(graph_t *g, node_t *n, eng_err_t *err)
{
    int rc = node_need_act(g, n, 0, err);
    if (rc) return rc;
    const value_t *x = nin(g, n, 0);
    if (x->rank < 3) return node_err(g, n, err, ENG_EFORMAT, "input rank %d; expected (N, C, D1, ...)", x->rank);
    float pp = attr_float(n, "p", 2.f);
    if (!(pp >= 1) || !isfinite(pp)) return node_err(g, n, err, ENG_EUNSUPPORTED, "p is %g; expected p >= 1", pp);
    lp_p *p = calloc(1, sizeof *p);
    if (!p) return node_err(g, n, err, ENG_ENOMEM, "out of memory");
    n->p = p;
    p->outer = (size_t)x->dims[1];
    p->len = shape_size(x->rank - 2, x->dims + 2);
    p->inner = 1;
    p->p = pp;
    int64_t od[ENG_MAX_RANK];
    for (int i = 0; i < x->rank; i++) od[i] = i < 2 ? x->dims[i] : 1;
    value_set_shape(nout(g, n), x->rank, od);
    n->flops = 3.0 * (double)x->size;
    return ENG_OK;
}

static void glp_forward(const node_t *nd, const exec_t *e)
{
    const lp_p *p = nd->p;
    const size_t S = p->len, C = p->outer;
    for (size_t r = 0; r < (size_t)e->n * C; r++) {
        const float *x = e->x[0] + r * S;
        double s = 0;
        if (p->p == 1) for (size_t k = 0; k < S; k++) s += fabs((double)x[k]);
        else if (p->p == 2) {
            for (size_t k = 0; k < S; k++) s += (double)x[k] * x[k];
            s = sqrt(s);
        } else {
            for (size_t k = 0; k < S; k++) s += pow(fabs((double)x[k]), p->p);
            s = pow(s, 1.0 / p->p);
        }
        e->y[r] = (float)s;
    }
}

static void glp_backward(const node_t *nd, const exec_t *e)
{
    const lp_p *p = nd->p;
    if (!e->dx[0]) return;
    const size_t S = p->len, C = p->outer;
    const int acc = e->acc[0];
    for (size_t r = 0; r < (size_t)e->n * C; r++) {
        const float *x = e->x[0] + r * S;
        float *dx = e->dx[0] + r * S;
        const double y = e->y[r], dy = e->dy[r];
        const double scale = p->p == 1 ? dy : y == 0 ? 0 : dy / pow(y, p->p - 1);
        for (size_t k = 0; k < S; k++) {
            const double xv = x[k], sg = (xv > 0) - (xv < 0);
            const double g = p->p == 1 ? sg : p->p == 2 ? xv : sg * pow(fabs(xv), p->p - 1);
            const float v = (float)(g * scale);
            dx[k] = acc ? dx[k] + v : v;
        }
    }
}

const op_def_t op_lpnorm = {.name = "LpNormalization", .init = lpnorm_init, .forward = lpnorm_forward, .backward = lpnorm_backward, .unary = 0,
    .opset_min = 1, .opset_max = 0, .doc = "y = x / ‖x‖ₚ along a non-batch axis (axis, p = 1 or 2; no ε, as the ONNX definition)"};
const op_def_t op_globallppool = {.name = "GlobalLpPool", .init = glp_init, .forward = glp_forward, .backward = glp_backward, .unary = 0,
    .opset_min = 2, .opset_max = 0, .doc = "y = (Σ |x|ᵖ)^(1/p) over the spatial dims (p ≥ 1, default 2)"};
