/* config.c — the one table of configuration keys (see config.h). Each row: name, type, where it
 * lives in config_t, default, bounds, and the sentence that documents it. Parsing the file, the
 * environment and the flags, --help and the documented config file all read this table. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { K_INT, K_I64, K_DBL, K_STR, K_BOOL };

typedef struct {
    const char *name;
    int type;
    size_t off, size;
    const char *dflt;
    double min, max;
    const char *help;
    const char *choices; /* a string key's allowed values, '|'-separated (Redis configEnum); NULL: any */
} key_t_;

#define F(field) offsetof(config_t, field), sizeof(((config_t *)0)->field)
#define BIG 9.0e18

static const key_t_ keys[] = {
    {"listen", K_STR, F(listen), "0.0.0.0", 0, 0, "address to listen on (IPv4 or IPv6 literal)", NULL},
    {"port", K_INT, F(port), "8080", 1, 65535, "TCP port", NULL},
    {"connection_limit", K_INT, F(connection_limit), "512", 1, 100000, "simultaneous connections (MHD_OPTION_CONNECTION_LIMIT)", NULL},
    {"per_ip_connection_limit", K_INT, F(per_ip_connection_limit), "64", 0, 100000, "connections per client IP, 0 = unlimited", NULL},
    {"connection_timeout_s", K_INT, F(connection_timeout_s), "30", 1, 3600, "idle connection timeout in seconds: a connection that sends nothing for this long is closed", NULL},
    {"read_timeout_s", K_INT, F(read_timeout_s), "60", 1, 3600, "time a client has to send a whole request (headers and body), from its connection or its previous answer: late body bytes get 408, late headers a closed connection (slow-loris defence)", NULL},
    {"connection_memory_limit", K_I64, F(connection_memory_limit), "65536", 4096, 1 << 30, "bytes of MHD memory per connection (headers, URL)", NULL},
    {"max_header_bytes", K_INT, F(max_header_bytes), "16384", 1024, 1 << 20, "longest request line plus headers; longer is 431/413", NULL},
    {"workers", K_INT, F(workers), "0", 0, 1024, "engine worker threads, 0 = number of cores (each uses one OpenBLAS thread)", NULL},
    {"queue_depth", K_INT, F(queue_depth), "64", 1, 100000, "requests waiting for a worker; beyond it 503 with Retry-After", NULL},
    {"max_batch", K_INT, F(max_batch), "16", 1, 1024, "images per engine batch (IG steps, SmoothGrad samples, ...)", NULL},
    {"workspace_max_bytes", K_I64, F(workspace_max_bytes), "1073741824", 1 << 20, BIG, "memory budget of one worker's workspace per model; lowers max_batch for big models", NULL},
    {"request_timeout_ms", K_INT, F(request_timeout_ms), "30000", 1, 3600000, "deadline of a request from arrival; past it 504 and the work stops", NULL},
    {"drain_timeout_ms", K_INT, F(drain_timeout_ms), "20000", 0, 3600000, "on SIGTERM, time allowed for queued and in-flight requests", NULL},
    {"max_upload_bytes", K_I64, F(max_upload_bytes), "16777216", 1024, BIG, "largest request body; beyond it 413 (checked from Content-Length and while streaming)", NULL},
    {"max_response_bytes", K_I64, F(max_response_bytes), "134217728", 4096, BIG, "largest answer body; beyond it 413: before any work when the raw maps asked for alone pass it, else as soon as the rendered PNGs and maps do (the rendering stops there)", NULL},
    {"max_pixels", K_I64, F(max_pixels), "16777216", 1, BIG, "largest image width*height; beyond it 413, checked from the image header", NULL},
    {"max_image_side", K_INT, F(max_image_side), "16384", 1, 1 << 30, "largest image width or height", NULL},
    {"max_progressive_scans", K_INT, F(max_progressive_scans), "64", 1, 100000, "JPEG scans before a file is rejected (progressive-JPEG DoS defence)", NULL},
    {"max_decoder_memory", K_I64, F(max_decoder_memory), "268435456", 1 << 16, BIG, "memory the PNG/JPEG decoders may use", NULL},
    {"sanity_images_max", K_INT, F(sanity_images_max), "256", 1, 100000, "images in one /sanity request", NULL},
    {"models_dir", K_STR, F(models_dir), "models", 0, 0, "directory of NAME.onnx models and NAME.json sidecars (docs/MODELS.md), all loaded at start", NULL},
    {"allow_partial", K_BOOL, F(allow_partial), "false", 0, 1, "start even if some models fail to load (they are logged and left out)", NULL},
    {"api_keys_file", K_STR, F(api_keys_file), "", 0, 0, "file of API keys, one per line; empty = no authentication", NULL},
    {"cors_origins", K_STR, F(cors_origins), "", 0, 0, "comma list of allowed CORS origins, or * for any; empty = no CORS headers", NULL},
    {"log_level", K_STR, F(log_level), "info", 0, 0, "debug, info, warn or error", "debug|info|warn|error"},
    {"log_format", K_STR, F(log_format), "json", 0, 0, "json (one object per line) or text", "json|text"},
    {"top_k_max", K_INT, F(top_k_max), "1000", 1, 100000, "largest top_k", NULL},
    {"ig_steps_max", K_INT, F(ig_steps_max), "1024", 1, 100000, "largest ig_steps", NULL},
    {"smoothgrad_samples_max", K_INT, F(smoothgrad_samples_max), "1024", 1, 100000, "largest smoothgrad_samples", NULL},
    {"smoothgrad_noise_max", K_DBL, F(smoothgrad_noise_max), "1.0", 0, 100, "largest smoothgrad_noise", NULL},
    {"scorecam_channels_max", K_INT, F(scorecam_channels_max), "4096", 0, 100000, "largest scorecam_channels", NULL},
    {"occlusion_window_max", K_INT, F(occlusion_window_max), "1024", 1, 100000, "largest occlusion_window and occlusion_stride", NULL},
    {"faithfulness_steps_max", K_INT, F(faithfulness_steps_max), "256", 1, 100000, "largest faithfulness_steps", NULL},
    {"sanity_noise_samples_max", K_INT, F(sanity_noise_samples_max), "64", 0, 100000, "largest sanity_noise_samples", NULL},
    {"filter_steps_max", K_INT, F(filter_steps_max), "1024", 1, 100000, "largest steps of filter visualization", NULL},
    {"image_size_max", K_INT, F(image_size_max), "4096", 1, 16384, "largest PNG side returned (size=input is clamped to it, keeping the aspect)", NULL},
    {"sanity_spearman_threshold", K_DBL, F(sanity_spearman_threshold), "0.5", 0, 1, "sanity verdict: spearman_abs must be below this at the last step (at every step with sanity_order=independent)", NULL},
    {"sanity_ssim_threshold", K_DBL, F(sanity_ssim_threshold), "0.5", 0, 1, "sanity verdict: ssim must be below this at the last step (at every step with sanity_order=independent)", NULL},
    {"sanity_auto_gflop", K_DBL, F(sanity_auto_gflop), "300", 0.001, 1e9, "sanity_layers=auto (the default): the estimated work, in GFLOP, a request's model-randomization steps may take: every layer when it fits, else blocks, else the first blocks of the cascade (docs/MODELS.md)", NULL},
    {"request_threads_max", K_INT, F(request_threads_max), "0", 0, 1024, "threads one request may use: its worker's plus cores of idle workers it borrows while it runs (its convolutions split over them, with the same bytes as on one thread); a sanity request's helper thread counts as one; 0 = as many as there are workers, 1 = never borrow", NULL},
    {"sanity_helper_max_bytes", K_I64, F(sanity_helper_max_bytes), "268435456", 0, BIG, "a worker with a sanity request runs half of its randomization steps on a second thread when another worker is idle; that thread needs a second workspace of the model, kept by the worker if the workspace is at most this many bytes (0 = never)", NULL},
    {"sanity_cache_bytes", K_I64, F(sanity_cache_bytes), "268435456", 0, BIG, "memory for cached randomized-weight overlays (LRU)", NULL},
};
#define NKEYS ((int)(sizeof keys / sizeof keys[0]))

