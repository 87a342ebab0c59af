import { randomBytes } from "node:crypto";
import type { RawData, WebSocket } from "ws";
import {
  type AgentMessage,
  agentMessageSchema,
  assertHostName,
  CLOSE,
  closeReason,
  HOST_TOKEN_PREFIX,
  MIN_PROTOCOL_VERSION,
  PROTOCOL_VERSION,
  parseMessage,
} from "../../agent/protocol.js";
import { isTurnoutError, TurnoutError } from "../../domain/errors.js";
import type { HostAppInventory } from "../../domain/fleet.js";
import { enrollmentGrant } from "../../domain/host-grant.js";
import { can, type Principal } from "../../domain/roles.js";
import { VERSION } from "../../server/version.js";
import type { HostRecord } from "../../store/hosts.js";
import type { Store } from "../../store/store.js";
import { hashToken } from "../../store/tokens.js";
import { AgentConnection } from "./agent-connection.js";
import { type AgentCallTiming, AgentHostOps } from "./agent-host-ops.js";
import type { HostCallRouter } from "./host-call-router.js";
import type { HostOps } from "./host-ops.js";
import { type BaseManifestSource, ManifestDiffs } from "./manifest-diffs.js";
import { RemoteHostOps } from "./remote-host-ops.js";

/** Who is knocking: an enrollment token (any host name) or one host's own token. */
export type AgentAuth =
  | { kind: "enrollment"; principal: Principal }
  | { kind: "host"; host: HostRecord; tokenHash: string };

export type AgentChange = { type: "connected" | "disconnected" | "inventory"; host: string };

export interface AgentHubTiming extends AgentCallTiming {
  /** A new socket must say hello within this. */
  helloTimeoutMs: number;
  /** No message from an agent for this long: it is gone, its socket is terminated. */
  heartbeatTimeoutMs: number;
  /** How often the server pings each agent (so agents notice a dead server too). */
  pingIntervalMs: number;
  /** last_seen_at is written at most this often per host (heartbeats arrive every 5 s). */
  persistSeenMs: number;
}

export const DEFAULT_AGENT_HUB_TIMING: AgentHubTiming = {
  helloTimeoutMs: 10_000,
  heartbeatTimeoutMs: 20_000,
  pingIntervalMs: 5_000,
  persistSeenMs: 15_000,
  callTimeoutMs: 120_000,
  callMarginMs: 30_000,
  cancelGraceMs: 5_000,
};

export interface AgentHubOptions {
  store: Store;
  /** This server process (engine owner id), recorded as hosts.connected_to. */
  owner: string;
  /** Whether a host's connection owner is certainly gone (see engine/owner.ts). */
  ownerIsDead?: (owner: string) => boolean;
  timing?: Partial<AgentHubTiming>;
  report?: (message: string) => void;
  /**
   * An artifact's app and manifest (undefined when not stored): the base of
   * the differences sent to agents of protocol 2. Without it, agents get
   * whole manifests.
   */
  manifests?: BaseManifestSource;
}

/**
 * The server's side of agent connections. It tracks which agents are
 * connected to this process, keeps their hosts rows (connection state, last
 * seen, labels) and host_apps rows (what they reported holding) up to date,
 * and hands out HostOps that reach an agent through its socket.
 *
 * Store writes for one host are serialized, so a reconnect racing with the
 * old socket's close never leaves the row saying "disconnected".
 */
export class AgentHub {
  /** Mutable so tests can shorten it on a running server. */
  readonly timing: AgentHubTiming;
  private readonly store: Store;
  private readonly owner: string;
  private readonly report: (message: string) => void;
  private readonly connections = new Map<string, AgentConnection>();
  /** The same connections by the hash of their host token (see stagingHost). */
  private readonly byTokenHash = new Map<string, AgentConnection>();
  private readonly waitingForHello = new Set<WebSocket>();
  private readonly writes = new Map<string, Promise<void>>();
  private readonly listeners = new Set<(change: AgentChange) => void>();
  private readonly ticker: NodeJS.Timeout;
  private lastPing = Date.now();
  /** Differences from the manifests agents keep (undefined: whole manifests); routed stage calls use them too. */
  readonly manifestDiffs: ManifestDiffs | undefined;
  private closing = false;
  /** With a shared PostgreSQL: how this server reaches agents other servers hold (see routeThrough). */
  private router: HostCallRouter | undefined;

