/* graph.c — graph helpers, the finalize pass (prune, topological order, shape inference through
 * each op's init) and the public introspection API of engine.h. */
#include "graph.h"
#include "par.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cblas.h>

/* ---- small helpers ---------------------------------------------------------------------------- */
size_t shape_size(int rank, const int64_t *dims)
{
    size_t s = 1;
    for (int i = 0; i < rank; i++) s *= (size_t)dims[i];
    return s;
}

void value_set_shape(value_t *v, int rank, const int64_t *dims)
{
    v->rank = rank;
    for (int i = 0; i < rank; i++) v->dims[i] = dims[i];
    for (int i = rank; i < ENG_MAX_RANK; i++) v->dims[i] = 0;
}

const attr_t *attr_get(const node_t *n, const char *name)
{
    for (int i = 0; i < n->n_attr; i++)
        if (!strcmp(n->attr[i].name, name)) return &n->attr[i];
    return NULL;
}

int64_t attr_int(const node_t *n, const char *name, int64_t dflt)
{
    const attr_t *a = attr_get(n, name);
    return a && a->type == AT_INT ? a->i : dflt;
}

float attr_float(const node_t *n, const char *name, float dflt)
{
    const attr_t *a = attr_get(n, name);
    if (!a) return dflt;
    if (a->type == AT_FLOAT) return a->f;
    if (a->type == AT_INT) return (float)a->i;
    return dflt;
}

const char *attr_str(const node_t *n, const char *name, const char *dflt)
{
    const attr_t *a = attr_get(n, name);
    return a && a->type == AT_STRING ? a->s : dflt;
}

int attr_ints(const node_t *n, const char *name, int64_t *out, int max)
{
    const attr_t *a = attr_get(n, name);
    if (!a || a->type != AT_INTS) return -1;
    int k = a->n < max ? a->n : max;
    for (int i = 0; i < k; i++) out[i] = a->ints[i];
    return a->n;
}

int node_err(const graph_t *g, const node_t *n, eng_err_t *err, int status, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return eng_errf(err, status, "node '%s' (%s, opset %d): %s", n->name, n->op_type, g->opset, msg);
}

int node_need_const(const graph_t *g, const node_t *n, int i, eng_err_t *err)
{
    if (i >= n->n_in || n->in[i] < 0) return node_err(g, n, err, ENG_EFORMAT, "input %d is missing", i);
    const value_t *v = nin(g, n, i);
    if (!v->is_const)
        return node_err(g, n, err, ENG_EUNSUPPORTED, "input %d ('%s') must be a constant (initializer)", i, v->name);
    if (v->dtype != DT_FLOAT) return node_err(g, n, err, ENG_EUNSUPPORTED, "input %d ('%s') must be float", i, v->name);
    return ENG_OK;
}

int node_need_act(const graph_t *g, const node_t *n, int i, eng_err_t *err)
{
    if (i >= n->n_in || n->in[i] < 0) return node_err(g, n, err, ENG_EFORMAT, "input %d is missing", i);
    const value_t *v = nin(g, n, i);
    if (v->is_const)
        return node_err(g, n, err, ENG_EUNSUPPORTED, "input %d ('%s') is a constant where an activation was expected",
                        i, v->name);
    return ENG_OK;
}

/* Splitting a GEMM over a team. Each thread computes a block of C's columns with its own
 * one-thread cblas_sgemm call, so OpenBLAS's global lock is never taken. The split must not change
 * a bit: OpenBLAS (SkylakeX kernels, 0.3.21) computes C in tiles of 16 columns of row-major C (its
 * UNROLL_M in the column-major view) with the same K blocking whatever N is, so slices that start
 * at multiples of 16 columns round every element as the whole call does. Calls of at most 100^3
 * multiply-adds take other kernels (the "small matrix" and "direct" paths), whose tiles differ;
 * so a call is split only when every slice stays well above that size. tests/unit/test_par.c checks
 * split == unsplit bitwise over the convolution shapes of resnet50 and vgg16, both transposes. */
#define SGEMM_SPLIT_COLS 16
#define SGEMM_SLICE_MIN_MNK (4.0 * 1000 * 1000) /* multiply-adds per slice; the small paths end at 1e6 */

typedef struct {
    int trans_a, trans_b, M, N, K, lda, ldb, ldc, parts, blocks;
    float alpha, beta;
    const float *A, *B;
    float *C;
} sgemm_job_t;

