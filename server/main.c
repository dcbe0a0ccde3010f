/* explaind — one binary, several subcommands (serve, inspect, predict, explain, bench, ...). */
#include <stdio.h>
#include <string.h>

static int usage(FILE *f)
{
    fprintf(f,
            "usage: explaind <command> [options]\n"
            "commands:\n"
            "  serve      run the HTTP service\n"
            "  inspect    print a model's graph, parameters, FLOPs and CAM layer\n"
            "  predict    class scores for an image (the predict JSON document)\n"
            "  explain    explanations for an image (the explain JSON document)\n"
            "  bench      engine benchmark\n"
            "Run 'explaind <command> --help' for a command's options.\n");
    return f == stdout ? 0 : 2;
}

int main(int argc, char **argv)
{
    if (argc < 2) return usage(stderr);
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) return usage(stdout);
    fprintf(stderr, "explaind: unknown command '%s'\n", argv[1]);
    return usage(stderr);
}
