/* cli_init.c — `explaind init MODEL.onnx`: write the model's sidecar (MODEL.json) from what the
 * graph says and a normalization preset, print what was guessed and what the user must check.
 *
 *   input size    the graph's static input (or --size for a symbolic one)
 *   color         by channel count: 1 gray, 3 rgb, 4 rgba, other none (tensor uploads only)
 *   preset        imagenet      torchvision's ImageNet recipe: Resize(round(crop * 256 / 224)),
 *                               CenterCrop(crop), pixels / 255, mean [0.485, 0.456, 0.406],
 *                               std [0.229, 0.224, 0.225] (the default for 3-channel models)
 *                 imagenet-bgr  Keras "caffe" mode (VGG16/ResNet50 of keras.applications):
 *                               BGR, pixels 0..255 minus mean [103.939, 116.779, 123.68], stretched
 *                               to the input size as keras' load_img(target_size) does
 *                 none          pixels / 255, mean 0, std 1, stretched (the default otherwise)
 *   cam_layer     graph_detect_cam_value: the last feature map with spatial extent before the head
 *   labels        --labels FILE (one a line; labels_file when FILE sits next to the model, else
 *                 copied in), or none (class_0..)
 * The sidecar is written to MODEL.json.tmp, loaded back with the model (so it is valid), then
 * renamed; an existing MODEL.json is kept unless --force. The format: docs/MODELS.md. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const double imagenet_mean[3] = {0.485, 0.456, 0.406}, imagenet_std[3] = {0.229, 0.224, 0.225};
static const double caffe_mean[3] = {103.939, 116.779, 123.68}; /* B, G, R */

static void init_usage(FILE *f)
{
    fprintf(f, "usage: explaind init MODEL.onnx [--preset imagenet|imagenet-bgr|none] [--labels FILE] [--size H[xW]] [--force]\n"
               "Writes MODEL.json (the sidecar, docs/MODELS.md) next to the model: the input size from the graph,\n"
               "the auto-detected CAM layer and the normalization of the preset, then prints what it guessed and\n"
               "what you must check.\n"
               "  --preset imagenet      torchvision ImageNet: Resize(256) + CenterCrop(224) (scaled to the input size),\n"
               "                         pixels / 255, mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]\n"
               "                         (the default for 3-channel models)\n"
               "  --preset imagenet-bgr  Keras caffe mode: BGR, pixels 0..255 minus [103.939, 116.779, 123.68], stretched\n"
               "  --preset none          pixels / 255, mean 0, std 1, stretched (the default for other channel counts)\n"
               "  --labels FILE          one label a line, in the order of the model's outputs\n"
               "  --size H[xW]           the input size, for a graph whose input height and width are symbolic\n"
               "  --force                overwrite an existing MODEL.json\n");
}

/* labels from a text file, one a line (a trailing newline does not make an empty label) */
static json_t *read_labels(const char *path, char *why, size_t wl)
{
    size_t len;
    unsigned char *b = cli_read_file(path, &len);
    if (!b) {
        snprintf(why, wl, "cannot read labels file '%s'", path);
        return NULL;
    }
    json_t *arr = json_array();
    const char *p = (const char *)b, *end = p + len;
    while (p < end) {
        const char *e = memchr(p, '\n', (size_t)(end - p));
        size_t l = e ? (size_t)(e - p) : (size_t)(end - p);
        while (l && (p[l - 1] == '\r' || p[l - 1] == ' ')) l--;
        if (l || e) json_array_append_new(arr, json_stringn(p, l));
        if (!e) break;
        p = e + 1;
    }
    free(b);
    return arr;
}

static json_t *num_array(const double *v, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_real(v[i]));
    return a;
}

