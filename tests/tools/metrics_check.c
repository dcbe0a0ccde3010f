/* metrics_check — engine/sanity/metrics.c on maps read from files, results as JSON on stdout, for
 * tests/metrics/test_metrics_vs_scipy.py (which recomputes everything with scipy, skimage, numpy).
 *
 * Maps are raw little-endian arrays: float32, or float64 when the file name ends in ".f64".
 *
 *   metrics_check compare A B C H W            sim_compare (C = 0: 2-D maps)
 *   metrics_check mixed A Ca B Cb H W          sim_compare_mixed
 *   metrics_check norm-abs A C H W             map_norm_abs -> {"why", "map": [...]}
 *   metrics_check norm-div A C H W             map_norm_diverging
 *   metrics_check percentile A N Q             map_percentile_linear
 *   metrics_check spearman A B N               metric_spearman
 *   metrics_check ssim A B H W                 metric_ssim (2-D maps as given)
 *   metrics_check hog A B H W                  metric_hog
 *   metrics_check hog-features A H W CELL      map_hog_features -> {"features": [...]}
 *   metrics_check gray A H W                   map_gray_image -> {"why", "H", "W", "map": [...]}
 *   metrics_check entropy A N                  map_entropy
 *   metrics_check sobel G H W                  maps_sobel -> {"map": [...]}
 *   metrics_check floor SEED STREAM N          map_fill_normal -> {"map": [...]}
 *   metrics_check bench C H W ITERS            mean time of sim_compare on seeded random maps
 *
 * Exit status 0 with a JSON object, 2 on bad usage or unreadable input (message on stderr). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/explain/methods.h"
#include "engine/sanity/metrics.h"

static void die(const char *msg, const char *arg)
{
    fprintf(stderr, "metrics_check: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
    exit(2);
}

static long to_long(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end) die("not an integer", s);
    return v;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* n values from path (float32, or float64 for *.f64), as doubles */
static double *read_d(const char *path, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open", path);
    int f64 = ends_with(path, ".f64");
    size_t el = f64 ? 8 : 4;
    unsigned char *raw = malloc(n * el + 1);
    double *out = malloc(sizeof(double) * (n ? n : 1));
    if (!raw || !out) die("out of memory", NULL);
    size_t got = fread(raw, el, n, f);
    int extra = fgetc(f) != EOF;
    fclose(f);
    if (got != n || extra) die("file size does not match the shape", path);
    for (size_t i = 0; i < n; i++) {
        if (f64) memcpy(&out[i], raw + 8 * i, 8);
        else {
            float v;
            memcpy(&v, raw + 4 * i, 4);
            out[i] = v;
        }
    }
    free(raw);
    return out;
}

static float *read_f(const char *path, size_t n)
{
    if (ends_with(path, ".f64")) die("this mode takes float32 maps", path);
    double *d = read_d(path, n);
    float *f = malloc(sizeof(float) * (n ? n : 1));
    if (!f) die("out of memory", NULL);
    for (size_t i = 0; i < n; i++) f[i] = (float)d[i];
    free(d);
    return f;
}

static void put_num(double v)
{
    if (isnan(v) || isinf(v)) fputs("null", stdout);
    else printf("%.17g", v);
}

static void put_field(const char *key, double v, int why, int comma)
{
    printf("\"%s\": ", key);
    put_num(v);
    printf(", \"%s_why\": %d, \"%s_reason\": \"%s\"%s", key, why, key, sim_why_text(why), comma ? ", " : "");
}

static void put_array(const char *key, const double *v, size_t n)
{
    printf("\"%s\": [", key);
    for (size_t i = 0; i < n; i++) {
        if (i) putchar(',');
        put_num(v[i]);
    }
    putchar(']');
}

static void put_sim(const sim_t *s, int rc)
{
    printf("{\"status\": %d, ", rc);
    put_field("spearman", s->spearman, s->why_spearman, 1);
    put_field("spearman_abs", s->spearman_abs, s->why_spearman_abs, 1);
    put_field("ssim", s->ssim, s->why_ssim, 1);
    put_field("hog", s->hog, s->why_hog, 1);
    printf("\"hog_cell\": %d, \"upsample\": %d}\n", s->hog_cell, s->upsample);
}

static size_t planes(long C) { return C > 0 ? (size_t)C : 1; }

static double clock_s(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc < 2) die("usage: metrics_check MODE ARGS... (see the top of tests/tools/metrics_check.c)", NULL);
    const char *mode = argv[1];
