'use strict';
// @supermachine/core: the public classes over the Node-API addon
// (src/*.c). Every call that may wait returns a Promise resolved from a
// thread of the binding; see docs/node.md.
const net = require('node:net');
const path = require('node:path');

function loadNative() {
  const tried = [];
  const candidates = [process.env.SUPERMACHINE_NODE_ADDON, path.join(__dirname, 'build', 'supermachine.node')];
  for (const file of candidates) {
    if (!file) continue;
    try {
      return require(file);
    } catch (e) {
      if (e.code !== 'MODULE_NOT_FOUND') throw e;
      tried.push(file);
    }
  }
  throw new Error(`@supermachine/core: the addon is not built (looked for ${tried.join(', ')}): run \`npm install\` in bindings/node or \`make node\``);
}

const native = loadNative();

class SupermachineError extends Error {
  constructor(message, code, errno, cause) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'SupermachineError';
    this.code = code;
    this.errno = errno || 0;
  }
}
native.init(SupermachineError);

class ExecOutcome {
  constructor(o) {
    this.status = o.status;
    this.signal = o.signal;
    this.stdout = o.stdout;
    this.stderr = o.stderr;
    this.durationMs = o.durationUs / 1000;
    this.timedOut = o.timedOut;
    this.peakRssKib = o.peakRssKib;
    this.chainIndex = o.chainIndex;
    this.stdoutTruncated = o.stdoutTruncated;
    this.stderrTruncated = o.stderrTruncated;
  }

  success() {
    return this.status === 0 && !this.timedOut;
  }
}

function envEntries(env) {
  if (env instanceof Map) return [...env].map(([k, v]) => [String(k), String(v)]);
  return Object.entries(env).map(([k, v]) => [k, String(v)]);
}

class ExecBuilder {
  #vm;
  #spec = { env: [], stage: [], chain: [] };

  constructor(vm) {
    this.#vm = vm;
  }