static void sgemm_call(const sgemm_job_t *j, int n0, int n1)
{
    const float *B = j->trans_b ? j->B + (size_t)n0 * j->ldb : j->B + n0;
    cblas_sgemm(CblasRowMajor, j->trans_a ? CblasTrans : CblasNoTrans, j->trans_b ? CblasTrans : CblasNoTrans, j->M,
                n1 - n0, j->K, j->alpha, j->A, j->lda, B, j->ldb, j->beta, j->C + n0, j->ldc);
}

static void sgemm_part(void *ctx, int lo, int hi, int tid)
{
    (void)tid;
    const sgemm_job_t *j = ctx;
    for (int p = lo; p < hi; p++) {
        int n0 = (int)((int64_t)j->blocks * p / j->parts) * SGEMM_SPLIT_COLS;
        int n1 = p == j->parts - 1 ? j->N : (int)((int64_t)j->blocks * (p + 1) / j->parts) * SGEMM_SPLIT_COLS;
        sgemm_call(j, n0, n1);
    }
}

/* Whole blocks of 16 columns; the last slice also takes the N % 16 columns after them, so no slice
 * is narrower than a block (a 1-column slice of a 49-column call took another kernel and differed). */
int eng_sgemm_parts(int M, int N, int K, int threads)
{
    const int blocks = N / SGEMM_SPLIT_COLS;
    int parts = threads < blocks ? threads : blocks;
    /* the narrowest slice has blocks / parts (rounded down) whole blocks */
    while (parts > 1 && (double)M * K * (blocks / parts) * SGEMM_SPLIT_COLS < SGEMM_SLICE_MIN_MNK) parts--;
    return parts < 1 ? 1 : parts;
}

void eng_sgemm(par_team_t *team, int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc)
{
    sgemm_job_t j = {.trans_a = trans_a, .trans_b = trans_b, .M = M, .N = N, .K = K, .lda = lda, .ldb = ldb, .ldc = ldc,
                     .alpha = alpha, .beta = beta, .A = A, .B = B, .C = C};
    /* two slices per thread: par_for balances them when a thread is slow (its core is shared) */
    j.parts = par_team_active(team) > 1 ? eng_sgemm_parts(M, N, K, 2 * par_team_active(team)) : 1;
    if (j.parts <= 1) {
        sgemm_call(&j, 0, N);
        return;
    }
    j.blocks = N / SGEMM_SPLIT_COLS;
    par_for(team, j.parts, sgemm_part, &j);
}

void eng_set_blas_threads(int n) { openblas_set_num_threads(n < 1 ? 1 : n); }

/* ---- finalize ----------------------------------------------------------------------------------- */
/* Kahn's algorithm over live nodes; rewrites g->nodes in topological order. Among the nodes that are
 * ready, the one first in file order goes first (a min-heap of node indices), so a graph already in
 * order keeps it. O((nodes + edges) log nodes): each value's consumers are listed once (CSR), and
 * finishing a node touches only the consumers of its outputs (a 100,000-node graph used to take
 * over 30 s here, with a scan of every node per output). */
static void heap_push(int *h, int *n, int v)
{
    int i = (*n)++;
    while (i > 0 && h[(i - 1) / 2] > v) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = v;
}

static int heap_pop(int *h, int *n)
{
    int top = h[0], v = h[--*n], i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1] < h[c]) c++;
        if (h[c] >= v) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = v;
    return top;
}

