// Unit tests of the settings page's pure functions (ui-assets/settings.js) and
// static checks of its HTML fragment and CSS. Node's built-in runner, no
// packages: node --test tests/ui/
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.join(__dirname, '..', '..');
const UI = path.join(ROOT, 'ui-assets');
const S = require('../../ui-assets/settings.js');

const QUEUE_STATUSES = ['TIMEOUT', 'FULL', 'JOINEMPTY', 'LEAVEEMPTY', 'JOINUNAVAIL', 'LEAVEUNAVAIL', 'CONTINUE', 'WITHDRAW', 'UNKNOWN'];

/** A param of feature.json in the schema's shape (featpkg schema --json: every field present). */
function schemaParam(p) {
  return {
    name: p.name,
    type: p.type,
    default: p.default,
    help: p.help,
    required: p.required === true,
    default_from: p.default_from === undefined ? null : p.default_from,
    min: p.type === 'integer' ? p.min : null,
    max: p.type === 'integer' ? p.max : null,
    values: p.type === 'enum' ? p.values : null,
  };
}

/** Every packaging/features/<id>/feature.json, as the schema action would describe it for `pbx`. */
function loadFeatures(pbx) {
  const dir = path.join(ROOT, 'packaging', 'features');
  return fs.readdirSync(dir).sort()
    .filter((id) => fs.existsSync(path.join(dir, id, 'feature.json')))
    .map((id) => {
      const def = JSON.parse(fs.readFileSync(path.join(dir, id, 'feature.json'), 'utf8'));
      const reason = def.unsupported && typeof def.unsupported[pbx] === 'string' ? def.unsupported[pbx] : null;
      return { id: def.id, version: def.version, summary: def.summary, unsupported: reason, params: def.params.map(schemaParam) };
    });
}

function schemaFor(pbx, extra) {
  return Object.assign({
    pbx,
    lang: '',
    bundle: { name: 'featpkg-recipes', version: '1.0.0', description: 'recipes' },
    features: loadFeatures(pbx),
    queue_statuses: QUEUE_STATUSES,
    saved_params: {},
    allow_restart: false,
  }, extra || {});
}

function feature(schema, id) {
  return schema.features.find((f) => f.id === id);
}

// ---- strings and language ------------------------------------------------------

test('ru has every key en has, non-empty and with the same placeholders', () => {
  const en = S.STRINGS.en;
  const ru = S.STRINGS.ru;
  const placeholders = (s) => (s.match(/\{\w+\}/g) || []).sort();
  for (const key of Object.keys(en)) {
    assert.ok(Object.prototype.hasOwnProperty.call(ru, key), `ru lacks ${key}`);
    assert.equal(typeof ru[key], 'string');
    assert.notEqual(ru[key].trim(), '', `ru ${key} is empty`);
    assert.deepEqual(placeholders(ru[key]), placeholders(en[key]), `placeholders of ${key}`);
  }
  for (const key of Object.keys(ru)) {
    assert.ok(Object.prototype.hasOwnProperty.call(en, key), `ru has ${key}, en does not`);
  }
});

test('ru strings are Russian, not copies of the English ones', () => {
  const same = Object.keys(S.STRINGS.en).filter((k) => S.STRINGS.en[k] === S.STRINGS.ru[k]);
  assert.deepEqual(same, []);
  const cyrillic = Object.keys(S.STRINGS.ru).filter((k) => /[а-яё]/i.test(S.STRINGS.ru[k]));
  assert.ok(cyrillic.length > Object.keys(S.STRINGS.ru).length * 0.9);
});

test('t falls back to English, then to the key, and fills placeholders', () => {
  assert.equal(S.t('en', 'apply'), 'Apply');
  assert.equal(S.t('ru', 'apply'), 'Применить');
  assert.equal(S.t('de', 'apply'), 'Apply');
  assert.equal(S.t(undefined, 'apply'), 'Apply');
  assert.equal(S.t('ru', 'no_such_key'), 'no_such_key');
  assert.equal(S.t('en', 'hint_range', { min: 1, max: 20 }), 'Must be from 1 to 20.');
  assert.equal(S.t('ru', 'remove_confirm', { feature: 'call-waiting' }).indexOf('call-waiting') > 0, true);
  // A placeholder without a value stays visible rather than becoming "undefined".
  assert.equal(S.t('en', 'hint_range', { min: 1 }), 'Must be from 1 to {max}.');
  // Keys of Object.prototype are not strings.
  assert.equal(S.t('en', 'constructor'), 'constructor');
  assert.equal(S.t('__proto__', 'apply'), 'Apply');
});

test('pickLanguage: the first non-empty source decides; unknown languages are English', () => {
  assert.equal(S.pickLanguage('ru', 'en', 'en', 'en'), 'ru');
  assert.equal(S.pickLanguage('', 'ru', 'en', 'en'), 'ru');
  assert.equal(S.pickLanguage('', '', 'ru-ru', 'en'), 'ru');
  assert.equal(S.pickLanguage(null, undefined, 'RU_ru', 'en'), 'ru');
  assert.equal(S.pickLanguage('', '', undefined, 'ru'), 'ru');
  assert.equal(S.pickLanguage('', '', '', ''), 'en');
  assert.equal(S.pickLanguage(), 'en');
  assert.equal(S.pickLanguage('de', 'ru'), 'en');
  assert.equal(S.pickLanguage('  ', 'en-US', 'ru'), 'en');
  assert.equal(S.pickLanguage('<script>', 'ru'), 'ru');
  assert.equal(S.normalizeLang('ru-RU'), 'ru');
  assert.equal(S.normalizeLang(42), '');
});

// ---- calls ----------------------------------------------------------------------

test('actionUrl for both PBXs; refuses odd actions and PBXs', () => {
  assert.equal(S.actionUrl('mikopbx', 'schema'), '/pbxcore/api/modules/ModuleFeatpkg/schema');
  assert.equal(S.actionUrl('freepbx', 'job'), 'ajax.php?module=featpkg&command=job');
  assert.throws(() => S.actionUrl('mikopbx', '../x'));
  assert.throws(() => S.actionUrl('freepbx', 'a&b=c'));
  assert.throws(() => S.actionUrl('', 'schema'));
  assert.throws(() => S.actionUrl('asterisk', 'schema'));
});

