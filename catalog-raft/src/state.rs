//! The catalog's rules: how one request changes [`CatalogState`]. Pure and
//! deterministic (time comes from the request), so every node applying the same
//! log reaches the same state.

use arrow_schema::{Field, Schema};

use crate::error::Refusal;
use crate::model::{
    CatalogState, IndexShard, IndexStatus, IndexVersion, Lease, LeaseIssuer, ObjectKind, Table,
    TableCommit, TableVersion, VectorIndex, View, WriteMode,
};
use crate::request::{Request, Response};

/// Applies one request. A refused request leaves the state untouched.
pub(crate) fn apply(state: &mut CatalogState, request: Request) -> Response {
    let outcome = match request {
        Request::AcquireLease {
            table,
            holder,
            ttl_ms,
            now_ms,
        } => acquire_lease(state, table, holder, ttl_ms, now_ms),
        Request::RenewLease {
            table,
            token,
            ttl_ms,
            now_ms,
        } => renew_lease(state, &table, token, ttl_ms, now_ms),
        Request::ReleaseLease { table, token } => Ok(release_lease(state, &table, token)),
        Request::Commit {
            token,
            commit,
            now_ms,
            issuer,
        } => commit_version(state, Fence { token, issuer }, commit, now_ms),
        Request::DropTable {
            table,
            token,
            now_ms,
            issuer,
        } => drop_table(state, &table, Fence { token, issuer }, now_ms),
        Request::UpdateMetadata { table, metadata } => match state.tables.get_mut(&table) {
            Some(t) => {
                t.metadata = metadata;
                let t = t.clone();
                state.catalog_version += 1;
                Ok(Response::Table(t))
            }
            None => Err(Refusal::TableNotFound { table }),
        },
        Request::CreateView {
            view,
            replace,
            now_ms,
        } => create_view(state, view, replace, now_ms),
        Request::DropView { name } => match state.views.remove(&name) {
            Some(_) => {
                state.catalog_version += 1;
                Ok(Response::Done)
            }
            None => Err(Refusal::ViewNotFound { view: name }),
        },
        Request::SetGrant {
            role,
            table,
            granted,
        } => {
            set_grant(state, role, table, granted);
            Ok(Response::Done)
        }
        Request::CreateIndexVersion {
            name,
            version,
            now_ms,
        } => create_index_version(state, name, version, now_ms),
        Request::FinishIndexVersion {
            name,
            version,
            shards,
            chunks_embedded,
            error,
        } => finish_index_version(state, &name, version, shards, chunks_embedded, error),
        Request::ActivateIndexVersion { name, version } => {
            activate_index_version(state, &name, version)
        }
        Request::DropIndex { name, version } => drop_index(state, &name, version),
        Request::Restore(restored) => {
            // Tokens and catalog versions never go backwards, whatever the manifest says:
            // a writer holding an older token must stay fenced off.
            let last_token = restored.last_token.max(state.last_token);
            let catalog_version = restored.catalog_version.max(state.catalog_version);
            let mut etcd_fences = std::mem::take(&mut state.etcd_fences);
            *state = restored;
            for (table, token) in std::mem::take(&mut state.etcd_fences) {
                let highest = etcd_fences.entry(table).or_default();
                *highest = (*highest).max(token);
            }
            state.etcd_fences = etcd_fences;
            state.last_token = last_token;
            state.catalog_version = catalog_version;
            Ok(Response::Done)
        }
    };
    outcome.unwrap_or_else(Response::Refused)
}

fn ttl(ttl_ms: u64) -> i64 {
    i64::try_from(ttl_ms).unwrap_or(i64::MAX)
}

fn acquire_lease(
    state: &mut CatalogState,
    table: String,
    holder: String,
    ttl_ms: u64,
    now_ms: i64,
) -> Result<Response, Refusal> {
    if let Some(current) = state.leases.get(&table) {
        if current.expires_at_ms > now_ms {
            return Err(Refusal::LeaseHeld {
                table,
                holder: current.holder.clone(),
                token: current.token,
                expires_in_ms: current.expires_at_ms - now_ms,
            });
        }
    }
    state.last_token += 1;
    let lease = Lease {
        table: table.clone(),
        holder,
        token: state.last_token,
        expires_at_ms: now_ms.saturating_add(ttl(ttl_ms)),
        issuer: LeaseIssuer::Catalog,
    };
    state.leases.insert(table, lease.clone());
    state.catalog_version += 1;
    Ok(Response::Lease(lease))
}

