/* fold.c — load-time graph passes.
 *
 * graph_fold_constants walks the nodes in topological order once:
 *   - Constant nodes become constant values;
 *   - Identity and Dropout (no-ops at inference) are removed, their outputs aliased to their inputs;
 *   - a node whose inputs are all constant is evaluated now (this is how the Shape -> Gather ->
 *     Unsqueeze -> Concat -> Reshape chains that exporters emit for flattening disappear: Shape of an
 *     activation is known once the shapes before it are inferred, with the batch planned as 1);
 *   - every other node gets its op's init (shape inference), so later Shapes can fold.
 * graph_fold_batchnorm folds inference BatchNormalization into the Conv before it when that Conv
 * feeds only the BN: w' = w * s, b' = (b - mean) * s + beta, with s = gamma / sqrt(var + eps).
 */
#include "graph.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is_op(const node_t *n, const char *t) { return !strcmp(n->op_type, t); }

/* ---- constant evaluation ------------------------------------------------------------------------ */
typedef struct {
    int rank;
    int64_t dims[ENG_MAX_RANK];
    int dtype;
    size_t n;
    float *f;
    int64_t *i;
} ct_t; /* a constant being computed */

static double ct_get(const value_t *v, size_t k) { return v->dtype == DT_FLOAT ? (double)v->f[k] : (double)v->i64[k]; }

static int ct_alloc(ct_t *c, int rank, const int64_t *dims, int dtype)
{
    c->rank = rank;
    memset(c->dims, 0, sizeof c->dims);
    for (int i = 0; i < rank; i++) c->dims[i] = dims[i];
    c->n = shape_size(rank, dims);
    c->dtype = dtype;
    c->f = NULL;
    c->i = NULL;
    if (c->n > ((size_t)1 << 30)) return -1;
    if (dtype == DT_FLOAT) c->f = calloc(c->n ? c->n : 1, sizeof(float));
    else c->i = calloc(c->n ? c->n : 1, sizeof(int64_t));
    return (c->f || c->i) ? 0 : -1;
}

static void ct_set(ct_t *c, size_t k, double x)
{
    if (c->dtype == DT_FLOAT) c->f[k] = (float)x;
    else c->i[k] = (int64_t)x;
}

/* Copy a constant's data element by element through `map` (source index for each output index). */
static int norm_axis(int64_t a, int rank) { return (int)(a < 0 ? a + rank : a); }

static int read_ints_input(const graph_t *g, const node_t *n, int idx, int64_t *out, int max, int *cnt)
{
    if (idx >= n->n_in || n->in[idx] < 0) return -1;
    const value_t *v = nin(g, n, idx);
    if (!v->is_const || v->size > (size_t)max) return -2;
    for (size_t k = 0; k < v->size; k++) out[k] = (int64_t)ct_get(v, k);
    *cnt = (int)v->size;
    return 0;
}

static void strides_of(int rank, const int64_t *dims, int64_t *st)
{
    int64_t s = 1;
    for (int i = rank - 1; i >= 0; i--) {
        st[i] = s;
        s *= dims[i];
    }
}