static const key_t_ *find_key(const char *name)
{
    for (int i = 0; i < NKEYS; i++)
        if (!strcmp(keys[i].name, name)) return &keys[i];
    return NULL;
}

double config_number(const config_t *c, const char *key)
{
    const key_t_ *k = find_key(key);
    if (!k) return NAN;
    const char *b = (const char *)c + k->off;
    switch (k->type) {
    case K_INT: return *(const int *)b;
    case K_I64: return (double)*(const int64_t *)b;
    case K_DBL: return *(const double *)b;
    default: return NAN;
    }
}

/* Is v one of the '|'-separated choices? */
static int is_choice(const char *choices, const char *v)
{
    size_t n = strlen(v);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !strncmp(p, v, n)) return 1;
        p += len + (bar != NULL);
    }
    return 0;
}

static int set_value(config_t *c, const key_t_ *k, const char *v, char *err, size_t errlen)
{
    char *base = (char *)c + k->off, *end;
    errno = 0;
    switch (k->type) {
    case K_STR:
        if (k->choices && !is_choice(k->choices, v)) {
            snprintf(err, errlen, "%s: expected one of %s, got '%s'", k->name, k->choices, v);
            return -1;
        }
        if (strlen(v) >= k->size) {
            snprintf(err, errlen, "%s: value longer than %zu bytes", k->name, k->size - 1);
            return -1;
        }
        strcpy(base, v);
        return 0;
    case K_BOOL:
        if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes")) *(int *)base = 1;
        else if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no")) *(int *)base = 0;
        else {
            snprintf(err, errlen, "%s: expected true or false, got '%s'", k->name, v);
            return -1;
        }
        return 0;
    case K_DBL: {
        double d = strtod(v, &end);
        if (errno == ERANGE && fabs(d) <= DBL_MIN) errno = 0; /* underflow: the nearest subnormal or 0 */
        if (errno || end == v || *end || d != d || d < k->min || d > k->max) {
            snprintf(err, errlen, "%s: expected a number in %g..%g, got '%s'", k->name, k->min, k->max, v);
            return -1;
        }
        *(double *)base = d;
        return 0;
    }
    default: {
        long long x = strtoll(v, &end, 10);
        if (errno || end == v || *end || (double)x < k->min || (double)x > k->max) {
            snprintf(err, errlen, "%s: expected an integer in %.0f..%.0f, got '%s'", k->name, k->min, k->max, v);
            return -1;
        }
        if (k->type == K_INT) *(int *)base = (int)x;
        else *(int64_t *)base = x;
        return 0;
    }
    }
}

