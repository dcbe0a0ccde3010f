/* ws.c — workspaces: planned memory and the forward / backward executors.
 *
 * Planning (at ws_create, once per worker and model):
 *   - every activation gets max_batch x size floats in one arena (backward needs them all, and
 *     explanation methods read intermediate layers);
 *   - gradient buffers share a second arena by liveness. In the reverse sweep, the gradient of a
 *     value lives from the backward of its last consumer (its first write) to the backward of its
 *     producer (its last read). Intervals are planned once for the full pass (seed = logits,
 *     capture = input); any partial pass (a seed on an intermediate value, a capture higher up)
 *     only shrinks intervals, except the seed's, whose earlier start overlaps nothing that runs.
 *   - one scratch buffer (the largest any node asks for: im2col columns) and per-node aux memory
 *     (pooling argmax) for the maximum batch.
 * The hot path allocates nothing.
 *
 * Threads: a workspace runs on its owner's thread; with a team attached (ws_set_team) each op may
 * split its work over the team's active threads (exec_t.team, par.h), with results bit-identical
 * to one thread's. Ops split only work whose outputs are disjoint (GEMM column blocks, channels),
 * so the one scratch buffer needs no per-thread copies.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "graph.h"
#include "par.h"

#define ALIGN_FLOATS 16 /* 64-byte alignment of every buffer */

struct ws {
    const graph_t *g;
    int max_batch, n;
    float *act_arena, *grad_arena, *scratch;
    unsigned char *aux_arena;
    float **val;          /* per value: activation buffer or constant data */
    size_t *grad_off;     /* per value: float offset in grad_arena, SIZE_MAX if never needed */
    size_t scratch_floats;
    void **aux;           /* per node */
    const float **ov_w, **ov_b;
    /* per-call scratch arrays, sized at creation */
    const float **xin;
    float **dxin;
    int *accv;
    char *vflag_a, *vflag_b, *vinit, *vcap_done;
    int64_t deadline_ns;
    const atomic_int *cancel;
    int64_t *prof_f, *prof_b;
    int bw_nodes_run;
    size_t bytes;
    par_team_t *team; /* borrowed; NULL: one thread */
};

