/* stream.c — a JSON answer whose large strings are written only while it is sent (see stream.h). */
#include "stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "render.h" /* b64_encode */

typedef struct {
    uint8_t *data;
    size_t len;
} blob_t_;

/* The answer's text as a list of pieces: skeleton text, or a blob written as base64. */
typedef struct {
    int blob; /* -1: text[off..off+len) of the skeleton */
    size_t off, len;
} piece_t;

struct stream {
    int64_t max_bytes, blob_chars;
    blob_t_ *blobs;
    int n_blobs, cap_blobs;
    char *text; /* the skeleton */
    piece_t *pieces;
    int n_pieces;
    uint64_t length;
    int cur;          /* the piece stream_read used last, and where it starts: reads move forward */
    uint64_t cur_pos;
};

stream_t *stream_new(int64_t max_bytes)
{
    stream_t *s = calloc(1, sizeof *s);
    if (s) s->max_bytes = max_bytes;
    return s;
}

void stream_free(stream_t *s)
{
    if (!s) return;
    for (int i = 0; i < s->n_blobs; i++) free(s->blobs[i].data);
    free(s->blobs);
    free(s->text);
    free(s->pieces);
    free(s);
}

json_t *stream_blob(stream_t *s, uint8_t *data, size_t len)
{
    if (s->n_blobs == s->cap_blobs) {
        int nc = s->cap_blobs ? 2 * s->cap_blobs : 16;
        blob_t_ *nb = realloc(s->blobs, sizeof *nb * (size_t)nc);
        if (!nb) {
            free(data);
            return NULL;
        }
        s->blobs = nb;
        s->cap_blobs = nc;
    }
    char ph[24];
    int pl = snprintf(ph, sizeof ph, "%cB%d", 0, s->n_blobs);
    json_t *j = json_stringn_nocheck(ph, (size_t)pl);
    if (!j) {
        free(data);
        return NULL;
    }
    if (len) { /* encoders grow their buffers by doubling: keep only what is used */
        uint8_t *fit = realloc(data, len);
        if (fit) data = fit;
    }
    s->blobs[s->n_blobs++] = (blob_t_){data, len};
    s->blob_chars += (int64_t)b64_encoded_len(len);
    return j;
}

json_t *stream_blob_f32(stream_t *s, const float *v, size_t n)
{
    uint8_t *b = malloc(n * 4 + 1);
    if (!b) return NULL;
    for (size_t i = 0; i < n; i++) { /* little-endian whatever the host */
        uint32_t u;
        memcpy(&u, v + i, 4);
        b[4 * i] = (uint8_t)u;
        b[4 * i + 1] = (uint8_t)(u >> 8);
        b[4 * i + 2] = (uint8_t)(u >> 16);
        b[4 * i + 3] = (uint8_t)(u >> 24);
    }
    return stream_blob(s, b, n * 4);
}

int64_t stream_bytes(const stream_t *s) { return s->blob_chars; }
int stream_over(const stream_t *s) { return s->max_bytes > 0 && s->blob_chars > s->max_bytes; }
int64_t stream_max(const stream_t *s) { return s->max_bytes; }

static int add_piece(stream_t *s, int *cap, int blob, size_t off, size_t len)
{
    if (s->n_pieces == *cap) {
        int nc = *cap ? 2 * *cap : 16;
        piece_t *np = realloc(s->pieces, sizeof *np * (size_t)nc);
        if (!np) return -1;
        s->pieces = np;
        *cap = nc;
    }
    s->pieces[s->n_pieces++] = (piece_t){blob, off, len};
    s->length += blob >= 0 ? b64_encoded_len(s->blobs[blob].len) : len;
    return 0;
}

int stream_finish(stream_t *s, const json_t *doc, size_t flags)
{
    free(s->text);
    free(s->pieces);
    s->pieces = NULL;
    s->n_pieces = 0;
    s->length = 0;
    s->cur = 0;
    s->cur_pos = 0;
    s->text = json_dumps(doc, flags);
    if (!s->text) return -1;
    /* a placeholder is written "\u0000B<index>": find each, keep the quotes around it as text */
    static const char mark[] = "\\u0000B";
    int cap = 0;
    size_t at = 0;
    for (const char *p = strstr(s->text, mark); p; p = strstr(p, mark)) {
        char *end;
        long idx = strtol(p + sizeof mark - 1, &end, 10);
        if (idx < 0 || idx >= s->n_blobs || *end != '"') { /* cannot happen: only placeholders hold a NUL */
            p += sizeof mark - 1;
            continue;
        }
        size_t off = (size_t)(p - s->text);
        if (add_piece(s, &cap, -1, at, off - at) || add_piece(s, &cap, (int)idx, 0, 0)) return -1;
        at = (size_t)(end - s->text);
        p = end;
    }
    return add_piece(s, &cap, -1, at, strlen(s->text) - at);
}

uint64_t stream_length(const stream_t *s) { return s->length; }

/* base64 characters [from, from + n) of blob b into out */
static void blob_chars(const blob_t_ *b, size_t from, size_t n, char *out)
{
    char tmp[4096 + 1];
    while (n) {
        size_t q0 = from / 4, q1 = (from + n + 3) / 4; /* the 4-character quanta the range touches */
        if (q1 - q0 > (sizeof tmp - 1) / 4) q1 = q0 + (sizeof tmp - 1) / 4;
        size_t i0 = 3 * q0, i1 = 3 * q1 < b->len ? 3 * q1 : b->len;
        b64_encode(b->data + i0, i1 - i0, tmp);
        size_t skip = from - 4 * q0, take = 4 * (q1 - q0) - skip;
        if (take > n) take = n;
        memcpy(out, tmp + skip, take);
        out += take;
        from += take;
        n -= take;
    }
}

size_t stream_read(stream_t *s, uint64_t pos, char *buf, size_t max)
{
    if (!s->n_pieces || pos >= s->length) return 0;
    if (pos < s->cur_pos) { /* a reader that went back: start over */
        s->cur = 0;
        s->cur_pos = 0;
    }
    size_t done = 0;
    while (done < max && s->cur < s->n_pieces) {
        const piece_t *pc = &s->pieces[s->cur];
        uint64_t plen = pc->blob >= 0 ? b64_encoded_len(s->blobs[pc->blob].len) : pc->len;
        if (pos >= s->cur_pos + plen) {
            s->cur_pos += plen;
            s->cur++;
            continue;
        }
        size_t in = (size_t)(pos - s->cur_pos), n = (size_t)(plen - in);
        if (n > max - done) n = max - done;
        if (pc->blob >= 0) blob_chars(&s->blobs[pc->blob], in, n, buf + done);
        else memcpy(buf + done, s->text + pc->off + in, n);
        done += n;
        pos += n;
    }
    return done;
}

char *stream_text(stream_t *s)
{
    char *t = malloc(s->length + 1);
    if (!t) return NULL;
    size_t n = stream_read(s, 0, t, s->length);
    t[n] = 0;
    return t;
}
