/* Guided Grad-CAM — Selvaraju et al. 2017 (§3.2): guided backpropagation multiplied by the
 * Grad-CAM map upsampled to the input, as Captum GuidedGradCam computes it:
 *   attribution[ch,y,x] = GB[ch,y,x] · up(GradCAM)[y,x]
 * with up = nearest-neighbour interpolation (Captum's default interpolate_mode="nearest", i.e. torch
 * F.interpolate(mode='nearest'): source index floor(dst · in/out)) and Grad-CAM with ReLU.
 * Shares the guided pass with guided_backprop and the ordinary pass with gradcam. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "methods.h"

int explain_guided_gradcam(ectx_t *c, method_result_t *r, eng_err_t *err)
{
    method_result_t gc;
    memset(&gc, 0, sizeof gc);
    int rc = explain_gradcam(c, &gc, err);
    if (rc) return rc;
    float *a = malloc(sizeof(float) * c->in_size);
    if (!a) {
        free(gc.map);
        return eng_errf(err, ENG_ENOMEM, "out of memory");
    }
    const size_t hw = (size_t)c->H * c->W;
    for (int y = 0; y < c->H; y++) {
        int sy = (int)floor((double)y * c->LH / c->H);
        if (sy > c->LH - 1) sy = c->LH - 1;
        for (int x = 0; x < c->W; x++) {
            int sx = (int)floor((double)x * c->LW / c->W);
            if (sx > c->LW - 1) sx = c->LW - 1;
            float m = gc.map[sy * c->LW + sx];
            for (int ch = 0; ch < c->C; ch++) a[ch * hw + (size_t)y * c->W + x] = c->guided_input[ch * hw + (size_t)y * c->W + x] * m;
        }
    }
    free(gc.map);
    r->layer = c->layer;
    if (ex_set_gradient_result(c, r, a)) return eng_errf(err, ENG_ENOMEM, "out of memory");
    return ENG_OK;
}
