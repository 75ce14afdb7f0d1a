// conv2d as im2col + GEMM (cuBLAS), and col2im for the input gradient. Layout NCHW; the column
// matrix is (Cin·kh·kw) × (images·Ho·Wo), row-major (one image's block as the CPU backend's).

struct ConvGeom {
    int cin, h, w, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo;
};

// The column matrix of a chunk of images is K × ld with ld = images·Ho·Wo: image y = blockIdx.y
// owns columns [y·Ho·Wo, (y+1)·Ho·Wo), so the chunk's three conv products are single GEMMs
// (img_stride = Ho·Wo). Small column matrices (a first layer) are laid out image by image
// instead, K × Ho·Wo each (ld = Ho·Wo, img_stride = K·Ho·Wo), for per-image GEMMs into NCHW.
// grid (⌈Ho·Wo/256⌉, images, ⌈K/IM2COL_ROWS⌉): each thread fills IM2COL_ROWS rows r = (c, ky,
// kx) of one output pixel p, issuing all their loads before any store, so several loads are
// in flight per thread (one load per thread left the copy waiting on memory latency).
#define IM2COL_ROWS 8
extern "C" __global__ void im2col(const float* x, float* col, ConvGeom g, long long ld,
                                  long long img_stride) {
    int hw = g.ho * g.wo;
    int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= hw) return;
    int rows = g.cin * g.kh * g.kw;
    int oy = p / g.wo, ox = p - oy * g.wo;
    const float* xi = x + (long long)blockIdx.y * g.cin * g.h * g.w;
    float* cp = col + (long long)blockIdx.y * img_stride + p;
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
extern "C" __global__ void col2im(const float* col, float* dx, ConvGeom g, long long ld,
                                  long long img_stride) {
    int hw_in = g.h * g.w;
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= hw_in) return;
    int c = blockIdx.z;
    int iy = i / g.w, ix = i - iy * g.w;
    const float* ci = col + (long long)blockIdx.y * img_stride;
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

// in place over (N, Cout, Ho·Wo): y[b, o, p] += bias[o] (bias may be null), then the ReLU when
// `relu` is set (conv2d_relu)
extern "C" __global__ void bias_act(float* y, const float* bias, int cout, int hw, long long n,
                                    int relu) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        float v = y[i];
        if (bias) v += bias[(i / hw) % cout];
        y[i] = relu && v < 0.f ? 0.f : v;  // NaN passes through (fmaxf would give 0)
    }
}

// ---------------------------------------------------------------- Winograd F(2×2, 3×3)
// For 3×3 convs with stride 1 and any dilation (Lavin & Gray, "Fast Algorithms for
// Convolutional Neural Networks", 2015): a 2×2 output tile is Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A over its 4×4 input
// tile d, so the sum over input channels becomes 16 independent GEMMs, one per point ξ of the
// 4×4 transform domain: M[ξ] (Cout × T) = U[ξ] (Cout × Cin) · V[ξ] (Cin × T) over the T tiles of
// a chunk of images. That is 16/4 = 4 multiplies per output instead of 9, and V is 4× the
// input where im2col's column matrix is 9×. The transforms only add and halve (exact in
// float32 but for the halving's last bit), so the results match the direct conv to rounding.
//   Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]   G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1]
//   Aᵀ = [1 1 1 0; 0 1 -1 -1]
// The backward: dx is the same conv of dy with the weights turned 180° and Cin/Cout swapped
// (wino_weight's flip) and padding 2d − p; dW = Gᵀ[Σ_tiles (A dy Aᵀ) ⊙ V]G, the tile sum again
// 16 GEMMs. A dilation d splits the output into d×d phases (rows ≡ ry, columns ≡ rx mod d),
// each an undilated conv of the input's matching phase, so its tiles' pixels lie d apart.
// Layouts: V[ξ][c][t], M[ξ][co][t], U[ξ][co][ci], tile t = (((image·d + ry)·d + rx)·th + ty)·tw
// + tx, th × tw tiles per phase (the largest phase's; smaller phases clip).
struct WinoGeom {
    int cin, h, w, cout, ho, wo, ph, pw, dh, dw, th, tw;
};

