/* conformance_run — drives the engine for the PyTorch conformance suite (tests/conformance/).
 * One process per model: the ONNX file is loaded once (a 528 MB vgg16 takes seconds to load on a
 * small machine) and every engine quantity the tests compare is computed from that one graph.
 *
 *   conformance_run --model M.onnx --input X.f32 --n N --out PREFIX [--value NAME] [--value-alt NAME]
 *                   [--target K] [--single] [--threads T] [--dump LIST] [--no-fold-bn] [--forward-only]
 *
 *   batch    forward on the N images at once, backward seeded with one-hot at each image's argmax:
 *            PREFIX.batch.{logits,input_grad[,value,value_grad]}.f32
 *   fixed    (--target K) a second backward after the same forward, one-hot at class K for every
 *            image: PREFIX.fixed.{input_grad[,value_grad]}.f32
 *   single   (--single) each image alone (a workspace planned for batch 1), argmax backward:
 *            PREFIX.single.{logits,input_grad[,value,value_grad]}.f32
 *   threads  (--threads T) T threads share the loaded graph, each with its own batch-1 workspace,
 *            started together; thread t runs image t mod N as in `single`:
 *            PREFIX.t<t>.{logits,input_grad[,value,value_grad]}.f32 (one image each)
 *   dump     (--dump LIST: a file with one value or node name per line) the forward values of those
 *            values after the batch forward, and after each single forward with --single:
 *            PREFIX.{batch,single}.dump.f32, the values one after the other, each N x size floats.
 *   --value-alt NAME reports whether NAME (e.g. a node name) resolves to the same value as --value.
 *   --forward-only   the batch forward alone: PREFIX.batch.logits.f32 (and .value), no backward, so
 *            ops without a backward run too (the ONNX backend cases); not with --target/--single/--threads.
 * Files are little-endian float32, batch-major. stdout: one JSON line (shapes, targets per mode,
 * seconds per phase, dump sizes). Exit 0; 2 with "error: <message>" on stderr when the model does
 * not load or a name is unknown; 3 when a pass fails.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"

typedef struct {
    const graph_t *g;
    const float *x;   /* input images, batch-major */
    int value;        /* captured value or -1 */
    size_t in_size, out_size, val_size;
} ctx_t;

typedef struct {
    float *logits, *ig, *vv, *vg;
    int *targets;
} outs_t;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int outs_alloc(outs_t *o, const ctx_t *c, int n)
{
    memset(o, 0, sizeof *o);
    o->logits = malloc(sizeof(float) * n * c->out_size);
    o->ig = malloc(sizeof(float) * n * c->in_size);
    o->targets = calloc((size_t)n, sizeof(int));
    if (c->value >= 0) {
        o->vv = malloc(sizeof(float) * n * c->val_size);
        o->vg = malloc(sizeof(float) * n * c->val_size);
    }
    return o->logits && o->ig && o->targets && (c->value < 0 || (o->vv && o->vg)) ? 0 : -1;
}

static void outs_free(outs_t *o)
{
    free(o->logits); free(o->ig); free(o->vv); free(o->vg); free(o->targets);
}

static int write_f32(const char *prefix, const char *key, const float *p, size_t count)
{
    char path[1200];
    snprintf(path, sizeof path, "%s.%s.f32", prefix, key);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(p, sizeof(float), count, f);
    return fclose(f) == 0 && w == count ? 0 : -1;
}

static int outs_write(const outs_t *o, const ctx_t *c, int n, const char *prefix, const char *mode, int grads)
{
    char p[1100];
    snprintf(p, sizeof p, "%s.%s", prefix, mode);
    int rc = write_f32(p, "logits", o->logits, (size_t)n * c->out_size);
    if (grads) rc |= write_f32(p, "input_grad", o->ig, (size_t)n * c->in_size);
    if (o->vv) {
        rc |= write_f32(p, "value", o->vv, (size_t)n * c->val_size);
        if (grads) rc |= write_f32(p, "value_grad", o->vg, (size_t)n * c->val_size);
    }
    return rc;
}

/* Backward seeded with one-hot at `target` (< 0: each image's argmax of the logits just computed);
 * copies input grad and value grad of images [b, b+n) into o. */
