/* decode.c — PNG and JPEG uploads -> image_t (see decode.h for the contract).
 *
 * Both libraries report errors by longjmp. Each decoder keeps everything an error path must free
 * in a context struct that lives in the caller's frame, so the code after setjmp never depends on
 * a local that longjmp could have clobbered, and one cleanup path frees it all.
 *
 * Decisions (each matches PIL's Image.open + convert + ImageOps.exif_transpose unless said):
 *   alpha      dropped (png_set_strip_alpha), never composited: PIL's convert('RGB'/'L') drops it.
 *   16 bits    high byte (png_set_strip_16, not png_set_scale_16): PIL unpacks RGB;16B, RGBA;16B
 *              and LA;16B by taking the high byte. Exception: PIL 9.4 opens 16-bit grayscale as
 *              mode "I" and convert('L') clips every value above 255 to 255, turning a normal
 *              16-bit scan white; we keep the high byte there too, on purpose.
 *   JPEG       warnings that mean pixels were lost are errors (ENG_EFORMAT): premature end of
 *              file, premature end of a data segment, bad Huffman or arithmetic code, lost
 *              restart sync. Without that libjpeg pads a truncated file with gray and succeeds;
 *              PIL too raises "image file is truncated", also for a file missing only its EOI,
 *              so we read on to EOI (jpeg_finish_decompress). Warnings about stray bytes between
 *              markers, progression bookkeeping, JFIF versions or ICC markers are ignored: common
 *              in real cameras' files and harmless to the pixels. (PNG differs: PIL and we accept
 *              a PNG whose pixels are complete but whose IEND chunk is missing.)
 *   CMYK/YCCK  libjpeg converts YCCK to CMYK; a file with an Adobe APP14 marker stores inverted
 *              CMYK (Photoshop), so it is inverted back, then PIL's cmyk2rgb formula applies.
 *   scans      input_scan_number is checked from libjpeg's progress monitor, called before every
 *              scan and every iMCU row, so an over-long scan list stops before its scans run.
 */
#include "decode.h"

#include <limits.h>
#include <setjmp.h>
#include <stdio.h> /* jpeglib.h needs FILE */
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h> /* after jpeglib.h: its message list depends on jconfig.h */
#include <png.h>

decode_limits_t decode_limits_default(void)
{
    decode_limits_t l = {
        .max_pixels = DECODE_DEFAULT_MAX_PIXELS,
        .max_side = DECODE_DEFAULT_MAX_SIDE,
        .max_progressive_scans = DECODE_DEFAULT_MAX_PROGRESSIVE_SCANS,
        .max_decoder_memory = DECODE_DEFAULT_MAX_DECODER_MEMORY,
    };
    return l;
}

/* ---- sniffing --------------------------------------------------------------------------------- */

typedef struct {
    const char *name;  /* format_out */
    const char *label; /* in the user's message */
} format_name_t;

static int bytes_at(const uint8_t *buf, size_t len, size_t off, const char *magic, size_t n)
{
    return len >= off + n && memcmp(buf + off, magic, n) == 0;
}

