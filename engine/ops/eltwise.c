/* Element-wise binary ops with numpy broadcasting: Add, Sub, Mul, Div.
 * Shapes as SE / CBAM blocks and normalization layers use them: (N,C,H,W) ∘ (N,C,1,1),
 * (N,C,H,W) ∘ (N,1,H,W), (N,C,H,W) ∘ (C,1,1) constants, scalars.
 *   y = a ∘ b
 *   Backward, reduced over the broadcast dimensions of each input:
 *     Add: da += dy,        db += dy
 *     Sub: da += dy,        db -= dy
 *     Mul: da += dy * b,    db += dy * a
 *     Div: da += dy / b,    db -= dy * a / b²
 * Broadcast dims are collapsed at run time so the inner loop is a contiguous run (or a scalar).
 */
#include <stdlib.h>
#include <string.h>

#include "../graph.h"

enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV };
typedef struct {
    int kind;
} bin_p;

static int bin_init_kind(graph_t *g, node_t *n, eng_err_t *err, int kind)
{
    if (n->n_in != 2 || n->in[0] < 0 || n->in[1] < 0) return node_err(g, n, err, ENG_EFORMAT, "needs two inputs");
    const value_t *a = nin(g, n, 0), *b = nin(g, n, 1);
    if (a->is_const && b->is_const) return node_err(g, n, err, ENG_EFORMAT, "both inputs are constant");
    for (int k = 0; k < 2; k++) {
        const value_t *v = nin(g, n, k);
        if (v->is_const && v->dtype != DT_FLOAT)
            return node_err(g, n, err, ENG_EUNSUPPORTED, "input '%s' is not float", v->name);
    }
    int rank = a->rank > b->rank ? a->rank : b->rank;
    int64_t od[ENG_MAX_RANK];
    for (int i = 0; i < rank; i++) {
        int ia = i - (rank - a->rank), ib = i - (rank - b->rank);
        int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return node_err(g, n, err, ENG_EFORMAT, "shapes do not broadcast at dimension %d (%lld vs %lld)", i,
                            (long long)da, (long long)db);
        od[i] = da > db ? da : db;
    }
    /* an activation's first dimension is its batch: it must stay the result's first dimension */
    for (int k = 0; k < 2; k++) {
        const value_t *v = nin(g, n, k);
        if (!v->is_const && v->rank != rank)
            return node_err(g, n, err, ENG_EUNSUPPORTED,
                            "activation '%s' has rank %d under a rank-%d result: broadcasting would move its batch "
                            "axis", v->name, v->rank, rank);
    }
    /* a constant may not carry a batch-sized leading dimension other than 1 */
    for (int k = 0; k < 2; k++) {
        const value_t *v = nin(g, n, k);
        if (v->is_const && v->rank == rank && v->dims[0] != 1)
            return node_err(g, n, err, ENG_EUNSUPPORTED, "constant '%s' has a leading dimension %lld over the batch",
                            v->name, (long long)v->dims[0]);
    }
    bin_p *p = calloc(1, sizeof *p);
    if (!p) return node_err(g, n, err, ENG_ENOMEM, "out of memory");
    p->kind = kind;
    n->p = p;
    value_set_shape(nout(g, n), rank, od);
    n->flops = (double)shape_size(rank, od);
    return ENG_OK;
}

static int add_init(graph_t *g, node_t *n, eng_err_t *err) { return bin_init_kind(g, n, err, OP_ADD); }
static int sub_init(graph_t *g, node_t *n, eng_err_t *err) { return bin_init_kind(g, n, err, OP_SUB); }
static int mul_init(graph_t *g, node_t *n, eng_err_t *err) { return bin_init_kind(g, n, err, OP_MUL); }
static int div_init(graph_t *g, node_t *n, eng_err_t *err) { return bin_init_kind(g, n, err, OP_DIV); }

/* Run-time broadcast plan: collapsed dims and element strides of a, b (0 = broadcast). */
typedef struct {
    int rank;
    int64_t d[ENG_MAX_RANK], sa[ENG_MAX_RANK], sb[ENG_MAX_RANK];
    size_t total;
} bc_t;

