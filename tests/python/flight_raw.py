"""Raw Flight SQL calls with `pyarrow.flight`, for what the drivers do not expose
(key commands, CancelFlightInfo, GetSchema of a command) and for making the JDBC
driver's call sequence by hand.

Flight SQL commands travel as protobuf `Any` messages; the few this module needs are
encoded by hand (a varint and length-delimited fields are all they use), so the tests
need no protobuf compiler.
"""

from __future__ import annotations

from typing import Iterable, Optional

import pyarrow as pa
import pyarrow.flight as flight

SQL_PACKAGE = "type.googleapis.com/arrow.flight.protocol.sql."


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field_bytes(number: int, payload: bytes) -> bytes:
    """A length-delimited field (strings, bytes, nested messages)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def field_varint(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def message(*fields: Optional[bytes]) -> bytes:
    return b"".join(f for f in fields if f is not None)


def string(number: int, value: Optional[str]) -> Optional[bytes]:
    return None if value is None else field_bytes(number, value.encode())


def any_command(name: str, body: bytes) -> bytes:
    """`google.protobuf.Any` wrapping the Flight SQL command `name`."""
    return field_bytes(1, (SQL_PACKAGE + name).encode()) + field_bytes(2, body)


def statement_query(sql: str) -> bytes:
    return any_command("CommandStatementQuery", field_bytes(1, sql.encode()))


def get_primary_keys(table: str, catalog: Optional[str] = None, schema: Optional[str] = None) -> bytes:
    return any_command("CommandGetPrimaryKeys", message(string(1, catalog), string(2, schema), string(3, table)))


def get_exported_keys(table: str) -> bytes:
    return any_command("CommandGetExportedKeys", string(3, table) or b"")


def get_imported_keys(table: str) -> bytes:
    return any_command("CommandGetImportedKeys", string(3, table) or b"")


def get_cross_reference(pk_table: str, fk_table: str) -> bytes:
    return any_command("CommandGetCrossReference", message(string(3, pk_table), string(6, fk_table)))


def get_tables(
    *,
    catalog: Optional[str] = None,
    schema_pattern: Optional[str] = None,
    table_pattern: Optional[str] = None,
    table_types: Iterable[str] = (),
    include_schema: bool = False,
) -> bytes:
    body = message(
        string(1, catalog),
        string(2, schema_pattern),
        string(3, table_pattern),
        *(field_bytes(4, t.encode()) for t in table_types),
        field_varint(5, 1) if include_schema else None,
    )
    return any_command("CommandGetTables", body)


def cancel_flight_info_request(info: flight.FlightInfo) -> bytes:
    """`CancelFlightInfoRequest { info }` (a Flight RPC message, not wrapped in Any)."""
    return field_bytes(1, info.serialize())


def cancel_status(result_body: bytes) -> int:
    """The `status` of a `CancelFlightInfoResult` (1 = CANCELLED)."""
    if not result_body:
        return 0
    assert result_body[0] == 0x08, f"unexpected CancelFlightInfoResult: {result_body!r}"
    return result_body[1]


def client(uri: str) -> flight.FlightClient:
    return flight.FlightClient(uri)


def command_info(conn: flight.FlightClient, command: bytes, **call) -> flight.FlightInfo:
    return conn.get_flight_info(flight.FlightDescriptor.for_command(command), flight.FlightCallOptions(**call))


def fetch(conn: flight.FlightClient, info: flight.FlightInfo, **call) -> pa.Table:
    """Reads every endpoint of `info`; also checks the data's schema is the promised one."""
    tables = [conn.do_get(endpoint.ticket, flight.FlightCallOptions(**call)).read_all() for endpoint in info.endpoints]
    result = pa.concat_tables(tables) if tables else info.schema.empty_table()
    assert result.schema.equals(info.schema), f"DoGet schema {result.schema} differs from FlightInfo's {info.schema}"
    return result


# --------------------------------------------------------------------------------------
# Session options (Flight RPC messages, not wrapped in Any)


def session_option_string(value: str) -> bytes:
    """`SessionOptionValue { string_value }`."""
    return field_bytes(1, value.encode())


