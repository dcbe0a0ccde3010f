/* Integrated Gradients — Sundararajan, Taly & Yan 2017, "Axiomatic Attribution for Deep Networks".
 *   IG(x) = (x − x₀) ⊙ ∫₀¹ ∂y_c/∂x (x₀ + α(x − x₀)) dα  ≈  (x − x₀) ⊙ Σ_i w_i ∂y_c/∂x (x₀ + α_i (x − x₀))
 * Quadrature rules as Captum's IntegratedGradients (captum.attr._utils.approximation_methods):
 *   riemann_left      α_i = i/n,          w_i = 1/n        (i = 0..n-1)
 *   riemann_right     α_i = (i+1)/n,      w_i = 1/n
 *   riemann_middle    α_i = (i+½)/n,      w_i = 1/n
 *   riemann_trapezoid α_i = i/(n−1),      w_i = 1/n, halved at both ends (n ≥ 2). This is Captum's
 *                     rule (approximation_methods.riemann_builders) and we follow it on purpose:
 *                     its weights sum to (n−1)/n, not 1, so IG is scaled by (n−1)/n against the
 *                     textbook trapezoid; convergence_delta shows it
 *   gausslegendre     α_i = (1+t_i)/2,    w_i = v_i/2     (t, v: Gauss-Legendre nodes and weights)
 * Completeness: Σ IG = f(x) − f(x₀) in the limit; extra.convergence_delta = Σ IG − (f(x) − f(x₀)).
 * Baselines x₀: zero (the zero tensor), black (a black image, preprocessed), blur (the input
 * blurred by a Gaussian of σ = side/16 per channel, reflect padding), uniform (seeded U(min x, max x)).
 * The path points run as batches up to the workspace's maximum batch; f(x₀) rides in a batch. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "methods.h"

/* P_n(x) and its derivative, by the three-term recurrence (|x| < 1) */
static void legendre(int n, double x, double *p, double *dp)
{
    double p0 = 1, p1 = x;
    for (int k = 2; k <= n; k++) {
        double p2 = ((2.0 * k - 1) * x * p1 - (k - 1.0) * p0) / k;
        p0 = p1;
        p1 = p2;
    }
    *p = p1;
    *dp = n * (x * p1 - p0) / (x * x - 1);
}

/* Gauss-Legendre nodes on [-1, 1], ascending, by Newton's method on P_n (double precision). */
static void gauss_legendre(int n, double *t, double *v)
{
    for (int i = 0; i < (n + 1) / 2; i++) {
        double x = cos(M_PI * (i + 0.75) / (n + 0.5)), pn, dp;
        for (int it = 0; it < 100; it++) {
            legendre(n, x, &pn, &dp);
            double dx = pn / dp;
            x -= dx;
            if (fabs(dx) < 1e-15) break;
        }
        legendre(n, x, &pn, &dp); /* the derivative at the converged node */
        double w = 2 / ((1 - x * x) * dp * dp);
        t[i] = -x; /* ascending */
        t[n - 1 - i] = x;
        v[i] = v[n - 1 - i] = w;
    }
}

int ig_rule(int method, int n, double *alpha, double *w)
{
    if (n < 1) return -1;
    switch (method) {
    case IG_RIEMANN_LEFT: for (int i = 0; i < n; i++) { alpha[i] = (double)i / n; w[i] = 1.0 / n; } break;
    case IG_RIEMANN_RIGHT: for (int i = 0; i < n; i++) { alpha[i] = (i + 1.0) / n; w[i] = 1.0 / n; } break;
    case IG_RIEMANN_MIDDLE: for (int i = 0; i < n; i++) { alpha[i] = (i + 0.5) / n; w[i] = 1.0 / n; } break;
    case IG_RIEMANN_TRAPEZOID:
        if (n < 2) return -1;
        for (int i = 0; i < n; i++) {
            alpha[i] = (double)i / (n - 1);
            w[i] = (i == 0 || i == n - 1) ? 0.5 / n : 1.0 / n;
        }
        break;
    default:
        gauss_legendre(n, alpha, w);
        for (int i = 0; i < n; i++) {
            alpha[i] = 0.5 * (alpha[i] + 1);
            w[i] *= 0.5;
        }
        break;
    }
    return 0;
}

