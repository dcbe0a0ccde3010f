/* test_decode.c — the upload decoder (server/decode.c) against PIL's pixels and hostile files.
 *
 * Fixtures and expected pixels come from tests/data/decode/make_fixtures.py (run with Debian's
 * /usr/bin/python3 and python3-pil); expected/NAME.pgm|ppm is what PIL's Image.open + convert('L'
 * or 'RGB') + ImageOps.exif_transpose gives. Comparisons are exact, for JPEG too: PIL and this
 * decoder use the same libjpeg-turbo with the same settings (islow DCT, fancy upsampling).
 * Run from tests/unit (make unit does), so paths start with ../data/decode/. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "decode.h"

#define DATA "../data/decode/"

/* ---- helpers ----------------------------------------------------------------------------------- */

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s (run from tests/unit)", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1); /* NUL after the bytes: read_expected sscanf's the header */
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static uint8_t *read_fixture(const char *name, size_t *len)
{
    char path[256];
    snprintf(path, sizeof path, DATA "%s", name);
    return read_all(path, len);
}

/* Binary PGM (P5) or PPM (P6) as the fixture script writes them: "P6\nW H\n255\n" + pixels. */
static image_t read_expected(const char *name)
{
    char path[256];
    snprintf(path, sizeof path, DATA "expected/%s", name);
    size_t len;
    uint8_t *buf = read_all(path, &len);
    char magic[3] = {0};
    int w, h, maxval, consumed = 0;
    assert_int_equal(sscanf((const char *)buf, "%2s %d %d %d%n", magic, &w, &h, &maxval, &consumed), 4);
    assert_int_equal(maxval, 255);
    image_t img = {.width = w, .height = h, .channels = !strcmp(magic, "P5") ? 1 : 3};
    size_t n = (size_t)w * (size_t)h * (size_t)img.channels;
    assert_int_equal(len - (size_t)consumed - 1, n); /* one whitespace byte after maxval */
    img.data = malloc(n);
    memcpy(img.data, buf + consumed + 1, n);
    free(buf);
    return img;
}

static int decode_fixture(const char *name, const decode_limits_t *lim, image_t *img, const char **fmt, eng_err_t *err)
{
    size_t len;
    uint8_t *buf = read_fixture(name, &len);
    int st = image_decode(buf, len, lim, img, fmt, err);
    free(buf);
    return st;
}

static void assert_same_image(const image_t *got, const image_t *want, const char *what)
{
    if (got->width != want->width || got->height != want->height || got->channels != want->channels)
        fail_msg("%s: got %dx%dx%d, want %dx%dx%d", what, got->width, got->height, got->channels, want->width,
                 want->height, want->channels);
    size_t n = (size_t)got->width * got->height * got->channels;
    for (size_t i = 0; i < n; i++)
        if (got->data[i] != want->data[i])
            fail_msg("%s: byte %zu (pixel %zu, channel %zu) is %d, PIL has %d", what, i, i / got->channels,
                     i % got->channels, got->data[i], want->data[i]);
}

/* Decode NAME with the defaults and compare with expected/NAME.(pgm|ppm) exactly. */
static void assert_decodes_like_pil(const char *name, const char *want_format, int want_channels)
{
    image_t img;
    const char *fmt = NULL;
    eng_err_t err = {0};
    int st = decode_fixture(name, NULL, &img, &fmt, &err);
    if (st != ENG_OK) fail_msg("%s: status %s: %s", name, eng_status_name(st), err.msg);
    assert_string_equal(fmt, want_format);
    assert_int_equal(img.channels, want_channels);
    char exp_name[128];
    snprintf(exp_name, sizeof exp_name, "%s.%s", name, want_channels == 1 ? "pgm" : "ppm");
    image_t want = read_expected(exp_name);
    assert_same_image(&img, &want, name);
    image_free(&want);
    image_free(&img);
}

/* Decode NAME (limits lim, NULL = defaults), expect status st, an untouched (zeroed) image and
 * a message containing `needle`. */
static void assert_decode_fails(const char *name, const decode_limits_t *lim, int want_st, const char *needle)
{
    image_t img = {.width = 7, .data = (uint8_t *)&img}; /* garbage in: decode must zero it */
    eng_err_t err = {0};
    int st = decode_fixture(name, lim, &img, NULL, &err);
    if (st != want_st) fail_msg("%s: status %s (%s), want %s", name, eng_status_name(st), err.msg, eng_status_name(want_st));
    assert_int_equal(err.status, want_st);
    assert_null(img.data);
    assert_int_equal(img.width, 0);
    if (needle && !strstr(err.msg, needle)) fail_msg("%s: message \"%s\" lacks \"%s\"", name, err.msg, needle);
}