int graph_topo_sort(graph_t *g, eng_err_t *err)
{
    int n = g->n_nodes, nv = g->n_values;
    int *indeg = calloc((size_t)n + 1, sizeof(int)), *order = malloc(sizeof(int) * ((size_t)n + 1));
    int *ready = malloc(sizeof(int) * ((size_t)n + 1));
    int *first = calloc((size_t)nv + 2, sizeof(int)); /* CSR: consumers of value v at first[v]..first[v+1] */
    size_t n_edges = 0;
    for (int i = 0; i < n; i++)
        if (!g->nodes[i].dead) n_edges += (size_t)g->nodes[i].n_in;
    int *cons = malloc(sizeof(int) * (n_edges + 1));
    if (!indeg || !order || !ready || !first || !cons) {
        free(indeg); free(order); free(ready); free(first); free(cons);
        return eng_errf(err, ENG_ENOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        if (g->nodes[i].dead) continue;
        for (int k = 0; k < g->nodes[i].n_in; k++) {
            int v = g->nodes[i].in[k];
            if (v < 0) continue;
            first[v + 1]++;
            if (g->values[v].producer >= 0 && !g->nodes[g->values[v].producer].dead) indeg[i]++;
        }
    }
    for (int v = 0; v < nv; v++) first[v + 1] += first[v];
    int *fill = calloc((size_t)nv + 1, sizeof(int));
    if (!fill) {
        free(indeg); free(order); free(ready); free(first); free(cons);
        return eng_errf(err, ENG_ENOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        if (g->nodes[i].dead) continue;
        for (int k = 0; k < g->nodes[i].n_in; k++) {
            int v = g->nodes[i].in[k];
            if (v >= 0) cons[first[v] + fill[v]++] = i;
        }
    }
    free(fill);
    int cnt = 0, live = 0, n_ready = 0;
    for (int i = 0; i < n; i++) {
        if (g->nodes[i].dead) continue;
        live++;
        if (!indeg[i]) heap_push(ready, &n_ready, i);
    }
    while (n_ready) {
        int i = heap_pop(ready, &n_ready);
        order[cnt++] = i;
        for (int o = 0; o < g->nodes[i].n_out; o++) {
            int v = g->nodes[i].out[o];
            if (v < 0) continue;
            for (int e = first[v]; e < first[v + 1]; e++)
                if (!--indeg[cons[e]]) heap_push(ready, &n_ready, cons[e]);
        }
    }
    free(ready);
    free(indeg);
    free(first);
    free(cons);
    if (cnt != live) {
        free(order);
        return eng_errf(err, ENG_EFORMAT, "the graph has a cycle");
    }
    node_t *nn = malloc(sizeof(node_t) * ((size_t)cnt + 1));
    if (!nn) {
        free(order);
        return eng_errf(err, ENG_ENOMEM, "out of memory");
    }
    for (int i = 0; i < cnt; i++) nn[i] = g->nodes[order[i]];
    /* free the dead nodes' storage */
    for (int i = 0; i < n; i++) {
        node_t *d = &g->nodes[i];
        if (!d->dead) continue;
        free(d->name); free(d->op_type); free(d->display); free(d->in); free(d->out); free(d->p);
        for (int k = 0; k < d->n_attr; k++) {
            free(d->attr[k].name); free(d->attr[k].s); free(d->attr[k].ints); free(d->attr[k].floats);
        }
        free(d->attr);
    }
    free(g->nodes);
    g->nodes = nn;
    g->n_nodes = g->cap_nodes = cnt;
    free(order);
    for (int v = 0; v < g->n_values; v++) g->values[v].producer = -1;
    for (int i = 0; i < cnt; i++)
        for (int o = 0; o < nn[i].n_out; o++)
            if (nn[i].out[o] >= 0) g->values[nn[i].out[o]].producer = i;
    return ENG_OK;
}

/* Mark nodes that the output does not depend on as dead. */
static void prune(graph_t *g)
{
    char *need = calloc((size_t)g->n_values + 1, 1);
    if (!need) return;
    need[g->output] = 1;
    for (int i = g->n_nodes - 1; i >= 0; i--) { /* nodes are topologically ordered here */
        node_t *n = &g->nodes[i];
        if (n->dead) continue;
        int used = 0;
        for (int o = 0; o < n->n_out; o++) used |= n->out[o] >= 0 && need[n->out[o]];
        if (!used) {
            n->dead = 1;
            continue;
        }
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0) need[n->in[k]] = 1;
    }
    free(need);
}

int graph_init_node(graph_t *g, int i, eng_err_t *err)
{
    node_t *n = &g->nodes[i];
    free(n->p);
    n->p = NULL;
    n->scratch_fixed = n->scratch_per_image = n->aux_per_image = 0;
    n->flops = 0;
    n->params = 0;
    n->w_in = n->b_in = -1;
    n->op = op_find(n->op_type);
    if (!n->op) return node_err(g, n, err, ENG_EUNSUPPORTED, "op type '%s' is not supported", n->op_type);
    if ((n->op->opset_min && g->opset < n->op->opset_min) || (n->op->opset_max && g->opset > n->op->opset_max))
    {
        if (!n->op->opset_max)
            return node_err(g, n, err, ENG_EUNSUPPORTED, "%s is implemented from opset %d on", n->op_type,
                            n->op->opset_min);
        return node_err(g, n, err, ENG_EUNSUPPORTED, "%s is implemented for opsets %d..%d only", n->op_type,
                        n->op->opset_min, n->op->opset_max);
    }
    for (int k = 0; k < n->n_in; k++) {
        int v = n->in[k];
        if (v < 0) continue;
        const value_t *iv = &g->values[v];
        if (!iv->is_const && iv->rank == 0 && v != g->input)
            return node_err(g, n, err, ENG_EFORMAT, "input '%s' has no known shape", iv->name);
    }
    for (int o = 1; o < n->n_out; o++) {
        int v = n->out[o];
        if (v >= 0 && g->values[v].n_consumers)
            return node_err(g, n, err, ENG_EUNSUPPORTED, "only the first output is supported, but '%s' is used",
                            g->values[v].name);
    }
    int rc = n->op->init(g, n, err);
    if (rc) return rc;
    value_t *ov = nout(g, n);
    ov->is_const = 0;
    if (ov->rank < 1 || ov->dims[0] != 1)
        return node_err(g, n, err, ENG_EUNSUPPORTED,
                        "the output must keep the batch as its first dimension (got rank %d, first dim %lld)", ov->rank,
                        ov->rank ? (long long)ov->dims[0] : 0LL);
    ov->size = shape_size(ov->rank, ov->dims);
    return ENG_OK;
}

static void count_consumers(graph_t *g)
{
    for (int v = 0; v < g->n_values; v++) g->values[v].n_consumers = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].dead) continue;
        for (int k = 0; k < g->nodes[i].n_in; k++)
            if (g->nodes[i].in[k] >= 0) g->values[g->nodes[i].in[k]].n_consumers++;
    }
}

