#include "planner.h"

#include <algorithm>
#include <numeric>
#include <set>

namespace imgpipe::infer {

size_t assign_offsets(const std::vector<Interval>& tensors, std::vector<size_t>& offsets) {
  offsets.assign(tensors.size(), 0);
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return tensors[a].bytes > tensors[b].bytes; });
  std::vector<size_t> placed;
  size_t arena = 0;
  for (size_t t : order) {
    const Interval& me = tensors[t];
    std::vector<std::pair<size_t, size_t>> busy;  // [offset, end) of overlapping tensors
    for (size_t o : placed) {
      const Interval& other = tensors[o];
      if (other.first <= me.last && me.first <= other.last)
        busy.emplace_back(offsets[o], offsets[o] + other.bytes);
    }
    std::sort(busy.begin(), busy.end());
    size_t best = static_cast<size_t>(-1), best_gap = static_cast<size_t>(-1), cursor = 0;
    for (const auto& [begin, end] : busy) {
      if (begin > cursor) {
        const size_t gap = begin - cursor;
        if (gap >= me.bytes && gap < best_gap) { best = cursor; best_gap = gap; }
      }
      cursor = std::max(cursor, end);
    }
    offsets[t] = best != static_cast<size_t>(-1) ? best : cursor;
    arena = std::max(arena, offsets[t] + me.bytes);
    placed.push_back(t);
  }
  return arena;
}

namespace {

/// fp32 workspace floats of step k in fp16 storage with `chunk` images per op call: the
/// op's own scratch plus fp32 copies of the activation inputs (per chunk) and of the
/// output; weights are read in place, in fp32.
size_t fp16_step_floats(const ResolvedGraph& g, const std::vector<int64_t>& unit, size_t k, int64_t chunk) {
  auto elems = [&](int v) -> size_t {
    const Value& val = g.values[v];
    if (val.constant) return stored_floats(val);
    if (!unit[v]) return static_cast<size_t>(numel(val.shape));
    return numel(val.shape) / val.shape[0] * unit[v] * chunk;
  };
  const Step& s = g.steps[k];
  size_t floats = scratch_floats(s.workspace_floats);
  for (size_t i = 0; i < s.inputs.size(); ++i)
    if (s.inputs[i] >= 0 && s.op->data_input(i) && !g.values[s.inputs[i]].constant)
      floats += scratch_floats(elems(s.inputs[i]));
  return floats + scratch_floats(elems(s.output));
}

}  // namespace

std::vector<int64_t> fp16_chunk_images(const ResolvedGraph& g, const std::vector<int64_t>& unit,
                                       bool separable, int64_t batch) {
  std::vector<int64_t> chunk(g.steps.size(), batch);
  if (!separable) return chunk;
  size_t cap = 0;
  for (size_t k = 0; k < g.steps.size(); ++k) cap = std::max(cap, fp16_step_floats(g, unit, k, 1));
  for (size_t k = 0; k < g.steps.size(); ++k)
    while (chunk[k] > 1 && fp16_step_floats(g, unit, k, chunk[k]) > cap) --chunk[k];
  return chunk;
}

Layout make_layout(const ResolvedGraph& g, const ResolvedGraph& one, int64_t batch, Precision p) {
  bool separable = true;
  const std::vector<int64_t> unit = batch_units(g, one, batch, separable);
  const size_t es = element_size(p);
  Layout l;
  l.offset.assign(g.values.size(), 0);
  // A step's output written over one of its inputs (Step::in_place) shares its memory:
  // one interval from the first's definition to the last's last use.
  std::vector<int> root(g.values.size());
  for (size_t k = 0; k < root.size(); ++k) root[k] = static_cast<int>(k);
  for (const Step& st : g.steps)
    if (st.in_place >= 0) root[st.output] = root[st.inputs[st.in_place]];
  std::vector<Interval> acts;
  std::vector<size_t> act_value;
  std::vector<int> slot(g.values.size(), -1);  // per root: its interval
  std::set<const Constant*> counted;
  for (size_t k = 0; k < g.values.size(); ++k) {
    const Value& v = g.values[k];
    if (v.constant) {
      if (v.packed_floats) {  // the op's own copy, allocated by prepare()
        l.offset[k] = l.plan.packed_bytes;
        l.plan.packed_bytes += align_up(v.packed_floats * sizeof(float));
      }
      // The model's constant, resident since load, fp32 at both precisions, read in place
      // (or packed from); counted once however many values share it.
      if ((v.weight || v.packed_floats) && counted.insert(v.constant.get()).second)
        l.plan.weight_bytes += align_up(std::max<size_t>(numel(v.shape), v.constant->stored()) * sizeof(float));
    } else if (v.def >= 0 || v.last_use >= 0) {  // else folded away (fuse_residual_adds)
      const size_t bytes = align_up(static_cast<size_t>(numel(v.shape)) * es);
      l.sum_activation_bytes += bytes;
      const int first = std::max(v.def, 0), last = std::max(v.last_use, v.def);
      int& s = slot[root[k]];
      if (s >= 0) {  // values of one root come in step order: extend its interval
        acts[s].first = std::min(acts[s].first, first);
        acts[s].last = std::max(acts[s].last, last);
        continue;
      }
      s = static_cast<int>(acts.size());
      acts.push_back({bytes, first, last});
      act_value.push_back(k);
    }
  }
  std::vector<size_t> offsets;
  l.plan.arena_bytes = assign_offsets(acts, offsets);
  for (size_t k = 0; k < g.values.size(); ++k)
    if (slot[root[k]] >= 0 && !g.values[k].constant) l.offset[k] = offsets[slot[root[k]]];

  const std::vector<int64_t> chunk =
      p == Precision::FP16 ? fp16_chunk_images(g, unit, separable, batch) : std::vector<int64_t>{};
  size_t ws = 0;
  for (size_t i = 0; i < g.steps.size(); ++i) {
    const size_t floats = p == Precision::FP16 ? fp16_step_floats(g, unit, i, chunk[i])
                                               : scratch_floats(g.steps[i].workspace_floats);
    ws = std::max(ws, floats * sizeof(float));
  }
  l.plan.workspace_bytes = ws;
  if (p != Precision::FP16) return l;
  l.half_storage = true;
  Layout rounded = make_layout(g, one, batch, Precision::FP32);
  return rounded.plan.total() < l.plan.total() ? rounded : l;
}

}  // namespace imgpipe::infer
