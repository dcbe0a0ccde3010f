/* Conv (2-D), NCHW. x (N,C,H,W), w (M,C/g,kh,kw), b (M) -> y (N,M,Ho,Wo).
 *
 * Forward, per image and group:
 *   1x1, stride 1, no padding:  y_g = w_g · x_g                       (one sgemm, x used in place)
 *   depthwise (g == C):          a direct loop per channel (a GEMM per channel would be 1 x k² x HW)
 *   otherwise:                   col = im2col(x_g); y_g = w_g · col   (one sgemm)
 *   A 1x1 convolution with stride != 1 or padding takes the im2col path: using x in place there
 *   would read the wrong pixels (the classic bug).
 * Backward (data only — explanations never need dW):
 *   1x1 s1:    dx_g (+)= w_gᵀ · dy_g
 *   depthwise: the transposed direct loop
 *   otherwise: dcol = w_gᵀ · dy_g; dx_g (+)= col2im(dcol)
 * Batches: for small maps (Ho·Wo <= 1024) and groups = 1, b images go through one GEMM: their
 *   columns side by side, col (K, b·HoWo), then y scattered back to NCHW (and the transpose in
 *   backward). A per-image GEMM of a 14x14 map is too thin for the BLAS kernels to run at speed.
 *   b is bounded by the workspace scratch (SCRATCH_BATCH_CAP).
 * Padding: pads = [top, left, bottom, right] or auto_pad SAME_UPPER / SAME_LOWER / VALID.
 * Threads: with a team (exec_t.team), the GEMMs split by output columns (eng_sgemm) and im2col /
 *   col2im by input channels; every output element is computed by one thread as on one, so the
 *   bytes do not depend on the team.
 * Ties: outputs whose input patches are bitwise equal are made bitwise equal after the GEMM
 *   (same_patch_fixup), as PyTorch computes them; max pooling's exact ties on flat image regions depend on
 *   it (pool.c). Every forward algorithm (a future Winograd or direct path too) must end with it;
 *   tests/conformance/test_photos.py checks each path.
 */
#include <assert.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "../graph.h"
#include "../par.h"

typedef struct {
    int C, H, W, M, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw, group;
    int Cg, Mg, K;
    int mode;
} conv_p;

enum { CONV_IM2COL, CONV_1X1, CONV_DEPTHWISE };
#define BATCH_MAX_HW 1024
#define BATCH_MIN_MK 8192 /* thinner layers: the gather/scatter costs more than the GEMM gains */

#define CONV_ATTR_MAX 65535 /* largest stride, dilation, pad or group: keeps every size below in int */

/* out_size for one spatial dim; fills the begin pad */
static int conv_out_dim(const char *autopad, int in, int k, int s, int d, int64_t p0, int64_t p1, int *pbegin)
{
    if ((int64_t)d * (k - 1) + 1 > INT_MAX / 2) return 0; /* an extent no input can have */
    int ext = d * (k - 1) + 1;
    if (!strcmp(autopad, "SAME_UPPER") || !strcmp(autopad, "SAME_LOWER")) {
        int out = (in + s - 1) / s;
        int total = (out - 1) * s + ext - in;
        if (total < 0) total = 0;
        *pbegin = !strcmp(autopad, "SAME_UPPER") ? total / 2 : total - total / 2;
        return out;
    }
    if (!strcmp(autopad, "VALID")) {
        *pbegin = 0;
        return in >= ext ? (in - ext) / s + 1 : 0;
    }
    *pbegin = (int)p0;
    int64_t span = in + p0 + p1 - ext;
    return span < 0 ? 0 : (int)(span / s + 1);
}

/* Identical input patches give identical outputs.  OpenBLAS rounds the same dot product differently in
 * different column blocks of one sgemm (its tile and edge kernels accumulate in different orders), so two
 * pixels of a flat image region, which PyTorch (float32 and float64) computes to the same bits, could come
 * out an ulp apart here, and MaxPool's "first maximum in scan order" would then pick another pixel than
 * PyTorch and route the gradient there (docs/NUMERICS.md).  After the GEMM, output positions whose
 * receptive fields are bitwise equal (==, padding counted as 0) to that of a neighbour (left, up, up-left,
 * up-right: flat regions with diagonal edges repeat along the diagonal) are joined (union-find), and every
 * position of a component takes the output of the component's first position in scan order.  The test
 * runs on the input, not on im2col's columns, so it serves every path (1x1, im2col, batched, and any
 * future algorithm).  For a neighbour at output offset (-dy, -dx), one byte map over input pixels:
 *   m[ih][iw] = OR_c x[c][ih][iw] != x[c][ih - dy*sh][iw - dx*sw]          (x = 0 outside the image)
 *   output (oh, ow) equals that neighbour  <=>  no m over the taps of (oh, ow).
 * Each map row keeps the span [lo, hi) where unmarked pairs remain; later channels compare only there, so
 * on a textured input the cost is about one channel's comparisons (measured: under 2.5 % of the
 * convolution); on an all-flat input it is 4-60 % (a 1x1 convolution of 256 channels is the worst).
 * The copy fills runs of positions that share a root. */
