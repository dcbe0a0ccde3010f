/* model.c — a model is a graph plus its sidecar (models_dir/NAME.json), and preprocessing.
 *
 * Sidecar keys (shared/API.md, "Model directory and sidecar"): labels | labels_file, input
 * {color, height, width, scale, mean, std, resize, invert}, cam_layer, attention_layers,
 * label_randomized_twin, randomization_groups. Unknown keys are an error naming them. Without a
 * sidecar: input shape from the graph, labels class_0.., rgb (gray for 1 channel), mean 0, std 1,
 * scale 255, cam_layer auto-detected.
 *
 * Preprocessing: convert color (RGB -> gray with PIL's ITU-R 601-2 luma, gray -> RGB by
 * replication), resize (stretch, center_crop: shorter side to the model's larger side then a
 * centred crop, letterbox: fit inside and pad with black), invert, then (pixel/scale - mean)/std.
 * Resizing is separable bilinear with PIL's antialias (the triangle filter widened by the scale
 * when shrinking), which is what torchvision's Resize does to PIL images.
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

static int parse_input_spec(json_t *in, int channels_hint, input_spec_t *s, eng_err_t *err)
{
    static const char *const keys[] = {"color", "height", "width", "scale", "mean", "std", "resize", "invert", NULL};
    if (!json_is_object(in)) return eng_errf(err, ENG_EFORMAT, "sidecar: 'input' must be an object");
    int rc = check_keys(in, keys, "'input'", err);
    if (rc) return rc;
    json_t *v;
    if ((v = json_object_get(in, "color"))) {
        const char *c = json_string_value(v);
        if (!c || (strcmp(c, "gray") && strcmp(c, "rgb")))
            return eng_errf(err, ENG_EFORMAT, "sidecar: input.color must be \"gray\" or \"rgb\"");
        s->channels = !strcmp(c, "gray") ? 1 : 3;
    } else if (channels_hint) {
        s->channels = channels_hint;
    }
    const char *dims[2] = {"height", "width"};
    int *dst[2] = {&s->height, &s->width};
    for (int i = 0; i < 2; i++)
        if ((v = json_object_get(in, dims[i]))) {
            if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 8192)
                return eng_errf(err, ENG_EFORMAT, "sidecar: input.%s must be an integer in 1..8192", dims[i]);
            *dst[i] = (int)json_integer_value(v);
        }
    if ((v = json_object_get(in, "scale"))) {
        if (!json_is_number(v) || !(json_number_value(v) > 0 && json_number_value(v) <= FLT_MAX))
            return eng_errf(err, ENG_EFORMAT, "sidecar: input.scale must be a positive number a float can hold");
        s->scale = (float)json_number_value(v);
    }
    const char *arrs[2] = {"mean", "std"};
    float *adst[2] = {s->mean, s->std};
    for (int k = 0; k < 2; k++) {
        if (!(v = json_object_get(in, arrs[k]))) continue;
        size_t n = json_array_size(v);
        if (!json_is_array(v) || (n != 1 && n != 3))
            return eng_errf(err, ENG_EFORMAT, "sidecar: input.%s must be an array of 1 or 3 numbers", arrs[k]);
        for (size_t i = 0; i < 3; i++) {
            json_t *e = json_array_get(v, n == 1 ? 0 : i);
            if (!json_is_number(e) || !(fabs(json_number_value(e)) <= FLT_MAX)) /* a float must hold it */
                return eng_errf(err, ENG_EFORMAT, "sidecar: input.%s has a non-number or one out of float range", arrs[k]);
            adst[k][i] = (float)json_number_value(e);
            if (k == 1 && adst[k][i] <= 0) return eng_errf(err, ENG_EFORMAT, "sidecar: input.std must be > 0");
        }
    }
    if ((v = json_object_get(in, "resize"))) {
        const char *r = json_string_value(v);
        if (!r) return eng_errf(err, ENG_EFORMAT, "sidecar: input.resize must be a string");
        if (!strcmp(r, "stretch")) s->resize = RESIZE_STRETCH;
        else if (!strcmp(r, "center_crop")) s->resize = RESIZE_CENTER_CROP;
        else if (!strcmp(r, "letterbox")) s->resize = RESIZE_LETTERBOX;
        else return eng_errf(err, ENG_EFORMAT, "sidecar: input.resize must be stretch, center_crop or letterbox");
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
    if ((v = json_object_get(root, "input")) && (rc = parse_input_spec(v, 0, &m->input, err))) goto out;
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
        m->cam_value = graph_find_value(g, nm);
        if (m->cam_value < 0) return eng_errf(err, ENG_EFORMAT, "sidecar: cam_layer '%s' is not a node or value of the graph", nm);
        if (g->values[m->cam_value].rank != 4)
            return eng_errf(err, ENG_EFORMAT, "sidecar: cam_layer '%s' is not a 4-D feature map", nm);
    } else {
        m->cam_value = graph_detect_cam_value(g);
    }
    if (root && (v = json_object_get(root, "attention_layers"))) {
        size_t n = json_array_size(v);
        m->attention_values = calloc(n + 1, sizeof(int));
        if (!m->attention_values) return eng_errf(err, ENG_ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
            const char *nm = json_string_value(json_array_get(v, i));
            int id = graph_find_value(g, nm);
            if (id < 0) return eng_errf(err, ENG_EFORMAT, "sidecar: attention layer '%s' is not in the graph", nm);
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
    for (int i = 0; i < 3; i++) {
        s->mean[i] = 0.f;
        s->std[i] = 1.f;
    }
    s->resize = RESIZE_STRETCH;
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
        if (in->rank != 4 || (in->dims[1] != 1 && in->dims[1] != 3))
            rc = eng_errf(err, ENG_EUNSUPPORTED, "the model input must be an image batch (N, 1|3, H, W)");
        else {
            int C = (int)in->dims[1];
            if (!m->input.channels) m->input.channels = C;
            if (m->input.channels != C)
                rc = eng_errf(err, ENG_EFORMAT, "sidecar: input.color says %d channels but the graph takes %d",
                              m->input.channels, C);
            if (m->input.height && m->input.height != in->dims[2])
                rc = eng_errf(err, ENG_EFORMAT, "sidecar: input.height %d but the graph takes %lld", m->input.height,
                              (long long)in->dims[2]);
            if (m->input.width && m->input.width != in->dims[3])
                rc = eng_errf(err, ENG_EFORMAT, "sidecar: input.width %d but the graph takes %lld", m->input.width,
                              (long long)in->dims[3]);
            m->input.height = (int)in->dims[2];
            m->input.width = (int)in->dims[3];
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

/* ---- preprocessing -------------------------------------------------------------------------------- */
/* PIL-style resampling coefficients for one axis: for each output index, a window and weights. */
typedef struct {
    int *lo, *n;
    float *w;
    int ksize;
} coefs_t;

static int coefs_make(int in, int out, double offset, double span, coefs_t *c)
{
    /* map output [0,out) onto input [offset, offset+span) */
    double scale = span / out, fscale = scale > 1 ? scale : 1.0, support = fscale; /* bilinear support 1 */
    c->ksize = (int)ceil(support) * 2 + 1;
    c->lo = malloc(sizeof(int) * out);
    c->n = malloc(sizeof(int) * out);
    c->w = calloc((size_t)out * c->ksize, sizeof(float));
    if (!c->lo || !c->n || !c->w) return -1;
    for (int i = 0; i < out; i++) {
        double center = offset + (i + 0.5) * scale;
        int xmin = (int)floor(center - support + 0.5), xmax = (int)floor(center + support + 0.5);
        if (xmin < 0) xmin = 0;
        if (xmax > in) xmax = in;
        int n = xmax - xmin;
        if (n > c->ksize) n = c->ksize;
        double tot = 0;
        float *w = c->w + (size_t)i * c->ksize;
        for (int k = 0; k < n; k++) {
            double x = (k + xmin - center + 0.5) / fscale;
            double t = 1.0 - fabs(x);
            w[k] = t > 0 ? (float)t : 0.f;
            tot += w[k];
        }
        if (tot > 0)
            for (int k = 0; k < n; k++) w[k] = (float)(w[k] / tot);
        c->lo[i] = xmin;
        c->n[i] = n;
    }
    return 0;
}

static void coefs_free(coefs_t *c)
{
    free(c->lo);
    free(c->n);
    free(c->w);
}

/* src: float planes (C, sh, sw); region [ox,ox+spw) x [oy,oy+sph) -> dst (C, dh, dw) */
static int resample(const float *src, int C, int sh, int sw, double ox, double oy, double spw, double sph, float *dst,
                    int dh, int dw)
{
    coefs_t cx, cy;
    memset(&cx, 0, sizeof cx);
    memset(&cy, 0, sizeof cy);
    float *tmp = malloc(sizeof(float) * (size_t)C * sh * dw);
    int rc = (!tmp || coefs_make(sw, dw, ox, spw, &cx) || coefs_make(sh, dh, oy, sph, &cy)) ? -1 : 0;
    if (!rc) {
        for (int c = 0; c < C; c++) {
            for (int y = 0; y < sh; y++) {
                const float *row = src + ((size_t)c * sh + y) * sw;
                float *o = tmp + ((size_t)c * sh + y) * dw;
                for (int x = 0; x < dw; x++) {
                    const float *w = cx.w + (size_t)x * cx.ksize;
                    float s = 0;
                    for (int k = 0; k < cx.n[x]; k++) s += w[k] * row[cx.lo[x] + k];
                    o[x] = s;
                }
            }
            for (int y = 0; y < dh; y++) {
                const float *w = cy.w + (size_t)y * cy.ksize;
                float *o = dst + ((size_t)c * dh + y) * dw;
                for (int x = 0; x < dw; x++) o[x] = 0;
                for (int k = 0; k < cy.n[y]; k++) {
                    const float *r = tmp + ((size_t)c * sh + cy.lo[y] + k) * dw;
                    for (int x = 0; x < dw; x++) o[x] += w[k] * r[x];
                }
            }
        }
    }
    free(tmp);
    coefs_free(&cx);
    coefs_free(&cy);
    return rc;
}

/* Image -> planar float pixels (C, H, W) at the model size, in 0..255, color-converted and
 * inverted as the spec says. */
static int model_pixels(const model_t *m, const image_t *img, float *px, eng_err_t *err)
{
    const input_spec_t *s = &m->input;
    const int C = s->channels, H = s->height, W = s->width;
    if (!img || !img->data || img->width < 1 || img->height < 1 || (img->channels != 1 && img->channels != 3))
        return eng_errf(err, ENG_EINVAL, "empty or malformed image");
    const int iw = img->width, ih = img->height;
    float *planes = malloc(sizeof(float) * (size_t)C * iw * ih);
    if (!planes) return eng_errf(err, ENG_ENOMEM, "out of memory");
    for (int y = 0; y < ih; y++)
        for (int x = 0; x < iw; x++) {
            const uint8_t *p = img->data + ((size_t)y * iw + x) * img->channels;
            for (int c = 0; c < C; c++) {
                float v;
                if (C == img->channels) v = p[c];
                else if (C == 3) v = p[0];
                else v = (float)((p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16); /* PIL "L" */
                planes[((size_t)c * ih + y) * iw + x] = v;
            }
        }
    int rc = 0;
    if (iw == W && ih == H) {
        memcpy(px, planes, sizeof(float) * (size_t)C * H * W);
    } else if (s->resize == RESIZE_STRETCH) {
        rc = resample(planes, C, ih, iw, 0, 0, iw, ih, px, H, W);
    } else if (s->resize == RESIZE_CENTER_CROP) {
        /* scale so the image covers W x H, then take the centred W x H window */
        double sc = fmax((double)W / iw, (double)H / ih);
        double spw = W / sc, sph = H / sc;
        rc = resample(planes, C, ih, iw, (iw - spw) / 2, (ih - sph) / 2, spw, sph, px, H, W);
    } else {
        double sc = fmin((double)W / iw, (double)H / ih);
        int nw = (int)lround(iw * sc), nh = (int)lround(ih * sc);
        if (nw < 1) nw = 1;
        if (nh < 1) nh = 1;
        float *tmp = malloc(sizeof(float) * (size_t)C * nw * nh);
        if (!tmp) rc = -1;
        else {
            rc = resample(planes, C, ih, iw, 0, 0, iw, ih, tmp, nh, nw);
            int x0 = (W - nw) / 2, y0 = (H - nh) / 2;
            memset(px, 0, sizeof(float) * (size_t)C * H * W);
            for (int c = 0; c < C; c++)
                for (int y = 0; y < nh; y++)
                    memcpy(px + ((size_t)c * H + y + y0) * W + x0, tmp + ((size_t)c * nh + y) * nw, sizeof(float) * nw);
            free(tmp);
        }
    }
    free(planes);
    if (rc) return eng_errf(err, ENG_ENOMEM, "out of memory while resizing");
    if (s->invert)
        for (size_t i = 0; i < (size_t)C * H * W; i++) px[i] = 255.f - px[i];
    return ENG_OK;
}

int model_preprocess(const model_t *m, const image_t *img, float *tensor, eng_err_t *err)
{
    const input_spec_t *s = &m->input;
    int rc = model_pixels(m, img, tensor, err);
    if (rc) return rc;
    const size_t hw = (size_t)s->height * s->width;
    for (int c = 0; c < s->channels; c++) {
        float mu = s->mean[c], sd = s->std[c], sc = s->scale;
        float *t = tensor + c * hw;
        for (size_t i = 0; i < hw; i++) t[i] = (t[i] / sc - mu) / sd;
    }
    return ENG_OK;
}

int model_view_image(const model_t *m, const image_t *img, image_t *out, eng_err_t *err)
{
    const input_spec_t *s = &m->input;
    memset(out, 0, sizeof *out);
    const size_t hw = (size_t)s->height * s->width;
    float *px = malloc(sizeof(float) * hw * s->channels);
    if (!px) return eng_errf(err, ENG_ENOMEM, "out of memory");
    int rc = model_pixels(m, img, px, err);
    if (!rc) {
        out->data = malloc(hw * s->channels);
        if (!out->data) rc = eng_errf(err, ENG_ENOMEM, "out of memory");
    }
    if (!rc) {
        out->width = s->width;
        out->height = s->height;
        out->channels = s->channels;
        for (size_t i = 0; i < hw; i++)
            for (int c = 0; c < s->channels; c++) {
                float v = px[c * hw + i];
                if (s->invert) v = 255.f - v; /* show the image as uploaded, not inverted */
                out->data[i * s->channels + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : lrintf(v));
            }
    }
    free(px);
    return rc;
}
