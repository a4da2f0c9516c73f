#include "base/memory.h"

#include <dlfcn.h>

#include <atomic>
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

bool huge_pages = false;
std::atomic<int> huge_page_windows{0};

}  // namespace

void set_huge_page_heap(bool on) { huge_pages = on; }
bool huge_page_heap() { return huge_pages; }

huge_page_window::huge_page_window() { huge_page_windows.fetch_add(1); }
huge_page_window::~huge_page_window() { huge_page_windows.fetch_sub(1); }
bool huge_pages_wanted() { return huge_page_windows.load(std::memory_order_relaxed) > 0; }

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
