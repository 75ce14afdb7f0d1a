// Layout copies (permute, narrow, concat, flip and their backward passes) as one strided copy:
// for every index of a `rank`-d box, dst[dst_off + Σ i_k·dst_st_k] = src[src_off + Σ i_k·src_st_k].
// Strides are signed, so flip is a negative stride with the offset at the far end; narrow is a
// source offset; concat copies each part into a destination offset; permute permutes the
// source strides. Their backward passes are the same copy with source and destination roles
// swapped (narrow's backward writes into a zeroed gradient). The CPU reference is
// src/backend/cpu/layout.rs.
#define LAYOUT_MAX_RANK 8

struct Box {
    long long dims[LAYOUT_MAX_RANK];
    long long src_st[LAYOUT_MAX_RANK];
    long long dst_st[LAYOUT_MAX_RANK];
    int rank;
};

// `accumulate` nonzero adds into the destination instead (a layout op's gradient summed into
// an existing gradient buffer in place). Each destination index is written by one thread
// (the box maps indices one to one), so no atomics are needed.
extern "C" __global__ void strided_copy(const float* src, float* dst, Box b, long long src_off,
                                        long long dst_off, long long total, int accumulate) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        long long rem = i, s = src_off, d = dst_off;
        for (int k = b.rank - 1; k >= 0; --k) {
            long long ik = rem % b.dims[k];
            rem /= b.dims[k];
            s += ik * b.src_st[k];
            d += ik * b.dst_st[k];
        }
        dst[d] = accumulate ? dst[d] + src[s] : src[s];
    }
}
