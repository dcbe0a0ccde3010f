/* params.c — the request parameter table (see params.h). One row per parameter of docs/API.md:
 * name, kind, routes, and how to store and bound it. */
#include "params.h"
#include "utf8.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum { P_INT, P_DBL, P_FLT, P_ENUM, P_LIST, P_BOOL, P_STR, P_U64 } pkind_t;

/* One row per parameter: its name; type; the routes it applies to; where it lives in request_t; its
 * default in the API's own form (what a client would send; "" = none: target and layer resolve
 * to the top-1 class and the model's CAM layer, the occlusion sizes to 1/8 of the side); its
 * choices (P_ENUM, P_LIST); its bounds (min, and max or the config key holding the max); the help
 * line of --help. params_init applies the defaults, so this column is the only copy the server
 * has: the engine's explain_params_default / filterviz_params_default, openapi.yaml's `default:`
 * and the dashboard's DEFAULTS are compared with it by tests (unit/test_params.c, e2e/test_params_table.py). */
typedef struct prow {
    const char *name;
    pkind_t kind;
    int routes;
    size_t off;
    const char *def;
    const char *const *choices;
    double min, max;     /* P_INT / P_DBL / P_FLT */
    const char *max_key; /* the config key holding the max (a *_max key), or NULL: max */
    const char *help;
} prow_t;

#define RQ(field) offsetof(request_t, field)
#define ALLX (R_EXPLAIN | R_SANITY)
/* choices read from the method table (explain.h method_names) rather than written here */
static const char *const c_methods[] = {NULL}, *const c_sgbase[] = {NULL};
static const char *const c_output[] = {"heatmap_png", "overlay_png", "raw", "attribution", NULL};
static const char *const c_colormap[] = {"jet", "turbo", "viridis", "inferno", "gray", NULL};
static const char *const c_size[] = {"input", "model", NULL};
static const char *const c_reduce[] = {"abs_sum", "abs_max", "sum", "l2", NULL};
static const char *const c_ig[] = {"riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre", NULL};
static const char *const c_baseline[] = {"zero", "black", "blur", "uniform", NULL};
static const char *const c_sgtype[] = {"smoothgrad", "smoothgrad_sq", "vargrad", NULL};
/* bit i / value i: SANITY_CHECK_*, SANITY_ORDER_*, SANITY_INIT_*, SANITY_TARGET_* of sanity.h */
static const char *const c_sanity[] = {"model", "label", "random_logit", "all", NULL};
static const char *const c_order[] = {"cascading_top_down", "cascading_bottom_up", "independent", NULL};
static const char *const c_init[] = {"default", "normal", NULL};
static const char *const c_starget[] = {"fixed", "argmax", NULL};

