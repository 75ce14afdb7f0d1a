// conv2d as im2col + GEMM (cuBLAS), and col2im for the input gradient. Layout NCHW; the column
// matrix of one image is (Cin·kh·kw) × (Ho·Wo), row-major, as the CPU backend's.

struct ConvGeom {
    int cin, h, w, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo;
};

// one thread per column-matrix element of one image
extern "C" __global__ void im2col(const float* x, float* col, ConvGeom g) {
    long long n = (long long)g.cin * g.kh * g.kw * g.ho * g.wo;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        int ox = i % g.wo;
        int oy = (i / g.wo) % g.ho;
        long long r = i / ((long long)g.wo * g.ho);  // row = (c, ky, kx)
        int kx = r % g.kw;
        int ky = (r / g.kw) % g.kh;
        int c = r / ((long long)g.kw * g.kh);
        int iy = oy * g.sh - g.ph + ky * g.dh;
        int ix = ox * g.sw - g.pw + kx * g.dw;
        col[i] = (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w)
                     ? x[((long long)c * g.h + iy) * g.w + ix]
                     : 0.f;
    }
}

// One thread per input pixel gathers every column entry that read it (no atomics, so the sum
// order is fixed and the result deterministic).
extern "C" __global__ void col2im(const float* col, float* dx, ConvGeom g) {
    long long n = (long long)g.cin * g.h * g.w;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        int ix = i % g.w;
        int iy = (i / g.w) % g.h;
        int c = i / ((long long)g.w * g.h);
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
                long long r = ((long long)c * g.kh + ky) * g.kw + kx;
                acc += col[(r * g.ho + oy) * g.wo + ox];
            }
        }
        dx[i] = acc;
    }
}

// bias add over (Cout, Ho·Wo) of one batch: y[b, o, p] += bias[o]
extern "C" __global__ void add_bias(float* y, const float* bias, int cout, int hw, long long n) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        y[i] += bias[(i / hw) % cout];
    }
}
