// The LSTM cell's pointwise arithmetic, written once for every C++ kernel: the activations, F2-F4 of
// one step over a row of H units and its derivative B4-B2, in a scalar form (any H, float or double)
// and, where the compiler targets AVX-512, a 16-wide float form that runs the same equations on the
// row's first H - H % 16 units. bptt.cpp's sequence kernels and fit_adam.cpp's training loop both
// call cell_forward and cell_backward. Labels are bptt.py's (its docstring has the equations):
//   F2  i = σ(z_i), f = σ(z_f), g = tanh(z_g), o = σ(z_o)      (z = F1's pre-activations + bias)
//   F3  c_t = f ⊙ c_{t-1} + i ⊙ g
//   F4  r_t = o ⊙ tanh(c_t)
//   B4  do = dr ⊙ tanh(c_t),  dc_t = dc_{t+1}' + dr ⊙ o ⊙ (1 - tanh²(c_t))
//   B3  di = dc_t ⊙ g, df = dc_t ⊙ c_{t-1}, dg = dc_t ⊙ i, dc_{t-1}' = dc_t ⊙ f
//   B2  dz = d(gate) ⊙ σ'(·) = d(gate) ⊙ a (1 - a) for i, f, o; dg (1 - g²) for g
//
// Non-finite values follow IEEE arithmetic exactly as torch's ops do: NaN stays NaN through every
// activation, σ(-inf) = 0, σ(+inf) = 1, tanh(±inf) = ±1 (so 0 · inf = NaN appears where it does in
// nn.LSTM); tests/nn/test_nonfinite.py checks the pattern for every remainder of H mod 16.
//
// Plain C++ and intrinsics only (no ATen): a test harness can compile it on its own.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if !defined(LSTMBYHAND_AVX512) && defined(__AVX512F__)
#define LSTMBYHAND_AVX512 1
#include <immintrin.h>
#endif

