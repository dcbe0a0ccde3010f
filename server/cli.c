/* cli.c — the offline subcommands: inspect, predict, explain, visualize. predict and explain go
 * through service_run, the HTTP workers' own path, so they print the same documents. */
#include "cli.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "doc.h"
#include "explain.h"
#include "params.h"
#include "service.h"

static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    unsigned char *b = malloc(cap);
    for (;;) {
        if (!b) break;
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (n < cap) break;
        unsigned char *nb = realloc(b, cap * 2);
        if (!nb) { free(b); b = NULL; break; }
        b = nb;
        cap *= 2;
    }
    fclose(f);
    *len = n;
    return b;
}

static int load_model(const char *path, model_t **m)
{
    eng_err_t err = {0};
    if (model_load_path(path, NULL, NULL, m, &err)) {
        fprintf(stderr, "explaind: cannot load model '%s': %s\n", path, err.msg);
        return 2;
    }
    return 0;
}

/* ---- inspect ----------------------------------------------------------------------------------- */
static void shape_str(const value_info_t *v, char *b, size_t n)
{
    size_t l = (size_t)snprintf(b, n, "(");
    for (int i = 0; i < v->rank && l < n; i++) l += (size_t)snprintf(b + l, n - l, "%s%lld", i ? ", " : "", i == 0 ? -1LL : (long long)v->dims[i]);
    if (l < n) snprintf(b + l, n - l, ")");
    /* the batch is symbolic: shown as N */
    char *p = strstr(b, "-1");
    if (p) {
        memmove(p + 1, p + 2, strlen(p + 2) + 1);
        *p = 'N';
    }
}

int cli_inspect(int argc, char **argv)
{
    const char *path = NULL;
    int as_json = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: explaind inspect MODEL.onnx [--json]\n"
                   "For every node: name, op, output shape and parameter count; then totals (parameters,\n"
                   "FLOPs per image: multiply-add = 2) and the auto-detected CAM layer.\n");
            return 0;
        }
        if (!strcmp(argv[i], "--json")) as_json = 1;
        else if (!path) path = argv[i];
        else {
            fprintf(stderr, "explaind inspect: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "usage: explaind inspect MODEL.onnx [--json]\n");
        return 2;
    }
    model_t *m;
    if (load_model(path, &m)) return 2;
    const graph_t *g = m->graph;
    int n = graph_n_nodes(g);
    json_t *nodes = as_json ? json_array() : NULL;
    if (!as_json) printf("%-4s %-48s %-26s %-22s %12s %14s\n", "#", "node", "op", "output", "params", "MFLOPs");
    for (int i = 0; i < n; i++) {
        node_info_t ni;
        value_info_t vi;
        graph_node_info(g, i, &ni);
        graph_value_info(g, ni.out_value, &vi);
        char sh[128];
        shape_str(&vi, sh, sizeof sh);
        if (as_json) {
            json_t *dims = json_array();
            for (int k = 1; k < vi.rank; k++) json_array_append_new(dims, json_integer(vi.dims[k]));
            json_array_append_new(nodes, json_pack("{s:s, s:s, s:s, s:o, s:I, s:f}", "name", ni.name, "op", ni.op, "output",
                                                   vi.name, "shape", dims, "params", (json_int_t)ni.params, "flops", ni.flops));
        } else {
            printf("%-4d %-48s %-26s %-22s %12lld %14.3f\n", i, ni.name, ni.op, sh, (long long)ni.params, ni.flops / 1e6);
        }
    }
    value_info_t in, out;
    graph_value_info(g, graph_input_value(g), &in);
    graph_value_info(g, graph_output_value(g), &out);
    char ins[128], outs[128];
    shape_str(&in, ins, sizeof ins);
    shape_str(&out, outs, sizeof outs);
    const char *cam = m->cam_value >= 0 ? doc_value_display_name(m, m->cam_value) : NULL;
    if (as_json) {
        json_t *doc = json_pack("{s:s, s:i, s:o, s:I, s:f, s:s?, s:s, s:s, s:i}", "model", m->name, "opset", graph_opset(g),
                                "nodes", nodes, "params", (json_int_t)graph_total_params(g), "flops_per_image",
                                graph_total_flops(g), "cam_layer", cam, "input", ins, "output", outs, "classes", m->n_labels);
        char *s = json_dumps(doc, JSON_INDENT(2));
        puts(s);
        free(s);
        json_decref(doc);
    } else {
        printf("\nmodel        %s (opset %d, %d nodes after folding)\n", m->name, graph_opset(g), n);
        printf("input        %s %s\n", in.name, ins);
        printf("output       %s %s, %d classes\n", out.name, outs, m->n_labels);
        printf("parameters   %lld\n", (long long)graph_total_params(g));
        printf("FLOPs/image  %.6g (%.3f GFLOPs; multiply-add = 2)\n", graph_total_flops(g), graph_total_flops(g) / 1e9);
        printf("CAM layer    %s%s\n", cam ? cam : "(none found)", m->has_sidecar ? "" : " (auto-detected)");
        for (int i = 0; i < m->n_attention; i++) printf("attention    %s\n", doc_value_display_name(m, m->attention_values[i]));
        if (m->twin) printf("twin         %s (label-randomized)\n", m->twin);
    }
    model_free(m);
    return 0;
}

