/* body.c — POST bodies -> images and parameters (see body.h). Apart from http.c so that the request
 * fuzzer reaches it without a socket. */
#define _GNU_SOURCE /* memmem */
#include "body.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "render.h"
#include "utf8.h"

static int fail(char *detail, size_t dlen, int status, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(char *detail, size_t dlen, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, dlen, fmt, ap);
    va_end(ap);
    return status;
}

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
    buf_free(&b->head);
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

/* ---- multipart/form-data ------------------------------------------------------------------------
 * RFC 2046 section 5.1.1 framing, RFC 7578 parts. The body is treated as if it started with CRLF,
 * so every delimiter, the first included, is CRLF "--" boundary; what precedes the first one is
 * the preamble and what follows the close delimiter ("--" boundary "--") the epilogue, both
 * ignored. After a delimiter come optional blanks and CRLF, the part's header lines, an empty
 * line, then the part's bytes up to the next delimiter. The delimiter is searched for byte by byte
 * across the pieces the body arrives in: since CR occurs in it only at its start, a mismatch after
 * k matched bytes gives those k bytes back to the part and restarts on the current byte only if it
 * is CR (no other restart point can exist), so nothing is ever buffered beyond the match. */
enum { MP_PREAMBLE, MP_AFTER_DELIM, MP_HEADERS, MP_DATA, MP_END };

static int form_fail(body_t *b, int why)
{
    if (!b->form_failed) b->form_failed = why;
    return -1;
}

/* A new part named key (its headers are in). */
static int part_begin(body_t *b, const char *key)
{
    flush_field(b);
    snprintf(b->cur_field, sizeof b->cur_field, "%s", key);
    if (!strcmp(key, "image") || !strcmp(key, "images")) {
        b->cur_is_image = 1;
        if (!body_new_image(b)) return form_fail(b, BODY_FORM_TOO_MANY_IMAGES);
    }
    return 0;
}

static int part_data(body_t *b, const void *data, size_t size)
{
    if (!size) return 0;
    if (b->cur_is_image) {
        if (buf_append(&b->images[b->n_images - 1], data, size)) return form_fail(b, BODY_FORM_ENOMEM);
    } else {
        if (b->cur_value.len + size > BODY_MAX_FIELD_BYTES) return form_fail(b, BODY_FORM_FIELD_TOO_LONG);
        if (buf_append(&b->cur_value, data, size)) return form_fail(b, BODY_FORM_ENOMEM);
    }
    return 0;
}

/* The value of parameter `name` in a header value such as `form-data; name="a"; filename="b"`
 * (or `multipart/form-data; boundary=x`): a token or a quoted string (backslash escapes a
 * character). 0 with out filled (NUL-terminated), -1 when absent or longer than outlen - 1. */
static int header_param(const char *v, size_t vlen, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name), i = 0;
    int quoted = 0;
    while (i < vlen) {
        /* skip to the next ';' outside quotes */
        while (i < vlen && (v[i] != ';' || quoted)) {
            if (v[i] == '"') quoted = !quoted;
            else if (v[i] == '\\' && quoted) i++;
            i++;
        }
        if (i >= vlen) return -1;
        i++; /* past ';' */
        while (i < vlen && (v[i] == ' ' || v[i] == '\t')) i++;
        size_t k = i;
        while (k < vlen && v[k] != '=' && v[k] != ';' && v[k] != ' ' && v[k] != '\t') k++;
        size_t e = k;
        while (e < vlen && (v[e] == ' ' || v[e] == '\t')) e++;
        if (k - i != nl || strncasecmp(v + i, name, nl) || e >= vlen || v[e] != '=') continue;
        e++;
        while (e < vlen && (v[e] == ' ' || v[e] == '\t')) e++;
        size_t o = 0;
        if (e < vlen && v[e] == '"') {
            for (e++; e < vlen && v[e] != '"'; e++) {
                if (v[e] == '\\' && e + 1 < vlen) e++;
                if (o + 1 >= outlen) return -1;
                out[o++] = v[e];
            }
            if (e >= vlen) return -1; /* unterminated quoted string */
        } else {
            for (; e < vlen && v[e] != ';' && v[e] != ' ' && v[e] != '\t'; e++) {
                if (o + 1 >= outlen) return -1;
                out[o++] = v[e];
            }
        }
        out[o] = 0;
        return 0;
    }
    return -1;
}

