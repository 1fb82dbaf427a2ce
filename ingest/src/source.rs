//! Reading CSV, JSON Lines and Parquet files into Arrow batches. Types are
//! inferred over the whole file (ADR-010): a column whose values do not all
//! parse as one type becomes a string, and empty cells are NULL.

use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::error::ArrowError;
use arrow_schema::{Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{Error, Result};

/// Rows per Arrow batch read from a source file.
const BATCH_ROWS: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    JsonLines,
    Parquet,
}

impl Format {
    /// Guesses the format from a file name's extension.
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" | "tsv" | "txt" => Some(Self::Csv),
            "json" | "jsonl" | "ndjson" => Some(Self::JsonLines),
            "parquet" | "pq" => Some(Self::Parquet),
            _ => None,
        }
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "csv" => Ok(Self::Csv),
            "json" | "jsonl" | "ndjson" => Ok(Self::JsonLines),
            "parquet" => Ok(Self::Parquet),
            other => Err(format!("format {other:?} is not one of csv, json, parquet")),
        }
    }
}

pub type BatchIter = Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>;

/// A file opened for ingest: its schema is known, its rows not yet read.
pub struct SourceFile {
    name: String,
    schema: SchemaRef,
    batches: BatchIter,
}

impl std::fmt::Debug for SourceFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceFile")
            .field("name", &self.name)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl SourceFile {
    /// Opens `path`; `name` is how errors refer to it (the user's file name).
    /// With `table_schema` (appending to a table) rows are parsed as that schema
    /// instead of inferring one, and the header must name the same columns.
    /// Blocking: call from a blocking thread.
    pub fn open(
        path: &Path,
        name: &str,
        format: Format,
        table_schema: Option<SchemaRef>,
    ) -> Result<Self> {
        let io = |error| Error::Io {
            source_name: name.to_string(),
            error,
        };
        let mut file = File::open(path).map_err(io)?;
        if file.metadata().map_err(io)?.len() == 0 {
            return Err(bad(name, "the file is empty; nothing to ingest"));
        }
        let (schema, batches) = match format {
            Format::Csv => open_csv(&mut file, name, table_schema)?,
            Format::JsonLines => open_json(&mut file, name, table_schema)?,
            Format::Parquet => open_parquet(file, name)?,
        };
        Ok(Self {
            name: name.to_string(),
            schema,
            batches,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// The rows; parse errors name the file, line and column.
    pub fn into_batches(self) -> impl Iterator<Item = Result<RecordBatch>> + Send {
        let name = self.name;
        self.batches
            .map(move |batch| batch.map_err(|e| parse_error(&name, e)))
    }
}

fn open_csv(
    file: &mut File,
    name: &str,
    table_schema: Option<SchemaRef>,
) -> Result<(SchemaRef, BatchIter)> {
    let format = arrow_csv::reader::Format::default().with_header(true);
    // Whole-file inference: a type seen only in the last row still makes the column a string.
    let (inferred, rows) = format
        .infer_schema(BufReader::new(&mut *file), None)
        .map_err(|e| parse_error(name, e))?;
    if inferred.fields().is_empty() {
        return Err(bad(name, "no header line found"));
    }
    if rows == 0 {
        return Err(bad(
            name,
            "the file has a header but no data rows; nothing to ingest",
        ));
    }
    check_unique_columns(name, &inferred)?;
    let schema = match table_schema {
        Some(table) => {
            check_same_columns(name, &inferred, &table)?;
            table
        }
        None => Arc::new(inferred),
    };
    let reader = arrow_csv::ReaderBuilder::new(Arc::clone(&schema))
        .with_format(format)
        .with_batch_size(BATCH_ROWS)
        .build(rewind(file, name)?)
        .map_err(|e| parse_error(name, e))?;
    Ok((schema, Box::new(reader)))
}

fn open_json(
    file: &mut File,
    name: &str,
    table_schema: Option<SchemaRef>,
) -> Result<(SchemaRef, BatchIter)> {
    let (inferred, rows) = arrow_json::reader::infer_json_schema(BufReader::new(&mut *file), None)
        .map_err(|e| parse_error(name, e))?;
    if rows == 0 {
        return Err(bad(
            name,
            "the file holds no JSON records; nothing to ingest",
        ));
    }
    let schema = match table_schema {
        Some(table) => table,
        None => Arc::new(inferred),
    };
    let reader = arrow_json::ReaderBuilder::new(Arc::clone(&schema))
        .with_batch_size(BATCH_ROWS)
        .build(rewind(file, name)?)
        .map_err(|e| parse_error(name, e))?;
    Ok((schema, Box::new(reader)))
}

fn open_parquet(file: File, name: &str) -> Result<(SchemaRef, BatchIter)> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| bad(name, &format!("not a readable Parquet file: {e}")))?;
    if builder.metadata().file_metadata().num_rows() == 0 {
        return Err(bad(
            name,
            "the Parquet file holds no rows; nothing to ingest",
        ));
    }
    let schema = Arc::new(Schema::new(builder.schema().fields().clone()));
    let reader = builder
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| bad(name, &format!("not a readable Parquet file: {e}")))?;
    let schema_for_batches = Arc::clone(&schema);
    // Drop file-level metadata so every batch carries exactly the table schema.
    let batches =
        reader.map(move |batch| batch.and_then(|b| b.with_schema(Arc::clone(&schema_for_batches))));
    Ok((schema, Box::new(batches)))
}

