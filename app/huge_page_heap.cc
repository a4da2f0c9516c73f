#include "app/huge_page_heap.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#ifdef RAFTKV_HUGE_PAGE_HEAP
#include <gperftools/malloc_extension.h>
#endif

#include "base/memory.h"

namespace app {

#ifdef RAFTKV_HUGE_PAGE_HEAP
namespace {

constexpr std::size_t huge_page = std::size_t{2} << 20;

class huge_page_sys_allocator final : public SysAllocator {
 public:
  explicit huge_page_sys_allocator(SysAllocator* next) : next_(next) {}

  void* Alloc(std::size_t size, std::size_t* actual_size, std::size_t alignment) override {
    if (!base::huge_pages_wanted()) return next_->Alloc(size, actual_size, alignment);
    // Whole aligned huge pages: a fault inside a 2 MiB range that is only partly ours
    // would get a small page.
    const std::size_t rounded = (size + huge_page - 1) & ~(huge_page - 1);
    std::size_t got = 0;
    void* p = next_->Alloc(rounded, &got, std::max(alignment, huge_page));
    if (p == nullptr) return next_->Alloc(size, actual_size, alignment);  // e.g. no room
    ::madvise(p, got, MADV_HUGEPAGE);  // a hint: fails harmlessly where THP is off
    if (actual_size != nullptr) *actual_size = got;
    return p;
  }

 private:
  SysAllocator* next_;
};

}  // namespace

bool use_huge_page_heap() {
  const char* env = std::getenv("RAFTKV_HUGE_PAGES");
  if (env != nullptr && std::strcmp(env, "0") == 0) return false;
  auto* ext = MallocExtension::instance();
  SysAllocator* current = ext->GetSystemAllocator();
  if (current == nullptr) return false;
  // Lives as long as the process, as TCMalloc's own allocators do.
  ext->SetSystemAllocator(new huge_page_sys_allocator(current));
  base::set_huge_page_heap(true);
  return true;
}

#else

bool use_huge_page_heap() { return false; }

#endif

}  // namespace app