/* Pixel (x, y) of an RGB image is within tol of (r, g, b). */
static void assert_rgb_near(const image_t *img, int x, int y, int r, int g, int b, int tol)
{
    const uint8_t *p = img->data + ((size_t)y * img->width + x) * 3;
    if (abs(p[0] - r) > tol || abs(p[1] - g) > tol || abs(p[2] - b) > tol)
        fail_msg("pixel (%d,%d) is (%d,%d,%d), want about (%d,%d,%d)", x, y, p[0], p[1], p[2], r, g, b);
}

/* ---- PNG: pixels ------------------------------------------------------------------------------- */

static void test_png_gray8_is_one_channel_like_pil(void **s) { (void)s; assert_decodes_like_pil("gray8.png", "png", 1); }
static void test_png_rgb8_is_exact_like_pil(void **s) { (void)s; assert_decodes_like_pil("rgb8.png", "png", 3); }
static void test_png_rgba8_drops_alpha_like_pil_convert_rgb(void **s) { (void)s; assert_decodes_like_pil("rgba8.png", "png", 3); }
static void test_png_rgb16_keeps_high_byte_like_pil(void **s) { (void)s; assert_decodes_like_pil("rgb16.png", "png", 3); }
static void test_png_rgba16_drops_alpha_keeps_high_byte(void **s) { (void)s; assert_decodes_like_pil("rgba16.png", "png", 3); }
static void test_png_gray_alpha8_drops_alpha_to_one_channel(void **s) { (void)s; assert_decodes_like_pil("gray_alpha8.png", "png", 1); }
static void test_png_gray_alpha16_drops_alpha_keeps_high_byte(void **s) { (void)s; assert_decodes_like_pil("gray_alpha16.png", "png", 1); }
static void test_png_palette4_with_trns_expands_to_rgb(void **s) { (void)s; assert_decodes_like_pil("palette4_trns.png", "png", 3); }
static void test_png_gray_with_trns_ignores_transparency(void **s) { (void)s; assert_decodes_like_pil("gray_trns.png", "png", 1); }
static void test_png_gray2_with_trns_stays_one_channel(void **s) { (void)s; assert_decodes_like_pil("gray2_trns.png", "png", 1); }
static void test_png_gray1_scales_to_0_255(void **s) { (void)s; assert_decodes_like_pil("gray1.png", "png", 1); }
static void test_png_gray2_scales_by_bit_replication(void **s) { (void)s; assert_decodes_like_pil("gray2.png", "png", 1); }
static void test_png_interlaced_rgb8_matches_pil(void **s) { (void)s; assert_decodes_like_pil("interlaced_rgb8.png", "png", 3); }
static void test_png_interlaced_gray2_matches_pil(void **s) { (void)s; assert_decodes_like_pil("interlaced_gray2.png", "png", 1); }
static void test_png_interlaced_rgba16_matches_pil(void **s) { (void)s; assert_decodes_like_pil("interlaced_rgba16.png", "png", 3); }

/* PIL 9.4 clips 16-bit gray to 255 (mode I -> L); we keep the high byte (decode.c explains why).
 * The expected file holds the high bytes; the fixture script asserts PIL clips. */
static void test_png_gray16_keeps_high_byte_not_pil_clipping(void **s)
{
    (void)s;
    assert_decodes_like_pil("gray16.png", "png", 1);
}

static void test_png_exif_orientation_6_is_applied(void **s)
{
    (void)s;
    assert_decodes_like_pil("exif6.png", "png", 3);
    image_t img;
    assert_int_equal(decode_fixture("exif6.png", NULL, &img, NULL, NULL), ENG_OK);
    assert_int_equal(img.width, 8); /* stored 16x8 */
    assert_int_equal(img.height, 16);
    image_free(&img);
}

/* ---- PNG: broken and hostile ------------------------------------------------------------------- */

static void test_png_truncated_is_eformat(void **s) { (void)s; assert_decode_fails("truncated.png", NULL, ENG_EFORMAT, "truncated"); }
static void test_png_bad_idat_crc_is_eformat(void **s) { (void)s; assert_decode_fails("bad_crc.png", NULL, ENG_EFORMAT, "CRC"); }

/* The file is signature + IHDR and nothing else: reading past the header would report truncation,
 * so ETOOBIG proves the refusal came from the header alone. */
static void test_png_header_over_max_pixels_is_toobig(void **s)
{
    (void)s;
    assert_decode_fails("huge_header.png", NULL, ENG_ETOOBIG,
                        "image is 100000x100000 = 10000000000 pixels; the limit is 16777216 (max_pixels)");
}

static void test_png_header_over_max_side_is_toobig(void **s)
{
    (void)s;
    assert_decode_fails("wide_header.png", NULL, ENG_ETOOBIG, "image is 20000x8; the limit is 16384 pixels per side (max_side)");
}

/* A complete, valid 20000x20000 PNG (49 KB, 400 MB decoded). With max_decoder_memory at 1 byte
 * even creating libpng's struct would fail with the memory message: the max_pixels message shows
 * the header check ran before libpng allocated anything. */
