// Differential-test oracle for older signed versions: signs with @azure/storage-blob,
// which, unlike the Python SDK, lets the caller choose `version`.
//
// Same protocol as oracle.py: JSON lines on stdin ({"id", "kind", "flags"}), one JSON
// line per case on stdout ({"id", "token"} or {"id", "error"}). Kinds: account,
// container, blob, directory. The test compares only `sig` with these tokens: the JS
// SDK orders token parameters and some permission letters differently from the Python
// SDK (e.g. blob "racwdxtmeiy" vs "racwdxytmei", services "btqf" vs "bqtf"), so cases
// sent here avoid the letters whose order differs.
//
// SDK quirks mapped here (read from the pinned SDK's dist/commonjs/sas sources):
// - the user delegation layouts for 2020-12-06 and 2025-07-05 always sign an empty
//   agentObjectId (suoid): cases with suoid are refused rather than signed wrongly;
// - isDirectory is honoured only from 2020-02-10 (older layouts sign sr=b).
import { createRequire } from "node:module";
import readline from "node:readline";

const require = createRequire(import.meta.url);
const {
  StorageSharedKeyCredential,
  generateBlobSASQueryParameters,
  generateAccountSASQueryParameters,
  BlobSASPermissions,
  ContainerSASPermissions,
  AccountSASPermissions,
  AccountSASServices,
  AccountSASResourceTypes,
} = require("@azure/storage-blob");

const KNOWN_FLAGS = new Set([
  "--account-name", "--account-key", "--user-delegation-key", "--permissions", "--start",
  "--expiry", "--ip", "--protocol", "--sas-version", "--services", "--resource-types",
  "--container-name", "--name", "--snapshot", "--version-id", "--policy-name",
  "--encryption-scope", "--cache-control", "--content-disposition", "--content-encoding",
  "--content-language", "--content-type", "--authorized-user-object-id",
  "--unauthorized-user-object-id", "--correlation-id", "--delegated-user-object-id",
  "--request-header", "--request-query",
]);

const date = (s) => (s === undefined ? undefined : new Date(s));

function ipRange(ip) {
  if (ip === undefined) return undefined;
  const [start, end] = ip.split("-");
  return end === undefined ? { start } : { start, end };
}

function nameValuePairs(items) {
  if (!items || items.length === 0) return undefined;
  const pairs = {};
  for (const item of items) {
    const i = item.indexOf(":");
    pairs[item.slice(0, i)] = item.slice(i + 1);
  }
  return pairs;
}

function sign(kind, flags) {
  const unknown = Object.keys(flags).filter((f) => !KNOWN_FLAGS.has(f));
  if (unknown.length) throw new Error(`flags not supported by the JS oracle: ${unknown}`);
  const version = flags["--sas-version"];
  if (!version) throw new Error("the JS oracle needs an explicit --sas-version");
  const account = flags["--account-name"];

  if (kind === "account") {
    const credential = new StorageSharedKeyCredential(account, flags["--account-key"]);
    return generateAccountSASQueryParameters(
      {
        version,
        permissions: AccountSASPermissions.parse(flags["--permissions"]),
        services: AccountSASServices.parse(flags["--services"]).toString(),
        resourceTypes: AccountSASResourceTypes.parse(flags["--resource-types"]).toString(),
        startsOn: date(flags["--start"]),
        expiresOn: date(flags["--expiry"]),
        ipRange: ipRange(flags["--ip"]),
        protocol: flags["--protocol"],
        encryptionScope: flags["--encryption-scope"],
      },
      credential,
    ).toString();
  }
  if (!["container", "blob", "directory"].includes(kind)) {
    throw new Error(`the JS oracle does not sign kind ${kind}`);
  }
  const isBlob = kind !== "container";
  const letters = flags["--permissions"];
  const values = {
    version,
    containerName: flags["--container-name"],
    blobName: isBlob ? flags["--name"] : undefined,
    isDirectory: kind === "directory" ? true : undefined,
    snapshotTime: flags["--snapshot"],
    versionId: flags["--version-id"],
    permissions:
      letters === undefined
        ? undefined
        : isBlob
          ? BlobSASPermissions.parse(letters)
          : ContainerSASPermissions.parse(letters),
    startsOn: date(flags["--start"]),
    expiresOn: date(flags["--expiry"]),
    ipRange: ipRange(flags["--ip"]),
    protocol: flags["--protocol"],
    identifier: flags["--policy-name"],
    encryptionScope: flags["--encryption-scope"],
    cacheControl: flags["--cache-control"],
    contentDisposition: flags["--content-disposition"],
    contentEncoding: flags["--content-encoding"],
    contentLanguage: flags["--content-language"],
    contentType: flags["--content-type"],
    preauthorizedAgentObjectId: flags["--authorized-user-object-id"],
    correlationId: flags["--correlation-id"],
    delegatedUserObjectId: flags["--delegated-user-object-id"],
    requestHeaders: nameValuePairs(flags["--request-header"]),
    requestQueryParameters: nameValuePairs(flags["--request-query"]),
  };
  if (kind === "directory" && version < "2020-02-10") {
    throw new Error("the JS SDK signs a directory SAS only from 2020-02-10");
  }
  const key = flags["--user-delegation-key"];
  if (key === undefined) {
    const credential = new StorageSharedKeyCredential(account, flags["--account-key"]);
    return generateBlobSASQueryParameters(values, credential).toString();
  }
  if (flags["--unauthorized-user-object-id"] !== undefined && version < "2026-04-06") {
    throw new Error("the JS SDK signs suoid as empty in user delegation layouts before 2026-04-06");
  }
  const userDelegationKey = {
    signedObjectId: key.signedOid,
    signedTenantId: key.signedTid,
    signedStartsOn: new Date(key.signedStart),
    signedExpiresOn: new Date(key.signedExpiry),
    signedService: key.signedService,
    signedVersion: key.signedVersion,
    signedDelegatedUserTenantId: key.signedDelegatedUserTid,
    value: key.value,
  };
  return generateBlobSASQueryParameters(values, userDelegationKey, account).toString();
}

const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) continue;
  const testCase = JSON.parse(line);
  let result;
  try {
    result = { id: testCase.id, token: sign(testCase.kind, testCase.flags) };
  } catch (error) {
    result = { id: testCase.id, error: String(error && error.message ? error.message : error) };
  }
  process.stdout.write(JSON.stringify(result) + "\n");
}
