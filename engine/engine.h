/* engine.h — the explaind CNN engine: load an ONNX image classifier, run it forward on a batch,
 * and run vector-Jacobian products (activation gradients only) backward from any value.
 *
 * Nothing here knows about HTTP. The server and the CLI include this header and nothing else
 * from engine/ (plus explain.h and sanity.h for the methods built on top).
 *
 * Model of use
 *   graph_t  is loaded once and is read-only afterwards: any number of threads may use it at once.
 *   ws_t     (a workspace) belongs to one thread at a time. It is planned at creation for a maximum
 *            batch and allocated once; forward and backward never call malloc.
 *   model_t  is a graph plus its sidecar (labels, input spec, CAM layer, ...).
 *
 * Tensors are float32, NCHW, batch-major: a value of per-image shape (C,H,W) occupies n*C*H*W
 * floats for a batch of n. Value shapes reported here have dims[0] == 1 (the batch dimension).
 *
 * Errors are values: functions that can fail on input return ENG_OK or an ENG_E* status and fill
 * an eng_err_t with a message that names the node, op type and opset when one is involved.
 * Ownership: every *_create / *_load is paired with a *_free; pointers returned by accessors are
 * borrowed and live as long as the object they came from.
 *
 * Basic usage (the saliency map of the top class; explain.h runs the methods for you):
 *
 *   model_t *m; ws_t *ws; eng_err_t err;
 *   if (model_load("models", "fashion-cnn", NULL, &m, &err)) die(err.msg);   // .onnx + .json sidecar
 *   if (ws_create(m->graph, 1, &ws, &err)) die(err.msg);                     // one per thread
 *   float *x = malloc(model_input_size(m) * sizeof *x);
 *   model_preprocess(m, &image, x, &err);                                    // PIL/torchvision-exact
 *   ws_forward(ws, x, 1, &err);
 *   int out = graph_output_value(m->graph), in = graph_input_value(m->graph);
 *   const float *logits = ws_value(ws, out);                                 // valid until next forward
 *   float seed[NCLASSES] = {0}; seed[top] = 1;                               // d(logit_top)/d(logits)
 *   float *grad = malloc(model_input_size(m) * sizeof *grad);
 *   bw_req_t rq = {.seed_value = out, .seed = seed, .n_capture = 1, .capture = &in, .capture_out = &grad};
 *   ws_backward(ws, &rq, &err);                                              // grad = d(logit_top)/dx
 *   ws_free(ws); model_free(m);
 *
 * Limitations
 *   - Inference graphs of image classifiers: one 4-D float input (N,C,H,W), one output, ai.onnx
 *     opsets 7..18, float32 only. The ops are listed by `explaind ops` (docs/OPS.md); a graph with
 *     others is refused at load with every unsupported node named.
 *   - Batch images never mix: a graph whose ops would combine images of a batch (a Reshape or
 *     Flatten across the batch axis, a reduction over it) is refused.
 *   - Backward computes activation gradients (vector-Jacobian products) only, never weight
 *     gradients; no training.
 *   - Input size is fixed per loaded model (the graph's static H, W or the sidecar's); no dynamic
 *     shapes beyond the batch.
 *   - Control flow (If, Loop, Scan), sequences, quantized and sparse tensors are not supported.
 */
#ifndef EXPLAIND_ENGINE_H
#define EXPLAIND_ENGINE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "maps.h" /* operations on maps: percentile, bilinear upsampling, blur, Sobel */

/* ---- errors ---------------------------------------------------------------------------------- */
enum {
    ENG_OK = 0,
    ENG_EINVAL,       /* bad argument or parameter value (a caller's mistake, or a user's: 422) */
    ENG_EFORMAT,      /* malformed or truncated file, inconsistent graph */
    ENG_EUNSUPPORTED, /* valid ONNX we do not implement (op, attribute value, dtype) */
    ENG_ENOMEM,
    ENG_EIO,
    ENG_ENOTFOUND,    /* unknown value, node, layer, file */
    ENG_EDEADLINE,    /* the workspace deadline passed; work stopped between layers */
    ENG_ETOOBIG,      /* input over a configured limit */
};

