/* server/stream.c: the answer read from a stream, in any piece sizes, is byte for byte json_dumps of
 * the same document with the base64 strings inline (built here with jansson and b64_encode, not
 * with the stream). */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "render.h"
#include "stream.h"

static char *b64(const uint8_t *p, size_t n)
{
    char *s = malloc(b64_encoded_len(n) + 1);
    b64_encode(p, n, s);
    return s;
}

/* the same document twice: with blobs in the stream, and with inline strings */
static void build(stream_t *st, json_t **with_blobs, json_t **inline_doc, size_t n_blobs, const size_t *sizes)
{
    *with_blobs = json_object();
    *inline_doc = json_object();
    json_t *a = json_array(), *b = json_array();
    for (size_t i = 0; i < n_blobs; i++) {
        uint8_t *data = malloc(sizes[i] + 1);
        for (size_t k = 0; k < sizes[i]; k++) data[k] = (uint8_t)(k * 131 + i * 7 + (k >> 5));
        char *s = b64(data, sizes[i]);
        json_array_append_new(b, json_pack("{s:s, s:i}", "png", s, "i", (int)i));
        free(s);
        json_array_append_new(a, json_pack("{s:o, s:i}", "png", stream_blob(st, data, sizes[i]), "i", (int)i));
    }
    json_object_set_new(*with_blobs, "label", json_string("quote \" backslash \\ \xc3\xa9"));
    json_object_set_new(*inline_doc, "label", json_string("quote \" backslash \\ \xc3\xa9"));
    json_object_set_new(*with_blobs, "maps", a);
    json_object_set_new(*inline_doc, "maps", b);
}

static void test_streamed_text_equals_json_dumps_of_the_inline_document(void **st)
{
    (void)st;
    static const size_t sizes[] = {0, 1, 2, 3, 4, 5, 299, 3072, 3073, 100000};
    stream_t *s = stream_new(0);
    json_t *d1, *d2;
    build(s, &d1, &d2, sizeof sizes / sizeof sizes[0], sizes);
    char *want = json_dumps(d2, JSON_COMPACT);
    assert_int_equal(stream_finish(s, d1, JSON_COMPACT), 0);
    json_decref(d1);
    json_decref(d2);
    assert_int_equal(stream_length(s), strlen(want));
    char *got = stream_text(s);
    assert_string_equal(got, want);
    free(got);
    /* pieces of every size from 1 to 97 bytes, as a socket would take them */
    size_t n = strlen(want);
    char *buf = malloc(n + 1);
    for (size_t piece = 1; piece < 98; piece += 3) {
        size_t pos = 0, k;
        while ((k = stream_read(s, pos, buf + pos, piece)) > 0) pos += k;
        assert_int_equal(pos, n);
        assert_memory_equal(buf, want, n);
    }
    assert_int_equal(stream_read(s, n, buf, 10), 0);
    free(buf);
    free(want);
    stream_free(s);
}

static void test_blob_bytes_count_against_the_cap(void **st)
{
    (void)st;
    stream_t *s = stream_new(10);
    uint8_t *d = malloc(6);
    memset(d, 1, 6);
    json_t *j = stream_blob(s, d, 6); /* 8 characters */
    assert_int_equal(stream_bytes(s), 8);
    assert_false(stream_over(s));
    json_decref(j);
    d = malloc(3);
    memset(d, 2, 3);
    j = stream_blob(s, d, 3); /* 12 > 10 */
    assert_true(stream_over(s));
    json_decref(j);
    stream_free(s);
}

static void test_float_blobs_are_little_endian(void **st)
{
    (void)st;
    stream_t *s = stream_new(0);
    const float v[2] = {1.0f, -2.5f};
    json_t *doc = json_pack("{s:o}", "data", stream_blob_f32(s, v, 2));
    assert_int_equal(stream_finish(s, doc, JSON_COMPACT), 0);
    json_decref(doc);
    char *t = stream_text(s);
    /* 1.0f = 00 00 80 3f, -2.5f = 00 00 20 c0 */
    const uint8_t le[8] = {0, 0, 0x80, 0x3f, 0, 0, 0x20, 0xc0};
    char *want_b64 = b64(le, 8), want[64];
    snprintf(want, sizeof want, "{\"data\":\"%s\"}", want_b64);
    assert_string_equal(t, want);
    free(want_b64);
    free(t);
    stream_free(s);
}

int main(void)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_streamed_text_equals_json_dumps_of_the_inline_document),
        cmocka_unit_test(test_blob_bytes_count_against_the_cap),
        cmocka_unit_test(test_float_blobs_are_little_endian),
    };
    return cmocka_run_group_tests(t, NULL, NULL);
}