static void test_png_bomb_20000x20000_is_toobig_from_header(void **s)
{
    (void)s;
    assert_decode_fails("bomb.png", NULL, ENG_ETOOBIG, "20000x20000 = 400000000 pixels");
    decode_limits_t lim = decode_limits_default();
    lim.max_decoder_memory = 1;
    assert_decode_fails("bomb.png", &lim, ENG_ETOOBIG, "(max_pixels)");
}

static void test_png_limits_are_inclusive(void **s)
{
    (void)s; /* rgb8.png is 17x13 = 221 pixels */
    decode_limits_t lim = decode_limits_default();
    image_t img;
    lim.max_pixels = 221;
    lim.max_side = 17;
    assert_int_equal(decode_fixture("rgb8.png", &lim, &img, NULL, NULL), ENG_OK);
    image_free(&img);
    lim.max_pixels = 220;
    assert_decode_fails("rgb8.png", &lim, ENG_ETOOBIG, "17x13 = 221 pixels; the limit is 220 (max_pixels)");
    lim.max_pixels = 221;
    lim.max_side = 16;
    assert_decode_fails("rgb8.png", &lim, ENG_ETOOBIG, "the limit is 16 pixels per side (max_side)");
}

/* Every libpng allocation is counted: a tiny budget refuses cleanly (and frees what it had). */
static void test_png_decoder_memory_cap_is_toobig(void **s)
{
    (void)s;
    decode_limits_t lim = decode_limits_default();
    lim.max_decoder_memory = 4096;
    assert_decode_fails("rgb8.png", &lim, ENG_ETOOBIG, "(max_decoder_memory)");
    lim.max_decoder_memory = 1;
    assert_decode_fails("rgb8.png", &lim, ENG_ETOOBIG, "(max_decoder_memory)");
}

/* ---- JPEG: pixels ------------------------------------------------------------------------------ */

static void test_jpeg_baseline_color_matches_pil_exactly(void **s) { (void)s; assert_decodes_like_pil("color.jpg", "jpeg", 3); }
static void test_jpeg_baseline_gray_is_one_channel_like_pil(void **s) { (void)s; assert_decodes_like_pil("gray.jpg", "jpeg", 1); }
static void test_jpeg_progressive_matches_pil_exactly(void **s) { (void)s; assert_decodes_like_pil("progressive.jpg", "jpeg", 3); }
static void test_jpeg_adobe_cmyk_is_inverted_and_converted_like_pil(void **s) { (void)s; assert_decodes_like_pil("cmyk.jpg", "jpeg", 3); }

/* Orientation 6: rotate 90 degrees clockwise. Stored 32x16 quadrants red|green over blue|white
 * become blue|red over white|green, 16x32. */
static void test_jpeg_exif_orientation_6_rotates_clockwise(void **s)
{
    (void)s;
    image_t img;
    assert_int_equal(decode_fixture("exif6.jpg", NULL, &img, NULL, NULL), ENG_OK);
    assert_int_equal(img.width, 16);
    assert_int_equal(img.height, 32);
    assert_rgb_near(&img, 3, 3, 0, 0, 255, 24);       /* top-left: blue */
    assert_rgb_near(&img, 12, 3, 255, 0, 0, 24);      /* top-right: red */
    assert_rgb_near(&img, 3, 28, 255, 255, 255, 24);  /* bottom-left: white */
    assert_rgb_near(&img, 12, 28, 0, 255, 0, 24);     /* bottom-right: green */
    image_free(&img);
    assert_decodes_like_pil("exif6.jpg", "jpeg", 3);
}

/* Orientation 3: rotate 180 degrees: white|blue over green|red, still 32x16. */
static void test_jpeg_exif_orientation_3_rotates_180(void **s)
{
    (void)s;
    image_t img;
    assert_int_equal(decode_fixture("exif3.jpg", NULL, &img, NULL, NULL), ENG_OK);
    assert_int_equal(img.width, 32);
    assert_int_equal(img.height, 16);
    assert_rgb_near(&img, 4, 3, 255, 255, 255, 24);
    assert_rgb_near(&img, 27, 3, 0, 0, 255, 24);
    assert_rgb_near(&img, 4, 12, 0, 255, 0, 24);
    assert_rgb_near(&img, 27, 12, 255, 0, 0, 24);
    image_free(&img);
    assert_decodes_like_pil("exif3.jpg", "jpeg", 3);
}

/* All eight, in both byte orders (odd: "II", even: "MM"), against ImageOps.exif_transpose. */
static void test_jpeg_exif_every_orientation_matches_pil_exif_transpose(void **s)
{
    (void)s;
    for (int o = 1; o <= 8; o++) {
        char name[32];
        snprintf(name, sizeof name, "exif%d.jpg", o);
        assert_decodes_like_pil(name, "jpeg", 3);
    }
}

