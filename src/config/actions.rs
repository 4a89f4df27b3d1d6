//! The `[actions_metrics]` section: the GitHub Actions metrics sink.

use serde::Deserialize;

/// The Actions sink's name in jobs, partitions and metrics; a route may
/// not take it.
pub const ACTIONS_SINK: &str = "actions-metrics";

/// The built-in `actions-metrics` sink: GitHub Actions metrics derived from
/// `workflow_run` and `workflow_job` deliveries.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActionsMetricsConfig {
    pub enabled: bool,
    /// A job or run unfinished for longer than this stops counting as
    /// queued or in progress and is counted as stale instead (its final
    /// delivery was probably lost).
    pub stale_after_secs: u64,
    /// Repository globs (`octo-org/*`) that get their own label; others
    /// are counted as `other`. Empty = every repository.
    pub allow_repositories: Vec<String>,
    /// Repository globs left out of the metrics altogether.
    pub deny_repositories: Vec<String>,
    /// At most this many repositories get their own label (the longest
    /// known first); the rest are counted as `other`.
    pub max_repositories: usize,
    /// Per repository, at most this many workflow names keep theirs; a
    /// pull request can add a workflow with any name.
    pub max_workflows: usize,
    /// Per workflow, at most this many job names keep theirs (names come
    /// from expressions: `build ${{ github.sha }}` makes one per commit).
    pub max_job_names: usize,
    /// Per workflow, at most this many runner label sets (`runs-on`) keep
    /// theirs.
    pub max_runner_label_sets: usize,
    /// Branch globs that keep their name in `head_branch`; other branches
    /// (pull request branches, say) are counted as `other`.
    pub head_branches: Vec<String>,
}

impl Default for ActionsMetricsConfig {
    fn default() -> Self {
        ActionsMetricsConfig {
            enabled: true,
            stale_after_secs: 24 * 3600,
            allow_repositories: Vec::new(),
            deny_repositories: Vec::new(),
            max_repositories: 200,
            max_workflows: 50,
            max_job_names: 100,
            max_runner_label_sets: 20,
            head_branches: vec!["main".into(), "master".into()],
        }
    }
}
