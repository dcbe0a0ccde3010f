/* test_render — server/render.c against independent references: matplotlib's colormaps,
 * numpy.percentile, torch F.interpolate and the whole heatmap pipeline recomputed in Python
 * (expected values in tests/data/render/render_fixtures.h, from gen_fixtures.py there), RFC 4648's
 * base64 vectors, and PNGs read back with libpng. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>
#include <png.h>

#include "render.h"
#include "tests/data/render/render_fixtures.h"

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* the generator's LCG: x <- 1664525 x + 1013904223; uniform (x >> 8) / 2^24, ties x >> 29 */
static void lcg_fill(float *v, int n, int kind, unsigned seed)
{
    uint32_t x = seed;
    for (int i = 0; i < n; i++) {
        x = 1664525u * x + 1013904223u;
        v[i] = kind == 0 ? (float)(x >> 8) / 16777216.0f : (float)(x >> 29);
    }
}

/* decode a PNG with libpng's simplified API into malloc'd pixels of `channels` (1 or 3) */
static uint8_t *png_read(const uint8_t *png, size_t len, int channels, int *w, int *h)
{
    png_image pi;
    memset(&pi, 0, sizeof pi);
    pi.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&pi, png, len)) return NULL;
    pi.format = channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    uint8_t *px = malloc(PNG_IMAGE_SIZE(pi));
    if (!px || !png_image_finish_read(&pi, NULL, px, 0, NULL)) {
        free(px);
        png_image_free(&pi);
        return NULL;
    }
    *w = (int)pi.width;
    *h = (int)pi.height;
    return px;
}

/* the PNG's IHDR colour type and bit depth, straight from the bytes */
static void png_header(const uint8_t *png, size_t len, int *depth, int *color_type)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    assert_true(len > 33);
    assert_memory_equal(png, sig, 8);
    assert_memory_equal(png + 12, "IHDR", 4);
    *depth = png[24];
    *color_type = png[25];
}

static int count_diff(const uint8_t *a, const unsigned char *b, size_t n)
{
    int d = 0;
    for (size_t i = 0; i < n; i++) d += a[i] != b[i];
    return d;
}

/* ---- colormaps ------------------------------------------------------------------------------- */

static void test_colormap_tables_equal_matplotlib(void **state)
{
    (void)state;
    assert_int_equal(colormap_count(), (int)N_OF(fx_cmaps));
    for (size_t c = 0; c < N_OF(fx_cmaps); c++) {
        const uint8_t *t = colormap_table(fx_cmaps[c].name);
        assert_non_null(t);
        assert_true(colormap_valid(fx_cmaps[c].name));
        assert_string_equal(colormap_name((int)c), fx_cmaps[c].name);
        for (int i = 0; i < FX_CMAP_NIDX; i++) assert_memory_equal(t + 3 * fx_cmap_idx[i], fx_cmaps[c].at_idx[i], 3);
    }
    assert_null(colormap_name(-1));
    assert_null(colormap_name(colormap_count()));
}

static void test_colormap_unknown_names_are_invalid(void **state)
{
    (void)state;
    const char *bad[] = {"Jet", "", "hot", "jet ", "viridis_r", "grey"};
    for (size_t i = 0; i < N_OF(bad); i++) {
        assert_null(colormap_table(bad[i]));
        assert_false(colormap_valid(bad[i]));
    }
    assert_null(colormap_table(NULL));
}

/* A 1 x N map holding 0 and 1 normalizes to itself at clip_percentile 100, so each pixel shows
 * the colour the renderer picks for that float: it must be matplotlib's Colormap.__call__ one. */
static void test_colormap_float_lookup_equals_matplotlib_call(void **state)
{
    (void)state;
    for (size_t c = 0; c < N_OF(fx_cmaps); c++) {
        render_opts_t o;
        render_opts_default(&o);
        o.colormap = fx_cmaps[c].name;
        o.clip_percentile = 100;
        image_t im;
        assert_int_equal(render_heatmap_rgb(fx_cmap_v, 1, FX_CMAP_NV, &o, &im), ENG_OK);
        assert_int_equal(im.width, FX_CMAP_NV);
        assert_int_equal(im.height, 1);
        assert_int_equal(im.channels, 3);
        for (int i = 0; i < FX_CMAP_NV; i++) assert_memory_equal(im.data + 3 * i, fx_cmaps[c].at_v[i], 3);
        free(im.data);
    }
}

