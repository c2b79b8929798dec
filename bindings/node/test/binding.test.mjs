// The binding without a VM: errors and their codes, argument checks,
// pull and images against a local registry, worker_threads, and a process
// that exits by itself once its calls are done.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { test, after } from 'node:test';
import { Worker } from 'node:worker_threads';

import { sm, scratchStore, ociFixtures, startRegistry, pkgDir, nodeEnv } from './helpers.mjs';

const store = scratchStore('unit');
after(() => store.remove());

test('a snapshot that does not exist is a SupermachineError with its code and a cause chain', async () => {
  const e = await sm.Image.fromSnapshot('no-such-snapshot').then(() => null, (x) => x);
  assert.ok(e instanceof sm.SupermachineError, `got ${e}`);
  assert.equal(e.code, 'not-found');
  assert.match(e.message, /no-such-snapshot/);
  assert.ok(e.cause instanceof sm.SupermachineError, 'no cause chain');
  assert.ok(e.message.endsWith(e.cause.message), 'the outer message holds the inner one');
});

test('a broken snapshot directory is a snapshot error', async () => {
  execFileSync('sh', ['-c', `mkdir -p ${store.dir}/bad && echo '{' > ${store.dir}/bad/metadata.json`]);
  const e = await sm.Image.fromSnapshot(`${store.dir}/bad`).then(() => null, (x) => x);
  assert.ok(e instanceof sm.SupermachineError);
  assert.equal(e.code, 'snapshot');
});

test('bad arguments are refused before anything runs, with code invalid', async () => {
  const invalid = (fn) => assert.throws(fn, (e) => e instanceof sm.SupermachineError && e.code === 'invalid');
  invalid(() => sm.native.imageOpen(42));
  invalid(() => sm.native.vmStart('img', { memoryMib: -1 }));
  invalid(() => sm.native.vmStart('img', { memoryMib: 1.5 }));
  invalid(() => sm.native.vmStart('img', { profile: 'fastest' }));
  invalid(() => sm.native.vmStart('img', { workload: [] }));
  invalid(() => sm.native.vmStart('img', { volumes: ['nocolon'] }));
  invalid(() => sm.native.vmStart('img', 'not an object'));
  invalid(() => sm.native.vmStart('i\0mg'));
  invalid(() => sm.native.poolNew('snap', { max: 'eight' }));
  invalid(() => sm.native.vmInfo({}));
  invalid(() => sm.native.exec(undefined, { argv: ['true'] }));
  invalid(() => sm.native.bake('img', {}));
  invalid(() => sm.native.bake('img', { name: 'x', snapshotOn: 'whenever' }));
  invalid(() => sm.native.bake('img', { name: 'x', snapshotOn: 'after:' }));
  // a pool handle is no VM handle
  const e = await sm.Image.fromSnapshot('nope').catch((x) => x);
  assert.equal(e.code, 'not-found');
});

test('codes are the library\'s names', () => {
  assert.equal(sm.native.codeName(2), 'not-found');
  assert.equal(sm.version(), '0.1.0');
});

test('many calls at once each settle', async () => {
  const all = await Promise.allSettled(Array.from({ length: 64 }, (_, i) => sm.Image.fromSnapshot(`missing-${i}`)));
  assert.equal(all.length, 64);
  all.forEach((r, i) => {
    assert.equal(r.status, 'rejected');
    assert.match(r.reason.message, new RegExp(`missing-${i}\\b`));
  });
});

test('the binding loads and works in worker_threads, several starting and ending at once', async () => {
  const src = `
    const { parentPort, workerData } = require('node:worker_threads');
    const sm = require(workerData);
    sm.Image.fromSnapshot('nope-in-worker').catch((e) => parentPort.postMessage(e.code + ' ' + (e instanceof sm.SupermachineError)));`;
  const workers = 6;
  const codes = await Promise.all(Array.from({ length: workers }, () => new Promise((resolve, reject) => {
    const w = new Worker(src, { eval: true, workerData: pkgDir });
    w.once('message', resolve);
    w.once('error', reject);
  })));
  assert.deepEqual(codes, Array(workers).fill('not-found true'));
});

// metadata.json of a snapshot that opens (sm_image_open reads only it); nothing can start from it
function openableSnapshot(dir) {
  const digest = `sha256:${'0123456789abcdef'.repeat(4)}`;
  const file = (p) => ({ path: p, sha256: digest, size: 10, ino: 1, dev: 2, mtime_ns: 3, ctime_ns: 4 });
  execFileSync('mkdir', ['-p', dir]);
  writeFileSync(path.join(dir, 'metadata.json'), JSON.stringify({
    format: 'supermachine-snapshot', version: 1, snapshot_id: '00112233445566778899aabbccddeeff',
    created: 1700000000, memory_mib: 128, vcpus: 1, network: false, balloon: false, balloon_target_pages: 0,
    kernel: file('/k/vmlinux'), initramfs: file('/k/initramfs.cpio'), rootfs: file('/s/rootfs.ext4'),
  }));
  return dir;
}

