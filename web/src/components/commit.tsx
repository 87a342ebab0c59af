import type { CommitSummary } from "../../../src/http/api-types.js";
import { fullTime, shortSha, timeAgo } from "../lib/format.js";

/** A commit as one line: short SHA (monospace), subject, author and age. */
export function CommitLine({
  sha,
  commit,
  now,
  showAuthor = true,
}: {
  sha: string | null;
  commit: CommitSummary | null | undefined;
  now?: number;
  showAuthor?: boolean;
}) {
  return (
    <span class="commit">
      <code class="sha" title={sha ?? undefined}>
        {shortSha(sha)}
      </code>
      {commit ? (
        <>
          <span class="subject" title={commit.subject}>
            {commit.subject}
          </span>
          {showAuthor && (
            <span class="author muted" title={fullTime(commit.date)}>
              {commit.author} · {timeAgo(commit.date, now)}
            </span>
          )}
        </>
      ) : (
        <span class="subject muted">commit not described</span>
      )}
    </span>
  );
}