int fold_eval_node(graph_t *g, node_t *n, eng_err_t *err)
{
    ct_t c;
    memset(&c, 0, sizeof c);
    int64_t tmp[64];
    int cnt = 0;
    const value_t *x = n->n_in > 0 && n->in[0] >= 0 ? nin(g, n, 0) : NULL;
    const char *t = n->op_type;

    if (is_op(n, "Constant")) {
        const attr_t *a = attr_get(n, "value");
        if (a && a->type == AT_TENSOR) {
            const value_t *src = gval(g, a->tensor);
            if (ct_alloc(&c, src->rank, src->dims, src->dtype)) goto oom;
            for (size_t k = 0; k < c.n; k++) ct_set(&c, k, ct_get(src, k));
        } else if ((a = attr_get(n, "value_float"))) {
            if (ct_alloc(&c, 0, NULL, DT_FLOAT)) goto oom;
            c.f[0] = a->f;
        } else if ((a = attr_get(n, "value_int"))) {
            if (ct_alloc(&c, 0, NULL, DT_INT64)) goto oom;
            c.i[0] = a->i;
        } else if ((a = attr_get(n, "value_floats")) && a->type == AT_FLOATS) {
            int64_t d = a->n;
            if (ct_alloc(&c, 1, &d, DT_FLOAT)) goto oom;
            memcpy(c.f, a->floats, sizeof(float) * (size_t)a->n);
        } else if ((a = attr_get(n, "value_ints")) && a->type == AT_INTS) {
            int64_t d = a->n;
            if (ct_alloc(&c, 1, &d, DT_INT64)) goto oom;
            memcpy(c.i, a->ints, sizeof(int64_t) * (size_t)a->n);
        } else {
            return node_err(g, n, err, ENG_EUNSUPPORTED, "Constant without a supported value attribute");
        }
    } else if (is_op(n, "Shape")) {
        int r = x->rank;
        int64_t s = attr_int(n, "start", 0), e = attr_int(n, "end", r);
        if (s < 0) s += r;
        if (e < 0) e += r;
        if (s < 0) s = 0;
        if (e > r) e = r;
        int64_t d = e > s ? e - s : 0;
        if (ct_alloc(&c, 1, &d, DT_INT64)) goto oom;
        for (int64_t k = 0; k < d; k++) c.i[k] = x->dims[s + k];
    } else if (is_op(n, "Gather")) {
        const value_t *idx = nin(g, n, 1);
        int axis = norm_axis(attr_int(n, "axis", 0), x->rank);
        if (axis < 0 || axis >= x->rank) return node_err(g, n, err, ENG_EFORMAT, "axis out of range");
        int64_t od[ENG_MAX_RANK];
        int orank = 0;
        for (int i = 0; i < axis; i++) od[orank++] = x->dims[i];
        for (int i = 0; i < idx->rank; i++) od[orank++] = idx->dims[i];
        for (int i = axis + 1; i < x->rank; i++) od[orank++] = x->dims[i];
        if (orank > ENG_MAX_RANK) return node_err(g, n, err, ENG_EUNSUPPORTED, "result rank too high");
        if (ct_alloc(&c, orank, od, x->dtype)) goto oom;
        size_t outer = shape_size(axis, x->dims), inner = shape_size(x->rank - axis - 1, x->dims + axis + 1);
        int64_t ax = x->dims[axis];
        size_t k = 0;
        for (size_t o = 0; o < outer; o++)
            for (size_t j = 0; j < idx->size; j++) {
                int64_t id = (int64_t)ct_get(idx, j);
                if (id < 0) id += ax;
                if (id < 0 || id >= ax) {
                    free(c.f); free(c.i);
                    return node_err(g, n, err, ENG_EFORMAT, "index out of range");
                }
                for (size_t in = 0; in < inner; in++) ct_set(&c, k++, ct_get(x, (o * (size_t)ax + (size_t)id) * inner + in));
            }
    } else if (is_op(n, "Unsqueeze") || is_op(n, "Squeeze")) {
        int squeeze = is_op(n, "Squeeze");
        int na = g->opset >= 13 ? (n->n_in > 1 && read_ints_input(g, n, 1, tmp, 64, &cnt) == 0 ? cnt : -1)
                                : attr_ints(n, "axes", tmp, 64);
        int64_t od[ENG_MAX_RANK];
        int orank = 0;
        if (squeeze) {
            for (int i = 0; i < x->rank; i++) {
                int drop = 0;
                if (na < 0) drop = x->dims[i] == 1;
                else for (int k = 0; k < na; k++) drop |= norm_axis(tmp[k], x->rank) == i;
                if (!drop) od[orank++] = x->dims[i];
            }
        } else {
            if (na < 0) return node_err(g, n, err, ENG_EFORMAT, "axes missing");
            orank = x->rank + na;
            if (orank > ENG_MAX_RANK) return node_err(g, n, err, ENG_EUNSUPPORTED, "result rank too high");
            int src = 0;
            for (int i = 0; i < orank; i++) {
                int ins = 0;
                for (int k = 0; k < na; k++) ins |= norm_axis(tmp[k], orank) == i;
                od[i] = ins ? 1 : x->dims[src++];
            }
        }
        if (ct_alloc(&c, orank, od, x->dtype)) goto oom;
        for (size_t k = 0; k < c.n; k++) ct_set(&c, k, ct_get(x, k));
    } else if (is_op(n, "Concat")) {
        int axis = norm_axis(attr_int(n, "axis", 0), x->rank);
        int64_t od[ENG_MAX_RANK];
        memcpy(od, x->dims, sizeof od);
        od[axis] = 0;
        for (int k = 0; k < n->n_in; k++) od[axis] += nin(g, n, k)->dims[axis];
        if (ct_alloc(&c, x->rank, od, x->dtype)) goto oom;
        size_t outer = shape_size(axis, x->dims), kk = 0;
        for (size_t o = 0; o < outer; o++)
            for (int k = 0; k < n->n_in; k++) {
                const value_t *v = nin(g, n, k);
                size_t blk = shape_size(v->rank - axis, v->dims + axis);
                for (size_t j = 0; j < blk; j++) ct_set(&c, kk++, ct_get(v, o * blk + j));
            }
    } else if (is_op(n, "Cast")) {
        int to = (int)attr_int(n, "to", 1);
        int dt = (to == 1 || to == 11 || to == 10) ? DT_FLOAT : DT_INT64;
        if (ct_alloc(&c, x->rank, x->dims, dt)) goto oom;
        for (size_t k = 0; k < c.n; k++) ct_set(&c, k, ct_get(x, k));
    } else if (is_op(n, "Reshape")) {
        if (read_ints_input(g, n, 1, tmp, 64, &cnt) || cnt > ENG_MAX_RANK)
            return node_err(g, n, err, ENG_EUNSUPPORTED, "shape input must be a small constant");
        int64_t od[ENG_MAX_RANK], known = 1;
        int neg = -1;
        int allowzero = (int)attr_int(n, "allowzero", 0);
        for (int i = 0; i < cnt; i++) {
            od[i] = tmp[i];
            if (od[i] == 0 && !allowzero) od[i] = i < x->rank ? x->dims[i] : 0;
            if (od[i] == -1) neg = i;
            else known *= od[i];
        }
        if (neg >= 0) od[neg] = known ? (int64_t)x->size / known : 0;
        if (shape_size(cnt, od) != x->size) return node_err(g, n, err, ENG_EFORMAT, "Reshape changes the element count");
        if (ct_alloc(&c, cnt, od, x->dtype)) goto oom;
        for (size_t k = 0; k < c.n; k++) ct_set(&c, k, ct_get(x, k));
    } else if (is_op(n, "Slice")) {
        int64_t st[ENG_MAX_RANK], en[ENG_MAX_RANK], ax[ENG_MAX_RANK], sp[ENG_MAX_RANK];
        int ns;
        if (g->opset < 10) {
            ns = attr_ints(n, "starts", st, ENG_MAX_RANK);
            if (attr_ints(n, "ends", en, ENG_MAX_RANK) != ns || ns < 0)
                return node_err(g, n, err, ENG_EFORMAT, "starts/ends missing");
            if (attr_ints(n, "axes", ax, ENG_MAX_RANK) < 0) for (int i = 0; i < ns; i++) ax[i] = i;
            for (int i = 0; i < ns; i++) sp[i] = 1;
        } else {
            int ne;
            if (read_ints_input(g, n, 1, st, ENG_MAX_RANK, &ns) || read_ints_input(g, n, 2, en, ENG_MAX_RANK, &ne) ||
                ne != ns)
                return node_err(g, n, err, ENG_EFORMAT, "starts/ends must be constants of equal length");
            int na2;
            if (read_ints_input(g, n, 3, ax, ENG_MAX_RANK, &na2)) for (int i = 0; i < ns; i++) ax[i] = i;
            if (read_ints_input(g, n, 4, sp, ENG_MAX_RANK, &na2)) for (int i = 0; i < ns; i++) sp[i] = 1;
        }
        int64_t b[ENG_MAX_RANK], s[ENG_MAX_RANK], od[ENG_MAX_RANK];
        for (int i = 0; i < x->rank; i++) { b[i] = 0; s[i] = 1; od[i] = x->dims[i]; }
        for (int k = 0; k < ns; k++) {
            int a = norm_axis(ax[k], x->rank);
            if (a < 0 || a >= x->rank || sp[k] == 0) return node_err(g, n, err, ENG_EFORMAT, "bad axis or step");
            int64_t d = x->dims[a], lo = st[k], hi = en[k];
            if (lo < 0) lo += d;
            if (hi < 0) hi += d;
            if (sp[k] > 0) {
                lo = lo < 0 ? 0 : lo > d ? d : lo;
                hi = hi < 0 ? 0 : hi > d ? d : hi;
                od[a] = hi > lo ? (hi - lo + sp[k] - 1) / sp[k] : 0;
            } else {
                lo = lo < 0 ? -1 : lo > d - 1 ? d - 1 : lo;
                hi = hi < -1 ? -1 : hi > d - 1 ? d - 1 : hi;
                od[a] = lo > hi ? (lo - hi - sp[k] - 1) / (-sp[k]) : 0;
            }
            b[a] = lo;
            s[a] = sp[k];
        }
        if (ct_alloc(&c, x->rank, od, x->dtype)) goto oom;
        int64_t xs[ENG_MAX_RANK], idx[ENG_MAX_RANK] = {0};
        strides_of(x->rank, x->dims, xs);
        for (size_t k = 0; k < c.n; k++) {
            int64_t off = 0;
            for (int i = 0; i < x->rank; i++) off += (b[i] + idx[i] * s[i]) * xs[i];
            ct_set(&c, k, ct_get(x, (size_t)off));
            for (int i = x->rank - 1; i >= 0; i--) {
                if (++idx[i] < od[i]) break;
                idx[i] = 0;
            }
        }
    } else if (is_op(n, "Transpose")) {
        int64_t perm[ENG_MAX_RANK], od[ENG_MAX_RANK], xs[ENG_MAX_RANK], idx[ENG_MAX_RANK] = {0};
        if (attr_ints(n, "perm", perm, ENG_MAX_RANK) != x->rank)
            for (int i = 0; i < x->rank; i++) perm[i] = x->rank - 1 - i;
        for (int i = 0; i < x->rank; i++) od[i] = x->dims[perm[i]];
        if (ct_alloc(&c, x->rank, od, x->dtype)) goto oom;
        strides_of(x->rank, x->dims, xs);
        for (size_t k = 0; k < c.n; k++) {
            int64_t off = 0;
            for (int i = 0; i < x->rank; i++) off += idx[i] * xs[perm[i]];
            ct_set(&c, k, ct_get(x, (size_t)off));
            for (int i = x->rank - 1; i >= 0; i--) {
                if (++idx[i] < od[i]) break;
                idx[i] = 0;
            }
        }
    } else if (is_op(n, "Add") || is_op(n, "Sub") || is_op(n, "Mul") || is_op(n, "Div") || is_op(n, "Pow") ||
               is_op(n, "Sqrt") || is_op(n, "Neg") || is_op(n, "Equal") || is_op(n, "Where")) {
        /* element-wise with numpy broadcasting (small tensors only) */
        int nin_ = is_op(n, "Sqrt") || is_op(n, "Neg") ? 1 : is_op(n, "Where") ? 3 : 2;
        int rank = 0;
        for (int k = 0; k < nin_; k++) rank = nin(g, n, k)->rank > rank ? nin(g, n, k)->rank : rank;
        int64_t od[ENG_MAX_RANK], st[3][ENG_MAX_RANK];
        for (int i = 0; i < rank; i++) od[i] = 1;
        for (int k = 0; k < nin_; k++) {
            const value_t *v = nin(g, n, k);
            for (int i = 0; i < v->rank; i++) {
                int64_t d = v->dims[i];
                int oi = rank - v->rank + i;
                if (d != 1) {
                    if (od[oi] != 1 && od[oi] != d) return node_err(g, n, err, ENG_EFORMAT, "shapes do not broadcast");
                    od[oi] = d;
                }
            }
        }
        int dt = DT_INT64;
        for (int k = 0; k < nin_; k++)
            if (nin(g, n, k)->dtype == DT_FLOAT && !(is_op(n, "Where") && k == 0)) dt = DT_FLOAT;
        if (is_op(n, "Equal")) dt = DT_INT64;
        for (int k = 0; k < nin_; k++) {
            const value_t *v = nin(g, n, k);
            int64_t vs[ENG_MAX_RANK];
            strides_of(v->rank, v->dims, vs);
            for (int i = 0; i < rank; i++) {
                int vi = i - (rank - v->rank);
                st[k][i] = vi < 0 || v->dims[vi] == 1 ? 0 : vs[vi];
            }
        }
        if (ct_alloc(&c, rank, od, dt)) goto oom;
        int64_t idx[ENG_MAX_RANK] = {0};
        for (size_t k = 0; k < c.n; k++) {
            double a[3] = {0, 0, 0};
            for (int q = 0; q < nin_; q++) {
                int64_t off = 0;
                for (int i = 0; i < rank; i++) off += idx[i] * st[q][i];
                a[q] = ct_get(nin(g, n, q), (size_t)off);
            }
            double r;
            if (is_op(n, "Add")) r = a[0] + a[1];
            else if (is_op(n, "Sub")) r = a[0] - a[1];
            else if (is_op(n, "Mul")) r = a[0] * a[1];
            else if (is_op(n, "Div")) r = dt == DT_INT64 ? (a[1] != 0 ? (double)((int64_t)a[0] / (int64_t)a[1]) : 0) : a[0] / a[1];
            else if (is_op(n, "Pow")) r = pow(a[0], a[1]);
            else if (is_op(n, "Sqrt")) r = sqrt(a[0]);
            else if (is_op(n, "Neg")) r = -a[0];
            else if (is_op(n, "Equal")) r = a[0] == a[1];
            else r = a[0] != 0 ? a[1] : a[2];
            ct_set(&c, k, r);
            for (int i = rank - 1; i >= 0; i--) {
                if (++idx[i] < od[i]) break;
                idx[i] = 0;
            }
        }
    } else if (is_op(n, "ConstantOfShape")) {
        if (read_ints_input(g, n, 0, tmp, ENG_MAX_RANK, &cnt))
            return node_err(g, n, err, ENG_EUNSUPPORTED, "shape must be a small constant");
        const attr_t *a = attr_get(n, "value");
        const value_t *fill = a && a->type == AT_TENSOR ? gval(g, a->tensor) : NULL;
        if (ct_alloc(&c, cnt, tmp, fill ? fill->dtype : DT_FLOAT)) goto oom;
        double fv = fill && fill->size ? ct_get(fill, 0) : 0;
        for (size_t k = 0; k < c.n; k++) ct_set(&c, k, fv);
    } else if (is_op(n, "Range")) {
        const value_t *s0 = nin(g, n, 0), *l = nin(g, n, 1), *d = nin(g, n, 2);
        double a0 = ct_get(s0, 0), lim = ct_get(l, 0), dl = ct_get(d, 0);
        if (dl == 0) return node_err(g, n, err, ENG_EFORMAT, "delta is zero");
        double cntd = ceil((lim - a0) / dl);
        int64_t len = cntd > 0 ? (int64_t)cntd : 0;
        if (len > (1 << 20)) return node_err(g, n, err, ENG_EUNSUPPORTED, "range too long");
        if (ct_alloc(&c, 1, &len, s0->dtype)) goto oom;
        for (int64_t k = 0; k < len; k++) ct_set(&c, (size_t)k, a0 + (double)k * dl);
    } else if (is_op(n, "Flatten")) {
        int axis = norm_axis(attr_int(n, "axis", 1), x->rank);
        int64_t od[2] = {(int64_t)shape_size(axis, x->dims), (int64_t)shape_size(x->rank - axis, x->dims + axis)};
        if (ct_alloc(&c, 2, od, x->dtype)) goto oom;
        for (size_t k = 0; k < c.n; k++) ct_set(&c, k, ct_get(x, k));
    } else {
        return node_err(g, n, err, ENG_EUNSUPPORTED, "cannot evaluate this op on constants at load time (op '%s')", t);
    }
    /* install the result as the output value */
    value_t *ov = nout(g, n);
    value_set_shape(ov, c.rank, c.dims);
    ov->size = c.n;
    ov->is_const = 1;
    ov->dtype = c.dtype;
    free(ov->f);
    free(ov->i64);
    ov->f = c.f;
    ov->i64 = c.i;
    ov->producer = -1;
    n->dead = 1;
    return ENG_OK;
oom:
    return node_err(g, n, err, ENG_ENOMEM, "out of memory while folding constants");
}

