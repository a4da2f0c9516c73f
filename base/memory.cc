#include "base/memory.h"

#include <dlfcn.h>
#include <malloc.h>

namespace base {

namespace {

// TCMalloc's C entry point, looked up at run time rather than declared: only the raftkv
// binary links TCMalloc, and every other program that uses base runs on glibc.
using release_fn = void (*)();

release_fn tcmalloc_release() {
  static const auto fn =
      reinterpret_cast<release_fn>(::dlsym(RTLD_DEFAULT, "MallocExtension_ReleaseFreeMemory"));
  return fn;
}

}  // namespace

const char* allocator_name() {
  return tcmalloc_release() ? "tcmalloc" : "glibc";
}

void release_free_memory() {
  if (auto release = tcmalloc_release()) {
    release();
    return;
  }
  ::malloc_trim(0);
}

}  // namespace base
