//! The Parquet file an embed task writes: one row per chunk with its source
//! row's key, its text, its content hash and its vector. An HNSW shard is built
//! from it and keeps it as the place search results take their text from.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, RecordBatchReader,
};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use futures::TryStreamExt;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection};
use parquet::arrow::async_reader::ParquetObjectReader;
use parquet::arrow::{ArrowWriter, ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::SchemaDescriptor;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const DOC_ID: &str = "doc_id";
pub const CHUNK: &str = "chunk";
pub const CHUNK_TEXT: &str = "chunk_text";
pub const CONTENT_HASH: &str = "content_hash";
pub const VECTOR: &str = "vector";

/// The type of `doc_id`: the source key column's integers or text, or the row's
/// ordinal (an integer) when the index names no key column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    Int64,
    Utf8,
}

impl KeyType {
    /// Integer key columns keep their numbers; anything else is compared as text.
    pub fn of(data_type: &DataType) -> Self {
        if data_type.is_integer() {
            KeyType::Int64
        } else {
            KeyType::Utf8
        }
    }

    pub fn data_type(self) -> DataType {
        match self {
            KeyType::Int64 => DataType::Int64,
            KeyType::Utf8 => DataType::Utf8,
        }
    }
}

pub fn vector_field(dims: usize) -> Field {
    let dims = i32::try_from(dims).unwrap_or(i32::MAX);
    Field::new(
        VECTOR,
        DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, false)), dims),
        false,
    )
}

pub fn part_schema(key: KeyType, dims: usize) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(DOC_ID, key.data_type(), false),
        Field::new(CHUNK, DataType::Int32, false),
        Field::new(CHUNK_TEXT, DataType::Utf8, false),
        Field::new(CONTENT_HASH, DataType::UInt64, false),
        vector_field(dims),
    ]))
}

/// Vectors as one flat array of `rows × dims`.
pub fn vector_column(vectors: Vec<f32>, dims: usize) -> Result<ArrayRef> {
    let field = match vector_field(dims).data_type() {
        DataType::FixedSizeList(field, _) => Arc::clone(field),
        _ => unreachable!("vector_field is a fixed-size list"),
    };
    let dims = i32::try_from(dims)
        .map_err(|_| Error::InvalidArgument(format!("{dims} dimensions are too many")))?;
    Ok(Arc::new(FixedSizeListArray::try_new(
        field,
        dims,
        Arc::new(Float32Array::from(vectors)),
        None,
    )?))
}

pub fn encode(batch: &RecordBatch) -> Result<Vec<u8>> {
    // Vectors barely compress; zstd 1 keeps the text and keys small at little cost.
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(properties))?;
    writer.write(batch)?;
    writer.close()?;
    Ok(out)
}

/// Reads the named columns of a part (all of them when `columns` is empty) as one batch.
pub fn decode(bytes: Bytes, location: &str, columns: &[&str]) -> Result<RecordBatch> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| Error::BadShard {
        location: location.to_string(),
        reason: format!("not Parquet: {e}"),
    })?;
    let builder = match projection(builder.parquet_schema(), location, columns)? {
        Some(mask) => builder.with_projection(mask),
        None => builder,
    };
    let reader = builder.build().map_err(|e| Error::BadShard {
        location: location.to_string(),
        reason: e.to_string(),
    })?;
    // The reader's schema is the projected one; the builder's is the whole file's.
    let schema = reader.schema();
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(concat_batches(&schema, &batches)?)
}

