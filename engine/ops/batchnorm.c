/* BatchNormalization (inference form) when it cannot be folded into a Conv (e.g. DenseNet's
 * BN after a Concat, or files exported with training=PRESERVE and folding disabled).
 *   y[n,c,...] = s[c] · x[n,c,...] + t[c],  s = γ / √(var + ε),  t = β - mean · s
 *   dx = s[c] · dy
 * γ and β are the overlay targets (weight and bias) of the sanity checks; s and t are recomputed
 * from the overlay when one is set.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../graph.h"

typedef struct {
    int C;
    size_t inner;
    float *s, *t; /* from the shared parameters */
} bn_p;

static int bn_init(graph_t *g, node_t *n, eng_err_t *err)
{
    int rc = node_need_act(g, n, 0, err);
    if (rc) return rc;
    if (n->n_in < 5) return node_err(g, n, err, ENG_EFORMAT, "needs 5 inputs");
    for (int k = 1; k < 5; k++)
        if ((rc = node_need_const(g, n, k, err))) return rc;
    if (attr_int(n, "training_mode", 0))
        return node_err(g, n, err, ENG_EUNSUPPORTED,
                        "training_mode=1 normalizes with the statistics of the batch (it mixes the images); "
                        "export the model in eval mode");
    const value_t *x = nin(g, n, 0);
    if (x->rank < 2) return node_err(g, n, err, ENG_EFORMAT, "input rank < 2");
    int C = (int)x->dims[1];
    for (int k = 1; k < 5; k++)
        if ((int)nin(g, n, k)->size != C)
            return node_err(g, n, err, ENG_EFORMAT, "parameter %d has %zu values for %d channels", k, nin(g, n, k)->size, C);
    bn_p *p = calloc(1, sizeof *p + 2 * sizeof(float) * (size_t)C);
    if (!p) return node_err(g, n, err, ENG_ENOMEM, "out of memory");
    n->p = p;
    p->C = C;
    p->inner = shape_size(x->rank - 2, x->dims + 2);
    p->s = (float *)(p + 1);
    p->t = p->s + C;
    double eps = attr_float(n, "epsilon", 1e-5f);
    const float *ga = nin(g, n, 1)->f, *be = nin(g, n, 2)->f, *mu = nin(g, n, 3)->f, *var = nin(g, n, 4)->f;
    for (int c = 0; c < C; c++) {
        double s = ga[c] / sqrt((double)var[c] + eps);
        p->s[c] = (float)s;
        p->t[c] = (float)(be[c] - mu[c] * s);
    }
    n->w_in = 1;
    n->b_in = 2;
    value_set_shape(nout(g, n), x->rank, x->dims);
    n->flops = 2.0 * (double)x->size;
    n->params = 4LL * C;
    return ENG_OK;
}

/* scale and shift for channel c, honouring an overlay of γ/β */
static void bn_coef(const node_t *nd, const exec_t *e, int c, float *s, float *t)
{
    const bn_p *p = nd->p;
    const float *ga0 = nin(e->g, nd, 1)->f, *be0 = nin(e->g, nd, 2)->f;
    if (e->w == ga0 && e->b == be0) {
        *s = p->s[c];
        *t = p->t[c];
        return;
    }
    double eps = attr_float(nd, "epsilon", 1e-5f);
    const float *mu = nin(e->g, nd, 3)->f, *var = nin(e->g, nd, 4)->f;
    double sc = e->w[c] / sqrt((double)var[c] + eps);
    *s = (float)sc;
    *t = (float)(e->b[c] - mu[c] * sc);
}

static void bn_forward(const node_t *nd, const exec_t *e)
{
    const bn_p *p = nd->p;
    for (int i = 0; i < e->n; i++)
        for (int c = 0; c < p->C; c++) {
            float s, t;
            bn_coef(nd, e, c, &s, &t);
            const float *x = e->x[0] + ((size_t)i * p->C + c) * p->inner;
            float *y = e->y + ((size_t)i * p->C + c) * p->inner;
            for (size_t q = 0; q < p->inner; q++) y[q] = s * x[q] + t;
        }
}

static void bn_backward(const node_t *nd, const exec_t *e)
{
    const bn_p *p = nd->p;
    if (!e->dx[0]) return;
    for (int i = 0; i < e->n; i++)
        for (int c = 0; c < p->C; c++) {
            float s, t;
            bn_coef(nd, e, c, &s, &t);
            const float *dy = e->dy + ((size_t)i * p->C + c) * p->inner;
            float *dx = e->dx[0] + ((size_t)i * p->C + c) * p->inner;
            if (e->acc[0]) for (size_t q = 0; q < p->inner; q++) dx[q] += s * dy[q];
            else for (size_t q = 0; q < p->inner; q++) dx[q] = s * dy[q];
        }
}

const op_def_t op_batchnorm = {.name = "BatchNormalization", .init = bn_init, .forward = bn_forward, .backward = bn_backward, .unary = 0,
    .opset_min = 1, .opset_max = 0, .doc = "inference form (running statistics); folded into the Conv before it when it is that Conv's only consumer"};
