/* The op table: every ONNX op the engine runs, once. Adding an op is one file and one row. */
#include <string.h>

#include "../graph.h"

extern const op_def_t op_conv, op_batchnorm, op_relu, op_leakyrelu, op_clip, op_sigmoid, op_tanh, op_hardsigmoid,
    op_hardswish, op_add, op_sub, op_mul, op_div, op_maxpool, op_avgpool, op_gmaxpool, op_gavgpool, op_reducemean,
    op_reducemax, op_reducesum, op_concat, op_flatten, op_reshape, op_squeeze, op_unsqueeze, op_pad, op_gemm, op_matmul,
    op_softmax, op_resize, op_upsample, op_convtranspose, op_transpose, op_slice, op_gather, op_expand, op_tile,
    op_depthtospace, op_spacetodepth, op_cast, op_pow, op_sqrt, op_reciprocal, op_exp, op_log, op_neg, op_abs, op_erf,
    op_max, op_min, op_sum, op_mean, op_where, op_elu, op_selu, op_celu, op_prelu, op_softplus, op_softsign, op_mish,
    op_thresholdedrelu, op_gelu, op_logsoftmax, op_layernorm, op_instancenorm, op_lpnorm, op_globallppool, op_reducel2,
    op_reducelogsumexp;

static const op_def_t *const table[] = {
    /* convolution, dense */
    &op_conv, &op_convtranspose, &op_gemm, &op_matmul,
    /* normalization */
    &op_batchnorm, &op_layernorm, &op_instancenorm, &op_lpnorm,
    /* activations (unary: backward hooks may replace their rule) */
    &op_relu, &op_leakyrelu, &op_clip, &op_sigmoid, &op_tanh, &op_hardsigmoid, &op_hardswish, &op_elu, &op_selu,
    &op_celu, &op_prelu, &op_softplus, &op_softsign, &op_mish, &op_thresholdedrelu, &op_gelu,
    /* element-wise arithmetic */
    &op_add, &op_sub, &op_mul, &op_div, &op_pow, &op_sqrt, &op_reciprocal, &op_exp, &op_log, &op_neg, &op_abs,
    &op_erf, &op_max, &op_min, &op_sum, &op_mean, &op_where,
    /* pooling, reductions, softmax */
    &op_maxpool, &op_avgpool, &op_gmaxpool, &op_gavgpool, &op_globallppool, &op_reducemean, &op_reducemax,
    &op_reducesum, &op_reducel2, &op_reducelogsumexp, &op_softmax, &op_logsoftmax,
    /* resampling */
    &op_resize, &op_upsample,
    /* layout */
    &op_concat, &op_flatten, &op_reshape, &op_squeeze, &op_unsqueeze, &op_pad, &op_transpose, &op_slice, &op_gather,
    &op_expand, &op_tile, &op_depthtospace, &op_spacetodepth, &op_cast,
};

const op_def_t *op_find(const char *op_type)
{
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(table[i]->name, op_type)) return table[i];
    return NULL;
}

/* ---- the listing (engine.h) ---------------------------------------------------------------------- */
#define N_TABLE ((int)(sizeof table / sizeof table[0]))

/* the k-th fold-pass op that has no table row, or -1 */
static int load_only_op(int k)
{
    for (int i = 0; i < fold_op_count(); i++) {
        int when;
        const char *doc, *name = fold_op_info(i, &when, &doc);
        if (!op_find(name) && k-- == 0) return i;
    }
    return -1;
}

int eng_op_count(void)
{
    int n = N_TABLE;
    while (load_only_op(n - N_TABLE) >= 0) n++;
    return n;
}

void eng_op_info(int i, eng_op_info_t *out)
{
    memset(out, 0, sizeof *out);
    if (i < 0) return;
    if (i < N_TABLE) {
        const op_def_t *d = table[i];
        out->name = d->name;
        /* the row's range within the loader's (a row may say 1 or 0 = unbounded) */
        out->opset_min = d->opset_min > ENG_OPSET_MIN ? d->opset_min : ENG_OPSET_MIN;
        out->opset_max = d->opset_max && d->opset_max < ENG_OPSET_MAX ? d->opset_max : ENG_OPSET_MAX;
        out->kind = ENG_OP_TABLE;
        out->backward = d->backward != NULL;
        out->unary = d->unary;
        out->doc = d->doc ? d->doc : "";
        return;
    }
    int f = load_only_op(i - N_TABLE);
    if (f < 0) return;
    int when;
    out->name = fold_op_info(f, &when, &out->doc);
    out->opset_min = ENG_OPSET_MIN;
    out->opset_max = ENG_OPSET_MAX;
    out->kind = when == FOLD_ALWAYS ? ENG_OP_LOAD_ALWAYS : ENG_OP_LOAD_CONST;
}
