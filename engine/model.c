/* model.c — a model is a graph plus its sidecar (models_dir/NAME.json), and preprocessing.
 *
 * The sidecar format, every key with its default, and worked examples: docs/MODELS.md. Keys:
 * labels | labels_file, input {color, channels, channel_order, height, width, scale, mean, std,
 * resize, crop, invert}, cam_layer, attention_layers, label_randomized_twin, randomization_groups.
 * Unknown keys are an error naming them. Without a sidecar: input shape from the graph, labels
 * class_0.., color by channel count (1 gray, 3 rgb, 4 rgba, other none), mean 0, std 1, scale 255,
 * stretch, cam_layer auto-detected; the server logs a warning naming these (model_defaults_note).
 *
 * Preprocessing reproduces torchvision's transforms on a PIL image, byte for byte up to the float
 * tensor: PIL's convert to the model's color (RGB -> L with ITU-R 601-2 luma, L -> RGB by
 * replication, alpha dropped or, for rgba, kept; opaque alpha added), then the resize mode —
 * stretch (img.resize((W, H), BILINEAR)), center_crop (the same with a centred box covering the
 * model's aspect), letterbox (fit inside, pad with zeros), or a size: torchvision Resize(size)
 * then CenterCrop((H, W)) — with PIL 9.4's bilinear filter exactly (Resample.c: a triangle filter
 * widened by the scale when shrinking, 22-bit fixed-point coefficients, horizontal pass first,
 * uint8 between and after the passes; RGBA resized premultiplied, as Image.resize does), then
 * invert, channel order and (pixel / scale - mean) / std in float32 as ToTensor + Normalize do.
 * That is what torchvision.transforms.Resize does to a PIL image (always antialiased); on a
 * tensor, torchvision 0.14's Resize interpolates in float without antialias unless asked, which
 * this does not reproduce.
 */
#include <ctype.h>
#include <jansson.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "graph.h"

#define MAX_SIDECAR_BYTES (4 << 20)
#define MAX_LABELS 100000
#define MAX_LABEL_LEN 256

static char *read_file(const char *path, size_t max, size_t *len, int *missing)
{
    *missing = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        *missing = 1;
        return NULL;
    }
    char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    fclose(f);
    if (!buf || n > max) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

static int name_ok(const char *s) /* model names: no paths, no surprises */
{
    if (!s || !*s || strlen(s) >= MODEL_MAX_NAME || s[0] == '.') return 0;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.') return 0;
    return 1;
}

/* ---- sidecar ------------------------------------------------------------------------------------- */
typedef struct {
    json_t *root;
} sidecar_t;

static int check_keys(json_t *obj, const char *const *allowed, const char *where, eng_err_t *err)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        int ok = 0;
        for (int i = 0; allowed[i]; i++) ok |= !strcmp(key, allowed[i]);
        if (!ok) return eng_errf(err, ENG_EFORMAT, "sidecar: unknown key '%s'%s%s", key, where ? " in " : "", where ? where : "");
    }
    return ENG_OK;
}

const char *input_color_name(int color)
{
    static const char *const names[] = {"gray", "rgb", "rgba", "none"};
    return color >= 0 && color <= COLOR_NONE ? names[color] : "?";
}

const char *input_resize_name(int resize)
{
    static const char *const names[] = {"stretch", "center_crop", "letterbox", "resize_crop", "resize_crop"};
    return resize >= 0 && resize <= RESIZE_EXACT ? names[resize] : "?";
}

/* An integer size or [height, width] (torchvision's int or (h, w)). 0, or an error naming key. */
static int parse_size(json_t *v, const char *key, int *h, int *w, int *is_pair, eng_err_t *err)
{
    *is_pair = json_is_array(v);
    if (json_is_integer(v) && json_integer_value(v) >= 1 && json_integer_value(v) <= 8192) {
        *h = *w = (int)json_integer_value(v);
        return ENG_OK;
    }
    json_t *a = json_array_get(v, 0), *b = json_array_get(v, 1);
    if (*is_pair && json_array_size(v) == 2 && json_is_integer(a) && json_is_integer(b) && json_integer_value(a) >= 1 &&
        json_integer_value(a) <= 8192 && json_integer_value(b) >= 1 && json_integer_value(b) <= 8192) {
        *h = (int)json_integer_value(a);
        *w = (int)json_integer_value(b);
        return ENG_OK;
    }
    return eng_errf(err, ENG_EFORMAT, "sidecar: input.%s must be an integer in 1..8192 or [height, width]", key);
}

