/**
 * bench/maildev_loopback_dns.cjs: owns keeping MailDev's name resolution on this machine
 * while bench/peers.py measures it. Preloaded with `node --require` into MailDev's process.
 *
 * What MailDev 3.0.0 resolves (read from bench/.maildev after install):
 * - smtp-server (3.21) calls `dns.reverse(remoteAddress)` for every SMTP connection, because
 *   MailDev creates it without `disableReverseLookup`. That is a PTR query through c-ares to
 *   the nameserver in /etc/resolv.conf, which is not on loopback here.
 * - fastify calls `dns.lookup(host)` once for the web listener; bench/peers.py passes an IP
 *   literal, which never leaves the process, but a name could reach getaddrinfo's DNS step.
 * - nodemailer (relay, `dns.resolve*`/`dns.lookup`) is only used with --outgoing-host, which
 *   the bench never sets; it is covered anyway so that no future option can leak a query.
 *
 * Policy: loopback addresses and `localhost` are answered here, at once, the way a local
 * hosts file or caching resolver would; every other resolution fails here with ENOTFOUND
 * (or ESERVFAIL for record lookups) and nothing is ever handed to c-ares or getaddrinfo, so no
 * packet to port 53 can be sent whatever /etc/resolv.conf says. The counts are printed to
 * stderr at exit so that a run shows what was answered and what was refused.
 */
'use strict';

const dns = require('node:dns');
const net = require('node:net');

const counts = { reverseLocal: 0, lookupLocal: 0, refused: 0 };

// Addresses that name this machine: the only ones a loopback benchmark talks to.
function isLoopbackAddress(address) {
  const text = String(address).toLowerCase();
  return (
    text.startsWith('127.') ||
    text === '::1' ||
    text === '0:0:0:0:0:0:0:1' ||
    text.startsWith('::ffff:127.')
  );
}

function isLocalName(hostname) {
  const text = String(hostname).toLowerCase().replace(/\.$/, '');
  return text === 'localhost' || text.endsWith('.localhost');
}

// An error shaped like the ones dns itself gives, so callers' error paths behave as for a
// real miss (smtp-server, for one, then greets without a client hostname).
function refusal(syscall, hostname, code) {
  counts.refused += 1;
  const error = new Error(`${syscall} ${code} ${hostname} (refused locally by ${__filename})`);
  error.code = code;
  error.errno = undefined;
  error.syscall = syscall;
  error.hostname = String(hostname);
  return error;
}

// Callback APIs answer on the next tick, as the real ones never call back synchronously.
function reverse(address, callback) {
  if (isLoopbackAddress(address)) {
    counts.reverseLocal += 1;
    process.nextTick(callback, null, ['localhost']);
  } else {
    process.nextTick(callback, refusal('getHostByAddr', address, dns.NOTFOUND));
  }
  return {};
}

function lookup(hostname, options, callback) {
  if (typeof options === 'function') {
    callback = options;
    options = {};
  } else if (typeof options === 'number') {
    options = { family: options };
  }
  options = options || {};
  const family = net.isIP(hostname);
  let address;
  if (family !== 0) {
    address = String(hostname); // a literal: what getaddrinfo returns without any query
  } else if (isLocalName(hostname)) {
    address = options.family === 6 ? '::1' : '127.0.0.1';
  }
  if (address === undefined) {
    process.nextTick(callback, refusal('getaddrinfo', hostname, dns.NOTFOUND));
    return {};
  }
  counts.lookupLocal += 1;
  const answer = { address, family: net.isIP(address) };
  if (options.all) {
    process.nextTick(callback, null, [answer]);
  } else {
    process.nextTick(callback, null, answer.address, answer.family);
  }
  return {};
}

function lookupService(address, port, callback) {
  if (isLoopbackAddress(address)) {
    process.nextTick(callback, null, 'localhost', String(port));
  } else {
    process.nextTick(callback, refusal('getnameinfo', address, dns.NOTFOUND));
  }
}

// Every record query (A, MX, TXT, …) would go to the configured nameserver: refuse them all.
function recordQuery(name) {
  return function query(hostname, ...rest) {
    const callback = rest[rest.length - 1];
    process.nextTick(callback, refusal(name, hostname, dns.SERVFAIL));
    return {};
  };
}

const RECORD_QUERIES = [
  'resolve',
  'resolve4',
  'resolve6',
  'resolveAny',
  'resolveCaa',
  'resolveCname',
  'resolveMx',
  'resolveNaptr',
  'resolveNs',
  'resolvePtr',
  'resolveSoa',
  'resolveSrv',
  'resolveTxt',
];

function promised(fn) {
  return (...args) =>
    new Promise((resolve, reject) => {
      fn(...args, (error, ...values) => {
        if (error) reject(error);
        else resolve(values.length > 1 ? { address: values[0], family: values[1] } : values[0]);
      });
    });
}

// The module's functions are bound copies of the default Resolver's methods (made when
// node:dns loads), so both they and the Resolver prototypes must be replaced.
for (const target of [dns, dns.Resolver.prototype]) {
  target.reverse = reverse;
  for (const name of RECORD_QUERIES) target[name] = recordQuery(name);
}
dns.lookup = lookup;
dns.lookupService = lookupService;

const promises = dns.promises;
for (const target of [promises, promises.Resolver.prototype]) {
  target.reverse = promised(reverse);
  for (const name of RECORD_QUERIES) target[name] = promised(recordQuery(name));
}
promises.lookup = promised(lookup);
promises.lookupService = (address, port) =>
  new Promise((resolve, reject) => {
    lookupService(address, port, (error, hostname, service) =>
      error ? reject(error) : resolve({ hostname, service }),
    );
  });

// MailDev handles SIGTERM itself and leaves through process.exit, so 'exit' does fire.
process.on('exit', () => {
  process.stderr.write(
    `[maildev_loopback_dns] reverse answered locally=${counts.reverseLocal} ` +
      `lookups answered locally=${counts.lookupLocal} refused locally=${counts.refused}\n`,
  );
});
