// fit_adam: the whole training loop of a tiny LSTM in C++, for models where every PyTorch op costs more
// in framework overhead than in arithmetic (the seed's example: T = 4, H = 1).
//
// Model: one layer, one direction, no projection, batch-first x (B, T, I) from zero state. The
// prediction is h_T (B, H), or with a head h_T head_wᵀ + head_b (B, O); the loss is the mean squared
// error over all elements. Gradients are bptt.py's equations (F1-F6, B1-B6): F1 and B1 as plain loops
// (the products are too small for a GEMM), F2-F4 and B4-B2 cell.h's, as in the sequence kernels; the
// update is torch.optim.Adam's with its defaults (no weight decay, no amsgrad), operation by
// operation, so that float64 results agree with a PyTorch loop to rounding. Arguments: kernels.h.
#include "cell.h"
#include "kernels.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace lstmbyhand {

namespace {

template <typename S>
struct Tiny {
  int64_t I = 0, H = 0, G = 0, O = 0;
  bool head = false;
  std::vector<S*> p, m, v;  // parameters and their Adam moments
  std::vector<int64_t> size;
  std::vector<std::vector<S>> grad;
  // Scratch, sized for the largest batch: cache (T, B, ·) and states (B, ·); one row's
  // pre-activations z (G), r_t's unused output copy y (H), a zero bias (G: F1 adds the biases), dz (G).
  std::vector<S> gates, h_prev, c_prev, tanh_c, h, c, dh, dh_next, dc, pred, d_pred, z, y, zero_bias, dz;
};

// One batch: forward, loss, backward into model.grad. Returns the loss before the update.
template <typename S>
double loss_and_grad(Tiny<S>& M, const S* x, const S* y, int64_t B, int64_t T) {
  const int64_t I = M.I, H = M.H, G = M.G, O = M.O;
  const S* w_ih = M.p[0];  // (G, I)
  const S* w_hh = M.p[1];  // (G, H)
  const S* b_ih = M.p[2];  // (G,)
  const S* b_hh = M.p[3];  // (G,)
  std::fill(M.h.begin(), M.h.begin() + B * H, S(0));
  std::fill(M.c.begin(), M.c.begin() + B * H, S(0));
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t b = 0; b < B; ++b) {
      const S* xt = x + (b * T + t) * I;  // (I,) batch-first
      S* hb = M.h.data() + b * H;
      S* cb = M.c.data() + b * H;
      const int64_t row = t * B + b;
      S* z = M.z.data();  // (G,)
      std::copy(hb, hb + H, M.h_prev.data() + row * H);
      for (int64_t k = 0; k < G; ++k) {
        S acc = b_ih[k] + b_hh[k];
        for (int64_t q = 0; q < I; ++q) acc += w_ih[k * I + q] * xt[q];  // F1: W x_t
        for (int64_t q = 0; q < H; ++q) acc += w_hh[k * H + q] * hb[q];  // F1: U h_{t-1}
        z[k] = acc;
      }
      cell_forward<S, true>(H, z, M.zero_bias.data(), cb, hb, M.y.data(), M.gates.data() + row * G,
                            M.c_prev.data() + row * H, M.tanh_c.data() + row * H);  // F2-F4 (F5: h = r)
    }
  }
  // Prediction and the mean squared error.
  const S* head_w = M.head ? M.p[4] : nullptr;  // (O, H)
  const S* head_b = M.head ? M.p[5] : nullptr;  // (O,)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t o = 0; o < O; ++o) {
      S acc = M.head ? head_b[o] : M.h[b * H + o];
      if (M.head)
        for (int64_t k = 0; k < H; ++k) acc += M.h[b * H + k] * head_w[o * H + k];
      M.pred[b * O + o] = acc;
    }
  const int64_t N = B * O;
  S loss = 0;
  for (int64_t e = 0; e < N; ++e) {
    const S diff = M.pred[e] - y[e];
    loss += diff * diff;
    M.d_pred[e] = S(2) * diff / S(N);  // ∂ mean((pred - y)²)
  }
  loss /= S(N);

  for (auto& g : M.grad) std::fill(g.begin(), g.end(), S(0));
  S* dh = M.dh.data();
  if (M.head) {
    S* d_head_w = M.grad[4].data();
    S* d_head_b = M.grad[5].data();
    std::fill(dh, dh + B * H, S(0));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t o = 0; o < O; ++o) {
        const S d = M.d_pred[b * O + o];
        d_head_b[o] += d;
        for (int64_t k = 0; k < H; ++k) {
          d_head_w[o * H + k] += d * M.h[b * H + k];
          dh[b * H + k] += d * head_w[o * H + k];
        }
      }
  } else {
    std::copy(M.d_pred.begin(), M.d_pred.begin() + B * H, dh);  // B6: dL/dh_T
  }
  S* d_w_ih = M.grad[0].data();
  S* d_w_hh = M.grad[1].data();
  S* d_b = M.grad[2].data();
  S* dc = M.dc.data();
  std::fill(dc, dc + B * H, S(0));
  S* dz = M.dz.data();  // (G,)
  for (int64_t t = T - 1; t >= 0; --t) {
    S* dh_next = M.dh_next.data();
    for (int64_t b = 0; b < B; ++b) {
      const S* a = M.gates.data() + (t * B + b) * G;
      const S* tc = M.tanh_c.data() + (t * B + b) * H;
      const S* cp = M.c_prev.data() + (t * B + b) * H;
      const S* hp = M.h_prev.data() + (t * B + b) * H;
      const S* xt = x + (b * T + t) * I;
      S* dhb = dh + b * H;
      S* dcb = dc + b * H;
      cell_backward(H, a, cp, tc, dhb, dcb, dz, d_b);  // B5 (dr = dh), B4-B2, B1: db += dz
      S* dhn = dh_next + b * H;
      std::fill(dhn, dhn + H, S(0));
      for (int64_t k = 0; k < G; ++k) {
        const S d = dz[k];
        for (int64_t q = 0; q < I; ++q) d_w_ih[k * I + q] += d * xt[q];  // B1: dW += dzᵀ x_t
        for (int64_t q = 0; q < H; ++q) {
          d_w_hh[k * H + q] += d * hp[q];  // B1: dU += dzᵀ h_{t-1}
          dhn[q] += d * w_hh[k * H + q];  // B1: dh = dz U
        }
      }
    }
    std::swap(M.dh, M.dh_next);
    dh = M.dh.data();
  }
  std::copy(M.grad[2].begin(), M.grad[2].end(), M.grad[3].begin());  // b_hh enters F1 like b_ih
  return static_cast<double>(loss);
}

