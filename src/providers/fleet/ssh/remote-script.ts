import { createHash } from "node:crypto";
import { TurnoutError } from "../../../domain/errors.js";
import { REMOTE_COMMANDS } from "./remote-commands.js";
import { REMOTE_COMMON } from "./remote-common.js";
import { REMOTE_LISTINGS } from "./remote-listings.js";
import { REMOTE_POINTERS } from "./remote-pointers.js";
import { REMOTE_STAGETARS } from "./remote-stagetars.js";
import { REMOTE_STAGING } from "./remote-staging.js";
import { sh } from "./sh-source.js";

/**
 * The one program Turnout runs on an SSH host. ssh hands the remote command
 * to the login shell as a string, so that string is this constant script plus
 * arguments that matched a plain pattern (and are single-quoted anyway):
 *
 *   sh -c '<REMOTE_SCRIPT>' turnout-host <op> '<arg>'…
 *
 * Everything else (manifest entries, blob lists, argv and env of commands,
 * URLs) is data on stdin, read line by line with `IFS= read -r` and never
 * parsed as code. Text that may hold anything (argv elements, env values,
 * symlink targets) travels base64-encoded and reaches commands only as quoted
 * expansions: commands run as `exec timeout … "$@"`, never through `eval`.
 *
 * stdout carries the protocol (after a `turnout-host:begin` line, `ok …` last
 * on success), stderr the log.
 * Exit codes: see EXIT_*. The script checks every name, id and path again.
 *
 * Written for POSIX sh (dash) with GNU coreutils (`mv -T`, `ln -T`, `cp -l`,
 * `timeout`, `base64`, `sha256sum`, `sort`, `comm`, `dd`), GNU find (`-printf`)
 * and xargs (`-d`),
 * grep, sed, gzip and GNU tar (hard-link entries to files already on disk,
 * through symlinked directories); `flock` is used when
 * present. The SSH user's login shell must be a POSIX shell. Character classes
 * are spelled out so that no locale can widen them.
 */
const DISPATCH = sh`
trap "exit 129" HUP
trap "exit 130" INT
trap "exit 141" PIPE
trap "exit 143" TERM
[ "$#" -ge 1 ] || refuse "no operation"
# Whatever a login script printed before this line is not the answer.
echo "turnout-host:begin"
_op=$1; shift
case $_op in
  hello) [ "$#" -eq 0 ] || refuse "usage"; op_hello;;
  bases) [ "$#" -eq 3 ] || refuse "usage"; op_bases "$@";;
  missing) [ "$#" -eq 5 ] || refuse "usage"; op_missing "$@";;
  receive) [ "$#" -eq 2 ] || refuse "usage"; op_receive "$@";;
  stage) [ "$#" -eq 7 ] || refuse "usage"; op_stage "$@";;
  switch) [ "$#" -eq 6 ] || refuse "usage"; op_switch "$@";;
  promote) [ "$#" -eq 5 ] || refuse "usage"; op_promote "$@";;
  run) [ "$#" -eq 6 ] || refuse "usage"; op_run "$@";;
  http) [ "$#" -eq 1 ] || refuse "usage"; op_http "$@";;
  prune) [ "$#" -eq 4 ] || refuse "usage"; op_prune "$@";;
  inventory) [ "$#" -eq 1 ] || refuse "usage"; op_inventory "$@";;
  cancel) [ "$#" -eq 2 ] || refuse "usage"; op_cancel "$@";;
  *) refuse "unknown operation";;
esac
`;

/** Comments and indentation stay in the source: every connection carries the script. */
export const REMOTE_SCRIPT: string = [
  REMOTE_COMMON,
  REMOTE_LISTINGS,
  REMOTE_STAGETARS,
  REMOTE_STAGING,
  REMOTE_POINTERS,
  REMOTE_COMMANDS,
  DISPATCH,
]
  .join("\n")
  .split("\n")
  .map((line) => line.trim())
  .filter((line) => line !== "" && !line.startsWith("#"))
  .join("\n");

/** The script's sha256: the name it is kept under on a host, and what that copy must hash to. */
export const REMOTE_SCRIPT_DIGEST = createHash("sha256").update(REMOTE_SCRIPT).digest("hex");

/**
 * The script is kept on the host, so that a session's command line is about
 * 250 bytes instead of the whole script (about 30 KB, six sessions in a
 * one-file deploy): `<root>/.turnout/bin/turnout-host-<digest>`. The
 * launcher runs that copy only when it is a regular file that hashes to the
 * digest (one damaged or edited by hand is never run); otherwise it exits
 * EXIT_NO_KEPT_SCRIPT and the server installs the script again (or, where
 * it cannot, sends it in the command line as before). The copy is written by
 * the SSH user, who runs it: no privilege changes hands.
 *
 *   sh -c '<LAUNCHER>' turnout-host '<root>' '<digest>' <op> '<arg>'…
 */
