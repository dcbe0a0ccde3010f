/* metrics.h — similarity metrics for the sanity checks of saliency maps.
 *
 * Adebayo, Gilmer, Muelly, Goodfellow, Hardt, Kim 2018, "Sanity Checks for Saliency Maps": a map
 * that stays similar when the model is randomized explains the image, not the model. They measure
 * "similar" with Spearman rank correlation (with and without absolute values), SSIM and the rank
 * correlation of HOG features, and calibrate against an edge detector and random maps. This file
 * gives those numbers, each equal to a named scipy 1.10 / skimage 0.19 / numpy 1.24 expression
 * (tests/metrics/test_metrics_vs_scipy.py checks every one to 1e-6, HOG to 1e-5).
 *
 * ---- Quick use --------------------------------------------------------------------------------
 *
 *   size_t bytes = sim_scratch_bytes(H, W);        once per worker, for the largest map
 *   void *scratch = malloc(bytes);
 *   sim_t s;
 *   sim_compare(map_orig, map_rand, C, H, W, scratch, &s);   C = 0 for a 2-D (H,W) map
 *   if (isnan(s.ssim)) report null with sim_why_text(s.why_ssim);
 *
 *   edge similarity:  maps_sobel(gray, H, W, edge);  sim_compare_edge(map, C, edge, H, W, ...)
 *   random floor:     map_fill_normal(noise, C*H*W, seed, stream); sim_compare(map, noise, C, ...)
 *   Efficient MPRT:   metric_entropy_rise(map_entropy(orig, n, NULL), map_entropy(rand, n, NULL), &why)
 *
 * ---- What sim_compare computes, for a pair of maps of the same H x W --------------------------
 *
 *   A = map_norm_abs(map)        3-D (C,H,W): m = Σ_c |a|; A = clip((m − min m)/(P99(m) − min m), 0, 1)
 *                                (PAIR saliency's VisualizeImageGrayscale, as the authors' code);
 *                                2-D: A = |a| / max|a|.
 *   D = map_norm_diverging(map)  s = Σ_c a (2-D: s = a); span = |P99(s)|;
 *                                D = clip((s + span)/(2·span), −1, 1) (kept exactly as specified:
 *                                values within the span land in [0, 1]).
 *   G = min-max of A, after upsampling when small (below), rounded to a multiple of 2^-40
 *       (map_gray_image; why the rounding: see HOG below): the "grayscale image" of the map.
 *
 *   spearman_abs = metric_spearman(A_a, A_b)
 *   spearman     = metric_spearman(D_a, D_b)
 *   ssim         = SSIM(G_a, G_b)                  metric_ssim
 *   hog          = Spearman(HOG(G_a), HOG(G_b))    metric_hog; hog_cell says the cell size used
 *
 *   P99 is map_percentile_linear(·, 99) = numpy.percentile(x, 99) (default 'linear' method).
 *   A map may be 3-D and the other 2-D (sim_compare_mixed): each is normalized by its own rule.
 *
 * ---- The references, metric by metric --------------------------------------------------------
 *
 *   metric_spearman   numpy.corrcoef(scipy.stats.rankdata(a), scipy.stats.rankdata(b))[0, 1]:
 *                     ties share their mean rank; Pearson of the ranks with numpy's arithmetic
 *                     (the rank sums are exact, so results are bit-equal). O(n log n) worst
 *                     case; an LSD radix sort on the top 32 bits of the values' order keys, so
 *                     O(n) in practice.
 *   metric_ssim       skimage.metrics.structural_similarity(G_a, G_b, gaussian_weights=True,
 *                     sigma=1.5, use_sample_covariance=True, data_range=1) in float64:
 *                     11x11 Gaussian window (σ 1.5, truncate 3.5, scipy's kernel), K1 0.01,
 *                     K2 0.03, covariances × 121/120, mean over the map cropped by 5 pixels
 *                     (so the 'reflect' border of the filter never enters the mean).
 *   metric_hog        scipy.stats.rankdata-Spearman of skimage.feature.hog(G, orientations=9,
 *                     pixels_per_cell=(c, c), cells_per_block=(3, 3), block_norm='L2-Hys',
 *                     feature_vector=True): central differences (0 on the border rows/columns),
 *                     orientation = degrees(atan2(g_row, g_col)) mod 180, hard binning into
 *                     [20 i, 20 i + 20), cell value = Σ magnitude / c² accumulated in float32
 *                     exactly like skimage's Cython (its `cdef float total`), L2-Hys with eps
 *                     1e-5 and clip 0.2.
 *                     G's 2^-40 grid (a change below 5e-13) keeps hard binning well defined: a
 *                     gradient is exactly 0 or >= 2^-40, never rounding noise of ~1e-16 that
 *                     points within an ulp of 180° — where skimage's bin (0, 8 or none) is decided
 *                     by the last bit of arctan2, which numpy's SVML build and glibc disagree on.
 *                     Cell size c = metric_hog_cell(H, W): side = min(H, W); 16 (the paper's
 *                     16 px on 299) when side >= 288, else max(4, floor(side/18 + 0.5)) — about
 *                     18 cells per side. Pixels past the last whole cell are ignored (skimage).
 *   map_entropy       natural-log Shannon entropy of numpy.histogram(x.astype(float64), bins=100)
 *                     (range [min, max], numpy's bin-edge rules): p = counts/Σ; −Σ_{p>0} p ln p.
 *                     A constant map has entropy 0.
 *   metric_entropy_rise  (H_random − H_orig) / H_orig (Efficient MPRT, Hedström et al. 2024).
 *   map_percentile_linear  numpy.percentile(x, q), bit-equal (numpy 1.24's _lerp).
 *   map_fill_normal   seeded N(0, 1) floats from the engine's rng_t (xoshiro256**, Box-Muller):
 *                     the paper's random-map floor. Same (seed, stream) -> same map.
 *
 * ---- Small maps (SSIM, HOG) -------------------------------------------------------------------
 *
 *   SSIM's 11x11 window needs a side >= 11 (skimage raises below), and HOG's 3x3 blocks of >= 4 px
 *   cells need >= 12. Decision: a 2-D map whose short side is below SIM_MIN_SIDE (12) is upsampled
 *   bilinearly by the smallest integer factor f with f·side >= 12 (a 7x7 Grad-CAM map -> 14x14)
 *   before min-max normalization, for SSIM and HOG only; Spearman always uses the native map.
 *   Upsampling is torch F.interpolate(mode='bilinear', align_corners=False) = skimage
 *   transform.resize(order=1, mode='edge', anti_aliasing=False) (to 4 ulps), computed in
 *   float64 with exact source coordinates and a + (b − a)·t per axis, so that flat regions stay
 *   exactly flat: skimage's resize leaves 1-ulp wobbles there, and HOG bins a 1e-16 gradient by
 *   its orientation — rounding would decide the vote (numpy's SVML arctan2 and glibc's atan2
 *   even disagree on it). The factor is reported (sim_t.upsample). Shrinking the window instead
 *   would average SSIM over one pixel of a 7x7 map; upsampling keeps skimage's parameters and
 *   matches what the paper compared (maps at image resolution). Callers that want the paper's
 *   exact setting upsample CAM maps to the input size themselves (maps_upsample_bilinear) first.
 *
 * ---- NaN: a metric that is undefined is NaN, never 0 -----------------------------------------
 *
 *   Every metric that can be undefined returns NaN and a reason code (why, SIM_* below); the API
 *   reports the value as null with sim_why_text(why). Reasons are checked map a first, then b;
 *   SIM_MAP_B is or-ed into the code when map b is the cause. The causes:
 *     SIM_EMPTY       a size is <= 0
 *     SIM_NONFINITE   the map holds NaN or ±Inf
 *     SIM_CONSTANT    the values being ranked / min-max-normalized are all equal (a constant map;
 *                     a 2-D map of zeros; HOG features all equal, e.g. a flat image); Pearson of
 *                     constant ranks is 0/0 in numpy too
 *     SIM_P99_AT_MIN  abs normalization of a 3-D map: P99(m) == min(m) (>= 99 % of the pixels
 *                     share the minimum) — numpy gives 0/0 there
 *     SIM_ZERO_SPAN   diverging normalization: P99(s) == 0
 *     SIM_NOMEM       a metric was called with scratch == NULL and malloc failed
 *     SIM_TOO_LARGE   more than SIM_MAX_PIXELS (2^28) values to rank (after any upsampling)
 *
 * ---- Memory -----------------------------------------------------------------------------------
 *
 *   Nothing is kept between calls and no function holds on to a pointer. Maps are borrowed.
 *   sim_compare and the metric_* functions take a caller-owned scratch buffer of the size their
 *   *_scratch_bytes function gives (any alignment; it is aligned inside): with it they do not
 *   allocate, so a worker plans one buffer for its largest map and reuses it. scratch == NULL
 *   makes the function malloc and free its own (SIM_NOMEM if that fails). A scratch buffer must
 *   not be shared between threads at the same time; everything else is reentrant.
 *   Outputs (out arrays) are caller-allocated with the sizes stated per function.
 *
 * ---- Cost -------------------------------------------------------------------------------------
 *
 *   sim_compare, one thread (make metrics-bench): 7x7 ~12 us, 28x28 ~0.14 ms, 224x224 ~8 ms —
 *   six rankings (four maps, two HOG vectors), two HOG histograms, one SSIM. The rankings are
 *   the largest share; nothing in it is quadratic.
 */
