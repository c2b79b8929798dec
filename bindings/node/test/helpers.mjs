// Shared by the binding's suites: the module under test (this build's
// addon when meson runs us: SUPERMACHINE_NODE_ADDON), scratch stores, and
// the local docker-registry the C OCI tests use (tests/fixtures).
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
export const here = path.dirname(fileURLToPath(import.meta.url));
export const pkgDir = path.resolve(here, '..');
export const sourceRoot = process.env.SUPERMACHINE_SOURCE_ROOT ?? path.resolve(pkgDir, '../..');
export const buildRoot = process.env.SUPERMACHINE_BUILD_ROOT ?? path.join(sourceRoot, 'build');

// A sanitized addon needs the sanitizer runtimes preloaded into node (run
// does it), but only into node: under them curl deadlocks in setlocale
// before main (tests/fixtures/oci/mkimages waits on it forever). Every
// other program this suite starts, the library's included, runs without.
export const nodePreload = process.env.SUPERMACHINE_NODE_PRELOAD || '';
if (nodePreload) delete process.env.LD_PRELOAD;

// The environment for a child node that loads the addon.
export function nodeEnv() {
  return nodePreload ? { ...process.env, LD_PRELOAD: nodePreload } : process.env;
}

export const sm = require(pkgDir);

// A fresh store and runtime directory for this process (the library reads them per call).
export function scratchStore(name) {
  const dir = mkdtempSync(path.join(os.tmpdir(), `sm-node-${name}-`));
  process.env.SUPERMACHINE_HOME = path.join(dir, 'store');
  process.env.XDG_RUNTIME_DIR = path.join(dir, 'run');
  execFileSync('mkdir', ['-p', process.env.SUPERMACHINE_HOME, process.env.XDG_RUNTIME_DIR]);
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

function portOpen(port) {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.on('connect', () => { c.destroy(); resolve(true); });
    c.on('error', () => resolve(false));
  });
}

function onPath(prog) {
  try {
    execFileSync('sh', ['-c', `command -v ${prog}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

// The OCI test images (tests/fixtures/oci/mkimages, under the C tests' lock); null when it cannot run here.
export function ociFixtures() {
  const dir = path.join(buildRoot, 'tests', 'oci-fixtures');
  if (!['umoci', 'skopeo', 'docker-registry', 'flock'].every(onPath)) return null;
  execFileSync('flock', [`${dir}.lock`, path.join(sourceRoot, 'tests/fixtures/oci/mkimages'), dir], { stdio: 'ignore' });
  return dir;
}

// docker-registry, read-only, on the fixture storage; stop() kills it by its pid.
export async function startRegistry(fixtures) {
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sm-node-registry-'));
  const conf = path.join(dir, 'registry.yml');
  writeFileSync(conf, `version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: ${fixtures}/registry}
  maintenance: {uploadpurging: {enabled: false}, readonly: {enabled: true}}
http:
  addr: 127.0.0.1:${port}
`);
  const child = spawn('docker-registry', ['serve', conf], { stdio: 'ignore' });
  const stop = () => { child.kill('SIGKILL'); rmSync(dir, { recursive: true, force: true }); };
  for (let i = 0; i < 500; i++) {
    if (await portOpen(port)) return { port, stop };
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  stop();
  throw new Error(`docker-registry did not listen on ${port}`);
}

export { existsSync };
