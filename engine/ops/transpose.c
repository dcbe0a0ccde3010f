/* Transpose: a permutation of the axes (ShuffleNet's channel shuffle, ConvNeXt's NCHW <-> NHWC).
 *   Forward:  y[i_0, ..., i_{r-1}] = x[j]  with j_{perm[k]} = i_k          (a strided copy)
 *   Backward: dx[j] = dy[i]                  (the inverse permutation: every element once)
 * perm defaults to the reversed axes. The batch must stay first: perm[0] == 0, otherwise images
 * would be mixed and the node is refused. Same semantics in every opset (13 only adds types).
 */
#include <stdlib.h>

#include "nditer.h"

static int transpose_init(graph_t *g, node_t *n, eng_err_t *err)
{
    int rc = node_need_act(g, n, 0, err);
    if (rc) return rc;
    const value_t *x = nin(g, n, 0);
    const int r = x->rank;
    int64_t perm[ENG_MAX_RANK];
    int np = attr_ints(n, "perm", perm, ENG_MAX_RANK);
    if (np < 0) {
        for (int i = 0; i < r; i++) perm[i] = r - 1 - i;
        np = r;
    }
    if (np != r) return node_err(g, n, err, ENG_EFORMAT, "perm has %d entries for an input of rank %d", np, r);
    int seen[ENG_MAX_RANK] = {0};
    for (int i = 0; i < r; i++) {
        if (perm[i] < 0 || perm[i] >= r || seen[perm[i]]++)
            return node_err(g, n, err, ENG_EFORMAT, "perm is not a permutation of 0..%d", r - 1);
    }
    if (perm[0] != 0)
        return node_err(g, n, err, ENG_EUNSUPPORTED,
                        "perm[0] = %lld moves the batch axis 0 (it would mix the images of a batch)", (long long)perm[0]);
    ndi_t *p = calloc(1, sizeof *p);
    if (!p) return node_err(g, n, err, ENG_ENOMEM, "out of memory");
    n->p = p;
    int64_t xs[ENG_MAX_RANK], od[ENG_MAX_RANK];
    ndi_strides(r, x->dims, xs);
    p->rank = r;
    for (int i = 0; i < r; i++) {
        od[i] = x->dims[perm[i]];
        p->d[i] = od[i];
        p->s[0][i] = xs[perm[i]];
    }
    value_set_shape(nout(g, n), r, od);
    return ENG_OK;
}

static void transpose_backward(const node_t *nd, const exec_t *e) { ndi_op_backward_impl(nd, e, 1); }

const op_def_t op_transpose = {.name = "Transpose", .init = transpose_init, .forward = ndi_op_forward,
    .backward = transpose_backward, .unary = 0, .opset_min = 1, .opset_max = 0,
    .doc = "any perm that keeps the batch first (perm[0] = 0); default: reversed axes (refused: moves the batch)"};
