/* onnx_load.c — ONNX ModelProto (protobuf, decoded by protobuf-c code generated at build time from
 * Debian's /usr/include/onnx/onnx.proto) -> graph_t.
 *
 * Initializers may arrive as raw_data, float_data, int64_data/int32_data, or as external data in a
 * file next to the model (torch writes this for models over 2 GiB; onnx.save(...,
 * save_as_external_data=True) for any). External locations must be relative and free of "..", and
 * the file they name must lie inside the model's folder once symbolic links are resolved; offset
 * and length are checked against the file. Anything malformed is an error, never a crash.
 */
#include "graph.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "onnx.pb-c.h"

#define MAX_TENSOR_ELEMS ((size_t)1 << 31) /* 8 GiB of float32: beyond any sane classifier */

static char *xstrdup(const char *s) { return strdup(s ? s : ""); }

int graph_add_value(graph_t *g, const char *name)
{
    if (g->n_values == g->cap_values) {
        int cap = g->cap_values ? g->cap_values * 2 : 256;
        value_t *nv = realloc(g->values, (size_t)cap * sizeof *nv);
        if (!nv) return -1;
        g->values = nv;
        g->cap_values = cap;
    }
    value_t *v = &g->values[g->n_values];
    memset(v, 0, sizeof *v);
    v->name = xstrdup(name);
    v->producer = -1;
    return g->n_values++;
}

int graph_add_const_f(graph_t *g, const char *name, int rank, const int64_t *dims, float *data)
{
    int id = graph_add_value(g, name);
    if (id < 0) return -1;
    value_t *v = &g->values[id];
    v->is_const = 1;
    v->dtype = DT_FLOAT;
    value_set_shape(v, rank, dims);
    v->size = shape_size(rank, dims);
    v->f = data;
    return id;
}

/* name -> value id, hashed; only used while loading */
typedef struct {
    char **keys;
    int *vals;
    size_t cap;
} vmap_t;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static int vmap_init(vmap_t *m, size_t n)
{
    m->cap = 64;
    while (m->cap < 2 * n + 16) m->cap *= 2;
    m->keys = calloc(m->cap, sizeof *m->keys);
    m->vals = calloc(m->cap, sizeof *m->vals);
    return m->keys && m->vals ? 0 : -1;
}

static void vmap_free(vmap_t *m)
{
    free(m->keys);
    free(m->vals);
}

static int vmap_get(const vmap_t *m, const char *k)
{
    for (size_t i = hash_str(k) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->keys[i]) return -1;
        if (!strcmp(m->keys[i], k)) return m->vals[i];
    }
}

static void vmap_put(vmap_t *m, char *k, int v) /* k is borrowed from the value */
{
    for (size_t i = hash_str(k) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->keys[i] || !strcmp(m->keys[i], k)) {
            m->keys[i] = k;
            m->vals[i] = v;
            return;
        }
    }
}

/* ---- tensors ---------------------------------------------------------------------------------- */
static int ext_path_ok(const char *loc)
{
    if (!loc || !*loc || loc[0] == '/' || loc[0] == '\\') return 0;
    if (strchr(loc, ':')) return 0; /* no drive letters or URLs */
    const char *p = loc;
    while (*p) { /* reject any ".." path component */
        const char *e = p;
        while (*e && *e != '/' && *e != '\\') e++;
        if (e - p == 2 && p[0] == '.' && p[1] == '.') return 0;
        p = *e ? e + 1 : e;
    }
    return 1;
}

