"""Auth, grants and TLS on Flight SQL and the HTTP API, against real `lakehouse up` processes.

The servers read a generated lakehouse.toml (cwd of `lakehouse up`) with an [auth] section:
password hashes come from `lakehouse auth hash-password`, one password through
`password_ref = "env:VAR"`. Clients are ADBC (username/password options, as users connect)
and raw pyarrow.flight (the Basic → Bearer handshake itself); over HTTP, requests with
Basic credentials or a Bearer token from the Flight SQL handshake.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path
from typing import Iterator, Optional

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_sql
import flight_raw
import pyarrow as pa
import pyarrow.flight as flight
import pytest

import requests

from harness import (
    DEMO_META,
    DEMO_TABLES,
    EXAMPLES,
    FULL_META,
    QUERY_TIMEOUT_S,
    START_TIMEOUT,
    LakehouseServer,
    server_env,
    table_names,
    wait_until,
)

PASSWORDS = {"alice": "alice-admin-pw", "bob": "bob-reader-pw", "walt": "walt-writer-pw"}
# carol's password reaches the server through password_ref = "env:LAKEHOUSE_TEST_CAROL_PW".
CAROL_PW = "carol-tenant-pw"


def hash_password(binary: Path, password: str) -> str:
    result = subprocess.run(
        [str(binary), "auth", "hash-password"],
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"hash-password failed: {result.stderr}"
    phc = result.stdout.strip()
    assert phc.startswith("$argon2id$"), phc
    return phc


def auth_toml(binary: Path) -> str:
    hashes = {user: hash_password(binary, pw) for user, pw in PASSWORDS.items()}
    return f"""
[auth]
enabled = true
token_ttl_secs = 600
roles = ["tenant_a"]

[auth.users.alice]
roles = ["admin"]
password_hash = '{hashes["alice"]}'

[auth.users.bob]
roles = ["reader"]
password_hash = '{hashes["bob"]}'

[auth.users.walt]
roles = ["writer"]
password_hash = '{hashes["walt"]}'

[auth.users.carol]
roles = ["tenant_a"]
password_ref = "env:LAKEHOUSE_TEST_CAROL_PW"

