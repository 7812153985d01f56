#include "executor.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "graph.h"
#include "parallel.h"
#include "planner.h"
#include "resolve.h"

namespace imgpipe::infer {
namespace {

/// Profiling key of a step: the op type, with kernel and stride for a Conv.
std::string step_label(const Node& n) {
  if (n.op_type != "Conv") return n.op_type;
  const std::vector<int64_t> k = attr_ints(n, "kernel_shape"), st = attr_ints(n, "strides", {1, 1});
  std::string l = "Conv";
  if (k.size() == 2) l += " " + std::to_string(k[0]) + "x" + std::to_string(k[1]);
  if (!st.empty() && st[0] != 1) l += " s" + std::to_string(st[0]);
  if (attr_int(n, "group", 1) != 1) l += " grouped";
  return l;
}

#if defined(__x86_64__) && defined(__GNUC__)
// F16C converts 8 values per instruction with the same round-to-nearest-even as
// float_to_half (NaNs stay NaNs, payloads may differ); picked at run time.
__attribute__((target("avx,f16c"))) void to_half_f16c(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) dst[i] = float_to_half(src[i]);
}
__attribute__((target("avx,f16c"))) void to_float_f16c(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  for (; i < n; ++i) dst[i] = half_to_float(src[i]);
}
const bool kHasF16c = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx");
#else
const bool kHasF16c = false;
void to_half_f16c(const float*, uint16_t*, int64_t) {}
void to_float_f16c(const uint16_t*, float*, int64_t) {}
#endif

void to_half(const float* src, uint16_t* dst, int64_t n) {
  if (kHasF16c)
    return parallel_for(n, int64_t{1} << 14, [&](int64_t b, int64_t e) { to_half_f16c(src + b, dst + b, e - b); });
#pragma omp parallel for if (n > 65536)
  for (int64_t i = 0; i < n; ++i) dst[i] = float_to_half(src[i]);
}
void to_float(const uint16_t* src, float* dst, int64_t n) {
  if (kHasF16c)
    return parallel_for(n, int64_t{1} << 14, [&](int64_t b, int64_t e) { to_float_f16c(src + b, dst + b, e - b); });
#pragma omp parallel for if (n > 65536)
  for (int64_t i = 0; i < n; ++i) dst[i] = half_to_float(src[i]);
}

}  // namespace

struct Executor::Prepared {
  int batch = 0;
  Precision precision = Precision::FP32;
  ResolvedGraph graph;
  Layout layout;
  Buffer arena, workspace;  // the weights are the model's own constants, read in place
  Buffer packed;            // ... or, for an op that packs them (Op::pack()), its own layout
  // Per value: dim 0 for one image when it scales with the batch, else 0.
  std::vector<int64_t> unit0;
  bool separable = true;
  std::vector<int> fp16_chunk;  ///< per step: images per op call in fp16 (fp16_chunk_images)
  // Scratch reused by every run() so that it allocates nothing.
  std::vector<std::vector<Shape>> in_shapes;
  std::vector<Shape> out_shapes;
  std::vector<std::vector<const float*>> in_ptrs;

  void run_step_fp32(size_t k, int n, float* ws) {
    const Step& st = graph.steps[k];
    for (size_t i = 0; i < st.inputs.size(); ++i) {
      const int v = st.inputs[i];
      in_ptrs[k][i] = nullptr;
      if (v < 0) continue;
      runtime_shape(v, n, in_shapes[k][i]);
      if (st.op->data_input(i)) in_ptrs[k][i] = reinterpret_cast<const float*>(where(v));
    }
    runtime_shape(st.output, n, out_shapes[k]);
    st.op->run(OpArgs{in_ptrs[k].data(), in_shapes[k].data(), in_ptrs[k].size(),
                      reinterpret_cast<float*>(where(st.output)), &out_shapes[k], ws});
  }

