/* fuzz_request — request parsing as the server runs it, without a socket:
 *   the query string (split on '&' and '=' and %-unescaped by libmicrohttpd's own MHD_http_unescape,
 *   then params_set per argument, as http.c's arg_iter), multipart bodies (body_form_begin with a
 *   Content-Type, body_form_feed in pieces, body_form_finish), JSON bodies (body_parse_json, plain and KServe), and finally
 *   params_resolve against the shipped fashion-cnn (target labels, layer names, applicability).
 *
 * Input: byte 0 picks the route (low 2 bits: predict, explain, sanity, activations) and the
 * mode (bits 2-3: query, JSON, KServe JSON, multipart); the rest is the query string, the JSON
 * body, or for multipart the Content-Type, a newline and the body.
 * Checked: the status is 0 or one of the statuses the API documents for a request (400, 404,
 * 413, 415, 422, 503 for out of memory), the detail is a non-empty string, images are intact. */
#define _GNU_SOURCE /* memmem */
#include <microhttpd.h>
#include <stdint.h>
#include <string.h>

#include "body.h"
#include "config.h"
#include "engine.h"
#include "fuzz_common.h"
#include "params.h"

static model_t *model;
static config_t cfg;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    model = fuzz_load_fashion_cnn("fuzz_request");
    config_defaults(&cfg);
    config_finalize(&cfg);
    return 0;
}

static void check_status(int st, const char *detail)
{
    FUZZ_CHECK(st == 0 || st == 400 || st == 404 || st == 413 || st == 415 || st == 422 || st == 503);
    if (st) FUZZ_CHECK(detail[0] != 0 && memchr(detail, 0, 768) != NULL);
}

/* http.c's arg_iter over libmicrohttpd's split of the query string */
static int parse_query(request_t *rq, char *q, char *detail, size_t dlen)
{
    char *save = NULL;
    for (char *arg = strtok_r(q, "&", &save); arg; arg = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(arg, '=');
        const char *value = "";
        if (eq) {
            *eq = 0;
            value = eq + 1;
            MHD_http_unescape((char *)value);
        }
        MHD_http_unescape(arg);
        int st = params_set(rq, &cfg, arg, value, detail, dlen);
        if (st) return st;
    }
    return 0;
}

/* http.c's multipart path: the first line is the request's Content-Type, the rest the body, fed in
 * three pieces (split at a third and two thirds) as it would stream in */
static int parse_multipart(body_t *b, request_t *rq, const char *p, size_t n, char *detail, size_t dlen)
{
    const char *nl = memchr(p, '\n', n);
    size_t cl = nl ? (size_t)(nl - p) : n;
    char ct[256];
    snprintf(ct, sizeof ct, "%.*s", (int)(cl < sizeof ct ? cl : sizeof ct - 1), p);
    int st = body_form_begin(b, ct, detail, dlen);
    if (st) return st;
    const char *body = nl ? nl + 1 : p + n;
    size_t bn = nl ? n - cl - 1 : 0, cut[4] = {0, bn / 3, 2 * bn / 3, bn};
    for (int k = 0; k < 3; k++)
        if (body_form_feed(b, body + cut[k], cut[k + 1] - cut[k])) return body_form_error(b, detail, dlen);
    return body_form_finish(b, rq, &cfg, detail, dlen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    static const int routes[] = {R_PREDICT, R_EXPLAIN, R_SANITY, R_ACTIVATIONS};
    int route = routes[data[0] & 3], mode = (data[0] >> 2) & 3;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    request_t rq;
    params_init(&rq, route);
    body_t b = {0};
    char detail[768] = "";
    int st;
    if (mode == 0) {
        char *q = malloc(n + 1);
        memcpy(q, p, n);
        q[n] = 0;
        st = parse_query(&rq, q, detail, sizeof detail);
        free(q);
    } else if (mode == 1 || mode == 2) {
        st = body_parse_json(&b, p, n, mode == 2, 0, &rq, &cfg, detail, sizeof detail);
    } else {
        st = parse_multipart(&b, &rq, (const char *)p, n, detail, sizeof detail);
    }
    check_status(st, detail);
    FUZZ_CHECK(b.n_images >= 0 && b.n_images <= BODY_MAX_IMAGES);
    for (int i = 0; i < b.n_images; i++) {
        FUZZ_CHECK(b.images[i].len <= b.images[i].cap);
        if (b.images[i].len) {
            volatile uint8_t sink = b.images[i].p[0] ^ b.images[i].p[b.images[i].len - 1];
            (void)sink;
        }
    }
    if (!st) {
        resolved_t res;
        st = params_resolve(&rq, model, &res, detail, sizeof detail);
        check_status(st, detail);
        if (!st) {
            FUZZ_CHECK(res.top_k >= 1 && res.top_k <= model->n_labels);
            FUZZ_CHECK(res.ep.target >= -1 && res.ep.target < model->n_labels);
        }
    }
    body_free(&b);
    return 0;
}
