/* fold.c — load-time graph passes.
 *
 * graph_fold_constants walks the nodes in topological order once:
 *   - Constant nodes become constant values;
 *   - Identity and Dropout (no-ops at inference) are removed, their outputs aliased to their inputs;
 *   - a node whose inputs are all constant is evaluated now (this is how the Shape -> Gather ->
 *     Unsqueeze -> Concat -> Reshape chains that exporters emit for flattening disappear: Shape of an
 *     activation is known once the shapes before it are inferred, with the batch planned as 1);
 *   - a Split becomes one Slice per output (engine/split.c: the executor has one output per node);
 *   - every other node gets its op's init (shape inference), so later Shapes can fold.
 * graph_fold_batchnorm folds inference BatchNormalization into the Conv before it when that Conv
 * feeds only the BN: w' = w * s, b' = (b - mean) * s + beta, with s = gamma / sqrt(var + eps).
 */
#include "graph.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The ops this pass runs without the op table, for the loader's pre-scan and `explaind ops`. Keep it
 * in step with fold_eval_node and graph_fold_constants (tests/ops_doc checks the names). */
static const struct {
    const char *op;
    int when; /* FOLD_ALWAYS, or FOLD_CONST: when every input is constant */
    const char *doc;
} fold_ops[] = {
    {"Constant", FOLD_ALWAYS, "a constant value (value, value_float(s), value_int(s))"},
    {"Shape", FOLD_ALWAYS, "of any value: shapes are static (start, end)"},
    {"Identity", FOLD_ALWAYS, "removed: its output is its input"},
    {"Dropout", FOLD_ALWAYS, "removed (inference); its mask output must be unused"},
    {"Gather", FOLD_CONST, "indices along an axis"}, {"Unsqueeze", FOLD_CONST, ""}, {"Squeeze", FOLD_CONST, ""},
    {"Concat", FOLD_CONST, ""}, {"Cast", FOLD_CONST, "to float or int64"}, {"Reshape", FOLD_CONST, ""},
    {"Slice", FOLD_CONST, "starts, ends, axes, steps (attributes before opset 10, inputs from 10)"},
    {"Transpose", FOLD_CONST, "perm"}, {"Add", FOLD_CONST, ""}, {"Sub", FOLD_CONST, ""}, {"Mul", FOLD_CONST, ""},
    {"Div", FOLD_CONST, ""}, {"Pow", FOLD_CONST, "numpy broadcasting"}, {"Sqrt", FOLD_CONST, "element-wise"},
    {"Neg", FOLD_CONST, "element-wise"}, {"Equal", FOLD_CONST, "numpy broadcasting"},
    {"Where", FOLD_CONST, "numpy broadcasting"}, {"ConstantOfShape", FOLD_CONST, "value"},
    {"Range", FOLD_CONST, "start, limit, delta"}, {"Flatten", FOLD_CONST, ""},
    {"Split", FOLD_ALWAYS, "rewritten into one Slice per output (split.c)"},
    {"Abs", FOLD_CONST, "element-wise"}, {"Exp", FOLD_CONST, "element-wise"}, {"Log", FOLD_CONST, "element-wise"},
    {"Reciprocal", FOLD_CONST, "element-wise"}, {"Erf", FOLD_CONST, "element-wise"},
    {"Max", FOLD_CONST, "variadic, numpy broadcasting"}, {"Min", FOLD_CONST, "variadic, numpy broadcasting"},
    {"Sum", FOLD_CONST, "variadic, numpy broadcasting"}, {"Mean", FOLD_CONST, "variadic, numpy broadcasting"},
    {"Expand", FOLD_CONST, "numpy broadcasting to a constant shape"}, {"Tile", FOLD_CONST, "constant repeats"},
};
int fold_op_count(void) { return (int)(sizeof fold_ops / sizeof fold_ops[0]); }
const char *fold_op_info(int i, int *when, const char **doc)
{
    *when = fold_ops[i].when;
    *doc = fold_ops[i].doc;
    return fold_ops[i].op;
}
int fold_can_eval(const char *op_type)
{
    for (int i = 0; i < fold_op_count(); i++)
        if (!strcmp(fold_ops[i].op, op_type)) return fold_ops[i].when;
    return 0;
}

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

