// Element-wise ops, forward and backward side by side. One thread per element (grid-stride
// loops), f32. Binary ops broadcast through per-operand strides over a 4-D index space
// (stride 0 on a broadcast axis) over at most 6 axes after the host merged the axes that stay
// contiguous in both operands, which covers every broadcast the engine's ops use.

#define GRID_STRIDE(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)

// ---- unary: y = f(x); backward dx = dy * f'(x) (or of y where cheaper) ----
extern "C" __global__ void relu_fwd(const float* x, float* y, long long n) {
    GRID_STRIDE(i, n) { y[i] = x[i] < 0.f ? 0.f : x[i]; }  // NaN passes through
}
extern "C" __global__ void relu_bwd(const float* x, const float* dy, float* dx, long long n) {
    GRID_STRIDE(i, n) { dx[i] = x[i] > 0.f ? dy[i] : 0.f; }
}
// stable for large |x|, as the CPU reference
extern "C" __global__ void sigmoid_fwd(const float* x, float* y, long long n) {
    GRID_STRIDE(i, n) {
        float v = x[i];
        if (v >= 0.f) {
            y[i] = 1.f / (1.f + expf(-v));
        } else {
            float e = expf(v);
            y[i] = e / (1.f + e);
        }
    }
}
extern "C" __global__ void sigmoid_bwd(const float* y, const float* dy, float* dx, long long n) {
    GRID_STRIDE(i, n) { dx[i] = dy[i] * y[i] * (1.f - y[i]); }
}
extern "C" __global__ void exp_fwd(const float* x, float* y, long long n) {
    GRID_STRIDE(i, n) { y[i] = expf(x[i]); }
}
extern "C" __global__ void exp_bwd(const float* y, const float* dy, float* dx, long long n) {
    GRID_STRIDE(i, n) { dx[i] = dy[i] * y[i]; }
}
extern "C" __global__ void log_fwd(const float* x, float* y, long long n) {
    GRID_STRIDE(i, n) { y[i] = logf(x[i]); }
}
extern "C" __global__ void log_bwd(const float* x, const float* dy, float* dx, long long n) {
    GRID_STRIDE(i, n) { dx[i] = dy[i] / x[i]; }
}
extern "C" __global__ void sqrt_fwd(const float* x, float* y, long long n) {
    GRID_STRIDE(i, n) { y[i] = sqrtf(x[i]); }
}
extern "C" __global__ void sqrt_bwd(const float* y, const float* dy, float* dx, long long n) {
    GRID_STRIDE(i, n) { dx[i] = dy[i] * 0.5f / y[i]; }
}
extern "C" __global__ void powf_fwd(const float* x, float* y, float p, long long n) {
    GRID_STRIDE(i, n) { y[i] = powf(x[i], p); }
}
extern "C" __global__ void powf_bwd(const float* x, const float* dy, float* dx, float p, long long n) {
    GRID_STRIDE(i, n) { dx[i] = dy[i] * p * powf(x[i], p - 1.f); }
}
extern "C" __global__ void sqr_fwd(const float* x, float* y, long long n) {
    GRID_STRIDE(i, n) { y[i] = x[i] * x[i]; }
}
extern "C" __global__ void recip_fwd(const float* x, float* y, long long n) {
    GRID_STRIDE(i, n) { y[i] = 1.f / x[i]; }
}
extern "C" __global__ void abs_fwd(const float* x, float* y, long long n) {
    GRID_STRIDE(i, n) { y[i] = fabsf(x[i]); }
}
// y = v everywhere (full, ones; zeros use a memset)
extern "C" __global__ void fill(float* y, float v, long long n) {
    GRID_STRIDE(i, n) { y[i] = v; }
}
// y = mul * x + add (neg, scalar mul/add); backward dx = mul * dy
extern "C" __global__ void affine_fwd(const float* x, float* y, float mul, float add, long long n) {
    GRID_STRIDE(i, n) { y[i] = fmaf(mul, x[i], add); }
}

// ---- binary with broadcasting: out[i] = a[ia] op b[ib] over dims d0..d5 ----
#define BCAST_RANK 6
struct Bcast {
    long long d[BCAST_RANK];   // output dims (the used ones last)
    long long sa[BCAST_RANK];  // strides of a (0 where broadcast)
    long long sb[BCAST_RANK];  // strides of b
    int nd;                    // used axes: d[BCAST_RANK - nd ..]
};

__device__ __forceinline__ void offsets(const Bcast& s, long long i, long long* ia, long long* ib) {
    if (s.nd <= 1) {  // same shapes, or one operand a scalar: no index arithmetic
        *ia = i * s.sa[BCAST_RANK - 1];
        *ib = i * s.sb[BCAST_RANK - 1];
        return;
    }
    long long r = i, oa = 0, ob = 0;
    for (int k = BCAST_RANK - 1; k >= BCAST_RANK - s.nd; --k) {
        long long c = r % s.d[k];
        r /= s.d[k];
        oa += c * s.sa[k];
        ob += c * s.sb[k];
    }
    *ia = oa;
    *ib = ob;
}

#define BINARY(name, expr)                                                                 \
    extern "C" __global__ void name(const float* a, const float* b, float* out, Bcast s,   \
                                    long long n) {                                         \
        GRID_STRIDE(i, n) {                                                                \
            long long ia, ib;                                                              \
            offsets(s, i, &ia, &ib);                                                       \
            float x = a[ia], y = b[ib];                                                    \
            out[i] = (expr);                                                               \
        }                                                                                  \
    }
BINARY(add_fwd, x + y)
BINARY(sub_fwd, x - y)
BINARY(mul_fwd, x * y)
BINARY(div_fwd, x / y)
BINARY(maximum_fwd, fmaxf(x, y))
BINARY(minimum_fwd, fminf(x, y))
// backward helpers of the engine's BinaryOp: ReLU (lhs = dy, rhs = x), sigmoid (rhs = y)
BINARY(relu_grad, y > 0.f ? x : 0.f)
BINARY(sigmoid_grad, x * y * (1.f - y))

// Backward of a broadcast binary op: the gradient of each operand at full (output) size;
// the host then sums it over the broadcast axes with the reduce kernels.
extern "C" __global__ void mul_bwd(const float* a, const float* b, const float* dy, float* da,
                                   float* db, Bcast s, long long n) {
    GRID_STRIDE(i, n) {
        long long ia, ib;
        offsets(s, i, &ia, &ib);
        da[i] = dy[i] * b[ib];
        db[i] = dy[i] * a[ia];
    }
}
extern "C" __global__ void div_bwd(const float* a, const float* b, const float* dy, float* da,
                                   float* db, Bcast s, long long n) {
    GRID_STRIDE(i, n) {
        long long ia, ib;
        offsets(s, i, &ia, &ib);
        float y = b[ib];
        da[i] = dy[i] / y;
        db[i] = -dy[i] * a[ia] / (y * y);
    }
}