// torch.optim.Adam's single-tensor step, one operation at a time.
template <typename S>
void adam_step(Tiny<S>& M, int64_t step, double lr, double beta1, double beta2, double eps) {
  const double bias_correction1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bias_correction2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  const S step_size = static_cast<S>(lr / bias_correction1);
  const S bias_correction2_sqrt = static_cast<S>(std::sqrt(bias_correction2));
  const S w1 = static_cast<S>(1.0 - beta1), b2 = static_cast<S>(beta2);
  const S w2 = static_cast<S>(1.0 - beta2), e = static_cast<S>(eps);
  for (size_t n = 0; n < M.p.size(); ++n) {
    S* p = M.p[n];
    S* m = M.m[n];
    S* v = M.v[n];
    const S* g = M.grad[n].data();
    for (int64_t k = 0; k < M.size[n]; ++k) {
      m[k] = w1 < S(0.5) ? m[k] + w1 * (g[k] - m[k]) : g[k] - (g[k] - m[k]) * (S(1) - w1);  // lerp
      v[k] = v[k] * b2;
      v[k] = v[k] + w2 * g[k] * g[k];  // addcmul
      const S denom = std::sqrt(v[k]) / bias_correction2_sqrt + e;
      p[k] = p[k] + (-step_size) * (m[k] / denom);  // addcdiv
    }
  }
}

template <typename S>
std::tuple<at::Tensor, int64_t> fit_impl(const std::vector<at::Tensor>& xs,
                                         const std::vector<at::Tensor>& ys,
                                         const std::vector<at::Tensor>& params,
                                         const std::vector<at::Tensor>& exp_avg,
                                         const std::vector<at::Tensor>& exp_avg_sq, int64_t step,
                                         double lr, double beta1, double beta2, double eps,
                                         int64_t max_epoch, double tol, int64_t patience) {
  Tiny<S> M;
  M.G = params[0].size(0);
  M.H = M.G / 4;
  M.I = params[0].size(1);
  M.head = params.size() == 6;
  M.O = M.head ? params[4].size(0) : M.H;
  for (size_t n = 0; n < params.size(); ++n) {
    M.p.push_back(params[n].data_ptr<S>());
    M.m.push_back(exp_avg[n].data_ptr<S>());
    M.v.push_back(exp_avg_sq[n].data_ptr<S>());
    M.size.push_back(params[n].numel());
    M.grad.emplace_back(params[n].numel());
  }
  std::vector<at::Tensor> xc, yc;
  int64_t max_bt = 0, max_b = 0;
  for (size_t n = 0; n < xs.size(); ++n) {
    xc.push_back(xs[n].contiguous());
    yc.push_back(ys[n].contiguous());
    max_bt = std::max(max_bt, xs[n].size(0) * xs[n].size(1));
    max_b = std::max(max_b, xs[n].size(0));
  }
  for (auto* buf : {&M.h_prev, &M.c_prev, &M.tanh_c}) buf->resize(max_bt * M.H);
  M.gates.resize(max_bt * M.G);
  for (auto* buf : {&M.h, &M.c, &M.dh, &M.dh_next, &M.dc}) buf->resize(max_b * M.H);
  for (auto* buf : {&M.z, &M.zero_bias, &M.dz}) buf->resize(M.G);
  M.y.resize(M.H);
  M.pred.resize(max_b * M.O);
  M.d_pred.resize(max_b * M.O);

  std::vector<double> losses;
  double best = std::numeric_limits<double>::infinity();
  int64_t since_best = 0;
  for (int64_t epoch = 0; epoch < max_epoch; ++epoch) {
    double total = 0;
    for (size_t n = 0; n < xc.size(); ++n) {
      total += loss_and_grad(M, xc[n].data_ptr<S>(), yc[n].data_ptr<S>(), xc[n].size(0),
                             xc[n].size(1));
      adam_step(M, ++step, lr, beta1, beta2, eps);
    }
    const double loss = total / static_cast<double>(xc.size());
    losses.push_back(loss);
    if (loss < best - tol) {  // the early stop rule of the Python loop
      best = loss;
      since_best = 0;
    } else {
      ++since_best;
    }
    if (tol >= 0 && since_best >= patience) break;
  }
  at::Tensor out = at::empty({static_cast<int64_t>(losses.size())}, at::kDouble);
  std::copy(losses.begin(), losses.end(), out.data_ptr<double>());
  return {out, step};
}

}  // namespace

