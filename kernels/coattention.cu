// Fused co-attention: both directions are attention with scale 1 and no mask, run flash-style
// (online softmax) so no N×M matrix ever reaches global memory (DESIGN §4):
//   direction 1: queries Q = (W·Fm)ᵀ rows, keys = values = Fnᵀ rows  → Fm∩ (as rows)
//   direction 2: queries Fnᵀ rows, keys Qᵀ rows, values Fmᵀ rows     → Fn∩ (as rows)
// Inputs are row-major per pair: (rows, C), the host transposes. One warp owns RW query
// (or key) rows; each lane holds C/32 channels of them in registers (C a multiple of 32,
// at most 32·MAXT = 512), and dot products over C finish with a warp butterfly, so every lane
// has every score. Key (or query) tiles of TILE rows are staged in shared memory. The forward
// writes the output rows and each row's log-sum-exp; the backward recomputes the
// probabilities from it (FlashAttention-2's scheme) in two kernels: one per query row (dQ)
// and one per key row (dK, dV), so no atomics are needed and results are deterministic.
// Plain float32 FMAs (no tensor cores): this path trades speed for memory; the unfused
// cuBLAS path (backend/cuda/coattention.rs) is the fast default where its N×M matrices fit.
// (A lane-per-key variant, with the tiles padded to C+1 floats and no per-score reduction,
// measured 3× slower on an H200: 164 KB of shared memory left one 4-warp block per SM.)
#define WARPS 8
#define RW 2
#define ROWS_PER_BLOCK (WARPS * RW)
#define MAXT 16
#define TILE 16
#define NEG_INF __int_as_float(0xff800000)

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Loads RW rows (row0 + r) of a (rows × c) matrix into per-lane registers.
__device__ __forceinline__ void load_rows(float reg[RW][MAXT], const float* x, int row0, int rows,
                                          int c, int lane) {
    int ct = c >> 5;
#pragma unroll
    for (int r = 0; r < RW; ++r)
#pragma unroll
        for (int t = 0; t < MAXT; ++t)
            reg[r][t] = (t < ct && row0 + r < rows) ? x[(long long)(row0 + r) * c + t * 32 + lane] : 0.f;
}

// Stages rows [j0, j0 + nj) of up to two (rows × c) matrices in shared memory.
__device__ __forceinline__ void stage(float* a_s, const float* a, float* b_s, const float* b,
                                      int j0, int nj, int c) {
    __syncthreads();
    for (int i = threadIdx.x; i < nj * c; i += blockDim.x) {
        a_s[i] = a[(long long)j0 * c + i];
        if (b_s) b_s[i] = b[(long long)j0 * c + i];
    }
    __syncthreads();
}

// This lane's channels of key j and value j from the staged tiles (zero past c).
__device__ __forceinline__ void load_key(float (&kv)[MAXT], float (&vv)[MAXT], const float* ks,
                                         const float* vs, int j, int c, int ct, int lane) {
#pragma unroll
    for (int t = 0; t < MAXT; ++t) {
        kv[t] = t < ct ? ks[j * c + t * 32 + lane] : 0.f;
        vv[t] = t < ct ? vs[j * c + t * 32 + lane] : 0.f;
    }
}

