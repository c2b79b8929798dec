// Types of @supermachine/core (docs/node.md).
export class SupermachineError extends Error {
  /** sm_code_name(): "invalid", "not-found", "io", "timeout", "vm-died", "busy", ... */
  code: string;
  errno: number;
  cause?: unknown;
}

export interface VmConfig {
  memoryMib?: number; vcpus?: number; profile?: 'latency' | 'throughput'; network?: boolean;
  env?: Record<string, string> | string[]; workload?: string[]; imageWorkload?: boolean;
  powerOffOnExit?: boolean; workdir?: string; user?: string; hostname?: string;
  bootTimeoutMs?: number; detached?: boolean; label?: string; consoleLog?: string;
  assets?: { kernel?: string; initramfs?: string; worker?: string; dir?: string };
  /** "HOSTFILE:GUESTPATH[:SIZE]" */
  volumes?: string[];
}

export interface PoolOptions {
  min?: number; max?: number; idleTimeoutMs?: number; acquireTimeoutMs?: number;
  restoreOnRelease?: boolean; vm?: VmConfig;
}

export interface PoolStats {
  idle: number; busy: number; starting: number; spawned: number; evicted: number; died: number;
  waits: number; acquires: number; acquireTimeouts: number;
  acquireP50Us: number; acquireP99Us: number; acquireMaxUs: number;
}

export class ExecOutcome {
  status: number; signal: number; stdout: Buffer; stderr: Buffer; durationMs: number;
  timedOut: boolean; peakRssKib: number; chainIndex: number;
  stdoutTruncated: boolean; stderrTruncated: boolean;
  success(): boolean;
}

type Bytes = Buffer | Uint8Array | string;

export class ExecBuilder {
  argv(argv: string[]): this;
  env(key: string, value: string): this;
  env(vars: Record<string, string> | Map<string, string>): this;
  cwd(dir: string): this;
  user(user: string): this;
  tty(on?: boolean): this;
  winsize(rows: number, cols: number): this;
  timeout(ms: number): this;
  stageFile(path: string, data: Bytes, mode?: number): this;
  chain(argv: string[]): this;
  stdin(data: Bytes): this;
  outputLimit(bytes: number): this;
  output(): Promise<ExecOutcome>;
  spawn(): Promise<Child>;
}

export class Child {
  stdin: import('node:net').Socket | null;
  stdout: import('node:net').Socket;
  stderr: import('node:net').Socket;
  kill(signal?: NodeJS.Signals | number): void;
  resize(rows: number, cols: number): void;
  wait(): Promise<ExecOutcome>;
}

export class Forward {
  port: number;
  stop(): void;
}

export interface ExecOptions {
  argv: string[]; env?: Record<string, string>; cwd?: string; user?: string; tty?: boolean;
  timeout?: number; stdin?: Bytes; stageFiles?: [string, Bytes, number?][]; chain?: string[][];
}

export class Vm implements AsyncDisposable {
  readonly id: string;
  readonly pooled: boolean;
  readonly consolePath: string;
  readonly running: boolean;
  static start(image: string, config?: VmConfig): Promise<Vm>;
  execBuilder(): ExecBuilder;
  exec(argvOrOptions: string[] | ExecOptions): Promise<ExecOutcome>;
  writeFile(path: string, data: Bytes, mode?: number): Promise<void>;
  readFile(path: string, options?: { maxBytes?: number }): Promise<Buffer>;
  connect(port: number): Promise<import('node:net').Socket>;
  exposeTcp(hostPort: number, guestPort: number, options?: { host?: string }): Promise<Forward>;
  workloadSignal(signal: NodeJS.Signals | number): Promise<void>;
  snapshot(nameOrDir: string): Promise<void>;
  stop(options?: { graceMs?: number }): Promise<void>;
  wait(options?: { timeoutMs?: number }): Promise<number | null>;
  release(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export class Pool implements AsyncDisposable {
  static open(snapshot: string, options?: PoolOptions): Promise<Pool>;
  acquire(): Promise<Vm>;
  stats(): PoolStats;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export class Image {
  readonly path: string;
  static fromSnapshot(nameOrDir: string): Promise<Image>;
  start(config?: VmConfig): Promise<Vm>;
  acquire(): Promise<Vm>;
  pool(options?: PoolOptions): Promise<Pool>;
  close(): Promise<void>;
}

export interface PullProgress {
  phase: 'resolving' | 'downloading' | 'building' | 'done'; digest: string | null;
  state: 'waiting' | 'downloading' | 'done' | 'cached'; done: number; total: number;
  bytesDone: number; bytesTotal: number; blobsDone: number; blobsTotal: number;
}

export function pull(ref: string, options?: {
  platform?: string; plainHttp?: boolean; insecure?: boolean; noRootfs?: boolean;
  /** return false to cancel (code "canceled") */
  onProgress?: (p: PullProgress) => boolean | void;
}): Promise<Record<string, unknown>>;
export function images(): Promise<Record<string, unknown>[]>;
export function snapshots(): Promise<{ name: string; path: string; image: string; imageDigest: string;
  warmupTag: string; memoryMib: number; vcpus: number; created: number; diskBytes: number }[]>;
export function bake(options: VmConfig & {
  ref: string; name: string; snapshotOn?: string; warmup?: (vm: Vm) => Promise<void> | void;
  warmupTag?: string; warmupCommands?: string[][]; triggerTimeoutMs?: number; settleMs?: number;
  balloonTargetMib?: number; force?: boolean; vm?: VmConfig;
}): Promise<Image>;
export function version(): string;
