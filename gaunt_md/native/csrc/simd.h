// One 64-byte SIMD vector of T (GCC/Clang vector extension): locals of this type live in
// registers, a scalar in an expression with one is broadcast, and the compiler emits AVX-512,
// 2 x AVX2, 4 x NEON, ... whatever -march=native has.
#pragma once

#include <cstdint>
#include <cstring>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

// Full unrolling of a loop over a compile-time shape (paths, components, grid coefficients), put
// before the loop: the kernels' accumulators then stay in registers (without it GCC kept the loops
// over the 2l + 1 components of a degree rolled and spilled the accumulators to the stack).
#define GAUNT_UNROLL _Pragma("GCC unroll 16")

namespace gaunt_simd {

template <typename T>
struct Vec;
template <>
struct Vec<float> {
    typedef float type __attribute__((vector_size(64)));
};
template <>
struct Vec<double> {
    typedef double type __attribute__((vector_size(64)));
};
template <typename T>
using V = typename Vec<T>::type;

// lanes of one vector: 16 floats or 8 doubles
template <typename T>
constexpr int kLanes = 64 / static_cast<int>(sizeof(T));

template <typename T>
inline V<T> load(const T* p) {
    V<T> v;
    std::memcpy(&v, p, sizeof(V<T>));
    return v;
}
template <typename T>
inline void store(T* p, const V<T>& v) {
    std::memcpy(p, &v, sizeof(V<T>));
}
// the first n lanes (n <= kLanes), zero past them
template <typename T>
inline V<T> load_first(const T* p, int64_t n) {
    V<T> v = {};
    std::memcpy(&v, p, sizeof(T) * n);
    return v;
}
template <typename T>
inline void store_first(T* p, const V<T>& v, int64_t n) {
    std::memcpy(p, &v, sizeof(T) * n);
}

inline float sum(const V<float>& v) {
#if defined(__AVX512F__)
    return _mm512_reduce_add_ps(reinterpret_cast<__m512>(v));
#else
    float s = 0.0f;
    for (int l = 0; l < kLanes<float>; ++l) s += v[l];
    return s;
#endif
}
inline double sum(const V<double>& v) {
#if defined(__AVX512F__)
    return _mm512_reduce_add_pd(reinterpret_cast<__m512d>(v));
#else
    double s = 0.0;
    for (int l = 0; l < kLanes<double>; ++l) s += v[l];
    return s;
#endif
}

}  // namespace gaunt_simd
