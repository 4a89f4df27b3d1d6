// octokit's REST client, unchanged but for its base URL and token, against
// gatehouse's API gateway: walks paginated lists, reads a pull request,
// posts a comment and calls GraphQL. Prints what it saw as JSON for
// tests/gateway_clients.rs.
//
// Environment: GATEHOUSE_API (the gateway, http://HOST), GATEHOUSE_TOKEN,
// OWNER, REPO, ISSUE (an issue number to comment on).
import { Octokit } from "@octokit/rest";

const { GATEHOUSE_API, GATEHOUSE_TOKEN, OWNER: owner, REPO: repo } = process.env;
const issue_number = Number(process.env.ISSUE);
const octokit = new Octokit({ baseUrl: GATEHOUSE_API, auth: GATEHOUSE_TOKEN });

const pulls = await octokit.paginate(octokit.rest.pulls.list, {
  owner, repo, state: "all", per_page: 1,
});
const { data: pr } = await octokit.rest.pulls.get({ owner, repo, pull_number: 1 });
const files = await octokit.paginate(octokit.rest.pulls.listFiles, {
  owner, repo, pull_number: 1, per_page: 1,
});
const list = () => octokit.paginate(octokit.rest.issues.listComments, {
  owner, repo, issue_number, per_page: 1,
});
const before = await list();
const { data: posted, status: postedStatus } = await octokit.rest.issues.createComment({
  owner, repo, issue_number, body: "hello from octokit through gatehouse",
});
const after = await list();
const gql = await octokit.graphql(
  `query($o: String!, $n: String!) { repository(owner: $o, name: $n) { name pullRequest(number: 1) { title } } }`,
  { o: owner, n: repo },
);
const { headers } = await octokit.rest.repos.get({ owner, repo });

console.log(JSON.stringify({
  pulls: pulls.map((p) => p.number),
  pull_title: pr.title,
  pull_files: files.map((f) => f.filename),
  comments_before: before.length,
  comments_after: after.length,
  posted_status: postedStatus,
  posted: posted.body,
  posted_url: posted.url,
  graphql_title: gql.repository.pullRequest.title,
  cache: headers["x-gatehouse-cache"],
  rate_remaining: Number(headers["x-ratelimit-remaining"]),
}));
