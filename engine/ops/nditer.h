/* nditer.h — strided n-d iteration for the data-movement and broadcasting ops (Transpose, Slice,
 * DepthToSpace, SpaceToDepth, Expand, Tile, Max/Min/Sum/Mean, Where).
 *
 * A view describes an output written contiguously in row-major order as a box of extents
 * d[0..rank-1] (outer to inner); operand k is read at  base[k] + Σ_i idx[i]·s[k][i]  (s = 0: the
 * operand is broadcast along i). Ops build their view at init with d[0] = 1 standing for the batch
 * (s[k][0] = the operand's elements per image, or 0 for a constant) and set d[0] = e->n at run time;
 * ndi_collapse then drops size-1 extents and merges neighbours that are contiguous for every
 * operand, so the innermost run is as long as possible (a Transpose that keeps H, W copies planes).
 * Header-only: every function is small and used by a few op files.
 */
#ifndef EXPLAIND_NDITER_H
#define EXPLAIND_NDITER_H

#include <stdint.h>
#include <string.h>

#include "../graph.h"

#define NDI_MAX (2 * ENG_MAX_RANK + 2) /* Tile views each axis as (repeat, extent) */
#define NDI_K 3                        /* operands (Where reads a condition and two branches) */
#define NDI_MAX_ELEMS ((int64_t)1 << 31) /* largest output an op may create per image (as the loader's cap) */

typedef struct {
    int rank;
    int64_t d[NDI_MAX];
    int64_t s[NDI_K][NDI_MAX];
    int64_t base[NDI_K];
} ndi_t;

/* Row-major strides of a shape; st[0] is the element count per image when dims[0] is the batch. */
static inline void ndi_strides(int rank, const int64_t *dims, int64_t *st)
{
    int64_t s = 1;
    for (int i = rank - 1; i >= 0; i--) {
        st[i] = s;
        s *= dims[i];
    }
}

/* a * b into *out unless the product passes NDI_MAX_ELEMS (both >= 0); returns 0 on success */
static inline int ndi_mul_ok(int64_t a, int64_t b, int64_t *out)
{
    if (a < 0 || b < 0 || (a && b > NDI_MAX_ELEMS / a)) return -1;
    *out = a * b;
    return *out > NDI_MAX_ELEMS ? -1 : 0;
}

static inline void ndi_collapse(ndi_t *t)
{
    int r = 0;
    for (int i = 0; i < t->rank; i++) {
        if (t->d[i] == 1) continue;
        if (r > 0) {
            int ok = 1;
            for (int k = 0; k < NDI_K; k++) ok &= t->s[k][r - 1] == t->s[k][i] * t->d[i];
            if (ok) {
                t->d[r - 1] *= t->d[i];
                for (int k = 0; k < NDI_K; k++) t->s[k][r - 1] = t->s[k][i];
                continue;
            }
        }
        t->d[r] = t->d[i];
        for (int k = 0; k < NDI_K; k++) t->s[k][r] = t->s[k][i];
        r++;
    }
    if (r == 0) {
        t->d[0] = 1;
        for (int k = 0; k < NDI_K; k++) t->s[k][0] = 0;
        r = 1;
    }
    t->rank = r;
}

/* Numpy broadcasting of inputs first..first+k-1 of n with the batch kept first: every activation
 * has the result's rank and a constant of that rank has a leading 1 (else the batch axis would
 * move or mix). Fills *rank and the result's dims od (od[0] = 1, the batch). */
static inline int ndi_broadcast_shape(graph_t *g, node_t *n, int first, int k, int *rank, int64_t *od, eng_err_t *err)
{
    int r = 0;
    for (int j = first; j < first + k; j++)
        if (nin(g, n, j)->rank > r) r = nin(g, n, j)->rank;
    for (int i = 0; i < r; i++) od[i] = 1;
    for (int j = first; j < first + k; j++) {
        const value_t *v = nin(g, n, j);
        if (!v->is_const && v->rank != r)
            return node_err(g, n, err, ENG_EUNSUPPORTED,
                            "activation '%s' has rank %d, below the output's %d: broadcasting would move its batch axis",
                            v->name, v->rank, r);
        if (v->is_const && v->rank == r && v->dims[0] != 1)
            return node_err(g, n, err, ENG_EUNSUPPORTED, "constant '%s' has a leading dimension %lld over the batch",
                            v->name, (long long)v->dims[0]);
        for (int i = 0; i < v->rank; i++) {
            int oi = r - v->rank + i;
            int64_t d = v->dims[i];
            if (d != 1 && od[oi] != 1 && od[oi] != d)
                return node_err(g, n, err, ENG_EFORMAT, "shapes do not broadcast at dimension %d (%lld vs %lld)", oi,
                                (long long)od[oi], (long long)d);
            if (d != 1) od[oi] = d;
        }
    }
    *rank = r;
    return ENG_OK;
}

/* Element strides of v read over the broadcast result box (rank, od): 0 along the axes v is
 * broadcast on; axis 0 (the batch) steps a whole image for an activation, 0 for a constant. */
