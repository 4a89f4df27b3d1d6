//! GraphQL introspection for the types fakehub serves: `__schema` and
//! `__type(name:)`, as GitHub answers them (code generators and clients
//! such as octokit's plugins ask). The schema is this table; the types
//! and fields are the ones `graphql.rs` resolves.

/// A type's fields: (name, type reference). A reference is a GraphQL
/// type: `String`, `Int!`, `[PullRequest]`, `PullRequestConnection!`.
pub type Fields = &'static [(&'static str, &'static str)];

/// (type, kind, fields).
pub const TYPES: &[(&str, &str, Fields)] = &[
    (
        "Query",
        "OBJECT",
        &[
            ("viewer", "User!"),
            ("repository", "Repository"),
            ("rateLimit", "RateLimit"),
        ],
    ),
    (
        "RateLimit",
        "OBJECT",
        &[
            ("limit", "Int!"),
            ("cost", "Int!"),
            ("remaining", "Int!"),
            ("used", "Int!"),
            ("resetAt", "DateTime!"),
            ("nodeCount", "Int!"),
        ],
    ),
    (
        "User",
        "OBJECT",
        &[
            ("login", "String!"),
            ("name", "String"),
            ("id", "ID!"),
            ("databaseId", "Int"),
            ("url", "URI!"),
        ],
    ),
    (
        "Repository",
        "OBJECT",
        &[
            ("name", "String!"),
            ("nameWithOwner", "String!"),
            ("description", "String"),
            ("url", "URI!"),
            ("isPrivate", "Boolean!"),
            ("stargazerCount", "Int!"),
            ("forkCount", "Int!"),
            ("createdAt", "DateTime!"),
            ("updatedAt", "DateTime!"),
            ("id", "ID!"),
            ("databaseId", "Int"),
            ("owner", "User!"),
            ("defaultBranchRef", "Ref"),
            ("pullRequest", "PullRequest"),
            ("issue", "Issue"),
            ("pullRequests", "PullRequestConnection!"),
            ("issues", "IssueConnection!"),
        ],
    ),
    (
        "PullRequest",
        "OBJECT",
        &[
            ("number", "Int!"),
            ("title", "String!"),
            ("body", "String!"),
            ("state", "PullRequestState!"),
            ("url", "URI!"),
            ("createdAt", "DateTime!"),
            ("updatedAt", "DateTime!"),
            ("headRefName", "String!"),
            ("baseRefName", "String!"),
            ("headRefOid", "GitObjectID!"),
            ("merged", "Boolean!"),
            ("isDraft", "Boolean!"),
            ("additions", "Int!"),
            ("deletions", "Int!"),
            ("changedFiles", "Int!"),
            ("id", "ID!"),
            ("databaseId", "Int"),
            ("author", "User"),
        ],
    ),
    (
        "Issue",
        "OBJECT",
        &[
            ("number", "Int!"),
            ("title", "String!"),
            ("body", "String!"),
            ("state", "IssueState!"),
            ("url", "URI!"),
            ("createdAt", "DateTime!"),
            ("updatedAt", "DateTime!"),
            ("id", "ID!"),
            ("databaseId", "Int"),
            ("author", "User"),
            ("comments", "IssueCommentConnection!"),
        ],
    ),
    (
        "IssueComment",
        "OBJECT",
        &[
            ("body", "String!"),
            ("createdAt", "DateTime!"),
            ("url", "URI!"),
            ("id", "ID!"),
            ("databaseId", "Int"),
            ("author", "User"),
        ],
    ),
    (
        "Ref",
        "OBJECT",
        &[("name", "String!"), ("prefix", "String!")],
    ),
    (
        "PullRequestConnection",
        "OBJECT",
        &[
            ("totalCount", "Int!"),
            ("nodes", "[PullRequest]"),
            ("pageInfo", "PageInfo!"),
        ],
    ),
    (
        "IssueConnection",
        "OBJECT",
        &[
            ("totalCount", "Int!"),
            ("nodes", "[Issue]"),
            ("pageInfo", "PageInfo!"),
        ],
    ),
    (
        "IssueCommentConnection",
        "OBJECT",
        &[
            ("totalCount", "Int!"),
            ("nodes", "[IssueComment]"),
            ("pageInfo", "PageInfo!"),
        ],
    ),
    (
        "PageInfo",
        "OBJECT",
        &[
            ("hasNextPage", "Boolean!"),
            ("hasPreviousPage", "Boolean!"),
            ("endCursor", "String"),
            ("startCursor", "String"),
        ],
    ),
    ("PullRequestState", "ENUM", &[]),
    ("IssueState", "ENUM", &[]),
    ("String", "SCALAR", &[]),
    ("Int", "SCALAR", &[]),
    ("Boolean", "SCALAR", &[]),
    ("ID", "SCALAR", &[]),
    ("DateTime", "SCALAR", &[]),
    ("URI", "SCALAR", &[]),
    ("GitObjectID", "SCALAR", &[]),
];

/// The values of the enums above.
pub fn enum_values(name: &str) -> &'static [&'static str] {
    match name {
        "PullRequestState" => &["OPEN", "CLOSED", "MERGED"],
        "IssueState" => &["OPEN", "CLOSED"],
        _ => &[],
    }
}

/// A named type's kind and fields.
pub fn named(name: &str) -> Option<(&'static str, Fields)> {
    TYPES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, kind, fields)| (*kind, *fields))
}

/// A type reference taken apart: `Int!` is NON_NULL of `Int`, `[X]` is
/// LIST of `X`; a bare name is itself.
pub enum Ref<'r> {
    NonNull(&'r str),
    List(&'r str),
    Named(&'r str),
}

pub fn parse(r: &str) -> Ref<'_> {
    if let Some(inner) = r.strip_suffix('!') {
        Ref::NonNull(inner)
    } else if let Some(inner) = r.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        Ref::List(inner)
    } else {
        Ref::Named(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_type_is_a_type_of_the_schema() {
        for (_, _, fields) in TYPES {
            for (_, t) in *fields {
                let mut r = *t;
                loop {
                    match parse(r) {
                        Ref::NonNull(i) | Ref::List(i) => r = i,
                        Ref::Named(n) => {
                            assert!(named(n).is_some(), "{n} is not in the schema");
                            break;
                        }
                    }
                }
            }
        }
    }
}
