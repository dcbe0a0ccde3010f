/* Similarity metrics of the sanity checks (Adebayo et al. 2018, "Sanity Checks for Saliency Maps"):
 * Spearman rank correlation, SSIM, HOG rank correlation, histogram entropy, and the map
 * normalizations they run on. Each mirrors one scipy 1.10 / skimage 0.19 / numpy 1.24 expression,
 * down to the order of floating-point operations wherever a discontinuity (a tie, a clip, a
 * histogram bin, a HOG orientation bin) could turn an ulp into a different answer; the contract
 * and the references are in metrics.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "../maps.h"
#include "../rng.h"

/* ---- reasons ------------------------------------------------------------------------------------ */

static const char *const WHY_A[SIM_WHY_COUNT] = {
    "",
    "empty map",
    "map a has NaN or infinite values",
    "map a is constant after its normalization for this metric, so the metric is undefined",
    "map a: its 99th percentile equals its minimum (99% or more of the pixels share it), so abs normalization is undefined",
    "map a: its 99th percentile is 0, so diverging normalization is undefined",
    "out of memory",
    "map too large to compare (more than 2^28 values)",
    "not computed",
};
static const char *const WHY_B[SIM_WHY_COUNT] = {
    "",
    "empty map",
    "map b has NaN or infinite values",
    "map b is constant after its normalization for this metric, so the metric is undefined",
    "map b: its 99th percentile equals its minimum (99% or more of the pixels share it), so abs normalization is undefined",
    "map b: its 99th percentile is 0, so diverging normalization is undefined",
    "out of memory",
    "map too large to compare (more than 2^28 values)",
    "not computed",
};

const char *sim_why_text(int why)
{
    int base = why & 0xff;
    if (why < 0 || base >= SIM_WHY_COUNT || (why & ~(0xff | SIM_MAP_B))) return "unknown reason";
    return (why & SIM_MAP_B) ? WHY_B[base] : WHY_A[base];
}

static void set_why(int *why, int v)
{
    if (why) *why = v;
}

/* ---- scratch: one block, carved in a fixed order (sizing and use run the same code) ------------- */

typedef struct {
    unsigned char *base; /* NULL: only count */
    size_t used;
} arena_t;

static void *take(arena_t *a, size_t bytes)
{
    size_t off = (a->used + 63) & ~(size_t)63;
    a->used = off + bytes;
    return a->base ? a->base + off : NULL;
}

/* align the caller's block (any alignment) */
static arena_t arena_at(void *p)
{
    arena_t a = {NULL, 0};
    if (p) {
        uintptr_t u = (uintptr_t)p, al = (u + 63) & ~(uintptr_t)63;
        a.base = (unsigned char *)al;
    }
    return a;
}

#define ARENA_SLACK 64 /* for aligning the caller's block */

/* ---- numpy's pairwise summation (np.add.reduce over a contiguous run: 0 + pairwise) ------------- */

static double pairwise_sum(const double *a, size_t n)
{
    if (n < 8) {
        double res = 0.;
        for (size_t i = 0; i < n; i++) res += a[i];
        return res;
    }
    if (n <= 128) {
        double r[8];
        size_t i;
        for (int j = 0; j < 8; j++) r[j] = a[j];
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++) r[j] += a[i + j];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += a[i];
        return res;
    }
    size_t n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

static int all_finite_f(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

static int all_finite_d(const double *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

static void fill_nan(double *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = NAN;
}

/* ---- normalizations ----------------------------------------------------------------------------- */

static int norm_args_ok(int C, int H, int W) { return C >= 0 && H > 0 && W > 0; }

int map_norm_abs(const float *a, int C, int H, int W, double *out, double *work)
{
    if (!norm_args_ok(C, H, W)) return SIM_EMPTY;
    size_t n = (size_t)H * W, planes = C ? (size_t)C : 1;
    if (!all_finite_f(a, planes * n)) {
        fill_nan(out, n);
        return SIM_NONFINITE;
    }
    if (C == 0) { /* |a| / max|a| */
        double mx = 0;
        for (size_t i = 0; i < n; i++) {
            out[i] = fabs((double)a[i]);
            if (out[i] > mx) mx = out[i];
        }
        if (mx == 0) {
            fill_nan(out, n);
            return SIM_CONSTANT;
        }
        for (size_t i = 0; i < n; i++) out[i] = out[i] / mx;
        return SIM_OK;
    }
    /* m = Σ_c |a| (numpy's axis-0 reduction: channel by channel) */
    double vmin = INFINITY, vmaxv = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        double m = 0;
        for (size_t c = 0; c < planes; c++) m += fabs((double)a[c * n + i]);
        out[i] = work[i] = m;
        if (m < vmin) vmin = m;
        if (m > vmaxv) vmaxv = m;
    }
    double vmax = map_percentile_linear(work, n, 99);
    if (vmax == vmin) {
        fill_nan(out, n);
        return vmaxv == vmin ? SIM_CONSTANT : SIM_P99_AT_MIN;
    }
    double den = vmax - vmin;
    for (size_t i = 0; i < n; i++) {
        double v = (out[i] - vmin) / den;
        out[i] = v < 0 ? 0 : v > 1 ? 1 : v;
    }
    return SIM_OK;
}

int map_norm_diverging(const float *a, int C, int H, int W, double *out, double *work)
{
    if (!norm_args_ok(C, H, W)) return SIM_EMPTY;
    size_t n = (size_t)H * W, planes = C ? (size_t)C : 1;
    if (!all_finite_f(a, planes * n)) {
        fill_nan(out, n);
        return SIM_NONFINITE;
    }
    int all_zero = 1;
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (size_t c = 0; c < planes; c++) s += (double)a[c * n + i];
        out[i] = work[i] = s;
        if (s != 0) all_zero = 0;
    }
    double span = fabs(map_percentile_linear(work, n, 99));
    if (span == 0) {
        fill_nan(out, n);
        return all_zero ? SIM_CONSTANT : SIM_ZERO_SPAN;
    }
    double den = 2 * span;
    for (size_t i = 0; i < n; i++) {
        double v = (out[i] + span) / den;
        out[i] = v < -1 ? -1 : v > 1 ? 1 : v;
    }
    return SIM_OK;
}

