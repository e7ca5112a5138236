// The compiled twin of bptt.py's forward, forward_inference and backward: same arguments, same results,
// same cache layout, same equation labels (F1-F6, B1-B6; the equations are in bptt.py's docstring).
//
// Layout: time-major x (T, B, I), states (B, P) and (B, H), stacked gates i, f, g, o along 4H = G.
// The input product of all steps is one GEMM before the loop (F1), the weight gradients one GEMM each
// after it (B1); only U h_{t-1} (F1), W_hr r_t (F5), dh_t W_hr (B5) and dz U (B1) run step by step, each
// one BLAS call, and the gate arithmetic of a step is one fused loop over (rows, H).
// Packed batches: at step t only the first n = batch_sizes[t] rows run; the others keep their state and
// its gradient, and their cache entries, outputs and dz rows stay zero, as in the PyTorch ops.
#include "common.h"

#include <ATen/native/CPUBlas.h>
#include <dlfcn.h>
#include <omp.h>

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

at::Tensor checked(const at::Tensor& t, const at::Tensor& like, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, ": expected a CPU tensor, got ", t.device());
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), name, ": expected dtype ", like.scalar_type(),
              ", got ", t.scalar_type());
  return t.contiguous();
}

at::Tensor buffer(bool packed, at::IntArrayRef shape, const at::TensorOptions& opts) {
  return packed ? at::zeros(shape, opts) : at::empty(shape, opts);
}

// F2-F4 for `len` hidden units of one row: the pre-activations z[k], z[H + k], z[2H + k], z[3H + k]
// (i, f, g, o) in, activated gates out in place; c updated; tanh(c_t) and r_t written.
template <typename T>
inline void cell_forward(int64_t len, int64_t H, T* __restrict__ z, T* __restrict__ c,
                         T* __restrict__ tc, T* __restrict__ r) {
  for (int64_t k = 0; k < len; ++k) {
    const T i = sigmoid(z[k]);  // F2
    const T f = sigmoid(z[H + k]);  // F2
    const T g = tanh_act(z[2 * H + k]);  // F2
    const T o = sigmoid(z[3 * H + k]);  // F2
    const T c_t = f * c[k] + i * g;  // F3
    const T tanh_c = tanh_act(c_t);
    z[k] = i;
    z[H + k] = f;
    z[2 * H + k] = g;
    z[3 * H + k] = o;
    c[k] = c_t;
    tc[k] = tanh_c;
    r[k] = o * tanh_c;  // F4
  }
}

// B4-B2 for one row: from the activated gates a (4H), c_{t-1}, tanh(c_t) and dr (H), the
// pre-activation gradients dz (4H); dc (H) goes from dc_{t+1} to dc_t ⊙ f.
template <typename T>
inline void cell_backward(int64_t H, const T* __restrict__ a, const T* __restrict__ c_prev,
                          const T* __restrict__ tc, const T* __restrict__ dr, T* __restrict__ dc,
                          T* __restrict__ dz) {
  for (int64_t k = 0; k < H; ++k) {
    const T i = a[k], f = a[H + k], g = a[2 * H + k], o = a[3 * H + k];
    const T d_o = dr[k] * tc[k];  // B4
    const T dc_t = dc[k] + dr[k] * o * (T(1) - tc[k] * tc[k]);  // B4
    dz[k] = dc_t * g * i * (T(1) - i);  // B3, B2: input gate
    dz[H + k] = dc_t * c_prev[k] * f * (T(1) - f);  // B3, B2: forget gate
    dz[2 * H + k] = dc_t * i * (T(1) - g * g);  // B3, B2: candidate
    dz[3 * H + k] = d_o * o * (T(1) - o);  // B2: output gate
    dc[k] = dc_t * f;  // B3
  }
}

