// core_test.cpp - the C++ core's own test (ctest; run by test/core.test.js), no Node involved:
// the strict state-dict loader, the warm-up + cosine schedule and the StableAdamW step, against
// reference-a (INP_FORMER_FIXTURE: its folder) and the recipe's formulas in its README.
#include <torch/torch.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>

#include "core/activations.h"
#include "core/anomaly_map.h"
#include "core/cosine.h"
#include "core/cpu_gemm.h"
#include "core/cpu_load.h"
#include "core/errors.h"
#include "core/executor.h"
#include "core/inp_former.h"
#include "core/model.h"
#include "core/optimizer.h"
#include "core/packed_weights.h"
#include "core/per_image.h"
#include "core/trainer.h"
#include "core/vit_encoder.h"
#include "test/upstream_config.h"

using namespace inpformer;

namespace {

int failures = 0;

std::string sci(double v) {
  std::ostringstream o;
  o.precision(2);
  o << std::scientific << v;
  return o.str();
}

void check(bool ok, const std::string& what) {
  std::cout << (ok ? "ok   " : "FAIL ") << what << "\n";
  if (!ok) ++failures;
}

// Whether `fn` throws a CoreError with `code` whose message contains `needle`.
bool throwsCoreError(const std::function<void()>& fn, const char* code, const std::string& needle) {
  try {
    fn();
  } catch (const CoreError& e) {
    return e.code() == code && std::string(e.what()).find(needle) != std::string::npos;
  }
  return false;
}

// A raw little-endian float32 file of reference-a (tensors/NAME.f32), shaped as `like`.
torch::Tensor readF32(const std::string& file, const torch::Tensor& like) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + file);
  auto t = torch::empty(like.sizes(), torch::kFloat32);
  in.read(reinterpret_cast<char*>(t.data_ptr<float>()), static_cast<std::streamsize>(t.numel() * sizeof(float)));
  if (in.gcount() != static_cast<std::streamsize>(t.numel() * sizeof(float))) throw std::runtime_error(file + ": too short");
  return t;
}

// reference-a's network: DINOv2 96-d, 10 blocks, 4 heads, 4 registers; upstream's INP-Former around it.
InpFormerConfig referenceConfig() { return upstreamConfig(96, 10, 4, 4); }

void stateDictLoader(const std::string& fixture) {
  InpFormerNet net(referenceConfig());
  // The trained trainable part of reference-a, and the network's own encoder values.
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& kv : net->named_parameters()) tensors[kv.key()] = kv.value().detach().clone();
  size_t fromFixture = 0;
  for (const auto& kv : net->trainableParameters()) {
    tensors[kv.first] = readF32(fixture + "/tensors/final_trainable/" + kv.first + ".f32", kv.second);
    ++fromFixture;
  }
  check(fromFixture == 139, "reference-a's 139 trainable tensors are the network's trainable parameters");
  loadStateDict(*net, tensors);
  bool equal = true;
  for (const auto& kv : net->named_parameters()) equal = equal && torch::equal(kv.value(), tensors.at(kv.key()));
  check(equal, "a strict load copies every tensor exactly");

  auto missing = tensors;
  missing.erase("decoder.3.attn.learn_scale");
  check(throwsCoreError([&] { loadStateDict(*net, missing); }, codes::kCheckpoint, "missing key 'decoder.3.attn.learn_scale'"),
        "a missing key is a checkpoint error naming it");
  auto unexpected = tensors;
  unexpected["decoder.8.norm1.weight"] = torch::ones({96});
  check(throwsCoreError([&] { loadStateDict(*net, unexpected); }, codes::kCheckpoint, "unexpected key 'decoder.8.norm1.weight'"),
        "an unexpected key is a checkpoint error naming it");
  auto misshapen = tensors;
  misshapen["prototype_token"] = torch::zeros({5, 96});
  check(throwsCoreError([&] { loadStateDict(*net, misshapen); }, codes::kCheckpoint, "shape mismatch for 'prototype_token'"),
        "a mis-shaped tensor is a checkpoint error naming it and both shapes");
}

void learningRateSchedule(const std::string& fixture) {
  // reference-a's trace: 6 steps, warm-up 2, lr 1e-3 to 1e-4; step k uses schedule[k - 1].
  auto expected = readF32(fixture + "/tensors/trace_lr.f32", torch::empty({6}));
  auto schedule = warmCosineSchedule(1e-3, 1e-4, 6, 2);
  bool ok = schedule.size() == 6;
  double worst = 0;
  for (size_t i = 0; ok && i < 6; ++i) {
    // the fixture stores float64 values as float32
    const double e = expected[static_cast<int64_t>(i)].item<float>();
    worst = std::max(worst, std::abs(schedule[i] - e));
    ok = ok && std::abs(schedule[i] - e) <= 1e-7 * std::abs(e) + 1e-12;
  }
  check(ok, "warm-up + cosine schedule equals reference-a's trace_lr (worst difference " + sci(worst) + ")");
  check(warmCosineSchedule(1e-3, 1e-4, 0, 2).empty(), "an empty run has an empty schedule");
}

// The README's StableAdamW in double precision, one parameter: returns the new value of p.
struct ReferenceAdam {
  torch::Tensor m, v, vmax;
  int64_t t = 0;
  torch::Tensor step(torch::Tensor p, const torch::Tensor& g, double lr) {
    ++t;
    p = p * (1 - lr * 1e-4);
    m = 0.9 * m + 0.1 * g;
    v = 0.999 * v + 0.001 * g * g;
    vmax = torch::maximum(vmax, v);
    auto denom = vmax.sqrt() / std::sqrt(1 - std::pow(0.999, t)) + 1e-10;
    const double rms = ((g / denom).norm().item<double>()) / std::sqrt(static_cast<double>(g.numel()));
    const double s = std::max(1.0, rms);
    return p - (lr / (1 - std::pow(0.9, t)) / s) * m / denom;
  }
};

