/* http.c — `explaind serve`: the HTTP front on libmicrohttpd.
 *
 * Threads. MHD runs one internal polling thread (epoll) that parses requests and never runs engine
 * work. When a request is complete, the handler puts a job on the worker pool's bounded queue and
 * suspends the connection (MHD_suspend_connection); a worker computes the document, stores it in
 * the request and resumes the connection (MHD_resume_connection, thread-safe); MHD then calls the
 * handler again, which queues the response. A full queue is a 503 with Retry-After, answered at
 * once. Each request carries a deadline (request_timeout_ms from arrival): a job that starts late,
 * or whose engine work, rendering or serialization passes it (checked between layers, batches and
 * outputs), answers 504. A client that leaves while its request is queued or computed (the sweeper
 * sees its socket end) sets the request's cancel flag, which the engine checks where it checks the
 * deadline: the worker is free at once, no answer is sent, the access log says 499.
 *
 * Bodies are capped while they stream in (max_upload_bytes); a Content-Length already over the cap
 * is refused with 413 before any of the body is read. A body framed other than by Content-Length or
 * chunked alone is refused at once (501; both at once: 400). multipart/form-data is parsed by
 * body.c as it streams in, and an error found then is answered then (answer_midstream); JSON goes
 * through jansson; image bodies are kept as bytes and sniffed by the decoder. What a body means
 * (images, parameters, their errors) is body.c's: it runs without a socket.
 *
 * Answers of the compute routes are streams (stream.h): their PNGs and maps stay bytes until
 * libmicrohttpd asks for the text, and max_response_bytes caps them (413).
 *
 * Shutdown on SIGTERM/SIGINT: /readyz turns 503 "draining", MHD_quiesce_daemon stops accepting
 * connections, queued and running requests finish (up to drain_timeout_ms), then the daemon stops —
 * never while a connection is still suspended — and the process exits 0.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <malloc.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "assets.h"
#include "body.h"
#include "cli.h"
#include "config.h"
#include "doc.h"
#include "log.h"
#include "metrics.h"
#include "params.h"
#include "routes.h"
#include "pool.h"
#include "render.h"
#include "service.h"
#include "stream.h"
#include "utf8.h"

#define MAX_MODELS 64
#define STR_(x) #x
#define STR(x) STR_(x)
#define MAX_ORIGINS 32

typedef struct {
    config_t cfg;
    service_model_t models[MAX_MODELS];
    int n_models;
    pool_t *pool;
    struct MHD_Daemon *daemon;
    atomic_int ready, draining;
    char **keys; /* api_keys_file, one key a line, any length, any count */
    int n_keys;
    char *origins[MAX_ORIGINS];
    int n_origins, any_origin;
    char *model_info;
    sanity_cache_t *cache; /* randomized-layer overlays, shared by the workers */
} server_t;

static server_t S;

/* ---- per-worker state: one workspace per model ------------------------------------------------ */
typedef struct {
    ws_t *ws[MAX_MODELS];
    ws_t *helper[MAX_MODELS]; /* second workspaces for parallel sanity steps, made on first use */
    par_team_t *team;         /* request_threads_max threads (this one + parked helpers); NULL when 1 */
} wstate_t;

/* Threads one request may use: request_threads_max, 0 meaning every worker's core; never more than
 * the workers (it borrows their cores). */
static int request_threads(void)
{
    int t = S.cfg.request_threads_max > 0 && S.cfg.request_threads_max < S.cfg.workers ? S.cfg.request_threads_max
                                                                                       : S.cfg.workers;
    return t < 1 ? 1 : t;
}

/* One forward and one input-gradient pass on a zero image, so that the first request a worker
 * serves does not pay for first-touch page faults of its arenas and OpenBLAS's per-thread buffers
 * (measured: 17 ms instead of 1 ms on fashion-cnn). A failure here only costs that latency. */
static void warm_up(ws_t *ws, const graph_t *g)
{
    value_info_t in, out;
    graph_value_info(g, graph_input_value(g), &in);
    graph_value_info(g, graph_output_value(g), &out);
    float *x = calloc(in.size, sizeof *x), *seed = calloc(out.size, sizeof *seed), *dx = malloc(in.size * sizeof *dx);
    eng_err_t err;
    if (x && seed && dx && !ws_forward(ws, x, 1, &err)) {
        seed[0] = 1.0f;
        int cap = graph_input_value(g);
        bw_req_t rq = {.seed_value = graph_output_value(g), .seed = seed, .n_capture = 1, .capture = &cap,
                       .capture_out = &dx};
        ws_backward(ws, &rq, &err);
    }
    free(x);
    free(seed);
    free(dx);
}

static int worker_init(worker_ctx_t *w, int index, void *cls)
{
    (void)index;
    server_t *s = cls;
    wstate_t *st = calloc(1, sizeof *st);
    if (!st) return -1;
    for (int i = 0; i < s->n_models; i++) {
        eng_err_t err;
        if (ws_create(s->models[i].model->graph, s->models[i].max_batch, &st->ws[i], &err)) {
            log_event(LOG_ERROR, "worker %d: workspace for model %s: %s", index, s->models[i].model->name, err.msg);
            for (int k = 0; k < i; k++) ws_free(st->ws[k]);
            free(st);
            return -1;
        }
    }
    if (request_threads() > 1 && !(st->team = par_team_create(request_threads())))
        log_event(LOG_WARN, "worker %d: cannot start %d threads for request_threads_max; requests run on one", index,
                  request_threads());
    for (int i = 0; i < s->n_models; i++) {
        warm_up(st->ws[i], s->models[i].model->graph);
        ws_set_team(st->ws[i], st->team); /* idle: par_team_set_active(1) until a request borrows cores */
    }
    par_team_set_active(st->team, 1);
    w->state = st;
    return 0;
}

static void worker_fini(worker_ctx_t *w, void *cls)
{
    server_t *s = cls;
    wstate_t *st = w->state;
    if (!st) return;
    for (int i = 0; i < s->n_models; i++) {
        ws_free(st->ws[i]);
        ws_free(st->helper[i]);
    }
    par_team_free(st->team);
    free(st);
}

/* The helper workspaces for a sanity request on model mi: its own and its twin's slot. The caller
 * has borrowed an idle worker's core for the helper thread (else it would only take a core from
 * another request). NULL when the workspace is over sanity_helper_max_bytes. Made on first use,
 * warmed up, then kept. */
static ws_t *const *sanity_helpers(wstate_t *st, int mi)
{
    if (!st->helper[mi]) {
        if ((int64_t)ws_bytes(st->ws[mi]) > S.cfg.sanity_helper_max_bytes) return NULL;
        eng_err_t err;
        const graph_t *g = S.models[mi].model->graph;
        if (ws_create(g, S.models[mi].max_batch, &st->helper[mi], &err)) {
            log_event(LOG_WARN, "no helper workspace for the sanity steps of %s: %s", S.models[mi].model->name, err.msg);
            return NULL;
        }
        warm_up(st->helper[mi], g);
    }
    return st->helper;
}

/* ---- requests ----------------------------------------------------------------------------------- */
enum { BODY_NONE, BODY_RAW, BODY_JSON, BODY_MULTIPART };
enum { PH_RECEIVING, PH_QUEUED, PH_DONE, PH_ANSWERED };