static size_t align_up(size_t n) { return (n + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS; }

int64_t eng_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- planning ------------------------------------------------------------------------------------ */
typedef struct {
    int v;
    int birth, death;
    size_t size;
    size_t off;
} interval_t;

static int cmp_birth(const void *a, const void *b)
{
    const interval_t *x = a, *y = b;
    if (x->birth != y->birth) return x->birth - y->birth;
    return x->size < y->size ? 1 : x->size > y->size ? -1 : 0;
}

/* Plan gradient offsets; returns the arena size in floats. */
static size_t plan_grads(const graph_t *g, int max_batch, size_t *grad_off)
{
    const int N = g->n_nodes;
    int nv = g->n_values;
    interval_t *iv = calloc((size_t)nv + 1, sizeof *iv);
    int cnt = 0;
    for (int v = 0; v < nv; v++) grad_off[v] = SIZE_MAX;
    if (!iv) return 0;
    /* time of node i in the reverse sweep: N-1-i; the seed is written at time -1 */
    int *last_consumer = malloc(sizeof(int) * ((size_t)nv + 1));
    for (int v = 0; v < nv; v++) last_consumer[v] = -1;
    for (int i = 0; i < N; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++) {
            int v = g->nodes[i].in[k];
            if (v >= 0) last_consumer[v] = i;
        }
    for (int v = 0; v < nv; v++) {
        const value_t *x = &g->values[v];
        if (x->is_const) continue;
        if (x->producer < 0 && v != g->input) continue;
        if (last_consumer[v] < 0 && v != g->output) continue;
        interval_t *t = &iv[cnt++];
        t->v = v;
        t->birth = v == g->output ? -1 : N - 1 - last_consumer[v];
        if (v == g->output && last_consumer[v] >= 0) t->birth = -1;
        t->death = x->producer >= 0 ? N - 1 - x->producer : N;
        t->size = align_up((size_t)max_batch * x->size);
    }
    free(last_consumer);
    qsort(iv, (size_t)cnt, sizeof *iv, cmp_birth);
    /* first fit among the live blocks, kept sorted by offset */
    int *live = malloc(sizeof(int) * ((size_t)cnt + 1));
    int nlive = 0;
    size_t total = 0;
    for (int i = 0; i < cnt; i++) {
        interval_t *t = &iv[i];
        int w = 0; /* expire blocks that died strictly before this birth */
        for (int k = 0; k < nlive; k++)
            if (iv[live[k]].death >= t->birth) live[w++] = live[k];
        nlive = w;
        size_t off = 0;
        int pos = 0;
        for (; pos < nlive; pos++) {
            const interval_t *b = &iv[live[pos]];
            if (off + t->size <= b->off) break;
            if (b->off + b->size > off) off = b->off + b->size;
        }
        t->off = off;
        memmove(live + pos + 1, live + pos, sizeof(int) * (size_t)(nlive - pos));
        live[pos] = i;
        nlive++;
        if (off + t->size > total) total = off + t->size;
        grad_off[t->v] = off;
    }
    free(live);
    free(iv);
    return total;
}

static size_t plan_sizes(const graph_t *g, int max_batch, size_t *act, size_t *scratch, size_t *aux, size_t *grads,
                         size_t *grad_off)
{
    *act = *scratch = *aux = 0;
    for (int v = 0; v < g->n_values; v++) {
        const value_t *x = &g->values[v];
        if (!x->is_const && (x->producer >= 0 || v == g->input)) *act += align_up((size_t)max_batch * x->size);
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const node_t *n = &g->nodes[i];
        size_t s = n->scratch_fixed + n->scratch_per_image * (size_t)max_batch;
        if (s > *scratch) *scratch = s;
        if (max_batch > 1 && n->scratch_batched) { /* room for 2+ images at once, within the cap */
            size_t want = n->scratch_batched * (size_t)max_batch;
            if (want > SCRATCH_BATCH_CAP) want = SCRATCH_BATCH_CAP;
            if (want >= 2 * n->scratch_batched && want > *scratch) *scratch = want;
        }
        *aux += (n->aux_per_image * (size_t)max_batch + 63) / 64 * 64;
    }
    *grads = plan_grads(g, max_batch, grad_off);
    return (*act + *scratch + *grads) * sizeof(float) + *aux;
}

size_t ws_plan_bytes(const graph_t *g, int max_batch)
{
    size_t *off = malloc(sizeof(size_t) * ((size_t)g->n_values + 1));
    if (!off) return 0;
    size_t a, s, x, gr;
    size_t b = plan_sizes(g, max_batch, &a, &s, &x, &gr, off);
    free(off);
    return b;
}

static void *aalloc(size_t bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64)) return NULL;
    return p;
}

int ws_create(const graph_t *g, int max_batch, ws_t **out, eng_err_t *err)
{
    *out = NULL;
    if (max_batch < 1) return eng_errf(err, ENG_EINVAL, "max_batch must be >= 1");
    ws_t *ws = calloc(1, sizeof *ws);
    if (!ws) return eng_errf(err, ENG_ENOMEM, "out of memory");
    ws->g = g;
    ws->max_batch = max_batch;
    size_t nv = (size_t)g->n_values + 1, nn = (size_t)g->n_nodes + 1;
    ws->val = calloc(nv, sizeof *ws->val);
    ws->grad_off = calloc(nv, sizeof *ws->grad_off);
    ws->aux = calloc(nn, sizeof *ws->aux);
    ws->ov_w = calloc(nn, sizeof *ws->ov_w);
    ws->ov_b = calloc(nn, sizeof *ws->ov_b);
    int max_in = 1;
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].n_in > max_in) max_in = g->nodes[i].n_in;
    ws->xin = calloc((size_t)max_in, sizeof *ws->xin);
    ws->dxin = calloc((size_t)max_in, sizeof *ws->dxin);
    ws->accv = calloc((size_t)max_in, sizeof *ws->accv);
    ws->vflag_a = calloc(nv, 1);
    ws->vflag_b = calloc(nv, 1);
    ws->vinit = calloc(nv, 1);
    ws->vcap_done = calloc(nv, 1);
    if (!ws->val || !ws->grad_off || !ws->aux || !ws->ov_w || !ws->ov_b || !ws->xin || !ws->dxin || !ws->accv ||
        !ws->vflag_a || !ws->vflag_b || !ws->vinit || !ws->vcap_done) {
        ws_free(ws);
        return eng_errf(err, ENG_ENOMEM, "out of memory");
    }
    size_t act, scratch, aux, grads;
    ws->bytes = plan_sizes(g, max_batch, &act, &scratch, &aux, &grads, ws->grad_off);
    ws->scratch_floats = scratch;
    ws->act_arena = aalloc(act * sizeof(float));
    ws->grad_arena = aalloc(grads * sizeof(float));
    ws->scratch = aalloc(scratch * sizeof(float));
    ws->aux_arena = aalloc(aux);
    if (!ws->act_arena || !ws->grad_arena || !ws->scratch || !ws->aux_arena) {
        ws_free(ws);
        return eng_errf(err, ENG_ENOMEM, "cannot allocate a %zu MiB workspace for batch %d", ws->bytes >> 20, max_batch);
    }
    size_t off = 0;
    for (int v = 0; v < g->n_values; v++) {
        const value_t *x = &g->values[v];
        if (x->is_const) ws->val[v] = x->f;
        else if (x->producer >= 0 || v == g->input) {
            ws->val[v] = ws->act_arena + off;
            off += align_up((size_t)max_batch * x->size);
        }
    }
    size_t aoff = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const node_t *n = &g->nodes[i];
        if (n->aux_per_image) ws->aux[i] = ws->aux_arena + aoff;
        aoff += (n->aux_per_image * (size_t)max_batch + 63) / 64 * 64;
    }
    *out = ws;
    return ENG_OK;
}

