/* Request bodies (server/body.c): the JSON, KServe and multipart cases that answer 4xx, and the
 * bug the request fuzzer found (tests/fuzz/regressions/request/). Under make test-asan a memory
 * error here is a crash, not a garbled detail. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "body.h"

static config_t cfg;

static int parse_json(const char *text, int kserve, body_t *b, request_t *r, char *d, size_t dl)
{
    params_init(r, R_EXPLAIN);
    memset(b, 0, sizeof *b);
    return body_parse_json(b, (const uint8_t *)text, strlen(text), kserve, 0, r, &cfg, d, dl);
}

/* found by fuzz_request: the detail was formatted from the key after the document holding it was
 * freed (heap-use-after-free) */
static void test_kserve_unknown_field_is_422_naming_it(void **st)
{
    (void)st;
    body_t b;
    request_t r;
    char d[768];
    assert_int_equal(parse_json("{\"instances\": [{\"b64\": \"AAAA\"}], \"param0eters_with_a_long_name\": {}}", 1, &b, &r, d,
                                sizeof d),
                     422);
    assert_non_null(strstr(d, "unknown field 'param0eters_with_a_long_name'"));
    body_free(&b);
}

static void test_json_images_are_decoded_and_parameters_applied(void **st)
{
    (void)st;
    body_t b;
    request_t r;
    char d[768];
    assert_int_equal(parse_json("{\"image\": \"aGVsbG8=\", \"top_k\": 3}", 0, &b, &r, d, sizeof d), 0);
    assert_int_equal(b.n_images, 1);
    assert_int_equal(b.images[0].len, 5);
    assert_memory_equal(b.images[0].p, "hello", 5);
    assert_int_equal(r.top_k, 3);
    body_free(&b);
    assert_int_equal(b.n_images, 0);
}

static void test_json_errors(void **st)
{
    (void)st;
    body_t b;
    request_t r;
    char d[768];
    assert_int_equal(parse_json("{\"image\": \"aGVsbG8=\", \"top_k\": 3, \"top_k\": 4}", 0, &b, &r, d, sizeof d), 422);
    assert_non_null(strstr(d, "'top_k' is given more than once"));
    body_free(&b);
    assert_int_equal(parse_json("{\"image\": \"a$b\"}", 0, &b, &r, d, sizeof d), 400);
    assert_non_null(strstr(d, "invalid base64"));
    body_free(&b);
    assert_int_equal(parse_json("[1]", 0, &b, &r, d, sizeof d), 400);
    body_free(&b);
    assert_int_equal(parse_json("{\"image\": \"AAAA\", \"images\": []}", 0, &b, &r, d, sizeof d), 422);
    body_free(&b);
    assert_int_equal(parse_json("{\"instances\": []}", 1, &b, &r, d, sizeof d), 400);
    body_free(&b);
    memset(&b, 0, sizeof b);
    params_init(&r, R_EXPLAIN);
    assert_int_equal(body_parse_json(&b, (const uint8_t *)"", 0, 0, 0, &r, &cfg, d, sizeof d), 400);
    assert_int_equal(body_parse_json(&b, (const uint8_t *)"", 0, 0, 1, &r, &cfg, d, sizeof d), 0);
}

/* A multipart body fed in pieces of `piece` bytes (1: byte by byte, the hardest split for the
 * delimiter search). Returns the status of body_form_error at the first refusal, else finish's. */
static int multipart(body_t *b, request_t *r, const char *ctype, const char *body, size_t len, size_t piece, char *d,
                     size_t dl)
{
    memset(b, 0, sizeof *b);
    params_init(r, R_EXPLAIN);
    int st = body_form_begin(b, ctype, d, dl);
    if (st) return st;
    for (size_t i = 0; i < len; i += piece)
        if (body_form_feed(b, body + i, len - i < piece ? len - i : piece)) return body_form_error(b, d, dl);
    return body_form_finish(b, r, &cfg, d, dl);
}

#define MP(ctype, lit, piece) multipart(&b, &r, ctype, lit, sizeof lit - 1, piece, d, sizeof d)

static void test_multipart_fields_and_limits(void **st)
{
    (void)st;
    body_t b;
    request_t r;
    char d[768];
    static const char two[] = "preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
                              "Content-Type: image/png\r\n\r\n\x89PNG\r\n--X\r\n--XyZ\r\n"
                              "content-disposition: form-data; name=top_k\r\n\r\n2\r\n--XyZ--\r\nepilogue";
    for (size_t piece = 1; piece <= sizeof two; piece++) { /* every split of the body into pieces */
        assert_int_equal(MP("multipart/form-data; boundary=XyZ", two, piece), 0);
        assert_int_equal(b.n_images, 1);
        /* the part's bytes up to the delimiter, a CRLF "--X" that is not one included */
        assert_int_equal(b.images[0].len, 9);
        assert_memory_equal(b.images[0].p, "\x89PNG\r\n--X", 9);
        assert_int_equal(r.top_k, 2);
        body_free(&b);
    }

    static char big[BODY_MAX_FIELD_BYTES + 200];
    int n = snprintf(big, sizeof big, "--b\r\nContent-Disposition: form-data; name=\"methods\"\r\n\r\n");
    memset(big + n, '1', BODY_MAX_FIELD_BYTES + 1);
    assert_int_equal(multipart(&b, &r, "multipart/form-data; boundary=b", big, (size_t)n + BODY_MAX_FIELD_BYTES + 1, 4096, d,
                               sizeof d),
                     422);
    assert_non_null(strstr(d, "longer than 8192 bytes"));
    body_free(&b);
}

