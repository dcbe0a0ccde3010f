/* graph.h — the engine's internal graph representation, shared by the ONNX loader, the graph
 * passes (constant folding, BatchNorm folding, shape inference), the op table and the executor.
 * Not part of the public API: code outside engine/ includes engine.h only.
 *
 * Values are tensors. A value is either constant (an initializer, a Constant node, or anything
 * constant-folded at load; it has full ONNX shape and owns its data) or an activation (it depends
 * on the image; dims[0] is the batch, planned as 1, and `size` counts elements per image).
 * Nodes are kept in topological order after loading; every node has exactly one activation output.
 */
#ifndef EXPLAIND_GRAPH_H
#define EXPLAIND_GRAPH_H

#include "engine.h"

enum { DT_FLOAT = 1, DT_INT64 = 7 }; /* ONNX TensorProto.DataType values we keep */

typedef struct {
    char *name;
    int rank;
    int64_t dims[ENG_MAX_RANK];
    size_t size;  /* activations: elements per image; constants: total elements */
    int is_const;
    int dtype;    /* constants: DT_FLOAT or DT_INT64 */
    float *f;     /* constant data (owned) */
    int64_t *i64;
    int producer; /* node index, or -1 */
    int n_consumers;
    int from_batch; /* constant int64 derived from a Shape of an activation: element 0 is the batch */
} value_t;

/* ONNX attributes, copied out of the protobuf so the graph does not keep the file alive. */
enum { AT_FLOAT = 1, AT_INT, AT_STRING, AT_TENSOR, AT_FLOATS = 6, AT_INTS, AT_STRINGS };
typedef struct {
    char *name;
    int type;
    int64_t i;
    float f;
    char *s;
    int n;          /* ints/floats count */
    int64_t *ints;
    float *floats;
    int tensor;     /* AT_TENSOR: a constant value id created by the loader */
} attr_t;

struct op_def;
typedef struct node {
    char *name;
    char *op_type;            /* ONNX op type as written in the file */
    char *display;            /* what inspect prints (e.g. "Conv+BatchNormalization") */
    const struct op_def *op;
    int n_in, n_out;
    int *in, *out;            /* value ids; -1 for an omitted optional input */
    int n_attr;
    attr_t *attr;
    void *p;                  /* op parameters, parsed and owned by the op (freed with free()) */
    int w_in, b_in;           /* inputs holding weight and bias (overlay targets); -1 if none */
    size_t scratch_fixed;     /* floats of scratch per call, plus ... */
    size_t scratch_per_image; /* ... floats per image in the batch */
    size_t scratch_batched;   /* optional: floats per image an op can use to process images together
                               * (batched GEMM); the workspace grants up to SCRATCH_BATCH_CAP floats */
    size_t aux_per_image;     /* bytes saved by forward for backward, per image (e.g. argmax) */
    double flops;             /* per image */
    int64_t params;
    int dead;                 /* removed by a pass (kept until compaction) */
} node_t;

typedef struct {
    char *name;
    int value;
} alias_t;

struct graph {
    value_t *values;
    int n_values, cap_values;
    node_t *nodes;
    int n_nodes, cap_nodes;
    alias_t *aliases; /* names of nodes folded into others (BatchNormalization into Conv) */
    int n_aliases, cap_aliases;
    int input, output;
    int opset;
    int logits_from_softmax; /* the file ended in Softmax; output is its input */
};

/* ---- the op table ----------------------------------------------------------------------------- */
/* Everything an op needs at run time. Inputs are batched activations or raw constants; dx[i] is
 * NULL when input i needs no gradient; acc[i] says whether to add into dx[i] (another consumer
 * already wrote it) or overwrite it. */
typedef struct {
    const graph_t *g;
    int n;
    const float *const *x;
    float *y;
    const float *dy;
    float *const *dx;
    const int *acc;
    float *scratch;
    size_t scratch_floats; /* size of scratch */
    void *aux;
    const float *w, *b; /* the node's weight and bias, after overlays (NULL if none) */
    par_team_t *team;   /* the workspace's team: ops split their work with par_for (NULL: one thread) */
} exec_t;

