// gemm (BLAS, brgemm or ATen), the weight panels and the transposed-A products of blas.h.
#include "blas.h"

#include <ATen/native/CPUBlas.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/from_blob.h>
#include <dlfcn.h>

#include <type_traits>

namespace lstmbyhand {

namespace {

using fortran_sgemm = void (*)(const char*, const char*, const int*, const int*, const int*,
                               const float*, const float*, const int*, const float*, const int*,
                               const float*, float*, const int*);
using fortran_dgemm = void (*)(const char*, const char*, const int*, const int*, const int*,
                               const double*, const double*, const int*, const double*, const int*,
                               const double*, double*, const int*);

// The BLAS torch links, when it exports one (LP64 Fortran interface), else nullptr.
template <typename Fn>
Fn find_blas(const char* name) {
  for (const char* lib : {"libtorch_cpu.so", static_cast<const char*>(nullptr)}) {
    void* handle = dlopen(lib, RTLD_LAZY | RTLD_NOLOAD);
    if (handle != nullptr) {
      if (void* symbol = dlsym(handle, name)) return reinterpret_cast<Fn>(symbol);
    }
  }
  return nullptr;
}

const fortran_sgemm sgemm_fn = find_blas<fortran_sgemm>("sgemm_");
const fortran_dgemm dgemm_fn = find_blas<fortran_dgemm>("dgemm_");

// Row-major C = alpha op(A) op(B) + beta C is column-major C^T = alpha op(B)^T op(A)^T + beta C^T.
template <typename T, typename Fn>
bool blas_gemm(Fn fn, bool transa, bool transb, int64_t m, int64_t n, int64_t k, T alpha,
               const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if (fn == nullptr) return false;
  const char ta = transb ? 'T' : 'N', tb = transa ? 'T' : 'N';
  const int mi = static_cast<int>(n), ni = static_cast<int>(m), ki = static_cast<int>(k);
  const int la = static_cast<int>(std::max<int64_t>(1, ldb));
  const int lb = static_cast<int>(std::max<int64_t>(1, lda));
  const int lc = static_cast<int>(std::max<int64_t>(1, ldc));
  fn(&ta, &tb, &mi, &ni, &ki, &alpha, B, &la, A, &lb, &beta, C, &lc);
  return true;
}

// Fallback through ATen on tensors that wrap the same memory.
template <typename T>
void aten_gemm(bool transa, bool transb, int64_t m, int64_t n, int64_t k, T alpha, const T* A,
               int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  const auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  at::Tensor a = at::from_blob(const_cast<T*>(A), transa ? at::IntArrayRef{k, m} : at::IntArrayRef{m, k},
                               {lda, 1}, opts);
  at::Tensor b = at::from_blob(const_cast<T*>(B), transb ? at::IntArrayRef{n, k} : at::IntArrayRef{k, n},
                               {ldb, 1}, opts);
  at::Tensor c = at::from_blob(C, {m, n}, {ldc, 1}, opts);
  if (transa) a = a.t();
  if (transb) b = b.t();
  if (beta == T(0)) c.zero_();
  at::addmm_out(c, c, a, b, beta == T(0) ? T(1) : beta, alpha);
}

// C (m, n) = A (m, k) B (k, n) (+ C when add), split across threads by rows (tall) or by columns.
void brgemm_f32(int64_t m, int64_t n, int64_t k, const float* A, int64_t lda, const float* B,
                int64_t ldb, float* C, int64_t ldc, bool add) {
  const int64_t threads = at::get_num_threads();
  if (threads == 1 || 2 * m * n * k < (int64_t{1} << 23) || at::in_parallel_region()) {
    at::native::cpublas::brgemm(m, n, k, lda, ldb, ldc, add, A, B, C, false);
    return;
  }
  const bool by_rows = m >= 64 * threads;
  const int64_t extent = by_rows ? m : n;
  const int64_t align = by_rows ? 1 : 16;  // whole vector registers per column block
  const int64_t chunk = ((extent + threads - 1) / threads + align - 1) / align * align;
  at::parallel_for(0, (extent + chunk - 1) / chunk, 1, [&](int64_t begin, int64_t end) {
    for (int64_t part = begin; part < end; ++part) {
      const int64_t lo = part * chunk, len = std::min(chunk, extent - lo);
      if (by_rows)
        at::native::cpublas::brgemm(len, n, k, lda, ldb, ldc, add, A + lo * lda, B, C + lo * ldc, false);
      else
        at::native::cpublas::brgemm(m, len, k, lda, ldb, ldc, add, A, B + lo, C + lo, false);
    }
  });
}

}  // namespace

// oneDNN's batch-reduce GEMM kernel as torch exports it (at::native::cpublas::brgemm, float, row-major,
// one thread): JIT-compiled for the CPU it runs on, it beats the BLAS on these shapes (see
// docs/performance.md). Tried once; if it throws, never again.
bool brgemm_works() {
  static const bool works = [] {
    try {
      float a[4] = {1, 2, 3, 4}, b[4] = {1, 0, 0, 1}, c[4] = {0, 0, 0, 0};
      at::native::cpublas::brgemm(2, 2, 2, 2, 2, 2, false, a, b, c, false);
      at::native::cpublas::brgemm_release(false);
      return c[0] == 1 && c[1] == 2 && c[2] == 3 && c[3] == 4;
    } catch (...) {
      return false;
    }
  }();
  return works;
}

template <>
void gemm<float>(bool transa, bool transb, int64_t m, int64_t n, int64_t k, float alpha,
                 const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                 int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int64_t r = 0; r < m; ++r)
      for (int64_t s = 0; s < n; ++s) C[r * ldc + s] = beta == 0.0f ? 0.0f : beta * C[r * ldc + s];
    return;
  }
  if (!transa && !transb && alpha == 1.0f && (beta == 0.0f || beta == 1.0f) && brgemm_works()) {
    brgemm_f32(m, n, k, A, lda, B, ldb, C, ldc, beta == 1.0f);
    return;
  }
  if (!blas_gemm(sgemm_fn, transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc))
    aten_gemm(transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

template <>
void gemm<double>(bool transa, bool transb, int64_t m, int64_t n, int64_t k, double alpha,
                  const double* A, int64_t lda, const double* B, int64_t ldb, double beta,
                  double* C, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int64_t r = 0; r < m; ++r)
      for (int64_t s = 0; s < n; ++s) C[r * ldc + s] = beta == 0.0 ? 0.0 : beta * C[r * ldc + s];
    return;
  }
  if (!blas_gemm(dgemm_fn, transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc))
    aten_gemm(transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

at::Tensor panels(const at::Tensor& rows) {
  const int64_t G = rows.size(0), K = rows.size(1), full = G / kPanel * kPanel;
  std::vector<at::Tensor> parts;
  if (full > 0)
    parts.push_back(rows.narrow(0, 0, full).reshape({G / kPanel, kPanel, K}).transpose(1, 2).reshape({-1}));
  if (full < G) parts.push_back(rows.narrow(0, full, G - full).t().reshape({-1}));
  return at::cat(parts, 0);  // (G K,)
}

template <typename T>
void gemm_transposed_a(int64_t m, int64_t k, const T* A, int64_t lda,
                       const std::vector<TransposedProduct<T>>& products) {
  bool fast = false;
  if constexpr (std::is_same_v<T, float>) fast = m > 0 && k > 0 && brgemm_works();
  if (!fast) {
    for (const auto& p : products)
      gemm<T>(true, false, m, p.n, k, T(1), A, lda, p.B, p.n, T(0), p.C, p.n);
    return;
  }
  constexpr int64_t kSlab = 256, kTile = 16;
  const int64_t threads = at::in_parallel_region() ? 1 : at::get_num_threads();
  const int64_t chunk = std::max<int64_t>(kTile, (m + threads - 1) / threads);
  at::parallel_for(0, (m + chunk - 1) / chunk, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> slab(chunk * kSlab);  // (chunk, kSlab): A[k0.., m0..]ᵀ
    for (int64_t part = begin; part < end; ++part) {
      const int64_t m0 = part * chunk, mw = std::min(chunk, m - m0);
      for (int64_t k0 = 0; k0 < k; k0 += kSlab) {
        const int64_t kw = std::min(kSlab, k - k0);
        for (int64_t r0 = 0; r0 < kw; r0 += kTile)  // transpose in 16 x 16 tiles
          for (int64_t i0 = 0; i0 < mw; i0 += kTile)
            for (int64_t r = r0; r < std::min(r0 + kTile, kw); ++r)
              for (int64_t i = i0; i < std::min(i0 + kTile, mw); ++i)
                slab[i * kSlab + r] = A[(k0 + r) * lda + m0 + i];
        for (const auto& p : products)
          gemm<T>(false, false, mw, p.n, kw, T(1), slab.data(), kSlab, p.B + k0 * p.n, p.n,
                  k0 > 0 ? T(1) : T(0), p.C + m0 * p.n, p.n);  // C[m0.., :] (+)= slabᵀ B[k0..]
      }
    }
  });
}

template void gemm_transposed_a<float>(int64_t, int64_t, const float*, int64_t,
                                       const std::vector<TransposedProduct<float>>&);
template void gemm_transposed_a<double>(int64_t, int64_t, const double*, int64_t,
                                        const std::vector<TransposedProduct<double>>&);

}  // namespace lstmbyhand
