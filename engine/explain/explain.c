/* explain.c — the method table, the fusion planner and the helpers every method shares.
 *
 * Plan of one request (see explain.h): forward once; then, only if some method needs them,
 *   one ordinary backward from logit[target], capturing the input (saliency, grad_x_input) and/or
 *   the CAM layer (gradcam, gradcam_pp, xgradcam, layercam, guided_gradcam) — with no input
 *   capture the pass stops at the layer;
 *   one guided backward (guided_backprop, guided_gradcam);
 * then each method runs its own batched passes if it has any (IG, SmoothGrad, Score-CAM,
 * occlusion, deconvnet). Everything a method needs from the first forward is copied out of the
 * workspace before a batched pass can overwrite it.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "methods.h"

/* One row per method: the only place that says what a method is and what it needs. Every list of
 * methods (the request parameter's choices, the masks of the shared passes below and in sanity.c,
 * the family names of the model document, `explaind methods`, the openapi.yaml and dashboard lists
 * checked by tests/e2e/test_methods.py) is read from these rows through explain.h's accessors. */
typedef struct {
    const char *name;     /* the API's name (the `methods` parameter, the explanations' keys) */
    char family;          /* see method_family() */
    unsigned needs;       /* MN_* */
    method_fn fn;
    const char *display;  /* the dashboard's title */
    const char *params;   /* the request parameters it reads, besides target */
    const char *summary;
} method_def_t;