typedef struct op_def {
    const char *name;
    /* Parse attributes, check inputs, set the output shape and the node's costs. */
    int (*init)(graph_t *g, node_t *n, eng_err_t *err);
    void (*forward)(const node_t *n, const exec_t *e);
    /* Data gradient only. NULL: the op cannot be differentiated (an error if a pass needs it). */
    void (*backward)(const node_t *n, const exec_t *e);
    int unary; /* element-wise unary: backward hooks may replace its rule */
    /* The ONNX opsets whose semantics this implementation follows (inclusive; 0: no bound). A model
     * whose opset is outside the range is refused at load with a message naming the op. */
    int opset_min, opset_max;
    const char *doc; /* one line for `explaind ops` and docs/OPS.md: what runs, which attributes */
} op_def_t;

const op_def_t *op_find(const char *op_type);
/* Ops the fold pass (fold.c) runs without the op table: FOLD_ALWAYS (Constant, Shape, Identity, Dropout) or
 * FOLD_CONST (fold_eval_node, when every input is constant); 0 for any other op. */
enum { FOLD_ALWAYS = 1, FOLD_CONST = 2 };
int fold_can_eval(const char *op_type);
int fold_op_count(void);
const char *fold_op_info(int i, int *when, const char **doc);

#define SCRATCH_BATCH_CAP ((size_t)2 << 20) /* 8 MiB of floats for batched im2col per workspace */

/* ---- helpers for ops and passes --------------------------------------------------------------- */
static inline value_t *gval(const graph_t *g, int v) { return &g->values[v]; }
static inline value_t *nin(const graph_t *g, const node_t *n, int i) { return &g->values[n->in[i]]; }
static inline value_t *nout(const graph_t *g, const node_t *n) { return &g->values[n->out[0]]; }

const attr_t *attr_get(const node_t *n, const char *name);
int64_t attr_int(const node_t *n, const char *name, int64_t dflt);
float attr_float(const node_t *n, const char *name, float dflt);
const char *attr_str(const node_t *n, const char *name, const char *dflt);
/* Copies up to max ints; returns the count, or -1 when absent. */
int attr_ints(const node_t *n, const char *name, int64_t *out, int max);

/* Error naming the node, op and opset: "node 'X' (Conv, opset 13): <fmt>" */
int node_err(const graph_t *g, const node_t *n, eng_err_t *err, int status, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

void value_set_shape(value_t *v, int rank, const int64_t *dims);
size_t shape_size(int rank, const int64_t *dims);
int graph_add_value(graph_t *g, const char *name);
int graph_add_const_f(graph_t *g, const char *name, int rank, const int64_t *dims, float *data);
/* Require input i to be a constant (weights); error otherwise. */
int node_need_const(const graph_t *g, const node_t *n, int i, eng_err_t *err);
/* Require input i to be an activation; error otherwise. */
int node_need_act(const graph_t *g, const node_t *n, int i, eng_err_t *err);
/* A Reduce* node's axes (attribute, or constant input where the opset moved them there): the count,
 * -1 when absent, -2 when malformed (engine/ops/reduce.c). */
int reduce_axes(const graph_t *g, const node_t *n, int64_t *ax, int max);
/* Does constant c broadcast onto x without changing its shape and vary only along axes a0..a1? If so
 * and out is non-NULL, write its values over that block (engine/ops/layernorm.c). */
int layernorm_param_fits(const value_t *c, const value_t *x, int a0, int a1, float *out);

/* passes */
int graph_fold_constants(graph_t *g, eng_err_t *err);
int graph_fold_batchnorm(graph_t *g, eng_err_t *err);
int graph_fuse(graph_t *g, eng_err_t *err); /* LayerNorm, GELU, Mish decompositions -> one node (fuse.c) */
int graph_finalize(graph_t *g, eng_err_t *err); /* prune, topo-sort, init ops (shapes), count */
int graph_topo_sort(graph_t *g, eng_err_t *err);  /* also compacts away dead nodes */
int graph_init_node(graph_t *g, int node, eng_err_t *err); /* (re)run the op's init: shapes, costs */
int graph_add_alias(graph_t *g, const char *name, int value);
int fold_eval_node(graph_t *g, node_t *n, eng_err_t *err); /* one constant node -> constant outputs */
int graph_split_to_slices(graph_t *g, int node, eng_err_t *err); /* Split -> one Slice per output (split.c) */

/* sgemm wrapper, row-major: C[M,N] = alpha * op(A) op(B) + beta * C. With a team (NULL: none),
 * blocks of C's columns go to its threads where that gives the same bits as one call (graph.c). */
void eng_sgemm(par_team_t *team, int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc);
/* Slices eng_sgemm cuts a call into for this many threads (1: not split). */
int eng_sgemm_parts(int M, int N, int K, int threads);

#endif
