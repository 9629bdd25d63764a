// grutext's native GRU scans (part of grutext.fast; loaded by grutext/fast/native.py, which builds it once per
// machine). The arithmetic is scan.py's, the layouts are scan.py's, and the reference in grutext/model.py is the
// oracle in tests; what changes is the cost of a time step:
//   * a step is one or two BLAS calls (the recurrent matmul) and one fused loop over [B, H] for every gate's
//     pointwise arithmetic, where TorchScript dispatched six to ten tensor ops;
//   * rows are sorted by length (longest first) by the caller, so step t runs only the rows still inside their
//     text: padding after a short text costs neither time nor a matmul row;
//   * `pair_forward` / `pair_backward` run two scans at once (the two directions of a layer, or two halves of a
//     batch), the second on torch's inter-op thread pool, with the GIL released.
//
// Forms (see scan.py): reset-after (`--cell gru`, nn.GRU's rows r, z, n) and reset-before (Cho et al. 2014,
// rows z, r, n, no recurrent bias).
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <future>
#include <vector>

namespace {

using at::Tensor;

// exp, sigmoid and tanh in plain arithmetic (Cephes' expf polynomial, about 1 ulp on the reduced range) so that
// the compiler vectorises the gate loops; libm's expf and tanhf are scalar calls. Inputs are clamped to where
// exp stays a normal float: sigmoid and tanh saturate there anyway.
inline float exp_approx(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float k = std::floor(x * 1.44269504088896341f + 0.5f);
  const float r = x - k * 0.693359375f + k * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const std::int32_t bits = (static_cast<std::int32_t>(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

inline float sigmoid(float v) { return 1.0f / (1.0f + exp_approx(-v)); }

// Cephes' tanhf: a polynomial below |v| = 0.625 (where 1 - 2/(e^2v + 1) would lose relative accuracy), the
// exponential form above; both computed and one selected, so the loop stays branch-free.
inline float tanh_approx(float v) {
  const float a = std::fabs(v), z = v * v;
  const float small =
      ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z + 1.33314422036e-1f) * z -
       3.33332819422e-1f) * z * v + v;
  const float large = std::copysign(1.0f - 2.0f / (exp_approx(2.0f * a) + 1.0f), v);
  return a < 0.625f ? small : large;
}

// Double precision (the gradient checks in tests) takes libm's exact functions.
inline double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }
inline double tanh_approx(double v) { return std::tanh(v); }

// One row of one step, reset-after: the gate buffers hold the input halves on entry and the gate values on exit.
template <typename scalar_t>
void forward_reset_after(scalar_t* __restrict r, scalar_t* __restrict z, scalar_t* __restrict n, const scalar_t* __restrict rec_r,
                         const scalar_t* __restrict rec_z, const scalar_t* __restrict rec_n, const scalar_t* __restrict b_r,
                         const scalar_t* __restrict b_z, const scalar_t* __restrict b_n, const scalar_t* __restrict h_prev,
                         scalar_t* __restrict hh_n, scalar_t* __restrict h, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const scalar_t rj = sigmoid(r[j] + rec_r[j] + b_r[j]);
    const scalar_t zj = sigmoid(z[j] + rec_z[j] + b_z[j]);
    const scalar_t hh = rec_n[j] + b_n[j];
    const scalar_t nj = tanh_approx(n[j] + rj * hh);
    r[j] = rj;
    z[j] = zj;
    n[j] = nj;
    hh_n[j] = hh;
    h[j] = nj + zj * (h_prev[j] - nj);
  }
}

// Reset-before, the gates of one row: z and r, and r ⊙ h_{t-1} for the candidate's matmul.
template <typename scalar_t>
void forward_gates_cho(scalar_t* __restrict z, scalar_t* __restrict r, const scalar_t* __restrict rec_z,
                       const scalar_t* __restrict rec_r, const scalar_t* __restrict h_prev, scalar_t* __restrict rh, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const scalar_t zj = sigmoid(z[j] + rec_z[j]);
    const scalar_t rj = sigmoid(r[j] + rec_r[j]);
    z[j] = zj;
    r[j] = rj;
    rh[j] = rj * h_prev[j];
  }
}

