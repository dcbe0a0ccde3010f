/* test_par — engine/par.c teams and the ops that split over them: par_for runs every item exactly
 * once on contiguous ranges; eng_sgemm split over a team gives the same bytes as one cblas_sgemm
 * call (the convolution shapes of resnet50 and vgg16, forward and data backward, both transposes,
 * beta 0 and 1, batched columns); and a whole forward + backward of the shipped fashion-cnn gives
 * the same bytes in every activation, the input gradient and the guided-backprop input gradient (a
 * ReLU hook) with teams of 1, 2, 3 and 4 threads.
 * Run from tests/unit (make unit does). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <cmocka.h>

#include "engine/engine.h"
#include "engine/graph.h"
#include "engine/par.h"

#define MODEL "../../models/fashion-cnn.onnx"

/* ---- par_for: every item once, in whole grains, whatever thread runs which chunk --------------- */
typedef struct {
    atomic_int *hits;
    atomic_int calls;
    int grain, n, bad_range;
} cover_t;

static void cover_fn(void *ctx, int lo, int hi, int tid)
{
    cover_t *c = ctx;
    atomic_fetch_add(&c->calls, 1);
    if (lo >= hi || (lo % c->grain) || (hi != c->n && hi % c->grain) || tid < 0) c->bad_range = 1;
    for (int i = lo; i < hi; i++) atomic_fetch_add(&c->hits[i], 1);
}

static void test_par_for_covers_every_item_once(void **state)
{
    (void)state;
    for (int k = 1; k <= 4; k++) {
        par_team_t *t = par_team_create(k);
        assert_non_null(t);
        assert_int_equal(par_team_size(t), k);
        for (int active = 1; active <= k; active++) {
            par_team_set_active(t, active);
            const int ns[] = {0, 1, 2, 3, 7, 16, 17, 100, 1001};
            const int grains[] = {1, 3, 16};
            for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
                for (size_t b = 0; b < sizeof grains / sizeof *grains; b++)
                    for (int rep = 0; rep < 20; rep++) { /* many dispatches: a helper that lags must not skip or repeat one */
                        cover_t c = {.grain = grains[b], .n = ns[a]};
                        c.hits = calloc((size_t)ns[a] + 1, sizeof *c.hits);
                        par_for_grain(t, ns[a], grains[b], cover_fn, &c);
                        for (int i = 0; i < ns[a]; i++) assert_int_equal(atomic_load(&c.hits[i]), 1);
                        assert_false(c.bad_range);
                        int blocks = (ns[a] + grains[b] - 1) / grains[b];
                        assert_true(atomic_load(&c.calls) <= (blocks < 4 * active ? blocks : 4 * active));
                        free(c.hits);
                    }
        }
        par_team_free(t);
    }
    cover_t c = {.grain = 1, .n = 5}; /* no team: inline */
    c.hits = calloc(6, sizeof *c.hits);
    par_for(NULL, 5, cover_fn, &c);
    assert_int_equal(atomic_load(&c.calls), 1);
    free(c.hits);
}

/* ---- eng_sgemm split == one call ------------------------------------------------------------- */
static float rnd(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return (float)(*s >> 8) / (float)(1u << 24) * 2.f - 1.f;
}

/* C (M,N) = op(A) op(B) + beta C, once with one cblas call and once through eng_sgemm on team;
 * returns 1 when eng_sgemm cut the call into slices for this team */
