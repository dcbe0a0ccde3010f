/* split.c — load-time rewrite of Split into one Slice per output.
 *
 * The executor plans one buffer per node output and every op has one activation output, so
 *   Split(x, axis) -> o_0 .. o_{k-1}
 * becomes k nodes  Slice(x, starts = [b_j], ends = [b_j + s_j], axes = [axis]) -> o_j  (b_j = s_0 + ...
 * + s_{j-1}), written in the model's own opset (attributes before 10, constant inputs from 10) so
 * engine/ops/slice.c runs them as any other Slice, backward included: x's gradient is the sum of the
 * slices' scatters. The first Slice keeps the Split's name (and node index); the others are named
 * "<split>:<output index>" and inserted right after it, so graph_fold_constants, which calls this
 * when it reaches the Split (its input's shape is known by then), meets them next, in order.
 * A Split of a constant becomes Slices of a constant, which fold like any other.
 *
 * Split sizes by opset: the `split` attribute (< 13) or input (>= 13); `num_outputs` (18): chunks of
 * ceil(d / k), the last one smaller; neither: k equal parts (d must divide). Empty outputs are
 * dropped when nothing uses them. Splitting along axis 0 would divide the batch and is refused.
 */
#include "graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int value_used(const graph_t *g, int v)
{
    if (v == g->output) return 1;
    for (int i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].dead) continue;
        for (int k = 0; k < g->nodes[i].n_in; k++)
            if (g->nodes[i].in[k] == v) return 1;
    }
    return 0;
}

/* A new 1-element int64 constant; returns its id or -1. */
static int add_i64(graph_t *g, const char *base, const char *what, int j, int64_t val)
{
    char nm[600];
    snprintf(nm, sizeof nm, "%s:%s:%d", base, what, j);
    int id = graph_add_value(g, nm);
    if (id < 0) return -1;
    value_t *v = &g->values[id];
    v->i64 = malloc(sizeof(int64_t));
    if (!v->i64) return -1;
    v->i64[0] = val;
    v->is_const = 1;
    v->dtype = DT_INT64;
    int64_t one = 1;
    value_set_shape(v, 1, &one);
    v->size = 1;
    return id;
}

static int set_ints_attr(attr_t *a, const char *name, int64_t val)
{
    a->name = strdup(name);
    a->type = AT_INTS;
    a->n = 1;
    a->tensor = -1;
    a->ints = malloc(sizeof(int64_t));
    if (!a->name || !a->ints) return -1;
    a->ints[0] = val;
    return 0;
}

static void free_node_fields(node_t *d)
{
    free(d->name); free(d->op_type); free(d->display); free(d->in); free(d->out); free(d->p);
    for (int k = 0; k < d->n_attr; k++) {
        free(d->attr[k].name); free(d->attr[k].s); free(d->attr[k].ints); free(d->attr[k].floats);
    }
    free(d->attr);
    memset(d, 0, sizeof *d);
}

/* The sizes of the k outputs along an axis of length d (written to sz). */
static int split_sizes(graph_t *g, node_t *n, int64_t d, int k, int64_t *sz, eng_err_t *err)
{
    int given = -1; /* count of explicit sizes, -1 none */
    if (g->opset < 13) {
        const attr_t *a = attr_get(n, "split");
        if (a && a->type == AT_INTS) {
            given = a->n;
            if (given == k) memcpy(sz, a->ints, sizeof(int64_t) * (size_t)k);
        }
    } else if (n->n_in > 1 && n->in[1] >= 0) {
        const value_t *s = nin(g, n, 1);
        if (!s->is_const || s->dtype != DT_INT64 || s->rank != 1)
            return node_err(g, n, err, ENG_EUNSUPPORTED, "the split input must be a 1-D int64 constant");
        given = (int)s->size;
        if (given == k) memcpy(sz, s->i64, sizeof(int64_t) * (size_t)k);
    }
    const attr_t *no = g->opset >= 18 ? attr_get(n, "num_outputs") : NULL;
    if (given >= 0) {
        if (no) return node_err(g, n, err, ENG_EFORMAT, "both split and num_outputs are given");
        if (given != k) return node_err(g, n, err, ENG_EFORMAT, "split has %d sizes for %d outputs", given, k);
        int64_t sum = 0;
        for (int j = 0; j < k; j++) {
            if (sz[j] < 0 || sz[j] > d) return node_err(g, n, err, ENG_EFORMAT, "split size %lld", (long long)sz[j]);
            sum += sz[j];
        }
        if (sum != d)
            return node_err(g, n, err, ENG_EFORMAT, "the split sizes add up to %lld, not the axis length %lld",
                            (long long)sum, (long long)d);
        return ENG_OK;
    }
    if (no) {
        if (no->type != AT_INT || no->i != k)
            return node_err(g, n, err, ENG_EFORMAT, "num_outputs is %lld but the node has %d outputs",
                            no->type == AT_INT ? (long long)no->i : -1LL, k);
        int64_t c = (d + k - 1) / k;
        if (c * (k - 1) >= d)
            return node_err(g, n, err, ENG_EFORMAT, "an axis of length %lld cannot be split into %d chunks of %lld",
                            (long long)d, k, (long long)c);
        for (int j = 0; j < k; j++) sz[j] = j < k - 1 ? c : d - c * (k - 1);
        return ENG_OK;
    }
    if (d % k)
        return node_err(g, n, err, ENG_EFORMAT, "an axis of length %lld does not split into %d equal parts", (long long)d, k);
    for (int j = 0; j < k; j++) sz[j] = d / k;
    return ENG_OK;
}