static uint32_t rd32be(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t rd32le(const uint8_t *p)
{
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* ISO-BMFF "ftyp" box: HEIF (phones' HEIC) and AVIF share it and differ by brand. */
static const char *decode_sniff_bmff_brand(const uint8_t *buf, size_t len)
{
    if (!bytes_at(buf, len, 4, "ftyp", 4) || len < 12) return NULL;
    size_t box = rd32be(buf);
    if (box < 16 || box > len) box = len < 64 ? len : 64; /* brands we look at sit in the first bytes */
    static const char *const avif[] = {"avif", "avis"};
    static const char *const heic[] = {"heic", "heix", "hevc", "hevx", "heim", "heis", "hevm", "hevs", "mif1", "msf1"};
    int is_heif = 0;
    /* major brand at 8, minor version at 12, compatible brands from 16 */
    for (size_t off = 8; off + 4 <= box; off += (off == 8 ? 8 : 4)) {
        for (size_t i = 0; i < sizeof avif / sizeof *avif; i++)
            if (!memcmp(buf + off, avif[i], 4)) return "avif";
        for (size_t i = 0; i < sizeof heic / sizeof *heic; i++)
            if (!memcmp(buf + off, heic[i], 4)) is_heif = 1;
    }
    return is_heif ? "heic" : NULL;
}

static format_name_t decode_sniff(const uint8_t *buf, size_t len)
{
    if (bytes_at(buf, len, 0, "\x89PNG\r\n\x1a\n", 8)) return (format_name_t){"png", "PNG"};
    if (bytes_at(buf, len, 0, "\xff\xd8\xff", 3)) return (format_name_t){"jpeg", "JPEG"};
    if (bytes_at(buf, len, 0, "GIF87a", 6) || bytes_at(buf, len, 0, "GIF89a", 6)) return (format_name_t){"gif", "GIF"};
    if (bytes_at(buf, len, 0, "II*\0", 4) || bytes_at(buf, len, 0, "MM\0*", 4) ||
        bytes_at(buf, len, 0, "II+\0", 4) || bytes_at(buf, len, 0, "MM\0+", 4)) /* + : BigTIFF */
        return (format_name_t){"tiff", "TIFF"};
    if (bytes_at(buf, len, 0, "RIFF", 4) && bytes_at(buf, len, 8, "WEBP", 4)) return (format_name_t){"webp", "WebP"};
    /* "BM" alone is too weak (text can start with it): also require a known DIB header size. */
    if (bytes_at(buf, len, 0, "BM", 2) && len >= 18) {
        uint32_t dib = rd32le(buf + 14);
        if (dib == 12 || dib == 40 || dib == 52 || dib == 56 || dib == 64 || dib == 108 || dib == 124)
            return (format_name_t){"bmp", "BMP"};
    }
    const char *brand = decode_sniff_bmff_brand(buf, len);
    if (brand && !strcmp(brand, "avif")) return (format_name_t){"avif", "AVIF"};
    if (brand) return (format_name_t){"heic", "HEIC/HEIF"};
    return (format_name_t){"unknown", NULL};
}

int image_sniff(const uint8_t *buf, size_t len, const char **format_out)
{
    format_name_t f = decode_sniff(buf, len);
    if (format_out) *format_out = f.name;
    if (!strcmp(f.name, "png") || !strcmp(f.name, "jpeg")) return ENG_OK;
    return f.label ? ENG_EUNSUPPORTED : ENG_EFORMAT;
}

/* ---- limits ----------------------------------------------------------------------------------- */

static int decode_check_size(uint64_t w, uint64_t h, const decode_limits_t *lim, eng_err_t *err)
{
    if (w == 0 || h == 0) return eng_errf(err, ENG_EFORMAT, "image header says %llux%llu: an image needs at least one pixel",
                                          (unsigned long long)w, (unsigned long long)h);
    /* w, h < 2^32, so the product fits in 64 bits */
    uint64_t pixels = w * h;
    if (pixels > (uint64_t)lim->max_pixels)
        return eng_errf(err, ENG_ETOOBIG, "image is %llux%llu = %llu pixels; the limit is %lld (max_pixels)",
                        (unsigned long long)w, (unsigned long long)h, (unsigned long long)pixels,
                        (long long)lim->max_pixels);
    if (w > (uint64_t)lim->max_side || h > (uint64_t)lim->max_side)
        return eng_errf(err, ENG_ETOOBIG, "image is %llux%llu; the limit is %d pixels per side (max_side)",
                        (unsigned long long)w, (unsigned long long)h, lim->max_side);
    return ENG_OK;
}

/* ---- EXIF orientation ------------------------------------------------------------------------- */

/* Orientation (tag 0x0112) from a TIFF structure (what follows "Exif\0\0" in a JPEG APP1, or a PNG
 * eXIf chunk). Every read is bounds-checked; anything malformed means 1 (upright): a broken EXIF
 * block is not worth refusing a photo over, and PIL ignores it as well. */
static int decode_exif_orientation(const uint8_t *t, size_t n)
{
    if (n < 8) return 1;
    int le;
    if (t[0] == 'I' && t[1] == 'I') le = 1;
    else if (t[0] == 'M' && t[1] == 'M') le = 0;
    else return 1;
#define RD16(p) (le ? (unsigned)((p)[0] | (p)[1] << 8) : (unsigned)((p)[0] << 8 | (p)[1]))
#define RD32(p) (le ? rd32le(p) : rd32be(p))
    if (RD16(t + 2) != 42) return 1;
    uint32_t ifd = RD32(t + 4);
    if (ifd > n || n - ifd < 2) return 1;
    unsigned count = RD16(t + ifd);
    size_t p = (size_t)ifd + 2;
    for (unsigned i = 0; i < count && n - p >= 12; i++, p += 12) {
        if (RD16(t + p) != 0x0112) continue;
        unsigned type = RD16(t + p + 2);
        uint32_t cnt = RD32(t + p + 4);
        unsigned v = 0;
        if (type == 3 && cnt >= 1) v = RD16(t + p + 8); /* SHORT, as the standard says */
        else if (type == 4 && cnt >= 1) v = RD32(t + p + 8); /* LONG: seen in the wild, PIL reads it */
        return v >= 1 && v <= 8 ? (int)v : 1;
    }
    return 1;
#undef RD16
#undef RD32
}

/* Make the image upright, as PIL's ImageOps.exif_transpose:
 *   2 mirror left-right   3 rotate 180   4 mirror top-bottom   5 transpose
 *   6 rotate 90 clockwise 7 transverse   8 rotate 90 counter-clockwise
 * Output pixel (ox, oy) reads source pixel base + ox*dx + oy*dy (in pixels of the source). */
static int image_apply_orientation(image_t *img, int orientation, eng_err_t *err)
{
    if (orientation < 2 || orientation > 8) return ENG_OK;
    const ptrdiff_t W = img->width, H = img->height, C = img->channels;
    ptrdiff_t base, dx, dy;
    switch (orientation) {
    case 2: base = W - 1; dx = -1; dy = W; break;
    case 3: base = (H - 1) * W + W - 1; dx = -1; dy = -W; break;
    case 4: base = (H - 1) * W; dx = 1; dy = -W; break;
    case 5: base = 0; dx = W; dy = 1; break;
    case 6: base = (H - 1) * W; dx = -W; dy = 1; break;
    case 7: base = (H - 1) * W + W - 1; dx = -W; dy = -1; break;
    default: base = W - 1; dx = W; dy = -1; break; /* 8 */
    }
    const int swap = orientation >= 5;
    const ptrdiff_t ow = swap ? H : W, oh = swap ? W : H;
    uint8_t *dst = malloc((size_t)(W * H * C));
    if (!dst) return eng_errf(err, ENG_ENOMEM, "out of memory applying the EXIF orientation");
    const uint8_t *src = img->data;
    uint8_t *d = dst;
    for (ptrdiff_t oy = 0; oy < oh; oy++) {
        ptrdiff_t s = base + oy * dy;
        if (C == 1) {
            for (ptrdiff_t ox = 0; ox < ow; ox++, s += dx) *d++ = src[s];
        } else {
            for (ptrdiff_t ox = 0; ox < ow; ox++, s += dx, d += C) memcpy(d, src + s * C, (size_t)C);
        }
    }
    free(img->data);
    img->data = dst;
    img->width = (int)ow;
    img->height = (int)oh;
    return ENG_OK;
}

/* ---- PNG (libpng 1.6) ------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *buf;
    size_t len, pos;
    int truncated;            /* the read callback ran out of bytes */
    size_t mem_used, mem_cap; /* every libpng allocation goes through decode_png_alloc */
    int mem_refused;
    char libmsg[160];         /* libpng's error message */
    uint8_t *pixels;          /* ours: freed by decode_png on error */
    png_bytep *rows;          /* ours: always freed by decode_png */
    int orientation;
    int keep_alpha;           /* RGBA output (PIL convert('RGBA')) instead of dropping alpha */
    const decode_limits_t *lim;
    eng_err_t *err;
} decode_png_ctx_t;

/* Every block carries its size in front, so the cap can be given back on free. */
typedef union {
    size_t size;
    max_align_t align;
} decode_mem_hdr_t;

static png_voidp decode_png_alloc(png_structp png, png_alloc_size_t size)
{
    decode_png_ctx_t *c = png_get_mem_ptr(png);
    if (size > c->mem_cap - c->mem_used || size > SIZE_MAX - sizeof(decode_mem_hdr_t)) {
        c->mem_refused = 1;
        return NULL; /* libpng turns this into png_error("Out of memory") or skips an ancillary chunk */
    }
    decode_mem_hdr_t *h = malloc(sizeof *h + size);
    if (!h) return NULL;
    h->size = size;
    c->mem_used += size;
    return h + 1;
}

static void decode_png_free(png_structp png, png_voidp ptr)
{
    if (!ptr) return;
    decode_png_ctx_t *c = png_get_mem_ptr(png);
    decode_mem_hdr_t *h = (decode_mem_hdr_t *)ptr - 1;
    c->mem_used -= h->size;
    free(h);
}

static void decode_png_on_error(png_structp png, png_const_charp msg)
{
    decode_png_ctx_t *c = png_get_error_ptr(png);
    snprintf(c->libmsg, sizeof c->libmsg, "%s", msg);
    png_longjmp(png, 1);
}

/* Warnings (ancillary CRC errors, bad iCCP profiles, ...) never reach stderr: nothing can act on
 * them there, and an attacker could use them to flood the log. */
static void decode_png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

static void decode_png_on_read(png_structp png, png_bytep data, size_t n)
{
    decode_png_ctx_t *c = png_get_io_ptr(png);
    if (n > c->len - c->pos) {
        c->truncated = 1;
        png_error(png, "truncated");
    }
    memcpy(data, c->buf + c->pos, n);
    c->pos += n;
}

/* Ancillary chunks we never use, handled as unknown and skipped unread (no inflate of zTXt/iCCP,
 * no allocation): what is not parsed cannot hurt. tRNS, PLTE and eXIf are still read. */
static const png_byte decode_png_skipped_chunks[] = "tEXt\0zTXt\0iTXt\0iCCP\0sPLT\0tIME\0pCAL\0sCAL\0hIST\0oFFs\0"
                                              "pHYs\0sBIT\0cHRM\0gAMA\0sRGB\0bKGD";

static int decode_png_status(const decode_png_ctx_t *c)
{
    if (c->truncated)
        return eng_errf(c->err, ENG_EFORMAT, "PNG data is truncated (the upload ends after %zu bytes)", c->len);
    if (c->mem_refused)
        return eng_errf(c->err, ENG_ETOOBIG, "decoding this PNG needs more than %zu bytes of decoder memory (max_decoder_memory)",
                        c->mem_cap);
    return eng_errf(c->err, ENG_EFORMAT, "corrupt PNG: %s", c->libmsg);
}

/* The setjmp frame. Only c (never reassigned) and libpng's own structs are touched after a
 * longjmp, so nothing here needs to be volatile. */
static int decode_png_run(png_structp png, png_infop info, decode_png_ctx_t *c, image_t *out)
{
    if (setjmp(png_jmpbuf(png))) return decode_png_status(c);

    png_uint_32 side = (png_uint_32)c->lim->max_side;
    png_set_user_limits(png, side, side);
    /* How many text/sPLT/unknown chunks libpng may keep (stock: 1000). We keep none; the cap is
     * there in case a libpng build stores a chunk type we did not list. */
    png_set_chunk_cache_max(png, 128);
    /* Any one non-IDAT chunk (PLTE, tRNS, eXIf, skipped metadata) over this is an error, checked
     * from the chunk length before it is read. 8,000,000 is the stock PNG_USER_CHUNK_MALLOC_MAX:
     * real-world metadata (ICC profiles, XMP) fits, and a lower cap would refuse real photos. */
    png_set_chunk_malloc_max(png, c->mem_cap < 8000000 ? c->mem_cap : 8000000);
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, NULL, 0);
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, decode_png_skipped_chunks,
                                (int)(sizeof decode_png_skipped_chunks / 5));
    png_set_read_fn(png, c, decode_png_on_read);

    png_read_info(png, info);
    png_uint_32 w, h;
    int depth, color, interlace;
    png_get_IHDR(png, info, &w, &h, &depth, &color, &interlace, NULL, NULL);
    /* Checked again from libpng's parse (image_decode checked the raw IHDR bytes already). */
    int st = decode_check_size(w, h, c->lim, c->err);
    if (st != ENG_OK) return st;

    png_bytep exif = NULL;
    png_uint_32 exif_len = 0;
    if (png_get_eXIf_1(png, info, &exif_len, &exif) && exif) c->orientation = decode_exif_orientation(exif, exif_len);

    int want = c->keep_alpha ? 4 : (color & PNG_COLOR_MASK_COLOR) ? 3 : 1; /* palette has the color bit too */
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16) png_set_strip_16(png);
    if (c->keep_alpha) {
        /* PIL convert('RGBA'): gray replicated, tRNS turned into alpha, opaque alpha added when none */
        if (!(color & PNG_COLOR_MASK_COLOR)) png_set_gray_to_rgb(png);
        if (color != PNG_COLOR_TYPE_PALETTE && png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
        else if (!(color & PNG_COLOR_MASK_ALPHA) && !(color == PNG_COLOR_TYPE_PALETTE && png_get_valid(png, info, PNG_INFO_tRNS)))
            png_set_add_alpha(png, 0xff, PNG_FILLER_AFTER);
    } else {
        /* palette_to_rgb also expands tRNS into alpha; strip_alpha removes it again with the rest. */
        png_set_strip_alpha(png);
    }
    png_set_interlace_handling(png);
    png_read_update_info(png, info);

    int channels = png_get_channels(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (png_get_bit_depth(png, info) != 8 || channels != want || rowbytes != (size_t)w * (size_t)want)
        return eng_errf(c->err, ENG_EUNSUPPORTED, "PNG color type %d at %d bits per sample is not supported", color, depth);

    c->pixels = malloc((size_t)w * h * (size_t)want);
    c->rows = malloc(sizeof *c->rows * h);
    if (!c->pixels || !c->rows) return eng_errf(c->err, ENG_ENOMEM, "out of memory decoding a %ux%u PNG", w, h);
    for (png_uint_32 y = 0; y < h; y++) c->rows[y] = c->pixels + (size_t)y * rowbytes;
    /* Reads every Adam7 pass into the rows when interlaced. We stop after the pixels, like PIL:
     * a file that only lacks its IEND loses nothing. */
    png_read_image(png, c->rows);

    out->width = (int)w;
    out->height = (int)h;
    out->channels = want;
    out->data = c->pixels;
    c->pixels = NULL;
    return ENG_OK;
}

static int decode_png(const uint8_t *buf, size_t len, const decode_limits_t *lim, int keep_alpha, image_t *out,
                      eng_err_t *err)
{
    /* The raw IHDR (signature, length, "IHDR", width, height) first: a huge claim is refused
     * before libpng allocates anything or reads a byte beyond the header. */
    if (len >= 24 && !memcmp(buf + 12, "IHDR", 4)) {
        int st = decode_check_size(rd32be(buf + 16), rd32be(buf + 20), lim, err);
        if (st != ENG_OK) return st;
    }
    decode_png_ctx_t c = {.buf = buf, .len = len, .mem_cap = lim->max_decoder_memory, .orientation = 1, .keep_alpha = keep_alpha,
                          .lim = lim, .err = err};
    png_structp png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, &c, decode_png_on_error, decode_png_on_warning, &c,
                                               decode_png_alloc, decode_png_free);
    if (!png) return c.mem_refused ? decode_png_status(&c) : eng_errf(err, ENG_ENOMEM, "out of memory decoding PNG");
    png_infop info = png_create_info_struct(png);
    int st;
    if (!info) st = c.mem_refused ? decode_png_status(&c) : eng_errf(err, ENG_ENOMEM, "out of memory decoding PNG");
    else st = decode_png_run(png, info, &c, out);
    png_destroy_read_struct(&png, info ? &info : NULL, NULL);
    free(c.rows);
    free(c.pixels);
    if (st == ENG_OK) st = image_apply_orientation(out, c.orientation, err);
    return st;
}