void ws_free(ws_t *ws)
{
    if (!ws) return;
    free(ws->act_arena);
    free(ws->grad_arena);
    free(ws->scratch);
    free(ws->aux_arena);
    free(ws->val);
    free(ws->grad_off);
    free(ws->aux);
    free(ws->ov_w);
    free(ws->ov_b);
    free(ws->xin);
    free(ws->dxin);
    free(ws->accv);
    free(ws->vflag_a);
    free(ws->vflag_b);
    free(ws->vinit);
    free(ws->vcap_done);
    free(ws);
}

int ws_max_batch(const ws_t *ws) { return ws->max_batch; }
size_t ws_bytes(const ws_t *ws) { return ws->bytes; }
const graph_t *ws_graph(const ws_t *ws) { return ws->g; }
int ws_batch(const ws_t *ws) { return ws->n; }
void ws_set_deadline(ws_t *ws, int64_t deadline_ns) { ws->deadline_ns = deadline_ns; }
const float *ws_value(const ws_t *ws, int v) { return ws->val[v]; }
int ws_backward_nodes_run(const ws_t *ws) { return ws->bw_nodes_run; }

void ws_set_profile(ws_t *ws, int64_t *forward_ns, int64_t *backward_ns)
{
    ws->prof_f = forward_ns;
    ws->prof_b = backward_ns;
}

void ws_set_overlay(ws_t *ws, int node, const float *weight, const float *bias)
{
    ws->ov_w[node] = weight;
    ws->ov_b[node] = bias;
}

void ws_clear_overlays(ws_t *ws)
{
    memset(ws->ov_w, 0, sizeof(*ws->ov_w) * (size_t)ws->g->n_nodes);
    memset(ws->ov_b, 0, sizeof(*ws->ov_b) * (size_t)ws->g->n_nodes);
}

void ws_set_team(ws_t *ws, par_team_t *team) { ws->team = team; }
par_team_t *ws_team(const ws_t *ws) { return ws->team; }

void ws_set_cancel(ws_t *ws, const atomic_int *flag) { ws->cancel = flag; }
int ws_cancelled(const ws_t *ws) { return ws->cancel && atomic_load_explicit(ws->cancel, memory_order_relaxed); }
int ws_deadline_passed(const ws_t *ws) { return ws_cancelled(ws) || (ws->deadline_ns && eng_now_ns() > ws->deadline_ns); }

static void node_params(const ws_t *ws, int i, exec_t *e)
{
    const node_t *n = &ws->g->nodes[i];
    e->w = n->w_in >= 0 ? (ws->ov_w[i] ? ws->ov_w[i] : ws->val[n->in[n->w_in]]) : NULL;
    e->b = n->b_in >= 0 && n->in[n->b_in] >= 0 ? (ws->ov_b[i] ? ws->ov_b[i] : ws->val[n->in[n->b_in]]) : NULL;
}

