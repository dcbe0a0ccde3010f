/* randomize.c — re-initialized parameters for the model-parameter randomization test of Adebayo
 * et al. 2018 ("Sanity Checks for Saliency Maps", §3.1), without touching the shared model.
 *
 * A randomized layer is an overlay: new weight and bias arrays that one workspace uses instead of
 * the shared ones (ws_set_overlay). Overlays are generated from (node, init, std, seed) and cached
 * in an LRU with a byte budget shared by all workers, so repeated requests reuse them.
 *
 * Re-initialization:
 *   default  PyTorch's reset_parameters for the layer kind, which is what Quantus uses:
 *            Conv / Linear: W ~ U(−b, b), b = gain·√(3/fan_in) with gain = √(2/(1+a²)), a = √5,
 *            i.e. b = 1/√fan_in (kaiming_uniform_(a=√5)); bias ~ U(−1/√fan_in, 1/√fan_in).
 *            fan_in = C/groups·kh·kw for Conv, M/groups·kh·kw for ConvTranspose (weight.size(1)·kh·kw
 *            in both, PyTorch's _calculate_fan_in_and_fan_out), in_features for Linear (Gemm/MatMul).
 *            A Conv with BatchNorm folded into it is randomized as a Conv (its folded weight and
 *            bias), as the issue specifies. A standalone BatchNormalization resets to γ = 1, β = 0,
 *            running mean 0 and variance 1 (reset_parameters + reset_running_stats); the overlay
 *            encodes that through γ' = √(var+ε)/√(1+ε), β' = mean/√(1+ε) against the stored statistics.
 *   normal   truncated normal N(0, std²) cut at ±2 std (tf.truncated_normal, the authors' code), for
 *            weights and biases alike.
 * Randomness: xoshiro256** from (seed, node index): the same seed gives the same bytes. Nodes sharing
 * a weight initializer draw from the stream of the first of them, so they stay tied.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../graph.h"
#include "../rng.h"
#include "../sanity.h"

static int fan_in_of(const graph_t *g, const node_t *n)
{
    const value_t *w = nin(g, n, n->w_in);
    /* ConvTranspose's weight is (C, M/g, kh, kw): PyTorch's fan_in is also size(1)·kh·kw */
    if (!strcmp(n->op_type, "Conv") || !strcmp(n->op_type, "ConvTranspose")) return (int)(w->dims[1] * w->dims[2] * w->dims[3]);
    const value_t *a = nin(g, n, 0);
    return (int)a->dims[a->rank - 1]; /* Gemm / MatMul: the input features */
}

/* Do nodes a and b read the same weight initializer (one module applied twice)? */
static int same_weight(const graph_t *g, int a, int b)
{
    const node_t *x = &g->nodes[a], *y = &g->nodes[b];
    return x->w_in >= 0 && y->w_in >= 0 && x->in[x->w_in] == y->in[y->w_in];
}

