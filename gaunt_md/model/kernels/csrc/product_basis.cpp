// Fused Gaunt product basis on CPU: synthesis, powers, weighted sum and projection per row.
//
//   out[k, b] = sum_g Yw[k, g] P_{deg k}(f[b, g]),   f[b, g] = sum_j a[j, b] Y[j, g],
//   P_l(f) = sum_{nu=1..nu_max} coef[b, nu-1, l] f^nu   (Horner),
//
// which is gaunt_md.model.blocks.GauntProductBasis: the projected powers of the per-channel
// spherical function f, weighted per species, channel, nu and output degree. Y [K, G] is the
// synthesis table of the grid (YT [G, K] its transpose, for the backward pass), Yw [K_out, G] the
// projection table times the quadrature weights.
// Rows b = (node, channel) are independent: one thread takes whole rows, grid values live in a
// buffer of G numbers (no [B, nu, G] tensor is ever written, which is what the torch ops pay for).
// The arrays a, out and their gradients are the model's degree-major features, [K, B] with
// B = N C: a row's K numbers are B apart, and consecutive rows are adjacent.
// The backward pass gives dL/da (the weights are frozen at inference); f is recomputed.
// K_in = 16 (l_max 3) has its own instantiation: the synthesis sum over j then unrolls.

#include <cstdint>
#include <vector>
#include <omp.h>

namespace {

struct ProductShape {
    int64_t rows, k_in, k_out, grid, nu_max, l_out1;
};

// f[g] = sum_j a[j B] Y[j, g] for the row at a. KT > 0: K_in as a compile-time constant, the sum
// over j unrolls into one register per lane of g; KT = 0: any K_in, the sum over j outermost.
template <typename T, int KT>
inline void synthesis(const ProductShape& s, const T* a, const T* Y, T* f) {
    const int64_t G = s.grid;
    if (KT > 0) {
        T av[KT > 0 ? KT : 1];
        for (int64_t j = 0; j < KT; ++j) av[j] = a[j * s.rows];
#pragma omp simd
        for (int64_t g = 0; g < G; ++g) {
            T acc = T(0);
            for (int64_t j = 0; j < KT; ++j) acc += av[j] * Y[j * G + g];
            f[g] = acc;
        }
        return;
    }
    for (int64_t g = 0; g < G; ++g) f[g] = T(0);
    for (int64_t j = 0; j < s.k_in; ++j) {
        const T aj = a[j * s.rows];
        const T* y = Y + j * G;
#pragma omp simd
        for (int64_t g = 0; g < G; ++g) f[g] += aj * y[g];
    }
}

template <typename T, int KT>
void product_forward(const ProductShape& s, const T* a, const T* coef, const T* Y, const T* Yw,
                     const int64_t* deg_out, T* out, int n_threads) {
    const int64_t G = s.grid, L1 = s.l_out1, nu_max = s.nu_max;
#pragma omp parallel num_threads(n_threads)
    {
        std::vector<T> f(G), q(G);
#pragma omp for schedule(static)
        for (int64_t b = 0; b < s.rows; ++b) {
            synthesis<T, KT>(s, a + b, Y, f.data());
            const T* cb = coef + b * nu_max * L1;  // coef[b, nu-1, l]
            T* ob = out + b;  // out[k, b] at ob[k B]
            for (int64_t l = 0; l < L1; ++l) {
                const T top = cb[(nu_max - 1) * L1 + l];
#pragma omp simd
                for (int64_t g = 0; g < G; ++g) q[g] = top;
                for (int64_t nu = nu_max - 1; nu >= 1; --nu) {
                    const T c = cb[(nu - 1) * L1 + l];
#pragma omp simd
                    for (int64_t g = 0; g < G; ++g) q[g] = q[g] * f[g] + c;
                }
#pragma omp simd
                for (int64_t g = 0; g < G; ++g) q[g] *= f[g];
                for (int64_t k = 0; k < s.k_out; ++k) {
                    if (deg_out[k] != l) continue;
                    const T* yw = Yw + k * G;
                    T acc = T(0);
#pragma omp simd reduction(+ : acc)
                    for (int64_t g = 0; g < G; ++g) acc += q[g] * yw[g];
                    ob[k * s.rows] = acc;
                }
            }
        }
    }
}

template <typename T, int KT>
void product_backward(const ProductShape& s, const T* a, const T* coef, const T* Y, const T* YT, const T* Yw,
                      const int64_t* deg_out, const T* grad_out, T* grad_a, int n_threads) {
    const int64_t G = s.grid, L1 = s.l_out1, nu_max = s.nu_max;
#pragma omp parallel num_threads(n_threads)
    {
        std::vector<T> f(G), back(G), dp(G), gf(G), ga(s.k_in);
#pragma omp for schedule(static)
        for (int64_t b = 0; b < s.rows; ++b) {
            synthesis<T, KT>(s, a + b, Y, f.data());
            const T* cb = coef + b * nu_max * L1;
            const T* gb = grad_out + b;  // dL/dout[k, b] at gb[k B]
#pragma omp simd
            for (int64_t g = 0; g < G; ++g) gf[g] = T(0);
            for (int64_t l = 0; l < L1; ++l) {
                // back[g] = sum_{deg k = l} grad_out[b, k] Yw[k, g]
#pragma omp simd
                for (int64_t g = 0; g < G; ++g) back[g] = T(0);
                bool any = false;
                for (int64_t k = 0; k < s.k_out; ++k) {
                    const T gk = gb[k * s.rows];
                    if (deg_out[k] != l || gk == T(0)) continue;
                    any = true;
                    const T* yw = Yw + k * G;
#pragma omp simd
                    for (int64_t g = 0; g < G; ++g) back[g] += gk * yw[g];
                }
                if (!any) continue;
                // dp[g] = P_l'(f) = sum_nu nu coef[nu-1, l] f^(nu-1)  (Horner)
                const T top = T(nu_max) * cb[(nu_max - 1) * L1 + l];
#pragma omp simd
                for (int64_t g = 0; g < G; ++g) dp[g] = top;
                for (int64_t nu = nu_max - 1; nu >= 1; --nu) {
                    const T c = T(nu) * cb[(nu - 1) * L1 + l];
#pragma omp simd
                    for (int64_t g = 0; g < G; ++g) dp[g] = dp[g] * f[g] + c;
                }
#pragma omp simd
                for (int64_t g = 0; g < G; ++g) gf[g] += dp[g] * back[g];
            }
            // dL/da[j] = sum_g Y[j, g] gf[g], vectorised over j with the transposed table YT [G, K]
            const int64_t K = KT > 0 ? KT : s.k_in;
#pragma omp simd
            for (int64_t j = 0; j < K; ++j) ga[j] = T(0);
            for (int64_t g = 0; g < G; ++g) {
                const T gg = gf[g];
                const T* yt = YT + g * K;
#pragma omp simd
                for (int64_t j = 0; j < K; ++j) ga[j] += gg * yt[j];
            }
            for (int64_t j = 0; j < K; ++j) grad_a[j * s.rows + b] = ga[j];
        }
    }
}

}  // namespace

