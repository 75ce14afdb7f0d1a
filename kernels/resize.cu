// Bilinear resize, align_corners = false (PyTorch's convention): src = (dst + 0.5)·in/out − 0.5
// clamped at 0, as backend/cpu/resize.rs. Forward: one thread per output pixel. Backward:
// atomicAdd of each output gradient into its four taps (the only kernel here whose sum order
// varies between runs; the CPU reference is the deterministic one).

__device__ __forceinline__ void tap(int o, int in_len, int out_len, int* i0, int* i1, float* l1) {
    float src = fmaxf(((float)o + 0.5f) * (float)in_len / (float)out_len - 0.5f, 0.f);
    int a = min((int)floorf(src), in_len - 1);
    *i0 = a;
    *i1 = a < in_len - 1 ? a + 1 : a;
    *l1 = src - (float)a;
}

extern "C" __global__ void resize_bilinear_fwd(const float* x, float* y, int planes, int h, int w,
                                               int ho, int wo) {
    long long n = (long long)planes * ho * wo;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        int ox = i % wo, oy = (i / wo) % ho;
        long long p = i / ((long long)wo * ho);
        int y0, y1, x0, x1;
        float ly, lx;
        tap(oy, h, ho, &y0, &y1, &ly);
        tap(ox, w, wo, &x0, &x1, &lx);
        const float* xp = x + p * h * w;
        y[i] = (1.f - ly) * ((1.f - lx) * xp[y0 * w + x0] + lx * xp[y0 * w + x1]) +
               ly * ((1.f - lx) * xp[y1 * w + x0] + lx * xp[y1 * w + x1]);
    }
}

extern "C" __global__ void resize_bilinear_bwd(const float* dy, float* dx, int planes, int h,
                                               int w, int ho, int wo) {
    long long n = (long long)planes * ho * wo;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        int ox = i % wo, oy = (i / wo) % ho;
        long long p = i / ((long long)wo * ho);
        int y0, y1, x0, x1;
        float ly, lx;
        tap(oy, h, ho, &y0, &y1, &ly);
        tap(ox, w, wo, &x0, &x1, &lx);
        float g = dy[i];
        float* d = dx + p * h * w;
        atomicAdd(d + y0 * w + x0, g * (1.f - ly) * (1.f - lx));
        atomicAdd(d + y0 * w + x1, g * (1.f - ly) * lx);
        atomicAdd(d + y1 * w + x0, g * ly * (1.f - lx));
        atomicAdd(d + y1 * w + x1, g * ly * lx);
    }
}
