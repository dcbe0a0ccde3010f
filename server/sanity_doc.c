/* sanity_doc.c — JSON for the sanity checks (see sanity_doc.h). Undefined similarities (a constant
 * map) are null, never 0, with "undefined" naming them and the reason. */
#include "sanity_doc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "doc.h"

static const char *const sim_keys[] = {"spearman", "spearman_abs", "ssim", "hog", "edge_spearman", "edge_ssim"};
#define NSIM 6

static double sim_get(const sanity_sim_t *s, int k)
{
    switch (k) {
    case 0: return s->spearman;
    case 1: return s->spearman_abs;
    case 2: return s->ssim;
    case 3: return s->hog;
    case 4: return s->edge_spearman;
    default: return s->edge_ssim;
    }
}

static json_t *num_or_null(double v) { return isnan(v) || isinf(v) ? json_null() : json_real(v); }

void sanity_params_from_request(const request_t *rq, const config_t *cfg, sanity_params_t *sp)
{
    *sp = rq->sp;
    sp->auto_budget_flops = cfg->sanity_auto_gflop * 1e9;
    sp->n_images = 1;
    if (!strcmp(rq->sanity_layers, "auto")) sp->layers = SANITY_LAYERS_AUTO;
    else if (!strcmp(rq->sanity_layers, "all")) sp->layers = SANITY_LAYERS_ALL;
    else if (!strcmp(rq->sanity_layers, "blocks")) sp->layers = SANITY_LAYERS_BLOCKS;
    else if (!strcmp(rq->sanity_layers, "groups")) sp->layers = SANITY_LAYERS_GROUPS;
    else {
        sp->layers = SANITY_LAYERS_LIST;
        sp->layer_list = rq->sanity_layers;
    }
    sp->spearman_threshold = cfg->sanity_spearman_threshold;
    sp->ssim_threshold = cfg->sanity_ssim_threshold;
}

static json_t *sim_json(const sanity_sim_t *s, int with_hog_cell)
{
    json_t *o = json_object(), *undef = json_array();
    for (int k = 0; k < NSIM; k++) {
        double v = sim_get(s, k);
        json_object_set_new(o, sim_keys[k], num_or_null(v));
        if (isnan(v)) json_array_append_new(undef, json_string(sim_keys[k]));
    }
    if (with_hog_cell) json_object_set_new(o, "hog_cell", json_integer(s->hog_cell));
    if (json_array_size(undef)) {
        json_object_set_new(o, "undefined", undef);
        json_object_set_new(o, "undefined_reason", json_string("a compared map is constant (or empty), so its rank "
                                                              "correlation / SSIM is undefined"));
    } else {
        json_decref(undef);
    }
    return o;
}

/* what sanity_layers=auto chose: {"chose": "all"|"blocks"|"blocks_cut", "steps", "all_steps",
 * "block_steps", "estimated_gflop", "budget_gflop"} */
static json_t *sanity_auto_json(const sanity_auto_t *a)
{
    const char *what = a->chose == SANITY_AUTO_ALL ? "all" : a->chose == SANITY_AUTO_BLOCKS ? "blocks" : "blocks_cut";
    return json_pack("{s:s, s:i, s:i, s:i, s:f, s:f}", "chose", what, "steps", a->steps, "all_steps", a->all_steps,
                     "block_steps", a->block_steps, "estimated_gflop", a->est_flops / 1e9, "budget_gflop", a->budget_flops / 1e9);
}

static json_t *passed_json(int passed) { return passed < 0 ? json_null() : json_boolean(passed); }

static json_t *step_names(const sanity_result_t *r, int k)
{
    json_t *arr = json_array();
    for (int q = r->step_first[k]; q < r->step_first[k] + r->step_count[k]; q++)
        json_array_append_new(arr, json_string(r->groups->name[r->order[q]]));
    return arr;
}

