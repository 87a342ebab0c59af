import { randomUUID } from "node:crypto";
import { hmacSha256Header } from "../../src/http/webhooks/signatures.js";

/** Sending webhooks the way GitHub, GitLab and a generic sender do, against a real server. */
export interface HookResponse {
  status: number;
  body: any;
  text: string;
}

export async function post(
  url: string,
  body: string | Buffer,
  headers: Record<string, string>,
): Promise<HookResponse> {
  const response = await fetch(url, { method: "POST", headers, body });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: response.status, body: parsed, text };
}

export function githubPushPayload(repository: Record<string, string>): string {
  return JSON.stringify({
    ref: "refs/heads/main",
    before: "0".repeat(40),
    after: "a".repeat(40),
    repository,
    pusher: { name: "octocat" },
  });
}

export function gitlabPushPayload(project: Record<string, string>): string {
  return JSON.stringify({
    object_kind: "push",
    ref: "refs/heads/main",
    after: "b".repeat(40),
    project,
  });
}

export interface GithubHook {
  secret?: string;
  event?: string;
  delivery?: string;
  contentType?: "json" | "form";
  /** Overrides the computed signature header (undefined: none sent). */
  signature?: string | undefined;
}

/** A GitHub delivery: the signature covers the exact bytes sent, form-encoded or not. */
export function githubRequest(
  payload: string,
  hook: GithubHook,
): { body: string; headers: Record<string, string>; delivery: string } {
  const delivery = hook.delivery ?? randomUUID();
  const form = hook.contentType === "form";
  const body = form ? `payload=${encodeURIComponent(payload)}` : payload;
  const headers: Record<string, string> = {
    "content-type": form ? "application/x-www-form-urlencoded" : "application/json",
    "x-github-event": hook.event ?? "push",
    "x-github-delivery": delivery,
    "user-agent": "GitHub-Hookshot/test",
  };
  const signature =
    "signature" in hook ? hook.signature : hook.secret ? hmacSha256Header(hook.secret, body) : undefined;
  if (signature !== undefined) headers["x-hub-signature-256"] = signature;
  return { body, headers, delivery };
}

export function gitlabHeaders(token: string | undefined, event = "Push Hook", uuid?: string) {
  const headers: Record<string, string> = { "content-type": "application/json", "x-gitlab-event": event };
  if (token !== undefined) headers["x-gitlab-token"] = token;
  if (uuid !== undefined) headers["x-gitlab-event-uuid"] = uuid;
  return headers;
}

export function genericHeaders(secret: string, body: string, delivery: string = randomUUID()) {
  return {
    "content-type": "application/json",
    "x-turnout-signature": hmacSha256Header(secret, body),
    "x-turnout-delivery": delivery,
  };
}

/** A minimal manifest for an app that is only ever poked, never deployed. */
export function hookManifest(repo: string, secretEnv?: string): string {
  return `repo: "${repo}"
poll_interval: 1h
${secretEnv ? `webhook:\n  secret_env: ${secretEnv}\n` : ""}environments:
  production:
    branch: main
    deploy:
      provider: shell
      command: ["true"]
`;
}