int config_set(config_t *c, const char *key, const char *value, char *err, size_t errlen)
{
    const key_t_ *k = find_key(key);
    if (!k) {
        snprintf(err, errlen, "unknown configuration key '%s'", key);
        return -1;
    }
    return set_value(c, k, value, err, errlen);
}

void config_defaults(config_t *c)
{
    memset(c, 0, sizeof *c);
    char e[8];
    for (int i = 0; i < NKEYS; i++) set_value(c, &keys[i], keys[i].dflt, e, sizeof e);
}

void config_finalize(config_t *c)
{
    if (c->workers <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c->workers = n > 0 ? (int)n : 1;
    }
}

int config_load_file(config_t *c, const char *path, int missing_ok, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (missing_ok && errno == ENOENT) return 0;
        snprintf(err, errlen, "cannot open config file '%s'", path);
        return -1;
    }
    json_error_t je;
    json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
    fclose(f);
    if (!root || !json_is_object(root)) {
        snprintf(err, errlen, "config file '%s': %s (line %d)", path, root ? "must be a JSON object" : je.text, je.line);
        json_decref(root);
        return -1;
    }
    const char *key;
    json_t *v;
    int rc = 0;
    json_object_foreach(root, key, v)
    {
        if (key[0] == '_') continue; /* "_comment" and friends */
        const key_t_ *k = find_key(key);
        if (!k) {
            snprintf(err, errlen, "config file '%s': unknown key '%s'", path, key);
            rc = -1;
            break;
        }
        char buf[CFG_STR * 4];
        if (json_is_string(v)) snprintf(buf, sizeof buf, "%s", json_string_value(v));
        else if (json_is_true(v)) strcpy(buf, "true");
        else if (json_is_false(v)) strcpy(buf, "false");
        else if (json_is_integer(v)) snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
        else if (json_is_real(v)) snprintf(buf, sizeof buf, "%.17g", json_real_value(v));
        else {
            snprintf(err, errlen, "config file '%s': key '%s' has an unsupported type", path, key);
            rc = -1;
            break;
        }
        if (set_value(c, k, buf, err, errlen)) {
            rc = -1;
            break;
        }
    }
    json_decref(root);
    return rc;
}