static int parse_input_spec(json_t *in, input_spec_t *s, eng_err_t *err)
{
    static const char *const keys[] = {"color", "channels", "channel_order", "height", "width", "scale", "mean",
                                       "std", "resize", "crop", "invert", NULL};
    if (!json_is_object(in)) return eng_errf(err, ENG_EFORMAT, "sidecar: 'input' must be an object");
    int rc = check_keys(in, keys, "'input'", err);
    if (rc) return rc;
    json_t *v;
    if ((v = json_object_get(in, "color"))) {
        const char *c = json_string_value(v);
        int k = -1;
        for (int i = 0; c && i <= COLOR_NONE; i++)
            if (!strcmp(c, input_color_name(i))) k = i;
        if (k < 0) return eng_errf(err, ENG_EFORMAT, "sidecar: input.color must be \"gray\", \"rgb\", \"rgba\" or \"none\"");
        s->color = k;
        s->given |= INPUT_GIVEN_COLOR;
    }
    if ((v = json_object_get(in, "channels"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > ENG_MAX_CHANNELS)
            return eng_errf(err, ENG_EFORMAT, "sidecar: input.channels must be an integer in 1..%d", ENG_MAX_CHANNELS);
        s->channels = (int)json_integer_value(v);
    }
    if ((v = json_object_get(in, "channel_order"))) {
        const char *c = json_string_value(v);
        if (!c || (strcmp(c, "rgb") && strcmp(c, "bgr")))
            return eng_errf(err, ENG_EFORMAT, "sidecar: input.channel_order must be \"rgb\" or \"bgr\"");
        s->bgr = !strcmp(c, "bgr");
        s->given |= INPUT_GIVEN_ORDER;
    }
    const char *dims[2] = {"height", "width"};
    int *dst[2] = {&s->height, &s->width};
    for (int i = 0; i < 2; i++)
        if ((v = json_object_get(in, dims[i]))) {
            if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 8192)
                return eng_errf(err, ENG_EFORMAT, "sidecar: input.%s must be an integer in 1..8192", dims[i]);
            *dst[i] = (int)json_integer_value(v);
            s->given |= INPUT_GIVEN_SIZE;
        }
    if ((v = json_object_get(in, "scale"))) {
        if (!json_is_number(v) || !(json_number_value(v) > 0 && json_number_value(v) <= FLT_MAX))
            return eng_errf(err, ENG_EFORMAT, "sidecar: input.scale must be a positive number a float can hold");
        s->scale = (float)json_number_value(v);
        s->given |= INPUT_GIVEN_SCALE;
    }
    const char *arrs[2] = {"mean", "std"};
    float *adst[2] = {s->mean, s->std};
    int *an[2] = {&s->n_mean, &s->n_std};
    for (int k = 0; k < 2; k++) {
        if (!(v = json_object_get(in, arrs[k]))) continue;
        size_t n = json_array_size(v);
        if (!json_is_array(v) || n < 1 || n > ENG_MAX_CHANNELS)
            return eng_errf(err, ENG_EFORMAT, "sidecar: input.%s must be an array of 1 to %d numbers (one, or one per channel)",
                            arrs[k], ENG_MAX_CHANNELS);
        for (size_t i = 0; i < n; i++) {
            json_t *e = json_array_get(v, i);
            if (!json_is_number(e) || !(fabs(json_number_value(e)) <= FLT_MAX)) /* a float must hold it */
                return eng_errf(err, ENG_EFORMAT, "sidecar: input.%s has a non-number or one out of float range", arrs[k]);
            adst[k][i] = (float)json_number_value(e);
            if (k == 1 && !(adst[k][i] > 0)) return eng_errf(err, ENG_EFORMAT, "sidecar: input.std must be > 0");
        }
        *an[k] = (int)n;
        s->given |= k ? INPUT_GIVEN_STD : INPUT_GIVEN_MEAN;
    }
    if ((v = json_object_get(in, "resize"))) {
        const char *r = json_string_value(v);
        s->given |= INPUT_GIVEN_RESIZE;
        if (r) {
            if (!strcmp(r, "stretch")) s->resize = RESIZE_STRETCH;
            else if (!strcmp(r, "center_crop")) s->resize = RESIZE_CENTER_CROP;
            else if (!strcmp(r, "letterbox")) s->resize = RESIZE_LETTERBOX;
            else
                return eng_errf(err, ENG_EFORMAT, "sidecar: input.resize must be stretch, center_crop, letterbox, "
                                                  "a size (the shorter side) or [height, width]");
        } else {
            int h, w, pair;
            if ((rc = parse_size(v, "resize", &h, &w, &pair, err)))
                return eng_errf(err, ENG_EFORMAT, "sidecar: input.resize must be stretch, center_crop, letterbox, "
                                                  "a size in 1..8192 (the shorter side) or [height, width]");
            s->resize = pair ? RESIZE_EXACT : RESIZE_SHORTER;
            s->resize_short = pair ? 0 : h;
            s->resize_h = pair ? h : 0;
            s->resize_w = pair ? w : 0;
        }
    }
    if ((v = json_object_get(in, "crop"))) {
        int h, w, pair;
        if ((rc = parse_size(v, "crop", &h, &w, &pair, err))) return rc;
        if (s->resize != RESIZE_SHORTER && s->resize != RESIZE_EXACT)
            return eng_errf(err, ENG_EFORMAT, "sidecar: input.crop needs input.resize to be a size (torchvision "
                                              "Resize(size) then CenterCrop(crop)); '%s' fits the image to the model by itself",
                            input_resize_name(s->resize));
        if ((s->height && s->height != h) || (s->width && s->width != w))
            return eng_errf(err, ENG_EFORMAT, "sidecar: input.crop %dx%d contradicts input.height x width %dx%d (the crop is "
                                              "the model input)", h, w, s->height ? s->height : h, s->width ? s->width : w);
        s->height = h;
        s->width = w;
        s->given |= INPUT_GIVEN_SIZE;
    }
    if ((v = json_object_get(in, "invert"))) {
        if (!json_is_boolean(v)) return eng_errf(err, ENG_EFORMAT, "sidecar: input.invert must be true or false");
        s->invert = json_is_true(v);
    }
    return ENG_OK;
}

static int set_labels_from_text(model_t *m, const char *text, eng_err_t *err)
{
    int n = 0;
    for (const char *p = text; *p; p++) n += *p == '\n';
    n += 1;
    if (n > MAX_LABELS) return eng_errf(err, ENG_EFORMAT, "labels_file: more than %d lines", MAX_LABELS);
    m->labels = calloc((size_t)n, sizeof(char *));
    if (!m->labels) return eng_errf(err, ENG_ENOMEM, "out of memory");
    m->n_labels = 0;
    const char *p = text;
    while (*p) {
        const char *e = strchr(p, '\n');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        size_t l2 = l;
        while (l2 && (p[l2 - 1] == '\r' || p[l2 - 1] == ' ')) l2--;
        if (l2 > MAX_LABEL_LEN) return eng_errf(err, ENG_EFORMAT, "labels_file: a label is longer than %d bytes", MAX_LABEL_LEN);
        if (l2 || e) { /* keep empty lines in the middle; drop only a trailing newline */
            m->labels[m->n_labels] = strndup(p, l2);
            if (!m->labels[m->n_labels]) return eng_errf(err, ENG_ENOMEM, "out of memory");
            m->n_labels++;
        }
        if (!e) break;
        p = e + 1;
    }
    return ENG_OK;
}

