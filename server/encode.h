/* encode.h — the encoders of what answers carry (encode.c): PNG into memory, raw float32 maps and
 * the base64 codec that carries them (and uploaded images) in JSON.
 *
 * Memory: functions that return memory say so (free() it); the others write into buffers the
 * caller sized with the *_len/_max helpers. The PNG encoder keeps libpng's and zlib's blocks in a
 * per-thread cache (at most 16 blocks, about 300 KiB for 224x224 images) that is freed when the
 * thread exits: re-faulting them on every request tripled the cost of a small PNG. PNGs are 8-bit,
 * zlib level 1 with the Sub filter (chosen by measured speed over stb_image_write:
 * docs/RENDER_BENCH.md). Functions that can fail return ENG_OK or an ENG_* status from engine.h.
 * All functions are thread-safe: no shared state is written. */
#ifndef EXPLAIND_ENCODE_H
#define EXPLAIND_ENCODE_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h" /* image_t, ENG_* status codes */

#define RENDER_MAX_SIDE 16384 /* larger image sides are ENG_EINVAL */

/* ---- PNG ------------------------------------------------------------------------------------- */
/* Row y of the image (w * channels bytes), written into scratch or pointing elsewhere. */
typedef const uint8_t *(*png_row_fn)(void *ctx, int y, uint8_t *scratch);
/* Encode a w x h image of 1 (gray) or 3 (RGB) channels produced one row at a time (so a caller
 * never holds the whole image) into malloc'd memory: *png_out, *png_len. */
int png_encode_rows(int w, int h, int channels, png_row_fn row_fn, void *ctx, uint8_t **png_out, size_t *png_len);
/* Encode an 8-bit image (1 channel: gray PNG, 3: RGB PNG) into malloc'd memory. */
int render_png_encode(const image_t *img, uint8_t **png, size_t *png_len);

/* ---- raw maps -------------------------------------------------------------------------------- */
/* base64 of the n floats as little-endian IEEE float32 (the API's raw.data / attribution.data),
 * on any host byte order. malloc'd and NUL-terminated; NULL on allocation failure. */
char *render_raw_b64(const float *map, size_t n);

/* ---- base64 (RFC 4648 section 4, standard alphabet) ------------------------------------------ */
/* Characters b64_encode writes for n bytes, NUL not included: 4 * ceil(n / 3). */
size_t b64_encoded_len(size_t n);
/* Standard alphabet, '=' padded, no line breaks; writes b64_encoded_len(n) + 1 bytes (NUL last). */
void b64_encode(const uint8_t *in, size_t n, char *out);
/* Bytes b64_decode can write for n input characters: an upper bound, 3 * ceil(n / 4). */
size_t b64_decoded_max(size_t n);
/* Decode in[0..n-1] into out (b64_decoded_max(n) bytes), *out_len = bytes written.
 * Accepted: the standard alphabet with '=' padding to a multiple of 4 characters; ASCII whitespace
 *   (space, \t, \n, \v, \f, \r) anywhere, skipped (clients wrap at 76 or 64 columns, RFC 2045/7468);
 *   one leading data URL header "data:<anything but ','>;base64," (what the browser's
 *   FileReader.readAsDataURL produces); empty input (0 bytes).
 * Rejected (ENG_EFORMAT): any other character (the URL-safe '-' and '_' included), missing or
 *   excess padding, '=' anywhere but the last one or two positions, a data URL that is not
 *   ";base64," encoded, and non-zero bits in the last character before the padding (RFC 4648
 *   3.5: such input has no canonical encoding and no honest encoder makes it).
 * On ENG_EFORMAT *out_len is the offset in `in` of the first offending character (n when the
 * input ends too early), for an error message; out holds garbage. */
int b64_decode(const char *in, size_t n, uint8_t *out, size_t *out_len);

#endif
