/* Config table: defaults, ranges, unknown keys, precedence (flags > env > file > defaults), and
 * the committed config/explaind.json equals the defaults (so it cannot drift from the table). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"

static void test_defaults_are_the_documented_ones(void **st)
{
    (void)st;
    config_t c;
    config_defaults(&c);
    assert_int_equal(c.port, 8080);
    assert_int_equal(c.queue_depth, 64);
    assert_int_equal(c.ig_steps_max, 1024);
    assert_string_equal(c.models_dir, "models");
    assert_int_equal(c.workers, 0);
    config_finalize(&c);
    assert_true(c.workers >= 1);
}

static void test_out_of_range_value_is_rejected_with_the_range(void **st)
{
    (void)st;
    config_t c;
    config_defaults(&c);
    char err[256];
    assert_int_equal(config_set(&c, "port", "70000", err, sizeof err), -1);
    assert_non_null(strstr(err, "1..65535"));
    assert_int_equal(config_set(&c, "port", "80x", err, sizeof err), -1);
    assert_int_equal(config_set(&c, "smoothgrad_noise_max", "nan", err, sizeof err), -1);
    assert_int_equal(config_set(&c, "allow_partial", "maybe", err, sizeof err), -1);
    assert_int_equal(config_set(&c, "log_level", "verbose", err, sizeof err), -1); /* was silently info */
    assert_non_null(strstr(err, "debug|info|warn|error"));
    assert_int_equal(config_set(&c, "log_format", "xml", err, sizeof err), -1);
    assert_int_equal(config_set(&c, "log_level", "warn", err, sizeof err), 0);
    assert_int_equal(config_set(&c, "port", "9090", err, sizeof err), 0);
    assert_int_equal(c.port, 9090);
}

static void test_unknown_key_is_an_error_naming_it(void **st)
{
    (void)st;
    config_t c;
    config_defaults(&c);
    char err[256];
    assert_int_equal(config_set(&c, "prot", "1", err, sizeof err), -1);
    assert_non_null(strstr(err, "prot"));
    FILE *f = fopen("/tmp/explaind_test_config.json", "w");
    fputs("{\"port\": 1234, \"wrokers\": 2}", f);
    fclose(f);
    assert_int_equal(config_load_file(&c, "/tmp/explaind_test_config.json", 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "wrokers"));
}

static void test_precedence_flags_over_env_over_file(void **st)
{
    (void)st;
    FILE *f = fopen("/tmp/explaind_test_config2.json", "w");
    fputs("{\"port\": 1111, \"workers\": 3, \"queue_depth\": 7}", f);
    fclose(f);
    setenv("EXPLAIND_WORKERS", "5", 1);
    char *argv[] = {"--config", "/tmp/explaind_test_config2.json", "--queue-depth", "9"};
    config_t c;
    char err[256];
    assert_int_equal(config_from_all(&c, 4, argv, err, sizeof err), 0);
    assert_int_equal(c.port, 1111);       /* file */
    assert_int_equal(c.workers, 5);       /* env over file */
    assert_int_equal(c.queue_depth, 9);   /* flag over file */
    char *argv2[] = {"--config", "/tmp/explaind_test_config2.json", "--workers=2"};
    assert_int_equal(config_from_all(&c, 3, argv2, err, sizeof err), 0);
    assert_int_equal(c.workers, 2);       /* flag over env */
    unsetenv("EXPLAIND_WORKERS");
}

static void test_committed_config_file_equals_the_defaults(void **st)
{
    (void)st;
    config_t def, file;
    config_defaults(&def);
    config_defaults(&file);
    memset(&file, 0x5a, sizeof file); /* every field must come from the file */
    char err[256];
    config_t base;
    config_defaults(&base);
    file = base;
    /* loading on top of something different proves each key is in the file */
    file.port = 1;
    file.queue_depth = 1;
    assert_int_equal(config_load_file(&file, "../../config/explaind.json", 0, err, sizeof err), 0);
    assert_memory_equal(&def, &file, sizeof def);
}

int main(void)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_defaults_are_the_documented_ones),
        cmocka_unit_test(test_out_of_range_value_is_rejected_with_the_range),
        cmocka_unit_test(test_unknown_key_is_an_error_naming_it),
        cmocka_unit_test(test_precedence_flags_over_env_over_file),
        cmocka_unit_test(test_committed_config_file_equals_the_defaults),
    };
    return cmocka_run_group_tests(t, NULL, NULL);
}
