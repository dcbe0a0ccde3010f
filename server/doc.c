/* doc.c — explain / predict documents (docs/API.md, "Explain response").
 *
 * PNG sizes: size=model renders at the model's input size over what the model saw
 * (model_view_image; for a tensor upload, the tensor's view, model_tensor_view). size=input renders at the uploaded image's size over the upload itself
 * when the model stretches its input; for center_crop and letterbox models the model's frame is not
 * the upload's, so size=input renders the model's view scaled to the upload's size instead (it
 * never draws a heatmap over pixels the model did not see). Either side is capped at
 * image_size_max, keeping the aspect ratio.
 * 3-D maps (activations) render as a grid of the top channels, each normalized on its own; they
 * have no overlay. */
#include "doc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "render.h"

static double ms_between(int64_t a, int64_t b) { return (double)(b - a) / 1e6; }

const char *doc_value_display_name(const model_t *m, int v) { return graph_value_user_name(m->graph, v); }

json_t *doc_model_input(const model_t *m)
{
    const input_spec_t *s = &m->input;
    json_t *mean = json_array(), *std = json_array(), *defaults = json_array();
    for (int c = 0; c < s->channels; c++) {
        json_array_append_new(mean, json_real(s->mean[c]));
        json_array_append_new(std, json_real(s->std[c]));
    }
    json_t *rs = json_null(), *crop = json_null();
    if (s->resize == RESIZE_SHORTER) rs = json_integer(s->resize_short);
    if (s->resize == RESIZE_EXACT) rs = json_pack("[i,i]", s->resize_h, s->resize_w);
    if (s->resize == RESIZE_SHORTER || s->resize == RESIZE_EXACT) crop = json_pack("[i,i]", s->height, s->width);
    static const struct {
        unsigned bit;
        const char *key;
    } keys[] = {{INPUT_GIVEN_COLOR, "color"}, {INPUT_GIVEN_ORDER, "channel_order"}, {INPUT_GIVEN_SIZE, "height"},
                {INPUT_GIVEN_SIZE, "width"}, {INPUT_GIVEN_RESIZE, "resize"}, {INPUT_GIVEN_SCALE, "scale"},
                {INPUT_GIVEN_MEAN, "mean"}, {INPUT_GIVEN_STD, "std"}};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!m->has_sidecar || !(s->given & keys[i].bit)) json_array_append_new(defaults, json_string(keys[i].key));
    return json_pack("{s:s, s:i, s:s, s:i, s:i, s:s, s:o, s:o, s:f, s:o, s:o, s:b, s:b, s:o}", "color", input_color_name(s->color),
                     "channels", s->channels, "channel_order", s->bgr ? "bgr" : "rgb", "height", s->height, "width", s->width,
                     "resize", input_resize_name(s->resize), "resize_size", rs, "crop", crop, "scale", (double)s->scale, "mean",
                     mean, "std", std, "invert", s->invert, "sidecar", m->has_sidecar, "defaults", defaults);
}

int doc_stop_status(const doc_ctx_t *d)
{
    if (d->ws && ws_deadline_passed(d->ws)) return ws_cancelled(d->ws) ? 499 : 504;
    if (d->stream && stream_over(d->stream)) return 413;
    return 0;
}

json_t *doc_raw(stream_t *st, const float *data, int rank, const int *dims)
{
    size_t n = 1;
    json_t *shape = json_array();
    for (int i = 0; i < rank; i++) {
        n *= (size_t)dims[i];
        json_array_append_new(shape, json_integer(dims[i]));
    }
    json_t *val;
    if (st) {
        val = stream_blob_f32(st, data, n);
    } else {
        char *b64 = render_raw_b64(data, n);
        val = b64 ? json_string_nocheck(b64) : NULL;
        free(b64);
    }
    if (!val) {
        json_decref(shape);
        return NULL;
    }
    return json_pack("{s:o, s:s, s:o}", "shape", shape, "dtype", "float32", "data", val);
}

json_t *doc_png(stream_t *st, uint8_t *png, size_t len)
{
    if (st) return stream_blob(st, png, len);
    char *b = malloc(b64_encoded_len(len) + 1);
    if (!b) {
        free(png);
        return NULL;
    }
    b64_encode(png, len, b);
    free(png);
    json_t *s = json_stringn_nocheck(b, b64_encoded_len(len));
    free(b);
    return s;
}