typedef struct req {
    struct MHD_Connection *conn;
    int route, model_idx, filter_index;
    char model_name[MODEL_MAX_NAME];
    char layer[1024];
    char request_id[65];
    char client[64];
    char method[16]; /* as sent (logged): a refused POST is logged as POST */
    int64_t t_start, t_queued, t_compute, t_done, deadline;
    int body_kind;
    buf_t body;
    uint64_t received;
    body_t form; /* the images and multipart fields (body.h) */
    request_t rq;
    int phase;
    /* the answer */
    int status;
    char *resp;
    size_t resp_len;
    int resp_is_problem;
    char detail[768];
    const char *problem_type;
    char methods_str[256];
    long long bytes_out;
    int raw_sent; /* the answer was written to the socket directly (mid-stream 413) */
    stream_t *stream; /* the answer when it is a streamed document (stream.h), else resp */
    /* set by the sweeper when the client has gone while the request is queued or computed: the
     * engine stops at its next node (ws_set_cancel), rendering at its next output, and the
     * connection is closed without an answer (logged 499) */
    atomic_int cancel;
} req_t;

static int64_t now_ns(void) { return eng_now_ns(); }
static double ms(int64_t a, int64_t b) { return a && b ? (double)(b - a) / 1e6 : 0; }

static void req_free(req_t *r)
{
    if (!r) return;
    buf_free(&r->body);
    body_free(&r->form);
    free(r->resp);
    stream_free(r->stream);
    free(r);
}

/* ---- problem+json ------------------------------------------------------------------------------- */
static const char *problem_slug(int status)
{
    switch (status) {
    case 400: return "bad-request";
    case 401: return "unauthorized";
    case 404: return "not-found";
    case 405: return "method-not-allowed";
    case 408: return "request-timeout";
    case 413: return "payload-too-large";
    case 414: return "uri-too-long";
    case 415: return "unsupported-media-type";
    case 422: return "unprocessable-parameters";
    case 431: return "headers-too-large";
    case 499: return "client-closed-request";
    case 501: return "not-implemented";
    case 503: return "unavailable";
    case 504: return "deadline-exceeded";
    default: return "internal-error";
    }
}

static const char *status_title(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 431: return "Request Header Fields Too Large";
    case 499: return "Client Closed Request";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Internal Server Error";
    }
}

/* Store a problem+json answer in r (the handler or the worker queues it). */
static void set_problem(req_t *r, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_problem(req_t *r, int status, const char *fmt, ...)
{
    char raw[2 * sizeof r->detail];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    /* the detail quotes what the client sent (paths, names, headers): jansson takes only valid
     * UTF-8, and a detail it refused used to turn the answer into a 500 */
    utf8_clean(r->detail, sizeof r->detail, raw, strlen(raw));
    r->status = status;
    r->problem_type = problem_slug(status);
    char type[96];
    snprintf(type, sizeof type, "urn:explaind:problem:%s", r->problem_type);
    json_t *o = json_pack("{s:s, s:s, s:i, s:s, s:s}", "type", type, "title", status_title(status), "status", status,
                          "detail", r->detail, "request_id", r->request_id);
    free(r->resp);
    r->resp = json_dumps(o, JSON_COMPACT);
    r->resp_len = r->resp ? strlen(r->resp) : 0;
    r->resp_is_problem = 1;
    json_decref(o);
}

#define DOC_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(9))

static void set_json(req_t *r, int status, json_t *doc)
{
    r->status = status;
    free(r->resp);
    r->resp = json_dumps(doc, DOC_FLAGS);
    r->resp_len = r->resp ? strlen(r->resp) : 0;
    r->resp_is_problem = 0;
    json_decref(doc);
    if (!r->resp) set_problem(r, 500, "could not serialize the response");
    else if ((int64_t)r->resp_len > S.cfg.max_response_bytes)
        set_problem(r, 413, "the answer is %zu bytes, over max_response_bytes (%lld)", r->resp_len,
                    (long long)S.cfg.max_response_bytes);
}

/* A document whose PNGs and maps are blobs of r->stream: keep the skeleton text, and answer from
 * the stream (queue_stored). The length is final here: over max_response_bytes is 413. */
static void set_streamed(req_t *r, int status, json_t *doc)
{
    int rc = stream_finish(r->stream, doc, DOC_FLAGS);
    json_decref(doc);
    free(r->resp);
    r->resp = NULL;
    r->resp_is_problem = 0;
    r->status = status;
    if (rc) set_problem(r, 503, "out of memory while serializing the response");
    else if ((int64_t)stream_length(r->stream) > S.cfg.max_response_bytes)
        set_problem(r, 413, "the answer is %llu bytes, over max_response_bytes (%lld)",
                    (unsigned long long)stream_length(r->stream), (long long)S.cfg.max_response_bytes);
    if (r->resp) { /* a problem replaced it */
        stream_free(r->stream);
        r->stream = NULL;
    }
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    size_t n = stream_read(cls, pos, buf, max);
    return n ? (ssize_t)n : MHD_CONTENT_READER_END_OF_STREAM;
}

static void stream_release(void *cls) { stream_free(cls); }

/* ---- CORS, headers, queueing -------------------------------------------------------------------- */
static const char *allowed_origin(struct MHD_Connection *c)
{
    const char *o = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    if (!o) return NULL;
    if (S.any_origin) return "*";
    for (int i = 0; i < S.n_origins; i++)
        if (!strcmp(S.origins[i], o)) return o;
    return NULL;
}

static void add_common_headers(req_t *r, struct MHD_Response *resp)
{
    MHD_add_response_header(resp, "X-Request-Id", r->request_id);
    const char *o = allowed_origin(r->conn);
    if (o) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", o);
        MHD_add_response_header(resp, "Access-Control-Expose-Headers", "X-Request-Id, Retry-After");
        if (strcmp(o, "*")) MHD_add_response_header(resp, "Vary", "Origin");
    }
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
}

static enum MHD_Result queue_bytes(req_t *r, int status, const void *data, size_t len, const char *ctype, int copy)
{
    struct MHD_Response *resp =
        copy ? MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_MUST_COPY)
             : MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", ctype);
    add_common_headers(r, resp);
    if (status == 503) MHD_add_response_header(resp, "Retry-After", "1");
    if (status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    if (status == 405) MHD_add_response_header(resp, "Allow", route_get(r->route)->post ? "POST, OPTIONS" : "GET, HEAD, OPTIONS");
    if (r->phase == PH_RECEIVING && status >= 400) MHD_add_response_header(resp, "Connection", "close");
    r->status = status;
    r->bytes_out = (long long)len;
    r->phase = PH_ANSWERED;
    enum MHD_Result rc = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return rc;
}

