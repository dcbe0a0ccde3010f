/* Gather with constant indices on a non-batch axis (x[:, 3], x[:, [2, 0]], an embedding-like lookup).
 *   x viewed per image as (outer, d, inner) around `axis`; idx a constant int tensor of any rank.
 *   Forward:  y[o, j, q] = x[o, idx[j], q]                  y's shape: x's with axis replaced by idx's
 *   Backward: dx = 0;  dx[o, idx[j], q] += dy[o, j, q]       (repeated indices add up, as index_select)
 * A scalar index drops the axis; negative indices count from the end (ONNX Gather-11/13; out of range
 * is an error at load). Axis 0 is the batch and is refused. Gather on constants is folded at load.
 */
#include <stdlib.h>
#include <string.h>

#include "../graph.h"

typedef struct {
    size_t outer, d, inner, nidx; /* per image */
    int64_t idx[];                /* normalized indices */
} gather_p;

static int gather_init(graph_t *g, node_t *n, eng_err_t *err)
{
    int rc = node_need_act(g, n, 0, err);
    if (rc) return rc;
    if (n->n_in < 2 || n->in[1] < 0) return node_err(g, n, err, ENG_EFORMAT, "the indices input is missing");
    const value_t *x = nin(g, n, 0), *iv = nin(g, n, 1);
    if (!iv->is_const || iv->dtype != DT_INT64)
        return node_err(g, n, err, ENG_EUNSUPPORTED, "the indices '%s' must be an integer constant", iv->name);
    const int r = x->rank;
    int64_t a = attr_int(n, "axis", 0);
    int axis = (int)(a < 0 ? a + r : a);
    if (a < -r || a >= r) return node_err(g, n, err, ENG_EFORMAT, "axis %lld out of range for rank %d", (long long)a, r);
    if (axis == 0)
        return node_err(g, n, err, ENG_EUNSUPPORTED, "gathering along axis 0 would select images of the batch");
    if (r - 1 + iv->rank > ENG_MAX_RANK)
        return node_err(g, n, err, ENG_EUNSUPPORTED, "the output rank %d is over %d", r - 1 + iv->rank, ENG_MAX_RANK);
    if (iv->size == 0) return node_err(g, n, err, ENG_EUNSUPPORTED, "no indices: the output is empty");
    gather_p *p = calloc(1, sizeof *p + sizeof(int64_t) * iv->size);
    if (!p) return node_err(g, n, err, ENG_ENOMEM, "out of memory");
    n->p = p;
    p->d = (size_t)x->dims[axis];
    p->outer = shape_size(axis - 1, x->dims + 1);
    p->inner = shape_size(r - axis - 1, x->dims + axis + 1);
    p->nidx = iv->size;
    const int64_t d = x->dims[axis];
    for (size_t j = 0; j < iv->size; j++) {
        int64_t k = iv->i64[j];
        if (k < -d || k >= d)
            return node_err(g, n, err, ENG_EFORMAT, "index %lld out of range for axis %d of size %lld", (long long)k, axis,
                            (long long)d);
        p->idx[j] = k < 0 ? k + d : k;
    }
    int64_t od[ENG_MAX_RANK];
    int orank = 0;
    for (int i = 0; i < axis; i++) od[orank++] = x->dims[i];
    for (int i = 0; i < iv->rank; i++) od[orank++] = iv->dims[i];
    for (int i = axis + 1; i < r; i++) od[orank++] = x->dims[i];
    value_set_shape(nout(g, n), orank, od);
    return ENG_OK;
}

static void gather_forward(const node_t *nd, const exec_t *e)
{
    const gather_p *p = nd->p;
    const size_t in_img = p->outer * p->d * p->inner, out_img = p->outer * p->nidx * p->inner;
    for (int i = 0; i < e->n; i++)
        for (size_t o = 0; o < p->outer; o++) {
            const float *x = e->x[0] + (size_t)i * in_img + o * p->d * p->inner;
            float *y = e->y + (size_t)i * out_img + o * p->nidx * p->inner;
            for (size_t j = 0; j < p->nidx; j++)
                memcpy(y + j * p->inner, x + (size_t)p->idx[j] * p->inner, sizeof(float) * p->inner);
        }
}

static void gather_backward(const node_t *nd, const exec_t *e)
{
    const gather_p *p = nd->p;
    if (!e->dx[0]) return;
    const size_t in_img = p->outer * p->d * p->inner, out_img = p->outer * p->nidx * p->inner;
    if (!e->acc[0]) memset(e->dx[0], 0, sizeof(float) * in_img * (size_t)e->n);
    for (int i = 0; i < e->n; i++)
        for (size_t o = 0; o < p->outer; o++) {
            float *dx = e->dx[0] + (size_t)i * in_img + o * p->d * p->inner;
            const float *dy = e->dy + (size_t)i * out_img + o * p->nidx * p->inner;
            for (size_t j = 0; j < p->nidx; j++) {
                float *dst = dx + (size_t)p->idx[j] * p->inner;
                const float *src = dy + j * p->inner;
                for (size_t q = 0; q < p->inner; q++) dst[q] += src[q];
            }
        }
}

const op_def_t op_gather = {.name = "Gather", .init = gather_init, .forward = gather_forward, .backward = gather_backward,
    .unary = 0, .opset_min = 1, .opset_max = 0,
    .doc = "constant integer indices (any rank; negative count from the end) on a non-batch axis"};
