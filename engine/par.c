/* par.c — teams of threads for splitting one op (par.h).
 *
 * A job is cut into chunks at fixed positions (whole grains, a few chunks per thread); threads
 * claim chunks one at a time from a shared counter, so a helper that is slow to wake (its core
 * busy with another process) costs the job nothing: the owner claims the chunks the helper does
 * not. Who runs a chunk never changes what it computes, so results do not depend on timing.
 *
 * Dispatch: the owner writes the job (fn, ctx, n, grain), then the claim word (generation, chunk
 * count, next chunk), then bumps `gen`, the futex word helpers sleep on. Each thread claims with a
 * compare-and-swap on the claim word, which fails once the generation moved on, so a helper that
 * lags can never run a chunk of a finished job. The owner returns when `done` reaches the chunk
 * count; a job's fields stay put until then. Helpers spin a little (PAR_SPIN polls) before a futex
 * wait: a ResNet-50 pass dispatches a few hundred jobs, a futex round trip is several microseconds,
 * and a short spin keeps an idle team from using CPU.
 */
#include <immintrin.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "par.h"

#define PAR_SPIN 2000 /* polls before a futex wait (~100 us of pause instructions) */
#define PAR_CHUNKS_PER_THREAD 4
#define PAR_MAX_CHUNKS 1024 /* fits the claim word's 16-bit fields */

struct par_team {
    int k;      /* threads, caller included */
    _Atomic int active; /* threads the next jobs use (1..k) */
    pthread_t *th;
    int n_started;
    _Atomic uint32_t gen;      /* bumped per job; helpers sleep on it */
    _Atomic uint64_t claim;    /* gen << 32 | chunks << 16 | next chunk */
    _Atomic uint32_t done;     /* chunks finished in the current job */
    _Atomic int sleepers;      /* helpers in (or entering) a futex wait on gen */
    _Atomic int stop;
    /* the current job: written by the owner before the claim word, read only by claimers */
    par_fn fn;
    void *ctx;
    int n, grain;
};

typedef struct {
    par_team_t *t;
    int tid;
} helper_arg_t;

static long futex(_Atomic uint32_t *addr, int op, uint32_t val)
{
    return syscall(SYS_futex, (uint32_t *)addr, op, val, NULL, NULL, 0);
}

/* wait while *addr == val; sleepers (may be NULL) counts futex waiters for the waker */
static void wait_while(_Atomic uint32_t *addr, uint32_t val, _Atomic int *sleepers)
{
    for (int i = 0; i < PAR_SPIN; i++) {
        if (atomic_load_explicit(addr, memory_order_acquire) != val) return;
        _mm_pause();
    }
    while (atomic_load(addr) == val) {
        if (sleepers) atomic_fetch_add(sleepers, 1);
        futex(addr, FUTEX_WAIT_PRIVATE, val);
        if (sleepers) atomic_fetch_sub(sleepers, 1);
    }
}

/* Items of chunk c among `chunks`: whole grains, as evenly as they go; the last ends at n. */
static void chunk_range(const par_team_t *t, int c, int chunks, int *lo, int *hi)
{
    const int64_t grains = (t->n + t->grain - 1) / t->grain;
    *lo = (int)(grains * c / chunks) * t->grain;
    *hi = c == chunks - 1 ? t->n : (int)(grains * (c + 1) / chunks) * t->grain;
}

/* Claim and run chunks of job generation g until none is left. */
static void run_chunks(par_team_t *t, uint32_t g, int tid)
{
    uint64_t c = atomic_load_explicit(&t->claim, memory_order_acquire);
    for (;;) {
        const int chunks = (int)((c >> 16) & 0xffff), next = (int)(c & 0xffff);
        if ((uint32_t)(c >> 32) != g || next >= chunks) return;
        if (!atomic_compare_exchange_weak_explicit(&t->claim, &c, c + 1, memory_order_acq_rel, memory_order_acquire))
            continue; /* c now holds the current word */
        /* chunk `next` of job g is ours and unfinished: the owner keeps the job's fields until done */
        int lo, hi;
        chunk_range(t, next, chunks, &lo, &hi);
        if (lo < hi) t->fn(t->ctx, lo, hi, tid);
        if (atomic_fetch_add_explicit(&t->done, 1, memory_order_acq_rel) + 1 == (uint32_t)chunks)
            futex(&t->done, FUTEX_WAKE_PRIVATE, 1);
        c = atomic_load_explicit(&t->claim, memory_order_acquire);
    }
}

static void *helper_main(void *arg)
{
    helper_arg_t a = *(helper_arg_t *)arg;
    free(arg);
    par_team_t *t = a.t;
    uint32_t seen = 0; /* gen at creation: a helper that starts late still sees the first job */
    for (;;) {
        wait_while(&t->gen, seen, &t->sleepers);
        if (atomic_load_explicit(&t->stop, memory_order_acquire)) return NULL;
        seen = atomic_load_explicit(&t->gen, memory_order_acquire);
        if (a.tid < atomic_load_explicit(&t->active, memory_order_relaxed)) run_chunks(t, seen, a.tid);
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
    atomic_store(&t->stop, 1);
    atomic_fetch_add(&t->gen, 1);
    futex(&t->gen, FUTEX_WAKE_PRIVATE, INT32_MAX);
    for (int i = 1; i <= t->n_started; i++) pthread_join(t->th[i], NULL);
    free(t->th);
    free(t);
}

int par_team_size(const par_team_t *t) { return t ? t->k : 1; }
int par_team_active(const par_team_t *t) { return t ? atomic_load_explicit(&t->active, memory_order_relaxed) : 1; }

/* Between jobs only (the owner's thread): helpers read it when a job starts. */
void par_team_set_active(par_team_t *t, int k)
{
    if (!t) return;
    atomic_store_explicit(&t->active, k < 1 ? 1 : k > t->k ? t->k : k, memory_order_relaxed);
}

void par_for_grain(par_team_t *t, int n_items, int grain, par_fn fn, void *ctx)
{
    if (n_items <= 0) return;
    if (grain < 1) grain = 1;
    const int grains = (n_items + grain - 1) / grain, k = par_team_active(t);
    int chunks = k * PAR_CHUNKS_PER_THREAD;
    if (chunks > grains) chunks = grains;
    if (chunks > PAR_MAX_CHUNKS) chunks = PAR_MAX_CHUNKS;
    if (k <= 1 || chunks <= 1) {
        fn(ctx, 0, n_items, 0);
        return;
    }
    t->fn = fn;
    t->ctx = ctx;
    t->n = n_items;
    t->grain = grain;
    atomic_store_explicit(&t->done, 0, memory_order_relaxed);
    const uint32_t g = atomic_load_explicit(&t->gen, memory_order_relaxed) + 1;
    atomic_store_explicit(&t->claim, (uint64_t)g << 32 | (uint64_t)chunks << 16, memory_order_release);
    atomic_store(&t->gen, g); /* seq_cst with the helpers' sleepers count: a wake is never lost */
    if (atomic_load(&t->sleepers)) futex(&t->gen, FUTEX_WAKE_PRIVATE, INT32_MAX);
    run_chunks(t, g, 0);
    uint32_t d;
    while ((d = atomic_load_explicit(&t->done, memory_order_acquire)) != (uint32_t)chunks) wait_while(&t->done, d, NULL);
}

void par_for(par_team_t *t, int n_items, par_fn fn, void *ctx) { par_for_grain(t, n_items, 1, fn, ctx); }
