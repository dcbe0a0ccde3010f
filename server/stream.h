/* stream.h — a JSON answer whose large strings are written only while it is sent.
 *
 * An explain answer is a small document around large base64 strings (PNGs, raw float32 maps). Held
 * as text it was built three times over (the base64 string, jansson's copy of it, json_dumps of the
 * whole document) and then kept whole until the client had read it: a 628 MB answer took 1.1 GB of
 * RSS, and six clients that never read a 51 MB answer held 315 MB between them.
 *
 * Here the large strings are blobs: their bytes (a PNG, little-endian floats) are kept as they are,
 * and the document gets a placeholder string instead (a NUL byte, 'B' and the blob's index: no
 * other string in a document can hold a NUL, and jansson writes it as \u0000). stream_finish dumps
 * the skeleton and cuts it at the placeholders; stream_read then produces the text from any
 * position, base64-encoding the blob bytes as they are asked for — libmicrohttpd's content reader
 * calls it as the socket takes more. The text is byte for byte what json_dumps would write for the
 * document with the base64 strings inline (tests/unit/test_stream.c), at 3/4 of their size in
 * memory and without the copies.
 *
 * The size is known as the blobs come in (stream_bytes), so a cap (max_response_bytes) can stop the
 * rendering as soon as it is passed, and the final length is known before the first byte is sent
 * (Content-Length).
 *
 * Ownership: a stream_t owns its blobs and its text; stream_free releases them. A stream is built by
 * one thread and read by one thread at a time (the worker, then libmicrohttpd's).
 */
#ifndef EXPLAIND_STREAM_H
#define EXPLAIND_STREAM_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct stream stream_t;

/* max_bytes: the cap on the answer's text (stream_over); 0 = none. NULL when out of memory. */
stream_t *stream_new(int64_t max_bytes);
void stream_free(stream_t *s);

/* A JSON string value standing for base64(data[0..len)). Takes data (malloc'd; freed by the stream,
 * also on failure). NULL when out of memory. */
json_t *stream_blob(stream_t *s, uint8_t *data, size_t len);
/* The same for n float32 values, written little-endian (the API's raw dtype); the floats are copied. */
json_t *stream_blob_f32(stream_t *s, const float *v, size_t n);

/* Base64 characters of the blobs so far, and whether they already pass max_bytes. */
int64_t stream_bytes(const stream_t *s);
int stream_over(const stream_t *s);
int64_t stream_max(const stream_t *s);

/* Dump doc (json_dumps flags) as the answer's skeleton; the stream keeps the text, not doc. 0, or -1
 * when out of memory. After it: */
int stream_finish(stream_t *s, const json_t *doc, size_t flags);
/* the whole answer's length in bytes, */
uint64_t stream_length(const stream_t *s);
/* up to max bytes of the answer from byte pos into buf: the count (0 at or past the end); */
size_t stream_read(stream_t *s, uint64_t pos, char *buf, size_t max);
/* or all of it as one malloc'd NUL-terminated string (NULL when out of memory). */
char *stream_text(stream_t *s);

#endif