static json_t *method_json(const model_t *m, const sanity_method_t *sm, const sanity_result_t *r, int model_section)
{
    json_t *o = json_object();
    if (model_section) {
        json_t *steps = json_array();
        for (int k = 0; k < sm->n_steps; k++) {
            json_t *s = sim_json(&sm->steps[k], 1);
            /* the groups randomized cumulatively are implied by the order; list the step's new ones */
            json_t *names = json_array();
            json_array_append_new(names, json_string(r->groups->name[r->order[r->step_first[k] + r->step_count[k] - 1]]));
            json_object_set_new(s, "randomized", names);
            json_object_set_new(s, "target", json_integer(sm->targets[k]));
            json_array_append_new(steps, s);
        }
        json_object_set_new(o, "steps", steps);
        json_object_set_new(o, "floor", sim_json(&sm->floor, 0));
        json_object_set_new(o, "original_edge", json_pack("{s:o, s:o}", "edge_spearman", num_or_null(sm->original_edge.edge_spearman),
                                                          "edge_ssim", num_or_null(sm->original_edge.edge_ssim)));
        json_object_set_new(o, "entropy_rise", num_or_null(sm->entropy_rise));
    } else {
        json_t *s = sim_json(&sm->steps[0], 1);
        json_object_update(o, s);
        json_decref(s);
        json_object_set_new(o, "target", json_integer(sm->targets[0]));
    }
    (void)m;
    json_object_set_new(o, "passed", passed_json(sm->passed));
    json_object_set_new(o, "criterion", json_string(sm->criterion));
    json_object_set_new(o, "verdict", json_string(sm->verdict));
    return o;
}

json_t *sanity_doc(const model_t *m, const request_t *rq, const sanity_params_t *sp, const sanity_result_t *r)
{
    json_t *doc = json_object();
    if (r->has_model) {
        json_t *mr = json_pack("{s:s, s:I, s:s, s:s, s:s}", "order", params_choice("sanity_order", sp->order), "seed",
                               (json_int_t)rq->ep.seed, "layers", rq->sanity_layers, "init", params_choice("sanity_init", sp->init),
                               "target", params_choice("sanity_target", sp->target));
        if (sp->init == SANITY_INIT_NORMAL) json_object_set_new(mr, "init_std", json_real(sp->init_std));
        if (sp->layers == SANITY_LAYERS_AUTO) json_object_set_new(mr, "layers_auto", sanity_auto_json(&r->auto_info));
        json_t *steps = json_array();
        for (int k = 0; k < r->n_steps; k++) json_array_append_new(steps, json_pack("{s:o}", "randomized", step_names(r, k)));
        json_object_set_new(mr, "steps", steps);
        json_t *ms = json_object();
        for (int mm = 0; mm < M_COUNT; mm++)
            if (r->model[mm].present) json_object_set_new(ms, method_name(mm), method_json(m, &r->model[mm], r, 1));
        json_object_set_new(mr, "methods", ms);
        json_object_set_new(mr, "nodes_recomputed", json_integer(r->nodes_recomputed));
        json_object_set_new(mr, "nodes_total", json_integer(r->nodes_total));
        json_object_set_new(doc, "model_randomization", mr);
    }
    if (r->has_label) {
        json_t *lr = json_object();
        json_object_set_new(lr, "twin", r->twin[0] ? json_string(r->twin) : json_null());
        json_object_set_new(lr, "status", json_string(r->label_available ? "ok" : "unavailable"));
        if (!r->label_available) json_object_set_new(lr, "reason", json_string(r->label_reason));
        json_t *ms = json_object();
        for (int mm = 0; mm < M_COUNT; mm++)
            if (r->label[mm].present) json_object_set_new(ms, method_name(mm), method_json(m, &r->label[mm], r, 0));
        json_object_set_new(lr, "methods", ms);
        json_object_set_new(doc, "label_randomization", lr);
    }
    if (r->has_random_logit) {
        json_t *rl = json_pack("{s:i, s:s}", "other_class", r->other_class, "other_label", m->labels[r->other_class]);
        json_t *ms = json_object();
        for (int mm = 0; mm < M_COUNT; mm++)
            if (r->random_logit[mm].present) json_object_set_new(ms, method_name(mm), method_json(m, &r->random_logit[mm], r, 0));
        json_object_set_new(rl, "methods", ms);
        json_object_set_new(doc, "random_logit", rl);
    }
    json_object_set_new(doc, "passes", json_pack("{s:i, s:i}", "forward", r->forward_passes, "backward", r->backward_passes));
    json_object_set_new(doc, "time_ms", json_real(r->ms));
    return doc;
}