// F1-F6 over all steps; the cache is written when keep_cache.
template <typename T>
std::vector<at::Tensor> forward_impl(const at::Tensor& x_in, const at::Tensor& h0,
                                     const at::Tensor& c0, const at::Tensor& w_ih_in,
                                     const at::Tensor& w_hh_in,
                                     const c10::optional<at::Tensor>& bias_in,
                                     const c10::optional<at::Tensor>& w_hr_in,
                                     const c10::optional<at::Tensor>& batch_sizes, bool reverse,
                                     bool keep_cache) {
  const at::Tensor x = x_in.contiguous();
  const int64_t T_ = x.size(0), B = x.size(1), I = x.size(2);
  const int64_t H = c0.size(1), P = h0.size(1), G = 4 * H;
  const at::Tensor w_ih = checked(w_ih_in, x, "weight_ih");  // (G, I)
  const at::Tensor w_hh = checked(w_hh_in, x, "weight_hh");  // (G, P)
  const bool has_bias = bias_in.has_value(), proj = w_hr_in.has_value();
  const at::Tensor bias = has_bias ? checked(*bias_in, x, "bias") : at::Tensor();  // (G,)
  const at::Tensor w_hr = proj ? checked(*w_hr_in, x, "weight_hr") : at::Tensor();  // (P, H)
  const bool packed = batch_sizes.has_value();
  const std::vector<int64_t> rows = active_rows(batch_sizes, T_, B);
  const auto opts = x.options();

  at::Tensor h = checked(h0, x, "h0").clone();  // (B, P) running state
  at::Tensor c = checked(c0, x, "c0").clone();  // (B, H)
  // Training keeps every step's gates (the cache); inference only needs a block of steps at a time,
  // small enough to stay in cache (~1 MB), its input products computed one block ahead.
  const int64_t block = keep_cache ? T_ : std::clamp<int64_t>((int64_t{1} << 18) / std::max<int64_t>(1, B * G), 1, std::max<int64_t>(1, T_));
  at::Tensor gates = at::empty({block, B, G}, opts);  // (T or block, B, G) z, then i, f, g, o
  at::Tensor output = buffer(packed, {T_, B, P}, opts);
  at::Tensor h_prev, c_prev, tanh_c;
  if (keep_cache) {
    h_prev = buffer(packed, {T_, B, P}, opts);
    c_prev = buffer(packed, {T_, B, H}, opts);
    tanh_c = buffer(packed, {T_, B, H}, opts);
  }
  at::Tensor r_buf = proj ? at::empty({B, H}, opts) : at::Tensor();  // (B, H) r_t before W_hr
  at::Tensor tc_scratch = keep_cache ? at::Tensor() : at::empty({B, H}, opts);  // tanh(c_t) unkept

  T* zs = gates.data_ptr<T>();
  at::Tensor h_next = at::empty({B, P}, opts);  // h_t is written here while h_{t-1} is read
  T* hs = h.data_ptr<T>();
  T* hn = h_next.data_ptr<T>();
  T* cs = c.data_ptr<T>();
  T* out = output.data_ptr<T>();
  T* rs = proj ? r_buf.data_ptr<T>() : nullptr;
  T* hp = keep_cache ? h_prev.data_ptr<T>() : nullptr;
  T* cp = keep_cache ? c_prev.data_ptr<T>() : nullptr;
  T* tcs = keep_cache ? tanh_c.data_ptr<T>() : nullptr;
  // Weights transposed once, so that every product is row-major A (m, k) B (k, n).
  const at::Tensor w_ih_t = w_ih.t().contiguous();  // (I, G)
  const at::Tensor w_hh_t = w_hh.t().contiguous();  // (P, G)
  const at::Tensor w_hr_t = proj ? w_hr.t().contiguous() : at::Tensor();  // (H, P)
  const T* wih_t = w_ih_t.data_ptr<T>();
  const T* whh_t = w_hh_t.data_ptr<T>();
  const T* whr_t = proj ? w_hr_t.data_ptr<T>() : nullptr;

  // Threads split the hidden units: each owns units k0..k1-1, i.e. those columns of each gate block of
  // z, c and h, for all steps, in one parallel region with one barrier per step (h_t is read whole by
  // the next step's product). Small steps, and projections, run on one thread; large ones too, where
  // each product is big enough to be split by `gemm` itself (measured faster there).
  const int64_t threads = at::get_num_threads(), step_flops = 2 * B * G * P;
  const bool split = !proj && threads > 1 && H >= 32 && step_flops >= (int64_t{1} << 20) &&
                     step_flops < (int64_t{1} << 24) && !at::in_parallel_region();
  if constexpr (std::is_same_v<T, float>) brgemm_works();  // settle the choice before the threads
  // One thread's share of the whole loop over time; `parts` threads run it side by side.
  auto run_units = [&](int64_t parts, int64_t me) {
    const int64_t unit_block = parts == 1 ? H : ((H + parts - 1) / parts + 15) / 16 * 16;
    const int64_t k0 = std::min(H, me * unit_block), k1 = std::min(H, k0 + unit_block);
    const int64_t w = k1 - k0;
    T* h_read = hs;  // h_{t-1} (B, P), read whole
    T* h_write = hn;  // h_t, written in columns k0..k1-1
    // C[:, gate columns of k0..k1-1] (+)= A (m, kk) @ Wt[:, same columns], Wt (kk, G).
    auto gate_gemm = [&](int64_t m, int64_t kk, const T* A, int64_t lda, const T* Wt, T beta, T* C) {
      if (w == H) {
        gemm<T>(false, false, m, G, kk, T(1), A, lda, Wt, G, beta, C, G);
      } else if (w > 0) {
        for (int64_t q = 0; q < 4; ++q)
          gemm<T>(false, false, m, w, kk, T(1), A, lda, Wt + q * H + k0, G, beta, C + q * H + k0, G);
      }
    };
    for (int64_t s0 = 0; s0 < T_; s0 += block) {
      const int64_t len = std::min(block, T_ - s0);
      const int64_t t_lo = reverse ? T_ - s0 - len : s0;  // the block's steps are times t_lo..t_lo+len-1
      // F1, input part for the block's steps at once: z = x Wᵀ + b, (len*B, I) @ (I, G).
      if (has_bias) {
        const T* b = bias.data_ptr<T>();
        for (int64_t row = 0; row < len * B; ++row)
          for (int64_t q = 0; q < 4; ++q)
            std::memcpy(zs + row * G + q * H + k0, b + q * H + k0, w * sizeof(T));
      }
      gate_gemm(len * B, I, x.data_ptr<T>() + t_lo * B * I, I, wih_t, has_bias ? T(1) : T(0), zs);
      for (int64_t s = s0; s < s0 + len; ++s) {
        const int64_t t = step_at(s, T_, reverse), n = rows[t];
        T* z = zs + (t - t_lo) * B * G;  // (B, G) this step's gates
        T* tc_t = keep_cache ? tcs + t * B * H : tc_scratch.data_ptr<T>();
        T* r = proj ? rs : h_write;  // (n, H) r_t; without projection it is h_t (F5)
        if (keep_cache) {
          if (me == 0) std::memcpy(hp + t * B * P, h_read, n * P * sizeof(T));  // h_{t-1}
          for (int64_t j = 0; j < n; ++j)  // c_{t-1}, own columns
            std::memcpy(cp + (t * B + j) * H + k0, cs + j * H + k0, w * sizeof(T));
        }
        gate_gemm(n, P, h_read, P, whh_t, T(1), z);  // (n, G) F1: z += h_{t-1} Uᵀ
        for (int64_t j = 0; j < n; ++j)
          cell_forward(w, H, z + j * G + k0, cs + j * H + k0, tc_t + j * H + k0,
                       r + j * H + k0);  // F2-F4
        if (proj) gemm<T>(false, false, n, P, H, T(1), rs, H, whr_t, P, T(0), h_write, P);  // (n, P) F5: h_t = r_t W_hrᵀ
        if (me == 0 && n < B)  // rows that wait keep their h
          std::memcpy(h_write + n * P, h_read + n * P, (B - n) * P * sizeof(T));
        const int64_t p0 = proj ? 0 : k0, pw = proj ? P : w;  // own columns of h_t
        for (int64_t j = 0; j < n; ++j)
          std::memcpy(out + (t * B + j) * P + p0, h_write + j * P + p0, pw * sizeof(T));  // F6
        for (int64_t j = n; j < B; ++j)  // rows that did not run: zero gates, own columns
          for (int64_t q = 0; q < 4; ++q) std::memset(z + j * G + q * H + k0, 0, w * sizeof(T));
        std::swap(h_read, h_write);
        if (parts > 1) {
#pragma omp barrier
        }
      }
    }
  };
  if (split) {
#pragma omp parallel num_threads(threads)
    run_units(omp_get_num_threads(), omp_get_thread_num());
  } else {
    run_units(1, 0);
  }
  if (T_ % 2 == 1) std::swap(h, h_next);  // the state ends in the buffer the last step wrote
  if (!keep_cache) return {output, h, c};
  return {output, h, c, gates, h_prev, c_prev, tanh_c};  // cache: the layout of bptt.forward
}

