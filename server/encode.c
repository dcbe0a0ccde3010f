/* encode.c — the answer's encoders (see encode.h): PNG into memory with libpng, base64 both ways,
 * raw float32 maps as little-endian base64. */
#include "encode.h"

#include <png.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static int image_ok(const image_t *im)
{
    return im && im->data && (im->channels == 1 || im->channels == 3) && im->width >= 1 && im->height >= 1 &&
           im->width <= RENDER_MAX_SIDE && im->height <= RENDER_MAX_SIDE;
}

/* ---- PNG ------------------------------------------------------------------------------------- */
/* libpng writing to memory, zlib level 1, Sub filter: docs/RENDER_BENCH.md has the measurements
 * (stb_image_write and libpng at several levels and filters) behind this choice. */

/* A per-thread cache of the blocks libpng and zlib allocate. Every encode asks for the same few
 * blocks (zlib's window, hash chains and pending buffer: about 256 KiB for a 224x224 image);
 * freed at the top of the heap, glibc gives them back to the kernel (M_TRIM_THRESHOLD) and the
 * next encode page-faults them in again. Measured in a request-like loop: a 28x28 heatmap PNG
 * took 90 us instead of 24 (docs/RENDER_BENCH.md). Keeping the blocks per thread removes that
 * without touching process-wide malloc settings. At most PNG_CACHE_SLOTS blocks stay per thread;
 * they are freed when the thread exits. */
enum { PNG_CACHE_SLOTS = 16, PNG_BLOCK_HDR = 16 /* keeps max_align_t alignment */ };
static __thread void *png_cache[PNG_CACHE_SLOTS];
static __thread int png_cache_registered;
static pthread_key_t png_cache_key;
static pthread_once_t png_cache_once = PTHREAD_ONCE_INIT;
static int png_cache_key_ok;

static size_t block_cap(void *blk) { return *(size_t *)blk; }

static void png_cache_release(void *cache)
{
    void **slots = cache;
    for (int i = 0; i < PNG_CACHE_SLOTS; i++) {
        free(slots[i]);
        slots[i] = NULL;
    }
}

static void png_cache_init(void) { png_cache_key_ok = pthread_key_create(&png_cache_key, png_cache_release) == 0; }

static png_voidp png_cached_malloc(png_structp png, png_alloc_size_t size)
{
    (void)png;
    int best = -1;
    for (int i = 0; i < PNG_CACHE_SLOTS; i++) /* best fit */
        if (png_cache[i] && block_cap(png_cache[i]) >= size &&
            (best < 0 || block_cap(png_cache[i]) < block_cap(png_cache[best])))
            best = i;
    void *blk;
    if (best >= 0) {
        blk = png_cache[best];
        png_cache[best] = NULL;
    } else {
        if (size > SIZE_MAX - PNG_BLOCK_HDR) return NULL;
        blk = malloc(PNG_BLOCK_HDR + size);
        if (!blk) return NULL;
        *(size_t *)blk = size;
    }
    return (char *)blk + PNG_BLOCK_HDR;
}

static void png_cached_free(png_structp png, png_voidp ptr)
{
    (void)png;
    if (!ptr) return;
    void *blk = (char *)ptr - PNG_BLOCK_HDR;
    if (!png_cache_registered) { /* so that the thread's blocks are freed when it exits */
        pthread_once(&png_cache_once, png_cache_init);
        if (!png_cache_key_ok || pthread_setspecific(png_cache_key, png_cache) != 0) {
            free(blk);
            return;
        }
        png_cache_registered = 1;
    }
    int slot = -1;
    for (int i = 0; i < PNG_CACHE_SLOTS; i++) {
        if (!png_cache[i]) {
            slot = i;
            break;
        }
        if (slot < 0 || block_cap(png_cache[i]) < block_cap(png_cache[slot])) slot = i; /* smallest */
    }
    if (png_cache[slot]) { /* full: keep the larger of this block and the smallest cached one */
        if (block_cap(png_cache[slot]) >= block_cap(blk)) {
            free(blk);
            return;
        }
        free(png_cache[slot]);
    }
    png_cache[slot] = blk;
}

typedef struct {
    uint8_t *p;
    size_t len, cap;
} membuf_t;

static void png_mem_write(png_structp png, png_bytep data, png_size_t len)
{
    membuf_t *m = png_get_io_ptr(png);
    if (len > m->cap - m->len) {
        size_t cap = m->cap ? m->cap : 4096;
        while (len > cap - m->len) {
            if (cap > SIZE_MAX / 2) png_error(png, "out of memory");
            cap *= 2;
        }
        uint8_t *p = realloc(m->p, cap);
        if (!p) png_error(png, "out of memory");
        m->p = p;
        m->cap = cap;
    }
    memcpy(m->p + m->len, data, len);
    m->len += len;
}

