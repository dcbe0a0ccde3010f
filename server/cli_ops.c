/* cli_ops.c — `explaind ops`: what the engine runs, read from the engine's op listing (engine.h:
 * eng_op_count / eng_op_info), never from a copy. Three forms of the same list:
 *   explaind ops             a text table
 *   explaind ops --json      for machines (tests/onnx_backend selects its cases from it)
 *   explaind ops --markdown  docs/OPS.md (`make docs-ops` writes it; `make test` fails when it differs)
 * Ops are sorted by name, so the output does not depend on the order of the table's rows. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "engine.h"

static int by_name(const void *a, const void *b)
{
    const eng_op_info_t *x = a, *y = b;
    if (x->kind != y->kind) return x->kind - y->kind; /* table rows, then at load always, then on constants */
    return strcmp(x->name, y->name);
}

static const char *when_str(int kind)
{
    if (kind == ENG_OP_TABLE) return "per image";
    return kind == ENG_OP_LOAD_ALWAYS ? "at load" : "at load, constant inputs only";
}

static void print_text(FILE *f, const eng_op_info_t *ops, int n)
{
    fprintf(f, "Ops on activations (ONNX opsets %d..%d are accepted; ai.onnx domain only):\n", ENG_OPSET_MIN,
            ENG_OPSET_MAX);
    fprintf(f, "%-22s %-8s %-9s %-6s %s\n", "op", "opsets", "backward", "unary", "what runs");
    for (int i = 0; i < n; i++) {
        const eng_op_info_t *o = &ops[i];
        if (o->kind != ENG_OP_TABLE) continue;
        char range[16];
        snprintf(range, sizeof range, "%d-%d", o->opset_min, o->opset_max);
        fprintf(f, "%-22s %-8s %-9s %-6s %s\n", o->name, range, o->backward ? "yes" : "no", o->unary ? "yes" : "no",
                o->doc);
    }
    fprintf(f, "\nLoad-time only (evaluated or removed when the model loads; never run per image):\n");
    fprintf(f, "%-22s %-30s %s\n", "op", "when", "what");
    for (int i = 0; i < n; i++) {
        const eng_op_info_t *o = &ops[i];
        if (o->kind == ENG_OP_TABLE) continue;
        fprintf(f, "%-22s %-30s %s\n", o->name, when_str(o->kind), o->doc);
    }
}

static void print_json(FILE *f, const eng_op_info_t *ops, int n)
{
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) {
        const eng_op_info_t *o = &ops[i];
        const char *kind = o->kind == ENG_OP_TABLE ? "table" : o->kind == ENG_OP_LOAD_ALWAYS ? "load" : "load_const";
        json_array_append_new(arr, json_pack("{s:s, s:[i, i], s:s, s:b, s:b, s:s}", "name", o->name, "opsets",
                                             o->opset_min, o->opset_max, "kind", kind, "backward", o->backward, "unary",
                                             o->unary, "doc", o->doc));
    }
    json_t *doc = json_pack("{s:[i, i], s:o}", "opsets", ENG_OPSET_MIN, ENG_OPSET_MAX, "ops", arr);
    char *s = json_dumps(doc, JSON_INDENT(2));
    fputs(s, f);
    fputc('\n', f);
    free(s);
    json_decref(doc);
}

/* table cells: '|' would end the cell */
static void md_cell(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '|') fputs("\\|", f);
        else fputc(*s, f);
    }
}

static void print_markdown(FILE *f, const eng_op_info_t *ops, int n)
{
    fprintf(f, "# Ops\n\n"
           "What the engine runs. Generated from the engine's op table by `explaind ops --markdown` (`make docs-ops`\n"
           "writes this file; `make test` fails when it differs from what the binary prints). `explaind ops --json`\n"
           "gives the same list to programs; `make onnx-backend` runs the ONNX project's own backend test cases\n"
           "of these ops through the engine (tests/onnx_backend/).\n\n"
           "The loader accepts ONNX opsets %d to %d, ai.onnx domain only. A model that uses anything else is refused\n"
           "at load with one error naming every unsupported node, grouped by op type.\n\n"
           "Every activation keeps the batch as its first dimension: an op that would mix the images of a batch (a\n"
           "Flatten at axis 0, a reduction, concatenation or softmax over axis 0, a reshape that moves the batch ...)\n"
           "is refused at load with a message that says so, never run wrongly.\n\n",
           ENG_OPSET_MIN, ENG_OPSET_MAX);
    fprintf(f, "## On activations\n\n"
           "Run per image, forward and (where *backward* says yes) the data backward that explanation methods use.\n"
           "*Unary* ops are element-wise: methods such as guided backprop may replace their backward rule.\n\n"
           "| op | opsets | backward | unary | what runs |\n|---|---|---|---|---|\n");
    for (int i = 0; i < n; i++) {
        const eng_op_info_t *o = &ops[i];
        if (o->kind != ENG_OP_TABLE) continue;
        fprintf(f, "| %s | %d–%d | %s | %s | ", o->name, o->opset_min, o->opset_max, o->backward ? "yes" : "no",
               o->unary ? "yes" : "no");
        md_cell(f, o->doc);
        fprintf(f, " |\n");
    }
    fprintf(f, "\n## At load only\n\n"
           "Evaluated (or removed) while the model loads, so they never run per image: the shape arithmetic that\n"
           "exporters write around Reshape and Flatten becomes constants. Ops marked *constant inputs only* are\n"
           "evaluated when every input is a constant (an initializer or an earlier folded value); on an\n"
           "activation they are unsupported unless the table above has them.\n\n"
           "| op | when | what |\n|---|---|---|\n");
    for (int i = 0; i < n; i++) {
        const eng_op_info_t *o = &ops[i];
        if (o->kind == ENG_OP_TABLE) continue;
        fprintf(f, "| %s | %s | ", o->name, o->kind == ENG_OP_LOAD_ALWAYS ? "always" : "constant inputs only");
        md_cell(f, o->doc);
        fprintf(f, " |\n");
    }
}

int cli_ops(int argc, char **argv)
{
    int form = CLI_OPS_TEXT;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: explaind ops [--json | --markdown]\n"
                   "Every op the engine runs: the op table (opset range, backward, unary, what runs) and the ops\n"
                   "evaluated or removed at load. --markdown prints docs/OPS.md.\n");
            return 0;
        }
        if (!strcmp(argv[i], "--json")) form = CLI_OPS_JSON;
        else if (!strcmp(argv[i], "--markdown")) form = CLI_OPS_MARKDOWN;
        else {
            fprintf(stderr, "explaind ops: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    return cli_ops_print(stdout, form);
}

int cli_ops_print(FILE *f, int form)
{
    int n = eng_op_count();
    eng_op_info_t *ops = calloc((size_t)n + 1, sizeof *ops);
    if (!ops) {
        fprintf(stderr, "explaind ops: out of memory\n");
        return 3;
    }
    for (int i = 0; i < n; i++) eng_op_info(i, &ops[i]);
    qsort(ops, (size_t)n, sizeof *ops, by_name);
    if (form == CLI_OPS_JSON) print_json(f, ops, n);
    else if (form == CLI_OPS_MARKDOWN) print_markdown(f, ops, n);
    else print_text(f, ops, n);
    free(ops);
    return 0;
}