/* ---- percentile and normalization ------------------------------------------------------------ */

static void test_percentile_equals_numpy(void **state)
{
    (void)state;
    for (size_t c = 0; c < N_OF(fx_pct); c++) {
        int n = fx_pct[c].n;
        float *src = malloc(sizeof(float) * (size_t)n), *buf = malloc(sizeof(float) * (size_t)n);
        assert_non_null(src);
        assert_non_null(buf);
        if (fx_pct[c].data) memcpy(src, fx_pct[c].data, sizeof(float) * (size_t)n);
        else lcg_fill(src, n, fx_pct[c].kind, fx_pct[c].seed);
        for (int k = 0; k < FX_PCT_NP; k++) {
            memcpy(buf, src, sizeof(float) * (size_t)n);
            double got = map_percentile(buf, (size_t)n, fx_pct_p[k]), want = fx_pct[c].expect[k];
            if (fabs(got - want) > 1e-12 * (1.0 + fabs(want))) /* bit-equal at -O2; FMA could move an ulp */
                fail_msg("%s p=%g: got %.17g, numpy %.17g", fx_pct[c].name, fx_pct_p[k], got, want);
        }
        free(src);
        free(buf);
    }
}

static void test_percentile_clamps_p_and_handles_empty(void **state)
{
    (void)state;
    float v[4] = {3, 1, 4, 2};
    assert_true(map_percentile(v, 0, 50) == 0.0);
    assert_true(map_percentile(v, 4, -5) == 1.0);
    assert_true(map_percentile(v, 4, 250) == 4.0);
    assert_true(map_percentile(v, 4, NAN) == 1.0);
}

static void test_percentile_sorted_reversed_and_constant_inputs(void **state)
{
    (void)state;
    enum { N = 20001 };
    float *v = malloc(sizeof(float) * N);
    assert_non_null(v);
    for (int i = 0; i < N; i++) v[i] = (float)i;
    assert_true(map_percentile(v, N, 99.5) == 19900.0); /* rank 20000 * 0.995 = 19900 exactly */
    for (int i = 0; i < N; i++) v[i] = (float)(N - 1 - i);
    assert_true(map_percentile(v, N, 50) == 10000.0);
    for (int i = 0; i < N; i++) v[i] = 0.25f;
    assert_true(map_percentile(v, N, 99.5) == 0.25);
    free(v);
}

static void test_normalize_equals_reference(void **state)
{
    (void)state;
    for (size_t c = 0; c < N_OF(fx_norm); c++) {
        float out[128];
        assert_true(fx_norm[c].n <= (int)N_OF(out));
        map_normalize(fx_norm[c].in, (size_t)fx_norm[c].n, fx_norm[c].p, out);
        for (int i = 0; i < fx_norm[c].n; i++) {
            assert_true(out[i] >= 0.0f && out[i] <= 1.0f);
            if (fabsf(out[i] - fx_norm[c].out[i]) > 1e-6f)
                fail_msg("%s[%d]: got %.9g, expected %.9g", fx_norm[c].name, i, out[i], fx_norm[c].out[i]);
        }
    }
}

static void test_normalize_nan_and_inf_map_to_the_ends(void **state)
{
    (void)state;
    const float in[5] = {NAN, -INFINITY, 1.0f, 3.0f, INFINITY};
    float out[5];
    map_normalize(in, 5, 100, out);
    assert_true(out[0] == 0.0f && out[1] == 0.0f && out[2] == 0.0f);
    assert_true(out[3] == 1.0f && out[4] == 1.0f);
}

static void test_normalize_constant_map_renders_flat(void **state)
{
    (void)state;
    const float in[6] = {7, 7, 7, 7, 7, 7};
    float out[6] = {9, 9, 9, 9, 9, 9};
    map_normalize(in, 6, 99.5, out);
    for (int i = 0; i < 6; i++) assert_true(out[i] == 0.0f);
    map_normalize(in, 0, 99.5, out); /* n == 0 touches nothing */
    render_opts_t o;
    render_opts_default(&o);
    image_t im;
    assert_int_equal(render_heatmap_rgb(in, 2, 3, &o, &im), ENG_OK);
    for (int i = 0; i < 6; i++) assert_memory_equal(im.data + 3 * i, colormap_table("jet"), 3);
    free(im.data);
}

