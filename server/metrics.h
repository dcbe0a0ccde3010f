/* metrics.h — Prometheus text exposition (format 0.0.4) for GET /metrics:
 *   explaind_requests_total{route,status}          counter
 *   explaind_request_duration_seconds{route}       histogram
 *   explaind_method_duration_seconds{method}       histogram
 *   explaind_problems_total{type}                  counter of problem+json answers by type
 *   explaind_slow_clients_total                    counter of connections shut for sending their headers too slowly
 *   explaind_borrowed_core_seconds_total           counter: wall time x cores requests borrowed from idle workers
 *   explaind_queue_depth, explaind_inflight, explaind_workers_busy, explaind_workers   gauges
 *   explaind_model_info{model,classes,input}       gauge (1)
 *   process_resident_memory_bytes, process_open_fds gauges
 * Route labels are the route templates (a fixed set), never raw URLs. Lock-free counters. */
#ifndef EXPLAIND_METRICS_H
#define EXPLAIND_METRICS_H

#include <stddef.h>

#include "routes.h" /* RT_*: routes are labelled by their templates */

const char *metrics_route_label(int route);
void metrics_request(int route, int status, double seconds);
void metrics_method(const char *method, double seconds);
void metrics_problem(const char *type);
void metrics_inflight(int delta);
/* A connection shut down because its request headers missed the read deadline (read_timeout_s). */
void metrics_slow_client(void);
/* A request ran `seconds` with `cores` borrowed cores (request_threads_max). */
void metrics_borrowed_cores(int cores, double seconds);
/* Requests being handled now (the explaind_inflight gauge). */
int metrics_inflight_now(void);
/* Render everything; gauges passed in. Returns malloc'd text, *len its length. */
char *metrics_render(int queue_depth, int workers_busy, int workers, const char *model_info_lines, size_t *len);
long metrics_rss_bytes(void);

#endif