/* ---- aggregation ------------------------------------------------------------------------------------- */
typedef struct {
    double sum[NSIM], sq[NSIM];
    int n[NSIM];
} acc_t;

struct sanity_agg {
    int images;
    int n_steps;
    char (*step_name)[96];
    acc_t model[M_COUNT][SANITY_MAX_GROUPS];
    acc_t floor[M_COUNT], label[M_COUNT], rlogit[M_COUNT];
    acc_t original_edge[M_COUNT]; /* the original map against the input's edges (edge_* only) */
    double erise_sum[M_COUNT], erise_sq[M_COUNT];
    int erise_n[M_COUNT];
    int passed[3][M_COUNT], decided[3][M_COUNT], present[3][M_COUNT];
    int has_model, has_label, has_rlogit, label_available;
    char twin[MODEL_MAX_NAME], label_reason[256];
    json_t *steps_doc;
    sanity_auto_t auto_info; /* sanity_layers=auto: the first image's choice (the same for all) */
};

sanity_agg_t *sanity_agg_create(void) { return calloc(1, sizeof(sanity_agg_t)); }

void sanity_agg_free(sanity_agg_t *a)
{
    if (!a) return;
    json_decref(a->steps_doc);
    free(a);
}

static void acc_add(acc_t *a, const sanity_sim_t *s)
{
    for (int k = 0; k < NSIM; k++) {
        double v = sim_get(s, k);
        if (isnan(v)) continue;
        a->sum[k] += v;
        a->sq[k] += v * v;
        a->n[k]++;
    }
}

void sanity_agg_add(sanity_agg_t *a, const sanity_result_t *r)
{
    a->images++;
    if (r->has_model) {
        a->has_model = 1;
        if (!a->steps_doc) {
            a->auto_info = r->auto_info;
            a->n_steps = r->n_steps < SANITY_MAX_GROUPS ? r->n_steps : SANITY_MAX_GROUPS;
            a->steps_doc = json_array();
            for (int k = 0; k < a->n_steps; k++) json_array_append_new(a->steps_doc, json_pack("{s:o}", "randomized", step_names(r, k)));
        }
        for (int mm = 0; mm < M_COUNT; mm++) {
            const sanity_method_t *sm = &r->model[mm];
            if (!sm->present) continue;
            a->present[0][mm] = 1;
            for (int k = 0; k < sm->n_steps && k < a->n_steps; k++) acc_add(&a->model[mm][k], &sm->steps[k]);
            acc_add(&a->floor[mm], &sm->floor);
            acc_add(&a->original_edge[mm], &sm->original_edge);
            if (!isnan(sm->entropy_rise)) {
                a->erise_sum[mm] += sm->entropy_rise;
                a->erise_sq[mm] += sm->entropy_rise * sm->entropy_rise;
                a->erise_n[mm]++;
            }
            a->decided[0][mm] += sm->passed >= 0;
            a->passed[0][mm] += sm->passed > 0;
        }
    }
    if (r->has_label) {
        a->has_label = 1;
        a->label_available = r->label_available;
        snprintf(a->twin, sizeof a->twin, "%s", r->twin);
        snprintf(a->label_reason, sizeof a->label_reason, "%s", r->label_reason);
        for (int mm = 0; mm < M_COUNT; mm++)
            if (r->label[mm].present) {
                a->present[1][mm] = 1;
                acc_add(&a->label[mm], &r->label[mm].steps[0]);
                a->decided[1][mm] += r->label[mm].passed >= 0;
                a->passed[1][mm] += r->label[mm].passed > 0;
            }
    }
    if (r->has_random_logit) {
        a->has_rlogit = 1;
        for (int mm = 0; mm < M_COUNT; mm++)
            if (r->random_logit[mm].present) {
                a->present[2][mm] = 1;
                acc_add(&a->rlogit[mm], &r->random_logit[mm].steps[0]);
                a->decided[2][mm] += r->random_logit[mm].passed >= 0;
                a->passed[2][mm] += r->random_logit[mm].passed > 0;
            }
    }
}

