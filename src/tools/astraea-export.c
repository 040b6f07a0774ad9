/* astraea-export — entry point (options and behaviour arrive with their issue). */
#include "cli.h"
#include "common.h"

int main(int argc, char **argv) {
    ast_arg args[] = {{0}};
    ast_cli cli = {"astraea-export", "not available yet in this build", "astraea-export [options]", NULL,
                   args, 0};
    int rc = ast_cli_parse(&cli, argc, argv);
    if (rc == 1) return AST_EXIT_OK;
    if (rc) return AST_EXIT_USAGE;
    ast_error_set("astraea-export is not implemented in this build yet");
    return ast_cli_fail(&cli);
}
