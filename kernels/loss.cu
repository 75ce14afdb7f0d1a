// Losses, forward and backward, as backend/cpu/loss.rs. Forward kernels write one partial
// value per element / pixel; the host sums them with reduce.cu (fixed order) and divides, so
// only the scalar comes back to the host.

// multilabel soft margin = mean BCE with logits: max(x,0) − x·y + log1p(e^{−|x|})
extern "C" __global__ void bce_logits_terms(const float* x, const float* y, float* out,
                                            long long n) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        float v = x[i];
        out[i] = fmaxf(v, 0.f) - v * y[i] + log1pf(expf(-fabsf(v)));
    }
}
// d/dx of the mean: (σ(x) − y)·g/n; the upstream gradient g stays on the device
extern "C" __global__ void bce_logits_bwd(const float* x, const float* y, float* dx,
                                          const float* g, float inv_n, long long n) {
    float g_over_n = g[0] * inv_n;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        float v = x[i];
        float s = v >= 0.f ? 1.f / (1.f + expf(-v)) : expf(v) / (1.f + expf(v));
        dx[i] = (s - y[i]) * g_over_n;
    }
}

// Softmax cross-entropy over the channel axis of logits (B,K,HW) with integer labels (B,HW)
// stored as floats; `ignore` pixels contribute 0 and count 0. A label outside 0..K is written
// to `bad` (one value, any of them) so the host can report it.
extern "C" __global__ void cross_entropy_terms(const float* x, const float* labels, float* loss,
                                               float* count, float* bad, int b, int k, int hw,
                                               int ignore) {
    long long n = (long long)b * hw;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        long long img = i / hw, p = i % hw;
        float lab = labels[i];
        if (lab == (float)ignore) {
            loss[i] = 0.f;
            count[i] = 0.f;
            continue;
        }
        int c_lab = (int)lab;
        if (lab < 0.f || c_lab >= k || (float)c_lab != lab) {
            loss[i] = 0.f;
            count[i] = 0.f;
            bad[0] = lab;
            continue;
        }
        const float* xp = x + img * k * hw + p;
        float m = xp[0];
        for (int c = 1; c < k; ++c) m = fmaxf(m, xp[(long long)c * hw]);
        float z = 0.f;
        for (int c = 0; c < k; ++c) z += expf(xp[(long long)c * hw] - m);
        loss[i] = logf(z) + m - xp[(long long)c_lab * hw];
        count[i] = 1.f;
    }
}

// (softmax − onehot)·g/count at counted pixels, 0 at ignored ones; g stays on the device
extern "C" __global__ void cross_entropy_bwd(const float* x, const float* labels, float* dx,
                                             int b, int k, int hw, int ignore, const float* g,
                                             float inv_count) {
    float scale = g[0] * inv_count;
    long long n = (long long)b * hw;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        long long img = i / hw, p = i % hw;
        const float* xp = x + img * k * hw + p;
        float* dp = dx + img * k * hw + p;
        float lab = labels[i];
        if (lab == (float)ignore) {
            for (int c = 0; c < k; ++c) dp[(long long)c * hw] = 0.f;
            continue;
        }
        int c_lab = (int)lab;
        float m = xp[0];
        for (int c = 1; c < k; ++c) m = fmaxf(m, xp[(long long)c * hw]);
        float z = 0.f;
        for (int c = 0; c < k; ++c) z += expf(xp[(long long)c * hw] - m);
        for (int c = 0; c < k; ++c) {
            float pr = expf(xp[(long long)c * hw] - m) / z;
            dp[(long long)c * hw] = (pr - (c == c_lab ? 1.f : 0.f)) * scale;
        }
    }
}
