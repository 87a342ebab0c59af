import type { ComponentChildren } from "preact";
import { useState } from "preact/hooks";
import { api } from "../api/client.js";
import { useShortcut } from "../lib/hooks.js";
import { useMe } from "../lib/me.js";
import { href, navigate, type Route } from "../lib/router.js";
import { ConnectionBanner } from "./banner.js";
import { Dialog } from "./dialog.js";

const SHORTCUTS: [string, string][] = [
  ["/", "search (overview, hosts) or search the log (deploy page)"],
  ["g then o", "go to the overview"],
  ["g then h", "go to the hosts"],
  ["e", "deploy page: go to its environment"],
  ["f", "deploy page: follow the log / pause"],
  ["End", "log: jump to the end and follow"],
  ["Enter / Shift+Enter", "in a search box: next / previous match"],
  ["Escape", "close a dialog, clear a search"],
  ["?", "this list"],
];

export function Layout({
  route,
  children,
  onSignOut,
}: {
  route: Route;
  children: ComponentChildren;
  onSignOut: (reason: string | null) => void;
}) {
  const me = useMe();
  const [help, setHelp] = useState(false);
  const [pendingG, setPendingG] = useState(false);

  useShortcut(["?"], () => setHelp(true));
  useShortcut(["g", "o", "h"], (event) => {
    if (event.key === "g") {
      setPendingG(true);
      setTimeout(() => setPendingG(false), 1200);
      return;
    }
    if (!pendingG) return;
    setPendingG(false);
    navigate(event.key === "o" ? href.overview() : href.hosts());
  });

  const signOut = async () => {
    // A browser sign-in's token is revoked; a pasted token is only forgotten here.
    if (me.session) await api("DELETE", "/api/v1/me/session").catch(() => undefined);
    onSignOut(null);
  };

  const section = route.name === "hosts" || route.name === "host" ? "hosts" : "overview";
  return (
    <div class="shell">
      <a class="skip-link" href="#main">
        Skip to content
      </a>
      <header class="topbar">
        <a class="brand" href={href.overview()} aria-label="Turnout overview">
          <svg viewBox="0 0 32 32" width="20" height="20" aria-hidden="true">
            <rect width="32" height="32" rx="7" class="brand-bg" />
            <path d="M7 24 L16 15 L16 7 M16 15 L25 24" class="brand-fg" />
          </svg>
          <span>Turnout</span>
        </a>
        <nav class="nav" aria-label="Sections">
          <a href={href.overview()} aria-current={section === "overview" ? "page" : undefined}>
            Overview
          </a>
          <a href={href.hosts()} aria-current={section === "hosts" ? "page" : undefined}>
            Hosts
          </a>
        </nav>
        <span class="spacer" />
        <span class="who" title={me.apps ? `limited to: ${me.apps.join(", ")}` : "every app"}>
          <span class="who-name">{me.name}</span>
          <span class={`role role-${me.role}`}>{me.role}</span>
          {me.apps && (
            <span class="muted who-apps">{me.apps.length === 1 ? me.apps[0] : `${me.apps.length} apps`}</span>
          )}
        </span>
        <button
          type="button"
          class="small ghost"
          onClick={() => setHelp(true)}
          aria-label="Keyboard shortcuts"
        >
          ?
        </button>
        <button type="button" class="small" onClick={signOut}>
          Sign out
        </button>
      </header>
      <ConnectionBanner />
      <main id="main" tabIndex={-1}>
        {children}
      </main>
      {help && (
        <Dialog title="Keyboard shortcuts" onClose={() => setHelp(false)}>
          <table class="shortcuts">
            <tbody>
              {SHORTCUTS.map(([key, what]) => (
                <tr key={key}>
                  <th>
                    <kbd>{key}</kbd>
                  </th>
                  <td>{what}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </Dialog>
      )}
    </div>
  );
}