namespace lstmbyhand {

// exp for float, branch-free so that GCC vectorizes the loops that call it: Cephes' polynomial on
// x - n ln 2, |relative error| < 2e-7. x is clamped to [-87, 89] first, written so that NaN passes
// through (a comparison with NaN is false); 2^n is built from the bits of n + 127, so n = 128
// (x >= 88.38...) gives 2^128 = +inf and exp(+inf) = +inf, as std::exp; exp(-inf) = e^-87 ≈ 1.6e-38,
// which every caller adds to 1 (σ(+inf) = 1 and tanh(+inf) = 1 exactly). double keeps std::exp so that
// float64 results match PyTorch's to rounding.
inline float exp_approx(float x) {
  x = x < -87.0f ? -87.0f : x;  // NaN stays NaN
  x = x > 89.0f ? 89.0f : x;
  const float shifted = x * 1.44269504088896341f + 12582912.0f;  // round(x / ln 2) by the 1.5*2^23 trick
  const float n = shifted - 12582912.0f;
  float r = x - n * 0.693359375f;  // x - n ln 2 in two parts (Cody-Waite)
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e_r = p * r * r + r + 1.0f;  // exp(r), |r| <= ln2 / 2
  uint32_t n_bits;  // n sits in the low mantissa bits of `shifted`: read there, not converted (a
  std::memcpy(&n_bits, &shifted, sizeof(n_bits));  // NaN's float -> int conversion is undefined)
  const uint32_t bits = (n_bits - 0x4B400000u + 127u) << 23;  // 2^n; 0x4B400000: 1.5*2^23's bits
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return e_r * scale;
}

inline float sigmoid(float x) { return 1.0f / (1.0f + exp_approx(-x)); }
inline float tanh_act(float x) { return 2.0f / (1.0f + exp_approx(-2.0f * x)) - 1.0f; }
inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
inline double tanh_act(double x) { return std::tanh(x); }

#if defined(LSTMBYHAND_AVX512)
// exp_approx on 16 floats: the same clamp (max / min return their second operand when either is NaN,
// so x goes second) and polynomial; scalef(e_r, n) = e_r 2^n overflows to +inf past ln(FLT_MAX).
inline __m512 exp16(__m512 x) {
  x = _mm512_min_ps(_mm512_set1_ps(89.0f), _mm512_max_ps(_mm512_set1_ps(-87.0f), x));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  const __m512 e_r = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(e_r, n);  // e_r 2^n
}
// 1 / d as rcp14 and one Newton step (relative error ~1e-8), a fraction of a division's cost. NaN
// stays NaN; d = +inf (exp16 overflowed: σ(-inf), tanh(-inf)) gives 0, as 1 / inf, where the Newton
// step alone would give 0 (2 - inf 0) = NaN.
inline __m512 recip16(__m512 d) {
  const __m512 r = _mm512_rcp14_ps(d);
  const __m512 refined = _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0f)));  // r (2 - d r)
  const __mmask16 infinite = _mm512_cmp_ps_mask(d, _mm512_set1_ps(INFINITY), _CMP_EQ_OQ);
  return _mm512_mask_blend_ps(infinite, refined, _mm512_setzero_ps());
}
inline __m512 sigmoid16(__m512 x) {
  return recip16(_mm512_add_ps(_mm512_set1_ps(1.0f), exp16(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}
inline __m512 tanh16(__m512 x) {  // 2 σ(2x) - 1
  const __m512 e = exp16(_mm512_mul_ps(x, _mm512_set1_ps(-2.0f)));
  return _mm512_fmsub_ps(_mm512_set1_ps(2.0f), recip16(_mm512_add_ps(_mm512_set1_ps(1.0f), e)),
                         _mm512_set1_ps(1.0f));
}
#endif

// F2-F4 for one row of H units. z, b: the row's 4H pre-activations (i | f | g | o, H each, F1 without
// its bias) and the bias (4H); c: c_{t-1} in, c_t out; h and y both get r_t (the recurrent copy and
// the output; distinct buffers). With the cache: a gets the activated gates (i | f | g | o), cp c_{t-1},
// tc tanh(c_t). No two pointers may overlap.
template <typename T, bool kCache>
inline void cell_forward(int64_t H, const T* __restrict__ z, const T* __restrict__ b,
                         T* __restrict__ c, T* __restrict__ h, T* __restrict__ y,
                         T* __restrict__ a, T* __restrict__ cp, T* __restrict__ tc) {
  int64_t k = 0;
#if defined(LSTMBYHAND_AVX512)
  if constexpr (std::is_same_v<T, float>) {
    for (; k + 16 <= H; k += 16) {  // the loop below, 16 units at a time
      const __m512 i = sigmoid16(_mm512_add_ps(_mm512_loadu_ps(z + k), _mm512_loadu_ps(b + k)));  // F2
      const __m512 f =
          sigmoid16(_mm512_add_ps(_mm512_loadu_ps(z + H + k), _mm512_loadu_ps(b + H + k)));  // F2
      const __m512 g =
          tanh16(_mm512_add_ps(_mm512_loadu_ps(z + 2 * H + k), _mm512_loadu_ps(b + 2 * H + k)));  // F2
      const __m512 o =
          sigmoid16(_mm512_add_ps(_mm512_loadu_ps(z + 3 * H + k), _mm512_loadu_ps(b + 3 * H + k)));  // F2
      const __m512 c_prev = _mm512_loadu_ps(c + k);
      const __m512 c_t = _mm512_fmadd_ps(f, c_prev, _mm512_mul_ps(i, g));  // F3
      const __m512 tanh_c = tanh16(c_t);  // F4
      const __m512 r = _mm512_mul_ps(o, tanh_c);  // F4
      _mm512_storeu_ps(c + k, c_t);
      _mm512_storeu_ps(h + k, r);
      _mm512_storeu_ps(y + k, r);
      if constexpr (kCache) {
        _mm512_storeu_ps(a + k, i);
        _mm512_storeu_ps(a + H + k, f);
        _mm512_storeu_ps(a + 2 * H + k, g);
        _mm512_storeu_ps(a + 3 * H + k, o);
        _mm512_storeu_ps(cp + k, c_prev);
        _mm512_storeu_ps(tc + k, tanh_c);
      }
    }
  }
#endif
#pragma GCC ivdep
  for (; k < H; ++k) {  // the scalar form (GCC vectorizes it where no 16-wide form ran)
    const T i = sigmoid(z[k] + b[k]);  // F2
    const T f = sigmoid(z[H + k] + b[H + k]);  // F2
    const T g = tanh_act(z[2 * H + k] + b[2 * H + k]);  // F2
    const T o = sigmoid(z[3 * H + k] + b[3 * H + k]);  // F2
    const T c_prev = c[k];
    const T c_t = f * c_prev + i * g;  // F3
    const T tanh_c = tanh_act(c_t);  // F4
    const T r = o * tanh_c;  // F4
    c[k] = c_t;
    h[k] = r;
    y[k] = r;
    if constexpr (kCache) {
      a[k] = i;
      a[H + k] = f;
      a[2 * H + k] = g;
      a[3 * H + k] = o;
      cp[k] = c_prev;
      tc[k] = tanh_c;
    }
  }
}

// B4-B2 for one row, and B1's db: from the activated gates a (4H), c_{t-1} (H), tanh(c_t) (H) and dr
// (H, the gradient into r_t), the pre-activation gradients dz (4H, gate q at dz[q H + k]), summed into
// db (4H); dc (H) goes from dc_{t+1}' (the gradient reaching c_t from later steps) to dc_t ⊙ f. No
// vector intrinsics: there is no transcendental here, and GCC vectorizes this loop at any width.
template <typename T>
inline void cell_backward(int64_t H, const T* __restrict__ a, const T* __restrict__ c_prev,
                          const T* __restrict__ tc, const T* __restrict__ dr, T* __restrict__ dc,
                          T* __restrict__ dz, T* __restrict__ db) {
#pragma GCC ivdep
  for (int64_t k = 0; k < H; ++k) {
    const T i = a[k], f = a[H + k], g = a[2 * H + k], o = a[3 * H + k];
    const T d_o = dr[k] * tc[k];  // B4
    const T dc_t = dc[k] + dr[k] * o * (T(1) - tc[k] * tc[k]);  // B4
    const T dz_i = dc_t * g * i * (T(1) - i);  // B3, B2: input gate
    const T dz_f = dc_t * c_prev[k] * f * (T(1) - f);  // B3, B2: forget gate
    const T dz_g = dc_t * i * (T(1) - g * g);  // B3, B2: candidate
    const T dz_o = d_o * o * (T(1) - o);  // B2: output gate
    dc[k] = dc_t * f;  // B3
    dz[k] = dz_i;
    dz[H + k] = dz_f;
    dz[2 * H + k] = dz_g;
    dz[3 * H + k] = dz_o;
    db[k] += dz_i;  // B1: db = Σ_t Σ_batch dz
    db[H + k] += dz_f;
    db[2 * H + k] += dz_g;
    db[3 * H + k] += dz_o;
  }
}

// ---- the variants (variants.py's declaration, line for line; its labels and names) -------------
// One row of a variant step, F2-F4 forward and B4-B2 backward, each line beside its derivative's
// label. Every option is a loop-invariant bool. In the scalar forms both sides of a choice are
// computed and one is kept, so GCC still vectorizes the loops, and an option that is off reads a
// neutral buffer (peepholes 0, layer-norm gain 1 and bias 0, zoneout ζ 0), so no pointer is ever
// null; the 16-wide forms branch on it instead (always the same way), skipping what it removes.

// Variant.flags (variants.py): PEEPHOLE, COUPLED, LAYER_NORM, then the five ablations.
struct VariantFlags {
  bool peephole, coupled, layer_norm, no_i, no_f, no_o, no_g_act, no_c_act;
  bool zoned_c = false, zoned_h = false;  // zoneout masks given (set by the sequence kernels)
  explicit VariantFlags(int64_t bits)
      : peephole(bits & 1), coupled(bits & 2), layer_norm(bits & 4), no_i(bits & 8),
        no_f(bits & 16), no_o(bits & 32), no_g_act(bits & 64), no_c_act(bits & 128) {}
};

constexpr double kLayerNormEps = 1e-5;  // variants.LN_EPS

#if defined(LSTMBYHAND_AVX512)
inline __mmask16 all_or_none(bool on) { return on ? __mmask16(0xFFFF) : __mmask16(0); }
#endif

// Row sums for layer norm. One sum is a chain of dependent additions (4 cycles each), so the sums
// run in independent partial sums: kParts scalars (GCC packs them into vector adds), and for float
// on AVX-512 16-wide registers over the row's first n - n % 16 values (the scalar form takes the
// rest: any n, and double).
constexpr int64_t kParts = 32;

template <typename T>
inline T sum_parts(T* part) {  // the kParts partial sums, added pairwise
  for (int64_t w = kParts / 2; w >= 1; w /= 2)
    for (int64_t j = 0; j < w; ++j) part[j] += part[j + w];
  return part[0];
}

// Σ_k f(k) over k0 <= k < n.
template <typename T, typename F>
inline T row_sum(int64_t k0, int64_t n, const F& f) {
  if (k0 >= n) return T(0);  // nothing left to the scalar form (the 16-wide one took the row)
  T part[kParts] = {};
  int64_t k = k0;
  for (; k + kParts <= n; k += kParts)
    for (int64_t j = 0; j < kParts; ++j) part[j] += f(k + j);
  T total = sum_parts(part);
  for (; k < n; ++k) total += f(k);
  return total;
}

#if defined(LSTMBYHAND_AVX512)
// Σ_k f(k) over k < n16 (a multiple of 16), f(k) the 16 values at k..k+15, in four registers.
template <typename F>
inline float sum16(int64_t n16, const F& f) {
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t k = 0;
  for (; k + 64 <= n16; k += 64) {
    s0 = _mm512_add_ps(s0, f(k));
    s1 = _mm512_add_ps(s1, f(k + 16));
    s2 = _mm512_add_ps(s2, f(k + 32));
    s3 = _mm512_add_ps(s3, f(k + 48));
  }
  for (; k < n16; k += 16) s0 = _mm512_add_ps(s0, f(k));
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}
#endif

// The units of a row that the 16-wide forms take (the rest run scalar): n - n % 16 for float on
// AVX-512, else none.
template <typename T>
constexpr int64_t wide_part(int64_t n) {
#if defined(LSTMBYHAND_AVX512)
  if constexpr (std::is_same_v<T, float>) return n - n % 16;
#endif
  return 0 * n;
}

// The mean of a (n) into *mean, and 1/std (population variance, two passes, as torch).
template <typename T>
__attribute__((always_inline)) inline T layer_norm_stats(int64_t n, const T* __restrict__ a, T* mean_out) {
  const int64_t w = wide_part<T>(n);
#if defined(LSTMBYHAND_AVX512)
  if constexpr (std::is_same_v<T, float>) {
    if (w == n && n > 0) {  // one pass over a row of 16-wide blocks: Σ d and Σ d² of d = a - a_0
      // (shifted by the row's first value, so that the variance Σ d²/n - (Σ d/n)² does not cancel
      // when the mean is far from 0), eight independent sums
      const __m512 shift = _mm512_set1_ps(a[0]);
      __m512 s0 = _mm512_setzero_ps(), s1 = s0, q0 = s0, q1 = s0;
      int64_t k = 0;
      for (; k + 32 <= n; k += 32) {
        const __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(a + k), shift);
        const __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(a + k + 16), shift);
        s0 = _mm512_add_ps(s0, d0);
        s1 = _mm512_add_ps(s1, d1);
        q0 = _mm512_fmadd_ps(d0, d0, q0);
        q1 = _mm512_fmadd_ps(d1, d1, q1);
      }
      for (; k < n; k += 16) {
        const __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(a + k), shift);
        s0 = _mm512_add_ps(s0, d0);
        q0 = _mm512_fmadd_ps(d0, d0, q0);
      }
      const float d_mean = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1)) / float(n);
      const float var = _mm512_reduce_add_ps(_mm512_add_ps(q0, q1)) / float(n) - d_mean * d_mean;
      *mean_out = a[0] + d_mean;
      return 1.0f / std::sqrt((var > 0.0f ? var : 0.0f) + float(kLayerNormEps));
    }
  }
