// The CPU executor's last passes over a resolved graph (prepare_cpu_graph() in resolve.h):
// Swish fusion, channels-last activations between the ops that take them, and a value of
// its own for each packed weight.
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "resolve.h"

namespace imgpipe::infer {
namespace {

/// Per value: the step writing it and how many data inputs of steps read it (the graph
/// output counts one more reader: the caller).
void producers_and_readers(const ResolvedGraph& g, std::vector<int>& producer, std::vector<int>& readers) {
  producer.assign(g.values.size(), -1);
  readers.assign(g.values.size(), 0);
  for (size_t k = 0; k < g.steps.size(); ++k) {
    const Step& st = g.steps[k];
    producer[st.output] = static_cast<int>(k);
    for (size_t i = 0; i < st.inputs.size(); ++i)
      if (st.inputs[i] >= 0 && st.op->data_input(i)) ++readers[st.inputs[i]];
  }
  ++readers[g.output];
}

/// Mul(x, Sigmoid(x)) where x is a Conv's output read by nothing else becomes the Conv's
/// Swish activation; the Sigmoid and Mul steps are removed.
void fuse_silu(ResolvedGraph& g) {
  std::vector<int> producer, readers;
  producers_and_readers(g, producer, readers);
  std::vector<bool> removed(g.steps.size(), false);
  for (size_t j = 0; j < g.steps.size(); ++j) {
    const Step& mul = g.steps[j];
    if (mul.node->op_type != "Mul" || mul.inputs.size() != 2) continue;
    for (int side = 0; side < 2; ++side) {
      const int x = mul.inputs[side], s = mul.inputs[1 - side];
      if (x < 0 || s < 0 || producer[x] < 0 || producer[s] < 0) continue;
      const Step& sig = g.steps[producer[s]];
      Step& conv = g.steps[producer[x]];
      if (sig.node->op_type != "Sigmoid" || sig.inputs[0] != x || readers[s] != 1 || readers[x] != 2 ||
          conv.node->op_type != "Conv" || g.values[x].shape != g.values[mul.output].shape)
        continue;
      FusedActivation swish;
      swish.kind = FusedActivation::Kind::Swish;
      if (!conv.op->fuse_activation(swish)) continue;
      conv.output = mul.output;
      conv.workspace_floats = conv.op->workspace_floats();
      producer[mul.output] = producer[x];
      removed[j] = removed[producer[s]] = true;
      break;
    }
  }
  std::vector<Step> kept;
  for (size_t k = 0; k < g.steps.size(); ++k)
    if (!removed[k]) kept.push_back(std::move(g.steps[k]));
  g.steps = std::move(kept);
  recompute_liveness(g);
}

/// An activation is NHWC when its writer and every reader take channels-last; the graph's
/// input and output stay NCHW.
void choose_channels_last(ResolvedGraph& g) {
  std::vector<bool> nhwc(g.values.size(), false);
  for (const Step& st : g.steps)
    if (st.op->takes_channels_last() && g.values[st.output].shape.size() == 4) nhwc[st.output] = true;
  nhwc[g.output] = false;
  for (const Step& st : g.steps)
    if (!st.op->takes_channels_last())
      for (size_t i = 0; i < st.inputs.size(); ++i)
        if (st.inputs[i] >= 0) nhwc[st.inputs[i]] = false;
  for (Step& st : g.steps) {
    if (!st.op->takes_channels_last()) continue;
    std::vector<bool> in(st.inputs.size(), false);
    for (size_t i = 0; i < st.inputs.size(); ++i) in[i] = st.inputs[i] >= 0 && nhwc[st.inputs[i]];
    st.op->set_channels_last(in, nhwc[st.output]);
    st.workspace_floats = st.op->workspace_floats();
  }
}

/// A constant an op packs gets packed_floats; read by several steps, each packing reader
/// gets a copy of its own (planned as one more weight).
void assign_packed_weights(ResolvedGraph& g) {
  std::vector<int> producer, readers;
  producers_and_readers(g, producer, readers);
  for (Step& st : g.steps) {
    for (size_t i = 0; i < st.inputs.size(); ++i) {
      const int v = st.inputs[i];
      if (v < 0 || !g.values[v].constant || !st.op->data_input(i)) continue;
      const size_t floats = st.op->packed_floats(i);
      if (!floats) continue;
      if (readers[v] == 1) {
        g.values[v].packed_floats = floats;
        continue;
      }
      Value own = g.values[v];
      own.packed_floats = floats;
      --readers[v];
      st.inputs[i] = static_cast<int>(g.values.size());
      g.values.push_back(std::move(own));
      readers.push_back(1);
    }
  }
  for (size_t v = 0; v < g.values.size(); ++v)
    if (g.values[v].constant && readers[v] == 0) g.values[v].weight = false;
}

/// A step whose op can write over an input (Op::in_place_input()) does so when that input
/// dies there and has the output's size: a residual added in place saves a copy.
void write_in_place(ResolvedGraph& g) {
  for (size_t k = 0; k < g.steps.size(); ++k) {
    Step& st = g.steps[k];
    const int i = st.op->in_place_input();
    if (i < 0 || i >= static_cast<int>(st.inputs.size()) || st.inputs[i] < 0) continue;
    const int v = st.inputs[i];
    const Value& in = g.values[v];
    const bool read_twice = std::count(st.inputs.begin(), st.inputs.end(), v) > 1;
    if (!in.constant && !read_twice && in.last_use == static_cast<int>(k) && in.shape == g.values[st.output].shape)
      st.in_place = i;
  }
}

}  // namespace

void prepare_cpu_graph(ResolvedGraph& g) {
  fuse_residual_adds(g);
  fuse_silu(g);
  choose_channels_last(g);
  assign_packed_weights(g);
  write_in_place(g);
}

void pack_cpu_weights(Graph& g) {
  std::map<const Constant*, std::string> name;
  for (const auto& [key, c] : g.constants) name[c.get()] = key;
  ResolvedGraph r = resolve(g, 1);
  prepare_cpu_graph(r);
  std::map<const Constant*, int> packers;
  for (const Step& st : r.steps)
    for (const int v : st.inputs)
      if (v >= 0 && r.values[v].packed_floats) ++packers[r.values[v].constant.get()];
  for (const Step& st : r.steps) {
    for (size_t i = 0; i < st.inputs.size(); ++i) {
      const int v = st.inputs[i];
      if (v < 0 || !r.values[v].packed_floats) continue;
      const Constant& c = *r.values[v].constant;
      // Shared by several ops, or made while resolving: packed at prepare instead.
      if (packers[&c] != 1 || c.packed || !name.count(&c)) continue;
      auto p = std::make_shared<Constant>();
      p->shape = c.shape;
      p->f.resize(r.values[v].packed_floats);
      st.op->pack(i, c.f.data(), nullptr, p->f.data());
      p->packed = st.op->packed_layout(i);
      if (!p->packed) continue;
      g.constants[name[&c]] = p;
      r.values[v].constant = std::move(p);  // the last holder of the unpacked copy: freed now
    }
  }
}

}  // namespace imgpipe::infer
