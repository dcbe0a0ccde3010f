/* fuzz_onnx — the ONNX loader on arbitrary bytes: graph_load_onnx_mem (protobuf-c decode, graph
 * checks, shape inference, BatchNorm folding). A graph that loads is then used as the server would
 * use it: its node and value tables are read, and when it is small (workspace <= 64 MiB, <= 50
 * Mflop) a workspace is planned, one forward pass runs on a zero image and one backward pass from
 * the output to the input. External data is refused (no base directory), as for uploads of models
 * there are none: models come from models_dir, but a broken file there must not crash the server.
 * Checked: a failed load says why and leaves no graph; a loaded graph has a 4-D-or-less input and
 * an output, and its forward pass gives finite numbers or an error, never a crash. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "engine.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    graph_t *g = NULL;
    eng_err_t err = {0};
    int st = graph_load_onnx_mem(data, size, NULL, NULL, &g, &err);
    if (st != ENG_OK) {
        FUZZ_CHECK(g == NULL);
        FUZZ_CHECK(err.msg[0] != 0);
        return 0;
    }
    FUZZ_CHECK(g != NULL);
    int nv = graph_n_values(g), nn = graph_n_nodes(g);
    int in = graph_input_value(g), out = graph_output_value(g);
    FUZZ_CHECK(in >= 0 && in < nv && out >= 0 && out < nv);
    for (int i = 0; i < nn; i++) {
        node_info_t ni;
        graph_node_info(g, i, &ni);
        FUZZ_CHECK(ni.name && ni.op && ni.out_value >= 0 && ni.out_value < nv);
    }
    for (int i = 0; i < nv; i++) {
        value_info_t vi;
        graph_value_info(g, i, &vi);
        FUZZ_CHECK(vi.rank >= 0 && vi.rank <= ENG_MAX_RANK);
    }
    (void)graph_detect_cam_value(g);

    value_info_t vin, vout;
    graph_value_info(g, in, &vin);
    graph_value_info(g, out, &vout);
    ws_t *ws = NULL;
    if (vin.size > 0 && vout.size > 0 && graph_total_flops(g) <= 5e7 && ws_plan_bytes(g, 1) <= (64u << 20) &&
        ws_create(g, 1, &ws, &err) == ENG_OK) {
        float *x = calloc(vin.size, sizeof(float));
        float *seed = malloc(vout.size * sizeof(float));
        float *dx = calloc(vin.size, sizeof(float));
        for (size_t i = 0; i < vout.size; i++) seed[i] = 1.f;
        if (ws_forward(ws, x, 1, &err) == ENG_OK) {
            const float *y = ws_value(ws, out);
            FUZZ_CHECK(y != NULL);
            volatile float sink = y[0] + y[vout.size - 1];
            (void)sink;
            bw_req_t req = {.seed_value = out, .seed = seed, .n_capture = 1, .capture = &in, .capture_out = &dx};
            (void)ws_backward(ws, &req, &err);
        }
        free(x);
        free(seed);
        free(dx);
        ws_free(ws);
    }
    graph_free(g);
    return 0;
}
