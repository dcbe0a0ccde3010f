/* doc.h — the JSON documents of docs/API.md (predict, explain), built with jansson from the
 * engine's results. Rendering (PNG, base64) happens here, after the engine is done. */
#ifndef EXPLAIND_DOC_H
#define EXPLAIND_DOC_H

#include <jansson.h>

#include "explain.h"
#include "params.h"
#include "stream.h"

typedef struct {
    const char *request_id;
    const model_t *model;
    const request_t *rq;
    int top_k;               /* the request's, capped at the model's classes (params_resolve) */
    const image_t *image;    /* the decoded upload (for size=input overlays); 1 or 3 channels */
    const char *format;      /* "png" / "jpeg" / "npy" */
    int image_is_model_view; /* image is already in the model's frame (a tensor upload's view) */
    double decode_ms, preprocess_ms, sanity_ms;
    int image_size_max;
    /* NULL: PNGs and raw maps go into the document as base64 strings. Otherwise they are the
     * stream's blobs (written while the answer is sent), and rendering stops once the stream is
     * over its cap. */
    stream_t *stream;
    /* NULL, or the request's workspace: rendering stops between outputs once its deadline has
     * passed or the request was cancelled (ws_deadline_passed), as the engine does between nodes */
    const ws_t *ws;
} doc_ctx_t;

/* Why a document was not made: 413 the stream passed its cap, 504 the deadline passed, 499 the
 * request was cancelled, 503 out of memory. */

/* Predictions (top_k) and the common header. */
json_t *doc_predict(const doc_ctx_t *d, const explain_out_t *out);
/* The explain document; *encode_ms gets the rendering time. NULL with *status set (above). */
json_t *doc_explain(const doc_ctx_t *d, const explain_out_t *out, double *encode_ms, int *status);
/* 0, or the status (above) at which rendering must stop now. */
int doc_stop_status(const doc_ctx_t *d);
/* A PNG (malloc'd; taken) as a JSON string: a blob of st, or base64 inline when st is NULL. */
json_t *doc_png(stream_t *st, uint8_t *png, size_t len);
/* Fill "timing_ms" after the rest is built (total measured by the caller). */
void doc_set_timing(json_t *doc, const doc_ctx_t *d, const explain_out_t *out, double encode_ms, double total_ms);
/* The name a user would recognise for a value: its producing node's name, else the value name. */
const char *doc_value_display_name(const model_t *m, int value);
/* {"index":..., "label":..., "score":..., "logit":...} list of the top k. */
json_t *doc_predictions(const model_t *m, const explain_out_t *out, int k);
/* The model's whole preprocessing, in the sidecar's terms (docs/MODELS.md): color, channels,
 * channel_order, height, width, resize (mode), resize_size, crop, scale, mean, std, invert, and
 * which of them are defaults ("defaults": key names; "sidecar": whether the model has one). */
json_t *doc_model_input(const model_t *m);
/* A float array as {"shape": [...], "dtype": "float32", "data": "<base64 LE>"}; the data is a blob
 * of st (copied), or inline when st is NULL. */
json_t *doc_raw(stream_t *st, const float *data, int rank, const int *dims);

/* The document of POST .../filters/{index}/visualize: the visualization x (a model input tensor,
 * un-normalized in place and stretched to 0..255 for display; small models enlarged to about 224
 * unless size=model), the activation curve (fv->steps values), raw x when asked. */
json_t *doc_filter(const model_t *m, const request_t *rq, const filterviz_params_t *fv, float *x, const float *curve,
                   const char *request_id, stream_t *stream);

#endif