/* ---- JPEG (libjpeg-turbo) --------------------------------------------------------------------- */

typedef struct {
    struct jpeg_error_mgr pub; /* libjpeg reaches it through cinfo->err */
    struct jpeg_progress_mgr progress;
    jmp_buf jb;
    int status;       /* set before every longjmp */
    size_t len;
    uint8_t *pixels;  /* ours: freed by decode_jpeg on error */
    const decode_limits_t *lim;
    eng_err_t *err;
} decode_jpeg_ctx_t;

/* Turn libjpeg's message code into our status and sentence, then leave through the setjmp. */
static void decode_jpeg_fail(j_common_ptr cinfo)
{
    decode_jpeg_ctx_t *c = cinfo->client_data;
    char msg[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, msg);
    switch (cinfo->err->msg_code) {
    case JERR_OUT_OF_MEMORY:
    case JERR_NO_BACKING_STORE: /* the coefficient buffers did not fit in max_memory_to_use */
    case JERR_TFILE_CREATE:
        c->status = eng_errf(c->err, ENG_ETOOBIG, "decoding this JPEG needs more than %zu bytes of decoder memory (max_decoder_memory)",
                             c->lim->max_decoder_memory);
        break;
    case JERR_IMAGE_TOO_BIG:
    case JERR_WIDTH_OVERFLOW:
        c->status = eng_errf(c->err, ENG_ETOOBIG, "JPEG is too large: %s", msg);
        break;
    case JERR_BAD_PRECISION:   /* 12- and 16-bit JPEG */
    case JERR_SOF_UNSUPPORTED: /* lossless, hierarchical */
    case JERR_ARITH_NOTIMPL:
    case JERR_NOT_COMPILED:
        c->status = eng_errf(c->err, ENG_EUNSUPPORTED, "this kind of JPEG is not supported (%s); send a baseline or progressive JPEG, or PNG", msg);
        break;
    case JWRN_JPEG_EOF:
        c->status = eng_errf(c->err, ENG_EFORMAT, "JPEG data is truncated (premature end of data; the upload ends after %zu bytes)",
                             c->len);
        break;
    default:
        c->status = eng_errf(c->err, ENG_EFORMAT, "corrupt JPEG: %s", msg);
        break;
    }
    longjmp(c->jb, 1);
}

