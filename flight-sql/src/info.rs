//! What GetSqlInfo and GetXdbcTypeInfo report: JDBC and BI tools read these
//! before their first query.

use std::sync::LazyLock;

use arrow_flight::error::FlightError;
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    Nullable, Searchable, SqlInfo, SqlSupportedCaseSensitivity, SqlSupportedTransaction,
    XdbcDataType,
};

pub(crate) const SERVER_NAME: &str = "Lakehouse";

pub(crate) static SQL_INFO: LazyLock<Result<SqlInfoData, FlightError>> = LazyLock::new(|| {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, SERVER_NAME);
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    // The Arrow IPC format version (Schema.fbs), not the crate version.
    b.append(SqlInfo::FlightSqlServerArrowVersion, "1.5");
    b.append(SqlInfo::FlightSqlServerReadOnly, false);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
    );
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(SqlInfo::SqlNullOrdering, 2i32); // nulls sorted at end
    b.append(
        SqlInfo::SqlKeywords,
        &[
            "ABSOLUTE", "ACTION", "ANALYZE", "ARRAY", "COPY", "EXPLAIN", "LIMIT", "OFFSET",
            "QUALIFY",
        ][..],
    );
    b.append(
        SqlInfo::SqlNumericFunctions,
        &[
            "abs", "acos", "asin", "atan", "atan2", "ceil", "cos", "exp", "floor", "ln", "log",
            "log10", "log2", "pi", "power", "random", "round", "signum", "sin", "sqrt", "tan",
            "trunc",
        ][..],
    );
    b.append(
        SqlInfo::SqlStringFunctions,
        &[
            "ascii",
            "btrim",
            "char_length",
            "concat",
            "concat_ws",
            "initcap",
            "left",
            "length",
            "lower",
            "lpad",
            "ltrim",
            "md5",
            "regexp_replace",
            "repeat",
            "replace",
            "reverse",
            "right",
            "rpad",
            "rtrim",
            "split_part",
            "starts_with",
            "strpos",
            "substr",
            "to_hex",
            "translate",
            "trim",
            "upper",
        ][..],
    );
    b.append(
        SqlInfo::SqlSystemFunctions,
        &["arrow_typeof", "current_date", "current_time", "now"][..],
    );
    b.append(
        SqlInfo::SqlDatetimeFunctions,
        &[
            "current_date",
            "current_time",
            "date_bin",
            "date_part",
            "date_trunc",
            "from_unixtime",
            "now",
            "to_timestamp",
        ][..],
    );
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(SqlInfo::SqlTransactionsSupported, false);
    b.build()
});

fn xdbc(
    name: &str,
    data_type: XdbcDataType,
    column_size: Option<i32>,
    prefix: Option<&str>,
) -> XdbcTypeInfo {
    XdbcTypeInfo {
        type_name: name.to_string(),
        data_type,
        column_size,
        literal_prefix: prefix.map(str::to_string),
        literal_suffix: prefix.map(str::to_string),
        create_params: None,
        nullable: Nullable::NullabilityNullable,
        case_sensitive: matches!(data_type, XdbcDataType::XdbcVarchar),
        searchable: Searchable::Full,
        unsigned_attribute: Some(false),
        fixed_prec_scale: false,
        auto_increment: Some(false),
        local_type_name: Some(name.to_string()),
        minimum_scale: None,
        maximum_scale: None,
        sql_data_type: data_type,
        datetime_subcode: None,
        num_prec_radix: column_size.map(|_| 10),
        interval_precision: None,
    }
}

pub(crate) static XDBC_TYPES: LazyLock<Result<XdbcTypeInfoData, FlightError>> =
    LazyLock::new(|| {
        let mut b = XdbcTypeInfoDataBuilder::new();
        b.append(xdbc("BOOLEAN", XdbcDataType::XdbcBit, Some(1), None));
        b.append(xdbc("TINYINT", XdbcDataType::XdbcTinyint, Some(3), None));
        b.append(xdbc("SMALLINT", XdbcDataType::XdbcSmallint, Some(5), None));
        b.append(xdbc("INTEGER", XdbcDataType::XdbcInteger, Some(10), None));
        b.append(xdbc("BIGINT", XdbcDataType::XdbcBigint, Some(19), None));
        b.append(xdbc("FLOAT", XdbcDataType::XdbcFloat, Some(7), None));
        b.append(xdbc("DOUBLE", XdbcDataType::XdbcDouble, Some(15), None));
        b.append(xdbc("DECIMAL", XdbcDataType::XdbcDecimal, Some(38), None));
        b.append(xdbc("VARCHAR", XdbcDataType::XdbcVarchar, None, Some("'")));
        b.append(xdbc("BINARY", XdbcDataType::XdbcBinary, None, None));
        b.append(xdbc("DATE", XdbcDataType::XdbcDate, Some(10), Some("'")));
        b.append(xdbc(
            "TIMESTAMP",
            XdbcDataType::XdbcTimestamp,
            Some(29),
            Some("'"),
        ));
        b.build()
    });
