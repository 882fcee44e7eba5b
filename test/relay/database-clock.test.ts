// The database's clock as the relay reads it (relay/database-clock.ts): the largest
// difference of the last minute, as close as the quickest answer came.
import test from 'ava';
import { CLOCK_WINDOW_MS, DatabaseClock } from '../../relay/database-clock.ts';

test('before any answer the clocks are taken to agree', (t) => {
  t.is(new DatabaseClock().toLocal(1_000), 1_000);
});

test("a slot goes where the quickest answer of the last minute puts it, however late the latest answer came", (t) => {
  const clock = new DatabaseClock();
  // the database's clock 3 s behind the relay's; answers 2, 40 and 9 ms on their way
  clock.observe(10_000 - 3_000 - 2, 10_000);
  clock.observe(10_100 - 3_000 - 40, 10_100);
  clock.observe(10_200 - 3_000 - 9, 10_200);
  t.is(clock.toLocal(20_000), 20_000 + 3_002, 'never earlier than the slot opens, 2 ms late at most');
});

test('a difference older than the window is forgotten, so the estimate follows a clock that drifts', (t) => {
  const clock = new DatabaseClock();
  clock.observe(1_000 + 50, 1_000); // the database 50 ms ahead, then 10 ms
  clock.observe(1_000 + CLOCK_WINDOW_MS - 1 + 10, 1_000 + CLOCK_WINDOW_MS - 1);
  t.is(clock.toLocal(100_000), 100_000 - 50);
  clock.observe(2_000 + CLOCK_WINDOW_MS + 10, 2_000 + CLOCK_WINDOW_MS);
  t.is(clock.toLocal(100_000), 100_000 - 10);
});