static void test_jpeg_malformed_exif_is_ignored(void **s)
{
    (void)s;
    image_t want = read_expected("exif_unrotated.jpg.ppm");
    const char *names[] = {"exif_bad_offset.jpg", "exif_truncated_ifd.jpg"};
    for (int i = 0; i < 2; i++) {
        image_t img;
        eng_err_t err = {0};
        int st = decode_fixture(names[i], NULL, &img, NULL, &err);
        if (st != ENG_OK) fail_msg("%s: %s", names[i], err.msg);
        assert_same_image(&img, &want, names[i]);
        image_free(&img);
    }
    image_free(&want);
}

/* Pixels all present, only the EOI marker missing: PIL says "image file is truncated", so do we
 * (whereas a PNG missing only IEND decodes in both; see the prefix tests below). */
static void test_jpeg_missing_only_eoi_is_eformat_like_pil(void **s)
{
    (void)s;
    size_t len;
    uint8_t *buf = read_fixture("color.jpg", &len);
    assert_memory_equal(buf + len - 2, "\xff\xd9", 2);
    image_t img;
    eng_err_t err = {0};
    assert_int_equal(image_decode(buf, len - 2, NULL, &img, NULL, &err), ENG_EFORMAT);
    assert_non_null(strstr(err.msg, "truncated"));
    assert_null(img.data);
    free(buf);
}

/* ---- JPEG: broken and hostile ------------------------------------------------------------------ */

/* Without the strict warning policy libjpeg pads the missing rows with gray and says ENG_OK. */
static void test_jpeg_truncated_is_eformat_not_half_gray(void **s) { (void)s; assert_decode_fails("truncated.jpg", NULL, ENG_EFORMAT, "truncated"); }
static void test_jpeg_truncated_progressive_is_eformat(void **s) { (void)s; assert_decode_fails("truncated_progressive.jpg", NULL, ENG_EFORMAT, "truncated"); }
static void test_jpeg_dht_with_counts_over_256_is_eformat(void **s) { (void)s; assert_decode_fails("dht_bad_counts.jpg", NULL, ENG_EFORMAT, "Huffman"); }
static void test_jpeg_dht_oversubscribed_is_eformat(void **s) { (void)s; assert_decode_fails("dht_oversubscribed.jpg", NULL, ENG_EFORMAT, "Huffman"); }
static void test_jpeg_dht_longer_than_file_is_eformat(void **s) { (void)s; assert_decode_fails("dht_overlong.jpg", NULL, ENG_EFORMAT, NULL); }

static void test_jpeg_sof_over_max_pixels_is_toobig(void **s)
{
    (void)s;
    assert_decode_fails("huge_sof.jpg", NULL, ENG_ETOOBIG, "image is 60000x60000 = 3600000000 pixels; the limit is 16777216 (max_pixels)");
}

/* color.jpg with its SOF0 patched: 12-bit samples, or SOF3 (lossless). libjpeg-turbo 2.1 decodes
 * neither through the 8-bit API: that is "unsupported" (415), not "corrupt" (400). */
static void assert_patched_sof_is_unsupported(int offset_in_sof, uint8_t value, const char *needle)
{
    size_t len;
    uint8_t *buf = read_fixture("color.jpg", &len);
    uint8_t *sof = NULL;
    for (size_t i = 0; i + 1 < len && !sof; i++)
        if (buf[i] == 0xff && buf[i + 1] == 0xc0) sof = buf + i;
    assert_non_null(sof);
    sof[offset_in_sof] = value;
    image_t img;
    eng_err_t err = {0};
    assert_int_equal(image_decode(buf, len, NULL, &img, NULL, &err), ENG_EUNSUPPORTED);
    if (!strstr(err.msg, needle)) fail_msg("message \"%s\" lacks \"%s\"", err.msg, needle);
    free(buf);
}

static void test_jpeg_12bit_is_unsupported(void **s) { (void)s; assert_patched_sof_is_unsupported(4, 12, "precision 12"); }
static void test_jpeg_lossless_is_unsupported(void **s) { (void)s; assert_patched_sof_is_unsupported(1, 0xc3, "SOF type 0xc3"); }

/* 2506 scans over an 8x8 image: stopped at the cap (64 by default). */
static void test_jpeg_thousands_of_scans_hit_the_scan_cap(void **s)
{
    (void)s;
    assert_decode_fails("many_scans.jpg", NULL, ENG_EFORMAT, "more than 64 scans (max_progressive_scans)");
    decode_limits_t lim = decode_limits_default();
    lim.max_progressive_scans = 2505;
    assert_decode_fails("many_scans.jpg", &lim, ENG_EFORMAT, "more than 2505 scans");
}

/* The same file decodes once the cap allows its 2506 scans: the cap, not corruption, stopped it. */
static void test_jpeg_thousands_of_scans_decode_when_cap_allows(void **s)
{
    (void)s;
    decode_limits_t lim = decode_limits_default();
    lim.max_progressive_scans = 2506;
    image_t img;
    eng_err_t err = {0};
    int st = decode_fixture("many_scans.jpg", &lim, &img, NULL, &err);
    if (st != ENG_OK) fail_msg("%s", err.msg);
    image_t want = read_expected("many_scans.jpg.pgm");
    assert_same_image(&img, &want, "many_scans.jpg");
    image_free(&want);
    image_free(&img);
}