/// The lease `token` must be the table's current lease and still live at `now_ms`.
fn check_lease(state: &CatalogState, table: &str, token: u64, now_ms: i64) -> Result<(), Refusal> {
    match state.leases.get(table) {
        Some(lease) if lease.token == token => {
            if lease.expires_at_ms > now_ms {
                Ok(())
            } else {
                Err(Refusal::LeaseExpired {
                    table: table.to_string(),
                    holder: lease.holder.clone(),
                    token,
                    expired_ms_ago: now_ms - lease.expires_at_ms,
                })
            }
        }
        Some(lease) => Err(Refusal::StaleToken {
            table: table.to_string(),
            token,
            current: Some(lease.token),
        }),
        None => Err(Refusal::StaleToken {
            table: table.to_string(),
            token,
            current: None,
        }),
    }
}

/// The fencing token a commit or drop carries, and who issued its lease.
#[derive(Debug, Clone, Copy)]
struct Fence {
    token: u64,
    issuer: LeaseIssuer,
}

impl Fence {
    /// Checks the token by its issuer. Refusals leave the state untouched.
    fn check(self, state: &CatalogState, table: &str, now_ms: i64) -> Result<(), Refusal> {
        match self.issuer {
            LeaseIssuer::Catalog => check_lease(state, table, self.token, now_ms),
            // The writer checked in etcd, just before sending this, that its key
            // still had this create revision; but it may have stalled since, and
            // another writer may have taken the key over and committed. That
            // writer's higher token is recorded here, in the replicated state (so
            // a new leader refuses too), and a lower token is refused.
            LeaseIssuer::Etcd { .. } => match state.etcd_fences.get(table) {
                Some(&highest) if highest > self.token => Err(Refusal::StaleToken {
                    table: table.to_string(),
                    token: self.token,
                    current: Some(highest),
                }),
                _ => Ok(()),
            },
        }
    }

    /// After an accepted change: an etcd token becomes the table's floor.
    fn record(self, state: &mut CatalogState, table: &str) {
        if let LeaseIssuer::Etcd { .. } = self.issuer {
            let highest = state.etcd_fences.entry(table.to_string()).or_default();
            *highest = (*highest).max(self.token);
        }
    }
}

fn renew_lease(
    state: &mut CatalogState,
    table: &str,
    token: u64,
    ttl_ms: u64,
    now_ms: i64,
) -> Result<Response, Refusal> {
    check_lease(state, table, token, now_ms)?;
    let lease = match state.leases.get_mut(table) {
        Some(lease) => {
            lease.expires_at_ms = now_ms.saturating_add(ttl(ttl_ms));
            lease.clone()
        }
        // check_lease found it a moment ago; keep the answer honest anyway.
        None => {
            return Err(Refusal::StaleToken {
                table: table.to_string(),
                token,
                current: None,
            })
        }
    };
    state.catalog_version += 1;
    Ok(Response::Lease(lease))
}

/// Releasing is idempotent: a stale token releases nothing (the lease belongs to
/// someone else by now) and is not an error.
fn release_lease(state: &mut CatalogState, table: &str, token: u64) -> Response {
    if state.leases.get(table).is_some_and(|l| l.token == token) {
        state.leases.remove(table);
        state.catalog_version += 1;
    }
    Response::Done
}

fn set_grant(state: &mut CatalogState, role: String, table: String, granted: bool) {
    if granted {
        state.grants.entry(role).or_default().insert(table);
    } else if let Some(tables) = state.grants.get_mut(&role) {
        tables.remove(&table);
        if tables.is_empty() {
            state.grants.remove(&role);
        }
    }
    state.catalog_version += 1;
}

