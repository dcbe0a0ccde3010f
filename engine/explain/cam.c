/* CAM — Zhou, Khosla, Lapedriza, Oliva & Torralba 2016, "Learning Deep Features for
 * Discriminative Localization".
 *   For a head  logits = W · GAP(A) + b :   map_ij = ReLU(Σ_k W_ck A_kij)
 * at the layer's resolution, unnormalized (bias dropped, as in the paper). Only defined when the
 * layer feeds global average pooling and one linear layer; any other head is a 422 with the
 * reason (use gradcam there, which equals CAM up to a constant for such heads). */
#include <stdlib.h>

#include "methods.h"

int explain_cam(ectx_t *c, method_result_t *r, eng_err_t *err)
{
    const float *W, *b;
    int classes, channels;
    int rc = graph_gap_linear_head(c->g, c->layer, &W, &b, &classes, &channels, err);
    if (rc) return rc;
    const size_t hw = (size_t)c->LH * c->LW;
    double *acc = calloc(hw, sizeof(double));
    float *map = malloc(sizeof(float) * hw);
    if (!acc || !map) {
        free(acc);
        free(map);
        return eng_errf(err, ENG_ENOMEM, "out of memory");
    }
    const float *w = W + (size_t)c->target * channels;
    for (int k = 0; k < channels; k++)
        for (size_t i = 0; i < hw; i++) acc[i] += (double)w[k] * c->layer_act[k * hw + i];
    for (size_t i = 0; i < hw; i++) map[i] = acc[i] > 0 ? (float)acc[i] : 0.f;
    free(acc);
    r->layer = c->layer;
    ex_set_map2d(r, map, c->LH, c->LW);
    return ENG_OK;
}
