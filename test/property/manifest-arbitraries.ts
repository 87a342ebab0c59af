import fc from "fast-check";
import { hostileString, optionPayloads, shellPayloads, transportPayloads } from "./hostile-input.js";

/**
 * Generated app manifests: a valid skeleton whose fields get valid, hostile
 * or wrongly typed values, so that the loader meets both manifests it must
 * accept and every way a field can be wrong. `manifestText` also splices raw
 * text into a YAML template, for what only a hand-written file can hold
 * (anchors, tags, flow syntax, broken quoting).
 */
/** YAML syntax a value spliced in unquoted can carry. */
const YAML_TRICKS = [
  "&a x",
  "*a",
  "*missing",
  "!!binary aGk=",
  "!!js/function 'x'",
  "!!python/object:os.system ['touch x']",
  "!custom x",
  "<<: *a",
  "{",
  "}",
  "[",
  "[a, b",
  "{a: 1, a: 2}",
  "? x",
  "---",
  "...",
  "%YAML 1.1",
  "|",
  ">-",
  "'",
  '"',
  "'unterminated",
  "# comment",
  "@x",
  "`x`",
  "x: y",
  "- x",
  "\t",
  "~",
  "null",
  "yes",
  "0o777",
  "0x1f",
  ".inf",
  "-.inf",
  ".nan",
  "1e400",
  "2001-12-14t21:59:43.10-05:00",
];

