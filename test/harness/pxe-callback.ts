/**
 * The PXE test image's callback receiver, run inside a test's server namespace:
 * `node pxe-callback.ts HOST PORT FILE` appends each POSTed body as one line to FILE.
 */
import { appendFileSync } from 'node:fs';
import { createServer } from 'node:http';

const [host = '127.0.0.1', port = '8081', file = '/dev/null'] = process.argv.slice(2);
const MAX = 64 * 1024;

createServer((req, res) => {
  if (req.method !== 'POST') {
    res.statusCode = 405;
    res.end();
    return;
  }
  const parts: Buffer[] = [];
  let size = 0;
  req.on('data', (c: Buffer) => {
    size += c.length;
    if (size <= MAX) parts.push(c);
  });
  req.on('end', () => {
    appendFileSync(file, `${Buffer.concat(parts).toString('utf8').replace(/\n/g, ' ')}\n`);
    res.end('ok\n');
  });
}).listen(Number(port), host);
