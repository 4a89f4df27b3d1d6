//! Which label values the Actions metrics may carry, so that their number
//! stays bounded whatever GitHub sends: repositories by allow and deny
//! lists and a cap, branches by a list; the rest share `other`.

use crate::config::ActionsMetricsConfig;
use crate::sinks::routes::glob_match;

pub const OTHER: &str = "other";

#[derive(Debug, Clone)]
pub struct Policy {
    allow: Vec<String>,
    deny: Vec<String>,
    branches: Vec<String>,
    pub max_repositories: usize,
    pub max_workflows: usize,
    pub max_job_names: usize,
    pub max_runner_label_sets: usize,
}

impl Policy {
    pub fn new(c: &ActionsMetricsConfig) -> Policy {
        Policy {
            allow: c.allow_repositories.clone(),
            deny: c.deny_repositories.clone(),
            branches: c.head_branches.clone(),
            max_repositories: c.max_repositories,
            max_workflows: c.max_workflows,
            max_job_names: c.max_job_names,
            max_runner_label_sets: c.max_runner_label_sets,
        }
    }

    /// None: the repository is denied and left out of the metrics. A
    /// repository outside a non-empty allow list is counted as `other`.
    pub fn repository<'a>(&self, full_name: &'a str) -> Option<&'a str> {
        if self.deny.iter().any(|g| glob_match(g, full_name)) {
            return None;
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|g| glob_match(g, full_name)) {
            return Some(OTHER);
        }
        Some(full_name)
    }

    pub fn branch<'a>(&self, branch: &'a str) -> &'a str {
        if self.branches.iter().any(|g| glob_match(g, branch)) {
            branch
        } else {
            OTHER
        }
    }
}

/// The short repository name of a full one (`octo-org/widgets` → `widgets`).
pub fn short_name(full_name: &str) -> &str {
    full_name.rsplit_once('/').map_or(full_name, |(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], deny: &[&str], branches: &[&str]) -> Policy {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
        Policy::new(&ActionsMetricsConfig {
            allow_repositories: s(allow),
            deny_repositories: s(deny),
            head_branches: s(branches),
            ..ActionsMetricsConfig::default()
        })
    }

    #[test]
    fn deny_wins_then_allow_folds_the_rest_into_other() {
        let p = policy(&["octo-org/*"], &["octo-org/secret*"], &[]);
        assert_eq!(p.repository("octo-org/widgets"), Some("octo-org/widgets"));
        assert_eq!(p.repository("octo-org/secret-stuff"), None);
        assert_eq!(p.repository("elsewhere/thing"), Some(OTHER));
        let open = policy(&[], &[], &[]);
        assert_eq!(open.repository("a/b"), Some("a/b"));
    }

    #[test]
    fn branches_outside_the_list_are_other() {
        let p = policy(&[], &[], &["main", "release/*"]);
        assert_eq!(p.branch("main"), "main");
        assert_eq!(p.branch("release/1.2"), "release/1.2");
        assert_eq!(p.branch("renovate/got-13.x"), OTHER);
        assert_eq!(short_name("octo-org/widgets"), "widgets");
        assert_eq!(short_name(OTHER), OTHER);
    }
}
