// The interface of lstmbyhand.nn._C: every kernel argument with its shape, layout and dtype.
// module.cpp binds these functions to Python under the same names and argument names; bptt.cpp and
// fit_adam.cpp implement them. They are the compiled twins of bptt.py's forward, forward_inference
// and backward (same arguments, same results, same cache) and the seed's training loop.
//
// Conventions (all kernels):
//   T steps, B batch rows, I input features, H hidden units, P = H without a projection, else
//   proj_size; G = 4H pre-activations stacked in nn.LSTM's gate order i | f | g | o.
//   Tensors: CPU, float32 or float64 (all of one call in the dtype of x), row-major; non-contiguous
//   arguments are copied, results are contiguous. Time-major x (T, B, I), as bptt.py.
//   batch_sizes (T,) int64 (a PackedSequence's): at step t only the first batch_sizes[t] rows run;
//   the others keep their state and its gradient, and their outputs, cache entries and input
//   gradients are zero. None: all B rows run at every step.
//   reverse: run the steps T-1 .. 0 (the backward direction of a bidirectional layer).
//   Errors are c10::Error (RuntimeError in Python) naming the argument: "<name>: expected X, got Y".
// Equations: bptt.py's docstring (F1-F6 forward, B6-B1 backward); cell.h holds F2-F4 and B4-B2.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include <cstdint>
#include <tuple>
#include <vector>