test('encodeForm: strings as they are, objects as JSON, booleans as 1/0', () => {
  const body = S.encodeForm({ params: { 'queue-failover': { rules: '[{"queue":"1"}]' } }, features: 'a,b', allow_restart: true, skip: null, n: 3 });
  const back = new URLSearchParams(body);
  assert.deepEqual(JSON.parse(back.get('params')), { 'queue-failover': { rules: '[{"queue":"1"}]' } });
  assert.equal(back.get('features'), 'a,b');
  assert.equal(back.get('allow_restart'), '1');
  assert.equal(back.get('n'), '3');
  assert.equal(back.has('skip'), false);
  assert.equal(S.encodeForm({ x: 'a&b=c d+é' }), 'x=a%26b%3Dc%20d%2B%C3%A9');
});

test('parseReply, MikoPBX: data on success; flattened messages on failure', () => {
  assert.deepEqual(S.parseReply('mikopbx', 200, { result: true, data: { job: 'ab' }, messages: [] }), { job: 'ab' });
  assert.equal(S.parseReply('mikopbx', 200, { result: true }), null);
  assert.throws(() => S.parseReply('mikopbx', 200, { result: false, data: { code: 400 }, messages: { error: ['features: choose at least one feature'] } }),
    (e) => e.message === 'features: choose at least one feature' && e.status === 200);
  assert.throws(() => S.parseReply('mikopbx', 200, { result: false, messages: { error: ['a', 'b'], warning: 'c' } }),
    (e) => e.message === 'a\nb\nc');
  assert.throws(() => S.parseReply('mikopbx', 200, { result: false, messages: ['x', ['y']] }), (e) => e.message === 'x\ny');
  assert.throws(() => S.parseReply('mikopbx', 401, { result: false, messages: { error: ['Authentication required'] } }),
    (e) => e.message === 'Authentication required' && e.status === 401);
  assert.throws(() => S.parseReply('mikopbx', 401, null), (e) => e.message === 'Not signed in (HTTP 401).');
  assert.throws(() => S.parseReply('mikopbx', 500, null, 'ru'), (e) => e.message === 'АТС ответила HTTP 500, и ответ не удалось прочитать.');
  assert.throws(() => S.parseReply('mikopbx', 500, { result: false }), (e) => e.message === 'The PBX answered with HTTP 500.');
  // result true with an HTTP error status is still an error.
  assert.throws(() => S.parseReply('mikopbx', 502, { result: true, data: {} }));
  // A FreePBX-shaped reply is not a MikoPBX success.
  assert.throws(() => S.parseReply('mikopbx', 200, { status: true, data: {} }));
});

test('parseReply, FreePBX: data on success; message, error or HTTP status on failure', () => {
  assert.deepEqual(S.parseReply('freepbx', 200, { status: true, data: { features: [] } }), { features: [] });
  assert.throws(() => S.parseReply('freepbx', 400, { status: false, message: 'params: not JSON (Syntax error)', code: 400 }),
    (e) => e.message === 'params: not JSON (Syntax error)' && e.status === 400);
  assert.throws(() => S.parseReply('freepbx', 409, { status: false, message: 'another change is running: wait for it to finish' }),
    (e) => e.message === 'another change is running: wait for it to finish' && e.status === 409);
  assert.throws(() => S.parseReply('freepbx', 403, { error: 'ajaxRequest declined' }), (e) => e.message === 'ajaxRequest declined' && e.status === 403);
  assert.throws(() => S.parseReply('freepbx', 401, { error: 'Not Authenticated' }), (e) => e.message === 'Not Authenticated');
  assert.throws(() => S.parseReply('freepbx', 403, null), (e) => e.message === 'Refused (HTTP 403).');
  // ajaxHandler() returning false: HTTP 500, body "false".
  assert.throws(() => S.parseReply('freepbx', 500, false), (e) => e.message === 'The PBX answered with HTTP 500 and no readable reply.');
  assert.throws(() => S.parseReply('freepbx', 200, { status: false, message: 'unknown' }), (e) => e.message === 'unknown');
  // status true with an HTTP error status is still an error.
  assert.throws(() => S.parseReply('freepbx', 500, { status: true, data: {} }));
  assert.throws(() => S.parseReply('freepbx', 200, { result: true, data: {} }));
  assert.throws(() => S.parseReply('nope', 200, { status: true }));
});

function fakeFetch(replies) {
  const calls = [];
  const fn = async (url, init) => {
    calls.push({ url, init });
    const r = replies.shift();
    if (r instanceof Error) {
      throw r;
    }
    return { status: r.status, text: async () => (typeof r.body === 'string' ? r.body : JSON.stringify(r.body)) };
  };
  fn.calls = calls;
  return fn;
}

test('callAction, MikoPBX: POST form body, Bearer token after tokenManagerReady, payload back', async () => {
  let ready = false;
  const win = {
    tokenManagerReady: new Promise((resolve) => setTimeout(() => { ready = true; resolve(true); }, 5)),
    TokenManager: { get accessToken() { return ready ? 'jwt-1' : null; } },
  };
  const f = fakeFetch([{ status: 200, body: { result: true, data: { job: '0123456789abcdef' } } }]);
  const data = await S.callAction('mikopbx', 'apply', { params: { a: { b: 'c' } }, features: 'a', allow_restart: '0' }, { window: win, fetch: f });
  assert.deepEqual(data, { job: '0123456789abcdef' });
  assert.equal(f.calls.length, 1);
  const { url, init } = f.calls[0];
  assert.equal(url, '/pbxcore/api/modules/ModuleFeatpkg/apply');
  assert.equal(init.method, 'POST');
  assert.equal(init.credentials, 'same-origin');
  assert.equal(init.headers.Authorization, 'Bearer jwt-1');
  assert.match(init.headers['Content-Type'], /^application\/x-www-form-urlencoded/);
  const body = new URLSearchParams(init.body);
  assert.equal(body.get('params'), '{"a":{"b":"c"}}');
  assert.equal(body.get('features'), 'a');
  assert.equal(body.get('allow_restart'), '0');
});

test('callAction, MikoPBX 2024.1: no TokenManager, the session cookie only', async () => {
  const f = fakeFetch([{ status: 200, body: { result: true, data: { installed: [], drift: [] } } }]);
  await S.callAction('mikopbx', 'status', {}, { window: {}, fetch: f });
  assert.equal(f.calls[0].init.headers.Authorization, undefined);
  assert.equal(f.calls[0].init.credentials, 'same-origin');
});