#endif
  T sum = row_sum<T>(w, n, [&](int64_t k) { return a[k]; });
#if defined(LSTMBYHAND_AVX512)
  if constexpr (std::is_same_v<T, float>) sum += sum16(w, [&](int64_t k) { return _mm512_loadu_ps(a + k); });
#endif
  const T mean = sum / T(n);
  T sq = row_sum<T>(w, n, [&](int64_t k) { return (a[k] - mean) * (a[k] - mean); });
#if defined(LSTMBYHAND_AVX512)
  if constexpr (std::is_same_v<T, float>) {
    const __m512 m = _mm512_set1_ps(mean);
    sq += sum16(w, [&](int64_t k) {
      const __m512 d = _mm512_sub_ps(_mm512_loadu_ps(a + k), m);
      return _mm512_mul_ps(d, d);
    });
  }
#endif
  *mean_out = mean;
  return T(1) / std::sqrt(sq / T(n) + T(kLayerNormEps));
}

// LN(a) = (a - mean a) / std a over n values, handed on as it is made: put16(k, LN(a) at k..k+15)
// over the row's 16-wide blocks (float on AVX-512), put(k, LN(a)_k) over the rest; returns 1/std.
// Each entry of a is read before put gets it, so put may write over a at the same index.
template <typename T, typename Put16, typename Put>
inline T layer_norm_each(int64_t n, const T* a, const Put16& put16, const Put& put) {
  T mean;
  const T rstd = layer_norm_stats(n, a, &mean);
  int64_t k = 0;
#if defined(LSTMBYHAND_AVX512)
  if constexpr (std::is_same_v<T, float>) {
    const __m512 m = _mm512_set1_ps(mean), r = _mm512_set1_ps(rstd);
    for (; k + 16 <= n; k += 16) put16(k, _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(a + k), m), r));
  }
