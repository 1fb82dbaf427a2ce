//! How a write's data files are laid out: which columns get a dictionary, and
//! how many rows a row group holds.
//!
//! A Parquet writer keeps a dictionary for every column until the dictionary
//! outgrows its page (1 MB), then writes the rest of the column plain. For a
//! column of nearly unique values (ids, timestamps, free text) that leaves a
//! 1 MB dictionary page serving only the column's first rows, and a read of
//! any page of the column decompresses it first: on a 1M-row table two such
//! pages were most of a point query's time. Such columns are written plain
//! from the start (DuckDB's writer decides the same for them); columns whose
//! values repeat keep their dictionary.
//!
//! A scan splits a file among its threads by row group, so a file of one row
//! group (the writer's default holds 1M rows, a whole file here) is read by
//! one thread however many there are. Row groups are cut by size instead: a
//! file of narrow rows gets several, wide rows (embeddings) get fewer rows per
//! group. A write decides both from its first rows.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::compute::concat;
use arrow::row::{RowConverter, SortField};
use arrow_schema::{ArrowError, SchemaRef};
use futures::{Stream, StreamExt};
use parquet::basic::Compression;
use parquet::file::properties::{WriterProperties, DEFAULT_MAX_ROW_GROUP_ROW_COUNT};
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
/// In-memory size a row group is cut at: on a 1M-row file of short rows some
/// four groups, which a scan spreads over its threads (a GROUP BY on such a
/// file took 10.5 ms instead of 16.1 on two cores); DuckDB's 122,880-row groups
/// are of this order for rows of ~130 bytes.
const ROW_GROUP_BYTES: usize = 16 << 20;
/// Rows a row group holds at least, however wide its rows: one writer batch.
const MIN_ROW_GROUP_ROWS: usize = 1024;
/// How much larger than an equal share of a file each row group but the last
/// is. DataFusion splits a file into byte ranges of equal length, footer
/// included, and reads a row group in the range holding its first byte. With
/// equal groups every boundary falls just past a group's start and the first
/// range gets one group more: three of four groups on one of two threads,
/// a GROUP BY of 14.6 ms instead of 10.5. A shorter last group moves each
/// boundary before a start.
const LAST_GROUP_SHORTER: f64 = 1.0 / 32.0;

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
        bytes += data_bytes(&batch);
        first.push(batch);
    }
    Ok(first)
}

/// Writer properties for the files, of up to `rows_per_file` rows, of a write
/// whose first rows are `first` (an error: a batch not of `schema`).
pub(crate) fn properties(
    schema: &SchemaRef,
    first: &[RecordBatch],
    rows_per_file: usize,
) -> Result<WriterProperties, ArrowError> {
    let builder = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(row_group_rows(first, rows_per_file)));
    Ok(near_unique_columns(schema, first)?
        .into_iter()
        .fold(builder, |builder, name| {
            builder.set_column_dictionary_enabled(ColumnPath::new(vec![name]), false)
        })
        .build())
}

/// Rows per row group: a full file of rows like `first` cut into groups of
/// about [`ROW_GROUP_BYTES`], all but the last a little larger than an equal
/// share (see [`LAST_GROUP_SHORTER`]). With nothing to measure, the writer's
/// default.
fn row_group_rows(first: &[RecordBatch], rows_per_file: usize) -> usize {
    let rows: usize = first.iter().map(RecordBatch::num_rows).sum();
    if rows == 0 {
        return DEFAULT_MAX_ROW_GROUP_ROW_COUNT;
    }
    let bytes: usize = first.iter().map(data_bytes).sum();
    let file_bytes = (bytes as f64 / rows as f64) * rows_per_file as f64;
    let groups = (file_bytes / ROW_GROUP_BYTES as f64).ceil().max(1.0);
    let share = rows_per_file as f64 / groups;
    let group_rows = if groups > 1.0 {
        share * (1.0 + LAST_GROUP_SHORTER)
    } else {
        share
    };
    (group_rows.ceil() as usize).clamp(MIN_ROW_GROUP_ROWS, DEFAULT_MAX_ROW_GROUP_ROW_COUNT)
}

