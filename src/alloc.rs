//! A global allocator that reserves very large blocks lazily.
//!
//! kafka-protocol 0.18 sizes a `Vec` from an array's length field before it reads a single
//! element, so a 20-byte request claiming two billion elements asks for hundreds of GiB.
//! With the system allocator that request fails and the process aborts. Here, blocks of
//! `LAZY_THRESHOLD` or more are mapped with `MAP_NORESERVE`: the kernel hands out address
//! space without committing memory, the decoder then fails on the missing bytes and the
//! block is unmapped, untouched. Legitimate allocations (frames are capped at
//! `socket.request.max.bytes`, 100 MiB by default) stay well below the threshold.
//!
//! No files.

use std::alloc::{GlobalAlloc, Layout, System};

pub const LAZY_THRESHOLD: usize = 1 << 30;
const PAGE: usize = 4096;

pub struct LazyLargeAlloc;

unsafe impl GlobalAlloc for LazyLargeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= LAZY_THRESHOLD && layout.align() <= PAGE {
            map(layout.size())
        } else {
            System.alloc(layout)
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= LAZY_THRESHOLD && layout.align() <= PAGE {
            // Anonymous mappings are already zero.
            map(layout.size())
        } else {
            System.alloc_zeroed(layout)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= LAZY_THRESHOLD && layout.align() <= PAGE {
            libc::munmap(ptr as *mut libc::c_void, layout.size());
        } else {
            System.dealloc(ptr, layout)
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old_lazy = layout.size() >= LAZY_THRESHOLD && layout.align() <= PAGE;
        let new_lazy = new_size >= LAZY_THRESHOLD && layout.align() <= PAGE;
        if !old_lazy && !new_lazy {
            return System.realloc(ptr, layout, new_size);
        }
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        let new = self.alloc(new_layout);
        if !new.is_null() {
            std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        new
    }
}

unsafe fn map(size: usize) -> *mut u8 {
    let p = libc::mmap(
        std::ptr::null_mut(),
        size,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
        -1,
        0,
    );
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p as *mut u8
    }
}