/* The largest constant computed at load (as large as a weight may be), and the largest one an op may
 * generate beyond the size of its inputs (ConstantOfShape, Expand, Tile, broadcasting): a small file
 * must not make the loader fill gigabytes element by element (16 Mi elements; a zeros_like of a
 * 224 x 224 x 256 map is 12.8 Mi). */
#define FOLD_MAX_ELEMS ((size_t)1 << 30)
#define FOLD_MAX_GROWN ((size_t)1 << 24)

static int grows_too_much(size_t out, size_t largest_in) { return out > FOLD_MAX_GROWN && out > largest_in; }

static double ct_get(const value_t *v, size_t k) { return v->dtype == DT_FLOAT ? (double)v->f[k] : (double)v->i64[k]; }

/* double -> int64 truncated toward zero, saturated, NaN -> 0: no conversion is undefined */
static int64_t sat_i64(double f) { return f != f ? 0 : f >= 9.2e18 ? INT64_MAX : f <= -9.2e18 ? INT64_MIN : (int64_t)f; }

/* An element as int64: int64 as is (through a double, INT64_MAX would not survive), floats truncated
 * and saturated (NaN -> 0) so no conversion is undefined. */
static int64_t ct_get_i64(const value_t *v, size_t k)
{
    return v->dtype == DT_INT64 ? v->i64[k] : sat_i64((double)v->f[k]);
}

static int ct_alloc(ct_t *c, int rank, const int64_t *dims, int dtype)
{
    c->rank = rank;
    memset(c->dims, 0, sizeof c->dims);
    for (int i = 0; i < rank; i++) c->dims[i] = dims[i];
    c->dtype = dtype;
    c->f = NULL;
    c->i = NULL;
    c->n = 1;
    for (int i = 0; i < rank; i++) { /* no negative dimension, no product past FOLD_MAX_ELEMS */
        if (dims[i] < 0 || (dims[i] && c->n > FOLD_MAX_ELEMS / (size_t)dims[i])) return -1;
        c->n *= (size_t)dims[i];
    }
    if (dtype == DT_FLOAT) c->f = calloc(c->n ? c->n : 1, sizeof(float));
    else c->i = calloc(c->n ? c->n : 1, sizeof(int64_t));
    return (c->f || c->i) ? 0 : -1;
}

static void ct_set(ct_t *c, size_t k, double x)
{
    if (c->dtype == DT_FLOAT) c->f[k] = (float)x;
    else c->i[k] = sat_i64(x);
}

/* c[k] = v[j], exact when the types match (int64 through a double would lose bits past 2^53) */
static void ct_copy(ct_t *c, size_t k, const value_t *v, size_t j)
{
    if (c->dtype == DT_INT64 && v->dtype == DT_INT64) c->i[k] = v->i64[j];
    else ct_set(c, k, ct_get(v, j));
}

static int norm_axis(int64_t a, int rank) { return (int)(a < 0 ? a + rank : a); }

