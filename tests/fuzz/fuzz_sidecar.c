/* fuzz_sidecar — the model sidecar (NAME.json) parser. Every input goes through
 * model_parse_sidecar (JSON, known keys, labels, input spec, names' types); a sidecar that parses is
 * then loaded for real next to the shipped fashion-cnn.onnx with model_load_path, which checks it
 * against the graph (channels, sizes, label count) and resolves cam_layer, attention_layers and
 * randomization_groups. labels_file resolves in the models directory.
 * Checked: an error says why; a parsed input spec is usable (positive scale and std, a known
 * resize mode); a loaded model has as many labels as classes and in-range resolved values. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "fuzz_common.h"

static char onnx_path[4096], sidecar_path[4096];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(onnx_path, sizeof onnx_path, "%s/fashion-cnn.onnx", fuzz_models_dir());
    const char *tmp = getenv("TMPDIR");
    snprintf(sidecar_path, sizeof sidecar_path, "%s/fuzz-sidecar-%d.json", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    model_t *m = calloc(1, sizeof *m);
    m->cam_value = -1;
    m->input.scale = 255.f;
    eng_err_t err = {0};
    int st = model_parse_sidecar(m, (const char *)data, size, fuzz_models_dir(), &err);
    if (st != ENG_OK) {
        FUZZ_CHECK(err.msg[0] != 0);
        model_free(m);
        return 0;
    }
    FUZZ_CHECK(m->input.channels >= 0 && m->input.channels <= ENG_MAX_CHANNELS);
    FUZZ_CHECK(m->input.color >= COLOR_GRAY && m->input.color <= COLOR_NONE);
    FUZZ_CHECK(m->input.resize >= RESIZE_STRETCH && m->input.resize <= RESIZE_EXACT);
    FUZZ_CHECK(m->input.resize != RESIZE_SHORTER || (m->input.resize_short >= 1 && m->input.resize_short <= 8192));
    FUZZ_CHECK(m->input.resize != RESIZE_EXACT || (m->input.resize_h >= 1 && m->input.resize_w >= 1));
    FUZZ_CHECK(isfinite(m->input.scale) && m->input.scale > 0);
    FUZZ_CHECK(m->input.n_mean >= 0 && m->input.n_mean <= ENG_MAX_CHANNELS && m->input.n_std >= 0 && m->input.n_std <= ENG_MAX_CHANNELS);
    for (int c = 0; c < m->input.n_std; c++) FUZZ_CHECK(isfinite(m->input.std[c]) && m->input.std[c] > 0);
    for (int c = 0; c < m->input.n_mean; c++) FUZZ_CHECK(isfinite(m->input.mean[c]));
    for (int k = 0; k < m->n_labels; k++) FUZZ_CHECK(m->labels[k] != NULL);
    model_free(m);

    FILE *f = fopen(sidecar_path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    model_t *lm = NULL;
    if (model_load_path(onnx_path, sidecar_path, NULL, &lm, &err) == ENG_OK) {
        int nv = graph_n_values(lm->graph), nn = graph_n_nodes(lm->graph);
        value_info_t vo;
        graph_value_info(lm->graph, graph_output_value(lm->graph), &vo);
        FUZZ_CHECK(lm->n_labels == vo.dims[1]);
        FUZZ_CHECK(lm->cam_value >= -1 && lm->cam_value < nv);
        for (int i = 0; i < lm->n_attention; i++) FUZZ_CHECK(lm->attention_values[i] >= 0 && lm->attention_values[i] < nv);
        for (int gi = 0; gi < lm->n_groups; gi++)
            for (int j = 0; j < lm->group_sizes[gi]; j++) FUZZ_CHECK(lm->group_nodes[gi][j] >= 0 && lm->group_nodes[gi][j] < nn);
        model_free(lm);
    } else {
        FUZZ_CHECK(lm == NULL && err.msg[0] != 0);
    }
    return 0;
}
