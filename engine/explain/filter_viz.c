/* Filter visualization by activation maximization — Erhan, Bengio, Courville & Vincent 2009,
 * "Visualizing Higher-Layer Features of a Deep Network"; regularized as in Yosinski, Clune, Nguyen,
 * Fuchs & Lipson 2015, "Understanding Neural Networks Through Deep Visualization".
 * Gradient ascent on the input x (preprocessed space), from seeded noise x₀ ~ N(0, 0.1²):
 *   objective  a(x) = mean_ij A_k(x)_ij   (channel k of `layer`)   or   y_k(x)   (layer < 0: a class logit)
 *   each step: shift x by a random (dy, dx) in [−jitter, jitter] (circularly), g = ∂a/∂x at the shifted
 *              image shifted back, x ← (1 − l2_decay) · (x + lr · g / (rms(g) + 1e-8));
 *              every blur_every steps x ← GaussianBlur(x, blur_sigma).
 * The activation reached at each step (before the update) is recorded. Seeded: same seed, same bytes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "methods.h"

void filterviz_params_default(filterviz_params_t *p)
{
    memset(p, 0, sizeof *p);
    p->layer = -1;
    p->steps = 64;
    p->lr = 0.1f;
    p->l2_decay = 1e-4f;
    p->jitter = 1;
    p->blur_every = 4;
    p->blur_sigma = 0.5f;
}

static void roll(const float *src, int C, int h, int w, int dy, int dx, float *dst)
{
    for (int c = 0; c < C; c++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                int sy = ((y - dy) % h + h) % h, sx = ((x - dx) % w + w) % w;
                dst[((size_t)c * h + y) * w + x] = src[((size_t)c * h + sy) * w + sx];
            }
}

int explain_filter_visualize(const model_t *m, ws_t *ws, const filterviz_params_t *p, float *out, float *curve,
                             eng_err_t *err)
{
    const graph_t *g = m->graph;
    const value_t *in = &g->values[g->input];
    const int C = (int)in->dims[1], H = (int)in->dims[2], W = (int)in->dims[3];
    const size_t S = in->size;
    int target = p->layer >= 0 ? p->layer : g->output;
    const value_t *tv = &g->values[target];
    if (tv->is_const) return eng_errf(err, ENG_EINVAL, "layer is not an activation");
    int nch = tv->rank >= 2 ? (int)tv->dims[1] : 1;
    if (p->index < 0 || p->index >= nch)
        return eng_errf(err, ENG_ENOTFOUND, "filter index %d is out of range 0..%d", p->index, nch - 1);
    if (p->steps < 1) return eng_errf(err, ENG_EINVAL, "steps must be >= 1");
    size_t per = tv->size / (size_t)nch;
    float *x = malloc(sizeof(float) * S), *xr = malloc(sizeof(float) * S), *gr = malloc(sizeof(float) * S);
    float *gb = malloc(sizeof(float) * S), *seed = calloc(tv->size, sizeof(float));
    int rc = ENG_OK;
    if (!x || !xr || !gr || !gb || !seed) { rc = eng_errf(err, ENG_ENOMEM, "out of memory"); goto out; }
    rng_t rng;
    rng_seed(&rng, p->seed, 0xf17e);
    for (size_t i = 0; i < S; i++) x[i] = (float)(0.1 * rng_normal(&rng));
    for (size_t i = 0; i < per; i++) seed[(size_t)p->index * per + i] = 1.f / (float)per; /* mean over the map */
    int cap = g->input;
    bw_req_t req = {.seed_value = target, .seed = seed, .n_capture = 1, .capture = &cap, .capture_out = &gr};
    for (int step = 0; step < p->steps; step++) {
        int dy = 0, dx = 0;
        if (p->jitter > 0) {
            dy = (int)(rng_u64(&rng) % (uint64_t)(2 * p->jitter + 1)) - p->jitter;
            dx = (int)(rng_u64(&rng) % (uint64_t)(2 * p->jitter + 1)) - p->jitter;
        }
        roll(x, C, H, W, dy, dx, xr);
        if ((rc = ws_forward(ws, xr, 1, err))) goto out;
        const float *a = ws_value(ws, target) + (size_t)p->index * per;
        double act = 0;
        for (size_t i = 0; i < per; i++) act += a[i];
        if (curve) curve[step] = (float)(act / (double)per);
        if ((rc = ws_backward(ws, &req, err))) goto out;
        roll(gr, C, H, W, -dy, -dx, gb);
        double ss = 0;
        for (size_t i = 0; i < S; i++) ss += (double)gb[i] * gb[i];
        float scale = p->lr / (float)(sqrt(ss / (double)S) + 1e-8);
        for (size_t i = 0; i < S; i++) x[i] = (1.f - p->l2_decay) * (x[i] + scale * gb[i]);
        if (p->blur_every > 0 && p->blur_sigma > 0 && (step + 1) % p->blur_every == 0) {
            maps_blur(x, C, H, W, p->blur_sigma, xr);
            memcpy(x, xr, sizeof(float) * S);
        }
    }
    memcpy(out, x, sizeof(float) * S);
out:
    free(x); free(xr); free(gr); free(gb); free(seed);
    return rc;
}