def session_option_int(value: int) -> bytes:
    """`SessionOptionValue { int64_value }` (sfixed64, field 3)."""
    return varint(3 << 3 | 1) + value.to_bytes(8, "little", signed=True)


def set_session_options_request(options: dict[str, Optional[bytes]]) -> bytes:
    """`SetSessionOptionsRequest`: name → an encoded `SessionOptionValue` (None: unset)."""
    return b"".join(
        field_bytes(1, message(string(1, name), field_bytes(2, value or b""))) for name, value in options.items()
    )


def read_fields(data: bytes) -> list[tuple[int, object]]:
    """Top-level fields of a protobuf message: (number, int or bytes), in order."""
    fields, at = [], 0
    while at < len(data):
        key, at = _read_varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _read_varint(data, at)
        elif wire == 2:
            length, at = _read_varint(data, at)
            value, at = data[at : at + length], at + length
        elif wire == 1:
            value, at = data[at : at + 8], at + 8
        else:
            raise ValueError(f"wire type {wire} is not used by these messages")
        fields.append((number, value))
    return fields


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def read_map(data: bytes) -> dict[str, bytes]:
    """A `map<string, message>` in field 1 (SetSessionOptionsResult, GetSessionOptionsResult)."""
    entries = {}
    for number, entry in read_fields(data):
        assert number == 1, f"unexpected field {number}"
        parts = dict(read_fields(entry))
        entries[parts[1].decode()] = parts.get(2, b"")
    return entries


def session_option_errors(result_body: bytes) -> dict[str, int]:
    """`SetSessionOptionsResult.errors`: name → ErrorValue (1 invalid name, 2 invalid value)."""
    return {name: dict(read_fields(error)).get(1, 0) for name, error in read_map(result_body).items()}


def session_options(result_body: bytes) -> dict[str, str]:
    """`GetSessionOptionsResult`, string values only (all this server returns)."""
    return {name: dict(read_fields(value))[1].decode() for name, value in read_map(result_body).items()}


class CookieJar(flight.ClientMiddlewareFactory):
    """Keeps the cookies a server sets and sends them back, as the JDBC driver does."""

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}

    def start_call(self, info):
        return _CookieMiddleware(self)


class _CookieMiddleware(flight.ClientMiddleware):
    def __init__(self, jar: CookieJar) -> None:
        self.jar = jar

    def sending_headers(self):
        if not self.jar.cookies:
            return {}
        return {"cookie": "; ".join(f"{k}={v}" for k, v in self.jar.cookies.items())}

    def received_headers(self, headers):
        for value in headers.get("set-cookie", []):
            pair = value.split(";", 1)[0]
            name, _, cookie = pair.partition("=")
            self.jar.cookies[name.strip()] = cookie.strip()


def unpack_any(data: bytes) -> bytes:
    """The message inside a `google.protobuf.Any` (Flight SQL action results)."""
    return dict(read_fields(data)).get(2, b"")


def get_sql_info(*codes: int) -> bytes:
    """`CommandGetSqlInfo`; no codes: every one the server has."""
    return any_command("CommandGetSqlInfo", field_bytes(1, b"".join(varint(c) for c in codes)) if codes else b"")


def get_catalogs() -> bytes:
    return any_command("CommandGetCatalogs", b"")


def get_db_schemas(catalog: Optional[str] = None, schema_pattern: Optional[str] = None) -> bytes:
    return any_command("CommandGetDbSchemas", message(string(1, catalog), string(2, schema_pattern)))


def get_xdbc_type_info() -> bytes:
    return any_command("CommandGetXdbcTypeInfo", b"")


def create_prepared_statement(sql: str) -> bytes:
    return any_command("ActionCreatePreparedStatementRequest", field_bytes(1, sql.encode()))


def prepared_statement_query(handle: bytes) -> bytes:
    return any_command("CommandPreparedStatementQuery", field_bytes(1, handle))


def close_prepared_statement(handle: bytes) -> bytes:
    return any_command("ActionClosePreparedStatementRequest", field_bytes(1, handle))