  /// fp16 storage of the activations: widen them chunk by chunk (fp16_chunk[k] images) so
  /// that the fp32 scratch stays small, and narrow the output. The weights are the model's
  /// fp32 constants at both precisions (one copy, never widened into scratch), so fp16
  /// never needs more memory than fp32.
  void run_step_fp16(size_t k, int n, float* ws) {
    const Step& st = graph.steps[k];
    std::vector<Shape>& shapes = in_shapes[k];
    std::vector<const float*>& ptrs = in_ptrs[k];
    float* cursor = ws;
    for (size_t i = 0; i < st.inputs.size(); ++i) {
      const int v = st.inputs[i];
      ptrs[i] = nullptr;
      if (v < 0 || !graph.values[v].constant) continue;
      runtime_shape(v, n, shapes[i]);
      if (st.op->data_input(i)) ptrs[i] = reinterpret_cast<const float*>(where(v));
    }
    const int chunk = std::min(fp16_chunk[k], n);
    for (int i0 = 0; i0 < n; i0 += chunk) {
      const int c = std::min(chunk, n - i0);
      float* cur = cursor;
      for (size_t i = 0; i < st.inputs.size(); ++i) {
        const int v = st.inputs[i];
        if (v < 0 || graph.values[v].constant) continue;
        runtime_shape(v, c, shapes[i]);
        if (!st.op->data_input(i)) continue;
        const int64_t count = numel(shapes[i]);
        const int64_t first = unit0[v] ? count / c * i0 : 0;  // batch-independent: whole
        to_float(reinterpret_cast<const uint16_t*>(where(v)) + first, cur, count);
        ptrs[i] = cur;
        cur += scratch_floats(count);
      }
      runtime_shape(st.output, c, out_shapes[k]);
      const int64_t count = numel(out_shapes[k]);
      float* out = cur;
      cur += scratch_floats(count);
      st.op->run(OpArgs{ptrs.data(), shapes.data(), ptrs.size(), out, &out_shapes[k], cur});
      const int64_t first = unit0[st.output] ? count / c * i0 : 0;
      to_half(out, reinterpret_cast<uint16_t*>(where(st.output)) + first, count);
    }
  }

  char* where(int v) const {
    const Value& val = graph.values[v];
    if (val.packed_floats) return packed.data() + layout.offset[v];
    if (val.constant) return reinterpret_cast<char*>(const_cast<float*>(val.constant->f.data()));
    return arena.data() + layout.offset[v];
  }
  void runtime_shape(int v, int n, Shape& s) const {
    s = graph.values[v].shape;  // same length every time: no reallocation
    if (unit0[v] && !s.empty()) s[0] = unit0[v] * n;
  }
};

Executor::Executor(Model model, Allocator& allocator)
    : model_(std::move(model)), allocator_(allocator) {}

Executor::~Executor() { release(); }

void Executor::release() noexcept { state_.reset(); }

void Executor::enable_profiling(bool on) {
  profiling_ = on;
  timings_.clear();
}

std::vector<OpTiming> Executor::op_timings() const {
  std::vector<OpTiming> t = timings_;
  std::stable_sort(t.begin(), t.end(), [](const OpTiming& a, const OpTiming& b) { return a.seconds > b.seconds; });
  return t;
}

bool Executor::prepared() const { return state_ != nullptr; }
int Executor::batch() const { return state_ ? state_->batch : 0; }
Precision Executor::precision() const { return precision_; }
const MemoryPlan& Executor::memory_plan() const {
  static const MemoryPlan none{};
  return state_ ? state_->layout.plan : none;
}

void Executor::set_precision(Precision p) {
  const bool was_prepared = prepared();
  const int b = batch();
  precision_ = p;
  if (was_prepared && state_->precision != p) prepare(b, p);
}

void Executor::prepare(int batch, Precision p) {
  if (batch < 1) throw std::invalid_argument("batch must be at least 1");
  release();  // free the old weights and arena before asking for new ones
  precision_ = p;
  const Graph& g = *model_.graph();
  auto s = std::make_unique<Prepared>();
  s->batch = batch;
  s->precision = p;
  s->graph = resolve(g, batch);
  prepare_cpu_graph(s->graph);  // Model::plan() does the same
  // Which tensors carry the batch in dim 0: compare with the graph resolved at batch 1.
  const ResolvedGraph one = resolve(g, 1);
  s->layout = make_layout(s->graph, one, batch, p);
  s->unit0 = batch_units(s->graph, one, batch, s->separable);
  if (s->unit0[s->graph.output] != 1 && batch > 1)
    throw UnsupportedModel("output '" + g.output_name + "' does not scale with the batch (" +
                           to_string(s->graph.values[s->graph.output].shape) + " at batch " +
                           std::to_string(batch) + "); was the model exported with a fixed batch?");

  for (const int64_t c : fp16_chunk_images(s->graph, s->unit0, s->separable, batch))
    s->fp16_chunk.push_back(static_cast<int>(c));
  for (const Step& st : s->graph.steps) {
    s->in_shapes.emplace_back(st.inputs.size());
    s->in_ptrs.emplace_back(st.inputs.size(), nullptr);
    s->out_shapes.emplace_back();
  }

  const MemoryPlan& plan = s->layout.plan;
  s->arena = Buffer(allocator_, plan.arena_bytes);
  s->workspace = Buffer(allocator_, plan.workspace_bytes);
  s->packed = Buffer(allocator_, plan.packed_bytes);
  // Weights an op keeps in its own layout (Op::pack()) that the model does not hold in it
  // already (pack_cpu_weights()); fp32 at both precisions, as the constants themselves.
  for (const Step& st : s->graph.steps)
    for (size_t i = 0; i < st.inputs.size(); ++i) {
      const int v = st.inputs[i];
      if (v < 0 || !s->graph.values[v].packed_floats) continue;
      const Constant& c = *s->graph.values[v].constant;
      st.op->pack(i, c.f.data(), c.packed.get(), reinterpret_cast<float*>(s->where(v)));
    }
  state_ = std::move(s);
}

