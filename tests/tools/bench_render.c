/* bench_render — how long the rendering of an explanation takes, and which PNG encoder to use.
 *
 *   build/tools/bench_render [--quick]
 *   build/tools/bench_render --loop lib|plain
 *       only a request-like loop, first thing in a fresh process: encode the same cam heatmap 300
 *       times (28x28, then 224x224) with the library's encoder (lib) or with plain libpng at the
 *       same settings and the default allocator (plain); mean and median per encode. Shows what
 *       glibc's heap trimming costs plain libpng and that the library's block cache avoids it.
 *   build/tools/bench_render --write DIR   only write the test PNGs, for an outside decoder:
 *       DIR/NAME.png (the library's encoder) and DIR/NAME.rgb (the pixels it was given), for every
 *       colormap, kind and size; docs/RENDER_BENCH.md has the PIL one-liner that checks them.
 *
 * Encodes the same heatmaps and overlays (28x28, 224x224, 512x512 RGB) with stb_image_write and
 * with libpng at several zlib levels and filters, and prints per encoder and image the median
 * encode time and the PNG size, as a Markdown table (docs/RENDER_BENCH.md holds one run). Every
 * PNG is decoded back with libpng and compared with its pixels, so a fast but broken setting
 * cannot win. Then it times the other steps of a request's rendering: normalize, upsample +
 * colormap, the library's render_heatmap_png, and base64 of the PNG and of a raw float32 map.
 *
 * Images: "cam" is a 7x7 Grad-CAM-like map (two blobs) upsampled by the library's own pipeline,
 * smooth like every CAM-family heatmap; "grad" is a per-pixel saliency-like map (a blob times
 * |noise|), the worst case for compression; "overlay" is the cam heatmap at alpha 0.5 over a
 * synthetic photo-like base (gradients, edges and noise). Single thread, median of repeats.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "render.h"

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#include <stb/stb_image_write.h>

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static uint32_t rng_state = 12345;
static float frand(void) /* uniform [0,1) */
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)(rng_state >> 8) / 16777216.0f;
}

/* ---- encoders under test ---------------------------------------------------------------------- */

typedef struct {
    uint8_t *p;
    size_t len, cap;
} buf_t;

static void buf_put(buf_t *b, const void *data, size_t len)
{
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            fprintf(stderr, "bench_render: out of memory\n");
            exit(1);
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
}

static void stb_sink(void *ctx, void *data, int size) { buf_put(ctx, data, (size_t)size); }

static void lp_write(png_structp png, png_bytep data, png_size_t len) { buf_put(png_get_io_ptr(png), data, len); }
static void lp_flush(png_structp png) { (void)png; }

typedef struct {
    const char *name;
    int lib;      /* 0 stb, 1 libpng, 2 the library's render_png_encode */
    int level;    /* zlib / stb quality */
    int filter;   /* libpng PNG_FILTER_* mask; stb: -1 adaptive, 0..4 forced */
    int strategy; /* libpng zlib strategy, -1 default */
    int mem_level; /* zlib memLevel (hash table size), 0: libpng's default 8 */
} enc_t;

static const enc_t encoders[] = {
    {"stb q8 (default), adaptive filter", 0, 8, -1, -1, 0},
    {"stb q5 (its minimum), adaptive filter", 0, 5, -1, -1, 0},
    {"stb q5, Sub filter", 0, 5, 1, -1, 0},
    {"libpng z6 (default), all filters", 1, 6, PNG_ALL_FILTERS, -1, 0},
    {"libpng z6, Sub", 1, 6, PNG_FILTER_SUB, -1, 0},
    {"libpng z3, Sub", 1, 3, PNG_FILTER_SUB, -1, 0},
    {"libpng z1, all filters", 1, 1, PNG_ALL_FILTERS, -1, 0},
    {"libpng z1, None", 1, 1, PNG_FILTER_NONE, -1, 0},
    {"libpng z1, Sub", 1, 1, PNG_FILTER_SUB, -1, 0},
    {"libpng z1, Up", 1, 1, PNG_FILTER_UP, -1, 0},
    {"libpng z1, Paeth", 1, 1, PNG_FILTER_PAETH, -1, 0},
    {"libpng z1, Sub, Z_RLE", 1, 1, PNG_FILTER_SUB, 3 /* Z_RLE */, 0},
    {"libpng z1, Sub, memLevel 4", 1, 1, PNG_FILTER_SUB, -1, 4},
    {"libpng z1, Sub, memLevel 2", 1, 1, PNG_FILTER_SUB, -1, 2},
    {"render_png_encode (the library)", 2, 0, 0, 0, 0},
};
#define N_ENC ((int)(sizeof encoders / sizeof encoders[0]))

