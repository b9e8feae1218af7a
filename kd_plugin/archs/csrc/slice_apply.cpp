// Fused bilateral-grid slice + affine apply for CPU inference (no autograd).
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
// u = 2 g - 1).
inline void axis(float u, int64_t size, int64_t &lo, int64_t &hi, float &w_hi) {
  const float unnormalised = ((u + 1.0f) * static_cast<float>(size) - 1.0f) / 2.0f;
  const float c = std::min(std::max(unnormalised, 0.0f), static_cast<float>(size - 1));
  lo = static_cast<int64_t>(std::floor(c));
  hi = std::min(lo + 1, size - 1);
  w_hi = c - static_cast<float>(lo);
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
  const float step_x = 2.0f / static_cast<float>(W), step_y = 2.0f / static_cast<float>(H);

  // x-axis lookups are the same for every row: computed once
  std::vector<int64_t> x_lo(W), x_hi(W);
  std::vector<float> x_w(W);
  for (int64_t x = 0; x < W; ++x) axis((x + 0.5f) * step_x - 1.0f, Gw, x_lo[x], x_hi[x], x_w[x]);

  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> row(row_cells);  // the grid interpolated along y for this output row: [Gw, D, C]
    std::vector<float> coef(C);
    for (int64_t by = begin; by < end; ++by) {
      const int64_t b = by / H, y = by % H;
      int64_t y_lo, y_hi;
      float wy;
      axis((y + 0.5f) * step_y - 1.0f, Gh, y_lo, y_hi, wy);
      const float *top = cells_p + (b * Gh + y_lo) * row_cells, *bottom = cells_p + (b * Gh + y_hi) * row_cells;
      const float wt = 1.0f - wy;
      for (int64_t k = 0; k < row_cells; ++k) row[k] = wt * top[k] + wy * bottom[k];

      const float *g_row = g_p + b * plane + y * W;
      const float *in_row = in_p + b * n_in * plane + y * W;
      float *out_row = out_p + b * n_out * plane + y * W;
      for (int64_t x = 0; x < W; ++x) {
        int64_t z_lo, z_hi;
        float wz;
        axis(g_row[x] * 2.0f - 1.0f, D, z_lo, z_hi, wz);
        const float wx = x_w[x];
        const float w00 = (1.0f - wx) * (1.0f - wz), w01 = (1.0f - wx) * wz, w10 = wx * (1.0f - wz), w11 = wx * wz;
        const float *c00 = row.data() + (x_lo[x] * D + z_lo) * C, *c01 = row.data() + (x_lo[x] * D + z_hi) * C;
        const float *c10 = row.data() + (x_hi[x] * D + z_lo) * C, *c11 = row.data() + (x_hi[x] * D + z_hi) * C;
        for (int64_t c = 0; c < C; ++c) coef[c] = w00 * c00[c] + w01 * c01[c] + w10 * c10[c] + w11 * c11[c];
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

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("slice_apply", &slice_apply, "Fused bilateral-grid slice + affine apply (CPU, float32, inference)");
}