static int read_external(const Onnx__TensorProto *t, const char *base_dir, void *dst, size_t nbytes,
                         eng_err_t *err)
{
    const char *loc = NULL;
    long long off = 0, len = -1;
    for (size_t i = 0; i < t->n_external_data; i++) {
        const Onnx__StringStringEntryProto *kv = t->external_data[i];
        if (!kv->key || !kv->value) continue;
        char *end;
        if (!strcmp(kv->key, "location")) loc = kv->value;
        else if (!strcmp(kv->key, "offset")) {
            errno = 0;
            off = strtoll(kv->value, &end, 10);
            if (errno || *end || off < 0)
                return eng_errf(err, ENG_EFORMAT, "initializer '%s': bad external offset '%s'", t->name, kv->value);
        } else if (!strcmp(kv->key, "length")) {
            errno = 0;
            len = strtoll(kv->value, &end, 10);
            if (errno || *end || len < 0)
                return eng_errf(err, ENG_EFORMAT, "initializer '%s': bad external length '%s'", t->name, kv->value);
        }
    }
    if (!loc) return eng_errf(err, ENG_EFORMAT, "initializer '%s': external data without a location", t->name);
    if (!ext_path_ok(loc))
        return eng_errf(err, ENG_EFORMAT,
                        "initializer '%s': external data location '%s' must be a relative path without '..'",
                        t->name, loc);
    if (!base_dir)
        return eng_errf(err, ENG_EFORMAT, "initializer '%s': external data is not allowed for in-memory models",
                        t->name);
    if (len >= 0 && (size_t)len != nbytes)
        return eng_errf(err, ENG_EFORMAT, "initializer '%s': external length %lld but the shape needs %zu bytes",
                        t->name, len, nbytes);
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", base_dir, loc) >= (int)sizeof path)
        return eng_errf(err, ENG_EFORMAT, "initializer '%s': external data path too long", t->name);
    /* a symlink inside the model's folder may point anywhere (lnk -> /etc): the file actually read
     * must lie inside the folder, after every link is resolved */
    char real_dir[PATH_MAX], real_file[PATH_MAX];
    if (!realpath(base_dir, real_dir) || !realpath(path, real_file))
        return eng_errf(err, ENG_EFORMAT, "initializer '%s': cannot open external data '%s'", t->name, loc);
    size_t rdl = strlen(real_dir);
    if (strncmp(real_file, real_dir, rdl) || (real_file[rdl] != '/' && !(rdl == 1 && real_dir[0] == '/')))
        return eng_errf(err, ENG_EFORMAT,
                        "initializer '%s': external data '%s' resolves (through a symbolic link) to a file outside the "
                        "model's folder",
                        t->name, loc);
    int fd = open(real_file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return eng_errf(err, ENG_EFORMAT, "initializer '%s': cannot open external data '%s'", t->name, loc);
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return eng_errf(err, ENG_EFORMAT, "initializer '%s': external data '%s' is not a regular file", t->name, loc);
    }
    if ((unsigned long long)off > (unsigned long long)st.st_size ||
        nbytes > (unsigned long long)st.st_size - (unsigned long long)off) {
        close(fd);
        return eng_errf(err, ENG_EFORMAT,
                        "initializer '%s': external data '%s' range [%lld, +%zu) exceeds the file (%lld bytes)", t->name,
                        loc, off, nbytes, (long long)st.st_size);
    }
    size_t got = 0;
    while (got < nbytes) {
        ssize_t r = pread(fd, (char *)dst + got, nbytes - got, off + (off_t)got);
        if (r <= 0) {
            if (r < 0 && errno == EINTR) continue;
            close(fd);
            return eng_errf(err, ENG_EIO, "initializer '%s': short read from external data '%s'", t->name, loc);
        }
        got += (size_t)r;
    }
    close(fd);
    return ENG_OK;
}

/* Convert a TensorProto into a new constant value. Floats stay float; integer and bool types
 * become int64 (they only feed shapes and indices); anything else is unsupported. */