static int encode(const enc_t *e, const image_t *im, buf_t *out)
{
    out->len = 0;
    if (e->lib == 0) {
        stbi_write_png_compression_level = e->level;
        stbi_write_force_png_filter = e->filter;
        return stbi_write_png_to_func(stb_sink, out, im->width, im->height, im->channels, im->data,
                                      im->width * im->channels)
                   ? 0
                   : -1;
    }
    if (e->lib == 2) {
        uint8_t *png;
        size_t len;
        if (render_png_encode(im, &png, &len) != ENG_OK) return -1;
        buf_put(out, png, len);
        free(png);
        return 0;
    }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return -1;
    }
    png_set_write_fn(png, out, lp_write, lp_flush);
    png_set_IHDR(png, info, im->width, im->height, 8, im->channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_compression_level(png, e->level);
    png_set_filter(png, PNG_FILTER_TYPE_BASE, e->filter);
    if (e->strategy >= 0) png_set_compression_strategy(png, e->strategy);
    if (e->mem_level) png_set_compression_mem_level(png, e->mem_level);
    png_write_info(png, info);
    for (int y = 0; y < im->height; y++) png_write_row(png, im->data + (size_t)y * im->width * im->channels);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return 0;
}

/* decode with libpng's simplified API and compare with the source pixels */
static int roundtrip_ok(const buf_t *b, const image_t *im)
{
    png_image pi;
    memset(&pi, 0, sizeof pi);
    pi.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&pi, b->p, b->len)) return 0;
    pi.format = im->channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    size_t sz = PNG_IMAGE_SIZE(pi);
    uint8_t *px = malloc(sz);
    int ok = px && png_image_finish_read(&pi, NULL, px, 0, NULL) && (int)pi.width == im->width &&
             (int)pi.height == im->height && sz == (size_t)im->width * im->height * im->channels &&
             !memcmp(px, im->data, sz);
    free(px);
    png_image_free(&pi);
    return ok;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* median time in microseconds of fn over enough repeats to fill ~budget_us (at least 5) */
#define TIME_MEDIAN(result, budget_us, body)                                                                   \
    do {                                                                                                       \
        double samples_[2001];                                                                                 \
        int ns_ = 0;                                                                                           \
        double start_ = now_us();                                                                              \
        while (ns_ < 2001 && (ns_ < 5 || now_us() - start_ < (budget_us))) {                                  \
            double t0_ = now_us();                                                                             \
            body;                                                                                              \
            samples_[ns_++] = now_us() - t0_;                                                                  \
        }                                                                                                      \
        qsort(samples_, (size_t)ns_, sizeof(double), cmp_double);                                              \
        (result) = samples_[ns_ / 2];                                                                          \
    } while (0)

/* ---- test images -------------------------------------------------------------------------------- */

static void cam_map(float *m) /* 7x7, two blobs, ReLU'd: zeros where they fade out */
{
    for (int y = 0; y < 7; y++)
        for (int x = 0; x < 7; x++) {
            float a = expf(-((x - 2.0f) * (x - 2.0f) + (y - 4.0f) * (y - 4.0f)) / 3.0f);
            float b = 0.6f * expf(-((x - 5.0f) * (x - 5.0f) + (y - 1.5f) * (y - 1.5f)) / 2.0f);
            float v = a + b - 0.08f;
            m[y * 7 + x] = v > 0 ? v : 0;
        }
}