// Node finalizes the thread-safe function before the externals: the images' finalizers queue their
// frees on a closed runner, which must neither touch that function nor drop the frees.
test('worker_threads ending with open images, several at once, free them at teardown', async () => {
  const snap = openableSnapshot(path.join(store.dir, 'openable'));
  const src = `
    const { parentPort, workerData } = require('node:worker_threads');
    const sm = require(workerData.pkgDir);
    (async () => {
      globalThis.kept = await Promise.all(Array.from({ length: 16 }, () => sm.Image.fromSnapshot(workerData.snap)));
      parentPort.postMessage(globalThis.kept.length);
    })();`;
  for (let round = 0; round < 3; round++) {
    const counts = await Promise.all(Array.from({ length: 6 }, () => new Promise((resolve, reject) => {
      const w = new Worker(src, { eval: true, workerData: { pkgDir, snap } });
      w.once('message', (n) => w.once('exit', (code) => resolve([n, code])));
      w.once('error', reject);
    })));
    assert.deepEqual(counts, Array(6).fill([16, 0]));
  }
});

test('a process whose calls are done exits by itself (no handle left referenced)', () => {
  const script = `
    const sm = require(${JSON.stringify(pkgDir)});
    (async () => {
      await sm.Image.fromSnapshot('nope').catch(() => {});
      await sm.images();
      await sm.snapshots();
      console.log('done');
    })();`;
  const out = execFileSync(process.execPath, ['-e', script], { env: nodeEnv(), timeout: 20000, encoding: 'utf8' });
  assert.equal(out.trim(), 'done');
});

test('pull from a local registry reports progress, and images() lists the result', async (t) => {
  const fixtures = (() => {
    try { return ociFixtures(); } catch { return null; }
  })();
  if (!fixtures) {
    t.skip('the OCI fixtures cannot be built here (umoci, skopeo, docker-registry)');
    return;
  }
  const reg = await startRegistry(fixtures);
  try {
    const phases = new Set();
    const img = await sm.pull(`127.0.0.1:${reg.port}/test/busybox:latest`, {
      noRootfs: true,
      onProgress: (p) => { phases.add(p.phase); },
    });
    assert.match(JSON.stringify(img), /sha256:/);
    assert.ok(phases.has('downloading'), `phases: ${[...phases]}`);
    const list = await sm.images();
    assert.ok(JSON.stringify(list).includes('test/busybox'), JSON.stringify(list));

    const e = await sm.pull(`127.0.0.1:${reg.port}/test/none:latest`).catch((x) => x);
    assert.ok(e instanceof sm.SupermachineError);
    assert.ok(['not-found', 'registry'].includes(e.code), e.code);

    // onProgress returning false cancels
    const c = await sm.pull(`127.0.0.1:${reg.port}/test/busybox-v2:latest`, { noRootfs: true, onProgress: () => false })
      .catch((x) => x);
    assert.equal(c.code, 'canceled');
  } finally {
    reg.stop();
  }
});

// examples/node and bench/node.mjs need a VM to do their work; here: they
// parse, refuse bad arguments, and name what is missing from the store.
test('the Node examples and bench/node.mjs parse and say what is missing', () => {
  const root = path.resolve(pkgDir, '../..');
  const run = (file, ...args) => {
    try {
      execFileSync(process.execPath, [path.join(root, file), ...args], { env: nodeEnv(), timeout: 20000, encoding: 'utf8', stdio: 'pipe' });
      return { status: 0, stderr: '' };
    } catch (e) {
      return { status: e.status, stderr: e.stderr };
    }
  };
  for (const file of ['examples/node/verifier.mjs', 'examples/node/service.mjs', 'bench/node.mjs'])
    execFileSync(process.execPath, ['--check', path.join(root, file)]);
  const v = run('examples/node/verifier.mjs', 'no-such-verifier');
  assert.equal(v.status, 1);
  assert.match(v.stderr, /no snapshot 'no-such-verifier' in the store/);
  assert.equal(run('examples/node/verifier.mjs', 'x', '0').status, 2);
  const s = run('examples/node/service.mjs', 'no-such-busybox');
  assert.equal(s.status, 1);
  assert.match(s.stderr, /no image or snapshot 'no-such-busybox' in the store/);
  assert.equal(run('examples/node/service.mjs', 'busybox', '70000').status, 2);
  assert.equal(run('bench/node.mjs', 'nonsense').status, 2);
});