/* A progressive file keeps whole-image coefficient buffers in libjpeg's pool, which
 * max_memory_to_use bounds; 320x240 at 4:2:0 needs 230 KB of them (128 bytes per 8x8 block). */
static void test_jpeg_decoder_memory_cap_is_toobig(void **s)
{
    (void)s;
    decode_limits_t lim = decode_limits_default();
    image_t img;
    assert_int_equal(decode_fixture("progressive_large.jpg", &lim, &img, NULL, NULL), ENG_OK);
    assert_int_equal(img.width, 320);
    image_free(&img);
    lim.max_decoder_memory = 128 << 10;
    assert_decode_fails("progressive_large.jpg", &lim, ENG_ETOOBIG, "more than 131072 bytes of decoder memory (max_decoder_memory)");
}

/* ---- every prefix, every flipped byte ---------------------------------------------------------- */

/* Every prefix of a file fails with EFORMAT, never a silently partial image nor a crash (valgrind
 * watches the rest). The one exception is PNG's trailing IEND chunk (12 bytes): without it the
 * pixels are complete, PIL accepts the file, and so do we, with exactly the full image. JPEG has no
 * exception: PIL calls a JPEG without its EOI marker truncated. */
static void assert_every_prefix_is_eformat_or_whole(const char *name, size_t may_lack)
{
    size_t len;
    uint8_t *buf = read_fixture(name, &len);
    image_t full;
    assert_int_equal(image_decode(buf, len, NULL, &full, NULL, NULL), ENG_OK);
    for (size_t n = 0; n < len; n++) {
        image_t img;
        eng_err_t err = {0};
        int st = image_decode(buf, n, NULL, &img, NULL, &err);
        if (st == ENG_OK && n >= len - may_lack) {
            assert_same_image(&img, &full, name);
            image_free(&img);
        } else if (st != ENG_EFORMAT) {
            fail_msg("%s cut to %zu of %zu bytes: %s (%s)", name, n, len, eng_status_name(st), err.msg);
        }
    }
    image_free(&full);
    free(buf);
}

static void test_png_every_truncation_is_eformat_or_whole(void **s)
{
    (void)s;
    assert_every_prefix_is_eformat_or_whole("rgb8.png", 12);
    assert_every_prefix_is_eformat_or_whole("interlaced_gray2.png", 12);
}

static void test_jpeg_every_truncation_is_eformat(void **s)
{
    (void)s;
    assert_every_prefix_is_eformat_or_whole("color.jpg", 0);
    assert_every_prefix_is_eformat_or_whole("progressive.jpg", 0);
    assert_every_prefix_is_eformat_or_whole("cmyk.jpg", 0);
}

static void assert_every_flipped_byte_is_handled(const char *name)
{
    size_t len;
    uint8_t *buf = read_fixture(name, &len);
    for (size_t i = 0; i < len; i++) {
        buf[i] ^= 0xFF;
        image_t img;
        eng_err_t err = {0};
        int st = image_decode(buf, len, NULL, &img, NULL, &err);
        if (st == ENG_OK) {
            assert_true(img.width > 0 && img.height > 0 && (img.channels == 1 || img.channels == 3));
            image_free(&img);
        } else if (st != ENG_EFORMAT && st != ENG_EUNSUPPORTED && st != ENG_ETOOBIG) {
            fail_msg("%s with byte %zu flipped: %s (%s)", name, i, eng_status_name(st), err.msg);
        } else {
            assert_null(img.data);
            assert_true(err.msg[0] != '\0');
        }
        buf[i] ^= 0xFF;
    }
    free(buf);
}

static void test_png_flipped_bytes_never_crash(void **s) { (void)s; assert_every_flipped_byte_is_handled("interlaced_rgb8.png"); }
static void test_jpeg_flipped_bytes_never_crash(void **s)
{
    (void)s;
    assert_every_flipped_byte_is_handled("color.jpg");
    assert_every_flipped_byte_is_handled("progressive.jpg");
}

/* ---- other formats, garbage, empty ------------------------------------------------------------- */

static void assert_unsupported(const char *name, const char *format, const char *message)
{
    image_t img;
    const char *fmt = NULL;
    eng_err_t err = {0};
    assert_int_equal(decode_fixture(name, NULL, &img, &fmt, &err), ENG_EUNSUPPORTED);
    assert_string_equal(fmt, format);
    assert_string_equal(err.msg, message);
    assert_null(img.data);
}

static void test_gif_is_unsupported(void **s) { (void)s; assert_unsupported("tiny.gif", "gif", "GIF images are not supported; send PNG or JPEG"); }
static void test_tiff_is_unsupported(void **s) { (void)s; assert_unsupported("tiny.tif", "tiff", "TIFF images are not supported; send PNG or JPEG"); }
static void test_webp_is_unsupported(void **s) { (void)s; assert_unsupported("tiny.webp", "webp", "WebP images are not supported; send PNG or JPEG"); }
static void test_bmp_is_unsupported(void **s) { (void)s; assert_unsupported("tiny.bmp", "bmp", "BMP images are not supported; send PNG or JPEG"); }

