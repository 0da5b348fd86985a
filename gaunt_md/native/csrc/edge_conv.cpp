// Fused Gaunt edge convolution on CPU: gather, radial scaling, coupling and scatter in one pass.
//
//   A[k, i, c] = scale * sum_{e: dst(e) = i} sum_a R[e, deg(k), deg(a), c] * h[a, src(e), c] * S[e, a, k]
//
// with S[e, a, k] = 4 pi sum_b G[a, b, k] Y_b(r_e) (the non-zero part of the per-edge coupling
// matrix of gaunt_md.model.blocks.EdgeConvolution). Node features are degree-major, [K, N, C], as
// in the model. Channels are the innermost axis of every array, so the loops over c are contiguous
// and vectorise. Edges must be sorted by receiver (rowptr is the CSR pointer over receivers): each
// thread owns whole receivers of A, no atomics.
// The backward pass gives dL/dR, dL/dh and dL/dS for dL/dA; dL/dh is scattered over senders into
// one private buffer per thread (gh_work[thread]), which the caller sums; gh_work = NULL skips it
// (the first layer's h holds only frozen weights).
//
// S comes either as an array [E, K_in, K_out] or is made per edge from the harmonics Y and the
// coupling matrix (see Coupling); then the backward pass returns dL/dY instead of dL/dS.
//
// The radial weights R come either as an array [E, (l3, l1), C] (the radial MLP evaluated by torch)
// or, when `table` is given, from a cubic Hermite table of that MLP over distance (see Table):
// then the kernel reads the edge lengths and the backward pass returns dL/dr per edge instead of
// dL/dR.
//
// Plain C ABI (loaded with ctypes): no Python or torch headers, compiles in seconds.
// Built and loaded by gaunt_md/native/build.py; first derivatives only.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>
#include <omp.h>

#include "simd.h"

namespace {

struct Shape {
    int64_t n_edges, n_nodes, channels, k_in, k_out, l_out1, l_in1;
    double scale;
};

// Cubic Hermite table of the radial weights over distance, in one of two forms (`rows`):
//   4: polynomial coefficients per interval k: R(r) = c0 + c1 t + c2 t^2 + c3 t^3, t = r / dx - k;
//   2: value and slope (times dx) per knot k, f_k and m_k:
//      R(r) = h00(t) f_k + h10(t) m_k + h01(t) f_k+1 + h11(t) m_k+1 (the Hermite basis).
// Both give the same cubic; R and dR/dt are weighted sums of four rows (Point). The knot form
// keeps half as many rows (neighbouring intervals share a knot), so the part of the table a batch
// touches is half as large for the caches; its derivative subtracts nearly equal knot values,
// which costs float32 four digits (float32 tables use coefficients).
//
// Memory order (`block`):
//   0: [steps, rows, width], column (p, c) at p C + c: row q of an interval `width` apart;
//   W (the SIMD width): [steps, S, C / W, P, rows, W]: for one vector of channels, the rows of
//      every path p of a step lie together (2 or 4 vectors per path, 1-2 KB per step), so the
//      register-blocked kernels, which take one vector of channels at a time, read runs of
//      consecutive cache lines instead of lines `width` apart (the forward pass took 0.8x as long).
// steps = intervals (coefficients) or knots = intervals + 1 (values and slopes).
//
// With `species` (one index per node), the table holds one set of columns per sender species,
// width = n_species * cols, and an edge reads those of the species of its sender: the first
// layer's radial weights with the species embedding and the two linear maps around the
// convolution folded in (gaunt_md.model.kernels.enable).
template <typename T>
struct Point {
    const T* rows;    // the step's start for the sender's species
    T w[4], dw[4];    // R = sum_q w[q] row_q, dR/dt = sum_q dw[q] row_q
};

template <typename T>
struct Table {
    const T* data;
    T inv_dx;
    int64_t n_intervals, width;  // width: row length, cols per species times the species
    int64_t rows;                // 4 (coefficients per interval) or 2 (value and slope per knot)
    int64_t block;               // 0 or the SIMD width W (memory order, above)
    int64_t cols, channels;      // the (l3, l1) C columns an edge reads; C
    const int64_t* species;      // [N] or NULL (one set of columns)
    int64_t paths = 0;           // P = cols / C
    int64_t q_offset[4] = {};    // where the four rows of an interval start, from Point::rows

    Table(const T* data_, T inv_dx_, int64_t n_intervals_, int64_t width_, int64_t rows_, int64_t block_,
          int64_t cols_, int64_t channels_, const int64_t* species_)
        : data(data_), inv_dx(inv_dx_), n_intervals(n_intervals_), width(width_), rows(rows_), block(block_),
          cols(cols_), channels(channels_), species(species_) {
        paths = channels > 0 ? cols / channels : 0;
        for (int q = 0; q < 4; ++q) {
            if (block == 0)
                q_offset[q] = q * width;
            else if (rows == 4)
                q_offset[q] = q * block;
            else  // knot k: f, m at 0, W; knot k + 1 one step (2 width) on
                q_offset[q] = (q % 2) * block + (q / 2) * 2 * width;
        }
    }

