/* Shape and data movement on activations: Concat, Flatten, Reshape, Squeeze, Unsqueeze, Pad.
 * The batch stays the first dimension: Flatten at axis 0, a Reshape that folds the batch into
 * another dimension, or squeezing/unsqueezing axis 0 would mix images and are rejected.
 *   Flatten/Reshape/Squeeze/Unsqueeze: y = x with a new shape (a copy); dx = dy.
 *   Concat(axis):  y = [x0 | x1 | ...] along axis;  dx_i = the matching slice of dy.
 *   Pad:           constant, reflect or edge padding; backward sums dy back onto the source
 *                  pixel each output was read from (dropped for constant padding).
 * Opset changes handled: Squeeze/Unsqueeze axes are an attribute before 13 and an input from 13;
 * Pad's pads and value are attributes before 11 and inputs from 11, and from 18 an optional axes input
 * says which axes the pads are for (the others get none); Reshape's allowzero (14).
 */
#include <stdlib.h>
#include <string.h>

#include "../graph.h"

static int norm_axis(int64_t a, int rank) { return (int)(a < 0 ? a + rank : a); }

static int const_ints(const graph_t *g, const node_t *n, int idx, int64_t *out, int max)
{
    if (idx >= n->n_in || n->in[idx] < 0) return -1;
    const value_t *v = nin(g, n, idx);
    if (!v->is_const || v->size > (size_t)max) return -2;
    for (size_t k = 0; k < v->size; k++) out[k] = v->dtype == DT_INT64 ? v->i64[k] : (int64_t)v->f[k];
    return (int)v->size;
}

/* ---- copies: Flatten, Reshape, Squeeze, Unsqueeze ------------------------------------------------ */
static void copy_forward(const node_t *nd, const exec_t *e)
{
    memcpy(e->y, e->x[0], sizeof(float) * (size_t)e->n * nout(e->g, nd)->size);
}

static void copy_backward(const node_t *nd, const exec_t *e)
{
    if (!e->dx[0]) return;
    size_t n = (size_t)e->n * nout(e->g, nd)->size;
    if (e->acc[0]) for (size_t i = 0; i < n; i++) e->dx[0][i] += e->dy[i];
    else memcpy(e->dx[0], e->dy, sizeof(float) * n);
}

static int flatten_init(graph_t *g, node_t *n, eng_err_t *err)
{
    int rc = node_need_act(g, n, 0, err);
    if (rc) return rc;
    const value_t *x = nin(g, n, 0);
    int axis = norm_axis(attr_int(n, "axis", 1), x->rank);
    if (axis < 1 || axis > x->rank)
        return node_err(g, n, err, ENG_EUNSUPPORTED, "axis %d would flatten the batch into the features", axis);
    int64_t od[2] = {(int64_t)shape_size(axis, x->dims), (int64_t)shape_size(x->rank - axis, x->dims + axis)};
    value_set_shape(nout(g, n), 2, od);
    return ENG_OK;
}

