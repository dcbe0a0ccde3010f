/* Request parameter table: the 422 cases of docs/API.md (unknown, repeated, out of range, not
 * applicable), NaN and Infinity, lists, and JSON values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "params.h"

static config_t cfg;

static void test_defaults_follow_the_contract(void **st)
{
    (void)st;
    request_t r;
    params_init(&r, R_EXPLAIN);
    assert_int_equal(r.ep.methods, 1u << M_GRADCAM);
    assert_int_equal(r.top_k, 5);
    assert_int_equal(r.outputs, OUT_HEATMAP | OUT_OVERLAY);
    assert_string_equal(r.colormap, "jet");
    assert_int_equal(r.ep.ig_steps, 50);
    assert_int_equal(r.ep.ig_method, IG_GAUSS_LEGENDRE);
    assert_int_equal(r.ep.smoothgrad_samples, 25);
    assert_true(r.clip_percentile == 99.5);
}

/* The method table is the only list of methods: every row is complete, and the methods and
 * smoothgrad_base parameters take exactly the names its rows give. */
static void test_every_method_row_is_complete_and_a_choice(void **st)
{
    (void)st;
    int smoothable = 0;
    for (int m = 0; m < M_COUNT; m++) {
        request_t r;
        params_init(&r, R_EXPLAIN);
        char d[1024];
        assert_int_equal(method_from_name(method_name(m)), m);
        assert_string_not_equal(method_family_name(m), "?");
        assert_true(strlen(method_display(m)) > 0 && strlen(method_summary(m)) > 0);
        assert_int_equal(params_set(&r, &cfg, "methods", method_name(m), d, sizeof d), 0);
        assert_int_equal(r.ep.methods, 1u << m);
        int st_base = params_set(&r, &cfg, "smoothgrad_base", method_name(m), d, sizeof d);
        assert_int_equal(st_base, method_needs(m) & MN_SMOOTHABLE ? 0 : 422);
        if (!st_base) assert_int_equal(r.ep.smoothgrad_base, m);
        smoothable += !st_base;
    }
    assert_int_equal(smoothable, 4);
}

/* The table's default column is what a request starts from; the engine keeps its own defaults for
 * callers without a request (explain_params_default, filterviz_params_default): they must agree. */
static void test_table_defaults_are_the_engine_defaults(void **st)
{
    (void)st;
    request_t r;
    params_init(&r, R_EXPLAIN);
    explain_params_t ep;
    filterviz_params_t fv;
    explain_params_default(&ep);
    filterviz_params_default(&fv);
    assert_memory_equal(&r.ep, &ep, sizeof ep);
    assert_memory_equal(&r.fv, &fv, sizeof fv);
    assert_true(r.sp.init_std == 0.01f);
    assert_string_equal(r.sanity_layers, "auto");
}

/* The sanity parameters are stored as sanity.h's values: no second enum to translate through. */
static void test_sanity_choices_are_the_engine_values(void **st)
{
    (void)st;
    request_t r;
    char d[256];
    params_init(&r, R_SANITY);
    const char *set[][2] = {{"sanity_order", "independent"}, {"sanity_init", "normal"}, {"sanity_target", "argmax"},
                            {"sanity", "label,random_logit"}};
    for (size_t i = 0; i < sizeof set / sizeof set[0]; i++) assert_int_equal(params_set(&r, &cfg, set[i][0], set[i][1], d, sizeof d), 0);
    assert_int_equal(r.sp.order, SANITY_ORDER_INDEPENDENT);
    assert_int_equal(r.sp.init, SANITY_INIT_NORMAL);
    assert_int_equal(r.sp.target, SANITY_TARGET_ARGMAX);
    assert_int_equal(r.sp.checks, SANITY_CHECK_LABEL | SANITY_CHECK_RANDOM_LOGIT);
    assert_string_equal(params_choice("sanity_order", SANITY_ORDER_BOTTOM_UP), "cascading_bottom_up");
    assert_string_equal(params_choice("sanity_target", SANITY_TARGET_FIXED), "fixed");
    assert_string_equal(params_choice("sanity_init", 7), "?");
}