#ifndef EXPLAIND_SANITY_METRICS_H
#define EXPLAIND_SANITY_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define SIM_MIN_SIDE 12        /* SSIM / HOG upsample maps whose short side is below this */
#define SIM_SSIM_RADIUS 5      /* int(3.5 * 1.5 + 0.5): 11x11 window, crop of 5 */
#define SIM_HOG_ORIENTATIONS 9
#define SIM_HOG_BLOCK 3        /* cells per block side */
#define SIM_ENTROPY_BINS 100
#define SIM_MAX_PIXELS (1u << 28) /* per compared image (after upsampling): ranks are 32-bit */

enum {
    SIM_OK = 0,
    SIM_EMPTY,
    SIM_NONFINITE,
    SIM_CONSTANT,
    SIM_P99_AT_MIN,
    SIM_ZERO_SPAN,
    SIM_NOMEM,
    SIM_TOO_LARGE,
    SIM_NOT_COMPUTED, /* sim_compare_edge: hog and spearman are not asked for */
    SIM_WHY_COUNT
};
#define SIM_MAP_B 0x100 /* or-ed into a pair metric's reason when map b is the cause */

/* The reason as a sentence naming the map ("map b is constant after its normalization ..."),
 * "" for SIM_OK, "unknown reason" for a code not listed; never NULL. */