int ex_make_baseline(ectx_t *c, int kind, uint64_t seed, float *out, eng_err_t *err)
{
    const input_spec_t *s = &c->m->input;
    const size_t hw = (size_t)c->H * c->W;
    switch (kind) {
    case BASELINE_ZERO: memset(out, 0, sizeof(float) * c->in_size); break;
    case BASELINE_BLACK:
        for (int ch = 0; ch < c->C; ch++) {
            int alpha = s->color == COLOR_RGBA && ch == 3; /* a black image is opaque */
            float px = s->invert != alpha ? 255.f : 0.f, v = (px / s->scale - s->mean[ch]) / s->std[ch];
            for (size_t i = 0; i < hw; i++) out[ch * hw + i] = v;
        }
        break;
    case BASELINE_BLUR: maps_blur(c->x, c->C, c->H, c->W, (c->H > c->W ? c->H : c->W) / 16.0, out); break;
    case BASELINE_UNIFORM: {
        float lo = c->x[0], hi = c->x[0];
        for (size_t i = 0; i < c->in_size; i++) {
            lo = fminf(lo, c->x[i]);
            hi = fmaxf(hi, c->x[i]);
        }
        rng_t r;
        rng_seed(&r, seed, 0xba5e);
        for (size_t i = 0; i < c->in_size; i++) out[i] = lo + (hi - lo) * (float)rng_uniform(&r);
        break;
    }
    default: return eng_errf(err, ENG_EINVAL, "unknown baseline");
    }
    return ENG_OK;
}

/* IG of input xin against baseline x0 (both in_size); attr gets in_size floats.
 * fx, fx0: target logits at xin and x0. */
int ex_ig_attribute(ectx_t *c, const float *xin, const float *x0, float *attr, double *fx, double *fx0, eng_err_t *err)
{
    const int n = c->p->ig_steps, B = ex_max_batch(c);
    const size_t S = c->in_size;
    double *alpha = malloc(sizeof(double) * (n + 1)), *w = malloc(sizeof(double) * (n + 1));
    double *tot = calloc(S, sizeof(double));
    float *xs = malloc(sizeof(float) * S * B), *gs = malloc(sizeof(float) * S * B), *lg = malloc(sizeof(float) * (size_t)B * c->K);
    int rc = ENG_OK;
    if (!alpha || !w || !tot || !xs || !gs || !lg) {
        rc = eng_errf(err, ENG_ENOMEM, "out of memory");
        goto out;
    }
    if (ig_rule(c->p->ig_method, n, alpha, w)) {
        rc = eng_errf(err, ENG_EINVAL, "ig_method riemann_trapezoid needs ig_steps >= 2");
        goto out;
    }
    /* points 0..n-1 are the path; point n is the baseline itself (weight 0) for f(x0), and point
     * n+1 is xin for f(x) — both only forwarded along in a batch with room, never extra passes */
    const int total = n + 2;
    for (int p0 = 0; p0 < total; p0 += B) {
        int nb = total - p0 < B ? total - p0 : B;
        for (int i = 0; i < nb; i++) {
            int p = p0 + i;
            float *dst = xs + (size_t)i * S;
            if (p < n) {
                float a = (float)alpha[p];
                for (size_t k = 0; k < S; k++) dst[k] = x0[k] + a * (xin[k] - x0[k]);
            } else if (p == n) {
                memcpy(dst, x0, sizeof(float) * S);
            } else {
                memcpy(dst, xin, sizeof(float) * S);
            }
        }
        int grads_needed = p0 < n;
        if (grads_needed) rc = ex_grad_batch(c, xs, nb, c->target, NULL, 0, gs, lg, err);
        else rc = ex_logits_batch(c, xs, nb, lg, err);
        if (rc) goto out;
        for (int i = 0; i < nb; i++) {
            int p = p0 + i;
            if (p < n) {
                const float *g = gs + (size_t)i * S;
                for (size_t k = 0; k < S; k++) tot[k] += w[p] * g[k];
            } else if (p == n) {
                *fx0 = lg[(size_t)i * c->K + c->target];
            } else {
                *fx = lg[(size_t)i * c->K + c->target];
            }
        }
    }
    for (size_t k = 0; k < S; k++) attr[k] = (float)(tot[k] * ((double)xin[k] - x0[k]));
out:
    free(alpha); free(w); free(tot); free(xs); free(gs); free(lg);
    return rc;
}

int explain_integrated_gradients(ectx_t *c, method_result_t *r, eng_err_t *err)
{
    float *x0 = malloc(sizeof(float) * c->in_size), *attr = malloc(sizeof(float) * c->in_size);
    if (!x0 || !attr) {
        free(x0);
        free(attr);
        return eng_errf(err, ENG_ENOMEM, "out of memory");
    }
    int rc = ex_make_baseline(c, c->p->baseline, c->p->seed, x0, err);
    double fx = 0, fx0 = 0;
    if (!rc) rc = ex_ig_attribute(c, c->x, x0, attr, &fx, &fx0, err);
    free(x0);
    if (rc) {
        free(attr);
        return rc;
    }
    double sum = 0;
    for (size_t k = 0; k < c->in_size; k++) sum += attr[k];
    if (ex_set_gradient_result(c, r, attr)) return eng_errf(err, ENG_ENOMEM, "out of memory");
    ex_add_extra(r, "convergence_delta", sum - (fx - fx0));
    ex_add_extra(r, "f_input", fx);
    ex_add_extra(r, "f_baseline", fx0);
    return ENG_OK;
}