// Reset-before, the candidate and the new state of one row.
template <typename scalar_t>
void forward_state_cho(const scalar_t* __restrict z, scalar_t* __restrict n, const scalar_t* __restrict rec_n,
                       const scalar_t* __restrict h_prev, scalar_t* __restrict h, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const scalar_t nj = tanh_approx(n[j] + rec_n[j]);
    n[j] = nj;
    h[j] = h_prev[j] + z[j] * (nj - h_prev[j]);
  }
}

// Backward through one row of one step, reset-after: the gradients of the gates' pre-activations (dr, dz, dn for
// the input projections; dn ⊙ r for W_hn h + b_hn) and the part of G_{t-1} that does not pass through W_hh.
template <typename scalar_t>
void backward_reset_after(const scalar_t* __restrict r, const scalar_t* __restrict z, const scalar_t* __restrict n,
                          const scalar_t* __restrict hh_n, const scalar_t* __restrict h_prev,
                          const scalar_t* __restrict G, const scalar_t* __restrict d_out_prev, scalar_t* __restrict dr,
                          scalar_t* __restrict dz, scalar_t* __restrict dn, scalar_t* __restrict dn_r,
                          scalar_t* __restrict G_prev, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const scalar_t one(1);
    const scalar_t d_n = G[j] * (one - z[j]) * (one - n[j] * n[j]);
    dz[j] = G[j] * (h_prev[j] - n[j]) * z[j] * (one - z[j]);
    dr[j] = d_n * hh_n[j] * r[j] * (one - r[j]);
    dn[j] = d_n;
    dn_r[j] = d_n * r[j];
    G_prev[j] = d_out_prev[j] + G[j] * z[j];
  }
}

// Reset-before, the update gate's and the candidate's gradients of one row.
template <typename scalar_t>
void backward_candidate_cho(const scalar_t* __restrict z, const scalar_t* __restrict n,
                            const scalar_t* __restrict h_prev, const scalar_t* __restrict G, scalar_t* __restrict dz,
                            scalar_t* __restrict dn, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const scalar_t one(1);
    dn[j] = G[j] * z[j] * (one - n[j] * n[j]);
    dz[j] = G[j] * (n[j] - h_prev[j]) * z[j] * (one - z[j]);
  }
}

// Reset-before, the reset gate's gradient of one row (d_rh = dn W_n) and G_{t-1} before its W_zr term.
template <typename scalar_t>
void backward_reset_cho(const scalar_t* __restrict z, const scalar_t* __restrict r, const scalar_t* __restrict h_prev,
                        const scalar_t* __restrict G, const scalar_t* __restrict d_rh,
                        const scalar_t* __restrict d_out_prev, scalar_t* __restrict dr, scalar_t* __restrict G_prev,
                        int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const scalar_t one(1);
    dr[j] = d_rh[j] * h_prev[j] * r[j] * (one - r[j]);
    G_prev[j] = d_out_prev[j] + G[j] * (one - z[j]) + d_rh[j] * r[j];
  }
}

// rows[t]: how many of the (length-sorted) rows are still inside their text at step t.
std::vector<int64_t> active_rows(const Tensor& lengths, int64_t T) {
  auto len = lengths.accessor<int64_t, 1>();
  int64_t B = lengths.size(0);
  std::vector<int64_t> rows(T, 0);
  int64_t b = B;
  for (int64_t t = 0; t < T; ++t) {
    while (b > 0 && len[b - 1] <= t) --b;
    rows[t] = b;
  }
  return rows;
}

struct Forward {
  Tensor out, gates, hh_n;
};