/* the percentile clip: values above the clip_percentile-th percentile saturate at 1 */
static void test_normalize_clips_the_top_percentile(void **state)
{
    (void)state;
    enum { N = 1000 };
    float in[N], out[N];
    for (int i = 0; i < N; i++) in[i] = (float)i;
    in[N - 1] = 1e9f; /* one outlier must not squash the rest */
    map_normalize(in, N, 99.0, out);
    double hi = 0.99 * (N - 1); /* the 99th percentile of 0..998 plus the outlier: rank 989.01 */
    assert_true(out[0] == 0.0f);
    assert_true(fabs(out[500] - 500.0 / hi) < 1e-6);
    for (int i = 990; i < N; i++) assert_true(out[i] == 1.0f);
}

/* ---- bilinear resize ------------------------------------------------------------------------- */

static void test_bilinear_equals_torch_interpolate(void **state)
{
    (void)state;
    for (size_t c = 0; c < N_OF(fx_bil); c++) {
        size_t on = (size_t)fx_bil[c].oh * (size_t)fx_bil[c].ow;
        float *out = malloc(on * sizeof(float));
        assert_non_null(out);
        map_resize_bilinear(fx_bil[c].in, fx_bil[c].h, fx_bil[c].w, out, fx_bil[c].oh, fx_bil[c].ow);
        for (size_t i = 0, j = 0; i < on; i += (size_t)fx_bil[c].stride, j++)
            if (fabsf(out[i] - fx_bil[c].out[j]) > 1e-6f)
                fail_msg("%s[%zu]: got %.9g, torch %.9g", fx_bil[c].name, i, out[i], fx_bil[c].out[j]);
        free(out);
    }
}

/* ---- heatmaps and overlays as PNG ------------------------------------------------------------ */

static uint8_t *render_and_read(int overlay, const float *map, int h, int w, const render_opts_t *o, int *ow, int *oh)
{
    uint8_t *png = NULL;
    size_t len = 0;
    int rc = overlay ? render_overlay_png(map, h, w, o, &png, &len) : render_heatmap_png(map, h, w, o, &png, &len);
    assert_int_equal(rc, ENG_OK);
    int depth, ct;
    png_header(png, len, &depth, &ct);
    assert_int_equal(depth, 8);
    assert_int_equal(ct, PNG_COLOR_TYPE_RGB);
    uint8_t *px = png_read(png, len, 3, ow, oh);
    assert_non_null(px);
    free(png);
    return px;
}

static void test_heatmap_png_jet_28_equals_pipeline_reference(void **state)
{
    (void)state;
    render_opts_t o;
    render_opts_default(&o); /* jet, 99.5 */
    o.out_w = o.out_h = 28;
    int w, h;
    uint8_t *px = render_and_read(0, fx_cam7, 7, 7, &o, &w, &h);
    assert_int_equal(w, 28);
    assert_int_equal(h, 28);
    int d = count_diff(px, fx_heat_jet28, sizeof fx_heat_jet28);
    if (d) fail_msg("%d of %zu bytes differ from normalize -> torch -> matplotlib", d, sizeof fx_heat_jet28);
    free(px);
}

static void test_heatmap_png_native_size_viridis(void **state)
{
    (void)state;
    render_opts_t o;
    render_opts_default(&o);
    o.colormap = "viridis";
    o.clip_percentile = 90;
    int w, h;
    uint8_t *px = render_and_read(0, fx_cam7, 7, 7, &o, &w, &h); /* out 0x0: the map's size */
    assert_int_equal(w, 7);
    assert_int_equal(h, 7);
    assert_int_equal(count_diff(px, fx_heat_viridis7, sizeof fx_heat_viridis7), 0);
    free(px);
}

static void test_overlay_png_rgb_base_alpha_03(void **state)
{
    (void)state;
    image_t base = {28, 28, 3, (uint8_t *)fx_base_rgb28};
    render_opts_t o;
    render_opts_default(&o);
    o.alpha = 0.3;
    o.base = &base; /* out 0x0: the base's size */
    int w, h;
    uint8_t *px = render_and_read(1, fx_cam7, 7, 7, &o, &w, &h);
    assert_int_equal(w, 28);
    assert_int_equal(h, 28);
    int d = count_diff(px, fx_overlay_jet28_a03, sizeof fx_overlay_jet28_a03);
    if (d) fail_msg("%d bytes differ from the reference overlay", d);
    free(px);
}

