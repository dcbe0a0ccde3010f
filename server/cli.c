/* cli.c — the offline subcommands inspect, predict, explain and sanity (init, ops, methods, bench and
 * healthcheck have their own cli_*.c files). predict and explain go through service_run, the HTTP
 * workers' own path, so they print the same documents. */
#include "cli.h"

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "doc.h"
#include "explain.h"
#include "params.h"
#include "service.h"

unsigned char *cli_read_file(const char *path, size_t *len)
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
                   "FLOPs per image: multiply-add = 2), the CAM layer (the sidecar's or auto-detected) and the\n"
                   "whole preprocessing (the sidecar's input keys, docs/MODELS.md), naming the defaults.\n");
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
    char cam_module[512] = "", note[1024] = "";
    if (m->cam_value >= 0) {
        value_info_t cv;
        graph_value_info(g, m->cam_value, &cv);
        graph_node_module_path(g, cv.producer, cam_module, sizeof cam_module);
    }
    model_defaults_note(m, note, sizeof note);
    json_t *pre = doc_model_input(m);
    if (as_json) {
        json_t *doc = json_pack("{s:s, s:i, s:o, s:I, s:f, s:s?, s:s, s:s, s:i, s:o}", "model", m->name, "opset", graph_opset(g),
                                "nodes", nodes, "params", (json_int_t)graph_total_params(g), "flops_per_image",
                                graph_total_flops(g), "cam_layer", cam, "input", ins, "output", outs, "classes", m->n_labels,
                                "preprocessing", pre);
        json_object_set_new(doc, "cam_layer_module", cam_module[0] ? json_string(cam_module) : json_null());
        json_object_set_new(doc, "cam_layer_from", json_string(m->sidecar_json && json_object_get(m->sidecar_json, "cam_layer") ? "sidecar" : "auto"));
        json_object_set_new(doc, "defaults_note", note[0] ? json_string(note) : json_null());
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
        int cam_auto = !(m->sidecar_json && json_object_get(m->sidecar_json, "cam_layer"));
        printf("CAM layer    %s%s%s%s%s\n", cam ? cam : "(none found)", cam_module[0] ? " (module " : "", cam_module,
               cam_module[0] ? ")" : "", cam_auto ? ", auto-detected" : "");
        const input_spec_t *sp = &m->input;
        int has_order = sp->color == COLOR_RGB || sp->color == COLOR_RGBA;
        printf("preprocess   color %s, %d channel%s%s%s, invert %s\n", input_color_name(sp->color), sp->channels,
               sp->channels == 1 ? "" : "s", has_order ? ", channel_order " : "", has_order ? (sp->bgr ? "bgr" : "rgb") : "",
               sp->invert ? "true" : "false");
        if (sp->resize == RESIZE_SHORTER)
            printf("             resize: shorter side to %d, then center crop %dx%d (torchvision Resize(%d), CenterCrop((%d, %d)))\n",
                   sp->resize_short, sp->height, sp->width, sp->resize_short, sp->height, sp->width);
        else if (sp->resize == RESIZE_EXACT)
            printf("             resize: to %dx%d, then center crop %dx%d\n", sp->resize_h, sp->resize_w, sp->height, sp->width);
        else printf("             resize: %s to %dx%d\n", input_resize_name(sp->resize), sp->height, sp->width);
        printf("             tensor = (pixel / %g - mean) / std, mean [", (double)sp->scale);
        for (int c = 0; c < sp->channels; c++) printf("%s%g", c ? ", " : "", (double)sp->mean[c]);
        printf("], std [");
        for (int c = 0; c < sp->channels; c++) printf("%s%g", c ? ", " : "", (double)sp->std[c]);
        printf("]\n");
        if (note[0]) printf("warning      %s\n", note);
        json_decref(pre);
        for (int i = 0; i < m->n_attention; i++) printf("attention    %s\n", doc_value_display_name(m, m->attention_values[i]));
        if (m->twin) printf("twin         %s (label-randomized)\n", m->twin);
    }
    model_free(m);
    return 0;
}

/* ---- predict / explain / sanity ---------------------------------------------------------------- */
void cli_env_free(cli_env_t *e)
{
    for (int i = 0; i < e->n; i++) {
        service_free_probes(&e->models[i]);
        ws_free(e->ws[i]);
        ws_free(e->helper[i]);
        model_free(e->models[i].model);
    }
    sanity_cache_free(e->cache);
}

/* The configuration `serve` would use, without its flags: defaults, the config file
 * (EXPLAIND_CONFIG, else config/explaind.json when present), EXPLAIND_* variables. */