/* Queue what set_problem / set_json stored. */
static enum MHD_Result queue_stored(req_t *r)
{
    struct MHD_Response *resp;
    if (r->stream && !r->resp) {
        /* streamed: libmicrohttpd asks for the text as the socket takes it (stream_reader), with
         * Content-Length known; the stream is freed with the response */
        r->resp_len = (size_t)stream_length(r->stream);
        resp = MHD_create_response_from_callback(stream_length(r->stream), 64 * 1024, stream_reader, r->stream, stream_release);
        if (!resp) return MHD_NO;
        r->stream = NULL;
    } else {
        if (!r->resp) set_problem(r, 500, "no response was produced");
        resp = MHD_create_response_from_buffer(r->resp_len, r->resp, MHD_RESPMEM_MUST_FREE);
        if (!resp) return MHD_NO;
        r->resp = NULL; /* MHD owns it now */
    }
    MHD_add_response_header(resp, "Content-Type", r->resp_is_problem ? "application/problem+json" : "application/json");
    add_common_headers(r, resp);
    if (r->status == 503) MHD_add_response_header(resp, "Retry-After", "1");
    if (r->status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    if (r->status == 405)
        MHD_add_response_header(resp, "Allow", route_get(r->route)->post ? "POST, OPTIONS" : "GET, HEAD, OPTIONS");
    if (r->phase == PH_RECEIVING && r->status >= 400) MHD_add_response_header(resp, "Connection", "close");
    if (r->resp_is_problem) metrics_problem(r->problem_type);
    r->bytes_out = (long long)r->resp_len;
    r->phase = PH_ANSWERED;
    enum MHD_Result rc = MHD_queue_response(r->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return rc;
}

static enum MHD_Result answer_problem(req_t *r, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static enum MHD_Result answer_problem(req_t *r, int status, const char *fmt, ...)
{
    char d[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d, sizeof d, fmt, ap);
    va_end(ap);
    set_problem(r, status, "%s", d);
    return queue_stored(r);
}

static enum MHD_Result answer_json(req_t *r, int status, json_t *doc)
{
    set_json(r, status, doc);
    return queue_stored(r);
}

/* libmicrohttpd 0.9.75 accepts a response only after the headers or after the whole body. An answer
 * that must go out while a body is still streaming in (a chunked body past max_upload_bytes: 413; a
 * body past the read deadline: 408) is written straight to the socket and the write side is shut;
 * the rest of the body is read and dropped (clients such as curl stop sending on an early 4xx) up to
 * twice the limit, after which the connection is closed. */
static void answer_midstream(req_t *r, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void answer_midstream(req_t *r, int status, const char *fmt, ...)
{
    char detail[sizeof r->detail];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    set_problem(r, status, "%s", detail);
    metrics_problem(r->problem_type);
    /* the headers add_common_headers gives every other answer (CORS: a page must read this one too) */
    const char *o = allowed_origin(r->conn);
    char cors[CFG_STR * 4 + 160] = "";
    if (o)
        snprintf(cors, sizeof cors, "Access-Control-Allow-Origin: %s\r\nAccess-Control-Expose-Headers: X-Request-Id, Retry-After\r\n%s",
                 o, strcmp(o, "*") ? "Vary: Origin\r\n" : "");
    char head[sizeof cors + 512];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nContent-Type: application/problem+json\r\nContent-Length: %zu\r\n"
                      "X-Request-Id: %s\r\n%sCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
                      "Connection: close\r\n\r\n",
                      status, status_title(status), r->resp_len, r->request_id, cors);
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci && hl > 0) {
        int fd = ci->connect_fd;
        if (send(fd, head, (size_t)hl, MSG_NOSIGNAL) == hl && send(fd, r->resp, r->resp_len, MSG_NOSIGNAL) == (ssize_t)r->resp_len)
            shutdown(fd, SHUT_WR);
    }
    r->bytes_out = hl + (long long)r->resp_len;
    r->raw_sent = 1;
    r->phase = PH_ANSWERED;
}

/* ---- slow clients: the read deadline ----------------------------------------------------------------
 * MHD closes a connection that sends nothing for connection_timeout_s, but a client that trickles a
 * byte now and then (slow-loris) is never idle. So every connection also has a read deadline by
 * which its request (headers and body) must have arrived: read_timeout_s from its start, and
 * connection_timeout_s + read_timeout_s from its previous answer (an idle keep-alive connection is
 * closed by MHD's idle timeout first, and is no slow client). A body chunk that arrives past it is answered 408 (answer_midstream). A
 * connection still sending its headers at the deadline cannot be answered (MHD has not called the
 * handler yet), so the sweeper thread shuts its socket down (MHD then closes it as a client that
 * left) and counts it in explaind_slow_clients_total. The deadline is off while a complete request is
 * queued, computed or answered. Tracks are created and removed by MHD's connection notifications;
 * MHD closes the socket only after the CLOSED notification, so a track's fd is open while it is
 * listed. */
/* The client's IP address as text ("" when unknown). */
static void client_address(struct MHD_Connection *c, char *out, size_t len)
{
    out[0] = 0;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr) return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET) inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)len);
    else if (sa->sa_family == AF_INET6) inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)len);
}

typedef struct track {
    struct track *prev, *next;
    int fd;
    char client[64];
    _Atomic int64_t deadline; /* 0 = off */
    atomic_int in_body;       /* the handler has the headers: lateness is answered 408 there */
    atomic_int *cancel;       /* the queued or running request's cancel flag (tracks_mu), or NULL */
} track_t;

static pthread_mutex_t tracks_mu = PTHREAD_MUTEX_INITIALIZER;
static track_t *tracks;
static atomic_int sweeper_stop;

static int64_t read_deadline(void) { return now_ns() + (int64_t)S.cfg.read_timeout_s * 1000000000LL; }

static track_t *track_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context, enum MHD_ConnectionNotificationCode code)
{
    (void)cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        track_t *t = calloc(1, sizeof *t);
        if (!t) return; /* untracked: only the idle timeout applies */
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        t->fd = ci ? ci->connect_fd : -1;
        client_address(c, t->client, sizeof t->client);
        atomic_store(&t->deadline, read_deadline());
        pthread_mutex_lock(&tracks_mu);
        t->next = tracks;
        if (tracks) tracks->prev = t;
        tracks = t;
        pthread_mutex_unlock(&tracks_mu);
        *socket_context = t;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context) {
        track_t *t = *socket_context;
        pthread_mutex_lock(&tracks_mu);
        if (t->prev) t->prev->next = t->next;
        else tracks = t->next;
        if (t->next) t->next->prev = t->prev;
        pthread_mutex_unlock(&tracks_mu);
        free(t);
        *socket_context = NULL;
    }
}

/* Has the client of a suspended connection gone? libmicrohttpd does not watch a suspended
 * connection's socket, so the sweeper looks: end of stream (the client closed, or shut down its
 * sending side, as nginx counts a client gone: 499) or a reset. Bytes waiting (a pipelined next
 * request) are left where they are (MSG_PEEK): the client is still there. */
static int client_gone(int fd)
{
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return 1;
    if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
    return 0;
}

static void stop_sweeper(pthread_t th)
{
    atomic_store(&sweeper_stop, 1);
    pthread_join(th, NULL);
}

static void *sweeper_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&sweeper_stop)) {
        usleep(200000);
        int64_t now = now_ns();
        pthread_mutex_lock(&tracks_mu);
        for (track_t *t = tracks; t; t = t->next) {
            if (t->cancel && t->fd >= 0 && !atomic_load(t->cancel) && client_gone(t->fd)) {
                atomic_store(t->cancel, 1);
            }
            int64_t dl = atomic_load(&t->deadline);
            if (!dl || now <= dl || atomic_load(&t->in_body) || t->fd < 0) continue;
            atomic_store(&t->deadline, 0);
            shutdown(t->fd, SHUT_RDWR);
            metrics_slow_client();
            log_event(LOG_WARN, "closed a connection from %s: its request headers did not arrive within %d s (read_timeout_s)",
                      t->client[0] ? t->client : "?", S.cfg.read_timeout_s);
        }
        pthread_mutex_unlock(&tracks_mu);
    }
    return NULL;
}

/* ---- routing --------------------------------------------------------------------------------------- */
/* Match url to a route (routes.c's table); fills r->route, model and layer. Returns 0, or 404. */
static int match_route(req_t *r, const char *url)
{
    r->model_idx = -1;
    if (asset_find(url) && strcmp(url, route_get(RT_OPENAPI)->path)) {
        r->route = RT_DASHBOARD;
        return 0;
    }
    route_match_t m;
    int rc = route_match(url, &m);
    r->route = m.route;
    if (rc) return 404;
    snprintf(r->model_name, sizeof r->model_name, "%s", m.model);
    snprintf(r->layer, sizeof r->layer, "%s", m.layer);
    r->filter_index = m.index;
    return 0;
}

/* ---- auth ---------------------------------------------------------------------------------------- */
static int ct_equal(const char *a, size_t la, const char *b, size_t lb)
{
    /* constant time in the key's content: always walks the longer length */
    size_t n = la > lb ? la : lb;
    unsigned char d = (unsigned char)(la != lb);
    for (size_t i = 0; i < n; i++) d |= (unsigned char)((i < la ? a[i] : 0) ^ (i < lb ? b[i] : 0));
    return d == 0;
}