const LAUNCHER = sh`f=$1/.turnout/bin/turnout-host-$2;d=$2;shift 2;[ -f "$f" ]&&[ ! -L "$f" ]&&s=$(sha256sum -- "$f" 2>/dev/null)&&[ "\${s%% *}" = "$d" ]&&exec sh "$f" "$@";exit 96`;
/**
 * Writes the script read from stdin to the host (a temporary name, checked
 * against the digest, then renamed), and keeps the four newest versions: a
 * server of the previous version may still be deploying during an upgrade.
 *
 *   sh -c '<INSTALLER>' turnout-host '<root>' '<digest>'
 */
const INSTALLER = sh`
case $1 in /*) ;; *) exit 10;; esac
case $2 in *[!0123456789abcdef]*) exit 10;; esac
[ \${#2} -eq 64 ] || exit 10
_t=$1/.turnout; _b=$_t/bin
mkdir -p -- "$_b" 2>/dev/null
for _d in "$_t" "$_b"; do [ -d "$_d" ] && [ ! -L "$_d" ] || exit 12; done
_tmp=$_b/.tmp-$$
cat >"$_tmp" || { rm -f -- "$_tmp"; exit 12; }
_s=$(sha256sum -- "$_tmp") && [ "\${_s%% *}" = "$2" ] || { rm -f -- "$_tmp"; exit 10; }
chmod 0400 -- "$_tmp" && mv -f -- "$_tmp" "$_b/turnout-host-$2" || { rm -f -- "$_tmp"; exit 12; }
ls -t -- "$_b" | grep -E "^turnout-host-[0123456789abcdef]{64}$" | tail -n +5 | (cd "$_b" && xargs -r rm -f --)
echo "turnout-host:begin"
echo "ok installed"
`;

/** The launcher's exit status when the host holds no good copy of this script. */
export const EXIT_NO_KEPT_SCRIPT = 96;

/** The first line of every answer: what a login script may print before it is ignored. */
export const ANSWER_BEGINS = "turnout-host:begin";

export type RemoteOp =
  | "hello"
  | "bases"
  | "missing"
  | "receive"
  | "stage"
  | "switch"
  | "promote"
  | "run"
  | "http"
  | "prune"
  | "inventory"
  | "cancel";

/** The input was refused (bad name, path, line, digest): E_VALIDATION. */
export const EXIT_REFUSED = 10;
/** A release, slot or current the operation needs is not there: E_NOT_FOUND. */
export const EXIT_NOT_FOUND = 11;
/** The host could not do it (a pointer is a directory, a write failed): E_CONFLICT. */
export const EXIT_FAILED = 12;
/** A tool the script needs is missing: E_UNAVAILABLE. */
export const EXIT_UNUSABLE = 13;
/** before_switch exited non-zero: E_VALIDATION, as on agents. */
export const EXIT_HOOK_FAILED = 14;

/** Argument text that needs no quoting in any POSIX shell (and is single-quoted anyway). */
const PLAIN_ARG = /^[A-Za-z0-9/._-]{1,4096}$/;

/**
 * The remote command string for one operation. Arguments must already have
 * passed the checks of ssh-validate.ts; anything outside a plain character
 * set is refused here, before ssh is started.
 */
export function remoteCommand(op: RemoteOp, args: readonly string[]): string {
  return ["sh", "-c", quote(REMOTE_SCRIPT), "turnout-host", op, ...plainArgs(args).map(quote)].join(" ");
}

/** The command for one operation run by the copy of the script kept under `root` (see LAUNCHER). */
export function keptScriptCommand(root: string, op: RemoteOp, args: readonly string[]): string {
  const [plainRoot, ...rest] = plainArgs([root, ...args]);
  return [
    "sh",
    "-c",
    quote(LAUNCHER),
    "turnout-host",
    quote(plainRoot!),
    REMOTE_SCRIPT_DIGEST,
    op,
    ...rest.map(quote),
  ].join(" ");
}

/** The command that writes the script (its stdin) to `root` on the host (see INSTALLER). */
export function installScriptCommand(root: string): string {
  const [plainRoot] = plainArgs([root]);
  return ["sh", "-c", quote(INSTALLER), "turnout-host", quote(plainRoot!), REMOTE_SCRIPT_DIGEST].join(" ");
}

function plainArgs(args: readonly string[]): string[] {
  for (const arg of args) {
    if (!PLAIN_ARG.test(arg)) {
      throw new TurnoutError("E_VALIDATION", `refusing to pass ${JSON.stringify(arg)} to an SSH host`);
    }
  }
  return [...args];
}

function quote(text: string): string {
  return `'${text}'`;
}