void stableAdamWStep() {
  torch::manual_seed(3);
  // one parameter whose update RMS exceeds 1 on the first step (Adam's g / sqrt(g^2) = +-1
  // everywhere, then growing), and one kept below by a large second moment
  auto a = torch::randn({7, 5});
  auto b = torch::randn({11});
  std::vector<torch::Tensor> params{a.clone().set_requires_grad(true), b.clone().set_requires_grad(true)};
  StableAdamW::Options options;
  StableAdamW adam(params, options);
  ReferenceAdam refA{torch::zeros({7, 5}, torch::kFloat64), torch::zeros({7, 5}, torch::kFloat64), torch::zeros({7, 5}, torch::kFloat64)};
  ReferenceAdam refB{torch::zeros({11}, torch::kFloat64), torch::zeros({11}, torch::kFloat64), torch::zeros({11}, torch::kFloat64)};
  auto pa = a.to(torch::kFloat64);
  auto pb = b.to(torch::kFloat64);
  double worst = 0;
  const double lrs[] = {0.0, 1e-3, 1e-3, 5e-4};
  for (double lr : lrs) {
    auto ga = torch::randn({7, 5});
    auto gb = torch::randn({11}) * (lr == 0.0 ? 50.0 : 0.01);
    params[0].mutable_grad() = ga;
    params[1].mutable_grad() = gb;
    adam.step(lr);
    pa = refA.step(pa, ga.to(torch::kFloat64), lr);
    pb = refB.step(pb, gb.to(torch::kFloat64), lr);
    worst = std::max({worst, (params[0].to(torch::kFloat64) - pa).abs().max().item<double>(),
                      (params[1].to(torch::kFloat64) - pb).abs().max().item<double>()});
  }
  check(adam.state().step == 4, "the optimizer counts its steps");
  check(worst < 1e-6, "StableAdamW follows the recipe's formula over 4 steps (worst difference " + sci(worst) + ")");

  // clip_grad_norm_: returns the norm before clipping and scales by maxNorm / (norm + 1e-6)
  params[0].mutable_grad() = torch::full({7, 5}, 3.0);
  params[1].mutable_grad() = torch::full({11}, 4.0);
  const double norm = clipGradNorm(params, 0.1);
  const double expected = std::sqrt(35 * 9.0 + 11 * 16.0);
  const double after = std::sqrt(params[0].grad().pow(2).sum().item<double>() + params[1].grad().pow(2).sum().item<double>());
  check(std::abs(norm - expected) < 1e-4 && std::abs(after - 0.1 * expected / (expected + 1e-6)) < 1e-6,
        "clipGradNorm returns the total norm and clips to 0.1");
}

// StableAdamW.py's own float32 ATen calls, fresh tensors and all: the optimizer's scratch
// forms must give the very same bits (the training trace depends on every last one).
void stableAdamWMatchesTheReferenceOps() {
  torch::manual_seed(5);
  // largest first, then smaller ones that reuse its scratch; sizes off the vector width
  const std::vector<std::vector<int64_t>> shapes{{384, 1536}, {1536}, {7, 5}, {97}};
  std::vector<torch::Tensor> params, ref, m, v, vmax;
  for (const auto& shape : shapes) {
    params.push_back(torch::randn(shape).set_requires_grad(true));
    ref.push_back(params.back().detach().clone());
    for (auto* s : {&m, &v, &vmax}) s->push_back(torch::zeros(shape));
  }
  StableAdamW adam(params, StableAdamW::Options{});
  bool same = true;
  for (int t = 1; t <= 3; ++t) {
    const double lr = 1e-3;
    for (size_t i = 0; i < params.size(); ++i) {
      // the first step's RMS is ~1 (g / |g|); large gradients on one tensor push it over
      auto g = torch::randn(params[i].sizes()) * (i == 2 ? 1e3 : 1e-3);
      params[i].mutable_grad() = g;
      ref[i].mul_(1 - lr * 1e-4);
      m[i].mul_(0.9).add_(g, 1 - 0.9);
      v[i].mul_(0.999).addcmul_(g, g, 1 - 0.999);
      torch::max_out(vmax[i], vmax[i], v[i]);
      auto denom = (vmax[i].sqrt() / std::sqrt(1 - std::pow(0.999, t))).add_(1e-10);
      auto rms = (g / denom).norm(2) / std::sqrt(static_cast<double>(g.numel()));
      const double bc1 = 1 - std::pow(0.9, t);
      const double stepSize = rms.item<double>() > 1 ? (rms.reciprocal() * (lr / bc1)).item<double>() : lr / bc1;
      ref[i].addcdiv_(m[i], denom, -stepSize);
    }
    adam.step(lr);
    for (size_t i = 0; i < params.size(); ++i) same = same && torch::equal(params[i].detach(), ref[i]);
  }
  check(same, "StableAdamW's steps equal the reference's own float32 ATen calls bit for bit");
}

// freeCores: this process's own busy threads leave the count alone; a busy neighbour process
// takes one core off it (with 2 or more cores). Compared with a quiet look first, so that other
// load on the machine (a CI neighbour) does not decide the outcome.
void freeCoresSeesNeighbours() {
  const int cores = availableCores();
  const auto spin = [](double seconds) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    volatile unsigned long n = 0;
    while (std::chrono::steady_clock::now() < until) n = n + 1;
  };
  const auto of = [cores](int n) { return std::to_string(n) + " of " + std::to_string(cores) + " free"; };
  freeCores();  // the first look
  usleep(300 * 1000);
  const int quiet = freeCores();
  spin(0.3);  // busy, but ourselves
  const int whileSelfBusy = freeCores();
  check(whileSelfBusy >= quiet, "our own busy thread is not a neighbour (" + of(whileSelfBusy) + "; idle: " + of(quiet) + ")");
  if (cores < 2) return;
  const pid_t child = fork();
  if (child == 0) {
    spin(0.8);
    _exit(0);
  }
  usleep(600 * 1000);
  const int withNeighbour = freeCores();
  waitpid(child, nullptr, 0);
  check(withNeighbour <= std::max(1, quiet - 1), "a busy neighbour process takes a core (" + of(withNeighbour) + "; idle: " + of(quiet) + ")");
}

}  // namespace

