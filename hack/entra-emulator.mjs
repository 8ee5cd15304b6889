// A Microsoft Entra ID token endpoint for the test environment: the client-credentials grant
// with a federated client assertion (workload identity federation), and nothing else.
//
// Honest where security lives: an assertion is accepted only if it is a JWT signed by a key the
// assertion's issuer publishes (OIDC discovery + JWKS, fetched over HTTPS as Entra does; for
// the tests that is the kube-apiserver), within its time range, and whose issuer, audience and
// subject match a federated identity credential configured for the client id in that tenant.
// Everything else gets Entra's error shape (HTTP 400/401 JSON with an AADSTS code).
// The access tokens it issues are signed RS256 JWTs shaped like Entra's v1 tokens for Azure
// Storage, which Azurite accepts in `--oauth basic` mode.
//
// Started by hack/testenv.sh (component `entra`); loopback only, HTTPS only.
//
//   node hack/entra-emulator.mjs --jose-dir DIR --cert PEM --key PEM --issuer-ca PEM
//                                [--default-issuer URL] [--port 0] [--token-lifetime 3599]
//
// Endpoints:
//   POST /{tenant}/oauth2/v2.0/token          the token endpoint, as Azure's SDKs call it
//   GET  /{tenant}/v2.0/.well-known/openid-configuration, /{tenant}/discovery/v2.0/keys
//   POST /_emulator/federated-credentials      {tenantId, clientId, subject[, issuer, audiences]}
//                                              -> 201 {tenantId, clientId, objectId, ...}
//   GET  /_emulator/stats                      counts of token exchanges (see `stats` below)
// Logs one line per request to stdout; never an assertion or a token.

