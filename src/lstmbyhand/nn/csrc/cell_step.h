// One step of the plain LSTMCell (layers.cell_step) as ATen operators called from C++: the same
// operators in the same order as the Python function, so the same numbers, and autograd, autocast,
// functorch and the tracer see them as they see Python's calls (they all sit in the dispatcher);
// only the Python interpreter's cost per operator is gone. Any device, any floating dtype.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include <tuple>

namespace lstmbyhand {

// x (N, I), h (N, H), c (N, H), weight_ih (4H, I), weight_hh (4H, H), bias_ih / bias_hh (4H,) or
// None -> h' (N, H), c' (N, H). First the checks torch's lstm_cell kernel makes of x, h and c (its
// order and texts: c10::Error, IndexError for a 1-D state), then
//   z = x W_ihᵀ + (b_ih + b_hh) + h W_hhᵀ (N, 4H);  i, f, g, o = z's four column blocks;
//   c' = σ(f) c + σ(i) tanh(g);  h' = σ(o) tanh(c').
std::tuple<at::Tensor, at::Tensor> cell_step(const at::Tensor& x, const at::Tensor& h,
                                             const at::Tensor& c, const at::Tensor& weight_ih,
                                             const at::Tensor& weight_hh,
                                             const c10::optional<at::Tensor>& bias_ih,
                                             const c10::optional<at::Tensor>& bias_hh);

}  // namespace lstmbyhand
