#!/usr/bin/env node
// Checks `provsync emulate salesforce` with jsforce, an independent Salesforce client:
// OAuth client credentials, sObject Collections upsert, Bulk API 2.0 upsert, Metadata
// API read/upsert of a GlobalValueSet (deactivate-on-omit, restricted picklist), SOQL
// query with paging. Exits 1 on the first mismatch.
//
// usage: node scripts/jsforce-conformance.mjs URL [CLIENT_ID CLIENT_SECRET]
// jsforce is loaded from $JSFORCE_NODE_MODULES or .ci/node/node_modules
// (installed by `npm ci --prefix .ci/node`).

import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const modules = process.env.JSFORCE_NODE_MODULES ?? path.join(here, '..', '.ci', 'node', 'node_modules');
const require = createRequire(path.join(modules, 'noop.js'));
const jsforce = require('jsforce');

const [url, clientId = 'provsync', clientSecret = 'provsync-secret'] = process.argv.slice(2);
if (!url) {
  console.error('usage: jsforce-conformance.mjs URL [CLIENT_ID CLIENT_SECRET]');
  process.exit(2);
}

const checks = [];
async function check(name, fn) {
  await fn();
  checks.push(name);
  console.log(`ok - ${name}`);
}

const conn = new jsforce.Connection({
  oauth2: { clientId, clientSecret, loginUrl: url },
  instanceUrl: url,
  version: '63.0',
});

await check('client credentials token', async () => {
  const user = await conn.authorize({ grant_type: 'client_credentials' });
  assert.ok(conn.accessToken, 'an access token');
  assert.equal(conn.instanceUrl, url);
  assert.ok(user.organizationId);
});

await check('collections upsert: created, updated, per-record errors', async () => {
  const accounts = [
    { OneKey_Id__c: 'JSF-W1', Name: 'Jsforce Hospital', Type: 'Hospital' },
    { OneKey_Id__c: 'JSF-M1', FirstName: 'Ada', LastName: 'Byron' },
    { OneKey_Id__c: 'JSF-BAD', Name: 'x'.repeat(256) },
  ];
  const first = await conn.sobject('Account').upsert(accounts, 'OneKey_Id__c', { allOrNone: false });
  assert.equal(first.length, 3);
  assert.equal(first[0].success, true);
  assert.equal(first[0].created, true);
  assert.match(first[0].id, /^001[A-Za-z0-9]{15}$/);
  assert.equal(first[1].success, true);
  assert.equal(first[2].success, false);
  assert.equal(first[2].errors[0].statusCode, 'STRING_TOO_LONG');
  const again = await conn.sobject('Account').upsert(accounts.slice(0, 2), 'OneKey_Id__c', { allOrNone: false });
  assert.deepEqual(again.map((r) => [r.success, r.created]), [[true, false], [true, false]]);
  assert.equal(again[0].id, first[0].id);
  const children = await conn.sobject('HealthcareProvider').upsert(
    [
      { OneKey_Id__c: 'JSF-H1', Name: 'Ada Byron', Account: { OneKey_Id__c: 'JSF-M1' } },
      { OneKey_Id__c: 'JSF-H2', Name: 'Nobody', Account: { OneKey_Id__c: 'JSF-MISSING' } },
    ],
    'OneKey_Id__c',
    { allOrNone: false },
  );
  assert.equal(children[0].success, true);
  assert.equal(children[1].errors[0].statusCode, 'INVALID_FIELD');
  assert.match(children[1].errors[0].message, /Foreign key external ID: JSF-MISSING not found/);
});

await check('metadata read and upsert of a GlobalValueSet', async () => {
  const empty = await conn.metadata.read('GlobalValueSet', 'OneKey_Specialty');
  assert.equal(empty.fullName, 'OneKey_Specialty');
  const values = (n) => n.map((v) => ({ fullName: v, label: v, default: false }));
  const up = await conn.metadata.upsert('GlobalValueSet', {
    fullName: 'OneKey_Specialty',
    masterLabel: 'OneKey Specialty',
    sorted: false,
    customValue: values(['Cardiology', 'Oncology']),
  });
  assert.equal(String(up.success), 'true');
  assert.equal(up.fullName, 'OneKey_Specialty');
  await conn.metadata.upsert('GlobalValueSet', {
    fullName: 'OneKey_Specialty',
    masterLabel: 'OneKey Specialty',
    sorted: false,
    customValue: values(['Cardiology']),
  });
  const read = await conn.metadata.read('GlobalValueSet', 'OneKey_Specialty');
  const list = [].concat(read.customValue);
  assert.deepEqual(list.map((v) => v.fullName), ['Cardiology', 'Oncology']);
  const oncology = list.find((v) => v.fullName === 'Oncology');
  assert.equal(String(oncology.isActive), 'false', 'an omitted value is deactivated');
  const tooLong = await conn.metadata.upsert('GlobalValueSet', {
    fullName: 'OneKey_Specialty',
    masterLabel: 'OneKey Specialty',
    sorted: false,
    customValue: values(['Cardiology', 'y'.repeat(256)]),
  });
  assert.equal(String(tooLong.success), 'false');
  const picked = await conn.sobject('Account').upsert(
    [
      { OneKey_Id__c: 'JSF-M1', LastName: 'Byron', Specialty__pc: 'Cardiology' },
      { OneKey_Id__c: 'JSF-M2', LastName: 'Lovelace', Specialty__pc: 'Oncology' },
    ],
    'OneKey_Id__c',
    { allOrNone: false },
  );
  assert.equal(picked[0].success, true);
  assert.equal(picked[1].errors[0].statusCode, 'INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST');
});

await check('bulk 2.0 upsert with results', async () => {
  const rows = ['OneKey_Id__c,Name,Role__c,Account.OneKey_Id__c'];
  for (let i = 0; i < 2100; i++) rows.push(`JSF-F${i},Facility ${i},,JSF-W1`);
  rows.push('JSF-FBAD,Bad,,JSF-MISSING');
  const res = await conn.bulk2.loadAndWaitForResults({
    object: 'HealthcarePractitionerFacility',
    operation: 'upsert',
    externalIdFieldName: 'OneKey_Id__c',
    input: rows.join('\n') + '\n',
    pollInterval: 200,
    pollTimeout: 60000,
  });
  assert.equal(res.successfulResults.length, 2100);
  assert.equal(res.failedResults.length, 1);
  assert.equal(res.unprocessedRecords.length, 0);
  assert.equal(res.successfulResults[0].sf__Created, 'true');
  assert.match(res.successfulResults[0].sf__Id, /^0cn/);
  assert.match(res.failedResults[0].sf__Error, /^INVALID_FIELD:Foreign key external ID/);
});

await check('query with paging', async () => {
  const one = await conn.query("SELECT Id, Name, Account.OneKey_Id__c FROM HealthcareProvider WHERE OneKey_Id__c = 'JSF-H1'");
  assert.equal(one.totalSize, 1);
  assert.equal(one.records[0].Account.OneKey_Id__c, 'JSF-M1');
  const count = await conn.query('SELECT COUNT() FROM HealthcarePractitionerFacility');
  assert.equal(count.totalSize, 2100);
  const all = await conn.query('SELECT Id, OneKey_Id__c FROM HealthcarePractitionerFacility').run({ autoFetch: true, maxFetch: 10000 });
  assert.equal(all.length ?? all.records.length, 2100, "2,000-row pages followed through nextRecordsUrl");
});

console.log(JSON.stringify({ ok: true, checks: checks.length }));
