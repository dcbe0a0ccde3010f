/* SmoothGrad — Smilkov, Thorat, Kim, Viégas & Wattenberg 2017, "SmoothGrad: removing noise by
 * adding noise"; VarGrad — Adebayo et al. 2018 ("Local explanation methods for deep neural networks
 * lack sensitivity to parameter values").
 * As Captum NoiseTunnel around a base method E (saliency, grad_x_input, integrated_gradients,
 * guided_backprop), with N samples x_s = x + ε_s, ε_s ~ N(0, σ²), σ = smoothgrad_noise · (max x − min x):
 *   smoothgrad     = (1/N) Σ_s E(x_s)
 *   smoothgrad_sq  = (1/N) Σ_s E(x_s)²
 *   vargrad        = (1/N) Σ_s E(x_s)² − ((1/N) Σ_s E(x_s))²
 * Noise is drawn from the request seed (same seed, same bytes). Samples run as batches; with the
 * integrated_gradients base each sample is a full IG (its steps batched). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "methods.h"

int explain_smoothgrad(ectx_t *c, method_result_t *r, eng_err_t *err)
{
    const explain_params_t *p = c->p;
    const int N = p->smoothgrad_samples, B = ex_max_batch(c), base = p->smoothgrad_base;
    const size_t S = c->in_size;
    if (!(method_needs(base) & MN_SMOOTHABLE))
        return eng_errf(err, ENG_EINVAL, "smoothgrad_base must be saliency, grad_x_input, integrated_gradients or guided_backprop");
    float lo = c->x[0], hi = c->x[0];
    for (size_t i = 0; i < S; i++) {
        lo = fminf(lo, c->x[i]);
        hi = fmaxf(hi, c->x[i]);
    }
    const double sigma = (double)p->smoothgrad_noise * (hi - lo);
    double *sum = calloc(S, sizeof(double)), *sq = calloc(S, sizeof(double));
    float *xs = malloc(sizeof(float) * S * B), *gs = malloc(sizeof(float) * S * B), *x0 = NULL;
    int rc = ENG_OK;
    if (!sum || !sq || !xs || !gs) {
        rc = eng_errf(err, ENG_ENOMEM, "out of memory");
        goto out;
    }
    if (base == M_INTEGRATED_GRADIENTS) {
        x0 = malloc(sizeof(float) * S);
        if (!x0) { rc = eng_errf(err, ENG_ENOMEM, "out of memory"); goto out; }
        if ((rc = ex_make_baseline(c, p->baseline, p->seed, x0, err))) goto out;
    }
    rng_t rng;
    rng_seed(&rng, p->seed, 0x5300);
    for (int s0 = 0; s0 < N; s0 += B) {
        int nb = N - s0 < B ? N - s0 : B;
        for (int i = 0; i < nb; i++)
            for (size_t k = 0; k < S; k++) xs[(size_t)i * S + k] = c->x[k] + (float)(sigma * rng_normal(&rng));
        if (base == M_INTEGRATED_GRADIENTS) {
            for (int i = 0; i < nb && !rc; i++) {
                double fx, fx0;
                rc = ex_ig_attribute(c, xs + (size_t)i * S, x0, gs + (size_t)i * S, &fx, &fx0, err);
            }
        } else {
            rc = ex_grad_batch(c, xs, nb, c->target, base == M_GUIDED_BACKPROP ? &ex_guided_hook : NULL,
                               base == M_GUIDED_BACKPROP, gs, NULL, err);
        }
        if (rc) goto out;
        for (int i = 0; i < nb; i++)
            for (size_t k = 0; k < S; k++) {
                double v = gs[(size_t)i * S + k];
                if (base == M_SALIENCY) v = fabs(v);
                else if (base == M_GRAD_X_INPUT) v *= xs[(size_t)i * S + k];
                sum[k] += v;
                sq[k] += v * v;
            }
    }
    float *attr = malloc(sizeof(float) * S);
    if (!attr) { rc = eng_errf(err, ENG_ENOMEM, "out of memory"); goto out; }
    for (size_t k = 0; k < S; k++) {
        double m = sum[k] / N, m2 = sq[k] / N;
        attr[k] = (float)(p->smoothgrad_type == SG_SMOOTHGRAD ? m : p->smoothgrad_type == SG_SMOOTHGRAD_SQ ? m2 : m2 - m * m);
    }
    if (ex_set_gradient_result(c, r, attr)) rc = eng_errf(err, ENG_ENOMEM, "out of memory");
    ex_add_extra(r, "noise_stdev", sigma);
    ex_add_extra(r, "samples", N);
out:
    free(sum); free(sq); free(xs); free(gs); free(x0);
    return rc;
}
