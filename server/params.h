/* params.h — the request parameters of docs/API.md, declared once in a table (params.c) that
 * parses them from query strings, multipart fields, JSON bodies and CLI flags alike, checks them
 * against the config limits, and reports errors as (status, detail) for problem+json:
 *   unknown, repeated, wrongly typed or out-of-range parameter -> 422 naming it and its range.
 */
#ifndef EXPLAIND_PARAMS_H
#define EXPLAIND_PARAMS_H

#include <jansson.h>

#include "config.h"
#include "explain.h"
#include "sanity.h"

/* routes a parameter applies to */
enum {
    R_PREDICT = 1,
    R_EXPLAIN = 2,
    R_SANITY = 4,
    R_ACTIVATIONS = 8,
    R_FILTER = 16,
};

enum { OUT_HEATMAP = 1, OUT_OVERLAY = 2, OUT_RAW = 4, OUT_ATTRIBUTION = 8 };

#define PARAM_MAX 64

typedef struct {
    int route;
    explain_params_t ep;
    int target_given;
    char target[256];        /* as given: an index or a label; resolved by params_resolve */
    int top_k;
    char layer[1024];        /* as given; resolved by params_resolve */
    unsigned outputs;
    char colormap[16];
    double alpha;
    int size_model;          /* size=model */
    double clip_percentile;
    /* the sanity parameters, like the explain ones: checks (0: none asked), order, init, init_std,
     * target, noise_samples; full_recompute from the CLI's --full-recompute only (tests, benchmarks).
     * The layers and what comes from the config: sanity_params_from_request. */
    sanity_params_t sp;
    char sanity_layers[4096]; /* "auto", "all", "blocks", "groups" or a comma list */
    int per_image;
    filterviz_params_t fv;
    unsigned char seen[PARAM_MAX];
} request_t;

void params_init(request_t *r, int route);
/* Set one parameter from its string form (query string, form field, CLI). 0 or an HTTP status
 * (422) with detail filled. */
int params_set(request_t *r, const config_t *cfg, const char *name, const char *value, char *detail, size_t dlen);
/* Set one parameter from a JSON value (application/json bodies). */
int params_set_json(request_t *r, const config_t *cfg, const char *name, const json_t *v, char *detail, size_t dlen);
/* What a request means on one model: its explain parameters with the target (index or label) and
 * the layer (name) resolved, and top_k capped at the model's classes. */
typedef struct {
    explain_params_t ep;
    filterviz_params_t fv; /* the filter route: its layer (from the path; "logits" = the class logits) resolved */
    int top_k;
} resolved_t;
/* Resolve names against the model (target label, layer; the filter route's layer and index) and
 * check applicability; r is not changed, so one request serves several models or instances (KServe).
 * 0, 404 (unknown layer or filter of a path) or 422. */
int params_resolve(const request_t *r, const model_t *m, resolved_t *out, char *detail, size_t dlen);
/* Is `name` a parameter of any route? (for the JSON body's non-parameter keys) */
int params_known(const char *name);
/* Names and one-line help, for --help. */
void params_print_help(FILE *f, int route);
/* Name lists for the enum parameters, for docs and errors. */
const char *params_output_name(unsigned bit);
/* The i-th choice of an enum parameter, as the API names it (params_choice("sanity_order",
 * SANITY_ORDER_INDEPENDENT) = "independent"); "?" if there is none. */
const char *params_choice(const char *param, int i);
/* The table for machines (`explaind params --json`): per parameter its name, type, routes,
 * default, choices, bounds (min, max, the config key of the max) and help. */
json_t *params_table_json(const config_t *cfg);

#endif