static inline void ndi_operand_strides(const value_t *v, int rank, const int64_t *od, int64_t *s)
{
    int64_t vd[ENG_MAX_RANK], vs[ENG_MAX_RANK];
    for (int i = 0; i < rank; i++) {
        int vi = i - (rank - v->rank);
        vd[i] = vi < 0 ? 1 : v->dims[vi];
    }
    ndi_strides(rank, vd, vs);
    for (int i = 0; i < rank; i++) s[i] = i == 0 ? (v->is_const ? 0 : (int64_t)v->size) : (vd[i] == 1 && od[i] != 1) ? 0 : vs[i];
}

/* The view for a batch of n, collapsed. */
static inline ndi_t ndi_for_batch(const ndi_t *view, int n)
{
    ndi_t t = *view;
    t.d[0] = n;
    ndi_collapse(&t);
    return t;
}

/* Runs BODY once per innermost run: L elements, output offset `oo`, operand k's offset `off[k]`
 * and inner stride `is[k]`. Nothing runs for an empty box. */
#define NDI_LOOP(view, ...)                                                                                            \
    do {                                                                                                               \
        const ndi_t *it_ = (view);                                                                                     \
        int64_t idx_[NDI_MAX] = {0};                                                                                   \
        const int last_ = it_->rank - 1;                                                                               \
        int empty_ = 0;                                                                                                \
        for (int i_ = 0; i_ < it_->rank; i_++) empty_ |= it_->d[i_] <= 0;                                              \
        if (empty_) break;                                                                                             \
        const int64_t L = it_->d[last_];                                                                               \
        const int64_t is[NDI_K] = {it_->s[0][last_], it_->s[1][last_], it_->s[2][last_]};                              \
        int64_t off[NDI_K] = {it_->base[0], it_->base[1], it_->base[2]};                                               \
        size_t oo = 0;                                                                                                 \
        (void)is;                                                                                                      \
        for (;;) {                                                                                                     \
            __VA_ARGS__;                                                                                               \
            oo += (size_t)L;                                                                                           \
            int i_ = last_ - 1;                                                                                        \
            for (; i_ >= 0; i_--) {                                                                                    \
                idx_[i_]++;                                                                                            \
                for (int k_ = 0; k_ < NDI_K; k_++) off[k_] += it_->s[k_][i_];                                          \
                if (idx_[i_] < it_->d[i_]) break;                                                                      \
                for (int k_ = 0; k_ < NDI_K; k_++) off[k_] -= it_->s[k_][i_] * it_->d[i_];                             \
                idx_[i_] = 0;                                                                                          \
            }                                                                                                          \
            if (i_ < 0) break;                                                                                         \
        }                                                                                                              \
    } while (0)

/* y = x read through operand 0 of the view. */
static inline void ndi_gather(const ndi_t *t, const float *x, float *y)
{
    NDI_LOOP(t, {
        const float *src = x + off[0];
        float *dst = y + oo;
        if (is[0] == 1) memcpy(dst, src, sizeof(float) * (size_t)L);
        else if (is[0] == 0) for (int64_t q = 0; q < L; q++) dst[q] = src[0];
        else for (int64_t q = 0; q < L; q++) dst[q] = src[q * is[0]];
    });
}

/* The adjoint of ndi_gather: dx[operand offset] (+)= dy. `overwrite` is allowed only when the view
 * reads every element of x exactly once (a permutation: Transpose, DepthToSpace, SpaceToDepth);
 * otherwise the caller zero-fills dx first and the contributions are summed. */
static inline void ndi_scatter(const ndi_t *t, const float *dy, float *dx, int overwrite)
{
    NDI_LOOP(t, {
        float *dst = dx + off[0];
        const float *src = dy + oo;
        if (is[0] == 0) {
            float s = overwrite ? 0.f : dst[0];
            for (int64_t q = 0; q < L; q++) s += src[q];
            dst[0] = s;
        } else if (overwrite) {
            if (is[0] == 1) memcpy(dst, src, sizeof(float) * (size_t)L);
            else for (int64_t q = 0; q < L; q++) dst[q * is[0]] = src[q];
        } else {
            for (int64_t q = 0; q < L; q++) dst[q * is[0]] += src[q];
        }
    });
}

/* Forward and backward of an op whose node parameters start with its view (operand 0 = input 0). */
static inline void ndi_op_forward(const node_t *nd, const exec_t *e)
{
    const ndi_t t = ndi_for_batch((const ndi_t *)nd->p, e->n);
    ndi_gather(&t, e->x[0], e->y);
}

/* permutation: every input element is read exactly once (no zero-fill needed) */
static inline void ndi_op_backward_impl(const node_t *nd, const exec_t *e, int permutation)
{
    float *dx = e->dx[0];
    if (!dx) return;
    const ndi_t t = ndi_for_batch((const ndi_t *)nd->p, e->n);
    if (!permutation && !e->acc[0]) memset(dx, 0, sizeof(float) * (size_t)e->n * nin(e->g, nd, 0)->size);
    ndi_scatter(&t, e->dy, dx, permutation && !e->acc[0]);
}

#endif
