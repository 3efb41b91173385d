// Checks the JavaScript bindings of edgegen-shared (built by `cargo xtask build-js`) against
// every known-answer vector in shared/testdata/vectors.json, byte for byte: JavaScript
// tooling must derive exactly what the edge and the coordinator derive.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const eg = require('../pkg/edgegen_shared.js');
// JSON.parse rounds integers above 2^53 (generation 2^64-1 is a vector); quote long integer
// generations first so they stay exact — the bindings accept generations as decimal strings.
const text = readFileSync(new URL('../../testdata/vectors.json', import.meta.url), 'utf8')
  .replace(/"(generation|stored_at)": (\d{16,})/g, '"$1": "$2"');
const vectors = JSON.parse(text);

for (const c of vectors.cache_keys) {
  test(`cache key: ${c.name}`, () => {
    const out = JSON.parse(eg.cacheKey(JSON.stringify(c.input)));
    assert.deepEqual(out, { key: c.key, path: c.path, query: c.query });
  });
}

for (const c of vectors.cache_key_errors) {
  test(`cache key error: ${c.name}`, () => {
    assert.throws(() => eg.cacheKey(JSON.stringify(c.input)), (e) => e.message === c.error);
  });
}

for (const c of vectors.surrogate_keys) {
  test(`surrogate keys: ${c.name}`, () => {
    const call = () => eg.surrogateKeys(c.tenant, BigInt(c.generation), c.origin_header ?? undefined);
    if (c.result.header !== undefined) {
      assert.equal(call(), c.result.header);
    } else {
      assert.throws(call, (e) => e.message === c.result.error);
    }
  });
}

for (const c of vectors.contract_hashes) {
  test(`contract hash: ${c.name}`, () => {
    assert.equal(eg.canonicalJson(c.document), c.canonical);
    assert.equal(eg.contractHash(c.document), c.hash);
  });
}

for (const c of vectors.manifests) {
  test(`manifest: ${c.name}`, () => {
    assert.equal(eg.signManifest(JSON.stringify(c.manifest), c.key), c.body);
    assert.deepEqual(JSON.parse(eg.verifyManifest(c.body, c.manifest.tenant, c.key)), c.manifest);
  });
}

for (const c of vectors.manifest_rejections) {
  test(`manifest rejected: ${c.name}`, () => {
    assert.throws(() => eg.verifyManifest(c.body, c.tenant, c.key), (e) => e.message === c.error);
  });
}

for (const c of vectors.leases) {
  test(`lease: ${c.name}`, () => {
    const manifest = JSON.stringify(c.manifest);
    const header = eg.signLease(manifest, c.key, BigInt(c.issued_at), BigInt(c.max_age_ms), BigInt(c.max_stale_ms));
    assert.equal(header, c.header);
    assert.equal(JSON.parse(eg.verifyLease(header, manifest, c.key, BigInt(c.issued_at), 0n)).tenant, c.manifest.tenant);
  });
}

for (const c of vectors.lease_verifications) {
  test(`lease verification: ${c.name}`, () => {
    const call = () => eg.verifyLease(c.header, JSON.stringify(c.manifest), c.key, BigInt(c.now), BigInt(c.skew_ms));
    if (c.result === 'ok') {
      assert.equal(JSON.parse(call()).generation, c.manifest.generation);
    } else {
      assert.throws(call, (e) => e.message === c.result);
    }
  });
}

for (const c of vectors.probe_tokens) {
  test(`probe token: ${c.name}`, () => {
    assert.equal(eg.mintProbeToken(c.tenant, BigInt(c.now), BigInt(c.expires_at), c.key), c.token);
  });
}

for (const c of vectors.probe_verifications) {
  test(`probe verification: ${c.name}`, () => {
    const call = () => eg.verifyProbeToken(c.token, c.tenant, BigInt(c.now), c.key);
    if (c.result === 'ok') {
      assert.deepEqual(JSON.parse(call()).tenant, c.tenant);
    } else {
      assert.throws(call, (e) => e.message === c.result);
    }
  });
}

for (const c of vectors.object_metadata) {
  test(`object metadata: ${c.name}`, () => {
    const input = JSON.stringify(c.metadata);
    assert.equal(eg.encodeObjectMetadata(input), c.encoded);
    assert.equal(eg.decodeObjectMetadata(c.encoded), eg.decodeObjectMetadata(eg.encodeObjectMetadata(input)));
  });
}

for (const c of vectors.object_metadata_errors) {
  test(`object metadata rejected: ${c.name}`, () => {
    assert.throws(() => eg.decodeObjectMetadata(c.encoded), (e) => e.message === c.error);
  });
}

test('every vector group is covered', () => {
  const groups = Object.keys(vectors).filter((k) => Array.isArray(vectors[k]));
  assert.deepEqual(groups.sort(), [
    'cache_key_errors', 'cache_keys', 'contract_hashes', 'lease_verifications', 'leases',
    'manifest_rejections', 'manifests',
    'object_metadata', 'object_metadata_errors', 'probe_tokens', 'probe_verifications', 'surrogate_keys',
  ]);
});
