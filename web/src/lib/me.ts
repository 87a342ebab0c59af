import { createContext } from "preact";
import { useContext } from "preact/hooks";
import type { MeJson } from "../../../src/http/api-types.js";

/** Who is signed in: pages show only the buttons this role may use. */
export const MeContext = createContext<MeJson | null>(null);

export function useMe(): MeJson {
  const me = useContext(MeContext);
  if (!me) throw new Error("useMe outside a signed-in page");
  return me;
}

/** Whether the signed-in token may deploy, lock and cancel in this app. */
export function mayDeploy(me: MeJson, app: string): boolean {
  return me.canDeploy && (me.apps === null || me.apps.includes(app));
}
