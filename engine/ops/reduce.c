/* ReduceMean, ReduceMax, ReduceSum, ReduceL2, ReduceLogSumExp over a contiguous range of non-batch
 * axes (CBAM's channel mean and max, global pooling written as ReduceMean over H,W, F.normalize's
 * norm, torch.logsumexp).
 *   The per-image tensor is viewed as (outer, R, inner) with R the product of the reduced axes.
 *   Mean:       y = Σ x / R                     dx = dy / R
 *   Sum:        y = Σ x                         dx = dy
 *   Max:        y = max x (argmax saved: the first maximum, as torch.max(dim))   dx[argmax] += dy
 *   L2:         y = √(Σ x²)                     dx = dy · x / y   (0 where y = 0: torch's norm_backward)
 *   LogSumExp:  y = m + log Σ exp(x - m)        dx = dy · exp(x - y)   (logsumexp_backward; m = max,
 *               or 0 when the max is infinite, as torch)
 * Every sum (Sum, Mean, L2, LogSumExp) accumulates in double.
 * Axes: an attribute before opset 18 (ReduceSum: before 13), then an optional constant int64 input.
 * Absent (or, as an input, empty) axes mean every axis, which includes the batch and is refused;
 * unless noop_with_empty_axes = 1 (where axes are an input), which makes the op the identity.
 * keepdims (default 1) keeps size-1 dims.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../graph.h"

enum { R_MEAN, R_MAX, R_SUM, R_L2, R_LSE };
typedef struct {
    int kind;
    int noop;
    size_t outer, R, inner;
} red_p;

int reduce_axes(const graph_t *g, const node_t *n, int64_t *ax, int max)
{
    int as_input = g->opset >= 18 || (!strcmp(n->op_type, "ReduceSum") && g->opset >= 13);
    if (!as_input) {
        if (n->n_in > 1 && n->in[1] >= 0) return -2;
        int na = attr_ints(n, "axes", ax, max);
        return na > max ? -2 : na;
    }
    if (attr_get(n, "axes")) return -2;
    if (n->n_in < 2 || n->in[1] < 0) return -1;
    const value_t *a = nin(g, n, 1);
    if (!a->is_const || a->dtype != DT_INT64 || a->rank > 1 || a->size > (size_t)max) return -2;
    for (size_t k = 0; k < a->size; k++) ax[k] = a->i64[k];
    return (int)a->size;
}

static int red_init_kind(graph_t *g, node_t *n, eng_err_t *err, int kind)
{
    int rc = node_need_act(g, n, 0, err);
    if (rc) return rc;
    const value_t *x = nin(g, n, 0);
    int64_t ax[ENG_MAX_RANK];
    int na = reduce_axes(g, n, ax, ENG_MAX_RANK);
    if (na == -2) {
        if (g->opset >= 18 || (kind == R_SUM && g->opset >= 13))
            return node_err(g, n, err, ENG_EUNSUPPORTED,
                            "axes must be a constant int64 input (not an attribute) at this opset, at most %d of them",
                            ENG_MAX_RANK);
        return node_err(g, n, err, ENG_EUNSUPPORTED, "axes must be an attribute (at most %d) before opset 18",
                        ENG_MAX_RANK);
    }
    red_p *p = calloc(1, sizeof *p);
    if (!p) return node_err(g, n, err, ENG_ENOMEM, "out of memory");
    n->p = p;
    p->kind = kind;
    if (na <= 0 && attr_int(n, "noop_with_empty_axes", 0) &&
        (g->opset >= 18 || (kind == R_SUM && g->opset >= 13))) {
        p->noop = 1;
        value_set_shape(nout(g, n), x->rank, x->dims);
        return ENG_OK;
    }
    if (na <= 0) return node_err(g, n, err, ENG_EUNSUPPORTED, "reducing over all axes would include the batch");
    char red[ENG_MAX_RANK] = {0};
    for (int k = 0; k < na; k++) {
        int a = (int)(ax[k] < 0 ? ax[k] + x->rank : ax[k]);
        if (a < 0 || a >= x->rank) return node_err(g, n, err, ENG_EFORMAT, "axis %lld out of range", (long long)ax[k]);
        if (a == 0) return node_err(g, n, err, ENG_EUNSUPPORTED, "reducing over the batch axis");
        red[a] = 1;
    }
    int lo = -1, hi = -1;
    for (int i = 0; i < x->rank; i++)
        if (red[i]) {
            if (lo < 0) lo = i;
            if (hi >= 0 && hi != i - 1)
                return node_err(g, n, err, ENG_EUNSUPPORTED, "non-contiguous reduction axes");
            hi = i;
        }
    p->outer = shape_size(lo - 1, x->dims + 1);
    p->R = shape_size(hi - lo + 1, x->dims + lo);
    p->inner = shape_size(x->rank - hi - 1, x->dims + hi + 1);
    int keep = (int)attr_int(n, "keepdims", 1);
    int64_t od[ENG_MAX_RANK];
    int orank = 0;
    for (int i = 0; i < x->rank; i++) {
        if (red[i]) {
            if (keep) od[orank++] = 1;
        } else {
            od[orank++] = x->dims[i];
        }
    }
    value_set_shape(nout(g, n), orank, od);
    if (kind == R_MAX) n->aux_per_image = sizeof(int32_t) * p->outer * p->inner;
    if (kind != R_MAX) n->scratch_fixed = 2 * p->inner + 16; /* inner doubles */
    n->flops = (double)x->size;
    return ENG_OK;
}

