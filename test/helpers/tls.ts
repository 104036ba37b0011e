// Makes a throwaway certificate authority and a server certificate for
// 127.0.0.1 and localhost, so HTTPS test doubles can run on loopback and
// clients can trust them through an explicit CA instead of disabling checks.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const OPENSSL = '/usr/bin/openssl';

export interface TestCertificates {
  /** PEM private key of the server certificate. */
  key: string;
  /** PEM server certificate, valid for IP 127.0.0.1 and DNS localhost. */
  cert: string;
  /** PEM certificate of the CA that signed `cert`. */
  ca: string;
  /** Path of the CA certificate file, for NODE_EXTRA_CA_CERTS in child processes. */
  caFile: string;
  /** The temporary folder that contains the files. */
  dir: string;
  /** Removes the temporary folder. */
  cleanup(): void;
}

function openssl(args: string[], cwd: string): void {
  execFileSync(OPENSSL, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Creates a CA and a server certificate signed by it, valid for one day. */
export function makeTestCertificates(): TestCertificates {
  const dir = mkdtempSync(path.join(tmpdir(), 'runbook-bot-tls-'));
  const curve = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

  openssl(
    [
      'req', '-x509', ...curve,
      '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1',
      '-subj', '/CN=runbook-bot test CA',
      '-addext', 'basicConstraints=critical,CA:TRUE',
      '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );

  openssl(
    ['req', ...curve, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1'],
    dir,
  );

  writeFileSync(
    path.join(dir, 'server.ext'),
    [
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
      'basicConstraints=CA:FALSE',
      'keyUsage=critical,digitalSignature',
      'extendedKeyUsage=serverAuth',
      '',
    ].join('\n'),
  );

  openssl(
    [
      'x509', '-req', '-in', 'server.csr',
      '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
      '-out', 'server.pem', '-days', '1', '-extfile', 'server.ext',
    ],
    dir,
  );

  return {
    key: readFileSync(path.join(dir, 'server.key'), 'utf8'),
    cert: readFileSync(path.join(dir, 'server.pem'), 'utf8'),
    ca: readFileSync(path.join(dir, 'ca.pem'), 'utf8'),
    caFile: path.join(dir, 'ca.pem'),
    dir,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
