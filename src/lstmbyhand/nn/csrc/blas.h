// GEMM on raw row-major pointers for the compiled kernels, and the layouts they multiply in.
//
// gemm calls the BLAS that torch itself links (MKL's sgemm_/dgemm_ in the x86 wheels), found once at
// load time with dlsym, because at::mm costs a few microseconds of dispatch per call and the loop over
// time calls it once or twice per step; float products of the plain form go to oneDNN's brgemm
// kernel, which torch exports. Where torch carries neither, at::addmm_out on tensors that wrap the
// same memory. The measurements behind these choices are in docs/performance.md.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace lstmbyhand {

// C (m, n) = alpha * op(A) (m, k) @ op(B) (k, n) + beta * C, all row-major with leading dimensions.
// transa: A is stored (k, m) and used transposed; likewise transb: B is stored (n, k).
template <typename T>
void gemm(bool transa, bool transb, int64_t m, int64_t n, int64_t k, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);
template <>
void gemm<float>(bool transa, bool transb, int64_t m, int64_t n, int64_t k, float alpha,
                 const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                 int64_t ldc);
template <>
void gemm<double>(bool transa, bool transb, int64_t m, int64_t n, int64_t k, double alpha,
                  const double* A, int64_t lda, const double* B, int64_t ldb, double beta,
                  double* C, int64_t ldc);

// Whether oneDNN's brgemm kernel runs here (probed once; the answer is then fixed for the process).
bool brgemm_works();

// Width of the column panels of the forward's weights (see panels and gemm_panels).
constexpr int64_t kPanel = 64;

// (G, K) rows -> column panels of (K, G): the columns c0..c0+v-1 (c0 a multiple of kPanel, v =
// min(kPanel, G - c0)) as one contiguous (K, v) matrix at offset c0 K. A GEMM then streams each panel
// from consecutive memory; with plain (K, G) rows 4 KiB apart (G = 1024) every row of a panel sat on
// another 4 KiB page and in the same L1 sets (measured: docs/performance.md, "column panels").
at::Tensor panels(const at::Tensor& rows);  // (G K,)

// Runs fn(c0, c1) over the column chunks [c0, c1) of width kPanel of a product's n columns: across
// threads where the product (2 m n k flops) is worth splitting and no threads run it already (a batch
// too small for row groups, e.g. B = 6 at H = 256), else in order on this thread.
template <typename F>
void over_column_chunks(int64_t m, int64_t n, int64_t k, const F& fn) {
  const int64_t count = (n + kPanel - 1) / kPanel;
  auto run = [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) fn(p * kPanel, std::min(n, (p + 1) * kPanel));
  };
  if (at::get_num_threads() > 1 && count > 1 && 2 * m * n * k >= (int64_t{1} << 20) &&
      !at::in_parallel_region())
    at::parallel_for(0, count, 1, run);
  else
    run(0, count);
}

// C (m, G) = A (m, K) @ the paneled (K, G) matrix, one GEMM per panel.
template <typename T>
void gemm_panels(int64_t m, int64_t G, int64_t K, const T* A, int64_t lda, const T* panel_data, T* C,
                 int64_t ldc) {
  over_column_chunks(m, G, K, [&](int64_t c0, int64_t c1) {
    gemm<T>(false, false, m, c1 - c0, K, T(1), A, lda, panel_data + c0 * K, c1 - c0, T(0), C + c0, ldc);
  });
}

// One product C (m, n) = Aᵀ B of gemm_transposed_a: B (k, n) and C (m, n) row-major, no padding.
template <typename T>
struct TransposedProduct {
  int64_t n;
  const T* B;
  T* C;
};

// C_i = Aᵀ B_i for each product, A stored (k, m) row-major (lda): the weight gradients, summed over
// all k = T B rows. In float, with brgemm, the threads split the m rows of C; each transposes its
// columns of A a slab of kSlab rows at a time into a buffer that stays in cache and accumulates
// brgemm over the slabs, for every product from the same slab (faster than the BLAS's transposed-A
// GEMM on these shapes: docs/performance.md).
template <typename T>
void gemm_transposed_a(int64_t m, int64_t k, const T* A, int64_t lda,
                       const std::vector<TransposedProduct<T>>& products);

}  // namespace lstmbyhand