  constructor(options: AgentHubOptions) {
    this.store = options.store;
    this.owner = options.owner;
    this.timing = { ...DEFAULT_AGENT_HUB_TIMING, ...options.timing };
    this.report = options.report ?? (() => undefined);
    this.manifestDiffs = options.manifests ? new ManifestDiffs(options.manifests) : undefined;
    this.ticker = setInterval(() => this.tick(), 250);
    this.ticker.unref();
  }

  /** Marks hosts left "connected" by a server process that is gone; call once at start. */
  async start(isDead: (owner: string) => boolean): Promise<void> {
    const released = await this.store.hosts.releaseOrphans((owner) => owner !== this.owner && isDead(owner));
    if (released.length > 0)
      this.report(`agents: ${released.length} host(s) of a previous server marked disconnected`);
  }

  /**
   * The bearer token of an upgrade request → who it is; undefined for an
   * unknown or revoked token (401), E_FORBIDDEN for a valid token without
   * the `agent` permission (a viewer token cannot enroll hosts).
   */
  async authenticate(token: string): Promise<AgentAuth | undefined> {
    if (token.startsWith(HOST_TOKEN_PREFIX)) {
      const host = await this.store.hosts.findByToken(token);
      return host ? { kind: "host", host, tokenHash: hashToken(token) } : undefined;
    }
    const principal = await this.store.tokens.authenticate(token);
    if (!principal) return undefined;
    if (!can(principal, "agent")) {
      throw new TurnoutError(
        "E_FORBIDDEN",
        `token '${principal.name}' (${principal.role}) may not connect agents`,
      );
    }
    return { kind: "enrollment", principal };
  }

  /** A socket upgraded on the connect endpoint: it has helloTimeoutMs to say hello. */
  accept(socket: WebSocket, auth: AgentAuth): void {
    if (this.closing) {
      socket.close(CLOSE.goingAway, "server shutting down");
      return;
    }
    this.waitingForHello.add(socket);
    const helloTimer = setTimeout(() => socket.close(CLOSE.timeout, "no hello"), this.timing.helloTimeoutMs);
    let connection: AgentConnection | undefined;
    let greeted = false;

    socket.on("message", (data: RawData) => {
      let message: AgentMessage;
      try {
        message = parseMessage(agentMessageSchema, data);
      } catch (error) {
        socket.close(CLOSE.protocolError, closeReason((error as Error).message));
        return;
      }
      if (connection) {
        this.received(connection, message);
        return;
      }
      if (message.type !== "hello" || greeted) {
        socket.close(CLOSE.protocolError, "expected hello first");
        return;
      }
      greeted = true;
      clearTimeout(helloTimer);
      this.hello(socket, auth, message).then(
        (accepted) => {
          connection = accepted;
        },
        (error: Error) => {
          const code =
            error instanceof UnsupportedProtocol
              ? CLOSE.unsupportedProtocol
              : isTurnoutError(error) && error.code !== "E_INTERNAL"
                ? CLOSE.refused
                : 1011;
          this.report(`agents: refused a hello: ${error.message}`);
          socket.close(code, closeReason(isTurnoutError(error) ? error.message : "internal error"));
        },
      );
    });
    socket.on("close", (_code, reason) => {
      clearTimeout(helloTimer);
      this.waitingForHello.delete(socket);
      if (connection) this.gone(connection, reason.toString());
    });
    socket.on("error", () => socket.terminate());
  }

