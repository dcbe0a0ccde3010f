/* maps.h — operations on 2-D maps and images shared by the methods, the sanity checks and the
 * server's rendering (engine/maps.c): order statistics (numpy.percentile), the engine's bilinear
 * upsampling, Gaussian blur and Sobel edges. Plain float/double arrays, no allocation beyond
 * the blur's scratch, no model. Included by engine.h. */
#ifndef EXPLAIND_MAPS_H
#define EXPLAIND_MAPS_H

#include <stddef.h>

/* The p-th percentile (p in [0,100], clamped; NaN counts as 0) of x[0..n-1], numpy.percentile's
 * default 'linear' method: rank r = (n - 1) * p / 100, result = x[floor r] interpolated towards
 * x[floor r + 1] of the sorted values with numpy 1.24's _lerp (the difference in the data's type,
 * the interpolation in float64 from the nearer end), so results are bit-equal to numpy's.
 * Reorders x (Floyd-Rivest selection: O(n) expected, no sort); x must hold no NaN.
 *   map_percentile         float32 data (render: the PNG clip); n == 0 gives 0
 *   map_percentile_linear  float64 data (the sanity metrics' P99); n == 0 gives NaN */
double map_percentile(float *x, size_t n, double p);
double map_percentile_linear(double *x, size_t n, double p);

/* Bilinear upsampling as torch F.interpolate(mode='bilinear', align_corners=False): half-pixel
 * centres, clamped at the edges, source coordinates in float64 (the methods and the sanity checks;
 * the server's rendering has its own kernel with ATen's float32 coordinates, render.h). */
void maps_upsample_bilinear(const float *src, int sh, int sw, float *dst, int dh, int dw);

/* Gaussian blur of C planes (h x w each), σ in pixels, kernel radius ceil(3σ), reflect borders
 * (d c b a | a b c d), separable in float64. Falls back to a copy when out of memory. */
void maps_blur(const float *x, int C, int h, int w, double sigma, float *out);

/* Sobel edge magnitude, exactly skimage.filters.sobel (0.19) on a grayscale h x w image:
 * h = [1,2,1]ᵀ/4 ⊗ [1,0,−1] and v its transpose, reflect borders, √((h² + v²)/2). */
void maps_sobel(const float *gray, int h, int w, float *out);

#endif
