// octokit with @octokit/plugin-throttling, as teams run it, against a
// gatehouse client with a quota: it reads READS different URLs, meets the
// quota's 403, waits for the reset the headers announce and goes on. The
// caller sees no error. Prints what happened as JSON for
// tests/gateway_clients.rs.
//
// Environment: GATEHOUSE_API (http://HOST), GATEHOUSE_TOKEN, OWNER, REPO,
// READS.
import { Octokit } from "@octokit/rest";
import { throttling } from "@octokit/plugin-throttling";

const { GATEHOUSE_API, GATEHOUSE_TOKEN, OWNER: owner, REPO: repo } = process.env;
const reads = Number(process.env.READS);
const waits = [];
const Throttled = Octokit.plugin(throttling);
const octokit = new Throttled({
  baseUrl: GATEHOUSE_API,
  auth: GATEHOUSE_TOKEN,
  throttle: {
    onRateLimit: (retryAfter, options, o, retryCount) => {
      waits.push(retryAfter);
      return retryCount < 3;
    },
    onSecondaryRateLimit: () => false,
  },
});

const started = Date.now();
let ok = 0;
for (let n = 0; n < reads; n++) {
  const { status } = await octokit.request("GET /repos/{owner}/{repo}", { owner, repo, n });
  if (status === 200) ok++;
}
console.log(JSON.stringify({ ok, waits, took_secs: (Date.now() - started) / 1000 }));