static int backward(ws_t *ws, const ctx_t *c, int b, int n, int target, outs_t *o, float *seed, eng_err_t *err)
{
    const graph_t *g = c->g;
    const float *lo = ws_value(ws, graph_output_value(g));
    memset(seed, 0, sizeof(float) * n * c->out_size);
    for (int i = 0; i < n; i++) {
        int t = target;
        if (t < 0) {
            t = 0;
            for (size_t k = 1; k < c->out_size; k++)
                if (lo[i * c->out_size + k] > lo[i * c->out_size + t]) t = (int)k;
        }
        if ((size_t)t >= c->out_size) return eng_errf(err, ENG_EINVAL, "target %d out of range", t);
        o->targets[b + i] = t;
        seed[i * c->out_size + t] = 1.f;
    }
    int caps[2] = {graph_input_value(g), c->value};
    float *outs[2] = {o->ig + (size_t)b * c->in_size, o->vg ? o->vg + (size_t)b * c->val_size : NULL};
    bw_req_t req = {.seed_value = graph_output_value(g), .seed = seed, .n_capture = c->value >= 0 ? 2 : 1,
                    .capture = caps, .capture_out = outs};
    return ws_backward(ws, &req, err);
}

/* Forward of images [b, b+n) on ws; logits and value into o. */
static int forward(ws_t *ws, const ctx_t *c, int b, int n, outs_t *o, eng_err_t *err)
{
    if (ws_forward(ws, c->x + (size_t)b * c->in_size, n, err)) return -1;
    memcpy(o->logits + (size_t)b * c->out_size, ws_value(ws, graph_output_value(c->g)),
           sizeof(float) * n * c->out_size);
    if (o->vv) memcpy(o->vv + (size_t)b * c->val_size, ws_value(ws, c->value), sizeof(float) * n * c->val_size);
    return 0;
}

/* Copy the dumped values of images [b, b+n) (ws holds them after a forward of n images). */
static void dump_copy(const ws_t *ws, const int *ids, const size_t *sizes, int nd, int total_n, int b, int n,
                      float *dst)
{
    size_t off = 0;
    for (int k = 0; k < nd; k++) {
        memcpy(dst + off + (size_t)b * sizes[k], ws_value(ws, ids[k]), sizeof(float) * n * sizes[k]);
        off += (size_t)total_n * sizes[k];
    }
}

typedef struct {
    const ctx_t *c;
    int image;
    pthread_barrier_t *start;
    outs_t o;
    int rc;
    char msg[600];
} thread_job_t;

static void *thread_main(void *arg)
{
    thread_job_t *j = arg;
    const ctx_t *c = j->c;
    eng_err_t err = {0};
    ws_t *ws = NULL;
    float *seed = malloc(sizeof(float) * c->out_size);
    ctx_t one = *c;
    one.x = c->x + (size_t)j->image * c->in_size;
    int ok = seed && !outs_alloc(&j->o, c, 1) && !ws_create(c->g, 1, &ws, &err);
    pthread_barrier_wait(j->start);
    if (!ok || forward(ws, &one, 0, 1, &j->o, &err) || backward(ws, &one, 0, 1, -1, &j->o, seed, &err)) {
        j->rc = 3;
        snprintf(j->msg, sizeof j->msg, "thread on image %d: %s", j->image, err.msg[0] ? err.msg : "out of memory");
    }
    ws_free(ws);
    free(seed);
    return NULL;
}

static void print_targets(const char *key, const int *t, int n)
{
    printf(", \"%s\": [", key);
    for (int i = 0; i < n; i++) printf("%s%d", i ? ", " : "", t[i]);
    printf("]");
}

static int fail(const char *what, const eng_err_t *err)
{
    fprintf(stderr, "error: %s: %s\n", what, err->msg[0] ? err->msg : "out of memory");
    return 3;
}

