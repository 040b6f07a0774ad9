/* cli.c — the strict option parser shared by every tool (see cli.h). */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

int ast_cli_usage_error(const ast_cli *cli, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "%s: error: ", cli->prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s --help' for the options.\n", cli->prog);
    return AST_EXIT_USAGE;
}

int ast_cli_fail(const ast_cli *cli) {
    const char *m = ast_error_get();
    fprintf(stderr, "%s: error: %s\n", cli->prog, m[0] ? m : "failed (no detail recorded)");
    return AST_EXIT_FAIL;
}

int ast_cli_seen(const ast_cli *cli, const char *name) {
    for (int i = 0; i < cli->nargs; i++)
        if (strcmp(cli->args[i].name, name) == 0) return cli->args[i].seen;
    return 0;
}

static void print_help(const ast_cli *cli) {
    printf("%s — %s\n\nUsage: %s\n\nOptions:\n", cli->prog, cli->summary, cli->usage);
    for (int i = 0; i < cli->nargs; i++) {
        const ast_arg *a = &cli->args[i];
        char left[64];
        if (a->metavar)
            snprintf(left, sizeof left, "%s %s", a->name, a->metavar);
        else
            snprintf(left, sizeof left, "%s", a->name);
        printf("  %-26s %s\n", left, a->help);
    }
    printf("  %-26s %s\n  %-26s %s\n", "--help", "show this help and exit", "--version",
           "show the version and exit");
    if (cli->epilog) printf("\n%s\n", cli->epilog);
}

int ast_parse_speedup(const char *s, double *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno != 0 || !isfinite(v)) return -1;
    if (*end == 'x' || *end == 'X') end++;
    if (*end != 0) return -1;
    *out = v;
    return 0;
}

int ast_parse_devices(const char *flag, const char *text, int *out, int max, int *n,
                      const char *twice_hint, char *why, size_t len) {
    *n = 0;
    const char *p = text;
    for (;;) {
        char *end = NULL;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > 64 || (*end && *end != ',')) {
            snprintf(why, len, "%s expects CUDA device indices 0..64 separated by commas "
                               "(e.g. 0,1), got '%s'", flag, text);
            return -1;
        }
        for (int i = 0; i < *n; i++)
            if (out[i] == (int)v) {
                snprintf(why, len, "%s names device %ld twice ('%s')%s%s", flag, v, text,
                         twice_hint ? "; " : "", twice_hint ? twice_hint : "");
                return -1;
            }
        if (*n == max) {
            snprintf(why, len, "%s names more than %d devices", flag, max);
            return -1;
        }
        out[(*n)++] = (int)v;
        if (!*end) return 0;
        p = end + 1;
    }
}

static int parse_value(const ast_cli *cli, ast_arg *a, const char *val) {
    char *end = NULL;
    errno = 0;
    switch (a->type) {
    case AST_ARG_STRING:
        if (val[0] == 0) return ast_cli_usage_error(cli, "%s needs a non-empty value", a->name);
        *(const char **)a->dest = val;
        return 0;
    case AST_ARG_INT: {
        long v = strtol(val, &end, 10);
        if (end == val || *end != 0 || errno != 0 || v < -2147483647L || v > 2147483647L)
            return ast_cli_usage_error(cli, "%s expects a whole number, got '%s'", a->name, val);
        if (a->min < a->max && (v < a->min || v > a->max))
            return ast_cli_usage_error(cli, "%s must be between %.0f and %.0f, got %ld", a->name,
                                       a->min, a->max, v);
        *(int *)a->dest = (int)v;
        return 0;
    }
    case AST_ARG_DOUBLE: {
        double v = strtod(val, &end);
        if (end == val || *end != 0 || errno != 0 || !isfinite(v))
            return ast_cli_usage_error(cli, "%s expects a number, got '%s'", a->name, val);
        if (a->min < a->max && (v < a->min || v > a->max))
            return ast_cli_usage_error(cli, "%s must be between %g and %g, got %g", a->name,
                                       a->min, a->max, v);
        *(double *)a->dest = v;
        return 0;
    }
    case AST_ARG_SPEEDUP: {
        double v;
        if (ast_parse_speedup(val, &v) != 0)
            return ast_cli_usage_error(cli, "%s expects a speedup like '2x' or '1.5', got '%s'",
                                       a->name, val);
        double lo = a->min < a->max ? a->min : 1.0;
        if (v <= lo || (a->min < a->max && v > a->max))
            return ast_cli_usage_error(
                cli, "%s must be above %gx%s, got %gx (a speedup of %g would not be faster)",
                a->name, lo, "", v, v);
        *(double *)a->dest = v;
        return 0;
    }
    case AST_ARG_FLAG:
        break;
    }
    return ast_cli_usage_error(cli, "internal: option %s has no value type", a->name);
}

int ast_cli_parse(ast_cli *cli, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            print_help(cli);
            return 1;
        }
        if (strcmp(arg, "--version") == 0) {
            printf("%s %s\n", cli->prog, AST_VERSION_STRING);
            return 1;
        }
        if (strncmp(arg, "--", 2) != 0 || arg[2] == 0)
            return ast_cli_usage_error(cli, "unexpected argument '%s' (every input is a named "
                                            "option such as --out FILE)",
                                       arg);
        const char *eq = strchr(arg, '=');
        size_t namelen = eq ? (size_t)(eq - arg) : strlen(arg);
        ast_arg *a = NULL;
        for (int k = 0; k < cli->nargs; k++) {
            if (strlen(cli->args[k].name) == namelen &&
                strncmp(cli->args[k].name, arg, namelen) == 0) {
                a = &cli->args[k];
                break;
            }
        }
        if (!a) return ast_cli_usage_error(cli, "unknown option '%.*s'", (int)namelen, arg);
        a->seen++;
        if (a->type == AST_ARG_FLAG) {
            if (eq) return ast_cli_usage_error(cli, "%s takes no value", a->name);
            *(bool *)a->dest = true;
            continue;
        }
        const char *val;
        if (eq) {
            val = eq + 1;
        } else {
            if (i + 1 >= argc)
                return ast_cli_usage_error(cli, "%s needs a value (%s)", a->name,
                                           a->metavar ? a->metavar : "VALUE");
            val = argv[++i];
        }
        int rc = parse_value(cli, a, val);
        if (rc) return rc;
    }
    return 0;
}
