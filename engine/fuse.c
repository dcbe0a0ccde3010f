/* fuse.c — load-time fusion: chains of ONNX nodes that exporters write for one PyTorch layer become
 * that layer's op, so it runs as one node (one activation, one pass) with PyTorch's own backward.
 * Runs after constant folding (constants are values, every shape is known) and before BatchNorm
 * folding and finalize.
 *
 *   LayerNorm  ReduceMean(x) -> Sub(x, ·) -> Pow(·, 2) | Mul(·, ·) -> ReduceMean -> Add ε -> Sqrt ->
 *              Div(Sub, ·) | Mul(Sub, Reciprocal(·) or Div(1, ·)) [-> Mul scale] [-> Add bias]
 *              => LayerNormalization over the reduced axes (PyTorch's nn.LayerNorm below opset 17; the
 *              channels_first LayerNorm of ConvNeXt's original code, written with x.mean(1), fuses into
 *              a LayerNormalization over axis 1 of NCHW). The scale and bias constants are kept when
 *              they vary only along the normalized axes; otherwise the Mul / Add stay separate nodes.
 *   GELU, Mish  a chain of element-wise nodes (Add Sub Mul Div Pow Sqrt Exp Log Neg Reciprocal Erf Tanh
 *              Sigmoid Softplus) on one activation x, with scalar constants, containing an Erf or a Tanh,
 *              that computes ½x(1 + erf(x/√2)) => Gelu, ½x(1 + tanh(√(2/π)(x + 0.044715x³))) => Gelu
 *              (approximate = tanh), x·tanh(softplus x) => Mish.
 *              A chain is recognised by what it computes, not by how it is spelled (operand order,
 *              Pow(x, 3) or x·x·x, where the ½ is applied): it is evaluated in double at 41 points of
 *              [-6, 6] and must agree with the function to 1e-5 (the two GELUs differ by up to 4.7e-4).
 * Every node of a fused chain except the last is removed; the fused node keeps the last one's name
 * and output value, and the names of the removed nodes and of their outputs become aliases of it, so
 * a cam_layer or value name from the file still resolves (to the fused layer's output).
 * A chain whose intermediate values are used outside it (or are the graph output) is left alone.
 */
#include "graph.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CHAIN 24
#define N_PROBE 41

typedef struct {
    graph_t *g;
    int *uses;  /* per value: live consumers (+1 for the graph output) */
    int *user;  /* per value: one consumer node (the only one when uses == 1) */
} fz_t;

static int is_op(const node_t *n, const char *t) { return !n->dead && !strcmp(n->op_type, t); }

static void count_uses(fz_t *f)
{
    graph_t *g = f->g;
    for (int v = 0; v < g->n_values; v++) {
        f->uses[v] = v == g->output;
        f->user[v] = -1;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const node_t *n = &g->nodes[i];
        if (n->dead) continue;
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0) {
                f->uses[n->in[k]]++;
                f->user[n->in[k]] = i;
            }
    }
}

/* the live node producing v, or NULL (constants, the input) */
static node_t *prod(const fz_t *f, int v)
{
    int p = v >= 0 ? f->g->values[v].producer : -1;
    return p >= 0 && !f->g->nodes[p].dead ? &f->g->nodes[p] : NULL;
}

/* the only consumer of v, or NULL */
static node_t *sole_user(const fz_t *f, int v)
{
    return v >= 0 && f->uses[v] == 1 && f->user[v] >= 0 ? &f->g->nodes[f->user[v]] : NULL;
}

static int scalar_of(const graph_t *g, int v, double *out)
{
    if (v < 0) return 0;
    const value_t *c = gval(g, v);
    if (!c->is_const || c->size != 1) return 0;
    *out = c->dtype == DT_FLOAT ? (double)c->f[0] : (double)c->i64[0];
    return 1;
}