void Executor::run(const float* input, int batch_n, float* output) {
  if (!state_) throw std::logic_error("Executor::run before prepare()");
  Prepared& s = *state_;
  if (batch_n < 1 || batch_n > s.batch)
    throw std::invalid_argument("batch_n " + std::to_string(batch_n) + " outside 1.." + std::to_string(s.batch));
  // fp16: activations stored as fp16, or (where that needs less memory) stored as fp32 with
  // every value rounded to fp16, which gives the same numbers.
  const bool half = s.precision == Precision::FP16 && s.layout.half_storage;
  const bool rounded = s.precision == Precision::FP16 && !s.layout.half_storage;
  auto round_to_half = [](float* v, int64_t n) {
    for (int64_t i = 0; i < n; ++i) v[i] = half_to_float(float_to_half(v[i]));
  };
  const ResolvedGraph& g = s.graph;

  const int64_t in_n = model_.input_size() * batch_n;
  if (half) to_half(input, reinterpret_cast<uint16_t*>(s.where(g.input)), in_n);
  else std::memcpy(s.where(g.input), input, static_cast<size_t>(in_n) * sizeof(float));
  // A model whose tensors carry the batch elsewhere than in dim 0 (ViT's attention moves it
  // to dim 1) runs at its prepared batch only: a short batch is padded with zero images,
  // whose outputs are dropped. (Exact for models that keep images apart, as classifiers do.)
  const int run_n = s.separable ? batch_n : s.batch;
  if (rounded) round_to_half(reinterpret_cast<float*>(s.where(g.input)), in_n);
  if (run_n > batch_n) {
    const int64_t pad = model_.input_size() * (run_n - batch_n);
    if (half) std::memset(reinterpret_cast<uint16_t*>(s.where(g.input)) + in_n, 0, size_t(pad) * sizeof(uint16_t));
    else std::memset(reinterpret_cast<float*>(s.where(g.input)) + in_n, 0, size_t(pad) * sizeof(float));
  }

  float* ws = reinterpret_cast<float*>(s.workspace.data());
  using Clock = std::chrono::steady_clock;
  for (size_t k = 0; k < g.steps.size(); ++k) {
    const Clock::time_point t0 = profiling_ ? Clock::now() : Clock::time_point{};
    if (half) s.run_step_fp16(k, run_n, ws);
    else s.run_step_fp32(k, run_n, ws);
    if (rounded) round_to_half(reinterpret_cast<float*>(s.where(g.steps[k].output)), numel(s.out_shapes[k]));
    if (profiling_) {
      const std::string label = step_label(*g.steps[k].node);
      auto it = std::find_if(timings_.begin(), timings_.end(),
                             [&](const OpTiming& t) { return t.label == label; });
      if (it == timings_.end()) it = timings_.insert(timings_.end(), OpTiming{label});
      it->seconds += std::chrono::duration<double>(Clock::now() - t0).count();
      ++it->calls;
    }
  }

  const int64_t out_n = model_.output_size() * batch_n;
  if (half) to_float(reinterpret_cast<const uint16_t*>(s.where(g.output)), output, out_n);
  else std::memcpy(output, s.where(g.output), static_cast<size_t>(out_n) * sizeof(float));
}

}  // namespace imgpipe::infer
