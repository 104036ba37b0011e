// Every test file runs with outbound connections limited to loopback, so a
// default that points at a real service fails the test instead of leaving
// the machine.
import net from 'node:net';

const originalConnect = net.Socket.prototype.connect;

function isLoopback(host: string | undefined): boolean {
  if (host === undefined || host === '' || host === 'localhost') return true;
  if (host === '::1' || host === '0:0:0:0:0:0:0:1') return true;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) || host.startsWith('::ffff:127.');
}

net.Socket.prototype.connect = function connect(this: net.Socket, ...args: unknown[]) {
  const first = args[0] as { host?: string; path?: string } | number | string | unknown[];
  let host: string | undefined;
  if (Array.isArray(first)) {
    host = (first[0] as { host?: string })?.host;
  } else if (typeof first === 'object' && first !== null) {
    if (!(first as { path?: string }).path) host = (first as { host?: string }).host;
  } else if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    host = typeof args[1] === 'string' ? args[1] : undefined;
  }
  if (!isLoopback(host)) {
    throw new Error(`test tried to connect to ${host}; tests may only reach 127.0.0.1`);
  }
  return (originalConnect as (...a: unknown[]) => net.Socket).apply(this, args);
} as typeof net.Socket.prototype.connect;
