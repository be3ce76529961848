//! Output buffers of the kernels.
//!
//! A large fresh buffer costs more than the loop that fills it: every 4 KiB page faults
//! on first touch (measured on the benchmark machine: writing a fresh 64 MiB buffer took
//! 90 ms, rewriting it 13 ms, and unmapping it another 10 ms). Like numpy, buffers of at
//! least [`HUGE_MIN`] bytes are advised to use transparent huge pages, which cuts the
//! faults 512-fold (the same fresh write: 37 ms, unmapping 0.6 ms). Zeroed buffers come
//! from `alloc_zeroed`, so the allocator's fresh (already zero) pages are not written
//! twice.

use super::Scalar;
use ndarray::{ArrayD, IxDyn};
use std::alloc::Layout;
use std::cell::Cell;

thread_local! {
    /// `(n, cap)`: buffers of exactly `n` elements allocated on this thread get room for
    /// `cap` (see [`with_capacity`]).
    static CAPACITY: Cell<Option<(usize, usize)>> = const { Cell::new(None) };
}

/// Runs `f` (a kernel call) so that the buffers of exactly `n` elements it allocates on
/// this thread have capacity for `cap`: the executor asks this of a value that a later
/// step will grow in place ([`crate::inplace`]), so that growing it needs no
/// reallocation (which may copy, holding both sizes at once). Buffers a kernel
/// allocates on other threads, or not through this module, get no extra room; the
/// caller reads the capacity it got from the result.
pub(crate) fn with_capacity<R>(n: usize, cap: usize, f: impl FnOnce() -> R) -> R {
    let before = CAPACITY.with(|c| c.replace((cap > n).then_some((n, cap))));
    let r = f();
    CAPACITY.with(|c| c.set(before));
    r
}

/// An empty vector with room for `n` elements (more under [`with_capacity`]), for
/// kernels that push their results.
pub(crate) fn vec_for<T>(n: usize) -> Vec<T> {
    Vec::with_capacity(capacity(n))
}

/// The capacity to give a buffer of `n` elements.
fn capacity(n: usize) -> usize {
    match CAPACITY.with(Cell::get) {
        Some((m, cap)) if m == n => cap,
        _ => n,
    }
}

/// Buffers from this many bytes up get `MADV_HUGEPAGE` (numpy's threshold).
const HUGE_MIN: usize = 1 << 22;

/// Advises the kernel to back the 2 MiB-aligned interior of `[ptr, ptr + bytes)` with
/// huge pages when `bytes` is at least 4 MiB. Purely a hint: failure (no THP support, an
/// old kernel) changes nothing. Public so that callers (the benchmarks) can allocate their
/// own arrays as einc's results are.
pub fn advise_huge(ptr: *mut u8, bytes: usize) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 1 << 21;
        if bytes < HUGE_MIN {
            return;
        }
        let start = (ptr as usize).next_multiple_of(HUGE);
        let end = (ptr as usize + bytes) & !(HUGE - 1);
        if end > start {
            // SAFETY: madvise only changes how the kernel backs pages of this process's
            // own allocation; `[start, end)` lies inside the block the caller owns and is
            // page-aligned. MADV_HUGEPAGE never changes the contents.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, bytes);
}

/// Whether [`release`] gives pages back to the system on this target. Where it does, a
/// buffer's spare capacity of at least [`RELEASE_MIN`] bytes costs no memory until it is
/// written, and the executor counts such buffers by their elements; elsewhere, and for
/// smaller room, it counts them by their capacity ([`room_costs`]).
pub(crate) const RELEASES_ROOM: bool = cfg!(target_os = "linux");

/// Room smaller than this is not given back: it saves little, and writing it again
/// faults its pages back in one at a time, about 2 µs a page on the benchmark VM (0.43
/// ms for the 896 KiB that the paths suite's 5x5 lattice's boundary grows into).
/// Giving back every fresh result's room and every shrinking step's tail, however
/// small, made its 100-site MPS chain with bond 64 run 1.27x slower (4.05 against 5.15
/// ms, `benches/ab.sh`, 2026-12-07).
pub(crate) const RELEASE_MIN: usize = 64 << 10;

/// Whether spare capacity of `bytes` costs memory: it does unless [`release`] gives it
/// back.
pub(crate) fn room_costs(bytes: usize) -> bool {
    !RELEASES_ROOM || bytes < RELEASE_MIN
}

/// Gives back to the system the whole pages of `[ptr, ptr + bytes)`, a part of a buffer
/// that holds nothing the program will read before writing it (the spare capacity of a
/// vector). They read as zeros if touched again, and cost no memory until then. Returns
/// the bytes given back (0 where [`RELEASES_ROOM`] is false, for less than
/// [`RELEASE_MIN`] bytes, or when the range holds no whole page).
pub(crate) fn release(ptr: *mut u8, bytes: usize) -> usize {
    if !room_costs(bytes) {
        return release_pages(ptr, bytes);
    }
    0
}

fn release_pages(ptr: *mut u8, bytes: usize) -> usize {
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let start = (ptr as usize).next_multiple_of(PAGE);
        let end = (ptr as usize + bytes) & !(PAGE - 1);
        if end > start {
            // SAFETY: `[start, end)` is page-aligned and lies inside a block this process
            // allocated and the caller owns, in a part nobody reads before writing it.
            // MADV_DONTNEED on private anonymous memory (what the allocator hands out)
            // only drops the pages' contents: the next touch maps a zero page.
            let r = unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED)
            };
            if r == 0 {
                return end - start;
            }
        }
        0
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (ptr, bytes);
        0
    }
}