json_t *doc_predictions(const model_t *m, const explain_out_t *out, int k)
{
    const int K = out->n_classes;
    if (k > K) k = K;
    int *idx = malloc(sizeof(int) * K);
    json_t *arr = json_array();
    if (!idx || !arr) {
        free(idx);
        json_decref(arr);
        return NULL;
    }
    for (int i = 0; i < K; i++) idx[i] = i;
    for (int i = 0; i < k; i++) { /* partial selection: k is small */
        int b = i;
        for (int j = i + 1; j < K; j++)
            if (out->logits[idx[j]] > out->logits[idx[b]] || (out->logits[idx[j]] == out->logits[idx[b]] && idx[j] < idx[b])) b = j;
        int t = idx[i];
        idx[i] = idx[b];
        idx[b] = t;
        json_array_append_new(arr, json_pack("{s:i, s:s, s:f, s:f}", "index", idx[i], "label", m->labels[idx[i]], "score",
                                             (double)out->probs[idx[i]], "logit", (double)out->logits[idx[i]]));
    }
    free(idx);
    return arr;
}

static json_t *header(const doc_ctx_t *d, const explain_out_t *out)
{
    const model_t *m = d->model;
    json_t *doc = json_object();
    json_object_set_new(doc, "request_id", json_string(d->request_id ? d->request_id : ""));
    json_object_set_new(doc, "model", json_string(m->name));
    json_t *in = json_pack("{s:i, s:i, s:s, s:[i,i,i,i]}", "width", d->image ? d->image->width : 0, "height",
                           d->image ? d->image->height : 0, "format", d->format ? d->format : "", "tensor_shape", 1,
                           m->input.channels, m->input.height, m->input.width);
    json_object_set_new(doc, "input", in);
    json_object_set_new(doc, "predictions", doc_predictions(m, out, d->top_k));
    return doc;
}

json_t *doc_predict(const doc_ctx_t *d, const explain_out_t *out)
{
    json_t *doc = header(d, out);
    json_object_set_new(doc, "target", json_pack("{s:i, s:s}", "index", out->target, "label", d->model->labels[out->target]));
    json_object_set_new(doc, "passes", json_pack("{s:i, s:i}", "forward", out->passes_forward, "backward", out->passes_backward));
    return doc;
}

/* output size for PNGs and the overlay base at that size (owned by the caller when *own) */
typedef struct {
    int w, h;
    image_t base;
    int have_base;
} canvas_t;

static int make_canvas(const doc_ctx_t *d, canvas_t *cv)
{
    const model_t *m = d->model;
    memset(cv, 0, sizeof *cv);
    int w = m->input.width, h = m->input.height;
    int use_upload = !d->rq->size_model && d->image && d->image->data;
    if (use_upload) {
        w = d->image->width;
        h = d->image->height;
    }
    int cap = d->image_size_max > 0 ? d->image_size_max : 4096;
    if (w > cap || h > cap) { /* keep the aspect */
        double s = fmin((double)cap / w, (double)cap / h);
        w = (int)fmax(1, floor(w * s));
        h = (int)fmax(1, floor(h * s));
    }
    cv->w = w;
    cv->h = h;
    if (!d->image || !d->image->data) return 0;
    eng_err_t err;
    if ((use_upload && m->input.resize == RESIZE_STRETCH) || d->image_is_model_view) { /* the upload is the model's frame */
        if (d->image->width == w && d->image->height == h) {
            cv->base = *d->image; /* borrowed */
            cv->have_base = 1;
            return 0;
        }
        if (image_resize(d->image, w, h, &cv->base) == ENG_OK) cv->have_base = 2;
        return 0;
    }
    image_t view;
    if (model_view_image(m, d->image, &view, &err)) return 0;
    if (view.width == w && view.height == h) {
        cv->base = view;
        cv->have_base = 2;
        return 0;
    }
    if (image_resize(&view, w, h, &cv->base) == ENG_OK) cv->have_base = 2;
    image_free(&view);
    return 0;
}

static void canvas_free(canvas_t *cv)
{
    if (cv->have_base == 2) image_free(&cv->base);
}

/* activations: tile the top channels, each normalized to [0,1] on its own */
static json_t *grid_png(const doc_ctx_t *d, const method_result_t *r)
{
    int n = r->n_top, C = r->dims[0], h = r->dims[1], w = r->dims[2];
    if (r->rank != 3 || n < 1) return NULL;
    int cols = (int)ceil(sqrt((double)n)), rows = (n + cols - 1) / cols;
    int t = 1; /* tile scale: small maps are enlarged so a tile is at least 32 pixels */
    while (h * t < 32 && w * t < 32 && t < 16) t++;
    int th = h * t, tw = w * t, gh = rows * (th + 1) - 1, gw = cols * (tw + 1) - 1;
    float *grid = calloc((size_t)gh * gw, sizeof(float)), *tile = malloc(sizeof(float) * (size_t)th * tw);
    if (!grid || !tile) {
        free(grid);
        free(tile);
        return NULL;
    }
    (void)C;
    for (int i = 0; i < n; i++) {
        const float *src = r->map + (size_t)r->top_channels[i] * h * w;
        float lo = src[0], hi = src[0];
        for (int q = 0; q < h * w; q++) {
            lo = fminf(lo, src[q]);
            hi = fmaxf(hi, src[q]);
        }
        map_resize_bilinear(src, h, w, tile, th, tw);
        int gy = (i / cols) * (th + 1), gx = (i % cols) * (tw + 1);
        for (int y = 0; y < th; y++)
            for (int x = 0; x < tw; x++) {
                float v = hi > lo ? (tile[y * tw + x] - lo) / (hi - lo) : 0.f;
                grid[(size_t)(gy + y) * gw + gx + x] = v < 0 ? 0 : v > 1 ? 1 : v;
            }
    }
    render_opts_t o;
    render_opts_default(&o);
    o.colormap = d->rq->colormap;
    o.clip_percentile = 100;
    uint8_t *png = NULL;
    size_t len = 0;
    int rc = render_heatmap_png(grid, gh, gw, &o, &png, &len);
    free(grid);
    free(tile);
    return rc ? NULL : doc_png(d->stream, png, len);
}

