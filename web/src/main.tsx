import { render } from "preact";
import { prefetch } from "./api/client.js";
import { storedToken } from "./api/session.js";
import { App } from "./app.js";
import { parseRoute } from "./lib/router.js";
import "./styles.css";

// The first screen's data is read while the sign-in is checked, not after.
if (storedToken() && parseRoute(location.hash).name === "overview") prefetch("/api/v1/overview");

render(<App />, document.getElementById("app")!);
