//! `OutputRing`: the last bytes a terminal printed, addressed by their offset in everything it
//! ever printed, so a client that reconnects gets exactly what it missed (as far as the ring
//! reaches) and memory per session stays bounded.

use std::collections::VecDeque;

use bytes::Bytes;

/// A bounded byte ring with absolute offsets.
#[derive(Debug)]
pub struct OutputRing {
    bytes: VecDeque<u8>,
    capacity: usize,
    end: u64,
}

impl OutputRing {
    /// An empty ring that keeps at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        Self {
            bytes: VecDeque::with_capacity(capacity.min(64 << 10)),
            capacity,
            end: 0,
        }
    }

    /// Appends output, dropping the oldest bytes beyond the capacity.
    pub fn push(&mut self, data: &[u8]) {
        self.end += data.len() as u64;
        let keep = data.len().min(self.capacity);
        self.bytes.extend(&data[data.len() - keep..]);
        let excess = self.bytes.len().saturating_sub(self.capacity);
        self.bytes.drain(..excess);
    }

    /// The offset just past the last byte printed.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// The offset of the oldest byte still held.
    pub fn start(&self) -> u64 {
        self.end - self.bytes.len() as u64
    }

    /// Everything printed from `offset` on, as far as the ring still holds it.
    pub fn since(&self, offset: u64) -> Bytes {
        let from = offset.clamp(self.start(), self.end) - self.start();
        let from = usize::try_from(from).unwrap_or(usize::MAX);
        let (a, b) = self.bytes.as_slices();
        let mut out = Vec::with_capacity(self.bytes.len().saturating_sub(from));
        if from < a.len() {
            out.extend_from_slice(&a[from..]);
            out.extend_from_slice(b);
        } else {
            out.extend_from_slice(&b[from - a.len()..]);
        }
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_tail_with_offsets() {
        let mut ring = OutputRing::new(8);
        ring.push(b"hello");
        assert_eq!((ring.start(), ring.end()), (0, 5));
        assert_eq!(ring.since(2), Bytes::from_static(b"llo"));
        ring.push(b" world");
        assert_eq!((ring.start(), ring.end()), (3, 11));
        assert_eq!(ring.since(0), Bytes::from_static(b"lo world"));
        assert_eq!(ring.since(6), Bytes::from_static(b"world"));
        assert_eq!(ring.since(11), Bytes::new());
        assert_eq!(ring.since(99), Bytes::new());
    }

    #[test]
    fn a_push_larger_than_the_ring_keeps_its_end() {
        let mut ring = OutputRing::new(4);
        ring.push(b"abcdefgh");
        assert_eq!(ring.since(0), Bytes::from_static(b"efgh"));
        assert_eq!(ring.start(), 4);
    }
}
