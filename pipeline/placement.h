#pragma once
// Where an image of a given size lands in the output tensor: its resized size and offset.
#include "config.h"
#include "preprocess.h"

namespace imgpipe {

/// The resize/crop/letterbox geometry for a width x height image (the full size, before any
/// DCT-domain downscaling). Fills resized_w/h and offset_x/y; the source fields are left 0.
[[nodiscard]] kernels::ImageDesc place_image(const PreprocessConfig& c, int width, int height);

}  // namespace imgpipe