static int cli_config(config_t *c, const char *cmd)
{
    char err[512];
    if (!config_from_all(c, 0, NULL, err, sizeof err)) return 0;
    fprintf(stderr, "explaind %s: configuration: %s\n", cmd, err);
    return 2;
}

int cli_env_load(cli_env_t *e, const char *path, int with_twin, const char *cmd)
{
    memset(e, 0, sizeof *e);
    if (cli_config(&e->cfg, cmd)) return 2;
    eng_set_blas_threads(1);
    model_t *m;
    if (load_model(path, &m)) return 2;
    e->models[e->n++].model = m;
    if (with_twin && m->twin) {
        char tp[4096];
        const char *slash = strrchr(path, '/');
        snprintf(tp, sizeof tp, "%.*s%s.onnx", slash ? (int)(slash - path + 1) : 0, path, m->twin);
        model_t *t;
        eng_err_t err = {0};
        if (model_load_path(tp, NULL, NULL, &t, &err) == ENG_OK) e->models[e->n++].model = t;
        else fprintf(stderr, "explaind %s: twin '%s' not loaded (%s): label randomization will be unavailable\n", cmd,
                     m->twin, err.msg);
    }
    for (int i = 0; i < e->n; i++) {
        eng_err_t err = {0};
        e->models[i].max_batch = service_batch_for(e->models[i].model, &e->cfg);
        if (ws_create(e->models[i].model->graph, e->models[i].max_batch, &e->ws[i], &err)) {
            fprintf(stderr, "explaind %s: %s\n", cmd, err.msg);
            cli_env_free(e);
            return 2;
        }
    }
    e->cache = sanity_cache_create((size_t)e->cfg.sanity_cache_bytes);
    e->env = (service_env_t){.cfg = &e->cfg, .models = e->models, .n_models = e->n, .ws = e->ws, .cache = e->cache};
    return 0;
}

int cli_env_parallel_steps(cli_env_t *e, const char *cmd)
{
    eng_err_t err = {0};
    if (ws_create(e->models[0].model->graph, e->models[0].max_batch, &e->helper[0], &err)) {
        fprintf(stderr, "explaind %s: %s\n", cmd, err.msg);
        return 2;
    }
    e->env.helper_ws = e->helper;
    return 0;
}

static int print_doc(json_t *doc, const outcome_t *oc, int pretty, const char *cmd)
{
    if (!doc) {
        fprintf(stderr, "explaind %s: %d: %s\n", cmd, oc->status, oc->detail);
        return oc->status >= 500 ? 3 : 1;
    }
    char *s = json_dumps(doc, pretty ? JSON_INDENT(2) | JSON_REAL_PRECISION(9) : JSON_COMPACT | JSON_REAL_PRECISION(9));
    puts(s);
    free(s);
    json_decref(doc);
    return 0;
}

static int is_dir(const char *p)
{
    DIR *d = opendir(p);
    if (!d) return 0;
    closedir(d);
    return 1;
}

