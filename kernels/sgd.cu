// PyTorch's SGD update, fused (the CPU reference is backend/cpu/sgd.rs):
// d = g + wd·p; buf = d on the first step, else μ·buf + (1 − dampening)·d;
// d = d + μ·buf (nesterov) or buf; p −= lr·d.
extern "C" __global__ void sgd_step(float* p, const float* g, float* buf, float lr, float momentum,
                                    float dampening, float wd, int nesterov, int first,
                                    long long n) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        float d = g[i] + wd * p[i];
        if (momentum != 0.f) {
            float b = first ? d : momentum * buf[i] + (1.f - dampening) * d;
            buf[i] = b;
            d = nesterov ? d + momentum * b : b;
        }
        p[i] -= lr * d;
    }
}