enum { NB_DIRS = 4 };
static const int nb_dy[NB_DIRS] = {0, 1, 1, 1}, nb_dx[NB_DIRS] = {1, 0, 1, -1};

typedef struct {
    int dy, dx, rows, cols, off; /* map entry (r, s) compares pixel (r, s - off) with its pair */
    unsigned char *m;
    int32_t *lo, *hi;            /* per row */
    int32_t *sum;                /* per row, cols + 1 prefix counts of marks: a row's taps in O(1) */
} nb_map_t;

static void nb_dims(const conv_p *p, int d, int *rows, int *cols)
{
    *rows = p->H + nb_dy[d] * p->sh;
    *cols = p->W + (nb_dx[d] ? p->sw : 0);
}

static size_t same_patch_floats(const conv_p *p)
{
    size_t hw = (size_t)p->Ho * p->Wo, words = 4 * hw;
    for (int d = 0; d < NB_DIRS; d++) {
        int rows, cols;
        nb_dims(p, d, &rows, &cols);
        /* lo, hi; prefix sums; the byte map rounded up to words */
        words += 2 * (size_t)rows + (size_t)rows * (cols + 1) + ((size_t)rows * cols + 3) / 4;
    }
    return words;
}

static float xat(const conv_p *p, const float *xc, int ih, int iw)
{
    return ih >= 0 && ih < p->H && iw >= 0 && iw < p->W ? xc[(size_t)ih * p->W + iw] : 0.f;
}

/* 1 when no tap of output (oh, ow) is marked in the map */
static int taps_clear(const conv_p *p, const nb_map_t *nb, int oh, int ow)
{
    const int s0 = ow * p->sw - p->pw + nb->off;
    for (int i = 0; i < p->kh; i++) {
        int ih = oh * p->sh - p->ph + i * p->dh;
        if (ih < 0 || ih >= nb->rows) continue;
        if (p->dw == 1) { /* the taps are the columns [s0, s0 + kw) of the row */
            const int32_t *c = nb->sum + (size_t)ih * (nb->cols + 1);
            int a = s0 < 0 ? 0 : s0, b = s0 + p->kw > nb->cols ? nb->cols : s0 + p->kw;
            if (a < b && c[b] != c[a]) return 0;
            continue;
        }
        const unsigned char *r = nb->m + (size_t)ih * nb->cols;
        for (int j = 0; j < p->kw; j++) {
            int s = s0 + j * p->dw;
            if (s >= 0 && s < nb->cols && r[s]) return 0;
        }
    }
    return 1;
}

/* marks row r of the map for channel xc; returns 1 while the row has an unmarked pair */
static int nb_row(const conv_p *p, nb_map_t *nb, const float *xc, int r)
{
    int32_t *lo = nb->lo + r, *hi = nb->hi + r;
    if (*lo >= *hi) return 0;
    unsigned char *m = nb->m + (size_t)r * nb->cols;
    const int r2 = r - nb->dy * p->sh, shift = nb->dx * p->sw; /* pair of (r, iw): (r2, iw - shift) */
    /* the span where both pixels lie inside the image: s - off in [0, W) and s - off - shift in [0, W) */
    int a = nb->off + (shift > 0 ? shift : 0), b = nb->off + p->W + (shift < 0 ? shift : 0);
    if (r >= p->H || r2 < 0) a = b = *lo;
    if (a < *lo) a = *lo;
    if (b > *hi) b = *hi;
    if (b < a) b = a;
    for (int s = *lo; s < a; s++) m[s] |= xat(p, xc, r, s - nb->off) != xat(p, xc, r2, s - nb->off - shift);
    if (a < b) {
        const float *u = xc + (size_t)r * p->W, *v = xc + (size_t)r2 * p->W;
        const int du = nb->off, dv = nb->off + shift; /* s - du and s - dv lie in [0, W) here */
        for (int s = a; s < b; s++) m[s] |= u[s - du] != v[s - dv];
    }
    for (int s = b; s < *hi; s++) m[s] |= xat(p, xc, r, s - nb->off) != xat(p, xc, r2, s - nb->off - shift);
    while (*lo < *hi && m[*lo]) ++*lo;
    while (*hi > *lo && m[*hi - 1]) --*hi;
    return *lo < *hi;
}