/* n is a binary node with `v` on one side: the other input (or -1) */
static int other_input(const node_t *n, int v)
{
    if (n->n_in != 2) return -1;
    return n->in[0] == v ? n->in[1] : n->in[1] == v ? n->in[0] : -1;
}

/* Rewrite node `keep` into op `type` with the given inputs and attributes; kill the others of the
 * chain, aliasing their names. */
static int rewrite(fz_t *f, int keep, const int *chain, int n_chain, const char *type, const int *in, int n_in,
                   attr_t *attrs, int n_attrs, eng_err_t *err)
{
    graph_t *g = f->g;
    node_t *n = &g->nodes[keep];
    int out = n->out[0];
    for (int k = 0; k < n_chain; k++) {
        node_t *d = &g->nodes[chain[k]];
        if (chain[k] == keep) continue;
        d->dead = 1;
        if (graph_add_alias(g, d->name, out) || graph_add_alias(g, gval(g, d->out[0])->name, out))
            return eng_errf(err, ENG_ENOMEM, "out of memory");
    }
    int *nin_ = malloc(sizeof(int) * (size_t)(n_in + 1));
    char disp[96];
    snprintf(disp, sizeof disp, "%s (fused from %d nodes)", type, n_chain);
    char *nt = strdup(type), *nd = strdup(disp);
    if (!nin_ || !nt || !nd) {
        free(nin_); free(nt); free(nd);
        return eng_errf(err, ENG_ENOMEM, "out of memory");
    }
    memcpy(nin_, in, sizeof(int) * (size_t)n_in);
    free(n->in);
    n->in = nin_;
    n->n_in = n_in;
    for (int o = 1; o < n->n_out; o++) n->out[o] = -1;
    n->n_out = 1;
    free(n->op_type);
    n->op_type = nt;
    free(n->display);
    n->display = nd;
    for (int k = 0; k < n->n_attr; k++) {
        free(n->attr[k].name); free(n->attr[k].s); free(n->attr[k].ints); free(n->attr[k].floats);
    }
    free(n->attr);
    n->attr = attrs;
    n->n_attr = n_attrs;
    count_uses(f);
    return graph_init_node(g, keep, err);
}

static attr_t *attrs_new(int n) { return calloc((size_t)n + 1, sizeof(attr_t)); }

static int attr_set_int(attr_t *a, const char *name, int64_t v)
{
    a->name = strdup(name);
    a->type = AT_INT;
    a->i = v;
    a->tensor = -1;
    return a->name ? 0 : -1;
}

static int attr_set_float(attr_t *a, const char *name, float v)
{
    a->name = strdup(name);
    a->type = AT_FLOAT;
    a->f = v;
    a->tensor = -1;
    return a->name ? 0 : -1;
}

static int attr_set_str(attr_t *a, const char *name, const char *v)
{
    a->name = strdup(name);
    a->type = AT_STRING;
    a->s = strdup(v);
    a->tensor = -1;
    return a->name && a->s ? 0 : -1;
}

static void attrs_free(attr_t *a, int n)
{
    for (int k = 0; k < n; k++) {
        free(a[k].name);
        free(a[k].s);
    }
    free(a);
}

/* ---- LayerNorm ---------------------------------------------------------------------------------- */
/* ReduceMean's axes over x as a contiguous block [a0, a1] of non-batch axes, keepdims = 1. */
static int mean_block(const graph_t *g, const node_t *r, const value_t *x, int *a0, int *a1)
{
    int64_t ax[ENG_MAX_RANK];
    int na = reduce_axes(g, r, ax, ENG_MAX_RANK);
    if (na <= 0 || attr_int(r, "keepdims", 1) != 1) return 0;
    char red[ENG_MAX_RANK] = {0};
    for (int k = 0; k < na; k++) {
        int a = (int)(ax[k] < 0 ? ax[k] + x->rank : ax[k]);
        if (a < 1 || a >= x->rank) return 0;
        red[a] = 1;
    }
    int lo = -1, hi = -1;
    for (int i = 1; i < x->rank; i++)
        if (red[i]) {
            if (lo < 0) lo = i;
            else if (hi != i - 1) return 0;
            hi = i;
        }
    *a0 = lo;
    *a1 = hi;
    return lo > 0;
}