extern "C" {

#define GAUNT_PRODUCT_DEFINE(SUFFIX, T)                                                                      \
    void gaunt_product_forward_##SUFFIX(int64_t rows, int64_t k_in, int64_t k_out, int64_t grid,             \
                                        int64_t nu_max, int64_t l_out1, const T* a, const T* coef,           \
                                        const T* Y, const T* Yw, const int64_t* deg_out, T* out,             \
                                        int n_threads) {                                                     \
        ProductShape s{rows, k_in, k_out, grid, nu_max, l_out1};                                             \
        if (k_in == 16)                                                                                      \
            product_forward<T, 16>(s, a, coef, Y, Yw, deg_out, out, n_threads);                              \
        else                                                                                                 \
            product_forward<T, 0>(s, a, coef, Y, Yw, deg_out, out, n_threads);                               \
    }                                                                                                        \
    void gaunt_product_backward_##SUFFIX(int64_t rows, int64_t k_in, int64_t k_out, int64_t grid,            \
                                         int64_t nu_max, int64_t l_out1, const T* a, const T* coef,          \
                                         const T* Y, const T* Yw, const int64_t* deg_out, const T* YT,       \
                                         const T* grad_out, T* grad_a, int n_threads) {                      \
        ProductShape s{rows, k_in, k_out, grid, nu_max, l_out1};                                             \
        if (k_in == 16)                                                                                      \
            product_backward<T, 16>(s, a, coef, Y, YT, Yw, deg_out, grad_out, grad_a, n_threads);            \
        else                                                                                                 \
            product_backward<T, 0>(s, a, coef, Y, YT, Yw, deg_out, grad_out, grad_a, n_threads);             \
    }

GAUNT_PRODUCT_DEFINE(f32, float)
GAUNT_PRODUCT_DEFINE(f64, double)

}  // extern "C"
