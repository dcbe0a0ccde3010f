/* routes.h — the one table of HTTP routes (routes.c): the path template (also the metrics label and
 * what docs/API.md lists), the HTTP method, whether an API key is needed, the request parameters it
 * takes, whether it is a KServe V1 alias, and how many images it takes: one row each in
 * routes.def (which also makes the RT_* constants). The matcher reads the templates themselves,
 * so adding a route is one row plus its handler.
 *
 * Templates: literal text and placeholders
 *   {model}  a model name: [A-Za-z0-9._-], not starting with '.', shorter than MODEL_MAX_NAME
 *   {layer}  any text, '/' included (torch node names such as /layer4/layer4.1/relu_1/Relu)
 *   {index}  1 to 9 decimal digits
 * The dashboard (GET / and its assets) and CORS preflight (OPTIONS on any path) are rows without a
 * template of their own: they are matched by the server (asset table, method). */
#ifndef EXPLAIND_ROUTES_H
#define EXPLAIND_ROUTES_H

#include <stddef.h>

enum {
#define ROUTE(id, ...) RT_##id,
#include "routes.def"
#undef ROUTE
    RT_COUNT
};

/* how many images a POST route takes */
enum {
    IMG_NONE,     /* no upload (filter visualization) */
    IMG_ONE,      /* exactly one */
    IMG_MANY,     /* one or more (KServe instances: one document each) */
    IMG_PROBES,   /* any number; none means the model's probe set (/sanity) */
};

typedef struct {
    const char *path;  /* template, as labelled in /metrics and listed in docs/API.md */
    int post;          /* POST (else GET and HEAD) */
    int auth;          /* needs an API key when api_keys_file is set */
    int params;        /* the parameter set (params.h R_*) of a POST route */
    int kserve;        /* KServe V1 data plane: JSON "instances", "parameters" */
    int images;        /* IMG_* */
} route_t;

/* The row of route rt (RT_*); rows RT_NOT_FOUND and out-of-range ids give the "(unmatched)" row. */
const route_t *route_get(int rt);

typedef struct {
    int route;      /* RT_* */
    char model[128];
    char layer[1024];
    int index;      /* {index} */
} route_match_t;

/* Match a URL path (no query) against the templates: 0 with m filled, or -1 (m->route =
 * RT_NOT_FOUND). A placeholder whose value does not fit its field is no match. */
int route_match(const char *url, route_match_t *m);

#endif
