#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "progress.h"

using namespace imgpipe;

namespace {

std::string contents(FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string s;
  for (int c; (c = std::fgetc(f)) != EOF;) s += char(c);
  return s;
}

int count(const std::string& s, const std::string& what) {
  int n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

}  // namespace

TEST(Progress, LinesModeNeverFloods) {
  FILE* f = std::tmpfile();
  Progress p(ProgressMode::Lines, 100000, f, 0.05);
  for (size_t i = 1; i <= 100000; ++i) p.update(i, 0);  // fast: far below one line per 50 ms
  p.finish(100000, 3);
  const std::string out = contents(f);
  EXPECT_LE(count(out, "progress:"), 5) << out;
  EXPECT_NE(out.find("100000/100000 images, 3 skipped"), std::string::npos) << out;
  EXPECT_EQ(out.find('\r'), std::string::npos);  // plain lines for logs and Colab cells
  std::fclose(f);
}

TEST(Progress, LinesModePrintsAgainAfterTheInterval) {
  FILE* f = std::tmpfile();
  Progress p(ProgressMode::Lines, 10, f, 0.02);
  p.update(1, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(40));
  p.update(2, 0);
  EXPECT_EQ(count(contents(f), "progress:"), 1);
  std::fclose(f);
}

TEST(Progress, BarRedrawsInPlaceWithRateAndEta) {
  FILE* f = std::tmpfile();
  Progress p(ProgressMode::Bar, 10, f);
  std::this_thread::sleep_for(std::chrono::milliseconds(120));
  p.update(5, 1);
  p.finish(10, 1);
  const std::string out = contents(f);
  EXPECT_NE(out.find("\r["), std::string::npos) << out;
  EXPECT_NE(out.find("5/10 images, 1 skipped"), std::string::npos) << out;
  EXPECT_NE(out.find("ETA"), std::string::npos) << out;
  EXPECT_EQ(out.back(), '\n');
  std::fclose(f);
}

TEST(Progress, AutoIsLinesWhenNotATerminalAndOffIsSilent) {
  FILE* f = std::tmpfile();  // a file is not a terminal
  Progress a(ProgressMode::Auto, 4, f);
  a.finish(4, 0);
  EXPECT_EQ(contents(f).rfind("progress:", 0), 0u);
  FILE* g = std::tmpfile();
  Progress off(ProgressMode::Off, 4, g);
  off.update(1, 0);
  off.finish(4, 0);
  EXPECT_EQ(contents(g), "");
  std::fclose(f);
  std::fclose(g);
}
