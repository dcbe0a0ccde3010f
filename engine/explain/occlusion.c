/* Occlusion — Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional Networks", as
 * Captum's Occlusion computes it for a window covering all channels:
 *   windows start at (i·s, j·s), i < ⌈(H − w)/s⌉ + 1 (likewise for j), clipped at the border;
 *   map[y,x] = mean over the windows W ∋ (y,x) of  y_c(x) − y_c(x with W set to the baseline)
 * occlusion_window w defaults to max(1, round(side/8)), occlusion_stride s to max(1, w/2); the
 * baseline is the request's `baseline` (zero by default). Occluded inputs run in batches. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "methods.h"

int explain_occlusion(ectx_t *c, method_result_t *r, eng_err_t *err)
{
    const int side = c->H < c->W ? c->H : c->W, B = ex_max_batch(c);
    int w = c->p->occlusion_window > 0 ? c->p->occlusion_window : (int)floor(side / 8.0 + 0.5);
    if (w < 1) w = 1;
    int s = c->p->occlusion_stride > 0 ? c->p->occlusion_stride : w / 2;
    if (s < 1) s = 1;
    if (w > c->H || w > c->W)
        return eng_errf(err, ENG_EINVAL, "occlusion_window %d is larger than the %dx%d input", w, c->W, c->H);
    if (s > w) return eng_errf(err, ENG_EINVAL, "occlusion_stride %d is larger than occlusion_window %d", s, w);
    const int ny = (int)ceil((double)(c->H - w) / s) + 1, nx = (int)ceil((double)(c->W - w) / s) + 1;
    const int total = ny * nx;
    const size_t S = c->in_size, hw = (size_t)c->H * c->W;
    float *x0 = malloc(sizeof(float) * S), *xs = malloc(sizeof(float) * S * B), *lg = malloc(sizeof(float) * (size_t)B * c->K);
    double *sum = calloc(hw, sizeof(double)), *cnt = calloc(hw, sizeof(double));
    int rc = ENG_OK;
    if (!x0 || !xs || !lg || !sum || !cnt) { rc = eng_errf(err, ENG_ENOMEM, "out of memory"); goto out; }
    if ((rc = ex_make_baseline(c, c->p->baseline, c->p->seed, x0, err))) goto out;
    const double f0 = c->logits[c->target];
    for (int t0 = 0; t0 < total; t0 += B) {
        int nb = total - t0 < B ? total - t0 : B;
        for (int i = 0; i < nb; i++) {
            int t = t0 + i, y0 = (t / nx) * s, xx0 = (t % nx) * s;
            float *d = xs + (size_t)i * S;
            memcpy(d, c->x, sizeof(float) * S);
            for (int ch = 0; ch < c->C; ch++)
                for (int y = y0; y < y0 + w && y < c->H; y++)
                    for (int x = xx0; x < xx0 + w && x < c->W; x++) d[ch * hw + (size_t)y * c->W + x] = x0[ch * hw + (size_t)y * c->W + x];
        }
        if ((rc = ex_logits_batch(c, xs, nb, lg, err))) goto out;
        for (int i = 0; i < nb; i++) {
            int t = t0 + i, y0 = (t / nx) * s, xx0 = (t % nx) * s;
            double d = f0 - lg[(size_t)i * c->K + c->target];
            for (int y = y0; y < y0 + w && y < c->H; y++)
                for (int x = xx0; x < xx0 + w && x < c->W; x++) {
                    sum[(size_t)y * c->W + x] += d;
                    cnt[(size_t)y * c->W + x] += 1;
                }
        }
    }
    float *map = malloc(sizeof(float) * hw);
    if (!map) { rc = eng_errf(err, ENG_ENOMEM, "out of memory"); goto out; }
    for (size_t q = 0; q < hw; q++) map[q] = cnt[q] > 0 ? (float)(sum[q] / cnt[q]) : 0.f;
    ex_set_map2d(r, map, c->H, c->W);
    ex_add_extra(r, "window", w);
    ex_add_extra(r, "stride", s);
    ex_add_extra(r, "windows", total);
out:
    free(x0); free(xs); free(lg); free(sum); free(cnt);
    return rc;
}