static int check_gemm(par_team_t *team, int ta, int tb, int M, int N, int K, float beta)
{
    uint32_t s = (uint32_t)(M * 31 + N * 7 + K);
    const int lda = ta ? M : K, ldb = tb ? K : N;
    float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N);
    float *C0 = malloc(sizeof(float) * M * N), *C1 = malloc(sizeof(float) * M * N);
    for (int i = 0; i < M * K; i++) A[i] = rnd(&s);
    for (int i = 0; i < K * N; i++) B[i] = rnd(&s);
    for (int i = 0; i < M * N; i++) C0[i] = C1[i] = rnd(&s);
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1.f, A, lda, B,
                ldb, beta, C0, N);
    eng_sgemm(team, ta, tb, M, N, K, 1.f, A, lda, B, ldb, beta, C1, N);
    if (memcmp(C0, C1, sizeof(float) * M * N))
        fail_msg("split sgemm differs: ta %d tb %d M %d N %d K %d beta %g team %d", ta, tb, M, N, K, beta,
                 par_team_active(team));
    free(A), free(B), free(C0), free(C1);
    return eng_sgemm_parts(M, N, K, par_team_active(team)) > 1;
}

static void test_split_sgemm_is_bit_identical(void **state)
{
    (void)state;
    /* (M, N, K) of convolutions as the engine calls them: forward w (M, C·k²) · col (C·k², Ho·Wo);
     * data backward wᵀ (C·k², M) · dy (M, Ho·Wo) is the transposed-A call with M and K swapped */
    static const int conv[][3] = {
        /* resnet50 */
        {64, 12544, 147}, {64, 3136, 64}, {64, 3136, 576}, {256, 3136, 64}, {64, 3136, 256}, {128, 3136, 256},
        {128, 784, 1152}, {512, 784, 128}, {128, 784, 512}, {256, 784, 512}, {256, 196, 2304}, {1024, 196, 256},
        {256, 196, 1024}, {512, 196, 1024}, {512, 49, 4608}, {2048, 49, 512}, {512, 49, 2048},
        /* vgg16 */
        {64, 50176, 27}, {64, 50176, 576}, {128, 12544, 576}, {128, 12544, 1152}, {256, 3136, 1152},
        {256, 3136, 2304}, {512, 784, 2304}, {512, 784, 4608}, {512, 196, 4608},
        /* batched columns (several images side by side), odd sizes, heads */
        {256, 196 * 8, 2304}, {512, 49 * 16, 4608}, {96, 1000, 300}, {200, 300, 40}, {37, 5301, 71},
        /* a narrow tail: a 1-column last slice of this fashion-cnn call once took another kernel */
        {256, 49, 1152}, {128, 196, 1152}, {64, 785, 576}, {2048, 33, 512},
        {1000, 8, 2048}, {8, 1000, 2048}, {4096, 4, 25088}};
    int split = 0, total = 0;
    for (int k = 2; k <= 3; k++) {
        par_team_t *t = par_team_create(k);
        assert_non_null(t);
        for (size_t i = 0; i < sizeof conv / sizeof *conv; i++) {
            const int M = conv[i][0], N = conv[i][1], K = conv[i][2];
            for (int beta = 0; beta < 2; beta++) {
                split += check_gemm(t, 0, 0, M, N, K, (float)beta);  /* forward */
                split += check_gemm(t, 1, 0, K, N, M, (float)beta);  /* data backward */
                split += check_gemm(t, 0, 1, M, N, K, (float)beta);
                split += check_gemm(t, 1, 1, M, N, K, (float)beta);
                total += 4;
            }
        }
        par_team_free(t);
    }
    /* the test means something only if most calls were split */
    print_message("split sgemm: %d of %d calls cut into slices, all identical\n", split, total);
    assert_true(split * 10 >= total * 7);
    /* slices start at multiples of 16 columns and none is narrower than 16 */
    assert_int_equal(eng_sgemm_parts(256, 49, 1152, 4), 3);
    assert_int_equal(eng_sgemm_parts(256, 15, 100000, 4), 1);
    assert_int_equal(eng_sgemm_parts(10, 1000, 10, 4), 1); /* small calls take other kernels: never split */
}

/* ---- a real model: every activation and the input gradient, teams of 1..4 ---------------------- */
typedef struct {
    float *values;   /* every activation, concatenated */
    float *grad, *guided;
    size_t n_values, n_grad;
} run_t;

