/* errors.c — the engine's error values (engine.h): eng_errf fills an eng_err_t, eng_status_name
 * names a status for logs and JSON, image_free releases a decoded image.
 *
 * Errors are values: a function that fails on input returns an ENG_E* status and leaves a sentence
 * for the user in err->msg. err may be NULL when the caller only wants the status. */
#include "engine.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int eng_errf(eng_err_t *err, int status, const char *fmt, ...)
{
    if (!err) return status;
    err->status = status;
    va_list ap;
    va_start(ap, fmt);
    /* vsnprintf truncates and always terminates: a long message is cut, never overflows. */
    int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    if (n < 0) err->msg[0] = '\0';
    return status;
}

const char *eng_status_name(int status)
{
    switch (status) {
    case ENG_OK: return "ok";
    case ENG_EINVAL: return "invalid";
    case ENG_EFORMAT: return "format";
    case ENG_EUNSUPPORTED: return "unsupported";
    case ENG_ENOMEM: return "nomem";
    case ENG_EIO: return "io";
    case ENG_ENOTFOUND: return "notfound";
    case ENG_EDEADLINE: return "deadline";
    case ENG_ETOOBIG: return "toobig";
    }
    return "unknown";
}

void image_free(image_t *img)
{
    if (!img) return;
    free(img->data);
    /* Zeroed, so a second image_free or a stale read of the size does no harm. */
    memset(img, 0, sizeof *img);
}