static void test_unknown_parameter_is_422(void **st)
{
    (void)st;
    request_t r;
    params_init(&r, R_EXPLAIN);
    char d[256];
    assert_int_equal(params_set(&r, &cfg, "ig_stepz", "5", d, sizeof d), 422);
    assert_non_null(strstr(d, "ig_stepz"));
}

static void test_repeated_parameter_is_422(void **st)
{
    (void)st;
    request_t r;
    params_init(&r, R_EXPLAIN);
    char d[256];
    assert_int_equal(params_set(&r, &cfg, "ig_steps", "5", d, sizeof d), 0);
    assert_int_equal(params_set(&r, &cfg, "ig_steps", "6", d, sizeof d), 422);
    assert_non_null(strstr(d, "more than once"));
}

static void test_out_of_range_names_the_range(void **st)
{
    (void)st;
    request_t r;
    params_init(&r, R_EXPLAIN);
    char d[256];
    assert_int_equal(params_set(&r, &cfg, "ig_steps", "0", d, sizeof d), 422);
    assert_non_null(strstr(d, "1..1024"));
    assert_int_equal(params_set(&r, &cfg, "alpha", "1.5", d, sizeof d), 422);
    assert_int_equal(params_set(&r, &cfg, "top_k", "-3", d, sizeof d), 422);
    assert_int_equal(params_set(&r, &cfg, "seed", "-1", d, sizeof d), 422);
}

static void test_seed_with_a_blank_and_a_minus_is_422_not_2_to_the_64_minus_1(void **st)
{
    (void)st;
    request_t r;
    char d[256];
    /* seed=%20-1: strtoull skips the blank, then reads -1 as 2^64 - 1 */
    const char *bad[] = {" -1", "\t-1", "-0", "+5", " ", "", "1x", "18446744073709551616"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        params_init(&r, R_EXPLAIN);
        if (params_set(&r, &cfg, "seed", bad[i], d, sizeof d) != 422) fail_msg("seed '%s' was accepted", bad[i]);
    }
    params_init(&r, R_EXPLAIN);
    assert_int_equal(params_set(&r, &cfg, "seed", "18446744073709551615", d, sizeof d), 0);
    assert_true(r.ep.seed == UINT64_MAX);
    params_init(&r, R_EXPLAIN);
    assert_int_equal(params_set(&r, &cfg, "seed", " 7", d, sizeof d), 0); /* a blank, as integers take it */
    assert_true(r.ep.seed == 7);
}

static void test_subnormal_numbers_are_taken_not_422(void **st)
{
    (void)st;
    request_t r;
    char d[256];
    /* strtod sets ERANGE on underflow: 1e-320 is a subnormal double, 1e-400 rounds to 0 */
    params_init(&r, R_EXPLAIN);
    assert_int_equal(params_set(&r, &cfg, "alpha", "1e-320", d, sizeof d), 0);
    assert_true(r.alpha > 0 && r.alpha < 1e-300);
    params_init(&r, R_EXPLAIN);
    assert_int_equal(params_set(&r, &cfg, "alpha", "1e-400", d, sizeof d), 0);
    assert_true(r.alpha == 0);
    params_init(&r, R_EXPLAIN);
    assert_int_equal(params_set(&r, &cfg, "smoothgrad_noise", "1e-320", d, sizeof d), 0);
    params_init(&r, R_EXPLAIN);
    assert_int_equal(params_set(&r, &cfg, "alpha", "-1e-320", d, sizeof d), 422); /* below the minimum 0 */
    params_init(&r, R_EXPLAIN);
    assert_int_equal(params_set(&r, &cfg, "clip_percentile", "1e400", d, sizeof d), 422); /* overflow still is */
}

static void test_nan_and_infinity_are_rejected(void **st)
{
    (void)st;
    request_t r;
    params_init(&r, R_EXPLAIN);
    char d[256];
    assert_int_equal(params_set(&r, &cfg, "alpha", "NaN", d, sizeof d), 422);
    assert_int_equal(params_set(&r, &cfg, "smoothgrad_noise", "inf", d, sizeof d), 422);
    assert_int_equal(params_set(&r, &cfg, "clip_percentile", "Infinity", d, sizeof d), 422);
    assert_int_equal(params_set(&r, &cfg, "ig_steps", "1e3", d, sizeof d), 422);
}

