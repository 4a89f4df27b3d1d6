//! Which GraphQL operation a request runs, read with a real parser, so
//! scopes can tell a read (`QUERY /graphql`) from a write
//! (`MUTATION /graphql`). A request whose operation cannot be determined
//! is refused rather than guessed at.

use graphql_parser::query::{Definition, OperationDefinition};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Query,
    Mutation,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Query => "QUERY",
            Operation::Mutation => "MUTATION",
        }
    }
}

/// Why the operation a body runs cannot be told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    #[error("a GraphQL request is a JSON object with a \"query\" string ({0})")]
    NotJson(String),
    #[error("the GraphQL document does not parse: {0}")]
    Parse(String),
    #[error("no operation named {0:?} in the document")]
    NoSuchName(String),
    #[error("two operations are named {0:?}")]
    NameTwice(String),
    #[error("the document has no operation")]
    NoOperation,
    #[error("the document has several operations and no operationName picks one")]
    Ambiguous,
    #[error("GitHub's GraphQL API has no subscriptions")]
    Subscription,
}

/// The body GitHub's GraphQL endpoint takes.
#[derive(Deserialize)]
struct Body {
    query: String,
    #[serde(default, rename = "operationName")]
    operation_name: Option<String>,
}

/// The operation `body` (a GraphQL-over-HTTP JSON body) would run, as
/// GitHub would pick it: the one named by `operationName`, else the only
/// one in the document.
pub fn operation(body: &[u8]) -> Result<Operation, Unreadable> {
    let body: Body =
        serde_json::from_slice(body).map_err(|e| Unreadable::NotJson(e.to_string()))?;
    let doc = graphql_parser::parse_query::<&str>(&body.query)
        .map_err(|e| Unreadable::Parse(e.to_string()))?;
    let ops: Vec<(Option<&str>, Option<Operation>)> = doc
        .definitions
        .iter()
        .filter_map(|d| match d {
            Definition::Operation(op) => Some(op),
            Definition::Fragment(_) => None,
        })
        .map(|op| match op {
            OperationDefinition::SelectionSet(_) => (None, Some(Operation::Query)),
            OperationDefinition::Query(q) => (q.name, Some(Operation::Query)),
            OperationDefinition::Mutation(m) => (m.name, Some(Operation::Mutation)),
            OperationDefinition::Subscription(s) => (s.name, None),
        })
        .collect();
    let chosen = match body.operation_name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => {
            let mut named = ops.iter().filter(|(n, _)| *n == Some(name));
            match (named.next(), named.next()) {
                (Some(op), None) => op,
                (None, _) => return Err(Unreadable::NoSuchName(name.to_string())),
                (Some(_), Some(_)) => return Err(Unreadable::NameTwice(name.to_string())),
            }
        }
        None => match ops.as_slice() {
            [one] => one,
            [] => return Err(Unreadable::NoOperation),
            _ => return Err(Unreadable::Ambiguous),
        },
    };
    chosen.1.ok_or(Unreadable::Subscription)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(query: &str, name: Option<&str>) -> Result<Operation, Unreadable> {
        let body = serde_json::json!({ "query": query, "operationName": name });
        operation(body.to_string().as_bytes())
    }

    #[test]
    fn reads_and_writes_are_told_apart() {
        assert_eq!(op("{ viewer { login } }", None), Ok(Operation::Query));
        assert_eq!(
            op("query Q { viewer { login } }", None),
            Ok(Operation::Query)
        );
        assert_eq!(
            op(
                r#"mutation { addComment(input: {subjectId: "x", body: "y"}) { clientMutationId } }"#,
                None
            ),
            Ok(Operation::Mutation)
        );
        let both = "query R { viewer { login } } mutation W { x }";
        assert_eq!(op(both, Some("R")), Ok(Operation::Query));
        assert_eq!(op(both, Some("W")), Ok(Operation::Mutation));
        // Fragments are not operations.
        let frag = "fragment F on User { login } query { viewer { ...F } }";
        assert_eq!(op(frag, None), Ok(Operation::Query));
    }

    #[test]
    fn undeterminable_documents_are_refused() {
        use Unreadable::*;
        for (query, name, why) in [
            ("query R { a } mutation W { b }", None, Ambiguous),
            ("query R { a }", Some("W"), NoSuchName("W".into())),
            (
                "query A { a } query A { b }",
                Some("A"),
                NameTwice("A".into()),
            ),
            ("subscription { a }", None, Subscription),
            ("fragment F on User { login }", None, NoOperation),
        ] {
            assert_eq!(op(query, name), Err(why), "{query:?} {name:?}");
        }
        for query in ["mutation { a", ""] {
            assert!(matches!(op(query, None), Err(Parse(_))), "{query:?}");
        }
        for body in [
            &b"[{\"query\": \"{ a }\"}]"[..],
            b"{}",
            b"not json",
            b"{\"query\": 5}",
        ] {
            assert!(
                matches!(operation(body), Err(NotJson(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
