#!/usr/bin/env node
// `npm run screenshots`: pictures of every page of the web UI, in light and
// dark, and the main pages at a phone's width, into docs/screenshots/. A real
// server (bin/turnout.js) with realistic data: eight apps with a month of
// history, a fleet of three real agents, a lock, a failing environment,
// undeployed commits and a deploy running while the pictures are taken.
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import {
  api,
  BIN,
  CHROMIUM,
  CHROMIUM_ARGS,
  killAll,
  ROOT,
  sleep,
  startServer,
  track,
  waitFinished,
} from "./lib.js";
import { makeRepo, openStore, seedHistory } from "./seed.js";

const OUT = path.join(ROOT, "docs", "screenshots");

const SHELL_STEPS = `      script: |
        printf '\\033[1;34m==>\\033[0m installing dependencies\\n'
        sleep 0.2
        printf '    added 312 packages in 4s\\n'
        printf '\\033[1;34m==>\\033[0m running migrations\\n'
        printf '    \\033[32m✓\\033[0m 20261201_add_delivery_estimates\\n'
        printf '\\033[1;34m==>\\033[0m switching traffic\\n'
        printf '\\033[32mlive on %s\\033[0m\\n' "$(cat VERSION)"
`;

const APPS = {
  shop: {
    seed: 11,
    envs: { staging: { deploys: 40, failEvery: 9 }, production: { deploys: 14, failEvery: 0, fleet: true } },
  },
  payments: {
    seed: 12,
    envs: { staging: { deploys: 30, failEvery: 7 }, production: { deploys: 12, failEvery: 6 } },
  },
  search: {
    seed: 13,
    envs: {
      staging: { deploys: 25, failEvery: 4, failing: true },
      production: { deploys: 10, failEvery: 0 },
    },
  },
  accounts: {
    seed: 14,
    envs: { staging: { deploys: 22, failEvery: 0 }, production: { deploys: 9, failEvery: 5, running: true } },
  },
  notifications: {
    seed: 15,
    envs: { staging: { deploys: 18, failEvery: 6 }, production: { deploys: 8, failEvery: 0 } },
  },
  "billing-api": {
    seed: 16,
    envs: { staging: { deploys: 20, failEvery: 0 }, production: { deploys: 10, failEvery: 0 } },
  },
  "docs-site": { seed: 17, envs: { production: { deploys: 35, failEvery: 12 } } },
  "mobile-api": {
    seed: 18,
    envs: { staging: { deploys: 16, failEvery: 8 }, production: { deploys: 6, failEvery: 0 } },
  },
};

function manifest(repo, envs) {
  const lines = [`repo: ${JSON.stringify(repo)}`, "poll_interval: 5s", "environments:"];
  for (const [env, spec] of Object.entries(envs)) {
    lines.push(`  ${env}:`, "    branch: main", "    deploy:");
    if (spec.fleet) {
      lines.push(
        "      provider: fleet",
        "      hosts: { labels: { role: web } }",
        "      build_script: |",
        "        mkdir -p dist && cp VERSION dist/VERSION",
        "      artifact: dist",
        "      restart: [sh, -c, 'echo restarted']",
        "      strategy: { canary: 1, batch: 2 }",
      );
    } else if (spec.failing) {
      lines.push(
        "      provider: shell",
        "      script: |",
        "        echo 'running the smoke tests'",
        "        printf '\\033[31mFAIL\\033[0m search returns stale results for \"boots\"\\n'",
        "        exit 1",
      );
    } else if (spec.running) {
      lines.push(
        "      provider: shell",
        SHELL_STEPS.trimEnd().replace(
          "switching traffic\\n'",
          'switching traffic\\n\'\n        for i in $(seq 1 60); do echo "  draining connection pool $i/60"; sleep 5; done',
        ),
        "      timeout: 10m",
      );
    } else {
      lines.push("      provider: shell", SHELL_STEPS.trimEnd());
    }
  }
  return `${lines.join("\n")}\n`;
}

function startAgent(serverUrl, token, name, root) {
  mkdirSync(root, { recursive: true });
  return track(
    spawn(
      process.execPath,
      [
        BIN,
        "agent",
        "--server",
        serverUrl,
        "--token",
        token,
        "--name",
        name,
        "--root",
        root,
        "--label",
        "role=web",
        "--label",
        `zone=${name.endsWith("1") ? "a" : "b"}`,
      ],
      {
        env: { PATH: process.env["PATH"], HOME: root },
        stdio: "ignore",
      },
    ),
  );
}

async function until(check, what, ms = 60_000) {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(200);
  }
}

