/* Cast of an activation. The engine computes in float32, so the only cast of an image-dependent
 * value it runs is to FLOAT (1), which is the identity: y = x, dx = dy. A cast to an integer, bool,
 * double or half type would change the numbers (or end differentiability) and is refused. Casts of
 * constants (the int64 shape arithmetic exporters emit, float <-> int64) are folded at load
 * (engine/fold.c). `to` is an attribute in every opset (a TensorProto.DataType value from opset 6).
 */
#include <string.h>

#include "../graph.h"

static const char *dtype_name(int64_t t)
{
    static const char *const names[] = {"UNDEFINED", "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32", "INT64",
                                        "STRING", "BOOL", "FLOAT16", "DOUBLE", "UINT32", "UINT64", "COMPLEX64",
                                        "COMPLEX128", "BFLOAT16"};
    return t >= 0 && t < (int64_t)(sizeof names / sizeof names[0]) ? names[t] : "unknown";
}

static int cast_init(graph_t *g, node_t *n, eng_err_t *err)
{
    int rc = node_need_act(g, n, 0, err);
    if (rc) return rc;
    const attr_t *a = attr_get(n, "to");
    if (!a || a->type != AT_INT) return node_err(g, n, err, ENG_EFORMAT, "the 'to' attribute is missing");
    if (a->i != 1)
        return node_err(g, n, err, ENG_EUNSUPPORTED,
                        "casting an activation to %s (%lld) is not supported: the engine computes in float32",
                        dtype_name(a->i), (long long)a->i);
    const value_t *x = nin(g, n, 0);
    value_set_shape(nout(g, n), x->rank, x->dims);
    return ENG_OK;
}

static void cast_forward(const node_t *nd, const exec_t *e)
{
    memcpy(e->y, e->x[0], sizeof(float) * (size_t)e->n * nout(e->g, nd)->size);
}

static void cast_backward(const node_t *nd, const exec_t *e)
{
    if (!e->dx[0]) return;
    const size_t n = (size_t)e->n * nout(e->g, nd)->size;
    if (e->acc[0]) for (size_t i = 0; i < n; i++) e->dx[0][i] += e->dy[i];
    else memcpy(e->dx[0], e->dy, sizeof(float) * n);
}

const op_def_t op_cast = {.name = "Cast", .init = cast_init, .forward = cast_forward, .backward = cast_backward,
    .unary = 0, .opset_min = 6, .opset_max = 0,
    .doc = "to FLOAT on an activation (the identity); constant casts are folded at load"};