  private async hello(
    socket: WebSocket,
    auth: AgentAuth,
    hello: Extract<AgentMessage, { type: "hello" }>,
  ): Promise<AgentConnection | undefined> {
    const name = assertHostName(hello.name);
    const protocol = negotiateProtocol(hello.protocol, hello.minProtocol);
    if (auth.kind === "host" && auth.host.name !== name) {
      throw new TurnoutError(
        "E_FORBIDDEN",
        `this host token belongs to host '${auth.host.name}', not '${name}'`,
      );
    }
    // Enrolling with a shared token issues (or re-issues) the host's own token.
    const hostToken =
      auth.kind === "enrollment" ? `${HOST_TOKEN_PREFIX}${randomBytes(32).toString("base64url")}` : undefined;
    const connection = await this.serial(name, async () => {
      const host = await this.store.hosts.enrollAgent({
        name,
        labels: hello.labels,
        owner: this.owner,
        tokenHash: hostToken ? hashToken(hostToken) : null,
        // The server decides what the host may receive: the enrolling token's grant, or the one it has.
        grant: auth.kind === "enrollment" ? enrollmentGrant(auth.principal) : null,
      });
      await this.store.hosts.saveInventory(host.id, hello.inventory);
      return host;
    });
    if (socket.readyState !== socket.OPEN) {
      // It hung up while being enrolled: the row must not stay "connected".
      await this.serial(name, async () => {
        if (!this.connections.has(name)) {
          await this.store.hosts.markDisconnected(connection.id, this.owner, new Date().toISOString());
        }
      });
      return undefined;
    }
    this.waitingForHello.delete(socket);
    const accepted = new AgentConnection(connection.id, name, hello.version, socket, protocol);
    accepted.tokenHash = hostToken ? hashToken(hostToken) : auth.kind === "host" ? auth.tokenHash : undefined;
    accepted.grantApps = connection.grant.apps;
    accepted.inventory = hello.inventory;
    accepted.manifests = hello.manifests ?? [];
    accepted.lastPersistedAt = Date.now();
    accepted.savedInventory = inventoryRecords(hello.inventory);
    const previous = this.connections.get(name);
    this.connections.set(name, accepted);
    if (previous?.tokenHash !== undefined) this.byTokenHash.delete(previous.tokenHash);
    if (accepted.tokenHash !== undefined) this.byTokenHash.set(accepted.tokenHash, accepted);
    if (previous) {
      previous.closedWith("replaced by a new connection");
      previous.close(CLOSE.replaced, "replaced by a new connection of the same host");
    }
    // `protocol` only to agents of 2 or more: protocol 1 agents refuse a welcome with fields they do not know.
    accepted.send({
      type: "welcome",
      hostId: connection.id,
      ...(hostToken ? { hostToken } : {}),
      ...(protocol >= 2 ? { protocol } : {}),
    });
    const ignored = Object.entries(connection.ungrantedLabels).map(([k, v]) => `${k}=${v}`);
    this.report(
      `agents: ${name} connected (agent ${hello.version}, protocol ${protocol}${auth.kind === "enrollment" ? ", enrolled" : ""}${
        ignored.length > 0 ? `; labels not granted, ignored: ${ignored.join(", ")}` : ""
      })`,
    );
    this.emit({ type: "connected", host: name });
    return accepted;
  }

  private received(connection: AgentConnection, message: AgentMessage): void {
    connection.lastMessageAt = Date.now();
    switch (message.type) {
      case "result":
        // Protocol 4: what the operation changed on the host, taken in before its caller goes on.
        if (message.ok && (message.inventory || message.manifests)) this.hostReport(connection, message);
        connection.receive(message);
        return;
      case "log":
      case "switched":
        connection.receive(message);
        return;
      case "heartbeat":
        this.hostReport(connection, message);
        return;
      case "hello":
        connection.close(CLOSE.protocolError, "hello twice");
        return;
    }
  }

  /** What a heartbeat (or, protocol 4, an operation's result) says the host holds and keeps. */
  private hostReport(
    connection: AgentConnection,
    message: { inventory?: HostAppInventory[] | undefined; manifests?: string[] | undefined },
  ): void {
    if (message.manifests) connection.manifests = message.manifests;
    if (message.inventory) connection.inventory = message.inventory;
    if (message.inventory) this.inventory(connection, message.inventory);
    else if (Date.now() - connection.lastPersistedAt >= this.timing.persistSeenMs)
      this.persistSeen(connection);
  }

  /**
   * A report of what the host holds: only the apps whose record changed are
   * written (with last seen, when that is due anyway), in a group commit with
   * other hosts' reports (HostStore.saveInventoryChanges).
   */
  private inventory(connection: AgentConnection, inventory: HostAppInventory[]): void {
    const records = inventoryRecords(inventory);
    const saved = connection.savedInventory;
    const changed = saved
      ? inventory.filter((item) => saved.get(inventoryKey(item)) !== records.get(inventoryKey(item)))
      : [];
    const removed = saved ? [...saved.keys()].filter((key) => !records.has(key)).map(placeOfKey) : [];
    const seenDue = Date.now() - connection.lastPersistedAt >= this.timing.persistSeenMs;
    if (saved && changed.length === 0 && removed.length === 0) {
      if (seenDue) this.persistSeen(connection);
      return;
    }
    const at = new Date(connection.lastMessageAt).toISOString();
    if (seenDue || !saved) connection.lastPersistedAt = Date.now();
    connection.savedInventory = records;
    this.serial(connection.name, () =>
      saved
        ? this.store.hosts.saveInventoryChanges(
            connection.hostId,
            { changed, removed },
            seenDue ? { owner: this.owner, at } : undefined,
          )
        : // What the store holds is not known: every app is written again.
          this.store.hosts.saveInventory(connection.hostId, inventory, { owner: this.owner, at }),
    ).then(
      () => this.emit({ type: "inventory", host: connection.name }),
      (error: Error) => {
        connection.savedInventory = undefined;
        this.report(`agents: saving the inventory of ${connection.name} failed: ${error.message}`);
      },
    );
  }