/* ---- ranks: LSD radix sort of order-preserving keys, ties get their mean rank ------------------- */

typedef struct {
    uint64_t *k0, *k1;
    uint32_t *v0, *v1;
    uint32_t *counts; /* 6 x 2048 */
} sorter_t;

#define RADIX_BITS 8
#define RADIX_PASSES 4 /* over the top 32 key bits; runs equal there are finished on the low 32 */
#define RADIX_SIZE (1u << RADIX_BITS)

static void sorter_take(arena_t *ar, sorter_t *s, size_t n)
{
    s->k0 = take(ar, n * sizeof(uint64_t));
    s->k1 = take(ar, n * sizeof(uint64_t));
    s->v0 = take(ar, n * sizeof(uint32_t));
    s->v1 = take(ar, n * sizeof(uint32_t));
    s->counts = take(ar, RADIX_PASSES * RADIX_SIZE * sizeof(uint32_t));
}

/* monotone: x < y <=> key(x) < key(y); -0 and +0 share a key (they are equal, hence tied) */
static inline uint64_t order_key(double x)
{
    uint64_t u;
    if (x == 0) x = 0;
    memcpy(&u, &x, sizeof u);
    return (u >> 63) ? ~u : u | 0x8000000000000000ULL;
}

static void insertion_sort(uint64_t *k, uint32_t *v, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        uint64_t kk = k[i];
        uint32_t vv = v[i];
        size_t j = i;
        while (j > 0 && k[j - 1] > kk) {
            k[j] = k[j - 1];
            v[j] = v[j - 1];
            j--;
        }
        k[j] = kk;
        v[j] = vv;
    }
}

/* LSD radix sort of (k, v) by key bits [shift0, shift0 + 32), 8 bits a pass, ping-ponging with
 * (k2, v2); a pass whose digit is the same for every key is skipped. The result ends in (k, v):
 * copied back when it landed in the other pair. counts: RADIX_PASSES x RADIX_SIZE. */
static void radix32(uint64_t *k, uint32_t *v, uint64_t *k2, uint32_t *v2, size_t n, int shift0, uint32_t *cnt)
{
    uint64_t *const k_in = k;
    uint32_t *const v_in = v;
    memset(cnt, 0, RADIX_PASSES * RADIX_SIZE * sizeof(uint32_t));
    for (size_t i = 0; i < n; i++) {
        uint32_t x = (uint32_t)(k[i] >> shift0);
        for (int p = 0; p < RADIX_PASSES; p++) cnt[p * RADIX_SIZE + ((x >> (p * RADIX_BITS)) & (RADIX_SIZE - 1))]++;
    }
    for (int p = 0; p < RADIX_PASSES; p++) {
        uint32_t *c = cnt + p * RADIX_SIZE;
        int shift = shift0 + p * RADIX_BITS;
        if (c[(k[0] >> shift) & (RADIX_SIZE - 1)] == n) continue; /* one digit for all: nothing to do */
        uint32_t sum = 0;
        for (unsigned d = 0; d < RADIX_SIZE; d++) {
            uint32_t t = c[d];
            c[d] = sum;
            sum += t;
        }
        for (size_t i = 0; i < n; i++) {
            uint32_t at = c[(k[i] >> shift) & (RADIX_SIZE - 1)]++;
            k2[at] = k[i];
            v2[at] = v[i];
        }
        uint64_t *tk = k;
        k = k2;
        k2 = tk;
        uint32_t *tv = v;
        v = v2;
        v2 = tv;
    }
    if (k != k_in) {
        memcpy(k_in, k, n * sizeof(uint64_t));
        memcpy(v_in, v, n * sizeof(uint32_t));
    }
}

/* Sorts (k0, v0) by key in place. The top 32 bits of a double's key (sign, exponent, 20 bits of
 * mantissa) already separate nearly all distinct values, so: radix on them, then each run of
 * equal top halves is finished on the low 32 bits (insertion sort when short; a run of exact
 * ties is already in order and costs one comparison per element). */
static void sort_keys(sorter_t *s, size_t n)
{
    uint64_t *k = s->k0;
    uint32_t *v = s->v0;
    if (n < 64) {
        insertion_sort(k, v, n);
        return;
    }
    radix32(k, v, s->k1, s->v1, n, 32, s->counts);
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        uint64_t hi = k[i] >> 32;
        int all_equal = 1;
        while (j < n && (k[j] >> 32) == hi) {
            if (k[j] != k[i]) all_equal = 0;
            j++;
        }
        if (!all_equal) {
            if (j - i <= 32) insertion_sort(k + i, v + i, j - i);
            else radix32(k + i, v + i, s->k1, s->v1, j - i, 0, s->counts);
        }
        i = j;
    }
}

/* r2[i] = 2 · (average 1-based rank of x[i]) = first + last + 1 of its tie group (0-based, last
 * exclusive): scipy.stats.rankdata(method='average') doubled, so integer. Returns the number of
 * distinct values. */
static size_t rank2(const double *x, size_t n, uint32_t *r2, sorter_t *s)
{
    for (size_t i = 0; i < n; i++) {
        s->k0[i] = order_key(x[i]);
        s->v0[i] = (uint32_t)i;
    }
    sort_keys(s, n);
    const uint64_t *k = s->k0;
    const uint32_t *v = s->v0;
    size_t groups = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && k[j] == k[i]) j++;
        uint32_t r = (uint32_t)(i + j + 1);
        for (size_t t = i; t < j; t++) r2[v[t]] = r;
        groups++;
        i = j;
    }
    return groups;
}

/* numpy.corrcoef(ra/2, rb/2)[0, 1] with numpy's arithmetic: the deviations from the mean rank
 * (n+1)/2 are halves, so the sums of products are exact (summed here as integers); then
 * c = dot * (1/(n-1)), r = c_ab / sqrt(c_aa) / sqrt(c_bb), clipped to [-1, 1]. */
