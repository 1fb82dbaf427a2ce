//! SetSessionOptions / GetSessionOptions / CloseSession and `SET` over SQL:
//! each changes only the caller's session (see [`crate::session`]).
//!
//! Option names: `catalog` and `schema` (what ADBC's `adbc.connection.catalog` and
//! `adbc.connection.db_schema` send) stand for DataFusion's default catalog and
//! schema, so unqualified table names resolve there; any other `datafusion.*`
//! option may be set by its own name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use datafusion::logical_expr::{LogicalPlan, ResetVariable, SetVariable, Statement};
use datafusion::prelude::DataFrame;
use lakehouse_query::{QueryEngine, CATALOG_NAME, DEFAULT_SCHEMA};
use prost::Message;
use tonic::Status;

use super::LakehouseFlightSql;
use crate::auth::empty_frame;
use crate::error::{from_query, invalid};
use crate::session::proto::{
    CloseSessionResult, CloseSessionStatus, GetSessionOptionsResult, OptionValue,
    SessionOptionValue, SetSessionOptionError, SetSessionOptionErrorValue,
    SetSessionOptionsRequest, SetSessionOptionsResult,
};
use crate::session::Settings;

const CATALOG_OPTION: &str = "catalog";
const SCHEMA_OPTION: &str = "schema";
const DEFAULT_CATALOG_SETTING: &str = "datafusion.catalog.default_catalog";
const DEFAULT_SCHEMA_SETTING: &str = "datafusion.catalog.default_schema";
/// DataFusion's own options; `datafusion.runtime.*` (memory pool, disk) stays server-wide.
const DATAFUSION_PREFIX: &str = "datafusion.";
const RUNTIME_PREFIX: &str = "datafusion.runtime.";

/// Engines with settings over the server's, made once per distinct settings:
/// making one copies the session state and every function the settings may
/// change (~0.3 ms, on every statement of a session that had used `SET`).
/// Sessions with the same settings (a BI tool's connections) share one.
#[derive(Clone, Default)]
pub(super) struct SettingsEngines {
    kept: Arc<Mutex<HashMap<Settings, QueryEngine>>>,
}

/// Distinct settings kept; past this many the kept engines are let go and made anew.
const MAX_SETTINGS_ENGINES: usize = 256;

impl SettingsEngines {
    fn engine(&self, base: &QueryEngine, settings: Settings) -> Result<QueryEngine, Status> {
        let lock = || self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(engine) = lock().get(&settings) {
            return Ok(engine.clone());
        }
        let engine = base
            .with_settings(settings.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(from_query)?;
        let mut kept = lock();
        if kept.len() >= MAX_SETTINGS_ENGINES {
            kept.clear();
        }
        kept.insert(settings, engine.clone());
        Ok(engine)
    }
}

/// The DataFusion setting a session option name stands for; `None`: no such option.
fn setting_of(option: &str) -> Option<&str> {
    match option {
        CATALOG_OPTION => Some(DEFAULT_CATALOG_SETTING),
        SCHEMA_OPTION => Some(DEFAULT_SCHEMA_SETTING),
        name if name.starts_with(DATAFUSION_PREFIX) => Some(name),
        _ => None,
    }
}

impl LakehouseFlightSql {
    /// The engine to plan the caller's statements in: the server's, with the
    /// session's settings over it.
    pub(super) fn session_engine(&self) -> Result<QueryEngine, Status> {
        let settings = self.sessions.settings(&self.auth.user())?;
        if settings.is_empty() {
            return Ok(self.engine.clone());
        }
        self.settings_engines.engine(&self.engine, settings)
    }

    /// `SET name = value` and `RESET name` change the caller's session; any other
    /// statement is `None`, to be planned as usual.
    pub(super) async fn session_statement(
        &self,
        engine: &QueryEngine,
        sql: &str,
    ) -> Result<Option<DataFrame>, Status> {
        let first_word = sql.split_whitespace().next().unwrap_or_default();
        if !["SET", "RESET"]
            .iter()
            .any(|w| first_word.eq_ignore_ascii_case(w))
        {
            return Ok(None);
        }
        let (setting, value) = match engine.logical_plan(sql).await.map_err(from_query)? {
            LogicalPlan::Statement(Statement::SetVariable(SetVariable {
                variable, value, ..
            })) => (variable, Some(value)),
            LogicalPlan::Statement(Statement::ResetVariable(ResetVariable { variable })) => {
                (variable, None)
            }
            _ => return Ok(None),
        };
        if let Some(value) = &value {
            self.check_setting(&setting, value)
                .map_err(|reason| invalid(format!("SET {setting}: {reason}")))?;
        } else if setting.starts_with(RUNTIME_PREFIX) {
            return Err(invalid(format!("RESET {setting}: {}", runtime_refusal())));
        }
        tracing::info!(%setting, ?value, "session setting changed by SQL");
        self.sessions
            .update(&self.auth.user(), |settings| match value {
                Some(value) => {
                    settings.insert(setting, value);
                }
                None => {
                    settings.remove(&setting);
                }
            });
        empty_frame(engine).await.map(Some)
    }

