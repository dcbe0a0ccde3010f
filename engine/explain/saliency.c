/* Saliency — Simonyan, Vedaldi & Zisserman 2014, "Deep Inside Convolutional Networks: Visualising
 * Image Classification Models and Saliency Maps".
 *   attribution = | ∂y_c / ∂x |              (Captum Saliency(abs=True))
 *   raw map = the attribution reduced over channels (abs_sum by default).
 * The gradient comes from the request's shared ordinary backward pass. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "methods.h"

int explain_saliency(ectx_t *c, method_result_t *r, eng_err_t *err)
{
    float *a = malloc(sizeof(float) * c->in_size);
    if (!a) return eng_errf(err, ENG_ENOMEM, "out of memory");
    for (size_t i = 0; i < c->in_size; i++) a[i] = fabsf(c->grad_input[i]);
    if (ex_set_gradient_result(c, r, a)) return eng_errf(err, ENG_ENOMEM, "out of memory");
    return ENG_OK;
}