static double pearson_rank2(const uint32_t *ra, const uint32_t *rb, size_t n)
{
    const int64_t mean2 = (int64_t)n + 1;
    __int128 saa = 0, sbb = 0, sab = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t da = (int64_t)ra[i] - mean2, db = (int64_t)rb[i] - mean2;
        saa += da * da;
        sbb += db * db;
        sab += da * db;
    }
    double f = 1.0 / (double)(n - 1);
    double caa = (double)saa * 0.25 * f, cbb = (double)sbb * 0.25 * f, cab = (double)sab * 0.25 * f;
    double r = cab / sqrt(caa) / sqrt(cbb);
    return r < -1 ? -1 : r > 1 ? 1 : r;
}

typedef struct {
    uint32_t *ra, *rb;
    sorter_t s;
} spearman_ws_t;

static void spearman_take(arena_t *ar, spearman_ws_t *w, size_t n)
{
    w->ra = take(ar, n * sizeof(uint32_t));
    w->rb = take(ar, n * sizeof(uint32_t));
    sorter_take(ar, &w->s, n);
}

/* a, b finite */
static double spearman_core(const double *a, const double *b, size_t n, spearman_ws_t *w, int *why)
{
    if (rank2(a, n, w->ra, &w->s) < 2) {
        set_why(why, SIM_CONSTANT);
        return NAN;
    }
    if (rank2(b, n, w->rb, &w->s) < 2) {
        set_why(why, SIM_CONSTANT | SIM_MAP_B);
        return NAN;
    }
    set_why(why, SIM_OK);
    return pearson_rank2(w->ra, w->rb, n);
}

size_t metric_spearman_scratch_bytes(size_t n)
{
    arena_t ar = {NULL, 0};
    spearman_ws_t w;
    spearman_take(&ar, &w, n);
    return ar.used + ARENA_SLACK;
}

double metric_spearman(const double *a, const double *b, size_t n, void *scratch, int *why)
{
    if (n == 0) {
        set_why(why, SIM_EMPTY);
        return NAN;
    }
    if (n >= ((size_t)1 << 31)) { /* doubled ranks 2n + 1 must fit 32 bits */
        set_why(why, SIM_TOO_LARGE);
        return NAN;
    }
    if (!all_finite_d(a, n)) {
        set_why(why, SIM_NONFINITE);
        return NAN;
    }
    if (!all_finite_d(b, n)) {
        set_why(why, SIM_NONFINITE | SIM_MAP_B);
        return NAN;
    }
    void *own = NULL;
    if (!scratch && !(scratch = own = malloc(metric_spearman_scratch_bytes(n)))) {
        set_why(why, SIM_NOMEM);
        return NAN;
    }
    arena_t ar = arena_at(scratch);
    spearman_ws_t w;
    spearman_take(&ar, &w, n);
    double r = spearman_core(a, b, n, &w, why);
    free(own);
    return r;
}

/* ---- the grayscale image of a map for SSIM and HOG: upsample when small, min-max ---------------- */

int metric_upsample_factor(int H, int W)
{
    int side = H < W ? H : W;
    if (side <= 0 || side >= SIM_MIN_SIDE) return 1;
    return (SIM_MIN_SIDE + side - 1) / side;
}

/* SIM_EMPTY, SIM_TOO_LARGE (the upsampled image, its HOG features — at most 81/16 per pixel —
 * and their doubled ranks must stay in 32 bits), or SIM_OK */
static int image_dims_check(int H, int W)
{
    if (H <= 0 || W <= 0) return SIM_EMPTY;
    uint64_t f = (uint64_t)metric_upsample_factor(H, W);
    if ((uint64_t)H * (uint64_t)W * f * f > SIM_MAX_PIXELS) return SIM_TOO_LARGE;
    return SIM_OK;
}

/* Source cell and weight of output index o when upsampling n samples by f (bilinear,
 * align_corners=False): coordinate (o + 0.5)/f − 0.5 = (2o + 1 − f)/(2f), clamped at 0, in
 * integers so that whole coordinates are exact (floating point gives 0.9999999999999999 for 1). */
static void up_coord(int o, int n, int f, int *i0, int *i1, double *t)
{
    int num = 2 * o + 1 - f;
    if (num < 0) num = 0;
    *i0 = num / (2 * f);
    *i1 = *i0 + 1 < n ? *i0 + 1 : n - 1;
    *t = (double)(num % (2 * f)) / (2 * f);
}

/* torch F.interpolate(bilinear, align_corners=False) / skimage resize(order=1, mode='edge') by
 * an integer factor f, in double, each axis as a + (b − a)·t: equal neighbours give exactly their
 * value, so a flat region stays exactly flat. (skimage's resize leaves 1-ulp wobbles there; a
 * wobble is a gradient of ~1e-16 whose orientation, hence its HOG bin, rounding would decide.) */
static void upsample_d(const double *src, int h, int w, int f, double *dst)
{
    int oh = h * f, ow = w * f;
    for (int oy = 0; oy < oh; oy++) {
        int y0, y1;
        double ty;
        up_coord(oy, h, f, &y0, &y1, &ty);
        const double *r0 = src + (size_t)y0 * w, *r1 = src + (size_t)y1 * w;
        for (int ox = 0; ox < ow; ox++) {
            int x0, x1;
            double tx;
            up_coord(ox, w, f, &x0, &x1, &tx);
            double top = r0[x0] + (r0[x1] - r0[x0]) * tx, bot = r1[x0] + (r1[x1] - r1[x0]) * tx;
            dst[(size_t)oy * ow + ox] = top + (bot - top) * ty;
        }
    }
}

/* g = (u − min u)/(max u − min u), u = the map upsampled by f (or the map), rounded to a multiple
 * of 2^-40 (rint: half to even, exact like numpy's np.round(g * 2**40) / 2**40). The rounding
 * moves a value by < 5e-13 but makes every difference of two values exactly 0 or >= 2^-40:
 * values that are equal on paper yet one ulp apart (two interpolation paths) would otherwise
 * give a ~1e-16 gradient, whose HOG bin (0, 8, or none, at 180°) depends on the last bit of
 * atan2 — and numpy's SVML arctan2 and glibc's atan2 differ there. SIM_CONSTANT if flat. */