/* guided backpropagation's ReLU rule (a hook, element-wise) */
static void guided(const float *x, const float *y, const float *dy, float *dx, size_t count, int acc, void *ctx)
{
    (void)x, (void)ctx;
    for (size_t i = 0; i < count; i++) {
        float v = y[i] > 0 && dy[i] > 0 ? dy[i] : 0.f;
        dx[i] = acc ? dx[i] + v : v;
    }
}

static void run_model(const graph_t *g, par_team_t *team, int n, run_t *out)
{
    eng_err_t err = {0};
    ws_t *ws;
    assert_int_equal(ws_create(g, n, &ws, &err), ENG_OK);
    ws_set_team(ws, team);
    value_info_t in, lo;
    graph_value_info(g, graph_input_value(g), &in);
    graph_value_info(g, graph_output_value(g), &lo);
    float *x = malloc(sizeof(float) * in.size * n), *seed = calloc(lo.size * n, sizeof(float));
    uint32_t s = 42;
    for (size_t i = 0; i < in.size * n; i++) x[i] = rnd(&s);
    for (int i = 0; i < n; i++) seed[(size_t)i * lo.size + (size_t)i % lo.size] = 1.f;
    assert_int_equal(ws_forward(ws, x, n, &err), ENG_OK);
    size_t total = 0;
    for (int v = 0; v < graph_n_values(g); v++) {
        value_info_t vi;
        graph_value_info(g, v, &vi);
        if (!vi.is_const) total += vi.size * n;
    }
    out->values = malloc(sizeof(float) * total);
    out->n_values = total;
    size_t off = 0;
    for (int v = 0; v < graph_n_values(g); v++) {
        value_info_t vi;
        graph_value_info(g, v, &vi);
        if (vi.is_const || !ws_value(ws, v)) continue;
        memcpy(out->values + off, ws_value(ws, v), sizeof(float) * vi.size * n);
        off += vi.size * n;
    }
    out->n_values = off;
    out->n_grad = in.size * n;
    out->grad = malloc(sizeof(float) * out->n_grad);
    int cap = graph_input_value(g);
    bw_req_t req = {.seed_value = graph_output_value(g), .seed = seed, .n_capture = 1, .capture = &cap,
                    .capture_out = &out->grad};
    assert_int_equal(ws_backward(ws, &req, &err), ENG_OK);
    out->guided = malloc(sizeof(float) * out->n_grad);
    bw_hook_t hook = {"Relu", guided, NULL};
    req.capture_out = &out->guided;
    req.n_hooks = 1;
    req.hooks = &hook;
    assert_int_equal(ws_backward(ws, &req, &err), ENG_OK);
    ws_free(ws);
    free(x), free(seed);
}

static void test_model_bytes_do_not_depend_on_the_team(void **state)
{
    (void)state;
    eng_err_t err = {0};
    graph_t *g;
    assert_int_equal(graph_load_onnx(MODEL, NULL, &g, &err), ENG_OK);
    for (int n = 1; n <= 3; n += 2) { /* one image, and a batch (the batched convolution path) */
        run_t ref;
        run_model(g, NULL, n, &ref);
        for (int k = 1; k <= 4; k++) {
            par_team_t *t = par_team_create(k);
            run_t r;
            run_model(g, t, n, &r);
            assert_int_equal(r.n_values, ref.n_values);
            assert_memory_equal(r.values, ref.values, sizeof(float) * ref.n_values);
            assert_memory_equal(r.grad, ref.grad, sizeof(float) * ref.n_grad);
            assert_memory_equal(r.guided, ref.guided, sizeof(float) * ref.n_grad);
            free(r.values), free(r.grad), free(r.guided);
            par_team_free(t);
        }
        free(ref.values), free(ref.grad), free(ref.guided);
    }
    graph_free(g);
}

int main(void)
{
    eng_set_blas_threads(1); /* as the server runs it: every thread of ours calls one-thread sgemm */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_par_for_covers_every_item_once),
        cmocka_unit_test(test_split_sgemm_is_bit_identical),
        cmocka_unit_test(test_model_bytes_do_not_depend_on_the_team),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
