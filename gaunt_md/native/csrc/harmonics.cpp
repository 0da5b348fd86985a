// Real spherical harmonics of edge vectors, degrees 0..3, and the edge lengths, with their
// vector-Jacobian product.
//
//   Y[e, l*l + l + m] = e3nn's "component" harmonics of v_e / |v_e| divided by sqrt(4 pi),
//   r[e] = |v_e|
//
// which is gaunt_md.so3.spherical_harmonics and the model's o3.SphericalHarmonics(normalize=True,
// normalization="integral"): e3nn's frame (y the polar axis), basis and order, written out to
// l = 3 (e3nn's _spherical_harmonics). The unit vector is v / max(|v|, 1e-12), as
// torch.nn.functional.normalize. The backward pass evaluates the same polynomials on dual numbers
// (one tangent per Cartesian direction), so the derivatives are those of the forward code.
//
// Torch computes these with ~40 elementwise ops over the edges each way (and a concatenation);
// one pass per edge here. Plain C ABI, loaded by gaunt_md/native/build.py.

#include <cmath>
#include <cstdint>

namespace {

// a number with its derivatives along x, y and z
template <typename T>
struct Dual {
    T v, dx, dy, dz;
};
template <typename T>
inline Dual<T> operator+(const Dual<T>& a, const Dual<T>& b) { return {a.v + b.v, a.dx + b.dx, a.dy + b.dy, a.dz + b.dz}; }
template <typename T>
inline Dual<T> operator-(const Dual<T>& a, const Dual<T>& b) { return {a.v - b.v, a.dx - b.dx, a.dy - b.dy, a.dz - b.dz}; }
template <typename T>
inline Dual<T> operator*(const Dual<T>& a, const Dual<T>& b) {
    return {a.v * b.v, a.dx * b.v + a.v * b.dx, a.dy * b.v + a.v * b.dy, a.dz * b.v + a.v * b.dz};
}
template <typename T>
inline Dual<T> operator*(T s, const Dual<T>& a) { return {s * a.v, s * a.dx, s * a.dy, s * a.dz}; }

// e3nn's component-normalised harmonics of the unit vector (x, y, z), degrees 0..l_max (<= 3),
// times `norm`; N is T or Dual<T>, S the scalar type
template <typename S, typename N>
inline void harmonics(const N& x, const N& y, const N& z, const N& one, int l_max, S norm, N* out) {
    const S s3 = std::sqrt(S(3)), s5 = std::sqrt(S(5)), s7 = std::sqrt(S(7)), s15 = std::sqrt(S(15));
    const S s42_6 = std::sqrt(S(42)) / 6, s168_8 = std::sqrt(S(168)) / 8;
    out[0] = norm * one;
    if (l_max < 1) return;
    out[1] = (norm * s3) * x;
    out[2] = (norm * s3) * y;
    out[3] = (norm * s3) * z;
    if (l_max < 2) return;
    const N sh20 = s15 * (x * z), sh21 = s15 * (x * y);
    const N y2 = y * y, x2z2 = x * x + z * z;
    const N sh22 = s5 * (y2 - S(0.5) * x2z2), sh23 = s15 * (y * z), sh24 = (S(0.5) * s15) * (z * z - x * x);
    out[4] = norm * sh20;
    out[5] = norm * sh21;
    out[6] = norm * sh22;
    out[7] = norm * sh23;
    out[8] = norm * sh24;
    if (l_max < 3) return;
    const N four_y2 = S(4) * y2 - x2z2;
    out[9] = (norm * s42_6) * (sh20 * z + sh24 * x);
    out[10] = (norm * s7) * (sh20 * y);
    out[11] = (norm * s168_8) * (four_y2 * x);
    out[12] = (norm * S(0.5) * s7) * (y * (S(2) * y2 - S(3) * x2z2));
    out[13] = (norm * s168_8) * (z * four_y2);
    out[14] = (norm * s7) * (sh24 * y);
    out[15] = (norm * s42_6) * (sh24 * z - sh20 * x);
}

// |v|^2, |v| and the factor of the unit vector, 1 / max(|v|, 1e-12) (torch.nn.functional.normalize)
template <typename T>
struct Length {
    T r2, r, inv;
    explicit Length(const T* v)
        : r2(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]), r(std::sqrt(r2)), inv(T(1) / (r > T(1e-12) ? r : T(1e-12))) {}
};

template <typename T>
T sh_norm() {
    return T(1) / std::sqrt(T(4) * T(M_PI));
}

