// Fused Gaunt product basis on CPU: synthesis, powers, weighted sum and projection per row.
//
//   out[k, b] = sum_g Yw[k, g] P_{deg k}(f[g, b]),   f[g, b] = sum_j Y[j, g] a[j, b],
//   P_l(f) = sum_{nu=1..nu_max} coef[nu-1, l, b] f^nu   (Horner),
//
// which is gaunt_md.model.blocks.GauntProductBasis: the projected powers of the per-channel
// spherical function f, weighted per species, channel, nu and output degree. Y [K, G] is the
// synthesis table of the grid, Yw [K_out, G] the projection table times the quadrature weights.
//
// Rows b = (node, channel) are independent. Every array is row-innermost, [.., B] with B = N C
// (the model's degree-major features), so a block of BLK consecutive rows is one SIMD vector per
// quantity: the kernel walks the grid points once per block with the block's inputs, coefficients
// and outputs in registers, and the tables broadcast one number at a time. No [B, nu, G] tensor
// is ever written (what the torch ops pay for), and there are no horizontal sums.
// The backward pass gives dL/da (the weights are frozen at inference); f is recomputed.
// K_in = 16 (l_max 3) has its own instantiations: the synthesis sum over j then unrolls, and the
// backward keeps the 16 sums of dL/da in registers; with nu_max and L_out + 1 also fixed (the
// shipped models' 3 and 2 or 1) every loop over them unrolls (GAUNT_PRODUCT_DISPATCH).
//
// Paired grids (`paired`): when every grid point's antipode is a grid point of the same weight
// (Lebedev rules; gaunt_md.so3.grid.antipodal_halves), the tables hold one point of each pair and
// Y_j(-x) = (-1)^deg(j) Y_j(x) gives the other: f(+-x) = E(x) +- O(x) from the even- and
// odd-degree sums, and the projection of the two points is Yw[k, x] (q(x) +- q(-x)) by the parity
// of deg k. Synthesis and projection then cost half (the powers are still taken at every point).

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>
#include <omp.h>

#include "simd.h"