int main(int argc, char **argv)
{
    const char *model = NULL, *input = NULL, *value = NULL, *value_alt = NULL, *prefix = NULL, *dump = NULL;
    int n = 1, target = -1, threads = 0, single = 0, forward_only = 0;
    graph_opts_t opts = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--model") && v) model = argv[++i];
        else if (!strcmp(a, "--input") && v) input = argv[++i];
        else if (!strcmp(a, "--n") && v) n = atoi(argv[++i]);
        else if (!strcmp(a, "--value") && v) value = argv[++i];
        else if (!strcmp(a, "--value-alt") && v) value_alt = argv[++i];
        else if (!strcmp(a, "--target") && v) target = atoi(argv[++i]);
        else if (!strcmp(a, "--threads") && v) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--dump") && v) dump = argv[++i];
        else if (!strcmp(a, "--out") && v) prefix = argv[++i];
        else if (!strcmp(a, "--single")) single = 1;
        else if (!strcmp(a, "--no-fold-bn")) opts.no_fold_bn = 1;
        else if (!strcmp(a, "--forward-only")) forward_only = 1;
        else {
            fprintf(stderr, "usage: conformance_run --model M --input X.f32 --n N --out PREFIX [--value NAME] "
                            "[--value-alt NAME] [--target K] [--single] [--threads T] [--dump LIST] [--no-fold-bn] "
                            "[--forward-only]\n");
            return 1;
        }
    }
    if (!model || !input || !prefix || n < 1 || threads < 0) {
        fprintf(stderr, "error: --model, --input and --out are required, --n >= 1\n");
        return 1;
    }
    if (forward_only && (target >= 0 || single || threads)) {
        fprintf(stderr, "error: --forward-only runs the batch forward alone (no --target, --single, --threads)\n");
        return 1;
    }
    eng_set_blas_threads(1);
    double t0 = now_s();
    eng_err_t err = {0};
    graph_t *g;
    if (graph_load_onnx(model, &opts, &g, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 2;
    }
    double t_load = now_s() - t0;
    ctx_t c = {.g = g, .value = -1};
    value_info_t in, out, val;
    graph_value_info(g, graph_input_value(g), &in);
    graph_value_info(g, graph_output_value(g), &out);
    c.in_size = in.size;
    c.out_size = out.size;
    if (value && (c.value = graph_find_value(g, value)) < 0) {
        fprintf(stderr, "error: no value or node named '%s'\n", value);
        return 2;
    }
    int alt = -2;
    if (value_alt && (alt = graph_find_value(g, value_alt)) < 0) {
        fprintf(stderr, "error: no value or node named '%s'\n", value_alt);
        return 2;
    }
    if (c.value >= 0) {
        graph_value_info(g, c.value, &val);
        c.val_size = val.size;
    }
    /* the names to dump */
    int nd = 0, *dids = NULL;
    size_t *dsizes = NULL, dtotal = 0;
    if (dump) {
        FILE *f = fopen(dump, "r");
        if (!f) {
            fprintf(stderr, "error: cannot read %s\n", dump);
            return 1;
        }
        char line[1024];
        while (fgets(line, sizeof line, f)) {
            line[strcspn(line, "\r\n")] = 0;
            if (!line[0]) continue;
            int id = graph_find_value(g, line);
            if (id < 0) {
                fprintf(stderr, "error: --dump: no value or node named '%s'\n", line);
                return 2;
            }
            dids = realloc(dids, sizeof(int) * (nd + 1));
            dsizes = realloc(dsizes, sizeof(size_t) * (nd + 1));
            value_info_t vi;
            graph_value_info(g, id, &vi);
            if (vi.is_const) {
                fprintf(stderr, "error: --dump: '%s' is a constant\n", line);
                return 2;
            }
            dids[nd] = id;
            dsizes[nd++] = vi.size;
            dtotal += vi.size;
        }
        fclose(f);
    }
    float *x = malloc(sizeof(float) * n * in.size);
    FILE *f = fopen(input, "rb");
    if (!x || !f || fread(x, sizeof(float), n * in.size, f) != n * in.size) {
        fprintf(stderr, "error: cannot read %d x %zu floats from %s\n", n, in.size, input);
        return 1;
    }
    fclose(f);
    c.x = x;
    float *seed = malloc(sizeof(float) * n * out.size);
    float *dbuf = dtotal ? malloc(sizeof(float) * n * dtotal) : NULL;
    char p[1100];

    /* batch: one forward, the argmax backward, then the fixed-target backward on the same forward */
    double tb = now_s();
    ws_t *ws;
    outs_t ob, of = {0};
    if (ws_create(g, n, &ws, &err) || outs_alloc(&ob, &c, n)) return fail("batch workspace", &err);
    if (forward(ws, &c, 0, n, &ob, &err)) return fail("batch forward", &err);
    if (dbuf) {
        dump_copy(ws, dids, dsizes, nd, n, 0, n, dbuf);
        snprintf(p, sizeof p, "%s.batch", prefix);
        write_f32(p, "dump", dbuf, (size_t)n * dtotal);
    }
    if (!forward_only && backward(ws, &c, 0, n, -1, &ob, seed, &err)) return fail("batch backward", &err);
    if (outs_write(&ob, &c, n, prefix, "batch", !forward_only)) return fail("writing batch outputs", &err);
    double t_batch = now_s() - tb, t_fixed = 0;
    if (target >= 0) {
        double tf = now_s();
        if (outs_alloc(&of, &c, n)) return fail("fixed target", &err);
        if (backward(ws, &c, 0, n, target, &of, seed, &err)) return fail("fixed-target backward", &err);
        snprintf(p, sizeof p, "%s.fixed", prefix);
        write_f32(p, "input_grad", of.ig, (size_t)n * in.size);
        if (of.vg) write_f32(p, "value_grad", of.vg, (size_t)n * c.val_size);
        t_fixed = now_s() - tf;
    }
    ws_free(ws);

    /* single: each image alone */
    double t_single = 0;
    outs_t os = {0};
    if (single) {
        double ts = now_s();
        if (ws_create(g, 1, &ws, &err) || outs_alloc(&os, &c, n)) return fail("single workspace", &err);
        for (int b = 0; b < n; b++) {
            if (forward(ws, &c, b, 1, &os, &err)) return fail("single forward", &err);
            if (dbuf) dump_copy(ws, dids, dsizes, nd, n, b, 1, dbuf);
            if (backward(ws, &c, b, 1, -1, &os, seed, &err)) return fail("single backward", &err);
        }
        if (outs_write(&os, &c, n, prefix, "single", 1)) return fail("writing single outputs", &err);
        if (dbuf) {
            snprintf(p, sizeof p, "%s.single", prefix);
            write_f32(p, "dump", dbuf, (size_t)n * dtotal);
        }
        ws_free(ws);
        t_single = now_s() - ts;
    }

    /* threads: T threads on the one graph, each its own workspace, started together */
    double t_threads = 0;
    int rc = 0;
    int *ttargets = threads ? calloc((size_t)threads, sizeof(int)) : NULL;
    if (threads) {
        double tt = now_s();
        thread_job_t *jobs = calloc((size_t)threads, sizeof *jobs);
        pthread_t *th = calloc((size_t)threads, sizeof *th);
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, (unsigned)threads);
        for (int t = 0; t < threads; t++) {
            jobs[t] = (thread_job_t){.c = &c, .image = t % n, .start = &start};
            pthread_create(&th[t], NULL, thread_main, &jobs[t]);
        }
        for (int t = 0; t < threads; t++) {
            pthread_join(th[t], NULL);
            if (jobs[t].rc) {
                fprintf(stderr, "error: %s\n", jobs[t].msg);
                rc = jobs[t].rc;
                continue;
            }
            char tag[16];
            snprintf(tag, sizeof tag, "t%d", t);
            if (outs_write(&jobs[t].o, &c, 1, prefix, tag, 1)) rc = 3;
            ttargets[t] = jobs[t].o.targets[0];
            outs_free(&jobs[t].o);
        }
        pthread_barrier_destroy(&start);
        free(jobs);
        free(th);
        t_threads = now_s() - tt;
    }

    printf("{\"logits_shape\": [%d, %zu]", n, out.size);
    if (c.value >= 0) {
        printf(", \"value_shape\": [%d", n);
        for (int i = 1; i < val.rank; i++) printf(", %lld", (long long)val.dims[i]);
        printf("], \"value_name\": \"%s\"", val.name);
    }
    if (value_alt) printf(", \"value_alt_same\": %s", alt == c.value ? "true" : "false");
    if (!forward_only) print_targets("targets", ob.targets, n);
    if (target >= 0) print_targets("fixed_targets", of.targets, n);
    if (single) print_targets("single_targets", os.targets, n);
    if (threads) print_targets("thread_targets", ttargets, threads);
    printf(", \"dump_sizes\": [");
    for (int k = 0; k < nd; k++) printf("%s%zu", k ? ", " : "", dsizes[k]);
    printf("], \"seconds\": {\"load\": %.3f, \"batch\": %.3f, \"fixed\": %.3f, \"single\": %.3f, \"threads\": %.3f}}\n",
           t_load, t_batch, t_fixed, t_single, t_threads);
    outs_free(&ob);
    outs_free(&of);
    outs_free(&os);
    free(ttargets); free(seed); free(dbuf); free(dids); free(dsizes); free(x);
    graph_free(g);
    return rc;
}