// oneDNN's products (cpu_gemm.h) against libtorch's on the layouts the network hands them:
// permuted q/k/v views, transposed k, bias or none; and no oneDNN where autograd records.
void cpuProducts() {
  torch::manual_seed(3);
  const auto rel = [](const torch::Tensor& a, const torch::Tensor& b) {
    return ((a - b).abs().max() / b.abs().max()).item<double>();
  };
  const bool oneDnn = cpuGemmBackend().rfind("oneDNN", 0) == 0;
  std::cout << "     float32 products: " << cpuGemmBackend() << "\n";
  torch::NoGradGuard noGrad;
  auto x = torch::randn({2, 7, 24});
  auto w = torch::randn({40, 24});
  auto b = torch::randn({40});
  const auto lin = inpformer::linear(x, w, b);
  check(lin.sizes() == torch::IntArrayRef({2, 7, 40}) && rel(lin, at::linear(x, w, b)) < 1e-6,
        "linear with bias matches at::linear (rel " + sci(rel(lin, at::linear(x, w, b))) + ")");
  const auto noBias = inpformer::linear(x, w, torch::Tensor());
  check(rel(noBias, at::linear(x, w)) < 1e-6, "linear without bias matches at::linear");
  // qkv as the ViT splits it: [B, N, 3, H, d] permuted to [3, B, H, N, d]
  auto qkv = torch::randn({2, 9, 3, 4, 8}).permute({2, 0, 3, 1, 4});
  auto q = qkv[0], k = qkv[1], v = qkv[2];
  const auto scores = batchedMatmul(q, k.transpose(-2, -1));
  check(rel(scores, torch::matmul(q, k.transpose(-2, -1))) < 1e-6, "q @ k^T on permuted views matches torch::matmul");
  auto attn = scores.softmax(-1);
  check(rel(batchedMatmul(attn, v), torch::matmul(attn, v)) < 1e-6, "attn @ v on a permuted view matches torch::matmul");
  auto odd = torch::randn({3, 5, 6}).transpose(1, 2);  // [3, 6, 5], transposed storage
  auto rhs = torch::randn({3, 5, 4});
  check(rel(batchedMatmul(odd, rhs), torch::matmul(odd, rhs)) < 1e-6, "a transposed left operand matches torch::matmul");
  {
    torch::GradMode::set_enabled(true);
    auto wg = w.clone().requires_grad_(true);
    auto y = inpformer::linear(x, wg, b);
    check(y.requires_grad() && y.grad_fn() != nullptr, "with a weight that needs a gradient, linear records for autograd");
    torch::GradMode::set_enabled(false);
  }
  check(!oneDnn || inferenceAvoidsBlas(), "with oneDNN found, inference needs no turn on the BLAS lock");
  // the per-job cap a small inference runs under (model.cpp): lowers libgomp's count, puts it back
  at::set_num_threads(2);
  {
    OpenMpThreadCap one(1);
    check(at::get_num_threads() == 1, "under OpenMpThreadCap(1) parallel ops see 1 thread (saw " + std::to_string(at::get_num_threads()) + ")");
    check(rel(inpformer::linear(x, w, b), at::linear(x, w, b)) < 1e-6, "products under the cap match");
    OpenMpThreadCap none(0);
    check(at::get_num_threads() == 1, "a cap of 0 changes nothing");
  }
  check(at::get_num_threads() == 2, "the count is restored when the cap ends (saw " + std::to_string(at::get_num_threads()) + ")");
  // training's exact mode: one thread for the step, the encoder back on every thread inside it
  {
    OpenMpThreadCap one(1);
    {
      OpenMpThreadCount all(2);
      check(at::get_num_threads() == 2 && openMpThreads() == 2, "OpenMpThreadCount raises the count above a cap");
    }
    check(at::get_num_threads() == 1, "and puts the cap's count back");
  }
  check(at::get_num_threads() == 2, "every count is restored in the end");
}