/* Identity and Dropout are removed by renaming: their output stands for their input from then on.
 * The renames are applied to each node's inputs when the walk reaches it (nodes are in topological
 * order, so every use of a removed output comes later), which keeps the pass O(nodes + edges) where
 * rewriting every later use at each removal was O(nodes) per Identity. */
static int fold_walk(graph_t *g, int nv, int *remap, const int *uses, eng_err_t *err)
{
    int rc;
    for (int i = 0; i < g->n_nodes; i++) {
        node_t *n = &g->nodes[i];
        if (n->dead) continue;
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0 && n->in[k] < nv) n->in[k] = remap[n->in[k]];
        if (n->out[0] < 0) return node_err(g, n, err, ENG_EFORMAT, "first output is empty");
        if (is_op(n, "Identity") || is_op(n, "Dropout")) {
            if (n->n_in < 1 || n->in[0] < 0) return node_err(g, n, err, ENG_EFORMAT, "input missing");
            int from = n->out[0], to = n->in[0];
            for (int o = 1; o < n->n_out; o++) /* Dropout's mask output must be unused */
                if (n->out[o] >= 0 && n->out[o] < nv && uses[n->out[o]])
                    return node_err(g, n, err, ENG_EUNSUPPORTED, "the Dropout mask output is used");
            n->dead = 1;
            if (from < nv) remap[from] = to; /* to is already final: it was remapped above */
            if (graph_add_alias(g, gval(g, from)->name, to) || graph_add_alias(g, n->name, to))
                return eng_errf(err, ENG_ENOMEM, "out of memory");
            continue;
        }
        int all_const = 1, any = 0;
        for (int k = 0; k < n->n_in; k++) {
            if (n->in[k] < 0) continue;
            any = 1;
            all_const &= gval(g, n->in[k])->is_const;
        }
        int shape_of_act = is_op(n, "Shape") && n->n_in == 1 && !gval(g, n->in[0])->is_const;
        if (is_op(n, "Constant") || (any && all_const) || shape_of_act) {
            if (shape_of_act && gval(g, n->in[0])->rank == 0)
                return node_err(g, n, err, ENG_EFORMAT, "input shape unknown");
            rc = fold_eval_node(g, n, err);
            if (rc) return rc;
            continue;
        }
        for (int k = 0; k < n->n_in; k++) /* graph inputs and computed activations only */
            if (n->in[k] >= 0 && !gval(g, n->in[k])->is_const && gval(g, n->in[k])->producer < 0 &&
                n->in[k] != g->input)
                return node_err(g, n, err, ENG_EFORMAT, "input '%s' is not computed", gval(g, n->in[k])->name);
        rc = graph_init_node(g, i, err);
        if (rc) return rc;
    }
    return ENG_OK;
}

