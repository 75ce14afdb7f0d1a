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

// Row sums of a (rows × len) view, one 256-thread block per row: each thread sums a strided
// slice, then a fixed-order tree (deterministic). For reductions whose summed run is long and
// contiguous (bias gradients, loss sums), where sum_middle would leave most threads idle.
#define ROW_THREADS 256
extern "C" __global__ void sum_rows(const float* x, float* y, long long len) {
    __shared__ float sh[ROW_THREADS];
    const float* xr = x + (long long)blockIdx.x * len;
    float s = 0.f;
    for (long long j = threadIdx.x; j < len; j += ROW_THREADS) s += xr[j];
    sh[threadIdx.x] = s;
    __syncthreads();
    for (int k = ROW_THREADS / 2; k > 0; k >>= 1) {
        if (threadIdx.x < k) sh[threadIdx.x] += sh[threadIdx.x + k];
        __syncthreads();
    }
    if (threadIdx.x == 0) y[blockIdx.x] = sh[0];
}

// First stage of a long row sum: block (chunk c = blockIdx.x, row = blockIdx.y) sums
// x[row·len + c·chunk ..][..chunk] (clipped at the row's end) into part[row·gridDim.x + c];
// the host then sums the parts with sum_rows. Fixed order, so still deterministic.
extern "C" __global__ void sum_row_chunks(const float* x, float* part, long long len,
                                          long long chunk) {
    __shared__ float sh[ROW_THREADS];
    long long start = (long long)blockIdx.x * chunk;
    long long end = start + chunk < len ? start + chunk : len;
    const float* xr = x + (long long)blockIdx.y * len;
    float s = 0.f;
    for (long long j = start + threadIdx.x; j < end; j += ROW_THREADS) s += xr[j];
    sh[threadIdx.x] = s;
    __syncthreads();
    for (int k = ROW_THREADS / 2; k > 0; k >>= 1) {
        if (threadIdx.x < k) sh[threadIdx.x] += sh[threadIdx.x + k];
        __syncthreads();
    }
    if (threadIdx.x == 0) part[(long long)blockIdx.y * gridDim.x + blockIdx.x] = sh[0];
}
