/* Attention maps — the model's own spatial attention, e.g. CBAM's (Woo, Park, Lee & Kweon 2018,
 * "CBAM: Convolutional Block Attention Module"): M_s = σ(conv7x7([mean_c F; max_c F])).
 * Nothing is computed: the map is the value the sidecar's attention_layers names, read from the
 * request's forward pass (a (1, h, w) sigmoid output becomes an h x w map). With several attention
 * layers, `layer` picks one of them; otherwise the first is returned. */
#include <stdlib.h>
#include <string.h>

#include "methods.h"

int explain_attention(ectx_t *c, method_result_t *r, eng_err_t *err)
{
    if (c->att_value < 0 || !c->att_act)
        return eng_errf(err, ENG_EINVAL, "the model declares no attention_layers in its sidecar");
    const value_t *v = &c->g->values[c->att_value];
    size_t n = v->size;
    float *map = malloc(sizeof(float) * n);
    if (!map) return eng_errf(err, ENG_ENOMEM, "out of memory");
    memcpy(map, c->att_act, sizeof(float) * n);
    r->layer = c->att_value;
    if (v->rank == 4 && v->dims[1] == 1) {
        ex_set_map2d(r, map, (int)v->dims[2], (int)v->dims[3]);
    } else if (v->rank == 4) {
        r->map = map;
        r->rank = 3;
        r->dims[0] = (int)v->dims[1];
        r->dims[1] = (int)v->dims[2];
        r->dims[2] = (int)v->dims[3];
        ex_stats(r);
    } else {
        r->map = map;
        r->rank = 1;
        r->dims[0] = (int)n;
        ex_stats(r);
    }
    return ENG_OK;
}