static int try_layernorm(fz_t *f, int ri, eng_err_t *err)
{
    graph_t *g = f->g;
    node_t *r1 = &g->nodes[ri];
    if (r1->n_in < 1 || r1->in[0] < 0) return ENG_OK;
    const int x = r1->in[0], m = r1->out[0];
    const value_t *xv = gval(g, x);
    int a0, a1;
    if (xv->is_const || !mean_block(g, r1, xv, &a0, &a1)) return ENG_OK;
    if (m == g->output || f->uses[m] < 1 || f->uses[m] > 2) return ENG_OK;
    /* the Subs x - mean (one, or two when the expression repeats it) */
    int subs[2], n_subs = 0;
    for (int i = 0; i < g->n_nodes && n_subs <= 2; i++) {
        const node_t *n = &g->nodes[i];
        if (n->dead) continue;
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] == m) {
                if (!is_op(n, "Sub") || n->n_in != 2 || n->in[0] != x || n->in[1] != m || n_subs == 2) return ENG_OK;
                subs[n_subs++] = i;
                break;
            }
    }
    if (n_subs != f->uses[m]) return ENG_OK;
    /* the square of a Sub */
    int sq = -1;
    for (int s = 0; s < n_subs && sq < 0; s++) {
        int dv = g->nodes[subs[s]].out[0];
        for (int i = 0; i < g->n_nodes; i++) {
            const node_t *n = &g->nodes[i];
            double e;
            if (n->dead || n->n_in != 2 || n->in[0] != dv) continue;
            if ((is_op(n, "Pow") && scalar_of(g, n->in[1], &e) && e == 2) || (is_op(n, "Mul") && n->in[1] == dv)) {
                sq = i;
                break;
            }
        }
    }
    if (sq < 0) return ENG_OK;
    node_t *r2 = sole_user(f, g->nodes[sq].out[0]);
    int b0, b1;
    if (!r2 || !is_op(r2, "ReduceMean") || !mean_block(g, r2, xv, &b0, &b1) || b0 != a0 || b1 != a1) return ENG_OK;
    node_t *ad = sole_user(f, r2->out[0]);
    double eps;
    if (!ad || !is_op(ad, "Add") || !scalar_of(g, other_input(ad, r2->out[0]), &eps) || !(eps >= 0)) return ENG_OK;
    node_t *sr = sole_user(f, ad->out[0]);
    if (!sr || !is_op(sr, "Sqrt")) return ENG_OK;
    /* the division: Div(Sub, sqrt) or Mul(Sub, 1/sqrt) */
    node_t *dv = sole_user(f, sr->out[0]), *inv = NULL;
    if (!dv) return ENG_OK;
    double one;
    if (is_op(dv, "Reciprocal") || (is_op(dv, "Div") && dv->n_in == 2 && dv->in[1] == sr->out[0] &&
                                    scalar_of(g, dv->in[0], &one) && one == 1)) {
        inv = dv;
        dv = sole_user(f, inv->out[0]);
        if (!dv || !is_op(dv, "Mul")) return ENG_OK;
    } else if (!is_op(dv, "Div") || dv->n_in != 2 || dv->in[1] != sr->out[0]) {
        return ENG_OK;
    }
    int num = inv ? other_input(dv, inv->out[0]) : dv->in[0];
    int num_sub = -1;
    for (int s = 0; s < n_subs; s++)
        if (g->nodes[subs[s]].out[0] == num) num_sub = s;
    if (num_sub < 0) return ENG_OK;
    /* every use of the Subs is the square or the division */
    int dvi = (int)(dv - g->nodes);
    for (int s = 0; s < n_subs; s++) {
        int o = g->nodes[subs[s]].out[0], seen = 0;
        if (o == g->output) return ENG_OK;
        for (int i = 0; i < g->n_nodes; i++) {
            const node_t *n = &g->nodes[i];
            if (n->dead) continue;
            for (int k = 0; k < n->n_in; k++)
                if (n->in[k] == o) {
                    if (i != sq && i != dvi) return ENG_OK;
                    seen++;
                }
        }
        if (seen != f->uses[o]) return ENG_OK;
    }
    int chain[12], nc = 0;
    chain[nc++] = ri;
    for (int s = 0; s < n_subs; s++) chain[nc++] = subs[s];
    chain[nc++] = sq;
    chain[nc++] = (int)(r2 - g->nodes);
    chain[nc++] = (int)(ad - g->nodes);
    chain[nc++] = (int)(sr - g->nodes);
    if (inv) chain[nc++] = (int)(inv - g->nodes);
    chain[nc++] = dvi;
    /* the affine part, when its constants vary along the normalized axes only */
    int scale = -1, bias = -1, cur = dv->out[0];
    node_t *mu = sole_user(f, cur);
    if (mu && cur != g->output && is_op(mu, "Mul")) {
        int c = other_input(mu, cur);
        if (c >= 0 && layernorm_param_fits(gval(g, c), xv, a0, a1, NULL)) {
            scale = c;
            chain[nc++] = (int)(mu - g->nodes);
            cur = mu->out[0];
        }
    }
    node_t *ab = sole_user(f, cur);
    if (ab && cur != g->output && is_op(ab, "Add")) {
        int c = other_input(ab, cur);
        if (c >= 0 && layernorm_param_fits(gval(g, c), xv, a0, a1, NULL)) {
            bias = c;
            chain[nc++] = (int)(ab - g->nodes);
            cur = ab->out[0];
        }
    }
    /* every intermediate value is used inside the chain only */
    for (int k = 0; k < nc; k++) {
        int o = g->nodes[chain[k]].out[0];
        if (o != cur && o == g->output) return ENG_OK;
    }
    attr_t *at = attrs_new(3);
    if (!at || attr_set_int(&at[0], "axis", a0) || attr_set_float(&at[1], "epsilon", (float)eps) ||
        attr_set_int(&at[2], "_last_axis", a1)) {
        if (at) attrs_free(at, 3);
        return eng_errf(err, ENG_ENOMEM, "out of memory");
    }
    int ins[3] = {x, scale, bias};
    return rewrite(f, chain[nc - 1], chain, nc, "LayerNormalization", ins, 3, at, 3, err);
}

