#!/usr/bin/env node
// A small OpenID Connect provider for the single-sign-on browser test: discovery, a JWKS with a
// key generated at start, an authorization page with a "Sign in" button (authorization code
// flow, PKCE S256 required) and a token endpoint that returns an RS256 ID token. It only ever
// knows one person, Ada. Prints `issuer <url>` and serves until stdin closes or it is killed.
//
//   node ui/e2e/oidc-provider.mjs [client-id]

import { createHash, createSign, generateKeyPairSync, randomBytes } from "node:crypto";
import { createServer } from "node:http";

const CLIENT_ID = process.argv[2] ?? "agenttier-ui";
const KID = "e2e-key-1";
const USER = { sub: "ada", email: "ada@example.test", name: "Ada Lovelace", groups: ["engineering"] };

const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const jwk = { ...publicKey.export({ format: "jwk" }), kid: KID, alg: "RS256", use: "sig" };
const b64u = (data) => Buffer.from(data).toString("base64url");
const codes = new Map();
let issuer = "";

function sign(claims) {
  const head = b64u(JSON.stringify({ alg: "RS256", typ: "JWT", kid: KID }));
  const body = b64u(JSON.stringify(claims));
  const signer = createSign("RSA-SHA256");
  signer.update(`${head}.${body}`);
  return `${head}.${body}.${b64u(signer.sign(privateKey))}`;
}

const escape = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

function send(res, status, body, type = "application/json") {
  res.writeHead(status, {
    "Content-Type": type,
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "Content-Type",
    "Cache-Control": "no-store",
  });
  res.end(typeof body === "string" ? body : JSON.stringify(body));
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString());
}

const server = createServer(async (req, res) => {
  const url = new URL(req.url, issuer);
  if (req.method === "OPTIONS") return send(res, 204, "");
  if (url.pathname === "/.well-known/openid-configuration") {
    return send(res, 200, {
      issuer,
      authorization_endpoint: `${issuer}/authorize`,
      token_endpoint: `${issuer}/token`,
      jwks_uri: `${issuer}/jwks`,
      response_types_supported: ["code"],
      code_challenge_methods_supported: ["S256"],
      id_token_signing_alg_values_supported: ["RS256"],
    });
  }
  if (url.pathname === "/jwks") return send(res, 200, { keys: [jwk] });
  if (url.pathname === "/authorize" && req.method === "GET") {
    const p = url.searchParams;
    const problems = [];
    if (p.get("response_type") !== "code") problems.push("response_type must be code");
    if (p.get("client_id") !== CLIENT_ID) problems.push("unknown client_id");
    if (p.get("code_challenge_method") !== "S256" || !p.get("code_challenge")) problems.push("PKCE S256 is required");
    if (!p.get("redirect_uri") || !p.get("state")) problems.push("redirect_uri and state are required");
    if (problems.length) return send(res, 400, `<h1>Bad request</h1><p>${escape(problems.join("; "))}</p>`, "text/html");
    const hidden = ["redirect_uri", "state", "code_challenge"]
      .map((k) => `<input type="hidden" name="${k}" value="${escape(p.get(k))}">`)
      .join("");
    return send(
      res,
      200,
      `<!doctype html><html lang="en"><head><title>Example identity provider</title></head>
<body style="font-family: sans-serif; max-width: 28rem; margin: 4rem auto">
<h1>Example identity provider</h1><p>Application <code>${escape(CLIENT_ID)}</code> asks who you are.</p>
<form method="post" action="/authorize">${hidden}<button type="submit">Sign in as ${escape(USER.name)}</button></form>
</body></html>`,
      "text/html",
    );
  }
  if (url.pathname === "/authorize" && req.method === "POST") {
    const form = await readBody(req);
    const code = b64u(randomBytes(24));
    codes.set(code, { redirectUri: form.get("redirect_uri"), challenge: form.get("code_challenge") });
    const target = new URL(form.get("redirect_uri"));
    target.searchParams.set("code", code);
    target.searchParams.set("state", form.get("state"));
    res.writeHead(302, { Location: target.toString() });
    return res.end();
  }
  if (url.pathname === "/token" && req.method === "POST") {
    const form = await readBody(req);
    const grant = codes.get(form.get("code") ?? "");
    codes.delete(form.get("code") ?? "");
    const verifier = form.get("code_verifier") ?? "";
    const challenge = createHash("sha256").update(verifier).digest("base64url");
    if (
      form.get("grant_type") !== "authorization_code" ||
      !grant ||
      form.get("client_id") !== CLIENT_ID ||
      form.get("redirect_uri") !== grant.redirectUri ||
      challenge !== grant.challenge
    ) {
      return send(res, 400, { error: "invalid_grant" });
    }
    const now = Math.floor(Date.now() / 1000);
    const idToken = sign({ iss: issuer, aud: CLIENT_ID, iat: now, exp: now + 600, ...USER });
    return send(res, 200, { token_type: "Bearer", id_token: idToken, access_token: idToken, expires_in: 600 });
  }
  send(res, 404, { error: "not found" });
});

server.listen(0, "127.0.0.1", () => {
  issuer = `http://127.0.0.1:${server.address().port}`;
  console.log(`issuer ${issuer}`);
});
process.stdin.resume();
process.stdin.on("end", () => process.exit(0));
