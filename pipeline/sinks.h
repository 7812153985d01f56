#pragma once
// Output files. Each is written under "<name>.partial" and renamed into place only when
// complete, so a killed run never leaves a half-written file under a final name.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace imgpipe {

/// A file written under a temporary name and renamed on commit(); removed if never committed.
class AtomicFile {
 public:
  explicit AtomicFile(std::string final_path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t bytes);
  void write(const std::string& s) { write(s.data(), s.size()); }
  void seek(int64_t offset);
  /// Flushes, syncs and renames to the final path. Throws std::runtime_error on failure.
  void commit();
  const std::string& path() const { return final_; }

 private:
  std::string final_, temp_;
  FILE* f_ = nullptr;
};

/// Writes a NumPy .npy (format 1.0) array of rows with a fixed per-row shape; the row count
/// is patched into the header on finish(), so rows can be appended as they come.
class NpyWriter {
 public:
  /// descr: NumPy dtype string, e.g. "<f4", "<f2", "|u1".
  NpyWriter(std::string path, std::string descr, std::vector<int64_t> row_shape);
  void append(const void* rows, int64_t n);
  void finish();
  int64_t rows() const { return rows_; }

 private:
  std::string header(int64_t rows) const;
  AtomicFile file_;
  std::string descr_;
  std::vector<int64_t> row_shape_;
  size_t row_bytes_ = 0;
  int64_t rows_ = 0;
};

/// Quotes a CSV field when it needs it (RFC 4180). Bytes are kept exactly, UTF-8 or not.
[[nodiscard]] std::string csv_field(const std::string& s);

/// The records of a CSV text (RFC 4180: quoted fields may hold commas, quotes, newlines).
[[nodiscard]] std::vector<std::vector<std::string>> parse_csv(const std::string& text);

/// `s` as a JSON string literal; bytes that are not valid UTF-8 become U+FFFD (never throws).
[[nodiscard]] std::string json_string(const std::string& s);

/// True when `s` is valid UTF-8.
[[nodiscard]] bool is_utf8(const std::string& s);

/// RFC 4648 base64 of the bytes of `s`.
[[nodiscard]] std::string base64(const std::string& s);

/// Reads the header of a .npy file: descr and shape. Returns false if it is not one.
[[nodiscard]] bool read_npy_header(const std::string& path, std::string& descr, std::vector<int64_t>& shape,
                                   size_t& data_offset);

}  // namespace imgpipe