int graph_finalize(graph_t *g, eng_err_t *err)
{
    if (g->output < 0 || g->values[g->output].is_const)
        return eng_errf(err, ENG_EFORMAT, "the graph output does not depend on the input");
    int rc = graph_topo_sort(g, err);
    if (rc) return rc;
    prune(g);
    rc = graph_topo_sort(g, err); /* compacts the dead away */
    if (rc) return rc;
    count_consumers(g);
    for (int i = 0; i < g->n_nodes; i++) {
        rc = graph_init_node(g, i, err);
        if (rc) return rc;
    }
    /* a final Softmax (or LogSoftmax) turns logits into (log-)probabilities: explain the logits, as
     * users expect */
    int p = g->values[g->output].producer;
    g->logits_from_softmax = 0;
    if (p >= 0 && (!strcmp(g->nodes[p].op_type, "Softmax") || !strcmp(g->nodes[p].op_type, "LogSoftmax")) &&
        g->nodes[p].n_in >= 1) {
        g->output = g->nodes[p].in[0];
        g->logits_from_softmax = 1;
        prune(g);
        rc = graph_topo_sort(g, err);
        if (rc) return rc;
        count_consumers(g);
    }
    const value_t *ov = &g->values[g->output];
    if (ov->rank != 2)
        return eng_errf(err, ENG_EUNSUPPORTED, "the graph output '%s' has rank %d; expected class scores (N, classes)",
                        ov->name, ov->rank);
    return ENG_OK;
}

/* ---- public introspection ------------------------------------------------------------------------ */
int graph_add_alias(graph_t *g, const char *name, int value)
{
    if (g->n_aliases == g->cap_aliases) { /* doubling: a graph of 100,000 Identity nodes adds 200,000 */
        int nc = g->cap_aliases ? 2 * g->cap_aliases : 16;
        alias_t *na = realloc(g->aliases, sizeof(alias_t) * (size_t)nc);
        if (!na) return -1;
        g->aliases = na;
        g->cap_aliases = nc;
    }
    alias_t *na = g->aliases;
    na[g->n_aliases].name = strdup(name);
    na[g->n_aliases].value = value;
    g->n_aliases++;
    return 0;
}

int graph_n_nodes(const graph_t *g) { return g->n_nodes; }
int graph_n_values(const graph_t *g) { return g->n_values; }
int graph_input_value(const graph_t *g) { return g->input; }
int graph_output_value(const graph_t *g) { return g->output; }
int graph_opset(const graph_t *g) { return g->opset; }

void graph_node_info(const graph_t *g, int i, node_info_t *o)
{
    const node_t *n = &g->nodes[i];
    o->name = n->name;
    o->op = n->display;
    o->out_value = n->out[0];
    o->params = n->params;
    o->flops = n->flops;
}

