/* Guided Backpropagation — Springenberg, Dosovitskiy, Brox & Riedmiller 2015, "Striving for
 * Simplicity: The All Convolutional Net"; and Deconvnet — Zeiler & Fergus 2014, "Visualizing and
 * Understanding Convolutional Networks".
 * Both are the input gradient of y_c with ReLU's backward rule replaced (engine backward hooks),
 * as Captum's GuidedBackprop and Deconvolution do for every ReLU:
 *   ordinary:  dx = dy · [x > 0]
 *   guided:    dx = max(dy, 0) · [x > 0]      (Captum: relu of the ordinary grad_input)
 *   deconvnet: dx = max(dy, 0)                (Captum: relu of grad_output)
 * Only Relu nodes are hooked: Captum hooks nn.ReLU modules, so ReLU6 (exported as Clip) keeps its
 * ordinary rule in both. Captum does not hook F.relu calls inside a forward; ONNX cannot tell
 * them apart, so here every Relu node is guided (documented in docs/METHODS.md).
 * guided_backprop reuses the request's shared guided pass; deconvnet runs its own. */
#include <stdlib.h>

#include "methods.h"

static void guided_rule(const float *x, const float *y, const float *dy, float *dx, size_t n, int acc, void *ctx)
{
    (void)x;
    (void)ctx;
    /* y > 0 exactly when x > 0 for ReLU. One loop per case, as act_backward: with `acc` tested
     * inside, the compiler keeps the loop scalar and branchy (the same values either way). */
    if (acc)
        for (size_t i = 0; i < n; i++) {
            const float d = dy[i], Y = y[i];
            dx[i] += ((Y > 0) & (d > 0)) ? d : 0.f;
        }
    else
        for (size_t i = 0; i < n; i++) {
            const float d = dy[i], Y = y[i];
            dx[i] = ((Y > 0) & (d > 0)) ? d : 0.f;
        }
}

static void deconv_rule(const float *x, const float *y, const float *dy, float *dx, size_t n, int acc, void *ctx)
{
    (void)x;
    (void)y;
    (void)ctx;
    if (acc)
        for (size_t i = 0; i < n; i++) {
            const float d = dy[i];
            dx[i] += d > 0 ? d : 0.f;
        }
    else
        for (size_t i = 0; i < n; i++) {
            const float d = dy[i];
            dx[i] = d > 0 ? d : 0.f;
        }
}

const bw_hook_t ex_guided_hook = {"Relu", guided_rule, NULL};
const bw_hook_t ex_deconv_hook = {"Relu", deconv_rule, NULL};

int explain_guided_backprop(ectx_t *c, method_result_t *r, eng_err_t *err)
{
    float *a = malloc(sizeof(float) * c->in_size);
    if (!a) return eng_errf(err, ENG_ENOMEM, "out of memory");
    for (size_t i = 0; i < c->in_size; i++) a[i] = c->guided_input[i];
    if (ex_set_gradient_result(c, r, a)) return eng_errf(err, ENG_ENOMEM, "out of memory");
    return ENG_OK;
}

int explain_deconvnet(ectx_t *c, method_result_t *r, eng_err_t *err)
{
    float *a = malloc(sizeof(float) * c->in_size);
    if (!a) return eng_errf(err, ENG_ENOMEM, "out of memory");
    int rc = ex_grad_batch(c, c->x, 1, c->target, &ex_deconv_hook, 1, a, NULL, err);
    if (rc) {
        free(a);
        return rc;
    }
    if (ex_set_gradient_result(c, r, a)) return eng_errf(err, ENG_ENOMEM, "out of memory");
    return ENG_OK;
}