static void decode_jpeg_on_error_exit(j_common_ptr cinfo)
{
    decode_jpeg_fail(cinfo);
}

/* Warnings (msg_level -1) that mean pixels were lost end the decode; see the top of the file.
 * Trace messages (msg_level >= 0) and harmless warnings are dropped, never printed. */
static void decode_jpeg_on_emit_message(j_common_ptr cinfo, int msg_level)
{
    if (msg_level >= 0) return;
    switch (cinfo->err->msg_code) {
    case JWRN_JPEG_EOF:
    case JWRN_HIT_MARKER:
    case JWRN_HUFF_BAD_CODE:
    case JWRN_ARITH_BAD_CODE:
    case JWRN_MUST_RESYNC:
        decode_jpeg_fail(cinfo);
        break;
    default:
        cinfo->err->num_warnings++;
        break;
    }
}

static void decode_jpeg_on_output_message(j_common_ptr cinfo)
{
    (void)cinfo; /* libjpeg's default prints to stderr */
}

static void decode_jpeg_on_progress(j_common_ptr cinfo)
{
    decode_jpeg_ctx_t *c = cinfo->client_data;
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number > c->lim->max_progressive_scans) {
        c->status = eng_errf(c->err, ENG_EFORMAT, "JPEG has more than %d scans (max_progressive_scans)",
                             c->lim->max_progressive_scans);
        longjmp(c->jb, 1);
    }
}

