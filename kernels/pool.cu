// Max and average pooling with PyTorch's rules (padding, ceil_mode through the host-computed
// output size, count_include_pad), forward and backward. Max-pool backward recomputes the
// arg-max (first maximum, NaN wins) as the CPU reference does, so the forward stores no index
// tensor.
// Backward kernels run one thread per INPUT pixel and gather, so sums are deterministic.

struct PoolGeom {
    int planes, h, w, kh, kw, sh, sw, ph, pw, ho, wo;
};

__device__ __forceinline__ void span(int o, int k, int s, int p, int len, int* a, int* b) {
    int start = o * s - p;
    *a = max(start, 0);
    *b = max(min(start + k, len), 0);
}

__device__ int argmax_window(const float* xp, const PoolGeom& g, int oy, int ox) {
    int y0, y1, x0, x1;
    span(oy, g.kh, g.sh, g.ph, g.h, &y0, &y1);
    span(ox, g.kw, g.sw, g.pw, g.w, &x0, &x1);
    if (y0 >= y1 || x0 >= x1) return -1;
    int best = y0 * g.w + x0;
    float bv = xp[best];
    for (int iy = y0; iy < y1; ++iy)
        for (int ix = x0; ix < x1; ++ix) {
            float v = xp[iy * g.w + ix];
            if (v > bv || (isnan(v) && !isnan(bv))) {
                bv = v;
                best = iy * g.w + ix;
            }
        }
    return best;
}

extern "C" __global__ void max_pool_fwd(const float* x, float* y, PoolGeom g) {
    long long n = (long long)g.planes * g.ho * g.wo;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        int ox = i % g.wo, oy = (i / g.wo) % g.ho;
        long long p = i / ((long long)g.wo * g.ho);
        const float* xp = x + p * g.h * g.w;
        int a = argmax_window(xp, g, oy, ox);
        y[i] = a < 0 ? __int_as_float(0xff800000) : xp[a];
    }
}

// the output windows that can contain input index `i` along one axis
__device__ __forceinline__ void out_range(int i, int k, int s, int p, int out, int* a, int* b) {
    // o*s − p ≤ i < o*s − p + k  ⇔  (i + p − k)/s < o ≤ (i + p)/s
    int hi = (i + p) / s;
    int lo_num = i + p - k + 1;
    int lo = lo_num <= 0 ? 0 : (lo_num + s - 1) / s;
    *a = lo;
    *b = min(hi + 1, out);
}

// Max-pool backward in two passes: the arg-max of every window once (max_pool_argmax, index
// within the plane, -1 for an empty window), then one thread per input pixel gathers dy of the
// windows whose arg-max it is. Recomputing each window's arg-max inside the gather cost
// kh·kw window scans per pixel (81 loads for VGG's 3×3 stride-1 pool4).
extern "C" __global__ void max_pool_argmax(const float* x, int* idx, PoolGeom g) {
    long long n = (long long)g.planes * g.ho * g.wo;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        int o = i % (g.wo * g.ho);
        long long p = i / ((long long)g.wo * g.ho);
        idx[i] = argmax_window(x + p * g.h * g.w, g, o / g.wo, o % g.wo);
    }
}

extern "C" __global__ void max_pool_bwd(const int* idx, const float* dy, float* dx, PoolGeom g) {
    long long n = (long long)g.planes * g.h * g.w;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        int me = i % (g.w * g.h);
        long long p = i / ((long long)g.w * g.h);
        int iy = me / g.w, ix = me - iy * g.w;
        int oy0, oy1, ox0, ox1;
        out_range(iy, g.kh, g.sh, g.ph, g.ho, &oy0, &oy1);
        out_range(ix, g.kw, g.sw, g.pw, g.wo, &ox0, &ox1);
        const int* ip = idx + p * g.ho * g.wo;
        const float* dp = dy + p * g.ho * g.wo;
        float acc = 0.f;
        for (int oy = oy0; oy < oy1; ++oy)
            for (int ox = ox0; ox < ox1; ++ox)
                if (ip[oy * g.wo + ox] == me) acc += dp[oy * g.wo + ox];
        dx[i] = acc;
    }
}

// count_include_pad: the window clipped to the padded input
__device__ __forceinline__ float avg_divisor(const PoolGeom& g, int oy, int ox) {
    int sy = oy * g.sh - g.ph, sx = ox * g.sw - g.pw;
    int ey = min(sy + g.kh, g.h + g.ph), ex = min(sx + g.kw, g.w + g.pw);
    return (float)((ey - sy) * (ex - sx));
}

extern "C" __global__ void avg_pool_fwd(const float* x, float* y, PoolGeom g) {
    long long n = (long long)g.planes * g.ho * g.wo;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        int ox = i % g.wo, oy = (i / g.wo) % g.ho;
        long long p = i / ((long long)g.wo * g.ho);
        const float* xp = x + p * g.h * g.w;
        int y0, y1, x0, x1;
        span(oy, g.kh, g.sh, g.ph, g.h, &y0, &y1);
        span(ox, g.kw, g.sw, g.pw, g.w, &x0, &x1);
        float s = 0.f;
        for (int iy = y0; iy < y1; ++iy)
            for (int ix = x0; ix < x1; ++ix) s += xp[iy * g.w + ix];
        y[i] = s / avg_divisor(g, oy, ox);
    }
}

extern "C" __global__ void avg_pool_bwd(const float* dy, float* dx, PoolGeom g) {
    long long n = (long long)g.planes * g.h * g.w;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        int ix = i % g.w, iy = (i / g.w) % g.h;
        long long p = i / ((long long)g.w * g.h);
        int oy0, oy1, ox0, ox1;
        out_range(iy, g.kh, g.sh, g.ph, g.ho, &oy0, &oy1);
        out_range(ix, g.kw, g.sw, g.pw, g.wo, &ox0, &ox1);
        float acc = 0.f;
        for (int oy = oy0; oy < oy1; ++oy)
            for (int ox = ox0; ox < ox1; ++ox)
                acc += dy[(p * g.ho + oy) * g.wo + ox] / avg_divisor(g, oy, ox);
        dx[i] = acc;
    }
}
