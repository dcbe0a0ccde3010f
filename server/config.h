/* config.h — explaind's configuration, declared once in a table (server/config.c) that drives
 * every source and every use:
 *   defaults  <  config file (JSON, --config or config/explaind.json)  <  EXPLAIND_<KEY> env  <  --key flags
 * The same table prints --help and the documented config file, and bounds the request
 * parameters (the *_max keys): a request outside them is a 422 naming the parameter and its range.
 */
#ifndef EXPLAIND_CONFIG_H
#define EXPLAIND_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CFG_STR 256

typedef struct {
    /* network */
    char listen[CFG_STR];
    int port;
    int connection_limit;
    int per_ip_connection_limit;
    int connection_timeout_s;
    int read_timeout_s;
    int64_t connection_memory_limit;
    int max_header_bytes;
    /* work */
    int workers;
    int queue_depth;
    int max_batch;
    int64_t workspace_max_bytes;
    int request_timeout_ms;
    int drain_timeout_ms;
    /* uploads */
    int64_t max_upload_bytes;
    int64_t max_response_bytes;
    int64_t max_pixels;
    int max_image_side;
    int max_progressive_scans;
    int64_t max_decoder_memory;
    int sanity_images_max;
    /* models */
    char models_dir[CFG_STR];
    int allow_partial;
    /* security and logs */
    char api_keys_file[CFG_STR];
    char cors_origins[CFG_STR * 4];
    char log_level[16];
    char log_format[16];
    /* request parameter limits (422 beyond them) */
    int top_k_max;
    int ig_steps_max;
    int smoothgrad_samples_max;
    double smoothgrad_noise_max;
    int scorecam_channels_max;
    int occlusion_window_max;
    int faithfulness_steps_max;
    int sanity_noise_samples_max;
    int filter_steps_max;
    int image_size_max; /* PNG output side */
    /* sanity checks */
    double sanity_spearman_threshold;
    double sanity_ssim_threshold;
    double sanity_auto_gflop; /* sanity_layers=auto: the FLOP budget of a request's checks */
    int64_t sanity_helper_max_bytes;
    int request_threads_max; /* 0: workers */
    int64_t sanity_cache_bytes;
} config_t;

/* Fill with defaults. */
void config_defaults(config_t *c);
/* Apply the JSON file at path (unknown keys are an error). missing_ok: a missing file is fine. */
int config_load_file(config_t *c, const char *path, int missing_ok, char *err, size_t errlen);
/* Apply EXPLAIND_* environment variables. */
int config_load_env(config_t *c, char *err, size_t errlen);
/* Apply "--key value" / "--key=value" flags from argv; unrecognised arguments are an error unless
 * they are in `passthrough` (NULL-terminated) — returned in *rest (argv order). */
int config_load_args(config_t *c, int argc, char **argv, char *err, size_t errlen);
/* Full sequence for `serve`: defaults, file (--config PATH or config/explaind.json), env, flags. */
int config_from_all(config_t *c, int argc, char **argv, char *err, size_t errlen);
/* Set one key from a string ("workers", "4"). */
int config_set(config_t *c, const char *key, const char *value, char *err, size_t errlen);
/* --help text and the documented JSON file. */
void config_print_help(FILE *f);
/* The value of a numeric key (the *_max bounds of the request parameters); NAN for an unknown or
 * non-numeric key. */
double config_number(const config_t *c, const char *key);
/* documented: precede each key with "_key": "help" (keys starting with '_' are ignored when read). */
void config_print_json(FILE *f, const config_t *c, int documented);
/* Resolve derived defaults (workers 0 -> number of cores). */
void config_finalize(config_t *c);

#endif
