//! Which deliveries a route wants: by event, action and repository glob.

use crate::config::RouteConfig;
use crate::journal::DeliveryMeta;

/// `*` matches any run of characters (including `/`); matching is
/// case-insensitive, as GitHub's logins and repository names are.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (
        pattern.to_lowercase().chars().collect(),
        text.to_lowercase().chars().collect(),
    );
    // Classic two-pointer wildcard match with backtracking to the last '*'.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < t.len() {
        if i < p.len() && p[i] == t[j] {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

pub fn matches(route: &RouteConfig, meta: &DeliveryMeta) -> bool {
    let event_ok = route.events.is_empty() || route.events.iter().any(|e| e == &meta.event);
    let action_ok = route.actions.is_empty()
        || meta
            .action
            .as_ref()
            .is_some_and(|a| route.actions.iter().any(|x| x == a));
    let repo_ok = route.repositories.is_empty()
        || meta
            .repository
            .as_ref()
            .is_some_and(|r| route.repositories.iter().any(|g| glob_match(g, r)));
    event_ok && action_ok && repo_ok
}

/// The names of the routes a delivery becomes a job for.
pub fn sinks_for(routes: &[RouteConfig], meta: &DeliveryMeta) -> Vec<String> {
    routes
        .iter()
        .filter(|r| matches(r, meta))
        .map(|r| r.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("octo-org/*", "Octo-Org/widgets"));
        assert!(glob_match("*/widgets", "octo-org/widgets"));
        assert!(glob_match("*", "a/b"));
        assert!(glob_match("a*c*e", "abcde"));
        assert!(!glob_match("octo-org/*", "other/widgets"));
        assert!(!glob_match("a*c", "abcd"));
    }
}
