/* assets.h — files embedded at build time (scripts/embed-assets.sh): openapi.yaml and the
 * dashboard under web/. The binary serves them without touching the filesystem. */
#ifndef EXPLAIND_ASSETS_H
#define EXPLAIND_ASSETS_H

#include <stddef.h>

typedef struct {
    const char *path;         /* URL path: "/openapi.yaml", "/" for web/index.html, "/app.js" ... */
    const unsigned char *data;
    size_t len;
    const char *content_type;
} asset_t;

extern const asset_t assets[]; /* terminated by {0} */
const asset_t *asset_find(const char *path);

#endif