static void test_multipart_over_max_images_is_413_while_streaming(void **st)
{
    (void)st;
    body_t b;
    char d[768];
    static const char part[] = "--b\r\nContent-Disposition: form-data; name=\"images\"\r\n\r\nx\r\n";
    memset(&b, 0, sizeof b);
    assert_int_equal(body_form_begin(&b, "multipart/form-data; boundary=b", d, sizeof d), 0);
    for (int i = 0; i < BODY_MAX_IMAGES; i++) assert_int_equal(body_form_feed(&b, part, sizeof part - 1), 0);
    /* the 1025th part's headers are enough: refused before the body ends */
    assert_int_equal(body_form_feed(&b, part, sizeof part - 1), -1);
    assert_int_equal(body_form_error(&b, d, sizeof d), 413);
    body_free(&b);
}

static void test_one_character_multipart_boundary_is_accepted(void **st)
{
    (void)st;
    body_t b;
    request_t r;
    char d[768];
    static const char body[] = "--a\r\nContent-Disposition: form-data; name=\"top_k\"\r\n\r\n3\r\n--a--";
    assert_int_equal(MP("multipart/form-data; boundary=a", body, 1), 0);
    assert_int_equal(r.top_k, 3);
    body_free(&b);
    assert_int_equal(MP("multipart/form-data; charset=utf-8; BOUNDARY=\"a\"", body, 7), 0);
    assert_int_equal(r.top_k, 3);
    body_free(&b);
}

static void test_nested_multipart_is_415(void **st)
{
    (void)st;
    body_t b;
    request_t r;
    char d[768];
    static const char body[] = "--b\r\nContent-Disposition: form-data; name=\"files\"\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n"
                               "--c\r\nContent-Disposition: file; filename=\"a.png\"\r\n\r\nxx\r\n--c--\r\n--b--\r\n";
    assert_int_equal(MP("multipart/form-data; boundary=b", body, 5), 415);
    assert_non_null(strstr(d, "nested multipart"));
    body_free(&b);
}

static void test_malformed_multipart_is_400_saying_why(void **st)
{
    (void)st;
    body_t b;
    request_t r;
    char d[768];
    static const struct {
        const char *ctype, *body, *why;
    } cases[] = {
        {"multipart/form-data", "--b--", "no boundary"},
        {"multipart/form-data; boundary=\"\"", "--b--", "1 to 70"},
        {"multipart/form-data; boundary=b", "no delimiter at all", "no boundary delimiter found"},
        {"multipart/form-data; boundary=b", "--b\r\nContent-Disposition: form-data; name=\"top_k\"\r\n\r\n3", "unterminated part"},
        {"multipart/form-data; boundary=b", "--b\r\nContent-Disposition: form-data\r\n\r\n3\r\n--b--", "has no name"},
        {"multipart/form-data; boundary=b", "--b\r\nContent-Type: text/plain\r\n\r\n3\r\n--b--", "no Content-Disposition"},
        {"multipart/form-data; boundary=b", "--b\r\nContent-Disposition: attachment; name=x\r\n\r\n3\r\n--b--", "not form-data"},
        {"multipart/form-data; boundary=b", "--bX\r\n", "something other than"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(multipart(&b, &r, cases[i].ctype, cases[i].body, strlen(cases[i].body), 3, d, sizeof d), 400);
        if (!strstr(d, cases[i].why)) fail_msg("case %zu: '%s' does not say '%s'", i, d, cases[i].why);
        body_free(&b);
    }
}

static void test_duplicated_json_key_is_named_whatever_its_length(void **st)
{
    (void)st;
    body_t b;
    request_t r;
    char d[768];
    /* jansson names the key in its error text only up to ~20 bytes: a longer one was named '?' */
    const char *k = "sanity_noise_samples";
    char text[400];
    snprintf(text, sizeof text, "{\"%s\": 1, \"%s\": 2}", k, k);
    assert_int_equal(parse_json(text, 0, &b, &r, d, sizeof d), 422);
    assert_non_null(strstr(d, "parameter 'sanity_noise_samples' is given more than once"));
    body_free(&b);
    char longkey[101];
    memset(longkey, 'k', 100);
    longkey[100] = 0;
    snprintf(text, sizeof text, "{\"image\": \"AAAA\", \"%s\": 1, \"%s\": 2}", longkey, longkey);
    assert_int_equal(parse_json(text, 0, &b, &r, d, sizeof d), 422);
    assert_non_null(strstr(d, "parameter 'kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk...' is given"));
    body_free(&b);
    /* escapes in the key are decoded */
    assert_int_equal(parse_json("{\"a\\\"b\\\\\": 1, \"a\\\"b\\\\\": 2}", 0, &b, &r, d, sizeof d), 422);
    assert_non_null(strstr(d, "parameter 'a\"b\\' is given"));
    body_free(&b);
}

int main(void)
{
    config_defaults(&cfg);
    config_finalize(&cfg);
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_kserve_unknown_field_is_422_naming_it),
        cmocka_unit_test(test_json_images_are_decoded_and_parameters_applied),
        cmocka_unit_test(test_json_errors),
        cmocka_unit_test(test_multipart_fields_and_limits),
        cmocka_unit_test(test_multipart_over_max_images_is_413_while_streaming),
        cmocka_unit_test(test_one_character_multipart_boundary_is_accepted),
        cmocka_unit_test(test_nested_multipart_is_415),
        cmocka_unit_test(test_malformed_multipart_is_400_saying_why),
        cmocka_unit_test(test_duplicated_json_key_is_named_whatever_its_length),
    };
    return cmocka_run_group_tests(t, NULL, NULL);
}
