/* Edge detector baseline — the Sobel gradient magnitude of the input. Adebayo et al. 2018 ("Sanity
 * Checks for Saliency Maps") hold saliency maps against it: a method that stays this similar to
 * an edge detector under randomization explains the image, not the model.
 * Exactly skimage.filters.sobel (0.19) on the grayscale input:
 *   gray = input (1 channel) or 0.2125 R + 0.7154 G + 0.0721 B (skimage rgb2gray), taken from the
 *          de-normalized tensor (pixel / scale);
 *   h = [1,2,1]ᵀ/4 ⊗ [1,0,−1] and v its transpose, 'reflect' borders (d c b a | a b c d),
 *   magnitude = √((h² + v²)/2). The border is computed like the interior: skimage 0.19.3 (Debian's)
 *   zeroes it only when a mask is given, although older releases always zeroed it.
 * Model-independent: no pass runs. */
#include <math.h>
#include <stdlib.h>

#include "methods.h"

void explain_input_gray(const model_t *m, const float *x, float *gray)
{
    const input_spec_t *s = &m->input;
    const size_t hw = (size_t)s->height * s->width;
    static const double wrgb[3] = {0.2125, 0.7154, 0.0721};
    for (size_t i = 0; i < hw; i++) {
        double v = 0;
        for (int ch = 0; ch < s->channels; ch++) {
            double px = (double)x[ch * hw + i] * s->std[ch] + s->mean[ch]; /* pixel / scale */
            int color = s->color == COLOR_RGB || s->color == COLOR_RGBA; /* luminance of R, G, B; alpha ignored */
            v += color ? (ch < 3 ? wrgb[s->bgr ? 2 - ch : ch] : 0.0) * px : px / s->channels;
        }
        gray[i] = (float)v;
    }
}

int explain_edge(ectx_t *c, method_result_t *r, eng_err_t *err)
{
    const size_t hw = (size_t)c->H * c->W;
    float *gray = malloc(sizeof(float) * hw), *map = malloc(sizeof(float) * hw);
    if (!gray || !map) {
        free(gray);
        free(map);
        return eng_errf(err, ENG_ENOMEM, "out of memory");
    }
    explain_input_gray(c->m, c->x, gray);
    maps_sobel(gray, c->H, c->W, map);
    free(gray);
    ex_set_map2d(r, map, c->H, c->W);
    return ENG_OK;
}