int sanity_reinit_node(const graph_t *g, int node, int init, float std, uint64_t seed, float **w_out, float **b_out,
                       size_t *bytes, eng_err_t *err)
{
    const node_t *n = &g->nodes[node];
    *w_out = *b_out = NULL;
    *bytes = 0;
    if (n->w_in < 0) return eng_errf(err, ENG_EINVAL, "node '%s' has no parameters", n->name);
    const value_t *wv = nin(g, n, n->w_in);
    const value_t *bv = n->b_in >= 0 && n->in[n->b_in] >= 0 ? nin(g, n, n->b_in) : NULL;
    float *w = malloc(sizeof(float) * wv->size), *b = bv ? malloc(sizeof(float) * bv->size) : NULL;
    if (!w || (bv && !b)) {
        free(w);
        free(b);
        return eng_errf(err, ENG_ENOMEM, "out of memory");
    }
    /* The stream is that of the first node reading this weight: nodes that share one initializer
     * (a module called twice, as CBAM's shared MLP on its average- and max-pooled paths) get the
     * same random weights, as one reset_parameters() gives them in PyTorch. */
    int first = node;
    for (int k = 0; k < node; k++)
        if (same_weight(g, k, node)) {
            first = k;
            break;
        }
    rng_t r;
    rng_seed(&r, seed, 0x5a417100ULL + (uint64_t)first);
    if (!strcmp(n->op_type, "BatchNormalization")) {
        double eps = attr_float(n, "epsilon", 1e-5f);
        const float *mu = nin(g, n, 3)->f, *var = nin(g, n, 4)->f;
        for (size_t c = 0; c < wv->size; c++) {
            double s;
            if (init == SANITY_INIT_NORMAL) {
                double gma, bta;
                do gma = std * rng_normal(&r); while (fabs(gma) > 2 * std);
                do bta = std * rng_normal(&r); while (fabs(bta) > 2 * std);
                /* γ, β drawn; statistics reset to mean 0, var 1 */
                s = gma / sqrt(1 + eps);
                w[c] = (float)(s * sqrt((double)var[c] + eps));
                b[c] = (float)(bta + mu[c] * s);
            } else {
                s = 1 / sqrt(1 + eps);
                w[c] = (float)(s * sqrt((double)var[c] + eps));
                b[c] = (float)(mu[c] * s);
            }
        }
    } else {
        const double bound = 1.0 / sqrt((double)(fan_in_of(g, n) > 0 ? fan_in_of(g, n) : 1));
        for (size_t i = 0; i < wv->size; i++) {
            double v;
            if (init == SANITY_INIT_NORMAL) do v = std * rng_normal(&r); while (fabs(v) > 2 * std);
            else v = (2 * rng_uniform(&r) - 1) * bound;
            w[i] = (float)v;
        }
        for (size_t i = 0; bv && i < bv->size; i++) {
            double v;
            if (init == SANITY_INIT_NORMAL) do v = std * rng_normal(&r); while (fabs(v) > 2 * std);
            else v = (2 * rng_uniform(&r) - 1) * bound;
            b[i] = (float)v;
        }
    }
    *w_out = w;
    *b_out = b;
    *bytes = sizeof(float) * (wv->size + (bv ? bv->size : 0));
    return ENG_OK;
}

/* ---- groups ----------------------------------------------------------------------------------------- */
/* path component k of a node name ("/layer4/layer4.1/conv2/Conv" -> "layer4", "layer4.1", ...) */
static int component(const char *name, int k, const char **s, size_t *len)
{
    const char *p = name;
    for (int i = 0; *p; i++) {
        while (*p == '/') p++;
        const char *e = p;
        while (*e && *e != '/') e++;
        if (e == p) return 0;
        if (i == k) {
            *s = p;
            *len = (size_t)(e - p);
            return *e != 0; /* a component followed by more: a scope, not the op's own name */
        }
        p = e;
    }
    return 0;
}

static int same_prefix(const char *a, const char *b, int depth)
{
    for (int k = 0; k < depth; k++) {
        const char *sa, *sb;
        size_t la, lb;
        int ha = component(a, k, &sa, &la), hb = component(b, k, &sb, &lb);
        if (!ha || !hb || la != lb || strncmp(sa, sb, la)) return 0;
    }
    return 1;
}

/* Split nodes[lo..hi) (topological, parameterized) into groups by name scope at `depth`, splitting
 * again any group holding more than half of `total`. */
static void group_rec(const graph_t *g, const int *nodes, int lo, int hi, int depth, int total, sanity_groups_t *out)
{
    int i = lo;
    while (i < hi) {
        int j = i + 1;
        const char *s;
        size_t l;
        int scoped = component(g->nodes[nodes[i]].name, depth, &s, &l);
        if (scoped)
            while (j < hi && same_prefix(g->nodes[nodes[i]].name, g->nodes[nodes[j]].name, depth + 1)) j++;
        if (scoped && j - i > 1 && (j - i) * 2 > total && depth < 6) {
            group_rec(g, nodes, i, j, depth + 1, j - i, out);
        } else {
            int gi = out->n++;
            out->start[gi] = i;
            out->len[gi] = j - i;
            if (scoped) snprintf(out->name[gi], sizeof out->name[gi], "%.*s", (int)l, s);
            else snprintf(out->name[gi], sizeof out->name[gi], "%s", g->nodes[nodes[i]].name);
        }
        i = j;
    }
}