static int set_labels_json(model_t *m, json_t *arr, eng_err_t *err)
{
    size_t n = json_array_size(arr);
    if (!json_is_array(arr) || n == 0 || n > MAX_LABELS)
        return eng_errf(err, ENG_EFORMAT, "sidecar: 'labels' must be a non-empty array of strings");
    m->labels = calloc(n, sizeof(char *));
    if (!m->labels) return eng_errf(err, ENG_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        if (!s || strlen(s) > MAX_LABEL_LEN)
            return eng_errf(err, ENG_EFORMAT, "sidecar: label %zu is not a string of at most %d bytes", i, MAX_LABEL_LEN);
        m->labels[i] = strdup(s);
        if (!m->labels[i]) return eng_errf(err, ENG_ENOMEM, "out of memory");
        m->n_labels = (int)i + 1;
    }
    return ENG_OK;
}

/* First pass: everything that does not need the graph. Names are resolved in resolve_names(). */
int model_parse_sidecar(model_t *m, const char *json, size_t len, const char *dir, eng_err_t *err)
{
    static const char *const keys[] = {"labels", "labels_file", "input", "cam_layer", "attention_layers",
                                       "label_randomized_twin", "randomization_groups", NULL};
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) return eng_errf(err, ENG_EFORMAT, "sidecar: invalid JSON at line %d: %s", je.line, je.text);
    int rc = ENG_OK;
    json_t *v;
    if (!json_is_object(root)) {
        rc = eng_errf(err, ENG_EFORMAT, "sidecar: the document must be a JSON object");
        goto out;
    }
    if ((rc = check_keys(root, keys, NULL, err))) goto out;
    if (json_object_get(root, "labels") && json_object_get(root, "labels_file")) {
        rc = eng_errf(err, ENG_EFORMAT, "sidecar: give 'labels' or 'labels_file', not both");
        goto out;
    }
    if ((v = json_object_get(root, "labels"))) {
        if ((rc = set_labels_json(m, v, err))) goto out;
    } else if ((v = json_object_get(root, "labels_file"))) {
        const char *lf = json_string_value(v);
        if (!lf || !name_ok(lf)) {
            rc = eng_errf(err, ENG_EFORMAT, "sidecar: labels_file must be a plain file name next to the model");
            goto out;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir ? dir : ".", lf);
        size_t l;
        int missing;
        char *text = read_file(path, MAX_SIDECAR_BYTES, &l, &missing);
        if (!text) {
            rc = eng_errf(err, ENG_EFORMAT, "sidecar: cannot read labels_file '%s'", lf);
            goto out;
        }
        rc = set_labels_from_text(m, text, err);
        free(text);
        if (rc) goto out;
    }
    if ((v = json_object_get(root, "input")) && (rc = parse_input_spec(v, &m->input, err))) goto out;
    if ((v = json_object_get(root, "label_randomized_twin"))) {
        const char *t = json_string_value(v);
        if (!t || !name_ok(t)) {
            rc = eng_errf(err, ENG_EFORMAT, "sidecar: label_randomized_twin must be a model name");
            goto out;
        }
        m->twin = strdup(t);
    }
    /* cam_layer, attention_layers, randomization_groups: checked for type here, resolved later */
    if ((v = json_object_get(root, "cam_layer")) && !json_is_string(v)) {
        rc = eng_errf(err, ENG_EFORMAT, "sidecar: cam_layer must be a string");
        goto out;
    }
    if ((v = json_object_get(root, "attention_layers"))) {
        if (!json_is_array(v)) {
            rc = eng_errf(err, ENG_EFORMAT, "sidecar: attention_layers must be an array of names");
            goto out;
        }
        for (size_t i = 0; i < json_array_size(v); i++)
            if (!json_is_string(json_array_get(v, i))) {
                rc = eng_errf(err, ENG_EFORMAT, "sidecar: attention_layers must be an array of names");
                goto out;
            }
    }
    if ((v = json_object_get(root, "randomization_groups"))) {
        if (!json_is_array(v)) {
            rc = eng_errf(err, ENG_EFORMAT, "sidecar: randomization_groups must be an array of arrays of names");
            goto out;
        }
        for (size_t i = 0; i < json_array_size(v); i++) {
            json_t *gr = json_array_get(v, i);
            if (!json_is_array(gr) || !json_array_size(gr)) {
                rc = eng_errf(err, ENG_EFORMAT, "sidecar: randomization_groups must be an array of non-empty arrays");
                goto out;
            }
            for (size_t k = 0; k < json_array_size(gr); k++)
                if (!json_is_string(json_array_get(gr, k))) {
                    rc = eng_errf(err, ENG_EFORMAT, "sidecar: randomization_groups must hold node names");
                    goto out;
                }
        }
    }
    m->has_sidecar = 1;
out:
    if (rc) json_decref(root);
    else {
        json_decref((json_t *)m->sidecar_json);
        m->sidecar_json = root;
    }
    return rc;
}

