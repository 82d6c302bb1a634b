//! A cache of small freed blocks in front of the system allocator.
//!
//! Every check allocates a few small blocks and frees them when it returns:
//! the host copies the request's strings into the guest through
//! `cabi_realloc`, and the policy drops them at the end of the call. The
//! system allocator of `wasm32-wasip2` (dlmalloc) takes and returns each one
//! through its general bins, which costs more than the matching itself for a
//! short topic. This keeps freed blocks of up to [`MAX_SMALL`] bytes on one
//! free list per size class (16, 32, 64, 128 bytes) and hands them out again
//! first.
//!
//! Memory: a cached block is never given back to the system allocator and
//! never changes class, so an instance keeps, per size class, as many small
//! blocks as it once had live at the same time (and the host's memory limit
//! still bounds the whole instance). Larger blocks and over-aligned ones go
//! straight to the system allocator.
//!
//! The SDK installs it as the global allocator of a policy built for wasm
//! (feature `small-alloc`, on by default). A policy with its own
//! `#[global_allocator]` turns the feature off.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::ptr;

/// Size classes: 16 << 0 ..= 16 << (CLASSES - 1) bytes.
const CLASSES: usize = 4;
const MIN_SMALL: usize = 16;
/// The largest block kept (128 bytes).
pub const MAX_SMALL: usize = MIN_SMALL << (CLASSES - 1);
/// Every small block is allocated with this alignment, so one block serves
/// any request of its class.
const ALIGN: usize = 16;

/// The free lists in front of `A`. Each free block's first word holds the
/// next free block of its class (null ends the list).
pub struct SmallAlloc<A> {
    inner: A,
    free: [Cell<*mut u8>; CLASSES],
}

impl<A> SmallAlloc<A> {
    pub const fn new(inner: A) -> Self {
        SmallAlloc {
            inner,
            free: [const { Cell::new(ptr::null_mut()) }; CLASSES],
        }
    }
}

// SAFETY: the free lists are plain cells, so this is sound only where one
// thread runs: `wasm32` without the `atomics` feature (what `wasm32-wasip2`
// builds), where nothing can run concurrently. Nowhere else.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
unsafe impl<A: Sync> Sync for SmallAlloc<A> {}

/// The class of a layout, if it is small: sizes 1..=16 are class 0,
/// 17..=32 class 1, and so on.
fn class(layout: Layout) -> Option<usize> {
    if layout.size() > MAX_SMALL || layout.align() > ALIGN {
        return None;
    }
    let size = layout.size().max(MIN_SMALL);
    // ceil(log2(size)) - log2(MIN_SMALL)
    let bits = usize::BITS - (size - 1).leading_zeros();
    Some(bits as usize - MIN_SMALL.trailing_zeros() as usize)
}

/// The layout every block of `class` is allocated with.
fn class_layout(class: usize) -> Layout {
    // The size is a power of two at least ALIGN, so this cannot fail;
    // fall back to the largest class's layout rather than panic.
    Layout::from_size_align(MIN_SMALL << class, ALIGN)
        .unwrap_or(Layout::new::<[u128; MAX_SMALL / 16]>())
}

unsafe impl<A: GlobalAlloc> GlobalAlloc for SmallAlloc<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(c) = class(layout) else {
            // SAFETY: the caller's contract, passed on unchanged.
            return unsafe { self.inner.alloc(layout) };
        };
        let head = self.free[c].get();
        if head.is_null() {
            // SAFETY: a class layout has a non-zero size.
            return unsafe { self.inner.alloc(class_layout(c)) };
        }
        // SAFETY: `head` is a free block of class `c` (at least 16 bytes,
        // 16-aligned) that `dealloc` pushed; its first word is the next one.
        let next = unsafe { head.cast::<*mut u8>().read() };
        self.free[c].set(next);
        head
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        match class(layout) {
            Some(c) => {
                // SAFETY: `block` came from `alloc` with a layout of the same
                // class, so it is a class-`c` block we own again: big and
                // aligned enough for one pointer.
                unsafe { block.cast::<*mut u8>().write(self.free[c].get()) };
                self.free[c].set(block);
            }
            // SAFETY: a large block came from `inner` with this layout.
            None => unsafe { self.inner.dealloc(block, layout) },
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = Layout::from_size_align(new_size, layout.align());
        let Ok(new_layout) = new_layout else {
            return ptr::null_mut();
        };
        match (class(layout), class(new_layout)) {
            // Both large: the system allocator may grow in place.
            // SAFETY: the caller's contract, passed on unchanged.
            (None, None) => unsafe { self.inner.realloc(block, layout, new_size) },
            // The same class: the block already has room.
            (Some(a), Some(b)) if a == b => block,
            _ => {
                // SAFETY: the new layout is valid and non-zero (the caller's
                // contract); the copy covers the smaller of the two sizes,
                // both inside their blocks, which do not overlap.
                unsafe {
                    let moved = self.alloc(new_layout);
                    if !moved.is_null() {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                    moved
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    #[test]
    fn classes() {
        let c = |size, align| Layout::from_size_align(size, align).ok().and_then(class);
        assert_eq!(c(1, 1), Some(0));
        assert_eq!(c(16, 8), Some(0));
        assert_eq!(c(17, 1), Some(1));
        assert_eq!(c(32, 16), Some(1));
        assert_eq!(c(33, 1), Some(2));
        assert_eq!(c(64, 4), Some(2));
        assert_eq!(c(65, 1), Some(3));
        assert_eq!(c(128, 1), Some(3));
        assert_eq!(c(129, 1), None);
        assert_eq!(c(8, 32), None);
    }

    /// Blocks are reused by class, keep their contents while live, survive
    /// moves between classes and to and from the system allocator.
    #[test]
    fn reuse_realloc_and_contents() {
        let a = SmallAlloc::new(System);
        let layout = |size| Layout::from_size_align(size, 1).unwrap_or(Layout::new::<u8>());
        unsafe {
            let x = a.alloc(layout(10));
            assert!(!x.is_null());
            a.dealloc(x, layout(10));
            // The same class gets the same block back.
            let y = a.alloc(layout(3));
            assert_eq!(x, y);
            // A different class does not.
            let z = a.alloc(layout(40));
            assert_ne!(z, y);
            // Contents survive a realloc across classes and into a large
            // block and back.
            for i in 0..3 {
                y.add(i).write(i as u8 + 1);
            }
            let y = a.realloc(y, layout(3), 100);
            let y = a.realloc(y, layout(100), 1000);
            let y = a.realloc(y, layout(1000), 5);
            for i in 0..3 {
                assert_eq!(y.add(i).read(), i as u8 + 1);
            }
            a.dealloc(y, layout(5));
            a.dealloc(z, layout(40));
            // Many live blocks of one class are distinct and all reused.
            let many: Vec<*mut u8> = (0..100).map(|_| a.alloc(layout(24))).collect();
            let mut sorted = many.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), 100);
            for (i, p) in many.iter().enumerate() {
                p.write(i as u8);
            }
            for (i, p) in many.iter().enumerate() {
                assert_eq!(p.read(), i as u8);
            }
            for p in &many {
                a.dealloc(*p, layout(24));
            }
            let again: Vec<*mut u8> = (0..100).map(|_| a.alloc(layout(30))).collect();
            let mut again_sorted = again.clone();
            again_sorted.sort();
            assert_eq!(again_sorted, sorted);
            for p in again {
                a.dealloc(p, layout(30));
            }
        }
    }
}
