/* body.c — POST bodies -> images and parameters (see body.h). Moved out of http.c unchanged in
 * behaviour so the request fuzzer can reach it without a socket. */
#include "body.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "render.h"

void buf_free(buf_t *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

int buf_append(buf_t *b, const void *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 4096;
        while (nc < b->len + n + 1) nc *= 2;
        uint8_t *np = realloc(b->p, nc);
        if (!np) return -1;
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

void body_free(body_t *b)
{
    for (int i = 0; i < b->n_images; i++) buf_free(&b->images[i]);
    free(b->images);
    buf_free(&b->cur_value);
    for (int i = 0; i < b->n_fields; i++) {
        free(b->fields[i].name);
        free(b->fields[i].value);
    }
    free(b->fields);
    memset(b, 0, sizeof *b);
}

buf_t *body_new_image(body_t *b)
{
    if (b->n_images >= BODY_MAX_IMAGES) return NULL;
    if (b->n_images == b->cap_images) {
        int nc = b->cap_images ? b->cap_images * 2 : 4;
        buf_t *ni = realloc(b->images, sizeof(buf_t) * (size_t)nc);
        if (!ni) return NULL;
        b->images = ni;
        b->cap_images = nc;
    }
    buf_t *im = &b->images[b->n_images++];
    memset(im, 0, sizeof *im);
    return im;
}

static int add_field(body_t *b, const char *name, const char *value, size_t vlen)
{
    body_field_t *nf = realloc(b->fields, sizeof(body_field_t) * ((size_t)b->n_fields + 1));
    if (!nf) return -1;
    b->fields = nf;
    nf[b->n_fields].name = strdup(name);
    nf[b->n_fields].value = strndup(value, vlen);
    if (!nf[b->n_fields].name || !nf[b->n_fields].value) {
        free(nf[b->n_fields].name);
        free(nf[b->n_fields].value);
        return -1;
    }
    b->n_fields++;
    return 0;
}

static void flush_field(body_t *b)
{
    if (b->cur_field[0] && !b->cur_is_image) {
        if (add_field(b, b->cur_field, b->cur_value.p ? (const char *)b->cur_value.p : "", b->cur_value.len))
            b->form_failed = BODY_FORM_ENOMEM;
    }
    buf_free(&b->cur_value);
    b->cur_field[0] = 0;
    b->cur_is_image = 0;
}

int body_form_part(body_t *b, const char *key, uint64_t off, const char *data, size_t size)
{
    if (!key) return 0;
    if (off == 0) { /* a new part */
        flush_field(b);
        snprintf(b->cur_field, sizeof b->cur_field, "%s", key);
        if (!strcmp(key, "image") || !strcmp(key, "images")) {
            b->cur_is_image = 1;
            if (!body_new_image(b)) {
                b->form_failed = BODY_FORM_TOO_MANY_IMAGES;
                return -1;
            }
        }
    }
    if (b->cur_is_image) {
        if (size && buf_append(&b->images[b->n_images - 1], data, size)) {
            b->form_failed = BODY_FORM_ENOMEM;
            return -1;
        }
    } else if (size) {
        if (b->cur_value.len + size > BODY_MAX_FIELD_BYTES) {
            b->form_failed = BODY_FORM_FIELD_TOO_LONG;
            return -1;
        }
        if (buf_append(&b->cur_value, data, size)) {
            b->form_failed = BODY_FORM_ENOMEM;
            return -1;
        }
    }
    return 0;
}

int body_form_error(const body_t *b, char *detail, size_t dlen)
{
    if (b->form_failed == BODY_FORM_TOO_MANY_IMAGES) {
        snprintf(detail, dlen, "more than %d images in one request", BODY_MAX_IMAGES);
        return 413;
    }
    if (b->form_failed == BODY_FORM_FIELD_TOO_LONG) {
        snprintf(detail, dlen, "a form field other than 'image' is longer than %d bytes", BODY_MAX_FIELD_BYTES);
        return 422;
    }
    snprintf(detail, dlen, "malformed multipart/form-data body");
    return 400;
}

int body_form_finish(body_t *b, int post_processor_ok, request_t *rq, const config_t *cfg, char *detail, size_t dlen)
{
    flush_field(b);
    if (b->form_failed == BODY_FORM_TOO_MANY_IMAGES || b->form_failed == BODY_FORM_FIELD_TOO_LONG)
        return body_form_error(b, detail, dlen);
    if (!post_processor_ok || b->form_failed) {
        snprintf(detail, dlen, "malformed multipart/form-data body (unterminated part or bad boundary)");
        return 400;
    }
    int st;
    for (int i = 0; i < b->n_fields; i++)
        if ((st = params_set(rq, cfg, b->fields[i].name, b->fields[i].value, detail, dlen))) return st;
    return 0;
}

static int fail(char *detail, size_t dlen, int status, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(char *detail, size_t dlen, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, dlen, fmt, ap);
    va_end(ap);
    return status;
}

int body_parse_json(body_t *b, const uint8_t *p, size_t len, int kserve, int empty_ok, request_t *rq,
                    const config_t *cfg, char *detail, size_t dlen)
{
    int st;
    if (!len) { /* jansson would say "wrong arguments (line -1, column -1)" */
        if (empty_ok) return 0; /* no parameters, as an empty raw body */
        return fail(detail, dlen, 400, "empty body: send a JSON object (%s)",
                    kserve ? "{\"instances\": [{\"b64\": ...}]}" : "{\"image\": \"<base64>\", ...}");
    }
    json_error_t je;
    json_t *root = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES, &je);
    if (!root && json_error_code(&je) == json_error_duplicate_key) {
        /* a key twice is a repeated parameter (422, as in the query string), not malformed JSON;
         * jansson's text ends "near '\"KEY\"'" */
        const char *k = strstr(je.text, "near '\"");
        int kl = k ? (int)strlen(k + 7) - 2 : 0;
        return fail(detail, dlen, 422, "parameter '%.*s' is given more than once", kl > 0 ? (kl > 64 ? 64 : kl) : 1,
                    kl > 0 ? k + 7 : "?");
    }
    if (!root || !json_is_object(root)) {
        st = fail(detail, dlen, 400, "invalid JSON body: %s (line %d, column %d)",
                  root ? "the body must be a JSON object" : je.text, je.line, je.column);
        json_decref(root);
        return st;
    }
    const char *key;
    json_t *v;
    json_t *params = kserve ? json_object_get(root, "parameters") : root;
    if (kserve && params && !json_is_object(params)) {
        json_decref(root);
        return fail(detail, dlen, 400, "'parameters' must be a JSON object");
    }
    /* images: "image" (one), "images" (sanity), KServe "instances" */
    json_t *list = NULL;
    if (kserve) {
        list = json_object_get(root, "instances");
        if (!json_is_array(list) || !json_array_size(list)) {
            json_decref(root);
            return fail(detail, dlen, 400, "'instances' must be a non-empty array of {\"b64\": ...} objects");
        }
        json_object_foreach(root, key, v)
        {
            if (strcmp(key, "instances") && strcmp(key, "parameters")) {
                /* key lives in root: format the detail before releasing it */
                st = fail(detail, dlen, 422, "unknown field '%.64s' (KServe bodies have 'instances' and 'parameters')", key);
                json_decref(root);
                return st;
            }
        }
    }
    int st2 = 0;
    size_t idx;
    json_t *e;
    json_t *one = kserve ? NULL : json_object_get(root, "image");
    json_t *many = kserve ? list : json_object_get(root, "images");
    if (one && many) {
        json_decref(root);
        return fail(detail, dlen, 422, "give 'image' or 'images', not both");
    }
    if (one) {
        many = json_array();
        json_array_append(many, one);
    } else if (many) {
        json_incref(many);
    }
    if (many && !json_is_array(many)) {
        json_decref(many);
        json_decref(root);
        return fail(detail, dlen, 400, "'images' must be an array of base64 strings");
    }
    if (many && json_array_size(many) > BODY_MAX_IMAGES) {
        json_decref(many);
        json_decref(root);
        return fail(detail, dlen, 413, "more than %d images in one request", BODY_MAX_IMAGES);
    }
    json_array_foreach(many, idx, e)
    {
        const char *s = NULL;
        if (json_is_string(e)) s = json_string_value(e);
        else if (json_is_object(e) && json_is_string(json_object_get(e, "b64"))) s = json_string_value(json_object_get(e, "b64"));
        else if (json_is_object(e) && json_is_object(json_object_get(e, "image_bytes")) &&
                 json_is_string(json_object_get(json_object_get(e, "image_bytes"), "b64")))
            s = json_string_value(json_object_get(json_object_get(e, "image_bytes"), "b64"));
        if (!s) {
            st2 = fail(detail, dlen, 400, "image %zu is not a base64 string%s", idx, kserve ? " (expected {\"b64\": ...})" : "");
            break;
        }
        size_t n = strlen(s), out_len;
        buf_t *im = body_new_image(b);
        if (!im || !(im->p = malloc(b64_decoded_max(n) + 1))) {
            st2 = fail(detail, dlen, 503, "out of memory");
            break;
        }
        im->cap = b64_decoded_max(n) + 1;
        if (b64_decode(s, n, im->p, &out_len) != ENG_OK) {
            st2 = fail(detail, dlen, 400, "image %zu: invalid base64 at character %zu", idx, out_len);
            break;
        }
        im->len = out_len;
    }
    json_decref(many);
    if (!st2 && params) {
        json_object_foreach(params, key, v)
        {
            if (!kserve && (!strcmp(key, "image") || !strcmp(key, "images"))) continue;
            if ((st = params_set_json(rq, cfg, key, v, detail, dlen))) {
                st2 = st;
                break;
            }
        }
    }
    json_decref(root);
    return st2;
}

int body_take_raw(body_t *b, buf_t *raw, char *detail, size_t dlen)
{
    buf_t *im = body_new_image(b);
    if (!im) return fail(detail, dlen, 503, "out of memory");
    *im = *raw;
    memset(raw, 0, sizeof *raw);
    return 0;
}