// Under RecordedGradientsOnOneDnn (fit's matmul 'auto'): recorded linear layers and batched
// products give libtorch's forward values bit for bit (3-D, non-contiguous and bias-free inputs,
// each of which at::linear computes its own way), and gradients within float32 rounding of
// libtorch's backward, computed by oneDNN where it was found.
void recordedGradientsOnOneDnn() {
  torch::manual_seed(12);
  const auto rel = [](const torch::Tensor& a, const torch::Tensor& b) {
    return ((a - b).abs().max() / b.abs().max()).item<double>();
  };
  const bool oneDnn = cpuGemmBackend().rfind("oneDNN", 0) == 0;
  torch::AutoGradMode recording(true);
  struct Grads {
    torch::Tensor y, gx, gw, gb;
  };
  const auto run = [](const torch::Tensor& x0, const torch::Tensor& w0, const torch::Tensor& b0, bool onOneDnn, bool transposed) {
    auto x = x0.clone().requires_grad_(true);
    auto w = w0.clone().requires_grad_(true);
    auto b = b0.defined() ? b0.clone().requires_grad_(true) : b0;
    RecordedGradientsOnOneDnn gradients(onOneDnn);
    auto y = inpformer::linear(transposed ? x.transpose(0, 1) : x, w, b);
    (y * y.detach().sin()).sum().backward();  // an upstream gradient that is not all ones
    return Grads{y.detach(), x.grad(), w.grad(), b.defined() ? b.grad() : torch::Tensor()};
  };
  bool sameForward = true, closeGradients = true, differentBits = false;
  double worst = 0;
  for (int variant = 0; variant < 3; ++variant) {
    const bool transposed = variant == 1;
    auto x = transposed ? torch::randn({197, 3, 384}) : torch::randn({3, 197, 384});
    auto w = torch::randn({1536, 384}) * 0.05;
    auto b = variant == 2 ? torch::Tensor() : torch::randn({1536});
    const auto ref = run(x, w, b, false, transposed);
    const auto got = run(x, w, b, true, transposed);
    sameForward = sameForward && torch::equal(ref.y, got.y);
    for (const auto& [r, g] : {std::pair{ref.gx, got.gx}, std::pair{ref.gw, got.gw}, std::pair{ref.gb, got.gb}}) {
      if (!r.defined()) continue;
      worst = std::max(worst, rel(g, r));
      differentBits = differentBits || !torch::equal(g, r);
    }
  }
  closeGradients = worst < 1e-5;
  check(sameForward, "recorded linear layers keep libtorch's forward values bit for bit");
  check(closeGradients, "their gradients within rounding of libtorch's backward (rel " + sci(worst) + ")");
  check(!oneDnn || differentBits, "and computed by oneDNN, not libtorch's backward (other last bits)");
  // batched products as the INP blocks take them: permuted views, a transposed right operand
  auto q0 = torch::randn({2, 200, 4, 24}).permute({0, 2, 1, 3});
  auto k0 = torch::randn({2, 6, 4, 24}).permute({0, 2, 1, 3});
  std::vector<torch::Tensor> outs, gq, gk;
  for (bool onOneDnn : {false, true}) {
    auto q = q0.detach().clone().requires_grad_(true);
    auto k = k0.detach().clone().requires_grad_(true);
    RecordedGradientsOnOneDnn gradients(onOneDnn);
    auto s = batchedMatmul(q, k.transpose(-2, -1));
    s.relu().pow(2).sum().backward();
    outs.push_back(s.detach());
    gq.push_back(q.grad());
    gk.push_back(k.grad());
  }
  check(torch::equal(outs[0], outs[1]), "recorded batched products keep torch::matmul's values bit for bit");
  check(rel(gq[1], gq[0]) < 1e-5 && rel(gk[1], gk[0]) < 1e-5,
        "their gradients within rounding of libtorch's (rel " + sci(std::max(rel(gq[1], gq[0]), rel(gk[1], gk[0]))) + ")");
}

// The ViT's attention a block of query rows at a time (softmaxAttention): blocks of whole sgemm
// panels (48 rows) give the values of the whole-matrix products and softmax bit for bit; any other
// height rounds within float32's precision; with gradients it records.
void blockedAttention() {
  torch::manual_seed(8);
  // qkv as the ViT splits it, q scaled as the ViT does: ViT-S's heads at 224 px with 4 registers
  auto qkv = torch::randn({2, 261, 3, 6, 64}).permute({2, 0, 3, 1, 4});
  auto q = qkv[0] * 0.125, k = qkv[1], v = qkv[2];
  const auto rel = [](const torch::Tensor& a, const torch::Tensor& b) {
    return ((a - b).abs().max() / b.abs().max()).item<double>();
  };
  torch::Tensor whole;
  {
    c10::InferenceMode inference;
    whole = batchedMatmul(softmaxLastDim(batchedMatmul(q, k.transpose(-2, -1))), v).transpose(1, 2).reshape({2, 261, 384});
    const auto reference = torch::matmul(torch::matmul(q, k.transpose(-2, -1)).softmax(-1), v).transpose(1, 2).reshape({2, 261, 384});
    bool same = true;
    for (const int64_t rows : {0, 48, 96, 144, 400}) {
      const auto blocked = softmaxAttention(q, k, v, rows);
      same = same && blocked.sizes() == whole.sizes() && torch::equal(blocked, whole);
    }
    check(same, "blocked attention equals the whole-matrix path bit for bit (automatic, 48, 96, 144, 400 rows)");
    // one head: fewer heads than threads, so the automatic choice splits it into panel blocks
    at::set_num_threads(2);
    auto one = torch::randn({1, 261, 3, 1, 64}).permute({2, 0, 3, 1, 4});
    auto q1 = one[0] * 0.125;
    const auto whole1 = batchedMatmul(softmaxLastDim(batchedMatmul(q1, one[1].transpose(-2, -1))), one[2]).transpose(1, 2).reshape({1, 261, 64});
    check(torch::equal(softmaxAttention(q1, one[1], one[2]), whole1), "a single head split for 2 threads too");
    double worst = 0;
    for (const int64_t rows : {1, 7, 16, 83}) worst = std::max(worst, rel(softmaxAttention(q, k, v, rows), whole));
    check(worst < 1e-6, "other heights round within float32 (rel " + sci(worst) + ")");
    check(rel(whole, reference) < 1e-5, "both match libtorch's matmul / softmax / matmul (rel " + sci(rel(whole, reference)) + ")");
  }
  auto leaf = q.detach().clone().requires_grad_(true);
  auto out = softmaxAttention(leaf, k, v, 48);
  out.sum().backward();
  check(leaf.grad().defined() && rel(out.detach(), whole) < 1e-6, "with gradients it records for autograd");
}

// In-place GELU and softmax where no gradient needs the input (activations.h): bit-identical to
// the out-of-place ops, and out-of-place where autograd records.
void inPlaceActivations() {
  torch::manual_seed(5);
  auto hidden = torch::randn({2, 37, 96});
  auto scores = torch::randn({2, 3, 37, 37}) * 4;
  const auto gelu = torch::gelu(hidden), softmax = scores.softmax(-1);
  {
    c10::InferenceMode inference;
    auto h = hidden.clone(), s = scores.clone();
    const auto* hp = h.data_ptr<float>();
    const auto* sp = s.data_ptr<float>();
    auto g = geluOf(h);
    auto p = softmaxLastDim(s);
    check(g.data_ptr<float>() == hp && p.data_ptr<float>() == sp, "without gradients GELU and softmax reuse their input");
    check(torch::equal(g, gelu) && torch::equal(p, softmax), "and are bit-identical to the out-of-place ops");
  }
  auto w = hidden.clone().requires_grad_(true);
  auto y = w * 2;
  auto g = geluOf(y);
  auto p = softmaxLastDim(y);
  check(!g.is_same(y) && !p.is_same(y) && torch::equal(y.detach(), hidden * 2), "with gradients they leave their input alone");
  (g.sum() + p.sum()).backward();
  check(w.grad().defined(), "and autograd flows through them");
}

