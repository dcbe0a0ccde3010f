/* InstanceNormalization: x (N, C, D1, ...) normalized per image and channel over the spatial dims.
 * For each (n, c), with μ the mean over the S spatial elements, σ² the biased variance and
 * r = 1/√(σ² + ε):
 *   x̂ = (x - μ) r,  y = scale[c] x̂ + B[c]        g = dy · scale[c]
 *                                                 dx = r (g - mean(g) - x̂ · mean(g · x̂))
 * (PyTorch's instance_norm backward with batch statistics, data gradient only). Statistics and the
 * backward sums are computed in double; μ and r are saved for the backward (aux).
 * Attributes: epsilon (default 1e-5); scale and B are constant (C) inputs. The op is the same at
 * every opset. PyTorch exports nn.InstanceNorm*d (without running statistics) as this op, with
 * constant ones and zeros when affine=False, and nn.GroupNorm as Reshape (N, G, -1) ->
 * InstanceNormalization -> Reshape -> Mul -> Add.
 */
#include <math.h>
#include <stdlib.h>

#include "../graph.h"

typedef struct {
    size_t C, S; /* channels, spatial elements per channel */
    double eps;
} in_p;

static int in_init(graph_t *g, node_t *n, eng_err_t *err)
{
    int rc = node_need_act(g, n, 0, err);
    if (rc) return rc;
    if (n->n_in < 3) return node_err(g, n, err, ENG_EFORMAT, "needs 3 inputs (input, scale, B)");
    if ((rc = node_need_const(g, n, 1, err)) || (rc = node_need_const(g, n, 2, err))) return rc;
    const value_t *x = nin(g, n, 0);
    if (x->rank < 3) return node_err(g, n, err, ENG_EFORMAT, "input rank %d; expected (N, C, D1, ...)", x->rank);
    size_t C = (size_t)x->dims[1];
    if (nin(g, n, 1)->size != C || nin(g, n, 2)->size != C)
        return node_err(g, n, err, ENG_EFORMAT, "scale and B have %zu and %zu values for %zu channels",
                        nin(g, n, 1)->size, nin(g, n, 2)->size, C);
    float eps = attr_float(n, "epsilon", 1e-5f);
    if (!(eps >= 0) || !isfinite(eps)) return node_err(g, n, err, ENG_EFORMAT, "epsilon must be finite and >= 0");
    in_p *p = calloc(1, sizeof *p);
    if (!p) return node_err(g, n, err, ENG_ENOMEM, "out of memory");
    n->p = p;
    p->C = C;
    p->S = shape_size(x->rank - 2, x->dims + 2);
    p->eps = eps;
    value_set_shape(nout(g, n), x->rank, x->dims);
    n->aux_per_image = 2 * sizeof(double) * C;
    n->flops = 8.0 * (double)x->size;
    n->params = 2 * (int64_t)C;
    return ENG_OK;
}

static void in_forward(const node_t *nd, const exec_t *e)
{
    const in_p *p = nd->p;
    const float *sc = nin(e->g, nd, 1)->f, *bi = nin(e->g, nd, 2)->f;
    const size_t S = p->S;
    for (int i = 0; i < e->n; i++) {
        double *mu = (double *)e->aux + (size_t)i * 2 * p->C, *rs = mu + p->C;
        for (size_t c = 0; c < p->C; c++) {
            const float *x = e->x[0] + ((size_t)i * p->C + c) * S;
            float *y = e->y + ((size_t)i * p->C + c) * S;
            double s = 0, v = 0;
            for (size_t k = 0; k < S; k++) s += x[k];
            const double mean = s / (double)S;
            for (size_t k = 0; k < S; k++) v += ((double)x[k] - mean) * ((double)x[k] - mean);
            const double rstd = 1.0 / sqrt(v / (double)S + p->eps), a = sc[c], b = bi[c];
            for (size_t k = 0; k < S; k++) y[k] = (float)(((double)x[k] - mean) * rstd * a + b);
            mu[c] = mean;
            rs[c] = rstd;
        }
    }
}

static void in_backward(const node_t *nd, const exec_t *e)
{
    const in_p *p = nd->p;
    if (!e->dx[0]) return;
    const float *sc = nin(e->g, nd, 1)->f;
    const size_t S = p->S;
    const int acc = e->acc[0];
    for (int i = 0; i < e->n; i++) {
        const double *mu = (const double *)e->aux + (size_t)i * 2 * p->C, *rs = mu + p->C;
        for (size_t c = 0; c < p->C; c++) {
            const size_t base = ((size_t)i * p->C + c) * S;
            const float *x = e->x[0] + base, *dy = e->dy + base;
            float *dx = e->dx[0] + base;
            const double m = mu[c], r = rs[c], a = sc[c];
            double sg = 0, sgx = 0;
            for (size_t k = 0; k < S; k++) {
                const double gv = (double)dy[k] * a;
                sg += gv;
                sgx += gv * ((double)x[k] - m) * r;
            }
            sg /= (double)S;
            sgx /= (double)S;
            for (size_t k = 0; k < S; k++) {
                const float v = (float)(r * ((double)dy[k] * a - sg - ((double)x[k] - m) * r * sgx));
                dx[k] = acc ? dx[k] + v : v;
            }
        }
    }
}

const op_def_t op_instancenorm = {.name = "InstanceNormalization", .init = in_init, .forward = in_forward, .backward = in_backward, .unary = 0,
    .opset_min = 1, .opset_max = 0, .doc = "per image and channel over the spatial dims (epsilon; scale, B constants (C))"};