static int load_tensor(graph_t *g, const Onnx__TensorProto *t, const char *name, const char *base_dir, int *out_id,
                       eng_err_t *err)
{
    if (t->n_dims > ENG_MAX_RANK)
        return eng_errf(err, ENG_EUNSUPPORTED, "initializer '%s': rank %zu is over %d", name, t->n_dims,
                        ENG_MAX_RANK);
    int64_t dims[ENG_MAX_RANK];
    size_t n = 1;
    for (size_t i = 0; i < t->n_dims; i++) {
        if (t->dims[i] < 0) return eng_errf(err, ENG_EFORMAT, "initializer '%s': negative dimension", name);
        dims[i] = t->dims[i];
        if (dims[i] && n > MAX_TENSOR_ELEMS / (size_t)dims[i])
            return eng_errf(err, ENG_EFORMAT, "initializer '%s': too many elements", name);
        n *= (size_t)dims[i];
    }
    if (t->segment) return eng_errf(err, ENG_EUNSUPPORTED, "initializer '%s': segmented tensors", name);
    int dt = t->data_type, esz;
    switch (dt) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: esz = 4; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: esz = 8; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: esz = 8; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: esz = 4; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL:
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8:
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: esz = 1; break;
    default:
        return eng_errf(err, ENG_EUNSUPPORTED, "initializer '%s': data type %d is not supported (float32 models only)",
                        name, dt);
    }
    int is_float = dt == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT || dt == ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE;
    size_t nbytes = n * (size_t)esz;
    unsigned char *raw = NULL; /* little-endian bytes of the stored type */
    const unsigned char *src = NULL;
    int external = t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    if (external) {
        raw = malloc(nbytes ? nbytes : 1);
        if (!raw) return eng_errf(err, ENG_ENOMEM, "initializer '%s': out of memory", name);
        int rc = read_external(t, base_dir, raw, nbytes, err);
        if (rc) {
            free(raw);
            return rc;
        }
        src = raw;
    } else if (t->has_raw_data) {
        if (t->raw_data.len != nbytes)
            return eng_errf(err, ENG_EFORMAT, "initializer '%s': raw_data has %zu bytes, shape needs %zu", name,
                            t->raw_data.len, nbytes);
        src = t->raw_data.data;
    }

    int id = graph_add_value(g, name);
    if (id < 0) {
        free(raw);
        return eng_errf(err, ENG_ENOMEM, "out of memory");
    }
    value_t *v = &g->values[id];
    v->is_const = 1;
    value_set_shape(v, (int)t->n_dims, dims);
    v->size = n;
    v->dtype = is_float ? DT_FLOAT : DT_INT64;
    if (is_float) v->f = malloc((n ? n : 1) * sizeof(float));
    else v->i64 = malloc((n ? n : 1) * sizeof(int64_t));
    if (!v->f && !v->i64) {
        free(raw);
        return eng_errf(err, ENG_ENOMEM, "initializer '%s': out of memory", name);
    }
    int rc = ENG_OK;
    if (src) {
        for (size_t i = 0; i < n; i++) {
            const unsigned char *p = src + i * (size_t)esz;
            switch (dt) {
            case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: memcpy(&v->f[i], p, 4); break;
            case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: { double d; memcpy(&d, p, 8); v->f[i] = (float)d; break; }
            case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: memcpy(&v->i64[i], p, 8); break;
            case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: { int32_t x; memcpy(&x, p, 4); v->i64[i] = x; break; }
            case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: v->i64[i] = (int8_t)p[0]; break;
            default: v->i64[i] = p[0]; break;
            }
        }
    } else {
        /* typed fields */
        size_t have = 0;
        switch (dt) {
        case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT:
            have = t->n_float_data;
            if (have == n && n) memcpy(v->f, t->float_data, n * sizeof(float)); /* float_data is NULL when empty */
            break;
        case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE:
            have = t->n_double_data;
            if (have == n) for (size_t i = 0; i < n; i++) v->f[i] = (float)t->double_data[i];
            break;
        case ONNX__TENSOR_PROTO__DATA_TYPE__INT64:
            have = t->n_int64_data;
            if (have == n && n) memcpy(v->i64, t->int64_data, n * sizeof(int64_t));
            break;
        default: /* int32, bool, uint8, int8 are stored in int32_data */
            have = t->n_int32_data;
            if (have == n) for (size_t i = 0; i < n; i++) v->i64[i] = t->int32_data[i];
            break;
        }
        if (have != n)
            rc = eng_errf(err, ENG_EFORMAT, "initializer '%s': %zu stored elements but the shape needs %zu", name, have,
                          n);
    }
    free(raw);
    if (rc) return rc;
    *out_id = id;
    return ENG_OK;
}

/* ---- attributes ------------------------------------------------------------------------------- */
static int copy_attrs(graph_t *g, node_t *nd, const Onnx__NodeProto *np, const char *base_dir, eng_err_t *err)
{
    nd->n_attr = (int)np->n_attribute;
    nd->attr = calloc(np->n_attribute ? np->n_attribute : 1, sizeof(attr_t));
    if (!nd->attr) return eng_errf(err, ENG_ENOMEM, "out of memory");
    for (size_t i = 0; i < np->n_attribute; i++) {
        const Onnx__AttributeProto *a = np->attribute[i];
        attr_t *d = &nd->attr[i];
        d->name = xstrdup(a->name);
        d->tensor = -1;
        int type = a->has_type ? (int)a->type : 0;
        if (!type) { /* old files: infer from which field is set */
            if (a->n_ints) type = AT_INTS;
            else if (a->n_floats) type = AT_FLOATS;
            else if (a->t) type = AT_TENSOR;
            else if (a->has_s) type = AT_STRING;
            else if (a->has_f) type = AT_FLOAT;
            else type = AT_INT;
        }
        d->type = type;
        switch (type) {
        case AT_FLOAT: d->f = a->f; break;
        case AT_INT: d->i = a->i; break;
        case AT_STRING:
            d->s = malloc(a->s.len + 1);
            if (!d->s) return eng_errf(err, ENG_ENOMEM, "out of memory");
            if (a->s.len) memcpy(d->s, a->s.data, a->s.len); /* an empty string may have no data */
            d->s[a->s.len] = 0;
            break;
        case AT_INTS:
            d->n = (int)a->n_ints;
            d->ints = malloc((a->n_ints ? a->n_ints : 1) * sizeof(int64_t));
            if (!d->ints) return eng_errf(err, ENG_ENOMEM, "out of memory");
            if (a->n_ints) memcpy(d->ints, a->ints, a->n_ints * sizeof(int64_t)); /* typed INTS, none given: NULL */
            break;
        case AT_FLOATS:
            d->n = (int)a->n_floats;
            d->floats = malloc((a->n_floats ? a->n_floats : 1) * sizeof(float));
            if (!d->floats) return eng_errf(err, ENG_ENOMEM, "out of memory");
            if (a->n_floats) memcpy(d->floats, a->floats, a->n_floats * sizeof(float)); /* likewise */
            break;
        case AT_TENSOR:
            if (!a->t) return eng_errf(err, ENG_EFORMAT, "node '%s': tensor attribute '%s' is empty", nd->name, d->name);
            {
                char nm[512];
                snprintf(nm, sizeof nm, "%s:%s", nd->name, d->name);
                int rc = load_tensor(g, a->t, nm, base_dir, &d->tensor, err);
                if (rc) return rc;
            }
            break;
        default: break; /* graphs, sparse tensors: only an error if an op asks for them */
        }
    }
    return ENG_OK;
}

