/* methods.h — what the method files share: the request context that explain.c fills (the one
 * forward pass and the fused backward passes), and helpers for batches and results (maps:
 * engine/maps.h; randomness: engine/rng.h).
 * Internal to engine/explain/. */
#ifndef EXPLAIND_METHODS_H
#define EXPLAIND_METHODS_H

#include "../explain.h"
#include "../graph.h"
#include "../rng.h"

typedef struct {
    const model_t *m;
    const graph_t *g;
    ws_t *ws;
    const explain_params_t *p;
    explain_out_t *out;
    const float *x;       /* the preprocessed image */
    size_t in_size;
    int C, H, W;          /* input */
    int K, target;
    const float *logits;  /* of x */
    /* the CAM / activations layer */
    int layer;
    size_t layer_size;
    int LC, LH, LW;
    float *layer_act;     /* copy of its activation for x (batched passes overwrite the workspace) */
    /* fused passes */
    float *grad_input;    /* d logit_target / d x        (ordinary backward) */
    float *grad_layer;    /* d logit_target / d layer     (same pass) */
    float *guided_input;  /* d logit_target / d x with guided ReLU rule */
    int att_value;        /* attention layer (attention method), -1 if none */
    float *att_act;       /* its activation for x */
    double shared_ms;     /* time of the shared passes, split among the methods that used them */
} ectx_t;

typedef int (*method_fn)(ectx_t *c, method_result_t *r, eng_err_t *err);

/* ---- method entry points (one file each) ---- */
#define METHOD(id, name, ...) int explain_##name(ectx_t *c, method_result_t *r, eng_err_t *err);
#include "methods.def"
#undef METHOD

/* ---- shared helpers (explain.c) ---- */
/* Forward n images and backward from one-hot(target) per image; grads_out gets d/dx (n x in_size);
 * logits_out (n x K) may be NULL. hooks may be NULL. Counts one forward and one backward pass. */
int ex_grad_batch(ectx_t *c, const float *xs, int n, int target, const bw_hook_t *hooks, int n_hooks,
                  float *grads_out, float *logits_out, eng_err_t *err);
/* Forward only, logits of n images (n x K). Counts one forward pass. */
int ex_logits_batch(ectx_t *c, const float *xs, int n, float *logits_out, eng_err_t *err);
int ex_max_batch(const ectx_t *c);

/* Store a 3-D attribution (C,H,W) and its channel reduction (per p->reduce) as the raw map. */
int ex_set_gradient_result(ectx_t *c, method_result_t *r, float *attribution /* takes ownership */);
/* Store a 2-D map (h,w), taking ownership. */
void ex_set_map2d(method_result_t *r, float *map, int h, int w);
void ex_add_extra(method_result_t *r, const char *key, double v);
void ex_stats(method_result_t *r);

/* Guided backprop / deconvnet ReLU rules (guided_backprop.c). */
extern const bw_hook_t ex_guided_hook, ex_deconv_hook;

/* Baselines for IG and occlusion (integrated_gradients.c): fills in_size floats. */
int ex_make_baseline(ectx_t *c, int kind, uint64_t seed, float *out, eng_err_t *err);

/* IG of xin against the baseline x0 (integrated_gradients.c); fx, fx0: target logits. */
int ex_ig_attribute(ectx_t *c, const float *xin, const float *x0, float *attr, double *fx, double *fx0, eng_err_t *err);


/* Deletion / insertion AUC (Petsiuk et al. 2018) for a map (faithfulness.c). */
int ex_faithfulness(ectx_t *c, method_result_t *r, eng_err_t *err);

#endif
