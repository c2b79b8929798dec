// The verifier loop over a pool: each cycle acquires a warm VM, stages a C
// source, compiles it with gcc and runs the result in the same exec
// (chain), checks what it printed, and gives the VM back.
//
//   node examples/node/verifier.mjs [SNAPSHOT [CYCLES [WORKERS]]]
//
// SNAPSHOT (default "verifier") is a baked snapshot of an image with gcc;
// see README.md here for how to bake one. The pool keeps WORKERS VMs
// (default 2) and does not reset them between users (the guest's page
// cache stays warm: each cycle overwrites its own files).
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
// installed: require('@supermachine/core')
const sm = require('../../bindings/node');

const [snapshot = 'verifier', cyclesArg = '20', workersArg = '2'] = process.argv.slice(2);

function positive(s, what) {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`verifier: ${what} wants a positive integer, not '${s}'`);
    process.exit(2);
  }
  return n;
}

// A program whose answer depends on the cycle: a stale binary cannot pass.
function source(i) {
  return `#include <stdio.h>\nint main(void) { printf("cycle %d: %lu\\n", ${i}, ${i}ul * ${i}ul + 1); return 0; }\n`;
}

async function cycle(pool, i) {
  const vm = await pool.acquire();
  try {
    const out = await vm.execBuilder()
      .stageFile('/tmp/main.c', source(i))
      .argv(['gcc', '-O1', '-o', '/tmp/main', '/tmp/main.c'])
      .chain(['/tmp/main'])
      .timeout(60000)
      .output();
    const want = `cycle ${i}: ${BigInt(i) * BigInt(i) + 1n}\n`;
    if (!out.success() || out.chainIndex !== 1 || out.stdout.toString() !== want) {
      throw new Error(`cycle ${i}: status ${out.status}${out.timedOut ? ' (timed out)' : ''}, `
        + `step ${out.chainIndex}, stdout '${out.stdout}', stderr '${out.stderr}'`);
    }
  } finally {
    await vm.release();
  }
}

async function openSnapshot(name) {
  try {
    return await sm.Image.fromSnapshot(name);
  } catch (e) {
    if (e.code === 'not-found') {
      console.error(`verifier: no snapshot '${name}' in the store: bake one from an image with gcc `
        + '(examples/node/README.md says how), or name yours: node verifier.mjs SNAPSHOT');
      process.exit(1);
    }
    throw e;
  }
}

async function main() {
  const cycles = positive(cyclesArg, 'CYCLES');
  const workers = positive(workersArg, 'WORKERS');
  const image = await openSnapshot(snapshot);
  const pool = await image.pool({ min: workers, max: workers, restoreOnRelease: false });
  let next = 0;
  let failed = 0;
  const t0 = process.hrtime.bigint();
  try {
    // WORKERS loops at once, each taking the next cycle number until all are done.
    await Promise.all(Array.from({ length: workers }, async () => {
      for (let i = next++; i < cycles; i = next++) {
        await cycle(pool, i).catch((e) => {
          failed++;
          console.error(`verifier: ${e.message}`);
        });
      }
    }));
  } finally {
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    const st = pool.stats();
    await pool.close();
    await image.close();
    console.log(`${cycles} cycles on ${workers} workers in ${s.toFixed(2)} s: `
      + `${((cycles - failed) / s).toFixed(2)} cycles/s, ${failed} failed, acquire p50 ${st.acquireP50Us} us`);
  }
  if (failed) process.exitCode = 1;
}

main().catch((e) => {
  console.error(`verifier: ${e.message}`);
  process.exitCode = 1;
});
