/* test_sanity_randomize — engine/sanity/randomize.c on the shipped fashion-cnn: re-initialized
 * weights are seeded (same seed, same bytes; another seed, other bytes), and nodes that share one
 * weight initializer (CBAM's shared MLP, exported as /cbam/channel/fc1/Conv and fc1_1/Conv on the
 * average- and max-pooled paths) get the same random weights, as one reset_parameters() in
 * PyTorch gives them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine/engine.h"
#include "engine/graph.h"
#include "engine/sanity.h"

#define MODEL "../../models/fashion-cnn.onnx"

static model_t *model;

static int setup(void **state)
{
    (void)state;
    eng_err_t err = {0};
    if (model_load_path(MODEL, NULL, NULL, &model, &err)) {
        print_error("%s: %s\n", MODEL, err.msg);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    model_free(model);
    return 0;
}

static void reinit(const char *name, uint64_t seed, float **w, float **b, size_t *bytes)
{
    eng_err_t err = {0};
    int node = graph_find_node(model->graph, name);
    assert_true(node >= 0);
    assert_int_equal(sanity_reinit_node(model->graph, node, SANITY_INIT_DEFAULT, 0.f, seed, w, b, bytes, &err), ENG_OK);
}

static void test_shared_initializer_gets_the_same_random_weights(void **state)
{
    (void)state;
    const char *pairs[2][2] = {{"/cbam/channel/fc1/Conv", "/cbam/channel/fc1_1/Conv"},
                               {"/cbam/channel/fc2/Conv", "/cbam/channel/fc2_1/Conv"}};
    for (int p = 0; p < 2; p++) {
        float *w1, *b1, *w2, *b2;
        size_t n1, n2;
        reinit(pairs[p][0], 7, &w1, &b1, &n1);
        reinit(pairs[p][1], 7, &w2, &b2, &n2);
        assert_int_equal(n1, n2);
        const graph_t *g = model->graph;
        const node_t *nd = &g->nodes[graph_find_node(g, pairs[p][0])];
        size_t nw = g->values[nd->in[nd->w_in]].size;
        assert_memory_equal(w1, w2, nw * sizeof(float));
        assert_non_null(b1);
        assert_memory_equal(b1, b2, n1 - nw * sizeof(float));
        free(w1), free(b1), free(w2), free(b2);
    }
}

static void test_unshared_layers_get_their_own_weights_and_seeds_matter(void **state)
{
    (void)state;
    float *a, *ab, *b, *bb, *c, *cb;
    size_t na, nb, nc;
    reinit("/conv3/conv/Conv", 7, &a, &ab, &na);
    reinit("/conv3/conv/Conv", 7, &b, &bb, &nb);
    reinit("/conv3/conv/Conv", 8, &c, &cb, &nc);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, 64 * sizeof(float)); /* same seed: same bytes */
    assert_memory_not_equal(a, c, 64 * sizeof(float));
    float *d, *db;
    size_t nd;
    reinit("/conv4/conv/Conv", 7, &d, &db, &nd); /* another layer: another stream */
    assert_memory_not_equal(a, d, 64 * sizeof(float));
    free(a), free(ab), free(b), free(bb), free(c), free(cb), free(d), free(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_initializer_gets_the_same_random_weights),
        cmocka_unit_test(test_unshared_layers_get_their_own_weights_and_seeds_matter),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
