/* budget.c — sanity_layers=auto (the default): how many model-randomization steps a request gets.
 *
 * A cascading check of every parameterized layer is one step per layer: 21 for resnet18, 54 for
 * resnet50, 53 for mobilenet_v2, each step re-running the request's methods. With IG's 50 steps
 * or SmoothGrad's 25 samples that is far more work than a request deadline allows. The rule:
 *   1. `all` (one step per layer) when its estimated work fits the budget;
 *   2. else `blocks` (the model's name scopes: conv1, layer1..layer4, fc for a ResNet);
 *   3. else the first K steps of `blocks` in the request's order (top-down: the K groups nearest
 *      the logits), K as large as fits and at least 1.
 * The budget is sanity_auto_gflop (a config key, default 300 GFLOP, a few seconds of one core),
 * shared by the request's images. The estimate counts FLOPs (multiply-add = 2, the op table's
 * numbers): the original explanation, then per step the forward pass from the step's lowest
 * randomized node (the whole pass for methods that batch other inputs, or with smooth MPRT), one
 * backward pass per gradient kind (a data gradient costs about its forward), IG steps × 2 passes,
 * SmoothGrad samples × 2 (× IG steps when it averages IG), Score-CAM channels × 1, occlusion
 * windows × 1, deletion/insertion steps × 2, and each step's map comparisons (compare_flops);
 * label randomization and random logit add one explanation each. It is an estimate to choose a size, deterministic (the same request on any
 * machine gets the same steps), never a timing. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../graph.h"
#include "../sanity.h"

#define BIT(m) (1u << (m))

static double flops_from(const graph_t *g, int node)
{
    double f = 0;
    for (int i = node < 0 ? 0 : node; i < g->n_nodes; i++) f += g->nodes[i].flops;
    return f;
}

/* FLOPs of one explanation of ep's methods whose forward pass starts at node `from` (0: all). */
static double explain_flops(const model_t *m, const explain_params_t *ep, int from)
{
    const graph_t *g = m->graph;
    const double F = flops_from(g, 0);
    const unsigned ms = ep->methods;
    double c = flops_from(g, from);
    const unsigned input_grad = methods_needing(MN_PLAIN_INPUT);
    /* guided_gradcam's share of the ordinary pass is counted with the guided pass below */
    const unsigned cam_grad = methods_needing(MN_PLAIN_LAYER) & ~methods_needing(MN_GUIDED);
    int cam = ep->layer >= 0 ? ep->layer : m->cam_value, cam_node = cam >= 0 ? g->values[cam].producer : 0;
    if (ms & input_grad) c += F;
    else if (ms & cam_grad) c += flops_from(g, cam_node); /* the pass stops at the CAM layer */
    if (ms & (BIT(M_GUIDED_BACKPROP) | BIT(M_GUIDED_GRADCAM) | BIT(M_DECONVNET))) c += F;
    int steps = ep->ig_steps > 0 ? ep->ig_steps : 1;
    if (ms & BIT(M_INTEGRATED_GRADIENTS)) c += 2.0 * F * steps;
    if (ms & BIT(M_SMOOTHGRAD))
        c += 2.0 * F * (ep->smoothgrad_samples > 0 ? ep->smoothgrad_samples : 1) *
             (ep->smoothgrad_base == M_INTEGRATED_GRADIENTS ? steps : 1);
    if ((ms & BIT(M_SCORECAM)) && cam >= 0) {
        int K = (int)g->values[cam].dims[1];
        c += F * (ep->scorecam_channels > 0 && ep->scorecam_channels < K ? ep->scorecam_channels : K);
    }
    if (ms & BIT(M_OCCLUSION)) {
        const value_t *in = &g->values[g->input];
        int H = (int)in->dims[2], W = (int)in->dims[3], side = H < W ? H : W;
        int w = ep->occlusion_window > 0 ? ep->occlusion_window : (int)floor(side / 8.0 + 0.5);
        if (w < 1) w = 1;
        int s = ep->occlusion_stride > 0 ? ep->occlusion_stride : w / 2;
        if (s < 1) s = 1;
        if (w <= H && w <= W) c += F * ((ceil((double)(H - w) / s) + 1) * (ceil((double)(W - w) / s) + 1));
    }
    if (ep->faithfulness) {
        int k = 0;
        for (int i = 0; i < M_COUNT; i++) k += (ms >> i) & 1;
        c += 2.0 * F * (ep->faithfulness_steps > 0 ? ep->faithfulness_steps : 1) * k;
    }
    return c;
}

/* Comparing each method's map with the original at a step (Spearman's sorts, SSIM, HOG, the edge
 * similarity) costs about as much as 4000 FLOPs of sgemm per compared value: measured 9 ms per step
 * for a 224 x 224 Grad-CAM map and 49 ms for a 3 x 224 x 224 saliency attribution (2-core machine
 * under load) on a 224 x 224 model of 31 1x1 convolutions with 4 channels, whose passes cost next
 * to nothing. */