static void grad_map(float *m, int s)
{
    for (int y = 0; y < s; y++)
        for (int x = 0; x < s; x++) {
            float u = (x + 0.5f) / s - 0.45f, v = (y + 0.5f) / s - 0.55f;
            float blob = expf(-(u * u + v * v) / 0.05f);
            m[y * s + x] = blob * fabsf(frand() - 0.5f) * 2.0f + 0.02f * frand();
        }
}

static void photo(image_t *im, int s)
{
    im->width = im->height = s;
    im->channels = 3;
    im->data = malloc((size_t)s * s * 3);
    for (int y = 0; y < s; y++)
        for (int x = 0; x < s; x++) {
            float u = (float)x / s, v = (float)y / s;
            int inside = (u - 0.5f) * (u - 0.5f) + (v - 0.5f) * (v - 0.5f) < 0.09f;
            float base[3] = {inside ? 180 + 40 * u : 60 + 120 * v, inside ? 120 - 60 * v : 90 + 60 * u,
                             inside ? 60.0f : 150 - 80 * v};
            for (int c = 0; c < 3; c++) {
                float p = base[c] + 12.0f * (frand() - 0.5f);
                im->data[((size_t)y * s + x) * 3 + c] = (uint8_t)(p < 0 ? 0 : p > 255 ? 255 : p);
            }
        }
}

static int write_file(const char *dir, const char *name, const char *ext, const void *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.%s", dir, name, ext);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f)) {
        fprintf(stderr, "bench_render: cannot write %s\n", path);
        return -1;
    }
    return 0;
}

/* every colormap x {heatmap of the cam map, overlay on a photo, gray-base overlay} x sizes */
static int write_pngs(const char *dir)
{
    static const int sizes[] = {28, 224, 512};
    float cam[49];
    cam_map(cam);
    int count = 0;
    for (int c = 0; c < colormap_count(); c++)
        for (int si = 0; si < 3; si++)
            for (int kind = 0; kind < 3; kind++) {
                int s = sizes[si];
                render_opts_t o;
                render_opts_default(&o);
                o.colormap = colormap_name(c);
                o.out_w = o.out_h = s;
                image_t base = {0}, im;
                if (kind > 0) {
                    photo(&base, s);
                    if (kind == 2) { /* gray: keep the green channel */
                        for (int i = 0; i < s * s; i++) base.data[i] = base.data[3 * i + 1];
                        base.channels = 1;
                    }
                    o.base = &base;
                }
                int rc = kind ? render_overlay_rgb(cam, 7, 7, &o, &im) : render_heatmap_rgb(cam, 7, 7, &o, &im);
                free(base.data);
                if (rc != ENG_OK) return -1;
                uint8_t *png;
                size_t len;
                if (render_png_encode(&im, &png, &len) != ENG_OK) return -1;
                char name[128];
                snprintf(name, sizeof name, "%s_%s_%d", colormap_name(c),
                         kind == 0 ? "heatmap" : kind == 1 ? "overlay" : "overlaygray", s);
                rc = write_file(dir, name, "png", png, len) ||
                     write_file(dir, name, "rgb", im.data, (size_t)s * s * 3);
                free(png);
                free(im.data);
                if (rc) return -1;
                count++;
            }
    printf("wrote %d PNGs to %s\n", count, dir);
    return 0;
}