void graph_value_info(const graph_t *g, int v, value_info_t *o)
{
    const value_t *x = &g->values[v];
    o->name = x->name;
    o->rank = x->rank;
    memcpy(o->dims, x->dims, sizeof o->dims);
    o->size = x->size;
    o->is_const = x->is_const;
    o->producer = x->producer;
}

int graph_find_node(const graph_t *g, const char *name)
{
    if (!name) return -1;
    for (int i = 0; i < g->n_nodes; i++)
        if (!strcmp(g->nodes[i].name, name)) return i;
    for (int i = 0; i < g->n_nodes; i++)
        if (!strcmp(g->values[g->nodes[i].out[0]].name, name)) return i;
    for (int i = 0; i < g->n_aliases; i++)
        if (!strcmp(g->aliases[i].name, name)) return g->values[g->aliases[i].value].producer;
    return -1;
}

int graph_find_value(const graph_t *g, const char *name)
{
    if (!name || !*name) return -1;
    for (int i = 0; i < g->n_nodes; i++)
        if (!strcmp(g->nodes[i].name, name)) return g->nodes[i].out[0];
    for (int v = 0; v < g->n_values; v++) {
        const value_t *x = &g->values[v];
        if (!x->is_const && (x->producer >= 0 || v == g->input) && !strcmp(x->name, name)) return v;
    }
    for (int i = 0; i < g->n_aliases; i++)
        if (!strcmp(g->aliases[i].name, name)) return g->aliases[i].value;
    return -1;
}

int64_t graph_total_params(const graph_t *g)
{
    int64_t s = 0;
    for (int i = 0; i < g->n_nodes; i++) s += g->nodes[i].params;
    return s;
}

double graph_total_flops(const graph_t *g)
{
    double s = 0;
    for (int i = 0; i < g->n_nodes; i++) s += g->nodes[i].flops;
    return s;
}

static int is_global_pool(const graph_t *g, const node_t *n)
{
    if (!strcmp(n->op_type, "GlobalAveragePool") || !strcmp(n->op_type, "GlobalMaxPool")) return 1;
    if (!strcmp(n->op_type, "ReduceMean") || !strcmp(n->op_type, "ReduceMax")) {
        int64_t ax[ENG_MAX_RANK];
        int na = reduce_axes(g, n, ax, ENG_MAX_RANK);
        const value_t *iv = nin(g, n, 0);
        if (na == 2 && iv->rank == 4) {
            int a0 = (int)(ax[0] < 0 ? ax[0] + 4 : ax[0]), a1 = (int)(ax[1] < 0 ? ax[1] + 4 : ax[1]);
            return (a0 == 2 && a1 == 3) || (a0 == 3 && a1 == 2);
        }
    }
    /* AveragePool whose window covers the whole map (torch's AdaptiveAvgPool2d(1) at some sizes) */
    if (!strcmp(n->op_type, "AveragePool") || !strcmp(n->op_type, "MaxPool")) {
        const value_t *ov = nout(g, n);
        return ov->rank == 4 && ov->dims[2] == 1 && ov->dims[3] == 1;
    }
    return 0;
}

int graph_detect_cam_value(const graph_t *g)
{
    /* The head starts at the last node that turns a 4-D map with spatial extent into class
     * features: global pooling, or a flatten to (N, features). */
    int best = -1, flat_head = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const node_t *n = &g->nodes[i];
        if (n->n_in < 1 || n->in[0] < 0) continue;
        const value_t *iv = nin(g, n, 0);
        if (iv->is_const || iv->rank != 4 || (iv->dims[2] <= 1 && iv->dims[3] <= 1)) continue;
        int pool = is_global_pool(g, n);
        int flat = (!strcmp(n->op_type, "Flatten") || !strcmp(n->op_type, "Reshape")) && nout(g, n)->rank == 2;
        if (pool || flat) {
            best = n->in[0];
            flat_head = flat;
        }
    }
    /* A flatten that reads average pooling reads a pooled map: AdaptiveAvgPool2d((7,7)) in VGG,
     * ((6,6)) in AlexNet (exported as AveragePool, kernel 1 at 224), ((2,2)) heads. The feature
     * map is the pooling's input (what pytorch-grad-cam users pick: model.features[-1]). */
    while (flat_head && best >= 0) {
        int p = g->values[best].producer;
        if (p < 0) break;
        const node_t *n = &g->nodes[p];
        if (strcmp(n->op_type, "AveragePool") || n->n_in < 1 || n->in[0] < 0) break;
        const value_t *iv = nin(g, n, 0);
        if (iv->is_const || iv->rank != 4) break;
        best = n->in[0];
    }
    return best;
}