static int resolve_names(model_t *m, eng_err_t *err)
{
    const graph_t *g = m->graph;
    json_t *root = m->sidecar_json, *v;
    m->cam_value = -1;
    if (root && (v = json_object_get(root, "cam_layer"))) {
        const char *nm = json_string_value(v);
        char sug[600];
        m->cam_value = graph_resolve_layer(g, nm, sug, sizeof sug);
        if (m->cam_value < 0)
            return eng_errf(err, ENG_EFORMAT, "sidecar: cam_layer '%.200s' is not a node, value or module of the graph; "
                                              "closest: %s", nm, sug);
        if (g->values[m->cam_value].rank != 4)
            return eng_errf(err, ENG_EFORMAT, "sidecar: cam_layer '%.200s' (%s) is not a 4-D feature map", nm,
                            graph_value_user_name(g, m->cam_value));
    } else {
        m->cam_value = graph_detect_cam_value(g);
    }
    if (root && (v = json_object_get(root, "attention_layers"))) {
        size_t n = json_array_size(v);
        m->attention_values = calloc(n + 1, sizeof(int));
        if (!m->attention_values) return eng_errf(err, ENG_ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
            const char *nm = json_string_value(json_array_get(v, i));
            char sug[600];
            int id = graph_resolve_layer(g, nm, sug, sizeof sug);
            if (id < 0) return eng_errf(err, ENG_EFORMAT, "sidecar: attention layer '%.200s' is not in the graph; closest: %s", nm, sug);
            m->attention_values[m->n_attention++] = id;
        }
    }
    if (root && (v = json_object_get(root, "randomization_groups"))) {
        size_t n = json_array_size(v);
        m->group_nodes = calloc(n + 1, sizeof(int *));
        m->group_sizes = calloc(n + 1, sizeof(int));
        if (!m->group_nodes || !m->group_sizes) return eng_errf(err, ENG_ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
            json_t *gr = json_array_get(v, i);
            size_t k = json_array_size(gr);
            m->group_nodes[i] = calloc(k, sizeof(int));
            if (!m->group_nodes[i]) return eng_errf(err, ENG_ENOMEM, "out of memory");
            m->n_groups = (int)i + 1;
            for (size_t j = 0; j < k; j++) {
                const char *nm = json_string_value(json_array_get(gr, j));
                int node = graph_find_node(g, nm);
                if (node < 0) return eng_errf(err, ENG_EFORMAT, "sidecar: randomization group node '%s' is not in the graph", nm);
                if (g->nodes[node].w_in < 0)
                    return eng_errf(err, ENG_EFORMAT, "sidecar: randomization group node '%s' has no parameters", nm);
                m->group_nodes[i][m->group_sizes[i]++] = node;
            }
        }
    }
    return ENG_OK;
}

static void default_spec(input_spec_t *s)
{
    memset(s, 0, sizeof *s);
    s->scale = 255.f;
    s->resize = RESIZE_STRETCH;
}

/* The spec against the graph's input (C, H, W): color, channel count, mean and std per channel. */
static int finalize_spec(input_spec_t *s, int C, eng_err_t *err)
{
    if (s->channels && s->channels != C)
        return eng_errf(err, ENG_EFORMAT, "sidecar: input.channels is %d but the graph takes %d", s->channels, C);
    s->channels = C;
    if (!(s->given & INPUT_GIVEN_COLOR)) s->color = C == 1 ? COLOR_GRAY : C == 3 ? COLOR_RGB : C == 4 ? COLOR_RGBA : COLOR_NONE;
    static const int need[] = {1, 3, 4, 0};
    if (s->color != COLOR_NONE && need[s->color] != C)
        return eng_errf(err, ENG_EFORMAT, "sidecar: input.color \"%s\" means %d channel%s but the graph takes %d%s",
                        input_color_name(s->color), need[s->color], need[s->color] == 1 ? "" : "s", C,
                        C == 1 || C == 3 || C == 4 ? "" : " (use \"none\": the model takes float32 tensor uploads)");
    if (s->bgr && s->color != COLOR_RGB && s->color != COLOR_RGBA)
        return eng_errf(err, ENG_EFORMAT, "sidecar: input.channel_order bgr applies to rgb and rgba models, not %s",
                        input_color_name(s->color));
    const char *arrs[2] = {"mean", "std"};
    float *a[2] = {s->mean, s->std};
    int n[2] = {s->n_mean, s->n_std};
    for (int k = 0; k < 2; k++) {
        if (n[k] > 1 && n[k] != C)
            return eng_errf(err, ENG_EFORMAT, "sidecar: input.%s has %d values but the model takes %d channel%s (give 1 or %d)",
                            arrs[k], n[k], C, C == 1 ? "" : "s", C);
        float v = n[k] ? a[k][0] : (float)k; /* default mean 0, std 1 */
        if (n[k] <= 1)
            for (int c = 0; c < C; c++) a[k][c] = v;
    }
    return ENG_OK;
}

int model_same_input(const model_t *a, const model_t *b)
{
    const input_spec_t *x = &a->input, *y = &b->input;
    if (x->channels != y->channels || x->color != y->color || x->bgr != y->bgr || x->height != y->height ||
        x->width != y->width || x->scale != y->scale || x->resize != y->resize || x->resize_short != y->resize_short ||
        x->resize_h != y->resize_h || x->resize_w != y->resize_w || x->invert != y->invert)
        return 0;
    for (int i = 0; i < x->channels; i++)
        if (x->mean[i] != y->mean[i] || x->std[i] != y->std[i]) return 0;
    return 1;
}

