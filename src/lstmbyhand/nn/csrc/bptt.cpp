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
// Arguments and results: kernels.h. The pointwise step (F2-F4, B4-B2): cell.h. GEMMs: blas.h.
#include "blas.h"
#include "cell.h"
#include "kernels.h"
#include "sequence.h"
#include "workspace.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace lstmbyhand {

namespace {

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