// o[i] = Σ_j softmax_j(q_i·k_j) v_j, lse[i] = log Σ_j exp(q_i·k_j). grid (⌈nq/16⌉, B),
// 256 threads, dynamic shared memory TILE·c floats (2× when values differ from keys).
extern "C" __global__ void __launch_bounds__(256) attn_fwd(const float* q, const float* k,
                                                           const float* v, float* o, float* lse,
                                                           int nq, int nk, int c, int kv_same) {
    extern __shared__ float sm[];
    float* ks = sm;
    float* vs = kv_same ? sm : sm + TILE * c;
    long long b = blockIdx.y;
    q += b * nq * c;
    k += b * nk * c;
    v += b * nk * c;
    o += b * nq * c;
    lse += b * nq;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, ct = c >> 5;
    int row0 = blockIdx.x * ROWS_PER_BLOCK + warp * RW;
    float qr[RW][MAXT], acc[RW][MAXT], m[RW], l[RW];
    load_rows(qr, q, row0, nq, c, lane);
#pragma unroll
    for (int r = 0; r < RW; ++r) {
        m[r] = NEG_INF;
        l[r] = 0.f;
#pragma unroll
        for (int t = 0; t < MAXT; ++t) acc[r][t] = 0.f;
    }
    for (int j0 = 0; j0 < nk; j0 += TILE) {
        int nj = min(TILE, nk - j0);
        stage(ks, k, kv_same ? nullptr : vs, v, j0, nj, c);
        for (int j = 0; j < nj; ++j) {
            float kv[MAXT], vv[MAXT];
            load_key(kv, vv, ks, vs, j, c, ct, lane);
#pragma unroll
            for (int r = 0; r < RW; ++r) {
                float d = 0.f;
#pragma unroll
                for (int t = 0; t < MAXT; ++t) d = fmaf(qr[r][t], kv[t], d);
                float s = warp_sum(d);
                if (s > m[r]) {  // warp-uniform: every lane has the same s
                    float alpha = expf(m[r] - s);
                    l[r] *= alpha;
#pragma unroll
                    for (int t = 0; t < MAXT; ++t) acc[r][t] *= alpha;
                    m[r] = s;
                }
                float p = expf(s - m[r]);
                l[r] += p;
#pragma unroll
                for (int t = 0; t < MAXT; ++t) acc[r][t] = fmaf(p, vv[t], acc[r][t]);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < RW; ++r) {
        int row = row0 + r;
        if (row >= nq) continue;
        float inv = 1.f / l[r];
#pragma unroll
        for (int t = 0; t < MAXT; ++t)
            if (t < ct) o[(long long)row * c + t * 32 + lane] = acc[r][t] * inv;
        if (lane == 0) lse[row] = m[r] + logf(l[r]);
    }
}

// D[i] = dO_i · O_i (one warp per row; B·rows rows in all).
extern "C" __global__ void attn_rowdot(const float* dout, const float* out, float* d, long long rows,
                                       int c) {
    long long row = (long long)blockIdx.x * WARPS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= rows) return;
    float s = 0.f;
    for (int j = lane; j < c; j += 32) s = fmaf(dout[row * c + j], out[row * c + j], s);
    s = warp_sum(s);
    if (lane == 0) d[row] = s;
}

// dq_i = Σ_j p_ij (dO_i·v_j − D_i) k_j with p_ij = exp(q_i·k_j − lse_i). Launch as attn_fwd.
extern "C" __global__ void __launch_bounds__(256) attn_bwd_dq(const float* q, const float* k,
                                                              const float* v, const float* dout,
                                                              const float* lse, const float* dd,
                                                              float* dq, int nq, int nk, int c,
                                                              int kv_same) {
    extern __shared__ float sm[];
    float* ks = sm;
    float* vs = kv_same ? sm : sm + TILE * c;
    long long b = blockIdx.y;
    q += b * nq * c;
    k += b * nk * c;
    v += b * nk * c;
    dout += b * nq * c;
    dq += b * nq * c;
    lse += b * nq;
    dd += b * nq;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, ct = c >> 5;
    int row0 = blockIdx.x * ROWS_PER_BLOCK + warp * RW;
    float qr[RW][MAXT], gr[RW][MAXT], acc[RW][MAXT], lr[RW], dr[RW];
    load_rows(qr, q, row0, nq, c, lane);
    load_rows(gr, dout, row0, nq, c, lane);
#pragma unroll
    for (int r = 0; r < RW; ++r) {
        bool in = row0 + r < nq;
        lr[r] = in ? lse[row0 + r] : 0.f;
        dr[r] = in ? dd[row0 + r] : 0.f;
#pragma unroll
        for (int t = 0; t < MAXT; ++t) acc[r][t] = 0.f;
    }
    for (int j0 = 0; j0 < nk; j0 += TILE) {
        int nj = min(TILE, nk - j0);
        stage(ks, k, kv_same ? nullptr : vs, v, j0, nj, c);
        for (int j = 0; j < nj; ++j) {
            float kv[MAXT], vv[MAXT];
            load_key(kv, vv, ks, vs, j, c, ct, lane);
#pragma unroll
            for (int r = 0; r < RW; ++r) {
                float s = 0.f, dp = 0.f;
#pragma unroll
                for (int t = 0; t < MAXT; ++t) {
                    s = fmaf(qr[r][t], kv[t], s);
                    dp = fmaf(gr[r][t], vv[t], dp);
                }
                s = warp_sum(s);
                dp = warp_sum(dp);
                float p = expf(s - lr[r]);
                float ds = p * (dp - dr[r]);
#pragma unroll
                for (int t = 0; t < MAXT; ++t) acc[r][t] = fmaf(ds, kv[t], acc[r][t]);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < RW; ++r) {
        int row = row0 + r;
        if (row >= nq) continue;
#pragma unroll
        for (int t = 0; t < MAXT; ++t)
            if (t < ct) dq[(long long)row * c + t * 32 + lane] = acc[r][t];
    }
}

// Per key row j: dk_j = Σ_i ds_ij q_i, dv_j = Σ_i p_ij dO_i. grid (⌈nk/16⌉, B), 256 threads,
// dynamic shared memory 2·TILE·c floats (query and dO tiles) + 2·TILE (lse, D).
extern "C" __global__ void __launch_bounds__(256) attn_bwd_dkv(const float* q, const float* k,
                                                               const float* v, const float* dout,
                                                               const float* lse, const float* dd,
                                                               float* dk, float* dv, int nq,
                                                               int nk, int c) {
    extern __shared__ float sm[];
    float* qs = sm;
    float* gs = sm + TILE * c;
    float* ls = sm + 2 * TILE * c;
    float* ds_ = ls + TILE;
    long long b = blockIdx.y;
    q += b * nq * c;
    k += b * nk * c;
    v += b * nk * c;
    dout += b * nq * c;
    lse += b * nq;
    dd += b * nq;
    dk += b * nk * c;
    dv += b * nk * c;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, ct = c >> 5;
    int row0 = blockIdx.x * ROWS_PER_BLOCK + warp * RW;
    float kr[RW][MAXT], vr[RW][MAXT], ak[RW][MAXT], av[RW][MAXT];
    load_rows(kr, k, row0, nk, c, lane);
    load_rows(vr, v, row0, nk, c, lane);
#pragma unroll
    for (int r = 0; r < RW; ++r)
#pragma unroll
        for (int t = 0; t < MAXT; ++t) {
            ak[r][t] = 0.f;
            av[r][t] = 0.f;
        }
    for (int i0 = 0; i0 < nq; i0 += TILE) {
        int ni = min(TILE, nq - i0);
        stage(qs, q, gs, dout, i0, ni, c);
        if (threadIdx.x < ni) {
            ls[threadIdx.x] = lse[i0 + threadIdx.x];
            ds_[threadIdx.x] = dd[i0 + threadIdx.x];
        }
        __syncthreads();
        for (int i = 0; i < ni; ++i) {
            float qv[MAXT], gv[MAXT];
#pragma unroll
            for (int t = 0; t < MAXT; ++t) {
                qv[t] = t < ct ? qs[i * c + t * 32 + lane] : 0.f;
                gv[t] = t < ct ? gs[i * c + t * 32 + lane] : 0.f;
            }
            float li = ls[i], di = ds_[i];
#pragma unroll
            for (int r = 0; r < RW; ++r) {
                float s = 0.f, dp = 0.f;
#pragma unroll
                for (int t = 0; t < MAXT; ++t) {
                    s = fmaf(qv[t], kr[r][t], s);
                    dp = fmaf(gv[t], vr[r][t], dp);
                }
                s = warp_sum(s);
                dp = warp_sum(dp);
                float p = expf(s - li);
                float dsv = p * (dp - di);
#pragma unroll
                for (int t = 0; t < MAXT; ++t) {
                    ak[r][t] = fmaf(dsv, qv[t], ak[r][t]);
                    av[r][t] = fmaf(p, gv[t], av[r][t]);
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < RW; ++r) {
        int row = row0 + r;
        if (row >= nk) continue;
#pragma unroll
        for (int t = 0; t < MAXT; ++t)
            if (t < ct) {
                dk[(long long)row * c + t * 32 + lane] = ak[r][t];
                dv[(long long)row * c + t * 32 + lane] = av[r][t];
            }
    }
}