static void test_overlay_png_gray_base_is_replicated(void **state)
{
    (void)state;
    image_t base = {16, 12, 1, (uint8_t *)fx_base_gray16x12};
    render_opts_t o;
    render_opts_default(&o);
    o.colormap = "turbo";
    o.out_w = 16;
    o.out_h = 12;
    o.base = &base;
    int w, h;
    uint8_t *px = render_and_read(1, fx_cam7, 7, 7, &o, &w, &h);
    assert_int_equal(w, 16);
    assert_int_equal(h, 12);
    assert_int_equal(count_diff(px, fx_overlay_turbo_gray16x12_a05, sizeof fx_overlay_turbo_gray16x12_a05), 0);
    free(px);
}

static void test_overlay_alpha_0_is_base_and_1_is_heatmap(void **state)
{
    (void)state;
    image_t base = {28, 28, 3, (uint8_t *)fx_base_rgb28};
    render_opts_t o;
    render_opts_default(&o);
    o.base = &base;
    image_t a, b;
    o.alpha = 0;
    assert_int_equal(render_overlay_rgb(fx_cam7, 7, 7, &o, &a), ENG_OK);
    assert_memory_equal(a.data, fx_base_rgb28, sizeof fx_base_rgb28);
    o.alpha = 1;
    assert_int_equal(render_overlay_rgb(fx_cam7, 7, 7, &o, &b), ENG_OK);
    assert_memory_equal(b.data, fx_heat_jet28, sizeof fx_heat_jet28);
    free(b.data);
    o.alpha = 7; /* clamped to 1 */
    assert_int_equal(render_overlay_rgb(fx_cam7, 7, 7, &o, &b), ENG_OK);
    assert_memory_equal(b.data, fx_heat_jet28, sizeof fx_heat_jet28);
    free(a.data);
    free(b.data);
}

static void test_render_rejects_bad_arguments(void **state)
{
    (void)state;
    render_opts_t o;
    render_opts_default(&o);
    uint8_t *png = NULL;
    size_t len = 0;
    image_t im;
    o.colormap = "rainbow";
    assert_int_equal(render_heatmap_png(fx_cam7, 7, 7, &o, &png, &len), ENG_EINVAL);
    render_opts_default(&o);
    assert_int_equal(render_heatmap_png(fx_cam7, 0, 7, &o, &png, &len), ENG_EINVAL);
    assert_int_equal(render_heatmap_png(NULL, 7, 7, &o, &png, &len), ENG_EINVAL);
    assert_int_equal(render_heatmap_png(fx_cam7, 7, 7, NULL, &png, &len), ENG_EINVAL);
    o.out_w = 28; /* one side only */
    assert_int_equal(render_heatmap_rgb(fx_cam7, 7, 7, &o, &im), ENG_EINVAL);
    o.out_w = o.out_h = RENDER_MAX_SIDE + 1;
    assert_int_equal(render_heatmap_rgb(fx_cam7, 7, 7, &o, &im), ENG_EINVAL);
    render_opts_default(&o);
    assert_int_equal(render_overlay_png(fx_cam7, 7, 7, &o, &png, &len), ENG_EINVAL); /* no base */
    image_t base = {28, 28, 3, (uint8_t *)fx_base_rgb28};
    o.base = &base;
    o.out_w = o.out_h = 56; /* base not resized to the output */
    assert_int_equal(render_overlay_png(fx_cam7, 7, 7, &o, &png, &len), ENG_EINVAL);
    image_t two = {28, 28, 2, (uint8_t *)fx_base_rgb28};
    o.base = &two;
    o.out_w = o.out_h = 0;
    assert_int_equal(render_overlay_png(fx_cam7, 7, 7, &o, &png, &len), ENG_EINVAL);
    assert_null(png);
}

