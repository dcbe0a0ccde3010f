/* Deletion and insertion AUC — Petsiuk, Das & Saenko 2018, "RISE: Randomized Input Sampling for
 * Explanation of Black-box Models", §4 (causal metrics).
 * Pixels are ranked by the method's map (upsampled bilinearly to the input when it is coarser;
 * ties broken by pixel index). With S = faithfulness_steps (default 20):
 *   deletion:  image_s = x with the top s/S of the pixels set to a black image (all channels);
 *   insertion: image_s = the blurred input (σ = side/16) with the top s/S of the pixels of x;
 *   p_s = softmax(y(image_s))_c for s = 0..S;   AUC = Σ_s (p_s + p_{s+1}) / 2 · 1/S.
 * Low deletion AUC and high insertion AUC mean the map points at what the model uses. The 2(S+1)
 * images run in batches. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "methods.h"

typedef struct {
    float k;
    int i;
} kv_t;

static int cmp_desc(const void *a, const void *b)
{
    const kv_t *x = a, *y = b;
    if (x->k > y->k) return -1;
    if (x->k < y->k) return 1;
    return x->i - y->i;
}

/* pixel indices by decreasing key, ties by index; NaN ranks last */
static int sort_desc(const float *key, int *idx, size_t n)
{
    kv_t *kv = malloc(sizeof(kv_t) * n);
    if (!kv) return -1;
    for (size_t q = 0; q < n; q++) {
        kv[q].k = isnan(key[q]) ? -INFINITY : key[q];
        kv[q].i = (int)q;
    }
    qsort(kv, n, sizeof(kv_t), cmp_desc);
    for (size_t q = 0; q < n; q++) idx[q] = kv[q].i;
    free(kv);
    return 0;
}

int ex_faithfulness(ectx_t *c, method_result_t *r, eng_err_t *err)
{
    const int S = c->p->faithfulness_steps > 0 ? c->p->faithfulness_steps : 20, B = ex_max_batch(c);
    const size_t hw = (size_t)c->H * c->W, N = c->in_size;
    float *key = malloc(sizeof(float) * hw), *black = malloc(sizeof(float) * N), *blur = malloc(sizeof(float) * N);
    int *order = malloc(sizeof(int) * hw);
    float *xs = malloc(sizeof(float) * N * B), *lg = malloc(sizeof(float) * (size_t)B * c->K);
    double *prob = malloc(sizeof(double) * 2 * (S + 1));
    int rc = ENG_OK;
    if (!key || !black || !blur || !order || !xs || !lg || !prob) { rc = eng_errf(err, ENG_ENOMEM, "out of memory"); goto out; }
    if (r->rank == 2 && r->dims[0] == c->H && r->dims[1] == c->W) memcpy(key, r->map, sizeof(float) * hw);
    else if (r->rank == 2) maps_upsample_bilinear(r->map, r->dims[0], r->dims[1], key, c->H, c->W);
    else { rc = ENG_OK; goto out; } /* not a 2-D map: nothing to rank */
    if (sort_desc(key, order, hw)) { rc = eng_errf(err, ENG_ENOMEM, "out of memory"); goto out; }
    if ((rc = ex_make_baseline(c, BASELINE_BLACK, 0, black, err))) goto out;
    if ((rc = ex_make_baseline(c, BASELINE_BLUR, 0, blur, err))) goto out;
    const int total = 2 * (S + 1);
    for (int t0 = 0; t0 < total; t0 += B) {
        int nb = total - t0 < B ? total - t0 : B;
        for (int i = 0; i < nb; i++) {
            int t = t0 + i, del = t <= S, s = del ? t : t - (S + 1);
            size_t k = (size_t)((double)s / S * hw + 0.5);
            float *d = xs + (size_t)i * N;
            memcpy(d, del ? c->x : blur, sizeof(float) * N);
            const float *src = del ? black : c->x;
            for (size_t q = 0; q < k; q++)
                for (int ch = 0; ch < c->C; ch++) d[ch * hw + order[q]] = src[ch * hw + order[q]];
        }
        if ((rc = ex_logits_batch(c, xs, nb, lg, err))) goto out;
        for (int i = 0; i < nb; i++) {
            const float *l = lg + (size_t)i * c->K;
            double mx = l[0], z = 0;
            for (int k = 1; k < c->K; k++) mx = fmax(mx, l[k]);
            for (int k = 0; k < c->K; k++) z += exp(l[k] - mx);
            prob[t0 + i] = exp(l[c->target] - mx) / z;
        }
    }
    double da = 0, ia = 0;
    for (int s = 0; s < S; s++) {
        da += (prob[s] + prob[s + 1]) / 2 / S;
        ia += (prob[S + 1 + s] + prob[S + 2 + s]) / 2 / S;
    }
    r->has_faithfulness = 1;
    r->deletion_auc = da;
    r->insertion_auc = ia;
out:
    free(key); free(black); free(blur); free(order); free(xs); free(lg); free(prob);
    return rc;
}
