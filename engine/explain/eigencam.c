/* Eigen-CAM — Muhammad & Yeasin 2020, "Eigen-CAM: Class Activation Map using Principal
 * Components", as pytorch-grad-cam's get_2d_projection computes it:
 *   M = A reshaped to (h·w, K), each channel centred over positions;
 *   map = ReLU(M · v₁), v₁ the first right singular vector of M.
 * Class-agnostic: no gradients, no target. v₁ comes from the symmetric eigenproblem of the smaller
 * Gram matrix (MᵀM or MMᵀ) via LAPACK dsyev (OpenBLAS). A singular vector's sign is arbitrary and
 * numpy leaves it to LAPACK; here it is fixed so that the projection correlates positively with the
 * channel-summed activation (the map then highlights where the layer fires). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "methods.h"

extern void dsyev_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w, double *work,
                   const int *lwork, int *info);

int explain_eigencam(ectx_t *c, method_result_t *r, eng_err_t *err)
{
    const int K = c->LC, P = c->LH * c->LW;
    const int n = K <= P ? K : P;
    double *M = malloc(sizeof(double) * (size_t)P * K), *G = calloc((size_t)n * n, sizeof(double));
    double *ev = malloc(sizeof(double) * n), *proj = calloc((size_t)P, sizeof(double));
    float *map = malloc(sizeof(float) * P);
    int rc = ENG_OK;
    if (!M || !G || !ev || !proj || !map) { rc = eng_errf(err, ENG_ENOMEM, "out of memory"); goto out; }
    for (int k = 0; k < K; k++) {
        double mu = 0;
        for (int i = 0; i < P; i++) {
            float a = c->layer_act[(size_t)k * P + i];
            mu += isnan(a) ? 0 : a;
        }
        mu /= P;
        for (int i = 0; i < P; i++) {
            float a = c->layer_act[(size_t)k * P + i];
            M[(size_t)i * K + k] = (isnan(a) ? 0 : a) - mu;
        }
    }
    if (K <= P) { /* G = MᵀM (K x K) */
        for (int i = 0; i < P; i++)
            for (int a = 0; a < K; a++) {
                double ma = M[(size_t)i * K + a];
                if (ma == 0) continue;
                for (int b = 0; b < K; b++) G[(size_t)a * K + b] += ma * M[(size_t)i * K + b];
            }
    } else { /* G = MMᵀ (P x P) */
        for (int i = 0; i < P; i++)
            for (int j = 0; j < P; j++) {
                double s = 0;
                for (int k = 0; k < K; k++) s += M[(size_t)i * K + k] * M[(size_t)j * K + k];
                G[(size_t)i * P + j] = s;
            }
    }
    int info = 0, lwork = -1;
    double wq;
    dsyev_("V", "U", &n, G, &n, ev, &wq, &lwork, &info);
    lwork = (int)wq;
    double *work = malloc(sizeof(double) * (lwork > 1 ? lwork : 1));
    if (!work) { rc = eng_errf(err, ENG_ENOMEM, "out of memory"); goto out; }
    dsyev_("V", "U", &n, G, &n, ev, work, &lwork, &info);
    free(work);
    if (info != 0) { rc = eng_errf(err, ENG_EINVAL, "eigencam: the eigensolver did not converge"); goto out; }
    /* eigenvalues ascend: the last column (column-major: row n-1 of G) is the top eigenvector */
    const double *top = G + (size_t)(n - 1) * n;
    if (K <= P) {
        for (int i = 0; i < P; i++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += M[(size_t)i * K + k] * top[k];
            proj[i] = s;
        }
    } else {
        double sigma = sqrt(ev[n - 1] > 0 ? ev[n - 1] : 0);
        for (int i = 0; i < P; i++) proj[i] = sigma * top[i];
    }
    double corr = 0;
    for (int i = 0; i < P; i++) {
        double s = 0;
        for (int k = 0; k < K; k++) s += c->layer_act[(size_t)k * P + i];
        corr += proj[i] * s;
    }
    double sign = corr < 0 ? -1 : 1;
    for (int i = 0; i < P; i++) {
        double v = sign * proj[i];
        map[i] = v > 0 ? (float)v : 0.f;
    }
    r->layer = c->layer;
    ex_set_map2d(r, map, c->LH, c->LW);
    map = NULL;
out:
    free(M); free(G); free(ev); free(proj); free(map);
    return rc;
}
