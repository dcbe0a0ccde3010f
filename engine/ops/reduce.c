/* ReduceMean, ReduceMax, ReduceSum over a contiguous range of non-batch axes (CBAM's channel mean
 * and max, global pooling written as ReduceMean over H,W).
 *   The per-image tensor is viewed as (outer, R, inner) with R the product of the reduced axes.
 *   Mean: y = Σ x / R            dx = dy / R
 *   Sum:  y = Σ x                dx = dy
 *   Max:  y = max x (argmax saved: the first maximum, as torch.max(dim))   dx[argmax] += dy
 * Axes are an attribute up to opset 17 (ReduceSum: an input from 13). keepdims keeps size-1 dims.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../graph.h"

enum { R_MEAN, R_MAX, R_SUM };
typedef struct {
    int kind;
    size_t outer, R, inner;
} red_p;

static int red_init_kind(graph_t *g, node_t *n, eng_err_t *err, int kind)
{
    int rc = node_need_act(g, n, 0, err);
    if (rc) return rc;
    const value_t *x = nin(g, n, 0);
    int64_t ax[ENG_MAX_RANK + 1];
    int na;
    if (kind == R_SUM && g->opset >= 13) {
        na = -1;
        if (n->n_in > 1 && n->in[1] >= 0) {
            const value_t *a = nin(g, n, 1);
            if (!a->is_const || a->dtype != DT_INT64 || a->size > ENG_MAX_RANK)
                return node_err(g, n, err, ENG_EUNSUPPORTED, "axes must be a constant");
            na = (int)a->size;
            for (int k = 0; k < na; k++) ax[k] = a->i64[k];
        }
    } else {
        na = attr_ints(n, "axes", ax, ENG_MAX_RANK + 1);
    }
    if (na < 0) return node_err(g, n, err, ENG_EUNSUPPORTED, "reducing over all axes would include the batch");
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
    if (lo < 0) return node_err(g, n, err, ENG_EFORMAT, "no axes");
    red_p *p = calloc(1, sizeof *p);
    if (!p) return node_err(g, n, err, ENG_ENOMEM, "out of memory");
    n->p = p;
    p->kind = kind;
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
    n->flops = (double)x->size;
    return ENG_OK;
}

static int mean_init(graph_t *g, node_t *n, eng_err_t *err) { return red_init_kind(g, n, err, R_MEAN); }
static int max_init(graph_t *g, node_t *n, eng_err_t *err) { return red_init_kind(g, n, err, R_MAX); }
static int sum_init(graph_t *g, node_t *n, eng_err_t *err) { return red_init_kind(g, n, err, R_SUM); }

static void red_forward(const node_t *nd, const exec_t *e)
{
    const red_p *p = nd->p;
    const size_t in_img = p->outer * p->R * p->inner, out_img = p->outer * p->inner;
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
            } else {
                for (size_t q = 0; q < p->inner; q++) y[q] = 0;
                for (size_t r = 0; r < p->R; r++)
                    for (size_t q = 0; q < p->inner; q++) y[q] += x[r * p->inner + q];
                if (p->kind == R_MEAN)
                    for (size_t q = 0; q < p->inner; q++) y[q] /= (float)p->R;
            }
        }
}

static void red_backward(const node_t *nd, const exec_t *e)
{
    const red_p *p = nd->p;
    if (!e->dx[0]) return;
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
    .opset_min = 1, .opset_max = 17, .doc = "over contiguous non-batch axes (attribute axes), keepdims"};
const op_def_t op_reducemax = {.name = "ReduceMax", .init = max_init, .forward = red_forward, .backward = red_backward, .unary = 0,
    .opset_min = 1, .opset_max = 17, .doc = "over contiguous non-batch axes (attribute axes), keepdims; first maximum"};
const op_def_t op_reducesum = {.name = "ReduceSum", .init = sum_init, .forward = red_forward, .backward = red_backward, .unary = 0,
    .opset_min = 1, .opset_max = 0, .doc = "over contiguous non-batch axes (attribute before opset 13, input from 13), keepdims"};
