import { mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { nonPublicAddress, type UriPolicy } from '@retort/spec';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { policyByteSource } from './io.js';

describe('what a run may read', () => {
  let server: Server;
  let base: string;
  beforeAll(async () => {
    server = createServer((req, res) => {
      const port = (server.address() as AddressInfo).port;
      switch (req.url) {
        case '/data':
          res.end('hello');
          return;
        case '/big':
          res.end(Buffer.alloc(2 * 2 ** 20)); // declared length 2 MiB
          return;
        case '/big-chunked':
          res.setHeader('transfer-encoding', 'chunked');
          for (let i = 0; i < 32; i++) res.write(Buffer.alloc(64 * 1024));
          res.end();
          return;
        case '/to-metadata':
          res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/' }).end();
          return;
        case '/to-localhost':
          res.writeHead(301, { location: `http://localhost:${port}/data` }).end();
          return;
        case '/to-data':
          res.writeHead(307, { location: '/data' }).end();
          return;
        case '/loop':
          res.writeHead(302, { location: '/loop' }).end();
          return;
        default:
          res.writeHead(404).end();
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => {
    server.close();
  });

  const local: UriPolicy = { dataRoots: [], allowedHosts: ['127.0.0.1'], allowPrivateAddresses: true };

  it('classifies addresses: only public unicast ones are fetched from', () => {
    const cases: Record<string, string | null> = {
      '10.1.2.3': 'private',
      '192.168.0.10': 'private',
      '172.16.5.4': 'private',
      '127.0.0.1': 'loopback',
      '169.254.169.254': 'linkLocal',
      '100.64.0.1': 'carrierGradeNat',
      '0.0.0.0': 'unspecified',
      '::1': 'loopback',
      '::ffff:127.0.0.1': 'loopback',
      'fd00::1': 'uniqueLocal',
      'fe80::1': 'linkLocal',
      '8.8.8.8': null,
      '2606:4700::1111': null,
    };
    for (const [address, range] of Object.entries(cases))
      expect([address, nonPublicAddress(address)]).toEqual([address, range]);
  });

  it('refuses hosts that resolve inside the network unless configured', async () => {
    const strict = policyByteSource({ dataRoots: [], allowedHosts: ['127.0.0.1', 'localhost'] });
    await expect(strict.read(`${base}/data`)).rejects.toThrow(
      /resolves to 127\.0\.0\.1 \(loopback\), which this server does not fetch from/,
    );
    await expect(strict.read('http://localhost/data')).rejects.toThrow(
      /localhost resolves to .* \(loopback\)/,
    );
    await expect(strict.read('http://10.0.0.1/x')).rejects.toThrow(
      /host 10\.0\.0\.1 is not in the allowed hosts/,
    );
    expect(new TextDecoder().decode(await policyByteSource(local).read(`${base}/data`))).toBe('hello');
  });

  it('checks every redirect like the first request', async () => {
    const src = policyByteSource(local);
    expect(new TextDecoder().decode(await src.read(`${base}/to-data`))).toBe('hello');
    await expect(src.read(`${base}/to-metadata`)).rejects.toThrow(
      /to-metadata \(redirected\): http:\/\/169\.254\.169\.254\/latest\/meta-data\/: host 169\.254\.169\.254 is not in the allowed hosts/,
    );
    await expect(src.read(`${base}/to-localhost`)).rejects.toThrow(
      /host localhost is not in the allowed hosts/,
    );
    await expect(src.read(`${base}/loop`)).rejects.toThrow(/more than 5 redirects/);
  });

  it('caps downloads, declared or not', async () => {
    const src = policyByteSource(local, 2 ** 20);
    await expect(src.read(`${base}/big`)).rejects.toThrow(
      /is 2097152 bytes, more than the 1048576 this server downloads/,
    );
    await expect(src.read(`${base}/big-chunked`)).rejects.toThrow(
      /larger than the 1048576 bytes this server downloads/,
    );
    await expect(src.read(`${base}/nothing`)).rejects.toThrow(/HTTP 404/);
  });

  it('refuses credentials in URLs and other schemes', async () => {
    const src = policyByteSource(local);
    await expect(src.read(`http://user:pw@127.0.0.1/data`)).rejects.toThrow(
      /credentials in URLs are not accepted/,
    );
    await expect(src.read('ftp://127.0.0.1/data')).rejects.toThrow(/only http and https are fetched/);
  });

  it('keeps file:// inside the data roots: no traversal, no symlink out, no device files', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'retort-root-'));
    writeFileSync(path.join(root, 'ok.bin'), 'fine');
    symlinkSync('/etc/passwd', path.join(root, 'escape'));
    const src = policyByteSource({ dataRoots: [root, '/dev'], allowedHosts: [] });
    expect(new TextDecoder().decode(await src.read(`file://${root}/ok.bin`))).toBe('fine');
    await expect(src.read(`file://${root}/../../etc/passwd`)).rejects.toThrow(
      /outside the allowed data roots/,
    );
    await expect(src.read(`file://${root}/%2e%2e/%2e%2e/etc/passwd`)).rejects.toThrow(
      /outside the allowed data roots/,
    );
    await expect(src.read(`file://${root}/escape`)).rejects.toThrow(/outside the allowed data roots/);
    await expect(src.read('file:///dev/zero')).rejects.toThrow(/is not a regular file/);
    await expect(src.read(`file://${root}/missing`)).rejects.toThrow(/does not exist/);
  });
});