#define NOMAX 0, NULL
static const prow_t rows[] = {
    {"methods", P_LIST, ALLX, RQ(ep.methods), "gradcam", c_methods, 0, NOMAX, "comma list of methods"},
    {"target", P_STR, ALLX | R_ACTIVATIONS, RQ(target), "", NULL, 0, NOMAX, "class index or label to explain (default: top-1)"},
    {"top_k", P_INT, R_PREDICT | ALLX | R_ACTIVATIONS, RQ(top_k), "5", NULL, 1, 0, "top_k_max", "predictions returned"},
    {"layer", P_STR, ALLX, RQ(layer), "", NULL, 0, NOMAX, "target layer of the CAM family, activations and attention"},
    {"output", P_LIST, ALLX | R_ACTIVATIONS | R_FILTER, RQ(outputs), "heatmap_png,overlay_png", c_output, 0, NOMAX, "heatmap_png, overlay_png, raw, attribution"},
    {"colormap", P_ENUM, ALLX | R_ACTIVATIONS, RQ(colormap), "jet", c_colormap, 0, NOMAX, "jet, turbo, viridis, inferno, gray"},
    {"alpha", P_DBL, ALLX, RQ(alpha), "0.5", NULL, 0, 1, NULL, "overlay opacity"},
    {"size", P_ENUM, ALLX | R_ACTIVATIONS | R_FILTER, RQ(size_model), "input", c_size, 0, NOMAX, "PNG size: input or model"},
    {"reduce", P_ENUM, ALLX, RQ(ep.reduce), "abs_sum", c_reduce, 0, NOMAX, "channel reduction of gradient maps into raw"},
    {"clip_percentile", P_DBL, ALLX | R_ACTIVATIONS, RQ(clip_percentile), "99.5", NULL, 0, 100, NULL, "upper percentile clipped for PNGs"},
    {"ig_steps", P_INT, ALLX, RQ(ep.ig_steps), "50", NULL, 1, 0, "ig_steps_max", "integrated gradients steps"},
    {"ig_method", P_ENUM, ALLX, RQ(ep.ig_method), "gausslegendre", c_ig, 0, NOMAX, "quadrature rule (Captum's names)"},
    {"baseline", P_ENUM, ALLX, RQ(ep.baseline), "zero", c_baseline, 0, NOMAX, "IG / occlusion baseline"},
    {"smoothgrad_samples", P_INT, ALLX, RQ(ep.smoothgrad_samples), "25", NULL, 1, 0, "smoothgrad_samples_max", "SmoothGrad samples"},
    {"smoothgrad_noise", P_FLT, ALLX, RQ(ep.smoothgrad_noise), "0.15", NULL, 0, 0, "smoothgrad_noise_max", "noise stdev / (max - min) of the input"},
    {"smoothgrad_type", P_ENUM, ALLX, RQ(ep.smoothgrad_type), "smoothgrad", c_sgtype, 0, NOMAX, "smoothgrad, smoothgrad_sq, vargrad"},
    {"smoothgrad_base", P_ENUM, ALLX, RQ(ep.smoothgrad_base), "saliency", c_sgbase, 0, NOMAX, "method averaged by SmoothGrad"},
    {"scorecam_channels", P_INT, ALLX, RQ(ep.scorecam_channels), "0", NULL, 0, 0, "scorecam_channels_max", "0 = all channels, k = top-k by mean activation"},
    {"occlusion_window", P_INT, ALLX, RQ(ep.occlusion_window), "", NULL, 1, 0, "occlusion_window_max", "occlusion window side (model pixels)"},
    {"occlusion_stride", P_INT, ALLX, RQ(ep.occlusion_stride), "", NULL, 1, 0, "occlusion_window_max", "occlusion stride"},
    {"seed", P_U64, ALLX | R_FILTER, RQ(ep.seed), "0", NULL, 0, NOMAX, "seed of every random choice"},
    {"sanity", P_LIST, ALLX, RQ(sp.checks), "", c_sanity, 0, NOMAX, "model, label, random_logit or all"},
    {"sanity_order", P_ENUM, ALLX, RQ(sp.order), "cascading_top_down", c_order, 0, NOMAX, "randomization order"},
    {"sanity_layers", P_STR, ALLX, RQ(sanity_layers), "auto", NULL, 0, NOMAX, "auto (every layer, or blocks, within sanity_auto_gflop), all, blocks, groups or a comma list of layer names"},
    {"sanity_init", P_ENUM, ALLX, RQ(sp.init), "default", c_init, 0, NOMAX, "re-initialization: default or normal"},
    {"sanity_init_std", P_FLT, ALLX, RQ(sp.init_std), "0.01", NULL, 0, 10, NULL, "stdev for sanity_init=normal"},
    {"sanity_target", P_ENUM, ALLX, RQ(sp.target), "fixed", c_starget, 0, NOMAX, "fixed or argmax"},
    {"sanity_noise_samples", P_INT, ALLX, RQ(sp.noise_samples), "0", NULL, 0, 0, "sanity_noise_samples_max", "smooth MPRT samples"},
    {"faithfulness", P_BOOL, ALLX, RQ(ep.faithfulness), "false", NULL, 0, NOMAX, "add deletion/insertion AUC per method"},
    {"faithfulness_steps", P_INT, ALLX, RQ(ep.faithfulness_steps), "20", NULL, 1, 0, "faithfulness_steps_max", "deletion/insertion steps"},
    {"per_image", P_BOOL, R_SANITY, RQ(per_image), "false", NULL, 0, NOMAX, "include the per-image documents"},
    {"steps", P_INT, R_FILTER, RQ(fv.steps), "64", NULL, 1, 0, "filter_steps_max", "gradient ascent steps"},
    {"lr", P_FLT, R_FILTER, RQ(fv.lr), "0.1", NULL, 0, 100, NULL, "gradient ascent step size (on the RMS-normalized gradient)"},
    {"l2_decay", P_FLT, R_FILTER, RQ(fv.l2_decay), "1e-4", NULL, 0, 1, NULL, "L2 decay per step"},
    {"jitter", P_INT, R_FILTER, RQ(fv.jitter), "1", NULL, 0, 64, NULL, "random shift per step, pixels"},
    {"blur_every", P_INT, R_FILTER, RQ(fv.blur_every), "4", NULL, 0, 1000, NULL, "blur every k steps (0 = never)"},
    {"blur_sigma", P_FLT, R_FILTER, RQ(fv.blur_sigma), "0.5", NULL, 0, 10, NULL, "blur sigma, pixels"},
};
#define NROWS ((int)(sizeof rows / sizeof rows[0]))

