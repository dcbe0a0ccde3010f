/* Layer activations — the feature maps of `layer` for the image ("visualize intermediate
 * activations"). The native map is the whole C x h x w activation; per channel the mean and max,
 * and the activations_top channels ranked by mean activation (ties by index), which the renderer
 * tiles into a grid PNG. */
#include <stdlib.h>
#include <string.h>

#include "methods.h"

int explain_activations(ectx_t *c, method_result_t *r, eng_err_t *err)
{
    const int K = c->LC;
    const size_t hw = (size_t)c->LH * c->LW;
    float *map = malloc(sizeof(float) * c->layer_size);
    r->ch_mean = malloc(sizeof(float) * K);
    r->ch_max = malloc(sizeof(float) * K);
    int top = c->p->activations_top > 0 ? c->p->activations_top : 16;
    if (top > K) top = K;
    r->top_channels = malloc(sizeof(int) * K);
    if (!map || !r->ch_mean || !r->ch_max || !r->top_channels) {
        free(map);
        return eng_errf(err, ENG_ENOMEM, "out of memory");
    }
    memcpy(map, c->layer_act, sizeof(float) * c->layer_size);
    for (int k = 0; k < K; k++) {
        double s = 0;
        float mx = map[k * hw];
        for (size_t i = 0; i < hw; i++) {
            s += map[k * hw + i];
            if (map[k * hw + i] > mx) mx = map[k * hw + i];
        }
        r->ch_mean[k] = (float)(s / (double)hw);
        r->ch_max[k] = mx;
        r->top_channels[k] = k;
    }
    for (int i = 0; i < top; i++) {
        int best = i;
        for (int j = i + 1; j < K; j++) {
            int a = r->top_channels[j], b = r->top_channels[best];
            if (r->ch_mean[a] > r->ch_mean[b] || (r->ch_mean[a] == r->ch_mean[b] && a < b)) best = j;
        }
        int t = r->top_channels[i];
        r->top_channels[i] = r->top_channels[best];
        r->top_channels[best] = t;
    }
    r->n_channels = K;
    r->n_top = top;
    r->layer = c->layer;
    r->map = map;
    const value_t *lv = &c->g->values[c->layer];
    if (lv->rank == 4) {
        r->rank = 3;
        r->dims[0] = K;
        r->dims[1] = c->LH;
        r->dims[2] = c->LW;
    } else {
        r->rank = 1;
        r->dims[0] = (int)c->layer_size;
    }
    ex_stats(r);
    return ENG_OK;
}
