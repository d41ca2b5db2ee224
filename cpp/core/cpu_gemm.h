// cpu_gemm.h - float32 matrix products for work without gradients, on oneDNN's sgemm.
// libtorch sends CPU float32 products to the system BLAS. Debian's OpenBLAS is held to its AVX2
// kernels on these machines (OPENBLAS_CORETYPE), and its own thread pool spins after each product
// on the cores libtorch's OpenMP workers need next: in a ViT-S forward the GELU after a product
// took 11 ms instead of 1.8. oneDNN, which libtorch already loads for its mkldnn ops, has an
// sgemm with AVX-512 kernels that runs on libtorch's OpenMP threads (measured 387 against 134
// GFLOP/s on a [2088, 384] x [384, 1536] product, Zen 4, 2 threads). It is found at run time (no
// header, no link: a libtorch without an exported dnnl_sgemm keeps libtorch's products).
// Products that autograd records (training's trainable layers) stay on libtorch unless a
// RecordedGradientsOnOneDnn (their gradients' products) or RecordedProductsOnOneDnn (all of
// them) says otherwise.
#pragma once
#include <string>

#include <torch/torch.h>

#include "scoped_flag.h"

namespace inpformer {

// "oneDNN 2.6.3" when float32 products without gradients go through oneDNN's sgemm, otherwise
// "libtorch" (no oneDNN sgemm found, or INP_FORMER_CPU_GEMM=libtorch set for comparisons).
std::string cpuGemmBackend();

// A symbol of libtorch or of a library it loaded (oneDNN, libgomp), nullptr if none: what this
// file and packed_weights.h call is looked up at run time, not linked.
void* symbolNearTorch(const char* symbol);

// True when no product of this process goes to the system BLAS outside training: then jobs that
// only infer need not take turns on the compute lock that guards OpenBLAS (executor.h).
bool inferenceAvoidsBlas();

// Whether the CPU has fast bfloat16 products (avx512_bf16 or AMX) and libtorch has oneDNN to run
// them: what precision 'auto' takes bfloat16 on. Read once; the CPU does not change.
bool cpuBf16ProductsFast();

// While one lives on a thread, linear layers that autograd records there run on oneDNN too,
// forward and backward (training's opt-in: fit's matmul 'onednn'). Outside, they stay on
// libtorch's products, whose roundings the reference training trace was made with.
using RecordedProductsOnOneDnn = ScopedThreadFlag<struct RecordedProductsOnOneDnnTag>;

// While one lives on a thread, linear layers and batchedMatmuls that autograd records there keep
// libtorch's forward products, bit for bit (the values the reference trace's decoder ReLUs saw),
// and compute their gradients' products, twice the forward's work, on oneDNN (fit's matmul
// 'auto'). A gradient's last bits then differ from libtorch's backward, as with another thread
// count; no forward value does.
using RecordedGradientsOnOneDnn = ScopedThreadFlag<struct RecordedGradientsOnOneDnnTag>;

// While one lives on a thread, the float32 products there (linear layers and batchedMatmul,
// recorded or not) are computed in bfloat16: operands rounded to bfloat16, the result float32.
// On a CPU with fast bfloat16 products (cpuBf16ProductsFast) they run on oneDNN's
// gemm_bf16bf16f32, which accumulates and returns float32 (recorded layers through their own
// autograd nodes); elsewhere on libtorch's bfloat16 kernels (tensor cores on CUDA), whose
// bfloat16 result is widened back. Everything between products (norms, softmax, losses), the
// weights, their gradients and the optimizer stay float32: mixed-precision training, fit's
// precision 'bfloat16'.
using BFloat16Products = ScopedThreadFlag<struct BFloat16ProductsTag>;

// Whether libgomp's idle workers spin long before they sleep: its default (300000 rounds) or
// OMP_WAIT_POLICY=ACTIVE, as against OMP_WAIT_POLICY=PASSIVE or a GOMP_SPINCOUNT under 100000
// set by the user. Read from the environment libgomp read at load.
bool openMpWorkersSpinLong();

// The number of threads OpenMP regions started on this thread get (libgomp's per-thread count,
// omp_get_max_threads, which libtorch's parallel ops and oneDNN's products read); 0 without libgomp.
int openMpThreads();

// While one lives, OpenMP regions started on this thread use `threads` threads, fewer or more than
// before; 0 leaves the count alone. It sets libgomp's per-thread count (omp_set_num_threads, found
// next to libtorch) rather than at::set_num_threads, which also rebuilds libtorch's pthreadpool,
// and puts it back on exit. A no-op without libgomp.
class OpenMpThreadCount {
 public:
  explicit OpenMpThreadCount(int threads);
  ~OpenMpThreadCount();
  OpenMpThreadCount(const OpenMpThreadCount&) = delete;
  OpenMpThreadCount& operator=(const OpenMpThreadCount&) = delete;

 private:
  int restore_ = 0;  // the count to put back; 0 when it was not changed
};

// While one lives, OpenMP regions started on this thread use at most `threads` threads; 0 leaves
// the count alone.
class OpenMpThreadCap {
 public:
  explicit OpenMpThreadCap(int threads) : count_(threads > 0 && threads < openMpThreads() ? threads : 0) {}

 private:
  OpenMpThreadCount count_;
};

// at::linear(x, weight, bias), through the weight's oneDNN pack under ActivePackedWeights
// (packed_weights.h), through oneDNN when nothing needs a gradient (or under
// RecordedProductsOnOneDnn; its gradients' products only under RecordedGradientsOnOneDnn), in
// bfloat16 under BFloat16Products.
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias);

// torch::matmul(a, b) for a [..., M, K] and b [..., K, N] with equal batch shapes (either may be a
// transposed view), through oneDNN when nothing needs a gradient (its gradients' products only
// under RecordedGradientsOnOneDnn), in bfloat16 under BFloat16Products.
torch::Tensor batchedMatmul(const torch::Tensor& a, const torch::Tensor& b);

// softmax(q k^T) v for q [B, H, N, d] and k, v [B, H, Nk, d] (views of a qkv product, rows of
// each head's matrix contiguous), heads merged: [B, N, H * d]. Without gradients on oneDNN, each
// OpenMP worker takes a head (or a block of its query rows) through both products and the softmax
// in its own scores buffer, and writes the result in its place among the merged heads: the
// [B, H, N, Nk] scores (30 MB at ViT-B/392, 13 MB at ViT-S/224 batch 8) and the transposing copy
// after them are never made. Blocks start where the sgemm's own row panels would, so the values
// are those of the unblocked batchedMatmul / softmax / batchedMatmul (core_test checks it), which
// it falls back to with gradients, without oneDNN, or with INP_FORMER_ATTENTION=whole (for
// comparisons). Under BFloat16Products it runs blocked on gemm_bf16bf16f32 where found, each
// block's probabilities rounded to bfloat16 as the unblocked path rounds them. rowsPerBlock 0 chooses the blocks; other heights are for tests (one not a
// multiple of 48 rounds a few scores differently).
torch::Tensor softmaxAttention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               int64_t rowsPerBlock = 0);

}  // namespace inpformer