static int32_t uf_find(int32_t *parent, int32_t q)
{
    while (parent[q] != q) {
        parent[q] = parent[parent[q]];
        q = parent[q];
    }
    return q;
}

/* joins the components of a and b under the smaller root; 1 when they were apart */
static int uf_union(int32_t *parent, int32_t a, int32_t b)
{
    a = uf_find(parent, a);
    b = uf_find(parent, b);
    if (a == b) return 0;
    if (a < b) parent[b] = a;
    else parent[a] = b;
    return 1;
}

static void same_patch_fixup(const conv_p *p, const float *x, float *y, float *scratch, size_t scratch_floats)
{
    assert(same_patch_floats(p) <= scratch_floats); /* conv_init plans it into scratch_fixed */
    const int hw = p->Ho * p->Wo;
    int32_t *root = (int32_t *)scratch, *runs = root + hw, *w = runs + 3 * (size_t)hw;
    nb_map_t nb[NB_DIRS];
    int live = 0;
    for (int d = 0; d < NB_DIRS; d++) {
        nb[d].dy = nb_dy[d];
        nb[d].dx = nb_dx[d];
        nb_dims(p, d, &nb[d].rows, &nb[d].cols);
        nb[d].off = nb_dx[d] < 0 ? p->sw : 0;
        nb[d].lo = w;
        nb[d].hi = w + nb[d].rows;
        nb[d].sum = w + 2 * nb[d].rows;
        nb[d].m = (unsigned char *)(nb[d].sum + (size_t)nb[d].rows * (nb[d].cols + 1));
        w += 2 * (size_t)nb[d].rows + (size_t)nb[d].rows * (nb[d].cols + 1) + ((size_t)nb[d].rows * nb[d].cols + 3) / 4;
        memset(nb[d].m, 0, (size_t)nb[d].rows * nb[d].cols);
        for (int r = 0; r < nb[d].rows; r++) { /* columns where at least one pixel of the pair is inside */
            int a_in = r < p->H, b_in = r - nb[d].dy * p->sh >= 0, shift = nb[d].dx * p->sw;
            nb[d].lo[r] = a_in && b_in ? 0 : a_in ? nb[d].off : b_in ? nb[d].off + shift : 0;
            nb[d].hi[r] = a_in && b_in ? nb[d].cols : a_in ? nb[d].off + p->W : b_in ? nb[d].off + shift + p->W : 0;
            live += nb[d].lo[r] < nb[d].hi[r];
        }
    }
    for (int c = 0; c < p->C && live; c++) {
        const float *xc = x + (size_t)c * p->H * p->W;
        live = 0;
        for (int d = 0; d < NB_DIRS; d++)
            for (int r = 0; r < nb[d].rows; r++) live += nb_row(p, &nb[d], xc, r);
    }
    if (!live) return; /* some pair differs in every row: no two neighbouring patches are equal */
    if (p->dw == 1)
        for (int d = 0; d < NB_DIRS; d++)
            for (int r = 0; r < nb[d].rows; r++) {
                const unsigned char *m = nb[d].m + (size_t)r * nb[d].cols;
                int32_t *c = nb[d].sum + (size_t)r * (nb[d].cols + 1);
                c[0] = 0;
                for (int k = 0; k < nb[d].cols; k++) c[k + 1] = c[k] + m[k];
            }
    /* union-find over equal neighbours; a component's root is its first position in scan order */
    int links = 0;
    for (int q = 0; q < hw; q++) root[q] = q;
    for (int oh = 0; oh < p->Ho; oh++)
        for (int ow = 0; ow < p->Wo; ow++)
            for (int d = 0; d < NB_DIRS; d++) {
                int nh = oh - nb_dy[d], nw = ow - nb_dx[d];
                if (nh >= 0 && nw >= 0 && nw < p->Wo && taps_clear(p, &nb[d], oh, ow))
                    links += uf_union(root, oh * p->Wo + ow, nh * p->Wo + nw);
            }
    if (!links) return;
    int nruns = 0;
    for (int q = 0; q < hw; q++) {
        root[q] = root[root[q]]; /* roots precede q: root[root[q]] is final */
        if (root[q] == q) continue;
        int32_t *last = runs + 3 * (nruns - 1);
        if (nruns && last[0] + last[1] == q && last[2] == root[q]) last[1]++;
        else {
            int32_t *t = runs + 3 * nruns++;
            t[0] = q; t[1] = 1; t[2] = root[q];
        }
    }
    for (int m = 0; m < p->M; m++) {
        float *ym = y + (size_t)m * hw;
        for (int k = 0; k < nruns; k++) {
            const int32_t *t = runs + 3 * k;
            const float v = ym[t[2]];
            for (int q = t[0]; q < t[0] + t[1]; q++) ym[q] = v;
        }
    }
}