import { randomUUID, createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import https from "node:https";
import { createRequire } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const args = parseArgs(process.argv.slice(2));
const joseEntry = createRequire(join(args["jose-dir"], "package.json")).resolve("jose");
const jose = await import(pathToFileURL(joseEntry).href);

const ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const EXCHANGE_AUDIENCE = "api://AzureADTokenExchange";
const STORAGE_RESOURCE = "https://storage.azure.com";
// What an OIDC issuer may sign with (kube-apiserver: RS256 for an RSA key, ES256 for EC).
const ASSERTION_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"];
const MAX_BODY_BYTES = 64 * 1024;
// Keys an issuer published are refetched at most this often (a kid we do not know yet may be
// a rotated key; a forged kid must not make us hammer the issuer).
const JWKS_REFRESH_MS = 5_000;
const JWKS_CACHE_MS = 5 * 60_000;

const tokenLifetime = Number(args["token-lifetime"] ?? 3599);
const issuerCa = readFileSync(args["issuer-ca"]);
const defaultIssuer = args["default-issuer"];

// (tenant, clientId) -> { objectId, credentials: [{ issuer, subject, audiences }] }
const applications = new Map();
const stats = { succeeded: 0, failed: 0, clients: {}, errors: {} };

// The key that signs our access tokens (Azurite does not check it; real clients could).
const signing = await jose.generateKeyPair("RS256", { extractable: true });
const signingJwk = await jose.exportJWK(signing.publicKey);
signingJwk.kid = await jose.calculateJwkThumbprint(signingJwk);
signingJwk.use = "sig";
signingJwk.alg = "RS256";

class EntraError extends Error {
  constructor(status, error, code, description) {
    super(description);
    Object.assign(this, { status, error, code });
  }
}
const invalidRequest = (code, text) => new EntraError(400, "invalid_request", code, text);
const invalidClient = (code, text) => new EntraError(401, "invalid_client", code, text);

// ---------------------------------------------------------------------------------------------
// The token endpoint

async function exchange(tenant, form) {
  const grantType = requireField(form, "grant_type");
  if (grantType !== "client_credentials") {
    throw new EntraError(400, "unsupported_grant_type", 70003,
      `The app requested an unsupported grant type '${grantType}'.`);
  }
  const clientId = requireField(form, "client_id");
  const application = applications.get(appKey(tenant, clientId));
  if (!application) {
    throw new EntraError(400, "unauthorized_client", 700016,
      `Application with identifier '${clientId}' was not found in the directory '${tenant}'.`);
  }
  const scope = requireField(form, "scope");
  if (scope !== `${STORAGE_RESOURCE}/.default`) {
    throw new EntraError(400, "invalid_scope", 70011,
      `The provided value for the input parameter 'scope' is not valid. The scope ${scope} is not valid (this emulator serves ${STORAGE_RESOURCE}/.default only).`);
  }
  const assertion = form.get("client_assertion");
  if (form.get("client_assertion_type") !== ASSERTION_TYPE || !assertion) {
    throw invalidClient(7000218,
      `The request body must contain the following parameter: 'client_assertion' or 'client_secret' (with client_assertion_type '${ASSERTION_TYPE}').`);
  }

  // The issuer is read unverified only to choose whose keys verify the signature.
  let unverified;
  try {
    unverified = jose.decodeJwt(assertion);
    jose.decodeProtectedHeader(assertion);
  } catch {
    throw invalidClient(50027, "Invalid JWT token. Token format not valid.");
  }
  const issuer = unverified.iss;
  const byIssuer = application.credentials.filter((c) => c.issuer === issuer);
  if (typeof issuer !== "string" || byIssuer.length === 0) {
    throw invalidClient(700211,
      `No matching federated identity record found for presented assertion issuer '${String(issuer)}'.`);
  }

  const claims = await verify(assertion, issuer);
  const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  const byAudience = byIssuer.filter((c) => c.audiences.some((a) => audiences.includes(a)));
  if (byAudience.length === 0) {
    throw invalidClient(700212,
      `No matching federated identity record found for presented assertion audience '${audiences.join(",")}'.`);
  }
  // Case-sensitive, as Entra matches subjects.
  if (!byAudience.some((c) => c.subject === claims.sub)) {
    throw invalidClient(700213,
      `No matching federated identity record found for presented assertion subject '${String(claims.sub)}'. Check your federated identity credential Subject, Audience and Issuer against the presented assertion.`);
  }
  return issueAccessToken(tenant, clientId, application.objectId);
}

async function verify(assertion, issuer) {
  const tryVerify = async (jwks) => jose.jwtVerify(assertion, jose.createLocalJWKSet(jwks), {
    issuer,
    algorithms: ASSERTION_ALGORITHMS,
    requiredClaims: ["exp", "sub", "aud"],
    clockTolerance: 0,
  });
  try {
    let keys = await issuerKeys(issuer, false);
    try {
      return (await tryVerify(keys.jwks)).payload;
    } catch (error) {
      if (error.code !== "ERR_JWKS_NO_MATCHING_KEY") throw error;
      keys = await issuerKeys(issuer, true);
      return (await tryVerify(keys.jwks)).payload;
    }
  } catch (error) {
    if (error instanceof EntraError) throw error;
    const now = Math.floor(Date.now() / 1000);
    if (error.code === "ERR_JWT_EXPIRED" ||
        (error.code === "ERR_JWT_CLAIM_VALIDATION_FAILED" && error.claim === "nbf")) {
      const p = error.payload ?? {};
      throw invalidClient(700024,
        `Client assertion is not within its valid time range. Current time: ${isoTime(now)}, assertion valid from ${isoTime(p.nbf ?? p.iat)}, expiry time of assertion ${isoTime(p.exp)}.`);
    }
    throw invalidClient(50027,
      `Invalid JWT token. The assertion does not verify with the keys its issuer '${issuer}' publishes (${error.code ?? "error"}).`);
  }
}

// issuer -> { jwks, fetchedAt }
const keyCache = new Map();

async function issuerKeys(issuer, refresh) {
  const cached = keyCache.get(issuer);
  const age = cached ? Date.now() - cached.fetchedAt : Infinity;
  if (cached && age < (refresh ? JWKS_REFRESH_MS : JWKS_CACHE_MS)) return cached;
  try {
    const discoveryUrl = `${issuer.replace(/\/+$/, "")}/.well-known/openid-configuration`;
    const discovery = await getJson(discoveryUrl);
    if (discovery.issuer !== issuer) {
      throw new Error(`discovery document names issuer '${discovery.issuer}', not '${issuer}'`);
    }
    if (typeof discovery.jwks_uri !== "string" || !discovery.jwks_uri.startsWith("https://")) {
      throw new Error("discovery document has no https jwks_uri");
    }
    const jwks = await getJson(discovery.jwks_uri);
    if (!Array.isArray(jwks.keys)) throw new Error("JWKS has no keys");
    const entry = { jwks, fetchedAt: Date.now() };
    keyCache.set(issuer, entry);
    return entry;
  } catch (error) {
    log(`issuer keys: ${issuer}: ${error.message}`);
    throw invalidRequest(50166, `Request to External OIDC endpoint failed (issuer '${issuer}').`);
  }
}

// Anonymous HTTPS GET, as Entra fetches an issuer's public documents; trusts --issuer-ca only.
function getJson(url) {
  if (!url.startsWith("https://")) return Promise.reject(new Error(`refusing non-https ${url}`));
  return new Promise((resolve, reject) => {
    const request = https.get(url, { ca: issuerCa, timeout: 5_000 }, (response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk) => {
        body += chunk;
        if (body.length > 1_000_000) request.destroy(new Error("response too large"));
      });
      response.on("end", () => {
        if (response.statusCode !== 200) return reject(new Error(`GET ${url}: HTTP ${response.statusCode}`));
        try { resolve(JSON.parse(body)); } catch { reject(new Error(`GET ${url}: not JSON`)); }
      });
    });
    request.on("timeout", () => request.destroy(new Error(`GET ${url}: timed out`)));
    request.on("error", reject);
  });
}