static int authorized(struct MHD_Connection *c)
{
    if (!S.n_keys) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7)) return 0;
    const char *k = h + 7;
    size_t lk = strlen(k);
    int ok = 0;
    for (int i = 0; i < S.n_keys; i++) ok |= ct_equal(k, lk, S.keys[i], strlen(S.keys[i]));
    return ok;
}

/* ---- GET handlers ---------------------------------------------------------------------------------- */
static json_t *model_summary(const model_t *m)
{
    const graph_t *g = m->graph;
    json_t *o = json_pack("{s:s, s:i, s:o}", "name", m->name, "classes", m->n_labels, "input", doc_model_input(m));
    if (m->cam_value >= 0) json_object_set_new(o, "cam_layer", json_string(doc_value_display_name(m, m->cam_value)));
    else json_object_set_new(o, "cam_layer", json_null());
    json_object_set_new(o, "label_randomized_twin", m->twin ? json_string(m->twin) : json_null());
    json_object_set_new(o, "parameters", json_integer(graph_total_params(g)));
    return o;
}

static json_t *model_info(const service_model_t *sm)
{
    const model_t *m = sm->model;
    const graph_t *g = m->graph;
    json_t *o = model_summary(m);
    json_t *labels = json_array(), *layers = json_array(), *att = json_array(), *methods = json_array();
    for (int k = 0; k < m->n_labels; k++) json_array_append_new(labels, json_string(m->labels[k]));
    for (int i = 0; i < graph_n_nodes(g); i++) {
        node_info_t ni;
        value_info_t vi;
        graph_node_info(g, i, &ni);
        graph_value_info(g, ni.out_value, &vi);
        json_t *shape = json_array();
        for (int k = 1; k < vi.rank; k++) json_array_append_new(shape, json_integer(vi.dims[k]));
        json_array_append_new(layers, json_pack("{s:s, s:s, s:s, s:o, s:I}", "name", ni.name, "op", ni.op, "value", vi.name,
                                                "shape", shape, "parameters", (json_int_t)ni.params));
    }
    for (int i = 0; i < m->n_attention; i++) json_array_append_new(att, json_string(doc_value_display_name(m, m->attention_values[i])));
    for (int i = 0; i < M_COUNT; i++) {
        if (!method_name(i) || method_from_name(method_name(i)) < 0) continue;
        json_array_append_new(methods, json_pack("{s:s, s:s, s:s}", "name", method_name(i), "family", method_family_name(i),
                                                 "summary", method_summary(i)));
    }
    json_object_set_new(o, "labels", labels);
    json_object_set_new(o, "layers", layers);
    json_object_set_new(o, "attention_layers", att);
    json_object_set_new(o, "methods", methods);
    json_object_set_new(o, "flops_per_image", json_real(graph_total_flops(g)));
    json_object_set_new(o, "opset", json_integer(graph_opset(g)));
    json_object_set_new(o, "max_batch", json_integer(sm->max_batch));
    json_object_set_new(o, "probe_images", json_integer(sm->n_probes));
    json_object_set_new(o, "input_mean", json_incref(json_object_get(json_object_get(o, "input"), "mean")));
    json_object_set_new(o, "input_std", json_incref(json_object_get(json_object_get(o, "input"), "std")));
    return o;
}

static enum MHD_Result handle_get(req_t *r)
{
    switch (r->route) {
    case RT_HEALTHZ:
    case RT_V2_LIVE:
        return answer_json(r, 200, r->route == RT_HEALTHZ ? json_pack("{s:s}", "status", "ok") : json_pack("{s:b}", "live", 1));
    case RT_READYZ:
    case RT_V2_READY: {
        const char *st = atomic_load(&S.draining) ? "draining" : !atomic_load(&S.ready) ? "loading"
                         : (S.pool && pool_queued(S.pool) >= S.cfg.queue_depth) ? "overloaded" : "ready";
        int ok = !strcmp(st, "ready");
        if (r->route == RT_V2_READY) return answer_json(r, ok ? 200 : 503, json_pack("{s:b, s:s}", "ready", ok, "status", st));
        json_t *doc = json_pack("{s:s}", "status", st);
        if (ok) {
            json_t *ms_ = json_array();
            for (int i = 0; i < S.n_models; i++) json_array_append_new(ms_, json_string(S.models[i].model->name));
            json_object_set_new(doc, "models", ms_);
        }
        return answer_json(r, ok ? 200 : 503, doc);
    }
    case RT_V2_MODEL_READY: {
        int i = service_find_model(S.models, S.n_models, r->model_name);
        if (i < 0) return answer_problem(r, 404, "no model named '%s'", r->model_name);
        int ok = atomic_load(&S.ready) && !atomic_load(&S.draining);
        return answer_json(r, ok ? 200 : 503, json_pack("{s:s, s:b}", "name", r->model_name, "ready", ok));
    }
    case RT_METRICS: {
        size_t len;
        char *txt = metrics_render(S.pool ? pool_queued(S.pool) : 0, S.pool ? pool_busy(S.pool) : 0,
                                   S.pool ? pool_workers(S.pool) : 0, S.model_info, &len);
        if (!txt) return answer_problem(r, 500, "could not render metrics");
        enum MHD_Result rc = queue_bytes(r, 200, txt, len, "text/plain; version=0.0.4; charset=utf-8", 1);
        free(txt);
        return rc;
    }
    case RT_OPENAPI:
    case RT_DASHBOARD: {
        const char *url = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, ":path");
        (void)url;
        const asset_t *a = asset_find(r->route == RT_OPENAPI ? "/openapi.yaml" : r->layer);
        if (!a) return answer_problem(r, 404, "not found");
        return queue_bytes(r, 200, a->data, a->len, a->content_type, 0);
    }
    case RT_MODELS: {
        json_t *arr = json_array();
        for (int i = 0; i < S.n_models; i++) json_array_append_new(arr, model_summary(S.models[i].model));
        return answer_json(r, 200, json_pack("{s:o}", "models", arr));
    }
    case RT_MODEL: {
        int i = service_find_model(S.models, S.n_models, r->model_name);
        if (i < 0) return answer_problem(r, 404, "no model named '%s'", r->model_name);
        return answer_json(r, 200, model_info(&S.models[i]));
    }
    default: return answer_problem(r, 404, "no such route");
    }
}

/* ---- bodies ------------------------------------------------------------------------------------- */
/* Parse the completed body into params and images (body.c). 0 or an HTTP status with r's problem set. */
static int parse_body(req_t *r)
{
    char d[768];
    int st = 0, images = route_get(r->route)->images;
    if (r->body_kind == BODY_MULTIPART) {
        st = body_form_finish(&r->form, &r->rq, &S.cfg, d, sizeof d);
    } else if (r->body_kind == BODY_JSON) {
        /* an empty JSON body: no parameters for filter visualization, the probe set for /sanity */
        st = body_parse_json(&r->form, r->body.p, r->body.len, route_get(r->route)->kserve,
                             images == IMG_NONE || images == IMG_PROBES, &r->rq, &S.cfg, d, sizeof d);
    } else if (r->body_kind == BODY_RAW && (r->body.len || images != IMG_PROBES)) { /* empty /sanity: probe set */
        st = body_take_raw(&r->form, &r->body, d, sizeof d);
    }
    if (st) set_problem(r, st, "%s", d);
    return st;
}

/* ---- the worker side ----------------------------------------------------------------------------- */
/* The deadline and the cancel flag hold for every workspace the request may use (the twin's and
 * the sanity helpers' too); both are cleared afterwards (0, NULL). */
static void guard_workspaces(wstate_t *st, int64_t deadline, const atomic_int *cancel)
{
    for (int i = 0; i < S.n_models; i++) {
        ws_set_deadline(st->ws[i], deadline);
        ws_set_cancel(st->ws[i], cancel);
        if (st->helper[i]) {
            ws_set_deadline(st->helper[i], deadline);
            ws_set_cancel(st->helper[i], cancel);
        }
    }
}