static int conv_init(graph_t *g, node_t *n, eng_err_t *err)
{
    int rc;
    if ((rc = node_need_act(g, n, 0, err)) || (rc = node_need_const(g, n, 1, err))) return rc;
    const value_t *x = nin(g, n, 0), *w = nin(g, n, 1);
    if (x->rank != 4) return node_err(g, n, err, ENG_EUNSUPPORTED, "only 2-D convolution (rank-4 input) is supported");
    if (w->rank != 4) return node_err(g, n, err, ENG_EFORMAT, "weight has rank %d; expected 4", w->rank);
    conv_p *p = calloc(1, sizeof *p);
    if (!p) return node_err(g, n, err, ENG_ENOMEM, "out of memory");
    n->p = p;
    p->C = (int)x->dims[1];
    p->H = (int)x->dims[2];
    p->W = (int)x->dims[3];
    p->M = (int)w->dims[0];
    int64_t group = attr_int(n, "group", 1);
    if (group < 1 || group > CONV_ATTR_MAX) return node_err(g, n, err, ENG_EFORMAT, "group %lld is out of range", (long long)group);
    p->group = (int)group;
    if (p->C % p->group || p->M % p->group)
        return node_err(g, n, err, ENG_EFORMAT, "group %d does not divide %d input and %d output channels", p->group,
                        p->C, p->M);
    p->Cg = p->C / p->group;
    p->Mg = p->M / p->group;
    if (w->dims[1] != p->Cg)
        return node_err(g, n, err, ENG_EFORMAT, "weight expects %lld input channels per group but the input has %d",
                        (long long)w->dims[1], p->Cg);
    p->kh = (int)w->dims[2];
    p->kw = (int)w->dims[3];
    int64_t ks[2];
    if (attr_ints(n, "kernel_shape", ks, 2) == 2 && (ks[0] != p->kh || ks[1] != p->kw))
        return node_err(g, n, err, ENG_EFORMAT, "kernel_shape disagrees with the weight");
    int64_t st[2] = {1, 1}, dl[2] = {1, 1}, pads[4] = {0, 0, 0, 0};
    int ns = attr_ints(n, "strides", st, 2), nd = attr_ints(n, "dilations", dl, 2);
    if ((ns != -1 && ns != 2) || (nd != -1 && nd != 2))
        return node_err(g, n, err, ENG_EFORMAT, "strides and dilations must have 2 values");
    int np = attr_ints(n, "pads", pads, 4);
    if (np != -1 && np != 4) return node_err(g, n, err, ENG_EFORMAT, "pads must have 4 values");
    if (st[0] < 1 || st[1] < 1 || dl[0] < 1 || dl[1] < 1 || pads[0] < 0 || pads[1] < 0 || pads[2] < 0 || pads[3] < 0)
        return node_err(g, n, err, ENG_EFORMAT, "strides and dilations must be >= 1 and pads >= 0");
    /* the attributes are int64 in the file and int here: pads = [2^40, ...] used to load as pad 0 */
    for (int k = 0; k < 4; k++)
        if ((k < 2 && (st[k] > CONV_ATTR_MAX || dl[k] > CONV_ATTR_MAX)) || pads[k] > CONV_ATTR_MAX)
            return node_err(g, n, err, ENG_EFORMAT, "strides, dilations and pads must be at most %d (got strides [%lld, %lld], "
                            "dilations [%lld, %lld], pads [%lld, %lld, %lld, %lld])", CONV_ATTR_MAX, (long long)st[0],
                            (long long)st[1], (long long)dl[0], (long long)dl[1], (long long)pads[0], (long long)pads[1],
                            (long long)pads[2], (long long)pads[3]);
    p->sh = (int)st[0];
    p->sw = (int)st[1];
    p->dh = (int)dl[0];
    p->dw = (int)dl[1];
    const char *ap = attr_str(n, "auto_pad", "NOTSET");
    if (strcmp(ap, "NOTSET") && strcmp(ap, "SAME_UPPER") && strcmp(ap, "SAME_LOWER") && strcmp(ap, "VALID"))
        return node_err(g, n, err, ENG_EFORMAT, "unknown auto_pad '%s'", ap);
    p->Ho = conv_out_dim(ap, p->H, p->kh, p->sh, p->dh, pads[0], pads[2], &p->ph);
    p->Wo = conv_out_dim(ap, p->W, p->kw, p->sw, p->dw, pads[1], pads[3], &p->pw);
    if (p->Ho < 1 || p->Wo < 1) return node_err(g, n, err, ENG_EFORMAT, "the kernel is larger than the padded input");
    if ((int64_t)p->H * p->W > INT_MAX || (int64_t)p->Ho * p->Wo > INT_MAX)
        return node_err(g, n, err, ENG_EUNSUPPORTED, "maps of %d x %d -> %d x %d are over %d pixels a channel", p->H, p->W,
                        p->Ho, p->Wo, INT_MAX);
    if (n->n_in > 2 && n->in[2] >= 0) {
        if ((rc = node_need_const(g, n, 2, err))) return rc;
        if ((int)nin(g, n, 2)->size != p->M)
            return node_err(g, n, err, ENG_EFORMAT, "bias has %zu values for %d output channels", nin(g, n, 2)->size, p->M);
        n->b_in = 2;
    }
    n->w_in = 1;
    p->K = p->Cg * p->kh * p->kw;
    if (p->group == p->C && p->Cg == 1 && p->group > 1) p->mode = CONV_DEPTHWISE;
    else if (p->kh == 1 && p->kw == 1 && p->sh == 1 && p->sw == 1 && p->ph == 0 && p->pw == 0 && p->Ho == p->H &&
             p->Wo == p->W)
        p->mode = CONV_1X1;
    else p->mode = CONV_IM2COL;
    int64_t od[4] = {1, p->M, p->Ho, p->Wo};
    value_set_shape(nout(g, n), 4, od);
    n->scratch_fixed = p->mode == CONV_IM2COL ? (size_t)p->K * p->Ho * p->Wo : 0;
    if (p->mode != CONV_DEPTHWISE && n->scratch_fixed < same_patch_floats(p)) n->scratch_fixed = same_patch_floats(p);
    if (p->mode != CONV_DEPTHWISE && p->group == 1 && (int64_t)p->Ho * p->Wo <= BATCH_MAX_HW && (int64_t)p->M * p->K >= BATCH_MIN_MK)
        n->scratch_batched = (size_t)(p->K + p->M) * p->Ho * p->Wo; /* col + gathered output */
    n->flops = 2.0 * p->M * p->Ho * p->Wo * p->K;
    n->params = (int64_t)w->size + (n->b_in >= 0 ? p->M : 0);
    return ENG_OK;
}

