// Fused bilateral-grid kernels for CPU inference (no autograd): slice + affine apply, and the whole
// full-resolution part of BilateralGridSR's forward pass (bilateral_output, below).
//
// out[b, o, y, x] = sum_i A[o, i] * in[b, i, y, x] + A[o, n_in], where A (n_out x (n_in + 1)) is the grid
// looked up trilinearly at (x, y, guide[b, y, x]) exactly as grid_sample(align_corners=False,
// padding_mode='border') looks it up (kd_plugin/archs/bilateral_grid.py: slice_grid, apply_affine).
//
// Per output row the grid is first interpolated along y (both spatial rows it needs, once per row), so each
// pixel reads 4 cells of C coefficients (2 along x, 2 along the guide) instead of 8; the C coefficients of a
// cell are contiguous (the grid is re-laid out [B, Gh, Gw, D, C]), so the per-pixel loops run over
// contiguous memory and vectorise. Rows are spread over torch's intra-op threads.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

// grid_sample's unnormalisation (align_corners=False) and border clipping along one axis, in its float
// arithmetic: a normalised coordinate u in [-1, 1] sits at ((u + 1) * size - 1) / 2 grid cells, clamped to
// [0, size - 1] (pixel i of n has u = (i + 0.5) * 2 / n - 1, as slice_grid computes it; a guide value g has
// u = 2 g - 1). A NaN coordinate lands on the last cell, as grid_sample's clipping puts it there (and a NaN
// cast to an integer index would be undefined behaviour).
inline void axis(float u, int64_t size, int64_t &lo, int64_t &hi, float &w_hi) {
  const float unnormalised = ((u + 1.0f) * static_cast<float>(size) - 1.0f) / 2.0f;
  const float c = std::isnan(unnormalised) ? static_cast<float>(size - 1)
                                           : std::min(std::max(unnormalised, 0.0f), static_cast<float>(size - 1));
  lo = static_cast<int64_t>(std::floor(c));
  hi = std::min(lo + 1, size - 1);
  w_hi = c - static_cast<float>(lo);
}

// The grid interpolated along y for output row y of H: row[Gw, D, C] from the cells [Gh, Gw, D, C] of one image.
inline void grid_row(const float *cells, int64_t y, int64_t H, int64_t Gh, int64_t row_cells, float *row) {
  int64_t lo, hi;
  float w_hi;
  axis((y + 0.5f) * (2.0f / static_cast<float>(H)) - 1.0f, Gh, lo, hi, w_hi);
  const float *top = cells + lo * row_cells, *bottom = cells + hi * row_cells;
  const float w_lo = 1.0f - w_hi;
  for (int64_t k = 0; k < row_cells; ++k) row[k] = w_lo * top[k] + w_hi * bottom[k];
}

// The C sliced coefficients of one pixel: the y-interpolated row's 4 cells around (x, guide value g).
inline void slice_pixel(const float *row, int64_t x_lo, int64_t x_hi, float wx, float g, int64_t D, int64_t C,
                        float *coef) {
  int64_t z_lo, z_hi;
  float wz;
  axis(g * 2.0f - 1.0f, D, z_lo, z_hi, wz);
  const float w00 = (1.0f - wx) * (1.0f - wz), w01 = (1.0f - wx) * wz, w10 = wx * (1.0f - wz), w11 = wx * wz;
  const float *c00 = row + (x_lo * D + z_lo) * C, *c01 = row + (x_lo * D + z_hi) * C;
  const float *c10 = row + (x_hi * D + z_lo) * C, *c11 = row + (x_hi * D + z_hi) * C;
  for (int64_t c = 0; c < C; ++c) coef[c] = w00 * c00[c] + w01 * c01[c] + w10 * c10[c] + w11 * c11[c];
}

}  // namespace

