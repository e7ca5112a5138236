// The compiled twin of variant_bptt.py's forward and backward: a variant cell (variants.py: its
// equations, F1-F6 and B6-B1) over one layer direction. Same arguments, results and cache as the
// PyTorch ops (kernels.h). The pointwise rows are cell.h's variant_cell_forward / _backward.
//
// F1 is, without layer norm, one product per step as in the plain kernels: [x_t, h_in] (B, I+P) times
// [W U]ᵀ, the weights side by side in column panels (blas.h), the pre-activations hot in cache for the
// rows that follow. With layer norm, which normalizes W x_t and U h_{t-1} apart, it runs as two: W x_t
// for all steps in one GEMM before the loop (normalized there, row by row), U h_in per step.
// The batch rows are split into groups, one per thread, as in bptt.cpp (sequence.h).
#include "blas.h"
#include "cell.h"
#include "kernels.h"
#include "sequence.h"
#include "workspace.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/zeros.h>

#include <cstring>
#include <vector>

namespace lstmbyhand {

namespace {

constexpr int64_t kNoDx = int64_t{1} << 16;  // variant_bptt.NO_DX: the backward skips dx

// An optional argument as a contiguous tensor of x's dtype, or `fallback` (a neutral buffer).
at::Tensor or_neutral(const c10::optional<at::Tensor>& t, const at::Tensor& x, const char* name,
                      const at::Tensor& fallback) {
  return t.has_value() ? checked(*t, x, name) : fallback;
}

// The column ranges [r0, r1) of the 4H gate pre-activations a variant uses, merged: all of them but
// the blocks of removed gates (input, forget, output; the forget gate when coupled), whose
// pre-activations F2-F4 never read and whose dz is zero, so that their products are skipped. With
// layer norm every column is kept (LN mixes the row).
std::vector<std::pair<int64_t, int64_t>> used_gate_columns(const VariantFlags& v, int64_t H) {
  const bool removed[4] = {v.no_i, v.no_f || v.coupled, false, v.no_o};
  std::vector<std::pair<int64_t, int64_t>> ranges;
  for (int64_t q = 0; q < 4; ++q) {
    if (removed[q] && !v.layer_norm) continue;
    if (!ranges.empty() && ranges.back().second == q * H)
      ranges.back().second = (q + 1) * H;
    else
      ranges.emplace_back(q * H, (q + 1) * H);
  }
  return ranges;
}

// C (m, n) = A (m, G) B (G, n) (+ C when add) over the used gate columns of A (the rows of B) only: the
// other columns of A are zero (dz of a removed gate).
template <typename T>
void gemm_used_k(const std::vector<std::pair<int64_t, int64_t>>& used, int64_t m, int64_t n,
                 const T* A, int64_t lda, const T* Bm, int64_t ldb, bool add, T* C, int64_t ldc) {
  bool first = true;
  for (const auto& [r0, r1] : used) {
    gemm<T>(false, false, m, n, r1 - r0, T(1), A + r0, lda, Bm + r0 * ldb, ldb,
            add || !first ? T(1) : T(0), C, ldc);
    first = false;
  }
}

// One layer direction's arguments as both kernels read them (sizes, flags, the weights and masks
// checked, absent options as neutral buffers), and the two kernels, F1-F6 and B6-B1, over them.
template <typename T>
struct VariantDirection {
  const at::Tensor x;  // (T, B, I)
  const int64_t T_, B, I, H, P, G, TB;
  VariantFlags v;
  const bool ln, proj, packed, masked, peephole_given;
  const at::TensorOptions opts;
  const std::vector<int64_t> rows;  // the running rows at each step
  // the columns of the gate pre-activations that are used (the products skip the others)
  const std::vector<std::pair<int64_t, int64_t>> used;
  const at::Tensor w_ih, w_hh, w_hr;  // (G, I), (G, P), (P, H) or undefined
  const at::Tensor zeros_g, ones_g;  // (G,) neutral buffers for absent options
  const at::Tensor peep, g_x, g_h, g_c;  // (3H,) used, (G,), (G,), (H,) used
  const at::Tensor m, zc, zh;  // (B, P) or undefined, (T, B, H) or zeros_g, (T, B, P) or undefined

