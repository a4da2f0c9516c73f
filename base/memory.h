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

// Returns the allocator's free pages to the kernel now: TCMalloc releases its page heap's
// free spans, glibc trims its heaps (malloc_trim). Costs a few milliseconds on a large heap.
void release_free_memory();

}  // namespace base