static const char *const *row_choices(const prow_t *row)
{
    if (row->choices == c_methods) return method_names(0);
    if (row->choices == c_sgbase) return method_names(MN_SMOOTHABLE);
    return row->choices;
}

const char *params_output_name(unsigned bit)
{
    for (int i = 0; c_output[i]; i++)
        if (bit == 1u << i) return c_output[i];
    return "?";
}

static int store(request_t *r, const prow_t *row, const config_t *cfg, const char *v, char *d, size_t dl);

void params_init(request_t *r, int route)
{
    memset(r, 0, sizeof *r);
    r->route = route;
    /* what no row holds (target and layer unresolved, the activations grid's size, the filter's
     * layer and index from the path), then every row's default */
    explain_params_default(&r->ep);
    filterviz_params_default(&r->fv);
    for (int i = 0; i < NROWS; i++) {
        char d[256];
        if (*rows[i].def && store(r, &rows[i], NULL, rows[i].def, d, sizeof d)) abort(); /* a bad row: a bug */
    }
}

const char *params_choice(const char *param, int i)
{
    for (int r = 0; r < NROWS; r++) {
        if (strcmp(rows[r].name, param) || !rows[r].choices) continue;
        const char *const *c = row_choices(&rows[r]);
        for (int k = 0; c[k]; k++)
            if (k == i) return c[k];
    }
    return "?";
}

int params_known(const char *name)
{
    for (int i = 0; i < NROWS; i++)
        if (!strcmp(rows[i].name, name)) return 1;
    return 0;
}

static const char *route_name(int route)
{
    switch (route) {
    case R_PREDICT: return "predict";
    case R_EXPLAIN: return "explain";
    case R_SANITY: return "sanity";
    case R_ACTIVATIONS: return "activations";
    default: return "filter visualization";
    }
}

static int choices_text(const char *const *c, char *buf, size_t n)
{
    size_t l = 0;
    buf[0] = 0;
    for (int i = 0; c[i] && l < n; i++) l += (size_t)snprintf(buf + l, n - l, "%s%s", i ? ", " : "", c[i]);
    return 0;
}

static int find_choice(const char *const *c, const char *v, size_t len)
{
    for (int i = 0; c[i]; i++)
        if (strlen(c[i]) == len && !strncmp(c[i], v, len)) return i;
    return -1;
}

/* the upper bound: the row's max, or the config key it names (no bound without a config: defaults) */
static double row_max(const prow_t *row, const config_t *cfg)
{
    if (!row->max_key) return row->max;
    return cfg ? config_number(cfg, row->max_key) : INFINITY;
}

