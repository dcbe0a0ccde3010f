/* test_metrics — engine/sanity/metrics.c on cases small enough to work out by hand (ranks with
 * ties, percentiles, both normalizations, HOG of step edges, entropies), the NaN contract
 * (undefined is NaN with a reason, never 0), the scratch contract, and a few golden SSIM/HOG
 * values from skimage 0.19 for maps the LCG below regenerates (the exhaustive comparison with
 * scipy/skimage is tests/metrics/test_metrics_vs_scipy.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>

#include "engine/explain/methods.h"
#include "engine/sanity/metrics.h"

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static void near(double got, double want, double tol, const char *what)
{
    if (!(fabs(got - want) <= tol)) {
        print_error("%s: got %.17g, want %.17g (tol %g)\n", what, got, want, tol);
        fail();
    }
}
#define NEAR(got, want, tol) near((got), (want), (tol), #got)

/* x <- 1664525 x + 1013904223; value (x >> 8) / 2^24 (exact in float and double) — the golden
 * values below were computed in Python from the same sequence */
static void lcg_fill(double *v, size_t n, uint32_t seed)
{
    uint32_t x = seed;
    for (size_t i = 0; i < n; i++) {
        x = 1664525u * x + 1013904223u;
        v[i] = (double)(x >> 8) / 16777216.0;
    }
}

/* the average rank of v[i] among v[0..n-1], by counting: the reference for rank tests */
static double naive_rank(const double *v, size_t n, size_t i)
{
    size_t less = 0, equal = 0;
    for (size_t j = 0; j < n; j++) {
        less += v[j] < v[i];
        equal += v[j] == v[i];
    }
    return (double)less + (double)(equal + 1) / 2.0;
}

static double naive_spearman(const double *a, const double *b, size_t n)
{
    double *ra = malloc(n * sizeof(double)), *rb = malloc(n * sizeof(double)), ma = 0, mb = 0;
    assert_non_null(ra);
    assert_non_null(rb);
    for (size_t i = 0; i < n; i++) {
        ra[i] = naive_rank(a, n, i);
        rb[i] = naive_rank(b, n, i);
        ma += ra[i];
        mb += rb[i];
    }
    ma /= (double)n;
    mb /= (double)n;
    double sab = 0, saa = 0, sbb = 0;
    for (size_t i = 0; i < n; i++) {
        sab += (ra[i] - ma) * (rb[i] - mb);
        saa += (ra[i] - ma) * (ra[i] - ma);
        sbb += (rb[i] - mb) * (rb[i] - mb);
    }
    free(ra);
    free(rb);
    return sab / sqrt(saa * sbb);
}

/* ---- Spearman ---------------------------------------------------------------------------------- */

static void test_spearman_ties_share_their_mean_rank(void **state)
{
    (void)state;
    /* ranks a 1 2 3 4 5, b 1 2 3.5 5 3.5: deviations (-2 -1 0 1 2), (-2 -1 .5 2 .5):
     * Σab = 8, Σaa = 10, Σbb = 9.5 -> 8/√95 */
    const double a[] = {1, 2, 3, 4, 5}, b[] = {5, 6, 7, 8, 7};
    int why = -1;
    NEAR(metric_spearman(a, b, 5, NULL, &why), 8 / sqrt(95), 1e-15);
    assert_int_equal(why, SIM_OK);
}

static void test_spearman_is_rank_based(void **state)
{
    (void)state;
    double a[50], b[50], c[50];
    for (int i = 0; i < 50; i++) {
        a[i] = i - 20;
        b[i] = a[i] * a[i] * a[i]; /* monotone, not linear */
        c[i] = -exp(a[i] / 7);     /* monotone decreasing */
    }
    /* c/√c/√c: 1 to the last bit or one below it, as numpy.corrcoef */
    NEAR(metric_spearman(a, b, 50, NULL, NULL), 1, 2.3e-16);
    NEAR(metric_spearman(a, c, 50, NULL, NULL), -1, 2.3e-16);
}

static void test_spearman_two_opposite_step_features_is_minus_one_26th(void **state)
{
    (void)state;
    /* 81 values, 3 ones at different places in a and b: ranks 39.5 / 80, deviations -1.5 / 39:
     * Σab = 6·39·(-1.5) + 75·2.25 = -182.25, Σaa = Σbb = 78·2.25 + 3·1521 = 4738.5 -> -1/26 */
    double a[81] = {0}, b[81] = {0};
    a[9] = a[36] = a[63] = 1;
    b[31] = b[40] = b[49] = 1;
    NEAR(metric_spearman(a, b, 81, NULL, NULL), -1.0 / 26, 1e-15);
}