#define NEED(k)                                                    \
    do {                                                           \
        if (argc != (k) + 2) die("wrong number of arguments for", mode); \
    } while (0)

    if (!strcmp(mode, "compare") || !strcmp(mode, "mixed")) {
        int mixed = !strcmp(mode, "mixed");
        NEED(mixed ? 6 : 5);
        /* compare A B C H W | mixed A Ca B Cb H W */
        const char *pa = argv[2], *pb = mixed ? argv[4] : argv[3];
        long Ca = to_long(argv[mixed ? 3 : 4]), Cb = mixed ? to_long(argv[5]) : Ca;
        long H = to_long(argv[mixed ? 6 : 5]), W = to_long(argv[mixed ? 7 : 6]);
        if (Ca < 0 || Cb < 0 || H <= 0 || W <= 0) die("bad shape", NULL);
        size_t n = (size_t)H * W;
        float *a = read_f(pa, planes(Ca) * n), *b = read_f(pb, planes(Cb) * n);
        void *scratch = malloc(sim_scratch_bytes((int)H, (int)W));
        if (!scratch) die("out of memory", NULL);
        sim_t s;
        int rc = sim_compare_mixed(a, (int)Ca, b, (int)Cb, (int)H, (int)W, scratch, &s);
        put_sim(&s, rc);
        free(scratch);
        free(a);
        free(b);
    } else if (!strcmp(mode, "norm-abs") || !strcmp(mode, "norm-div")) {
        NEED(4);
        long C = to_long(argv[3]), H = to_long(argv[4]), W = to_long(argv[5]);
        if (C < 0 || H <= 0 || W <= 0) die("bad shape", NULL);
        size_t n = (size_t)H * W;
        float *a = read_f(argv[2], planes(C) * n);
        double *out = malloc(sizeof(double) * n), *work = malloc(sizeof(double) * n);
        if (!out || !work) die("out of memory", NULL);
        int why = !strcmp(mode, "norm-abs") ? map_norm_abs(a, (int)C, (int)H, (int)W, out, work)
                                            : map_norm_diverging(a, (int)C, (int)H, (int)W, out, work);
        printf("{\"why\": %d, \"reason\": \"%s\", ", why, sim_why_text(why));
        put_array("map", out, n);
        puts("}");
        free(a);
        free(out);
        free(work);
    } else if (!strcmp(mode, "percentile")) {
        NEED(3);
        long n = to_long(argv[3]);
        if (n < 0) die("bad size", NULL);
        double *x = read_d(argv[2], (size_t)n), q = atof(argv[4]);
        printf("{\"value\": ");
        put_num(map_percentile_linear(x, (size_t)n, q));
        puts("}");
        free(x);
    } else if (!strcmp(mode, "spearman")) {
        NEED(3);
        long n = to_long(argv[4]);
        if (n < 0) die("bad size", NULL);
        double *a = read_d(argv[2], (size_t)n), *b = read_d(argv[3], (size_t)n);
        int why;
        double r = metric_spearman(a, b, (size_t)n, NULL, &why);
        putchar('{');
        put_field("value", r, why, 0);
        puts("}");
        free(a);
        free(b);
    } else if (!strcmp(mode, "ssim") || !strcmp(mode, "hog")) {
        NEED(4);
        long H = to_long(argv[4]), W = to_long(argv[5]);
        if (H <= 0 || W <= 0) die("bad shape", NULL);
        double *a = read_d(argv[2], (size_t)H * W), *b = read_d(argv[3], (size_t)H * W);
        int why, up, cell = 0;
        double r = !strcmp(mode, "ssim") ? metric_ssim(a, b, (int)H, (int)W, NULL, &why, &up)
                                         : metric_hog(a, b, (int)H, (int)W, NULL, &why, &cell, &up);
        putchar('{');
        put_field("value", r, why, 1);
        printf("\"upsample\": %d, \"hog_cell\": %d}\n", up, cell);
        free(a);
        free(b);
    } else if (!strcmp(mode, "hog-features")) {
        NEED(4);
        long H = to_long(argv[3]), W = to_long(argv[4]), cell = to_long(argv[5]);
        if (H <= 0 || W <= 0 || cell <= 0) die("bad shape", NULL);
        double *img = read_d(argv[2], (size_t)H * W);
        size_t nf = map_hog_feature_count((int)H, (int)W, (int)cell);
        double *feat = malloc(sizeof(double) * (nf ? nf : 1));
        float *hist = malloc(sizeof(float) * (size_t)(H / cell) * (W / cell) * SIM_HOG_ORIENTATIONS + 1);
        if (!feat || !hist) die("out of memory", NULL);
        size_t got = map_hog_features(img, (int)H, (int)W, (int)cell, feat, hist);
        printf("{\"count\": %zu, ", got);
        put_array("features", feat, got);
        puts("}");
        free(img);
        free(feat);
        free(hist);
    } else if (!strcmp(mode, "gray")) {
        NEED(3);
        long H = to_long(argv[3]), W = to_long(argv[4]);
        if (H <= 0 || W <= 0) die("bad shape", NULL);
        int f = metric_upsample_factor((int)H, (int)W);
        size_t nu = (size_t)H * f * W * f;
        double *m = read_d(argv[2], (size_t)H * W), *g = malloc(sizeof(double) * nu);
        if (!g) die("out of memory", NULL);
        int why = map_gray_image(m, (int)H, (int)W, g);
        printf("{\"why\": %d, \"H\": %ld, \"W\": %ld, ", why, H * f, W * f);
        put_array("map", g, why == SIM_OK ? nu : 0);
        puts("}");
        free(m);
        free(g);
    } else if (!strcmp(mode, "entropy")) {
        NEED(2);
        long n = to_long(argv[3]);
        if (n < 0) die("bad size", NULL);
        float *a = read_f(argv[2], (size_t)n);
        int why;
        double h = map_entropy(a, (size_t)n, &why);
        putchar('{');
        put_field("value", h, why, 0);
        puts("}");
        free(a);
    } else if (!strcmp(mode, "sobel")) {
        NEED(3);
        long H = to_long(argv[3]), W = to_long(argv[4]);
        if (H <= 0 || W <= 0) die("bad shape", NULL);
        size_t n = (size_t)H * W;
        float *g = read_f(argv[2], n), *e = malloc(sizeof(float) * n);
        double *d = malloc(sizeof(double) * n);
        if (!e || !d) die("out of memory", NULL);
        maps_sobel(g, (int)H, (int)W, e);
        for (size_t i = 0; i < n; i++) d[i] = e[i];
        putchar('{');
        put_array("map", d, n);
        puts("}");
        free(g);
        free(e);
        free(d);
    } else if (!strcmp(mode, "floor")) {
        NEED(3);
        long n = to_long(argv[4]);
        if (n < 0) die("bad size", NULL);
        float *m = malloc(sizeof(float) * (size_t)(n ? n : 1));
        double *d = malloc(sizeof(double) * (size_t)(n ? n : 1));
        if (!m || !d) die("out of memory", NULL);
        map_fill_normal(m, (size_t)n, strtoull(argv[2], NULL, 10), strtoull(argv[3], NULL, 10));
        for (long i = 0; i < n; i++) d[i] = m[i];
        putchar('{');
        put_array("map", d, (size_t)n);
        puts("}");
        free(m);
        free(d);
    } else if (!strcmp(mode, "bench")) {
        NEED(4);
        long C = to_long(argv[2]), H = to_long(argv[3]), W = to_long(argv[4]), iters = to_long(argv[5]);
        if (C < 0 || H <= 0 || W <= 0 || iters <= 0) die("bad arguments", NULL);
        size_t n = planes(C) * (size_t)H * W;
        float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
        size_t bytes = sim_scratch_bytes((int)H, (int)W);
        void *scratch = malloc(bytes);
        if (!a || !b || !scratch) die("out of memory", NULL);
        /* correlated pair, like an original and a mildly randomized map */
        map_fill_normal(a, n, 1, 0);
        map_fill_normal(b, n, 1, 1);
        for (size_t i = 0; i < n; i++) b[i] = 0.7f * a[i] + 0.3f * b[i];
        sim_t s;
        sim_compare(a, b, (int)C, (int)H, (int)W, scratch, &s); /* warm-up */
        /* wall time, and this thread's CPU time (what the 2 shared cores do not inflate) */
        double best = INFINITY, sum = 0, cpu0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
        for (long i = 0; i < iters; i++) {
            double t0 = clock_s(CLOCK_MONOTONIC);
            sim_compare(a, b, (int)C, (int)H, (int)W, scratch, &s);
            double dt = clock_s(CLOCK_MONOTONIC) - t0;
            sum += dt;
            if (dt < best) best = dt;
        }
        double cpu = clock_s(CLOCK_THREAD_CPUTIME_ID) - cpu0;
        printf("{\"C\": %ld, \"H\": %ld, \"W\": %ld, \"iters\": %ld, \"scratch_bytes\": %zu, "
               "\"cpu_us\": %.1f, \"mean_us\": %.1f, \"min_us\": %.1f, \"result\": ",
               C, H, W, iters, bytes, 1e6 * cpu / (double)iters, 1e6 * sum / (double)iters, 1e6 * best);
        put_sim(&s, 0);
        puts("}");
        free(a);
        free(b);
        free(scratch);
    } else {
        die("unknown mode", mode);
    }
    return 0;
}
