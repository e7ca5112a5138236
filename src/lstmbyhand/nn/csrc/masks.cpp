// masks.h: SplitMix64 at counter k, compared, written as the mask (one pass, no state between
// entries: GCC vectorizes the loop, 64-bit products included where the target has them).
#include "masks.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>

namespace lstmbyhand {

namespace {

constexpr uint64_t kGamma = 0x9E3779B97F4A7C15ull;  // 2^64 / the golden ratio
constexpr uint64_t kMix1 = 0xBF58476D1CE4E5B9ull, kMix2 = 0x94D049BB133111EBull;

inline uint64_t splitmix64(uint64_t z) {  // masks.py's mix
  z = (z ^ (z >> 30)) * kMix1;
  z = (z ^ (z >> 27)) * kMix2;
  return z ^ (z >> 31);
}

template <typename T>
void fill(T* __restrict__ out, int64_t begin, int64_t end, uint64_t seed, uint64_t offset,
          uint64_t threshold, T value) {
  for (int64_t k = begin; k < end; ++k) {
    const uint64_t u = splitmix64(seed + (offset + static_cast<uint64_t>(k) + 1) * kGamma);
    out[k] = (u >> 32) < threshold ? value : T(0);
  }
}

}  // namespace

at::Tensor keyed_bernoulli(const std::vector<int64_t>& shape, int64_t seed, int64_t offset,
                           int64_t threshold, double value, c10::ScalarType dtype) {
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, "dtype: expected float32 or float64, got ",
              dtype);
  TORCH_CHECK(threshold >= 0 && threshold <= (int64_t{1} << 32), "threshold: expected 0..2^32, got ",
              threshold);
  TORCH_CHECK(offset >= 0, "offset: expected >= 0, got ", offset);
  at::Tensor out = at::empty(shape, at::TensorOptions().dtype(dtype));
  const int64_t n = out.numel();
  AT_DISPATCH_FLOATING_TYPES(dtype, "lstmbyhand.keyed_bernoulli", [&] {
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, n, 1 << 16, [&](int64_t k0, int64_t k1) {
      fill<scalar_t>(o, k0, k1, static_cast<uint64_t>(seed), static_cast<uint64_t>(offset),
                     static_cast<uint64_t>(threshold), static_cast<scalar_t>(value));
    });
  });
  return out;
}

}  // namespace lstmbyhand
