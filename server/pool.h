/* pool.h — the worker pool: N threads, a bounded FIFO of jobs. Each worker owns its workspaces
 * (one per model, created at start) and runs OpenBLAS single-threaded: parallelism comes from the
 * workers, because OpenBLAS 0.3.21 serialises multithreaded GEMM calls from different threads, and
 * from cores a running job borrows: the pool counts one core per worker; a job may borrow the cores
 * of idle workers (pool_borrow) for its own threads and gives them back when done (pool_return). */
#ifndef EXPLAIND_POOL_H
#define EXPLAIND_POOL_H

#include <stddef.h>

typedef struct pool pool_t;
typedef struct worker_ctx worker_ctx_t; /* a worker's state, passed to jobs */

/* A job runs on a worker; it must not block on the event loop. */
typedef void (*job_fn)(void *arg, worker_ctx_t *w);

/* Per-worker init (create workspaces) and teardown; init returns 0 or an error. */
typedef int (*worker_init_fn)(worker_ctx_t *w, int index, void *cls);
typedef void (*worker_fini_fn)(worker_ctx_t *w, void *cls);

struct worker_ctx {
    int index;
    void *state; /* set by worker_init_fn */
};

int pool_create(int workers, int queue_depth, worker_init_fn init, worker_fini_fn fini, void *cls, pool_t **out,
                char *err, size_t errlen);
/* 0 queued; -1 queue full (answer 503). */
int pool_submit(pool_t *p, job_fn fn, void *arg);
int pool_queued(pool_t *p);
int pool_busy(pool_t *p);
int pool_workers(pool_t *p);
/* Take up to `want` cores that no worker and no other job uses (workers - busy - borrowed, at
 * least 0); returns how many were taken. Call from a job; give them back with pool_return. */
int pool_borrow(pool_t *p, int want);
void pool_return(pool_t *p, int n);
/* Wait until nothing is queued or running, or timeout_ms passes; 0 if idle. */
int pool_wait_idle(pool_t *p, int timeout_ms);
/* Stop the workers after the queue drains; frees the pool. */
void pool_destroy(pool_t *p);

#endif