static void bc_plan(const graph_t *g, const node_t *nd, int n, bc_t *bc)
{
    const value_t *o = nout(g, nd);
    int rank = o->rank;
    int64_t d[ENG_MAX_RANK], s[2][ENG_MAX_RANK];
    for (int i = 0; i < rank; i++) d[i] = i == 0 ? n : o->dims[i];
    for (int k = 0; k < 2; k++) {
        const value_t *v = nin(g, nd, k);
        int64_t vd[ENG_MAX_RANK];
        for (int i = 0; i < rank; i++) {
            int vi = i - (rank - v->rank);
            vd[i] = vi < 0 ? 1 : (vi == 0 && !v->is_const) ? n : v->dims[vi];
        }
        int64_t st = 1;
        for (int i = rank - 1; i >= 0; i--) {
            s[k][i] = (vd[i] == 1 && d[i] != 1) ? 0 : st;
            st *= vd[i];
        }
    }
    /* drop size-1 dims, then merge neighbours that are contiguous for both inputs */
    int r = 0;
    for (int i = 0; i < rank; i++) {
        if (d[i] == 1) continue;
        if (r > 0 && bc->sa[r - 1] == s[0][i] * d[i] && bc->sb[r - 1] == s[1][i] * d[i]) {
            bc->d[r - 1] *= d[i];
            bc->sa[r - 1] = s[0][i];
            bc->sb[r - 1] = s[1][i];
            continue;
        }
        bc->d[r] = d[i];
        bc->sa[r] = s[0][i];
        bc->sb[r] = s[1][i];
        r++;
    }
    if (r == 0) {
        bc->d[0] = 1;
        bc->sa[0] = bc->sb[0] = 0;
        r = 1;
    }
    bc->rank = r;
    bc->total = 1;
    for (int i = 0; i < r; i++) bc->total *= (size_t)bc->d[i];
}

#define BC_LOOP(...)                                                                                                  \
    do {                                                                                                               \
        int64_t idx[ENG_MAX_RANK] = {0};                                                                               \
        const int last = bc.rank - 1;                                                                                  \
        const int64_t L = bc.d[last], ia = bc.sa[last], ib = bc.sb[last];                                              \
        size_t oo = 0;                                                                                                 \
        int64_t offa = 0, offb = 0;                                                                                    \
        for (;;) {                                                                                                     \
            __VA_ARGS__;                                                                                                    \
            oo += (size_t)L;                                                                                           \
            int i = last - 1;                                                                                          \
            for (; i >= 0; i--) {                                                                                      \
                idx[i]++;                                                                                              \
                offa += bc.sa[i];                                                                                      \
                offb += bc.sb[i];                                                                                      \
                if (idx[i] < bc.d[i]) break;                                                                           \
                offa -= bc.sa[i] * bc.d[i];                                                                            \
                offb -= bc.sb[i] * bc.d[i];                                                                            \
                idx[i] = 0;                                                                                            \
            }                                                                                                          \
            if (i < 0) break;                                                                                          \
        }                                                                                                              \
    } while (0)

static inline float apply(int kind, float a, float b)
{
    switch (kind) {
    case OP_ADD: return a + b;
    case OP_SUB: return a - b;
    case OP_MUL: return a * b;
    default: return a / b;
    }
}

static void bin_forward(const node_t *nd, const exec_t *e)
{
    const bin_p *p = nd->p;
    bc_t bc;
    bc_plan(e->g, nd, e->n, &bc);
    const float *A = e->x[0], *B = e->x[1];
    float *Y = e->y;
    const int kind = p->kind;
    BC_LOOP({
        const float *a = A + offa, *b = B + offb;
        float *y = Y + oo;
        if (ia == 1 && ib == 1) {
            switch (kind) {
            case OP_ADD: for (int64_t k = 0; k < L; k++) y[k] = a[k] + b[k]; break;
            case OP_SUB: for (int64_t k = 0; k < L; k++) y[k] = a[k] - b[k]; break;
            case OP_MUL: for (int64_t k = 0; k < L; k++) y[k] = a[k] * b[k]; break;
            default: for (int64_t k = 0; k < L; k++) y[k] = a[k] / b[k]; break;
            }
        } else if (ia == 1 && ib == 0) {
            const float bv = b[0];
            switch (kind) {
            case OP_ADD: for (int64_t k = 0; k < L; k++) y[k] = a[k] + bv; break;
            case OP_SUB: for (int64_t k = 0; k < L; k++) y[k] = a[k] - bv; break;
            case OP_MUL: for (int64_t k = 0; k < L; k++) y[k] = a[k] * bv; break;
            default: for (int64_t k = 0; k < L; k++) y[k] = a[k] / bv; break;
            }
        } else {
            for (int64_t k = 0; k < L; k++) y[k] = apply(kind, a[k * ia], b[k * ib]);
        }
    });
}

