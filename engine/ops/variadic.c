/* Max, Min, Sum, Mean: element-wise over any number of inputs with numpy broadcasting; each input an
 * activation or a float constant (torch.maximum/minimum export as two-input Max/Min).
 *   Sum:   y = Σ_j x_j             dx_j = dy
 *   Mean:  y = Σ_j x_j / k         dx_j = dy / k
 *   Max:   y = max_j x_j           dx_j = dy · [x_j == y] / #{i : x_i == y}
 *   Min:   y = min_j x_j           dx_j = dy · [x_j == y] / #{i : x_i == y}
 * each dx_j summed over the axes along which x_j was broadcast. Ties split the gradient equally, as
 * torch.maximum / torch.minimum do (derivatives.yaml: grad / 2 where self == other); with more than
 * two inputs every tied input gets the same share. NaN propagates in Max/Min as in torch.maximum.
 * Opset 6/7 required equal shapes, broadcasting came with 8; 13 only adds types. The batch stays
 * first: every activation input has the output's rank, a constant of that rank has a leading 1.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nditer.h"

enum { V_MAX, V_MIN, V_SUM, V_MEAN };
typedef struct {
    int kind, k;
    ndi_t view[]; /* per input: its offsets over the output box (operand 0) */
} var_p;

static int var_init_kind(graph_t *g, node_t *n, eng_err_t *err, int kind)
{
    if (n->n_in < 1) return node_err(g, n, err, ENG_EFORMAT, "no inputs");
    int acts = 0;
    for (int j = 0; j < n->n_in; j++) {
        if (n->in[j] < 0) return node_err(g, n, err, ENG_EFORMAT, "input %d is missing", j);
        const value_t *v = nin(g, n, j);
        if (v->is_const && v->dtype != DT_FLOAT) return node_err(g, n, err, ENG_EUNSUPPORTED, "input '%s' is not float", v->name);
        acts += !v->is_const;
    }
    if (!acts) return node_err(g, n, err, ENG_EFORMAT, "every input is constant");
    int rank;
    int64_t od[ENG_MAX_RANK];
    int rc = ndi_broadcast_shape(g, n, 0, n->n_in, &rank, od, err);
    if (rc) return rc;
    var_p *p = calloc(1, sizeof *p + sizeof(ndi_t) * (size_t)n->n_in);
    if (!p) return node_err(g, n, err, ENG_ENOMEM, "out of memory");
    n->p = p;
    p->kind = kind;
    p->k = n->n_in;
    for (int j = 0; j < n->n_in; j++) {
        const value_t *v = nin(g, n, j);
        ndi_t *t = &p->view[j];
        t->rank = rank;
        for (int i = 0; i < rank; i++) t->d[i] = od[i];
        ndi_operand_strides(v, rank, od, t->s[0]);
    }
    value_set_shape(nout(g, n), rank, od);
    const size_t osz = shape_size(rank, od);
    if (kind == V_MAX || kind == V_MIN) n->scratch_per_image = osz; /* tie counts */
    n->flops = (double)osz * (double)n->n_in;
    return ENG_OK;
}

static int max_init(graph_t *g, node_t *n, eng_err_t *err) { return var_init_kind(g, n, err, V_MAX); }
static int min_init(graph_t *g, node_t *n, eng_err_t *err) { return var_init_kind(g, n, err, V_MIN); }
static int sum_init(graph_t *g, node_t *n, eng_err_t *err) { return var_init_kind(g, n, err, V_SUM); }
static int mean_init(graph_t *g, node_t *n, eng_err_t *err) { return var_init_kind(g, n, err, V_MEAN); }

