/* server/utf8.c: what goes into a problem detail or a log line is valid UTF-8 whatever the client
 * sent, and quoting never cuts a character in two. The validity check is an independent one:
 * jansson's own (json_stringn accepts exactly valid UTF-8). */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "utf8.h"

static int jansson_accepts(const char *s)
{
    json_t *j = json_stringn(s, strlen(s));
    json_decref(j);
    return j != NULL;
}

static void test_invalid_bytes_are_escaped_and_jansson_accepts_the_result(void **st)
{
    (void)st;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"/\xff", "/\\xFF"},                         /* GET /%ff */
        {"caf\xc3\xa9", "caf\xc3\xa9"},              /* valid: unchanged */
        {"caf\xc3", "caf\\xC3"},                     /* a cut sequence */
        {"\xc0\xaf", "\\xC0\\xAF"},                  /* overlong '/' */
        {"\xed\xa0\x80", "\\xED\\xA0\\x80"},         /* a surrogate */
        {"\xf4\x90\x80\x80", "\\xF4\\x90\\x80\\x80"}, /* past U+10FFFF */
        {"\xf0\x9f\x98\x80!", "\xf0\x9f\x98\x80!"},  /* U+1F600 */
        {"a\x80z", "a\\x80z"},                       /* a lone continuation byte */
    };
    char out[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        utf8_clean(out, sizeof out, cases[i].in, strlen(cases[i].in));
        assert_string_equal(out, cases[i].out);
        assert_true(jansson_accepts(out));
        assert_false(strcmp(cases[i].in, cases[i].out) && jansson_accepts(cases[i].in));
    }
}

static void test_every_two_byte_string_comes_out_valid(void **st)
{
    (void)st;
    char in[3] = {0}, out[16];
    for (int a = 1; a < 256; a++)
        for (int b = 1; b < 256; b++) {
            in[0] = (char)a;
            in[1] = (char)b;
            utf8_clean(out, sizeof out, in, 2);
            if (!jansson_accepts(out)) fail_msg("%02x %02x -> not valid UTF-8", a, b);
            assert_int_equal(utf8_valid(out, strlen(out)), 1);
            assert_int_equal(utf8_valid(in, 2), jansson_accepts(in));
        }
}

static void test_a_full_buffer_is_cut_between_characters(void **st)
{
    (void)st;
    char out[8];
    /* "ééééé" is 10 bytes: 7 fit, but the 4th character would be cut, so 3 characters (6 bytes) */
    size_t n = utf8_clean(out, sizeof out, "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 10);
    assert_int_equal(n, 6);
    assert_true(jansson_accepts(out));
    /* an escape is never cut either: "ab" + "\xFF" does not fit in 5 bytes + NUL */
    char o6[6];
    n = utf8_clean(o6, sizeof o6, "ab\xff", 3);
    assert_string_equal(o6, "ab");
}

static void test_quoting_64_bytes_never_cuts_a_multibyte_character(void **st)
{
    (void)st;
    char s[200], q[200];
    /* 63 ASCII bytes then "é": "%.64s" would take half of it */
    memset(s, 'a', 63);
    strcpy(s + 63, "\xc3\xa9tail");
    assert_int_equal(utf8_cut(s, 64), 63);
    snprintf(q, sizeof q, "'%.*s'", utf8_cut(s, 64), s);
    assert_true(jansson_accepts(q));
    assert_int_equal(utf8_cut(s, 65), 65);
    assert_int_equal(utf8_cut("abc", 64), 3);
    assert_int_equal(utf8_cut("\xf0\x9f\x98\x80", 3), 0);
    assert_int_equal(utf8_cut("\xff\xfe", 1), 1); /* invalid bytes are single units */
}

int main(void)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_invalid_bytes_are_escaped_and_jansson_accepts_the_result),
        cmocka_unit_test(test_every_two_byte_string_comes_out_valid),
        cmocka_unit_test(test_a_full_buffer_is_cut_between_characters),
        cmocka_unit_test(test_quoting_64_bytes_never_cuts_a_multibyte_character),
    };
    return cmocka_run_group_tests(t, NULL, NULL);
}
