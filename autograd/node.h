// The autograd graph. Every op that runs while gradients are recorded and has an input that requires
// grad gives its result a Node: one edge per input (to the node that takes that input's gradient) and
// a backward function written in terms of ops, so that it runs on every backend.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace vb {

class Node {
 public:
  using BackwardFn = std::function<std::vector<Tensor>(const Node& self, const Tensor& grad)>;
  using ViewFn = std::function<Tensor(const Tensor& like_input)>;

  std::string name;                         // e.g. "mul": error messages and graph dumps use it
  std::vector<std::shared_ptr<Node>> next;  // per input; nullptr when that input needs no gradient
  BackwardFn backward;                      // returns one gradient per input (undefined = none)
  std::shared_ptr<TensorImpl> leaf;         // set on a leaf's accumulation node

  // Gradients added into a sum instead of written out. While `backward` runs, into[i] (when defined) is the
  // sum of the gradients that already reached input i from its other uses, seen in input i's shape (through
  // the view ops in between, `view` below) and held by the engine alone. backward may add input i's gradient
  // into it and return an undefined gradient for i: a weight used by several passes then gets the later
  // passes' gradients from GEMMs that add into the sum (Backend::matmul_add) and an embedding's rows by
  // index_add, instead of each pass writing out a gradient that is then added in another pass over memory.
  // Empty outside backward; backward functions that ignore it stay correct.
  std::vector<Tensor> into;
  // Set by the view ops (view, reshape, permute) whose one input's gradient is their own, re-viewed: the same
  // view of a contiguous tensor shaped like that input. The engine looks through such nodes for `into`.
  ViewFn view;

  // Whether input i needs a gradient: a backward function skips the work for inputs that don't.
  bool needs(size_t i) const { return i < next.size() && next[i] != nullptr; }
};

// Gradient recording is on by default; NoGradGuard turns it off in a scope (optimizer steps, evaluation,
// and the backward pass itself).
bool grad_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// Records `result` as the output of op `name` applied to `inputs`, when recording is on and an input
// requires grad; returns result either way. `fn` receives the gradient of the result.
Tensor record(Tensor result, const char* name, const std::vector<Tensor>& inputs, Node::BackwardFn fn);

// The leaves (tensors that accumulate a gradient) that a backward from `root` would reach: a
// data-parallel reducer marks the others ready before the backward starts, so that a parameter unused in
// this graph does not hold its bucket back.
std::vector<TensorImpl*> reachable_leaves(const Tensor& root);

// Runs backward from `root`. A scalar root gets gradient 1 when `grad` is undefined; otherwise `grad`
// must have root's shape. The graph's saved tensors are released afterwards unless retain_graph.
void backward(const Tensor& root, const Tensor& grad = {}, bool retain_graph = false);

}  // namespace vb
