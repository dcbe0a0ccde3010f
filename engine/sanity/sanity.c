/* sanity.c — the checks of Adebayo et al. 2018, "Sanity Checks for Saliency Maps", per request.
 *
 * Model-parameter randomization (§3.1). The parameterized layers are cut into groups
 * (sanity_make_groups) and randomized step by step:
 *   cascading_top_down   the paper's order: logits first, then each group below, cumulatively;
 *   cascading_bottom_up  input side first, cumulatively (Hedström et al. 2023, Binder et al. 2023);
 *   independent          one group at a time, the others original.
 * At each step every requested method explains the image again — for the original target
 * (sanity_target=fixed, as Quantus) or for the randomized model's own top class (argmax, as the
 * authors' code) — and its map is compared with the original map.
 * Verdict (thresholds t1, t2 from the config): cascading orders pass when spearman_abs < t1 and
 * ssim < t2 at the last step (every group randomized); independent order when they hold at every
 * step (whichever group alone is randomized, the map changes), failing on the first step that
 * does not.
 * Label randomization (§3.2): the same methods, image and target on the model's twin trained on
 * permuted labels. Random logit (Sixt et al. 2020): the original target's map against the map of a
 * seeded random other class.
 *
 * What is compared: gradient-family methods and guided Grad-CAM as their C x H x W attribution;
 * every other method as its 2-D map upsampled (bilinear) to the input size, so all methods are
 * compared on the input's grid as the paper does. Metrics: engine/sanity/metrics.h. Besides each
 * step: the edge similarity of the map (spearman_abs and SSIM against the Sobel edges of the
 * input), the floor (original map against a seeded random Gaussian map) and Efficient MPRT's
 * entropy rise between the original map and the map with every group randomized.
 * Smooth MPRT (Hedström et al. 2023): with sanity_noise_samples = N > 0 every compared map is the
 * mean over N copies of the input with noise N(0, (0.1·(max − min))²), the last copy noise-free.
 *
 * Speed: the workspace first holds the original forward pass; a step only recomputes the forward
 * pass from its lowest randomized node (explain_run_from), because nothing below it changed. Methods
 * that forward other inputs (IG, SmoothGrad, Score-CAM, occlusion) run after the others, in a second
 * sweep over the steps with full passes. Overlays come from the shared cache, pinned for the request.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../explain.h"
#include "../graph.h"
#include "../rng.h"
#include "../sanity.h"
#include "metrics.h"

#define BIT(m) (1u << (m))

typedef struct {
    const sanity_env_t *env;
    const float *x;
    const explain_params_t *ep0;
    const sanity_params_t *sp;
    int C, H, W;
    size_t hw;
    unsigned mask;            /* methods compared */
    int mC[M_COUNT];          /* channels of each method's compared map (0: 2-D) */
    float *orig[M_COUNT];
    float *edge;
    void *scratch;
    sim_prep_t *p_orig[M_COUNT]; /* the original maps, prepared once for all their comparisons */
    sim_prep_t *p_edge;          /* the Sobel edges, prepared once */
    sim_prep_t *p_b;             /* the map being compared (reused) */
    sanity_result_t *out;
} sctx_t;

static int compared(int m) { return m != M_ACTIVATIONS; }