static int mean_init(graph_t *g, node_t *n, eng_err_t *err) { return red_init_kind(g, n, err, R_MEAN); }
static int max_init(graph_t *g, node_t *n, eng_err_t *err) { return red_init_kind(g, n, err, R_MAX); }
static int sum_init(graph_t *g, node_t *n, eng_err_t *err) { return red_init_kind(g, n, err, R_SUM); }
static int l2_init(graph_t *g, node_t *n, eng_err_t *err) { return red_init_kind(g, n, err, R_L2); }
static int lse_init(graph_t *g, node_t *n, eng_err_t *err) { return red_init_kind(g, n, err, R_LSE); }

static void red_forward(const node_t *nd, const exec_t *e)
{
    const red_p *p = nd->p;
    if (p->noop) {
        memcpy(e->y, e->x[0], sizeof(float) * (size_t)e->n * nout(e->g, nd)->size);
        return;
    }
    const size_t in_img = p->outer * p->R * p->inner, out_img = p->outer * p->inner;
    double *acc = (double *)e->scratch; /* Sum, Mean, L2, LogSumExp: inner sums */
    for (int i = 0; i < e->n; i++)
        for (size_t o = 0; o < p->outer; o++) {
            const float *x = e->x[0] + i * in_img + o * p->R * p->inner;
            float *y = e->y + i * out_img + o * p->inner;
            if (p->kind == R_MAX) {
                int32_t *a = (int32_t *)e->aux + i * out_img + o * p->inner;
                for (size_t q = 0; q < p->inner; q++) {
                    y[q] = x[q];
                    a[q] = 0;
                }
                for (size_t r = 1; r < p->R; r++)
                    for (size_t q = 0; q < p->inner; q++) {
                        float v = x[r * p->inner + q];
                        if (v > y[q] || isnan(v)) {
                            y[q] = v;
                            a[q] = (int32_t)r;
                        }
                    }
            } else if (p->kind == R_L2) {
                for (size_t q = 0; q < p->inner; q++) acc[q] = 0;
                for (size_t r = 0; r < p->R; r++)
                    for (size_t q = 0; q < p->inner; q++) acc[q] += (double)x[r * p->inner + q] * x[r * p->inner + q];
                for (size_t q = 0; q < p->inner; q++) y[q] = (float)sqrt(acc[q]);
            } else if (p->kind == R_LSE) {
                for (size_t q = 0; q < p->inner; q++) y[q] = x[q]; /* the max, then the result */
                for (size_t r = 1; r < p->R; r++)
                    for (size_t q = 0; q < p->inner; q++) y[q] = fmaxf(y[q], x[r * p->inner + q]);
                for (size_t q = 0; q < p->inner; q++) {
                    if (isinf(y[q])) y[q] = 0;
                    acc[q] = 0;
                }
                for (size_t r = 0; r < p->R; r++)
                    for (size_t q = 0; q < p->inner; q++) acc[q] += exp((double)x[r * p->inner + q] - y[q]);
                for (size_t q = 0; q < p->inner; q++) y[q] = (float)(y[q] + log(acc[q]));
            } else { /* Sum, Mean: in double, as GlobalAveragePool (pool.c: float running sums drift on flat maps) */
                for (size_t q = 0; q < p->inner; q++) acc[q] = 0;
                for (size_t r = 0; r < p->R; r++)
                    for (size_t q = 0; q < p->inner; q++) acc[q] += x[r * p->inner + q];
                const double div = p->kind == R_MEAN ? (double)p->R : 1.0;
                for (size_t q = 0; q < p->inner; q++) y[q] = (float)(acc[q] / div);
            }
        }
}

