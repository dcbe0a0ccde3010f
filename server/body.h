/* body.h — a POST body -> uploaded images and request parameters, apart from the HTTP plumbing.
 *
 * http.c feeds it; it knows no sockets, no libmicrohttpd and no globals, so the request fuzzer
 * (tests/fuzz/fuzz_request.c) drives exactly the code the server runs.
 *   multipart/form-data: libmicrohttpd's post processor splits the parts and hands each piece to
 *                        body_form_part (its iterator's arguments); body_form_finish then applies
 *                        the collected fields as parameters. Field 'image' (or 'images') is an
 *                        upload; every other field is a parameter of at most BODY_MAX_FIELD_BYTES.
 *   application/json:    body_parse_json: {"image": b64, ...params} / {"images": [b64, ...]} or,
 *                        for the KServe aliases, {"instances": [{"b64": ...}], "parameters": {...}}.
 *   raw image bytes:     body_take_raw moves the whole body in as the one image.
 * At most BODY_MAX_IMAGES images in one body.
 *
 * Errors are (HTTP status, detail) for problem+json: the functions return 0 or the status and
 * write the detail (a sentence for the user) into detail[dlen].
 * Ownership: body_t owns its images and fields; body_free releases them and zeroes it.
 */
#ifndef EXPLAIND_BODY_H
#define EXPLAIND_BODY_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "params.h"

#define BODY_MAX_IMAGES 1024
#define BODY_MAX_FIELD_BYTES 8192

/* A growable byte buffer, always NUL-terminated past len once anything was appended. */
typedef struct {
    uint8_t *p;
    size_t len, cap;
} buf_t;

void buf_free(buf_t *b);
/* 0, or -1 when out of memory (b unchanged). */
int buf_append(buf_t *b, const void *data, size_t n);

typedef struct {
    char *name, *value;
} body_field_t;

/* why body_form_part stopped */
enum { BODY_FORM_OK = 0, BODY_FORM_ENOMEM, BODY_FORM_TOO_MANY_IMAGES, BODY_FORM_FIELD_TOO_LONG };

typedef struct {
    buf_t *images;
    int n_images, cap_images;
    /* multipart state: the part being received */
    char cur_field[64];
    int cur_is_image;
    buf_t cur_value;
    body_field_t *fields;
    int n_fields;
    int form_failed; /* BODY_FORM_* */
} body_t;

void body_free(body_t *b);
/* A new, empty image slot; NULL past BODY_MAX_IMAGES or out of memory. */
buf_t *body_new_image(body_t *b);

/* One piece of a multipart part, as libmicrohttpd's post processor iterator gets it: off == 0 starts
 * a new part named key. Returns 0 to go on, -1 to stop (b->form_failed says why). */
int body_form_part(body_t *b, const char *key, uint64_t off, const char *data, size_t size);
/* The status and detail for b->form_failed (!= BODY_FORM_OK) while the body is still coming in. */
int body_form_error(const body_t *b, char *detail, size_t dlen);
/* The multipart body is complete; post_processor_ok is 0 when the post processor reported a
 * malformed body. Applies the fields as parameters: 0, 400, 413 or 422. */
int body_form_finish(body_t *b, int post_processor_ok, request_t *rq, const config_t *cfg, char *detail, size_t dlen);

/* Parse a complete application/json body (len bytes at p, need not be NUL-terminated). kserve: the
 * KServe V1 shape; empty_ok: an empty body means "no parameters" (the filter route, which takes no
 * image). Decodes the base64 images into b and applies the parameters to rq: 0, 400, 413, 422 or 503
 * (out of memory). */
int body_parse_json(body_t *b, const uint8_t *p, size_t len, int kserve, int empty_ok, request_t *rq,
                    const config_t *cfg, char *detail, size_t dlen);

/* Move a raw body in as the one image (raw is left empty): 0, or 503 when out of memory. */
int body_take_raw(body_t *b, buf_t *raw, char *detail, size_t dlen);

#endif
