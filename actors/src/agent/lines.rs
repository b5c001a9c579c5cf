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

/// The stdout and stderr of one process, each split into lines by its own [`LineSplitter`] and
/// named by its stream (`"stdout"`, `"stderr"`), as agent-mode log events name them.
#[derive(Debug, Default)]
pub struct OutputLines {
    stdout: LineSplitter,
    stderr: LineSplitter,
}

impl OutputLines {
    /// The complete lines of a stdout chunk, and the stream's name.
    pub fn stdout(&mut self, chunk: &[u8]) -> (Vec<String>, &'static str) {
        (self.stdout.push(chunk), "stdout")
    }

    /// The complete lines of a stderr chunk, and the stream's name.
    pub fn stderr(&mut self, chunk: &[u8]) -> (Vec<String>, &'static str) {
        (self.stderr.push(chunk), "stderr")
    }

    /// At the end of the stream: each stream's partial last line, stdout's first, with the
    /// stream's name.
    pub fn finish(&mut self) -> Vec<(&'static str, String)> {
        [("stdout", &mut self.stdout), ("stderr", &mut self.stderr)]
            .into_iter()
            .filter_map(|(stream, splitter)| Some((stream, splitter.finish()?)))
            .collect()
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
    fn output_lines_keep_each_stream_apart_and_flush_stdout_first() {
        let mut lines = OutputLines::default();
        assert_eq!(lines.stderr(b"err"), (Vec::<String>::new(), "stderr"));
        assert_eq!(lines.stdout(b"a\nb"), (vec!["a".to_string()], "stdout"));
        assert_eq!(
            lines.finish(),
            [("stdout", "b".to_string()), ("stderr", "err".to_string())]
        );
        assert_eq!(lines.finish(), []);
        lines.stderr(b"only");
        assert_eq!(lines.finish(), [("stderr", "only".to_string())]);
    }

    #[test]
    fn endless_lines_are_cut() {
        let mut s = LineSplitter::default();
        let lines = s.push(&vec![b'a'; MAX_LINE * 2 + 3]);
        assert_eq!(lines.len(), 2);
        assert_eq!(s.finish().map(|l| l.len()), Some(3));
    }
}
