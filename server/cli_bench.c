/* cli_bench.c — `explaind bench`: engine timings for the benchmark driver (tests/bench/), never a
 * test. Prints one JSON object per measurement:
 *   forward at each --batch, forward + input gradient (one backward from the top logit) at each
 *   --grad-batch; median and min over --reps after --warmup; GFLOP/s from the graph's FLOP count;
 *   with --sgemm, the machine's single-call sgemm peak (2048^3, the same OpenBLAS the engine uses);
 *   with --profile, the time per op type.
 * With --methods, each ';'-separated set of methods is one explain request, timed in-process:
 *   by default explain_run alone (the engine: forward, backward passes, the methods' own work);
 *   with --request, service_run end to end as an HTTP worker runs it (decode, preprocess, explain,
 *   sanity checks when asked, PNG rendering, base64, the JSON document and its serialization).
 *   The input is --image preprocessed by the sidecar (else a fixed synthetic tensor); any request
 *   parameter of docs/API.md can follow as --name value (--scorecam_channels 64, --sanity model).
 *   The workspace batch is --batch, else what `serve` would use (config defaults). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "cli.h"
#include "decode.h"
#include "engine.h"
#include "explain.h"
#include "params.h"
#include "service.h"

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* CPU time of this process: robust to other processes sharing the cores (wall time is not) */
static int64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void parse_list(const char *s, int *v, int *n, int max)
{
    *n = 0;
    while (*s && *n < max) {
        v[(*n)++] = atoi(s);
        const char *c = strchr(s, ',');
        if (!c) break;
        s = c + 1;
    }
}

static double sgemm_peak(int reps)
{
    const int N = 2048;
    float *a = malloc(sizeof(float) * N * N), *b = malloc(sizeof(float) * N * N), *c = malloc(sizeof(float) * N * N);
    if (!a || !b || !c) return 0;
    for (int i = 0; i < N * N; i++) a[i] = b[i] = (float)(i % 7) * 0.1f;
    double best = 1e30;
    for (int r = 0; r < reps + 1; r++) {
        int64_t t = eng_now_ns();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.f, a, N, b, N, 0.f, c, N);
        double s = (double)(eng_now_ns() - t) / 1e9;
        if (r && s < best) best = s;
    }
    free(a); free(b); free(c);
    return 2.0 * N * N * N / best / 1e9;
}

static void emit(json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
    puts(s);
    fflush(stdout);
    free(s);
    json_decref(o);
}

