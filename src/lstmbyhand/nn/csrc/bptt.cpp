// The compiled twin of bptt.py's forward, forward_inference and backward: same arguments, same results,
// same cache layout, same equation labels (F1-F6, B1-B6; the equations are in bptt.py's docstring).
//
// Layout: time-major x (T, B, I), states (B, P) and (B, H), stacked gates i, f, g, o along 4H = G.
// F1 is one GEMM per step, [x_t, h_{t-1}] (B, I+P) times [W U]ᵀ (the weights side by side, stored as
// column panels: see panels); the weight gradients are one GEMM each after the loop (B1); W_hr r_t
// (F5), dh_t W_hr (B5) and dz U (B1) run step by step as well. The batch rows are split into groups,
// one per thread (see choose_row_groups): rows of an LSTM never mix, so a group runs all its steps,
// forward or backward, without waiting for the others; after each step's GEMM, the fused loop over
// its rows (F2-F4 with F1's bias; in the backward B6-B2 with db summed on the way) finds the
// pre-activations hot in cache.
// Large buffers are reused across calls once nothing references them (see reusable).
// Packed batches: at step t only the first n = batch_sizes[t] rows run; the others keep their state and
// its gradient, and their cache entries, outputs and dz rows stay zero, as in the PyTorch ops.
#include "common.h"

#include <ATen/native/CPUBlas.h>
#include <ATen/ops/cat.h>
#include <dlfcn.h>

#include <mutex>
#include <cstdlib>
#include <type_traits>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

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

// oneDNN's batch-reduce GEMM kernel as torch exports it (at::native::cpublas::brgemm, float, row-major,
// one thread): JIT-compiled for the CPU it runs on, it beats the BLAS on these shapes (measured ~100
// GFLOP/s per core against MKL's ~80 on the AMD EPYC here). Tried once; if it throws, never again.
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

std::vector<int64_t> active_rows(const c10::optional<at::Tensor>& batch_sizes, int64_t T, int64_t B) {
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

namespace {

// The step order of a direction (sequence.time_steps).
inline int64_t step_at(int64_t s, int64_t T, bool reverse) { return reverse ? T - 1 - s : s; }

at::Tensor reusable(at::IntArrayRef shape, const at::TensorOptions& opts, bool zero = false);

// t itself when contiguous, else a contiguous copy (e.g. the expanded gradient of output.sum()).
at::Tensor checked(const at::Tensor& t, const at::Tensor& like, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, ": expected a CPU tensor, got ", t.device());
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), name, ": expected dtype ", like.scalar_type(),
              ", got ", t.scalar_type());
  if (t.is_contiguous()) return t;
  return reusable(t.sizes(), t.options()).copy_(t);
}

// An uninitialized tensor (zeros when `zero`). Large ones reuse the memory of earlier calls' buffers
// that nothing references any more (the cache of a training step is freed with its graph after the
// backward): a fresh multi-megabyte allocation is mapped page by page on first touch, which cost more
// than the whole forward pass at (200, 16, 32, 128). At most 32 such blocks are kept, for the process.
at::Tensor reusable(at::IntArrayRef shape, const at::TensorOptions& opts, bool zero) {
  const int64_t numel = c10::multiply_integers(shape);
  const size_t nbytes = static_cast<size_t>(numel) * opts.dtype().itemsize();
  if (nbytes < (size_t{1} << 16)) return zero ? at::zeros(shape, opts) : at::empty(shape, opts);
  static std::mutex mutex;
  static std::vector<at::Storage> pool;  // each referenced by the pool alone while free
  at::Storage storage;
  {
    std::lock_guard<std::mutex> lock(mutex);
    for (const at::Storage& s : pool)
      if (s.use_count() == 1 && s.nbytes() == nbytes) {
        storage = s;
        break;
      }
    if (!storage) {
      storage = at::empty({numel}, opts).storage();
      if (pool.size() >= 32) {  // make room: drop a free block, if any
        auto free = std::find_if(pool.begin(), pool.end(), [](const at::Storage& s) { return s.use_count() == 1; });
        if (free != pool.end()) pool.erase(free);
      }
      if (pool.size() < 32) pool.push_back(storage);
    }
  }
  at::Tensor t = at::empty({0}, opts).set_(storage, 0, shape);  // a plain tensor on that memory
  if (zero) t.zero_();
  return t;
}

