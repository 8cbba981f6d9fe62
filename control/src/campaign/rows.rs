//! Callee rows of a campaign upload, read as they stream in: CSV (a header row naming `to`
//! and the variables) or NDJSON (one `{"to": ..., "vars": {...}}` or `{"to": ..., "name":
//! value, ...}` object per line). Sans-IO: fed byte chunks, hands back rows; memory is
//! bounded by one line.
//!
//! CSV fields are parsed with the `csv` crate one line at a time, so a quoted field may hold
//! commas and quotes but not a line break (documented in `docs/campaigns.md`).

use serde_json::{Map, Value};

/// Longest line accepted, bytes.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// The upload's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/csv` with a header row.
    Csv,
    /// `application/x-ndjson`.
    Ndjson,
}

/// One callee row: its number in the upload (1 = the first data row), `to` and variables.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// 1-based data row number (the CSV header is not counted).
    pub number: u64,
    /// `to` as written.
    pub to: String,
    /// Per-callee variables.
    pub vars: Map<String, Value>,
}

/// A row that cannot be read: its number and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("row {row}: {problem}")]
pub struct RowError {
    /// 1-based data row number (0: the header).
    pub row: u64,
    /// What is wrong.
    pub problem: String,
}

/// Turns a byte stream into rows.
#[derive(Debug)]
pub struct RowReader {
    format: Format,
    pending: Vec<u8>,
    header: Option<Vec<String>>,
    rows: u64,
    /// The current line was too long: skip to its end.
    skipping: bool,
}

impl RowReader {
    /// A reader of `format`.
    pub fn new(format: Format) -> Self {
        Self {
            format,
            pending: Vec::new(),
            header: None,
            rows: 0,
            skipping: false,
        }
    }

    /// Feeds a chunk; returns the rows (and row errors) its complete lines hold.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Result<Row, RowError>> {
        let mut out = Vec::new();
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let (line, tail) = rest.split_at(end);
            rest = &tail[1..];
            if self.skipping {
                self.skipping = false;
                self.pending.clear();
                continue;
            }
            if self.pending.len() + line.len() > MAX_LINE_BYTES {
                self.pending.clear();
                self.rows += 1;
                out.push(Err(RowError {
                    row: self.rows,
                    problem: format!("is longer than {MAX_LINE_BYTES} bytes"),
                }));
                continue;
            }
            self.pending.extend_from_slice(line);
            let line = std::mem::take(&mut self.pending);
            if let Some(row) = self.line(&line) {
                out.push(row);
            }
        }
        if !self.skipping {
            self.pending.extend_from_slice(rest);
            if self.pending.len() > MAX_LINE_BYTES {
                self.pending.clear();
                self.skipping = true;
                self.rows += 1;
                out.push(Err(RowError {
                    row: self.rows,
                    problem: format!("is longer than {MAX_LINE_BYTES} bytes"),
                }));
            }
        }
        out
    }

    /// The end of the upload: the last line if it had no line break.
    pub fn finish(&mut self) -> Vec<Result<Row, RowError>> {
        let line = std::mem::take(&mut self.pending);
        if self.skipping || line.iter().all(u8::is_ascii_whitespace) {
            return Vec::new();
        }
        self.line(&line).into_iter().collect()
    }

    /// Whether a CSV upload has had its header row.
    pub fn has_header(&self) -> bool {
        self.format == Format::Ndjson || self.header.is_some()
    }

    fn line(&mut self, line: &[u8]) -> Option<Result<Row, RowError>> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        let Ok(text) = std::str::from_utf8(line) else {
            self.rows += 1;
            return Some(Err(RowError {
                row: self.rows,
                problem: "is not UTF-8".to_owned(),
            }));
        };
        match self.format {
            Format::Ndjson => {
                self.rows += 1;
                Some(ndjson_row(self.rows, text))
            }
            Format::Csv => match &self.header {
                None => match csv_fields(text) {
                    Ok(names) if names.iter().any(|n| n == "to") => {
                        self.header = Some(names);
                        None
                    }
                    Ok(_) => Some(Err(RowError {
                        row: 0,
                        problem: "the header row must name a `to` column".to_owned(),
                    })),
                    Err(problem) => Some(Err(RowError { row: 0, problem })),
                },
                Some(names) => {
                    self.rows += 1;
                    Some(csv_row(self.rows, names, text))
                }
            },
        }
    }
}