/* Output columns [lo, hi) whose input column ow*sw + off (off = j*dw - pw) lies inside the image. */
static void valid_cols(const conv_p *p, int off, int *lo, int *hi)
{
    int a = 0, b = p->Wo;
    while (a < p->Wo && a * p->sw + off < 0) a++;
    while (b > a && (b - 1) * p->sw + off >= p->W) b--;
    *lo = a;
    *hi = b;
}

/* col[(c*kh + i)*kw + j][oh*Wo + ow] = x[c][oh*sh - ph + i*dh][ow*sw - pw + j*dw] (0 outside);
 * row r starts at col + r*ld (ld = Ho*Wo for one image, b*Ho*Wo when images sit side by side) */
static void im2col_channels(const conv_p *p, const float *x, float *col, size_t ld, int c0, int c1)
{
    const size_t HW = ld;
    for (int c = c0; c < c1; c++)
        for (int i = 0; i < p->kh; i++)
            for (int j = 0; j < p->kw; j++) {
                float *row = col + (size_t)((c * p->kh + i) * p->kw + j) * HW;
                const float *xc = x + (size_t)c * p->H * p->W;
                int ow_lo, ow_hi, off = j * p->dw - p->pw;
                valid_cols(p, off, &ow_lo, &ow_hi);
                for (int oh = 0; oh < p->Ho; oh++) {
                    float *r = row + (size_t)oh * p->Wo;
                    int ih = oh * p->sh - p->ph + i * p->dh;
                    if (ih < 0 || ih >= p->H) {
                        memset(r, 0, sizeof(float) * p->Wo);
                        continue;
                    }
                    const float *xr = xc + (size_t)ih * p->W + off;
                    for (int ow = 0; ow < ow_lo; ow++) r[ow] = 0;
                    if (p->sw == 1) memcpy(r + ow_lo, xr + ow_lo, sizeof(float) * (ow_hi - ow_lo));
                    else for (int ow = ow_lo; ow < ow_hi; ow++) r[ow] = xr[ow * p->sw];
                    for (int ow = ow_hi; ow < p->Wo; ow++) r[ow] = 0;
                }
            }
}