at::Tensor buffer(bool packed, at::IntArrayRef shape, const at::TensorOptions& opts) {
  return reusable(shape, opts, packed);
}

// Width of the column panels of the forward's weights (see panels and gemm_panels).
constexpr int64_t kPanel = 64;

// (G, K) rows -> column panels of (K, G): the columns c0..c0+v-1 (c0 a multiple of kPanel, v =
// min(kPanel, G - c0)) as one contiguous (K, v) matrix at offset c0 K. A GEMM then streams each panel
// from consecutive memory; with plain (K, G) rows 4 KiB apart (G = 1024), every row of a panel sat on
// another 4 KiB page and the same L1 sets: brgemm ran at ~82-105 GFLOP/s instead of ~110 (one core).
at::Tensor panels(const at::Tensor& rows) {
  const int64_t G = rows.size(0), K = rows.size(1), full = G / kPanel * kPanel;
  std::vector<at::Tensor> parts;
  if (full > 0)
    parts.push_back(rows.narrow(0, 0, full).reshape({G / kPanel, kPanel, K}).transpose(1, 2).reshape({-1}));
  if (full < G) parts.push_back(rows.narrow(0, full, G - full).t().reshape({-1}));
  return at::cat(parts, 0);  // (G K,)
}

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

// The batch rows split into groups, one per thread, where a step is worth splitting (2 B 4H K >= 2^20
// flops, K = I+P in the forward, P in the backward) and each group keeps at least 4 rows: a group
// runs all its steps without waiting for the others (each reads all the weights and only its own rows
// of everything else). The kernels split the hidden units before: that needs every thread's h_t
// before any thread's next step, and ran 4-20 % slower (at (100, 64, 256, 256) 1.05-1.11x nn.LSTM
// against 0.89-0.95 for the row groups, in the stretches when other jobs loaded the machine).
int64_t choose_row_groups(int64_t B, int64_t G, int64_t K) {
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
// brgemm over the slabs, for every product from the same slab. The BLAS's transposed-A GEMM ran at
// ~63 GFLOP/s per core on these shapes (TB = 3200, m = 512, n = 32 and 128), this at ~108.
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

// The weights (4H, K_i) side by side, (4H, ΣK_i), transposed into column panels (see panels): the
// layout the forward multiplies with. The result is kept for the next call with the same weights:
// the layer passes the same parameters at every call, and preparing them (a copy and a transpose into
// fresh memory) cost ~1 ms per call at H = 256. A hit needs the same memory and bitwise the same
// contents as when prepared (compared with a saved copy), so any update, in place or through .data,
// misses; a miss on the same memory re-prepares into the old entry's buffers once nothing holds them.
at::Tensor paneled_weights(const std::vector<at::Tensor>& parts) {
  struct Entry {
    std::vector<at::Tensor> sources;  // copies of the parts when prepared
    std::vector<const void*> ptrs;
    at::Tensor result;
  };
  static std::mutex mutex;
  static std::vector<Entry> cache;  // the most recently prepared last
  std::vector<const void*> ptrs;
  for (const at::Tensor& w : parts) ptrs.push_back(w.data_ptr());
  auto same_key = [&](const Entry& e) {
    if (e.ptrs != ptrs) return false;
    for (size_t i = 0; i < parts.size(); ++i)
      if (e.sources[i].sizes() != parts[i].sizes() || e.sources[i].scalar_type() != parts[i].scalar_type())
        return false;
    return true;
  };
  auto same_values = [&](const Entry& e) {
    for (size_t i = 0; i < parts.size(); ++i)
      if (std::memcmp(e.sources[i].data_ptr(), ptrs[i], parts[i].nbytes()) != 0) return false;
    return true;
  };
  std::lock_guard<std::mutex> lock(mutex);
  auto it = std::find_if(cache.begin(), cache.end(), same_key);
  if (it != cache.end() && same_values(*it)) return it->result;
  const at::Tensor laid_out = panels(at::cat(parts, 1));  // (G ΣK,)
  if (it != cache.end() && it->result.use_count() == 1) {  // same memory, new values: refill in place
    for (size_t i = 0; i < parts.size(); ++i) it->sources[i].copy_(parts[i]);
    it->result.copy_(laid_out);
    return it->result;
  }
  if (it != cache.end()) cache.erase(it);
  if (cache.size() >= 16) cache.erase(cache.begin());
  std::vector<at::Tensor> sources;
  for (const at::Tensor& w : parts) sources.push_back(w.clone());
  cache.push_back({sources, ptrs, laid_out});
  return laid_out;
}

// F2-F4 for one row. z, b: the row's 4H pre-activations (i | f | g | o, H each) and the bias; c:
// c_{t-1} in, c_t out; h and y get r_t. With the cache: a gets the activated gates (same layout),
// cp c_{t-1}, tc tanh(c_t).
#if defined(__AVX512F__)
// exp_approx and 1 / d on 16 floats: the same polynomial; the reciprocal as rcp14 and one Newton step
// (relative error ~1e-8), which costs a fraction of a division.
inline __m512 exp16(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  const __m512 e_r = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(e_r, n);  // e_r 2^n
}
inline __m512 recip16(__m512 d) {
  const __m512 r = _mm512_rcp14_ps(d);
  return _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0f)));  // r (2 - d r)
}
inline __m512 sigmoid16(__m512 x) {
  return recip16(_mm512_add_ps(_mm512_set1_ps(1.0f), exp16(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}
inline __m512 tanh16(__m512 x) {  // 2 σ(2x) - 1
  const __m512 e = exp16(_mm512_mul_ps(x, _mm512_set1_ps(-2.0f)));
  return _mm512_fmsub_ps(_mm512_set1_ps(2.0f), recip16(_mm512_add_ps(_mm512_set1_ps(1.0f), e)),
                         _mm512_set1_ps(1.0f));
}
#endif

template <typename T, bool kCache>
inline void cell_forward(int64_t H, const T* __restrict__ z, const T* __restrict__ b,
                         T* __restrict__ c, T* __restrict__ h, T* __restrict__ y,
                         T* __restrict__ a, T* __restrict__ cp, T* __restrict__ tc) {
  int64_t k = 0;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    for (; k + 16 <= H; k += 16) {  // the loop below, 16 units at a time
      const __m512 i = sigmoid16(_mm512_add_ps(_mm512_loadu_ps(z + k), _mm512_loadu_ps(b + k)));
      const __m512 f = sigmoid16(_mm512_add_ps(_mm512_loadu_ps(z + H + k), _mm512_loadu_ps(b + H + k)));
      const __m512 g =
          tanh16(_mm512_add_ps(_mm512_loadu_ps(z + 2 * H + k), _mm512_loadu_ps(b + 2 * H + k)));
      const __m512 o =
          sigmoid16(_mm512_add_ps(_mm512_loadu_ps(z + 3 * H + k), _mm512_loadu_ps(b + 3 * H + k)));
      const __m512 c_prev = _mm512_loadu_ps(c + k);
      const __m512 c_t = _mm512_fmadd_ps(f, c_prev, _mm512_mul_ps(i, g));  // F3
      const __m512 tanh_c = tanh16(c_t);
      const __m512 r = _mm512_mul_ps(o, tanh_c);  // F4
      _mm512_storeu_ps(c + k, c_t);
      _mm512_storeu_ps(h + k, r);
      _mm512_storeu_ps(y + k, r);
      if constexpr (kCache) {
        _mm512_storeu_ps(a + k, i);
        _mm512_storeu_ps(a + H + k, f);
        _mm512_storeu_ps(a + 2 * H + k, g);
        _mm512_storeu_ps(a + 3 * H + k, o);
        _mm512_storeu_ps(cp + k, c_prev);
        _mm512_storeu_ps(tc + k, tanh_c);
      }
    }
  }
#endif
#pragma GCC ivdep
  for (; k < H; ++k) {
    const T i = sigmoid(z[k] + b[k]);  // F2 (F1's bias added here)
    const T f = sigmoid(z[H + k] + b[H + k]);  // F2
    const T g = tanh_act(z[2 * H + k] + b[2 * H + k]);  // F2
    const T o = sigmoid(z[3 * H + k] + b[3 * H + k]);  // F2
    const T c_prev = c[k];
    const T c_t = f * c_prev + i * g;  // F3
    const T tanh_c = tanh_act(c_t);
    const T r = o * tanh_c;  // F4
    c[k] = c_t;
    h[k] = r;
    y[k] = r;  // F6 (F5 without projection)
    if constexpr (kCache) {
      a[k] = i;
      a[H + k] = f;
      a[2 * H + k] = g;
      a[3 * H + k] = o;
      cp[k] = c_prev;
      tc[k] = tanh_c;
    }
  }
}

// B4-B2 for one row, and B1's db: from the activated gates a (4H), c_{t-1}, tanh(c_t) and dr (H),
// the pre-activation gradients dz (gate q at dz[q H + k]), summed into db; dc goes from dc_{t+1} to
// dc_t ⊙ f.
template <typename T>
inline void cell_backward(int64_t H, const T* __restrict__ a, const T* __restrict__ c_prev,
                          const T* __restrict__ tc, const T* __restrict__ dr, T* __restrict__ dc,
                          T* __restrict__ dz, T* __restrict__ db) {
#pragma GCC ivdep
  for (int64_t k = 0; k < H; ++k) {
    const T i = a[k], f = a[H + k], g = a[2 * H + k], o = a[3 * H + k];
    const T d_o = dr[k] * tc[k];  // B4
    const T dc_t = dc[k] + dr[k] * o * (T(1) - tc[k] * tc[k]);  // B4
    const T dz_i = dc_t * g * i * (T(1) - i);  // B3, B2: input gate
    const T dz_f = dc_t * c_prev[k] * f * (T(1) - f);  // B3, B2: forget gate
    const T dz_g = dc_t * i * (T(1) - g * g);  // B3, B2: candidate
    const T dz_o = d_o * o * (T(1) - o);  // B2: output gate
    dc[k] = dc_t * f;  // B3
    dz[k] = dz_i;
    dz[H + k] = dz_f;
    dz[2 * H + k] = dz_g;
    dz[3 * H + k] = dz_o;
    db[k] += dz_i;  // B1: db = Σ_t Σ_batch dz
    db[H + k] += dz_f;
    db[2 * H + k] += dz_g;
    db[3 * H + k] += dz_o;
  }
}

// F1-F6 over all steps; the cache is written when keep_cache.
template <typename T, bool kCache>
std::vector<at::Tensor> forward_impl(const at::Tensor& x_in, const at::Tensor& h0,
                                     const at::Tensor& c0, const at::Tensor& w_ih_in,
                                     const at::Tensor& w_hh_in,
                                     const c10::optional<at::Tensor>& bias_in,
                                     const c10::optional<at::Tensor>& w_hr_in,
                                     const c10::optional<at::Tensor>& batch_sizes, bool reverse) {
  const at::Tensor x = x_in.contiguous();
  const int64_t T_ = x.size(0), B = x.size(1), I = x.size(2);
  const int64_t H = c0.size(1), P = h0.size(1), G = 4 * H;
  const at::Tensor w_ih = checked(w_ih_in, x, "weight_ih");  // (G, I)
  const at::Tensor w_hh = checked(w_hh_in, x, "weight_hh");  // (G, P)
  const bool proj = w_hr_in.has_value();
  const at::Tensor w_hr = proj ? checked(*w_hr_in, x, "weight_hr") : at::Tensor();  // (P, H)
  const bool packed = batch_sizes.has_value();
  const std::vector<int64_t> rows = active_rows(batch_sizes, T_, B);
  const auto opts = x.options();

  // F1 is one product per step, [x_t, h_{t-1}] (B, I+P) times [W U]ᵀ (I+P, G): the weights side by
  // side, transposed once into column panels.
  const int64_t K = I + P;
  const at::Tensor wu_t = paneled_weights({w_ih, w_hh});  // (K, G) paneled
  const at::Tensor bias = bias_in.has_value() ? checked(*bias_in, x, "bias") : at::zeros({G}, opts);  // (G,)
  const at::Tensor w_hr_t = proj ? w_hr.t().contiguous() : at::Tensor();  // (H, P)

  // [x_t, h_{t-1}] of step s in xh[s % 2]; the step writes h_t and x of the next step into the other.
  at::Tensor xh = reusable({2, B, K}, opts);  // (2, B, I+P)
  at::Tensor c = checked(c0, x, "c0").clone();  // (B, H)
  at::Tensor output = buffer(packed, {T_, B, P}, opts);  // (T, B, P)
  at::Tensor gates, h_prev, c_prev, tanh_c;  // the cache, in bptt.forward's layout
  if (kCache) {
    gates = buffer(packed, {T_, B, G}, opts);
    h_prev = buffer(packed, {T_, B, P}, opts);
    c_prev = buffer(packed, {T_, B, H}, opts);
    tanh_c = buffer(packed, {T_, B, H}, opts);
  }
  at::Tensor z_buf = reusable({B, G}, opts);  // (B, G) this step's pre-activations
  at::Tensor r_buf = proj ? at::empty({B, H}, opts) : at::Tensor();  // (B, H) r_t before W_hr
  at::Tensor y_junk = proj ? at::empty({B, H}, opts) : at::Tensor();  // r_t is not an output then (a row each: groups write in parallel)

  T* xhs = xh.data_ptr<T>();
  T* zs = z_buf.data_ptr<T>();
  T* cs = c.data_ptr<T>();
  T* out = output.data_ptr<T>();
  T* rs = proj ? r_buf.data_ptr<T>() : nullptr;
  const T* xs = x.data_ptr<T>();
  const T* wu = wu_t.data_ptr<T>();
  const T* bs = bias.data_ptr<T>();
  const T* whr_t = proj ? w_hr_t.data_ptr<T>() : nullptr;
  T* gs = kCache ? gates.data_ptr<T>() : nullptr;
  T* hp = kCache ? h_prev.data_ptr<T>() : nullptr;
  T* cp = kCache ? c_prev.data_ptr<T>() : nullptr;
  T* tcs = kCache ? tanh_c.data_ptr<T>() : nullptr;
  // rows j0..j1-1 of x_t into the x part of xh[buf]
  auto load_x = [&](int64_t buf, int64_t t, int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j)
      std::memcpy(xhs + (buf * B + j) * K, xs + (t * B + j) * I, I * sizeof(T));
  };
  if (T_ > 0) load_x(0, step_at(0, T_, reverse), 0, B);
  {
    const at::Tensor h0c = checked(h0, x, "h0");
    const T* h0s = h0c.data_ptr<T>();
    for (int64_t j = 0; j < B; ++j) std::memcpy(xhs + j * K + I, h0s + j * P, P * sizeof(T));
  }

  // Step s for rows j0..j1-1 (those of them that run at time t: j0..n-1).
  auto step = [&](int64_t s, int64_t j0, int64_t j1) {
    const int64_t t = step_at(s, T_, reverse), n = std::max(j0, std::min(rows[t], j1));
    const T* xh_read = xhs + (s % 2) * B * K;  // [x_t, h_{t-1}] (B, K)
    T* xh_write = xhs + ((s + 1) % 2) * B * K;  // h_t goes to columns I.. of this one
    if (kCache)
      for (int64_t j = j0; j < n; ++j)  // h_{t-1}
        std::memcpy(hp + (t * B + j) * P, xh_read + j * K + I, P * sizeof(T));
    gemm_panels<T>(n - j0, G, K, xh_read + j0 * K, K, wu, zs + j0 * G, G);  // (n - j0, G) F1: z = W x_t + U h_{t-1}
    for (int64_t j = j0; j < n; ++j) {
      const int64_t row = t * B + j;
      T* y = proj ? y_junk.data_ptr<T>() + j * H : out + row * P;
      T* hr = proj ? rs + j * H : xh_write + j * K + I;
      cell_forward<T, kCache>(H, zs + j * G, bs, cs + j * H, hr, y,
                              kCache ? gs + row * G : nullptr, kCache ? cp + row * H : nullptr,
                              kCache ? tcs + row * H : nullptr);  // F2-F4 (F1's bias added there)
    }
    if (proj) {
      gemm<T>(false, false, n - j0, P, H, T(1), rs + j0 * H, H, whr_t, P, T(0), xh_write + j0 * K + I,
              K);  // (n - j0, P) F5: h_t = r_t W_hrᵀ
      for (int64_t j = j0; j < n; ++j)  // F6
        std::memcpy(out + (t * B + j) * P, xh_write + j * K + I, P * sizeof(T));
    }
    for (int64_t j = n; j < j1; ++j)  // rows that wait keep their h (packed batches)
      std::memcpy(xh_write + j * K + I, xh_read + j * K + I, P * sizeof(T));
    if (s + 1 < T_) load_x((s + 1) % 2, step_at(s + 1, T_, reverse), j0, j1);  // x of the next step
  };
  run_row_groups(B, choose_row_groups(B, G, K), T_,
                 [&](int64_t s, int64_t j0, int64_t j1, int64_t) { step(s, j0, j1); });
  const at::Tensor h = xh.select(0, T_ % 2).narrow(1, I, P).clone();  // (B, P) h of the last step
  if (!kCache) return {output, h, c};
  return {output, h, c, gates, h_prev, c_prev, tanh_c};  // cache: the layout of bptt.forward
}

// B6-B1, the batch rows split into groups as in the forward: a group runs all its steps back to front
// without waiting for the others (B1's dh = dz U needs only its own rows of dz), summing its own share
// of db on the way; the weight gradients are one GEMM each after the loop.
template <typename T>
std::vector<at::Tensor> backward_impl(const at::Tensor& d_output_in, const at::Tensor& d_hn,
                                      const at::Tensor& d_cn, const at::Tensor& x_in,
                                      const at::Tensor& w_ih_in, const at::Tensor& w_hh_in,
                                      const c10::optional<at::Tensor>& w_hr_in,
                                      const c10::optional<at::Tensor>& batch_sizes, bool reverse,
                                      const at::Tensor& gates_in, const at::Tensor& h_prev_in,
                                      const at::Tensor& c_prev_in, const at::Tensor& tanh_c_in,
                                      bool need_dx) {
  const at::Tensor x = x_in.contiguous();
  const int64_t T_ = x.size(0), B = x.size(1), I = x.size(2);
  const int64_t H = tanh_c_in.size(2), P = d_output_in.size(2), G = 4 * H;
  const at::Tensor d_output = checked(d_output_in, x, "d_output");  // (T, B, P)
  const at::Tensor w_ih = checked(w_ih_in, x, "weight_ih");  // (G, I)
  const at::Tensor w_hh = checked(w_hh_in, x, "weight_hh");  // (G, P)
  const bool proj = w_hr_in.has_value();
  const at::Tensor w_hr = proj ? checked(*w_hr_in, x, "weight_hr") : at::Tensor();  // (P, H)
  const at::Tensor gates = checked(gates_in, x, "gates");  // (T, B, G)
  const at::Tensor h_prev = checked(h_prev_in, x, "h_prev");  // (T, B, P)
  const at::Tensor c_prev = checked(c_prev_in, x, "c_prev");  // (T, B, H)
  const at::Tensor tanh_c = checked(tanh_c_in, x, "tanh_c");  // (T, B, H)
  const bool packed = batch_sizes.has_value();
  const std::vector<int64_t> rows = active_rows(batch_sizes, T_, B);
  const auto opts = x.options();
  const int64_t groups = choose_row_groups(B, G, P);

  at::Tensor dz = buffer(packed, {T_, B, G}, opts);  // (T, B, G) pre-activation gradients
  at::Tensor dh = checked(d_hn, x, "d_hn").clone();  // (B, P) gradient into h from later steps
  at::Tensor dc = checked(d_cn, x, "d_cn").clone();  // (B, H)
  at::Tensor db_parts = at::zeros({groups, G}, opts);  // (groups, G) each group's Σ dz
  at::Tensor d_h_all = proj ? buffer(packed, {T_, B, P}, opts) : at::Tensor();  // (T, B, P) dh_t
  at::Tensor dr_buf = proj ? at::empty({B, H}, opts) : at::Tensor();  // (B, H) dr_t

  T* dzs = dz.data_ptr<T>();
  T* dhs = dh.data_ptr<T>();
  T* dcs = dc.data_ptr<T>();
  T* dbs = db_parts.data_ptr<T>();
  T* dhall = proj ? d_h_all.data_ptr<T>() : nullptr;
  T* drs = proj ? dr_buf.data_ptr<T>() : nullptr;
  const T* dout = d_output.data_ptr<T>();
  const T* gs = gates.data_ptr<T>();
  const T* cps = c_prev.data_ptr<T>();
  const T* tcs = tanh_c.data_ptr<T>();
  const T* whh = w_hh.data_ptr<T>();
  const T* whr = proj ? w_hr.data_ptr<T>() : nullptr;

  // The s-th step visited (time T-1-s forwards; reversed directions the other way), rows j0..j1-1;
  // rows that do not run at t (j >= n) keep dh and dc.
  auto step = [&](int64_t s, int64_t j0, int64_t j1, T* db) {
    const int64_t t = step_at(T_ - 1 - s, T_, reverse), n = std::max(j0, std::min(rows[t], j1));
    const T* dr = dhs;  // without projection dr_t = dh_t, kept in dh's rows (B5)
    for (int64_t j = j0; j < n; ++j) {
      T* dh_t = proj ? dhall + (t * B + j) * P : dhs + j * P;
      for (int64_t k = 0; k < P; ++k) dh_t[k] = dhs[j * P + k] + dout[(t * B + j) * P + k];  // B6
    }
    if (proj) {
      gemm<T>(false, false, n - j0, H, P, T(1), dhall + (t * B + j0) * P, P, whr, H, T(0),
              drs + j0 * H, H);  // (n - j0, H) B5: dr = dh_t W_hr
      dr = drs;
    }
    for (int64_t j = j0; j < n; ++j) {
      const int64_t row = t * B + j;
      cell_backward(H, gs + row * G, cps + row * H, tcs + row * H, dr + j * H, dcs + j * H,
                    dzs + row * G, db);  // B4-B2
    }
    over_column_chunks(n - j0, P, G, [&](int64_t c0, int64_t c1) {
      gemm<T>(false, false, n - j0, c1 - c0, G, T(1), dzs + (t * B + j0) * G, G, whh + c0, P, T(0),
              dhs + j0 * P + c0, P);
    });  // (n - j0, P) B1: dh = dz U
  };
  run_row_groups(B, groups, T_, [&](int64_t s, int64_t j0, int64_t j1, int64_t g) {
    step(s, j0, j1, dbs + g * G);
  });

  // B1 over all steps at once.
  const int64_t TB = T_ * B;
  at::Tensor dx;  // undefined (None) when x needs no gradient
  if (need_dx) {
    dx = reusable({T_, B, I}, opts);
    gemm<T>(false, false, TB, I, G, T(1), dzs, G, w_ih.data_ptr<T>(), I, T(0), dx.data_ptr<T>(), I);  // dx = dz W
  }
  at::Tensor d_w_ih = at::empty({G, I}, opts);
  at::Tensor d_w_hh = at::empty({G, P}, opts);
  gemm_transposed_a<T>(G, TB, dzs, G,
                       {{I, x.data_ptr<T>(), d_w_ih.data_ptr<T>()},  // dW = Σ dzᵀ x
                        {P, h_prev.data_ptr<T>(), d_w_hh.data_ptr<T>()}});  // dU = Σ dzᵀ h_{t-1}
  std::vector<at::Tensor> grads{dx, dh, dc, d_w_ih, d_w_hh, db_parts.sum(0)};  // db = Σ_t Σ_batch dz
  if (proj) {
    at::Tensor r = at::empty({TB, H}, opts);  // (T*B, H) F4 again, zero where rows did not run
    T* rs = r.data_ptr<T>();
    for (int64_t row = 0; row < TB; ++row)
      for (int64_t k = 0; k < H; ++k) rs[row * H + k] = gs[row * G + 3 * H + k] * tcs[row * H + k];
    at::Tensor d_w_hr = at::empty({P, H}, opts);
    gemm_transposed_a<T>(P, TB, dhall, P, {{H, rs, d_w_hr.data_ptr<T>()}});  // B5: dW_hr = Σ dh_tᵀ r_t
    grads.push_back(d_w_hr);
  }
  return grads;
}

void check_input(const at::Tensor& x, const at::Tensor& h0, const at::Tensor& c0) {
  TORCH_CHECK(x.device().is_cpu(), "the compiled kernels run on CPU tensors, got ", x.device());
  TORCH_CHECK(x.dim() == 3, "x: expected (T, B, I), got ", x.dim(), " dimensions");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "x: expected float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(h0.dim() == 2 && h0.size(0) == x.size(1), "h0: expected (B, P) with B = ", x.size(1),
              ", got ", h0.sizes());
  TORCH_CHECK(c0.dim() == 2 && c0.size(0) == x.size(1), "c0: expected (B, H) with B = ", x.size(1),
              ", got ", c0.sizes());
}

}  // namespace

