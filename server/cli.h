/* cli.h — the subcommands of the explaind binary (main.c dispatches). Each returns the exit code:
 * 0 success, 1 a request error (the document's status), 2 usage or load errors, 3 internal. */
#ifndef EXPLAIND_CLI_H
#define EXPLAIND_CLI_H

int cli_inspect(int argc, char **argv);
int cli_predict(int argc, char **argv);
int cli_explain(int argc, char **argv);
int cli_sanity(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_serve(int argc, char **argv);
int cli_healthcheck(int argc, char **argv);

#endif
