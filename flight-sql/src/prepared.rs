//! Prepared statements live on the server that created them, keyed by a
//! random handle; parameters bound over DoPut are kept with them until closed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::{cast_with_options, CastOptions};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use tonic::Status;

use crate::error::invalid;
/// An opaque prepared-statement handle.
type Handle = Vec<u8>;

#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub sql: String,
    /// The parameters the statement takes (`$1`, `$2`, …), known from planning it
    /// once; `Null` where DataFusion could not infer a type.
    pub parameter_schema: SchemaRef,
    /// Bound parameter rows; each row runs the statement once.
    pub parameters: Option<RecordBatch>,
}

/// Statements a client forgot to close are dropped beyond this many.
const MAX_PREPARED: usize = 10_000;

#[derive(Debug, Clone, Default)]
pub(crate) struct PreparedStatements {
    inner: Arc<Mutex<HashMap<Handle, Prepared>>>,
}

impl PreparedStatements {
    pub(crate) fn insert(&self, sql: String, parameter_schema: SchemaRef) -> Handle {
        let handle = uuid::Uuid::new_v4().as_bytes().to_vec();
        let mut map = self.lock();
        if map.len() >= MAX_PREPARED {
            // Leaked statements must not grow memory without bound.
            if let Some(victim) = map.keys().next().cloned() {
                map.remove(&victim);
            }
        }
        map.insert(
            handle.clone(),
            Prepared {
                sql,
                parameter_schema,
                parameters: None,
            },
        );
        handle
    }

    pub(crate) fn get(&self, handle: &[u8]) -> Option<Prepared> {
        self.lock().get(handle).cloned()
    }

    pub(crate) fn bind(&self, handle: &[u8], parameters: RecordBatch) -> bool {
        match self.lock().get_mut(handle) {
            Some(p) => {
                p.parameters = Some(parameters);
                true
            }
            None => false,
        }
    }

    pub(crate) fn remove(&self, handle: &[u8]) -> bool {
        self.lock().remove(handle).is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Handle, Prepared>> {
        // A panic while holding the lock leaves the map intact; keep serving.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Prepared {
    /// Checks bound `parameters` against the statement's parameters: one column
    /// each, of a type that converts to the parameter's (numbers to numbers,
    /// strings to strings, dates and times from either). Columns are cast to the
    /// exact types DataFusion planned, failing rather than losing a value.
    pub(crate) fn conform(&self, parameters: RecordBatch) -> Result<RecordBatch, Status> {
        let expected = self.parameter_schema.fields();
        if parameters.num_columns() != expected.len() {
            return Err(invalid(format!(
                "the statement takes {} parameters but {} were bound",
                expected.len(),
                parameters.num_columns()
            )));
        }
        let strict = CastOptions {
            safe: false,
            ..CastOptions::default()
        };
        let mut fields = Vec::with_capacity(expected.len());
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(expected.len());
        for (field, column) in expected.iter().zip(parameters.columns()) {
            let (want, got) = (field.data_type(), column.data_type());
            let column = if want == got || *want == DataType::Null {
                Arc::clone(column)
            } else if converts(got, want) {
                cast_with_options(column, want, &strict).map_err(|e| {
                    invalid(format!(
                        "parameter {} takes {want}; the bound {got} value does not fit: {e}",
                        field.name()
                    ))
                })?
            } else {
                return Err(invalid(format!(
                    "parameter {} takes {want} but a {got} value was bound",
                    field.name()
                )));
            };
            fields.push(Field::new(field.name(), column.data_type().clone(), true));
            columns.push(column);
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .map_err(|e| invalid(format!("bound parameters: {e}")))
    }
}

/// Whether a bound value of type `got` may stand for a parameter of type `want`.
fn converts(got: &DataType, want: &DataType) -> bool {
    let text =
        |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    *got == DataType::Null
        || (got.is_numeric() && want.is_numeric())
        || (text(got) && text(want))
        || (want.is_temporal() && (text(got) || got.is_temporal()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use arrow::array::{Int64Array, StringArray};

    use super::*;

    fn prepared(types: &[DataType]) -> Prepared {
        let fields: Vec<Field> = types
            .iter()
            .enumerate()
            .map(|(i, t)| Field::new(format!("${}", i + 1), t.clone(), true))
            .collect();
        Prepared {
            sql: String::new(),
            parameter_schema: Arc::new(Schema::new(fields)),
            parameters: None,
        }
    }

    fn batch(columns: Vec<ArrayRef>) -> RecordBatch {
        RecordBatch::try_from_iter(
            columns
                .into_iter()
                .enumerate()
                .map(|(i, c)| (format!("c{i}"), c)),
        )
        .unwrap()
    }

    #[test]
    fn parameters_are_counted_typed_and_cast() {
        let statement = prepared(&[DataType::Int32, DataType::Null]);
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![7]));
        let text: ArrayRef = Arc::new(StringArray::from(vec!["x"]));
        let bound = statement
            .conform(batch(vec![Arc::clone(&ints), Arc::clone(&text)]))
            .unwrap();
        assert_eq!(bound.column(0).data_type(), &DataType::Int32);
        assert_eq!(
            bound.column(1).data_type(),
            &DataType::Utf8,
            "untyped: as bound"
        );

        let err = statement
            .conform(batch(vec![Arc::clone(&ints)]))
            .unwrap_err();
        assert!(err.message().contains("takes 2 parameters but 1"), "{err}");
        let err = statement
            .conform(batch(vec![Arc::clone(&text), Arc::clone(&text)]))
            .unwrap_err();
        assert!(
            err.message()
                .contains("parameter $1 takes Int32 but a Utf8"),
            "{err}"
        );
        let too_big: ArrayRef = Arc::new(Int64Array::from(vec![i64::MAX]));
        let err = statement.conform(batch(vec![too_big, text])).unwrap_err();
        assert!(err.message().contains("does not fit"), "{err}");
    }
}