test('callAction, MikoPBX: an expired token is refreshed once and the call retried', async () => {
  const win = {
    tokenManagerReady: Promise.resolve(true),
    TokenManager: { accessToken: 'old', async silentRefresh() { this.accessToken = 'new'; } },
  };
  const f = fakeFetch([
    { status: 401, body: { result: false, messages: { error: ['Token expired'] } } },
    { status: 200, body: { result: true, data: { ok: 1 } } },
  ]);
  assert.deepEqual(await S.callAction('mikopbx', 'schema', {}, { window: win, fetch: f }), { ok: 1 });
  assert.equal(f.calls[0].init.headers.Authorization, 'Bearer old');
  assert.equal(f.calls[1].init.headers.Authorization, 'Bearer new');
  // Still 401 after the refresh: the error, no third try.
  const g = fakeFetch([
    { status: 401, body: { result: false, messages: { error: ['Token expired'] } } },
    { status: 401, body: { result: false, messages: { error: ['Authentication required'] } } },
  ]);
  await assert.rejects(S.callAction('mikopbx', 'schema', {}, { window: win, fetch: g }), (e) => e.status === 401 && e.message === 'Authentication required');
  assert.equal(g.calls.length, 2);
});

test('callAction, FreePBX: relative ajax.php URL, no Authorization, errors carry the message', async () => {
  const f = fakeFetch([
    { status: 200, body: { status: true, data: { id: 'x', state: 'running', steps: ['plan'], result: null } } },
    { status: 403, body: '{"error":"ajaxRequest declined - Referrer"}' },
    { status: 500, body: '<html>Whoops</html>' },
  ]);
  const win = { TokenManager: { accessToken: 'never-sent' } };
  const job = await S.callAction('freepbx', 'job', { id: 'x' }, { window: win, fetch: f });
  assert.equal(job.state, 'running');
  assert.equal(f.calls[0].url, 'ajax.php?module=featpkg&command=job');
  assert.equal(f.calls[0].init.headers.Authorization, undefined);
  assert.equal(new URLSearchParams(f.calls[0].init.body).get('id'), 'x');
  await assert.rejects(S.callAction('freepbx', 'schema', {}, { window: {}, fetch: f }), (e) => e.status === 403 && e.message === 'ajaxRequest declined - Referrer');
  await assert.rejects(S.callAction('freepbx', 'schema', {}, { window: {}, fetch: f }), (e) => e.status === 500 && /HTTP 500/.test(e.message));
});

test('callAction: a network failure is an Error with status 0', async () => {
  const f = fakeFetch([new TypeError('Failed to fetch')]);
  await assert.rejects(S.callAction('freepbx', 'status', {}, { window: {}, fetch: f, lang: 'ru' }),
    (e) => e.status === 0 && e.message === 'АТС не ответила (Failed to fetch).');
});

test('detectPbx: data-pbx, else the PBX globals', () => {
  assert.equal(S.detectPbx('mikopbx', {}), 'mikopbx');
  assert.equal(S.detectPbx('freepbx', { globalRootUrl: '/admin-cabinet/' }), 'freepbx');
  assert.equal(S.detectPbx('', { globalRootUrl: '/admin-cabinet/' }), 'mikopbx');
  assert.equal(S.detectPbx('', { fpbx: {} }), 'freepbx');
  assert.equal(S.detectPbx('x', {}), '');
  assert.equal(S.detectPbx(null, undefined), '');
});

// ---- form generation for every shipped feature -------------------------------------

test('every feature.json param gets a sensible control', () => {
  const features = loadFeatures('mikopbx');
  assert.ok(features.length >= 5, 'features found');
  const seenTypes = new Set();
  for (const f of features) {
    assert.ok(f.params.length > 0, `${f.id} has params`);
    for (const p of f.params) {
      seenTypes.add(p.type);
      const where = `${f.id}.${p.name}`;
      const spec = S.paramControlSpec(p, 'en');
      assert.equal(spec.name, p.name, where);
      assert.equal(spec.type, p.type, where);
      assert.equal(spec.known, true, `${where}: type ${p.type} known`);
      assert.equal(spec.required, p.required, where);
      assert.equal(spec.defaultValue, p.default, where);
      assert.ok(spec.defaultLabel.length > 0, where);
      switch (p.type) {
        case 'integer':
          assert.equal(spec.control, 'number', where);
          assert.equal(spec.inputType, 'number', where);
          assert.equal(spec.min, p.min, where);
          assert.equal(spec.max, p.max, where);
          assert.equal(spec.step, 1, where);
          assert.equal(spec.placeholder, p.default, where);
          assert.ok(Number(p.default) >= p.min && Number(p.default) <= p.max, `${where}: default in range`);
          break;
        case 'enum':
          assert.equal(spec.control, 'select', where);
          assert.deepEqual(spec.options.map((o) => o.value), p.values, where);
          assert.equal(spec.options.filter((o) => o.isDefault).length, 1, `${where}: the default is one of the values`);
          assert.equal(spec.options.find((o) => o.isDefault).value, p.default, where);
          assert.equal(spec.options.find((o) => o.isDefault).label, `${p.default} (default)`, where);
          break;
        case 'queue_rules':
          assert.equal(spec.control, 'queue_rules', where);
          assert.equal(spec.defaultLabel, 'Default: no rules', where);
          break;
        case 'destination':
          assert.equal(spec.control, 'destination', where);
          break;
        default:
          assert.equal(spec.control, 'text', where);
          assert.equal(spec.inputType, 'text', where);
          if (p.default !== '') {
            assert.equal(spec.placeholder, p.default, `${where}: default as placeholder`);
          } else if (p.default_from) {
            assert.equal(spec.placeholder, `same as ${p.default_from}`, where);
          } else if (p.required) {
            assert.equal(spec.placeholder, 'required', where);
          }
      }
      if (p.type === 'extension') {
        assert.equal(spec.inputMode, 'numeric', where);
        assert.equal(spec.maxLength, 20, where);
      }
      if (p.type === 'service_code') {
        assert.equal(spec.inputMode, 'tel', where);
      }
      if (p.type === 'endpoint_list') {
        assert.equal(spec.list, true, where);
      }
      // The shipped defaults pass the page's own hints (they are valid values).
      if (p.default !== '') {
        assert.equal(S.paramHint(p, p.default, { statuses: QUEUE_STATUSES }), null, `${where}: default ${JSON.stringify(p.default)} hinted`);
      }
    }
  }
  for (const type of ['extension', 'service_code', 'digit_pattern', 'context', 'sound', 'word', 'var_name', 'integer', 'enum', 'endpoint_list', 'destination', 'queue_rules']) {
    assert.ok(seenTypes.has(type), `some feature uses ${type}`);
  }
});