static void job_run(void *arg, worker_ctx_t *w)
{
    req_t *r = arg;
    wstate_t *st = w->state;
    r->t_compute = now_ns();
    service_env_t env = {.cfg = &S.cfg, .models = S.models, .n_models = S.n_models, .ws = st->ws, .cache = S.cache};
    if (atomic_load(&r->cancel)) {
        set_problem(r, 499, "the client went away while the request was queued");
    } else if (r->t_compute > r->deadline) {
        char hint[512];
        service_deadline_hint(&r->rq, S.models[r->model_idx].model, &S.cfg, hint, sizeof hint);
        set_problem(r, 504, "the request waited %.0f ms in the queue, past its deadline (request_timeout_ms=%d). "
                            "To shorten the work: %s", ms(r->t_queued, r->t_compute), S.cfg.request_timeout_ms, hint);
    } else if (!(r->stream = stream_new(S.cfg.max_response_bytes))) {
        set_problem(r, 503, "out of memory");
    } else {
        /* idle workers' cores: the sanity steps' helper thread takes one (step-level parallelism, and
         * its own workspace), the request's team the rest (each op split over them) */
        int borrowed = st->team || S.cfg.sanity_helper_max_bytes ? pool_borrow(S.pool, request_threads() - 1) : 0, team_k = 1;
        int sanity_steps = (r->rq.sp.checks & SANITY_CHECK_MODEL) || (r->rq.route == R_SANITY && !r->rq.sp.checks);
        if (sanity_steps && borrowed > 0 && (env.helper_ws = sanity_helpers(st, r->model_idx))) team_k = borrowed;
        else team_k = 1 + borrowed;
        if (!st->team && team_k > 1) { /* no team: give back what only a team would use */
            pool_return(S.pool, team_k - 1);
            borrowed -= team_k - 1;
            team_k = 1;
        }
        par_team_set_active(st->team, team_k);
        const int64_t t_borrow = now_ns();
        env.stream = r->stream;
        guard_workspaces(st, r->deadline, &r->cancel);
        outcome_t oc;
        blob_t blobs[BODY_MAX_IMAGES];
        for (int i = 0; i < r->form.n_images; i++) blobs[i] = (blob_t){r->form.images[i].p, r->form.images[i].len};
        int kserve = route_get(r->route)->kserve;
        json_t *answer = NULL;
        if (kserve) {
            json_t *arr = json_array();
            int failed = 0;
            for (int i = 0; i < r->form.n_images && !failed; i++) {
                json_t *doc = service_run(&env, r->model_idx, &r->rq, &blobs[i], 1, r->request_id, &oc);
                if (!doc) {
                    set_problem(r, oc.status, "instance %d: %s", i, oc.detail);
                    failed = 1;
                } else {
                    json_array_append_new(arr, doc);
                }
            }
            if (failed) json_decref(arr);
            else answer = json_pack("{s:o}", r->rq.route == R_PREDICT ? "predictions" : "explanations", arr);
        } else {
            json_t *doc = service_run(&env, r->model_idx, &r->rq, blobs, r->form.n_images, r->request_id, &oc);
            if (!doc) set_problem(r, oc.status, "%s", oc.detail);
            else {
                for (int k = 0; k < M_COUNT; k++) /* per-method engine time into the histogram */
                    if (oc.methods & (1u << k)) metrics_method(method_name(k), oc.method_ms[k] / 1e3);
                answer = doc;
            }
        }
        if (answer) {
            set_streamed(r, 200, answer);
            /* the whole request lives inside the deadline, serialization included */
            if (r->stream && atomic_load(&r->cancel)) set_problem(r, 499, "the client went away");
            else if (r->stream && now_ns() > r->deadline)
                set_problem(r, 504, "the deadline (request_timeout_ms=%d) passed while serializing the answer",
                            S.cfg.request_timeout_ms);
            if (r->resp) {
                stream_free(r->stream);
                r->stream = NULL;
            }
        } else {
            stream_free(r->stream);
            r->stream = NULL;
        }
        guard_workspaces(st, 0, NULL);
        par_team_set_active(st->team, 1);
        pool_return(S.pool, borrowed);
        metrics_borrowed_cores(borrowed, (double)(now_ns() - t_borrow) / 1e9);
    }
    r->t_done = now_ns();
    r->phase = PH_DONE;
    /* after this call MHD may complete and free the request: touch nothing of r afterwards */
    MHD_resume_connection(r->conn);
}

/* ---- the access handler -------------------------------------------------------------------------- */
static int valid_request_id(const char *s)
{
    size_t n = strlen(s);
    if (!n || n > 64) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.' && s[i] != ':') return 0;
    return 1;
}

typedef struct {
    req_t *r;
    int status;
    char detail[768];
} argctx_t;

static enum MHD_Result arg_iter(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    argctx_t *a = cls;
    if (a->status) return MHD_NO;
    a->status = params_set(&a->r->rq, &S.cfg, key, value ? value : "", a->detail, sizeof a->detail);
    return a->status ? MHD_NO : MHD_YES;
}

static enum MHD_Result hdr_iter(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    size_t *n = cls;
    *n += strlen(key) + (value ? strlen(value) : 0) + 4;
    return MHD_YES;
}

/* The request line and headers, as max_header_bytes counts them. MHD hands `url` without its query
 * string, which is part of the request line all the same: its arguments count too (*target gets
 * path + query, for 414). */
static size_t header_bytes(struct MHD_Connection *c, const char *url, size_t *target)
{
    size_t q = 0;
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, hdr_iter, &q);
    size_t n = *target = strlen(url) + q;
    MHD_get_connection_values(c, MHD_HEADER_KIND, hdr_iter, &n);
    return n;
}

static int content_type_is(const char *ct, const char *want)
{
    size_t n = strlen(want);
    return ct && !strncasecmp(ct, want, n) && (ct[n] == 0 || ct[n] == ';' || ct[n] == ' ');
}

static void methods_string(req_t *r)
{
    size_t l = 0;
    r->methods_str[0] = 0;
    for (int i = 0; i < M_COUNT && l < sizeof r->methods_str; i++)
        if (r->rq.ep.methods & (1u << i))
            l += (size_t)snprintf(r->methods_str + l, sizeof r->methods_str - l, "%s%s", l ? "," : "", method_name(i));
}

/* The framing headers of a request: how many Content-Length and Transfer-Encoding headers, and
 * whether the one Transfer-Encoding is exactly "chunked" (blanks around it allowed). */
typedef struct {
    int n_cl, n_te, te_chunked;
    const char *te;
} framing_t;

