/* service.h — one request from bytes to JSON document, independent of the transport. The HTTP
 * workers and the CLI (predict, explain) both call service_run, so `explaind explain` prints the
 * very document the explain endpoint returns.
 *
 * Statuses follow docs/API.md: 400 undecodable image, 413 image over max_pixels or answer over
 * max_response_bytes, 415 not PNG or JPEG, 404 unknown layer, 422 parameters / method not
 * applicable, 504 deadline (rendering included), 499 cancelled (the client left), 500 a bug.
 */
#ifndef EXPLAIND_SERVICE_H
#define EXPLAIND_SERVICE_H

#include <jansson.h>

#include "config.h"
#include "params.h"
#include "sanity.h"
#include "stream.h"

typedef struct {
    int status;         /* HTTP status; 200 on success */
    char detail[768];   /* problem+json detail when status != 200 */
    unsigned methods;   /* on success: the methods an explain document holds (bit M_*), with ... */
    double method_ms[M_COUNT]; /* ... each one's engine time (for the per-method histogram) */
} outcome_t;

typedef struct {
    const uint8_t *data;
    size_t len;
} blob_t;

/* Everything a worker holds for one model. */
typedef struct {
    model_t *model;
    int max_batch; /* workspace batch, from max_batch and workspace_max_bytes */
    /* The built-in probe set: the images POST /sanity (and `explaind sanity` without --images) uses
     * when the request sends none. Loaded once from MODELS_DIR/probes/NAME/ (every .png/.jpg/.jpeg,
     * in file-name order); owned here, freed by service_free_probes. */
    int n_probes;
    blob_t *probes;
    char **probe_files; /* file names, without the folder */
} service_model_t;

/* Read MODELS_DIR/probes/<model name>/ into sm (no folder: no probe set, not an error). More than
 * max_images files, an unreadable file or no memory: -1 with err filled, sm left without probes. */
int service_load_probes(service_model_t *sm, const char *models_dir, int max_images, char *err, size_t err_len);
void service_free_probes(service_model_t *sm);

/* The workspace batch for a model under the config's budget (at least 1). */
int service_batch_for(const model_t *m, const config_t *cfg);

/* What one thread needs to answer requests: the loaded models, its own workspace per model, and
 * the overlay cache shared by all threads. */
typedef struct {
    const config_t *cfg;
    const service_model_t *models;
    int n_models;
    ws_t *const *ws;
    sanity_cache_t *cache;
    /* NULL, or per model a second workspace (NULL entries allowed) on which a sanity request's
     * randomization steps run in parallel with this thread's (sanity_env_t.helper_ws) */
    ws_t *const *helper_ws;
    /* NULL: PNGs and raw maps are base64 strings in the document (the CLI). Otherwise they are
     * this stream's blobs, and its cap (max_response_bytes) applies: a request whose raw outputs
     * alone would pass it is 413 before any work (service_answer_floor), one whose PNGs pass it
     * stops rendering there (413). The workspace's deadline and cancel flag stop rendering too. */
    stream_t *stream;
} service_env_t;

int service_find_model(const service_model_t *models, int n_models, const char *name);

/* The names in dir that keep() accepts, hidden ones (leading '.') never, each without its last
 * `strip` characters (a suffix keep() checked), sorted by strcmp after that (the same order on
 * every machine): models, probe sets, the CLI's image folders. malloc'd (release
 * with service_free_names); NULL with *status SCAN_NO_DIR, SCAN_TOO_MANY (more than max) or
 * SCAN_NO_MEMORY, or with *n 0 and status 0 for an empty folder. */
enum { SCAN_NO_DIR = 1, SCAN_TOO_MANY, SCAN_NO_MEMORY };
char **service_scan_dir(const char *dir, int (*keep)(const char *name), size_t strip, int max, int *n, int *status);
void service_free_names(char **names, int n);
/* .png, .jpg or .jpeg, any case, not hidden: what an image folder holds */
int service_is_image_name(const char *name);

/* Run rq (its route says which) for models[model] on the uploaded images (none for filter
 * visualization; one for predict/explain/activations; one or more for /sanity, or none: the
 * model's probe set, 400 when it has none). */
json_t *service_run(const service_env_t *env, int model, const request_t *rq, const blob_t *images, int n_images,
                    const char *request_id, outcome_t *oc);

/* For a 504: the parameters of rq that shorten its work, per method (ig_steps, smoothgrad_samples,
 * scorecam_channels, occlusion_*, faithfulness_steps, sanity_layers, ...) and the server's
 * request_timeout_ms, as one sentence; returns its length. service_run appends it to its 504s. */
int service_deadline_hint(const request_t *rq, const model_t *m, const config_t *cfg, char *buf, size_t len);
/* A lower bound of the base64 characters rq's answer on model m holds, known before any work: the
 * raw and attribution maps of the methods whose map is at the model's input resolution (the
 * gradient family, guided_gradcam, occlusion, edge; the CAM family's and the internals' depend on
 * the layer and are not counted). PNG sizes depend on their content and are not counted. */
int64_t service_answer_floor(const model_t *m, const request_t *rq);

/* A fresh request id: 32 hex characters. */
void service_new_request_id(char out[33]);
/* HTTP status for an engine status (ENG_EINVAL -> 422, ...). */
int service_status_for(int eng_status);

#endif
