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
#include <vector>
#include <omp.h>

namespace {

struct Out {
    int64_t* sender;    // [E] or NULL (count pass)
    int64_t* receiver;  // [E]
    double* shifts;     // [E, 3]
    double* distances;  // [E]

    // edge number `at` (j -> i, shift s, squared length d2), written only in a fill pass
    void put(int64_t at, int64_t j, int64_t i, double s0, double s1, double s2, double d2) const {
        if (!sender) return;
        sender[at] = j;
        receiver[at] = i;
        shifts[3 * at] = s0;
        shifts[3 * at + 1] = s1;
        shifts[3 * at + 2] = s2;
        distances[at] = std::sqrt(d2);
    }
};

// f = w + o with o integer and w in [0, 1) (f - floor(f) can round up to 1 for f just below 0)
inline void wrap(double f, double& w, double& o) {
    o = std::floor(f);
    w = f - o;
    if (w >= 1.0) {
        w = 0.0;
        o += 1.0;
    }
}

// A periodic cell: rows a_k (a[3 k + l], component l of lattice vector k), its inverse (column k
// is (a_{k+1} x a_{k+2}) / det, the face normal of axis k over det) and 1 / h_k, h_k the
// distance between the faces of axis k.
struct Lattice {
    double a[9], inv[9], inv_h[3];

    explicit Lattice(const double* cell) {
        for (int k = 0; k < 9; ++k) a[k] = cell[k];
        for (int k = 0; k < 3; ++k) {
            const double* u = a + 3 * ((k + 1) % 3);
            const double* v = a + 3 * ((k + 2) % 3);
            inv[0 * 3 + k] = u[1] * v[2] - u[2] * v[1];
            inv[1 * 3 + k] = u[2] * v[0] - u[0] * v[2];
            inv[2 * 3 + k] = u[0] * v[1] - u[1] * v[0];
        }
        const double det = a[0] * inv[0] + a[1] * inv[3] + a[2] * inv[6];
        for (int k = 0; k < 3; ++k) {
            for (int l = 0; l < 3; ++l) inv[3 * l + k] /= det;
            inv_h[k] = std::sqrt(inv[k] * inv[k] + inv[3 + k] * inv[3 + k] + inv[6 + k] * inv[6 + k]);
        }
    }
    // cutoff / h_k, widened by 1e-10 relative: rounding must not drop a pair at the edge of a range
    double reach(int k, double cutoff) const { return cutoff * inv_h[k] * (1.0 + 1e-10); }
    // wrapped fractional coordinates w[3] and their integer offsets o[3] of the point p
    void fractional(const double* p, double* w, double* o) const {
        for (int k = 0; k < 3; ++k) wrap(p[0] * inv[k] + p[1] * inv[3 + k] + p[2] * inv[6 + k], w[k], o[k]);
    }
    // |r|^2 of r = (p_j - p_i) + S a, with the arithmetic of gaunt_md.data.neighbors.edge_vectors
    double squared_length(const double* pi, const double* pj, double s0, double s1, double s2) const {
        const double r0 = (pj[0] - pi[0]) + (s0 * a[0] + s1 * a[3] + s2 * a[6]);
        const double r1 = (pj[1] - pi[1]) + (s0 * a[1] + s1 * a[4] + s2 * a[7]);
        const double r2 = (pj[2] - pi[2]) + (s0 * a[2] + s1 * a[5] + s2 * a[8]);
        return r0 * r0 + r1 * r1 + r2 * r2;
    }
};

// the edges of one structure; returns how many (written at out + 0.. when out.sender != NULL)
int64_t search(const double* x, int64_t n, const double* cell, bool periodic, double cutoff, const Out& out) {
    const double rc2 = cutoff * cutoff;
    int64_t count = 0;
    if (!periodic) {
        for (int64_t i = 0; i < n; ++i)
            for (int64_t j = 0; j < n; ++j) {
                if (i == j) continue;
                const double r0 = x[3 * j] - x[3 * i], r1 = x[3 * j + 1] - x[3 * i + 1], r2 = x[3 * j + 2] - x[3 * i + 2];
                const double d2 = r0 * r0 + r1 * r1 + r2 * r2;
                if (d2 < rc2) out.put(count++, j, i, 0.0, 0.0, 0.0, d2);
            }
        return count;
    }
    const Lattice lattice(cell);
    const double reach[3] = {lattice.reach(0, cutoff), lattice.reach(1, cutoff), lattice.reach(2, cutoff)};
    // wrapped fractional coordinates w and their integer offsets o, per atom (n is small)
    constexpr int64_t kMaxAtoms = 512;  // 12 KB of each on the stack
    if (n > kMaxAtoms) return -1;
    double w[3 * kMaxAtoms];
    double o[3 * kMaxAtoms];
    for (int64_t i = 0; i < n; ++i) lattice.fractional(x + 3 * i, w + 3 * i, o + 3 * i);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) {
            double lo[3], hi[3];
            for (int k = 0; k < 3; ++k) {
                const double d = w[3 * j + k] - w[3 * i + k];
                lo[k] = std::ceil(-reach[k] - d) + o[3 * i + k] - o[3 * j + k];
                hi[k] = std::floor(reach[k] - d) + o[3 * i + k] - o[3 * j + k];
            }
            for (double s0 = lo[0]; s0 <= hi[0]; s0 += 1.0)
                for (double s1 = lo[1]; s1 <= hi[1]; s1 += 1.0)
                    for (double s2 = lo[2]; s2 <= hi[2]; s2 += 1.0) {
                        if (i == j && s0 == 0.0 && s1 == 0.0 && s2 == 0.0) continue;
                        const double d2 = lattice.squared_length(x + 3 * i, x + 3 * j, s0, s1, s2);
                        if (d2 < rc2) out.put(count++, j, i, s0, s1, s2, d2);
                    }
        }
    return count;
}