  VariantDirection(const at::Tensor& x_in, int64_t H_, int64_t P_, int64_t flags,
                   const at::Tensor& w_ih_in, const at::Tensor& w_hh_in,
                   const c10::optional<at::Tensor>& w_hr_in, const c10::optional<at::Tensor>& peephole,
                   const c10::optional<at::Tensor>& ln_ih, const c10::optional<at::Tensor>& ln_hh,
                   const c10::optional<at::Tensor>& ln_c_w, const c10::optional<at::Tensor>& rec_mask,
                   const c10::optional<at::Tensor>& zone_c, const c10::optional<at::Tensor>& zone_h,
                   const c10::optional<at::Tensor>& batch_sizes)
      : x(x_in.contiguous()), T_(x.size(0)), B(x.size(1)), I(x.size(2)), H(H_), P(P_), G(4 * H_),
        TB(T_ * B), v(zoned(flags, zone_c, zone_h)), ln(v.layer_norm), proj(w_hr_in.has_value()),
        packed(batch_sizes.has_value()), masked(rec_mask.has_value()),
        peephole_given(peephole.has_value()), opts(x.options()),
        rows(active_rows(batch_sizes, T_, B)), used(used_gate_columns(v, H)),
        w_ih(checked(w_ih_in, x, "weight_ih")), w_hh(checked(w_hh_in, x, "weight_hh")),
        w_hr(proj ? checked(*w_hr_in, x, "weight_hr") : at::Tensor()),
        zeros_g(at::zeros({G}, opts)), ones_g(at::ones({G}, opts)),
        peep(or_neutral(peephole, x, "weight_peephole", zeros_g)),
        g_x(or_neutral(ln_ih, x, "ln_weight_ih", ones_g)),
        g_h(or_neutral(ln_hh, x, "ln_weight_hh", ones_g)),
        g_c(or_neutral(ln_c_w, x, "ln_weight_c", ones_g)),
        m(masked ? checked(*rec_mask, x, "recurrent_mask") : at::Tensor()),
        zc(v.zoned_c ? checked(*zone_c, x, "zone_c") : zeros_g),
        zh(v.zoned_h ? checked(*zone_h, x, "zone_h") : at::Tensor()) {}

  static VariantFlags zoned(int64_t flags, const c10::optional<at::Tensor>& zone_c,
                            const c10::optional<at::Tensor>& zone_h) {
    VariantFlags f(flags);
    f.zoned_c = zone_c.has_value();
    f.zoned_h = zone_h.has_value();
    return f;
  }

