// videoflex CPU kernels for the VAE's element-wise work (videoflex/nn/cpu_kernels.py builds and calls them).
//
// channel_norm_swish: LayerNorm over the channels of a channels-last activation, then swish, in one pass:
// out[p, c] = swish((x[p, c] - mean_p) / sqrt(var_p + eps) * weight[c] + bias[c]),  swish(y) = y * sigmoid(y),
// with mean_p and var_p (biased) over the C channels of position p, computed in two passes over the row (mean,
// then the centred squares), as torch's layer_norm. x is [P, C] float32, contiguous (a channels-last video or
// image with the channel axis moved last); every row is independent, so the result does not depend on the
// number of threads. Built by videoflex/nn/cpu_kernels.py with the host compiler (-O3 -ffast-math
// -fno-finite-math-only, -march=native on x86-64); see there for why and how it is used.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace {

// e^x for x in float32, vectorisable (no library call): Cody-Waite range reduction x = n ln2 + r, |r| <= ln2/2,
// and the degree-6 minimax polynomial of Cephes' expf (relative error about 1e-7). Inputs are clamped to
// [-87.3, 88.3] (exp underflows or overflows float32 beyond), so exp(-y) of a large |y| gives the right limit
// of sigmoid; NaN compares false and stays NaN.
inline float exp_approx(float x) {
  x = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// Rows [begin, end) of x (C channels each; C_FIXED > 0 makes C a compile-time constant, 0 reads c_runtime).
// Blocks of 64 rows: the statistics of the block first, then its normalised, swished values; the two loops
// vectorise separately (about twice as fast as one loop per row with C = 16).
template <int64_t C_FIXED>
void rows(const float* x, const float* __restrict weight, const float* __restrict bias, float* out, int64_t begin,
          int64_t end, float eps, int64_t c_runtime) {
  const int64_t C = C_FIXED > 0 ? C_FIXED : c_runtime;
  constexpr int64_t BLOCK = 64;
  float mean[BLOCK], rstd[BLOCK];
  for (int64_t first = begin; first < end; first += BLOCK) {
    const int64_t n = std::min(BLOCK, end - first);
    const float* xb = x + first * C;
    float* ob = out + first * C;
    for (int64_t i = 0; i < n; ++i) {
      const float* row = xb + i * C;
      float sum = 0.f;
      for (int64_t c = 0; c < C; ++c) sum += row[c];
      const float m = sum / C;
      float squares = 0.f;
      for (int64_t c = 0; c < C; ++c) {
        const float d = row[c] - m;
        squares += d * d;
      }
      mean[i] = m;
      rstd[i] = 1.f / std::sqrt(squares / C + eps);
    }
    for (int64_t i = 0; i < n; ++i) {
      const float* row = xb + i * C;
      float* o = ob + i * C;
      const float m = mean[i], rs = rstd[i];
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) {
        const float y = (row[c] - m) * rs * weight[c] + bias[c];
        o[c] = y / (1.f + exp_approx(-y));
      }
    }
  }
}

// Into out, which is x itself (in place: each row is read whole before it is written) or a new tensor like x.
void norm_swish_into(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps,
                     at::Tensor& out) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == at::kFloat && x.is_contiguous() && x.dim() >= 1,
              "channel_norm_swish: x must be a contiguous float32 CPU tensor [..., C]");
  const int64_t C = x.size(-1);
  TORCH_CHECK(C > 0, "channel_norm_swish: no channels");
  TORCH_CHECK(weight.numel() == C && bias.numel() == C && weight.scalar_type() == at::kFloat &&
                  bias.scalar_type() == at::kFloat && weight.device().is_cpu() && bias.device().is_cpu(),
              "channel_norm_swish: weight and bias must be float32 CPU tensors of C = ", C, " values");
  const at::Tensor w = weight.contiguous(), b = bias.contiguous();
  const int64_t positions = x.numel() / C;
  const float* xp = x.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  const float* bp = b.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const float e = static_cast<float>(eps);
  const int64_t grain = std::max<int64_t>(1, 32768 / C);  // rows per task: ~128 KiB of input
  at::parallel_for(0, positions, grain, [&](int64_t begin, int64_t end) {
    switch (C) {
      case 16: rows<16>(xp, wp, bp, op, begin, end, e, C); break;
      case 32: rows<32>(xp, wp, bp, op, begin, end, e, C); break;
      case 64: rows<64>(xp, wp, bp, op, begin, end, e, C); break;
      default: rows<0>(xp, wp, bp, op, begin, end, e, C);
    }
  });
}

