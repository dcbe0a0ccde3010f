/* log.h — logs to stderr: one JSON object per line (log_format=json) or plain text. The access log
 * has one line per request: request id, route, model, methods, status, bytes, queue wait, compute
 * and total ms. */
#ifndef EXPLAIND_LOG_H
#define EXPLAIND_LOG_H

enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_configure(const char *level, const char *format);
void log_event(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

typedef struct {
    const char *request_id, *method, *route, *model, *methods, *client;
    int status;
    long long bytes_in, bytes_out;
    double queue_ms, compute_ms, total_ms;
    const char *detail; /* for errors */
} access_t;
void log_access(const access_t *a);

#endif
