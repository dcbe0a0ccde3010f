/* sanity_doc.h — the "sanity" section of an explain document, and the report of
 * POST /v1/models/{model}/sanity (mean, std and count of every similarity per method and step over
 * the images, plus the verdicts). */
#ifndef EXPLAIND_SANITY_DOC_H
#define EXPLAIND_SANITY_DOC_H

#include <jansson.h>

#include "params.h"
#include "sanity.h"

/* request parameters -> engine parameters (thresholds from the config) */
void sanity_params_from_request(const request_t *rq, const config_t *cfg, sanity_params_t *sp);
/* The per-request section. */
json_t *sanity_doc(const model_t *m, const request_t *rq, const sanity_params_t *sp, const sanity_result_t *r);

/* Aggregation over images: add results one by one, then render. */
typedef struct sanity_agg sanity_agg_t;
sanity_agg_t *sanity_agg_create(void);
void sanity_agg_add(sanity_agg_t *a, const sanity_result_t *r);
json_t *sanity_agg_doc(const sanity_agg_t *a, const model_t *m, const request_t *rq, const sanity_params_t *sp);
void sanity_agg_free(sanity_agg_t *a);

/* The document of POST /v1/models/{model}/sanity: the aggregate over the images, what they were,
 * the methods, the per-image sections when asked, and the timing. */
typedef struct {
    const char *request_id;
    int images;                     /* how many were checked */
    char *const *probe_files;       /* the probe set's file names when the images came from it, else NULL */
    json_t *per_image;              /* the per-image sections (sanity_report_image_doc), or NULL; the document takes it */
    double explain_ms, sanity_ms, total_ms;
} sanity_report_t;
json_t *sanity_report_doc(const model_t *m, const request_t *rq, const sanity_params_t *sp, const sanity_agg_t *agg,
                          const sanity_report_t *rep);
/* One image's entry of per_image: its index, the explained class and its sanity section. */
json_t *sanity_report_image_doc(const model_t *m, const request_t *rq, const sanity_params_t *sp, const sanity_result_t *r,
                                int index, int target);

#endif