static int read_ints_input(const graph_t *g, const node_t *n, int idx, int64_t *out, int max, int *cnt)
{
    if (idx >= n->n_in || n->in[idx] < 0) return -1;
    const value_t *v = nin(g, n, idx);
    if (!v->is_const || v->size > (size_t)max) return -2;
    for (size_t k = 0; k < v->size; k++) out[k] = ct_get_i64(v, k);
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

/* The element-wise ops folded below, with their input counts (-1: variadic). */
#define FOLD_MAX_INPUTS 16
enum { E_NONE, E_ADD, E_SUB, E_MUL, E_DIV, E_POW, E_EQUAL, E_SQRT, E_NEG, E_ABS, E_EXP, E_LOG, E_RECIP, E_ERF, E_WHERE,
       E_MAX, E_MIN, E_SUM, E_MEAN };
static const struct {
    const char *name;
    int code, arity;
} elementwise[] = {
    {"Add", E_ADD, 2},     {"Sub", E_SUB, 2},     {"Mul", E_MUL, 2},   {"Div", E_DIV, 2},   {"Pow", E_POW, 2},
    {"Equal", E_EQUAL, 2}, {"Sqrt", E_SQRT, 1},   {"Neg", E_NEG, 1},   {"Abs", E_ABS, 1},   {"Exp", E_EXP, 1},
    {"Log", E_LOG, 1},     {"Reciprocal", E_RECIP, 1}, {"Erf", E_ERF, 1}, {"Where", E_WHERE, 3}, {"Max", E_MAX, -1},
    {"Min", E_MIN, -1},    {"Sum", E_SUM, -1},    {"Mean", E_MEAN, -1},
};

static int fold_elementwise_code(const node_t *n, int *arity)
{
    for (size_t k = 0; k < sizeof elementwise / sizeof *elementwise; k++)
        if (is_op(n, elementwise[k].name)) {
            *arity = elementwise[k].arity;
            return elementwise[k].code;
        }
    return E_NONE;
}


int fold_eval_node(graph_t *g, node_t *n, eng_err_t *err)
{
    ct_t c;
    memset(&c, 0, sizeof c);
    int64_t tmp[64];
    int cnt = 0;
    const value_t *x = n->n_in > 0 && n->in[0] >= 0 ? nin(g, n, 0) : NULL;
    const char *t = n->op_type;
    if (!x && !is_op(n, "Constant"))
        return node_err(g, n, err, ENG_EFORMAT, "input 0 is missing");

    if (is_op(n, "Constant")) {
        const attr_t *a = attr_get(n, "value");
        if (a && a->type == AT_TENSOR) {
            const value_t *src = gval(g, a->tensor);
            if (ct_alloc(&c, src->rank, src->dims, src->dtype)) goto oom;
            for (size_t k = 0; k < c.n; k++) ct_copy(&c, k, src, k);
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
        if (n->n_in < 2 || n->in[1] < 0) return node_err(g, n, err, ENG_EFORMAT, "the indices input is missing");
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
                int64_t id = ct_get_i64(idx, j);
                if (id < 0) id += ax;
                if (id < 0 || id >= ax) {
                    free(c.f); free(c.i);
                    return node_err(g, n, err, ENG_EFORMAT, "index out of range");
                }
                for (size_t in = 0; in < inner; in++) ct_copy(&c, k++, x, (o * (size_t)ax + (size_t)id) * inner + in);
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
        for (size_t k = 0; k < c.n; k++) ct_copy(&c, k, x, k);
    } else if (is_op(n, "Concat")) {
        int64_t a = attr_int(n, "axis", 0);
        if (a < -x->rank || a >= x->rank) return node_err(g, n, err, ENG_EFORMAT, "axis out of range");
        int axis = norm_axis(a, x->rank);
        int64_t od[ENG_MAX_RANK];
        memcpy(od, x->dims, sizeof od);
        od[axis] = 0;
        for (int k = 0; k < n->n_in; k++) {
            const value_t *v = n->in[k] >= 0 ? nin(g, n, k) : NULL;
            if (!v || v->rank != x->rank) return node_err(g, n, err, ENG_EFORMAT, "input %d is missing or of another rank", k);
            for (int i = 0; i < x->rank; i++)
                if (i != axis && v->dims[i] != x->dims[i])
                    return node_err(g, n, err, ENG_EFORMAT, "input %d differs at dimension %d", k, i);
            od[axis] += v->dims[axis];
        }
        if (ct_alloc(&c, x->rank, od, x->dtype)) goto oom;
        size_t outer = shape_size(axis, x->dims), kk = 0;
        for (size_t o = 0; o < outer; o++)
            for (int k = 0; k < n->n_in; k++) {
                const value_t *v = nin(g, n, k);
                size_t blk = shape_size(v->rank - axis, v->dims + axis);
                for (size_t j = 0; j < blk; j++) ct_copy(&c, kk++, v, o * blk + j);
            }
    } else if (is_op(n, "Cast")) {
        /* float types stay float (half/double/bfloat16 rounding is not modelled), integer types
         * truncate toward zero, BOOL is x != 0; strings and complex numbers are refused */
        int64_t to = attr_int(n, "to", 1);
        int is_f = to == 1 || to == 10 || to == 11 || to == 16, is_bool = to == 9;
        int is_i = to == 2 || to == 3 || to == 4 || to == 5 || to == 6 || to == 7 || to == 12 || to == 13;
        if (!is_f && !is_bool && !is_i)
            return node_err(g, n, err, ENG_EUNSUPPORTED, "cast of a constant to data type %lld", (long long)to);
        if (ct_alloc(&c, x->rank, x->dims, is_f ? DT_FLOAT : DT_INT64)) goto oom;
        for (size_t k = 0; k < c.n; k++) {
            double v = ct_get(x, k);
            ct_set(&c, k, is_bool ? (double)(v != 0) : is_i ? trunc(v) : v);
        }
    } else if (is_op(n, "Reshape")) {
        if (read_ints_input(g, n, 1, tmp, 64, &cnt) || cnt > ENG_MAX_RANK)
            return node_err(g, n, err, ENG_EUNSUPPORTED, "shape input must be a small constant");
        int64_t od[ENG_MAX_RANK], known = 1;
        int neg = -1;
        int allowzero = (int)attr_int(n, "allowzero", 0);
        for (int i = 0; i < cnt; i++) {
            od[i] = tmp[i];
            if (od[i] == 0 && !allowzero) od[i] = i < x->rank ? x->dims[i] : 0;
            if (od[i] == -1 && neg < 0) neg = i;
            else if (od[i] < 0 || (od[i] > 0 && known > (int64_t)x->size / od[i]))
                return node_err(g, n, err, ENG_EFORMAT, "the target shape does not fit the %zu elements", x->size);
            else known *= od[i];
        }
        if (neg >= 0) od[neg] = known ? (int64_t)x->size / known : 0;
        if (shape_size(cnt, od) != x->size) return node_err(g, n, err, ENG_EFORMAT, "Reshape changes the element count");
        if (ct_alloc(&c, cnt, od, x->dtype)) goto oom;
        for (size_t k = 0; k < c.n; k++) ct_copy(&c, k, x, k);
    } else if (is_op(n, "Slice")) {
        int64_t st[ENG_MAX_RANK], en[ENG_MAX_RANK], ax[ENG_MAX_RANK], sp[ENG_MAX_RANK];
        int ns;
        if (g->opset < 10) {
            ns = attr_ints(n, "starts", st, ENG_MAX_RANK);
            if (attr_ints(n, "ends", en, ENG_MAX_RANK) != ns || ns < 0 || ns > x->rank)
                return node_err(g, n, err, ENG_EFORMAT, "starts/ends missing or longer than the rank");
            int na = attr_ints(n, "axes", ax, ENG_MAX_RANK);
            if (na < 0) for (int i = 0; i < ns; i++) ax[i] = i;
            else if (na != ns) return node_err(g, n, err, ENG_EFORMAT, "axes and starts differ in length");
            for (int i = 0; i < ns; i++) sp[i] = 1;
        } else {
            int ne;
            if (read_ints_input(g, n, 1, st, ENG_MAX_RANK, &ns) || read_ints_input(g, n, 2, en, ENG_MAX_RANK, &ne) ||
                ne != ns || ns > x->rank)
                return node_err(g, n, err, ENG_EFORMAT, "starts/ends must be constants of equal length");
            int na2 = ns, rc3 = read_ints_input(g, n, 3, ax, ENG_MAX_RANK, &na2);
            if (rc3 == -1) for (int i = 0; i < ns; i++) ax[i] = i;
            if (rc3 == -2 || na2 != ns) return node_err(g, n, err, ENG_EFORMAT, "axes must be a constant as long as starts");
            na2 = ns;
            rc3 = read_ints_input(g, n, 4, sp, ENG_MAX_RANK, &na2);
            if (rc3 == -1) for (int i = 0; i < ns; i++) sp[i] = 1;
            if (rc3 == -2 || na2 != ns) return node_err(g, n, err, ENG_EFORMAT, "steps must be a constant as long as starts");
        }
        int64_t b[ENG_MAX_RANK], s[ENG_MAX_RANK], od[ENG_MAX_RANK];
        for (int i = 0; i < x->rank; i++) { b[i] = 0; s[i] = 1; od[i] = x->dims[i]; }
        for (int k = 0; k < ns; k++) {
            int a = norm_axis(ax[k], x->rank);
            if (a < 0 || a >= x->rank || sp[k] == 0) return node_err(g, n, err, ENG_EFORMAT, "bad axis or step");
            /* ONNX Slice: clamp to [0, d] (step > 0) or start to [0, d-1], end to [-1, d-1] (step < 0);
             * a step longer than the axis takes one element either way (and keeps the arithmetic in range) */
            int64_t d = x->dims[a], lo = st[k], hi = en[k], step = sp[k];
            if (step > d) step = d > 0 ? d : 1;
            if (step < -d) step = d > 0 ? -d : -1;
            if (lo < 0) lo += d;
            if (hi < 0) hi += d;
            if (step > 0) {
                lo = lo < 0 ? 0 : lo > d ? d : lo;
                hi = hi < 0 ? 0 : hi > d ? d : hi;
                od[a] = hi > lo ? (hi - lo + step - 1) / step : 0;
            } else {
                lo = lo < 0 ? 0 : lo > d - 1 ? d - 1 : lo;
                hi = hi < -1 ? -1 : hi > d - 1 ? d - 1 : hi;
                od[a] = lo > hi ? (lo - hi - step - 1) / (-step) : 0;
            }
            b[a] = lo;
            s[a] = step;
        }
        if (ct_alloc(&c, x->rank, od, x->dtype)) goto oom;
        int64_t xs[ENG_MAX_RANK], idx[ENG_MAX_RANK] = {0};
        strides_of(x->rank, x->dims, xs);
        for (size_t k = 0; k < c.n; k++) {
            int64_t off = 0;
            for (int i = 0; i < x->rank; i++) off += (b[i] + idx[i] * s[i]) * xs[i];
            ct_copy(&c, k, x, (size_t)off);
            for (int i = x->rank - 1; i >= 0; i--) {
                if (++idx[i] < od[i]) break;
                idx[i] = 0;
            }
        }
    } else if (is_op(n, "Transpose")) {
        int64_t perm[ENG_MAX_RANK], od[ENG_MAX_RANK], xs[ENG_MAX_RANK], idx[ENG_MAX_RANK] = {0};
        int np = attr_ints(n, "perm", perm, ENG_MAX_RANK), seen[ENG_MAX_RANK] = {0};
        if (np < 0)
            for (int i = 0; i < x->rank; i++) perm[i] = x->rank - 1 - i;
        else if (np != x->rank)
            return node_err(g, n, err, ENG_EFORMAT, "perm has %d entries for rank %d", np, x->rank);
        for (int i = 0; i < x->rank; i++)
            if (perm[i] < 0 || perm[i] >= x->rank || seen[perm[i]]++)
                return node_err(g, n, err, ENG_EFORMAT, "perm is not a permutation");
        for (int i = 0; i < x->rank; i++) od[i] = x->dims[perm[i]];
        if (ct_alloc(&c, x->rank, od, x->dtype)) goto oom;
        strides_of(x->rank, x->dims, xs);
        for (size_t k = 0; k < c.n; k++) {
            int64_t off = 0;
            for (int i = 0; i < x->rank; i++) off += idx[i] * xs[perm[i]];
            ct_copy(&c, k, x, (size_t)off);
            for (int i = x->rank - 1; i >= 0; i--) {
                if (++idx[i] < od[i]) break;
                idx[i] = 0;
            }
        }
    } else if (is_op(n, "Expand") || is_op(n, "Tile")) {
        /* Expand: numpy broadcasting of x to `shape` (either may be longer); Tile: dims · repeats */
        int tile = is_op(n, "Tile");
        if (read_ints_input(g, n, 1, tmp, ENG_MAX_RANK, &cnt))
            return node_err(g, n, err, ENG_EUNSUPPORTED, "%s must be a small constant", tile ? "repeats" : "shape");
        if (tile && cnt != x->rank) return node_err(g, n, err, ENG_EFORMAT, "repeats has %d values for rank %d", cnt, x->rank);
        int rank = cnt > x->rank ? cnt : x->rank;
        int64_t od[ENG_MAX_RANK] = {0}, xd[ENG_MAX_RANK], xs[ENG_MAX_RANK], idx[ENG_MAX_RANK] = {0};
        size_t total = 1;
        for (int i = 0; i < rank; i++) {
            int xi = i - (rank - x->rank), si = i - (rank - cnt);
            xd[i] = xi < 0 ? 1 : x->dims[xi];
            int64_t w = si < 0 ? 1 : tmp[si];
            if (w < 0 || w > ((int64_t)1 << 30) || (!tile && w != 1 && xd[i] != 1 && w != xd[i]))
                return node_err(g, n, err, ENG_EFORMAT, "cannot %s dimension %d (%lld) by %lld", tile ? "tile" : "expand", i,
                                (long long)xd[i], (long long)w);
            od[i] = tile ? xd[i] * w : xd[i] == 1 ? w : xd[i];
            if (od[i] && total > FOLD_MAX_ELEMS / (size_t)od[i])
                return node_err(g, n, err, ENG_EUNSUPPORTED, "the result is too large to fold");
            total *= (size_t)od[i];
        }
        if (grows_too_much(total, x->size))
            return node_err(g, n, err, ENG_EUNSUPPORTED, "the result (%zu elements) is too large to fold", total);
        if (ct_alloc(&c, rank, od, x->dtype)) goto oom;
        strides_of(rank, xd, xs);
        for (size_t k = 0; k < c.n; k++) {
            int64_t off = 0;
            for (int i = 0; i < rank; i++) off += (idx[i] % xd[i]) * xs[i];
            ct_copy(&c, k, x, (size_t)off);
            for (int i = rank - 1; i >= 0; i--) {
                if (++idx[i] < od[i]) break;
                idx[i] = 0;
            }
        }
    } else if (fold_elementwise_code(n, &cnt) != E_NONE) {
        /* element-wise with numpy broadcasting */
        const int code = fold_elementwise_code(n, &cnt);
        int nin_ = cnt < 0 ? n->n_in : cnt; /* variadic: every input */
        if (n->n_in != nin_ || nin_ < 1 || nin_ > FOLD_MAX_INPUTS)
            return node_err(g, n, err, ENG_EFORMAT, "%d inputs: not a valid %s (at most %d fold)", n->n_in, t, FOLD_MAX_INPUTS);
        for (int k = 0; k < nin_; k++)
            if (n->in[k] < 0) return node_err(g, n, err, ENG_EFORMAT, "input %d is missing", k);
        int rank = 0;
        for (int k = 0; k < nin_; k++) rank = nin(g, n, k)->rank > rank ? nin(g, n, k)->rank : rank;
        int64_t od[ENG_MAX_RANK], st[FOLD_MAX_INPUTS][ENG_MAX_RANK];
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
        size_t total = 1, largest = 0;
        for (int i = 0; i < rank; i++) {
            if (od[i] && total > FOLD_MAX_ELEMS / (size_t)od[i])
                return node_err(g, n, err, ENG_EUNSUPPORTED, "the result is too large to fold");
            total *= (size_t)od[i];
        }
        for (int k = 0; k < nin_; k++) largest = nin(g, n, k)->size > largest ? nin(g, n, k)->size : largest;
        if (grows_too_much(total, largest))
            return node_err(g, n, err, ENG_EUNSUPPORTED, "the broadcast result (%zu elements) is too large to fold", total);
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
            double a[FOLD_MAX_INPUTS];
            for (int q = 0; q < nin_; q++) {
                int64_t off = 0;
                for (int i = 0; i < rank; i++) off += idx[i] * st[q][i];
                a[q] = ct_get(nin(g, n, q), (size_t)off);
            }
            double r = a[0];
            switch (code) {
            case E_ADD: r = a[0] + a[1]; break;
            case E_SUB: r = a[0] - a[1]; break;
            case E_MUL: r = a[0] * a[1]; break;
            case E_DIV:
                if (dt != DT_INT64) r = a[0] / a[1];
                else { /* integer division truncates; x / 0 -> 0 and INT64_MIN / -1 saturate instead of trapping */
                    int64_t p = sat_i64(a[0]), q = sat_i64(a[1]);
                    r = q == 0 ? 0 : (q == -1 && p == INT64_MIN) ? (double)INT64_MAX : (double)(p / q);
                }
                break;
            case E_POW: r = pow(a[0], a[1]); break;
            case E_SQRT: r = sqrt(a[0]); break;
            case E_NEG: r = -a[0]; break;
            case E_ABS: r = fabs(a[0]); break;
            case E_EXP: r = exp(a[0]); break;
            case E_LOG: r = log(a[0]); break;
            case E_RECIP: r = 1.0 / a[0]; break;
            case E_ERF: r = erf(a[0]); break;
            case E_EQUAL: r = a[0] == a[1]; break;
            case E_WHERE: r = a[0] != 0 ? a[1] : a[2]; break;
            case E_MAX: for (int q = 1; q < nin_; q++) r = (a[q] > r || a[q] != a[q]) ? a[q] : r; break;
            case E_MIN: for (int q = 1; q < nin_; q++) r = (a[q] < r || a[q] != a[q]) ? a[q] : r; break;
            default: /* Sum, Mean */
                for (int q = 1; q < nin_; q++) r += a[q];
                if (code == E_MEAN) r /= nin_;
                break;
            }
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
        size_t total = 1;
        for (int i = 0; i < cnt; i++) {
            if (tmp[i] < 0 || (tmp[i] && total > FOLD_MAX_GROWN / (size_t)tmp[i]))
                return node_err(g, n, err, ENG_EUNSUPPORTED, "the shape has a negative or too large dimension");
            total *= (size_t)tmp[i];
        }
        if (ct_alloc(&c, cnt, tmp, fill ? fill->dtype : DT_FLOAT)) goto oom;
        double fv = fill && fill->size ? ct_get(fill, 0) : 0;
        if (c.f) for (size_t k = 0; k < c.n; k++) c.f[k] = (float)fv;
        else for (size_t k = 0, iv = (size_t)sat_i64(fv); k < c.n; k++) c.i[k] = (int64_t)iv;
    } else if (is_op(n, "Range")) {
        if (n->n_in < 3 || n->in[1] < 0 || n->in[2] < 0 || !nin(g, n, 0)->size || !nin(g, n, 1)->size ||
            !nin(g, n, 2)->size)
            return node_err(g, n, err, ENG_EFORMAT, "start, limit and delta are required");
        const value_t *s0 = nin(g, n, 0), *l = nin(g, n, 1), *d = nin(g, n, 2);
        double a0 = ct_get(s0, 0), lim = ct_get(l, 0), dl = ct_get(d, 0);
        if (dl == 0) return node_err(g, n, err, ENG_EFORMAT, "delta is zero");
        double cntd = ceil((lim - a0) / dl);
        int64_t len = cntd > 0 ? (int64_t)cntd : 0;
        if (len > (1 << 20)) return node_err(g, n, err, ENG_EUNSUPPORTED, "range too long");
        if (ct_alloc(&c, 1, &len, s0->dtype)) goto oom;
        for (int64_t k = 0; k < len; k++) ct_set(&c, (size_t)k, a0 + (double)k * dl);
    } else if (is_op(n, "Flatten")) {
        int64_t a = attr_int(n, "axis", 1);
        if (a < -x->rank || a > x->rank) return node_err(g, n, err, ENG_EFORMAT, "axis out of range");
        int axis = norm_axis(a, x->rank);
        int64_t od[2] = {(int64_t)shape_size(axis, x->dims), (int64_t)shape_size(x->rank - axis, x->dims + axis)};
        if (ct_alloc(&c, 2, od, x->dtype)) goto oom;
        for (size_t k = 0; k < c.n; k++) ct_copy(&c, k, x, k);
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
    return node_err(g, n, err, ENG_ENOMEM, "cannot fold this constant: a negative dimension, too many elements, or out of memory");
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
        if (is_op(n, "Split")) { /* one node per output: Slices, inserted here (split.c) */
            rc = graph_split_to_slices(g, i, err);
            if (rc) return rc;
            n = &g->nodes[i];
            if (n->dead) continue;
        }
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
        int shape_of_act = is_op(n, "Shape") && n->n_in == 1 && n->in[0] >= 0 && !gval(g, n->in[0])->is_const;
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