test('conference-guest: required params and default_from in the form', () => {
  const f = feature(schemaFor('mikopbx'), 'conference-guest');
  const byName = Object.fromEntries(f.params.map((p) => [p.name, S.paramControlSpec(p, 'ru')]));
  for (const name of ['conference', 'provider', 'number']) {
    assert.equal(byName[name].required, true);
    assert.equal(byName[name].placeholder, 'обязательно');
    assert.equal(byName[name].defaultLabel, 'Значения по умолчанию нет: укажите значение');
  }
  assert.equal(byName.dtmf.defaultFrom, 'conference');
  assert.equal(byName.dtmf.placeholder, 'как conference');
  assert.equal(byName.dtmf.defaultLabel, 'По умолчанию: то же, что conference');
});

test('unsupported: the schema string, or feature.json\'s per-PBX object', () => {
  const miko = schemaFor('mikopbx');
  const free = schemaFor('freepbx');
  assert.equal(S.unsupportedReason(feature(miko, 'call-waiting'), 'mikopbx'), null);
  assert.match(S.unsupportedReason(feature(free, 'call-waiting'), 'freepbx'), /FreePBX/);
  assert.equal(S.unsupportedReason({ unsupported: { freepbx: 'no' } }, 'freepbx'), 'no');
  assert.equal(S.unsupportedReason({ unsupported: { freepbx: 'no' } }, 'mikopbx'), null);
  assert.equal(S.unsupportedReason({ unsupported: '' }, 'mikopbx'), null);
  assert.equal(S.unsupportedReason({}, 'mikopbx'), null);
});

test('paramControlSpec: unknown types and broken enums fall back to a text box', () => {
  const unknown = S.paramControlSpec({ name: 'x', type: 'ip_address', default: '10.0.0.1', help: '' });
  assert.equal(unknown.control, 'text');
  assert.equal(unknown.known, false);
  assert.equal(unknown.placeholder, '10.0.0.1');
  const noValues = S.paramControlSpec({ name: 'x', type: 'enum', default: 'a', values: null });
  assert.equal(noValues.control, 'text');
  const dup = S.paramControlSpec({ name: 'x', type: 'enum', default: 'a', values: ['a', 'b', 'a'] });
  assert.deepEqual(dup.options.map((o) => o.value), ['a', 'b']);
  const noRange = S.paramControlSpec({ name: 'x', type: 'integer', default: '1', min: null, max: null });
  assert.equal(noRange.control, 'number');
  assert.equal(noRange.min, null);
  assert.equal(S.paramControlSpec(null).control, 'text');
});

// ---- destinations and queue rules ------------------------------------------------------

test('splitDestination / joinDestination', () => {
  assert.deepEqual(S.splitDestination('internal,201,1'), { context: 'internal', exten: '201', priority: '1' });
  assert.deepEqual(S.splitDestination(''), { context: '', exten: '', priority: '' });
  assert.deepEqual(S.splitDestination(null), { context: '', exten: '', priority: '' });
  assert.deepEqual(S.splitDestination('ctx,s'), { context: 'ctx', exten: 's', priority: '' });
  assert.deepEqual(S.splitDestination('a,b,c,d'), { context: 'a', exten: 'b', priority: 'c,d' });
  assert.equal(S.joinDestination({ context: ' internal ', exten: '201', priority: '1' }), 'internal,201,1');
  assert.equal(S.joinDestination({ context: '', exten: ' ', priority: '' }), '');
  assert.equal(S.joinDestination({ context: 'c', exten: '', priority: '' }), 'c,,');
  assert.equal(S.joinDestination(undefined), '');
  for (const v of ['internal,201,1', 'ext-queues,2000,1', 'a,b,c,d', '', 'c,s,start']) {
    assert.equal(S.joinDestination(S.splitDestination(v)), v, v);
  }
});

test('queue rules: JSON -> rows -> JSON round trip', () => {
  const text = '[{"queue":"2000","status":"TIMEOUT","destination":"internal,201,1"},{"queue":"2001","status":"JOINEMPTY","destination":"ext-queues,2000,1"}]';
  const parsed = S.queueRulesFromJson(text);
  assert.equal(parsed.error, false);
  assert.deepEqual(parsed.rows, [
    { queue: '2000', status: 'TIMEOUT', destination: 'internal,201,1' },
    { queue: '2001', status: 'JOINEMPTY', destination: 'ext-queues,2000,1' },
  ]);
  assert.equal(S.queueRulesToJson(parsed.rows), text);
  assert.deepEqual(S.queueRulesFromJson(S.queueRulesToJson(parsed.rows)).rows, parsed.rows);
  // Pretty-printed JSON reads the same.
  assert.deepEqual(S.queueRulesFromJson(JSON.stringify(JSON.parse(text), null, 2)).rows, parsed.rows);
});

test('queue rules: empty, invalid and odd inputs', () => {
  assert.deepEqual(S.queueRulesFromJson(''), { rows: [], error: false });
  assert.deepEqual(S.queueRulesFromJson('[]'), { rows: [], error: false });
  assert.deepEqual(S.queueRulesFromJson(undefined), { rows: [], error: false });
  for (const bad of ['[{', 'not json', '{"queue":"1"}', '"[]"', '[1]', '[null]', '[[]]', 'null']) {
    const r = S.queueRulesFromJson(bad);
    assert.equal(r.error, true, bad);
    assert.deepEqual(r.rows, [], bad);
  }
  // A number queue (featpkg accepts it) becomes a string; unknown fields are dropped; missing ones are "".
  assert.deepEqual(S.queueRulesFromJson('[{"queue":2000,"status":"FULL","x":1}]').rows, [{ queue: '2000', status: 'FULL', destination: '' }]);
  // Rows are kept as they are (blank ones too: featpkg names them), values trimmed.
  assert.equal(S.queueRulesToJson([{ queue: ' 1 ', status: 'TIMEOUT', destination: ' a,1,1 ' }, { queue: '', status: '', destination: '' }]),
    '[{"queue":"1","status":"TIMEOUT","destination":"a,1,1"},{"queue":"","status":"","destination":""}]');
  assert.equal(S.queueRulesToJson([]), '[]');
  assert.equal(S.queueRulesToJson(null), '[]');
  // Hostile strings survive as data.
  const evil = [{ queue: '1', status: '"}]<img src=x onerror=alert(1)>', destination: 'a,"b",1' }];
  assert.deepEqual(S.queueRulesFromJson(S.queueRulesToJson(evil)).rows, evil);
});

