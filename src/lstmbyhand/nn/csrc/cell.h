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

}  // namespace lstmbyhand
