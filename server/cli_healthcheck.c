/* cli_healthcheck.c — `explaind healthcheck`: GET http://HOST:PORT/healthz over a plain socket and
 * exit 0 on a 200, 1 on anything else (refused, timed out, another status, garbage). It is the
 * container's HEALTHCHECK and the compose replicas' health test, so the runtime image needs no curl.
 *
 * Where it connects: --host/--port when given; otherwise the serve configuration the server itself
 * reads (EXPLAIND_CONFIG or config/explaind.json, then EXPLAIND_PORT / EXPLAIND_LISTEN), with a
 * wildcard listen address (0.0.0.0, ::) replaced by the loopback of its family. The whole check,
 * name lookup aside, has one deadline (--timeout-ms): connect, send and the status line must fit.
 * Exit codes: 0 healthy, 1 unhealthy, 2 usage or configuration error. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"

static void healthcheck_usage(FILE *f)
{
    fprintf(f, "usage: explaind healthcheck [--host HOST] [--port PORT] [--path PATH] [--timeout-ms MS]\n"
               "GET http://HOST:PORT/PATH and exit 0 on a 200 answer, 1 otherwise (2: usage error).\n"
               "  --host HOST        address or name to connect to (default: the configured listen address,\n"
               "                     127.0.0.1 / ::1 when it is a wildcard)\n"
               "  --port PORT        TCP port (default: the configured port: EXPLAIND_PORT, the config file, 8080)\n"
               "  --path PATH        request path (default: /healthz; /readyz checks readiness instead)\n"
               "  --timeout-ms MS    deadline for connect + request + status line (default: 2000)\n"
               "  -q, --quiet        print nothing on success\n");
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for fd to become ready for events until deadline; 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, long long deadline)
{
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0) return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, (int)left);
        if (n > 0) return 1;
        if (n == 0) return 0;
        if (errno != EINTR) return -1;
    }
}

/* Connect to one address with a deadline; returns the fd or -1 with why filled. */
static int connect_deadline(const struct addrinfo *ai, long long deadline, char *why, size_t whylen)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
        snprintf(why, whylen, "socket: %s", strerror(errno));
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) return fd;
    if (errno != EINPROGRESS) {
        snprintf(why, whylen, "connect: %s", strerror(errno));
        close(fd);
        return -1;
    }
    int w = wait_fd(fd, POLLOUT, deadline);
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (w <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) || soerr) {
        snprintf(why, whylen, "connect: %s", w == 0 ? "timed out" : strerror(soerr ? soerr : errno));
        close(fd);
        return -1;
    }
    return fd;
}

