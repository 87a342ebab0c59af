import {
  type Document,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  parseDocument,
  type Node as YamlNode,
} from "yaml";
import { MAX_ALIAS_EXPANSION, MAX_ANCHORS_AND_ALIASES, MAX_NESTING } from "./manifest-limits.js";

/**
 * YAML → JavaScript in time linear in the size of the text, and never larger
 * than a fixed multiple of it. The yaml library's own duplicate-key check
 * compares each key with every earlier one (a 2 MB map took tens of seconds),
 * and its alias resolution scans every anchor for every alias, so both are
 * done here instead, in one walk over the document:
 *
 * - duplicate keys: a set per map (scalar keys, compared as the library does);
 * - anchors and aliases: at most MAX_ANCHORS_AND_ALIASES, and the nodes that
 *   aliases add when expanded at most MAX_ALIAS_EXPANSION (an "alias bomb" of
 *   a few hundred bytes would otherwise expand to billions of nodes);
 * - nesting: at most MAX_NESTING levels.
 *
 * Each problem carries the line of the node it is about.
 */
export interface YamlProblem {
  line: number | null;
  message: string;
}

export type YamlResult =
  | { ok: true; doc: Document.Parsed; lines: LineCounter; value: unknown }
  | { ok: false; problems: YamlProblem[] };

export function parseYaml(text: string): YamlResult {
  const lines = new LineCounter();
  // logLevel "error": the library's warnings (a collection used as a key…) would go to the
  // server's stderr, one per parse of a hostile file; what matters is reported as a problem.
  const doc = parseDocument(text, {
    lineCounter: lines,
    prettyErrors: false,
    uniqueKeys: false,
    logLevel: "error",
  });
  if (doc.errors.length > 0) {
    return {
      ok: false,
      problems: doc.errors.map((e) => ({
        // Without prettyErrors the parser leaves linePos unset; the offset is always there.
        line: e.linePos?.[0]?.line ?? lines.linePos(e.pos[0]).line,
        message: e.message.split("\n")[0] ?? e.message,
      })),
    };
  }
  const problem = checkStructure(doc.contents, lines);
  if (problem) return { ok: false, problems: [problem] };
  // Aliases are bounded above, so the library's own (coarser) alias counter is not needed.
  return { ok: true, doc, lines, value: doc.toJS({ maxAliasCount: -1 }) };
}

class Refused extends Error {
  constructor(readonly problem: YamlProblem) {
    super(problem.message);
  }
}

function checkStructure(root: unknown, lines: LineCounter): YamlProblem | undefined {
  const walk = new StructureWalk(lines);
  try {
    walk.size(root, 0);
    return undefined;
  } catch (error) {
    if (error instanceof Refused) return error.problem;
    throw error;
  }
}

/**
 * Computes the expanded size of every node bottom-up, in document order. An
 * anchor always comes before its aliases, so an alias's target is either
 * finished (its size is known) or an ancestor of the alias (a cycle).
 */
class StructureWalk {
  private readonly anchors = new Map<string, YamlNode>();
  private readonly sizes = new Map<YamlNode, number>();
  private readonly open = new Set<YamlNode>();
  private marks = 0;
  private added = 0;

  constructor(private readonly lines: LineCounter) {}

  size(value: unknown, depth: number): number {
    if (value === null || value === undefined) return 1;
    const node = value as YamlNode;
    if (depth > MAX_NESTING) this.refuse(node, `is nested more than ${MAX_NESTING} levels deep`);
    if (isAlias(node)) return this.alias(node);
    if (!isScalar(node) && !isMap(node) && !isSeq(node)) return 1;
    if (node.anchor) {
      this.mark(node);
      this.anchors.set(node.anchor, node);
    }
    this.open.add(node);
    let total = 1;
    if (isMap(node)) {
      const keys = new Set<unknown>();
      for (const pair of node.items) {
        const key = pair.key as YamlNode | null;
        if (isScalar(key)) {
          if (keys.has(key.value)) {
            this.refuse(
              key,
              `key ${JSON.stringify(String(key.value))} is given twice (map keys must be unique)`,
            );
          }
          keys.add(key.value);
        }
        total += this.size(key, depth + 1) + this.size(pair.value, depth + 1);
      }
    } else if (isSeq(node)) {
      for (const item of node.items) total += this.size(item, depth + 1);
    }
    this.open.delete(node);
    this.sizes.set(node, total);
    return total;
  }

  private alias(node: YamlNode & { source: string }): number {
    this.mark(node);
    const target = this.anchors.get(node.source);
    if (!target) this.refuse(node, `alias *${node.source} has no anchor &${node.source} before it`);
    if (this.open.has(target!)) this.refuse(node, `alias *${node.source} is inside the node it refers to`);
    const size = this.sizes.get(target!) ?? 1;
    this.added += size;
    if (this.added > MAX_ALIAS_EXPANSION) {
      this.refuse(
        node,
        `aliases expand to more than ${MAX_ALIAS_EXPANSION} nodes (an alias bomb?); write the values out instead`,
      );
    }
    return size;
  }

  private mark(node: YamlNode): void {
    this.marks += 1;
    if (this.marks > MAX_ANCHORS_AND_ALIASES) {
      this.refuse(node, `has more than ${MAX_ANCHORS_AND_ALIASES} anchors and aliases`);
    }
  }

  private refuse(node: YamlNode, message: string): never {
    const line = node.range ? this.lines.linePos(node.range[0]).line : null;
    throw new Refused({ line, message });
  }
}
