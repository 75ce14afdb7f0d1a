// Softmax over the last axis of a (rows × cols) view, forward and backward. One block per row
// (blockDim.x a power of two, 32..1024). The forward keeps a running (max, sum of exp) per
// thread in one pass over the row (online softmax), merges the pairs with warp shuffles and
// one shared-memory step, then writes y in a second pass: two reads and one write of the row.
// Reductions run in a fixed order, so results are deterministic. Other axes are handled by the
// host through a transpose that makes the axis last.
#define NEG_INF __int_as_float(0xff800000)  // NVRTC has no math headers

// (m, s) ⊕ (m2, s2): the sum of exp relative to the larger max. A pair with no elements is
// (−inf, 0) and contributes nothing.
__device__ __forceinline__ void merge_ms(float& m, float& s, float m2, float s2) {
    float mn = fmaxf(m, m2);
    float a = s == 0.f ? 0.f : s * expf(m - mn);
    float b = s2 == 0.f ? 0.f : s2 * expf(m2 - mn);
    m = mn;
    s = a + b;
}

// Block-wide merge of every thread's (m, s); all threads get the result.
__device__ void block_ms(float& m, float& s) {
    __shared__ float sm[32], ss[32];
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o);
        float s2 = __shfl_xor_sync(0xffffffffu, s, o);
        merge_ms(m, s, m2, s2);
    }
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    if (nw > 1) {
        if (lane == 0) {
            sm[warp] = m;
            ss[warp] = s;
        }
        __syncthreads();
        if (warp == 0) {
            m = lane < nw ? sm[lane] : NEG_INF;
            s = lane < nw ? ss[lane] : 0.f;
            for (int o = 16; o > 0; o >>= 1) {
                float m2 = __shfl_xor_sync(0xffffffffu, m, o);
                float s2 = __shfl_xor_sync(0xffffffffu, s, o);
                merge_ms(m, s, m2, s2);
            }
            if (lane == 0) {
                sm[0] = m;
                ss[0] = s;
            }
        }
        __syncthreads();
        m = sm[0];
        s = ss[0];
    }
}

// Block-wide sum; all threads get the result.
__device__ float block_sum(float v) {
    __shared__ float sh[32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    if (nw > 1) {
        if (lane == 0) sh[warp] = v;
        __syncthreads();
        if (warp == 0) {
            v = lane < nw ? sh[lane] : 0.f;
            for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
            if (lane == 0) sh[0] = v;
        }
        __syncthreads();
        v = sh[0];
    }
    return v;
}

extern "C" __global__ void softmax_fwd(const float* x, float* y, int cols) {
    const float* xr = x + (long long)blockIdx.x * cols;
    float* yr = y + (long long)blockIdx.x * cols;
    float m = NEG_INF, s = 0.f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        float v = xr[j];
        if (v > m) {
            s = (s == 0.f ? 0.f : s * expf(m - v)) + 1.f;
            m = v;
        } else {
            s += expf(v - m);
        }
    }
    block_ms(m, s);
    float inv = 1.f / s;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) yr[j] = expf(xr[j] - m) * inv;
}

// dx = y ⊙ (dy − Σ_j y_j dy_j)
extern "C" __global__ void softmax_bwd(const float* y, const float* dy, float* dx, int cols) {
    long long off = (long long)blockIdx.x * cols;
    float d = 0.f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) d += y[off + j] * dy[off + j];
    d = block_sum(d);
    for (int j = threadIdx.x; j < cols; j += blockDim.x) dx[off + j] = y[off + j] * (dy[off + j] - d);
}
