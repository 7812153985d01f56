#include <gtest/gtest.h>

#include <filesystem>

#include "sinks.h"
#include "test_util.h"

using namespace imgpipe;

TEST(Sinks, AtomicFileAppearsOnlyOnCommit) {
  test::TempDir dir;
  {
    AtomicFile f(dir / "a.txt");
    f.write("hello");
    EXPECT_FALSE(std::filesystem::exists(dir / "a.txt"));
    EXPECT_TRUE(std::filesystem::exists(dir / "a.txt.partial"));
    f.commit();
  }
  EXPECT_EQ(test::read_file(dir / "a.txt"), "hello");
  EXPECT_FALSE(std::filesystem::exists(dir / "a.txt.partial"));
  {
    AtomicFile abandoned(dir / "b.txt");
    abandoned.write("half");
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "b.txt"));
  EXPECT_FALSE(std::filesystem::exists(dir / "b.txt.partial"));
}

TEST(Sinks, NpyHeaderAndRowsReadBack) {
  test::TempDir dir;
  std::vector<float> rows(2 * 3 * 4 * 5);
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = float(i) * 0.5f;
  NpyWriter w(dir / "t.npy", "<f4", {3, 4, 5});
  w.append(rows.data(), 1);
  w.append(rows.data() + 60, 1);
  w.finish();
  std::string descr;
  std::vector<int64_t> shape;
  size_t offset = 0;
  ASSERT_TRUE(read_npy_header(dir / "t.npy", descr, shape, offset));
  EXPECT_EQ(descr, "<f4");
  EXPECT_EQ(shape, (std::vector<int64_t>{2, 3, 4, 5}));
  EXPECT_EQ(offset % 64, 0u);  // NumPy aligns the data to 64 bytes
  const std::string bytes = test::read_file(dir / "t.npy");
  ASSERT_EQ(bytes.size(), offset + rows.size() * 4);
  EXPECT_EQ(std::memcmp(bytes.data() + offset, rows.data(), rows.size() * 4), 0);
}

TEST(Sinks, EmptyNpyIsValid) {
  test::TempDir dir;
  NpyWriter w(dir / "e.npy", "|u1", {224, 224, 3});
  w.finish();
  std::string descr;
  std::vector<int64_t> shape;
  size_t offset = 0;
  ASSERT_TRUE(read_npy_header(dir / "e.npy", descr, shape, offset));
  EXPECT_EQ(shape, (std::vector<int64_t>{0, 224, 224, 3}));
}

TEST(Sinks, CsvFieldsAreQuotedWhenNeeded) {
  EXPECT_EQ(csv_field("plain/path.jpg"), "plain/path.jpg");
  EXPECT_EQ(csv_field("a,b.jpg"), "\"a,b.jpg\"");
  EXPECT_EQ(csv_field("say \"hi\".jpg"), "\"say \"\"hi\"\".jpg\"");
}

TEST(Sinks, CsvReadsBackWhatCsvFieldWrote) {
  const std::vector<std::string> fields = {"plain.jpg", "a,b.jpg", "say \"hi\".jpg", "two\nlines.jpg", "", "\xff.jpg"};
  std::string text;
  for (const auto& f : fields) text += "0," + csv_field(f) + ",\n";
  const auto rows = parse_csv(text);
  ASSERT_EQ(rows.size(), fields.size());
  for (size_t i = 0; i < fields.size(); ++i) EXPECT_EQ(rows[i], (std::vector<std::string>{"0", fields[i], ""}));
}

TEST(Sinks, JsonOfNamesThatAreNotUtf8) {
  EXPECT_TRUE(is_utf8("caf\xc3\xa9.jpg"));
  EXPECT_FALSE(is_utf8("a\xff" "b.jpg"));
  EXPECT_EQ(json_string("a\xff" "b"), "\"a\xef\xbf\xbd" "b\"");  // U+FFFD, never an exception
  // RFC 4648 test vectors
  EXPECT_EQ(base64(""), "");
  EXPECT_EQ(base64("f"), "Zg==");
  EXPECT_EQ(base64("fo"), "Zm8=");
  EXPECT_EQ(base64("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64("\xff"), "/w==");
}