  private persistSeen(connection: AgentConnection): void {
    connection.lastPersistedAt = Date.now();
    const seen = new Date(connection.lastMessageAt).toISOString();
    this.serial(connection.name, () => this.store.hosts.markSeen(connection.hostId, this.owner, seen)).catch(
      (error: Error) => this.report(`agents: recording ${connection.name} as seen failed: ${error.message}`),
    );
  }

  private gone(connection: AgentConnection, reason: string): void {
    connection.closedWith(reason);
    // A newer connection of the same host has taken over: the host is not gone.
    if (this.connections.get(connection.name) !== connection) return;
    this.connections.delete(connection.name);
    if (connection.tokenHash !== undefined && this.byTokenHash.get(connection.tokenHash) === connection)
      this.byTokenHash.delete(connection.tokenHash);
    const seen = new Date(connection.lastMessageAt).toISOString();
    this.report(`agents: ${connection.name} disconnected${reason ? ` (${reason})` : ""}`);
    this.serial(connection.name, async () => {
      // Reconnected while this waited its turn: leave the row to the new connection.
      if (this.connections.has(connection.name)) return;
      await this.store.hosts.markDisconnected(connection.hostId, this.owner, seen);
    }).then(
      () => this.emit({ type: "disconnected", host: connection.name }),
      (error: Error) =>
        this.report(`agents: recording ${connection.name} as disconnected failed: ${error.message}`),
    );
  }

  private tick(): void {
    const now = Date.now();
    const ping = now - this.lastPing >= this.timing.pingIntervalMs;
    if (ping) this.lastPing = now;
    for (const connection of this.connections.values()) {
      if (now - connection.lastMessageAt > this.timing.heartbeatTimeoutMs) {
        // No close handshake with a peer that stopped talking: drop the socket.
        connection.closedWith(`no heartbeat for ${Math.round((now - connection.lastMessageAt) / 1000)} s`);
        connection.terminate();
      } else if (ping) {
        connection.send({ type: "ping" });
      }
    }
  }