#endif
  for (; k < n; ++k) put(k, (a[k] - mean) * rstd);
  return rstd;
}

// LN(a) into xhat (n), returns 1/std. xhat may be a itself (in place).
template <typename T>
inline T layer_norm_row(int64_t n, const T* a, T* xhat) {
#if defined(LSTMBYHAND_AVX512)
  const auto put16 = [&](int64_t k, __m512 x) { _mm512_storeu_ps(xhat + k, x); };
#else
  const auto put16 = [](int64_t, T) {};  // no 16-wide form
#endif
  return layer_norm_each(n, a, put16, [&](int64_t k, T x) { xhat[k] = x; });
}

// F1 with layer norm for one row of n = 4H: z holds a_h = U h_in and gets LN(a_x) γ_x + LN(a_h) γ_h
// (the bias is added with F2, in variant_cell_forward), from xhat_x = LN(a_x) (n); xhat_h (n) gets
// LN(a_h); returns 1/std(a_h).
template <typename T>
inline T layer_norm_gates_row(int64_t n, T* __restrict__ z, const T* __restrict__ xhat_x,
                              const T* __restrict__ gamma_x, const T* __restrict__ gamma_h,
                              T* __restrict__ xhat_h) {
#if defined(LSTMBYHAND_AVX512)
  const auto put16 = [&](int64_t k, __m512 xh) {  // F1: LN(a_h), z = LN(a_x) γ_x + LN(a_h) γ_h
    _mm512_storeu_ps(xhat_h + k, xh);
    _mm512_storeu_ps(z + k, _mm512_fmadd_ps(_mm512_loadu_ps(xhat_x + k), _mm512_loadu_ps(gamma_x + k),
                                            _mm512_mul_ps(xh, _mm512_loadu_ps(gamma_h + k))));
  };
#else
  const auto put16 = [](int64_t, T) {};  // no 16-wide form
#endif
  return layer_norm_each(n, z, put16, [&](int64_t k, T xh) {
    xhat_h[k] = xh;
    z[k] = xhat_x[k] * gamma_x[k] + xh * gamma_h[k];
  });
}