// A CPU batch's chunks (model.h): whole when it fits the budget, else as few and as even as fit.
void batchChunkSizes() {
  using Sizes = std::vector<int64_t>;
  const auto s = upstreamConfig(384, 12, 6, 4).encoder, b = upstreamConfig(768, 12, 12, 4).encoder;
  check(batchChunks(s, 8, 224, 224, kCpuBatchChunkBytes) == Sizes{8}, "ViT-S/224 batch 8 (12.8 MB hidden) runs whole");
  check(batchChunks(s, 8, 392, 392, kCpuBatchChunkBytes) == Sizes{2, 2, 2, 2}, "ViT-S/392 batch 8 runs by 2 (4.8 MB an image)");
  check(batchChunks(b, 8, 392, 392, kCpuBatchChunkBytes) == Sizes(8, 1), "ViT-B/392 batch 8 runs by 1 (9.7 MB an image)");
  check(batchChunks(b, 8, 224, 224, kCpuBatchChunkBytes) == Sizes{4, 4}, "ViT-B/224 batch 8 runs by 4");
  const int64_t three = 3 * (16 * 16 + 1 + 4) * 1536 * 4;  // 3 ViT-S reg4 images at 224 px
  check(batchChunks(s, 8, 224, 224, three) == Sizes{3, 3, 2} && batchChunks(s, 7, 224, 224, three) == Sizes{3, 2, 2} &&
            batchChunks(s, 6, 224, 224, three) == Sizes{3, 3} && batchChunks(s, 4, 224, 224, three) == Sizes{2, 2},
        "as few chunks as fit, as even as can be: 8 -> 3 3 2, 7 -> 3 2 2, 6 -> 3 3, 4 -> 2 2");
  check(batchChunks(s, 5, 392, 392, 1) == Sizes(5, 1) && batchChunks(s, 5, 392, 392, 0) == Sizes{5} &&
            batchChunks(s, 1, 392, 392, 1) == Sizes{1},
        "an image that alone exceeds the budget runs alone; budget 0 runs the batch whole");
}

// forward() sums the encoder's layers as the blocks produce them (each layer freed once taken):
// the same means as stacking every target layer and averaging each group in its order, for
// target layers and groups in any order and overlapping; without the coherence loss too.
void streamedEncoderMeans() {
  torch::manual_seed(6);
  auto cfg = referenceConfig();
  cfg.targetLayers = {5, 2, 9, 2, 7, 3, 8, 4};
  cfg.fuseLayerEncoder = {{3, 1, 0}, {7, 2, 5, 4, 6, 1}};
  const auto images = torch::randn({3, 3, 56, 56});
  for (bool removeClass : {true, false}) {
    cfg.removeClassToken = removeClass;
    InpFormerNet net(cfg);
    net->initTrainable(1);
    net->eval();
    torch::NoGradGuard noGrad;
    const auto out = net->forward(images, /*withCoherence=*/false);
    std::vector<torch::Tensor> blocks;
    net->encoder->forEachBlockOutput(images, 9, [&](int64_t, const torch::Tensor& t) { blocks.push_back(t); });
    const int64_t skip = 1 + cfg.encoder.numRegisterTokens;
    bool same = out.en.size() == cfg.fuseLayerEncoder.size();
    for (size_t g = 0; same && g < cfg.fuseLayerEncoder.size(); ++g) {
      torch::Tensor sum;
      for (auto i : cfg.fuseLayerEncoder[g]) {
        const auto& t = blocks[static_cast<size_t>(cfg.targetLayers[static_cast<size_t>(i)])];
        sum = sum.defined() ? sum + t : t;
      }
      const auto mean = (sum / static_cast<double>(cfg.fuseLayerEncoder[g].size())).slice(1, skip);
      const auto map = mean.permute({0, 2, 1}).reshape({3, -1, 4, 4});
      same = torch::equal(out.en[g], map);
    }
    check(same, std::string("encoder group means streamed = stacked and averaged") + (removeClass ? "" : " (class token kept)"));
    check(!out.coherence.loss.defined() && net->forward(images).coherence.loss.defined(),
          "the coherence loss only when asked for");
  }
}

// Convolutions one image at a time (per_image.h): bit-identical to the batch's, for the patch
// embedding's RGB input and the blur's 1-channel maps.
void perImageConvolutions() {
  torch::manual_seed(7);
  namespace F = torch::nn::functional;
  const auto rgb = torch::randn({5, 3, 56, 56});
  const auto patchWeight = torch::randn({32, 3, 14, 14});
  const auto patchBias = torch::randn({32});
  const auto maps = torch::rand({5, 1, 60, 60});
  const auto blur = torch::rand({1, 1, 5, 5});
  c10::InferenceMode inference;
  const auto patchOf = [&](const torch::Tensor& x) {
    return F::conv2d(x, patchWeight, F::Conv2dFuncOptions().bias(patchBias).stride(14));
  };
  check(torch::equal(convolvePerImage(rgb, patchOf), patchOf(rgb)), "patch embedding one image at a time = the batch's");
  const auto blurOf = [&](const torch::Tensor& x) { return F::conv2d(x, blur); };
  check(torch::equal(convolvePerImage(maps, blurOf), blurOf(maps)), "blur one map at a time = the batch's");
}

