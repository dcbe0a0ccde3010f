/* par.c — teams of threads for splitting one op (par.h).
 *
 * Dispatch: the owner publishes the job (fn, ctx, n, active) and bumps `gen`; parked helpers see the
 * new generation, run their range, and decrement `pending`; the owner runs range 0 and waits for
 * pending == 0. Both sides spin a little before sleeping on a futex, because a ResNet-50 pass
 * dispatches a few hundred jobs and a futex round trip alone is several microseconds; the spin is
 * short (PAR_SPIN polls) so an idle team costs no CPU and a helper whose core went to another
 * request yields it quickly.
 */
#include <errno.h>
#include <immintrin.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "par.h"

#define PAR_SPIN 20000 /* polls before a futex wait (~20-50 us) */

struct par_team {
    int k;            /* threads, caller included */
    int active;       /* threads the next job uses */
    pthread_t *th;
    int n_started;
    _Atomic uint32_t gen;     /* job generation; helpers wait for it to change */
    _Atomic uint32_t pending; /* helpers still running the current job */
    _Atomic int stop;
    /* the current job, written by the owner before gen is bumped */
    par_fn fn;
    void *ctx;
    int n, grain;
    _Atomic int job_active; /* threads in the current job; helpers with tid >= it skip it */
};

typedef struct {
    par_team_t *t;
    int tid;
} helper_arg_t;

static long futex(_Atomic uint32_t *addr, int op, uint32_t val)
{
    return syscall(SYS_futex, (uint32_t *)addr, op, val, NULL, NULL, 0);
}

/* wait while *addr == val */
static void wait_while(_Atomic uint32_t *addr, uint32_t val)
{
    for (int i = 0; i < PAR_SPIN; i++) {
        if (atomic_load_explicit(addr, memory_order_acquire) != val) return;
        _mm_pause();
    }
    while (atomic_load_explicit(addr, memory_order_acquire) == val) futex(addr, FUTEX_WAIT_PRIVATE, val);
}

/* thread tid's range of the job: blocks of grain, split as evenly as whole blocks allow */
static void run_range(const par_team_t *t, int tid, int k)
{
    const int blocks = (t->n + t->grain - 1) / t->grain;
    const int b0 = (int)((int64_t)blocks * tid / k), b1 = (int)((int64_t)blocks * (tid + 1) / k);
    int lo = b0 * t->grain, hi = b1 * t->grain;
    if (hi > t->n) hi = t->n;
    if (lo < hi) t->fn(t->ctx, lo, hi, tid);
}

static void *helper_main(void *arg)
{
    helper_arg_t a = *(helper_arg_t *)arg;
    free(arg);
    par_team_t *t = a.t;
    uint32_t seen = 0; /* gen at creation: a helper that starts late must still see the first job */
    for (;;) {
        wait_while(&t->gen, seen);
        if (atomic_load_explicit(&t->stop, memory_order_acquire)) return NULL;
        /* read the job's size and check that it belongs to the generation we saw: a helper that
         * skipped earlier jobs may lag, and must neither run a later job twice nor miss it */
        uint32_t g = atomic_load_explicit(&t->gen, memory_order_acquire);
        int k = atomic_load_explicit(&t->job_active, memory_order_acquire);
        if (atomic_load_explicit(&t->gen, memory_order_acquire) != g) continue; /* moved on: look again */
        seen = g;
        if (a.tid >= k) continue;
        /* a participant: the owner publishes nothing new until we are done */
        run_range(t, a.tid, k);
        if (atomic_fetch_sub_explicit(&t->pending, 1, memory_order_acq_rel) == 1)
            futex(&t->pending, FUTEX_WAKE_PRIVATE, 1);
    }
}

par_team_t *par_team_create(int k)
{
    if (k < 1) k = 1;
    par_team_t *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->k = k;
    t->active = k;
    t->th = calloc((size_t)k, sizeof *t->th);
    if (!t->th) {
        free(t);
        return NULL;
    }
    for (int i = 1; i < k; i++) {
        helper_arg_t *a = malloc(sizeof *a);
        if (!a) break;
        a->t = t;
        a->tid = i;
        if (pthread_create(&t->th[i], NULL, helper_main, a)) {
            free(a);
            break;
        }
        t->n_started++;
    }
    if (t->n_started != k - 1) {
        par_team_free(t);
        return NULL;
    }
    return t;
}

void par_team_free(par_team_t *t)
{
    if (!t) return;
    atomic_store_explicit(&t->stop, 1, memory_order_release);
    atomic_fetch_add_explicit(&t->gen, 1, memory_order_acq_rel);
    futex(&t->gen, FUTEX_WAKE_PRIVATE, INT32_MAX);
    for (int i = 1; i <= t->n_started; i++) pthread_join(t->th[i], NULL);
    free(t->th);
    free(t);
}

int par_team_size(const par_team_t *t) { return t ? t->k : 1; }
int par_team_active(const par_team_t *t) { return t ? t->active : 1; }

void par_team_set_active(par_team_t *t, int k)
{
    if (!t) return;
    t->active = k < 1 ? 1 : k > t->k ? t->k : k;
}

void par_for_grain(par_team_t *t, int n_items, int grain, par_fn fn, void *ctx)
{
    if (n_items <= 0) return;
    if (grain < 1) grain = 1;
    const int blocks = (n_items + grain - 1) / grain;
    int k = par_team_active(t);
    if (k > blocks) k = blocks;
    if (k <= 1) {
        fn(ctx, 0, n_items, 0);
        return;
    }
    t->fn = fn;
    t->ctx = ctx;
    t->n = n_items;
    t->grain = grain;
    atomic_store_explicit(&t->job_active, k, memory_order_relaxed);
    atomic_store_explicit(&t->pending, (uint32_t)(k - 1), memory_order_relaxed);
    atomic_fetch_add_explicit(&t->gen, 1, memory_order_acq_rel); /* publishes the job */
    futex(&t->gen, FUTEX_WAKE_PRIVATE, t->k - 1); /* all: the kernel picks whom a smaller count wakes */
    run_range(t, 0, k);
    uint32_t p;
    while ((p = atomic_load_explicit(&t->pending, memory_order_acquire)) != 0) wait_while(&t->pending, p);
}

void par_for(par_team_t *t, int n_items, par_fn fn, void *ctx) { par_for_grain(t, n_items, 1, fn, ctx); }
