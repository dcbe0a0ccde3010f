/* The op table: every ONNX op the engine runs, once. Adding an op is one file and one row. */
#include <string.h>

#include "../graph.h"

extern const op_def_t op_conv, op_batchnorm, op_relu, op_leakyrelu, op_clip, op_sigmoid, op_tanh, op_hardsigmoid,
    op_hardswish, op_add, op_sub, op_mul, op_div, op_maxpool, op_avgpool, op_gmaxpool, op_gavgpool, op_reducemean,
    op_reducemax, op_reducesum, op_concat, op_flatten, op_reshape, op_squeeze, op_unsqueeze, op_pad, op_gemm, op_matmul,
    op_softmax;
extern const op_def_t op_elu, op_selu, op_celu, op_prelu, op_softplus, op_softsign, op_mish, op_thresholdedrelu, op_gelu,
    op_logsoftmax, op_layernorm, op_instancenorm, op_lpnorm, op_globallppool, op_reducel2, op_reducelogsumexp;

static const op_def_t *const table[] = {
    &op_conv,      &op_batchnorm, &op_relu,      &op_leakyrelu, &op_clip,    &op_sigmoid,   &op_tanh,
    &op_hardsigmoid, &op_hardswish, &op_add,     &op_sub,       &op_mul,     &op_div,       &op_maxpool,
    &op_avgpool,   &op_gmaxpool,  &op_gavgpool,  &op_reducemean, &op_reducemax, &op_reducesum, &op_concat,
    &op_flatten,   &op_reshape,   &op_squeeze,   &op_unsqueeze, &op_pad,     &op_gemm,      &op_matmul,
    &op_softmax,
    &op_elu,       &op_selu,      &op_celu,      &op_prelu,     &op_softplus, &op_softsign,  &op_mish,
    &op_thresholdedrelu, &op_gelu, &op_logsoftmax, &op_layernorm, &op_instancenorm, &op_lpnorm, &op_globallppool,
    &op_reducel2,  &op_reducelogsumexp,
};

const op_def_t *op_find(const char *op_type)
{
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(table[i]->name, op_type)) return table[i];
    return NULL;
}
