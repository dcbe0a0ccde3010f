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

static void test_multipart_fields_and_limits(void **st)
{
    (void)st;
    body_t b = {0};
    request_t r;
    char d[768];
    params_init(&r, R_EXPLAIN);
    assert_int_equal(body_form_part(&b, "image", 0, "\x89PN", 3), 0);
    assert_int_equal(body_form_part(&b, "image", 3, "G", 1), 0);
    assert_int_equal(body_form_part(&b, "top_k", 0, "2", 1), 0);
    assert_int_equal(body_form_finish(&b, 1, &r, &cfg, d, sizeof d), 0);
    assert_int_equal(b.n_images, 1);
    assert_memory_equal(b.images[0].p, "\x89PNG", 4);
    assert_int_equal(r.top_k, 2);
    body_free(&b);

    static char big[BODY_MAX_FIELD_BYTES + 1];
    memset(big, '1', sizeof big);
    assert_int_equal(body_form_part(&b, "methods", 0, big, sizeof big), -1);
    assert_int_equal(body_form_finish(&b, 1, &r, &cfg, d, sizeof d), 422);
    body_free(&b);

    for (int i = 0; i < BODY_MAX_IMAGES; i++) assert_int_equal(body_form_part(&b, "images", 0, "x", 1), 0);
    assert_int_equal(body_form_part(&b, "images", 0, "x", 1), -1);
    assert_int_equal(body_form_error(&b, d, sizeof d), 413);
    body_free(&b);

    assert_int_equal(body_form_finish(&b, 0, &r, &cfg, d, sizeof d), 400); /* the post processor failed */
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
    };
    return cmocka_run_group_tests(t, NULL, NULL);
}
