/* body.h — a POST body -> uploaded images and request parameters, apart from the HTTP plumbing.
 *
 * http.c feeds it; it knows no sockets, no libmicrohttpd and no globals, so the request fuzzer
 * (tests/fuzz/fuzz_request.c) drives exactly the code the server runs.
 *   multipart/form-data: body_form_begin / body_form_feed / body_form_finish split the parts as the
 *                        body streams in and apply the collected fields as parameters. Field
 *                        'image' (or 'images') is an upload; every other field is a parameter
 *                        of at most BODY_MAX_FIELD_BYTES.
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
#define BODY_MAX_BOUNDARY 70            /* RFC 2046 */
#define BODY_MAX_PART_HEADER_BYTES 8192 /* the header lines of one part */
#define BODY_STR_(x) #x
#define BODY_STR(x) BODY_STR_(x)

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

/* why the multipart body was refused */
enum { BODY_FORM_OK = 0, BODY_FORM_ENOMEM, BODY_FORM_TOO_MANY_IMAGES, BODY_FORM_FIELD_TOO_LONG, BODY_FORM_NESTED,
       BODY_FORM_MALFORMED };

typedef struct {
    buf_t *images;
    int n_images, cap_images;
    /* multipart state: the framing, and the part being received */
    char delim[4 + BODY_MAX_BOUNDARY + 1]; /* CRLF "--" boundary */
    int delim_len, matched;                /* bytes of delim matched so far */
    int mp_state, mp_after;
    buf_t head;                            /* the current part's header lines */
    const char *mp_error;                  /* what was malformed (static text) */
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

/* multipart/form-data, parsed here as it streams in (RFC 2046 framing, RFC 7578 parts; not
 * libmicrohttpd's post processor, which refuses one-character boundaries and cannot be fuzzed).
 * body_form_begin takes the request's Content-Type (its boundary parameter, 1 to
 * BODY_MAX_BOUNDARY characters, quoted or not): 0, or 400 with the detail. body_form_feed takes
 * the body in pieces of any size: 0, or -1 once the body is refused (b->form_failed says why;
 * body_form_error gives the status: 400 malformed, 413 over BODY_MAX_IMAGES images, 415 a nested
 * multipart part, 422 a field over BODY_MAX_FIELD_BYTES, 503 out of memory), at the first piece
 * that shows it — the server answers then, while the body is still coming in. body_form_finish,
 * once the body is complete, checks it ended with the close delimiter and applies the fields as
 * parameters: 0 or a status with the detail. */
int body_form_begin(body_t *b, const char *content_type, char *detail, size_t dlen);
int body_form_feed(body_t *b, const void *data, size_t n);
int body_form_error(const body_t *b, char *detail, size_t dlen);
int body_form_finish(body_t *b, request_t *rq, const config_t *cfg, char *detail, size_t dlen);

/* Parse a complete application/json body (len bytes at p, need not be NUL-terminated). kserve: the
 * KServe V1 shape; empty_ok: an empty body means "no parameters" (the filter route, which takes no
 * image). Decodes the base64 images into b and applies the parameters to rq: 0, 400, 413, 422 or 503
 * (out of memory). */
int body_parse_json(body_t *b, const uint8_t *p, size_t len, int kserve, int empty_ok, request_t *rq,
                    const config_t *cfg, char *detail, size_t dlen);

/* Move a raw body in as the one image (raw is left empty): 0, or 503 when out of memory. */
int body_take_raw(body_t *b, buf_t *raw, char *detail, size_t dlen);

#endif