// B1 with layer norm for one row of n = 4H: from dz (n) and each side's gain γ, xhat = LN(a) and
// 1/std, da = LN'(dz γ) = (e - mean e - xhat mean(e xhat)) / std with e = dz γ, for U h (into da_h)
// and for W x (into dz itself: dz is not needed after), and dγ += dz xhat for each. One pass for the
// four sums and both dγ, one for both results.
template <typename T>
inline void layer_norm_gates_backward_row(int64_t n, T* __restrict__ dz, const T* __restrict__ gamma_h,
                                          const T* __restrict__ xhat_h, T rstd_h, T* __restrict__ da_h,
                                          T* __restrict__ d_gamma_h, const T* __restrict__ gamma_x,
                                          const T* __restrict__ xhat_x, T rstd_x,
                                          T* __restrict__ d_gamma_x) {
  const int64_t w = wide_part<T>(n);
  T sum_h = T(0), sum_hx = T(0), sum_x = T(0), sum_xx = T(0);
  int64_t k = w;
  if (w < n) {  // the scalar form, on what the 16-wide one leaves
    T s_h[kParts] = {}, s_hx[kParts] = {}, s_x[kParts] = {}, s_xx[kParts] = {};
    const auto first = [&](int64_t i, int64_t j) {
      const T e_h = dz[i] * gamma_h[i], e_x = dz[i] * gamma_x[i];
      d_gamma_h[i] += dz[i] * xhat_h[i];  // B1: dγ_h
      d_gamma_x[i] += dz[i] * xhat_x[i];  // B1: dγ_x
      s_h[j] += e_h;
      s_hx[j] += e_h * xhat_h[i];
      s_x[j] += e_x;
      s_xx[j] += e_x * xhat_x[i];
    };
    for (; k + kParts <= n; k += kParts)
      for (int64_t j = 0; j < kParts; ++j) first(k + j, j);
    for (; k < n; ++k) first(k, 0);
    sum_h = sum_parts(s_h), sum_hx = sum_parts(s_hx), sum_x = sum_parts(s_x), sum_xx = sum_parts(s_xx);
  }
#if defined(LSTMBYHAND_AVX512)
  if constexpr (std::is_same_v<T, float>) {
    // two sets of the four sums (even and odd blocks of 16, in registers), so that no chain of
    // adds is longer than half the row
    __m512 v_h0 = _mm512_setzero_ps(), v_hx0 = v_h0, v_x0 = v_h0, v_xx0 = v_h0;
    __m512 v_h1 = v_h0, v_hx1 = v_h0, v_x1 = v_h0, v_xx1 = v_h0;
    const auto block = [&](int64_t i, __m512& s_h, __m512& s_hx, __m512& s_x, __m512& s_xx) {
      const __m512 d = _mm512_loadu_ps(dz + i), xh = _mm512_loadu_ps(xhat_h + i);
      const __m512 xx = _mm512_loadu_ps(xhat_x + i);
      const __m512 e_h = _mm512_mul_ps(d, _mm512_loadu_ps(gamma_h + i));
      const __m512 e_x = _mm512_mul_ps(d, _mm512_loadu_ps(gamma_x + i));
      _mm512_storeu_ps(d_gamma_h + i, _mm512_fmadd_ps(d, xh, _mm512_loadu_ps(d_gamma_h + i)));
      _mm512_storeu_ps(d_gamma_x + i, _mm512_fmadd_ps(d, xx, _mm512_loadu_ps(d_gamma_x + i)));
      s_h = _mm512_add_ps(s_h, e_h);
      s_hx = _mm512_fmadd_ps(e_h, xh, s_hx);
      s_x = _mm512_add_ps(s_x, e_x);
      s_xx = _mm512_fmadd_ps(e_x, xx, s_xx);
    };
    for (k = 0; k + 32 <= w; k += 32) {
      block(k, v_h0, v_hx0, v_x0, v_xx0);
      block(k + 16, v_h1, v_hx1, v_x1, v_xx1);
    }
    if (k < w) block(k, v_h0, v_hx0, v_x0, v_xx0);
    sum_h += _mm512_reduce_add_ps(_mm512_add_ps(v_h0, v_h1));
    sum_hx += _mm512_reduce_add_ps(_mm512_add_ps(v_hx0, v_hx1));
    sum_x += _mm512_reduce_add_ps(_mm512_add_ps(v_x0, v_x1));
    sum_xx += _mm512_reduce_add_ps(_mm512_add_ps(v_xx0, v_xx1));
  }
#endif
  const T mean_h = sum_h / T(n), mean_hx = sum_hx / T(n), mean_x = sum_x / T(n), mean_xx = sum_xx / T(n);
  k = 0;
#if defined(LSTMBYHAND_AVX512)
  if constexpr (std::is_same_v<T, float>) {
    const __m512 m_h = _mm512_set1_ps(mean_h), m_hx = _mm512_set1_ps(mean_hx), r_h = _mm512_set1_ps(rstd_h);
    const __m512 m_x = _mm512_set1_ps(mean_x), m_xx = _mm512_set1_ps(mean_xx), r_x = _mm512_set1_ps(rstd_x);
    for (; k < w; k += 16) {
      const __m512 d = _mm512_loadu_ps(dz + k);
      const __m512 e_h = _mm512_mul_ps(d, _mm512_loadu_ps(gamma_h + k));
      const __m512 e_x = _mm512_mul_ps(d, _mm512_loadu_ps(gamma_x + k));
      _mm512_storeu_ps(da_h + k, _mm512_mul_ps(_mm512_fnmadd_ps(_mm512_loadu_ps(xhat_h + k), m_hx,
                                                                _mm512_sub_ps(e_h, m_h)), r_h));
      _mm512_storeu_ps(dz + k, _mm512_mul_ps(_mm512_fnmadd_ps(_mm512_loadu_ps(xhat_x + k), m_xx,
                                                              _mm512_sub_ps(e_x, m_x)), r_x));
    }
  }
#endif
  for (; k < n; ++k) {
    const T e_h = dz[k] * gamma_h[k], e_x = dz[k] * gamma_x[k];
    da_h[k] = (e_h - mean_h - xhat_h[k] * mean_hx) * rstd_h;  // B1: LN'(dz γ_h)
    dz[k] = (e_x - mean_x - xhat_x[k] * mean_xx) * rstd_x;  // B1: LN'(dz γ_x)
  }
}

// LN'(dy) in place: d (n) holds dy and gets (dy - mean dy - xhat mean(dy xhat)) / std.
template <typename T>
inline void layer_norm_backward_row(int64_t n, T* __restrict__ d, const T* __restrict__ xhat, T rstd) {
  const int64_t w = wide_part<T>(n);
  T sum_d = row_sum<T>(w, n, [&](int64_t k) { return d[k]; });
  T sum_dx = row_sum<T>(w, n, [&](int64_t k) { return d[k] * xhat[k]; });
#if defined(LSTMBYHAND_AVX512)
  if constexpr (std::is_same_v<T, float>) {
    __m512 v_d = _mm512_setzero_ps(), v_dx = v_d;
    for (int64_t k = 0; k < w; k += 16) {
      const __m512 dk = _mm512_loadu_ps(d + k);
      v_d = _mm512_add_ps(v_d, dk);
      v_dx = _mm512_fmadd_ps(dk, _mm512_loadu_ps(xhat + k), v_dx);
    }
    sum_d += _mm512_reduce_add_ps(v_d);
    sum_dx += _mm512_reduce_add_ps(v_dx);
  }
#endif
  const T mean_d = sum_d / T(n), mean_dx = sum_dx / T(n);
  int64_t k = 0;
#if defined(LSTMBYHAND_AVX512)
  if constexpr (std::is_same_v<T, float>) {
    const __m512 m_d = _mm512_set1_ps(mean_d), m_dx = _mm512_set1_ps(mean_dx), r = _mm512_set1_ps(rstd);
    for (; k < w; k += 16)
      _mm512_storeu_ps(d + k, _mm512_mul_ps(_mm512_fnmadd_ps(_mm512_loadu_ps(xhat + k), m_dx,
                                                             _mm512_sub_ps(_mm512_loadu_ps(d + k), m_d)), r));
  }
#endif
  for (; k < n; ++k) d[k] = (d[k] - mean_d - xhat[k] * mean_dx) * rstd;
}

