// The backward engine: dependency counting over the graph reachable from the root, then nodes run in an
// order where each receives the sum of all gradients flowing into it before it runs.
#include <deque>
#include <unordered_map>

#include "autograd/node.h"
#include "kernels/backend.h"

namespace vb {

namespace {
thread_local bool g_grad_enabled = true;

// The node that receives gradients for `t`: its grad_fn, or the accumulation node of a leaf.
std::shared_ptr<Node> gradient_edge(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return nullptr;
  if (t.grad_fn()) return t.grad_fn();
  TensorImpl* impl = t.impl();
  if (auto acc = impl->grad_accumulator.lock()) return acc;
  auto acc = std::make_shared<Node>();
  acc->name = "accumulate_grad";
  acc->leaf = t.impl_ptr();
  impl->grad_accumulator = acc;
  return acc;
}

// a + b on a's device, without recording (the engine runs with recording off).
Tensor add_raw(const Tensor& a, const Tensor& b) {
  VB_CHECK(a.shape() == b.shape() && a.dtype() == b.dtype(),
           "backward: gradients of shapes {} ({}) and {} ({}) flow into one tensor", shape_str(a.shape()),
           a.dtype(), shape_str(b.shape()), b.dtype());
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  backend(a.device()).binary(BinaryOp::Add, a, b, out);
  return out;
}

// A contiguous tensor that nothing else can see: no other handle to it, and no view, saved value or user
// handle on its memory. Adding into it in place then changes nothing anyone can observe.
bool sole_owner(const Tensor& t) {
  return t.impl_ptr().use_count() == 1 && t.impl()->storage.use_count() == 1 && t.is_contiguous();
}

// sum += g: in place when sum is its memory's sole owner (a gradient flowing into a tensor from several
// uses — a residual connection, a tied weight — then needs no new buffer and one pass less over memory:
// a twentieth of the base preset's CPU step went to these sums), else into a new tensor.
void accumulate(Tensor& sum, const Tensor& g) {
  if (sole_owner(sum) && sum.shape() == g.shape() && sum.dtype() == g.dtype()) {
    backend(sum.device()).binary(BinaryOp::Add, sum, g, sum);
  } else {
    sum = add_raw(sum, g);  // (which names the shapes when they differ)
  }
}

// The sum of the gradients already waiting for `target` (an input's node), seen as that input: pending[target]
// itself, or, when target is a view op (Node::view) that will receive no other gradient, the same views of the
// sum waiting behind it (views of views too). Undefined when there is none, or when anything else holds it.
Tensor waiting_sum(Node* target, const std::unordered_map<Node*, Tensor>& pending,
                   const std::unordered_map<Node*, int>& deps) {
  std::vector<Node*> views;
  for (Node* t = target; t != nullptr;) {
    if (auto it = pending.find(t); it != pending.end()) {
      if (!it->second.defined() || !sole_owner(it->second)) return {};
      Tensor sum = it->second;
      for (auto v = views.rbegin(); v != views.rend() && sum.defined(); ++v) sum = (*v)->view(sum);
      return sum;
    }
    auto d = deps.find(t);
    if (!t->view || t->next.size() != 1 || d == deps.end() || d->second != 1) return {};
    views.push_back(t);
    t = t->next[0].get();
  }
  return {};
}

void accumulate_into_leaf(Node& node, const Tensor& grad) {
  TensorImpl* leaf = node.leaf.get();
  Tensor g = grad;
  if (g.shape() != leaf->shape || g.dtype() != leaf->dtype) {
    fail("backward: gradient of shape {} ({}) for a leaf of shape {} ({})", shape_str(g.shape()), g.dtype(),
         shape_str(leaf->shape), leaf->dtype);
  }
  if (leaf->grad) {
    // The gradient of an earlier backward, moved out of the leaf so that `sum` alone holds it when nobody
    // else does: accumulate then adds in place.
    Tensor sum(std::move(leaf->grad));
    try {
      accumulate(sum, g);
    } catch (...) {  // gradients that do not add up: the leaf keeps the one it had
      leaf->grad = sum.impl_ptr();
      throw;
    }
    g = sum;
  } else if (!g.is_contiguous()) {
    Tensor c = Tensor::empty(g.shape(), g.dtype(), g.device());
    backend(g.device()).copy(g, c);
    g = c;
  }
  leaf->grad = g.impl_ptr();
  for (const GradHook& hook : leaf->hooks) hook(g);
}
}  // namespace

bool grad_enabled() { return g_grad_enabled; }
NoGradGuard::NoGradGuard() : previous_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = previous_; }