static void test_heic_and_avif_are_unsupported(void **s)
{
    (void)s;
    static const uint8_t heic[] = "\0\0\0\x18" "ftypheic\0\0\0\0mif1heic";
    static const uint8_t avif[] = "\0\0\0\x1c" "ftypavif\0\0\0\0avifmif1miaf";
    image_t img;
    const char *fmt;
    eng_err_t err;
    assert_int_equal(image_decode(heic, sizeof heic - 1, NULL, &img, &fmt, &err), ENG_EUNSUPPORTED);
    assert_string_equal(fmt, "heic");
    assert_string_equal(err.msg, "HEIC/HEIF images are not supported; send PNG or JPEG");
    assert_int_equal(image_decode(avif, sizeof avif - 1, NULL, &img, &fmt, &err), ENG_EUNSUPPORTED);
    assert_string_equal(fmt, "avif");
}

static void test_garbage_bytes_are_eformat(void **s)
{
    (void)s;
    static const uint8_t garbage[] = "<html><body>this is not an image</body></html>";
    uint8_t noise[512];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof noise; i++) noise[i] = (uint8_t)((x = x * 1103515245u + 12345u) >> 24);
    noise[0] = 0x00;
    image_t img;
    const char *fmt;
    eng_err_t err;
    assert_int_equal(image_decode(garbage, sizeof garbage - 1, NULL, &img, &fmt, &err), ENG_EFORMAT);
    assert_string_equal(fmt, "unknown");
    assert_string_equal(err.msg, "not a PNG or JPEG image");
    assert_int_equal(image_decode(noise, sizeof noise, NULL, &img, &fmt, &err), ENG_EFORMAT);
    /* "BM" + text is not a BMP (sniffing wants a DIB header size too) */
    static const uint8_t bm_text[] = "BMW owners club newsletter";
    assert_int_equal(image_decode(bm_text, sizeof bm_text - 1, NULL, &img, &fmt, &err), ENG_EFORMAT);
    assert_string_equal(fmt, "unknown");
    /* magic alone, nothing after it */
    assert_int_equal(image_decode((const uint8_t *)"\x89PNG\r\n\x1a\n", 8, NULL, &img, &fmt, &err), ENG_EFORMAT);
    assert_string_equal(fmt, "png");
    assert_int_equal(image_decode((const uint8_t *)"\xff\xd8\xff", 3, NULL, &img, &fmt, &err), ENG_EFORMAT);
    assert_string_equal(fmt, "jpeg");
}

static void test_empty_body_is_eformat(void **s)
{
    (void)s;
    image_t img;
    eng_err_t err;
    const char *fmt;
    assert_int_equal(image_decode((const uint8_t *)"", 0, NULL, &img, &fmt, &err), ENG_EFORMAT);
    assert_string_equal(err.msg, "empty body: no image was sent");
    assert_string_equal(fmt, "unknown");
    assert_int_equal(image_decode(NULL, 0, NULL, &img, NULL, &err), ENG_EFORMAT);
}

