/* Slice with static starts/ends/axes/steps (x[:, :, 1:5:2], x.flip(2), torch.chunk's pieces).
 *   Forward:  y[i] = x[b + i·step]  per sliced axis        (a strided copy)
 *   Backward: dx = 0;  dx[b + i·step] = dy[i]              (elements outside the slice get 0)
 * ONNX semantics (Slice-1, -10, -11, -13): a negative start/end counts from the end of the axis; then
 * for step > 0 start and end are clamped to [0, d], for step < 0 to [0, d-1] and [-1, d-1]; the
 * length is ceil((end - start) / step) or 0. Opsets < 10 give starts/ends/axes as attributes and no
 * steps; from 10 they are inputs (here: constants), axes and steps optional; negative axes count
 * from the back. Axis 0 is the batch: it may only be "sliced" whole (start 0, end >= 2^31 - 1,
 * step 1, as exporters write x[:]); anything else would drop or reorder images and is refused.
 * Split of an activation is rewritten at load into one Slice per output (engine/split.c).
 */
#include <stdint.h>
#include <stdlib.h>

#include "nditer.h"

/* Constant int64 input idx into out (at most max values); count, -1 absent, -2 not a constant, -3 too long. */
static int slice_ints(const graph_t *g, const node_t *n, int idx, int64_t *out, int max)
{
    if (idx >= n->n_in || n->in[idx] < 0) return -1;
    const value_t *v = nin(g, n, idx);
    if (!v->is_const || v->dtype != DT_INT64) return -2;
    if (v->size > (size_t)max) return -3;
    for (size_t k = 0; k < v->size; k++) out[k] = v->i64[k];
    return (int)v->size;
}

static int slice_init(graph_t *g, node_t *n, eng_err_t *err)
{
    int rc = node_need_act(g, n, 0, err);
    if (rc) return rc;
    const value_t *x = nin(g, n, 0);
    const int r = x->rank;
    int64_t st[ENG_MAX_RANK], en[ENG_MAX_RANK], ax[ENG_MAX_RANK], sp[ENG_MAX_RANK];
    int ns, ne, na, nsp;
    if (g->opset < 10) {
        ns = attr_ints(n, "starts", st, ENG_MAX_RANK);
        ne = attr_ints(n, "ends", en, ENG_MAX_RANK);
        na = attr_ints(n, "axes", ax, ENG_MAX_RANK);
        nsp = -1;
        if (ns < 0 || ne < 0) return node_err(g, n, err, ENG_EFORMAT, "the starts and ends attributes are required");
    } else {
        ns = slice_ints(g, n, 1, st, ENG_MAX_RANK);
        ne = slice_ints(g, n, 2, en, ENG_MAX_RANK);
        na = slice_ints(g, n, 3, ax, ENG_MAX_RANK);
        nsp = slice_ints(g, n, 4, sp, ENG_MAX_RANK);
        if (ns == -1 || ne == -1) return node_err(g, n, err, ENG_EFORMAT, "the starts and ends inputs are required");
        if (ns == -2 || ne == -2 || na == -2 || nsp == -2)
            return node_err(g, n, err, ENG_EUNSUPPORTED,
                            "starts, ends, axes and steps must be int64 constants (they could not be folded)");
    }
    if (ns < 0 || ne < 0 || na == -3 || nsp == -3 || ns > r)
        return node_err(g, n, err, ENG_EFORMAT, "more starts/ends/axes/steps than the input's %d axes", r);
    if (ne != ns || (na >= 0 && na != ns) || (nsp >= 0 && nsp != ns))
        return node_err(g, n, err, ENG_EFORMAT, "starts (%d), ends (%d), axes and steps differ in length", ns, ne);
    if (na < 0)
        for (int k = 0; k < ns; k++) ax[k] = k;
    if (nsp < 0)
        for (int k = 0; k < ns; k++) sp[k] = 1;

    int64_t lo[ENG_MAX_RANK], step[ENG_MAX_RANK], od[ENG_MAX_RANK];
    int seen[ENG_MAX_RANK] = {0};
    for (int i = 0; i < r; i++) {
        lo[i] = 0;
        step[i] = 1;
        od[i] = x->dims[i];
    }
    for (int k = 0; k < ns; k++) {
        int64_t a = ax[k] < 0 ? ax[k] + r : ax[k];
        if (a < 0 || a >= r) return node_err(g, n, err, ENG_EFORMAT, "axis %lld out of range for rank %d", (long long)ax[k], r);
        if (seen[a]++) return node_err(g, n, err, ENG_EFORMAT, "axis %lld appears twice", (long long)a);
        if (sp[k] == 0) return node_err(g, n, err, ENG_EFORMAT, "step 0 on axis %lld", (long long)a);
        if (a == 0) {
            if (st[k] == 0 && en[k] >= INT32_MAX && sp[k] == 1) continue; /* x[:] on the batch: nothing to do */
            return node_err(g, n, err, ENG_EUNSUPPORTED,
                            "slicing axis 0 (start %lld, end %lld, step %lld) would select images of the batch",
                            (long long)st[k], (long long)en[k], (long long)sp[k]);
        }
        const int64_t d = x->dims[a];
        int64_t s = sp[k], b = st[k], e = en[k];
        if (b < 0) b += d;
        if (e < 0) e += d;
        int64_t len;
        if (s > 0) {
            if (s > d) s = d > 0 ? d : 1; /* at most one element either way; keeps the arithmetic in range */
            b = b < 0 ? 0 : b > d ? d : b;
            e = e < 0 ? 0 : e > d ? d : e;
            len = e > b ? (e - b + s - 1) / s : 0;
        } else {
            if (s < -d) s = d > 0 ? -d : -1;
            b = b < 0 ? 0 : b > d - 1 ? d - 1 : b;
            e = e < -1 ? -1 : e > d - 1 ? d - 1 : e;
            len = b > e ? (b - e - s - 1) / -s : 0;
        }
        if (len == 0)
            return node_err(g, n, err, ENG_EUNSUPPORTED, "the slice of axis %lld is empty (start %lld, end %lld, step %lld)",
                            (long long)a, (long long)st[k], (long long)en[k], (long long)sp[k]);
        lo[a] = b;
        step[a] = s;
        od[a] = len;
    }
    ndi_t *p = calloc(1, sizeof *p);
    if (!p) return node_err(g, n, err, ENG_ENOMEM, "out of memory");
    n->p = p;
    int64_t xs[ENG_MAX_RANK];
    ndi_strides(r, x->dims, xs);
    p->rank = r;
    for (int i = 0; i < r; i++) {
        p->d[i] = od[i];
        p->s[0][i] = xs[i] * step[i];
        p->base[0] += lo[i] * xs[i];
    }
    value_set_shape(nout(g, n), r, od);
    return ENG_OK;
}

static void slice_backward(const node_t *nd, const exec_t *e) { ndi_op_backward_impl(nd, e, 0); }

const op_def_t op_slice = {.name = "Slice", .init = slice_init, .forward = ndi_op_forward, .backward = slice_backward,
    .unary = 0, .opset_min = 1, .opset_max = 0,
    .doc = "constant starts/ends/axes/steps (attributes before opset 10, inputs from 10), negative steps; not on the batch"};