static void png_mem_flush(png_structp png) { (void)png; }

/* libpng's default handlers print to stderr; errors here are our own (out of memory) and are
 * reported as a status, so they stay quiet. */
static void png_quiet_error(png_structp png, png_const_charp msg)
{
    (void)msg;
    png_longjmp(png, 1);
}

static void png_quiet_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

int png_encode_rows(int w, int h, int channels, png_row_fn row_fn, void *ctx, uint8_t **png_out,
                           size_t *png_len)
{
    *png_out = NULL;
    *png_len = 0;
    size_t stride = (size_t)w * (size_t)channels;
    /* The output buffer lives on the heap: libpng's callbacks change it between setjmp and a
     * possible longjmp, which C leaves indeterminate for a non-volatile local. A smooth heatmap
     * compresses to about a tenth of its raw size: start the buffer there. */
    membuf_t *m = malloc(sizeof *m);
    uint8_t *scratch = malloc(stride);
    if (m) {
        m->len = 0;
        m->cap = stride * (size_t)h / 8 + 1024;
        m->p = malloc(m->cap);
    }
    png_structp png = png_create_write_struct_2(PNG_LIBPNG_VER_STRING, NULL, png_quiet_error, png_quiet_warning, NULL,
                                                png_cached_malloc, png_cached_free);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!m || !m->p || !scratch || !info) {
        if (png) png_destroy_write_struct(&png, &info);
        if (m) free(m->p);
        free(m);
        free(scratch);
        return ENG_ENOMEM;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(m->p);
        free(m);
        free(scratch);
        return ENG_ENOMEM;
    }
    png_set_write_fn(png, m, png_mem_write, png_mem_flush);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_compression_level(png, 1);
    png_set_filter(png, PNG_FILTER_TYPE_BASE, PNG_FILTER_SUB);
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, row_fn(ctx, y, scratch));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(scratch);
    *png_out = m->p;
    *png_len = m->len;
    free(m);
    return ENG_OK;
}

static const uint8_t *image_row(void *ctx, int y, uint8_t *scratch)
{
    (void)scratch;
    const image_t *im = ctx;
    return im->data + (size_t)y * (size_t)im->width * (size_t)im->channels;
}

int render_png_encode(const image_t *img, uint8_t **png, size_t *png_len)
{
    if (!image_ok(img) || !png || !png_len) return ENG_EINVAL;
    return png_encode_rows(img->width, img->height, img->channels, image_row, (void *)img, png, png_len);
}

/* ---- base64 ---------------------------------------------------------------------------------- */

static const char b64_alphabet[65] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Decoding classes: 0..63 a digit, B64_WS whitespace (skipped), B64_PAD '=', B64_BAD anything else.
 * Digits are < 64, so four digits are valid exactly when their OR is < 64. */
enum { B64_WS = 0x40, B64_PAD = 0x41, B64_BAD = 0x80 };
static const uint8_t b64_class[256] = {
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40, 0x40, 0x40, 0x40, 0x40, 0x80, 0x80,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x40, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x3e, 0x80, 0x80, 0x80, 0x3f,
    0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x80, 0x80, 0x80, 0x41, 0x80, 0x80,
    0x80, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
    0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x80, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28,
    0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
};

size_t b64_encoded_len(size_t n) { return (n / 3 + (n % 3 != 0)) * 4; }

size_t b64_decoded_max(size_t n) { return (n / 4 + (n % 4 != 0)) * 3; }

void b64_encode(const uint8_t *in, size_t n, char *out)
{
    size_t i = 0;
    for (; n - i >= 3; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[0] = b64_alphabet[v >> 18];
        out[1] = b64_alphabet[(v >> 12) & 63];
        out[2] = b64_alphabet[(v >> 6) & 63];
        out[3] = b64_alphabet[v & 63];
        out += 4;
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[0] = b64_alphabet[v >> 18];
        out[1] = b64_alphabet[(v >> 12) & 63];
        out[2] = '=';
        out[3] = '=';
        out += 4;
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[0] = b64_alphabet[v >> 18];
        out[1] = b64_alphabet[(v >> 12) & 63];
        out[2] = b64_alphabet[(v >> 6) & 63];
        out[3] = '=';
        out += 4;
    }
    *out = '\0';
}

static int is_ws(char c) { return b64_class[(uint8_t)c] == B64_WS; }

static int lower_eq(const char *s, const char *lit, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != lit[i]) return 0;
    }
    return 1;
}