typedef struct {
    int status;
    char msg[512];
} eng_err_t;

/* Sets err (may be NULL) and returns status. */
int eng_errf(eng_err_t *err, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
const char *eng_status_name(int status);

#define ENG_MAX_RANK 6

/* ---- graph: a loaded ONNX network ------------------------------------------------------------ */
typedef struct graph graph_t;

typedef struct {
    int max_external_bytes_mb; /* 0: no limit beyond the file sizes */
    int no_fold_bn;            /* keep BatchNormalization standalone (tests) */
    int input_h, input_w;      /* H/W of a symbolic input (from the sidecar); a static size that differs is an error; 0: from the graph */
} graph_opts_t;

/* Load path (external data files are resolved next to it). opts may be NULL. */
int graph_load_onnx(const char *path, const graph_opts_t *opts, graph_t **out, eng_err_t *err);
/* Load from memory; base_dir resolves external data (NULL: external data is an error). */
int graph_load_onnx_mem(const void *buf, size_t len, const char *base_dir, const graph_opts_t *opts,
                        graph_t **out, eng_err_t *err);
void graph_free(graph_t *g);

typedef struct {
    const char *name;     /* ONNX node name (or "<op>_<index>" when the file has none) */
    const char *op;       /* ONNX op type; folded ops report e.g. "Conv+BatchNormalization" */
    int out_value;        /* its (first) output value */
    int64_t params;       /* parameters (weights + biases) */
    double flops;         /* per image, multiply-add = 2 flops */
} node_info_t;

typedef struct {
    const char *name;
    int rank;
    int64_t dims[ENG_MAX_RANK]; /* dims[0] is the batch (1) for activations */
    size_t size;                /* elements per image (activations) */
    int is_const;               /* initializer or constant-folded: not per-image */
    int producer;               /* node index, -1 for the input and constants */
} value_info_t;

int graph_n_nodes(const graph_t *g);
void graph_node_info(const graph_t *g, int node, node_info_t *out);
int graph_n_values(const graph_t *g);
void graph_value_info(const graph_t *g, int value, value_info_t *out);
/* Resolve a node name or a value name to a value id (a node resolves to its first output). -1 if none. */
int graph_find_value(const graph_t *g, const char *name);
/* The name users know a value by: its producing node's name (what sidecars and the API use), or
 * the value's own name for the graph input. */
const char *graph_value_user_name(const graph_t *g, int value);
/* The node whose name or output is `name`; -1 if none. */
int graph_find_node(const graph_t *g, const char *name);
int graph_input_value(const graph_t *g);
int graph_output_value(const graph_t *g);
int graph_opset(const graph_t *g);
int64_t graph_total_params(const graph_t *g);
double graph_total_flops(const graph_t *g);
/* Resolve a layer as users name it (sidecar cam_layer, the request's `layer`): an ONNX node name,
 * a value name, or a PyTorch module path ("layer4", "features.7", "layer4.1.conv1"), which names
 * the last node, in topological order, inside that module's export scope ("/layer4/...",
 * "/features/features.7/..."); a leading-slash scope ("/layer4") works too. Returns the value id,
 * or -1 with `suggest` (may be NULL) filled with up to 5 of the closest names, comma-separated
 * (containing the name first, then by edit distance). */
int graph_resolve_layer(const graph_t *g, const char *name, char *suggest, size_t suggest_len);
/* The PyTorch module path a node's export scope encodes ("/layer4/layer4.1/relu_1/Relu" ->
 * "layer4.1.relu"), or "" for a node outside any module. */
void graph_node_module_path(const graph_t *g, int node, char *out, size_t len);
/* Auto-detected CAM layer: the last feature map with spatial extent before the head — the input
 * of the last global pooling, or of the flatten that starts the classifier, stepping back over
 * the average pooling that adaptive pooling heads put before a flatten (AdaptiveAvgPool2d((7,7))
 * in VGG, ((6,6)) in AlexNet, ((2,2)) heads): never a pooled map the head then flattens. -1 if
 * none. */
int graph_detect_cam_value(const graph_t *g);
/* Is the head after `value` global-average-pooling followed by one linear layer (CAM applies)?
 * On success fills the class-weight matrix pointer (classes x channels, borrowed) and bias. */
int graph_gap_linear_head(const graph_t *g, int value, const float **w, const float **b, int *classes,
                          int *channels, eng_err_t *err);
/* Parameterized nodes (Conv, Gemm, MatMul with a constant, standalone BN) in topological order. */
int graph_param_nodes(const graph_t *g, int *nodes, int max);

/* ---- the ops the engine runs (`explaind ops`, docs/OPS.md) ---------------------------------------- */
#define ENG_OPSET_MIN 7  /* the ai.onnx opsets the loader accepts */
#define ENG_OPSET_MAX 18

enum { ENG_OP_TABLE = 0, ENG_OP_LOAD_ALWAYS, ENG_OP_LOAD_CONST };
typedef struct {
    const char *name;         /* ONNX op type */
    int opset_min, opset_max; /* the opsets it runs at, within ENG_OPSET_MIN..ENG_OPSET_MAX */
    int kind;                 /* ENG_OP_TABLE: an op-table row (runs on activations);
                               * ENG_OP_LOAD_ALWAYS: evaluated or removed at load whatever its inputs;
                               * ENG_OP_LOAD_CONST: evaluated at load, only when all its inputs are constant */
    int backward;             /* has a data backward (table rows) */
    int unary;                /* element-wise unary: explanation methods may replace its backward (hooks) */
    const char *doc;          /* one line: what runs, which attributes */
} eng_op_info_t;
/* Op-table rows first (table order), then the load-time-only ops (those without a table row). */
int eng_op_count(void);
void eng_op_info(int i, eng_op_info_t *out);

/* ---- workspace: per-thread activations, gradients and scratch --------------------------------- */
typedef struct ws ws_t;

/* Plan and allocate a workspace for batches of up to max_batch images. */
int ws_create(const graph_t *g, int max_batch, ws_t **out, eng_err_t *err);
void ws_free(ws_t *ws);
int ws_max_batch(const ws_t *ws);
size_t ws_bytes(const ws_t *ws);
const graph_t *ws_graph(const ws_t *ws);
/* Bytes a workspace for this batch would take (to size batches to a memory budget). */
size_t ws_plan_bytes(const graph_t *g, int max_batch);

/* Deadline on CLOCK_MONOTONIC in ns (0: none). Forward and backward check it between nodes and
 * return ENG_EDEADLINE once it has passed. */
void ws_set_deadline(ws_t *ws, int64_t deadline_ns);
/* Cancellation: once *flag is non-zero the work stops where the deadline is checked, as if it had
 * passed (ENG_EDEADLINE; ws_cancelled tells the two apart). The server sets it when the client has
 * gone. flag is borrowed and must outlive its use; NULL: none. */
void ws_set_cancel(ws_t *ws, const atomic_int *flag);
int ws_cancelled(const ws_t *ws);
int64_t eng_now_ns(void);
int ws_deadline_passed(const ws_t *ws); /* the deadline passed or the work was cancelled */
/* OpenBLAS threads for this process (the server uses 1: parallelism comes from workers and teams). */
void eng_set_blas_threads(int n);

/* Teams (engine/par.c, engine/par.h): one request split over several cores. A team has k threads,
 * the caller plus k-1 helpers created here and parked between jobs; par_team_set_active picks how
 * many of them the next passes use (1..k; the rest stay parked). Attached to a workspace, every
 * forward and backward of that workspace splits its ops over the active threads; the results are
 * bit-identical to one thread's whatever the count. The team is borrowed by the workspace (it must
 * outlive its use; NULL detaches) and used by one thread at a time: the workspace's. */
typedef struct par_team par_team_t;
par_team_t *par_team_create(int k); /* NULL: out of memory or threads */
void par_team_free(par_team_t *t);
int par_team_size(const par_team_t *t);
void par_team_set_active(par_team_t *t, int k);
void ws_set_team(ws_t *ws, par_team_t *team);
par_team_t *ws_team(const ws_t *ws);

/* Parameter overlay: run `node` with these weights/bias instead of the shared ones (borrowed,
 * same sizes; NULL restores the shared tensor). Used by the sanity checks; the graph is untouched. */
void ws_set_overlay(ws_t *ws, int node, const float *weight, const float *bias);
void ws_clear_overlays(ws_t *ws);

/* Forward on n images (input: n x input size). Keeps every value for backward. */
int ws_forward(ws_t *ws, const float *input, int n, eng_err_t *err);
/* Recompute only nodes first_node.. in topological order; values before it must be valid for n. */
int ws_forward_from(ws_t *ws, int first_node, int n, eng_err_t *err);
/* A value after forward: n x size floats, valid until the next forward. */
const float *ws_value(const ws_t *ws, int value);
int ws_batch(const ws_t *ws); /* n of the last forward */

/* Backward hooks replace the backward rule of an element-wise unary op type (e.g. "Relu"):
 * given x (input), y (output) and dy, write dx (or add into it when accumulate != 0). Element-wise
 * by contract: with a team the workspace calls fn on chunks of the elements from several threads. */
typedef void (*bw_hook_fn)(const float *x, const float *y, const float *dy, float *dx, size_t count,
                           int accumulate, void *ctx);
typedef struct {
    const char *op;
    bw_hook_fn fn;
    void *ctx;
} bw_hook_t;

/* A vector-Jacobian product. The seed is d(objective)/d(seed_value) for each image (n x size);
 * gradients flow only through nodes between the seed and the lowest captured value, so capturing
 * a mid-network layer stops the pass there. Each captured gradient is copied to capture_out[i]
 * (n x size of capture[i]); capturing graph_input_value() gives the input gradient. */
typedef struct {
    int seed_value;
    const float *seed;
    int n_capture;
    const int *capture;
    float *const *capture_out;
    int n_hooks;
    const bw_hook_t *hooks;
} bw_req_t;
int ws_backward(ws_t *ws, const bw_req_t *req, eng_err_t *err);
/* Per-node profiling: when set, forward/backward add each node's time (ns) into these arrays of
 * graph_n_nodes() entries (NULL disables). For benchmarks; costs two clock reads per node. */
void ws_set_profile(ws_t *ws, int64_t *forward_ns, int64_t *backward_ns);
/* Number of nodes the last backward ran (to prove a pass stopped early). */
int ws_backward_nodes_run(const ws_t *ws);

/* ---- images and models ---------------------------------------------------------------------- */
typedef struct {
    int width, height;
    int channels; /* 1 (gray), 3 (RGB) or 4 (RGBA) */
    uint8_t *data; /* row-major, interleaved, width*height*channels bytes */
} image_t;
void image_free(image_t *img); /* frees data, leaves the struct */

/* How the uploaded image is fitted to the model's input size (docs/MODELS.md, "input.resize"). */
enum {
    RESIZE_STRETCH = 0, /* resize to height x width, aspect ignored (PIL img.resize((W, H))) */
    RESIZE_CENTER_CROP, /* cover height x width, keep the centre (PIL resize with a centred box) */
    RESIZE_LETTERBOX,   /* fit inside height x width, pad with zeros */
    RESIZE_SHORTER,     /* torchvision Resize(resize_short) then CenterCrop((height, width)) */
    RESIZE_EXACT,       /* torchvision Resize((resize_h, resize_w)) then CenterCrop((height, width)) */
};
/* What an uploaded image becomes before it is a tensor: PIL's convert(mode) of the upload. */
enum {
    COLOR_GRAY = 0, /* "gray": 1 channel, PIL convert('L') */
    COLOR_RGB,      /* "rgb": 3 channels, PIL convert('RGB') */
    COLOR_RGBA,     /* "rgba": 4 channels, PIL convert('RGBA') (PNG alpha kept) */
    COLOR_NONE,     /* "none": not an image model; only float32 tensor uploads (.npy) */
};
#define ENG_MAX_CHANNELS 256 /* input channels a model may declare */

typedef struct {
    int channels;          /* the model's input channels, from the graph */
    int color;             /* COLOR_* */
    int bgr;               /* channel_order "bgr": the color channels reversed (RGB -> BGR, RGBA -> BGRA) */
    int height, width;     /* the model input (= the crop for RESIZE_SHORTER / RESIZE_EXACT) */
    int resize;            /* RESIZE_* */
    int resize_short;      /* RESIZE_SHORTER: the shorter side after resizing */
    int resize_h, resize_w; /* RESIZE_EXACT */
    float scale;           /* pixel / scale before mean/std */
    int n_mean, n_std;     /* values given in the sidecar (1 = broadcast); 0: defaults */
    float mean[ENG_MAX_CHANNELS], std[ENG_MAX_CHANNELS]; /* per tensor channel (after channel_order) */
    int invert;            /* 255 - pixel first (white-on-black datasets) */
    unsigned given;        /* INPUT_GIVEN_* bits: the keys the sidecar set (the rest are defaults) */
} input_spec_t;
enum {
    INPUT_GIVEN_COLOR = 1, INPUT_GIVEN_SIZE = 2, INPUT_GIVEN_SCALE = 4, INPUT_GIVEN_MEAN = 8, INPUT_GIVEN_STD = 16,
    INPUT_GIVEN_RESIZE = 32, INPUT_GIVEN_ORDER = 64,
};
const char *input_color_name(int color);   /* "gray", "rgb", "rgba", "none" */
const char *input_resize_name(int resize); /* "stretch", "center_crop", "letterbox", "resize_crop" (both sizes) */

#define MODEL_MAX_NAME 128
typedef struct {
    char name[MODEL_MAX_NAME];
    graph_t *graph;
    input_spec_t input;
    int n_labels;
    char **labels;
    int cam_value;              /* -1 when none */
    int n_attention;
    int *attention_values;
    char *twin;                 /* label_randomized_twin or NULL */
    int n_groups;               /* randomization_groups: each a list of node indices */
    int **group_nodes;
    int *group_sizes;
    int has_sidecar;
    void *sidecar_json;         /* the parsed sidecar (jansson json_t), kept for name resolution */
} model_t;

/* Load models_dir/NAME.onnx with its optional NAME.json sidecar (and NAME.labels / labels_file). */
int model_load(const char *dir, const char *name, const graph_opts_t *opts, model_t **out, eng_err_t *err);
/* Load from explicit paths; sidecar_path NULL means look for the .json next to the .onnx. */
int model_load_path(const char *onnx_path, const char *sidecar_path, const graph_opts_t *opts, model_t **out,
                    eng_err_t *err);
/* Parse a sidecar document into m (used by model_load; exposed for the fuzzer). */
int model_parse_sidecar(model_t *m, const char *json, size_t len, const char *dir, eng_err_t *err);
void model_free(model_t *m);
size_t model_input_size(const model_t *m); /* C*H*W */
/* Do two models preprocess an image the same way (a model and its twin must)? */
int model_same_input(const model_t *a, const model_t *b);
/* For a warning: the defaults a model runs with because it has no sidecar, all named ("no sidecar
 * X.json: defaults apply: color rgb, pixels / 255, mean 0, std 1, ..."), or because its sidecar
 * sets neither input.mean nor input.std. 0 when there is nothing to warn about, else the length. */
int model_defaults_note(const model_t *m, char *buf, size_t len);

/* Image -> preprocessed tensor of model_input_size() floats, following the sidecar's input spec
 * (docs/MODELS.md): PIL's convert to the model's color, torchvision/PIL resize and crop (uint8,
 * bit-exact with PIL 9.4's bilinear), invert, channel order, (pixel / scale - mean) / std.
 * ENG_EINVAL for a model whose color is "none" (it takes tensors only). */
int model_preprocess(const model_t *m, const image_t *img, float *tensor, eng_err_t *err);
/* The image as the model sees it (resized, color-converted; not normalized), for overlays at the
 * model's size: 1 channel (gray) or 3 (RGB order; alpha dropped). out->data is malloc'd; release
 * with image_free. ENG_EINVAL for color "none". */
int model_view_image(const model_t *m, const image_t *img, image_t *out, eng_err_t *err);
/* A displayable image (1 or 3 channels, model size) from a preprocessed tensor, for uploads that
 * are tensors: the normalization undone and clipped to 0..255; for color "none" the channel mean,
 * stretched to 0..255. */
int model_tensor_view(const model_t *m, const float *tensor, image_t *out, eng_err_t *err);

#endif
