/* decode.h — uploaded image bytes -> image_t, for images that come from the open internet.
 *
 * Only PNG (libpng 1.6) and JPEG (libjpeg-turbo) are decoded. stb_image is deliberately not used
 * for uploads: Debian's snapshot has an out-of-bounds write reachable from a crafted 4 KB JPEG
 * (DHT segment) and unfixed GIF/TGA/PIC CVEs, while libpng and libjpeg-turbo are kept patched.
 *
 * The format is sniffed from the magic bytes; the Content-Type is never trusted.
 *
 * Output (image_t, engine.h): 8 bits per sample, row-major, interleaved.
 *   - grayscale sources (gray PNG, gray+alpha PNG, grayscale JPEG) give 1 channel;
 *   - everything else (RGB, RGBA, palette PNG, YCbCr/RGB/CMYK/YCCK JPEG) gives 3 channels (RGB);
 *   - image_decode_alpha gives every PNG as 4 channels (RGBA), for models that take RGBA.
 * The pixels are meant to equal what PIL gives for Image.open(f) then convert('L') or
 * convert('RGB') then ImageOps.exif_transpose (see decode.c for the one deliberate exception,
 * 16-bit grayscale PNG):
 *   - alpha and tRNS transparency are dropped, not composited (PIL's convert drops alpha too);
 *   - 16-bit samples keep their high byte (v >> 8), as PIL does for RGB, RGBA and LA;
 *   - 1/2/4-bit gray is scaled to 0..255 by bit replication (0..3 -> 0,85,170,255);
 *   - Adobe CMYK/YCCK JPEGs are taken as inverted (Photoshop's convention, as PIL does) and
 *     converted with PIL's formula: R = (255-K) - round(C*(255-K)/255), and so on;
 *   - the EXIF Orientation tag (JPEG APP1 "Exif", or a PNG eXIf chunk before the pixel data) is
 *     applied so the image comes out upright; orientations 5..8 swap width and height.
 *
 * Limits (decode_limits_t) are enforced before the memory they protect is allocated: width,
 * height and width*height come from the PNG IHDR or the JPEG SOF, and are checked before any
 * pixel row, coefficient buffer or output image exists.
 *
 * Statuses (err->msg is a sentence for the user, without paths or internal names):
 *   ENG_OK            out holds the image (free it with image_free)
 *   ENG_EFORMAT       empty body, not an image, truncated or corrupt data, a JPEG with more scans
 *                     than max_progressive_scans                              (the server's 400)
 *   ENG_EUNSUPPORTED  a recognised format we do not decode (GIF, TIFF, WebP, BMP, HEIC, AVIF), or
 *                     a PNG/JPEG variant libjpeg-turbo lacks (12-bit, lossless JPEG)      (415)
 *   ENG_ETOOBIG       over max_pixels or max_side (from the header), or the decoder would need
 *                     more than max_decoder_memory                                        (413)
 *   ENG_EINVAL        a limit that is not positive (a caller's mistake)
 *   ENG_ENOMEM        malloc failed
 * On any error *out is zeroed and nothing needs freeing.
 *
 * Thread safety: no global state; any number of threads may decode at once.
 */
#ifndef EXPLAIND_DECODE_H
#define EXPLAIND_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"

/* Defaults, documented so the config table can quote them. */
#define DECODE_DEFAULT_MAX_PIXELS 16777216             /* 4096 x 4096 */
#define DECODE_DEFAULT_MAX_SIDE 16384                  /* a 16384 x 1024 panorama passes */
#define DECODE_DEFAULT_MAX_PROGRESSIVE_SCANS 64        /* libjpeg's own progressive script uses 10 */
#define DECODE_DEFAULT_MAX_DECODER_MEMORY (256u << 20) /* 256 MiB */

typedef struct {
    int64_t max_pixels;        /* width * height */
    int max_side;              /* width and height each */
    int max_progressive_scans; /* SOS markers in one JPEG (progressive or multi-scan sequential):
                                * each scan walks the whole coefficient buffer, so thousands of
                                * near-empty scans cost minutes of CPU in a few kilobytes */
    size_t max_decoder_memory; /* bytes the decoder library may hold: libjpeg's max_memory_to_use
                                * (libjpeg-turbo 2.1 applies it to its whole-image coefficient
                                * buffers, the big allocations of progressive and multi-scan
                                * files; its per-row buffers are not counted), and every libpng
                                * allocation (counted by our allocator). The output image is bounded by
                                * max_pixels instead: at most max_pixels * 4 bytes, twice that
                                * while an EXIF orientation is applied. */
} decode_limits_t;

/* The defaults above. */
decode_limits_t decode_limits_default(void);

/* Name the format from its magic bytes: "png", "jpeg", "gif", "tiff", "webp", "bmp", "heic",
 * "avif" or "unknown" (format_out may be NULL). Returns ENG_OK for png and jpeg,
 * ENG_EUNSUPPORTED for the other recognised formats, ENG_EFORMAT for empty or unknown bytes. */
int image_sniff(const uint8_t *buf, size_t len, const char **format_out);

/* Decode buf[0..len) into out (data malloc'd; free with image_free). lim NULL means
 * decode_limits_default(). format_out (may be NULL) receives the sniffed format name, also on
 * error. err may be NULL. Returns ENG_OK or a status above. */
int image_decode(const uint8_t *buf, size_t len, const decode_limits_t *lim, image_t *out,
                 const char **format_out, eng_err_t *err);

/* As image_decode, but with keep_alpha != 0 a PNG comes out RGBA (4 channels) as PIL's
 * convert('RGBA') makes it: gray replicated, tRNS transparency turned into alpha, opaque alpha
 * added when the file has none. JPEGs still give 1 or 3 channels. For models whose input color is
 * rgba. */
int image_decode_alpha(const uint8_t *buf, size_t len, const decode_limits_t *lim, int keep_alpha, image_t *out,
                       const char **format_out, eng_err_t *err);

/* ---- tensor uploads ------------------------------------------------------------------------------
 * A NumPy .npy file (format 1.0, 2.0 or 3.0; numpy.save of a float32 array) is taken as the
 * model's input tensor itself, after preprocessing: no resize, no scale/mean/std. Recognised by its
 * magic bytes "\x93NUMPY" in any upload path (raw body, multipart 'image', JSON base64). */
typedef struct {
    int rank;
    int64_t dims[4];
    float *data; /* malloc'd, rank-product floats, host order */
    size_t count;
} tensor_upload_t;

int upload_is_npy(const uint8_t *buf, size_t len);
/* Parse an .npy upload of at most max_elems elements. Statuses: ENG_EFORMAT a malformed header or
 * a data length that does not match the header's shape (400); ENG_EINVAL a dtype other than
 * float32 ('<f4' or '>f4'), Fortran order, or a rank outside 1..4 (422); ENG_ETOOBIG more than
 * max_elems elements (413); ENG_ENOMEM. On error *out is zeroed. */
int tensor_decode_npy(const uint8_t *buf, size_t len, size_t max_elems, tensor_upload_t *out, eng_err_t *err);
void tensor_upload_free(tensor_upload_t *t);

#endif