int model_defaults_note(const model_t *m, char *buf, size_t len)
{
    const input_spec_t *s = &m->input;
    if (!len) return 0;
    buf[0] = 0;
    char what[600];
    size_t w = 0;
#define ADD(...) (w += (size_t)snprintf(what + w, w < sizeof what ? sizeof what - w : 0, __VA_ARGS__))
    if (!m->has_sidecar) {
        ADD("color %s", input_color_name(s->color));
        ADD(", pixels / %g, mean 0, std 1", (double)s->scale);
        if (s->color == COLOR_RGB || s->color == COLOR_RGBA) ADD(", channel_order rgb");
        ADD(", resize stretch to %dx%d", s->height, s->width);
        ADD(", labels class_0..class_%d", m->n_labels - 1);
        ADD(", cam_layer auto-detected (%s)", m->cam_value >= 0 ? graph_value_user_name(m->graph, m->cam_value) : "none found");
    } else if (!(s->given & (INPUT_GIVEN_MEAN | INPUT_GIVEN_STD)) && s->color != COLOR_NONE) {
        /* the other keys' defaults are what the graph says; a missing normalization is the usual mistake */
        ADD("pixels / %g, mean 0, std 1 (input.mean and input.std are not set)", (double)s->scale);
    }
#undef ADD
    if (!w) return 0;
    int imagenet_hint = s->color == COLOR_RGB;
    int n = snprintf(buf, len, "%s %s.json: defaults apply: %s.%s Write a sidecar with `explaind init %s.onnx%s` (docs/MODELS.md)",
                     m->has_sidecar ? "the sidecar sets no normalization in" : "no sidecar", m->name, what,
                     imagenet_hint ? " A model trained on ImageNet with torchvision needs mean [0.485, 0.456, 0.406] and "
                                     "std [0.229, 0.224, 0.225]."
                                   : "",
                     m->name, imagenet_hint ? " --preset imagenet" : "");
    return n < 0 ? 0 : n;
}

int model_load_path(const char *onnx_path, const char *sidecar_path, const graph_opts_t *opts, model_t **out,
                    eng_err_t *err)
{
    *out = NULL;
    model_t *m = calloc(1, sizeof *m);
    if (!m) return eng_errf(err, ENG_ENOMEM, "out of memory");
    m->cam_value = -1;
    default_spec(&m->input);
    /* name = file name without .onnx; dir = its folder */
    const char *base = strrchr(onnx_path, '/');
    base = base ? base + 1 : onnx_path;
    snprintf(m->name, sizeof m->name, "%s", base);
    size_t bl = strlen(m->name);
    if (bl > 5 && !strcmp(m->name + bl - 5, ".onnx")) m->name[bl - 5] = 0;
    char dir[4096];
    size_t dl = (size_t)(base - onnx_path);
    if (dl >= sizeof dir) dl = sizeof dir - 1;
    memcpy(dir, onnx_path, dl);
    dir[dl] = 0;
    if (!dl) strcpy(dir, ".");
    else if (dl > 1) dir[dl - 1] = 0;

    char sc[4096];
    if (!sidecar_path) {
        snprintf(sc, sizeof sc, "%s", onnx_path);
        size_t l = strlen(sc);
        if (l > 5 && !strcmp(sc + l - 5, ".onnx")) strcpy(sc + l - 5, ".json");
        else snprintf(sc + l, sizeof sc - l, ".json");
        sidecar_path = sc;
    }
    int rc = ENG_OK;
    size_t len;
    int missing;
    char *text = read_file(sidecar_path, MAX_SIDECAR_BYTES, &len, &missing);
    if (!text && !missing) rc = eng_errf(err, ENG_EFORMAT, "sidecar '%s.json' is unreadable or over 4 MiB", m->name);
    if (text) {
        rc = model_parse_sidecar(m, text, len, dir, err);
        free(text);
    }
    if (!rc) {
        graph_opts_t o = opts ? *opts : (graph_opts_t){0};
        if (m->input.height) o.input_h = m->input.height;
        if (m->input.width) o.input_w = m->input.width;
        rc = graph_load_onnx(onnx_path, &o, &m->graph, err);
    }
    if (!rc) {
        const value_t *in = &m->graph->values[m->graph->input];
        if (in->rank != 4 || in->dims[1] < 1 || in->dims[1] > ENG_MAX_CHANNELS)
            rc = eng_errf(err, ENG_EUNSUPPORTED, "the model input must be an image batch (N, C, H, W) with 1..%d channels",
                          ENG_MAX_CHANNELS);
        else {
            /* a static graph's H and W were checked against the sidecar's by the loader */
            m->input.height = (int)in->dims[2];
            m->input.width = (int)in->dims[3];
            rc = finalize_spec(&m->input, (int)in->dims[1], err);
        }
    }
    if (!rc) {
        int K = (int)m->graph->values[m->graph->output].dims[1];
        if (m->n_labels && m->n_labels != K)
            rc = eng_errf(err, ENG_EFORMAT, "sidecar: %d labels but the model has %d classes", m->n_labels, K);
        if (!rc && !m->n_labels) {
            m->labels = calloc((size_t)K, sizeof(char *));
            for (int k = 0; m->labels && k < K; k++) {
                char b[32];
                snprintf(b, sizeof b, "class_%d", k);
                m->labels[k] = strdup(b);
                m->n_labels = k + 1;
            }
            if (!m->labels) rc = eng_errf(err, ENG_ENOMEM, "out of memory");
        }
    }
    if (!rc) rc = resolve_names(m, err);
    if (rc) {
        model_free(m);
        return rc;
    }
    *out = m;
    return ENG_OK;
}

int model_load(const char *dir, const char *name, const graph_opts_t *opts, model_t **out, eng_err_t *err)
{
    *out = NULL;
    if (!name_ok(name)) return eng_errf(err, ENG_EINVAL, "invalid model name");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.onnx", dir, name);
    return model_load_path(path, NULL, opts, out, err);
}

void model_free(model_t *m)
{
    if (!m) return;
    graph_free(m->graph);
    for (int i = 0; i < m->n_labels; i++) free(m->labels[i]);
    free(m->labels);
    free(m->attention_values);
    free(m->twin);
    for (int i = 0; i < m->n_groups; i++) free(m->group_nodes[i]);
    free(m->group_nodes);
    free(m->group_sizes);
    json_decref((json_t *)m->sidecar_json);
    free(m);
}

size_t model_input_size(const model_t *m) { return (size_t)m->input.channels * m->input.height * m->input.width; }