// ---- form state and collected params ------------------------------------------------------

test('collectParams: only selected features, only values that differ from the default or were set', () => {
  const schema = schemaFor('mikopbx');
  const state = S.initialFormState(schema, { installed: [], drift: [] });
  // Nothing selected: nothing sent.
  assert.deepEqual(S.collectParams(schema, state), {});
  assert.deepEqual(S.selectedFeatures(schema, state), []);

  state['busy-callback'].install = true;
  // Untouched form: all defaults, so no params for the feature.
  assert.deepEqual(S.collectParams(schema, state), {});
  assert.deepEqual(S.selectedFeatures(schema, state), ['busy-callback']);

  Object.assign(state['busy-callback'].values, {
    digit: '7',              // select changed
    tech: 'PJSIP',           // select at its default
    max_per_caller: ' 5 ',   // number changed (trimmed)
    expiry: '',              // empty number: the default
    ring: '30',              // typed the default: not sent
    cancel_code: '*601',     // the default
    prompt: 'my-busy-prompt',
  });
  assert.deepEqual(S.collectParams(schema, state), {
    'busy-callback': { digit: '7', max_per_caller: '5', prompt: 'my-busy-prompt' },
  });
  // Every value is a string.
  for (const v of Object.values(S.collectParams(schema, state)['busy-callback'])) {
    assert.equal(typeof v, 'string');
  }
});

test('collectParams: a value set before is sent even when put back to the default', () => {
  const schema = schemaFor('mikopbx', { saved_params: { 'call-waiting': { busy_at: '4', beep_sound: 'beep' } } });
  const status = {
    installed: [{ name: 'featpkg-recipes', version: '1.0.0', features: [{ id: 'call-waiting', version: '1.0.0', params: {}, user_params: { moh_class: 'jazz', busy_at: '5' } }] }],
    drift: [],
  };
  const state = S.initialFormState(schema, status);
  const cw = state['call-waiting'];
  assert.equal(cw.install, true, 'installed features start selected');
  assert.equal(cw.installed, true);
  // Saved params win over the installed user_params; both count as set.
  assert.deepEqual(cw.saved, { moh_class: 'jazz', busy_at: '4', beep_sound: 'beep' });
  assert.equal(cw.values.busy_at, '4');
  assert.equal(cw.values.moh_class, 'jazz');
  assert.equal(cw.values.device_tech, 'PJSIP', 'a select starts at its default');
  assert.equal(cw.values.hint_context, '', 'an unset text box starts empty (default as placeholder)');
  // Unchanged: every set value is sent again (featpkg keeps them; the saved file too).
  assert.deepEqual(S.collectParams(schema, state), { 'call-waiting': { moh_class: 'jazz', busy_at: '4', beep_sound: 'beep' } });
  // Emptied: the default is sent explicitly, so the old value does not stay.
  cw.values.busy_at = '';
  cw.values.moh_class = '';
  assert.deepEqual(S.collectParams(schema, state), { 'call-waiting': { moh_class: 'default', busy_at: '3', beep_sound: 'beep' } });
  // A value missing from `values` keeps its saved one.
  delete cw.values.moh_class;
  assert.equal(S.collectParams(schema, state)['call-waiting'].moh_class, 'jazz');
  // Unchecked: not sent at all.
  cw.install = false;
  assert.deepEqual(S.collectParams(schema, state), {});
});

test('collectParams: unsupported features are never sent', () => {
  const schema = schemaFor('freepbx');
  const state = S.initialFormState(schema, { installed: [], drift: [] });
  state['call-waiting'].install = true;
  state['call-waiting'].values.busy_at = '9';
  state['operator-alert'].install = true;
  assert.deepEqual(S.collectParams(schema, state), {});
  assert.deepEqual(S.selectedFeatures(schema, state), ['operator-alert']);
});

test('collectParams: endpoint lists, destinations, queue rules and default_from', () => {
  const schema = schemaFor('mikopbx');
  const state = S.initialFormState(schema, { installed: [], drift: [] });
  state['call-waiting'].install = true;
  state['call-waiting'].values.endpoints = ' 201, 202 ,,203 ';
  state['operator-alert'].install = true;
  state['operator-alert'].values.fallback = S.joinDestination({ context: 'internal', exten: '200', priority: '1' });
  state['queue-failover'].install = true;
  state['queue-failover'].values.rules = S.queueRulesToJson([]);
  state['queue-failover'].values.default = S.joinDestination({ context: '', exten: '', priority: '' });
  state['conference-guest'].install = true;
  Object.assign(state['conference-guest'].values, { conference: '800', provider: 'trunk1', number: '5551234', dtmf: '' });
  assert.deepEqual(S.collectParams(schema, state), {
    'call-waiting': { endpoints: '201,202,203' },
    'conference-guest': { conference: '800', provider: 'trunk1', number: '5551234' },
    'operator-alert': { fallback: 'internal,200,1' },
  });
  const rules = [{ queue: '2000', status: 'TIMEOUT', destination: 'internal,201,1' }];
  state['queue-failover'].values.rules = S.queueRulesToJson(rules);
  assert.deepEqual(S.collectParams(schema, state)['queue-failover'], { rules: JSON.stringify(rules) });
  assert.deepEqual(S.selectedFeatures(schema, state), ['busy-callback', 'call-waiting', 'conference-guest', 'operator-alert', 'queue-failover'].filter((id) => state[id].install));
});

test('collectParams: hostile parameter names stay plain data', () => {
  const schema = {
    pbx: 'mikopbx',
    features: [{ id: 'x', version: '1', summary: '', unsupported: null, params: [
      { name: '__proto__', type: 'word', default: 'a', help: '', required: false, default_from: null, min: null, max: null, values: null },
      { name: 'constructor', type: 'word', default: 'b', help: '', required: false, default_from: null, min: null, max: null, values: null },
    ] }],
    saved_params: {},
  };
  const state = S.initialFormState(schema, {});
  state.x.install = true;
  state.x.values = JSON.parse('{"__proto__": "evil", "constructor": "c"}');
  const params = S.collectParams(schema, state);
  assert.equal(JSON.stringify(params), '{"x":{"__proto__":"evil","constructor":"c"}}');
  assert.equal(Object.getPrototypeOf(params.x), Object.prototype);
});

