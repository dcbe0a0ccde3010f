/* log.c — structured logs (see log.h). Each line is built in memory and written with one
 * write(2), so lines from different threads never interleave. */
#include "log.h"
#include "utf8.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int g_level = LOG_INFO, g_json = 1;

void log_configure(const char *level, const char *format)
{
    if (level) g_level = !strcmp(level, "debug") ? LOG_DEBUG : !strcmp(level, "warn") ? LOG_WARN : !strcmp(level, "error") ? LOG_ERROR : LOG_INFO;
    if (format) g_json = strcmp(format, "text") != 0;
}

static void now_iso(char *b, size_t n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t l = strftime(b, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(b + l, n - l, ".%03ldZ", ts.tv_nsec / 1000000);
}

static void emit(json_t *o, const char *text)
{
    char *s = NULL;
    if (g_json) s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
    const char *line = g_json ? s : text;
    if (line) {
        size_t l = strlen(line);
        char *b = malloc(l + 2);
        if (b) {
            memcpy(b, line, l);
            b[l] = '\n';
            if (write(STDERR_FILENO, b, l + 1) < 0) { /* nothing sensible to do */
            }
            free(b);
        }
    }
    free(s);
}

void log_event(int level, const char *fmt, ...)
{
    if (level < g_level) return;
    char raw[2048], msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    utf8_clean(msg, sizeof msg, raw, strlen(raw)); /* file and model names are bytes; JSON takes UTF-8 */
    static const char *const names[] = {"debug", "info", "warn", "error"};
    char ts[40];
    now_iso(ts, sizeof ts);
    json_t *o = json_pack("{s:s, s:s, s:s}", "ts", ts, "level", names[level], "msg", msg);
    char text[1200];
    snprintf(text, sizeof text, "%s %s %s", ts, names[level], msg);
    emit(o, text);
    json_decref(o);
}

void log_access(const access_t *a)
{
    if (LOG_INFO < g_level) return;
    char ts[40];
    now_iso(ts, sizeof ts);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:I, s:I, s:f, s:f, s:f}", "ts", ts, "level", "info", "msg", "access",
                          "request_id", a->request_id ? a->request_id : "", "route", a->route ? a->route : "", "status",
                          a->status, "bytes_in", (json_int_t)a->bytes_in, "bytes", (json_int_t)a->bytes_out, "queue_ms",
                          a->queue_ms, "compute_ms", a->compute_ms, "total_ms", a->total_ms);
    if (a->method) json_object_set_new(o, "method", json_string(a->method));
    if (a->model) json_object_set_new(o, "model", json_string(a->model));
    if (a->methods) json_object_set_new(o, "methods", json_string(a->methods));
    if (a->client) json_object_set_new(o, "client", json_string(a->client));
    if (a->detail && a->status >= 400) json_object_set_new(o, "detail", json_string(a->detail));
    char text[1024];
    snprintf(text, sizeof text, "%s access %s %s %s %d %lldB q=%.1fms c=%.1fms t=%.1fms %s", ts, a->request_id ? a->request_id : "-",
             a->method ? a->method : "-", a->route ? a->route : "-", a->status, a->bytes_out, a->queue_ms, a->compute_ms,
             a->total_ms, a->model ? a->model : "");
    emit(o, text);
    json_decref(o);
}
