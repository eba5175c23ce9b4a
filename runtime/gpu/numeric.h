/*
 * numeric.h -- arithmetic shared bit for bit by the CUDA kernels and the CPU
 * path: the Philox4x32-10 counter-based generator, the mapping from
 * (seed, element index) to a uniform or normal value, and float16/bfloat16
 * conversions (round to nearest even).  Header-only so nvcc and cc compile
 * the same source; PX_HD marks functions both sides call.
 *
 * The mapping, which is the reproducibility contract (a seed gives the same
 * array on any device, any grid, and on the CPU):
 *   block j = Philox4x32-10(counter = {j lo, j hi, 0, 0}, key = {seed lo,
 *   seed hi}) -> four 32-bit words w0..w3.
 *   uniform float32   element i: w[i%4] of block i/4, (w >> 8) * 2^-24
 *   uniform float16   element i: w[i%4] of block i/4, (w >> 21) * 2^-11
 *   uniform bfloat16  element i: w[i%4] of block i/4, (w >> 24) * 2^-8
 *   uniform float64   element i: words 2(i%2), 2(i%2)+1 of block i/2,
 *                     53 bits, ((w0 >> 5) * 2^26 + (w1 >> 6)) * 2^-53
 *   normal (any)      element i: block i/4, pair p = (i%4)/2 gives
 *                     u1 = (w[2p] + 0.5) 2^-32, u2 = (w[2p+1] + 0.5) 2^-32,
 *                     Box-Muller in float64: sqrt(-2 ln u1) * (cos or sin
 *                     for even or odd i)(2 pi u2), then rounded to dtype.
 * Uniform values are exact in every dtype (no rounding to 1.0); normal
 * values depend on libm's log/sin/cos, which agree with CUDA's to an ulp of
 * float64, so float32 results agree except in rare last-bit ties.
 */
#ifndef PX_GPU_NUMERIC_H
#define PX_GPU_NUMERIC_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define PX_HD __host__ __device__ __forceinline__
#else
#define PX_HD static inline
#endif

typedef struct px_philox_block {
  uint32_t w[4];
} px_philox_block;

PX_HD void px_mulhilo32(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo) {
  uint64_t p = (uint64_t)a * b;
  *hi = (uint32_t)(p >> 32);
  *lo = (uint32_t)p;
}

PX_HD px_philox_block px_philox(uint64_t block, uint64_t seed) {
  uint32_t c0 = (uint32_t)block, c1 = (uint32_t)(block >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
  for (int round = 0; round < 10; round++) {
    uint32_t hi0, lo0, hi1, lo1;
    px_mulhilo32(0xD2511F53u, c0, &hi0, &lo0);
    px_mulhilo32(0xCD9E8D57u, c2, &hi1, &lo1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  px_philox_block r = {{c0, c1, c2, c3}};
  return r;
}

/* Box-Muller on two words; odd selects the sine branch. */
PX_HD double px_normal_from(uint32_t a, uint32_t b, int odd) {
  double u1 = ((double)a + 0.5) * (1.0 / 4294967296.0);
  double u2 = ((double)b + 0.5) * (1.0 / 4294967296.0);
  double r = sqrt(-2.0 * log(u1));
  double t = 6.283185307179586476925 * u2;
  return odd ? r * sin(t) : r * cos(t);
}

/* ---- float16 / bfloat16, round to nearest even ------------------------ */

PX_HD uint32_t px_f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

PX_HD float px_bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

PX_HD uint16_t px_half_from_float(float f) {
  uint32_t x = px_f32_bits(f);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t absx = x & 0x7FFFFFFFu;
  if (absx >= 0x7F800000u) /* inf or nan */
    return (uint16_t)(sign | 0x7C00u | (absx > 0x7F800000u ? 0x200u : 0));
  if (absx >= 0x477FF000u) /* rounds to >= 65520: overflow to inf */
    return (uint16_t)(sign | 0x7C00u);
  if (absx < 0x38800000u) { /* below 2^-14: subnormal half or zero */
    if (absx < 0x33000000u) return (uint16_t)sign; /* < 2^-25 */
    uint32_t mant = (absx & 0x7FFFFFu) | 0x800000u;
    int shift = 126 - (int)(absx >> 23); /* 14..24 */
    uint32_t q = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    return (uint16_t)(sign | q);
  }
  uint32_t h = ((absx >> 13) - (112u << 10)); /* rebias exponent 127 -> 15 */
  uint32_t rem = absx & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;
  return (uint16_t)(sign | h);
}

PX_HD float px_half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1F, m = h & 0x3FF;
  if (e == 0x1F) return px_bits_f32(sign | 0x7F800000u | (m << 13));
  if (e == 0) {
    if (m == 0) return px_bits_f32(sign);
    float v = (float)m * (1.0f / 16777216.0f); /* m * 2^-24 */
    return sign ? -v : v;
  }
  return px_bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

PX_HD uint16_t px_bf16_from_float(float f) {
  uint32_t x = px_f32_bits(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((x >> 16) | 0x40u);
  uint32_t lsb = (x >> 16) & 1u;
  x += 0x7FFFu + lsb;
  return (uint16_t)(x >> 16);
}

PX_HD float px_bf16_to_float(uint16_t h) { return px_bits_f32((uint32_t)h << 16); }

#endif
