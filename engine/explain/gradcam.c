/* Grad-CAM and its gradient-weighted relatives. A is the target layer's activation (K channels,
 * h x w), G = ∂y_c/∂A from the request's shared backward pass (which stops at the layer when no
 * input gradient is asked for). Every map is ReLU(Σ_k w_k A_k) at the layer's resolution,
 * unnormalized, except LayerCAM's element-wise weights:
 *
 *   gradcam     Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via
 *               Gradient-based Localization":   w_k = mean_ij G_kij
 *               (Captum LayerGradCam(relu_attributions=True); pytorch-grad-cam GradCAM)
 *   gradcam_pp  Chattopadhay et al. 2018, "Grad-CAM++": with the exponential-score closed form
 *               α_kij = G² / (2G² + Σ_ab A_kab · G³ + ε), α = 0 where G = 0, ε = 1e-6,
 *               w_k = Σ_ij α_kij · ReLU(G_kij)            (pytorch-grad-cam GradCAMPlusPlus)
 *   xgradcam    Fu et al. 2020, "Axiom-based Grad-CAM":   w_k = Σ_ij G_kij A_kij / (Σ_ij A_kij + 1e-7)
 *               (pytorch-grad-cam XGradCAM)
 *   layercam    Jiang et al. 2021, "LayerCAM: Exploring Hierarchical Class Activation Maps for
 *               Localization":   map_ij = ReLU(Σ_k ReLU(G_kij) A_kij)   (pytorch-grad-cam LayerCAM)
 * Sums run in double. */
#include <math.h>
#include <stdlib.h>

#include "methods.h"

typedef enum { W_GRADCAM, W_GRADCAM_PP, W_XGRADCAM, W_LAYERCAM } cam_kind_t;

static int weighted_cam(ectx_t *c, method_result_t *r, cam_kind_t kind, eng_err_t *err)
{
    const int K = c->LC;
    const size_t hw = (size_t)c->LH * c->LW;
    const float *A = c->layer_act, *G = c->grad_layer;
    float *map = calloc(hw, sizeof(float));
    double *acc = calloc(hw, sizeof(double));
    if (!map || !acc) {
        free(map);
        free(acc);
        return eng_errf(err, ENG_ENOMEM, "out of memory");
    }
    for (int k = 0; k < K; k++) {
        const float *a = A + k * hw, *g = G + k * hw;
        if (kind == W_LAYERCAM) {
            for (size_t i = 0; i < hw; i++) acc[i] += (g[i] > 0 ? (double)g[i] : 0.0) * a[i];
            continue;
        }
        double w = 0;
        if (kind == W_GRADCAM) {
            for (size_t i = 0; i < hw; i++) w += g[i];
            w /= (double)hw;
        } else if (kind == W_XGRADCAM) {
            double sa = 0;
            for (size_t i = 0; i < hw; i++) sa += a[i];
            for (size_t i = 0; i < hw; i++) w += (double)g[i] * a[i] / (sa + 1e-7);
        } else {
            double sa = 0;
            for (size_t i = 0; i < hw; i++) sa += a[i];
            for (size_t i = 0; i < hw; i++) {
                double g1 = g[i], g2 = g1 * g1, g3 = g2 * g1;
                if (g1 == 0) continue;
                double alpha = g2 / (2 * g2 + sa * g3 + 1e-6);
                w += alpha * (g1 > 0 ? g1 : 0);
            }
        }
        for (size_t i = 0; i < hw; i++) acc[i] += w * a[i];
    }
    for (size_t i = 0; i < hw; i++) map[i] = acc[i] > 0 ? (float)acc[i] : 0.f;
    free(acc);
    r->layer = c->layer;
    ex_set_map2d(r, map, c->LH, c->LW);
    return ENG_OK;
}

int explain_gradcam(ectx_t *c, method_result_t *r, eng_err_t *err) { return weighted_cam(c, r, W_GRADCAM, err); }
int explain_gradcam_pp(ectx_t *c, method_result_t *r, eng_err_t *err) { return weighted_cam(c, r, W_GRADCAM_PP, err); }
int explain_xgradcam(ectx_t *c, method_result_t *r, eng_err_t *err) { return weighted_cam(c, r, W_XGRADCAM, err); }
int explain_layercam(ectx_t *c, method_result_t *r, eng_err_t *err) { return weighted_cam(c, r, W_LAYERCAM, err); }
