import type { Command } from "commander";
import type { GcAmount, GcReport } from "../../domain/retention.js";
import { clientFor, printJson, println } from "../context.js";
import type { Kit } from "../program.js";
import { joinLines, type TerminalText, t, table } from "../terminal-text.js";

export function registerGcCommand(program: Command, { ctx, action, globals }: Kit): void {
  program
    .command("gc")
    .description("remove artifacts, blobs and deploy logs that retention no longer keeps (admin)")
    .option("--dry-run", "only show what would be removed")
    .action(
      action(async (flags: { dryRun?: boolean }, command: Command) => {
        const options = globals(command);
        const response = await clientFor(ctx, options).post<{ gc: GcReport }>("/api/v1/gc", {
          dryRun: flags.dryRun === true,
        });
        if (options.json) printJson(ctx, response.text);
        else println(ctx.stdout, gcText(response.body.gc));
        return 0;
      }),
    );
}

/** The report as a table by kind, then what stays. */
export function gcText(report: GcReport): TerminalText {
  const { removed, kept } = report;
  const row = (kind: string, amount: GcAmount, unit = "") => [
    kind,
    String(amount.count),
    `${size(amount.bytes)}${unit}`,
  ];
  const lines: TerminalText[] = [
    report.dryRun ? t`would remove (dry run, nothing was removed):` : t`removed:`,
    table(
      ["KIND", "COUNT", "BYTES"],
      [
        row("artifacts", removed.artifacts),
        row("blobs", removed.blobs),
        row("packs", removed.packs),
        row("packs rewritten", removed.repacked, " freed"),
        row("temp files", removed.temp),
        row("deploy logs", removed.logs),
        ...(removed.shared ? [row("shared blobs", removed.shared)] : []),
      ],
    ),
    t`kept: ${kept.artifacts} artifact(s), ${size(kept.bytes)} of blobs and packs`,
  ];
  if (kept.sharedBytes !== undefined) {
    lines.push(
      kept.sharedSkipped
        ? t`shared store: another server is collecting it; this server collected its cache only`
        : t`shared store: ${size(kept.sharedBytes)} kept`,
    );
  }
  if (kept.missing.length > 0) {
    lines.push(
      t`missing: ${kept.missing.length} kept artifact(s) are not in this server's store: ${kept.missing
        .map((d) => d.slice(0, 12))
        .join(", ")}`,
    );
  }
  return joinLines(lines);
}

/** `0 B`, `812 B`, `4.2 KB`, `17.0 MB`, `1.3 GB`. */
function size(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}