static json_t *acc_json(const acc_t *a)
{
    json_t *o = json_object();
    for (int k = 0; k < NSIM; k++) {
        double mean = a->n[k] ? a->sum[k] / a->n[k] : NAN;
        double var = a->n[k] > 1 ? (a->sq[k] - a->sum[k] * mean) / (a->n[k] - 1) : NAN; /* sample std */
        json_object_set_new(o, sim_keys[k], json_pack("{s:o, s:o, s:i}", "mean", num_or_null(mean), "std",
                                                      num_or_null(var > 0 ? sqrt(var) : (a->n[k] > 1 ? 0 : NAN)), "count", a->n[k]));
    }
    return o;
}

/* verdict on the means: the same criterion as per image, applied to the mean similarities */
static json_t *agg_verdict(const acc_t *last, const sanity_params_t *sp, int passed, int decided, int images, const char *what)
{
    double sa = last->n[1] ? last->sum[1] / last->n[1] : NAN, ss = last->n[2] ? last->sum[2] / last->n[2] : NAN;
    json_t *o = json_object();
    char crit[200];
    snprintf(crit, sizeof crit, "mean spearman_abs < %g and mean ssim < %g %s", sp->spearman_threshold, sp->ssim_threshold, what);
    if (isnan(sa) || isnan(ss)) json_object_set_new(o, "passed", json_null());
    else json_object_set_new(o, "passed", json_boolean(sa < sp->spearman_threshold && ss < sp->ssim_threshold));
    json_object_set_new(o, "criterion", json_string(crit));
    json_object_set_new(o, "images_passed", json_integer(passed));
    json_object_set_new(o, "images_decided", json_integer(decided));
    json_object_set_new(o, "images", json_integer(images));
    return o;
}

/* independent order: the criterion on the means of every step (engine/sanity/sanity.c,
 * verdict_every_step): failed if one step's mean is at or above a threshold, else undecided if one
 * is undefined, else passed */
static json_t *agg_verdict_every_step(const acc_t *steps, int n_steps, const sanity_params_t *sp, int passed, int decided,
                                      int images)
{
    json_t *o = agg_verdict(&steps[n_steps - 1], sp, passed, decided, images, "at every step (each group randomized alone)");
    int fail = 0, undef = 0;
    for (int k = 0; k < n_steps; k++) {
        double sa = steps[k].n[1] ? steps[k].sum[1] / steps[k].n[1] : NAN, ss = steps[k].n[2] ? steps[k].sum[2] / steps[k].n[2] : NAN;
        if (isnan(sa) || isnan(ss)) undef = 1;
        else if (sa >= sp->spearman_threshold || ss >= sp->ssim_threshold) fail = 1;
    }
    json_object_set_new(o, "passed", fail ? json_false() : undef ? json_null() : json_true());
    return o;
}

/* label randomization and random logit: one comparison per image, aggregated per method */
static json_t *agg_single_section(const sanity_agg_t *a, int check, const acc_t *acc, const sanity_params_t *sp,
                                  const char *what)
{
    json_t *ms = json_object();
    for (int mm = 0; mm < M_COUNT; mm++) {
        if (!a->present[check][mm]) continue;
        json_t *o = agg_verdict(&acc[mm], sp, a->passed[check][mm], a->decided[check][mm], a->images, what);
        json_t *sims = acc_json(&acc[mm]);
        json_object_update(o, sims);
        json_decref(sims);
        json_object_set_new(ms, method_name(mm), o);
    }
    return ms;
}