    /// Sets each option it can; the others come back with why (bad name or value),
    /// as Flight.proto asks. A valueless option is reset to the server's default.
    pub(super) fn set_session_options(&self, body: &[u8]) -> Result<Vec<u8>, Status> {
        let request = SetSessionOptionsRequest::decode(body).map_err(|e| {
            invalid(format!(
                "SetSessionOptions body is not a SetSessionOptionsRequest: {e}"
            ))
        })?;
        let mut errors = HashMap::new();
        let mut changes = Vec::new();
        for (option, value) in request.session_options {
            let Some(setting) = setting_of(&option) else {
                tracing::info!(%option, "unknown session option");
                errors.insert(option, refused(SetSessionOptionErrorValue::InvalidName));
                continue;
            };
            let setting = setting.to_string();
            let checked = match value.option_value {
                None if setting.starts_with(RUNTIME_PREFIX) => Err(runtime_refusal()),
                None => Ok(None),
                Some(value) => option_text(&value)
                    .and_then(|text| self.check_setting(&setting, &text).map(|()| text))
                    .map(Some),
            };
            match checked {
                Ok(value) => changes.push((setting, value)),
                Err(reason) => {
                    tracing::info!(%option, %reason, "session option value refused");
                    errors.insert(option, refused(SetSessionOptionErrorValue::InvalidValue));
                }
            }
        }
        if !changes.is_empty() {
            self.sessions.update(&self.auth.user(), |settings| {
                for (setting, value) in changes {
                    match value {
                        Some(value) => settings.insert(setting, value),
                        None => settings.remove(&setting),
                    };
                }
            });
        }
        Ok(SetSessionOptionsResult { errors }.encode_to_vec())
    }

    /// `catalog` and `schema` always (the server's defaults unless set), and every
    /// other option the session set.
    pub(super) fn get_session_options(&self) -> Result<Vec<u8>, Status> {
        let mut settings = self.sessions.settings(&self.auth.user())?;
        let catalog = settings
            .remove(DEFAULT_CATALOG_SETTING)
            .unwrap_or_else(|| CATALOG_NAME.to_string());
        let schema = settings
            .remove(DEFAULT_SCHEMA_SETTING)
            .unwrap_or_else(|| DEFAULT_SCHEMA.to_string());
        let session_options = settings
            .into_iter()
            .chain([
                (CATALOG_OPTION.to_string(), catalog),
                (SCHEMA_OPTION.to_string(), schema),
            ])
            .map(|(name, value)| (name, SessionOptionValue::string(value)))
            .collect();
        Ok(GetSessionOptionsResult { session_options }.encode_to_vec())
    }

    pub(super) fn close_session(&self) -> Result<Vec<u8>, Status> {
        self.sessions.close(&self.auth.user())?;
        Ok(CloseSessionResult {
            status: CloseSessionStatus::Closed as i32,
        }
        .encode_to_vec())
    }

    /// Why `value` cannot be the session's `setting`, if it cannot.
    fn check_setting(&self, setting: &str, value: &str) -> Result<(), String> {
        match setting {
            DEFAULT_CATALOG_SETTING if value != CATALOG_NAME => Err(format!(
                "no catalog `{value}`: the only catalog is `{CATALOG_NAME}`"
            )),
            DEFAULT_SCHEMA_SETTING => {
                let schemas: Vec<String> =
                    self.engine.schemas().into_iter().map(|(n, _)| n).collect();
                if schemas.iter().any(|s| s == value) {
                    Ok(())
                } else {
                    Err(format!(
                        "no schema `{value}` in catalog `{CATALOG_NAME}`; schemas: {}",
                        schemas.join(", ")
                    ))
                }
            }
            _ if setting.starts_with(RUNTIME_PREFIX) => Err(runtime_refusal()),
            _ => self
                .engine
                .with_settings([(setting, value)])
                .map(|_| ())
                .map_err(|e| e.to_string()),
        }
    }
}

fn runtime_refusal() -> String {
    "datafusion.runtime.* settings are server-wide and cannot change per session".to_string()
}

fn refused(value: SetSessionOptionErrorValue) -> SetSessionOptionError {
    SetSessionOptionError {
        value: value as i32,
    }
}

/// DataFusion options are text; a list is no option's value.
fn option_text(value: &OptionValue) -> Result<String, String> {
    match value {
        OptionValue::String(s) => Ok(s.clone()),
        OptionValue::Bool(b) => Ok(b.to_string()),
        OptionValue::Int64(n) => Ok(n.to_string()),
        OptionValue::Double(x) => Ok(x.to_string()),
        OptionValue::StringList(_) => Err("a string list is no option's value".to_string()),
    }
}