static int gray_image(const double *m, int H, int W, int f, double *g)
{
    size_t nu = (size_t)H * f * W * f;
    if (f > 1) upsample_d(m, H, W, f, g);
    else memcpy(g, m, nu * sizeof(double));
    double lo = g[0], hi = g[0];
    for (size_t i = 1; i < nu; i++) {
        if (g[i] < lo) lo = g[i];
        if (g[i] > hi) hi = g[i];
    }
    if (hi == lo) return SIM_CONSTANT;
    double den = hi - lo;
    for (size_t i = 0; i < nu; i++) g[i] = nearbyint((g[i] - lo) / den * 0x1p40) * 0x1p-40;
    return SIM_OK;
}

int map_gray_image(const double *m, int H, int W, double *out)
{
    int e = image_dims_check(H, W);
    if (e != SIM_OK) return e;
    if (!all_finite_d(m, (size_t)H * W)) return SIM_NONFINITE;
    return gray_image(m, H, W, metric_upsample_factor(H, W), out);
}

/* ---- SSIM ----------------------------------------------------------------------------------------- */

/* scipy.ndimage._gaussian_kernel1d(1.5, 0, 5): exp(-0.5/σ² · x²) / Σ */
static void ssim_kernel(double w[2 * SIM_SSIM_RADIUS + 1])
{
    const double sigma = 1.5, sigma2 = sigma * sigma;
    for (int i = 0; i <= 2 * SIM_SSIM_RADIUS; i++) {
        int x = i - SIM_SSIM_RADIUS;
        w[i] = exp(-0.5 / sigma2 * (double)(x * x));
    }
    double s = pairwise_sum(w, 2 * SIM_SSIM_RADIUS + 1);
    for (int i = 0; i <= 2 * SIM_SSIM_RADIUS; i++) w[i] = w[i] / s;
}

/* SSIM of two H x W images in [0, 1] (H, W >= 2R + 1). rows: 5·W + (W − 2R) doubles.
 * Only the cropped region is filtered: the 11-tap passes over rows [R, H−R) and then columns
 * [R, W−R) read inside the image, so 'reflect' never applies and the values are the ones skimage
 * has there. Each tap sum follows scipy's symmetric correlate1d: x0·w0 + Σ_{j=R..1} (x−j + xj)·wj. */
static double ssim_core(const double *x, const double *y, int H, int W, double *rows)
{
    enum { R = SIM_SSIM_RADIUS };
    double wk[2 * R + 1];
    ssim_kernel(wk);
    const double *w = wk + R;
    const double K1 = 0.01, K2 = 0.03, data_range = 1;
    const double C1 = pow(K1 * data_range, 2), C2 = pow(K2 * data_range, 2);
    const double NP = (2 * R + 1) * (2 * R + 1), cov_norm = NP / (NP - 1);
    double *fx = rows, *fy = fx + W, *fxx = fy + W, *fyy = fxx + W, *fxy = fyy + W, *srow = fxy + W;
    double total = 0;
    for (int r = R; r < H - R; r++) {
        /* axis 0 */
        for (int c = 0; c < W; c++) {
            size_t at = (size_t)r * W + c;
            double a0 = x[at], b0 = y[at];
            double sx = a0 * w[0], sy = b0 * w[0], sxx = (a0 * a0) * w[0], syy = (b0 * b0) * w[0],
                   sxy = (a0 * b0) * w[0];
            for (int j = -R; j < 0; j++) {
                size_t up = at + (ptrdiff_t)j * W, dn = at - (ptrdiff_t)j * W;
                double au = x[up], ad = x[dn], bu = y[up], bd = y[dn];
                sx += (au + ad) * w[j];
                sy += (bu + bd) * w[j];
                sxx += (au * au + ad * ad) * w[j];
                syy += (bu * bu + bd * bd) * w[j];
                sxy += (au * bu + ad * bd) * w[j];
            }
            fx[c] = sx, fy[c] = sy, fxx[c] = sxx, fyy[c] = syy, fxy[c] = sxy;
        }
        /* axis 1, then the SSIM of each pixel of the cropped row */
        for (int c = R; c < W - R; c++) {
            double ux = fx[c] * w[0], uy = fy[c] * w[0], uxx = fxx[c] * w[0], uyy = fyy[c] * w[0],
                   uxy = fxy[c] * w[0];
            for (int j = -R; j < 0; j++) {
                ux += (fx[c + j] + fx[c - j]) * w[j];
                uy += (fy[c + j] + fy[c - j]) * w[j];
                uxx += (fxx[c + j] + fxx[c - j]) * w[j];
                uyy += (fyy[c + j] + fyy[c - j]) * w[j];
                uxy += (fxy[c + j] + fxy[c - j]) * w[j];
            }
            double vx = cov_norm * (uxx - ux * ux), vy = cov_norm * (uyy - uy * uy),
                   vxy = cov_norm * (uxy - ux * uy);
            double A1 = 2 * ux * uy + C1, A2 = 2 * vxy + C2, B1 = ux * ux + uy * uy + C1,
                   B2 = vx + vy + C2;
            double D = B1 * B2;
            srow[c - R] = (A1 * A2) / D;
        }
        total += pairwise_sum(srow, (size_t)(W - 2 * R)); /* numpy: row by row into the sum */
    }
    return total / ((double)(H - 2 * R) * (W - 2 * R));
}

typedef struct {
    double *ga, *gb, *rows;
} ssim_ws_t;

static void ssim_take(arena_t *ar, ssim_ws_t *w, int H, int W)
{
    int f = metric_upsample_factor(H, W);
    size_t nu = (size_t)H * f * W * f;
    w->ga = take(ar, nu * sizeof(double));
    w->gb = take(ar, nu * sizeof(double));
    w->rows = take(ar, (size_t)6 * W * f * sizeof(double));
}

size_t metric_ssim_scratch_bytes(int H, int W)
{
    if (image_dims_check(H, W) != SIM_OK) return 0;
    arena_t ar = {NULL, 0};
    ssim_ws_t w;
    ssim_take(&ar, &w, H, W);
    return ar.used + ARENA_SLACK;
}

