#include <cstdio>
namespace imgpipe { const char* version(); }
int main() { std::printf("imgpipe %s\n", imgpipe::version()); }