static void test_spearman_equals_naive_ranks_with_ties(void **state)
{
    (void)state;
    enum { N = 3000 };
    static double a[N], b[N];
    lcg_fill(a, N, 7);
    lcg_fill(b, N, 8);
    for (int i = 0; i < N; i++) {
        a[i] = floor(a[i] * 40) - 20;            /* 40 levels: long tie runs, both signs */
        b[i] = i % 3 ? 0.3 * a[i] + b[i] : -0.0; /* -0 and +0 must tie */
    }
    NEAR(metric_spearman(a, b, N, NULL, NULL), naive_spearman(a, b, N), 1e-12);
}

static void test_spearman_values_equal_in_their_top_bits(void **state)
{
    (void)state;
    /* 1 + k·2^-52 share the top 32 bits of their sort key: the low-bit pass must order them */
    enum { N = 700 };
    static double a[N], b[N], u[N];
    lcg_fill(u, N, 9);
    for (int i = 0; i < N; i++) {
        a[i] = 1.0 + (double)(int)(u[i] * 5000) * 0x1p-52;
        b[i] = 1.0 + (double)((i * 37) % 301) * 0x1p-52;
    }
    NEAR(metric_spearman(a, b, N, NULL, NULL), naive_spearman(a, b, N), 1e-12);
}

static void test_spearman_undefined_is_nan_with_reason(void **state)
{
    (void)state;
    const double x[] = {1, 2, 3, 4}, k[] = {7, 7, 7, 7}, bad[] = {1, NAN, 3, 4};
    int why = -1;
    assert_true(isnan(metric_spearman(k, x, 4, NULL, &why)));
    assert_int_equal(why, SIM_CONSTANT);
    assert_true(isnan(metric_spearman(x, k, 4, NULL, &why)));
    assert_int_equal(why, SIM_CONSTANT | SIM_MAP_B);
    assert_true(isnan(metric_spearman(x, x, 1, NULL, &why))); /* one value: constant */
    assert_int_equal(why, SIM_CONSTANT);
    assert_true(isnan(metric_spearman(x, x, 0, NULL, &why)));
    assert_int_equal(why, SIM_EMPTY);
    assert_true(isnan(metric_spearman(x, bad, 4, NULL, &why)));
    assert_int_equal(why, SIM_NONFINITE | SIM_MAP_B);
    assert_non_null(strstr(sim_why_text(SIM_CONSTANT | SIM_MAP_B), "map b"));
    assert_non_null(strstr(sim_why_text(SIM_CONSTANT), "map a"));
    assert_string_equal(sim_why_text(SIM_OK), "");
    assert_string_equal(sim_why_text(999), "unknown reason");
    assert_string_equal(sim_why_text(-1), "unknown reason");
}

/* ---- percentile ------------------------------------------------------------------------------- */