static void var_forward(const node_t *nd, const exec_t *e)
{
    const var_p *p = nd->p;
    float *Y = e->y;
    ndi_t t = ndi_for_batch(&p->view[0], e->n);
    ndi_gather(&t, e->x[0], Y);
    for (int j = 1; j < p->k; j++) {
        t = ndi_for_batch(&p->view[j], e->n);
        const float *X = e->x[j];
        switch (p->kind) {
        case V_MAX:
            NDI_LOOP(&t, {
                const float *x = X + off[0];
                float *y = Y + oo;
                for (int64_t q = 0; q < L; q++) {
                    const float v = x[q * is[0]];
                    if (v > y[q] || v != v) y[q] = v;
                }
            });
            break;
        case V_MIN:
            NDI_LOOP(&t, {
                const float *x = X + off[0];
                float *y = Y + oo;
                for (int64_t q = 0; q < L; q++) {
                    const float v = x[q * is[0]];
                    if (v < y[q] || v != v) y[q] = v;
                }
            });
            break;
        default:
            NDI_LOOP(&t, {
                const float *x = X + off[0];
                float *y = Y + oo;
                for (int64_t q = 0; q < L; q++) y[q] += x[q * is[0]];
            });
            break;
        }
    }
    if (p->kind == V_MEAN) {
        const size_t n = (size_t)e->n * nout(e->g, nd)->size;
        const float s = 1.f / (float)p->k;
        for (size_t i = 0; i < n; i++) Y[i] *= s;
    }
}

static void var_backward(const node_t *nd, const exec_t *e)
{
    const var_p *p = nd->p;
    const float *DY = e->dy, *Y = e->y;
    float *cnt = e->scratch;
    const int minmax = p->kind == V_MAX || p->kind == V_MIN;
    if (minmax) { /* how many inputs attain y at each output element */
        memset(cnt, 0, sizeof(float) * (size_t)e->n * nout(e->g, nd)->size);
        for (int j = 0; j < p->k; j++) {
            const ndi_t t = ndi_for_batch(&p->view[j], e->n);
            const float *X = e->x[j];
            NDI_LOOP(&t, {
                const float *x = X + off[0];
                for (int64_t q = 0; q < L; q++) cnt[oo + q] += x[q * is[0]] == Y[oo + q];
            });
        }
    }
    const float scale = p->kind == V_MEAN ? 1.f / (float)p->k : 1.f;
    for (int j = 0; j < p->k; j++) {
        float *DX = e->dx[j];
        if (!DX) continue;
        const value_t *v = nin(e->g, nd, j);
        if (!e->acc[j]) memset(DX, 0, sizeof(float) * (size_t)e->n * v->size);
        const ndi_t t = ndi_for_batch(&p->view[j], e->n);
        const float *X = e->x[j];
        if (minmax)
            NDI_LOOP(&t, {
                const float *x = X + off[0];
                float *dx = DX + off[0];
                for (int64_t q = 0; q < L; q++)
                    if (x[q * is[0]] == Y[oo + q]) dx[q * is[0]] += DY[oo + q] / cnt[oo + q];
            });
        else
            NDI_LOOP(&t, {
                float *dx = DX + off[0];
                for (int64_t q = 0; q < L; q++) dx[q * is[0]] += DY[oo + q] * scale;
            });
    }
}

const op_def_t op_max = {.name = "Max", .init = max_init, .forward = var_forward, .backward = var_backward, .unary = 0,
    .opset_min = 1, .opset_max = 0, .doc = "variadic, numpy broadcasting; ties share the gradient equally (torch.maximum)"};
const op_def_t op_min = {.name = "Min", .init = min_init, .forward = var_forward, .backward = var_backward, .unary = 0,
    .opset_min = 1, .opset_max = 0, .doc = "variadic, numpy broadcasting; ties share the gradient equally (torch.minimum)"};
const op_def_t op_sum = {.name = "Sum", .init = sum_init, .forward = var_forward, .backward = var_backward, .unary = 0,
    .opset_min = 1, .opset_max = 0, .doc = "variadic, numpy broadcasting"};
const op_def_t op_mean = {.name = "Mean", .init = mean_init, .forward = var_forward, .backward = var_backward, .unary = 0,
    .opset_min = 1, .opset_max = 0, .doc = "variadic, numpy broadcasting"};
