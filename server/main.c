/* explaind — one binary, several subcommands. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static int usage(FILE *f)
{
    fprintf(f,
            "usage: explaind <command> [options]\n"
            "commands:\n"
            "  serve      run the HTTP service (the API: openapi.yaml; models and sidecars: docs/MODELS.md)\n"
            "  inspect    print a model's graph, parameters, FLOPs, CAM layer and preprocessing\n"
            "  init       write a model's sidecar (MODEL.json, docs/MODELS.md) from its graph and a preset\n"
            "  predict    class scores for an image (the predict JSON document)\n"
            "  explain    explanations for an image (the explain JSON document)\n"
            "  sanity     sanity checks of explanation methods over images (the sanity report)\n"
            "  bench      engine benchmark (forward, forward + input gradient)\n"
            "  healthcheck  GET /healthz of a running server; exit 0 on 200 (container health checks)\n"
            "  ops        the ONNX ops the engine runs, with their opsets (docs/OPS.md)\n"
            "  methods    the explanation methods: family, shared passes, parameters (the method table)\n"
            "  params     the request parameters: type, default, bounds, choices (--json)\n"
            "  routes     the HTTP routes: path, method, API key, parameters, images (--json)\n"
            "Run 'explaind <command> --help' for a command's options.\n");
    return f == stdout ? 0 : 2;
}

int main(int argc, char **argv)
{
    if (argc < 2) return usage(stderr);
    const char *c = argv[1];
    if (!strcmp(c, "--help") || !strcmp(c, "-h") || !strcmp(c, "help")) return usage(stdout);
    if (!strcmp(c, "serve")) return cli_serve(argc - 2, argv + 2);
    if (!strcmp(c, "inspect")) return cli_inspect(argc - 2, argv + 2);
    if (!strcmp(c, "init")) return cli_init(argc - 2, argv + 2);
    if (!strcmp(c, "predict")) return cli_predict(argc - 2, argv + 2);
    if (!strcmp(c, "explain")) return cli_explain(argc - 2, argv + 2);
    if (!strcmp(c, "sanity")) return cli_sanity(argc - 2, argv + 2);
    if (!strcmp(c, "bench")) return cli_bench(argc - 2, argv + 2);
    if (!strcmp(c, "healthcheck")) return cli_healthcheck(argc - 2, argv + 2);
    if (!strcmp(c, "ops")) return cli_ops(argc - 2, argv + 2);
    if (!strcmp(c, "methods")) return cli_methods(argc - 2, argv + 2);
    if (!strcmp(c, "params")) return cli_params(argc - 2, argv + 2);
    if (!strcmp(c, "routes")) return cli_routes(argc - 2, argv + 2);
    fprintf(stderr, "explaind: unknown command '%s'\n", c);
    return usage(stderr);
}