torch::Tensor slice_apply(const torch::Tensor &grid, const torch::Tensor &guide, const torch::Tensor &inputs) {
  TORCH_CHECK(grid.dim() == 5 && guide.dim() == 4 && inputs.dim() == 4, "slice_apply: grid [B, C, D, Gh, Gw], "
              "guide [B, 1, H, W], inputs [B, n_in, H, W]");
  TORCH_CHECK(grid.scalar_type() == torch::kFloat && guide.scalar_type() == torch::kFloat &&
              inputs.scalar_type() == torch::kFloat, "slice_apply: float32 tensors only");
  TORCH_CHECK(grid.device().is_cpu() && guide.device().is_cpu() && inputs.device().is_cpu(),
              "slice_apply: CPU tensors only");
  const int64_t B = grid.size(0), C = grid.size(1), D = grid.size(2), Gh = grid.size(3), Gw = grid.size(4);
  const int64_t n_in = inputs.size(1), H = inputs.size(2), W = inputs.size(3);
  TORCH_CHECK(guide.size(0) == B && guide.size(1) == 1 && guide.size(2) == H && guide.size(3) == W,
              "slice_apply: guide must be [B, 1, H, W] like inputs");
  TORCH_CHECK(inputs.size(0) == B && C % (n_in + 1) == 0, "slice_apply: grid channels must be n_out * (n_in + 1)");
  const int64_t n_out = C / (n_in + 1);

  const torch::Tensor cells = grid.permute({0, 3, 4, 2, 1}).contiguous();  // [B, Gh, Gw, D, C]
  const torch::Tensor g = guide.contiguous();
  const torch::Tensor in = inputs.contiguous();
  torch::Tensor out = torch::empty({B, n_out, H, W}, inputs.options());
  const float *cells_p = cells.data_ptr<float>(), *g_p = g.data_ptr<float>(), *in_p = in.data_ptr<float>();
  float *out_p = out.data_ptr<float>();
  const int64_t row_cells = Gw * D * C, plane = H * W;
  const float step_x = 2.0f / static_cast<float>(W);

  // x-axis lookups are the same for every row: computed once
  std::vector<int64_t> x_lo(W), x_hi(W);
  std::vector<float> x_w(W);
  for (int64_t x = 0; x < W; ++x) axis((x + 0.5f) * step_x - 1.0f, Gw, x_lo[x], x_hi[x], x_w[x]);

  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> row(row_cells);  // the grid interpolated along y for this output row: [Gw, D, C]
    std::vector<float> coef(C);
    for (int64_t by = begin; by < end; ++by) {
      const int64_t b = by / H, y = by % H;
      grid_row(cells_p + b * Gh * row_cells, y, H, Gh, row_cells, row.data());
      const float *g_row = g_p + b * plane + y * W;
      const float *in_row = in_p + b * n_in * plane + y * W;
      float *out_row = out_p + b * n_out * plane + y * W;
      for (int64_t x = 0; x < W; ++x) {
        slice_pixel(row.data(), x_lo[x], x_hi[x], x_w[x], g_row[x], D, C, coef.data());
        for (int64_t o = 0; o < n_out; ++o) {
          const float *a = coef.data() + o * (n_in + 1);
          float acc = a[n_in];
          for (int64_t i = 0; i < n_in; ++i) acc += a[i] * in_row[i * plane + x];
          out_row[o * plane + x] = acc;
        }
      }
    }
  });
  return out;
}

namespace {

// PyTorch's bicubic (upsample_bicubic2d, align_corners=False, A = -0.75): output i of an axis upscaled by
// `scale` reads input taps floor(src) - 1 ... floor(src) + 2 (clamped to the axis), src = (i + 0.5) / scale - 0.5.
inline void cubic_taps(int64_t i, int64_t in_size, float inv_scale, int64_t idx[4], float w[4]) {
  const float src = inv_scale * (static_cast<float>(i) + 0.5f) - 0.5f;
  const int64_t base = std::min(static_cast<int64_t>(std::floor(src)), in_size - 1);
  const float t = std::min(std::max(src - static_cast<float>(base), 0.0f), 1.0f);
  const float A = -0.75f;
  auto near = [A](float x) { return ((A + 2.0f) * x - (A + 3.0f)) * x * x + 1.0f; };
  auto far = [A](float x) { return ((A * x - 5.0f * A) * x + 8.0f * A) * x - 4.0f * A; };
  w[0] = far(t + 1.0f);
  w[1] = near(t);
  w[2] = near(1.0f - t);
  w[3] = far(2.0f - t);
  for (int k = 0; k < 4; ++k) idx[k] = std::min(std::max(base - 1 + k, int64_t(0)), in_size - 1);
}

}  // namespace