// ---------------------------------------------------------------------------------------------
// One larger fully periodic structure: a cell list. Atoms are binned by wrapped fractional
// coordinate, nb_k = max(1, floor(h_k / cutoff)) bins along axis k (each at least one cutoff
// thick). For receiver i the senders' images that can be in range lie in the bins q_k from
// floor((w_i - reach_k) nb_k) to floor((w_i + reach_k) nb_k) of the periodically continued
// lattice of bins: bin q_k mod nb_k, image T_k = floor(q_k / nb_k). Edges of one receiver come by
// bin, then sender.

struct CellList {
    int64_t n;
    const double* x;
    Lattice lattice;
    double reach[3];
    int64_t nb[3];
    std::vector<double> w, o;           // [n, 3] wrapped fractional coordinates, integer offsets
    std::vector<int64_t> start, atoms;  // CSR: the atoms of bin b are atoms[start[b] .. start[b+1])

    CellList(const double* x_, int64_t n_, const double* cell, double cutoff) : n(n_), x(x_), lattice(cell) {
        for (int k = 0; k < 3; ++k) {
            reach[k] = lattice.reach(k, cutoff);
            const double bins = std::floor(1.0 / (cutoff * lattice.inv_h[k]));
            nb[k] = bins < 1.0 ? 1 : (bins > 1024.0 ? 1024 : static_cast<int64_t>(bins));
        }
        // at most ~2 bins per atom (fewer, thicker bins stay correct)
        while (nb[0] * nb[1] * nb[2] > 2 * n + 8) {
            int k = nb[0] >= nb[1] && nb[0] >= nb[2] ? 0 : (nb[1] >= nb[2] ? 1 : 2);
            nb[k] = (nb[k] + 1) / 2;
        }
        w.resize(3 * n);
        o.resize(3 * n);
        std::vector<int64_t> bin(n);
        start.assign(nb[0] * nb[1] * nb[2] + 1, 0);
        for (int64_t i = 0; i < n; ++i) {
            lattice.fractional(x + 3 * i, &w[3 * i], &o[3 * i]);
            int64_t q[3];
            for (int k = 0; k < 3; ++k) {
                q[k] = static_cast<int64_t>(w[3 * i + k] * static_cast<double>(nb[k]));
                if (q[k] >= nb[k]) q[k] = nb[k] - 1;
            }
            bin[i] = (q[0] * nb[1] + q[1]) * nb[2] + q[2];
            ++start[bin[i] + 1];
        }
        for (size_t b = 1; b < start.size(); ++b) start[b] += start[b - 1];
        atoms.resize(n);
        std::vector<int64_t> fill(start.begin(), start.end() - 1);
        for (int64_t i = 0; i < n; ++i) atoms[fill[bin[i]]++] = i;  // ascending atom index within a bin
    }