  argv(argv) { this.#spec.argv = [...argv]; return this; }
  env(key, value) {
    if (typeof key === 'string') this.#spec.env.push([key, String(value)]);
    else this.#spec.env.push(...envEntries(key));
    return this;
  }
  cwd(dir) { this.#spec.cwd = dir; return this; }
  user(user) { this.#spec.user = user; return this; }
  tty(on = true) { this.#spec.tty = on; return this; }
  winsize(rows, cols) { this.#spec.rows = rows; this.#spec.cols = cols; return this; }
  timeout(ms) { this.#spec.timeoutMs = ms; return this; }
  stageFile(file, data, mode) { this.#spec.stage.push([file, data, mode]); return this; }
  chain(argv) { this.#spec.chain.push([...argv]); return this; }
  stdin(data) { this.#spec.stdin = data; return this; }
  outputLimit(bytes) { this.#spec.outputLimit = bytes; return this; }

  async output() {
    return new ExecOutcome(await native.exec(this.#vm._handle, this.#spec));
  }

  async spawn() {
    const r = await native.spawn(this.#vm._handle, this.#spec);
    return new Child(r);
  }
}

// A spawned command: Node streams over the library's descriptors (copies the stream owns).
class Child {
  #handle;
  #waited = null;

  constructor(r) {
    this.#handle = r.handle;
    this.stdin = r.stdin >= 0 ? new net.Socket({ fd: r.stdin, readable: false, writable: true }) : null;
    this.stdout = new net.Socket({ fd: r.stdout, readable: true, writable: false });
    this.stderr = new net.Socket({ fd: r.stderr, readable: true, writable: false });
    // end() shuts the socket's write side: the library's pump sees EOF and passes it on.
    if (this.stdin) this.stdin.on('finish', () => native.childCloseStdin(this.#handle));
  }

  kill(signal = 'SIGTERM') {
    const n = typeof signal === 'number' ? signal : require('node:os').constants.signals[signal];
    if (!n) throw new SupermachineError(`unknown signal ${signal}`, 'invalid', 0);
    native.childControl(this.#handle, 'signal', n);
  }

  resize(rows, cols) {
    native.childControl(this.#handle, 'resize', rows, cols);
  }

  // The outcome (status, signal, duration...; its output went to the streams).
  wait() {
    if (!this.#waited) {
      const ended = (s) => (s.readableEnded || s.destroyed ? null : new Promise((res) => s.once('close', res)));
      this.#waited = Promise.all([ended(this.stdout), ended(this.stderr)])
        .then(() => native.childWait(this.#handle))
        .then((o) => new ExecOutcome(o))
        .finally(() => {
          if (this.stdin && !this.stdin.destroyed) this.stdin.destroy();
          native.childFree(this.#handle);
        });
    }
    return this.#waited;
  }
}

class Forward {
  #handle;

  constructor(handle) {
    this.#handle = handle;
    this.port = native.forwardPort(handle);
  }

  stop() {
    native.forwardStop(this.#handle);
  }
}

class Vm {
  constructor(handle) {
    this._handle = handle;
    const info = native.vmInfo(handle);
    this.id = info.id;
    this.pooled = info.pooled;
    this.consolePath = info.consolePath;
  }

  // Boots a pulled image (or a root filesystem file), or restores a stored snapshot by name.
  static async start(image, config) {
    return new Vm(await native.vmStart(image, config));
  }

  get running() {
    return native.vmRunning(this._handle);
  }

  execBuilder() {
    return new ExecBuilder(this);
  }

  // exec(['cmd', ...]) or exec({argv, env, cwd, user, timeout, stdin, stageFiles, chain})
  exec(argvOrOptions) {
    const b = this.execBuilder();
    if (Array.isArray(argvOrOptions)) return b.argv(argvOrOptions).output();
    const o = argvOrOptions || {};
    if (o.argv) b.argv(o.argv);
    if (o.env) b.env(o.env);
    if (o.cwd) b.cwd(o.cwd);
    if (o.user) b.user(o.user);
    if (o.tty) b.tty(o.tty);
    if (o.timeout !== undefined) b.timeout(o.timeout);
    if (o.stdin !== undefined) b.stdin(o.stdin);
    for (const [file, data, mode] of o.stageFiles || []) b.stageFile(file, data, mode);
    for (const argv of o.chain || []) b.chain(argv);
    return b.output();
  }

  writeFile(file, data, mode) { return native.vmWriteFile(this._handle, file, data, mode); }
  readFile(file, { maxBytes } = {}) { return native.vmReadFile(this._handle, file, maxBytes); }

  // A stream to 127.0.0.1:port in the guest, over vsock: a net.Socket over the descriptor.
  async connect(port) {
    const fd = await native.vmConnect(this._handle, port);
    return new net.Socket({ fd, readable: true, writable: true });
  }

  // exposeTcp(hostPort, guestPort, {host}) -> Forward; hostPort 0 picks a free port (forward.port).
  async exposeTcp(hostPort, guestPort, { host } = {}) {
    return new Forward(await native.vmExposeTcp(this._handle, host ?? null, hostPort, guestPort));
  }

  workloadSignal(signal) {
    const n = typeof signal === 'number' ? signal : require('node:os').constants.signals[signal];
    return native.vmWorkloadSignal(this._handle, n ?? -1);
  }

  snapshot(name) { return native.vmSnapshot(this._handle, name); }
  stop({ graceMs } = {}) { return native.vmStop(this._handle, graceMs); }
  // Resolves with the workload's exit status (-1: none reported), or null when timeoutMs passed first.
  wait({ timeoutMs } = {}) { return native.vmWait(this._handle, timeoutMs === undefined ? 0 : timeoutMs + 1); }

  // Back to the pool (pooled), or stopped and freed (started). Idempotent.
  async release() {
    await native.vmRelease(this._handle);
  }

  [Symbol.asyncDispose]() {
    return this.release();
  }
}

class Pool {
  #handle;

  constructor(handle) {
    this.#handle = handle;
  }

  static async open(snapshot, options) {
    return new Pool(await native.poolNew(snapshot, options));
  }

  async acquire() {
    return new Vm(await native.poolAcquire(this.#handle));
  }

  stats() {
    return native.poolStats(this.#handle);
  }

  close() {
    return native.poolClose(this.#handle);
  }

  [Symbol.asyncDispose]() {
    return this.close();
  }
}

class Image {
  #handle;

  constructor(handle) {
    this.#handle = handle;
    this.path = native.imagePath(handle);
  }

  static async fromSnapshot(nameOrDir) {
    return new Image(await native.imageOpen(nameOrDir));
  }

  async start(config) {
    return new Vm(await native.imageStart(this.#handle, config));
  }

  async acquire() {
    return new Vm(await native.imageAcquire(this.#handle));
  }

  async pool(options) {
    return new Pool(await native.imagePool(this.#handle, options));
  }

  close() {
    return native.imageClose(this.#handle);
  }
}

async function pull(ref, { onProgress, ...options } = {}) {
  return JSON.parse(await native.pull(ref, options, onProgress));
}

async function images() {
  return JSON.parse(await native.images());
}

function snapshots() {
  return native.snapshots();
}

// bake({ref, name, memoryMib, vcpus, snapshotOn, warmup: async (vm) => ..., warmupTag, ...}) -> Image
async function bake({ ref, image, warmup, ...options }) {
  let warmupError;
  const wrapper = warmup && ((handle) => {
    const vm = new Vm(handle);
    return Promise.resolve()
      .then(() => warmup(vm))
      .catch((e) => {
        warmupError = e;
        throw e;
      });
  });
  try {
    await native.bake(ref ?? image, options, wrapper);
  } catch (e) {
    if (warmupError !== undefined) {
      let last = e;
      while (last.cause instanceof Error) last = last.cause;
      last.cause = warmupError;
    }
    throw e;
  }
  return Image.fromSnapshot(options.name);
}

module.exports = {
  Image, Pool, Vm, ExecBuilder, ExecOutcome, Child, Forward, SupermachineError,
  bake, pull, images, snapshots,
  version: native.version,
  native,
};
