// Collectives as differentiable ops: what a loss needs when its batch is spread over the ranks of a
// data-parallel job (kernels/dist/communicator.h carries the bytes).
//
//   all_gather_rows(x)   x (b, …) on each of w ranks → (w·b, …), rank r's rows at [r·b, (r+1)·b).
//                        Backward: every rank's loss may use every row, so the gradient of rank r's rows
//                        is the sum over ranks of the gradient each one computed for them — a
//                        reduce-scatter (sum) of the (w·b, …) gradient. The local rows keep their
//                        gradient; the others' rows send theirs home.
//   all_reduce_sum(x)    x on each rank → Σ_ranks x on every rank. Backward: y_s = Σ_r x_r for every s, so
//                        ∂L/∂x_r = Σ_s ∂L_s/∂y_s — an all-reduce (sum) of the gradient.
// Every rank must call them in the same order with the same shapes (b equal on every rank); their
// backwards then also run in the same order on every rank, as the autograd graph is the same.
#pragma once
#include "autograd/ops.h"
#include "kernels/dist/communicator.h"

namespace vb {

Tensor all_gather_rows(const Tensor& x, dist::Communicator& comm);
Tensor all_reduce_sum(const Tensor& x, dist::Communicator& comm);

// Batch normalisation (training) whose statistics are those of every rank's rows together (PyTorch's
// SyncBatchNorm), composed of the ops above so that autograd differentiates it: x (…, C) channels-last;
//   mean = Σ_ranks Σ_rows x / N,  var = Σ_ranks Σ_rows (x − mean)² / N  (two passes, as exact as one
//   process's batch_norm), y = (x − mean)·(var + eps)^−½·w + b,
// N = every rank's rows. The running statistics are updated in place with (mean, var·N/(N − 1)).
// On one rank it equals batch_norm in training mode.
Tensor sync_batch_norm(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& running_mean, Tensor& running_var,
                       double momentum, double eps, dist::Communicator& comm);

}  // namespace vb