/* The map to compare, at the input's grid: malloc'd, *C = channels (0 for 2-D); NULL if unusable. */
static float *comparable(const sctx_t *c, const method_result_t *r, int *C)
{
    if (r->attribution) {
        size_t n = (size_t)r->attr_dims[0] * r->attr_dims[1] * r->attr_dims[2];
        float *a = malloc(sizeof(float) * n);
        if (a) memcpy(a, r->attribution, sizeof(float) * n);
        *C = r->attr_dims[0];
        return a;
    }
    *C = 0;
    const float *src = r->map;
    int h = r->dims[0], w = r->dims[1];
    float *sum = NULL;
    if (r->rank == 3) { /* multi-channel attention: sum the channels */
        h = r->dims[1];
        w = r->dims[2];
        sum = calloc((size_t)h * w, sizeof(float));
        if (!sum) return NULL;
        for (int k = 0; k < r->dims[0]; k++)
            for (int i = 0; i < h * w; i++) sum[i] += r->map[(size_t)k * h * w + i];
        src = sum;
    } else if (r->rank != 2) {
        return NULL;
    }
    float *a = malloc(sizeof(float) * c->hw);
    if (a) {
        if (h == c->H && w == c->W) memcpy(a, src, sizeof(float) * c->hw);
        else maps_upsample_bilinear(src, h, w, a, c->H, c->W);
    }
    free(sum);
    return a;
}

static size_t map_len(const sctx_t *c, int m) { return c->hw * (size_t)(c->mC[m] ? c->mC[m] : 1); }

/* passes counted by one thread; summed into the result by the caller */
typedef struct {
    int forward, backward;
} passes_t;

/* Explain x on (model, ws) with the methods in `mask`; fill maps[m] (malloc'd, comparable form)
 * and *target. start_node > 0 reuses the workspace's forward prefix (no noise in that case).
 * Safe to run on two threads with two workspaces: it only reads c, except c->mC while the
 * original maps themselves are being computed (c->orig[m] still NULL). */
static int compute_maps(sctx_t *c, const model_t *m, ws_t *ws, unsigned mask, int start_node, int target, float **maps,
                        int *target_out, passes_t *passes, eng_err_t *err)
{
    explain_params_t ep = *c->ep0;
    ep.methods = mask;
    ep.faithfulness = 0;
    ep.target = target;
    const int N = c->sp->noise_samples > 0 ? c->sp->noise_samples : 1;
    const size_t S = c->hw * (size_t)c->C;
    float *xn = NULL;
    double sigma = 0;
    if (N > 1) {
        xn = malloc(sizeof(float) * S);
        if (!xn) return eng_errf(err, ENG_ENOMEM, "out of memory");
        float lo = c->x[0], hi = c->x[0];
        for (size_t i = 0; i < S; i++) {
            lo = fminf(lo, c->x[i]);
            hi = fmaxf(hi, c->x[i]);
        }
        sigma = 0.1 * (hi - lo);
    }
    rng_t rng;
    rng_seed(&rng, c->ep0->seed, 0x53d0);
    for (int i = 0; i < M_COUNT; i++) maps[i] = NULL;
    int rc = ENG_OK;
    for (int s = 0; s < N && !rc; s++) {
        const float *in = c->x;
        if (s < N - 1) { /* noisy copies first, the last one noise-free */
            for (size_t i = 0; i < S; i++) xn[i] = c->x[i] + (float)(sigma * rng_normal(&rng));
            in = xn;
        }
        explain_out_t out;
        rc = explain_run_from(m, ws, in, N > 1 ? 0 : start_node, &ep, &out, err);
        if (rc) break;
        passes->forward += out.passes_forward;
        passes->backward += out.passes_backward;
        if (s == N - 1) *target_out = out.target;
        for (int k = 0; k < M_COUNT && !rc; k++) {
            if (!(mask & BIT(k)) || !out.r[k].present) continue;
            int C;
            float *a = comparable(c, &out.r[k], &C);
            if (!a) {
                rc = eng_errf(err, ENG_ENOMEM, "out of memory");
                break;
            }
            if (!maps[k]) {
                if (!c->orig[k]) c->mC[k] = C; /* the originals set the channel count; steps match it */
                maps[k] = a;
            } else {
                for (size_t i = 0; i < map_len(c, k); i++) maps[k][i] += a[i];
                free(a);
            }
        }
        explain_out_free(&out);
    }
    if (!rc && N > 1)
        for (int k = 0; k < M_COUNT; k++)
            if (maps[k])
                for (size_t i = 0; i < map_len(c, k); i++) maps[k][i] /= (float)N;
    free(xn);
    if (rc)
        for (int k = 0; k < M_COUNT; k++) {
            free(maps[k]);
            maps[k] = NULL;
        }
    return rc;
}

