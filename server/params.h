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

/* routes a parameter applies to */
enum {
    R_PREDICT = 1,
    R_EXPLAIN = 2,
    R_SANITY = 4,
    R_ACTIVATIONS = 8,
    R_FILTER = 16,
};

enum { OUT_HEATMAP = 1, OUT_OVERLAY = 2, OUT_RAW = 4, OUT_ATTRIBUTION = 8 };
enum { SANITY_MODEL = 1, SANITY_LABEL = 2, SANITY_RANDOM_LOGIT = 4 };
enum { ORDER_TOP_DOWN, ORDER_BOTTOM_UP, ORDER_INDEPENDENT };
enum { INIT_DEFAULT, INIT_NORMAL };
enum { STARGET_FIXED, STARGET_ARGMAX };

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
    unsigned sanity;
    int sanity_order;
    char sanity_layers[4096]; /* "all", "blocks", "groups" or a comma list */
    int sanity_init;
    double sanity_init_std;
    int sanity_target;
    int sanity_noise_samples;
    int sanity_full_recompute; /* CLI --full-recompute only (tests, benchmarks): no prefix reuse */
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
    int top_k;
} resolved_t;
/* Resolve names against the model (target label, layer) and check applicability; r is not changed,
 * so one request serves several models or instances (KServe). 0, 404 (unknown layer) or 422. */
int params_resolve(const request_t *r, const model_t *m, resolved_t *out, char *detail, size_t dlen);
/* Is `name` a parameter of any route? (for the JSON body's non-parameter keys) */
int params_known(const char *name);
/* Names and one-line help, for --help. */
void params_print_help(FILE *f, int route);
/* Name lists for the enum parameters, for docs and errors. */
const char *params_output_name(unsigned bit);

#endif