test('initialFormState tolerates a broken schema or status', () => {
  assert.deepEqual(S.initialFormState({}, null), {});
  assert.deepEqual(S.initialFormState({ features: [null, { id: 3 }, { id: 'a', params: [null, { name: '' }] }] }, { installed: 'x' }),
    { a: { install: false, installed: false, values: {}, saved: {} } });
  assert.deepEqual(S.collectParams(null, null), {});
  assert.deepEqual(S.selectedFeatures(undefined, {}), []);
});

test('effectiveValue / sameValue', () => {
  const rules = { name: 'rules', type: 'queue_rules', default: '[]' };
  assert.equal(S.effectiveValue(rules, ''), '[]');
  assert.equal(S.sameValue(rules, '[ ]', '[]'), true);
  assert.equal(S.sameValue(rules, '[{"queue":"1","status":"FULL","destination":"a,1,1"}]', '[{"queue": "1", "status": "FULL", "destination": "a,1,1"}]'), true);
  assert.equal(S.sameValue(rules, '[{', '[]'), false);
  const ep = { name: 'endpoints', type: 'endpoint_list', default: '' };
  assert.equal(S.effectiveValue(ep, ' , '), '');
  assert.equal(S.normalizeRaw(ep, 'a ,b'), 'a,b');
  assert.equal(S.effectiveValue({ type: 'word', default: 'root' }, '  '), 'root');
});

// ---- hints (never blocking) ---------------------------------------------------------------

test('paramHint: range, required, format and rule hints', () => {
  const ring = { name: 'ring', type: 'integer', min: 10, max: 120, default: '30' };
  assert.deepEqual(S.paramHint(ring, '5'), { key: 'hint_range', vars: { min: 10, max: 120 } });
  assert.deepEqual(S.paramHint(ring, '121'), { key: 'hint_range', vars: { min: 10, max: 120 } });
  assert.deepEqual(S.paramHint(ring, '1.5'), { key: 'hint_integer' });
  assert.equal(S.paramHint(ring, '10'), null);
  assert.equal(S.paramHint(ring, ''), null, 'empty = default');
  assert.deepEqual(S.paramHint(ring, '', { badInput: true }), { key: 'hint_bad_number' });
  const conf = { name: 'conference', type: 'extension', default: '', required: true };
  assert.deepEqual(S.paramHint(conf, ''), { key: 'hint_required' });
  assert.equal(S.paramHint(conf, '', { selected: false }), null, 'no required hint for an unselected feature');
  assert.deepEqual(S.paramHint(conf, '80a'), { key: 'hint_extension' });
  const dtmf = { name: 'dtmf', type: 'service_code', default: '', default_from: 'conference' };
  assert.equal(S.paramHint(dtmf, ''), null);
  assert.deepEqual(S.paramHint(dtmf, '12a'), { key: 'hint_service_code' });
  assert.deepEqual(S.paramHint({ type: 'context', default: 'x' }, 'General'), { key: 'hint_context' });
  assert.equal(S.paramHint({ type: 'context', default: 'x' }, 'internal-users.custom'), null);
  assert.deepEqual(S.paramHint({ type: 'context', default: 'x' }, 'globals'), { key: 'hint_context' });
  assert.deepEqual(S.paramHint({ type: 'context', default: 'x' }, 'a]b'), { key: 'hint_context' });
  assert.equal(S.paramHint({ type: 'digit_pattern', default: '_XXX' }, '_2[0-4]X'), null);
  assert.deepEqual(S.paramHint({ type: 'digit_pattern', default: '_XXX' }, '_2[a]X'), { key: 'hint_digit_pattern' });
  assert.deepEqual(S.paramHint({ type: 'sound', default: 'beep' }, '../etc/passwd'), { key: 'hint_sound' });
  assert.deepEqual(S.paramHint({ type: 'var_name', default: 'X' }, '1X'), { key: 'hint_var_name' });
  assert.deepEqual(S.paramHint({ type: 'endpoint_list', default: '' }, '201,2 02'), { key: 'hint_endpoint_list' });
  assert.equal(S.paramHint({ type: 'endpoint_list', default: '' }, '201, 202'), null);
  assert.deepEqual(S.paramHint({ type: 'destination', default: '' }, 'c,,'), { key: 'hint_destination' });
  assert.equal(S.paramHint({ type: 'destination', default: '' }, 'internal,s,1'), null);
  assert.deepEqual(S.paramHint({ type: 'enum', values: ['PJSIP', 'IAX2'], default: 'PJSIP' }, 'SIP'), { key: 'hint_enum', vars: { values: 'PJSIP, IAX2' } });
  const rules = { name: 'rules', type: 'queue_rules', default: '[]' };
  const opts = { statuses: QUEUE_STATUSES };
  assert.deepEqual(S.paramHint(rules, '[{', opts), { key: 'hint_rules_json' });
  assert.deepEqual(S.paramHint(rules, S.queueRulesToJson([{ queue: '20a', status: 'FULL', destination: 'a,1,1' }]), opts).key, 'hint_rule_queue');
  assert.deepEqual(S.paramHint(rules, S.queueRulesToJson([{ queue: '1', status: 'FULL', destination: 'a,1,1' }, { queue: '2', status: '', destination: 'a,1,1' }]), opts),
    { key: 'hint_rule_status', vars: { row: 2 }, row: 1, field: 'status' });
  assert.equal(S.paramHint(rules, S.queueRulesToJson([{ queue: '1', status: 'FULL', destination: '' }]), opts).key, 'hint_rule_destination');
  assert.equal(S.paramHint(rules, S.queueRulesToJson([{ queue: '1', status: 'FULL', destination: 'a,1,1' }, { queue: '1', status: 'FULL', destination: 'b,1,1' }]), opts).key, 'hint_rule_duplicate');
  assert.equal(S.paramHint(rules, S.queueRulesToJson([{ queue: '1', status: 'FULL', destination: 'a,1,1' }]), opts), null);
  // Every hint key has a string.
  for (const key of ['hint_range', 'hint_integer', 'hint_bad_number', 'hint_required', 'hint_extension', 'hint_service_code', 'hint_context', 'hint_digit_pattern', 'hint_sound', 'hint_word', 'hint_var_name', 'hint_endpoint_list', 'hint_destination', 'hint_enum', 'hint_rules_json', 'hint_rule_queue', 'hint_rule_status', 'hint_rule_destination', 'hint_rule_duplicate']) {
    assert.ok(Object.prototype.hasOwnProperty.call(S.STRINGS.en, key), key);
  }
});

