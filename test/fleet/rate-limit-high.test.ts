// rate_limit from 200 a second: slots of rate/100 deliveries (pacing_group in
// sql/28_lanes.sql). A file of its own: 600 deliveries through two relays load this
// process, and the other paced tests measure time.
import test from 'ava';
import { busiest, pacedScene, sentTimes } from '../helpers/paced.ts';
import { testRelay, waitForFinalDeliveries } from '../helpers/relay.ts';

// From 200 a second a slot holds rate/100 deliveries (pacing_group in 28_lanes.sql), so
// a second-long window that begins inside one slot and ends inside another may hold
// rate + rate/100 requests, and no more, however the two relays' claims interleave.
test('rate_limit = 300: no second-long window holds more than 303 requests, with two relays', async (t) => {
  const { database, webhook } = await pacedScene(t, 300, 600);

  const relays = ['relay-a', 'relay-b'].map((id) => testRelay(database.url, { RELAY_ID: id }));
  for (const relay of relays) t.teardown(() => relay.stop());
  await Promise.all(relays.map((relay) => relay.start()));

  const deliveries = await waitForFinalDeliveries(database.pool, [webhook.id], 600, 90_000);
  t.true(deliveries.every((d) => d.state === 'succeeded' && d.attempts === 1), 'each sent once, none charged for waiting');
  const sent = await sentTimes(database.pool, webhook.id);
  t.is(sent.length, 600, 'each delivery attempted once');
  // (slots of twice the rate made it 334; alone the busiest second holds about 260, and
  // under a full test run's load as few as 75: no bound from below holds there)
  t.log(`busiest second: ${busiest(sent)} sent; all 600 in ${((sent.at(-1)! - sent[0]!) / 1000).toFixed(2)} s`);
  t.true(busiest(sent) <= 303, `${busiest(sent)} requests sent within one second`);
});