int body_form_begin(body_t *b, const char *content_type, char *detail, size_t dlen)
{
    char bnd[BODY_MAX_BOUNDARY + 2];
    const char *ct = content_type ? content_type : "";
    if (header_param(ct, strlen(ct), "boundary", bnd, sizeof bnd))
        return fail(detail, dlen, 400, "malformed multipart/form-data: the Content-Type has no boundary (or one longer than %d characters)",
                    BODY_MAX_BOUNDARY);
    size_t bl = strlen(bnd);
    if (!bl || bl > BODY_MAX_BOUNDARY)
        return fail(detail, dlen, 400, "malformed multipart/form-data: the boundary must have 1 to %d characters", BODY_MAX_BOUNDARY);
    for (size_t i = 0; i < bl; i++) /* the delimiter search needs a boundary without CR (and LF) */
        if (bnd[i] == '\r' || bnd[i] == '\n')
            return fail(detail, dlen, 400, "malformed multipart/form-data: the boundary contains a line break");
    b->delim_len = snprintf(b->delim, sizeof b->delim, "\r\n--%s", bnd);
    b->mp_state = MP_PREAMBLE;
    b->matched = 2; /* the CRLF the body is taken to start with */
    b->mp_after = 0;
    return 0;
}

/* The part's headers are complete in b->head: start the part. */
static int part_headers(body_t *b)
{
    const char *h = (const char *)b->head.p;
    size_t n = b->head.len;
    char name[sizeof b->cur_field];
    int have_disp = 0;
    for (size_t i = 0; i < n;) {
        const char *e = memmem(h + i, n - i, "\r\n", 2);
        size_t l = e ? (size_t)(e - (h + i)) : n - i;
        const char *line = h + i, *colon = memchr(line, ':', l);
        i += l + 2;
        if (!colon) continue;
        size_t kl = (size_t)(colon - line);
        const char *v = colon + 1;
        size_t vl = l - kl - 1;
        while (vl && (*v == ' ' || *v == '\t')) v++, vl--;
        if (kl == 19 && !strncasecmp(line, "Content-Disposition", 19)) {
            if (vl < 9 || strncasecmp(v, "form-data", 9) || (vl > 9 && v[9] != ';' && v[9] != ' ' && v[9] != '\t')) {
                b->mp_error = "a part's Content-Disposition is not form-data";
                return form_fail(b, BODY_FORM_MALFORMED);
            }
            if (header_param(v, vl, "name", name, sizeof name)) {
                b->mp_error = "a part has no name (or one longer than 63 bytes) in its Content-Disposition";
                return form_fail(b, BODY_FORM_MALFORMED);
            }
            have_disp = 1;
        } else if (kl == 12 && !strncasecmp(line, "Content-Type", 12) && vl >= 10 && !strncasecmp(v, "multipart/", 10)) {
            return form_fail(b, BODY_FORM_NESTED);
        }
    }
    if (!have_disp) {
        b->mp_error = "a part has no Content-Disposition header";
        return form_fail(b, BODY_FORM_MALFORMED);
    }
    buf_free(&b->head);
    return part_begin(b, name);
}

int body_form_feed(body_t *b, const void *data, size_t n)
{
    const uint8_t *p = data;
    if (b->form_failed) return -1;
    for (size_t i = 0; i < n;) {
        switch (b->mp_state) {
        case MP_PREAMBLE:
        case MP_DATA: {
            int keep = b->mp_state == MP_DATA;
            if (b->matched == 0) { /* nothing pending: pass everything up to the next CR at once */
                const uint8_t *cr = memchr(p + i, '\r', n - i);
                size_t run = cr ? (size_t)(cr - (p + i)) : n - i;
                if (keep && part_data(b, p + i, run)) return -1;
                i += run;
                if (!cr) break;
            }
            uint8_t c = p[i++];
            if (c == (uint8_t)b->delim[b->matched]) {
                if (++b->matched == b->delim_len) {
                    b->matched = 0;
                    b->mp_state = MP_AFTER_DELIM;
                    b->mp_after = 0;
                }
            } else {
                if (keep && part_data(b, b->delim, (size_t)b->matched)) return -1;
                if (c == '\r') b->matched = 1;
                else {
                    b->matched = 0;
                    if (keep && part_data(b, &c, 1)) return -1;
                }
            }
            break;
        }
        case MP_AFTER_DELIM: { /* "--" ends the body; blanks then CRLF start a part */
            uint8_t c = p[i++];
            if (b->mp_after == 1) { /* had '-' */
                if (c != '-') goto bad_delim;
                flush_field(b);
                b->mp_state = MP_END;
            } else if (b->mp_after == 3) { /* had CR */
                if (c != '\n') goto bad_delim;
                b->mp_state = MP_HEADERS;
                buf_free(&b->head);
            } else if (c == '-' && b->mp_after == 0) {
                b->mp_after = 1;
            } else if (c == ' ' || c == '\t') {
                b->mp_after = 2;
            } else if (c == '\r') {
                b->mp_after = 3;
            } else {
                goto bad_delim;
            }
            break;
        }
        case MP_HEADERS: { /* up to and including the empty line */
            uint8_t c = p[i++];
            if (buf_append(&b->head, &c, 1)) return form_fail(b, BODY_FORM_ENOMEM);
            size_t hl = b->head.len;
            const char *hp = (const char *)b->head.p;
            int done = (hl == 2 && !memcmp(hp, "\r\n", 2)) || (hl >= 4 && !memcmp(hp + hl - 4, "\r\n\r\n", 4));
            if (!done && hl > BODY_MAX_PART_HEADER_BYTES) {
                b->mp_error = "a part's headers are longer than " BODY_STR(BODY_MAX_PART_HEADER_BYTES) " bytes";
                return form_fail(b, BODY_FORM_MALFORMED);
            }
            if (done) {
                if (part_headers(b)) return -1;
                b->mp_state = MP_DATA;
                b->matched = 0;
            }
            break;
        }
        default: /* MP_END: the epilogue is ignored */
            i = n;
            break;
        }
    }
    return 0;
bad_delim:
    b->mp_error = "a boundary delimiter is followed by something other than a line break or \"--\"";
    return form_fail(b, BODY_FORM_MALFORMED);
}