static int node_add(graph_t *g)
{
    if (g->n_nodes == g->cap_nodes) {
        int cap = g->cap_nodes ? g->cap_nodes * 2 : 128;
        node_t *nn = realloc(g->nodes, (size_t)cap * sizeof *nn);
        if (!nn) return -1;
        g->nodes = nn;
        g->cap_nodes = cap;
    }
    node_t *n = &g->nodes[g->n_nodes];
    memset(n, 0, sizeof *n);
    n->w_in = n->b_in = -1;
    return g->n_nodes++;
}

/* ---- the model -------------------------------------------------------------------------------- */
static int input_shape(const Onnx__ValueInfoProto *vi, value_t *v, const graph_opts_t *opts, eng_err_t *err)
{
    const Onnx__TypeProto *tp = vi->type;
    if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
        return eng_errf(err, ENG_EUNSUPPORTED, "graph input '%s' is not a tensor", vi->name);
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    if (tt->has_elem_type && tt->elem_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
        return eng_errf(err, ENG_EUNSUPPORTED, "graph input '%s' has element type %d; only float32 inputs are supported",
                        vi->name, tt->elem_type);
    if (!tt->shape) return eng_errf(err, ENG_EUNSUPPORTED, "graph input '%s' has no shape", vi->name);
    size_t r = tt->shape->n_dim;
    if (r < 2 || r > ENG_MAX_RANK)
        return eng_errf(err, ENG_EUNSUPPORTED, "graph input '%s' has rank %zu; expected an image batch (N,C,H,W)",
                        vi->name, r);
    int64_t dims[ENG_MAX_RANK];
    for (size_t i = 0; i < r; i++) {
        const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
        int64_t val = d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE ? d->dim_value : -1;
        if (i == 0) val = 1; /* the batch: symbolic or 1, planned as 1 */
        else if (r == 4 && i >= 2 && opts && (i == 2 ? opts->input_h : opts->input_w) > 0) {
            int want = i == 2 ? opts->input_h : opts->input_w; /* the sidecar's: fills a symbolic size only */
            if (val > 0 && val != want)
                return eng_errf(err, ENG_EFORMAT, "sidecar: input.%s is %d but the graph input '%s' is %lld %s",
                                i == 2 ? "height" : "width", want, vi->name, (long long)val, i == 2 ? "high" : "wide");
            val = want;
        }
        if (val <= 0)
            return eng_errf(err, ENG_EUNSUPPORTED,
                            "graph input '%s': dimension %zu is symbolic; give the input size in the sidecar", vi->name, i);
        dims[i] = val;
    }
    value_set_shape(v, (int)r, dims);
    v->size = shape_size((int)r, dims) / (size_t)dims[0];
    return ENG_OK;
}

/* ---- the pre-scan: every unsupported node at once ------------------------------------------------ */
/* Before anything else is checked, find every node the engine cannot run and name them all in one
 * error, grouped by op type with counts. A node is supported when its op has a table row whose opset
 * range holds the model's opset, or when the fold pass handles it: always (Constant, Shape, Identity,
 * Dropout) or, for the load-time-only ops (fold_can_eval() == FOLD_CONST), when every input is
 * constant; constness is propagated over the file's names in dependency order (Kahn), as the fold
 * pass will see it. Linear in nodes + edges: the file is hostile until proven otherwise. */
enum { WHY_OP, WHY_OPSET, WHY_ACT, WHY_DOMAIN, WHY_N };
typedef struct {
    const char *op, *domain;
    int why;
    size_t count, first; /* nodes; index of the first one */
    size_t ex[3];         /* up to three example nodes */
} unsup_t;

#define UNSUP_NAME_MAX 48 /* characters of a node name in the message */

static void node_label(const Onnx__NodeProto *np, size_t i, char *b, size_t cap)
{
    if (np->name && *np->name) snprintf(b, cap, "%.*s%s", UNSUP_NAME_MAX, np->name,
                                        strlen(np->name) > UNSUP_NAME_MAX ? "..." : "");
    else snprintf(b, cap, "%.*s_%zu", UNSUP_NAME_MAX, np->op_type ? np->op_type : "node", i);
}

/* "Op (5 nodes: a, b, ...)" with the first `shown` (0..3) node names; returns the length it needs */
static size_t unsup_str(const unsup_t *u, const Onnx__GraphProto *gp, size_t shown, char *b, size_t cap)
{
    char why[160] = "";
    const op_def_t *d = u->why == WHY_OPSET ? op_find(u->op) : NULL;
    if (d)
        snprintf(why, sizeof why, " (implemented for opsets %d..%d)",
                 d->opset_min > ENG_OPSET_MIN ? d->opset_min : ENG_OPSET_MIN, d->opset_max ? d->opset_max : ENG_OPSET_MAX);
    else if (u->why == WHY_ACT) snprintf(why, sizeof why, " on activations (load-time only)");
    else if (u->why == WHY_DOMAIN) snprintf(why, sizeof why, " (custom domain '%.40s')", u->domain);
    size_t l = (size_t)snprintf(b, cap, "%.64s%s (%zu node%s", u->op, why, u->count, u->count == 1 ? "" : "s");
    if (shown > u->count) shown = u->count;
    for (size_t k = 0; k < shown; k++) {
        char nm[UNSUP_NAME_MAX + 40];
        node_label(gp->node[u->ex[k]], u->ex[k], nm, sizeof nm);
        l += (size_t)snprintf(l < cap ? b + l : NULL, l < cap ? cap - l : 0, "%s%s", k ? ", " : ": ", nm);
    }
    if (shown && u->count > shown) l += (size_t)snprintf(l < cap ? b + l : NULL, l < cap ? cap - l : 0, ", ...");
    l += (size_t)snprintf(l < cap ? b + l : NULL, l < cap ? cap - l : 0, ")");
    return l;
}

static int unsup_cmp(const void *a, const void *b)
{
    const unsup_t *x = a, *y = b;
    if (x->count != y->count) return x->count < y->count ? 1 : -1;
    return x->first < y->first ? -1 : x->first > y->first;
}

/* The error message: as many groups as fit, then node names while there is room, one more name per
 * group in each round (so every group shows an example before any shows three). */
static int unsup_report(unsup_t *u, size_t ng, size_t nodes, const Onnx__GraphProto *gp, int opset, eng_err_t *err)
{
    qsort(u, ng, sizeof *u, unsup_cmp);
    char msg[sizeof err->msg], part[512];
    size_t cap = sizeof msg, l = (size_t)snprintf(msg, cap, "%zu unsupported op type%s at opset %d (%zu node%s): ", ng,
                                                  ng == 1 ? "" : "s", opset, nodes, nodes == 1 ? "" : "s");
    const char *tail = "; supported ops: `explaind ops`";
    size_t reserve = strlen(tail) + 24; /* "; and 123456 more" */
    size_t fit = 0, used = l, shown[16] = {0}; /* groups beyond the 16th get no names */
    for (; fit < ng; fit++) {
        size_t need = unsup_str(&u[fit], gp, 0, part, sizeof part) + (fit ? 2 : 0);
        if (used + need + reserve >= cap) break;
        used += need;
    }
    for (size_t round = 1; round <= 3; round++)
        for (size_t k = 0; k < fit && k < 16; k++) {
            if (shown[k] != round - 1 || u[k].count < round) continue;
            size_t before = unsup_str(&u[k], gp, shown[k], part, sizeof part);
            size_t after = unsup_str(&u[k], gp, round, part, sizeof part);
            if (after >= sizeof part || used - before + after + reserve >= cap) continue;
            used += after - before;
            shown[k] = round;
        }
    for (size_t k = 0; k < fit; k++) {
        unsup_str(&u[k], gp, k < 16 ? shown[k] : 0, part, sizeof part);
        l += (size_t)snprintf(msg + l, cap - l, "%s%s", k ? "; " : "", part);
    }
    if (fit < ng) l += (size_t)snprintf(msg + l, cap - l, "; and %zu more", ng - fit);
    snprintf(msg + l, cap - l, "%s", tail);
    return eng_errf(err, ENG_EUNSUPPORTED, "%s", msg);
}

static int scan_unsupported(const Onnx__GraphProto *gp, int opset, eng_err_t *err)
{
    size_t nn = gp->n_node, nv = gp->n_initializer + gp->n_input;
    for (size_t i = 0; i < nn; i++) nv += gp->node[i]->n_output;
    vmap_t names = {0}, groups[WHY_N] = {{0}};
    int *prod = malloc(sizeof(int) * (nv + 1)); /* value slot -> producing node, -1: initializer or input */
    char *cst = calloc(nv + 1, 1);                /* value slot is constant */
    size_t *pend = calloc(nn + 1, sizeof(size_t)), *queue = malloc(sizeof(size_t) * (nn + 1));
    size_t *cstart = calloc(nv + 2, sizeof(size_t)), *cons = NULL, *fill = NULL, nedge = 0;
    char *done = calloc(nn + 1, 1);
    unsup_t *u = calloc(nn + 1, sizeof *u);
    int rc = vmap_init(&names, nv);
    for (int w = 0; w < WHY_N; w++) rc |= vmap_init(&groups[w], nn);
    if (rc || !prod || !cst || !pend || !queue || !cstart || !done || !u) {
        rc = eng_errf(err, ENG_ENOMEM, "out of memory");
        goto out;
    }
    int slots = 0;
    for (size_t i = 0; i < gp->n_initializer; i++) {
        const char *nm = gp->initializer[i]->name;
        if (!nm || !*nm || vmap_get(&names, nm) >= 0) continue;
        prod[slots] = -1;
        cst[slots] = 1;
        vmap_put(&names, (char *)nm, slots++);
    }
    for (size_t i = 0; i < gp->n_input; i++) {
        const char *nm = gp->input[i]->name;
        if (!nm || !*nm || vmap_get(&names, nm) >= 0) continue;
        prod[slots] = -1;
        vmap_put(&names, (char *)nm, slots++);
    }
    for (size_t i = 0; i < nn; i++)
        for (size_t k = 0; k < gp->node[i]->n_output; k++) {
            const char *nm = gp->node[i]->output[k];
            if (!nm || !*nm || vmap_get(&names, nm) >= 0) continue; /* defined twice: build_graph says so */
            prod[slots] = (int)i;
            vmap_put(&names, (char *)nm, slots++);
        }
    /* consumers (CSR) and, per node, how many inputs wait for another node */
    for (size_t i = 0; i < nn; i++)
        for (size_t k = 0; k < gp->node[i]->n_input; k++) {
            const char *nm = gp->node[i]->input[k];
            int v = nm && *nm ? vmap_get(&names, nm) : -1;
            if (v < 0 || prod[v] < 0) continue;
            cstart[v + 1]++;
            pend[i]++;
            nedge++;
        }
    for (int v = 0; v < slots; v++) cstart[v + 1] += cstart[v];
    cons = malloc(sizeof(size_t) * (nedge + 1));
    fill = calloc((size_t)slots + 1, sizeof(size_t));
    if (!cons || !fill) {
        rc = eng_errf(err, ENG_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nn; i++)
        for (size_t k = 0; k < gp->node[i]->n_input; k++) {
            const char *nm = gp->node[i]->input[k];
            int v = nm && *nm ? vmap_get(&names, nm) : -1;
            if (v >= 0 && prod[v] >= 0) cons[cstart[v] + fill[v]++] = i;
        }
    size_t qh = 0, qt = 0, ng = 0, bad = 0;
    for (size_t i = 0; i < nn; i++)
        if (!pend[i]) queue[qt++] = i;
    /* nodes in dependency order; nodes on a cycle are left for the second round, which takes them in
     * file order, each once (build_graph's topological sort reports the cycle) */
    for (size_t step = 0; step < 2; step++) {
        for (; qh < qt; qh++) {
            size_t i = queue[qh];
            const Onnx__NodeProto *np = gp->node[i];
            done[i] = 1;
            const char *op = np->op_type ? np->op_type : "";
            int all_const = 1, any = 0;
            for (size_t k = 0; k < np->n_input; k++) {
                const char *nm = np->input[k];
                if (!nm || !*nm) continue;
                int v = vmap_get(&names, nm);
                any = 1;
                all_const &= v >= 0 && cst[v];
            }
            int fold = fold_can_eval(op), why = -1;
            const op_def_t *d = op_find(op);
            if (np->domain && *np->domain && strcmp(np->domain, "ai.onnx")) why = WHY_DOMAIN;
            else if (!*op) why = -1; /* no op type: build_graph reports it */
            else if (d && ((d->opset_min && opset < d->opset_min) || (d->opset_max && opset > d->opset_max)))
                why = fold == FOLD_CONST && any && all_const ? -1 : WHY_OPSET;
            else if (!d && !fold) why = WHY_OP;
            else if (!d && fold == FOLD_CONST && !(any && all_const)) why = WHY_ACT;
            /* constant outputs, as graph_fold_constants will see them: it evaluates every node whose inputs
             * are all constant, and Constant and Shape always (Identity and Dropout pass their input on) */
            int out_const = any && all_const;
            if (fold == FOLD_ALWAYS && strcmp(op, "Identity") && strcmp(op, "Dropout")) out_const = 1;
            if (why >= 0) {
                out_const = 0;
                bad++;
                int gi = vmap_get(&groups[why], op);
                if (gi < 0) {
                    gi = (int)ng++;
                    u[gi] = (unsup_t){.op = op, .domain = np->domain ? np->domain : "", .why = why, .first = i};
                    vmap_put(&groups[why], (char *)op, gi);
                }
                if (u[gi].count < 3) u[gi].ex[u[gi].count] = i;
                u[gi].count++;
            }
            for (size_t k = 0; k < np->n_output; k++) {
                const char *nm = np->output[k];
                int v = nm && *nm ? vmap_get(&names, nm) : -1;
                if (v < 0 || prod[v] != (int)i) continue;
                cst[v] = (char)out_const;
                for (size_t c = cstart[v]; c < cstart[v + 1]; c++)
                    if (--pend[cons[c]] == 0 && !step) queue[qt++] = cons[c];
            }
        }
        for (size_t i = 0; i < nn && !step; i++)
            if (!done[i]) queue[qt++] = i;
    }
    rc = bad ? unsup_report(u, ng, bad, gp, opset, err) : ENG_OK;
out:
    vmap_free(&names);
    for (int w = 0; w < WHY_N; w++) vmap_free(&groups[w]);
    free(prod); free(cst); free(pend); free(queue); free(cstart); free(cons); free(fill); free(done); free(u);
    return rc;
}

static int build_graph(graph_t *g, const Onnx__ModelProto *m, const char *base_dir, const graph_opts_t *opts,
                       eng_err_t *err)
{
    g->opset = 0;
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *os = m->opset_import[i];
        if (!os->domain || !*os->domain || !strcmp(os->domain, "ai.onnx")) g->opset = (int)os->version;
    }
    if (!g->opset && m->n_opset_import == 0) g->opset = 9; /* very old files: assume the oldest we support */
    if (g->opset < ENG_OPSET_MIN || g->opset > ENG_OPSET_MAX)
        return eng_errf(err, ENG_EUNSUPPORTED, "opset %d is not supported (supported: %d..%d, tested 9..18)", g->opset,
                        ENG_OPSET_MIN, ENG_OPSET_MAX);
    const Onnx__GraphProto *gp = m->graph;
    if (!gp) return eng_errf(err, ENG_EFORMAT, "the file has no graph");
    int rc = scan_unsupported(gp, g->opset, err);
    if (rc) return rc;
    if (!gp->n_output) return eng_errf(err, ENG_EFORMAT, "the graph has no output");

    vmap_t map;
    size_t expect = gp->n_initializer + gp->n_input + gp->n_node * 2 + 16;
    if (vmap_init(&map, expect)) return eng_errf(err, ENG_ENOMEM, "out of memory");

    for (size_t i = 0; i < gp->n_initializer && !rc; i++) {
        const Onnx__TensorProto *t = gp->initializer[i];
        if (!t->name || !*t->name) {
            rc = eng_errf(err, ENG_EFORMAT, "initializer %zu has no name", i);
            break;
        }
        int id;
        rc = load_tensor(g, t, t->name, base_dir, &id, err);
        if (!rc) vmap_put(&map, g->values[id].name, id);
    }
    /* the image input: the first graph input that is not an initializer */
    g->input = -1;
    for (size_t i = 0; i < gp->n_input && !rc; i++) {
        const Onnx__ValueInfoProto *vi = gp->input[i];
        if (!vi->name || vmap_get(&map, vi->name) >= 0) continue;
        if (g->input >= 0) {
            rc = eng_errf(err, ENG_EUNSUPPORTED, "the graph has more than one input ('%s' and '%s')",
                          g->values[g->input].name, vi->name);
            break;
        }
        int id = graph_add_value(g, vi->name);
        if (id < 0) { rc = eng_errf(err, ENG_ENOMEM, "out of memory"); break; }
        rc = input_shape(vi, &g->values[id], opts, err);
        vmap_put(&map, g->values[id].name, id);
        g->input = id;
    }
    if (!rc && g->input < 0) rc = eng_errf(err, ENG_EFORMAT, "the graph has no image input");

    for (size_t i = 0; i < gp->n_node && !rc; i++) {
        const Onnx__NodeProto *np = gp->node[i];
        int ni = node_add(g);
        if (ni < 0) { rc = eng_errf(err, ENG_ENOMEM, "out of memory"); break; }
        node_t *nd = &g->nodes[ni];
        char nm[64];
        snprintf(nm, sizeof nm, "%s_%zu", np->op_type ? np->op_type : "node", i);
        nd->name = xstrdup(np->name && *np->name ? np->name : nm);
        nd->op_type = xstrdup(np->op_type);
        nd->display = xstrdup(np->op_type);
        if (!np->op_type || !*np->op_type) { rc = eng_errf(err, ENG_EFORMAT, "node '%s' has no op type", nd->name); break; }
        if (np->domain && *np->domain && strcmp(np->domain, "ai.onnx")) {
            rc = eng_errf(err, ENG_EUNSUPPORTED, "node '%s' (%s): custom domain '%s' is not supported", nd->name,
                          np->op_type, np->domain);
            break;
        }
        nd->n_in = (int)np->n_input;
        nd->n_out = (int)np->n_output;
        nd->in = malloc(sizeof(int) * (np->n_input + 1));
        nd->out = malloc(sizeof(int) * (np->n_output + 1));
        if (!nd->in || !nd->out) { rc = eng_errf(err, ENG_ENOMEM, "out of memory"); break; }
        rc = copy_attrs(g, nd, np, base_dir, err);
        nd = &g->nodes[ni]; /* copy_attrs may add values but not nodes; pointer stays valid */
        if (rc) break;
        for (size_t k = 0; k < np->n_input && !rc; k++) {
            const char *in = np->input[k];
            if (!in || !*in) { nd->in[k] = -1; continue; }
            int id = vmap_get(&map, in);
            if (id < 0)
                rc = eng_errf(err, ENG_EFORMAT, "node '%s' (%s, opset %d): input '%s' is not produced by any node, "
                              "initializer or graph input (missing initializer?)", nd->name, nd->op_type, g->opset, in);
            nd->in[k] = id;
        }
        if (rc) break;
        if (np->n_output == 0) { rc = eng_errf(err, ENG_EFORMAT, "node '%s' has no outputs", nd->name); break; }
        for (size_t k = 0; k < np->n_output && !rc; k++) {
            const char *on = np->output[k];
            if (!on || !*on) { nd->out[k] = -1; continue; }
            if (vmap_get(&map, on) >= 0) {
                rc = eng_errf(err, ENG_EFORMAT, "node '%s': output '%s' is defined twice", nd->name, on);
                break;
            }
            int id = graph_add_value(g, on);
            if (id < 0) { rc = eng_errf(err, ENG_ENOMEM, "out of memory"); break; }
            g->values[id].producer = ni;
            vmap_put(&map, g->values[id].name, id);
            nd->out[k] = id;
        }
    }
    if (!rc) {
        const char *on = gp->output[0]->name;
        g->output = on ? vmap_get(&map, on) : -1;
        if (g->output < 0) rc = eng_errf(err, ENG_EFORMAT, "graph output '%s' is not produced", on ? on : "");
    }
    vmap_free(&map);
    return rc;
}

static int load_mem(const void *buf, size_t len, const char *base_dir, const graph_opts_t *opts, graph_t **out,
                    eng_err_t *err)
{
    *out = NULL;
    if (!buf || len == 0) return eng_errf(err, ENG_EFORMAT, "the model file is empty");
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, buf);
    if (!m) return eng_errf(err, ENG_EFORMAT, "not a valid ONNX file (protobuf decoding failed: truncated or corrupt)");
    graph_t *g = calloc(1, sizeof *g);
    if (!g) {
        onnx__model_proto__free_unpacked(m, NULL);
        return eng_errf(err, ENG_ENOMEM, "out of memory");
    }
    g->input = g->output = -1;
    int rc = build_graph(g, m, base_dir, opts, err);
    onnx__model_proto__free_unpacked(m, NULL);
    if (!rc) rc = graph_fold_constants(g, err);
    if (!rc) rc = graph_fuse(g, err);
    if (!rc && !(opts && opts->no_fold_bn)) rc = graph_fold_batchnorm(g, err);
    if (!rc) rc = graph_finalize(g, err);
    if (rc) {
        graph_free(g);
        return rc;
    }
    *out = g;
    return ENG_OK;
}

