// The binding against real VMs (run by `make test` in tests/nested; skipped
// without /dev/kvm by ../run). The busybox OCI fixture as in
// tests/vm/test_run.c and test_pool.c; the verifier image as in
// tests/vm/test_verifier.c. NOT RUN on the machine that wrote it (no
// working /dev/kvm there).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, existsSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { test, after, before } from 'node:test';

import { sm, scratchStore, ociFixtures, buildRoot, nodeEnv } from '../helpers.mjs';

const HTTPD = 'busybox mkdir -p /tmp/www && echo hello-http > /tmp/www/index.html && exec busybox httpd -f -p 8080 -h /tmp/www';
let store;
let image;

before(async () => {
  store = scratchStore('vm');
  image = `oci:${ociFixtures()}/layout:base`;
  await sm.pull(image);
});
after(() => store?.remove());

function httpGet(port) {
  return new Promise((resolve) => {
    http.get({ host: '127.0.0.1', port, path: '/' }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve(body));
    }).on('error', () => resolve(null));
  });
}

async function waitFor(fn, seconds) {
  for (let i = 0; i < seconds * 2; i++) {
    const v = await fn();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 500));
  }
  return null;
}

test('exec through argv and the builder: status, output, env, stdin, staged files, chain', async () => {
  const vm = await sm.Vm.start(image);
  try {
    const o = await vm.exec(['sh', '-c', 'cat /etc/motd; echo err >&2; exit 3']);
    assert.equal(o.status, 3);
    assert.equal(o.stdout.toString(), 'welcome\n');
    assert.equal(o.stderr.toString(), 'err\n');
    assert.equal(o.success(), false);
    const b = await vm.execBuilder().argv(['sh', '-c', 'cat /tmp/in; echo $K; cat']).env('K', 'v')
      .stageFile('/tmp/in', Buffer.from('staged\n')).stdin('from-stdin').chain(['true']).output();
    assert.equal(b.status, 0, b.stderr.toString());
    assert.equal(b.stdout.toString(), 'staged\nv\nfrom-stdin');
    assert.equal(b.chainIndex, 1);
    assert.ok(b.success());
    await vm.writeFile('/tmp/x', 'abc');
    assert.equal((await vm.readFile('/tmp/x')).toString(), 'abc');
    const nf = await vm.readFile('/nonexistent').catch((e) => e);
    assert.ok(nf instanceof sm.SupermachineError);
  } finally {
    await vm.release();
  }
});

test('a timeout kills the command and says so', async () => {
  const vm = await sm.Vm.start(image);
  try {
    const o = await vm.execBuilder().argv(['sleep', '30']).timeout(500).output();
    assert.equal(o.timedOut, true);
    assert.equal(o.success(), false);
  } finally {
    await vm.release();
  }
});

test('a streaming spawn with stdin: cat echoes what it is given', async () => {
  const vm = await sm.Vm.start(image);
  try {
    const child = await vm.execBuilder().argv(['cat']).spawn();
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.resume();
    child.stdin.write('hello\n');
    child.stdin.end('world\n');
    const o = await child.wait();
    assert.equal(o.status, 0);
    assert.equal(out, 'hello\nworld\n');
  } finally {
    await vm.release();
  }
});

test('connect and exposeTcp reach an httpd in the guest', async () => {
  const vm = await sm.Vm.start(image, { workload: ['sh', '-c', HTTPD] });
  try {
    const fwd = await vm.exposeTcp(0, 8080);
    assert.ok(fwd.port > 0);
    const page = await waitFor(async () => {
      const p = await httpGet(fwd.port);
      return p && p.includes('hello-http') ? p : null;
    }, 120);
    assert.ok(page, 'no page through exposeTcp');
    fwd.stop();
    const sock = await vm.connect(8080);
    const reply = await new Promise((resolve, reject) => {
      let data = '';
      sock.on('data', (d) => { data += d; });
      sock.on('end', () => resolve(data));
      sock.on('error', reject);
      sock.write('GET / HTTP/1.0\r\n\r\n');
    });
    assert.match(reply, /hello-http/);
  } finally {
    await vm.release();
  }
});

test('errors: a bad image name, a VM killed under a call', async () => {
  const bad = await sm.Vm.start('no-such-image-anywhere').catch((e) => e);
  assert.ok(bad instanceof sm.SupermachineError);
  assert.equal(bad.code, 'not-found');

  const vm = await sm.Vm.start(image);
  try {
    const call = vm.exec(['sleep', '60']);
    await new Promise((r) => setTimeout(r, 1000));
    const meta = JSON.parse(readFileSync(path.join(process.env.XDG_RUNTIME_DIR, 'supermachine', vm.id, 'meta.json'), 'utf8'));
    process.kill(meta.pid, 'SIGKILL');
    const e = await call.then(() => null, (x) => x);
    assert.ok(e instanceof sm.SupermachineError, 'exec on a killed VM did not fail');
    const w = await vm.writeFile('/tmp/y', 'a').catch((x) => x);
    assert.equal(w.code, 'vm-died');
  } finally {
    await vm.release();
  }
});