static int store(request_t *r, const prow_t *row, const config_t *cfg, const char *v, char *d, size_t dl)
{
    char *dst = (char *)r + row->off;
    char *end;
    errno = 0;
    switch (row->kind) {
    case P_INT: {
        while (isspace((unsigned char)*v)) v++;
        long long x = strtoll(v, &end, 10);
        double mx = row_max(row, cfg);
        if (errno || end == v || *end || (double)x < row->min || (double)x > mx) {
            snprintf(d, dl, "%s must be an integer in %.0f..%.0f", row->name, row->min, mx);
            return 422;
        }
        *(int *)dst = (int)x;
        return 0;
    }
    case P_U64: {
        /* strtoull skips blanks and then takes "-1" as 2^64 - 1: " -1" (seed=%20-1) must not pass */
        while (isspace((unsigned char)*v)) v++;
        if (!isdigit((unsigned char)*v)) {
            snprintf(d, dl, "%s must be a non-negative integer", row->name);
            return 422;
        }
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || end == v || *end) {
            snprintf(d, dl, "%s must be a non-negative integer below 2^64", row->name);
            return 422;
        }
        *(uint64_t *)dst = x;
        return 0;
    }
    case P_DBL:
    case P_FLT: {
        double x = strtod(v, &end), mx = row_max(row, cfg);
        /* underflow (1e-320) is not an error: strtod returns the nearest subnormal or 0, which is
         * the number asked for as closely as a double holds it; overflow is (x is then inf) */
        if (errno == ERANGE && fabs(x) <= DBL_MIN) errno = 0;
        if (errno || end == v || *end || !isfinite(x) || x < row->min || x > mx) {
            snprintf(d, dl, "%s must be a finite number in %g..%g", row->name, row->min, mx);
            return 422;
        }
        if (row->kind == P_FLT) *(float *)dst = (float)x;
        else *(double *)dst = x;
        return 0;
    }
    case P_BOOL:
        if (!strcmp(v, "true") || !strcmp(v, "1")) *(int *)dst = 1;
        else if (!strcmp(v, "false") || !strcmp(v, "0")) *(int *)dst = 0;
        else {
            snprintf(d, dl, "%s must be true or false", row->name);
            return 422;
        }
        return 0;
    case P_STR: {
        size_t cap = row->off == RQ(target) ? sizeof r->target : row->off == RQ(layer) ? sizeof r->layer : sizeof r->sanity_layers;
        if (strlen(v) >= cap || !*v) {
            snprintf(d, dl, "%s must be a non-empty string of at most %zu bytes", row->name, cap - 1);
            return 422;
        }
        memcpy(dst, v, strlen(v) + 1);
        if (row->off == RQ(target)) r->target_given = 1;
        return 0;
    }
    case P_ENUM: {
        const char *const *choices = row_choices(row);
        int i = find_choice(choices, v, strlen(v));
        if (i < 0) {
            char b[512];
            choices_text(choices, b, sizeof b);
            snprintf(d, dl, "%s must be one of: %s", row->name, b);
            return 422;
        }
        if (row->off == RQ(colormap)) snprintf(r->colormap, sizeof r->colormap, "%s", choices[i]);
        else if (row->off == RQ(ep.smoothgrad_base)) r->ep.smoothgrad_base = method_from_name(choices[i]);
        else *(int *)dst = i;
        return 0;
    }
    case P_LIST: {
        const char *const *choices = row_choices(row);
        unsigned bits = 0;
        const char *p = v;
        int any = 0;
        while (*p) {
            const char *e = strchr(p, ',');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            while (len && isspace((unsigned char)*p)) { p++; len--; }
            while (len && isspace((unsigned char)p[len - 1])) len--;
            if (len) {
                int i = find_choice(choices, p, len);
                if (i < 0) {
                    char b[1024];
                    choices_text(choices, b, sizeof b);
                    snprintf(d, dl, "%s: unknown value '%.*s'; expected any of: %s", row->name, utf8_cut(p, len > 64 ? 64 : (int)len), p, b);
                    return 422;
                }
                if (row->off == RQ(sp.checks) && !strcmp(choices[i], "all"))
                    bits |= SANITY_CHECK_MODEL | SANITY_CHECK_LABEL | SANITY_CHECK_RANDOM_LOGIT;
                else if (row->off == RQ(ep.methods)) bits |= 1u << method_from_name(choices[i]);
                else bits |= 1u << i;
                any = 1;
            }
            if (!e) break;
            p = e + 1;
        }
        if (!any) {
            snprintf(d, dl, "%s must list at least one value", row->name);
            return 422;
        }
        *(unsigned *)dst = bits;
        return 0;
    }
    }
    return 0;
}

static const prow_t *find_row(request_t *r, const char *name, int *idx, char *d, size_t dl, int *status)
{
    for (int i = 0; i < NROWS; i++) {
        if (strcmp(rows[i].name, name)) continue;
        if (!(rows[i].routes & r->route)) {
            snprintf(d, dl, "parameter '%s' does not apply to %s", name, route_name(r->route));
            *status = 422;
            return NULL;
        }
        if (r->seen[i]) {
            snprintf(d, dl, "parameter '%s' is given more than once", name);
            *status = 422;
            return NULL;
        }
        r->seen[i] = 1;
        *idx = i;
        return &rows[i];
    }
    char safe[80];
    size_t k = 0;
    for (const char *p = name; *p && k < sizeof safe - 1; p++) safe[k++] = isprint((unsigned char)*p) ? *p : '?';
    safe[k] = 0;
    snprintf(d, dl, "unknown parameter '%s'", safe);
    *status = 422;
    return NULL;
}