async function issueAccessToken(tenant, clientId, objectId) {
  const now = Math.floor(Date.now() / 1000);
  // Entra back-dates nbf/iat by five minutes to absorb clock skew; so do we.
  const accessToken = await new jose.SignJWT({
    aud: STORAGE_RESOURCE,
    iss: `https://sts.windows.net/${tenant}/`,
    oid: objectId,
    sub: objectId,
    tid: tenant,
    appid: clientId,
    appidacr: "2",
    idtyp: "app",
    ver: "1.0",
    uti: randomUUID(),
  })
    .setProtectedHeader({ alg: "RS256", typ: "JWT", kid: signingJwk.kid })
    .setIssuedAt(now - 300)
    .setNotBefore(now - 300)
    .setExpirationTime(now + tokenLifetime)
    .sign(signing.privateKey);
  return {
    token_type: "Bearer",
    expires_in: tokenLifetime,
    ext_expires_in: tokenLifetime,
    access_token: accessToken,
  };
}

function requireField(form, name) {
  const value = form.get(name);
  if (!value) {
    throw invalidRequest(900144, `The request body must contain the following parameter: '${name}'.`);
  }
  return value;
}

// ---------------------------------------------------------------------------------------------
// Test administration

function addFederatedCredential(body) {
  const text = (name, value, max = 256) => {
    if (typeof value !== "string" || value.length === 0 || value.length > max) {
      throw new Error(`${name} must be a non-empty string of at most ${max} characters`);
    }
    return value;
  };
  const tenantId = text("tenantId", body.tenantId, 64);
  const clientId = text("clientId", body.clientId, 64);
  const subject = text("subject", body.subject, 600);
  const issuer = text("issuer", body.issuer ?? defaultIssuer, 600);
  if (!issuer.startsWith("https://")) throw new Error("issuer must be an https URL");
  const audiences = body.audiences ?? [EXCHANGE_AUDIENCE];
  if (!Array.isArray(audiences) || audiences.length === 0) throw new Error("audiences must be a non-empty array");
  audiences.forEach((a) => text("audiences[]", a, 600));

  const key = appKey(tenantId, clientId);
  if (!applications.has(key)) {
    applications.set(key, { objectId: objectIdFor(tenantId, clientId), credentials: [] });
  }
  const application = applications.get(key);
  application.credentials.push({ issuer, subject, audiences });
  return { tenantId, clientId, objectId: application.objectId, issuer, subject, audiences };
}