const char *sim_why_text(int why);

/* ---- the whole set for a pair of maps --------------------------------------------------------- */

typedef struct {
    double spearman;      /* Spearman of the diverging-normalized maps (signed) */
    double spearman_abs;  /* Spearman of the abs-normalized maps */
    double ssim;          /* SSIM of the min-max-normalized grayscale maps */
    double hog;           /* Spearman of their HOG features */
    int hog_cell;         /* HOG cell side in pixels of the (upsampled) map compared */
    int upsample;         /* integer factor SSIM/HOG maps were upsampled by; 1 = native size */
    int why_spearman, why_spearman_abs, why_ssim, why_hog; /* SIM_OK, or why the value is NaN */
} sim_t;

/* Bytes of scratch sim_compare / sim_compare_mixed need for H x W maps (any channel count):
 * about 80 bytes per pixel (28 x 28: 136 KB, 224 x 224: 4.0 MB; small maps count their upsampled
 * size). 0 when H or W <= 0 or the map is too large (SIM_TOO_LARGE). */
size_t sim_scratch_bytes(int H, int W);

/* All four metrics between a and b, both (C,H,W) float32, C = 0 for 2-D (H,W) maps (C = 1 is a
 * 3-D map with one channel: abs normalization uses the P99 rule, not max). Fills *out (every
 * field; NaN values have their why_*). Returns SIM_OK, or SIM_EMPTY / SIM_TOO_LARGE / SIM_NOMEM
 * when nothing could be computed (all four then NaN with that reason). scratch:
 * sim_scratch_bytes(H, W) bytes, or NULL to allocate internally. */