static int request_loop(int lib)
{
    static const int sizes[] = {28, 224};
    float cam[49];
    cam_map(cam);
    buf_t b = {0};
    for (int si = 0; si < 2; si++) {
        render_opts_t o;
        render_opts_default(&o);
        o.out_w = o.out_h = sizes[si];
        image_t im;
        if (render_heatmap_rgb(cam, 7, 7, &o, &im) != ENG_OK) return 1;
        enum { N = 300 };
        static double t[N];
        double sum = 0;
        for (int i = 0; i < N; i++) {
            double t0 = now_us();
            if (lib) {
                uint8_t *png;
                size_t len;
                if (render_png_encode(&im, &png, &len) != ENG_OK) return 1;
                free(png);
            } else {
                if (encode(&encoders[8], &im, &b)) return 1; /* libpng z1, Sub */
                free(b.p);
                b.p = NULL;
                b.cap = 0;
            }
            t[i] = now_us() - t0;
            sum += t[i];
        }
        qsort(t, N, sizeof(double), cmp_double);
        printf("%s %dx%d: mean %.1f us, median %.1f us\n", lib ? "render_png_encode" : "plain libpng z1 Sub", sizes[si],
               sizes[si], sum / N, t[N / 2]);
        free(im.data);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 2 && !strcmp(argv[1], "--write")) return write_pngs(argv[2]) ? 1 : 0;
    if (argc > 2 && !strcmp(argv[1], "--loop")) return request_loop(!strcmp(argv[2], "lib"));
    int quick = argc > 1 && !strcmp(argv[1], "--quick");
    double budget = quick ? 20e3 : 300e3;
    static const int sizes[] = {28, 224, 512};
    enum { NS = 3, NKIND = 3 };
    static const char *kinds[NKIND] = {"cam", "grad", "overlay"};
    image_t imgs[NS][NKIND];
    float cam[49];
    cam_map(cam);
    for (int si = 0; si < NS; si++) {
        int s = sizes[si];
        render_opts_t o;
        render_opts_default(&o);
        o.out_w = o.out_h = s;
        if (render_heatmap_rgb(cam, 7, 7, &o, &imgs[si][0]) != ENG_OK) return 1;
        float *g = malloc(sizeof(float) * s * s);
        grad_map(g, s);
        if (render_heatmap_rgb(g, s, s, &o, &imgs[si][1]) != ENG_OK) return 1;
        free(g);
        image_t base;
        photo(&base, s);
        o.base = &base;
        if (render_overlay_rgb(cam, 7, 7, &o, &imgs[si][2]) != ENG_OK) return 1;
        free(base.data);
    }

    printf("## PNG encoders: median encode time (us) / PNG size (bytes)\n\n");
    printf("| encoder |");
    for (int si = 0; si < NS; si++)
        for (int k = 0; k < NKIND; k++) printf(" %s %d |", kinds[k], sizes[si]);
    printf("\n|---|");
    for (int i = 0; i < NS * NKIND; i++) printf("---:|");
    printf("\n");
    buf_t b = {0};
    int bad = 0;
    for (int e = 0; e < N_ENC; e++) {
        printf("| %s |", encoders[e].name);
        for (int si = 0; si < NS; si++)
            for (int k = 0; k < NKIND; k++) {
                const image_t *im = &imgs[si][k];
                if (encode(&encoders[e], im, &b) || !roundtrip_ok(&b, im)) {
                    printf(" FAILED |");
                    bad = 1;
                    continue;
                }
                double t;
                TIME_MEDIAN(t, budget / 4, encode(&encoders[e], im, &b));
                printf(" %.0f / %zu |", t, b.len);
            }
        printf("\n");
        fflush(stdout);
    }
    printf("\nraw RGB bytes: 28: %d, 224: %d, 512: %d\n", 28 * 28 * 3, 224 * 224 * 3, 512 * 512 * 3);

    printf("\n## Other steps: median time (us)\n\n| step | 28 | 224 | 512 |\n|---|---:|---:|---:|\n");
    double t[NS];
    float *src[NS], *dst[NS];
    for (int si = 0; si < NS; si++) {
        size_t n = (size_t)sizes[si] * sizes[si];
        src[si] = malloc(n * sizeof(float));
        dst[si] = malloc(n * 3 * sizeof(float));
        grad_map(src[si], sizes[si]);
    }
    for (int si = 0; si < NS; si++) {
        size_t n = (size_t)sizes[si] * sizes[si];
        TIME_MEDIAN(t[si], budget / 4, map_normalize(src[si], n, 99.5, dst[si]));
    }
    printf("| map_normalize, s x s map (percentile 99.5) | %.1f | %.1f | %.1f |\n", t[0], t[1], t[2]);
    for (int si = 0; si < NS; si++) {
        size_t n = (size_t)sizes[si] * sizes[si];
        float *big = malloc(3 * n * sizeof(float));
        for (size_t i = 0; i < 3 * n; i++) big[i] = src[si][i % n] * (1.0f + (float)(i / n));
        TIME_MEDIAN(t[si], budget / 4, map_normalize(big, 3 * n, 99.5, dst[si]));
        free(big);
    }
    printf("| map_normalize, 3 x s x s map | %.1f | %.1f | %.1f |\n", t[0], t[1], t[2]);
    for (int si = 0; si < NS; si++) TIME_MEDIAN(t[si], budget / 4, map_resize_bilinear(cam, 7, 7, dst[si], sizes[si], sizes[si]));
    printf("| map_resize_bilinear 7x7 -> s x s | %.1f | %.1f | %.1f |\n", t[0], t[1], t[2]);
    for (int si = 0; si < NS; si++) {
        render_opts_t o;
        render_opts_default(&o);
        o.out_w = o.out_h = sizes[si];
        image_t im;
        TIME_MEDIAN(t[si], budget / 4, (render_heatmap_rgb(cam, 7, 7, &o, &im), free(im.data)));
    }
    printf("| render_heatmap_rgb 7x7 -> s x s (normalize, upsample, colormap) | %.1f | %.1f | %.1f |\n", t[0], t[1],
           t[2]);
    for (int si = 0; si < NS; si++) {
        render_opts_t o;
        render_opts_default(&o);
        o.out_w = o.out_h = sizes[si];
        uint8_t *png;
        size_t len;
        TIME_MEDIAN(t[si], budget / 4, (render_heatmap_png(cam, 7, 7, &o, &png, &len), free(png)));
    }
    printf("| render_heatmap_png 7x7 -> s x s (all of it) | %.1f | %.1f | %.1f |\n", t[0], t[1], t[2]);
    for (int si = 0; si < NS; si++) {
        uint8_t *png;
        size_t len;
        render_png_encode(&imgs[si][1], &png, &len);
        char *s = malloc(b64_encoded_len(len) + 1);
        TIME_MEDIAN(t[si], budget / 4, b64_encode(png, len, s));
        free(png);
        free(s);
    }
    printf("| b64_encode of the grad heatmap PNG | %.1f | %.1f | %.1f |\n", t[0], t[1], t[2]);
    for (int si = 0; si < NS; si++) {
        size_t n = (size_t)sizes[si] * sizes[si] * 3;
        float *m = malloc(n * sizeof(float));
        for (size_t i = 0; i < n; i++) m[i] = frand();
        char *s;
        TIME_MEDIAN(t[si], budget / 4, (s = render_raw_b64(m, n), free(s)));
        free(m);
    }
    printf("| render_raw_b64 of a 3 x s x s float32 map | %.1f | %.1f | %.1f |\n", t[0], t[1], t[2]);
    for (int si = 0; si < NS; si++) {
        size_t n = (size_t)sizes[si] * sizes[si] * 3;
        float *m = malloc(n * sizeof(float));
        for (size_t i = 0; i < n; i++) m[i] = frand();
        char *s = render_raw_b64(m, n);
        size_t sl = strlen(s), ol;
        uint8_t *o = malloc(b64_decoded_max(sl));
        TIME_MEDIAN(t[si], budget / 4, b64_decode(s, sl, o, &ol));
        if (ol != n * 4 || memcmp(o, m, ol)) bad = 1;
        free(m);
        free(s);
        free(o);
    }
    printf("| b64_decode of that (e.g. a JSON upload of the same size) | %.1f | %.1f | %.1f |\n", t[0], t[1], t[2]);

    for (int si = 0; si < NS; si++) {
        free(src[si]);
        free(dst[si]);
        for (int k = 0; k < NKIND; k++) free(imgs[si][k].data);
    }
    free(b.p);
    if (bad) fprintf(stderr, "bench_render: a PNG or base64 round trip FAILED\n");
    return bad;
}