/* ---- layer names as users write them ---------------------------------------------------------------- */
#define MAX_SCOPE 32

/* Split "/a/b/c/Op" into its components; returns the count (the last one is the op's own name). */
static int name_parts(const char *name, const char **part, size_t *len, int max)
{
    int k = 0;
    const char *p = name;
    while (*p && k < max) {
        while (*p == '/') p++;
        if (!*p) break;
        const char *e = p;
        while (*e && *e != '/') e++;
        part[k] = p;
        len[k] = (size_t)(e - p);
        k++;
        p = e;
    }
    return k;
}

/* A scope component written by the exporter equals the module's component, or is it followed by
 * "_<n>": the n-th extra call of a module used more than once (relu_1). */
static int comp_match(const char *s, size_t sl, const char *m, size_t ml)
{
    if (sl < ml || strncmp(s, m, ml)) return 0;
    if (sl == ml) return 1;
    if (s[ml] != '_' || sl == ml + 1) return 0;
    for (size_t i = ml + 1; i < sl; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return 1;
}

static int all_digits(const char *s, size_t l)
{
    if (!l) return 0;
    for (size_t i = 0; i < l; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return 1;
}

/* "features.3.conv.0" -> scope components "features", "features.3", "conv", "conv.0" (torch names a
 * child of a Sequential/ModuleList by its parent's component, a dot and its index). Components are
 * written into buf; returns the count, -1 when it does not fit. */
static int module_scope(const char *path, char *buf, size_t cap, const char **comp, size_t *clen, int max)
{
    int k = 0;
    size_t used = 0;
    const char *p = path;
    while (*p) {
        const char *e = strchr(p, '.');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (!l || k >= max) return -1;
        size_t need = (all_digits(p, l) && k ? clen[k - 1] + 1 : 0) + l;
        if (used + need + 1 > cap) return -1;
        char *dst = buf + used;
        if (all_digits(p, l) && k) {
            memcpy(dst, comp[k - 1], clen[k - 1]);
            dst[clen[k - 1]] = '.';
            memcpy(dst + clen[k - 1] + 1, p, l);
        } else {
            memcpy(dst, p, l);
        }
        comp[k] = dst;
        clen[k] = need;
        used += need + 1;
        k++;
        if (!e) break;
        p = e + 1;
    }
    return k;
}

/* Does node name `nm` lie inside the scope comp[0..k)? (its components before the op's own name
 * start with them) */
static int in_scope(const char *nm, const char *const *comp, const size_t *clen, int k)
{
    const char *part[MAX_SCOPE + 1];
    size_t len[MAX_SCOPE + 1];
    int n = name_parts(nm, part, len, MAX_SCOPE + 1);
    if (n - 1 < k) return 0;
    for (int i = 0; i < k; i++)
        if (!comp_match(part[i], len[i], comp[i], clen[i])) return 0;
    return 1;
}

/* The value of the last node (topological order) inside the scope; folded nodes count through
 * their aliases. -1 if no node is. */
static int last_in_scope(const graph_t *g, const char *const *comp, const size_t *clen, int k)
{
    int best_node = -1, best_value = -1;
    for (int i = 0; i < g->n_nodes; i++)
        if (in_scope(g->nodes[i].name, comp, clen, k)) {
            best_node = i;
            best_value = g->nodes[i].out[0];
        }
    for (int a = 0; a < g->n_aliases; a++) {
        int v = g->aliases[a].value, p = v >= 0 ? g->values[v].producer : -1;
        if (p > best_node && in_scope(g->aliases[a].name, comp, clen, k)) {
            best_node = p;
            best_value = v;
        }
    }
    return best_value;
}

void graph_node_module_path(const graph_t *g, int node, char *out, size_t cap)
{
    const char *part[MAX_SCOPE + 1];
    size_t len[MAX_SCOPE + 1];
    out[0] = 0;
    if (!cap || node < 0 || node >= g->n_nodes) return;
    int n = name_parts(g->nodes[node].name, part, len, MAX_SCOPE + 1) - 1;
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        const char *s = part[i];
        size_t l = len[i];
        /* "features.7" after "features": the index */
        if (i && l > len[i - 1] + 1 && !strncmp(s, part[i - 1], len[i - 1]) && s[len[i - 1]] == '.' &&
            all_digits(s + len[i - 1] + 1, l - len[i - 1] - 1)) {
            s += len[i - 1] + 1;
            l -= len[i - 1] + 1;
        } else {
            /* "relu_1": the second call of module relu, when a sibling scope "relu" exists */
            const char *us = NULL;
            for (size_t q = 0; q < l; q++)
                if (s[q] == '_') us = s + q;
            if (us && all_digits(us + 1, (size_t)(s + l - us - 1))) {
                size_t base = (size_t)(us - s);
                int sibling = 0;
                for (int j = 0; j < g->n_nodes && !sibling; j++) {
                    const char *q[MAX_SCOPE + 1];
                    size_t ql[MAX_SCOPE + 1];
                    int qn = name_parts(g->nodes[j].name, q, ql, MAX_SCOPE + 1) - 1;
                    if (qn <= i) continue;
                    int same = ql[i] == base && !strncmp(q[i], s, base);
                    for (int t = 0; same && t < i; t++) same = ql[t] == len[t] && !strncmp(q[t], part[t], len[t]);
                    sibling = same;
                }
                if (sibling) l = base;
            }
        }
        int w = snprintf(out + used, cap - used, "%s%.*s", i ? "." : "", (int)l, s);
        if (w < 0 || (size_t)w >= cap - used) {
            out[used] = 0;
            return;
        }
        used += (size_t)w;
    }
}

/* Levenshtein distance, case-insensitive, on at most the first 255 characters of each. */
static int edit_distance(const char *a, const char *b)
{
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 255) la = 255;
    if (lb > 255) lb = 255;
    int row[256], prev[256];
    for (int j = 0; j <= lb; j++) prev[j] = j;
    for (int i = 1; i <= la; i++) {
        row[0] = i;
        for (int j = 1; j <= lb; j++) {
            int c = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            int x = prev[j - 1] + c, y = prev[j] + 1, z = row[j - 1] + 1;
            row[j] = x < y ? (x < z ? x : z) : (y < z ? y : z);
        }
        memcpy(prev, row, sizeof(int) * (size_t)(lb + 1));
    }
    return prev[lb];
}

