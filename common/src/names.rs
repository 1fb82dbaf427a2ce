//! Validation of user-chosen names that end up in object paths and SQL.

use crate::error::{Error, Result};

const MAX_NAME_LEN: usize = 128;

/// A table or index name: it becomes a path segment (`tables/<name>/`) and a
/// SQL identifier, so only `[a-z0-9_]` starting with a letter or `_` is taken.
pub fn validate_identifier(what: &'static str, name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("it is empty".to_string())
    } else if name.len() > MAX_NAME_LEN {
        Some(format!("it is longer than {MAX_NAME_LEN} characters"))
    } else if name.starts_with(|c: char| c.is_ascii_digit()) {
        Some("it starts with a digit".to_string())
    } else {
        name.chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
            .map(|c| format!("character {c:?} is not allowed"))
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(Error::InvalidName {
            what,
            reason: format!("{name:?}: {reason}; use lowercase letters, digits and `_`"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        for ok in ["candidates", "t1", "_staging", "a_b_c"] {
            assert!(validate_identifier("table name", ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_path_characters_and_empty() {
        for bad in ["", "../x", "a/b", "A", "1abc", "a b", "a.b", "ä"] {
            let err = validate_identifier("table name", bad).expect_err(bad);
            assert!(err.to_string().contains("table name"), "{err}");
        }
    }
}
