// bench/node.mjs: the Node binding (@supermachine/core) against the C API
// in the same run. Runs bench/node_peer.c's program (PEER) for the C side,
// passes its figures through, makes the same calls in the same loops
// through the binding, and prints, one JSON line each (bench "node"):
//
//   node bench/node.mjs calls PEER ROUNDS           (no VM)
//     version_js, snapshots_js, open_missing_js       us/call; with PEER's *_c and
//     version_overhead, ...                          the difference (JS - C), us/call
//   node bench/node.mjs vm PEER SNAPSHOT ROUNDS CYCLES   (needs /dev/kvm)
//     pool_stats_js, vm_running_js, exec_true_js      us/call, and *_overhead as above
//     cycles_per_s_js, cycles_ratio_js_c              acquire + exec `true` + release
//
// A line per comparison goes to stderr too. bench/node runs both modes
// (the addon it loads: SUPERMACHINE_NODE_ADDON, else bindings/node/build).
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const sm = require('../bindings/node');

// bench/node_peer.c's name: a snapshot no store holds.
const MISSING_SNAPSHOT = 'bench-node-missing-snapshot';
const kvm = process.env.SUPERMACHINE_NESTED ? 'nested' : 'host';

function figure(name, value, unit) {
  console.log(JSON.stringify({ bench: 'node', figure: name, value: Number(value.toFixed(3)), unit, kvm }));
}

// The C side: its figures printed as they are and returned by name.
function peer(program, args) {
  const out = execFileSync(program, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const got = {};
  for (const line of out.split('\n').filter(Boolean)) {
    console.log(line);
    const f = JSON.parse(line);
    got[f.figure] = f.value;
  }
  return got;
}

// A warmup of a tenth, then rounds calls timed: us per call (fn may return a promise: awaited).
async function timeCalls(rounds, fn) {
  for (let i = 0; i < rounds / 10; i++) await fn();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) await fn();
  return Number(process.hrtime.bigint() - t0) / 1e3 / rounds;
}

// The same for a synchronous call: no await between calls, as in C.
function timeSync(rounds, fn) {
  for (let i = 0; i < rounds / 10; i++) fn();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) fn();
  return Number(process.hrtime.bigint() - t0) / 1e3 / rounds;
}

function compare(name, how, js, c) {
  if (c === undefined) throw new Error(`the C side printed no ${name}_c`);
  figure(`${name}_js`, js, 'us');
  figure(`${name}_overhead`, js - c, 'us');
  console.error(`node: ${name} (${how}): JS ${js.toFixed(2)} us/call, C ${c.toFixed(2)} us/call, `
    + `binding ${(js - c).toFixed(2)} us/call`);
}

function check(cond, what) {
  if (!cond) throw new Error(what);
}

async function openMissing() {
  const e = await sm.Image.fromSnapshot(MISSING_SNAPSHOT).then(() => null, (x) => x);
  check(e && e.code === 'not-found', `opening ${MISSING_SNAPSHOT}: ${e ? e.message : 'it exists'}`);
}

async function benchCalls(program, rounds) {
  const c = peer(program, ['calls', String(rounds)]);
  compare('version', 'sync', timeSync(rounds * 10, () => sm.version()), c.version_c);
  compare('snapshots', 'async', await timeCalls(rounds, () => sm.snapshots()), c.snapshots_c);
  compare('open_missing', 'async, an error', await timeCalls(rounds, openMissing), c.open_missing_c);
}

async function execTrue(vm) {
  const o = await vm.exec(['true']);
  check(o.success(), `exec of true: status ${o.status}: ${o.stderr}`);
}

// The sync calls and the exec on one acquired VM, as node_peer_bench's bench_vm_calls.
async function vmCalls(pool, c, rounds, execs) {
  const vm = await pool.acquire();
  try {
    compare('pool_stats', 'sync', timeSync(rounds * 10, () => check(pool.stats().busy === 1, 'stats: not busy')),
      c.pool_stats_c);
    compare('vm_running', 'sync', timeSync(rounds, () => check(vm.running, 'the VM is not running')), c.vm_running_c);
    compare('exec_true', 'async', await timeCalls(execs, () => execTrue(vm)), c.exec_true_c);
  } finally {
    await vm.release();
  }
}

async function cycle(pool) {
  const vm = await pool.acquire();
  try {
    await execTrue(vm);
  } finally {
    await vm.release();
  }
}

async function benchVm(program, snapshot, rounds, cycles) {
  const c = peer(program, ['vm', snapshot, String(rounds), String(cycles)]);
  // node_peer_bench's pool: min = max = 1, keep_state_on_release
  const pool = await sm.Pool.open(snapshot, { min: 1, max: 1, restoreOnRelease: false, acquireTimeoutMs: 600000 });
  try {
    await vmCalls(pool, c, rounds, cycles);
    const js = 1e6 / await timeCalls(cycles, () => cycle(pool));
    check(c.cycles_per_s_c !== undefined, 'the C side printed no cycles_per_s_c');
    figure('cycles_per_s_js', js, 'cycles/s');
    figure('cycles_ratio_js_c', js / c.cycles_per_s_c, 'ratio');
    console.error(`node: acquire + exec true + release: JS ${js.toFixed(1)}/s, C ${c.cycles_per_s_c.toFixed(1)}/s, `
      + `JS/C ${(js / c.cycles_per_s_c).toFixed(3)}`);
  } finally {
    await pool.close();
  }
}

function count(s, what) {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${what} wants a positive integer, not '${s}'`);
  return n;
}

const [mode, program, ...rest] = process.argv.slice(2);
try {
  if (mode === 'calls' && program && rest.length === 1) {
    await benchCalls(program, count(rest[0], 'ROUNDS'));
  } else if (mode === 'vm' && program && rest.length === 3) {
    await benchVm(program, rest[0], count(rest[1], 'ROUNDS'), count(rest[2], 'CYCLES'));
  } else {
    console.error('usage: node bench/node.mjs calls PEER ROUNDS\n       node bench/node.mjs vm PEER SNAPSHOT ROUNDS CYCLES');
    process.exitCode = 2;
  }
} catch (e) {
  console.error(`node: ${e.message}`);
  process.exitCode = 1;
}