/* Orientation from the first APP1 "Exif" marker (PIL also reads the first one). */
static int decode_jpeg_exif_orientation(j_decompress_ptr cinfo)
{
    for (jpeg_saved_marker_ptr m = cinfo->marker_list; m; m = m->next)
        if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 && !memcmp(m->data, "Exif\0\0", 6))
            return decode_exif_orientation(m->data + 6, m->data_length - 6);
    return 1;
}

/* PIL's cmyk2rgb (Convert.c): R = (255-K) - round(C*(255-K)/255), same for G (M) and B (Y).
 * inverted: Adobe files store 255-C, 255-M, 255-Y, 255-K. */
static void cmyk_row_to_rgb(const uint8_t *in, uint8_t *out, size_t width, int inverted)
{
    for (size_t x = 0; x < width; x++, in += 4, out += 3) {
        unsigned cmyk[4];
        for (int i = 0; i < 4; i++) cmyk[i] = inverted ? 255u - in[i] : in[i];
        unsigned nk = 255u - cmyk[3];
        for (int i = 0; i < 3; i++) {
            unsigned t = cmyk[i] * nk + 128; /* MULDIV255 */
            out[i] = (uint8_t)(nk - (((t >> 8) + t) >> 8));
        }
    }
}

/* The setjmp frame: after a longjmp only c and cinfo (both the caller's) are used. */
static int decode_jpeg_run(struct jpeg_decompress_struct *cinfo, decode_jpeg_ctx_t *c, const uint8_t *buf, size_t len,
                           image_t *out, int *orientation)
{
    if (setjmp(c->jb)) return c->status;

    jpeg_create_decompress(cinfo);
    cinfo->mem->max_memory_to_use = c->lim->max_decoder_memory > LONG_MAX ? LONG_MAX : (long)c->lim->max_decoder_memory;
    cinfo->progress = &c->progress;
    jpeg_mem_src(cinfo, buf, (unsigned long)len);
    /* A marker segment is at most 65533 bytes, so this caps each saved APP1 (EXIF, XMP); their
     * memory comes from libjpeg's pools and counts against max_memory_to_use. */
    jpeg_save_markers(cinfo, JPEG_APP0 + 1, 0xFFFF);
    jpeg_read_header(cinfo, TRUE);

    /* Header read, no pixel memory yet: the place to refuse big images. */
    int st = decode_check_size(cinfo->image_width, cinfo->image_height, c->lim, c->err);
    if (st != ENG_OK) return st;

    int channels, cmyk = 0;
    switch (cinfo->jpeg_color_space) {
    case JCS_GRAYSCALE: cinfo->out_color_space = JCS_GRAYSCALE; channels = 1; break;
    case JCS_YCbCr:
    case JCS_RGB: cinfo->out_color_space = JCS_RGB; channels = 3; break;
    case JCS_CMYK:
    case JCS_YCCK: cinfo->out_color_space = JCS_CMYK; channels = 3; cmyk = 1; break;
    default:
        return eng_errf(c->err, ENG_EUNSUPPORTED, "JPEG with %d color components of an unknown color space is not supported",
                        cinfo->num_components);
    }
    *orientation = decode_jpeg_exif_orientation(cinfo);

    jpeg_start_decompress(cinfo); /* progressive files are read whole here, scans counted */
    size_t w = cinfo->output_width, h = cinfo->output_height;
    if (cinfo->output_components != (cmyk ? 4 : channels) || w != cinfo->image_width || h != cinfo->image_height)
        return eng_errf(c->err, ENG_EUNSUPPORTED, "JPEG color conversion gave %d components; expected %d",
                        cinfo->output_components, cmyk ? 4 : channels);

    c->pixels = malloc(w * h * (size_t)channels);
    if (!c->pixels) return eng_errf(c->err, ENG_ENOMEM, "out of memory decoding a %zux%zu JPEG", w, h);
    /* CMYK rows go through a scratch row from libjpeg's pool (freed with cinfo on any path). */
    JSAMPARRAY scratch = cmyk ? (*cinfo->mem->alloc_sarray)((j_common_ptr)cinfo, JPOOL_IMAGE, (JDIMENSION)(w * 4), 1) : NULL;
    while (cinfo->output_scanline < h) {
        uint8_t *dst = c->pixels + (size_t)cinfo->output_scanline * w * (size_t)channels;
        JSAMPROW row = cmyk ? scratch[0] : dst;
        if (jpeg_read_scanlines(cinfo, &row, 1) != 1) /* only a suspending source returns 0 */
            return eng_errf(c->err, ENG_EFORMAT, "JPEG data is truncated");
        if (cmyk) cmyk_row_to_rgb(scratch[0], dst, w, cinfo->saw_Adobe_marker);
    }
    /* Read on to EOI: a file cut right after its last scan is truncated too (PIL says so as well),
     * and stopping early would make that depend on how far libjpeg happened to read ahead. */
    jpeg_finish_decompress(cinfo);
    out->width = (int)w;
    out->height = (int)h;
    out->channels = channels;
    out->data = c->pixels;
    c->pixels = NULL;
    return ENG_OK;
}