int b64_decode(const char *in, size_t n, uint8_t *out, size_t *out_len)
{
    size_t pos = 0;
    uint8_t *o = out;
#define FAIL_AT(p)                                                                                             \
    do {                                                                                                       \
        *out_len = (p);                                                                                        \
        return ENG_EFORMAT;                                                                                    \
    } while (0)
    while (pos < n && is_ws(in[pos])) pos++;
    /* RFC 2397 data URL: "data:" [mediatype] [";base64"] "," data; scheme and "base64" match
     * case-insensitively. Only the base64 form carries binary. */
    if (n - pos >= 5 && lower_eq(in + pos, "data:", 5)) {
        const char *comma = memchr(in + pos, ',', n - pos);
        if (!comma) FAIL_AT(n);
        size_t c = (size_t)(comma - in);
        if (c - pos < 5 + 7 || !lower_eq(comma - 7, ";base64", 7)) FAIL_AT(c);
        pos = c + 1;
    }
    uint32_t acc = 0;
    int q = 0;               /* digits in the current quantum */
    size_t last_digit = pos; /* where the last digit was, for the non-zero-bits error */
    while (pos < n) {
        if (q == 0) { /* fast path: whole quanta of four digits */
            while (n - pos >= 4) {
                const uint8_t *s = (const uint8_t *)in + pos;
                uint32_t d0 = b64_class[s[0]], d1 = b64_class[s[1]], d2 = b64_class[s[2]], d3 = b64_class[s[3]];
                if ((d0 | d1 | d2 | d3) >= 64) break;
                uint32_t v = d0 << 18 | d1 << 12 | d2 << 6 | d3;
                o[0] = (uint8_t)(v >> 16);
                o[1] = (uint8_t)(v >> 8);
                o[2] = (uint8_t)v;
                o += 3;
                pos += 4;
            }
            if (pos >= n) break;
        }
        uint8_t c = b64_class[(uint8_t)in[pos]];
        if (c < 64) {
            acc = acc << 6 | c;
            last_digit = pos;
            if (++q == 4) {
                o[0] = (uint8_t)(acc >> 16);
                o[1] = (uint8_t)(acc >> 8);
                o[2] = (uint8_t)acc;
                o += 3;
                q = 0;
                acc = 0;
            }
        } else if (c == B64_WS) {
        } else if (c == B64_PAD) {
            break;
        } else {
            FAIL_AT(pos);
        }
        pos++;
    }
    if (pos < n) { /* at the first '=' */
        if (q < 2) FAIL_AT(pos);
        int pads = 4 - q;
        while (pos < n && pads > 0) {
            char ch = in[pos];
            if (ch == '=') pads--;
            else if (!is_ws(ch)) FAIL_AT(pos);
            pos++;
        }
        if (pads > 0) FAIL_AT(n);
        for (; pos < n; pos++)
            if (!is_ws(in[pos])) FAIL_AT(pos);
        if (q == 2) {
            if (acc & 0xf) FAIL_AT(last_digit);
            *o++ = (uint8_t)(acc >> 4);
        } else {
            if (acc & 0x3) FAIL_AT(last_digit);
            o[0] = (uint8_t)(acc >> 10);
            o[1] = (uint8_t)(acc >> 2);
            o += 2;
        }
    } else if (q != 0) {
        FAIL_AT(n);
    }
#undef FAIL_AT
    *out_len = (size_t)(o - out);
    return ENG_OK;
}

/* ---- raw maps -------------------------------------------------------------------------------- */

static int host_is_little_endian(void)
{
    const uint16_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 1;
}

char *render_raw_b64(const float *map, size_t n)
{
    if (n > SIZE_MAX / 8) return NULL;
    size_t bytes = n * 4;
    char *s = malloc(b64_encoded_len(bytes) + 1);
    if (!s) return NULL;
    if (host_is_little_endian()) { /* folded at compile time */
        b64_encode((const uint8_t *)map, bytes, s);
        return s;
    }
    /* big-endian host: byte-swap through a buffer of a multiple of 3 floats (12 bytes, so that
     * every chunk but the last encodes to whole quanta and the pieces concatenate) */
    enum { CHUNK = 3 * 256 };
    uint8_t buf[CHUNK * 4];
    char *o = s;
    for (size_t i = 0; i < n; i += CHUNK) {
        size_t m = n - i < CHUNK ? n - i : CHUNK;
        for (size_t j = 0; j < m; j++) {
            uint32_t u;
            memcpy(&u, map + i + j, 4);
            buf[4 * j] = (uint8_t)u;
            buf[4 * j + 1] = (uint8_t)(u >> 8);
            buf[4 * j + 2] = (uint8_t)(u >> 16);
            buf[4 * j + 3] = (uint8_t)(u >> 24);
        }
        b64_encode(buf, m * 4, o);
        o += b64_encoded_len(m * 4);
    }
    *o = '\0';
    return s;
}