/* ---- preprocessing: PIL's bilinear resize, exactly ---------------------------------------------- */
/* Pillow 9.4 libImaging/Resample.c, BILINEAR on 8-bit bands: precompute_coeffs (a triangle
 * filter of support 1 widened by the scale when shrinking, normalized to sum 1), coefficients in
 * fixed point with 22 fractional bits (normalize_coeffs_8bpc), each pass accumulating from 2^21
 * (rounding) and clipping to 0..255; the horizontal pass runs first, into a uint8 image holding
 * only the rows the vertical pass reads (ImagingResampleInner). */
#define PIL_PRECISION_BITS (32 - 8 - 2)

typedef struct {
    int *lo, *n;
    int32_t *k;
    int ksize;
} pil_coefs_t;

static void pil_coefs_free(pil_coefs_t *c)
{
    free(c->lo);
    free(c->n);
    free(c->k);
}

static int pil_coefs(int in_size, float in0, float in1, int out_size, pil_coefs_t *c)
{
    double scale = (double)(in1 - in0) / out_size, filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale; /* bilinear: support 1 */
    c->ksize = (int)ceil(support) * 2 + 1;
    c->lo = malloc(sizeof(int) * (size_t)out_size);
    c->n = malloc(sizeof(int) * (size_t)out_size);
    c->k = calloc((size_t)out_size * (size_t)c->ksize, sizeof(int32_t));
    double *kd = malloc(sizeof(double) * (size_t)c->ksize);
    if (!c->lo || !c->n || !c->k || !kd) {
        free(kd);
        return -1;
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        if (xmin < 0) xmin = 0;
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        if (xmax > c->ksize) xmax = c->ksize;
        if (xmax < 0) xmax = 0;
        for (int x = 0; x < xmax; x++) {
            double t = fabs((x + xmin - center + 0.5) * ss), w = t < 1.0 ? 1.0 - t : 0.0;
            kd[x] = w;
            ww += w;
        }
        int32_t *k = c->k + (size_t)xx * c->ksize;
        for (int x = 0; x < xmax; x++) {
            double w = ww != 0.0 ? kd[x] / ww : kd[x];
            k[x] = (int32_t)(w < 0 ? -0.5 + w * (1 << PIL_PRECISION_BITS) : 0.5 + w * (1 << PIL_PRECISION_BITS));
        }
        c->lo[xx] = xmin;
        c->n[xx] = xmax;
    }
    free(kd);
    return 0;
}

static inline uint8_t pil_clip8(int32_t v)
{
    int32_t q = v >> PIL_PRECISION_BITS; /* arithmetic shift, as the lookup table's index */
    return (uint8_t)(q < 0 ? 0 : q > 255 ? 255 : q);
}

/* PIL's Image.resize((ow, oh), BILINEAR, box) of an 8-bit image with K interleaved bands. */
static int pil_resize_bands(const uint8_t *src, int iw, int ih, int K, const float box[4], int ow, int oh, uint8_t *dst)
{
    pil_coefs_t ch, cv;
    memset(&ch, 0, sizeof ch);
    memset(&cv, 0, sizeof cv);
    int need_h = ow != iw || box[0] != 0 || box[2] != ow; /* PIL compares box[2] with the output width */
    int need_v = oh != ih || box[1] != 0 || box[3] != oh;
    uint8_t *tmp = NULL;
    int rc = pil_coefs(iw, box[0], box[2], ow, &ch) || pil_coefs(ih, box[1], box[3], oh, &cv) ? -1 : 0;
    if (!rc) {
        const uint8_t *cur = src;
        int cw = iw;
        if (need_h) {
            int y0 = cv.lo[0], y1 = cv.lo[oh - 1] + cv.n[oh - 1];
            if (y1 < y0) y1 = y0;
            tmp = malloc((size_t)(y1 - y0 ? y1 - y0 : 1) * ow * K);
            if (!tmp) rc = -1;
            for (int y = y0; !rc && y < y1; y++) {
                const uint8_t *row = src + (size_t)y * iw * K;
                uint8_t *o = tmp + (size_t)(y - y0) * ow * K;
                for (int xx = 0; xx < ow; xx++) {
                    const int32_t *k = ch.k + (size_t)xx * ch.ksize;
                    const uint8_t *p = row + (size_t)ch.lo[xx] * K;
                    for (int b = 0; b < K; b++) {
                        int32_t ss = 1 << (PIL_PRECISION_BITS - 1);
                        for (int x = 0; x < ch.n[xx]; x++) ss += p[(size_t)x * K + b] * k[x];
                        o[(size_t)xx * K + b] = pil_clip8(ss);
                    }
                }
            }
            for (int yy = 0; yy < oh; yy++) cv.lo[yy] -= y0;
            cur = tmp;
            cw = ow;
        }
        if (!rc && need_v) {
            for (int yy = 0; yy < oh; yy++) {
                const int32_t *k = cv.k + (size_t)yy * cv.ksize;
                uint8_t *o = dst + (size_t)yy * cw * K;
                for (int xx = 0; xx < cw * K; xx++) {
                    int32_t ss = 1 << (PIL_PRECISION_BITS - 1);
                    const uint8_t *p = cur + (size_t)cv.lo[yy] * cw * K + xx;
                    for (int y = 0; y < cv.n[yy]; y++) ss += p[(size_t)y * cw * K] * k[y];
                    o[xx] = pil_clip8(ss);
                }
            }
        } else if (!rc) {
            memcpy(dst, cur, (size_t)ow * oh * K);
        }
    }
    free(tmp);
    pil_coefs_free(&ch);
    pil_coefs_free(&cv);
    return rc;
}

/* Image.resize: a no-op copy when nothing changes; RGBA goes through premultiplied RGBa (PIL's
 * convert("RGBa") then convert("RGBA") around the resize). */