static int decode_jpeg(const uint8_t *buf, size_t len, const decode_limits_t *lim, image_t *out, eng_err_t *err)
{
    struct jpeg_decompress_struct cinfo;
    decode_jpeg_ctx_t c;
    memset(&cinfo, 0, sizeof cinfo);
    memset(&c, 0, sizeof c);
    c.lim = lim;
    c.err = err;
    c.len = len;
    cinfo.err = jpeg_std_error(&c.pub);
    c.pub.error_exit = decode_jpeg_on_error_exit;
    c.pub.emit_message = decode_jpeg_on_emit_message;
    c.pub.output_message = decode_jpeg_on_output_message;
    c.progress.progress_monitor = decode_jpeg_on_progress;
    cinfo.client_data = &c; /* jpeg_create_decompress keeps err and client_data */
    int orientation = 1;
    int st = decode_jpeg_run(&cinfo, &c, buf, len, out, &orientation);
    jpeg_destroy_decompress(&cinfo);
    free(c.pixels);
    if (st == ENG_OK) st = image_apply_orientation(out, orientation, err);
    return st;
}

/* ---- entry point ------------------------------------------------------------------------------ */

int image_decode(const uint8_t *buf, size_t len, const decode_limits_t *lim, image_t *out,
                 const char **format_out, eng_err_t *err)
{
    return image_decode_alpha(buf, len, lim, 0, out, format_out, err);
}