static enum MHD_Result framing_iter(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    framing_t *f = cls;
    if (!strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH)) f->n_cl++;
    if (!strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING)) {
        f->n_te++;
        f->te = value ? value : "";
        const char *v = f->te;
        while (*v == ' ' || *v == '\t') v++;
        size_t n = strlen(v);
        while (n && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
        f->te_chunked = n == 7 && !strncasecmp(v, "chunked", 7);
    }
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    (void)cls;
    (void)version;
    req_t *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        *con_cls = r;
        r->conn = conn;
        r->t_start = now_ns();
        r->deadline = r->t_start + (int64_t)S.cfg.request_timeout_ms * 1000000LL;
        metrics_inflight(1);
        track_t *t = track_of(conn);
        if (t) atomic_store(&t->in_body, 1);
        const char *rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
        if (rid && valid_request_id(rid)) snprintf(r->request_id, sizeof r->request_id, "%s", rid);
        else service_new_request_id(r->request_id);
        client_address(conn, r->client, sizeof r->client);
        utf8_clean(r->method, sizeof r->method, method, strlen(method));
        size_t target_len;
        if (header_bytes(conn, url, &target_len) > (size_t)S.cfg.max_header_bytes) {
            r->route = RT_NOT_FOUND;
            return answer_problem(r, target_len > (size_t)S.cfg.max_header_bytes / 2 ? 414 : 431,
                                  "the request line and headers exceed %d bytes (max_header_bytes)", S.cfg.max_header_bytes);
        }
        /* framing: a body is sent as is (Content-Length) or chunked; anything else would be read
         * until the connection closes, and both at once is the request-smuggling pattern */
        framing_t fr = {0};
        MHD_get_connection_values(conn, MHD_HEADER_KIND, framing_iter, &fr);
        if (fr.n_te && fr.n_cl)
            return answer_problem(r, 400, "both Content-Length and Transfer-Encoding are given (a request must have one "
                                          "framing: RFC 9112 section 6.1)");
        if (fr.n_cl > 1) return answer_problem(r, 400, "Content-Length is given %d times", fr.n_cl);
        if (fr.n_te > 1 || (fr.n_te && !fr.te_chunked))
            return answer_problem(r, 501, "Transfer-Encoding '%.*s' is not supported: send the body as is (with "
                                          "Content-Length) or with 'Transfer-Encoding: chunked' alone",
                                  utf8_cut(fr.te, 100), fr.te);
        if (!strcmp(method, "OPTIONS")) {
            r->route = RT_PREFLIGHT;
            struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
            if (!resp) return MHD_NO;
            add_common_headers(r, resp);
            MHD_add_response_header(resp, "Allow", "GET, HEAD, POST, OPTIONS");
            if (allowed_origin(conn)) {
                MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, HEAD, POST, OPTIONS");
                MHD_add_response_header(resp, "Access-Control-Allow-Headers", "Authorization, Content-Type, X-Request-Id");
                MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
            }
            r->status = 204;
            r->phase = PH_ANSWERED;
            enum MHD_Result rc = MHD_queue_response(conn, 204, resp);
            MHD_destroy_response(resp);
            return rc;
        }
        if (match_route(r, url)) return answer_problem(r, 404, "no route for %s %.*s", method, utf8_cut(url, 200), url);
        if (r->route == RT_DASHBOARD) snprintf(r->layer, sizeof r->layer, "%s", url);
        int post = route_get(r->route)->post;
        int is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
        if ((post && strcmp(method, "POST")) || (!post && !is_get))
            return answer_problem(r, 405, "%s is not allowed on %s", method, metrics_route_label(r->route));
        if (route_get(r->route)->auth && !authorized(conn))
            return answer_problem(r, 401, "a valid API key is required: send 'Authorization: Bearer <key>'");
        /* GET/HEAD: answered at the next call, once MHD knows there is no body; a response queued
         * in this first call makes libmicrohttpd 0.9.75 close the connection (no keep-alive) */
        if (!post) return MHD_YES;

        /* POST: model, state, limits, parameters from the query string */
        if (!atomic_load(&S.ready)) return answer_problem(r, 503, "the models are still loading");
        if (atomic_load(&S.draining)) return answer_problem(r, 503, "the server is draining for shutdown");
        r->model_idx = service_find_model(S.models, S.n_models, r->model_name);
        if (r->model_idx < 0) return answer_problem(r, 404, "no model named '%s'", r->model_name);
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(cl, &end, 10);
            if (!errno && *end == 0 && n > (unsigned long long)S.cfg.max_upload_bytes)
                return answer_problem(r, 413, "the body is %llu bytes; the limit is %lld (max_upload_bytes)", n,
                                      (long long)S.cfg.max_upload_bytes);
        }
        params_init(&r->rq, route_get(r->route)->params);
        if (r->route == RT_ACTIVATIONS) {
            r->rq.ep.methods = 1u << M_ACTIVATIONS;
            snprintf(r->rq.layer, sizeof r->rq.layer, "%s", r->layer);
            r->rq.outputs = OUT_HEATMAP;
        } else if (r->route == RT_FILTER) { /* resolved by params_resolve, with the parameters */
            snprintf(r->rq.layer, sizeof r->rq.layer, "%s", r->layer);
            r->rq.fv.index = r->filter_index;
        }
        argctx_t a = {.r = r};
        MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, arg_iter, &a);
        if (a.status) return answer_problem(r, a.status, "%s", a.detail);
        const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        if (content_type_is(ct, "multipart/form-data")) {
            r->body_kind = BODY_MULTIPART;
            char d[256];
            int st = body_form_begin(&r->form, ct, d, sizeof d);
            if (st) return answer_problem(r, st, "%s", d);
        } else if (content_type_is(ct, "application/json")) {
            r->body_kind = BODY_JSON;
        } else if (!ct || content_type_is(ct, "image/png") || content_type_is(ct, "image/jpeg") ||
                   content_type_is(ct, "application/octet-stream") || content_type_is(ct, "image/jpg") ||
                   content_type_is(ct, "application/x-www-form-urlencoded") || !strncasecmp(ct, "image/", 6) ||
                   content_type_is(ct, "application/x-npy")) { /* a float32 tensor (.npy), docs/MODELS.md */
            /* x-www-form-urlencoded is what `curl --data-binary @img` sends without -H: the bytes are
             * sniffed, so an image still works; anything else is answered 415 after sniffing */
            r->body_kind = BODY_RAW;
        } else {
            return answer_problem(r, 415, "unsupported Content-Type '%.*s': send image/png, image/jpeg, "
                                          "application/x-npy, application/octet-stream, multipart/form-data or "
                                          "application/json", utf8_cut(ct, 100), ct);
        }
        return MHD_YES;
    }

    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        r->received += n;
        if (r->phase != PH_RECEIVING) /* answered already: drop the rest, within bounds */
            return r->received > 2 * (uint64_t)S.cfg.max_upload_bytes ? MHD_NO : MHD_YES;
        if (r->received > (uint64_t)S.cfg.max_upload_bytes) {
            answer_midstream(r, 413, "the body exceeds %lld bytes (max_upload_bytes); upload cut off", (long long)S.cfg.max_upload_bytes);
            return MHD_YES;
        }
        track_t *t = track_of(conn);
        int64_t dl = t ? atomic_load(&t->deadline) : 0;
        if (dl && now_ns() > dl) {
            answer_midstream(r, 408, "the body did not arrive within %d s (read_timeout_s); %llu bytes came", S.cfg.read_timeout_s,
                             (unsigned long long)r->received);
            return MHD_YES;
        }
        /* an error found while the body streams in is answered now: libmicrohttpd takes no response
         * before the whole body, so it goes out on the socket (answer_midstream) */
        if (r->body_kind == BODY_MULTIPART) {
            if (body_form_feed(&r->form, upload_data, n)) {
                char d[512];
                int st = body_form_error(&r->form, d, sizeof d);
                answer_midstream(r, st, "%s", d);
            }
        } else if (buf_append(&r->body, upload_data, n)) {
            answer_midstream(r, 503, "out of memory while receiving the body");
        }
        return MHD_YES;
    }

    /* the whole request is in: no read deadline until it is answered */
    track_t *t = track_of(conn);
    if (t) atomic_store(&t->deadline, 0);
    if (!route_get(r->route)->post && r->phase == PH_RECEIVING) return handle_get(r);
    if (r->phase == PH_RECEIVING) {
        int st = parse_body(r);
        if (st) return queue_stored(r);
        int images = route_get(r->route)->images;
        if ((images == IMG_ONE || images == IMG_MANY) && r->form.n_images == 0) /* /sanity: the probe set */
            return answer_problem(r, 400, "no image: send the image as the body, as the multipart field 'image', or as base64 in JSON 'image'");
        if (images == IMG_ONE && r->form.n_images > 1)
            return answer_problem(r, 422, "%d images sent; this route takes one", r->form.n_images);
        if (r->rq.route != R_PREDICT) methods_string(r); /* predict computes no method: log none */
        r->t_queued = now_ns();
        r->phase = PH_QUEUED;
        track_t *tq = track_of(conn);
        if (tq) { /* from now on the sweeper watches for the client leaving */
            pthread_mutex_lock(&tracks_mu);
            tq->cancel = &r->cancel;
            pthread_mutex_unlock(&tracks_mu);
        }
        MHD_suspend_connection(conn);
        if (pool_submit(S.pool, job_run, r)) {
            MHD_resume_connection(conn);
            r->phase = PH_RECEIVING;
            return answer_problem(r, 503, "all %d workers are busy and %d requests are queued (queue_depth); retry",
                                  pool_workers(S.pool), S.cfg.queue_depth);
        }
        return MHD_YES;
    }
    if (r->phase == PH_DONE) {
        if (atomic_load(&r->cancel)) return MHD_NO; /* nobody to answer: close (logged 499) */
        return queue_stored(r);
    }
    if (r->phase == PH_ANSWERED && r->status == 413 && !r->bytes_out) return MHD_YES;
    /* the mid-stream 413 went out on the socket: nothing more to send, close */
    return r->phase == PH_ANSWERED ? MHD_NO : MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    req_t *r = *con_cls;
    if (!r) return;
    track_t *tc = track_of(conn);
    if (tc) {
        pthread_mutex_lock(&tracks_mu);
        if (tc->cancel == &r->cancel) tc->cancel = NULL;
        pthread_mutex_unlock(&tracks_mu);
    }
    int64_t end = now_ns();
    /* 499: the client went away before it had the whole answer — also when the answer was already
     * queued (a job finishing for a client that left: MHD then fails to send it); an answer written
     * to the socket directly was sent, whatever became of the connection afterwards */
    int status = r->status ? r->status : 499;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && !r->raw_sent) status = 499;
    metrics_request(r->route, status, ms(r->t_start, end) / 1e3);
    metrics_inflight(-1);
    access_t a = {.request_id = r->request_id, .method = r->method[0] ? r->method : NULL, .route = metrics_route_label(r->route),
                  .model = r->model_name[0] ? r->model_name : NULL, .methods = r->methods_str[0] ? r->methods_str : NULL,
                  .client = r->client, .status = status, .bytes_in = (long long)r->received, .bytes_out = r->bytes_out,
                  .queue_ms = ms(r->t_queued, r->t_compute), .compute_ms = ms(r->t_compute, r->t_done),
                  .total_ms = ms(r->t_start, end), .detail = r->detail};
    log_access(&a);
    req_free(r);
    *con_cls = NULL;
    /* keep-alive: an idle connection is MHD's to close after connection_timeout_s; the next request
     * must be complete read_timeout_s after that at the latest */
    track_t *t = track_of(conn);
    if (t) {
        atomic_store(&t->in_body, 0);
        atomic_store(&t->deadline, read_deadline() + (int64_t)S.cfg.connection_timeout_s * 1000000000LL);
    }
}

