/* utf8.c — untrusted bytes made safe for JSON text (see utf8.h). */
#include "utf8.h"

#include <stdio.h>
#include <string.h>

/* Length of the well-formed sequence at p (n bytes available): 1..4, or 0 when p[0] does not start
 * one (Unicode 15, Table 3-7). */
static int seq_len(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    if (c < 0x80) return 1;
    int len;
    unsigned lo = 0x80, hi = 0xBF; /* the allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) len = 3, lo = 0xA0;
    else if (c >= 0xE1 && c <= 0xEC) len = 3;
    else if (c == 0xED) len = 3, hi = 0x9F; /* no surrogates */
    else if (c >= 0xEE && c <= 0xEF) len = 3;
    else if (c == 0xF0) len = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    else if (c == 0xF4) len = 4, hi = 0x8F; /* nothing past U+10FFFF */
    else return 0;
    if ((size_t)len > n || p[1] < lo || p[1] > hi) return 0;
    for (int k = 2; k < len; k++)
        if (p[k] < 0x80 || p[k] > 0xBF) return 0;
    return len;
}

size_t utf8_clean(char *dst, size_t cap, const char *src, size_t n)
{
    const unsigned char *s = (const unsigned char *)src;
    size_t o = 0;
    for (size_t i = 0; i < n && s[i];) {
        int l = seq_len(s + i, n - i);
        if (l) {
            if (o + (size_t)l >= cap) break;
            memcpy(dst + o, s + i, (size_t)l);
            o += (size_t)l;
            i += (size_t)l;
        } else {
            if (o + 4 >= cap) break;
            snprintf(dst + o, 5, "\\x%02X", s[i]);
            o += 4;
            i++;
        }
    }
    dst[o] = 0;
    return o;
}

int utf8_cut(const char *s, int max)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strnlen(s, max > 0 ? (size_t)max : 0);
    size_t i = 0;
    while (i < n) {
        /* a well-formed sequence is judged on the whole string: it may run past max */
        size_t avail = strnlen(s + i, 4);
        int l = seq_len(p + i, avail);
        if (!l) l = 1; /* an invalid byte is one unit (the cleaner escapes it) */
        if (i + (size_t)l > n) break;
        i += (size_t)l;
    }
    return (int)i;
}

int utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        int l = seq_len(p + i, n - i);
        if (!l) return 0;
        i += (size_t)l;
    }
    return 1;
}
