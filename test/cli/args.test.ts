import { InvalidArgumentError } from "commander";
import { describe, expect, it } from "vitest";
import { collectParam, parseDeployRef, parseName, parseParam, parsePositiveInt } from "../../src/cli/args.js";

describe("parseParam", () => {
  it("splits at the first '=' only, so values may contain '='", () => {
    expect(parseParam("query=a=b&c=d")).toEqual(["query", "a=b&c=d"]);
  });

  it("accepts an empty value", () => {
    expect(parseParam("FLAG=")).toEqual(["FLAG", ""]);
  });

  it.each(["novalue", "=value", "1abc=x", "bad-name=x", "a b=x", "__proto__=x"])("rejects %j", (value) => {
    expect(() => parseParam(value)).toThrow(InvalidArgumentError);
  });

  it("collects repeated params, the last value of a name winning", () => {
    let params = collectParam("a=1");
    params = collectParam("b=x=y", params);
    params = collectParam("a=2", params);
    expect(params).toEqual({ a: "2", b: "x=y" });
  });
});

describe("parseDeployRef", () => {
  it("reads a numeric id", () => {
    expect(parseDeployRef("17")).toEqual({ id: 17 });
  });

  it("reads APP/ENV#N", () => {
    expect(parseDeployRef("shop/staging#4")).toEqual({ app: "shop", env: "staging", number: 4 });
  });

  it.each(["0", "-3", "shop/staging", "shop#4", "Shop/staging#4", "../x#1", "17abc", ""])(
    "rejects %j",
    (value) => {
      expect(() => parseDeployRef(value)).toThrow(InvalidArgumentError);
    },
  );
});

describe("names and numbers", () => {
  it("accepts valid names and rejects paths and option-looking values", () => {
    expect(parseName("app")("shop-2")).toBe("shop-2");
    expect(() => parseName("app")("../etc")).toThrow(InvalidArgumentError);
    expect(() => parseName("app")("-x")).toThrow(InvalidArgumentError);
  });

  it("accepts only positive whole numbers", () => {
    expect(parsePositiveInt("3")).toBe(3);
    for (const bad of ["0", "1.5", "x", "-1", ""]) expect(() => parsePositiveInt(bad)).toThrow();
  });
});

describe("--component name=ref", () => {
  it("accepts component names with dashes and refs with '=' and '/'", async () => {
    const { collectComponentRef } = await import("../../src/cli/args.js");
    let refs = collectComponentRef("web-ui=release/1.2");
    refs = collectComponentRef("core=a=b", refs);
    expect(refs).toEqual({ "web-ui": "release/1.2", core: "a=b" });
    expect(() => collectComponentRef("Web=main")).toThrow(/COMPONENT=REF/);
    expect(() => collectComponentRef("core=")).toThrow(/COMPONENT=REF/);
  });
});