static void test_sniff_names_each_fixture_format(void **s)
{
    (void)s;
    struct { const char *file, *format; int st; } cases[] = {
        {"rgb8.png", "png", ENG_OK},          {"color.jpg", "jpeg", ENG_OK},
        {"tiny.gif", "gif", ENG_EUNSUPPORTED}, {"tiny.tif", "tiff", ENG_EUNSUPPORTED},
        {"tiny.webp", "webp", ENG_EUNSUPPORTED}, {"tiny.bmp", "bmp", ENG_EUNSUPPORTED},
        {"make_fixtures.py", "unknown", ENG_EFORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t len;
        uint8_t *buf = read_fixture(cases[i].file, &len);
        const char *fmt = NULL;
        assert_int_equal(image_sniff(buf, len, &fmt), cases[i].st);
        assert_string_equal(fmt, cases[i].format);
        free(buf);
    }
    const char *fmt = NULL;
    assert_int_equal(image_sniff(NULL, 0, &fmt), ENG_EFORMAT);
    assert_string_equal(fmt, "unknown");
}

/* ---- API contract ------------------------------------------------------------------------------ */

static void test_limits_default_are_documented_values(void **s)
{
    (void)s;
    decode_limits_t lim = decode_limits_default();
    assert_int_equal(lim.max_pixels, 4096 * 4096);
    assert_int_equal(lim.max_side, 16384);
    assert_int_equal(lim.max_progressive_scans, 64);
    assert_int_equal(lim.max_decoder_memory, 256u << 20);
}

static void test_nonpositive_limits_are_einval(void **s)
{
    (void)s;
    decode_limits_t base = decode_limits_default(), lim;
    image_t img;
    eng_err_t err;
    lim = base; lim.max_pixels = 0;
    assert_int_equal(decode_fixture("rgb8.png", &lim, &img, NULL, &err), ENG_EINVAL);
    lim = base; lim.max_side = -1;
    assert_int_equal(decode_fixture("rgb8.png", &lim, &img, NULL, &err), ENG_EINVAL);
    lim = base; lim.max_progressive_scans = 0;
    assert_int_equal(decode_fixture("color.jpg", &lim, &img, NULL, &err), ENG_EINVAL);
    lim = base; lim.max_decoder_memory = 0;
    assert_int_equal(decode_fixture("color.jpg", &lim, &img, NULL, &err), ENG_EINVAL);
    assert_non_null(strstr(err.msg, "must be positive"));
}

static void test_null_err_and_format_are_allowed(void **s)
{
    (void)s;
    image_t img;
    assert_int_equal(decode_fixture("truncated.jpg", NULL, &img, NULL, NULL), ENG_EFORMAT);
    assert_int_equal(decode_fixture("huge_header.png", NULL, &img, NULL, NULL), ENG_ETOOBIG);
    assert_int_equal(decode_fixture("tiny.gif", NULL, &img, NULL, NULL), ENG_EUNSUPPORTED);
    assert_int_equal(decode_fixture("gray8.png", NULL, &img, NULL, NULL), ENG_OK);
    image_free(&img);
}

/* Two threads equal one: four threads decoding every kind at once give the single-thread bytes
 * and statuses (the decoder keeps no global state; the error/longjmp paths are per call). */
static const char *const thread_files[] = {"interlaced_rgb8.png", "progressive.jpg", "exif6.jpg", "cmyk.jpg",
                                           "truncated.jpg", "many_scans.jpg", "bad_crc.png", "gray16.png"};
#define N_THREAD_FILES (sizeof thread_files / sizeof *thread_files)

typedef struct {
    int status[N_THREAD_FILES];
    uint64_t hash[N_THREAD_FILES];
} thread_result_t;

static uint64_t fnv1a(const image_t *img)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)img->width << 32 ^ (uint64_t)img->height << 8 ^ (uint64_t)img->channels;
    size_t n = (size_t)img->width * img->height * img->channels;
    for (size_t i = 0; i < n; i++) h = (h ^ img->data[i]) * 1099511628211ull;
    return h;
}

static void *decode_all(void *arg)
{
    thread_result_t *r = arg;
    for (int round = 0; round < 5; round++)
        for (size_t i = 0; i < N_THREAD_FILES; i++) {
            image_t img;
            eng_err_t err;
            r->status[i] = decode_fixture(thread_files[i], NULL, &img, NULL, &err);
            r->hash[i] = r->status[i] == ENG_OK ? fnv1a(&img) : 0;
            image_free(&img);
        }
    return NULL;
}

static void test_concurrent_decodes_equal_single_thread(void **s)
{
    (void)s;
    thread_result_t single, multi[4];
    decode_all(&single);
    pthread_t th[4];
    for (int t = 0; t < 4; t++) assert_int_equal(pthread_create(&th[t], NULL, decode_all, &multi[t]), 0);
    for (int t = 0; t < 4; t++) pthread_join(th[t], NULL);
    for (int t = 0; t < 4; t++)
        for (size_t i = 0; i < N_THREAD_FILES; i++) {
            assert_int_equal(multi[t].status[i], single.status[i]);
            assert_true(multi[t].hash[i] == single.hash[i]);
        }
}

/* ---- engine/errors.c --------------------------------------------------------------------------- */

