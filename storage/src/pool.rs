//! Reused I/O buffers. A 256 KiB read used to allocate (and the kernel to
//! fault in and zero) a fresh buffer per command; buffers now come from
//! per-size free lists and go back when the last `Bytes` slice of them is
//! dropped by the transport. Retained memory is bounded per size class.

use std::sync::Mutex;

use bytes::Bytes;

/// Smallest pooled size (smaller buffers are cheap to allocate).
const MIN_SHIFT: u32 = 12;
/// Largest pooled size (16 MiB).
const MAX_SHIFT: u32 = 24;
const CLASSES: usize = (MAX_SHIFT - MIN_SHIFT + 1) as usize;
/// Bytes each size class keeps at most (and at least 4 buffers).
const KEEP_BYTES: usize = 16 << 20;

struct Pool {
    classes: [Mutex<Vec<Vec<u8>>>; CLASSES],
}

static POOL: Pool = Pool {
    classes: [const { Mutex::new(Vec::new()) }; CLASSES],
};

fn class_of(cap: usize) -> Option<usize> {
    if !cap.is_power_of_two() {
        return None;
    }
    let shift = cap.trailing_zeros();
    (MIN_SHIFT..=MAX_SHIFT)
        .contains(&shift)
        .then(|| (shift - MIN_SHIFT) as usize)
}

fn keep(class: usize) -> usize {
    (KEEP_BYTES >> (class as u32 + MIN_SHIFT)).max(4)
}

/// A buffer of exactly `len` bytes. Its contents are unspecified (a reused
/// buffer holds older data): the caller overwrites all of it.
pub fn take(len: usize) -> Vec<u8> {
    if !(1 << MIN_SHIFT..=1 << MAX_SHIFT).contains(&len) {
        return vec![0u8; len];
    }
    let cap = len.next_power_of_two();
    let class = class_of(cap).unwrap_or(0);
    let reused = POOL.classes[class]
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pop();
    let mut v = reused.unwrap_or_else(|| Vec::with_capacity(cap));
    if v.len() >= len {
        v.truncate(len);
    } else {
        v.resize(len, 0);
    }
    v
}

/// Returns a buffer to its free list (or frees it when the list is full).
pub fn give(v: Vec<u8>) {
    if let Some(class) = class_of(v.capacity()) {
        let mut list = POOL.classes[class]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if list.len() < keep(class) {
            list.push(v);
        }
    }
}

struct Pooled(Vec<u8>);

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.0));
    }
}

/// The buffer as `Bytes` that go back to the pool when the last slice is dropped.
pub fn into_bytes(v: Vec<u8>) -> Bytes {
    if class_of(v.capacity()).is_some() {
        Bytes::from_owner(Pooled(v))
    } else {
        Bytes::from(v)
    }
}

/// A pooled buffer whose data starts at a given alignment (O_DIRECT needs
/// the buffer aligned to the device's logical block), for an I/O engine that
/// transfers into or out of it while the buffer is owned elsewhere.
pub struct IoBuf {
    raw: Vec<u8>,
    skip: usize,
    len: usize,
}

impl IoBuf {
    /// `len` bytes aligned to `align` (a power of two; 1 for none).
    /// Contents unspecified, as [`take`].
    pub fn aligned(len: usize, align: usize) -> IoBuf {
        let align = align.max(1).next_power_of_two();
        let raw = take(len + align - 1);
        let skip = raw.as_ptr().align_offset(align);
        IoBuf { raw, skip, len }
    }
    /// The first `len` bytes of `v` as they are (no alignment).
    pub fn from_vec(v: Vec<u8>, len: usize) -> IoBuf {
        let len = len.min(v.len());
        IoBuf {
            raw: v,
            skip: 0,
            len,
        }
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.raw[self.skip..self.skip + self.len]
    }
    /// The first `len` bytes as `Bytes` that return the buffer to the pool
    /// when the last slice is dropped (no copy).
    pub fn into_bytes(self, len: usize) -> Bytes {
        let (skip, len) = (self.skip, len.min(self.len));
        into_bytes(self.raw).slice(skip..skip + len)
    }
    /// Back to the pool.
    pub fn give(self) {
        give(self.raw)
    }
}

impl AsRef<[u8]> for IoBuf {
    fn as_ref(&self) -> &[u8] {
        &self.raw[self.skip..self.skip + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_and_have_the_asked_length() {
        // A size class no other test uses (tests share the pool).
        let a = take(6 << 20);
        assert_eq!(a.len(), 6 << 20);
        let ptr = a.as_ptr();
        let b = into_bytes(a);
        let slice = b.slice(1000..2000);
        drop(b);
        drop(slice); // the last reference returns it
        let c = take(5 << 20);
        assert_eq!(c.len(), 5 << 20);
        assert_eq!(c.as_ptr(), ptr, "the buffer was reused");
        give(c);
        let d = take(7 << 20);
        assert_eq!(d.len(), 7 << 20, "grown back to the asked length");
        assert_eq!(take(100).len(), 100);
        assert_eq!(take(100).capacity(), 100, "small buffers are not pooled");
    }

    #[test]
    fn an_io_buffer_starts_aligned_and_keeps_its_bytes() {
        for (len, align) in [(4096, 4096), (512, 512), (256 << 10, 4096), (100, 1)] {
            let mut b = IoBuf::aligned(len, align);
            assert_eq!(b.len(), len);
            assert_eq!(
                b.as_mut_slice().as_ptr() as usize % align,
                0,
                "{len} {align}"
            );
            b.as_mut_slice().fill(7);
            let bytes = b.into_bytes(len / 2);
            assert_eq!(bytes.len(), len / 2);
            assert!(bytes.iter().all(|&x| x == 7));
        }
        let b = IoBuf::from_vec(vec![1, 2, 3, 4], 3);
        assert_eq!(b.as_ref(), &[1, 2, 3]);
    }

    #[test]
    fn retained_memory_is_bounded() {
        let bufs: Vec<Vec<u8>> = (0..200).map(|_| take(3 << 19)).collect();
        for b in bufs {
            give(b);
        }
        let class = class_of(2 << 20).unwrap();
        assert!(POOL.classes[class].lock().unwrap().len() <= keep(class));
        assert_eq!(keep(class), 8);
    }
}