// Tile t's image and the coordinates of its first output pixel (oy, ox), pixels d apart.
struct WinoTile {
    int img, oy, ox;
};
__device__ __forceinline__ WinoTile wino_tile(const WinoGeom& g, int t) {
    int tx = t % g.tw, r = t / g.tw;
    int ty = r % g.th;
    r /= g.th;
    int rx = r % g.dw;
    r /= g.dw;
    int ry = r % g.dh;
    WinoTile k;
    k.img = r / g.dh;
    k.oy = ry + 2 * ty * g.dh;
    k.ox = rx + 2 * tx * g.dw;
    return k;
}

// grid (⌈T/256⌉, Cin): V[ξ][c][t] = (Bᵀ d B)[ξ] of tile t's 4×4 input window (zero padded)
extern "C" __global__ void wino_input(const float* x, float* v, WinoGeom g, int tiles) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= tiles) return;
    int c = blockIdx.y;
    WinoTile k = wino_tile(g, t);
    const float* xp = x + ((long long)k.img * g.cin + c) * g.h * g.w;
    int y0 = k.oy - g.ph, x0 = k.ox - g.pw;
    float d[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            int iy = y0 + i * g.dh, ix = x0 + j * g.dw;
            d[i][j] = (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w) ? xp[iy * g.w + ix] : 0.f;
        }
    float u[4][4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        u[0][j] = d[0][j] - d[2][j];
        u[1][j] = d[1][j] + d[2][j];
        u[2][j] = d[2][j] - d[1][j];
        u[3][j] = d[1][j] - d[3][j];
    }
    long long plane = (long long)g.cin * tiles;
    float* vp = v + (long long)c * tiles + t;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        vp[(4 * i + 0) * plane] = u[i][0] - u[i][2];
        vp[(4 * i + 1) * plane] = u[i][1] + u[i][2];
        vp[(4 * i + 2) * plane] = u[i][2] - u[i][1];
        vp[(4 * i + 3) * plane] = u[i][1] - u[i][3];
    }
}

// grid (⌈T/256⌉, Cout): the 2×2 outputs Aᵀ M A of tile t (+ bias, then the ReLU when `relu`),
// clipped to Ho × Wo
extern "C" __global__ void wino_output(const float* m, float* y, const float* bias, WinoGeom g,
                                       int tiles, int relu) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= tiles) return;
    int co = blockIdx.y;
    WinoTile k = wino_tile(g, t);
    long long plane = (long long)g.cout * tiles;
    const float* mp = m + (long long)co * tiles + t;
    float a[16];
#pragma unroll
    for (int k = 0; k < 16; ++k) a[k] = mp[k * plane];
    float s[2][4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        s[0][j] = a[j] + a[4 + j] + a[8 + j];
        s[1][j] = a[4 + j] - a[8 + j] - a[12 + j];
    }
    float b = bias ? bias[co] : 0.f;
    float* yp = y + ((long long)k.img * g.cout + co) * g.ho * g.wo;
    if (k.ox >= g.wo) return;
    bool second = k.ox + g.dw < g.wo;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        int oy = k.oy + i * g.dh;
        if (oy >= g.ho) break;
        float v0 = s[i][0] + s[i][1] + s[i][2] + b, v1 = s[i][1] - s[i][2] - s[i][3] + b;
        if (relu) {  // NaN passes through (fmaxf would give 0)
            v0 = v0 < 0.f ? 0.f : v0;
            v1 = v1 < 0.f ? 0.f : v1;
        }
        yp[oy * g.wo + k.ox] = v0;
        if (second) yp[oy * g.wo + k.ox + g.dw] = v1;
    }
}