fn csv_fields(text: &str) -> Result<Vec<String>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    match reader.records().next() {
        Some(Ok(record)) => Ok(record.iter().map(|f| f.trim().to_owned()).collect()),
        Some(Err(e)) => Err(format!("is not CSV: {e}")),
        None => Ok(Vec::new()),
    }
}

fn csv_row(number: u64, names: &[String], text: &str) -> Result<Row, RowError> {
    let err = |problem: String| RowError {
        row: number,
        problem,
    };
    let fields = csv_fields(text).map_err(err)?;
    if fields.len() != names.len() {
        return Err(err(format!(
            "has {} fields where the header names {}",
            fields.len(),
            names.len()
        )));
    }
    let mut to = String::new();
    let mut vars = Map::new();
    for (name, value) in names.iter().zip(fields) {
        if name == "to" {
            to = value;
        } else if !name.is_empty() {
            vars.insert(name.clone(), Value::String(value));
        }
    }
    Ok(Row { number, to, vars })
}

fn ndjson_row(number: u64, text: &str) -> Result<Row, RowError> {
    let err = |problem: String| RowError {
        row: number,
        problem,
    };
    let Value::Object(mut object) =
        serde_json::from_str::<Value>(text).map_err(|e| err(format!("is not JSON: {e}")))?
    else {
        return Err(err("is not a JSON object".to_owned()));
    };
    let Some(Value::String(to)) = object.remove("to") else {
        return Err(err("has no `to` string".to_owned()));
    };
    let vars = match object.remove("vars") {
        Some(Value::Object(vars)) => vars,
        Some(_) => return Err(err("has a `vars` that is not an object".to_owned())),
        None => object,
    };
    Ok(Row { number, to, vars })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(format: Format, text: &str, chunk: usize) -> Vec<Result<Row, RowError>> {
        let mut reader = RowReader::new(format);
        let mut out = Vec::new();
        for piece in text.as_bytes().chunks(chunk) {
            out.extend(reader.feed(piece));
        }
        out.extend(reader.finish());
        out
    }

    #[test]
    fn csv_rows_read_the_same_in_any_chunking() {
        let text = "to,name,\"amount due\"\r\n+15550100,Ada,\"12,50\"\n\n+15550101,\"Bob \"\"B\"\"\",3\n+15550102,short\n+15550103,Eve,7";
        let whole = read(Format::Csv, text, text.len());
        for chunk in [1, 2, 7, 64] {
            assert_eq!(read(Format::Csv, text, chunk), whole, "chunks of {chunk}");
        }
        assert_eq!(whole.len(), 4);
        let first = whole[0].as_ref().expect("row 1");
        assert_eq!((first.number, first.to.as_str()), (1, "+15550100"));
        assert_eq!(first.vars["amount due"], "12,50");
        assert_eq!(whole[1].as_ref().expect("row 2").vars["name"], "Bob \"B\"");
        assert_eq!(whole[2].as_ref().map_err(|e| e.row), Err(3), "a short row");
        assert_eq!(
            whole[3].as_ref().map(|r| r.to.as_str()),
            Ok("+15550103"),
            "no final newline"
        );
    }

    #[test]
    fn ndjson_rows_and_bad_lines_are_numbered() {
        let text = "{\"to\":\"+15550100\",\"vars\":{\"n\":1}}\n{\"to\":\"+15550101\",\"name\":\"Ada\"}\nnot json\n[1]\n";
        let rows = read(Format::Ndjson, text, 5);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].as_ref().expect("row").vars["n"], 1);
        assert_eq!(rows[1].as_ref().expect("row").vars["name"], "Ada");
        assert_eq!(rows[2].as_ref().map_err(|e| e.row), Err(3));
        assert_eq!(rows[3].as_ref().map_err(|e| e.row), Err(4));
    }

    #[test]
    fn a_header_without_to_and_an_overlong_line_are_refused() {
        let rows = read(Format::Csv, "number,name\n+1555,Ada\n", 100);
        assert_eq!(rows[0].as_ref().map_err(|e| e.row), Err(0));
        let long = format!("to\n{}\n+15550100\n", "9".repeat(MAX_LINE_BYTES + 10));
        let rows = read(Format::Csv, &long, 1000);
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(rows[0].is_err());
        assert_eq!(rows[1].as_ref().map(|r| r.to.as_str()), Ok("+15550100"));
    }
}