static void test_png_encode_gray_and_rgb_round_trip(void **state)
{
    (void)state;
    image_t g = {16, 12, 1, (uint8_t *)fx_base_gray16x12};
    uint8_t *png;
    size_t len;
    int w, h, depth, ct;
    assert_int_equal(render_png_encode(&g, &png, &len), ENG_OK);
    png_header(png, len, &depth, &ct);
    assert_int_equal(ct, PNG_COLOR_TYPE_GRAY);
    uint8_t *px = png_read(png, len, 1, &w, &h);
    assert_non_null(px);
    assert_int_equal(w, 16);
    assert_int_equal(h, 12);
    assert_memory_equal(px, fx_base_gray16x12, sizeof fx_base_gray16x12);
    free(px);
    free(png);
    /* a large noisy image grows the output buffer past its first guess */
    enum { S = 300 };
    image_t n = {S, S, 3, malloc(S * S * 3)};
    assert_non_null(n.data);
    uint32_t x = 99;
    for (int i = 0; i < S * S * 3; i++) n.data[i] = (uint8_t)((x = 1664525u * x + 1013904223u) >> 24);
    assert_int_equal(render_png_encode(&n, &png, &len), ENG_OK);
    px = png_read(png, len, 3, &w, &h);
    assert_non_null(px);
    assert_memory_equal(px, n.data, S * S * 3);
    free(px);
    free(png);
    free(n.data);
    image_t bad = {0, 12, 1, (uint8_t *)fx_base_gray16x12};
    assert_int_equal(render_png_encode(&bad, &png, &len), ENG_EINVAL);
}

static void test_image_resize(void **state)
{
    (void)state;
    enum { W = 10, H = 6 };
    uint8_t px[W * H * 3];
    for (int i = 0; i < W * H; i++) {
        px[3 * i] = 200;
        px[3 * i + 1] = 100;
        px[3 * i + 2] = 30;
    }
    image_t src = {W, H, 3, px}, dst;
    assert_int_equal(image_resize(&src, 23, 17, &dst), ENG_OK); /* up */
    assert_int_equal(dst.width, 23);
    assert_int_equal(dst.height, 17);
    assert_int_equal(dst.channels, 3);
    for (int i = 0; i < 23 * 17; i++) { /* a constant image stays constant */
        assert_int_equal(dst.data[3 * i], 200);
        assert_int_equal(dst.data[3 * i + 1], 100);
        assert_int_equal(dst.data[3 * i + 2], 30);
    }
    free(dst.data);
    assert_int_equal(image_resize(&src, 3, 2, &dst), ENG_OK); /* down */
    assert_int_equal(dst.data[0], 200);
    free(dst.data);
    assert_int_equal(image_resize(&src, W, H, &dst), ENG_OK); /* same size: a copy */
    assert_memory_equal(dst.data, px, sizeof px);
    assert_true(dst.data != px);
    free(dst.data);
    image_t two = {W, H, 2, px};
    assert_int_equal(image_resize(&two, 5, 5, &dst), ENG_EINVAL);
    assert_int_equal(image_resize(&src, 0, 5, &dst), ENG_EINVAL);
}

/* Two threads rendering at once get the same bytes as one (the PNG block cache is per thread and
 * freed at thread exit: valgrind sees no leak). */
static void *render_worker(void *arg)
{
    int *bad = arg;
    image_t base = {28, 28, 3, (uint8_t *)fx_base_rgb28};
    for (int i = 0; i < 40; i++) {
        render_opts_t o;
        render_opts_default(&o);
        o.out_w = o.out_h = 28;
        int overlay = i & 1, w = 0, h = 0;
        if (overlay) {
            o.alpha = 0.3;
            o.base = &base;
        }
        uint8_t *png = NULL;
        size_t len = 0;
        int rc = overlay ? render_overlay_png(fx_cam7, 7, 7, &o, &png, &len) : render_heatmap_png(fx_cam7, 7, 7, &o, &png, &len);
        uint8_t *px = rc == ENG_OK ? png_read(png, len, 3, &w, &h) : NULL;
        const unsigned char *want = overlay ? fx_overlay_jet28_a03 : fx_heat_jet28;
        if (!px || w != 28 || h != 28 || memcmp(px, want, 28 * 28 * 3)) (*bad)++;
        free(px);
        free(png);
    }
    return NULL;
}

static void test_two_threads_render_what_one_does(void **state)
{
    (void)state;
    pthread_t th[2];
    int bad[2] = {0, 0};
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&th[i], NULL, render_worker, &bad[i]), 0);
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(bad[0] + bad[1], 0);
}

/* ---- base64 ---------------------------------------------------------------------------------- */

