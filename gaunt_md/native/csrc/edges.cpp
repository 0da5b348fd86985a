// Edge vectors from positions, and forces and virials from the gradient of the energy with respect
// to the edge vectors: the map positions -> edges and its adjoint, one pass each.
//
//   r_e = x[src(e)] - x[dst(e)] + S_e cell[graph(dst(e))]      (float64)
//
//   F_k = sum_{e: dst(e) = k} g_e - sum_{e: src(e) = k} g_e,
//   dE/deps[graph(dst(e))] += r_e (x) g_e        (r_e the edge vector, g_e = dE/dr_e)
//
// (gaunt_md.model.derivatives.ForceField; there as three index_adds and an [E, 3, 3] outer
// product, each a pass over the edges, the index_adds single-threaded in torch.) Serial: a few
// hundred thousand edges take a fraction of a millisecond, less than waking threads for scatters
// that would need private buffers. Plain C ABI, built with the other kernels.

#include <cstdint>
#include <cstring>

namespace {

void edge_vectors(int64_t n_edges, const int64_t* src, const int64_t* dst, const int64_t* node_graph, const double* x,
                  const double* cells, const double* shifts, double* out) {
    for (int64_t e = 0; e < n_edges; ++e) {
        const double* xi = x + 3 * dst[e];
        const double* xj = x + 3 * src[e];
        const double* s = shifts + 3 * e;
        const double* cell = cells + 9 * node_graph[dst[e]];
        double* r = out + 3 * e;
        for (int b = 0; b < 3; ++b) r[b] = xj[b] - xi[b] + (s[0] * cell[b] + s[1] * cell[3 + b] + s[2] * cell[6 + b]);
    }
}

template <typename T>
void edge_forces(int64_t n_edges, int64_t n_nodes, int64_t n_graphs, const int64_t* src, const int64_t* dst,
                 const int64_t* node_graph, const T* vectors, const T* g, T* forces, T* de_deps) {
    std::memset(forces, 0, sizeof(T) * n_nodes * 3);
    if (de_deps) std::memset(de_deps, 0, sizeof(T) * n_graphs * 9);
    for (int64_t e = 0; e < n_edges; ++e) {
        const T* ge = g + 3 * e;
        T* fi = forces + 3 * dst[e];
        T* fj = forces + 3 * src[e];
        for (int a = 0; a < 3; ++a) {
            fi[a] += ge[a];
            fj[a] -= ge[a];
        }
        if (de_deps) {
            const T* r = vectors + 3 * e;
            T* w = de_deps + 9 * node_graph[dst[e]];
            for (int a = 0; a < 3; ++a)
                for (int b = 0; b < 3; ++b) w[3 * a + b] += r[a] * ge[b];
        }
    }
}

}  // namespace

extern "C" {

// src, dst [E]; node_graph [N]; x [N, 3]; cells [n_graphs, 3, 3] (rows are lattice vectors);
// shifts [E, 3]; out [E, 3]
void gaunt_edge_vectors_f64(int64_t n_edges, const int64_t* src, const int64_t* dst, const int64_t* node_graph,
                            const double* x, const double* cells, const double* shifts, double* out) {
    edge_vectors(n_edges, src, dst, node_graph, x, cells, shifts, out);
}

// src, dst [E]; node_graph [N] (graph of each node) and vectors [E, 3], or both NULL without
// virials; g [E, 3]; forces [N, 3] and de_deps [n_graphs, 3, 3] (or NULL) are overwritten.
#define GAUNT_FORCES_DEFINE(SUFFIX, T)                                                                         \
    void gaunt_edge_forces_##SUFFIX(int64_t n_edges, int64_t n_nodes, int64_t n_graphs, const int64_t* src,    \
                                    const int64_t* dst, const int64_t* node_graph, const T* vectors,           \
                                    const T* g, T* forces, T* de_deps) {                                       \
        edge_forces<T>(n_edges, n_nodes, n_graphs, src, dst, node_graph, vectors, g, forces, de_deps);         \
    }

GAUNT_FORCES_DEFINE(f32, float)
GAUNT_FORCES_DEFINE(f64, double)

}  // extern "C"
