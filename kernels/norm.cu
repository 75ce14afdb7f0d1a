// Batch norm over (N, C, HW) per channel: training forward (batch statistics), frozen forward
// (given statistics) and the training backward, side by side. The CPU reference is
// src/backend/cpu/norm.rs. One block per channel for the statistics: each thread sums a
// strided slice in double and the block reduces in a fixed tree, so the result does not
// depend on scheduling (deterministic, like the CPU). Launch with 256 threads per block.
#define BN_THREADS 256

// Fixed-order tree reduction of two doubles per thread over a 256-thread block.
__device__ void block_sum2(double* sa, double* sb, double a, double b) {
    int t = threadIdx.x;
    sa[t] = a;
    sb[t] = b;
    __syncthreads();
    for (int s = BN_THREADS / 2; s > 0; s >>= 1) {
        if (t < s) {
            sa[t] += sa[t + s];
            sb[t] += sb[t + s];
        }
        __syncthreads();
    }
}

// Per channel: mean, 1/sqrt(var + eps) and the biased variance. grid = C blocks.
extern "C" __global__ void bn_stats(const float* x, float* mean, float* invstd, float* var,
                                    long long n, long long c, long long hw, double eps) {
    __shared__ double sa[BN_THREADS], sb[BN_THREADS];
    long long ch = blockIdx.x, cnt = n * hw;
    double s = 0.0;
    for (long long i = threadIdx.x; i < cnt; i += BN_THREADS) {
        long long b = i / hw, k = i % hw;
        s += (double)x[(b * c + ch) * hw + k];
    }
    block_sum2(sa, sb, s, 0.0);
    double m = sa[0] / (double)cnt;
    __syncthreads();
    double v = 0.0;
    for (long long i = threadIdx.x; i < cnt; i += BN_THREADS) {
        long long b = i / hw, k = i % hw;
        double d = (double)x[(b * c + ch) * hw + k] - m;
        v += d * d;
    }
    block_sum2(sa, sb, v, 0.0);
    if (threadIdx.x == 0) {
        double vb = sa[0] / (double)cnt;
        mean[ch] = (float)m;
        var[ch] = (float)vb;
        invstd[ch] = (float)(1.0 / sqrt(vb + eps));
    }
}

// y = (x − μ_c)·invstd_c·γ_c + β_c over all N·C·HW elements (training and frozen forward: the
// frozen path passes invstd computed from the running variance).
extern "C" __global__ void bn_apply(const float* x, const float* mean, const float* invstd,
                                    const float* gamma, const float* beta, float* y,
                                    long long c, long long hw, long long total) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        long long ch = (i / hw) % c;
        y[i] = (x[i] - mean[ch]) * invstd[ch] * gamma[ch] + beta[ch];
    }
}

// invstd_c = 1/sqrt(running_var_c + eps), for the frozen forward.
extern "C" __global__ void bn_invstd(const float* var, float* invstd, long long c, double eps) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < c) invstd[i] = (float)(1.0 / sqrt((double)var[i] + eps));
}

// Backward sums per channel: dβ = Σ dy, dγ = Σ dy·x̂. grid = C blocks.
extern "C" __global__ void bn_bwd_sums(const float* x, const float* dy, const float* mean,
                                       const float* invstd, float* dgamma, float* dbeta,
                                       long long n, long long c, long long hw) {
    __shared__ double sa[BN_THREADS], sb[BN_THREADS];
    long long ch = blockIdx.x, cnt = n * hw;
    double m = mean[ch], inv = invstd[ch], sd = 0.0, sdx = 0.0;
    for (long long i = threadIdx.x; i < cnt; i += BN_THREADS) {
        long long b = i / hw, k = i % hw, o = (b * c + ch) * hw + k;
        double g = dy[o];
        sd += g;
        sdx += g * ((double)x[o] - m) * inv;
    }
    block_sum2(sa, sb, sd, sdx);
    if (threadIdx.x == 0) {
        dbeta[ch] = (float)sa[0];
        dgamma[ch] = (float)sb[0];
    }
}

// dx = γ·invstd/M·(M·dy − Σdy − x̂·Σ(dy·x̂)) with M = N·HW, from the sums above.
extern "C" __global__ void bn_bwd_dx(const float* x, const float* dy, const float* mean,
                                     const float* invstd, const float* gamma,
                                     const float* dgamma, const float* dbeta, float* dx,
                                     long long c, long long hw, long long total, double cnt) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        long long ch = (i / hw) % c;
        double inv = invstd[ch];
        double xh = ((double)x[i] - mean[ch]) * inv;
        dx[i] = (float)((double)gamma[ch] * inv / cnt *
                        (cnt * dy[i] - (double)dbeta[ch] - xh * (double)dgamma[ch]));
    }
}