static int pil_resize(const uint8_t *src, int iw, int ih, int K, const float box[4], int ow, int oh, uint8_t *dst)
{
    if (ow == iw && oh == ih && box[0] == 0 && box[1] == 0 && box[2] == iw && box[3] == ih) {
        memcpy(dst, src, (size_t)iw * ih * K);
        return 0;
    }
    if (K != 4) return pil_resize_bands(src, iw, ih, K, box, ow, oh, dst);
    size_t n = (size_t)iw * ih;
    uint8_t *pre = malloc(n * 4);
    if (!pre) return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned a = src[4 * i + 3];
        for (int b = 0; b < 3; b++) {
            unsigned t = src[4 * i + b] * a + 128; /* MULDIV255 */
            pre[4 * i + b] = (uint8_t)(((t >> 8) + t) >> 8);
        }
        pre[4 * i + 3] = (uint8_t)a;
    }
    int rc = pil_resize_bands(pre, iw, ih, 4, box, ow, oh, dst);
    free(pre);
    for (size_t i = 0; !rc && i < (size_t)ow * oh; i++) {
        unsigned a = dst[4 * i + 3];
        if (a == 0 || a == 255) continue;
        for (int b = 0; b < 3; b++) {
            unsigned v = 255u * dst[4 * i + b] / a;
            dst[4 * i + b] = (uint8_t)(v > 255 ? 255 : v);
        }
    }
    return rc;
}

/* ---- preprocessing: the pipeline ------------------------------------------------------------------- */
static int color_bands(int color) { return color == COLOR_GRAY ? 1 : color == COLOR_RGB ? 3 : 4; }

/* PIL's convert(mode) of an L / RGB / RGBA image into K bands (1 L, 3 RGB, 4 RGBA). */
static void convert_bands(const image_t *img, int K, uint8_t *dst)
{
    const size_t n = (size_t)img->width * img->height;
    const int ic = img->channels;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = img->data + i * ic;
        uint8_t *o = dst + i * K;
        if (K == 1) o[0] = ic == 1 ? p[0] : (uint8_t)((p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16); /* L24 */
        else {
            for (int b = 0; b < 3; b++) o[b] = ic == 1 ? p[0] : p[b];
            if (K == 4) o[3] = ic == 4 ? p[3] : 255;
        }
    }
}

/* torchvision's CenterCrop((H, W)) of an sw x sh image: zero padding where the crop is larger
 * ((d // 2) before, ((d + 1) // 2) after), then top/left = round((size - crop) / 2) with Python's
 * round-half-to-even. */
static void center_crop(const uint8_t *src, int sw, int sh, int K, int W, int H, uint8_t *dst)
{
    int left = W > sw ? (W - sw) / 2 : 0, top = H > sh ? (H - sh) / 2 : 0;
    int pw = sw + left + (W > sw ? (W - sw + 1) / 2 : 0), ph = sh + top + (H > sh ? (H - sh + 1) / 2 : 0);
    int cl = (int)rint((pw - W) / 2.0), ct = (int)rint((ph - H) / 2.0);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int sy = y + ct - top, sx = x + cl - left;
            uint8_t *o = dst + ((size_t)y * W + x) * K;
            if (sy >= 0 && sy < sh && sx >= 0 && sx < sw) memcpy(o, src + ((size_t)sy * sw + sx) * K, (size_t)K);
            else memset(o, 0, (size_t)K);
        }
}

/* The upload as the model's color bands at the model's size (uint8, H x W x K interleaved): what
 * torchvision hands ToTensor. */
static int model_pixels(const model_t *m, const image_t *img, uint8_t *px, eng_err_t *err)
{
    const input_spec_t *s = &m->input;
    const int H = s->height, W = s->width;
    if (s->color == COLOR_NONE)
        return eng_errf(err, ENG_EINVAL, "model '%s' takes %d-channel input, not an image: send a float32 tensor of shape "
                                         "(%d, %d, %d) as a .npy file", m->name, s->channels, s->channels, H, W);
    if (!img || !img->data || img->width < 1 || img->height < 1 ||
        (img->channels != 1 && img->channels != 3 && img->channels != 4))
        return eng_errf(err, ENG_EINVAL, "empty or malformed image");
    const int K = color_bands(s->color), iw = img->width, ih = img->height;
    uint8_t *src = malloc((size_t)iw * ih * K), *mid = NULL;
    if (!src) return eng_errf(err, ENG_ENOMEM, "out of memory");
    convert_bands(img, K, src);
    int rc = 0;
    const float full[4] = {0, 0, (float)iw, (float)ih};
    if (s->resize == RESIZE_STRETCH) {
        rc = pil_resize(src, iw, ih, K, full, W, H, px);
    } else if (s->resize == RESIZE_CENTER_CROP) {
        /* cover W x H, keep the centre: PIL resize((W, H), box = the centred window of the model's aspect) */
        double sc = fmax((double)W / iw, (double)H / ih), spw = W / sc, sph = H / sc;
        double x0 = fmax(0, (iw - spw) / 2), y0 = fmax(0, (ih - sph) / 2); /* PIL refuses a negative box */
        const float box[4] = {(float)x0, (float)y0, (float)(x0 + spw), (float)(y0 + sph)};
        rc = pil_resize(src, iw, ih, K, box, W, H, px);
    } else if (s->resize == RESIZE_LETTERBOX) {
        double sc = fmin((double)W / iw, (double)H / ih);
        int nw = (int)lround(iw * sc), nh = (int)lround(ih * sc);
        nw = nw < 1 ? 1 : nw > W ? W : nw;
        nh = nh < 1 ? 1 : nh > H ? H : nh;
        mid = malloc((size_t)nw * nh * K);
        rc = !mid || pil_resize(src, iw, ih, K, full, nw, nh, mid);
        if (!rc) {
            int x0 = (W - nw) / 2, y0 = (H - nh) / 2;
            memset(px, 0, (size_t)W * H * K);
            for (int y = 0; y < nh; y++) memcpy(px + ((size_t)(y + y0) * W + x0) * K, mid + (size_t)y * nw * K, (size_t)nw * K);
        }
    } else { /* torchvision Resize(size) then CenterCrop((H, W)) */
        int rw, rh;
        if (s->resize == RESIZE_EXACT) {
            rw = s->resize_w;
            rh = s->resize_h;
        } else { /* F.resize: the shorter side to size, the longer int(size * long / short) */
            int shrt = iw <= ih ? iw : ih, lng = iw <= ih ? ih : iw;
            int nl = (int)((double)((long long)s->resize_short * lng) / (double)shrt);
            rw = iw <= ih ? s->resize_short : nl;
            rh = iw <= ih ? nl : s->resize_short;
            if (rw < 1) rw = 1;
            if (rh < 1) rh = 1;
        }
        if ((int64_t)rw * rh > (int64_t)1 << 24) rc = -2; /* 16 M pixels: an extreme aspect ratio, before the crop */
        else {
            mid = malloc((size_t)rw * rh * K);
            rc = !mid || pil_resize(src, iw, ih, K, full, rw, rh, mid);
            if (!rc) center_crop(mid, rw, rh, K, W, H, px);
        }
    }
    free(src);
    free(mid);
    if (rc == -2)
        return eng_errf(err, ENG_ETOOBIG, "resizing this %dx%d image as input.resize says would make more than 16 M pixels "
                                          "before the crop (an extreme aspect ratio)", iw, ih);
    if (rc) return eng_errf(err, ENG_ENOMEM, "out of memory while resizing");
    return ENG_OK;
}

