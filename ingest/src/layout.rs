//! How a write's data files are laid out: which columns get a dictionary.
//!
//! A Parquet writer keeps a dictionary for every column until the dictionary
//! outgrows its page (1 MB), then writes the rest of the column plain. For a
//! column of nearly unique values (ids, timestamps, free text) that leaves a
//! 1 MB dictionary page serving only the column's first rows, and a read of
//! any page of the column decompresses it first: on a 1M-row table two such
//! pages were most of a point query's time. Such columns are written plain
//! from the start (DuckDB's writer decides the same for them); columns whose
//! values repeat keep their dictionary. A write decides from its first rows.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::compute::concat;
use arrow::row::{RowConverter, SortField};
use arrow_schema::{ArrowError, SchemaRef};
use futures::{Stream, StreamExt};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::error::Result;

/// Rows a write's layout is decided from. Large enough that a column of some
/// 100,000 repeating values (prices in cents) shows its repeats, which a
/// dictionary under 1 MB serves well; a column still nearly unique across
/// this many rows would outgrow the dictionary page of a 1M-row file.
const SAMPLE_ROWS: usize = 65_536;
/// Wide rows (embeddings, documents) are sampled up to this many bytes instead:
/// the sample is held back before anything is written.
const SAMPLE_BYTES: usize = 16 << 20;
/// Fewer rows than this say nothing either way: every column keeps the default.
const MIN_SAMPLE_ROWS: usize = 1024;
/// Share of distinct values above which a column counts as nearly unique.
const NEAR_UNIQUE: f64 = 0.9;

/// The first batches of `batches`, holding at least [`SAMPLE_ROWS`] rows or
/// [`SAMPLE_BYTES`] unless the stream ends first; the rest stay in the stream.
pub(crate) async fn sample(
    batches: &mut (impl Stream<Item = Result<RecordBatch>> + Unpin),
) -> Result<Vec<RecordBatch>> {
    let mut first = Vec::new();
    let (mut rows, mut bytes) = (0, 0);
    while rows < SAMPLE_ROWS && bytes < SAMPLE_BYTES {
        let Some(batch) = batches.next().await else {
            break;
        };
        let batch = batch?;
        rows += batch.num_rows();
        bytes += batch.get_array_memory_size();
        first.push(batch);
    }
    Ok(first)
}

/// Writer properties for the files of a write whose first rows are `first`
/// (an error: a batch not of `schema`).
pub(crate) fn properties(
    schema: &SchemaRef,
    first: &[RecordBatch],
) -> Result<WriterProperties, ArrowError> {
    Ok(near_unique_columns(schema, first)?
        .into_iter()
        .fold(
            WriterProperties::builder().set_compression(Compression::SNAPPY),
            |builder, name| {
                builder.set_column_dictionary_enabled(ColumnPath::new(vec![name]), false)
            },
        )
        .build())
}

/// Top-level columns (nested ones keep the default) whose values in `first`
/// are nearly all distinct. Nulls are left out: they take no place in a
/// dictionary. Only the columns judged are copied out of the batches.
fn near_unique_columns(
    schema: &SchemaRef,
    first: &[RecordBatch],
) -> Result<Vec<String>, ArrowError> {
    let rows = first
        .iter()
        .map(RecordBatch::num_rows)
        .sum::<usize>()
        .min(SAMPLE_ROWS);
    if rows < MIN_SAMPLE_ROWS {
        return Ok(Vec::new());
    }
    let mut names = Vec::new();
    for (index, field) in schema.fields().iter().enumerate() {
        if field.data_type().is_nested() {
            continue;
        }
        let parts = first
            .iter()
            .map(|batch| {
                batch
                    .columns()
                    .get(index)
                    .map(|c| c.as_ref())
                    .ok_or_else(|| {
                        ArrowError::SchemaError(format!("a batch has no column `{}`", field.name()))
                    })
            })
            .collect::<Result<Vec<&dyn Array>, _>>()?;
        let sample = concat(&parts)?.slice(0, rows);
        let values = rows - sample.null_count();
        if values >= MIN_SAMPLE_ROWS
            && distinct_values(&sample)
                .is_some_and(|distinct| distinct as f64 > NEAR_UNIQUE * values as f64)
        {
            names.push(field.name().clone());
        }
    }
    Ok(names)
}

/// How many distinct values other than null `column` holds; `None` for a type
/// the row format cannot compare.
fn distinct_values(column: &ArrayRef) -> Option<usize> {
    let converter = RowConverter::new(vec![SortField::new(column.data_type().clone())]).ok()?;
    let rows = converter.convert_columns(&[Arc::clone(column)]).ok()?;
    let distinct = rows.iter().collect::<HashSet<_>>().len();
    Some(distinct - usize::from(column.null_count() > 0))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use bytes::Bytes;
    use parquet::arrow::ArrowWriter;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    /// `rows` rows: a unique id, one of ten cities, one of 100,000 prices
    /// (pseudo-random), a unique note or null.
    fn events(rows: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("city", DataType::Utf8, false),
            Field::new("price", DataType::Float64, false),
            Field::new("note", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(0..rows)),
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| format!("city {}", i % 10)),
                )),
                Arc::new(Float64Array::from_iter_values((0..rows).map(|i| {
                    let hashed = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
                    (hashed % 100_000) as f64 / 100.0
                }))),
                Arc::new(StringArray::from_iter(
                    (0..rows).map(|i| (i % 7 != 0).then(|| format!("note {i}"))),
                )),
            ],
        )
        .unwrap()
    }

    /// Which columns of the file written from `batch` have a dictionary page.
    fn dictionary_columns(batch: &RecordBatch) -> Vec<String> {
        let mut file = Vec::new();
        let properties = properties(&batch.schema(), std::slice::from_ref(batch)).unwrap();
        let mut writer = ArrowWriter::try_new(&mut file, batch.schema(), Some(properties)).unwrap();
        writer.write(batch).unwrap();
        writer.close().unwrap();
        let reader = SerializedFileReader::new(Bytes::from(file)).unwrap();
        let row_group = reader.metadata().row_group(0);
        row_group
            .columns()
            .iter()
            .filter(|chunk| chunk.dictionary_page_offset().is_some())
            .map(|chunk| chunk.column_path().string())
            .collect()
    }

    #[test]
    fn nearly_unique_columns_are_written_plain_and_repeating_ones_keep_a_dictionary() {
        // `note` is one-seventh null: its other values are all distinct. Prices
        // repeat, which a 4,096-row sample would not show.
        assert_eq!(dictionary_columns(&events(200_000)), ["city", "price"]);
        // Too few rows to judge: every column keeps its dictionary, as before.
        assert_eq!(
            dictionary_columns(&events(100)),
            ["id", "city", "price", "note"]
        );
    }
}
