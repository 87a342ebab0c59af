import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

/**
 * The web UI: Preact with Vite's own JSX transform (no Babel preset), built
 * into dist/web, which `turnout server` serves at `/`. Everything is bundled
 * (no CDN, nothing fetched at run time), assets are named by their content
 * (served immutable), and no inline script is emitted, so the page runs
 * under a Content Security Policy of 'self' only. Build with
 * NODE_ENV=production (or unset): Vite does not minify under NODE_ENV=test,
 * which is why bin/build-if-changed.js sets it.
 */
export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/",
  publicDir: "public",
  oxc: {
    jsx: { runtime: "automatic", importSource: "preact" },
  },
  build: {
    outDir: fileURLToPath(new URL("../dist/web", import.meta.url)),
    emptyOutDir: true,
    target: "es2022",
    sourcemap: false,
    // An inline preload polyfill would need 'unsafe-inline'; every supported browser has modulepreload.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    reportCompressedSize: false,
  },
  server: {
    // `npx vite --config web/vite.config.ts` while `turnout server` runs on 7700.
    proxy: { "/api": "http://127.0.0.1:7700", "/healthz": "http://127.0.0.1:7700" },
  },
});
