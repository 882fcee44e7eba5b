// A DNS server on loopback for tests (UDP, packets by `dns-packet`): answers A and
// AAAA queries as `answer` says (at once or after a delay), and never answers a query
// `answer` says 'hang' for, as a zone delegated to a server that drops queries would.
//
//   const dns = await startDnsServer((name) => name.endsWith('.hang.test') ? 'hang' : '127.0.0.1');
//   ... RELAY_DNS_SERVERS: dns.server ...
//   dns.queries   // every name asked, in order
import { createSocket } from 'node:dgram';
import packet from 'dns-packet';

export interface DnsServer {
  /** what RELAY_DNS_SERVERS takes: 127.0.0.1:port */
  server: string;
  /** the names of the queries received, in order (A and AAAA alike) */
  queries: string[];
  /** resolves once `count` queries for names `matching` have arrived */
  waitFor(count: number, matching: (name: string) => boolean): Promise<void>;
  close(): Promise<void>;
}

/**
 * `answer(name, type)`: the address of the name (an IPv4 address answers an A query, an
 * IPv6 one an AAAA query; the other type gets no data), null for no such name, 'hang'
 * ('A' or 'AAAA'), or { address, afterMs }: that answer, sent that long after the query.
 */
export async function startDnsServer(answer: (name: string, type: string) => string | null | 'hang' | { address: string; afterMs: number }): Promise<DnsServer> {
  const socket = createSocket('udp4');
  const queries: string[] = [];
  /** the answers waiting out their afterMs (dropped at close) */
  const delayed = new Set<NodeJS.Timeout>();
  const waiters: Array<{ count: number; matching: (name: string) => boolean; resolve: () => void }> = [];
  socket.on('message', (message, from) => {
    const query = packet.decode(message);
    const question = query.questions?.[0];
    if (!question) return;
    queries.push(question.name);
    for (const waiter of [...waiters]) {
      if (queries.filter(waiter.matching).length >= waiter.count) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    }
    const answered = answer(question.name, question.type);
    if (answered === 'hang') return;
    const address = typeof answered === 'object' && answered !== null ? answered.address : answered;
    const type = address?.includes(':') ? 'AAAA' : 'A';
    const response = packet.encode({
      type: 'response',
      id: query.id,
      flags: packet.RECURSION_DESIRED | packet.RECURSION_AVAILABLE | (address === null ? 3 : 0), // rcode 3: NXDOMAIN
      questions: [question],
      answers: address !== null && question.type === type
        ? [{ type, class: 'IN', name: question.name, ttl: 60, data: address }]
        : [],
    });
    if (typeof answered === 'object' && answered !== null) {
      const timer = setTimeout(() => {
        delayed.delete(timer);
        socket.send(response, from.port, from.address);
      }, answered.afterMs);
      delayed.add(timer);
    } else {
      socket.send(response, from.port, from.address);
    }
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return {
    server: `127.0.0.1:${socket.address().port}`,
    queries,
    waitFor(count, matching) {
      if (queries.filter(matching).length >= count) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ count, matching, resolve }));
    },
    close: () => {
      for (const timer of delayed) clearTimeout(timer);
      return new Promise<void>((resolve) => socket.close(() => resolve()));
    },
  };
}
