/* DepthToSpace and SpaceToDepth: moving b×b blocks between channels and pixels (nn.PixelShuffle,
 * nn.PixelUnshuffle, YOLO's reorg). x is (N, C, H, W), b the blocksize.
 *   DepthToSpace DCR (default):  y[n, c, h·b + i, w·b + j] = x[n, (i·b + j)·C/b² + c, h, w]
 *   DepthToSpace CRD (opset 11): y[n, c, h·b + i, w·b + j] = x[n, c·b² + i·b + j, h, w]
 *   SpaceToDepth:                y[n, (i·b + j)·C + c, h, w] = x[n, c, h·b + i, w·b + j]
 * (the ONNX definitions: reshape to 6-D, transpose, reshape back). Each is a permutation of the
 * elements: backward is the inverse permutation, dx[x index] = dy[y index], every element once.
 * The mode attribute exists from DepthToSpace-11 (before: DCR); 13 only adds types.
 */
#include <stdlib.h>
#include <string.h>

#include "nditer.h"

static int block_init(graph_t *g, node_t *n, eng_err_t *err, int to_space)
{
    int rc = node_need_act(g, n, 0, err);
    if (rc) return rc;
    const value_t *x = nin(g, n, 0);
    if (x->rank != 4) return node_err(g, n, err, ENG_EFORMAT, "the input must be 4-D (N, C, H, W), not rank %d", x->rank);
    const int64_t C = x->dims[1], H = x->dims[2], W = x->dims[3];
    const int64_t b = attr_int(n, "blocksize", 0);
    int crd = 0;
    if (to_space && g->opset >= 11) {
        const char *mode = attr_str(n, "mode", "DCR");
        if (!strcmp(mode, "CRD")) crd = 1;
        else if (strcmp(mode, "DCR")) return node_err(g, n, err, ENG_EFORMAT, "mode '%s' (DCR or CRD)", mode);
    }
    if (b < 1) return node_err(g, n, err, ENG_EFORMAT, "blocksize %lld (it must be >= 1)", (long long)b);
    ndi_t *p = calloc(1, sizeof *p);
    if (!p) return node_err(g, n, err, ENG_ENOMEM, "out of memory");
    n->p = p;
    const int64_t isz = C * H * W;
    int64_t od[4];
    p->rank = 6;
    if (to_space) {
        if (b > C || C % (b * b))
            return node_err(g, n, err, ENG_EFORMAT, "%lld channels are not a multiple of blocksize² = %lld²", (long long)C,
                            (long long)b);
        const int64_t c = C / (b * b), hw = H * W;
        /* output order (n, c, h, i, w, j) */
        const int64_t d[6] = {1, c, H, b, W, b};
        const int64_t s[6] = {isz, crd ? b * b * hw : hw, W, crd ? b * hw : b * c * hw, 1, crd ? hw : c * hw};
        memcpy(p->d, d, sizeof d);
        memcpy(p->s[0], s, sizeof s);
        od[0] = 1, od[1] = c, od[2] = H * b, od[3] = W * b;
    } else {
        if (b > H || b > W || H % b || W % b)
            return node_err(g, n, err, ENG_EFORMAT, "the input's %lld x %lld pixels are not a multiple of blocksize %lld",
                            (long long)H, (long long)W, (long long)b);
        /* output order (n, i, j, c, h', w') */
        const int64_t d[6] = {1, b, b, C, H / b, W / b};
        const int64_t s[6] = {isz, W, 1, H * W, b * W, b};
        memcpy(p->d, d, sizeof d);
        memcpy(p->s[0], s, sizeof s);
        od[0] = 1, od[1] = C * b * b, od[2] = H / b, od[3] = W / b;
    }
    value_set_shape(nout(g, n), 4, od);
    return ENG_OK;
}

static int d2s_init(graph_t *g, node_t *n, eng_err_t *err) { return block_init(g, n, err, 1); }
static int s2d_init(graph_t *g, node_t *n, eng_err_t *err) { return block_init(g, n, err, 0); }
static void block_backward(const node_t *nd, const exec_t *e) { ndi_op_backward_impl(nd, e, 1); }

const op_def_t op_depthtospace = {.name = "DepthToSpace", .init = d2s_init, .forward = ndi_op_forward,
    .backward = block_backward, .unary = 0, .opset_min = 1, .opset_max = 0,
    .doc = "blocksize, mode DCR (default) or CRD (opset 11+; nn.PixelShuffle)"};
const op_def_t op_spacetodepth = {.name = "SpaceToDepth", .init = s2d_init, .forward = ndi_op_forward,
    .backward = block_backward, .unary = 0, .opset_min = 1, .opset_max = 0, .doc = "blocksize"};