/* shared entry checks of the 2-D image metrics; returns SIM_OK to go on */
static int image_pair_check(const double *a, const double *b, int H, int W)
{
    int e = image_dims_check(H, W);
    if (e != SIM_OK) return e;
    size_t n = (size_t)H * W;
    if (!all_finite_d(a, n)) return SIM_NONFINITE;
    if (!all_finite_d(b, n)) return SIM_NONFINITE | SIM_MAP_B;
    return SIM_OK;
}

static int gray_pair(const double *a, const double *b, int H, int W, int f, double *ga, double *gb)
{
    if (gray_image(a, H, W, f, ga) != SIM_OK) return SIM_CONSTANT;
    if (gray_image(b, H, W, f, gb) != SIM_OK) return SIM_CONSTANT | SIM_MAP_B;
    return SIM_OK;
}

double metric_ssim(const double *a, const double *b, int H, int W, void *scratch, int *why, int *upsample)
{
    int f = metric_upsample_factor(H, W), e;
    if (upsample) *upsample = f;
    if ((e = image_pair_check(a, b, H, W)) != SIM_OK) {
        set_why(why, e);
        return NAN;
    }
    void *own = NULL;
    if (!scratch && !(scratch = own = malloc(metric_ssim_scratch_bytes(H, W)))) {
        set_why(why, SIM_NOMEM);
        return NAN;
    }
    arena_t ar = arena_at(scratch);
    ssim_ws_t w;
    ssim_take(&ar, &w, H, W);
    double r = NAN;
    if ((e = gray_pair(a, b, H, W, f, w.ga, w.gb)) == SIM_OK) r = ssim_core(w.ga, w.gb, H * f, W * f, w.rows);
    set_why(why, e);
    free(own);
    return r;
}

/* ---- HOG ------------------------------------------------------------------------------------------ */

int metric_hog_cell(int H, int W)
{
    int side = H < W ? H : W;
    if (side >= 288) return 16;
    int c = (int)floor(side / 18.0 + 0.5);
    return c < 4 ? 4 : c;
}

size_t map_hog_feature_count(int H, int W, int cell)
{
    if (H <= 0 || W <= 0 || cell <= 0) return 0;
    int ncr = H / cell, ncc = W / cell;
    if (ncr < SIM_HOG_BLOCK || ncc < SIM_HOG_BLOCK) return 0;
    return (size_t)(ncr - SIM_HOG_BLOCK + 1) * (ncc - SIM_HOG_BLOCK + 1) * SIM_HOG_BLOCK * SIM_HOG_BLOCK *
           SIM_HOG_ORIENTATIONS;
}

/* numpy.remainder(x, 180.0) */
static inline double mod180(double x)
{
    double m = fmod(x, 180.0);
    if (m != 0) {
        if (m < 0) m += 180.0;
    } else {
        m = 0.0;
    }
    return m;
}

/* skimage's orientation bin of gradient (gr, gc): degrees(atan2(gr, gc)) mod 180 (numpy's
 * rad2deg is x·(180/π); numpy's remainder), in [20 i, 20 i + 20); 180.0 after rounding is in no
 * bin (-1). */
static int hog_bin_atan2(double gr, double gc)
{
    const double per_bin = 180. / SIM_HOG_ORIENTATIONS; /* Cython: number_of_orientations_per_180 */
    double o = mod180(atan2(gr, gc) * (180.0 / M_PI));
    int bin = (int)(o / per_bin);
    if (bin > SIM_HOG_ORIENTATIONS) bin = SIM_HOG_ORIENTATIONS;
    while (bin > 0 && o < per_bin * bin) bin--;
    while (bin < SIM_HOG_ORIENTATIONS && o >= per_bin * (bin + 1)) bin++;
    return bin < SIM_HOG_ORIENTATIONS ? bin : -1;
}

/* The same bin without atan2 (the costliest step of HOG): fold the gradient into the upper half
 * plane and locate it among the boundaries 20°, 40°, …, 160° by the sign of cross products
 * cos β·gr − sin β·gc. When a cross product is within 1e-9 of the gradient's size — the gradient
 * is within ~1e-9 rad of a boundary, where atan2's rounding could decide — or the gradient is
 * nearly horizontal (the 0°/180° boundary), fall back to hog_bin_atan2: results are identical. */
static int hog_bin(double gr, double gc)
{
    /* cos, sin of 20°·k, k = 0..8 */
    static const double COS[9] = {1.0, 0.93969262078590838, 0.76604444311897801, 0.5, 0.17364817766693041,
                                  -0.17364817766693030, -0.5, -0.76604444311897801, -0.93969262078590832};
    static const double SIN[9] = {0.0, 0.34202014332566871, 0.64278760968653925, 0.86602540378443860,
                                  0.98480775301220802, 0.98480775301220802, 0.86602540378443871,
                                  0.64278760968653936, 0.34202014332566882};
    if (gr == 0) return 0; /* atan2(±0, x) is 0 or ±180: 0 mod 180 */
    double r = gr, c = gc;
    if (r < 0) r = -r, c = -c;
    double eps = 1e-9 * (r + fabs(c));
    if (r <= eps) return hog_bin_atan2(gr, gc);
    int lo = 0, hi = SIM_HOG_ORIENTATIONS; /* angle in (20 lo, 20 hi) */
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        double x = COS[mid] * r - SIN[mid] * c;
        if (fabs(x) <= eps) return hog_bin_atan2(gr, gc);
        if (x > 0) lo = mid;
        else hi = mid;
    }
    return lo;
}

