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
        long long s = src_off, d = dst_off;
        if (total < 2147483647LL) {  // 32-bit index arithmetic (far cheaper on the GPU)
            int rem = (int)i;
            for (int k = b.rank - 1; k >= 0; --k) {
                int dk = (int)b.dims[k];
                int ik = rem % dk;
                rem /= dk;
                s += ik * b.src_st[k];
                d += ik * b.dst_st[k];
            }
        } else {
            long long rem = i;
            for (int k = b.rank - 1; k >= 0; --k) {
                long long ik = rem % b.dims[k];
                rem /= b.dims[k];
                s += ik * b.src_st[k];
                d += ik * b.dst_st[k];
            }
        }
        dst[d] = accumulate ? dst[d] + src[s] : src[s];
    }
}

// y[b] = x[b]ᵀ for a batch of (rows × cols) matrices: 32×32 tiles through shared memory so
// both the reads and the writes are coalesced (the +1 column avoids bank conflicts).
// block (32, 8), grid (ceil(cols/32), ceil(rows/32), batch).
extern "C" __global__ void transpose_tiles(const float* x, float* y, int rows, int cols) {
    __shared__ float tile[32][33];
    long long base = (long long)blockIdx.z * rows * cols;
    int c0 = blockIdx.x * 32, r0 = blockIdx.y * 32;
    for (int k = threadIdx.y; k < 32; k += 8) {
        int r = r0 + k, c = c0 + threadIdx.x;
        if (r < rows && c < cols) tile[k][threadIdx.x] = x[base + (long long)r * cols + c];
    }
    __syncthreads();
    for (int k = threadIdx.y; k < 32; k += 8) {
        int c = c0 + k, r = r0 + threadIdx.x;  // output row c, column r
        if (r < rows && c < cols) y[base + (long long)c * rows + r] = tile[threadIdx.x][k];
    }
}