static void test_lists_and_enums(void **st)
{
    (void)st;
    request_t r;
    params_init(&r, R_EXPLAIN);
    char d[256];
    assert_int_equal(params_set(&r, &cfg, "methods", "saliency, gradcam,eigencam", d, sizeof d), 0);
    assert_int_equal(r.ep.methods, (1u << M_SALIENCY) | (1u << M_GRADCAM) | (1u << M_EIGENCAM));
    assert_int_equal(params_set(&r, &cfg, "output", "raw,nope", d, sizeof d), 422);
    assert_non_null(strstr(d, "nope"));
    assert_int_equal(params_set(&r, &cfg, "colormap", "viridis", d, sizeof d), 0);
    assert_string_equal(r.colormap, "viridis");
    assert_int_equal(params_set(&r, &cfg, "sanity", "all", d, sizeof d), 0);
    assert_int_equal(r.sp.checks, SANITY_CHECK_MODEL | SANITY_CHECK_LABEL | SANITY_CHECK_RANDOM_LOGIT);
    assert_int_equal(params_set(&r, &cfg, "smoothgrad_base", "guided_backprop", d, sizeof d), 0);
    assert_int_equal(r.ep.smoothgrad_base, M_GUIDED_BACKPROP);
}

static void test_parameter_not_applicable_to_route_is_422(void **st)
{
    (void)st;
    request_t r;
    params_init(&r, R_PREDICT);
    char d[256];
    assert_int_equal(params_set(&r, &cfg, "ig_steps", "5", d, sizeof d), 422);
    assert_non_null(strstr(d, "does not apply"));
    assert_int_equal(params_set(&r, &cfg, "top_k", "3", d, sizeof d), 0);
}

static void test_json_values(void **st)
{
    (void)st;
    request_t r;
    params_init(&r, R_EXPLAIN);
    char d[256];
    json_t *arr = json_pack("[s,s]", "saliency", "cam");
    assert_int_equal(params_set_json(&r, &cfg, "methods", arr, d, sizeof d), 0);
    json_decref(arr);
    assert_int_equal(r.ep.methods, (1u << M_SALIENCY) | (1u << M_CAM));
    json_t *v = json_real(2.5);
    assert_int_equal(params_set_json(&r, &cfg, "ig_steps", v, d, sizeof d), 422); /* not an integer */
    json_decref(v);
    v = json_true();
    assert_int_equal(params_set_json(&r, &cfg, "faithfulness", v, d, sizeof d), 0);
    assert_int_equal(r.ep.faithfulness, 1);
    assert_int_equal(params_set_json(&r, &cfg, "top_k", v, d, sizeof d), 422); /* bool for a number */
    json_decref(v);
}

int main(void)
{
    config_defaults(&cfg);
    config_finalize(&cfg);
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_defaults_follow_the_contract),
        cmocka_unit_test(test_every_method_row_is_complete_and_a_choice),
        cmocka_unit_test(test_table_defaults_are_the_engine_defaults),
        cmocka_unit_test(test_sanity_choices_are_the_engine_values),
        cmocka_unit_test(test_unknown_parameter_is_422),
        cmocka_unit_test(test_repeated_parameter_is_422),
        cmocka_unit_test(test_out_of_range_names_the_range),
        cmocka_unit_test(test_nan_and_infinity_are_rejected),
        cmocka_unit_test(test_seed_with_a_blank_and_a_minus_is_422_not_2_to_the_64_minus_1),
        cmocka_unit_test(test_subnormal_numbers_are_taken_not_422),
        cmocka_unit_test(test_lists_and_enums),
        cmocka_unit_test(test_parameter_not_applicable_to_route_is_422),
        cmocka_unit_test(test_json_values),
    };
    return cmocka_run_group_tests(t, NULL, NULL);
}