namespace lstmbyhand {

// output (T, B, P), h_n (B, P), c_n (B, H), and the cache that backward reads:
// gates (T, B, G) the activated gates i | f | g | o; h_prev (T, B, P) h_{t-1}; c_prev (T, B, H)
// c_{t-1}; tanh_c (T, B, H) tanh(c_t), each indexed by the step t it belongs to.
using Forward = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                           at::Tensor>;
// output (T, B, P), h_n (B, P), c_n (B, H).
using ForwardInference = std::tuple<at::Tensor, at::Tensor, at::Tensor>;
// dx (T, B, I) or None (need_dx false), dh0 (B, P), dc0 (B, H), dW_ih (G, I), dW_hh (G, P),
// db (G,) (the gradient of each of b_ih and b_hh), dW_hr (P, H) or None without a projection.
using Backward = std::tuple<c10::optional<at::Tensor>, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                            at::Tensor, c10::optional<at::Tensor>>;

// F1-F6 over all steps of one layer and direction.
//   x (T, B, I); h0 (B, P); c0 (B, H); weight_ih (G, I); weight_hh (G, P);
//   bias (G,) = b_ih + b_hh, or None for none; weight_hr (P, H) or None (no projection);
//   batch_sizes (T,) int64 or None; reverse.
Forward forward(const at::Tensor& x, const at::Tensor& h0, const at::Tensor& c0,
                const at::Tensor& weight_ih, const at::Tensor& weight_hh,
                const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& weight_hr,
                const c10::optional<at::Tensor>& batch_sizes, bool reverse);

// forward without writing the cache (arguments as forward).
ForwardInference forward_inference(const at::Tensor& x, const at::Tensor& h0, const at::Tensor& c0,
                                   const at::Tensor& weight_ih, const at::Tensor& weight_hh,
                                   const c10::optional<at::Tensor>& bias,
                                   const c10::optional<at::Tensor>& weight_hr,
                                   const c10::optional<at::Tensor>& batch_sizes, bool reverse);

// B6-B1 of the forward that produced the cache.
//   d_output (T, B, P), d_hn (B, P), d_cn (B, H): the gradients reaching output, h_n, c_n;
//   x, weight_ih, weight_hh, weight_hr, batch_sizes, reverse: as given to forward;
//   gates, h_prev, c_prev, tanh_c: forward's cache; need_dx: false skips dx (returns None).
Backward backward(const at::Tensor& d_output, const at::Tensor& d_hn, const at::Tensor& d_cn,
                  const at::Tensor& x, const at::Tensor& weight_ih, const at::Tensor& weight_hh,
                  const c10::optional<at::Tensor>& weight_hr,
                  const c10::optional<at::Tensor>& batch_sizes, bool reverse,
                  const at::Tensor& gates, const at::Tensor& h_prev, const at::Tensor& c_prev,
                  const at::Tensor& tanh_c, bool need_dx);

// torch.optim.Adam (defaults: no weight decay, no amsgrad) on the mean squared error of a one-layer,
// one-direction LSTM without projection from the zero state, predicting h_T (B, H) or, with a head,
// h_T head_wᵀ + head_b (B, O); every epoch runs the batches in order, one Adam step each.
//   xs: batches of batch-first x (B_n, T_n, I); ys: their targets, B_n O elements each (O = H
//   without a head); params: w_ih (G, I), w_hh (G, H), b_ih (G,), b_hh (G,)[, head_w (O, H),
//   head_b (O,)], contiguous, updated in place; exp_avg, exp_avg_sq: Adam's moments, one per
//   parameter, same shapes, updated in place; step: Adam's step count before the call;
//   lr, beta1, beta2, eps: Adam's; max_epoch >= 0; tol, patience: stop once the epoch loss has not
//   improved on its best by more than tol for patience epochs (tol < 0: never stop early).
// Returns the epoch losses (float64, one per epoch run) and the step count after the last step.
std::tuple<at::Tensor, int64_t> fit_adam(const std::vector<at::Tensor>& xs,
                                         const std::vector<at::Tensor>& ys,
                                         const std::vector<at::Tensor>& params,
                                         const std::vector<at::Tensor>& exp_avg,
                                         const std::vector<at::Tensor>& exp_avg_sq, int64_t step,
                                         double lr, double beta1, double beta2, double eps,
                                         int64_t max_epoch, double tol, int64_t patience);

// A variant cell (variants.py, variant_bptt.py) over one layer direction: F1-F6 with the cache.
//   x, h0, c0, weight_ih, weight_hh, bias, weight_hr, batch_sizes, reverse: as forward;
//   weight_peephole (3H,), ln_weight_ih (G,), ln_weight_hh (G,), ln_weight_c (H,), ln_bias_c (H,):
//   None where the variant has none; recurrent_mask (B, P), zone_c (T, B, H), zone_h (T, B, P): the
//   regularizers' masks or None; flags: Variant.flags.
// Returns output (T, B, P), h_n, c_n and the cache in variant_bptt.CACHE's order: gates (T, B, G),
// h_in (T, B, P), c_prev, c_t, act (T, B, H), xhat_x (T, B, G), rstd_x (T, B, 1), xhat_h (T, B, G),
// rstd_h (T, B, 1), chat (T, B, H), rstd_c (T, B, 1) (the last six empty without layer norm).
std::vector<at::Tensor> variant_forward(
    const at::Tensor& x, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& weight_ih,
    const at::Tensor& weight_hh, const c10::optional<at::Tensor>& bias,
    const c10::optional<at::Tensor>& weight_hr, const c10::optional<at::Tensor>& weight_peephole,
    const c10::optional<at::Tensor>& ln_weight_ih, const c10::optional<at::Tensor>& ln_weight_hh,
    const c10::optional<at::Tensor>& ln_weight_c, const c10::optional<at::Tensor>& ln_bias_c,
    const c10::optional<at::Tensor>& recurrent_mask, const c10::optional<at::Tensor>& zone_c,
    const c10::optional<at::Tensor>& zone_h, const c10::optional<at::Tensor>& batch_sizes,
    bool reverse, int64_t flags);

// B6-B1 of variant_forward (arguments as there, cache: its eleven cache tensors). Returns dx, dh0,
// dc0, dW_ih, dW_hh, db, dW_hr, d_peephole, d_ln_weight_ih, d_ln_weight_hh, d_ln_weight_c,
// d_ln_bias_c (empty tensors for absent parameters).
std::vector<at::Tensor> variant_backward(
    const at::Tensor& d_output, const at::Tensor& d_hn, const at::Tensor& d_cn, const at::Tensor& x,
    const at::Tensor& weight_ih, const at::Tensor& weight_hh,
    const c10::optional<at::Tensor>& weight_hr, const c10::optional<at::Tensor>& weight_peephole,
    const c10::optional<at::Tensor>& ln_weight_ih, const c10::optional<at::Tensor>& ln_weight_hh,
    const c10::optional<at::Tensor>& ln_weight_c, const c10::optional<at::Tensor>& recurrent_mask,
    const c10::optional<at::Tensor>& zone_c, const c10::optional<at::Tensor>& zone_h,
    const c10::optional<at::Tensor>& batch_sizes, bool reverse, int64_t flags,
    const std::vector<at::Tensor>& cache);

}  // namespace lstmbyhand