int graph_fold_constants(graph_t *g, eng_err_t *err)
{
    int rc = graph_topo_sort(g, err);
    if (rc) return rc;
    /* fold_eval_node and init may add values (constants): size for what exists now, the walk only
     * renames values that existed before it */
    int nv = g->n_values;
    int *remap = malloc(sizeof(int) * ((size_t)nv + 1)), *uses = calloc((size_t)nv + 1, sizeof(int));
    if (!remap || !uses) {
        free(remap);
        free(uses);
        return eng_errf(err, ENG_ENOMEM, "out of memory");
    }
    for (int v = 0; v < nv; v++) remap[v] = v;
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++)
            if (g->nodes[i].in[k] >= 0) uses[g->nodes[i].in[k]]++;
    rc = fold_walk(g, nv, remap, uses, err);
    if (!rc && g->output >= 0 && g->output < nv) g->output = remap[g->output];
    free(remap);
    free(uses);
    return rc;
}

/* ---- BatchNormalization folding ----------------------------------------------------------------- */
int graph_fold_batchnorm(graph_t *g, eng_err_t *err)
{
    int *uses = calloc((size_t)g->n_values + 1, sizeof(int));
    if (!uses) return eng_errf(err, ENG_ENOMEM, "out of memory");
    for (int i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].dead) continue;
        for (int k = 0; k < g->nodes[i].n_in; k++)
            if (g->nodes[i].in[k] >= 0) uses[g->nodes[i].in[k]]++;
    }
    int rc = ENG_OK;
    for (int i = 0; i < g->n_nodes && !rc; i++) {
        node_t *bn = &g->nodes[i];
        if (bn->dead || !is_op(bn, "BatchNormalization") || bn->n_in < 5) continue;
        int xin = bn->in[0];
        int p = gval(g, xin)->producer;
        if (p < 0 || g->nodes[p].dead || !is_op(&g->nodes[p], "Conv")) continue;
        if (uses[xin] != 1 || xin == g->output) continue;
        int ok = 1;
        for (int k = 1; k < 5; k++) ok &= bn->in[k] >= 0 && gval(g, bn->in[k])->is_const && gval(g, bn->in[k])->dtype == DT_FLOAT;
        for (int o = 1; o < bn->n_out; o++) ok &= bn->out[o] < 0 || !uses[bn->out[o]];
        node_t *cv = &g->nodes[p];
        const value_t *w = cv->n_in > 1 && cv->in[1] >= 0 ? gval(g, cv->in[1]) : NULL;
        ok &= w && w->is_const && w->dtype == DT_FLOAT && w->rank >= 3;
        if (!ok) continue;
        int64_t M = w->dims[0];
        const value_t *sc = gval(g, bn->in[1]), *bb = gval(g, bn->in[2]), *mu = gval(g, bn->in[3]),
                      *var = gval(g, bn->in[4]);
        if ((int64_t)sc->size != M || (int64_t)bb->size != M || (int64_t)mu->size != M || (int64_t)var->size != M) {
            rc = node_err(g, bn, err, ENG_EFORMAT, "parameters have %zu channels but the Conv before it has %lld",
                          sc->size, (long long)M);
            break;
        }
        double eps = attr_float(bn, "epsilon", 1e-5f);
        const value_t *bias = cv->n_in > 2 && cv->in[2] >= 0 ? gval(g, cv->in[2]) : NULL;
        if (bias && (!bias->is_const || (int64_t)bias->size != M)) continue;
        float *nw = malloc(sizeof(float) * w->size), *nb = malloc(sizeof(float) * (size_t)M);
        if (!nw || !nb) {
            free(nw); free(nb);
            rc = eng_errf(err, ENG_ENOMEM, "out of memory");
            break;
        }
        size_t per = w->size / (size_t)M;
        for (int64_t m = 0; m < M; m++) {
            double s = (double)sc->f[m] / sqrt((double)var->f[m] + eps);
            for (size_t k = 0; k < per; k++) nw[(size_t)m * per + k] = (float)((double)w->f[(size_t)m * per + k] * s);
            double b0 = bias ? bias->f[m] : 0.0;
            nb[m] = (float)((b0 - (double)mu->f[m]) * s + (double)bb->f[m]);
        }
        char nm[512];
        snprintf(nm, sizeof nm, "%s:folded_weight", cv->name);
        int wid = graph_add_const_f(g, nm, w->rank, w->dims, nw);
        snprintf(nm, sizeof nm, "%s:folded_bias", cv->name);
        int64_t bd = M;
        int bid = wid >= 0 ? graph_add_const_f(g, nm, 1, &bd, nb) : -1;
        if (wid < 0 || bid < 0) {
            rc = eng_errf(err, ENG_ENOMEM, "out of memory");
            break;
        }
        bn = &g->nodes[i]; /* values may have moved, nodes did not */
        cv = &g->nodes[p];
        if (cv->n_in < 3) {
            int *ni = realloc(cv->in, sizeof(int) * 3);
            if (!ni) { rc = eng_errf(err, ENG_ENOMEM, "out of memory"); break; }
            cv->in = ni;
            cv->n_in = 3;
        }
        cv->in[1] = wid;
        cv->in[2] = bid;
        int old_out = cv->out[0];
        cv->out[0] = bn->out[0];
        gval(g, bn->out[0])->producer = p;
        gval(g, old_out)->producer = -1;
        bn->dead = 1;
        size_t dl = strlen(cv->op_type) + strlen("+BatchNormalization") + 1;
        char *disp = malloc(dl);
        if (disp) {
            snprintf(disp, dl, "%s+BatchNormalization", cv->op_type);
            free(cv->display);
            cv->display = disp;
        }
        if (graph_add_alias(g, bn->name, bn->out[0])) rc = eng_errf(err, ENG_ENOMEM, "out of memory");
        else rc = graph_init_node(g, p, err);
    }
    free(uses);
    return rc;
}
