#include "placement.h"

#include <algorithm>
#include <cmath>

namespace imgpipe {

kernels::ImageDesc place_image(const PreprocessConfig& c, int w, int h) {
  kernels::ImageDesc d;
  if (c.letterbox_width) {
    const double s = std::min(double(c.letterbox_width) / w, double(c.letterbox_height) / h);
    d.resized_w = std::max(1, int(std::lround(w * s)));
    d.resized_h = std::max(1, int(std::lround(h * s)));
    d.offset_x = (c.letterbox_width - d.resized_w) / 2;
    d.offset_y = (c.letterbox_height - d.resized_h) / 2;
    return d;
  }
  if (c.shorter_side) {
    // As torchvision's Resize(int): the shorter side becomes exactly S, the longer one is
    // truncated, so crops line up with the peer pipeline.
    if (w <= h) {
      d.resized_w = c.shorter_side;
      d.resized_h = std::max(1, int(int64_t(c.shorter_side) * h / w));
    } else {
      d.resized_h = c.shorter_side;
      d.resized_w = std::max(1, int(int64_t(c.shorter_side) * w / h));
    }
  } else if (c.resize_width) {
    d.resized_w = c.resize_width;
    d.resized_h = c.resize_height;
  } else {
    d.resized_w = w;
    d.resized_h = h;
  }
  if (c.crop_width) {
    // torchvision's CenterCrop: round half to even of (size - crop) / 2; a crop larger than
    // the image leaves a padded border.
    d.offset_x = -int(std::nearbyint((d.resized_w - c.crop_width) / 2.0));
    d.offset_y = -int(std::nearbyint((d.resized_h - c.crop_height) / 2.0));
  }
  return d;
}

}  // namespace imgpipe
