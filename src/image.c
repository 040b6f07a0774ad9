/* image.c — writes pixel-space clips (wan-mini: RGB in [-1, 1]) as an animated GIF (giflib) or
 * PNG frames (libpng): well-kept Debian libraries rather than hand-written encoders. Output is
 * atomic: nothing that looks complete is left behind on error. */
#include "image.h"

#include <errno.h>
#include <gif_lib.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

static unsigned char to_u8(float v) {
    float s = (v + 1.0f) * 127.5f;
    if (!(s > 0)) return 0; /* also NaN */
    if (s > 255) return 255;
    return (unsigned char)(s + 0.5f);
}

/* Frame f of a [3, F, H, W] clip as three scaled planes (nearest neighbour). */
static void frame_planes(const float *clip, int F, int H, int W, int f, int scale,
                         unsigned char *r, unsigned char *g, unsigned char *b) {
    int SW = W * scale, SH = H * scale;
    unsigned char *planes[3] = {r, g, b};
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < SH; y++)
            for (int x = 0; x < SW; x++)
                planes[c][(size_t)y * SW + x] =
                    to_u8(clip[(((size_t)c * F + f) * H + y / scale) * W + x / scale]);
}

int ast_write_gif(const char *path, const float *clip, int F, int H, int W, int scale,
                  int delay_cs) {
    int SW = W * scale, SH = H * scale, err = 0;
    size_t npix = (size_t)SW * SH;
    unsigned char *r = ast_malloc(npix * 4, "GIF frame"), *g = r ? r + npix : NULL,
                  *b = r ? r + 2 * npix : NULL, *idx = r ? r + 3 * npix : NULL;
    if (!r) return -1;
    /* the usual output file (mode 0666 & ~umask, temp name, fsync, rename); giflib writes to a
     * duplicate of its descriptor and closes only that */
    ast_outfile o;
    if (ast_outfile_open(&o, path) != 0) {
        free(r);
        return -1;
    }
    int fd = dup(fileno(o.f));
    GifFileType *gif = fd >= 0 ? EGifOpenFileHandle(fd, &err) : NULL;
    if (!gif) {
        if (fd >= 0) close(fd);
        ast_error_set("cannot write '%s': %s", path,
                      fd < 0 ? strerror(errno) : GifErrorString(err));
        goto fail;
    }
    EGifSetGifVersion(gif, true);
    if (EGifPutScreenDesc(gif, SW, SH, 8, 0, NULL) == GIF_ERROR) goto gif_fail;
    /* loop forever: NETSCAPE2.0 application extension */
    unsigned char nsle[3] = {1, 0, 0};
    if (EGifPutExtensionLeader(gif, APPLICATION_EXT_FUNC_CODE) == GIF_ERROR ||
        EGifPutExtensionBlock(gif, 11, "NETSCAPE2.0") == GIF_ERROR ||
        EGifPutExtensionBlock(gif, 3, nsle) == GIF_ERROR ||
        EGifPutExtensionTrailer(gif) == GIF_ERROR)
        goto gif_fail;
    for (int f = 0; f < F; f++) {
        frame_planes(clip, F, H, W, f, scale, r, g, b);
        GifColorType pal[256];
        int ncolors = 256;
        if (GifQuantizeBuffer((unsigned)SW, (unsigned)SH, &ncolors, r, g, b, idx, pal) ==
            GIF_ERROR) {
            ast_error_set("cannot write '%s': colour quantization failed on frame %d", path, f);
            goto fail_close;
        }
        ColorMapObject *cmap = GifMakeMapObject(256, pal);
        if (!cmap) {
            ast_error_set("cannot write '%s': out of memory for the colour map", path);
            goto fail_close;
        }
        GraphicsControlBlock gcb = {DISPOSE_DO_NOT, false, delay_cs, NO_TRANSPARENT_COLOR};
        GifByteType ext[4];
        EGifGCBToExtension(&gcb, ext);
        int bad = EGifPutExtension(gif, GRAPHICS_EXT_FUNC_CODE, 4, ext) == GIF_ERROR ||
                  EGifPutImageDesc(gif, 0, 0, SW, SH, false, cmap) == GIF_ERROR;
        for (int y = 0; !bad && y < SH; y++)
            bad = EGifPutLine(gif, idx + (size_t)y * SW, SW) == GIF_ERROR;
        GifFreeMapObject(cmap);
        if (bad) goto gif_fail;
    }
    if (EGifCloseFile(gif, &err) == GIF_ERROR) {
        ast_error_set("cannot write '%s': %s (is the disk full?)", path, GifErrorString(err));
        goto fail;
    }
    free(r);
    return ast_outfile_commit(&o); /* fsync through o's descriptor, close, rename */
gif_fail:
    ast_error_set("cannot write '%s': %s (is the disk full?)", path, GifErrorString(gif->Error));
fail_close:
    EGifCloseFile(gif, &err);
fail:
    ast_outfile_abort(&o);
    free(r);
    return -1;
}

/* Writes one PNG into the temp file of o and finishes it (flushed, synced, closed, not yet in
 * place); on failure o's temp file is removed. */
static int write_png(ast_outfile *o, const unsigned char *rgb, int W, int H) {
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, &info);
        ast_error_set("cannot write '%s': libpng could not start", o->path);
        ast_outfile_abort(o);
        return -1;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        ast_error_set("cannot write '%s': libpng failed (is the disk full?)", o->path);
        ast_outfile_abort(o);
        return -1;
    }
    png_init_io(png, o->f);
    png_set_IHDR(png, info, (png_uint_32)W, (png_uint_32)H, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < H; y++) png_write_row(png, (png_const_bytep)(rgb + (size_t)y * W * 3));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return ast_outfile_finish(o);
}

/* The frames appear together: every frame is written and synced to its temp file first, and
 * only then are they all renamed into place, so a full disk leaves no frame behind (and keeps
 * the frames of an earlier run at the same path as they were). */
int ast_write_png_frames(const char *path, const float *clip, int F, int H, int W, int scale) {
    int SW = W * scale, SH = H * scale;
    size_t npix = (size_t)SW * SH;
    unsigned char *planes = ast_malloc(npix * 6, "PNG frame");
    ast_outfile *o = ast_calloc((size_t)F + 1, sizeof *o, "PNG frame files");
    if (!planes || !o) {
        free(planes);
        free(o);
        return -1;
    }
    unsigned char *rgb = planes + 3 * npix;
    /* "clip.png" -> "clip-000.png", "clip-001.png", ... */
    size_t len = strlen(path);
    const char *ext = (len > 4 && strcmp(path + len - 4, ".png") == 0) ? path + len - 4 : path + len;
    int rc = 0, done = 0;
    for (int f = 0; f < F && rc == 0; f++) {
        frame_planes(clip, F, H, W, f, scale, planes, planes + npix, planes + 2 * npix);
        for (size_t i = 0; i < npix; i++)
            for (int c = 0; c < 3; c++) rgb[i * 3 + c] = planes[c * npix + i];
        char name[4096];
        snprintf(name, sizeof name, "%.*s-%03d.png", (int)(ext - path), path, f);
        rc = ast_outfile_open(&o[f], name);
        if (rc == 0) rc = write_png(&o[f], rgb, SW, SH);
        if (rc == 0) done = f + 1;
    }
    for (int f = 0; f < done; f++) {
        if (rc == 0)
            rc = ast_outfile_rename(&o[f]);
        else
            ast_outfile_abort(&o[f]);
    }
    free(o);
    free(planes);
    return rc;
}
