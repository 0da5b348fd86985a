// Neighbour lists of many small structures in one call: every pair and every periodic image in
// range, checked directly (no cell list). For a handful of atoms this is cheaper than setting up
// a linked-cell search per structure; gaunt_md/data/image_search.py sends only structures whose
// pairs x images count is small, and only cells that are fully periodic or not periodic at all.
//
// Structure g owns atoms ptr[g] .. ptr[g+1] of x [N, 3] (Å) and has cell rows cells[g] [3, 3]
// (rows are lattice vectors, used only if periodic[g]). An edge j -> i (sender j, receiver i,
// indices local to the structure) with integer image shift S has
//     r = (x_j - x_i) + S_0 a_0 + S_1 a_1 + S_2 a_2,   |r| < cutoff,
// excluding i == j with S = 0. Edges come sorted by receiver, then sender, then shift.
//
// Shift range of a pair: with fractional coordinates f = x cell^-1 wrapped into [0, 1) (f = w + o,
// o integer), the component of r along the normal of face k is (w_j - w_i + S_k + o_j - o_i) h_k,
// h_k the distance between the faces, and |r| < cutoff needs |w_j - w_i + T_k| < cutoff / h_k
// for T = S + o_j - o_i. The loops run over the integers T in that interval, S = T - o_j + o_i.
//
// Two passes with the same loops: gaunt_neighbors_count writes the number of edges of each
// structure, gaunt_neighbors_fill writes them at the offsets the caller derived from the counts.
// Plain C ABI (ctypes); built by gaunt_md/native/build.py.

#include <cmath>
#include <cstdint>
#include <omp.h>