/* ---- predict / explain -------------------------------------------------------------------------- */
static int run_doc(int route, int argc, char **argv)
{
    const char *cmd = route == R_PREDICT ? "predict" : "explain";
    const char *model_path = NULL, *image = NULL;
    int pretty = 1;
    config_t cfg;
    config_defaults(&cfg);
    config_finalize(&cfg);
    request_t rq;
    params_init(&rq, route);
    char detail[768];
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: explaind %s --model MODEL.onnx --image IMAGE [--compact] [--PARAM VALUE ...]\n", cmd);
            printf("Prints the JSON document of POST /v1/models/{model}/%s (shared/API.md).\n", cmd);
            printf("Parameters (dashes or underscores):\n");
            params_print_help(stdout, route);
            return 0;
        }
        if (!strcmp(a, "--compact")) {
            pretty = 0;
            continue;
        }
        if (strncmp(a, "--", 2) || i + 1 >= argc) {
            fprintf(stderr, "explaind %s: expected --name value, got '%s'\n", cmd, a);
            return 2;
        }
        const char *v = argv[++i];
        char name[128];
        snprintf(name, sizeof name, "%s", a + 2);
        for (char *p = name; *p; p++)
            if (*p == '-') *p = '_';
        if (!strcmp(name, "model")) model_path = v;
        else if (!strcmp(name, "image")) image = v;
        else if (params_set(&rq, &cfg, name, v, detail, sizeof detail)) {
            fprintf(stderr, "explaind %s: %s\n", cmd, detail);
            return 2;
        }
    }
    if (!model_path || !image) {
        fprintf(stderr, "usage: explaind %s --model MODEL.onnx --image IMAGE [--PARAM VALUE ...]\n", cmd);
        return 2;
    }
    size_t len;
    unsigned char *body = read_all(image, &len);
    if (!body) {
        fprintf(stderr, "explaind %s: cannot read image '%s'\n", cmd, image);
        return 2;
    }
    model_t *m;
    if (load_model(model_path, &m)) {
        free(body);
        return 2;
    }
    eng_set_blas_threads(1);
    eng_err_t err = {0};
    ws_t *ws;
    if (ws_create(m->graph, service_batch_for(m, &cfg), &ws, &err)) {
        fprintf(stderr, "explaind %s: %s\n", cmd, err.msg);
        model_free(m);
        free(body);
        return 2;
    }
    char rid[33];
    service_new_request_id(rid);
    outcome_t oc;
    json_t *doc = service_run(&cfg, m, ws, &rq, body, len, rid, &oc);
    int rc = 0;
    if (!doc) {
        fprintf(stderr, "explaind %s: %d: %s\n", cmd, oc.status, oc.detail);
        rc = oc.status >= 500 ? 3 : 1;
    } else {
        char *s = json_dumps(doc, pretty ? JSON_INDENT(2) | JSON_REAL_PRECISION(9) : JSON_COMPACT | JSON_REAL_PRECISION(9));
        puts(s);
        free(s);
        json_decref(doc);
    }
    ws_free(ws);
    model_free(m);
    free(body);
    return rc;
}

int cli_predict(int argc, char **argv) { return run_doc(R_PREDICT, argc, argv); }
int cli_explain(int argc, char **argv) { return run_doc(R_EXPLAIN, argc, argv); }