async function main() {
  const work = mkdtempSync(path.join(tmpdir(), "turnout-shots-"));
  try {
    const configDir = path.join(work, "turnout.d");
    mkdirSync(configDir, { recursive: true });
    const store = await openStore(path.join(work, "data"));
    for (const [app, spec] of Object.entries(APPS)) {
      const repo = path.join(work, "repos", app);
      const commits = makeRepo(repo, {
        count: 36,
        days: 32,
        seed: spec.seed,
        files: { "README.md": `# ${app}\n` },
      });
      writeFileSync(path.join(configDir, `${app}.yaml`), manifest(repo, spec.envs));
      for (const [env, envSpec] of Object.entries(spec.envs)) {
        // The newest commits stay undeployed.
        await seedHistory(store, {
          app,
          env,
          commits: commits.slice(0, env === "production" ? -4 : -1),
          deploys: envSpec.deploys,
          failEvery: envSpec.failEvery,
          seed: spec.seed * 7 + env.length,
        });
      }
    }
    await store.close();

    const server = await startServer(work);
    const token = (
      await api(server, "POST", "/api/v1/tokens", {
        name: "web-hosts",
        role: "agent",
        apps: ["shop"],
        labels: ["role=web"],
      })
    ).token;
    for (const name of ["web-1", "web-2", "web-3"])
      startAgent(server.url, token, name, path.join(work, "hosts", name));
    await until(
      async () => (await api(server, "GET", "/api/v1/hosts")).hosts.filter((h) => h.connected).length === 3,
      "agents connected",
    );

    // Live: a fleet deploy, a failing one, a lock, and one running during the pictures.
    const fleet = await api(server, "POST", "/api/v1/apps/shop/environments/production/deploys", {
      trigger: "ui",
    });
    await waitFinished(server, fleet.deploy.id, 200);
    const failing = await api(server, "POST", "/api/v1/apps/search/environments/staging/deploys", {
      trigger: "cli",
    });
    await waitFinished(server, failing.deploy.id, 200);
    const staging = await api(server, "POST", "/api/v1/apps/shop/environments/staging/deploys", {
      trigger: "ui",
    });
    await waitFinished(server, staging.deploy.id, 200);
    await api(server, "PUT", "/api/v1/apps/payments/environments/production/lock", {
      reason: "Black Friday freeze until Monday 09:00",
    });
    const running = await api(server, "POST", "/api/v1/apps/accounts/environments/production/deploys", {
      trigger: "ui",
    });
    await until(
      async () =>
        (await api(server, "GET", `/api/v1/deploys/${running.deploy.id}`)).deploy.status === "running",
      "deploy running",
    );
    // Give the poller its first look at every app (undeployed commits).
    await until(async () => {
      const { apps } = await api(server, "GET", "/api/v1/overview");
      return apps.every((a) => a.environments.every((e) => e.undeployed !== null));
    }, "undeployed counts");
    await sleep(4000);

    mkdirSync(OUT, { recursive: true });
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
    const shoot = async (
      name,
      hash,
      { scheme = "light", width = 1360, height = 900, signedIn = true, act } = {},
    ) => {
      const context = await browser.newContext({
        viewport: { width, height },
        colorScheme: scheme,
        deviceScaleFactor: 1,
      });
      if (signedIn)
        await context.addInitScript((t) => sessionStorage.setItem("turnout.token", t), server.token);
      const page = await context.newPage();
      await page.goto(`${server.url}/${hash}`);
      // The page keeps its live connection open, so "network idle" never comes: wait for its content.
      await page
        .locator(signedIn ? "main .page" : ".login-card")
        .first()
        .waitFor();
      await sleep(1500);
      if (act) await act(page);
      const suffix = width < 500 ? "phone" : scheme;
      await page.screenshot({ path: path.join(OUT, `${name}-${suffix}.png`) });
      console.log(`docs/screenshots/${name}-${suffix}.png`);
      await context.close();
    };
    const history = await api(server, "GET", "/api/v1/deploys?app=shop&env=staging&limit=50");
    const older = history.deploys.filter((d) => d.status === "succeeded")[3];
    const pages = [
      ["overview", "#/"],
      ["environment", "#/apps/shop/staging"],
      ["environment-locked", "#/apps/payments/production"],
      [
        "rollback-preview",
        "#/apps/shop/staging",
        {
          act: async (page) => {
            await page.locator(`.history tr[data-number="${older.number}"] [data-action="rollback"]`).click();
            await page.getByTestId("rollback-preview").waitFor();
            await sleep(300);
          },
        },
      ],
      ["deploy-running", `#/deploys/${running.deploy.id}`],
      [
        "deploy-fleet",
        `#/deploys/${fleet.deploy.id}`,
        {
          act: async (page) => {
            await page.locator('[data-host="web-2"]').click();
            await sleep(500);
          },
        },
      ],
      ["hosts", "#/hosts"],
      ["host", "#/hosts/web-1"],
      ["login", "#/login", { signedIn: false }],
    ];
    for (const [name, hash, options = {}] of pages) {
      for (const scheme of ["light", "dark"]) await shoot(name, hash, { ...options, scheme });
    }
    for (const [name, hash] of [
      ["overview", "#/"],
      ["environment", "#/apps/shop/staging"],
      ["deploy-running", `#/deploys/${running.deploy.id}`],
    ]) {
      await shoot(name, hash, { width: 390, height: 844 });
    }
    await browser.close();
    await api(server, "POST", `/api/v1/deploys/${running.deploy.id}/cancel`).catch(() => undefined);
    await server.stop();
  } finally {
    killAll();
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