  /** Runs store writes for one host one after the other. */
  private serial<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.writes.get(name) ?? Promise.resolve();
    const next = previous.then(fn, fn);
    const settled = next.then(
      () => undefined,
      () => undefined,
    );
    this.writes.set(name, settled);
    void settled.then(() => {
      if (this.writes.get(name) === settled) this.writes.delete(name);
    });
    return next;
  }

  private emit(change: AgentChange): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(change);
      } catch (error) {
        this.report(`agents: a change listener failed: ${(error as Error).message}`);
      }
    }
  }

  /** Hosts connecting, disconnecting or reporting a new inventory. Returns the unsubscribe function. */
  onChange(listener: (change: AgentChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  isConnected(name: string): boolean {
    return this.connections.has(name);
  }

  connectedHosts(): string[] {
    return [...this.connections.keys()].sort();
  }

  /**
   * HostOps for a connected agent host: through its socket when this server
   * holds it; with a router, through the server that does (for deploy
   * `deployId`, whose lease that server checks); undefined when no live
   * server holds it.
   */
  opsFor(name: string, deployId?: number): HostOps | undefined {
    if (this.connections.has(name))
      return new AgentHostOps(name, () => this.connections.get(name), this.timing, this.manifestDiffs);
    const holder = this.router?.holderOf(name);
    if (holder === undefined || deployId === undefined || !this.router) return undefined;
    return new RemoteHostOps(name, holder, deployId, this.router, this.timing);
  }

  /**
   * The host whose live connection here was made with this host token, while
   * this server waits for it to stage: a download it makes then needs no
   * look-up of the token (one statement per host and deploy). Outside a
   * stage call, or for a token this server holds no connection of, the
   * store decides, so a re-enrolled host's old token is refused as ever
   * once its last stage call here has ended. A host principal can only
   * read what the server sent that host (artifacts/read-access.ts), so the
   * grant as of the hello gives it nothing the current one would not.
   */
  stagingHost(tokenHash: string): { id: number; name: string; apps: string[] | null } | undefined {
    const connection = this.byTokenHash.get(tokenHash);
    if (!connection || connection.closed || !connection.stagingAnything) return undefined;
    return { id: connection.hostId, name: connection.name, apps: connection.grantApps };
  }

  /** The live connection of a host this server holds (the router executes routed calls on it). */
  connection(name: string): AgentConnection | undefined {
    const connection = this.connections.get(name);
    return connection && !connection.closed ? connection : undefined;
  }

  /** Routes calls for hosts other servers hold through `router`, and tells the others when agents come and go. */
  routeThrough(router: HostCallRouter): void {
    this.router = router;
    this.onChange((change) => {
      if (change.type !== "inventory") router.announceHosts();
    });
  }

  /**
   * Every host with what it holds. For hosts connected here, connection state
   * and last seen come from memory (the store is written at most every
   * persistSeenMs); a host another server holds counts as disconnected once
   * that server has not touched its row for a while.
   */
  async hosts(): Promise<HostRecord[]> {
    return (await this.store.hosts.list()).map((host) => this.overlay(host));
  }

  async host(name: string): Promise<HostRecord | undefined> {
    const host = await this.store.hosts.get(name);
    return host ? this.overlay(host) : undefined;
  }

  private overlay(host: HostRecord): HostRecord {
    if (host.kind !== "agent") return host;
    const live = this.connections.get(host.name);
    if (live) {
      return {
        ...host,
        connected: true,
        connectedTo: this.owner,
        lastSeenAt: new Date(live.lastMessageAt).toISOString(),
      };
    }
    if (!host.connected) return host;
    if (host.connectedTo === this.owner) return { ...host, connected: false };
    // With a router, a server whose heartbeat stopped (or whose process is gone) holds nothing.
    if (this.router && host.connectedTo !== null && this.router.isDead(host.connectedTo))
      return { ...host, connected: false };
    const staleAfter = this.timing.heartbeatTimeoutMs + 2 * this.timing.persistSeenMs;
    const seen = host.lastSeenAt ? Date.parse(host.lastSeenAt) : 0;
    return Date.now() - seen > staleAfter ? { ...host, connected: false } : host;
  }

  /** Closes every agent socket (agents reconnect to whichever server comes next) and records them as gone. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    clearInterval(this.ticker);
    for (const socket of this.waitingForHello) socket.terminate();
    for (const connection of [...this.connections.values()]) {
      connection.closedWith("server shutting down");
      connection.close(CLOSE.goingAway, "server shutting down");
    }
    const gone = [...this.connections.values()];
    this.connections.clear();
    await Promise.all([...this.writes.values()]);
    await Promise.all(
      gone.map((c) =>
        this.store.hosts
          .markDisconnected(c.hostId, this.owner, new Date(c.lastMessageAt).toISOString())
          .catch(() => undefined),
      ),
    );
  }
}

/** A hello whose protocol this server does not speak: closed with CLOSE.unsupportedProtocol. */
class UnsupportedProtocol extends TurnoutError {}

/**
 * The protocol of a new connection: the newest both ends speak. An agent
 * says the newest it speaks (`protocol`) and, from protocol 2 on, the oldest
 * (`minProtocol`); protocol 1 agents speak only 1. Refused with a message
 * that says which side to upgrade.
 */
export function negotiateProtocol(newest: number, oldest: number | undefined): number {
  const speak = Math.min(newest, PROTOCOL_VERSION);
  if (newest < MIN_PROTOCOL_VERSION) {
    throw new UnsupportedProtocol(
      "E_VALIDATION",
      // A close reason holds 123 bytes: this fits, and says what to do.
      `agent protocol ${newest} is too old for this server (protocol ${MIN_PROTOCOL_VERSION}-${PROTOCOL_VERSION}): upgrade the agent to turnout ${VERSION}`,
    );
  }
  if (speak < (oldest ?? newest)) {
    throw new UnsupportedProtocol(
      "E_VALIDATION",
      `agent protocol ${oldest ?? newest} is newer than this server (protocol ${MIN_PROTOCOL_VERSION}-${PROTOCOL_VERSION}): upgrade the server first`,
    );
  }
  return speak;
}

/**
 * Each layout's inventory record as JSON, keyed by app and deploy path
 * (`shop`, `shop /var/www/shop-staging`; paths hold no spaces): what tells a
 * changed layout from an unchanged one.
 */
function inventoryRecords(inventory: HostAppInventory[]): Map<string, string> {
  return new Map(inventory.map((item) => [inventoryKey(item), JSON.stringify(item)]));
}

function inventoryKey(item: Pick<HostAppInventory, "app" | "path">): string {
  return item.path ? `${item.app} ${item.path}` : item.app;
}

function placeOfKey(key: string): Pick<HostAppInventory, "app" | "path"> {
  const [app, path] = key.split(" ");
  return path ? { app: app!, path } : { app: app! };
}