[auth.grants]
reader = ["contracts"]
tenant_a = ["placements"]
"""


def start_server(binary: Path, base: Path, name: str, toml: str, env: Optional[dict] = None) -> LakehouseServer:
    base.mkdir(parents=True, exist_ok=True)
    (base / "lakehouse.toml").write_text(toml, encoding="utf-8")
    server = LakehouseServer(binary, base, name=name, env={"LAKEHOUSE_TEST_CAROL_PW": CAROL_PW, **(env or {})})
    return server.start()


def http_auth(user: str) -> tuple[str, str]:
    return (user, PASSWORDS[user])


def http_ingest(server: LakehouseServer, file: Path, table: str, user: str, **meta: str) -> requests.Response:
    """POST /v1/tables/{table}/ingest as `user` (Basic), with FULL_META overridden by `meta`."""
    params = {**FULL_META, **meta, "filename": file.name}
    return server.post(f"/v1/tables/{table}/ingest", params=params, data=file.read_bytes(), auth=http_auth(user))


def http_tables(server: LakehouseServer, user: str) -> set[str]:
    r = server.get("/v1/tables", auth=http_auth(user))
    assert r.status_code == 200, f"GET /v1/tables as {user}: {r.status_code} {r.text}"
    return table_names(r.json())


def ingest_demo_as_admin(server: LakehouseServer) -> None:
    for table in DEMO_TABLES:
        r = http_ingest(server, EXAMPLES / f"{table}.csv", table, "alice", **DEMO_META[table])
        assert r.status_code == 200, f"ingest {table}: {r.status_code} {r.text}"


def connect(uri: str, user: Optional[str] = None, password: Optional[str] = None, **options: str):
    db_kwargs = {
        adbc_driver_flightsql.DatabaseOptions.TIMEOUT_QUERY.value: QUERY_TIMEOUT_S,
        adbc_driver_flightsql.DatabaseOptions.TIMEOUT_FETCH.value: QUERY_TIMEOUT_S,
        **options,
    }
    if user is not None:
        db_kwargs["username"] = user
        db_kwargs["password"] = password if password is not None else PASSWORDS[user]
    return flight_sql.connect(uri, db_kwargs=db_kwargs, autocommit=True)


def query(conn, sql: str) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(sql)
        table = cur.fetch_arrow_table()
    return [tuple(row.values()) for row in table.to_pylist()]


def listed_tables(conn) -> set[str]:
    """Tables of schema `public` in adbc_get_objects (information_schema is listed to all)."""
    names = set()
    for catalog in conn.adbc_get_objects(depth="tables").read_all().to_pylist():
        for schema in catalog["catalog_db_schemas"] or []:
            if schema["db_schema_name"] != "public":
                continue
            for table in schema["db_schema_tables"] or []:
                names.add(table["table_name"])
    return names


def expect_error(conn, sql: str) -> str:
    with pytest.raises(Exception) as info:
        query(conn, sql)
    return str(info.value)


@pytest.fixture(scope="module")
def auth_server(lakehouse_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LakehouseServer]:
    server = start_server(lakehouse_bin, tmp_path_factory.mktemp("auth"), "auth server", auth_toml(lakehouse_bin))
    try:
        ingest_demo_as_admin(server)
        yield server
    finally:
        server.stop()


def test_adbc_username_password_connects(auth_server: LakehouseServer) -> None:
    with connect(auth_server.flight_uri, "alice") as conn:
        assert query(conn, "SELECT COUNT(*) FROM candidates")[0][0] > 0
        assert {"candidates", "contracts", "placements"} <= listed_tables(conn)


def test_wrong_password_is_unauthenticated(auth_server: LakehouseServer) -> None:
    with pytest.raises(Exception) as info:
        with connect(auth_server.flight_uri, "alice", "not-her-password") as conn:
            query(conn, "SELECT 1")
    message = str(info.value)
    assert "Unauthenticated" in message or "UNAUTHENTICATED" in message, message
    assert "not accepted" in message, message


def test_no_credentials_is_told_to_authenticate(auth_server: LakehouseServer) -> None:
    with pytest.raises(Exception) as info:
        with connect(auth_server.flight_uri) as conn:
            query(conn, "SELECT 1")
    message = str(info.value)
    assert "Unauthenticated" in message or "UNAUTHENTICATED" in message, message
    assert "authenticate" in message, message


def test_reader_without_grant_is_denied_and_does_not_see_the_table(auth_server: LakehouseServer) -> None:
    with connect(auth_server.flight_uri, "bob") as conn:
        message = expect_error(conn, "SELECT COUNT(*) FROM candidates")
        assert "PermissionDenied" in message or "PERMISSION_DENIED" in message, message
        assert "candidates" in message and "reader" in message, message
        # A join or a subquery reaches the table just the same.
        message = expect_error(
            conn, "SELECT COUNT(*) FROM contracts WHERE contract_id IN (SELECT contract_id FROM placements)"
        )
        assert "placements" in message, message
        assert listed_tables(conn) == {"contracts"}
        with pytest.raises(Exception):
            conn.adbc_get_table_schema("candidates")


def test_granted_reader_sees_and_queries(auth_server: LakehouseServer) -> None:
    with connect(auth_server.flight_uri, "bob") as conn:
        assert query(conn, "SELECT COUNT(*) FROM contracts")[0][0] > 0
        assert "contract_id" in conn.adbc_get_table_schema("contracts").names
        # Prepared statements with parameters go through the same checks.
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM contracts WHERE contract_id = ?", (1,))
            assert cur.fetch_arrow_table().num_rows == 1
            with pytest.raises(Exception) as info:
                cur.execute("SELECT full_name FROM candidates WHERE candidate_id = ?", (1,))
                cur.fetch_arrow_table()
            assert "candidates" in str(info.value)


def test_custom_role_with_password_ref(auth_server: LakehouseServer) -> None:
    with connect(auth_server.flight_uri, "carol", CAROL_PW) as conn:
        assert listed_tables(conn) == {"placements"}
        assert query(conn, "SELECT COUNT(*) FROM placements")[0][0] > 0
        assert "contracts" in expect_error(conn, "SELECT * FROM contracts")


def test_reader_may_not_write_and_writer_reads_only_grants(auth_server: LakehouseServer) -> None:
    with connect(auth_server.flight_uri, "bob") as conn:
        message = expect_error(conn, "CREATE VIEW v AS SELECT 1")
        assert "writer or admin" in message, message
        assert "admin" in expect_error(conn, "GRANT SELECT ON candidates TO reader")
    with connect(auth_server.flight_uri, "walt") as conn:
        assert listed_tables(conn) == set()
        assert "candidates" in expect_error(conn, "SELECT * FROM candidates")


def test_admin_grants_and_revokes_over_sql(auth_server: LakehouseServer) -> None:
    with connect(auth_server.flight_uri, "alice") as admin, connect(auth_server.flight_uri, "bob") as bob:
        query(admin, "GRANT SELECT ON candidates TO reader")
        try:
            assert query(bob, "SELECT COUNT(*) FROM candidates")[0][0] > 0
            assert "candidates" in listed_tables(bob)
        finally:
            query(admin, "REVOKE SELECT ON candidates FROM reader")
        assert "candidates" in expect_error(bob, "SELECT COUNT(*) FROM candidates")
        assert "unknown role" in expect_error(admin, "GRANT SELECT ON candidates TO nobody")


def test_vector_search_needs_a_grant_on_the_index_source_table(auth_server: LakehouseServer) -> None:
    """`vector_search(...)` over Flight SQL is checked as a scan of the index's source table,
    as POST /v1/search is: bob (granted contracts) searches, carol (placements only) may not."""
    r = auth_server.post(
        "/v1/indexes",
        json={"name": "contracts_idx", "table": "contracts", "column": "title"},
        auth=http_auth("alice"),
        timeout=600,
    )
    assert r.status_code == 200, r.text
    last = json.loads(r.text.strip().splitlines()[-1])
    assert last["event"] == "done", r.text
    search = "SELECT doc_id, score FROM vector_search('contracts_idx', 'on-call reliability', 3)"
    with connect(auth_server.flight_uri, "bob") as conn:
        assert len(query(conn, search)) == 3
    with connect(auth_server.flight_uri, "carol", CAROL_PW) as conn:
        message = expect_error(conn, search)
        assert "PermissionDenied" in message or "PERMISSION_DENIED" in message, message
        assert "no SELECT grant on table `contracts`" in message, message
        # Inside a join or a subquery just the same.
        message = expect_error(
            conn,
            "SELECT p.placement_id FROM placements p WHERE p.contract_id IN "
            "(SELECT doc_id FROM vector_search('contracts_idx', 'on-call', 3))",
        )
        assert "no SELECT grant on table `contracts`" in message, message
    body = {"index": "contracts_idx", "query": "on-call reliability", "k": 3}
    r = auth_server.post("/v1/search", json=body, auth=("carol", CAROL_PW))
    assert r.status_code == 403, r.text
    assert "contracts" in r.text, r.text


# --------------------------------------------------------------------------------------
# The raw Flight handshake

# A Flight SQL command travels as a protobuf Any: field 1 = type URL, field 2 = message
# (empty for CommandGetCatalogs, so left out).
_CATALOGS_URL = b"type.googleapis.com/arrow.flight.protocol.sql.CommandGetCatalogs"
GET_CATALOGS = b"\x0a" + bytes([len(_CATALOGS_URL)]) + _CATALOGS_URL


def test_raw_handshake_basic_then_bearer(auth_server: LakehouseServer) -> None:
    client = flight.FlightClient(auth_server.flight_uri)
    try:
        header, value = client.authenticate_basic_token("bob", PASSWORDS["bob"])
        assert header.lower() == b"authorization", header
        assert value.startswith(b"Bearer ") and len(value) > len(b"Bearer ") + 20, value
        options = flight.FlightCallOptions(headers=[(header, value)])
        info = client.get_flight_info(flight.FlightDescriptor.for_command(GET_CATALOGS), options)
        catalogs = client.do_get(info.endpoints[0].ticket, options).read_all()
        assert catalogs.column("catalog_name").to_pylist() == ["lakehouse"]

        with pytest.raises(flight.FlightUnauthenticatedError, match="authenticate"):
            client.get_flight_info(flight.FlightDescriptor.for_command(GET_CATALOGS))
        forged = flight.FlightCallOptions(headers=[(b"authorization", b"Bearer forged-token")])
        with pytest.raises(flight.FlightUnauthenticatedError, match="unknown or has expired"):
            client.get_flight_info(flight.FlightDescriptor.for_command(GET_CATALOGS), forged)
        with pytest.raises(flight.FlightUnauthenticatedError, match="not accepted"):
            client.authenticate_basic_token("bob", "wrong")
    finally:
        client.close()


# --------------------------------------------------------------------------------------
# The HTTP API: the same users, sessions and grants


def test_http_asks_for_credentials_except_health_and_metrics(auth_server: LakehouseServer) -> None:
    for path in ("/health", "/metrics"):
        assert auth_server.get(path).status_code == 200, path
    for auth in (None, ("alice", "not-her-password")):
        r = auth_server.get("/v1/tables", auth=auth)
        assert r.status_code == 401, r.text
        assert r.headers["WWW-Authenticate"] == 'Basic realm="lakehouse"'
        assert r.json()["error"] == "unauthenticated", r.text
    assert "Authorization" in auth_server.get("/v1/tables").json()["detail"]
    assert "not accepted" in auth_server.get("/v1/tables", auth=("alice", "x")).json()["detail"]


def test_http_reader_sees_only_granted_tables(auth_server: LakehouseServer) -> None:
    assert http_tables(auth_server, "bob") == {"contracts"}
    assert auth_server.get("/v1/tables/contracts", auth=http_auth("bob")).status_code == 200
    r = auth_server.get("/v1/tables/candidates", auth=http_auth("bob"))
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "permission_denied" and "candidates" in r.json()["detail"], r.text
    assert set(DEMO_TABLES) <= http_tables(auth_server, "alice")


def test_http_ingest_needs_the_writer_role(auth_server: LakehouseServer) -> None:
    csv = EXAMPLES / "contracts.csv"
    r = http_ingest(auth_server, csv, "http_by_bob", "bob")
    assert r.status_code == 403, r.text
    assert "writer or admin" in r.json()["detail"], r.text
    r = http_ingest(auth_server, csv, "http_by_walt", "walt")
    assert r.status_code == 200, r.text
    assert r.json()["rows"] > 0
    r = requests.patch(
        f"{auth_server.http_url}/v1/tables/http_by_walt/metadata",
        json={"description": "changed"},
        auth=http_auth("bob"),
        timeout=30,
    )
    assert r.status_code == 403, r.text
    assert "http_by_walt" in http_tables(auth_server, "alice")


def test_cli_ingest_with_user_and_password(auth_server: LakehouseServer) -> None:
    args = auth_server.ingest_args(EXAMPLES / "contracts.csv", "cli_by_walt")
    refused = auth_server.cli(*args)
    assert refused.returncode != 0 and "no credentials" in refused.stderr, refused.stderr
    env = {**auth_server.cli_env(), "LAKEHOUSE_USER": "walt", "LAKEHOUSE_PASSWORD": PASSWORDS["walt"]}
    result = auth_server.cli(*args, env=env)
    assert result.returncode == 0, result.stderr
    assert "cli_by_walt" in http_tables(auth_server, "alice")


def test_flight_sql_token_works_over_http(auth_server: LakehouseServer) -> None:
    client = flight.FlightClient(auth_server.flight_uri)
    try:
        _, bearer = client.authenticate_basic_token("bob", PASSWORDS["bob"])
    finally:
        client.close()
    r = auth_server.get("/v1/tables", headers={"Authorization": bearer.decode()})
    assert r.status_code == 200, r.text
    assert table_names(r.json()) == {"contracts"}
    r = auth_server.get("/v1/tables", headers={"Authorization": "Bearer forged-token"})
    assert r.status_code == 401 and "unknown or has expired" in r.json()["detail"], r.text


def test_http_beyond_loopback_with_auth(lakehouse_bin: Path, tmp_path: Path) -> None:
    """What the Helm chart runs: HTTP on 0.0.0.0 with auth on, probed without credentials.
    Started by hand: the harness insists on loopback addresses."""
    (tmp_path / "lakehouse.toml").write_text(auth_toml(lakehouse_bin), encoding="utf-8")
    listen_file = tmp_path / "listen.json"
    env = server_env(
        tmp_path / "data", {"LAKEHOUSE__GATEWAY__HTTP_ADDR": "0.0.0.0:0", "LAKEHOUSE_TEST_CAROL_PW": CAROL_PW}
    )
    with open(tmp_path / "stderr.log", "wb") as err:
        proc = subprocess.Popen(
            [str(lakehouse_bin), "up", "--listen-file", str(listen_file)],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        info = wait_until(
            lambda: listen_file.exists() and json.loads(listen_file.read_text(encoding="utf-8")),
            timeout=START_TIMEOUT,
            what="the listen file of `lakehouse up` with HTTP on 0.0.0.0",
            on_timeout=lambda: (tmp_path / "stderr.log").read_text(errors="replace"),
        )
        host, port = info["http"].rsplit(":", 1)
        assert host == "0.0.0.0", info
        url = f"http://127.0.0.1:{port}"
        assert requests.get(f"{url}/health", timeout=10).status_code == 200
        assert requests.get(f"{url}/v1/tables", timeout=10).status_code == 401
        assert requests.get(f"{url}/v1/tables", auth=http_auth("alice"), timeout=10).status_code == 200
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0, (tmp_path / "stderr.log").read_text(errors="replace")


# --------------------------------------------------------------------------------------
# TLS


def make_certs(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 / localhost that it signed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lakehouse test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = (directory / "ca.pem", directory / "server.pem", directory / "server.key")
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


def test_tls_with_auth(lakehouse_bin: Path, tmp_path: Path) -> None:
    ca, cert, key = make_certs(tmp_path)
    toml = auth_toml(lakehouse_bin) + f"""