    // the rows of the interval of distance r (clamped to the table) for sender j, and the weights
    // of the position t in it
    inline Point<T> at(T r, int64_t j) const {
        T x = r * inv_dx;
        if (x < T(0)) x = T(0);
        int64_t k = static_cast<int64_t>(x);
        if (k >= n_intervals) k = n_intervals - 1;
        T t = x - static_cast<T>(k);
        if (t > T(1)) t = T(1);
        Point<T> p;
        p.rows = data + k * rows * width + (species ? species[j] * (block ? rows : 1) * cols : 0);
        const T t2 = t * t, t3 = t2 * t;
        if (rows == 4) {
            p.w[0] = T(1), p.w[1] = t, p.w[2] = t2, p.w[3] = t3;
            p.dw[0] = T(0), p.dw[1] = T(1), p.dw[2] = T(2) * t, p.dw[3] = T(3) * t2;
        } else {
            p.w[0] = T(2) * t3 - T(3) * t2 + T(1), p.w[1] = t3 - T(2) * t2 + t;
            p.w[2] = T(3) * t2 - T(2) * t3, p.w[3] = t3 - t2;
            p.dw[0] = T(6) * (t2 - t), p.dw[1] = T(3) * t2 - T(4) * t + T(1);
            p.dw[2] = T(6) * (t - t2), p.dw[3] = T(3) * t2 - T(2) * t;
        }
        return p;
    }
    // offset of column (path p, channel c) from a row's start
    inline int64_t column(int64_t p, int64_t c) const {
        return block ? ((c / block) * paths + p) * rows * block + c % block : p * channels + c;
    }
    // R(r) into out[cols] (out[p C + c])
    void value(T r, int64_t j, T* out) const {
        const Point<T> pt = at(r, j);
        const T *q0 = pt.rows + q_offset[0], *q1 = pt.rows + q_offset[1], *q2 = pt.rows + q_offset[2],
                *q3 = pt.rows + q_offset[3];
        for (int64_t p = 0; p < paths; ++p)
            for (int64_t c = 0; c < channels; ++c) {
                const int64_t x = column(p, c);
                out[p * channels + c] = pt.w[0] * q0[x] + pt.w[1] * q1[x] + pt.w[2] * q2[x] + pt.w[3] * q3[x];
            }
    }
    // sum_{p, c} g[p C + c] dR_{p c}/dr
    T dot_derivative(T r, int64_t j, const T* g) const {
        const Point<T> pt = at(r, j);
        const T *q0 = pt.rows + q_offset[0], *q1 = pt.rows + q_offset[1], *q2 = pt.rows + q_offset[2],
                *q3 = pt.rows + q_offset[3];
        T acc = T(0);
        for (int64_t p = 0; p < paths; ++p)
            for (int64_t c = 0; c < channels; ++c) {
                const int64_t x = column(p, c);
                acc += g[p * channels + c] * (pt.dw[0] * q0[x] + pt.dw[1] * q1[x] + pt.dw[2] * q2[x] + pt.dw[3] * q3[x]);
            }
        return acc * inv_dx;
    }
    // offset of the vector of channels [b W, (b + 1) W) of path p (W = SIMD width = block)
    inline int64_t vector_column(int64_t p, int64_t b) const {
        return block ? (b * paths + p) * rows * block : p * channels + b * gaunt_simd::kLanes<T>;
    }
    // one vector of R and of dR/dt: path p, channels [b W, (b + 1) W)
    inline gaunt_simd::V<T> value_at(const Point<T>& pt, int64_t p, int64_t b) const {
        using gaunt_simd::load;
        const T* q = pt.rows + vector_column(p, b);
        return pt.w[0] * load(q + q_offset[0]) + pt.w[1] * load(q + q_offset[1]) + pt.w[2] * load(q + q_offset[2]) +
               pt.w[3] * load(q + q_offset[3]);
    }
    inline gaunt_simd::V<T> slope_at(const Point<T>& pt, int64_t p, int64_t b) const {
        using gaunt_simd::load;
        const T* q = pt.rows + vector_column(p, b);
        return pt.dw[0] * load(q + q_offset[0]) + pt.dw[1] * load(q + q_offset[1]) + pt.dw[2] * load(q + q_offset[2]) +
               pt.dw[3] * load(q + q_offset[3]);
    }
};

// out[k, c] = scale * g[k, i, c] for the K components of node i of degree-major g [K, N, C]
// (node_stride = N C): the receiver's dL/dA, contiguous, for the backward passes
template <typename T>
inline void gather_scaled(const T* g, int64_t i, int64_t K, int64_t node_stride, int64_t C, T scale, T* out) {
    for (int64_t k = 0; k < K; ++k) {
        const T* g_in = g + k * node_stride + i * C;
        T* g_out = out + k * C;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) g_out[c] = scale * g_in[c];
    }
}