static double nan_if(double v, int why) { return why ? NAN : v; }

/* the original map of method m against b, and b against the input's edges, with a thread's own
 * scratch and prepared-map buffer */
static void compare_with(const sctx_t *c, int m, const float *b, sanity_sim_t *s, void *scratch, sim_prep_t *p_b)
{
    sim_t r;
    sim_prepare(p_b, b, c->mC[m], 1, scratch);
    sim_compare_prepared(c->p_orig[m], p_b, scratch, &r);
    s->spearman = nan_if(r.spearman, r.why_spearman);
    s->spearman_abs = nan_if(r.spearman_abs, r.why_spearman_abs);
    s->ssim = nan_if(r.ssim, r.why_ssim);
    s->hog = nan_if(r.hog, r.why_hog);
    s->hog_cell = r.hog_cell;
    sim_t e;
    sim_compare_prepared(p_b, c->p_edge, scratch, &e); /* p_edge is partial: spearman_abs and ssim */
    s->edge_spearman = nan_if(e.spearman_abs, e.why_spearman_abs);
    s->edge_ssim = nan_if(e.ssim, e.why_ssim);
}

static void compare(sctx_t *c, int m, const float *b, sanity_sim_t *s) { compare_with(c, m, b, s, c->scratch, c->p_b); }

static void verdict(const sctx_t *c, sanity_method_t *sm, const char *what, int check_edges)
{
    const sanity_sim_t *last = &sm->steps[sm->n_steps - 1];
    const double t1 = c->sp->spearman_threshold, t2 = c->sp->ssim_threshold;
    snprintf(sm->criterion, sizeof sm->criterion, "spearman_abs < %g and ssim < %g %s", t1, t2, what);
    if (isnan(last->spearman_abs) || isnan(last->ssim)) {
        sm->passed = -1;
        snprintf(sm->verdict, sizeof sm->verdict,
                 "undetermined: a similarity is undefined (a constant map) %s, so the map cannot be compared", what);
        return;
    }
    sm->passed = last->spearman_abs < t1 && last->ssim < t2;
    size_t l = (size_t)snprintf(sm->verdict, sizeof sm->verdict, "%s: spearman_abs %.3f, ssim %.3f %s",
                                sm->passed ? "passed" : "failed", last->spearman_abs, last->ssim, what);
    if (check_edges && !isnan(last->edge_spearman) && !isnan(sm->original_edge.edge_spearman) && last->edge_spearman >= 0.5 &&
        fabs(last->edge_spearman - sm->original_edge.edge_spearman) < 0.1 && l < sizeof sm->verdict)
        snprintf(sm->verdict + l, sizeof sm->verdict - l,
                 "; its similarity to the input's Sobel edges stays %.3f (original %.3f): it behaves like an edge detector",
                 last->edge_spearman, sm->original_edge.edge_spearman);
}

/* Independent order: each step randomizes one group alone, so no step stands for "the model
 * randomized" and the last step (the input-side group) is no better a witness than the others.
 * Passed iff the map changes whichever group is randomized: spearman_abs < t1 and ssim < t2 at
 * every step. Failed as soon as one step is at or above a threshold (the first such step is named);
 * undetermined when none failed but a similarity is undefined at some step. */