fn commit_version(
    state: &mut CatalogState,
    fence: Fence,
    commit: TableCommit,
    now_ms: i64,
) -> Result<Response, Refusal> {
    fence.check(state, &commit.table, now_ms)?;
    let token = fence.token;
    let table_name = commit.table.clone();
    let TableCommit {
        table: name,
        mode,
        schema,
        new_files,
        metadata,
    } = commit;
    let version = match mode {
        WriteMode::Create => {
            if state.tables.contains_key(&name) {
                return Err(Refusal::TableExists { table: name });
            }
            if state.views.contains_key(&name) {
                return Err(Refusal::NameTaken {
                    name,
                    taken_by: ObjectKind::View,
                });
            }
            let Some(metadata) = metadata else {
                return Err(Refusal::MissingMetadata { table: name });
            };
            let version = new_version(1, schema, new_files, mode, token, now_ms);
            state.tables.insert(
                name.clone(),
                Table {
                    name,
                    metadata,
                    created_at_ms: now_ms,
                    versions: vec![version.clone()],
                },
            );
            version
        }
        WriteMode::Append | WriteMode::Replace => {
            let Some(table) = state.tables.get_mut(&name) else {
                return Err(Refusal::TableNotFound { table: name });
            };
            let (number, schema, files) = match (mode, table.current()) {
                (WriteMode::Append, Some(previous)) => {
                    let schema =
                        append_schema(&previous.schema, &schema).map_err(|differences| {
                            Refusal::SchemaMismatch {
                                table: name.clone(),
                                differences,
                            }
                        })?;
                    let mut files = previous.files.clone();
                    files.extend(new_files);
                    (previous.version + 1, schema, files)
                }
                (_, previous) => (previous.map_or(1, |p| p.version + 1), schema, new_files),
            };
            let version = new_version(number, schema, files, mode, token, now_ms);
            if let Some(metadata) = metadata {
                table.metadata = metadata;
            }
            table.versions.push(version.clone());
            version
        }
    };
    fence.record(state, &table_name);
    state.catalog_version += 1;
    Ok(Response::Version(version))
}

fn create_view(
    state: &mut CatalogState,
    mut view: View,
    replace: bool,
    now_ms: i64,
) -> Result<Response, Refusal> {
    if state.tables.contains_key(&view.name) {
        return Err(Refusal::NameTaken {
            name: view.name,
            taken_by: ObjectKind::Table,
        });
    }
    if !replace && state.views.contains_key(&view.name) {
        return Err(Refusal::ViewExists { view: view.name });
    }
    view.created_at_ms = now_ms;
    state.views.insert(view.name.clone(), view);
    state.catalog_version += 1;
    Ok(Response::Done)
}

fn create_index_version(
    state: &mut CatalogState,
    name: String,
    mut version: IndexVersion,
    now_ms: i64,
) -> Result<Response, Refusal> {
    if !state.tables.contains_key(&version.source_table) {
        return Err(Refusal::TableNotFound {
            table: version.source_table,
        });
    }
    let index = state
        .indexes
        .entry(name.clone())
        .or_insert_with(|| VectorIndex {
            name,
            versions: Vec::new(),
            active: None,
            next_version: 1,
        });
    version.version = index.next_version;
    index.next_version += 1;
    version.status = IndexStatus::Building;
    version.error = None;
    version.shards = Vec::new();
    version.chunks_embedded = 0;
    version.created_at_ms = now_ms;
    index.versions.push(version.clone());
    state.catalog_version += 1;
    Ok(Response::IndexVersion(version))
}

/// The index `name`, or the refusal naming it.
fn index_mut<'a>(state: &'a mut CatalogState, name: &str) -> Result<&'a mut VectorIndex, Refusal> {
    state
        .indexes
        .get_mut(name)
        .ok_or_else(|| Refusal::IndexNotFound {
            index: name.to_string(),
        })
}

impl VectorIndex {
    /// Position of `version` in `versions`, or the refusal naming it.
    fn position(&self, version: u64) -> Result<usize, Refusal> {
        self.versions
            .iter()
            .position(|v| v.version == version)
            .ok_or_else(|| Refusal::IndexVersionNotFound {
                index: self.name.clone(),
                version,
            })
    }
}

fn finish_index_version(
    state: &mut CatalogState,
    name: &str,
    version: u64,
    shards: Vec<IndexShard>,
    chunks_embedded: u64,
    error: Option<String>,
) -> Result<Response, Refusal> {
    let index = index_mut(state, name)?;
    let at = index.position(version)?;
    let built = &mut index.versions[at];
    if built.status != IndexStatus::Building {
        return Err(Refusal::IndexVersionNotBuilding {
            index: name.to_string(),
            version,
            status: built.status,
        });
    }
    built.chunks_embedded = chunks_embedded;
    match error {
        None => {
            built.status = IndexStatus::Ready;
            built.shards = shards;
        }
        Some(reason) => {
            built.status = IndexStatus::Failed;
            built.error = Some(reason);
        }
    }
    let finished = built.clone();
    if finished.status == IndexStatus::Ready && index.active.is_none() {
        index.active = Some(version);
    }
    state.catalog_version += 1;
    Ok(Response::IndexVersion(finished))
}