namespace {

struct ProductShape {
    int64_t rows, k_in, k_out, grid, nu_max, l_out1;
};

constexpr int kMaxKIn = 64;   // l_max 7
constexpr int kMaxKOut = 64;
constexpr int kMaxCoef = 64;  // nu_max (l_out + 1)

using gaunt_simd::kLanes;
using gaunt_simd::V;

using gaunt_simd::load_first;   // rows b0 .. b0 + n of one row-innermost array, zero past n
using gaunt_simd::store_first;

// whether SH index j = l^2 + l + m has odd degree l, for j < kMaxKIn (a compile-time table: in the
// unrolled loops over j the branch on it disappears)
struct DegreeParity {
    bool odd[kMaxKIn];
    constexpr DegreeParity() : odd() {
        for (int j = 0, l = 0; j < kMaxKIn; ++j) {
            if ((l + 1) * (l + 1) <= j) ++l;
            odd[j] = l % 2 == 1;
        }
    }
};
constexpr DegreeParity kParity{};

template <typename T, int KT>
inline V<T> synthesis_point(const V<T>* av, const T* Y, int64_t G, int64_t k_in, int64_t g) {
    const int64_t K = KT > 0 ? KT : k_in;
    V<T> f0 = {}, f1 = {};  // two partial sums: half the dependency chain
    int64_t j = 0;
    for (; j + 1 < K; j += 2) {
        f0 += Y[j * G + g] * av[j];
        f1 += Y[(j + 1) * G + g] * av[j + 1];
    }
    if (j < K) f0 += Y[j * G + g] * av[j];
    return f0 + f1;
}

// f at both points of every pair of a paired grid, f[2g] = f(x_g) and f[2g + 1] = f(-x_g), from
// the even- and odd-degree sums E and O: f(+-x_g) = E(x_g) +- O(x_g)
template <typename T, int KT>
inline void synthesis_pairs(const V<T>* av, const T* Y, int64_t G, int64_t k_in, V<T>* f) {
    const int64_t K = KT > 0 ? KT : k_in;
    for (int64_t g = 0; g < G; ++g) {
        V<T> e = {}, o = {};
        GAUNT_UNROLL
        for (int64_t j = 0; j < K; ++j) {
            if (kParity.odd[j])
                o += Y[j * G + g] * av[j];
            else
                e += Y[j * G + g] * av[j];
        }
        f[2 * g] = e + o;
        f[2 * g + 1] = e - o;
    }
}

// P_l(f) = sum_nu c_nu f^nu and P_l'(f) for the coefficients cf[(nu-1) L1 + l] (Horner)
template <typename T>
inline V<T> power_sum(const V<T>* cf, int64_t nu_max, int64_t L1, int64_t l, const V<T>& f) {
    V<T> q = cf[(nu_max - 1) * L1 + l];
    GAUNT_UNROLL
    for (int64_t nu = nu_max - 1; nu >= 1; --nu) q = q * f + cf[(nu - 1) * L1 + l];
    return q * f;
}
template <typename T>
inline V<T> power_sum_slope(const V<T>* cf, int64_t nu_max, int64_t L1, int64_t l, const V<T>& f) {
    V<T> dp = T(nu_max) * cf[(nu_max - 1) * L1 + l];
    GAUNT_UNROLL
    for (int64_t nu = nu_max - 1; nu >= 1; --nu) dp = dp * f + T(nu) * cf[(nu - 1) * L1 + l];
    return dp;
}

// the backward passes' last step: dL/da[j] = sum_g Y[j, g] dL/df_j[g] for one vector of rows, with
// dL/df_j = odd[g] where deg j is odd and even[g] else (the same array for both on a whole grid;
// the two combinations of a pair's points on a paired one). With K known, the K sums in registers
// (one load of dL/df per grid point), else one sum at a time.
template <typename T, int KT>
inline void synthesis_adjoint(const T* Y, int64_t G, int64_t k_in, const V<T>* even, const V<T>* odd, T* grad_a,
                              int64_t R, int64_t b0, int64_t n) {
    if (KT > 0) {
        V<T> acc[KT > 0 ? KT : 1];
        GAUNT_UNROLL
        for (int j = 0; j < KT; ++j) acc[j] = V<T>{};
        for (int64_t g = 0; g < G; ++g) {
            const V<T> gf[2] = {even[g], odd[g]};
            GAUNT_UNROLL
            for (int j = 0; j < KT; ++j) acc[j] += Y[j * G + g] * gf[kParity.odd[j]];
        }
        GAUNT_UNROLL
        for (int j = 0; j < KT; ++j) store_first(grad_a + j * R + b0, acc[j], n);
        return;
    }
    for (int64_t j = 0; j < k_in; ++j) {
        const T* y = Y + j * G;
        const V<T>* gf = kParity.odd[j] ? odd : even;
        V<T> acc = {};
        for (int64_t g = 0; g < G; ++g) acc += y[g] * gf[g];
        store_first(grad_a + j * R + b0, acc, n);
    }
}

template <typename T, int KT, int LT, int NT>
inline void load_block(const ProductShape& s, const T* a, const T* coef, int64_t b0, int64_t n, V<T>* av,
                       V<T>* cf) {
    const int64_t R = s.rows, K = KT > 0 ? KT : s.k_in;
    const int64_t n_coef = (NT > 0 ? NT : s.nu_max) * (LT > 0 ? LT : s.l_out1);
    GAUNT_UNROLL
    for (int64_t j = 0; j < K; ++j) av[j] = load_first(a + j * R + b0, n);
    GAUNT_UNROLL
    for (int64_t p = 0; p < n_coef; ++p) cf[p] = load_first(coef + p * R + b0, n);  // cf[(nu-1) L1 + l]
}

template <typename T, int KT, int LT, int NT>
void product_forward(const ProductShape& s, const T* a, const T* coef, const T* Y, const T* Yw, T* out,
                     int n_threads) {
    const int64_t G = s.grid, L1 = LT > 0 ? LT : s.l_out1, nu_max = NT > 0 ? NT : s.nu_max, R = s.rows;
    const int64_t K_out = L1 * L1;
    const int64_t n_blocks = (R + kLanes<T> - 1) / kLanes<T>;
#pragma omp parallel num_threads(n_threads)
    {
        V<T> av[kMaxKIn], cf[kMaxCoef], acc[kMaxKOut];
#pragma omp for schedule(static)
        for (int64_t blk = 0; blk < n_blocks; ++blk) {
            const int64_t b0 = blk * kLanes<T>, n = std::min<int64_t>(kLanes<T>, R - b0);
            load_block<T, KT, LT, NT>(s, a, coef, b0, n, av, cf);
            GAUNT_UNROLL
            for (int64_t k = 0; k < K_out; ++k) acc[k] = V<T>{};
            for (int64_t g = 0; g < G; ++g) {
                const V<T> f = synthesis_point<T, KT>(av, Y, G, s.k_in, g);
                GAUNT_UNROLL
                for (int64_t l = 0; l < L1; ++l) {
                    const V<T> q = power_sum<T>(cf, nu_max, L1, l, f);
                    GAUNT_UNROLL
                    for (int64_t k = l * l; k < (l + 1) * (l + 1); ++k) acc[k] += Yw[k * G + g] * q;  // deg k = l
                }
            }
            GAUNT_UNROLL
            for (int64_t k = 0; k < K_out; ++k) store_first(out + k * R + b0, acc[k], n);
        }
    }
}

template <typename T, int KT, int LT, int NT>
void product_backward(const ProductShape& s, const T* a, const T* coef, const T* Y, const T* Yw,
                      const T* grad_out, T* grad_a, int n_threads) {
    const int64_t G = s.grid, L1 = LT > 0 ? LT : s.l_out1, nu_max = NT > 0 ? NT : s.nu_max, R = s.rows;
    const int64_t K_out = L1 * L1;
    const int64_t n_blocks = (R + kLanes<T> - 1) / kLanes<T>;
#pragma omp parallel num_threads(n_threads)
    {
        V<T> av[kMaxKIn], cf[kMaxCoef], go[kMaxKOut];
        std::vector<V<T>> gf(G);  // dL/df at every grid point, for the rows in hand
#pragma omp for schedule(static)
        for (int64_t blk = 0; blk < n_blocks; ++blk) {
            const int64_t b0 = blk * kLanes<T>, n = std::min<int64_t>(kLanes<T>, R - b0);
            load_block<T, KT, LT, NT>(s, a, coef, b0, n, av, cf);
            GAUNT_UNROLL
            for (int64_t k = 0; k < K_out; ++k) go[k] = load_first(grad_out + k * R + b0, n);
            // pass 1: dL/df[g] = sum_l P_l'(f[g]) sum_{deg k = l} Yw[k, g] dL/dout[k]
            for (int64_t g = 0; g < G; ++g) {
                const V<T> f = synthesis_point<T, KT>(av, Y, G, s.k_in, g);
                V<T> gfg = {};
                GAUNT_UNROLL
                for (int64_t l = 0; l < L1; ++l) {
                    V<T> back = {};
                    GAUNT_UNROLL
                    for (int64_t k = l * l; k < (l + 1) * (l + 1); ++k) back += Yw[k * G + g] * go[k];
                    gfg += power_sum_slope<T>(cf, nu_max, L1, l, f) * back;
                }
                gf[g] = gfg;
            }
            synthesis_adjoint<T, KT>(Y, G, s.k_in, gf.data(), gf.data(), grad_a, R, b0, n);  // pass 2
        }
    }
}

// the same sums on a paired grid: G is the number of pairs, Y and Yw hold one point of each
template <typename T, int KT, int LT, int NT>
void product_forward_paired(const ProductShape& s, const T* a, const T* coef, const T* Y, const T* Yw, T* out,
                            int n_threads) {
    const int64_t G = s.grid, L1 = LT > 0 ? LT : s.l_out1, nu_max = NT > 0 ? NT : s.nu_max, R = s.rows;
    const int64_t K_out = L1 * L1;
    const int64_t n_blocks = (R + kLanes<T> - 1) / kLanes<T>;
#pragma omp parallel num_threads(n_threads)
    {
        V<T> av[kMaxKIn], cf[kMaxCoef], acc[kMaxKOut];
        std::vector<V<T>> f(2 * G);  // f(x_g), f(-x_g) of the rows in hand
#pragma omp for schedule(static)
        for (int64_t blk = 0; blk < n_blocks; ++blk) {
            const int64_t b0 = blk * kLanes<T>, n = std::min<int64_t>(kLanes<T>, R - b0);
            load_block<T, KT, LT, NT>(s, a, coef, b0, n, av, cf);
            GAUNT_UNROLL
            for (int64_t k = 0; k < K_out; ++k) acc[k] = V<T>{};
            // two passes over the pairs, each with fewer live registers than one: the inputs for
            // the synthesis, then the coefficients and accumulators for the powers and projection
            synthesis_pairs<T, KT>(av, Y, G, s.k_in, f.data());
            for (int64_t g = 0; g < G; ++g) {
                const V<T> f_plus = f[2 * g], f_minus = f[2 * g + 1];
                GAUNT_UNROLL
                for (int64_t l = 0; l < L1; ++l) {
                    const V<T> q_plus = power_sum<T>(cf, nu_max, L1, l, f_plus);
                    const V<T> q_minus = power_sum<T>(cf, nu_max, L1, l, f_minus);
                    const V<T> q = l % 2 ? q_plus - q_minus : q_plus + q_minus;
                    GAUNT_UNROLL
                    for (int64_t k = l * l; k < (l + 1) * (l + 1); ++k) acc[k] += Yw[k * G + g] * q;
                }
            }
            GAUNT_UNROLL
            for (int64_t k = 0; k < K_out; ++k) store_first(out + k * R + b0, acc[k], n);
        }
    }
}

template <typename T, int KT, int LT, int NT>
void product_backward_paired(const ProductShape& s, const T* a, const T* coef, const T* Y, const T* Yw,
                             const T* grad_out, T* grad_a, int n_threads) {
    const int64_t G = s.grid, L1 = LT > 0 ? LT : s.l_out1, nu_max = NT > 0 ? NT : s.nu_max, R = s.rows;
    const int64_t K_out = L1 * L1;
    const int64_t n_blocks = (R + kLanes<T> - 1) / kLanes<T>;
#pragma omp parallel num_threads(n_threads)
    {
        V<T> av[kMaxKIn], cf[kMaxCoef], go[kMaxKOut];
        // dL/df(x_g) + dL/df(-x_g) and dL/df(x_g) - dL/df(-x_g) per pair, for the rows in hand
        std::vector<V<T>> gf_even(G), gf_odd(G), f(2 * G);
#pragma omp for schedule(static)
        for (int64_t blk = 0; blk < n_blocks; ++blk) {
            const int64_t b0 = blk * kLanes<T>, n = std::min<int64_t>(kLanes<T>, R - b0);
            load_block<T, KT, LT, NT>(s, a, coef, b0, n, av, cf);
            GAUNT_UNROLL
            for (int64_t k = 0; k < K_out; ++k) go[k] = load_first(grad_out + k * R + b0, n);
            synthesis_pairs<T, KT>(av, Y, G, s.k_in, f.data());
            // pass 1: dL/df at both points of each pair; back_l(-x) = (-1)^l back_l(x)
            for (int64_t g = 0; g < G; ++g) {
                const V<T> f_plus = f[2 * g], f_minus = f[2 * g + 1];
                V<T> gf_plus = {}, gf_minus = {};
                GAUNT_UNROLL
                for (int64_t l = 0; l < L1; ++l) {
                    V<T> back = {};
                    GAUNT_UNROLL
                    for (int64_t k = l * l; k < (l + 1) * (l + 1); ++k) back += Yw[k * G + g] * go[k];
                    gf_plus += power_sum_slope<T>(cf, nu_max, L1, l, f_plus) * back;
                    const V<T> slope_minus = power_sum_slope<T>(cf, nu_max, L1, l, f_minus);
                    if (l % 2)
                        gf_minus -= slope_minus * back;
                    else
                        gf_minus += slope_minus * back;
                }
                gf_even[g] = gf_plus + gf_minus;
                gf_odd[g] = gf_plus - gf_minus;
            }
            // pass 2: dL/da[j] = sum over pairs of Y[j, g] (dL/df(x_g) +- dL/df(-x_g)), by the parity of deg j
            synthesis_adjoint<T, KT>(Y, G, s.k_in, gf_even.data(), gf_odd.data(), grad_a, R, b0, n);
        }
    }
}

bool fits(const ProductShape& s) {
    return s.k_in <= kMaxKIn && s.k_out <= kMaxKOut && s.nu_max * s.l_out1 <= kMaxCoef &&
           s.k_out == s.l_out1 * s.l_out1;
}

// compile-time shapes for the shipped models (K_in 16, nu_max 3, L_out 1 or 0), runtime ones else
#define GAUNT_PRODUCT_DISPATCH(FN, T, s, ...)                                 \
    if ((s).k_in == 16 && (s).nu_max == 3 && (s).l_out1 == 2)                \
        FN<T, 16, 2, 3>(s, __VA_ARGS__);                                     \
    else if ((s).k_in == 16 && (s).nu_max == 3 && (s).l_out1 == 1)           \
        FN<T, 16, 1, 3>(s, __VA_ARGS__);                                     \
    else if ((s).k_in == 16)                                                 \
        FN<T, 16, 0, 0>(s, __VA_ARGS__);                                     \
    else                                                                     \
        FN<T, 0, 0, 0>(s, __VA_ARGS__);

}  // namespace

