// The peers: what people use instead of Turnout, each driven the way its
// documentation shows for a git-based release to N hosts at once, from the
// bench's own configuration (nothing of the machine's ~/.ssh, ~/.ansible.cfg
// or ~/.gitconfig). Each `deploy` resolves when the tool's own command has
// returned with success; the harness then checks every host's `current`.
//
//   archive     `git archive --remote | ssh tar -x` per host, all at once: the floor
//   ansible     the git module into releases/<sha>, then a `current` link; forks = N
//   capistrano  Capistrano 3's git strategy (a mirror per host, git archive into a timestamped release)
//   shipit      shipit-deploy: a local git workspace rsynced to each host (previous release copied first)
import { mkdirSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import { GIT_NAME, GIT_PORT, MOUNT, run, SSH_PORT } from "./hosts.js";

/** The repository's URL on the hosts themselves (see GIT_NAME). */
const hostGitUrl = `git://${GIT_NAME}:${GIT_PORT}/app.git`;

/** Where `--install` puts shipit-cli and shipit-deploy: the bench's own, never the project's dependencies. */
export const SHIPIT_DIR =
  process.env.TURNOUT_BENCH_SHIPIT_DIR ?? path.join(homedir(), ".cache", "turnout-bench-peers");

const plainEnv = (extra = {}) => ({
  PATH: "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
  LANG: "C.UTF-8",
  ...extra,
});

const archive = {
  name: "archive",
  label: "git archive | ssh tar ×N",
  async prepare() {},
  deploy(ctx, dir, release) {
    const sha = ctx.app.refs[release];
    const root = `${MOUNT}/${dir}`;
    const remote = `set -e; mkdir -p ${root}/releases/${sha}; tar -x -C ${root}/releases/${sha}; ln -sfn releases/${sha} ${root}/current.tmp; mv -T ${root}/current.tmp ${root}/current`;
    return Promise.all(
      ctx.hosts.map((h) =>
        run(
          [
            "bash",
            "-c",
            'set -o pipefail; git archive --remote="$1" --format=tar "$2" | /usr/bin/ssh -F "$3" "$4" "$5"',
            "sh",
            ctx.gitUrl,
            release,
            ctx.keys.config,
            h.address,
            remote,
          ],
          { env: plainEnv({ HOME: ctx.home }) },
        ),
      ),
    );
  },
};

const ansible = {
  name: "ansible",
  label: "Ansible (git module)",
  async prepare(ctx) {
    const dir = path.join(ctx.work, "ansible");
    mkdirSync(path.join(dir, "home"), { recursive: true });
    writeFileSync(
      path.join(dir, "ansible.cfg"),
      [
        "[defaults]",
        "forks = 100",
        "gathering = explicit",
        "host_key_checking = True",
        "interpreter_python = /usr/bin/python3",
        "retry_files_enabled = False",
        `local_tmp = ${dir}/tmp`,
        "[ssh_connection]",
        // Ansible's own default ssh_args, plus the bench's ssh_config.
        `ssh_args = -F ${ctx.keys.config} -C -o ControlMaster=auto -o ControlPersist=60s`,
        `control_path_dir = ${dir}/cp`,
        "pipelining = True",
        "",
      ].join("\n"),
    );
    writeFileSync(
      path.join(dir, "deploy.yml"),
      `- hosts: all
  gather_facts: false
  tasks:
    - name: check out the release
      ansible.builtin.git:
        repo: "{{ repo }}"
        dest: "{{ root }}/releases/{{ sha }}"
        version: "{{ ref }}"
    - name: switch current
      ansible.builtin.file:
        src: "releases/{{ sha }}"
        dest: "{{ root }}/current"
        state: link
        force: true
`,
    );
    this.dir = dir;
  },
  deploy(ctx, dir, release) {
    const inventory = path.join(this.dir, `inventory-${ctx.hosts.length}.ini`);
    writeFileSync(
      inventory,
      `[all]\n${ctx.hosts.map((h) => `${h.name} ansible_host=${h.address} ansible_port=${SSH_PORT} ansible_user=root\n`).join("")}`,
    );
    const extra = JSON.stringify({
      repo: hostGitUrl,
      root: `${MOUNT}/${dir}`,
      sha: ctx.app.refs[release],
      ref: release,
    });
    return run(["ansible-playbook", "-i", inventory, "-e", extra, path.join(this.dir, "deploy.yml")], {
      cwd: this.dir,
      env: plainEnv({
        HOME: path.join(this.dir, "home"),
        ANSIBLE_CONFIG: path.join(this.dir, "ansible.cfg"),
      }),
    });
  },
};

const capistrano = {
  name: "capistrano",
  label: "Capistrano 3",
  async prepare(ctx) {
    const dir = path.join(ctx.work, "capistrano");
    mkdirSync(path.join(dir, "config", "deploy"), { recursive: true });
    mkdirSync(path.join(dir, "home"), { recursive: true });
    writeFileSync(
      path.join(dir, "Capfile"),
      `require "capistrano/setup"
require "capistrano/deploy"
require "capistrano/scm/git"
install_plugin Capistrano::SCM::Git
`,
    );
    writeFileSync(
      path.join(dir, "config", "deploy.rb"),
      `set :application, "bench"
set :repo_url, ENV.fetch("PEERS_REPO")
set :branch, ENV.fetch("PEERS_REF")
set :deploy_to, ENV.fetch("PEERS_ROOT")
set :keep_releases, 5
set :log_level, :warn
set :pty, false
set :ssh_options, {
  user: "root",
  port: ${SSH_PORT},
  keys: [ENV.fetch("PEERS_KEY")],
  keys_only: true,
  auth_methods: %w[publickey],
  user_known_hosts_file: ENV.fetch("PEERS_KNOWN_HOSTS"),
  global_known_hosts_file: "/dev/null",
  verify_host_key: :always,
  non_interactive: true,
  config: false,
}
`,
    );
    writeFileSync(
      path.join(dir, "config", "deploy", "production.rb"),
      `ENV.fetch("PEERS_HOSTS").split(",").each { |h| server h, user: "root", port: ${SSH_PORT}, roles: %w[app] }\n`,
    );
    this.dir = dir;
  },
  deploy(ctx, dir, release) {
    return run(["cap", "production", "deploy"], {
      cwd: this.dir,
      env: plainEnv({
        HOME: path.join(this.dir, "home"),
        PEERS_REPO: hostGitUrl,
        PEERS_REF: release,
        PEERS_ROOT: `${MOUNT}/${dir}`,
        PEERS_KEY: ctx.keys.key,
        PEERS_KNOWN_HOSTS: ctx.keys.knownHosts,
        PEERS_HOSTS: ctx.hosts.map((h) => h.address).join(","),
      }),
    });
  },
};

const shipit = {
  name: "shipit",
  label: "shipit-cli (rsync)",
  async prepare(ctx) {
    const dir = path.join(ctx.work, "shipit");
    mkdirSync(path.join(dir, "home"), { recursive: true });
    writeFileSync(
      path.join(dir, "shipitfile.js"),
      `module.exports = (shipit) => {
  require(${JSON.stringify(path.join(SHIPIT_DIR, "node_modules", "shipit-deploy"))})(shipit);
  shipit.initConfig({
    default: {
      workspace: process.env.PEERS_WORKSPACE,
      repositoryUrl: process.env.PEERS_REPO,
      branch: process.env.PEERS_REF,
      deployTo: process.env.PEERS_ROOT,
      keepReleases: 5,
      shallowClone: false,
      ignores: [".git"],
      key: process.env.PEERS_KEY,
    },
    production: {
      servers: process.env.PEERS_HOSTS.split(",").map((h) => "root@" + h + ":${SSH_PORT}"),
    },
  });
};
`,
    );
    this.dir = dir;
  },
  deploy(ctx, dir, release) {
    // A workspace per fleet size and repetition: a full release starts from nothing here too.
    const workspace = path.join(this.dir, "ws", dir.replaceAll("/", "-"));
    mkdirSync(workspace, { recursive: true });
    return run(
      [
        process.execPath,
        path.join(SHIPIT_DIR, "node_modules", "shipit-cli", "bin", "shipit"),
        "production",
        "deploy",
        "--shipitfile",
        path.join(this.dir, "shipitfile.js"),
      ],
      {
        cwd: this.dir,
        env: plainEnv({
          PATH: `${ctx.keys.bin}:${plainEnv().PATH}`,
          HOME: path.join(this.dir, "home"),
          PEERS_WORKSPACE: workspace,
          PEERS_REPO: ctx.gitUrl,
          PEERS_REF: release,
          PEERS_ROOT: `${MOUNT}/${dir}`,
          PEERS_KEY: ctx.keys.key,
          PEERS_HOSTS: ctx.hosts.map((h) => h.address).join(","),
        }),
      },
    );
  },
};

export const PEERS = { archive, ansible, shipit, capistrano };