// The image score: the mean of the largest 1% of the map, taken with topk, equals anomalib's
// sort, slice and mean to the bit, ties and repeated values included.
void topRatioScoreAsSorted() {
  torch::manual_seed(11);
  auto maps = torch::rand({4, 1, 224, 224});
  maps[1] = torch::round(maps[1] * 16) / 16;  // many ties
  maps[2].fill_(0.25);
  c10::InferenceMode inference;
  for (const double ratio : {0.01, 0.3, 1.0}) {
    const auto flat = maps.flatten(1);
    const auto k = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(flat.size(1)) * ratio));
    const auto sorted = std::get<0>(torch::sort(flat, 1, /*descending=*/true)).slice(1, 0, k).mean(1);
    check(torch::equal(topRatioScore(maps, ratio), sorted), "top " + std::to_string(ratio) + " score = sort, slice and mean");
  }
}

// unitVectors and cosineMatrix: libtorch's forward bit for bit, gradients those of autograd through
// libtorch's ops to within float32 rounding, clamped rows included.
void cosineGradients() {
  torch::manual_seed(11);
  namespace F = torch::nn::functional;
  const auto rel = [](const torch::Tensor& a, const torch::Tensor& b) {
    return ((a - b).abs().max() / b.abs().max()).item<double>();
  };
  // q as the decoder splits it (a permuted view), one row all zeros (clamped at eps)
  auto base = torch::randn({2, 37, 4 * 16});
  base[0][3].zero_();
  auto x1 = base.clone().requires_grad_(true), x2 = base.clone().requires_grad_(true);
  const auto heads = [](const torch::Tensor& t) { return t.reshape({2, 37, 4, 16}).permute({0, 2, 1, 3}); };
  auto y1 = unitVectors(heads(x1));
  auto y2 = F::normalize(heads(x2), F::NormalizeFuncOptions().dim(-1));
  check(torch::equal(y1, y2), "unitVectors equals F::normalize bit for bit");
  const auto g = torch::randn_like(y1);
  (y1 * g).sum().backward();
  (y2 * g).sum().backward();
  // image 1 has no clamped row; image 0's zero row gets g / eps (1e12 scale) under both
  check(rel(x1.grad()[1], x2.grad()[1]) < 1e-5, "its gradient is autograd's (rel " + sci(rel(x1.grad()[1], x2.grad()[1])) + ")");
  check(rel(x1.grad()[0][3], x2.grad()[0][3]) < 1e-6 && x1.grad()[0][3].abs().max().item<double>() > 1e9,
        "a zero row's gradient is g / eps, as autograd's");
  // the coherence loss's tokens x prototypes
  auto tokens = torch::randn({2, 50, 24});
  auto p1 = torch::randn({2, 6, 24}).requires_grad_(true);
  auto p2 = p1.detach().clone().requires_grad_(true);
  auto t1 = tokens.clone().requires_grad_(true), t2 = tokens.clone().requires_grad_(true);
  auto c1 = cosineMatrix(t1, p1);
  auto c2 = F::cosine_similarity(t2.unsqueeze(2), p2.unsqueeze(1), F::CosineSimilarityFuncOptions().dim(-1));
  check(torch::equal(c1, c2), "cosineMatrix equals F::cosine_similarity bit for bit");
  const auto w = torch::randn_like(c1);
  (c1 * w).sum().backward();
  (c2 * w).sum().backward();
  const double worst = std::max(rel(p1.grad(), p2.grad()), rel(t1.grad(), t2.grad()));
  check(worst < 1e-5, "its gradients are autograd's (rel " + sci(worst) + ")");
  // a zero prototype: libtorch's ops and autograd as they are
  auto p3 = torch::zeros({2, 6, 24});
  p3[1][2] = torch::randn({24});
  p3.requires_grad_(true);
  auto c3 = cosineMatrix(tokens, p3);
  (c3 * w).sum().backward();
  check(torch::isfinite(p3.grad()).all().item<bool>(), "near eps it keeps autograd's path (finite gradients)");
}

