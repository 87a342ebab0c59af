import { spawn } from "node:child_process";
import type { Command } from "commander";
import { clientFor, printJson, println } from "../context.js";
import type { Kit } from "../program.js";
import { t } from "../terminal-text.js";

/**
 * `turnout ui`: signs a browser in to the dashboard without copying a
 * token. The server's own machine has its admin token in the data
 * directory (as every local command does); with it this asks the server
 * for a one-time code (60 s, single use) and prints — and opens, where
 * there is a desktop — a link whose fragment carries the code. The page
 * exchanges it for a token of its own that expires after 12 hours.
 */
export function registerUiCommand(program: Command, { ctx, action, globals }: Kit): void {
  program
    .command("ui")
    .description("open the web dashboard, signed in (a one-time link, valid 60 s; needs an admin token)")
    .option("--no-open", "only print the link, do not start a browser")
    .action(
      action(async (flags: { open: boolean }, command: Command) => {
        const options = globals(command);
        const client = clientFor(ctx, options);
        const response = await client.post<{ code: string; expiresAt: string }>("/api/v1/login-codes");
        // The fragment (#…) never leaves the browser: the code reaches no server or proxy log.
        const link = `${client.server}/#/login?code=${response.body.code}`;
        if (options.json) {
          printJson(ctx, JSON.stringify({ ...response.body, url: link }));
          return 0;
        }
        println(ctx.stdout, t`Open this link to sign in (it works once, within 60 seconds):`);
        println(ctx.stdout, t`  ${link}`);
        if (flags.open && openBrowser(link, ctx.env)) println(ctx.stdout, t`(opening it in your browser)`);
        return 0;
      }),
    );
}

/** Starts the desktop's browser on `url` (argv, no shell); false when there is no desktop to ask. */
function openBrowser(url: string, env: Record<string, string | undefined>): boolean {
  const opener =
    process.platform === "darwin"
      ? "open"
      : process.platform === "win32"
        ? undefined
        : env["DISPLAY"] || env["WAYLAND_DISPLAY"]
          ? "xdg-open"
          : undefined;
  if (!opener) return false;
  try {
    const child = spawn(opener, [url], { detached: true, stdio: "ignore" });
    child.on("error", () => undefined);
    child.unref();
    return true;
  } catch {
    return false;
  }
}
