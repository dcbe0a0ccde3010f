/* metrics.c — counters and histograms (see metrics.h). */
#include "metrics.h"

#include <dirent.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "explain.h"


/* every status the server answers (499: the client left before its answer, nginx's code) */
static const int statuses[] = {200, 204, 400, 401, 404, 405, 408, 413, 414, 415, 422, 431, 499, 500, 501, 503, 504};
#define NSTATUS ((int)(sizeof statuses / sizeof statuses[0]))
static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
#define NB ((int)(sizeof buckets / sizeof buckets[0]))

typedef struct {
    atomic_llong b[NB + 1]; /* last: +Inf */
    atomic_llong sum_us;
    atomic_llong count;
} hist_t;

static atomic_llong req_count[RT_COUNT][NSTATUS + 1]; /* last: other statuses */
static hist_t req_hist[RT_COUNT];
static hist_t meth_hist[M_COUNT];
static atomic_int inflight;

#define NPROB 32
static const char *prob_types[NPROB];
static atomic_llong prob_count[NPROB];
static atomic_int prob_n;
static atomic_llong slow_clients;

void metrics_slow_client(void) { atomic_fetch_add(&slow_clients, 1); }
static atomic_llong borrowed_core_us;
void metrics_borrowed_cores(int cores, double seconds)
{
    if (cores > 0 && seconds > 0) atomic_fetch_add(&borrowed_core_us, (long long)(cores * seconds * 1e6));
}

const char *metrics_route_label(int r) { return route_get(r)->path; }

static void hist_add(hist_t *h, double s)
{
    int i = 0;
    while (i < NB && s > buckets[i]) i++;
    atomic_fetch_add(&h->b[i], 1);
    atomic_fetch_add(&h->sum_us, (long long)(s * 1e6));
    atomic_fetch_add(&h->count, 1);
}

void metrics_request(int route, int status, double seconds)
{
    if (route < 0 || route >= RT_COUNT) route = RT_NOT_FOUND;
    int si = NSTATUS;
    for (int i = 0; i < NSTATUS; i++)
        if (statuses[i] == status) si = i;
    atomic_fetch_add(&req_count[route][si], 1);
    hist_add(&req_hist[route], seconds);
}

void metrics_method(const char *method, double seconds)
{
    int m = method_from_name(method);
    if (m >= 0) hist_add(&meth_hist[m], seconds);
}

void metrics_problem(const char *type)
{
    /* types are string literals from a fixed set: compare pointers first, then text */
    int n = atomic_load(&prob_n);
    for (int i = 0; i < n; i++)
        if (prob_types[i] == type || !strcmp(prob_types[i], type)) {
            atomic_fetch_add(&prob_count[i], 1);
            return;
        }
    static atomic_flag lock = ATOMIC_FLAG_INIT;
    while (atomic_flag_test_and_set(&lock)) {
    }
    n = atomic_load(&prob_n);
    int found = -1;
    for (int i = 0; i < n; i++)
        if (!strcmp(prob_types[i], type)) found = i;
    if (found < 0 && n < NPROB) {
        prob_types[n] = type;
        found = n;
        atomic_store(&prob_n, n + 1);
    }
    atomic_flag_clear(&lock);
    if (found >= 0) atomic_fetch_add(&prob_count[found], 1);
}

void metrics_inflight(int delta) { atomic_fetch_add(&inflight, delta); }
int metrics_inflight_now(void) { return atomic_load(&inflight); }

long metrics_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
        fclose(f);
    }
    return rss * sysconf(_SC_PAGESIZE);
}

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    while (readdir(d)) n++;
    closedir(d);
    return n - 3; /* ".", ".." and the directory's own fd */
}

typedef struct {
    char *b;
    size_t len, cap;
} sb_t;

