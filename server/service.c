/* service.c — decode, preprocess, explain, document (see service.h). */
#include "service.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "decode.h"
#include "doc.h"
#include "render.h"
#include "sanity_doc.h"

int service_status_for(int s)
{
    switch (s) {
    case ENG_OK: return 200;
    case ENG_EINVAL: return 422;
    case ENG_EFORMAT: return 400;
    case ENG_EUNSUPPORTED: return 415;
    case ENG_ETOOBIG: return 413;
    case ENG_ENOTFOUND: return 404;
    case ENG_EDEADLINE: return 504;
    case ENG_ENOMEM: return 503;
    default: return 500;
    }
}

void service_new_request_id(char out[33])
{
    unsigned char b[16];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
        static __thread unsigned long long ctr;
        unsigned long long t = (unsigned long long)eng_now_ns() ^ (++ctr * 0x9e3779b97f4a7c15ULL);
        for (int i = 0; i < 16; i++) b[i] = (unsigned char)(t >> (8 * (i % 8))) ^ (unsigned char)i;
    }
    for (int i = 0; i < 16; i++) snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* ---- probe sets ------------------------------------------------------------------------------------- */
void service_free_probes(service_model_t *sm)
{
    for (int i = 0; i < sm->n_probes; i++) {
        free((void *)sm->probes[i].data);
        free(sm->probe_files[i]);
    }
    free(sm->probes);
    free(sm->probe_files);
    sm->probes = NULL;
    sm->probe_files = NULL;
    sm->n_probes = 0;
}