static void verdict_every_step(const sctx_t *c, sanity_method_t *sm)
{
    const double t1 = c->sp->spearman_threshold, t2 = c->sp->ssim_threshold;
    const sanity_result_t *r = c->out;
    snprintf(sm->criterion, sizeof sm->criterion, "spearman_abs < %g and ssim < %g at every step (each group randomized alone)",
             t1, t2);
    int fail = -1, undef = -1, n_fail = 0, hi_sa = -1, hi_ss = -1;
    for (int k = 0; k < sm->n_steps; k++) {
        const sanity_sim_t *s = &sm->steps[k];
        if (isnan(s->spearman_abs) || isnan(s->ssim)) {
            if (undef < 0) undef = k;
            continue;
        }
        if (s->spearman_abs >= t1 || s->ssim >= t2) {
            n_fail++;
            if (fail < 0) fail = k;
        }
        if (hi_sa < 0 || s->spearman_abs > sm->steps[hi_sa].spearman_abs) hi_sa = k;
        if (hi_ss < 0 || s->ssim > sm->steps[hi_ss].ssim) hi_ss = k;
    }
#define GROUP(k) (r->groups->name[r->order[r->step_first[k]]])
    if (fail >= 0) {
        sm->passed = 0;
        snprintf(sm->verdict, sizeof sm->verdict,
                 "failed: with only '%.80s' randomized (step %d of %d) the map keeps spearman_abs %.3f, ssim %.3f; "
                 "%d of %d steps at or above a threshold",
                 GROUP(fail), fail + 1, sm->n_steps, sm->steps[fail].spearman_abs, sm->steps[fail].ssim, n_fail, sm->n_steps);
    } else if (undef >= 0) {
        sm->passed = -1;
        snprintf(sm->verdict, sizeof sm->verdict,
                 "undetermined: a similarity is undefined (a constant map) with only '%.80s' randomized (step %d of %d), "
                 "and no step failed",
                 GROUP(undef), undef + 1, sm->n_steps);
    } else {
        sm->passed = 1;
        snprintf(sm->verdict, sizeof sm->verdict,
                 "passed: below the thresholds at every step; highest spearman_abs %.3f ('%.80s'), highest ssim %.3f ('%.80s')",
                 sm->steps[hi_sa].spearman_abs, GROUP(hi_sa), sm->steps[hi_ss].ssim, GROUP(hi_ss));
    }
#undef GROUP
}

static int alloc_method(sanity_method_t *sm, int steps)
{
    sm->present = 1;
    sm->n_steps = steps;
    sm->steps = calloc((size_t)steps, sizeof(sanity_sim_t));
    sm->targets = calloc((size_t)steps, sizeof(int));
    return sm->steps && sm->targets ? 0 : -1;
}

/* ---- model randomization ------------------------------------------------------------------------- */
/* One thread's share of a sweep over the randomization steps: steps first, first + stride, ... on
 * its own workspace. */
typedef struct {
    sctx_t *c;
    ws_t *ws;
    unsigned mask;
    int first, stride, reuse, set_targets;
    const float **ow, **ob; /* the randomized weights of each group node (shared, read-only) */
    float **last_maps;      /* [method]: the last step's maps (kept for the entropy); others compared and freed */
    int *targets;           /* [step], this job's steps only */
    void *scratch;          /* the thread's own comparison buffers */
    sim_prep_t *p_b;
    passes_t passes;
    long nodes_recomputed, nodes_total;
    int rc;
    eng_err_t err;
} steps_job_t;

