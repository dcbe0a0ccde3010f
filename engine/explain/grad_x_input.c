/* Gradient ⊙ Input — Shrikumar et al. 2016, "Not Just a Black Box: Learning Important Features
 * Through Propagating Activation Differences" (the gradient*input baseline they discuss).
 *   attribution = x ⊙ ∂y_c / ∂x              (Captum InputXGradient)
 * x is the preprocessed input tensor. Shares the ordinary backward pass with saliency. */
#include <stdlib.h>

#include "methods.h"

int explain_grad_x_input(ectx_t *c, method_result_t *r, eng_err_t *err)
{
    float *a = malloc(sizeof(float) * c->in_size);
    if (!a) return eng_errf(err, ENG_ENOMEM, "out of memory");
    for (size_t i = 0; i < c->in_size; i++) a[i] = c->x[i] * c->grad_input[i];
    if (ex_set_gradient_result(c, r, a)) return eng_errf(err, ENG_ENOMEM, "out of memory");
    return ENG_OK;
}
