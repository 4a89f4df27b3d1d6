"""PyGithub with its default retry (GithubRetry), against a gatehouse client
with a quota: it reads READS different URLs, meets the quota's 403, waits
for the reset the headers announce and goes on. The caller sees no error.
Prints what happened as JSON for tests/gateway_clients.rs.

Environment: GATEHOUSE_API (GHES style: http://HOST/api/v3), GATEHOUSE_TOKEN,
OWNER, REPO, READS."""

import json
import logging
import os
import time

from github import Auth, Github


class Waits(logging.Handler):
    """Counts the rate-limit backoffs GithubRetry logs."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "rate limit error" in record.getMessage():
            self.seen += 1


def main() -> None:
    waits = Waits()
    log = logging.getLogger("github.GithubRetry")
    log.setLevel(logging.DEBUG)
    log.addHandler(waits)
    gh = Github(
        base_url=os.environ["GATEHOUSE_API"],
        auth=Auth.Token(os.environ["GATEHOUSE_TOKEN"]),
        seconds_between_requests=0,
        seconds_between_writes=0,
    )
    path = f"/repos/{os.environ['OWNER']}/{os.environ['REPO']}"
    started = time.time()
    ok = 0
    for n in range(int(os.environ["READS"])):
        _, data = gh.requester.requestJsonAndCheck("GET", path, parameters={"n": n})
        ok += data["name"] == os.environ["REPO"]
    print(json.dumps({"ok": ok, "waits": waits.seen, "took_secs": time.time() - started}))


if __name__ == "__main__":
    main()
