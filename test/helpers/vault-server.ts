// A local double of HashiCorp Vault's KV version 2 HTTP API on 127.0.0.1:
// token check, versioned data paths with check-and-set, and Vault's status
// codes and error bodies. Unknown routes and bad requests fail loudly, so a
// client that sends the wrong request fails its test.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface VaultRequest {
  method: string;
  path: string;
  token: string | undefined;
  body: unknown;
}

interface Version {
  data: Record<string, unknown>;
  created_time: string;
  deletion_time: string;
}

interface SecretEntry {
  versions: Version[];
  /** Versions start at 1; the current one is versions.length. */
  currentVersion: number;
}

export interface VaultDouble {
  addr: string;
  requests: VaultRequest[];
  /** Sets a secret as another writer would, creating a new version. */
  putSecret(path: string, data: Record<string, unknown>): number;
  /** The latest data and version of a secret, or undefined. */
  secret(path: string): { data: Record<string, unknown>; version: number } | undefined;
  /** Marks the latest version deleted, as `vault kv delete` does. */
  deleteLatest(path: string): void;
  /** Makes every request fail with this status (503: sealed), or `hang` to never respond; null restores. */
  setFailure(failure: number | 'hang' | null): void;
  /** Runs once before the next write is handled, for example to simulate a concurrent writer. */
  beforeNextWrite(hook: () => void): void;
  stop(): Promise<void>;
}

export async function startVaultServer({
  token,
  mount = 'secret',
  casRequired = false,
}: {
  token: string;
  mount?: string;
  casRequired?: boolean;
}): Promise<VaultDouble> {
  const secrets = new Map<string, SecretEntry>();
  const requests: VaultRequest[] = [];
  let failure: number | 'hang' | null = null;
  let writeHook: (() => void) | undefined;
  const hanging = new Set<ServerResponse>();

  const addVersion = (path: string, data: Record<string, unknown>): number => {
    const entry = secrets.get(path) ?? { versions: [], currentVersion: 0 };
    entry.versions.push({ data, created_time: new Date().toISOString(), deletion_time: '' });
    entry.currentVersion = entry.versions.length;
    secrets.set(path, entry);
    return entry.currentVersion;
  };

  const metadata = (entry: SecretEntry) => {
    const latest = entry.versions[entry.currentVersion - 1];
    return {
      created_time: latest.created_time,
      custom_metadata: null,
      deletion_time: latest.deletion_time,
      destroyed: false,
      version: entry.currentVersion,
    };
  };

  const handle = async (request: IncomingMessage, response: ServerResponse) => {
    const url = new URL(request.url ?? '/', 'http://127.0.0.1');
    const rawBody = await readBody(request);
    const tokenHeader = request.headers['x-vault-token'];
    const record: VaultRequest = {
      method: request.method ?? '',
      path: url.pathname,
      token: typeof tokenHeader === 'string' ? tokenHeader : undefined,
      body: undefined,
    };
    requests.push(record);

    if (failure === 'hang') {
      hanging.add(response);
      return;
    }
    if (failure !== null) return send(response, failure, { errors: ['Vault is sealed'] });

    if (record.token !== token) return send(response, 403, { errors: ['permission denied'] });

    const prefix = `/v1/${mount}/data/`;
    if (!url.pathname.startsWith(prefix) || url.pathname.length === prefix.length) {
      return send(response, 404, {
        errors: [`no handler for route "${url.pathname.slice(4)}". route entry not found.`],
      });
    }
    const path = decodeURIComponent(url.pathname.slice(prefix.length));

    if (request.method === 'GET') {
      const entry = secrets.get(path);
      if (!entry) return send(response, 404, { errors: [] });

      const latest = entry.versions[entry.currentVersion - 1];
      const data = { data: latest.deletion_time ? null : latest.data, metadata: metadata(entry) };
      return send(response, latest.deletion_time ? 404 : 200, vaultEnvelope(data));
    }

    if (request.method === 'POST' || request.method === 'PUT') {
      let body: { data?: unknown; options?: { cas?: unknown } };
      try {
        body = JSON.parse(rawBody);
      } catch (error) {
        return send(response, 400, { errors: [`failed to parse JSON input: ${(error as Error).message}`] });
      }
      record.body = body;

      if (typeof body?.data !== 'object' || body.data === null || Array.isArray(body.data)) {
        return send(response, 400, { errors: ['no data provided'] });
      }

      writeHook?.();
      writeHook = undefined;

      const current = secrets.get(path)?.currentVersion ?? 0;
      const cas = body.options?.cas;
      if (cas === undefined && casRequired) {
        return send(response, 400, { errors: ['check-and-set parameter required for this call'] });
      }
      if (cas !== undefined && cas !== current) {
        return send(response, 400, {
          errors: ['check-and-set parameter did not match the current version'],
        });
      }

      addVersion(path, body.data as Record<string, unknown>);
      return send(response, 200, vaultEnvelope(metadata(secrets.get(path) as SecretEntry)));
    }

    return send(response, 405, { errors: [] });
  };

  const server = createServer((request, response) => {
    handle(request, response).catch((error: Error) => send(response, 500, { errors: [error.message] }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    addr: `http://127.0.0.1:${port}`,
    requests,
    putSecret: addVersion,
    secret(path) {
      const entry = secrets.get(path);
      if (!entry) return undefined;
      return { data: entry.versions[entry.currentVersion - 1].data, version: entry.currentVersion };
    },
    deleteLatest(path) {
      const entry = secrets.get(path);
      if (entry) entry.versions[entry.currentVersion - 1].deletion_time = new Date().toISOString();
    },
    setFailure(next) {
      failure = next;
    },
    beforeNextWrite(hook) {
      writeHook = hook;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        for (const response of hanging) response.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function vaultEnvelope(data: unknown) {
  return {
    request_id: '3f1c2a9e-0d4b-4c7a-9a51-6b2e8f0c1d77',
    lease_id: '',
    renewable: false,
    lease_duration: 0,
    data,
    wrap_info: null,
    warnings: null,
    auth: null,
  };
}

function readBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    request.on('error', reject);
  });
}

function send(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json' });
  response.end(JSON.stringify(body));
}
