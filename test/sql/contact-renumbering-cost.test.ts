// A statement renumbering many contacts (a CRM's merge or import tool moving a company's
// ids) costs each row the same however many it renumbers (contact_id_changed,
// 25_capture.sql). A file of its own: its thousands of contacts, written beside the
// swaps of contact-id-swap.test.ts, moved those contacts' rows to other pages, and
// one statement's swap met its rows in the other order.
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);
const make = () => factories(db().pool);

test('a statement renumbering a company\'s contacts costs each row the same, however many it renumbers', async (t) => {
  // (until 2026-12-07 each row read, and wrote again, the list of every id the statement
  // had given before it: 2,000 contacts took 1.6 s, 8,000 took 25, no webhook at all)
  const f = make();
  const renumber = async (count: number) => {
    const company = await f.company();
    await db().pool.query(`insert into crm.contacts (company_id, first_name)
                           select $1, 'C' || g from generate_series(1, $2::int) g`, [company.id, count]);
    const started = process.hrtime.bigint();
    await db().pool.query('update crm.contacts set id = id + 1000000000 where company_id = $1', [company.id]);
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    const { rows: [{ n }] } = await db().pool.query(
      'select count(*)::int as n from crm.contacts where company_id = $1 and id > 1000000000', [company.id]);
    t.is(n, count);
    return ms;
  };
  const small = Math.min(await renumber(1000), await renumber(1000));
  const large = await renumber(8000);
  t.log(`1,000 contacts: ${small.toFixed(0)} ms; 8,000: ${large.toFixed(0)} ms`);
  // eight times the rows: eight times the time, with room for a busy machine (the list
  // read row by row made it sixty times)
  t.true(large < small * 24, `8,000 contacts took ${(large / small).toFixed(1)} times as long as 1,000`);
});