/* ---- start-up ------------------------------------------------------------------------------------ */
/* The API keys: one per line, of any length (getline: a long line is one key, never split into
 * a key and an accepted tail), as many as the file holds; blanks around a key are trimmed, empty
 * lines and lines starting with '#' skipped. 0, or -1 with *why set (unreadable, out of memory). */
static int load_keys(const char *path, char ***out, int *n, const char **why)
{
    FILE *f = fopen(path, "r");
    *why = "cannot open it";
    if (!f) return -1;
    char *line = NULL, **keys = NULL;
    size_t lcap = 0;
    int cap = 0, rc = 0;
    ssize_t l;
    *n = 0;
    while ((l = getline(&line, &lcap, f)) >= 0) {
        while (l && isspace((unsigned char)line[l - 1])) line[--l] = 0;
        char *p = line;
        while (isspace((unsigned char)*p)) p++;
        if (!*p || *p == '#') continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nk = realloc(keys, sizeof(char *) * (size_t)cap);
            if (!nk) {
                rc = -1;
                *why = "out of memory";
                break;
            }
            keys = nk;
        }
        if (!(keys[*n] = strdup(p))) {
            rc = -1;
            *why = "out of memory";
            break;
        }
        (*n)++;
    }
    if (!rc && ferror(f)) {
        rc = -1;
        *why = "read error";
    }
    free(line);
    fclose(f);
    if (rc) {
        for (int i = 0; i < *n; i++) free(keys[i]);
        free(keys);
        *n = 0;
        return -1;
    }
    *out = keys;
    return 0;
}

static int is_model_file(const char *n)
{
    size_t l = strlen(n);
    return l > 5 && !strcmp(n + l - 5, ".onnx");
}

static int load_models(void)
{
    int nn = 0, st;
    char **names = service_scan_dir(S.cfg.models_dir, is_model_file, strlen(".onnx"), MAX_MODELS, &nn, &st);
    if (st) {
        log_event(LOG_ERROR, "models_dir '%s': %s", S.cfg.models_dir,
                  st == SCAN_NO_DIR ? "cannot open it" : st == SCAN_TOO_MANY ? "more than " STR(MAX_MODELS) " models" : "out of memory");
        return -1;
    }
    int failed = 0;
    size_t info_len = 0;
    S.model_info = calloc(1, 1);
    for (int i = 0; i < nn; i++) {
        eng_err_t err = {0};
        model_t *m;
        int64_t t0 = now_ns();
        if (model_load(S.cfg.models_dir, names[i], NULL, &m, &err)) {
            log_event(LOG_ERROR, "model %s: %s", names[i], err.msg);
            failed++;
            continue;
        }
        /* a workspace is planned for at least one image: a model whose single-image workspace is
         * over the budget could never run, and used to stop every worker at start-up */
        size_t need = ws_plan_bytes(m->graph, 1);
        if (need > (size_t)S.cfg.workspace_max_bytes) {
            log_event(LOG_ERROR, "model %s: not loaded: one image needs a workspace of %zu MiB, over workspace_max_bytes "
                                 "(%lld MiB); input %dx%dx%d",
                      m->name, need >> 20, (long long)(S.cfg.workspace_max_bytes >> 20), m->input.channels, m->input.height,
                      m->input.width);
            model_free(m);
            failed++;
            continue;
        }
        char note[1024];
        if (model_defaults_note(m, note, sizeof note)) log_event(LOG_WARN, "model %s: %s", m->name, note);
        service_model_t *sm = &S.models[S.n_models++];
        memset(sm, 0, sizeof *sm);
        sm->model = m;
        sm->max_batch = service_batch_for(m, &S.cfg);
        char perr[512];
        if (service_load_probes(sm, S.cfg.models_dir, S.cfg.sanity_images_max, perr, sizeof perr))
            log_event(LOG_WARN, "model %s: probe set not loaded: %s", m->name, perr);
        else if (sm->n_probes)
            log_event(LOG_INFO, "model %s: probe set of %d images (probes/%s/)", m->name, sm->n_probes, m->name);
        log_event(LOG_INFO, "model %s loaded in %.1f ms: %lld parameters, %d classes, input %dx%dx%d, batch %d, workspace %zu KiB",
                  m->name, ms(t0, now_ns()), (long long)graph_total_params(m->graph), m->n_labels, m->input.channels,
                  m->input.height, m->input.width, sm->max_batch, ws_plan_bytes(m->graph, sm->max_batch) >> 10);
        char line[512];
        int k = snprintf(line, sizeof line, "explaind_model_info{model=\"%s\",classes=\"%d\",input=\"%dx%dx%d\"} 1\n", m->name,
                         m->n_labels, m->input.channels, m->input.height, m->input.width);
        char *ni = realloc(S.model_info, info_len + (size_t)k + 1);
        if (ni) {
            memcpy(ni + info_len, line, (size_t)k + 1);
            info_len += (size_t)k;
            S.model_info = ni;
        }
    }
    service_free_names(names, nn);
    if (failed && !S.cfg.allow_partial) {
        log_event(LOG_ERROR, "%d model(s) failed to load; set allow_partial=true to start without them", failed);
        return -1;
    }
    if (!S.n_models) {
        log_event(LOG_ERROR, "no model could be loaded from '%s'", S.cfg.models_dir);
        return -1;
    }
    return 0;
}