// The service principal's object id: stable per (tenant, client id), so skoid is predictable.
function objectIdFor(tenantId, clientId) {
  const h = createHash("sha256").update(`${tenantId}/${clientId}`).digest("hex");
  const variant = ((parseInt(h[16], 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

function appKey(tenant, clientId) {
  return `${tenant}\u0000${clientId}`;
}

function count(clientId, outcome, code) {
  stats[outcome] += 1;
  // Only registered clients get their own counters (the map stays bounded by the tests).
  if (clientId !== undefined) {
    const perClient = (stats.clients[clientId] ??= { succeeded: 0, failed: 0 });
    perClient[outcome] += 1;
  }
  if (code !== undefined) stats.errors[`AADSTS${code}`] = (stats.errors[`AADSTS${code}`] ?? 0) + 1;
}

// ---------------------------------------------------------------------------------------------
// HTTP

function issuerUrl(tenant) {
  return `${publicBase}/${tenant}/v2.0`;
}

let publicBase = "";

async function handle(request, response) {
  const url = new URL(request.url, "https://127.0.0.1");
  const path = url.pathname;
  const segments = path.split("/").filter(Boolean);

  if (request.method === "POST" && segments.length === 4 && segments[1] === "oauth2" &&
      segments[2] === "v2.0" && segments[3] === "token") {
    const tenant = decodeURIComponent(segments[0]);
    let clientId;
    try {
      const form = new URLSearchParams(await readBody(request));
      const asked = form.get("client_id");
      if (asked && applications.has(appKey(tenant, asked))) clientId = asked;
      const body = await exchange(tenant, form);
      count(clientId, "succeeded");
      log(`token tenant=${tenant} client=${clientId} ok`);
      return send(response, 200, body, { "Cache-Control": "no-store, no-cache", Pragma: "no-cache" });
    } catch (error) {
      if (!(error instanceof EntraError)) throw error;
      count(clientId, "failed", error.code);
      log(`token tenant=${tenant} client=${clientId ?? "-"} AADSTS${error.code}`);
      return sendEntraError(response, error);
    }
  }
  if (request.method === "GET" && segments.length === 4 && segments[1] === "v2.0" &&
      segments[2] === ".well-known" && segments[3] === "openid-configuration") {
    const tenant = segments[0];
    return send(response, 200, {
      issuer: issuerUrl(tenant),
      token_endpoint: `${publicBase}/${tenant}/oauth2/v2.0/token`,
      jwks_uri: `${publicBase}/${tenant}/discovery/v2.0/keys`,
      token_endpoint_auth_methods_supported: ["private_key_jwt"],
      id_token_signing_alg_values_supported: ["RS256"],
      response_types_supported: ["token"],
      subject_types_supported: ["pairwise"],
    });
  }
  if (request.method === "GET" && segments.length === 4 && segments[1] === "discovery" &&
      segments[2] === "v2.0" && segments[3] === "keys") {
    return send(response, 200, { keys: [signingJwk] });
  }
  if (request.method === "POST" && path === "/_emulator/federated-credentials") {
    let created;
    try {
      created = addFederatedCredential(JSON.parse(await readBody(request)));
    } catch (error) {
      return send(response, 400, { error: error.message });
    }
    log(`federated credential tenant=${created.tenantId} client=${created.clientId} subject=${created.subject}`);
    return send(response, 201, created);
  }
  if (request.method === "GET" && path === "/_emulator/stats") {
    return send(response, 200, stats);
  }
  return send(response, 404, { error: "not_found", error_description: `${request.method} ${path}` });
}

function sendEntraError(response, error) {
  const now = new Date();
  const traceId = randomUUID();
  const correlationId = randomUUID();
  const timestamp = now.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  return send(response, error.status, {
    error: error.error,
    error_description: `AADSTS${error.code}: ${error.message} Trace ID: ${traceId} Correlation ID: ${correlationId} Timestamp: ${timestamp}`,
    error_codes: [error.code],
    timestamp,
    trace_id: traceId,
    correlation_id: correlationId,
    error_uri: `${publicBase}/error?code=${error.code}`,
  });
}

function send(response, status, body, headers = {}) {
  const text = JSON.stringify(body);
  response.writeHead(status, {
    "Content-Type": "application/json; charset=utf-8",
    "Content-Length": Buffer.byteLength(text),
    ...headers,
  });
  response.end(text);
}

function readBody(request) {
  return new Promise((resolve, reject) => {
    let body = "";
    request.setEncoding("utf8");
    request.on("data", (chunk) => {
      body += chunk;
      if (body.length > MAX_BODY_BYTES) {
        reject(invalidRequest(900144, "The request body is too large."));
        request.destroy();
      }
    });
    request.on("end", () => resolve(body));
    request.on("error", reject);
  });
}

function isoTime(seconds) {
  return typeof seconds === "number" ? new Date(seconds * 1000).toISOString() : "(absent)";
}

function log(line) {
  process.stdout.write(`${new Date().toISOString()} ${line}\n`);
}

function parseArgs(argv) {
  const parsed = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith("--") || argv[i + 1] === undefined) {
      process.stderr.write(`usage: node entra-emulator.mjs --jose-dir DIR --cert PEM --key PEM --issuer-ca PEM [--default-issuer URL] [--port N] [--token-lifetime S]\n`);
      process.exit(2);
    }
    parsed[argv[i].slice(2)] = argv[i + 1];
  }
  for (const required of ["jose-dir", "cert", "key", "issuer-ca"]) {
    if (!parsed[required]) {
      process.stderr.write(`entra-emulator: --${required} is required\n`);
      process.exit(2);
    }
  }
  return parsed;
}

const server = https.createServer(
  { cert: readFileSync(args.cert), key: readFileSync(args.key) },
  (request, response) => {
    handle(request, response).catch((error) => {
      log(`internal error: ${error.stack}`);
      if (!response.headersSent) send(response, 500, { error: "server_error" });
    });
  },
);
server.listen(Number(args.port ?? 0), "127.0.0.1", () => {
  publicBase = `https://127.0.0.1:${server.address().port}`;
  log(`entra emulator listening on ${publicBase}`);
});