static void sb_printf(sb_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#include <stdarg.h>
static void sb_printf(sb_t *s, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(s->b ? s->b + s->len : NULL, s->b ? s->cap - s->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (s->b && s->len + (size_t)n < s->cap) {
            s->len += (size_t)n;
            return;
        }
        size_t nc = s->cap ? s->cap * 2 : 8192;
        while (nc < s->len + (size_t)n + 1) nc *= 2;
        char *nb = realloc(s->b, nc);
        if (!nb) return;
        s->b = nb;
        s->cap = nc;
    }
}

static void hist_render(sb_t *s, const char *name, const char *label, const char *value, const hist_t *h)
{
    long long cum = 0;
    for (int i = 0; i <= NB; i++) {
        cum += atomic_load(&h->b[i]);
        if (i < NB) sb_printf(s, "%s_bucket{%s=\"%s\",le=\"%g\"} %lld\n", name, label, value, buckets[i], cum);
        else sb_printf(s, "%s_bucket{%s=\"%s\",le=\"+Inf\"} %lld\n", name, label, value, cum);
    }
    sb_printf(s, "%s_sum{%s=\"%s\"} %.6f\n", name, label, value, (double)atomic_load(&h->sum_us) / 1e6);
    sb_printf(s, "%s_count{%s=\"%s\"} %lld\n", name, label, value, (long long)atomic_load(&h->count));
}

char *metrics_render(int queue_depth, int workers_busy, int workers, const char *model_info, size_t *len)
{
    sb_t s = {0};
    sb_printf(&s, "# HELP explaind_requests_total HTTP requests by route template and status.\n"
                  "# TYPE explaind_requests_total counter\n");
    for (int r = 0; r < RT_COUNT; r++)
        for (int i = 0; i <= NSTATUS; i++) {
            long long c = atomic_load(&req_count[r][i]);
            if (!c) continue;
            if (i < NSTATUS)
                sb_printf(&s, "explaind_requests_total{route=\"%s\",status=\"%d\"} %lld\n", route_get(r)->path, statuses[i], c);
            else sb_printf(&s, "explaind_requests_total{route=\"%s\",status=\"other\"} %lld\n", route_get(r)->path, c);
        }
    sb_printf(&s, "# HELP explaind_request_duration_seconds Time from the first byte handled to the response queued.\n"
                  "# TYPE explaind_request_duration_seconds histogram\n");
    for (int r = 0; r < RT_COUNT; r++)
        if (atomic_load(&req_hist[r].count)) hist_render(&s, "explaind_request_duration_seconds", "route", route_get(r)->path, &req_hist[r]);
    sb_printf(&s, "# HELP explaind_method_duration_seconds Engine time per explanation method.\n"
                  "# TYPE explaind_method_duration_seconds histogram\n");
    for (int m = 0; m < M_COUNT; m++)
        if (atomic_load(&meth_hist[m].count)) hist_render(&s, "explaind_method_duration_seconds", "method", method_name(m), &meth_hist[m]);
    sb_printf(&s, "# HELP explaind_problems_total Error answers (problem+json) by problem type.\n"
                  "# TYPE explaind_problems_total counter\n");
    for (int i = 0; i < atomic_load(&prob_n); i++)
        sb_printf(&s, "explaind_problems_total{type=\"%s\"} %lld\n", prob_types[i], (long long)atomic_load(&prob_count[i]));
    sb_printf(&s, "# HELP explaind_slow_clients_total Connections shut down because their request headers did not arrive within read_timeout_s.\n"
                  "# TYPE explaind_slow_clients_total counter\nexplaind_slow_clients_total %lld\n",
              (long long)atomic_load(&slow_clients));
    sb_printf(&s, "# HELP explaind_borrowed_core_seconds_total Core time requests ran on cores borrowed from idle workers (request_threads_max).\n"
                  "# TYPE explaind_borrowed_core_seconds_total counter\nexplaind_borrowed_core_seconds_total %.6f\n",
              (double)atomic_load(&borrowed_core_us) / 1e6);
    sb_printf(&s,
              "# HELP explaind_queue_depth Requests waiting for a worker.\n# TYPE explaind_queue_depth gauge\n"
              "explaind_queue_depth %d\n"
              "# HELP explaind_inflight Requests being handled (queued, computing or answering).\n# TYPE explaind_inflight gauge\n"
              "explaind_inflight %d\n"
              "# HELP explaind_workers_busy Workers computing.\n# TYPE explaind_workers_busy gauge\n"
              "explaind_workers_busy %d\n"
              "# HELP explaind_workers Worker threads.\n# TYPE explaind_workers gauge\nexplaind_workers %d\n",
              queue_depth, atomic_load(&inflight), workers_busy, workers);
    sb_printf(&s, "# HELP explaind_model_info Loaded models.\n# TYPE explaind_model_info gauge\n%s", model_info ? model_info : "");
    sb_printf(&s,
              "# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\n"
              "process_resident_memory_bytes %ld\n"
              "# HELP process_open_fds Open file descriptors.\n# TYPE process_open_fds gauge\nprocess_open_fds %d\n",
              metrics_rss_bytes(), open_fds());
    *len = s.len;
    return s.b;
}