static void *run_steps(void *arg)
{
    steps_job_t *j = arg;
    sctx_t *c = j->c;
    const model_t *m = c->env->model;
    sanity_result_t *out = c->out; /* each job writes only its own steps' slots */
    const sanity_groups_t *G = out->groups;
    const int n = G->n;
    if (j->reuse && j->first < n) { /* the original forward pass, for the prefixes */
        ws_clear_overlays(j->ws);
        if ((j->rc = ws_forward(j->ws, c->x, 1, &j->err))) return NULL;
        j->passes.forward++;
    }
    for (int k = j->first; k < n && !j->rc; k += j->stride) {
        if (ws_deadline_passed(j->ws)) {
            j->rc = eng_errf(&j->err, ENG_EDEADLINE, "deadline passed during the sanity checks");
            break;
        }
        ws_clear_overlays(j->ws);
        int start = m->graph->n_nodes;
        for (int q = out->step_first[k]; q < out->step_first[k] + out->step_count[k]; q++) {
            int gi = out->order[q];
            for (int i = G->start[gi]; i < G->start[gi] + G->len[gi]; i++) {
                ws_set_overlay(j->ws, G->nodes[i], j->ow[i], j->ob[i]);
                if (G->nodes[i] < start) start = G->nodes[i];
            }
        }
        j->nodes_recomputed += j->reuse ? m->graph->n_nodes - start : m->graph->n_nodes;
        j->nodes_total += m->graph->n_nodes;
        float *step_maps[M_COUNT];
        int tgt;
        j->rc = compute_maps(c, m, j->ws, j->mask, j->reuse ? start : 0,
                             c->sp->target == SANITY_TARGET_FIXED ? c->ep0->target : -1, step_maps, &tgt, &j->passes,
                             &j->err);
        if (j->rc) break;
        if (j->set_targets) j->targets[k] = tgt;
        for (int mm = 0; mm < M_COUNT; mm++) {
            if (!step_maps[mm]) continue;
            if (out->model[mm].present) compare_with(c, mm, step_maps[mm], &out->model[mm].steps[k], j->scratch, j->p_b);
            if (k == n - 1) j->last_maps[mm] = step_maps[mm];
            else free(step_maps[mm]);
        }
    }
    return NULL;
}