static int run_doc(int route, int argc, char **argv)
{
    const char *cmd = route == R_PREDICT ? "predict" : route == R_SANITY ? "sanity" : "explain";
    const char *model_path = NULL;
    const char *files[1024];
    int nf = 0, pretty = 1, parallel_steps = 0;
    config_t cfg;
    if (cli_config(&cfg, cmd)) return 2;
    request_t rq;
    params_init(&rq, route);
    char detail[768];
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            if (route == R_SANITY)
                printf("usage: explaind sanity --model MODEL.onnx [--images DIR|FILE [FILE ...]] [--PARAM VALUE ...]\n"
                       "Runs the sanity checks (default: sanity=model,label) over the images and prints the report of\n"
                       "POST /v1/models/{model}/sanity. A directory means every .png/.jpg/.jpeg in it. Without\n"
                       "--images: the model's built-in probe set, probes/NAME/ next to MODEL.onnx.\n"
                       "--full-recompute runs every randomized pass from the input instead of reusing the\n"
                       "unrandomized prefix (the same numbers, slower: a reference for tests).\n"
                       "--parallel-steps runs the randomization steps on two threads, as a server does when\n"
                       "a worker is idle (the same numbers; the passes count one more forward).\n");
            else
                printf("usage: explaind %s --model MODEL.onnx --image IMAGE [--compact] [--PARAM VALUE ...]\n"
                       "Prints the JSON document of POST /v1/models/{model}/%s (openapi.yaml). MODEL.json next to the\n"
                       "model is its sidecar (docs/MODELS.md).\n", cmd, cmd);
            printf("Limits (*_max keys) come from the configuration, as for serve: EXPLAIND_CONFIG or\n"
                   "config/explaind.json, then EXPLAIND_* variables (explaind serve --help lists the keys).\n");
            printf("Parameters (dashes or underscores):\n");
            params_print_help(stdout, route);
            return 0;
        }
        if (!strcmp(a, "--compact")) {
            pretty = 0;
            continue;
        }
        if (route != R_PREDICT && !strcmp(a, "--parallel-steps")) {
            parallel_steps = 1; /* the randomization steps on two threads */
            continue;
        }
        if (route == R_SANITY && !strcmp(a, "--full-recompute")) {
            rq.sp.full_recompute = 1; /* the naive reference: every pass from the input */
            continue;
        }
        if (route == R_SANITY && !strcmp(a, "--images")) {
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) && nf < 1024) files[nf++] = argv[++i];
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
        else if (!strcmp(name, "image") && route != R_SANITY) files[nf++] = v;
        else if (params_set(&rq, &cfg, name, v, detail, sizeof detail)) {
            fprintf(stderr, "explaind %s: %s\n", cmd, detail);
            return 2;
        }
    }
    /* expand directories (sanity) */
    char *owned[1024];
    int no = 0;
    const char *paths[1024];
    int np = 0;
    for (int i = 0; i < nf; i++) {
        if (!is_dir(files[i])) {
            if (np < 1024) paths[np++] = files[i];
            continue;
        }
        int nn = 0, st;
        char **names = service_scan_dir(files[i], service_is_image_name, 0, 1024, &nn, &st);
        if (st) {
            fprintf(stderr, "explaind %s: %s: %s\n", cmd, files[i],
                    st == SCAN_TOO_MANY ? "more than 1024 images" : st == SCAN_NO_DIR ? "cannot open" : "out of memory");
            for (int k = 0; k < no; k++) free(owned[k]);
            return 2;
        }
        for (int x = 0; x < nn; x++) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", files[i], names[x]);
            if (np < 1024 && no < 1024) paths[np++] = owned[no++] = strdup(p);
        }
        service_free_names(names, nn);
    }
    if (!model_path || (!np && route != R_SANITY)) {
        fprintf(stderr, "usage: explaind %s --model MODEL.onnx %s [--PARAM VALUE ...]\n", cmd,
                route == R_SANITY ? "--images DIR|FILES" : "--image IMAGE");
        for (int i = 0; i < no; i++) free(owned[i]);
        return 2;
    }
    blob_t blobs[1024];
    int rc = 0, nb = 0;
    for (int i = 0; i < np; i++) {
        size_t len;
        unsigned char *b = cli_read_file(paths[i], &len);
        if (!b) {
            fprintf(stderr, "explaind %s: cannot read image '%s'\n", cmd, paths[i]);
            rc = 2;
            break;
        }
        blobs[nb++] = (blob_t){b, len};
    }
    cli_env_t ce;
    if (!rc) rc = cli_env_load(&ce, model_path, route != R_PREDICT, cmd);
    if (!rc && parallel_steps && (rc = cli_env_parallel_steps(&ce, cmd))) cli_env_free(&ce);
    if (!rc && !nb) { /* sanity without --images: the probe set next to the model */
        char dir[4096], perr[512];
        const char *slash = strrchr(model_path, '/');
        snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - model_path) : 1, slash ? model_path : ".");
        if (service_load_probes(&ce.models[0], dir, ce.cfg.sanity_images_max, perr, sizeof perr)) {
            fprintf(stderr, "explaind %s: %s\n", cmd, perr);
            cli_env_free(&ce);
            rc = 2;
        }
    }
    if (!rc) {
        char rid[33];
        service_new_request_id(rid);
        outcome_t oc;
        json_t *doc = service_run(&ce.env, 0, &rq, blobs, nb, rid, &oc);
        rc = print_doc(doc, &oc, pretty, cmd);
        cli_env_free(&ce);
    }
    for (int i = 0; i < nb; i++) free((void *)blobs[i].data);
    for (int i = 0; i < no; i++) free(owned[i]);
    return rc;
}

int cli_predict(int argc, char **argv) { return run_doc(R_PREDICT, argc, argv); }
int cli_explain(int argc, char **argv) { return run_doc(R_EXPLAIN, argc, argv); }
int cli_sanity(int argc, char **argv) { return run_doc(R_SANITY, argc, argv); }
