//! GitHub's webhook event names. Metrics labels and the admin UI's
//! roll-ups use only these (anything else is `other`), so no sender, not
//! even one holding the secret, can grow a label set by inventing event
//! names; the journal keeps the header as sent.

/// Every event GitHub documents for webhooks, sorted.
pub const KNOWN: &[&str] = &[
    "branch_protection_configuration",
    "branch_protection_rule",
    "check_run",
    "check_suite",
    "code_scanning_alert",
    "commit_comment",
    "create",
    "custom_property",
    "custom_property_values",
    "delete",
    "dependabot_alert",
    "deploy_key",
    "deployment",
    "deployment_protection_rule",
    "deployment_review",
    "deployment_status",
    "discussion",
    "discussion_comment",
    "fork",
    "github_app_authorization",
    "gollum",
    "installation",
    "installation_repositories",
    "installation_target",
    "issue_comment",
    "issue_dependencies",
    "issues",
    "label",
    "marketplace_purchase",
    "member",
    "membership",
    "merge_group",
    "meta",
    "milestone",
    "org_block",
    "organization",
    "package",
    "page_build",
    "personal_access_token_request",
    "ping",
    "project",
    "project_card",
    "project_column",
    "projects_v2",
    "projects_v2_item",
    "projects_v2_status_update",
    "public",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "pull_request_review_thread",
    "push",
    "registry_package",
    "release",
    "repository",
    "repository_advisory",
    "repository_dispatch",
    "repository_import",
    "repository_ruleset",
    "repository_vulnerability_alert",
    "secret_scanning_alert",
    "secret_scanning_alert_location",
    "secret_scanning_scan",
    "security_advisory",
    "security_and_analysis",
    "sponsorship",
    "star",
    "status",
    "sub_issues",
    "team",
    "team_add",
    "watch",
    "workflow_dispatch",
    "workflow_job",
    "workflow_run",
];

/// The label for an event name: the name when GitHub knows it, else
/// `other`; `-` when there was none.
pub fn label(event: Option<&str>) -> &'static str {
    match event.map(|e| KNOWN.binary_search(&e)) {
        Some(Ok(i)) => KNOWN[i],
        Some(Err(_)) => "other",
        None => "-",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_names_are_labels() {
        assert!(KNOWN.windows(2).all(|w| w[0] < w[1]), "sorted, no repeats");
        assert_eq!(label(Some("push")), "push");
        assert_eq!(label(Some("workflow_job")), "workflow_job");
        assert_eq!(label(Some("made_up_123")), "other");
        assert_eq!(label(Some("Push")), "other");
        assert_eq!(label(None), "-");
    }
}