static void serve_usage(FILE *f)
{
    fprintf(f, "usage: explaind serve [--config FILE] [--KEY VALUE ...]\n"
               "Serves the models in models_dir over HTTP (the API: openapi.yaml, also at GET /openapi.yaml). A model\n"
               "is NAME.onnx with an optional NAME.json sidecar: labels, preprocessing, cam_layer (docs/MODELS.md;\n"
               "`explaind init NAME.onnx` writes one). Every key can also be set in the\n"
               "config file or as EXPLAIND_<KEY> in the environment.\n\n");
    config_print_help(f);
}

int cli_serve(int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            serve_usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--print-config")) {
            /* the effective configuration (or, with --documented, the defaults with their help) */
            int documented = 0;
            for (int k = 0; k < argc; k++) documented |= !strcmp(argv[k], "--documented");
            config_t c;
            char e[512];
            if (documented) config_defaults(&c);
            else if (config_from_all(&c, 0, NULL, e, sizeof e)) {
                fprintf(stderr, "explaind: %s\n", e);
                return 2;
            }
            config_print_json(stdout, &c, documented);
            return 0;
        }
    }
    char err[512];
    if (config_from_all(&S.cfg, argc, argv, err, sizeof err)) {
        fprintf(stderr, "explaind serve: %s\n", err);
        return 2;
    }
    log_configure(S.cfg.log_level, S.cfg.log_format);
    const char *why;
    if (S.cfg.api_keys_file[0] && load_keys(S.cfg.api_keys_file, &S.keys, &S.n_keys, &why)) {
        log_event(LOG_ERROR, "cannot read api_keys_file '%s': %s", S.cfg.api_keys_file, why);
        return 2;
    }
    if (S.n_keys) log_event(LOG_INFO, "api_keys_file: %d key(s)", S.n_keys);
    if (S.cfg.api_keys_file[0] && !S.n_keys) {
        log_event(LOG_ERROR, "api_keys_file has no keys");
        return 2;
    }
    if (S.cfg.cors_origins[0]) {
        char *tmp = strdup(S.cfg.cors_origins), *save = NULL;
        for (char *t = strtok_r(tmp, ",", &save); t && S.n_origins < MAX_ORIGINS; t = strtok_r(NULL, ",", &save)) {
            while (isspace((unsigned char)*t)) t++;
            if (!strcmp(t, "*")) S.any_origin = 1;
            else if (*t) S.origins[S.n_origins++] = strdup(t);
        }
        free(tmp);
    }
    /* signals are taken by sigwait in this thread only */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    eng_set_blas_threads(1);
    /* Buffers of 4 MiB and more (decoded uploads, PNGs and maps of large answers) are mapped on
     * their own and unmapped when freed. glibc's default threshold grows up to 32 MiB as large
     * blocks are freed, after which such buffers land in the workers' heaps, where the holes they
     * leave between answers still waiting for slow clients are not returned (measured with
     * tests/soak/never_read.py). Small ones stay in the heap: faulting them in per request costs. */
    mallopt(M_MMAP_THRESHOLD, 4 << 20);

    struct sockaddr_in6 a6;
    struct sockaddr_in a4;
    struct sockaddr *sa;
    memset(&a6, 0, sizeof a6);
    memset(&a4, 0, sizeof a4);
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (inet_pton(AF_INET, S.cfg.listen, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t)S.cfg.port);
        sa = (struct sockaddr *)&a4;
    } else if (inet_pton(AF_INET6, S.cfg.listen, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t)S.cfg.port);
        sa = (struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
    } else {
        log_event(LOG_ERROR, "listen address '%s' is not an IPv4 or IPv6 literal", S.cfg.listen);
        return 2;
    }
    S.daemon = MHD_start_daemon(flags, (uint16_t)S.cfg.port, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, sa,
                                MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL,
                                MHD_OPTION_CONNECTION_LIMIT,
                                (unsigned)S.cfg.connection_limit, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                                (unsigned)S.cfg.per_ip_connection_limit, MHD_OPTION_CONNECTION_TIMEOUT,
                                (unsigned)S.cfg.connection_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                                (size_t)S.cfg.connection_memory_limit, MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024U, MHD_OPTION_END);
    if (!S.daemon) {
        log_event(LOG_ERROR, "cannot listen on %s:%d: %s", S.cfg.listen, S.cfg.port, strerror(errno));
        return 2;
    }
    log_event(LOG_INFO, "listening on %s:%d (workers %d, queue %d, timeout %d ms)", S.cfg.listen, S.cfg.port, S.cfg.workers,
              S.cfg.queue_depth, S.cfg.request_timeout_ms);
    pthread_t sweeper;
    if (pthread_create(&sweeper, NULL, sweeper_main, NULL)) {
        log_event(LOG_ERROR, "cannot start the slow-client sweeper thread");
        MHD_stop_daemon(S.daemon);
        return 2;
    }
    if (load_models()) {
        stop_sweeper(sweeper);
        MHD_stop_daemon(S.daemon);
        return 2;
    }
    S.cache = sanity_cache_create((size_t)S.cfg.sanity_cache_bytes);
    if (!S.cache || pool_create(S.cfg.workers, S.cfg.queue_depth, worker_init, worker_fini, &S, &S.pool, err, sizeof err)) {
        log_event(LOG_ERROR, "%s", err);
        stop_sweeper(sweeper);
        MHD_stop_daemon(S.daemon);
        return 2;
    }
    atomic_store(&S.ready, 1);
    log_event(LOG_INFO, "ready: %d model(s)", S.n_models);

    int sig = 0;
    sigwait(&set, &sig);
    /* drain */
    atomic_store(&S.draining, 1);
    log_event(LOG_INFO, "signal %d: draining (up to %d ms)", sig, S.cfg.drain_timeout_ms);
    int64_t t0 = now_ns();
    MHD_socket ls = MHD_quiesce_daemon(S.daemon);
    if (ls != MHD_INVALID_SOCKET) close(ls);
    int left = S.cfg.drain_timeout_ms;
    int idle = pool_wait_idle(S.pool, left) == 0;
    /* requests still being received or answered finish within the remaining time. Requests, not
     * connections: an idle keep-alive connection holds no request and is closed by the stop (a
     * server may close an idle connection at any time), so it must not hold the exit */
    while (idle && ms(t0, now_ns()) < S.cfg.drain_timeout_ms) {
        if (metrics_inflight_now() == 0) break;
        usleep(10000);
        idle = pool_wait_idle(S.pool, 0) == 0;
    }
    if (!idle) { /* the deadline cut off work: wait for the running jobs so no connection stays suspended */
        log_event(LOG_WARN, "drain timeout: waiting for the running requests to stop at their deadlines");
        while (pool_wait_idle(S.pool, 1000)) {
        }
    }
    stop_sweeper(sweeper);
    MHD_stop_daemon(S.daemon);
    pool_destroy(S.pool);
    log_event(LOG_INFO, "stopped after draining for %.0f ms", ms(t0, now_ns()));
    sanity_cache_free(S.cache);
    for (int i = 0; i < S.n_models; i++) {
        service_free_probes(&S.models[i]);
        model_free(S.models[i].model);
    }
    for (int i = 0; i < S.n_keys; i++) free(S.keys[i]);
    free(S.keys);
    for (int i = 0; i < S.n_origins; i++) free(S.origins[i]);
    free(S.model_info);
    return 0;
}
