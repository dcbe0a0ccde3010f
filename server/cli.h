/* cli.h — the subcommands of the explaind binary (main.c dispatches). Each returns the exit code:
 * 0 success, 1 a request error (the document's status), 2 usage or load errors, 3 internal. */
#ifndef EXPLAIND_CLI_H
#define EXPLAIND_CLI_H

#include <stddef.h>
#include <stdio.h>

#include "service.h"

/* The whole file, malloc'd (NULL if unreadable); *len its size. */
unsigned char *cli_read_file(const char *path, size_t *len);

/* One model and, when its sidecar names one, the label-randomized twin from the same folder: what
 * service_run needs (config defaults, one workspace per model, the overlay cache), for the CLI and
 * `explaind bench`. 0 or an exit code (messages on stderr). */
typedef struct {
    service_model_t models[2];
    ws_t *ws[2];
    ws_t *helper[2]; /* cli_env_parallel_steps: a second workspace for the first model */
    int n;
    sanity_cache_t *cache;
    service_env_t env;
    config_t cfg;
} cli_env_t;
int cli_env_load(cli_env_t *e, const char *path, int with_twin, const char *cmd);
void cli_env_free(cli_env_t *e);
/* Run the sanity randomization steps on two threads (as a server does when a worker is idle):
 * a second workspace for the model. 0, or 2 with a message on stderr. */
int cli_env_parallel_steps(cli_env_t *e, const char *cmd);

int cli_inspect(int argc, char **argv);
int cli_init(int argc, char **argv); /* cli_init.c: write a model's sidecar */
int cli_predict(int argc, char **argv);
int cli_explain(int argc, char **argv);
int cli_sanity(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_serve(int argc, char **argv);
int cli_healthcheck(int argc, char **argv);
int cli_ops(int argc, char **argv); /* cli_ops.c */
int cli_methods(int argc, char **argv); /* cli_methods.c: the method table */
int cli_params(int argc, char **argv);  /* cli_methods.c: the request parameter table */
int cli_routes(int argc, char **argv);  /* cli_methods.c: the route table */
/* The op listing in one of its forms (docs/OPS.md is the markdown form); 0, or 3 out of memory. */
enum { CLI_OPS_TEXT, CLI_OPS_JSON, CLI_OPS_MARKDOWN };
int cli_ops_print(FILE *f, int form);

#endif