/* tensor channel c <- image band: channel_order bgr reverses the color bands, alpha stays last */
static int band_of(const input_spec_t *s, int c) { return s->bgr && c < 3 ? 2 - c : c; }

int model_preprocess(const model_t *m, const image_t *img, float *tensor, eng_err_t *err)
{
    const input_spec_t *s = &m->input;
    const size_t hw = (size_t)s->height * s->width;
    const int K = s->color == COLOR_NONE ? 1 : color_bands(s->color);
    uint8_t *px = malloc(hw * K);
    if (!px) return eng_errf(err, ENG_ENOMEM, "out of memory");
    int rc = model_pixels(m, img, px, err);
    for (int c = 0; !rc && c < s->channels; c++) {
        const int b = band_of(s, c);
        const float mu = s->mean[c], sd = s->std[c], sc = s->scale;
        float *t = tensor + c * hw;
        for (size_t i = 0; i < hw; i++) {
            float v = (float)px[i * K + b];
            if (s->invert) v = 255.f - v;
            t[i] = (v / sc - mu) / sd; /* float32, as ToTensor's div(255) then Normalize's sub and div */
        }
    }
    free(px);
    return rc;
}

int model_view_image(const model_t *m, const image_t *img, image_t *out, eng_err_t *err)
{
    const input_spec_t *s = &m->input;
    memset(out, 0, sizeof *out);
    const size_t hw = (size_t)s->height * s->width;
    const int K = s->color == COLOR_NONE ? 1 : color_bands(s->color), D = K == 1 ? 1 : 3;
    uint8_t *px = malloc(hw * K);
    if (!px) return eng_errf(err, ENG_ENOMEM, "out of memory");
    int rc = model_pixels(m, img, px, err);
    if (!rc && !(out->data = malloc(hw * D))) rc = eng_errf(err, ENG_ENOMEM, "out of memory");
    if (!rc) {
        out->width = s->width;
        out->height = s->height;
        out->channels = D; /* the image as uploaded: not inverted, alpha dropped */
        for (size_t i = 0; i < hw; i++) memcpy(out->data + i * D, px + i * K, (size_t)D);
    }
    free(px);
    return rc;
}

int model_tensor_view(const model_t *m, const float *x, image_t *out, eng_err_t *err)
{
    const input_spec_t *s = &m->input;
    memset(out, 0, sizeof *out);
    const size_t hw = (size_t)s->height * s->width;
    const int D = s->color == COLOR_RGB || s->color == COLOR_RGBA ? 3 : 1;
    if (!(out->data = malloc(hw * D))) return eng_errf(err, ENG_ENOMEM, "out of memory");
    out->width = s->width;
    out->height = s->height;
    out->channels = D;
    if (s->color == COLOR_NONE) { /* not an image: the channel mean, stretched to 0..255 */
        float lo = INFINITY, hi = -INFINITY;
        float *mean = malloc(sizeof(float) * hw);
        if (!mean) {
            image_free(out);
            return eng_errf(err, ENG_ENOMEM, "out of memory");
        }
        for (size_t i = 0; i < hw; i++) {
            double a = 0;
            for (int c = 0; c < s->channels; c++) a += x[c * hw + i];
            mean[i] = (float)(a / s->channels);
            lo = fminf(lo, mean[i]);
            hi = fmaxf(hi, mean[i]);
        }
        for (size_t i = 0; i < hw; i++) out->data[i] = hi > lo ? (uint8_t)lrintf((mean[i] - lo) / (hi - lo) * 255.f) : 0;
        free(mean);
        return ENG_OK;
    }
    for (int d = 0; d < D; d++) {
        const int c = band_of(s, d); /* the tensor channel holding display band d */
        for (size_t i = 0; i < hw; i++) {
            float v = (x[c * hw + i] * s->std[c] + s->mean[c]) * s->scale;
            if (s->invert) v = 255.f - v;
            out->data[i * D + d] = (uint8_t)(v > 0 ? (v < 255 ? lrintf(v) : 255) : 0);
        }
    }
    return ENG_OK;
}
