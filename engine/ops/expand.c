/* Expand and Tile: copies of an activation along its axes (x.expand(...), x.repeat(...)).
 *   Expand(x, shape):  y = x broadcast to broadcast(x.shape, shape)     (numpy rules, shape constant)
 *                      dx = Σ of dy over the broadcast axes
 *   Tile(x, repeats):  y[i] = x[i mod d] per axis, y's axis = repeats · d
 *                      dx[j] = Σ_k dy[k·d + j] per axis
 * Both are strided views with stride 0 along the copies (Tile views each axis as (repeat, d)).
 * The batch may not change: Expand's shape may not be longer than x's rank (that would move the batch
 * axis) and its first dimension must be 1 (the batch as exported); Tile's repeats[0] must be 1.
 * Expand (opset 8+) and Tile (6+) take their shape/repeats as inputs, here constants; 13 adds types.
 */
#include <stdlib.h>

#include "nditer.h"

static int int_const(const graph_t *g, const node_t *n, int idx, const char *what, const value_t **out, eng_err_t *err)
{
    if (idx >= n->n_in || n->in[idx] < 0) return node_err(g, n, err, ENG_EFORMAT, "the %s input is missing", what);
    const value_t *v = nin(g, n, idx);
    if (!v->is_const || v->dtype != DT_INT64 || v->rank != 1)
        return node_err(g, n, err, ENG_EUNSUPPORTED, "%s must be a 1-D int64 constant (it could not be folded)", what);
    *out = v;
    return ENG_OK;
}

static int expand_init(graph_t *g, node_t *n, eng_err_t *err)
{
    int rc = node_need_act(g, n, 0, err);
    if (rc) return rc;
    const value_t *x = nin(g, n, 0), *sh;
    if ((rc = int_const(g, n, 1, "shape", &sh, err))) return rc;
    const int r = x->rank;
    if ((int)sh->size > r)
        return node_err(g, n, err, ENG_EUNSUPPORTED,
                        "the shape has %zu dimensions for an input of rank %d: new leading axes would move the batch",
                        sh->size, r);
    int64_t od[ENG_MAX_RANK], xs[ENG_MAX_RANK], total = 1;
    ndi_strides(r, x->dims, xs);
    ndi_t *p = calloc(1, sizeof *p);
    if (!p) return node_err(g, n, err, ENG_ENOMEM, "out of memory");
    n->p = p;
    p->rank = r;
    for (int i = 0; i < r; i++) {
        int si = i - (r - (int)sh->size);
        int64_t want = si >= 0 ? sh->i64[si] : 1, have = x->dims[i];
        if (want < 0) return node_err(g, n, err, ENG_EFORMAT, "negative dimension %lld in the shape", (long long)want);
        if (want != 1 && have != 1 && want != have)
            return node_err(g, n, err, ENG_EFORMAT, "cannot expand dimension %d of size %lld to %lld", i, (long long)have,
                            (long long)want);
        od[i] = have == 1 ? want : have;
        if (i == 0 && od[0] != 1)
            return node_err(g, n, err, ENG_EUNSUPPORTED, "expanding the batch dimension to %lld would mix images",
                            (long long)od[0]);
        if (od[i] == 0) return node_err(g, n, err, ENG_EUNSUPPORTED, "the output is empty (dimension %d is 0)", i);
        if (ndi_mul_ok(total, od[i], &total))
            return node_err(g, n, err, ENG_EUNSUPPORTED, "the output has more than %lld elements per image",
                            (long long)NDI_MAX_ELEMS);
        p->d[i] = od[i];
        p->s[0][i] = (i > 0 && have == 1) ? 0 : xs[i];
    }
    value_set_shape(nout(g, n), r, od);
    n->flops = (double)total;
    return ENG_OK;
}

static int tile_init(graph_t *g, node_t *n, eng_err_t *err)
{
    int rc = node_need_act(g, n, 0, err);
    if (rc) return rc;
    const value_t *x = nin(g, n, 0), *rep;
    if ((rc = int_const(g, n, 1, "repeats", &rep, err))) return rc;
    const int r = x->rank;
    if ((int)rep->size != r)
        return node_err(g, n, err, ENG_EFORMAT, "repeats has %zu values for an input of rank %d", rep->size, r);
    if (rep->i64[0] != 1)
        return node_err(g, n, err, ENG_EUNSUPPORTED, "repeats[0] = %lld would repeat the batch (it must be 1)",
                        (long long)rep->i64[0]);
    int64_t od[ENG_MAX_RANK], xs[ENG_MAX_RANK], total = 1;
    ndi_strides(r, x->dims, xs);
    ndi_t *p = calloc(1, sizeof *p);
    if (!p) return node_err(g, n, err, ENG_ENOMEM, "out of memory");
    n->p = p;
    /* the batch (repeated once) first, then (copies, stride 0) and (extent, stride) per axis */
    p->rank = 2 * r - 1;
    p->d[0] = 1;
    p->s[0][0] = xs[0];
    od[0] = 1;
    for (int i = 1; i < r; i++) {
        int64_t k = rep->i64[i];
        if (k < 1) return node_err(g, n, err, ENG_EUNSUPPORTED, "repeats[%d] = %lld (the output would be empty)", i, (long long)k);
        if (ndi_mul_ok(k, x->dims[i], &od[i]) || ndi_mul_ok(total, od[i], &total))
            return node_err(g, n, err, ENG_EUNSUPPORTED, "the output has more than %lld elements per image",
                            (long long)NDI_MAX_ELEMS);
        p->d[2 * i - 1] = k;
        p->s[0][2 * i - 1] = 0;
        p->d[2 * i] = x->dims[i];
        p->s[0][2 * i] = xs[i];
    }
    value_set_shape(nout(g, n), r, od);
    n->flops = (double)total;
    return ENG_OK;
}

static void copies_backward(const node_t *nd, const exec_t *e) { ndi_op_backward_impl(nd, e, 0); }

const op_def_t op_expand = {.name = "Expand", .init = expand_init, .forward = ndi_op_forward, .backward = copies_backward,
    .unary = 0, .opset_min = 8, .opset_max = 0,
    .doc = "constant shape, numpy broadcasting; the batch dimension and the rank stay as they are"};
const op_def_t op_tile = {.name = "Tile", .init = tile_init, .forward = ndi_op_forward, .backward = copies_backward,
    .unary = 0, .opset_min = 6, .opset_max = 0, .doc = "constant repeats with repeats[0] = 1 (the batch is never repeated)"};