#define GRADIENT_PARAMS "reduce"
#define LAYER_PARAMS "layer"
#define IG_PARAMS "ig_steps,ig_method,baseline,seed"
static const method_def_t methods[M_COUNT] = {
#define METHOD(id, name, family, needs, display, params, summary) \
    [M_##id] = {#name, family, needs, explain_##name, display, params, summary},
#include "methods.def"
#undef METHOD
};

static const struct {
    char code;
    const char *name;
} families[] = {{'g', "gradient"}, {'c', "cam"}, {'x', "combined"}, {'p', "perturbation"}, {'i', "internals"},
                {'b', "baseline"}};

int method_from_name(const char *name)
{
    if (!name) return -1;
    for (int i = 0; i < M_COUNT; i++)
        if (methods[i].name && methods[i].fn && !strcmp(methods[i].name, name)) return i;
    return -1;
}

const char *method_name(int m) { return m >= 0 && m < M_COUNT ? methods[m].name : "?"; }
char method_family(int m) { return m >= 0 && m < M_COUNT ? methods[m].family : '?'; }
const char *method_summary(int m) { return m >= 0 && m < M_COUNT ? methods[m].summary : ""; }
const char *method_display(int m) { return m >= 0 && m < M_COUNT ? methods[m].display : "?"; }
const char *method_params(int m) { return m >= 0 && m < M_COUNT ? methods[m].params : ""; }
unsigned method_needs(int m) { return m >= 0 && m < M_COUNT ? methods[m].needs : 0; }

const char *method_family_name(int m)
{
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        if (families[i].code == method_family(m)) return families[i].name;
    return "?";
}

uint32_t methods_needing(unsigned needs)
{
    uint32_t mask = 0;
    for (int i = 0; i < M_COUNT; i++)
        if (methods[i].needs & needs) mask |= 1u << i;
    return mask;
}

static const char *names_all[M_COUNT + 1], *names_smoothable[M_COUNT + 1];
static pthread_once_t names_once = PTHREAD_ONCE_INIT;

static void names_build(void)
{
    int a = 0, s = 0;
    for (int i = 0; i < M_COUNT; i++) {
        if (!methods[i].fn) continue;
        names_all[a++] = methods[i].name;
        if (methods[i].needs & MN_SMOOTHABLE) names_smoothable[s++] = methods[i].name;
    }
}

const char *const *method_names(unsigned needs)
{
    pthread_once(&names_once, names_build);
    return needs == MN_SMOOTHABLE ? names_smoothable : names_all;
}

void explain_params_default(explain_params_t *p)
{
    memset(p, 0, sizeof *p);
    p->methods = 1u << M_GRADCAM;
    p->target = -1;
    p->layer = -1;
    p->reduce = REDUCE_ABS_SUM;
    p->ig_steps = 50;
    p->ig_method = IG_GAUSS_LEGENDRE;
    p->baseline = BASELINE_ZERO;
    p->smoothgrad_samples = 25;
    p->smoothgrad_noise = 0.15f;
    p->smoothgrad_type = SG_SMOOTHGRAD;
    p->smoothgrad_base = M_SALIENCY;
    p->scorecam_channels = 0;
    p->seed = 0;
    p->faithfulness_steps = 20;
    p->activations_top = 16;
}

/* ---- helpers ---------------------------------------------------------------------------------------- */
int ex_max_batch(const ectx_t *c) { return ws_max_batch(c->ws); }

int ex_logits_batch(ectx_t *c, const float *xs, int n, float *logits_out, eng_err_t *err)
{
    int rc = ws_forward(c->ws, xs, n, err);
    if (rc) return rc;
    c->out->passes_forward++;
    memcpy(logits_out, ws_value(c->ws, graph_output_value(c->g)), sizeof(float) * (size_t)n * c->K);
    return ENG_OK;
}

int ex_grad_batch(ectx_t *c, const float *xs, int n, int target, const bw_hook_t *hooks, int n_hooks, float *grads_out,
                  float *logits_out, eng_err_t *err)
{
    int rc = ws_forward(c->ws, xs, n, err);
    if (rc) return rc;
    c->out->passes_forward++;
    const int out = graph_output_value(c->g);
    if (logits_out) memcpy(logits_out, ws_value(c->ws, out), sizeof(float) * (size_t)n * c->K);
    float *seed = calloc((size_t)n * c->K, sizeof(float));
    if (!seed) return eng_errf(err, ENG_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) seed[(size_t)i * c->K + target] = 1.f;
    int cap = graph_input_value(c->g);
    bw_req_t req = {.seed_value = out, .seed = seed, .n_capture = 1, .capture = &cap, .capture_out = &grads_out,
                    .n_hooks = n_hooks, .hooks = hooks};
    rc = ws_backward(c->ws, &req, err);
    free(seed);
    if (!rc) c->out->passes_backward++;
    return rc;
}

void ex_stats(method_result_t *r)
{
    size_t n = 1;
    for (int i = 0; i < r->rank; i++) n *= (size_t)r->dims[i];
    if (!r->map || !n) return;
    double s = 0;
    float lo = r->map[0], hi = r->map[0];
    for (size_t i = 0; i < n; i++) {
        float v = r->map[i];
        if (v < lo) lo = v;
        if (v > hi) hi = v;
        s += v;
    }
    r->min = lo;
    r->max = hi;
    r->mean = (float)(s / (double)n);
}

void ex_set_map2d(method_result_t *r, float *map, int h, int w)
{
    r->map = map;
    r->rank = 2;
    r->dims[0] = h;
    r->dims[1] = w;
    r->dims[2] = 0;
    ex_stats(r);
}

int ex_set_gradient_result(ectx_t *c, method_result_t *r, float *attr)
{
    const size_t hw = (size_t)c->H * c->W;
    float *raw = malloc(sizeof(float) * hw);
    if (!raw) {
        free(attr);
        return ENG_ENOMEM;
    }
    for (size_t i = 0; i < hw; i++) {
        double acc = 0;
        for (int ch = 0; ch < c->C; ch++) {
            double v = attr[ch * hw + i];
            switch (c->p->reduce) {
            case REDUCE_ABS_SUM: acc += fabs(v); break;
            case REDUCE_ABS_MAX: acc = fmax(acc, fabs(v)); break;
            case REDUCE_SUM: acc += v; break;
            default: acc += v * v; break;
            }
        }
        raw[i] = (float)(c->p->reduce == REDUCE_L2 ? sqrt(acc) : acc);
    }
    r->attribution = attr;
    r->attr_dims[0] = c->C;
    r->attr_dims[1] = c->H;
    r->attr_dims[2] = c->W;
    ex_set_map2d(r, raw, c->H, c->W);
    return ENG_OK;
}

void ex_add_extra(method_result_t *r, const char *key, double v)
{
    if (r->n_extra >= (int)(sizeof r->extra / sizeof r->extra[0])) return;
    snprintf(r->extra[r->n_extra].key, sizeof r->extra[0].key, "%s", key);
    r->extra[r->n_extra].value = v;
    r->n_extra++;
}

/* ---- the request ------------------------------------------------------------------------------------- */
#define BIT(m) (1u << (m))

static double ms_since(int64_t t0) { return (double)(eng_now_ns() - t0) / 1e6; }

static int first_forward(const model_t *m, ws_t *ws, const float *input, int start_node, explain_out_t *out,
                         eng_err_t *err)
{
    const graph_t *g = m->graph;
    int rc = start_node > 0 ? ws_forward_from(ws, start_node, 1, err) : ws_forward(ws, input, 1, err);
    if (rc) return rc;
    out->passes_forward++;
    int K = (int)g->values[g->output].dims[1];
    out->n_classes = K;
    out->logits = malloc(sizeof(float) * K);
    out->probs = malloc(sizeof(float) * K);
    if (!out->logits || !out->probs) return eng_errf(err, ENG_ENOMEM, "out of memory");
    memcpy(out->logits, ws_value(ws, g->output), sizeof(float) * K);
    double mx = out->logits[0], s = 0;
    for (int k = 1; k < K; k++) mx = fmax(mx, out->logits[k]);
    for (int k = 0; k < K; k++) s += exp(out->logits[k] - mx);
    for (int k = 0; k < K; k++) out->probs[k] = (float)(exp(out->logits[k] - mx) / s);
    return ENG_OK;
}

int explain_predict(const model_t *m, ws_t *ws, const float *input, explain_out_t *out, eng_err_t *err)
{
    memset(out, 0, sizeof *out);
    int64_t t0 = eng_now_ns();
    int rc = first_forward(m, ws, input, 0, out, err);
    out->forward_ms = ms_since(t0);
    if (!rc) {
        out->target = 0;
        for (int k = 1; k < out->n_classes; k++)
            if (out->logits[k] > out->logits[out->target]) out->target = k;
    }
    return rc;
}

int explain_uses_other_inputs(const explain_params_t *p)
{
    return p->faithfulness || (p->methods & methods_needing(MN_OTHER_INPUTS));
}

int explain_run(const model_t *m, ws_t *ws, const float *input, const explain_params_t *p, explain_out_t *out,
                eng_err_t *err)
{
    return explain_run_from(m, ws, input, 0, p, out, err);
}

int explain_run_from(const model_t *m, ws_t *ws, const float *input, int start_node, const explain_params_t *p,
                     explain_out_t *out, eng_err_t *err)
{
    memset(out, 0, sizeof *out);
    const graph_t *g = m->graph;
    for (int i = 0; i < M_COUNT; i++)
        if ((p->methods & BIT(i)) && !methods[i].fn) return eng_errf(err, ENG_EINVAL, "unknown method %d", i);
    ectx_t c = {.m = m, .g = g, .ws = ws, .p = p, .out = out, .x = input, .att_value = -1};
    const uint32_t plain_input = methods_needing(MN_PLAIN_INPUT), plain_layer = methods_needing(MN_PLAIN_LAYER),
                   guided = methods_needing(MN_GUIDED), uses_layer = methods_needing(MN_LAYER);
    float *seed = NULL;
    const value_t *in = &g->values[g->input];
    c.in_size = in->size;
    c.C = (int)in->dims[1];
    c.H = (int)in->dims[2];
    c.W = (int)in->dims[3];
    int64_t t0 = eng_now_ns();
    int rc = first_forward(m, ws, input, start_node, out, err);
    if (rc) return rc;
    c.K = out->n_classes;
    c.logits = out->logits;
    if (p->target >= c.K) {
        rc = eng_errf(err, ENG_EINVAL, "target %d is out of range 0..%d", p->target, c.K - 1);
        goto done;
    }
    c.target = p->target;
    if (c.target < 0) {
        c.target = 0;
        for (int k = 1; k < c.K; k++)
            if (out->logits[k] > out->logits[c.target]) c.target = k;
    }
    out->target = c.target;

    c.layer = -1;
    if (p->methods & uses_layer) {
        c.layer = p->layer >= 0 ? p->layer : m->cam_value;
        if (c.layer < 0) {
            rc = eng_errf(err, ENG_EINVAL,
                          "the model has no CAM layer (no sidecar cam_layer and none detected): pass 'layer'");
            goto done;
        }
        const value_t *lv = &g->values[c.layer];
        if (lv->is_const || (lv->producer < 0 && c.layer != g->input)) {
            rc = eng_errf(err, ENG_EINVAL, "layer '%s' is not an activation", graph_value_user_name(g, c.layer));
            goto done;
        }
        uint32_t needs_4d = 0; /* internals (activations) show any layer; the CAM family needs a feature map */
        for (int i = 0; i < M_COUNT; i++)
            if ((uses_layer & BIT(i)) && method_family(i) != 'i') needs_4d |= BIT(i);
        if ((p->methods & needs_4d) && lv->rank != 4) {
            rc = eng_errf(err, ENG_EINVAL, "layer '%s' has rank %d; the CAM family needs a 4-D feature map",
                          graph_value_user_name(g, c.layer),
                          lv->rank);
            goto done;
        }
        c.layer_size = lv->size;
        c.LC = lv->rank > 1 ? (int)lv->dims[1] : 1;
        c.LH = lv->rank > 2 ? (int)lv->dims[2] : 1;
        c.LW = lv->rank > 3 ? (int)lv->dims[3] : 1;
        c.layer_act = malloc(sizeof(float) * c.layer_size);
        if (!c.layer_act) {
            rc = eng_errf(err, ENG_ENOMEM, "out of memory");
            goto done;
        }
        memcpy(c.layer_act, ws_value(ws, c.layer), sizeof(float) * c.layer_size);
    }
    if (p->methods & BIT(M_ATTENTION) && m->n_attention > 0) {
        c.att_value = m->attention_values[0];
        for (int i = 0; i < m->n_attention; i++)
            if (p->layer == m->attention_values[i]) c.att_value = p->layer;
        c.att_act = malloc(sizeof(float) * g->values[c.att_value].size);
        if (!c.att_act) {
            rc = eng_errf(err, ENG_ENOMEM, "out of memory");
            goto done;
        }
        memcpy(c.att_act, ws_value(ws, c.att_value), sizeof(float) * g->values[c.att_value].size);
    }
    out->forward_ms = ms_since(t0);

    /* the fused backward passes */
    seed = calloc((size_t)c.K, sizeof(float));
    if (!seed) {
        rc = eng_errf(err, ENG_ENOMEM, "out of memory");
        goto done;
    }
    seed[c.target] = 1.f;
    double plain_ms = 0, guided_ms = 0;
    int plain_users = 0, guided_users = 0;
    for (int i = 0; i < M_COUNT; i++) {
        plain_users += (p->methods & BIT(i) & (plain_input | plain_layer)) != 0;
        guided_users += (p->methods & BIT(i) & guided) != 0;
    }
    if (p->methods & (plain_input | plain_layer)) {
        int64_t t = eng_now_ns();
        int caps[2], nc = 0;
        float *outs[2];
        if (p->methods & plain_input) {
            c.grad_input = malloc(sizeof(float) * c.in_size);
            caps[nc] = g->input;
            outs[nc++] = c.grad_input;
        }
        if (p->methods & plain_layer) {
            c.grad_layer = malloc(sizeof(float) * c.layer_size);
            caps[nc] = c.layer;
            outs[nc++] = c.grad_layer;
        }
        if ((p->methods & plain_input && !c.grad_input) || (p->methods & plain_layer && !c.grad_layer)) {
            rc = eng_errf(err, ENG_ENOMEM, "out of memory");
            goto done;
        }
        bw_req_t req = {.seed_value = g->output, .seed = seed, .n_capture = nc, .capture = caps, .capture_out = outs};
        if ((rc = ws_backward(ws, &req, err))) goto done;
        out->passes_backward++;
        plain_ms = ms_since(t);
    }
    if (p->methods & guided) {
        int64_t t = eng_now_ns();
        c.guided_input = malloc(sizeof(float) * c.in_size);
        if (!c.guided_input) {
            rc = eng_errf(err, ENG_ENOMEM, "out of memory");
            goto done;
        }
        int cap = g->input;
        bw_req_t req = {.seed_value = g->output, .seed = seed, .n_capture = 1, .capture = &cap,
                        .capture_out = &c.guided_input, .n_hooks = 1, .hooks = &ex_guided_hook};
        if ((rc = ws_backward(ws, &req, err))) goto done;
        out->passes_backward++;
        guided_ms = ms_since(t);
    }
    for (int i = 0; i < M_COUNT && !rc; i++) {
        if (!(p->methods & BIT(i))) continue;
        method_result_t *r = &out->r[i];
        r->method = i;
        r->layer = -1;
        int64_t t = eng_now_ns();
        rc = methods[i].fn(&c, r, err);
        if (!rc && p->faithfulness && r->map && method_family(i) != 'i' && method_family(i) != 'b')
            rc = ex_faithfulness(&c, r, err);
        r->time_ms = ms_since(t);
        if (BIT(i) & (plain_input | plain_layer)) r->time_ms += plain_ms / plain_users;
        if (BIT(i) & guided) r->time_ms += guided_ms / guided_users;
        r->present = !rc;
    }
done:
    free(seed);
    free(c.layer_act);
    free(c.att_act);
    free(c.grad_input);
    free(c.grad_layer);
    free(c.guided_input);
    out->explain_ms = ms_since(t0) - out->forward_ms;
    if (rc) explain_out_free(out);
    return rc;
}

void explain_out_free(explain_out_t *out)
{
    free(out->logits);
    free(out->probs);
    out->logits = out->probs = NULL;
    for (int i = 0; i < M_COUNT; i++) {
        method_result_t *r = &out->r[i];
        free(r->map);
        free(r->attribution);
        free(r->ch_mean);
        free(r->ch_max);
        free(r->top_channels);
        memset(r, 0, sizeof *r);
    }
}
