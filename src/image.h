/* image.h — clip output for pixel-space models: animated GIF (giflib) and PNG frames (libpng). */
#ifndef AST_IMAGE_H
#define AST_IMAGE_H

#ifdef __cplusplus
extern "C" {
#endif

/* clip: [3, F, H, W] RGB in [-1, 1]. scale: nearest-neighbour upscale (1 = as is).
 * delay_cs: frame delay in 1/100 s. */
int ast_write_gif(const char *path, const float *clip, int F, int H, int W, int scale,
                  int delay_cs);
/* Writes path with "-NNN" before ".png" for each frame: clip.png -> clip-000.png, ... */
int ast_write_png_frames(const char *path, const float *clip, int F, int H, int W, int scale);

#ifdef __cplusplus
}
#endif

#endif