static void test_b64_rfc4648_vectors(void **state)
{
    (void)state;
    static const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i < N_OF(plain); i++) {
        size_t n = strlen(plain[i]);
        char out[16];
        assert_int_equal(b64_encoded_len(n), strlen(enc[i]));
        b64_encode((const uint8_t *)plain[i], n, out);
        assert_string_equal(out, enc[i]);
        uint8_t dec[16];
        size_t dl = 99;
        assert_true(b64_decoded_max(strlen(enc[i])) <= sizeof dec);
        assert_int_equal(b64_decode(enc[i], strlen(enc[i]), dec, &dl), ENG_OK);
        assert_int_equal(dl, n);
        assert_memory_equal(dec, plain[i], n);
    }
}

static void test_b64_round_trips_all_lengths_and_wrapped(void **state)
{
    (void)state;
    uint8_t in[300], dec[300];
    char enc[420], wrapped[520];
    uint32_t x = 7;
    for (size_t i = 0; i < sizeof in; i++) in[i] = (uint8_t)((x = 1664525u * x + 1013904223u) >> 24);
    for (size_t n = 0; n <= sizeof in; n++) {
        b64_encode(in, n, enc);
        size_t el = strlen(enc), dl;
        assert_int_equal(el, b64_encoded_len(n));
        assert_true(b64_decoded_max(el) >= n);
        assert_int_equal(b64_decode(enc, el, dec, &dl), ENG_OK);
        assert_int_equal(dl, n);
        assert_memory_equal(dec, in, n);
        /* MIME style: CRLF every 76 characters, a trailing newline and a leading space */
        size_t w = 0;
        wrapped[w++] = ' ';
        for (size_t i = 0; i < el; i++) {
            if (i && i % 76 == 0) {
                wrapped[w++] = '\r';
                wrapped[w++] = '\n';
            }
            wrapped[w++] = enc[i];
        }
        wrapped[w++] = '\n';
        assert_true(b64_decoded_max(w) >= n);
        assert_int_equal(b64_decode(wrapped, w, dec, &dl), ENG_OK);
        assert_int_equal(dl, n);
        assert_memory_equal(dec, in, n);
    }
    /* whitespace inside a quantum and between the padding characters */
    uint8_t d[8];
    size_t dl;
    assert_int_equal(b64_decode("Zm9v Y\tg=\n=", 11, d, &dl), ENG_OK);
    assert_int_equal(dl, 4);
    assert_memory_equal(d, "foob", 4);
}

static void test_b64_accepts_data_url_prefix(void **state)
{
    (void)state;
    uint8_t d[16];
    size_t dl;
    const char *ok[] = {"data:image/png;base64,Zm9v", "DATA:image/jpeg;BASE64,Zm9v", "  data:;base64,Zm9v",
                        "data:application/octet-stream;name=a.png;base64,\r\nZm9v"};
    for (size_t i = 0; i < N_OF(ok); i++) {
        assert_int_equal(b64_decode(ok[i], strlen(ok[i]), d, &dl), ENG_OK);
        assert_int_equal(dl, 3);
        assert_memory_equal(d, "foo", 3);
    }
    assert_int_equal(b64_decode("data:image/png;base64,", 22, d, &dl), ENG_OK);
    assert_int_equal(dl, 0);
}

static void test_b64_rejects_bad_input_at_its_offset(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t at; /* offset of the first offending character */
    } bad[] = {
        {"Zg=", 3},                    /* one '=' missing */
        {"Zg", 2},                     /* no padding at all */
        {"Zm9vY", 5},                  /* a lone digit at the end */
        {"Zg===", 4},                  /* one '=' too many */
        {"Z===", 1},                   /* padding after a single digit */
        {"====", 0},                   /* padding alone */
        {"Zm=v", 3},                   /* digit after padding */
        {"Zg==Zg==", 4},               /* concatenated encodings */
        {"Zh==", 1},                   /* non-zero bits under the padding */
        {"Zm9=", 2},                   /* same, two-byte tail */
        {"Zm9v-_8=", 4},               /* URL-safe alphabet */
        {"Zm9v\x01Yg==", 4},           /* control character */
        {"Zm9v\xc3\xa9", 4},           /* non-ASCII */
        {"Zm9v.", 4},                  /* punctuation */
        {"data:image/png,Zm9v", 14},   /* a data URL that is not base64 */
        {"data:image/png;base64", 21}, /* no comma */
        {"data:base64,Zm9v", 11},      /* ";base64" missing */
        {"dat:image/png;base64,Zm9v", 3},
    };
    for (size_t i = 0; i < N_OF(bad); i++) {
        uint8_t d[32];
        size_t at = 12345;
        int rc = b64_decode(bad[i].in, strlen(bad[i].in), d, &at);
        if (rc != ENG_EFORMAT) fail_msg("\"%s\" accepted", bad[i].in);
        if (at != bad[i].at) fail_msg("\"%s\": error at %zu, expected %zu", bad[i].in, at, bad[i].at);
    }
    /* a NUL inside the counted length is a bad character, not the end */
    uint8_t d[8];
    size_t at;
    assert_int_equal(b64_decode("Zm9v\0Zm9v", 9, d, &at), ENG_EFORMAT);
    assert_int_equal(at, 4);
}

