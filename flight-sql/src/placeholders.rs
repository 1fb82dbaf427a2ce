//! JDBC and ADBC send `?` placeholders; DataFusion numbers them `$1, $2, …`.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

/// Rewrites each `?` outside literals and comments to `$n`, counting from 1.
/// Unparseable SQL is returned unchanged so the planner reports the real error.
pub(crate) fn number_placeholders(sql: &str) -> String {
    if !sql.contains('?') {
        return sql.to_string();
    }
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        return sql.to_string();
    };
    let mut next = 0;
    tokens
        .into_iter()
        .map(|token| match token {
            Token::Placeholder(p) if p == "?" => {
                next += 1;
                format!("${next}")
            }
            other => other.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_question_marks_but_not_in_strings() {
        assert_eq!(
            number_placeholders("SELECT * FROM t WHERE a = ? AND b = '?' AND c > ?"),
            "SELECT * FROM t WHERE a = $1 AND b = '?' AND c > $2"
        );
        assert_eq!(number_placeholders("SELECT 1"), "SELECT 1");
    }
}