/* dx[c][ih][iw] += dcol[...] : the adjoint of im2col (same row stride ld) */
static void col2im_add_channels(const conv_p *p, const float *col, float *dx, size_t ld, int c0, int c1)
{
    const size_t HW = ld;
    for (int c = c0; c < c1; c++)
        for (int i = 0; i < p->kh; i++)
            for (int j = 0; j < p->kw; j++) {
                const float *row = col + (size_t)((c * p->kh + i) * p->kw + j) * HW;
                float *xc = dx + (size_t)c * p->H * p->W;
                int ow_lo, ow_hi, off = j * p->dw - p->pw;
                valid_cols(p, off, &ow_lo, &ow_hi);
                for (int oh = 0; oh < p->Ho; oh++) {
                    int ih = oh * p->sh - p->ph + i * p->dh;
                    if (ih < 0 || ih >= p->H) continue;
                    /* col and dx never overlap: restrict lets the compiler vectorize the adds */
                    const float *restrict r = row + (size_t)oh * p->Wo;
                    float *restrict xr = xc + (size_t)ih * p->W + off;
                    if (p->sw == 1)
                        for (int ow = ow_lo; ow < ow_hi; ow++) xr[ow] += r[ow];
                    else
                        for (int ow = ow_lo; ow < ow_hi; ow++) xr[ow * p->sw] += r[ow];
                }
            }
}

/* im2col and col2im over a team: input channel c owns rows c·kh·kw .. (c+1)·kh·kw - 1 of col and
 * plane c of x / dx, so a split by channels gives every element to one thread, computed as before.
 * Small maps run inline: a dispatch costs more than their copy. */
#define COLS_SPLIT_MIN_FLOATS (1 << 16)
typedef struct {
    const conv_p *p;
    const float *x, *col;
    float *out;
    size_t ld;
} cols_job_t;

static void im2col_part(void *ctx, int lo, int hi, int tid)
{
    (void)tid;
    const cols_job_t *j = ctx;
    im2col_channels(j->p, j->x, j->out, j->ld, lo, hi);
}

static void col2im_part(void *ctx, int lo, int hi, int tid)
{
    (void)tid;
    const cols_job_t *j = ctx;
    col2im_add_channels(j->p, j->col, j->out, j->ld, lo, hi);
}

static void im2col(par_team_t *team, const conv_p *p, const float *x, float *col, size_t ld)
{
    cols_job_t j = {.p = p, .x = x, .out = col, .ld = ld};
    if ((size_t)p->K * p->Ho * p->Wo < COLS_SPLIT_MIN_FLOATS) im2col_part(&j, 0, p->Cg, 0);
    else par_for(team, p->Cg, im2col_part, &j);
}

static void col2im_add(par_team_t *team, const conv_p *p, const float *col, float *dx, size_t ld)
{
    cols_job_t j = {.p = p, .col = col, .out = dx, .ld = ld};
    if ((size_t)p->K * p->Ho * p->Wo < COLS_SPLIT_MIN_FLOATS) col2im_part(&j, 0, p->Cg, 0);
    else par_for(team, p->Cg, col2im_part, &j);
}

/* depthwise: channel m reads input channel m / (M/C) */
static void dw_forward(const conv_p *p, const float *x, const float *w, const float *b, float *y)
{
    const int mult = p->M / p->C;
    for (int m = 0; m < p->M; m++) {
        const float *xc = x + (size_t)(m / mult) * p->H * p->W;
        float *yc = y + (size_t)m * p->Ho * p->Wo;
        const float *wk = w + (size_t)m * p->kh * p->kw;
        float bias = b ? b[m] : 0.f;
        for (int q = 0; q < p->Ho * p->Wo; q++) yc[q] = bias;
        for (int i = 0; i < p->kh; i++)
            for (int j = 0; j < p->kw; j++) {
                float wv = wk[i * p->kw + j];
                int ow_lo, ow_hi, off = j * p->dw - p->pw;
                valid_cols(p, off, &ow_lo, &ow_hi);
                for (int oh = 0; oh < p->Ho; oh++) {
                    int ih = oh * p->sh - p->ph + i * p->dh;
                    if (ih < 0 || ih >= p->H) continue;
                    const float *xr = xc + (size_t)ih * p->W + off;
                    float *yr = yc + (size_t)oh * p->Wo;
                    if (p->sw == 1)
                        for (int ow = ow_lo; ow < ow_hi; ow++) yr[ow] += wv * xr[ow];
                    else if (p->sw == 2)
                        for (int ow = ow_lo; ow < ow_hi; ow++) yr[ow] += wv * xr[2 * ow];
                    else
                        for (int ow = ow_lo; ow < ow_hi; ow++) yr[ow] += wv * xr[ow * p->sw];
                }
            }
    }
}