// The whole full-resolution part of BilateralGridSR's forward pass in one pass over the output:
//   u = PixelShuffle(s)(up)                                [B, n_in, sh, sw]   (read in place from `up`)
//   g = sigmoid(w2 . relu(w1 u + b1) + b2)                 the pointwise guide MLP
//   out = bicubic(x) + apply(slice(grid, g), u)            [B, n_out, sh, sw]
// up: [B, n_in * s * s, h, w] (the upsampler's convolution output), x: [B, n_out, h, w] (the LR image),
// w1: [G, n_in], b1: [G], w2: [G], b2: [1].
torch::Tensor bilateral_output(const torch::Tensor &grid, const torch::Tensor &up, const torch::Tensor &x,
                               const torch::Tensor &w1, const torch::Tensor &b1, const torch::Tensor &w2,
                               const torch::Tensor &b2, int64_t s) {
  for (const torch::Tensor *t : {&grid, &up, &x, &w1, &b1, &w2, &b2})
    TORCH_CHECK(t->scalar_type() == torch::kFloat && t->device().is_cpu(), "bilateral_output: float32 CPU tensors");
  const int64_t B = grid.size(0), C = grid.size(1), D = grid.size(2), Gh = grid.size(3), Gw = grid.size(4);
  const int64_t h = up.size(2), w = up.size(3), n_in = up.size(1) / (s * s), G = w1.size(0);
  const int64_t n_out = x.size(1), H = h * s, W = w * s;
  TORCH_CHECK(up.size(1) == n_in * s * s && C == n_out * (n_in + 1) && w1.size(1) == n_in && x.size(2) == h &&
              x.size(3) == w && b1.numel() == G && w2.numel() == G && b2.numel() == 1,
              "bilateral_output: shapes do not agree");

  const torch::Tensor cells = grid.permute({0, 3, 4, 2, 1}).contiguous();  // [B, Gh, Gw, D, C]
  const torch::Tensor up_c = up.contiguous(), x_c = x.contiguous(), w1_c = w1.contiguous();
  torch::Tensor out = torch::empty({B, n_out, H, W}, x.options());
  const float *cells_p = cells.data_ptr<float>(), *up_p = up_c.data_ptr<float>(), *x_p = x_c.data_ptr<float>();
  const float *w1_p = w1_c.data_ptr<float>(), *b1_p = b1.contiguous().data_ptr<float>();
  const float *w2_p = w2.contiguous().data_ptr<float>(), b2_v = b2.item<float>();
  float *out_p = out.data_ptr<float>();
  const int64_t row_cells = Gw * D * C, lr_plane = h * w, plane = H * W;
  const float step_x = 2.0f / static_cast<float>(W);
  const float inv_s = 1.0f / static_cast<float>(s);

  std::vector<int64_t> x_lo(W), x_hi(W), cx(4 * W);
  std::vector<float> x_w(W), wx(4 * W);
  for (int64_t X = 0; X < W; ++X) {
    axis((X + 0.5f) * step_x - 1.0f, Gw, x_lo[X], x_hi[X], x_w[X]);
    cubic_taps(X, w, inv_s, &cx[4 * X], &wx[4 * X]);
  }

  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> row(row_cells), coef(C), u(n_in * W), hidden(W), guide(W), vert(n_out * w);
    for (int64_t by = begin; by < end; ++by) {
      const int64_t b = by / H, Y = by % H, ly = Y / s, sy = Y % s;
      grid_row(cells_p + b * Gh * row_cells, Y, H, Gh, row_cells, row.data());
      // u for this row, out of the pixel shuffle: u[i][X] = up[b, i*s*s + sy*s + X%s, ly, X/s]
      for (int64_t i = 0; i < n_in; ++i) {
        for (int64_t sx = 0; sx < s; ++sx) {
          const float *src = up_p + ((b * n_in * s * s) + i * s * s + sy * s + sx) * lr_plane + ly * w;
          float *dst = u.data() + i * W + sx;
          for (int64_t lx = 0; lx < w; ++lx) dst[lx * s] = src[lx];
        }
      }
      // the guide, vectorised over the row's pixels
      for (int64_t X = 0; X < W; ++X) guide[X] = b2_v;
      for (int64_t j = 0; j < G; ++j) {
        const float bj = b1_p[j];
        for (int64_t X = 0; X < W; ++X) hidden[X] = bj;
        for (int64_t i = 0; i < n_in; ++i) {
          const float wji = w1_p[j * n_in + i];
          const float *ui = u.data() + i * W;
          for (int64_t X = 0; X < W; ++X) hidden[X] += wji * ui[X];
        }
        const float w2j = w2_p[j];
        for (int64_t X = 0; X < W; ++X) guide[X] += w2j * std::max(hidden[X], 0.0f);
      }
      for (int64_t X = 0; X < W; ++X) guide[X] = 1.0f / (1.0f + std::exp(-guide[X]));
      // the bicubic base along y for this row: vert[c][lx]
      int64_t cy[4];
      float wyc[4];
      cubic_taps(Y, h, inv_s, cy, wyc);
      for (int64_t c = 0; c < n_out; ++c) {
        const float *xc = x_p + (b * n_out + c) * lr_plane;
        float *v = vert.data() + c * w;
        for (int64_t lx = 0; lx < w; ++lx)
          v[lx] = wyc[0] * xc[cy[0] * w + lx] + wyc[1] * xc[cy[1] * w + lx] + wyc[2] * xc[cy[2] * w + lx] +
                  wyc[3] * xc[cy[3] * w + lx];
      }
      float *out_row = out_p + b * n_out * plane + Y * W;
      for (int64_t X = 0; X < W; ++X) {
        slice_pixel(row.data(), x_lo[X], x_hi[X], x_w[X], guide[X], D, C, coef.data());
        const int64_t *tx = &cx[4 * X];
        const float *tw = &wx[4 * X];
        for (int64_t o = 0; o < n_out; ++o) {
          const float *a = coef.data() + o * (n_in + 1);
          float acc = a[n_in];
          for (int64_t i = 0; i < n_in; ++i) acc += a[i] * u[i * W + X];
          const float *v = vert.data() + o * w;
          const float base = tw[0] * v[tx[0]] + tw[1] * v[tx[1]] + tw[2] * v[tx[2]] + tw[3] * v[tx[3]];
          out_row[o * plane + X] = base + acc;
        }
      }
    }
  });
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("slice_apply", &slice_apply, "Fused bilateral-grid slice + affine apply (CPU, float32, inference)");
  m.def("bilateral_output", &bilateral_output,
        "BilateralGridSR's full-resolution part: pixel shuffle, guide MLP, slice, apply, bicubic base (CPU)");
}
