// A service in a VM reached from the host: busybox httpd in the guest,
// exposed on a host port with exposeTcp, fetched with Node's http client.
//
//   node examples/node/service.mjs [IMAGE [HOST_PORT]]
//
// IMAGE (default "busybox") is a pulled image or a baked snapshot that has
// busybox; HOST_PORT (default 0: any free port) is where the page is served
// on 127.0.0.1.
import http from 'node:http';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
// installed: require('@supermachine/core')
const sm = require('../../bindings/node');

const GUEST_PORT = 8080;
// `busybox APPLET`: an image may link only some applets into /bin
const HTTPD = 'busybox mkdir -p /tmp/www && echo "hello from $(busybox hostname)" > /tmp/www/index.html && '
  + `exec busybox httpd -f -p ${GUEST_PORT} -h /tmp/www`;

const [image = 'busybox', portArg = '0'] = process.argv.slice(2);

function get(port) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    }).on('error', reject);
  });
}

// httpd needs a moment to listen: retry for up to a minute.
async function fetchWhenUp(port) {
  let last;
  for (let i = 0; i < 120; i++) {
    try {
      return await get(port);
    } catch (e) {
      last = e;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  throw new Error(`nothing answered on 127.0.0.1:${port} within a minute (${last.message})`);
}

async function startVm() {
  try {
    return await sm.Vm.start(image);
  } catch (e) {
    if (e.code === 'not-found') {
      console.error(`service: no image or snapshot '${image}' in the store: pull one that has busybox `
        + '(supermachine pull busybox) or name yours: node service.mjs IMAGE');
      process.exit(1);
    }
    throw e;
  }
}

async function main() {
  const hostPort = Number(portArg);
  if (!Number.isInteger(hostPort) || hostPort < 0 || hostPort > 65535) {
    console.error(`service: HOST_PORT wants 0..65535, not '${portArg}'`);
    process.exit(2);
  }
  const vm = await startVm();
  try {
    // httpd runs as a spawned command (its output streamed here), so this works on a snapshot too
    const httpd = await vm.execBuilder().argv(['sh', '-c', HTTPD]).spawn();
    httpd.stdout.pipe(process.stderr);
    httpd.stderr.pipe(process.stderr);
    const fwd = await vm.exposeTcp(hostPort, GUEST_PORT);
    console.log(`VM ${vm.id}: guest port ${GUEST_PORT} on 127.0.0.1:${fwd.port}`);
    try {
      const res = await fetchWhenUp(fwd.port);
      console.log(`GET / -> ${res.status}, ${res.headers['content-type'] ?? 'no content type'}`);
      process.stdout.write(res.body);
    } finally {
      fwd.stop();
      httpd.kill('SIGTERM');
      await httpd.wait();
    }
  } finally {
    await vm.release();
  }
}

main().catch((e) => {
  console.error(`service: ${e.message}`);
  process.exitCode = 1;
});