size_t map_hog_features(const double *img, int H, int W, int cell, double *out, float *hist)
{
    enum { NO = SIM_HOG_ORIENTATIONS, B = SIM_HOG_BLOCK, BL = B * B * NO };
    size_t nf = map_hog_feature_count(H, W, cell);
    if (!nf) return 0;
    const int ncr = H / cell, ncc = W / cell;
    memset(hist, 0, sizeof(float) * (size_t)ncr * ncc * NO);
    /* _hoghistogram.cell_hog: per (cell, bin), a float32 running total of the magnitudes whose
     * orientation lies in [20 i, 20 i + 20), in row-major order within the cell */
    for (int r = 0; r < ncr * cell; r++) {
        const double *row = img + (size_t)r * W;
        float *hcell = hist + (size_t)(r / cell) * ncc * NO;
        for (int c0 = 0; c0 < ncc * cell; c0 += cell, hcell += NO)
            for (int c = c0; c < c0 + cell; c++) {
                double gr = (r == 0 || r == H - 1) ? 0.0 : row[c + W] - row[c - W];
                double gc = (c == 0 || c == W - 1) ? 0.0 : row[c + 1] - row[c - 1];
                if (gr == 0 && gc == 0) continue; /* adds 0 to bin 0: nothing */
                int bin = hog_bin(gr, gc);
                if (bin < 0) continue; /* 180.0 after rounding: in no bin (skimage too) */
                hcell[bin] = (float)((double)hcell[bin] + hypot(gc, gr));
            }
    }
    const float area = (float)(cell * cell);
    for (size_t i = 0; i < (size_t)ncr * ncc * NO; i++) hist[i] = hist[i] / area;
    /* blocks, L2-Hys (eps 1e-5, clip 0.2), in skimage's (block row, block col, cell row, cell col,
     * orientation) order */
    const double eps2 = pow(1e-5, 2);
    double blk[BL], sq[BL];
    double *o = out;
    for (int br = 0; br + B <= ncr; br++)
        for (int bc = 0; bc + B <= ncc; bc++) {
            int k = 0;
            for (int i = 0; i < B; i++)
                for (int j = 0; j < B; j++)
                    for (int b = 0; b < NO; b++) blk[k++] = hist[((size_t)(br + i) * ncc + (bc + j)) * NO + b];
            for (k = 0; k < BL; k++) sq[k] = blk[k] * blk[k];
            double nrm = sqrt(pairwise_sum(sq, BL) + eps2);
            for (k = 0; k < BL; k++) {
                double v = blk[k] / nrm;
                blk[k] = v < 0.2 ? v : 0.2;
                sq[k] = blk[k] * blk[k];
            }
            nrm = sqrt(pairwise_sum(sq, BL) + eps2);
            for (k = 0; k < BL; k++) o[k] = blk[k] / nrm;
            o += BL;
        }
    return nf;
}

typedef struct {
    double *ga, *gb, *fa, *fb;
    float *hist;
    spearman_ws_t sp;
} hog_ws_t;

/* with_gray: also the grayscale images; with_sp: also the rank workspace for the features */
static void hog_take(arena_t *ar, hog_ws_t *w, int H, int W, int with_gray, int with_sp)
{
    int f = metric_upsample_factor(H, W), Hu = H * f, Wu = W * f, cell = metric_hog_cell(Hu, Wu);
    size_t nf = map_hog_feature_count(Hu, Wu, cell), nu = (size_t)Hu * Wu;
    if (with_gray) {
        w->ga = take(ar, nu * sizeof(double));
        w->gb = take(ar, nu * sizeof(double));
    }
    w->fa = take(ar, nf * sizeof(double));
    w->fb = take(ar, nf * sizeof(double));
    w->hist = take(ar, (size_t)(Hu / cell) * (Wu / cell) * SIM_HOG_ORIENTATIONS * sizeof(float));
    if (with_sp) spearman_take(ar, &w->sp, nf);
}

size_t metric_hog_scratch_bytes(int H, int W)
{
    if (image_dims_check(H, W) != SIM_OK) return 0;
    arena_t ar = {NULL, 0};
    hog_ws_t w;
    hog_take(&ar, &w, H, W, 1, 1);
    return ar.used + ARENA_SLACK;
}

/* Spearman of the HOG features of two prepared grayscale images */
static double hog_core(const double *ga, const double *gb, int Hu, int Wu, int cell, hog_ws_t *w, int *why)
{
    size_t nf = map_hog_features(ga, Hu, Wu, cell, w->fa, w->hist);
    map_hog_features(gb, Hu, Wu, cell, w->fb, w->hist);
    if (!nf) { /* cannot happen with metric_hog_cell on a side >= SIM_MIN_SIDE */
        set_why(why, SIM_EMPTY);
        return NAN;
    }
    return spearman_core(w->fa, w->fb, nf, &w->sp, why);
}

double metric_hog(const double *a, const double *b, int H, int W, void *scratch, int *why, int *cell,
                  int *upsample)
{
    int f = metric_upsample_factor(H, W), e;
    int c = image_dims_check(H, W) == SIM_OK ? metric_hog_cell(H * f, W * f) : 0;
    if (upsample) *upsample = f;
    if (cell) *cell = c;
    if ((e = image_pair_check(a, b, H, W)) != SIM_OK) {
        set_why(why, e);
        return NAN;
    }
    void *own = NULL;
    if (!scratch && !(scratch = own = malloc(metric_hog_scratch_bytes(H, W)))) {
        set_why(why, SIM_NOMEM);
        return NAN;
    }
    arena_t ar = arena_at(scratch);
    hog_ws_t w;
    hog_take(&ar, &w, H, W, 1, 1);
    double r = NAN;
    if ((e = gray_pair(a, b, H, W, f, w.ga, w.gb)) == SIM_OK) r = hog_core(w.ga, w.gb, H * f, W * f, c, &w, &e);
    set_why(why, e);
    free(own);
    return r;
}

/* ---- entropy ---------------------------------------------------------------------------------- */

double map_entropy(const float *x, size_t n, int *why)
{
    enum { NB = SIM_ENTROPY_BINS };
    if (n == 0) {
        set_why(why, SIM_EMPTY);
        return NAN;
    }
    if (!all_finite_f(x, n)) {
        set_why(why, SIM_NONFINITE);
        return NAN;
    }
    double first = x[0], last = x[0];
    for (size_t i = 1; i < n; i++) {
        if (x[i] < first) first = x[i];
        if (x[i] > last) last = x[i];
    }
    if (first == last) { /* numpy widens an empty range */
        first = first - 0.5;
        last = last + 0.5;
    }
    /* np.linspace(first, last, NB + 1) */
    double edges[NB + 1], delta = last - first, step = delta / NB;
    for (int i = 0; i <= NB; i++) edges[i] = (step == 0 ? (double)i / NB * delta : (double)i * step) + first;
    edges[NB] = last;
    const double norm = NB / delta;
    size_t counts[NB] = {0};
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        ptrdiff_t k = (ptrdiff_t)((v - first) * norm);
        if (k == NB) k--;
        if (v < edges[k]) k--;
        if (v >= edges[k + 1] && k != NB - 1) k++;
        counts[k]++;
    }
    double terms[NB];
    int nt = 0;
    for (int k = 0; k < NB; k++)
        if (counts[k]) {
            double p = (double)counts[k] / (double)n;
            terms[nt++] = p * log(p);
        }
    set_why(why, SIM_OK);
    return -pairwise_sum(terms, (size_t)nt);
}

