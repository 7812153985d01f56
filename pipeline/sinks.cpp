#include "sinks.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace imgpipe {
namespace {

constexpr size_t kNpyHeaderBytes = 128;  // fixed, so the row count can be patched in place

[[noreturn]] void io_error(const std::string& what, const std::string& path) {
  throw std::runtime_error(what + " '" + path + "': " + std::strerror(errno));
}

size_t dtype_bytes(const std::string& descr) { return size_t(std::stoi(descr.substr(2))); }

}  // namespace

AtomicFile::AtomicFile(std::string final_path) : final_(std::move(final_path)), temp_(final_ + ".partial") {
  f_ = std::fopen(temp_.c_str(), "wb");
  if (!f_) io_error("cannot create", temp_);
}

AtomicFile::~AtomicFile() {
  if (f_) {
    std::fclose(f_);
    std::remove(temp_.c_str());
  }
}

void AtomicFile::write(const void* data, size_t bytes) {
  if (bytes && std::fwrite(data, 1, bytes, f_) != bytes) io_error("cannot write", temp_);
}

void AtomicFile::seek(int64_t offset) {
  if (std::fseek(f_, long(offset), SEEK_SET) != 0) io_error("cannot seek in", temp_);
}

void AtomicFile::commit() {
  if (std::fflush(f_) != 0 || ::fsync(fileno(f_)) != 0) io_error("cannot flush", temp_);
  std::fclose(f_);
  f_ = nullptr;
  if (std::rename(temp_.c_str(), final_.c_str()) != 0) {
    const int e = errno;
    std::remove(temp_.c_str());  // no .partial left behind when the run stops here
    errno = e;
    io_error("cannot rename to", final_);
  }
}

NpyWriter::NpyWriter(std::string path, std::string descr, std::vector<int64_t> row_shape)
    : file_(std::move(path)), descr_(std::move(descr)), row_shape_(std::move(row_shape)) {
  row_bytes_ = dtype_bytes(descr_);
  for (auto d : row_shape_) row_bytes_ *= size_t(d);
  file_.write(header(0));
}

std::string NpyWriter::header(int64_t rows) const {
  std::string shape = "(" + std::to_string(rows) + ",";
  for (size_t i = 0; i < row_shape_.size(); ++i) shape += (i ? ", " : " ") + std::to_string(row_shape_[i]);
  shape += ")";
  std::string dict = "{'descr': '" + descr_ + "', 'fortran_order': False, 'shape': " + shape + ", }";
  std::string h = "\x93NUMPY";
  h += char(1);
  h += char(0);
  const size_t len = kNpyHeaderBytes - 10;
  dict.resize(len - 1, ' ');
  dict += '\n';
  h += char(len & 0xff);
  h += char(len >> 8);
  return h + dict;
}

void NpyWriter::append(const void* rows, int64_t n) {
  file_.write(rows, row_bytes_ * size_t(n));
  rows_ += n;
}

void NpyWriter::finish() {
  file_.seek(0);
  file_.write(header(rows_));
  file_.commit();
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) {
    if (c == '"') q += '"';
    q += c;
  }
  return q + "\"";
}

std::vector<std::vector<std::string>> parse_csv(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c != '"') field += c;
      else if (i + 1 < text.size() && text[i + 1] == '"') field += text[++i];
      else quoted = false;
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      row.push_back(std::move(field));
      field.clear();
    } else if (c == '\n') {
      row.push_back(std::move(field));
      field.clear();
      rows.push_back(std::move(row));
      row.clear();
    } else if (c != '\r') {
      field += c;
    }
  }
  if (!field.empty() || !row.empty()) {
    row.push_back(std::move(field));
    rows.push_back(std::move(row));
  }
  return rows;
}

std::string json_string(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool is_utf8(const std::string& s) {
  try {
    (void)nlohmann::json(s).dump();
    return true;
  } catch (const nlohmann::json::type_error&) {
    return false;
  }
}

std::string base64(const std::string& s) {
  static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < s.size(); i += 3) {
    uint32_t v = uint32_t(uint8_t(s[i])) << 16;
    if (i + 1 < s.size()) v |= uint32_t(uint8_t(s[i + 1])) << 8;
    if (i + 2 < s.size()) v |= uint8_t(s[i + 2]);
    out += digits[v >> 18];
    out += digits[(v >> 12) & 63];
    out += i + 1 < s.size() ? digits[(v >> 6) & 63] : '=';
    out += i + 2 < s.size() ? digits[v & 63] : '=';
  }
  return out;
}

bool read_npy_header(const std::string& path, std::string& descr, std::vector<int64_t>& shape, size_t& data_offset) {
  std::ifstream f(path, std::ios::binary);
  char magic[10];
  if (!f.read(magic, 10) || std::memcmp(magic, "\x93NUMPY", 6) != 0 || magic[6] != 1) return false;
  const size_t len = size_t(uint8_t(magic[8])) | size_t(uint8_t(magic[9])) << 8;
  std::string dict(len, '\0');
  if (!f.read(dict.data(), std::streamsize(len))) return false;
  data_offset = 10 + len;
  auto field = [&](const std::string& key) -> std::string {
    const auto k = dict.find("'" + key + "': ");
    if (k == std::string::npos) return "";
    return dict.substr(k + key.size() + 4);
  };
  std::string d = field("descr");
  if (d.size() < 2 || d[0] != '\'') return false;
  descr = d.substr(1, d.find('\'', 1) - 1);
  std::string s = field("shape");
  if (s.empty() || s[0] != '(') return false;
  s = s.substr(1, s.find(')') - 1);
  shape.clear();
  size_t pos = 0;
  while (pos < s.size()) {
    while (pos < s.size() && (s[pos] == ' ' || s[pos] == ',')) ++pos;
    if (pos >= s.size()) break;
    size_t end = pos;
    shape.push_back(std::stoll(s.substr(pos), &end));
    pos += end;
  }
  return true;
}

}  // namespace imgpipe
