// lstmbyhand.nn._C: the compiled twins of bptt.forward, bptt.forward_inference and bptt.backward
// (same arguments, same results), and fit_adam, the training loop of a tiny model in one call.
#include <torch/csrc/utils/pybind.h>

#include "common.h"

namespace lstmbyhand {

Forward forward(const at::Tensor& x, const at::Tensor& h0, const at::Tensor& c0,
                const at::Tensor& weight_ih, const at::Tensor& weight_hh,
                const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& weight_hr,
                const c10::optional<at::Tensor>& batch_sizes, bool reverse);
ForwardInference forward_inference(const at::Tensor& x, const at::Tensor& h0, const at::Tensor& c0,
                                   const at::Tensor& weight_ih, const at::Tensor& weight_hh,
                                   const c10::optional<at::Tensor>& bias,
                                   const c10::optional<at::Tensor>& weight_hr,
                                   const c10::optional<at::Tensor>& batch_sizes, bool reverse);
Backward backward(const at::Tensor& d_output, const at::Tensor& d_hn, const at::Tensor& d_cn,
                  const at::Tensor& x, const at::Tensor& weight_ih, const at::Tensor& weight_hh,
                  const c10::optional<at::Tensor>& weight_hr,
                  const c10::optional<at::Tensor>& batch_sizes, bool reverse,
                  const at::Tensor& gates, const at::Tensor& h_prev, const at::Tensor& c_prev,
                  const at::Tensor& tanh_c, bool need_dx);
std::tuple<at::Tensor, int64_t> fit_adam(const std::vector<at::Tensor>& xs,
                                         const std::vector<at::Tensor>& ys,
                                         const std::vector<at::Tensor>& params,
                                         const std::vector<at::Tensor>& exp_avg,
                                         const std::vector<at::Tensor>& exp_avg_sq, int64_t step,
                                         double lr, double beta1, double beta2, double eps,
                                         int64_t max_epoch, double tol, int64_t patience);

}  // namespace lstmbyhand

namespace py = pybind11;

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Compiled BPTT kernels of lstmbyhand (see bptt.py for the equations) and fit_adam.";
  m.def("forward", &lstmbyhand::forward,
        "F1-F6 over all steps: output, h_n, c_n, gates, h_prev, c_prev, tanh_c (bptt.forward)",
        py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("weight_ih"), py::arg("weight_hh"),
        py::arg("bias"), py::arg("weight_hr"), py::arg("batch_sizes"), py::arg("reverse"));
  m.def("forward_inference", &lstmbyhand::forward_inference,
        "forward without the cache: output, h_n, c_n (bptt.forward_inference)", py::arg("x"),
        py::arg("h0"), py::arg("c0"), py::arg("weight_ih"), py::arg("weight_hh"), py::arg("bias"),
        py::arg("weight_hr"), py::arg("batch_sizes"), py::arg("reverse"));
  m.def("backward", &lstmbyhand::backward,
        "B6-B1: dx (None when need_dx is false), dh0, dc0, dW_ih, dW_hh, db, dW_hr or None "
        "(bptt.backward)", py::arg("d_output"),
        py::arg("d_hn"), py::arg("d_cn"), py::arg("x"), py::arg("weight_ih"), py::arg("weight_hh"),
        py::arg("weight_hr"), py::arg("batch_sizes"), py::arg("reverse"), py::arg("gates"),
        py::arg("h_prev"), py::arg("c_prev"), py::arg("tanh_c"), py::arg("need_dx") = true);
  m.def("fit_adam", &lstmbyhand::fit_adam,
        "Adam training of a one-layer LSTM (+ optional linear head) on MSE, params updated in place;"
        " returns (epoch losses float64, final step). See LSTMbyHand._fit_native in seed.py.",
        py::arg("xs"), py::arg("ys"), py::arg("params"), py::arg("exp_avg"), py::arg("exp_avg_sq"),
        py::arg("step"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"),
        py::arg("max_epoch"), py::arg("tol"), py::arg("patience"),
        py::call_guard<py::gil_scoped_release>());
}
