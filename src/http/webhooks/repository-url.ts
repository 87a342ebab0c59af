/**
 * One comparable key per repository, whatever form its URL takes, so a
 * webhook payload's URLs can be matched against the repos of the manifests:
 * `git@host:o/r.git` ≡ `ssh://git@host:22/o/r` ≡ `https://user:pw@Host/o/r/`
 * → `host/o/r`. Scheme, credentials and port are dropped (a forge serves one
 * repository over several of them), and the key is lowercase because GitHub
 * and GitLab treat owner and name case-insensitively. Matching only picks the
 * candidate apps; the signature check decides, so leniency here is safe.
 */
const SCHEME = /^[a-z][a-z0-9+.-]*:\/\//i;
// scp-like: `[user@]host:path`, a colon before any slash.
const SCP_LIKE = /^(?:[^@/]+@)?([^/:]+):(.*)$/;

export function repositoryKey(url: string): string | undefined {
  const text = url.trim();
  if (text === "") return undefined;
  let host: string;
  let path: string;
  if (SCHEME.test(text)) {
    let parsed: URL;
    try {
      parsed = new URL(text);
    } catch {
      return undefined;
    }
    host = parsed.hostname;
    path = parsed.pathname;
  } else {
    const scp = SCP_LIKE.exec(text);
    host = scp ? scp[1]! : "";
    path = scp ? scp[2]! : text;
  }
  const trimmed = path
    .replace(/\/+$/, "")
    .replace(/\.git$/i, "")
    .replace(/\/+$/, "");
  // Local paths (and file:// URLs) keep their leading slash under a prefix no host can produce.
  const key = host === "" ? `file:${trimmed}` : `${host}/${trimmed.replace(/^\/+/, "")}`;
  return key.toLowerCase();
}
