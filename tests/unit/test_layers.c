/* test_layers.c — layer names as users write them (engine/graph.c): graph_resolve_layer with
 * ONNX node names, PyTorch module paths and scopes, the closest names for an unknown one,
 * graph_node_module_path, and the auto-detected CAM layer, on the shipped fashion-cnn (its
 * export scopes: /conv1/conv/Conv ... /cbam/channel/fc1/Conv, /cbam/channel/fc1_1/Conv (the
 * shared MLP called twice) ... /conv4/Relu, /gap/GlobalAveragePool, /Flatten, /fc/Gemm).
 * Run from tests/unit (make unit does). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "engine.h"

static graph_t *g;

static int setup(void **state)
{
    (void)state;
    eng_err_t err = {0};
    if (graph_load_onnx("../../models/fashion-cnn.onnx", NULL, &g, &err)) {
        fprintf(stderr, "cannot load fashion-cnn: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    graph_free(g);
    return 0;
}

static const char *name_of(int v) { return v >= 0 ? graph_value_user_name(g, v) : "(none)"; }

static void test_node_and_value_names_resolve(void **state)
{
    (void)state;
    assert_string_equal(name_of(graph_resolve_layer(g, "/conv4/Relu", NULL, 0)), "/conv4/Relu");
    assert_string_equal(name_of(graph_resolve_layer(g, "/conv4/Relu_output_0", NULL, 0)), "/conv4/Relu");
}

static void test_module_paths_name_the_last_node_of_their_scope(void **state)
{
    (void)state;
    assert_string_equal(name_of(graph_resolve_layer(g, "conv4", NULL, 0)), "/conv4/Relu");
    assert_string_equal(name_of(graph_resolve_layer(g, "conv1.conv", NULL, 0)), "/conv1/conv/Conv");
    assert_string_equal(name_of(graph_resolve_layer(g, "cbam", NULL, 0)), "/cbam/spatial/Mul");
    assert_string_equal(name_of(graph_resolve_layer(g, "cbam.spatial", NULL, 0)), "/cbam/spatial/Mul");
    /* a module called twice: its scope is fc1 then fc1_1; the module path names the last call */
    assert_string_equal(name_of(graph_resolve_layer(g, "cbam.channel.fc1", NULL, 0)), "/cbam/channel/fc1_1/Conv");
    assert_string_equal(name_of(graph_resolve_layer(g, "cbam.channel.fc1_1", NULL, 0)), "/cbam/channel/fc1_1/Conv");
    assert_string_equal(name_of(graph_resolve_layer(g, "/cbam/channel", NULL, 0)), "/cbam/channel/Mul");
    assert_string_equal(name_of(graph_resolve_layer(g, "fc", NULL, 0)), "/fc/Gemm");
    /* a prefix of a component is not a scope */
    assert_int_equal(graph_resolve_layer(g, "conv", NULL, 0), -1);
    assert_int_equal(graph_resolve_layer(g, "cbam.chan", NULL, 0), -1);
    assert_int_equal(graph_resolve_layer(g, "", NULL, 0), -1);
    assert_int_equal(graph_resolve_layer(g, "a..b", NULL, 0), -1);
}

static void test_unknown_names_get_the_closest_five(void **state)
{
    (void)state;
    char s[600];
    assert_int_equal(graph_resolve_layer(g, "conv", s, sizeof s), -1);
    /* names containing the query first, shortest first */
    assert_non_null(strstr(s, "'conv1', 'conv2', 'conv3', 'conv4', "));
    int quotes = 0;
    for (const char *p = s; *p; p++) quotes += *p == '\'';
    assert_int_equal(quotes, 10);
    assert_int_equal(graph_resolve_layer(g, "conv5", s, sizeof s), -1);
    assert_non_null(strstr(s, "'conv1'"));
    assert_int_equal(graph_resolve_layer(g, "/conv4/relu", s, sizeof s), -1); /* names are case-sensitive ... */
    assert_true(!strncmp(s, "'/conv4/Relu'", 13));                          /* ... the suggestion is not */
    char tiny[8];
    assert_int_equal(graph_resolve_layer(g, "zzz", tiny, sizeof tiny), -1); /* truncated to whole names */
    assert_true(strlen(tiny) < sizeof tiny);
}

static void test_module_path_of_nodes(void **state)
{
    (void)state;
    char p[256];
    int n = graph_n_nodes(g);
    for (int i = 0; i < n; i++) {
        node_info_t ni;
        graph_node_info(g, i, &ni);
        graph_node_module_path(g, i, p, sizeof p);
        if (!strcmp(ni.name, "/cbam/channel/fc1_1/Conv")) assert_string_equal(p, "cbam.channel.fc1");
        if (!strcmp(ni.name, "/conv4/Relu")) assert_string_equal(p, "conv4");
        if (!strcmp(ni.name, "/conv1/conv/Conv")) assert_string_equal(p, "conv1.conv");
        if (!strcmp(ni.name, "/Flatten")) assert_string_equal(p, "");
        /* every module path resolves to a node of the same scope */
        if (*p) assert_true(graph_resolve_layer(g, p, NULL, 0) >= 0);
    }
}

static void test_auto_detected_cam_layer(void **state)
{
    (void)state;
    assert_string_equal(name_of(graph_detect_cam_value(g)), "/conv4/Relu");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_node_and_value_names_resolve),
        cmocka_unit_test(test_module_paths_name_the_last_node_of_their_scope),
        cmocka_unit_test(test_unknown_names_get_the_closest_five),
        cmocka_unit_test(test_module_path_of_nodes),
        cmocka_unit_test(test_auto_detected_cam_layer),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