static int contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    if (!n) return 0;
    for (const char *p = hay; *p; p++)
        if (!strncasecmp(p, needle, n)) return 1;
    return 0;
}

typedef struct {
    char name[256];
    int contains, dist;
} cand_t;

static int cand_better(const cand_t *a, const cand_t *b)
{
    if (a->contains != b->contains) return a->contains > b->contains;
    if (a->dist != b->dist) return a->dist < b->dist;
    size_t la = strlen(a->name), lb = strlen(b->name);
    if (la != lb) return la < lb;
    return strcmp(a->name, b->name) < 0;
}

static void cand_offer(cand_t *top, int *n, const char *query, const char *name)
{
    if (!*name || strlen(name) >= sizeof top[0].name) return;
    for (int i = 0; i < *n; i++)
        if (!strcmp(top[i].name, name)) return;
    cand_t c;
    snprintf(c.name, sizeof c.name, "%s", name);
    c.contains = contains_ci(name, query);
    c.dist = edit_distance(query, name);
    int pos = *n;
    while (pos > 0 && cand_better(&c, &top[pos - 1])) pos--;
    if (pos >= 5) return;
    int last = *n < 5 ? *n : 4;
    for (int i = last; i > pos; i--) top[i] = top[i - 1];
    top[pos] = c;
    if (*n < 5) (*n)++;
}

