/* maps.c — see maps.h. */
#include "maps.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- order statistics ------------------------------------------------------------------------- */

/* Rearrange a[left..right] (no NaN) so that a[k] holds the value a full sort would put there,
 * everything before it is <= a[k] and everything after it >= a[k] (C++ nth_element).
 * Floyd & Rivest 1975 ("Algorithm 489: SELECT", CACM 18(3)): recursively select from a sample of
 * about n^(2/3) elements a pivot just beside the k-th, so one partition pass leaves a small
 * window; n + min(k, n - k) + o(n) comparisons expected. For the high percentiles used here the
 * scans are almost always taken branches, which is what makes it fast in practice; Hoare-style
 * scans that stop on equal keys keep maps full of ties (ReLU'd CAMs are mostly 0) linear too.
 * Written once for float and double data; the k-th value does not depend on the algorithm. */
#define DEFINE_SELECT_KTH(T, NAME)                                                                                     \
    static void NAME(T *a, ptrdiff_t left, ptrdiff_t right, ptrdiff_t k)                                              \
    {                                                                                                                  \
        while (right > left) {                                                                                         \
            if (right - left > 600) {                                                                                  \
                double n = (double)(right - left + 1), i = (double)(k - left + 1);                                     \
                double z = log(n), s = 0.5 * exp(2.0 * z / 3.0);                                                       \
                double sd = 0.5 * sqrt(z * s * (n - s) / n) * (i < n / 2 ? -1.0 : 1.0);                                \
                double nl = floor((double)k - i * s / n + sd), nr = floor((double)k + (n - i) * s / n + sd);           \
                NAME(a, nl > (double)left ? (ptrdiff_t)nl : left, nr < (double)right ? (ptrdiff_t)nr : right, k);      \
            }                                                                                                          \
            T t = a[k], x;                                                                                             \
            ptrdiff_t i = left, j = right;                                                                             \
            x = a[left], a[left] = a[k], a[k] = x;                                                                     \
            if (a[right] > t) x = a[right], a[right] = a[left], a[left] = x;                                           \
            while (i < j) { /* a[left] and a[right] bracket t: the scans below cannot run off */                      \
                x = a[i], a[i] = a[j], a[j] = x;                                                                       \
                i++;                                                                                                   \
                j--;                                                                                                   \
                while (a[i] < t) i++;                                                                                  \
                while (a[j] > t) j--;                                                                                  \
            }                                                                                                          \
            if (a[left] == t) {                                                                                        \
                x = a[left], a[left] = a[j], a[j] = x;                                                                 \
            } else {                                                                                                   \
                j++;                                                                                                   \
                x = a[j], a[j] = a[right], a[right] = x;                                                               \
            }                                                                                                          \
            if (j <= k) left = j + 1;                                                                                  \
            if (k <= j) right = j - 1;                                                                                 \
        }                                                                                                              \
    }

/* numpy 1.24 _quantile, method 'linear': virtual index (n-1)*q with q = p/100 in float64; at or
 * past the last index both neighbours are the maximum. The next order statistic is the minimum of
 * what selection left above k0. numpy's _lerp: b - a in the data's type, the rest in float64, and
 * from the upper end when t >= 0.5 (it is monotonic and exact at t == 1). */
#define DEFINE_PERCENTILE(T, NAME, SELECT, EMPTY)                                                                      \
    double NAME(T *x, size_t n, double p)                                                                              \
    {                                                                                                                  \
        if (n == 0) return EMPTY;                                                                                      \
        if (!(p >= 0.0)) p = 0.0; /* also NaN */                                                                       \
        if (p > 100.0) p = 100.0;                                                                                      \
        double vi = (double)(n - 1) * (p / 100.0);                                                                     \
        size_t k0 = n - 1, k1 = n - 1;                                                                                 \
        if (vi < (double)(n - 1)) {                                                                                    \
            k0 = (size_t)floor(vi);                                                                                    \
            k1 = k0 + 1;                                                                                               \
        }                                                                                                              \
        double t = vi - (double)k0;                                                                                    \
        SELECT(x, 0, (ptrdiff_t)n - 1, (ptrdiff_t)k0);                                                                 \
        T a = x[k0], b = a;                                                                                            \
        if (k1 != k0) {                                                                                                \
            b = x[k1];                                                                                                 \
            for (size_t i = k1 + 1; i < n; i++)                                                                        \
                if (x[i] < b) b = x[i];                                                                                \
        }                                                                                                              \
        T d = b - a;                                                                                                   \
        if (t >= 0.5) return (double)b - (double)d * (1.0 - t);                                                        \
        return (double)a + (double)d * t;                                                                              \
    }

DEFINE_SELECT_KTH(float, select_kth_f)
DEFINE_SELECT_KTH(double, select_kth_d)
DEFINE_PERCENTILE(float, map_percentile, select_kth_f, 0.0)
DEFINE_PERCENTILE(double, map_percentile_linear, select_kth_d, NAN)

