// Giving freed memory back to the kernel, whichever allocator the process runs on.
//
// The raftkv binary links TCMalloc (CMake option RAFTKV_TCMALLOC); tests, the sanitizer
// builds and the benchmarks built without it run on glibc's malloc. Code that frees a large
// state at once (a flush, a restore) calls release_free_memory() so that the process's
// resident size follows the state's size down instead of keeping the old state's pages.
#pragma once

namespace base {

// "tcmalloc" or "glibc": the allocator that serves this process's malloc.
const char* allocator_name();

// Whether heap memory can come on 2 MiB pages (app/huge_page_heap.h, which only the raftkv
// binary links, records it here so that the startup log can say so).
void set_huge_page_heap(bool on);
bool huge_page_heap();

// While one of these lives (on any thread), memory the heap takes from the kernel is asked
// for on 2 MiB pages: a snapshot load wraps itself in one (app/huge_page_heap.h says why only
// then).
class huge_page_window {
 public:
  huge_page_window();
  ~huge_page_window();
  huge_page_window(const huge_page_window&) = delete;
  huge_page_window& operator=(const huge_page_window&) = delete;
};
bool huge_pages_wanted();

// Returns the allocator's free pages to the kernel now: TCMalloc releases its page heap's
// free spans, glibc trims its heaps (malloc_trim). Costs a few milliseconds on a large heap.
void release_free_memory();

}  // namespace base