/* ---- forward ------------------------------------------------------------------------------------- */
int ws_forward_from(ws_t *ws, int first_node, int n, eng_err_t *err)
{
    const graph_t *g = ws->g;
    if (n < 1 || n > ws->max_batch)
        return eng_errf(err, ENG_EINVAL, "batch %d outside 1..%d (the workspace's plan)", n, ws->max_batch);
    if (first_node < 0) first_node = 0;
    ws->n = n;
    exec_t e;
    memset(&e, 0, sizeof e);
    e.g = g;
    e.n = n;
    e.x = ws->xin;
    e.scratch = ws->scratch;
    e.scratch_floats = ws->scratch_floats;
    e.team = ws->team;
    for (int i = first_node; i < g->n_nodes; i++) {
        const node_t *nd = &g->nodes[i];
        if (ws_deadline_passed(ws))
            return eng_errf(err, ENG_EDEADLINE, ws_cancelled(ws) ? "cancelled during the forward pass" : "deadline passed during the forward pass");
        for (int k = 0; k < nd->n_in; k++) ws->xin[k] = nd->in[k] >= 0 ? ws->val[nd->in[k]] : NULL;
        e.y = ws->val[nd->out[0]];
        e.aux = ws->aux[i];
        node_params(ws, i, &e);
        if (ws->prof_f) {
            int64_t t = eng_now_ns();
            nd->op->forward(nd, &e);
            ws->prof_f[i] += eng_now_ns() - t;
        } else {
            nd->op->forward(nd, &e);
        }
    }
    return ENG_OK;
}

int ws_forward(ws_t *ws, const float *input, int n, eng_err_t *err)
{
    const graph_t *g = ws->g;
    if (n < 1 || n > ws->max_batch)
        return eng_errf(err, ENG_EINVAL, "batch %d outside 1..%d (the workspace's plan)", n, ws->max_batch);
    memcpy(ws->val[g->input], input, sizeof(float) * (size_t)n * g->values[g->input].size);
    return ws_forward_from(ws, 0, n, err);
}

/* ---- backward ------------------------------------------------------------------------------------ */
static void capture_copy(ws_t *ws, const bw_req_t *req, int v)
{
    const graph_t *g = ws->g;
    for (int c = 0; c < req->n_capture; c++) {
        if (req->capture[c] != v) continue;
        size_t bytes = sizeof(float) * (size_t)ws->n * g->values[v].size;
        if (ws->vinit[v] && ws->grad_off[v] != SIZE_MAX)
            memcpy(req->capture_out[c], ws->grad_arena + ws->grad_off[v], bytes);
        else memset(req->capture_out[c], 0, bytes);
    }
    ws->vcap_done[v] = 1;
}

static const bw_hook_t *find_hook(const bw_req_t *req, const node_t *n)
{
    if (!n->op->unary) return NULL;
    for (int h = 0; h < req->n_hooks; h++)
        if (!strcmp(req->hooks[h].op, n->op_type)) return &req->hooks[h];
    return NULL;
}

/* A hook is element-wise by contract: over a team its elements go in chunks, as act.c's rules do. */
#define HOOK_GRAIN 16384
typedef struct {
    const bw_hook_t *h;
    const float *x, *y, *dy;
    float *dx;
    int acc;
} hook_job_t;

static void hook_part(void *ctx, int lo, int hi, int tid)
{
    (void)tid;
    const hook_job_t *j = ctx;
    j->h->fn(j->x + lo, j->y + lo, j->dy + lo, j->dx + lo, (size_t)(hi - lo), j->acc, j->h->ctx);
}

static void run_hook(ws_t *ws, const bw_hook_t *h, const float *y, const float *dy, size_t count)
{
    hook_job_t j = {.h = h, .x = ws->xin[0], .y = y, .dy = dy, .dx = ws->dxin[0], .acc = ws->accv[0]};
    if (count <= INT_MAX && count >= 2 * HOOK_GRAIN) par_for_grain(ws->team, (int)count, HOOK_GRAIN, hook_part, &j);
    else h->fn(j.x, y, dy, j.dx, count, j.acc, h->ctx);
}