static int reshape_init(graph_t *g, node_t *n, eng_err_t *err)
{
    int rc = node_need_act(g, n, 0, err);
    if (rc) return rc;
    const value_t *x = nin(g, n, 0);
    int64_t t[ENG_MAX_RANK + 1];
    int cnt = g->opset < 5 ? attr_ints(n, "shape", t, ENG_MAX_RANK + 1) : const_ints(g, n, 1, t, ENG_MAX_RANK + 1);
    if (cnt < 0) return node_err(g, n, err, ENG_EUNSUPPORTED, "the target shape must be a constant (it could not be folded)");
    if (cnt < 1 || cnt > ENG_MAX_RANK) return node_err(g, n, err, ENG_EUNSUPPORTED, "target rank %d", cnt);
    int allowzero = (int)attr_int(n, "allowzero", 0);
    int64_t od[ENG_MAX_RANK], known = 1;
    int neg = -1;
    for (int i = 0; i < cnt; i++) {
        od[i] = t[i];
        if (od[i] == 0 && !allowzero) {
            if (i >= x->rank) return node_err(g, n, err, ENG_EFORMAT, "0 at dimension %d copies a missing input dimension", i);
            od[i] = x->dims[i];
        }
        if (od[i] == -1) {
            if (neg >= 0) return node_err(g, n, err, ENG_EFORMAT, "more than one -1 in the target shape");
            neg = i;
        } else if (od[i] < 0) {
            return node_err(g, n, err, ENG_EFORMAT, "negative dimension %lld in the target shape", (long long)od[i]);
        } else {
            if (od[i] > 0 && known > (int64_t)x->size / od[i]) /* also keeps the product from overflowing */
                return node_err(g, n, err, ENG_EFORMAT, "the target shape has more elements than the input's %zu per image",
                                x->size);
            known *= od[i];
        }
    }
    /* the first dimension is the batch: planned as 1, whatever the exporter wrote for it */
    if (neg != 0) {
        if (od[0] != 1)
            return node_err(g, n, err, ENG_EUNSUPPORTED,
                            "the target shape's first dimension is %lld; it must be the batch (1, 0 or -1)",
                            (long long)od[0]);
    }
    if (neg >= 0) {
        if (known == 0 || x->size % (size_t)known)
            return node_err(g, n, err, ENG_EFORMAT, "cannot infer -1: %zu elements into blocks of %lld", x->size, (long long)known);
        od[neg] = (int64_t)x->size / known;
    }
    if (shape_size(cnt, od) != x->size)
        return node_err(g, n, err, ENG_EFORMAT, "the target shape has %zu elements per image but the input has %zu",
                        shape_size(cnt, od), x->size);
    value_set_shape(nout(g, n), cnt, od);
    return ENG_OK;
}

static int squeeze_like_init(graph_t *g, node_t *n, eng_err_t *err, int squeeze)
{
    int rc = node_need_act(g, n, 0, err);
    if (rc) return rc;
    const value_t *x = nin(g, n, 0);
    int64_t ax[ENG_MAX_RANK + 1];
    int na = g->opset >= 13 ? const_ints(g, n, 1, ax, ENG_MAX_RANK + 1) : attr_ints(n, "axes", ax, ENG_MAX_RANK + 1);
    if (na == -2) return node_err(g, n, err, ENG_EUNSUPPORTED, "axes must be a constant");
    int64_t od[ENG_MAX_RANK];
    int orank = 0;
    if (squeeze) {
        for (int i = 0; i < x->rank; i++) {
            int drop = 0;
            if (na < 0) drop = i > 0 && x->dims[i] == 1; /* never the batch */
            else
                for (int k = 0; k < na; k++) {
                    int a = norm_axis(ax[k], x->rank);
                    if (a == i) {
                        if (i == 0) return node_err(g, n, err, ENG_EUNSUPPORTED, "squeezing axis 0 would remove the batch");
                        if (x->dims[i] != 1)
                            return node_err(g, n, err, ENG_EFORMAT, "cannot squeeze dimension %d of size %lld", i,
                                            (long long)x->dims[i]);
                        drop = 1;
                    }
                }
            if (!drop) od[orank++] = x->dims[i];
        }
    } else {
        if (na < 1) return node_err(g, n, err, ENG_EFORMAT, "axes are missing");
        orank = x->rank + na;
        if (orank > ENG_MAX_RANK) return node_err(g, n, err, ENG_EUNSUPPORTED, "rank over %d", ENG_MAX_RANK);
        int src = 0;
        for (int i = 0; i < orank; i++) {
            int ins = 0;
            for (int k = 0; k < na; k++) ins |= norm_axis(ax[k], orank) == i;
            if (ins && i == 0) return node_err(g, n, err, ENG_EUNSUPPORTED, "unsqueezing axis 0 would move the batch");
            od[i] = ins ? 1 : x->dims[src++];
        }
    }
    value_set_shape(nout(g, n), orank, od);
    return ENG_OK;
}

static int squeeze_init(graph_t *g, node_t *n, eng_err_t *err) { return squeeze_like_init(g, n, err, 1); }
static int unsqueeze_init(graph_t *g, node_t *n, eng_err_t *err) { return squeeze_like_init(g, n, err, 0); }