int graph_resolve_layer(const graph_t *g, const char *name, char *suggest, size_t suggest_len)
{
    if (suggest && suggest_len) suggest[0] = 0;
    if (!name || !*name) return -1;
    int v = graph_find_value(g, name);
    if (v >= 0) return v;
    char buf[1024];
    const char *comp[MAX_SCOPE];
    size_t clen[MAX_SCOPE];
    int k = -1;
    if (name[0] == '/') { /* a scope as the exporter writes it: "/layer4" or "/layer4/layer4.1/" */
        const char *part[MAX_SCOPE + 1];
        size_t len[MAX_SCOPE + 1];
        k = name_parts(name, part, len, MAX_SCOPE + 1);
        if (k > MAX_SCOPE) k = -1;
        for (int i = 0; i < k; i++) {
            comp[i] = part[i];
            clen[i] = len[i];
        }
    } else if (strlen(name) < sizeof buf) {
        k = module_scope(name, buf, sizeof buf, comp, clen, MAX_SCOPE);
    }
    if (k > 0 && (v = last_in_scope(g, comp, clen, k)) >= 0) return v;
    if (!suggest || !suggest_len) return -1;
    /* the closest names: node names and the module paths of every scope prefix */
    cand_t top[5];
    int nt = 0;
    char path[1024];
    for (int i = 0; i < g->n_nodes; i++) {
        cand_offer(top, &nt, name, g->nodes[i].name);
        graph_node_module_path(g, i, path, sizeof path);
        for (;;) { /* "layer4.1.conv1", "layer4.1", "layer4" */
            cand_offer(top, &nt, name, path);
            char *d = strrchr(path, '.');
            if (!d) break;
            *d = 0;
        }
    }
    size_t used = 0;
    for (int i = 0; i < nt && used < suggest_len; i++) {
        int w = snprintf(suggest + used, suggest_len - used, "%s'%s'", i ? ", " : "", top[i].name);
        if (w < 0 || (size_t)w >= suggest_len - used) {
            suggest[used] = 0;
            break;
        }
        used += (size_t)w;
    }
    return -1;
}

const char *graph_value_user_name(const graph_t *g, int v)
{
    int p = g->values[v].producer;
    return p >= 0 ? g->nodes[p].name : g->values[v].name;
}

int graph_gap_linear_head(const graph_t *g, int value, const float **w, const float **b, int *classes, int *channels,
                          eng_err_t *err)
{
    /* value -> GlobalAveragePool (or ReduceMean over H,W / whole-map AveragePool) -> [Flatten|Reshape|Squeeze]*
     *       -> Gemm (or MatMul [+ Add]) -> output */
    const value_t *v = &g->values[value];
    if (v->rank != 4) return eng_errf(err, ENG_EINVAL, "CAM needs a 4-D layer; '%s' has rank %d", graph_value_user_name(g, value), v->rank);
    int cur = value;
    const node_t *pool = NULL;
    for (int i = 0; i < g->n_nodes; i++) {
        const node_t *n = &g->nodes[i];
        if (n->in[0] == cur) {
            if (g->values[cur].n_consumers != 1) break;
            if (is_global_pool(g, n) && strcmp(n->op_type, "GlobalMaxPool") && strcmp(n->op_type, "ReduceMax") &&
                strcmp(n->op_type, "MaxPool"))
                pool = n;
            break;
        }
    }
    if (!pool)
        return eng_errf(err, ENG_EINVAL,
                        "CAM needs the layer '%s' to feed global average pooling directly (Zhou et al. 2016); "
                        "use gradcam for other heads", graph_value_user_name(g, value));
    cur = pool->out[0];
    for (;;) {
        int next = -1;
        for (int i = 0; i < g->n_nodes; i++)
            if (g->nodes[i].in[0] == cur) { next = i; break; }
        if (next < 0 || g->values[cur].n_consumers != 1) break;
        const node_t *n = &g->nodes[next];
        if (!strcmp(n->op_type, "Flatten") || !strcmp(n->op_type, "Reshape") || !strcmp(n->op_type, "Squeeze")) {
            cur = n->out[0];
            continue;
        }
        if (!strcmp(n->op_type, "Gemm") && n->out[0] == g->output) {
            int ta = (int)attr_int(n, "transA", 0), tb = (int)attr_int(n, "transB", 0);
            float alpha = attr_float(n, "alpha", 1.f), beta = attr_float(n, "beta", 1.f);
            const value_t *wv = nin(g, n, 1);
            if (ta || !wv->is_const || alpha != 1.f || (n->n_in > 2 && n->in[2] >= 0 && beta != 1.f) || !tb) break;
            *w = wv->f;
            *classes = (int)wv->dims[0];
            *channels = (int)wv->dims[1];
            *b = n->n_in > 2 && n->in[2] >= 0 && nin(g, n, 2)->size == (size_t)*classes ? nin(g, n, 2)->f : NULL;
            if (*channels != v->dims[1]) break;
            return ENG_OK;
        }
        break;
    }
    return eng_errf(err, ENG_EINVAL,
                    "CAM applies only when global average pooling of '%s' is followed by one linear layer "
                    "(Zhou et al. 2016); this head is different: use gradcam", graph_value_user_name(g, value));
}

int graph_param_nodes(const graph_t *g, int *nodes, int max)
{
    int k = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].w_in < 0) continue;
        if (k < max) nodes[k] = i;
        k++;
    }
    return k;
}