test('pool: acquire, exec, release; stats; a bake with a JavaScript warmup', async () => {
  let warmed = false;
  const img = await sm.bake({
    ref: image, name: 'node-pool', warmupTag: 'node-1',
    warmup: async (vm) => {
      const o = await vm.exec(['sh', '-c', 'echo warm > /tmp/warm']);
      warmed = o.success();
    },
  });
  assert.ok(warmed, 'the warmup did not run');
  const pool = await img.pool({ min: 1, max: 2, restoreOnRelease: false });
  try {
    await Promise.all([1, 2, 3, 4].map(async () => {
      const vm = await pool.acquire();
      const o = await vm.exec(['cat', '/tmp/warm']);
      assert.equal(o.stdout.toString(), 'warm\n');
      await vm.release();
    }));
    const s = pool.stats();
    assert.equal(s.acquires, 4);
    assert.ok(s.busy === 0);
  } finally {
    await pool.close();
  }
  const failing = await sm.bake({ ref: image, name: 'node-fail', warmupTag: 'f', warmup: async () => { throw new Error('warmup says no'); } })
    .catch((e) => e);
  assert.ok(failing instanceof sm.SupermachineError);
  let last = failing;
  while (last.cause) last = last.cause;
  assert.equal(last.message, 'warmup says no');
});

// The reference README's verifier loop in JS: a pool of 2, 100 cycles, every outcome right.
test('the verifier loop: 100 compile-and-run cycles over a pool of 2', { timeout: 3000000 }, async (t) => {
  const fixture = process.env.SUPERMACHINE_VERIFIER_FIXTURE || path.join(buildRoot, 'tests', 'verifier-fixture');
  assert.ok(existsSync(path.join(fixture, 'layout', 'index.json')),
    `the verifier image is missing at ${fixture}: tests/fixtures/verifier/mkimage builds it (scripts/test does)`);
  const WARMUP = "printf '#include <stdio.h>\\nint main(void) { puts(\"warm\"); return 0; }\\n' > /tmp/warm.c && "
    + 'gcc -O1 -o /tmp/warm /tmp/warm.c && test "$(/tmp/warm)" = warm && rm -f /tmp/warm /tmp/warm.c';
  const img = await sm.bake({ ref: `oci:${fixture}/layout:verifier`, name: 'node-verifier', memoryMib: 512, vcpus: 1,
    warmupCommands: [['sh', '-c', WARMUP]], warmupTag: 'gcc-hello-1' });
  const pool = await img.pool({ min: 2, max: 2, restoreOnRelease: false });
  try {
    for (let i = 0; i < 100; i++) {
      const vm = await pool.acquire();
      try {
        const src = `#include <stdio.h>\nint main(void) { printf("cycle %d\\n", ${i} * 3); return ${i % 7}; }\n`;
        const out = await vm.execBuilder().stageFile('/tmp/a.c', src)
          .argv(['gcc', '-O1', '-o', '/tmp/a', '/tmp/a.c']).chain(['/tmp/a']).timeout(600000).output();
        assert.equal(out.chainIndex, 1, out.stderr.toString());
        assert.equal(out.status, i % 7, out.stderr.toString());
        assert.equal(out.stdout.toString(), `cycle ${i * 3}\n`);
      } finally {
        await vm.release();
      }
    }
    t.diagnostic(JSON.stringify(pool.stats()));
  } finally {
    await pool.close();
  }
});

test('no leaked handles: a process with released VMs and a closed pool exits by itself', () => {
  const script = `
    const sm = require(${JSON.stringify(path.resolve(import.meta.dirname ?? path.dirname(new URL(import.meta.url).pathname), '../..'))});
    (async () => {
      const vm = await sm.Vm.start(${JSON.stringify(image)});
      await vm.exec(['true']);
      await vm.release();
      console.log('done');
    })();`;
  const out = execFileSync(process.execPath, ['-e', script], { env: nodeEnv(), timeout: 300000, encoding: 'utf8' });
  assert.equal(out.trim(), 'done');
});

// examples/node, as a user runs them: the service on the busybox fixture,
// the verifier loop on the snapshot the verifier test above baked.
function runExample(file, args) {
  const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../../..');
  return execFileSync(process.execPath, [path.join(root, 'examples/node', file), ...args],
    { env: nodeEnv(), timeout: 1200000, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
}

test('examples/node/service.mjs serves busybox httpd through exposeTcp', () => {
  const out = runExample('service.mjs', [image]);
  assert.match(out, /GET \/ -> 200/);
  assert.match(out, /hello from /);
});

test('examples/node/verifier.mjs runs the loop on the baked verifier snapshot', () => {
  const out = runExample('verifier.mjs', ['node-verifier', '6', '2']);
  assert.match(out, /^6 cycles on 2 workers in [0-9.]+ s: [0-9.]+ cycles\/s, 0 failed/m);
});