static double median_of(double *v, int n)
{
    qsort(v, n, sizeof(double), cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* per op type, ms per rep, from per-node forward + backward nanoseconds */
static json_t *profile_json(const graph_t *g, const int64_t *pf, const int64_t *pb, int reps)
{
    json_t *ops = json_object();
    for (int i = 0; i < graph_n_nodes(g); i++) {
        node_info_t ni;
        graph_node_info(g, i, &ni);
        json_t *cur = json_object_get(ops, ni.op);
        double ms = (double)(pf[i] + pb[i]) / 1e6 / reps;
        json_object_set_new(ops, ni.op, json_real((cur ? json_real_value(cur) : 0) + ms));
    }
    return ops;
}

/* A request for `set` from the --PARAM VALUE pairs; 0 or 2 (message printed). */
static int bench_request(request_t *rq, const config_t *cfg, const char *set, int np, const char **pn, const char **pv)
{
    char detail[768], name[128];
    params_init(rq, R_EXPLAIN);
    for (int i = 0; i < np; i++) {
        snprintf(name, sizeof name, "%s", pn[i]);
        for (char *p = name; *p; p++)
            if (*p == '-') *p = '_';
        if (params_set(rq, cfg, name, pv[i], detail, sizeof detail)) {
            fprintf(stderr, "explaind bench: %s\n", detail);
            return 2;
        }
    }
    if (params_set(rq, cfg, "methods", set, detail, sizeof detail)) {
        fprintf(stderr, "explaind bench: %s\n", detail);
        return 2;
    }
    return 0;
}

static const char *const TIMING_KEYS[] = {"decode", "preprocess", "forward", "explain", "sanity", "encode", "total", NULL};

static int bench_methods(const char *model, const char *methods, const char *image, int as_request, const int *batches,
                         int nb, int reps, int warmup, int threads, par_team_t *team, int profile, int parallel_steps, int np,
                         const char **pn, const char **pv)
{
    if (as_request && !image) {
        fprintf(stderr, "explaind bench: --request needs --image\n");
        return 2;
    }
    cli_env_t ce;
    if (cli_env_load(&ce, model, as_request, "bench")) return 2;
    eng_set_blas_threads(threads);
    model_t *m = ce.models[0].model;
    eng_err_t err = {0};
    int B = ce.models[0].max_batch;
    if (batches) {
        B = 1;
        for (int i = 0; i < nb; i++) B = batches[i] > B ? batches[i] : B;
        if (B != ce.models[0].max_batch) {
            ws_free(ce.ws[0]);
            ce.ws[0] = NULL;
            if (ws_create(m->graph, B, &ce.ws[0], &err)) {
                fprintf(stderr, "explaind bench: %s\n", err.msg);
                cli_env_free(&ce);
                return 2;
            }
            ce.models[0].max_batch = B;
        }
    }
    ws_set_team(ce.ws[0], team);
    if (parallel_steps && cli_env_parallel_steps(&ce, "bench")) {
        cli_env_free(&ce);
        return 2;
    }
    size_t S = model_input_size(m), img_len = 0;
    float *x = malloc(sizeof(float) * S);
    unsigned char *img_bytes = NULL;
    if (image) {
        image_t img;
        img_bytes = cli_read_file(image, &img_len);
        int bad = !img_bytes || image_decode(img_bytes, img_len, NULL, &img, NULL, &err);
        if (!bad) {
            bad = model_preprocess(m, &img, x, &err) != ENG_OK;
            image_free(&img);
        }
        if (bad) {
            fprintf(stderr, "explaind bench: image '%s': %s\n", image, img_bytes ? err.msg : "cannot read");
            free(x);
            free(img_bytes);
            cli_env_free(&ce);
            return 2;
        }
    } else {
        for (size_t i = 0; i < S; i++) x[i] = (float)((i * 2654435761u) % 2000) / 1000.f - 1.f;
    }
    int n_nodes = graph_n_nodes(m->graph), rc = 0;
    int64_t *pf = calloc(n_nodes, sizeof(int64_t)), *pb = calloc(n_nodes, sizeof(int64_t));
    double *t = malloc(sizeof(double) * reps), *tc = malloc(sizeof(double) * reps), *tk[8];
    for (int k = 0; k < 8; k++) tk[k] = calloc(reps, sizeof(double));
    char *sets = strdup(methods), *save = NULL;
    for (char *set = strtok_r(sets, ";", &save); set && !rc; set = strtok_r(NULL, ";", &save)) {
        request_t *rq = malloc(sizeof *rq);
        if ((rc = bench_request(rq, &ce.cfg, set, np, pn, pv))) {
            free(rq);
            break;
        }
        char detail[768];
        resolved_t res;
        if (!as_request && (rc = params_resolve(rq, m, &res, detail, sizeof detail))) {
            fprintf(stderr, "explaind bench: %s: %d: %s\n", set, rc, detail);
            rc = 3;
        }
        int pfw = 0, pbw = 0, has_timing = 0;
        size_t doc_bytes = 0;
        memset(pf, 0, sizeof(int64_t) * n_nodes);
        memset(pb, 0, sizeof(int64_t) * n_nodes);
        for (int r = -warmup; r < reps && !rc; r++) {
            if (profile && r == 0) ws_set_profile(ce.ws[0], pf, pb);
            int64_t t0 = eng_now_ns(), c0 = cpu_ns();
            if (as_request) {
                blob_t blob = {img_bytes, img_len};
                outcome_t oc;
                char rid[33];
                service_new_request_id(rid);
                json_t *doc = service_run(&ce.env, 0, rq, &blob, 1, rid, &oc);
                if (!doc) {
                    fprintf(stderr, "explaind bench: %s: %d: %s\n", set, oc.status, oc.detail);
                    rc = 3;
                    break;
                }
                char *body = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(9)); /* as http.c sends it */
                if (r >= 0) {
                    json_t *tm = json_object_get(doc, "timing_ms"), *ps = json_object_get(doc, "passes");
                    for (int k = 0; TIMING_KEYS[k]; k++) tk[k][r] = json_number_value(json_object_get(tm, TIMING_KEYS[k]));
                    has_timing = tm != NULL;
                    pfw = (int)json_integer_value(json_object_get(ps, "forward"));
                    pbw = (int)json_integer_value(json_object_get(ps, "backward"));
                    doc_bytes = body ? strlen(body) : 0;
                }
                free(body);
                json_decref(doc);
            } else {
                explain_out_t out;
                if (explain_run(m, ce.ws[0], x, &res.ep, &out, &err)) {
                    fprintf(stderr, "explaind bench: %s: %s\n", set, err.msg);
                    rc = 3;
                    break;
                }
                pfw = out.passes_forward;
                pbw = out.passes_backward;
                explain_out_free(&out);
            }
            if (r >= 0) {
                t[r] = (double)(eng_now_ns() - t0) / 1e6;
                tc[r] = (double)(cpu_ns() - c0) / 1e6;
            }
        }
        ws_set_profile(ce.ws[0], NULL, NULL);
        if (!rc) {
            double sum = 0, sumc = 0; /* throughput over the reps (median_of sorts t in place: sum first) */
            for (int r = 0; r < reps; r++) {
                sum += t[r];
                sumc += tc[r];
            }
            double med = median_of(t, reps), medc = median_of(tc, reps);
            json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:i, s:f, s:f, s:f, s:i, s:i, s:i}", "model", model, "what",
                                  as_request ? "request" : "explain", "methods", set, "batch", B, "threads", threads,
                                  "median_ms", med, "min_ms", t[0], "median_cpu_ms", medc, "reps", reps, "forward", pfw,
                                  "backward", pbw);
            json_object_set_new(o, "sum_ms", json_real(sum));
            json_object_set_new(o, "team", json_integer(par_team_size(team)));
            json_object_set_new(o, "sum_cpu_ms", json_real(sumc));
            if (has_timing) {
                json_t *tm = json_object();
                for (int k = 0; TIMING_KEYS[k]; k++) json_object_set_new(tm, TIMING_KEYS[k], json_real(median_of(tk[k], reps)));
                json_object_set_new(o, "timing_ms", tm);
                json_object_set_new(o, "doc_bytes", json_integer((json_int_t)doc_bytes));
            }
            if (profile) json_object_set_new(o, "profile_ms", profile_json(m->graph, pf, pb, reps));
            emit(o);
        }
        free(rq);
    }
    free(sets);
    free(t);
    free(tc);
    for (int k = 0; k < 8; k++) free(tk[k]);
    free(pf);
    free(pb);
    free(x);
    free(img_bytes);
    cli_env_free(&ce);
    return rc;
}