int sanity_make_groups(const model_t *m, int mode, const char *list, sanity_groups_t *out, eng_err_t *err)
{
    const graph_t *g = m->graph;
    memset(out, 0, sizeof *out);
    int total = graph_param_nodes(g, NULL, 0);
    if (total <= 0) return eng_errf(err, ENG_EINVAL, "the model has no parameterized layers");
    if (total > SANITY_MAX_GROUPS) total = SANITY_MAX_GROUPS;
    graph_param_nodes(g, out->nodes, total);
    if (mode == SANITY_LAYERS_ALL) {
        /* one group per layer; nodes that read the same weight initializer (a module applied twice,
         * like CBAM's shared MLP) are one layer: randomizing one copy alone would leave the model
         * half-randomized in a way no PyTorch module can be */
        int found[SANITY_MAX_GROUPS], owner[SANITY_MAX_GROUPS];
        memcpy(found, out->nodes, sizeof(int) * (size_t)total);
        for (int i = 0; i < total; i++) {
            owner[i] = i;
            for (int j = 0; j < i && owner[i] == i; j++)
                if (same_weight(g, found[j], found[i])) owner[i] = owner[j];
        }
        int k = 0;
        for (int i = 0; i < total; i++) {
            if (owner[i] != i) continue;
            out->start[out->n] = k;
            for (int j = i; j < total; j++)
                if (owner[j] == i) out->nodes[k++] = found[j];
            out->len[out->n] = k - out->start[out->n];
            snprintf(out->name[out->n], sizeof out->name[out->n], "%s", g->nodes[found[i]].name);
            out->n++;
        }
        out->n_nodes = k;
        return ENG_OK;
    }
    if (mode == SANITY_LAYERS_BLOCKS) {
        out->n_nodes = total;
        group_rec(g, out->nodes, 0, total, 0, total, out);
        return ENG_OK;
    }
    if (mode == SANITY_LAYERS_GROUPS) {
        if (!m->n_groups) return eng_errf(err, ENG_EINVAL, "sanity_layers=groups: the model's sidecar has no randomization_groups");
        /* sidecar groups are listed top-down (logits first); store them in topological order */
        int k = 0;
        for (int gi = m->n_groups - 1; gi >= 0 && out->n < SANITY_MAX_GROUPS; gi--) {
            int st = k;
            for (int j = 0; j < m->group_sizes[gi] && k < SANITY_MAX_GROUPS; j++) out->nodes[k++] = m->group_nodes[gi][j];
            out->start[out->n] = st;
            out->len[out->n] = k - st;
            snprintf(out->name[out->n], sizeof out->name[out->n], "%s", g->nodes[m->group_nodes[gi][0]].name);
            out->n++;
        }
        out->n_nodes = k;
        return ENG_OK;
    }
    /* a comma list of node (or value) names, each its own group, kept in topological order */
    int picked[SANITY_MAX_GROUPS], np = 0;
    const char *p = list;
    while (p && *p) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        char nm[512];
        if (l >= sizeof nm) return eng_errf(err, ENG_EINVAL, "sanity_layers: a name is too long");
        memcpy(nm, p, l);
        nm[l] = 0;
        if (l) {
            int node = graph_find_node(g, nm);
            if (node < 0) return eng_errf(err, ENG_ENOTFOUND, "sanity_layers: '%.200s' is not a node of the model", nm);
            if (g->nodes[node].w_in < 0)
                return eng_errf(err, ENG_EINVAL, "sanity_layers: '%.200s' has no parameters to randomize", nm);
            int dup = 0;
            for (int i = 0; i < np; i++) dup |= picked[i] == node;
            if (!dup && np < SANITY_MAX_GROUPS) picked[np++] = node;
        }
        p = e ? e + 1 : NULL;
    }
    if (!np) return eng_errf(err, ENG_EINVAL, "sanity_layers: no layer named");
    for (int i = 0; i < np; i++) /* topological order = node index order */
        for (int j = i + 1; j < np; j++)
            if (picked[j] < picked[i]) {
                int t = picked[i];
                picked[i] = picked[j];
                picked[j] = t;
            }
    for (int i = 0; i < np; i++) {
        out->nodes[i] = picked[i];
        out->start[i] = i;
        out->len[i] = 1;
        snprintf(out->name[i], sizeof out->name[i], "%s", g->nodes[picked[i]].name);
    }
    out->n = out->n_nodes = np;
    return ENG_OK;
}