/// Reads the named columns of the `selection`'s rows (all rows without one) of
/// a part opened for ranged reads ([`crate::runtime::RangedParquet`]) as one batch.
pub(crate) async fn read_rows(
    builder: ParquetRecordBatchStreamBuilder<ParquetObjectReader>,
    location: &str,
    columns: &[&str],
    selection: Option<RowSelection>,
) -> Result<RecordBatch> {
    let builder = match projection(builder.parquet_schema(), location, columns)? {
        Some(mask) => builder.with_projection(mask),
        None => builder,
    };
    let builder = match selection {
        Some(selection) => builder.with_row_selection(selection),
        None => builder,
    };
    let stream = builder.build()?;
    let schema = stream.schema().clone();
    let batches: Vec<RecordBatch> = stream.try_collect().await?;
    Ok(concat_batches(&schema, &batches)?)
}

/// The mask reading `columns` by top-level field (`vector` is a list whose
/// Parquet leaf is named `item`); none when `columns` is empty: every column.
fn projection(
    schema: &SchemaDescriptor,
    location: &str,
    columns: &[&str],
) -> Result<Option<ProjectionMask>> {
    if columns.is_empty() {
        return Ok(None);
    }
    let fields = schema.root_schema().get_fields();
    let mut indices = Vec::with_capacity(columns.len());
    for name in columns {
        let index = fields
            .iter()
            .position(|f| f.name() == *name)
            .ok_or_else(|| Error::BadShard {
                location: location.to_string(),
                reason: format!("no column `{name}`"),
            })?;
        indices.push(index);
    }
    Ok(Some(ProjectionMask::roots(schema, indices)))
}

/// The named column of `batch`, or the error saying the file lacks it.
pub fn column<'a>(batch: &'a RecordBatch, name: &str, location: &str) -> Result<&'a ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| Error::BadShard {
        location: location.to_string(),
        reason: format!("no column `{name}`"),
    })
}

/// The `vector` column as one flat slice of `rows × dims` floats.
pub fn flat_vectors<'a>(batch: &'a RecordBatch, location: &str) -> Result<(&'a [f32], usize)> {
    let bad = |reason: &str| Error::BadShard {
        location: location.to_string(),
        reason: reason.to_string(),
    };
    let list = column(batch, VECTOR, location)?
        .as_any()
        .downcast_ref::<FixedSizeListArray>()
        .ok_or_else(|| bad("`vector` is not a fixed-size list"))?;
    let dims = usize::try_from(list.value_length()).map_err(|_| bad("negative dimensions"))?;
    let values = list
        .values()
        .as_any()
        .downcast_ref::<Float32Array>()
        .ok_or_else(|| bad("`vector` is not float32"))?;
    if list.null_count() > 0 || values.len() != list.len() * dims || list.offset() != 0 {
        return Err(bad("`vector` has nulls or is sliced"));
    }
    Ok((values.values(), dims))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use arrow::array::{Int32Array, Int64Array, StringArray, UInt64Array};

    use super::*;

    #[test]
    fn named_columns_decode_nested_ones_too() {
        let batch = RecordBatch::try_new(
            part_schema(KeyType::Int64, 2),
            vec![
                Arc::new(Int64Array::from(vec![7, 8])),
                Arc::new(Int32Array::from(vec![0, 0])),
                Arc::new(StringArray::from(vec!["a", "b"])),
                Arc::new(UInt64Array::from(vec![1, 2])),
                vector_column(vec![1.0, 2.0, 3.0, 4.0], 2).unwrap(),
            ],
        )
        .unwrap();
        let bytes = Bytes::from(encode(&batch).unwrap());
        let vectors = decode(bytes.clone(), "p", &[VECTOR]).unwrap();
        assert_eq!(vectors.num_columns(), 1);
        assert_eq!(
            flat_vectors(&vectors, "p").unwrap(),
            (&[1.0, 2.0, 3.0, 4.0][..], 2)
        );
        let texts = decode(bytes.clone(), "p", &[DOC_ID, CHUNK_TEXT]).unwrap();
        assert_eq!(texts.schema().field(1).name(), CHUNK_TEXT);
        let err = decode(bytes, "p", &["nope"]).unwrap_err().to_string();
        assert!(err.contains("no column `nope`"), "{err}");
    }
}