// The forward of one row. z: the 4H pre-activations of F1 without the bias, b (4H) (no peepholes);
// p: the peepholes p_i | p_f | p_o (3H); zc: ζ_c (H); ln_w, ln_b: γ_c, β_c (H); c: c_{t-1} in, c_t out.
// Writes the cache row (a: gates i | f | g | o; cp: c_{t-1}; ct: c_t; act: a; chat: LN(c_t) and
// *rstd_c with layer_norm) and r = o ⊙ a (H).
template <typename T>
inline void variant_cell_forward(int64_t H, const VariantFlags& v, const T* __restrict__ z,
                                 const T* __restrict__ b, const T* __restrict__ p, const T* __restrict__ zc,
                                 const T* __restrict__ ln_w, const T* __restrict__ ln_b,
                                 T* __restrict__ c, T* __restrict__ a, T* __restrict__ cp,
                                 T* __restrict__ ct, T* __restrict__ act, T* __restrict__ chat,
                                 T* __restrict__ rstd_c, T* __restrict__ r) {
  const bool no_i = v.no_i, no_f = v.no_f, coupled = v.coupled, no_g = v.no_g_act,
             zoned = v.zoned_c, no_o = v.no_o, no_a = v.no_c_act, ln = v.layer_norm;
  // F2-F3 at unit k: writes the cache's i, f, g, c_{t-1}, c_t and c; returns c_t
  const auto f2_f3 = [&](int64_t k) {
    const T c_prev = c[k];
    const T i = no_i ? T(1) : sigmoid((z[k] + b[k]) + p[k] * c_prev);  // F2 (peephole p_i; NIG)
    const T f_own = sigmoid((z[H + k] + b[H + k]) + p[H + k] * c_prev);  // F2 (peephole p_f)
    const T f = coupled ? T(1) - i : (no_f ? T(1) : f_own);  // F2 (CIFG; NFG)
    const T z_g = z[2 * H + k] + b[2 * H + k];
    const T g = no_g ? z_g : tanh_act(z_g);  // F2 (NIAF)
    const T c_new = f * c_prev + i * g;  // F3
    const T c_t = zoned ? zc[k] * c_prev + (T(1) - zc[k]) * c_new : c_new;  // F3: zoneout
    a[k] = i;
    a[H + k] = f;
    a[2 * H + k] = g;
    cp[k] = c_prev;
    ct[k] = c_t;
    c[k] = c_t;
    return c_t;
  };
  // F4 at unit k from c_t (and LN(c_t) in chat with layer_norm): writes o, a and r
  const auto f4 = [&](int64_t k, T c_t) {
    const T o = no_o ? T(1) : sigmoid((z[3 * H + k] + b[3 * H + k]) + p[2 * H + k] * c_t);  // F4 (p_o; NOG)
    const T s = ln ? chat[k] * ln_w[k] + ln_b[k] : c_t;  // F4 (layer_norm)
    const T a_k = no_a ? s : tanh_act(s);  // F4 (NOAF)
    a[3 * H + k] = o;
    act[k] = a_k;
    r[k] = o * a_k;  // F4
  };
  const int64_t w = wide_part<T>(H);  // units of the 16-wide forms, below (float on AVX-512)
#if defined(LSTMBYHAND_AVX512)
  // The same lines, 16 units at a time. An option is a loop-invariant bool: each choice is a branch
  // that always goes the same way, so a removed gate or activation costs no exp, and an absent
  // peephole or zoneout mask is not read (the neutral buffers stay untouched).
  [[maybe_unused]] const __m512 one = _mm512_set1_ps(1.0f);
  [[maybe_unused]] const bool peep = v.peephole;
  [[maybe_unused]] const auto zb = [&](int64_t i) {  // z + b at i..i+15 (F1's bias)
    return _mm512_add_ps(_mm512_loadu_ps(z + i), _mm512_loadu_ps(b + i));
  };
  // z + b + p ⊙ c at i..i+15 (peephole p at pi; without peepholes z + b)
  [[maybe_unused]] const auto zbp = [&](int64_t i, int64_t pi, __m512 c_k) {
    return peep ? _mm512_fmadd_ps(_mm512_loadu_ps(p + pi), c_k, zb(i)) : zb(i);
  };
  [[maybe_unused]] const auto f2_f3_16 = [&](int64_t k) {
    const __m512 c_prev = _mm512_loadu_ps(c + k);
    const __m512 i = no_i ? one : sigmoid16(zbp(k, k, c_prev));  // F2 (peephole p_i; NIG)
    const __m512 f = coupled ? _mm512_sub_ps(one, i)  // F2 (CIFG)
                     : no_f  ? one                    // F2 (NFG)
                             : sigmoid16(zbp(H + k, H + k, c_prev));  // F2 (peephole p_f)
    const __m512 z_g = zb(2 * H + k);
    const __m512 g = no_g ? z_g : tanh16(z_g);  // F2 (NIAF)
    const __m512 c_new = _mm512_fmadd_ps(f, c_prev, _mm512_mul_ps(i, g));  // F3
    __m512 c_t = c_new;
    if (zoned) {  // F3: zoneout
      const __m512 zeta = _mm512_loadu_ps(zc + k);
      c_t = _mm512_fmadd_ps(zeta, c_prev, _mm512_mul_ps(_mm512_sub_ps(one, zeta), c_new));
    }
    _mm512_storeu_ps(a + k, i);
    _mm512_storeu_ps(a + H + k, f);
    _mm512_storeu_ps(a + 2 * H + k, g);
    _mm512_storeu_ps(cp + k, c_prev);
    _mm512_storeu_ps(ct + k, c_t);
    _mm512_storeu_ps(c + k, c_t);
    return c_t;
  };
  [[maybe_unused]] const auto f4_16 = [&](int64_t k, __m512 c_t) {
    const __m512 o = no_o ? one : sigmoid16(zbp(3 * H + k, 2 * H + k, c_t));  // F4 (p_o; NOG)
    const __m512 s = ln ? _mm512_fmadd_ps(_mm512_loadu_ps(chat + k), _mm512_loadu_ps(ln_w + k),
                                          _mm512_loadu_ps(ln_b + k))  // F4 (layer_norm)
                        : c_t;
    const __m512 a_k = no_a ? s : tanh16(s);  // F4 (NOAF)
    _mm512_storeu_ps(a + 3 * H + k, o);
    _mm512_storeu_ps(act + k, a_k);
    _mm512_storeu_ps(r + k, _mm512_mul_ps(o, a_k));  // F4
  };
#endif
  if (ln) {  // F4 needs LN over the whole row of c_t: F2-F3 first, then F4
#if defined(LSTMBYHAND_AVX512)
    if constexpr (std::is_same_v<T, float>)
      for (int64_t k = 0; k < w; k += 16) f2_f3_16(k);
#endif
#pragma GCC ivdep
    for (int64_t k = w; k < H; ++k) f2_f3(k);
    *rstd_c = layer_norm_row(H, ct, chat);  // F4: LN(c_t)
#if defined(LSTMBYHAND_AVX512)
    if constexpr (std::is_same_v<T, float>)
      for (int64_t k = 0; k < w; k += 16) f4_16(k, _mm512_loadu_ps(ct + k));
#endif
#pragma GCC ivdep
    for (int64_t k = w; k < H; ++k) f4(k, ct[k]);
  } else {  // F2-F4 in one pass
#if defined(LSTMBYHAND_AVX512)
    if constexpr (std::is_same_v<T, float>)
      for (int64_t k = 0; k < w; k += 16) f4_16(k, f2_f3_16(k));
#endif
#pragma GCC ivdep
    for (int64_t k = w; k < H; ++k) f4(k, f2_f3(k));
  }
}

