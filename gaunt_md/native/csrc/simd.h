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

// sums(v)[l] = sum(v[l]) for kLanes vectors v[0..kLanes): the lane sums of a whole vector's worth
// of vectors by a transposing tree of shuffles and adds (log2(kLanes) stages, kLanes - 1 adds in
// all), instead of one horizontal reduction per vector (each as many shuffles and adds as stages).
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define GAUNT_HAVE_SHUFFLEVECTOR 1
#endif
#endif

#if defined(GAUNT_HAVE_SHUFFLEVECTOR)
inline V<double> sums(const V<double>* v) {
    V<double> s[4], t[2];
    for (int i = 0; i < 4; ++i)  // lanes (2m, 2m+1) of v[2i] and v[2i+1], interleaved
        s[i] = __builtin_shufflevector(v[2 * i], v[2 * i + 1], 0, 8, 2, 10, 4, 12, 6, 14) +
               __builtin_shufflevector(v[2 * i], v[2 * i + 1], 1, 9, 3, 11, 5, 13, 7, 15);
    for (int i = 0; i < 2; ++i)  // halves of four vectors
        t[i] = __builtin_shufflevector(s[2 * i], s[2 * i + 1], 0, 1, 8, 9, 4, 5, 12, 13) +
               __builtin_shufflevector(s[2 * i], s[2 * i + 1], 2, 3, 10, 11, 6, 7, 14, 15);
    return __builtin_shufflevector(t[0], t[1], 0, 1, 2, 3, 8, 9, 10, 11) +
           __builtin_shufflevector(t[0], t[1], 4, 5, 6, 7, 12, 13, 14, 15);
}
inline V<float> sums(const V<float>* v) {
    V<float> s[8], t[4], u[2];
    for (int i = 0; i < 8; ++i)
        s[i] = __builtin_shufflevector(v[2 * i], v[2 * i + 1], 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30) +
               __builtin_shufflevector(v[2 * i], v[2 * i + 1], 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31);
    for (int i = 0; i < 4; ++i)
        t[i] = __builtin_shufflevector(s[2 * i], s[2 * i + 1], 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29) +
               __builtin_shufflevector(s[2 * i], s[2 * i + 1], 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
    for (int i = 0; i < 2; ++i)
        u[i] = __builtin_shufflevector(t[2 * i], t[2 * i + 1], 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27) +
               __builtin_shufflevector(t[2 * i], t[2 * i + 1], 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
    return __builtin_shufflevector(u[0], u[1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
           __builtin_shufflevector(u[0], u[1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
}
#else
template <typename T>
inline V<T> sums(const V<T>* v) {
    V<T> out;
    for (int l = 0; l < kLanes<T>; ++l) out[l] = sum(v[l]);
    return out;
}
#endif

}  // namespace gaunt_simd
