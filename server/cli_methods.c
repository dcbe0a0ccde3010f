/* cli_methods.c — the two tables a request is made of, printed from the tables themselves, never
 * from a copy:
 *   explaind methods [--json]  the method table (engine/explain/explain.c, through explain.h's
 *                              accessors), in table order (the `methods` parameter's choices)
 *   explaind params --json     the request parameter table (server/params.c): types, defaults,
 *                              bounds (with the built-in config's *_max values), choices
 *   explaind routes --json     the route table (server/routes.c): template, HTTP method, API key,
 *                              parameter set, KServe alias, images
 * tests/e2e/test_methods.py checks openapi.yaml's method lists, its defaults and the dashboard's
 * (web/app.js) against them; tests/e2e/helpers.py reads the method names from the first. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "explain.h"
#include "params.h"
#include "routes.h"

static const struct {
    unsigned bit;
    const char *name;
} needs_names[] = {
    {MN_PLAIN_INPUT, "plain_input_gradient"}, {MN_PLAIN_LAYER, "plain_layer_gradient"}, {MN_GUIDED, "guided"},
    {MN_LAYER, "layer"},                      {MN_OTHER_INPUTS, "batched"},             {MN_SMOOTHABLE, "smoothable"},
};
#define N_NEEDS ((int)(sizeof needs_names / sizeof needs_names[0]))

static json_t *methods_json(void)
{
    json_t *a = json_array();
    for (const char *const *n = method_names(0); *n; n++) {
        int m = method_from_name(*n);
        json_t *needs = json_array(), *params = json_array();
        for (int k = 0; k < N_NEEDS; k++)
            if (method_needs(m) & needs_names[k].bit) json_array_append_new(needs, json_string(needs_names[k].name));
        char buf[256];
        snprintf(buf, sizeof buf, "%s", method_params(m));
        char *save = NULL;
        for (char *p = strtok_r(buf, ",", &save); p; p = strtok_r(NULL, ",", &save)) json_array_append_new(params, json_string(p));
        json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:o, s:o, s:s}", "name", *n, "family", method_family_name(m),
                                           "display", method_display(m), "needs", needs, "parameters", params, "summary",
                                           method_summary(m)));
    }
    return a;
}

int cli_methods(int argc, char **argv)
{
    if (argc > 0 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) {
        printf("usage: explaind methods [--json]\n"
               "The explanation methods the engine runs, from its method table: name, family, the shared\n"
               "passes each needs (plain input gradient, plain layer gradient, guided, layer activation,\n"
               "batched passes over other inputs), the request parameters it reads, and a summary.\n");
        return 0;
    }
    const int as_json = argc > 0 && !strcmp(argv[0], "--json");
    if (argc > as_json) {
        fprintf(stderr, "explaind methods: unexpected argument '%s'\n", argv[as_json]);
        return 2;
    }
    json_t *a = methods_json();
    if (!a) return 3;
    if (as_json) {
        json_dumpf(a, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
    } else {
        printf("%-22s %-13s %-44s %s\n", "method", "family", "needs", "parameters");
        size_t i;
        json_t *r;
        json_array_foreach(a, i, r)
        {
            char needs[128] = "", params[256] = "";
            size_t k;
            json_t *e;
            json_array_foreach(json_object_get(r, "needs"), k, e)
                snprintf(needs + strlen(needs), sizeof needs - strlen(needs), "%s%s", k ? "," : "", json_string_value(e));
            json_array_foreach(json_object_get(r, "parameters"), k, e)
                snprintf(params + strlen(params), sizeof params - strlen(params), "%s%s", k ? "," : "", json_string_value(e));
            printf("%-22s %-13s %-44s %s\n", json_string_value(json_object_get(r, "name")),
                   json_string_value(json_object_get(r, "family")), *needs ? needs : "-", *params ? params : "-");
        }
    }
    json_decref(a);
    return 0;
}

int cli_params(int argc, char **argv)
{
    if (argc != 1 || strcmp(argv[0], "--json")) {
        fprintf(argc == 1 && !strcmp(argv[0], "--help") ? stdout : stderr,
                "usage: explaind params --json\n"
                "The request parameters (docs/API.md) from their table: name, type, routes, default, choices,\n"
                "bounds (the max of the built-in configuration, and the config key that sets it) and help.\n");
        return argc == 1 && !strcmp(argv[0], "--help") ? 0 : 2;
    }
    config_t cfg;
    config_defaults(&cfg);
    json_t *a = params_table_json(&cfg);
    if (!a) return 3;
    json_dumpf(a, stdout, JSON_INDENT(2));
    fputc('\n', stdout);
    json_decref(a);
    return 0;
}

int cli_routes(int argc, char **argv)
{
    if (argc != 1 || strcmp(argv[0], "--json")) {
        fprintf(argc == 1 && !strcmp(argv[0], "--help") ? stdout : stderr,
                "usage: explaind routes --json\n"
                "The HTTP routes from their table (server/routes.c): path template, method, whether an API\n"
                "key is needed, the request parameters' route, KServe alias, and how many images it takes.\n");
        return argc == 1 && !strcmp(argv[0], "--help") ? 0 : 2;
    }
    static const char *const route_param[] = {[R_PREDICT] = "predict", [R_EXPLAIN] = "explain", [R_SANITY] = "sanity",
                                              [R_ACTIVATIONS] = "activations", [R_FILTER] = "filter"};
    static const char *const images[] = {[IMG_NONE] = "none", [IMG_ONE] = "one", [IMG_MANY] = "many",
                                         [IMG_PROBES] = "any (none: the probe set)"};
    json_t *a = json_array();
    for (int rt = 0; rt < RT_COUNT; rt++) {
        const route_t *r = route_get(rt);
        if (rt == RT_PREFLIGHT || rt == RT_NOT_FOUND) continue; /* not paths */
        json_array_append_new(a, json_pack("{s:s, s:s, s:b, s:s?, s:b, s:s}", "path", r->path, "method",
                                           r->post ? "POST" : "GET", "auth", r->auth,
                                           "parameters", r->params ? route_param[r->params] : NULL, "kserve", r->kserve,
                                           "images", images[r->images]));
    }
    json_dumpf(a, stdout, JSON_INDENT(2));
    fputc('\n', stdout);
    json_decref(a);
    return 0;
}