double metric_entropy_rise(double h_orig, double h_random, int *why)
{
    if (isnan(h_orig) || isnan(h_random)) {
        set_why(why, isnan(h_orig) ? SIM_NONFINITE : SIM_NONFINITE | SIM_MAP_B);
        return NAN;
    }
    if (h_orig == 0) {
        set_why(why, SIM_CONSTANT);
        return NAN;
    }
    set_why(why, SIM_OK);
    return (h_random - h_orig) / h_orig;
}

/* ---- random floor ----------------------------------------------------------------------------- */

void map_fill_normal(float *out, size_t n, uint64_t seed, uint64_t stream)
{
    rng_t r;
    rng_seed(&r, seed, stream);
    for (size_t i = 0; i < n; i++) out[i] = (float)rng_normal(&r);
}

/* ---- a map prepared for many comparisons ------------------------------------------------------ */

struct sim_prep {
    int H, W, f, Hu, Wu, cell, full;
    size_t n, nf;
    int why_abs, why_gray, why_div; /* each normalization's status */
    size_t groups_abs, groups_hog, groups_div;
    uint32_t *r_abs, *r_hog, *r_div; /* doubled ranks (rank2) */
    double *gray;                    /* the grayscale image (Hu x Wu) */
    void *own;                       /* sim_prep_new's block */
};

/* the transient buffers of a preparation and of a comparison */
typedef struct {
    double *na, *work, *feat, *rows;
    float *hist;
    sorter_t s;
} prep_ws_t;

static void prep_dims(int H, int W, int *f, int *Hu, int *Wu, int *cell, size_t *nf)
{
    *f = metric_upsample_factor(H, W);
    *Hu = H * *f;
    *Wu = W * *f;
    *cell = metric_hog_cell(*Hu, *Wu);
    *nf = map_hog_feature_count(*Hu, *Wu, *cell);
}

static void prep_take(arena_t *ar, struct sim_prep *p, int H, int W)
{
    memset(p, 0, sizeof *p);
    p->H = H;
    p->W = W;
    p->n = (size_t)H * W;
    prep_dims(H, W, &p->f, &p->Hu, &p->Wu, &p->cell, &p->nf);
    p->r_abs = take(ar, p->n * sizeof(uint32_t));
    p->r_div = take(ar, p->n * sizeof(uint32_t));
    p->r_hog = take(ar, p->nf * sizeof(uint32_t));
    p->gray = take(ar, (size_t)p->Hu * p->Wu * sizeof(double));
}

static void prep_ws_take(arena_t *ar, prep_ws_t *w, int H, int W)
{
    int f, Hu, Wu, cell;
    size_t nf, n = (size_t)H * W;
    prep_dims(H, W, &f, &Hu, &Wu, &cell, &nf);
    w->na = take(ar, n * sizeof(double));
    w->work = take(ar, n * sizeof(double));
    w->feat = take(ar, nf * sizeof(double));
    w->rows = take(ar, (size_t)6 * Wu * sizeof(double));
    w->hist = take(ar, (size_t)(Hu / cell) * (Wu / cell) * SIM_HOG_ORIENTATIONS * sizeof(float));
    sorter_take(ar, &w->s, n > nf ? n : nf);
}

/* the scratch of sim_compare: the transient buffers and two prepared maps */
typedef struct {
    prep_ws_t w;
    struct sim_prep pa, pb;
} sim_ws_t;

static void sim_take(arena_t *ar, sim_ws_t *w, int H, int W)
{
    prep_ws_take(ar, &w->w, H, W);
    prep_take(ar, &w->pa, H, W);
    prep_take(ar, &w->pb, H, W);
}

size_t sim_scratch_bytes(int H, int W)
{
    if (image_dims_check(H, W) != SIM_OK) return 0;
    arena_t ar = {NULL, 0};
    sim_ws_t w;
    sim_take(&ar, &w, H, W);
    return ar.used + ARENA_SLACK;
}

sim_prep_t *sim_prep_new(int H, int W)
{
    if (image_dims_check(H, W) != SIM_OK) return NULL;
    arena_t ar = {NULL, 0};
    struct sim_prep tmp;
    prep_take(&ar, &tmp, H, W);
    sim_prep_t *p = malloc(sizeof *p);
    void *mem = malloc(ar.used + ARENA_SLACK);
    if (!p || !mem) {
        free(p);
        free(mem);
        return NULL;
    }
    ar = arena_at(mem);
    prep_take(&ar, p, H, W);
    p->own = mem;
    return p;
}

void sim_prep_free(sim_prep_t *p)
{
    if (!p) return;
    free(p->own);
    free(p);
}

static void prepare(struct sim_prep *p, const float *a, int C, int full, prep_ws_t *w)
{
    p->full = full;
    p->why_gray = p->why_div = SIM_NOT_COMPUTED;
    p->groups_abs = p->groups_hog = p->groups_div = 0;
    p->why_abs = C < 0 ? SIM_EMPTY : map_norm_abs(a, C, p->H, p->W, w->na, w->work);
    if (p->why_abs == SIM_OK) {
        p->groups_abs = rank2(w->na, p->n, p->r_abs, &w->s);
        p->why_gray = gray_image(w->na, p->H, p->W, p->f, p->gray);
        if (full && p->why_gray == SIM_OK) {
            size_t nf = map_hog_features(p->gray, p->Hu, p->Wu, p->cell, w->feat, w->hist);
            if (nf) p->groups_hog = rank2(w->feat, nf, p->r_hog, &w->s);
        }
    }
    if (full) {
        p->why_div = C < 0 ? SIM_EMPTY : map_norm_diverging(a, C, p->H, p->W, w->na, w->work);
        if (p->why_div == SIM_OK) p->groups_div = rank2(w->na, p->n, p->r_div, &w->s);
    }
}