/* Same-shape inputs (residual Add, SE-free Mul): one pass, no zero-fill. */
static int bin_backward_same_shape(const bin_p *p, const exec_t *e, size_t n)
{
    const float *A = e->x[0], *B = e->x[1], *dy = e->dy;
    for (int k = 0; k < 2; k++) {
        float *d = e->dx[k];
        if (!d) continue;
        const int acc = e->acc[k];
        const float sign = (k == 1 && p->kind == OP_SUB) ? -1.f : 1.f;
        switch (p->kind) {
        case OP_ADD:
        case OP_SUB:
            if (acc) for (size_t i = 0; i < n; i++) d[i] += sign * dy[i];
            else if (sign > 0) memcpy(d, dy, sizeof(float) * n);
            else for (size_t i = 0; i < n; i++) d[i] = -dy[i];
            break;
        case OP_MUL: {
            const float *o = k ? A : B;
            if (acc) for (size_t i = 0; i < n; i++) d[i] += dy[i] * o[i];
            else for (size_t i = 0; i < n; i++) d[i] = dy[i] * o[i];
            break;
        }
        default:
            if (k == 0) {
                if (acc) for (size_t i = 0; i < n; i++) d[i] += dy[i] / B[i];
                else for (size_t i = 0; i < n; i++) d[i] = dy[i] / B[i];
            } else {
                if (acc) for (size_t i = 0; i < n; i++) d[i] -= dy[i] * A[i] / (B[i] * B[i]);
                else for (size_t i = 0; i < n; i++) d[i] = -dy[i] * A[i] / (B[i] * B[i]);
            }
            break;
        }
    }
    return 1;
}

static void bin_backward(const node_t *nd, const exec_t *e)
{
    const bin_p *p = nd->p;
    bc_t bc;
    bc_plan(e->g, nd, e->n, &bc);
    if (bc.rank == 1 && bc.sa[0] == 1 && bc.sb[0] == 1 && bin_backward_same_shape(p, e, bc.total)) return;
    float *DA = e->dx[0], *DB = e->dx[1];
    const float *A = e->x[0], *B = e->x[1], *DY = e->dy;
    for (int k = 0; k < 2; k++) {
        float *d = e->dx[k];
        if (d && !e->acc[k]) memset(d, 0, sizeof(float) * (size_t)e->n * nin(e->g, nd, k)->size);
    }
    const int kind = p->kind;
    /* An input broadcast along the innermost axis (stride 0 there: CBAM's channel attention, a
     * per-channel scale) sums the whole row into one element. The sum is kept in a register, in the
     * same order and from the same starting value as the element itself, so the result is the same
     * bits; only the store-to-load dependency through memory at every step is gone. */
#define GA(k) (kind == OP_MUL ? dy[k] * b[(k) * ib] : kind == OP_DIV ? dy[k] / b[(k) * ib] : dy[k])
#define GB(k)                                                                                                          \
    (kind == OP_SUB   ? -dy[k]                                                                                         \
     : kind == OP_MUL ? dy[k] * a[(k) * ia]                                                                            \
     : kind == OP_DIV ? -dy[k] * a[(k) * ia] / (b[(k) * ib] * b[(k) * ib])                                             \
                      : dy[k])
    BC_LOOP({
        const float *dy = DY + oo;
        const float *a = A + offa, *b = B + offb;
        if (DA) {
            float *da = DA + offa;
            if (ia == 0) {
                float acc = da[0];
                for (int64_t k = 0; k < L; k++) acc += GA(k);
                da[0] = acc;
            } else {
                for (int64_t k = 0; k < L; k++) da[k * ia] += GA(k);
            }
        }
        if (DB) {
            float *db = DB + offb;
            if (ib == 0) {
                float acc = db[0];
                for (int64_t k = 0; k < L; k++) acc += GB(k);
                db[0] = acc;
            } else {
                for (int64_t k = 0; k < L; k++) db[k * ib] += GB(k);
            }
        }
    });
#undef GA
#undef GB
}

const op_def_t op_add = {.name = "Add", .init = add_init, .forward = bin_forward, .backward = bin_backward, .unary = 0,
    .opset_min = 1, .opset_max = 0, .doc = "numpy broadcasting; either side may be a constant"};
const op_def_t op_sub = {.name = "Sub", .init = sub_init, .forward = bin_forward, .backward = bin_backward, .unary = 0,
    .opset_min = 1, .opset_max = 0, .doc = "numpy broadcasting; either side may be a constant"};
const op_def_t op_mul = {.name = "Mul", .init = mul_init, .forward = bin_forward, .backward = bin_backward, .unary = 0,
    .opset_min = 1, .opset_max = 0, .doc = "numpy broadcasting; either side may be a constant"};
const op_def_t op_div = {.name = "Div", .init = div_init, .forward = bin_forward, .backward = bin_backward, .unary = 0,
    .opset_min = 1, .opset_max = 0, .doc = "numpy broadcasting; either side may be a constant"};