int params_set(request_t *r, const config_t *cfg, const char *name, const char *value, char *d, size_t dl)
{
    int idx, st = 0;
    const prow_t *row = find_row(r, name, &idx, d, dl, &st);
    if (!row) return st;
    return store(r, row, cfg, value, d, dl);
}

int params_set_json(request_t *r, const config_t *cfg, const char *name, const json_t *v, char *d, size_t dl)
{
    int idx, st = 0;
    const prow_t *row = find_row(r, name, &idx, d, dl, &st);
    if (!row) return st;
    char buf[8192];
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (strlen(s) >= sizeof buf) {
            snprintf(d, dl, "%s is too long", name);
            return 422;
        }
        snprintf(buf, sizeof buf, "%s", s);
    } else if (json_is_integer(v)) {
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
    } else if (json_is_real(v)) {
        if (row->kind == P_INT || row->kind == P_U64) {
            double x = json_real_value(v);
            if (x != floor(x)) {
                snprintf(d, dl, "%s must be an integer", name);
                return 422;
            }
        }
        snprintf(buf, sizeof buf, row->kind == P_DBL || row->kind == P_FLT ? "%.17g" : "%.0f", json_real_value(v));
    } else if (json_is_boolean(v)) {
        if (row->kind != P_BOOL) {
            snprintf(d, dl, "%s must not be a boolean", name);
            return 422;
        }
        strcpy(buf, json_is_true(v) ? "true" : "false");
    } else if (json_is_array(v) && (row->kind == P_LIST || row->off == RQ(sanity_layers))) {
        size_t l = 0, i;
        json_t *e;
        buf[0] = 0;
        json_array_foreach(v, i, e)
        {
            if (!json_is_string(e)) {
                snprintf(d, dl, "%s must be an array of strings", name);
                return 422;
            }
            int n = snprintf(buf + l, sizeof buf - l, "%s%s", i ? "," : "", json_string_value(e));
            if (n < 0 || (size_t)n >= sizeof buf - l) {
                snprintf(d, dl, "%s is too long", name);
                return 422;
            }
            l += (size_t)n;
        }
    } else {
        snprintf(d, dl, "%s has the wrong JSON type", name);
        return 422;
    }
    return store(r, row, cfg, buf, d, dl);
}

/* The filter route's path: /layers/{layer}/filters/{index}/visualize, where {layer} may be "logits"
 * (the class logits, index a class). 404 for a layer or a filter the model does not have. */
static int resolve_filter(const request_t *r, const model_t *m, filterviz_params_t *fv, char *d, size_t dl)
{
    const int logits = !strcmp(r->layer, "logits");
    char sug[600]; /* node, value or module path (docs/MODELS.md, "Layer names") */
    int v = logits ? -1 : graph_resolve_layer(m->graph, r->layer, sug, sizeof sug);
    if (v < 0 && !logits) {
        snprintf(d, dl, "layer '%.*s' is not in model '%s'; closest: %s", utf8_cut(r->layer, 200), r->layer, m->name, sug);
        return 404;
    }
    fv->layer = v;
    value_info_t vi;
    graph_value_info(m->graph, v < 0 ? graph_output_value(m->graph) : v, &vi);
    int nch = vi.rank >= 2 ? (int)vi.dims[1] : 1;
    if (fv->index >= nch) {
        snprintf(d, dl, "filter %d does not exist: layer '%.*s' has %d channels", fv->index, utf8_cut(r->layer, 200),
                 r->layer, nch);
        return 404;
    }
    return 0;
}