// x [B, T, I] (rows sorted by length, longest first) -> out [T, B, H] (zero past each text's end), gates [T, B, 3H]
// (the gate values), hh_n [T, B, H] (reset-after: W_hn h + b_hn; reset-before: empty).
template <typename scalar_t>
Forward scan_forward_typed(const Tensor& x, const Tensor& lengths, const Tensor& W_ih, const Tensor& b_ih,
                     const Tensor& W_hh, const Tensor& b_hh, bool reset_after) {
  at::NoGradGuard no_grad;
  const int64_t B = x.size(0), T = x.size(1), In = x.size(2), H = W_hh.size(1);
  const auto rows = active_rows(lengths, T);
  Tensor gates = at::addmm(b_ih, x.transpose(0, 1).reshape({T * B, In}), W_ih.t()).view({T, B, 3 * H});
  Tensor out = at::empty({T, B, H}, x.options());
  Tensor hh_n = reset_after ? at::empty({T, B, H}, x.options()) : at::empty({0}, x.options());
  Tensor rec = at::empty({B, reset_after ? 3 * H : 2 * H}, x.options());  // h W_hh^T for the step
  Tensor rh = at::zeros({B, H}, x.options());                                // reset-before: r ⊙ h
  Tensor rec_n = at::empty({B, H}, x.options());                             // reset-before: (r ⊙ h) W_n^T
  Tensor bias = b_hh.contiguous();
  Tensor W_T = W_hh.t();
  Tensor W_zr_T = W_hh.narrow(0, 0, 2 * H).t();
  Tensor W_n_T = W_hh.narrow(0, 2 * H, H).t();
  scalar_t* g = gates.template data_ptr<scalar_t>();
  scalar_t* o = out.template data_ptr<scalar_t>();
  scalar_t* hn = reset_after ? hh_n.template data_ptr<scalar_t>() : nullptr;
  const scalar_t* bh = bias.template data_ptr<scalar_t>();
  scalar_t* rc = rec.template data_ptr<scalar_t>();
  scalar_t* rhp = rh.template data_ptr<scalar_t>();
  scalar_t* rn = rec_n.template data_ptr<scalar_t>();
  const int64_t G3 = 3 * H, RW = rec.size(1);
  Tensor zeros = at::zeros({B, H}, x.options());
  const scalar_t* zero = zeros.template data_ptr<scalar_t>();
  for (int64_t t = 0; t < T; ++t) {
    const int64_t n_rows = rows[t];
    if (n_rows == 0) {  // every text has ended: the rest is padding
      out.narrow(0, t, T - t).zero_();
      gates.narrow(0, t, T - t).zero_();
      if (reset_after) hh_n.narrow(0, t, T - t).zero_();
      break;
    }
    const scalar_t* __restrict hp = t > 0 ? o + (t - 1) * B * H : zero;  // h_{t-1}
    if (t > 0) {
      Tensor h_prev = out[t - 1].narrow(0, 0, n_rows);
      Tensor dst = rec.narrow(0, 0, n_rows);
      at::mm_out(dst, h_prev, reset_after ? W_T : W_zr_T);
    } else {
      rec.zero_();
    }
    scalar_t* gt = g + t * B * G3;
    scalar_t* ot = o + t * B * H;
    if (reset_after) {
      scalar_t* hnt = hn + t * B * H;
      for (int64_t b = 0; b < n_rows; ++b) {
        scalar_t* gb = gt + b * G3;
        const scalar_t* rb = rc + b * RW;
        forward_reset_after(gb, gb + H, gb + 2 * H, rb, rb + H, rb + 2 * H, bh, bh + H, bh + 2 * H, hp + b * H,
                            hnt + b * H, ot + b * H, H);
      }
    } else {
      for (int64_t b = 0; b < n_rows; ++b) {
        scalar_t* gb = gt + b * G3;
        const scalar_t* rb = rc + b * RW;
        forward_gates_cho(gb, gb + H, rb, rb + H, hp + b * H, rhp + b * H, H);
      }
      if (t > 0) {
        Tensor dst = rec_n.narrow(0, 0, n_rows);
        at::mm_out(dst, rh.narrow(0, 0, n_rows), W_n_T);
      } else {
        rec_n.zero_();
      }
      for (int64_t b = 0; b < n_rows; ++b) {
        scalar_t* gb = gt + b * G3;
        forward_state_cho(gb, gb + 2 * H, rn + b * H, hp + b * H, ot + b * H, H);
      }
    }
    // Rows past their text: gates zero, so the backward pass reads no stale values.
    if (n_rows < B) {
      out[t].narrow(0, n_rows, B - n_rows).zero_();
      gates[t].narrow(0, n_rows, B - n_rows).zero_();
      if (reset_after) hh_n[t].narrow(0, n_rows, B - n_rows).zero_();
    }
  }
  return {out, gates, hh_n};
}