  std::vector<at::Tensor> forward(const at::Tensor& h0, const at::Tensor& c0,
                                  const c10::optional<at::Tensor>& bias_in,
                                  const c10::optional<at::Tensor>& ln_c_b, bool reverse) const;
  std::vector<at::Tensor> backward(const at::Tensor& d_output_in, const at::Tensor& d_hn,
                                   const at::Tensor& d_cn, bool reverse, int64_t flags,
                                   const std::vector<at::Tensor>& cache) const;
};

template <typename T>
std::vector<at::Tensor> VariantDirection<T>::forward(const at::Tensor& h0, const at::Tensor& c0,
                                                     const c10::optional<at::Tensor>& bias_in,
                                                     const c10::optional<at::Tensor>& ln_c_b,
                                                     bool reverse) const {
  const at::Tensor bias = or_neutral(bias_in, x, "bias", zeros_g);  // (G,)
  const at::Tensor b_c = or_neutral(ln_c_b, x, "ln_bias_c", zeros_g);  // (H,) used

  // the cache, in variant_bptt.CACHE's order (LN entries empty without layer norm)
  at::Tensor gates = buffer(packed, {T_, B, G}, opts), h_in = buffer(packed, {T_, B, P}, opts);
  at::Tensor c_prev = buffer(packed, {T_, B, H}, opts), c_t = buffer(packed, {T_, B, H}, opts);
  at::Tensor act = buffer(packed, {T_, B, H}, opts);
  const auto ln_or_empty = [&](at::IntArrayRef shape) {
    return ln ? buffer(packed, shape, opts) : at::empty({0}, opts);
  };
  at::Tensor xhat_x = ln_or_empty({T_, B, G}), rstd_x = ln_or_empty({T_, B, 1});
  at::Tensor xhat_h = ln_or_empty({T_, B, G}), rstd_h = ln_or_empty({T_, B, 1});
  at::Tensor chat = ln_or_empty({T_, B, H}), rstd_c = ln_or_empty({T_, B, 1});
  at::Tensor output = buffer(packed, {T_, B, P}, opts);
  at::Tensor h = checked(h0, x, "h0").clone(), c = checked(c0, x, "c0").clone();  // (B, P), (B, H)

  // With layer norm, F1's input part, every step at once: a_x = W x_t (T B, G), into xhat_x's buffer,
  // normalized there, row by row, LN(a_x); γ_x multiplies it in the step. W is laid out in column
  // panels (cached across calls, as [W U]), so that in float the product runs on brgemm (blas.h).
  T* axs = ln ? xhat_x.data_ptr<T>() : nullptr;
  if (ln) {
    const at::Tensor w_t = paneled_weights({w_ih});  // (I, G) in column panels
    gemm_panels<T>(TB, G, I, x.data_ptr<T>(), I, w_t.data_ptr<T>(), axs, G);
    T* rs = rstd_x.data_ptr<T>();
    at::parallel_for(0, TB, 16, [&](int64_t r0, int64_t r1) {
      for (int64_t row = r0; row < r1; ++row) {
        T* a = axs + row * G;
        if (packed && row % B >= rows[row / B]) {  // the row does not run at that step: its cache
          std::memset(a, 0, G * sizeof(T));  // entry stays zero
          continue;
        }
        rs[row] = layer_norm_row(G, a, a);  // F1: LN(a_x), in place
      }
    });
  }

  // the products of removed gates are skipped (whole column panels of them): their z stays zero
  const auto is_used = [&](int64_t c0, int64_t c1) {  // whether columns [c0, c1) meet a used range
    for (const auto& [r0, r1] : used)
      if (c0 < r1 && r0 < c1) return true;
    return false;
  };
  const bool skipping = used.size() != 1 || used[0].second - used[0].first != G;
  at::Tensor z_buf = reusable({B, G}, opts, skipping);  // (B, G) a_h, then z
  at::Tensor r_buf = at::empty({B, H}, opts);  // (B, H) r_t
  at::Tensor hhat_buf = proj ? at::empty({B, P}, opts) : at::Tensor();  // (B, P) W_hr r_t
  at::Tensor chat_junk = ln ? at::Tensor() : at::empty({B, H}, opts);  // LN(c_t) unused
  at::Tensor rstd_junk = at::empty({B}, opts);
  T *zs = z_buf.data_ptr<T>(), *rb = r_buf.data_ptr<T>(), *hs = h.data_ptr<T>(), *cs = c.data_ptr<T>();
  T* hh = proj ? hhat_buf.data_ptr<T>() : nullptr;
  T *gs = gates.data_ptr<T>(), *hin = h_in.data_ptr<T>(), *cps = c_prev.data_ptr<T>();
  T *cts = c_t.data_ptr<T>(), *acts = act.data_ptr<T>(), *out = output.data_ptr<T>();
  T* chats = ln ? chat.data_ptr<T>() : chat_junk.data_ptr<T>();
  T* rcs = ln ? rstd_c.data_ptr<T>() : rstd_junk.data_ptr<T>();
  T* xhh = ln ? xhat_h.data_ptr<T>() : nullptr;
  T* rsh = ln ? rstd_h.data_ptr<T>() : nullptr;
  // the per-step product's left side, (B, K): [x_t, h_in] without layer norm, h_in (the cache row) with
  const int64_t K = ln ? P : I + P;
  at::Tensor xh = ln ? at::Tensor() : reusable({B, K}, opts);
  T* xhs = ln ? nullptr : xh.data_ptr<T>();
  const T* xs = x.data_ptr<T>();
  const at::Tensor u_t = ln ? paneled_weights({w_hh}) : paneled_weights({w_ih, w_hh});  // (K, G) panels
  const T *uh = u_t.data_ptr<T>(), *whr = proj ? w_hr.data_ptr<T>() : nullptr;
  const T *bs = bias.data_ptr<T>(), *ps = peep.data_ptr<T>(), *gh = g_h.data_ptr<T>();
  const T* gx = g_x.data_ptr<T>();
  const T *gc = g_c.data_ptr<T>(), *bc = b_c.data_ptr<T>(), *zcs = zc.data_ptr<T>();
  const T* ms = masked ? m.data_ptr<T>() : nullptr;
  const T* zhs = v.zoned_h ? zh.data_ptr<T>() : nullptr;

  const bool direct = !proj && !v.zoned_h;  // r_t is h_t: the cell writes it into the output row
  auto step = [&](int64_t s, int64_t j0, int64_t j1) {
    const int64_t t = step_at(s, T_, reverse), n = std::max(j0, std::min(rows[t], j1));
    if (n == j0) return;
    // (the options' branches sit outside the loops over k, which GCC then vectorizes)
    for (int64_t j = j0; j < n; ++j) {  // F1: h_in = m ⊙ h_{t-1}
      T* hi = hin + (t * B + j) * P;
      const T* hj = hs + j * P;
      if (masked) {
        for (int64_t k = 0; k < P; ++k) hi[k] = ms[j * P + k] * hj[k];
      } else {
        std::memcpy(hi, hj, P * sizeof(T));
      }
      if (!ln) {  // [x_t, h_in]
        std::memcpy(xhs + j * K, xs + (t * B + j) * I, I * sizeof(T));
        std::memcpy(xhs + j * K + I, hi, P * sizeof(T));
      }
    }
    const T* left = ln ? hin + (t * B + j0) * P : xhs + j0 * K;
    // (n - j0, G) F1: W x_t + U h_in (with layer norm a_h = U h_in), panel by panel as gemm_panels
    over_column_chunks(n - j0, G, K, [&](int64_t c0, int64_t c1) {
      if (is_used(c0, c1))
        gemm<T>(false, false, n - j0, c1 - c0, K, T(1), left, K, uh + c0 * K, c1 - c0, T(0),
                zs + j0 * G + c0, G);
    });
    for (int64_t j = j0; j < n; ++j) {
      const int64_t row = t * B + j;
      T* z = zs + j * G;
      if (ln)  // F1: LN(a_h), z = LN(a_x) γ_x + LN(a_h) γ_h
        rsh[row] = layer_norm_gates_row(G, z, axs + row * G, gx, gh, xhh + row * G);
      variant_cell_forward(H, v, z, bs, ps, v.zoned_c ? zcs + row * H : zcs, gc, bc, cs + j * H, gs + row * G,
                           cps + row * H, cts + row * H, acts + row * H,
                           ln ? chats + row * H : chats + j * H, ln ? rcs + row : rcs + j,
                           direct ? out + row * P : rb + j * H);  // F2-F4
    }
    if (direct) {  // F5-F6: h_t = r_t, already in the output row
      for (int64_t j = j0; j < n; ++j) std::memcpy(hs + j * P, out + (t * B + j) * P, P * sizeof(T));
      return;
    }
    if (proj)
      gemm<T>(false, true, n - j0, P, H, T(1), rb + j0 * H, H, whr, H, T(0), hh + j0 * P,
              P);  // (n - j0, P) F5: ĥ = W_hr r
    for (int64_t j = j0; j < n; ++j) {
      const int64_t row = t * B + j;
      const T* hat = proj ? hh + j * P : rb + j * H;
      T* hj = hs + j * P;
      T* o = out + row * P;
      if (v.zoned_h) {
        const T* zeta = zhs + row * P;
        for (int64_t k = 0; k < P; ++k) {
          const T h_t = zeta[k] * hj[k] + (T(1) - zeta[k]) * hat[k];  // F5: zoneout
          hj[k] = h_t;
          o[k] = h_t;  // F6
        }
      } else {
        for (int64_t k = 0; k < P; ++k) {
          hj[k] = hat[k];
          o[k] = hat[k];  // F6
        }
      }
    }
  };
  run_row_groups(B, choose_row_groups(B, G, K), T_,
                 [&](int64_t s, int64_t j0, int64_t j1, int64_t) { step(s, j0, j1); });
  return {output, h, c, gates, h_in, c_prev, c_t, act, xhat_x, rstd_x, xhat_h, rstd_h, chat, rstd_c};
}

template <typename T>
std::vector<at::Tensor> VariantDirection<T>::backward(const at::Tensor& d_output_in,
                                                      const at::Tensor& d_hn, const at::Tensor& d_cn,
                                                      bool reverse, int64_t flags,
                                                      const std::vector<at::Tensor>& cache) const {
  const int64_t groups = choose_row_groups(B, G, P);
  const at::Tensor d_output = checked(d_output_in, x, "d_output");  // (T, B, P)
  const char* names[] = {"gates", "h_in", "c_prev", "c_t", "act", "xhat_x",
                         "rstd_x", "xhat_h", "rstd_h", "chat", "rstd_c"};
  TORCH_CHECK(cache.size() == 11, "cache: expected 11 tensors, got ", cache.size());
  std::vector<at::Tensor> saved;
  for (size_t k = 0; k < cache.size(); ++k)
    saved.push_back(cache[k].numel() ? checked(cache[k], x, names[k]) : cache[k]);
  const at::Tensor &gates = saved[0], &h_in = saved[1], &c_prev = saved[2], &c_t = saved[3];
  const at::Tensor &act = saved[4], &xhat_x = saved[5], &rstd_x = saved[6], &xhat_h = saved[7];
  const at::Tensor &rstd_h = saved[8], &chat = saved[9], &rstd_c = saved[10];

  // The weight gradients (and dx) are products over the rows of da_x and da_h. With one row group they
  // run every C steps (the steps of t in [c C, c C + C), C B about 256 rows), on rows still in cache,
  // and dz and da_h are rings of C steps (slot t mod C) that never leave the cache; with several
  // groups (threads, each running all steps on its own rows) once after the loop, over all T steps.
  const bool chunked = groups == 1;
  const int64_t C = chunked ? std::min(T_, std::max<int64_t>(1, 256 / B)) : T_;
  const auto slot = [&](int64_t t) { return chunked ? t % C : t; };
  // (C, B, G) dz; with layer norm each row becomes da_x = LN'(dz γ_x) in the step that made it (the
  // gradient of W x_t; dz itself is not needed after its step), without, da_x = dz
  at::Tensor dz = buffer(packed, {C, B, G}, opts);
  at::Tensor da_h = ln ? buffer(packed, {C, B, G}, opts) : dz;  // (C, B, G) gradient of U h_in
  at::Tensor dhat = buffer(packed, {T_, B, P}, opts);  // (T, B, P) dĥ
  at::Tensor dh = checked(d_hn, x, "d_hn").clone(), dc = checked(d_cn, x, "d_cn").clone();
  const int64_t W = G + 3 * H + 2 * H + 2 * G;  // each group's sums: db | dp | dγ_c | dβ_c | dγ_h | dγ_x
  at::Tensor parts = at::zeros({groups, W}, opts);
  at::Tensor dr_buf = proj ? at::empty({B, H}, opts) : at::Tensor();  // (B, H)
  at::Tensor ds_buf = at::empty({B, H}, opts), rec_buf = at::empty({B, P}, opts);
  at::Tensor chat_junk = ln ? at::Tensor() : at::zeros({H}, opts);

  T *dzs = dz.data_ptr<T>(), *dahs = da_h.data_ptr<T>(), *dhats = dhat.data_ptr<T>();
  T *dhs = dh.data_ptr<T>(), *dcs = dc.data_ptr<T>(), *pts = parts.data_ptr<T>();
  T* drs = proj ? dr_buf.data_ptr<T>() : nullptr;
  T *dss = ds_buf.data_ptr<T>(), *recs = rec_buf.data_ptr<T>();
  const T *dout = d_output.data_ptr<T>(), *gs = gates.data_ptr<T>(), *cps = c_prev.data_ptr<T>();
  const T *cts = c_t.data_ptr<T>(), *acts = act.data_ptr<T>();
  const T* chats = ln ? chat.data_ptr<T>() : chat_junk.data_ptr<T>();
  const T* rcs = ln ? rstd_c.data_ptr<T>() : nullptr;
  const T* xhh = ln ? xhat_h.data_ptr<T>() : nullptr;
  const T* rsh = ln ? rstd_h.data_ptr<T>() : nullptr;
  const T* xhx = ln ? xhat_x.data_ptr<T>() : nullptr;
  const T* rsx = ln ? rstd_x.data_ptr<T>() : nullptr;
  const T* gx = g_x.data_ptr<T>();
  const T *whh = w_hh.data_ptr<T>(), *whr = proj ? w_hr.data_ptr<T>() : nullptr;
  const T *ps = peep.data_ptr<T>(), *gh = g_h.data_ptr<T>(), *gc = g_c.data_ptr<T>();
  const T* zcs = zc.data_ptr<T>();
  const T* ms = masked ? m.data_ptr<T>() : nullptr;
  const T* zhs = v.zoned_h ? zh.data_ptr<T>() : nullptr;

  auto step = [&](int64_t t, int64_t j0, int64_t j1, T* sums) {
    const int64_t n = std::max(j0, std::min(rows[t], j1));
    T* dz_t = dzs + slot(t) * B * G;  // (B, G) this step's rows of dz (da_x), da_h
    T* da_t = dahs + slot(t) * B * G;
    if (chunked && packed && n < j1) {  // rows that do not run: zero in the ring (a slot is reused)
      std::memset(dz_t + n * G, 0, (j1 - n) * G * sizeof(T));
      if (ln) std::memset(da_t + n * G, 0, (j1 - n) * G * sizeof(T));
    }
    if (n == j0) return;
    for (int64_t j = j0; j < n; ++j) {
      const int64_t row = t * B + j;
      T* dhj = dhs + j * P;
      T* dhat = dhats + row * P;
      const T* d_out = dout + row * P;
      if (v.zoned_h) {
        const T* zeta = zhs + row * P;
        for (int64_t k = 0; k < P; ++k) {
          const T dh_t = dhj[k] + d_out[k];  // B6
          dhat[k] = (T(1) - zeta[k]) * dh_t;  // B5: zoneout
          dhj[k] = zeta[k] * dh_t;  // B5: dh_{t-1} ← ζ_h dh_t
        }
      } else {  // B5: ζ_h = 0, dh_{t-1} gets da_h U alone (below)
        for (int64_t k = 0; k < P; ++k) dhat[k] = dhj[k] + d_out[k];  // B6
      }
    }
    const T* dr = dhats + t * B * P;  // without projection dr = dĥ (B5)
    if (proj) {
      gemm<T>(false, false, n - j0, H, P, T(1), dhats + (t * B + j0) * P, P, whr, H, T(0),
              drs + j0 * H, H);  // (n - j0, H) B5: dr = dĥ W_hr
      dr = drs;
    }
    for (int64_t j = j0; j < n; ++j) {
      const int64_t row = t * B + j;
      variant_cell_backward(H, v, gs + row * G, cps + row * H, cts + row * H, acts + row * H,
                            ln ? chats + row * H : chats, ln ? rcs[row] : T(1), ps,
                            v.zoned_c ? zcs + row * H : zcs,
                            gc, dr + j * H, dcs + j * H, dz_t + j * G, sums, sums + G,
                            sums + G + 3 * H, sums + G + 4 * H, dss + j * H);  // B4-B2
      if (ln)  // B1: da_h = LN'(dz γ_h), da_x = LN'(dz γ_x) (over dz), dγ_h, dγ_x += dz ⊙ LN(a)
        layer_norm_gates_backward_row(G, dz_t + j * G, gh, xhh + row * G, rsh[row], da_t + j * G,
                                      sums + G + 5 * H, gx, xhx + row * G, rsx[row],
                                      sums + 2 * G + 5 * H);
    }
    // B1: dh_{t-1} += m ⊙ (da_h U); without the mask the product lands in dh itself (added to ζ_h dh_t
    // with zoneout, written over dh otherwise: B5 left nothing there)
    // (the columns of removed gates are zero: skipped)
    const T* da = da_t + j0 * G;
    if (!masked) {
      gemm_used_k<T>(used, n - j0, P, da, G, whh, P, v.zoned_h, dhs + j0 * P, P);  // (n - j0, P)
      return;
    }
    gemm_used_k<T>(used, n - j0, P, da, G, whh, P, false, recs + j0 * P, P);  // (n - j0, P) da_h U
    for (int64_t j = j0; j < n; ++j) {
      T* dhj = dhs + j * P;
      const T* rec = recs + j * P;
      if (v.zoned_h) {
        for (int64_t k = 0; k < P; ++k) dhj[k] += ms[j * P + k] * rec[k];
      } else {
        for (int64_t k = 0; k < P; ++k) dhj[k] = ms[j * P + k] * rec[k];
      }
    }
  };
  // B1 over the steps t0 <= t < t1 (their slots 0.. in order): dx = da_x W, dW += Σ da_xᵀ x_t (G, I),
  // dU += Σ da_hᵀ h_in (G, P), the rows of removed gates left zero
  at::Tensor dx = at::empty({0}, opts);  // empty where x needs no gradient (kNoDx)
  if (!(flags & kNoDx)) dx = at::empty({T_, B, I}, opts);
  at::Tensor d_w_ih = at::zeros({G, I}, opts), d_w_hh = at::zeros({G, P}, opts);
  T *dxs = dx.numel() ? dx.data_ptr<T>() : nullptr, *dws = d_w_ih.data_ptr<T>();
  T* dus = d_w_hh.data_ptr<T>();
  const T *xs = x.data_ptr<T>(), *hins = h_in.data_ptr<T>(), *wih = w_ih.data_ptr<T>();
  const auto weight_gradients = [&](int64_t t0, int64_t t1) {
    const int64_t k = (t1 - t0) * B;  // rows
    const T *dax = dzs + slot(t0) * B * G, *dah = dahs + slot(t0) * B * G;
    if (dxs)
      gemm_used_k<T>(used, k, I, dax, G, wih, I, false, dxs + t0 * B * I, I);  // (k, I) dx = da_x W
    for (const auto& [r0, r1] : used) {
      gemm<T>(true, false, r1 - r0, I, k, T(1), dax + r0, G, xs + t0 * B * I, I, T(1), dws + r0 * I,
              I);  // (r1 - r0, I) dW += da_xᵀ x
      gemm<T>(true, false, r1 - r0, P, k, T(1), dah + r0, G, hins + t0 * B * P, P, T(1),
              dus + r0 * P, P);  // (r1 - r0, P) dU += da_hᵀ h_in
    }
  };
  run_row_groups(B, groups, T_, [&](int64_t s, int64_t j0, int64_t j1, int64_t g) {
    const int64_t t = step_at(T_ - 1 - s, T_, reverse);
    step(t, j0, j1, pts + g * W);
    if (!chunked) return;
    const int64_t t0 = t - t % C, t1 = std::min(t0 + C, T_);
    if (t == (reverse ? t1 - 1 : t0)) weight_gradients(t0, t1);  // the chunk's last step done
  });
  if (!chunked) weight_gradients(0, T_);

  // B1 over all steps at once
  const at::Tensor sums = parts.sum(0);  // (W,)
  at::Tensor d_ln_ih = at::empty({0}, opts), d_ln_hh = at::empty({0}, opts);
  if (ln) {
    d_ln_hh = sums.narrow(0, G + 5 * H, G).clone();  // dγ_h
    d_ln_ih = sums.narrow(0, 2 * G + 5 * H, G).clone();  // dγ_x
  }
  at::Tensor d_w_hr = at::empty({0}, opts);
  if (proj) {
    at::Tensor r = gates.narrow(2, 3 * H, H) * act;  // (T, B, H) F4 again
    d_w_hr = at::mm(dhat.view({TB, P}).t(), r.reshape({TB, H}));  // (P, H) B5
  }
  at::Tensor d_peep = peephole_given ? sums.narrow(0, G, 3 * H).clone() : at::empty({0}, opts);
  at::Tensor d_ln_c_w = ln ? sums.narrow(0, G + 3 * H, H).clone() : at::empty({0}, opts);
  at::Tensor d_ln_c_b = ln ? sums.narrow(0, G + 4 * H, H).clone() : at::empty({0}, opts);
  return {dx, dh, dc, d_w_ih, d_w_hh, sums.narrow(0, 0, G).clone(), d_w_hr, d_peep,
          d_ln_ih, d_ln_hh, d_ln_c_w, d_ln_c_b};
}

void check_variant_input(const at::Tensor& x) {
  TORCH_CHECK(x.device().is_cpu(), "the compiled kernels run on CPU tensors, got ", x.device());
  TORCH_CHECK(x.dim() == 3, "x: expected (T, B, I), got ", x.dim(), " dimensions");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "x: expected float32 or float64, got ", x.scalar_type());
}

}  // namespace