// ---- featpkg errors --------------------------------------------------------------------------

test('errorTarget maps featpkg error paths to the form', () => {
  assert.deepEqual(S.errorTarget({ feature: 'queue-failover', param: 'rules', path: '$.queue-failover.rules[1].status', message: 'x' }),
    { feature: 'queue-failover', param: 'rules', row: 1, field: 'status' });
  assert.deepEqual(S.errorTarget({ path: '$.queue-failover.rules[0].destination' }),
    { feature: 'queue-failover', param: 'rules', row: 0, field: 'destination' });
  assert.deepEqual(S.errorTarget({ path: '$.queue-failover.rules[12]' }),
    { feature: 'queue-failover', param: 'rules', row: 12, field: null });
  assert.deepEqual(S.errorTarget({ feature: 'conference-guest', param: 'number', path: '$.conference-guest.number', message: 'an extension must be 1 to 20 digits' }),
    { feature: 'conference-guest', param: 'number', row: null, field: null });
  assert.deepEqual(S.errorTarget({ feature: 'conference-guest', param: null, path: '$.conference-guest' }),
    { feature: 'conference-guest', param: null, row: null, field: null });
  // No path: feature and param.
  assert.deepEqual(S.errorTarget({ feature: 'busy-callback', param: 'ring', path: null }),
    { feature: 'busy-callback', param: 'ring', row: null, field: null });
  assert.deepEqual(S.errorTarget({ feature: 'busy-callback', param: null, path: null }),
    { feature: 'busy-callback', param: null, row: null, field: null });
  // A whole-value rule error of queue_rules (": must be a JSON array ...") has no index.
  assert.deepEqual(S.errorTarget({ feature: 'queue-failover', param: 'rules', path: '$.queue-failover.rules' }),
    { feature: 'queue-failover', param: 'rules', row: null, field: null });
  // Nothing to map: the page shows it on top.
  assert.deepEqual(S.errorTarget({ feature: null, param: null, path: null, message: 'extensions.conf line 12: ...' }),
    { feature: null, param: null, row: null, field: null });
  assert.deepEqual(S.errorTarget(null), { feature: null, param: null, row: null, field: null });
  assert.deepEqual(S.errorTarget({ path: 'garbage' }), { feature: null, param: null, row: null, field: null });
  // error.feature/param are the authority when the path disagrees.
  assert.deepEqual(S.errorTarget({ feature: 'b', param: 'q', path: '$.a.p[1].status' }),
    { feature: 'b', param: 'q', row: null, field: null });
});

test('resultError: featpkg refusals inside a preview or job result', () => {
  assert.equal(S.resultError({ dry_run: true, changed: false, summary: '', changes: [], warnings: [] }), null);
  assert.equal(S.resultError(null), null);
  assert.deepEqual(S.resultError({ error: { feature: 'queue-failover', param: 'rules', path: '$.queue-failover.rules[1].status', message: 'm' } }),
    { feature: 'queue-failover', param: 'rules', path: '$.queue-failover.rules[1].status', message: 'm' });
  assert.deepEqual(S.resultError({ error: 'plain' }), { feature: null, param: null, path: null, message: 'plain' });
});

// ---- status: installed features and drift --------------------------------------------------------

test('statusAfterLoad: a running change (409) keeps what was shown, or says unknown', () => {
  const before = { installed: [{ bundle: 'featpkg-recipes', features: [{ id: 'busy-callback' }] }], drift: [] };
  const fresh = { installed: [], drift: [] };
  assert.deepEqual(S.statusAfterLoad(before, { ok: true, value: fresh }), { status: fresh, unknown: false, busy: false });
  const busy = { ok: false, error: Object.assign(new Error('a change is running (job 1f): status follows when it has finished'), { status: 409 }) };
  assert.deepEqual(S.statusAfterLoad(before, busy), { status: before, unknown: false, busy: true });
  assert.deepEqual(S.statusAfterLoad(undefined, busy), { status: { installed: [], drift: [] }, unknown: true, busy: true });
  const broken = { ok: false, error: Object.assign(new Error('featpkg failed'), { status: 500 }) };
  assert.deepEqual(S.statusAfterLoad(before, broken), { status: { installed: [], drift: [] }, unknown: true, busy: false });
  assert.deepEqual(S.statusAfterLoad(before, { ok: true, value: 'not an object' }).unknown, true);
});

test('installedFeatures and drift by feature', () => {
  const schema = schemaFor('mikopbx');
  const status = {
    installed: [
      { name: 'other', version: '2', features: [{ id: 'call-waiting', version: '9.9.9', params: {}, user_params: {} }] },
      { name: 'featpkg-recipes', version: '1.0.0', features: [{ id: 'call-waiting', version: '1.0.0', params: { busy_at: '3' }, user_params: {} }] },
    ],
    drift: [
      { bundle: 'featpkg-recipes', edit: 'featpkg-recipes:call-waiting/dialplan', path: '/etc/asterisk/extensions.conf', kind: 'modified', detail: 'block changed by hand' },
      { bundle: 'featpkg-recipes', edit: 'featpkg-recipes:busy-callback/cron', path: '/etc/crontab', kind: 'missing', detail: '' },
      { bundle: 'other', edit: 'other:call-waiting/dialplan', path: '/x', kind: 'markers', detail: '' },
      { bundle: 'featpkg-recipes', edit: 'featpkg-recipes:gone/dialplan', path: '/y', kind: 'modified', detail: '' },
      'junk',
    ],
  };
  const inst = S.installedFeatures(status, 'featpkg-recipes');
  assert.equal(inst['call-waiting'].version, '1.0.0', 'the schema\'s bundle first');
  assert.equal(inst['call-waiting'].bundle, 'featpkg-recipes');
  const d = S.driftByFeature(status, schema);
  assert.deepEqual(Object.keys(d.byFeature).sort(), ['busy-callback', 'call-waiting']);
  assert.equal(d.byFeature['call-waiting'][0].kind, 'modified');
  assert.deepEqual(d.other.map((x) => x.path), ['/x', '/y']);
  assert.deepEqual(S.parseDriftEdit('featpkg-recipes:call-waiting/dialplan'), { bundle: 'featpkg-recipes', feature: 'call-waiting', edit: 'dialplan' });
  assert.deepEqual(S.parseDriftEdit('call-waiting/dialplan'), { bundle: '', feature: 'call-waiting', edit: 'dialplan' });
  assert.deepEqual(S.parseDriftEdit(undefined), { bundle: '', feature: '', edit: '' });
  for (const kind of ['modified', 'missing', 'markers', 'not-applied']) {
    assert.ok(S.STRINGS.en['drift_kind_' + kind], kind);
  }
});