// Mixed precision (BFloat16Products): float32 in and out, the product of the bfloat16-rounded
// operands, and float32 gradients reaching float32 weights through the rounding.
void bfloat16Products() {
  torch::manual_seed(4);
  const auto rel = [](const torch::Tensor& a, const torch::Tensor& b) {
    return ((a - b).abs().max() / b.abs().max()).item<double>();
  };
  const auto bf = [](const torch::Tensor& t) { return t.to(torch::kBFloat16).to(torch::kFloat); };
  auto x = torch::randn({2, 7, 24});
  auto w = torch::randn({40, 24}).requires_grad_(true);
  auto b = torch::randn({40});
  auto a = torch::randn({3, 6, 5});
  auto c = torch::randn({3, 5, 4});
  torch::Tensor y, prod, plain;
  {
    BFloat16Products mixed(true);
    y = inpformer::linear(x, w, b);
    prod = batchedMatmul(a, c);
  }
  plain = inpformer::linear(x, w.detach(), b);
  check(y.scalar_type() == torch::kFloat && prod.scalar_type() == torch::kFloat, "bfloat16 products return float32");
  // The exact product of rounded operands (float32 operands holding bfloat16 values), to within
  // float32's rounding where oneDNN's gemm_bf16bf16f32 runs them (float32 results); else within
  // bfloat16's output rounding (2^-8 relative): libtorch's bfloat16 product widened.
  const double tolerance = cpuBf16ProductsFast() ? 1e-5 : 8e-3;
  const auto exact = at::linear(bf(x), bf(w.detach()), b);
  check(rel(y.detach(), exact) < tolerance, "linear is the product of the rounded operands (rel " + sci(rel(y.detach(), exact)) + ")");
  check(rel(y.detach(), plain) > 1e-5, "and not the float32 product (rel " + sci(rel(y.detach(), plain)) + ")");
  check(rel(prod, torch::matmul(bf(a), bf(c))) < tolerance, "batchedMatmul is the product of the rounded operands");
  y.sum().backward();
  check(w.grad().defined() && w.grad().scalar_type() == torch::kFloat, "the float32 weight gets a float32 gradient");
  // d sum(x W^T + b) / dW = sum over rows of x, in bfloat16
  const auto expected = bf(x).reshape({-1, 24}).sum(0).expand({40, 24});
  check(rel(w.grad(), expected) < (cpuBf16ProductsFast() ? 1e-5 : 2e-2),
        "the gradient is the bfloat16 product's (rel " + sci(rel(w.grad(), expected)) + ")");
  {
    // a recorded batched product: gradients of both operands, float32, those of the rounded operands
    auto ga = a.clone().requires_grad_(true), gc = c.clone().requires_grad_(true);
    {
      BFloat16Products mixed(true);
      batchedMatmul(ga, gc).sum().backward();
    }
    const auto ones = torch::ones({3, 6, 4});
    const auto expectA = torch::matmul(ones, bf(c).transpose(-2, -1)), expectC = torch::matmul(bf(a).transpose(-2, -1), ones);
    check(ga.grad().scalar_type() == torch::kFloat && rel(ga.grad(), expectA) < 2e-2 && rel(gc.grad(), expectC) < 2e-2,
          "recorded batched products reach both float32 operands (rel " + sci(std::max(rel(ga.grad(), expectA), rel(gc.grad(), expectC))) + ")");
  }
  {
    // the ViT's attention under mixed precision, blocked, against the whole-matrix path
    c10::InferenceMode inference;
    auto qkv = torch::randn({2, 261, 3, 6, 64}).permute({2, 0, 3, 1, 4});
    auto q = qkv[0] * 0.125, k = qkv[1], v = qkv[2];
    const auto full = torch::matmul(torch::matmul(q, k.transpose(-2, -1)).softmax(-1), v).transpose(1, 2).reshape({2, 261, 384});
    torch::Tensor blocked, whole;
    {
      BFloat16Products mixed(true);
      blocked = softmaxAttention(q, k, v, 48);
      whole = batchedMatmul(softmaxLastDim(batchedMatmul(q, k.transpose(-2, -1))), v).transpose(1, 2).reshape({2, 261, 384});
    }
    check(blocked.scalar_type() == torch::kFloat && rel(blocked, whole) < tolerance,
          "blocked attention in bfloat16 as the whole-matrix path (rel " + sci(rel(blocked, whole)) + ")");
    check(rel(blocked, full) > 1e-5 && rel(blocked, full) < 3e-2, "in bfloat16, near float32's (rel " + sci(rel(blocked, full)) + ")");
  }
  const auto after = inpformer::linear(x, w.detach(), b);
  check(rel(after, plain) == 0.0, "outside the guard, products are float32 again");
}

// The resized position table is kept per grid and made again when the table changes in place
// (a load) or is replaced (a cast); it always equals a fresh resize.
void resizedPositionsFollowTheTable() {
  torch::manual_seed(9);
  torch::NoGradGuard noGrad;
  const auto cfg = referenceConfig().encoder;
  DinoVisionTransformer encoder(cfg), fresh(cfg);
  encoder->pos_embed.copy_(torch::randn_like(encoder->pos_embed));
  const auto freshResize = [&](int64_t h, int64_t w) {
    DinoVisionTransformer other(cfg);
    other->pos_embed.copy_(encoder->pos_embed.to(torch::kFloat));
    return other->interpolatePosEncoding(h, w);
  };
  const auto a = encoder->interpolatePosEncoding(16, 16);
  check(encoder->interpolatePosEncoding(16, 16).data_ptr() == a.data_ptr() && torch::equal(a, freshResize(16, 16)),
        "the resized table is kept for the same grid and equals a fresh resize");
  check(torch::equal(encoder->interpolatePosEncoding(8, 12), freshResize(8, 12)), "another grid is resized afresh");
  encoder->pos_embed.copy_(torch::randn_like(encoder->pos_embed));  // what a load does
  const auto b = encoder->interpolatePosEncoding(8, 12);
  check(torch::equal(b, freshResize(8, 12)) && !torch::equal(b, fresh->interpolatePosEncoding(8, 12)),
        "a table changed in place is resized again");
  encoder->to(torch::kBFloat16);
  encoder->to(torch::kFloat);  // new storages holding bfloat16-rounded values
  check(torch::equal(encoder->interpolatePosEncoding(8, 12), freshResize(8, 12)), "a replaced table is resized again");
}

// Two steps of the reference recipe (warm-up, then the cosine's end).
TrainOptions shortRun() {
  TrainOptions o;
  o.totalSteps = 2;
  o.warmupSteps = 1;
  o.learningRate = 1e-3;
  o.finalLearningRate = 1e-4;
  o.weightDecay = 1e-4;
  o.gradClipNorm = 0.1;
  return o;
}

// A step caps OpenMP at one thread while OpenBLAS has products to do (the forward; the backward
// too with Products::kLibtorch) and gives the caller's count back, whatever mode ran.
void trainingStepThreads() {
  torch::manual_seed(8);
  at::set_num_threads(2);
  const auto images = torch::randn({2, 3, 56, 56});
  using Products = TrainOptions::Products;
  for (auto products : {Products::kLibtorch, Products::kOneDnnGradients, Products::kOneDnn}) {
    InpFormerNet net(referenceConfig());
    net->initTrainable(1);
    auto o = shortRun();
    o.products = products;
    Trainer trainer(net, o);
    const auto s = trainer.step(images);
    check(std::isfinite(s.loss) && at::get_num_threads() == 2,
          std::string("a training step gives the thread count back (products ") + std::to_string(static_cast<int>(products)) + ")");
  }
}