[tls]
cert_path = '{cert}'
key_path = '{key}'
"""
    server = start_server(lakehouse_bin, tmp_path / "tls", "tls server", toml)
    try:
        uri = f"grpc+tls://{server.flight_addr}"
        tls_roots = {adbc_driver_flightsql.DatabaseOptions.TLS_ROOT_CERTS.value: ca.read_text()}
        with connect(uri, "alice", **tls_roots) as conn:
            assert query(conn, "SELECT 41 + 1 AS answer") == [(42,)]
        # The CLI client: user from --user, password from LAKEHOUSE_PASSWORD, CA from --tls-ca.
        args = ("sql", "SELECT 7 AS seven", "--server", uri, "--user", "bob", "--tls-ca", str(ca))
        result = server.cli(*args, env={**server.cli_env(), "LAKEHOUSE_PASSWORD": "wrong"})
        assert result.returncode != 0 and "not accepted" in result.stderr, result.stderr
        env = {**server.cli_env(), "LAKEHOUSE_PASSWORD": PASSWORDS["bob"]}
        result = server.cli(*args, env=env)
        assert result.returncode == 0 and "7" in result.stdout, result.stderr
        # The server's certificate is checked: without the CA the client refuses it.
        with pytest.raises(Exception):
            with connect(uri, "alice") as conn:
                query(conn, "SELECT 1")
        # Plain gRPC is not served on a TLS port.
        with pytest.raises(Exception):
            with connect(server.flight_uri, "alice") as conn:
                query(conn, "SELECT 1")
    finally:
        server.stop()


# --------------------------------------------------------------------------------------
# Start-up refusals


def refused_start(binary: Path, base: Path, toml: str = "", **env: str) -> str:
    """Runs `lakehouse up` that must refuse to start; returns its stderr."""
    base.mkdir(parents=True, exist_ok=True)
    (base / "lakehouse.toml").write_text(toml, encoding="utf-8")
    result = subprocess.run(
        [str(binary), "up"],
        cwd=base,
        env=server_env(base / "data", env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0, f"`lakehouse up` started:\n{result.stderr}"
    assert "panicked" not in result.stderr, result.stderr
    return result.stderr


def test_non_loopback_without_auth_refuses_to_start(lakehouse_bin: Path, tmp_path: Path) -> None:
    stderr = refused_start(lakehouse_bin, tmp_path / "flight", LAKEHOUSE__FLIGHT_SQL__ADDR="0.0.0.0:0")
    assert "flight_sql.addr" in stderr and "auth.enabled" in stderr, stderr
    stderr = refused_start(lakehouse_bin, tmp_path / "http", LAKEHOUSE__GATEWAY__HTTP_ADDR="0.0.0.0:0")
    assert "gateway.http_addr" in stderr and "auth.enabled" in stderr, stderr


@pytest.mark.parametrize(
    "section, expected",
    [
        ('[auth.users.x]\nroles = ["reader"]\npassword = "hunter2"\n', "plain passwords are not accepted"),
        ('[auth.users.x]\nroles = ["reader"]\n', "auth.users.x: set password_hash"),
        ('[auth.users.x]\nroles = ["reader"]\npassword_hash = "$2b$10$bcrypt"\n', "auth.users.x.password_hash"),
        ('[auth.users.x]\nroles = ["boss"]\npassword_ref = "env:X"\n', "unknown role `boss`"),
        ('[auth.grants]\nauditor = ["contracts"]\n', "auth.grants: unknown role `auditor`"),
    ],
    ids=["plain-password", "no-password", "bad-hash", "unknown-user-role", "unknown-grant-role"],
)
def test_bad_auth_config_names_the_key(lakehouse_bin: Path, tmp_path: Path, section: str, expected: str) -> None:
    toml = "[auth]\nenabled = true\n" + section
    if "auth.users" not in section:
        toml += '[auth.users.alice]\nroles = ["admin"]\npassword_ref = "env:X"\n'
    stderr = refused_start(lakehouse_bin, tmp_path, toml, X="x")
    assert expected in stderr, stderr


def test_hash_password_reads_stdin_only(lakehouse_bin: Path) -> None:
    first, second = hash_password(lakehouse_bin, "pw"), hash_password(lakehouse_bin, "pw")
    assert first != second, "each hash has its own salt"
    result = subprocess.run(
        [str(lakehouse_bin), "auth", "hash-password"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "stdin" in result.stderr, result.stderr


# --------------------------------------------------------------------------------------
# What a reader sees of the catalog, and grants across restarts


def information_schema_tables(conn, listing: str) -> set[str]:
    return {
        row[0]
        for row in query(
            conn, f"SELECT DISTINCT table_name FROM information_schema.{listing} WHERE table_schema = 'public'"
        )
    }


def test_information_schema_lists_only_readable_tables(auth_server: LakehouseServer) -> None:
    with connect(auth_server.flight_uri, "bob") as bob, connect(auth_server.flight_uri, "alice") as alice:
        for listing in ("tables", "columns"):
            assert information_schema_tables(bob, listing) == listed_tables(bob) == {"contracts"}, listing
            everything = http_tables(auth_server, "alice")
            assert information_schema_tables(alice, listing) == listed_tables(alice) == everything
        # Unqualified, through the session's default schema, the filter still applies.
        bob.adbc_current_db_schema = "information_schema"
        try:
            names = {row[0] for row in query(bob, "SELECT table_name FROM tables WHERE table_schema = 'public'")}
        finally:
            bob.adbc_current_db_schema = "public"
        assert names == {"contracts"}
        # information_schema itself stays listed to everyone.
        own = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'information_schema'"
        assert {"tables", "columns"} <= {row[0] for row in query(bob, own)}


def test_sql_grants_survive_a_restart(lakehouse_bin: Path, tmp_path: Path) -> None:
    server = start_server(lakehouse_bin, tmp_path / "grants", "grants server", auth_toml(lakehouse_bin))
    try:
        ingest_demo_as_admin(server)
        with connect(server.flight_uri, "alice") as admin:
            query(admin, "GRANT SELECT ON candidates TO reader")
        server.restart()
        with connect(server.flight_uri, "bob") as bob:
            assert query(bob, "SELECT COUNT(*) FROM candidates") == [(60,)]
            assert listed_tables(bob) == {"candidates", "contracts"}
        with connect(server.flight_uri, "alice") as admin:
            query(admin, "REVOKE SELECT ON candidates FROM reader")
            assert "auth.grants" in expect_error(admin, "REVOKE SELECT ON contracts FROM reader")
        server.restart()
        with connect(server.flight_uri, "bob") as bob:
            assert "candidates" in expect_error(bob, "SELECT COUNT(*) FROM candidates")
            assert listed_tables(bob) == {"contracts"}
    finally:
        server.stop()


# --------------------------------------------------------------------------------------
# The Arrow Flight SQL JDBC driver's calls, made by hand (its jar is not reachable here)


def test_jdbc_driver_call_sequence(auth_server: LakehouseServer) -> None:
    jar = flight_raw.CookieJar()
    client = flight.FlightClient(auth_server.flight_uri, middleware=[jar])

    def fetch(command: bytes, options) -> pa.Table:
        return flight_raw.fetch(client, flight_raw.command_info(client, command, headers=options), headers=options)

    try:
        # 1. Handshake with Basic credentials; every later call carries the Bearer token.
        header, value = client.authenticate_basic_token("bob", PASSWORDS["bob"])
        assert value.startswith(b"Bearer "), value
        bearer = [(header, value)]
        call = flight.FlightCallOptions(headers=bearer)

        # 2. GetSqlInfo, all of it.
        info = {row["info_name"]: row["value"] for row in fetch(flight_raw.get_sql_info(), bearer).to_pylist()}
        assert info[0] == "Lakehouse", info[0]  # FLIGHT_SQL_SERVER_NAME
        assert info[3] is False  # FLIGHT_SQL_SERVER_READ_ONLY
        assert info[504] == '"'  # SQL_IDENTIFIER_QUOTE_CHAR

        # 3-5. Catalogs, schemas, tables with their schemas.
        assert fetch(flight_raw.get_catalogs(), bearer).column("catalog_name").to_pylist() == ["lakehouse"]
        schemas = fetch(flight_raw.get_db_schemas(catalog="lakehouse"), bearer).column("db_schema_name").to_pylist()
        assert {"public", "information_schema"} <= set(schemas)
        tables = fetch(flight_raw.get_tables(catalog="lakehouse", include_schema=True), bearer)
        public = {
            row["table_name"]: pa.ipc.read_schema(pa.py_buffer(row["table_schema"]))
            for row in tables.to_pylist()
            if row["db_schema_name"] == "public"
        }
        assert set(public) == {"contracts"}, "bob's grants show contracts only"
        assert "contract_id" in public["contracts"].names

        # 6. A prepared query with two rows of parameters: one result after the other.
        sql = "SELECT contract_id, city FROM contracts WHERE contract_id = ?"
        create = flight.Action("CreatePreparedStatement", flight_raw.create_prepared_statement(sql))
        result = list(client.do_action(create, call))
        prepared = dict(flight_raw.read_fields(flight_raw.unpack_any(result[0].body.to_pybytes())))
        handle = prepared[1]
        parameter_schema = pa.ipc.read_schema(pa.py_buffer(prepared[3]))
        assert len(parameter_schema) == 1, parameter_schema
        descriptor = flight.FlightDescriptor.for_command(flight_raw.prepared_statement_query(handle))
        parameters = pa.table({parameter_schema[0].name: pa.array([101, 102], parameter_schema[0].type)})
        writer, reader = client.do_put(descriptor, parameters.schema, call)
        writer.write_table(parameters)
        writer.done_writing()
        reader.read()
        writer.close()
        info = client.get_flight_info(descriptor, call)
        rows = flight_raw.fetch(client, info, headers=bearer).to_pylist()
        assert [r["contract_id"] for r in rows] == [101, 102]
        assert rows[0]["city"] == "Berlin"
        close = flight.Action("ClosePreparedStatement", flight_raw.close_prepared_statement(handle))
        list(client.do_action(close, call))
        with pytest.raises(KeyError, match="unknown or was closed"):  # NOT_FOUND
            client.get_flight_info(descriptor, call)

        # 7. The type catalogue.
        types = fetch(flight_raw.get_xdbc_type_info(), bearer)
        assert {"BIGINT", "VARCHAR"} <= set(types.column("type_name").to_pylist())

        # The driver ends by closing its session.
        closed = list(client.do_action(flight.Action("CloseSession", b""), call))
        assert dict(flight_raw.read_fields(closed[0].body.to_pybytes())).get(1) == 1
    finally:
        client.close()
