/* explain.h — explanation methods on top of the engine, fused into as few passes as possible.
 *
 * One call, explain_run(), takes a preprocessed image and a list of methods and returns one native
 * map per method (plus the C x H x W attribution for the gradient family). Shared work is done once:
 *   - one forward pass serves every method;
 *   - saliency, grad_x_input and the gradient CAM family (gradcam, gradcam_pp, xgradcam, layercam)
 *     share one ordinary backward pass (the CAM layer's gradient is an intermediate of the input
 *     gradient's pass; with no input-gradient method the pass stops at the layer);
 *   - guided_backprop and guided_gradcam share one guided backward pass;
 *   - IG steps, SmoothGrad samples, Score-CAM masks and occlusion windows run as batches up to the
 *     workspace's maximum batch.
 * out->passes counts the forward and backward passes run (each over a batch).
 *
 * Each method lives in engine/explain/<method>.c with the paper and formula at the top.
 * Maps are plain float arrays owned by explain_out_t (freed by explain_out_free).
 */
#ifndef EXPLAIND_EXPLAIN_H
#define EXPLAIND_EXPLAIN_H

#include "engine.h"

typedef enum {
#define METHOD(id, name, ...) M_##id,
#include "explain/methods.def"
#undef METHOD
    M_COUNT
} method_t;

/* The method table (engine/explain/explain.c) is the one source of what a method is; everything
 * below reads its row. Adding a method: its file and its row in engine/explain/methods.def (which
 * makes the enum constant above, the prototype and the table row). `explaind methods --json`
 * prints the rows. */

/* "saliency" -> M_SALIENCY; -1 if unknown. */
int method_from_name(const char *name);
const char *method_name(int m);
/* family: 'g' gradient (input-resolution, has attribution), 'c' CAM (layer resolution),
 * 'x' guided_gradcam, 'p' perturbation, 'i' internals, 'b' baseline */
char method_family(int m);
/* the family's API name: gradient, cam, combined, perturbation, internals, baseline */
const char *method_family_name(int m);
const char *method_summary(int m); /* one line for docs and the dashboard */
const char *method_display(int m); /* the dashboard's title, e.g. "Grad-CAM" */
const char *method_params(int m);  /* comma list of the request parameters it reads (besides target) */

/* What a method needs from the planner (its row's needs column). */
enum {
    MN_PLAIN_INPUT = 1,   /* the input gradient of the one ordinary backward pass */
    MN_PLAIN_LAYER = 2,   /* the CAM layer's gradient from that same pass */
    MN_GUIDED = 4,        /* the input gradient of the one guided backward pass */
    MN_LAYER = 8,         /* the CAM layer's activation (p->layer or the model's cam layer) */
    MN_OTHER_INPUTS = 16, /* batched passes over other inputs: the workspace loses the image's forward */
    MN_SMOOTHABLE = 32,   /* a base method SmoothGrad can average (smoothgrad_base) */
};
unsigned method_needs(int m);
/* bit (1u << method_t) of every method whose row has any of `needs` */
uint32_t methods_needing(unsigned needs);
/* NULL-terminated names in table order: every method (needs 0) or the MN_SMOOTHABLE ones. */
const char *const *method_names(unsigned needs);

enum { IG_RIEMANN_LEFT, IG_RIEMANN_RIGHT, IG_RIEMANN_MIDDLE, IG_RIEMANN_TRAPEZOID, IG_GAUSS_LEGENDRE };
enum { BASELINE_ZERO, BASELINE_BLACK, BASELINE_BLUR, BASELINE_UNIFORM };
enum { SG_SMOOTHGRAD, SG_SMOOTHGRAD_SQ, SG_VARGRAD };
enum { REDUCE_ABS_SUM, REDUCE_ABS_MAX, REDUCE_SUM, REDUCE_L2 };

