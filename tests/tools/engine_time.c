/* engine_time — quick timing of forward and forward+input-gradient (development aid; the real
 * benchmark is `explaind bench`). usage: engine_time MODEL.onnx [batch] [reps] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

int main(int argc, char **argv)
{
    if (argc < 2) return 1;
    int n = argc > 2 ? atoi(argv[2]) : 1, reps = argc > 3 ? atoi(argv[3]) : 5;
    eng_set_blas_threads(1);
    eng_err_t err;
    graph_t *g;
    if (graph_load_onnx(argv[1], NULL, &g, &err)) { fprintf(stderr, "error: %s\n", err.msg); return 2; }
    ws_t *ws;
    if (ws_create(g, n, &ws, &err)) { fprintf(stderr, "error: %s\n", err.msg); return 2; }
    value_info_t in, out;
    graph_value_info(g, graph_input_value(g), &in);
    graph_value_info(g, graph_output_value(g), &out);
    float *x = malloc(sizeof(float) * n * in.size), *gi = malloc(sizeof(float) * n * in.size);
    float *seed = calloc((size_t)n * out.size, sizeof(float));
    for (size_t i = 0; i < n * in.size; i++) x[i] = (float)((i * 2654435761u) % 1000) / 500.f - 1.f;
    for (int i = 0; i < n; i++) seed[i * out.size] = 1;
    int cap = graph_input_value(g);
    bw_req_t req = {.seed_value = graph_output_value(g), .seed = seed, .n_capture = 1, .capture = &cap, .capture_out = &gi};
    double best_f = 1e9, best_b = 1e9;
    for (int r = 0; r < reps + 1; r++) {
        int64_t t0 = eng_now_ns();
        ws_forward(ws, x, n, &err);
        int64_t t1 = eng_now_ns();
        ws_backward(ws, &req, &err);
        int64_t t2 = eng_now_ns();
        if (r) {
            if ((t1 - t0) / 1e6 < best_f) best_f = (t1 - t0) / 1e6;
            if ((t2 - t0) / 1e6 < best_b) best_b = (t2 - t0) / 1e6;
        }
    }
    printf("batch %d: forward %.2f ms (%.1f GFLOP/s), forward+grad %.2f ms, ws %zu MiB\n", n, best_f,
           graph_total_flops(g) * n / best_f / 1e6, best_b, ws_bytes(ws) >> 20);
    return 0;
}