int cli_bench(int argc, char **argv)
{
    const char *model = NULL;
    int batches[8] = {1, 16}, nb = 2, gbatches[8] = {1}, ngb = 1, reps = 10, warmup = 2, threads = 1, do_sgemm = 0,
        profile = 0, team_k = 1;
    const char *methods = NULL; /* --methods a,b: time explain_run (each listed set, ';' separates sets) */
    const char *image = NULL;
    int as_request = 0, batch_given = 0, np = 0, parallel_steps = 0;
    const char *pnames[PARAM_MAX], *pvalues[PARAM_MAX]; /* request parameters for --methods */
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: explaind bench [--model M.onnx] [--batch 1,16] [--grad-batch 1] [--reps 10] [--warmup 2]\n"
                   "                      [--threads 1] [--team 1] [--sgemm] [--profile]\n"
                   "       explaind bench --model M.onnx --methods 'saliency;gradcam;a,b,c' [--image IMG] [--request]\n"
                   "                      [--batch B] [--reps 10] [--warmup 2] [--profile] [--PARAM VALUE ...]\n"
                   "With --methods, each ';'-separated set is one explain request timed in-process (model and\n"
                   "workspace loaded once; --batch is the workspace batch, default as `serve` sizes it); reports\n"
                   "median ms and passes. It times explain_run (the engine) on --image preprocessed (default: a\n"
                   "synthetic tensor); --request times the whole request as an HTTP worker runs it (decode,\n"
                   "explain, sanity, rendering, JSON; needs --image; loads the label-randomized twin) with the\n"
                   "document's timing_ms medians. --PARAM VALUE: any explain parameter (--ig_steps 50,\n"
                   "--scorecam_channels 64, --sanity model,label, --output raw, ...). --parallel-steps runs the\n"
                   "sanity randomization steps on two threads, as a server with an idle worker does.\n"
                   "Times the engine: forward at each batch, forward + input gradient at each grad batch\n"
                   "(median and min ms), GFLOP/s; --sgemm measures the OpenBLAS sgemm peak. One JSON line per result.\n"
                   "--threads T: OpenBLAS threads; --team K: the engine's own threads (par.h), as a server request\n"
                   "that borrows K-1 idle cores runs (OpenBLAS stays at one thread per call).\n"
                   "The driver that compares with PyTorch in the same run is `make bench` (tests/bench/).\n");
            return 0;
        }
        if (!strcmp(a, "--sgemm")) do_sgemm = 1;
        else if (!strcmp(a, "--profile")) profile = 1;
        else if (v && !strcmp(a, "--model")) model = argv[++i];
        else if (!strcmp(a, "--request")) as_request = 1;
        else if (!strcmp(a, "--parallel-steps")) parallel_steps = 1;
        else if (v && !strcmp(a, "--image")) image = argv[++i];
        else if (v && !strcmp(a, "--batch")) {
            parse_list(argv[++i], batches, &nb, 8);
            batch_given = 1;
        }
        else if (v && !strcmp(a, "--grad-batch")) parse_list(argv[++i], gbatches, &ngb, 8);
        else if (v && !strcmp(a, "--reps")) reps = atoi(argv[++i]);
        else if (v && !strcmp(a, "--warmup")) warmup = atoi(argv[++i]);
        else if (v && !strcmp(a, "--threads")) threads = atoi(argv[++i]);
        else if (v && !strcmp(a, "--team")) team_k = atoi(argv[++i]);
        else if (v && !strcmp(a, "--methods")) methods = argv[++i];
        else if (v && !strncmp(a, "--", 2) && np < PARAM_MAX) { /* a request parameter, checked later */
            pnames[np] = a + 2;
            pvalues[np++] = argv[++i];
        } else {
            fprintf(stderr, "explaind bench: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    eng_set_blas_threads(threads);
    if (do_sgemm)
        emit(json_pack("{s:s, s:i, s:f, s:s}", "what", "sgemm_peak", "threads", threads, "gflops", sgemm_peak(3), "blas_core",
                       openblas_get_corename()));
    if (!model) return 0;
    eng_err_t err = {0};
    par_team_t *team = team_k > 1 ? par_team_create(team_k) : NULL;
    if (team_k > 1 && !team) {
        fprintf(stderr, "explaind bench: cannot start a team of %d threads\n", team_k);
        return 2;
    }
    if (methods) {
        int rc = bench_methods(model, methods, image, as_request, batch_given ? batches : NULL, nb, reps, warmup, threads,
                               team, profile, parallel_steps, np, pnames, pvalues);
        par_team_free(team);
        return rc;
    }
    graph_t *g;
    if (graph_load_onnx(model, NULL, &g, &err)) {
        fprintf(stderr, "explaind bench: %s\n", err.msg);
        par_team_free(team);
        return 2;
    }
    int maxb = 1;
    for (int i = 0; i < nb; i++) maxb = batches[i] > maxb ? batches[i] : maxb;
    for (int i = 0; i < ngb; i++) maxb = gbatches[i] > maxb ? gbatches[i] : maxb;
    ws_t *ws;
    if (ws_create(g, maxb, &ws, &err)) {
        fprintf(stderr, "explaind bench: %s\n", err.msg);
        graph_free(g);
        par_team_free(team);
        return 2;
    }
    ws_set_team(ws, team);
    value_info_t in, out;
    graph_value_info(g, graph_input_value(g), &in);
    graph_value_info(g, graph_output_value(g), &out);
    float *x = malloc(sizeof(float) * in.size * maxb), *gi = malloc(sizeof(float) * in.size * maxb);
    float *seed = calloc(out.size * maxb, sizeof(float));
    for (size_t i = 0; i < in.size * maxb; i++) x[i] = (float)((i * 2654435761u) % 2000) / 1000.f - 1.f;
    double *t = malloc(sizeof(double) * reps), *tc = malloc(sizeof(double) * reps);
    int n_nodes = graph_n_nodes(g);
    int64_t *pf = calloc(n_nodes, sizeof(int64_t)), *pb = calloc(n_nodes, sizeof(int64_t));
    const double flops = graph_total_flops(g);
    for (int pass = 0; pass < 2; pass++) {
        int *bs = pass ? gbatches : batches, cnt = pass ? ngb : nb;
        for (int k = 0; k < cnt; k++) {
            int n = bs[k];
            for (int i = 0; i < n; i++) seed[(size_t)i * out.size] = 1.f;
            int cap = graph_input_value(g);
            bw_req_t req = {.seed_value = graph_output_value(g), .seed = seed, .n_capture = 1, .capture = &cap, .capture_out = &gi};
            if (profile) {
                memset(pf, 0, sizeof(int64_t) * n_nodes);
                memset(pb, 0, sizeof(int64_t) * n_nodes);
            }
            for (int r = -warmup; r < reps; r++) {
                if (profile && r == 0) ws_set_profile(ws, pf, pass ? pb : NULL);
                int64_t t0 = eng_now_ns(), c0 = cpu_ns();
                if (ws_forward(ws, x, n, &err) || (pass && ws_backward(ws, &req, &err))) {
                    fprintf(stderr, "explaind bench: %s\n", err.msg);
                    return 3;
                }
                if (r >= 0) {
                    t[r] = (double)(eng_now_ns() - t0) / 1e6;
                    tc[r] = (double)(cpu_ns() - c0) / 1e6;
                }
            }
            ws_set_profile(ws, NULL, NULL);
            qsort(t, reps, sizeof(double), cmp_d);
            qsort(tc, reps, sizeof(double), cmp_d);
            double med = reps % 2 ? t[reps / 2] : (t[reps / 2 - 1] + t[reps / 2]) / 2;
            double medc = reps % 2 ? tc[reps / 2] : (tc[reps / 2 - 1] + tc[reps / 2]) / 2;
            json_t *o = json_pack("{s:s, s:s, s:i, s:i, s:f, s:f, s:f, s:i, s:s}", "model", model, "what",
                                  pass ? "forward_grad" : "forward", "batch", n, "threads", threads, "median_ms", med, "min_ms",
                                  t[0], "gflops", flops * n * (pass ? 3 : 1) / (med / 1e3) / 1e9, "reps", reps, "blas_core",
                                  openblas_get_corename());
            json_object_set_new(o, "median_cpu_ms", json_real(medc));
            json_object_set_new(o, "team", json_integer(par_team_size(team)));
            if (profile) {
                json_t *ops = json_object();
                for (int i = 0; i < n_nodes; i++) {
                    node_info_t ni;
                    graph_node_info(g, i, &ni);
                    const char *key = ni.op;
                    json_t *cur = json_object_get(ops, key);
                    double ms = (double)(pf[i] + pb[i]) / 1e6 / reps;
                    json_object_set_new(ops, key, json_real((cur ? json_real_value(cur) : 0) + ms));
                }
                json_object_set_new(o, "profile_ms", ops);
            }
            emit(o);
        }
    }
    free(x); free(gi); free(seed); free(t); free(tc); free(pf); free(pb);
    ws_free(ws);
    graph_free(g);
    par_team_free(team);
    return 0;
}