int params_resolve(const request_t *r, const model_t *m, resolved_t *out, char *d, size_t dl)
{
    const graph_t *g = m->graph;
    explain_params_t *ep = &out->ep;
    *ep = r->ep;
    out->fv = r->fv;
    out->top_k = r->top_k;
    ep->target = -1;
    if (r->target_given) {
        char *end;
        errno = 0;
        long t = strtol(r->target, &end, 10);
        if (!errno && end != r->target && !*end) {
            if (t < 0 || t >= m->n_labels) {
                snprintf(d, dl, "target must be a class index in 0..%d or a label", m->n_labels - 1);
                return 422;
            }
            ep->target = (int)t;
        } else {
            for (int k = 0; k < m->n_labels; k++)
                if (!strcmp(m->labels[k], r->target)) ep->target = k;
            if (ep->target < 0) {
                snprintf(d, dl, "target '%.*s' is not a label of model '%s'", utf8_cut(r->target, 64), r->target, m->name);
                return 422;
            }
        }
    }
    ep->layer = -1;
    if (r->route == R_FILTER) {
        int rc = resolve_filter(r, m, &out->fv, d, dl);
        if (rc) return rc;
    } else if (r->layer[0]) {
        char sug[600];
        ep->layer = graph_resolve_layer(g, r->layer, sug, sizeof sug);
        if (ep->layer < 0) { /* the layer parameter: 422; the path of /layers/{layer}/activations: 404 */
            snprintf(d, dl, "layer '%.*s' is not a node, value or module of model '%s'; closest: %s",
                     utf8_cut(r->layer, 200), r->layer, m->name, sug);
            return r->route == R_ACTIVATIONS ? 404 : 422;
        }
    }
    if (out->top_k > m->n_labels) out->top_k = m->n_labels;
    if ((ep->methods & (1u << M_ATTENTION)) && m->n_attention == 0) {
        snprintf(d, dl, "method 'attention' does not apply: model '%s' declares no attention_layers", m->name);
        return 422;
    }
    if (ep->ig_method == IG_RIEMANN_TRAPEZOID && ep->ig_steps < 2 &&
        (ep->methods & ((1u << M_INTEGRATED_GRADIENTS) | (1u << M_SMOOTHGRAD)))) {
        snprintf(d, dl, "ig_method riemann_trapezoid needs ig_steps >= 2");
        return 422;
    }
    if (ep->occlusion_window && (ep->occlusion_window > m->input.width || ep->occlusion_window > m->input.height)) {
        snprintf(d, dl, "occlusion_window must be at most the model input side (%d)",
                 m->input.width < m->input.height ? m->input.width : m->input.height);
        return 422;
    }
    if (ep->occlusion_stride && ep->occlusion_window && ep->occlusion_stride > ep->occlusion_window) {
        snprintf(d, dl, "occlusion_stride must not exceed occlusion_window");
        return 422;
    }
    return 0;
}

void params_print_help(FILE *f, int route)
{
    for (int i = 0; i < NROWS; i++) {
        const prow_t *row = &rows[i];
        if (!(row->routes & route)) continue;
        char b[512] = "";
        if (row->choices) choices_text(row_choices(row), b, sizeof b);
        fprintf(f, "  --%-22s %s%s%s%s%s%s%s\n", row->name, row->help, *row->def ? " (default: " : "", row->def,
                *row->def ? ")" : "", *b ? " [" : "", b, *b ? "]" : "");
    }
}

json_t *params_table_json(const config_t *cfg)
{
    static const char *const kind_names[] = {[P_INT] = "integer", [P_DBL] = "number", [P_FLT] = "number",
                                             [P_ENUM] = "enum", [P_LIST] = "list", [P_BOOL] = "boolean",
                                             [P_STR] = "string", [P_U64] = "integer"};
    static const int route_bits[] = {R_PREDICT, R_EXPLAIN, R_SANITY, R_ACTIVATIONS, R_FILTER};
    json_t *a = json_array();
    for (int i = 0; i < NROWS; i++) {
        const prow_t *row = &rows[i];
        json_t *routes = json_array(), *o;
        for (size_t k = 0; k < sizeof route_bits / sizeof route_bits[0]; k++)
            if (row->routes & route_bits[k]) json_array_append_new(routes, json_string(route_name(route_bits[k])));
        o = json_pack("{s:s, s:s, s:o, s:s, s:s}", "name", row->name, "type", kind_names[row->kind], "routes", routes,
                      "default", row->def, "help", row->help);
        if (row->choices) {
            json_t *c = json_array();
            for (const char *const *p = row_choices(row); *p; p++) json_array_append_new(c, json_string(*p));
            json_object_set_new(o, "choices", c);
        }
        if (row->kind == P_INT || row->kind == P_DBL || row->kind == P_FLT) {
            json_object_set_new(o, "min", json_real(row->min));
            json_object_set_new(o, "max", json_real(row_max(row, cfg)));
            if (row->max_key) json_object_set_new(o, "max_key", json_string(row->max_key));
        }
        json_array_append_new(a, o);
    }
    return a;
}