/* ---- Concat ------------------------------------------------------------------------------------- */
typedef struct {
    int axis;
    size_t inner_out; /* elements per image after axis (inclusive) in the output */
    size_t outer;     /* per-image blocks before axis */
} concat_p;

static int concat_init(graph_t *g, node_t *n, eng_err_t *err)
{
    if (n->n_in < 1) return node_err(g, n, err, ENG_EFORMAT, "no inputs");
    const value_t *x0 = nin(g, n, 0);
    int rank = x0->rank;
    int axis = norm_axis(attr_int(n, "axis", 1), rank);
    if (axis < 1 || axis >= rank) return node_err(g, n, err, ENG_EUNSUPPORTED, "axis %d: concatenating along the batch", axis);
    int64_t od[ENG_MAX_RANK];
    memcpy(od, x0->dims, sizeof od);
    od[axis] = 0;
    for (int k = 0; k < n->n_in; k++) {
        if (n->in[k] < 0) return node_err(g, n, err, ENG_EFORMAT, "input %d missing", k);
        const value_t *v = nin(g, n, k);
        if (v->rank != rank) return node_err(g, n, err, ENG_EFORMAT, "input %d has rank %d, not %d", k, v->rank, rank);
        if (v->is_const && (v->dtype != DT_FLOAT || v->dims[0] != 1))
            return node_err(g, n, err, ENG_EUNSUPPORTED, "constant input %d must be float with a leading 1", k);
        for (int i = 1; i < rank; i++)
            if (i != axis && v->dims[i] != x0->dims[i])
                return node_err(g, n, err, ENG_EFORMAT, "input %d differs at dimension %d (%lld vs %lld)", k, i,
                                (long long)v->dims[i], (long long)x0->dims[i]);
        od[axis] += v->dims[axis];
    }
    concat_p *p = calloc(1, sizeof *p);
    if (!p) return node_err(g, n, err, ENG_ENOMEM, "out of memory");
    n->p = p;
    p->axis = axis;
    p->outer = shape_size(axis - 1, od + 1);
    p->inner_out = shape_size(rank - axis, od + axis);
    value_set_shape(nout(g, n), rank, od);
    return ENG_OK;
}

static void concat_forward(const node_t *nd, const exec_t *e)
{
    const concat_p *p = nd->p;
    const graph_t *g = e->g;
    size_t off = 0;
    for (int k = 0; k < nd->n_in; k++) {
        const value_t *v = nin(g, nd, k);
        size_t blk = shape_size(v->rank - p->axis, v->dims + p->axis);
        for (int i = 0; i < e->n; i++)
            for (size_t o = 0; o < p->outer; o++) {
                const float *src = e->x[k] + (v->is_const ? 0 : (size_t)i * v->size) + o * blk;
                memcpy(e->y + ((size_t)i * p->outer + o) * p->inner_out + off, src, sizeof(float) * blk);
            }
        off += blk;
    }
}

static void concat_backward(const node_t *nd, const exec_t *e)
{
    const concat_p *p = nd->p;
    const graph_t *g = e->g;
    size_t off = 0;
    for (int k = 0; k < nd->n_in; k++) {
        const value_t *v = nin(g, nd, k);
        size_t blk = shape_size(v->rank - p->axis, v->dims + p->axis);
        if (e->dx[k])
            for (int i = 0; i < e->n; i++)
                for (size_t o = 0; o < p->outer; o++) {
                    float *dst = e->dx[k] + (size_t)i * v->size + o * blk;
                    const float *src = e->dy + ((size_t)i * p->outer + o) * p->inner_out + off;
                    if (e->acc[k]) for (size_t q = 0; q < blk; q++) dst[q] += src[q];
                    else memcpy(dst, src, sizeof(float) * blk);
                }
        off += blk;
    }
}