template <typename T>
void forward(int64_t n, int l_max, const T* vectors, T* out, T* lengths, int n_threads) {
    const int64_t K = (l_max + 1) * (l_max + 1);
    const T norm = sh_norm<T>();
#pragma omp parallel for simd schedule(static) num_threads(n_threads)
    for (int64_t e = 0; e < n; ++e) {
        const T* v = vectors + 3 * e;
        const Length<T> len(v);
        lengths[e] = len.r;
        harmonics<T, T>(v[0] * len.inv, v[1] * len.inv, v[2] * len.inv, T(1), l_max, norm, out + K * e);
    }
}

// dL/dv = (I - u u^T) / |v| (dY/du)^T dL/dY + u dL/dr, u = v / |v| (the first term is
// dL/du / 1e-12 for |v| <= 1e-12, the second zero at v = 0: what torch's ops give).
// L: l_max as a compile-time constant (the polynomials unroll). Scalar code per edge: vectorised
// over edges, the [E, 3] and [E, K] rows become gathers and the pass took 1.2x as long.
template <typename T, int L>
void backward(int64_t n, const T* vectors, const T* grad_out, const T* grad_lengths, T* grad_vectors,
              int n_threads) {
    constexpr int K = (L + 1) * (L + 1);
    const T norm = sh_norm<T>();
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t e = 0; e < n; ++e) {
        const T* v = vectors + 3 * e;
        const T* g = grad_out + K * e;
        const Length<T> len(v);
        const T inv = len.inv, ux = v[0] * inv, uy = v[1] * inv, uz = v[2] * inv;
        Dual<T> y[K];
        harmonics<T, Dual<T>>({ux, 1, 0, 0}, {uy, 0, 1, 0}, {uz, 0, 0, 1}, {1, 0, 0, 0}, L, norm, y);
        T gx = 0, gy = 0, gz = 0;
        for (int k = 0; k < K; ++k) {
            gx += g[k] * y[k].dx;
            gy += g[k] * y[k].dy;
            gz += g[k] * y[k].dz;
        }
        const T radial = len.r2 <= T(1e-24) ? T(0) : ux * gx + uy * gy + uz * gz;
        // d|v|/dv = v / |v| (zero at v = 0, as torch's norm)
        const T g_r = (grad_lengths && len.r2 > T(0)) ? grad_lengths[e] / len.r : T(0);
        T* out = grad_vectors + 3 * e;
        out[0] = (gx - radial * ux) * inv + g_r * v[0];
        out[1] = (gy - radial * uy) * inv + g_r * v[1];
        out[2] = (gz - radial * uz) * inv + g_r * v[2];
    }
}

template <typename T>
void backward_any(int64_t n, int l_max, const T* vectors, const T* grad_out, const T* grad_lengths,
                  T* grad_vectors, int n_threads) {
    switch (l_max) {
        case 0: backward<T, 0>(n, vectors, grad_out, grad_lengths, grad_vectors, n_threads); break;
        case 1: backward<T, 1>(n, vectors, grad_out, grad_lengths, grad_vectors, n_threads); break;
        case 2: backward<T, 2>(n, vectors, grad_out, grad_lengths, grad_vectors, n_threads); break;
        default: backward<T, 3>(n, vectors, grad_out, grad_lengths, grad_vectors, n_threads); break;
    }
}

}  // namespace

extern "C" {

// vectors [n, 3], out [n, (l_max+1)^2], lengths [n], l_max <= 3; grad_lengths may be NULL (zero)
#define GAUNT_HARMONICS_DEFINE(SUFFIX, T)                                                                     \
    void gaunt_edge_harmonics_forward_##SUFFIX(int64_t n, int64_t l_max, const T* vectors, T* out,            \
                                               T* lengths, int n_threads) {                                   \
        forward<T>(n, static_cast<int>(l_max), vectors, out, lengths, n_threads);                             \
    }                                                                                                         \
    void gaunt_edge_harmonics_backward_##SUFFIX(int64_t n, int64_t l_max, const T* vectors,                   \
                                                const T* grad_out, const T* grad_lengths, T* grad_vectors,    \
                                                int n_threads) {                                              \
        backward_any<T>(n, static_cast<int>(l_max), vectors, grad_out, grad_lengths, grad_vectors, n_threads); \
    }

GAUNT_HARMONICS_DEFINE(f32, float)
GAUNT_HARMONICS_DEFINE(f64, double)

}  // extern "C"
