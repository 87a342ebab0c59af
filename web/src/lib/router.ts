import { useEffect, useState } from "preact/hooks";

/**
 * Routing on the URL's fragment (`#/deploys/42`): the server serves one
 * page at `/` and never sees the route, and the sign-in code of
 * `#/login?code=…` never reaches a server or proxy log.
 */
export type Route =
  | { name: "overview"; query: URLSearchParams }
  | { name: "login"; query: URLSearchParams }
  | { name: "environment"; app: string; env: string; query: URLSearchParams }
  | { name: "deploy"; id: string; query: URLSearchParams }
  | { name: "hosts"; query: URLSearchParams }
  | { name: "host"; host: string; query: URLSearchParams }
  | { name: "not-found"; path: string; query: URLSearchParams };

export function parseRoute(hash: string): Route {
  const raw = hash.replace(/^#/, "") || "/";
  const [pathPart, queryPart = ""] = raw.split("?", 2) as [string, string?];
  const query = new URLSearchParams(queryPart);
  const parts = pathPart.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts.length === 0) return { name: "overview", query };
  if (parts[0] === "login" && parts.length === 1) return { name: "login", query };
  if (parts[0] === "apps" && parts.length === 3)
    return { name: "environment", app: parts[1]!, env: parts[2]!, query };
  if (parts[0] === "deploys" && parts.length === 2) return { name: "deploy", id: parts[1]!, query };
  if (parts[0] === "hosts" && parts.length === 1) return { name: "hosts", query };
  if (parts[0] === "hosts" && parts.length === 2) return { name: "host", host: parts[1]!, query };
  return { name: "not-found", path: pathPart, query };
}

export const href = {
  overview: () => "#/",
  login: () => "#/login",
  environment: (app: string, env: string) => `#/apps/${encodeURIComponent(app)}/${encodeURIComponent(env)}`,
  deploy: (id: number | string) => `#/deploys/${encodeURIComponent(String(id))}`,
  hosts: () => "#/hosts",
  host: (name: string) => `#/hosts/${encodeURIComponent(name)}`,
};

export function navigate(to: string, options: { replace?: boolean } = {}): void {
  if (options.replace) {
    history.replaceState(null, "", to);
    window.dispatchEvent(new HashChangeEvent("hashchange"));
  } else {
    location.hash = to;
  }
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const onChange = () => setRoute(parseRoute(location.hash));
    window.addEventListener("hashchange", onChange);
    return () => window.removeEventListener("hashchange", onChange);
  }, []);
  return route;
}