/* ---- Pad ---------------------------------------------------------------------------------------- */
enum { PAD_CONSTANT, PAD_REFLECT, PAD_EDGE };
typedef struct {
    int mode, rank;
    float value;
    int64_t pb[ENG_MAX_RANK], in[ENG_MAX_RANK], out[ENG_MAX_RANK];
} pad_p;

static int pad_init(graph_t *g, node_t *n, eng_err_t *err)
{
    int rc = node_need_act(g, n, 0, err);
    if (rc) return rc;
    const value_t *x = nin(g, n, 0);
    int64_t pads[2 * ENG_MAX_RANK] = {0}, given[2 * ENG_MAX_RANK];
    int np = g->opset < 11 ? attr_ints(n, "pads", given, 2 * ENG_MAX_RANK) : const_ints(g, n, 1, given, 2 * ENG_MAX_RANK);
    if (n->n_in > 3 && n->in[3] >= 0) { /* opset 18: pads hold begins then ends of the listed axes only */
        if (g->opset < 18) return node_err(g, n, err, ENG_EFORMAT, "an axes input exists from opset 18 only");
        int64_t ax[ENG_MAX_RANK];
        int na = const_ints(g, n, 3, ax, ENG_MAX_RANK);
        if (na < 0) return node_err(g, n, err, ENG_EUNSUPPORTED, "axes must be a constant with at most %d values", ENG_MAX_RANK);
        if (np != 2 * na) return node_err(g, n, err, ENG_EFORMAT, "pads must be a constant with %d values (2 per axis)", 2 * na);
        int seen[ENG_MAX_RANK] = {0};
        for (int k = 0; k < na; k++) {
            if (ax[k] < -x->rank || ax[k] >= x->rank)
                return node_err(g, n, err, ENG_EFORMAT, "axis %lld out of range for rank %d", (long long)ax[k], x->rank);
            int a = norm_axis(ax[k], x->rank);
            if (seen[a]++) return node_err(g, n, err, ENG_EFORMAT, "axis %d appears twice", a);
            pads[a] = given[k];
            pads[a + x->rank] = given[k + na];
        }
    } else {
        if (np != 2 * x->rank) return node_err(g, n, err, ENG_EFORMAT, "pads must be a constant with %d values", 2 * x->rank);
        memcpy(pads, given, sizeof(int64_t) * (size_t)np);
    }
    pad_p *p = calloc(1, sizeof *p);
    if (!p) return node_err(g, n, err, ENG_ENOMEM, "out of memory");
    n->p = p;
    const char *mode = attr_str(n, "mode", "constant");
    p->mode = !strcmp(mode, "constant") ? PAD_CONSTANT : !strcmp(mode, "reflect") ? PAD_REFLECT : !strcmp(mode, "edge") ? PAD_EDGE : -1;
    if (p->mode < 0) return node_err(g, n, err, ENG_EUNSUPPORTED, "mode '%s'", mode);
    p->value = g->opset < 11 ? attr_float(n, "value", 0.f) : 0.f;
    if (g->opset >= 11 && n->n_in > 2 && n->in[2] >= 0) {
        const value_t *cv = nin(g, n, 2);
        if (!cv->is_const || cv->size != 1) return node_err(g, n, err, ENG_EUNSUPPORTED, "constant_value must be a scalar constant");
        p->value = cv->dtype == DT_FLOAT ? cv->f[0] : (float)cv->i64[0];
    }
    p->rank = x->rank;
    if (pads[0] != 0 || pads[x->rank] != 0) return node_err(g, n, err, ENG_EUNSUPPORTED, "padding the batch dimension");
    int64_t od[ENG_MAX_RANK];
    for (int i = 0; i < x->rank; i++) {
        p->pb[i] = pads[i];
        p->in[i] = x->dims[i];
        od[i] = x->dims[i] + pads[i] + pads[i + x->rank];
        if (od[i] < 1) return node_err(g, n, err, ENG_EFORMAT, "the padded dimension %d is empty", i);
        if (p->mode == PAD_REFLECT && (pads[i] >= x->dims[i] || pads[i + x->rank] >= x->dims[i]) && (pads[i] || pads[i + x->rank]))
            return node_err(g, n, err, ENG_EFORMAT, "reflect padding must be smaller than the dimension");
        p->out[i] = od[i];
    }
    value_set_shape(nout(g, n), x->rank, od);
    return ENG_OK;
}

