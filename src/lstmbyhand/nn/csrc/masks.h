// The regularizers' masks as a counter-based stream: the compiled twin of masks.py (its docstring has
// the definition). Entry k of the result, row-major, is value where the top 32 bits of SplitMix64's
// output number offset + k from state `seed` are below `threshold`, else 0:
//   u_k = mix(seed + (offset + k + 1) γ),  mask_k = value · [u_k >> 32 < threshold]
// shape: any; seed: the 64 bits of the state as an int64; threshold in [0, 2^32]; dtype float32 or
// float64. Bit-equal to masks.keyed_bernoulli_reference (tests/nn/test_variant_masks.py).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <vector>

namespace lstmbyhand {

at::Tensor keyed_bernoulli(const std::vector<int64_t>& shape, int64_t seed, int64_t offset,
                           int64_t threshold, double value, c10::ScalarType dtype);

}  // namespace lstmbyhand