// The backward of one row, B4-B2: from the cache row (a, cp, ct, act, chat, rstd_c), p, zc, ln_w and
// dr (H), dz (4H) and dc: dc_t's later part in, dc_{t-1} out; sums db (4H), dp (3H), dln_w, dln_b
// (H, with layer_norm only); ds (H) is scratch (with layer_norm only).
template <typename T>
inline void variant_cell_backward(int64_t H, const VariantFlags& v, const T* __restrict__ a,
                                  const T* __restrict__ cp, const T* __restrict__ ct,
                                  const T* __restrict__ act, const T* __restrict__ chat, T rstd_c,
                                  const T* __restrict__ p, const T* __restrict__ zc,
                                  const T* __restrict__ ln_w, const T* __restrict__ dr,
                                  T* __restrict__ dc, T* __restrict__ dz, T* __restrict__ db,
                                  T* __restrict__ dp, T* __restrict__ dln_w, T* __restrict__ dln_b,
                                  T* __restrict__ ds) {
  const bool no_i = v.no_i, no_f = v.no_f || v.coupled, coupled = v.coupled, no_g = v.no_g_act,
             zoned = v.zoned_c, no_o = v.no_o, no_a = v.no_c_act, ln = v.layer_norm;
  // B4: ds = dr ⊙ o ⊙ (1 - a²) (NOAF: dr ⊙ o). With layer norm, a pass of its own first (LN' needs
  // the whole row): ds becomes LN'(ds γ_c) in ds, dγ_c and dβ_c are summed; without, the loops below
  // compute ds themselves.
  const auto ds_of = [&](int64_t k) {
    const T o = a[3 * H + k], a_k = act[k];
    return no_a ? dr[k] * o : dr[k] * o * (T(1) - a_k * a_k);  // B4 (NOAF)
  };
  if (ln) {
#pragma GCC ivdep
    for (int64_t k = 0; k < H; ++k) {
      const T d = ds_of(k);
      dln_w[k] += d * chat[k];  // B4: dγ_c (layer_norm)
      dln_b[k] += d;  // B4: dβ_c
      ds[k] = d * ln_w[k];
    }
    layer_norm_backward_row(H, ds, chat, rstd_c);  // B4: LN'
  }
  int64_t k = 0;
#if defined(LSTMBYHAND_AVX512)
  if constexpr (std::is_same_v<T, float>) {  // the loop below, 16 units at a time, an option a branch
    const bool peep = v.peephole;  // that always goes the same way (as the forward)
    const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
    const auto add_to = [](T* sum, __m512 value) {
      _mm512_storeu_ps(sum, _mm512_add_ps(_mm512_loadu_ps(sum), value));
    };
    const auto add_product = [](T* sum, __m512 x, __m512 y) {  // sum += x y
      _mm512_storeu_ps(sum, _mm512_fmadd_ps(x, y, _mm512_loadu_ps(sum)));
    };
    for (; k + 16 <= H; k += 16) {
      const __m512 i = _mm512_loadu_ps(a + k), f = _mm512_loadu_ps(a + H + k);
      const __m512 g = _mm512_loadu_ps(a + 2 * H + k), o = _mm512_loadu_ps(a + 3 * H + k);
      const __m512 c_prev = _mm512_loadu_ps(cp + k);
      const __m512 d_r = _mm512_loadu_ps(dr + k), a_k = _mm512_loadu_ps(act + k);
      const __m512 d_o = _mm512_mul_ps(d_r, a_k);  // B4
      const __m512 dz_o =
          no_o ? zero : _mm512_mul_ps(_mm512_mul_ps(d_o, o), _mm512_sub_ps(one, o));  // B4 (NOG)
      __m512 d_s;  // B4: ds (layer_norm: LN'(ds γ_c), from the pass above)
      if (ln) {
        d_s = _mm512_loadu_ps(ds + k);
      } else {
        const __m512 dr_o = _mm512_mul_ps(d_r, o);
        d_s = no_a ? dr_o : _mm512_mul_ps(dr_o, _mm512_fnmadd_ps(a_k, a_k, one));  // (NOAF)
      }
      __m512 dc_t = _mm512_add_ps(_mm512_loadu_ps(dc + k), d_s);  // B4
      if (peep) {
        dc_t = _mm512_fmadd_ps(dz_o, _mm512_loadu_ps(p + 2 * H + k), dc_t);  // B4 (p_o)
        add_product(dp + 2 * H + k, dz_o, _mm512_loadu_ps(ct + k));  // B4: dp_o
      }
      __m512 dc_hat = dc_t, keep = zero;  // B3: zoneout
      if (zoned) {
        const __m512 zeta = _mm512_loadu_ps(zc + k);
        dc_hat = _mm512_mul_ps(_mm512_sub_ps(one, zeta), dc_t);
        keep = _mm512_mul_ps(zeta, dc_t);
      }
      const __m512 di_own = _mm512_mul_ps(dc_hat, g), df = _mm512_mul_ps(dc_hat, c_prev);  // B3
      const __m512 dg = _mm512_mul_ps(dc_hat, i);  // B3
      const __m512 di = coupled ? _mm512_sub_ps(di_own, df) : di_own;  // B3: f = 1 - i
      const __m512 dz_i =
          no_i ? zero : _mm512_mul_ps(_mm512_mul_ps(di, i), _mm512_sub_ps(one, i));  // B2 (NIG)
      const __m512 dz_f =
          no_f ? zero : _mm512_mul_ps(_mm512_mul_ps(df, f), _mm512_sub_ps(one, f));  // B2 (NFG)
      const __m512 dz_g = no_g ? dg : _mm512_mul_ps(dg, _mm512_fnmadd_ps(g, g, one));  // B2 (NIAF)
      __m512 dc_prev = _mm512_fmadd_ps(dc_hat, f, keep);  // B3
      if (peep) {  // B2: peepholes
        dc_prev = _mm512_fmadd_ps(dz_f, _mm512_loadu_ps(p + H + k),
                                  _mm512_fmadd_ps(dz_i, _mm512_loadu_ps(p + k), dc_prev));
        add_product(dp + k, dz_i, c_prev);  // dp_i
        add_product(dp + H + k, dz_f, c_prev);  // dp_f
      }
      _mm512_storeu_ps(dc + k, dc_prev);
      _mm512_storeu_ps(dz + k, dz_i);
      _mm512_storeu_ps(dz + H + k, dz_f);
      _mm512_storeu_ps(dz + 2 * H + k, dz_g);
      _mm512_storeu_ps(dz + 3 * H + k, dz_o);
      if (!no_i) add_to(db + k, dz_i);  // B1: db = Σ dz (nothing to add for a removed gate)
      if (!no_f) add_to(db + H + k, dz_f);
      add_to(db + 2 * H + k, dz_g);
      if (!no_o) add_to(db + 3 * H + k, dz_o);
    }
  }
#endif
#pragma GCC ivdep
  for (int64_t k0 = k; k0 < H; ++k0) {
    const int64_t k = k0;
    const T i = a[k], f = a[H + k], g = a[2 * H + k], o = a[3 * H + k];
    const T d_o = dr[k] * act[k];  // B4
    const T dz_o = no_o ? T(0) : d_o * o * (T(1) - o);  // B4 (NOG)
    const T dc_t = dc[k] + (ln ? ds[k] : ds_of(k)) + dz_o * p[2 * H + k];  // B4 (peephole p_o)
    dp[2 * H + k] += dz_o * ct[k];  // B4: dp_o
    const T dc_hat = zoned ? (T(1) - zc[k]) * dc_t : dc_t;  // B3: zoneout
    const T di_own = dc_hat * g, df = dc_hat * cp[k], dg = dc_hat * i;  // B3
    const T di = coupled ? di_own - df : di_own;  // B3: f = 1 - i
    const T dz_i = no_i ? T(0) : di * i * (T(1) - i);  // B2 (NIG)
    const T dz_f = no_f ? T(0) : df * f * (T(1) - f);  // B2 (NFG, CIFG)
    const T dz_g = no_g ? dg : dg * (T(1) - g * g);  // B2 (NIAF)
    const T keep = zoned ? zc[k] * dc_t : T(0);
    dc[k] = keep + dc_hat * f + dz_i * p[k] + dz_f * p[H + k];  // B3, B2 (peepholes)
    dp[k] += dz_i * cp[k];  // B2: dp_i
    dp[H + k] += dz_f * cp[k];  // B2: dp_f
    dz[k] = dz_i;
    dz[H + k] = dz_f;
    dz[2 * H + k] = dz_g;
    dz[3 * H + k] = dz_o;
    db[k] += dz_i;  // B1: db = Σ dz
    db[H + k] += dz_f;
    db[2 * H + k] += dz_g;
    db[3 * H + k] += dz_o;
  }
}

}  // namespace lstmbyhand