static void red_backward(const node_t *nd, const exec_t *e)
{
    const red_p *p = nd->p;
    if (!e->dx[0]) return;
    if (p->noop) {
        const size_t n = (size_t)e->n * nout(e->g, nd)->size;
        if (e->acc[0]) for (size_t k = 0; k < n; k++) e->dx[0][k] += e->dy[k];
        else memcpy(e->dx[0], e->dy, sizeof(float) * n);
        return;
    }
    const size_t in_img = p->outer * p->R * p->inner, out_img = p->outer * p->inner;
    const int acc = e->acc[0];
    if (!acc && p->kind == R_MAX) memset(e->dx[0], 0, sizeof(float) * in_img * e->n);
    for (int i = 0; i < e->n; i++)
        for (size_t o = 0; o < p->outer; o++) {
            float *dx = e->dx[0] + i * in_img + o * p->R * p->inner;
            const float *dy = e->dy + i * out_img + o * p->inner;
            if (p->kind == R_MAX) {
                const int32_t *a = (const int32_t *)e->aux + i * out_img + o * p->inner;
                for (size_t q = 0; q < p->inner; q++) dx[(size_t)a[q] * p->inner + q] += dy[q];
                continue;
            }
            if (p->kind == R_L2 || p->kind == R_LSE) {
                const float *x = e->x[0] + i * in_img + o * p->R * p->inner;
                const float *y = e->y + i * out_img + o * p->inner;
                for (size_t r = 0; r < p->R; r++)
                    for (size_t q = 0; q < p->inner; q++) {
                        const float xv = x[r * p->inner + q];
                        float v = p->kind == R_L2 ? (y[q] == 0 ? 0.f : dy[q] * (xv / y[q])) : dy[q] * expf(xv - y[q]);
                        if (acc) dx[r * p->inner + q] += v;
                        else dx[r * p->inner + q] = v;
                    }
                continue;
            }
            float s = p->kind == R_MEAN ? 1.f / (float)p->R : 1.f;
            for (size_t r = 0; r < p->R; r++)
                for (size_t q = 0; q < p->inner; q++) {
                    float v = dy[q] * s;
                    if (acc) dx[r * p->inner + q] += v;
                    else dx[r * p->inner + q] = v;
                }
        }
}

const op_def_t op_reducemean = {.name = "ReduceMean", .init = mean_init, .forward = red_forward, .backward = red_backward, .unary = 0,
    .opset_min = 1, .opset_max = 0, .doc = "over contiguous non-batch axes (attribute before opset 18, input from 18), keepdims"};
const op_def_t op_reducemax = {.name = "ReduceMax", .init = max_init, .forward = red_forward, .backward = red_backward, .unary = 0,
    .opset_min = 1, .opset_max = 0, .doc = "over contiguous non-batch axes (attribute before opset 18, input from 18), keepdims; first maximum"};
const op_def_t op_reducesum = {.name = "ReduceSum", .init = sum_init, .forward = red_forward, .backward = red_backward, .unary = 0,
    .opset_min = 1, .opset_max = 0, .doc = "over contiguous non-batch axes (attribute before opset 13, input from 13), keepdims"};
const op_def_t op_reducel2 = {.name = "ReduceL2", .init = l2_init, .forward = red_forward, .backward = red_backward, .unary = 0,
    .opset_min = 1, .opset_max = 0, .doc = "y = √(Σ x²) over contiguous non-batch axes (attribute before opset 18, input from 18), keepdims"};
const op_def_t op_reducelogsumexp = {.name = "ReduceLogSumExp", .init = lse_init, .forward = red_forward, .backward = red_backward, .unary = 0,
    .opset_min = 1, .opset_max = 0, .doc = "y = log Σ exp x over contiguous non-batch axes (attribute before opset 18, input from 18), keepdims"};