Tensor record(Tensor result, const char* name, const std::vector<Tensor>& inputs, Node::BackwardFn fn) {
  if (!g_grad_enabled) return result;
  bool any = false;
  for (const Tensor& t : inputs) any = any || t.requires_grad();
  if (!any) return result;
  auto node = std::make_shared<Node>();
  node->name = name;
  node->next.reserve(inputs.size());
  for (const Tensor& t : inputs) node->next.push_back(gradient_edge(t));
  node->backward = std::move(fn);
  // A result that shares a handle with an input (a no-op view) gets a fresh handle, so that the
  // input's own grad_fn is not overwritten.
  for (const Tensor& t : inputs) {
    if (t.same(result)) {
      result = result.as_strided(result.shape(), result.strides(), result.offset());
      break;
    }
  }
  result.impl()->requires_grad = true;
  result.impl()->grad_fn = std::move(node);
  return result;
}

std::vector<TensorImpl*> reachable_leaves(const Tensor& root) {
  std::vector<TensorImpl*> out;
  if (!root.defined() || !root.requires_grad()) return out;
  if (!root.grad_fn()) return {root.impl()};
  std::unordered_map<Node*, bool> seen;
  std::vector<Node*> stack = {root.grad_fn().get()};
  seen[stack.back()] = true;
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    if (n->leaf) out.push_back(n->leaf.get());
    for (const auto& e : n->next)
      if (e && !seen[e.get()]) {
        seen[e.get()] = true;
        stack.push_back(e.get());
      }
  }
  return out;
}

void backward(const Tensor& root, const Tensor& grad, bool retain_graph) {
  VB_CHECK(root.defined(), "backward: the root tensor is undefined");
  VB_CHECK(root.requires_grad(), "backward: the root (shape {}) does not require grad: no input of the "
           "computation that made it requires grad, or it ran under NoGradGuard", shape_str(root.shape()));
  Tensor g = grad;
  if (!g.defined()) {
    VB_CHECK(root.numel() == 1, "backward: root has shape {}; pass a gradient of that shape for a non-scalar root",
             shape_str(root.shape()));
    g = Tensor::empty(root.shape(), root.dtype(), root.device());
    backend(root.device()).fill(g, 1.0);
  }
  VB_CHECK(g.shape() == root.shape(), "backward: gradient shape {} differs from the root's shape {}",
           shape_str(g.shape()), shape_str(root.shape()));
  NoGradGuard no_grad;

  std::shared_ptr<Node> start = gradient_edge(root);
  // Count, for every reachable node, how many edges point at it.
  std::unordered_map<Node*, int> deps;
  std::vector<Node*> stack = {start.get()};
  deps[start.get()] = 0;
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const auto& e : n->next) {
      if (!e) continue;
      if (deps[e.get()]++ == 0) stack.push_back(e.get());
    }
  }

  std::unordered_map<Node*, Tensor> pending;
  pending[start.get()] = g;
  std::deque<std::shared_ptr<Node>> ready = {start};
  while (!ready.empty()) {
    std::shared_ptr<Node> node = ready.front();
    ready.pop_front();
    Tensor node_grad;
    if (auto it = pending.find(node.get()); it != pending.end()) {
      node_grad = std::move(it->second);
      pending.erase(it);
    }
    std::vector<Tensor> grads(node->next.size());
    if (node->leaf) {
      if (node_grad.defined()) accumulate_into_leaf(*node, node_grad);
    } else if (node_grad.defined()) {  // a node that no gradient reached only passes the count on
      VB_CHECK(node->backward != nullptr, "backward: the graph through '{}' was already freed by an earlier "
               "backward; pass retain_graph=true to the first call to run backward twice", node->name);
      // The sums already waiting for the node's inputs, which its backward may add into (Node::into).
      node->into.assign(node->next.size(), Tensor());
      for (size_t i = 0; i < node->next.size(); ++i) node->into[i] = waiting_sum(node->next[i].get(), pending, deps);
      try {
        grads = node->backward(*node, node_grad);
      } catch (...) {
        node->into.clear();
        throw;
      }
      node->into.clear();  // (releases the views: the sums are the engine's alone again)
      VB_CHECK(grads.size() == node->next.size(), "backward of '{}' returned {} gradients for {} inputs",
               node->name, grads.size(), node->next.size());
      if (!retain_graph) node->backward = nullptr;
    }
    for (size_t i = 0; i < grads.size(); ++i) {
      Node* target = node->next[i].get();
      if (!target) continue;
      if (grads[i].defined()) {
        Tensor& slot = pending[target];
        if (slot.defined()) accumulate(slot, grads[i]);
        else slot = grads[i];
      }
      // A view op runs as soon as it is ready (it only re-views its gradient), so that a gradient reaches the
      // tensor it views before the other users of that tensor run: they then find it there as a sum to add into.
      if (--deps[target] == 0) {
        if (target->view)
          ready.push_front(node->next[i]);
        else
          ready.push_back(node->next[i]);
      }
    }
  }
}

}  // namespace vb
