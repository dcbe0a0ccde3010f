/* assets.c — lookup in the embedded file table (assets.h). */
#include "assets.h"

#include <string.h>

const asset_t *asset_find(const char *path)
{
    for (const asset_t *a = assets; a->path; a++)
        if (!strcmp(a->path, path)) return a;
    return NULL;
}
