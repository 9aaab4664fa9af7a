// carbon-points for partners in Node (v18+), with nothing but node:crypto: request signing,
// identity-link tokens and claim vouchers. The README's "Partners in other languages" walks
// through it; tests/integrations/test_node_example.py runs it against the service.
//
//   export CARBON_POINTS_KEY_ID=pk_... CARBON_POINTS_SECRET=cpsk_...
//   node partner.mjs sign POST /v1/partner/events '{"external_id":...}' [WEBHOOK_ID TIMESTAMP]
//       -> the four headers, as JSON (send the body byte for byte as given)
//   node partner.mjs link-token SUBJECT_REF TOKEN_ID [TTL_SECONDS]     -> a JWT
//   node partner.mjs voucher '{"external_id":...,"action_type":...}' [TTL_SECONDS] -> a JWT
//   node partner.mjs token '{"typ":"link",...}'     -> a JWT of exactly these claims (vectors)
//
// A JWT library makes an equivalent token (the header's keys may come in another order):
// with jsonwebtoken, jwt.sign(claims, secret, { algorithm: "HS256", keyid: keyId, noTimestamp: true })
import { createHmac, randomBytes } from "node:crypto";
import { pathToFileURL } from "node:url";

// --- request signing ---------------------------------------------------------------------
// The string to sign is {key_id}.{webhook_id}.{timestamp}.{METHOD}.{path_with_query}.{body};
// the signature is "v1," + standard base64 of HMAC-SHA256(secret as UTF-8, that string).
export function signRequest({ keyId, secret, webhookId, timestamp, method, path, body }) {
  const content = Buffer.concat([
    Buffer.from(`${keyId}.${webhookId}.${timestamp}.${method.toUpperCase()}.${path}.`, "utf8"),
    Buffer.isBuffer(body) ? body : Buffer.from(body, "utf8"),
  ]);
  const signature = createHmac("sha256", Buffer.from(secret, "utf8")).update(content).digest("base64");
  return {
    "webhook-key-id": keyId,
    "webhook-id": webhookId,
    "webhook-timestamp": String(timestamp),
    "webhook-signature": `v1,${signature}`,
  };
}

// A fresh id for each HTTP attempt: msg_ + 26 lower-case base32 characters (128 bits).
export function newWebhookId() {
  const alphabet = "abcdefghijklmnopqrstuvwxyz234567";
  let bits = 0n;
  for (const byte of randomBytes(16)) bits = (bits << 8n) | BigInt(byte);
  bits <<= 2n; // 128 bits -> 26 groups of 5
  let out = "";
  for (let i = 25; i >= 0; i--) out += alphabet[Number((bits >> BigInt(5 * i)) & 31n)];
  return `msg_${out}`;
}

// --- tokens: standard JWTs, HS256, the partner key id as the header's kid -------------------
const base64url = (data) => Buffer.from(data).toString("base64url");

export function makeToken({ keyId, secret, claims }) {
  const header = { alg: "HS256", kid: keyId, typ: "JWT" };
  const signingInput = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
  const signature = createHmac("sha256", Buffer.from(secret, "utf8")).update(signingInput).digest("base64url");
  return `${signingInput}.${signature}`;
}

const inSeconds = (ttl) => Math.floor(Date.now() / 1000) + ttl;

// Proves the app user owns subjectRef (a card or account number) at this partner.
export function makeLinkToken({ keyId, secret, subjectRef, tokenId, ttlSeconds = 600 }) {
  return makeToken({ keyId, secret, claims: { typ: "link", jti: tokenId, sub: subjectRef, exp: inSeconds(ttlSeconds) } });
}

// A voucher for one action (a receipt, a smart bin): whoever scans it first is credited.
// The event carries no subject_ref; its external_id is the token's jti (single use).
export function makeVoucher({ keyId, secret, event, ttlSeconds = 7 * 86400 }) {
  const { subject_ref: _ignored, ...body } = event;
  return makeToken({ keyId, secret, claims: { typ: "voucher", jti: body.external_id, event: body, exp: inSeconds(ttlSeconds) } });
}

// --- the command line ------------------------------------------------------------------------
function main(argv) {
  const keyId = process.env.CARBON_POINTS_KEY_ID;
  const secret = process.env.CARBON_POINTS_SECRET;
  if (!keyId || !secret) throw new Error("set CARBON_POINTS_KEY_ID and CARBON_POINTS_SECRET");
  const [command, ...args] = argv;
  if (command === "sign") {
    const [method, path, body, webhookId, timestamp] = args;
    const headers = signRequest({
      keyId,
      secret,
      webhookId: webhookId ?? newWebhookId(),
      timestamp: timestamp ? Number(timestamp) : Math.floor(Date.now() / 1000),
      method,
      path,
      body: body ?? "",
    });
    return JSON.stringify(headers);
  }
  if (command === "link-token") {
    const [subjectRef, tokenId, ttl] = args;
    return makeLinkToken({ keyId, secret, subjectRef, tokenId, ttlSeconds: ttl ? Number(ttl) : 600 });
  }
  if (command === "voucher") {
    const [event, ttl] = args;
    return makeVoucher({ keyId, secret, event: JSON.parse(event), ttlSeconds: ttl ? Number(ttl) : 7 * 86400 });
  }
  if (command === "token") {
    return makeToken({ keyId, secret, claims: JSON.parse(args[0]) }); // any claims, as given
  }
  throw new Error("usage: partner.mjs sign|link-token|voucher|token ...");
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    console.log(main(process.argv.slice(2)));
  } catch (error) {
    console.error(`error: ${error.message}`);
    process.exit(2);
  }
}
