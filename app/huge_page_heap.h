// Loading a snapshot into memory on transparent huge pages (2 MiB).
//
// Why: on a virtual machine every page fault costs a trap to the hypervisor. A store of a
// million items is ~200 MiB of heap: ~50,000 small pages, each faulted in one at a time while
// a restarted node loads its snapshot. On 2 MiB pages that is ~100 faults: a node's recovery
// took 0.9-1.8 s instead of 2.9-3.4 s on the guest measured (bench/README-scale.md).
//
// Why only then: after fork() (each snapshot is written by a child), the first write to a
// huge page shared with the child splits it into small pages before it copies one, so the
// copy-on-write burst at a snapshot's start can only get dearer with huge pages. Measured
// with the whole heap on them (four 1M-item loads): the slowest leader get near a
// snapshot's start was 60-150 ms, over 100 ms in two of the four runs, against 53-142 ms
// and one run in ten with small pages; the fork itself was shorter (4-6 ms against 8-13)
// and the load ~15% faster. Thin evidence either way, and a stall of the event loop is what
// the scale goals forbid: the heap asks for huge pages only while a base::huge_page_window
// is open, which the snapshot loads open. What is loaded then is split once, at the first
// snapshot after it; the memory the store grows into afterwards stays on small pages.
//
// How: TCMalloc asks the system for memory through a pluggable SysAllocator. The one
// installed here asks the default allocator for whole, aligned 2 MiB pieces while a window
// is open and marks them MADV_HUGEPAGE, which is what the kernel's default THP mode
// ("madvise") needs. Where THP is "never", or the binary runs on glibc's malloc (the
// sanitizer builds), nothing changes; where it is "always", the kernel uses huge pages
// everywhere anyway. The environment variable RAFTKV_HUGE_PAGES=0 turns this off.
#pragma once

namespace app {

// Call once, first thing in main(). Returns whether the allocator was installed.
bool use_huge_page_heap();

}  // namespace app
