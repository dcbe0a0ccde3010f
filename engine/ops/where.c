/* Where with a constant condition (torch.where(mask, x, y) with a fixed mask; masks exporters build
 * from shapes). numpy broadcasting over the three inputs; the branches are activations or constants.
 *   Forward:  y = c ? a : b
 *   Backward: da = dy · [c],  db = dy · [!c]     each summed over the axes it was broadcast along
 * (torch's where backward: grad masked by the condition). A condition computed from the image would
 * make the op a data-dependent selection; it is refused (constant conditions only). Where exists
 * from opset 9; 16 only adds types.
 */
#include <stdlib.h>
#include <string.h>

#include "nditer.h"

typedef struct {
    ndi_t view;            /* operands: 0 the mask, 1 the "true" branch, 2 the "false" branch */
    unsigned char mask[];  /* the condition, as 0/1 */
} where_p;

static int where_init(graph_t *g, node_t *n, eng_err_t *err)
{
    if (n->n_in != 3) return node_err(g, n, err, ENG_EFORMAT, "needs three inputs (condition, X, Y)");
    for (int k = 0; k < 3; k++)
        if (n->in[k] < 0) return node_err(g, n, err, ENG_EFORMAT, "input %d is missing", k);
    const value_t *c = nin(g, n, 0);
    if (!c->is_const)
        return node_err(g, n, err, ENG_EUNSUPPORTED,
                        "the condition '%s' depends on the image; only constant conditions are supported", c->name);
    int acts = 0;
    for (int k = 1; k < 3; k++) {
        const value_t *v = nin(g, n, k);
        if (v->is_const && v->dtype != DT_FLOAT) return node_err(g, n, err, ENG_EUNSUPPORTED, "input '%s' is not float", v->name);
        acts += !v->is_const;
    }
    if (!acts) return node_err(g, n, err, ENG_EFORMAT, "every input is constant");
    int rank;
    int64_t od[ENG_MAX_RANK];
    int rc = ndi_broadcast_shape(g, n, 0, 3, &rank, od, err);
    if (rc) return rc;
    where_p *p = calloc(1, sizeof *p + c->size + 1);
    if (!p) return node_err(g, n, err, ENG_ENOMEM, "out of memory");
    n->p = p;
    for (size_t q = 0; q < c->size; q++) p->mask[q] = c->dtype == DT_FLOAT ? c->f[q] != 0.f : c->i64[q] != 0;
    ndi_t *t = &p->view;
    t->rank = rank;
    for (int i = 0; i < rank; i++) t->d[i] = od[i];
    for (int k = 0; k < 3; k++) ndi_operand_strides(nin(g, n, k), rank, od, t->s[k]);
    value_set_shape(nout(g, n), rank, od);
    n->flops = (double)shape_size(rank, od);
    return ENG_OK;
}

static void where_forward(const node_t *nd, const exec_t *e)
{
    const where_p *p = nd->p;
    const ndi_t t = ndi_for_batch(&p->view, e->n);
    const unsigned char *M = p->mask;
    const float *A = e->x[1], *B = e->x[2];
    float *Y = e->y;
    NDI_LOOP(&t, {
        const unsigned char *m = M + off[0];
        const float *a = A + off[1], *b = B + off[2];
        float *y = Y + oo;
        for (int64_t q = 0; q < L; q++) y[q] = m[q * is[0]] ? a[q * is[1]] : b[q * is[2]];
    });
}

static void where_backward(const node_t *nd, const exec_t *e)
{
    const where_p *p = nd->p;
    float *DA = e->dx[1], *DB = e->dx[2];
    if (!DA && !DB) return;
    for (int k = 1; k < 3; k++)
        if (e->dx[k] && !e->acc[k]) memset(e->dx[k], 0, sizeof(float) * (size_t)e->n * nin(e->g, nd, k)->size);
    const ndi_t t = ndi_for_batch(&p->view, e->n);
    const unsigned char *M = p->mask;
    const float *DY = e->dy;
    NDI_LOOP(&t, {
        const unsigned char *m = M + off[0];
        const float *dy = DY + oo;
        if (DA) {
            float *da = DA + off[1];
            for (int64_t q = 0; q < L; q++)
                if (m[q * is[0]]) da[q * is[1]] += dy[q];
        }
        if (DB) {
            float *db = DB + off[2];
            for (int64_t q = 0; q < L; q++)
                if (!m[q * is[0]]) db[q * is[2]] += dy[q];
        }
    });
}

const op_def_t op_where = {.name = "Where", .init = where_init, .forward = where_forward, .backward = where_backward,
    .unary = 0, .opset_min = 9, .opset_max = 0,
    .doc = "constant condition; branches activations or constants, numpy broadcasting"};