int sim_compare(const float *a, const float *b, int C, int H, int W, void *scratch, sim_t *out);

/* The same with a channel count per map, e.g. a (3,H,W) gradient against a 2-D Sobel edge map:
 * sim_compare_mixed(grad, 3, edge, 0, H, W, scratch, &s) gives edge_spearman (s.spearman_abs
 * and s.spearman) and edge_ssim (s.ssim). */
int sim_compare_mixed(const float *a, int Ca, const float *b, int Cb, int H, int W, void *scratch,
                      sim_t *out);

/* The edge similarity only: as sim_compare_mixed(a, Ca, edge, 0, ...) for spearman_abs and ssim
 * (the same values), without the HOG features and the diverging normalization nobody reads there
 * (hog and spearman are NaN with SIM_NOT_COMPUTED). About half the work of a full comparison. */
int sim_compare_edge(const float *a, int Ca, const float *edge, int H, int W, void *scratch, sim_t *out);

/* ---- one map prepared for many comparisons ---------------------------------------------------
 * A sanity run compares one original map with the map of every randomization step, and every map
 * with the same Sobel edges. Preparing a map (its normalizations, ranks, grayscale image and HOG
 * features) is most of a comparison's work, so a map used more than once is prepared once:
 *
 *   sim_prep_t *orig = sim_prep_new(H, W), *step = sim_prep_new(H, W);
 *   sim_prepare(orig, map_orig, C, 1, scratch);                    once
 *   sim_prepare(step, map_step, C, 1, scratch);                    per step (reusing the object)
 *   sim_compare_prepared(orig, step, scratch, &s);                 == sim_compare(map_orig, map_step, ...)
 *
 * sim_compare is exactly that sequence, so the values are the same bits. full = 0 prepares only
 * what spearman_abs and ssim need (an edge map); a comparison with such a map is
 * sim_compare_edge's. scratch: sim_scratch_bytes(H, W) bytes, or NULL to allocate internally. */
typedef struct sim_prep sim_prep_t;

/* NULL when H x W is not comparable (image_dims: SIM_EMPTY / SIM_TOO_LARGE) or out of memory. */
sim_prep_t *sim_prep_new(int H, int W);
void sim_prep_free(sim_prep_t *p);
/* a: (C,H,W) float32, C = 0 for 2-D, of p's H x W. Returns SIM_OK or SIM_NOMEM; a map that cannot
 * be normalized is prepared as such (its comparisons are NaN with the reason). */
int sim_prepare(sim_prep_t *p, const float *a, int C, int full, void *scratch);
/* The metrics between two prepared maps of the same H x W (a is "map a" in the reasons). */
int sim_compare_prepared(const sim_prep_t *a, const sim_prep_t *b, void *scratch, sim_t *out);

/* ---- normalizations ----------------------------------------------------------------------------- */

