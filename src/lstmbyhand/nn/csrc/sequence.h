// The loop over time shared by the sequence kernels (bptt.cpp: the plain cell; variant_bptt.cpp: its
// variants): which rows run at each step, the step order of a direction, the cache buffers, and the
// batch split into row groups, one per thread.
#pragma once

#include "blas.h"
#include "workspace.h"

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace lstmbyhand {

// The number of running rows at each step: batch_sizes, or B everywhere.
inline std::vector<int64_t> active_rows(const c10::optional<at::Tensor>& batch_sizes, int64_t T, int64_t B) {
  std::vector<int64_t> rows(T, B);
  if (batch_sizes.has_value()) {
    const at::Tensor sizes = batch_sizes->to(at::kCPU, at::kLong).contiguous();
    TORCH_CHECK(sizes.numel() == T, "batch_sizes: expected ", T, " entries (one per step), got ",
                sizes.numel());
    const int64_t* p = sizes.data_ptr<int64_t>();
    for (int64_t t = 0; t < T; ++t) {
      TORCH_CHECK(p[t] >= 0 && p[t] <= B, "batch_sizes[", t, "]: expected 0..", B, ", got ", p[t]);
      rows[t] = p[t];
    }
  }
  return rows;
}

// The step order of a direction (sequence.time_steps).
inline int64_t step_at(int64_t s, int64_t T, bool reverse) { return reverse ? T - 1 - s : s; }

// A cache or output buffer: zeroed for packed batches (rows that do not run stay zero).
inline at::Tensor buffer(bool packed, at::IntArrayRef shape, const at::TensorOptions& opts) {
  return reusable(shape, opts, packed);
}

// The batch rows split into groups, one per thread, where a step is worth splitting (2 B 4H K >= 2^20
// flops, K = I+P in the forward, P in the backward) and each group keeps at least 4 rows: a group
// runs all its steps without waiting for the others (each reads all the weights and only its own rows
// of everything else). Splitting the hidden units instead needs every thread's h_t before any
// thread's next step, and ran slower (docs/performance.md).
inline int64_t choose_row_groups(int64_t B, int64_t G, int64_t K) {
  const int64_t threads = at::get_num_threads();
  if (threads <= 1 || at::in_parallel_region() || 2 * B * G * K < (int64_t{1} << 20)) return 1;
  return std::max<int64_t>(1, std::min(threads, B / 4));
}

// Runs step(s, j0, j1, g) for s = 0..steps-1 over the rows j0..j1-1 of each of `groups` row groups,
// one group per thread, the groups never waiting for each other.
template <typename F>
void run_row_groups(int64_t B, int64_t groups, int64_t steps, const F& step) {
  brgemm_works();  // settle the GEMM choice before the threads
  at::parallel_for(0, groups, 1, [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g)
      for (int64_t s = 0; s < steps; ++s) step(s, B * g / groups, B * (g + 1) / groups, g);
  });
}

}  // namespace lstmbyhand
