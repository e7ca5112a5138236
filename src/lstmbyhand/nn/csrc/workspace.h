// The kernels' memory: a pool of large buffers reused across calls, contiguous views of the
// arguments, and the cache of the forward's weights laid out in panels (blas.h).
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace lstmbyhand {

// An uninitialized tensor (zeros when `zero`). Large ones reuse the memory of earlier calls' buffers
// that nothing references any more (the cache of a training step is freed with its graph after the
// backward): a fresh multi-megabyte allocation is mapped page by page on first touch, which cost more
// than a whole forward pass (docs/performance.md). At most 32 such blocks are kept, for the process.
at::Tensor reusable(at::IntArrayRef shape, const at::TensorOptions& opts, bool zero = false);

// t itself when contiguous, else a contiguous copy (e.g. the expanded gradient of output.sum()).
at::Tensor checked(const at::Tensor& t, const at::Tensor& like, const char* name);

// The weights (4H, K_i) side by side, (4H, ΣK_i), transposed into column panels (see panels): the
// layout the forward multiplies with. The result is kept for the next call with the same weights:
// the layer passes the same parameters at every call, and preparing them (a copy and a transpose into
// fresh memory) is a large share of a short call at H = 256 (docs/performance.md). A hit needs the
// same memory and bitwise the same contents as when prepared (compared with a saved copy), so any
// update, in place or through .data, misses; a miss on the same memory re-prepares into the old
// entry's buffers once nothing holds them.
at::Tensor paneled_weights(const std::vector<at::Tensor>& parts);

}  // namespace lstmbyhand
