/* cli.h — one strict command-line parser for every astraea-* tool.
 *
 * Each tool declares a table of options; the parser handles "--name value" and "--name=value",
 * --help (prints the table, exit 0), --version, and refuses unknown flags, missing values, bad
 * numbers and out-of-range numbers with a message naming the flag (exit 2). */
#ifndef AST_CLI_H
#define AST_CLI_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    AST_ARG_FLAG,    /* bool*: present -> true */
    AST_ARG_STRING,  /* const char**: points into argv */
    AST_ARG_INT,     /* int*: decimal, range [min,max] when min < max */
    AST_ARG_DOUBLE,  /* double*: finite, range [min,max] when min < max */
    AST_ARG_SPEEDUP, /* double*: "2", "2x", "2.5X" -> 2.5; must be > 1 unless min says less */
} ast_arg_type;

typedef struct {
    const char *name;    /* "--steps" */
    ast_arg_type type;
    void *dest;
    const char *metavar; /* "N"; NULL for flags */
    const char *help;    /* one line; the default is appended by the tool in the text */
    double min, max;     /* numeric range, checked when min < max */
    int seen;            /* set by the parser: how many times given */
} ast_arg;

typedef struct {
    const char *prog;     /* "astraea-generate" */
    const char *summary;  /* one line: what the tool does */
    const char *usage;    /* "astraea-generate [options] --prompt TEXT --out FILE" */
    const char *epilog;   /* examples and notes, printed after the options; may be NULL */
    ast_arg *args;
    int nargs;
} ast_cli;

/* Returns 0: parsed, continue; 1: --help/--version printed, exit 0; 2: usage error printed to
 * stderr, exit 2. Positional arguments are refused (every input is a named flag). */
int ast_cli_parse(ast_cli *cli, int argc, char **argv);

/* Prints "PROG: error: <msg>\nTry 'PROG --help'.\n" and returns AST_EXIT_USAGE. */
int ast_cli_usage_error(const ast_cli *cli, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* How many times option `name` was given (0 when absent or not an option of this tool). */
int ast_cli_seen(const ast_cli *cli, const char *name);

/* Prints "PROG: error: <ast_error_get()>" and returns AST_EXIT_FAIL. */
int ast_cli_fail(const ast_cli *cli);

/* "0,1,3" -> out[0..*n) (CUDA device indices 0..64, each once, at most max); 0, or -1 with the
 * message in why ("FLAG expects ...", "FLAG names device 1 twice ...; <twice_hint>"). */
int ast_parse_devices(const char *flag, const char *text, int *out, int max, int *n,
                      const char *twice_hint, char *why, size_t len);

/* Parses "2x"/"2.5"/"2.5X" into *out; 0 on success. */
int ast_parse_speedup(const char *s, double *out);

#endif