namespace {

struct Out {
    int64_t* sender;    // [E] or NULL (count pass)
    int64_t* receiver;  // [E]
    double* shifts;     // [E, 3]
    double* distances;  // [E]
};

// the edges of one structure; returns how many (written at out + 0.. when out.sender != NULL)
int64_t search(const double* x, int64_t n, const double* cell, bool periodic, double cutoff, const Out& out) {
    const double rc2 = cutoff * cutoff;
    int64_t count = 0;
    auto emit = [&](int64_t j, int64_t i, double s0, double s1, double s2, double d2) {
        if (out.sender) {
            out.sender[count] = j;
            out.receiver[count] = i;
            out.shifts[3 * count] = s0;
            out.shifts[3 * count + 1] = s1;
            out.shifts[3 * count + 2] = s2;
            out.distances[count] = std::sqrt(d2);
        }
        ++count;
    };
    if (!periodic) {
        for (int64_t i = 0; i < n; ++i)
            for (int64_t j = 0; j < n; ++j) {
                if (i == j) continue;
                const double r0 = x[3 * j] - x[3 * i], r1 = x[3 * j + 1] - x[3 * i + 1], r2 = x[3 * j + 2] - x[3 * i + 2];
                const double d2 = r0 * r0 + r1 * r1 + r2 * r2;
                if (d2 < rc2) emit(j, i, 0.0, 0.0, 0.0, d2);
            }
        return count;
    }
    const double* a = cell;  // a[3 * k + l]: component l of lattice vector k
    // inverse of the cell: column k is (a_{k+1} x a_{k+2}) / det, the face normal of axis k over det
    double inv[9];
    for (int k = 0; k < 3; ++k) {
        const double* u = a + 3 * ((k + 1) % 3);
        const double* v = a + 3 * ((k + 2) % 3);
        inv[0 * 3 + k] = u[1] * v[2] - u[2] * v[1];
        inv[1 * 3 + k] = u[2] * v[0] - u[0] * v[2];
        inv[2 * 3 + k] = u[0] * v[1] - u[1] * v[0];
    }
    const double det = a[0] * inv[0] + a[1] * inv[3] + a[2] * inv[6];
    double reach[3];  // cutoff / h_k
    for (int k = 0; k < 3; ++k) {
        for (int l = 0; l < 3; ++l) inv[3 * l + k] /= det;
        // (widened by 1e-10 relative: rounding must not drop a pair at the edge of the range)
        reach[k] = cutoff * std::sqrt(inv[k] * inv[k] + inv[3 + k] * inv[3 + k] + inv[6 + k] * inv[6 + k]) * (1.0 + 1e-10);
    }
    // wrapped fractional coordinates w and their integer offsets o, per atom (n is small)
    constexpr int64_t kMaxAtoms = 512;  // 24 KB of each on the stack
    if (n > kMaxAtoms) return -1;
    double w[3 * kMaxAtoms];
    double o[3 * kMaxAtoms];
    for (int64_t i = 0; i < n; ++i)
        for (int k = 0; k < 3; ++k) {
            const double f = x[3 * i] * inv[k] + x[3 * i + 1] * inv[3 + k] + x[3 * i + 2] * inv[6 + k];
            o[3 * i + k] = std::floor(f);
            w[3 * i + k] = f - o[3 * i + k];
        }
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) {
            double lo[3], hi[3];
            for (int k = 0; k < 3; ++k) {
                const double d = w[3 * j + k] - w[3 * i + k];
                lo[k] = std::ceil(-reach[k] - d) + o[3 * i + k] - o[3 * j + k];
                hi[k] = std::floor(reach[k] - d) + o[3 * i + k] - o[3 * j + k];
            }
            const double d0 = x[3 * j] - x[3 * i], d1 = x[3 * j + 1] - x[3 * i + 1], d2 = x[3 * j + 2] - x[3 * i + 2];
            for (double s0 = lo[0]; s0 <= hi[0]; s0 += 1.0)
                for (double s1 = lo[1]; s1 <= hi[1]; s1 += 1.0)
                    for (double s2 = lo[2]; s2 <= hi[2]; s2 += 1.0) {
                        if (i == j && s0 == 0.0 && s1 == 0.0 && s2 == 0.0) continue;
                        const double r0 = d0 + (s0 * a[0] + s1 * a[3] + s2 * a[6]);
                        const double r1 = d1 + (s0 * a[1] + s1 * a[4] + s2 * a[7]);
                        const double r2 = d2 + (s0 * a[2] + s1 * a[5] + s2 * a[8]);
                        const double dd = r0 * r0 + r1 * r1 + r2 * r2;
                        if (dd < rc2) emit(j, i, s0, s1, s2, dd);
                    }
        }
    return count;
}

}  // namespace

extern "C" {

// counts[g] = edges of structure g, or -1 if it is periodic with more than 512 atoms
void gaunt_neighbors_count(int64_t n_structures, const int64_t* ptr, const double* x, const double* cells,
                           const uint8_t* periodic, double cutoff, int64_t* counts, int n_threads) {
#pragma omp parallel for schedule(dynamic, 16) num_threads(n_threads)
    for (int64_t g = 0; g < n_structures; ++g)
        counts[g] = search(x + 3 * ptr[g], ptr[g + 1] - ptr[g], cells + 9 * g, periodic[g] != 0, cutoff,
                           Out{nullptr, nullptr, nullptr, nullptr});
}

// structure g's edges at offsets[g] .. offsets[g] + counts[g] of sender, receiver, shifts [E, 3]
// and distances
void gaunt_neighbors_fill(int64_t n_structures, const int64_t* ptr, const double* x, const double* cells,
                          const uint8_t* periodic, double cutoff, const int64_t* offsets, int64_t* sender,
                          int64_t* receiver, double* shifts, double* distances, int n_threads) {
#pragma omp parallel for schedule(dynamic, 16) num_threads(n_threads)
    for (int64_t g = 0; g < n_structures; ++g) {
        const int64_t at = offsets[g];
        search(x + 3 * ptr[g], ptr[g + 1] - ptr[g], cells + 9 * g, periodic[g] != 0, cutoff,
               Out{sender + at, receiver + at, shifts + 3 * at, distances + at});
    }
}

}  // extern "C"
