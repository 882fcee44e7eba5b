// The database's clock as the relay reads it (relay/database-clock.ts): the relay's own
// where the answers allow the clocks to agree, else the lower bound of their offset.
import test from 'ava';
import { CLOCK_WINDOW_MS, DatabaseClock, OFFSET_SLEW } from '../../relay/database-clock.ts';

test('before any answer, and while the answers allow it, the clocks are taken to agree', (t) => {
  const clock = new DatabaseClock();
  t.is(clock.toLocal(1_000), 1_000);
  // answers 2 to 40 ms on their way, the database's clock 1 ms ahead: within them
  clock.observe(10_000 + 1, 10_000 - 2, 10_000 + 2);
  clock.observe(10_100 + 1, 10_100 - 40, 10_100 + 3);
  t.is(clock.offset(), 0);
  t.is(clock.toLocal(20_000), 20_000);
});

test('a database clock 3 s behind: slots go where the quickest answer of the last minute puts them, never early', (t) => {
  const clock = new DatabaseClock();
  // asked at 10,000, the database at 7,000, arrived 2 ms later; then answers 40 and 9 ms late
  clock.observe(7_000, 10_000, 10_002);
  clock.observe(7_100, 10_100 - 1, 10_100 + 40);
  clock.observe(7_200, 10_200 - 1, 10_200 + 9);
  t.is(clock.offset(), -3_002);
  t.is(clock.toLocal(20_000), 23_002, 'late by the quickest answer\'s way back, 2 ms');
});

test('bounds older than the window are forgotten, so the estimate follows a clock that drifts', (t) => {
  const clock = new DatabaseClock();
  clock.observe(1_000 + 5_000, 1_000, 1_000); // the database 5 s ahead, then 4 s
  clock.observe(1_000 + CLOCK_WINDOW_MS + 4_000, 1_000 + CLOCK_WINDOW_MS - 1, 1_000 + CLOCK_WINDOW_MS);
  t.is(clock.offset(), 5_000);
  clock.observe(2_000 + CLOCK_WINDOW_MS + 4_000, 2_000 + CLOCK_WINDOW_MS, 2_000 + CLOCK_WINDOW_MS);
  t.is(clock.offset(), 4_000);
});

test('a quicker answer moves the offset earlier by OFFSET_SLEW of the time between answers at most: slots never crowd', (t) => {
  const clock = new DatabaseClock();
  // the database 3 s behind; the first answer 100 ms on its way back, the next 2 ms
  clock.observe(7_000, 10_000 - 1, 10_100);
  t.is(clock.offset(), -3_100);
  clock.observe(7_200, 10_200 - 1, 10_202);
  t.is(clock.offset(), -3_100 + 102 * OFFSET_SLEW, 'earlier by 5 ms of the 98');
  // answers as quick, a second apart: it gets there, never past the estimate
  for (let at = 11_202; at <= 13_202; at += 1_000) clock.observe(at - 3_002, at - 1, at);
  t.is(clock.offset(), -3_002);
  // later at once: the database 4 s behind once those answers have left the window
  const at = 13_202 + CLOCK_WINDOW_MS + 1;
  clock.observe(at - 4_000, at - 1, at);
  t.is(clock.offset(), -4_000);
});