int cli_init(int argc, char **argv)
{
    const char *path = NULL, *preset = NULL, *labels = NULL, *size = NULL;
    int force = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            init_usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--force")) force = 1;
        else if ((!strcmp(a, "--preset") || !strcmp(a, "--labels") || !strcmp(a, "--size")) && i + 1 < argc) {
            const char **dst = a[2] == 'p' ? &preset : a[2] == 'l' ? &labels : &size;
            *dst = argv[++i];
        } else if (a[0] != '-' && !path) path = a;
        else {
            fprintf(stderr, "explaind init: unexpected argument '%s'\n", a);
            init_usage(stderr);
            return 2;
        }
    }
    if (!path) {
        init_usage(stderr);
        return 2;
    }
    if (preset && strcmp(preset, "imagenet") && strcmp(preset, "imagenet-bgr") && strcmp(preset, "none")) {
        fprintf(stderr, "explaind init: --preset must be imagenet, imagenet-bgr or none\n");
        return 2;
    }
    size_t pl = strlen(path);
    if (pl < 6 || strcmp(path + pl - 5, ".onnx")) {
        fprintf(stderr, "explaind init: the model must be a .onnx file\n");
        return 2;
    }
    char sidecar[4096], tmp[4200];
    snprintf(sidecar, sizeof sidecar, "%.*s.json", (int)(pl - 5), path);
    snprintf(tmp, sizeof tmp, "%s.tmp", sidecar);
    if (!force && access(sidecar, F_OK) == 0) {
        fprintf(stderr, "explaind init: %s exists; edit it, or run again with --force to overwrite it\n", sidecar);
        return 2;
    }
    graph_opts_t opts = {0};
    if (size) {
        int h = 0, w = 0;
        char x;
        int k = sscanf(size, "%d%c%d", &h, &x, &w);
        if (k == 1) w = h;
        if ((k != 1 && (k != 3 || x != 'x')) || h < 1 || w < 1 || h > 8192 || w > 8192) {
            fprintf(stderr, "explaind init: --size must be H or HxW, each in 1..8192\n");
            return 2;
        }
        opts.input_h = h;
        opts.input_w = w;
    }
    eng_err_t err = {0};
    graph_t *g;
    if (graph_load_onnx(path, &opts, &g, &err)) {
        fprintf(stderr, "explaind init: cannot load '%s': %s%s\n", path, err.msg,
                strstr(err.msg, "symbolic") ? " (give it with --size H[xW])" : "");
        return 2;
    }
    value_info_t in, out;
    graph_value_info(g, graph_input_value(g), &in);
    graph_value_info(g, graph_output_value(g), &out);
    if (in.rank != 4) {
        fprintf(stderr, "explaind init: the model input has rank %d; an image model takes (N, C, H, W)\n", in.rank);
        graph_free(g);
        return 2;
    }
    const int C = (int)in.dims[1], H = (int)in.dims[2], W = (int)in.dims[3], K = (int)out.dims[1];
    const char *color = C == 1 ? "gray" : C == 3 ? "rgb" : C == 4 ? "rgba" : "none";
    int preset_default = !preset;
    if (!preset) preset = C == 3 ? "imagenet" : "none";
    if (strcmp(preset, "none") && C != 3) {
        fprintf(stderr, "explaind init: --preset %s is for 3-channel RGB models; this one takes %d channel%s: use --preset none "
                        "and edit mean/std\n", preset, C, C == 1 ? "" : "s");
        graph_free(g);
        return 2;
    }
    int rc = 2;
    json_t *doc = json_object(), *input = json_object(), *lab = NULL;
    char why[512] = "", labels_how[600] = "";
    if (labels) {
        if (!(lab = read_labels(labels, why, sizeof why))) goto out;
        if ((int)json_array_size(lab) != K) {
            fprintf(stderr, "explaind init: %s has %zu labels but the model has %d outputs\n", labels, json_array_size(lab), K);
            goto out;
        }
        /* next to the model: refer to it; elsewhere: copy the labels in */
        const char *ls = strrchr(labels, '/'), *ms = strrchr(path, '/');
        size_t ld = ls ? (size_t)(ls - labels) : 0, md = ms ? (size_t)(ms - path) : 0;
        const char *lbase = ls ? ls + 1 : labels;
        int same_dir = ld == md && !strncmp(labels, path, ld);
        int plain = *lbase && lbase[0] != '.' && strspn(lbase, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") ==
                                                      strlen(lbase);
        if (same_dir && plain) {
            json_object_set_new(doc, "labels_file", json_string(lbase));
            snprintf(labels_how, sizeof labels_how, "%d from %s (labels_file)", K, lbase);
        } else {
            json_object_set(doc, "labels", lab);
            snprintf(labels_how, sizeof labels_how, "%d copied from %s (it is not next to the model)", K, labels);
        }
    } else {
        snprintf(labels_how, sizeof labels_how, "none given: class_0..class_%d (give --labels FILE)", K - 1);
    }
    json_object_set_new(input, "color", json_string(color));
    if (C != 1 && C != 3 && C != 4) json_object_set_new(input, "channels", json_integer(C));
    char recipe[400];
    int resize = 0;
    if (!strcmp(preset, "imagenet")) {
        int shorter = H < W ? H : W;
        resize = (int)(shorter * 256.0 / 224.0 + 0.5);
        json_object_set_new(input, "channel_order", json_string("rgb"));
        json_object_set_new(input, "resize", json_integer(resize));
        json_object_set_new(input, "crop", json_pack("[i,i]", H, W));
        json_object_set_new(input, "scale", json_integer(255));
        json_object_set_new(input, "mean", num_array(imagenet_mean, 3));
        json_object_set_new(input, "std", num_array(imagenet_std, 3));
        snprintf(recipe, sizeof recipe, "torchvision ImageNet: Resize(%d), CenterCrop((%d, %d)), ToTensor (pixels / 255), "
                                        "Normalize(mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225])", resize, H, W);
    } else if (!strcmp(preset, "imagenet-bgr")) {
        const double one[3] = {1, 1, 1};
        json_object_set_new(input, "channel_order", json_string("bgr"));
        json_object_set_new(input, "height", json_integer(H));
        json_object_set_new(input, "width", json_integer(W));
        json_object_set_new(input, "resize", json_string("stretch"));
        json_object_set_new(input, "scale", json_integer(1));
        json_object_set_new(input, "mean", num_array(caffe_mean, 3));
        json_object_set_new(input, "std", num_array(one, 3));
        snprintf(recipe, sizeof recipe, "Keras caffe: stretched to %dx%d (bilinear), RGB -> BGR, pixels 0..255 minus mean "
                                        "[103.939, 116.779, 123.68] (B, G, R), no scaling", H, W);
    } else {
        const double zero = 0, one = 1;
        json_object_set_new(input, "height", json_integer(H));
        json_object_set_new(input, "width", json_integer(W));
        json_object_set_new(input, "resize", json_string("stretch"));
        json_object_set_new(input, "scale", json_integer(255));
        json_object_set_new(input, "mean", num_array(&zero, 1));
        json_object_set_new(input, "std", num_array(&one, 1));
        snprintf(recipe, sizeof recipe, "no normalization: stretched to %dx%d, pixels / 255, mean 0, std 1", H, W);
    }
    json_object_set_new(input, "invert", json_false());
    json_object_set_new(doc, "input", input);
    input = NULL;
    int cam = graph_detect_cam_value(g);
    char cam_module[512] = "", cam_shape[64] = "";
    if (cam >= 0) {
        value_info_t cv;
        graph_value_info(g, cam, &cv);
        graph_node_module_path(g, cv.producer, cam_module, sizeof cam_module);
        snprintf(cam_shape, sizeof cam_shape, "%lld x %lld x %lld", (long long)cv.dims[1], (long long)cv.dims[2], (long long)cv.dims[3]);
        json_object_set_new(doc, "cam_layer", json_string(graph_value_user_name(g, cam)));
    }
    FILE *f = fopen(tmp, "w");
    if (!f || json_dumpf(doc, f, JSON_INDENT(2) | JSON_REAL_PRECISION(6)) || fputc('\n', f) == EOF || fclose(f)) {
        fprintf(stderr, "explaind init: cannot write %s\n", tmp);
        if (f) unlink(tmp);
        goto out;
    }
    model_t *m;
    if (model_load_path(path, tmp, NULL, &m, &err)) { /* never expected: the sidecar must load */
        fprintf(stderr, "explaind init: the written sidecar does not load: %s\n", err.msg);
        unlink(tmp);
        goto out;
    }
    model_free(m);
    if (rename(tmp, sidecar)) {
        fprintf(stderr, "explaind init: cannot rename %s to %s\n", tmp, sidecar);
        unlink(tmp);
        goto out;
    }
    printf("wrote %s\n\nguessed:\n", sidecar);
    printf("  input      %d x %d x %d (channels x height x width)%s\n", C, H, W,
           size ? ", from --size" : ", from the graph's input");
    printf("  color      %s%s\n", color, C == 1 || C == 3 || C == 4 ? "" : ": not an image model, uploads are float32 .npy tensors");
    printf("  preset     %s%s: %s\n", preset, preset_default ? " (the default for this channel count; --preset to choose)" : "",
           recipe);
    if (cam >= 0)
        printf("  cam_layer  %s%s%s%s, %s: the last feature map with spatial extent before the head\n",
               graph_value_user_name(g, cam), cam_module[0] ? " (module " : "", cam_module, cam_module[0] ? ")" : "", cam_shape);
    else printf("  cam_layer  none found (no 4-D feature map before global pooling or a flatten): CAM methods need `layer`\n");
    printf("  labels     %s\n", labels_how);
    printf("\ncheck:\n");
    printf("  - that %s is how the model was trained: resize, crop, scale, mean and std (docs/MODELS.md lists the keys)\n",
           !strcmp(preset, "none") ? "no normalization" : "this recipe");
    if (C == 3)
        printf("  - the channel order: %s (a model trained on OpenCV's cv2.imread images takes bgr)\n",
               !strcmp(preset, "imagenet-bgr") ? "bgr" : "rgb");
    printf("  - that the labels are in the order of the model's %d outputs\n", K);
    if (cam >= 0) printf("  - the CAM layer: another 4-D layer or a module path (\"layer4\") can replace it in cam_layer\n");
    printf("  - the top prediction for an image whose class you know: explaind predict --model %s --image IMAGE\n", path);
    printf("  - `explaind inspect %s` shows the whole preprocessing as the server applies it\n", path);
    rc = 0;
out:
    if (rc && why[0]) fprintf(stderr, "explaind init: %s\n", why);
    json_decref(lab);
    json_decref(input);
    json_decref(doc);
    graph_free(g);
    return rc;
}
