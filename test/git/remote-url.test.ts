import { describe, expect, it } from "vitest";
import { basicAuthHeader, credentialEnv, remoteSecrets } from "../../src/git/git-env.js";
import { httpOrigin, mirrorName, redactUrl, remoteKind, remoteUrlProblem } from "../../src/git/remote-url.js";

describe("remoteKind", () => {
  it("tells ssh, http, git, file and local remotes apart", () => {
    expect(remoteKind("git@github.com:acme/shop.git")).toBe("ssh");
    expect(remoteKind("ssh://git@github.com/acme/shop.git")).toBe("ssh");
    expect(remoteKind("ssh://git@[::1]:2222/acme/shop.git")).toBe("ssh");
    expect(remoteKind("https://github.com/acme/shop.git")).toBe("http");
    expect(remoteKind("https://[2001:db8::1]/acme/shop.git")).toBe("http");
    expect(remoteKind("http://127.0.0.1:8080/shop")).toBe("http");
    expect(remoteKind("git://git.example.com/shop.git")).toBe("git");
    expect(remoteKind("file:///srv/git/shop.git")).toBe("file");
    expect(remoteKind("/srv/git/shop.git")).toBe("local");
    expect(remoteKind("/srv/git/with space.git")).toBe("local");
  });

  it("refuses transport helpers, option-like URLs and hosts, relative paths, control characters and other schemes", () => {
    const refused: Array<[string, string]> = [
      ["ext::sh -c id", "transport helper"],
      ["fd::3", "transport helper"],
      ["foo::bar", "transport helper"],
      ["--upload-pack=touch /tmp/x", "starts with '-'"],
      ["-uhack", "starts with '-'"],
      ["ssh://-oProxyCommand=touch%20x/repo", "invalid host"],
      ["git@-oProxyCommand=x:repo", "invalid host"],
      ["-oProxyCommand=x@host:repo", "starts with '-'"],
      ["host:", "no repository path"],
      ["host:-repo", "no repository path"],
      ["https://h/x\nid", "control characters"],
      ["ssh://a b/c", "white space"],
      ["ftp://h/x", "unsupported scheme"],
      ["file://elsewhere.example/x", "file:// URLs are local"],
      ["./shop", "relative path"],
      ["shop", "relative path"],
      ["", "empty"],
    ];
    for (const [url, why] of refused) {
      expect(() => remoteKind(url), JSON.stringify(url)).toThrow(
        expect.objectContaining({ code: "E_CONFIG", message: expect.stringContaining(why) }),
      );
      expect(remoteUrlProblem(url), JSON.stringify(url)).toContain(why);
    }
  });

  it("never repeats a URL's credentials in the problem", () => {
    expect(remoteUrlProblem("https://bot:s3cret@h.example/x y")).not.toContain("s3cret");
    expect(() => remoteKind("https://bot:s3cret@h.example/x y")).toThrow(
      expect.objectContaining({ message: expect.not.stringContaining("s3cret") }),
    );
  });
});

describe("credentials in URLs", () => {
  it("are stripped from anything printed and listed as secrets", () => {
    expect(redactUrl("fatal: unable to access 'https://bot:hunter22@example.com/x.git/': 403")).toBe(
      "fatal: unable to access 'https://example.com/x.git/': 403",
    );
    expect(redactUrl("git@github.com:acme/shop.git")).toBe("git@github.com:acme/shop.git");
    expect(remoteSecrets("https://bot:p%40ss-word@example.com/x.git", {})).toEqual(
      expect.arrayContaining(["bot:p%40ss-word", "p%40ss-word", "p@ss-word"]),
    );
  });
});

describe("token header", () => {
  it("is environment-only config scoped to the remote's origin", () => {
    const env = credentialEnv("https://git.example.com:8443/acme/shop.git", { token: "tok-123456" }, "/w");
    expect(env).toMatchObject({
      GIT_CONFIG_COUNT: "1",
      GIT_CONFIG_KEY_0: "http.https://git.example.com:8443/.extraHeader",
      GIT_CONFIG_VALUE_0: `Authorization: Basic ${Buffer.from("x-access-token:tok-123456").toString("base64")}`,
      GIT_SSH: "/w",
    });
    expect(httpOrigin("https://u:p@host.example/a/b")).toBe("https://host.example/");
    expect(basicAuthHeader("t")).toBe("Authorization: Basic eC1hY2Nlc3MtdG9rZW46dA==");
  });

  it("is not sent to ssh remotes, and the ssh settings travel as variables", () => {
    const env = credentialEnv(
      "git@github.com:acme/shop.git",
      { token: "tok-123456", sshKeyFile: "/k", knownHostsFile: "/kh" },
      "/w",
    );
    expect(env["GIT_CONFIG_COUNT"]).toBe("0");
    expect(env).toMatchObject({ TURNOUT_SSH_KEY: "/k", TURNOUT_KNOWN_HOSTS: "/kh", GIT_SSH_VARIANT: "ssh" });
  });
});

describe("mirrorName", () => {
  it("is 24 hex digits of sha256 of the URL, never the URL", () => {
    const name = mirrorName("https://bot:secret@example.com/acme/shop.git");
    expect(name).toMatch(/^[0-9a-f]{24}\.git$/);
    expect(mirrorName("https://example.com/acme/shop.git")).not.toBe(name);
  });
});