// Gradients (d_x, d_W_ih, d_b_ih, d_W_hh, d_b_hh) of one scan; d_out [B, T, H], the rest as scan_forward made them.
template <typename scalar_t>
std::vector<Tensor> scan_backward_typed(const Tensor& d_out_bt, const Tensor& x, const Tensor& lengths, const Tensor& out,
                                  const Tensor& gates, const Tensor& hh_n, const Tensor& W_ih, const Tensor& W_hh,
                                  bool reset_after) {
  at::NoGradGuard no_grad;
  const int64_t B = x.size(0), T = x.size(1), In = x.size(2), H = W_hh.size(1);
  const auto rows = active_rows(lengths, T);
  Tensor d_out = d_out_bt.transpose(0, 1).contiguous();  // [T, B, H]
  // Gradients of the input projections and (reset-after) of W_hh h + b_hh; rows past a text's end are zeroed
  // step by step, the rest written once.
  Tensor d_x_proj = at::empty({T, B, 3 * H}, x.options());
  Tensor d_rec = reset_after ? at::empty({T, B, 3 * H}, x.options()) : Tensor();
  Tensor G = at::zeros({B, H}, x.options());        // gradient reaching h_t
  Tensor G_prev = at::zeros({B, H}, x.options());   // ... and h_{t-1}
  Tensor d_rh = at::empty({B, H}, x.options());     // reset-before: gradient of r ⊙ h_{t-1}
  Tensor W_zr = W_hh.narrow(0, 0, 2 * H);
  Tensor W_n = W_hh.narrow(0, 2 * H, H);
  const scalar_t* dO = d_out.template data_ptr<scalar_t>();
  const scalar_t* o = out.template data_ptr<scalar_t>();
  const scalar_t* g = gates.template data_ptr<scalar_t>();
  const scalar_t* hn = reset_after ? hh_n.template data_ptr<scalar_t>() : nullptr;
  scalar_t* dxp = d_x_proj.template data_ptr<scalar_t>();
  scalar_t* drc = reset_after ? d_rec.template data_ptr<scalar_t>() : nullptr;
  scalar_t* drh = d_rh.template data_ptr<scalar_t>();
  const int64_t G3 = 3 * H;
  Tensor zeros = at::zeros({B, H}, x.options());
  const scalar_t* zero = zeros.template data_ptr<scalar_t>();
  for (int64_t t = T - 1; t >= 0; --t) {
    const int64_t n_rows = rows[t];
    if (n_rows < B) {
      d_x_proj[t].narrow(0, n_rows, B - n_rows).zero_();
      if (reset_after) d_rec[t].narrow(0, n_rows, B - n_rows).zero_();
    }
    if (n_rows == 0) continue;
    scalar_t* Gc = G.template data_ptr<scalar_t>();
    scalar_t* Gp = G_prev.template data_ptr<scalar_t>();
    const scalar_t* dOt = dO + t * B * H;
    const scalar_t* __restrict dOp = t > 0 ? dO + (t - 1) * B * H : zero;  // at t = 0, G_prev is not read
    const scalar_t* __restrict hp = t > 0 ? o + (t - 1) * B * H : zero;
    const scalar_t* gt = g + t * B * G3;
    scalar_t* dxt = dxp + t * B * G3;
    // Rows that end at t start their gradient here: G holds d_out[t] only for them (earlier rows carried it).
    const int64_t carried = t + 1 < T ? rows[t + 1] : 0;
    for (int64_t b = carried; b < n_rows; ++b)
      for (int64_t j = 0; j < H; ++j) Gc[b * H + j] = dOt[b * H + j];
    if (reset_after) {
      const scalar_t* hnt = hn + t * B * H;
      scalar_t* drt = drc + t * B * G3;
      for (int64_t b = 0; b < n_rows; ++b) {
        const scalar_t* gb = gt + b * G3;
        scalar_t* dx = dxt + b * G3;
        scalar_t* dr = drt + b * G3;
        backward_reset_after(gb, gb + H, gb + 2 * H, hnt + b * H, hp + b * H, Gc + b * H, dOp + b * H, dx, dx + H,
                             dx + 2 * H, dr + 2 * H, Gp + b * H, H);
        std::memcpy(dr, dx, 2 * H * sizeof(scalar_t));
      }
      if (t > 0) {
        Tensor dst = G_prev.narrow(0, 0, n_rows);
        dst.addmm_(d_rec[t].narrow(0, 0, n_rows), W_hh);
      }
    } else {
      for (int64_t b = 0; b < n_rows; ++b) {
        const scalar_t* gb = gt + b * G3;
        scalar_t* dx = dxt + b * G3;
        backward_candidate_cho(gb, gb + 2 * H, hp + b * H, Gc + b * H, dx, dx + 2 * H, H);
      }
      Tensor d_n = d_x_proj[t].narrow(0, 0, n_rows).narrow(1, 2 * H, H);
      Tensor d_rh_rows = d_rh.narrow(0, 0, n_rows);
      at::mm_out(d_rh_rows, d_n, W_n);
      for (int64_t b = 0; b < n_rows; ++b) {
        const scalar_t* gb = gt + b * G3;
        scalar_t* dx = dxt + b * G3;
        backward_reset_cho(gb, gb + H, hp + b * H, Gc + b * H, drh + b * H, dOp + b * H, dx + H, Gp + b * H, H);
      }
      if (t > 0) {
        Tensor dst = G_prev.narrow(0, 0, n_rows);
        dst.addmm_(d_x_proj[t].narrow(0, 0, n_rows).narrow(1, 0, 2 * H), W_zr);
      }
    }
    std::swap(G, G_prev);
  }
  // Weight gradients: one large matmul each. h_{t-1} is zero at t = 0, so the sums over steps start at t = 1;
  // bias gradients are column sums, as matrix-vector products (torch's sum over dim 0 is slower here).
  Tensor flat_d = d_x_proj.view({T * B, 3 * H});
  Tensor flat_x = x.transpose(0, 1).reshape({T * B, In});
  Tensor ones = at::ones({T * B}, x.options());
  Tensor d_W_hh, d_b_hh;
  if (T == 1) {
    d_W_hh = at::zeros({3 * H, H}, x.options());
  } else {
    Tensor h_prev = out.narrow(0, 0, T - 1).reshape({(T - 1) * B, H});
    if (reset_after) {
      d_W_hh = d_rec.narrow(0, 1, T - 1).reshape({(T - 1) * B, 3 * H}).t().mm(h_prev);
    } else {
      Tensor later = d_x_proj.narrow(0, 1, T - 1).reshape({(T - 1) * B, 3 * H});
      Tensor r_h = gates.narrow(0, 1, T - 1).reshape({(T - 1) * B, 3 * H}).narrow(1, H, H) * h_prev;
      d_W_hh = at::cat({later.narrow(1, 0, 2 * H).t().mm(h_prev), later.narrow(1, 2 * H, H).t().mm(r_h)}, 0);
    }
  }
  d_b_hh = reset_after ? at::mv(d_rec.view({T * B, 3 * H}).t(), ones) : at::zeros({3 * H}, x.options());
  Tensor d_x = flat_d.mm(W_ih).view({T, B, In}).transpose(0, 1);
  return {d_x, flat_d.t().mm(flat_x), at::mv(flat_d.t(), ones), d_W_hh, d_b_hh};
}

