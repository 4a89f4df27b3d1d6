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
pub fn operation(body: &[u8]) -> Result<Operation, String> {
    let body: Body = serde_json::from_slice(body)
        .map_err(|e| format!("a GraphQL request is a JSON object with a \"query\" string ({e})"))?;
    let doc = graphql_parser::parse_query::<&str>(&body.query)
        .map_err(|e| format!("the GraphQL document does not parse: {e}"))?;
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
                (None, _) => return Err(format!("no operation named {name:?} in the document")),
                (Some(_), Some(_)) => {
                    return Err(format!("two operations are named {name:?}"));
                }
            }
        }
        None => match ops.as_slice() {
            [one] => one,
            [] => return Err("the document has no operation".into()),
            _ => {
                return Err(
                    "the document has several operations and no operationName picks one".into(),
                );
            }
        },
    };
    chosen
        .1
        .ok_or_else(|| "GitHub's GraphQL API has no subscriptions".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(query: &str, name: Option<&str>) -> Result<Operation, String> {
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
        for (query, name) in [
            ("query R { a } mutation W { b }", None),
            ("query R { a }", Some("W")),
            ("query A { a } query A { b }", Some("A")),
            ("subscription { a }", None),
            ("mutation { a", None),
            ("fragment F on User { login }", None),
            ("", None),
        ] {
            assert!(op(query, name).is_err(), "{query:?} {name:?}");
        }
        for body in [
            &b"[{\"query\": \"{ a }\"}]"[..],
            b"{}",
            b"not json",
            b"{\"query\": 5}",
        ] {
            assert!(
                operation(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