static void dw_backward(const conv_p *p, const float *dy, const float *w, float *dx)
{
    const int mult = p->M / p->C;
    for (int m = 0; m < p->M; m++) {
        float *xc = dx + (size_t)(m / mult) * p->H * p->W;
        const float *yc = dy + (size_t)m * p->Ho * p->Wo;
        const float *wk = w + (size_t)m * p->kh * p->kw;
        for (int i = 0; i < p->kh; i++)
            for (int j = 0; j < p->kw; j++) {
                float wv = wk[i * p->kw + j];
                int ow_lo, ow_hi, off = j * p->dw - p->pw;
                valid_cols(p, off, &ow_lo, &ow_hi);
                for (int oh = 0; oh < p->Ho; oh++) {
                    int ih = oh * p->sh - p->ph + i * p->dh;
                    if (ih < 0 || ih >= p->H) continue;
                    float *xr = xc + (size_t)ih * p->W + off;
                    const float *yr = yc + (size_t)oh * p->Wo;
                    if (p->sw == 1)
                        for (int ow = ow_lo; ow < ow_hi; ow++) xr[ow] += wv * yr[ow];
                    else
                        for (int ow = ow_lo; ow < ow_hi; ow++) xr[ow * p->sw] += wv * yr[ow];
                }
            }
    }
}

/* images per batched GEMM that fit the scratch; 1 means the per-image path */
static int batch_chunk(const node_t *nd, const exec_t *e)
{
    if (!nd->scratch_batched || e->n < 2) return 1;
    size_t b = e->scratch_floats / nd->scratch_batched;
    return b < 2 ? 1 : b > (size_t)e->n ? e->n : (int)b;
}

static void conv_forward_batched(const conv_p *p, const exec_t *e, int chunk)
{
    const size_t in_sz = (size_t)p->C * p->H * p->W, hw = (size_t)p->Ho * p->Wo, out_sz = (size_t)p->M * hw;
    for (int i0 = 0; i0 < e->n; i0 += chunk) {
        const int nb = e->n - i0 < chunk ? e->n - i0 : chunk;
        const size_t ld = (size_t)nb * hw;
        float *col = e->scratch, *tmp = e->scratch + (size_t)p->K * ld;
        for (int j = 0; j < nb; j++) {
            const float *x = e->x[0] + (size_t)(i0 + j) * in_sz;
            if (p->mode == CONV_1X1)
                for (int r = 0; r < p->K; r++) memcpy(col + r * ld + j * hw, x + r * hw, sizeof(float) * hw);
            else im2col(e->team, p, x, col + j * hw, ld);
        }
        eng_sgemm(e->team, 0, 0, p->M, (int)ld, p->K, 1.f, e->w, p->K, col, (int)ld, 0.f, tmp, (int)ld);
        for (int j = 0; j < nb; j++) {
            float *y = e->y + (size_t)(i0 + j) * out_sz;
            for (int m = 0; m < p->M; m++) {
                const float *src = tmp + m * ld + j * hw;
                float *dst = y + m * hw;
                const float b = e->b ? e->b[m] : 0.f;
                for (size_t q = 0; q < hw; q++) dst[q] = src[q] + b;
            }
        }
        for (int j = 0; j < nb; j++) /* col and tmp are spent: the scratch is free */
            same_patch_fixup(p, e->x[0] + (size_t)(i0 + j) * in_sz, e->y + (size_t)(i0 + j) * out_sz, e->scratch,
                             e->scratch_floats);
    }
}