int body_form_error(const body_t *b, char *detail, size_t dlen)
{
    switch (b->form_failed) {
    case BODY_FORM_TOO_MANY_IMAGES: return fail(detail, dlen, 413, "more than %d images in one request", BODY_MAX_IMAGES);
    case BODY_FORM_FIELD_TOO_LONG:
        return fail(detail, dlen, 422, "a form field other than 'image' is longer than %d bytes", BODY_MAX_FIELD_BYTES);
    case BODY_FORM_NESTED:
        return fail(detail, dlen, 415, "a part of type multipart/* (nested multipart, RFC 2388's multipart/mixed) is not "
                                       "supported: send each image as its own 'image' part");
    case BODY_FORM_ENOMEM: return fail(detail, dlen, 503, "out of memory while receiving the body");
    default:
        return fail(detail, dlen, 400, "malformed multipart/form-data body: %s", b->mp_error ? b->mp_error : "bad framing");
    }
}

int body_form_finish(body_t *b, request_t *rq, const config_t *cfg, char *detail, size_t dlen)
{
    flush_field(b);
    if (b->form_failed) return body_form_error(b, detail, dlen);
    if (b->mp_state != MP_END)
        return fail(detail, dlen, 400, "malformed multipart/form-data body: %s",
                    b->mp_state == MP_PREAMBLE ? "no boundary delimiter found (check the boundary in the Content-Type)"
                                               : "unterminated part (the closing --boundary-- is missing)");
    int st;
    for (int i = 0; i < b->n_fields; i++)
        if ((st = params_set(rq, cfg, b->fields[i].name, b->fields[i].value, detail, dlen))) return st;
    return 0;
}


/* The key jansson's JSON_REJECT_DUPLICATES stopped at, into out: the string token that ends at byte
 * pos of the body (jansson names it in its error text only when it is at most ~20 bytes long).
 * 0, or -1 when pos is not the end of a string. */
static int duplicate_key(const uint8_t *p, size_t len, size_t pos, char *out, size_t outlen)
{
    if (pos < 2 || pos > len || p[pos - 1] != '"') return -1;
    size_t close = pos - 1, open = close;
    for (;;) { /* inside a JSON string every '"' is escaped: the first unescaped one is the start */
        if (!open) return -1;
        open--;
        if (p[open] != '"') continue;
        size_t bs = 0;
        while (open > bs && p[open - 1 - bs] == '\\') bs++;
        if (bs % 2 == 0) break;
    }
    json_error_t je;
    json_t *s = json_loadb((const char *)p + open, close - open + 1, JSON_DECODE_ANY, &je);
    if (!json_is_string(s)) {
        json_decref(s);
        return -1;
    }
    snprintf(out, outlen, "%s", json_string_value(s));
    json_decref(s);
    return 0;
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
        /* a key twice is a repeated parameter (422, as in the query string), not malformed JSON */
        char key[256];
        if (duplicate_key(p, len, (size_t)je.position, key, sizeof key))
            return fail(detail, dlen, 422, "a parameter is given more than once (line %d, column %d)", je.line, je.column);
        int kl = utf8_cut(key, 64);
        return fail(detail, dlen, 422, "parameter '%.*s%s' is given more than once", kl, key, key[kl] ? "..." : "");
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
                st = fail(detail, dlen, 422, "unknown field '%.*s' (KServe bodies have 'instances' and 'parameters')", utf8_cut(key, 64), key);
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