int cli_healthcheck(int argc, char **argv)
{
    const char *host = NULL, *port = NULL, *path = "/healthz";
    long timeout_ms = 2000;
    int quiet = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            healthcheck_usage(stdout);
            return 0;
        }
        if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = 1;
            continue;
        }
        static const char *const opts[] = {"--host", "--port", "--path", "--timeout-ms"};
        size_t k = 0, ol = 0;
        for (; k < sizeof opts / sizeof opts[0]; k++) {
            ol = strlen(opts[k]);
            if (!strncmp(a, opts[k], ol) && (a[ol] == 0 || a[ol] == '=')) break;
        }
        if (k == sizeof opts / sizeof opts[0]) {
            fprintf(stderr, "explaind healthcheck: unknown option '%s'\n", a);
            healthcheck_usage(stderr);
            return 2;
        }
        if (a[ol] == '=') v = a + ol + 1;
        else if (i + 1 < argc) v = argv[++i];
        else {
            fprintf(stderr, "explaind healthcheck: %s needs a value\n", opts[k]);
            return 2;
        }
        if (k == 0) host = v;
        else if (k == 1) port = v;
        else if (k == 2) path = v;
        else {
            char *end;
            timeout_ms = strtol(v, &end, 10);
            if (end == v || *end || timeout_ms < 1 || timeout_ms > 600000) {
                fprintf(stderr, "explaind healthcheck: --timeout-ms: expected 1..600000, got '%s'\n", v);
                return 2;
            }
        }
    }
    if (path[0] != '/' || strpbrk(path, " \r\n")) {
        fprintf(stderr, "explaind healthcheck: --path must start with '/' and hold no spaces or line breaks\n");
        return 2;
    }

    /* what the server listens on, from the same sources it reads (file, environment) */
    char portbuf[16], hostbuf[CFG_STR];
    if (!host || !port) {
        config_t c;
        char err[512];
        if (config_from_all(&c, 0, NULL, err, sizeof err)) {
            fprintf(stderr, "explaind healthcheck: %s\n", err);
            return 2;
        }
        if (!port) {
            snprintf(portbuf, sizeof portbuf, "%d", c.port);
            port = portbuf;
        }
        if (!host) {
            if (!strcmp(c.listen, "0.0.0.0") || !c.listen[0]) host = "127.0.0.1";
            else if (!strcmp(c.listen, "::")) host = "::1";
            else host = snprintf(hostbuf, sizeof hostbuf, "%s", c.listen) > 0 ? hostbuf : "127.0.0.1";
        }
    }

    /* host:port as written in messages and the Host header: [v6]:port */
    char where[CFG_STR + 32];
    snprintf(where, sizeof where, strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, port);
    long long t0 = now_ms(), deadline = t0 + timeout_ms;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai) {
        fprintf(stderr, "explaind healthcheck: %s: %s\n", where, gai_strerror(gai));
        return gai == EAI_SERVICE ? 2 : 1;
    }
    char why[256] = "no address";
    int fd = -1;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) fd = connect_deadline(ai, deadline, why, sizeof why);
    freeaddrinfo(res);
    if (fd < 0) {
        fprintf(stderr, "explaind healthcheck: %s: %s\n", where, why);
        return 1;
    }

    char req[1024];
    int rl = snprintf(req, sizeof req,
                      "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: explaind-healthcheck\r\nAccept: application/json\r\n"
                      "Connection: close\r\n\r\n",
                      path, where);
    if (rl < 0 || rl >= (int)sizeof req) {
        fprintf(stderr, "explaind healthcheck: request line too long\n");
        close(fd);
        return 2;
    }
    for (int sent = 0; sent < rl;) {
        ssize_t n = send(fd, req + sent, (size_t)(rl - sent), MSG_NOSIGNAL);
        if (n > 0) {
            sent += (int)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR) && wait_fd(fd, POLLOUT, deadline) > 0) continue;
        fprintf(stderr, "explaind healthcheck: send: %s\n", n < 0 ? strerror(errno) : "connection closed");
        close(fd);
        return 1;
    }

    /* only the status line matters: "HTTP/1.1 200 OK\r\n" */
    char buf[256];
    size_t got = 0;
    while (got < sizeof buf - 1 && !memchr(buf, '\n', got)) {
        ssize_t n = recv(fd, buf + got, sizeof buf - 1 - got, 0);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            int w = wait_fd(fd, POLLIN, deadline);
            if (w > 0) continue;
            fprintf(stderr, "explaind healthcheck: %s%s: %s\n", where, path, w == 0 ? "no answer in time" : strerror(errno));
            close(fd);
            return 1;
        }
        break; /* closed or failed: judge what arrived */
    }
    close(fd);
    buf[got] = 0;
    char *eol = strpbrk(buf, "\r\n");
    if (eol) *eol = 0;
    /* "HTTP/1.0" or "HTTP/1.1", one space, exactly three digits, then a space or the end */
    int status = 0;
    if (!strncmp(buf, "HTTP/1.", 7) && (buf[7] == '0' || buf[7] == '1') && buf[8] == ' ' && isdigit((unsigned char)buf[9]) &&
        isdigit((unsigned char)buf[10]) && isdigit((unsigned char)buf[11]) && (buf[12] == ' ' || buf[12] == 0))
        status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    if (status != 200) {
        fprintf(stderr, "explaind healthcheck: %s%s: %s\n", where, path,
                got ? (status ? buf : "not an HTTP answer") : "connection closed without an answer");
        return 1;
    }
    if (!quiet) printf("explaind healthcheck: %s%s: %s (%lld ms)\n", where, path, buf, now_ms() - t0);
    return 0;
}
