// lstmbyhand.nn._C: binds kernels.h (the compiled twins of bptt.forward, bptt.forward_inference and
// bptt.backward, their variant twins, and fit_adam, the training loop of a tiny model in one call),
// cell_step.h (LSTMCell's plain step in ATen operators) and masks.h (the regularizers' masks) to
// Python; nothing else.
#include <torch/csrc/utils/pybind.h>

#include "cell_step.h"
#include "kernels.h"
#include "masks.h"

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
  m.def("variant_forward", &lstmbyhand::variant_forward,
        "A variant cell's F1-F6 with the cache (variant_bptt.forward)", py::arg("x"), py::arg("h0"),
        py::arg("c0"), py::arg("weight_ih"), py::arg("weight_hh"), py::arg("bias"),
        py::arg("weight_hr"), py::arg("weight_peephole"), py::arg("ln_weight_ih"),
        py::arg("ln_weight_hh"), py::arg("ln_weight_c"), py::arg("ln_bias_c"),
        py::arg("recurrent_mask"), py::arg("zone_c"), py::arg("zone_h"), py::arg("batch_sizes"),
        py::arg("reverse"), py::arg("flags"));
  m.def("variant_backward", &lstmbyhand::variant_backward,
        "A variant cell's B6-B1 (variant_bptt.backward; the cache as one list)", py::arg("d_output"),
        py::arg("d_hn"), py::arg("d_cn"), py::arg("x"), py::arg("weight_ih"), py::arg("weight_hh"),
        py::arg("weight_hr"), py::arg("weight_peephole"), py::arg("ln_weight_ih"),
        py::arg("ln_weight_hh"), py::arg("ln_weight_c"), py::arg("recurrent_mask"),
        py::arg("zone_c"), py::arg("zone_h"), py::arg("batch_sizes"), py::arg("reverse"),
        py::arg("flags"), py::arg("cache"));
  m.def("cell_step", &lstmbyhand::cell_step,
        "LSTMCell's plain step, checks then ATen operators: (h', c') (layers.cell_step)",
        py::arg("x"), py::arg("h"), py::arg("c"), py::arg("weight_ih"), py::arg("weight_hh"),
        py::arg("bias_ih"), py::arg("bias_hh"));
  m.def("keyed_bernoulli", &lstmbyhand::keyed_bernoulli,
        "The regularizers' mask from a counter-based stream (masks.py)", py::arg("shape"),
        py::arg("seed"), py::arg("offset"), py::arg("threshold"), py::arg("value"), py::arg("dtype"));
  m.def("fit_adam", &lstmbyhand::fit_adam,
        "Adam training of a one-layer LSTM (+ optional linear head) on MSE, params updated in place;"
        " returns (epoch losses float64, final step). See LSTMbyHand._fit_native in seed.py.",
        py::arg("xs"), py::arg("ys"), py::arg("params"), py::arg("exp_avg"), py::arg("exp_avg_sq"),
        py::arg("step"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"),
        py::arg("max_epoch"), py::arg("tol"), py::arg("patience"),
        py::call_guard<py::gil_scoped_release>());
}
