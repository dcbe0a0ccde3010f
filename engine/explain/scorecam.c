/* Score-CAM — Wang et al. 2020, "Score-CAM: Score-Weighted Visual Explanations for Convolutional
 * Neural Networks", as pytorch-grad-cam's ScoreCAM computes it:
 *   M_k = normalize(up(A_k)),  up = bilinear with align_corners=True (nn.UpsamplingBilinear2d),
 *         normalize(m) = (m − min m) / (max m − min m + 1e-8)
 *   s_k = y_c(x ⊙ M_k)           (the target logit of the masked input; masks broadcast over channels)
 *   w = softmax_k(s)             map = ReLU(Σ_k w_k A_k)
 * scorecam_channels = k > 0 keeps only the k channels with the highest mean activation (the
 * "Faster Score-CAM" shortcut); the softmax then runs over those k. Masked inputs run in batches. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "methods.h"

static void upsample_align_corners(const float *src, int sh, int sw, float *dst, int dh, int dw)
{
    for (int y = 0; y < dh; y++) {
        double fy = dh > 1 ? (double)y * (sh - 1) / (dh - 1) : 0;
        int y0 = (int)fy, y1 = y0 + (y0 < sh - 1);
        double ly = fy - y0;
        for (int x = 0; x < dw; x++) {
            double fx = dw > 1 ? (double)x * (sw - 1) / (dw - 1) : 0;
            int x0 = (int)fx, x1 = x0 + (x0 < sw - 1);
            double lx = fx - x0;
            dst[(size_t)y * dw + x] = (float)((1 - ly) * ((1 - lx) * src[y0 * sw + x0] + lx * src[y0 * sw + x1]) +
                                              ly * ((1 - lx) * src[y1 * sw + x0] + lx * src[y1 * sw + x1]));
        }
    }
}

int explain_scorecam(ectx_t *c, method_result_t *r, eng_err_t *err)
{
    const int K = c->LC, B = ex_max_batch(c);
    const size_t lhw = (size_t)c->LH * c->LW, hw = (size_t)c->H * c->W, S = c->in_size;
    int want = c->p->scorecam_channels > 0 && c->p->scorecam_channels < K ? c->p->scorecam_channels : K;
    int *sel = malloc(sizeof(int) * K);
    double *mean = malloc(sizeof(double) * K), *score = malloc(sizeof(double) * K);
    float *mask = malloc(sizeof(float) * hw), *xs = malloc(sizeof(float) * S * B), *lg = malloc(sizeof(float) * (size_t)B * c->K);
    float *map = NULL;
    int rc = ENG_OK;
    if (!sel || !mean || !score || !mask || !xs || !lg) { rc = eng_errf(err, ENG_ENOMEM, "out of memory"); goto out; }
    for (int k = 0; k < K; k++) {
        double s = 0;
        for (size_t i = 0; i < lhw; i++) s += c->layer_act[k * lhw + i];
        mean[k] = s / (double)lhw;
        sel[k] = k;
    }
    if (want < K) /* top-k by mean activation, ties by index: partial selection sort (k is small) */
        for (int i = 0; i < want; i++) {
            int best = i;
            for (int j = i + 1; j < K; j++)
                if (mean[sel[j]] > mean[sel[best]] || (mean[sel[j]] == mean[sel[best]] && sel[j] < sel[best])) best = j;
            int t = sel[i]; sel[i] = sel[best]; sel[best] = t;
        }
    for (int k0 = 0; k0 < want; k0 += B) {
        int nb = want - k0 < B ? want - k0 : B;
        for (int i = 0; i < nb; i++) {
            int k = sel[k0 + i];
            upsample_align_corners(c->layer_act + k * lhw, c->LH, c->LW, mask, c->H, c->W);
            float lo = mask[0], hi = mask[0];
            for (size_t q = 0; q < hw; q++) { lo = fminf(lo, mask[q]); hi = fmaxf(hi, mask[q]); }
            float inv = 1.f / (hi - lo + 1e-8f);
            for (int ch = 0; ch < c->C; ch++)
                for (size_t q = 0; q < hw; q++)
                    xs[(size_t)i * S + ch * hw + q] = c->x[ch * hw + q] * ((mask[q] - lo) * inv);
        }
        if ((rc = ex_logits_batch(c, xs, nb, lg, err))) goto out;
        for (int i = 0; i < nb; i++) score[k0 + i] = lg[(size_t)i * c->K + c->target];
    }
    double mx = score[0], tot = 0;
    for (int i = 1; i < want; i++) mx = fmax(mx, score[i]);
    for (int i = 0; i < want; i++) tot += exp(score[i] - mx);
    double *acc = calloc(lhw, sizeof(double));
    map = malloc(sizeof(float) * lhw);
    if (!acc || !map) { free(acc); rc = eng_errf(err, ENG_ENOMEM, "out of memory"); goto out; }
    for (int i = 0; i < want; i++) {
        double w = exp(score[i] - mx) / tot;
        const float *a = c->layer_act + (size_t)sel[i] * lhw;
        for (size_t q = 0; q < lhw; q++) acc[q] += w * a[q];
    }
    for (size_t q = 0; q < lhw; q++) map[q] = acc[q] > 0 ? (float)acc[q] : 0.f;
    free(acc);
    r->layer = c->layer;
    ex_set_map2d(r, map, c->LH, c->LW);
    map = NULL;
    ex_add_extra(r, "channels", want);
out:
    free(sel); free(mean); free(score); free(mask); free(xs); free(lg); free(map);
    return rc;
}
