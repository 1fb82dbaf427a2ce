//! `GRANT SELECT ON [TABLE] t TO role` and `REVOKE SELECT ON [TABLE] t FROM role`.
//! DataFusion does not plan these, and only this small form exists here (SELECT is
//! the one grantable privilege), so a keyword reader is enough.

use lakehouse_common::config::ALL;
use lakehouse_common::names::validate_identifier;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GrantChange {
    /// GRANT (true) or REVOKE (false).
    pub grant: bool,
    pub table: String,
    /// A role name, or `*` for every role (`PUBLIC` in SQL).
    pub role: String,
}

impl std::fmt::Display for GrantChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let role = if self.role == ALL {
            "PUBLIC"
        } else {
            &self.role
        };
        if self.grant {
            write!(f, "GRANT SELECT ON {} TO {role}", self.table)
        } else {
            write!(f, "REVOKE SELECT ON {} FROM {role}", self.table)
        }
    }
}

/// `None` when `sql` is not a GRANT or REVOKE; an error when it is one we do not support.
pub(crate) fn parse(sql: &str) -> Result<Option<GrantChange>> {
    let text = sql.trim().trim_end_matches(';');
    let words: Vec<&str> = text.split_whitespace().collect();
    let grant = match words.first().map(|w| w.to_ascii_uppercase()).as_deref() {
        Some("GRANT") => true,
        Some("REVOKE") => false,
        _ => return Ok(None),
    };
    let fail = |reason: &str| Error::GrantStatement {
        statement: text.to_string(),
        reason: reason.to_string(),
    };
    let usage = if grant {
        "only GRANT SELECT ON <table> TO <role> (or PUBLIC) is supported"
    } else {
        "only REVOKE SELECT ON <table> FROM <role> (or PUBLIC) is supported"
    };
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    let mut at = 1;
    let expect = |keyword: &str, at: &mut usize| -> Result<()> {
        if upper.get(*at).map(String::as_str) == Some(keyword) {
            *at += 1;
            Ok(())
        } else {
            Err(fail(usage))
        }
    };
    expect("SELECT", &mut at)?;
    expect("ON", &mut at)?;
    if upper.get(at).map(String::as_str) == Some("TABLE") {
        at += 1;
    }
    let table = words.get(at).ok_or_else(|| fail(usage))?.to_string();
    at += 1;
    expect(if grant { "TO" } else { "FROM" }, &mut at)?;
    let role = words.get(at).ok_or_else(|| fail(usage))?.to_string();
    if at + 1 != words.len() {
        return Err(fail(usage));
    }
    let table = unquote(&table);
    if table != ALL {
        validate_identifier("table name", &table)?;
    }
    let role = if role.eq_ignore_ascii_case("PUBLIC") {
        ALL.to_string()
    } else {
        unquote(&role)
    };
    Ok(Some(GrantChange { grant, table, role }))
}

/// `"name"` keeps its case; a bare name is lowercased, as SQL identifiers are.
fn unquote(word: &str) -> String {
    match word.strip_prefix('"').and_then(|w| w.strip_suffix('"')) {
        Some(quoted) => quoted.to_string(),
        None => word.to_ascii_lowercase(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn grant_and_revoke_forms() {
        let change = parse("grant select on table Candidates to tenant_a;")
            .unwrap()
            .unwrap();
        assert_eq!(
            change,
            GrantChange {
                grant: true,
                table: "candidates".to_string(),
                role: "tenant_a".to_string()
            }
        );
        let revoke = parse("REVOKE SELECT ON contracts FROM PUBLIC")
            .unwrap()
            .unwrap();
        assert!(!revoke.grant);
        assert_eq!(revoke.role, ALL);
        assert_eq!(revoke.to_string(), "REVOKE SELECT ON contracts FROM PUBLIC");
        assert_eq!(parse("SELECT 1").unwrap(), None);
    }

    #[test]
    fn other_privileges_are_refused_with_the_supported_form() {
        for sql in [
            "GRANT INSERT ON t TO reader",
            "GRANT SELECT ON t TO reader WITH GRANT OPTION",
            "REVOKE SELECT ON t TO reader",
            "GRANT SELECT ON t",
        ] {
            let err = parse(sql).unwrap_err().to_string();
            assert!(err.contains("only"), "{sql}: {err}");
        }
    }
}