static void test_percentile_linear_by_hand(void **state)
{
    (void)state;
    double x[] = {4, 1, 3, 2};
    assert_true(map_percentile_linear(x, 4, 50) == 2.5);
    /* rank 3·0.99 = 2.97 between 3 and 4, from the nearer end: 4 − 1·(1 − 0.97) */
    double y[] = {4, 1, 3, 2};
    NEAR(map_percentile_linear(y, 4, 99), 3.97, 1e-15);
    double z[] = {4, 1, 3, 2};
    assert_true(map_percentile_linear(z, 4, 0) == 1);
    assert_true(map_percentile_linear(z, 4, 100) == 4);
    assert_true(map_percentile_linear(z, 4, 250) == 4); /* clamped */
    assert_true(map_percentile_linear(z, 4, -3) == 1);
    double one[] = {-2.5};
    assert_true(map_percentile_linear(one, 1, 99) == -2.5);
    assert_true(isnan(map_percentile_linear(one, 0, 50)));
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void test_percentile_equals_sorted_reference(void **state)
{
    (void)state;
    enum { N = 2001 };
    static double x[N], s[N], w[N];
    const double qs[] = {0, 1, 10, 50, 90, 99, 99.9, 100};
    for (int kind = 0; kind < 3; kind++) {
        lcg_fill(x, N, 11 + kind);
        for (int i = 0; i < N; i++) {
            if (kind == 1) x[i] = floor(x[i] * 5);  /* 5 values */
            if (kind == 2) x[i] = (double)(N - i); /* sorted descending */
        }
        memcpy(s, x, sizeof x);
        qsort(s, N, sizeof(double), cmp_d);
        for (size_t q = 0; q < N_OF(qs); q++) {
            double vi = (N - 1) * (qs[q] / 100.0), lo = floor(vi);
            size_t i0 = (size_t)lo, i1 = i0 + 1 < N ? i0 + 1 : N - 1;
            double want = s[i0] + (s[i1] - s[i0]) * (vi - lo);
            memcpy(w, x, sizeof x);
            NEAR(map_percentile_linear(w, N, qs[q]), want, 1e-12);
        }
    }
}

/* ---- normalizations --------------------------------------------------------------------------- */

static void test_norm_abs_2d_divides_by_max_abs(void **state)
{
    (void)state;
    const float a[] = {-2, 1, 0, 4};
    double out[4], work[4];
    assert_int_equal(map_norm_abs(a, 0, 2, 2, out, work), SIM_OK);
    const double want[] = {0.5, 0.25, 0, 1};
    for (int i = 0; i < 4; i++) assert_true(out[i] == want[i]);
}

static void test_norm_abs_3d_clips_at_p99(void **state)
{
    (void)state;
    /* C=2: m = |a0| + |a1| = 0 1 2 3 8; P99 = 8 − 5·0.04 = 7.8; (m − 0)/7.8 clipped to 1 */
    const float a[] = {0, 1, -1, 3, 5, /* */ 0, 0, -1, 0, -3};
    double out[5], work[5];
    assert_int_equal(map_norm_abs(a, 2, 1, 5, out, work), SIM_OK);
    const double want[] = {0, 1 / 7.8, 2 / 7.8, 3 / 7.8, 1};
    for (int i = 0; i < 5; i++) NEAR(out[i], want[i], 1e-15);
    assert_true(out[4] == 1);
}

static void test_norm_diverging_by_hand(void **state)
{
    (void)state;
    /* s = -4 -1 0 1 2: P99 = 2 − 1·0.04 = 1.96 = span; (s + 1.96)/3.92, 2 clipped to 1 */
    const float a[] = {-4, -1, 0, 1, 2};
    double out[5], work[5];
    assert_int_equal(map_norm_diverging(a, 0, 1, 5, out, work), SIM_OK);
    const double want[] = {-2.04 / 3.92, 0.96 / 3.92, 0.5, 2.96 / 3.92, 1};
    for (int i = 0; i < 5; i++) NEAR(out[i], want[i], 1e-15);
    /* 3-D: the channel sum, then the same */
    const float b[] = {-3, -1, 1, 0, 1, /* */ -1, 0, -1, 1, 1};
    assert_int_equal(map_norm_diverging(b, 2, 1, 5, out, work), SIM_OK);
    for (int i = 0; i < 5; i++) NEAR(out[i], want[i], 1e-15);
}

static void test_normalization_failures_have_reasons(void **state)
{
    (void)state;
    double out[201], work[201];
    const float zeros[4] = {0}, sevens[4] = {7, 7, 7, 7}, nanmap[4] = {1, NAN, 0, 1};
    assert_int_equal(map_norm_abs(zeros, 0, 2, 2, out, work), SIM_CONSTANT);
    assert_true(isnan(out[0]) && isnan(out[3]));
    assert_int_equal(map_norm_abs(sevens, 1, 2, 2, out, work), SIM_CONSTANT);
    assert_int_equal(map_norm_abs(nanmap, 0, 2, 2, out, work), SIM_NONFINITE);
    assert_int_equal(map_norm_diverging(zeros, 0, 2, 2, out, work), SIM_CONSTANT);
    assert_int_equal(map_norm_abs(zeros, 0, 0, 2, out, work), SIM_EMPTY);
    assert_int_equal(map_norm_diverging(zeros, -1, 2, 2, out, work), SIM_EMPTY);
    /* 200 zeros and a 5: P99 is the 199th value, 0, the minimum */
    static float sparse[201];
    sparse[200] = 5;
    assert_int_equal(map_norm_abs(sparse, 1, 1, 201, out, work), SIM_P99_AT_MIN);
    assert_int_equal(map_norm_diverging(sparse, 0, 1, 201, out, work), SIM_ZERO_SPAN);
    assert_true(isnan(out[200]));
    const float neg[5] = {-3, 0, 0, 0, 0}; /* P99 = 0 */
    assert_int_equal(map_norm_diverging(neg, 0, 1, 5, out, work), SIM_ZERO_SPAN);
    /* the 2-D abs rule uses the maximum: defined for the sparse map */
    assert_int_equal(map_norm_abs(sparse, 0, 1, 201, out, work), SIM_OK);
    assert_true(out[200] == 1 && out[0] == 0);
}

/* ---- HOG ---------------------------------------------------------------------------------------- */

static void step_image(double *img, int vertical)
{
    for (int r = 0; r < 12; r++)
        for (int c = 0; c < 12; c++) img[r * 12 + c] = (vertical ? c : r) >= 6;
}

static void test_hog_of_a_vertical_step_edge(void **state)
{
    (void)state;
    /* central differences are 1 at columns 5 and 6, angle 0: bin 0 of the cells in column 1 gets
     * 4 rows · 2 px / 16 = 0.5. One block of 81 values, three 0.5: L2 -> 0.577, clipped to
     * 0.2, renormalized -> 1/√3 (eps 1e-5 is below 1e-9 here); zeros elsewhere. */
    double img[144], f[81];
    float hist[81];
    step_image(img, 1);
    assert_int_equal(map_hog_feature_count(12, 12, 4), 81);
    assert_int_equal(map_hog_features(img, 12, 12, 4, f, hist), 81);
    for (int i = 0; i < 81; i++) NEAR(f[i], (i == 9 || i == 36 || i == 63) ? 1 / sqrt(3) : 0, 1e-9);
    /* horizontal edge: 90°, bin 4 of the cells in row 1 */
    step_image(img, 0);
    map_hog_features(img, 12, 12, 4, f, hist);
    for (int i = 0; i < 81; i++) NEAR(f[i], (i == 31 || i == 40 || i == 49) ? 1 / sqrt(3) : 0, 1e-9);
}

static void test_hog_bins_by_angle(void **state)
{
    (void)state;
    /* a ramp of slope (dr, dc) has one gradient everywhere inside: bin floor(angle/20), the
     * angle being degrees(atan2) mod 180 as skimage rounds it (bin -1: in no bin) */
    const double deg = M_PI / 180;
    struct { double dr, dc; int bin; } cases[] = {
        {0, 1, 0}, {0, -1, 0}, {1, 0, 4}, {-1, 0, 4}, {1, 1, 2}, /* 45° */
        {1, -1, 6},                                              /* 135° */
        {-1, 1, 6},                                              /* -45° = 135° */
        {tan(20.0001 * deg), 1, 1}, {tan(19.9999 * deg), 1, 0},  /* either side of 20° */
        {tan(159.9999 * deg), 1, 7}, {tan(160.0001 * deg), 1, 8},
        /* within 1e-9 of a boundary: decided by the atan2 rule itself */
        {tan(20 * deg + 1e-12), 1, 1}, {tan(20 * deg - 1e-12), 1, 0},
        {1e-12, 1, 0}, {-1e-12, 1, 8}, {1e-12, -1, 8}, {-1e-12, -1, 0},
    };
    double img[144], f[81];
    float hist[81];
    for (size_t k = 0; k < N_OF(cases); k++) {
        for (int r = 0; r < 12; r++)
            for (int c = 0; c < 12; c++) img[r * 12 + c] = cases[k].dr * r + cases[k].dc * c;
        map_hog_features(img, 12, 12, 4, f, hist);
        /* the centre cell (1,1) sits at block offset (1·3 + 1)·9: its only nonzero bin */
        int nz = -1;
        for (int b = 0; b < 9; b++)
            if (f[36 + b] > 0) nz = nz == -1 ? b : 99;
        if (nz != cases[k].bin) print_error("case %zu: bin %d, want %d\n", k, nz, cases[k].bin);
        assert_int_equal(nz, cases[k].bin);
    }
}

static void test_hog_cell_rule_and_small_images(void **state)
{
    (void)state;
    assert_int_equal(metric_hog_cell(12, 12), 4);
    assert_int_equal(metric_hog_cell(28, 28), 4);
    assert_int_equal(metric_hog_cell(90, 200), 5);   /* 90/18 = 5 */
    assert_int_equal(metric_hog_cell(224, 224), 12); /* 12.44 */
    assert_int_equal(metric_hog_cell(287, 287), 16);
    assert_int_equal(metric_hog_cell(299, 299), 16); /* the paper's 16 px, not round(16.6) */
    assert_int_equal(metric_hog_cell(1000, 600), 16);
    assert_int_equal(map_hog_feature_count(11, 40, 4), 0);
    assert_int_equal(map_hog_feature_count(20, 13, 4), 3 * 1 * 81);
    assert_int_equal(metric_upsample_factor(7, 7), 2);
    assert_int_equal(metric_upsample_factor(5, 9), 3);
    assert_int_equal(metric_upsample_factor(1, 30), 12);
    assert_int_equal(metric_upsample_factor(12, 12), 1);
}

static void test_metric_hog_by_hand(void **state)
{
    (void)state;
    double v[144], h[144];
    step_image(v, 1);
    step_image(h, 0);
    int why = -1, cell = 0, up = 0;
    NEAR(metric_hog(v, v, 12, 12, NULL, &why, &cell, &up), 1, 2.3e-16);
    assert_int_equal(cell, 4);
    assert_int_equal(up, 1);
    /* features: three equal values each, at different places (the -1/26 case above) */
    NEAR(metric_hog(v, h, 12, 12, NULL, &why, &cell, &up), -1.0 / 26, 1e-12);
    assert_int_equal(why, SIM_OK);
}

/* ---- SSIM ---------------------------------------------------------------------------------------- */

static void test_ssim_of_identical_maps_is_exactly_one(void **state)
{
    (void)state;
    double a[400];
    lcg_fill(a, 400, 21);
    int why = -1, up = 0;
    assert_true(metric_ssim(a, a, 20, 20, NULL, &why, &up) == 1.0);
    assert_int_equal(why, SIM_OK);
    assert_int_equal(up, 1);
}

static void test_ssim_ignores_affine_rescaling(void **state)
{
    (void)state;
    /* min-max normalization first: a and 3a + 1 are the same image */
    double a[256], b[256], a3[256];
    lcg_fill(a, 256, 22);
    lcg_fill(b, 256, 23);
    for (int i = 0; i < 256; i++) a3[i] = 3 * a[i] + 1;
    NEAR(metric_ssim(a3, b, 16, 16, NULL, NULL, NULL), metric_ssim(a, b, 16, 16, NULL, NULL, NULL), 1e-12);
}

/* golden values: skimage 0.19 structural_similarity / feature.hog + scipy rankdata (see the top) */
static void test_ssim_and_hog_golden_values(void **state)
{
    (void)state;
    const struct { int H, W; uint32_t sa, sb; double ssim, hog; int up; } g[] = {
        {16, 16, 1, 2, 0.6132732674536929, 0.06444574704757601, 1},
        {7, 7, 3, 4, 0.5503844548051132, 0.38113812749699916, 2},
        {20, 13, 5, 6, 0.6755364665120259, 0.2522805100511712, 1},
    };
    static double a[400], b[400];
    for (size_t k = 0; k < N_OF(g); k++) {
        size_t n = (size_t)g[k].H * g[k].W;
        lcg_fill(a, n, g[k].sa);
        lcg_fill(b, n, g[k].sb);
        for (size_t i = 0; i < n; i++) b[i] = 0.5 * a[i] + 0.5 * b[i];
        int up = 0, cell = 0, why = -1;
        NEAR(metric_ssim(a, b, g[k].H, g[k].W, NULL, &why, &up), g[k].ssim, 1e-12);
        assert_int_equal(up, g[k].up);
        NEAR(metric_hog(a, b, g[k].H, g[k].W, NULL, &why, &cell, &up), g[k].hog, 1e-12);
        assert_int_equal(cell, 4);
    }
}

static void test_image_metrics_of_constant_maps_are_nan(void **state)
{
    (void)state;
    double a[196], k[196];
    lcg_fill(a, 196, 30);
    for (int i = 0; i < 196; i++) k[i] = 0.5;
    int why = -1;
    assert_true(isnan(metric_ssim(a, k, 14, 14, NULL, &why, NULL)));
    assert_int_equal(why, SIM_CONSTANT | SIM_MAP_B);
    assert_true(isnan(metric_hog(k, a, 14, 14, NULL, &why, NULL, NULL)));
    assert_int_equal(why, SIM_CONSTANT);
    assert_true(isnan(metric_ssim(a, a, 0, 14, NULL, &why, NULL)));
    assert_int_equal(why, SIM_EMPTY);
    a[5] = INFINITY;
    assert_true(isnan(metric_hog(a, k, 14, 14, NULL, &why, NULL, NULL)));
    assert_int_equal(why, SIM_NONFINITE);
}

static void test_gray_image_upsamples_small_maps_exactly(void **state)
{
    (void)state;
    /* 2 x 2 -> factor 6: coordinates (o + 0.5)/6 − 0.5 = -5/12 .. 17/12, flat where both
     * neighbours are equal; min-max to 0..1 */
    const double m[] = {0, 1, 0, 1};
    static double g[144];
    assert_int_equal(map_gray_image(m, 2, 2, g), SIM_OK);
    for (int r = 0; r < 12; r++) { /* every row the same: the columns are flat vertically */
        assert_memory_equal(g + r * 12, g, 12 * sizeof(double));
    }
    const double row[12] = {0, 0, 0, 1 / 12., 3 / 12., 5 / 12., 7 / 12., 9 / 12., 11 / 12., 1, 1, 1};
    for (int c = 0; c < 12; c++) NEAR(g[c], row[c], 1e-12);
    const double k[] = {2, 2, 2, 2};
    assert_int_equal(map_gray_image(k, 2, 2, g), SIM_CONSTANT);
}

/* ---- entropy ---------------------------------------------------------------------------------- */

static void test_entropy_by_hand(void **state)
{
    (void)state;
    float x[100];
    int why = -1;
    for (int i = 0; i < 100; i++) x[i] = (float)i; /* one value per bin */
    NEAR(map_entropy(x, 100, &why), log(100), 1e-13);
    assert_int_equal(why, SIM_OK);
    for (int i = 0; i < 100; i++) x[i] = (float)(i % 2) * 3 - 1; /* two halves */
    NEAR(map_entropy(x, 100, NULL), log(2), 1e-15);
    for (int i = 0; i < 100; i++) x[i] = 4.5f;
    assert_true(map_entropy(x, 100, NULL) == 0.0);
    /* 3 in the first bin, 1 in the last: −(¾ ln ¾ + ¼ ln ¼) */
    const float y[] = {0, 0.001f, 0.002f, 1};
    NEAR(map_entropy(y, 4, NULL), -(0.75 * log(0.75) + 0.25 * log(0.25)), 1e-15);
    assert_true(isnan(map_entropy(y, 0, &why)));
    assert_int_equal(why, SIM_EMPTY);
    x[3] = NAN;
    assert_true(isnan(map_entropy(x, 100, &why)));
    assert_int_equal(why, SIM_NONFINITE);
}

static void test_entropy_rise(void **state)
{
    (void)state;
    int why = -1;
    NEAR(metric_entropy_rise(log(2), log(100), &why), (log(100) - log(2)) / log(2), 1e-15);
    assert_int_equal(why, SIM_OK);
    assert_true(isnan(metric_entropy_rise(0, 1, &why))); /* constant original map */
    assert_int_equal(why, SIM_CONSTANT);
    assert_true(isnan(metric_entropy_rise(1, NAN, &why)));
    assert_int_equal(why, SIM_NONFINITE | SIM_MAP_B);
}

/* ---- the random floor ------------------------------------------------------------------------- */

static void test_floor_map_is_the_seeded_rng(void **state)
{
    (void)state;
    enum { N = 20000 };
    static float m[N], m2[N];
    map_fill_normal(m, N, 42, 3);
    rng_t r;
    rng_seed(&r, 42, 3);
    for (int i = 0; i < N; i++) assert_true(m[i] == (float)rng_normal(&r));
    map_fill_normal(m2, N, 42, 4);
    assert_memory_not_equal(m, m2, sizeof m);
    double s = 0, s2 = 0;
    for (int i = 0; i < N; i++) {
        s += m[i];
        s2 += (double)m[i] * m[i];
    }
    NEAR(s / N, 0, 0.03);          /* stdev of the mean: 0.007 */
    NEAR(s2 / N, 1, 0.05);
}

/* ---- sim_compare -------------------------------------------------------------------------------- */

static void test_sim_compare_identical_maps_are_one(void **state)
{
    (void)state;
    static float a[3 * 28 * 28];
    map_fill_normal(a, N_OF(a), 1, 0);
    sim_t s;
    assert_int_equal(sim_compare(a, a, 3, 28, 28, NULL, &s), SIM_OK);
    NEAR(s.spearman, 1, 2.3e-16);
    NEAR(s.spearman_abs, 1, 2.3e-16);
    NEAR(s.hog, 1, 2.3e-16);
    assert_true(s.ssim == 1.0); /* each term is exactly 1 (A1 == B1, A2 == B2 bit for bit) */
    assert_int_equal(s.hog_cell, 4);
    assert_int_equal(s.upsample, 1);
    assert_int_equal(s.why_spearman | s.why_spearman_abs | s.why_ssim | s.why_hog, SIM_OK);
}

static void test_sim_compare_scratch_reuse_and_alignment(void **state)
{
    (void)state;
    static float a[7 * 7], b[7 * 7], c[64 * 64], d[64 * 64];
    map_fill_normal(a, N_OF(a), 2, 0);
    map_fill_normal(b, N_OF(b), 2, 1);
    map_fill_normal(c, N_OF(c), 2, 2);
    map_fill_normal(d, N_OF(d), 2, 3);
    size_t big = sim_scratch_bytes(64, 64);
    assert_true(big >= sim_scratch_bytes(7, 7));
    assert_int_equal(sim_scratch_bytes(0, 7), 0);
    unsigned char *scratch = malloc(big + 1);
    assert_non_null(scratch);
    sim_t own, lent, again;
    /* no scratch, an odd address, and the same block reused for another shape: same numbers */
    sim_compare(a, b, 0, 7, 7, NULL, &own);
    sim_compare(a, b, 0, 7, 7, scratch + 1, &lent);
    assert_memory_equal(&own, &lent, sizeof own);
    assert_int_equal(own.upsample, 2);
    sim_compare(c, d, 0, 64, 64, scratch + 1, &lent);
    sim_compare(c, d, 0, 64, 64, NULL, &own);
    assert_memory_equal(&own, &lent, sizeof own);
    sim_compare(a, b, 0, 7, 7, scratch + 1, &again);
    sim_compare(a, b, 0, 7, 7, NULL, &own);
    assert_memory_equal(&own, &again, sizeof own);
    free(scratch);
}

static void test_sim_compare_constant_map_is_null_not_zero(void **state)
{
    (void)state;
    static float a[28 * 28], k[28 * 28];
    map_fill_normal(a, N_OF(a), 3, 0);
    for (size_t i = 0; i < N_OF(k); i++) k[i] = 0.25f;
    sim_t s;
    assert_int_equal(sim_compare(a, k, 0, 28, 28, NULL, &s), SIM_OK);
    assert_true(isnan(s.spearman) && isnan(s.spearman_abs) && isnan(s.ssim) && isnan(s.hog));
    assert_int_equal(s.why_spearman_abs, SIM_CONSTANT | SIM_MAP_B);
    assert_int_equal(s.why_ssim, SIM_CONSTANT | SIM_MAP_B);
    assert_int_equal(s.why_hog, SIM_CONSTANT | SIM_MAP_B);
    /* diverging: P99 of a constant 0.25 map is 0.25, so it normalizes; the ranks are constant */
    assert_int_equal(s.why_spearman, SIM_CONSTANT | SIM_MAP_B);
    assert_int_equal(sim_compare(a, k, 0, 0, 28, NULL, &s), SIM_EMPTY);
    assert_int_equal(s.why_hog, SIM_EMPTY);
    assert_true(isnan(s.hog));
}

static void test_too_large_maps_are_refused_before_reading(void **state)
{
    (void)state;
    /* a 1 x 10^8 map would be upsampled x12: 1.2e9 values, over SIM_MAX_PIXELS; the maps are
     * never read (NULL here) and nothing is allocated */
    sim_t s;
    assert_int_equal(sim_compare(NULL, NULL, 0, 1, 100000000, NULL, &s), SIM_TOO_LARGE);
    assert_true(isnan(s.spearman) && isnan(s.hog));
    assert_int_equal(s.why_ssim, SIM_TOO_LARGE);
    assert_int_equal(sim_scratch_bytes(1, 100000000), 0);
    assert_int_equal(sim_scratch_bytes(20000, 20000), 0);
    assert_true(sim_scratch_bytes(16384, 16384) > 0); /* 2^28 exactly is allowed */
    int why = -1;
    assert_true(isnan(metric_spearman(NULL, NULL, (size_t)1 << 31, NULL, &why)));
    assert_int_equal(why, SIM_TOO_LARGE);
    assert_true(isnan(metric_ssim(NULL, NULL, 3, 40000000, NULL, &why, NULL)));
    assert_int_equal(why, SIM_TOO_LARGE);
    assert_non_null(strstr(sim_why_text(SIM_TOO_LARGE | SIM_MAP_B), "too large"));
}

static void test_sim_compare_mixed_edge_map(void **state)
{
    (void)state;
    /* a (3,H,W) gradient against a 2-D Sobel map (edge_spearman, edge_ssim): each map is
     * normalized by its own rule, then the metrics are the plain ones */
    enum { H = 20, W = 20, N = H * W };
    static float g[3 * N], gray[N], e[N];
    map_fill_normal(g, 3 * N, 4, 0);
    for (int i = 0; i < N; i++) gray[i] = (float)((i % W) > 9) + 0.1f * g[i];
    maps_sobel(gray, H, W, e);
    sim_t s;
    assert_int_equal(sim_compare_mixed(g, 3, e, 0, H, W, NULL, &s), SIM_OK);
    static double na[N], ne[N], work[N];
    assert_int_equal(map_norm_abs(g, 3, H, W, na, work), SIM_OK);
    assert_int_equal(map_norm_abs(e, 0, H, W, ne, work), SIM_OK);
    assert_true(s.spearman_abs == metric_spearman(na, ne, N, NULL, NULL));
    assert_true(s.ssim == metric_ssim(na, ne, H, W, NULL, NULL, NULL));
    assert_true(s.hog == metric_hog(na, ne, H, W, NULL, NULL, NULL, NULL));
    assert_int_equal(map_norm_diverging(g, 3, H, W, na, work), SIM_OK);
    assert_int_equal(map_norm_diverging(e, 0, H, W, ne, work), SIM_OK);
    assert_true(s.spearman == metric_spearman(na, ne, N, NULL, NULL));
}

static void test_sim_compare_edge_equals_mixed_for_the_edge_metrics(void **state)
{
    (void)state;
    /* sanity steps read only spearman_abs and ssim of the edge comparison: the short form gives
     * the same values and says the others were not computed */
    enum { H = 28, W = 28, N = H * W };
    static float g[3 * N], gray[N], e[N];
    map_fill_normal(g, 3 * N, 5, 0);
    for (int i = 0; i < N; i++) gray[i] = (float)((i / W) > 13) + 0.1f * g[i];
    maps_sobel(gray, H, W, e);
    for (int C = 0; C <= 3; C += 3) {
        sim_t full, edge;
        assert_int_equal(sim_compare_mixed(g, C, e, 0, H, W, NULL, &full), SIM_OK);
        assert_int_equal(sim_compare_edge(g, C, e, H, W, NULL, &edge), SIM_OK);
        assert_true(edge.spearman_abs == full.spearman_abs);
        assert_true(edge.ssim == full.ssim);
        assert_int_equal(edge.why_spearman_abs, full.why_spearman_abs);
        assert_int_equal(edge.why_ssim, full.why_ssim);
        assert_true(isnan(edge.hog) && isnan(edge.spearman));
        assert_int_equal(edge.why_hog, SIM_NOT_COMPUTED);
        assert_int_equal(edge.why_spearman, SIM_NOT_COMPUTED);
        assert_string_equal(sim_why_text(edge.why_hog), "not computed");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spearman_ties_share_their_mean_rank),
        cmocka_unit_test(test_spearman_is_rank_based),
        cmocka_unit_test(test_spearman_two_opposite_step_features_is_minus_one_26th),
        cmocka_unit_test(test_spearman_equals_naive_ranks_with_ties),
        cmocka_unit_test(test_spearman_values_equal_in_their_top_bits),
        cmocka_unit_test(test_spearman_undefined_is_nan_with_reason),
        cmocka_unit_test(test_percentile_linear_by_hand),
        cmocka_unit_test(test_percentile_equals_sorted_reference),
        cmocka_unit_test(test_norm_abs_2d_divides_by_max_abs),
        cmocka_unit_test(test_norm_abs_3d_clips_at_p99),
        cmocka_unit_test(test_norm_diverging_by_hand),
        cmocka_unit_test(test_normalization_failures_have_reasons),
        cmocka_unit_test(test_hog_of_a_vertical_step_edge),
        cmocka_unit_test(test_hog_bins_by_angle),
        cmocka_unit_test(test_hog_cell_rule_and_small_images),
        cmocka_unit_test(test_metric_hog_by_hand),
        cmocka_unit_test(test_ssim_of_identical_maps_is_exactly_one),
        cmocka_unit_test(test_ssim_ignores_affine_rescaling),
        cmocka_unit_test(test_ssim_and_hog_golden_values),
        cmocka_unit_test(test_image_metrics_of_constant_maps_are_nan),
        cmocka_unit_test(test_gray_image_upsamples_small_maps_exactly),
        cmocka_unit_test(test_entropy_by_hand),
        cmocka_unit_test(test_entropy_rise),
        cmocka_unit_test(test_floor_map_is_the_seeded_rng),
        cmocka_unit_test(test_sim_compare_identical_maps_are_one),
        cmocka_unit_test(test_sim_compare_scratch_reuse_and_alignment),
        cmocka_unit_test(test_sim_compare_constant_map_is_null_not_zero),
        cmocka_unit_test(test_too_large_maps_are_refused_before_reading),
        cmocka_unit_test(test_sim_compare_mixed_edge_map),
        cmocka_unit_test(test_sim_compare_edge_equals_mixed_for_the_edge_metrics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