// float (training) or double (the gradient checks).
Forward scan_forward(const Tensor& x, const Tensor& lengths, const Tensor& W_ih, const Tensor& b_ih,
                     const Tensor& W_hh, const Tensor& b_hh, bool reset_after) {
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, "the scan runs float32 or float64");
  if (x.scalar_type() == at::kDouble) return scan_forward_typed<double>(x, lengths, W_ih, b_ih, W_hh, b_hh, reset_after);
  return scan_forward_typed<float>(x, lengths, W_ih, b_ih, W_hh, b_hh, reset_after);
}

std::vector<Tensor> scan_backward(const Tensor& d_out, const Tensor& x, const Tensor& lengths, const Tensor& out,
                                  const Tensor& gates, const Tensor& hh_n, const Tensor& W_ih, const Tensor& W_hh,
                                  bool reset_after) {
  if (x.scalar_type() == at::kDouble)
    return scan_backward_typed<double>(d_out, x, lengths, out, gates, hh_n, W_ih, W_hh, reset_after);
  return scan_backward_typed<float>(d_out, x, lengths, out, gates, hh_n, W_ih, W_hh, reset_after);
}

// Runs `a` here and `b` on torch's inter-op thread pool (persistent threads, as TorchScript's fork uses: a new
// thread per call would also pay for a new OpenMP team at its first matmul); rethrows the first error.
template <typename A, typename B>
void in_parallel(A&& a, B&& b) {
  std::promise<void> done_b;
  std::future<void> finished = done_b.get_future();
  at::launch([&] {
    try {
      b();
      done_b.set_value();
    } catch (...) {
      done_b.set_exception(std::current_exception());
    }
  });
  std::exception_ptr error_a;
  try {
    a();
  } catch (...) {
    error_a = std::current_exception();
  }
  finished.wait();
  if (error_a) std::rethrow_exception(error_a);
  finished.get();
}