fn activate_index_version(
    state: &mut CatalogState,
    name: &str,
    version: u64,
) -> Result<Response, Refusal> {
    let index = index_mut(state, name)?;
    let status = index.versions[index.position(version)?].status;
    if status != IndexStatus::Ready {
        return Err(Refusal::IndexVersionNotReady {
            index: name.to_string(),
            version,
            status,
        });
    }
    index.active = Some(version);
    state.catalog_version += 1;
    Ok(Response::Done)
}

fn drop_index(
    state: &mut CatalogState,
    name: &str,
    version: Option<u64>,
) -> Result<Response, Refusal> {
    let index = index_mut(state, name)?;
    if let Some(version) = version {
        let at = index.position(version)?;
        index.versions.remove(at);
        if index.active == Some(version) {
            index.active = index
                .versions
                .iter()
                .filter(|v| v.status == IndexStatus::Ready)
                .map(|v| v.version)
                .max();
        }
    }
    if version.is_none() || index.versions.is_empty() {
        state.indexes.remove(name);
    }
    state.catalog_version += 1;
    Ok(Response::Done)
}

fn new_version(
    version: u64,
    schema: Schema,
    files: Vec<crate::model::DataFile>,
    mode: WriteMode,
    token: u64,
    now_ms: i64,
) -> TableVersion {
    TableVersion {
        version,
        row_count: files.iter().map(|f| f.row_count).sum(),
        schema,
        files,
        committed_at_ms: now_ms,
        mode,
        fencing_token: token,
    }
}

fn drop_table(
    state: &mut CatalogState,
    table: &str,
    fence: Fence,
    now_ms: i64,
) -> Result<Response, Refusal> {
    fence.check(state, table, now_ms)?;
    if state.tables.remove(table).is_none() {
        return Err(Refusal::TableNotFound {
            table: table.to_string(),
        });
    }
    fence.record(state, table);
    state.catalog_version += 1;
    Ok(Response::Done)
}

