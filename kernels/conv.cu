// conv2d as im2col + GEMM (cuBLAS), and col2im for the input gradient. Layout NCHW; the column
// matrix is (Cin·kh·kw) × (images·Ho·Wo), row-major (one image's block as the CPU backend's).

struct ConvGeom {
    int cin, h, w, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo;
};

// The column matrix of a chunk of images is K × ld with ld = images·Ho·Wo: image y = blockIdx.y
// owns columns [y·Ho·Wo, (y+1)·Ho·Wo), so the chunk's three conv products are single GEMMs.
// grid (⌈Ho·Wo/256⌉, images, ⌈K/IM2COL_ROWS⌉): each thread fills IM2COL_ROWS rows r = (c, ky,
// kx) of one output pixel p, issuing all their loads before any store, so several loads are
// in flight per thread (one load per thread left the copy waiting on memory latency).
#define IM2COL_ROWS 8
extern "C" __global__ void im2col(const float* x, float* col, ConvGeom g, long long ld) {
    int hw = g.ho * g.wo;
    int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= hw) return;
    int rows = g.cin * g.kh * g.kw;
    int oy = p / g.wo, ox = p - oy * g.wo;
    const float* xi = x + (long long)blockIdx.y * g.cin * g.h * g.w;
    float* cp = col + (long long)blockIdx.y * hw + p;
    int r0 = blockIdx.z * IM2COL_ROWS;
    float v[IM2COL_ROWS];
#pragma unroll
    for (int u = 0; u < IM2COL_ROWS; ++u) {
        int r = r0 + u;
        v[u] = 0.f;
        if (r < rows) {
            int kx = r % g.kw, ky = (r / g.kw) % g.kh, c = r / (g.kw * g.kh);
            int iy = oy * g.sh - g.ph + ky * g.dh;
            int ix = ox * g.sw - g.pw + kx * g.dw;
            if (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w) v[u] = xi[(c * g.h + iy) * g.w + ix];
        }
    }
#pragma unroll
    for (int u = 0; u < IM2COL_ROWS; ++u)
        if (r0 + u < rows) cp[(long long)(r0 + u) * ld] = v[u];
}

// One thread per input pixel gathers every column entry that read it (no atomics, so the sum
// order is fixed and the result deterministic). grid (⌈H·W/256⌉, images, Cin), layout as above.
extern "C" __global__ void col2im(const float* col, float* dx, ConvGeom g, long long ld) {
    int hw_in = g.h * g.w;
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= hw_in) return;
    int c = blockIdx.z;
    int iy = i / g.w, ix = i - iy * g.w;
    const float* ci = col + (long long)blockIdx.y * g.ho * g.wo;
    float acc = 0.f;
    for (int ky = 0; ky < g.kh; ++ky) {
        int ty = iy + g.ph - ky * g.dh;
        if (ty < 0 || ty % g.sh) continue;
        int oy = ty / g.sh;
        if (oy >= g.ho) continue;
        for (int kx = 0; kx < g.kw; ++kx) {
            int tx = ix + g.pw - kx * g.dw;
            if (tx < 0 || tx % g.sw) continue;
            int ox = tx / g.sw;
            if (ox >= g.wo) continue;
            int r = (c * g.kh + ky) * g.kw + kx;
            acc += ci[(long long)r * ld + oy * g.wo + ox];
        }
    }
    dx[((long long)blockIdx.y * g.cin + c) * hw_in + i] = acc;
}

// bias add over (Cout, Ho·Wo) of one batch: y[b, o, p] += bias[o]
extern "C" __global__ void add_bias(float* y, const float* bias, int cout, int hw, long long n) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        y[i] += bias[(i / hw) % cout];
    }
}
