// LSTMCell's plain step in ATen operators (see cell_step.h; the Python twin: layers.cell_step).
#include "cell_step.h"

#include <ATen/ATen.h>

namespace lstmbyhand {

namespace {

// torch's check_rnn_cell_forward_hidden: the state's batch, then its width (size(1) of a 1-D
// state raises IndexError, as there).
void check_state(const at::Tensor& x, const at::Tensor& state, int64_t hidden_size, int k) {
  TORCH_CHECK(x.size(0) == state.size(0), "Input batch size ", x.size(0), " doesn't match hidden",
              k, " batch size ", state.size(0));
  TORCH_CHECK(state.size(1) == hidden_size, "hidden", k, " has inconsistent hidden_size: got ",
              state.size(1), ", expected ", hidden_size);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> cell_step(const at::Tensor& x, const at::Tensor& h,
                                             const at::Tensor& c, const at::Tensor& weight_ih,
                                             const at::Tensor& weight_hh,
                                             const c10::optional<at::Tensor>& bias_ih,
                                             const c10::optional<at::Tensor>& bias_hh) {
  TORCH_CHECK(x.size(1) == weight_ih.size(1), "input has inconsistent input_size: got ", x.size(1),
              " expected ", weight_ih.size(1));
  check_state(x, h, weight_hh.size(1), 0);
  check_state(x, c, weight_hh.size(1), 1);
  at::Tensor z;  // (N, 4H)
  if (bias_ih.has_value() && bias_hh.has_value()) {
    z = at::addmm(*bias_ih + *bias_hh, x, weight_ih.t());
  } else {
    z = at::mm(x, weight_ih.t());
  }
  z = z.addmm_(h, weight_hh.t());  // F1
  // i, f, g, o, each (N, H); unsafe_chunk: no view tracking (neither z nor a block is written)
  std::vector<at::Tensor> gates = z.unsafe_chunk(4, 1);
  at::Tensor c_next = (at::sigmoid(gates[1]) * c).add_(at::sigmoid(gates[0]) * at::tanh(gates[2]));  // F2, F3
  at::Tensor h_next = at::sigmoid(gates[3]) * at::tanh(c_next);                         // F2, F4
  return {h_next, c_next};
}

}  // namespace lstmbyhand