/* ---- resampling and filters ------------------------------------------------------------------- */

/* output coordinate d of an axis of `in` samples scaled by `scale`: its two source samples and
 * the weight of the second (half-pixel centres, clamped at the edges) */
static void bilinear_axis(int d, int in, double scale, int *i0, int *i1, float *l)
{
    double f = (d + 0.5) * scale - 0.5;
    if (f < 0) f = 0;
    int a = (int)f;
    if (a > in - 1) a = in - 1;
    *i0 = a;
    *i1 = a + (a < in - 1);
    /* past the last centre both taps are the edge pixel: weight it 1 exactly, so a clamped band
     * repeats the edge value bit for bit (h·v + l·v can round away from v, and pixels equal by
     * definition would then rank apart in the faithfulness metrics) */
    *l = *i1 == a ? 0.f : (float)(f - a);
}

void maps_upsample_bilinear(const float *src, int sh, int sw, float *dst, int dh, int dw)
{
    /* align_corners=False, no antialias */
    const double sy = (double)sh / dh, sx = (double)sw / dw;
    for (int y = 0; y < dh; y++) {
        int y0, y1, x0, x1;
        float ly, lx;
        bilinear_axis(y, sh, sy, &y0, &y1, &ly);
        const float hy = 1.f - ly;
        for (int x = 0; x < dw; x++) {
            bilinear_axis(x, sw, sx, &x0, &x1, &lx);
            const float hx = 1.f - lx;
            dst[(size_t)y * dw + x] = hy * (hx * src[y0 * sw + x0] + lx * src[y0 * sw + x1]) +
                                      ly * (hx * src[y1 * sw + x0] + lx * src[y1 * sw + x1]);
        }
    }
}

/* one separable pass over an h x w plane, along x or along y, reflect borders */
static void blur_pass(const float *src, int h, int w, int along_x, const double *k, int rad, float *dst)
{
#define REFL(i, n) ((i) < 0 ? -(i) - 1 : (i) >= (n) ? 2 * (n) - (i) - 1 : (i))
    const int n = along_x ? w : h;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double a = 0;
            for (int d = -rad; d <= rad; d++) {
                int t = REFL((along_x ? x : y) + d, n);
                t = t < 0 ? 0 : t >= n ? n - 1 : t; /* a radius past the side reflects more than once */
                a += k[d + rad] * src[along_x ? y * w + t : t * w + x];
            }
            dst[y * w + x] = (float)a;
        }
#undef REFL
}

static void blur_channel(const float *src, int h, int w, double sigma, float *dst)
{
    int rad = (int)ceil(3 * sigma);
    if (rad < 1) rad = 1;
    double *k = malloc(sizeof(double) * (2 * rad + 1)), s = 0;
    float *tmp = malloc(sizeof(float) * (size_t)h * w);
    if (!k || !tmp) {
        memcpy(dst, src, sizeof(float) * (size_t)h * w);
        free(k);
        free(tmp);
        return;
    }
    for (int i = -rad; i <= rad; i++) s += k[i + rad] = exp(-0.5 * i * i / (sigma * sigma));
    for (int i = 0; i <= 2 * rad; i++) k[i] /= s;
    blur_pass(src, h, w, 1, k, rad, tmp);
    blur_pass(tmp, h, w, 0, k, rad, dst);
    free(k);
    free(tmp);
}

void maps_blur(const float *x, int C, int h, int w, double sigma, float *out)
{
    for (int c = 0; c < C; c++) blur_channel(x + (size_t)c * h * w, h, w, sigma, out + (size_t)c * h * w);
}

void maps_sobel(const float *g, int h, int w, float *out)
{
#define AT(y, x) g[(size_t)((y) < 0 ? -(y) - 1 : (y) >= h ? 2 * h - (y) - 1 : (y)) * w + \
                   ((x) < 0 ? -(x) - 1 : (x) >= w ? 2 * w - (x) - 1 : (x))]
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            /* axis 0 derivative (rows), smoothed along columns; and the transpose */
            double d0 = ((double)AT(y - 1, x - 1) + 2.0 * AT(y - 1, x) + AT(y - 1, x + 1) - AT(y + 1, x - 1) -
                         2.0 * AT(y + 1, x) - AT(y + 1, x + 1)) / 4.0;
            double d1 = ((double)AT(y - 1, x - 1) + 2.0 * AT(y, x - 1) + AT(y + 1, x - 1) - AT(y - 1, x + 1) -
                         2.0 * AT(y, x + 1) - AT(y + 1, x + 1)) / 4.0;
            out[(size_t)y * w + x] = (float)sqrt((d0 * d0 + d1 * d1) / 2.0);
        }
#undef AT
}