/* Abs normalization (see the top) of a (C,H,W) map (C = 0: 2-D) into out (H*W doubles), using
 * work (H*W doubles, may not alias out). Returns SIM_OK, SIM_EMPTY, SIM_NONFINITE, SIM_CONSTANT
 * (a 2-D map of zeros; a constant 3-D map) or SIM_P99_AT_MIN; out is then all NaN. */
int map_norm_abs(const float *a, int C, int H, int W, double *out, double *work);

/* Diverging normalization (see the top), same contract; SIM_ZERO_SPAN when P99(s) == 0
 * (SIM_CONSTANT when s is all 0). */
int map_norm_diverging(const float *a, int C, int H, int W, double *out, double *work);

/* map_percentile_linear (numpy.percentile of float64 data) is engine/maps.h's. */

/* ---- metrics ----------------------------------------------------------------------------------- */

/* Spearman rank correlation of a and b (n doubles each). NaN with *why (may be NULL) set when
 * n == 0 (SIM_EMPTY), n >= 2^31 (SIM_TOO_LARGE), a value is not finite, or either side is
 * constant (n == 1 included). */
double metric_spearman(const double *a, const double *b, size_t n, void *scratch, int *why);
size_t metric_spearman_scratch_bytes(size_t n);

/* SSIM of two H x W maps, compared as their grayscale images (map_gray_image: the small-map
 * upsampling, min-max, 2^-40 grid). *upsample (may be NULL) gets the factor used. NaN when a map
 * is constant, empty, too large or not finite. */
double metric_ssim(const double *a, const double *b, int H, int W, void *scratch, int *why,
                   int *upsample);
size_t metric_ssim_scratch_bytes(int H, int W);

/* Spearman of the HOG features of two H x W maps' grayscale images (as metric_ssim). *cell (may
 * be NULL) gets the cell size used, *upsample the factor. */
double metric_hog(const double *a, const double *b, int H, int W, void *scratch, int *why, int *cell,
                  int *upsample);
size_t metric_hog_scratch_bytes(int H, int W);

/* The HOG cell size for an H x W image (after any upsampling): see the top. */
int metric_hog_cell(int H, int W);

/* The small-map upsampling factor for H x W: 1 when min(H, W) >= SIM_MIN_SIDE. */
int metric_upsample_factor(int H, int W);

/* The grayscale image SSIM and HOG compare for a 2-D map m (H x W, finite): m upsampled by
 * f = metric_upsample_factor(H, W), min-max normalized to [0, 1], rounded to a multiple of 2^-40
 * (numpy: np.round(g * 2**40) / 2**40). out: (H f)·(W f) doubles.
 * Returns SIM_OK, SIM_EMPTY, SIM_TOO_LARGE, SIM_NONFINITE, or SIM_CONSTANT (out then
 * unspecified). */
int map_gray_image(const double *m, int H, int W, double *out);

/* skimage.feature.hog(img, 9, (cell, cell), (3, 3), 'L2-Hys', feature_vector=True) of a float64
 * H x W image into out (map_hog_feature_count doubles), using hist_work
 * (floor(H/cell) * floor(W/cell) * 9 floats). Returns the feature count, 0 when the image has
 * fewer than 3 whole cells on a side (skimage then returns an empty vector). */
size_t map_hog_features(const double *img, int H, int W, int cell, double *out, float *hist_work);
size_t map_hog_feature_count(int H, int W, int cell);

/* Natural-log entropy of the 100-bin histogram (see the top) of n floats. NaN with *why when
 * n == 0 or a value is not finite. */
double map_entropy(const float *x, size_t n, int *why);

/* (h_random − h_orig) / h_orig; NaN with SIM_CONSTANT when h_orig == 0 (constant original map),
 * SIM_NONFINITE when an entropy is NaN. */
double metric_entropy_rise(double h_orig, double h_random, int *why);

/* out[0..n-1] = N(0, 1) draws from rng_seed(seed, stream): the seeded random map of the floor. */
void map_fill_normal(float *out, size_t n, uint64_t seed, uint64_t stream);

#endif
