// Sum over the middle axis of an (outer, len, inner) view: the host folds any set of reduced
// axes into such views (one launch per contiguous run of axes). One thread per output element
// with a sequential loop, so the sum order is fixed (deterministic, like the CPU).
extern "C" __global__ void sum_middle(const float* x, float* y, long long outer, long long len,
                                      long long inner) {
    long long n = outer * inner;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        long long o = i / inner, k = i % inner;
        const float* xp = x + o * len * inner + k;
        float s = 0.f;
        for (long long j = 0; j < len; ++j) s += xp[j * inner];
        y[i] = s;
    }
}

// Backward of a sum: broadcast dy (outer, inner) back over the reduced axis.
extern "C" __global__ void sum_middle_bwd(const float* dy, float* dx, long long outer,
                                          long long len, long long inner) {
    long long n = outer * len * inner;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        long long k = i % inner, o = i / (len * inner);
        dx[i] = dy[o * inner + k];
    }
}