int image_decode_alpha(const uint8_t *buf, size_t len, const decode_limits_t *lim, int keep_alpha, image_t *out,
                       const char **format_out, eng_err_t *err)
{
    decode_limits_t def = decode_limits_default();
    if (!lim) lim = &def;
    memset(out, 0, sizeof *out);
    if (format_out) *format_out = "unknown";
    if (lim->max_pixels <= 0 || lim->max_side <= 0 || lim->max_progressive_scans <= 0 || lim->max_decoder_memory == 0)
        return eng_errf(err, ENG_EINVAL, "decode limits must be positive (max_pixels %lld, max_side %d, "
                        "max_progressive_scans %d, max_decoder_memory %zu)", (long long)lim->max_pixels,
                        lim->max_side, lim->max_progressive_scans, lim->max_decoder_memory);
    if (!buf || len == 0) return eng_errf(err, ENG_EFORMAT, "empty body: no image was sent");

    format_name_t f = decode_sniff(buf, len);
    if (format_out) *format_out = f.name;
    int st;
    if (!strcmp(f.name, "png")) st = decode_png(buf, len, lim, keep_alpha, out, err);
    else if (!strcmp(f.name, "jpeg")) st = decode_jpeg(buf, len, lim, out, err);
    else if (f.label) return eng_errf(err, ENG_EUNSUPPORTED, "%s images are not supported; send PNG or JPEG", f.label);
    else return eng_errf(err, ENG_EFORMAT, "not a PNG or JPEG image");
    if (st != ENG_OK) image_free(out); /* an orientation failure leaves pixels behind */
    return st;
}

/* ---- tensor uploads (.npy) ----------------------------------------------------------------------- */

int upload_is_npy(const uint8_t *buf, size_t len) { return bytes_at(buf, len, 0, "\x93NUMPY", 6); }

void tensor_upload_free(tensor_upload_t *t)
{
    if (!t) return;
    free(t->data);
    memset(t, 0, sizeof *t);
}

/* the value after 'key': in the header dict (a Python literal), or NULL */
static const char *npy_field(const char *h, size_t hl, const char *key)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i + kl + 2 <= hl; i++) {
        if ((h[i] != '\'' && h[i] != '"') || strncmp(h + i + 1, key, kl) || h[i + 1 + kl] != h[i]) continue;
        const char *p = h + i + kl + 2, *e = h + hl;
        while (p < e && (*p == ' ' || *p == ':')) p++;
        return p < e ? p : NULL;
    }
    return NULL;
}