/// A zero-filled array of `shape` in standard layout.
pub fn zeros<T: Scalar>(shape: &[usize]) -> ArrayD<T> {
    let n: usize = shape.iter().product();
    let cap = capacity(n);
    let bytes = cap * std::mem::size_of::<T>();
    if bytes < HUGE_MIN {
        if cap > n {
            let mut v = Vec::with_capacity(cap);
            v.resize(n, T::zero());
            return ArrayD::from_shape_vec(IxDyn(shape), v)
                .unwrap_or_else(|_| unreachable!("length equals the shape's product"));
        }
        return ArrayD::from_elem(IxDyn(shape), T::zero());
    }
    let layout = Layout::array::<T>(cap).expect("an array that exists in memory has a layout");
    // SAFETY: `layout` has a non-zero size (bytes >= HUGE_MIN). All-zero bytes are the
    // value zero of every `Scalar` (IEEE floats and pairs of them), so the n elements are
    // initialised (and the rest of the capacity is zero too). The block comes from the
    // global allocator with `Layout::array::<T>(cap)`, which is exactly what `Vec<T>`
    // with capacity cap deallocates with.
    let v = unsafe {
        let p = std::alloc::alloc_zeroed(layout);
        if p.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        advise_huge(p, bytes);
        Vec::from_raw_parts(p.cast::<T>(), n, cap)
    };
    ArrayD::from_shape_vec(IxDyn(shape), v)
        .unwrap_or_else(|_| unreachable!("length equals the shape's product"))
}

/// An array of `shape` filled with `value`, in standard layout.
pub(crate) fn filled<T: Scalar>(shape: &[usize], value: T) -> ArrayD<T> {
    let n: usize = shape.iter().product();
    let cap = capacity(n);
    if cap * std::mem::size_of::<T>() < HUGE_MIN && cap == n {
        // ndarray's own fill (`vec!`), which allocates zeros with calloc.
        return ArrayD::from_elem(IxDyn(shape), value);
    }
    let mut v: Vec<T> = Vec::with_capacity(cap);
    advise_huge(v.as_mut_ptr().cast(), cap * std::mem::size_of::<T>());
    v.resize(n, value);
    ArrayD::from_shape_vec(IxDyn(shape), v)
        .unwrap_or_else(|_| unreachable!("length equals the shape's product"))
}

/// A standard-layout array of `shape` whose every element `fill` writes.
///
/// # Safety
/// `fill` receives a pointer to room for `shape.iter().product()` elements and must
/// write every one of them (and nothing outside) before it returns.
pub(crate) unsafe fn uninit<T: Scalar>(shape: &[usize], fill: impl FnOnce(*mut T)) -> ArrayD<T> {
    let n: usize = shape.iter().product();
    let cap = capacity(n);
    let mut v: Vec<T> = Vec::with_capacity(cap);
    advise_huge(v.as_mut_ptr().cast(), cap * std::mem::size_of::<T>());
    fill(v.as_mut_ptr());
    // SAFETY: the caller's `fill` initialised all n elements within the capacity.
    unsafe { v.set_len(n) };
    ArrayD::from_shape_vec(IxDyn(shape), v)
        .unwrap_or_else(|_| unreachable!("length equals the shape's product"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_complex::Complex32;

    #[test]
    fn large_and_small_buffers() {
        for shape in [&[3usize, 5][..], &[0, 7], &[], &[1 << 11, 1 << 10]] {
            let z = zeros::<Complex32>(shape);
            assert_eq!(z.shape(), shape);
            assert!(z.iter().all(|&x| x == Complex32::new(0.0, 0.0)));
            let f = filled::<f32>(shape, f32::NEG_INFINITY);
            assert!(f.iter().all(|&x| x == f32::NEG_INFINITY));
            let n: usize = shape.iter().product();
            // SAFETY: the closure writes all n elements.
            let u = unsafe {
                uninit::<f64>(shape, |p| {
                    for i in 0..n {
                        *p.add(i) = i as f64;
                    }
                })
            };
            assert!(u.iter().enumerate().all(|(i, &x)| x == i as f64));
        }
    }

    /// Released room is really given back (no page of it resident), the elements before
    /// it are untouched, and writing the room again works.
    #[cfg(target_os = "linux")]
    #[test]
    fn released_room_is_not_resident() {
        const PAGE: usize = 4096;
        let n = 1 << 20;
        let mut v: Vec<f32> = Vec::with_capacity(4 * n);
        v.resize(4 * n, 1.0);
        v.truncate(n);
        let room = v.spare_capacity_mut().as_mut_ptr().cast::<u8>();
        let bytes = (v.capacity() - v.len()) * 4;
        let given = release(room, bytes);
        const { assert!(RELEASES_ROOM) };
        assert!(
            given + 2 * PAGE > bytes,
            "{given} of {bytes} bytes given back"
        );
        let start = (room as usize).next_multiple_of(PAGE);
        let mut resident = vec![0u8; given / PAGE];
        // SAFETY: mincore only reports on pages of this process's own allocation.
        let r = unsafe { libc::mincore(start as *mut libc::c_void, given, resident.as_mut_ptr()) };
        assert_eq!(r, 0);
        let still = resident.iter().filter(|&&b| b & 1 != 0).count();
        assert_eq!(still, 0, "{still} of {} pages resident", resident.len());
        assert!(v.iter().all(|&x| x == 1.0));
        v.resize(4 * n, 2.0);
        assert!(v[n..].iter().all(|&x| x == 2.0));
    }
}
