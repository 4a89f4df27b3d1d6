//! What a gateway request is about: the GitHub path it names (without the
//! `/api/v3` prefix GHES clients use), whether it is GraphQL, and the owner
//! whose credentials should serve it.

use http::Uri;

use super::refusal::Refusal;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The API path without prefix or query: `/repos/acme/w/pulls`.
    pub path: String,
    /// The path with its query, as sent upstream.
    pub path_and_query: String,
    pub graphql: bool,
    /// The prefix the client used (`""` or `/api/v3`), for links back.
    pub prefix: &'static str,
    /// The organisation or user the path names, lowercase.
    pub owner: Option<String>,
}

/// The first path segments of GitHub's REST API (api.github.com, GHEC and
/// GHES descriptions). A path starting otherwise is not GitHub's: it gets
/// 404 here and is never sent upstream, where a second `/api/v3` or a
/// prefix GitHub happens to strip would hide its owner from the checks.
const API_ROOTS: &[&str] = &[
    "admin",
    "advisories",
    "agents",
    "app",
    "app-manifests",
    "applications",
    "apps",
    "assignments",
    "authorizations",
    "classrooms",
    "codes_of_conduct",
    "copilot",
    "credentials",
    "emojis",
    "enterprise",
    "enterprise-installation",
    "enterprises",
    "events",
    "feeds",
    "gists",
    "gitignore",
    "hub",
    "installation",
    "issues",
    "licenses",
    "manage",
    "markdown",
    "marketplace_listing",
    "meta",
    "networks",
    "notifications",
    "octocat",
    "organizations",
    "orgs",
    "projects",
    "rate_limit",
    "reactions",
    "repos",
    "repositories",
    "scim",
    "search",
    "setup",
    "teams",
    "user",
    "users",
    "versions",
    "zen",
];

/// What the request is for, or None when the path is not a GitHub API
/// path. `/api/v3` is taken off once, at most; `/api/graphql` is GHES's
/// GraphQL endpoint.
pub fn target(uri: &Uri) -> Option<Target> {
    let raw = uri.path();
    let (prefix, path) = match raw.strip_prefix("/api/v3") {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => ("/api/v3", rest),
        _ => ("", raw),
    };
    let graphql = path == "/graphql" || (prefix.is_empty() && raw == "/api/graphql");
    let path = match (graphql, path) {
        (true, _) => "/graphql".to_string(),
        (false, "" | "/") => "/".to_string(),
        (false, p) => {
            let first = p
                .strip_prefix('/')
                .unwrap_or("")
                .split('/')
                .next()
                .unwrap_or("");
            if !p.starts_with('/') || !API_ROOTS.contains(&first) {
                return None;
            }
            p.to_string()
        }
    };
    let path_and_query = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.clone(),
    };
    let owner = owner_of(&path);
    Some(Target {
        path,
        path_and_query,
        graphql,
        prefix: if raw == "/api/graphql" {
            "/api/v3"
        } else {
            prefix
        },
        owner,
    })
}

/// Refuses paths an HTTP library would rewrite before GitHub sees them:
/// dot segments (`..`, `.`, also percent-encoded) and encoded slashes or
/// backslashes. Scopes and owners are checked on the path as sent, so
/// `/repos/acme/x/../../other/secret` must never reach the upstream URL,
/// where it would become `/repos/other/secret`.
pub fn check_path(path: &str) -> Result<(), Refusal> {
    for seg in path.split('/') {
        let decoded = percent_encoding::percent_decode_str(seg).decode_utf8_lossy();
        let bad = decoded == "."
            || decoded == ".."
            || decoded.contains(['/', '\\'])
            || decoded.chars().any(char::is_control);
        if bad {
            return Err(Refusal::Path {
                segment: seg.to_string(),
            });
        }
    }
    Ok(())
}

/// `/repos/{owner}/{repo}/...`, `/orgs/{org}/...`, `/users/{user}/...`,
/// `/networks/{owner}/{repo}/...`; other paths name no owner.
fn owner_of(path: &str) -> Option<String> {
    let mut seg = path.trim_start_matches('/').split('/');
    let kind = seg.next()?;
    let owner = seg.next().filter(|s| !s.is_empty())?;
    let needs_repo = matches!(kind, "repos" | "networks");
    if !matches!(kind, "repos" | "orgs" | "users" | "networks")
        || (needs_repo && seg.next().is_none_or(str::is_empty))
    {
        return None;
    }
    Some(owner.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Target {
        target(&s.parse().unwrap()).unwrap()
    }

    #[test]
    fn only_github_paths_are_targets_and_the_prefix_comes_off_once() {
        for not_github in [
            "/api/v3/api/v3/repos/victim-org/x",
            "/api/v3/api/graphql",
            "/api/v4/repos/a/b",
            "/_fakehub/stats",
            "/reposx/a/b",
            "/api/v3x/graphql",
            "//repos/a/b",
        ] {
            assert!(
                target(&not_github.parse().unwrap()).is_none(),
                "{not_github}"
            );
        }
        for github in [
            "/",
            "/api/v3/",
            "/user",
            "/repositories/42",
            "/search/code?q=x",
        ] {
            assert!(target(&github.parse().unwrap()).is_some(), "{github}");
        }
    }

    #[test]
    fn dot_segments_and_encoded_slashes_are_refused() {
        for bad in [
            "/repos/acme/x/../../other/secret",
            "/repos/acme/x/%2e%2e/%2E%2E/user",
            "/repos/acme/./x",
            "/repos/acme%2Fx/y",
            "/repos/acme/x%5C..%5Cy",
            "/repos/acme/x/%00",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
        for good in [
            "/repos/acme/x.y/pulls",
            "/user",
            "/",
            "/repos/a/b/contents/dir/file..txt",
        ] {
            assert!(check_path(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn owners_come_from_the_path() {
        assert_eq!(
            t("/repos/Acme/w/pulls?page=2").owner.as_deref(),
            Some("acme")
        );
        assert_eq!(t("/api/v3/orgs/acme/repos").owner.as_deref(), Some("acme"));
        assert_eq!(t("/users/octocat").owner.as_deref(), Some("octocat"));
        assert_eq!(
            t("/repos/acme").owner,
            None,
            "a repository path needs a repo"
        );
        assert_eq!(t("/user/repos").owner, None);
        assert_eq!(t("/search/issues?q=repo:acme/w").owner, None);
    }

    #[test]
    fn prefixes_and_graphql() {
        let a = t("/api/v3/repos/acme/w?per_page=2");
        assert_eq!(a.prefix, "/api/v3");
        assert_eq!(a.path, "/repos/acme/w");
        assert_eq!(a.path_and_query, "/repos/acme/w?per_page=2");
        assert!(t("/graphql").graphql);
        let g = t("/api/graphql");
        assert!(g.graphql && g.path == "/graphql" && g.prefix == "/api/v3");
        assert_eq!(t("/api/v3").path, "/");
    }
}