std::tuple<at::Tensor, int64_t> fit_adam(const std::vector<at::Tensor>& xs,
                                         const std::vector<at::Tensor>& ys,
                                         const std::vector<at::Tensor>& params,
                                         const std::vector<at::Tensor>& exp_avg,
                                         const std::vector<at::Tensor>& exp_avg_sq, int64_t step,
                                         double lr, double beta1, double beta2, double eps,
                                         int64_t max_epoch, double tol, int64_t patience) {
  TORCH_CHECK(params.size() == 4 || params.size() == 6,
              "params: expected (w_ih, w_hh, b_ih, b_hh[, head_w, head_b]), got ", params.size(),
              " tensors");
  TORCH_CHECK(exp_avg.size() == params.size() && exp_avg_sq.size() == params.size(),
              "exp_avg, exp_avg_sq: expected one tensor per parameter (", params.size(), "), got ",
              exp_avg.size(), " and ", exp_avg_sq.size());
  TORCH_CHECK(!xs.empty() && xs.size() == ys.size(),
              "xs, ys: expected the same number (>= 1) of batches, got ", xs.size(), " and ",
              ys.size());
  const at::Tensor& w_ih = params[0];
  TORCH_CHECK(w_ih.dim() == 2 && w_ih.size(0) % 4 == 0 && w_ih.size(0) > 0,
              "w_ih: expected (4H, I), got ", w_ih.sizes());
  const int64_t G = w_ih.size(0), H = G / 4, I = w_ih.size(1);
  const auto dtype = w_ih.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, "params: expected float32 or float64, got ",
              dtype);
  std::vector<std::vector<int64_t>> shapes{{G, I}, {G, H}, {G}, {G}};
  if (params.size() == 6) {
    TORCH_CHECK(params[4].dim() == 2, "head_w: expected (O, H), got ", params[4].sizes());
    shapes.push_back({params[4].size(0), H});
    shapes.push_back({params[4].size(0)});
  }
  const int64_t O = params.size() == 6 ? params[4].size(0) : H;
  for (size_t n = 0; n < params.size(); ++n)
    for (const at::Tensor* t : {&params[n], &exp_avg[n], &exp_avg_sq[n]}) {
      TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == dtype && t->is_contiguous(),
                  "params, exp_avg, exp_avg_sq: expected contiguous CPU tensors of dtype ", dtype);
      TORCH_CHECK(t->sizes() == at::IntArrayRef(shapes[n]), "params[", n, "] and its moments: expected shape ",
                  at::IntArrayRef(shapes[n]), ", got ", t->sizes());
    }
  for (size_t n = 0; n < xs.size(); ++n) {
    TORCH_CHECK(xs[n].device().is_cpu() && xs[n].scalar_type() == dtype && ys[n].scalar_type() == dtype,
                "xs, ys: expected CPU tensors of dtype ", dtype);
    TORCH_CHECK(xs[n].dim() == 3 && xs[n].size(2) == I, "xs[", n, "]: expected (B, T, ", I,
                "), got ", xs[n].sizes());
    TORCH_CHECK(ys[n].numel() == xs[n].size(0) * O, "ys[", n, "]: expected ", xs[n].size(0) * O,
                " elements (B, O), got ", ys[n].numel());
  }
  TORCH_CHECK(max_epoch >= 0 && patience >= 0, "max_epoch, patience: expected >= 0");
  return AT_DISPATCH_FLOATING_TYPES(dtype, "lstmbyhand.fit_adam", [&] {
    return fit_impl<scalar_t>(xs, ys, params, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps,
                              max_epoch, tol, patience);
  });
}

}  // namespace lstmbyhand
