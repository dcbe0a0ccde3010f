/* routes.c — the route table and its matcher (see routes.h). */
#include "routes.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "engine.h"
#include "params.h"

/* The rows of routes.def, each with `tmpl` 0 for the rows the server matches itself (the
 * dashboard's assets, OPTIONS, no match). */
static const struct {
    route_t r;
    int tmpl;
} table[RT_COUNT] = {
#define ROUTE(id, path, post, auth, params, kserve, images, tmpl) [RT_##id] = {{path, post, auth, params, kserve, images}, tmpl},
#include "routes.def"
#undef ROUTE
};

const route_t *route_get(int rt) { return &table[rt >= 0 && rt < RT_COUNT ? rt : RT_NOT_FOUND].r; }

static int model_char(char c) { return isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.'; }

/* Does url match the template t (from a placeholder or literal on)? Placeholders fill m; {layer}
 * tries its longest value first, so ".../a/b/activations" names layer "a/b". */
static int match(const char *t, const char *u, route_match_t *m)
{
    if (!*t) return !*u;
    if (*t != '{') return *t == *u && match(t + 1, u + 1, m);
    const char *close = strchr(t, '}');
    size_t nl = (size_t)(close - t + 1);
    const char *rest = close + 1;
    if (!strncmp(t, "{model}", nl)) {
        size_t n = 0;
        while (model_char(u[n])) n++;
        if (!n || n >= sizeof m->model || u[0] == '.' || !match(rest, u + n, m)) return 0;
        snprintf(m->model, sizeof m->model, "%.*s", (int)n, u);
        return 1;
    }
    if (!strncmp(t, "{index}", nl)) {
        size_t n = 0;
        while (isdigit((unsigned char)u[n])) n++;
        if (!n || n > 9 || !match(rest, u + n, m)) return 0;
        m->index = 0;
        for (size_t i = 0; i < n; i++) m->index = m->index * 10 + (u[i] - '0');
        return 1;
    }
    /* {layer} */
    for (size_t n = strlen(u); n > 0; n--)
        if (n < sizeof m->layer && match(rest, u + n, m)) {
            snprintf(m->layer, sizeof m->layer, "%.*s", (int)n, u);
            return 1;
        }
    return 0;
}

int route_match(const char *url, route_match_t *m)
{
    memset(m, 0, sizeof *m);
    for (int rt = 0; rt < RT_COUNT; rt++)
        if (table[rt].tmpl && match(table[rt].r.path, url, m)) {
            m->route = rt;
            return 0;
        }
    m->route = RT_NOT_FOUND;
    return -1;
}
