/* Softmax and LogSoftmax. Before opset 13 the input is viewed as 2-D at `axis` (default 1) and
 * each row of prod(dims[axis:]) is normalized; from opset 13 they run along the single `axis`
 * (default -1).
 *   Softmax     y = exp(x - max) / Σ exp(x - max)        dx = y ⊙ (dy - Σ dy ⊙ y)
 *   LogSoftmax  y = x - max - log Σ exp(x - max)         dx = dy - exp(y) Σ dy   (log_softmax_backward)
 * The engine explains logits: a Softmax or LogSoftmax ending the graph is stripped at load
 * (graph_finalize), so these ops only run when a model uses them inside (attention, for instance).
 * Stripping a final LogSoftmax is a choice: log-probabilities differ from the logits by a
 * per-image constant, so the predicted class is the same, but their gradients differ; a model
 * that ends in log_softmax (a common NLL-loss classifier) is explained like one ending in softmax.
 */
#include <math.h>
#include <stdlib.h>

#include "../graph.h"

typedef struct {
    size_t outer, len, inner; /* per image */
    int log;
} sm_p;

static int sm_init(graph_t *g, node_t *n, eng_err_t *err, int log)
{
    int rc = node_need_act(g, n, 0, err);
    if (rc) return rc;
    const value_t *x = nin(g, n, 0);
    int64_t a = attr_int(n, "axis", g->opset < 13 ? 1 : -1);
    int axis = (int)(a < 0 ? a + x->rank : a);
    if (axis < 1 || axis >= x->rank) return node_err(g, n, err, ENG_EUNSUPPORTED, "axis %lld includes the batch", (long long)a);
    sm_p *p = calloc(1, sizeof *p);
    if (!p) return node_err(g, n, err, ENG_ENOMEM, "out of memory");
    n->p = p;
    p->log = log;
    if (g->opset < 13) {
        p->outer = shape_size(axis - 1, x->dims + 1);
        p->len = shape_size(x->rank - axis, x->dims + axis);
        p->inner = 1;
    } else {
        p->outer = shape_size(axis - 1, x->dims + 1);
        p->len = (size_t)x->dims[axis];
        p->inner = shape_size(x->rank - axis - 1, x->dims + axis + 1);
    }
    value_set_shape(nout(g, n), x->rank, x->dims);
    n->flops = 3.0 * (double)x->size;
    return ENG_OK;
}

static int softmax_init(graph_t *g, node_t *n, eng_err_t *err) { return sm_init(g, n, err, 0); }
static int logsoftmax_init(graph_t *g, node_t *n, eng_err_t *err) { return sm_init(g, n, err, 1); }

static void softmax_forward(const node_t *nd, const exec_t *e)
{
    const sm_p *p = nd->p;
    const size_t img = p->outer * p->len * p->inner;
    for (int i = 0; i < e->n; i++)
        for (size_t o = 0; o < p->outer; o++)
            for (size_t q = 0; q < p->inner; q++) {
                const float *x = e->x[0] + i * img + o * p->len * p->inner + q;
                float *y = e->y + i * img + o * p->len * p->inner + q;
                float m = -INFINITY;
                for (size_t k = 0; k < p->len; k++) m = fmaxf(m, x[k * p->inner]);
                double s = 0;
                if (p->log) {
                    if (isinf(m)) m = 0; /* all -inf (or a +inf): as torch, no inf - inf */
                    for (size_t k = 0; k < p->len; k++) s += exp((double)x[k * p->inner] - m);
                    const double lse = m + log(s);
                    for (size_t k = 0; k < p->len; k++) y[k * p->inner] = (float)((double)x[k * p->inner] - lse);
                    continue;
                }
                for (size_t k = 0; k < p->len; k++) {
                    y[k * p->inner] = expf(x[k * p->inner] - m);
                    s += y[k * p->inner];
                }
                for (size_t k = 0; k < p->len; k++) y[k * p->inner] = (float)(y[k * p->inner] / s);
            }
}

static void softmax_backward(const node_t *nd, const exec_t *e)
{
    const sm_p *p = nd->p;
    if (!e->dx[0]) return;
    const size_t img = p->outer * p->len * p->inner;
    for (int i = 0; i < e->n; i++)
        for (size_t o = 0; o < p->outer; o++)
            for (size_t q = 0; q < p->inner; q++) {
                size_t base = i * img + o * p->len * p->inner + q;
                const float *y = e->y + base, *dy = e->dy + base;
                float *dx = e->dx[0] + base;
                double s = 0;
                if (p->log) {
                    for (size_t k = 0; k < p->len; k++) s += dy[k * p->inner];
                    for (size_t k = 0; k < p->len; k++) {
                        float v = dy[k * p->inner] - expf(y[k * p->inner]) * (float)s;
                        if (e->acc[0]) dx[k * p->inner] += v;
                        else dx[k * p->inner] = v;
                    }
                    continue;
                }
                for (size_t k = 0; k < p->len; k++) s += (double)dy[k * p->inner] * y[k * p->inner];
                for (size_t k = 0; k < p->len; k++) {
                    float v = y[k * p->inner] * (dy[k * p->inner] - (float)s);
                    if (e->acc[0]) dx[k * p->inner] += v;
                    else dx[k * p->inner] = v;
                }
            }
}

const op_def_t op_softmax = {.name = "Softmax", .init = softmax_init, .forward = softmax_forward, .backward = softmax_backward, .unary = 0,
    .opset_min = 1, .opset_max = 0, .doc = "over a non-batch axis (opset < 13: the coerced 2-D form)"};
const op_def_t op_logsoftmax = {.name = "LogSoftmax", .init = logsoftmax_init, .forward = softmax_forward, .backward = softmax_backward, .unary = 0,
    .opset_min = 1, .opset_max = 0,
    .doc = "over a non-batch axis (opset < 13: the coerced 2-D form); a final LogSoftmax is stripped at load like Softmax: the logits are explained"};