using Weights = std::vector<Tensor>;  // x, lengths, W_ih, b_ih, W_hh, b_hh

std::vector<Tensor> pair_forward(const Weights& a, const Weights& b, bool reset_after) {
  Forward fa, fb;
  in_parallel([&] { fa = scan_forward(a[0], a[1], a[2], a[3], a[4], a[5], reset_after); },
              [&] { fb = scan_forward(b[0], b[1], b[2], b[3], b[4], b[5], reset_after); });
  return {fa.out, fa.gates, fa.hh_n, fb.out, fb.gates, fb.hh_n};
}

// Per scan: d_out, x, lengths, out, gates, hh_n, W_ih, W_hh.
std::vector<Tensor> pair_backward(const std::vector<Tensor>& a, const std::vector<Tensor>& b, bool reset_after) {
  std::vector<Tensor> ga, gb;
  in_parallel([&] { ga = scan_backward(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], reset_after); },
              [&] { gb = scan_backward(b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], reset_after); });
  ga.insert(ga.end(), gb.begin(), gb.end());
  return ga;
}


// ---------------------------------------------------------------------------------------- LazyAdamW's row work
// optim.py's LazyAdamW (see its docstring for the closed form) does a table's per-step row work in some thirty
// tensor ops: gathering rows, catching them up, AdamW, scattering them back. Here it is three calls working on
// the table's rows in place. float32 tables; the catch-up's factors are float64, as in optim.py.

// Bring `rows` (sorted, distinct) of weight, m and v from their `last` step up to step `until`, in place.
void lazy_prepare(Tensor weight, Tensor m, Tensor v, Tensor last, const Tensor& rows, const Tensor& table,
                  const Tensor& powers, int64_t base, int64_t until) {
  at::NoGradGuard no_grad;
  TORCH_CHECK(weight.scalar_type() == at::kFloat && weight.is_contiguous(), "lazy rows: a contiguous float32 table");
  const int64_t E = weight.size(1), n = rows.size(0), u = until - base;
  float* w = weight.data_ptr<float>();
  float* mp = m.data_ptr<float>();
  float* vp = v.data_ptr<float>();
  int64_t* lp = last.data_ptr<int64_t>();
  const int64_t* rp = rows.data_ptr<int64_t>();
  auto tab = table.accessor<double, 2>();
  auto pw = powers.accessor<double, 2>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = rp[i], j = lp[r] - base;
    if (j == u) continue;
    const double decay = tab[0][j], push = tab[1][j];
    const float keep = static_cast<float>(tab[0][u] / decay);
    const float move = static_cast<float>(tab[0][u] * (tab[1][u] - push) / pw[0][j]);
    const float eps_s = static_cast<float>(tab[2][j]);
    const float b1 = static_cast<float>(pw[1][u - j]), b2 = static_cast<float>(pw[2][u - j]);
    float* __restrict p = w + r * E;
    float* __restrict mr = mp + r * E;
    float* __restrict vr = vp + r * E;
    for (int64_t e = 0; e < E; ++e) {
      const float ratio = mr[e] / (std::sqrt(vr[e] < 1e-30f ? 1e-30f : vr[e]) + eps_s);
      p[e] = p[e] * keep - ratio * move;
      mr[e] *= b1;
      vr[e] *= b2;
    }
    lp[r] = until;
  }
}