    static int64_t floor_div(int64_t q, int64_t m) { return q >= 0 ? q / m : -((-q + m - 1) / m); }

    // the edges of receiver i, written from out + 0 when out.sender != NULL; returns how many
    int64_t receiver(int64_t i, double cutoff, const Out& out) const {
        const double rc2 = cutoff * cutoff;
        int64_t lo[3], hi[3];
        for (int k = 0; k < 3; ++k) {
            lo[k] = static_cast<int64_t>(std::floor((w[3 * i + k] - reach[k]) * static_cast<double>(nb[k])));
            hi[k] = static_cast<int64_t>(std::floor((w[3 * i + k] + reach[k]) * static_cast<double>(nb[k])));
        }
        int64_t count = 0;
        for (int64_t q0 = lo[0]; q0 <= hi[0]; ++q0)
            for (int64_t q1 = lo[1]; q1 <= hi[1]; ++q1)
                for (int64_t q2 = lo[2]; q2 <= hi[2]; ++q2) {
                    const int64_t t0 = floor_div(q0, nb[0]), t1 = floor_div(q1, nb[1]), t2 = floor_div(q2, nb[2]);
                    const int64_t b = ((q0 - t0 * nb[0]) * nb[1] + (q1 - t1 * nb[1])) * nb[2] + (q2 - t2 * nb[2]);
                    for (int64_t m = start[b]; m < start[b + 1]; ++m) {
                        const int64_t j = atoms[m];
                        const double s0 = static_cast<double>(t0) - o[3 * j] + o[3 * i];
                        const double s1 = static_cast<double>(t1) - o[3 * j + 1] + o[3 * i + 1];
                        const double s2 = static_cast<double>(t2) - o[3 * j + 2] + o[3 * i + 2];
                        if (i == j && s0 == 0.0 && s1 == 0.0 && s2 == 0.0) continue;
                        const double d2 = lattice.squared_length(x + 3 * i, x + 3 * j, s0, s1, s2);
                        if (d2 < rc2) out.put(count++, j, i, s0, s1, s2, d2);
                    }
                }
        return count;
    }
};

}  // namespace

extern "C" {

// One fully periodic structure through a cell list, in two calls with the same arguments:
// counts == NULL -> returns the number of edges and writes per-receiver counts into
// receiver_counts [n]; then with offsets [n] (exclusive prefix sums of those counts) it writes the
// edges.
int64_t gaunt_neighbors_cells(int64_t n_atoms, const double* x, const double* cell, double cutoff,
                              int64_t* receiver_counts, const int64_t* offsets, int64_t* sender,
                              int64_t* receiver, double* shifts, double* distances, int n_threads) {
    const CellList list(x, n_atoms, cell, cutoff);
    int64_t total = 0;
    if (!offsets) {
#pragma omp parallel for schedule(dynamic, 64) num_threads(n_threads) reduction(+ : total)
        for (int64_t i = 0; i < n_atoms; ++i) {
            receiver_counts[i] = list.receiver(i, cutoff, Out{nullptr, nullptr, nullptr, nullptr});
            total += receiver_counts[i];
        }
        return total;
    }
#pragma omp parallel for schedule(dynamic, 64) num_threads(n_threads)
    for (int64_t i = 0; i < n_atoms; ++i) {
        const int64_t at = offsets[i];
        list.receiver(i, cutoff, Out{sender + at, receiver + at, shifts + 3 * at, distances + at});
    }
    return 0;
}

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
