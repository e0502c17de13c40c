// Differentiable collectives (autograd/collectives.h).
#include "autograd/collectives.h"

#include "autograd/op_utils.h"

namespace vb {

namespace {
// A contiguous copy that the communicator may write into (never the caller's own storage).
Tensor fresh_contiguous(const Tensor& t) {
  Tensor out = Tensor::empty(t.shape(), t.dtype(), t.device());
  backend(t.device()).copy(detach(t), out);
  return out;
}
}  // namespace

Tensor all_gather_rows(const Tensor& x, dist::Communicator& comm) {
  detail::check_defined("all_gather_rows", x);
  VB_CHECK(x.dim() >= 1, "all_gather_rows: expected rows (b, …), got a scalar");
  const int w = comm.size();
  Shape shape = x.shape();
  shape[0] *= w;
  Tensor local = x.is_contiguous() ? detach(x) : fresh_contiguous(x);
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  Tensor flat_in = local.as_strided({local.numel()}, {1}, local.offset());
  Tensor flat_out = out.as_strided({out.numel()}, {1}, 0);
  comm.all_gather(flat_in, flat_out)->wait();
  dist::Communicator* c = &comm;
  const Shape local_shape = x.shape();
  return record(out, "all_gather_rows", {x}, [c, local_shape](const Node&, const Tensor& g) -> std::vector<Tensor> {
    Tensor gc = fresh_contiguous(g);
    Tensor gx = Tensor::empty(local_shape, g.dtype(), g.device());
    Tensor flat_g = gc.as_strided({gc.numel()}, {1}, 0);
    Tensor flat_gx = gx.as_strided({gx.numel()}, {1}, 0);
    c->reduce_scatter(flat_g, flat_gx, dist::ReduceOp::Sum)->wait();
    return {gx};
  });
}

Tensor all_reduce_sum(const Tensor& x, dist::Communicator& comm) {
  detail::check_defined("all_reduce_sum", x);
  Tensor out = fresh_contiguous(x);
  comm.all_reduce(out, dist::ReduceOp::Sum)->wait();
  dist::Communicator* c = &comm;
  return record(out, "all_reduce_sum", {x}, [c](const Node&, const Tensor& g) -> std::vector<Tensor> {
    Tensor gx = fresh_contiguous(g);
    c->all_reduce(gx, dist::ReduceOp::Sum)->wait();
    return {gx};
  });
}

Tensor sync_batch_norm(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& running_mean, Tensor& running_var,
                       double momentum, double eps, dist::Communicator& comm) {
  detail::check_floating("sync_batch_norm", x);
  VB_CHECK(x.dim() >= 2, "sync_batch_norm: input must have at least 2 dims with channels last, got {}",
           shape_str(x.shape()));
  const int64_t C = x.size(-1);
  const Tensor rows = reshape(x, {-1, C});  // (M, C)
  // Σx and the row count in one all-reduce; the count carries no gradient.
  Tensor count = full({1}, double(rows.size(0)), x.dtype(), x.device());
  Tensor totals = all_reduce_sum(cat({sum(rows, {0}), count}, 0), comm);  // (C + 1)
  const double n = narrow(totals, 0, C, 1).item();
  VB_CHECK(n > 1, "sync_batch_norm: training needs more than one value per channel over all ranks, got {}", n);
  const Tensor mean = mul(narrow(totals, 0, 0, C), 1.0 / n);                       // (C)
  const Tensor centred = sub(rows, mean);                                           // (M, C)
  const Tensor var = mul(all_reduce_sum(sum(mul(centred, centred), {0}), comm), 1.0 / n);  // (C), biased
  Tensor y = mul(centred, rsqrt(add(var, eps)));
  if (w.defined()) y = mul(y, w);
  if (b.defined()) y = add(y, b);
  if (running_mean.defined()) {
    NoGradGuard no_grad;
    copy_(running_mean, add(mul(running_mean, 1 - momentum), mul(detach(mean), momentum)));
    copy_(running_var, add(mul(running_var, 1 - momentum), mul(detach(var), momentum * n / (n - 1))));
  }
  return reshape(y, x.shape());
}

}  // namespace vb