// oneDNN's packed weights (packed_weights.h): products bit-identical to dnnl_sgemm's from 48 rows
// up and within rounding of at::linear below, the same on a capped thread count (a pack is laid
// out for its threads); unpack gives the weight back bit for bit, -0.0 included; weights it could
// not rebuild exactly, and small ones, stay plain.
void packedWeights() {
  if (!packedProductsAvailable()) {
    std::cout << "skip packed weights: oneDNN's packed sgemm not found (" << cpuGemmBackend() << ")\n";
    return;
  }
  torch::manual_seed(10);
  torch::NoGradGuard noGrad;
  at::set_num_threads(2);
  const auto bits = [](const torch::Tensor& t) { return t.contiguous().view(torch::kInt); };
  for (const auto& shape : std::vector<std::pair<int64_t, int64_t>>{{1152, 384}, {384, 1536}, {300, 260}}) {
    const auto n = shape.first, k = shape.second;
    const auto name = std::to_string(n) + "x" + std::to_string(k);
    auto w = torch::randn({n, k});
    w[3][5] = -0.0;
    w[7][1] = 0.0;
    const auto b = torch::randn({n});
    const auto packed = PackedWeight::pack(w, 2);
    check(packed != nullptr && packed->bytes() >= w.nbytes(), name + ": packed (" + std::to_string(packed ? packed->bytes() : 0) + " bytes)");
    if (!packed) continue;
    for (int64_t m : {1, 6, 48, 261}) {
      const auto x = torch::randn({m, k});
      const auto y = packed->linear(x, b);
      const auto plain = inpformer::linear(x, w, b);
      const double rel = ((y - plain).abs().max() / plain.abs().max()).item<double>();
      check(m >= 48 ? torch::equal(y, plain) : rel < 1e-5,
            name + ", " + std::to_string(m) + " rows: packed product " + (m >= 48 ? "equals dnnl_sgemm's" : "within rounding (" + sci(rel) + ")"));
      OpenMpThreadCap one(1);
      check(torch::equal(packed->linear(x, b), y), name + ", " + std::to_string(m) + " rows: the same under a 1-thread cap");
    }
    check(torch::equal(bits(packed->unpack()), bits(w)), name + ": unpack gives the weight back bit for bit, -0.0 included");
  }
  auto infinite = torch::randn({512, 256});
  infinite[2][2] = std::numeric_limits<float>::infinity();
  auto subnormal = torch::randn({512, 256});
  subnormal[2][2] = 1e-40F;
  auto nan = torch::randn({512, 256});
  nan[5][3] = std::numeric_limits<float>::quiet_NaN();
  check(!PackedWeight::pack(infinite, 2) && !PackedWeight::pack(nan, 2) && !PackedWeight::pack(subnormal, 2) &&
            !PackedWeight::pack(torch::randn({64, 64}), 2),
        "a weight with an infinity, a NaN or a subnormal, and a small one, stay plain");
}

// A float32 model packs its linear weights at its first inference, with the same results, and
// gives them back bit for bit to stateDict and training, packing them again after.
void packedModelWeights() {
  if (!packedProductsAvailable()) return;
  torch::manual_seed(11);
  at::set_num_threads(2);
  const auto cfg = upstreamConfig(256, 10, 4, 0);  // wide enough for its weights to be packed
  InpFormerModel model(cfg, RuntimeOptions{"cpu", "float32", 2});
  model.initTrainable(1);
  const auto before = model.stateDict();
  const auto images = torch::randn({2, 3, 56, 56});
  InpFormerNet plain(cfg);  // the same weights, run without packs
  {
    std::map<std::string, torch::Tensor> tensors(before.begin(), before.end());
    loadStateDict(*plain, tensors);
    plain->eval();
  }
  const auto first = model.infer(images, /*withFeatures=*/true);
  const auto count = model.packedWeightCount();
  check(count > 0 && model.packedWeightBytes() > 0, "an inference packs the linear weights (" + std::to_string(count) + ", " +
                                                         std::to_string(model.packedWeightBytes() >> 20) + " MiB)");
  torch::Tensor plainDecoded;
  {
    c10::InferenceMode inference;
    plainDecoded = plain->forward(images, false).de[1];
  }
  const double rel = ((first.decoderFeatures[1] - plainDecoded).abs().max() / plainDecoded.abs().max()).item<double>();
  check(rel < 1e-5, "packed and plain products give the same decoder features (rel " + sci(rel) + ")");
  check(torch::equal(model.infer(images, false).scores, first.scores), "a second inference gives the same scores");
  const auto after = model.stateDict();
  bool same = after.size() == before.size() && model.packedWeightCount() == 0;
  for (size_t i = 0; same && i < after.size(); ++i)
    same = after[i].first == before[i].first && torch::equal(after[i].second.view(torch::kInt), before[i].second.view(torch::kInt));
  check(same, "stateDict unpacks every weight, bit for bit");
  check(torch::equal(model.infer(images, false).scores, first.scores) && model.packedWeightCount() == count,
        "inference packs them again, with the same scores");
  model.beginTraining(shortRun());
  check(model.packedWeightCount() == 0 && std::isfinite(model.trainStep(images).loss) && std::isfinite(model.trainStep(images).loss),
        "training unpacks and steps");
  model.endTraining();
  const auto trained = model.infer(images, false);
  check(model.packedWeightCount() == count, "after training, inference packs the weights again");
  check(!torch::equal(trained.scores, first.scores), "with the trained values (other scores)");
}

int main() {
  const char* fixture = std::getenv("INP_FORMER_FIXTURE");
  if (!fixture) {
    std::cerr << "set INP_FORMER_FIXTURE to the reference-a folder\n";
    return 2;
  }
  try {
    freeCoresSeesNeighbours();  // first: forks before libtorch starts its threads
    stateDictLoader(fixture);
    learningRateSchedule(fixture);
    stableAdamWStep();
    stableAdamWMatchesTheReferenceOps();
    cpuProducts();
    recordedGradientsOnOneDnn();
    bfloat16Products();
    cosineGradients();
    inPlaceActivations();
    blockedAttention();
    streamedEncoderMeans();
    batchChunkSizes();
    perImageConvolutions();
    topRatioScoreAsSorted();
    trainingStepThreads();
    resizedPositionsFollowTheTable();
    packedWeights();
    packedModelWeights();
  } catch (const std::exception& e) {
    std::cout << "FAIL " << e.what() << "\n";
    ++failures;
  }
  std::cout << (failures ? "FAILED: " : "passed, ") << failures << " failure(s)\n";
  return failures ? 1 : 0;
}