int service_is_image_name(const char *n)
{
    const char *dot = strrchr(n, '.');
    return n[0] != '.' && dot && (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

char **service_scan_dir(const char *dir, int (*keep)(const char *name), size_t strip, int max, int *n_out, int *status)
{
    *n_out = 0;
    *status = 0;
    DIR *d = opendir(dir);
    if (!d) {
        *status = SCAN_NO_DIR;
        return NULL;
    }
    int n = 0, cap = 0;
    char **names = NULL;
    struct dirent *e;
    while (!*status && (e = readdir(d))) {
        if (e->d_name[0] == '.' || !keep(e->d_name)) continue;
        if (n == max) {
            *status = SCAN_TOO_MANY;
            break;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 32;
            char **nn = realloc(names, sizeof(char *) * (size_t)cap);
            if (!nn) {
                *status = SCAN_NO_MEMORY;
                break;
            }
            names = nn;
        }
        size_t l = strlen(e->d_name);
        if (!(names[n] = strndup(e->d_name, l > strip ? l - strip : 0))) *status = SCAN_NO_MEMORY;
        else n++;
    }
    closedir(d);
    if (*status) {
        service_free_names(names, n);
        return NULL;
    }
    if (n) qsort(names, (size_t)n, sizeof(char *), cmp_names); /* the same order on every machine */
    *n_out = n;
    return names;
}

void service_free_names(char **names, int n)
{
    for (int i = 0; names && i < n; i++) free(names[i]);
    free(names);
}

int service_load_probes(service_model_t *sm, const char *models_dir, int max_images, char *err, size_t err_len)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/probes/%s", models_dir, sm->model->name);
    int n = 0, rc = 0, st;
    char **names = service_scan_dir(dir, service_is_image_name, 0, max_images, &n, &st);
    if (st == SCAN_NO_DIR) return 0; /* no probe set */
    if (st) {
        if (st == SCAN_TOO_MANY) snprintf(err, err_len, "%s holds more than %d images (sanity_images_max)", dir, max_images);
        else snprintf(err, err_len, "out of memory");
        return -1;
    }
    if (n) {
        sm->probes = calloc((size_t)n, sizeof(blob_t));
        sm->probe_files = calloc((size_t)n, sizeof(char *));
        if (!sm->probes || !sm->probe_files) {
            rc = -1;
            snprintf(err, err_len, "out of memory");
        }
        for (int i = 0; !rc && i < n; i++) {
            char path[8192];
            snprintf(path, sizeof path, "%s/%s", dir, names[i]);
            FILE *f = fopen(path, "rb");
            long len = -1;
            uint8_t *buf = NULL;
            if (f && !fseek(f, 0, SEEK_END) && (len = ftell(f)) >= 0 && !fseek(f, 0, SEEK_SET) &&
                (buf = malloc(len ? (size_t)len : 1)) && fread(buf, 1, (size_t)len, f) == (size_t)len) {
                sm->probes[i] = (blob_t){buf, (size_t)len};
                sm->probe_files[i] = names[i];
                names[i] = NULL;
                sm->n_probes = i + 1;
            } else {
                free(buf);
                snprintf(err, err_len, "cannot read probe image %s", path);
                rc = -1;
            }
            if (f) fclose(f);
        }
    }
    service_free_names(names, n);
    if (rc) service_free_probes(sm);
    return rc;
}

int service_batch_for(const model_t *m, const config_t *cfg)
{
    size_t one = ws_plan_bytes(m->graph, 1), two = ws_plan_bytes(m->graph, 2);
    size_t per = two > one ? two - one : one, fixed = one > per ? one - per : 0;
    int b = cfg->max_batch;
    while (b > 1 && fixed + per * (size_t)b > (size_t)cfg->workspace_max_bytes) b--;
    return b;
}

static double ms_since(int64_t t0) { return (double)(eng_now_ns() - t0) / 1e6; }

static json_t *fail(outcome_t *oc, int status, const char *detail)
{
    oc->status = status;
    snprintf(oc->detail, sizeof oc->detail, "%s", detail);
    return NULL;
}

/* The HTTP status of an engine error on model mi's workspace: a stop for a client that left is 499. */
static int run_status(const service_env_t *env, int mi, int rc)
{
    if (rc == ENG_EDEADLINE && ws_cancelled(env->ws[mi])) return 499;
    return service_status_for(rc);
}

static int64_t b64_chars(int64_t bytes) { return (bytes + 2) / 3 * 4; }

int64_t service_answer_floor(const model_t *m, const request_t *rq)
{
    int64_t hw = (int64_t)m->input.height * m->input.width, chw = hw * m->input.channels, total = 0;
    if (rq->route != R_EXPLAIN) return 0;
    for (int k = 0; k < M_COUNT; k++) {
        if (!(rq->ep.methods & (1u << k))) continue;
        char f = method_family(k);
        int input_res = f == 'g' || f == 'x' || f == 'p' || f == 'b', has_attr = f == 'g' || f == 'x';
        if (input_res && (rq->outputs & OUT_RAW)) total += b64_chars(4 * hw);
        if (has_attr && (rq->outputs & OUT_ATTRIBUTION)) total += b64_chars(4 * chw);
    }
    return total;
}

/* The outcome for a document that was not made (doc_explain's status). */
static json_t *stopped(const service_env_t *env, outcome_t *oc, int status, const char *where)
{
    char d[300];
    if (status == 413)
        snprintf(d, sizeof d, "the answer passed %lld bytes (max_response_bytes) while %s; ask for fewer methods or "
                              "outputs, size=model, or raise the limit",
                 (long long)(env->stream ? stream_max(env->stream) : 0), where);
    else if (status == 499) snprintf(d, sizeof d, "the client went away; stopped while %s", where);
    else if (status == 504)
        snprintf(d, sizeof d, "the deadline (request_timeout_ms=%d) passed while %s", env->cfg->request_timeout_ms, where);
    else snprintf(d, sizeof d, "out of memory while %s", where);
    return fail(oc, status, d);
}


int service_find_model(const service_model_t *models, int n_models, const char *name)
{
    for (int i = 0; i < n_models; i++)
        if (!strcmp(models[i].model->name, name)) return i;
    return -1;
}

/* A tensor upload (.npy): the model input itself, shape (C, H, W), (1, C, H, W) or, for one channel,
 * (H, W); finite float32. *img becomes its view (model_tensor_view) for the overlays. */
static int prepare_tensor(const model_t *m, const blob_t *b, image_t *img, float *x, outcome_t *oc)
{
    eng_err_t err = {0};
    tensor_upload_t t;
    const input_spec_t *s = &m->input;
    size_t S = model_input_size(m);
    int rc = tensor_decode_npy(b->data, b->len, S, &t, &err);
    if (rc && rc != ENG_ETOOBIG) {
        fail(oc, service_status_for(rc), err.msg);
        return oc->status;
    }
    int ok = !rc && t.count == S &&
             ((t.rank == 3 && t.dims[0] == s->channels && t.dims[1] == s->height && t.dims[2] == s->width) ||
              (t.rank == 4 && t.dims[0] == 1 && t.dims[1] == s->channels && t.dims[2] == s->height && t.dims[3] == s->width) ||
              (t.rank == 2 && s->channels == 1 && t.dims[0] == s->height && t.dims[1] == s->width));
    if (!ok) {
        char got[96] = "more elements than the model takes";
        if (!rc) {
            size_t l = (size_t)snprintf(got, sizeof got, "(");
            for (int i = 0; i < t.rank && l < sizeof got; i++)
                l += (size_t)snprintf(got + l, sizeof got - l, "%s%lld", i ? ", " : "", (long long)t.dims[i]);
            if (l < sizeof got) snprintf(got + l, sizeof got - l, ")");
        }
        char d[400];
        snprintf(d, sizeof d, "the tensor's shape is %s; model '%s' takes float32 (1, %d, %d, %d) or (%d, %d, %d)", got, m->name,
                 s->channels, s->height, s->width, s->channels, s->height, s->width);
        tensor_upload_free(&t);
        fail(oc, 422, d);
        return oc->status;
    }
    for (size_t i = 0; i < S; i++)
        if (!isfinite(t.data[i])) {
            char d[160];
            snprintf(d, sizeof d, "the tensor holds a non-finite value (NaN or infinity) at element %zu", i);
            tensor_upload_free(&t);
            fail(oc, 422, d);
            return oc->status;
        }
    memcpy(x, t.data, sizeof(float) * S);
    tensor_upload_free(&t);
    if ((rc = model_tensor_view(m, x, img, &err))) {
        fail(oc, service_status_for(rc), err.msg);
        return oc->status;
    }
    return 0;
}

/* decode + preprocess one upload; x gets model_input_size floats. 0 or an HTTP status in oc.
 * *fmt names the upload's format; *is_view says img is already in the model's frame (tensors).
 * img comes back with 1 or 3 channels, as the renderer takes (an RGBA upload loses its alpha). */
static int prepare_image(const config_t *cfg, const model_t *m, const blob_t *b, image_t *img, const char **fmt, float *x,
                         int *is_view, double *decode_ms, double *pre_ms, outcome_t *oc)
{
    eng_err_t err = {0};
    *is_view = 0;
    if (upload_is_npy(b->data, b->len)) {
        int64_t t0 = eng_now_ns();
        *fmt = "npy";
        *is_view = 1;
        int st = prepare_tensor(m, b, img, x, oc);
        *decode_ms = ms_since(t0);
        *pre_ms = 0;
        return st;
    }
    decode_limits_t lim = decode_limits_default();
    lim.max_pixels = cfg->max_pixels;
    lim.max_side = cfg->max_image_side;
    lim.max_progressive_scans = cfg->max_progressive_scans;
    lim.max_decoder_memory = (size_t)cfg->max_decoder_memory;
    int64_t t0 = eng_now_ns();
    int rc = image_decode_alpha(b->data, b->len, &lim, m->input.color == COLOR_RGBA, img, fmt, &err);
    *decode_ms = ms_since(t0);
    if (rc) {
        fail(oc, service_status_for(rc), err.msg);
        return oc->status;
    }
    int64_t t1 = eng_now_ns();
    rc = model_preprocess(m, img, x, &err);
    *pre_ms = ms_since(t1);
    if (rc) {
        image_free(img);
        fail(oc, service_status_for(rc), err.msg);
        return oc->status;
    }
    if (img->channels == 4) { /* the overlays show the upload without its alpha */
        size_t n = (size_t)img->width * img->height;
        for (size_t i = 0; i < n; i++) memmove(img->data + 3 * i, img->data + 4 * i, 3);
        img->channels = 3;
    }
    return 0;
}

static sanity_env_t sanity_env_for(const service_env_t *env, int mi)
{
    const model_t *m = env->models[mi].model;
    sanity_env_t se = {.model = m, .ws = env->ws[mi], .cache = env->cache, .helper_ws = env->helper_ws ? env->helper_ws[mi] : NULL};
    if (m->twin) {
        int ti = service_find_model(env->models, env->n_models, m->twin);
        if (ti >= 0) {
            se.twin = env->models[ti].model;
            se.twin_ws = env->ws[ti];
        }
    }
    return se;
}

/* POST /v1/models/{m}/sanity: the checks over every image, aggregated */
static json_t *run_sanity_report(const service_env_t *env, int mi, const request_t *rq, const resolved_t *res,
                                 const blob_t *images, int n, const char *request_id, outcome_t *oc)
{
    const model_t *m = env->models[mi].model;
    int64_t t0 = eng_now_ns();
    int from_probes = n == 0;
    if (from_probes) { /* no image sent: the model's built-in probe set */
        if (!env->models[mi].n_probes) {
            char d[2 * MODEL_MAX_NAME + 200];
            snprintf(d, sizeof d, "no image was sent, and model '%s' has no built-in probe set (models_dir/probes/%s/): "
                                  "send one or more images as 'image' fields, JSON 'images' or the raw body", m->name, m->name);
            return fail(oc, 400, d);
        }
        images = env->models[mi].probes;
        n = env->models[mi].n_probes;
    }
    if (n > env->cfg->sanity_images_max) {
        char d[160];
        snprintf(d, sizeof d, "%d images sent; the limit is %d (sanity_images_max)", n, env->cfg->sanity_images_max);
        return fail(oc, 413, d);
    }
    sanity_params_t sp;
    sanity_params_from_request(rq, env->cfg, &sp);
    if (!rq->sp.checks) sp.checks = SANITY_CHECK_MODEL | SANITY_CHECK_LABEL; /* the report's point: default to both tests */
    sp.n_images = n; /* sanity_layers=auto shares its budget between the images */
    sanity_env_t se = sanity_env_for(env, mi);
    sanity_agg_t *agg = sanity_agg_create();
    json_t *per = rq->per_image ? json_array() : NULL;
    float *x = malloc(sizeof(float) * model_input_size(m));
    if (!agg || !x) {
        sanity_agg_free(agg);
        free(x);
        json_decref(per);
        return fail(oc, 503, "out of memory");
    }
    json_t *doc = NULL;
    double explain_ms = 0, sanity_ms = 0;
    for (int i = 0; i < n; i++) {
        image_t img;
        const char *fmt;
        double dm, pm;
        int is_view;
        if (prepare_image(env->cfg, m, &images[i], &img, &fmt, x, &is_view, &dm, &pm, oc)) {
            char d[sizeof oc->detail + 32];
            snprintf(d, sizeof d, "image %d: %s", i, oc->detail);
            snprintf(oc->detail, sizeof oc->detail, "%.700s", d);
            goto out;
        }
        image_free(&img);
        explain_out_t out;
        eng_err_t err = {0};
        int64_t t1 = eng_now_ns();
        int rc = explain_run(m, env->ws[mi], x, &res->ep, &out, &err);
        explain_ms += ms_since(t1);
        if (rc) {
            char d[600];
            snprintf(d, sizeof d, "image %d: %s", i, err.msg);
            fail(oc, run_status(env, mi, rc), d);
            goto out;
        }
        sanity_result_t sr;
        int64_t t2 = eng_now_ns();
        rc = sanity_run(&se, x, &res->ep, &out, &sp, &sr, &err);
        sanity_ms += ms_since(t2);
        if (rc) {
            explain_out_free(&out);
            char d[600];
            snprintf(d, sizeof d, "image %d: %s", i, err.msg);
            fail(oc, run_status(env, mi, rc), d);
            goto out;
        }
        sanity_agg_add(agg, &sr);
        if (per) json_array_append_new(per, sanity_report_image_doc(m, rq, &sp, &sr, i, out.target));
        sanity_result_free(&sr);
        explain_out_free(&out);
    }
    const sanity_report_t rep = {.request_id = request_id, .images = n, .probe_files = from_probes ? env->models[mi].probe_files : NULL,
                                 .per_image = per, .explain_ms = explain_ms, .sanity_ms = sanity_ms, .total_ms = ms_since(t0)};
    per = NULL; /* the document owns it */
    doc = sanity_report_doc(m, rq, &sp, agg, &rep);
out:
    json_decref(per);
    sanity_agg_free(agg);
    free(x);
    return doc;
}

static json_t *run(const service_env_t *env, int mi, const request_t *rq, const blob_t *images, int n_images,
                   const char *request_id, outcome_t *oc)
{
    const config_t *cfg = env->cfg;
    const model_t *m = env->models[mi].model;
    ws_t *ws = env->ws[mi];
    int64_t t0 = eng_now_ns();
    oc->status = 200;
    oc->detail[0] = 0;
    oc->methods = 0;
    char detail[768];
    resolved_t res;
    int st = params_resolve(rq, m, &res, detail, sizeof detail);
    if (st) return fail(oc, st, detail);
    if (env->stream && stream_max(env->stream) > 0) { /* what is known before any work */
        int64_t floor = service_answer_floor(m, rq), have = stream_bytes(env->stream);
        if (floor && have + floor > stream_max(env->stream)) {
            snprintf(detail, sizeof detail,
                     "the answer would hold at least %lld bytes of raw and attribution maps%s, over %lld "
                     "(max_response_bytes): ask for fewer methods or outputs, or raise the limit",
                     (long long)floor, have ? " besides the instances before it" : "", (long long)stream_max(env->stream));
            return fail(oc, 413, detail);
        }
    }
    if (rq->route == R_SANITY) return run_sanity_report(env, mi, rq, &res, images, n_images, request_id, oc);

    image_t img;
    memset(&img, 0, sizeof img);
    const char *fmt = "";
    eng_err_t err = {0};
    doc_ctx_t d = {.request_id = request_id, .model = m, .rq = rq, .top_k = res.top_k, .image = NULL, .format = "", .image_size_max = cfg->image_size_max,
                   .stream = env->stream, .ws = ws};
    float *x = NULL;
    json_t *doc = NULL;
    explain_out_t out;
    memset(&out, 0, sizeof out);

    if (rq->route == R_FILTER) {
        /* no upload: gradient ascent from noise, rendered as the model would see it */
        int64_t t1 = eng_now_ns();
        size_t S = model_input_size(m);
        x = malloc(sizeof(float) * S);
        float *curve = malloc(sizeof(float) * (size_t)res.fv.steps);
        if (!x || !curve) {
            free(x);
            free(curve);
            return fail(oc, 503, "out of memory");
        }
        filterviz_params_t fv = res.fv;
        fv.seed = rq->ep.seed;
        int rc = explain_filter_visualize(m, ws, &fv, x, curve, &err);
        if (rc) {
            free(x);
            free(curve);
            return fail(oc, run_status(env, mi, rc), err.msg);
        }
        double compute_ms = ms_since(t1);
        doc = doc_filter(m, rq, &fv, x, curve, request_id, env->stream);
        free(curve);
        free(x);
        doc_ctx_t dc = {.stream = env->stream, .ws = ws};
        int stop = doc_stop_status(&dc);
        if (stop) {
            json_decref(doc);
            return stopped(env, oc, stop, "rendering");
        }
        json_object_set_new(doc, "timing_ms", json_pack("{s:f, s:f}", "compute", compute_ms, "total", ms_since(t0)));
        return doc;
    }

    if (n_images < 1) return fail(oc, 400, "no image was sent");
    x = malloc(sizeof(float) * model_input_size(m));
    if (!x) return fail(oc, 503, "out of memory");
    if (prepare_image(cfg, m, &images[0], &img, &fmt, x, &d.image_is_model_view, &d.decode_ms, &d.preprocess_ms, oc)) {
        free(x);
        return NULL;
    }
    d.image = &img;
    d.format = fmt;
    int rc;
    if (rq->route == R_PREDICT) {
        rc = explain_predict(m, ws, x, &out, &err);
        if (rc) {
            fail(oc, run_status(env, mi, rc), err.msg);
            goto done;
        }
        doc = doc_predict(&d, &out);
        doc_set_timing(doc, &d, &out, 0, ms_since(t0));
        goto done;
    }
    rc = explain_run(m, ws, x, &res.ep, &out, &err);
    if (rc) {
        fail(oc, run_status(env, mi, rc), err.msg);
        goto done;
    }
    json_t *sanity = NULL;
    if (rq->sp.checks && rq->route == R_EXPLAIN) {
        sanity_params_t sp;
        sanity_params_from_request(rq, cfg, &sp);
        sanity_env_t se = sanity_env_for(env, mi);
        sanity_result_t sr;
        int64_t ts = eng_now_ns();
        rc = sanity_run(&se, x, &res.ep, &out, &sp, &sr, &err);
        d.sanity_ms = ms_since(ts);
        if (rc) {
            fail(oc, run_status(env, mi, rc), err.msg);
            goto done;
        }
        sanity = sanity_doc(m, rq, &sp, &sr);
        sanity_result_free(&sr);
    }
    double enc = 0;
    int stop = 0;
    doc = doc_explain(&d, &out, &enc, &stop);
    if (!doc) {
        json_decref(sanity);
        stopped(env, oc, stop, "rendering the PNGs and maps");
        goto done;
    }
    if (sanity) json_object_set_new(doc, "sanity", sanity);
    doc_set_timing(doc, &d, &out, enc, ms_since(t0));
    for (int k = 0; k < M_COUNT; k++)
        if (out.r[k].present) {
            oc->methods |= 1u << k;
            oc->method_ms[k] = out.r[k].time_ms;
        }
done:
    explain_out_free(&out);
    free(x);
    image_free(&img);
    return doc;
}

/* ---- 504: what shortens the work ------------------------------------------------------------------ */
int service_deadline_hint(const request_t *rq, const model_t *m, const config_t *cfg, char *buf, size_t len)
{
    size_t w = 0;
    buf[0] = 0;
#define ADD(...)                                                                                                        \
    do {                                                                                                                \
        if (w < len) w += (size_t)snprintf(buf + w, len - w, "%s", w ? "; " : "");                                      \
        if (w < len) w += (size_t)snprintf(buf + w, len - w, __VA_ARGS__);                                              \
    } while (0)
    const explain_params_t *ep = &rq->ep;
    unsigned ms = rq->route == R_PREDICT ? 0 : ep->methods;
    if (rq->route == R_FILTER) ADD("steps (now %d)", rq->fv.steps);
    if (ms & (1u << M_INTEGRATED_GRADIENTS)) ADD("integrated_gradients: ig_steps (now %d)", ep->ig_steps);
    if (ms & (1u << M_SMOOTHGRAD))
        ADD("smoothgrad: smoothgrad_samples (now %d)%s", ep->smoothgrad_samples,
            ep->smoothgrad_base == M_INTEGRATED_GRADIENTS ? ", and ig_steps: it averages integrated gradients" : "");
    if (ms & (1u << M_SCORECAM)) ADD("scorecam: scorecam_channels (now %d%s)", ep->scorecam_channels, ep->scorecam_channels ? "" : " = every channel of the layer");
    if (ms & (1u << M_OCCLUSION)) ADD("occlusion: a larger occlusion_stride or occlusion_window (fewer windows)");
    if (ep->faithfulness) ADD("faithfulness_steps (now %d), or faithfulness=false", ep->faithfulness_steps);
    if (rq->route != R_PREDICT && rq->route != R_FILTER && (rq->sp.checks & SANITY_CHECK_MODEL || (rq->route == R_SANITY && !rq->sp.checks))) {
        ADD("sanity=model: sanity_layers (now %s; 'blocks' or a short comma list of layers run fewer steps%s)", rq->sanity_layers,
            !strcmp(rq->sanity_layers, "auto") ? ", and a smaller sanity_auto_gflop makes auto choose fewer" : "");
        if (rq->sp.noise_samples) ADD("sanity_noise_samples (now %d)", rq->sp.noise_samples);
        if (rq->route == R_SANITY) ADD("fewer images per /sanity request");
    }
    ADD("or a longer request_timeout_ms (now %d; a server setting)", cfg->request_timeout_ms);
#undef ADD
    (void)m;
    return (int)w;
}

json_t *service_run(const service_env_t *env, int mi, const request_t *rq, const blob_t *images, int n_images,
                    const char *request_id, outcome_t *oc)
{
    json_t *doc = run(env, mi, rq, images, n_images, request_id, oc);
    if (!doc && oc->status == 504) { /* say which parameters shorten the work */
        char hint[512], d[sizeof oc->detail];
        service_deadline_hint(rq, env->models[mi].model, env->cfg, hint, sizeof hint);
        snprintf(d, sizeof d, "%.240s. To shorten the work: %.500s", oc->detail, hint);
        snprintf(oc->detail, sizeof oc->detail, "%s", d);
    }
    return doc;
}
