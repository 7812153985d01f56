namespace imgpipe {
const char* version() { return IMGPIPE_VERSION; }
}  // namespace imgpipe
