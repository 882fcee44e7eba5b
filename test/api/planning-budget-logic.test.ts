// The bookkeeping of each company's budget of the API's thread for new query texts
// (api/planning-budget.ts), without a server or a database: a clock of the test's own.
import test from 'ava';
import { KnownTexts, PlanningBudget } from '../../api/planning-budget.ts';

function clocked(msPerSecond: number, burstMs: number) {
  let now = 0;
  const budget = new PlanningBudget({ msPerSecond, burstMs }, () => now);
  return { budget, pass: (ms: number) => void (now += ms) };
}

test('a company may spend its burst at once; past it, it waits for its bucket to fill, and the wait says how long', (t) => {
  const { budget, pass } = clocked(20, 1_000);
  t.is(budget.waitMs('1'), 0);
  budget.spend('1', 600);
  t.is(budget.waitMs('1'), 0, '400 ms left');
  // a text's time is known once it is planned: it may take the bucket below zero
  budget.spend('1', 500);
  t.is(budget.waitMs('1'), 5_050, '100 ms owed, and 1 more, at 20 ms a second');
  pass(5_000);
  t.true(budget.waitMs('1') > 0);
  pass(50);
  t.is(budget.waitMs('1'), 0);
  // another company has its own bucket
  t.is(budget.waitMs('2'), 0);
  budget.spend('2', 10);
  t.is(budget.waitMs('2'), 0);
});

test('a bucket fills to the burst and no further: a long quiet spell buys no more than the burst', (t) => {
  const { budget, pass } = clocked(100, 500);
  budget.spend('1', 100);
  pass(3_600_000);
  budget.spend('1', 499);
  t.is(budget.waitMs('1'), 0);
  budget.spend('1', 1);
  t.is(budget.waitMs('1'), 10, 'nothing left: 1 ms to fill, at 100 ms a second');
});

test('only companies whose bucket is not full are kept: one that has not spent for as long as its bucket takes to fill is forgotten', (t) => {
  const { budget, pass } = clocked(100, 1_000);
  for (let company = 0; company < 1_000; company++) budget.spend(String(company), 200);
  t.is(budget.companies, 1_000);
  // 200 ms spent fills again in 2 s
  pass(2_000);
  budget.spend('new', 1);
  t.is(budget.companies, 1);
  t.is(budget.waitMs('0'), 0);
  // a company that owes more is kept until it is full, and those after it in the order
  // of spending until they are reached
  budget.spend('owes', 3_000);
  budget.spend('a', 100);
  pass(1_001);
  budget.spend('b', 100);
  t.is(budget.companies, 3, 'new is full and gone; owes is not full, and a, full again, waits behind it');
  pass(40_000);
  budget.spend('c', 1);
  t.is(budget.companies, 1);
});

test('the known texts are the latest used, at most their size: a text used again is kept, the one used longest ago goes', (t) => {
  const known = new KnownTexts(3);
  t.false(known.use('a'));
  known.add('a');
  known.add('b');
  known.add('c');
  t.true(known.use('a'));
  known.add('d');
  t.is(known.size, 3);
  t.false(known.use('b'), 'b was used longest ago');
  t.true(known.use('a'));
  t.true(known.use('c'));
  t.true(known.use('d'));
  known.forget('c');
  t.false(known.use('c'));
  t.is(known.size, 2);
});