static void test_raw_b64_is_little_endian_float32(void **state)
{
    (void)state;
    const float v[3] = {1.0f, -2.0f, 0.5f};
    char *s = render_raw_b64(v, 3);
    assert_non_null(s);
    assert_string_equal(s, "AACAPwAAAMAAAAA/"); /* Python: base64(struct.pack('<3f', 1, -2, 0.5)) */
    free(s);
    s = render_raw_b64(v, 0);
    assert_string_equal(s, "");
    free(s);
    enum { N = 1001 };
    float *m = malloc(N * sizeof(float));
    assert_non_null(m);
    lcg_fill(m, N, 0, 42);
    s = render_raw_b64(m, N);
    assert_non_null(s);
    uint8_t *d = malloc(b64_decoded_max(strlen(s)));
    size_t dl;
    assert_int_equal(b64_decode(s, strlen(s), d, &dl), ENG_OK);
    assert_int_equal(dl, N * 4);
    for (int i = 0; i < N; i++) {
        uint32_t u = (uint32_t)d[4 * i] | (uint32_t)d[4 * i + 1] << 8 | (uint32_t)d[4 * i + 2] << 16 |
                     (uint32_t)d[4 * i + 3] << 24;
        float f;
        memcpy(&f, &u, 4);
        assert_true(f == m[i]);
    }
    free(d);
    free(s);
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_colormap_tables_equal_matplotlib),
        cmocka_unit_test(test_colormap_unknown_names_are_invalid),
        cmocka_unit_test(test_colormap_float_lookup_equals_matplotlib_call),
        cmocka_unit_test(test_percentile_equals_numpy),
        cmocka_unit_test(test_percentile_clamps_p_and_handles_empty),
        cmocka_unit_test(test_percentile_sorted_reversed_and_constant_inputs),
        cmocka_unit_test(test_normalize_equals_reference),
        cmocka_unit_test(test_normalize_nan_and_inf_map_to_the_ends),
        cmocka_unit_test(test_normalize_constant_map_renders_flat),
        cmocka_unit_test(test_normalize_clips_the_top_percentile),
        cmocka_unit_test(test_bilinear_equals_torch_interpolate),
        cmocka_unit_test(test_heatmap_png_jet_28_equals_pipeline_reference),
        cmocka_unit_test(test_heatmap_png_native_size_viridis),
        cmocka_unit_test(test_overlay_png_rgb_base_alpha_03),
        cmocka_unit_test(test_overlay_png_gray_base_is_replicated),
        cmocka_unit_test(test_overlay_alpha_0_is_base_and_1_is_heatmap),
        cmocka_unit_test(test_render_rejects_bad_arguments),
        cmocka_unit_test(test_png_encode_gray_and_rgb_round_trip),
        cmocka_unit_test(test_image_resize),
        cmocka_unit_test(test_two_threads_render_what_one_does),
        cmocka_unit_test(test_b64_rfc4648_vectors),
        cmocka_unit_test(test_b64_round_trips_all_lengths_and_wrapped),
        cmocka_unit_test(test_b64_accepts_data_url_prefix),
        cmocka_unit_test(test_b64_rejects_bad_input_at_its_offset),
        cmocka_unit_test(test_raw_b64_is_little_endian_float32),
    };
    return cmocka_run_group_tests_name("render", tests, NULL, NULL);
}
