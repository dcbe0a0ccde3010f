/* cli_bench.c — `explaind bench`: engine timings for the benchmark driver (tests/bench/), never a
 * test. Prints one JSON object per measurement:
 *   forward at each --batch, forward + input gradient (one backward from the top logit) at each
 *   --grad-batch; median and min over --reps after --warmup; GFLOP/s from the graph's FLOP count;
 *   with --sgemm, the machine's single-call sgemm peak (2048^3, the same OpenBLAS the engine uses);
 *   with --profile, the time per op type. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "cli.h"
#include "engine.h"
#include "explain.h"

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

int cli_bench(int argc, char **argv)
{
    const char *model = NULL;
    int batches[8] = {1, 16}, nb = 2, gbatches[8] = {1}, ngb = 1, reps = 10, warmup = 2, threads = 1, do_sgemm = 0,
        profile = 0;
    const char *methods = NULL; /* --methods a,b: time explain_run (each listed set, ';' separates sets) */
    int ig_steps = 50, sg_samples = 25;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: explaind bench [--model M.onnx] [--batch 1,16] [--grad-batch 1] [--reps 10] [--warmup 2]\n"
                   "                      [--threads 1] [--sgemm] [--profile]\n"
                   "       explaind bench --model M.onnx --methods 'saliency;gradcam;a,b,c' [--ig-steps 50]\n"
                   "                      [--smoothgrad-samples 25] [--batch 16] [--reps 10]\n"
                   "With --methods, each ';'-separated set is one explain request timed in-process (model and\n"
                   "workspace loaded once; --batch is the workspace batch); reports median ms and passes.\n"
                   "Times the engine: forward at each batch, forward + input gradient at each grad batch\n"
                   "(median and min ms), GFLOP/s; --sgemm measures the OpenBLAS sgemm peak. One JSON line per result.\n"
                   "The driver that compares with PyTorch in the same run is `make bench` (tests/bench/).\n");
            return 0;
        }
        if (!strcmp(a, "--sgemm")) do_sgemm = 1;
        else if (!strcmp(a, "--profile")) profile = 1;
        else if (v && !strcmp(a, "--model")) model = argv[++i];
        else if (v && !strcmp(a, "--batch")) parse_list(argv[++i], batches, &nb, 8);
        else if (v && !strcmp(a, "--grad-batch")) parse_list(argv[++i], gbatches, &ngb, 8);
        else if (v && !strcmp(a, "--reps")) reps = atoi(argv[++i]);
        else if (v && !strcmp(a, "--warmup")) warmup = atoi(argv[++i]);
        else if (v && !strcmp(a, "--threads")) threads = atoi(argv[++i]);
        else if (v && !strcmp(a, "--methods")) methods = argv[++i];
        else if (v && !strcmp(a, "--ig-steps")) ig_steps = atoi(argv[++i]);
        else if (v && !strcmp(a, "--smoothgrad-samples")) sg_samples = atoi(argv[++i]);
        else {
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
    if (methods) {
        model_t *m;
        if (model_load_path(model, NULL, NULL, &m, &err)) {
            fprintf(stderr, "explaind bench: %s\n", err.msg);
            return 2;
        }
        int B = 1;
        for (int i = 0; i < nb; i++) B = batches[i] > B ? batches[i] : B;
        ws_t *ws;
        if (ws_create(m->graph, B, &ws, &err)) {
            fprintf(stderr, "explaind bench: %s\n", err.msg);
            return 2;
        }
        size_t S = model_input_size(m);
        float *x = malloc(sizeof(float) * S);
        for (size_t i = 0; i < S; i++) x[i] = (float)((i * 2654435761u) % 2000) / 1000.f - 1.f;
        double *t = malloc(sizeof(double) * reps), *tc = malloc(sizeof(double) * reps);
        char *sets = strdup(methods), *save = NULL;
        for (char *set = strtok_r(sets, ";", &save); set; set = strtok_r(NULL, ";", &save)) {
            explain_params_t ep;
            explain_params_default(&ep);
            ep.methods = 0;
            ep.ig_steps = ig_steps;
            ep.smoothgrad_samples = sg_samples;
            char *cp = strdup(set), *s2 = NULL;
            for (char *nm = strtok_r(cp, ",", &s2); nm; nm = strtok_r(NULL, ",", &s2)) {
                int mi = method_from_name(nm);
                if (mi < 0) {
                    fprintf(stderr, "explaind bench: unknown method '%s'\n", nm);
                    return 2;
                }
                ep.methods |= 1u << mi;
            }
            free(cp);
            explain_out_t out;
            int pf = 0, pb = 0;
            for (int r = -warmup; r < reps; r++) {
                int64_t t0 = eng_now_ns(), c0 = cpu_ns();
                if (explain_run(m, ws, x, &ep, &out, &err)) {
                    fprintf(stderr, "explaind bench: %s: %s\n", set, err.msg);
                    return 3;
                }
                if (r >= 0) {
                    t[r] = (double)(eng_now_ns() - t0) / 1e6;
                    tc[r] = (double)(cpu_ns() - c0) / 1e6;
                }
                pf = out.passes_forward;
                pb = out.passes_backward;
                explain_out_free(&out);
            }
            qsort(t, reps, sizeof(double), cmp_d);
            qsort(tc, reps, sizeof(double), cmp_d);
            double med = reps % 2 ? t[reps / 2] : (t[reps / 2 - 1] + t[reps / 2]) / 2;
            double medc = reps % 2 ? tc[reps / 2] : (tc[reps / 2 - 1] + tc[reps / 2]) / 2;
            emit(json_pack("{s:s, s:s, s:s, s:i, s:i, s:f, s:f, s:f, s:i, s:i, s:i}", "model", model, "what", "explain",
                           "methods", set, "batch", B, "threads", threads, "median_ms", med, "min_ms", t[0], "median_cpu_ms",
                           medc, "reps", reps, "forward", pf, "backward", pb));
        }
        free(sets);
        free(t);
        free(tc);
        free(x);
        ws_free(ws);
        model_free(m);
        return 0;
    }
    graph_t *g;
    if (graph_load_onnx(model, NULL, &g, &err)) {
        fprintf(stderr, "explaind bench: %s\n", err.msg);
        return 2;
    }
    int maxb = 1;
    for (int i = 0; i < nb; i++) maxb = batches[i] > maxb ? batches[i] : maxb;
    for (int i = 0; i < ngb; i++) maxb = gbatches[i] > maxb ? gbatches[i] : maxb;
    ws_t *ws;
    if (ws_create(g, maxb, &ws, &err)) {
        fprintf(stderr, "explaind bench: %s\n", err.msg);
        graph_free(g);
        return 2;
    }
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
    return 0;
}
