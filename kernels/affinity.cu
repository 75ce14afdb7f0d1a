// AffinityNet's local affinity (forward and backward) and the random walk (DESIGN §8), as
// backend/cpu/affinity.rs. Pairs: a position and its neighbours on the half disc of radius r,
// enumerated in the CPU's order (dy = 0..r-1, dx = -(r-1)..r-1, (dy > 0 or dx > 0),
// dx² + dy² < r²). Every kernel gathers (one thread per output value): no atomics, so the
// sums are deterministic.

struct AffinityGeom {
    int b, c, h, w, radius, pairs;
};

// The p-th offset of the half disc.
__device__ __forceinline__ void half_disc(int p, int r, int* dy, int* dx) {
    int k = 0;
    for (int y = 0; y < r; ++y)
        for (int x = -(r - 1); x < r; ++x)
            if ((y > 0 || x > 0) && x * x + y * y < r * r) {
                if (k == p) {
                    *dy = y;
                    *dx = x;
                    return;
                }
                ++k;
            }
    *dy = 0;
    *dx = 0;
}

__device__ __forceinline__ bool on_grid(const AffinityGeom& g, int y, int x) {
    return y >= 0 && x >= 0 && y < g.h && x < g.w;
}

__device__ __forceinline__ float sgn(float v) { return v > 0.f ? 1.f : (v < 0.f ? -1.f : 0.f); }

// a[b,p,i] = exp(-mean_c |f[b,c,i] - f[b,c,i+o_p]|); one thread per (b, p, i).
extern "C" __global__ void local_affinity_fwd(const float* f, float* a, AffinityGeom g) {
    int hw = g.h * g.w;
    long long n = (long long)g.b * g.pairs * hw;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < n;
         t += (long long)blockDim.x * gridDim.x) {
        int i = t % hw, p = (t / hw) % g.pairs;
        long long b = t / ((long long)hw * g.pairs);
        int dy, dx;
        half_disc(p, g.radius, &dy, &dx);
        int y = i / g.w, x = i % g.w;
        float v = 0.f;
        if (on_grid(g, y + dy, x + dx)) {
            int j = (y + dy) * g.w + x + dx;
            const float* fb = f + b * g.c * hw;
            float s = 0.f;
            for (int c = 0; c < g.c; ++c) s += fabsf(fb[c * hw + i] - fb[c * hw + j]);
            v = expf(-s / (float)g.c);
        }
        a[t] = v;
    }
}

// df[b,c,q]: the pairs where q is the source and where it is the target; one thread per
// (b, c, q).
extern "C" __global__ void local_affinity_bwd(const float* f, const float* a, const float* da,
                                              float* df, AffinityGeom g) {
    int hw = g.h * g.w;
    long long n = (long long)g.b * g.c * hw;
    float inv_c = 1.f / (float)g.c;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < n;
         t += (long long)blockDim.x * gridDim.x) {
        int q = t % hw, c = (t / hw) % g.c;
        long long b = t / ((long long)hw * g.c);
        const float* fc = f + (b * g.c + c) * hw;
        const float* ab = a + b * g.pairs * hw;
        const float* dab = da + b * g.pairs * hw;
        int y = q / g.w, x = q % g.w;
        float acc = 0.f;
        for (int p = 0; p < g.pairs; ++p) {
            int dy, dx;
            half_disc(p, g.radius, &dy, &dx);
            if (on_grid(g, y + dy, x + dx)) {
                int j = (y + dy) * g.w + x + dx;
                acc -= dab[p * hw + q] * ab[p * hw + q] * inv_c * sgn(fc[q] - fc[j]);
            }
            if (on_grid(g, y - dy, x - dx)) {
                int i = (y - dy) * g.w + x - dx;
                acc += dab[p * hw + i] * ab[p * hw + i] * inv_c * sgn(fc[i] - fc[q]);
            }
        }
        df[t] = acc;
    }
}

// The normalised walk weights of every target j: slot 0 the self-loop, slots 1 + 2p and
// 2 + 2p the sources j + o_p and j - o_p (0 off the grid), each W[i,j] / Σ_i W[i,j] with
// W = a^β. w is (B, 2P + 1, H, W).
extern "C" __global__ void walk_weights(const float* a, float* w, AffinityGeom g, float beta) {
    int hw = g.h * g.w;
    long long n = (long long)g.b * hw;
    int slots = 2 * g.pairs + 1;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < n;
         t += (long long)blockDim.x * gridDim.x) {
        int j = t % hw;
        long long b = t / hw;
        const float* ab = a + b * g.pairs * hw;
        float* wb = w + b * slots * hw;
        int y = j / g.w, x = j % g.w;
        float d = 1.f;
        wb[j] = 1.f;
        for (int p = 0; p < g.pairs; ++p) {
            int dy, dx;
            half_disc(p, g.radius, &dy, &dx);
            float fwd = 0.f, back = 0.f;
            if (on_grid(g, y + dy, x + dx)) fwd = powf(ab[p * hw + j], beta);
            if (on_grid(g, y - dy, x - dx)) back = powf(ab[p * hw + (y - dy) * g.w + x - dx], beta);
            wb[(1 + 2 * p) * hw + j] = fwd;
            wb[(2 + 2 * p) * hw + j] = back;
            d += fwd + back;
        }
        for (int s = 0; s < slots; ++s) wb[s * hw + j] /= d;
    }
}

// One step x' = x·T of maps (B, K, H, W); one thread per (b, k, j).
extern "C" __global__ void walk_step(const float* x, const float* w, float* out, AffinityGeom g,
                                     int k) {
    int hw = g.h * g.w;
    long long n = (long long)g.b * k * hw;
    int slots = 2 * g.pairs + 1;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < n;
         t += (long long)blockDim.x * gridDim.x) {
        int j = t % hw;
        long long bk = t / hw, b = bk / k;
        const float* xs = x + bk * hw;
        const float* wb = w + b * slots * hw;
        int y = j / g.w, xx = j % g.w;
        float acc = wb[j] * xs[j];
        for (int p = 0; p < g.pairs; ++p) {
            int dy, dx;
            half_disc(p, g.radius, &dy, &dx);
            if (on_grid(g, y + dy, xx + dx))
                acc += wb[(1 + 2 * p) * hw + j] * xs[(y + dy) * g.w + xx + dx];
            if (on_grid(g, y - dy, xx - dx))
                acc += wb[(2 + 2 * p) * hw + j] * xs[(y - dy) * g.w + xx - dx];
        }
        out[t] = acc;
    }
}