template <typename T>
std::vector<at::Tensor> backward_impl(const at::Tensor& d_output_in, const at::Tensor& d_hn,
                                      const at::Tensor& d_cn, const at::Tensor& x_in,
                                      const at::Tensor& w_ih_in, const at::Tensor& w_hh_in,
                                      const c10::optional<at::Tensor>& w_hr_in,
                                      const c10::optional<at::Tensor>& batch_sizes, bool reverse,
                                      const at::Tensor& gates_in, const at::Tensor& h_prev_in,
                                      const at::Tensor& c_prev_in, const at::Tensor& tanh_c_in) {
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

  at::Tensor dz = buffer(packed, {T_, B, G}, opts);  // (T, B, G) pre-activation gradients
  at::Tensor dh = checked(d_hn, x, "d_hn").clone();  // (B, P) gradient into h from later steps
  at::Tensor dc = checked(d_cn, x, "d_cn").clone();  // (B, H)
  at::Tensor d_h_all = proj ? buffer(packed, {T_, B, P}, opts) : at::Tensor();  // (T, B, P) dh_t
  at::Tensor dh_buf = at::empty({B, P}, opts);  // (B, P) dh_t of this step
  at::Tensor dr_buf = proj ? at::empty({B, H}, opts) : at::Tensor();  // (B, H)

  T* dzs = dz.data_ptr<T>();
  T* dhs = dh.data_ptr<T>();
  T* dcs = dc.data_ptr<T>();
  const T* dout = d_output.data_ptr<T>();
  const T* gs = gates.data_ptr<T>();
  const T* cps = c_prev.data_ptr<T>();
  const T* tcs = tanh_c.data_ptr<T>();
  const T* whh = w_hh.data_ptr<T>();
  const T* whr = proj ? w_hr.data_ptr<T>() : nullptr;

  for (int64_t s = T_ - 1; s >= 0; --s) {
    const int64_t t = step_at(s, T_, reverse), n = rows[t];
    T* dh_t = proj ? d_h_all.data_ptr<T>() + t * B * P : dh_buf.data_ptr<T>();  // (n, P)
    const T* dout_t = dout + t * B * P;
    for (int64_t e = 0; e < n * P; ++e) dh_t[e] = dhs[e] + dout_t[e];  // B6
    const T* dr = dh_t;  // B5 without projection
    if (proj) {
      gemm<T>(false, false, n, H, P, T(1), dh_t, P, whr, H, T(0), dr_buf.data_ptr<T>(), H);  // (n, H) B5: dr = dh_t W_hr
      dr = dr_buf.data_ptr<T>();
    }
    const T* g_t = gs + t * B * G;
    const T* cp_t = cps + t * B * H;
    const T* tc_t = tcs + t * B * H;
    T* dz_t = dzs + t * B * G;
    for_rows(n, G, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j)
        cell_backward(H, g_t + j * G, cp_t + j * H, tc_t + j * H, dr + j * H, dcs + j * H, dz_t + j * G);
    });
    gemm<T>(false, false, n, P, G, T(1), dz_t, G, whh, P, T(0), dhs, P);  // (n, P) B1: dh = dz U
  }

  // B1 over all steps at once.
  const int64_t TB = T_ * B;
  at::Tensor dx = at::empty({T_, B, I}, opts);
  at::Tensor d_w_ih = at::empty({G, I}, opts);
  at::Tensor d_w_hh = at::empty({G, P}, opts);
  gemm<T>(false, false, TB, I, G, T(1), dzs, G, w_ih.data_ptr<T>(), I, T(0), dx.data_ptr<T>(), I);  // dx = dz W
  gemm<T>(true, false, G, I, TB, T(1), dzs, G, x.data_ptr<T>(), I, T(0), d_w_ih.data_ptr<T>(), I);  // dW = Σ dzᵀ x
  gemm<T>(true, false, G, P, TB, T(1), dzs, G, h_prev.data_ptr<T>(), P, T(0), d_w_hh.data_ptr<T>(), P);  // dU = Σ dzᵀ h_{t-1}
  at::Tensor d_bias = at::zeros({G}, opts);  // db = Σ_t Σ_batch dz
  T* db = d_bias.data_ptr<T>();
  for (int64_t row = 0; row < TB; ++row) {
    const T* dz_row = dzs + row * G;
    for (int64_t k = 0; k < G; ++k) db[k] += dz_row[k];
  }
  std::vector<at::Tensor> grads{dx, dh, dc, d_w_ih, d_w_hh, d_bias};
  if (proj) {
    at::Tensor r = at::empty({TB, H}, opts);  // (T*B, H) F4 again, zero where rows did not run
    T* rs = r.data_ptr<T>();
    for (int64_t row = 0; row < TB; ++row)
      for (int64_t k = 0; k < H; ++k) rs[row * H + k] = gs[row * G + 3 * H + k] * tcs[row * H + k];
    at::Tensor d_w_hr = at::empty({P, H}, opts);
    gemm<T>(true, false, P, H, TB, T(1), d_h_all.data_ptr<T>(), P, rs, H, T(0), d_w_hr.data_ptr<T>(), H);  // B5: dW_hr = Σ dh_tᵀ r_t
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
        return forward_impl<scalar_t>(x, h0, c0, weight_ih, weight_hh, bias, weight_hr,
                                      batch_sizes, reverse, true);
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
        return forward_impl<scalar_t>(x, h0, c0, weight_ih, weight_hh, bias, weight_hr,
                                      batch_sizes, reverse, false);
      });
  return {r[0], r[1], r[2]};
}

Backward backward(const at::Tensor& d_output, const at::Tensor& d_hn,
                                 const at::Tensor& d_cn, const at::Tensor& x,
                                 const at::Tensor& weight_ih, const at::Tensor& weight_hh,
                                 const c10::optional<at::Tensor>& weight_hr,
                                 const c10::optional<at::Tensor>& batch_sizes, bool reverse,
                                 const at::Tensor& gates, const at::Tensor& h_prev,
                                 const at::Tensor& c_prev, const at::Tensor& tanh_c) {
  TORCH_CHECK(x.device().is_cpu(), "the compiled kernels run on CPU tensors, got ", x.device());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "x: expected float32 or float64, got ", x.scalar_type());
  const std::vector<at::Tensor> r =
      AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstmbyhand.backward", [&] {
        return backward_impl<scalar_t>(d_output, d_hn, d_cn, x, weight_ih, weight_hh, weight_hr,
                                       batch_sizes, reverse, gates, h_prev, c_prev, tanh_c);
      });
  c10::optional<at::Tensor> d_weight_hr;  // None without projection
  if (r.size() == 7) d_weight_hr = r[6];
  return {r[0], r[1], r[2], r[3], r[4], r[5], d_weight_hr};
}

}  // namespace lstmbyhand
