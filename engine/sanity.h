/* sanity.h — the sanity checks of Adebayo et al. 2018, "Sanity Checks for Saliency Maps"
 * (NeurIPS), with the follow-ups' fixes, run next to the explanation they check:
 *   model-parameter randomization (cascading top-down as in the paper, bottom-up as Hedström et al.
 *   2023 and Binder et al. 2023 recommend, or independent), label randomization (the same method on
 *   a twin trained on permuted labels) and random logit (Sixt et al. 2020).
 * The shared model is never modified: randomized layers are overlays in the calling workspace
 * (ws_set_overlay), generated per (node, init, std, seed) and cached in a shared LRU.
 * Cascading top-down leaves everything below the lowest randomized layer unchanged: each step
 * recomputes the forward pass from that layer only (explain_run_from).
 * Similarities are the metrics of engine/sanity/metrics.h (Spearman of abs- and diverging-normalized
 * maps, SSIM, HOG, edge similarity, the random-map floor, entropy). */
#ifndef EXPLAIND_SANITY_H
#define EXPLAIND_SANITY_H

#include "engine.h"
#include "explain.h"

#define SANITY_MAX_GROUPS 512

enum { SANITY_CHECK_MODEL = 1, SANITY_CHECK_LABEL = 2, SANITY_CHECK_RANDOM_LOGIT = 4 };
enum { SANITY_ORDER_TOP_DOWN, SANITY_ORDER_BOTTOM_UP, SANITY_ORDER_INDEPENDENT };
enum { SANITY_LAYERS_ALL, SANITY_LAYERS_BLOCKS, SANITY_LAYERS_LIST, SANITY_LAYERS_GROUPS, SANITY_LAYERS_AUTO };
enum { SANITY_INIT_DEFAULT, SANITY_INIT_NORMAL };
enum { SANITY_TARGET_FIXED, SANITY_TARGET_ARGMAX };

/* Parameterized nodes in topological order, cut into groups (randomized together). */
typedef struct {
    int n;                                /* groups */
    int n_nodes;
    int nodes[SANITY_MAX_GROUPS];         /* node indices, topological */
    int start[SANITY_MAX_GROUPS], len[SANITY_MAX_GROUPS]; /* group g = nodes[start[g] .. start[g]+len[g]) */
    char name[SANITY_MAX_GROUPS][96];
} sanity_groups_t;

/* mode: SANITY_LAYERS_*; list: comma names for SANITY_LAYERS_LIST. blocks: name scopes ("/layer3/..."
 * -> "layer3"), split again where one scope holds more than half of the layers. */
int sanity_make_groups(const model_t *m, int mode, const char *list, sanity_groups_t *out, eng_err_t *err);

/* ---- sanity_layers=auto (budget.c) ---------------------------------------------------------------- */
enum { SANITY_AUTO_ALL = 1, SANITY_AUTO_BLOCKS, SANITY_AUTO_BLOCKS_CUT };
typedef struct {
    int chose;                /* SANITY_AUTO_* */
    int steps;                /* steps run */
    int all_steps, block_steps; /* steps of `all` and of `blocks` (0: not considered) */
    double est_flops, budget_flops;
} sanity_auto_t;

/* ---- overlays --------------------------------------------------------------------------------- */
typedef struct sanity_cache sanity_cache_t;
sanity_cache_t *sanity_cache_create(size_t max_bytes);
void sanity_cache_free(sanity_cache_t *c);
void sanity_cache_stats(sanity_cache_t *c, uint64_t *hits, uint64_t *misses, size_t *bytes);
/* Re-initialized weight and bias for one node (malloc'd; see randomize.c for the rules). */
int sanity_reinit_node(const graph_t *g, int node, int init, float std, uint64_t seed, float **w, float **b,
                       size_t *bytes, eng_err_t *err);
/* Pinned cache entry for (node, init, std, seed); release with sanity_overlay_put. */
int sanity_overlay_get(sanity_cache_t *c, const graph_t *g, int node, int init, float std, uint64_t seed,
                       const float **w, const float **b, void **handle, eng_err_t *err);
void sanity_overlay_put(sanity_cache_t *c, void *handle);