/* ---- element-wise functions (GELU, Mish) -------------------------------------------------------- */
static const char *const EW_OPS[] = {"Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Log", "Neg", "Reciprocal",
                                     "Erf", "Tanh", "Sigmoid", "Softplus"};

static int ew_allowed(const node_t *n)
{
    if (n->dead || n->n_out < 1) return 0;
    for (size_t k = 0; k < sizeof EW_OPS / sizeof EW_OPS[0]; k++)
        if (!strcmp(n->op_type, EW_OPS[k])) return n->n_in == (k < 5 ? 2 : 1);
    return 0;
}

typedef struct {
    int nodes[MAX_CHAIN];
    int n;
} region_t;

static int region_has(const region_t *r, int i)
{
    for (int k = 0; k < r->n; k++)
        if (r->nodes[k] == i) return 1;
    return 0;
}

/* the nodes between x and root; 0 if another activation or a non-scalar constant feeds them */
static int region_grow(const fz_t *f, region_t *r, int i, int x)
{
    const graph_t *g = f->g;
    if (region_has(r, i)) return 1;
    const node_t *n = &g->nodes[i];
    if (r->n == MAX_CHAIN || !ew_allowed(n)) return 0;
    r->nodes[r->n++] = i;
    for (int k = 0; k < n->n_in; k++) {
        int v = n->in[k];
        double s;
        if (v < 0) return 0;
        if (v == x || scalar_of(g, v, &s)) continue;
        const node_t *p = prod(f, v);
        if (!p || !region_grow(f, r, (int)(p - g->nodes), x)) return 0;
    }
    return 1;
}

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/* evaluate the region (nodes in topological order) at the probe points */
static int region_eval(const fz_t *f, const region_t *r, int x, const double *px, double *out)
{
    const graph_t *g = f->g;
    double val[MAX_CHAIN][N_PROBE];
    for (int k = 0; k < r->n; k++) {
        const node_t *n = &g->nodes[r->nodes[k]];
        const double *a[2] = {NULL, NULL};
        double sc[2];
        for (int q = 0; q < n->n_in; q++) {
            int v = n->in[q];
            if (v == x) a[q] = px;
            else if (scalar_of(g, v, &sc[q])) a[q] = NULL;
            else {
                for (int j = 0; j < k; j++)
                    if (g->nodes[r->nodes[j]].out[0] == v) a[q] = val[j];
                if (!a[q]) return 0;
            }
        }
        for (int p = 0; p < N_PROBE; p++) {
            double u = a[0] ? a[0][p] : sc[0], w = n->n_in > 1 ? (a[1] ? a[1][p] : sc[1]) : 0, y;
            const char *t = n->op_type;
            if (!strcmp(t, "Add")) y = u + w;
            else if (!strcmp(t, "Sub")) y = u - w;
            else if (!strcmp(t, "Mul")) y = u * w;
            else if (!strcmp(t, "Div")) y = u / w;
            else if (!strcmp(t, "Pow")) y = pow(u, w);
            else if (!strcmp(t, "Sqrt")) y = sqrt(u);
            else if (!strcmp(t, "Exp")) y = exp(u);
            else if (!strcmp(t, "Log")) y = log(u);
            else if (!strcmp(t, "Neg")) y = -u;
            else if (!strcmp(t, "Reciprocal")) y = 1 / u;
            else if (!strcmp(t, "Erf")) y = erf(u);
            else if (!strcmp(t, "Tanh")) y = tanh(u);
            else if (!strcmp(t, "Sigmoid")) y = 1 / (1 + exp(-u));
            else y = log1p(exp(u)); /* Softplus */
            val[k][p] = y;
        }
    }
    memcpy(out, val[r->n - 1], sizeof(double) * N_PROBE);
    return 1;
}

