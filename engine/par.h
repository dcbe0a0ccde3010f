/* par.h — a team of threads that splits one op's work (engine/par.c).
 *
 * A team has k threads: the caller plus k-1 helpers parked between jobs (spin briefly, then a futex
 * wait), created once (par_team_create) and reused for every op of every request. par_for(team, n,
 * fn, ctx) cuts items 0..n-1 into contiguous chunks at fixed positions (a few per active thread),
 * the threads claim chunks until none is left, and it returns when all are done; fn may run several
 * chunks on one thread, and a helper slow to wake leaves its chunks to the others. A NULL team, an
 * active size of 1 or n < 2 runs fn(ctx, 0, n, 0) inline, so an op written for par_for costs
 * nothing extra on one core.
 *
 * Results must not depend on the split: an op gives each output element to exactly one thread and
 * computes it as the one-thread loop does (engine/graph.c eng_sgemm splits GEMMs only where
 * OpenBLAS rounds a slice as it rounds the whole call).
 *
 * Ownership: par_team_create allocates, par_team_free joins the helpers and frees. One thread at a
 * time calls par_for on a team (its owner); par_team_set_active is called by the owner between jobs.
 */
#ifndef EXPLAIND_PAR_H
#define EXPLAIND_PAR_H

#include "engine.h"

/* fn runs items [lo, hi) on thread tid (0 = the caller). */
typedef void (*par_fn)(void *ctx, int lo, int hi, int tid);

/* par_team_create / _free / _size / _set_active are declared in engine.h (the server owns teams). */
/* How many threads par_for uses now (1..size); NULL team: 1. */
int par_team_active(const par_team_t *t);

void par_for(par_team_t *t, int n_items, par_fn fn, void *ctx);
/* Like par_for with items in blocks of `grain` (ranges start at multiples of grain; the last ends at n). */
void par_for_grain(par_team_t *t, int n_items, int grain, par_fn fn, void *ctx);

#endif
