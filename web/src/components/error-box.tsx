import { explain } from "../api/errors.js";

/** An API error in words: what happened, the server's own message, and what to do. */
export function ErrorBox({ error, compact = false }: { error: unknown; compact?: boolean }) {
  if (!error) return null;
  const e = explain(error);
  return (
    <div class={`error-box${compact ? " compact" : ""}`} role="alert" data-code={e.code ?? undefined}>
      <strong>{e.title}</strong>
      <span class="error-message">{e.message}</span>
      {e.hint && <span class="error-hint">{e.hint}</span>}
    </div>
  );
}