int config_load_env(config_t *c, char *err, size_t errlen)
{
    for (int i = 0; i < NKEYS; i++) {
        char name[128] = "EXPLAIND_";
        size_t l = strlen(name);
        for (const char *p = keys[i].name; *p && l < sizeof name - 1; p++) name[l++] = (char)toupper((unsigned char)*p);
        name[l] = 0;
        const char *v = getenv(name);
        if (v && set_value(c, &keys[i], v, err, errlen)) return -1;
    }
    return 0;
}

int config_load_args(config_t *c, int argc, char **argv, char *err, size_t errlen)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2)) {
            snprintf(err, errlen, "unexpected argument '%s'", a);
            return -1;
        }
        a += 2;
        char key[128];
        const char *val;
        const char *eq = strchr(a, '=');
        if (eq) {
            snprintf(key, sizeof key, "%.*s", (int)(eq - a), a);
            val = eq + 1;
        } else {
            snprintf(key, sizeof key, "%s", a);
            if (i + 1 >= argc) {
                snprintf(err, errlen, "--%s needs a value", key);
                return -1;
            }
            val = argv[++i];
        }
        for (char *p = key; *p; p++)
            if (*p == '-') *p = '_';
        if (!strcmp(key, "config")) continue; /* handled by config_from_all */
        if (config_set(c, key, val, err, errlen)) return -1;
    }
    return 0;
}

int config_from_all(config_t *c, int argc, char **argv, char *err, size_t errlen)
{
    config_defaults(c);
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc) path = argv[i + 1];
        else if (!strncmp(argv[i], "--config=", 9)) path = argv[i] + 9;
    }
    if (!path) path = getenv("EXPLAIND_CONFIG");
    if (path) {
        if (config_load_file(c, path, 0, err, errlen)) return -1;
    } else if (config_load_file(c, "config/explaind.json", 1, err, errlen)) {
        return -1;
    }
    if (config_load_env(c, err, errlen)) return -1;
    if (config_load_args(c, argc, argv, err, errlen)) return -1;
    config_finalize(c);
    return 0;
}

void config_print_help(FILE *f)
{
    fprintf(f, "Configuration (precedence: --flags > EXPLAIND_* environment > --config FILE > defaults):\n");
    for (int i = 0; i < NKEYS; i++) {
        const key_t_ *k = &keys[i];
        fprintf(f, "  --%-28s %s (default: %s", k->name, k->help, *k->dflt ? k->dflt : "\"\"");
        if (k->type == K_INT || k->type == K_I64 || k->type == K_DBL)
            fprintf(f, "; range %g..%g", k->min, k->max > 1e17 ? 9.2e18 : k->max);
        fprintf(f, ")\n");
    }
    fprintf(f, "  --%-28s read this JSON config file (default: config/explaind.json if present)\n", "config");
}

void config_print_json(FILE *f, const config_t *c, int documented)
{
    fprintf(f, "{\n");
    if (documented)
        fprintf(f, "  \"_comment\": \"explaind configuration. Keys starting with '_' are documentation and ignored. "
                   "Precedence: --flags > EXPLAIND_<KEY> environment > this file > defaults. Generated by "
                   "'explaind serve --print-config --documented'.\",\n");
    for (int i = 0; i < NKEYS; i++) {
        const key_t_ *k = &keys[i];
        const char *base = (const char *)c + k->off;
        if (documented) {
            json_t *h = json_string(k->help);
            char *d = json_dumps(h, JSON_ENCODE_ANY);
            fprintf(f, "  \"_%s\": %s,\n", k->name, d ? d : "\"\"");
            free(d);
            json_decref(h);
        }
        fprintf(f, "  \"%s\": ", k->name);
        switch (k->type) {
        case K_STR: {
            json_t *s = json_string(base);
            char *d = json_dumps(s, JSON_ENCODE_ANY);
            fprintf(f, "%s", d ? d : "\"\"");
            free(d);
            json_decref(s);
            break;
        }
        case K_BOOL: fprintf(f, "%s", *(const int *)base ? "true" : "false"); break;
        case K_DBL: fprintf(f, "%.17g", *(const double *)base); break;
        case K_INT: fprintf(f, "%d", *(const int *)base); break;
        default: fprintf(f, "%lld", (long long)*(const int64_t *)base); break;
        }
        fprintf(f, "%s\n", i + 1 < NKEYS ? "," : "");
    }
    fprintf(f, "}\n");
}