// ---- preview diff and job steps -------------------------------------------------------------------

test('diff lines are classified for colouring', () => {
  const diff = '--- a/etc/asterisk/extensions.conf\n+++ b/etc/asterisk/extensions.conf\n@@ -1,2 +1,3 @@\n [x]\n-old\n+new\n\\ No newline at end of file\n';
  assert.deepEqual(S.diffLines(diff).map((l) => l.kind), ['file', 'file', 'hunk', 'ctx', 'del', 'add', 'note']);
  assert.equal(S.diffLines(diff).length, 7, 'no empty last line');
  assert.equal(S.diffLines('a\r\nb').length, 2);
  assert.equal(S.diffLineClass(''), 'ctx');
  assert.equal(S.diffLineClass(undefined), 'ctx');
});

test('stepStates: plan → write → reload → verify', () => {
  const marks = (steps, state) => S.stepStates(steps, state).map((s) => s.mark);
  assert.deepEqual(S.STEPS, ['plan', 'write', 'reload', 'verify']);
  assert.deepEqual(marks([], 'running'), ['pending', 'pending', 'pending', 'pending']);
  assert.deepEqual(marks(['plan'], 'running'), ['active', 'pending', 'pending', 'pending']);
  assert.deepEqual(marks(['plan', 'write', 'reload'], 'running'), ['done', 'done', 'active', 'pending']);
  assert.deepEqual(marks(['plan', 'write', 'reload', 'verify'], 'done'), ['done', 'done', 'done', 'done']);
  assert.deepEqual(marks(['plan'], 'done'), ['done', 'skipped', 'skipped', 'skipped']);
  assert.deepEqual(marks(['plan', 'write', 'reload'], 'failed'), ['done', 'done', 'failed', 'unreached']);
  assert.deepEqual(marks(['bogus', 'plan'], 'failed'), ['failed', 'unreached', 'unreached', 'unreached']);
  assert.deepEqual(marks(null, 'failed'), ['unreached', 'unreached', 'unreached', 'unreached']);
  for (const m of ['done', 'active', 'failed', 'pending', 'skipped', 'unreached']) {
    assert.ok(S.STRINGS.en['step_' + m] && S.STRINGS.ru['step_' + m], m);
  }
  for (const s of S.STEPS) {
    assert.ok(S.STRINGS.en['step_' + s] && S.STRINGS.ru['step_' + s], s);
  }
});

// ---- the files themselves ----------------------------------------------------------------------------

test('settings.js never parses data as HTML', () => {
  const src = fs.readFileSync(path.join(UI, 'settings.js'), 'utf8');
  for (const bad of ['innerHTML', 'outerHTML', 'insertAdjacentHTML', 'document.write', 'eval(', 'new Function', 'createContextualFragment', 'DOMParser']) {
    assert.equal(src.includes(bad), false, `settings.js uses ${bad}`);
  }
  // Nothing but our own listeners and attribute names: no on* attributes, no href/src from data.
  assert.equal(/setAttribute\(\s*['"]on/i.test(src), false);
  assert.equal(/['"](href|src|srcdoc)['"]\s*:/.test(src), false);
  // Ends with the Node export the tests use.
  assert.match(src.trimEnd(), /if \(typeof module !== 'undefined' && module\.exports\) \{[\s\S]*\}\s*$/);
});

test('settings.html is a Volt-safe fragment with the root the wrappers fill in', () => {
  const html = fs.readFileSync(path.join(UI, 'settings.html'), 'utf8');
  for (const seq of ['{{', '{%', '{#']) {
    assert.equal(html.includes(seq), false, `contains ${seq}`);
  }
  assert.equal(/<\/?(html|head|body)[\s>]/i.test(html), false, 'no html/head/body');
  assert.equal(/<script/i.test(html), false, 'no scripts (the PBX loads settings.js)');
  assert.equal(/<link/i.test(html), false, 'no stylesheets (the PBX loads settings.css)');
  assert.match(html.trimStart(), /^<div id="featpkg-settings" data-pbx="" data-lang="">/);
  // The wrappers replace the first data-pbx="" (FreePBX page.featpkg.php, featpkg build for MikoPBX).
  assert.equal(html.split('data-pbx=""').length, 2, 'exactly one data-pbx=""');
  assert.equal((html.match(/id="featpkg-settings"/g) || []).length, 1);
  // Every region the script fills is there.
  for (const slot of ['head', 'page-error', 'loading', 'drift', 'features', 'toolbar', 'activity']) {
    assert.ok(html.includes(`data-fp="${slot}"`), slot);
  }
  // Balanced divs (a fragment pasted into the PBX layout must not close the layout's elements).
  assert.equal((html.match(/<div[\s>]/g) || []).length, (html.match(/<\/div>/g) || []).length);
});

test('settings.css: every rule is scoped under #featpkg-settings', () => {
  const css = fs.readFileSync(path.join(UI, 'settings.css'), 'utf8').replace(/\/\*[\s\S]*?\*\//g, '');
  assert.equal(css.includes('@import'), false);
  assert.equal(/@media|@supports|@keyframes|@font-face/.test(css), false, 'no at-rules (keep the check simple)');
  const blocks = [...css.matchAll(/([^{}]+)\{[^{}]*\}/g)];
  assert.ok(blocks.length > 50);
  for (const b of blocks) {
    for (const sel of b[1].split(',').map((s) => s.trim())) {
      assert.match(sel, /^#featpkg-settings(?=[\s.:[>]|$)/, `unscoped selector: ${sel}`);
      // Our classes only: no styling of the frameworks' own classes.
      assert.equal(/\.(ui|btn|form-control|field|segment|button|checkbox)\b/.test(sel), false, sel);
    }
  }
  // Balanced braces.
  assert.equal((css.match(/\{/g) || []).length, (css.match(/\}/g) || []).length);
});

test('settings.js classes in the DOM all start with fp-', () => {
  const src = fs.readFileSync(path.join(UI, 'settings.js'), 'utf8');
  const classes = [...src.matchAll(/class: '([^']*)'/g)].flatMap((m) => m[1].split(/\s+/)).filter(Boolean);
  assert.ok(classes.length > 40);
  for (const c of classes) {
    assert.match(c, /^fp-/, c);
  }
});