static int run_model_randomization(sctx_t *c, eng_err_t *err)
{
    const sanity_env_t *env = c->env;
    const model_t *m = env->model;
    sanity_result_t *out = c->out;
    const sanity_params_t *sp = c->sp;
    out->groups = calloc(1, sizeof(sanity_groups_t));
    if (!out->groups) return eng_errf(err, ENG_ENOMEM, "out of memory");
    int rc = sp->layers == SANITY_LAYERS_AUTO ? sanity_auto_groups(m, c->ep0, sp, out->groups, &out->auto_info, err)
                                              : sanity_make_groups(m, sp->layers, sp->layer_list, out->groups, err);
    if (rc) return rc;
    const sanity_groups_t *G = out->groups;
    const int n = G->n;
    out->n_steps = n;
    out->order = malloc(sizeof(int) * n);
    out->step_first = malloc(sizeof(int) * n);
    out->step_count = malloc(sizeof(int) * n);
    void **handles = calloc((size_t)G->n_nodes, sizeof(void *));
    const float **ow = calloc((size_t)G->n_nodes, sizeof(float *)), **ob = calloc((size_t)G->n_nodes, sizeof(float *));
    float *last[M_COUNT] = {0};
    /* the helper thread's comparison buffers (this thread uses the request's) */
    void *h_scratch = env->helper_ws ? malloc(sim_scratch_bytes(c->H, c->W)) : NULL;
    sim_prep_t *h_p_b = env->helper_ws ? sim_prep_new(c->H, c->W) : NULL;
    if (!out->order || !out->step_first || !out->step_count || !handles || !ow || !ob ||
        (env->helper_ws && (!h_scratch || !h_p_b))) {
        free(handles); free(ow); free(ob); free(h_scratch); sim_prep_free(h_p_b);
        return eng_errf(err, ENG_ENOMEM, "out of memory");
    }
    for (int k = 0; k < n; k++) {
        out->order[k] = sp->order == SANITY_ORDER_BOTTOM_UP ? k : n - 1 - k;
        out->step_first[k] = sp->order == SANITY_ORDER_INDEPENDENT ? k : 0;
        out->step_count[k] = sp->order == SANITY_ORDER_INDEPENDENT ? 1 : k + 1;
    }
    for (int mm = 0; mm < M_COUNT && !rc; mm++)
        if ((c->mask & BIT(mm)) && c->orig[mm] && alloc_method(&out->model[mm], n))
            rc = eng_errf(err, ENG_ENOMEM, "out of memory");
    for (int i = 0; i < G->n_nodes && !rc; i++)
        rc = sanity_overlay_get(env->cache, m->graph, G->nodes[i], sp->init, sp->init_std, c->ep0->seed, &ow[i], &ob[i],
                                &handles[i], err);
    int targets[SANITY_MAX_GROUPS];
    /* two sweeps: methods that keep the workspace's forward prefix, then the batched ones. With a
     * helper workspace, the steps of a sweep are split between this thread (even steps) and a
     * helper thread (odd steps), each comparing its steps' maps as they come; each step writes only
     * its own slots, so the result is the same. */
    const unsigned batched = methods_needing(MN_OTHER_INPUTS); /* they forward other inputs: full passes */
    unsigned sweeps[2] = {c->mask & ~batched, c->mask & batched};
    for (int sw = 0; sw < 2 && !rc; sw++) {
        if (!sweeps[sw]) continue;
        steps_job_t jobs[2];
        int nj = env->helper_ws ? 2 : 1;
        for (int t = 0; t < nj; t++)
            jobs[t] = (steps_job_t){.c = c, .ws = t ? env->helper_ws : env->ws, .mask = sweeps[sw], .first = t, .stride = nj,
                                    .reuse = sw == 0 && sp->noise_samples == 0 && !sp->full_recompute,
                                    .set_targets = sw == 0 || !(c->mask & ~batched), .ow = ow, .ob = ob, .last_maps = last,
                                    .targets = targets, .scratch = t ? h_scratch : c->scratch, .p_b = t ? h_p_b : c->p_b};
        pthread_t th;
        int threaded = nj == 2 && pthread_create(&th, NULL, run_steps, &jobs[1]) == 0;
        run_steps(&jobs[0]);
        if (threaded) pthread_join(th, NULL);
        else if (nj == 2) run_steps(&jobs[1]); /* no thread: the helper's steps here, on its workspace */
        for (int t = 0; t < nj; t++) {
            out->forward_passes += jobs[t].passes.forward;
            out->backward_passes += jobs[t].passes.backward;
            out->nodes_recomputed += jobs[t].nodes_recomputed;
            out->nodes_total += jobs[t].nodes_total;
            if (jobs[t].rc && !rc) {
                rc = jobs[t].rc;
                *err = jobs[t].err;
            }
        }
        if (env->helper_ws) ws_clear_overlays(env->helper_ws);
    }
    ws_clear_overlays(env->ws);
    for (int i = 0; i < G->n_nodes; i++) sanity_overlay_put(env->cache, handles[i]);
    free(handles); free(ow); free(ob); free(h_scratch); sim_prep_free(h_p_b);
    if (!rc) {
        for (int mm = 0; mm < M_COUNT; mm++) {
            sanity_method_t *sm = &out->model[mm];
            if (!sm->present) continue;
            for (int k = 0; k < n; k++) sm->targets[k] = targets[k];
            /* Efficient MPRT: entropy of the original map and of the map with everything randomized
             * (the last cascading step; for independent order, the last step's single group) */
            size_t len = map_len(c, mm);
            int why = 0;
            sm->entropy_original = map_entropy(c->orig[mm], len, &why);
            sm->entropy_randomized = last[mm] ? map_entropy(last[mm], len, &why) : NAN;
            sm->entropy_rise = metric_entropy_rise(sm->entropy_original, sm->entropy_randomized, &why);
            if (why) sm->entropy_rise = NAN;
            if (sp->order == SANITY_ORDER_INDEPENDENT) verdict_every_step(c, sm);
            else verdict(c, sm, "at the last randomization step", 1);
        }
    }
    for (int mm = 0; mm < M_COUNT; mm++) free(last[mm]);
    return rc;
}

/* ---- label randomization and random logit ----------------------------------------------------------- */
static int same_input(const model_t *a, const model_t *b) { return model_same_input(a, b); }