// The per-edge coupling S[e, a, k] (K_in K_out numbers per edge): either given as an array
// [E, K_in, K_out], or made edge by edge from the edge harmonics Y [E, K_edge] and the coupling
// matrix G [K_edge, K_in K_out] (S_e = Y_e G), so that S is never written to memory: for 160k
// edges it is 82 MB in float64, written, read by the forward and the backward pass, and its
// gradient as large again. With Y, the backward pass gives dL/dY [E, K_edge] (= dL/dS_e G^T)
// instead of dL/dS. G is mostly zeros (86 of its 16 x 64 entries for l_in = 1, l_edge = 3):
// both products visit only its non-zero vectors, one vector of S (or of dL/dY) at a time.
template <typename T>
struct Coupling {
    static constexpr int W = gaunt_simd::kLanes<T>;
    static constexpr int kMaxYVectors = 8;  // dL/dY in registers: K_edge <= 8 W (l_edge <= 7 in float64)
    using Vec = gaunt_simd::V<T>;

    const T* S;             // [E, width] or NULL
    const T* Y;             // [E, k_edge] (when S is NULL)
    int64_t k_edge, width;  // width = K_in K_out
    bool vectorised = false;  // width and k_edge in whole vectors' reach (else the scalar loops)
    // forward: S[v-th vector] = sum over n in [s_start[v], s_start[v+1]) of Y[s_b[n]] s_g[n]
    std::vector<int64_t> s_start, s_b;
    std::vector<Vec> s_g;
    // backward: dL/dY[u-th vector] = sum over n in [y_start[u], y_start[u+1]) of dL/dS[y_col[n]] y_g[n]
    std::vector<int64_t> y_start, y_col;
    std::vector<Vec> y_g;
    // scalar fallback (not vectorised): the non-zero entries (b, col, G[b, col])
    std::vector<int64_t> nz_b, nz_col;
    std::vector<T> nz_g;

    Coupling(const T* S_, const T* Y_, const T* G, int64_t k_edge_, int64_t width_)
        : S(S_), Y(Y_), k_edge(k_edge_), width(width_) {
        if (S) return;
        const int64_t y_vectors = (k_edge + W - 1) / W;
        vectorised = width % W == 0 && y_vectors <= kMaxYVectors;
        if (!vectorised) {
            for (int64_t b = 0; b < k_edge; ++b)
                for (int64_t col = 0; col < width; ++col)
                    if (G[b * width + col] != T(0)) {
                        nz_b.push_back(b);
                        nz_col.push_back(col);
                        nz_g.push_back(G[b * width + col]);
                    }
            return;
        }
        s_start.push_back(0);
        for (int64_t v = 0; v < width / W; ++v) {
            for (int64_t b = 0; b < k_edge; ++b) {
                Vec g = {};
                bool any = false;
                for (int l = 0; l < W; ++l) {
                    g[l] = G[b * width + v * W + l];
                    any = any || g[l] != T(0);
                }
                if (any) {
                    s_b.push_back(b);
                    s_g.push_back(g);
                }
            }
            s_start.push_back(static_cast<int64_t>(s_b.size()));
        }
        y_start.push_back(0);
        for (int64_t u = 0; u < y_vectors; ++u) {
            for (int64_t col = 0; col < width; ++col) {
                Vec g = {};
                bool any = false;
                for (int l = 0; l < W && u * W + l < k_edge; ++l) {
                    g[l] = G[(u * W + l) * width + col];
                    any = any || g[l] != T(0);
                }
                if (any) {
                    y_col.push_back(col);
                    y_g.push_back(g);
                }
            }
            y_start.push_back(static_cast<int64_t>(y_col.size()));
        }
    }
    // sum over n in [begin, end) of x[index[n]] g[n], in four interleaved partial sums: one chain
    // would wait for each add (4 cycles) on the 60-odd terms of a dL/dY vector
    static inline Vec combine(const T* x, const int64_t* index, const Vec* g, int64_t begin, int64_t end) {
        Vec a0 = {}, a1 = {}, a2 = {}, a3 = {};
        int64_t n = begin;
        for (; n + 3 < end; n += 4) {
            a0 += x[index[n]] * g[n];
            a1 += x[index[n + 1]] * g[n + 1];
            a2 += x[index[n + 2]] * g[n + 2];
            a3 += x[index[n + 3]] * g[n + 3];
        }
        for (; n < end; ++n) a0 += x[index[n]] * g[n];
        return (a0 + a1) + (a2 + a3);
    }
    // S of edge e: a row of the given array, or made in scratch[width]
    const T* edge(int64_t e, T* scratch) const {
        if (S) return S + e * width;
        const T* y = Y + e * k_edge;
        if (vectorised) {
            for (int64_t v = 0; v + 1 < static_cast<int64_t>(s_start.size()); ++v)
                gaunt_simd::store(scratch + v * W, combine(y, s_b.data(), s_g.data(), s_start[v], s_start[v + 1]));
            return scratch;
        }
        std::memset(scratch, 0, sizeof(T) * width);
        const int64_t nnz = static_cast<int64_t>(nz_g.size());
        for (int64_t n = 0; n < nnz; ++n) scratch[nz_col[n]] += nz_g[n] * y[nz_b[n]];
        return scratch;
    }
    // dL/dS of edge e (gs[width]) into grad: its row of dL/dS [E, width], or of dL/dY [E, k_edge]
    void store_grad(int64_t e, const T* gs, T* grad) const {
        if (S) {
            std::memcpy(grad + e * width, gs, sizeof(T) * width);
            return;
        }
        T* gy = grad + e * k_edge;
        if (vectorised) {
            for (int64_t u = 0; u + 1 < static_cast<int64_t>(y_start.size()); ++u)
                gaunt_simd::store_first(gy + u * W, combine(gs, y_col.data(), y_g.data(), y_start[u], y_start[u + 1]),
                                        std::min<int64_t>(W, k_edge - u * W));
            return;
        }
        std::memset(gy, 0, sizeof(T) * k_edge);
        const int64_t nnz = static_cast<int64_t>(nz_g.size());
        for (int64_t n = 0; n < nnz; ++n) gy[nz_b[n]] += nz_g[n] * gs[nz_col[n]];
    }
};