export function manifestArbitraries(markerDir: string) {
  const hostile = hostileString(markerDir);
  const junk: fc.Arbitrary<unknown> = fc.oneof(
    hostile,
    fc.integer(),
    fc.double(),
    fc.boolean(),
    fc.constant(null),
    fc.array(hostile, { maxLength: 2 }),
    fc.dictionary(hostile, hostile, { maxKeys: 2 }),
  );
  // Fields get plausible values (the right type, edge cases included: `600h`, `0s`, odd labels);
  // then a few leaves of the whole manifest are replaced by hostile text or the wrong type. So most
  // manifests are wrong in one or two places, and a good share are right everywhere.
  const plausible = (...values: (string | number)[]) => fc.constantFrom(...values);

  const repoUrl = fc.oneof(
    {
      weight: 8,
      arbitrary: plausible(
        "https://example.com/acme/shop.git",
        "https://user:s3cret@example.com/acme/shop.git",
        "http://127.0.0.1:8080/x.git",
        "git@github.com:acme/shop.git",
        "github.com:acme/shop",
        "ssh://git@example.com:2222/acme/shop.git",
        "git+ssh://example.com/x.git",
        "git://example.com/x.git",
        "file:///srv/git/shop.git",
        "/srv/git/shop.git",
        "http://[::1]/x.git",
      ),
    },
    {
      weight: 1,
      arbitrary: plausible(
        ...transportPayloads(markerDir),
        ...optionPayloads(markerDir),
        "relative/path",
        "./x",
        "../x.git",
        "https://-oProxyCommand=x/y",
        "ssh://-oProxyCommand=touch/x",
        "git@-oProxyCommand=x:y",
        "-x@host:path",
        "host:",
        "host:-x",
        "javascript:alert(1)",
        "ftp://example.com/x",
        "https://",
        "https://exa mple.com/x",
        "https://example.com/x\n",
        "C:\\repo",
      ),
    },
  );
  const programArg: fc.Arbitrary<string> = fc.oneof(
    {
      weight: 20,
      arbitrary: fc.constantFrom(
        "echo",
        "bash",
        "./deploy.sh",
        "{sha}",
        "{ref}",
        "{env}",
        "x{app}y",
        "-c",
        "a b",
      ),
    },
    { weight: 1, arbitrary: fc.constantFrom("{unknown}", "{host}", "") },
    { weight: 3, arbitrary: fc.constantFrom(...shellPayloads(markerDir)) },
  );
  const argv = fc.array(programArg, { minLength: 1, maxLength: 4 });
  const duration = fc.oneof(
    { weight: 12, arbitrary: plausible("90s", "30m", "1h30m", "500ms", "2h", "1.5s", 5, 3.5) },
    {
      weight: 1,
      arbitrary: plausible("0s", "0", "0ms", "600h", "99999h", 0.0001, 1e12, 2 ** 31, "1d", " 5s", -1, 0),
    },
  );
  const envName = plausible("staging", "production", "e2e", "a-b");
  const branch = fc.oneof(
    { weight: 12, arbitrary: plausible("main", "release/1.x", "v1.0.0", "feature/a-b") },
    { weight: 1, arbitrary: plausible("main~1", "-x", "a..b", "HEAD", "x.lock", "@{-1}", "main ", "a:b") },
  );
  const variableName = plausible("SECRET_A", "TOKEN", "A_1", "MISSING_VAR");
  const labelText = fc.oneof(
    { weight: 12, arbitrary: plausible("role", "web", "env", "prod", "zone/a", "a.b", "v1:2") },
    { weight: 1, arbitrary: plausible("a b", "$(x)", "-x", "é", "", "x=y", "a,b") },
  );
  const labels = fc.dictionary(labelText, labelText, { maxKeys: 3 });
  const amount = fc.oneof(
    { weight: 12, arbitrary: plausible(1, 0, "25%", "100%", "3") },
    { weight: 1, arbitrary: plausible("101%", "1.5%", -1, 2.5, "0%") },
  );
  const shellDeploy = fc.oneof(
    fc.record(
      { provider: fc.constant("shell"), command: argv, timeout: duration, idle_timeout: duration },
      { requiredKeys: ["provider", "command"] },
    ),
    fc.record(
      {
        provider: fc.constant("shell"),
        script: plausible("make deploy", "echo $TURNOUT_SHA", "x"),
        timeout: duration,
        env: fc.dictionary(variableName, plausible("1", "a b", "$(x)"), { maxKeys: 2 }),
      },
      { requiredKeys: ["provider", "script"] },
    ),
  );
  const sshHost = fc.record(
    {
      name: plausible("web-1", "db"),
      address: fc.oneof(
        { weight: 12, arbitrary: plausible("127.0.0.1", "web1.example.com", "::1") },
        { weight: 1, arbitrary: plausible("-oProxyCommand", "-v", ":") },
      ),
      port: plausible(22, 2222),
      user: fc.oneof(
        { weight: 12, arbitrary: plausible("deploy", "root") },
        { weight: 1, arbitrary: plausible("-oX") },
      ),
      key_file: fc.oneof(
        { weight: 12, arbitrary: plausible("/etc/turnout/key", "keys/id") },
        { weight: 1, arbitrary: plausible("~/.ssh/id", "/a b", "%d/key", "-i") },
      ),
      known_hosts_file: fc.oneof(
        { weight: 12, arbitrary: plausible("/etc/turnout/known_hosts") },
        { weight: 1, arbitrary: plausible("/x y", "'q'", "~/kh") },
      ),
      root: fc.oneof(
        { weight: 12, arbitrary: plausible("/srv/turnout", "/opt/app") },
        { weight: 1, arbitrary: plausible("/srv/../etc", "/srv/$(x)", "/srv/a b") },
      ),
      labels,
    },
    { requiredKeys: ["name", "address", "user", "key_file", "known_hosts_file"] },
  );
  const health = fc.oneof(
    fc.record(
      {
        http: fc.oneof(
          { weight: 12, arbitrary: plausible("http://127.0.0.1:8080/healthz", "https://example.com/h") },
          {
            weight: 1,
            arbitrary: plausible("file:///etc/passwd", "javascript:x", "ftp://x/", "http://x/ -o /tmp/x"),
          },
        ),
        interval: duration,
        timeout: duration,
        retries: plausible(0, 3),
      },
      { requiredKeys: ["http"] },
    ),
    fc.record({ command: argv, interval: duration, timeout: duration }, { requiredKeys: ["command"] }),
  );
  const fleetDeploy = fc.record(
    {
      provider: fc.constant("fleet"),
      hosts: fc.record({ labels }),
      ssh: fc.array(sshHost, { maxLength: 2 }),
      build: argv,
      artifact: fc.oneof(
        { weight: 12, arbitrary: plausible(".", "dist") },
        { weight: 1, arbitrary: plausible("../x", "/abs", "a//b") },
      ),
      shared: fc.array(plausible("log", "tmp/cache"), { maxLength: 2 }),
      restart: argv,
      before_switch: argv,
      depool: argv,
      health,
      strategy: fc.record(
        { canary: amount, batch: amount, failure_limit: amount, bake: duration, approval_timeout: duration },
        { requiredKeys: [] },
      ),
      timeout: duration,
    },
    { requiredKeys: ["provider", "hosts"] },
  );
  const environment = fc.record(
    {
      branch,
      auto_deploy: fc.boolean(),
      check_command: argv,
      checks_timeout: duration,
      checks_poll: duration,
      deploy: fc.oneof({ weight: 3, arbitrary: shellDeploy }, { weight: 2, arbitrary: fleetDeploy }),
    },
    { requiredKeys: ["deploy"] },
  );
  const source = fc.oneof(
    { weight: 4, arbitrary: fc.record({ repo: repoUrl }) },
    { weight: 1, arbitrary: fc.constant({ hosted: true }) },
    {
      weight: 2,
      arbitrary: fc.record({
        components: fc.dictionary(
          plausible("web", "api"),
          fc.oneof(
            fc.record({ repo: repoUrl, branch }, { requiredKeys: ["repo"] }),
            fc.constant({ hosted: true }),
          ),
          { minKeys: 1, maxKeys: 2 },
        ),
      }),
    },
  );
  const wellFormed: fc.Arbitrary<Record<string, unknown>> = fc
    .tuple(
      source,
      fc.record(
        {
          poll_interval: duration,
          secret_env: fc.array(variableName, { maxLength: 2 }),
          webhook: fc.record({ secret_env: variableName }),
          environments: fc.dictionary(envName, environment, { minKeys: 1, maxKeys: 2 }),
        },
        { requiredKeys: ["environments"] },
      ),
    )
    .map(([src, rest]) => ({ ...src, ...rest }));
  const corruption = fc.tuple(
    fc.nat(),
    fc.oneof({ weight: 3, arbitrary: hostile }, { weight: 1, arbitrary: junk }),
  );
  const manifest = fc
    .tuple(wellFormed, fc.array(corruption, { maxLength: 2 }))
    .map(([input, corruptions]) => {
      const copy = structuredClone(input);
      for (const [index, value] of corruptions) corrupt(copy, index, value);
      return copy;
    });

  /** Raw text in place of one value of a small manifest: whatever YAML makes of it. */
  const spliced = fc
    .tuple(
      fc.oneof(hostile, fc.constantFrom(...YAML_TRICKS)),
      fc.constantFrom("repo", "branch", "command", "timeout", "env-name", "labels", "script"),
    )
    .map(([raw, field]) => {
      const v = (f: string, fallback: string) => (f === field ? raw : fallback);
      return [
        `repo: ${v("repo", "https://example.com/x.git")}`,
        "environments:",
        `  ${v("env-name", "staging")}:`,
        `    branch: ${v("branch", "main")}`,
        "    deploy:",
        "      provider: fleet",
        `      hosts: { labels: { role: ${v("labels", "web")} } }`,
        `      build: [make, ${v("command", "build")}]`,
        `      timeout: ${v("timeout", "10m")}`,
        `      restart: [systemctl, restart, ${v("script", "shop")}]`,
        "",
      ].join("\n");
    });

  return { manifest, spliced, argv, hostile };
}

/** Replaces the index-th leaf (modulo their count) of `root` by `value`. */
function corrupt(root: Record<string, unknown>, index: number, value: unknown): void {
  const leaves: { parent: Record<string, unknown> | unknown[]; key: string | number }[] = [];
  const walk = (node: unknown) => {
    if (Array.isArray(node)) {
      node.forEach((child, i) => {
        if (typeof child === "object" && child !== null) walk(child);
        else leaves.push({ parent: node, key: i });
      });
    } else if (typeof node === "object" && node !== null) {
      for (const [key, child] of Object.entries(node)) {
        if (typeof child === "object" && child !== null) walk(child);
        else leaves.push({ parent: node as Record<string, unknown>, key });
      }
    }
  };
  walk(root);
  if (leaves.length === 0) return;
  const { parent, key } = leaves[index % leaves.length]!;
  (parent as Record<string | number, unknown>)[key] = value;
}