typedef struct {
    uint32_t methods;      /* bit (1u << method_t) */
    int target;            /* class index; -1: top-1 */
    int layer;             /* value id for the CAM family, activations; -1: the model's cam layer */
    int reduce;            /* REDUCE_* for the gradient family's raw map */
    int ig_steps, ig_method, baseline;
    int smoothgrad_samples, smoothgrad_type, smoothgrad_base; /* base: a method_t */
    float smoothgrad_noise;
    int scorecam_channels;
    int occlusion_window, occlusion_stride; /* 0: defaults (1/8 of the side, half the window) */
    uint64_t seed;
    int faithfulness;
    int faithfulness_steps; /* deletion/insertion steps */
    int activations_top;    /* channels drawn in the activations grid */
} explain_params_t;

void explain_params_default(explain_params_t *p);

typedef struct {
    char key[32];
    double value;
} extra_t;

typedef struct {
    int method;
    int present;
    int layer;                  /* value id used (CAM family, activations, attention), -1 otherwise */
    int rank;                   /* rank of the native map (2 or 3) */
    int dims[3];
    float *map;                 /* the native map (raw) */
    int attr_dims[3];           /* C, H, W when attribution != NULL */
    float *attribution;         /* gradient family and guided_gradcam */
    float min, max, mean;       /* stats of map */
    int n_extra;
    extra_t extra[8];
    int has_faithfulness;
    double deletion_auc, insertion_auc;
    double time_ms;
    /* activations: per-channel statistics (channels = dims[0]) and the top channels, best first */
    int n_channels;
    float *ch_mean, *ch_max;
    int n_top;
    int *top_channels;
} method_result_t;

typedef struct {
    int target;
    int n_classes;
    float *logits;      /* of the image */
    float *probs;       /* softmax of logits */
    method_result_t r[M_COUNT];
    int passes_forward, passes_backward;
    double forward_ms, explain_ms;
} explain_out_t;

/* Run the methods in p->methods on one preprocessed image (model_input_size floats).
 * Errors: ENG_EINVAL with a user-facing message when a method does not apply (e.g. cam on a head
 * that is not GAP + linear), ENG_EDEADLINE when the workspace deadline passes. */
int explain_run(const model_t *m, ws_t *ws, const float *input, const explain_params_t *p, explain_out_t *out,
                eng_err_t *err);
/* As explain_run, but the workspace already holds the forward pass of `input` (batch 1) for every
 * node before start_node under its current overlays: only nodes from start_node are recomputed.
 * Used by the cascading sanity checks; start_node 0 is explain_run. */
int explain_run_from(const model_t *m, ws_t *ws, const float *input, int start_node, const explain_params_t *p,
                     explain_out_t *out, eng_err_t *err);
/* True when the methods run batched passes over other inputs (IG, SmoothGrad, Score-CAM, occlusion,
 * faithfulness): afterwards the workspace no longer holds the forward pass of the request's image. */
int explain_uses_other_inputs(const explain_params_t *p);
/* Forward only: logits and probabilities (predict). */
int explain_predict(const model_t *m, ws_t *ws, const float *input, explain_out_t *out, eng_err_t *err);
void explain_out_free(explain_out_t *out);

/* The input tensor as a grayscale image in pixel/scale units: de-normalized, RGB weighted as
 * skimage.color.rgb2gray (0.2125, 0.7154, 0.0721), gray as is (edge.c; the edge method and the
 * sanity checks' edge similarity run maps_sobel on it). gray: H x W floats. */
void explain_input_gray(const model_t *m, const float *x, float *gray);

/* Activation maximization (Erhan et al. 2009; Yosinski et al. 2015): gradient ascent on the input
 * from seeded noise maximizing a channel's mean activation (layer >= 0) or a class logit. */
typedef struct {
    int layer;        /* value id, or -1 for a class logit */
    int index;        /* channel or class */
    int steps;
    float lr;
    float l2_decay;   /* x <- (1 - l2_decay) x after each step */
    int jitter;       /* max pixels of random shift per step */
    int blur_every;   /* Gaussian blur every k steps (0: never) */
    float blur_sigma;
    uint64_t seed;
} filterviz_params_t;
void filterviz_params_default(filterviz_params_t *p);
/* out: model_input_size floats (the optimized input tensor); curve: steps floats (may be NULL). */
int explain_filter_visualize(const model_t *m, ws_t *ws, const filterviz_params_t *p, float *out, float *curve,
                             eng_err_t *err);

#endif