/* The document of one method; NULL with *status set when rendering must stop (doc_stop_status),
 * checked before each output: a 4096 x 4096 PNG takes about a second to encode. */
static json_t *method_doc(const doc_ctx_t *d, const method_result_t *r, const canvas_t *cv, int *status)
{
    const request_t *rq = d->rq;
    const model_t *m = d->model;
    json_t *o = json_object();
#define STOP_CHECK()                                                                                                   \
    do {                                                                                                               \
        if ((*status = doc_stop_status(d))) {                                                                          \
            json_decref(o);                                                                                            \
            return NULL;                                                                                               \
        }                                                                                                              \
    } while (0)
    if (r->layer >= 0) json_object_set_new(o, "layer", json_string(doc_value_display_name(m, r->layer)));
    STOP_CHECK();
    if (r->rank == 2 && (rq->outputs & (OUT_HEATMAP | OUT_OVERLAY))) {
        render_opts_t ro;
        render_opts_default(&ro);
        ro.colormap = rq->colormap;
        ro.clip_percentile = rq->clip_percentile;
        ro.alpha = rq->alpha;
        ro.out_w = cv->w;
        ro.out_h = cv->h;
        uint8_t *png;
        size_t len;
        if ((rq->outputs & OUT_HEATMAP) && render_heatmap_png(r->map, r->dims[0], r->dims[1], &ro, &png, &len) == ENG_OK)
            json_object_set_new(o, "heatmap_png", doc_png(d->stream, png, len));
        STOP_CHECK();
        if ((rq->outputs & OUT_OVERLAY) && cv->have_base) {
            ro.base = &cv->base;
            if (render_overlay_png(r->map, r->dims[0], r->dims[1], &ro, &png, &len) == ENG_OK)
                json_object_set_new(o, "overlay_png", doc_png(d->stream, png, len));
        }
    } else if (r->rank == 3 && (rq->outputs & OUT_HEATMAP)) {
        json_t *g = grid_png(d, r);
        if (g) json_object_set_new(o, "heatmap_png", g);
    }
    STOP_CHECK();
    if (rq->outputs & OUT_RAW) json_object_set_new(o, "raw", doc_raw(d->stream, r->map, r->rank, r->dims));
    STOP_CHECK();
    if ((rq->outputs & OUT_ATTRIBUTION) && r->attribution)
        json_object_set_new(o, "attribution", doc_raw(d->stream, r->attribution, 3, r->attr_dims));
    STOP_CHECK();
#undef STOP_CHECK
    json_object_set_new(o, "stats", json_pack("{s:f, s:f, s:f}", "min", (double)r->min, "max", (double)r->max, "mean", (double)r->mean));
    if (r->n_extra) {
        json_t *ex = json_object();
        for (int i = 0; i < r->n_extra; i++) json_object_set_new(ex, r->extra[i].key, json_real(r->extra[i].value));
        json_object_set_new(o, "extra", ex);
    }
    if (r->n_channels) {
        json_t *ch = json_array(), *top = json_array();
        for (int k = 0; k < r->n_channels; k++)
            json_array_append_new(ch, json_pack("{s:i, s:f, s:f}", "index", k, "mean", (double)r->ch_mean[k], "max", (double)r->ch_max[k]));
        for (int k = 0; k < r->n_top; k++) json_array_append_new(top, json_integer(r->top_channels[k]));
        json_object_set_new(o, "channels", ch);
        json_object_set_new(o, "top_channels", top);
    }
    if (r->has_faithfulness)
        json_object_set_new(o, "faithfulness", json_pack("{s:f, s:f, s:i}", "deletion_auc", r->deletion_auc, "insertion_auc",
                                                         r->insertion_auc, "steps", rq->ep.faithfulness_steps));
    json_object_set_new(o, "time_ms", json_real(r->time_ms));
    return o;
}