static double compare_flops(const model_t *m, const explain_params_t *ep)
{
    const value_t *in = &m->graph->values[m->graph->input];
    const double hw = (double)in->dims[2] * in->dims[3], C = (double)in->dims[1];
    double c = 0;
    for (int i = 0; i < M_COUNT; i++) {
        if (!((ep->methods >> i) & 1) || i == M_ACTIVATIONS) continue;
        char f = method_family(i);
        c += 4000.0 * hw * (f == 'g' || f == 'x' ? C : 1.0); /* gradient family: the C x H x W attribution */
    }
    return c;
}

double sanity_estimate_flops(const model_t *m, const explain_params_t *ep, const sanity_params_t *sp,
                             const sanity_groups_t *G, int n_steps)
{
    const graph_t *g = m->graph;
    double total = explain_flops(m, ep, 0); /* the original explanation */
    if (sp->checks & SANITY_CHECK_LABEL) total += explain_flops(m, ep, 0);
    if (sp->checks & SANITY_CHECK_RANDOM_LOGIT) total += explain_flops(m, ep, 0);
    if (!(sp->checks & SANITY_CHECK_MODEL) || !G) return total;
    const int reuse = sp->noise_samples == 0 && !sp->full_recompute;
    const int noise = sp->noise_samples > 0 ? sp->noise_samples : 1;
    explain_params_t light = *ep, heavy = *ep; /* methods on the reused prefix, and those that batch other inputs */
    const unsigned batched = methods_needing(MN_OTHER_INPUTS);
    light.methods &= ~batched;
    heavy.methods &= batched;
    heavy.faithfulness = 0;
    for (int k = 0; k < n_steps && k < G->n; k++) {
        /* the groups randomized at step k, and the lowest node among them */
        int first = sp->order == SANITY_ORDER_INDEPENDENT ? k : 0, count = sp->order == SANITY_ORDER_INDEPENDENT ? 1 : k + 1;
        int low = g->n_nodes;
        for (int q = first; q < first + count; q++) {
            int grp = sp->order == SANITY_ORDER_BOTTOM_UP ? q : G->n - 1 - q;
            for (int i = 0; i < G->len[grp]; i++) {
                int node = G->nodes[G->start[grp] + i];
                low = node < low ? node : low;
            }
        }
        double step = explain_flops(m, &light, reuse ? low : 0);
        if (heavy.methods) step += explain_flops(m, &heavy, 0) - flops_from(g, 0); /* their own passes only */
        total += step * noise + compare_flops(m, ep);
    }
    return total;
}

int sanity_auto_groups(const model_t *m, const explain_params_t *ep, const sanity_params_t *sp, sanity_groups_t *out,
                       sanity_auto_t *info, eng_err_t *err)
{
    memset(info, 0, sizeof *info);
    const int images = sp->n_images > 0 ? sp->n_images : 1;
    const double budget = sp->auto_budget_flops > 0 ? sp->auto_budget_flops : 300e9;
    info->budget_flops = budget;
    int rc = sanity_make_groups(m, SANITY_LAYERS_ALL, NULL, out, err);
    if (rc) return rc;
    double est = images * sanity_estimate_flops(m, ep, sp, out, out->n);
    info->all_steps = out->n;
    if (est <= budget) {
        info->chose = SANITY_AUTO_ALL;
        info->steps = out->n;
        info->est_flops = est;
        return ENG_OK;
    }
    if ((rc = sanity_make_groups(m, SANITY_LAYERS_BLOCKS, NULL, out, err))) return rc;
    info->block_steps = out->n;
    est = images * sanity_estimate_flops(m, ep, sp, out, out->n);
    if (est <= budget) {
        info->chose = SANITY_AUTO_BLOCKS;
        info->steps = out->n;
        info->est_flops = est;
        return ENG_OK;
    }
    /* the first K steps in the request's order: keep the groups those steps randomize */
    int K = 1;
    while (K < out->n && images * sanity_estimate_flops(m, ep, sp, out, K + 1) <= budget) K++;
    info->chose = SANITY_AUTO_BLOCKS_CUT;
    info->steps = K;
    info->est_flops = images * sanity_estimate_flops(m, ep, sp, out, K);
    sanity_groups_t all = *out;
    int keep[SANITY_MAX_GROUPS];
    for (int q = 0; q < K; q++) keep[q] = sp->order == SANITY_ORDER_BOTTOM_UP ? q : all.n - 1 - q;
    /* rebuild in topological order */
    for (int a = 0; a < K; a++)
        for (int b = a + 1; b < K; b++)
            if (keep[b] < keep[a]) {
                int t = keep[a];
                keep[a] = keep[b];
                keep[b] = t;
            }
    memset(out, 0, sizeof *out);
    for (int q = 0; q < K; q++) {
        int grp = keep[q];
        out->start[q] = out->n_nodes;
        out->len[q] = all.len[grp];
        memcpy(out->nodes + out->n_nodes, all.nodes + all.start[grp], sizeof(int) * (size_t)all.len[grp]);
        out->n_nodes += all.len[grp];
        memcpy(out->name[q], all.name[grp], sizeof out->name[q]);
    }
    out->n = K;
    return ENG_OK;
}
