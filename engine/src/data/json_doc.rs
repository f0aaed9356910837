//! One JSON document: a top-level array of row objects, or an object keyed by split or id whose
//! values are arrays of rows (`{"train": [...], "test": [...]}`) or single rows
//! (`{"id1": {...}, "id2": {...}}`).
//!
//! The file's bytes are held in memory (not a parsed tree, which would take several times more);
//! opening scans the document's structure once, validating each row and keeping its byte span, and
//! rows are parsed on demand. A row that is not a valid object is a bad row; a broken structure
//! around the rows (an unclosed array, a missing comma) fails the open with its line.

use std::path::Path;

use serde_json::{Map, Value};

use super::jsonl::{Columns, check_object, parse_object};
use super::{BadRow, DataError};

#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    line: u64,
}

#[derive(Debug)]
pub(crate) struct JsonSource {
    bytes: Vec<u8>,
    rows: Vec<Span>,
    pub columns: Vec<String>,
    pub bad_rows: Vec<BadRow>,
}

/// Why scanning stopped: the structure is broken at `pos`.
struct Broken {
    pos: usize,
    message: String,
}

struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Line of `line_pos` (1-based), advanced lazily.
    line: u64,
    line_pos: usize,
}

impl<'a> Scanner<'a> {
    fn line_at(&mut self, pos: usize) -> u64 {
        if pos >= self.line_pos {
            self.line += self.bytes[self.line_pos..pos]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64;
            self.line_pos = pos;
            self.line
        } else {
            1 + self.bytes[..pos].iter().filter(|&&b| b == b'\n').count() as u64
        }
    }

    fn skip_ws(&mut self) {
        while self.pos < self.bytes.len() && self.bytes[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn broken(&self, message: impl Into<String>) -> Broken {
        Broken {
            pos: self.pos,
            message: message.into(),
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), Broken> {
        self.skip_ws();
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.broken(format!("expected `{}`", byte as char)))
        }
    }

    /// Skips one string starting at `pos` (which is a `"`).
    fn skip_string(&mut self) -> Result<(), Broken> {
        let start = self.pos;
        self.pos += 1;
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'\\' => self.pos += 1,
                b'"' => return Ok(()),
                _ => {}
            }
        }
        Err(Broken {
            pos: start,
            message: "unterminated string".into(),
        })
    }

    /// Skips one value (structure only; validation is serde_json's, per row). Returns its span.
    fn skip_value(&mut self) -> Result<(usize, usize), Broken> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            None => return Err(self.broken("unexpected end of file")),
            Some(b'"') => self.skip_string()?,
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                while let Some(b) = self.peek() {
                    match b {
                        b'"' => {
                            self.skip_string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.pos += 1;
                                return Ok((start, self.pos));
                            }
                        }
                        _ => {}
                    }
                    self.pos += 1;
                }
                return Err(Broken {
                    pos: start,
                    message: "unclosed `{` or `[`".into(),
                });
            }
            Some(_) => {
                while let Some(b) = self.peek() {
                    if b.is_ascii_whitespace() || matches!(b, b',' | b']' | b'}') {
                        break;
                    }
                    self.pos += 1;
                }
            }
        }
        Ok((start, self.pos))
    }
}

struct Index<'a> {
    scanner: Scanner<'a>,
    rows: Vec<Span>,
    columns: Columns,
    bad_rows: Vec<BadRow>,
}

