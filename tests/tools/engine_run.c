/* engine_run — drives the engine for the PyTorch conformance tests (tests/conformance/).
 *
 *   engine_run --model M.onnx --input X.f32 --n N [--value NAME] [--target K] [--threads T]
 *              [--single] [--no-fold-bn] --out PREFIX
 *
 * Forward on the batch (or each image alone with --single), then one backward pass seeded with
 * one-hot at class K (K < 0 or absent: each image's argmax), capturing the input gradient and, with
 * --value, the gradient of that value. Writes PREFIX.logits.f32, PREFIX.input_grad.f32 and with
 * --value PREFIX.value.f32 and PREFIX.value_grad.f32 (little-endian float32). With --threads T,
 * T threads share the loaded model, each with its own workspace, and write PREFIX.t<i>.*.
 * Load errors: exit 2 with "error: <message>" on stderr.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

typedef struct {
    const graph_t *g;
    const float *input;
    int n, single, target, value;
    const char *prefix;
    int rc;
    char msg[600];
    int *targets;
} job_t;

static int write_f32(const char *path, const float *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(p, sizeof(float), n, f);
    fclose(f);
    return w == n ? 0 : -1;
}

static void *run(void *arg)
{
    job_t *j = arg;
    const graph_t *g = j->g;
    eng_err_t err = {0};
    value_info_t in, out, val;
    graph_value_info(g, graph_input_value(g), &in);
    graph_value_info(g, graph_output_value(g), &out);
    if (j->value >= 0) graph_value_info(g, j->value, &val);
    int n = j->n, per = j->single ? 1 : n;
    ws_t *ws;
    if (ws_create(g, per, &ws, &err)) {
        j->rc = 3;
        snprintf(j->msg, sizeof j->msg, "%s", err.msg);
        return NULL;
    }
    size_t K = out.size;
    float *logits = malloc(sizeof(float) * n * K), *ig = malloc(sizeof(float) * n * in.size);
    float *vv = j->value >= 0 ? malloc(sizeof(float) * n * val.size) : NULL;
    float *vg = j->value >= 0 ? malloc(sizeof(float) * n * val.size) : NULL;
    float *seed = calloc((size_t)per * K, sizeof(float));
    for (int b = 0; b < n; b += per) {
        if (ws_forward(ws, j->input + (size_t)b * in.size, per, &err)) goto fail;
        const float *lo = ws_value(ws, graph_output_value(g));
        memcpy(logits + (size_t)b * K, lo, sizeof(float) * per * K);
        if (vv) memcpy(vv + (size_t)b * val.size, ws_value(ws, j->value), sizeof(float) * per * val.size);
        memset(seed, 0, sizeof(float) * per * K);
        for (int i = 0; i < per; i++) {
            int t = j->target;
            if (t < 0) {
                t = 0;
                for (size_t k = 1; k < K; k++)
                    if (lo[i * K + k] > lo[i * K + t]) t = (int)k;
            }
            if ((size_t)t >= K) {
                snprintf(err.msg, sizeof err.msg, "target %d out of range", t);
                goto fail;
            }
            j->targets[b + i] = t;
            seed[i * K + t] = 1.f;
        }
        int caps[2] = {graph_input_value(g), j->value};
        float *outs[2] = {ig + (size_t)b * in.size, vg ? vg + (size_t)b * val.size : NULL};
        bw_req_t req = {.seed_value = graph_output_value(g), .seed = seed, .n_capture = j->value >= 0 ? 2 : 1,
                        .capture = caps, .capture_out = outs};
        if (ws_backward(ws, &req, &err)) goto fail;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s.logits.f32", j->prefix);
    write_f32(path, logits, n * K);
    snprintf(path, sizeof path, "%s.input_grad.f32", j->prefix);
    write_f32(path, ig, n * in.size);
    if (vv) {
        snprintf(path, sizeof path, "%s.value.f32", j->prefix);
        write_f32(path, vv, n * val.size);
        snprintf(path, sizeof path, "%s.value_grad.f32", j->prefix);
        write_f32(path, vg, n * val.size);
    }
    goto done;
fail:
    j->rc = 3;
    snprintf(j->msg, sizeof j->msg, "%s", err.msg);
done:
    free(logits); free(ig); free(vv); free(vg); free(seed);
    ws_free(ws);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *model = NULL, *input = NULL, *value = NULL, *prefix = NULL;
    int n = 1, target = -1, threads = 1, single = 0;
    graph_opts_t opts = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--model") && v) model = argv[++i];
        else if (!strcmp(a, "--input") && v) input = argv[++i];
        else if (!strcmp(a, "--n") && v) n = atoi(argv[++i]);
        else if (!strcmp(a, "--value") && v) value = argv[++i];
        else if (!strcmp(a, "--target") && v) target = atoi(argv[++i]);
        else if (!strcmp(a, "--threads") && v) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--out") && v) prefix = argv[++i];
        else if (!strcmp(a, "--single")) single = 1;
        else if (!strcmp(a, "--no-fold-bn")) opts.no_fold_bn = 1;
        else {
            fprintf(stderr, "usage: engine_run --model M --input X.f32 --n N [--value NAME] [--target K] "
                            "[--threads T] [--single] [--no-fold-bn] --out PREFIX\n");
            return 1;
        }
    }
    if (!model || !prefix || n < 1 || threads < 1) {
        fprintf(stderr, "error: --model and --out are required\n");
        return 1;
    }
    eng_set_blas_threads(1);
    eng_err_t err = {0};
    graph_t *g;
    if (graph_load_onnx(model, &opts, &g, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 2;
    }
    int vid = -1;
    if (value && (vid = graph_find_value(g, value)) < 0) {
        fprintf(stderr, "error: no value or node named '%s'\n", value);
        graph_free(g);
        return 2;
    }
    value_info_t in;
    graph_value_info(g, graph_input_value(g), &in);
    float *x = malloc(sizeof(float) * n * in.size);
    if (input) {
        FILE *f = fopen(input, "rb");
        if (!f || fread(x, sizeof(float), n * in.size, f) != n * in.size) {
            fprintf(stderr, "error: cannot read %d x %zu floats from %s\n", n, in.size, input);
            return 1;
        }
        fclose(f);
    } else {
        for (size_t i = 0; i < n * in.size; i++) x[i] = (float)((i * 2654435761u) % 1000) / 500.f - 1.f;
    }
    job_t *jobs = calloc((size_t)threads, sizeof *jobs);
    pthread_t *th = calloc((size_t)threads, sizeof *th);
    char (*pre)[1024] = calloc((size_t)threads, sizeof *pre);
    for (int t = 0; t < threads; t++) {
        if (threads == 1) snprintf(pre[t], sizeof pre[t], "%s", prefix);
        else snprintf(pre[t], sizeof pre[t], "%s.t%d", prefix, t);
        jobs[t] = (job_t){.g = g, .input = x, .n = n, .single = single, .target = target, .value = vid, .prefix = pre[t]};
        jobs[t].targets = calloc((size_t)n, sizeof(int));
        pthread_create(&th[t], NULL, run, &jobs[t]);
    }
    int rc = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(th[t], NULL);
        if (jobs[t].rc) {
            fprintf(stderr, "error: %s\n", jobs[t].msg);
            rc = jobs[t].rc;
        }
    }
    value_info_t out, val;
    graph_value_info(g, graph_output_value(g), &out);
    printf("{\"logits_shape\": [%d, %zu]", n, out.size);
    if (vid >= 0) {
        graph_value_info(g, vid, &val);
        printf(", \"value_shape\": [%d", n);
        for (int i = 1; i < val.rank; i++) printf(", %lld", (long long)val.dims[i]);
        printf("], \"value_name\": \"%s\"", val.name);
    }
    printf(", \"targets\": [");
    for (int i = 0; i < n; i++) printf("%s%d", i ? ", " : "", jobs[0].targets[i]);
    printf("]}\n");
    for (int t = 0; t < threads; t++) free(jobs[t].targets);
    free(jobs); free(th); free(pre); free(x);
    graph_free(g);
    return rc;
}
