/* test_cli.c — the strict option parser: values, ranges, unknown flags, missing values. */
#include <stdbool.h>

#include "cli.h"
#include "test_util.h"

static int parse(int argc, char **argv, int *steps, double *spd, const char **out, bool *flag) {
    ast_arg args[] = {
        {"--steps", AST_ARG_INT, steps, "N", "steps", 1, 1000, 0},
        {"--target-speedup", AST_ARG_SPEEDUP, spd, "X", "speedup", 0, 0, 0},
        {"--out", AST_ARG_STRING, out, "FILE", "output", 0, 0, 0},
        {"--dry-run", AST_ARG_FLAG, flag, NULL, "dry", 0, 0, 0},
    };
    ast_cli cli = {"t", "test", "t [options]", NULL, args, 4};
    return ast_cli_parse(&cli, argc, argv);
}

int main(void) {
    int steps = 0;
    double spd = 0;
    const char *out = NULL;
    bool flag = false;
    char *ok[] = {"t", "--steps", "20", "--target-speedup=2x", "--out", "a.gif", "--dry-run"};
    CHECK(parse(7, ok, &steps, &spd, &out, &flag) == 0, "valid line parses");
    CHECK(steps == 20 && spd == 2.0 && out && strcmp(out, "a.gif") == 0 && flag, "values");
    char *unknown[] = {"t", "--stepz", "3"};
    CHECK(parse(3, unknown, &steps, &spd, &out, &flag) == 2, "unknown flag -> 2");
    char *missing[] = {"t", "--steps"};
    CHECK(parse(2, missing, &steps, &spd, &out, &flag) == 2, "missing value -> 2");
    char *badnum[] = {"t", "--steps", "3x"};
    CHECK(parse(3, badnum, &steps, &spd, &out, &flag) == 2, "bad number -> 2");
    char *range[] = {"t", "--steps", "0"};
    CHECK(parse(3, range, &steps, &spd, &out, &flag) == 2, "out of range -> 2");
    char *slow[] = {"t", "--target-speedup", "0.9x"};
    CHECK(parse(3, slow, &steps, &spd, &out, &flag) == 2, "speedup <= 1 -> 2");
    char *pos[] = {"t", "stray"};
    CHECK(parse(2, pos, &steps, &spd, &out, &flag) == 2, "positional -> 2");
    char *flagval[] = {"t", "--dry-run=1"};
    CHECK(parse(2, flagval, &steps, &spd, &out, &flag) == 2, "flag with value -> 2");
    double v;
    CHECK(ast_parse_speedup("2.5X", &v) == 0 && v == 2.5, "2.5X");
    CHECK(ast_parse_speedup("fast", &v) != 0, "'fast' is not a speedup");
    return ast_test_finish("cli");
}