// CT > 0: the channel count as a compile-time constant (the loops over c unroll into registers);
// CT = 0: any channel count.
template <typename T, int CT>
void forward(const Shape& s, const T* R, const Table<T>& table, const T* lengths, const T* h,
             const Coupling<T>& S, const int64_t* src, const int64_t* rowptr, const int64_t* deg_in, const int64_t* deg_out, T* A,
             int n_threads) {
    const int64_t C = CT > 0 ? CT : s.channels;
    const int64_t K_in = s.k_in, K_out = s.k_out, L_in1 = s.l_in1;
    const int64_t paths = s.l_out1 * L_in1;
#pragma omp parallel num_threads(n_threads)
    {
        std::vector<T> x(s.l_out1 * K_in * C);  // x[l3, a, c] = R[e, l3, deg a, c] h[a, j, c]
        std::vector<T> r_buf(table.data ? paths * C : 0);
        std::vector<T> acc(K_out * C);  // A[:, i, :] of the receiver in hand
        std::vector<T> s_buf(K_in * K_out);
        const int64_t node_stride = s.n_nodes * C;  // from one SH component to the next
        const T scale = static_cast<T>(s.scale);
#pragma omp for schedule(dynamic, 8)
        for (int64_t i = 0; i < s.n_nodes; ++i) {
            T* Ai = acc.data();
            std::memset(Ai, 0, sizeof(T) * K_out * C);
            for (int64_t e = rowptr[i]; e < rowptr[i + 1]; ++e) {
                const T* hj = h + src[e] * C;
                const T* Re = R ? R + e * paths * C : r_buf.data();
                if (table.data) table.value(lengths[e], src[e], r_buf.data());
                const T* Se = S.edge(e, s_buf.data());
                for (int64_t l3 = 0; l3 < s.l_out1; ++l3)
                    for (int64_t a = 0; a < K_in; ++a) {
                        const T* r = Re + (l3 * L_in1 + deg_in[a]) * C;
                        const T* ha = hj + a * node_stride;
                        T* xa = x.data() + (l3 * K_in + a) * C;
#pragma omp simd
                        for (int64_t c = 0; c < C; ++c) xa[c] = r[c] * ha[c];
                    }
                // A[i, k, c] += sum_a S[a, k] x[deg k, a, c]
                for (int64_t k = 0; k < K_out; ++k) {
                    const T* xl = x.data() + deg_out[k] * K_in * C;
                    T* Aik = Ai + k * C;
                    for (int64_t a = 0; a < K_in; ++a) {
                        const T sak = Se[a * K_out + k];
                        const T* xa = xl + a * C;
#pragma omp simd
                        for (int64_t c = 0; c < C; ++c) Aik[c] += sak * xa[c];
                    }
                }
            }
            for (int64_t k = 0; k < K_out; ++k) {
                const T* a_in = Ai + k * C;
                T* a_out = A + k * node_stride + i * C;
#pragma omp simd
                for (int64_t c = 0; c < C; ++c) a_out[c] = scale * a_in[c];
            }
        }
    }
}