/* source offset (per image) for an output index, or -1 for the constant */
static int64_t pad_src(const pad_p *p, const int64_t *idx)
{
    int64_t off = 0;
    for (int i = 1; i < p->rank; i++) {
        int64_t s = idx[i] - p->pb[i], d = p->in[i];
        if (s < 0 || s >= d) {
            if (p->mode == PAD_CONSTANT) return -1;
            if (p->mode == PAD_EDGE) s = s < 0 ? 0 : d - 1;
            else s = s < 0 ? -s : 2 * (d - 1) - s;
        }
        off = off * d + s;
    }
    return off;
}

static void pad_forward(const node_t *nd, const exec_t *e)
{
    const pad_p *p = nd->p;
    const size_t isz = nin(e->g, nd, 0)->size, osz = nout(e->g, nd)->size;
    int64_t idx[ENG_MAX_RANK] = {0};
    for (size_t o = 0; o < osz; o++) {
        int64_t s = pad_src(p, idx);
        for (int i = 0; i < e->n; i++) e->y[(size_t)i * osz + o] = s < 0 ? p->value : e->x[0][(size_t)i * isz + (size_t)s];
        for (int d = p->rank - 1; d >= 1; d--) {
            if (++idx[d] < p->out[d]) break;
            idx[d] = 0;
        }
    }
}

static void pad_backward(const node_t *nd, const exec_t *e)
{
    const pad_p *p = nd->p;
    if (!e->dx[0]) return;
    const size_t isz = nin(e->g, nd, 0)->size, osz = nout(e->g, nd)->size;
    if (!e->acc[0]) memset(e->dx[0], 0, sizeof(float) * isz * e->n);
    int64_t idx[ENG_MAX_RANK] = {0};
    for (size_t o = 0; o < osz; o++) {
        int64_t s = pad_src(p, idx);
        if (s >= 0)
            for (int i = 0; i < e->n; i++) e->dx[0][(size_t)i * isz + (size_t)s] += e->dy[(size_t)i * osz + o];
        for (int d = p->rank - 1; d >= 1; d--) {
            if (++idx[d] < p->out[d]) break;
            idx[d] = 0;
        }
    }
}

const op_def_t op_flatten = {.name = "Flatten", .init = flatten_init, .forward = copy_forward, .backward = copy_backward, .unary = 0,
    .opset_min = 1, .opset_max = 0, .doc = "axis >= 1 (axis 0 would mix the batch)"};
const op_def_t op_reshape = {.name = "Reshape", .init = reshape_init, .forward = copy_forward, .backward = copy_backward, .unary = 0,
    .opset_min = 1, .opset_max = 0, .doc = "constant shape that keeps the batch as the first dimension"};
const op_def_t op_squeeze = {.name = "Squeeze", .init = squeeze_init, .forward = copy_forward, .backward = copy_backward, .unary = 0,
    .opset_min = 1, .opset_max = 0, .doc = "non-batch axes (attribute before opset 13, input from 13)"};
const op_def_t op_unsqueeze = {.name = "Unsqueeze", .init = unsqueeze_init, .forward = copy_forward, .backward = copy_backward, .unary = 0,
    .opset_min = 1, .opset_max = 0, .doc = "non-batch axes (attribute before opset 13, input from 13)"};
const op_def_t op_concat = {.name = "Concat", .init = concat_init, .forward = concat_forward, .backward = concat_backward, .unary = 0,
    .opset_min = 1, .opset_max = 0, .doc = "along a non-batch axis"};
const op_def_t op_pad = {.name = "Pad", .init = pad_init, .forward = pad_forward, .backward = pad_backward, .unary = 0,
    .opset_min = 1, .opset_max = 0, .doc = "constant, reflect and edge modes; pads as attribute before opset 11, input from 11"};
