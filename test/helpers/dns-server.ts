// A DNS server on loopback for tests (UDP, packets by `dns-packet`): answers A
// queries as `answer` says, AAAA with no data, and never answers a query `answer`
// says 'hang' for, as a zone delegated to a server that drops queries would.
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

/** `answer(name, type)`: the IPv4 address of the name, null for no such name, or 'hang' ('A' or 'AAAA'). */
export async function startDnsServer(answer: (name: string, type: string) => string | null | 'hang'): Promise<DnsServer> {
  const socket = createSocket('udp4');
  const queries: string[] = [];
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
    const address = answer(question.name, question.type);
    if (address === 'hang') return;
    const response = packet.encode({
      type: 'response',
      id: query.id,
      flags: packet.RECURSION_DESIRED | packet.RECURSION_AVAILABLE | (address === null ? 3 : 0), // rcode 3: NXDOMAIN
      questions: [question],
      answers: address !== null && question.type === 'A'
        ? [{ type: 'A', class: 'IN', name: question.name, ttl: 60, data: address }]
        : [],
    });
    socket.send(response, from.port, from.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return {
    server: `127.0.0.1:${socket.address().port}`,
    queries,
    waitFor(count, matching) {
      if (queries.filter(matching).length >= count) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ count, matching, resolve }));
    },
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}
