//! File bytes to text: UTF-8 only, and a file that is not UTF-8 is reported at its first bad
//! byte rather than as a bare I/O error.
//!
//! [`crate::Files::read`] returns text, so an implementation decodes the bytes it reads with
//! [`decode_utf8`] and returns its error as an `io::Error` (`From` does that): the loader finds
//! the [`InvalidUtf8`] inside ([`InvalidUtf8::in_io_error`]) and points at the line and column.
//! A byte-order mark is left in the text; the loader skips it.

use std::fmt;

/// The UTF-8 byte-order mark as a character: some Windows editors start files with it.
pub const BOM: char = '\u{FEFF}';

/// A file that is not valid UTF-8, and where its first invalid byte is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidUtf8 {
    /// The file, relative to the project.
    pub path: String,
    /// Byte offset of the first invalid byte.
    pub offset: usize,
    /// The invalid byte.
    pub byte: u8,
    /// 1-based line of the invalid byte.
    pub line: usize,
    /// 1-based column of the invalid byte, in characters (a leading byte-order mark does not
    /// count, as for the rest of the file's positions).
    pub col: usize,
    /// The line holding the invalid byte, with invalid sequences shown as `\u{FFFD}`.
    pub line_text: String,
}

impl InvalidUtf8 {
    /// The [`InvalidUtf8`] an `io::Error` carries, if it was made from one.
    pub fn in_io_error(e: &std::io::Error) -> Option<&InvalidUtf8> {
        e.get_ref()?.downcast_ref::<InvalidUtf8>()
    }
}

impl fmt::Display for InvalidUtf8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is not valid UTF-8: byte 0x{:02X} at line {}, column {}",
            self.path, self.byte, self.line, self.col
        )
    }
}

impl std::error::Error for InvalidUtf8 {}

impl From<InvalidUtf8> for std::io::Error {
    /// An `InvalidData` error that carries the position (see [`InvalidUtf8::in_io_error`]).
    fn from(e: InvalidUtf8) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

/// The text of the file at `path` (relative to the project) whose content is `bytes`.
///
/// Every [`crate::Files`] implementation decodes with this, so a file that is not UTF-8 is
/// reported the same way whatever it is read from: `DirFiles` for a directory, and
/// `mlctl_git::TreeFiles` for a commit (`decode_utf8(path, blob.content().to_vec())
/// .map_err(std::io::Error::from)`).
///
/// # Errors
/// [`InvalidUtf8`] with the position of the first invalid byte.
pub fn decode_utf8(path: &str, bytes: Vec<u8>) -> Result<String, InvalidUtf8> {
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let bytes = e.into_bytes();
        let line_start = bytes[..offset]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let line_end = bytes[offset..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |i| offset + i);
        // Everything before `offset` is valid UTF-8.
        let before = std::str::from_utf8(&bytes[line_start..offset]).unwrap_or_default();
        let before = if line_start == 0 {
            before.strip_prefix(BOM).unwrap_or(before)
        } else {
            before
        };
        let line_text = String::from_utf8_lossy(&bytes[line_start..line_end]);
        let line_text = line_text.strip_prefix(BOM).unwrap_or(&line_text);
        InvalidUtf8 {
            path: path.to_string(),
            offset,
            byte: bytes[offset],
            line: bytes[..offset].iter().filter(|&&b| b == b'\n').count() + 1,
            col: before.chars().count() + 1,
            line_text: line_text.trim_end_matches('\r').to_string(),
        }
    })
}

/// `text` without a leading byte-order mark.
pub(crate) fn strip_bom(mut text: String) -> String {
    if text.starts_with(BOM) {
        text.drain(..BOM.len_utf8());
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bad_byte_is_located() {
        let bytes = b"a: 1\nb: caf\xc3\xa9 \xff x\nc: 3\n".to_vec();
        let e = decode_utf8("ml/x.yaml", bytes).unwrap_err();
        assert_eq!((e.line, e.col, e.offset, e.byte), (2, 9, 14, 0xFF));
        assert_eq!(e.line_text, "b: café \u{FFFD} x");
        assert_eq!(
            e.to_string(),
            "ml/x.yaml is not valid UTF-8: byte 0xFF at line 2, column 9"
        );
        let io: std::io::Error = e.clone().into();
        assert_eq!(io.kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(InvalidUtf8::in_io_error(&io), Some(&e));
        assert_eq!(decode_utf8("f", b"ok".to_vec()).unwrap(), "ok");
    }

    #[test]
    fn a_bom_does_not_count_as_a_column() {
        let e = decode_utf8("f", b"\xef\xbb\xbfab\xfe".to_vec()).unwrap_err();
        assert_eq!((e.line, e.col), (1, 3));
        assert_eq!(e.line_text, "ab\u{FFFD}");
        assert_eq!(strip_bom("\u{FEFF}kind: x".into()), "kind: x");
    }
}