/// An append must bring the table's columns: same names, order and types. Only
/// nullability may differ (one file may happen to have no nulls); the table's
/// schema then becomes nullable where either side is. Writers call it too, to
/// refuse a mismatch before they write anything.
pub fn append_schema(table: &Schema, new: &Schema) -> Result<Schema, String> {
    let mut differences = Vec::new();
    for field in table.fields() {
        match new.field_with_name(field.name()) {
            Ok(n) if n.data_type() != field.data_type() => differences.push(format!(
                "column `{}` is {} in the table but {} in the new data",
                field.name(),
                field.data_type(),
                n.data_type()
            )),
            Ok(_) => {}
            Err(_) => differences.push(format!(
                "column `{}` is missing from the new data",
                field.name()
            )),
        }
    }
    for field in new.fields() {
        if table.field_with_name(field.name()).is_err() {
            differences.push(format!(
                "column `{}` ({}) is not in the table",
                field.name(),
                field.data_type()
            ));
        }
    }
    fn names(s: &Schema) -> Vec<&str> {
        s.fields().iter().map(|f| f.name().as_str()).collect()
    }
    if differences.is_empty() && names(table) != names(new) {
        differences.push(format!(
            "the columns are in a different order: table ({}), new data ({})",
            names(table).join(", "),
            names(new).join(", ")
        ));
    }
    if !differences.is_empty() {
        return Err(differences.join("; "));
    }
    let fields: Vec<Field> = table
        .fields()
        .iter()
        .zip(new.fields())
        .map(|(t, n)| {
            t.as_ref()
                .clone()
                .with_nullable(t.is_nullable() || n.is_nullable())
        })
        .collect();
    Ok(Schema::new_with_metadata(fields, table.metadata().clone()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use arrow_schema::DataType;
    use lakehouse_common::ObjectRef;

    use super::*;
    use crate::model::{DataFile, Sensitivity, TableMetadata};

    fn metadata() -> TableMetadata {
        TableMetadata {
            owner: "ops".into(),
            sensitivity: Sensitivity::Internal,
            lineage: "ats → ingest → candidates".into(),
            freshness_sla: "24h".into(),
            description: "candidates".into(),
            tags: vec!["hr".into()],
            metadata_incomplete: false,
        }
    }

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ])
    }

    fn file(key: &str, rows: u64) -> DataFile {
        DataFile {
            object: ObjectRef::primary(key),
            size_bytes: 10,
            row_count: rows,
        }
    }

    fn acquire(state: &mut CatalogState, holder: &str, now_ms: i64) -> Response {
        apply(
            state,
            Request::AcquireLease {
                table: "t".into(),
                holder: holder.into(),
                ttl_ms: 1_000,
                now_ms,
            },
        )
    }

    fn lease_of(r: Response) -> Lease {
        match r {
            Response::Lease(l) => l,
            other => panic!("expected a lease, got {other:?}"),
        }
    }

    fn create(token: u64, now_ms: i64) -> Request {
        Request::Commit {
            token,
            commit: TableCommit {
                table: "t".into(),
                mode: WriteMode::Create,
                schema: schema(),
                new_files: vec![file("tables/t/a.parquet", 3)],
                metadata: Some(metadata()),
            },
            now_ms,
            issuer: LeaseIssuer::Catalog,
        }
    }

    /// `create` under an etcd lease with create revision `token`.
    fn create_etcd(token: u64) -> Request {
        let Request::Commit { commit, now_ms, .. } = create(token, 1) else {
            unreachable!()
        };
        Request::Commit {
            token,
            commit,
            now_ms,
            issuer: LeaseIssuer::Etcd { lease_id: 7 },
        }
    }

    #[test]
    fn etcd_tokens_below_a_committed_one_are_refused_and_survive_restore() {
        let mut state = CatalogState::default();
        // Etcd leases are not in the catalog's lease table: no catalog lease needed.
        assert!(matches!(
            apply(&mut state, create_etcd(20)),
            Response::Version(_)
        ));
        assert_eq!(state.etcd_fences["t"], 20);
        // A writer whose etcd lease (revision 15) was taken over stalls, then commits.
        let before = state.clone();
        assert_eq!(
            apply(&mut state, create_etcd(15)),
            Response::Refused(Refusal::StaleToken {
                table: "t".into(),
                token: 15,
                current: Some(20)
            })
        );
        assert_eq!(state, before, "refused: nothing changed");
        // A refused request with a newer token (the table exists) raises no floor.
        assert!(matches!(
            apply(&mut state, create_etcd(30)),
            Response::Refused(Refusal::TableExists { .. })
        ));
        assert_eq!(state.etcd_fences["t"], 20);
        let drop = |token| Request::DropTable {
            table: "t".into(),
            token,
            now_ms: 2,
            issuer: LeaseIssuer::Etcd { lease_id: 8 },
        };
        assert!(matches!(
            apply(&mut state, drop(19)),
            Response::Refused(Refusal::StaleToken { .. })
        ));
        assert_eq!(apply(&mut state, drop(25)), Response::Done);
        // An older manifest never lowers a floor.
        let mut restored = before.clone();
        restored.etcd_fences.insert("t".into(), 3);
        restored.etcd_fences.insert("u".into(), 9);
        apply(&mut state, Request::Restore(restored));
        assert_eq!(state.etcd_fences["t"], 25);
        assert_eq!(state.etcd_fences["u"], 9);
    }

    #[test]
    fn stale_fencing_token_is_refused() {
        let mut state = CatalogState::default();
        let a = lease_of(acquire(&mut state, "a", 0));
        // A's lease expired at 1000; B takes over with a larger token.
        let b = lease_of(acquire(&mut state, "b", 1_500));
        assert!(b.token > a.token);
        let before = state.clone();
        let refused = apply(&mut state, create(a.token, 1_600));
        assert_eq!(
            refused,
            Response::Refused(Refusal::StaleToken {
                table: "t".into(),
                token: a.token,
                current: Some(b.token)
            })
        );
        assert_eq!(state, before, "a refused request changes nothing");
        assert!(
            matches!(apply(&mut state, create(b.token, 1_600)), Response::Version(v) if v.version == 1)
        );
    }

    #[test]
    fn expired_lease_cannot_commit_or_renew() {
        let mut state = CatalogState::default();
        let a = lease_of(acquire(&mut state, "a", 0));
        let refused = apply(&mut state, create(a.token, 1_000));
        assert!(matches!(
            refused,
            Response::Refused(Refusal::LeaseExpired {
                expired_ms_ago: 0,
                ..
            })
        ));
        let renew = Request::RenewLease {
            table: "t".into(),
            token: a.token,
            ttl_ms: 1_000,
            now_ms: 2_000,
        };
        assert!(matches!(
            apply(&mut state, renew),
            Response::Refused(Refusal::LeaseExpired { .. })
        ));
    }

    #[test]
    fn live_lease_blocks_acquire_and_release_is_idempotent() {
        let mut state = CatalogState::default();
        let a = lease_of(acquire(&mut state, "a", 0));
        match acquire(&mut state, "b", 400) {
            Response::Refused(Refusal::LeaseHeld {
                holder,
                expires_in_ms,
                ..
            }) => {
                assert_eq!(holder, "a");
                assert_eq!(expires_in_ms, 600);
            }
            other => panic!("{other:?}"),
        }
        let release = Request::ReleaseLease {
            table: "t".into(),
            token: a.token,
        };
        assert_eq!(apply(&mut state, release.clone()), Response::Done);
        assert!(state.leases.is_empty());
        let version = state.catalog_version;
        assert_eq!(apply(&mut state, release), Response::Done);
        assert_eq!(state.catalog_version, version, "nothing changed");
        assert_eq!(lease_of(acquire(&mut state, "b", 500)).token, a.token + 1);
    }

    #[test]
    fn append_keeps_files_replace_swaps_them_schema_checked() {
        let mut state = CatalogState::default();
        let lease = lease_of(acquire(&mut state, "w", 0));
        apply(&mut state, create(lease.token, 1));
        let commit = |mode, schema, key: &str| Request::Commit {
            token: lease.token,
            commit: TableCommit {
                table: "t".into(),
                mode,
                schema,
                new_files: vec![file(key, 2)],
                metadata: None,
            },
            now_ms: 2,
            issuer: LeaseIssuer::Catalog,
        };
        let Response::Version(v2) = apply(
            &mut state,
            commit(WriteMode::Append, schema(), "tables/t/b.parquet"),
        ) else {
            panic!()
        };
        assert_eq!((v2.version, v2.files.len(), v2.row_count), (2, 2, 5));

        let other = Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("email", DataType::Utf8, true),
        ]);
        match apply(
            &mut state,
            commit(WriteMode::Append, other.clone(), "tables/t/c.parquet"),
        ) {
            Response::Refused(Refusal::SchemaMismatch { differences, .. }) => {
                assert!(
                    differences.contains("column `id` is Int64 in the table but Utf8"),
                    "{differences}"
                );
                assert!(differences.contains("`name` is missing"), "{differences}");
                assert!(
                    differences.contains("`email` (Utf8) is not in the table"),
                    "{differences}"
                );
            }
            other => panic!("{other:?}"),
        }
        let Response::Version(v3) = apply(
            &mut state,
            commit(WriteMode::Replace, other, "tables/t/d.parquet"),
        ) else {
            panic!()
        };
        assert_eq!((v3.version, v3.files.len(), v3.row_count), (3, 1, 2));
        assert_eq!(state.tables["t"].versions.len(), 3);
        assert_eq!(
            state.tables["t"].metadata,
            metadata(),
            "metadata kept when not given"
        );
    }

    #[test]
    fn create_twice_and_missing_table_are_refused() {
        let mut state = CatalogState::default();
        let lease = lease_of(acquire(&mut state, "w", 0));
        apply(&mut state, create(lease.token, 1));
        assert!(matches!(
            apply(&mut state, create(lease.token, 2)),
            Response::Refused(Refusal::TableExists { .. })
        ));
        let mut no_metadata = create(lease.token, 2);
        if let Request::Commit { commit, .. } = &mut no_metadata {
            commit.table = "u".into();
            commit.metadata = None;
        }
        // The lease is for `t`, so committing `u` with it is a stale token.
        assert!(matches!(
            apply(&mut state, no_metadata),
            Response::Refused(Refusal::StaleToken { current: None, .. })
        ));
        let drop = Request::DropTable {
            table: "t".into(),
            token: lease.token,
            now_ms: 3,
            issuer: LeaseIssuer::Catalog,
        };
        assert_eq!(apply(&mut state, drop.clone()), Response::Done);
        assert!(matches!(
            apply(&mut state, drop),
            Response::Refused(Refusal::TableNotFound { .. })
        ));
    }

    #[test]
    fn grants_are_set_and_revoked_idempotently() {
        let mut state = CatalogState::default();
        let grant = |granted| Request::SetGrant {
            role: "reader".to_string(),
            table: "t".to_string(),
            granted,
        };
        for _ in 0..2 {
            assert_eq!(apply(&mut state, grant(true)), Response::Done);
        }
        assert_eq!(state.grants["reader"].len(), 1);
        assert_eq!(apply(&mut state, grant(false)), Response::Done);
        assert!(state.grants.is_empty(), "a role without tables is dropped");
        assert_eq!(apply(&mut state, grant(false)), Response::Done);
        assert_eq!(state.catalog_version, 4);
    }

    /// A recipe as a build submits it; the catalog fills in the rest.
    fn recipe(source_table: &str) -> IndexVersion {
        IndexVersion {
            version: 99,
            profile: "local".into(),
            model: "all-MiniLM-L6-v2".into(),
            model_version: "1".into(),
            dims: 384,
            source_table: source_table.into(),
            source_column: "name".into(),
            key_column: Some("id".into()),
            source_table_version: 1,
            chunking: crate::model::Chunking {
                chunk_size: 512,
                overlap: 64,
            },
            hnsw: crate::model::HnswParams {
                m: 16,
                ef_construction: 200,
                ef_search: 64,
            },
            shards: vec![shard("stale")],
            status: IndexStatus::Ready,
            error: Some("stale".into()),
            chunks_embedded: 7,
            created_at_ms: 0,
        }
    }

    fn shard(key: &str) -> IndexShard {
        IndexShard {
            data: ObjectRef::primary(format!("indexes/idx/{key}.parquet")),
            graph: Some(ObjectRef::primary(format!("indexes/idx/{key}.hnsw"))),
            backend: crate::model::ShardBackend::Hnsw,
            chunks: 3,
        }
    }

    /// A state holding table `t`.
    fn with_table() -> CatalogState {
        let mut state = CatalogState::default();
        let lease = lease_of(acquire(&mut state, "w", 0));
        assert!(matches!(
            apply(&mut state, create(lease.token, 1)),
            Response::Version(_)
        ));
        state
    }

    fn index_version_of(r: Response) -> IndexVersion {
        match r {
            Response::IndexVersion(v) => v,
            other => panic!("expected an index version, got {other:?}"),
        }
    }

    fn start(state: &mut CatalogState, now_ms: i64) -> IndexVersion {
        index_version_of(apply(
            state,
            Request::CreateIndexVersion {
                name: "idx".into(),
                version: recipe("t"),
                now_ms,
            },
        ))
    }

    fn finish(state: &mut CatalogState, version: u64, error: Option<&str>) -> Response {
        apply(
            state,
            Request::FinishIndexVersion {
                name: "idx".into(),
                version,
                shards: vec![shard(&format!("v{version}/s0"))],
                chunks_embedded: 3,
                error: error.map(str::to_string),
            },
        )
    }

    fn activate(state: &mut CatalogState, version: u64) -> Response {
        apply(
            state,
            Request::ActivateIndexVersion {
                name: "idx".into(),
                version,
            },
        )
    }

    fn drop_index(state: &mut CatalogState, version: Option<u64>) -> Response {
        apply(
            state,
            Request::DropIndex {
                name: "idx".into(),
                version,
            },
        )
    }

    #[test]
    fn index_versions_are_numbered_and_start_building() {
        let mut state = CatalogState::default();
        let refused = apply(
            &mut state,
            Request::CreateIndexVersion {
                name: "idx".into(),
                version: recipe("t"),
                now_ms: 5,
            },
        );
        assert_eq!(
            refused,
            Response::Refused(Refusal::TableNotFound { table: "t".into() })
        );
        assert_eq!(state, CatalogState::default(), "refused: nothing changed");

        let mut state = with_table();
        let before = state.catalog_version;
        let v1 = start(&mut state, 10);
        let v2 = start(&mut state, 20);
        assert_eq!((v1.version, v2.version), (1, 2));
        assert_eq!(state.catalog_version, before + 2);
        assert_eq!(
            v1,
            IndexVersion {
                version: 1,
                shards: vec![],
                status: IndexStatus::Building,
                error: None,
                chunks_embedded: 0,
                created_at_ms: 10,
                ..recipe("t")
            }
        );
        let index = &state.indexes["idx"];
        assert_eq!(index.versions, vec![v1, v2]);
        assert_eq!((index.active, index.next_version), (None, 3));
    }

    #[test]
    fn finishing_makes_ready_or_failed_and_activates_the_first_ready() {
        let mut state = with_table();
        start(&mut state, 1);
        start(&mut state, 2);
        let failed = index_version_of(finish(&mut state, 1, Some("model went away")));
        assert_eq!(failed.status, IndexStatus::Failed);
        assert_eq!(failed.error.as_deref(), Some("model went away"));
        assert!(failed.shards.is_empty());
        assert_eq!(
            state.indexes["idx"].active, None,
            "a failed version is not searched"
        );

        let ready = index_version_of(finish(&mut state, 2, None));
        assert_eq!(ready.status, IndexStatus::Ready);
        assert_eq!(ready.shards, vec![shard("v2/s0")]);
        assert_eq!(ready.chunks_embedded, 3);
        assert_eq!(state.indexes["idx"].active, Some(2));
        assert_eq!(state.indexes["idx"].version(2), Some(&ready));

        // A third ready version does not take over: activation is explicit.
        start(&mut state, 3);
        finish(&mut state, 3, None);
        assert_eq!(state.indexes["idx"].active, Some(2));

        let before = state.clone();
        assert_eq!(
            finish(&mut state, 2, None),
            Response::Refused(Refusal::IndexVersionNotBuilding {
                index: "idx".into(),
                version: 2,
                status: IndexStatus::Ready
            })
        );
        assert_eq!(
            finish(&mut state, 9, None),
            Response::Refused(Refusal::IndexVersionNotFound {
                index: "idx".into(),
                version: 9
            })
        );
        assert_eq!(state, before, "refusals change nothing");
    }

    #[test]
    fn only_ready_versions_activate() {
        let mut state = with_table();
        start(&mut state, 1);
        start(&mut state, 2);
        start(&mut state, 3);
        finish(&mut state, 1, None);
        finish(&mut state, 2, Some("boom"));
        let before = state.clone();
        let not_ready = |version, status| {
            Response::Refused(Refusal::IndexVersionNotReady {
                index: "idx".into(),
                version,
                status,
            })
        };
        assert_eq!(activate(&mut state, 2), not_ready(2, IndexStatus::Failed));
        assert_eq!(activate(&mut state, 3), not_ready(3, IndexStatus::Building));
        assert_eq!(
            activate(&mut state, 4),
            Response::Refused(Refusal::IndexVersionNotFound {
                index: "idx".into(),
                version: 4
            })
        );
        assert_eq!(
            apply(
                &mut state,
                Request::ActivateIndexVersion {
                    name: "nope".into(),
                    version: 1
                }
            ),
            Response::Refused(Refusal::IndexNotFound {
                index: "nope".into()
            })
        );
        assert_eq!(state, before);
        finish(&mut state, 3, None);
        assert_eq!(activate(&mut state, 3), Response::Done);
        assert_eq!(state.indexes["idx"].active_version().unwrap().version, 3);
        assert_eq!(state.catalog_version, before.catalog_version + 2);
    }

    #[test]
    fn dropping_versions_moves_activation_and_never_reuses_numbers() {
        let mut state = with_table();
        for now_ms in 1..=4 {
            start(&mut state, now_ms);
        }
        finish(&mut state, 1, None);
        finish(&mut state, 2, None);
        finish(&mut state, 3, Some("boom"));
        finish(&mut state, 4, None);
        activate(&mut state, 4);

        // The active one goes: the newest remaining ready version takes over (not 3, failed).
        assert_eq!(drop_index(&mut state, Some(4)), Response::Done);
        assert_eq!(state.indexes["idx"].active, Some(2));
        // A version that is not active goes without changing the active one.
        assert_eq!(drop_index(&mut state, Some(1)), Response::Done);
        assert_eq!(state.indexes["idx"].active, Some(2));
        assert_eq!(drop_index(&mut state, Some(2)), Response::Done);
        assert_eq!(
            state.indexes["idx"].active, None,
            "only a failed one is left"
        );
        assert_eq!(
            drop_index(&mut state, Some(2)),
            Response::Refused(Refusal::IndexVersionNotFound {
                index: "idx".into(),
                version: 2
            })
        );
        assert_eq!(start(&mut state, 5).version, 5, "numbers are never reused");
        drop_index(&mut state, Some(5));
        let before = state.catalog_version;
        assert_eq!(drop_index(&mut state, Some(3)), Response::Done);
        assert!(
            state.indexes.is_empty(),
            "the last version took the index with it"
        );
        assert_eq!(state.catalog_version, before + 1);
        assert_eq!(
            drop_index(&mut state, None),
            Response::Refused(Refusal::IndexNotFound {
                index: "idx".into()
            })
        );

        start(&mut state, 6);
        start(&mut state, 7);
        assert_eq!(drop_index(&mut state, None), Response::Done);
        assert!(state.indexes.is_empty());
        assert_eq!(start(&mut state, 8).version, 1, "a new index counts from 1");
    }

    #[test]
    fn nullability_differences_merge() {
        let table = schema();
        let new = Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, false),
        ]);
        let merged = append_schema(&table, &new).unwrap();
        assert!(merged.field(0).is_nullable());
        assert!(merged.field(1).is_nullable());
        let reordered = Schema::new(vec![
            Field::new("name", DataType::Utf8, true),
            Field::new("id", DataType::Int64, false),
        ]);
        assert!(append_schema(&table, &reordered)
            .unwrap_err()
            .contains("different order"));
    }
}