// The table's sparse gradient (indices [k], values [k, E], repeats allowed) as a dense block over `rows`.
Tensor lazy_gradient(const Tensor& rows, const Tensor& indices, const Tensor& values) {
  at::NoGradGuard no_grad;
  const int64_t n = rows.size(0), k = indices.size(0);
  Tensor vals = values.contiguous();
  const int64_t E = vals.size(1);
  Tensor block = at::zeros({n, E}, vals.options());
  const int64_t* rp = rows.data_ptr<int64_t>();
  const int64_t* ip = indices.data_ptr<int64_t>();
  const float* src = vals.data_ptr<float>();
  float* dst = block.data_ptr<float>();
  for (int64_t i = 0; i < k; ++i) {
    const int64_t* at_row = std::lower_bound(rp, rp + n, ip[i]);
    TORCH_CHECK(at_row != rp + n && *at_row == ip[i],
                "LazyAdamW: a gradient reached rows that were not prepare()d before the forward");
    float* __restrict d = dst + (at_row - rp) * E;
    const float* __restrict s = src + i * E;
    for (int64_t e = 0; e < E; ++e) d[e] += s[e];
  }
  return block;
}

// torch's AdamW (decoupled weight decay, bias correction; the fused kernel's order of operations) on `rows`.
void lazy_adamw(Tensor weight, Tensor m, Tensor v, Tensor last, const Tensor& rows, const Tensor& block, double lr,
                double beta1, double beta2, double eps, double weight_decay, int64_t step) {
  at::NoGradGuard no_grad;
  const int64_t E = weight.size(1), n = rows.size(0);
  float* w = weight.data_ptr<float>();
  float* mp = m.data_ptr<float>();
  float* vp = v.data_ptr<float>();
  int64_t* lp = last.data_ptr<int64_t>();
  const int64_t* rp = rows.data_ptr<int64_t>();
  Tensor g = block.contiguous();
  const float* gp = g.data_ptr<float>();
  const double bc1 = 1 - std::pow(beta1, static_cast<double>(step));
  const double bc2 = 1 - std::pow(beta2, static_cast<double>(step));
  const float step_size = static_cast<float>(lr / bc1), bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  const float decay = static_cast<float>(1 - lr * weight_decay), b1 = static_cast<float>(beta1);
  const float b2 = static_cast<float>(beta2), e_ = static_cast<float>(eps);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = rp[i];
    float* __restrict p = w + r * E;
    float* __restrict mr = mp + r * E;
    float* __restrict vr = vp + r * E;
    const float* __restrict gr = gp + i * E;
    for (int64_t e = 0; e < E; ++e) {
      p[e] *= decay;
      mr[e] += (1.0f - b1) * (gr[e] - mr[e]);
      vr[e] = b2 * vr[e] + (1.0f - b2) * gr[e] * gr[e];
      p[e] -= step_size * mr[e] / (std::sqrt(vr[e]) / bc2_sqrt + e_);
    }
    lp[r] = step;
  }
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("pair_forward", &pair_forward, "two GRU scans forward, in parallel",
        py::call_guard<py::gil_scoped_release>());
  m.def("pair_backward", &pair_backward, "two GRU scans backward, in parallel",
        py::call_guard<py::gil_scoped_release>());
  m.def("lazy_prepare", &lazy_prepare, "LazyAdamW: rows caught up in place");
  m.def("lazy_gradient", &lazy_gradient, "LazyAdamW: a sparse gradient as a block of rows");
  m.def("lazy_adamw", &lazy_adamw, "LazyAdamW: AdamW on rows in place");
}
