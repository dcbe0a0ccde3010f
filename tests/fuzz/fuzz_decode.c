/* fuzz_decode — uploaded bytes through what every image upload goes through: image_sniff,
 * image_decode (libpng, libjpeg-turbo, our header limits and EXIF orientation), then
 * model_preprocess and model_view_image for the shipped fashion-cnn (resize, colour, normalize).
 *
 * The limits are the shipped logic with smaller numbers (1 Mpx, side 4096, 64 MiB of decoder
 * memory) so an execution stays in milliseconds; the code paths are the same at any size.
 * Checked on success: sane dimensions within the limits, 1 or 3 channels (4 for PNGs decoded for
 * an RGBA model), the sniffed format agrees, every pixel byte is readable (ASan sees an undersized
 * buffer), the tensor is finite. Bytes that start like a NumPy .npy file go through
 * tensor_decode_npy instead, as the server's tensor uploads do. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "decode.h"
#include "engine.h"
#include "fuzz_common.h"

static model_t *model;
static float *tensor;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    model = fuzz_load_fashion_cnn("fuzz_decode");
    tensor = malloc(model_input_size(model) * sizeof(float));
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (upload_is_npy(data, size)) return fuzz_npy(data, size);
    decode_limits_t lim = decode_limits_default();
    lim.max_pixels = 1 << 20;
    lim.max_side = 4096;
    lim.max_decoder_memory = 64u << 20;
    const char *fmt = NULL, *sniffed = NULL;
    int sst = image_sniff(data, size, &sniffed);
    image_t img;
    eng_err_t err = {0};
    int st = image_decode(data, size, &lim, &img, &fmt, &err);
    FUZZ_CHECK(st == ENG_OK || st == ENG_EFORMAT || st == ENG_EUNSUPPORTED || st == ENG_ETOOBIG || st == ENG_ENOMEM);
    FUZZ_CHECK(fmt != NULL && sniffed != NULL && !strcmp(fmt, sniffed));
    if (st != ENG_OK) {
        FUZZ_CHECK(img.data == NULL);
        FUZZ_CHECK(err.msg[0] != 0);
        return 0;
    }
    FUZZ_CHECK(sst == ENG_OK);
    FUZZ_CHECK(!strcmp(fmt, "png") || !strcmp(fmt, "jpeg"));
    FUZZ_CHECK(img.width > 0 && img.height > 0 && img.width <= lim.max_side && img.height <= lim.max_side);
    FUZZ_CHECK((int64_t)img.width * img.height <= lim.max_pixels);
    FUZZ_CHECK(img.channels == 1 || img.channels == 3);
    FUZZ_CHECK(img.data != NULL);
    size_t n = (size_t)img.width * img.height * img.channels;
    volatile uint8_t sink = img.data[0] ^ img.data[n - 1];
    (void)sink;

    if (model_preprocess(model, &img, tensor, &err) == ENG_OK) {
        for (size_t i = 0; i < model_input_size(model); i++) FUZZ_CHECK(isfinite(tensor[i]));
    }
    image_t view;
    if (model_view_image(model, &img, &view, &err) == ENG_OK) {
        FUZZ_CHECK(view.width == model->input.width && view.height == model->input.height);
        image_free(&view);
    }
    image_free(&img);
    /* the same bytes decoded for an RGBA model: every PNG comes out with 4 channels */
    if (image_decode_alpha(data, size, &lim, 1, &img, &fmt, &err) == ENG_OK) {
        FUZZ_CHECK(img.channels == (strcmp(fmt, "png") ? (img.channels == 1 ? 1 : 3) : 4));
        volatile uint8_t s2 = img.data[(size_t)img.width * img.height * img.channels - 1];
        (void)s2;
        image_free(&img);
    }
    return 0;
}

/* .npy tensor uploads (tensor_decode_npy) are fuzzed from the same bytes: a result is within the
 * element limit and its data is all readable */
int fuzz_npy(const uint8_t *data, size_t size);
int fuzz_npy(const uint8_t *data, size_t size)
{
    tensor_upload_t t;
    eng_err_t err = {0};
    int st = tensor_decode_npy(data, size, 4096, &t, &err);
    FUZZ_CHECK(st == ENG_OK || st == ENG_EFORMAT || st == ENG_EINVAL || st == ENG_ETOOBIG || st == ENG_ENOMEM);
    if (st == ENG_OK) {
        FUZZ_CHECK(t.count <= 4096 && t.rank >= 1 && t.rank <= 4);
        volatile float s = t.count ? t.data[t.count - 1] : 0;
        (void)s;
    } else {
        FUZZ_CHECK(t.data == NULL && err.msg[0] != 0);
    }
    tensor_upload_free(&t);
    return 0;
}