impl Index<'_> {
    fn add_row(&mut self, start: usize, end: usize) {
        let line = self.scanner.line_at(start);
        let bytes = &self.scanner.bytes[start..end];
        let checked = std::str::from_utf8(bytes)
            .map_err(|e| format!("invalid UTF-8 at byte {}", e.valid_up_to()))
            .and_then(|_| check_object(bytes, &mut self.columns));
        match checked {
            Ok(()) => self.rows.push(Span { start, end, line }),
            Err(message) => self.bad_rows.push(BadRow { line, message }),
        }
    }

    /// An array of rows; `pos` is at its `[`.
    fn array(&mut self) -> Result<(), Broken> {
        self.scanner.expect(b'[')?;
        self.scanner.skip_ws();
        if self.scanner.peek() == Some(b']') {
            self.scanner.pos += 1;
            return Ok(());
        }
        loop {
            let (start, end) = self.scanner.skip_value()?;
            self.add_row(start, end);
            self.scanner.skip_ws();
            match self.scanner.peek() {
                Some(b',') => self.scanner.pos += 1,
                Some(b']') => {
                    self.scanner.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.scanner.broken("expected `,` or `]` after a row")),
            }
        }
    }

    /// An object keyed by split or id; `pos` is at its `{`.
    fn keyed(&mut self) -> Result<(), Broken> {
        self.scanner.expect(b'{')?;
        self.scanner.skip_ws();
        if self.scanner.peek() == Some(b'}') {
            self.scanner.pos += 1;
            return Ok(());
        }
        loop {
            self.scanner.skip_ws();
            if self.scanner.peek() != Some(b'"') {
                return Err(self.scanner.broken("expected a key"));
            }
            let key_start = self.scanner.pos;
            self.scanner.skip_string()?;
            let key = String::from_utf8_lossy(&self.scanner.bytes[key_start..self.scanner.pos])
                .into_owned();
            self.scanner.expect(b':')?;
            self.scanner.skip_ws();
            match self.scanner.peek() {
                Some(b'[') => self.array()?,
                Some(b'{') => {
                    let (start, end) = self.scanner.skip_value()?;
                    self.add_row(start, end);
                }
                _ => {
                    let (start, _) = self.scanner.skip_value()?;
                    let line = self.scanner.line_at(start);
                    self.bad_rows.push(BadRow {
                        line,
                        message: format!("{key} is neither an array of rows nor a row object"),
                    });
                }
            }
            self.scanner.skip_ws();
            match self.scanner.peek() {
                Some(b',') => self.scanner.pos += 1,
                Some(b'}') => {
                    self.scanner.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.scanner.broken("expected `,` or `}` after a value")),
            }
        }
    }
}

/// How a `.json` file turned out.
pub(crate) enum Opened {
    Document(JsonSource),
    /// Several top-level objects one after another: JSON Lines with a `.json` name.
    LooksLikeJsonl,
}

impl JsonSource {
    /// The 1-based line where good row `i` starts.
    pub fn line_of(&self, i: usize) -> Option<u64> {
        self.rows.get(i).map(|span| span.line)
    }

    pub fn open(path: &Path) -> Result<Opened, DataError> {
        let mut bytes = std::fs::read(path).map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if bytes.starts_with(b"\xEF\xBB\xBF") {
            bytes.drain(..3);
        }
        let mut index = Index {
            scanner: Scanner {
                bytes: &bytes,
                pos: 0,
                line: 1,
                line_pos: 0,
            },
            rows: Vec::new(),
            columns: Columns::default(),
            bad_rows: Vec::new(),
        };
        index.scanner.skip_ws();
        let result = match index.scanner.peek() {
            None => Ok(()),
            Some(b'[') => index.array(),
            Some(b'{') => {
                // `{...}\n{...}` is JSON Lines under a .json name.
                let mut probe = Scanner {
                    bytes: &bytes,
                    pos: index.scanner.pos,
                    line: 1,
                    line_pos: 0,
                };
                if probe.skip_value().is_ok() {
                    probe.skip_ws();
                    if probe.peek() == Some(b'{') {
                        return Ok(Opened::LooksLikeJsonl);
                    }
                }
                index.keyed()
            }
            Some(_) => Err(index
                .scanner
                .broken("expected a top-level array `[` or object `{`")),
        };
        let result = result.and_then(|()| {
            index.scanner.skip_ws();
            match index.scanner.peek() {
                None => Ok(()),
                Some(_) => Err(index
                    .scanner
                    .broken("unexpected text after the top-level value")),
            }
        });
        if let Err(broken) = result {
            let line = index.scanner.line_at(broken.pos.min(bytes.len()));
            return Err(DataError::Syntax {
                path: path.to_path_buf(),
                line,
                message: broken.message,
            });
        }
        let Index {
            rows,
            columns,
            bad_rows,
            ..
        } = index;
        Ok(Opened::Document(Self {
            rows,
            columns: columns.names,
            bad_rows,
            bytes,
        }))
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn row(&self, path: &Path, i: usize) -> Result<Map<String, Value>, DataError> {
        let span = self.rows[i];
        parse_object(&self.bytes[span.start..span.end]).map_err(|message| DataError::Row {
            path: path.to_path_buf(),
            line: span.line,
            message,
        })
    }
}
