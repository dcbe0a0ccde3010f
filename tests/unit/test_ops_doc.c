/* The op listing (`explaind ops`, docs/OPS.md) cannot drift from the engine:
 *   - the committed docs/OPS.md equals what `explaind ops --markdown` prints (`make docs-ops` rewrites it);
 *   - every op-table row is listed once, with a doc line and a non-empty opset range;
 *   - every op the fold pass evaluates by name (an op-name string in engine/fold.c) is one it declares
 *     (fold_can_eval), so the loader's pre-scan and the listing know it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli.h"
#include "graph.h"

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[n] = 0;
    *len = (size_t)n;
    return b;
}

static void test_committed_ops_md_equals_the_listing(void **st)
{
    (void)st;
    char *want = NULL;
    size_t want_len = 0;
    FILE *m = open_memstream(&want, &want_len);
    assert_non_null(m);
    assert_int_equal(cli_ops_print(m, CLI_OPS_MARKDOWN), 0);
    fclose(m);
    size_t have_len;
    char *have = read_all("../../docs/OPS.md", &have_len);
    assert_non_null(have);
    if (have_len != want_len || memcmp(have, want, want_len)) {
        size_t i = 0, line = 1;
        while (i < have_len && i < want_len && have[i] == want[i]) line += have[i++] == '\n';
        fail_msg("docs/OPS.md differs from `explaind ops --markdown` at line %zu: run `make docs-ops`", line);
    }
    free(have);
    free(want);
}

static void test_every_table_row_is_listed_once_with_a_doc_line(void **st)
{
    (void)st;
    int n = eng_op_count(), table = 0;
    assert_true(n > 20);
    for (int i = 0; i < n; i++) {
        eng_op_info_t a;
        eng_op_info(i, &a);
        assert_non_null(a.name);
        assert_non_null(a.doc);
        assert_true(a.opset_min >= ENG_OPSET_MIN && a.opset_max <= ENG_OPSET_MAX && a.opset_min <= a.opset_max);
        if (a.kind == ENG_OP_TABLE) {
            table++;
            assert_true(strlen(a.doc) > 0);
            const op_def_t *d = op_find(a.name);
            assert_non_null(d);
            assert_int_equal(a.backward, d->backward != NULL);
        } else {
            assert_null(op_find(a.name)); /* load-time only: no table row */
            assert_int_equal(a.kind, fold_can_eval(a.name) == FOLD_ALWAYS ? ENG_OP_LOAD_ALWAYS : ENG_OP_LOAD_CONST);
        }
        for (int k = 0; k < i; k++) {
            eng_op_info_t b;
            eng_op_info(k, &b);
            if (!strcmp(a.name, b.name)) fail_msg("%s is listed twice", a.name);
        }
    }
    assert_true(table > 20);
}

/* Every op name the fold pass compares with (a capitalized one-word string literal in engine/fold.c before
 * the BatchNormalization folding, which names Conv and BatchNormalization for another purpose). */
static void test_every_op_the_fold_pass_names_is_declared(void **st)
{
    (void)st;
    size_t len;
    char *src = read_all("../../engine/fold.c", &len);
    assert_non_null(src);
    char *end = strstr(src, "int graph_fold_batchnorm(");
    assert_non_null(end);
    *end = 0;
    int seen = 0;
    for (char *p = src; (p = strchr(p, '"')); ) {
        char *q = strchr(p + 1, '"');
        if (!q) break;
        int word = q - p - 1 > 0 && p[1] >= 'A' && p[1] <= 'Z';
        for (char *c = p + 1; c < q && word; c++) word = (*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z');
        if (word) {
            char op[64];
            snprintf(op, sizeof op, "%.*s", (int)(q - p - 1), p + 1);
            if (!fold_can_eval(op))
                fail_msg("engine/fold.c evaluates '%s' but its fold_ops table does not list it", op);
            seen++;
        }
        p = q + 1;
    }
    assert_true(seen > 20);
    assert_int_equal(fold_can_eval("Constant"), FOLD_ALWAYS);
    assert_int_equal(fold_can_eval("Shape"), FOLD_ALWAYS);
    assert_int_equal(fold_can_eval("Range"), FOLD_CONST);
    assert_int_equal(fold_can_eval("Conv"), 0);
    free(src);
}

int main(void)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_committed_ops_md_equals_the_listing),
        cmocka_unit_test(test_every_table_row_is_listed_once_with_a_doc_line),
        cmocka_unit_test(test_every_op_the_fold_pass_names_is_declared),
    };
    return cmocka_run_group_tests(t, NULL, NULL);
}
