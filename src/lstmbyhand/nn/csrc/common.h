// Shared helpers of the compiled kernels: row-major GEMM on raw pointers, and the activations.
//
// The GEMM calls the BLAS that torch itself links (MKL's sgemm_/dgemm_ in the x86 wheels), found once
// at load time with dlsym, because at::mm costs a few microseconds of dispatch per call and the loop
// over time calls it once or twice per step. Where torch carries no such symbol, it falls back to
// at::addmm_out on tensors that wrap the same memory.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Optional.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <vector>

namespace lstmbyhand {

// C (m, n) = alpha * op(A) (m, k) @ op(B) (k, n) + beta * C, all row-major with leading dimensions.
// transa: A is stored (k, m) and used transposed; likewise transb: B is stored (n, k).
template <typename T>
void gemm(bool transa, bool transb, int64_t m, int64_t n, int64_t k, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// Branch-free exp for float that GCC vectorizes (Cephes' polynomial, |relative error| < 2e-7 on the
// clamped range); double keeps std::exp so that float64 results match PyTorch's to rounding.
inline float exp_approx(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  const float shifted = x * 1.44269504088896341f + 12582912.0f;  // round(x / ln 2) by the 1.5*2^23 trick
  const float n = shifted - 12582912.0f;
  float r = x - n * 0.693359375f;  // x - n ln 2 in two parts (Cody-Waite)
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e_r = p * r * r + r + 1.0f;  // exp(r), |r| <= ln2 / 2
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return e_r * scale;
}

inline float sigmoid(float x) { return 1.0f / (1.0f + exp_approx(-x)); }
inline float tanh_act(float x) { return 2.0f / (1.0f + exp_approx(-2.0f * x)) - 1.0f; }
inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
inline double tanh_act(double x) { return std::tanh(x); }

using Forward = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                           at::Tensor>;  // output, h_n, c_n, gates, h_prev, c_prev, tanh_c
using ForwardInference = std::tuple<at::Tensor, at::Tensor, at::Tensor>;  // output, h_n, c_n
using Backward = std::tuple<c10::optional<at::Tensor>, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                            at::Tensor, c10::optional<at::Tensor>>;  // dx, dh0, dc0, dW_ih, dW_hh, db, dW_hr

// The number of running rows at each step: batch_sizes, or B everywhere.
std::vector<int64_t> active_rows(const c10::optional<at::Tensor>& batch_sizes, int64_t T, int64_t B);

}  // namespace lstmbyhand
