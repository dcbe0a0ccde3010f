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

typedef enum { P_INT, P_DBL, P_ENUM, P_LIST, P_BOOL, P_STR, P_U64 } pkind_t;

struct prow;
typedef int (*store_fn)(request_t *r, const struct prow *row, const config_t *cfg, const char *v, char *d, size_t dl);

typedef struct prow {
    const char *name;
    pkind_t kind;
    int routes;
    const char *const *choices; /* P_ENUM / P_LIST values (METHOD_CHOICES: read from the method table) */
    double min;                  /* P_INT / P_DBL lower bound */
    size_t max_off;              /* offset of the config key bounding it (or SIZE_MAX: use max) */
    int max_is_double;
    double max;
    size_t off;                  /* where it lives in request_t */
    const char *help;
} prow_t;

#define RQ(field) offsetof(request_t, field)
#define CF(field) offsetof(config_t, field)
#define NOCF ((size_t)-1)
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
static const char *const c_sanity[] = {"model", "label", "random_logit", "all", NULL};
static const char *const c_order[] = {"cascading_top_down", "cascading_bottom_up", "independent", NULL};
static const char *const c_init[] = {"default", "normal", NULL};
static const char *const c_starget[] = {"fixed", "argmax", NULL};

static const prow_t rows[] = {
    {"methods", P_LIST, ALLX, c_methods, 0, NOCF, 0, 0, RQ(ep.methods), "comma list of methods"},
    {"target", P_STR, ALLX | R_ACTIVATIONS, NULL, 0, NOCF, 0, 0, RQ(target), "class index or label to explain (default: top-1)"},
    {"top_k", P_INT, R_PREDICT | ALLX | R_ACTIVATIONS, NULL, 1, CF(top_k_max), 0, 0, RQ(top_k), "predictions returned"},
    {"layer", P_STR, ALLX, NULL, 0, NOCF, 0, 0, RQ(layer), "target layer of the CAM family, activations and attention"},
    {"output", P_LIST, ALLX | R_ACTIVATIONS | R_FILTER, c_output, 0, NOCF, 0, 0, RQ(outputs), "heatmap_png, overlay_png, raw, attribution"},
    {"colormap", P_ENUM, ALLX | R_ACTIVATIONS, c_colormap, 0, NOCF, 0, 0, RQ(colormap), "jet, turbo, viridis, inferno, gray"},
    {"alpha", P_DBL, ALLX, NULL, 0, NOCF, 0, 1, RQ(alpha), "overlay opacity"},
    {"size", P_ENUM, ALLX | R_ACTIVATIONS | R_FILTER, c_size, 0, NOCF, 0, 0, RQ(size_model), "PNG size: input or model"},
    {"reduce", P_ENUM, ALLX, c_reduce, 0, NOCF, 0, 0, RQ(ep.reduce), "channel reduction of gradient maps into raw"},
    {"clip_percentile", P_DBL, ALLX | R_ACTIVATIONS, NULL, 0, NOCF, 0, 100, RQ(clip_percentile), "upper percentile clipped for PNGs"},
    {"ig_steps", P_INT, ALLX, NULL, 1, CF(ig_steps_max), 0, 0, RQ(ep.ig_steps), "integrated gradients steps"},
    {"ig_method", P_ENUM, ALLX, c_ig, 0, NOCF, 0, 0, RQ(ep.ig_method), "quadrature rule (Captum's names)"},
    {"baseline", P_ENUM, ALLX, c_baseline, 0, NOCF, 0, 0, RQ(ep.baseline), "IG / occlusion baseline"},
    {"smoothgrad_samples", P_INT, ALLX, NULL, 1, CF(smoothgrad_samples_max), 0, 0, RQ(ep.smoothgrad_samples), "SmoothGrad samples"},
    {"smoothgrad_noise", P_DBL, ALLX, NULL, 0, CF(smoothgrad_noise_max), 1, 0, RQ(ep.smoothgrad_noise), "noise stdev / (max - min) of the input"},
    {"smoothgrad_type", P_ENUM, ALLX, c_sgtype, 0, NOCF, 0, 0, RQ(ep.smoothgrad_type), "smoothgrad, smoothgrad_sq, vargrad"},
    {"smoothgrad_base", P_ENUM, ALLX, c_sgbase, 0, NOCF, 0, 0, RQ(ep.smoothgrad_base), "method averaged by SmoothGrad"},
    {"scorecam_channels", P_INT, ALLX, NULL, 0, CF(scorecam_channels_max), 0, 0, RQ(ep.scorecam_channels), "0 = all channels, k = top-k by mean activation"},
    {"occlusion_window", P_INT, ALLX, NULL, 1, CF(occlusion_window_max), 0, 0, RQ(ep.occlusion_window), "occlusion window side (model pixels)"},
    {"occlusion_stride", P_INT, ALLX, NULL, 1, CF(occlusion_window_max), 0, 0, RQ(ep.occlusion_stride), "occlusion stride"},
    {"seed", P_U64, ALLX | R_FILTER, NULL, 0, NOCF, 0, 0, RQ(ep.seed), "seed of every random choice"},
    {"sanity", P_LIST, ALLX, c_sanity, 0, NOCF, 0, 0, RQ(sanity), "model, label, random_logit or all"},
    {"sanity_order", P_ENUM, ALLX, c_order, 0, NOCF, 0, 0, RQ(sanity_order), "randomization order"},
    {"sanity_layers", P_STR, ALLX, NULL, 0, NOCF, 0, 0, RQ(sanity_layers), "auto (every layer, or blocks, within sanity_auto_gflop), all, blocks, groups or a comma list of layer names"},
    {"sanity_init", P_ENUM, ALLX, c_init, 0, NOCF, 0, 0, RQ(sanity_init), "re-initialization: default or normal"},
    {"sanity_init_std", P_DBL, ALLX, NULL, 0, NOCF, 0, 10, RQ(sanity_init_std), "stdev for sanity_init=normal"},
    {"sanity_target", P_ENUM, ALLX, c_starget, 0, NOCF, 0, 0, RQ(sanity_target), "fixed or argmax"},
    {"sanity_noise_samples", P_INT, ALLX, NULL, 0, CF(sanity_noise_samples_max), 0, 0, RQ(sanity_noise_samples), "smooth MPRT samples"},
    {"faithfulness", P_BOOL, ALLX, NULL, 0, NOCF, 0, 0, RQ(ep.faithfulness), "add deletion/insertion AUC per method"},
    {"faithfulness_steps", P_INT, ALLX, NULL, 1, CF(faithfulness_steps_max), 0, 0, RQ(ep.faithfulness_steps), "deletion/insertion steps"},
    {"per_image", P_BOOL, R_SANITY, NULL, 0, NOCF, 0, 0, RQ(per_image), "include the per-image documents"},
    {"steps", P_INT, R_FILTER, NULL, 1, CF(filter_steps_max), 0, 0, RQ(fv.steps), "gradient ascent steps"},
    {"lr", P_DBL, R_FILTER, NULL, 0, NOCF, 0, 100, RQ(fv.lr), "gradient ascent step size (on the RMS-normalized gradient)"},
    {"l2_decay", P_DBL, R_FILTER, NULL, 0, NOCF, 0, 1, RQ(fv.l2_decay), "L2 decay per step"},
    {"jitter", P_INT, R_FILTER, NULL, 0, NOCF, 0, 64, RQ(fv.jitter), "random shift per step, pixels"},
    {"blur_every", P_INT, R_FILTER, NULL, 0, NOCF, 0, 1000, RQ(fv.blur_every), "blur every k steps (0 = never)"},
    {"blur_sigma", P_DBL, R_FILTER, NULL, 0, NOCF, 0, 10, RQ(fv.blur_sigma), "blur sigma, pixels"},
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

void params_init(request_t *r, int route)
{
    memset(r, 0, sizeof *r);
    r->route = route;
    explain_params_default(&r->ep);
    filterviz_params_default(&r->fv);
    r->top_k = 5;
    r->outputs = OUT_HEATMAP | OUT_OVERLAY;
    strcpy(r->colormap, "jet");
    r->alpha = 0.5;
    r->clip_percentile = 99.5;
    strcpy(r->sanity_layers, "auto");
    r->sanity_init_std = 0.01;
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

static double row_max(const prow_t *row, const config_t *cfg)
{
    if (row->max_off == NOCF) return row->max;
    const char *b = (const char *)cfg + row->max_off;
    return row->max_is_double ? *(const double *)b : (double)*(const int *)b;
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
    case P_DBL: {
        double x = strtod(v, &end), mx = row_max(row, cfg);
        /* underflow (1e-320) is not an error: strtod returns the nearest subnormal or 0, which is
         * the number asked for as closely as a double holds it; overflow is (x is then inf) */
        if (errno == ERANGE && fabs(x) <= DBL_MIN) errno = 0;
        if (errno || end == v || *end || !isfinite(x) || x < row->min || x > mx) {
            snprintf(d, dl, "%s must be a finite number in %g..%g", row->name, row->min, mx);
            return 422;
        }
        if (row->off == RQ(ep.smoothgrad_noise) || row->off == RQ(fv.lr) || row->off == RQ(fv.l2_decay) ||
            row->off == RQ(fv.blur_sigma))
            *(float *)dst = (float)x;
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
                if (row->off == RQ(sanity) && !strcmp(choices[i], "all")) bits |= SANITY_MODEL | SANITY_LABEL | SANITY_RANDOM_LOGIT;
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
        snprintf(buf, sizeof buf, row->kind == P_DBL ? "%.17g" : "%.0f", json_real_value(v));
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

int params_resolve(const request_t *r, const model_t *m, resolved_t *out, char *d, size_t dl)
{
    const graph_t *g = m->graph;
    explain_params_t *ep = &out->ep;
    *ep = r->ep;
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
    if (r->layer[0]) {
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
        fprintf(f, "  --%-22s %s%s%s%s\n", row->name, row->help, *b ? " [" : "", b, *b ? "]" : "");
    }
}
