/* preprocess_dump — the engine's preprocessing of one upload, for the preprocessing conformance
 * tests (tests/conformance/test_preprocess.py compare it with torchvision/PIL).
 * usage: preprocess_dump MODEL.onnx IMAGE OUT.f32 [VIEW.raw]
 * Loads the model with its sidecar, decodes IMAGE as the server does (PNG alpha kept for rgba
 * models), preprocesses it and writes the tensor (C x H x W float32, little-endian) to OUT.f32;
 * with VIEW.raw also the model's view (model_view_image: H x W x 1|3 bytes). Prints "C H W" and
 * the view's channel count. Exit 0, or 2 with the engine's message on stderr. */
#include <stdio.h>
#include <stdlib.h>

#include "decode.h"
#include "engine.h"

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: preprocess_dump MODEL.onnx IMAGE OUT.f32 [VIEW.raw]\n");
        return 2;
    }
    eng_err_t err = {0};
    model_t *m;
    if (model_load_path(argv[1], NULL, NULL, &m, &err)) {
        fprintf(stderr, "model: %s\n", err.msg);
        return 2;
    }
    size_t len;
    unsigned char *bytes = slurp(argv[2], &len);
    image_t img;
    if (!bytes || image_decode_alpha(bytes, len, NULL, m->input.color == COLOR_RGBA, &img, NULL, &err)) {
        fprintf(stderr, "image: %s\n", bytes ? err.msg : "unreadable");
        return 2;
    }
    size_t n = model_input_size(m);
    float *x = malloc(sizeof(float) * n);
    if (!x || model_preprocess(m, &img, x, &err)) {
        fprintf(stderr, "preprocess: %s\n", err.msg);
        return 2;
    }
    FILE *f = fopen(argv[3], "wb");
    if (!f || fwrite(x, sizeof(float), n, f) != n || fclose(f)) {
        fprintf(stderr, "cannot write %s\n", argv[3]);
        return 2;
    }
    int view_channels = 0;
    if (argc > 4) {
        image_t v;
        if (model_view_image(m, &img, &v, &err)) {
            fprintf(stderr, "view: %s\n", err.msg);
            return 2;
        }
        FILE *g = fopen(argv[4], "wb");
        size_t vb = (size_t)v.width * v.height * v.channels;
        if (!g || fwrite(v.data, 1, vb, g) != vb || fclose(g)) {
            fprintf(stderr, "cannot write %s\n", argv[4]);
            return 2;
        }
        view_channels = v.channels;
        image_free(&v);
    }
    printf("%d %d %d %d\n", m->input.channels, m->input.height, m->input.width, view_channels);
    free(x);
    free(bytes);
    image_free(&img);
    model_free(m);
    return 0;
}