template <typename T, int CT>
void backward(const Shape& s, const T* R, const Table<T>& table, const T* lengths, const T* h,
              const Coupling<T>& S, const int64_t* src, const int64_t* rowptr, const int64_t* deg_in,
              const int64_t* deg_out, const T* gA, T* gR, T* g_lengths, T* gS, T* gh_work, int n_threads) {
    const int64_t C = CT > 0 ? CT : s.channels;
    const int64_t K_in = s.k_in, K_out = s.k_out, L_in1 = s.l_in1;
    const int64_t paths = s.l_out1 * L_in1;
#pragma omp parallel num_threads(n_threads)
    {
        std::vector<T> x(s.l_out1 * K_in * C), gx(s.l_out1 * K_in * C);  // x and dL/dx [l3, a, c]
        std::vector<T> r_buf(table.data ? paths * C : 0), gr_buf(table.data ? paths * C : 0);
        std::vector<T> g_buf(K_out * C);  // scale * dL/dA[:, i, :] of the receiver in hand
        std::vector<T> s_buf(K_in * K_out), gs_buf(K_in * K_out);  // S and dL/dS of the edge in hand
        const int64_t node_stride = s.n_nodes * C;
        const T scale = static_cast<T>(s.scale);
        T* gh = gh_work ? gh_work + static_cast<int64_t>(omp_get_thread_num()) * s.n_nodes * K_in * C : nullptr;
#pragma omp for schedule(dynamic, 8)
        for (int64_t i = 0; i < s.n_nodes; ++i) {
            const T* gAi = g_buf.data();
            gather_scaled(gA, i, K_out, node_stride, C, scale, g_buf.data());
            for (int64_t e = rowptr[i]; e < rowptr[i + 1]; ++e) {
                const int64_t j = src[e];
                const T* hj = h + j * C;
                const T* Re = R ? R + e * paths * C : r_buf.data();
                if (table.data) table.value(lengths[e], j, r_buf.data());
                const T* Se = S.edge(e, s_buf.data());
                T* gRe = table.data ? gr_buf.data() : gR + e * paths * C;
                T* gSe = gs_buf.data();
                T* ghj = gh ? gh + j * C : nullptr;
                for (int64_t l3 = 0; l3 < s.l_out1; ++l3)
                    for (int64_t a = 0; a < K_in; ++a) {
                        const T* r = Re + (l3 * L_in1 + deg_in[a]) * C;
                        const T* ha = hj + a * node_stride;
                        T* xa = x.data() + (l3 * K_in + a) * C;
                        T* gxa = gx.data() + (l3 * K_in + a) * C;
#pragma omp simd
                        for (int64_t c = 0; c < C; ++c) {
                            xa[c] = r[c] * ha[c];
                            gxa[c] = T(0);
                        }
                    }
                // dL/dS[e, a, k] = sum_c x[deg k, a, c] g[k, c];  dL/dx[deg k, a, c] += S[a, k] g[k, c]
                for (int64_t k = 0; k < K_out; ++k) {
                    const int64_t l3 = deg_out[k];
                    const T* g = gAi + k * C;
                    for (int64_t a = 0; a < K_in; ++a) {
                        const T sak = Se[a * K_out + k];
                        const T* xa = x.data() + (l3 * K_in + a) * C;
                        T* gxa = gx.data() + (l3 * K_in + a) * C;
                        T dot = T(0);
#pragma omp simd reduction(+ : dot)
                        for (int64_t c = 0; c < C; ++c) {
                            dot += xa[c] * g[c];
                            gxa[c] += sak * g[c];
                        }
                        gSe[a * K_out + k] = dot;
                    }
                }
                // dL/dR[l3, l1, c] = sum_{deg a = l1} gx h;  dL/dh[a, j, c] += sum_l3 gx R
                std::memset(gRe, 0, sizeof(T) * paths * C);
                for (int64_t l3 = 0; l3 < s.l_out1; ++l3)
                    for (int64_t a = 0; a < K_in; ++a) {
                        const int64_t p = l3 * L_in1 + deg_in[a];
                        const T* gxa = gx.data() + (l3 * K_in + a) * C;
                        const T* ha = hj + a * node_stride;
                        T* gr = gRe + p * C;
#pragma omp simd
                        for (int64_t c = 0; c < C; ++c) gr[c] += gxa[c] * ha[c];
                        if (ghj) {
                            const T* r = Re + p * C;
                            T* gha = ghj + a * node_stride;
#pragma omp simd
                            for (int64_t c = 0; c < C; ++c) gha[c] += gxa[c] * r[c];
                        }
                    }
                if (table.data) g_lengths[e] = table.dot_derivative(lengths[e], j, gRe);
                S.store_grad(e, gSe, gS);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Register-blocked kernels for the shapes the shipped models use: K_in = 1 (first layer) or 4
// (l_in = 1), L_A = 2 or 3, channels a multiple of one 64-byte vector. The same sums as above,
// with the loops arranged so that the accumulators stay in vector registers:
//   forward: per receiver and vector of channels, the K_out accumulators of A, walking the edges;
//   backward: per edge and input component a, the K_out dot products for dL/dS in registers over
//   the vectors of channels (reduced once), dL/dh summed over l3 before it is written, and dL/dr
//   per edge accumulated without writing dL/dR.

using gaunt_simd::kLanes;
using gaunt_simd::V;

constexpr int degree_of(int a) { return a < 1 ? 0 : a < 4 ? 1 : a < 9 ? 2 : 3; }

// radial weights of one edge for the channels [off, off + lanes) of every path p = (l3, l1)
template <typename T, int P>
inline void radial_block(const T* R, const Table<T>& table, const T* lengths, int64_t e, int64_t j, int64_t C,
                         int64_t off, V<T>* r) {
    const int64_t PC = P * C;
    if (R) {
        GAUNT_UNROLL
        for (int p = 0; p < P; ++p) r[p] = gaunt_simd::load(R + e * PC + p * C + off);
        return;
    }
    const Point<T> pt = table.at(lengths[e], j);
    GAUNT_UNROLL
    for (int p = 0; p < P; ++p) r[p] = table.value_at(pt, p, off / kLanes<T>);
}

template <typename T, int KI, int LI1, int LO1>
void forward_fast(const Shape& s, const T* R, const Table<T>& table, const T* lengths, const T* h,
                  const Coupling<T>& S, const int64_t* src, const int64_t* rowptr, T* A, int n_threads) {
    constexpr int W = kLanes<T>, KO = LO1 * LO1, P = LO1 * LI1;
    const int64_t C = s.channels, NC = s.n_nodes * C;
    const T scale = static_cast<T>(s.scale);
#pragma omp parallel num_threads(n_threads)
    {
        std::vector<T> s_buf;  // S of the receiver's edges, made once for all channel blocks
#pragma omp for schedule(dynamic, 8)
        for (int64_t i = 0; i < s.n_nodes; ++i) {
            const int64_t e0 = rowptr[i], n_e = rowptr[i + 1] - e0;
            const T* Si = S.S ? S.S + e0 * (KI * KO) : nullptr;
            if (!Si) {
                if (static_cast<int64_t>(s_buf.size()) < n_e * KI * KO) s_buf.resize(n_e * KI * KO);
                for (int64_t el = 0; el < n_e; ++el) S.edge(e0 + el, s_buf.data() + el * (KI * KO));
                Si = s_buf.data();
            }
            for (int64_t off = 0; off < C; off += W) {
                V<T> acc[KO];
                GAUNT_UNROLL
                for (int k = 0; k < KO; ++k) acc[k] = V<T>{};
                for (int64_t e = e0; e < e0 + n_e; ++e) {
                    const T* hj = h + src[e] * C + off;
                    const T* Se = Si + (e - e0) * (KI * KO);
                    V<T> r[P], hv[KI];
                    radial_block<T, P>(R, table, lengths, e, src[e], C, off, r);
                    GAUNT_UNROLL
                    for (int a = 0; a < KI; ++a) hv[a] = gaunt_simd::load(hj + a * NC);
                    GAUNT_UNROLL
                    for (int l3 = 0; l3 < LO1; ++l3) {
                        V<T> x[KI];
                        GAUNT_UNROLL
                        for (int a = 0; a < KI; ++a) x[a] = r[l3 * LI1 + degree_of(a)] * hv[a];
                        GAUNT_UNROLL
                        for (int k = l3 * l3; k < (l3 + 1) * (l3 + 1); ++k)
                            GAUNT_UNROLL
                            for (int a = 0; a < KI; ++a) acc[k] += Se[a * KO + k] * x[a];
                    }
                }
                GAUNT_UNROLL
                for (int k = 0; k < KO; ++k) gaunt_simd::store(A + k * NC + i * C + off, scale * acc[k]);
            }
        }
    }
}

template <typename T, int KI, int LI1, int LO1>
void backward_fast(const Shape& s, const T* R, const Table<T>& table, const T* lengths, const T* h,
                   const Coupling<T>& S, const int64_t* src, const int64_t* rowptr, const T* gA, T* gR,
                   T* g_lengths, T* gS, T* gh_work, int n_threads) {
    constexpr int W = kLanes<T>, KO = LO1 * LO1, P = LO1 * LI1;
    const int64_t C = s.channels, NC = s.n_nodes * C, PC = P * C, NB = C / W;
    const T scale = static_cast<T>(s.scale);
    if (!table.data) std::memset(gR, 0, sizeof(T) * s.n_edges * PC);  // accumulated over the a of a path
#pragma omp parallel num_threads(n_threads)
    {
        std::vector<T> g_buf(KO * C);            // scale * dL/dA[:, i, :] of the receiver in hand
        std::vector<V<T>> rb(P * NB), drb(P * NB);  // R and dR/dt of the edge in hand, [p][block]
        T* gh = gh_work ? gh_work + static_cast<int64_t>(omp_get_thread_num()) * KI * NC : nullptr;
#pragma omp for schedule(dynamic, 8)
        for (int64_t i = 0; i < s.n_nodes; ++i) {
            gather_scaled(gA, i, KO, NC, C, scale, g_buf.data());
            const T* gAi = g_buf.data();
            for (int64_t e = rowptr[i]; e < rowptr[i + 1]; ++e) {
                const int64_t j = src[e];
                const T* hj = h + j * C;
                T s_buf[KI * KO], gSe[KI * KO];  // S and dL/dS of the edge
                const T* Se = S.edge(e, s_buf);
                const bool tabulated = table.data != nullptr;
                const Point<T> pt = tabulated ? table.at(lengths[e], j) : Point<T>{};
                for (int64_t b = 0; b < NB; ++b)  // in the blocked table's memory order
                    GAUNT_UNROLL
                    for (int p = 0; p < P; ++p) {
                        if (tabulated) {
                            rb[p * NB + b] = table.value_at(pt, p, b);
                            drb[p * NB + b] = table.slope_at(pt, p, b);
                        } else {
                            rb[p * NB + b] = gaunt_simd::load(R + e * PC + p * C + b * W);
                        }
                    }
                V<T> gl[LO1] = {};  // sum over channels of dL/dR dR/dt, one chain per l3
                // per input component a: the KO dot products of x = R h with dL/dA (dL/dS[a, :]) in
                // registers over the channel blocks; per block, dL/dh[a] summed over l3 before it is
                // added to the thread's buffer
                GAUNT_UNROLL
                for (int a = 0; a < KI; ++a) {
                    const T* ha = hj + a * NC;
                    T* gha = gh ? gh + a * NC + j * C : nullptr;
                    V<T> d[KO] = {};
                    for (int64_t b = 0; b < NB; ++b) {
                        const V<T> hv = gaunt_simd::load(ha + b * W);
                        V<T> ghv = {};
                        GAUNT_UNROLL
                        for (int l3 = 0; l3 < LO1; ++l3) {
                            const int p = l3 * LI1 + degree_of(a);
                            const V<T> r = rb[p * NB + b], x = r * hv;
                            V<T> gx = {};
                            GAUNT_UNROLL
                            for (int k = l3 * l3; k < (l3 + 1) * (l3 + 1); ++k) {
                                const V<T> g = gaunt_simd::load(gAi + k * C + b * W);
                                gx += Se[a * KO + k] * g;
                                d[k] += x * g;
                            }
                            const V<T> gr = gx * hv;  // dL/dR[p] from this a
                            if (tabulated) {
                                gl[l3] += gr * drb[p * NB + b];
                            } else {
                                // paths are shared by the a of one degree: accumulate (zeroed above)
                                T* gRp = gR + e * PC + p * C + b * W;
                                gaunt_simd::store(gRp, gaunt_simd::load(gRp) + gr);
                            }
                            ghv += gx * r;
                        }
                        if (gha) gaunt_simd::store(gha + b * W, gaunt_simd::load(gha + b * W) + ghv);
                    }
                    if constexpr (KO % W == 0) {  // W sums at a time (gaunt_simd::sums)
                        GAUNT_UNROLL
                        for (int k = 0; k < KO; k += W) gaunt_simd::store(gSe + a * KO + k, gaunt_simd::sums(d + k));
                    } else {
                        GAUNT_UNROLL
                        for (int k = 0; k < KO; ++k) gSe[a * KO + k] = gaunt_simd::sum(d[k]);
                    }
                }
                if (tabulated) {
                    V<T> total = gl[0];
                    GAUNT_UNROLL
                    for (int l3 = 1; l3 < LO1; ++l3) total += gl[l3];
                    g_lengths[e] = gaunt_simd::sum(total) * table.inv_dx;
                }
                S.store_grad(e, gSe, gS);
            }
        }
    }
}

// the register-blocked kernel if there is one for this shape (K_in, l_in + 1, L_A + 1 and whole
// vectors of channels), else false
#define GAUNT_SHAPE_DISPATCH(FN, s, ...)                                          \
    if ((s).channels % kLanes<T> != 0) return false;                              \
    switch ((s).k_in * 100 + (s).l_in1 * 10 + (s).l_out1) {                       \
        case 114: FN<T, 1, 1, 4>(s, __VA_ARGS__); return true;                    \
        case 113: FN<T, 1, 1, 3>(s, __VA_ARGS__); return true;                    \
        case 424: FN<T, 4, 2, 4>(s, __VA_ARGS__); return true;                    \
        case 423: FN<T, 4, 2, 3>(s, __VA_ARGS__); return true;                    \
        default: return false;                                                    \
    }

template <typename T>
bool forward_fast_any(const Shape& s, const T* R, const Table<T>& table, const T* lengths, const T* h,
                      const Coupling<T>& S, const int64_t* src, const int64_t* rowptr, T* A, int n_threads) {
    GAUNT_SHAPE_DISPATCH(forward_fast, s, R, table, lengths, h, S, src, rowptr, A, n_threads)
}

template <typename T>
bool backward_fast_any(const Shape& s, const T* R, const Table<T>& table, const T* lengths, const T* h,
                       const Coupling<T>& S, const int64_t* src, const int64_t* rowptr, const T* gA, T* gR, T* g_lengths, T* gS,
                       T* gh_work, int n_threads) {
    GAUNT_SHAPE_DISPATCH(backward_fast, s, R, table, lengths, h, S, src, rowptr, gA, gR, g_lengths, gS, gh_work,
                         n_threads)
}

// one instantiation per common channel count, a generic one for the rest
#define GAUNT_CHANNEL_DISPATCH(FN, C, ...)               \
    switch (C) {                                         \
        case 16: FN<T, 16>(__VA_ARGS__); break;          \
        case 32: FN<T, 32>(__VA_ARGS__); break;          \
        case 64: FN<T, 64>(__VA_ARGS__); break;          \
        case 128: FN<T, 128>(__VA_ARGS__); break;        \
        default: FN<T, 0>(__VA_ARGS__); break;           \
    }

template <typename T>
void forward_any(const Shape& s, const T* R, const Table<T>& table, const T* lengths, const T* h,
                 const Coupling<T>& S, const int64_t* src, const int64_t* rowptr, const int64_t* deg_in, const int64_t* deg_out, T* A,
                 int n_threads) {
    if (forward_fast_any(s, R, table, lengths, h, S, src, rowptr, A, n_threads)) return;
    GAUNT_CHANNEL_DISPATCH(forward, s.channels, s, R, table, lengths, h, S, src, rowptr, deg_in, deg_out, A,
                           n_threads)
}

template <typename T>
void backward_any(const Shape& s, const T* R, const Table<T>& table, const T* lengths, const T* h,
                  const Coupling<T>& S, const int64_t* src, const int64_t* rowptr, const int64_t* deg_in, const int64_t* deg_out,
                  const T* gA, T* gR, T* g_lengths, T* gS, T* gh_work, int n_threads) {
    if (backward_fast_any(s, R, table, lengths, h, S, src, rowptr, gA, gR, g_lengths, gS, gh_work, n_threads)) return;
    GAUNT_CHANNEL_DISPATCH(backward, s.channels, s, R, table, lengths, h, S, src, rowptr, deg_in, deg_out, gA, gR,
                           g_lengths, gS, gh_work, n_threads)
}

}  // namespace

extern "C" {

// h [K_in, N, C], A [K_out, N, C]; S [E, K_in, K_out], or NULL: then Y [E, k_edge] and G [k_edge,
// K_in K_out] (see Coupling) are used, and gS is dL/dY [E, k_edge]; R: [E, (l3, l1), C], or NULL:
// then table and lengths [E] are used: coefficients (table_rows = 4) or knot values and slopes
// (table_rows = 2), in memory order table_block = 0 or the SIMD width (see Table); table_width =
// (l3, l1) C, or that times the species with species [N] (else NULL). gh_work [threads, K_in, N, C]
// (zeroed) or NULL.
#define GAUNT_DEFINE(SUFFIX, T)                                                                              \
    void gaunt_edge_conv_forward_##SUFFIX(                                                                   \
        int64_t n_edges, int64_t n_nodes, int64_t channels, int64_t k_in, int64_t k_out, int64_t l_out1,     \
        int64_t l_in1, const T* R, const T* table_data, T inv_dx, int64_t n_intervals, int64_t table_width,  \
        int64_t table_rows, int64_t table_block,                                                             \
        const int64_t* species, const T* lengths, const T* h, const T* S, const T* Y, const T* G,            \
        int64_t k_edge, const int64_t* src, const int64_t* rowptr, const int64_t* deg_in,                    \
        const int64_t* deg_out, double scale, T* A, int n_threads) {                                         \
        Shape s{n_edges, n_nodes, channels, k_in, k_out, l_out1, l_in1, scale};                              \
        Table<T> table(table_data, inv_dx, n_intervals, table_width, table_rows, table_block, l_out1 * l_in1 * channels, \
                      channels, species);    \
        Coupling<T> coupling(S, Y, G, k_edge, k_in * k_out);                                                 \
        forward_any<T>(s, R, table, lengths, h, coupling, src, rowptr, deg_in, deg_out, A, n_threads);       \
    }                                                                                                        \
    void gaunt_edge_conv_backward_##SUFFIX(                                                                  \
        int64_t n_edges, int64_t n_nodes, int64_t channels, int64_t k_in, int64_t k_out, int64_t l_out1,     \
        int64_t l_in1, const T* R, const T* table_data, T inv_dx, int64_t n_intervals, int64_t table_width,  \
        int64_t table_rows, int64_t table_block,                                                             \
        const int64_t* species, const T* lengths, const T* h, const T* S, const T* Y, const T* G,            \
        int64_t k_edge, const int64_t* src, const int64_t* rowptr, const int64_t* deg_in,                    \
        const int64_t* deg_out, double scale, const T* gA, T* gR, T* g_lengths, T* gS, T* gh_work,           \
        int n_threads) {                                                                                     \
        Shape s{n_edges, n_nodes, channels, k_in, k_out, l_out1, l_in1, scale};                              \
        Table<T> table(table_data, inv_dx, n_intervals, table_width, table_rows, table_block, l_out1 * l_in1 * channels, \
                      channels, species);    \
        Coupling<T> coupling(S, Y, G, k_edge, k_in * k_out);                                                 \
        backward_any<T>(s, R, table, lengths, h, coupling, src, rowptr, deg_in, deg_out, gA, gR, g_lengths,  \
                        gS, gh_work, n_threads);                                                             \
    }

GAUNT_DEFINE(f32, float)
GAUNT_DEFINE(f64, double)

}  // extern "C"