int ws_backward(ws_t *ws, const bw_req_t *req, eng_err_t *err)
{
    const graph_t *g = ws->g;
    const int nv = g->n_values;
    const int n = ws->n;
    if (n < 1) return eng_errf(err, ENG_EINVAL, "backward before forward");
    int s = req->seed_value;
    if (s < 0 || s >= nv || g->values[s].is_const || ws->grad_off[s] == SIZE_MAX)
        return eng_errf(err, ENG_EINVAL, "the seed must be an activation");
    for (int c = 0; c < req->n_capture; c++) {
        int v = req->capture[c];
        if (v < 0 || v >= nv || g->values[v].is_const || ws->grad_off[v] == SIZE_MAX)
            return eng_errf(err, ENG_EINVAL, "capture %d is not an activation with a gradient", c);
    }
    char *reach = ws->vflag_a, *fromcap = ws->vflag_b;
    memset(reach, 0, (size_t)nv);
    memset(fromcap, 0, (size_t)nv);
    memset(ws->vinit, 0, (size_t)nv);
    memset(ws->vcap_done, 0, (size_t)nv);
    /* values from which the seed is reachable */
    reach[s] = 1;
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        const node_t *nd = &g->nodes[i];
        if (!reach[nd->out[0]]) continue;
        for (int k = 0; k < nd->n_in; k++)
            if (nd->in[k] >= 0 && !g->values[nd->in[k]].is_const) reach[nd->in[k]] = 1;
    }
    /* values that depend on a captured value */
    for (int c = 0; c < req->n_capture; c++) fromcap[req->capture[c]] = 1;
    for (int i = 0; i < g->n_nodes; i++) {
        const node_t *nd = &g->nodes[i];
        for (int k = 0; k < nd->n_in; k++)
            if (nd->in[k] >= 0 && fromcap[nd->in[k]]) fromcap[nd->out[0]] = 1;
    }
    /* the seed */
    memcpy(ws->grad_arena + ws->grad_off[s], req->seed, sizeof(float) * (size_t)n * g->values[s].size);
    ws->vinit[s] = 1;

    exec_t e;
    memset(&e, 0, sizeof e);
    e.g = g;
    e.n = n;
    e.x = ws->xin;
    e.dx = ws->dxin;
    e.acc = ws->accv;
    e.scratch = ws->scratch;
    e.scratch_floats = ws->scratch_floats;
    e.team = ws->team;
    ws->bw_nodes_run = 0;
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        const node_t *nd = &g->nodes[i];
        int o = nd->out[0];
        if (!ws->vcap_done[o]) capture_copy(ws, req, o); /* o's gradient is complete here */
        if (!reach[o] || !fromcap[o] || !ws->vinit[o]) continue;
        if (ws_deadline_passed(ws))
            return eng_errf(err, ENG_EDEADLINE, ws_cancelled(ws) ? "cancelled during the backward pass" : "deadline passed during the backward pass");
        int any = 0;
        for (int k = 0; k < nd->n_in; k++) {
            int v = nd->in[k];
            ws->xin[k] = v >= 0 ? ws->val[v] : NULL;
            ws->dxin[k] = NULL;
            ws->accv[k] = 0;
            if (v < 0 || g->values[v].is_const || !fromcap[v]) continue;
            ws->dxin[k] = ws->grad_arena + ws->grad_off[v];
            any = 1;
        }
        if (!any) continue;
        /* an input used twice (x * x) must accumulate both contributions */
        for (int k = 0; k < nd->n_in; k++) {
            if (!ws->dxin[k]) continue;
            int v = nd->in[k], dup = 0;
            for (int j = 0; j < nd->n_in; j++) dup |= j != k && nd->in[j] == v;
            if (dup && !ws->vinit[v]) {
                memset(ws->dxin[k], 0, sizeof(float) * (size_t)n * g->values[v].size);
                ws->vinit[v] = 1;
            }
            ws->accv[k] = ws->vinit[v];
        }
        e.y = ws->val[o];
        e.dy = ws->grad_arena + ws->grad_off[o];
        e.aux = ws->aux[i];
        node_params(ws, i, &e);
        const bw_hook_t *h = find_hook(req, nd);
        int64_t tp = ws->prof_b ? eng_now_ns() : 0;
        if (h) {
            if (ws->dxin[0]) run_hook(ws, h, e.y, e.dy, (size_t)n * g->values[o].size);
        } else if (nd->op->backward) {
            nd->op->backward(nd, &e);
        } else {
            return node_err(g, nd, err, ENG_EUNSUPPORTED, "this op has no backward rule");
        }
        if (ws->prof_b) ws->prof_b[i] += eng_now_ns() - tp;
        for (int k = 0; k < nd->n_in; k++)
            if (ws->dxin[k]) ws->vinit[nd->in[k]] = 1;
        ws->bw_nodes_run++;
    }
    for (int c = 0; c < req->n_capture; c++) /* values without a producer: the input */
        if (!ws->vcap_done[req->capture[c]]) capture_copy(ws, req, req->capture[c]);
    return ENG_OK;
}