int tensor_decode_npy(const uint8_t *buf, size_t len, size_t max_elems, tensor_upload_t *out, eng_err_t *err)
{
    memset(out, 0, sizeof *out);
    if (!upload_is_npy(buf, len) || len < 10) return eng_errf(err, ENG_EFORMAT, "not a NumPy .npy file");
    int major = buf[6];
    size_t hl, off;
    if (major == 1) {
        hl = (size_t)buf[8] | (size_t)buf[9] << 8;
        off = 10;
    } else if ((major == 2 || major == 3) && len >= 12) {
        hl = (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
        off = 12;
    } else {
        return eng_errf(err, ENG_EFORMAT, ".npy format version %d is not supported (1, 2 or 3)", major);
    }
    if (hl > 65536 || hl > len - off) return eng_errf(err, ENG_EFORMAT, ".npy header is truncated or over 64 KiB");
    const char *h = (const char *)buf + off;
    const char *d = npy_field(h, hl, "descr"), *f = npy_field(h, hl, "fortran_order"), *sh = npy_field(h, hl, "shape");
    if (!d || !f || !sh) return eng_errf(err, ENG_EFORMAT, ".npy header lacks descr, fortran_order or shape");
    int swap;
    if (!strncmp(d, "'<f4'", 5) || !strncmp(d, "\"<f4\"", 5)) swap = 0;
    else if (!strncmp(d, "'>f4'", 5) || !strncmp(d, "\">f4\"", 5)) swap = 1;
    else {
        int l = 0;
        while (l < 16 && d + l < h + hl && d[l] != ',' && d[l] != '}') l++;
        return eng_errf(err, ENG_EINVAL, "the tensor's dtype is %.*s; send float32 ('<f4': numpy.save(f, x.astype(numpy.float32)))", l, d);
    }
    if (!strncmp(f, "True", 4)) return eng_errf(err, ENG_EINVAL, "the tensor is in Fortran order; send a C-ordered array");
    if (strncmp(f, "False", 5)) return eng_errf(err, ENG_EFORMAT, ".npy header: fortran_order is not True or False");
    if (*sh != '(') return eng_errf(err, ENG_EFORMAT, ".npy header: shape is not a tuple");
    const char *p = sh + 1, *e = h + hl;
    size_t count = 1;
    for (;;) {
        while (p < e && *p == ' ') p++;
        if (p < e && *p == ')') break;
        if (p >= e || *p < '0' || *p > '9') return eng_errf(err, ENG_EFORMAT, ".npy header: malformed shape");
        int64_t v = 0;
        while (p < e && *p >= '0' && *p <= '9' && v < ((int64_t)1 << 40)) v = v * 10 + (*p++ - '0');
        if (p < e && *p >= '0' && *p <= '9') return eng_errf(err, ENG_ETOOBIG, "the tensor is too large");
        if (out->rank == 4) return eng_errf(err, ENG_EINVAL, "the tensor has more than 4 dimensions; send (C, H, W) or (1, C, H, W)");
        out->dims[out->rank++] = v;
        if (v && count > SIZE_MAX / (size_t)v) return eng_errf(err, ENG_ETOOBIG, "the tensor is too large");
        count *= (size_t)v;
        while (p < e && *p == ' ') p++;
        if (p < e && *p == ',') p++;
    }
    if (!out->rank) return eng_errf(err, ENG_EINVAL, "the tensor is a scalar; send (C, H, W) or (1, C, H, W)");
    if (count > max_elems) {
        int rank = out->rank;
        memset(out, 0, sizeof *out);
        return eng_errf(err, ENG_ETOOBIG, "the tensor has %zu elements (rank %d); the model takes %zu", count, rank, max_elems);
    }
    size_t data_off = off + hl;
    if (len - data_off != count * 4) {
        memset(out, 0, sizeof *out);
        return eng_errf(err, ENG_EFORMAT, "the .npy data is %zu bytes; its header's shape needs %zu", len - data_off, count * 4);
    }
    out->data = malloc(count ? count * 4 : 4);
    if (!out->data) {
        memset(out, 0, sizeof *out);
        return eng_errf(err, ENG_ENOMEM, "out of memory");
    }
    memcpy(out->data, buf + data_off, count * 4);
    if (swap)
        for (size_t i = 0; i < count; i++) {
            uint8_t *b = (uint8_t *)(out->data + i), t0 = b[0], t1 = b[1];
            b[0] = b[3];
            b[1] = b[2];
            b[2] = t1;
            b[3] = t0;
        }
    out->count = count;
    return ENG_OK;
}