at::Tensor channel_norm_swish(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps) {
  at::Tensor out = at::empty_like(x);
  norm_swish_into(x, weight, bias, eps, out);
  return out;
}

at::Tensor& channel_norm_swish_(at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps) {
  norm_swish_into(x, weight, bias, eps, x);
  return x;
}

at::Tensor& channel_norm_swish_out(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps,
                                   at::Tensor& out) {
  TORCH_CHECK(out.sizes() == x.sizes() && out.is_contiguous() && out.scalar_type() == at::kFloat && out.device().is_cpu(),
              "channel_norm_swish: out must be a contiguous float32 CPU tensor shaped like x");
  norm_swish_into(x, weight, bias, eps, out);
  return out;
}

// The causal temporal x2 upsampler's sums (videoflex.vae.vidtok.TimeUpsample2x), written interleaved:
// y [B*T, P, 3, C] holds the three temporal taps y0, y1, y2 of every frame's per-frame convolution (P pixels);
// out [B, T, 2, P, C] gets out[i, 0] = y2[i] + y1[i-1] + y0[i-1] and out[i, 1] = y2[i] + y1[i] + y0[i-1], the
// terms with i-1 left out for the first frame (the eager path's additions, in its order). One pass over y instead
// of a copy and three strided additions.
at::Tensor time_upsample_sums(const at::Tensor& y, int64_t batch) {
  TORCH_CHECK(y.device().is_cpu() && y.scalar_type() == at::kFloat && y.is_contiguous() && y.dim() == 4 &&
                  y.size(2) == 3 && batch > 0 && y.size(0) % batch == 0,
              "time_upsample_sums: y must be a contiguous float32 CPU tensor [B*T, P, 3, C]");
  const int64_t frames = y.size(0) / batch, pixels = y.size(1), C = y.size(3);
  at::Tensor out = at::empty({batch, frames, 2, pixels, C}, y.options());
  const float* yp = y.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const int64_t frame_in = pixels * 3 * C, frame_out = 2 * pixels * C;
  const int64_t grain = std::max<int64_t>(1, 16384 / (3 * C));  // pixels per task
  for (int64_t f = 0; f < batch * frames; ++f) {
    const bool first = f % frames == 0;
    const float* cur = yp + f * frame_in;
    const float* prev = cur - frame_in;
    float* o0 = op + f * frame_out;
    float* o1 = o0 + pixels * C;
    at::parallel_for(0, pixels, grain, [&](int64_t begin, int64_t end) {
      for (int64_t q = begin; q < end; ++q) {
        const float* c0 = cur + q * 3 * C;
        float* a = o0 + q * C;
        float* b = o1 + q * C;
        if (first) {
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) {
            a[c] = c0[2 * C + c];
            b[c] = c0[2 * C + c] + c0[C + c];
          }
        } else {
          const float* p0 = prev + q * 3 * C;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) {
            a[c] = (c0[2 * C + c] + p0[C + c]) + p0[c];
            b[c] = (c0[2 * C + c] + c0[C + c]) + p0[c];
          }
        }
      }
    });
  }
  return out;
}

}  // namespace

// The operators torch.ops.videoflex.channel_norm_swish (in place: channel_norm_swish_; into a buffer: .out) and
// torch.ops.videoflex.time_upsample_sums (CPU only).
TORCH_LIBRARY(videoflex, m) {
  m.def("channel_norm_swish(Tensor x, Tensor weight, Tensor bias, float eps) -> Tensor");
  m.def("channel_norm_swish_(Tensor(a!) x, Tensor weight, Tensor bias, float eps) -> Tensor(a!)");
  m.def("channel_norm_swish.out(Tensor x, Tensor weight, Tensor bias, float eps, *, Tensor(a!) out) -> Tensor(a!)");
  m.def("time_upsample_sums(Tensor y, int batch) -> Tensor");
}

TORCH_LIBRARY_IMPL(videoflex, CPU, m) {
  m.impl("channel_norm_swish", &channel_norm_swish);
  m.impl("channel_norm_swish_", &channel_norm_swish_);
  m.impl("channel_norm_swish.out", &channel_norm_swish_out);
  m.impl("time_upsample_sums", &time_upsample_sums);
}