int graph_split_to_slices(graph_t *g, int i, eng_err_t *err)
{
    node_t *n = &g->nodes[i];
    if (n->n_in < 1 || n->in[0] < 0) return node_err(g, n, err, ENG_EFORMAT, "the input is missing");
    const int xid = n->in[0];
    const value_t *x = gval(g, xid);
    if (x->rank < 1) return node_err(g, n, err, ENG_EFORMAT, "the input '%s' has no known shape", x->name);
    const int r = x->rank, k = n->n_out, opset = g->opset;
    int64_t a = attr_int(n, "axis", 0);
    if (a < -r || a >= r) return node_err(g, n, err, ENG_EFORMAT, "axis %lld out of range for rank %d", (long long)a, r);
    const int axis = (int)(a < 0 ? a + r : a);
    if (axis == 0 && !x->is_const)
        return node_err(g, n, err, ENG_EUNSUPPORTED, "splitting along axis 0 would divide the images of a batch");
    if (k < 1) return node_err(g, n, err, ENG_EFORMAT, "no outputs");
    int64_t *sz = calloc((size_t)k, sizeof *sz);
    int *keep = calloc((size_t)k, sizeof *keep);
    node_t *nn = calloc((size_t)k, sizeof *nn);
    int rc = (!sz || !keep || !nn) ? node_err(g, n, err, ENG_ENOMEM, "out of memory") : ENG_OK;
    if (!rc) rc = split_sizes(g, n, x->dims[axis], k, sz, err);
    int m = 0; /* Slices to create */
    for (int j = 0; j < k && !rc; j++) {
        if (n->out[j] < 0) continue;
        if (sz[j] == 0) {
            if (value_used(g, n->out[j]))
                rc = node_err(g, n, err, ENG_EUNSUPPORTED, "output %d ('%s') is empty but used", j, gval(g, n->out[j])->name);
            continue;
        }
        keep[j] = 1;
        m++;
    }
    /* build the Slice nodes aside, then insert them; on failure the graph is unchanged */
    int64_t begin = 0;
    int made = 0;
    for (int j = 0; j < k && !rc; begin += sz[j], j++) {
        if (!keep[j]) continue;
        node_t *s = &nn[made++];
        const char *base = g->nodes[i].name;
        char nm[600];
        snprintf(nm, sizeof nm, "%s:%d", base, j);
        s->name = strdup(made == 1 ? base : nm);
        s->op_type = strdup("Slice");
        s->display = strdup("Split");
        s->w_in = s->b_in = -1;
        s->n_out = 1;
        s->out = malloc(sizeof(int));
        s->n_in = opset < 10 ? 1 : 4;
        s->in = malloc(sizeof(int) * (size_t)s->n_in);
        if (!s->name || !s->op_type || !s->display || !s->out || !s->in) {
            rc = eng_errf(err, ENG_ENOMEM, "out of memory");
            break;
        }
        s->out[0] = g->nodes[i].out[j];
        s->in[0] = xid;
        if (opset < 10) {
            s->attr = calloc(3, sizeof(attr_t));
            if (!s->attr) { rc = eng_errf(err, ENG_ENOMEM, "out of memory"); break; }
            s->n_attr = 3;
            if (set_ints_attr(&s->attr[0], "starts", begin) || set_ints_attr(&s->attr[1], "ends", begin + sz[j]) ||
                set_ints_attr(&s->attr[2], "axes", axis))
                rc = eng_errf(err, ENG_ENOMEM, "out of memory");
        } else {
            s->in[1] = add_i64(g, base, "starts", j, begin);
            s->in[2] = add_i64(g, base, "ends", j, begin + sz[j]);
            s->in[3] = add_i64(g, base, "axes", j, axis);
            if (s->in[1] < 0 || s->in[2] < 0 || s->in[3] < 0) rc = eng_errf(err, ENG_ENOMEM, "out of memory");
        }
    }
    if (!rc && m > 1 && g->n_nodes + m - 1 > g->cap_nodes) {
        node_t *grown = realloc(g->nodes, sizeof(node_t) * (size_t)(g->n_nodes + m - 1));
        if (!grown) rc = eng_errf(err, ENG_ENOMEM, "out of memory");
        else {
            g->nodes = grown;
            g->cap_nodes = g->n_nodes + m - 1;
        }
    }
    if (rc) {
        for (int j = 0; j < made; j++) free_node_fields(&nn[j]);
        free(nn); free(sz); free(keep);
        return rc;
    }
    for (int v = 0; v < g->n_values; v++) /* outputs of the nodes after i move down by m - 1 */
        if (g->values[v].producer > i && m > 1) g->values[v].producer += m - 1;
    if (m == 0) {
        g->nodes[i].dead = 1; /* no output is used: the node stays, dead, until compaction */
    } else {
        free_node_fields(&g->nodes[i]);
        memmove(&g->nodes[i + m], &g->nodes[i + 1], sizeof(node_t) * (size_t)(g->n_nodes - i - 1));
        g->n_nodes += m - 1;
        for (int j = 0; j < m; j++) {
            g->nodes[i + j] = nn[j];
            g->values[nn[j].out[0]].producer = i + j;
        }
    }
    free(nn); free(sz); free(keep);
    return ENG_OK;
}