static int run_single(sctx_t *c, const model_t *m, ws_t *ws, int target, sanity_method_t *res, const char *what,
                      eng_err_t *err)
{
    float *maps[M_COUNT];
    int tgt;
    if (ws == c->env->ws) ws_clear_overlays(ws);
    passes_t passes = {0, 0};
    int rc = compute_maps(c, m, ws, c->mask, 0, target, maps, &tgt, &passes, err);
    c->out->forward_passes += passes.forward;
    c->out->backward_passes += passes.backward;
    if (rc) return rc;
    for (int mm = 0; mm < M_COUNT; mm++) {
        if (!maps[mm] || !c->orig[mm]) {
            free(maps[mm]);
            continue;
        }
        sanity_method_t *sm = &res[mm];
        if (alloc_method(sm, 1)) {
            free(maps[mm]);
            return eng_errf(err, ENG_ENOMEM, "out of memory");
        }
        sm->targets[0] = tgt;
        compare(c, mm, maps[mm], &sm->steps[0]);
        sm->floor = c->out->model[mm].present ? c->out->model[mm].floor : sm->floor;
        verdict(c, sm, what, 0);
        free(maps[mm]);
    }
    return ENG_OK;
}

/* ---- the request -------------------------------------------------------------------------------------- */
int sanity_run(const sanity_env_t *env, const float *x, const explain_params_t *ep, const explain_out_t *orig,
               const sanity_params_t *sp, sanity_result_t *out, eng_err_t *err)
{
    memset(out, 0, sizeof *out);
    int64_t t0 = eng_now_ns();
    const model_t *m = env->model;
    const value_t *in = &m->graph->values[m->graph->input];
    sctx_t c = {.env = env, .x = x, .sp = sp, .out = out};
    explain_params_t ep0 = *ep;
    ep0.target = orig->target; /* the original target, fixed */
    c.ep0 = &ep0;
    c.C = (int)in->dims[1];
    c.H = (int)in->dims[2];
    c.W = (int)in->dims[3];
    c.hw = (size_t)c.H * c.W;
    for (int mm = 0; mm < M_COUNT; mm++)
        if ((ep->methods & BIT(mm)) && compared(mm)) c.mask |= BIT(mm);
    if (!c.mask) return eng_errf(err, ENG_EINVAL, "sanity checks need at least one method with a map (activations has none to compare)");
    c.scratch = malloc(sim_scratch_bytes(c.H, c.W));
    c.edge = malloc(sizeof(float) * c.hw);
    c.p_edge = sim_prep_new(c.H, c.W);
    c.p_b = sim_prep_new(c.H, c.W);
    float *gray = malloc(sizeof(float) * c.hw);
    int rc = (!c.scratch || !c.edge || !gray || !c.p_edge || !c.p_b) ? eng_errf(err, ENG_ENOMEM, "out of memory") : ENG_OK;
    if (!rc) { /* the Sobel edges of the input, as the edge method computes them */
        explain_input_gray(m, x, gray);
        maps_sobel(gray, c.H, c.W, c.edge);
        sim_prepare(c.p_edge, c.edge, 0, 0, c.scratch);
    }
    free(gray);
    /* the original maps: the request's own, unless smooth MPRT needs them averaged over noise */
    if (!rc) {
        if (sp->noise_samples > 0) {
            int tgt;
            ws_clear_overlays(env->ws);
            passes_t passes = {0, 0};
            rc = compute_maps(&c, m, env->ws, c.mask, 0, ep0.target, c.orig, &tgt, &passes, err);
            out->forward_passes += passes.forward;
            out->backward_passes += passes.backward;
        } else {
            for (int mm = 0; mm < M_COUNT && !rc; mm++)
                if ((c.mask & BIT(mm)) && orig->r[mm].present) {
                    c.orig[mm] = comparable(&c, &orig->r[mm], &c.mC[mm]);
                    if (!c.orig[mm]) rc = eng_errf(err, ENG_ENOMEM, "out of memory");
                }
        }
        for (int mm = 0; mm < M_COUNT && !rc; mm++)
            if (c.orig[mm]) {
                if (!(c.p_orig[mm] = sim_prep_new(c.H, c.W))) rc = eng_errf(err, ENG_ENOMEM, "out of memory");
                else sim_prepare(c.p_orig[mm], c.orig[mm], c.mC[mm], 1, c.scratch);
            }
    }
    if (!rc && (sp->checks & SANITY_CHECK_MODEL)) {
        out->has_model = 1;
        rc = run_model_randomization(&c, err);
        /* the floor: the original map against a seeded random Gaussian map of the same shape */
        for (int mm = 0; mm < M_COUNT && !rc; mm++) {
            sanity_method_t *sm = &out->model[mm];
            if (!sm->present) continue;
            size_t len = map_len(&c, mm);
            float *noise = malloc(sizeof(float) * len);
            if (!noise) {
                rc = eng_errf(err, ENG_ENOMEM, "out of memory");
                break;
            }
            map_fill_normal(noise, len, ep->seed, 0xf1000 + (uint64_t)mm);
            sanity_sim_t f;
            compare(&c, mm, noise, &f);
            sm->floor = f;
            compare(&c, mm, c.orig[mm], &sm->original_edge);
            free(noise);
        }
    }
    if (!rc && (sp->checks & SANITY_CHECK_LABEL)) {
        out->has_label = 1;
        if (!m->twin) {
            snprintf(out->label_reason, sizeof out->label_reason,
                     "model '%s' has no label_randomized_twin in its sidecar: train one with models/train.py "
                     "(see models/README.md) and name it there", m->name);
        } else if (!env->twin) {
            snprintf(out->twin, sizeof out->twin, "%s", m->twin);
            snprintf(out->label_reason, sizeof out->label_reason, "the twin model '%s' is not loaded", m->twin);
        } else if (!same_input(m, env->twin) || env->twin->n_labels != m->n_labels) {
            snprintf(out->twin, sizeof out->twin, "%s", m->twin);
            snprintf(out->label_reason, sizeof out->label_reason,
                     "the twin '%s' takes a different input or has a different number of classes", m->twin);
        } else {
            snprintf(out->twin, sizeof out->twin, "%s", m->twin);
            out->label_available = 1;
            rc = run_single(&c, env->twin, env->twin_ws, ep0.target, out->label, "on the label-randomized twin", err);
        }
    }
    if (!rc && (sp->checks & SANITY_CHECK_RANDOM_LOGIT)) {
        out->has_random_logit = 1;
        if (orig->n_classes < 2) {
            rc = eng_errf(err, ENG_EINVAL, "random_logit needs at least two classes");
        } else {
            rng_t r;
            rng_seed(&r, ep->seed, 0x10917);
            int other = (int)(rng_u64(&r) % (uint64_t)(orig->n_classes - 1));
            if (other >= orig->target) other++;
            out->other_class = other;
            rc = run_single(&c, m, env->ws, other, out->random_logit, "for a random other class", err);
        }
    }
    ws_clear_overlays(env->ws);
    for (int mm = 0; mm < M_COUNT; mm++) {
        free(c.orig[mm]);
        sim_prep_free(c.p_orig[mm]);
    }
    sim_prep_free(c.p_edge);
    sim_prep_free(c.p_b);
    free(c.scratch);
    free(c.edge);
    out->ms = (double)(eng_now_ns() - t0) / 1e6;
    if (rc) sanity_result_free(out);
    return rc;
}

void sanity_result_free(sanity_result_t *r)
{
    sanity_method_t *all[3] = {r->model, r->label, r->random_logit};
    for (int k = 0; k < 3; k++)
        for (int mm = 0; mm < M_COUNT; mm++) {
            free(all[k][mm].steps);
            free(all[k][mm].targets);
        }
    free(r->groups);
    free(r->order);
    free(r->step_first);
    free(r->step_count);
    memset(r, 0, sizeof *r);
}
