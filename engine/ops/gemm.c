/* Linear algebra: Gemm and MatMul with a constant weight.
 * Gemm:   A (N,K) activation, B constant (K,M) or (M,K) with transB, C broadcast to (N,M):
 *         Y = α · A · op(B) + β · C.            Backward: dA = α · dY · op(B)ᵀ.
 * MatMul: A (N,...,K) activation, B constant (K,M): rows of A are independent, so it is one
 *         (N·rows, K) x (K, M) sgemm.           Backward: dA = dY · Bᵀ.
 * transA=1 would put the batch in A's second dimension; it is rejected rather than run wrongly.
 */
#include <stdlib.h>
#include <string.h>

#include "../graph.h"

typedef struct {
    int K, M, rows; /* rows per image */
    int transB;
    float alpha, beta;
    int c_kind; /* 0 none, 1 per-column (M), 2 scalar, 3 full (rows,M) */
} gemm_p;

static int gemm_init(graph_t *g, node_t *n, eng_err_t *err)
{
    int rc;
    if (n->n_in < 2 || n->in[1] < 0) return node_err(g, n, err, ENG_EFORMAT, "needs at least two inputs");
    if ((rc = node_need_act(g, n, 0, err))) return rc;
    if (!nin(g, n, 1)->is_const)
        return node_err(g, n, err, ENG_EUNSUPPORTED, "B must be a constant weight (products of two activations are not supported)");
    if ((rc = node_need_const(g, n, 1, err))) return rc;
    if (attr_int(n, "transA", 0))
        return node_err(g, n, err, ENG_EUNSUPPORTED, "transA=1 would move the batch out of the first dimension");
    const value_t *a = nin(g, n, 0), *b = nin(g, n, 1);
    if (a->rank != 2 || b->rank != 2) return node_err(g, n, err, ENG_EFORMAT, "A and B must be 2-D");
    gemm_p *p = calloc(1, sizeof *p);
    if (!p) return node_err(g, n, err, ENG_ENOMEM, "out of memory");
    n->p = p;
    p->transB = (int)attr_int(n, "transB", 0);
    p->alpha = attr_float(n, "alpha", 1.f);
    p->beta = attr_float(n, "beta", 1.f);
    p->K = (int)a->dims[1];
    p->M = (int)(p->transB ? b->dims[0] : b->dims[1]);
    p->rows = 1;
    int64_t bk = p->transB ? b->dims[1] : b->dims[0];
    if (bk != p->K)
        return node_err(g, n, err, ENG_EFORMAT, "A has %d columns but B has %lld rows (after transB)", p->K, (long long)bk);
    n->w_in = 1;
    if (n->n_in > 2 && n->in[2] >= 0) {
        if ((rc = node_need_const(g, n, 2, err))) return rc;
        const value_t *c = nin(g, n, 2);
        if (c->size == 1) p->c_kind = 2;
        else if (c->size == (size_t)p->M && (c->rank == 1 || (c->rank == 2 && c->dims[0] == 1))) p->c_kind = 1;
        else return node_err(g, n, err, ENG_EUNSUPPORTED, "C of shape %lld... does not broadcast per image", (long long)c->dims[0]);
        n->b_in = 2;
    }
    int64_t od[2] = {1, p->M};
    value_set_shape(nout(g, n), 2, od);
    n->flops = 2.0 * p->K * p->M;
    n->params = (int64_t)b->size + (n->b_in >= 0 ? (int64_t)nin(g, n, 2)->size : 0);
    return ENG_OK;
}

static int matmul_init(graph_t *g, node_t *n, eng_err_t *err)
{
    int rc;
    if (n->n_in != 2 || n->in[1] < 0) return node_err(g, n, err, ENG_EFORMAT, "needs two inputs");
    if ((rc = node_need_act(g, n, 0, err))) return rc;
    if (!nin(g, n, 1)->is_const)
        return node_err(g, n, err, ENG_EUNSUPPORTED, "B must be a constant weight (products of two activations are not supported)");
    if ((rc = node_need_const(g, n, 1, err))) return rc;
    const value_t *a = nin(g, n, 0), *b = nin(g, n, 1);
    if (a->rank < 2) return node_err(g, n, err, ENG_EUNSUPPORTED, "A must have rank >= 2 (batch first)");
    for (int i = 0; i + 2 < b->rank; i++)
        if (b->dims[i] != 1) return node_err(g, n, err, ENG_EUNSUPPORTED, "batched constant B");
    if (b->rank < 2) return node_err(g, n, err, ENG_EUNSUPPORTED, "B must be a matrix");
    gemm_p *p = calloc(1, sizeof *p);
    if (!p) return node_err(g, n, err, ENG_ENOMEM, "out of memory");
    n->p = p;
    p->K = (int)a->dims[a->rank - 1];
    p->M = (int)b->dims[b->rank - 1];
    if (b->dims[b->rank - 2] != p->K)
        return node_err(g, n, err, ENG_EFORMAT, "A has %d columns but B has %lld rows", p->K, (long long)b->dims[b->rank - 2]);
    p->rows = (int)(a->size / (size_t)p->K);
    p->alpha = 1.f;
    n->w_in = 1;
    int64_t od[ENG_MAX_RANK];
    memcpy(od, a->dims, sizeof od);
    od[a->rank - 1] = p->M;
    value_set_shape(nout(g, n), a->rank, od);
    n->flops = 2.0 * p->rows * p->K * p->M;
    n->params = (int64_t)b->size;
    return ENG_OK;
}

static void gemm_forward(const node_t *nd, const exec_t *e)
{
    const gemm_p *p = nd->p;
    const int R = e->n * p->rows;
    float beta = 0.f;
    if (p->c_kind && e->b) {
        for (int r = 0; r < R; r++)
            for (int m = 0; m < p->M; m++) e->y[(size_t)r * p->M + m] = p->c_kind == 2 ? e->b[0] : e->b[m];
        beta = p->beta;
    }
    eng_sgemm(e->team, 0, p->transB, R, p->M, p->K, p->alpha, e->x[0], p->K, e->w, p->transB ? p->K : p->M, beta, e->y, p->M);
}

static void gemm_backward(const node_t *nd, const exec_t *e)
{
    const gemm_p *p = nd->p;
    if (!e->dx[0]) return;
    const int R = e->n * p->rows;
    /* dA (R,K) = α dY (R,M) · op(B)ᵀ ; op(B) is (K,M), so op(B)ᵀ is B when transB else Bᵀ */
    eng_sgemm(e->team, 0, !p->transB, R, p->K, p->M, p->alpha, e->dy, p->M, e->w, p->transB ? p->K : p->M, e->acc[0] ? 1.f : 0.f,
              e->dx[0], p->K);
}

const op_def_t op_gemm = {.name = "Gemm", .init = gemm_init, .forward = gemm_forward, .backward = gemm_backward, .unary = 0,
    .opset_min = 1, .opset_max = 0, .doc = "2-D activation × constant B (transB), alpha, beta, constant C per output or scalar; transA = 1 is refused"};
const op_def_t op_matmul = {.name = "MatMul", .init = matmul_init, .forward = gemm_forward, .backward = gemm_backward, .unary = 0,
    .opset_min = 1, .opset_max = 0, .doc = "activation (rank >= 2) × constant matrix"};
