/* utf8.h — untrusted bytes made safe for JSON text.
 *
 * jansson refuses a string that is not valid UTF-8 (json_pack fails, json_string returns NULL), so
 * a problem detail quoting a URL path with %ff in it, or a label cut by "%.64s" in the middle of a
 * multibyte character, used to lose its whole answer (500 "no response was produced").
 *
 * Well-formed means Unicode's Table 3-7: no overlong forms, no surrogates, nothing past U+10FFFF.
 * Every byte that does not start a well-formed sequence is written as the four ASCII characters
 * \xHH (so the client still sees which byte it sent), and text is only ever cut between characters.
 */
#ifndef EXPLAIND_UTF8_H
#define EXPLAIND_UTF8_H

#include <stddef.h>

/* Copy src[0..n) into dst[cap] (cap >= 1) as valid UTF-8, NUL-terminated: invalid bytes become
 * "\xHH"; an embedded NUL ends the copy; when the result does not fit it is cut between characters
 * (never inside a sequence or an escape). Returns the length written (< cap). */
size_t utf8_clean(char *dst, size_t cap, const char *src, size_t n);

/* The longest prefix of the NUL-terminated s of at most max bytes that does not end inside a
 * well-formed UTF-8 sequence: the precision for "%.*s" when quoting at most max bytes of s. */
int utf8_cut(const char *s, int max);

/* 1 if s[0..n) is valid UTF-8 (what jansson accepts), else 0. */
int utf8_valid(const char *s, size_t n);

#endif