static void conv_backward_batched(const conv_p *p, const exec_t *e, int chunk)
{
    const size_t in_sz = (size_t)p->C * p->H * p->W, hw = (size_t)p->Ho * p->Wo, out_sz = (size_t)p->M * hw;
    for (int i0 = 0; i0 < e->n; i0 += chunk) {
        const int nb = e->n - i0 < chunk ? e->n - i0 : chunk;
        const size_t ld = (size_t)nb * hw;
        float *dcol = e->scratch, *dyb = e->scratch + (size_t)p->K * ld;
        for (int j = 0; j < nb; j++) {
            const float *dy = e->dy + (size_t)(i0 + j) * out_sz;
            for (int m = 0; m < p->M; m++) memcpy(dyb + m * ld + j * hw, dy + m * hw, sizeof(float) * hw);
        }
        eng_sgemm(e->team, 1, 0, p->K, (int)ld, p->M, 1.f, e->w, p->K, dyb, (int)ld, 0.f, dcol, (int)ld);
        for (int j = 0; j < nb; j++) {
            float *dx = e->dx[0] + (size_t)(i0 + j) * in_sz;
            if (p->mode == CONV_1X1) {
                for (int r = 0; r < p->K; r++) {
                    const float *src = dcol + r * ld + j * hw;
                    float *dst = dx + r * hw;
                    if (e->acc[0]) for (size_t q = 0; q < hw; q++) dst[q] += src[q];
                    else memcpy(dst, src, sizeof(float) * hw);
                }
            } else {
                if (!e->acc[0]) memset(dx, 0, sizeof(float) * in_sz);
                col2im_add(e->team, p, dcol + j * hw, dx, ld);
            }
        }
    }
}

static void conv_forward(const node_t *nd, const exec_t *e)
{
    const conv_p *p = nd->p;
    const int chunk = batch_chunk(nd, e);
    if (chunk > 1) {
        conv_forward_batched(p, e, chunk);
        return;
    }
    const size_t in_sz = (size_t)p->C * p->H * p->W, out_hw = (size_t)p->Ho * p->Wo, out_sz = (size_t)p->M * out_hw;
    for (int i = 0; i < e->n; i++) {
        const float *x = e->x[0] + i * in_sz;
        float *y = e->y + i * out_sz;
        if (p->mode == CONV_DEPTHWISE) {
            dw_forward(p, x, e->w, e->b, y);
            continue;
        }
        if (e->b)
            for (int m = 0; m < p->M; m++)
                for (size_t q = 0; q < out_hw; q++) y[m * out_hw + q] = e->b[m];
        for (int gi = 0; gi < p->group; gi++) {
            const float *xg = x + (size_t)gi * p->Cg * p->H * p->W;
            const float *B = xg;
            if (p->mode == CONV_IM2COL) {
                im2col(e->team, p, xg, e->scratch, out_hw);
                B = e->scratch;
            }
            eng_sgemm(e->team, 0, 0, p->Mg, (int)out_hw, p->K, 1.f, e->w + (size_t)gi * p->Mg * p->K, p->K, B, (int)out_hw,
                      e->b ? 1.f : 0.f, y + (size_t)gi * p->Mg * out_hw, (int)out_hw);
        }
        same_patch_fixup(p, x, y, e->scratch, e->scratch_floats);
    }
}

static void conv_backward(const node_t *nd, const exec_t *e)
{
    const conv_p *p = nd->p;
    float *dxall = e->dx[0];
    if (!dxall) return;
    const int chunk = batch_chunk(nd, e);
    if (chunk > 1) {
        conv_backward_batched(p, e, chunk);
        return;
    }
    const size_t in_sz = (size_t)p->C * p->H * p->W, out_hw = (size_t)p->Ho * p->Wo, out_sz = (size_t)p->M * out_hw;
    for (int i = 0; i < e->n; i++) {
        float *dx = dxall + i * in_sz;
        const float *dy = e->dy + i * out_sz;
        if (p->mode != CONV_1X1 && !e->acc[0]) memset(dx, 0, sizeof(float) * in_sz);
        if (p->mode == CONV_DEPTHWISE) {
            dw_backward(p, dy, e->w, dx);
            continue;
        }
        for (int gi = 0; gi < p->group; gi++) {
            const float *wg = e->w + (size_t)gi * p->Mg * p->K, *dyg = dy + (size_t)gi * p->Mg * out_hw;
            float *dxg = dx + (size_t)gi * p->Cg * p->H * p->W;
            if (p->mode == CONV_1X1) {
                eng_sgemm(e->team, 1, 0, p->Cg, (int)out_hw, p->Mg, 1.f, wg, p->K, dyg, (int)out_hw, e->acc[0] ? 1.f : 0.f, dxg,
                          (int)out_hw);
            } else {
                eng_sgemm(e->team, 1, 0, p->K, (int)out_hw, p->Mg, 1.f, wg, p->K, dyg, (int)out_hw, 0.f, e->scratch, (int)out_hw);
                col2im_add(e->team, p, e->scratch, dxg, out_hw);
            }
        }
    }
}

const op_def_t op_conv = {.name = "Conv", .init = conv_init, .forward = conv_forward, .backward = conv_backward, .unary = 0,
    .opset_min = 1, .opset_max = 0, .doc = "2-D, NCHW, constant weight and bias: strides, pads, dilations, group (depthwise has its own loop), auto_pad"};
