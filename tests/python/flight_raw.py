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
