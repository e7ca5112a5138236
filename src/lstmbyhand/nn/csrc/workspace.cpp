// The buffer pool, checked arguments and weight cache of workspace.h.
#include "workspace.h"

#include "blas.h"

#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/accumulate.h>

#include <algorithm>
#include <cstring>
#include <mutex>

namespace lstmbyhand {

at::Tensor reusable(at::IntArrayRef shape, const at::TensorOptions& opts, bool zero) {
  const int64_t numel = c10::multiply_integers(shape);
  const size_t nbytes = static_cast<size_t>(numel) * opts.dtype().itemsize();
  if (nbytes < (size_t{1} << 16)) return zero ? at::zeros(shape, opts) : at::empty(shape, opts);
  static std::mutex mutex;
  static std::vector<at::Storage> pool;  // each referenced by the pool alone while free
  at::Storage storage;
  {
    std::lock_guard<std::mutex> lock(mutex);
    for (const at::Storage& s : pool)
      if (s.use_count() == 1 && s.nbytes() == nbytes) {
        storage = s;
        break;
      }
    if (!storage) {
      storage = at::empty({numel}, opts).storage();
      if (pool.size() >= 32) {  // make room: drop a free block, if any
        auto free = std::find_if(pool.begin(), pool.end(), [](const at::Storage& s) { return s.use_count() == 1; });
        if (free != pool.end()) pool.erase(free);
      }
      if (pool.size() < 32) pool.push_back(storage);
    }
  }
  at::Tensor t = at::empty({0}, opts).set_(storage, 0, shape);  // a plain tensor on that memory
  if (zero) t.zero_();
  return t;
}

at::Tensor checked(const at::Tensor& t, const at::Tensor& like, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, ": expected a CPU tensor, got ", t.device());
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), name, ": expected dtype ", like.scalar_type(),
              ", got ", t.scalar_type());
  if (t.is_contiguous()) return t;
  return reusable(t.sizes(), t.options()).copy_(t);
}

at::Tensor paneled_weights(const std::vector<at::Tensor>& parts) {
  struct Entry {
    std::vector<at::Tensor> sources;  // copies of the parts when prepared
    std::vector<const void*> ptrs;
    at::Tensor result;
  };
  static std::mutex mutex;
  static std::vector<Entry> cache;  // the most recently prepared last
  std::vector<const void*> ptrs;
  for (const at::Tensor& w : parts) ptrs.push_back(w.data_ptr());
  auto same_key = [&](const Entry& e) {
    if (e.ptrs != ptrs) return false;
    for (size_t i = 0; i < parts.size(); ++i)
      if (e.sources[i].sizes() != parts[i].sizes() || e.sources[i].scalar_type() != parts[i].scalar_type())
        return false;
    return true;
  };
  auto same_values = [&](const Entry& e) {
    for (size_t i = 0; i < parts.size(); ++i)
      if (std::memcmp(e.sources[i].data_ptr(), ptrs[i], parts[i].nbytes()) != 0) return false;
    return true;
  };
  std::lock_guard<std::mutex> lock(mutex);
  auto it = std::find_if(cache.begin(), cache.end(), same_key);
  if (it != cache.end() && same_values(*it)) return it->result;
  const at::Tensor laid_out = panels(at::cat(parts, 1));  // (G ΣK,)
  if (it != cache.end() && it->result.use_count() == 1) {  // same memory, new values: refill in place
    for (size_t i = 0; i < parts.size(); ++i) it->sources[i].copy_(parts[i]);
    it->result.copy_(laid_out);
    return it->result;
  }
  if (it != cache.end()) cache.erase(it);
  if (cache.size() >= 16) cache.erase(cache.begin());
  std::vector<at::Tensor> sources;
  for (const at::Tensor& w : parts) sources.push_back(w.clone());
  cache.push_back({sources, ptrs, laid_out});
  return laid_out;
}

}  // namespace lstmbyhand