// U[ξ][q] = (G g Gᵀ)[ξ] of the 3×3 kernel g of w [cout][cin][3][3], q = co·cin + ci; with flip,
// the kernel turned 180° and q = ci·cout + co (the input gradient's conv). One thread per q.
__device__ void wino_weight_one(const float* w, float* u, int cout, int cin, int flip, int pairs,
                                int q) {
    int p = flip ? (q % cout) * cin + q / cout : q;
    const float* wp = w + (long long)p * 9;
    float k[3][3];
#pragma unroll
    for (int i = 0; i < 3; ++i)
#pragma unroll
        for (int j = 0; j < 3; ++j) k[i][j] = flip ? wp[(2 - i) * 3 + 2 - j] : wp[i * 3 + j];
    float gk[4][3];
#pragma unroll
    for (int j = 0; j < 3; ++j) {
        gk[0][j] = k[0][j];
        gk[1][j] = 0.5f * (k[0][j] + k[1][j] + k[2][j]);
        gk[2][j] = 0.5f * (k[0][j] - k[1][j] + k[2][j]);
        gk[3][j] = k[2][j];
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        u[(4 * i + 0) * pairs + q] = gk[i][0];
        u[(4 * i + 1) * pairs + q] = 0.5f * (gk[i][0] + gk[i][1] + gk[i][2]);
        u[(4 * i + 2) * pairs + q] = 0.5f * (gk[i][0] - gk[i][1] + gk[i][2]);
        u[(4 * i + 3) * pairs + q] = gk[i][2];
    }
}
extern "C" __global__ void wino_weight(const float* w, float* u, int cout, int cin, int flip) {
    int pairs = cout * cin;
    for (int q = blockIdx.x * blockDim.x + threadIdx.x; q < pairs; q += blockDim.x * gridDim.x)
        wino_weight_one(w, u, cout, cin, flip, pairs, q);
}

// grid (⌈T/256⌉, Cout): dM[ξ][co][t] = (A dy Aᵀ)[ξ] of tile t's 2×2 output gradient (zero
// outside Ho × Wo), the adjoint of wino_output
extern "C" __global__ void wino_grad_output(const float* dy, float* dm, WinoGeom g, int tiles) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= tiles) return;
    int co = blockIdx.y;
    WinoTile k = wino_tile(g, t);
    const float* yp = dy + ((long long)k.img * g.cout + co) * g.ho * g.wo;
    float e[2][2];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) {
            int oy = k.oy + i * g.dh, ox = k.ox + j * g.dw;
            e[i][j] = (oy < g.ho && ox < g.wo) ? yp[oy * g.wo + ox] : 0.f;
        }
    float s[4][2];
#pragma unroll
    for (int j = 0; j < 2; ++j) {
        s[0][j] = e[0][j];
        s[1][j] = e[0][j] + e[1][j];
        s[2][j] = e[0][j] - e[1][j];
        s[3][j] = -e[1][j];
    }
    long long plane = (long long)g.cout * tiles;
    float* mp = dm + (long long)co * tiles + t;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        mp[(4 * i + 0) * plane] = s[i][0];
        mp[(4 * i + 1) * plane] = s[i][0] + s[i][1];
        mp[(4 * i + 2) * plane] = s[i][0] - s[i][1];
        mp[(4 * i + 3) * plane] = -s[i][1];
    }
}

// dW[p] (3×3) = Gᵀ dU[·][p] G, p = co·cin + ci: the adjoint of wino_weight (no flip)
__device__ void wino_weight_grad_one(const float* du, float* dw, int pairs, int p) {
    float x[4][4];
#pragma unroll
    for (int k = 0; k < 16; ++k) x[k / 4][k % 4] = du[(long long)k * pairs + p];
    float c[3][4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        c[0][j] = x[0][j] + 0.5f * (x[1][j] + x[2][j]);
        c[1][j] = 0.5f * (x[1][j] - x[2][j]);
        c[2][j] = 0.5f * (x[1][j] + x[2][j]) + x[3][j];
    }
    float* o = dw + (long long)p * 9;
#pragma unroll
    for (int i = 0; i < 3; ++i) {
        o[i * 3 + 0] = c[i][0] + 0.5f * (c[i][1] + c[i][2]);
        o[i * 3 + 1] = 0.5f * (c[i][1] - c[i][2]);
        o[i * 3 + 2] = 0.5f * (c[i][1] + c[i][2]) + c[i][3];
    }
}
extern "C" __global__ void wino_weight_grad(const float* du, float* dw, int pairs) {
    for (int p = blockIdx.x * blockDim.x + threadIdx.x; p < pairs; p += blockDim.x * gridDim.x)
        wino_weight_grad_one(du, dw, pairs, p);
}
