//! Output arrives in chunks that split lines anywhere; agent-mode streams send whole lines.
//! [`LineSplitter`] keeps the partial tail of each pipe until its newline (or the end).

/// Splits one pipe's chunks into lines (lossy UTF-8, without `\n` or a trailing `\r`).
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

/// A line longer than this is cut into pieces of this size, so a process that never writes a
/// newline cannot make the server buffer without bound.
pub const MAX_LINE: usize = 64 << 10;

impl LineSplitter {
    /// The complete lines in `chunk` (with what was kept from before).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for &byte in chunk {
            if byte == b'\n' {
                lines.push(Self::text(std::mem::take(&mut self.partial)));
            } else {
                self.partial.push(byte);
                if self.partial.len() >= MAX_LINE {
                    lines.push(Self::text(std::mem::take(&mut self.partial)));
                }
            }
        }
        lines
    }

    /// The partial last line, if any (at the end of the stream).
    pub fn finish(&mut self) -> Option<String> {
        (!self.partial.is_empty()).then(|| Self::text(std::mem::take(&mut self.partial)))
    }

    fn text(mut bytes: Vec<u8>) -> String {
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_chunks_are_joined() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"hel"), Vec::<String>::new());
        assert_eq!(s.push(b"lo\nwor"), ["hello"]);
        assert_eq!(s.push(b"ld\r\n\nx"), ["world", ""]);
        assert_eq!(s.finish().as_deref(), Some("x"));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn endless_lines_are_cut() {
        let mut s = LineSplitter::default();
        let lines = s.push(&vec![b'a'; MAX_LINE * 2 + 3]);
        assert_eq!(lines.len(), 2);
        assert_eq!(s.finish().map(|l| l.len()), Some(3));
    }
}