int graph_load_onnx_mem(const void *buf, size_t len, const char *base_dir, const graph_opts_t *opts, graph_t **out,
                        eng_err_t *err)
{
    return load_mem(buf, len, base_dir, opts, out, err);
}

int graph_load_onnx(const char *path, const graph_opts_t *opts, graph_t **out, eng_err_t *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return eng_errf(err, errno == ENOENT ? ENG_ENOTFOUND : ENG_EIO, "cannot open model file");
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return eng_errf(err, ENG_EIO, "the model path is not a regular file");
    }
    if (st.st_size == 0) {
        close(fd);
        return eng_errf(err, ENG_EFORMAT, "the model file is empty");
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return eng_errf(err, ENG_EIO, "cannot map the model file");
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (slash) {
        size_t l = (size_t)(slash - path);
        if (l >= sizeof dir) l = sizeof dir - 1;
        memcpy(dir, path, l);
        dir[l] = 0;
        if (!l) strcpy(dir, "/");
    } else {
        strcpy(dir, ".");
    }
    int rc = load_mem(p, (size_t)st.st_size, dir, opts, out, err);
    munmap(p, (size_t)st.st_size);
    return rc;
}

void graph_free(graph_t *g)
{
    if (!g) return;
    for (int i = 0; i < g->n_values; i++) {
        free(g->values[i].name);
        free(g->values[i].f);
        free(g->values[i].i64);
    }
    for (int i = 0; i < g->n_nodes; i++) {
        node_t *n = &g->nodes[i];
        free(n->name);
        free(n->op_type);
        free(n->display);
        free(n->in);
        free(n->out);
        free(n->p);
        for (int k = 0; k < n->n_attr; k++) {
            free(n->attr[k].name);
            free(n->attr[k].s);
            free(n->attr[k].ints);
            free(n->attr[k].floats);
        }
        free(n->attr);
    }
    for (int i = 0; i < g->n_aliases; i++) free(g->aliases[i].name);
    free(g->aliases);
    free(g->values);
    free(g->nodes);
    free(g);
}
