// Softmax over the last axis of a (rows × cols) view, forward and backward. One block per row,
// block-wide max / sum reductions in shared memory (blockDim.x must be a power of two ≤ 1024).
// Other axes are handled by the host through a transpose to make the axis last.

__device__ float block_reduce(float v, float* shm, bool is_max) {
    int t = threadIdx.x;
    shm[t] = v;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (t < s) shm[t] = is_max ? fmaxf(shm[t], shm[t + s]) : shm[t] + shm[t + s];
        __syncthreads();
    }
    float r = shm[0];
    __syncthreads();
    return r;
}

extern "C" __global__ void softmax_fwd(const float* x, float* y, int cols) {
    extern __shared__ float shm[];
    const float* xr = x + (long long)blockIdx.x * cols;
    float* yr = y + (long long)blockIdx.x * cols;
    float m = __int_as_float(0xff800000);  // −inf (NVRTC has no math headers)
    for (int j = threadIdx.x; j < cols; j += blockDim.x) m = fmaxf(m, xr[j]);
    m = block_reduce(m, shm, true);
    float s = 0.f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        float e = expf(xr[j] - m);
        yr[j] = e;
        s += e;
    }
    s = block_reduce(s, shm, false);
    float inv = 1.f / s;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) yr[j] *= inv;
}

// dx = y ⊙ (dy − Σ_j y_j dy_j)
extern "C" __global__ void softmax_bwd(const float* y, const float* dy, float* dx, int cols) {
    extern __shared__ float shm[];
    long long off = (long long)blockIdx.x * cols;
    float d = 0.f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) d += y[off + j] * dy[off + j];
    d = block_reduce(d, shm, false);
    for (int j = threadIdx.x; j < cols; j += blockDim.x) dx[off + j] = y[off + j] * (dy[off + j] - d);
}