Forward forward(const at::Tensor& x, const at::Tensor& h0, const at::Tensor& c0,
                                const at::Tensor& weight_ih, const at::Tensor& weight_hh,
                                const c10::optional<at::Tensor>& bias,
                                const c10::optional<at::Tensor>& weight_hr,
                                const c10::optional<at::Tensor>& batch_sizes, bool reverse) {
  check_input(x, h0, c0);
  const std::vector<at::Tensor> r =
      AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstmbyhand.forward", [&] {
        return forward_impl<scalar_t, true>(x, h0, c0, weight_ih, weight_hh, bias, weight_hr,
                                            batch_sizes, reverse);
      });
  return {r[0], r[1], r[2], r[3], r[4], r[5], r[6]};
}

ForwardInference forward_inference(const at::Tensor& x, const at::Tensor& h0,
                                          const at::Tensor& c0, const at::Tensor& weight_ih,
                                          const at::Tensor& weight_hh,
                                          const c10::optional<at::Tensor>& bias,
                                          const c10::optional<at::Tensor>& weight_hr,
                                          const c10::optional<at::Tensor>& batch_sizes,
                                          bool reverse) {
  check_input(x, h0, c0);
  const std::vector<at::Tensor> r =
      AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstmbyhand.forward_inference", [&] {
        return forward_impl<scalar_t, false>(x, h0, c0, weight_ih, weight_hh, bias, weight_hr,
                                             batch_sizes, reverse);
      });
  return {r[0], r[1], r[2]};
}

