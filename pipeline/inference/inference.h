#pragma once
// Public entry point of the ONNX inference engine (CPU backend).
#include "allocator.h"    // IWYU pragma: export
#include "executor.h"     // IWYU pragma: export
#include "graph.h"        // IWYU pragma: export (UnsupportedModel)
#include "memory_plan.h"  // IWYU pragma: export
#include "model.h"        // IWYU pragma: export
#include "precision.h"    // IWYU pragma: export