enum { F_GELU, F_GELU_TANH, F_MISH, F_COUNT };
static double target(int fn, double x)
{
    switch (fn) {
    case F_GELU: return 0.5 * x * (1 + erf(x * M_SQRT1_2));
    case F_GELU_TANH: return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    default: return x * tanh(log1p(exp(x)));
    }
}

/* Is the region between x and root one of the functions? Returns its index or -1. */
static int region_match(const fz_t *f, int anchor, int x, int root, region_t *r)
{
    const graph_t *g = f->g;
    r->n = 0;
    if (!region_grow(f, r, root, x) || !region_has(r, anchor)) return -1;
    /* x is used, intermediate values stay inside, the shape is x's */
    int used = 0;
    for (int k = 0; k < r->n; k++) {
        const node_t *n = &g->nodes[r->nodes[k]];
        for (int q = 0; q < n->n_in; q++) used |= n->in[q] == x;
        if (r->nodes[k] == root) continue;
        int o = n->out[0], inside = 0;
        if (o == g->output) return -1;
        for (int j = 0; j < r->n; j++) {
            const node_t *m = &g->nodes[r->nodes[j]];
            for (int q = 0; q < m->n_in; q++) inside += m->in[q] == o;
        }
        if (inside != f->uses[o]) return -1;
    }
    const value_t *xv = gval(g, x), *yv = nout(g, &g->nodes[root]);
    if (!used || xv->rank != yv->rank || memcmp(xv->dims, yv->dims, sizeof(int64_t) * (size_t)xv->rank)) return -1;
    qsort(r->nodes, (size_t)r->n, sizeof(int), cmp_int);
    double px[N_PROBE], y[N_PROBE];
    for (int p = 0; p < N_PROBE; p++) px[p] = -6.0 + 12.0 * p / (N_PROBE - 1);
    if (!region_eval(f, r, x, px, y)) return -1;
    for (int fn = 0; fn < F_COUNT; fn++) {
        int ok = 1;
        for (int p = 0; p < N_PROBE && ok; p++) {
            double t = target(fn, px[p]);
            ok = fabs(y[p] - t) <= 1e-5 * (1 + fabs(t)); /* false for NaN */
        }
        if (ok) return fn;
    }
    return -1;
}

