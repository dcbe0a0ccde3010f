/* test_upload_npy.c — tensor uploads (server/decode.c, tensor_decode_npy): NumPy's .npy format
 * (numpy/lib/format.py: magic "\x93NUMPY", version, header length, a Python dict literal with
 * 'descr', 'fortran_order' and 'shape', padded with spaces to 64 bytes and ended by '\n', then the
 * data). Headers are written here the way numpy.save writes them; the e2e suite sends real
 * numpy.save files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "decode.h"

/* A .npy file: version major (1: 2-byte header length, 2: 4-byte), the dict, then n data bytes. */
static uint8_t *npy(int major, const char *dict, const void *data, size_t n, size_t *len)
{
    size_t pre = major == 1 ? 10 : 12, dl = strlen(dict), hl = dl + 1;
    while ((pre + hl) % 64) hl++;
    uint8_t *b = malloc(pre + hl + n + 1);
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (uint8_t)major;
    b[7] = 0;
    if (major == 1) {
        b[8] = (uint8_t)hl;
        b[9] = (uint8_t)(hl >> 8);
    } else {
        for (int i = 0; i < 4; i++) b[8 + i] = (uint8_t)(hl >> (8 * i));
    }
    memcpy(b + pre, dict, dl);
    memset(b + pre + dl, ' ', hl - dl - 1);
    b[pre + hl - 1] = '\n';
    if (n) memcpy(b + pre + hl, data, n);
    *len = pre + hl + n;
    return b;
}

static void test_float32_chw_is_read_as_is(void **state)
{
    (void)state;
    float v[12];
    for (int i = 0; i < 12; i++) v[i] = (float)i * 0.5f - 2.f;
    size_t len;
    uint8_t *b = npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2, 2), }", v, sizeof v, &len);
    assert_true(upload_is_npy(b, len));
    tensor_upload_t t;
    eng_err_t err = {0};
    assert_int_equal(tensor_decode_npy(b, len, 100, &t, &err), ENG_OK);
    assert_int_equal(t.rank, 3);
    assert_int_equal(t.dims[0], 3);
    assert_int_equal(t.dims[2], 2);
    assert_int_equal(t.count, 12);
    assert_memory_equal(t.data, v, sizeof v);
    tensor_upload_free(&t);
    assert_null(t.data);
    free(b);
}

static void test_big_endian_is_swapped_and_version_2_headers_read(void **state)
{
    (void)state;
    float v[4] = {1.f, -2.5f, 3e-7f, 1e30f};
    uint8_t be[16];
    for (int i = 0; i < 4; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        for (int k = 0; k < 4; k++) be[4 * i + k] = (uint8_t)(u >> (24 - 8 * k));
    }
    size_t len;
    uint8_t *b = npy(2, "{'descr': '>f4', 'fortran_order': False, 'shape': (1, 1, 2, 2), }", be, sizeof be, &len);
    tensor_upload_t t;
    assert_int_equal(tensor_decode_npy(b, len, 4, &t, NULL), ENG_OK);
    assert_int_equal(t.rank, 4);
    assert_memory_equal(t.data, v, sizeof v);
    tensor_upload_free(&t);
    free(b);
}

static int status_of(const char *dict, size_t data_bytes, size_t max, char *msg, size_t ml)
{
    uint8_t *zeros = calloc(data_bytes + 1, 1);
    size_t len;
    uint8_t *b = npy(1, dict, zeros, data_bytes, &len);
    tensor_upload_t t;
    eng_err_t err = {0};
    int st = tensor_decode_npy(b, len, max, &t, &err);
    snprintf(msg, ml, "%s", err.msg);
    if (st) {
        assert_null(t.data);
        assert_int_equal(t.count, 0);
    }
    tensor_upload_free(&t);
    free(b);
    free(zeros);
    return st;
}

static void test_wrong_dtype_order_and_rank_are_einval(void **state)
{
    (void)state;
    char m[512];
    assert_int_equal(status_of("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }", 32, 100, m, sizeof m), ENG_EINVAL);
    assert_non_null(strstr(m, "<f8"));
    assert_non_null(strstr(m, "float32"));
    assert_int_equal(status_of("{'descr': '|u1', 'fortran_order': False, 'shape': (4,), }", 4, 100, m, sizeof m), ENG_EINVAL);
    assert_int_equal(status_of("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16, 100, m, sizeof m), ENG_EINVAL);
    assert_non_null(strstr(m, "Fortran"));
    assert_int_equal(status_of("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 2), }", 8, 100, m, sizeof m), ENG_EINVAL);
    assert_int_equal(status_of("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", 4, 100, m, sizeof m), ENG_EINVAL);
}

static void test_data_length_must_match_the_header(void **state)
{
    (void)state;
    char m[512];
    const char *d = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4, 4), }";
    assert_int_equal(status_of(d, 3 * 16 * 4 - 1, 1000, m, sizeof m), ENG_EFORMAT);
    assert_non_null(strstr(m, "191 bytes"));
    assert_int_equal(status_of(d, 3 * 16 * 4 + 8, 1000, m, sizeof m), ENG_EFORMAT);
    assert_int_equal(status_of(d, 3 * 16 * 4, 1000, m, sizeof m), ENG_OK);
}

static void test_more_elements_than_the_model_is_toobig_before_reading(void **state)
{
    (void)state;
    char m[512];
    /* a shape of 10^12 elements with no data: refused from the header, nothing allocated */
    assert_int_equal(status_of("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }", 0, 3 * 224 * 224, m,
                               sizeof m),
                     ENG_ETOOBIG);
    assert_non_null(strstr(m, "150528"));
}

static void test_malformed_headers_are_eformat(void **state)
{
    (void)state;
    char m[512];
    assert_int_equal(status_of("{'descr': '<f4', 'shape': (2,), }", 8, 10, m, sizeof m), ENG_EFORMAT);
    assert_int_equal(status_of("{'descr': '<f4', 'fortran_order': False, 'shape': [2], }", 8, 10, m, sizeof m), ENG_EFORMAT);
    assert_int_equal(status_of("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,), }", 8, 10, m, sizeof m), ENG_EFORMAT);
    assert_int_equal(status_of("{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }", 8, 10, m, sizeof m), ENG_EFORMAT);
    /* a header length past the end of the upload */
    size_t len;
    uint8_t *b = npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", "12345678", 8, &len);
    b[8] = 0xff;
    b[9] = 0x7f;
    tensor_upload_t t;
    assert_int_equal(tensor_decode_npy(b, len, 10, &t, NULL), ENG_EFORMAT);
    b[6] = 9; /* unknown version */
    assert_int_equal(tensor_decode_npy(b, len, 10, &t, NULL), ENG_EFORMAT);
    assert_int_equal(tensor_decode_npy(b, 7, 10, &t, NULL), ENG_EFORMAT);
    free(b);
    assert_false(upload_is_npy((const uint8_t *)"\x89PNG\r\n\x1a\n", 8));
    assert_false(upload_is_npy((const uint8_t *)"\x93NUMP", 5));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_float32_chw_is_read_as_is),
        cmocka_unit_test(test_big_endian_is_swapped_and_version_2_headers_read),
        cmocka_unit_test(test_wrong_dtype_order_and_rank_are_einval),
        cmocka_unit_test(test_data_length_must_match_the_header),
        cmocka_unit_test(test_more_elements_than_the_model_is_toobig_before_reading),
        cmocka_unit_test(test_malformed_headers_are_eformat),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
