/* image.c — writes pixel-space clips (wan-mini: RGB in [-1, 1]) as an animated GIF (giflib) or
 * PNG frames (libpng): well-kept Debian libraries rather than hand-written encoders. Output is
 * atomic: nothing that looks complete is left behind on error. */
#include "image.h"

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
    int SW = W * scale, SH = H * scale, err = 0, rc = -1;
    size_t npix = (size_t)SW * SH;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid());
    unsigned char *r = ast_malloc(npix * 4, "GIF frame"), *g = r ? r + npix : NULL,
                  *b = r ? r + 2 * npix : NULL, *idx = r ? r + 3 * npix : NULL;
    GifFileType *gif = NULL;
    if (!r) return -1;
    gif = EGifOpenFileName(tmp, false, &err);
    if (!gif) {
        ast_error_set("cannot create '%s': %s (check the folder exists and is writable)", path,
                      GifErrorString(err));
        goto done;
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
        gif = NULL;
        ast_error_set("cannot write '%s': %s (is the disk full?)", path, GifErrorString(err));
        goto done;
    }
    gif = NULL;
    if (rename(tmp, path) != 0) {
        ast_error_set("cannot move the GIF into place at '%s'", path);
        goto done;
    }
    rc = 0;
    goto done;
gif_fail:
    ast_error_set("cannot write '%s': %s (is the disk full?)", path, GifErrorString(gif->Error));
fail_close:
    EGifCloseFile(gif, &err);
    gif = NULL;
done:
    if (rc != 0) unlink(tmp);
    free(r);
    return rc;
}

static int write_png(const char *path, const unsigned char *rgb, int W, int H) {
    ast_outfile o;
    if (ast_outfile_open(&o, path)) return -1;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, &info);
        ast_outfile_abort(&o);
        return ast_fail("cannot write '%s': libpng could not start", path);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        ast_outfile_abort(&o);
        return ast_fail("cannot write '%s': libpng failed (is the disk full?)", path);
    }
    png_init_io(png, o.f);
    png_set_IHDR(png, info, (png_uint_32)W, (png_uint_32)H, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < H; y++) png_write_row(png, (png_const_bytep)(rgb + (size_t)y * W * 3));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return ast_outfile_commit(&o);
}

int ast_write_png_frames(const char *path, const float *clip, int F, int H, int W, int scale) {
    int SW = W * scale, SH = H * scale;
    size_t npix = (size_t)SW * SH;
    unsigned char *planes = ast_malloc(npix * 6, "PNG frame");
    if (!planes) return -1;
    unsigned char *rgb = planes + 3 * npix;
    /* "clip.png" -> "clip-000.png", "clip-001.png", ... */
    size_t len = strlen(path);
    const char *ext = (len > 4 && strcmp(path + len - 4, ".png") == 0) ? path + len - 4 : path + len;
    int rc = 0;
    for (int f = 0; f < F && rc == 0; f++) {
        frame_planes(clip, F, H, W, f, scale, planes, planes + npix, planes + 2 * npix);
        for (size_t i = 0; i < npix; i++)
            for (int c = 0; c < 3; c++) rgb[i * 3 + c] = planes[c * npix + i];
        char name[4096];
        snprintf(name, sizeof name, "%.*s-%03d.png", (int)(ext - path), path, f);
        rc = write_png(name, rgb, SW, SH);
    }
    free(planes);
    return rc;
}