/* ---- the overlay cache ---------------------------------------------------------------------------- */
typedef struct entry {
    const graph_t *g;
    int node, init;
    float std;
    uint64_t seed;
    float *w, *b;
    size_t bytes;
    int pins;
    uint64_t last_use;
    struct entry *next;
} entry_t;

struct sanity_cache {
    pthread_mutex_t mu;
    entry_t *head;
    size_t bytes, max_bytes;
    uint64_t clock;
    uint64_t hits, misses;
};

sanity_cache_t *sanity_cache_create(size_t max_bytes)
{
    sanity_cache_t *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    pthread_mutex_init(&c->mu, NULL);
    c->max_bytes = max_bytes;
    return c;
}

void sanity_cache_free(sanity_cache_t *c)
{
    if (!c) return;
    for (entry_t *e = c->head, *n; e; e = n) {
        n = e->next;
        free(e->w);
        free(e->b);
        free(e);
    }
    pthread_mutex_destroy(&c->mu);
    free(c);
}

void sanity_cache_stats(sanity_cache_t *c, uint64_t *hits, uint64_t *misses, size_t *bytes)
{
    pthread_mutex_lock(&c->mu);
    *hits = c->hits;
    *misses = c->misses;
    *bytes = c->bytes;
    pthread_mutex_unlock(&c->mu);
}

static void evict(sanity_cache_t *c)
{
    while (c->bytes > c->max_bytes) {
        entry_t **victim = NULL;
        for (entry_t **pp = &c->head; *pp; pp = &(*pp)->next)
            if (!(*pp)->pins && (!victim || (*pp)->last_use < (*victim)->last_use)) victim = pp;
        if (!victim) return; /* everything pinned: allowed over budget until unpinned */
        entry_t *e = *victim;
        *victim = e->next;
        c->bytes -= e->bytes;
        free(e->w);
        free(e->b);
        free(e);
    }
}

int sanity_overlay_get(sanity_cache_t *c, const graph_t *g, int node, int init, float std, uint64_t seed,
                       const float **w, const float **b, void **handle, eng_err_t *err)
{
    if (init != SANITY_INIT_NORMAL) std = 0;
    pthread_mutex_lock(&c->mu);
    for (entry_t *e = c->head; e; e = e->next)
        if (e->g == g && e->node == node && e->init == init && e->std == std && e->seed == seed) {
            e->pins++;
            e->last_use = ++c->clock;
            c->hits++;
            pthread_mutex_unlock(&c->mu);
            *w = e->w;
            *b = e->b;
            *handle = e;
            return ENG_OK;
        }
    c->misses++;
    pthread_mutex_unlock(&c->mu);
    /* generate outside the lock; another worker may race us to the same key: keep the first */
    entry_t *e = calloc(1, sizeof *e);
    if (!e) return eng_errf(err, ENG_ENOMEM, "out of memory");
    int rc = sanity_reinit_node(g, node, init, std, seed, &e->w, &e->b, &e->bytes, err);
    if (rc) {
        free(e);
        return rc;
    }
    e->g = g;
    e->node = node;
    e->init = init;
    e->std = std;
    e->seed = seed;
    pthread_mutex_lock(&c->mu);
    for (entry_t *o = c->head; o; o = o->next)
        if (o->g == g && o->node == node && o->init == init && o->std == std && o->seed == seed) {
            o->pins++;
            o->last_use = ++c->clock;
            pthread_mutex_unlock(&c->mu);
            free(e->w);
            free(e->b);
            free(e);
            *w = o->w;
            *b = o->b;
            *handle = o;
            return ENG_OK;
        }
    e->pins = 1;
    e->last_use = ++c->clock;
    e->next = c->head;
    c->head = e;
    c->bytes += e->bytes;
    evict(c);
    pthread_mutex_unlock(&c->mu);
    *w = e->w;
    *b = e->b;
    *handle = e;
    return ENG_OK;
}

void sanity_overlay_put(sanity_cache_t *c, void *handle)
{
    if (!handle) return;
    pthread_mutex_lock(&c->mu);
    ((entry_t *)handle)->pins--;
    evict(c);
    pthread_mutex_unlock(&c->mu);
}