std::vector<at::Tensor> variant_forward(
    const at::Tensor& x, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& weight_ih,
    const at::Tensor& weight_hh, const c10::optional<at::Tensor>& bias,
    const c10::optional<at::Tensor>& weight_hr, const c10::optional<at::Tensor>& weight_peephole,
    const c10::optional<at::Tensor>& ln_weight_ih, const c10::optional<at::Tensor>& ln_weight_hh,
    const c10::optional<at::Tensor>& ln_weight_c, const c10::optional<at::Tensor>& ln_bias_c,
    const c10::optional<at::Tensor>& recurrent_mask, const c10::optional<at::Tensor>& zone_c,
    const c10::optional<at::Tensor>& zone_h, const c10::optional<at::Tensor>& batch_sizes,
    bool reverse, int64_t flags) {
  check_variant_input(x);
  const int64_t H = c0.size(1), P = h0.size(1);
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstmbyhand.variant_forward", [&] {
    const VariantDirection<scalar_t> d(x, H, P, flags, weight_ih, weight_hh, weight_hr,
                                       weight_peephole, ln_weight_ih, ln_weight_hh, ln_weight_c,
                                       recurrent_mask, zone_c, zone_h, batch_sizes);
    return d.forward(h0, c0, bias, ln_bias_c, reverse);
  });
}