static void test_eng_errf_fills_and_truncates_and_allows_null(void **s)
{
    (void)s;
    eng_err_t err;
    assert_int_equal(eng_errf(NULL, ENG_EFORMAT, "x %d", 1), ENG_EFORMAT);
    assert_int_equal(eng_errf(&err, ENG_ETOOBIG, "image is %dx%d", 3, 4), ENG_ETOOBIG);
    assert_int_equal(err.status, ENG_ETOOBIG);
    assert_string_equal(err.msg, "image is 3x4");
    char longer[2 * sizeof err.msg];
    memset(longer, 'a', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    eng_errf(&err, ENG_EINVAL, "%s", longer);
    assert_int_equal(strlen(err.msg), sizeof err.msg - 1);
    assert_string_equal(eng_status_name(ENG_EUNSUPPORTED), "unsupported");
    assert_string_equal(eng_status_name(ENG_OK), "ok");
    assert_string_equal(eng_status_name(9999), "unknown");
}

static void test_image_free_zeroes_and_is_idempotent(void **s)
{
    (void)s;
    image_t img = {.width = 2, .height = 2, .channels = 1, .data = malloc(4)};
    image_free(&img);
    assert_null(img.data);
    assert_int_equal(img.width, 0);
    image_free(&img);
    image_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_png_gray8_is_one_channel_like_pil),
        cmocka_unit_test(test_png_rgb8_is_exact_like_pil),
        cmocka_unit_test(test_png_rgba8_drops_alpha_like_pil_convert_rgb),
        cmocka_unit_test(test_png_rgb16_keeps_high_byte_like_pil),
        cmocka_unit_test(test_png_rgba16_drops_alpha_keeps_high_byte),
        cmocka_unit_test(test_png_gray16_keeps_high_byte_not_pil_clipping),
        cmocka_unit_test(test_png_gray_alpha8_drops_alpha_to_one_channel),
        cmocka_unit_test(test_png_gray_alpha16_drops_alpha_keeps_high_byte),
        cmocka_unit_test(test_png_palette4_with_trns_expands_to_rgb),
        cmocka_unit_test(test_png_gray_with_trns_ignores_transparency),
        cmocka_unit_test(test_png_gray2_with_trns_stays_one_channel),
        cmocka_unit_test(test_png_gray1_scales_to_0_255),
        cmocka_unit_test(test_png_gray2_scales_by_bit_replication),
        cmocka_unit_test(test_png_interlaced_rgb8_matches_pil),
        cmocka_unit_test(test_png_interlaced_gray2_matches_pil),
        cmocka_unit_test(test_png_interlaced_rgba16_matches_pil),
        cmocka_unit_test(test_png_exif_orientation_6_is_applied),
        cmocka_unit_test(test_png_truncated_is_eformat),
        cmocka_unit_test(test_png_bad_idat_crc_is_eformat),
        cmocka_unit_test(test_png_header_over_max_pixels_is_toobig),
        cmocka_unit_test(test_png_header_over_max_side_is_toobig),
        cmocka_unit_test(test_png_bomb_20000x20000_is_toobig_from_header),
        cmocka_unit_test(test_png_limits_are_inclusive),
        cmocka_unit_test(test_png_decoder_memory_cap_is_toobig),
        cmocka_unit_test(test_jpeg_baseline_color_matches_pil_exactly),
        cmocka_unit_test(test_jpeg_baseline_gray_is_one_channel_like_pil),
        cmocka_unit_test(test_jpeg_progressive_matches_pil_exactly),
        cmocka_unit_test(test_jpeg_adobe_cmyk_is_inverted_and_converted_like_pil),
        cmocka_unit_test(test_jpeg_exif_orientation_6_rotates_clockwise),
        cmocka_unit_test(test_jpeg_exif_orientation_3_rotates_180),
        cmocka_unit_test(test_jpeg_exif_every_orientation_matches_pil_exif_transpose),
        cmocka_unit_test(test_jpeg_malformed_exif_is_ignored),
        cmocka_unit_test(test_jpeg_missing_only_eoi_is_eformat_like_pil),
        cmocka_unit_test(test_jpeg_truncated_is_eformat_not_half_gray),
        cmocka_unit_test(test_jpeg_truncated_progressive_is_eformat),
        cmocka_unit_test(test_jpeg_dht_with_counts_over_256_is_eformat),
        cmocka_unit_test(test_jpeg_dht_oversubscribed_is_eformat),
        cmocka_unit_test(test_jpeg_dht_longer_than_file_is_eformat),
        cmocka_unit_test(test_jpeg_sof_over_max_pixels_is_toobig),
        cmocka_unit_test(test_jpeg_12bit_is_unsupported),
        cmocka_unit_test(test_jpeg_lossless_is_unsupported),
        cmocka_unit_test(test_jpeg_thousands_of_scans_hit_the_scan_cap),
        cmocka_unit_test(test_jpeg_thousands_of_scans_decode_when_cap_allows),
        cmocka_unit_test(test_jpeg_decoder_memory_cap_is_toobig),
        cmocka_unit_test(test_png_every_truncation_is_eformat_or_whole),
        cmocka_unit_test(test_jpeg_every_truncation_is_eformat),
        cmocka_unit_test(test_png_flipped_bytes_never_crash),
        cmocka_unit_test(test_jpeg_flipped_bytes_never_crash),
        cmocka_unit_test(test_gif_is_unsupported),
        cmocka_unit_test(test_tiff_is_unsupported),
        cmocka_unit_test(test_webp_is_unsupported),
        cmocka_unit_test(test_bmp_is_unsupported),
        cmocka_unit_test(test_heic_and_avif_are_unsupported),
        cmocka_unit_test(test_garbage_bytes_are_eformat),
        cmocka_unit_test(test_empty_body_is_eformat),
        cmocka_unit_test(test_sniff_names_each_fixture_format),
        cmocka_unit_test(test_limits_default_are_documented_values),
        cmocka_unit_test(test_nonpositive_limits_are_einval),
        cmocka_unit_test(test_null_err_and_format_are_allowed),
        cmocka_unit_test(test_concurrent_decodes_equal_single_thread),
        cmocka_unit_test(test_eng_errf_fills_and_truncates_and_allows_null),
        cmocka_unit_test(test_image_free_zeroes_and_is_idempotent),
    };
    return cmocka_run_group_tests_name("decode", tests, NULL, NULL);
}
