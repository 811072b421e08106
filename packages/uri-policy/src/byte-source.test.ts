import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nonPublicAddress } from './addresses.js';
import { policyByteSource } from './byte-source.js';
import { pinnedRequest } from './pinned-client.js';
import { checkTeamRoots, policyForTeam, type UriPolicy } from './policy.js';

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
        case '/trickle': {
          // A byte a second, for ever: an idle timeout never fires.
          res.writeHead(200, { 'content-type': 'text/plain' });
          const t = setInterval(() => res.write('.'), 200);
          res.on('close', () => clearInterval(t));
          return;
        }
        case '/hang':
          return; // accepts, never answers
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
      /127\.0\.0\.1 is a loopback address, which this server does not connect to/,
    );
    // A name's refusal says what kind of address it has, never which: that would map the network.
    const named = await strict.read('http://localhost/data').catch((e: Error) => e.message);
    expect(named).toMatch(/localhost resolves to a loopback address/);
    expect(named).not.toMatch(/127\.0\.0\.1|::1/);
    await expect(strict.read('http://10.0.0.1/x')).rejects.toThrow(
      /names host 10\.0\.0\.1, which is not in the allowed hosts/,
    );
    expect(new TextDecoder().decode(await policyByteSource(local).read(`${base}/data`))).toBe('hello');
  });

  it('checks every redirect like the first request', async () => {
    const src = policyByteSource(local);
    expect(new TextDecoder().decode(await src.read(`${base}/to-data`))).toBe('hello');
    await expect(src.read(`${base}/to-metadata`)).rejects.toThrow(
      /to-metadata \(redirected to http:\/\/169\.254\.169\.254\/latest\/meta-data\/\) names host 169\.254\.169\.254, which is not in the allowed hosts/,
    );
    await expect(src.read(`${base}/to-localhost`)).rejects.toThrow(
      /names host localhost, which is not in the allowed hosts/,
    );
    await expect(src.read(`${base}/loop`)).rejects.toThrow(/redirects more than 5 times/);
  });

  it('caps downloads, declared or not', async () => {
    const src = policyByteSource(local, { maxBytes: 2 ** 20 });
    await expect(src.read(`${base}/big`)).rejects.toThrow(
      /is 2097152 bytes, more than the 1048576 this server reads/,
    );
    await expect(src.read(`${base}/big-chunked`)).rejects.toThrow(
      /larger than the 1048576 bytes this server reads/,
    );
    // A read may ask for less than the source's cap (a model's declared weights, say).
    await expect(policyByteSource(local).read(`${base}/big`, { maxBytes: 1000 })).rejects.toThrow(
      /more than the 1000 this server reads/,
    );
    await expect(src.read(`${base}/nothing`)).rejects.toThrow(/answered HTTP 404/);
  });

  it('refuses credentials in URLs and other schemes', async () => {
    const src = policyByteSource(local);
    await expect(src.read(`http://user:pw@127.0.0.1/data`)).rejects.toThrow(
      /credentials in URLs are not accepted/,
    );
    await expect(src.read('ftp://127.0.0.1/data')).rejects.toThrow(/only http and https are fetched/);
  });

  it('holds a request to a deadline, however the other side trickles or hangs', async () => {
    for (const where of ['/trickle', '/hang']) {
      const started = Date.now();
      const failure = await pinnedRequest({
        url: new URL(`${base}${where}`),
        method: 'GET',
        allowPrivateAddresses: true,
        deadlineMs: 600,
        answerBody: { maxBytes: 2 ** 20 },
      }).then(
        () => null,
        (e: Error) => e.message,
      );
      expect([where, failure]).toEqual([where, 'no complete answer within 600 ms']);
      expect(Date.now() - started).toBeLessThan(5000); // it ended; the bound itself is the deadline
    }
    // With the body discarded, an endless body costs nothing: the status is the answer.
    const head = await pinnedRequest({
      url: new URL(`${base}/trickle`),
      method: 'GET',
      allowPrivateAddresses: true,
      deadlineMs: 2000,
      answerBody: 'discard',
    });
    expect(head.status).toBe(200);
  });

  it('keeps file:// inside the data roots: no traversal, no symlink out, no device files', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'retort-root-'));
    writeFileSync(path.join(root, 'ok.bin'), 'fine');
    symlinkSync('/etc/passwd', path.join(root, 'escape'));
    const src = policyByteSource({ dataRoots: [root, '/dev'], allowedHosts: [] }, { maxBytes: 100 });
    expect(new TextDecoder().decode(await src.read(`file://${root}/ok.bin`))).toBe('fine');
    writeFileSync(path.join(root, 'big.bin'), Buffer.alloc(101));
    await expect(src.read(`file://${root}/big.bin`)).rejects.toThrow(/is 101 bytes, more than the 100/);
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

  it("holds a team to its own data roots: not another team's folder, not through a symlink", async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'retort-teams-'));
    for (const team of ['a', 'b']) {
      mkdirSync(path.join(root, team));
      writeFileSync(path.join(root, team, 'data.bin'), team);
    }
    symlinkSync(path.join(root, 'b', 'data.bin'), path.join(root, 'a', 'link-to-b'));
    const global: UriPolicy = { dataRoots: [root], allowedHosts: [] };
    const teamA = policyByteSource(policyForTeam(global, [path.join(root, 'a')]));
    expect(new TextDecoder().decode(await teamA.read(`file://${root}/a/data.bin`))).toBe('a');
    await expect(teamA.read(`file://${root}/b/data.bin`)).rejects.toThrow(/outside your team's data roots/);
    await expect(teamA.read(`file://${root}/a/link-to-b`)).rejects.toThrow(/outside your team's data roots/);
    await expect(teamA.read(`file://${root}/a/../b/data.bin`)).rejects.toThrow(
      /outside your team's data roots/,
    );
    // Whether a file exists in another team's folder is not told: missing or there, the same answer.
    const there = String(await teamA.read(`file://${root}/b/data.bin`).catch((e: Error) => e.message));
    const missing = String(await teamA.read(`file://${root}/b/no-such-file`).catch((e: Error) => e.message));
    expect(missing.replace('no-such-file', 'data.bin')).toBe(there);
    // A team root must lie inside the server's; one that does not reads nothing.
    const outside = policyByteSource(policyForTeam(global, ['/etc']));
    await expect(outside.read('file:///etc/hostname')).rejects.toThrow(/outside the allowed data roots/);
    // Without team roots, the whole of the server's.
    expect(
      new TextDecoder().decode(
        await policyByteSource(policyForTeam(global, null)).read(`file://${root}/b/data.bin`),
      ),
    ).toBe('b');
  });

  it('checks the team roots an operator gives: absolute, inside the server roots', () => {
    const r = checkTeamRoots(
      ['/data/a', '/data/a/../b/', 'relative', '/etc', '/data/a'],
      ['/data'],
      '/body/dataRoots',
    );
    expect(r.roots).toEqual(['/data/a', '/data/b']);
    expect(r.problems).toEqual([
      { path: '/body/dataRoots/2', message: 'must be an absolute folder path' },
      { path: '/body/dataRoots/3', message: "is not inside the server's data roots (/data)" },
    ]);
  });
});
