// The relay's holdings on their own (relay/holdings.ts): no database. What a claim
// whose answer was lost leaves in doubt, and what the release of the unheld is told.
import test from 'ava';
import { Holdings } from '../../relay/holdings.ts';
import type { DeliveryJob } from '../../relay/queries.ts';

const job = (id: string): DeliveryJob => ({
  deliveryId: id, messageId: `msg_${id}`, webhookId: '1', companyId: '1', attempt: 1, url: 'http://127.0.0.1/', body: '{}',
  secret: null, previousSecrets: [], sendAt: null, sendUntil: null,
});

test('held from its claim until its result is written or it is handed back', (t) => {
  const holdings = new Holdings();
  const [a, b, c] = [job('1'), job('2'), job('3')];
  holdings.claimed([a, b, c]);
  holdings.ended([b]);
  holdings.ended([c]);
  t.is(holdings.size, 1);
  t.false(holdings.inDoubt, 'no claim answer lost');
});

test('a lost claim answer leaves the relay in doubt until a release of the unheld succeeds, told every delivery held then', async (t) => {
  const holdings = new Holdings();
  holdings.claimed([job('1'), job('2')]);
  holdings.answerLost();
  t.true(holdings.inDoubt);

  await t.throwsAsync(holdings.endDoubt(async () => {
    throw new Error('connection terminated');
  }));
  t.true(holdings.inDoubt, 'still in doubt: the release did not run');

  const told: string[][] = [];
  t.is(await holdings.endDoubt(async (held) => (told.push(held), 3)), 3);
  t.deepEqual(told, [['1', '2']]);
  t.false(holdings.inDoubt);
});

test('a delivery claimed again while its earlier attempt\'s result waits stays held when that result is written', async (t) => {
  // the settle of attempt 1 committed but its answer was lost: the result waits to
  // be written again, and meanwhile a claim leases the delivery for attempt 2
  const holdings = new Holdings();
  const first = job('1');
  holdings.claimed([first]);
  const second = { ...job('1'), attempt: 2 };
  holdings.claimed([second]);
  holdings.ended([first]);
  holdings.answerLost();
  const told: string[][] = [];
  await holdings.endDoubt(async (held) => (told.push(held), 0));
  t.deepEqual(told, [['1']], 'attempt 2 is in flight: its lease is not handed back');
  holdings.ended([second]);
  t.is(holdings.size, 0);
});

test('a request made whose result was not written stays the relay\'s for the hand-back until its lease is over', async (t) => {
  const holdings = new Holdings();
  const made = job('7');
  holdings.claimed([made]);
  holdings.unwrittenUntil(made, 60_000, 0);
  holdings.ended([made]);
  const told: string[][] = [];
  const release = async (held: string[]) => {
    told.push(held);
    return 0;
  };
  await holdings.endDoubt(release, 59_999);
  await holdings.endDoubt(release, 60_000);
  t.deepEqual(told, [['7'], []]);
});