/* ---- checks ----------------------------------------------------------------------------------- */
typedef struct {
    unsigned checks;         /* SANITY_CHECK_* */
    int order;               /* SANITY_ORDER_* */
    int layers;              /* SANITY_LAYERS_* */
    const char *layer_list;  /* SANITY_LAYERS_LIST */
    int init;
    float init_std;
    int target;              /* SANITY_TARGET_* */
    int noise_samples;       /* smooth MPRT: > 0 averages each map over that many noisy inputs */
    double spearman_threshold, ssim_threshold;
    int full_recompute;      /* 1: every pass from the input, no reuse of the unrandomized prefix
                              * (the naive reference the tests compare the prefix reuse with) */
    double auto_budget_flops; /* SANITY_LAYERS_AUTO: the request's FLOP budget (budget.c; 0: 300e9) */
    int n_images;             /* images the request checks (the budget is shared); 0 = 1 */
} sanity_params_t;

typedef struct {
    double spearman, spearman_abs, ssim, hog; /* NaN when undefined (a constant map) */
    double edge_spearman, edge_ssim;          /* similarity of the compared map to the input's edges */
    int hog_cell;
} sanity_sim_t;

typedef struct {
    int present;
    int n_steps;
    sanity_sim_t *steps;     /* one per randomization step (model), or one (label, random logit) */
    int *targets;            /* class explained at each step */
    sanity_sim_t floor;      /* original vs a seeded random Gaussian map: "no similarity left" */
    sanity_sim_t original_edge; /* the original map vs the edges (edge_* fields) */
    double entropy_original, entropy_randomized, entropy_rise;
    int passed;
    char criterion[160];
    char verdict[512];
} sanity_method_t;

typedef struct {
    /* model randomization */
    int has_model;
    sanity_groups_t *groups;
    int n_steps;
    int *step_first, *step_count; /* step k randomizes groups order[step_first[k] .. +step_count[k]) */
    int *order;                   /* group indices in the order they were randomized */
    sanity_method_t model[M_COUNT];
    /* label randomization */
    int has_label, label_available;
    char label_reason[256];
    char twin[MODEL_MAX_NAME];
    sanity_method_t label[M_COUNT];
    /* random logit */
    int has_random_logit, other_class;
    sanity_method_t random_logit[M_COUNT];
    sanity_auto_t auto_info;      /* SANITY_LAYERS_AUTO: what was chosen and why */
    int forward_passes, backward_passes, nodes_recomputed, nodes_total;
    double ms;
} sanity_result_t;

typedef struct {
    const model_t *model;
    ws_t *ws;
    const model_t *twin; /* NULL: label randomization is unavailable */
    ws_t *twin_ws;
    sanity_cache_t *cache;
    /* Optional second workspace of `model` (same max batch; NULL: none). With it the model-
     * randomization steps run on two threads: even steps here, odd ones on a helper thread on this
     * workspace. The numbers are the same either way. The caller sets its deadline. */
    ws_t *helper_ws;
} sanity_env_t;

/* sanity_layers=auto: `all`, else `blocks`, else the first steps of `blocks` in sp->order, whichever
 * first fits sp->auto_budget_flops by sanity_estimate_flops (see budget.c for the rule). */
int sanity_auto_groups(const model_t *m, const explain_params_t *ep, const sanity_params_t *sp, sanity_groups_t *out,
                       sanity_auto_t *info, eng_err_t *err);
/* Estimated FLOPs of one image's sanity request: the original explanation, label / random logit
 * explanations, and the first n_steps model-randomization steps over the groups G (NULL: none). */
double sanity_estimate_flops(const model_t *m, const explain_params_t *ep, const sanity_params_t *sp,
                             const sanity_groups_t *G, int n_steps);

/* Run the checks for the methods of `ep` on the preprocessed image x, whose ordinary explanation
 * `orig` was computed with `ep` (the request's own result, reused). */
int sanity_run(const sanity_env_t *env, const float *x, const explain_params_t *ep, const explain_out_t *orig,
               const sanity_params_t *sp, sanity_result_t *out, eng_err_t *err);
void sanity_result_free(sanity_result_t *r);

#endif