json_t *sanity_agg_doc(const sanity_agg_t *a, const model_t *m, const request_t *rq, const sanity_params_t *sp)
{
    (void)m;
    json_t *doc = json_object();
    if (a->has_model) {
        json_t *mr = json_pack("{s:s, s:I, s:s, s:s, s:s, s:O}", "order", params_choice("sanity_order", sp->order), "seed",
                               (json_int_t)rq->ep.seed, "layers", rq->sanity_layers, "init", params_choice("sanity_init", sp->init),
                               "target", params_choice("sanity_target", sp->target), "steps",
                               a->steps_doc ? a->steps_doc : json_array());
        if (sp->layers == SANITY_LAYERS_AUTO) json_object_set_new(mr, "layers_auto", sanity_auto_json(&a->auto_info));
        json_t *ms = json_object();
        for (int mm = 0; mm < M_COUNT; mm++) {
            if (!a->present[0][mm]) continue;
            json_t *steps = json_array();
            for (int k = 0; k < a->n_steps; k++) json_array_append_new(steps, acc_json(&a->model[mm][k]));
            double em = a->erise_n[mm] ? a->erise_sum[mm] / a->erise_n[mm] : NAN;
            json_t *o = sp->order == SANITY_ORDER_INDEPENDENT
                            ? agg_verdict_every_step(a->model[mm], a->n_steps, sp, a->passed[0][mm], a->decided[0][mm], a->images)
                            : agg_verdict(&a->model[mm][a->n_steps - 1], sp, a->passed[0][mm], a->decided[0][mm], a->images,
                                          "at the last randomization step");
            json_object_set_new(o, "steps", steps);
            json_object_set_new(o, "floor", acc_json(&a->floor[mm]));
            json_t *oe = acc_json(&a->original_edge[mm]), *oe2 = json_object();
            json_object_set(oe2, "edge_spearman", json_object_get(oe, "edge_spearman"));
            json_object_set(oe2, "edge_ssim", json_object_get(oe, "edge_ssim"));
            json_decref(oe);
            json_object_set_new(o, "original_edge", oe2);
            json_object_set_new(o, "entropy_rise", json_pack("{s:o, s:i}", "mean", num_or_null(em), "count", a->erise_n[mm]));
            json_object_set_new(ms, method_name(mm), o);
        }
        json_object_set_new(mr, "methods", ms);
        json_object_set_new(doc, "model_randomization", mr);
    }
    if (a->has_label) {
        json_t *lr = json_pack("{s:o, s:s}", "twin", a->twin[0] ? json_string(a->twin) : json_null(), "status",
                               a->label_available ? "ok" : "unavailable");
        if (!a->label_available) json_object_set_new(lr, "reason", json_string(a->label_reason));
        json_t *ms = agg_single_section(a, 1, a->label, sp, "on the label-randomized twin");
        json_object_set_new(lr, "methods", ms);
        json_object_set_new(doc, "label_randomization", lr);
    }
    if (a->has_rlogit) {
        json_t *rl = json_object(), *ms = agg_single_section(a, 2, a->rlogit, sp, "for a random other class");
        json_object_set_new(rl, "methods", ms);
        json_object_set_new(doc, "random_logit", rl);
    }
    return doc;
}

json_t *sanity_report_image_doc(const model_t *m, const request_t *rq, const sanity_params_t *sp, const sanity_result_t *r,
                                int index, int target)
{
    json_t *one = json_pack("{s:i, s:i, s:s}", "index", index, "target", target, "label", m->labels[target]);
    json_object_set_new(one, "sanity", sanity_doc(m, rq, sp, r));
    return one;
}

json_t *sanity_report_doc(const model_t *m, const request_t *rq, const sanity_params_t *sp, const sanity_agg_t *agg,
                          const sanity_report_t *rep)
{
    json_t *doc = json_object();
    json_object_set_new(doc, "request_id", json_string(rep->request_id));
    json_object_set_new(doc, "model", json_string(m->name));
    json_object_set_new(doc, "images", json_integer(rep->images));
    json_object_set_new(doc, "images_from", json_string(rep->probe_files ? "probe_set" : "request"));
    if (rep->probe_files) {
        json_t *files = json_array();
        for (int i = 0; i < rep->images; i++) json_array_append_new(files, json_string(rep->probe_files[i]));
        char dir[MODEL_MAX_NAME + 16];
        snprintf(dir, sizeof dir, "probes/%s", m->name);
        json_object_set_new(doc, "probe_set", json_pack("{s:s, s:o}", "dir", dir, "files", files));
    }
    json_t *ml = json_array();
    for (int k = 0; k < M_COUNT; k++)
        if (rq->ep.methods & (1u << k)) json_array_append_new(ml, json_string(method_name(k)));
    json_object_set_new(doc, "methods", ml);
    json_object_set_new(doc, "sanity", sanity_agg_doc(agg, m, rq, sp));
    if (rep->per_image) json_object_set_new(doc, "per_image", rep->per_image);
    json_object_set_new(doc, "timing_ms", json_pack("{s:f, s:f, s:f}", "explain", rep->explain_ms, "sanity", rep->sanity_ms,
                                                    "total", rep->total_ms));
    return doc;
}