Backward backward(const at::Tensor& d_output, const at::Tensor& d_hn,
                                 const at::Tensor& d_cn, const at::Tensor& x,
                                 const at::Tensor& weight_ih, const at::Tensor& weight_hh,
                                 const c10::optional<at::Tensor>& weight_hr,
                                 const c10::optional<at::Tensor>& batch_sizes, bool reverse,
                                 const at::Tensor& gates, const at::Tensor& h_prev,
                                 const at::Tensor& c_prev, const at::Tensor& tanh_c, bool need_dx) {
  TORCH_CHECK(x.device().is_cpu(), "the compiled kernels run on CPU tensors, got ", x.device());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "x: expected float32 or float64, got ", x.scalar_type());
  const std::vector<at::Tensor> r =
      AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstmbyhand.backward", [&] {
        return backward_impl<scalar_t>(d_output, d_hn, d_cn, x, weight_ih, weight_hh, weight_hr,
                                       batch_sizes, reverse, gates, h_prev, c_prev, tanh_c, need_dx);
      });
  c10::optional<at::Tensor> d_weight_hr;  // None without projection
  if (r.size() == 7) d_weight_hr = r[6];
  c10::optional<at::Tensor> dx;  // None when not needed
  if (r[0].defined()) dx = r[0];
  return {dx, r[1], r[2], r[3], r[4], r[5], d_weight_hr};
}

}  // namespace lstmbyhand