/// Inference read the file once; read it again from the start.
fn rewind(file: &mut File, name: &str) -> Result<BufReader<File>> {
    let io = |error| Error::Io {
        source_name: name.to_string(),
        error,
    };
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    Ok(BufReader::new(file.try_clone().map_err(io)?))
}

fn check_unique_columns(name: &str, schema: &Schema) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for field in schema.fields() {
        if field.name().is_empty() {
            return Err(bad(name, "the header has an empty column name"));
        }
        if !seen.insert(field.name().as_str()) {
            return Err(bad(
                name,
                &format!("the header names column `{}` twice", field.name()),
            ));
        }
    }
    Ok(())
}

fn check_same_columns(name: &str, found: &Schema, table: &Schema) -> Result<()> {
    let found: Vec<&str> = found.fields().iter().map(|f| f.name().as_str()).collect();
    let expected: Vec<&str> = table.fields().iter().map(|f| f.name().as_str()).collect();
    if found == expected {
        return Ok(());
    }
    Err(bad(
        name,
        &format!(
            "the header has columns [{}] but the table has [{}]",
            found.join(", "),
            expected.join(", ")
        ),
    ))
}

fn bad(name: &str, reason: &str) -> Error {
    Error::BadSource {
        source_name: name.to_string(),
        reason: reason.to_string(),
    }
}

fn parse_error(name: &str, error: ArrowError) -> Error {
    // Arrow's CSV errors already say "line N and field M"; keep them, drop the prefix noise.
    let detail = match error {
        ArrowError::CsvError(m) | ArrowError::JsonError(m) | ArrowError::ParseError(m) => m,
        other => other.to_string(),
    };
    Error::Parse {
        source_name: name.to_string(),
        detail,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use arrow_schema::DataType;
    use std::io::Write;

    fn csv(text: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".csv").tempfile().unwrap();
        f.write_all(text).unwrap();
        f
    }

    fn read_all(f: &tempfile::NamedTempFile) -> Result<(SchemaRef, usize)> {
        let src = SourceFile::open(f.path(), "people.csv", Format::Csv, None)?;
        let schema = src.schema();
        let mut rows = 0;
        for b in src.into_batches() {
            rows += b?.num_rows();
        }
        Ok((schema, rows))
    }

    #[test]
    fn mixed_column_becomes_string_and_empty_is_null() {
        let f = csv(b"id,phone,score\n1,5551234,1.5\n2,N/A,2\n3,,\n");
        let src = SourceFile::open(f.path(), "people.csv", Format::Csv, None).unwrap();
        let schema = src.schema();
        assert_eq!(schema.field(0).data_type(), &DataType::Int64);
        assert_eq!(schema.field(1).data_type(), &DataType::Utf8);
        assert_eq!(schema.field(2).data_type(), &DataType::Float64);
        let batch = src.into_batches().next().unwrap().unwrap();
        assert_eq!(batch.column(1).null_count(), 1);
        assert_eq!(batch.column(2).null_count(), 1);
    }

    #[test]
    fn ragged_row_names_the_line() {
        let f = csv(b"a,b\n1,2\n3\n");
        let err = read_all(&f).unwrap_err().to_string();
        assert!(err.contains("people.csv") && err.contains("line"), "{err}");
    }

    #[test]
    fn invalid_utf8_names_line_and_field() {
        let f = csv(b"a,b\n1,ok\n2,\xff\xfe\n");
        let err = read_all(&f).unwrap_err().to_string();
        assert!(err.contains("UTF-8") && err.contains("line"), "{err}");
    }

    #[test]
    fn empty_and_header_only_files_are_refused() {
        let err = read_all(&csv(b"")).unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
        let err = read_all(&csv(b"a,b\n")).unwrap_err().to_string();
        assert!(err.contains("no data rows"), "{err}");
    }

    #[test]
    fn append_checks_header_against_table() {
        let f = csv(b"x,y\n1,2\n");
        let table = Arc::new(Schema::new(vec![
            arrow_schema::Field::new("a", DataType::Int64, true),
            arrow_schema::Field::new("b", DataType::Int64, true),
        ]));
        let err = SourceFile::open(f.path(), "more.csv", Format::Csv, Some(table)).unwrap_err();
        assert!(err.to_string().contains("[x, y]"), "{err}");
    }
}
