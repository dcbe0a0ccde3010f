// Helpers of the browser tests: the real `explaind serve`, a static file server for web/ on another
// origin, Debian's chromium through playwright-core (never a downloaded browser), and the models.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BUILD = process.env.BUILD ? path.resolve(ROOT, process.env.BUILD) : path.join(ROOT, 'build');
export const BINARY = process.env.EXPLAIND || path.join(BUILD, 'explaind');
export const ARTIFACTS = path.join(BUILD, 'browser');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const FASHION_DIR = path.join(ROOT, 'tests', 'data', 'fashion');

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** models_dir for the tests: the shipped fashion-cnn, its twin and probe set, copied under build/. */
export function prepareModels() {
  const dir = path.join(ARTIFACTS, 'models');
  execFileSync(process.env.PYTHON || '/usr/bin/python3', [path.join(ROOT, 'tests', 'browser', 'make_models.py'), dir],
    { stdio: ['ignore', 'inherit', 'inherit'] });
  const main = 'fashion-cnn';
  const sidecar = JSON.parse(fs.readFileSync(path.join(dir, `${main}.json`), 'utf8'));
  return { dir, model: main, twin: sidecar.label_randomized_twin || null };
}

/** Start `explaind serve` on a free port; resolves once /readyz answers 200. */
export async function startServer({ modelsDir, corsOrigins = '', apiKeysFile = '' }) {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'explaind-browser-'));
  const cfg = path.join(work, 'empty-config.json');
  fs.writeFileSync(cfg, '{}\n');
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('EXPLAIND_')));
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const args = ['serve', '--config', cfg, '--models_dir', modelsDir, '--listen', '127.0.0.1', '--port', String(port),
      '--workers', '2', '--log_format', 'text', '--log_level', 'warn'];
    if (corsOrigins) args.push('--cors_origins', corsOrigins);
    if (apiKeysFile) args.push('--api_keys_file', apiKeysFile);
    const proc = spawn(BINARY, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    proc.stdout.on('data', (d) => { log += d; });
    proc.stderr.on('data', (d) => { log += d; });
    const base = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 60000;
    let exited = false;
    proc.once('exit', () => { exited = true; });
    while (Date.now() < deadline && !exited) {
      try {
        const r = await fetch(base + '/readyz');
        if (r.status === 200) {
          return {
            base, port, proc,
            log: () => log,
            stop: () => new Promise((resolve) => {
              if (proc.exitCode !== null || proc.signalCode) return resolve();
              proc.once('exit', resolve);
              proc.kill('SIGTERM');
              setTimeout(() => proc.kill('SIGKILL'), 10000).unref();
            }),
          };
        }
      } catch (e) { /* not listening yet */ }
      await new Promise((r) => setTimeout(r, 100));
    }
    proc.kill('SIGKILL');
    if (!/in use/i.test(log)) throw new Error(`explaind did not become ready:\n${log}`);
  }
  throw new Error('no free port for explaind after 5 attempts');
}

const TYPES = { '.html': 'text/html; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8', '.svg': 'image/svg+xml', '.png': 'image/png' };

/** A static server for web/ on 127.0.0.1 (another origin than the API): GET / is index.html. */
export async function startStaticServer(dir = path.join(ROOT, 'web')) {
  const srv = http.createServer((req, res) => {
    const p = new URL(req.url, 'http://x').pathname;
    const file = path.join(dir, p === '/' ? 'index.html' : path.normalize(p).replace(/^([/\\])+/, ''));
    if (!file.startsWith(dir) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found');
      return;
    }
    res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream', 'Cache-Control': 'no-store' });
    fs.createReadStream(file).pipe(res);
  });
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address();
  return { origin: `http://127.0.0.1:${port}`, port, close: () => new Promise((r) => srv.close(r)) };
}

/** Debian's chromium, headless, with a fresh profile; returns a browser context. */
export async function launchBrowser() {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'explaind-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1440, height: 900 },
    deviceScaleFactor: 1,
  });
  const close = async () => {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  };
  return { context, close };
}

/** Collect what the page logs and throws, to print when a test fails. */
export function watchPage(page) {
  const lines = [];
  page.on('console', (m) => lines.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => lines.push(`pageerror: ${e.message}`));
  page.on('requestfailed', (r) => lines.push(`requestfailed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
  return lines;
}