extern "C" {

// a [K_in, B], coef [nu_max, L_out+1, B], Y [K_in, G], Yw [K_out, G], out [K_out, B], K_out =
// (L_out+1)^2; paired != 0: G pairs of antipodal points, one of each in Y and Yw. Returns 0, or -1
// when the shape is beyond the kernel's fixed limits (gaunt_md.model.kernels.product_basis.supports
// keeps such models on the torch ops).
#define GAUNT_PRODUCT_DEFINE(SUFFIX, T)                                                                      \
    int gaunt_product_forward_##SUFFIX(int64_t rows, int64_t k_in, int64_t k_out, int64_t grid,              \
                                       int64_t nu_max, int64_t l_out1, int64_t paired, const T* a,           \
                                       const T* coef, const T* Y, const T* Yw, T* out, int n_threads) {      \
        ProductShape s{rows, k_in, k_out, grid, nu_max, l_out1};                                             \
        if (!fits(s)) return -1;                                                                             \
        if (paired) {                                                                                        \
            GAUNT_PRODUCT_DISPATCH(product_forward_paired, T, s, a, coef, Y, Yw, out, n_threads)             \
        } else {                                                                                             \
            GAUNT_PRODUCT_DISPATCH(product_forward, T, s, a, coef, Y, Yw, out, n_threads)                    \
        }                                                                                                    \
        return 0;                                                                                            \
    }                                                                                                        \
    int gaunt_product_backward_##SUFFIX(int64_t rows, int64_t k_in, int64_t k_out, int64_t grid,             \
                                        int64_t nu_max, int64_t l_out1, int64_t paired, const T* a,          \
                                        const T* coef, const T* Y, const T* Yw, const T* grad_out,           \
                                        T* grad_a, int n_threads) {                                          \
        ProductShape s{rows, k_in, k_out, grid, nu_max, l_out1};                                             \
        if (!fits(s)) return -1;                                                                             \
        if (paired) {                                                                                        \
            GAUNT_PRODUCT_DISPATCH(product_backward_paired, T, s, a, coef, Y, Yw, grad_out, grad_a, n_threads) \
        } else {                                                                                             \
            GAUNT_PRODUCT_DISPATCH(product_backward, T, s, a, coef, Y, Yw, grad_out, grad_a, n_threads)      \
        }                                                                                                    \
        return 0;                                                                                            \
    }

GAUNT_PRODUCT_DEFINE(f32, float)
GAUNT_PRODUCT_DEFINE(f64, double)

}  // extern "C"