json_t *doc_explain(const doc_ctx_t *d, const explain_out_t *out, double *encode_ms, int *status)
{
    int64_t t0 = eng_now_ns();
    *status = 0;
    json_t *doc = header(d, out);
    if (!doc) {
        *status = 503;
        return NULL;
    }
    json_object_set_new(doc, "target", json_pack("{s:i, s:s}", "index", out->target, "label", d->model->labels[out->target]));
    canvas_t cv;
    make_canvas(d, &cv);
    json_t *ex = json_object();
    for (int i = 0; i < M_COUNT; i++) {
        const method_result_t *r = &out->r[i];
        if (!r->present) continue;
        json_t *md = method_doc(d, r, &cv, status);
        if (!md) {
            canvas_free(&cv);
            json_decref(ex);
            json_decref(doc);
            *encode_ms = ms_between(t0, eng_now_ns());
            return NULL;
        }
        json_object_set_new(ex, method_name(i), md);
    }
    canvas_free(&cv);
    json_object_set_new(doc, "explanations", ex);
    json_object_set_new(doc, "passes", json_pack("{s:i, s:i}", "forward", out->passes_forward, "backward", out->passes_backward));
    *encode_ms = ms_between(t0, eng_now_ns());
    return doc;
}

void doc_set_timing(json_t *doc, const doc_ctx_t *d, const explain_out_t *out, double encode_ms, double total_ms)
{
    json_object_set_new(doc, "timing_ms",
                        json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "decode", d->decode_ms, "preprocess", d->preprocess_ms,
                                  "forward", out->forward_ms, "explain", out->explain_ms, "sanity", d->sanity_ms, "encode",
                                  encode_ms, "total", total_ms));
}

/* ---- filter visualization ------------------------------------------------------------------------ */
json_t *doc_filter(const model_t *m, const request_t *rq, const filterviz_params_t *fv, float *x, const float *curve,
                   const char *request_id, stream_t *stream)
{
    const size_t S = model_input_size(m);
    json_t *doc;
    /* tensor -> pixels: undo the normalization, then stretch the values to 0..255 for display */
    const input_spec_t *s = &m->input;
    size_t hw = (size_t)s->height * s->width;
    const int D = s->color == COLOR_RGB || s->color == COLOR_RGBA ? 3 : 1; /* displayed bands */
    image_t vis = {.width = s->width, .height = s->height, .channels = D, .data = malloc(hw * D)};
    float lo = 1e30f, hi = -1e30f;
    for (size_t i = 0; i < S; i++) {
        int ch = (int)(i / hw);
        float v = x[i] * s->std[ch] + s->mean[ch];
        x[i] = v;
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    for (size_t i = 0; vis.data && i < hw; i++)
        for (int d = 0; d < D; d++) {
            float a = 0; /* RGB from the color channels (BGR models reversed); else the channel mean */
            if (D == 3) a = x[(s->bgr ? 2 - d : d) * hw + i];
            else
                for (int ch = 0; ch < s->channels; ch++) a += x[ch * hw + i] / s->channels;
            float v = hi > lo ? (a - lo) / (hi - lo) * 255.f : 0.f;
            vis.data[i * D + d] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5f);
        }
    doc = json_object();
    json_object_set_new(doc, "request_id", json_string(request_id));
    json_object_set_new(doc, "model", json_string(m->name));
    json_object_set_new(doc, "layer", json_string(fv->layer >= 0 ? doc_value_display_name(m, fv->layer) : "logits"));
    json_object_set_new(doc, "index", json_integer(fv->index));
    json_t *curve_j = json_array();
    for (int i = 0; i < fv->steps; i++) json_array_append_new(curve_j, json_real(curve[i]));
    json_object_set_new(doc, "activation", curve_j);
    json_object_set_new(doc, "steps", json_integer(fv->steps));
    json_object_set_new(doc, "seed", json_integer((json_int_t)rq->ep.seed));
    uint8_t *png = NULL;
    size_t plen = 0;
    image_t big;
    int scaled = 0;
    if (vis.data && !rq->size_model && s->width < 224) { /* small models: enlarge for viewing */
        int f = 224 / s->width;
        if (f > 1 && image_resize(&vis, s->width * f, s->height * f, &big) == ENG_OK) scaled = 1;
    }
    if (vis.data && render_png_encode(scaled ? &big : &vis, &png, &plen) == ENG_OK)
        json_object_set_new(doc, "image_png", doc_png(stream, png, plen));
    if (rq->outputs & OUT_RAW) {
        int dims[3] = {s->channels, s->height, s->width};
        json_object_set_new(doc, "raw", doc_raw(stream, x, 3, dims));
    }
    if (scaled) image_free(&big);
    image_free(&vis);
    return doc;
}