std::vector<at::Tensor> variant_backward(
    const at::Tensor& d_output, const at::Tensor& d_hn, const at::Tensor& d_cn, const at::Tensor& x,
    const at::Tensor& weight_ih, const at::Tensor& weight_hh,
    const c10::optional<at::Tensor>& weight_hr, const c10::optional<at::Tensor>& weight_peephole,
    const c10::optional<at::Tensor>& ln_weight_ih, const c10::optional<at::Tensor>& ln_weight_hh,
    const c10::optional<at::Tensor>& ln_weight_c, const c10::optional<at::Tensor>& recurrent_mask,
    const c10::optional<at::Tensor>& zone_c, const c10::optional<at::Tensor>& zone_h,
    const c10::optional<at::Tensor>& batch_sizes, bool reverse, int64_t flags,
    const std::vector<at::Tensor>& cache) {
  check_variant_input(x);
  const int64_t H = d_cn.size(1), P = d_hn.size(1);
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstmbyhand.variant_backward", [&] {
    const VariantDirection<scalar_t> d(x, H, P, flags, weight_ih, weight_hh, weight_hr,
                                       weight_peephole, ln_weight_ih, ln_weight_hh, ln_weight_c,
                                       recurrent_mask, zone_c, zone_h, batch_sizes);
    return d.backward(d_output, d_hn, d_cn, reverse, flags, cache);
  });
}

}  // namespace lstmbyhand
