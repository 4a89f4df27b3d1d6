"""PyGithub, unchanged but for its base URL and token, against gatehouse's
API gateway: walks paginated lists, reads a pull request, posts a comment
and calls GraphQL. Prints what it saw as JSON for tests/gateway_clients.rs.

Environment: GATEHOUSE_API (the gateway, GHES style: http://HOST/api/v3),
GATEHOUSE_TOKEN, OWNER, REPO, ISSUE (an issue number to comment on)."""

import json
import os

from github import Auth, Github


def main() -> None:
    owner, name = os.environ["OWNER"], os.environ["REPO"]
    issue_number = int(os.environ["ISSUE"])
    # per_page=1 makes every list paginate; no client-side throttling so the
    # test stays quick (gatehouse paces GitHub itself).
    gh = Github(
        base_url=os.environ["GATEHOUSE_API"],
        auth=Auth.Token(os.environ["GATEHOUSE_TOKEN"]),
        per_page=1,
        seconds_between_requests=0,
        seconds_between_writes=0,
        retry=None,
    )
    repo = gh.get_repo(f"{owner}/{name}")
    pulls = [p.number for p in repo.get_pulls(state="all")]
    pr = repo.get_pull(1)
    files = [f.filename for f in pr.get_files()]
    issue = repo.get_issue(issue_number)
    before = [c.body for c in issue.get_comments()]
    posted = issue.create_comment("hello from PyGithub through gatehouse")
    after = [c.body for c in issue.get_comments()]
    _, data = gh.requester.graphql_query(
        "query($o: String!, $n: String!) { repository(owner: $o, name: $n) "
        "{ name pullRequest(number: 1) { title } } }",
        {"o": owner, "n": name},
    )
    print(
        json.dumps(
            {
                "repo": repo.full_name,
                "pulls": pulls,
                "pull_title": pr.title,
                "pull_files": files,
                "comments_before": len(before),
                "comments_after": len(after),
                "posted": posted.body,
                "posted_url": posted.url,
                "graphql_title": data["data"]["repository"]["pullRequest"]["title"],
                "rate_remaining": gh.rate_limiting[0],
            }
        )
    )


if __name__ == "__main__":
    main()