static int try_elementwise(fz_t *f, int ti, eng_err_t *err)
{
    graph_t *g = f->g;
    /* candidate inputs: activations reached backwards from the anchor through element-wise nodes */
    int xs[16], nx = 0, head = 0;
    if (g->nodes[ti].n_in != 1 || g->nodes[ti].in[0] < 0) return ENG_OK;
    xs[nx++] = g->nodes[ti].in[0];
    while (head < nx && nx < 16) {
        const node_t *p = prod(f, xs[head++]);
        if (!p || !ew_allowed(p)) continue;
        for (int k = 0; k < p->n_in && nx < 16; k++) {
            int v = p->in[k], dup = 0;
            if (v < 0 || gval(g, v)->is_const) continue;
            for (int j = 0; j < nx; j++) dup |= xs[j] == v;
            if (!dup) xs[nx++] = v;
        }
    }
    /* candidate roots: the anchor and its chain of sole element-wise consumers */
    int roots[10], nr = 0, cur = ti;
    for (;;) {
        roots[nr++] = cur;
        int o = g->nodes[cur].out[0];
        node_t *u = o == g->output ? NULL : sole_user(f, o);
        if (!u || !ew_allowed(u) || nr == 10) break;
        cur = (int)(u - g->nodes);
    }
    region_t r;
    for (int k = nr - 1; k >= 0; k--)
        for (int j = 0; j < nx; j++) {
            int fn = region_match(f, ti, xs[j], roots[k], &r);
            if (fn < 0) continue;
            attr_t *at = NULL;
            int nat = 0;
            if (fn != F_MISH) {
                at = attrs_new(1);
                nat = 1;
                if (!at || attr_set_str(&at[0], "approximate", fn == F_GELU ? "none" : "tanh")) {
                    if (at) attrs_free(at, 1);
                    return eng_errf(err, ENG_ENOMEM, "out of memory");
                }
            }
            return rewrite(f, roots[k], r.nodes, r.n, fn == F_MISH ? "Mish" : "Gelu", &xs[j], 1, at, nat, err);
        }
    return ENG_OK;
}

int graph_fuse(graph_t *g, eng_err_t *err)
{
    fz_t f = {.g = g};
    f.uses = calloc((size_t)g->n_values + 1, sizeof(int));
    f.user = calloc((size_t)g->n_values + 1, sizeof(int));
    if (!f.uses || !f.user) {
        free(f.uses);
        free(f.user);
        return eng_errf(err, ENG_ENOMEM, "out of memory");
    }
    count_uses(&f);
    int rc = ENG_OK;
    for (int i = 0; i < g->n_nodes && !rc; i++)
        if (is_op(&g->nodes[i], "ReduceMean")) rc = try_layernorm(&f, i, err);
    for (int i = 0; i < g->n_nodes && !rc; i++)
        if (is_op(&g->nodes[i], "Erf") || is_op(&g->nodes[i], "Tanh")) rc = try_elementwise(&f, i, err);
    free(f.uses);
    free(f.user);
    return rc;
}
