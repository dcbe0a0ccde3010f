/* pool.c — bounded job queue and worker threads (see pool.h). */
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "engine.h"

typedef struct {
    job_fn fn;
    void *arg;
} job_t;

struct pool {
    pthread_mutex_t mu;
    pthread_cond_t has_job, idle;
    job_t *ring;
    int cap, head, count, busy, stop, nworkers;
    int borrowed; /* cores lent to running jobs' teams */
    pthread_t *threads;
    worker_ctx_t *ctx;
    worker_init_fn init;
    worker_fini_fn fini;
    void *cls;
    int init_failed, init_done;
    char init_err[256];
};

typedef struct {
    pool_t *p;
    int index;
} start_t;

static void *worker_run(void *arg)
{
    start_t *s = arg;
    pool_t *p = s->p;
    int idx = s->index;
    free(s);
    worker_ctx_t *w = &p->ctx[idx];
    w->index = idx;
    eng_set_blas_threads(1);
    int rc = p->init ? p->init(w, idx, p->cls) : 0;
    pthread_mutex_lock(&p->mu);
    if (rc) p->init_failed = 1;
    p->init_done++;
    pthread_cond_broadcast(&p->idle);
    pthread_mutex_unlock(&p->mu);
    if (rc) return NULL;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->count && !p->stop) pthread_cond_wait(&p->has_job, &p->mu);
        if (!p->count && p->stop) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        job_t j = p->ring[p->head];
        p->head = (p->head + 1) % p->cap;
        p->count--;
        p->busy++;
        pthread_mutex_unlock(&p->mu);
        j.fn(j.arg, w);
        pthread_mutex_lock(&p->mu);
        p->busy--;
        if (!p->busy && !p->count) pthread_cond_broadcast(&p->idle);
        pthread_mutex_unlock(&p->mu);
    }
    if (p->fini) p->fini(w, p->cls);
    return NULL;
}

int pool_create(int workers, int queue_depth, worker_init_fn init, worker_fini_fn fini, void *cls, pool_t **out,
                char *err, size_t errlen)
{
    pool_t *p = calloc(1, sizeof *p);
    if (!p) return -1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->has_job, NULL);
    pthread_cond_init(&p->idle, NULL);
    p->cap = queue_depth;
    p->ring = calloc((size_t)queue_depth, sizeof(job_t));
    p->threads = calloc((size_t)workers, sizeof(pthread_t));
    p->ctx = calloc((size_t)workers, sizeof(worker_ctx_t));
    p->init = init;
    p->fini = fini;
    p->cls = cls;
    if (!p->ring || !p->threads || !p->ctx) {
        snprintf(err, errlen, "out of memory");
        free(p->ring); free(p->threads); free(p->ctx); free(p);
        return -1;
    }
    for (int i = 0; i < workers; i++) {
        start_t *s = malloc(sizeof *s);
        s->p = p;
        s->index = i;
        if (pthread_create(&p->threads[i], NULL, worker_run, s)) {
            free(s);
            snprintf(err, errlen, "cannot start worker %d", i);
            p->stop = 1;
            p->nworkers = i;
            pool_destroy(p);
            return -1;
        }
        p->nworkers = i + 1;
    }
    pthread_mutex_lock(&p->mu);
    while (p->init_done < workers) pthread_cond_wait(&p->idle, &p->mu);
    int failed = p->init_failed;
    pthread_mutex_unlock(&p->mu);
    if (failed) {
        snprintf(err, errlen, "a worker failed to create its workspaces (out of memory?)");
        pool_destroy(p);
        return -1;
    }
    *out = p;
    return 0;
}

int pool_submit(pool_t *p, job_fn fn, void *arg)
{
    pthread_mutex_lock(&p->mu);
    if (p->count == p->cap || p->stop) {
        pthread_mutex_unlock(&p->mu);
        return -1;
    }
    p->ring[(p->head + p->count) % p->cap] = (job_t){fn, arg};
    p->count++;
    pthread_cond_signal(&p->has_job);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

int pool_queued(pool_t *p)
{
    pthread_mutex_lock(&p->mu);
    int n = p->count;
    pthread_mutex_unlock(&p->mu);
    return n;
}

int pool_busy(pool_t *p)
{
    pthread_mutex_lock(&p->mu);
    int n = p->busy;
    pthread_mutex_unlock(&p->mu);
    return n;
}

int pool_workers(pool_t *p) { return p->nworkers; }

int pool_wait_idle(pool_t *p, int timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&p->mu);
    int rc = 0;
    while ((p->count || p->busy) && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&p->idle, &p->mu, &ts);
    int idle = !p->count && !p->busy;
    pthread_mutex_unlock(&p->mu);
    return idle ? 0 : -1;
}

void pool_destroy(pool_t *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->has_job);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nworkers; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->has_job);
    pthread_cond_destroy(&p->idle);
    free(p->ring);
    free(p->threads);
    free(p->ctx);
    free(p);
}

int pool_borrow(pool_t *p, int want)
{
    if (want <= 0) return 0;
    pthread_mutex_lock(&p->mu);
    int free_cores = p->nworkers - p->busy - p->borrowed - p->count; /* queued jobs take idle workers next */
    int take = want < free_cores ? want : free_cores;
    if (take < 0) take = 0;
    p->borrowed += take;
    pthread_mutex_unlock(&p->mu);
    return take;
}

void pool_return(pool_t *p, int n)
{
    if (n <= 0) return;
    pthread_mutex_lock(&p->mu);
    p->borrowed -= n;
    pthread_mutex_unlock(&p->mu);
}