int sim_prepare(sim_prep_t *p, const float *a, int C, int full, void *scratch)
{
    void *own = NULL;
    if (!scratch && !(scratch = own = malloc(sim_scratch_bytes(p->H, p->W)))) return SIM_NOMEM;
    arena_t ar = arena_at(scratch);
    prep_ws_t w;
    prep_ws_take(&ar, &w, p->H, p->W);
    prepare(p, a, C, full, &w);
    free(own);
    return SIM_OK;
}

/* Spearman from two rank vectors: the first constant one is the reason */
static double spearman_ranks(const uint32_t *ra, size_t ga, const uint32_t *rb, size_t gb, size_t n, int *why)
{
    if (ga < 2) {
        set_why(why, SIM_CONSTANT);
        return NAN;
    }
    if (gb < 2) {
        set_why(why, SIM_CONSTANT | SIM_MAP_B);
        return NAN;
    }
    set_why(why, SIM_OK);
    return pearson_rank2(ra, rb, n);
}

static void sim_fail_all(sim_t *o, int why)
{
    o->why_spearman = o->why_spearman_abs = o->why_ssim = o->why_hog = why;
}

/* the pair's reason from each map's own normalization status */
static int pair_why(int wa, int wb) { return wa != SIM_OK ? wa : wb != SIM_OK ? (wb | SIM_MAP_B) : SIM_OK; }

static void init_out(sim_t *out)
{
    out->spearman = out->spearman_abs = out->ssim = out->hog = NAN;
    out->hog_cell = 0;
    out->upsample = 1;
    sim_fail_all(out, SIM_OK);
}

/* both full: all four; otherwise spearman_abs and ssim (hog and spearman NaN, SIM_NOT_COMPUTED) */
static void compare_prepared(const struct sim_prep *a, const struct sim_prep *b, double *rows, sim_t *out)
{
    init_out(out);
    out->upsample = a->f;
    out->hog_cell = a->cell;
    const int full = a->full && b->full;
    /* abs-normalized: spearman_abs, then the grayscale images for SSIM and HOG */
    int e = pair_why(a->why_abs, b->why_abs);
    if (e == SIM_OK) {
        out->spearman_abs = spearman_ranks(a->r_abs, a->groups_abs, b->r_abs, b->groups_abs, a->n, &out->why_spearman_abs);
        e = a->why_gray != SIM_OK ? SIM_CONSTANT : b->why_gray != SIM_OK ? (SIM_CONSTANT | SIM_MAP_B) : SIM_OK;
        if (e == SIM_OK) {
            out->ssim = ssim_core(a->gray, b->gray, a->Hu, a->Wu, rows);
            if (full) {
                if (!a->nf) out->why_hog = SIM_EMPTY; /* cannot happen with metric_hog_cell on a side >= SIM_MIN_SIDE */
                else out->hog = spearman_ranks(a->r_hog, a->groups_hog, b->r_hog, b->groups_hog, a->nf, &out->why_hog);
            }
        } else {
            out->why_ssim = out->why_hog = e;
        }
    } else {
        out->why_spearman_abs = out->why_ssim = out->why_hog = e;
    }
    if (!full) {
        out->why_spearman = out->why_hog = SIM_NOT_COMPUTED;
        return;
    }
    /* diverging-normalized: spearman (signed) */
    e = pair_why(a->why_div, b->why_div);
    if (e == SIM_OK) out->spearman = spearman_ranks(a->r_div, a->groups_div, b->r_div, b->groups_div, a->n, &out->why_spearman);
    else out->why_spearman = e;
}

int sim_compare_prepared(const sim_prep_t *a, const sim_prep_t *b, void *scratch, sim_t *out)
{
    if (a->H != b->H || a->W != b->W) {
        init_out(out);
        sim_fail_all(out, SIM_EMPTY);
        return SIM_EMPTY;
    }
    void *own = NULL;
    if (!scratch && !(scratch = own = malloc(sim_scratch_bytes(a->H, a->W)))) {
        init_out(out);
        sim_fail_all(out, SIM_NOMEM);
        return SIM_NOMEM;
    }
    arena_t ar = arena_at(scratch);
    prep_ws_t w;
    prep_ws_take(&ar, &w, a->H, a->W);
    compare_prepared(a, b, w.rows, out);
    free(own);
    return SIM_OK;
}

static int sim_compare_some(const float *a, int Ca, const float *b, int Cb, int H, int W, void *scratch, sim_t *out,
                            int full)
{
    init_out(out);
    int e = Ca < 0 || Cb < 0 ? SIM_EMPTY : image_dims_check(H, W);
    if (e != SIM_OK) {
        sim_fail_all(out, e);
        return e;
    }
    void *own = NULL;
    if (!scratch && !(scratch = own = malloc(sim_scratch_bytes(H, W)))) {
        sim_fail_all(out, SIM_NOMEM);
        return SIM_NOMEM;
    }
    arena_t ar = arena_at(scratch);
    sim_ws_t w;
    sim_take(&ar, &w, H, W);
    prepare(&w.pa, a, Ca, full, &w.w);
    prepare(&w.pb, b, Cb, full, &w.w);
    compare_prepared(&w.pa, &w.pb, w.w.rows, out);
    free(own);
    return SIM_OK;
}

int sim_compare_mixed(const float *a, int Ca, const float *b, int Cb, int H, int W, void *scratch,
                      sim_t *out)
{
    return sim_compare_some(a, Ca, b, Cb, H, W, scratch, out, 1);
}

int sim_compare_edge(const float *a, int Ca, const float *edge, int H, int W, void *scratch, sim_t *out)
{
    return sim_compare_some(a, Ca, edge, 0, H, W, scratch, out, 0);
}

int sim_compare(const float *a, const float *b, int C, int H, int W, void *scratch, sim_t *out)
{
    return sim_compare_mixed(a, C, b, C, H, W, scratch, out);
}
