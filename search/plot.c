/* plot.c — writes the data and a gnuplot script into a private temporary folder, runs
 * `gnuplot script.gp` (posix_spawnp, stderr captured), and moves the PNG into place. */
#include "plot.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* gnuplot single-quoted string: a quote is written twice. */
static void put_quoted(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        fputc(*s, f);
    }
    fputc('\'', f);
}

static int write_file(const char *path, const char *what, FILE **f) {
    *f = fopen(path, "w");
    if (!*f) return ast_fail("plot: cannot create %s '%s': %s", what, path, strerror(errno));
    return 0;
}

static int close_file(FILE *f, const char *path) {
    if (ferror(f) | (fclose(f) != 0))
        return ast_fail("plot: cannot write '%s' (is the disk full?)", path);
    return 0;
}

int ast_plot_front(const char *png_path, const char *title, const ast_cand *front, int n,
                   const ast_cand *chosen, const float *budgets, int steps) {
    const char *tmp = getenv("TMPDIR");
    char dir[512], front_dat[600], chosen_dat[600], curve_dat[600], script[600], err_log[600],
        png_tmp[1100];
    snprintf(dir, sizeof dir, "%s/astraea-plot-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(dir)) return ast_fail("plot: cannot make a temporary folder: %s", strerror(errno));
    snprintf(front_dat, sizeof front_dat, "%s/front.dat", dir);
    snprintf(chosen_dat, sizeof chosen_dat, "%s/chosen.dat", dir);
    snprintf(curve_dat, sizeof curve_dat, "%s/curve.dat", dir);
    snprintf(script, sizeof script, "%s/plot.gp", dir);
    snprintf(err_log, sizeof err_log, "%s/gnuplot.err", dir);
    snprintf(png_tmp, sizeof png_tmp, "%s.tmp-%ld.png", png_path, (long)getpid());
    int rc = -1;
    FILE *f = NULL;

    /* data: PSNR of identical outputs is +inf; such points are drawn at the top of the axis */
    if (write_file(front_dat, "plot data", &f) != 0) goto out;
    for (int i = 0; i < n; i++)
        if (isfinite(front[i].psnr))
            fprintf(f, "%.6g %.6g %.6g\n", front[i].predicted_speedup, front[i].psnr, front[i].mse);
    if (close_file(f, front_dat) != 0) goto out;
    if (write_file(chosen_dat, "plot data", &f) != 0) goto out;
    if (chosen && isfinite(chosen->psnr))
        fprintf(f, "%.6g %.6g\n", chosen->predicted_speedup, chosen->psnr);
    if (close_file(f, chosen_dat) != 0) goto out;
    if (write_file(curve_dat, "plot data", &f) != 0) goto out;
    for (int t = 0; t < steps; t++) fprintf(f, "%d %.6g\n", t, (double)budgets[t]);
    fprintf(f, "%d %.6g\n", steps, (double)budgets[steps - 1]); /* close the last step */
    if (close_file(f, curve_dat) != 0) goto out;

    if (write_file(script, "gnuplot script", &f) != 0) goto out;
    fprintf(f, "set terminal png size 1200,480\nset output ");
    put_quoted(f, png_tmp);
    fprintf(f, "\nset multiplot layout 1,2 title ");
    put_quoted(f, title);
    fprintf(f, "\nset grid\nset key bottom left\n"
               "set title 'Pareto front: quality vs predicted speedup'\n"
               "set xlabel 'predicted speedup (x)'\nset ylabel 'PSNR vs dense (dB)'\n"
               "plot ");
    put_quoted(f, front_dat);
    fprintf(f, " using 1:2 with linespoints pt 7 title 'front', ");
    put_quoted(f, chosen_dat);
    fprintf(f, " using 1:2 with points pt 6 ps 3 lw 2 title 'exported'\n"
               "set title 'budget per denoising step (exported profile)'\n"
               "set xlabel 'step'\nset ylabel 'token budget {/Symbol q}'\nset yrange [0:1.05]\n"
               "set key off\nplot ");
    put_quoted(f, curve_dat);
    fprintf(f, " using 1:2 with steps lw 2\nunset multiplot\nset output\n");
    if (close_file(f, script) != 0) goto out;

    posix_spawn_file_actions_t fa;
    if (posix_spawn_file_actions_init(&fa) != 0) {
        ast_error_set("plot: cannot prepare to run gnuplot");
        goto out;
    }
    posix_spawn_file_actions_addopen(&fa, 2, err_log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    char *argv[] = {"gnuplot", script, NULL};
    pid_t pid;
    int e = posix_spawnp(&pid, "gnuplot", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (e != 0) {
        ast_error_set(e == ENOENT ? "gnuplot is not installed (it draws --plot: install the "
                                    "gnuplot-nox package, as setup.sh does, or leave out --plot)"
                                  : "cannot run gnuplot: %s",
                      strerror(e));
        goto out;
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            ast_error_set("plot: waiting for gnuplot failed: %s", strerror(errno));
            goto out;
        }
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || access(png_tmp, F_OK) != 0) {
        char msg[600] = "";
        FILE *ef = fopen(err_log, "r");
        if (ef) {
            size_t k = fread(msg, 1, sizeof msg - 1, ef);
            msg[k] = 0;
            fclose(ef);
        }
        ast_error_set("gnuplot failed drawing '%s' (status %d): %s", png_path,
                      WIFEXITED(status) ? WEXITSTATUS(status) : -1, msg[0] ? msg : "no message");
        unlink(png_tmp);
        goto out;
    }
    if (rename(png_tmp, png_path) != 0) {
        ast_error_set("cannot move the plot into place as '%s': %s", png_path, strerror(errno));
        unlink(png_tmp);
        goto out;
    }
    rc = 0;
out:
    unlink(front_dat);
    unlink(chosen_dat);
    unlink(curve_dat);
    unlink(script);
    unlink(err_log);
    rmdir(dir);
    return rc;
}