/// The bytes `batch`'s rows take. Not the size of the buffers it holds: the
/// columns of a batch decoded from Arrow IPC (Flight SQL ingest) are slices of
/// one message buffer, which each would count whole.
fn data_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|column| {
            column
                .to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| column.get_array_memory_size())
        })
        .sum()
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

    use arrow::array::{BinaryArray, Float64Array, Int64Array, StringArray};
    use arrow::ipc::reader::StreamReader;
    use arrow::ipc::writer::StreamWriter;
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
        let properties =
            properties(&batch.schema(), std::slice::from_ref(batch), 1_000_000).unwrap();
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

    /// `batches` written to an Arrow IPC stream and decoded again, as Flight SQL
    /// ingest receives them: each batch's columns are slices of one buffer.
    fn through_ipc(batches: &[RecordBatch]) -> Vec<RecordBatch> {
        let mut ipc = Vec::new();
        let mut writer = StreamWriter::try_new(&mut ipc, &batches[0].schema()).unwrap();
        for batch in batches {
            writer.write(batch).unwrap();
        }
        writer.finish().unwrap();
        StreamReader::try_new(ipc.as_slice(), None)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[tokio::test]
    async fn the_sample_counts_the_bytes_of_its_rows() {
        // Eight batches of 8,192 rows of 20 integers: 10.5 MB, under the
        // sample's cap, though each decoded batch's one buffer is 20 columns'.
        let columns = (0..20).map(|i| {
            let values = Int64Array::from_iter_values(0..8_192);
            (format!("c{i}"), Arc::new(values) as ArrayRef)
        });
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let decoded = through_ipc(&vec![batch; 8]);
        let mut stream = futures::stream::iter(decoded.into_iter().map(Ok));
        let first = sample(&mut stream).await.unwrap();
        assert_eq!(
            first.iter().map(RecordBatch::num_rows).sum::<usize>(),
            65_536
        );
    }

    #[test]
    fn row_groups_are_cut_by_size_with_a_shorter_last_one() {
        // Rows of some 50 bytes: a 1M-row file in a few groups, for a scan's
        // threads to share; the last is the shortest, by a few percent.
        let narrow = row_group_rows(&[events(65_536)], 1_000_000);
        let groups = 1_000_000usize.div_ceil(narrow);
        assert!((2..=8).contains(&groups), "{narrow} rows a group");
        let last = 1_000_000 - (groups - 1) * narrow;
        let share = 1_000_000 / groups;
        assert!(
            last < share && last > share * 8 / 10,
            "{narrow} rows a group, {last} in the last"
        );

        // The same rows decoded from Arrow IPC, as Flight SQL ingest gets them:
        // every column is a slice of one message buffer, counted once.
        let from_ipc = row_group_rows(&through_ipc(&[events(65_536)]), 1_000_000);
        assert_eq!(
            1_000_000usize.div_ceil(from_ipc),
            groups,
            "{from_ipc} rows a group"
        );

        // Rows of 4 KB (an embedding's size): about ROW_GROUP_BYTES a group.
        let wide = BinaryArray::from_iter_values((0..2_000).map(|_| vec![7u8; 4096]));
        let wide = RecordBatch::try_from_iter([("embedding", Arc::new(wide) as ArrayRef)]).unwrap();
        let rows = row_group_rows(&[wide], 1_000_000);
        assert!((3_000..=4_300).contains(&rows), "{rows} rows a group");

        // Nothing to measure, or a file too small to split: one group.
        assert_eq!(
            row_group_rows(&[], 1_000_000),
            DEFAULT_MAX_ROW_GROUP_ROW_COUNT
        );
        assert_eq!(row_group_rows(&[events(1_000)], 1_000), MIN_ROW_GROUP_ROWS);
    }
}
